//! Built-in slot kinds that templates cannot express well: clock times and days.
//!
//! People (and whisper) say a time in many shapes: "7", "7 am", "7:30",
//! "7.30", "730", "seven thirty", "seven oh five", "noon", "half past seven",
//! "quarter to eight". Writing those as templates in every intent file would
//! be long and error-prone, so a list may be declared `time: {}` or
//! `date: {}` and these parsers read the words instead.
//!
//! Both work on normalised tokens (number words are already digits) and
//! return every reading that starts at the given token, longest first; the
//! matcher tries each. Values are plain strings so that they stay pure data:
//! `HH:MM` (24-hour) for times; `today`, `tomorrow`, a weekday name,
//! `MM-DD` or, with a year said after it, `YYYY-MM-DD` for days. Resolving a day to a calendar date needs the clock, which
//! is the caller's business.

/// One reading: how many tokens it used and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Tokens consumed from the start.
    pub tokens: usize,
    /// The value (`HH:MM`, `tomorrow`, `12-03`, ...).
    pub value: String,
}

fn small_number(token: &str) -> Option<u32> {
    if token.is_empty() || token.len() > 4 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// "7:30", "7.30" → (7, 30).
fn clock_token(token: &str) -> Option<(u32, u32)> {
    let (h, m) = token.split_once(':').or_else(|| token.split_once('.'))?;
    if m.len() != 2 || h.is_empty() || h.len() > 2 {
        return None;
    }
    let (h, m) = (small_number(h)?, small_number(m)?);
    (h <= 24 && m < 60).then_some((h, m))
}

/// "730" → (7, 30); "0730" → (7, 30). Four digits that do not start
/// with 0 are a year ("book a table on may 3rd 2030"), never a clock time:
/// "20:30" and "twenty thirty" ("20 30") are how a time that late is said.
fn compact_token(token: &str) -> Option<(u32, u32)> {
    if !(3..=4).contains(&token.len()) || (token.len() == 4 && !token.starts_with('0')) {
        return None;
    }
    let n = small_number(token)?;
    let (h, m) = (n / 100, n % 100);
    (h <= 24 && m < 60).then_some((h, m))
}

fn format_time(h: u32, m: u32) -> String {
    format!("{:02}:{:02}", h % 24, m)
}

/// Applies "am"/"pm" and similar words after a time, returning extra tokens
/// consumed and the 24-hour hour; `None` when the word contradicts the hour.
fn meridiem(tokens: &[&str], hour: u32) -> Vec<(usize, u32)> {
    let mut out = vec![(0, hour)];
    let word = tokens.first().copied();
    let (pm, used) = match (word, tokens.get(1).copied(), tokens.get(2).copied()) {
        (Some("am"), _, _) => (Some(false), 1),
        (Some("pm"), _, _) => (Some(true), 1),
        (Some("in"), Some("the"), Some("morning")) => (Some(false), 3),
        (Some("in"), Some("the"), Some("afternoon" | "evening")) => (Some(true), 3),
        (Some("at"), Some("night"), _) => (Some(true), 2),
        (Some("tonight"), _, _) => (Some(true), 1),
        (Some("o'clock" | "oclock"), _, _) => (None, 1),
        _ => return out,
    };
    match pm {
        None => out.insert(0, (used, hour)),
        Some(_) if hour == 0 || hour > 12 => {}
        Some(true) => out.insert(0, (used, if hour == 12 { 12 } else { hour + 12 })),
        Some(false) => out.insert(0, (used, if hour == 12 { 0 } else { hour })),
    }
    out
}

/// A time said back on a 12-hour clock: "7 AM", "7:30 PM", "noon",
/// "midnight" (seconds are ignored).
pub fn speak_clock(t: chrono::NaiveTime) -> String {
    use chrono::Timelike;
    let (h, m) = (t.hour(), t.minute());
    match (h, m) {
        (0, 0) => "midnight".to_string(),
        (12, 0) => "noon".to_string(),
        _ => {
            let half = if h < 12 { "AM" } else { "PM" };
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            if m == 0 {
                format!("{h12} {half}")
            } else {
                format!("{h12}:{m:02} {half}")
            }
        }
    }
}

/// Hours a `time:` list reads in the afternoon or evening when they are
/// said without AM, PM or a part of the day (`pm_hours: {from: 1, to:
/// 10}`: a table "at 7" is at 19:00). Both ends are in 1..=11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmHours {
    /// The first such hour.
    pub from: u32,
    /// The last.
    pub to: u32,
}

