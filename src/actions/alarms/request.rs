//! Requests: an `alarm.*` / `timer.*` action's slots read once into typed
//! values.
//!
//! Exists so that the slot map (JSON values from the intent engine, read
//! leniently: `5`, `"5"` and `5.0` are all five minutes) is read in exactly
//! one place, [`AlarmRequest::from_slots`], before anything runs; execution
//! then works on typed values. Slots are read in the order execution used
//! to read them, and only those it read, so a request fails with the same
//! message as before.

use super::*;

/// One alarm or timer request, its slots read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmRequest {
    /// `alarm.set`.
    SetAlarm(SetAlarm),
    /// `alarm.cancel`.
    CancelAlarm(CancelAlarm),
    /// `alarm.list`: the alarms on `day`, or all.
    ListAlarms {
        /// The day asked about.
        day: Option<DaySpec>,
    },
    /// `alarm.stop`.
    Stop,
    /// `alarm.snooze`: for `minutes`, or the default.
    Snooze {
        /// The snooze length asked for (checked against the limit when run).
        minutes: Option<u32>,
    },
    /// `timer.start`.
    StartTimer(TimerRequest),
    /// `timer.cancel`.
    CancelTimer(TimerTarget),
    /// `timer.status`: the timers a filter names, or all (`None`); with a
    /// pick, only that one of those called so ("the second 10 minute
    /// timer").
    TimerStatus {
        /// By name or length.
        filter: Option<TimerFilter>,
        /// Which of the timers called what `filter` says.
        pick: Option<Pick>,
    },
}

/// `alarm.set`: `time` (required), `day`, `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAlarm {
    /// The `time` slot as given (`HH:MM`), for messages.
    pub time_text: String,
    /// The clock time.
    pub time: NaiveTime,
    /// The day, if one was said.
    pub day: Option<DaySpec>,
    /// The label, if one was said.
    pub label: Option<String>,
}

/// `alarm.cancel`: `all: true`, or some of `time`, `day`, `label`, and a
/// place in the list a question gave (`position`, `last`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelAlarm {
    /// Cancel every alarm.
    pub all: bool,
    /// Only alarms at this clock time.
    pub time: Option<NaiveTime>,
    /// Only alarms on this day.
    pub day: Option<DaySpec>,
    /// Only alarms with this label.
    pub label: Option<String>,
    /// The one at this place in the list "Which one should I cancel?"
    /// gave ("the second one").
    pub pick: Option<Pick>,
}

/// A place in a list voicegate said, soonest first, as the user names it:
/// "the first one" (`position: 1`), "the last one" (`last: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// 1 is the first.
    Nth(usize),
    /// The last.
    Last,
}

impl Pick {
    /// The `position` / `last` slots, if either was said.
    fn from_slots(slots: &Map<String, Value>) -> Result<Option<Pick>, AlarmError> {
        if flag_slot(slots, "last")? {
            return Ok(Some(Pick::Last));
        }
        match count_slot(slots, "position")? {
            None => Ok(None),
            Some(0) => Err(bad_slot("position", "the first place is 1")),
            Some(n) => Ok(Some(Pick::Nth(usize::try_from(n).unwrap_or(usize::MAX)))),
        }
    }

    /// The picked item of `items`, if the list is that long.
    pub fn of<T>(self, items: &[T]) -> Option<&T> {
        match self {
            Pick::Nth(n) => items.get(n - 1),
            Pick::Last => items.last(),
        }
    }
}

/// `timer.start`: a length and an optional name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRequest {
    /// How long (checked: more than zero, at most [`MAX_TIMER`]).
    pub duration: TimeDelta,
    /// The name, if one was said.
    pub name: Option<String>,
}

/// Which timers `timer.cancel` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerTarget {
    /// `all: true`.
    All,
    /// By name or length.
    Matching(TimerFilter),
    /// Nothing said: the only timer, or a question.
    Unspecified,
    /// The one at this place in the list the question gave.
    Listed(Pick),
    /// The one at this place among the timers called so, soonest first
    /// ("the second 10 minute timer", [`TimerFilter::calls`]).
    Nth {
        /// The name or length they share.
        called: TimerFilter,
        /// Which of them.
        pick: Pick,
    },
}

