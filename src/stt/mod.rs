//! Speech to text: a small synchronous trait, and whisper.cpp behind it.
//!
//! The model is loaded once; each utterance (16 kHz mono f32) is decoded in
//! English with these choices, each measured in the speech benchmark (see
//! the README's figures and docs/design/speech.md):
//!
//! - **A grammar** ([`SttGrammar`], the daemon's default): the loaded
//!   intents' sentences as an automaton (`intent::grammar`), through which
//!   `GrammarDecode` (`stt/grammar_decode.rs`) forbids every token leaving
//!   it or breaking how whisper spells a sentence ([`shape::Shape`]).
//!   whisper-rs 0.16's own
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
//!
//! Where things are: this file is what the rest of voicegate sees (the
//! [`Transcriber`] trait, [`SttOptions`], [`Transcript`], errors) and the
//! pure window and repetition rules; `whisper.rs` is [`WhisperTranscriber`]
//! (everything that touches whisper-rs); `grammar_decode.rs` and
//! [`shape`] the grammar's mask; `beam.rs` our search; `thread.rs`
//! [`SttThread`]; [`model`] finds, installs and converts the models.

use std::path::PathBuf;

use serde::Serialize;

pub use crate::gate::Backing;
use crate::intent::grammar::{Grammar, GrammarOptions};

mod beam;
mod grammar_decode;
pub mod model;
pub mod prompt;
pub mod shape;
mod thread;
mod whisper;

pub use thread::SttThread;
pub use whisper::{PhraseScore, WhisperTranscriber};

/// [`SttError::Load`]'s text: how to get the main model, or which option
/// named a second one.
fn load_message(path: &std::path::Path, reason: &str, flag: &str) -> String {
    let path = path.display();
    if flag == "--model" {
        format!(
            "cannot load the whisper model {path}: {reason} (run `voicegate models install {}`, or pass --model PATH)",
            model::DEFAULT_MODEL
        )
    } else {
        format!(
            "cannot load the whisper model {path} given to {flag}: {reason} (pass a whisper.cpp ggml model file, e.g. base-q8_0's from `voicegate models install base-q8_0`)"
        )
    }
}

/// Audio rate the engines take.
pub const SAMPLE_RATE: usize = crate::audio::SAMPLE_RATE as usize;

/// whisper's encoder frames per second of audio.
const FRAMES_PER_SECOND: usize = 50;

/// whisper's full encoder window (30 s).
const FULL_AUDIO_CTX: usize = 1500;

