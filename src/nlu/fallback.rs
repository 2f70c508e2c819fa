//! The fallback recogniser: for a sentence no template matches, the intent
//! whose training sentences ([`super::examples`]) it is nearest to, by
//! cosine similarity of sentence embeddings, with that similarity as the
//! score.
//!
//! It only proposes. What happens to a proposal (out of scope below the
//! threshold, "did you mean" below the sure score, a read-back for anything
//! high-stakes) is the gate's rule, not this module's.

use std::sync::Arc;

use serde::Serialize;

use super::cache::EmbeddingCache;
use super::examples::{Example, Source};
use super::{Embedder, NluError};

/// A nearest training sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// Its intent.
    pub intent: String,
    /// The training sentence.
    pub text: String,
    /// Where it came from.
    pub source: Source,
    /// Cosine similarity to the input.
    pub score: f32,
}

/// What the fallback proposes for one sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// The nearest intent.
    pub intent: String,
    /// Its score: the best similarity among its training sentences (−1..1).
    pub score: f32,
    /// The best score of any other intent (0 when there is none).
    pub runner_up: f32,
    /// The best score of an `out_of_scope:` sentence (`None` when the
    /// files have none). A reading nearer to one of those than to its own
    /// intent is out of scope, whatever its score.
    pub out_of_scope: Option<f32>,
    /// The nearest training sentences, best first (for `intents explain`).
    pub nearest: Vec<Neighbour>,
}

impl Reading {
    /// Whether an `out_of_scope:` sentence is at least as near as the
    /// reading's own intent: then the sentence is one of the requests
    /// voicegate cannot do, however high its score.
    pub fn nearer_out_of_scope(&self) -> bool {
        self.out_of_scope.is_some_and(|s| s >= self.score)
    }
}

/// A trained fallback recogniser.
pub struct Fallback {
    embedder: Arc<dyn Embedder>,
    examples: Vec<Example>,
    /// One unit vector per example, as its non-zero entries (the hashed
    /// embedder's vectors are mostly zeros; a dense one loses nothing).
    vectors: Vec<Vec<(u32, f32)>>,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("embedder", &self.embedder.name())
            .field("examples", &self.examples.len())
            .finish()
    }
}

/// How many neighbours a reading lists.
const NEAREST: usize = 5;

impl Fallback {
    /// Embeds every training sentence (through `cache` when given: only
    /// sentences it does not hold are embedded).
    pub fn train(
        examples: Vec<Example>,
        embedder: Arc<dyn Embedder>,
        cache: Option<&mut EmbeddingCache>,
    ) -> Result<Fallback, NluError> {
        let plain: Vec<String> = examples.iter().map(|e| plain(&e.text)).collect();
        let texts: Vec<&str> = plain.iter().map(String::as_str).collect();
        let mut own = EmbeddingCache::default();
        let cache = cache.unwrap_or(&mut own);
        let vectors = cache
            .embed(embedder.as_ref(), &texts)?
            .iter()
            .map(|v| sparse(v))
            .collect();
        Ok(Fallback {
            embedder,
            examples,
            vectors,
        })
    }

    /// The training sentences.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// The embedder's name (`minilm`, `hashed`).
    pub fn embedder_name(&self) -> &str {
        self.embedder.name()
    }

