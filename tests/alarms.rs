//! Alarms, timers and ringing, end to end against a real SQLite file.
//!
//! These tests exist to pin down the promises of the issue: alarms resolve
//! to the right instant, fire once, survive a restart (and are reported if
//! missed), snooze, stop, cancel and list, timers say how long is left, and
//! a configured ring command really runs. Time is always injected; the only
//! waiting is for child processes, and it is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{
    DateTime, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc,
};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use voicegate::actions::alarms::{
    AlarmError, AlarmFilter, Kind, Schedule, State, TimerFilter, execute, fired_message,
    missed_message, resolve_alarm,
};
use voicegate::actions::ring::{CommandRinger, Ringer};
use voicegate::request::Outcome;

fn local(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

fn utc(text: &str) -> DateTime<Utc> {
    local(text).with_timezone(&Utc)
}

fn store() -> (TempDir, Schedule) {
    let dir = tempfile::tempdir().unwrap();
    let schedule = Schedule::open(dir.path().join("alarms.db")).unwrap();
    (dir, schedule)
}

fn slots(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

/// The message of a `Done` outcome; panics with the error otherwise.
fn said(outcome: Outcome) -> String {
    match outcome {
        Outcome::Done { message, .. } => message,
        Outcome::Failed { error } => panic!("failed: {error}"),
        Outcome::Unknown { error } => panic!("unknown: {error}"),
    }
}

fn failed(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failed { error } => error,
        Outcome::Done { message, .. } => panic!("unexpectedly done: {message}"),
        Outcome::Unknown { error } => panic!("unexpectedly unknown: {error}"),
    }
}

// 2026-03-04 is a Wednesday.
const WED_6AM: &str = "2026-03-04T06:00:00+01:00";
const WED_9AM: &str = "2026-03-04T09:00:00+01:00";

#[test]
fn resolve_alarm_table() {
    // (now, time, day, expected instant in UTC)
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        // No day: today if still ahead, else tomorrow.
        (WED_6AM, "07:00", None, "2026-03-04T06:00:00Z"),
        (WED_9AM, "07:00", None, "2026-03-05T06:00:00Z"),
        (
            "2026-03-04T06:59:59+01:00",
            "07:00",
            None,
            "2026-03-04T06:00:00Z",
        ),
        (
            "2026-03-04T07:00:00+01:00",
            "07:00",
            None,
            "2026-03-05T06:00:00Z",
        ),
        (
            "2026-03-04T22:00:00+01:00",
            "00:00",
            None,
            "2026-03-04T23:00:00Z",
        ),
        // Year boundary.
        (
            "2026-12-31T23:30:00+01:00",
            "00:15",
            None,
            "2026-12-31T23:15:00Z",
        ),
        // Another offset.
        (
            "2026-03-04T20:00:00-08:00",
            "07:00",
            None,
            "2026-03-05T15:00:00Z",
        ),
        // today / tomorrow.
        (WED_9AM, "23:30", Some("today"), "2026-03-04T22:30:00Z"),
        (WED_6AM, "07:00", Some("tomorrow"), "2026-03-05T06:00:00Z"),
        (WED_9AM, "07:00", Some("Tomorrow"), "2026-03-05T06:00:00Z"),
        // Weekdays: today counts while the time is ahead.
        (WED_6AM, "07:00", Some("wednesday"), "2026-03-04T06:00:00Z"),
        (WED_9AM, "07:00", Some("wednesday"), "2026-03-11T06:00:00Z"),
        (WED_9AM, "08:15", Some("monday"), "2026-03-09T07:15:00Z"),
        (WED_9AM, "18:00", Some("thursday"), "2026-03-05T17:00:00Z"),
        (
            "2026-12-31T23:30:00-05:00",
            "06:00",
            Some("friday"),
            "2027-01-01T11:00:00Z",
        ),
        // MM-DD: this year or next.
        (WED_9AM, "09:00", Some("12-03"), "2026-12-03T08:00:00Z"),
        (WED_9AM, "09:00", Some("03-01"), "2027-03-01T08:00:00Z"),
        (WED_6AM, "07:00", Some("03-04"), "2026-03-04T06:00:00Z"),
        (WED_9AM, "07:00", Some("03-04"), "2027-03-04T06:00:00Z"),
        (WED_9AM, "07:00", Some("02-29"), "2028-02-29T06:00:00Z"),
    ];
    for (now, time, day, expected) in cases {
        let got = resolve_alarm(time, *day, local(now))
            .unwrap_or_else(|e| panic!("{now} {time} {day:?}: {e}"));
        assert_eq!(got, utc(expected), "now {now}, time {time}, day {day:?}");
    }
}