/// Errors from transcription.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The model file could not be loaded.
    #[error("{}", load_message(path, reason, flag))]
    Load {
        /// The file.
        path: PathBuf,
        /// What whisper said.
        reason: String,
        /// The option that names this file (`--model`, `--fallback-model`,
        /// `--free-model`).
        flag: &'static str,
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
    /// The transcription thread did not answer in time (it goes on with
    /// the job; its answer is dropped).
    #[error("no transcript within {} s (the transcription thread is still busy)", .0.as_secs())]
    TimedOut(std::time::Duration),
    /// The transcription thread's queue is full: too many requests at
    /// once (`serve` refuses rather than waits; see `SttThread::try_transcribe`).
    #[error("too many transcriptions are waiting; try again")]
    Busy,
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
    /// True if the text was read without the intents' grammar: free
    /// decoding, or a grammar reading too unsure to act on that a free
    /// reading replaced ([`SttOptions::free_below`]).
    pub free: bool,
    /// When a near free reading backed this grammar reading
    /// ([`corroborates`]): what it said, and the grammar reading's own
    /// confidence, below the gate's; `confidence` is then the free
    /// reading's. The gate judges the answer to a read-back, and a command
    /// the free reading means otherwise, on the grammar reading's own
    /// confidence: a "yes" is never made sure by a reading of other words.
    pub backed: Option<Backing>,
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

/// The smallest encoder window with the grammar (the default), in 20 ms
/// frames (5.1 s).
/// Free decoding loops on short commands below 384 frames; the grammar
/// stops loops, so the floor is set by confidence instead: on the "no"
/// fixture (1.6 s) 128 / 256 / 384 frames give 0.45 / 0.58 / 0.62, and a
/// reply below the gate's 0.5 is asked again. On the benchmark (clean)
/// all three accept 99.2%, at p50 255 / 258 / 303 ms.
pub const GRAMMAR_MIN_WINDOW: usize = 256;
/// Hypotheses of the beam search with the grammar.
pub const GRAMMAR_BEAM: usize = 5;
/// Below this confidence a greedy reading is searched again with the beam:
/// the gate's own threshold, so a reading the gate would act on is kept
/// and one it would ask again about is searched harder. On the benchmark
/// at 6 dB, 0.5, 0.6, 0.8 and 1 (always the beam) all accept 109 of 124,
/// and 0.5 and 0.6 as many at every level; 0.5 is the fastest (6 dB p50
/// 235 ms, 0.6: 457 ms).
pub const GRAMMAR_BEAM_BELOW: f32 = 0.5;
/// Below this confidence a transcript is decoded once more with the full
/// window (the surer reading is kept).
pub const GRAMMAR_RETRY_BELOW: f32 = 0.3;
/// Below this confidence a grammar reading is decoded again without the
/// grammar: the gate's own threshold (`GateConfig::min_confidence`), so
/// what the gate would act on is never decoded twice. Speech outside
/// every template is forced into an in-grammar sentence of near-zero
/// confidence; read freely, it becomes text the recogniser can
/// understand, or say it cannot help with.
pub const GRAMMAR_FREE_BELOW: f32 = 0.5;

/// A greedy grammar reading this unsure is read freely at once: the beam
/// and the full-window retry are skipped (0: never skipped). Off until
/// measured (docs/benchmarks.md).
pub const GRAMMAR_FREE_FIRST_BELOW: f32 = 0.0;

/// How much likelier, token for token, a free reading must be than the
/// grammar's to replace it ([`prefer_free`]). Confidence is the geometric
/// mean of the tokens' probabilities, so the ratio of two confidences is
/// the per-token likelihood ratio of the two readings. A command in the
/// grammar heard in noise reads, freely, as a near miss ("Thank me a
/// medium-most ice coffee"), about twice as likely per token as the
/// grammar's right reading (1.6 to 2.2 on the 7 unsure clean clips of the
/// coffee benchmark); speech that no template covers is forced into
/// readings 12 to 250 times less likely than its free reading ("Be
/// quiet." 0.08 against "Be more quiet." 0.97). See docs/design/speech.md.
pub const FREE_LIKELIER: f32 = 4.0;

/// A sure grammar reading with fewer words than this per second of audio
/// is read freely too ([`reads_too_little`]): the grammar may end a
/// sentence early where what follows is no intent's ("Help me," for "help
/// me set a timer please", 2 words in 1.9 s; "Help me" for a 5 s table
/// booking), and be sure of it. People say 2 to 3 words a second; the
/// slowest right readings of the dev sets are 1.4 a second (the coffee
/// benchmark at 6 dB, whose utterances carry noise at both ends, and the
/// spoken paraphrases). See docs/design/speech.md.
pub const SHORT_READING_BELOW: f32 = 1.2;

/// [`SHORT_READING_BELOW`] applies to utterances at least this long
/// (seconds): a one-word command in a short utterance is no cut sentence.
pub const SHORT_READING_MIN_SECS: f32 = 1.5;

/// Logit penalty for leaving the intents' grammar (see [`SttGrammar`]).
/// Measured on the speech-to-intent benchmark (tiny.en, clean / 6 dB, the
/// first grammar, greedy): forbidding 96.8% / 70.2%, 10: 96.0% / 65.3%,
/// 5: 93.5% / 62.9%.
pub const DEFAULT_GRAMMAR_PENALTY: f32 = f32::INFINITY;

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
    /// The smallest shrunk encoder window, in frames (see
    /// [`GRAMMAR_MIN_WINDOW`] and [`MIN_AUDIO_CTX`]).
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
    /// Below this confidence a grammar reading is decoded again without
    /// the grammar, and a free reading at least this sure replaces it (see
    /// [`prefer_free`]); 0: never. Unused without a grammar.
    pub free_below: f32,
    /// How much likelier per token a free reading must be than the
    /// grammar's to replace it ([`FREE_LIKELIER`]).
    pub free_likelier: f32,
    /// A sure free reading that did not replace an unsure grammar reading
    /// but differs from it by a word or two backs it: the grammar's
    /// reading is kept with the free reading's confidence (see
    /// [`corroborates`]).
    pub free_backs: bool,
    /// A sure grammar reading with fewer words than this per second of
    /// audio is read freely too, and replaced by a sure free reading that
    /// goes on from it ([`reads_too_little`], [`SHORT_READING_BELOW`]; 0:
    /// never).
    pub short_below: f32,
    /// A greedy grammar reading below this confidence is read freely at
    /// once, without the beam or the full-window retry (0: never). See
    /// [`GRAMMAR_FREE_FIRST_BELOW`].
    pub free_first_below: f32,
    /// The free reading's beam (1: greedy).
    pub free_beam: usize,
    /// The free reading's initial prompt (empty: none). The daemon's is
    /// the intents' vocabulary ([`prompt::vocabulary_prompt`]): spoken
    /// paraphrases read freely without it were often near misses of the
    /// intents' words ("share the new time" for "set a new timer").
    pub free_prompt: String,
    /// A second, bigger model for unsure readings: when set, a reading
    /// still below `retry_below` after the full-window retry is decoded
    /// again with this model (same settings), and the surer one is kept.
    pub fallback_model: Option<PathBuf>,
    /// Another model for the free reading of an unsure grammar reading
    /// (see [`SttOptions::free_below`]); `None`: the same model.
    pub free_model: Option<PathBuf>,
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
    /// The grammar of `intents`, built with `options`, forbidding every
    /// token that leaves it ([`DEFAULT_GRAMMAR_PENALTY`]).
    pub fn new(intents: &crate::intent::IntentSet, options: GrammarOptions) -> SttGrammar {
        SttGrammar {
            grammar: Grammar::build(intents.definitions(), &options),
            options,
            penalty: DEFAULT_GRAMMAR_PENALTY,
        }
    }

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
    /// What the daemon does, less the grammar, which needs the intents
    /// ([`SttOptions::for_intents`] adds it): the grammar's window floor,
    /// greedy then beam search below [`GRAMMAR_BEAM_BELOW`], one full-window
    /// retry below [`GRAMMAR_RETRY_BELOW`]. Without a grammar these numbers
    /// decode freely with whisper.cpp's own (sampled) beam and a window
    /// that can loop; free decoding as `--no-grammar` does it is
    /// [`SttOptions::free_decoding`].
    fn default() -> Self {
        SttOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
            shrink_window: true,
            prompt: String::new(),
            grammar: None,
            min_audio_ctx: GRAMMAR_MIN_WINDOW,
            beam: GRAMMAR_BEAM,
            retry_below: GRAMMAR_RETRY_BELOW,
            beam_below: GRAMMAR_BEAM_BELOW,
            free_below: GRAMMAR_FREE_BELOW,
            free_likelier: FREE_LIKELIER,
            free_backs: true,
            short_below: SHORT_READING_BELOW,
            free_first_below: GRAMMAR_FREE_FIRST_BELOW,
            free_beam: 1,
            free_prompt: String::new(),
            fallback_model: None,
            free_model: None,
        }
    }
}

