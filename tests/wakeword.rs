//! The wake word through the real binary: `wakeword test` on the committed
//! speech fixtures with the shipped model, `wakeword train` end to end on a
//! small budget, and bad model files as clear errors.
//!
//! The figures on real people's recordings are a benchmark (README), not a
//! test: they take minutes.

#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use voicegate::stt::model;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn whisper_model() -> Option<PathBuf> {
    let base = model::default_models_dir().ok()?;
    let p = model::find(model::DEFAULT_MODEL)?.path_in(&base);
    p.is_file().then_some(p)
}

fn json_line(o: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Links fixtures into a directory, so that `--positives DIR` sees only them.
fn dir_of(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in files {
        std::fs::copy(repo("tests/data/speech").join(f), dir.path().join(f)).expect("copy");
    }
    dir
}

#[test]
fn the_shipped_model_wakes_on_jarvis_and_not_on_plain_commands() {
    let Some(model) = whisper_model() else {
        skip::missing("no whisper model (scripts/test.sh installs it)");
        return;
    };
    let positives = dir_of(&[
        "jarvis_alarm.wav",
        "jarvis_booking.wav",
        "jarvis_music.wav",
        "jarvis_purchase.wav",
        "jarvis_timer.wav",
    ]);
    let negatives = dir_of(&[
        "alarm.wav",
        "booking.wav",
        "music.wav",
        "purchase_yes.wav",
        "purchase_no.wav",
        "timer.wav",
    ]);
    let o = bin()
        .args(["--json", "wakeword", "test", "--model", "models/jarvis.rpw"])
        .arg("--whisper-model")
        .arg(&model)
        .arg("--positives")
        .arg(positives.path())
        .arg("--negatives")
        .arg(negatives.path())
        .output()
        .expect("wakeword test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json_line(&o);
    for key in [
        "positives",
        "detected",
        "detection_rate",
        "negative_hours",
        "false_alarms",
        "false_alarms_per_hour",
        "cpu_fraction",
    ] {
        assert!(r.get(key).is_some(), "{key} missing: {r}");
    }
    assert_eq!(r["positives"], 5, "{r}");
    assert_eq!(r["detected"], 5, "{r}");
    assert_eq!(r["false_alarms"], 0, "{r}");
    assert!(r["cpu_fraction"].as_f64().is_some_and(|c| c > 0.0), "{r}");
}

#[test]
fn train_makes_a_model_the_detector_loads() {
    let espeak = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("espeak-ng").is_file()));
    if !espeak {
        skip::missing("espeak-ng is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("hey_toaster.rpw");
    let small = [
        "--no-piper",
        "--espeak-positives",
        "40",
        "--espeak-negatives",
        "80",
        "--piper-negatives",
        "0",
        "--piper-positives",
        "0",
        "--noise-clips",
        "40",
        "--copies",
        "2",
        "--epochs",
        "3",
    ];
    let o = bin()
        .args(["--json", "wakeword", "train", "hey toaster", "--out"])
        .arg(&out)
        .args(small)
        .output()
        .expect("wakeword train");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = json_line(&o);
    assert!(out.is_file(), "{summary}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("hey_toaster.rpw.json")).expect("manifest"),
    )
    .expect("manifest is JSON");
    assert_eq!(manifest["phrase"], "hey toaster", "{manifest}");
    assert_eq!(manifest["seed"], 1, "{manifest}");
    let sha = manifest["output"]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no output sha256: {manifest}"));
    {
        use sha2::Digest;
        let actual = hex::encode(sha2::Sha256::digest(std::fs::read(&out).expect("model")));
        assert_eq!(sha, actual, "{manifest}");
    }
    // The same seed gives the same file.
    let again = dir.path().join("again.rpw");
    let o = bin()
        .args(["wakeword", "train", "hey toaster", "--out"])
        .arg(&again)
        .args(small)
        .output()
        .expect("wakeword train");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&out).expect("model"),
        std::fs::read(&again).expect("model"),
        "training is not reproducible"
    );
    // The daemon's detector loads it (stage 1 only: no whisper needed).
    let o = bin()
        .args(["--json", "wakeword", "test", "--stage1-only", "--model"])
        .arg(&out)
        .arg("--positives")
        .arg(repo("tests/data/speech/timer.wav"))
        .output()
        .expect("wakeword test");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_line(&o)["positives"], 1);
}

#[test]
fn a_damaged_or_missing_wake_model_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.rpw");
    std::fs::write(&bad, b"\x00\x01 not a model").expect("write");
    std::fs::write(dir.path().join("bad.rpw.json"), r#"{"phrase": "jarvis"}"#).expect("write");
    for (model, says) in [
        (bad.clone(), "bad.rpw"),
        (dir.path().join("missing.rpw"), "make-wakeword-model.sh"),
    ] {
        let o = bin()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["run", "--tts", "none", "--ack", "none", "--wake-model"])
            .arg(&model)
            .args(["--input", "tests/data/speech/timer.wav"])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_config_names_several_wake_words_each_with_its_sensitivity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = repo("models/jarvis.rpw");
    let write = |name: &str, body: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write config");
        path
    };
    // Out of range: a clear error naming the key.
    let bad = write(
        "bad.toml",
        format!(
            "[[wakeword.words]]\nmodel = {:?}\nsensitivity = 2.0\n",
            models.display().to_string()
        ),
    );
    let o = bin()
        .arg("--config")
        .arg(&bad)
        .args(["intents", "check"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("sensitivity"), "{stderr}");

    let Some(whisper) = whisper_model() else {
        skip::missing("the rest needs a whisper model (scripts/test.sh installs it)");
        return;
    };
    // Two words: the second (a phrase nobody says) never wakes; the first
    // does, and the wake event names it.
    let good = write(
        "good.toml",
        format!(
            "intents_dir = {intents:?}\n\
             [[wakeword.words]]\nmodel = {m:?}\nphrase = \"toaster\"\nsensitivity = 0.2\n\
             [[wakeword.words]]\nmodel = {m:?}\nphrase = \"jarvis\"\nsensitivity = 0.6\n",
            intents = repo("intents").display().to_string(),
            m = models.display().to_string()
        ),
    );
    let o = bin()
        .arg("--config")
        .arg(&good)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--json", "run", "--tts", "none", "--ack", "none", "--model"])
        .arg(&whisper)
        .args(["--input", "tests/data/speech/jarvis_timer.wav"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let wakes: Vec<&Value> = events.iter().filter(|e| e["event"] == "wake").collect();
    assert_eq!(wakes.len(), 1, "{events:#?}");
    assert_eq!(wakes[0]["phrase"], "jarvis", "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "intent" && e["intent"] == "StartTimer"),
        "{events:#?}"
    );
}
