//! The action gate: what happens after an intent is recognised.
//!
//! Low-stakes intents (declared `risk: low`) run at once. Everything else is
//! high-stakes: it is read back, and runs only if the **next** utterance is
//! an explicit confirmation from a closed set of replies, within the confirm
//! timeout. The gate is a pure state machine: the caller passes each
//! utterance and the time; the gate returns [`Output`]s saying what to run,
//! say and record. It does no I/O and never reads a clock.
//!
//! The rules, each enforced here and tested in `tests/gate.rs`:
//! - Only the utterance right after a read-back can confirm it, and only if
//!   it matches a `gate.confirm` intent (matched with the context
//!   `pending_confirmation: true`, which nothing else sets). A `gate.decline`
//!   reply declines. A reply that is neither (or unsure) gets one re-prompt;
//!   a second unclear reply declines.
//! - A confirmation in the same utterance as the request never counts: the
//!   request is read back as usual.
//! - "yes" with nothing pending runs nothing.
//! - A pending action expires after the confirm timeout; any other command
//!   *addressed* to voicegate (typed, or after the wake word) while one is
//!   pending supersedes it and is handled as a new request. What the
//!   microphone hears without the wake word in the reply window
//!   ([`Utterance::addressed`] false) can only answer: another sentence ends
//!   the pending request (superseded) and runs nothing.
//! - Kinds listed in `pin_kinds` also need the spoken PIN after "yes"; three
//!   wrong PINs lock high-stakes actions for ten minutes. A PIN reply is
//!   never kept: facts and the confirmed action carry [`PIN_REDACTED`]. The
//!   lock state ([`PinLock`]) is the caller's to persist and restore.
//! - With a daily spend cap, a purchase is refused when its amount would
//!   exceed the cap, and also when its amount is unknown (no price), unless
//!   the config allows unpriced purchases.
//! - Low transcription confidence (or a confidence that is not a finite
//!   number) on a high-stakes request or its reply asks again; it never
//!   proceeds.
//! - A grammar reading a near free reading backed ([`Backing`]) is as sure
//!   as the free reading only for a new command whose free reading means
//!   the same intent; the answer to a read-back, and a command the free
//!   reading reads otherwise, are judged on the grammar reading's own
//!   confidence. A "yes" is never made sure by a reading of other words.
//! - A reload of the intents that removes or changes the pending request's
//!   intent cancels the request ([`Gate::intents_changed`]).
//! - An utterance over [`MAX_UTTERANCE_CHARS`] is not matched at all.
//! - Only this module can construct a [`ConfirmedAction`], and high-stakes
//!   executors accept nothing else. It is not `Clone`, and executing it
//!   consumes it, so one confirmation runs at most once.

mod ask;
mod confirmed;
mod money;
mod pin;
mod readback;

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

pub use confirmed::{ConfirmedAction, digest, order_digest};
pub use money::Money;
pub use pin::{PinHash, PinHashError, PinLock};
use readback::{fill_params, readback};

use crate::intent::{IntentSet, Match, NotUnderstood, Recognition, Risk, normalize};
use crate::nlu::{Proposal, Understander};
use crate::request::{ActionId, ActionKind, ActionRequest};

/// The context flags voicegate itself sets (intent files name them in
/// `requires_context` / `excludes_context`; see `intents/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// The gate waits for an answer to a read-back (the gate's own: set
    /// only while matching a reply).
    PendingConfirmation,
    /// An alarm or timer is ringing (set by the daemon).
    AlarmRinging,
}

impl Flag {
    /// The key intent files use.
    pub fn key(self) -> &'static str {
        match self {
            Flag::PendingConfirmation => "pending_confirmation",
            Flag::AlarmRinging => "alarm_ringing",
        }
    }
}

/// What stands in for a spoken PIN wherever a reply would be kept or shown
/// (audit rows, events, the confirmed action): the PIN itself never is.
pub const PIN_REDACTED: &str = "[PIN]";

/// The longest utterance the gate will match, in characters. Nobody says
/// more in one breath; a longer typed line is refused with a clear reason
/// instead of being matched (matching is bounded, but not free).
pub const MAX_UTTERANCE_CHARS: usize = 1_000;

