//! [`Event`]: what the pipeline tells its front ends happened, one value
//! per thing (printed by `chat --json` as one JSON object per line, said
//! by the daemon, answered over Wyoming).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::intent::{By, NotUnderstood, Risk};

/// One thing that happened, as `chat --json` prints it (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An intent was recognised.
    Intent {
        /// Intent name.
        intent: String,
        /// Its risk.
        risk: Risk,
        /// Slot values.
        slots: Map<String, Value>,
        /// How it was reached: `"by": "template"`, or `"by": "fallback"`
        /// with its `score` and the next intent's (`runner_up`).
        #[serde(flatten)]
        by: By,
    },
    /// A high-stakes action was read back and waits for "yes".
    ConfirmRequest {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// The read-back.
        readback: String,
        /// Digest of exactly what will run.
        digest: String,
        /// Seconds left to answer.
        expires_in_secs: f64,
    },
    /// An action ran.
    Executed {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// low or high.
        risk: Risk,
        /// What the executor said.
        message: String,
    },
    /// An action may or may not have happened (it needs review): the
    /// request went out and no clear answer came back.
    OutcomeUnknown {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// low or high.
        risk: Risk,
        /// What happened.
        error: String,
    },
    /// An action ran (or tried to) and failed.
    Failed {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// low or high.
        risk: Risk,
        /// What went wrong.
        error: String,
    },
    /// The user said no.
    Declined {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// Why.
        reason: String,
    },
    /// Nobody confirmed in time.
    Expired {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
    },
    /// Another command replaced it.
    Superseded {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
    },
    /// The gate would not run it.
    Refused {
        /// The action.
        action_id: String,
        /// Its intent.
        intent: String,
        /// Why.
        reason: String,
    },
    /// A detail the request lacks is asked for; the next utterance may
    /// answer it without the wake word.
    Ask {
        /// The intent asked about.
        intent: String,
        /// What is missing (the intent file's `ask:` name).
        slot: String,
        /// The question.
        text: String,
    },
    /// "Did you mean …?": a low-stakes reading the fallback recogniser is
    /// not sure of; "yes" runs it.
    DidYouMean {
        /// The intent it would run.
        intent: String,
        /// The question.
        text: String,
    },
    /// Nothing was understood.
    NotUnderstood {
        /// What was said.
        text: String,
        /// Why.
        why: NotUnderstood,
    },
    /// A wake word was heard (both detector stages agreed).
    Wake {
        /// The phrase.
        phrase: String,
        /// The wake score (0..1): the phrase's mean token probability in
        /// whisper's check.
        score: f32,
    },
    /// What was heard, as transcribed (the wake phrase removed).
    Heard {
        /// The transcript.
        text: String,
        /// whisper's confidence (0..1).
        confidence: f32,
        /// When a near free reading lent the reading its confidence: what
        /// it said and the reading's own confidence (`gate::Backing`; the
        /// gate decides where it counts).
        #[serde(skip_serializing_if = "Option::is_none")]
        backing: Option<crate::gate::Backing>,
    },
    /// What voicegate says.
    Response {
        /// The words.
        text: String,
        /// The action it is about, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        action_id: Option<String>,
    },
}
