//! Follow-up questions: a request that lacks a detail its intent asks for
//! (`ask:` in the intent file) is not run or read back; the gate asks for it
//! and waits, like a read-back, for the next utterance.
//!
//! The rules (tested as conversations in `tests/data/gate/cases.yaml`):
//! - An answer is matched with the context `asking: "Intent.name"`, under
//!   which the question's `answers:` templates ("ten minutes", "make it
//!   ten") match; a whole sentence of the same intent answers too, and a
//!   sentence that is both an answer and another intent's is the answer
//!   (`IntentSet::recognize_preferring`). Its slots
//!   replace the question's slots in the request; the rest of the request
//!   stays. Then the request goes on as if it had been said whole: the next
//!   missing detail is asked, or it runs (low stakes) or is read back (high
//!   stakes). Nothing skips the read-back.
//! - "never mind" ends the question; so does the time limit (silence).
//! - Another command, addressed to voicegate, ends the question and is
//!   handled. Heard without the wake word it only ends the question.
//! - An answer that is not understood, or heard unsure, gets the question
//!   once more; a second one ends it. Said to voicegate (typed, or after
//!   the wake word), a sentence that answers nothing is a new command.
//! - A high-stakes request heard unsure, or while high-stakes actions are
//!   locked, is not asked about: it is refused as it would be whole.
//! - A question marked `after_action` is never asked before running: the
//!   request is complete as said. Its action asks it ("You have 2 timers:
//!   … Which one should I cancel?"), and the pipeline then hands the
//!   question to the gate ([`Gate::action_asks`]), so that the answer is
//!   taken like any other: low-stakes only, the last request run, and
//!   only while nothing else waits for a reply.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Gate, Output, Reply, Utterance, action_kind};
use crate::intent::{ASKING_KEY, AskDef, IntentSet, Match, Recognition, Risk};
use crate::nlu::Understander;
use crate::request::{ActionId, ActionKind};

/// A question waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Asking {
    /// The request so far.
    request: Match,
    /// What was said so far (the request, then each answer).
    utterance: Utterance,
    /// The question: a missing detail, or (`None`) "did you mean …?" for
    /// a low-stakes reading the fallback recogniser is not sure of.
    ask: Option<AskDef>,
    pub(super) expires_at: DateTime<Utc>,
    /// The question was asked again once already.
    repeated: bool,
}

/// A low-stakes request handed out to run: what its action may ask about.
#[derive(Debug, Clone)]
pub(super) struct Ran {
    id: String,
    request: Match,
    utterance: Utterance,
}

impl Ran {
    pub(super) fn new(id: &ActionId, request: Match, utterance: &Utterance) -> Ran {
        Ran {
            id: id.to_string(),
            request,
            utterance: utterance.clone(),
        }
    }
}

impl Gate {
    /// The action of request `action_id` asked its intent's `after_action`
    /// question `ask` (its reply, already said, ends with it): wait for
    /// the answer as for any follow-up question. Nothing happens unless
    /// `action_id` is the last low-stakes request run and nothing else
    /// waits for a reply. Returns whether the gate now waits.
    pub fn action_asks(
        &mut self,
        intents: &IntentSet,
        action_id: &str,
        ask: &str,
        now: DateTime<Utc>,
    ) -> bool {
        if self.pending.is_some() || self.asking.is_some() {
            return false;
        }
        let Some(ran) = self.ran.as_ref().filter(|r| r.id == action_id) else {
            return false;
        };
        let Some(def) = intents
            .intent(&ran.request.intent)
            .filter(|i| i.risk == Risk::Low)
            .and_then(|i| i.ask.iter().find(|a| a.after_action && a.name == ask))
            .cloned()
        else {
            return false;
        };
        let Some(ran) = self.ran.take() else {
            return false;
        };
        self.asking = Some(Asking {
            request: ran.request,
            utterance: ran.utterance,
            ask: Some(def),
            expires_at: now + self.config.confirm_timeout,
            repeated: false,
        });
        true
    }

