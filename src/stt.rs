//! Speech to text: a small synchronous trait, and whisper.cpp behind it.
//!
//! The model is loaded once; each utterance (16 kHz mono f32) is decoded
//! greedily in English with these choices, each measured in the speech
//! benchmark (see the README's figures):
//!
//! - **A shrunk encoder window.** whisper always encodes 30 s; for a 2 s
//!   command that is mostly padding. `audio_ctx` is set to the utterance's
//!   length (50 frames per second, plus a margin), which is several times
//!   faster. It can make the decoder loop on a phrase, so the output is
//!   checked for repetition, and a repeated transcript is decoded again with
//!   the full window.
//! - **A vocabulary prompt.** The initial prompt is a few sentences in the
//!   intents' vocabulary, which biases decoding toward words the intents
//!   know ("americano", "double shot").
//! - **A confidence.** The geometric mean of the text tokens' probabilities,
//!   in 0..1; the gate asks again below its threshold.
//!
//! [`SttThread`] owns the engine on its own thread: inference never runs on
//! an async runtime or on the gate's thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

/// Audio rate the engines take.
pub const SAMPLE_RATE: usize = 16_000;

/// whisper's encoder frames per second of audio.
const FRAMES_PER_SECOND: usize = 50;

/// whisper's full encoder window (30 s).
const FULL_AUDIO_CTX: usize = 1500;

/// Errors from transcription.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The model file could not be loaded.
    #[error(
        "cannot load the whisper model {path}: {reason} (run `voicegate models install tiny.en`, or pass --model PATH)"
    )]
    Load {
        /// The file.
        path: PathBuf,
        /// What whisper said.
        reason: String,
    },
    /// Decoding failed.
    #[error("transcription failed: {0}")]
    Decode(String),
    /// The transcription thread is gone.
    #[error("the transcription thread stopped")]
    Stopped,
}

/// One transcript.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// The text, trimmed.
    pub text: String,
    /// Geometric mean of the text tokens' probabilities (0..1).
    pub confidence: f32,
    /// Seconds of audio.
    pub audio_secs: f32,
    /// Seconds spent decoding.
    pub decode_secs: f32,
    /// The encoder window used (frames; 1500 is the full 30 s).
    pub audio_ctx: usize,
    /// True if a repetition was found and the audio decoded again in full.
    pub retried: bool,
}

/// Something that turns audio into text.
pub trait Transcriber: Send {
    /// Transcribes 16 kHz mono samples.
    fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, SttError>;
}

/// How whisper is run.
#[derive(Debug, Clone)]
pub struct SttOptions {
    /// CPU threads for inference.
    pub threads: usize,
    /// Shrink the encoder window to the utterance.
    pub shrink_window: bool,
    /// Initial prompt (vocabulary bias); empty for none.
    pub prompt: String,
}

impl Default for SttOptions {
    fn default() -> Self {
        SttOptions {
            threads: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
            shrink_window: true,
            prompt: String::new(),
        }
    }
}

/// whisper.cpp through whisper-rs.
pub struct WhisperTranscriber {
    // The state borrows nothing from the context in whisper-rs 0.16 (it
    // holds its own reference), but keep the context alive beside it.
    _ctx: WhisperContext,
    state: WhisperState,
    options: SttOptions,
}

impl WhisperTranscriber {
    /// Loads a ggml model.
    pub fn load(path: &Path, options: SttOptions) -> Result<Self, SttError> {
        let load_err = |reason: String| SttError::Load {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(load_err("no such file".into()));
        }
        let path_str = path
            .to_str()
            .ok_or_else(|| load_err("the path is not UTF-8".into()))?;
        silence_whisper_logs();
        let ctx = WhisperContext::new_with_params(path_str, WhisperContextParameters::default())
            .map_err(|e| load_err(e.to_string()))?;
        let state = ctx.create_state().map_err(|e| load_err(e.to_string()))?;
        Ok(WhisperTranscriber {
            _ctx: ctx,
            state,
            options,
        })
    }