/// The gate's settings (from the `[gate]` section of the config).
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// How long a read-back waits for its confirmation.
    pub confirm_timeout: Duration,
    /// Below this transcription confidence a high-stakes request or reply is
    /// asked again.
    pub min_confidence: f32,
    /// Action kinds that need the spoken PIN after "yes".
    pub pin_kinds: Vec<crate::request::ActionKind>,
    /// The PIN, if one is set.
    pub pin: Option<PinHash>,
    /// Wrong PINs before high-stakes actions lock.
    pub pin_attempts: u32,
    /// How long they stay locked.
    pub pin_lockout: Duration,
    /// Most that purchases may spend per day, if capped.
    pub daily_spend_cap: Option<Money>,
    /// Unit prices of products (by the `item` slot's value) and of drinks
    /// (by `drink`, or `size drink` for a size's own price).
    pub prices: BTreeMap<String, Money>,
    /// With a spend cap, let purchases whose price is unknown through
    /// (they are refused by default: the cap cannot be checked).
    pub allow_unpriced: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            confirm_timeout: Duration::seconds(8),
            min_confidence: 0.5,
            pin_kinds: Vec::new(),
            pin: None,
            pin_attempts: 3,
            pin_lockout: Duration::minutes(10),
            daily_spend_cap: None,
            prices: BTreeMap::new(),
            allow_unpriced: false,
        }
    }
}

/// One thing heard (or typed).
#[derive(Debug, Clone)]
pub struct Utterance {
    /// The transcript.
    pub text: String,
    /// Transcription confidence in 0..1; `None` when typed.
    pub confidence: Option<f32>,
    /// Wake word score; `None` when typed or without wake word.
    pub wake_score: Option<f32>,
    /// Said *to* voicegate: typed, after the wake word, or with `--no-wake`.
    /// `false` for what the microphone heard without the wake word while a
    /// reply was awaited: such an utterance can only answer the pending
    /// question (yes, no, the PIN), never start a command.
    pub addressed: bool,
    /// Set when a near free reading lent this grammar reading its
    /// confidence (`stt::corroborates`): `confidence` is then the free
    /// reading's. The gate lets it stand only where both readings mean the
    /// same ([`Gate::handle_understood`]).
    pub backing: Option<Backing>,
}

/// A grammar reading's backing: the free reading that lent it its
/// confidence, and the confidence the grammar reading had alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backing {
    /// What the free reading said ("pay my utility bill" behind "play my
    /// utility bill").
    pub text: String,
    /// The grammar reading's own confidence.
    pub own_confidence: f32,
}

impl Utterance {
    /// A typed utterance (addressed, no confidence, no wake score).
    pub fn typed(text: impl Into<String>) -> Self {
        Utterance {
            text: text.into(),
            confidence: None,
            wake_score: None,
            addressed: true,
            backing: None,
        }
    }

    /// The utterance on its own: a backed reading with the grammar
    /// reading's own confidence.
    pub fn unbacked(&self) -> Utterance {
        Utterance {
            confidence: self
                .backing
                .as_ref()
                .map_or(self.confidence, |b| Some(b.own_confidence)),
            backing: None,
            ..self.clone()
        }
    }

    /// The utterance as the gate takes it for a new command: itself, or
    /// [`Utterance::unbacked`] when its free reading means something else
    /// ([`backing_agrees`]). The benchmarks judge readings by the same
    /// call.
    pub fn as_command(
        &self,
        intents: &IntentSet,
        fallback: Option<&Understander>,
        context: &Map<String, Value>,
    ) -> Cow<'_, Utterance> {
        match &self.backing {
            Some(b) if !backing_agrees(intents, fallback, &self.text, b, context) => {
                Cow::Owned(self.unbacked())
            }
            _ => Cow::Borrowed(self),
        }
    }
}

/// Whether a backed reading's free reading means what the reading itself
/// does: both point to the same intent. A text points to the intent a
/// template matches, else to the fallback's nearest intent, whatever its
/// score, unless one of the files' `out_of_scope:` sentences is nearer.
/// A free reading one word away can still be another request ("pay my
/// utility bill" behind "play my utility bill"); then its confidence says
/// nothing about the grammar's sentence. The score is not asked to clear
/// the out-of-scope cut: a misheard word ("I need your value increased")
/// lowers it, and the question is only whether the free reading points
/// elsewhere; what runs is the grammar's sentence.
pub fn backing_agrees(
    intents: &IntentSet,
    fallback: Option<&Understander>,
    text: &str,
    backing: &Backing,
    context: &Map<String, Value>,
) -> bool {
    let meaning = |text: &str| match intents.recognize(text, context) {
        Recognition::Match(m) => Some(m.intent),
        Recognition::NotUnderstood(NotUnderstood::NoMatch) => match fallback?.read(text) {
            Ok(Some(reading)) if !reading.nearer_out_of_scope() => Some(reading.intent),
            _ => None,
        },
        Recognition::NotUnderstood(_) => None,
    };
    meaning(text).is_some_and(|intent| meaning(&backing.text) == Some(intent))
}

