//! `voicegate serve --wyoming` end to end: the real binary, driven by the
//! real `wyoming` package from PyPI (`tests/wyoming/client.py`, in the
//! virtualenv `scripts/wyoming-venv.sh` makes, which `scripts/test.sh`
//! runs). Needs the default whisper model too. Without either the tests
//! skip with a printed reason, except under CI, where they fail.

#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use voicegate::stt::model;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

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

fn python() -> PathBuf {
    repo().join("target/wyoming-venv/bin/python")
}

/// What the tests need, or `None` after saying why they skip.
fn ready() -> Option<PathBuf> {
    let Some(model) = model() else {
        skip::missing(format!(
            "the whisper model {} is not installed (scripts/install-model.sh {})",
            model::DEFAULT_MODEL,
            model::DEFAULT_MODEL
        ));
        return None;
    };
    if !python().is_file() {
        skip::missing("the wyoming client's virtualenv is missing (run scripts/wyoming-venv.sh)");
        return None;
    }
    Some(model)
}

/// A running `voicegate serve --wyoming` on a free loopback port, with its
/// own data directory; killed when dropped.
struct Server {
    child: Child,
    uri: String,
    dir: tempfile::TempDir,
    /// What it prints after `serving`, line by line.
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(model: &Path) -> Server {
        Self::start_with(model, "")
    }

