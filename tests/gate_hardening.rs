//! Issue 13's promises about the gate, through the real binary: a spoken
//! PIN is never written or printed; the PIN lockout survives a restart;
//! one process owns a data directory; `gate hash-pin` asks on the terminal
//! without echo; a reload that changes the pending request's intent cancels
//! it; the config refuses prices the spend cap cannot count and old PIN
//! hashes. (The gate's own rules are conversations in
//! `tests/data/gate/cases.yaml`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

fn home(toml: &str) -> Home {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("voicegate.toml");
    std::fs::write(&config, toml).expect("config");
    Home { dir, data, config }
}

fn voicegate(home: &Home) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--config")
        .arg(&home.config)
        .arg("--data-dir")
        .arg(&home.data);
    cmd
}

fn run_with_input(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn voicegate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn chat(home: &Home, input: &str) -> Output {
    let mut cmd = voicegate(home);
    cmd.args(["--json", "chat"]);
    run_with_input(cmd, input)
}

fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kinds(out: &Output) -> Vec<String> {
    events(out)
        .iter()
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect()
}

/// A PIN hash made the way a user makes one (`--stdin` here; the terminal
/// path has its own test below).
fn pin_hash(pin: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    cmd.args(["gate", "hash-pin", "--stdin"]);
    let out = run_with_input(cmd, &format!("{pin}\n"));
    assert!(out.status.success(), "hash-pin: {out:?}");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(line.starts_with("pin_hash = \"$argon2id$"), "{line}");
    line
}

/// Text with every run of 32 or more hex digits and dashes removed (hashes,
/// digests, UUIDs): a 4-digit PIN can occur in those by chance, and they
/// carry no reply text.
fn without_hex_runs(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_hexdigit() || c == '-' {
            run.push(c);
            continue;
        }
        if run.len() < 32 {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    if run.len() < 32 {
        out.push_str(&run);
    }
    out
}

/// The printable runs of a binary file (what `strings` shows).
fn strings(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '\n'
            }
        })
        .collect()
}

#[test]
fn a_spoken_pin_is_never_written_or_printed() {
    let pin = "4321";
    let home = home(&format!(
        "[gate]\n{}\npin_kinds = [\"purchase.order\"]\n",
        pin_hash(pin)
    ));
    let out = chat(&home, &format!("buy paper towels\nyes\n{pin}\n"));
    let k = kinds(&out);
    assert!(k.contains(&"executed".to_string()), "{k:?}\n{out:?}");

    // Everything voicegate printed, and everything it can be asked for.
    let mut seen = vec![
        (
            "chat stdout",
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        (
            "chat stderr",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
    ];
    for args in [
        vec!["--json", "audit", "list"],
        vec!["audit", "list"],
        vec!["audit", "export", "--format", "csv"],
        vec!["audit", "export", "--format", "json"],
    ] {
        let mut cmd = voicegate(&home);
        cmd.args(&args);
        let o = run_with_input(cmd, "");
        assert!(o.status.success(), "{args:?}: {o:?}");
        seen.push(("audit", String::from_utf8_lossy(&o.stdout).into_owned()));
        seen.push(("audit", String::from_utf8_lossy(&o.stderr).into_owned()));
    }
    let exported = &seen[seen.len() - 2].1;
    assert!(
        exported.contains("[PIN]"),
        "the export shows that a PIN was given: {exported}"
    );
    // Every file in the data directory, databases and their logs included.
    for entry in std::fs::read_dir(&home.data).expect("data dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        seen.push(("data file", strings(&bytes)));
    }
    for (what, text) in seen {
        assert!(
            !without_hex_runs(&text).contains(pin),
            "{what} contains the PIN:\n{text}"
        );
    }
}

#[test]
fn the_pin_lockout_survives_a_restart() {
    let home = home(&format!(
        "[gate]\n{}\npin_kinds = [\"purchase.order\"]\npin_lockout_secs = 600\n",
        pin_hash("4321")
    ));
    let first = chat(&home, "buy paper towels\nyes\n1111\n2222\n3333\n");
    assert!(
        kinds(&first).contains(&"declined".to_string()),
        "{:?}",
        kinds(&first)
    );
    // A new process on the same data directory.
    let second = chat(&home, "buy paper towels\n");
    let refused: Vec<Value> = events(&second)
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", kinds(&second));
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("locked"),
        "{refused:?}"
    );
    // The lock belongs to that data directory: a fresh one is not locked.
    let fresh = self::home(&std::fs::read_to_string(&home.config).expect("config"));
    let out = chat(&fresh, "buy paper towels\n");
    assert!(
        kinds(&out).contains(&"confirm_request".to_string()),
        "{:?}",
        kinds(&out)
    );
}

#[test]
fn a_second_process_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let script = dir.path().join("slow-order.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}\nsleep 3\necho ordered\n",
            started.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let home = home(&format!(
        "[handlers.\"purchase.order\"]\ntype = \"command\"\nprogram = \"{}\"\ntimeout_secs = 20\n",
        script.display()
    ));
    let mut first = voicegate(&home)
        .args(["--json", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("first");
    let mut stdin = first.stdin.take().expect("stdin");
    stdin.write_all(b"buy paper towels\nyes\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the handler never started");
        thread::sleep(Duration::from_millis(20));
    }
    // While the first runs the order, a second process starts.
    for args in [
        vec!["--json", "chat"],
        vec!["say", "set a timer for 5 minutes"],
    ] {
        let mut cmd = voicegate(&home);
        cmd.args(&args);
        let second = run_with_input(cmd, "");
        assert!(!second.status.success(), "{args:?} started: {second:?}");
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains("another voicegate process")
                && err.contains(&format!("pid {}", first.id())),
            "{args:?}: {err}"
        );
    }
    drop(stdin);
    let out = first.wait_with_output().expect("first ends");
    let k: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["event"].as_str().map(str::to_string))
        .collect();
    assert!(k.contains(&"executed".to_string()), "{k:?}");
    // The second process recovered nothing: the order's last outcome is
    // the first process's own.
    let mut cmd = voicegate(&home);
    cmd.args(["--json", "audit", "list"]);
    let list = run_with_input(cmd, "");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(!text.contains("\"unknown\""), "{text}");
    assert!(text.contains("\"executed\""), "{text}");
}

