//! Voice activity detection and endpointing: where a spoken command starts
//! and ends.
//!
//! Why it exists: after the wake word, whisper must get exactly the
//! command: from a little before the first word to the pause after the
//! last, not the ten seconds of kitchen noise around it. This is a pure
//! state machine over fixed frames ([`FRAME_SAMPLES`] = 30 ms at 16 kHz): no
//! clock reads (time is the number of samples pushed), no I/O, no threads;
//! the caller owns the loop and feeds every frame, armed or not.
//!
//! The detector ([`Vad`]):
//! - a frame's level is its mean power in dB after a first-order high-pass
//!   at [`DEFAULT_HIGHPASS_HZ`] (rumble and DC are not speech);
//! - the noise floor adapts: it is a low percentile
//!   ([`DEFAULT_FLOOR_PERCENTILE`]) of the levels of the last
//!   [`DEFAULT_FLOOR_WINDOW_MS`] of audio. Speech has gaps, so a low
//!   percentile stays at the noise between words, while a steady new noise
//!   (a fan, a tap) becomes the floor after a few seconds;
//! - a frame may *start* speech if it is [`DEFAULT_START_MARGIN_DB`] above
//!   the floor and above [`DEFAULT_MIN_LEVEL_DBFS`]; speech starts after
//!   [`DEFAULT_START_MS`] of such frames in a row (a click is not a
//!   command). Once speaking, a frame *continues* speech at the lower
//!   [`DEFAULT_CONTINUE_MARGIN_DB`] (hysteresis).
//!
//! The endpointer ([`Endpointer`]) on top:
//! - idle: only tracks the floor and keeps the last [`DEFAULT_PRE_ROLL_MS`]
//!   of audio; [`Endpointer::arm`] (the wake word fired) → listening;
//! - listening: speech start → [`EndpointEvent::SpeechStarted`]; nothing
//!   for [`DEFAULT_NO_SPEECH_TIMEOUT_MS`] → [`EndpointEvent::NoSpeech`] and
//!   back to idle;
//! - speaking: [`DEFAULT_SILENCE_END_MS`] without speech frames (the
//!   hangover) → [`EndpointEvent::Utterance`] ending at the last speech
//!   frame (plus [`DEFAULT_POST_ROLL_MS`]); [`DEFAULT_MAX_UTTERANCE_MS`] of
//!   speech → the utterance is cut there ([`EndReason::MaxLength`]).
//!
//! With [`EndpointConfig::always_armed`] (`--no-wake`) it never idles and
//! never times out: each utterance is handed over as it ends.

/// Sample rate the endpointer expects (the whole audio path's rate).
pub const DEFAULT_SAMPLE_RATE: u32 = 16_000;
/// Frame length in milliseconds.
pub const FRAME_MS: u32 = 30;
/// Frame length in samples at 16 kHz.
pub const FRAME_SAMPLES: usize = 480;

/// Silence after the last speech frame that ends a command.
pub const DEFAULT_SILENCE_END_MS: u32 = 600;
/// Longest command; longer speech is cut here.
pub const DEFAULT_MAX_UTTERANCE_MS: u32 = 10_000;
/// After arming, how long to wait for speech to start.
pub const DEFAULT_NO_SPEECH_TIMEOUT_MS: u32 = 5_000;
/// Audio kept before the detected start (soft onsets, the first consonant).
pub const DEFAULT_PRE_ROLL_MS: u32 = 300;
/// Audio kept after the last speech frame (soft endings).
pub const DEFAULT_POST_ROLL_MS: u32 = 200;

/// Level above the floor at which a frame may start speech.
pub const DEFAULT_START_MARGIN_DB: f32 = 10.0;
/// Level above the floor at which a frame keeps speech going.
pub const DEFAULT_CONTINUE_MARGIN_DB: f32 = 6.0;
/// Speech-like frames in a row (in ms) needed to start speech.
pub const DEFAULT_START_MS: u32 = 90;
/// Absolute level below which nothing is speech (digital near-silence).
pub const DEFAULT_MIN_LEVEL_DBFS: f32 = -55.0;
/// Length of the history the noise floor is taken from.
pub const DEFAULT_FLOOR_WINDOW_MS: u32 = 5_000;
/// Which percentile of that history is the floor.
pub const DEFAULT_FLOOR_PERCENTILE: f32 = 0.10;
/// High-pass corner applied before measuring levels.
pub const DEFAULT_HIGHPASS_HZ: f32 = 100.0;

/// The lowest level reported (the level of digital silence).
const SILENCE_DB: f32 = -100.0;

