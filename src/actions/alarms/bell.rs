//! The bell: alarms and timers that come due ring, and the ringing stops
//! once nothing in the schedule rings any more ("stop" was said).
//!
//! Why it exists: `voicegate serve` has no audio loop of its own, yet a
//! timer set through a satellite must ring on time all the same. Its gate
//! thread, which already wakes at least once a second, owns a `Bell` and
//! calls [`Bell::ring_due`] there. Everything here blocks (SQLite, the ring
//! command), so it belongs on a plain thread, never on an async runtime.

use chrono::{DateTime, Local, TimeDelta, Utc};

use super::{Schedule, fired_message, missed_while_off};
use crate::actions::ring::{FallbackRinger, Ringer};

/// How late a due entry may be found at start and still ring; older
/// ones were missed (see [`Bell::missed`]).
pub const START_GRACE: TimeDelta = TimeDelta::seconds(60);

/// The schedule's ringing side: what is due rings through `ringer`.
pub struct Bell {
    schedule: Schedule,
    ringer: FallbackRinger,
    ringing: bool,
}

impl Bell {
    /// A bell over `schedule` that rings with `ringer`.
    pub fn new(schedule: Schedule, ringer: FallbackRinger) -> Bell {
        Bell {
            schedule,
            ringer,
            ringing: false,
        }
    }

    /// What was missed while nothing ran (due more than `grace` before
    /// `now`), one sentence each; those entries are marked missed.
    pub fn missed(&self, now: DateTime<Utc>, grace: TimeDelta) -> Vec<String> {
        match self.schedule.missed_at_start(now, grace) {
            Ok(missed) => missed
                .iter()
                .map(|entry| missed_while_off(entry, Local::now()))
                .collect(),
            Err(e) => vec![format!("I could not read the alarm schedule: {e}")],
        }
    }

    /// Starts ringing for every entry due at `now`; what to say for each
    /// ("Your 2 second timer is done."), and why ringing failed if it did.
    pub fn ring_due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let fired = match self.schedule.due(now) {
            Ok(fired) => fired,
            Err(e) => return vec![format!("I could not read the alarm schedule: {e}")],
        };
        let mut said = Vec::new();
        for entry in fired {
            if let Err(e) = self.ringer.start(&entry.ring_text()) {
                said.push(format!("(could not ring: {e})"));
            }
            self.ringing = true;
            said.push(fired_message(&entry, Local::now()));
        }
        said
    }

    /// Whether the bell rings.
    pub fn ringing(&self) -> bool {
        self.ringing
    }

    /// Stops ringing if nothing in the schedule rings any more; true if it
    /// stopped just now. An unreadable schedule counts as nothing ringing,
    /// so a read error never leaves the bell on.
    pub fn quiet_if_nothing_rings(&mut self) -> bool {
        if self.ringing && !self.schedule.any_ringing().unwrap_or(false) {
            self.ringer.stop();
            self.ringing = false;
            return true;
        }
        false
    }

    /// When the next pending entry is due, if any.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.schedule.next_due().ok().flatten()
    }

    /// Notices a ring command that ended by itself.
    pub fn check(&mut self) {
        if self.ringing {
            self.ringer.check();
        }
    }

    /// Stops ringing, whatever still rings (at shutdown).
    pub fn stop(&mut self) {
        self.ringer.stop();
        self.ringing = false;
    }
}