/// Words that say which half of the day a time is in.
const HALF_OF_DAY_WORDS: &[&str] = &[
    "am",
    "pm",
    "morning",
    "afternoon",
    "evening",
    "night",
    "tonight",
    "noon",
    "midday",
    "midnight",
];

/// [`parse_time`], with `pm_hours` applied to the readings that do not say
/// which half of the day they are in (nor are written as 24-hour times:
/// "07:00", "19:00").
pub fn parse_time_in(tokens: &[&str], pm_hours: Option<PmHours>) -> Vec<Reading> {
    let mut out = parse_time(tokens);
    let Some(pm) = pm_hours else {
        return out;
    };
    for reading in &mut out {
        let said = &tokens[..reading.tokens.min(tokens.len())];
        let bare = !said.iter().any(|w| HALF_OF_DAY_WORDS.contains(w))
            && !said.first().is_some_and(|w| w.starts_with('0'));
        let clock = reading
            .value
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)));
        if let Some((h, m)) = clock.filter(|(h, _)| bare && (pm.from..=pm.to).contains(h)) {
            reading.value = format_time(h + 12, m);
        }
    }
    out.dedup();
    out
}

/// Every reading of a clock time starting at `tokens[0]`, longest first.
pub fn parse_time(tokens: &[&str]) -> Vec<Reading> {
    let mut out: Vec<Reading> = Vec::new();
    let mut push = |tokens: usize, h: u32, m: u32| {
        out.push(Reading {
            tokens,
            value: format_time(h, m),
        })
    };
    let Some(first) = tokens.first().copied() else {
        return Vec::new();
    };
    match first {
        "noon" | "midday" => push(1, 12, 0),
        "midnight" => push(1, 0, 0),
        _ => {}
    }
    // "half past 7", "quarter to 8", "10 past 7", "20 minutes to 8"
    let (offset, after) = match first {
        "half" => (Some(30), 1),
        "quarter" => (Some(15), 1),
        _ => match small_number(first) {
            Some(n) if (1..60).contains(&n) => {
                if matches!(tokens.get(1).copied(), Some("minute" | "minutes")) {
                    (Some(n), 2)
                } else {
                    (Some(n), 1)
                }
            }
            _ => (None, 0),
        },
    };
    if let Some(offset) = offset
        && let (Some(dir), Some(hour)) = (tokens.get(after).copied(), tokens.get(after + 1))
        && let Some(hour) = small_number(hour).filter(|h| (1..=12).contains(h))
    {
        let used = after + 2;
        let base = match dir {
            "past" | "after" => Some((hour, offset)),
            "to" | "till" | "before" if first != "half" => {
                Some((if hour == 1 { 12 } else { hour - 1 }, 60 - offset))
            }
            _ => None,
        };
        if let Some((h, m)) = base {
            for (extra, h) in meridiem(&tokens[used..], h) {
                push(used + extra, h, m);
            }
        }
    }
    // "7:30", "7.30", "730", "7", "7 30", "7 oh 5"
    let mut bases: Vec<(usize, u32, u32)> = Vec::new();
    if let Some((h, m)) = clock_token(first).or_else(|| compact_token(first)) {
        bases.push((1, h, m));
    } else if let Some(h) = small_number(first).filter(|h| *h <= 24) {
        let second = tokens.get(1).copied();
        match (second, tokens.get(2).copied()) {
            (Some("oh" | "o" | "0"), Some(m)) if small_number(m).is_some_and(|m| m < 10) => {
                bases.push((3, h, small_number(m).unwrap_or(0)));
            }
            (Some(m), _) if m.len() == 2 && small_number(m).is_some_and(|m| m < 60) => {
                bases.push((2, h, small_number(m).unwrap_or(0)));
            }
            (Some(m), _) if small_number(m).is_some_and(|m| (10..60).contains(&m)) => {
                bases.push((2, h, small_number(m).unwrap_or(0)));
            }
            _ => {}
        }
        bases.push((1, h, 0));
    }
    for (used, h, m) in bases {
        for (extra, h) in meridiem(&tokens[used..], h) {
            push(used + extra, h, m);
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.tokens));
    out.dedup();
    out
}