/// Voice-activity detector settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// dB above the noise floor for a frame to start speech.
    pub start_margin_db: f32,
    /// dB above the noise floor for a frame to continue speech.
    pub continue_margin_db: f32,
    /// Milliseconds of start-level frames in a row that start speech.
    pub start_ms: u32,
    /// Absolute minimum level of a speech frame, dB full scale.
    pub min_level_dbfs: f32,
    /// Milliseconds of frame levels the floor is estimated from.
    pub floor_window_ms: u32,
    /// Percentile (0–1) of those levels taken as the floor.
    pub floor_percentile: f32,
    /// High-pass corner frequency in Hz (0 disables it).
    pub highpass_hz: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            start_margin_db: DEFAULT_START_MARGIN_DB,
            continue_margin_db: DEFAULT_CONTINUE_MARGIN_DB,
            start_ms: DEFAULT_START_MS,
            min_level_dbfs: DEFAULT_MIN_LEVEL_DBFS,
            floor_window_ms: DEFAULT_FLOOR_WINDOW_MS,
            floor_percentile: DEFAULT_FLOOR_PERCENTILE,
            highpass_hz: DEFAULT_HIGHPASS_HZ,
        }
    }
}

/// Endpointer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Sample rate of the frames, Hz.
    pub sample_rate: u32,
    /// Silence (ms) after the last speech frame that ends an utterance.
    pub silence_end_ms: u32,
    /// Longest utterance (ms from the start of speech).
    pub max_utterance_ms: u32,
    /// After [`Endpointer::arm`], how long (ms) to wait for speech.
    pub no_speech_timeout_ms: u32,
    /// Audio (ms) included before the detected start.
    pub pre_roll_ms: u32,
    /// Audio (ms) included after the last speech frame.
    pub post_roll_ms: u32,
    /// `--no-wake`: always listening, every utterance handed over, no
    /// timeout.
    pub always_armed: bool,
    /// The detector's settings.
    pub vad: VadConfig,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            sample_rate: DEFAULT_SAMPLE_RATE,
            silence_end_ms: DEFAULT_SILENCE_END_MS,
            max_utterance_ms: DEFAULT_MAX_UTTERANCE_MS,
            no_speech_timeout_ms: DEFAULT_NO_SPEECH_TIMEOUT_MS,
            pre_roll_ms: DEFAULT_PRE_ROLL_MS,
            post_roll_ms: DEFAULT_POST_ROLL_MS,
            always_armed: false,
            vad: VadConfig::default(),
        }
    }
}

impl EndpointConfig {
    /// The defaults in always-armed mode (`--no-wake`).
    pub fn always_armed() -> Self {
        EndpointConfig {
            always_armed: true,
            ..EndpointConfig::default()
        }
    }

    fn samples(&self, ms: u32) -> u64 {
        u64::from(ms) * u64::from(self.sample_rate) / 1000
    }
}

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The configured silence followed the last speech.
    Silence,
    /// Speech went on for the maximum length and was cut.
    MaxLength,
}

/// A detected command: the audio to transcribe and where it lies in the
/// stream (positions count samples pushed since the endpointer was made).
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The audio, from the pre-roll before the start of speech to the
    /// post-roll after its end.
    pub samples: Vec<f32>,
    /// Why it ended.
    pub reason: EndReason,
    /// Stream position of `samples[0]`.
    pub start_sample: u64,
    /// Stream position of the first speech frame.
    pub speech_start: u64,
    /// Stream position just after the last speech frame (where it was cut,
    /// for [`EndReason::MaxLength`]).
    pub speech_end: u64,
}

/// What [`Endpointer::push`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEvent {
    /// Speech has started (it began at stream position `at_sample`).
    SpeechStarted {
        /// Stream position of the first speech frame.
        at_sample: u64,
    },
    /// An utterance is complete.
    Utterance(Utterance),
    /// Armed, but no speech came within the timeout; back to idle.
    NoSpeech,
}

/// Where the endpointer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// Not armed: tracking the noise floor and the pre-roll only.
    Idle,
    /// Armed (or always armed), waiting for speech.
    Listening,
    /// Inside an utterance.
    Speaking,
}

/// One frame's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLevel {
    /// The frame's level, dB full scale (after the high-pass).
    pub level_db: f32,
    /// The noise floor it was compared with, dB full scale.
    pub floor_db: f32,
    /// Loud enough to start speech.
    pub starts: bool,
    /// Loud enough to continue speech.
    pub continues: bool,
}

/// The frame classifier: level against an adaptive noise floor.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    /// High-pass coefficient and state.
    hp_a: f32,
    hp_x: f32,
    hp_y: f32,
    /// Ring of recent frame levels.
    levels: Vec<f32>,
    levels_next: usize,
    levels_len: usize,
    scratch: Vec<f32>,
    floor_db: f32,
}

