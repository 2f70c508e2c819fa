//! Reliability of high-stakes actions, through the real binary: a local HTTP
//! server plays the merchant; the process is killed (SIGKILL) at each step
//! between confirmation and result; the audit database is made unwritable;
//! `audit verify` runs while the daemon writes; the daemon stops on SIGTERM;
//! a webhook that hangs holds up neither alarms nor the spend cap.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A merchant on 127.0.0.1 that records each request's Idempotency-Key and
/// answers with `status` (after `delay`, each connection on its own thread).
/// It stops when dropped.
struct Merchant {
    port: u16,
    keys: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Merchant {
    fn start(status: u16) -> Merchant {
        Merchant::start_slow(status, Duration::ZERO)
    }

    fn start_slow(status: u16, delay: Duration) -> Merchant {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let keys = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (k, s) = (keys.clone(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let k = k.clone();
                thread::spawn(move || serve(stream, status, delay, &k));
            }
        });
        Merchant { port, keys, stop }
    }

    fn requests(&self) -> Vec<String> {
        self.keys.lock().expect("lock").clone()
    }

    /// The keys seen, once `n` requests have arrived (or after 10 s).
    fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.requests().len() < n && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.requests()
    }
}

/// Reads one request, records its key, waits `delay`, answers `status`.
fn serve(stream: std::net::TcpStream, status: u16, delay: Duration, keys: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut key = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("idempotency-key:") {
            key = v.trim().to_string();
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    keys.lock().expect("lock").push(key);
    thread::sleep(delay);
    let text = r#"{"message":"Order placed"}"#;
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = reader.get_mut().write_all(reply.as_bytes());
}

impl Drop for Merchant {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Home {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

fn home(merchant: Option<&Merchant>) -> Home {
    home_with(merchant, 5, "")
}

/// A home whose webhook times out after `timeout_secs`, with `extra` TOML
/// before the handler table.
fn home_with(merchant: Option<&Merchant>, timeout_secs: u64, extra: &str) -> Home {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("voicegate.toml");
    let mut toml = extra.to_string();
    if let Some(m) = merchant {
        toml.push_str(&format!(
            "[handlers.\"purchase.order\"]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/orders\"\ntimeout_secs = {timeout_secs}\n",
            m.port
        ));
    }
    std::fs::write(&config, toml).expect("config");
    Home {
        _dir: dir,
        data,
        config,
    }
}

fn voicegate(home: &Home) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--config")
        .arg(&home.config)
        .arg("--data-dir")
        .arg(&home.data)
        .env_remove("VOICEGATE_TEST_KILL_AT");
    cmd
}

fn chat(home: &Home, input: &str, kill_at: Option<&str>) -> Output {
    let mut cmd = voicegate(home);
    cmd.args(["--json", "chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(step) = kill_at {
        cmd.env("VOICEGATE_TEST_KILL_AT", step);
    }
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kinds(o: &Output) -> Vec<String> {
    events(o)
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect()
}

/// (outcome, detail) of every audit row, oldest first.
fn audit(home: &Home) -> Vec<(String, String)> {
    let o = voicegate(home)
        .args(["--json", "audit", "list"])
        .output()
        .expect("audit list");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["outcome"].as_str().unwrap_or("").to_string(),
                v["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn outcomes(home: &Home) -> Vec<String> {
    audit(home).into_iter().map(|(o, _)| o).collect()
}

fn verify_ok(home: &Home) -> bool {
    voicegate(home)
        .args(["audit", "verify"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn webhook_merchant_gets_one_post_keyed_by_the_action_id() {
    let merchant = Merchant::start(200);
    let home = home(Some(&merchant));
    let o = chat(&home, "buy two packs of batteries\nyes\nyes\n", None);
    let ev = events(&o);
    let done: Vec<&Value> = ev.iter().filter(|e| e["event"] == "executed").collect();
    assert_eq!(done.len(), 1, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(done[0]["message"], "Order placed");
    let keys = merchant.requests();
    assert_eq!(
        keys,
        vec![done[0]["action_id"].as_str().unwrap_or("?").to_string()]
    );
    assert_eq!(outcomes(&home), ["requested", "confirmed", "executed"]);
    assert!(verify_ok(&home));
}

#[test]
fn merchant_error_is_reported_and_recorded_as_failed() {
    let merchant = Merchant::start(422);
    let home = home(Some(&merchant));
    let o = chat(&home, "buy two packs of batteries\nyes\n", None);
    assert!(
        kinds(&o).contains(&"failed".to_string()),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!kinds(&o).contains(&"executed".to_string()));
    assert_eq!(outcomes(&home), ["requested", "confirmed", "failed"]);
    assert_eq!(merchant.requests().len(), 1, "never retried");
}

/// A 5xx may come from a merchant that took the order and then broke: the
/// outcome is unknown, never failed.
#[test]
fn merchant_5xx_is_recorded_as_unknown() {
    let merchant = Merchant::start(502);
    let home = home(Some(&merchant));
    let o = chat(&home, "buy two packs of batteries\nyes\n", None);
    assert!(
        kinds(&o).contains(&"outcome_unknown".to_string()),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(outcomes(&home), ["requested", "confirmed", "unknown"]);
    assert_eq!(merchant.requests().len(), 1, "never retried");
}

/// The merchant takes the order but answers only after the client gave up.
/// The outcome is `unknown`: the user hears so, it counts toward the spend
/// cap, and the same order confirmed again is sent with the same
/// Idempotency-Key, so a merchant that honours keys charges once.
#[test]
fn order_answered_after_the_timeout_is_unknown_counted_and_resent_with_the_same_key() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(2));
    // 6 + 6 fit under the cap; a third 6 only if the first two are not counted.
    let home = home_with(
        Some(&merchant),
        1,
        "[gate]\ndaily_spend_cap = \"15.00 USD\"\n[prices]\n\"paper towels\" = \"6.00 USD\"\n",
    );
    let o = chat(
        &home,
        "order paper towels\nyes\norder paper towels\nyes\norder paper towels\nyes\n",
        None,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let ev = events(&o);
    let of = |kind: &str| -> Vec<&Value> { ev.iter().filter(|e| e["event"] == kind).collect() };

    // Both runs are unknown, and the user is told to check.
    let unknown = of("outcome_unknown");
    assert_eq!(unknown.len(), 2, "{stdout}");
    assert!(
        of("failed").is_empty() && of("executed").is_empty(),
        "{stdout}"
    );
    let first = unknown[0]["action_id"].as_str().expect("action id");
    let second = unknown[1]["action_id"].as_str().expect("action id");
    assert_ne!(first, second, "two actions");
    assert!(
        unknown[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer within 1 s")),
        "{stdout}"
    );
    let said: Vec<&str> = of("response")
        .iter()
        .filter(|e| e["action_id"] == first)
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        said.iter()
            .any(|t| t.contains("I don't know whether that went through")
                && t.contains("Please check before you order it again")),
        "{said:?}"
    );

    // The unknown orders count: the third one would take the day to 18.00.
    let refused = of("refused");
    assert_eq!(refused.len(), 1, "{stdout}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("12.00 USD already spent")),
        "{stdout}"
    );

    // The merchant saw the repeat under the first order's key.
    let keys = merchant.wait_for(2);
    assert_eq!(keys, [first, first], "{stdout}");

    let got = outcomes(&home);
    assert_eq!(got.iter().filter(|o| *o == "unknown").count(), 2, "{got:?}");
    assert!(
        !got.iter().any(|o| o == "failed" || o == "executed"),
        "{got:?}"
    );
    assert!(verify_ok(&home));
}

/// A repeat reuses the key of an unknown order only within 10 minutes of it
/// (the virtual clock moves on `/wait`).
#[test]
fn an_unknown_orders_key_is_reused_only_within_ten_minutes() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(2));
    let home = home_with(Some(&merchant), 1, "");
    let mut cmd = voicegate(&home);
    cmd.args(["--json", "chat", "--virtual-clock"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"order paper towels\nyes\n/wait 599\norder paper towels\nyes\n\
              /wait 601\norder paper towels\nyes\n",
        )
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    let ids: Vec<String> = events(&o)
        .iter()
        .filter(|e| e["event"] == "outcome_unknown")
        .filter_map(|e| e["action_id"].as_str().map(String::from))
        .collect();
    assert_eq!(ids.len(), 3, "{}", String::from_utf8_lossy(&o.stdout));
    let keys = merchant.wait_for(3);
    // 599 s after the first: its key. 601 s after the second: a new one.
    assert_eq!(keys, [ids[0].as_str(), &ids[0], &ids[2]]);
}

/// After `executed` (the user heard "done") or `failed` (nothing was
/// charged) the same order asked again is a new order, with its own key.
#[test]
fn a_repeat_after_executed_or_failed_gets_its_own_key() {
    for status in [200, 422] {
        let merchant = Merchant::start(status);
        let home = home(Some(&merchant));
        let o = chat(
            &home,
            "order paper towels\nyes\norder paper towels\nyes\n",
            None,
        );
        let ids: Vec<String> = events(&o)
            .iter()
            .filter(|e| e["event"] == "executed" || e["event"] == "failed")
            .filter_map(|e| e["action_id"].as_str().map(String::from))
            .collect();
        assert_eq!(
            ids.len(),
            2,
            "{status}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert_ne!(ids[0], ids[1]);
        assert_eq!(
            merchant.wait_for(2),
            ids,
            "{status}: each its own id as key"
        );
    }
}

/// A command handler gets a minimal environment: what its table names in
/// `env` is passed through from voicegate's, anything else (a secret meant
/// for something else) is not.
#[test]
fn command_handler_gets_only_the_variables_it_names() {
    let home = home(None);
    let seen = home._dir.path().join("env.txt");
    let toml = format!(
        "[handlers.\"purchase.order\"]\ntype = \"command\"\nprogram = \"/bin/sh\"\n\
         args = [\"-c\", \"env > '{}'; echo Ordered\"]\nenv = [\"SHOP_TOKEN\", \"NOT_SET_ANYWHERE\"]\n",
        seen.display()
    );
    std::fs::write(&home.config, toml).expect("config");
    let mut cmd = voicegate(&home);
    cmd.args(["--json", "chat"])
        .env("SHOP_TOKEN", "listed-value")
        .env("UNRELATED_SECRET", "hunter2")
        .env_remove("NOT_SET_ANYWHERE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"order paper towels\nyes\n")
        .expect("write");
    let o = child.wait_with_output().expect("wait");
    let ev = events(&o);
    let done: Vec<&Value> = ev.iter().filter(|e| e["event"] == "executed").collect();
    assert_eq!(done.len(), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let env = std::fs::read_to_string(&seen).expect("the handler wrote its environment");
    let lines: Vec<&str> = env.lines().collect();
    assert!(lines.contains(&"SHOP_TOKEN=listed-value"), "{env}");
    assert!(
        lines.contains(&"PATH=/usr/local/bin:/usr/bin:/bin"),
        "{env}"
    );
    let id = done[0]["action_id"].as_str().expect("id");
    assert!(
        lines.contains(&format!("VOICEGATE_ACTION_ID={id}").as_str()),
        "{env}"
    );
    assert!(
        lines.contains(&format!("VOICEGATE_IDEMPOTENCY_KEY={id}").as_str()),
        "{env}"
    );
    assert!(
        lines.contains(&"VOICEGATE_ACTION_KIND=purchase.order"),
        "{env}"
    );
    assert!(
        !env.contains("hunter2") && !env.contains("UNRELATED_SECRET"),
        "{env}"
    );
    assert!(!env.contains("NOT_SET_ANYWHERE"), "{env}");
    assert!(!env.contains("HOME="), "{env}");
}

/// SIGKILL at each step between confirmation and result: after a restart
/// nothing runs twice, and an execution that started without a result is
/// `unknown`, never retried.
#[test]
fn sigkill_at_each_step_never_runs_twice() {
    if !cfg!(debug_assertions) {
        // The binary under test is built with the same profile as this test.
        eprintln!("skipping: the crash hook exists only in debug builds");
        return;
    }
    // (step, merchant requests by the time of the kill, outcome recorded at restart, detail contains)
    let cases = [
        ("after_confirmed", 0, "failed", "before it started"),
        ("after_started", 0, "unknown", "needs review"),
        ("after_executed", 1, "unknown", "needs review"),
    ];
    for (step, requests, outcome, detail) in cases {
        let merchant = Merchant::start(200);
        let home = home(Some(&merchant));
        let o = chat(&home, "buy two packs of batteries\nyes\n", Some(step));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&o.status),
            Some(9),
            "{step}: expected SIGKILL, got {:?}",
            o.status
        );
        assert!(!kinds(&o).contains(&"executed".to_string()), "{step}");
        assert_eq!(
            merchant.requests().len(),
            requests,
            "{step}: requests before restart"
        );

        // Restart (any command reconciles), twice: recovery is recorded once.
        for _ in 0..2 {
            let o = chat(&home, "set a timer for 1 minute\n", None);
            assert!(
                o.status.success(),
                "{step}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let rows = audit(&home);
        let got: Vec<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(got, ["requested", "confirmed", outcome], "{step}");
        assert!(rows[2].1.contains(detail), "{step}: {:?}", rows[2]);
        assert_eq!(
            merchant.requests().len(),
            requests,
            "{step}: nothing is retried"
        );
        assert!(verify_ok(&home), "{step}");
    }
}

#[test]
fn an_unwritable_audit_log_stops_the_purchase_with_a_clear_error() {
    let merchant = Merchant::start(200);
    let home = home(Some(&merchant));
    // The audit database path is a directory: it cannot be opened or written.
    std::fs::create_dir_all(home.data.join("audit.db")).expect("dir");
    let o = chat(
        &home,
        "buy two packs of batteries\nyes\nset a timer for 2 minutes\n",
        None,
    );
    let ev = events(&o);
    let k: Vec<&str> = ev
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert!(k.contains(&"refused"), "{k:?}");
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "executed" && e["risk"] == "high"),
        "{k:?}"
    );
    assert!(
        ev.iter().any(|e| e["event"] == "response"
            && e["text"].as_str().unwrap_or("").contains("can't record")),
        "{k:?}"
    );
    // Low-stakes commands still work.
    assert!(
        ev.iter()
            .any(|e| e["event"] == "executed" && e["risk"] == "low"),
        "{k:?}"
    );
    assert!(merchant.requests().is_empty());
}

#[test]
fn a_corrupt_audit_log_stops_the_purchase() {
    let home = home(None);
    std::fs::create_dir_all(&home.data).expect("dir");
    std::fs::write(
        home.data.join("audit.db"),
        b"this is not a database, just bytes",
    )
    .expect("write");
    let o = chat(&home, "buy two packs of batteries\nyes\n", None);
    let k = kinds(&o);
    assert!(k.contains(&"refused".to_string()), "{k:?}");
    assert!(!k.contains(&"executed".to_string()), "{k:?}");
}

fn spawn_daemon(home: &Home) -> Child {
    voicegate(home)
        .args(["--json", "run", "--text", "--tts", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run")
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

#[test]
fn audit_verify_passes_while_the_daemon_writes() {
    let home = home(None);
    let mut daemon = spawn_daemon(&home);
    let mut stdin = daemon.stdin.take().expect("stdin");
    let writer = thread::spawn(move || {
        for _ in 0..40 {
            let _ = stdin.write_all(b"buy paper towels\nyes\n");
            thread::sleep(Duration::from_millis(15));
        }
        stdin
    });
    let mut verified = 0;
    let start = Instant::now();
    while !writer.is_finished() && start.elapsed() < Duration::from_secs(60) {
        let o = voicegate(&home)
            .args(["audit", "verify"])
            .output()
            .expect("verify");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        verified += 1;
    }
    let _stdin = writer.join().expect("writer");
    // Let the daemon catch up, then stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outcomes(&home).iter().filter(|o| *o == "executed").count() < 40
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    terminate(&mut daemon);
    let _ = daemon.wait();
    assert!(verified >= 1);
    assert_eq!(
        outcomes(&home).iter().filter(|o| *o == "executed").count(),
        40
    );
    assert!(verify_ok(&home));
}

#[test]
fn sigterm_records_a_pending_confirmation_as_expired() {
    let home = home(None);
    let mut daemon = spawn_daemon(&home);
    let mut stdin = daemon.stdin.take().expect("stdin");
    stdin
        .write_all(b"book a table for two at 8 pm tomorrow\n")
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !outcomes(&home).contains(&"requested".to_string()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    terminate(&mut daemon);
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(outcomes(&home), ["requested", "expired"]);
    drop(stdin);
}

/// A daemon (`run --text`) fed line by line, its events read as they come,
/// each with the moment it arrived.
struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    events: std::sync::mpsc::Receiver<(Value, Instant)>,
    /// Every event seen so far, in order.
    seen: Vec<Value>,
}

impl Session {
    fn start(home: &Home) -> Session {
        let mut child = spawn_daemon(home);
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send((v, Instant::now()));
                }
            }
        });
        Session {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write");
    }

    /// The first new event that `pred` accepts, and when it arrived.
    fn wait_for(&mut self, pred: impl Fn(&Value) -> bool, what: &str) -> (Value, Instant) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((v, at)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return (v, at);
                    }
                }
                Err(_) => panic!("timed out waiting for {what}; saw {:?}", self.seen),
            }
        }
    }

    fn stop(mut self) {
        terminate(&mut self.child);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status:?}");
    }
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == kind
}

/// Issue 14: a merchant that hangs must not hold up the rest of the
/// daemon. A timer comes due while a purchase waits for its webhook (which
/// never answers): it rings on time, and the purchase's outcome is still
/// recorded `unknown` when the webhook times out.
#[test]
fn a_timer_rings_on_time_while_a_webhook_hangs() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(60));
    let home = home_with(
        Some(&merchant),
        4,
        "[alarms]\nring_command = \"sleep 30\"\n",
    );
    let mut session = Session::start(&home);
    session.say("set a timer for 2 seconds");
    let (_, set_at) = session.wait_for(
        |v| v["event"] == "executed" && v["intent"] == "StartTimer",
        "the timer to be set",
    );
    session.say("buy paper towels");
    session.wait_for(is("confirm_request"), "the read-back");
    session.say("yes");
    merchant.wait_for(1);
    let (_, rang_at) = session.wait_for(
        |v| v["event"] == "response" && v["text"].as_str().unwrap_or("").contains("timer is done"),
        "the timer to ring",
    );
    // Due 2 s after it was set (a little before `set_at`); the webhook
    // hangs until 4 s after "yes".
    let late = rang_at.duration_since(set_at);
    assert!(
        late < Duration::from_millis(3000),
        "rang {late:?} after a 2 s timer was set, while the webhook hung"
    );
    assert!(
        !session.seen.iter().any(|v| v["event"] == "outcome_unknown"),
        "the purchase was still pending when the timer rang: {:?}",
        session.seen
    );
    let (unknown, _) = session.wait_for(is("outcome_unknown"), "the purchase's outcome");
    assert_eq!(unknown["intent"], "OrderItem", "{unknown}");
    session.stop();
    let got = outcomes(&home);
    assert_eq!(got, ["requested", "confirmed", "unknown"], "{got:?}");
    assert!(verify_ok(&home));
}

/// An order still in flight counts toward the daily cap as an `unknown`
/// one does: a second order while the first webhook hangs is refused if
/// the two together would go over.
#[test]
fn an_order_in_flight_counts_toward_the_spend_cap() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(60));
    let home = home_with(
        Some(&merchant),
        4,
        "[gate]\ndaily_spend_cap = \"10.00 USD\"\n[prices]\n\"paper towels\" = \"6.00 USD\"\n",
    );
    let mut session = Session::start(&home);
    session.say("buy paper towels");
    session.wait_for(is("confirm_request"), "the first read-back");
    session.say("yes");
    merchant.wait_for(1);
    session.say("buy paper towels");
    let (refused, _) = session.wait_for(
        |v| v["event"] == "refused" || v["event"] == "confirm_request",
        "the second order to be refused",
    );
    assert_eq!(refused["event"], "refused", "{:?}", session.seen);
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("6.00 USD already spent")),
        "{refused}"
    );
    assert!(
        !session.seen.iter().any(|v| v["event"] == "outcome_unknown"),
        "the first order was still in flight: {:?}",
        session.seen
    );
    session.wait_for(is("outcome_unknown"), "the first order's outcome");
    session.stop();
    assert_eq!(merchant.requests().len(), 1);
}