/// Weekday names, as the date parser reads them.
pub(crate) const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Month names, as the date parser reads them.
pub(crate) const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Ordinal words up to nineteenth ("twentieth" and "thirtieth" are read
/// on their own).
pub(crate) const ORDINAL_WORDS: [(&str, u32); 19] = [
    ("first", 1),
    ("second", 2),
    ("third", 3),
    ("fourth", 4),
    ("fifth", 5),
    ("sixth", 6),
    ("seventh", 7),
    ("eighth", 8),
    ("ninth", 9),
    ("tenth", 10),
    ("eleventh", 11),
    ("twelfth", 12),
    ("thirteenth", 13),
    ("fourteenth", 14),
    ("fifteenth", 15),
    ("sixteenth", 16),
    ("seventeenth", 17),
    ("eighteenth", 18),
    ("nineteenth", 19),
];

/// A day of the month: "3", "3rd", "third", "20 first" (from "twenty first").
fn day_of_month(tokens: &[&str]) -> Option<(usize, u32)> {
    let first = *tokens.first()?;
    let word = |t: &str| ORDINAL_WORDS.iter().find(|(w, _)| *w == t).map(|(_, n)| *n);
    let word_tens = |t: &str| match t {
        "twentieth" => Some(20),
        "thirtieth" => Some(30),
        _ => None,
    };
    if let Some(n) = word(first).or_else(|| word_tens(first)) {
        return Some((1, n));
    }
    if let Some(tens @ (20 | 30)) = small_number(first)
        && let Some(unit) = tokens.get(1).and_then(|t| word(t)).filter(|u| *u < 10)
    {
        return Some((2, tens + unit));
    }
    let digits: String = first.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &first[digits.len()..];
    if !digits.is_empty() && matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        let n = small_number(&digits)?;
        return (1..=31).contains(&n).then_some((1, n));
    }
    None
}