impl Vad {
    /// A detector for frames at `sample_rate`.
    pub fn new(config: VadConfig, sample_rate: u32) -> Self {
        let window = (config.floor_window_ms / FRAME_MS).max(1) as usize;
        let hp_a = if config.highpass_hz > 0.0 && sample_rate > 0 {
            let rc = 1.0 / (2.0 * std::f32::consts::PI * config.highpass_hz);
            let dt = 1.0 / sample_rate as f32;
            rc / (rc + dt)
        } else {
            1.0
        };
        Vad {
            config,
            hp_a,
            hp_x: 0.0,
            hp_y: 0.0,
            levels: vec![SILENCE_DB; window],
            levels_next: 0,
            levels_len: 0,
            scratch: Vec::with_capacity(window),
            floor_db: f32::INFINITY,
        }
    }

    /// The current noise floor estimate, dB full scale (`+∞` before the
    /// first frame).
    pub fn floor_db(&self) -> f32 {
        self.floor_db
    }

    /// Measures `frame`, compares it with the floor so far, then adds it to
    /// the floor's history.
    pub fn analyze(&mut self, frame: &[f32]) -> FrameLevel {
        let level_db = self.level(frame);
        let floor_db = self.floor_db;
        let loud = level_db >= self.config.min_level_dbfs;
        let starts = loud && level_db >= floor_db + self.config.start_margin_db;
        let continues = loud && level_db >= floor_db + self.config.continue_margin_db;
        self.remember(level_db);
        FrameLevel {
            level_db,
            floor_db,
            starts,
            continues,
        }
    }

    fn level(&mut self, frame: &[f32]) -> f32 {
        if frame.is_empty() {
            return SILENCE_DB;
        }
        let mut power = 0.0f64;
        let a = self.hp_a;
        for &x in frame {
            let x = if x.is_finite() { x } else { 0.0 };
            let y = if a < 1.0 {
                a * (self.hp_y + x - self.hp_x)
            } else {
                x
            };
            self.hp_x = x;
            self.hp_y = y;
            power += f64::from(y) * f64::from(y);
        }
        let mean = power / frame.len() as f64;
        (10.0 * (mean + 1e-10).log10()).max(f64::from(SILENCE_DB)) as f32
    }

    fn remember(&mut self, level_db: f32) {
        let window = self.levels.len();
        self.levels[self.levels_next] = level_db;
        self.levels_next = (self.levels_next + 1) % window;
        self.levels_len = (self.levels_len + 1).min(window);
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.levels[..self.levels_len]);
        let p = self.config.floor_percentile.clamp(0.0, 1.0);
        let k = ((self.levels_len - 1) as f32 * p).round() as usize;
        let (_, value, _) = self.scratch.select_nth_unstable_by(k, f32::total_cmp);
        self.floor_db = *value;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Listening {
        armed_at: u64,
    },
    Speaking {
        start: u64,
        last_voiced_end: u64,
        silence: u64,
    },
}

/// The endpointer: push every frame, get events. See the module docs.
#[derive(Debug, Clone)]
pub struct Endpointer {
    config: EndpointConfig,
    vad: Vad,
    phase: Phase,
    /// Samples pushed so far (the position of the next sample).
    pos: u64,
    /// Recent audio; `buf[0]` is at stream position `buf_start`.
    buf: Vec<f32>,
    buf_start: u64,
    /// The current run of start-level frames: where it began, how long.
    run_start: u64,
    run_len: u64,
    last: Option<FrameLevel>,
}

