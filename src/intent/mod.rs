//! The intent engine: transcript in, intent with slots out.
//!
//! ```text
//! files ──load──▶ Definitions ──compile──▶ IntentSet ──recognize(text, context)──▶ Recognition
//! ```
//!
//! - [`template`]: the template language (hassil's syntax) → expression tree.
//! - [`yaml`]: a YAML tree that keeps positions, for `file:line:col` errors.
//! - [`load`]: intent files → definitions ([`defs`]), every problem a
//!   [`Diagnostic`].
//! - [`compile`]: definitions → the matcher's graph (references resolved,
//!   text normalised, list values indexed). Done once.
//! - [`normalize`]: the normaliser shared by transcripts and templates.
//! - [`matcher`]: the backtracking matcher; [`builtins`]: times and days.
//! - [`suite`]: runs Home Assistant–style test suites.
//!
//! Invariant: recognition is pure. No I/O, no clock reads; the caller passes
//! everything in (text, context). It never guesses: no match, or a tie
//! between different readings, is [`Recognition::NotUnderstood`].

pub mod builtins;
pub mod compile;
pub mod defs;
pub mod diag;
pub mod grammar;
pub mod load;
pub mod matcher;
pub mod normalize;
pub mod suite;
pub mod template;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

pub use compile::IntentInfo;
pub use diag::{Diagnostic, Severity};
pub use load::{ASKING_KEY, ActionSpec, AskDef, Definitions, ListDef, Risk, SourceFile};
pub use matcher::Entity;

use compile::Graph;
use matcher::{Hit, Input};

/// A compiled set of intents, ready to match.
#[derive(Debug, Clone)]
pub struct IntentSet {
    defs: Definitions,
    graph: Graph,
}

/// How to choose among several matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The most specific match (fewest wildcards, then most literal text,
    /// then least text in wildcards, then fewest slots); a tie between
    /// different intents or different slot values is "not understood".
    /// What voicegate uses.
    #[default]
    Strict,
    /// The best match; ties go to the one defined first.
    BestFirst,
    /// The first complete match in definition order, whatever its score:
    /// what hassil's `recognize` does.
    FirstMatch,
    /// hassil's `recognize_best(best_slot_name="name")`, which Home
    /// Assistant's own test runner uses: matches with a (non-wildcard) `name`
    /// slot first, the longest name text among them, then fewest wildcards,
    /// most literal text, and the intent name alphabetically.
    HassilBest,
}

/// A recognised intent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// The intent's name.
    pub intent: String,
    /// Its effective risk.
    pub risk: Risk,
    /// Slot values, in the order they were found (captures excluded).
    pub slots: Vec<Slot>,
    /// Context after matching (the caller's plus what matched values carried).
    pub context: Map<String, Value>,
    /// Response key of the matched sentence group, if any.
    pub response: Option<String>,
    /// The template that matched.
    pub template: TemplateRef,
    /// How many wildcards the match used (fewer is more specific).
    pub wildcards: u32,
    /// How many literal characters of the template matched (more is more specific).
    pub literal_chars: u32,
    /// How it was reached: a template, or the fallback recogniser.
    pub by: By,
}

/// How a match was reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum By {
    /// A template matched the whole sentence.
    #[default]
    Template,
    /// No template matched; the fallback recogniser (`crate::nlu`) chose
    /// the intent by similarity to its training sentences.
    Fallback {
        /// Its similarity score (cosine, −1..1).
        score: f32,
        /// The best score of any other intent: how far ahead the reading
        /// is of the next one.
        runner_up: f32,
    },
}

impl Match {
    /// The value of a slot.
    pub fn slot(&self, name: &str) -> Option<&Value> {
        self.slots.iter().find(|s| s.name == name).map(|s| &s.value)
    }

    /// Slots as a JSON object.
    pub fn slot_map(&self) -> Map<String, Value> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect()
    }
}

/// One slot of a match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slot {
    /// Slot name.
    pub name: String,
    /// Its value.
    pub value: Value,
    /// The words that produced it ("" for fixed slots).
    pub text: String,
}

