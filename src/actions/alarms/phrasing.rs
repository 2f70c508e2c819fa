//! Phrasing: what alarms and timers say.
//!
//! Exists so that the wording (12-hour clocks, relative days, lengths
//! rounded like a countdown) is in one place, apart from storage and
//! execution, and can be tested as plain functions.

use super::*;

pub(crate) const WEEKDAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

pub(crate) const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

pub(crate) use crate::intent::builtins::speak_clock;

pub(super) fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// "a", "a and b", "a, b and c".
pub(crate) fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Hours, minutes and seconds of a whole number of seconds.
pub(super) fn hms(total: i64) -> (i64, i64, i64) {
    (total / 3600, total / 60 % 60, total % 60)
}

/// An exact length: "10 minutes", "1 hour and 30 minutes",
/// "1 hour, 2 minutes and 3 seconds".
pub(super) fn speak_length(total_seconds: i64) -> String {
    let (h, m, s) = hms(total_seconds.max(0));
    let parts: Vec<String> = [(h, "hour"), (m, "minute"), (s, "second")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| plural(n, unit))
        .collect();
    if parts.is_empty() {
        "0 seconds".to_string()
    } else {
        join_and(&parts)
    }
}

/// Time left, rounded up: to the second below an hour, to the minute above.
pub(super) fn speak_remaining(left: TimeDelta) -> String {
    let millis = left.num_milliseconds().max(0);
    let seconds = (millis + 999) / 1000;
    if seconds >= 3600 {
        speak_length((seconds + 59) / 60 * 60)
    } else {
        speak_length(seconds)
    }
}

/// A timer's length as an adjective: "10 minute", "1 hour 30 minute".
pub(super) fn length_adjective(length: TimeDelta) -> String {
    let (h, m, s) = hms(length.num_seconds());
    [(h, "hour"), (m, "minute"), (s, "second")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn count_word(n: usize, unit: &str) -> String {
    plural(i64::try_from(n).unwrap_or(i64::MAX), unit)
}

/// Speaks instants relative to a local "now".
pub(super) struct Speaker<Tz: TimeZone> {
    tz: Tz,
    pub(super) today: NaiveDate,
}

impl<Tz: TimeZone> Speaker<Tz> {
    pub(super) fn new(now: &DateTime<Tz>) -> Self {
        Speaker {
            tz: now.timezone(),
            today: now.naive_local().date(),
        }
    }

    pub(super) fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// "today", "tomorrow", "yesterday", "on Friday", "on December 3".
    pub(super) fn day(&self, date: NaiveDate) -> String {
        match (date - self.today).num_days() {
            0 => "today".to_string(),
            1 => "tomorrow".to_string(),
            -1 => "yesterday".to_string(),
            2..=6 => format!(
                "on {}",
                WEEKDAY_NAMES[date.weekday().num_days_from_monday() as usize]
            ),
            _ => format!("on {} {}", MONTH_NAMES[date.month0() as usize], date.day()),
        }
    }

    /// "7 AM tomorrow", "8:30 AM on Friday", "midnight tonight".
    pub(super) fn when(&self, t: DateTime<Utc>) -> String {
        let local = self.local(t);
        let clock = speak_clock(local.time());
        if local.hour() == 0 && local.minute() == 0 && self.today.succ_opt() == Some(local.date()) {
            return "midnight tonight".to_string();
        }
        format!("{clock} {}", self.day(local.date()))
    }

    /// An alarm for a list: "7 AM tomorrow called gym (snoozed until 7:09 AM)".
    /// `with_day: false` leaves the day out (the sentence already says it).
    pub(super) fn alarm(&self, entry: &Entry, with_day: bool) -> String {
        let mut text = if with_day {
            self.when(entry.due_at)
        } else {
            speak_clock(self.local(entry.due_at).time())
        };
        if let Some(label) = &entry.label {
            text.push_str(&format!(" called {label}"));
        }
        if entry.state == State::Ringing {
            text.push_str(" (ringing now)");
        } else if let Some(until) = entry.snoozed_until {
            text.push_str(&format!(
                " (snoozed until {})",
                speak_clock(self.local(until).time())
            ));
        }
        text
    }
}

/// "the pasta timer", "the 10 minute timer".
pub(super) fn timer_name(entry: &Entry) -> String {
    match (&entry.label, entry.duration) {
        (Some(name), _) => format!("the {name} timer"),
        (None, Some(length)) => format!("the {} timer", length_adjective(length)),
        (None, None) => "the timer".to_string(),
    }
}

/// The names of `timers` (a list in the order voicegate says it, soonest
/// first), told apart where they share one: "the pasta timer", "the first
/// 10 minute timer", "the second 10 minute timer". The places count only
/// the timers called the same ([`TimerFilter::calls`]), so "cancel the
/// second 10 minute timer" finds the one this named.
pub(super) fn timer_names(timers: &[Entry]) -> Vec<String> {
    timers
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let called = TimerFilter::called(entry);
            let same = |e: &&Entry| called.calls(e);
            let name = timer_name(entry);
            if timers.iter().filter(same).count() < 2 {
                return name;
            }
            let place = timers[..i].iter().filter(same).count() + 1;
            match name.strip_prefix("the ") {
                Some(rest) => format!("the {} {rest}", ordinal(place)),
                None => name,
            }
        })
        .collect()
}

