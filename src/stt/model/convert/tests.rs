//! The converter's tests: synthetic CTranslate2 models through the whole
//! conversion, ggml's quantiser byte for byte, and the checker.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::inspect::inspect_ggml;
use super::mel::{hz_to_mel, mel_filters, mel_to_hz};
use super::numbers::{bf16_to_f32, f16_to_f32, f32_to_f16, quantize_q8_0};
use super::vocab::{gpt2_byte_to_char, gpt2_char_to_byte, gpt2_token_bytes};
use super::write::{ConvertReport, convert, convert_in_chunks};
use super::{
    CHUNK_VALUES, ConvertError, GGML_FTYPE_Q8_0, GGML_MAGIC, GGML_TYPE_Q8_0, Progress, Q8_0_BLOCK,
    Q8_0_BLOCK_BYTES, Weights,
};

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
