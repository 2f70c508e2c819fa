//! Ringing: how a due alarm or timer makes itself heard.
//!
//! The schedule ([`crate::actions::alarms`]) decides *when* something rings;
//! this module only makes the noise and silences it again, behind one small
//! trait, [`Ringer`], so the daemon does not care how:
//!
//! - [`CommandRinger`] runs the configured `ring_command` (for a speaker on
//!   another machine, a light, a phone notification, or a favourite song);
//! - [`AudioRinger`] loops the bundled chime through the default output
//!   device;
//! - [`LogRinger`] writes a line to stderr, the last resort when there is no
//!   sound at all;
//! - [`FallbackRinger`] tries one of the above and falls back to logging, so
//!   a missing sound card never loses an alarm silently.
//!
//! [`configured_ringer`] picks between them from the configuration.
//!
//! # Ringing and the microphone
//!
//! Voicegate does not listen to its own sounds (see
//! [`HalfDuplex`](crate::audio::HalfDuplex)). The bundled sound mutes the
//! microphone only while the chime itself plays: the gap between two
//! rounds is heard, so "stop" can be said in it (the gap is lengthened so
//! that at least [`HEARD_GAP`] is left after the echo tail). A
//! `ring_command` makes a sound voicegate knows nothing about, so the
//! microphone stays muted for as long as the command runs, unless the
//! configuration says the command is silent (`[alarms]
//! ring_command_audible = false`: a lamp, a phone notification).
//!
//! # The bundled sound
//!
//! `assets/ring.wav` is a two-tone "ding-dong" chime (E5 then C5, with soft
//! bell overtones): 16-bit PCM, mono, 16 kHz, one second, 32 KB. It is
//! embedded in the binary ([`RING_WAV`]) and decoded once, when an
//! [`AudioRinger`] is made. It was written by a generator in this file's
//! tests; to regenerate it run
//!
//! ```text
//! cargo test --lib actions::ring::tests::regenerate_ring_sound -- --ignored
//! ```

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::output::{OutputError, Player};
use crate::audio::{HalfDuplex, Playback};

/// The bundled ring sound: a WAV file (16-bit PCM, mono, 16 kHz).
pub const RING_WAV: &[u8] = include_bytes!("../../assets/ring.wav");

/// The environment variable that tells a ring command what is ringing.
pub const RING_ENV: &str = "VOICEGATE_RING";

/// Silence between two rounds of the chime.
const LOOP_GAP: Duration = Duration::from_millis(600);

/// With the microphone muted while the chime plays, how much of each gap
/// must remain audible after the echo tail: enough for "stop".
pub const HEARD_GAP: Duration = Duration::from_millis(1_200);

/// The gap between two rounds of the bundled sound: [`LOOP_GAP`], or
/// longer when a muted tail would leave less than [`HEARD_GAP`] of it
/// audible.
fn loop_gap(tail: Option<Duration>) -> Duration {
    match tail {
        Some(tail) => LOOP_GAP.max(tail + HEARD_GAP),
        None => LOOP_GAP,
    }
}

