//! The wake-word detector: a cascade of two stages over 30 ms frames.
//!
//! 1. **rustpotter** (always on, cheap): a small neural model over MFCC
//!    frames, tuned to be permissive. It fires on the wake word and, now
//!    and then, on something that sounds a bit like it.
//! 2. **whisper** (only when stage 1 fires): the last
//!    [`VERIFY_WINDOW_MS`] of audio are decoded with the decoder *forced*
//!    through the phrase's tokens (" Jarvis"), and the mean log-probability
//!    of those tokens is the verdict. Free transcription would throw away
//!    most of the evidence (whisper tiny.en writes "jarv…" for only 58 of 82
//!    real clips); the forced score keeps it. See docs/design/wakeword.md for the
//!    figures that chose this shape.
//!
//! The detector is synchronous and owns no thread: the caller feeds every
//! frame (`push`) and the verifier is a small trait, so the daemon can put
//! whisper on its own thread and `wakeword test` can call it directly. Both
//! use this same type, so the benchmark measures what the daemon runs.

use crate::stt::prompt::whisper_spelling;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustpotter::{Rustpotter, RustpotterConfig, SampleFormat, ScoreMode};

use super::WakewordError;

/// Samples per frame (30 ms at 16 kHz), the same as the endpointer's.
pub const FRAME_SAMPLES: usize = 480;

/// Audio handed to the verifier: this much before the moment stage 1
/// fires. Long enough for a slowly spoken two-syllable keyword plus the
/// stage-1 delay, short enough to keep the encoder cheap.
pub const VERIFY_WINDOW_MS: u32 = 2_000;

/// Stage 2 runs this long after stage 1 fires, so that the window holds
/// the end of the keyword even when stage 1 fires early (eager mode fires
/// on the first few positive frames, which can be mid-word).
pub const VERIFY_DELAY_MS: u32 = 300;

/// After a detection, stage-1 triggers are ignored for this long (one
/// keyword must not wake twice).
pub const REFRACTORY_MS: u32 = 1_000;

/// Amplitude of the uniform noise added before stage 1. Many recordings
/// (and microphones behind a noise gate) contain stretches of exact digital
/// zero, which give rustpotter's MFCCs extreme values the model never saw:
/// on the real "jarvis" validation clips stage 1 found 18 of 34 without
/// this dither and 34 of 34 with it (about −70 dBFS, inaudible).
pub const DITHER: f32 = 3e-4;

/// Default sensitivity of a wake word (0: strictest, 1: most permissive).
pub const DEFAULT_SENSITIVITY: f32 = 0.5;

/// Stage-1 settings: rustpotter's detector options, permissive on purpose
/// (whisper has the last word).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Settings {
    /// Per-frame score threshold (rustpotter `threshold`).
    pub threshold: f32,
    /// Averaged-score threshold (rustpotter `avg_threshold`; 0 disables).
    pub avg_threshold: f32,
    /// Positive frames needed (rustpotter `min_scores`).
    pub min_scores: usize,
    /// Fire as soon as `min_scores` is reached instead of waiting for the
    /// score to peak (lower latency).
    pub eager: bool,
}

impl Default for Stage1Settings {
    /// Chosen on the real recordings (see docs/design/wakeword.md): every
    /// validation "jarvis" fires, at under one trigger per 10 s of most
    /// other speech.
    fn default() -> Self {
        Stage1Settings {
            threshold: 0.5,
            avg_threshold: 0.0,
            min_scores: 10,
            eager: true,
        }
    }
}

/// One wake word the detector listens for.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeWord {
    /// The stage-1 model (a rustpotter `.rpw` file).
    pub model: PathBuf,
    /// The phrase whisper verifies ("jarvis").
    pub phrase: String,
    /// 0..1; higher wakes more easily (moves the verifier's threshold).
    pub sensitivity: f32,
    /// Stage-1 settings for this word.
    pub stage1: Stage1Settings,
}

impl WakeWord {
    /// A wake word with default settings; the phrase is read from the
    /// model's manifest (`FILE.json`, written by `wakeword train`) when
    /// `phrase` is `None`.
    pub fn from_model(model: &Path, phrase: Option<&str>) -> Result<WakeWord, WakewordError> {
        let phrase = match phrase {
            Some(p) => p.to_string(),
            None => phrase_from_manifest(model)?,
        };
        Ok(WakeWord {
            model: model.to_path_buf(),
            phrase,
            sensitivity: DEFAULT_SENSITIVITY,
            stage1: Stage1Settings::default(),
        })
    }