impl SttOptions {
    /// The daemon's speech path: decoding constrained to `intents`'
    /// sentences (built with `grammar_options`, forbidding everything
    /// else: [`DEFAULT_GRAMMAR_PENALTY`]), with the default numbers.
    pub fn for_intents(
        intents: &crate::intent::IntentSet,
        grammar_options: GrammarOptions,
    ) -> SttOptions {
        SttOptions {
            grammar: Some(SttGrammar::new(intents, grammar_options)),
            free_prompt: prompt::vocabulary_prompt(intents),
            ..SttOptions::default()
        }
    }

    /// Free decoding, as `--no-grammar` does it: greedy, the window floor
    /// that keeps whisper from looping ([`MIN_AUDIO_CTX`]), no retry for
    /// an unsure reading. (The caller adds the vocabulary prompt.)
    pub fn free_decoding() -> SttOptions {
        SttOptions {
            min_audio_ctx: MIN_AUDIO_CTX,
            beam: 1,
            retry_below: 0.0,
            beam_below: 1.0,
            ..SttOptions::default()
        }
    }
}

/// Whether a reading's confidence is at least `below` (a NaN never is).
fn sure(confidence: f32, below: f32) -> bool {
    confidence.is_finite() && confidence >= below
}

/// Whether a free reading replaces an unsure grammar reading (both of the
/// same audio): the grammar's reading is below `free_below`, the free one
/// has text, is at least that sure, and is `likelier` ([`FREE_LIKELIER`])
/// times likelier per token, or [`extends`] it. Then the speech was said
/// clearly and is none of the intents' sentences, so the free text is
/// what was said. A free reading only a
/// little likelier is the same sentence misheard: the grammar's reading
/// stays. When both are unsure, the audio itself was unclear: the
/// grammar's reading stays too, and the gate asks again.
pub fn prefer_free(
    grammar: &Transcript,
    free: &Transcript,
    free_below: f32,
    likelier: f32,
) -> bool {
    let g = if grammar.confidence.is_finite() {
        grammar.confidence.max(0.0)
    } else {
        0.0
    };
    !sure(grammar.confidence, free_below)
        && sure(free.confidence, free_below)
        && (free.confidence >= likelier * g || extends(grammar, free))
        && !free.text.trim().is_empty()
}

