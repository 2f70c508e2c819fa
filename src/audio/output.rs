//! Sound out: one cpal output stream playing a buffer, looped (a ring) or
//! once (the wake chime, a spoken answer).
//!
//! # When a sound is heard
//!
//! A stream's first callbacks come at once, back to back: the host fills
//! its buffer before the device starts. The device may then wait before it
//! asks for more, and only then plays what it was given: through
//! PulseAudio's ALSA plugin onto a null sink whose monitor was recorded
//! with parecord's default latency, we measured waits of 0.4 to 1.9 s (the
//! sink rendered in blocks that long); with a 20 ms recorder, 11 ms. A
//! sound handed over in those first callbacks is heard late, and a
//! microphone muted from the first callback (see [`HalfDuplex`]) is muted
//! through the whole wait, deaf to a user who is talking while nothing
//! plays.
//!
//! So a stream gives silence until it is *flowing*: until a callback comes
//! at least half a buffer's time after the one before it (the device is
//! consuming in real time), or a second of audio has been asked for
//! without such a wait (a device that takes audio faster than real time,
//! ALSA's null device, is not playing it aloud anyway). From then on a
//! buffer filled now is heard within the host's reported latency, and the
//! [`Playback`] is switched on for exactly the buffers that carry sound.
//!
//! # Once
//!
//! [`Player::once`] opens the stream silent and plays the sound when told
//! ([`Player::start`]); the stream can be opened early (when the wake word
//! is heard) so that the device's wait is over by the time the chime is
//! due. [`Player::wait`] returns when the callback has handed over the
//! whole sound and the reported latency has passed: dropping the stream
//! earlier cuts the sound's end.
//!
//! The callback only copies from a preallocated buffer and touches atomics
//! (no allocation, locks or I/O); the stream-start logic is a plain
//! function of the callback's own timestamps, tested without a device.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};

#[cfg(doc)]
use super::HalfDuplex;
use super::Playback;

/// How often [`Player::wait`] looks whether the sound is out.
const POLL: Duration = Duration::from_millis(10);

/// A device that has been given this much audio without ever waiting is
/// taken to be flowing (see the module docs).
const FLOWING_AFTER: Duration = Duration::from_secs(1);

/// Why a sound cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The system has no default audio output device.
    #[error("no audio output device")]
    NoDevice,
    /// The audio output device refused.
    #[error("audio output: {what}: {source}")]
    Audio {
        /// What was being attempted.
        what: &'static str,
        /// What the audio layer said.
        #[source]
        source: cpal::Error,
    },
    /// The output device wants a sample format this code does not produce.
    #[error("audio output: unsupported sample format {0}")]
    UnsupportedFormat(String),
}

/// How a [`Player`] plays its sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Round after round, each followed by this much silence, until
    /// dropped; it starts as soon as the stream flows.
    Loop(Duration),
    /// One round, when [`Player::start`] says so; silence after.
    Once,
}

/// Where a sound is, as the callback and the player share it.
mod state {
    /// Not asked to play yet (a `Once` sound before [`super::Player::start`]).
    pub const IDLE: u8 = 0;
    /// Asked to play: it starts when the stream flows.
    pub const GO: u8 = 1;
    /// Being handed over.
    pub const PLAYING: u8 = 2;
    /// A `Once` sound has been handed over whole.
    pub const DONE: u8 = 3;
    /// The stream did not flow in time: it will not play.
    pub const CANCELLED: u8 = 4;
}

/// What the callback shares with the player.
#[derive(Debug, Default)]
struct Shared {
    /// See [`state`].
    state: AtomicU8,
    /// The stream reported an error.
    failed: AtomicBool,
    /// The latency the host last reported (playback − callback), in µs.
    latency_us: AtomicU64,
}