/// Every reading of a day starting at `tokens[0]`, longest first.
pub fn parse_date(tokens: &[&str]) -> Vec<Reading> {
    let mut out = Vec::new();
    let Some(first) = tokens.first().copied() else {
        return out;
    };
    match first {
        "today" | "tonight" => out.push(Reading {
            tokens: 1,
            value: "today".into(),
        }),
        "tomorrow" => out.push(Reading {
            tokens: 1,
            value: "tomorrow".into(),
        }),
        _ => {}
    }
    if WEEKDAYS.contains(&first) {
        out.push(Reading {
            tokens: 1,
            value: first.to_string(),
        });
    }
    let month = |t: &str| MONTHS.iter().position(|m| *m == t).map(|i| i as u32 + 1);
    // "december 3rd", "december the 3rd"
    if let Some(m) = month(first) {
        let skip = usize::from(tokens.get(1).copied() == Some("the"));
        if let Some((used, d)) = day_of_month(&tokens[1 + skip..]) {
            out.push(Reading {
                tokens: 1 + skip + used,
                value: format!("{m:02}-{d:02}"),
            });
        }
    }
    // "the 3rd of december", "3rd of december", "3rd december"
    let skip = usize::from(first == "the");
    if let Some((used, d)) = day_of_month(&tokens[skip..]) {
        let at = skip + used;
        let of = usize::from(tokens.get(at).copied() == Some("of"));
        if let Some(m) = tokens.get(at + of).and_then(|t| month(t)) {
            out.push(Reading {
                tokens: at + of + 1,
                value: format!("{m:02}-{d:02}"),
            });
        }
    }
    // "may 3rd 2030": a year after a month and day dates it
    // (`YYYY-MM-DD`); the day alone is still offered.
    let dated: Vec<Reading> = out
        .iter()
        .filter(|r| r.value.len() == 5 && r.value.as_bytes()[2] == b'-')
        .filter_map(|r| {
            let year = small_number(tokens.get(r.tokens)?).filter(|y| (1900..=2199).contains(y))?;
            Some(Reading {
                tokens: r.tokens + 1,
                value: format!("{year}-{}", r.value),
            })
        })
        .collect();
    out.extend(dated);
    out.sort_by_key(|r| std::cmp::Reverse(r.tokens));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best_time(text: &str) -> Option<(usize, String)> {
        let tokens: Vec<&str> = text.split(' ').collect();
        parse_time(&tokens)
            .into_iter()
            .next()
            .map(|r| (r.tokens, r.value))
    }

    #[test]
    fn pm_hours_move_only_bare_hours_in_their_range() {
        let pm = Some(PmHours { from: 1, to: 10 });
        let first = |text: &str, pm| {
            let tokens: Vec<&str> = text.split(' ').collect();
            parse_time_in(&tokens, pm)
                .into_iter()
                .next()
                .map(|r| r.value)
        };
        let cases = [
            ("7", "19:00"),
            ("7:30", "19:30"),
            ("half past 7", "19:30"),
            ("10 o'clock", "22:00"),
            ("11", "11:00"),
            ("12", "12:00"),
            ("7 am", "07:00"),
            ("7 in the morning", "07:00"),
            ("7 pm", "19:00"),
            ("07:00", "07:00"),
            ("19:00", "19:00"),
            ("noon", "12:00"),
        ];
        for (text, want) in cases {
            assert_eq!(first(text, pm).as_deref(), Some(want), "{text}");
        }
        assert_eq!(first("7", None).as_deref(), Some("07:00"));
    }

    #[test]
    fn times() {
        let cases = [
            ("7", 1, "07:00"),
            ("7 am", 2, "07:00"),
            ("7 pm", 2, "19:00"),
            ("12 am", 2, "00:00"),
            ("12 pm", 2, "12:00"),
            ("7:30", 1, "07:30"),
            ("7.30 pm", 2, "19:30"),
            ("730", 1, "07:30"),
            ("0745", 1, "07:45"),
            ("19:45", 1, "19:45"),
            ("19 45", 2, "19:45"),
            ("7 30", 2, "07:30"),
            ("7 oh 5", 3, "07:05"),
            ("7 05 pm", 3, "19:05"),
            ("noon", 1, "12:00"),
            ("midnight", 1, "00:00"),
            ("half past 7", 3, "07:30"),
            ("quarter to 8", 3, "07:45"),
            ("quarter past 6 pm", 4, "18:15"),
            ("10 past 7", 3, "07:10"),
            ("20 minutes to 8", 4, "07:40"),
            ("8 in the evening", 4, "20:00"),
            ("7 o'clock", 2, "07:00"),
        ];
        for (text, tokens, value) in cases {
            assert_eq!(best_time(text), Some((tokens, value.to_string())), "{text}");
        }
        // A year is not a time, however like one it looks.
        assert_eq!(best_time("2030"), None);
        assert_eq!(best_time("1945"), None);
        assert_eq!(best_time("25"), None);
        assert_eq!(best_time("pizza"), None);
        assert_eq!(best_time(""), None);
    }

    #[test]
    fn every_shorter_reading_is_offered_too() {
        let tokens = ["7", "30", "pm"];
        let values: Vec<(usize, String)> = parse_time(&tokens)
            .into_iter()
            .map(|r| (r.tokens, r.value))
            .collect();
        assert!(values.contains(&(1, "07:00".into())));
        assert!(values.contains(&(2, "07:30".into())));
        assert!(values.contains(&(3, "19:30".into())));
    }

    #[test]
    fn dates() {
        let cases = [
            ("tomorrow", 1, "tomorrow"),
            ("friday", 1, "friday"),
            ("december 3rd", 2, "12-03"),
            ("december the 3rd", 3, "12-03"),
            ("the 3rd of december", 4, "12-03"),
            ("3rd december", 2, "12-03"),
            ("march 20 first", 3, "03-21"),
            ("the third of may", 4, "05-03"),
            ("may 3rd 2030", 3, "2030-05-03"),
            ("the 3rd of may 2030", 5, "2030-05-03"),
        ];
        for (text, tokens, value) in cases {
            let t: Vec<&str> = text.split(' ').collect();
            let best = parse_date(&t)
                .into_iter()
                .next()
                .map(|r| (r.tokens, r.value));
            assert_eq!(best, Some((tokens, value.to_string())), "{text}");
        }
        assert!(parse_date(&["the", "40th", "of", "may"]).is_empty());
    }
}