    /// The verifier's threshold on the mean log-probability of the
    /// phrase's tokens. Sensitivity 0.5 gives −9: on the real recordings
    /// every "jarvis" scored above −8 and every other keyword and coffee
    /// order below −10.6 (see docs/design/wakeword.md).
    pub fn verify_threshold(&self) -> f32 {
        -4.0 - 10.0 * self.sensitivity.clamp(0.0, 1.0)
    }
}

/// Reads the phrase from `MODEL.json` beside a model.
pub fn phrase_from_manifest(model: &Path) -> Result<String, WakewordError> {
    let manifest = manifest_path(model);
    let text = std::fs::read_to_string(&manifest).map_err(|e| WakewordError::Load {
        path: model.to_path_buf(),
        reason: format!(
            "no phrase given and its manifest {} cannot be read ({e}); pass the phrase",
            manifest.display()
        ),
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| WakewordError::Load {
            path: manifest.clone(),
            reason: format!("not JSON: {e}"),
        })?;
    value
        .get("phrase")
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .ok_or_else(|| WakewordError::Load {
            path: manifest,
            reason: "no \"phrase\" in the manifest".into(),
        })
}

/// `models/jarvis.rpw` → `models/jarvis.rpw.json`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The second stage: how well does a phrase explain some audio?
pub trait Verifier {
    /// Mean natural-log probability of `phrase`'s tokens when the decoder
    /// is forced through them on `samples` (16 kHz mono).
    fn score(&mut self, samples: &[f32], phrase: &str) -> Result<f32, WakewordError>;
}

impl Verifier for crate::stt::WhisperTranscriber {
    fn score(&mut self, samples: &[f32], phrase: &str) -> Result<f32, WakewordError> {
        use crate::stt::Transcriber;
        self.phrase_logprob(samples, &whisper_spelling(phrase))
            .map_err(|e| WakewordError::Verify(e.to_string()))
    }
}

/// The daemon's verifier: whisper on the transcription thread, which
/// already holds the model for commands (shared with the audio thread's
/// transcriptions).
impl Verifier for std::sync::Arc<crate::stt::SttThread> {
    fn score(&mut self, samples: &[f32], phrase: &str) -> Result<f32, WakewordError> {
        self.phrase_logprob(
            samples.to_vec(),
            &whisper_spelling(phrase),
            Duration::from_secs(30),
        )
        .map_err(|e| WakewordError::Verify(e.to_string()))
    }
}

/// A wake word was heard (both stages agreed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    /// The phrase.
    pub phrase: String,
    /// Stage 1's score (rustpotter, 0..1).
    pub stage1_score: f32,
    /// Stage 2's mean log-probability of the phrase's tokens.
    pub logprob: f32,
    /// The wake score: exp(logprob), the phrase's mean token probability
    /// (0..1). This is what the audit log records.
    pub score: f32,
    /// Stream position (samples) when it fired.
    pub at_sample: u64,
    /// How much audio (samples, ending at `at_sample`) was verified: the
    /// wake word lies within it, at its start.
    pub window_samples: u64,
}

/// A stage-1 trigger that whisper rejected (kept for `wakeword test`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    /// The phrase.
    pub phrase: String,
    /// Stage 1's score.
    pub stage1_score: f32,
    /// Stage 2's mean log-probability.
    pub logprob: f32,
    /// Stream position (samples).
    pub at_sample: u64,
}

/// What one frame produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing.
    Nothing,
    /// Stage 1 fired and whisper confirmed.
    Detected(Detection),
    /// Stage 1 fired and whisper said no.
    Rejected(Rejected),
}

/// Counters for measurement.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Frames pushed.
    pub frames: u64,
    /// Stage-1 triggers (each one a verification).
    pub stage1_triggers: u64,
    /// Confirmed detections.
    pub detections: u64,
    /// Wall time spent in the verifier.
    #[serde(skip)]
    pub verify_time: Duration,
}

struct Spotter {
    word: WakeWord,
    engine: Rustpotter,
}

/// The two-stage detector. See the module docs.
pub struct Detector<V: Verifier> {
    spotters: Vec<Spotter>,
    verifier: V,
    /// The last [`VERIFY_WINDOW_MS`] of audio.
    history: VecDeque<f32>,
    history_len: usize,
    pos: u64,
    quiet_until: u64,
    /// Stage 1 fired: verify at this position, each word's best stage-1
    /// score so far (`None`: that word did not fire).
    pending: Option<(u64, Vec<Option<f32>>)>,
    /// State of the dither's generator (xorshift32; fixed seed, so a file
    /// gives the same result every run).
    dither: u32,
    stats: Stats,
}

