//! whisper.cpp behind [`Transcriber`]: [`WhisperTranscriber`].
//!
//! Why it exists apart from `stt/mod.rs`: everything here touches
//! whisper-rs (and, for the logits of a batch, whisper.cpp's own state
//! through `unsafe`), while the module above it is the plain data the
//! rest of voicegate sees. Here: loading a model (and its fallback), free
//! decoding with whisper.cpp's own search, grammar decoding with ours
//! (whisper.cpp encodes, [`super::beam`] searches, `WhisperNext` is its
//! decoder as a next-token model, [`super::grammar_decode`] masks), the
//! window and retry policy of [`Transcriber::transcribe`], and the forced
//! decode that scores a phrase (the wake word's second stage).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperSysState,
};

use super::grammar_decode::GrammarDecode;
use super::{
    Backing, FRAMES_PER_SECOND, FULL_AUDIO_CTX, SAMPLE_RATE, SttError, SttGrammar, SttOptions,
    Transcriber, Transcript, beam, collapse_repeats, is_repetitive, max_tokens_for,
    window_with_min,
};

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
    /// The model for the free reading of unsure grammar readings
    /// ([`SttOptions::free_model`]); `None`: this one.
    free_reader: Option<Box<WhisperTranscriber>>,
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
            flag: "--model",
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
            Some(path) => Some(Box::new(
                WhisperTranscriber::load(
                    path,
                    SttOptions {
                        fallback_model: None,
                        free_model: None,
                        ..options.clone()
                    },
                )
                .map_err(named_by("--fallback-model"))?,
            )),
            None => None,
        };
        let free_reader = match &options.free_model {
            Some(path) => Some(Box::new(
                WhisperTranscriber::load(path, SttOptions::free_decoding())
                    .map_err(named_by("--free-model"))?,
            )),
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
            free_reader,
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
        if reading.1 < self.options.free_first_below {
            // Too unsure to be worth the beam: the free reading decides.
            return Ok(reading);
        }
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

/// whisper needs at least 1 s of audio: shorter clips are padded with silence.
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

impl WhisperTranscriber {
    /// Reads an utterance the way `--no-grammar` does (greedy, the window
    /// floor that keeps free decoding from looping, no prompt), for a
    /// grammar reading too unsure to act on: fast, and unbiased toward the
    /// intents' sentences, since the question is whether something else
    /// was said.
    fn read_freely(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
        let free = SttOptions {
            threads: self.options.threads,
            shrink_window: self.options.shrink_window,
            beam: self.options.free_beam.max(1),
            prompt: self.options.free_prompt.clone(),
            ..SttOptions::free_decoding()
        };
        if let Some(reader) = &mut self.free_reader {
            reader.options = free;
            return reader.transcribe(samples);
        }
        let options = std::mem::replace(&mut self.options, free);
        let grammar = self.grammar.take();
        let fallback = self.fallback.take();
        let free_reader = self.free_reader.take();
        let result = self.transcribe(samples);
        self.options = options;
        self.grammar = grammar;
        self.fallback = fallback;
        self.free_reader = free_reader;
        result
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
        // A grammar reading this unsure goes straight to the free reading
        // below: no retry with the full window, no bigger model.
        let free_first = self.grammar.is_some() && confidence < self.options.free_first_below;
        if let Some(once) = collapse_repeats(&text) {
            // The decoder said the same sentence again and again: keep one.
            text = once;
        } else if free_first {
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
            && !free_first
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
        let heard = Transcript {
            text,
            confidence: sane_confidence(confidence),
            audio_secs,
            decode_secs: started.elapsed().as_secs_f32(),
            audio_ctx: used_ctx,
            retried,
            free: self.grammar.is_none(),
            backed: None,
        };
        let sure = heard.confidence >= self.options.free_below;
        let short = !heard.free
            && sure
            && self.options.short_below > 0.0
            && super::reads_too_little(&heard, self.options.short_below);
        if heard.free || (sure && !short) {
            return Ok(heard);
        }
        // Unsure within the grammar (or sure of too few words): perhaps
        // what was said is no intent's sentence. Read it freely; a sure
        // free reading is what was said.
        let free = self.read_freely(samples)?;
        let decode_secs = started.elapsed().as_secs_f32();
        Ok(if short {
            // Sure, but of too few words for the speech: only a free
            // reading that goes on from it replaces it.
            let replaced = super::goes_on(&heard, &free, self.options.free_below);
            Transcript {
                decode_secs,
                retried: true,
                ..if replaced { free } else { heard }
            }
        } else if super::prefer_free(
            &heard,
            &free,
            self.options.free_below,
            self.options.free_likelier,
        ) {
            Transcript {
                decode_secs,
                retried: true,
                ..free
            }
        } else if self.options.free_backs
            && super::corroborates(&heard, &free, self.options.free_below)
        {
            // The same sentence, heard clearly with a word or two
            // misheard: the grammar's reading, as sure as the free one.
            Transcript {
                decode_secs,
                retried: true,
                confidence: free.confidence,
                backed: Some(Backing {
                    text: free.text,
                    own_confidence: heard.confidence,
                }),
                ..heard
            }
        } else {
            Transcript {
                decode_secs,
                retried: true,
                ..heard
            }
        })
    }
}

/// The settings every decode shares: greedy, English, one segment, no
/// timestamps, no temperature fallback, nothing printed.
fn greedy_params<'a, 'b>(threads: usize) -> FullParams<'a, 'b> {
    decode_params(threads, SamplingStrategy::Greedy { best_of: 1 })
}

/// A load error of a second model, which `flag` names.
fn named_by(flag: &'static str) -> impl Fn(SttError) -> SttError {
    move |e| match e {
        SttError::Load { path, reason, .. } => SttError::Load { path, reason, flag },
        other => other,
    }
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

/// whisper.cpp prints to stderr by default; send it to `log` (which we do
/// not install), so only our own output reaches the terminal.
fn silence_whisper_logs() {
    whisper_rs::install_logging_hooks();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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

    /// The default model, when installed.
    fn installed_model() -> Option<PathBuf> {
        let path = crate::stt::model::locate(None).ok()?;
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
}
