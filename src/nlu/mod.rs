//! Understanding beyond the templates: the fallback recogniser for
//! sentences no template matches.
//!
//! ```text
//! intent files ──examples──▶ training sentences ──Embedder──▶ Fallback
//! transcript (no template matched) ──Fallback::read──▶ Reading { intent, score }
//!                                  ──slots::find──▶ slots from the intent's own lists and rules
//! ```
//!
//! - [`examples`]: training sentences from the intent files (template
//!   expansions, `tests:`, `examples:`).
//! - [`fallback`]: nearest-intent scoring over sentence embeddings.
//! - [`hashed`]: an embedder without a model (the baseline; tests).
//! - [`slots`]: slot values for a fallback reading, found by matching the
//!   intent's own slot-bearing template parts against spans of the input.
//!
//! The templates stay the exact, explainable first path: this module is
//! asked only when they match nothing, and it only proposes. The gate
//! decides what a proposal may do (it never runs a high-stakes action
//! without the read-back and a "yes").

pub mod examples;
pub mod fallback;
pub mod hashed;
pub mod slots;

pub use examples::{Example, Source};
pub use fallback::{Fallback, Neighbour, Reading};

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
