//! The microphone as an [`AudioSource`]: cpal capture into a lock-free ring
//! buffer, resampling on the reading side, and reopening a lost device.
//!
//! Why it is built this way: cpal calls our data callback on a real-time
//! audio thread. Anything slow there (allocating, locking, logging, I/O)
//! causes dropouts, so the callback only converts the device's samples to
//! `f32`, averages the channels to mono and pushes them into a ring buffer
//! allocated when the stream was opened (cpal's `feedback` example pattern:
//! a single-producer single-consumer `ringbuf`). If the ring is full the
//! samples are dropped and counted in an `AtomicU64`; the reading side
//! reports the count ([`MicStatus::Overruns`]). The error callback only
//! stores an error code in an atomic.
//!
//! The reading side ([`MicSource::read`], on the caller's thread) pops the
//! ring, resamples to 16 kHz and notices failures: an error from the host,
//! or no audio at all for [`DEFAULT_STALL_MS`] (some backends go silent
//! instead of reporting an unplugged device). A lost device is reopened
//! with exponential backoff (0.5 s, 1 s, 2 s … capped at 8 s by default);
//! each step is reported on a status channel
//! ([`MicSource::take_status_receiver`]) instead of being printed. Opening
//! is behind a small private trait so that the reopen logic is tested
//! without a sound card.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapRb};

use super::duplex::HalfDuplex;
use super::resample::Resampler;
use super::source::{AudioSource, Pending};
use super::{AudioError, SAMPLE_RATE};

/// Capacity of the capture ring buffer, in milliseconds of device audio:
/// how long the reader may be busy (whisper deciding an unsure reading
/// takes seconds on a slow machine) before anything said is lost. About
/// 6 MB at 48 kHz.
pub const DEFAULT_RING_MS: u32 = 30_000;
/// How long the reader sleeps when the ring is empty.
pub const DEFAULT_POLL_MS: u64 = 5;
/// First wait before reopening a lost device.
pub const DEFAULT_REOPEN_INITIAL_MS: u64 = 500;
/// Longest wait between reopen attempts (the backoff doubles up to this).
pub const DEFAULT_REOPEN_MAX_MS: u64 = 8_000;
/// A running stream that delivers nothing for this long counts as lost
/// (some backends stall silently when a USB microphone is pulled).
pub const DEFAULT_STALL_MS: u64 = 2_000;
/// Overrun and xrun reports are sent at most this often (the counts
/// accumulate in between), so a struggling reader does not flood the log.
pub const COUNTER_REPORT_INTERVAL_MS: u64 = 1_000;
/// Status messages kept for a listener before new ones are dropped.
pub const STATUS_CHANNEL_CAPACITY: usize = 64;

/// Device-rate samples popped from the ring per step on the reading side.
const READ_CHUNK: usize = 1024;

/// Microphone settings. `Default` is what `voicegate run` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MicConfig {
    /// Ring-buffer capacity in milliseconds of audio: how far the reader may
    /// fall behind before samples are lost.
    pub ring_ms: u32,
    /// How long a read sleeps between polls of an empty ring.
    pub poll_ms: u64,
    /// First wait before reopening a lost device.
    pub reopen_initial_ms: u64,
    /// Cap on the doubling wait between reopen attempts.
    pub reopen_max_ms: u64,
    /// Give up (return [`AudioError::DeviceLost`]) after this many
    /// attempts without audio flowing again; `None` keeps trying, as a
    /// daemon should.
    pub reopen_max_attempts: Option<u32>,
    /// A stream silent (no callbacks) for this long is treated as lost.
    pub stall_ms: u64,
}

impl Default for MicConfig {
    fn default() -> Self {
        MicConfig {
            ring_ms: DEFAULT_RING_MS,
            poll_ms: DEFAULT_POLL_MS,
            reopen_initial_ms: DEFAULT_REOPEN_INITIAL_MS,
            reopen_max_ms: DEFAULT_REOPEN_MAX_MS,
            reopen_max_attempts: None,
            stall_ms: DEFAULT_STALL_MS,
        }
    }
}

/// What happened to the microphone, for the daemon to log. Sent on the
/// channel from [`MicSource::take_status_receiver`].
#[derive(Debug, Clone, PartialEq)]
pub enum MicStatus {
    /// The stream is running.
    Opened {
        /// Device name.
        device: String,
        /// The device's rate in Hz (resampled to 16 kHz on reading).
        sample_rate: u32,
        /// The device's channel count (averaged to mono).
        channels: u16,
        /// The device's sample format.
        format: String,
    },
    /// The stream failed; reopening starts.
    Lost {
        /// What the audio host reported.
        error: String,
    },
    /// A reopen attempt failed; the next comes after `retry_in`.
    ReopenFailed {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why it failed.
        error: String,
        /// Wait before the next attempt.
        retry_in: Duration,
    },
    /// The device is back.
    Reopened {
        /// Device name.
        device: String,
        /// The device's rate in Hz.
        sample_rate: u32,
        /// Attempts it took.
        attempts: u32,
    },
    /// The reader fell behind and samples were dropped.
    Overruns {
        /// Device-rate samples dropped since the last report.
        lost: u64,
        /// Total since the source was opened.
        total: u64,
    },
    /// The audio host reported buffer under/overruns (glitches) of its own.
    HostXruns {
        /// Total since the source was opened.
        total: u64,
    },
}

