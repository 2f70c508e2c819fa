//! Reading a ggml file back: [`inspect_ggml`].
//!
//! Why it exists: `models verify` and every command that loads a model
//! check the file's header and every tensor's header (names, types,
//! sizes) first, which catches truncated, foreign and mistyped files in
//! milliseconds, before whisper.cpp (which aborts on them) sees them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::layout::{Hparams, Kind, layout};
use super::{ConvertError, GGML_MAGIC};

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
pub(super) fn ggml_type_name(ttype: i32) -> &'static str {
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
pub(super) fn ggml_type_block(ttype: i32) -> Option<(u64, u64)> {
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
pub(super) struct GgmlReader<'a> {
    pub(super) r: BufReader<File>,
    pub(super) pos: u64,
    pub(super) len: u64,
    pub(super) path: &'a Path,
}

impl GgmlReader<'_> {
    pub(super) fn bad(&self, reason: String) -> ConvertError {
        ConvertError::Ggml {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    pub(super) fn need(&self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self.pos.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(self.bad(format!(
                "truncated: {what} at byte {} needs {n} byte(s), the file has {}",
                self.pos, self.len
            )));
        }
        Ok(())
    }

    pub(super) fn io(&self, source: io::Error) -> ConvertError {
        ConvertError::Read {
            path: self.path.to_path_buf(),
            source,
        }
    }

    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        self.need(n, what)?;
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(buf)
    }

    pub(super) fn i32(&mut self, what: &str) -> Result<i32, ConvertError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
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

    let (h, n_tokens) = read_header(&mut g)?;
    let mut info = GgmlInfo {
        hparams: h,
        tokens: n_tokens as u32,
        tensors: None,
        bytes: len,
    };
    if !deep {
        return Ok(info);
    }

    info.tensors = Some(check_tensors(&mut g, &h)?);
    Ok(info)
}

/// The header of a ggml file: magic, hyperparameters, mel filters and
/// tokens (skipped, their sizes checked). Returns the hyperparameters and
/// the token count.
fn read_header(g: &mut GgmlReader<'_>) -> Result<(Hparams, i32), ConvertError> {
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
    Ok((h, n_tokens))
}

/// Every tensor header after [`read_header`]'s, against the layout the
/// hyperparameters call for: each expected tensor once, nothing else.
/// Returns how many there are.
fn check_tensors(g: &mut GgmlReader<'_>, h: &Hparams) -> Result<usize, ConvertError> {
    let mut expected: HashMap<String, (Vec<u64>, Kind)> = layout(h)
        .into_iter()
        .map(|s| (s.name, (s.shape, s.kind)))
        .collect();
    let mut seen = 0usize;
    while g.pos < g.len {
        check_tensor(g, h, &mut expected)?;
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
    Ok(seen)
}

/// One tensor's header and the size of its data (skipped), checked
/// against (and taken out of) `expected`.
fn check_tensor(
    g: &mut GgmlReader<'_>,
    h: &Hparams,
    expected: &mut HashMap<String, (Vec<u64>, Kind)>,
) -> Result<(), ConvertError> {
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
    let name = String::from_utf8_lossy(&g.bytes(name_len as u64, "a tensor name")?).into_owned();
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
    Ok(())
}