    /// With `config` as the config file's text (plus the repo's intents).
    fn start_with(model: &Path, config: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("voicegate.toml");
        std::fs::write(
            &config_path,
            format!(
                "intents_dir = {:?}\n{config}",
                repo().join("intents").display().to_string()
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_voicegate"))
            .current_dir(repo())
            .args(["--json", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--wyoming", "tcp://127.0.0.1:0", "--model"])
            .arg(model)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("voicegate serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let uri = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("voicegate serve did not say where it listens")
            });
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["event"] == "serving" {
                break v["wyoming"].as_str().expect("uri").to_string();
            }
        };
        Server {
            child,
            uri,
            dir,
            lines: rx,
        }
    }

    /// The first event it prints (after `serving`) that `wanted` accepts,
    /// and when it was read; `None` if none comes within `limit`.
    fn printed(
        &self,
        limit: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<(Value, Instant)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if wanted(&v) {
                return Some((v, Instant::now()));
            }
        }
    }

    /// Runs the client with `args`; its events.
    fn client(&self, args: &[&str]) -> Vec<Value> {
        let o = Command::new(python())
            .arg(repo().join("tests/wyoming/client.py"))
            .arg(&self.uri)
            .args(args)
            .output()
            .expect("the wyoming client");
        assert!(
            o.status.success(),
            "client {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// The audit log's rows.
    fn audit(&self) -> Vec<Value> {
        let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
            .args(["--json", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["audit", "list"])
            .output()
            .expect("audit list");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stops it with SIGTERM, as a service manager would, and waits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "serve exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("serve did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/data/speech")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn describe_lists_the_model_the_wake_word_and_the_intents() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let events = server.client(&["describe"]);
    let parsed = of_type(&events, "parsed");
    assert_eq!(parsed.len(), 1, "{events:?}");
    let data = &parsed[0]["data"];
    let asr = data["asr"].as_array().expect("asr");
    assert!(
        asr[0].as_str().is_some_and(|m| m.contains("tiny.en")),
        "{data}"
    );
    assert_eq!(data["wake"], serde_json::json!(["jarvis"]), "{data}");
    assert_eq!(data["handle"].as_array().map(Vec::len), Some(1), "{data}");
    server.stop();
}

#[test]
fn fixtures_are_transcribed_in_any_rate_and_channel_count() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let events = server.client(&["transcribe", &fixture("purchase.wav")]);
    let t = of_type(&events, "transcript");
    assert_eq!(t.len(), 1, "{events:?}");
    let text = t[0]["data"]["text"].as_str().unwrap_or("").to_lowercase();
    assert!(text.contains("batteries"), "{text}");
    // 48 kHz stereo, made by repeating samples: the server resamples.
    let events = server.client(&[
        "transcribe",
        &fixture("timer.wav"),
        "--rate",
        "48000",
        "--channels",
        "2",
    ]);
    let t = of_type(&events, "transcript");
    let text = t[0]["data"]["text"].as_str().unwrap_or("").to_lowercase();
    assert!(text.contains("timer") && text.contains("10"), "{text}");
    // A satellite's audio with the wake word: the transcript is the command.
    let events = server.client(&["transcribe", &fixture("jarvis_timer.wav")]);
    let t = of_type(&events, "transcript");
    let text = t[0]["data"]["text"].as_str().unwrap_or("").to_lowercase();
    assert!(text.starts_with("set a timer"), "{text}");
    server.stop();
}

#[test]
fn jarvis_is_detected_and_other_speech_is_not() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let events = server.client(&["detect", &fixture("jarvis_timer.wav"), "--names", "jarvis"]);
    let hits = of_type(&events, "detection");
    assert_eq!(hits.len(), 1, "{events:?}");
    assert_eq!(hits[0]["data"]["name"], "jarvis");
    // The word starts 0.3 s in; stage 1 fires near its end.
    let at = hits[0]["data"]["timestamp"].as_u64().expect("timestamp");
    assert!((300..=2_500).contains(&at), "{at}");
    assert!(of_type(&events, "not-detected").is_empty(), "{events:?}");

    // Chunks without an audio-start (each names its format), at 48 kHz.
    let events = server.client(&[
        "detect",
        &fixture("jarvis_music.wav"),
        "--no-start",
        "--rate",
        "48000",
    ]);
    assert_eq!(of_type(&events, "detection").len(), 1, "{events:?}");

    let events = server.client(&["detect", &fixture("timer.wav")]);
    assert!(of_type(&events, "detection").is_empty(), "{events:?}");
    assert_eq!(of_type(&events, "not-detected").len(), 1, "{events:?}");

    let events = server.client(&["detect", &fixture("timer.wav"), "--names", "computer"]);
    let errors = of_type(&events, "error");
    assert_eq!(errors[0]["data"]["code"], "unknown-wake-word", "{events:?}");
    server.stop();
}

#[test]
fn a_yes_confirms_only_the_read_back_asked_on_its_own_connection() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let events = server.client(&[
        "handle",
        "A:name=kitchen",
        "A:buy two packs of batteries",
        "B:name=garage",
        "B:yes",
        "A:yes",
    ]);
    let answers: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["conn"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap_or(""),
                e["data"]["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0].1, "handled", "{answers:?}");
    assert!(
        answers[0].2.contains("Order 2 packs of batteries"),
        "{answers:?}"
    );
    // The garage's "yes" finds nothing waiting in its own session.
    assert_eq!(answers[1].0, "B");
    assert!(answers[1].2.contains("nothing waiting"), "{answers:?}");
    // The kitchen's read-back is still waiting, and its "yes" runs it.
    assert_eq!(answers[2].0, "A");
    assert!(answers[2].2.starts_with("Recorded"), "{answers:?}");

    let rows = server.audit();
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["requested", "confirmed", "executed"], "{rows:?}");
    for row in &rows {
        let detail = row["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("via wyoming \"kitchen\" (127.0.0.1:"),
            "{row}"
        );
    }
    assert_eq!(rows[1]["reply_transcript"], "yes");
    server.stop();
}

#[test]
fn a_satellite_confirms_on_a_new_connection_as_home_assistant_sends_it() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    // Home Assistant opens a connection per sentence and names the
    // satellite in the context: the session is the satellite's.
    let events = server.client(&[
        "handle",
        "A:ctx=satellite_id=kitchen-satellite",
        "A:ctx=conversation_id=01KITCHEN",
        "A:buy two packs of batteries",
        "A:close",
        "B:ctx=satellite_id=garage-satellite",
        "B:yes",
        "B:close",
        "A:yes",
    ]);
    let texts: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(texts.len(), 3, "{events:?}");
    assert!(texts[0].contains("Order 2 packs"), "{texts:?}");
    assert!(texts[1].contains("nothing waiting"), "{texts:?}");
    assert!(texts[2].starts_with("Recorded"), "{texts:?}");
    let rows = server.audit();
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["requested", "confirmed", "executed"], "{rows:?}");
    for row in &rows {
        let detail = row["detail"].as_str().unwrap_or("");
        assert!(detail.contains("satellite_id kitchen-satellite"), "{row}");
    }
    server.stop();
}

