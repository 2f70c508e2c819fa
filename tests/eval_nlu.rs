//! `voicegate eval nlu`: the real binary on a small fixture
//! (`tests/data/nlu/`: its own intents, lines and map), and the pipeline's
//! dry run it relies on. Nothing here needs `../shared`.

use std::path::Path;
use std::process::{Command, Output};

use chrono::Utc;
use serde_json::Value;
use voicegate::gate::Utterance;
use voicegate::intent::IntentSet;
use voicegate::pipeline::{Event, Execution, Pipeline, PipelineConfig};

const DIR: &str = "tests/data/nlu";

fn eval(extra: &[&str]) -> (Output, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "--data-dir",
        data.path().to_str().expect("utf-8 path"),
        "--intents",
        DIR,
        "eval",
        "nlu",
        "tests/data/nlu/lines.jsonl",
        "--map",
        "tests/data/nlu/map.toml",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(&args)
        .output()
        .expect("voicegate runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, data)
}

fn report(extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let (out, _data) = eval(&args);
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

fn row<'a>(report: &'a Value, intent: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["intent"] == intent))
        .unwrap_or_else(|| panic!("no row {intent} in {report}"))
}

/// (n, handled, asked, wrong, not understood, false actions)
fn counts(row: &Value) -> [u64; 6] {
    [
        "n",
        "handled",
        "asked",
        "wrong",
        "not_understood",
        "false_actions",
    ]
    .map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

#[test]
fn each_line_is_classified_by_the_first_thing_voicegate_does() {
    let r = report(&["--split", "val"]);
    assert_eq!(
        r["lines"], 9,
        "the train line is left out, the one without a split kept"
    );
    // ran / ran by the fallback ("start a ten minute countdown", which no
    // template of the fixture says) / another intent ran
    assert_eq!(counts(row(&r, "timer")), [3, 2, 0, 1, 0, 0]);
    // read back (high stakes) counts as handled
    assert_eq!(counts(row(&r, "restaurant")), [2, 2, 0, 0, 0, 0]);
    assert_eq!(counts(row(&r, "music")), [1, 1, 0, 0, 0, 0]);
    // "play the weather channel" plays something: a false action;
    // "never mind" does nothing, so it is none.
    assert_eq!(counts(row(&r, "weather")), [1, 0, 0, 0, 0, 1]);
    assert_eq!(counts(row(&r, "oos")), [2, 0, 0, 0, 2, 0]);
    assert_eq!(r["out_of_scope"]["reasons"]["nevermind"], 1);
    assert_eq!(counts(&r["in_scope"]), [6, 5, 0, 1, 0, 0]);
    assert_eq!(counts(&r["out_of_scope"]), [3, 0, 0, 0, 2, 1]);
    // Slots: "four" = 4 and "Luigi's" found, "3" is not "two"; "city" is
    // not mapped; the artist's case does not matter.
    assert_eq!(row(&r, "restaurant")["slots_labelled"], 3);
    assert_eq!(row(&r, "restaurant")["slots_found"], 2);
    assert_eq!(row(&r, "music")["slot_accuracy"], 1.0);
    let by_slot = &row(&r, "restaurant")["by_slot"];
    assert_eq!(
        by_slot["party_size_number"],
        serde_json::json!({"labelled": 2, "found": 1, "in_group": 1})
    );
    assert_eq!(
        by_slot["restaurant_name"],
        serde_json::json!({"labelled": 1, "found": 1, "in_group": 1})
    );
    assert_eq!(r["in_scope"]["high_stakes_unconfirmed"], 0);
    assert_eq!(r["unknown_intents"], serde_json::json!(["BookRestaurant"]));
}

#[test]
fn split_and_limit_choose_the_lines() {
    assert_eq!(report(&[])["lines"], 10);
    let r = report(&["--limit", "2"]);
    assert_eq!(r["lines"], 2);
    assert_eq!(counts(row(&r, "timer")), [2, 2, 0, 0, 0, 0]);
}

#[test]
fn the_table_names_every_intent_and_the_data_dir_is_untouched() {
    let (out, data) = eval(&["--split", "val"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "timer → StartTimer",
        "restaurant → BookTable|BookRestaurant",
        "weather (out of scope)",
        "in scope (3 intents)",
        "out of scope, false actions: PlayMusic 1",
        "restaurant, slots found: party_size_number 1/2, restaurant_name 1/1",
        "high-stakes actions run without a yes: 0",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let left: Vec<_> = std::fs::read_dir(data.path()).expect("dir").collect();
    assert!(left.is_empty(), "eval wrote into --data-dir: {left:?}");
}

#[test]
fn a_dry_run_says_what_would_run_and_runs_nothing() {
    let (intents, _) =
        IntentSet::load_path(Path::new(DIR), &Default::default()).expect("fixture intents");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = PipelineConfig {
        gate: Default::default(),
        audit_db: dir.path().join("audit.db"),
        state_db: dir.path().join("state.db"),
        handlers: Default::default(),
        mpd: Default::default(),
        understanding: Default::default(),
    };
    let mut pipeline = Pipeline::start_with(intents, config, Execution::DryRun).expect("pipeline");
    let now = Utc::now();
    for text in [
        "set a timer for 10 minutes",
        "play something by Miles Davis",
    ] {
        let events = pipeline.handle(&Utterance::typed(text), now);
        let messages: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Executed { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(messages.len(), 1, "{text}: {events:?}");
        assert!(
            messages[0].starts_with("(dry run) would run "),
            "{text}: {events:?}"
        );
    }
}