/// Where a template is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateRef {
    /// The template as written.
    pub text: String,
    /// Its file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// Why nothing was recognised.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotUnderstood {
    /// No template matches the whole input.
    NoMatch,
    /// Several readings match equally well; we do not guess.
    Ambiguous {
        /// The competing intents (may repeat one intent with different slots).
        candidates: Vec<String>,
    },
    /// The input would take too much work to match (a safety limit).
    TooComplex,
    /// No template matched, and the fallback recogniser found nothing near
    /// enough: something voicegate cannot do.
    OutOfScope {
        /// The nearest intent.
        nearest: String,
        /// Its score, below the threshold.
        score: f32,
    },
    /// The fallback recogniser's reading lacks slots every template of its
    /// intent fills, and the intent asks for none of them: nothing would
    /// say what the action gets, so nothing is read back or run.
    Incomplete {
        /// The intent read.
        intent: String,
        /// The slots it lacks.
        missing: Vec<String>,
    },
    /// The input is longer than anyone says in one breath (a safety limit
    /// on typed lines and other front ends; nothing is matched).
    TooLong {
        /// Its length, in characters.
        chars: usize,
        /// The limit.
        limit: usize,
    },
}

/// The result of recognition.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Recognition {
    /// One intent, understood.
    Match(Match),
    /// Not understood, and why.
    NotUnderstood(NotUnderstood),
}

/// Where matching got furthest, for `intents explain`.
#[derive(Debug, Clone, Serialize)]
pub struct NearMiss {
    /// The intent of the closest template.
    pub intent: String,
    /// The closest template.
    pub template: TemplateRef,
    /// How many words of the input it accounted for.
    pub words_matched: usize,
    /// The first word it could not match, if any.
    pub stopped_at: Option<String>,
}

/// Errors loading intents from disk.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory or a file could not be read.
    #[error("cannot read intent files in {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No intent files were found.
    #[error("no intent files (*.yaml) in {0}")]
    Empty(PathBuf),
}

/// Reads and checks intent files without compiling a set for use.
pub fn check_sources(files: &[SourceFile]) -> Vec<Diagnostic> {
    IntentSet::build(files.to_vec(), &HashMap::new()).1
}

impl IntentSet {
    /// Loads, checks and compiles intent files. Returns the set (with every
    /// definition that had no error) and all diagnostics.
    pub fn build(
        files: Vec<SourceFile>,
        extra_lists: &HashMap<String, ListDef>,
    ) -> (IntentSet, Vec<Diagnostic>) {
        let (mut defs, mut diags) = load::load(files);
        let (graph, more) = compile::compile(&defs, extra_lists);
        // The caller's lists (the purchase catalogue) replace the files'
        // own of the same name in the definitions too, so everything built
        // from them (the speech grammar, `list_values`) sees what the
        // matcher matches.
        for (name, def) in extra_lists {
            defs.lists.insert(
                name.clone(),
                load::NamedList {
                    def: def.clone(),
                    origin: load::Origin::default(),
                },
            );
        }
        diags.extend(more);
        diags.sort_by(|a, b| {
            (&a.file, a.line, a.col, &a.message).cmp(&(&b.file, b.line, b.col, &b.message))
        });
        diags.dedup();
        (IntentSet { defs, graph }, diags)
    }

    /// Compiles definitions made in code (e.g. the fallback's slot probes,
    /// `crate::nlu::slots`). Diagnostics are dropped: the definitions come
    /// from files that were already checked.
    pub fn from_definitions(defs: Definitions) -> IntentSet {
        let (graph, _) = compile::compile(&defs, &HashMap::new());
        IntentSet { defs, graph }
    }