impl std::fmt::Display for MicStatus {
    /// One line for the log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MicStatus::Opened {
                device,
                sample_rate,
                channels,
                format,
            } => write!(
                f,
                "listening on {device} ({sample_rate} Hz, {channels} channel(s), {format})"
            ),
            MicStatus::Lost { error } => write!(f, "lost ({error}); reopening it"),
            MicStatus::ReopenFailed {
                attempt,
                error,
                retry_in,
            } => write!(
                f,
                "still unavailable after attempt {attempt} ({error}); next try in {:.1} s",
                retry_in.as_secs_f32()
            ),
            MicStatus::Reopened {
                device,
                sample_rate,
                attempts,
            } => write!(
                f,
                "back: listening on {device} ({sample_rate} Hz) after {attempts} attempt(s)"
            ),
            MicStatus::Overruns { lost, total } => {
                write!(f, "fell behind: {lost} samples dropped ({total} in all)")
            }
            MicStatus::HostXruns { total } => {
                write!(f, "the audio host reported {total} glitch(es) so far")
            }
        }
    }
}

/// Asks a [`MicSource`] blocked in `read` to return `Ok(0)` (end of
/// stream), e.g. from a signal handler's thread.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Makes the source's current and future reads return `Ok(0)` once
    /// the samples it already converted are read (a stop loses nothing
    /// that was captured).
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the capture callbacks and the reader share: atomics only.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Samples the callback could not push because the ring was full.
    overruns: AtomicU64,
    /// Xruns the host reported through the error callback.
    host_xruns: AtomicU64,
    /// 0, or the code of a fatal stream error (see [`failure_code`]).
    failure: AtomicU8,
    /// Voicegate's own sounds: while one plays (and for its tail) the
    /// callback pushes zeros. Read with an atomic load.
    duplex: OnceLock<Arc<HalfDuplex>>,
}

impl Shared {
    /// Whether what is being captured now must be silenced (voicegate is
    /// making a sound): an atomic load and a clock read, fit for the
    /// capture callback.
    fn muted_now(&self) -> bool {
        self.duplex
            .get()
            .is_some_and(|d| d.muted_at(Instant::now()))
    }

    /// Called from cpal's error callback: stores, never formats or prints.
    fn note_error(&self, kind: cpal::ErrorKind) {
        match kind {
            cpal::ErrorKind::Xrun => {
                self.host_xruns.fetch_add(1, Ordering::Relaxed);
            }
            // The stream keeps running in these cases.
            cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
            other => self.failure.store(failure_code(other), Ordering::Release),
        }
    }
}

/// A stable small code per fatal error kind (0 is "no failure").
fn failure_code(kind: cpal::ErrorKind) -> u8 {
    use cpal::ErrorKind as K;
    match kind {
        K::DeviceNotAvailable => 1,
        K::StreamInvalidated => 2,
        K::DeviceBusy => 3,
        K::HostUnavailable => 4,
        K::PermissionDenied => 5,
        K::ResourceExhausted => 6,
        K::BackendError => 7,
        _ => 8,
    }
}

fn failure_text(code: u8) -> &'static str {
    match code {
        1 => "the device is no longer available (disconnected?)",
        2 => "the stream was invalidated and must be rebuilt",
        3 => "the device is busy",
        4 => "the audio host (server) went away",
        5 => "permission to use the device was withdrawn",
        6 => "an operating-system resource limit was reached",
        7 => "the audio backend reported an error",
        _ => "the stream failed",
    }
}

/// The capture callback's work: converts interleaved device samples to
/// `f32`, averages each frame's channels, pushes the result into the ring
/// and counts what did not fit; `muted` (voicegate is making a sound)
/// pushes zeros instead, keeping the timing. Allocation-free, lock-free,
/// no I/O.
pub(crate) fn push_interleaved<T, P>(
    producer: &mut P,
    data: &[T],
    channels: usize,
    overruns: &AtomicU64,
    muted: bool,
) where
    T: Sample,
    f32: FromSample<T>,
    P: Producer<Item = f32>,
{
    let channels = channels.max(1);
    let frames = data.len() / channels;
    let scale = 1.0 / channels as f32;
    let pushed = producer.push_iter(data.chunks_exact(channels).map(|frame| {
        if muted {
            0.0
        } else {
            frame.iter().map(|s| s.to_sample::<f32>()).sum::<f32>() * scale
        }
    }));
    if pushed < frames {
        overruns.fetch_add((frames - pushed) as u64, Ordering::Relaxed);
    }
}

