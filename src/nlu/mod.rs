//! Understanding beyond the templates: the fallback recogniser for
//! sentences no template matches.
//!
//! ```text
//! intent files ──examples──▶ training sentences ──Embedder──▶ Fallback
//! transcript (no template matched) ──Fallback::read──▶ Reading { intent, score }
//!                                  ──slots::find──▶ slots from the intent's own lists and rules
//! ```
//!
//! - [`cache`]: the training sentences' vectors on disk between starts.
//! - [`embed`]: all-MiniLM-L6-v2 on the device (a BERT encoder on candle,
//!   its own WordPiece tokenizer), the embedder the fallback uses.
//! - [`examples`]: training sentences from the intent files (template
//!   expansions, `tests:`, `examples:`).
//! - [`fallback`]: nearest-intent scoring over sentence embeddings.
//! - [`hashed`]: an embedder without a model (the baseline; tests).
//! - [`slots`]: slot values for a fallback reading, found by matching the
//!   intent's own slot-bearing template parts against spans of the input.
//! - [`understand`]: [`Understander`], the two trained on one intent set,
//!   and the thresholds that make a reading out of scope, unsure or sure.
//!
//! The templates stay the exact, explainable first path: this module is
//! asked only when they match nothing, and it only proposes. The gate
//! decides what a proposal may do (it never runs a high-stakes action
//! without the read-back and a "yes").

pub mod cache;
pub mod embed;
pub mod examples;
pub mod fallback;
pub mod hashed;
pub mod slots;
pub mod understand;

pub use examples::{Example, Source};
pub use fallback::{Fallback, Neighbour, Reading};
pub use understand::{FallbackModel, FallbackSettings, Proposal, Thresholds, Understander};

/// Turns sentences into unit vectors whose dot product is their similarity.
pub trait Embedder: Send + Sync {
    /// A short name for reports (`minilm`, `hashed`).
    fn name(&self) -> &str;
    /// One unit vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, NluError>;
}

/// Errors of the fallback recogniser.
#[derive(Debug, thiserror::Error)]
pub enum NluError {
    /// The embedding model failed (missing, corrupt, or a compute error).
    #[error("the sentence embedding model failed: {0}")]
    Model(String),
}

/// Loads the sentence embedding model the `minilm` fallback uses (from
/// the models directory; `voicegate models install` puts it there), with
/// the cache of its training vectors kept beside it.
pub fn load_embedder() -> Result<(std::sync::Arc<dyn Embedder>, cache::EmbeddingCache), NluError> {
    let hint = |e: String| {
        NluError::Model(format!(
            "{e} (or set [understanding] fallback = \"hashed\" or \"off\" in voicegate.toml)"
        ))
    };
    let dir = crate::stt::model::locate_embedder().map_err(|e| hint(e.to_string()))?;
    let model = embed::Embedder::load(&dir).map_err(|e| hint(e.to_string()))?;
    let cache = cache::EmbeddingCache::open(&dir.join("training-vectors.cache"));
    Ok((std::sync::Arc::new(model), cache))
}

/// What `model` needs loaded: the MiniLM embedder and its vector cache,
/// or nothing (the hashed embedder is fitted when it trains).
#[allow(clippy::type_complexity)]
pub fn load_embedder_for(
    model: FallbackModel,
) -> Result<(Option<std::sync::Arc<dyn Embedder>>, cache::EmbeddingCache), NluError> {
    match model {
        FallbackModel::Minilm => load_embedder().map(|(e, c)| (Some(e), c)),
        FallbackModel::Hashed | FallbackModel::Off => Ok((None, cache::EmbeddingCache::default())),
    }
}

impl Embedder for embed::Embedder {
    fn name(&self) -> &str {
        "minilm"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, NluError> {
        let vectors =
            embed::Embedder::embed(self, texts).map_err(|e| NluError::Model(e.to_string()))?;
        Ok(vectors.into_iter().map(|v| v.to_vec()).collect())
    }
}
