//! Answers: the time, the date, what voicegate can do, and what it can
//! order when asked for something it cannot.
//!
//! Exists so that the questions every home assistant is asked have an
//! executor like any other action (`info.time`, `info.date`, `info.help`,
//! `purchase.unavailable`), run on the executor thread: the clock is read
//! there, at the edge (the core never reads it), and passed in here, so
//! every answer is a plain function tested with fixed times. None of them
//! changes anything.
//!
//! "What can you do" and "I can order: …" are built from the loaded
//! intents ([`About::from_intents`]): their `description:` fields and the
//! `purchase_product` list (the catalogue), so they say what the files
//! actually hold and change when the files do.

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, Weekday};
use serde_json::{Map, Value, json};

use super::alarms::{
    DaySpec, MONTH_NAMES, WEEKDAY_NAMES, day_date, join_and, parse_day, speak_clock,
};
use crate::catalogue::PRODUCT_LIST;
use crate::intent::IntentSet;
use crate::request::Outcome;
use crate::request::kind::{ActionKind, Family};

/// How many products "I can order: …" names before "and N more".
const PRODUCTS_SAID: usize = 5;

/// What voicegate can say about itself, taken from the loaded intents.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct About {
    /// One short phrase per area ("set alarms", "play music").
    abilities: Vec<String>,
    /// Every intent a user can start, with its whole description (for the
    /// event's detail: a screen can show what speech should not).
    described: Vec<(String, String)>,
    /// What can be ordered, in catalogue order.
    products: Vec<String>,
}

impl About {
    /// Reads the intents: one ability per area, from the first intent of
    /// the area that a user can start. An area is a kind's prefix (`alarm`,
    /// `music`, `info`), except that each high-stakes kind is its own (each
    /// is a different merchant: household products and coffee are two
    /// things to say). Intents a user cannot start (answers to a read-back,
    /// "never mind", those that need a ringing alarm) and the answers about
    /// voicegate itself are left out.
    pub fn from_intents(set: &IntentSet) -> About {
        let mut about = About {
            products: set.list_values(PRODUCT_LIST),
            ..About::default()
        };
        let mut areas: Vec<String> = Vec::new();
        for intent in &set.definitions().intents {
            let Some(kind) = intent.action.as_ref().map(|a| a.kind) else {
                continue;
            };
            let startable = intent
                .data
                .iter()
                .any(|d| d.requires_context.is_empty() && !d.sentences.is_empty());
            let about_itself =
                matches!(kind, ActionKind::InfoHelp | ActionKind::PurchaseUnavailable);
            let answer = matches!(kind.family(), Family::Gate | Family::Nevermind);
            if !startable || about_itself || answer {
                continue;
            }
            let Some(description) = intent.description.as_deref() else {
                continue;
            };
            about
                .described
                .push((intent.name.clone(), description.to_string()));
            let area = match kind.family() {
                Family::Purchase | Family::Booking => kind.as_str(),
                _ => kind.as_str().split('.').next().unwrap_or(kind.as_str()),
            };
            if areas.iter().any(|a| a == area) {
                continue;
            }
            let phrase = head(description);
            if !phrase.is_empty() {
                areas.push(area.to_string());
                about.abilities.push(phrase);
            }
        }
        about
    }
}

/// The first part of a description, as a phrase that follows "I can":
/// up to the first `:`, `,`, `;`, `(` or `.`, its first letter lowered
/// unless the word is an acronym ("Set alarms: at a time…" → "set alarms").
fn head(description: &str) -> String {
    let end = description
        .find([':', ',', ';', '(', '.'])
        .unwrap_or(description.len());
    let phrase = description[..end].trim();
    let mut chars = phrase.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if !second.is_uppercase() => first
            .to_lowercase()
            .chain(phrase[first.len_utf8()..].chars())
            .collect(),
        _ => phrase.to_string(),
    }
}

