//! The audio path's front half: getting 16 kHz mono samples in, and finding
//! where a spoken command starts and ends.
//!
//! ```text
//! MicSource (cpal) ─┐
//! WavSource (file) ─┼─▶ AudioSource::read ─▶ 16 kHz mono f32 ─▶ frames ─▶ Endpointer ─▶ Utterance
//! PcmStdinSource  ──┘        (resampled)                       (30 ms)
//! ```
//!
//! The pieces:
//! - [`source`]: the [`AudioSource`] trait (blocking `read` of 16 kHz mono
//!   `f32`; `Ok(0)` is the end), [`WavSource`] (`--input FILE.wav`, any rate,
//!   channel count and sample format hound reads; `--realtime` paces it) and
//!   [`PcmStdinSource`] (`--input -`: raw s16le 16 kHz mono), plus
//!   [`open_input`] which picks one from the `--input` value, and
//!   [`read_wav_mono_16k`], a whole file at once.
//! - [`mic`]: [`MicSource`], the microphone. Its cpal callback only converts
//!   and pushes into a preallocated lock-free ring buffer (overruns are
//!   counted in an atomic); reading resamples; a lost (or silently
//!   stalled) device is reopened with backoff and reported on a status
//!   channel. No device → [`AudioError::NoInputDevice`], which suggests
//!   `--input`.
//! - [`resample`]: [`Resampler`], a streaming windowed-sinc (Kaiser)
//!   resampler used by every source whose rate is not 16 kHz.
//! - [`endpoint`]: [`Endpointer`], voice activity detection and
//!   endpointing as a pure state machine over 30 ms frames: speech start,
//!   end after 600 ms of silence, 10 s maximum, no speech within 5 s of
//!   arming → back to idle; an always-armed mode for `--no-wake`;
//!   [`Endpointer::finish`] at the end of a file.
//! - [`duplex`]: [`HalfDuplex`], half-duplex listening: input captured
//!   while voicegate itself makes a sound (and for a short tail after) is
//!   treated as silence, so the device never hears itself.
//! - [`output`]: [`Player`](output::Player), one output stream playing a
//!   sound looped (a ring) or once (the chime, a spoken answer), silent
//!   until the device really plays what it is given, so that the
//!   microphone is muted while a sound is heard and not before.
//! - [`AudioError`]: every failure, with messages that say what to do.
//!
//! Rules: the capture callback never allocates, locks, logs or does I/O;
//! engines (the endpointer) are synchronous, fed fixed-size frames by the
//! caller's loop, and read no clock.

pub mod duplex;
pub mod endpoint;
mod error;
pub mod mic;
pub mod output;
pub mod resample;
pub mod source;

pub use duplex::{DEFAULT_TAIL, HalfDuplex, Playback};
pub use endpoint::{
    EndReason, EndpointConfig, EndpointEvent, EndpointState, Endpointer, FRAME_SAMPLES, Utterance,
    VadConfig,
};
pub use error::{AudioError, INPUT_HINT};
pub use mic::{MicConfig, MicSource, MicStatus, StopHandle};
pub use resample::{Resampler, ResamplerConfig};
pub use source::{
    AudioInput, AudioSource, PcmStdinSource, WavAccept, WavSource, open_input, read_full,
    read_wav_mono_16k,
};

/// The sample rate of everything after the sources: 16 kHz.
pub const SAMPLE_RATE: u32 = 16_000;