impl Endpointer {
    /// A new endpointer, idle (or listening, if `config.always_armed`).
    pub fn new(config: EndpointConfig) -> Self {
        let vad = Vad::new(config.vad.clone(), config.sample_rate);
        let capacity = config.samples(
            config
                .pre_roll_ms
                .saturating_add(config.max_utterance_ms)
                .saturating_add(config.silence_end_ms)
                .saturating_add(config.post_roll_ms)
                .saturating_add(4 * FRAME_MS)
                .min(120_000),
        ) as usize;
        let phase = if config.always_armed {
            Phase::Listening { armed_at: 0 }
        } else {
            Phase::Idle
        };
        Endpointer {
            config,
            vad,
            phase,
            pos: 0,
            buf: Vec::with_capacity(capacity),
            buf_start: 0,
            run_start: 0,
            run_len: 0,
            last: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Where the endpointer is.
    pub fn state(&self) -> EndpointState {
        match self.phase {
            Phase::Idle => EndpointState::Idle,
            Phase::Listening { .. } => EndpointState::Listening,
            Phase::Speaking { .. } => EndpointState::Speaking,
        }
    }

    /// Samples pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The last frame's measurements (for logs and tuning).
    pub fn last_frame(&self) -> Option<FrameLevel> {
        self.last
    }

    /// The wake word fired: start listening for a command now. The
    /// no-speech timeout counts from here. Speech already under way counts
    /// (its start may lie just before this call). No effect while speaking.
    pub fn arm(&mut self) {
        if !matches!(self.phase, Phase::Speaking { .. }) {
            self.phase = Phase::Listening { armed_at: self.pos };
        }
    }

    /// Back to idle, dropping any utterance in progress (no effect when
    /// always armed, other than dropping the utterance).
    pub fn disarm(&mut self) {
        self.phase = if self.config.always_armed {
            Phase::Listening { armed_at: self.pos }
        } else {
            Phase::Idle
        };
        self.trim_idle();
    }

    /// Feeds one frame (meant to be [`FRAME_SAMPLES`] long; time advances
    /// by its length whatever it is). Returns at most one event.
    pub fn push(&mut self, frame: &[f32]) -> Option<EndpointEvent> {
        let frame_start = self.pos;
        self.pos += frame.len() as u64;
        self.buf.extend_from_slice(frame);
        let level = self.vad.analyze(frame);
        self.last = Some(level);

        if level.starts {
            if self.run_len == 0 {
                self.run_start = frame_start;
            }
            self.run_len += frame.len() as u64;
        } else {
            self.run_len = 0;
        }

        let event = match self.phase {
            Phase::Idle => None,
            Phase::Listening { armed_at } => {
                if self.run_len > 0 && self.run_len >= self.config.samples(self.config.vad.start_ms)
                {
                    // A run that began long before (while idle) starts no
                    // earlier than the audio still buffered allows.
                    let earliest = self.buf_start + self.config.samples(self.config.pre_roll_ms);
                    let start = self.run_start.max(earliest.min(frame_start));
                    self.phase = Phase::Speaking {
                        start,
                        last_voiced_end: self.pos,
                        silence: 0,
                    };
                    Some(EndpointEvent::SpeechStarted { at_sample: start })
                } else if !self.config.always_armed
                    && self.run_len == 0
                    && self.pos - armed_at >= self.config.samples(self.config.no_speech_timeout_ms)
                {
                    self.phase = Phase::Idle;
                    Some(EndpointEvent::NoSpeech)
                } else {
                    None
                }
            }
            Phase::Speaking {
                start,
                mut last_voiced_end,
                mut silence,
            } => {
                if level.continues {
                    last_voiced_end = self.pos;
                    silence = 0;
                } else {
                    silence += frame.len() as u64;
                }
                self.phase = Phase::Speaking {
                    start,
                    last_voiced_end,
                    silence,
                };
                if silence >= self.config.samples(self.config.silence_end_ms).max(1) {
                    Some(self.finish(start, last_voiced_end, EndReason::Silence))
                } else if self.pos - start >= self.config.samples(self.config.max_utterance_ms) {
                    Some(self.finish(start, self.pos, EndReason::MaxLength))
                } else {
                    None
                }
            }
        };
        if !matches!(self.phase, Phase::Speaking { .. }) {
            self.trim_idle();
        }
        event
    }

    /// Cuts the utterance out of the buffer and moves on.
    fn finish(&mut self, start: u64, end: u64, reason: EndReason) -> EndpointEvent {
        let from = start
            .saturating_sub(self.config.samples(self.config.pre_roll_ms))
            .max(self.buf_start);
        let to = end
            .saturating_add(self.config.samples(self.config.post_roll_ms))
            .min(self.pos);
        let samples = self.buf[(from - self.buf_start) as usize..(to - self.buf_start) as usize]
            .to_vec();
        self.phase = if self.config.always_armed {
            Phase::Listening { armed_at: self.pos }
        } else {
            Phase::Idle
        };
        // After a cut at the maximum length, speech that goes on must build
        // a new start run rather than restart at once.
        self.run_len = 0;
        EndpointEvent::Utterance(Utterance {
            samples,
            reason,
            start_sample: from,
            speech_start: start,
            speech_end: end,
        })
    }

    /// Keeps only what a future utterance can need: the pre-roll and the
    /// start run (in amortised O(1): drained when twice that size).
    fn trim_idle(&mut self) {
        let keep = (self.config.samples(self.config.pre_roll_ms)
            + self
                .config
                .samples(self.config.vad.start_ms)
                .max(self.run_len)
                .min(self.config.samples(self.config.max_utterance_ms))
            + 2 * FRAME_SAMPLES as u64) as usize;
        if self.buf.len() > 2 * keep {
            let drop = self.buf.len() - keep;
            self.buf.drain(..drop);
            self.buf_start += drop as u64;
        }
    }
}