impl<V: Verifier> Detector<V> {
    /// Loads every word's stage-1 model. Errors name the file.
    pub fn new(words: &[WakeWord], verifier: V) -> Result<Self, WakewordError> {
        if words.is_empty() {
            return Err(WakewordError::Usage("no wake word configured".into()));
        }
        let spotters = words
            .iter()
            .map(|w| {
                Ok(Spotter {
                    engine: load_stage1(w)?,
                    word: w.clone(),
                })
            })
            .collect::<Result<Vec<_>, WakewordError>>()?;
        let history_len = (VERIFY_WINDOW_MS as usize) * 16;
        let mut detector = Detector {
            spotters,
            verifier,
            history: VecDeque::with_capacity(history_len + FRAME_SAMPLES),
            history_len,
            pos: 0,
            quiet_until: 0,
            pending: None,
            dither: DITHER_SEED,
            stats: Stats::default(),
        };
        detector.prime();
        Ok(detector)
    }

    /// The words listened for.
    pub fn words(&self) -> impl Iterator<Item = &WakeWord> {
        self.spotters.iter().map(|s| &s.word)
    }

    /// Samples pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The verifier (the daemon lends its whisper thread handle here).
    pub fn verifier_mut(&mut self) -> &mut V {
        &mut self.verifier
    }

    /// Forgets the audio and any partial stage-1 detection (a new file, or
    /// after a command: the command's words must not wake it).
    pub fn reset(&mut self) {
        self.history.clear();
        self.pending = None;
        self.dither = DITHER_SEED;
        for s in &mut self.spotters {
            s.engine.reset();
        }
        self.prime();
    }

    /// Fills stage 1's window with (dithered) silence. rustpotter scores
    /// nothing until its window is full (about 1.5 s), so without this a
    /// keyword in the first second after a start or a reset could never
    /// be found: the stream is treated as if it had been quiet before.
    fn prime(&mut self) {
        let silence = [0.0f32; FRAME_SAMPLES];
        for _ in 0..PRIME_MS / 30 {
            let frame = self.dithered(&silence);
            for s in &mut self.spotters {
                let _ = s.engine.process_samples(frame.clone());
            }
        }
    }

    /// `frame` plus the dither (see [`DITHER`]).
    fn dithered(&mut self, frame: &[f32]) -> Vec<f32> {
        let mut out = frame.to_vec();
        for x in &mut out {
            self.dither ^= self.dither << 13;
            self.dither ^= self.dither >> 17;
            self.dither ^= self.dither << 5;
            *x += DITHER * (self.dither as f32 / u32::MAX as f32 * 2.0 - 1.0);
        }
        out
    }

    /// Feeds one frame of [`FRAME_SAMPLES`] samples (shorter frames are
    /// padded with silence). Runs stage 1 on it and, when stage 1 fires,
    /// stage 2 on the last [`VERIFY_WINDOW_MS`].
    pub fn push(&mut self, frame: &[f32]) -> Result<Outcome, WakewordError> {
        let mut owned;
        let frame = if frame.len() == FRAME_SAMPLES {
            frame
        } else {
            owned = frame.to_vec();
            owned.resize(FRAME_SAMPLES, 0.0);
            &owned[..]
        };
        self.pos += FRAME_SAMPLES as u64;
        self.stats.frames += 1;
        self.history.extend(frame.iter().copied());
        let excess = self.history.len().saturating_sub(self.history_len);
        self.history.drain(..excess);

        let dithered = self.dithered(frame);
        let n = self.spotters.len();
        for (i, s) in self.spotters.iter_mut().enumerate() {
            let Some(d) = s.engine.process_samples(dithered.clone()) else {
                continue;
            };
            if self.pos < self.quiet_until {
                continue;
            }
            let (_, scores) = self.pending.get_or_insert_with(|| {
                let at = self.pos + u64::from(VERIFY_DELAY_MS) * 16;
                (at, vec![None; n])
            });
            if scores.iter().all(Option::is_none) {
                self.stats.stage1_triggers += 1;
            }
            if scores[i].is_none_or(|best| d.score > best) {
                scores[i] = Some(d.score);
            }
        }
        match &self.pending {
            Some((at, _)) if self.pos >= *at => self.verify_pending(),
            _ => Ok(Outcome::Nothing),
        }
    }

    /// Stage 2 for every word whose stage 1 fired, best stage-1 score
    /// first; the first the verifier accepts wins. (Two words may fire on
    /// the same audio; checking only the top one would lose the other.)
    fn verify_pending(&mut self) -> Result<Outcome, WakewordError> {
        let Some((_, scores)) = self.pending.take() else {
            return Ok(Outcome::Nothing);
        };
        let mut candidates: Vec<(usize, f32)> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut outcome = Outcome::Nothing;
        for (i, score) in candidates {
            outcome = self.verify(i, score)?;
            if matches!(outcome, Outcome::Detected(_)) {
                break;
            }
        }
        Ok(outcome)
    }