/// A confirmed repeat of an order still in flight is sent with that
/// order's key, as a repeat of an `unknown` one is.
#[test]
fn a_repeat_of_an_order_in_flight_reuses_its_key() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(60));
    let home = home_with(Some(&merchant), 3, "");
    let mut session = Session::start(&home);
    session.say("buy paper towels");
    session.wait_for(is("confirm_request"), "the first read-back");
    session.say("yes");
    // The first order is on its way (and hangs) when the second is confirmed.
    merchant.wait_for(1);
    session.say("buy paper towels");
    session.wait_for(is("confirm_request"), "the second read-back");
    session.say("yes");
    while session
        .seen
        .iter()
        .filter(|v| is("outcome_unknown")(v))
        .count()
        < 2
    {
        session.wait_for(is("outcome_unknown"), "both outcomes");
    }
    let unknown: Vec<&Value> = session
        .seen
        .iter()
        .filter(|v| is("outcome_unknown")(v))
        .collect();
    let (first, second) = (unknown[0], unknown[1]);
    assert_ne!(first["action_id"], second["action_id"]);
    let keys = merchant.wait_for(2);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "{keys:?}");
    assert_eq!(Some(keys[0].as_str()), first["action_id"].as_str());
    session.stop();
}

/// SIGTERM while a webhook hangs: the daemon waits for its outcome and
/// records it before it stops, rather than leave it for `recover`.
#[test]
fn sigterm_waits_for_an_order_in_flight_and_records_it() {
    let merchant = Merchant::start_slow(200, Duration::from_secs(60));
    let home = home_with(Some(&merchant), 2, "");
    let mut session = Session::start(&home);
    session.say("buy paper towels");
    session.wait_for(is("confirm_request"), "the read-back");
    session.say("yes");
    merchant.wait_for(1);
    terminate(&mut session.child);
    session.wait_for(is("outcome_unknown"), "the outcome before stopping");
    session.wait_for(
        |v| v["event"] == "response" && v["text"] == "voicegate stopped.",
        "the daemon to stop",
    );
    let status = session.child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let got = outcomes(&home);
    assert_eq!(got, ["requested", "confirmed", "unknown"], "{got:?}");
}