/// `fixture` with white noise as loud as the speech (0 dB SNR), from a
/// fixed seed: whisper, held to the intents' grammar, still reads a
/// command out of it, but with a confidence near 0.
fn noisy(fixture_name: &str, out: &Path) {
    let mut reader = hound::WavReader::open(fixture(fixture_name)).expect("fixture");
    let spec = reader.spec();
    let clean: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let rms =
        (clean.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / clean.len() as f64).sqrt();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut writer = hound::WavWriter::create(out, spec).expect("noisy wav");
    for &v in &clean {
        // Box-Muller: a normal sample with the speech's RMS.
        let (u1, u2) = (uniform().max(1e-12), uniform());
        let noise = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * rms;
        let mixed = (f64::from(v) + noise).clamp(-32768.0, 32767.0) as i16;
        writer.write_sample(mixed).expect("sample");
    }
    writer.finalize().expect("finalize");
}

#[test]
fn a_transcript_whisper_was_unsure_of_runs_nothing_when_sent_back_to_be_handled() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let noisy_wav = server.dir.path().join("purchase_noisy.wav");
    noisy("purchase.wav", &noisy_wav);
    let events = server.client(&["transcribe", &noisy_wav.display().to_string()]);
    let heard = of_type(&events, "transcript")[0]["data"]["text"]
        .as_str()
        .expect("a transcript")
        .to_string();
    assert!(!heard.is_empty(), "{events:?}");
    // Home Assistant sends the transcript back as a new request: voicegate
    // knows it as its own, unsure, reading, and the gate acts on nothing.
    let events = server.client(&["handle", &format!("A:{heard}")]);
    let answer = events[0]["data"]["text"].as_str().unwrap_or("");
    assert!(
        answer.contains("not sure I heard"),
        "{heard:?} → {answer:?}"
    );
    assert!(server.audit().iter().all(|r| r["outcome"] != "requested"));
    server.stop();
}

#[test]
fn a_read_back_left_when_its_connection_closes_expires_and_says_whose_it_was() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    let events = server.client(&["handle", "A:buy two packs of batteries"]);
    assert_eq!(of_type(&events, "handled").len(), 1, "{events:?}");
    // Nobody else can answer it now.
    let events = server.client(&["handle", "B:yes"]);
    assert!(
        events[0]["data"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("nothing waiting")),
        "{events:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = server.audit();
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let outcomes: Vec<&str> = rows.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["requested", "expired"], "{rows:?}");
    // No name given: the peer address names the client.
    assert!(
        rows[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("via wyoming (127.0.0.1:")),
        "{rows:?}"
    );
    server.stop();
}

