//! `AudioError`: every way the audio path can fail, worded for the person at
//! the keyboard.
//!
//! Why a file of its own: sources, the resampler and the microphone all fail
//! in ways a user can act on (no microphone → use `--input`; a broken WAV →
//! which file and what is wrong with it), so the messages live in one place
//! and say what to do next. Nothing here panics; every failure of the outside
//! world becomes one of these variants.

use std::path::PathBuf;

/// The hint printed with every microphone problem: how to run without one.
pub const INPUT_HINT: &str = "to run without a microphone, use `--input FILE.wav` (any WAV file) \
     or `--input -` (raw 16-bit little-endian 16 kHz mono PCM on standard input)";

/// Everything that can go wrong while getting audio in.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// No input device at all (no sound card, no audio server, or the host
    /// reports no default input).
    #[error("no audio input device found ({detail}); {hint}", hint = INPUT_HINT)]
    NoInputDevice {
        /// What the audio host said.
        detail: String,
    },

    /// A device was asked for by name and is not there.
    #[error("audio input device {name:?} not found (available: {available}); {hint}", hint = INPUT_HINT)]
    DeviceNotFound {
        /// The name that was asked for.
        name: String,
        /// The names of the input devices that do exist, comma-separated
        /// (or "none").
        available: String,
    },

    /// The device exists but could not be opened or started.
    #[error("could not open audio input device {device:?}: {detail}; {hint}", hint = INPUT_HINT)]
    OpenDevice {
        /// The device's name.
        device: String,
        /// What the audio host said.
        detail: String,
    },

    /// The device only offers a sample format we do not convert.
    #[error(
        "audio input device {device:?} delivers {format} samples, which voicegate does not \
         convert (it accepts f32, f64, i8, i16, i32, u8, u16 and u32); {hint}",
        hint = INPUT_HINT
    )]
    UnsupportedSampleFormat {
        /// The device's name.
        device: String,
        /// The sample format it offered.
        format: String,
    },

    /// The microphone went away and every attempt to reopen it failed.
    #[error(
        "audio input device lost and not reopened after {attempts} attempts (last error: {detail})"
    )]
    DeviceLost {
        /// How many reopen attempts were made.
        attempts: u32,
        /// The last error.
        detail: String,
    },

    /// A file could not be opened or read at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file is not a WAV file we can read (bad header, missing chunks, an
    /// encoding such as ADPCM that is not plain PCM or float).
    #[error("{}: not a readable WAV file: {detail}", path.display())]
    WavFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The WAV file is valid but its sample format is not one we convert.
    #[error(
        "{}: unsupported WAV sample format: {detail} (supported: 8, 16, 24 and 32-bit integer \
         PCM and 32-bit float)",
        path.display()
    )]
    WavUnsupported {
        /// The file.
        path: PathBuf,
        /// What the file declares.
        detail: String,
    },

    /// The WAV file is readable but not 16 kHz mono 16-bit integer or
    /// 32-bit float, and the caller takes only files that need no
    /// conversion ([`super::WavAccept::Exact16kMono`]).
    #[error(
        "{}: expected 16 kHz mono, 16-bit integer or 32-bit float, got {detail}",
        path.display()
    )]
    WavNotExact {
        /// The file.
        path: PathBuf,
        /// What the file declares.
        detail: String,
    },

    /// The WAV file's data chunk ends before the length its header
    /// declares. Everything before the cut has been delivered.
    #[error(
        "{}: truncated: the header promises {expected_frames} sample frames but the data ends \
         after {read_frames} ({detail})",
        path.display()
    )]
    WavTruncated {
        /// The file.
        path: PathBuf,
        /// Sample frames (one sample per channel) actually read.
        read_frames: u64,
        /// Sample frames the header declares.
        expected_frames: u64,
        /// The low-level reason.
        detail: String,
    },

    /// Raw PCM input could not be read.
    #[error("reading raw PCM from {what}: {source}")]
    PcmRead {
        /// Where it came from ("standard input").
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Raw PCM input ended in the middle of a 16-bit sample.
    #[error(
        "raw PCM from {what} ended in the middle of a sample (an odd number of bytes): expected \
         16-bit little-endian 16 kHz mono"
    )]
    PcmOddLength {
        /// Where it came from ("standard input").
        what: String,
    },

    /// A sample rate of zero or otherwise unusable.
    #[error("invalid sample rate {rate} Hz for {what}")]
    InvalidSampleRate {
        /// The rate.
        rate: u32,
        /// Whose rate it is.
        what: String,
    },
}
