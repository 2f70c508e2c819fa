//! Writing the ggml file: streaming, chunked, hashed as it goes.
//!
//! Why it exists: a base model's weights do not fit in memory twice on a
//! small machine; [`convert`] reads each tensor in chunks, converts them
//! (f16, or q8_0 without splitting a block) and writes through a hasher
//! into a [`PartialFile`] that is renamed into place only when complete.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ct2::{Dtype, Index, Joined};
use super::layout::{Hparams, Kind, TensorSpec, check_sources, hparams_of, layout};
use super::mel::mel_filters;
use super::numbers::{bf16_to_f32, f16_to_f32, f32_to_f16, quantize_q8_0};
use super::vocab::read_vocabulary;
use super::{
    CHUNK_VALUES, ConvertError, GGML_MAGIC, GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_Q8_0, Progress,
    Q8_0_BLOCK, WRITE_BUFFER, Weights,
};

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A writer that hashes and counts what passes through.
pub(super) struct Hashing<W> {
    pub(super) inner: W,
    pub(super) hasher: Sha256,
    pub(super) bytes: u64,
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
pub(super) fn decode(src: &[u8], from: Dtype, values: &mut Vec<f32>) {
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
pub(super) fn convert_chunk(
    src: &[u8],
    from: Dtype,
    to: i32,
    values: &mut Vec<f32>,
    out: &mut Vec<u8>,
) {
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

pub(super) fn put_i32(w: &mut impl Write, v: i32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub(super) fn to_i32(v: u64, what: &str) -> io::Result<i32> {
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
pub(super) fn convert_in_chunks(
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
    let filters = mel_filters(crate::stt::SAMPLE_RATE as f64, 400, hparams.n_mels as usize);

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
    write_header(&mut w, &hparams, &filters, &tokens).map_err(write_err)?;

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
        write_tensor_header(&mut w, spec, ttype).map_err(write_err)?;

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

/// The ggml header: magic, hyperparameters, mel filters, tokens.
fn write_header(
    w: &mut impl Write,
    hparams: &Hparams,
    filters: &[f32],
    tokens: &[Vec<u8>],
) -> io::Result<()> {
    w.write_all(&GGML_MAGIC.to_le_bytes())?;
    for v in hparams.as_array() {
        put_i32(w, v)?;
    }
    put_i32(w, hparams.n_mels)?;
    put_i32(
        w,
        to_i32((filters.len() / hparams.n_mels as usize) as u64, "n_fft")?,
    )?;
    for f in filters {
        w.write_all(&f.to_le_bytes())?;
    }
    put_i32(w, to_i32(tokens.len() as u64, "token count")?)?;
    for t in tokens {
        w.write_all(&(t.len() as u32).to_le_bytes())?;
        w.write_all(t)?;
    }
    Ok(())
}

/// A tensor's header (rank, name length, type, dimensions innermost
/// first, name); its data follows.
fn write_tensor_header(w: &mut impl Write, spec: &TensorSpec, ttype: i32) -> io::Result<()> {
    put_i32(w, to_i32(spec.shape.len() as u64, "rank")?)?;
    put_i32(w, to_i32(spec.name.len() as u64, "name length")?)?;
    put_i32(w, ttype)?;
    for &d in spec.shape.iter().rev() {
        put_i32(w, to_i32(d, "dimension")?)?;
    }
    w.write_all(spec.name.as_bytes())
}

pub(super) fn row_bytes(index: &Index, src: &Joined, spec: &TensorSpec) -> u64 {
    let size = index
        .get(src, &spec.src)
        .map(|v| v.dtype.size())
        .unwrap_or(0);
    spec.src_shape.iter().skip(1).product::<u64>() * size
}
