//! The header's numbers and the tensor mapping, CTranslate2 → ggml.
//!
//! Why it exists: this is the conversion's one decision table (see
//! [`super`] for it written out): [`Hparams`] from the shapes and settings,
//! and `layout`, which names every ggml tensor, its shape, type and the
//! rows of which CTranslate2 variable it is made of.

use std::collections::HashSet;

use super::ct2::{Index, Joined, Variable};
use super::{ConvertError, GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_Q8_0, Weights};

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
    pub(super) fn as_array(&self) -> [i32; 11] {
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
pub(super) enum Kind {
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
    pub(super) fn expected_type(self, ftype: i32) -> Option<i32> {
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
pub(super) struct TensorSpec {
    /// ggml name (PyTorch's state-dict name).
    pub(super) name: String,
    /// Shape as written, outermost first (the file stores it reversed).
    pub(super) shape: Vec<u64>,
    pub(super) kind: Kind,
    /// CTranslate2 variable.
    pub(super) src: String,
    /// That variable's full shape.
    pub(super) src_shape: Vec<u64>,
    /// The rows (first dimension) of `src` taken.
    pub(super) rows: (u64, u64),
}

/// Collects [`TensorSpec`]s; the methods are the building blocks of
/// [`layout`].
pub(super) struct Layout {
    pub(super) specs: Vec<TensorSpec>,
    pub(super) d: u64,
}

impl Layout {
    pub(super) fn push(
        &mut self,
        name: String,
        shape: &[u64],
        kind: Kind,
        src: String,
        src_shape: &[u64],
    ) {
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
    pub(super) fn linear(
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
    pub(super) fn norm(&mut self, dst: &str, src: &str) {
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
    pub(super) fn self_attention(&mut self, dst: &str, src: &str) {
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
    pub(super) fn cross_attention(&mut self, dst: &str, src: &str) {
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
    pub(super) fn mlp(&mut self, dst: &str, src: &str) {
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
pub(super) fn layout(h: &Hparams) -> Vec<TensorSpec> {
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

pub(super) fn count_layers(index: &Index, side: &str) -> i32 {
    let mut n = 0;
    while index
        .variables
        .contains_key(&format!("{side}/layer_{n}/self_attention/linear_0/weight"))
    {
        n += 1;
    }
    n
}

pub(super) fn dim(
    src: &Joined,
    v: &Variable,
    name: &str,
    axis: usize,
) -> Result<i32, ConvertError> {
    let value = v.shape.get(axis).copied().ok_or_else(|| {
        src.invalid(format!(
            "not a whisper model: '{name}' has shape {:?}",
            v.shape
        ))
    })?;
    i32::try_from(value).map_err(|_| src.invalid(format!("'{name}' is too large")))
}

pub(super) fn hparams_of(
    src: &Joined,
    index: &Index,
    weights: Weights,
) -> Result<Hparams, ConvertError> {
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
pub(super) fn check_sources(
    src: &Joined,
    index: &Index,
    specs: &[TensorSpec],
) -> Result<(), ConvertError> {
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
