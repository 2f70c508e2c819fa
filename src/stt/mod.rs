//! Speech to text: a small synchronous trait, and whisper.cpp behind it.
//!
//! The model is loaded once; each utterance (16 kHz mono f32) is decoded in
//! English with these choices, each measured in the speech benchmark (see
//! the README's figures and ARCHITECTURE.md):
//!
//! - **A grammar** ([`SttGrammar`], the daemon's default): the loaded
//!   intents' sentences as an automaton (`intent::grammar`), through which
//!   `GrammarDecode` forbids every token leaving it or breaking how
//!   whisper spells a sentence (`Shape`). whisper-rs 0.16's own
//!   `FullParams::set_grammar` cannot be used: it hands whisper.cpp a flat
//!   element array where a table of per-rule pointers is expected.
//! - **Our own search** with the grammar (`stt/beam.rs`): whisper.cpp
//!   encodes, and a deterministic beam search drives its decoder token by
//!   token. whisper.cpp's own beam search samples its candidates instead of
//!   taking the best ones, so a wider beam bought nothing. Greedy first; a
//!   reading below [`SttOptions::beam_below`] is searched again with the
//!   beam ([`SttOptions::beam`]) over the same encoding.
//! - **A shrunk encoder window.** whisper always encodes 30 s; for a 2 s
//!   command that is mostly padding. `audio_ctx` is set to the utterance's
//!   length (50 frames per second, plus a margin), which is several times
//!   faster. Free decoding can loop with it, so its output is checked for
//!   repetition, and a repeated transcript is decoded again with the full
//!   window; an unsure one ([`SttOptions::retry_below`]) too.
//! - **A vocabulary prompt** (free decoding): a few sentences in the
//!   intents' vocabulary bias decoding toward words the intents know.
//! - **A confidence.** The geometric mean of the text tokens' probabilities,
//!   in 0..1, as the *unconstrained* model gives them (the grammar's
//!   renormalisation taken back out), so a sentence the decoder was pushed
//!   into scores low; the gate asks again below its threshold.
//!
//! [`SttThread`] owns the engine on its own thread: inference never runs on
//! an async runtime or on the gate's thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperSysState,
};

use crate::intent::grammar::{Char, Cursor, Dfa, Grammar, GrammarOptions, Shape, symbol};

mod beam;
pub mod model;

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
        "cannot load the whisper model {path}: {reason} (run `voicegate models install {default}`, or pass --model PATH)",
        default = crate::stt::model::DEFAULT_MODEL
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
    /// whisper.cpp ran a forced decode with several decoders (its logits
    /// callback saw a decoding step twice). The forced decode follows one
    /// sequence and its bookkeeping is not shared between decoders, so the
    /// result is refused.
    #[error("transcription failed: whisper ran a forced decode with several decoders, not one")]
    SeveralDecoders,
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

    /// How well `phrase` explains the start of `samples`: the mean
    /// log-probability of its tokens with the decoder forced through them
    /// (the wake word's second stage).
    fn phrase_logprob(&mut self, samples: &[f32], phrase: &str) -> Result<f32, SttError>;

    /// Transcribes without the intents' grammar, whatever the options say:
    /// for a reply that is not a sentence of any intent (a spoken PIN).
    fn transcribe_free(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
        self.transcribe(samples)
    }

    /// Replaces the grammar decoding is constrained to (the intent files
    /// were reloaded); `None` decodes freely from now on. Engines without
    /// a grammar ignore it.
    fn set_grammar(&mut self, _grammar: Option<SttGrammar>) {}
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
    /// Constrain decoding to the intents' sentences (see [`SttGrammar`]).
    pub grammar: Option<SttGrammar>,
    /// The smallest shrunk encoder window, in frames (see [`MIN_AUDIO_CTX`]).
    pub min_audio_ctx: usize,
    /// Hypotheses kept by beam search; 1 decodes greedily.
    pub beam: usize,
    /// Below this confidence, a shrunk-window transcript is decoded again
    /// with the full window and the surer of the two kept (0: never).
    pub retry_below: f32,
    /// Grammar decoding reads greedily first; a reading below this
    /// confidence is searched again with the full beam (1: always the
    /// beam, 0: never).
    pub beam_below: f32,
    /// A second, bigger model for unsure readings: when set, a reading
    /// still below `retry_below` after the full-window retry is decoded
    /// again with this model (same settings), and the surer one is kept.
    pub fallback_model: Option<PathBuf>,
}

/// Grammar-constrained decoding: while the transcript so far can still
/// become a sentence of `grammar`, every vocabulary token that would leave
/// the grammar has `penalty` taken off its logit (and so does
/// end-of-text while the sentence is unfinished). A hypothesis that leaves
/// the grammar anyway ends there. The transcript's confidence
/// is computed from the probabilities *before* the penalty, so a sentence
/// the grammar pushed the decoder into does not look surer than it was.
#[derive(Debug, Clone)]
pub struct SttGrammar {
    /// The sentences.
    pub grammar: Grammar,
    /// What went into it (to build it again when the intents change).
    pub options: GrammarOptions,
    /// Logit penalty for leaving the grammar; infinite forbids it.
    pub penalty: f32,
}