/// Whether a grammar reading has too few words for its audio: fewer than
/// `per_sec` a second, in an utterance of at least
/// [`SHORT_READING_MIN_SECS`]. Such a reading, however sure, may be a
/// sentence the grammar ended early; [`goes_on`] decides with a free
/// reading.
pub fn reads_too_little(reading: &Transcript, per_sec: f32) -> bool {
    reading.audio_secs >= SHORT_READING_MIN_SECS
        && (words(&reading.text).len() as f32) < per_sec * reading.audio_secs
}

/// Whether a free reading replaces a sure grammar reading that
/// [`reads_too_little`]: it is sure itself and [`extends`] it. A free
/// reading of other words leaves the grammar's alone.
pub fn goes_on(grammar: &Transcript, free: &Transcript, free_below: f32) -> bool {
    sure(free.confidence, free_below) && extends(grammar, free)
}

/// Whether a free reading goes on where the grammar's stopped: the
/// grammar reading's words (case and punctuation aside) are the free
/// reading's first words, and the free reading has more. The grammar
/// ended the sentence early because what followed is no intent's
/// sentence ("I want you to skip," for "I want you to skip past this song
/// to the next track"); the free reading has all of it.
pub fn extends(grammar: &Transcript, free: &Transcript) -> bool {
    let g = words(&grammar.text);
    let f = words(&free.text);
    !g.is_empty() && f.len() > g.len() && f.starts_with(&g)
}

/// Whether a sure free reading backs an unsure grammar reading it did not
/// replace ([`prefer_free`]): the free reading is sure, the grammar's is
/// not, and the two differ by at most a third of their words (at least
/// one; words are [`words`], counted by edit distance over the longer
/// reading). The audio was heard clearly, and the grammar's sentence is the
/// nearest in-grammar sentence to what was heard: the free reading is the
/// same sentence with a word or two misheard ("I need your value
/// increased." for "I need your volume increased."). Then the grammar's
/// reading stands with the free reading's confidence. Speech no template
/// covers reads freely as a different sentence, not a near one, and stays
/// unsure.
pub fn corroborates(grammar: &Transcript, free: &Transcript, free_below: f32) -> bool {
    let g = words(&grammar.text);
    let f = words(&free.text);
    if sure(grammar.confidence, free_below)
        || !sure(free.confidence, free_below)
        || g.is_empty()
        || f.is_empty()
    {
        return false;
    }
    let longer = g.len().max(f.len());
    word_distance(&g, &f) <= (longer / 3).max(1)
}