#[test]
fn resolve_alarm_rejects_bad_input_and_passed_times() {
    let now = local(WED_9AM);
    for time in ["7", "7:5", "24:00", "07:60", "seven"] {
        assert!(
            matches!(resolve_alarm(time, None, now), Err(AlarmError::BadTime(_))),
            "{time}"
        );
    }
    for day in ["someday", "13-01", "02-30", "3-4"] {
        assert!(
            matches!(
                resolve_alarm("07:00", Some(day), now),
                Err(AlarmError::BadDay(_))
            ),
            "{day}"
        );
    }
    let passed = resolve_alarm("07:00", Some("today"), now).unwrap_err();
    assert!(matches!(passed, AlarmError::Passed(_)));
    assert_eq!(passed.to_string(), "7 AM today has already passed");
}

/// Central European time in 2026, written out so the test does not depend
/// on the machine's zone: +01:00, +02:00 from 29 March 02:00 (a gap) to
/// 25 October 03:00 (a fold).
#[derive(Debug, Clone, Copy)]
struct Cet2026;

impl Cet2026 {
    fn hours(h: i32) -> FixedOffset {
        FixedOffset::east_opt(h * 3600).unwrap()
    }

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }
}

impl TimeZone for Cet2026 {
    type Offset = FixedOffset;

    fn from_offset(_: &FixedOffset) -> Self {
        Cet2026
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
        self.offset_from_local_datetime(&local.and_hms_opt(0, 0, 0).unwrap())
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<FixedOffset> {
        let (gap, fold) = (
            Self::local(2026, 3, 29, 2, 0),
            Self::local(2026, 10, 25, 2, 0),
        );
        let hour = TimeDelta::hours(1);
        if *local < gap {
            MappedLocalTime::Single(Self::hours(1))
        } else if *local < gap + hour {
            MappedLocalTime::None
        } else if *local < fold {
            MappedLocalTime::Single(Self::hours(2))
        } else if *local < fold + hour {
            MappedLocalTime::Ambiguous(Self::hours(2), Self::hours(1))
        } else {
            MappedLocalTime::Single(Self::hours(1))
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
        self.offset_from_utc_datetime(&utc.and_hms_opt(0, 0, 0).unwrap())
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
        if *utc < Self::local(2026, 3, 29, 1, 0) || *utc >= Self::local(2026, 10, 25, 1, 0) {
            Self::hours(1)
        } else {
            Self::hours(2)
        }
    }
}

#[test]
fn a_real_zone_keeps_wall_time_across_daylight_saving_changes() {
    let saturday = Cet2026.with_ymd_and_hms(2026, 3, 28, 9, 0, 0).unwrap();
    // With the zone, 7:00 on Sunday is 7:00 summer time...
    assert_eq!(
        resolve_alarm("07:00", Some("tomorrow"), saturday).unwrap(),
        utc("2026-03-29T07:00:00+02:00")
    );
    // ...with only today's offset it is an hour late (the documented limit).
    assert_eq!(
        resolve_alarm("07:00", Some("tomorrow"), saturday.fixed_offset()).unwrap(),
        utc("2026-03-29T07:00:00+01:00")
    );
    // 02:30 does not exist that night: it rings when the gap ends.
    assert_eq!(
        resolve_alarm("02:30", Some("sunday"), saturday).unwrap(),
        utc("2026-03-29T03:00:00+02:00")
    );
    // 02:30 happens twice on 25 October: the first one.
    let october = Cet2026.with_ymd_and_hms(2026, 10, 24, 9, 0, 0).unwrap();
    assert_eq!(
        resolve_alarm("02:30", None, october + TimeDelta::hours(15)).unwrap(),
        utc("2026-10-25T02:30:00+02:00")
    );

    // execute speaks in the zone's own time on each day.
    let (_dir, s) = store();
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, saturday);
    assert_eq!(
        said(run(
            "alarm.set",
            json!({"time": "07:00", "day": "tomorrow"})
        )),
        "Alarm set for 7 AM tomorrow."
    );
    assert_eq!(
        said(run("alarm.list", json!({}))),
        "You have 1 alarm: 7 AM tomorrow."
    );
}

#[test]
fn due_fires_once_and_only_when_due() {
    let (_dir, s) = store();
    let due = utc("2026-03-05T07:00:00+01:00");
    let now = utc(WED_9AM);
    let alarm = s.set_alarm(due, Some("gym"), now).unwrap();
    assert_eq!(alarm.state, State::Pending);
    assert_eq!(s.next_due().unwrap(), Some(due));

    assert!(s.due(due - TimeDelta::seconds(1)).unwrap().is_empty());
    let fired = s.due(due).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].id, alarm.id);
    assert_eq!(fired[0].state, State::Ringing);
    assert_eq!(fired[0].ring_text(), "alarm: gym");
    // Idempotent: the same alarm is never returned twice.
    assert!(s.due(due).unwrap().is_empty());
    assert!(s.due(due + TimeDelta::minutes(5)).unwrap().is_empty());
    assert_eq!(s.next_due().unwrap(), None);
}

