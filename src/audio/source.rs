//! Where audio comes from: the [`AudioSource`] trait and its file and
//! standard-input implementations (the microphone is in `mic.rs`).
//!
//! Why a trait: the daemon's loop (read a frame → wake word / endpointer →
//! whisper) must not care whether samples come from a microphone, a WAV file
//! given with `--input FILE.wav`, or raw PCM piped in with `--input -`. Every
//! source delivers the same thing: 16 kHz mono `f32` samples in [-1, 1].
//! Sources block until they have something; `Ok(0)` means the end.
//!
//! - [`WavSource`]: any WAV file hound reads (8/16/24/32-bit integer or
//!   32-bit float, any channel count, any rate), downmixed by averaging and
//!   resampled to 16 kHz. With `realtime`, reads are paced to 1× speed like
//!   a microphone. Broken files are errors naming the file and the problem;
//!   a truncated data chunk delivers what is there, then reports it.
//! - [`PcmStdinSource`]: raw signed 16-bit little-endian 16 kHz mono from
//!   any [`Read`] (standard input by default).
//! - [`read_wav_mono_16k`]: a whole WAV file at once, through [`WavSource`]
//!   (training, benchmarks, `transcribe`); [`WavAccept::Exact16kMono`]
//!   refuses files that would need converting.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::resample::Resampler;
use super::{AudioError, SAMPLE_RATE};

/// A stream of 16 kHz mono audio.
pub trait AudioSource: Send {
    /// Fills the start of `out` with the next samples (16 kHz mono, in
    /// [-1, 1]) and returns how many. Blocks until at least one sample is
    /// available; `Ok(0)` means the stream has ended (or `out` is empty).
    /// After an `Err`, a source may have more to give or may return `Ok(0)`;
    /// each implementation documents which.
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError>;

    /// Samples lost because the reader fell behind (microphone ring-buffer
    /// overruns) since the source was opened. Files never lose any.
    fn overruns(&self) -> u64 {
        0
    }

    /// How much captured audio waits to be read, in 16 kHz samples: how
    /// far the reader is behind a live source. Zero for sources that are
    /// read on demand (files, pipes).
    fn backlog(&self) -> u64 {
        0
    }

    /// Whether the audio comes at the speed it is spoken (a microphone, or
    /// file input paced to real time). Audio read ahead of a source that
    /// is not live is never behind anyone: a file waits to be read.
    fn is_live(&self) -> bool {
        false
    }
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        (**self).read(out)
    }

    fn overruns(&self) -> u64 {
        (**self).overruns()
    }

    fn backlog(&self) -> u64 {
        (**self).backlog()
    }

    fn is_live(&self) -> bool {
        (**self).is_live()
    }
}