/// A running capture stream, as the reading side sees it.
pub(crate) struct Opened {
    /// Keeps the stream alive; dropping it stops capture.
    pub(crate) _stream: Box<dyn Send>,
    /// Mono samples at `sample_rate`.
    pub(crate) consumer: HeapCons<f32>,
    pub(crate) sample_rate: u32,
    pub(crate) channels: u16,
    pub(crate) device: String,
    pub(crate) format: String,
}

/// Opens capture streams (cpal in production; a fake in tests).
pub(crate) trait Backend: Send {
    fn open(&mut self, shared: &Arc<Shared>, ring_ms: u32) -> Result<Opened, AudioError>;
}

/// The real backend: cpal's default host.
struct CpalBackend {
    host: cpal::Host,
    device: Option<String>,
}

impl Backend for CpalBackend {
    fn open(&mut self, shared: &Arc<Shared>, ring_ms: u32) -> Result<Opened, AudioError> {
        let default = self.device.is_none();
        let device = find_device(&self.host, self.device.as_deref())?;
        let name = device.to_string();
        let supported = device
            .default_input_config()
            .map_err(|e| open_error(default, &name, &e))?;
        let format = supported.sample_format();
        let config = supported.config();
        if config.sample_rate == 0 || config.channels == 0 {
            return Err(AudioError::OpenDevice {
                device: name,
                detail: format!(
                    "it reports {} channels at {} Hz",
                    config.channels, config.sample_rate
                ),
            });
        }
        let capacity = (u64::from(config.sample_rate) * u64::from(ring_ms.max(100)) / 1000)
            .max(READ_CHUNK as u64) as usize;
        let ring = HeapRb::<f32>::try_new(capacity).map_err(|e| AudioError::OpenDevice {
            device: name.clone(),
            detail: format!("cannot allocate the capture buffer: {e:?}"),
        })?;
        let (producer, consumer) = ring.split();
        let channels = usize::from(config.channels);
        let stream = match format {
            SampleFormat::F32 => build::<f32>(&device, config, producer, shared, channels),
            SampleFormat::F64 => build::<f64>(&device, config, producer, shared, channels),
            SampleFormat::I8 => build::<i8>(&device, config, producer, shared, channels),
            SampleFormat::I16 => build::<i16>(&device, config, producer, shared, channels),
            SampleFormat::I32 => build::<i32>(&device, config, producer, shared, channels),
            SampleFormat::U8 => build::<u8>(&device, config, producer, shared, channels),
            SampleFormat::U16 => build::<u16>(&device, config, producer, shared, channels),
            SampleFormat::U32 => build::<u32>(&device, config, producer, shared, channels),
            other => {
                return Err(AudioError::UnsupportedSampleFormat {
                    device: name,
                    format: other.to_string(),
                });
            }
        }
        .map_err(|e| open_error(default, &name, &e))?;
        stream.play().map_err(|e| open_error(default, &name, &e))?;
        Ok(Opened {
            _stream: Box::new(stream),
            consumer,
            sample_rate: config.sample_rate,
            channels: config.channels,
            device: name,
            format: format.to_string(),
        })
    }
}

fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: ringbuf::HeapProd<f32>,
    shared: &Arc<Shared>,
    channels: usize,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let data_shared = Arc::clone(shared);
    let error_shared = Arc::clone(shared);
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            let muted = data_shared.muted_now();
            push_interleaved(&mut producer, data, channels, &data_shared.overruns, muted);
        },
        move |e: cpal::Error| error_shared.note_error(e.kind()),
        None,
    )
}

/// The named input device (by cpal device id, the id without its host
/// prefix, or its description), or the default.
fn find_device(host: &cpal::Host, name: Option<&str>) -> Result<cpal::Device, AudioError> {
    let Some(name) = name else {
        return host
            .default_input_device()
            .ok_or_else(|| AudioError::NoInputDevice {
                detail: "the audio host reports no default input device".to_string(),
            });
    };
    if let Ok(id) = name.parse::<cpal::DeviceId>()
        && let Some(device) = host.device_by_id(&id)
    {
        return Ok(device);
    }
    let devices = host
        .input_devices()
        .map_err(|e| AudioError::NoInputDevice {
            detail: format!("cannot list input devices: {e}"),
        })?;
    let mut names = Vec::new();
    for device in devices {
        let description = device.to_string();
        let id = device.id().ok();
        // Accept the description, the full id ("alsa:hw:0,0") or the
        // host's own part of it ("hw:0,0").
        if description == name
            || id
                .as_ref()
                .is_some_and(|id| id.id() == name || id.to_string() == name)
        {
            return Ok(device);
        }
        names.push(match id {
            Some(id) => format!("{id} ({description})"),
            None => description,
        });
    }
    Err(AudioError::DeviceNotFound {
        name: name.to_string(),
        available: if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
    })
}

