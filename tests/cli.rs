//! End-to-end: the real `voicegate` binary, as people and scripts use it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voicegate"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("voicegate runs")
}

fn run_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("voicegate runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("voicegate finishes")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// What was said (the `response` events' texts), in order.
fn responses(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["event"] == "response")
        .filter_map(|e| e["text"].as_str())
        .collect()
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn data_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().display().to_string();
    (dir, path)
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["intents", "--help"],
        vec!["intents", "check", "--help"],
        vec!["intents", "test", "--help"],
        vec!["intents", "explain", "--help"],
        vec!["say", "--help"],
        vec!["chat", "--help"],
        vec!["audit", "--help"],
        vec!["audit", "list", "--help"],
        vec!["audit", "show", "--help"],
        vec!["audit", "verify", "--help"],
        vec!["audit", "export", "--help"],
        vec!["audit", "head", "--help"],
        vec!["gate", "hash-pin", "--help"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn shipped_intents_check_clean_and_pass_their_tests() {
    let o = run(&["intents", "check", "intents"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("0 error(s)"), "{}", text(&o));
    let o = run(&["intents", "test", "intents"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(" 0 failed"), "{}", text(&o));
}

#[test]
fn check_reports_file_line_col_with_a_caret_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "intents:\n  X:\n    risk: low\n    data:\n      - sentences: [\"turn on {device\"]\n",
    )
    .expect("write");
    let o = run(&["intents", "check", &dir.path().display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("{}:5:", file.display())), "{out}");
    assert!(out.contains("'{' is never closed"), "{out}");
    assert!(out.contains('^'), "{out}");
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("intents");
    for args in [
        vec![
            "--json",
            "intents",
            "check",
            dir.to_str().unwrap_or("intents"),
        ],
        vec![
            "intents",
            "check",
            dir.to_str().unwrap_or("intents"),
            "--json",
        ],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        assert_eq!(v["errors"], 0, "{v}");
    }
    let (_d, data) = data_dir();
    let o = run(&[
        "say",
        "set a timer for 5 minutes",
        "--data-dir",
        &data,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(kinds(&events(&o))[..2], ["intent", "executed"]);
}

#[test]
fn say_prints_intent_slots_and_risk() {
    let (_d, data) = data_dir();
    let o = run(&["--data-dir", &data, "say", "set a timer for ten minutes"]);
    let out = text(&o);
    assert!(out.contains("intent: StartTimer (risk low)"), "{out}");
    assert!(out.contains("minutes = 10"), "{out}");
    let o = run(&[
        "--data-dir",
        &data,
        "say",
        "buy two packs of double a batteries",
    ]);
    let out = text(&o);
    assert!(out.contains("intent: OrderItem (risk high)"), "{out}");
    assert!(out.contains("item = \"AA batteries\""), "{out}");
    // One utterance is the whole session: nothing confirmed it, so it expired.
    assert!(out.contains("[expired OrderItem]"), "{out}");
}

#[test]
fn explain_shows_the_template_or_where_matching_stopped() {
    let o = run(&["intents", "explain", "set a timer for ten minutes"]);
    let out = text(&o);
    assert!(out.contains("template: \""), "{out}");
    assert!(out.contains("intents/en/timers.yaml:"), "{out}");
    let o = run(&["intents", "explain", "set a timer purple"]);
    let out = text(&o);
    assert!(out.contains("not understood"), "{out}");
    assert!(out.contains("closest template"), "{out}");
    assert!(out.contains("matching stopped at word"), "{out}");
}

#[test]
fn explain_shows_the_fallbacks_nearest_examples_when_no_template_matches() {
    let o = run(&["intents", "explain", "be more quiet please"]);
    let out = text(&o);
    assert!(out.contains("not understood: no template matches"), "{out}");
    assert!(out.contains("fallback (minilm): VolumeDown score"), "{out}");
    // The nearest training sentences, with their scores and sources.
    assert!(
        out.contains("VolumeDown \"be more quiet\" (Example)"),
        "{out}"
    );
    let o = run(&["intents", "explain", "set a timer for ten minutes"]);
    assert!(
        !text(&o).contains("fallback ("),
        "a template match asks no fallback"
    );
}

/// The "done when": a purchase, then "yes": a confirm request
/// before exactly one execution with risk high, and an intact audit log.
#[test]
fn purchase_then_yes_runs_once_and_is_audited() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "buy two packs of batteries\nyes\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ev = events(&o);
    let k = kinds(&ev);
    let confirm = k
        .iter()
        .position(|e| e == "confirm_request")
        .expect("confirm_request");
    let executed: Vec<usize> = k
        .iter()
        .enumerate()
        .filter(|(_, e)| *e == "executed")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(executed.len(), 1, "{k:?}");
    assert!(confirm < executed[0], "{k:?}");
    let done = &ev[executed[0]];
    assert_eq!(done["risk"], "high");
    assert_eq!(done["intent"], "OrderItem");
    assert_eq!(done["action_id"], ev[confirm]["action_id"]);

    let o = run(&["--data-dir", &data, "audit", "verify"]);
    assert!(o.status.success(), "{}", text(&o));
    // The anchor `audit head` prints checks out; another log's does not.
    let o = run(&["--data-dir", &data, "audit", "head"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let anchor = stdout.lines().next().unwrap_or_default();
    assert!(anchor.starts_with("3:"), "{}", text(&o));
    let o = run(&[
        "--data-dir",
        &data,
        "audit",
        "verify",
        "--expect-head",
        anchor,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let other = format!("3:{}", "e".repeat(64));
    let o = run(&[
        "--data-dir",
        &data,
        "audit",
        "verify",
        "--expect-head",
        &other,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("does not extend the anchor"),
        "{}",
        text(&o)
    );
    let o = run(&["--data-dir", &data, "--json", "audit", "list"]);
    let outcomes: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["outcome"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        outcomes,
        ["requested", "confirmed", "executed"],
        "{}",
        text(&o)
    );
}

/// An alarm asked for without a time: the time is asked for, and the
/// answer, heard without the wake word, sets it.
#[test]
fn an_alarm_without_a_time_asks_for_one() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "i want to set an alarm\nat 7 am\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ev = events(&o);
    let ask = ev
        .iter()
        .find(|e| e["event"] == "ask")
        .unwrap_or_else(|| panic!("no ask: {ev:?}"));
    assert_eq!(
        (&ask["intent"], &ask["slot"], &ask["text"]),
        (
            &Value::from("SetAlarm"),
            &Value::from("time"),
            &Value::from("For what time?")
        ),
        "{ev:?}"
    );
    let done = ev
        .iter()
        .find(|e| e["event"] == "executed")
        .unwrap_or_else(|| panic!("nothing ran: {ev:?}"));
    assert_eq!(done["intent"], "SetAlarm", "{ev:?}");
    let set = ev
        .iter()
        .rfind(|e| e["event"] == "intent")
        .expect("the answer's intent");
    assert_eq!(set["slots"]["time"], "07:00", "{ev:?}");
}

#[test]
fn purchase_then_no_is_declined_and_nothing_runs() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "buy paper towels\nno\nyes\n",
    );
    let k = kinds(&events(&o));
    assert!(k.contains(&"declined".to_string()), "{k:?}");
    assert!(!k.contains(&"executed".to_string()), "{k:?}");
}

#[test]
fn a_purchase_the_fallback_understood_is_read_back_and_its_audit_row_says_so() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "we need more paper towels, order them\nyes\n",
    );
    let ev = events(&o);
    let intent = ev
        .iter()
        .find(|e| e["event"] == "intent")
        .expect("an intent");
    assert_eq!(intent["intent"], "OrderItem", "{ev:?}");
    assert_eq!(intent["by"], "fallback", "{ev:?}");
    // The score, and the next intent's below it.
    let (score, runner_up) = (intent["score"].as_f64(), intent["runner_up"].as_f64());
    assert!(
        matches!((score, runner_up), (Some(s), Some(r)) if r < s),
        "{intent:?}"
    );
    let k = kinds(&ev);
    // Never on a guess: read back first, run only after the "yes".
    let read_back = k.iter().position(|k| k == "confirm_request");
    let ran = k.iter().position(|k| k == "executed");
    assert!(
        read_back.is_some() && ran.is_some() && read_back < ran,
        "{k:?}"
    );
    let o = run(&["--data-dir", &data, "--json", "audit", "list"]);
    let rows: Vec<Value> = text(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let requested = rows
        .iter()
        .find(|r| r["outcome"] == "requested")
        .expect("a requested row");
    let detail = requested["detail"].as_str().unwrap_or("");
    assert!(detail.contains("fallback recogniser"), "{requested}");
}

#[test]
fn booking_for_named_guests_asks_how_many_and_reads_them_back() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat", "--virtual-clock"],
        "book a table at Luigi's for me and my wife tomorrow at 7 pm\nfor 2\n",
    );
    let ev = events(&o);
    let ask = ev.iter().find(|e| e["event"] == "ask").expect("an ask");
    assert_eq!(ask["slot"], "party_size", "{ev:?}");
    let read_back = ev
        .iter()
        .find(|e| e["event"] == "confirm_request")
        .expect("a read-back");
    let said = read_back["readback"].as_str().unwrap_or("");
    assert!(said.contains("for 2 at Luigi's tomorrow at 7 PM"), "{said}");
    assert!(said.contains("me and my wife"), "{said}");
    // Nothing said "yes": nothing was booked.
    assert!(!kinds(&ev).contains(&"executed".to_string()), "{ev:?}");
}

#[test]
fn booking_then_silence_expires() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat", "--virtual-clock"],
        "book a table for two at 8 pm tomorrow\n/wait 9\nyes\n",
    );
    let k = kinds(&events(&o));
    assert!(k.contains(&"expired".to_string()), "{k:?}");
    assert!(!k.contains(&"executed".to_string()), "{k:?}");
    let o = run(&[
        "--data-dir",
        &data,
        "--json",
        "audit",
        "list",
        "--outcome",
        "expired",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "{}",
        text(&o)
    );
}

#[test]
fn confirm_timeout_flag_overrides_the_default() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &[
            "--data-dir",
            &data,
            "--json",
            "chat",
            "--virtual-clock",
            "--confirm-timeout",
            "2",
        ],
        "book a table for two at 8 pm tomorrow\n/wait 3\n",
    );
    let ev = events(&o);
    assert_eq!(
        ev.iter()
            .find(|e| e["event"] == "confirm_request")
            .map(|e| e["expires_in_secs"].clone()),
        Some(Value::from(2.0))
    );
    assert!(kinds(&ev).contains(&"expired".to_string()));
}