    fn decode(&mut self, samples: &[f32], audio_ctx: usize) -> Result<(String, f32), SttError> {
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.options.threads as i32);
        params.set_language(Some("en"));
        params.set_no_context(true);
        params.set_single_segment(true);
        params.set_no_timestamps(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_temperature(0.0);
        params.set_temperature_inc(0.0);
        if audio_ctx < FULL_AUDIO_CTX {
            params.set_audio_ctx(audio_ctx as i32);
        }
        // A command is a few words; a looping decoder would otherwise run
        // to whisper's limit (224 tokens) and take seconds.
        params.set_max_tokens(max_tokens_for(samples.len()) as i32);
        if !self.options.prompt.is_empty() {
            params.set_initial_prompt(&self.options.prompt);
        }
        // whisper needs at least 1 s of audio; pad short clips with silence.
        let mut padded;
        let audio = if samples.len() < SAMPLE_RATE + SAMPLE_RATE / 10 {
            padded = samples.to_vec();
            padded.resize(SAMPLE_RATE + SAMPLE_RATE / 10, 0.0);
            &padded[..]
        } else {
            samples
        };
        self.state
            .full(params, audio)
            .map_err(|e| SttError::Decode(e.to_string()))?;
        let mut text = String::new();
        let mut log_sum = 0.0f64;
        let mut count = 0usize;
        for segment in self.state.as_iter() {
            text.push_str(
                &segment
                    .to_str_lossy()
                    .map_err(|e| SttError::Decode(e.to_string()))?,
            );
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                let bytes = token.to_str_lossy().unwrap_or_default();
                // Special tokens ([_BEG_], <|endoftext|>, timestamps) are not text.
                if bytes.starts_with("[_") || bytes.starts_with("<|") {
                    continue;
                }
                let p = token.token_probability().clamp(1e-6, 1.0);
                log_sum += f64::from(p).ln();
                count += 1;
            }
        }
        let confidence = if count == 0 {
            0.0
        } else {
            (log_sum / count as f64).exp() as f32
        };
        Ok((text.trim().to_string(), confidence))
    }
}

impl WhisperTranscriber {
    /// One decode with a given encoder window (0: the automatic one), no
    /// retry: for measuring the window's effect.
    pub fn transcribe_with_ctx(
        &mut self,
        samples: &[f32],
        audio_ctx: usize,
    ) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let ctx = if audio_ctx == 0 {
            window_for(samples.len())
        } else {
            audio_ctx
        };
        let (text, confidence) = self.decode(samples, ctx)?;
        Ok(Transcript {
            text,
            confidence,
            audio_secs: samples.len() as f32 / SAMPLE_RATE as f32,
            decode_secs: started.elapsed().as_secs_f32(),
            audio_ctx: ctx,
            retried: false,
        })
    }
}

impl Transcriber for WhisperTranscriber {
    fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let audio_secs = samples.len() as f32 / SAMPLE_RATE as f32;
        let audio_ctx = if self.options.shrink_window {
            window_for(samples.len())
        } else {
            FULL_AUDIO_CTX
        };
        let (mut text, mut confidence) = self.decode(samples, audio_ctx)?;
        let mut retried = false;
        let mut used_ctx = audio_ctx;
        if let Some(once) = collapse_repeats(&text) {
            // The decoder said the same sentence again and again: keep one.
            text = once;
        } else if audio_ctx < FULL_AUDIO_CTX && is_repetitive(&text) {
            (text, confidence) = self.decode(samples, FULL_AUDIO_CTX)?;
            retried = true;
            used_ctx = FULL_AUDIO_CTX;
            if let Some(once) = collapse_repeats(&text) {
                text = once;
            }
        }
        Ok(Transcript {
            text,
            confidence,
            audio_secs,
            decode_secs: started.elapsed().as_secs_f32(),
            audio_ctx: used_ctx,
            retried,
        })
    }
}

/// The smallest encoder window used. Measured on the speech fixtures with
/// tiny.en: windows under ~7 s (350 frames) make the decoder loop on short
/// commands ("Yes. Yes. Yes. ..."); 384 frames (7.7 s) never did.
const MIN_AUDIO_CTX: usize = 384;

/// The encoder window for `samples` of audio: its length in encoder frames
/// plus a margin, at least [`MIN_AUDIO_CTX`].
pub fn window_for(samples: usize) -> usize {
    let frames = samples * FRAMES_PER_SECOND / SAMPLE_RATE;
    (frames + frames / 10 + 32).clamp(MIN_AUDIO_CTX, FULL_AUDIO_CTX)
}

/// The most tokens a command of `samples` can need: fast speech is about 4
/// words (≈ 6 tokens) a second; leave room.
pub fn max_tokens_for(samples: usize) -> usize {
    let secs = samples / SAMPLE_RATE + 1;
    (secs * 8 + 16).min(224)
}