#[test]
fn a_second_connection_does_not_fire_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alarms.db");
    let a = Schedule::open(&path).unwrap();
    let b = Schedule::open(&path).unwrap();
    let due = utc("2026-03-05T07:00:00+01:00");
    a.set_alarm(due, None, utc(WED_9AM)).unwrap();
    assert_eq!(b.due(due).unwrap().len(), 1);
    assert!(a.due(due).unwrap().is_empty());
}

#[test]
fn set_alarm_rejects_the_past_and_does_not_duplicate() {
    let (_dir, s) = store();
    let now = utc(WED_9AM);
    assert!(matches!(
        s.set_alarm(now, None, now),
        Err(AlarmError::Passed(_))
    ));
    let at = now + TimeDelta::hours(1);
    let first = s.set_alarm(at, None, now).unwrap();
    let again = s.set_alarm(at, None, now).unwrap();
    assert_eq!(first.id, again.id);
    let labelled = s.set_alarm(at, Some("gym"), now).unwrap();
    assert_ne!(first.id, labelled.id);
    assert_eq!(s.list_alarms().unwrap().len(), 2);
}

#[test]
fn restart_reports_missed_entries_once_and_never_fires_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alarms.db");
    let set_at = utc(WED_9AM);
    let due = utc("2026-03-05T07:00:00+01:00");
    let (alarm, timer) = {
        let s = Schedule::open(&path).unwrap();
        let alarm = s.set_alarm(due, None, set_at).unwrap();
        let timer = s
            .start_timer(TimeDelta::minutes(10), Some("pasta"), set_at)
            .unwrap();
        (alarm, timer)
    }; // the daemon goes down

    let later = due + TimeDelta::hours(2);
    let grace = TimeDelta::minutes(5);
    let s = Schedule::open(&path).unwrap();
    let missed = s.missed_at_start(later, grace).unwrap();
    assert_eq!(
        missed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [timer.id, alarm.id]
    );
    assert!(missed.iter().all(|e| e.state == State::Missed));
    let spoken = missed_message(&missed, local("2026-03-05T09:00:00+01:00")).unwrap();
    assert_eq!(
        spoken,
        "You missed the pasta timer, which ended at 9:10 AM yesterday. \
         You missed an alarm at 7 AM today."
    );

    // Reported once, never rung.
    assert!(s.missed_at_start(later, grace).unwrap().is_empty());
    assert!(s.due(later).unwrap().is_empty());
    drop(s);
    let s = Schedule::open(&path).unwrap();
    assert!(s.missed_at_start(later, grace).unwrap().is_empty());
    assert!(s.due(later).unwrap().is_empty());
    assert!(s.list_alarms().unwrap().is_empty());
    assert_eq!(s.next_due().unwrap(), None);
}

#[test]
fn restart_within_grace_rings_late_instead_of_reporting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alarms.db");
    let due = utc("2026-03-05T07:00:00+01:00");
    Schedule::open(&path)
        .unwrap()
        .set_alarm(due, None, utc(WED_9AM))
        .unwrap();

    let s = Schedule::open(&path).unwrap();
    let now = due + TimeDelta::minutes(1);
    assert!(
        s.missed_at_start(now, TimeDelta::minutes(5))
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.due(now).unwrap().len(), 1);
}

#[test]
fn an_alarm_ringing_when_the_daemon_stopped_does_not_ring_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alarms.db");
    let due = utc("2026-03-05T07:00:00+01:00");
    {
        let s = Schedule::open(&path).unwrap();
        s.set_alarm(due, None, utc(WED_9AM)).unwrap();
        assert_eq!(s.due(due).unwrap().len(), 1);
    } // crashed while ringing

    let s = Schedule::open(&path).unwrap();
    let now = due + TimeDelta::minutes(30);
    assert!(
        s.missed_at_start(now, TimeDelta::minutes(5))
            .unwrap()
            .is_empty()
    );
    assert!(s.due(now).unwrap().is_empty());
    assert!(s.stop(now).unwrap().is_empty());
    assert!(s.list_alarms().unwrap().is_empty());
}

