//! `voicegate run`: the long-running process.
//!
//! One coordinator loop over a closed [`Input`] enum, fed through one bounded
//! channel by small producer threads (typed lines today; the microphone path
//! will be another producer). Between inputs the loop wakes for the next
//! deadline: an alarm or timer coming due, or a pending confirmation
//! expiring. On SIGINT or SIGTERM it stops cleanly: a pending confirmation is
//! recorded as expired and the ringer is stopped.
//!
//! At start it reconciles what a previous run left behind: actions
//! interrupted between confirmation and result (see `pipeline`), and alarms
//! that came due while it was down (reported, never rung late).

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::Duration as StdDuration;

use chrono::{Local, TimeDelta, Utc};
use serde_json::Value;

use crate::actions::alarms::{self, Schedule, State};
use crate::actions::ring::{Ringer, configured_ringer};
use crate::app::{AppError, print_events};
use crate::config::Settings;
use crate::gate::Utterance;
use crate::intent::IntentSet;
use crate::pipeline::{Event, Pipeline, PipelineConfig};

/// What can wake the coordinator.
enum Input {
    /// Something was said (or typed).
    Utterance(Utterance),
    /// A stop signal arrived.
    Stop(i32),
}

/// Longest the loop sleeps without checking the schedule (another process,
/// e.g. `say`, may have set an alarm in the same database).
const MAX_SLEEP: StdDuration = StdDuration::from_secs(5);

/// How late a due alarm may be found at start and still ring.
const START_GRACE_SECS: i64 = 60;

fn say(text: String) -> Event {
    Event::Response {
        text,
        action_id: None,
    }
}

/// Runs until SIGINT/SIGTERM. Typed utterances are read from stdin, one per
/// line (end of input does not stop the daemon).
pub fn run(settings: &Settings, intents: IntentSet, out: &mut dyn Write) -> Result<i32, AppError> {
    let mut pipeline = Pipeline::start(
        intents,
        PipelineConfig {
            gate: settings.gate.clone(),
            audit_db: settings.audit_db(),
            state_db: settings.state_db(),
            handlers: settings.handlers.clone(),
            mpd: settings.mpd.clone(),
        },
    )?;
    let schedule =
        Schedule::open(settings.state_db()).map_err(crate::pipeline::PipelineError::from)?;
    let mut ringer = configured_ringer(settings.ring_command.as_deref());
    let json = settings.json;

    let (tx, rx) = mpsc::sync_channel::<Input>(32);
    // Stop signals.
    {
        let tx = tx.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(AppError::Output)?;
        thread::Builder::new()
            .name("voicegate-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let _ = tx.send(Input::Stop(signal));
                }
            })
            .map_err(AppError::Output)?;
    }
    // Typed input.
    {
        let tx = tx.clone();
        thread::Builder::new()
            .name("voicegate-stdin".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    let line = line.trim().to_string();
                    if line.is_empty() {
                        continue;
                    }
                    if tx.send(Input::Utterance(Utterance::typed(line))).is_err() {
                        break;
                    }
                }
            })
            .map_err(AppError::Output)?;
    }
    drop(tx);

    let now = Utc::now();
    let mut events = vec![say(
        "voicegate is listening (typed input on stdin; the microphone path is not built yet)."
            .into(),
    )];
    events.extend(pipeline.recover(now));
    match schedule.missed_at_start(now, TimeDelta::seconds(START_GRACE_SECS)) {
        Ok(missed) => {
            for entry in missed {
                events.push(say(format!(
                    "While I was off you missed this: {}",
                    alarms::fired_message(&entry, Local::now())
                )));
            }
        }
        Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
    }
    print_events(&events, json, out)?;

    let mut ringing = false;
    loop {
        let now = Utc::now();
        let mut events = pipeline.tick(now);
        match schedule.due(now) {
            Ok(fired) => {
                for entry in fired {
                    let text = alarms::fired_message(&entry, Local::now());
                    if let Err(e) = ringer.start(&entry.ring_text()) {
                        events.push(say(format!("(could not ring: {e})")));
                    }
                    ringing = true;
                    pipeline.set_context("alarm_ringing", Some(Value::Bool(true)));
                    events.push(say(text));
                }
            }
            Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
        }
        print_events(&events, json, out)?;

        // Sleep until the next deadline or input.
        let mut wait = MAX_SLEEP;
        for deadline in [pipeline.deadline(), schedule.next_due().ok().flatten()]
            .into_iter()
            .flatten()
        {
            let until = (deadline - Utc::now()).to_std().unwrap_or_default();
            wait = wait.min(until);
        }
        let input = match rx.recv_timeout(wait) {
            Ok(input) => input,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => Input::Stop(0),
        };
        match input {
            Input::Utterance(utterance) => {
                let events = pipeline.handle(&utterance, Utc::now());
                print_events(&events, json, out)?;
                if ringing && !any_ringing(&schedule) {
                    ringer.stop();
                    ringing = false;
                    pipeline.set_context("alarm_ringing", None);
                }
            }
            Input::Stop(signal) => {
                let mut events = pipeline.shutdown(Utc::now());
                ringer.stop();
                events.push(say(format!("voicegate stopped (signal {signal}).")));
                print_events(&events, json, out)?;
                return Ok(0);
            }
        }
    }
}

fn any_ringing(schedule: &Schedule) -> bool {
    let alarms = schedule.list_alarms().unwrap_or_default();
    let timers = schedule.list_timers().unwrap_or_default();
    alarms
        .iter()
        .chain(timers.iter())
        .any(|e| e.state == State::Ringing)
}