/// "Give me a latte. Give me a latte. Give me a" → "Give me a latte.":
/// when every sentence after the first repeats the first (the last may be
/// cut short by the token cap), the first alone. `None` otherwise.
pub fn collapse_repeats(text: &str) -> Option<String> {
    let mut sentences: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '?' | '!') {
            let piece = text[start..i + c.len_utf8()].trim();
            if !piece.is_empty() {
                sentences.push(piece);
            }
            start = i + c.len_utf8();
        }
    }
    let tail = text[start..].trim();
    let first = *sentences.first()?;
    let rest_count = sentences.len() - 1 + usize::from(!tail.is_empty());
    if rest_count == 0 {
        return None;
    }
    let same = sentences[1..].iter().all(|s| s.eq_ignore_ascii_case(first));
    let tail_ok = tail.is_empty() || first.to_lowercase().starts_with(&tail.to_lowercase());
    (same && tail_ok).then(|| first.to_string())
}

/// True if the text repeats itself the way a looping decoder does: the same
/// word n-gram (n = 1..4) three or more times in a row.
pub fn is_repetitive(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .collect();
    for n in 1..=4 {
        let repeats_needed = if n == 1 { 4 } else { 3 };
        if words.len() < n * repeats_needed {
            continue;
        }
        for start in 0..=words.len() - n * repeats_needed {
            let gram = &words[start..start + n];
            if (1..repeats_needed).all(|k| &words[start + k * n..start + (k + 1) * n] == gram) {
                return true;
            }
        }
    }
    false
}

/// whisper.cpp prints to stderr by default; send it to `log` (which we do
/// not install), so only our own output reaches the terminal.
fn silence_whisper_logs() {
    whisper_rs::install_logging_hooks();
}

type Job = (Vec<f32>, mpsc::Sender<Result<Transcript, SttError>>);

/// A transcriber on its own thread.
pub struct SttThread {
    jobs: Option<mpsc::SyncSender<Job>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl SttThread {
    /// Starts a thread that owns `engine`.
    pub fn start(mut engine: Box<dyn Transcriber>) -> Result<SttThread, SttError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(2);
        let handle = thread::Builder::new()
            .name("voicegate-stt".into())
            .spawn(move || {
                for (samples, reply) in rx {
                    let _ = reply.send(engine.transcribe(&samples));
                }
            })
            .map_err(|e| SttError::Decode(format!("cannot start the transcription thread: {e}")))?;
        Ok(SttThread {
            jobs: Some(tx),
            handle: Some(handle),
        })
    }

    /// Transcribes on the thread and waits for the result.
    pub fn transcribe(&self, samples: Vec<f32>, timeout: Duration) -> Result<Transcript, SttError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .ok_or(SttError::Stopped)?
            .send((samples, tx))
            .map_err(|_| SttError::Stopped)?;
        rx.recv_timeout(timeout).map_err(|_| SttError::Stopped)?
    }
}

impl Drop for SttThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_is_found() {
        for (text, repetitive) in [
            ("set a timer for ten minutes", false),
            ("yes yes yes yes", true),
            ("play some jazz play some jazz play some jazz", true),
            ("a latte, a latte, a latte", true),
            ("ten ten ten", false),
            ("", false),
        ] {
            assert_eq!(is_repetitive(text), repetitive, "{text}");
        }
    }

    #[test]
    fn repeated_sentences_collapse_to_one() {
        for (text, once) in [
            (
                "Give me a latte. Give me a latte. Give me a",
                Some("Give me a latte."),
            ),
            ("Yes. Yes. Yes.", Some("Yes.")),
            (
                "Can I get a mocha? Can I get a mocha?",
                Some("Can I get a mocha?"),
            ),
            ("Set a timer. Cancel it.", None),
            ("Play some jazz.", None),
            ("", None),
        ] {
            assert_eq!(collapse_repeats(text).as_deref(), once, "{text}");
        }
    }

    #[test]
    fn window_follows_the_audio() {
        assert_eq!(window_for(0), MIN_AUDIO_CTX);
        assert_eq!(window_for(10 * SAMPLE_RATE), 500 + 50 + 32);
        assert_eq!(window_for(60 * SAMPLE_RATE), FULL_AUDIO_CTX);
    }
}