/// A failure to open: "no input device" when the default was asked for
/// and the host cannot provide one, otherwise the device's own error.
fn open_error(default: bool, device: &str, e: &cpal::Error) -> AudioError {
    use cpal::ErrorKind as K;
    let absent = matches!(
        e.kind(),
        K::DeviceNotAvailable
            | K::HostUnavailable
            | K::UnsupportedOperation
            | K::UnsupportedConfig
            | K::BackendError
            | K::InvalidInput
            | K::Other
    );
    if default && absent {
        AudioError::NoInputDevice {
            detail: format!("the default input {device:?} cannot be opened: {e}"),
        }
    } else {
        AudioError::OpenDevice {
            device: device.to_string(),
            detail: e.to_string(),
        }
    }
}

/// The microphone: 16 kHz mono from the default (or a named) input device.
///
/// `read` blocks until samples arrive. If the device fails (an error from
/// the host, or no audio for [`MicConfig::stall_ms`]), `read` keeps
/// blocking while it reopens the device with backoff (reporting each step
/// on the status channel); it returns [`AudioError::DeviceLost`] only if
/// [`MicConfig::reopen_max_attempts`] is set and exhausted (a later `read`
/// starts over). After [`StopHandle::stop`], reads return `Ok(0)`.
pub struct MicSource {
    backend: Box<dyn Backend>,
    config: MicConfig,
    shared: Arc<Shared>,
    stream: Option<Opened>,
    resampler: Resampler,
    raw: Vec<f32>,
    pending: Pending,
    status_tx: SyncSender<MicStatus>,
    status_rx: Option<Receiver<MicStatus>>,
    stop: StopHandle,
    reported_overruns: u64,
    reported_xruns: u64,
    /// When audio last arrived (or the stream was opened): the stall
    /// watchdog. Reading-side only; the callback never sees a clock.
    last_audio: Instant,
    /// Reopen attempts since audio last flowed, and the next wait.
    attempts: u32,
    backoff: Duration,
    /// When overruns or xruns were last reported.
    last_report: Option<Instant>,
}

impl std::fmt::Debug for MicSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicSource")
            .field("device", &self.stream.as_ref().map(|s| s.device.as_str()))
            .field("device_rate", &self.resampler.input_rate())
            .field("overruns", &self.overruns())
            .finish_non_exhaustive()
    }
}

impl MicSource {
    /// Opens `device` (a cpal device id such as `alsa:hw:0,0`, the part
    /// after the host, or the device's description; `None` = the default
    /// input) and starts capturing. No device → [`AudioError::NoInputDevice`],
    /// whose message says to use `--input FILE.wav` or `--input -`.
    pub fn open(device: Option<&str>, config: MicConfig) -> Result<Self, AudioError> {
        let backend = CpalBackend {
            host: cpal::default_host(),
            device: device.map(str::to_string),
        };
        Self::with_backend(Box::new(backend), config)
    }

    pub(crate) fn with_backend(
        mut backend: Box<dyn Backend>,
        config: MicConfig,
    ) -> Result<Self, AudioError> {
        let shared = Arc::new(Shared::default());
        let opened = backend.open(&shared, config.ring_ms)?;
        let resampler = Resampler::new(opened.sample_rate, SAMPLE_RATE)?;
        let (status_tx, status_rx) = sync_channel(STATUS_CHANNEL_CAPACITY);
        // The channel is empty and has room: this cannot fail.
        let _ = status_tx.try_send(MicStatus::Opened {
            device: opened.device.clone(),
            sample_rate: opened.sample_rate,
            channels: opened.channels,
            format: opened.format.clone(),
        });
        Ok(MicSource {
            backend,
            config,
            shared,
            stream: Some(opened),
            resampler,
            raw: vec![0.0; READ_CHUNK],
            pending: Pending::default(),
            status_tx,
            status_rx: Some(status_rx),
            stop: StopHandle::default(),
            reported_overruns: 0,
            reported_xruns: 0,
            last_audio: Instant::now(),
            attempts: 0,
            backoff: Duration::ZERO,
            last_report: None,
        }
        .with_initial_backoff())
    }

    /// The receiving end of the status channel (once; later calls return
    /// `None`). Messages beyond [`STATUS_CHANNEL_CAPACITY`] unread ones are
    /// dropped, so an unread channel costs nothing.
    pub fn take_status_receiver(&mut self) -> Option<Receiver<MicStatus>> {
        self.status_rx.take()
    }