    /// The nearest intent to `text`; `None` with no training sentences.
    pub fn read(&self, text: &str) -> Result<Option<Reading>, NluError> {
        let query = self
            .embedder
            .embed(&[plain(text).as_str()])?
            .pop()
            .ok_or_else(|| NluError::Model("the embedder returned nothing".into()))?;
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (dot(&query, v), i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let negative = |i: usize| self.examples[i].source == Source::OutOfScope;
        let out_of_scope = scored.iter().find(|(_, i)| negative(*i)).map(|(s, _)| *s);
        let Some(&(best, first)) = scored.iter().find(|(_, i)| !negative(*i)) else {
            return Ok(None);
        };
        let intent = self.examples[first].intent.clone();
        let runner_up = scored
            .iter()
            .find(|(_, i)| !negative(*i) && self.examples[*i].intent != intent)
            .map_or(0.0, |(s, _)| *s);
        let nearest = scored
            .iter()
            .take(NEAREST)
            .map(|&(score, i)| Neighbour {
                intent: self.examples[i].intent.clone(),
                text: self.examples[i].text.clone(),
                source: self.examples[i].source,
                score,
            })
            .collect();
        Ok(Some(Reading {
            intent,
            score: if best.is_finite() { best } else { 0.0 },
            runner_up,
            out_of_scope,
            nearest,
        }))
    }
}

/// A sentence as the fallback compares it: its words (the template
/// matcher's tokens, as written) in lower case, one space apart, without
/// punctuation. Whisper writes "Create a new timer." where a typed line or
/// a training sentence says "create a new timer"; the embedder would see
/// the full stop as a word, and it moved such readings to the wrong intent.
fn plain(text: &str) -> String {
    crate::intent::normalize::tokenize(text)
        .iter()
        .map(|t| t.raw.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

fn sparse(v: &[f32]) -> Vec<(u32, f32)> {
    v.iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i as u32, *x))
        .collect()
}

fn dot(dense: &[f32], sparse: &[(u32, f32)]) -> f32 {
    sparse
        .iter()
        .map(|&(i, x)| dense.get(i as usize).copied().unwrap_or(0.0) * x)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlu::hashed::HashedEmbedder;

    fn example(intent: &str, text: &str) -> Example {
        Example {
            intent: intent.into(),
            text: text.into(),
            source: Source::Test,
        }
    }

    #[test]
    fn the_nearest_intent_wins_with_its_similarity_as_score() {
        let examples = vec![
            example("StartTimer", "set a timer for ten minutes"),
            example("StartTimer", "start a countdown"),
            example("PlayMusic", "play some jazz"),
            example("PlayMusic", "put on music by miles davis"),
        ];
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let embedder = Arc::new(HashedEmbedder::fit(&texts));
        let fallback = Fallback::train(examples, embedder, None).expect("train");
        let r = fallback
            .read("i need a timer")
            .expect("read")
            .expect("a reading");
        assert_eq!(r.intent, "StartTimer");
        assert!(r.score > r.runner_up, "{r:?}");
        assert_eq!(r.nearest.len(), 4);
        let r = fallback
            .read("play music by queen")
            .expect("read")
            .expect("a reading");
        assert_eq!(r.intent, "PlayMusic", "{r:?}");
    }

    #[test]
    fn an_out_of_scope_sentence_nearer_than_the_intent_marks_the_reading() {
        let mut examples = vec![
            example("StartTimer", "set a timer for ten minutes"),
            example("PlayMusic", "play some jazz"),
        ];
        examples.push(Example {
            intent: crate::nlu::examples::OUT_OF_SCOPE.into(),
            text: "add this song to my playlist".into(),
            source: Source::OutOfScope,
        });
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let embedder = Arc::new(HashedEmbedder::fit(&texts));
        let fallback = Fallback::train(examples, embedder, None).expect("train");
        let r = fallback
            .read("add this jazz song to my playlist")
            .unwrap()
            .unwrap();
        // The intent is still the nearest real one; the out-of-scope
        // sentence is nearer.
        assert_eq!(r.intent, "PlayMusic", "{r:?}");
        assert!(r.nearer_out_of_scope(), "{r:?}");
        let r = fallback.read("play some jazz please").unwrap().unwrap();
        assert_eq!(r.intent, "PlayMusic");
        assert!(!r.nearer_out_of_scope(), "{r:?}");
    }

    #[test]
    fn a_transcript_is_compared_without_its_case_and_punctuation() {
        assert_eq!(plain("Create a new timer."), "create a new timer");
        assert_eq!(plain("What's the time, please?"), "what's the time please");
        let examples = vec![
            example("StartTimer", "create a new timer"),
            example("CancelTimer", "cancel the timer"),
        ];
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let embedder = Arc::new(HashedEmbedder::fit(&texts));
        let fallback = Fallback::train(examples, embedder, None).expect("train");
        let typed = fallback.read("create a new timer").expect("read");
        let heard = fallback.read("Create a new timer.").expect("read");
        assert_eq!(typed, heard);
    }
}
