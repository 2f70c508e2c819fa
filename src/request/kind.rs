//! Action kinds: the closed list of executors an intent can name.
//!
//! Exists so that an intent's `action.kind` and a config's
//! `[handlers."<kind>"]` key are checked once, when they are read (a typo is
//! a load error with `file:line:col`, or a config error naming it), and so
//! that dispatch is a `match` the compiler checks rather than string
//! prefixes compared at run time. The text forms (`alarm.set`, ...) are what
//! intent files, configs, events, audit rows and merchant bodies carry; they
//! never change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which executor runs an intent. Ordered by its text form, so maps keyed
/// by kind list them as the text would sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `alarm.set`
    AlarmSet,
    /// `alarm.cancel`
    AlarmCancel,
    /// `alarm.list`
    AlarmList,
    /// `alarm.stop`
    AlarmStop,
    /// `alarm.snooze`
    AlarmSnooze,
    /// `timer.start`
    TimerStart,
    /// `timer.cancel`
    TimerCancel,
    /// `timer.status`
    TimerStatus,
    /// `music.play`
    MusicPlay,
    /// `music.pause`
    MusicPause,
    /// `music.resume`
    MusicResume,
    /// `music.next`
    MusicNext,
    /// `music.previous`
    MusicPrevious,
    /// `music.volume`: an older name of `music.volume_set`, still accepted.
    MusicVolume,
    /// `music.volume_set`
    MusicVolumeSet,
    /// `music.volume_up`
    MusicVolumeUp,
    /// `music.volume_down`
    MusicVolumeDown,
    /// `purchase.order`
    PurchaseOrder,
    /// `purchase.coffee`
    PurchaseCoffee,
    /// `booking.table`
    BookingTable,
    /// `booking.ride`
    BookingRide,
    /// `gate.confirm`: the "yes" to a read-back.
    GateConfirm,
    /// `gate.decline`: the "no" to a read-back.
    GateDecline,
    /// `nevermind`
    Nevermind,
    /// `info.time`: says the current time.
    InfoTime,
    /// `info.date`: says today's date.
    InfoDate,
    /// `info.help`: says what the loaded intents can do.
    InfoHelp,
    /// `purchase.unavailable`: says that an item is not in the catalogue
    /// and what is. An answer only: it never orders anything, so it is not
    /// in the purchase family.
    PurchaseUnavailable,
}

/// Every kind with its text form, in the order the docs list them.
const TABLE: [(ActionKind, &str); 28] = [
    (ActionKind::AlarmSet, "alarm.set"),
    (ActionKind::AlarmCancel, "alarm.cancel"),
    (ActionKind::AlarmList, "alarm.list"),
    (ActionKind::AlarmStop, "alarm.stop"),
    (ActionKind::AlarmSnooze, "alarm.snooze"),
    (ActionKind::TimerStart, "timer.start"),
    (ActionKind::TimerCancel, "timer.cancel"),
    (ActionKind::TimerStatus, "timer.status"),
    (ActionKind::MusicPlay, "music.play"),
    (ActionKind::MusicPause, "music.pause"),
    (ActionKind::MusicResume, "music.resume"),
    (ActionKind::MusicNext, "music.next"),
    (ActionKind::MusicPrevious, "music.previous"),
    (ActionKind::MusicVolume, "music.volume"),
    (ActionKind::MusicVolumeSet, "music.volume_set"),
    (ActionKind::MusicVolumeUp, "music.volume_up"),
    (ActionKind::MusicVolumeDown, "music.volume_down"),
    (ActionKind::PurchaseOrder, "purchase.order"),
    (ActionKind::PurchaseCoffee, "purchase.coffee"),
    (ActionKind::PurchaseUnavailable, "purchase.unavailable"),
    (ActionKind::BookingTable, "booking.table"),
    (ActionKind::BookingRide, "booking.ride"),
    (ActionKind::GateConfirm, "gate.confirm"),
    (ActionKind::GateDecline, "gate.decline"),
    (ActionKind::Nevermind, "nevermind"),
    (ActionKind::InfoTime, "info.time"),
    (ActionKind::InfoDate, "info.date"),
    (ActionKind::InfoHelp, "info.help"),
];

