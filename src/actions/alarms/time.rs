//! Time: spoken clock times, days and timer lengths as instants and lengths.
//!
//! Exists so that the one tricky part of alarms, turning "07:00" and
//! "friday" into a UTC instant across time zones and daylight-saving
//! changes (see the parent module's docs), is pure and tested on its own:
//! nothing here reads the clock or touches storage; `now` is passed in.

use super::*;

/// A day as the intent engine gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaySpec {
    /// `today` (or `tonight`).
    Today,
    /// `tomorrow`.
    Tomorrow,
    /// The next such weekday, counting today.
    Weekday(Weekday),
    /// Month and day of month.
    MonthDay(u32, u32),
    /// A date with its year ("may 3rd 2030").
    Date(NaiveDate),
}

/// Parses `HH:MM` (24-hour; a one-digit hour is accepted).
pub(super) fn parse_clock(text: &str) -> Result<NaiveTime, AlarmError> {
    let bad = || AlarmError::BadTime(text.to_string());
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// Parses `today`, `tomorrow`, a weekday name, `MM-DD` or `YYYY-MM-DD`.
pub fn parse_day(text: &str) -> Result<DaySpec, AlarmError> {
    let bad = || AlarmError::BadDay(text.to_string());
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "today" | "tonight" => return Ok(DaySpec::Today),
        "tomorrow" => return Ok(DaySpec::Tomorrow),
        _ => {}
    }
    if let Ok(w) = t.parse::<Weekday>() {
        return Ok(DaySpec::Weekday(w));
    }
    if t.len() == 10 {
        return NaiveDate::parse_from_str(&t, "%Y-%m-%d")
            .map(DaySpec::Date)
            .map_err(|_| bad());
    }
    let (m, d) = t.split_once('-').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(m) || !two_digits(d) {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // 2000 is a leap year, so this accepts 02-29 and rejects 02-30 / 13-01.
    NaiveDate::from_ymd_opt(2000, m, d).ok_or_else(bad)?;
    Ok(DaySpec::MonthDay(m, d))
}

/// The instant of a local wall-clock time in `tz`, settling DST gaps and
/// folds as the module docs describe.
pub(super) fn local_instant<Tz: TimeZone>(tz: &Tz, at: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are at most a few hours; probe minute by minute past the gap.
    (0..=240).find_map(|minutes| {
        let shifted = at.checked_add_signed(TimeDelta::minutes(minutes))?;
        tz.from_local_datetime(&shifted)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The calendar date a day refers to, for matching stored alarms: the next
/// such day counting today (`MM-DD`: this year unless already past).
pub fn day_date(day: DaySpec, today: NaiveDate) -> NaiveDate {
    match day {
        DaySpec::Today => today,
        DaySpec::Tomorrow => today.succ_opt().unwrap_or(today),
        DaySpec::Weekday(w) => {
            let ahead = (7 + w.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
            today + Days::new(u64::from(ahead))
        }
        DaySpec::Date(date) => date,
        DaySpec::MonthDay(m, d) => (today.year()..today.year() + 8)
            .filter_map(|y| NaiveDate::from_ymd_opt(y, m, d))
            .find(|date| *date >= today)
            .unwrap_or(today),
    }
}

/// The next occurrence of a spoken alarm time, as a UTC instant.
///
/// `time` is `HH:MM` (24-hour); `day` is `today`, `tomorrow`, a weekday name
/// or `MM-DD`, as the intent engine's `time`/`date` built-ins produce them.
///
/// - no day: today if the time is still ahead, else tomorrow;
/// - `today`: today, or [`AlarmError::Passed`] if the time has gone by;
/// - `tomorrow`: tomorrow;
/// - a weekday: the next such day; today counts if the time is still ahead;
/// - `MM-DD`: that date this year if still ahead, else next year (a 29
///   February goes to the next leap year).
///
/// "Still ahead" means strictly after `now`. See the module docs for how
/// the time zone `Tz` affects daylight-saving changes.
pub fn resolve_alarm<Tz: TimeZone>(
    time: &str,
    day: Option<&str>,
    now: DateTime<Tz>,
) -> Result<DateTime<Utc>, AlarmError> {
    let clock = parse_clock(time)?;
    let day = day.map(parse_day).transpose()?;
    resolve_parsed(clock, day, time, now)
}

/// [`resolve_alarm`] for a time and day already parsed; `time` is the
/// time's text, for the error when no such instant exists.
pub(super) fn resolve_parsed<Tz: TimeZone>(
    clock: NaiveTime,
    day: Option<DaySpec>,
    time: &str,
    now: DateTime<Tz>,
) -> Result<DateTime<Utc>, AlarmError> {
    let tz = now.timezone();
    let now_utc = now.with_timezone(&Utc);
    let today = now.naive_local().date();
    let at = |date: NaiveDate| local_instant(&tz, date.and_time(clock));
    let ahead = |date: NaiveDate| at(date).filter(|t| *t > now_utc);
    let found = match day {
        None => (0..=1).find_map(|n| ahead(today + Days::new(n))),
        Some(DaySpec::Today) => {
            return ahead(today)
                .ok_or_else(|| AlarmError::Passed(format!("{} today", speak_clock(clock))));
        }
        Some(DaySpec::Tomorrow) => today.succ_opt().and_then(at),
        Some(DaySpec::Weekday(w)) => (0..=7)
            .map(|n| today + Days::new(n))
            .filter(|date| date.weekday() == w)
            .find_map(ahead),
        Some(DaySpec::Date(date)) => ahead(date),
        Some(DaySpec::MonthDay(m, d)) => (today.year()..=today.year() + 8)
            .filter_map(|y| NaiveDate::from_ymd_opt(y, m, d))
            .find_map(ahead),
    };
    found.ok_or_else(|| AlarmError::BadTime(time.to_string()))
}

/// The length of a timer from the spoken parts; absent parts are zero.
///
/// Errors: [`AlarmError::ZeroDuration`] for nothing at all,
/// [`AlarmError::TooLong`] above [`MAX_TIMER`] (exactly 24 hours is fine).
pub fn timer_duration(hours: u64, minutes: u64, seconds: u64) -> Result<TimeDelta, AlarmError> {
    let total = hours
        .checked_mul(3600)
        .and_then(|h| minutes.checked_mul(60).and_then(|m| h.checked_add(m)))
        .and_then(|hm| hm.checked_add(seconds))
        .ok_or(AlarmError::TooLong)?;
    check_timer(
        i64::try_from(total)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .ok_or(AlarmError::TooLong)?,
    )
}

pub(super) fn check_timer(length: TimeDelta) -> Result<TimeDelta, AlarmError> {
    if length <= TimeDelta::zero() {
        Err(AlarmError::ZeroDuration)
    } else if length > MAX_TIMER {
        Err(AlarmError::TooLong)
    } else {
        Ok(length)
    }
}