/// "first" … "fifth" (the places answers may name), then "6th", "21st".
pub(super) fn ordinal(n: usize) -> String {
    const WORDS: [&str; 5] = ["first", "second", "third", "fourth", "fifth"];
    if let Some(word) = n.checked_sub(1).and_then(|i| WORDS.get(i)) {
        return (*word).to_string();
    }
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What to say when an entry from [`Schedule::due`] starts ringing:
/// "Alarm for 7 AM.", "Alarm for 6:45 AM: gym.", "The pasta timer is done.",
/// "Your 10 minute timer is done."
pub fn fired_message<Tz: TimeZone>(entry: &Fired, now_local: DateTime<Tz>) -> String {
    let speaker = Speaker::new(&now_local);
    match entry.kind {
        Kind::Alarm => {
            let clock = speak_clock(speaker.local(entry.due_at).time());
            match &entry.label {
                Some(label) => format!("Alarm for {clock}: {label}."),
                None => format!("Alarm for {clock}."),
            }
        }
        Kind::Timer => match (&entry.label, entry.duration) {
            (Some(name), _) => format!("The {name} timer is done."),
            (None, Some(length)) => format!("Your {} timer is done.", length_adjective(length)),
            (None, None) => "Your timer is done.".to_string(),
        },
    }
}

/// What to say at start about one entry that came due while voicegate was
/// not running ("While I was off you missed this: Alarm for 7 AM.").
pub fn missed_while_off<Tz: TimeZone>(entry: &Fired, now_local: DateTime<Tz>) -> String {
    format!(
        "While I was off you missed this: {}",
        fired_message(entry, now_local)
    )
}

/// What to say about entries from [`Schedule::missed_at_start`], or `None`
/// if there are none: "You missed an alarm at 7 AM today.", "You missed the
/// pasta timer, which ended at 7:05 AM yesterday."
pub fn missed_message<Tz: TimeZone>(missed: &[Fired], now_local: DateTime<Tz>) -> Option<String> {
    let speaker = Speaker::new(&now_local);
    let sentences: Vec<String> = missed
        .iter()
        .map(|entry| {
            let when = speaker.when(entry.rings_at());
            match (entry.kind, &entry.label) {
                (Kind::Alarm, Some(label)) => format!("You missed an alarm at {when}: {label}."),
                (Kind::Alarm, None) => format!("You missed an alarm at {when}."),
                (Kind::Timer, _) => {
                    format!("You missed {}, which ended at {when}.", timer_name(entry))
                }
            }
        })
        .collect();
    (!sentences.is_empty()).then(|| sentences.join(" "))
}