#[test]
fn snooze_rings_again_later() {
    let (_dir, s) = store();
    let due = utc("2026-03-05T07:00:00+01:00");
    let alarm = s.set_alarm(due, None, utc(WED_9AM)).unwrap();
    assert!(s.snooze(None, due).unwrap().is_empty(), "nothing rings yet");

    s.due(due).unwrap();
    let pressed = due + TimeDelta::seconds(30);
    let snoozed = s.snooze(None, pressed).unwrap();
    assert_eq!(snoozed.len(), 1);
    assert_eq!(snoozed[0].state, State::Pending);
    let again = pressed + TimeDelta::minutes(9);
    assert_eq!(snoozed[0].snoozed_until, Some(again));
    assert_eq!(snoozed[0].rings_at(), again);
    assert_eq!(snoozed[0].due_at, due, "the set time is kept");
    assert_eq!(s.next_due().unwrap(), Some(again));

    assert!(s.due(again - TimeDelta::seconds(1)).unwrap().is_empty());
    let fired = s.due(again).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].id, alarm.id);

    let five = s.snooze(Some(5), again).unwrap();
    assert_eq!(five[0].rings_at(), again + TimeDelta::minutes(5));
    assert!(matches!(
        s.snooze(Some(0), again),
        Err(AlarmError::BadSnooze(0))
    ));
    assert!(matches!(
        s.snooze(Some(61), again),
        Err(AlarmError::BadSnooze(61))
    ));
}

#[test]
fn stop_ends_the_ringing() {
    let (_dir, s) = store();
    let due = utc("2026-03-05T07:00:00+01:00");
    s.set_alarm(due, None, utc(WED_9AM)).unwrap();
    assert!(s.stop(due).unwrap().is_empty());
    s.due(due).unwrap();
    let stopped = s.stop(due + TimeDelta::seconds(20)).unwrap();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].state, State::Done);
    assert!(s.stop(due + TimeDelta::seconds(21)).unwrap().is_empty());
    assert!(s.list_alarms().unwrap().is_empty());
    assert!(s.due(due + TimeDelta::hours(1)).unwrap().is_empty());
}

#[test]
fn cancel_alarms_by_time_day_label_or_all() {
    let (_dir, s) = store();
    let now_local = local(WED_9AM);
    let now = now_local.with_timezone(&Utc);
    let tz = *now_local.offset();
    let set = |time, day, label| {
        let at = resolve_alarm(time, day, now_local).unwrap();
        s.set_alarm(at, label, now).unwrap()
    };
    let thu7 = set("07:00", None, None);
    let fri7 = set("07:00", Some("friday"), Some("gym"));
    let fri830 = set("08:30", Some("friday"), None);
    let sat7 = set("07:00", Some("saturday"), None);

    let friday = fri7.due_at.with_timezone(&tz).date_naive();
    let by_time_and_day = AlarmFilter::Matching {
        time: Some("08:30".parse().unwrap()),
        date: Some(friday),
        label: None,
    };
    let cancelled = s.cancel_alarms(&by_time_and_day, &tz, now).unwrap();
    assert_eq!(
        cancelled.iter().map(|e| e.id).collect::<Vec<_>>(),
        [fri830.id]
    );

    let by_label = AlarmFilter::Matching {
        time: None,
        date: None,
        label: Some(" GYM ".into()),
    };
    let cancelled = s.cancel_alarms(&by_label, &tz, now).unwrap();
    assert_eq!(
        cancelled.iter().map(|e| e.id).collect::<Vec<_>>(),
        [fri7.id]
    );

    let by_id = s.cancel(sat7.id, now).unwrap().unwrap();
    assert_eq!(by_id.state, State::Pending, "returned as it was");
    assert!(
        s.cancel(sat7.id, now).unwrap().is_none(),
        "already cancelled"
    );

    assert_eq!(
        s.list_alarms()
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [thu7.id]
    );
    let all = s.cancel_alarms(&AlarmFilter::All, &tz, now).unwrap();
    assert_eq!(all.len(), 1);
    assert!(s.list_alarms().unwrap().is_empty());
    assert!(s.due(now + TimeDelta::days(30)).unwrap().is_empty());
}

#[test]
fn cancel_timers_by_name_length_or_all() {
    let (_dir, s) = store();
    let now = utc(WED_9AM);
    let pasta = s
        .start_timer(TimeDelta::minutes(10), Some("pasta"), now)
        .unwrap();
    let eggs = s
        .start_timer(TimeDelta::minutes(6), Some("boiled eggs"), now)
        .unwrap();
    let plain = s.start_timer(TimeDelta::minutes(10), None, now).unwrap();
    assert_eq!(pasta.kind, Kind::Timer);
    assert_eq!(pasta.duration, Some(TimeDelta::minutes(10)));
    assert_eq!(pasta.due_at, now + TimeDelta::minutes(10));

    let named = s
        .cancel_timers(&TimerFilter::Named("Pasta".into()), now)
        .unwrap();
    assert_eq!(named.iter().map(|e| e.id).collect::<Vec<_>>(), [pasta.id]);
    let by_length = s
        .cancel_timers(&TimerFilter::Lasting(TimeDelta::minutes(10)), now)
        .unwrap();
    assert_eq!(
        by_length.iter().map(|e| e.id).collect::<Vec<_>>(),
        [plain.id]
    );
    let all = s.cancel_timers(&TimerFilter::All, now).unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [eggs.id]);
    assert!(s.list_timers().unwrap().is_empty());
}

