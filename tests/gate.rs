//! The action gate's rules, as data: `tests/data/gate/cases.yaml` lists
//! conversations (what is said when) and the gate outputs each step must
//! produce. Time is injected: every step says its own time. A step may
//! also say whether the gate then waits for a spoken PIN (`awaiting_pin`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use voicegate::gate::{Backing, Gate, GateConfig, Money, Output, PinHash, Utterance};
use voicegate::intent::IntentSet;
use yaml_rust2::{Yaml, YamlLoader};

#[path = "support/outputs.rs"]
mod outputs;
use outputs::name;

fn intents() -> IntentSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gate/intents.yaml");
    let (set, diags) = IntentSet::load_path(&dir, &HashMap::new()).expect("gate test intents load");
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "gate test intents have errors:\n{}",
        errors.join("\n")
    );
    set
}

fn seconds(y: &Yaml) -> f64 {
    y.as_f64()
        .or_else(|| y.as_i64().map(|i| i as f64))
        .unwrap_or(0.0)
}

fn config(case: &Yaml) -> (GateConfig, i64) {
    let mut config = GateConfig::default();
    let c = &case["config"];
    if !c["confirm_timeout"].is_badvalue() {
        config.confirm_timeout =
            Duration::milliseconds((seconds(&c["confirm_timeout"]) * 1000.0) as i64);
    }
    if let Some(pin) = c["pin"].as_str() {
        config.pin = Some(PinHash::new(pin));
    }
    if let Some(kinds) = c["pin_kinds"].as_vec() {
        config.pin_kinds = kinds
            .iter()
            .map(|k| {
                k.as_str()
                    .and_then(|k| k.parse().ok())
                    .expect("a known action kind in pin_kinds")
            })
            .collect();
    }
    if let Some(cap) = c["daily_spend_cap"].as_str() {
        config.daily_spend_cap = Money::parse(cap, "USD");
    }
    if let Some(prices) = c["prices"].as_hash() {
        config.prices = prices
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), Money::parse(v.as_str()?, "USD")?)))
            .collect::<BTreeMap<_, _>>();
    }
    if let Some(allow) = c["allow_unpriced"].as_bool() {
        config.allow_unpriced = allow;
    }
    (config, c["spent_today"].as_i64().unwrap_or(0))
}

