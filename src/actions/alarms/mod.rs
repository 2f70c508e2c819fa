//! Alarms and timers: the executor behind the `alarm.*` and `timer.*` actions.
//!
//! This module exists so that "wake me up at 7" and "set a 10 minute timer"
//! survive everything between the sentence and the ring: they are stored in
//! SQLite the moment they are set, fire on time, are reported if they came
//! due while the daemon was down, and never ring twice.
//!
//! It has these layers, each usable on its own (one file each):
//!
//! - **Requests** ([`AlarmRequest::from_slots`], `request.rs`): an action's
//!   slot map read once into typed values ([`TimerRequest`], [`SetAlarm`],
//!   ...).
//! - **Pure helpers** ([`resolve_alarm`], [`timer_duration`], `time.rs`):
//!   turn slot values into instants and lengths. They never read the clock;
//!   `now` is passed in.
//! - **[`Schedule`]** (`schedule.rs`): the SQLite store. Every method that
//!   depends on time takes `now` explicitly, so tests drive it with an
//!   injected clock.
//! - **Phrasing** ([`fired_message`], [`missed_message`], `phrasing.rs`):
//!   what is said.
//! - **[`execute`]** (`execute.rs`): runs a request against the schedule and
//!   says what happened, in words.
//!
//! The scheduler loop (sleep until [`Schedule::next_due`], call
//! [`Schedule::due`], hand each [`Fired`] to a [`Ringer`](crate::actions::ring::Ringer))
//! lives with the daemon; nothing here sleeps or spawns.
//!
//! # Time zones and daylight saving time
//!
//! Instants are stored in UTC. Clock times ("07:00") are local, so the
//! functions that read or speak them are generic over [`chrono::TimeZone`]
//! and take the local "now" as a `DateTime<Tz>`:
//!
//! - With `DateTime<FixedOffset>` (what the issue asked for, and what the
//!   tests use) the offset in force *now* is used for the target day too. If
//!   a daylight-saving change falls between now and the alarm, the alarm
//!   rings one hour early or late (local wall time), and lists speak the
//!   time in today's offset.
//! - With `DateTime<chrono::Local>` (the system zone, read from `TZ` or
//!   `/etc/localtime`) each day gets its own offset, so "7:00 next Monday"
//!   stays 7:00 across a change. A time that does not exist on the target
//!   day (inside the spring-forward gap, e.g. 02:30) rings at the first
//!   minute after the gap (03:00); a time that exists twice (the autumn
//!   fold) rings at the first of the two.
//!
//! Either way the stored instant is fixed once the alarm is set: if the
//! machine's zone changes afterwards, the alarm still rings at the original
//! instant, not at the same wall-clock time in the new zone.
//!
//! # Storage
//!
//! One table; timestamps are Unix milliseconds (UTC):
//!
//! ```sql
//! CREATE TABLE schedule (
//!     id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
//!     kind          TEXT    NOT NULL,   -- 'alarm' | 'timer'
//!     due_at        INTEGER NOT NULL,   -- when it was set to ring
//!     label         TEXT,               -- alarm label / timer name, as spoken
//!     created_at    INTEGER NOT NULL,
//!     state         TEXT    NOT NULL,   -- 'pending' | 'ringing' | 'done' | 'cancelled' | 'missed'
//!     snoozed_until INTEGER,            -- set by snooze; rings then instead of due_at
//!     duration_ms   INTEGER,            -- timers: the length asked for
//!     updated_at    INTEGER NOT NULL    -- last state change
//! );
//! ```
//!
//! States move `pending → ringing → done`, with `ringing → pending` on
//! snooze, `pending|ringing → cancelled` on cancel, and `pending → missed`
//! when the daemon was down at the time ([`Schedule::missed_at_start`]).
//! Every transition is a single guarded `UPDATE` (or one immediate
//! transaction), so two connections on the same file (WAL mode, busy
//! timeout) never ring the same entry twice. Finished rows stay until
//! [`Schedule::prune`] removes them.
//!
//! # Spoken answers
//!
//! Times are spoken on a 12-hour clock: "7 AM", "7:30 PM", "noon",
//! "midnight". Days are relative when near ("today", "tomorrow", "on
//! Friday") and a date otherwise ("on December 3"). Durations spell their
//! units ("4 minutes and 10 seconds"); time left on a timer is rounded *up*
//! to the second (and to the minute above an hour), like a countdown
//! display, so a timer never claims to be done early.
//!
//! [`execute`] answers with [`Outcome::Done`] whenever the request was
//! understood, even if there was nothing to do ("You have no timers."), and
//! with [`Outcome::Failed`] for bad slot values, unknown kinds and storage
//! errors. Its `detail` holds the ids involved and, when the daemon must
//! silence the ringer, `"stop_ringing": true`.

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta,
    TimeZone, Timelike, Utc, Weekday,
};
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};
use serde_json::{Map, Value, json};