#[test]
fn list_is_soonest_first_and_hides_finished_entries() {
    let (_dir, s) = store();
    let now = utc(WED_9AM);
    let late = s.set_alarm(now + TimeDelta::hours(5), None, now).unwrap();
    let soon = s.set_alarm(now + TimeDelta::hours(1), None, now).unwrap();
    let gone = s.set_alarm(now + TimeDelta::hours(2), None, now).unwrap();
    s.cancel(gone.id, now).unwrap();
    let timer = s.start_timer(TimeDelta::minutes(1), None, now).unwrap();
    let ids: Vec<i64> = s.list_alarms().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [soon.id, late.id]);
    assert_eq!(s.list_timers().unwrap()[0].id, timer.id);
}

#[test]
fn timer_status_counts_down() {
    let (_dir, s) = store();
    let start = utc(WED_9AM);
    s.start_timer(TimeDelta::minutes(10), Some("pasta"), start)
        .unwrap();
    let later = start + TimeDelta::milliseconds(349_500);
    let status = s.timer_status(Some("PASTA"), later).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].remaining, TimeDelta::milliseconds(250_500));
    assert!(s.timer_status(Some("eggs"), later).unwrap().is_empty());
    let after = s
        .timer_status(None, start + TimeDelta::minutes(11))
        .unwrap();
    assert_eq!(after[0].remaining, TimeDelta::zero());
}

#[test]
fn prune_removes_only_old_finished_entries() {
    let (_dir, s) = store();
    let now = utc(WED_9AM);
    let a = s.set_alarm(now + TimeDelta::hours(1), None, now).unwrap();
    s.set_alarm(now + TimeDelta::hours(2), None, now).unwrap();
    s.cancel(a.id, now).unwrap();
    assert_eq!(s.prune(now).unwrap(), 0);
    assert_eq!(s.prune(now + TimeDelta::seconds(1)).unwrap(), 1);
    assert_eq!(s.list_alarms().unwrap().len(), 1);
}

#[test]
fn opening_creates_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested.db");
    let now = utc(WED_9AM);
    Schedule::open(&path)
        .unwrap()
        .set_alarm(now + TimeDelta::hours(1), None, now)
        .unwrap();
    let s = Schedule::open(&path).unwrap();
    assert_eq!(s.path(), path.as_path());
    assert_eq!(s.list_alarms().unwrap().len(), 1);
    assert!(Schedule::open(dir.path().join("missing/dir/x.db")).is_err());
}

// ---------------------------------------------------------------------------
// execute: what the user hears
// ---------------------------------------------------------------------------

#[test]
fn execute_sets_and_lists_alarms() {
    let (_dir, s) = store();
    let now = local(WED_9AM);
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, now);

    assert_eq!(said(run("alarm.list", json!({}))), "You have no alarms.");
    assert_eq!(
        said(run("alarm.set", json!({"time": "07:00"}))),
        "Alarm set for 7 AM tomorrow."
    );
    assert_eq!(
        said(run("alarm.set", json!({"time": "08:30", "day": "friday"}))),
        "Alarm set for 8:30 AM on Friday."
    );
    assert_eq!(
        said(run(
            "alarm.set",
            json!({"time": "06:45", "day": "12-03", "label": "gym"})
        )),
        "Alarm set for 6:45 AM on December 3 called gym."
    );
    assert_eq!(
        said(run("alarm.set", json!({"time": "12:00", "day": "today"}))),
        "Alarm set for noon today."
    );
    assert_eq!(
        said(run("alarm.list", json!({}))),
        "You have 4 alarms: noon today, 7 AM tomorrow, 8:30 AM on Friday \
         and 6:45 AM on December 3 called gym."
    );
    assert_eq!(
        said(run("alarm.list", json!({"day": "tomorrow"}))),
        "You have 1 alarm tomorrow: 7 AM."
    );
    assert_eq!(
        said(run("alarm.list", json!({"day": "saturday"}))),
        "You have no alarms on Saturday."
    );

    assert_eq!(
        failed(run("alarm.set", json!({}))),
        "What time should the alarm ring? No time was given."
    );
    assert_eq!(
        failed(run("alarm.set", json!({"time": "07:00", "day": "today"}))),
        "7 AM today has already passed"
    );
    assert!(failed(run("alarm.set", json!({"time": "25:00"}))).contains("not a time of day"));
    assert!(failed(run("alarm.set", json!({"time": 7}))).contains("expected text"));
    assert!(failed(run("alarm.dance", json!({}))).contains("alarm.dance"));
}