/// What the audit log needs to know about a high-stakes action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Facts {
    /// The action.
    pub action_id: ActionId,
    /// Its intent.
    pub intent: String,
    /// Its slots.
    pub slots: Map<String, Value>,
    /// The request as heard.
    pub transcript: String,
    /// The reply as heard, when there was one.
    pub reply: Option<String>,
    /// Transcription confidence of the request (or reply, for reply events).
    pub confidence: Option<f32>,
    /// Wake word score of the request.
    pub wake_score: Option<f32>,
    /// Amount, when known.
    pub amount: Option<Money>,
    /// How the request was understood: a template, or the fallback
    /// recogniser with its score (the audit's `requested` row says so).
    pub by: crate::intent::By,
}

/// What the gate decided. The caller runs, says and records accordingly.
///
/// Not `Clone`: [`Output::RunHigh`] carries the one [`ConfirmedAction`].
#[derive(Debug, PartialEq)]
pub enum Output {
    /// An intent was recognised (always first for a recognised command).
    Intent(Box<Match>),
    /// Run this low-stakes action now.
    RunLow(ActionRequest),
    /// Read this back and wait for a reply. Record `requested`.
    ConfirmRequest {
        /// Audit facts.
        facts: Facts,
        /// The read-back to say.
        readback: String,
        /// Digest of exactly what will run.
        digest: String,
        /// When it expires.
        expires_at: DateTime<Utc>,
    },
    /// Ask the reply again (unclear, unsure, or the PIN).
    Reprompt {
        /// Audit facts.
        facts: Facts,
        /// What to say.
        text: String,
    },
    /// Run this high-stakes action, which the user confirmed. Record
    /// `confirmed` first; do not run if that fails.
    RunHigh {
        /// Audit facts (with the reply).
        facts: Facts,
        /// The action.
        action: Box<ConfirmedAction>,
    },
    /// The user said no (or replied unclearly twice). Record `declined`.
    Declined {
        /// Audit facts.
        facts: Facts,
        /// Why, in words.
        reason: String,
    },
    /// Nobody confirmed in time, or the request was cancelled because its
    /// intent changed (`reason`). Record `expired`.
    Expired {
        /// Audit facts.
        facts: Facts,
        /// Why, when it is not the timeout.
        reason: Option<String>,
    },
    /// Another command came while this one waited. Record `superseded`.
    Superseded {
        /// Audit facts.
        facts: Facts,
    },
    /// A high-stakes request the gate will not run. Record `refused`.
    Refused {
        /// Audit facts.
        facts: Facts,
        /// Why, in words (also said to the user).
        reason: String,
    },
    /// Nothing was understood; nothing runs.
    NotUnderstood {
        /// The text.
        text: String,
        /// Why.
        why: NotUnderstood,
    },
    /// A detail the request lacks is asked for (`ask:` in its intent
    /// file); the next utterance may answer without the wake word.
    Ask {
        /// The intent asked about.
        intent: String,
        /// What is missing (the `ask:` entry's name).
        slot: String,
        /// The question.
        text: String,
    },
    /// "Did you mean …?" about a low-stakes reading of the fallback
    /// recogniser it is not sure of; "yes" runs it.
    DidYouMean {
        /// The intent it would run.
        intent: String,
        /// The question.
        text: String,
    },
    /// Something to say that is not about an action.
    Say(String),
}

/// What is waiting for a reply.
#[derive(Debug, Clone)]
struct Pending {
    request: ActionRequest,
    /// The intent's definition when it was read back (see
    /// [`Gate::intents_changed`]).
    definition: crate::intent::IntentInfo,
    digest: String,
    readback: String,
    facts: Facts,
    expires_at: DateTime<Utc>,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for yes/no; `reprompted` after one unclear reply.
    Reply { reprompted: bool },
    /// "yes" was heard; waiting for the PIN.
    Pin,
}

/// The gate's state.
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
    pending: Option<Pending>,
    /// A follow-up question waiting for its answer (never with `pending`).
    asking: Option<ask::Asking>,
    /// The last low-stakes request handed out to run, which its action may
    /// still turn into a question (`Gate::action_asks`).
    ran: Option<ask::Ran>,
    locked_until: Option<DateTime<Utc>>,
    pin_failures: u32,
}

/// How a recognised reply reads.
enum Reply {
    Yes,
    No,
    Unclear,
    Other(Box<Match>),
}