    /// Stage 2 on the buffered audio.
    fn verify(&mut self, i: usize, stage1_score: f32) -> Result<Outcome, WakewordError> {
        let word = &self.spotters[i].word;
        let phrase = word.phrase.clone();
        let threshold = word.verify_threshold();
        let audio: Vec<f32> = self.history.iter().copied().collect();
        let started = std::time::Instant::now();
        let logprob = self.verifier.score(&audio, &phrase)?;
        self.stats.verify_time += started.elapsed();
        if logprob >= threshold {
            self.stats.detections += 1;
            self.quiet_until = self.pos + u64::from(REFRACTORY_MS) * 16;
            for s in &mut self.spotters {
                s.engine.reset();
            }
            Ok(Outcome::Detected(Detection {
                phrase,
                stage1_score,
                logprob,
                score: logprob.exp(),
                at_sample: self.pos,
                window_samples: audio.len() as u64,
            }))
        } else {
            Ok(Outcome::Rejected(Rejected {
                phrase,
                stage1_score,
                logprob,
                at_sample: self.pos,
            }))
        }
    }

    /// The input ended: a trigger still waiting for its delay is verified
    /// now, on what there is.
    pub fn finish(&mut self) -> Result<Outcome, WakewordError> {
        self.verify_pending()
    }
}

const DITHER_SEED: u32 = 0x9E37_79B9;

/// Silence fed to stage 1 after a start or reset (longer than any model's
/// window).
const PRIME_MS: usize = 2_400;

/// Loads one stage-1 model into its own rustpotter instance.
fn load_stage1(word: &WakeWord) -> Result<Rustpotter, WakewordError> {
    let load_err = |reason: String| WakewordError::Load {
        path: word.model.clone(),
        reason,
    };
    let bytes = std::fs::read(&word.model).map_err(|e| load_err(e.to_string()))?;
    let mut config = RustpotterConfig::default();
    config.fmt.sample_rate = crate::audio::SAMPLE_RATE as usize;
    config.fmt.sample_format = SampleFormat::F32;
    config.fmt.channels = 1;
    config.detector.threshold = word.stage1.threshold;
    config.detector.avg_threshold = word.stage1.avg_threshold;
    config.detector.min_scores = word.stage1.min_scores;
    config.detector.eager = word.stage1.eager;
    config.detector.score_mode = ScoreMode::Max;
    let mut engine = Rustpotter::new(&config).map_err(load_err)?;
    // rustpotter decodes the file with unwraps in places; a damaged file
    // must be an error, not a crash of the daemon.
    let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.add_wakeword_from_buffer("wakeword", &bytes)
    }));
    match added {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(load_err(format!("not a rustpotter wake word file ({e})"))),
        Err(_) => return Err(load_err("the file is damaged".into())),
    }
    if engine.get_samples_per_frame() != FRAME_SAMPLES {
        return Err(load_err(format!(
            "unexpected frame size {}",
            engine.get_samples_per_frame()
        )));
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_spells_a_phrase_capitalised_after_a_space() {
        assert_eq!(whisper_spelling("jarvis"), " Jarvis");
        assert_eq!(whisper_spelling("  hey computer "), " Hey computer");
        assert_eq!(whisper_spelling(""), "");
    }

    #[test]
    fn sensitivity_moves_the_threshold_within_bounds() {
        let mut w = WakeWord {
            model: PathBuf::from("x.rpw"),
            phrase: "jarvis".into(),
            sensitivity: 0.5,
            stage1: Stage1Settings::default(),
        };
        assert_eq!(w.verify_threshold(), -9.0);
        w.sensitivity = 7.0;
        assert_eq!(w.verify_threshold(), -14.0);
        w.sensitivity = -1.0;
        assert_eq!(w.verify_threshold(), -4.0);
    }

    #[test]
    fn a_damaged_model_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.rpw");
        std::fs::write(&path, b"\xa4not a model at all").unwrap();
        let w = WakeWord {
            model: path.clone(),
            phrase: "jarvis".into(),
            sensitivity: 0.5,
            stage1: Stage1Settings::default(),
        };
        let err = load_stage1(&w).err().expect("must fail").to_string();
        assert!(err.contains("bad.rpw"), "{err}");
        let missing = WakeWord {
            model: dir.path().join("missing.rpw"),
            ..w
        };
        let err = load_stage1(&missing).err().expect("must fail").to_string();
        assert!(err.contains("missing.rpw"), "{err}");
    }
}