#[test]
fn execute_cancels_alarms_and_asks_when_unsure() {
    let (_dir, s) = store();
    let now = local(WED_9AM);
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, now);

    assert_eq!(said(run("alarm.cancel", json!({}))), "You have no alarms.");
    said(run("alarm.set", json!({"time": "07:00"})));
    said(run("alarm.set", json!({"time": "07:00", "day": "friday"})));
    said(run("alarm.set", json!({"time": "08:30", "day": "friday"})));

    assert_eq!(
        said(run("alarm.cancel", json!({}))),
        "You have 3 alarms: 7 AM tomorrow, 7 AM on Friday and 8:30 AM on Friday. \
         Which one should I cancel?"
    );
    assert_eq!(
        said(run("alarm.cancel", json!({"time": "07:00"}))),
        "You have 2 alarms at 7 AM: 7 AM tomorrow and 7 AM on Friday. \
         Which one should I cancel?"
    );
    assert_eq!(
        said(run("alarm.cancel", json!({"time": "09:00"}))),
        "There's no alarm at 9 AM."
    );
    assert_eq!(
        said(run(
            "alarm.cancel",
            json!({"time": "07:00", "day": "tomorrow"})
        )),
        "Cancelled the alarm for 7 AM tomorrow."
    );
    assert_eq!(
        said(run("alarm.cancel", json!({"day": "friday"}))),
        "Cancelled 2 alarms: 7 AM on Friday and 8:30 AM on Friday."
    );
    said(run("alarm.set", json!({"time": "07:00"})));
    assert_eq!(
        said(run("alarm.cancel", json!({}))),
        "Cancelled the alarm for 7 AM tomorrow."
    );
    said(run("alarm.set", json!({"time": "07:00"})));
    said(run("alarm.set", json!({"time": "08:00"})));
    assert_eq!(
        said(run("alarm.cancel", json!({"all": true}))),
        "Cancelled all 2 alarms."
    );
    assert_eq!(said(run("alarm.list", json!({}))), "You have no alarms.");
}

/// The follow-up question a `Done` outcome's reply asks, if any.
fn asks(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Done { detail, .. } => detail[voicegate::request::ASKS_KEY].as_str(),
        _ => None,
    }
}

#[test]
fn a_cancel_that_cannot_tell_which_asks_which_and_both_means_those() {
    let (_dir, s) = store();
    let now = local(WED_9AM);
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, now);

    said(run("alarm.set", json!({"time": "07:00"})));
    said(run("alarm.set", json!({"time": "07:00", "day": "friday"})));
    said(run("alarm.set", json!({"time": "08:30", "day": "friday"})));
    // Which one: the reply names the question the gate waits on.
    assert_eq!(asks(&run("alarm.cancel", json!({}))), Some("which"));
    assert_eq!(
        asks(&run("alarm.cancel", json!({"time": "07:00"}))),
        Some("which")
    );
    // "both", answering about the two at 7 AM: those two, not 8:30.
    assert_eq!(
        said(run("alarm.cancel", json!({"time": "07:00", "all": true}))),
        "Cancelled 2 alarms: 7 AM tomorrow and 7 AM on Friday."
    );
    assert_eq!(
        said(run("alarm.list", json!({}))),
        "You have 1 alarm: 8:30 AM on Friday."
    );
    // A cancel that knows which asks nothing.
    assert_eq!(asks(&run("alarm.cancel", json!({}))), None);

    said(run("timer.start", json!({"minutes": 5})));
    said(run("timer.start", json!({"minutes": 10})));
    assert_eq!(asks(&run("timer.cancel", json!({}))), Some("which"));
    assert_eq!(
        said(run("timer.cancel", json!({"all": true}))),
        "Cancelled all 2 timers."
    );
}

#[test]
fn the_second_one_is_the_second_of_the_list_the_question_gave() {
    let (_dir, s) = store();
    let now = local(WED_9AM);
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, now);

    // Two timers of the same length: only their places tell them apart.
    said(run("timer.start", json!({"minutes": 10})));
    said(run("timer.start", json!({"minutes": 10, "name": "pasta"})));
    said(run("timer.start", json!({"minutes": 10})));
    assert_eq!(
        said(run("timer.cancel", json!({}))),
        "You have 3 timers: the first 10 minute timer, the pasta timer and the second 10 \
         minute timer. Which one should I cancel?"
    );
    assert_eq!(
        said(run("timer.cancel", json!({"position": 2}))),
        "Cancelled the pasta timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"position": 3}))),
        "There are only 2 timers."
    );
    said(run("timer.cancel", json!({"last": true})));
    assert_eq!(said(run("timer.cancel", json!({}))), "Cancelled the timer.");
    assert!(failed(run("timer.cancel", json!({"position": 0}))).contains("position"));

    said(run("alarm.set", json!({"time": "07:00"})));
    said(run("alarm.set", json!({"time": "07:00", "day": "friday"})));
    said(run("alarm.set", json!({"time": "08:30", "day": "friday"})));
    // Answering about the two at 7 AM: the second of those two.
    assert_eq!(
        said(run("alarm.cancel", json!({"time": "07:00", "position": 2}))),
        "Cancelled the alarm for 7 AM on Friday."
    );
    assert_eq!(
        said(run("alarm.cancel", json!({"last": true}))),
        "Cancelled the alarm for 8:30 AM on Friday."
    );
    assert_eq!(
        said(run("alarm.list", json!({}))),
        "You have 1 alarm: 7 AM tomorrow."
    );
}