impl Gate {
    /// A gate with nothing pending.
    pub fn new(config: GateConfig) -> Gate {
        Gate {
            config,
            pending: None,
            asking: None,
            ran: None,
            locked_until: None,
            pin_failures: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// The PIN lockout's state (for the caller to persist).
    pub fn pin_lock(&self) -> PinLock {
        PinLock {
            failures: self.pin_failures,
            locked_until: self.locked_until,
        }
    }

    /// Restores the PIN lockout's state after a restart.
    pub fn restore_pin_lock(&mut self, lock: PinLock) {
        self.pin_failures = lock.failures;
        self.locked_until = lock.locked_until;
    }

    /// True when a confidence means "unsure": below the threshold, or not a
    /// finite number (a NaN compares false with everything, so it must not
    /// reach a `<` test as if it were sure). `None` (typed) is sure.
    fn unsure(&self, confidence: Option<f32>) -> bool {
        confidence.is_some_and(|c| !(c.is_finite() && c >= self.config.min_confidence))
    }

    /// The intents were reloaded: a pending request whose intent is gone
    /// or changed (risk, read-back or action) is cancelled, since what was
    /// read back may no longer be what would run.
    pub fn intents_changed(&mut self, new: &IntentSet) -> Vec<Output> {
        let asked = self.ask_intents_changed(new);
        let Some(p) = &self.pending else {
            return asked;
        };
        let reason = match new.intent(&p.request.intent) {
            None => format!("{} is no longer defined", p.request.intent),
            Some(info) => {
                let action = info.action.as_ref();
                let same = info.risk == p.definition.risk
                    && info.confirm == p.definition.confirm
                    && action.map(|a| &a.kind) == p.definition.action.as_ref().map(|a| &a.kind)
                    && action.map(|a| &a.params) == p.definition.action.as_ref().map(|a| &a.params);
                if same {
                    return Vec::new();
                }
                format!("the definition of {} changed", p.request.intent)
            }
        };
        let p = self.pending.take();
        p.map(|p| {
            vec![Output::Expired {
                facts: p.facts,
                reason: Some(reason),
            }]
        })
        .unwrap_or_default()
    }

    /// When the pending action expires, if one is pending (for the caller's timer).
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.pending
            .as_ref()
            .map(|p| p.expires_at)
            .or(self.asking.as_ref().map(|a| a.expires_at))
    }

    /// The action id waiting for a reply, if any.
    pub fn pending_action(&self) -> Option<&ActionId> {
        self.pending.as_ref().map(|p| &p.request.id)
    }

    /// True while the gate waits for a spoken PIN ("yes" was said to a
    /// read-back of a PIN kind): the next utterance is digits, not a
    /// sentence of any intent (the daemon decodes it without the grammar).
    /// True while a follow-up question ("For how long?") waits for its
    /// answer: the answer is no command sentence, so the daemon decodes it
    /// without the grammar.
    pub fn awaiting_answer(&self) -> bool {
        self.asking.is_some()
    }

    /// True while the gate waits for a spoken PIN ("yes" was said to a
    /// read-back of a PIN kind).
    pub fn awaiting_pin(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| p.stage == Stage::Pin)
    }

