//! Execution: an `alarm.*` / `timer.*` request run against the schedule.
//!
//! Exists to join the other parts: it reads the request's slots, runs it
//! against the [`Schedule`](super::Schedule) and answers in words.

use super::*;

pub(super) fn bad_slot(slot: &str, problem: impl Into<String>) -> AlarmError {
    AlarmError::BadSlot {
        slot: slot.to_string(),
        problem: problem.into(),
    }
}

/// A non-empty string slot.
pub(super) fn text_slot<'a>(
    slots: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, AlarmError> {
    match slots.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(other) => Err(bad_slot(name, format!("expected text, got {other}"))),
    }
}

/// `all: true` (a boolean, or the text "true").
pub(super) fn flag_slot(slots: &Map<String, Value>, name: &str) -> Result<bool, AlarmError> {
    match slots.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(bad_slot(
            name,
            format!("expected true or false, got {other}"),
        )),
    }
}

/// A whole, non-negative number (a JSON number, or digits as text).
pub(super) fn count_slot(
    slots: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, AlarmError> {
    match slots.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 1e9 => Ok(Some(f as u64)),
                _ => Err(bad_slot(name, format!("expected a whole number, got {n}"))),
            }
        }
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| bad_slot(name, format!("expected a whole number, got {s:?}"))),
        Some(other) => Err(bad_slot(name, format!("expected a number, got {other}"))),
    }
}

/// The timer length in `hours`/`minutes`/`seconds`, if any part is present.
pub(super) fn length_slots(slots: &Map<String, Value>) -> Result<Option<TimeDelta>, AlarmError> {
    let h = count_slot(slots, "hours")?;
    let m = count_slot(slots, "minutes")?;
    let s = count_slot(slots, "seconds")?;
    if h.is_none() && m.is_none() && s.is_none() {
        return Ok(None);
    }
    timer_duration(h.unwrap_or(0), m.unwrap_or(0), s.unwrap_or(0)).map(Some)
}

