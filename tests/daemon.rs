//! `voicegate run` end to end: a timer set by voice rings through the
//! configured ring command when it is due, and "stop" silences it. (The
//! schedule's logic is tested with an injected clock in tests/alarms.rs;
//! this checks the real process wires it up, with a one-second timer.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn a_timer_rings_on_time_and_stop_silences_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rang = dir.path().join("rang.txt");
    let config = dir.path().join("voicegate.toml");
    std::fs::write(
        &config,
        format!(
            "[alarms]\nring_command = \"echo \\\"$VOICEGATE_RING\\\" >> {}; sleep 60\"\n",
            rang.display()
        ),
    )
    .expect("config");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_voicegate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["run", "--text", "--tts", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut stdin = daemon.stdin.take().expect("stdin");
    let stdout = daemon.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |pred: &dyn Fn(&Value) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    };
    stdin
        .write_all(b"set a timer for 1 second\n")
        .expect("write");
    wait_for(
        &|v| v["event"] == "executed" && v["intent"] == "StartTimer",
        "the timer to be set",
    );
    let set_at = Instant::now();
    wait_for(
        &|v| v["event"] == "response" && v["text"].as_str().unwrap_or("").contains("timer is done"),
        "the timer to ring",
    );
    let rang_after = set_at.elapsed();
    assert!(
        rang_after < Duration::from_secs(5),
        "rang {rang_after:?} after setting a 1 s timer"
    );
    // The shell creates the file (`>>`) before `echo` writes to it: wait
    // for what it writes, not for the file.
    let wrote = || {
        std::fs::read_to_string(&rang)
            .unwrap_or_default()
            .contains("timer")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !wrote() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(wrote(), "the ring command ran");

    // While it rings, "stop" means the alarm (the context says it rings).
    stdin.write_all(b"stop\n").expect("write");
    let v = wait_for(
        &|v| v["event"] == "executed" || v["event"] == "not_understood",
        "stop to be handled",
    );
    assert_eq!(v["intent"], "StopAlarm", "{v}");
    // Nothing rings now, so a bare "stop" stops nothing.
    stdin.write_all(b"stop\n").expect("write");
    let v = wait_for(&|v| v["event"] != "intent", "a bare stop to be handled");
    assert!(
        v["event"] == "response" || v["event"] == "not_understood",
        "{v}"
    );
    assert_ne!(v["event"], "executed", "{v}");

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}
