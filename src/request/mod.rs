//! What the gate hands to the executors, as plain data: [`ActionRequest`]
//! (exactly what will run), its [`ActionId`], the [`IdempotencyKey`] a
//! merchant sees, the [`ActionKind`] that picks the executor, and the
//! [`Outcome`] an executor reports.
//!
//! Its own module, below both: the gate builds requests and the executors
//! (`actions`) run them, and the executors take the gate's
//! `ConfirmedAction`; with these types in `actions`, `gate` and `actions`
//! would import each other.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod kind;

pub use kind::ActionKind;

/// A unique id for one requested action. It is the `Idempotency-Key` sent
/// to a merchant unless the action repeats an order whose outcome is
/// unknown (see [`IdempotencyKey`]).
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

/// The `Idempotency-Key` a high-stakes action is sent with (the
/// `Idempotency-Key` header of a webhook, `"idempotency_key"` in the JSON
/// body, `VOICEGATE_IDEMPOTENCY_KEY` for a command).
///
/// What it guarantees, exactly:
///
/// - By default it is the action's own id, so two confirmed actions carry
///   two different keys: each "yes" is its own order.
/// - The one exception is a repeat after an **unknown** outcome (a timeout,
///   a dropped connection, a 5xx or 3xx after the request was sent, a
///   command killed on its timeout). When the user confirms the same order
///   again (the same intent, kind, slots and parameters) within
///   [`ORDER_KEY_WINDOW`](crate::pipeline::ORDER_KEY_WINDOW) (10 minutes)
///   of it, the new request carries the earlier
///   request's key. A merchant that honours idempotency keys then charges
///   once for the two, and answers the second as it answered (or would have
///   answered) the first.
/// - After `executed` a repeat gets a fresh key: the user heard "done", so
///   asking again is a deliberate second order. After `failed` too: nothing
///   was charged, and a merchant may have cached the failure under the old
///   key.
///
/// What it does not guarantee: anything with a merchant that ignores the
/// key, or with a repeat outside the window; and it never causes a request
/// by itself. voicegate never retries: a key is only reused because the user
/// asked for the same thing again and said "yes" to its read-back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of an action that repeats no earlier order: its own id.
    pub fn of(id: &ActionId) -> Self {
        IdempotencyKey(id.as_str().to_string())
    }

    /// A key read back from storage.
    pub fn from_string(s: String) -> Self {
        IdempotencyKey(s)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
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
    /// Executor from the intent file (`alarm.set`, `purchase.order`, ...);
    /// `None` for an intent without an action. Serialized as its name, or
    /// `""` for none.
    #[serde(with = "kind::or_empty")]
    pub kind: Option<ActionKind>,
    /// Slot values.
    pub slots: Map<String, Value>,
    /// Parameters from the intent file, `{slot}` placeholders filled in.
    pub params: Value,
}

impl ActionRequest {
    /// The kind's name, or `""` for none: the text events, audit rows and
    /// merchant bodies carry.
    pub fn kind_str(&self) -> &'static str {
        self.kind.map(ActionKind::as_str).unwrap_or("")
    }
}

/// The key of [`Outcome::Done`]'s `detail` by which a low-stakes action
/// whose reply ends with a question names it: one of its intent's
/// `after_action` questions (`ask:` in the intent file). "cancel the
/// timer" with two running says which there are and asks which one, with
/// `"asks": "which"`; the gate then takes the next utterance as the answer.
pub const ASKS_KEY: &str = "asks";

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
    /// It did not happen: nothing was sent, or the other side said no (a
    /// 4xx, a non-zero exit status). `error` says why, in words.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// It may or may not have happened: the request went out and no clear
    /// answer came back (a read timeout, a dropped connection, a 5xx or 3xx,
    /// a command killed on its timeout or by a signal). Recorded as
    /// `unknown` (needs review), counted toward the spend cap, and never
    /// retried; the user is told to check before asking again.
    Unknown {
        /// What happened, in words.
        error: String,
    },
}
