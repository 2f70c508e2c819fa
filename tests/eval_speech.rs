//! `voicegate eval speech`: the real binary on a manifest of the committed
//! speech fixtures (`tests/data/speech/`), checked against the numbers its
//! table must show, and against what `voicegate run --no-wake --input`
//! hears in the same clips (the evaluation must measure the daemon's path,
//! not a copy of it). Needs the default whisper model and the sentence
//! embedder (`scripts/test.sh` installs both): skipped with a printed
//! reason without them, failed under CI.

#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use voicegate::stt::model;

fn model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VOICEGATE_MODEL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    let base = model::default_models_dir().ok()?;
    let p = model::find(model::DEFAULT_MODEL)?.path_in(&base);
    p.is_file().then_some(p)
}

/// The whisper model, or `None` after reporting the skip.
fn need_models() -> Option<PathBuf> {
    let Some(whisper) = model() else {
        skip::missing(format!(
            "no whisper model installed (run `voicegate models install {}`; scripts/test.sh does)",
            model::DEFAULT_MODEL
        ));
        return None;
    };
    if let Err(e) = model::locate_embedder() {
        skip::missing(format!(
            "no sentence embedder installed ({e}; scripts/test.sh installs it)"
        ));
        return None;
    }
    Some(whisper)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/speech")
        .join(name)
        .display()
        .to_string()
}

fn voicegate(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("voicegate runs")
}

/// Writes `lines` as a manifest in `dir`.
fn manifest(dir: &Path, lines: &[Value]) -> String {
    let path = dir.join("manifest.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
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
fn a_malformed_line_is_reported_with_its_file_and_line_before_any_model_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("manifest.jsonl");
    std::fs::write(
        &path,
        "{\"audio\": \"a.wav\", \"intent\": \"oos\"}\n\n{\"audio\": \"b.wav\"}\n",
    )
    .expect("write");
    // No models anywhere: the manifest is read first.
    let out = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VOICEGATE_MODELS", dir.path().join("no-models"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["eval", "speech"])
        .arg(&path)
        .output()
        .expect("voicegate runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3: missing field `intent`", path.display())),
        "{stderr}"
    );
}

#[test]
fn a_manifest_of_the_fixtures_gives_the_table() {
    let Some(whisper) = need_models() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Not a WAV file: its line's error, not the end of the evaluation.
    std::fs::write(dir.path().join("broken.wav"), "not audio").expect("write");
    let path = manifest(
        dir.path(),
        &[
            json!({"audio": fixture("timer.wav"), "intent": "StartTimer", "slots": {"minutes": 10}}),
            json!({"audio": fixture("alarm.wav"), "intent": "SetAlarm", "slots": {"time": "07:30", "day": "tomorrow"}}),
            // No slot label: tiny.en writes "Play some Jess." here.
            json!({"audio": fixture("music.wav"), "intent": "PlayMusic"}),
            // High stakes: read back, never run (nothing says yes).
            json!({"audio": fixture("purchase.wav"), "intent": "OrderItem", "slots": {"quantity": 2, "item": "batteries"}}),
            json!({"audio": fixture("booking.wav"), "intent": "BookTable", "slots": {"party_size": 2}}),
            // A "yes" with nothing waiting runs nothing.
            json!({"audio": fixture("yes.wav"), "intent": "oos"}),
            json!({"audio": "missing.wav", "intent": "oos"}),
            json!({"audio": "broken.wav", "intent": "StartTimer"}),
        ],
    );
    let data = dir.path().join("data");
    let whisper = whisper.display().to_string();
    let out = voicegate(
        &data,
        &["--json", "eval", "speech", &path, "--model", &whisper],
    );
    // Clips left out: the figures are incomplete, and the status says so.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["lines"], 6, "{report}");
    for intent in [
        "StartTimer",
        "SetAlarm",
        "PlayMusic",
        "OrderItem",
        "BookTable",
    ] {
        assert_eq!(counts(row(&report, intent)), [1, 1, 0, 0, 0, 0], "{intent}");
    }
    assert_eq!(counts(&report["in_scope"]), [5, 5, 0, 0, 0, 0]);
    assert_eq!(counts(&report["out_of_scope"]), [1, 0, 0, 0, 1, 0]);
    assert_eq!(report["out_of_scope"]["reasons"]["no_action"], 1);
    assert_eq!(report["in_scope"]["slots_labelled"], 6);
    assert_eq!(report["in_scope"]["slots_found"], 6);
    assert_eq!(report["in_scope"]["high_stakes_unconfirmed"], 0);
    let errors = report["errors"].as_array().expect("errors");
    let lines: Vec<&Value> = errors.iter().map(|e| &e["line"]).collect();
    assert_eq!(lines, [7, 8], "{errors:?}");
    assert!(
        errors[0]["audio"]
            .as_str()
            .is_some_and(|a| a.starts_with(&dir.path().display().to_string())),
        "relative to the manifest: {errors:?}"
    );

    // The same as a table, for one clip and the missing one.
    let path = manifest(
        dir.path(),
        &[
            json!({"audio": fixture("timer.wav"), "intent": "StartTimer", "slots": {"minutes": 10}}),
            json!({"audio": "missing.wav", "intent": "oos"}),
        ],
    );
    let out = voicegate(&data, &["eval", "speech", &path, "--model", &whisper]);
    let table = String::from_utf8_lossy(&out.stdout);
    let timer = table
        .lines()
        .find(|l| l.starts_with("StartTimer → StartTimer"))
        .unwrap_or_else(|| panic!("no StartTimer row:\n{table}"));
    let cells: Vec<&str> = timer.split_whitespace().collect();
    assert_eq!(&cells[3..6], ["1", "100.0%", "0.0%"], "{timer}");
    assert!(timer.contains("100.0% of 1"), "{timer}");
    assert!(
        table.contains(&format!("{path}:2: ")) && table.contains("missing.wav"),
        "{table}"
    );
}

#[test]
fn eval_speech_hears_what_run_hears() {
    let Some(whisper) = need_models() else { return };
    let whisper = whisper.display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let clips = ["purchase_yes.wav", "alarm.wav"];
    let path = manifest(
        dir.path(),
        &clips.map(|c| json!({"audio": fixture(c), "intent": "OrderItem"})),
    );
    let lines = dir.path().join("lines.jsonl");
    let out = voicegate(
        &dir.path().join("eval-data"),
        &[
            "eval",
            "speech",
            &path,
            "--model",
            &whisper,
            "--lines",
            lines.to_str().expect("utf-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = std::fs::read_to_string(&lines)
        .expect("lines written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(results.len(), clips.len());
    for (clip, result) in clips.iter().zip(&results) {
        let out = voicegate(
            &dir.path().join(format!("run-{clip}")),
            &[
                "--json",
                "run",
                "--no-wake",
                "--tts",
                "none",
                "--ack",
                "none",
                "--model",
                &whisper,
                "--input",
                &fixture(clip),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let heard: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "heard")
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(!heard.is_empty(), "{clip}: run heard nothing");
        assert_eq!(result["heard"], json!(heard), "{clip}");
        let first_intent = events
            .iter()
            .find(|e| e["event"] == "intent")
            .map(|e| e["intent"].clone());
        assert_eq!(Some(result["recognised"].clone()), first_intent, "{clip}");
    }
    // The purchase was read back and confirmed by the "yes" in the same
    // clip: run, with a yes.
    assert_eq!(results[0]["verdict"], "handled");
    assert_eq!(results[0]["high_stakes_unconfirmed"], false);
    assert_eq!(
        results[1]["verdict"], "wrong_action",
        "an alarm is not an order"
    );
}
