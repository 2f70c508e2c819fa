//! The BERT encoder of all-MiniLM-L6-v2 on candle's CPU backend, and the
//! sentence-transformers head on top: token ids → one unit vector per
//! sentence.
//!
//! Why it exists: the fallback recogniser compares sentences by meaning,
//! on the device. The forward is BERT's, written out: word + position +
//! token-type embeddings → LayerNorm → 6 × (12-head self-attention, then a
//! GELU feed-forward, each added back and LayerNorm'ed) → the mean of the
//! real tokens' vectors → L2 normalisation. The tensor names are BERT's as
//! Hugging Face saves them; the sizes are read from the tensors themselves
//! and checked, so a different file is an error, not a wrong answer.
//!
//! A batch is padded to its longest sentence; the attention mask keeps the
//! padding out of every real token's attention and out of the mean, so a
//! sentence embeds the same alone or in a batch.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::LayerNorm;

/// The length of a sentence vector.
pub const DIM: usize = 384;
/// Attention heads (not recorded in the weights; all-MiniLM-L6-v2's).
const HEADS: usize = 12;
/// BERT's LayerNorm epsilon.
const LAYER_NORM_EPS: f64 = 1e-12;
/// Added to the attention scores of padding: softmax gives them 0.
const MASKED: f32 = -1e9;

/// What is wrong with a weights file, or a candle failure.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    /// A tensor is missing or has the wrong shape.
    #[error("{0}")]
    Weights(String),
    /// A sequence the model cannot take (empty, or longer than its
    /// position table).
    #[error("{0}")]
    Input(String),
    /// candle refused an operation (or could not read the file).
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
}

/// A dense layer with its weight stored transposed (`[in, out]`, contiguous),
/// so the forward is one plain matmul.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    /// `x`: `[n, in]` → `[n, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, BertError> {
        Ok(x.matmul(&self.weight_t)?.broadcast_add(&self.bias)?)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// The encoder's weights, ready to run.