fn check(case: &Yaml, intents: &IntentSet) -> Result<(), String> {
    let start: DateTime<Utc> = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
    let (config, spent) = config(case);
    let mut gate = Gate::new(config);
    let mut last_run = String::new();
    let no_steps = Vec::new();
    for (i, step) in case["steps"]
        .as_vec()
        .unwrap_or(&no_steps)
        .iter()
        .enumerate()
    {
        let now = start + Duration::milliseconds((seconds(&step["at"]) * 1000.0) as i64);
        let outputs = if step["tick"].as_bool() == Some(true) {
            gate.tick(now)
        } else if let Some(ask) = step["action_asks"].as_str() {
            // The last low-stakes action's reply asked `ask`; `waits`:
            // whether the gate now waits for the answer.
            let waits = gate.action_asks(intents, &last_run, ask, now);
            if step["waits"].as_bool() != Some(waits) {
                return Err(format!("step {i}: action_asks gave {waits}"));
            }
            Vec::new()
        } else {
            let utterance = Utterance {
                text: match step["say_repeat"].as_vec() {
                    // [text, n]: the text n times over (for length limits).
                    Some(v) => v[0]
                        .as_str()
                        .unwrap_or("")
                        .repeat(v[1].as_i64().unwrap_or(1) as usize),
                    None => step["say"].as_str().unwrap_or("").to_string(),
                },
                // YAML's .nan and .inf are reals too.
                confidence: step["confidence"].as_f64().map(|c| c as f32),
                wake_score: None,
                addressed: step["addressed"].as_bool().unwrap_or(true),
                // `backed: [free text, own confidence]`: a near free
                // reading lent this one its `confidence`.
                backing: step["backed"].as_vec().map(|b| Backing {
                    text: b[0].as_str().unwrap_or("").to_string(),
                    own_confidence: b[1].as_f64().unwrap_or(f64::NAN) as f32,
                }),
            };
            gate.handle(intents, &utterance, now, spent)
        };
        for output in &outputs {
            if let Output::RunLow(request) = output {
                last_run = request.id.to_string();
                if let Some(want) = step["intent"].as_str()
                    && request.intent != want
                {
                    return Err(format!("step {i}: ran {}, want {want}", request.intent));
                }
                // `slots: {...}`: the request run has exactly these slots.
                if let Some(want) = step["slots"].as_hash() {
                    let want: serde_json::Map<String, serde_json::Value> = want
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap_or("").to_string(), yaml_json(v)))
                        .collect();
                    if request.slots != want {
                        return Err(format!("step {i}: ran {:?}, want {want:?}", request.slots));
                    }
                }
            }
        }
        let got: Vec<&str> = outputs.iter().map(name).collect();
        let empty = Vec::new();
        let want: Vec<&str> = step["expect"]
            .as_vec()
            .unwrap_or(&empty)
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        if got != want {
            return Err(format!(
                "step {i} ({:?}): got {got:?}, want {want:?}\n  outputs: {outputs:#?}",
                step["say"].as_str()
            ));
        }
        if let Some(want) = step["awaiting_pin"].as_bool()
            && gate.awaiting_pin() != want
        {
            return Err(format!(
                "step {i} ({:?}): awaiting_pin() is {}, want {want}",
                step["say"].as_str(),
                gate.awaiting_pin()
            ));
        }
        // `reply: X` — every output about an action keeps X as the reply
        // heard (a PIN never itself), and a confirmed action too.
        if let Some(want) = step["reply"].as_str() {
            for output in &outputs {
                let kept = match output {
                    Output::RunHigh { facts, action } => {
                        if action.reply() != want {
                            return Err(format!(
                                "step {i}: the confirmed action keeps the reply {:?}, want {want:?}",
                                action.reply()
                            ));
                        }
                        facts.reply.as_deref()
                    }
                    Output::Reprompt { facts, .. }
                    | Output::Declined { facts, .. }
                    | Output::Refused { facts, .. }
                    | Output::Superseded { facts }
                    | Output::Expired { facts, .. } => facts.reply.as_deref(),
                    _ => continue,
                };
                if kept != Some(want) {
                    return Err(format!(
                        "step {i}: {} keeps the reply {kept:?}, want {want:?}",
                        name(output)
                    ));
                }
            }
        }
        // `says_contains: X` — some Say output contains X.
        if let Some(want) = step["says_contains"].as_str()
            && !outputs
                .iter()
                .any(|o| matches!(o, Output::Say(t) if t.contains(want)))
        {
            return Err(format!(
                "step {i}: nothing said contains {want:?}: {outputs:#?}"
            ));
        }
        for output in &outputs {
            match output {
                Output::ConfirmRequest { readback, .. } => {
                    if let Some(want) = step["readback"].as_str()
                        && readback != want
                    {
                        return Err(format!("step {i}: read-back {readback:?}, want {want:?}"));
                    }
                }
                Output::RunHigh { action, facts } => {
                    if let Some(want) = step["intent"].as_str()
                        && action.request().intent != want
                    {
                        return Err(format!(
                            "step {i}: ran {}, want {want}",
                            action.request().intent
                        ));
                    }
                    if facts.action_id != *action.id() {
                        return Err(format!("step {i}: facts and action disagree on the id"));
                    }
                    if action.digest() != voicegate::gate::digest(action.request()) {
                        return Err(format!("step {i}: digest does not bind the request"));
                    }
                }
                Output::Refused { reason, .. } | Output::Declined { reason, .. } => {
                    if let Some(want) = step["reason_contains"].as_str()
                        && !reason.contains(want)
                    {
                        return Err(format!("step {i}: reason {reason:?} lacks {want:?}"));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[test]
fn gate_cases() {
    let intents = intents();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gate/cases.yaml");
    let text = std::fs::read_to_string(&path).expect("cases file");
    let docs = YamlLoader::load_from_str(&text).expect("cases parse");
    let cases = docs[0].as_vec().expect("a list of cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        if let Err(e) = check(case, &intents) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} gate cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!("{} gate cases passed", cases.len());
}

#[test]
fn exactly_one_run_per_confirmation_under_repeated_yes() {
    // However many times "yes" is said, one read-back runs once.
    let intents = intents();
    let start: DateTime<Utc> = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
    let mut gate = Gate::new(GateConfig::default());
    let mut runs = 0;
    let mut outputs = gate.handle(&intents, &Utterance::typed("buy paper towels"), start, 0);
    for k in 1..10 {
        outputs.extend(gate.handle(
            &intents,
            &Utterance::typed("yes"),
            start + Duration::seconds(k),
            0,
        ));
    }
    for o in &outputs {
        if let Output::RunHigh { .. } = o {
            runs += 1;
        }
    }
    assert_eq!(runs, 1);
}

/// A YAML scalar as the JSON a slot holds (numbers, booleans, text).
fn yaml_json(v: &Yaml) -> serde_json::Value {
    match v {
        Yaml::Integer(n) => serde_json::Value::from(*n),
        Yaml::Boolean(b) => serde_json::Value::Bool(*b),
        Yaml::Real(r) => r
            .parse::<f64>()
            .map_or(serde_json::Value::Null, serde_json::Value::from),
        Yaml::String(s) => serde_json::Value::String(s.clone()),
        _ => serde_json::Value::Null,
    }
}
