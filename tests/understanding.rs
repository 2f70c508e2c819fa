//! The fallback recogniser in the gate, as data:
//! `tests/data/understanding/cases.yaml` lists conversations and the gate's
//! outputs for each step. The fallback uses the hashed embedder (no model,
//! deterministic), trained on `tests/data/understanding/intents.yaml`.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use voicegate::gate::{Backing, Gate, GateConfig, Output, Utterance};
use voicegate::intent::{By, IntentSet, NotUnderstood};
use voicegate::nlu::{Thresholds, Understander};
use yaml_rust2::{Yaml, YamlLoader};

#[path = "support/outputs.rs"]
mod outputs;
use outputs::name;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/understanding");

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        _ => Value::Null,
    }
}

fn check(case: &Yaml, intents: &IntentSet, fallback: &Understander) -> Result<(), String> {
    let start: DateTime<Utc> = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
    let mut gate = Gate::new(GateConfig::default());
    let empty = Vec::new();
    for (i, step) in case["steps"].as_vec().unwrap_or(&empty).iter().enumerate() {
        let now = start + Duration::seconds(i as i64);
        let text = step["say"].as_str().unwrap_or("");
        let mut utterance = Utterance::typed(text);
        utterance.confidence = step["confidence"].as_f64().map(|c| c as f32);
        // `backed: [free text, own confidence]` (see tests/gate.rs).
        utterance.backing = step["backed"].as_vec().map(|b| Backing {
            text: b[0].as_str().unwrap_or("").to_string(),
            own_confidence: b[1].as_f64().unwrap_or(f64::NAN) as f32,
        });
        let outputs = gate.handle_understood(
            intents,
            Some(fallback),
            &utterance,
            &Default::default(),
            now,
            0,
        );
        let got: Vec<&str> = outputs.iter().map(name).collect();
        let want: Vec<&str> = step["expect"]
            .as_vec()
            .unwrap_or(&empty)
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        if got != want {
            return Err(format!(
                "step {i} ({text:?}): got {got:?}, want {want:?}\n{outputs:#?}"
            ));
        }
        let m = outputs.iter().find_map(|o| match o {
            Output::Intent(m) => Some(m),
            _ => None,
        });
        if let Some(by) = step["by"].as_str() {
            let got = match m.map(|m| m.by) {
                Some(By::Template) => "template",
                Some(By::Fallback { .. }) => "fallback",
                None => "none",
            };
            if got != by {
                return Err(format!("step {i} ({text:?}): by {got}, want {by}"));
            }
        }
        if let Some(slots) = step["slots"].as_hash() {
            let m = m.ok_or_else(|| format!("step {i}: no intent output"))?;
            for (k, v) in slots {
                let key = k.as_str().unwrap_or("");
                if m.slot(key) != Some(&yaml_to_json(v)) {
                    return Err(format!(
                        "step {i} ({text:?}): slot {key} = {:?}, want {v:?}; slots {:?}",
                        m.slot(key),
                        m.slot_map()
                    ));
                }
            }
        }
        if let Some(want) = step["asks"].as_str() {
            let got = outputs.iter().find_map(|o| match o {
                Output::Ask { text, .. } | Output::DidYouMean { text, .. } => Some(text.as_str()),
                _ => None,
            });
            if got != Some(want) {
                return Err(format!("step {i} ({text:?}): asks {got:?}, want {want:?}"));
            }
        }
        if let Some(why) = step["why"].as_str() {
            let got = outputs.iter().find_map(|o| match o {
                Output::NotUnderstood { why, .. } => Some(why),
                _ => None,
            });
            let ok = matches!(
                (why, got),
                ("out_of_scope", Some(NotUnderstood::OutOfScope { .. }))
                    | ("no_match", Some(NotUnderstood::NoMatch))
                    | ("incomplete", Some(NotUnderstood::Incomplete { .. }))
            );
            if !ok {
                return Err(format!("step {i} ({text:?}): why {got:?}, want {why}"));
            }
        }
    }
    Ok(())
}

#[test]
fn understanding_cases() {
    let (intents, diags) =
        IntentSet::load_path(&Path::new(DIR).join("intents.yaml"), &HashMap::new())
            .expect("the test intents load");
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let thresholds = Thresholds {
        out_of_scope: 0.3,
        sure: 0.75,
    };
    let fallback = Understander::train(&intents, None, thresholds).expect("train");
    let text = std::fs::read_to_string(Path::new(DIR).join("cases.yaml")).expect("cases");
    let docs = YamlLoader::load_from_str(&text).expect("cases parse");
    let cases = docs[0].as_vec().expect("a list of cases");
    let mut failures = Vec::new();
    for case in cases {
        if let Err(e) = check(case, &intents, &fallback) {
            failures.push(format!("{}: {e}", case["name"].as_str().unwrap_or("?")));
        }
    }
    assert!(cases.len() >= 8);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