/// Word-level edit distance (insertions, deletions, substitutions).
fn word_distance(a: &[String], b: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A transcript's words, lower-cased, without punctuation (apostrophes
/// kept) and with hyphens as spaces.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The smallest encoder window of free decoding. Measured on the speech fixtures with
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A transcript of `text` read with `confidence`.
    fn reading(text: &str, confidence: f32) -> Transcript {
        Transcript {
            text: text.into(),
            confidence,
            audio_secs: 1.0,
            decode_secs: 0.1,
            audio_ctx: 256,
            retried: false,
            free: false,
            backed: None,
        }
    }

    /// The numbers the speech benchmark chose (docs/design/speech.md, "Speech
    /// choices"): the daemon's by default, and `--no-grammar`'s own.
    #[test]
    fn the_defaults_are_the_daemons_and_free_decoding_keeps_its_own() {
        let d = SttOptions::default();
        assert_eq!(
            (
                d.min_audio_ctx,
                d.beam,
                d.beam_below,
                d.retry_below,
                d.free_below
            ),
            (256, 5, 0.5, 0.3, 0.5)
        );
        assert!(d.grammar.is_none() && d.prompt.is_empty() && d.shrink_window);
        assert!(d.fallback_model.is_none() && (1..=4).contains(&d.threads));
        let f = SttOptions::free_decoding();
        assert_eq!(
            (f.min_audio_ctx, f.beam, f.beam_below, f.retry_below),
            (384, 1, 1.0, 0.0)
        );
        assert!(f.grammar.is_none() && f.prompt.is_empty() && f.shrink_window);
    }

    #[test]
    fn a_sure_free_reading_replaces_an_unsure_grammar_reading() {
        for (grammar, free, replaced) in [
            // Out of grammar, said clearly.
            (
                reading("What is the timer status?", 0.05),
                reading("add milk to my list", 0.8),
                true,
            ),
            // Both unsure: the audio was unclear; the gate asks again.
            (
                reading("Set a timer.", 0.3),
                reading("set a time", 0.4),
                false,
            ),
            // In the grammar, misheard freely: about as likely; kept.
            (
                reading("Thank you a medium roast.", 0.43),
                reading("Thank me a medium-most.", 0.8),
                false,
            ),
            (
                reading("Be quiet.", 0.08),
                reading("Be more quiet.", 0.97),
                true,
            ),
            // The grammar's reading is sure: kept, whatever the free one says.
            (
                reading("Set a timer.", 0.5),
                reading("Set a timer.", 0.9),
                false,
            ),
            // The grammar stopped early; the free reading goes on: it
            // replaces it, however likely the grammar's part was.
            (
                reading("I want you to skip,", 0.4),
                reading("I want you to skip past this song to the next track.", 0.7),
                true,
            ),
            // ... but only a sure one.
            (
                reading("Please skip this song,", 0.4),
                reading("Please skip this song and the next one.", 0.45),
                false,
            ),
            // A free reading that differs before the end is no extension.
            (
                reading("Please skip this song,", 0.4),
                reading("Please keep this song for me.", 0.7),
                false,
            ),
            // A free reading with no words replaces nothing.
            (reading("Yes.", 0.1), reading(" ", 0.9), false),
            (reading("Yes.", f32::NAN), reading("yes", 0.7), true),
            (reading("Yes.", 0.1), reading("yes", f32::NAN), false),
        ] {
            assert_eq!(
                prefer_free(&grammar, &free, 0.5, FREE_LIKELIER),
                replaced,
                "{grammar:?} / {free:?}"
            );
        }
        assert!(!prefer_free(
            &reading("x", 0.1),
            &reading("y", 0.9),
            f32::INFINITY,
            FREE_LIKELIER
        ));
    }

    #[test]
    fn a_near_free_reading_backs_the_grammars() {
        for (grammar, free, backed) in [
            // One word misheard in five: the grammar's reading stands.
            (
                reading("I need your volume increased.", 0.48),
                reading("I need your value increased.", 0.76),
                true,
            ),
            // Two in seven.
            (
                reading("Could you increase the speaker, volume please?", 0.44),
                reading("Can you increase the speaker, Miles, please.", 0.58),
                true,
            ),
            // A word missing at the start.
            (
                reading("The timer for 10 minutes.", 0.38),
                reading("Set the timer for 10 minutes.", 0.78),
                true,
            ),
            // Another sentence: the grammar forced one it was not.
            (
                reading("What do you do?", 0.16),
                reading("What you skip this song.", 0.61),
                false,
            ),
            (
                reading("Help me,", 0.3),
                reading("Help me reserve a table for three at Lucky's.", 0.7),
                false,
            ),
            // Two in five is more than a third.
            (
                reading("Increase my speaker, volume please.", 0.28),
                reading("Increase the speaker, Mario, please.", 0.56),
                false,
            ),
            // Both unsure: the audio itself was unclear.
            (
                reading("I need your volume increased.", 0.4),
                reading("I need your value increased.", 0.45),
                false,
            ),
            // A sure grammar reading needs no backing.
            (
                reading("Set a timer.", 0.6),
                reading("Set a timer.", 0.9),
                false,
            ),
            (reading("Yes.", 0.3), reading(" ", 0.9), false),
            (reading("Yes.", 0.3), reading("yes", f32::NAN), false),
        ] {
            assert_eq!(
                corroborates(&grammar, &free, 0.5),
                backed,
                "{grammar:?} / {free:?}"
            );
        }
    }

    #[test]
    fn a_short_sure_reading_is_checked_against_a_free_one() {
        let timed = |text: &str, confidence: f32, secs: f32| Transcript {
            audio_secs: secs,
            ..reading(text, confidence)
        };
        for (grammar, short) in [
            // 2 words in 1.9 s: fewer than 1.2 a second.
            (timed("Help me,", 0.58, 1.94), true),
            (timed("Help me", 0.7, 5.0), true),
            // A whole command at a slow speaker's pace.
            (timed("I'd like a double shot espresso.", 0.76, 4.37), false),
            // One word in a short utterance.
            (timed("Stop.", 0.9, 1.2), false),
            (timed("", 0.9, 3.0), true),
        ] {
            assert_eq!(
                reads_too_little(&grammar, SHORT_READING_BELOW),
                short,
                "{grammar:?}"
            );
        }
        assert!(!reads_too_little(&timed("Help me", 0.7, 5.0), 0.0));
        let cut = timed("Help me,", 0.58, 1.94);
        assert!(goes_on(
            &cut,
            &reading("Help me set a timer, please.", 0.84),
            0.5
        ));
        // Unsure, or other words: the grammar's reading stays.
        assert!(!goes_on(&cut, &reading("Help me set a timer.", 0.4), 0.5));
        assert!(!goes_on(&cut, &reading("Hello there, timer.", 0.9), 0.5));
    }

    #[test]
    fn word_distance_counts_edits() {
        let w = |s: &str| words(s);
        assert_eq!(word_distance(&w("a b c"), &w("a b c")), 0);
        assert_eq!(word_distance(&w("a b c"), &w("a x c")), 1);
        assert_eq!(word_distance(&w("a b c"), &w("b c")), 1);
        assert_eq!(word_distance(&w(""), &w("a b")), 2);
        assert_eq!(word_distance(&w("a b c d"), &w("d c b a")), 4);
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

    #[test]
    fn window_follows_the_audio() {
        assert_eq!(window_for(0), MIN_AUDIO_CTX);
        assert_eq!(window_for(10 * SAMPLE_RATE), 500 + 50 + 32);
        assert_eq!(window_for(60 * SAMPLE_RATE), FULL_AUDIO_CTX);
    }
}