#[test]
fn timers_sharing_a_name_are_told_apart_by_their_place() {
    let (_dir, s) = store();
    let now = local(WED_9AM);
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, now);

    // Soonest first: the 10 minute pasta timer is called "pasta", so the
    // two unnamed ones are the first and second 10 minute timers.
    said(run("timer.start", json!({"minutes": 10})));
    said(run("timer.start", json!({"minutes": 10, "name": "pasta"})));
    said(run("timer.start", json!({"minutes": 20})));
    said(run("timer.start", json!({"minutes": 10})));
    assert_eq!(
        said(run("timer.status", json!({}))),
        "You have 4 timers: 10 minutes left on the first 10 minute timer, 10 minutes left on \
         the pasta timer, 10 minutes left on the second 10 minute timer and 20 minutes left on \
         the 20 minute timer."
    );
    assert_eq!(
        said(run("timer.status", json!({"minutes": 10, "position": 2}))),
        "10 minutes left on the second 10 minute timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"minutes": 10, "position": 3}))),
        "There are only 2 10 minute timers."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"minutes": 10, "last": true}))),
        "Cancelled the second 10 minute timer."
    );
    // One left of that length and no name: no place needed any more.
    assert_eq!(
        said(run("timer.status", json!({"minutes": 10}))),
        "You have 2 timers: 10 minutes left on the 10 minute timer and 10 minutes left on the \
         pasta timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"minutes": 10, "position": 2}))),
        "There's only one 10 minute timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"name": "soup", "position": 1}))),
        "There's no soup timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"minutes": 10, "position": 1}))),
        "Cancelled the 10 minute timer."
    );
    assert_eq!(
        said(run("timer.status", json!({}))),
        "You have 2 timers: 10 minutes left on the pasta timer and 20 minutes left on the 20 \
         minute timer."
    );
}

