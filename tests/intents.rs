//! The intent engine through its public API, with cases as data:
//! `tests/data/match/cases.yaml` (matching) and `tests/data/check_cases.yaml`
//! (diagnostics), each run by one `check` helper.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use voicegate::intent::{IntentSet, NotUnderstood, Recognition, SourceFile};
use yaml_rust2::{Yaml, YamlLoader};

fn data(path: &str) -> Vec<Yaml> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    let docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    docs[0].as_vec().cloned().unwrap_or_default()
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn map(y: &Yaml) -> Map<String, Value> {
    match to_json(y) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Numbers compare by value (2.5 from YAML and 2.5 from the matcher).
fn same(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| match (v, b.get(k)) {
            (Value::Number(x), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
            (x, Some(y)) => x == y,
            _ => false,
        })
}

fn check_match(set: &IntentSet, case: &Yaml) -> Result<(), String> {
    let text = case["text"].as_str().unwrap_or("");
    let context = map(&case["context"]);
    let result = set.recognize(text, &context);
    match (&case["intent"], result) {
        (Yaml::Null, Recognition::NotUnderstood(why)) => match case["why"].as_str() {
            Some("ambiguous") if !matches!(why, NotUnderstood::Ambiguous { .. }) => {
                Err(format!("expected ambiguous, got {why:?}"))
            }
            Some("no_match") if why != NotUnderstood::NoMatch => {
                Err(format!("expected no match, got {why:?}"))
            }
            _ => Ok(()),
        },
        (Yaml::Null, Recognition::Match(m)) => Err(format!(
            "expected not understood, got {} {:?}",
            m.intent,
            m.slot_map()
        )),
        (want, Recognition::NotUnderstood(why)) => {
            Err(format!("expected {want:?}, got not understood: {why:?}"))
        }
        (want, Recognition::Match(m)) => {
            if Some(m.intent.as_str()) != want.as_str() {
                return Err(format!(
                    "expected {want:?}, got {} (template {:?})",
                    m.intent, m.template.text
                ));
            }
            let slots = map(&case["slots"]);
            if !same(&m.slot_map(), &slots) {
                return Err(format!("slots {:?}, expected {:?}", m.slot_map(), slots));
            }
            if let Some(risk) = case["risk"].as_str()
                && serde_json::to_value(m.risk).ok() != Some(Value::String(risk.into()))
            {
                return Err(format!("risk {:?}, expected {risk}", m.risk));
            }
            Ok(())
        }
    }
}

#[test]
fn match_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/match/intents.yaml");
    let (set, diags) = IntentSet::load_path(&dir, &HashMap::new()).expect("load");
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    let cases = data("match/cases.yaml");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_match(&set, case)
                .err()
                .map(|e| format!("{:?}: {e}", case["text"].as_str().unwrap_or("")))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} match cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn check_diagnostics(case: &Yaml) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    if let Some(h) = case["files"].as_hash() {
        for (name, text) in h {
            let name = name.as_str().unwrap_or("x.yaml");
            let path = dir.path().join(name);
            files.push(SourceFile {
                path: path.clone(),
                text: text.as_str().unwrap_or("").to_string(),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (_, diags) = IntentSet::build(files, &HashMap::new());
    let shown: Vec<String> = diags
        .iter()
        .map(|d| {
            let file = d.file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            let severity = if d.is_error() { "error" } else { "warning" };
            format!("{severity} {file}:{}:{}: {}", d.line, d.col, d.message)
        })
        .collect();
    let expected: Vec<&str> = case["expect"]
        .as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    if expected.is_empty() && !shown.is_empty() {
        return Err(format!("expected no diagnostics, got {shown:#?}"));
    }
    for want in &expected {
        // "error a.yaml:6:28: text": location prefix must match exactly as far
        // as it is given; the text is a substring of the message.
        let (location, text) = want.split_once(": ").unwrap_or((want, ""));
        let found = shown.iter().any(|s| {
            let (loc, msg) = s.split_once(": ").unwrap_or((s, ""));
            (loc == location || loc.starts_with(&format!("{location}:"))) && msg.contains(text)
        });
        if !found {
            return Err(format!("missing {want:?}; got {shown:#?}"));
        }
    }
    // Every diagnostic renders with a caret line.
    for d in &diags {
        let rendered = d.to_string();
        if !rendered.contains('^') && !d.line_text.is_empty() {
            return Err(format!("no caret in {rendered}"));
        }
    }
    Ok(())
}

#[test]
fn check_cases() {
    let cases = data("check_cases.yaml");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_diagnostics(case)
                .err()
                .map(|e| format!("{}: {e}", case["name"].as_str().unwrap_or("?")))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} check cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn caret_sits_under_the_spot() {
    let text = "intents:\n  X:\n    risk: low\n    data:\n      - sentences: [\"turn (on\"]\n";
    let (_, diags) = IntentSet::build(
        vec![SourceFile {
            path: "a.yaml".into(),
            text: text.into(),
        }],
        &HashMap::new(),
    );
    let d = diags.iter().find(|d| d.is_error()).expect("an error");
    let rendered = d.to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    let source_line = lines
        .iter()
        .position(|l| l.contains("turn (on"))
        .expect("source line shown");
    let caret = lines[source_line + 1].find('^').expect("caret");
    let paren = lines[source_line].find('(').expect("paren");
    assert_eq!(caret, paren, "\n{rendered}");
}

#[test]
fn never_panics_on_hostile_templates() {
    // Deep nesting, huge permutations, odd Unicode: errors or matches, no panics.
    let deep = format!("{}x{}", "(".repeat(500), ")".repeat(500));
    let perm = format!(
        "({})",
        (0..20)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(";")
    );
    let alts = (0..30).map(|_| "[a|b|c]").collect::<Vec<_>>().join(" ");
    for template in [
        deep.as_str(),
        perm.as_str(),
        alts.as_str(),
        "\u{0301}(",
        "{a:}",
        "<>",
        "\\",
        "[[[]]]",
        "{@}",
    ] {
        let text = format!(
            "intents:\n  X:\n    risk: low\n    data:\n      - sentences: [{template:?}]\nlists:\n  a: {{wildcard: true}}\n"
        );
        let (set, _) = IntentSet::build(
            vec![SourceFile {
                path: "f.yaml".into(),
                text,
            }],
            &HashMap::new(),
        );
        let _ = set.recognize(
            "a b c a b c a b c a b c a b c a b c a b c a b c a b c a b c w1 w2",
            &Map::new(),
        );
    }
}

/// Home Assistant's English suite, run with Home Assistant's semantics.
/// Skipped (with a reason) when ../shared/data/ha-intents is absent.
#[test]
fn home_assistant_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ha-intents");
    if !root.is_dir() {
        eprintln!(
            "skipping home_assistant_suite: {} not found",
            root.display()
        );
        return;
    }
    let set =
        voicegate::intent::suite::suite_set(&root.join("sentences/en"), &root.join("tests/en"))
            .expect("suite loads");
    let report = voicegate::intent::suite::run_suite(
        &set,
        &root.join("tests/en"),
        voicegate::intent::Policy::HassilBest,
    )
    .expect("suite runs");
    eprintln!(
        "Home Assistant English suite: {}/{} passed; failures by cause: {:?}",
        report.passed,
        report.total,
        report.causes()
    );
    // The intents the issue requires in full.
    let required = [
        "HassStartTimer",
        "HassCancelTimer",
        "HassCancelAllTimers",
        "HassIncreaseTimer",
        "HassDecreaseTimer",
        "HassPauseTimer",
        "HassUnpauseTimer",
        "HassTimerStatus",
        "HassMediaPause",
        "HassMediaUnpause",
        "HassMediaNext",
        "HassMediaPrevious",
        "HassSetVolume",
        "HassMediaSearchAndPlay",
        "HassShoppingListAddItem",
        "HassShoppingListCompleteItem",
        "HassListAddItem",
        "HassListCompleteItem",
        "HassGetCurrentDate",
        "HassGetCurrentTime",
        "HassGetWeather",
        "HassNevermind",
    ];
    let mut missing = Vec::new();
    for intent in required {
        match report.by_intent.get(intent) {
            Some(t) if t.passed == t.total && t.total > 0 => {}
            Some(t) => missing.push(format!("{intent}: {}/{}", t.passed, t.total)),
            None => missing.push(format!("{intent}: no cases")),
        }
    }
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("{} {:?}: {} {}", f.location, f.sentence, f.cause, f.detail))
        .collect();
    assert!(
        missing.is_empty(),
        "required intents failing: {missing:?}\n{}",
        failures.join("\n")
    );
    // The whole suite: hold the line at what we measured (1023 of 1024).
    assert!(
        report.passed + 1 >= report.total,
        "suite regressed: {}/{}\n{}",
        report.passed,
        report.total,
        failures.join("\n")
    );
}

/// The spoken paraphrase set (`scripts/make-spoken-paraphrases.py`) is
/// made of CLINC150 `val` sentences of these intents, so that it measures
/// sentences voicegate was not written from: none of them may be written
/// into the intent files (a `tests:` or `examples:` sentence is also a
/// training sentence of the fallback). Skipped (with a reason) when
/// ../shared/data/nlu is absent.
#[test]
fn no_measured_val_sentence_is_written_into_the_intents() {
    const MEASURED: &[&str] = &[
        "timer",
        "alarm",
        "play_music",
        "change_volume",
        "next_song",
        "oos",
        "order",
        "restaurant_reservation",
        "book_hotel",
        "book_flight",
        "pay_bill",
        "transfer",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/data/nlu/clinc150/dev.jsonl");
    let Ok(text) = std::fs::read_to_string(&data) else {
        eprintln!(
            "skipping no_measured_val_sentence_is_written_into_the_intents: {} not found",
            data.display()
        );
        return;
    };
    let measured: std::collections::HashSet<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|row| row["split"] == "val")
        .filter(|row| MEASURED.contains(&row["intent"].as_str().unwrap_or("")))
        .filter_map(|row| row["text"].as_str().map(|t| t.trim().to_lowercase()))
        .collect();
    assert!(
        measured.len() > 300,
        "{} val sentences read",
        measured.len()
    );
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(root.join("intents/en"))
        .expect("intents/en")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let body = std::fs::read_to_string(&file).expect("intent file");
        for (n, line) in body.lines().enumerate() {
            for quoted in line.split('"').skip(1).step_by(2) {
                if measured.contains(&quoted.trim().to_lowercase()) {
                    found.push(format!("{}:{}: {quoted:?}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "CLINC150 val sentences written into the intents:\n{}",
        found.join("\n")
    );
}

#[test]
fn filled_slots_are_those_every_template_takes_from_the_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("i.yaml");
    std::fs::write(
        &path,
        r#"language: en
intents:
  Order:
    data:
      - sentences: ["order {item}", "buy [a] {item} [for {who}]", "get <thing>"]
  Volume:
    data:
      - sentences: ["volume {level}"]
      - sentences: ["mute"]
        slots: {level: 0}
  Optional:
    data:
      - sentences: ["play [{item}]", "play {who}"]
lists:
  item: {values: [tea, milk]}
  who: {values: [me, you]}
  level: {range: {from: 0, to: 100}}
expansion_rules:
  thing: "(a {item}|the {item:item} now)"
"#,
    )
    .expect("write");
    let (set, diags) = IntentSet::load_path(&path, &HashMap::new()).expect("load");
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    let filled = |intent: &str| set.intent(intent).expect(intent).filled.clone();
    assert_eq!(filled("Order"), ["item"]);
    // A fixed value in a data block need not be said.
    assert!(filled("Volume").is_empty());
    assert!(filled("Optional").is_empty());
}