    /// A handle that makes `read` return `Ok(0)`, usable from other
    /// threads.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Silences the capture while `duplex` says voicegate makes a sound
    /// (see [`HalfDuplex`]): the callback pushes zeros, so the timing of
    /// the stream is kept. Set once; later calls are ignored.
    pub fn mute_while_playing(&self, duplex: Arc<HalfDuplex>) {
        let _ = self.shared.duplex.set(duplex);
    }

    /// The current device's name (`None` while it is being reopened).
    pub fn device_name(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.device.as_str())
    }

    /// The current device's own sample rate in Hz.
    pub fn device_sample_rate(&self) -> u32 {
        self.resampler.input_rate()
    }

    fn send(&self, status: MicStatus) {
        // Full (nobody reading) or disconnected (receiver dropped): the
        // status is informational, so dropping it is fine.
        let _ = self.status_tx.try_send(status);
    }

    /// Reports overruns and host xruns that happened since the last report
    /// (at most every [`COUNTER_REPORT_INTERVAL_MS`]).
    fn report_counters(&mut self) {
        if self
            .last_report
            .is_some_and(|at| at.elapsed() < Duration::from_millis(COUNTER_REPORT_INTERVAL_MS))
        {
            return;
        }
        let before = (self.reported_overruns, self.reported_xruns);
        let total = self.shared.overruns.load(Ordering::Relaxed);
        if total > self.reported_overruns {
            self.send(MicStatus::Overruns {
                lost: total - self.reported_overruns,
                total,
            });
            self.reported_overruns = total;
        }
        let xruns = self.shared.host_xruns.load(Ordering::Relaxed);
        if xruns > self.reported_xruns {
            self.send(MicStatus::HostXruns { total: xruns });
            self.reported_xruns = xruns;
        }
        if (self.reported_overruns, self.reported_xruns) != before {
            self.last_report = Some(Instant::now());
        }
    }

    /// Pops up to one ring's worth (the capacity when it was opened) of
    /// device samples into the resampler, [`READ_CHUNK`] at a time, and
    /// returns how many. Bounded, so a device that delivers faster than
    /// real time cannot keep a read from returning.
    fn drain_ring(&mut self, max_chunks: usize) -> usize {
        let Some(stream) = &mut self.stream else {
            return 0;
        };
        let mut taken = 0;
        for _ in 0..max_chunks {
            let got = stream.consumer.pop_slice(&mut self.raw);
            if got == 0 {
                break;
            }
            taken += got;
            self.resampler
                .process(&self.raw[..got], self.pending.buffer());
        }
        taken
    }

    /// Sleeps for `duration` in short steps; returns false if stopped.
    fn sleep_unless_stopped(&self, duration: Duration) -> bool {
        let step = Duration::from_millis(self.config.poll_ms.clamp(1, 50));
        let mut left = duration;
        while !left.is_zero() {
            if self.stop.is_stopped() {
                return false;
            }
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
        !self.stop.is_stopped()
    }

    fn with_initial_backoff(mut self) -> Self {
        self.backoff = self.initial_backoff();
        self
    }

    fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.config.reopen_initial_ms.max(1)).min(self.max_backoff())
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.config.reopen_max_ms.max(1))
    }

    /// Audio flowed: the device is healthy again.
    fn audio_arrived(&mut self) {
        self.last_audio = Instant::now();
        self.attempts = 0;
        self.backoff = self.initial_backoff();
    }

    /// Replaces a failed or stalled stream: keeps what the old ring still
    /// held, then reopens after doubling waits. Returns once a stream is
    /// open (the attempt count and the backoff carry on until audio
    /// actually flows) or the source was stopped.
    fn recover(&mut self, reason: &str) -> Result<(), AudioError> {
        self.send(MicStatus::Lost {
            error: reason.to_string(),
        });
        let ring_chunks = self
            .stream
            .as_ref()
            .map_or(0, |s| s.consumer.capacity().get() / READ_CHUNK + 1);
        self.drain_ring(ring_chunks);
        self.stream = None;
        let mut last_error = reason.to_string();
        loop {
            if let Some(max_attempts) = self.config.reopen_max_attempts
                && self.attempts >= max_attempts
            {
                let attempts = self.attempts;
                // A later read starts over.
                self.attempts = 0;
                self.backoff = self.initial_backoff();
                return Err(AudioError::DeviceLost {
                    attempts,
                    detail: last_error,
                });
            }
            if !self.sleep_unless_stopped(self.backoff) {
                return Ok(());
            }
            self.attempts += 1;
            self.backoff = (self.backoff * 2).min(self.max_backoff());
            self.shared.failure.store(0, Ordering::Release);
            match self.backend.open(&self.shared, self.config.ring_ms) {
                Ok(opened) => {
                    if opened.sample_rate != self.resampler.input_rate() {
                        self.resampler.flush(self.pending.buffer());
                        self.resampler = Resampler::new(opened.sample_rate, SAMPLE_RATE)?;
                    }
                    self.send(MicStatus::Reopened {
                        device: opened.device.clone(),
                        sample_rate: opened.sample_rate,
                        attempts: self.attempts,
                    });
                    self.stream = Some(opened);
                    self.last_audio = Instant::now();
                    return Ok(());
                }
                Err(e) => {
                    last_error = e.to_string();
                    let exhausted = self
                        .config
                        .reopen_max_attempts
                        .is_some_and(|max_attempts| self.attempts >= max_attempts);
                    if !exhausted {
                        self.send(MicStatus::ReopenFailed {
                            attempt: self.attempts,
                            error: last_error.clone(),
                            retry_in: self.backoff,
                        });
                    }
                }
            }
        }
    }
}