/// Reads until `out` is full or the source ends; returns how many samples
/// were written (less than `out.len()` only at the end). This is how the
/// caller's loop gets fixed-size frames for the engines.
pub fn read_full<S: AudioSource + ?Sized>(
    source: &mut S,
    out: &mut [f32],
) -> Result<usize, AudioError> {
    let mut filled = 0;
    while filled < out.len() {
        let n = source.read(&mut out[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Paces delivery to real time: after `n` more samples have been handed
/// out, sleeps until the moment a microphone would have finished capturing
/// them.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    start: Option<Instant>,
    delivered: u64,
}

impl Pacer {
    pub(crate) fn pace(&mut self, n: usize) {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.delivered += n as u64;
        let due = start + Duration::from_secs_f64(self.delivered as f64 / f64::from(SAMPLE_RATE));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// Resampled samples waiting to be read, with a read position (so reading
/// does not shift the buffer each time).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    samples: Vec<f32>,
    pos: usize,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.samples.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len().saturating_sub(self.pos)
    }

    /// The buffer to append new samples to (compacted first when drained).
    pub(crate) fn buffer(&mut self) -> &mut Vec<f32> {
        if self.is_empty() {
            self.samples.clear();
            self.pos = 0;
        }
        &mut self.samples
    }

    pub(crate) fn take_into(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.samples.len() - self.pos);
        out[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        self.pos += n;
        n
    }
}

/// Sample frames read from a file per refill (at the file's rate).
const WAV_CHUNK_FRAMES: usize = 2048;

/// A WAV file as a 16 kHz mono source.
///
/// Errors: opening reports unreadable files and bad headers
/// ([`AudioError::Io`], [`AudioError::WavFormat`],
/// [`AudioError::WavUnsupported`]). While reading, a data chunk that ends
/// early delivers every sample before the cut, then returns
/// [`AudioError::WavTruncated`] once; after any error the source returns
/// `Ok(0)`.
pub struct WavSource {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    format: hound::SampleFormat,
    bits: u16,
    channels: usize,
    expected_frames: u64,
    frames_read: u64,
    resampler: Resampler,
    mono: Vec<f32>,
    pending: Pending,
    /// An error to report once everything before it has been read.
    deferred: Option<AudioError>,
    finished: bool,
    pacer: Option<Pacer>,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("sample_rate", &self.resampler.input_rate())
            .field("frames_read", &self.frames_read)
            .finish_non_exhaustive()
    }
}

impl WavSource {
    /// Opens `path`. With `realtime`, reads are paced to 1× speed (the
    /// `--realtime` flag: file input that behaves like a microphone).
    pub fn open(path: impl AsRef<Path>, realtime: bool) -> Result<Self, AudioError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| AudioError::Io {
            path: path.clone(),
            source,
        })?;
        let reader =
            hound::WavReader::new(BufReader::new(file)).map_err(|e| header_error(&path, e))?;
        let spec = reader.spec();
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
            (format, bits) => {
                return Err(AudioError::WavUnsupported {
                    path,
                    detail: format!("{bits}-bit {}", format_name(format)),
                });
            }
        }
        let resampler =
            Resampler::new(spec.sample_rate, SAMPLE_RATE).map_err(|_| AudioError::WavFormat {
                path: path.clone(),
                detail: format!(
                    "the header gives an unusable sample rate of {} Hz",
                    spec.sample_rate
                ),
            })?;
        let channels = usize::from(spec.channels);
        Ok(WavSource {
            expected_frames: u64::from(reader.duration()),
            path,
            reader,
            format: spec.sample_format,
            bits: spec.bits_per_sample,
            channels,
            frames_read: 0,
            resampler,
            mono: Vec::with_capacity(WAV_CHUNK_FRAMES),
            pending: Pending::default(),
            deferred: None,
            finished: false,
            pacer: realtime.then(Pacer::default),
        })
    }

    /// The file's own sample rate (before resampling).
    pub fn file_sample_rate(&self) -> u32 {
        self.resampler.input_rate()
    }

    /// The file's channel count (before downmixing).
    pub fn file_channels(&self) -> u16 {
        self.channels as u16
    }

    /// The file's length in sample frames at its own rate, as its header
    /// declares.
    pub fn file_frames(&self) -> u64 {
        self.expected_frames
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to [`WAV_CHUNK_FRAMES`] frames, downmixes them into
    /// `self.mono` and resamples them into `self.pending`. Sets `finished`
    /// (and maybe `deferred`) at the end.
    fn refill(&mut self) {
        self.mono.clear();
        let mut error = None;
        let scale = match self.format {
            hound::SampleFormat::Float => 1.0,
            hound::SampleFormat::Int => 1.0 / (1u64 << (self.bits - 1)) as f32,
        };
        'frames: while self.mono.len() < WAV_CHUNK_FRAMES && self.frames_read < self.expected_frames
        {
            let mut sum = 0.0f32;
            for _ in 0..self.channels {
                let sample = match self.format {
                    hound::SampleFormat::Float => self.reader.samples::<f32>().next(),
                    hound::SampleFormat::Int => self
                        .reader
                        .samples::<i32>()
                        .next()
                        .map(|r| r.map(|v| v as f32)),
                };
                match sample {
                    Some(Ok(v)) => sum += v,
                    Some(Err(e)) => {
                        error = Some(e);
                        break 'frames;
                    }
                    // Cannot happen while frames_read < expected_frames;
                    // treated as a cut all the same.
                    None => {
                        error = Some(hound::Error::IoError(std::io::Error::from(
                            ErrorKind::UnexpectedEof,
                        )));
                        break 'frames;
                    }
                }
            }
            let value = sum * scale / self.channels as f32;
            // NaN or infinite floats would poison every later filter output.
            self.mono.push(if value.is_finite() { value } else { 0.0 });
            self.frames_read += 1;
        }
        let out = self.pending.buffer();
        self.resampler.process(&self.mono, out);
        if let Some(e) = error {
            self.resampler.flush(out);
            self.finished = true;
            self.deferred = Some(self.read_error(e));
        } else if self.frames_read >= self.expected_frames {
            self.resampler.flush(out);
            self.finished = true;
        }
    }

    fn read_error(&self, e: hound::Error) -> AudioError {
        match e {
            hound::Error::IoError(io) if ends_early(&io) => AudioError::WavTruncated {
                path: self.path.clone(),
                read_frames: self.frames_read,
                expected_frames: self.expected_frames,
                detail: "unexpected end of file".to_string(),
            },
            hound::Error::IoError(source) => AudioError::Io {
                path: self.path.clone(),
                source,
            },
            other => AudioError::WavFormat {
                path: self.path.clone(),
                detail: format!("after {} sample frames: {other}", self.frames_read),
            },
        }
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.take_into(out);
                if let Some(pacer) = &mut self.pacer {
                    pacer.pace(n);
                }
                return Ok(n);
            }
            if let Some(e) = self.deferred.take() {
                return Err(e);
            }
            if self.finished {
                return Ok(0);
            }
            self.refill();
        }
    }

    fn is_live(&self) -> bool {
        self.pacer.is_some()
    }
}