/// Runs an `info.*` or `purchase.unavailable` request: `now` is the local
/// wall-clock time, read by the caller.
pub fn answer(
    kind: ActionKind,
    slots: &Map<String, Value>,
    about: &About,
    now: NaiveDateTime,
) -> Outcome {
    let done = |message: String, detail: Value| Outcome::Done { message, detail };
    match kind {
        // "what time is it in tokyo": only the local clock is known.
        ActionKind::InfoTime if slots.contains_key("place") => done(
            format!(
                "I only know the time here: it's {}.",
                speak_clock(now.time())
            ),
            Value::Null,
        ),
        ActionKind::InfoTime => done(format!("It's {}.", speak_clock(now.time())), Value::Null),
        ActionKind::InfoDate => match DateAsked::from_slots(slots) {
            Ok(asked) => {
                let today = now.date();
                match asked.date(today) {
                    Some(date) => done(asked.speak(date, today), json!({"date": date.to_string()})),
                    None => Outcome::Failed {
                        error: "that date is too far away".into(),
                    },
                }
            }
            Err(error) => Outcome::Failed { error },
        },
        ActionKind::InfoHelp => {
            let detail: Vec<Value> = about
                .described
                .iter()
                .map(|(intent, description)| json!({"intent": intent, "description": description}))
                .collect();
            done(speak_help(about), Value::Array(detail))
        }
        ActionKind::PurchaseUnavailable => {
            let item = slots.get("item").and_then(Value::as_str).unwrap_or("that");
            done(speak_unavailable(item, &about.products), Value::Null)
        }
        other => Outcome::Failed {
            error: format!("nothing here can run '{other}'"),
        },
    }
}

/// The day a date question is about: today (no slot), a `day` ("tomorrow",
/// "yesterday", "friday", "last friday", `MM-DD`, `YYYY-MM-DD`), or some
/// `days` or `weeks` from today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateAsked {
    Day(DaySpec),
    Yesterday,
    /// The most recent such weekday before today.
    Last(Weekday),
    Ahead {
        count: u64,
        weeks: bool,
    },
}

/// The furthest ahead a date question may ask (about 27 years).
const MAX_DAYS_AHEAD: u64 = 10_000;

impl DateAsked {
    fn from_slots(slots: &Map<String, Value>) -> Result<Self, String> {
        let count = |name: &str| -> Result<Option<u64>, String> {
            match slots.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .map(Some)
                    .ok_or_else(|| format!("the '{name}' slot must be a whole number, not {v}")),
            }
        };
        if let Some(count) = count("weeks")? {
            return Ok(DateAsked::Ahead { count, weeks: true });
        }
        if let Some(count) = count("days")? {
            return Ok(DateAsked::Ahead {
                count,
                weeks: false,
            });
        }
        match slots.get("day") {
            None => Ok(DateAsked::Day(DaySpec::Today)),
            Some(Value::String(day)) if day.trim().eq_ignore_ascii_case("yesterday") => {
                Ok(DateAsked::Yesterday)
            }
            Some(Value::String(day)) if day.trim().to_ascii_lowercase().starts_with("last ") => day
                .trim()[5..]
                .trim()
                .parse::<Weekday>()
                .map(DateAsked::Last)
                .map_err(|_| format!("'{day}' is not a day I know")),
            Some(Value::String(day)) => parse_day(day)
                .map(DateAsked::Day)
                .map_err(|e| e.to_string()),
            Some(other) => Err(format!("the 'day' slot must be text, not {other}")),
        }
    }

    /// The calendar date meant; `None` past [`MAX_DAYS_AHEAD`].
    fn date(self, today: NaiveDate) -> Option<NaiveDate> {
        match self {
            DateAsked::Day(day) => Some(day_date(day, today)),
            DateAsked::Yesterday => today.pred_opt(),
            DateAsked::Last(weekday) => (1..=7)
                .filter_map(|n| today.checked_sub_days(Days::new(n)))
                .find(|date| date.weekday() == weekday),
            DateAsked::Ahead { count, weeks } => {
                let days = if weeks { count.checked_mul(7)? } else { count };
                (days <= MAX_DAYS_AHEAD).then(|| today.checked_add_days(Days::new(days)))?
            }
        }
    }

    /// "Today is Sunday, December 6.", "Tomorrow is …", "Yesterday was …",
    /// "Friday is December 11.", "December 25 is a Friday.", "In 3 days
    /// it will be Wednesday, December 9." The year is said when it is not
    /// this year's.
    fn speak(self, date: NaiveDate, today: NaiveDate) -> String {
        let weekday = WEEKDAY_NAMES[date.weekday().num_days_from_monday() as usize];
        let mut month_day = format!("{} {}", MONTH_NAMES[date.month0() as usize], date.day());
        if date.year() != today.year() {
            month_day.push_str(&format!(", {}", date.year()));
        }
        if date == today {
            return format!("Today is {weekday}, {month_day}.");
        }
        match self {
            DateAsked::Yesterday => format!("Yesterday was {weekday}, {month_day}."),
            DateAsked::Last(_) => format!("Last {weekday} was {month_day}."),
            DateAsked::Day(DaySpec::Tomorrow) => format!("Tomorrow is {weekday}, {month_day}."),
            DateAsked::Day(DaySpec::Weekday(_)) => format!("{weekday} is {month_day}."),
            DateAsked::Day(_) if date < today => format!("{month_day} was a {weekday}."),
            DateAsked::Day(_) => format!("{month_day} is a {weekday}."),
            DateAsked::Ahead { count, weeks } => {
                let unit = match (weeks, count) {
                    (true, 1) => "week",
                    (true, _) => "weeks",
                    (false, 1) => "day",
                    (false, _) => "days",
                };
                format!("In {count} {unit} it will be {weekday}, {month_day}.")
            }
        }
    }
}