    /// Lets time pass: expires the pending action if its time is up.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        let mut out = Vec::new();
        self.expire_ask(now, &mut out);
        out.extend(self.expire_pending(now));
        out
    }

    fn expire_pending(&mut self, now: DateTime<Utc>) -> Vec<Output> {
        match &self.pending {
            Some(p) if now >= p.expires_at => {
                let p = self.pending.take().map(|p| p.facts);
                p.map(|facts| {
                    vec![Output::Expired {
                        facts,
                        reason: None,
                    }]
                })
                .unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Ends the session (shutdown): a pending action is recorded as expired.
    pub fn shutdown(&mut self) -> Vec<Output> {
        self.asking = None;
        self.pending
            .take()
            .map(|p| {
                vec![Output::Expired {
                    facts: p.facts,
                    reason: None,
                }]
            })
            .unwrap_or_default()
    }

    /// Handles one utterance at `now`. `spent_today` is what executed
    /// purchases have spent since the start of the day, in the cap's currency
    /// (the caller reads it from the audit log).
    pub fn handle(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        now: DateTime<Utc>,
        spent_today: i64,
    ) -> Vec<Output> {
        self.handle_in(intents, utterance, &Map::new(), now, spent_today)
    }

    /// [`Gate::handle`] with context from the caller (e.g. `alarm_ringing:
    /// true`). `pending_confirmation` is the gate's own and is ignored here.
    pub fn handle_in(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        context: &Map<String, Value>,
        now: DateTime<Utc>,
        spent_today: i64,
    ) -> Vec<Output> {
        self.handle_understood(intents, None, utterance, context, now, spent_today)
    }

    /// [`Gate::handle_in`] with the fallback recogniser for what no
    /// template matches: below its out-of-scope threshold "I can't help
    /// with that"; a low-stakes reading below its sure score is asked
    /// ("Did you mean …?"); everything else goes on as a template match
    /// would (high stakes: read back, run only after "yes").
    pub fn handle_understood(
        &mut self,
        intents: &IntentSet,
        fallback: Option<&Understander>,
        utterance: &Utterance,
        context: &Map<String, Value>,
        now: DateTime<Utc>,
        spent_today: i64,
    ) -> Vec<Output> {
        let mut base = context.clone();
        base.remove(Flag::PendingConfirmation.key());
        let chars = utterance.text.chars().count();
        if chars > MAX_UTTERANCE_CHARS {
            // Refused before anything else; a pending request is untouched.
            return vec![Output::NotUnderstood {
                text: utterance.text.chars().take(80).collect::<String>() + "…",
                why: NotUnderstood::TooLong {
                    chars,
                    limit: MAX_UTTERANCE_CHARS,
                },
            }];
        }
        let was_pin = self.awaiting_pin();
        let mut out = self.tick(now);
        if self.asking.is_some() {
            self.handle_answer(
                intents,
                fallback,
                utterance,
                &base,
                now,
                spent_today,
                &mut out,
            );
        } else if self.pending.is_some() {
            // The answer to a read-back: never sure on a free reading's word.
            let own = utterance.unbacked();
            self.handle_reply(intents, &own, &base, now, spent_today, &mut out);
        } else if was_pin {
            // The PIN came after the request expired: it is still a PIN
            // (never a command, never shown).
            out.push(Output::Say(
                "That came too late; the request was cancelled.".into(),
            ));
        } else if !utterance.addressed {
            // Heard without the wake word, and nothing is waiting for an
            // answer (any more): not for us.
            out.push(Output::Say(
                "Say the wake word first for a new command.".into(),
            ));
        } else {
            self.handle_request(
                intents,
                fallback,
                utterance,
                &base,
                now,
                spent_today,
                &mut out,
            );
        }
        out
    }

    fn reply_context(base: &Map<String, Value>) -> Map<String, Value> {
        let mut ctx = base.clone();
        ctx.insert(Flag::PendingConfirmation.key().into(), Value::Bool(true));
        ctx
    }

    fn classify_reply(intents: &IntentSet, text: &str, base: &Map<String, Value>) -> Reply {
        match intents.recognize(text, &Self::reply_context(base)) {
            Recognition::Match(m) => match action_kind(intents, &m.intent) {
                Some(ActionKind::GateConfirm) => Reply::Yes,
                Some(ActionKind::GateDecline) => Reply::No,
                _ => Reply::Other(Box::new(m)),
            },
            Recognition::NotUnderstood(_) => Reply::Unclear,
        }
    }

    fn handle_reply(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        base: &Map<String, Value>,
        now: DateTime<Utc>,
        spent_today: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let reply = Self::classify_reply(intents, &utterance.text, base);
        let unsure = self.unsure(utterance.confidence);
        // A PIN is never kept, not even in the facts of a refusal.
        pending.facts.reply = Some(if pending.stage == Stage::Pin {
            PIN_REDACTED.to_string()
        } else {
            utterance.text.clone()
        });
        pending.facts.confidence = utterance.confidence.or(pending.facts.confidence);
        match (pending.stage, reply) {
            (_, Reply::No) if !unsure => out.push(Output::Declined {
                facts: pending.facts,
                reason: "you said no".into(),
            }),
            (_, Reply::Other(_)) if !unsure && !utterance.addressed => {
                // Heard without the wake word while waiting for an answer
                // (a TV, someone else talking): it is not an answer, and it
                // is no command either. The question is dropped.
                out.push(Output::Superseded {
                    facts: pending.facts,
                });
                out.push(Output::Say(
                    "I stopped waiting for an answer. Say the wake word first for a new command."
                        .into(),
                ));
            }
            (_, Reply::Other(m)) if !unsure => {
                out.push(Output::Superseded {
                    facts: pending.facts,
                });
                // It was matched with `pending_confirmation` set; now nothing
                // is pending, so match it again as a fresh request.
                let fresh = match intents.recognize(&utterance.text, base) {
                    Recognition::Match(fresh) => fresh,
                    Recognition::NotUnderstood(_) => *m,
                };
                self.handle_match(intents, utterance, fresh, now, spent_today, out);
            }
            (Stage::Reply { .. }, Reply::Yes) if !unsure => {
                self.answer_yes(pending, utterance, now, out)
            }
            (Stage::Pin, _) if !unsure => self.check_pin(pending, utterance, now, out),
            (Stage::Pin, _) => {
                // An unsure transcription of a PIN is asked again; it is not
                // counted as a wrong PIN. The timeout still bounds this.
                out.push(Output::Reprompt {
                    facts: pending.facts.clone(),
                    text: "Sorry, I didn't catch that. Please say your PIN again.".into(),
                });
                self.pending = Some(pending);
            }
            (Stage::Reply { reprompted: true }, _) => out.push(Output::Declined {
                facts: pending.facts,
                reason: "the reply was unclear twice".into(),
            }),
            (Stage::Reply { reprompted: false }, _) => {
                // Unclear, or the transcription is unsure: ask once more.
                let text = if unsure {
                    format!(
                        "Sorry, I'm not sure I heard you. {} Please say yes or no.",
                        pending.readback
                    )
                } else {
                    format!("Please say yes or no. {}", pending.readback)
                };
                pending.stage = Stage::Reply { reprompted: true };
                out.push(Output::Reprompt {
                    facts: pending.facts.clone(),
                    text,
                });
                self.pending = Some(pending);
            }
        }
    }

    /// A sure "yes" to a read-back: refused while locked, or while a PIN
    /// is needed and none is set up; else the PIN is asked for (a PIN
    /// kind) or the action is confirmed.
    fn answer_yes(
        &mut self,
        mut pending: Pending,
        utterance: &Utterance,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) {
        if self.locked(now) {
            let reason = self.lock_reason(now);
            out.push(Output::Refused {
                facts: pending.facts,
                reason,
            });
        } else if pending
            .request
            .kind
            .is_some_and(|k| self.config.pin_kinds.contains(&k))
        {
            if self.config.pin.is_none() {
                out.push(Output::Refused {
                    facts: pending.facts,
                    reason: "this needs a PIN, and no PIN is set up".into(),
                });
            } else {
                pending.stage = Stage::Pin;
                out.push(Output::Reprompt {
                    facts: pending.facts.clone(),
                    text: "Please say your PIN.".into(),
                });
                self.pending = Some(pending);
            }
        } else {
            self.confirm(pending, utterance.text.clone(), now, out);
        }
    }

    fn check_pin(
        &mut self,
        pending: Pending,
        utterance: &Utterance,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) {
        let digits: String = normalize::tokenize(&utterance.text)
            .iter()
            .flat_map(|t| t.norm.chars())
            .filter(char::is_ascii_digit)
            .collect();
        let ok = !digits.is_empty() && self.config.pin.as_ref().is_some_and(|p| p.verify(&digits));
        if ok {
            self.pin_failures = 0;
            self.confirm(pending, PIN_REDACTED.to_string(), now, out);
            return;
        }
        self.pin_failures += 1;
        if self.pin_failures >= self.config.pin_attempts {
            self.pin_failures = 0;
            self.locked_until = Some(now + self.config.pin_lockout);
            out.push(Output::Declined {
                facts: pending.facts,
                reason: format!(
                    "wrong PIN {} times; purchases and bookings are locked for {} minutes",
                    self.config.pin_attempts,
                    self.config.pin_lockout.num_minutes()
                ),
            });
        } else {
            out.push(Output::Reprompt {
                facts: pending.facts.clone(),
                text: "That PIN is not right. Please say your PIN again.".into(),
            });
            self.pending = Some(pending);
        }
    }

    /// `reply` is the confirming reply as it may be kept ([`PIN_REDACTED`]
    /// for a PIN).
    fn confirm(
        &mut self,
        pending: Pending,
        reply: String,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) {
        // Defence in depth: the request must be exactly what was read back.
        if digest(&pending.request) != pending.digest {
            out.push(Output::Refused {
                facts: pending.facts,
                reason: "the action changed after it was read back".into(),
            });
            return;
        }
        let action = ConfirmedAction::new(
            pending.request,
            pending.digest,
            pending.readback,
            now,
            reply,
        );
        out.push(Output::RunHigh {
            facts: pending.facts,
            action: Box::new(action),
        });
    }

    fn locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    fn lock_reason(&self, now: DateTime<Utc>) -> String {
        let minutes = self
            .locked_until
            .map(|t| ((t - now).num_seconds() + 59) / 60)
            .unwrap_or(0)
            .max(1);
        format!("purchases and bookings are locked for {minutes} more minute(s) after wrong PINs")
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_request(
        &mut self,
        intents: &IntentSet,
        fallback: Option<&Understander>,
        utterance: &Utterance,
        base: &Map<String, Value>,
        now: DateTime<Utc>,
        spent_today: i64,
        out: &mut Vec<Output>,
    ) {
        let judged = utterance.as_command(intents, fallback, base);
        let utterance = &*judged;
        match intents.recognize(&utterance.text, base) {
            Recognition::Match(m) => {
                self.handle_match(intents, utterance, m, now, spent_today, out)
            }
            Recognition::NotUnderstood(why) => {
                // "yes" with nothing pending runs nothing.
                if let Reply::Yes | Reply::No = Self::classify_reply(intents, &utterance.text, base)
                {
                    out.push(Output::Say(
                        "There is nothing waiting for a yes or no.".into(),
                    ));
                    return;
                }
                // A request with its own "yes" attached: the "yes" never
                // counts; read the request back as usual.
                if let Some(m) = split_trailing_reply(intents, &utterance.text, base) {
                    self.handle_match(intents, utterance, m, now, spent_today, out);
                    return;
                }
                if let (NotUnderstood::NoMatch, Some(fallback)) = (&why, fallback) {
                    self.handle_fallback(intents, fallback, utterance, now, spent_today, out);
                    return;
                }
                out.push(Output::NotUnderstood {
                    text: utterance.text.clone(),
                    why,
                });
            }
        }
    }

    /// No template matched: what the fallback recogniser proposes. Its
    /// failure is "not understood", as without it.
    fn handle_fallback(
        &mut self,
        intents: &IntentSet,
        fallback: &Understander,
        utterance: &Utterance,
        now: DateTime<Utc>,
        spent_today: i64,
        out: &mut Vec<Output>,
    ) {
        match fallback.propose(intents, &utterance.text) {
            // A reading no template could have made (an order without its
            // drink) is not read back, run or offered: nothing would say
            // what the action gets.
            Ok(Proposal::Reading { m, .. }) if !ask::unaskable_gaps(intents, &m).is_empty() => {
                out.push(Output::NotUnderstood {
                    text: utterance.text.clone(),
                    why: NotUnderstood::Incomplete {
                        missing: ask::unaskable_gaps(intents, &m),
                        intent: m.intent,
                    },
                });
            }
            Ok(Proposal::Reading { m, sure }) if m.risk == Risk::High || sure => {
                let first = out.len();
                let intent = m.intent.clone();
                let summary = intents
                    .intent(&intent)
                    .and_then(|i| i.summary.as_deref())
                    .map(|s| readback::fill_text(s, &m));
                self.handle_match(intents, utterance, *m, now, spent_today, out);
                // Its first question says what it is for: no template
                // made this reading, and a wrong one should be heard now.
                if let Some(summary) = summary {
                    ask::preface_questions(&mut out[first..], &intent, &summary);
                }
            }
            Ok(Proposal::Reading { m, .. }) => {
                out.push(Output::Intent(m.clone()));
                if self.unsure(utterance.confidence) {
                    out.push(Output::Say(
                        "I'm not sure I heard that right; please say it again.".into(),
                    ));
                } else {
                    self.ask_meaning(intents, utterance, *m, now, out);
                }
            }
            Ok(Proposal::OutOfScope(reading)) => out.push(Output::NotUnderstood {
                text: utterance.text.clone(),
                why: NotUnderstood::OutOfScope {
                    nearest: reading.intent,
                    score: reading.score,
                },
            }),
            Err(_) => out.push(Output::NotUnderstood {
                text: utterance.text.clone(),
                why: NotUnderstood::NoMatch,
            }),
        }
    }

    fn handle_match(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        m: Match,
        now: DateTime<Utc>,
        spent_today: i64,
        out: &mut Vec<Output>,
    ) {
        let info = intents.intent(&m.intent);
        let action = info.and_then(|i| i.action.clone());
        let request = ActionRequest {
            id: ActionId::new(),
            intent: m.intent.clone(),
            kind: action.as_ref().map(|a| a.kind),
            slots: m.slot_map(),
            params: action
                .as_ref()
                .map(|a| fill_params(&a.params, &m))
                .unwrap_or(Value::Null),
        };
        let risk = info.map(|i| i.risk).unwrap_or(Risk::High);
        out.push(Output::Intent(Box::new(m.clone())));
        if matches!(
            request.kind,
            Some(ActionKind::GateConfirm | ActionKind::GateDecline)
        ) {
            out.push(Output::Say(
                "There is nothing waiting for a yes or no.".into(),
            ));
            return;
        }
        // Unsure of what was heard: even a low-stakes command is not
        // guessed at (a timer set from misheard kitchen noise is still
        // wrong); high-stakes requests are refused, and audited, below.
        if risk == Risk::Low && self.unsure(utterance.confidence) {
            out.push(Output::Say(
                "I'm not sure I heard that right; please say it again.".into(),
            ));
            return;
        }
        if self.ask_missing(intents, utterance, &m, now, out) {
            return;
        }
        if risk == Risk::Low {
            if request.kind.is_none() {
                out.push(Output::Say(format!(
                    "I understood {}, but nothing here can do that.",
                    m.intent
                )));
            } else {
                self.ran = Some(ask::Ran::new(&request.id, m, utterance));
                out.push(Output::RunLow(request));
            }
            return;
        }
        let amount = self.amount_of(&request);
        let facts = Facts {
            action_id: request.id.clone(),
            intent: request.intent.clone(),
            slots: request.slots.clone(),
            transcript: utterance.text.clone(),
            reply: None,
            confidence: utterance.confidence,
            wake_score: utterance.wake_score,
            amount: amount.clone(),
            by: m.by,
        };
        if let Some(reason) = self.refusal(
            &request,
            &m.intent,
            utterance,
            amount.as_ref(),
            now,
            spent_today,
        ) {
            out.push(Output::Refused { facts, reason });
            return;
        }
        let readback = readback(info.and_then(|i| i.confirm.as_deref()), &m, amount.as_ref());
        let digest = digest(&request);
        let expires_at = now + self.config.confirm_timeout;
        out.push(Output::ConfirmRequest {
            facts: facts.clone(),
            readback: readback.clone(),
            digest: digest.clone(),
            expires_at,
        });
        let Some(definition) = info.cloned() else {
            // Unreachable: an intent without a definition has no action, and
            // was refused above.
            return;
        };
        self.pending = Some(Pending {
            request,
            definition,
            digest,
            readback,
            facts,
            expires_at,
            stage: Stage::Reply { reprompted: false },
        });
    }

    /// Why a high-stakes request may not be read back, if it may not: no
    /// action configured, an unsure transcription, the PIN lockout, an
    /// unknown price or a price in another currency under a spend cap, or
    /// going over the cap. Checked in that order; `None`: read it back.
    fn refusal(
        &self,
        request: &ActionRequest,
        intent: &str,
        utterance: &Utterance,
        amount: Option<&Money>,
        now: DateTime<Utc>,
        spent_today: i64,
    ) -> Option<String> {
        if request.kind.is_none() {
            return Some(format!("{intent} has no action configured here"));
        }
        if self.unsure(utterance.confidence) {
            return Some("I'm not sure I heard that right; please say it again".into());
        }
        if self.locked(now) {
            return Some(self.lock_reason(now));
        }
        let cap = self.config.daily_spend_cap.as_ref()?;
        // Only purchases must have a known price in the cap's currency; any
        // action with a known amount counts against the cap.
        let purchase = request.kind.is_some_and(ActionKind::is_purchase);
        match amount {
            None if purchase && !self.config.allow_unpriced => Some(format!(
                "I don't know what {} costs, so I can't check it against your daily limit of {}",
                priced_thing(request).unwrap_or(intent),
                cap.spoken()
            )),
            // The config refuses such prices; this is defence in depth.
            Some(amount) if purchase && amount.currency != cap.currency => Some(format!(
                "its price is in {}, and your daily limit is in {}",
                amount.currency, cap.currency
            )),
            Some(amount) if spent_today.saturating_add(amount.cents) > cap.cents => {
                let spent = Money {
                    cents: spent_today,
                    currency: cap.currency.clone(),
                };
                Some(format!(
                    "that costs {}, and with {} already spent today it would go over the daily limit of {}",
                    amount.spoken(),
                    spent.spoken(),
                    cap.spoken()
                ))
            }
            _ => None,
        }
    }

    /// Price × quantity for purchases whose product has a configured
    /// price: the `item` slot, or a drink (`size drink` first, so a size
    /// may have its own price, then `drink`).
    fn amount_of(&self, request: &ActionRequest) -> Option<Money> {
        let text = |name: &str| request.slots.get(name).and_then(Value::as_str);
        let price = match (text("item"), text("drink")) {
            (Some(item), _) => self.config.prices.get(item)?,
            (None, Some(drink)) => text("size")
                .and_then(|size| self.config.prices.get(&format!("{size} {drink}")))
                .or_else(|| self.config.prices.get(drink))?,
            (None, None) => return None,
        };
        let quantity = match request.slots.get("quantity") {
            Some(Value::Number(n)) => n.as_i64()?,
            Some(Value::String(s)) => s.parse().ok()?,
            None => 1,
            _ => return None,
        };
        Some(Money {
            cents: price.cents.checked_mul(quantity)?,
            currency: price.currency.clone(),
        })
    }
}

/// What a purchase buys, for "I don't know what X costs".
fn priced_thing(request: &ActionRequest) -> Option<&str> {
    ["item", "drink"]
        .iter()
        .find_map(|k| request.slots.get(*k).and_then(Value::as_str))
}

fn action_kind(intents: &IntentSet, intent: &str) -> Option<ActionKind> {
    intents.intent(intent)?.action.as_ref().map(|a| a.kind)
}

/// The most words a confirmation reply has ("yes that's right go ahead").
const MAX_REPLY_WORDS: usize = 8;

/// "buy batteries yes I confirm": the longest prefix that is a high-stakes
/// request, when the rest is a confirmation reply. Only the last
/// [`MAX_REPLY_WORDS`] cuts are tried, so the work grows linearly with the
/// text, not with its square.
fn split_trailing_reply(
    intents: &IntentSet,
    text: &str,
    base: &Map<String, Value>,
) -> Option<Match> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let first = words.len().saturating_sub(MAX_REPLY_WORDS).max(1);
    for cut in (first..words.len()).rev() {
        let (head, tail) = (words[..cut].join(" "), words[cut..].join(" "));
        if !matches!(Gate::classify_reply(intents, &tail, base), Reply::Yes) {
            continue;
        }
        if let Recognition::Match(m) = intents.recognize(&head, base)
            && m.risk == Risk::High
        {
            return Some(m);
        }
    }
    None
}
