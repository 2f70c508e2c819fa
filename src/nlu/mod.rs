//! Natural-language understanding beyond the templates: the fallback
//! intent recogniser for sentences the intent files do not cover lives
//! here.
//!
//! Why it exists apart from [`crate::intent`]: the template engine is
//! exact and pure; this part works by similarity, with a neural model
//! loaded from disk. For now it holds the sentence embedder ([`embed`]);
//! the recogniser that uses it comes next.

pub mod embed;
