//! End to end on speech: the real binary listens to the committed fixtures
//! (`tests/data/speech/`, made by `scripts/make-speech-fixtures.sh` with
//! piper's en_US-joe-medium voice) through the whole path — WAV reader,
//! endpointer, whisper, intents, gate, actions, audit — with the audio clock.
//! Needs the whisper model (`voicegate models install tiny.en`, which the
//! README's commands run); skipped with a printed reason without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn model() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VOICEGATE_MODEL")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    let base = std::env::var_os("VOICEGATE_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("voicegate/models"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/voicegate/models"))
        })?;
    let p = base.join("ggml-tiny.en.bin");
    p.is_file().then_some(p)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/speech")
        .join(name)
}

struct Home {
    _dir: tempfile::TempDir,
    data: PathBuf,
}

fn home() -> Home {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    Home { _dir: dir, data }
}

fn run(home: &Home, model: &Path, wav: &str) -> Vec<Value> {
    let o: Output = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "--data-dir"])
        .arg(&home.data)
        .args(["run", "--no-wake", "--tts", "none", "--model"])
        .arg(model)
        .arg("--input")
        .arg(fixture(wav))
        .output()
        .expect("voicegate run");
    assert!(
        o.status.success(),
        "{wav}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect()
}

fn audit(home: &Home) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .args(["--json", "--data-dir"])
        .arg(&home.data)
        .args(["audit", "list"])
        .output()
        .expect("audit list");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

macro_rules! need_model {
    () => {
        match model() {
            Some(m) => m,
            None => {
                eprintln!("skipping: no whisper model installed (run `voicegate models install tiny.en`; scripts/test.sh does)");
                return;
            }
        }
    };
}

#[test]
fn set_an_alarm_by_voice() {
    let model = need_model!();
    let home = home();
    let ev = run(&home, &model, "alarm.wav");
    let intent = ev
        .iter()
        .find(|e| e["event"] == "intent")
        .unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(intent["intent"], "SetAlarm", "{ev:#?}");
    assert_eq!(intent["slots"]["time"], "07:30", "{ev:#?}");
    assert!(kinds(&ev).contains(&"executed"), "{ev:#?}");
}

#[test]
fn play_music_by_voice() {
    let model = need_model!();
    let home = home();
    let ev = run(&home, &model, "music.wav");
    let intent = ev
        .iter()
        .find(|e| e["event"] == "intent")
        .unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(intent["intent"], "PlayMusic", "{ev:#?}");
    assert_eq!(intent["slots"]["genre"], "jazz", "{ev:#?}");
    // Without an mpd listening the executor reports a failure; either way it ran once.
    let ran = kinds(&ev)
        .iter()
        .filter(|k| **k == "executed" || **k == "failed")
        .count();
    assert_eq!(ran, 1, "{ev:#?}");
}

#[test]
fn purchase_then_yes_runs_once_and_is_audited() {
    let model = need_model!();
    let home = home();
    let ev = run(&home, &model, "purchase_yes.wav");
    let k = kinds(&ev);
    let confirm = k
        .iter()
        .position(|e| *e == "confirm_request")
        .unwrap_or_else(|| panic!("{ev:#?}"));
    let executed: Vec<usize> = k
        .iter()
        .enumerate()
        .filter(|(_, e)| **e == "executed")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(executed.len(), 1, "{ev:#?}");
    assert!(confirm < executed[0]);
    assert_eq!(ev[executed[0]]["risk"], "high");
    let rows = audit(&home);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        ["requested", "confirmed", "executed"],
        "{rows:#?}"
    );
    // Spoken, so the transcription confidence is on record.
    assert!(rows[0]["confidence"].is_number(), "{rows:#?}");
    assert!(
        rows[1]["reply_transcript"]
            .as_str()
            .is_some_and(|r| r.to_lowercase().contains("yes")),
        "{rows:#?}"
    );
}

#[test]
fn purchase_then_no_is_declined() {
    let model = need_model!();
    let home = home();
    let ev = run(&home, &model, "purchase_no.wav");
    let k = kinds(&ev);
    assert!(k.contains(&"confirm_request"), "{ev:#?}");
    assert!(k.contains(&"declined"), "{ev:#?}");
    assert!(!k.contains(&"executed"), "{ev:#?}");
}

#[test]
fn booking_then_silence_expires() {
    let model = need_model!();
    let home = home();
    let ev = run(&home, &model, "booking_silence.wav");
    let k = kinds(&ev);
    assert!(k.contains(&"confirm_request"), "{ev:#?}");
    assert!(k.contains(&"expired"), "{ev:#?}");
    assert!(!k.contains(&"executed"), "{ev:#?}");
    let rows = audit(&home);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["requested", "expired"], "{rows:#?}");
}