impl AlarmRequest {
    /// Reads the slots of an `alarm.*` / `timer.*` action. Errors are what
    /// the user is told: a missing or malformed slot, or a kind this module
    /// does not run.
    pub fn from_slots(kind: ActionKind, slots: &Map<String, Value>) -> Result<Self, AlarmError> {
        Ok(match kind {
            ActionKind::AlarmSet => AlarmRequest::SetAlarm(SetAlarm::from_slots(slots)?),
            ActionKind::AlarmCancel => AlarmRequest::CancelAlarm(CancelAlarm::from_slots(slots)?),
            ActionKind::AlarmList => AlarmRequest::ListAlarms {
                day: day_slot(slots)?,
            },
            ActionKind::AlarmStop => AlarmRequest::Stop,
            ActionKind::AlarmSnooze => AlarmRequest::Snooze {
                minutes: count_slot(slots, "minutes")?
                    .map(|m| u32::try_from(m).map_err(|_| AlarmError::BadSnooze(m)))
                    .transpose()?,
            },
            ActionKind::TimerStart => AlarmRequest::StartTimer(TimerRequest::from_slots(slots)?),
            ActionKind::TimerCancel => AlarmRequest::CancelTimer(if flag_slot(slots, "all")? {
                TimerTarget::All
            } else {
                match (timer_filter(slots)?, Pick::from_slots(slots)?) {
                    (Some(called), Some(pick)) => TimerTarget::Nth { called, pick },
                    (Some(filter), None) => TimerTarget::Matching(filter),
                    (None, Some(pick)) => TimerTarget::Listed(pick),
                    (None, None) => TimerTarget::Unspecified,
                }
            }),
            ActionKind::TimerStatus => AlarmRequest::TimerStatus {
                filter: timer_filter(slots)?,
                pick: Pick::from_slots(slots)?,
            },
            other => return Err(AlarmError::UnknownKind(other.as_str().to_string())),
        })
    }
}

impl SetAlarm {
    fn from_slots(slots: &Map<String, Value>) -> Result<Self, AlarmError> {
        let time_text = text_slot(slots, "time")?.ok_or(AlarmError::Missing(
            "What time should the alarm ring? No time was given.",
        ))?;
        let day = text_slot(slots, "day")?;
        let label = text_slot(slots, "label")?.map(str::to_string);
        Ok(SetAlarm {
            time: parse_clock(time_text)?,
            day: day.map(parse_day).transpose()?,
            time_text: time_text.to_string(),
            label,
        })
    }
}

impl CancelAlarm {
    fn from_slots(slots: &Map<String, Value>) -> Result<Self, AlarmError> {
        let time = text_slot(slots, "time")?.map(parse_clock).transpose()?;
        let day = day_slot(slots)?;
        let label = text_slot(slots, "label")?.map(str::to_string);
        let all = flag_slot(slots, "all")?;
        Ok(CancelAlarm {
            all,
            time,
            day,
            label,
            pick: Pick::from_slots(slots)?,
        })
    }
}

impl TimerRequest {
    fn from_slots(slots: &Map<String, Value>) -> Result<Self, AlarmError> {
        let duration = length_slots(slots)?.ok_or(AlarmError::Missing(
            "How long should the timer be? No length was given.",
        ))?;
        let name = text_slot(slots, "name")?.map(str::to_string);
        Ok(TimerRequest { duration, name })
    }
}

/// The `day` slot, parsed.
fn day_slot(slots: &Map<String, Value>) -> Result<Option<DaySpec>, AlarmError> {
    text_slot(slots, "day")?.map(parse_day).transpose()
}

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

/// The timer a request names: by `name`, by length, or none (`None`).
pub(super) fn timer_filter(slots: &Map<String, Value>) -> Result<Option<TimerFilter>, AlarmError> {
    if let Some(name) = text_slot(slots, "name")? {
        return Ok(Some(TimerFilter::Named(name.to_string())));
    }
    Ok(length_slots(slots)?.map(TimerFilter::Lasting))
}
