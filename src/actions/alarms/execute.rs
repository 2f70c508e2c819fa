//! Execution: an `alarm.*` / `timer.*` request run against the schedule.
//!
//! Exists to join the other parts: it takes an [`AlarmRequest`] (the slots
//! already read, by [`AlarmRequest::from_slots`]), runs it against the
//! [`Schedule`] and answers in words.

use super::*;
use crate::request::ASKS_KEY;

/// The follow-up question a cancel asks when it cannot tell which alarm
/// or timer was meant: CancelAlarm's and CancelTimer's `which` (`ask:`
/// with `after_action` in their intent files).
const WHICH: &str = "which";

/// What to say, and what to log.
pub(super) struct Reply {
    message: String,
    detail: Value,
}

impl Reply {
    pub(super) fn new(message: impl Into<String>, detail: Value) -> Self {
        Reply {
            message: message.into(),
            detail,
        }
    }
}

pub(super) fn ids(entries: &[Entry]) -> Vec<i64> {
    entries.iter().map(|e| e.id).collect()
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Runs one `alarm.*` / `timer.*` action against `schedule` and says what
/// happened.
///
/// Slots (absent ones are simply not in the map):
///
/// | kind           | slots |
/// |----------------|-------|
/// | `alarm.set`    | `time` (`HH:MM`, required), `day`, `label` |
/// | `alarm.cancel` | `time`, `day`, `label`, or `all: true` |
/// | `alarm.list`   | `day` |
/// | `alarm.stop`   | — |
/// | `alarm.snooze` | `minutes` |
/// | `timer.start`  | `hours`, `minutes`, `seconds` (at least one), `name` |
/// | `timer.cancel` | `name`, `hours`/`minutes`/`seconds` (its length), or `all: true` |
/// | `timer.status` | `name`, `hours`/`minutes`/`seconds` (its length) |
///
/// `now_local` is the current time in the user's zone (see the module docs
/// on `FixedOffset` versus `Local`). The outcome's `detail` carries `ids`
/// of the entries touched and `"stop_ringing": true` when the ringer must
/// be silenced (stop, snooze, or cancelling a ringing entry).
pub fn execute<Tz: TimeZone>(
    kind: &str,
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now_local: DateTime<Tz>,
) -> Outcome {
    match kind.parse() {
        Ok(kind) => execute_kind(kind, slots, schedule, now_local),
        Err(_) => failed(AlarmError::UnknownKind(kind.to_string())),
    }
}

/// [`execute`] for a kind already parsed (what the pipeline calls).
pub fn execute_kind<Tz: TimeZone>(
    kind: ActionKind,
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now_local: DateTime<Tz>,
) -> Outcome {
    match AlarmRequest::from_slots(kind, slots) {
        Ok(request) => execute_request(&request, schedule, now_local),
        Err(e) => failed(e),
    }
}

/// Runs a request whose slots are already read.
pub fn execute_request<Tz: TimeZone>(
    request: &AlarmRequest,
    schedule: &Schedule,
    now_local: DateTime<Tz>,
) -> Outcome {
    match run(request, schedule, &now_local) {
        Ok(reply) => Outcome::Done {
            message: reply.message,
            detail: reply.detail,
        },
        Err(e) => failed(e),
    }
}

fn failed(e: AlarmError) -> Outcome {
    Outcome::Failed {
        error: capitalize(&e.to_string()),
    }
}

pub(super) fn run<Tz: TimeZone>(
    request: &AlarmRequest,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
) -> Result<Reply, AlarmError> {
    let now = now_local.with_timezone(&Utc);
    let speaker = Speaker::new(now_local);
    match request {
        AlarmRequest::SetAlarm(set) => set_alarm(set, schedule, now_local, &speaker),
        AlarmRequest::CancelAlarm(cancel) => cancel_alarm(cancel, schedule, now_local, &speaker),
        AlarmRequest::ListAlarms { day } => list_alarms(*day, schedule, &speaker),
        AlarmRequest::Stop => {
            let stopped = schedule.stop(now)?;
            let message = match stopped.as_slice() {
                [] => "No alarm is ringing.",
                [one] if one.kind == Kind::Timer => "Timer stopped.",
                [_] => "Alarm stopped.",
                _ => "Stopped.",
            };
            Ok(Reply::new(
                message,
                json!({"ids": ids(&stopped), "stop_ringing": true}),
            ))
        }
        AlarmRequest::Snooze { minutes } => {
            let minutes = *minutes;
            let snoozed = schedule.snooze(minutes, now)?;
            let minutes = minutes.unwrap_or(DEFAULT_SNOOZE_MINUTES);
            let message = if snoozed.is_empty() {
                "No alarm is ringing.".to_string()
            } else {
                format!("Snoozed for {}.", plural(i64::from(minutes), "minute"))
            };
            let until = snoozed.first().map(Entry::rings_at).map(rfc3339);
            Ok(Reply::new(
                message,
                json!({"ids": ids(&snoozed), "until": until, "stop_ringing": true}),
            ))
        }
        AlarmRequest::StartTimer(TimerRequest { duration, name }) => {
            let entry = schedule.start_timer(*duration, name.as_deref(), now)?;
            let spoken = speak_length(duration.num_seconds());
            let message = match &entry.label {
                Some(name) => format!("{} timer set for {spoken}.", capitalize(name)),
                None => format!("Timer set for {spoken}."),
            };
            Ok(Reply::new(
                message,
                json!({"ids": [entry.id], "due_at": rfc3339(entry.due_at)}),
            ))
        }
        AlarmRequest::CancelTimer(target) => cancel_timer(target, schedule, now),
        AlarmRequest::TimerStatus { filter, pick } => {
            timer_status(filter.as_ref(), *pick, schedule, now)
        }
    }
}

pub(super) fn set_alarm<Tz: TimeZone>(
    set: &SetAlarm,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let at = resolve_parsed(set.time, set.day, &set.time_text, now_local.clone())?;
    let entry = schedule.set_alarm(at, set.label.as_deref(), now_local.with_timezone(&Utc))?;
    Ok(Reply::new(
        format!("Alarm set for {}.", speaker.alarm(&entry, true)),
        json!({"ids": [entry.id], "due_at": rfc3339(entry.due_at)}),
    ))
}

/// The answer to a cancel: what was cancelled, and whether the ringer must
/// stop (one of them was ringing).
fn cancelled_reply(cancelled: Vec<Entry>, message: String) -> Reply {
    let ringing = cancelled.iter().any(|e| e.state == State::Ringing);
    Reply::new(
        message,
        json!({"ids": ids(&cancelled), "stop_ringing": ringing}),
    )
}

/// The alarm a cancel asked for, in words: "at 7 AM tomorrow called gym".
fn describe_wanted<Tz: TimeZone>(
    time: Option<NaiveTime>,
    date: Option<NaiveDate>,
    label: Option<&str>,
    speaker: &Speaker<Tz>,
) -> String {
    let mut wanted = Vec::new();
    if let Some(t) = time {
        wanted.push(format!("at {}", speak_clock(t)));
    }
    if let Some(d) = date {
        wanted.push(speaker.day(d));
    }
    if let Some(l) = label {
        wanted.push(format!("called {l}"));
    }
    wanted.join(" ")
}

pub(super) fn cancel_alarm<Tz: TimeZone>(
    cancel: &CancelAlarm,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let now = now_local.with_timezone(&Utc);
    let tz = now_local.timezone();
    let time = cancel.time;
    let date = cancel.day.map(|d| day_date(d, speaker.today));
    let label = cancel.label.clone();
    let done = cancelled_reply;
    let items = |entries: &[Entry]| {
        join_and(
            &entries
                .iter()
                .map(|e| speaker.alarm(e, true))
                .collect::<Vec<_>>(),
        )
    };

    // "all" with a time, day or label is all of those ("both", answering
    // "which one?" about two alarms at 7 AM); alone, every alarm.
    let narrowed = time.is_some() || date.is_some() || label.is_some();
    if cancel.all && !narrowed {
        let cancelled = schedule.cancel_alarms(&AlarmFilter::All, &tz, now)?;
        let message = match cancelled.len() {
            0 => "You have no alarms.".to_string(),
            1 => format!("Cancelled your alarm for {}.", items(&cancelled)),
            n => format!("Cancelled all {n} alarms."),
        };
        return Ok(done(cancelled, message));
    }

    // One alarm of `listed`: the only one, or "the second one", at that
    // place in the list the question gave (the same list, soonest first,
    // as it stands now).
    let picked = |listed: &[Entry], pick: Pick| -> Result<Reply, AlarmError> {
        match pick.of(listed) {
            Some(one) => {
                let cancelled: Vec<Entry> = schedule.cancel(one.id, now)?.into_iter().collect();
                let message = format!(
                    "Cancelled the alarm for {}.",
                    items(std::slice::from_ref(one))
                );
                Ok(done(cancelled, message))
            }
            None => Ok(Reply::new(
                format!("There are only {}.", count_word(listed.len(), "alarm")),
                json!({"ids": []}),
            )),
        }
    };

    let active = schedule.list_alarms()?;
    if time.is_none() && date.is_none() && label.is_none() {
        if let Some(pick) = cancel.pick
            && active.len() > 1
        {
            return picked(&active, pick);
        }
        return match active.as_slice() {
            [] => Ok(Reply::new("You have no alarms.", json!({"ids": []}))),
            [_] => picked(&active, Pick::Nth(1)),
            many => Ok(Reply::new(
                format!(
                    "You have {}: {}. Which one should I cancel?",
                    count_word(many.len(), "alarm"),
                    items(many)
                ),
                json!({"ids": [], ASKS_KEY: WHICH}),
            )),
        };
    }

    let wanted = describe_wanted(time, date, label.as_deref(), speaker);
    let filter = AlarmFilter::Matching { time, date, label };
    let matching: Vec<Entry> = active
        .into_iter()
        .filter(|e| filter.matches(e, &tz))
        .collect();
    match matching.len() {
        0 => Ok(Reply::new(
            format!("There's no alarm {wanted}."),
            json!({"ids": []}),
        )),
        n if n > 1
            && date.is_none()
            && !cancel.all
            && let Some(pick) = cancel.pick =>
        {
            picked(&matching, pick)
        }
        // Without a day, several matches are probably on different days:
        // ask rather than silence an alarm the user still wants.
        n if n > 1 && date.is_none() && !cancel.all => Ok(Reply::new(
            format!(
                "You have {} {wanted}: {}. Which one should I cancel?",
                count_word(n, "alarm"),
                items(&matching)
            ),
            json!({"ids": [], ASKS_KEY: WHICH}),
        )),
        _ => {
            let cancelled = schedule.cancel_alarms(&filter, &tz, now)?;
            let message = match cancelled.len() {
                0 => format!("There's no alarm {wanted}."),
                1 => format!("Cancelled the alarm for {}.", items(&cancelled)),
                n => format!(
                    "Cancelled {}: {}.",
                    count_word(n, "alarm"),
                    items(&cancelled)
                ),
            };
            Ok(done(cancelled, message))
        }
    }
}

pub(super) fn list_alarms<Tz: TimeZone>(
    day: Option<DaySpec>,
    schedule: &Schedule,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let date = day.map(|d| day_date(d, speaker.today));
    let alarms: Vec<Entry> = schedule
        .list_alarms()?
        .into_iter()
        .filter(|e| date.is_none_or(|d| speaker.local(e.due_at).date() == d))
        .collect();
    let listed = join_and(
        &alarms
            .iter()
            .map(|e| speaker.alarm(e, date.is_none()))
            .collect::<Vec<_>>(),
    );
    let on_day = date
        .map(|d| format!(" {}", speaker.day(d)))
        .unwrap_or_default();
    let message = if alarms.is_empty() {
        format!("You have no alarms{on_day}.")
    } else {
        format!(
            "You have {}{on_day}: {listed}.",
            count_word(alarms.len(), "alarm")
        )
    };
    Ok(Reply::new(message, json!({"ids": ids(&alarms)})))
}

/// "the pasta timer", "a 10 minute timer" for "There's no ..." answers.
pub(super) fn filter_name(filter: &TimerFilter) -> String {
    match filter {
        TimerFilter::All => "timer".to_string(),
        TimerFilter::Named(name) => format!("{name} timer"),
        TimerFilter::Lasting(length) => format!("{} timer", length_adjective(*length)),
    }
}

pub(super) fn cancel_timer(
    target: &TimerTarget,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Reply, AlarmError> {
    let done = cancelled_reply;
    let names = |entries: &[Entry]| join_and(&timer_names(entries));
    // One timer picked by place, said by the name the list gave it.
    let cancel_named = |one: &Entry, name: &str| -> Result<Reply, AlarmError> {
        let cancelled: Vec<Entry> = schedule.cancel(one.id, now)?.into_iter().collect();
        Ok(done(cancelled, format!("Cancelled {name}.")))
    };

    match target {
        TimerTarget::All => {
            let cancelled = schedule.cancel_timers(&TimerFilter::All, now)?;
            let message = match cancelled.len() {
                0 => "You have no timers.".to_string(),
                1 => format!("Cancelled {}.", names(&cancelled)),
                n => format!("Cancelled all {n} timers."),
            };
            Ok(done(cancelled, message))
        }
        TimerTarget::Matching(filter) => {
            let cancelled = schedule.cancel_timers(filter, now)?;
            let message = if cancelled.is_empty() {
                format!("There's no {}.", filter_name(filter))
            } else {
                format!("Cancelled {}.", names(&cancelled))
            };
            Ok(done(cancelled, message))
        }
        TimerTarget::Listed(pick) => {
            let listed = schedule.list_timers()?;
            let named = timer_names(&listed);
            let places: Vec<(&Entry, &String)> = listed.iter().zip(&named).collect();
            match pick.of(&places) {
                Some((one, name)) => cancel_named(one, name),
                None if listed.is_empty() => {
                    Ok(Reply::new("You have no timers.", json!({"ids": []})))
                }
                None => Ok(Reply::new(
                    format!("There are only {}.", count_word(listed.len(), "timer")),
                    json!({"ids": []}),
                )),
            }
        }
        TimerTarget::Nth { called, pick } => {
            let listed = schedule.list_timers()?;
            let named = timer_names(&listed);
            let same: Vec<(&Entry, &String)> = listed
                .iter()
                .zip(&named)
                .filter(|(e, _)| called.calls(e))
                .collect();
            match pick.of(&same) {
                Some((one, name)) => cancel_named(one, name),
                None => Ok(Reply::new(
                    not_that_many(called, same.len()),
                    json!({"ids": []}),
                )),
            }
        }
        TimerTarget::Unspecified => match schedule.list_timers()?.as_slice() {
            [] => Ok(Reply::new("You have no timers.", json!({"ids": []}))),
            [only] => {
                let cancelled: Vec<Entry> = schedule.cancel(only.id, now)?.into_iter().collect();
                let message = match &only.label {
                    Some(_) => format!("Cancelled {}.", timer_name(only)),
                    None => "Cancelled the timer.".to_string(),
                };
                Ok(done(cancelled, message))
            }
            many => Ok(Reply::new(
                format!(
                    "You have {}: {}. Which one should I cancel?",
                    count_word(many.len(), "timer"),
                    names(many)
                ),
                json!({"ids": [], ASKS_KEY: WHICH}),
            )),
        },
    }
}

pub(super) fn timer_status(
    filter: Option<&TimerFilter>,
    pick: Option<Pick>,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Reply, AlarmError> {
    let all = schedule.timer_status(None, now)?;
    let entries: Vec<Entry> = all.iter().map(|t| t.entry.clone()).collect();
    let named = timer_names(&entries);
    let mut timers: Vec<(&TimerLeft, &String)> = all
        .iter()
        .zip(&named)
        .filter(|(t, _)| filter.is_none_or(|f| f.matches(&t.entry)))
        .collect();
    // "the second 10 minute timer": that one of those called so.
    if let (Some(called), Some(pick)) = (filter, pick) {
        let same: Vec<_> = timers
            .iter()
            .copied()
            .filter(|(t, _)| called.calls(&t.entry))
            .collect();
        match pick.of(&same) {
            Some(&one) => timers = vec![one],
            None => {
                return Ok(Reply::new(
                    not_that_many(called, same.len()),
                    json!({"ids": [], "remaining_ms": []}),
                ));
            }
        }
    }
    let detail = json!({
        "ids": timers.iter().map(|(t, _)| t.entry.id).collect::<Vec<_>>(),
        "remaining_ms": timers.iter().map(|(t, _)| t.remaining.num_milliseconds()).collect::<Vec<_>>(),
    });
    // One timer, unnamed and not asked for by length: "your timer".
    let only_one = timers.len() == 1 && filter.is_none();
    let describe = |(t, name): &(&TimerLeft, &String)| {
        let name = if only_one && t.entry.label.is_none() {
            "your timer".to_string()
        } else {
            (*name).clone()
        };
        if t.remaining <= TimeDelta::zero() {
            format!("{} is done", capitalize(&name))
        } else {
            format!("{} left on {name}", speak_remaining(t.remaining))
        }
    };
    let message = match timers.as_slice() {
        [] => match &filter {
            Some(f) => format!("There's no {}.", filter_name(f)),
            None => "You have no timers.".to_string(),
        },
        [one] => format!("{}.", capitalize(&describe(one))),
        many => format!(
            "You have {}: {}.",
            count_word(many.len(), "timer"),
            join_and(&many.iter().map(describe).collect::<Vec<_>>())
        ),
    };
    Ok(Reply::new(message, detail))
}

/// "There's no 10 minute timer.", "There's only one 10 minute timer.",
/// "There are only 2 pasta timers.": a place past the end of the timers
/// called so.
fn not_that_many(called: &TimerFilter, count: usize) -> String {
    let name = filter_name(called);
    match count {
        0 => format!("There's no {name}."),
        1 => format!("There's only one {name}."),
        n => format!("There are only {n} {name}s."),
    }
}