// ---------------------------------------------------------------------------
// Executing actions
// ---------------------------------------------------------------------------

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
    match run(kind, slots, schedule, &now_local) {
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
    kind: ActionKind,
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
) -> Result<Reply, AlarmError> {
    let now = now_local.with_timezone(&Utc);
    let speaker = Speaker::new(now_local);
    match kind {
        ActionKind::AlarmSet => set_alarm(slots, schedule, now_local, &speaker),
        ActionKind::AlarmCancel => cancel_alarm(slots, schedule, now_local, &speaker),
        ActionKind::AlarmList => list_alarms(slots, schedule, &speaker),
        ActionKind::AlarmStop => {
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
        ActionKind::AlarmSnooze => {
            let minutes = count_slot(slots, "minutes")?
                .map(|m| u32::try_from(m).map_err(|_| AlarmError::BadSnooze(m)))
                .transpose()?;
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
        ActionKind::TimerStart => {
            let length = length_slots(slots)?.ok_or(AlarmError::Missing(
                "How long should the timer be? No length was given.",
            ))?;
            let name = text_slot(slots, "name")?;
            let entry = schedule.start_timer(length, name, now)?;
            let spoken = speak_length(length.num_seconds());
            let message = match &entry.label {
                Some(name) => format!("{} timer set for {spoken}.", capitalize(name)),
                None => format!("Timer set for {spoken}."),
            };
            Ok(Reply::new(
                message,
                json!({"ids": [entry.id], "due_at": rfc3339(entry.due_at)}),
            ))
        }
        ActionKind::TimerCancel => cancel_timer(slots, schedule, now),
        ActionKind::TimerStatus => timer_status(slots, schedule, now),
        other => Err(AlarmError::UnknownKind(other.as_str().to_string())),
    }
}

pub(super) fn set_alarm<Tz: TimeZone>(
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let time = text_slot(slots, "time")?.ok_or(AlarmError::Missing(
        "What time should the alarm ring? No time was given.",
    ))?;
    let day = text_slot(slots, "day")?;
    let label = text_slot(slots, "label")?;
    let at = resolve_alarm(time, day, now_local.clone())?;
    let entry = schedule.set_alarm(at, label, now_local.with_timezone(&Utc))?;
    Ok(Reply::new(
        format!("Alarm set for {}.", speaker.alarm(&entry, true)),
        json!({"ids": [entry.id], "due_at": rfc3339(entry.due_at)}),
    ))
}

pub(super) fn cancel_alarm<Tz: TimeZone>(
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now_local: &DateTime<Tz>,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let now = now_local.with_timezone(&Utc);
    let tz = now_local.timezone();
    let time = text_slot(slots, "time")?.map(parse_clock).transpose()?;
    let date = text_slot(slots, "day")?
        .map(parse_day)
        .transpose()?
        .map(|d| day_date(d, speaker.today));
    let label = text_slot(slots, "label")?.map(str::to_string);
    let done = |cancelled: Vec<Entry>, message: String| {
        let ringing = cancelled.iter().any(|e| e.state == State::Ringing);
        Reply::new(
            message,
            json!({"ids": ids(&cancelled), "stop_ringing": ringing}),
        )
    };
    let items = |entries: &[Entry]| {
        join_and(
            &entries
                .iter()
                .map(|e| speaker.alarm(e, true))
                .collect::<Vec<_>>(),
        )
    };

    if flag_slot(slots, "all")? {
        let cancelled = schedule.cancel_alarms(&AlarmFilter::All, &tz, now)?;
        let message = match cancelled.len() {
            0 => "You have no alarms.".to_string(),
            1 => format!("Cancelled your alarm for {}.", items(&cancelled)),
            n => format!("Cancelled all {n} alarms."),
        };
        return Ok(done(cancelled, message));
    }

    let active = schedule.list_alarms()?;
    if time.is_none() && date.is_none() && label.is_none() {
        return match active.as_slice() {
            [] => Ok(Reply::new("You have no alarms.", json!({"ids": []}))),
            [only] => {
                let cancelled: Vec<Entry> = schedule.cancel(only.id, now)?.into_iter().collect();
                let message = format!(
                    "Cancelled the alarm for {}.",
                    items(std::slice::from_ref(only))
                );
                Ok(done(cancelled, message))
            }
            many => Ok(Reply::new(
                format!(
                    "You have {}: {}. Which one should I cancel?",
                    count_word(many.len(), "alarm"),
                    items(many)
                ),
                json!({"ids": []}),
            )),
        };
    }

    let mut wanted = Vec::new();
    if let Some(t) = time {
        wanted.push(format!("at {}", speak_clock(t)));
    }
    if let Some(d) = date {
        wanted.push(speaker.day(d));
    }
    if let Some(l) = &label {
        wanted.push(format!("called {l}"));
    }
    let wanted = wanted.join(" ");
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
        // Without a day, several matches are probably on different days:
        // ask rather than silence an alarm the user still wants.
        n if n > 1 && date.is_none() => Ok(Reply::new(
            format!(
                "You have {} {wanted}: {}. Which one should I cancel?",
                count_word(n, "alarm"),
                items(&matching)
            ),
            json!({"ids": []}),
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
    slots: &Map<String, Value>,
    schedule: &Schedule,
    speaker: &Speaker<Tz>,
) -> Result<Reply, AlarmError> {
    let date = text_slot(slots, "day")?
        .map(parse_day)
        .transpose()?
        .map(|d| day_date(d, speaker.today));
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

/// The timer a request names: by `name`, by length, or none (`None`).
pub(super) fn timer_filter(slots: &Map<String, Value>) -> Result<Option<TimerFilter>, AlarmError> {
    if let Some(name) = text_slot(slots, "name")? {
        return Ok(Some(TimerFilter::Named(name.to_string())));
    }
    Ok(length_slots(slots)?.map(TimerFilter::Lasting))
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
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Reply, AlarmError> {
    let done = |cancelled: Vec<Entry>, message: String| {
        let ringing = cancelled.iter().any(|e| e.state == State::Ringing);
        Reply::new(
            message,
            json!({"ids": ids(&cancelled), "stop_ringing": ringing}),
        )
    };
    let names = |entries: &[Entry]| join_and(&entries.iter().map(timer_name).collect::<Vec<_>>());

    if flag_slot(slots, "all")? {
        let cancelled = schedule.cancel_timers(&TimerFilter::All, now)?;
        let message = match cancelled.len() {
            0 => "You have no timers.".to_string(),
            1 => format!("Cancelled {}.", names(&cancelled)),
            n => format!("Cancelled all {n} timers."),
        };
        return Ok(done(cancelled, message));
    }
    match timer_filter(slots)? {
        Some(filter) => {
            let cancelled = schedule.cancel_timers(&filter, now)?;
            let message = if cancelled.is_empty() {
                format!("There's no {}.", filter_name(&filter))
            } else {
                format!("Cancelled {}.", names(&cancelled))
            };
            Ok(done(cancelled, message))
        }
        None => match schedule.list_timers()?.as_slice() {
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
                json!({"ids": []}),
            )),
        },
    }
}

pub(super) fn timer_status(
    slots: &Map<String, Value>,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Reply, AlarmError> {
    let filter = timer_filter(slots)?;
    let timers: Vec<TimerLeft> = schedule
        .timer_status(None, now)?
        .into_iter()
        .filter(|t| filter.as_ref().is_none_or(|f| f.matches(&t.entry)))
        .collect();
    let detail = json!({
        "ids": timers.iter().map(|t| t.entry.id).collect::<Vec<_>>(),
        "remaining_ms": timers.iter().map(|t| t.remaining.num_milliseconds()).collect::<Vec<_>>(),
    });
    // One timer, unnamed and not asked for by length: "your timer".
    let only_one = timers.len() == 1 && filter.is_none();
    let describe = |t: &TimerLeft| {
        let name = if only_one && t.entry.label.is_none() {
            "your timer".to_string()
        } else {
            timer_name(&t.entry)
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