#[test]
fn execute_stops_and_snoozes() {
    let (_dir, s) = store();
    let set_at = local(WED_9AM);
    say_done(execute(
        "alarm.set",
        &slots(json!({"time": "10:00"})),
        &s,
        set_at,
    ));
    let ringing = local("2026-03-04T10:00:00+01:00");
    let run = |kind: &str, v: Value| execute(kind, &slots(v), &s, ringing);

    assert_eq!(said(run("alarm.stop", json!({}))), "No alarm is ringing.");
    assert_eq!(said(run("alarm.snooze", json!({}))), "No alarm is ringing.");

    let fired = s.due(ringing.with_timezone(&Utc)).unwrap();
    assert_eq!(fired_message(&fired[0], ringing), "Alarm for 10 AM.");
    match run("alarm.snooze", json!({})) {
        Outcome::Done { message, detail } => {
            assert_eq!(message, "Snoozed for 9 minutes.");
            assert_eq!(detail["stop_ringing"], json!(true));
            assert_eq!(detail["until"], json!("2026-03-04T09:09:00Z"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        said(run("alarm.list", json!({}))),
        "You have 1 alarm: 10 AM today (snoozed until 10:09 AM)."
    );
    s.due(ringing.with_timezone(&Utc) + TimeDelta::minutes(9))
        .unwrap();
    assert_eq!(
        said(run("alarm.snooze", json!({"minutes": 5}))),
        "Snoozed for 5 minutes."
    );
    assert!(failed(run("alarm.snooze", json!({"minutes": 0}))).contains("between 1 and 60"));
    s.due(ringing.with_timezone(&Utc) + TimeDelta::minutes(20))
        .unwrap();
    match run("alarm.stop", json!({})) {
        Outcome::Done { message, detail } => {
            assert_eq!(message, "Alarm stopped.");
            assert_eq!(detail["stop_ringing"], json!(true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(said(run("alarm.stop", json!({}))), "No alarm is ringing.");
}

fn say_done(outcome: Outcome) {
    said(outcome);
}

#[test]
fn execute_starts_reports_and_cancels_timers() {
    let (_dir, s) = store();
    let start = local(WED_9AM);
    let at = |seconds: i64| start + TimeDelta::milliseconds(seconds);
    let run = |kind: &str, v: Value, now| execute(kind, &slots(v), &s, now);

    assert_eq!(
        said(run("timer.status", json!({}), start)),
        "You have no timers."
    );
    assert_eq!(
        said(run("timer.start", json!({"minutes": 10}), start)),
        "Timer set for 10 minutes."
    );
    assert_eq!(
        said(run("timer.status", json!({}), at(300_000))),
        "5 minutes left on your timer."
    );
    assert_eq!(
        said(run(
            "timer.start",
            json!({"minutes": 10, "name": "pasta"}),
            start
        )),
        "Pasta timer set for 10 minutes."
    );
    // Rounded up to the second, like a countdown.
    assert_eq!(
        said(run("timer.status", json!({"name": "pasta"}), at(350_000))),
        "4 minutes and 10 seconds left on the pasta timer."
    );
    assert_eq!(
        said(run("timer.status", json!({"name": "pasta"}), at(349_500))),
        "4 minutes and 11 seconds left on the pasta timer."
    );
    assert_eq!(
        said(run("timer.status", json!({}), at(350_000))),
        "You have 2 timers: 4 minutes and 10 seconds left on the 10 minute timer \
         and 4 minutes and 10 seconds left on the pasta timer."
    );
    assert_eq!(
        said(run("timer.status", json!({"name": "eggs"}), at(350_000))),
        "There's no eggs timer."
    );
    assert_eq!(
        said(run("timer.status", json!({"name": "pasta"}), at(600_000))),
        "The pasta timer is done."
    );
    assert_eq!(
        said(run(
            "timer.start",
            json!({"hours": 1, "minutes": 30, "name": "bread"}),
            start
        )),
        "Bread timer set for 1 hour and 30 minutes."
    );
    assert_eq!(
        said(run("timer.status", json!({"name": "bread"}), at(30_000))),
        "1 hour and 30 minutes left on the bread timer."
    );

    assert_eq!(
        said(run("timer.cancel", json!({}), start)),
        "You have 3 timers: the 10 minute timer, the pasta timer and the bread timer. \
         Which one should I cancel?"
    );
    assert_eq!(
        said(run("timer.cancel", json!({"name": "pasta"}), start)),
        "Cancelled the pasta timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"name": "pasta"}), start)),
        "There's no pasta timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({"minutes": 10}), start)),
        "Cancelled the 10 minute timer."
    );
    assert_eq!(
        said(run("timer.cancel", json!({}), start)),
        "Cancelled the bread timer."
    );
    said(run("timer.start", json!({"seconds": 90}), start));
    said(run("timer.start", json!({"seconds": 30}), start));
    assert_eq!(
        said(run("timer.cancel", json!({"all": true}), start)),
        "Cancelled all 2 timers."
    );

    assert!(failed(run("timer.start", json!({}), start)).contains("How long"));
    assert!(failed(run("timer.start", json!({"seconds": 0}), start)).contains("at least one"));
    assert!(failed(run("timer.start", json!({"hours": 25}), start)).contains("24 hours"));
    assert!(failed(run("timer.start", json!({"minutes": 1.5}), start)).contains("whole number"));
}

#[test]
fn a_ringing_timer_is_announced_and_cancelling_it_stops_the_ring() {
    let (_dir, s) = store();
    let start = local(WED_9AM);
    say_done(execute(
        "timer.start",
        &slots(json!({"minutes": 10})),
        &s,
        start,
    ));
    let done = start + TimeDelta::minutes(10);
    let fired = s.due(done.with_timezone(&Utc)).unwrap();
    assert_eq!(
        fired_message(&fired[0], done),
        "Your 10 minute timer is done."
    );
    assert_eq!(fired[0].ring_text(), "timer");
    match execute("timer.cancel", &slots(json!({})), &s, done) {
        Outcome::Done { message, detail } => {
            assert_eq!(message, "Cancelled the timer.");
            assert_eq!(detail["stop_ringing"], json!(true));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Ringing through a command
// ---------------------------------------------------------------------------

/// Waits (bounded) until `path` exists and is non-empty.
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn command_ringer_runs_the_command_with_what_rings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rang.txt");
    let mut ringer = CommandRinger::new(format!("echo $VOICEGATE_RING >> '{}'", file.display()));
    ringer.start("alarm: gym").unwrap();
    let status = ringer
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("the command finishes");
    assert!(status.success());
    ringer.start("timer").unwrap();
    assert!(
        ringer
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .is_some()
    );
    ringer.stop();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "alarm: gym\ntimer\n"
    );
}

#[test]
fn stopping_a_command_ringer_ends_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut ringer = CommandRinger::new(format!(
        "sleep 60 & echo $! > '{}'; wait",
        pid_file.display()
    ));
    ringer.start("alarm").unwrap();
    let pid: u32 = wait_for_file(&pid_file).trim().parse().unwrap();
    assert!(ringer.is_running());

    let began = Instant::now();
    ringer.stop();
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(!ringer.is_running());

    // The background `sleep` is gone too (or a zombie awaiting its reaper).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next());
        if stat.is_empty() || state == Some('Z') {
            break;
        }
        assert!(Instant::now() < deadline, "sleep {pid} survived: {stat}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
