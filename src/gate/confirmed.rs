//! The one type that lets a high-stakes action run.
//!
//! A [`ConfirmedAction`] can only be made inside the `gate` module (its
//! fields are private and it has no public constructor), and high-stakes
//! executors accept nothing else. So the rule "no high-stakes action runs
//! without an explicit confirmation turn after its read-back" is enforced by
//! the compiler, not by care.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::request::{ActionId, ActionRequest};

/// A high-stakes action the user confirmed, bound to the digest of exactly
/// what was read back.
///
/// It is deliberately not `Clone` (nor `Copy`): the gate makes one per
/// confirmation, and running it ([`crate::actions::handlers::Handlers::execute`])
/// takes it by value and consumes it. So "confirmed once, executed at most
/// once" holds in the types: there is no second value to run.
#[derive(Debug, PartialEq, Serialize)]
pub struct ConfirmedAction {
    request: ActionRequest,
    digest: String,
    readback: String,
    confirmed_at: DateTime<Utc>,
    reply: String,
}

impl ConfirmedAction {
    /// Only the gate calls this, after checking the digest.
    pub(super) fn new(
        request: ActionRequest,
        digest: String,
        readback: String,
        confirmed_at: DateTime<Utc>,
        reply: String,
    ) -> Self {
        ConfirmedAction {
            request,
            digest,
            readback,
            confirmed_at,
            reply,
        }
    }

    /// A confirmed action for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(request: ActionRequest) -> Self {
        let digest = digest(&request);
        let at = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        ConfirmedAction::new(request, digest, "test readback".into(), at, "yes".into())
    }

    /// What runs.
    pub fn request(&self) -> &ActionRequest {
        &self.request
    }

    /// The action's id.
    pub fn id(&self) -> &ActionId {
        &self.request.id
    }

    /// SHA-256 of the canonical form of the request; what the user confirmed.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The read-back the user said yes to.
    pub fn readback(&self) -> &str {
        &self.readback
    }

    /// When the confirmation was heard.
    pub fn confirmed_at(&self) -> DateTime<Utc> {
        self.confirmed_at
    }

    /// The confirming reply, as heard.
    pub fn reply(&self) -> &str {
        &self.reply
    }

    /// The digest of what is ordered, without the action id (see
    /// [`order_digest`]).
    pub fn order_digest(&self) -> String {
        order_digest(&self.request)
    }
}

/// The digest that binds a confirmation to exactly one request: SHA-256 over
/// a canonical JSON array `[id, intent, kind, slots, params]` (object keys
/// sorted).
pub fn digest(request: &ActionRequest) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!([
        request.id.as_str(),
        request.intent,
        request.kind,
        sorted(&serde_json::Value::Object(request.slots.clone())),
        sorted(&request.params),
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The digest of an *order*: SHA-256 over the canonical JSON array
/// `[intent, kind, slots, params]` (object keys sorted), that is
/// [`digest`] without the action id. Two requests for the same thing have
/// the same order digest; the pipeline uses it to recognise a repeat of an
/// order whose outcome is unknown (see
/// [`IdempotencyKey`](crate::request::IdempotencyKey)).
pub fn order_digest(request: &ActionRequest) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!([
        request.intent,
        request.kind,
        sorted(&serde_json::Value::Object(request.slots.clone())),
        sorted(&request.params),
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// A copy of `value` with every object's keys in sorted order.
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