/// Which executor family a kind belongs to: what dispatch matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `alarm.*` and `timer.*`: the alarm schedule.
    Alarms,
    /// `music.*`: mpd.
    Music,
    /// `purchase.*`: a handler, after confirmation.
    Purchase,
    /// `booking.*`: a handler, after confirmation.
    Booking,
    /// `gate.confirm` / `gate.decline`: answers to a read-back, never run.
    Gate,
    /// `nevermind`.
    Nevermind,
    /// `info.*` and `purchase.unavailable`: answers, read from the clock
    /// and the loaded intents; they change nothing.
    Info,
}

impl ActionKind {
    /// Every kind, in the order the docs list them.
    pub fn all() -> impl Iterator<Item = ActionKind> {
        TABLE.iter().map(|(kind, _)| *kind)
    }

    /// The text form, as intent files, configs, events and audit rows write it.
    pub fn as_str(self) -> &'static str {
        TABLE
            .iter()
            .find(|(kind, _)| *kind == self)
            .map(|(_, text)| *text)
            .expect("every kind is in the table")
    }

    /// The executor family.
    pub fn family(self) -> Family {
        use ActionKind::*;
        match self {
            AlarmSet | AlarmCancel | AlarmList | AlarmStop | AlarmSnooze | TimerStart
            | TimerCancel | TimerStatus => Family::Alarms,
            MusicPlay | MusicPause | MusicResume | MusicNext | MusicPrevious | MusicVolume
            | MusicVolumeSet | MusicVolumeUp | MusicVolumeDown => Family::Music,
            PurchaseOrder | PurchaseCoffee => Family::Purchase,
            BookingTable | BookingRide => Family::Booking,
            GateConfirm | GateDecline => Family::Gate,
            Nevermind => Family::Nevermind,
            InfoTime | InfoDate | InfoHelp | PurchaseUnavailable => Family::Info,
        }
    }

    /// `purchase.*`: counts toward the spend cap.
    pub fn is_purchase(self) -> bool {
        self.family() == Family::Purchase
    }

    /// Every kind's text form, comma-separated, for error messages.
    pub fn known_list() -> String {
        TABLE
            .iter()
            .map(|(_, text)| *text)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A text that names no known action kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action kind '{0}' (known: {known})", known = ActionKind::known_list())]
pub struct UnknownKind(pub String);

impl FromStr for ActionKind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TABLE
            .iter()
            .find(|(_, t)| *t == text)
            .map(|(kind, _)| *kind)
            .ok_or_else(|| UnknownKind(text.to_string()))
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialOrd for ActionKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ActionKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<&str> for ActionKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ActionKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional kind as the text it always was: the kind's name,
/// or `""` for an intent without an action.
pub(crate) mod or_empty {
    use super::ActionKind;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the kind's name, or `""`.
    pub fn serialize<S: Serializer>(
        kind: &Option<ActionKind>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.map(ActionKind::as_str).unwrap_or(""))
    }

    /// Reads a kind's name, or `""` as none.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<ActionKind>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_text() {
        for kind in ActionKind::all() {
            assert_eq!(kind.as_str().parse::<ActionKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(ActionKind::all().count(), TABLE.len());
    }

    #[test]
    fn unknown_kinds_are_named_in_the_error() {
        let error = "alarm.sett".parse::<ActionKind>().unwrap_err();
        assert!(error.to_string().contains("'alarm.sett'"), "{error}");
        assert!(error.to_string().contains("alarm.set,"), "{error}");
        assert!("".parse::<ActionKind>().is_err());
        assert!("Alarm.Set".parse::<ActionKind>().is_err());
    }

    #[test]
    fn an_unavailable_purchase_is_only_an_answer() {
        // It must never count toward the spend cap or reach a handler.
        let kind: ActionKind = "purchase.unavailable".parse().unwrap();
        assert_eq!(kind.family(), Family::Info);
        assert!(!kind.is_purchase());
    }

    #[test]
    fn kinds_sort_by_their_text() {
        let mut kinds: Vec<ActionKind> = ActionKind::all().collect();
        kinds.sort();
        let texts: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
    }
}
