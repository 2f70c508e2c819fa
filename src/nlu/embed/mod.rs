//! Sentence embeddings on the device: all-MiniLM-L6-v2, a 6-layer BERT
//! trained by sentence-transformers so that sentences meaning the same thing
//! get nearby unit vectors (384 numbers each; compare with [`cosine`]).
//!
//! Why it exists: the fallback intent recogniser needs to tell that "start
//! a 10 minute countdown" is close to "set a timer for ten minutes" without
//! a template saying so, with no network.
//!
//! ```text
//! text ──tokenizer.rs──▶ ids ──bert.rs──▶ 6 layers ──mean, L2──▶ [f32; 384]
//! ```
//!
//! `tokenizer.rs` is BERT's uncased WordPiece read from the model's
//! `tokenizer.json`, `bert.rs` the encoder on candle, `unicode_tables.rs`
//! the Unicode categories the tokenizer needs (generated). The model files
//! come from `voicegate models install all-minilm-l6-v2`
//! ([`crate::stt::model`] pins and installs them); [`Embedder::locate`]
//! finds them, and a missing or damaged file is an [`EmbedError`] naming
//! that command. `scripts/nlu-reference.py` is the independent reference
//! the tests compare against (`tests/nlu_embed.rs`).

mod bert;
mod tokenizer;
mod unicode_tables;

pub use bert::{BertError, DIM};
pub use tokenizer::{DEFAULT_MAX_TOKENS, Tokenizer, TokenizerError};

use std::io;
use std::path::{Path, PathBuf};

use bert::Bert;

use crate::stt::model::{self, EMBEDDER, ModelError};

/// The weights file in an installed embedder's directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer file in an installed embedder's directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Why the embedder could not be loaded or run. Each message about the
/// model's files names the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Finding the installed model failed (not installed, damaged, no
    /// models directory).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A model file is not there.
    #[error("the sentence embedder's {path} is missing; run `voicegate models install {EMBEDDER}`")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A model file is there but unusable.
    #[error(
        "the sentence embedder's {path} is damaged: {reason}; run `voicegate models install {EMBEDDER} --force` to reinstall it"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The forward pass failed (a bug, not a model problem).
    #[error("embedding failed: {0}")]
    Forward(#[from] BertError),
}

/// all-MiniLM-L6-v2, loaded: [`embed`](Self::embed) turns sentences into
/// unit vectors.
pub struct Embedder {
    tokenizer: Tokenizer,
    bert: Bert,
}

impl Embedder {
    /// The installed model, from the models directory of this machine
    /// ([`model::default_models_dir`]), checked as installed (manifest,
    /// sizes) and loaded.
    pub fn locate() -> Result<Self, EmbedError> {
        Self::load(&model::locate_embedder()?)
    }

    /// Loads `dir/model.safetensors` and `dir/tokenizer.json` (the files
    /// `voicegate models install all-minilm-l6-v2` puts in its directory).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let corrupt = |path: &Path, reason: String| EmbedError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(&tokenizer_path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                EmbedError::Missing {
                    path: tokenizer_path.clone(),
                }
            } else {
                corrupt(&tokenizer_path, e.to_string())
            }
        })?;
        let tokenizer =
            Tokenizer::from_json(&text).map_err(|e| corrupt(&tokenizer_path, e.to_string()))?;

        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() {
            return Err(EmbedError::Missing { path: weights_path });
        }
        let tensors = candle_core::safetensors::load(&weights_path, &candle_core::Device::Cpu)
            .map_err(|e| corrupt(&weights_path, e.to_string()))?;
        let bert =
            Bert::from_tensors(tensors).map_err(|e| corrupt(&weights_path, e.to_string()))?;

        // The two files must belong together: every id the tokenizer can
        // give has an embedding row, every sequence a position.
        if tokenizer.vocab_size() > bert.vocab_size() {
            return Err(corrupt(
                &weights_path,
                format!(
                    "{} word embeddings for a vocabulary of {}",
                    bert.vocab_size(),
                    tokenizer.vocab_size()
                ),
            ));
        }
        if tokenizer.max_tokens() > bert.max_positions() {
            return Err(corrupt(
                &tokenizer_path,
                format!(
                    "it truncates to {} tokens, the model has {} positions",
                    tokenizer.max_tokens(),
                    bert.max_positions()
                ),
            ));
        }
        Ok(Embedder { tokenizer, bert })
    }

    /// The tokenizer (for tests and diagnostics).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// One unit vector per sentence, in order. Sentences longer than the
    /// model's 128 tokens are cut (their start counts).
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<[f32; DIM]>, EmbedError> {
        let ids: Vec<Vec<u32>> = sentences.iter().map(|s| self.tokenizer.encode(s)).collect();
        Ok(self.bert.embed_ids(&ids)?)
    }
}

/// Cosine similarity of two embeddings (their dot product: they are unit
/// vectors).
pub fn cosine(a: &[f32; DIM], b: &[f32; DIM]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