impl SttGrammar {
    /// The grammar of `intents`, built like this one (same options and
    /// penalty): for when the intent files are reloaded.
    pub fn rebuilt(&self, intents: &crate::intent::IntentSet) -> SttGrammar {
        SttGrammar {
            grammar: Grammar::build(intents.definitions(), &self.options),
            options: self.options.clone(),
            penalty: self.penalty,
        }
    }
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
            grammar: None,
            min_audio_ctx: MIN_AUDIO_CTX,
            beam: 1,
            retry_below: 0.0,
            beam_below: 1.0,
            fallback_model: None,
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
    /// The grammar's decoding state, if decoding is constrained; boxed so
    /// its address is stable while whisper's callback holds it.
    grammar: Option<Box<GrammarDecode>>,
    /// The model for unsure readings ([`SttOptions::fallback_model`]).
    fallback: Option<Box<WhisperTranscriber>>,
    /// What the decoder is given before the transcript: start of
    /// transcript, English and "transcribe" on a multilingual model, no
    /// timestamps; the initial prompt before them, if there is one.
    prompt: Vec<i32>,
    /// The bare-space token, never a transcript's first.
    blank: Option<i32>,
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
        let grammar = options
            .grammar
            .as_ref()
            .map(|g| Box::new(GrammarDecode::new(&ctx, g)));
        let fallback = match &options.fallback_model {
            Some(path) => Some(Box::new(WhisperTranscriber::load(
                path,
                SttOptions {
                    fallback_model: None,
                    ..options.clone()
                },
            )?)),
            None => None,
        };
        let prompt = decoder_prompt(&ctx, &options.prompt).map_err(load_err)?;
        let blank = match ctx.tokenize(" ", 4).as_deref() {
            Ok([blank]) => Some(*blank),
            _ => None,
        };
        Ok(WhisperTranscriber {
            _ctx: ctx,
            state,
            options,
            grammar,
            fallback,
            prompt,
            blank,
        })
    }

    fn decode(&mut self, samples: &[f32], audio_ctx: usize) -> Result<(String, f32), SttError> {
        if self.grammar.is_some() {
            return self.decode_in_grammar(samples, audio_ctx);
        }
        let mut params = greedy_params(self.options.threads);
        if self.options.beam > 1 {
            params = decode_params(
                self.options.threads,
                SamplingStrategy::BeamSearch {
                    beam_size: self.options.beam as i32,
                    patience: -1.0,
                },
            );
        }
        if audio_ctx < FULL_AUDIO_CTX {
            params.set_audio_ctx(audio_ctx as i32);
        }
        // A command is a few words; a looping decoder would otherwise run
        // to whisper's limit (224 tokens) and take seconds.
        params.set_max_tokens(max_tokens_for(samples.len()) as i32);
        if !self.options.prompt.is_empty() {
            params.set_initial_prompt(&self.options.prompt);
        }
        let audio = padded_to_whisper_minimum(samples);
        if self.options.beam > 1 {
            // (Free decoding with --beam only; the grammar has its own
            // search.) whisper.cpp's beam search draws each beam's candidates from
            // the token distribution with a per-decoder generator, and the
            // first decoder's generator is seeded only when a state is
            // created: reused, a state makes the transcript depend on how
            // many decodes came before it (at 6 dB the same clip read
            // "Give me a dark rose latte ..." alone and "I'm awake" after
            // another clip). A fresh state per decode makes the same audio
            // give the same text. (Upstream fixed this in whisper.cpp
            // PR 4025; the whisper-rs-sys we build predates it.)
            self.state = self
                ._ctx
                .create_state()
                .map_err(|e| SttError::Decode(e.to_string()))?;
        }
        self.state
            .full(params, &audio)
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
                log_sum += f64::from(p.ln());
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

    /// Decodes within the grammar with our own search (`stt/beam.rs`):
    /// whisper.cpp encodes the audio (its `full`, told to end at once),
    /// then the search drives whisper's decoder token by token. Greedy
    /// first (one decoder pass per token); a reading below
    /// [`SttOptions::beam_below`] is searched again with the full beam,
    /// which costs several passes per token, over the same encoding.
    fn decode_in_grammar(
        &mut self,
        samples: &[f32],
        audio_ctx: usize,
    ) -> Result<(String, f32), SttError> {
        let encoded = self.encode_only(samples, audio_ctx)?;
        let max_tokens = max_tokens_for(samples.len());
        let mut reading = self.search_in_grammar(encoded, 1, max_tokens)?;
        if self.options.beam > 1 && reading.1 < self.options.beam_below {
            reading = self.search_in_grammar(encoded, self.options.beam, max_tokens)?;
        }
        Ok(reading)
    }

    /// Runs whisper's encoder on `samples` (and its decoder on the prompt
    /// only), leaving the state ready for [`Self::search_in_grammar`], to
    /// which it returns the whisper.cpp state it ran on.
    fn encode_only(&mut self, samples: &[f32], audio_ctx: usize) -> Result<SysState, SttError> {
        let audio = padded_to_whisper_minimum(samples);
        let mut end_at_once = ForcedDecode::new(
            self._ctx.n_vocab().max(0) as usize,
            vec![self._ctx.token_eot()],
        );
        self.full_forced(
            self.options.threads,
            |params| {
                if audio_ctx < FULL_AUDIO_CTX {
                    params.set_audio_ctx(audio_ctx as i32);
                }
                params.set_max_tokens(1);
            },
            &audio,
            &mut end_at_once,
        )?;
        end_at_once.state.map(SysState).ok_or_else(|| {
            SttError::Decode("whisper never reached the decoder (no logits callback)".into())
        })
    }

    /// whisper's `full` with its decoder forced through `forced.tokens`
    /// (each one's log-probability recorded in `forced.logprobs`), with
    /// [`greedy_params`] changed by `configure`. Greedy with `best_of` 1 is
    /// one decoder whatever the temperature, which the forced decode needs
    /// (its callback keeps one sequence's bookkeeping, and several
    /// decoders may call it from several threads); a decode that ran more
    /// than one anyway is [`SttError::SeveralDecoders`].
    fn full_forced(
        &mut self,
        threads: usize,
        configure: impl FnOnce(&mut FullParams<'_, '_>),
        audio: &[f32],
        forced: &mut ForcedDecode,
    ) -> Result<(), SttError> {
        self.full_forced_with(
            SamplingStrategy::Greedy { best_of: 1 },
            threads,
            configure,
            audio,
            forced,
        )
    }

    /// [`Self::full_forced`] with any strategy: only tests pass another, to
    /// check that several decoders are caught.
    fn full_forced_with(
        &mut self,
        strategy: SamplingStrategy,
        threads: usize,
        configure: impl FnOnce(&mut FullParams<'_, '_>),
        audio: &[f32],
        forced: &mut ForcedDecode,
    ) -> Result<(), SttError> {
        let mut params = decode_params(threads, strategy);
        configure(&mut params);
        forced.restart();
        // SAFETY: the callback only touches `logits` and `forced`, which
        // outlives `full` and is not touched by anything else meanwhile.
        unsafe {
            params.set_filter_logits_callback(Some(force_phrase));
            params.set_filter_logits_callback_user_data(
                forced as *mut ForcedDecode as *mut std::os::raw::c_void,
            );
        }
        self.state
            .full(params, audio)
            .map_err(|e| SttError::Decode(e.to_string()))?;
        if forced.repeated_step {
            return Err(SttError::SeveralDecoders);
        }
        Ok(())
    }

    /// The best reading within the grammar of the audio last encoded, with
    /// a beam of `beam`, and its confidence.
    fn search_in_grammar(
        &mut self,
        encoded: SysState,
        beam: usize,
        max_tokens: usize,
    ) -> Result<(String, f32), SttError> {
        let Some(grammar) = self.grammar.as_deref_mut() else {
            return Err(SttError::Decode("no grammar to decode in".into()));
        };
        grammar.reset();
        let eot = self._ctx.token_eot();
        let blank = self.blank;
        let mut model = WhisperNext {
            state: &mut self.state,
            sys: encoded,
            prompt: &self.prompt,
            cached: Vec::new(),
            threads: DECODER_THREADS,
        };
        let constrain = |tokens: &[i32], logits: &mut [f32]| {
            if tokens.is_empty() {
                // whisper's blank suppression: neither a bare space nor an
                // empty transcript to begin with.
                for t in [Some(eot), blank].into_iter().flatten() {
                    if let Some(l) = usize::try_from(t).ok().and_then(|t| logits.get_mut(t)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            grammar.step(tokens, logits);
        };
        let config = beam::BeamConfig {
            beam,
            max_tokens,
            eot,
        };
        let Some(best) = beam::search(&mut model, constrain, config)? else {
            return Ok((String::new(), 0.0));
        };
        let mut bytes = Vec::new();
        for &t in &best.tokens {
            bytes.extend_from_slice(self._ctx.token_to_bytes(t).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        // The model's own belief in the reading, the grammar's steering
        // taken out: a sentence the grammar pushed it into scores low.
        let confidence = if best.raw_logprobs.is_empty() {
            0.0
        } else {
            let floor = 1e-6f32.ln();
            let sum: f64 = best
                .raw_logprobs
                .iter()
                .map(|&l| f64::from(l.max(floor)))
                .sum();
            (sum / best.raw_logprobs.len() as f64).exp() as f32
        };
        Ok((text, confidence))
    }
}

/// The tokens whisper.cpp's `full` puts before a transcript, as it
/// builds them: the initial prompt after "previous text", then start of
/// transcript, language and task (multilingual models only), and "no
/// timestamps".
fn decoder_prompt(ctx: &WhisperContext, initial: &str) -> Result<Vec<i32>, String> {
    let mut prompt = Vec::new();
    if !initial.is_empty() {
        prompt.push(ctx.token_prev());
        let tokens = ctx
            .tokenize(initial, 224)
            .map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
        prompt.extend(tokens);
    }
    prompt.push(ctx.token_sot());
    if ctx.is_multilingual() {
        let en = whisper_rs::get_lang_id("en").ok_or("whisper has no English")?;
        prompt.push(ctx.token_lang(en));
        prompt.push(ctx.token_transcribe());
    }
    prompt.push(ctx.token_not());
    Ok(prompt)
}

/// whisper needs at least 1 s of audio: shorter clips are padded with silence.
/// A confidence the gate can compare: anything that is not a finite
/// number in 0..=1 (a NaN from a degenerate decode, say) becomes 0, "unsure".
/// The gate treats non-finite values as unsure too; this keeps the events
/// and the audit log free of them.
fn sane_confidence(c: f32) -> f32 {
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn padded_to_whisper_minimum(samples: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    let min_len = SAMPLE_RATE + SAMPLE_RATE / 10;
    if samples.len() < min_len {
        let mut padded = samples.to_vec();
        padded.resize(min_len, 0.0);
        padded.into()
    } else {
        samples.into()
    }
}

/// whisper's decoder as a [`beam::NextToken`]: the prompt, then the
/// hypothesis. whisper.cpp keeps one sequence in its cache; a call
/// decodes only what differs from the previous call's sequence (the cache
/// is cut back to the shared prefix), so the hypotheses of a beam, which
/// share all but their last few tokens, cost a token or two each.
struct WhisperNext<'a> {
    state: &'a mut WhisperState,
    /// The whisper.cpp state behind `state`, from [`WhisperTranscriber::encode_only`].
    sys: SysState,
    /// The start-of-transcript tokens (and an initial prompt, if any).
    prompt: &'a [i32],
    /// The sequence in the decoder's cache, prompt included.
    cached: Vec<i32>,
    threads: usize,
}

impl beam::NextToken for WhisperNext<'_> {
    type Error = SttError;

    fn next_logits(&mut self, tokens: &[i32]) -> Result<Vec<f32>, SttError> {
        let sequence: Vec<i32> = self.prompt.iter().chain(tokens).copied().collect();
        let shared = self
            .cached
            .iter()
            .zip(&sequence)
            .take_while(|(a, b)| a == b)
            .count();
        // At least the last token is decoded: its logits are the ones wanted.
        let n_past = shared.min(sequence.len().saturating_sub(1));
        let n_new = sequence.len() - n_past;
        self.cached.clear();
        self.state
            .decode(&sequence[n_past..], n_past, self.threads)
            .map_err(|e| SttError::Decode(e.to_string()))?;
        self.cached = sequence;
        // whisper-rs hands out only the first row of logits, as a slice of
        // n_vocab: a pointer from it may not reach the rows after it. The
        // base pointer comes from whisper.cpp itself instead.
        let n_vocab = usize::try_from(self.state.n_vocab())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| SttError::Decode("the model has no vocabulary".into()))?;
        let len = n_new
            .checked_mul(n_vocab)
            .ok_or_else(|| SttError::Decode("too many tokens in one decode".into()))?;
        // SAFETY: `self.sys` is the `whisper_state` that whisper.cpp passed
        // to the logits callback while `encode_only` ran `full` on
        // `self.state`, i.e. the state `self.state` owns: whisper_full_with_state
        // hands its own `state` to the callback. It was captured in the same
        // `decode_in_grammar` call that built this `WhisperNext`, with
        // nothing in between that replaces the `WhisperState` (only
        // `transcribe_free` does); from then on `self.state` is borrowed
        // exclusively for this `WhisperNext`'s life, so the C state is
        // neither freed (only `WhisperState`'s drop frees it) nor replaced
        // nor used by anyone else (`WhisperTranscriber` lives on one
        // thread). whisper-rs keeps no Rust reference into the C++ object,
        // so reading through the raw pointer aliases none.
        let base = unsafe { whisper_rs_sys::whisper_get_logits_from_state(self.sys.0.as_ptr()) };
        // The same buffer as whisper-rs's own accessor, or `sys` is not
        // this state's (a bug: refuse rather than read another buffer).
        let own = self
            .state
            .get_logits()
            .map_err(|e| SttError::Decode(e.to_string()))?
            .as_ptr();
        if base.is_null() || !std::ptr::eq(base, own) {
            return Err(SttError::Decode(
                "the logits are not the decoding state's own".into(),
            ));
        }
        // SAFETY: whisper.cpp (the version the pinned whisper-rs-sys 0.15.0
        // builds) resizes the state's `logits` vector to n_tokens * n_vocab
        // floats in whisper_decode_internal, n_tokens being the n_new just
        // decoded, and fills row n_tokens - 1 (the only one asked for); a
        // std::vector's floats are all initialised. The vector is not
        // touched again until the next decode, after this copy.
        // `the_last_row_is_the_last_tokens` checks the layout against a
        // decode of the last token alone.
        let rows = unsafe { std::slice::from_raw_parts(base, len) };
        rows.chunks_exact(n_vocab)
            .next_back()
            .map(<[f32]>::to_vec)
            .ok_or_else(|| SttError::Decode("a decode of no tokens".into()))
    }
}

/// The whisper.cpp state behind a [`WhisperState`], as whisper.cpp's logits
/// callback received it (whisper-rs keeps the pointer private). Valid only
/// while that `WhisperState` lives and is not replaced: so it is used only
/// within the decode that captured it, by [`WhisperNext`], while it
/// borrows that `WhisperState`.
#[derive(Debug, Clone, Copy)]
struct SysState(std::ptr::NonNull<WhisperSysState>);

/// What grammar-bound decoding needs: the automaton, each vocabulary
/// token's text, and what it has learnt about the hypotheses seen so far.
///
/// The beam search asks for one step of one hypothesis at a time, in no
/// fixed order: so nothing here assumes one growing sequence. Each call
/// names its hypothesis (the tokens chosen so far), whose grammar cursor and
/// text shape are looked up from its parent's (computed one step earlier).
struct GrammarDecode {
    /// Characters of each text token (ids below end-of-text), classified
    /// for the grammar and as written, for [`Shape`].
    tokens: Vec<(Box<[Char]>, Box<str>)>,
    eot: i32,
    penalty: f32,
    dfa: Dfa,
    /// The DFA's start, taken once per decode (taking it may rebuild the DFA).
    start: Cursor,
    /// Where each hypothesis seen has got to; `None` once it left the
    /// grammar (decoding is then ended).
    at: HashMap<Vec<i32>, Option<(Cursor, Shape)>>,
    /// For each grammar position met, the tokens the grammar allows there
    /// (before the spelling rules): most positions allow a few dozen of
    /// the 51 864, so each step after the first visit is cheap.
    /// With each, whether the sentence is complete after it (a full stop
    /// may only come there).
    allowed: HashMap<Cursor, std::sync::Arc<[(u32, bool)]>>,
}

impl GrammarDecode {
    fn new(ctx: &WhisperContext, g: &SttGrammar) -> GrammarDecode {
        let eot = ctx.token_eot();
        let tokens = (0..eot)
            .map(|id| match ctx.token_to_bytes(id) {
                Ok(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => (text.chars().map(symbol).collect(), text.into()),
                    // Part of a multi-byte character: not in the alphabet.
                    Err(_) => (vec![Char::Invalid].into_boxed_slice(), "".into()),
                },
                Err(_) => (vec![Char::Invalid].into_boxed_slice(), "".into()),
            })
            .collect();
        let mut dfa = Dfa::new(g.grammar.clone());
        GrammarDecode {
            tokens,
            eot,
            penalty: g.penalty,
            start: dfa.start(),
            dfa,
            at: HashMap::new(),
            allowed: HashMap::new(),
        }
    }

    fn reset(&mut self) {
        self.at.clear();
        // The DFA starts afresh when it has grown too big; positions
        // cached for the old one mean nothing then.
        let before = self.dfa.states();
        self.start = self.dfa.start();
        if self.dfa.states() < before {
            self.allowed.clear();
        }
    }

    /// Where `sequence` has got to, from its parent's position.
    fn position(&mut self, sequence: &[i32]) -> Option<(Cursor, Shape)> {
        if let Some(&at) = self.at.get(sequence) {
            return at;
        }
        let at = match sequence.split_last() {
            None => Some((self.start, Shape::default())),
            Some((&last, parent)) => self.position(parent).and_then(|(cursor, shape)| {
                match usize::try_from(last).ok().and_then(|i| self.tokens.get(i)) {
                    Some((chars, text)) => {
                        let cursor = self.dfa.feed_chars(cursor, chars);
                        let shape = shape.feed_str(text)?;
                        (!cursor.is_dead()).then_some((cursor, shape))
                    }
                    // Special tokens (timestamps) are not text.
                    None => Some((cursor, shape)),
                }
            }),
        };
        self.at.insert(sequence.to_vec(), at);
        at
    }

    /// One decoding step of one hypothesis: `sequence` is its tokens so
    /// far, `logits` the next token's up to and including end-of-text.
    fn step(&mut self, sequence: &[i32], logits: &mut [f32]) {
        let eot = self.eot as usize;
        let Some((cursor, shape)) = self.position(sequence) else {
            // Left the grammar (cannot happen while the penalty is
            // infinite): end here; the matcher will not understand it.
            end_now(logits, eot);
            return;
        };
        let in_grammar = match self.allowed.get(&cursor) {
            Some(ids) => ids.clone(),
            None => {
                let dfa = &mut self.dfa;
                let ids: std::sync::Arc<[(u32, bool)]> = self
                    .tokens
                    .iter()
                    .enumerate()
                    .filter(|(_, (chars, _))| !chars.is_empty())
                    .filter_map(|(id, (chars, _))| {
                        let next = dfa.feed_chars(cursor, chars);
                        (!next.is_dead()).then(|| (id as u32, dfa.is_accepting(next)))
                    })
                    .collect();
                self.allowed.insert(cursor, ids.clone());
                ids
            }
        };
        // Penalise everything, then give the tokens that fit their logits back.
        let text_tokens = self.tokens.len().min(logits.len());
        let original: Vec<(usize, f32)> = in_grammar
            .iter()
            .map(|&(id, complete)| (id as usize, complete))
            .filter(|&(id, _)| id < text_tokens && logits[id].is_finite())
            .filter(|&(id, complete)| {
                // Spelt the way whisper writes, and a full stop only where
                // the sentence is complete (else it is a dead end).
                shape
                    .feed_str(&self.tokens[id].1)
                    .is_some_and(|s| complete || !s.ends_sentence())
            })
            .map(|(id, _)| (id, logits[id]))
            .collect();
        for l in &mut logits[..text_tokens] {
            if self.penalty.is_infinite() {
                *l = f32::NEG_INFINITY;
            } else {
                *l -= self.penalty;
            }
        }
        for (id, l) in original {
            logits[id] = l;
        }
        if eot < logits.len() && !self.dfa.is_accepting(cursor) {
            if self.penalty.is_infinite() {
                logits[eot] = f32::NEG_INFINITY;
            } else {
                logits[eot] -= self.penalty;
            }
        }
        // With nothing allowed (and an infinite penalty) every logit is now
        // −∞, and the search drops the hypothesis: a dead end.
    }
}

/// Leaves end-of-text as the only choice.
fn end_now(logits: &mut [f32], eot: usize) {
    for l in logits.iter_mut() {
        *l = f32::NEG_INFINITY;
    }
    if let Some(l) = logits.get_mut(eot) {
        *l = 0.0;
    }
}

/// How well a phrase explains a clip: whisper's decoder is forced through
/// the phrase's tokens and the log-probability of each is recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhraseScore {
    /// Mean natural-log probability of the phrase's tokens (≤ 0).
    pub mean_logprob: f32,
    /// The lowest single-token log-probability.
    pub min_logprob: f32,
    /// Seconds spent.
    pub secs: f32,
}

/// What the logits callback needs: the tokens to force and where to put
/// their log-probabilities; and what it saw of whisper.cpp.
struct ForcedDecode {
    n_vocab: usize,
    tokens: Vec<i32>,
    logprobs: Vec<f32>,
    /// The whisper.cpp state `full` runs on, as the callback was given it.
    state: Option<std::ptr::NonNull<WhisperSysState>>,
    /// The decoding step (tokens so far) of the callback's latest call.
    last_step: Option<usize>,
    /// Whether a call came for a step no later than the one before: with
    /// one decoder every call is one step further, so this means several
    /// decoders (or a decode run again), which the forced decode cannot
    /// follow.
    repeated_step: bool,
}

impl ForcedDecode {
    fn new(n_vocab: usize, tokens: Vec<i32>) -> ForcedDecode {
        ForcedDecode {
            n_vocab,
            logprobs: Vec::with_capacity(tokens.len()),
            tokens,
            state: None,
            last_step: None,
            repeated_step: false,
        }
    }

    /// Forgets what an earlier `full` left, before another.
    fn restart(&mut self) {
        self.logprobs.clear();
        self.state = None;
        self.last_step = None;
        self.repeated_step = false;
    }
}

/// whisper.cpp calls this once per decoding step with the next token's
/// logits (blank and special tokens already suppressed). It records the
/// log-probability of the phrase's next token, then leaves only that token
/// possible so that greedy decoding follows the phrase.
unsafe extern "C" fn force_phrase(
    _ctx: *mut whisper_rs::WhisperSysContext,
    state: *mut whisper_rs::WhisperSysState,
    _tokens: *const whisper_rs::WhisperTokenData,
    n_tokens: std::os::raw::c_int,
    logits: *mut f32,
    user_data: *mut std::os::raw::c_void,
) {
    if user_data.is_null() || logits.is_null() {
        return;
    }
    // SAFETY: user_data is the `ForcedDecode` that `full_forced` is lent
    // (and does not touch) for the duration of `full`, which calls us
    // on its own thread; logits has n_vocab entries.
    let forced = unsafe { &mut *(user_data as *mut ForcedDecode) };
    if forced.state.is_none() {
        forced.state = std::ptr::NonNull::new(state);
    }
    let step = n_tokens.max(0) as usize;
    // One decoder asks once per step, each step one token further. (A
    // panic cannot cross into C: `full_forced` reports this instead.)
    if forced.last_step.is_some_and(|last| step <= last) {
        forced.repeated_step = true;
    }
    forced.last_step = Some(step);
    let Some(&target) = forced.tokens.get(step) else {
        return;
    };
    let n_vocab = forced.n_vocab;
    if target < 0 || target as usize >= n_vocab {
        return;
    }
    let logits = unsafe { std::slice::from_raw_parts_mut(logits, n_vocab) };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from(l - max).exp())
        .sum();
    let target_logit = logits
        .get(target as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let logprob = if target_logit.is_finite() && sum > 0.0 {
        (f64::from(target_logit - max) - sum.ln()) as f32
    } else {
        -100.0
    };
    if forced.logprobs.len() == step {
        forced.logprobs.push(logprob);
    }
    for (i, l) in logits.iter_mut().enumerate() {
        if i != target as usize {
            *l = f32::NEG_INFINITY;
        }
    }
    logits[target as usize] = 0.0;
}

impl WhisperTranscriber {
    /// The phrase's tokens as whisper spells it after the start of a
    /// transcript (" Jarvis").
    pub fn phrase_tokens(&self, phrase: &str) -> Result<Vec<i32>, SttError> {
        self._ctx
            .tokenize(phrase, 64)
            .map_err(|e| SttError::Decode(format!("cannot tokenize {phrase:?}: {e}")))
    }

    /// Scores how well `tokens` (from [`Self::phrase_tokens`]) transcribe
    /// the start of `samples`, with the encoder window shrunk to the clip.
    pub fn score_phrase(
        &mut self,
        samples: &[f32],
        tokens: &[i32],
        prompt: Option<&str>,
    ) -> Result<PhraseScore, SttError> {
        let started = Instant::now();
        // whisper-rs panics on a prompt with a NUL (it makes a C string).
        if prompt.is_some_and(|p| p.contains('\0')) {
            return Err(SttError::Decode(
                "the prompt contains a NUL character".into(),
            ));
        }
        let mut forced = ForcedDecode::new(self._ctx.n_vocab().max(0) as usize, tokens.to_vec());
        let padded = padded_to_whisper_minimum(samples);
        let frames = padded.len() * FRAMES_PER_SECOND / SAMPLE_RATE;
        // One thread: a check of a 2 s window is small enough that a second
        // thread mostly spins (measured: the same CPU time or more), and the
        // wake word's budget is CPU, not latency.
        self.full_forced(
            1,
            |params| {
                params.set_max_tokens(tokens.len() as i32);
                if let Some(prompt) = prompt {
                    params.set_initial_prompt(prompt);
                }
                params.set_audio_ctx((frames + 16).min(FULL_AUDIO_CTX) as i32);
            },
            &padded,
            &mut forced,
        )?;
        let mut lp = forced.logprobs.clone();
        lp.resize(tokens.len(), -100.0);
        let mean = lp.iter().sum::<f32>() / lp.len().max(1) as f32;
        let min = lp.iter().copied().fold(0.0f32, f32::min);
        Ok(PhraseScore {
            mean_logprob: mean,
            min_logprob: min,
            secs: started.elapsed().as_secs_f32(),
        })
    }
}

impl Transcriber for WhisperTranscriber {
    fn phrase_logprob(&mut self, samples: &[f32], phrase: &str) -> Result<f32, SttError> {
        let tokens = self.phrase_tokens(phrase)?;
        Ok(self.score_phrase(samples, &tokens, None)?.mean_logprob)
    }

    fn transcribe_free(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
        // Neither the grammar nor the fallback (which has the grammar too).
        let grammar = self.grammar.take();
        let fallback = self.fallback.take();
        let result = self.transcribe(samples);
        self.grammar = grammar;
        self.fallback = fallback;
        result
    }

    fn set_grammar(&mut self, grammar: Option<SttGrammar>) {
        if let Some(fallback) = &mut self.fallback {
            fallback.set_grammar(grammar.clone());
        }
        self.grammar = grammar
            .as_ref()
            .map(|g| Box::new(GrammarDecode::new(&self._ctx, g)));
        self.options.grammar = grammar;
    }

    fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let audio_secs = samples.len() as f32 / SAMPLE_RATE as f32;
        let audio_ctx = if self.options.shrink_window {
            window_with_min(samples.len(), self.options.min_audio_ctx)
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
        } else if audio_ctx < FULL_AUDIO_CTX && confidence < self.options.retry_below {
            // Unsure (whisper's own decoder falls back on a low mean
            // log-probability too): decode once more with the full window,
            // which hears the clip differently, and keep the surer reading.
            let (again, again_conf) = self.decode(samples, FULL_AUDIO_CTX)?;
            retried = true;
            if again_conf > confidence && collapse_repeats(&again).is_none() {
                (text, confidence) = (again, again_conf);
                used_ctx = FULL_AUDIO_CTX;
            }
        }
        if confidence < self.options.retry_below
            && let Some(fallback) = &mut self.fallback
        {
            // Still unsure, and a bigger model is at hand: ask it (it runs
            // its own window and retry), and keep the surer reading.
            let again = fallback.transcribe(samples)?;
            retried = true;
            if again.confidence > confidence {
                (text, confidence) = (again.text, again.confidence);
                used_ctx = again.audio_ctx;
            }
        }
        Ok(Transcript {
            text,
            confidence: sane_confidence(confidence),
            audio_secs,
            decode_secs: started.elapsed().as_secs_f32(),
            audio_ctx: used_ctx,
            retried,
        })
    }
}

/// The settings every decode shares: greedy, English, one segment, no
/// timestamps, no temperature fallback, nothing printed.
fn greedy_params<'a, 'b>(threads: usize) -> FullParams<'a, 'b> {
    decode_params(threads, SamplingStrategy::Greedy { best_of: 1 })
}

/// [`greedy_params`] with another sampling strategy.
fn decode_params<'a, 'b>(threads: usize, strategy: SamplingStrategy) -> FullParams<'a, 'b> {
    let mut params = FullParams::new(strategy);
    params.set_n_threads(threads as i32);
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
    params
}

/// Threads for each decoder pass of the grammar's search (the encoder
/// uses [`SttOptions::threads`]). A pass is a small graph, and ggml's
/// threads spin at every step of it waiting for each other: when another
/// process wants the CPU, a waiting thread is descheduled and every pass
/// stalls. Measured on the 2-core machine, the hardest 6 dB clip with the
/// fallback model: alone 10.2 s with 2 decoder threads, 14.2 s with 1; two
/// such decodes at once, 358 s with 2, 22 s with 1. The clean benchmark's
/// p50 goes from 129 to 162 ms: we take that for a daemon that shares its
/// machine.
const DECODER_THREADS: usize = 1;

/// The smallest encoder window used. Measured on the speech fixtures with
/// tiny.en: windows under ~7 s (350 frames) make the decoder loop on short
/// commands ("Yes. Yes. Yes. ..."); 384 frames (7.7 s) never did.
pub const MIN_AUDIO_CTX: usize = 384;

/// The encoder window for `samples` of audio: its length in encoder frames
/// plus a margin, at least [`MIN_AUDIO_CTX`].
pub fn window_for(samples: usize) -> usize {
    window_with_min(samples, MIN_AUDIO_CTX)
}

/// [`window_for`] with another smallest window (at least 64 frames).
pub fn window_with_min(samples: usize, min: usize) -> usize {
    let frames = samples * FRAMES_PER_SECOND / SAMPLE_RATE;
    (frames + frames / 10 + 32).clamp(min.clamp(64, FULL_AUDIO_CTX), FULL_AUDIO_CTX)
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

/// Work for the transcription thread.
enum Job {
    /// Samples; true to decode without the grammar; where to answer.
    Transcribe(Vec<f32>, bool, mpsc::Sender<Result<Transcript, SttError>>),
    Score(Vec<f32>, String, mpsc::Sender<Result<f32, SttError>>),
    SetGrammar(Option<SttGrammar>),
}

/// A transcriber on its own thread. Cloning the handle is not offered:
/// one owner (the audio thread) asks and waits.
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
                for job in rx {
                    match job {
                        Job::Transcribe(samples, free, reply) => {
                            let _ = reply.send(if free {
                                engine.transcribe_free(&samples)
                            } else {
                                engine.transcribe(&samples)
                            });
                        }
                        Job::SetGrammar(grammar) => engine.set_grammar(grammar),
                        Job::Score(samples, phrase, reply) => {
                            let _ = reply.send(engine.phrase_logprob(&samples, &phrase));
                        }
                    }
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
        self.send(Job::Transcribe(samples, false, tx))?;
        rx.recv_timeout(timeout).map_err(|_| SttError::Stopped)?
    }

    /// [`SttThread::transcribe`] without the grammar (see
    /// [`Transcriber::transcribe_free`]).
    pub fn transcribe_free(
        &self,
        samples: Vec<f32>,
        timeout: Duration,
    ) -> Result<Transcript, SttError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Transcribe(samples, true, tx))?;
        rx.recv_timeout(timeout).map_err(|_| SttError::Stopped)?
    }

    /// Swaps the grammar (after the intent files were reloaded); takes
    /// effect from the next utterance.
    pub fn set_grammar(&self, grammar: Option<SttGrammar>) -> Result<(), SttError> {
        self.send(Job::SetGrammar(grammar))
    }

    /// Scores a phrase on the thread (see [`Transcriber::phrase_logprob`])
    /// and waits for the result.
    pub fn phrase_logprob(
        &self,
        samples: Vec<f32>,
        phrase: &str,
        timeout: Duration,
    ) -> Result<f32, SttError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Score(samples, phrase.to_string(), tx))?;
        rx.recv_timeout(timeout).map_err(|_| SttError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), SttError> {
        self.jobs
            .as_ref()
            .ok_or(SttError::Stopped)?
            .send(job)
            .map_err(|_| SttError::Stopped)
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
    fn a_confidence_that_is_not_a_number_is_unsure() {
        for (c, want) in [
            (f32::NAN, 0.0),
            (f32::INFINITY, 0.0),
            (f32::NEG_INFINITY, 0.0),
            (1.5, 1.0),
            (-0.5, 0.0),
            (0.73, 0.73),
        ] {
            assert_eq!(sane_confidence(c), want, "{c}");
        }
    }

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

    /// The default model, when installed.
    fn installed_model() -> Option<PathBuf> {
        let dir = crate::stt::model::default_models_dir().ok()?;
        let path = crate::stt::model::resolve(None, &dir).ok()?;
        path.is_file().then_some(path)
    }

    /// `WhisperNext` reads the last row of a batch decode's logits out of
    /// whisper.cpp's buffer: it must equal the logits of decoding that
    /// last token on its own, after the others.
    #[test]
    fn the_last_row_is_the_last_tokens() {
        let Some(path) = installed_model() else {
            eprintln!(
                "skipping: no whisper model installed (run `voicegate models install {}`)",
                crate::stt::model::DEFAULT_MODEL
            );
            return;
        };
        let mut stt = WhisperTranscriber::load(&path, SttOptions::default()).unwrap();
        // A tone, so the decoder has something other than silence to hear.
        let audio: Vec<f32> = (0..2 * SAMPLE_RATE)
            .map(|i| 0.1 * (i as f32 * 0.05).sin())
            .collect();
        let encoded = stt.encode_only(&audio, 256).unwrap();
        let tokens = stt._ctx.tokenize(" Give me a latte", 16).unwrap();
        let prompt = stt.prompt.clone();
        let threads = stt.options.threads;
        let mut model = WhisperNext {
            state: &mut stt.state,
            sys: encoded,
            prompt: &prompt,
            cached: Vec::new(),
            threads,
        };
        use beam::NextToken;
        // Prompt and tokens in one batch.
        let batched = model.next_logits(&tokens).unwrap();
        // Cut back to the prompt and one token, then one token a call.
        let mut alone = model.next_logits(&tokens[..1]).unwrap();
        for n in 2..=tokens.len() {
            alone = model.next_logits(&tokens[..n]).unwrap();
        }
        assert_eq!(batched.len(), alone.len());
        let argmax = |l: &[f32]| {
            l.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
        };
        assert_eq!(argmax(&batched), argmax(&alone));
        let worst = batched
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 0.05, "logits differ by up to {worst}");
        // And not merely equal because both are some fixed row: the
        // logits after a different last token differ.
        let other = model.next_logits(&tokens[..tokens.len() - 1]).unwrap();
        let moved = other
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 1.0,
            "logits after different tokens differ by only {moved}"
        );
    }

    /// The forced decode needs exactly one decoder: whisper.cpp with two
    /// (greedy with best_of 2 above temperature 0) asks the callback twice
    /// a step, and `full_forced_with` refuses the result. One thread, so
    /// that whisper.cpp runs the two decoders one after the other and the
    /// callback is never entered twice at once.
    #[test]
    fn a_forced_decode_runs_one_decoder() {
        let Some(path) = installed_model() else {
            eprintln!(
                "skipping: no whisper model installed (run `voicegate models install {}`)",
                crate::stt::model::DEFAULT_MODEL
            );
            return;
        };
        let mut stt = WhisperTranscriber::load(&path, SttOptions::default()).unwrap();
        let audio: Vec<f32> = (0..2 * SAMPLE_RATE)
            .map(|i| 0.1 * (i as f32 * 0.05).sin())
            .collect();
        let tokens = stt.phrase_tokens(" Give me a latte").unwrap();
        let n_vocab = stt._ctx.n_vocab() as usize;
        let configure = |params: &mut FullParams<'_, '_>| {
            params.set_max_tokens(tokens.len() as i32);
            params.set_audio_ctx(128);
            params.set_temperature(0.5);
        };

        let mut one = ForcedDecode::new(n_vocab, tokens.clone());
        stt.full_forced(1, configure, &audio, &mut one).unwrap();
        assert!(!one.repeated_step);
        assert!(one.state.is_some());
        assert_eq!(one.logprobs.len(), tokens.len());

        let mut two = ForcedDecode::new(n_vocab, tokens.clone());
        let result = stt.full_forced_with(
            SamplingStrategy::Greedy { best_of: 2 },
            1,
            configure,
            &audio,
            &mut two,
        );
        assert!(
            matches!(result, Err(SttError::SeveralDecoders)),
            "{result:?}"
        );
    }

    /// A prompt whisper-rs cannot pass to C is an error, not a panic.
    #[test]
    fn a_prompt_with_a_nul_is_an_error() {
        let Some(path) = installed_model() else {
            eprintln!(
                "skipping: no whisper model installed (run `voicegate models install {}`)",
                crate::stt::model::DEFAULT_MODEL
            );
            return;
        };
        let mut stt = WhisperTranscriber::load(&path, SttOptions::default()).unwrap();
        let tokens = stt.phrase_tokens(" Jarvis").unwrap();
        let audio = vec![0.0f32; SAMPLE_RATE];
        let result = stt.score_phrase(&audio, &tokens, Some("Jarvis.\0 Set a timer."));
        assert!(matches!(result, Err(SttError::Decode(_))), "{result:?}");
        assert!(stt.score_phrase(&audio, &tokens, Some("Jarvis.")).is_ok());
    }

    #[test]
    fn window_follows_the_audio() {
        assert_eq!(window_for(0), MIN_AUDIO_CTX);
        assert_eq!(window_for(10 * SAMPLE_RATE), 500 + 50 + 32);
        assert_eq!(window_for(60 * SAMPLE_RATE), FULL_AUDIO_CTX);
    }
}