pub(super) struct Bert {
    word: Tensor,
    position: Tensor,
    token_type0: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// The tensors of a safetensors file by name, taken out one by one with
/// their shape checked.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, BertError> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| BertError::Weights(format!("no tensor {name}")))?;
        if t.dims() != shape || t.dtype() != DType::F32 {
            return Err(BertError::Weights(format!(
                "{name} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.dims()
            )));
        }
        Ok(t)
    }

    fn dense(&mut self, prefix: &str, inp: usize, out: usize) -> Result<Dense, BertError> {
        let weight = self.take(&format!("{prefix}.weight"), &[out, inp])?;
        Ok(Dense {
            weight_t: weight.t()?.contiguous()?,
            bias: self.take(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn norm(&mut self, prefix: &str) -> Result<LayerNorm, BertError> {
        Ok(LayerNorm::new(
            self.take(&format!("{prefix}.weight"), &[DIM])?,
            self.take(&format!("{prefix}.bias"), &[DIM])?,
            LAYER_NORM_EPS,
        ))
    }
}

impl Bert {
    /// The encoder from BERT's tensors, named as Hugging Face's `BertModel`
    /// saves them (`embeddings.…`, `encoder.layer.N.…`).
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Result<Self, BertError> {
        let mut w = Weights(tensors);
        let vocab =
            w.0.get("embeddings.word_embeddings.weight")
                .map(|t| t.dims().first().copied().unwrap_or(0))
                .ok_or_else(|| BertError::Weights("no embeddings.word_embeddings.weight".into()))?;
        let positions =
            w.0.get("embeddings.position_embeddings.weight")
                .map(|t| t.dims().first().copied().unwrap_or(0))
                .unwrap_or(0);
        let word = w.take("embeddings.word_embeddings.weight", &[vocab, DIM])?;
        let position = w.take("embeddings.position_embeddings.weight", &[positions, DIM])?;
        let token_type0 = w
            .take("embeddings.token_type_embeddings.weight", &[2, DIM])?
            .get(0)?;
        let embedding_norm = w.norm("embeddings.LayerNorm")?;
        let mut layers = Vec::new();
        let intermediate_size = |w: &Weights, i: usize| {
            w.0.get(&format!("encoder.layer.{i}.intermediate.dense.weight"))
                .and_then(|t| t.dims().first().copied())
        };
        while let Some(ffn) = intermediate_size(&w, layers.len()) {
            let p = format!("encoder.layer.{}", layers.len());
            layers.push(Layer {
                query: w.dense(&format!("{p}.attention.self.query"), DIM, DIM)?,
                key: w.dense(&format!("{p}.attention.self.key"), DIM, DIM)?,
                value: w.dense(&format!("{p}.attention.self.value"), DIM, DIM)?,
                attention_out: w.dense(&format!("{p}.attention.output.dense"), DIM, DIM)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: w.dense(&format!("{p}.intermediate.dense"), DIM, ffn)?,
                output: w.dense(&format!("{p}.output.dense"), ffn, DIM)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        if layers.is_empty() {
            return Err(BertError::Weights("no encoder layers".into()));
        }
        Ok(Bert {
            word,
            position,
            token_type0,
            embedding_norm,
            layers,
        })
    }

    /// Rows of the word embedding table.
    pub fn vocab_size(&self) -> usize {
        self.word.dims()[0]
    }

    /// The longest sequence the position embeddings cover.
    pub fn max_positions(&self) -> usize {
        self.position.dims()[0]
    }

    /// One L2-normalised mean-pooled vector per id sequence. Every
    /// sequence must be non-empty, no longer than [`max_positions`]
    /// (Self::max_positions), with ids below the vocabulary size (the
    /// tokenizer's output always is; anything else is a candle error).
    pub fn embed_ids(&self, batch: &[Vec<u32>]) -> Result<Vec<[f32; DIM]>, BertError> {
        let Some(len) = batch.iter().map(Vec::len).max() else {
            return Ok(Vec::new());
        };
        if len == 0 || len > self.max_positions() {
            return Err(BertError::Input(format!(
                "a sequence of {len} tokens (the model takes 1 to {})",
                self.max_positions()
            )));
        }
        let n = batch.len();
        let dev = Device::Cpu;
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for seq in batch {
            ids.extend(seq.iter().copied().chain(std::iter::repeat(0)).take(len));
            mask.extend((0..len).map(|i| if i < seq.len() { 0.0 } else { MASKED }));
        }
        let ids = Tensor::from_vec(ids, n * len, &dev)?;
        // [n, 1, 1, len]: the same key mask for every head and query.
        let mask = Tensor::from_vec(mask, (n, 1, 1, len), &dev)?;

        // Embeddings: [n * len, DIM].
        let x = self
            .word
            .embedding(&ids)?
            .reshape((n, len, DIM))?
            .broadcast_add(&self.position.narrow(0, 0, len)?)?
            .broadcast_add(&self.token_type0)?;
        let mut x = self.embedding_norm.forward(&x)?.reshape((n * len, DIM))?;

        for layer in &self.layers {
            x = layer.forward(&x, &mask, n, len)?;
        }

        // Mean over the real tokens, then unit length.
        let hidden: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let mut out = Vec::with_capacity(n);
        for (b, seq) in batch.iter().enumerate() {
            let mut sum = [0f64; DIM];
            for t in 0..seq.len() {
                let row = &hidden[(b * len + t) * DIM..][..DIM];
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += f64::from(*v);
                }
            }
            let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            let mut v = [0f32; DIM];
            for (o, s) in v.iter_mut().zip(sum) {
                *o = (s / norm) as f32;
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl Layer {
    /// `x`: `[n * len, DIM]` → the same shape.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        n: usize,
        len: usize,
    ) -> Result<Tensor, BertError> {
        let head_dim = DIM / HEADS;
        // [n * len, DIM] → [n, HEADS, len, head_dim]
        let heads = |t: Tensor| -> Result<Tensor, BertError> {
            Ok(t.reshape((n, len, HEADS, head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((n * len, DIM))?;
        let x = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let h = gelu_erf(&self.intermediate.forward(&x)?)?;
        Ok(self.output_norm.forward(&(self.output.forward(&h)? + x)?)?)
    }
}

/// The exact GELU, x·Φ(x), that BERT was trained with. (candle 0.2.2's
/// `gelu` is the tanh approximation, off by up to ~1e-3.)
fn gelu_erf(x: &Tensor) -> Result<Tensor, BertError> {
    let mut v: Vec<f32> = x.flatten_all()?.to_vec1()?;
    for e in &mut v {
        let z = f64::from(*e);
        *e = (0.5 * z * erfc(-z / std::f64::consts::SQRT_2)) as f32;
    }
    Ok(Tensor::from_vec(v, x.shape(), x.device())?)
}

/// The complementary error function, to a relative error below 1.2e-7
/// everywhere (a Chebyshev fit, Numerical Recipes' `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // erf(0.5), erf(1), erf(2), erf(-1) to 9 places.
        for (x, erf) in [
            (0.5, 0.520_499_878),
            (1.0, 0.842_700_793),
            (2.0, 0.995_322_265),
            (-1.0, -0.842_700_793),
            (0.0, 0.0),
        ] {
            assert!((1.0 - erfc(x) - erf).abs() < 2e-7, "{x}");
        }
    }
}