/// What [`read_wav_mono_16k`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavAccept {
    /// Any WAV file [`WavSource`] reads, downmixed and resampled to 16 kHz
    /// mono (training recordings, `wakeword test`, `transcribe`).
    Any,
    /// Only files that need no conversion: 16 kHz, mono, 16-bit integer or
    /// 32-bit float; anything else is [`AudioError::WavNotExact`]. The
    /// speech benchmark (`eval`) uses this: its clips are scored as they
    /// are, never through the resampler.
    Exact16kMono,
}

/// A whole WAV file as 16 kHz mono `f32` samples: what a [`WavSource`]
/// delivers, read to the end (a truncated file is an error, not a short
/// read). The one way every caller reads a whole WAV file.
pub fn read_wav_mono_16k(
    path: impl AsRef<Path>,
    accept: WavAccept,
) -> Result<Vec<f32>, AudioError> {
    let mut source = WavSource::open(path, false)?;
    if accept == WavAccept::Exact16kMono {
        let exact = matches!(
            (source.format, source.bits),
            (hound::SampleFormat::Int, 16) | (hound::SampleFormat::Float, 32)
        );
        if !exact || source.file_sample_rate() != SAMPLE_RATE || source.channels != 1 {
            return Err(AudioError::WavNotExact {
                path: source.path.clone(),
                detail: format!(
                    "{} Hz, {} channel(s), {}-bit {}",
                    source.file_sample_rate(),
                    source.channels,
                    source.bits,
                    format_name(source.format)
                ),
            });
        }
    }
    let mut out = Vec::new();
    let mut buf = vec![0f32; 4096];
    loop {
        let n = read_full(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

fn format_name(format: hound::SampleFormat) -> &'static str {
    match format {
        hound::SampleFormat::Float => "float",
        hound::SampleFormat::Int => "integer",
    }
}

/// Whether a read error means the file simply ended: hound reports a
/// short read as its own error (kind `Other`, no OS error code), the
/// standard library as `UnexpectedEof`; real device errors carry an OS code.
fn ends_early(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::UnexpectedEof || e.raw_os_error().is_none()
}

/// Turns hound's header errors into messages that say what is wrong.
fn header_error(path: &Path, e: hound::Error) -> AudioError {
    let path = path.to_path_buf();
    match e {
        hound::Error::IoError(io) if ends_early(&io) => AudioError::WavFormat {
            path,
            detail: "the file ends inside the header (empty, cut short, or not a WAV file)"
                .to_string(),
        },
        hound::Error::IoError(io) if io.kind() == ErrorKind::IsADirectory => {
            AudioError::Io { path, source: io }
        }
        hound::Error::IoError(io) => AudioError::WavFormat {
            path,
            detail: format!("cannot read the header: {io}"),
        },
        hound::Error::FormatError(what) => AudioError::WavFormat {
            path,
            detail: what.to_string(),
        },
        hound::Error::Unsupported => AudioError::WavUnsupported {
            path,
            detail: "a compressed or unknown encoding (not integer PCM or IEEE float)".to_string(),
        },
        other => AudioError::WavFormat {
            path,
            detail: other.to_string(),
        },
    }
}

/// Bytes read from the underlying reader per call.
const PCM_CHUNK_BYTES: usize = 4096;

/// Raw signed 16-bit little-endian, 16 kHz mono PCM from any reader
/// (`--input -` reads standard input).
///
/// Ends at the reader's end of file. If the input stops in the middle of a
/// sample (an odd number of bytes), everything before is delivered, then
/// [`AudioError::PcmOddLength`] once, then `Ok(0)`. A read error is
/// returned as [`AudioError::PcmRead`]; the next call tries again.
pub struct PcmStdinSource<R = std::io::Stdin> {
    reader: R,
    what: String,
    bytes: Vec<u8>,
    /// The first byte of a sample whose second byte has not arrived yet.
    carry: Option<u8>,
    finished: bool,
    pacer: Option<Pacer>,
}

impl<R> std::fmt::Debug for PcmStdinSource<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmStdinSource")
            .field("what", &self.what)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl PcmStdinSource<std::io::Stdin> {
    /// Raw PCM from this process's standard input.
    pub fn stdin() -> Self {
        let mut source = PcmStdinSource::new(std::io::stdin());
        source.what = "standard input".to_string();
        source
    }
}

impl<R: Read + Send> PcmStdinSource<R> {
    /// Raw PCM from `reader`.
    pub fn new(reader: R) -> Self {
        PcmStdinSource {
            reader,
            what: "the input stream".to_string(),
            bytes: vec![0; PCM_CHUNK_BYTES],
            carry: None,
            finished: false,
            pacer: None,
        }
    }

    /// Paces reads to 1× speed (for recorded PCM that should behave like a
    /// microphone).
    pub fn realtime(mut self, realtime: bool) -> Self {
        self.pacer = realtime.then(Pacer::default);
        self
    }
}

impl<R: Read + Send> AudioSource for PcmStdinSource<R> {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        if out.is_empty() || self.finished {
            return Ok(0);
        }
        loop {
            let want = (out.len() * 2).min(self.bytes.len());
            let offset = usize::from(self.carry.is_some());
            if let Some(b) = self.carry {
                self.bytes[0] = b;
            }
            let want = want.max(offset + 1);
            let got = match self.reader.read(&mut self.bytes[offset..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(AudioError::PcmRead {
                        what: self.what.clone(),
                        source,
                    });
                }
            };
            if got == 0 {
                self.finished = true;
                return if self.carry.take().is_some() {
                    Err(AudioError::PcmOddLength {
                        what: self.what.clone(),
                    })
                } else {
                    Ok(0)
                };
            }
            let total = offset + got;
            let samples = total / 2;
            self.carry = (total % 2 == 1).then(|| self.bytes[total - 1]);
            if samples == 0 {
                continue;
            }
            for (o, pair) in out
                .iter_mut()
                .zip(self.bytes[..samples * 2].chunks_exact(2))
            {
                *o = f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0;
            }
            if let Some(pacer) = &mut self.pacer {
                pacer.pace(samples);
            }
            return Ok(samples);
        }
    }

    /// A pipe usually comes from a recorder (`arecord ... | voicegate run
    /// --input -`), which delivers at the speed of speech.
    fn is_live(&self) -> bool {
        true
    }
}

/// Where audio comes from: what `--input` (and `--device`) name, parsed
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioInput {
    /// The microphone: this device, or the default input.
    Microphone {
        /// The device's name (`--device`).
        device: Option<String>,
    },
    /// Raw 16 kHz mono 16-bit PCM on standard input (`--input -`).
    RawStdin,
    /// A WAV file (`--input FILE`).
    Wav(std::path::PathBuf),
}

impl AudioInput {
    /// Reads the flags: no `--input` is the microphone, `-` standard
    /// input, anything else a WAV file.
    pub fn from_flags(input: Option<&str>, device: Option<&str>) -> AudioInput {
        match input {
            None => AudioInput::Microphone {
                device: device.map(str::to_string),
            },
            Some("-") => AudioInput::RawStdin,
            Some(path) => AudioInput::Wav(path.into()),
        }
    }
}

/// Opens `input`. `realtime` paces file and stdin input to 1× speed.
pub fn open_input(
    input: &AudioInput,
    realtime: bool,
    mic: super::MicConfig,
) -> Result<Box<dyn AudioSource>, AudioError> {
    Ok(match input {
        AudioInput::Microphone { device } => {
            Box::new(super::MicSource::open(device.as_deref(), mic)?)
        }
        AudioInput::RawStdin => Box::new(PcmStdinSource::stdin().realtime(realtime)),
        AudioInput::Wav(path) => Box::new(WavSource::open(path, realtime)?),
    })
}