    /// Reads every intent file under `dir` (or the one file `dir`) and builds the set.
    pub fn load_path(
        dir: &Path,
        extra_lists: &HashMap<String, ListDef>,
    ) -> Result<(IntentSet, Vec<Diagnostic>), LoadError> {
        let files = load::read_dir(dir).map_err(|source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if files.is_empty() {
            return Err(LoadError::Empty(dir.to_path_buf()));
        }
        Ok(IntentSet::build(files, extra_lists))
    }

    /// The definitions the set was built from.
    pub fn definitions(&self) -> &Definitions {
        &self.defs
    }

    /// The values a closed list produces (its `out`s, or the words as
    /// written when a value has none), in order, each once: what "I can
    /// order: …" names. Empty for an unknown list or one that is not a
    /// closed set of values.
    pub fn list_values(&self, name: &str) -> Vec<String> {
        let Some(ListDef::Values(values)) = self.defs.lists.get(name).map(|l| &l.def) else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for value in values {
            let text = match &value.out {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => value.spoken_text.clone(),
            };
            if !out.contains(&text) {
                out.push(text);
            }
        }
        out
    }

    /// Intent metadata, in definition order.
    pub fn intents(&self) -> &[IntentInfo] {
        &self.graph.intents
    }

    /// Metadata of one intent.
    pub fn intent(&self, name: &str) -> Option<&IntentInfo> {
        self.graph.intents.iter().find(|i| i.name == name)
    }

    /// Recognises `text` with the strict policy.
    pub fn recognize(&self, text: &str, context: &Map<String, Value>) -> Recognition {
        self.recognize_with(text, context, Policy::Strict)
    }

    /// [`Self::recognize`], except that a tie between `preferred` and
    /// other intents goes to `preferred` when its own best readings agree:
    /// how an answer to `preferred`'s follow-up question is read ("the ten
    /// minute timer", answering "which one should I cancel?", is also a
    /// whole StartTimer sentence).
    pub fn recognize_preferring(
        &self,
        text: &str,
        context: &Map<String, Value>,
        preferred: &str,
    ) -> Recognition {
        let got = self.recognize(text, context);
        match &got {
            Recognition::NotUnderstood(NotUnderstood::Ambiguous { candidates })
                if candidates.iter().any(|c| c == preferred) => {}
            _ => return got,
        }
        let input = self.input(text);
        let run = matcher::run(&self.graph, &input, context, false);
        let Some(best) = run.hits.iter().map(score).min() else {
            return got;
        };
        let mine: Vec<&Hit> = run
            .hits
            .iter()
            .filter(|h| {
                score(h) == best && self.graph.intents[self.intent_of(h) as usize].name == preferred
            })
            .collect();
        match mine.split_first() {
            Some((first, rest)) if rest.iter().all(|h| slot_values(h) == slot_values(first)) => {
                Recognition::Match(self.to_match(first))
            }
            _ => got,
        }
    }

    /// Every complete match, unsorted (for tools and tests).
    pub fn matches(&self, text: &str, context: &Map<String, Value>) -> Vec<Match> {
        let input = self.input(text);
        let run = matcher::run(&self.graph, &input, context, false);
        run.hits.iter().map(|h| self.to_match(h)).collect()
    }

    fn input(&self, text: &str) -> Input {
        Input::new(normalize::tokenize(text), &self.graph.skip_words)
    }

    /// Recognises `text` with the given policy.
    pub fn recognize_with(
        &self,
        text: &str,
        context: &Map<String, Value>,
        policy: Policy,
    ) -> Recognition {
        let input = self.input(text);
        if input.text.is_empty() {
            return Recognition::NotUnderstood(NotUnderstood::NoMatch);
        }
        let run = matcher::run(&self.graph, &input, context, false);
        if run.exhausted {
            return Recognition::NotUnderstood(NotUnderstood::TooComplex);
        }
        if policy == Policy::FirstMatch {
            return match run.hits.first() {
                Some(hit) => Recognition::Match(self.to_match(hit)),
                None => Recognition::NotUnderstood(NotUnderstood::NoMatch),
            };
        }
        if policy == Policy::HassilBest {
            return match self.hassil_best(&run.hits) {
                Some(hit) => Recognition::Match(self.to_match(hit)),
                None => Recognition::NotUnderstood(NotUnderstood::NoMatch),
            };
        }
        let Some(best) = run.hits.iter().map(score).min() else {
            return Recognition::NotUnderstood(NotUnderstood::NoMatch);
        };
        let top: Vec<&Hit> = run.hits.iter().filter(|h| score(h) == best).collect();
        let first = top[0];
        if policy == Policy::Strict {
            let first_intent = self.intent_of(first);
            let first_slots = slot_values(first);
            let mut rivals: Vec<String> = Vec::new();
            for hit in &top[1..] {
                let intent = self.intent_of(hit);
                if intent != first_intent || slot_values(hit) != first_slots {
                    let label = self.graph.intents[intent as usize].name.clone();
                    if !rivals.contains(&label) || intent == first_intent {
                        rivals.push(label);
                    }
                }
            }
            if !rivals.is_empty() {
                let mut candidates = vec![self.graph.intents[first_intent as usize].name.clone()];
                candidates.extend(rivals);
                candidates.sort();
                candidates.dedup();
                if candidates.len() == 1 {
                    candidates.push(candidates[0].clone());
                }
                return Recognition::NotUnderstood(NotUnderstood::Ambiguous { candidates });
            }
        }
        Recognition::Match(self.to_match(first))
    }

    /// The template that got furthest into `text`, for explaining a failure.
    pub fn near_miss(&self, text: &str, context: &Map<String, Value>) -> Option<NearMiss> {
        let input = self.input(text);
        let run = matcher::run(&self.graph, &input, context, true);
        let (sentence, furthest) = run
            .furthest
            .iter()
            .copied()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
        let s = &self.graph.sentences[sentence as usize];
        let intent = &self.graph.intents[self.graph.data[s.data as usize].intent as usize];
        // The word containing (or starting at) the furthest position.
        let word_index = input.ends.iter().position(|&e| e > furthest);
        let words_matched = word_index.unwrap_or(input.ends.len());
        Some(NearMiss {
            intent: intent.name.clone(),
            template: self.template_ref(sentence),
            words_matched,
            stopped_at: word_index.map(|i| input.raw[i].clone()),
        })
    }

    fn hassil_best<'h>(&self, hits: &'h [Hit]) -> Option<&'h Hit> {
        let name_len = |h: &Hit| {
            h.entities
                .iter()
                .rev()
                .find(|e| &*e.name == "name")
                .filter(|e| !e.wildcard && e.value.is_string())
                .map(|e| e.text.chars().count())
        };
        let with_name = hits.iter().filter_map(name_len).max();
        let pool = hits.iter().filter(|h| match with_name {
            Some(longest) => name_len(h) == Some(longest),
            None => true,
        });
        pool.min_by(|a, b| {
            let key = |h: &Hit| (h.wildcards, std::cmp::Reverse(h.literal));
            key(a).cmp(&key(b)).then_with(|| {
                self.graph.intents[self.intent_of(a) as usize]
                    .name
                    .cmp(&self.graph.intents[self.intent_of(b) as usize].name)
            })
        })
    }

    fn intent_of(&self, hit: &Hit) -> u32 {
        self.graph.data[self.graph.sentences[hit.sentence as usize].data as usize].intent
    }

    fn template_ref(&self, sentence: u32) -> TemplateRef {
        let s = &self.graph.sentences[sentence as usize];
        let file = &self.defs.files[s.origin.file];
        TemplateRef {
            text: s.text.clone(),
            file: file.path.clone(),
            line: s.origin.pos.line,
            col: s.origin.pos.col,
        }
    }

    fn to_match(&self, hit: &Hit) -> Match {
        let s = &self.graph.sentences[hit.sentence as usize];
        let data = &self.graph.data[s.data as usize];
        let intent = &self.graph.intents[data.intent as usize];
        // Later values of the same slot replace earlier ones, as in hassil.
        let mut slots: Vec<Slot> = Vec::new();
        for e in hit.entities.iter().filter(|e| !e.capture) {
            let slot = Slot {
                name: e.name.to_string(),
                value: e.value.clone(),
                text: e.text.clone(),
            };
            match slots.iter_mut().find(|s| s.name == slot.name) {
                Some(existing) => *existing = slot,
                None => slots.push(slot),
            }
        }
        Match {
            intent: intent.name.clone(),
            risk: intent.risk,
            slots,
            context: hit.context.clone(),
            response: data.response.clone(),
            template: self.template_ref(hit.sentence),
            wildcards: hit.wildcards,
            literal_chars: hit.literal,
            by: By::Template,
        }
    }
}