    /// If `m` lacks a detail its intent asks for, asks for the first such
    /// and returns true.
    pub(super) fn ask_missing(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        m: &Match,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(info) = intents.intent(&m.intent) else {
            return false;
        };
        if info.risk == Risk::High && (self.unsure(utterance.confidence) || self.locked(now)) {
            return false;
        }
        let Some(ask) = info
            .ask
            .iter()
            .find(|a| !a.after_action && !a.slots.iter().any(|s| m.slot(s).is_some()))
        else {
            return false;
        };
        out.push(Output::Ask {
            intent: m.intent.clone(),
            slot: ask.name.clone(),
            text: ask.question.clone(),
        });
        self.asking = Some(Asking {
            request: m.clone(),
            utterance: utterance.clone(),
            ask: Some(ask.clone()),
            expires_at: now + self.config.confirm_timeout,
            repeated: false,
        });
        true
    }

    /// Asks "did you mean …?" about `m`; "yes" runs it.
    pub(super) fn ask_meaning(
        &mut self,
        intents: &IntentSet,
        utterance: &Utterance,
        m: Match,
        now: DateTime<Utc>,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::DidYouMean {
            intent: m.intent.clone(),
            text: did_you_mean(intents, &m),
        });
        self.asking = Some(Asking {
            request: m,
            utterance: utterance.clone(),
            ask: None,
            expires_at: now + self.config.confirm_timeout,
            repeated: false,
        });
    }

    /// A reload that removes the intent asked about, or its question, ends
    /// the question.
    pub(super) fn ask_intents_changed(&mut self, new: &IntentSet) -> Vec<Output> {
        let Some(a) = &self.asking else {
            return Vec::new();
        };
        let still = new
            .intent(&a.request.intent)
            .is_some_and(|i| a.ask.as_ref().is_none_or(|ask| i.ask.contains(ask)));
        if still {
            return Vec::new();
        }
        self.asking = None;
        vec![Output::Say(
            "The intent files changed, so I stopped waiting for an answer.".into(),
        )]
    }

    /// Ends a question whose time is up (silence).
    pub(super) fn expire_ask(&mut self, now: DateTime<Utc>, out: &mut Vec<Output>) {
        if self.asking.as_ref().is_some_and(|a| now >= a.expires_at) {
            self.asking = None;
            out.push(Output::Say("No answer, so I left it.".into()));
        }
    }

    /// The utterance after a question.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_answer(
        &mut self,
        intents: &IntentSet,
        fallback: Option<&Understander>,
        utterance: &Utterance,
        base: &Map<String, Value>,
        now: DateTime<Utc>,
        spent_today: i64,
        out: &mut Vec<Output>,
    ) {
        let Some(mut asking) = self.asking.take() else {
            return;
        };
        let mut context = base.clone();
        if let Some(ask) = &asking.ask {
            context.insert(
                ASKING_KEY.into(),
                Value::String(ask.context_value(&asking.request.intent)),
            );
        }
        let unsure = self.unsure(utterance.confidence);
        match Self::classify_reply(intents, &utterance.text, base) {
            _ if unsure => {}
            Reply::No => {
                out.push(Output::Say("OK, I left it.".into()));
                return;
            }
            // "yes" to "did you mean …?": the reading is the user's now.
            Reply::Yes if asking.ask.is_none() => {
                self.handle_match(intents, utterance, asking.request, now, spent_today, out);
                return;
            }
            _ => {}
        }
        // A sentence that is the answer and also another intent's is
        // the answer: that is what was asked for.
        let recognition = match &asking.ask {
            Some(_) => {
                intents.recognize_preferring(&utterance.text, &context, &asking.request.intent)
            }
            None => intents.recognize(&utterance.text, &context),
        };
        let heard = match recognition {
            Recognition::Match(m) if !unsure => Some(m),
            _ => None,
        };
        match heard {
            Some(m) if m.intent == asking.request.intent && asking.ask.is_some() => {
                let said = Utterance {
                    text: format!("{} / {}", asking.utterance.text, utterance.text),
                    confidence: lower(asking.utterance.confidence, utterance.confidence),
                    wake_score: asking.utterance.wake_score,
                    addressed: asking.utterance.addressed,
                    backing: None,
                };
                let merged = match &asking.ask {
                    Some(ask) => merge(asking.request, ask, m),
                    None => m,
                };
                self.handle_match(intents, &said, merged, now, spent_today, out);
            }
            Some(m) if action_kind(intents, &m.intent) == Some(ActionKind::Nevermind) => {
                out.push(Output::Say("OK, I left it.".into()));
            }
            Some(m) if utterance.addressed => {
                self.handle_match(intents, utterance, m, now, spent_today, out);
            }
            Some(_) => out.push(Output::Say(
                "I stopped waiting for an answer. Say the wake word first for a new command."
                    .into(),
            )),
            // Said to voicegate (typed, or after the wake word) and no
            // answer: a new command, which templates or the fallback read.
            None if utterance.addressed && !unsure => {
                self.handle_request(intents, fallback, utterance, base, now, spent_today, out);
            }
            None if !asking.repeated => {
                out.push(match &asking.ask {
                    Some(ask) => Output::Ask {
                        intent: asking.request.intent.clone(),
                        slot: ask.name.clone(),
                        text: format!("Sorry, I didn't get that. {}", ask.question),
                    },
                    None => Output::DidYouMean {
                        intent: asking.request.intent.clone(),
                        text: format!(
                            "Sorry, I didn't get that. {} Please say yes or no.",
                            did_you_mean(intents, &asking.request)
                        ),
                    },
                });
                asking.repeated = true;
                asking.expires_at = now + self.config.confirm_timeout;
                self.asking = Some(asking);
            }
            None => out.push(Output::Say(
                "Sorry, I still didn't get that, so I left it.".into(),
            )),
        }
    }
}

