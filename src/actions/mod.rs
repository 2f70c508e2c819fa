//! Actions: what runs once an intent is accepted.
//!
//! Each kind of action has an executor at the edge of the program (SQLite for
//! alarms and timers, an mpd client for music, HTTP or a command for
//! purchases and bookings). The core hands executors plain data:
//!
//! - low-stakes intents arrive as an [`ActionRequest`];
//! - high-stakes intents arrive only as a [`crate::gate::ConfirmedAction`],
//!   which only the gate can construct, after a spoken "yes".
//!
//! Executors run off the gate's thread; their outcome is reported back.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod alarms;
pub mod handlers;
pub mod music;
pub mod ring;

/// A unique id for one requested action. It is also the `Idempotency-Key`
/// sent to a merchant, so a retry can never order twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(String);

impl ActionId {
    /// A new random id (UUID v4).
    pub fn new() -> Self {
        ActionId(uuid::Uuid::new_v4().to_string())
    }

    /// An id read back from storage.
    pub fn from_string(s: String) -> Self {
        ActionId(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ActionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ActionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Exactly what will run: an intent's action with its resolved slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// Unique id.
    pub id: ActionId,
    /// The intent that produced it.
    pub intent: String,
    /// Executor name from the intent file (`alarm.set`, `purchase.order`, ...).
    pub kind: String,
    /// Slot values.
    pub slots: Map<String, Value>,
    /// Parameters from the intent file, `{slot}` placeholders filled in.
    pub params: Value,
}

/// How an executed action ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// It ran; `message` is what to tell the user.
    Done {
        /// What to say.
        message: String,
        /// Details for the log (e.g. the merchant's reply).
        #[serde(default)]
        detail: Value,
    },
    /// It did not run, or ran and failed; `error` says why, in words.
    Failed {
        /// What went wrong.
        error: String,
    },
}