/// One open output stream playing one sound (see the module docs).
/// Dropping it stops the sound at once.
pub struct Player {
    stream: cpal::Stream,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("state", &self.shared.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Loops `sound` (mono, -1.0..=1.0, at `rate` Hz) on the default output
    /// device, `gap` of silence after each round; `playback` is on while
    /// the sound itself (not the gap) is being heard.
    pub fn looping(
        sound: &[f32],
        rate: u32,
        gap: Duration,
        playback: Option<Playback>,
    ) -> Result<Player, OutputError> {
        Player::open(sound, rate, Repeat::Loop(gap), playback)
    }

    /// Opens the default output device for one round of `sound`, silent
    /// until [`Player::start`].
    pub fn once(
        sound: &[f32],
        rate: u32,
        playback: Option<Playback>,
    ) -> Result<Player, OutputError> {
        Player::open(sound, rate, Repeat::Once, playback)
    }

    /// Plays `sound` once and returns when it has been heard (at most
    /// `limit` after the device starts to play).
    pub fn play(
        sound: &[f32],
        rate: u32,
        playback: Option<Playback>,
        limit: Duration,
    ) -> Result<(), OutputError> {
        let player = Player::once(sound, rate, playback)?;
        player.start();
        player.wait(None, limit);
        Ok(())
    }

    fn open(
        sound: &[f32],
        rate: u32,
        repeat: Repeat,
        playback: Option<Playback>,
    ) -> Result<Player, OutputError> {
        let device = cpal::default_host()
            .default_output_device()
            .ok_or(OutputError::NoDevice)?;
        let supported = device
            .default_output_config()
            .map_err(|source| OutputError::Audio {
                what: "no usable output configuration",
                source,
            })?;
        let config = supported.config();
        let to = config.sample_rate;
        let gap = match repeat {
            Repeat::Loop(gap) => gap,
            Repeat::Once => Duration::ZERO,
        };
        let shared = Arc::new(Shared::default());
        if matches!(repeat, Repeat::Loop(_)) {
            shared.state.store(state::GO, Ordering::Relaxed);
        }
        let feed = Feed {
            channels: usize::from(config.channels).max(1),
            samples: round(sound, rate, to, gap),
            sounding: sounding_len(sound.len(), rate, to),
            looped: matches!(repeat, Repeat::Loop(_)),
            position: 0,
            start: Start::new(to),
            playback,
            shared: Arc::clone(&shared),
        };
        let stream = match supported.sample_format() {
            SampleFormat::F32 => open::<f32>(&device, config, feed),
            SampleFormat::I16 => open::<i16>(&device, config, feed),
            SampleFormat::I32 => open::<i32>(&device, config, feed),
            SampleFormat::U16 => open::<u16>(&device, config, feed),
            SampleFormat::U8 => open::<u8>(&device, config, feed),
            SampleFormat::I8 => open::<i8>(&device, config, feed),
            SampleFormat::F64 => open::<f64>(&device, config, feed),
            SampleFormat::U32 => open::<u32>(&device, config, feed),
            SampleFormat::I64 => open::<i64>(&device, config, feed),
            SampleFormat::U64 => open::<u64>(&device, config, feed),
            other => Err(OutputError::UnsupportedFormat(other.to_string())),
        }?;
        stream.play().map_err(|source| OutputError::Audio {
            what: "cannot start playback",
            source,
        })?;
        Ok(Player { stream, shared })
    }

    /// Plays a `Once` sound (as soon as the stream flows).
    pub fn start(&self) {
        let _ = self.shared.state.compare_exchange(
            state::IDLE,
            state::GO,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Waits until a started `Once` sound has been handed over and the
    /// host's reported latency has passed, or `limit`. With `start_within`,
    /// a sound that has not begun by then (the stream is not flowing yet)
    /// is cancelled: a late sound can be worse than none. True if it was
    /// heard whole.
    pub fn wait(&self, start_within: Option<Duration>, limit: Duration) -> bool {
        let asked = Instant::now();
        loop {
            match self.shared.state.load(Ordering::Acquire) {
                state::DONE => break,
                state::GO
                    if start_within.is_some_and(|late| asked.elapsed() >= late)
                        && self
                            .shared
                            .state
                            .compare_exchange(
                                state::GO,
                                state::CANCELLED,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok() =>
                {
                    return false;
                }
                state::IDLE | state::CANCELLED => return false,
                _ => {}
            }
            if asked.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(POLL);
        }
        let latency = Duration::from_micros(self.shared.latency_us.load(Ordering::Relaxed));
        // Plus a poll: the last buffer was handed over up to one poll ago
        // and plays after the buffers before it.
        std::thread::sleep(latency + POLL);
        true
    }

    /// Whether the stream reported an error.
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.stream.pause();
    }
}

/// One round at the device's rate: `sound` resampled (linear
/// interpolation) from `from` Hz to `to` Hz, then `gap` of silence.
pub(crate) fn round(sound: &[f32], from: u32, to: u32, gap: Duration) -> Vec<f32> {
    let (from, to) = (u64::from(from.max(1)), u64::from(to.max(1)));
    let out_len = (sound.len() as u64 * to / from) as usize;
    let gap_len = (gap.as_secs_f64() * to as f64) as usize;
    let step = from as f64 / to as f64;
    let mut out = Vec::with_capacity(out_len + gap_len);
    for i in 0..out_len {
        let pos = i as f64 * step;
        let index = pos as usize;
        let frac = (pos - index as f64) as f32;
        let a = sound.get(index).copied().unwrap_or(0.0);
        let b = sound.get(index + 1).copied().unwrap_or(a);
        out.push(a + (b - a) * frac);
    }
    out.resize(out.len() + gap_len, 0.0);
    out
}

/// How many samples of a round at `to` Hz are the sound itself (the rest
/// is the gap), for a sound of `len` samples at `from` Hz.
pub(crate) fn sounding_len(len: usize, from: u32, to: u32) -> usize {
    (len as u64 * u64::from(to.max(1)) / u64::from(from.max(1))) as usize
}

/// Whether the device is flowing yet (see the module docs), from the
/// callbacks' own timestamps.
#[derive(Debug, Clone)]
struct Start {
    rate: u32,
    flowing: bool,
    /// The last callback: when, and how many frames it was asked for.
    last: Option<(Duration, usize)>,
    /// Frames asked for so far.
    asked: u64,
}

impl Start {
    fn new(rate: u32) -> Start {
        Start {
            rate: rate.max(1),
            flowing: false,
            last: None,
            asked: 0,
        }
    }

    /// A callback at `at` (since any fixed point) asks for `frames`:
    /// whether what it is given will be heard from now on.
    fn callback(&mut self, at: Duration, frames: usize) -> bool {
        if !self.flowing {
            let waited = self.last.is_some_and(|(then, n)| {
                let half = Duration::from_secs_f64(n as f64 / f64::from(self.rate) / 2.0);
                at.saturating_sub(then) >= half
            });
            self.asked += frames as u64;
            let plenty = self.asked as f64 / f64::from(self.rate) >= FLOWING_AFTER.as_secs_f64();
            self.flowing = waited || plenty;
        }
        self.last = Some((at, frames));
        self.flowing
    }
}

/// What the output callback owns.
struct Feed {
    channels: usize,
    /// One round (sound, then gap) at the device's rate.
    samples: Vec<f32>,
    /// Its first `sounding` samples are sound.
    sounding: usize,
    looped: bool,
    position: usize,
    start: Start,
    playback: Option<Playback>,
    shared: Arc<Shared>,
}

impl Feed {
    /// Fills one buffer (`at`: the callback's time since the first).
    fn fill<T: Sample + FromSample<f32>>(&mut self, out: &mut [T], at: Duration) {
        let frames = out.len() / self.channels;
        let flowing = self.start.callback(at, frames);
        let playing = flowing
            && match self.shared.state.load(Ordering::Acquire) {
                state::PLAYING => true,
                state::GO => self
                    .shared
                    .state
                    .compare_exchange(
                        state::GO,
                        state::PLAYING,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok(),
                _ => false,
            };
        if !playing {
            out.fill(T::EQUILIBRIUM);
            if let Some(p) = self.playback.as_mut() {
                p.set(false);
            }
            return;
        }
        for frame in out.chunks_mut(self.channels) {
            if self.position >= self.samples.len() {
                if !self.looped {
                    frame.fill(T::EQUILIBRIUM);
                    continue;
                }
                self.position = 0;
            }
            let value = self.samples.get(self.position).copied().unwrap_or(0.0);
            self.position += 1;
            frame.fill(T::from_sample(value));
        }
        // This buffer is heard from now on: the sound is on if any of it
        // is sound (a buffer that ends in the gap still carries the
        // sound's last milliseconds; the echo tail covers them).
        if let Some(p) = self.playback.as_mut() {
            p.set(self.position < self.sounding + frames);
        }
        if !self.looped && self.position >= self.samples.len() {
            self.shared.state.store(state::DONE, Ordering::Release);
        }
    }
}

/// Opens (but does not start) an output stream fed by `feed`.
fn open<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut feed: Feed,
) -> Result<cpal::Stream, OutputError>
where
    T: SizedSample + FromSample<f32>,
{
    let on_error = Arc::clone(&feed.shared);
    let mut first: Option<cpal::StreamInstant> = None;
    device
        .build_output_stream(
            config,
            move |out: &mut [T], info: &cpal::OutputCallbackInfo| {
                let stamp = info.timestamp();
                let origin = *first.get_or_insert(stamp.callback);
                feed.fill(out, stamp.callback.duration_since(origin));
                let latency = stamp.playback.duration_since(stamp.callback);
                feed.shared.latency_us.store(
                    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            },
            move |_error| on_error.failed.store(true, Ordering::Relaxed),
            None,
        )
        .map_err(|source| OutputError::Audio {
            what: "cannot open an output stream",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::HalfDuplex;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn resampling_keeps_duration_and_appends_the_gap() {
        let sound: Vec<f32> = (0..160).map(|i| i as f32 / 160.0).collect();
        let same = round(&sound, 16_000, 16_000, ms(10));
        assert_eq!(same.len(), 160 + 160);
        assert_eq!(&same[..160], &sound[..]);
        assert!(same[160..].iter().all(|s| *s == 0.0));

        let up = round(&sound, 16_000, 48_000, Duration::ZERO);
        assert_eq!(up.len(), 480);
        assert_eq!(up[3], sound[1]);
        assert!((up[1] - (sound[0] + (sound[1] - sound[0]) / 3.0)).abs() < 1e-6);
        assert_eq!(sounding_len(160, 16_000, 48_000), 480);
    }

    #[test]
    fn a_stream_flows_once_the_device_waits_or_has_plenty() {
        // PulseAudio: three buffers at once, a wait, then every 10.7 ms.
        let mut start = Start::new(48_000);
        assert!(!start.callback(ms(0), 512));
        assert!(!start.callback(ms(0), 512));
        assert!(!start.callback(ms(1), 512));
        assert!(start.callback(ms(450), 512), "the device asked again");
        assert!(start.callback(ms(451), 512), "and stays flowing");

        // A device that never waits: flowing after a second's worth.
        let mut null = Start::new(1_000);
        let asked: Vec<bool> = (0..12).map(|_| null.callback(ms(0), 100)).collect();
        assert_eq!(asked.iter().position(|f| *f), Some(9));
    }

    fn feed(looped: bool, playback: Option<Playback>) -> Feed {
        let shared = Arc::new(Shared::default());
        if looped {
            shared.state.store(state::GO, Ordering::Relaxed);
        }
        Feed {
            channels: 2,
            samples: vec![0.5, -0.5, 0.25, 0.0],
            sounding: 3,
            looped,
            position: 0,
            start: Start::new(1_000),
            playback,
            shared,
        }
    }

    #[test]
    fn nothing_plays_until_the_stream_flows_and_loops_duplicate_channels() {
        let duplex = HalfDuplex::new(Duration::ZERO);
        let mut f = feed(true, Some(duplex.idle_playback()));
        let mut out = [1.0f32; 4]; // two stereo frames
        f.fill(&mut out, ms(0));
        assert_eq!(out, [0.0; 4], "the host's first buffer is silent");
        assert!(!duplex.playing(), "and mutes nothing");
        f.fill(&mut out, ms(5));
        assert_eq!(out, [0.5, 0.5, -0.5, -0.5]);
        assert!(duplex.playing(), "heard from now on");
        let mut ints = [0i16; 6];
        f.fill(&mut ints, ms(10));
        assert_eq!(ints[0], i16::from_sample(0.25f32));
        assert_eq!(ints[2], 0, "the gap");
        assert_eq!(ints[4], i16::from_sample(0.5f32), "round two");
    }

    #[test]
    fn once_waits_for_start_plays_one_round_and_says_so() {
        let duplex = HalfDuplex::new(Duration::ZERO);
        let mut f = feed(false, Some(duplex.idle_playback()));
        let mut out = [1.0f32; 4];
        f.fill(&mut out, ms(0));
        f.fill(&mut out, ms(5));
        assert_eq!(out, [0.0; 4], "flowing, but not started");
        f.shared.state.store(state::GO, Ordering::Release);
        f.fill(&mut out, ms(10));
        assert_eq!(out, [0.5, 0.5, -0.5, -0.5]);
        assert!(duplex.playing());
        assert_eq!(f.shared.state.load(Ordering::Acquire), state::PLAYING);
        let mut rest = [1.0f32; 8];
        f.fill(&mut rest, ms(15));
        assert_eq!(rest, [0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(
            f.shared.state.load(Ordering::Acquire),
            state::DONE,
            "handed over whole"
        );
        f.fill(&mut out, ms(20));
        assert_eq!(out, [0.0; 4], "once");
        assert!(!duplex.playing());
    }

    #[test]
    fn a_cancelled_sound_never_starts() {
        let mut f = feed(false, None);
        let mut out = [1.0f32; 4];
        f.shared.state.store(state::CANCELLED, Ordering::Release);
        f.fill(&mut out, ms(0));
        f.fill(&mut out, ms(5));
        assert_eq!(out, [0.0; 4]);
    }

    #[test]
    fn a_player_fails_clearly_without_a_device_or_plays() {
        match Player::play(&[0.0; 160], 16_000, None, ms(2_000)) {
            Ok(()) => {}
            Err(e) => assert!(e.to_string().contains("audio output"), "{e}"),
        }
    }
}