/// "To book a table: for how many people?": the questions about `intent`
/// among `out`, led by what the request is for.
pub(super) fn preface_questions(out: &mut [Output], intent: &str, summary: &str) {
    for output in out {
        if let Output::Ask {
            intent: asked,
            text,
            ..
        } = output
            && asked == intent
        {
            let mut chars = text.chars();
            let question: String = match (chars.next(), chars.next()) {
                // "For how long?" → "for how long?"; not "I …" or "TV …".
                (Some(first), Some(second)) if first != 'I' && !second.is_uppercase() => first
                    .to_lowercase()
                    .chain(text[first.len_utf8()..].chars())
                    .collect(),
                _ => text.clone(),
            };
            *text = format!("To {summary}: {question}");
        }
    }
}

/// The request with the answer's slots: those of the question are replaced
/// (an answer "ten minutes" drops an earlier "hours"), any other slot the
/// answer carries is added or replaced, the rest stays.
fn merge(mut request: Match, ask: &AskDef, answer: Match) -> Match {
    request
        .slots
        .retain(|s| !ask.slots.contains(&s.name) && answer.slot(&s.name).is_none());
    request.slots.extend(answer.slots);
    request.context.remove(ASKING_KEY);
    request
}

/// The slots every template of `m`'s intent fills that `m` lacks and no
/// question of the intent asks for before running: a fallback reading
/// without them is one no template could have made.
pub(super) fn unaskable_gaps(intents: &IntentSet, m: &Match) -> Vec<String> {
    let Some(info) = intents.intent(&m.intent) else {
        return Vec::new();
    };
    info.filled
        .iter()
        .filter(|slot| {
            m.slot(slot).is_none()
                && !info
                    .ask
                    .iter()
                    .any(|a| !a.after_action && a.slots.contains(slot))
        })
        .cloned()
        .collect()
}

/// "Did you mean: start a 10 minute timer?": the intent's `summary:` filled
/// with the reading's slots (read-back syntax), else the intent's name in
/// words, then every slot it does not show, as a read-back lists them.
fn did_you_mean(intents: &IntentSet, m: &Match) -> String {
    let summary = intents.intent(&m.intent).and_then(|i| i.summary.clone());
    let template = summary.unwrap_or_else(|| {
        let mut words = String::new();
        for (i, c) in m.intent.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                words.push(' ');
            }
            words.extend(c.to_lowercase());
        }
        words
    });
    let (words, rest) = super::readback::fill_showing_all(&template, m);
    if rest.is_empty() {
        format!("Did you mean: {words}?")
    } else {
        format!("Did you mean: {words}, {}?", rest.join(", "))
    }
}

/// The lower of two confidences (a typed part has none).
fn lower(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.min(b)
        }),
        (a, b) => a.or(b),
    }
}