/// "I can set alarms, play music and tell the time."
fn speak_help(about: &About) -> String {
    if about.abilities.is_empty() {
        return "I have no commands loaded right now.".into();
    }
    format!("I can {}.", join_and(&about.abilities))
}

/// "I can't order pizza. I can order: AA batteries, paper towels, …"
fn speak_unavailable(item: &str, products: &[String]) -> String {
    if products.is_empty() {
        return format!("I can't order {item}: there is nothing I can order.");
    }
    let said = &products[..products.len().min(PRODUCTS_SAID)];
    let rest = products.len() - said.len();
    let list = if rest == 0 {
        join_and(said)
    } else {
        format!("{}, and {rest} more", said.join(", "))
    };
    format!("I can't order {item}. I can order: {list}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::SourceFile;
    use chrono::NaiveDate;
    use std::collections::HashMap;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("a valid time")
    }

    fn message(outcome: Outcome) -> String {
        match outcome {
            Outcome::Done { message, .. } => message,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn time_and_date_are_read_from_the_time_given() {
        let about = About::default();
        let now = at(2026, 12, 6, 19, 45);
        let none = Map::new();
        assert_eq!(
            message(answer(ActionKind::InfoTime, &none, &about, now)),
            "It's 7:45 PM."
        );
        assert_eq!(
            message(answer(
                ActionKind::InfoTime,
                &none,
                &about,
                at(2026, 12, 6, 9, 0)
            )),
            "It's 9 AM."
        );
        let elsewhere = json!({"place": "tokyo"})
            .as_object()
            .cloned()
            .expect("an object");
        assert_eq!(
            message(answer(ActionKind::InfoTime, &elsewhere, &about, now)),
            "I only know the time here: it's 7:45 PM."
        );
        assert_eq!(
            message(answer(ActionKind::InfoDate, &none, &about, now)),
            "Today is Sunday, December 6."
        );
    }

    #[test]
    fn a_date_question_may_name_a_day_or_count_ahead() {
        let about = About::default();
        // Sunday, December 6, 2026.
        let now = at(2026, 12, 6, 19, 45);
        let date = |v: Value| {
            let slots = v.as_object().cloned().expect("an object");
            message(answer(ActionKind::InfoDate, &slots, &about, now))
        };
        let cases = [
            (json!({"day": "today"}), "Today is Sunday, December 6."),
            (
                json!({"day": "tomorrow"}),
                "Tomorrow is Monday, December 7.",
            ),
            (
                json!({"day": "yesterday"}),
                "Yesterday was Saturday, December 5.",
            ),
            (json!({"day": "friday"}), "Friday is December 11."),
            (json!({"day": "last friday"}), "Last Friday was December 4."),
            (
                json!({"day": "last sunday"}),
                "Last Sunday was November 29.",
            ),
            (json!({"day": "sunday"}), "Today is Sunday, December 6."),
            (json!({"day": "12-25"}), "December 25 is a Friday."),
            // A month and day already past this year: the next one.
            (json!({"day": "01-01"}), "January 1, 2027 is a Friday."),
            (json!({"day": "2020-05-03"}), "May 3, 2020 was a Sunday."),
            (
                json!({"days": 3}),
                "In 3 days it will be Wednesday, December 9.",
            ),
            (
                json!({"days": 1}),
                "In 1 day it will be Monday, December 7.",
            ),
            (json!({"days": 0}), "Today is Sunday, December 6."),
            (
                json!({"weeks": 4}),
                "In 4 weeks it will be Sunday, January 3, 2027.",
            ),
        ];
        for (slots, want) in cases {
            assert_eq!(date(slots.clone()), want, "{slots}");
        }
        let failed = |v: Value| {
            let slots = v.as_object().cloned().expect("an object");
            match answer(ActionKind::InfoDate, &slots, &about, now) {
                Outcome::Failed { error } => error,
                other => panic!("not failed: {other:?}"),
            }
        };
        assert!(failed(json!({"days": 20_000})).contains("too far"));
        assert!(failed(json!({"weeks": u64::MAX})).contains("too far"));
        assert!(failed(json!({"day": "someday"})).contains("someday"));
        assert!(failed(json!({"days": "many"})).contains("days"));
    }

    fn set(yaml: &str) -> IntentSet {
        let files = vec![SourceFile {
            path: "test.yaml".into(),
            text: yaml.into(),
        }];
        let (set, diags) = IntentSet::build(files, &HashMap::new());
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        set
    }

    const INTENTS: &str = r#"
language: en
intents:
  SetAlarm:
    description: "Set alarms: at a clock time."
    risk: low
    action: {kind: alarm.set}
    data: [{sentences: ["set an alarm"]}]
  ListAlarms:
    description: "List alarms."
    risk: low
    action: {kind: alarm.list}
    data: [{sentences: ["list alarms"]}]
  StopAlarm:
    description: "Stop the ringing alarm."
    risk: low
    action: {kind: alarm.stop}
    data: [{sentences: ["stop"], requires_context: {alarm_ringing: true}}]
  OrderItem:
    description: "Order household products, with a quantity."
    action: {kind: purchase.order}
    data: [{sentences: ["order {purchase_product:item}"]}]
  OrderDrink:
    description: "Order coffee (any size)."
    action: {kind: purchase.coffee}
    data: [{sentences: ["order a coffee"]}]
  Help:
    description: "Say what I can do."
    risk: low
    action: {kind: info.help}
    data: [{sentences: ["help"]}]
  Confirm:
    description: "Yes."
    risk: low
    action: {kind: gate.confirm}
    data: [{sentences: ["yes"]}]
  TellTime:
    description: "Tell the time."
    risk: low
    action: {kind: info.time}
    data: [{sentences: ["what time is it"]}]
lists:
  purchase_product:
    values:
      - {in: "(aa|double a) batteries", out: "AA batteries"}
      - {in: "aa battery", out: "AA batteries"}
      - {in: "paper towels", out: "paper towels"}
"#;

    #[test]
    fn help_says_one_phrase_per_area_from_the_descriptions() {
        let about = About::from_intents(&set(INTENTS));
        let outcome = answer(
            ActionKind::InfoHelp,
            &Map::new(),
            &about,
            at(2026, 1, 1, 0, 0),
        );
        let Outcome::Done { message, detail } = outcome else {
            panic!("not done");
        };
        // ListAlarms shares SetAlarm's area; StopAlarm needs a ringing
        // alarm; Help and Confirm are not things to offer.
        assert_eq!(
            message,
            "I can set alarms, order household products, order coffee and tell the time."
        );
        assert_eq!(detail.as_array().map(Vec::len), Some(5), "{detail}");
    }

    #[test]
    fn an_unavailable_item_names_a_few_products_once_each() {
        let about = About::from_intents(&set(INTENTS));
        let mut slots = Map::new();
        slots.insert("item".into(), json!("pizza"));
        let now = at(2026, 1, 1, 0, 0);
        assert_eq!(
            message(answer(ActionKind::PurchaseUnavailable, &slots, &about, now)),
            "I can't order pizza. I can order: AA batteries and paper towels."
        );
        let many: Vec<String> = (1..=8).map(|i| format!("thing {i}")).collect();
        assert_eq!(
            speak_unavailable("pizza", &many),
            "I can't order pizza. I can order: thing 1, thing 2, thing 3, thing 4, thing 5, and 3 more."
        );
    }

    #[test]
    fn heads_keep_acronyms() {
        assert_eq!(head("Set alarms: at a time"), "set alarms");
        assert_eq!(head("AA batteries, please"), "AA batteries");
        assert_eq!(head("Play music"), "play music");
    }
}