impl AudioSource for MicSource {
    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            // What was already converted is handed over even after a
            // stop: stopping ends the stream, it does not drop audio.
            if !self.pending.is_empty() {
                return Ok(self.pending.take_into(out));
            }
            if self.stop.is_stopped() {
                return Ok(0);
            }
            self.report_counters();
            if self.stream.is_none() {
                self.recover("the device was not reopened")?;
                continue;
            }
            let code = self.shared.failure.load(Ordering::Acquire);
            if code != 0 {
                self.recover(failure_text(code))?;
                continue;
            }
            if self.drain_ring(1) > 0 {
                self.audio_arrived();
            } else if self.last_audio.elapsed()
                >= Duration::from_millis(self.config.stall_ms.max(1))
            {
                let reason = format!(
                    "no audio from the device for {} ms (stalled)",
                    self.config.stall_ms
                );
                self.recover(&reason)?;
            } else {
                std::thread::sleep(Duration::from_millis(self.config.poll_ms.max(1)));
            }
        }
    }

    fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    fn backlog(&self) -> u64 {
        let ring = self.stream.as_ref().map_or(0, |s| {
            s.consumer.occupied_len() as u64 * u64::from(SAMPLE_RATE)
                / u64::from(s.sample_rate.max(1))
        });
        ring + self.pending.len() as u64
    }

    fn is_live(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// What a fake open does: fail with a message, or deliver samples.
    enum Step {
        Fail(&'static str),
        Deliver {
            rate: u32,
            channels: u16,
            samples: Vec<f32>,
        },
    }

    /// A backend that plays a script of opens; a delivered stream pushes
    /// its samples through `push_interleaved` at once (as a burst of
    /// callbacks would) and then stays silent.
    struct Fake {
        script: Arc<Mutex<VecDeque<Step>>>,
        opens: Arc<AtomicU64>,
    }

    impl Backend for Fake {
        fn open(&mut self, shared: &Arc<Shared>, ring_ms: u32) -> Result<Opened, AudioError> {
            self.opens.fetch_add(1, Ordering::SeqCst);
            let step = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Fail("script exhausted"));
            match step {
                Step::Fail(why) => Err(AudioError::OpenDevice {
                    device: "fake".into(),
                    detail: why.into(),
                }),
                Step::Deliver {
                    rate,
                    channels,
                    samples,
                } => {
                    let capacity = (rate as u64 * ring_ms as u64 / 1000) as usize;
                    let (mut producer, consumer) = HeapRb::<f32>::new(capacity).split();
                    for chunk in samples.chunks(256 * channels as usize) {
                        let muted = shared.muted_now();
                        push_interleaved(
                            &mut producer,
                            chunk,
                            channels as usize,
                            &shared.overruns,
                            muted,
                        );
                    }
                    Ok(Opened {
                        _stream: Box::new(producer),
                        consumer,
                        sample_rate: rate,
                        channels,
                        device: "fake".into(),
                        format: "f32".into(),
                    })
                }
            }
        }
    }

    fn fast_config() -> MicConfig {
        MicConfig {
            ring_ms: 1_000,
            poll_ms: 1,
            reopen_initial_ms: 1,
            reopen_max_ms: 4,
            reopen_max_attempts: Some(5),
            stall_ms: 10_000,
        }
    }

    fn mic(script: Vec<Step>, config: MicConfig) -> (MicSource, Arc<AtomicU64>) {
        let opens = Arc::new(AtomicU64::new(0));
        let fake = Fake {
            script: Arc::new(Mutex::new(script.into())),
            opens: Arc::clone(&opens),
        };
        (
            MicSource::with_backend(Box::new(fake), config).unwrap(),
            opens,
        )
    }

    fn read_n(source: &mut MicSource, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        let got = super::super::read_full(source, &mut out).unwrap();
        out.truncate(got);
        out
    }

    #[test]
    fn the_callback_converts_integer_formats_and_averages_channels() {
        let (mut producer, mut consumer) = HeapRb::<f32>::new(64).split();
        let overruns = AtomicU64::new(0);
        // i16 stereo: (0.5, -0.25) → 0.125; (-1.0, -1.0) → -1.0.
        push_interleaved(
            &mut producer,
            &[16_384i16, -8_192, -32_768, -32_768],
            2,
            &overruns,
            false,
        );
        // u16 mono: 49_152 → 0.5; 32_768 → 0.0.
        push_interleaved(&mut producer, &[49_152u16, 32_768], 1, &overruns, false);
        // f32 with three channels.
        push_interleaved(&mut producer, &[0.3f32, 0.3, 0.3], 3, &overruns, false);
        let mut out = [0.0f32; 8];
        let n = consumer.pop_slice(&mut out);
        let expected = [0.125, -1.0, 0.5, 0.0, 0.3];
        assert_eq!(n, expected.len());
        for (got, want) in out.iter().zip(expected) {
            assert!((got - want).abs() < 1e-4, "{out:?}");
        }
        assert_eq!(overruns.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stereo_input_is_averaged_to_mono_and_passed_at_16k() {
        // Left = 0.5, right = -0.25 → mono 0.125.
        let samples: Vec<f32> = (0..1600).flat_map(|_| [0.5, -0.25]).collect();
        let (mut source, _) = mic(
            vec![Step::Deliver {
                rate: 16_000,
                channels: 2,
                samples,
            }],
            fast_config(),
        );
        let got = read_n(&mut source, 1600);
        assert!(
            got.iter().all(|&s| (s - 0.125).abs() < 1e-6),
            "{:?}",
            &got[..4]
        );
        assert_eq!(source.overruns(), 0);
    }

    #[test]
    fn overruns_are_counted_not_blocking() {
        // 1 s ring at 16 kHz, 1.5 s pushed: 8000 samples dropped.
        let (mut source, _) = mic(
            vec![Step::Deliver {
                rate: 16_000,
                channels: 1,
                samples: vec![0.1; 24_000],
            }],
            fast_config(),
        );
        assert_eq!(source.overruns(), 8_000);
        let rx = source.take_status_receiver().unwrap();
        read_n(&mut source, 10);
        let statuses: Vec<_> = rx.try_iter().collect();
        assert!(
            statuses.contains(&MicStatus::Overruns {
                lost: 8_000,
                total: 8_000
            }),
            "{statuses:?}"
        );
    }

    #[test]
    fn capture_is_silenced_while_voicegate_plays_a_sound() {
        let (mut producer, mut consumer) = HeapRb::<f32>::new(64).split();
        let overruns = AtomicU64::new(0);
        push_interleaved(&mut producer, &[0.5f32, 0.5, 0.5, 0.5], 2, &overruns, true);
        let mut out = [1.0f32; 4];
        assert_eq!(consumer.pop_slice(&mut out), 2, "the timing is kept");
        assert_eq!(out[..2], [0.0, 0.0]);

        // Through the source: a stream opened while a sound plays (the fake
        // pushes everything at open, as the callback would) is silent; the
        // next one, after the sound and its tail, is heard.
        let (mut source, _) = mic(
            vec![
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.5; 1_600],
                },
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.5; 1_600],
                },
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.5; 1_600],
                },
            ],
            fast_config(),
        );
        let duplex = HalfDuplex::new(Duration::from_millis(30));
        source.mute_while_playing(Arc::clone(&duplex));
        assert!(read_n(&mut source, 1_500).iter().all(|&s| s == 0.5));
        let playing = duplex.hold();
        source.shared.note_error(cpal::ErrorKind::StreamInvalidated);
        let muted = read_n(&mut source, 1_500);
        assert!(
            muted[200..].iter().all(|&s| s == 0.0),
            "{:?}",
            &muted[200..204]
        );
        drop(playing);
        std::thread::sleep(Duration::from_millis(60));
        source.shared.note_error(cpal::ErrorKind::StreamInvalidated);
        let heard = read_n(&mut source, 1_700);
        assert!(heard.iter().any(|&s| (s - 0.5).abs() < 1e-6));
    }

    #[test]
    fn a_lost_device_is_reopened_with_backoff_and_reported() {
        let (mut source, opens) = mic(
            vec![
                Step::Deliver {
                    rate: 48_000,
                    channels: 1,
                    samples: vec![0.25; 4_800],
                },
                Step::Fail("unplugged"),
                Step::Fail("still unplugged"),
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.5; 1_600],
                },
            ],
            fast_config(),
        );
        let rx = source.take_status_receiver().unwrap();
        // 100 ms at 48 kHz → about 1600 samples at 16 kHz (the last few wait
        // for look-ahead that never comes before the failure).
        let first = read_n(&mut source, 1_400);
        assert!(first[200..].iter().all(|&s| (s - 0.25).abs() < 1e-3));
        source
            .shared
            .note_error(cpal::ErrorKind::DeviceNotAvailable);
        let after = read_n(&mut source, 1_700);
        assert!(after.iter().any(|&s| (s - 0.5).abs() < 1e-6));
        assert_eq!(opens.load(Ordering::SeqCst), 4);
        let statuses: Vec<_> = rx.try_iter().collect();
        let kinds: Vec<&str> = statuses
            .iter()
            .map(|s| match s {
                MicStatus::Opened { .. } => "opened",
                MicStatus::Lost { .. } => "lost",
                MicStatus::ReopenFailed { .. } => "failed",
                MicStatus::Reopened { .. } => "reopened",
                MicStatus::Overruns { .. } => "overruns",
                MicStatus::HostXruns { .. } => "xruns",
            })
            .collect();
        assert_eq!(kinds, ["opened", "lost", "failed", "failed", "reopened"]);
        let waits: Vec<Duration> = statuses
            .iter()
            .filter_map(|s| match s {
                MicStatus::ReopenFailed { retry_in, .. } => Some(*retry_in),
                _ => None,
            })
            .collect();
        assert_eq!(waits, [Duration::from_millis(2), Duration::from_millis(4)]);
        assert!(matches!(
            statuses.last(),
            Some(MicStatus::Reopened {
                attempts: 3,
                sample_rate: 16_000,
                ..
            })
        ));
    }

    #[test]
    fn a_stalled_device_is_reopened() {
        let (mut source, opens) = mic(
            vec![
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.25; 800],
                },
                Step::Deliver {
                    rate: 16_000,
                    channels: 1,
                    samples: vec![0.5; 800],
                },
            ],
            MicConfig {
                stall_ms: 30,
                ..fast_config()
            },
        );
        let rx = source.take_status_receiver().unwrap();
        let got = read_n(&mut source, 1_600);
        assert_eq!(&got[798..802], [0.25, 0.25, 0.5, 0.5]);
        assert_eq!(opens.load(Ordering::SeqCst), 2);
        let statuses: Vec<_> = rx.try_iter().collect();
        assert!(
            matches!(&statuses[1], MicStatus::Lost { error } if error.contains("stalled")),
            "{statuses:?}"
        );
        assert!(matches!(
            statuses[2],
            MicStatus::Reopened { attempts: 1, .. }
        ));
    }

    #[test]
    fn a_device_that_reopens_but_stays_silent_is_given_up_on() {
        let silent = || Step::Deliver {
            rate: 16_000,
            channels: 1,
            samples: vec![],
        };
        let (mut source, opens) = mic(
            vec![silent(), silent(), silent(), silent()],
            MicConfig {
                stall_ms: 10,
                reopen_max_attempts: Some(2),
                ..fast_config()
            },
        );
        let err = source.read(&mut [0.0; 16]).unwrap_err();
        assert!(
            matches!(&err, AudioError::DeviceLost { attempts: 2, detail } if detail.contains("stalled")),
            "{err}"
        );
        assert_eq!(opens.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reopening_gives_up_after_the_configured_attempts() {
        let (mut source, _) = mic(
            vec![Step::Deliver {
                rate: 16_000,
                channels: 1,
                samples: vec![],
            }],
            MicConfig {
                reopen_max_attempts: Some(3),
                ..fast_config()
            },
        );
        source.shared.note_error(cpal::ErrorKind::StreamInvalidated);
        let mut out = [0.0; 16];
        let err = source.read(&mut out).unwrap_err();
        assert!(
            matches!(err, AudioError::DeviceLost { attempts: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn xruns_do_not_reopen_and_stop_ends_the_stream() {
        let (mut source, opens) = mic(
            vec![Step::Deliver {
                rate: 16_000,
                channels: 1,
                samples: vec![0.0; 160],
            }],
            fast_config(),
        );
        source.shared.note_error(cpal::ErrorKind::Xrun);
        assert_eq!(read_n(&mut source, 100).len(), 100);
        let stop = source.stop_handle();
        let reader = std::thread::spawn(move || {
            let mut out = [0.0; 1_000];
            super::super::read_full(&mut source, &mut out).map(|n| (n, source))
        });
        std::thread::sleep(Duration::from_millis(20));
        stop.stop();
        let (n, source) = reader.join().unwrap().unwrap();
        assert_eq!(n, 60);
        assert_eq!(opens.load(Ordering::SeqCst), 1);
        assert_eq!(source.shared.host_xruns.load(Ordering::Relaxed), 1);
    }
}