#[test]
fn sql_in_a_slot_is_stored_and_shown_as_text() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "get me a taxi to '); DROP TABLE audit; --\nyes\n",
    );
    assert!(
        kinds(&events(&o)).contains(&"executed".to_string()),
        "{}",
        text(&o)
    );
    let o = run(&["--data-dir", &data, "audit", "export", "--format", "json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("DROP TABLE audit"),
        "{}",
        text(&o)
    );
    assert!(
        run(&["--data-dir", &data, "audit", "verify"])
            .status
            .success()
    );
}

#[test]
fn home_assistant_suite_json_shape() {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ha-intents");
    if !root.is_dir() {
        eprintln!(
            "skipping home_assistant_suite_json_shape: {} not found",
            root.display()
        );
        return;
    }
    let o = run(&[
        "intents",
        "test",
        "--suite",
        &root.display().to_string(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["total"], 1024, "{v}");
    assert!(v["passed"].as_u64().unwrap_or(0) >= 1023, "{v}");
    assert_eq!(
        v["by_intent"]["HassStartTimer"]["passed"],
        v["by_intent"]["HassStartTimer"]["total"]
    );
}

/// The events of one chat, split at each `intent` event: what each
/// utterance that was understood led to.
fn by_intent(ev: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for e in ev {
        if e["event"] == "intent" {
            turns.push((e["intent"].as_str().unwrap_or("?").to_string(), Vec::new()));
        } else if let Some((_, rest)) = turns.last_mut() {
            rest.push(e.clone());
        }
    }
    turns
}

/// Issue 15, item 2: something not in the catalogue is answered (what can
/// be ordered) and never read back; a catalogue item still is.
#[test]
fn an_item_not_in_the_catalogue_is_answered_and_never_read_back() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "order a pizza\nbuy paper towels\nno\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let turns = by_intent(&events(&o));
    let names: Vec<&str> = turns.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(names, ["OrderUnavailable", "OrderItem"], "{turns:?}");

    let pizza = &turns[0].1;
    assert!(
        pizza.iter().all(|e| e["event"] != "confirm_request"),
        "{pizza:?}"
    );
    let done = pizza
        .iter()
        .find(|e| e["event"] == "executed")
        .expect("answered");
    assert_eq!(done["risk"], "low");
    let message = done["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("I can't order pizza. I can order: AA batteries, "),
        "{message}"
    );

    let towels = &turns[1].1;
    let confirm = towels
        .iter()
        .find(|e| e["event"] == "confirm_request")
        .expect("read back");
    assert_eq!(confirm["intent"], "OrderItem");
    assert!(
        towels.iter().all(|e| e["event"] != "executed"),
        "{towels:?}"
    );
}

/// A configured catalogue is what can be ordered, at its prices.
#[test]
fn a_configured_catalogue_gives_the_products_and_the_prices() {
    let (dir, data) = data_dir();
    std::fs::write(
        dir.path().join("shop.toml"),
        "[[item]]\nname = \"tea\"\nsynonyms = [\"tea bags\", \"(green|black) tea\"]\nprice = \"3.50 USD\"\n",
    )
    .expect("write the catalogue");
    let config = dir.path().join("voicegate.toml");
    std::fs::write(&config, "[purchases]\ncatalogue = \"shop.toml\"\n").expect("write the config");
    let config = config.display().to_string();
    let o = run_stdin(
        &["--config", &config, "--data-dir", &data, "--json", "chat"],
        "buy two boxes of green tea\nno\norder paper towels\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let turns = by_intent(&events(&o));
    let names: Vec<&str> = turns.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(names, ["OrderItem", "OrderUnavailable"], "{turns:?}");
    let confirm = turns[0]
        .1
        .iter()
        .find(|e| e["event"] == "confirm_request")
        .expect("read back");
    assert_eq!(
        confirm["readback"],
        "Order 2 boxes of tea? That's 7.00 USD."
    );
    let answer = turns[1]
        .1
        .iter()
        .find(|e| e["event"] == "executed")
        .expect("answered");
    assert_eq!(
        answer["message"],
        "I can't order paper towels. I can order: tea."
    );
}

/// What every home assistant is asked: the time, the date, what it does.
#[test]
fn the_time_the_date_and_what_it_can_do_are_answered() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "what time is it\nwhat's the date today\nwhat can you do\nhow much time is left\n\
         what date will it be in 3 days\nwhat day was yesterday\nwhat time is it in tokyo\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let turns = by_intent(&events(&o));
    let names: Vec<&str> = turns.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(
        names,
        [
            "TellTime",
            "TellDate",
            "Help",
            "TimerStatus",
            "TellDate",
            "TellDate",
            "TellTime"
        ],
        "{turns:?}"
    );
    let said: Vec<String> = turns
        .iter()
        .map(|(_, rest)| {
            rest.iter()
                .find(|e| e["event"] == "executed")
                .and_then(|e| e["message"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(said[0].starts_with("It's "), "{said:?}");
    assert!(said[1].starts_with("Today is "), "{said:?}");
    assert!(said[2].starts_with("I can set alarms, "), "{said:?}");
    assert!(said[2].contains("order household products"), "{said:?}");
    assert!(
        said[2].len() < 200,
        "a spoken sentence, not a wall: {said:?}"
    );
    assert!(said[4].starts_with("In 3 days it will be "), "{said:?}");
    assert!(said[5].starts_with("Yesterday was "), "{said:?}");
    // Only the local clock is known: not the local time for Tokyo.
    assert!(
        said[6].starts_with("I only know the time here: it's "),
        "{said:?}"
    );
}

#[test]
fn which_timer_to_cancel_is_asked_and_the_answer_cancels_it() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "set a 5 minute timer\nset a timer for 10 minutes for the pasta\ncancel the timer\n\
         the 5 minute one\nhow much time is left\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ev = events(&o);
    let said = responses(&ev);
    let ask = ev.iter().find(|e| e["event"] == "ask").expect("an ask");
    assert_eq!(ask["intent"], "CancelTimer", "{ev:?}");
    assert_eq!(ask["slot"], "which", "{ev:?}");
    assert!(
        said.contains(
            &"You have 2 timers: the 5 minute timer and the pasta timer. Which one should I cancel?"
        ),
        "{said:?}"
    );
    assert!(said.contains(&"Cancelled the 5 minute timer."), "{said:?}");
    // The pasta timer still runs, and only it.
    let left = said.last().copied().unwrap_or("");
    assert!(left.ends_with("left on the pasta timer."), "{said:?}");
}

#[test]
fn the_second_one_answers_which_timer_to_cancel() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "set a 10 minute timer\nset a 10 minute timer\ncancel the timer\nthe second one\n\
         cancel the timer\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ev = events(&o);
    let said = responses(&ev);
    let asked = ev.iter().filter(|e| e["event"] == "ask").count();
    assert_eq!(asked, 1, "{said:?}");
    // The second answer left one timer: the last "cancel the timer" asks nothing.
    assert_eq!(
        &said[said.len() - 2..],
        [
            "Cancelled the second 10 minute timer.",
            "Cancelled the timer."
        ],
        "{said:?}"
    );
}

#[test]
fn timers_sharing_a_name_are_named_and_found_by_their_place() {
    let (_d, data) = data_dir();
    let o = run_stdin(
        &["--data-dir", &data, "--json", "chat"],
        "set a pasta timer for 5 minutes\nset a pasta timer for 8 minutes\n\
         how much time is left\ncancel the first pasta timer\nhow much time is left\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let ev = events(&o);
    let said = responses(&ev);
    assert_eq!(
        &said[2..],
        [
            "You have 2 timers: 5 minutes left on the first pasta timer and 8 minutes left on \
             the second pasta timer.",
            "Cancelled the first pasta timer.",
            "8 minutes left on the pasta timer.",
        ],
        "{said:?}"
    );
}