use crate::request::{ActionKind, Outcome};

/// Snooze length when none is said, in minutes (the traditional nine).
pub const DEFAULT_SNOOZE_MINUTES: u32 = 9;

/// The longest snooze accepted, in minutes.
pub const MAX_SNOOZE_MINUTES: u32 = 60;

/// The longest timer accepted.
pub const MAX_TIMER: TimeDelta = TimeDelta::hours(24);

/// Why an alarm or timer request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    /// A clock time that is not `HH:MM` on a 24-hour clock.
    #[error("{0:?} is not a time of day (expected HH:MM, 24-hour)")]
    BadTime(String),
    /// A day that is not `today`, `tomorrow`, a weekday name, `MM-DD` or
    /// `YYYY-MM-DD`.
    #[error("{0:?} is not a day (expected today, tomorrow, a weekday, MM-DD or YYYY-MM-DD)")]
    BadDay(String),
    /// The requested moment is not in the future.
    #[error("{0} has already passed")]
    Passed(String),
    /// A timer of length zero.
    #[error("a timer needs a length of at least one second")]
    ZeroDuration,
    /// A timer longer than [`MAX_TIMER`].
    #[error("a timer can be at most 24 hours long")]
    TooLong,
    /// A snooze outside 1..=[`MAX_SNOOZE_MINUTES`] minutes.
    #[error("snooze must be between 1 and {MAX_SNOOZE_MINUTES} minutes, not {0}")]
    BadSnooze(u64),
    /// A slot the action needs was not given.
    #[error("{0}")]
    Missing(&'static str),
    /// A slot holds a value of the wrong shape.
    #[error("slot {slot:?}: {problem}")]
    BadSlot {
        /// The slot's name.
        slot: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An action kind this module does not handle.
    #[error("alarms and timers cannot handle the action {0:?}")]
    UnknownKind(String),
    /// The database file could not be opened or prepared.
    #[error("cannot open the alarm store {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of voicegate.
    #[error("the alarm store has schema version {0}; this build understands {SCHEMA_VERSION}")]
    UnsupportedSchema(i64),
    /// A read or write failed.
    #[error("alarm store: {0}")]
    Storage(#[from] rusqlite::Error),
    /// A stored row holds a value this code never writes.
    #[error("alarm store holds an invalid row: {0}")]
    Corrupt(String),
    /// The query could not run (the thread running it failed).
    #[error("the alarm store could not be queried: {0}")]
    Unavailable(String),
}

mod bell;
mod execute;
mod phrasing;
mod request;
mod schedule;
mod time;

pub use bell::{Bell, START_GRACE};
pub use execute::{execute, execute_kind, execute_request};
pub use phrasing::{fired_message, missed_message, missed_while_off};
// How times and lists are said, shared with the answers in `actions::info`.
pub(crate) use phrasing::{MONTH_NAMES, WEEKDAY_NAMES, join_and, speak_clock};
pub use request::{AlarmRequest, CancelAlarm, Pick, SetAlarm, TimerRequest, TimerTarget};
pub use schedule::{AlarmFilter, Entry, Fired, Kind, Schedule, State, TimerFilter, TimerLeft};
pub use time::{DaySpec, day_date, parse_day, resolve_alarm, timer_duration};

use self::{phrasing::*, schedule::*, time::*};

#[cfg(test)]
mod tests {
    use super::request::{count_slot, flag_slot, text_slot};
    use super::*;
    use chrono::FixedOffset;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn clock_times_parse_strictly() {
        assert_eq!(parse_clock("07:00").unwrap(), t(7, 0));
        assert_eq!(parse_clock("7:05").unwrap(), t(7, 5));
        assert_eq!(parse_clock("23:59").unwrap(), t(23, 59));
        for bad in [
            "", "7", "7:5", "24:00", "07:60", "07:00:00", "ab:cd", "-1:00", "007:00",
        ] {
            assert!(parse_clock(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn days_parse() {
        assert_eq!(parse_day("today").unwrap(), DaySpec::Today);
        assert_eq!(parse_day("Tomorrow").unwrap(), DaySpec::Tomorrow);
        assert_eq!(parse_day("friday").unwrap(), DaySpec::Weekday(Weekday::Fri));
        assert_eq!(parse_day("12-03").unwrap(), DaySpec::MonthDay(12, 3));
        assert_eq!(parse_day("02-29").unwrap(), DaySpec::MonthDay(2, 29));
        assert_eq!(
            parse_day("2030-05-03").unwrap(),
            DaySpec::Date(NaiveDate::from_ymd_opt(2030, 5, 3).unwrap())
        );
        assert!(parse_day("2030-02-30").is_err());
        for bad in ["someday", "13-01", "02-30", "1-3", "12/03", ""] {
            assert!(parse_day(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn clocks_are_spoken_on_twelve_hours() {
        let cases = [
            (t(0, 0), "midnight"),
            (t(0, 30), "12:30 AM"),
            (t(7, 0), "7 AM"),
            (t(7, 5), "7:05 AM"),
            (t(12, 0), "noon"),
            (t(12, 15), "12:15 PM"),
            (t(19, 30), "7:30 PM"),
        ];
        for (time, spoken) in cases {
            assert_eq!(speak_clock(time), spoken);
        }
    }

    #[test]
    fn lengths_and_remaining_time() {
        assert_eq!(speak_length(600), "10 minutes");
        assert_eq!(speak_length(90), "1 minute and 30 seconds");
        assert_eq!(speak_length(3723), "1 hour, 2 minutes and 3 seconds");
        assert_eq!(speak_length(3600), "1 hour");
        // Rounded up to the second below an hour...
        assert_eq!(
            speak_remaining(TimeDelta::milliseconds(249_001)),
            "4 minutes and 10 seconds"
        );
        assert_eq!(
            speak_remaining(TimeDelta::milliseconds(250_000)),
            "4 minutes and 10 seconds"
        );
        assert_eq!(speak_remaining(TimeDelta::milliseconds(1)), "1 second");
        // ...and to the minute above.
        assert_eq!(
            speak_remaining(TimeDelta::seconds(3600 + 30)),
            "1 hour and 1 minute"
        );
        assert_eq!(length_adjective(TimeDelta::minutes(90)), "1 hour 30 minute");
    }

    #[test]
    fn places_are_spoken_as_ordinals() {
        let spoken: Vec<String> = [1, 5, 6, 11, 12, 13, 21, 22, 23, 111, 102]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            spoken,
            [
                "first", "fifth", "6th", "11th", "12th", "13th", "21st", "22nd", "23rd", "111th",
                "102nd"
            ]
        );
    }

    #[test]
    fn days_are_spoken_relative_to_today() {
        // 2026-03-04 is a Wednesday.
        let speaker = Speaker::new(&at("2026-03-04T09:00:00+01:00"));
        let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert_eq!(speaker.day(d(3, 4)), "today");
        assert_eq!(speaker.day(d(3, 5)), "tomorrow");
        assert_eq!(speaker.day(d(3, 3)), "yesterday");
        assert_eq!(speaker.day(d(3, 6)), "on Friday");
        assert_eq!(speaker.day(d(3, 10)), "on Tuesday");
        assert_eq!(speaker.day(d(3, 11)), "on March 11");
        let midnight = at("2026-03-05T00:00:00+01:00").with_timezone(&Utc);
        assert_eq!(speaker.when(midnight), "midnight tonight");
    }

    #[test]
    fn day_dates_for_matching_count_today() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(); // Wednesday
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(day_date(DaySpec::Weekday(Weekday::Wed), today), today);
        assert_eq!(
            day_date(DaySpec::Weekday(Weekday::Tue), today),
            d(2026, 3, 10)
        );
        assert_eq!(day_date(DaySpec::MonthDay(3, 4), today), today);
        assert_eq!(day_date(DaySpec::MonthDay(3, 3), today), d(2027, 3, 3));
        assert_eq!(day_date(DaySpec::Tomorrow, today), d(2026, 3, 5));
    }

    #[test]
    fn timer_lengths() {
        assert_eq!(timer_duration(0, 10, 0).unwrap(), TimeDelta::minutes(10));
        assert_eq!(timer_duration(24, 0, 0).unwrap(), TimeDelta::hours(24));
        assert!(matches!(
            timer_duration(0, 0, 0),
            Err(AlarmError::ZeroDuration)
        ));
        assert!(matches!(timer_duration(24, 0, 1), Err(AlarmError::TooLong)));
        assert!(matches!(
            timer_duration(u64::MAX, 1, 1),
            Err(AlarmError::TooLong)
        ));
    }

    #[test]
    fn slots_are_read_leniently_but_checked() {
        let slots: Map<String, Value> = serde_json::from_value(json!({
            "minutes": 5, "seconds": "30", "hours": 1.0, "all": true, "name": "  ",
        }))
        .unwrap();
        assert_eq!(count_slot(&slots, "minutes").unwrap(), Some(5));
        assert_eq!(count_slot(&slots, "seconds").unwrap(), Some(30));
        assert_eq!(count_slot(&slots, "hours").unwrap(), Some(1));
        assert!(flag_slot(&slots, "all").unwrap());
        assert_eq!(text_slot(&slots, "name").unwrap(), None);
        let bad: Map<String, Value> =
            serde_json::from_value(json!({"minutes": -3, "time": 7})).unwrap();
        assert!(count_slot(&bad, "minutes").is_err());
        assert!(text_slot(&bad, "time").is_err());
    }

    #[test]
    fn requests_read_their_slots_once_in_the_old_order() {
        let read = |kind: ActionKind, v: Value| {
            AlarmRequest::from_slots(kind, &serde_json::from_value(v).unwrap())
        };
        assert_eq!(
            read(
                ActionKind::TimerStart,
                json!({"minutes": "10", "name": " pasta "})
            )
            .unwrap(),
            AlarmRequest::StartTimer(TimerRequest {
                duration: TimeDelta::minutes(10),
                name: Some("pasta".into()),
            })
        );
        // `all` is read first, and then nothing else is.
        assert_eq!(
            read(ActionKind::TimerCancel, json!({"all": true, "minutes": -3})).unwrap(),
            AlarmRequest::CancelTimer(TimerTarget::All)
        );
        assert_eq!(
            read(ActionKind::AlarmSet, json!({}))
                .unwrap_err()
                .to_string(),
            "What time should the alarm ring? No time was given."
        );
        // A malformed `day` is reported before a malformed `time`, as before.
        assert!(matches!(
            read(ActionKind::AlarmSet, json!({"time": "7", "day": 5})),
            Err(AlarmError::BadSlot { slot, .. }) if slot == "day"
        ));
        assert!(matches!(
            read(
                ActionKind::AlarmSnooze,
                json!({"minutes": 5_000_000_000u64})
            ),
            Err(AlarmError::BadSnooze(5_000_000_000))
        ));
        assert!(matches!(
            read(ActionKind::MusicPlay, json!({})),
            Err(AlarmError::UnknownKind(kind)) if kind == "music.play"
        ));
    }
}