/// Lower is better: fewer wildcards, then more of the input matched by
/// literal text and closed-list values together, then more of it by the
/// values ("classic rock" is the genre, not the sort "classic" and the
/// genre "rock": of two readings of the same words, the longer value
/// wins), then less text swallowed by wildcards ("to the station tomorrow"
/// leaves "tomorrow" to a day slot), then fewer slots ("8 tonight" is one
/// time, not a time and a day).
#[allow(clippy::type_complexity)]
fn score(
    hit: &Hit,
) -> (
    u32,
    std::cmp::Reverse<u32>,
    std::cmp::Reverse<u32>,
    usize,
    usize,
) {
    let wildcard_chars = hit
        .entities
        .iter()
        .filter(|e| e.wildcard)
        .map(|e| e.text.len())
        .sum();
    let slots = hit
        .entities
        .iter()
        .filter(|e| !e.capture && !e.text.is_empty())
        .count();
    (
        hit.wildcards,
        std::cmp::Reverse(hit.literal + hit.listed),
        std::cmp::Reverse(hit.listed),
        wildcard_chars,
        slots,
    )
}

fn slot_values(hit: &Hit) -> Vec<(&str, &Value)> {
    let mut v: Vec<(&str, &Value)> = hit
        .entities
        .iter()
        .filter(|e| !e.capture)
        .map(|e| (&*e.name, &e.value))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}
