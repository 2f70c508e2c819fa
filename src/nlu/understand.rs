//! [`Understander`]: the fallback recogniser and the slot finder trained on
//! one intent set, with the scores that divide its readings into out of
//! scope, unsure and sure. The gate asks it only when no template matched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Map;

use super::cache::EmbeddingCache;
use super::examples::examples;
use super::hashed::HashedEmbedder;
use super::slots::SlotFinder;
use super::{Embedder, Fallback, NluError, Reading};
use crate::intent::{By, IntentSet, Match, Risk, TemplateRef};

/// Where the fallback's readings are cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Below this score a sentence is out of scope: "Sorry, I can't help
    /// with that."
    pub out_of_scope: f32,
    /// At or above this score a low-stakes reading runs at once; between
    /// the two it is asked ("Did you mean …?"). High-stakes readings are
    /// read back whatever their score.
    pub sure: f32,
}

/// Which embedder the fallback uses (`[understanding] fallback = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FallbackModel {
    /// No fallback: what no template matches is not understood.
    Off,
    /// [`super::hashed::HashedEmbedder`]: word features, no model.
    Hashed,
    /// all-MiniLM-L6-v2 sentence embeddings (installed by `voicegate
    /// models install`). It measures far better than `Hashed`.
    #[default]
    Minilm,
}

impl std::str::FromStr for FallbackModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(FallbackModel::Off),
            "hashed" => Ok(FallbackModel::Hashed),
            "minilm" => Ok(FallbackModel::Minilm),
            other => Err(format!(
                "unknown fallback {other:?}: expected \"minilm\", \"hashed\" or \"off\""
            )),
        }
    }
}

impl FallbackModel {
    /// The thresholds calibrated for this embedder on the dev data
    /// (`docs/benchmarks.md`, "Paraphrases").
    pub fn default_thresholds(self) -> Thresholds {
        match self {
            // On CLINC150's train split (dev data): below 0.65 the nearest
            // intent is as often out of scope as not; from 0.70 a reading
            // runs at once (docs/benchmarks.md, "Paraphrases").
            FallbackModel::Minilm => Thresholds {
                out_of_scope: 0.65,
                sure: 0.70,
            },
            FallbackModel::Hashed | FallbackModel::Off => Thresholds {
                out_of_scope: 0.45,
                sure: 0.65,
            },
        }
    }
}

/// The fallback's settings, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallbackSettings {
    /// The embedder.
    pub model: FallbackModel,
    /// Where its readings are cut.
    pub thresholds: Thresholds,
}

impl Default for FallbackSettings {
    fn default() -> Self {
        let model = FallbackModel::default();
        FallbackSettings {
            model,
            thresholds: model.default_thresholds(),
        }
    }
}

/// Template expansions per intent in the training sentences.
pub const EXPANSIONS_PER_INTENT: usize = 60;

/// The seed of those expansions (fixed: the same files train the same
/// recogniser).
const SEED: u64 = 0x766f_6963_6567_6174;

/// What the fallback makes of a sentence.
#[derive(Debug, Clone)]
pub enum Proposal {
    /// An intent, with the slots found; `sure` per [`Thresholds::sure`].
    Reading {
        /// The reading as a match (`by: fallback`).
        m: Box<Match>,
        /// Score at or above the sure threshold.
        sure: bool,
    },
    /// Nothing near enough, or a request the files say voicegate cannot
    /// do (`out_of_scope:`) is nearer.
    OutOfScope(Reading),
}

/// The fallback recogniser for one intent set.
#[derive(Debug)]
pub struct Understander {
    fallback: Fallback,
    slots: SlotFinder,
    thresholds: Thresholds,
    /// Per intent, how far below [`Thresholds::out_of_scope`] its readings
    /// are still taken (`fallback_leeway:` in its file; high-risk intents
    /// only, see [`Understander::cut`]).
    leeway: HashMap<String, f32>,
}

impl Understander {
    /// Trains on `intents`' files (see [`super::examples`]) with
    /// `embedder`; `None` fits a [`HashedEmbedder`] to the training
    /// sentences.
    pub fn train(
        intents: &IntentSet,
        embedder: Option<Arc<dyn Embedder>>,
        thresholds: Thresholds,
    ) -> Result<Understander, NluError> {
        Self::train_cached(intents, embedder, thresholds, None)
    }

    /// [`Understander::train`], embedding through `cache`.
    pub fn train_cached(
        intents: &IntentSet,
        embedder: Option<Arc<dyn Embedder>>,
        thresholds: Thresholds,
        cache: Option<&mut EmbeddingCache>,
    ) -> Result<Understander, NluError> {
        let defs = intents.definitions();
        let examples = examples(defs, EXPANSIONS_PER_INTENT, SEED);
        let embedder = embedder.unwrap_or_else(|| {
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            Arc::new(HashedEmbedder::fit(&texts))
        });
        let leeway = defs
            .intents
            .iter()
            .filter_map(|i| i.fallback_leeway.map(|l| (i.name.clone(), l)))
            .collect();
        Ok(Understander {
            fallback: Fallback::train(examples, embedder, cache)?,
            slots: SlotFinder::new(defs),
            thresholds,
            leeway,
        })
    }