#[test]
fn bad_clients_get_an_error_or_a_closed_connection_and_others_are_served() {
    let Some(model) = ready() else { return };
    let server = Server::start(&model);
    // A client that stops mid-stream holds nothing up meanwhile.
    let stalled = {
        let python = python();
        let script = repo().join("tests/wyoming/client.py");
        let uri = server.uri.clone();
        std::thread::spawn(move || {
            Command::new(python)
                .arg(script)
                .arg(uri)
                .arg("half-stream")
                .output()
                .expect("client")
        })
    };
    let started = Instant::now();
    let events = server.client(&["describe"]);
    assert_eq!(of_type(&events, "info").len(), 1, "{events:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "describe waited"
    );

    let events = server.client(&["garbage"]);
    assert_eq!(events[0]["data"]["code"], "bad-event", "{events:?}");
    assert_eq!(events[1]["type"], "closed", "{events:?}");
    let events = server.client(&["oversized"]);
    assert_eq!(events[0]["data"]["code"], "too-large", "{events:?}");
    assert_eq!(events[1]["type"], "closed", "{events:?}");

    let stalled = stalled.join().expect("half-stream client");
    let stalled: Vec<Value> = String::from_utf8_lossy(&stalled.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(stalled[0]["data"]["code"], "timeout", "{stalled:?}");

    // And the server still transcribes.
    let events = server.client(&["transcribe", &fixture("timer.wav")]);
    assert_eq!(of_type(&events, "transcript").len(), 1, "{events:?}");
    server.stop();
}

#[test]
fn connections_over_the_limit_are_told_busy() {
    let Some(model) = ready() else { return };
    let server = Server::start_with(&model, "[wyoming]\nmax_connections = 1\n");
    let held = {
        let python = python();
        let script = repo().join("tests/wyoming/client.py");
        let uri = server.uri.clone();
        std::thread::spawn(move || {
            Command::new(python)
                .arg(script)
                .arg(uri)
                .arg("half-stream")
                .output()
                .expect("client")
        })
    };
    // Give the first client time to connect.
    std::thread::sleep(Duration::from_secs(2));
    let events = server.client(&["garbage"]);
    assert_eq!(events[0]["data"]["code"], "busy", "{events:?}");
    let _ = held.join();
    server.stop();
}

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(repo())
        .args(["serve", "--wyoming", "tcp://0.0.0.0:10700"])
        .output()
        .expect("voicegate serve");
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("allow_remote"), "{stderr}");
}

/// A ring command that notes what rings, then rings until it is stopped
/// (SIGTERM, as the ringer stops it), and notes that too.
fn ring_script(dir: &Path) -> PathBuf {
    let script = dir.join("ring.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$VOICEGATE_RING\" >> {rang}\n\
             trap 'echo stopped >> {stopped}; exit 0' TERM\n\
             sleep 60 &\nwait\n",
            rang = dir.join("rang").display(),
            stopped = dir.join("stopped").display(),
        ),
    )
    .expect("ring script");
    script
}

fn wait_for_file(path: &Path, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_timer_set_over_wyoming_rings_on_time_and_a_stop_from_any_client_silences_it() {
    let Some(model) = ready() else { return };
    let rings = tempfile::tempdir().expect("tempdir");
    let script = ring_script(rings.path());
    let server = Server::start_with(
        &model,
        &format!(
            "[alarms]\nring_command = {:?}\n",
            format!("sh {}", script.display())
        ),
    );
    let events = server.client(&["handle", "A:set a timer for 2 seconds"]);
    let set_at = Instant::now();
    let handled = of_type(&events, "handled");
    assert_eq!(handled.len(), 1, "{events:?}");

    // It rings on time: the ring command runs and serve says so.
    let (said, at) = server
        .printed(Duration::from_secs(10), |v| {
            v["event"] == "response"
                && v["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("timer is done"))
        })
        .expect("serve said the timer is done");
    let late = at.duration_since(set_at);
    assert!(
        late >= Duration::from_millis(1_500) && late <= Duration::from_millis(3_500),
        "rang {late:?} after it was set: {said}"
    );
    let rang = wait_for_file(&rings.path().join("rang"), Duration::from_secs(5))
        .expect("the ring command ran");
    assert!(rang.contains("timer"), "{rang}");
    assert!(!rings.path().join("stopped").exists());

    // "stop" from another satellite silences it: the ringing is the
    // household's, not the session's that set it.
    let events = server.client(&["handle", "B:stop"]);
    assert_eq!(of_type(&events, "handled").len(), 1, "{events:?}");
    assert!(
        wait_for_file(&rings.path().join("stopped"), Duration::from_secs(5)).is_some(),
        "the ring command was not stopped: {events:?}"
    );
    server.stop();
}