#[test]
fn hash_pin_asks_on_the_terminal_without_echo() {
    // A pseudo-terminal that becomes the command's controlling terminal.
    let (mut master, slave) = open_pty();
    let slave_fd = {
        use std::os::fd::AsRawFd;
        slave.as_raw_fd()
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    cmd.args(["gate", "hash-pin"])
        .stdin(slave.try_clone().expect("slave"))
        .stdout(Stdio::piped())
        .stderr(slave.try_clone().expect("slave"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("hash-pin");
    drop(slave);
    // Everything the terminal shows, read on its own thread.
    let mut reader = master.try_clone().expect("master");
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
    });
    let mut screen = String::new();
    let mut wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !screen.contains(what) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(text) => screen.push_str(&text),
                Err(_) => panic!("no {what:?} on the terminal: {screen:?}"),
            }
        }
    };
    wait_for("PIN: ");
    master.write_all(b"864209\n").expect("type");
    wait_for("again: ");
    master.write_all(b"864209\n").expect("type");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("pin_hash = \"$argon2id$"), "{printed}");
    // Let the terminal's last output arrive, then check nothing echoed.
    thread::sleep(Duration::from_millis(200));
    while let Ok(text) = rx.try_recv() {
        screen.push_str(&text);
    }
    assert!(!screen.contains("864209"), "the PIN was echoed: {screen:?}");
}

fn open_pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fds we then own.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are open and owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    }
}

#[test]
fn a_reload_that_changes_the_pending_intent_cancels_it() {
    let home = home("");
    let intents = home.dir.path().join("intents");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("intents/en"),
        &intents,
    );
    let mut daemon = voicegate(&home)
        .arg("--intents")
        .arg(&intents)
        .args([
            "--json",
            "--confirm-timeout",
            "60",
            "run",
            "--text",
            "--tts",
            "none",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut stdin = daemon.stdin.take().expect("stdin");
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = daemon.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    };
    stdin.write_all(b"buy paper towels\n").expect("write");
    wait_for(&|v| v["event"] == "confirm_request", "the read-back");
    // The read-back changes while the request waits.
    let file = intents.join("purchases.yaml");
    let text = std::fs::read_to_string(&file).expect("purchases");
    let changed = text.replace(
        "confirm: \"Order {quantity}[ {unit.text}] {item}?\"",
        "confirm: \"Shall I order {quantity}[ {unit.text}] {item}?\"",
    );
    assert_ne!(text, changed, "the test's edit applies");
    // A newer modification time than the reload thread's first look.
    thread::sleep(Duration::from_millis(1100));
    std::fs::write(&file, changed).expect("edit");
    let expired = wait_for(&|v| v["event"] == "expired", "the request to be cancelled");
    assert_eq!(expired["intent"], "OrderItem");
    wait_for(
        &|v| v["event"] == "response" && v["text"].as_str().unwrap_or("").contains("changed"),
        "the reason to be said",
    );
    // "yes" now confirms nothing.
    stdin.write_all(b"yes\n").expect("write");
    wait_for(
        &|v| {
            v["event"] == "response" && v["text"].as_str().unwrap_or("").contains("nothing waiting")
        },
        "nothing to confirm",
    );
    drop(stdin);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

#[test]
fn the_config_refuses_what_the_gate_cannot_check() {
    for (toml, want) in [
        (
            "[gate]\ndaily_spend_cap = \"50.00 USD\"\n[prices]\n\"latte\" = \"4.50 EUR\"\n",
            "the cap can only count one currency",
        ),
        (
            "[gate]\npin_hash = \"0123456789abcdef$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n",
            "old SHA-256 PIN hash format",
        ),
        ("[gate]\npin_hash = \"4321\"\n", "not an Argon2 PIN hash"),
        (
            "[gate]\npin_kinds = [\"purchase.ordr\"]\n",
            "[gate] pin_kinds: unknown action kind 'purchase.ordr'",
        ),
    ] {
        let home = home(toml);
        let mut cmd = voicegate(&home);
        cmd.args(["say", "set a timer for 5 minutes"]);
        let out = run_with_input(cmd, "");
        assert!(!out.status.success(), "{toml}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{toml}: {err}");
    }
}

#[test]
fn an_overlong_typed_line_is_a_clear_error_and_the_session_goes_on() {
    let home = home("");
    let long = "buy paper towels ".repeat(100);
    let out = chat(&home, &format!("{long}\nset a timer for 5 minutes\n"));
    let ev = events(&out);
    let refused = ev
        .iter()
        .find(|e| e["event"] == "not_understood")
        .expect("the long line is refused");
    assert_eq!(refused["why"]["reason"], "too_long", "{refused}");
    assert!(
        ev.iter()
            .any(|e| e["event"] == "executed" && e["intent"] == "StartTimer"),
        "{:?}",
        kinds(&out)
    );
}