    /// The fallback per `settings` (`None`: off), trained on `intents`;
    /// `embedder` is the loaded model when `settings` asks for MiniLM
    /// ([`super::load_embedder`]). New training vectors are saved in
    /// `cache`; failing to save them only costs time at the next start.
    pub fn for_settings(
        intents: &IntentSet,
        settings: FallbackSettings,
        embedder: Option<Arc<dyn Embedder>>,
        cache: &mut EmbeddingCache,
    ) -> Result<Option<Understander>, NluError> {
        let understander = match settings.model {
            FallbackModel::Off => return Ok(None),
            FallbackModel::Hashed => Self::train(intents, None, settings.thresholds)?,
            FallbackModel::Minilm => {
                let embedder = embedder
                    .ok_or_else(|| NluError::Model("the MiniLM embedder is not loaded".into()))?;
                Self::train_cached(intents, Some(embedder), settings.thresholds, Some(cache))?
            }
        };
        let _ = cache.save();
        Ok(Some(understander))
    }

    /// The thresholds in use.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// The score from which a reading of `intent` is taken: the
    /// out-of-scope threshold, lowered by the intent's `fallback_leeway`
    /// when it is high-risk. A high-risk reading is read back, or its
    /// missing details asked, and runs only on "yes"; so a generous cut
    /// there costs at worst a question. Low-risk readings run at once and
    /// get no leeway.
    pub fn cut(&self, intent: &str, risk: Risk) -> f32 {
        let leeway = match risk {
            Risk::High => self.leeway.get(intent).copied().unwrap_or(0.0),
            Risk::Low => 0.0,
        };
        self.thresholds.out_of_scope - leeway
    }

    /// The nearest training sentences and scores (`intents explain`).
    pub fn read(&self, text: &str) -> Result<Option<Reading>, NluError> {
        self.fallback.read(text)
    }

    /// The fallback's proposal for `text`: out of scope below the nearest
    /// intent's [`Understander::cut`], or when an `out_of_scope:` sentence
    /// of the files is at least as near as that intent's own sentences.
    pub fn propose(&self, intents: &IntentSet, text: &str) -> Result<Proposal, NluError> {
        let reading = match self.fallback.read(text)? {
            Some(r) => r,
            None => {
                return Ok(Proposal::OutOfScope(Reading {
                    intent: String::new(),
                    score: 0.0,
                    runner_up: 0.0,
                    out_of_scope: None,
                    nearest: Vec::new(),
                }));
            }
        };
        let Some(info) = intents.intent(&reading.intent) else {
            return Ok(Proposal::OutOfScope(reading));
        };
        if reading.score < self.cut(&reading.intent, info.risk) || reading.nearer_out_of_scope() {
            return Ok(Proposal::OutOfScope(reading));
        }
        let nearest = reading
            .nearest
            .first()
            .map(|n| n.text.clone())
            .unwrap_or_default();
        let m = Match {
            intent: reading.intent.clone(),
            risk: info.risk,
            slots: self.slots.find(&reading.intent, text),
            context: Map::new(),
            response: None,
            template: TemplateRef {
                text: format!("(nearest example) {nearest}"),
                file: PathBuf::new(),
                line: 0,
                col: 0,
            },
            wildcards: 0,
            literal_chars: 0,
            by: By::Fallback {
                score: reading.score,
                runner_up: reading.runner_up,
            },
        };
        Ok(Proposal::Reading {
            m: Box::new(m),
            sure: reading.score >= self.thresholds.sure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::load::SourceFile;

    /// Two intents alike but for their risk, each with the same leeway.
    const FILE: &str = r#"
language: en
intents:
  BookTable:
    risk: high
    fallback_leeway: 0.2
    action: {kind: booking.table}
    data:
      - sentences: ["book a table for two"]
  StartTimer:
    risk: low
    fallback_leeway: 0.2
    action: {kind: timer.start}
    data:
      - sentences: ["set a timer for ten minutes"]
"#;

    fn understander(out_of_scope: f32) -> (IntentSet, Understander) {
        let file = SourceFile {
            path: "t.yaml".into(),
            text: FILE.into(),
        };
        let set = IntentSet::build(vec![file], &Default::default()).0;
        let thresholds = Thresholds {
            out_of_scope,
            sure: 0.99,
        };
        let u = Understander::train(&set, None, thresholds).unwrap();
        (set, u)
    }

    #[test]
    fn only_a_high_risk_intent_gets_its_leeway() {
        let (_, u) = understander(0.6);
        assert!((u.cut("BookTable", Risk::High) - 0.4).abs() < 1e-6);
        assert!((u.cut("StartTimer", Risk::Low) - 0.6).abs() < 1e-6);
        assert!((u.cut("Unknown", Risk::High) - 0.6).abs() < 1e-6);
    }

    #[test]
    fn a_high_risk_reading_within_its_leeway_is_taken_a_low_risk_one_is_not() {
        let (set, probe) = understander(0.5);
        // Each sentence's score, then a threshold just above it: inside
        // the 0.2 leeway.
        for (text, intent, taken) in [
            ("could you reserve a table", "BookTable", true),
            ("could you set a timer", "StartTimer", false),
        ] {
            let score = probe.read(text).unwrap().unwrap();
            assert_eq!(score.intent, intent, "{text}");
            let (_, u) = understander(score.score + 0.1);
            let got = matches!(
                u.propose(&set, text).unwrap(),
                Proposal::Reading { ref m, .. } if m.intent == intent
            );
            assert_eq!(got, taken, "{text}: score {}", score.score);
        }
    }
}