/// How long [`CommandRinger::stop`] waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Why ringing could not start.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The ring command could not be started.
    #[error("cannot run the ring command: {0}")]
    Spawn(#[source] std::io::Error),
    /// Waiting for the ring command failed.
    #[error("cannot wait for the ring command: {0}")]
    Wait(#[source] std::io::Error),
    /// The sound could not be played.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The ring sound could not be decoded.
    #[error("ring sound: {0}")]
    Sound(String),
}

/// Something that can make a due alarm or timer heard, and stop again.
pub trait Ringer: Send {
    /// Starts ringing. `what` names what rings (`alarm`, `timer: pasta`; see
    /// [`Entry::ring_text`](crate::actions::alarms::Entry::ring_text)).
    /// Starting while already ringing restarts.
    fn start(&mut self, what: &str) -> Result<(), RingError>;

    /// Stops ringing; does nothing if not ringing.
    fn stop(&mut self);

    /// Looks whether ringing ended by itself (called now and then by the
    /// daemon's loop), so that the microphone is not kept muted for a
    /// command that has exited. Does nothing by default.
    fn check(&mut self) {}
}

// ---------------------------------------------------------------------------
// CommandRinger
// ---------------------------------------------------------------------------

#[cfg(unix)]
use crate::actions::signal;

/// Rings by running a shell command: `sh -c <ring_command>`, with
/// `VOICEGATE_RING=<what>` in its environment, stdin and stdout closed, and
/// stderr inherited.
///
/// The command runs once per ring; to repeat a sound, loop in the command
/// (`while :; do aplay bell.wav; done`). It runs in its own process group,
/// and [`Ringer::stop`] ends the whole group (SIGTERM, then SIGKILL after
/// two seconds), so pipelines and loops stop too. A command that has
/// already finished by itself is not signalled (its group id could have
/// been reused), so background jobs it left behind are on their own.
#[derive(Debug)]
pub struct CommandRinger {
    command: String,
    child: Option<Child>,
    /// Set once the child has been reaped: its pid may be reused from then.
    exited: Option<ExitStatus>,
    /// Mutes the microphone while the command runs (its sound is unknown).
    duplex: Option<Arc<HalfDuplex>>,
    playing: Option<Playback>,
}

impl CommandRinger {
    /// A ringer for `ring_command` (shell syntax).
    pub fn new(ring_command: impl Into<String>) -> Self {
        CommandRinger {
            command: ring_command.into(),
            child: None,
            exited: None,
            duplex: None,
            playing: None,
        }
    }

    /// Mutes the microphone (through `duplex`) while the command runs.
    pub fn audible(mut self, duplex: Arc<HalfDuplex>) -> Self {
        self.duplex = Some(duplex);
        self
    }

    /// The configured command.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether the command is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.poll(), Ok(None)) && self.child.is_some()
    }

    /// Checks (without blocking) whether the command has exited.
    fn poll(&mut self) -> Result<Option<ExitStatus>, RingError> {
        if let Some(status) = self.exited {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait().map_err(RingError::Wait)?;
        self.exited = status;
        if status.is_some() {
            self.playing = None;
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the command to finish by itself. Returns
    /// its exit status, or `None` if it is still running (or none was
    /// started). Polls every 10 ms.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, RingError> {
        if self.child.is_none() {
            return Ok(None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Ringer for CommandRinger {
    fn start(&mut self, what: &str) -> Result<(), RingError> {
        self.stop();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env(RING_ENV, what)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        self.playing = self.duplex.as_ref().map(HalfDuplex::hold);
        match command.spawn() {
            Ok(child) => self.child = Some(child),
            Err(e) => {
                self.playing = None;
                return Err(RingError::Spawn(e));
            }
        }
        self.exited = None;
        Ok(())
    }

    fn check(&mut self) {
        let _ = self.poll();
    }

    fn stop(&mut self) {
        // Dropped when this returns, after the command is gone.
        let _playing = self.playing.take();
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.exited.take().is_some() {
            return;
        }
        // Not reaped yet, so its pid (the group id) cannot have been reused.
        #[cfg(unix)]
        {
            signal::group(child.id(), signal::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            signal::group(child.id(), signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for CommandRinger {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// AudioRinger
// ---------------------------------------------------------------------------

/// Rings by looping a sound through the default audio output device
/// ([`Player`]) until stopped.
///
/// The sound is decoded when the ringer is made and resampled to the
/// device's rate when ringing starts. A stream error after start is
/// recorded ([`AudioRinger::stream_failed`]).
pub struct AudioRinger {
    /// Mono samples in -1.0..=1.0.
    sound: Vec<f32>,
    /// Their sample rate.
    rate: u32,
    player: Option<Player>,
    /// Mutes the microphone while the sound (not the gap) is heard.
    duplex: Option<Arc<HalfDuplex>>,
}

impl std::fmt::Debug for AudioRinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioRinger")
            .field("samples", &self.sound.len())
            .field("rate", &self.rate)
            .field("playing", &self.player.is_some())
            .finish()
    }
}

impl AudioRinger {
    /// A ringer with the bundled chime ([`RING_WAV`]).
    pub fn new() -> Result<Self, RingError> {
        Self::from_wav(RING_WAV)
    }

    /// A ringer with any PCM WAV file (integer or float, any channel
    /// count; channels are mixed down to mono).
    pub fn from_wav(bytes: &[u8]) -> Result<Self, RingError> {
        let (sound, rate) = decode_wav(bytes)?;
        Ok(Self::from_samples(sound, rate))
    }

    /// Mutes the microphone (through `duplex`) while the sound plays, and
    /// leaves a gap long enough to be heard in (see the module docs).
    pub fn muting(mut self, duplex: Arc<HalfDuplex>) -> Self {
        self.duplex = Some(duplex);
        self
    }

    /// A ringer with mono samples in -1.0..=1.0 at `rate` Hz.
    pub fn from_samples(sound: Vec<f32>, rate: u32) -> Self {
        AudioRinger {
            sound,
            rate: rate.max(1),
            player: None,
            duplex: None,
        }
    }

    /// The decoded sound: mono samples and their rate.
    pub fn sound(&self) -> (&[f32], u32) {
        (&self.sound, self.rate)
    }

    /// Whether the output stream reported an error since ringing started.
    pub fn stream_failed(&self) -> bool {
        self.player.as_ref().is_some_and(Player::failed)
    }

    /// Whether a stream is open (ringing).
    pub fn is_ringing(&self) -> bool {
        self.player.is_some()
    }
}

impl Ringer for AudioRinger {
    fn start(&mut self, _what: &str) -> Result<(), RingError> {
        self.stop();
        let gap = loop_gap(self.duplex.as_ref().map(|d| d.tail()));
        let playback = self.duplex.as_ref().map(HalfDuplex::idle_playback);
        self.player = Some(Player::looping(&self.sound, self.rate, gap, playback)?);
        Ok(())
    }

    fn stop(&mut self) {
        self.player = None;
    }
}

/// Decodes a PCM WAV into mono `f32` samples and their rate.
fn decode_wav(bytes: &[u8]) -> Result<(Vec<f32>, u32), RingError> {
    let bad = |e: hound::Error| RingError::Sound(e.to_string());
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(bad)?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        hound::SampleFormat::Int => {
            let bits = u32::from(spec.bits_per_sample.clamp(1, 32));
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(bad)?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    if mono.is_empty() || spec.sample_rate == 0 {
        return Err(RingError::Sound("the sound is empty".into()));
    }
    Ok((mono, spec.sample_rate))
}

// ---------------------------------------------------------------------------
// Logging and fallback
// ---------------------------------------------------------------------------

/// Rings by writing one line to stderr: the last resort when nothing can
/// make a sound, so the event is at least in the daemon's log.
#[derive(Debug, Default)]
pub struct LogRinger;

impl Ringer for LogRinger {
    fn start(&mut self, what: &str) -> Result<(), RingError> {
        eprintln!("voicegate: ringing ({what}), but there is no way to make a sound");
        Ok(())
    }

    fn stop(&mut self) {}
}

/// Tries a ringer, and when it cannot start logs the reason and rings
/// through [`LogRinger`] instead. Its `start` never fails.
pub struct FallbackRinger {
    primary: Option<Box<dyn Ringer>>,
    log: LogRinger,
}

impl std::fmt::Debug for FallbackRinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackRinger")
            .field("has_primary", &self.primary.is_some())
            .finish()
    }
}

impl FallbackRinger {
    /// Falls back from `primary` to logging.
    pub fn new(primary: Box<dyn Ringer>) -> Self {
        FallbackRinger {
            primary: Some(primary),
            log: LogRinger,
        }
    }

    /// Only logs.
    pub fn log_only() -> Self {
        FallbackRinger {
            primary: None,
            log: LogRinger,
        }
    }
}

impl Ringer for FallbackRinger {
    fn start(&mut self, what: &str) -> Result<(), RingError> {
        if let Some(primary) = self.primary.as_mut() {
            match primary.start(what) {
                Ok(()) => return Ok(()),
                Err(e) => eprintln!("voicegate: cannot ring: {e}"),
            }
        }
        self.log.start(what)
    }

    fn stop(&mut self) {
        if let Some(primary) = self.primary.as_mut() {
            primary.stop();
        }
        self.log.stop();
    }

    fn check(&mut self) {
        if let Some(primary) = self.primary.as_mut() {
            primary.check();
        }
    }
}

/// The ringer for a configuration: the `ring_command` if one is set, else
/// the bundled sound through the audio output; either falls back to
/// logging when it cannot start.
///
/// With `duplex`, the microphone is muted while the bundled sound plays
/// (not in its gaps), and for as long as the ring command runs when
/// `command_audible` (its sound is unknown; false for a lamp or a phone).
pub fn configured_ringer(
    ring_command: Option<&str>,
    duplex: Option<&Arc<HalfDuplex>>,
    command_audible: bool,
) -> FallbackRinger {
    match ring_command.map(str::trim).filter(|c| !c.is_empty()) {
        Some(command) => {
            let mut ringer = CommandRinger::new(command);
            if let Some(d) = duplex.filter(|_| command_audible) {
                ringer = ringer.audible(Arc::clone(d));
            }
            FallbackRinger::new(Box::new(ringer))
        }
        None => match AudioRinger::new() {
            Ok(audio) => FallbackRinger::new(Box::new(match duplex {
                Some(d) => audio.muting(Arc::clone(d)),
                None => audio,
            })),
            Err(e) => {
                eprintln!("voicegate: {e}; alarms will only be logged");
                FallbackRinger::log_only()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sound_is_small_mono_16k_and_about_a_second() {
        assert!(RING_WAV.len() < 40 * 1024, "{} bytes", RING_WAV.len());
        let reader = hound::WavReader::new(std::io::Cursor::new(RING_WAV)).unwrap();
        let spec = reader.spec();
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.sample_rate, 16_000);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let seconds = reader.duration() as f32 / 16_000.0;
        assert!((0.8..=1.2).contains(&seconds), "{seconds} s");

        let ringer = AudioRinger::new().unwrap();
        let (sound, rate) = ringer.sound();
        assert_eq!(rate, 16_000);
        let peak = sound.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.3 && peak <= 1.0, "peak {peak}");
    }

    #[test]
    fn audio_ringer_fails_clearly_without_a_device_or_rings() {
        let mut ringer = AudioRinger::new().unwrap();
        match ringer.start("alarm") {
            Ok(()) => {
                assert!(ringer.is_ringing());
                ringer.stop();
                assert!(!ringer.is_ringing());
            }
            Err(e) => assert!(e.to_string().contains("audio output"), "{e}"),
        }
    }

    #[test]
    fn the_gap_leaves_room_to_say_stop_after_the_tail() {
        assert_eq!(loop_gap(None), LOOP_GAP);
        let tail = Duration::from_millis(400);
        assert!(loop_gap(Some(tail)) >= tail + HEARD_GAP);
    }

    #[test]
    fn a_sounding_ring_command_mutes_the_microphone_while_it_runs() {
        let duplex = HalfDuplex::new(Duration::ZERO);
        let mut ringer = CommandRinger::new("sleep 0.3").audible(Arc::clone(&duplex));
        ringer.start("alarm").expect("start");
        assert!(duplex.playing(), "muted while it runs");
        ringer.wait_timeout(Duration::from_secs(5)).expect("wait");
        ringer.check();
        assert!(!duplex.playing(), "released when it exits by itself");
        ringer.start("alarm").expect("start again");
        assert!(duplex.playing());
        ringer.stop();
        assert!(!duplex.playing(), "released when stopped");

        // A silent command (a lamp) leaves the microphone alone.
        let mut lamp = configured_ringer(Some("sleep 0.3"), Some(&duplex), false);
        lamp.start("alarm").expect("start");
        assert!(!duplex.playing());
        lamp.stop();
    }

    #[test]
    fn fallback_never_fails() {
        struct Broken;
        impl Ringer for Broken {
            fn start(&mut self, _: &str) -> Result<(), RingError> {
                Err(RingError::Output(OutputError::NoDevice))
            }
            fn stop(&mut self) {}
        }
        let mut ringer = FallbackRinger::new(Box::new(Broken));
        assert!(ringer.start("alarm").is_ok());
        ringer.stop();
    }

    /// The bundled chime: two bell-like notes (E5, then C5 overlapping its
    /// tail), each a fundamental with two decaying overtones.
    fn chime() -> Vec<i16> {
        const RATE: f32 = 16_000.0;
        const LEN: usize = 16_000;
        let notes = [(659.25f32, 0.0f32), (523.25, 0.42)];
        let partials = [
            (1.0f32, 1.0f32, 0.35f32),
            (2.0, 0.35, 0.18),
            (3.0, 0.12, 0.10),
        ];
        let mut mix = vec![0.0f32; LEN];
        for (freq, start) in notes {
            for (i, out) in mix.iter_mut().enumerate() {
                let t = i as f32 / RATE - start;
                if t < 0.0 {
                    continue;
                }
                let attack = (t / 0.004).min(1.0);
                for (ratio, gain, decay) in partials {
                    let phase = std::f32::consts::TAU * freq * ratio * t;
                    *out += attack * gain * (-t / decay).exp() * phase.sin();
                }
            }
        }
        // Fade the last 30 ms so the loop does not click.
        let fade = (0.03 * RATE) as usize;
        for (k, out) in mix[LEN - fade..].iter_mut().enumerate() {
            *out *= 1.0 - k as f32 / fade as f32;
        }
        let peak = mix.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        mix.iter()
            .map(|s| (s / peak * 0.7 * f32::from(i16::MAX)).round() as i16)
            .collect()
    }

    #[test]
    #[ignore = "writes assets/ring.wav; run by hand to regenerate the bundled sound"]
    fn regenerate_ring_sound() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/ring.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for sample in chime() {
            writer.write_sample(sample).unwrap();
        }
        writer.finalize().unwrap();
    }
}
