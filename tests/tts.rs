//! piper's voice, end to end through the real binary: the read-back of a
//! purchase, as the gate words it, spoken by `voicegate speak` (the same
//! piper session the daemon keeps) and transcribed again by whisper
//! without the grammar, must still carry the item and the quantity.
//! Needs piper (`scripts/setup-tts.sh`, which `scripts/test.sh` runs) and
//! the whisper model: skipped with a printed reason without them, failed
//! under CI.

#[path = "support/skip.rs"]
mod skip;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use voicegate::stt::model;

fn voicegate(args: &[&str]) -> (bool, Vec<Value>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("voicegate");
    let events = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        o.status.success(),
        events,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn whisper_model() -> Option<PathBuf> {
    let base = model::default_models_dir().ok()?;
    let p = model::find(model::DEFAULT_MODEL)?.path_in(&base);
    p.is_file().then_some(p)
}

#[test]
fn piper_reads_back_a_purchase_intelligibly() {
    if voicegate::tts::Piper::find(None).ok().flatten().is_none() {
        skip::missing("piper is not installed (scripts/setup-tts.sh)");
        return;
    }
    let Some(model) = whisper_model() else {
        skip::missing("the whisper model is not installed (voicegate models install)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (ok, events, err) = voicegate(&[
        "--json",
        "--data-dir",
        data,
        "say",
        "buy two packs of batteries",
    ]);
    assert!(ok, "{err}");
    let readback = events
        .iter()
        .find(|e| e["event"] == "confirm_request")
        .and_then(|e| e["readback"].as_str())
        .unwrap_or_else(|| panic!("no read-back: {events:#?}"))
        .to_string();
    assert!(
        readback.contains('2') && readback.contains("batteries"),
        "{readback}"
    );

    let wav = dir.path().join("readback.wav");
    let wav = wav.to_str().expect("utf-8 path");
    let (ok, events, err) = voicegate(&["speak", &readback, "--out", wav]);
    assert!(ok, "{err}");
    let timing = &events[0];
    assert_eq!(timing["voice"], "piper", "{timing}");
    assert!(
        timing["audio_secs"].as_f64().unwrap_or(0.0) > 0.5,
        "{timing}"
    );

    let model = model.to_str().expect("utf-8 path");
    let (ok, events, err) = voicegate(&[
        "--json",
        "transcribe",
        wav,
        "--no-grammar",
        "--model",
        model,
    ]);
    assert!(ok, "{err}");
    let heard = events[0]["text"].as_str().unwrap_or("").to_lowercase();
    assert!(heard.contains("batter"), "{heard:?} for {readback:?}");
    assert!(
        heard.contains("two") || heard.contains('2'),
        "{heard:?} for {readback:?}"
    );
    assert!(heard.contains("pack"), "{heard:?} for {readback:?}");
}

/// Without piper the command says how to install it, and fails cleanly.
#[test]
fn speak_without_piper_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .env("XDG_DATA_HOME", dir.path())
        .args(["speak", "hello"])
        .output()
        .expect("voicegate");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("scripts/setup-tts.sh"), "{err}");
}
