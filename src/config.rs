//! Configuration: the TOML file and the command line, merged once into typed
//! values. Commands receive a [`Settings`] and never parse anything again;
//! `voicegate run`'s flags are applied onto its [`SpeechSettings`]
//! ([`Settings::with_run_flags`]), so the daemon reads one settings value.
//!
//! Every key is optional; `voicegate.toml` in the repository documents them
//! all with their defaults:
//!
//! ```toml
//! intents_dir = "intents"            # relative paths are relative to this file
//! data_dir = "~/.local/share/voicegate"
//!
//! [gate]
//! confirm_timeout_secs = 8.0         # how long a read-back waits for "yes"
//! min_confidence = 0.5               # below: ask again, never proceed
//! pin_hash = "$argon2id$..."        # from `voicegate gate hash-pin`
//! pin_kinds = ["purchase.order"]     # action kinds that need the PIN after "yes"
//! daily_spend_cap = "50.00 USD"      # with a cap, unpriced purchases are refused
//! allow_unpriced_purchases = false   # ... unless this says otherwise
//!
//! [purchases]
//! catalogue = "catalogue.toml"       # what can be ordered: names, synonyms, prices
//!                                    # (default: the shipped example, unpriced)
//!
//! [prices]                           # unit prices: by `item`, or by `drink` /
//! "AA batteries" = "4.99 USD"        #   "size drink"; in the cap's currency
//! "latte" = "4.50 USD"
//!
//! [handlers."purchase.order"]        # see actions::handlers
//! type = "webhook"
//! url = "http://127.0.0.1:8080/orders"
//!
//! [music]
//! mpd = "127.0.0.1:6600"
//!
//! [alarms]
//! ring_command = "aplay /usr/share/sounds/alarm.wav"   # default: the bundled sound
//! ring_command_audible = true        # false: the command makes no sound (a lamp),
//!                                    # so the microphone stays on while it runs
//!
//! [speech]
//! tts_command = "piper"             # speaks responses: "piper" (default when installed), a command, or "none"
//! echo_tail_ms = 400                 # the microphone stays muted this long after
//!                                    # voicegate's own sounds (room echo, buffering)
//!
//! [understanding]                   # what no template matches (src/nlu)
//! fallback = "minilm"                # "minilm" (installed by `models install`), "hashed" or "off"
//! out_of_scope = 0.65                # below: "Sorry, I can't help with that"
//! sure = 0.70                        # below: a low-stakes reading is asked first
//!
//! [wakeword]
//! ack_command = "aplay ding.wav"     # plays on wake; default: a short bundled chime; "none"
//! [[wakeword.words]]                 # default: one word, models/jarvis.rpw
//! model = "models/jarvis.rpw"        # from `voicegate wakeword train`
//! phrase = "jarvis"                  # default: the model's manifest
//! sensitivity = 0.5                  # 0..1, higher wakes more easily
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::Deserialize;

use crate::actions::handlers::Handlers;
use crate::actions::music::{MpdAddress, MpdConfig};
use crate::audio::AudioInput;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::cli::{GlobalArgs, RunArgs, SpeechArgs};
use crate::gate::{GateConfig, Money, PinHash};
use crate::intent::IntentSet;
use crate::intent::grammar::GrammarOptions;
use crate::stt::prompt::vocabulary_prompt;
use crate::stt::{SttGrammar, SttOptions};

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (with line and column when the parser knows them).
        message: String,
    },
    /// The purchase catalogue it names is unreadable or wrong.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    intents_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    gate: GateSection,
    #[serde(default)]
    prices: BTreeMap<String, String>,
    #[serde(default)]
    purchases: PurchasesSection,
    #[serde(default)]
    handlers: Option<Handlers>,
    #[serde(default)]
    music: MusicSection,
    #[serde(default)]
    alarms: AlarmsSection,
    #[serde(default)]
    speech: SpeechSection,
    #[serde(default)]
    wakeword: WakewordSection,
    #[serde(default)]
    understanding: UnderstandingSection,
    #[serde(default)]
    wyoming: WyomingSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WyomingSection {
    uri: Option<String>,
    allow_remote: Option<bool>,
    max_connections: Option<usize>,
    stt_queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnderstandingSection {
    fallback: Option<String>,
    out_of_scope: Option<f32>,
    sure: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WakewordSection {
    ack_command: Option<String>,
    #[serde(default)]
    words: Vec<WordEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WordEntry {
    model: PathBuf,
    phrase: Option<String>,
    sensitivity: Option<f32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeechSection {
    tts_command: Option<String>,
    echo_tail_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateSection {
    confirm_timeout_secs: Option<f64>,
    min_confidence: Option<f32>,
    pin_hash: Option<String>,
    #[serde(default)]
    pin_kinds: Vec<String>,
    pin_attempts: Option<u32>,
    pin_lockout_secs: Option<u64>,
    daily_spend_cap: Option<String>,
    currency: Option<String>,
    allow_unpriced_purchases: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchasesSection {
    catalogue: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MusicSection {
    mpd: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmsSection {
    ring_command: Option<String>,
    ring_command_audible: Option<bool>,
}

/// A sound voicegate makes for an event (the spoken responses, the wake
/// chime), as the config or a flag names it: `"none"` (or empty) is
/// silence, any other text a shell command, and no setting the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Sound {
    /// voicegate's own choice (the bundled chime; for speech piper when
    /// it is installed, else espeak-ng when that is).
    #[default]
    Default,
    /// piper's natural voice (`scripts/setup-tts.sh` installs it; for
    /// speech only, the chime is the default one).
    Piper,
    /// This shell command (`sh -c`).
    Command(String),
    /// Nothing.
    Silent,
}

impl Sound {
    /// Reads a setting: `None` → [`Sound::Default`], `"none"` or `""` →
    /// [`Sound::Silent`], `"piper"` → [`Sound::Piper`], else the command.
    pub fn from_setting(text: Option<&str>) -> Sound {
        match text.map(str::trim) {
            None => Sound::Default,
            Some("none") | Some("") => Sound::Silent,
            Some("piper") => Sound::Piper,
            Some(command) => Sound::Command(command.to_string()),
        }
    }
}

/// Validated settings for every command.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the intent files are.
    pub intents_dir: PathBuf,
    /// Where state lives.
    pub data_dir: PathBuf,
    /// JSON output.
    pub json: bool,
    /// The gate's settings.
    pub gate: GateConfig,
    /// Handlers for high-stakes action kinds.
    pub handlers: Handlers,
    /// Where mpd is.
    pub mpd: MpdConfig,
    /// Command to run when an alarm or timer rings (default: the bundled sound).
    pub ring_command: Option<String>,
    /// Whether the ring command makes a sound the microphone would hear
    /// (default true: the microphone is muted while it runs).
    pub ring_command_audible: bool,
    /// How `run` listens and speaks.
    pub speech: SpeechSettings,
    /// The fallback recogniser for what no template matches.
    pub understanding: crate::nlu::FallbackSettings,
    /// What can be ordered (`[purchases] catalogue`, or the shipped
    /// example without prices); its prices are in `gate.prices`.
    pub catalogue: Catalogue,
    /// `voicegate serve --wyoming`: where and how many.
    pub wyoming: WyomingSettings,
}

/// The Wyoming server's settings (`[wyoming]`, and `serve --wyoming URI`).
#[derive(Debug, Clone, PartialEq)]
pub struct WyomingSettings {
    /// Where to listen (from `tcp://HOST:PORT`).
    pub address: std::net::SocketAddr,
    /// Binding to a non-loopback address is allowed (Wyoming has no
    /// authentication: anyone who can connect can order).
    pub allow_remote: bool,
    /// Connections served at once; more are told "busy" and closed.
    pub max_connections: usize,
    /// Transcriptions that may wait for whisper; more get an `error`.
    pub stt_queue: usize,
}

/// The default Wyoming address: loopback, Wyoming's customary port.
pub const DEFAULT_WYOMING_URI: &str = "tcp://127.0.0.1:10700";

impl Default for WyomingSettings {
    fn default() -> Self {
        WyomingSettings {
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 10700)),
            allow_remote: false,
            max_connections: 8,
            stt_queue: 4,
        }
    }
}

impl WyomingSettings {
    /// These settings listening on `uri` (`tcp://HOST:PORT`, HOST an IP
    /// address or `localhost`). A non-loopback address is refused unless
    /// `allow_remote`: the check is here, once, for the config and the flag.
    pub fn with_uri(mut self, uri: &str) -> Result<WyomingSettings, String> {
        let rest = uri
            .strip_prefix("tcp://")
            .ok_or_else(|| format!("'{uri}': a Wyoming address is tcp://HOST:PORT"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let address: std::net::SocketAddr = match rest.strip_prefix("localhost:") {
            Some(port) => port
                .parse::<u16>()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
                .map_err(|_| format!("'{uri}': the port is not a number"))?,
            None => rest
                .parse()
                .map_err(|_| format!("'{uri}': HOST:PORT must be an IP address and a port"))?,
        };
        if !address.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "'{uri}' is not a loopback address: Wyoming has no authentication, so anyone \
                 who can connect could order and book through the gate; set \
                 `[wyoming] allow_remote = true` to serve the network anyway"
            ));
        }
        self.address = address;
        Ok(self)
    }
}

fn wyoming(w: &WyomingSection) -> Result<WyomingSettings, String> {
    let base = WyomingSettings {
        allow_remote: w.allow_remote.unwrap_or(false),
        ..WyomingSettings::default()
    };
    let mut settings = base.with_uri(w.uri.as_deref().unwrap_or(DEFAULT_WYOMING_URI))?;
    if let Some(n) = w.max_connections {
        if n == 0 {
            return Err("[wyoming] max_connections must be at least 1".into());
        }
        settings.max_connections = n;
    }
    if let Some(n) = w.stt_queue {
        if n == 0 {
            return Err("[wyoming] stt_queue must be at least 1".into());
        }
        settings.stt_queue = n;
    }
    Ok(settings)
}

/// How `voicegate run` listens and speaks: the config's `[speech]` and
/// `[wakeword]` sections, with `run`'s flags applied once
/// ([`Settings::with_run_flags`]). The daemon takes it as it is.
#[derive(Debug, Clone)]
pub struct SpeechSettings {
    /// What is listened to (`--text`, `--input`, `--device`).
    pub listen: Listen,
    /// `--realtime`: pace file input like a microphone.
    pub realtime: bool,
    /// How whisper decodes (`--model` and the other speech flags).
    pub decoding: Decoding,
    /// Silence that ends a command, ms (`None`: the endpointer's default).
    pub silence_end_ms: Option<u32>,
    /// What speaks responses (a command gets the text on stdin).
    pub tts: Sound,
    /// What plays when a wake word is heard.
    pub ack: Sound,
    /// How long the microphone stays muted after each of voicegate's own
    /// sounds (see `audio::HalfDuplex`).
    pub echo_tail: std::time::Duration,
    /// The wake words; empty: none (`--no-wake`, `--text`), every
    /// utterance is a command. From the config, the default is "jarvis".
    pub wake_words: Vec<WakeWordSetting>,
}

impl Default for SpeechSettings {
    /// The microphone, no wake word, the default sounds and decoding.
    fn default() -> SpeechSettings {
        SpeechSettings {
            listen: Listen::default(),
            realtime: false,
            decoding: Decoding::default(),
            silence_end_ms: None,
            tts: Sound::Default,
            ack: Sound::Default,
            echo_tail: crate::audio::DEFAULT_TAIL,
            wake_words: Vec::new(),
        }
    }
}

impl SpeechSettings {
    /// Applies `run`'s flags: each one given wins over the config.
    fn apply_run_flags(&mut self, args: &RunArgs) {
        self.listen = if args.text {
            Listen::Typed
        } else {
            Listen::Audio(AudioInput::from_flags(
                args.input.as_deref(),
                args.device.as_deref(),
            ))
        };
        self.realtime = args.realtime;
        self.decoding = Decoding::from_args(&args.speech);
        self.silence_end_ms = args.silence_ms;
        if let Some(text) = &args.tts {
            self.tts = Sound::from_setting(Some(text));
        }
        if let Some(text) = &args.ack {
            self.ack = Sound::from_setting(Some(text));
        }
        if args.no_wake || args.text {
            self.wake_words.clear();
            return;
        }
        if !args.wake_model.is_empty() {
            self.wake_words = args
                .wake_model
                .iter()
                .map(|model| WakeWordSetting {
                    model: model.clone(),
                    phrase: None,
                    sensitivity: 0.5,
                })
                .collect();
        }
        if let Some(sensitivity) = args.sensitivity {
            for word in &mut self.wake_words {
                word.sensitivity = sensitivity;
            }
        }
    }
}

/// What the daemon listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// Typed lines on stdin (`--text`).
    Typed,
    /// Audio (the microphone, a WAV file, raw PCM on stdin).
    Audio(AudioInput),
}

impl Default for Listen {
    fn default() -> Listen {
        Listen::Audio(AudioInput::Microphone { device: None })
    }
}

/// How whisper decodes: the speech flags (`run`, `transcribe`, `eval`),
/// typed. Two profiles, each measured on the speech-to-intent benchmark
/// (see the README's figures):
/// - **the grammar (default):** decoding constrained to the loaded intents'
///   sentences, no vocabulary prompt (with the grammar it only slowed
///   decoding down), and the numbers of [`SttOptions::default`]
///   ([`SttOptions::for_intents`]);
/// - **free decoding (`--no-grammar`):** greedy, with the vocabulary prompt
///   and the larger window that keeps it from looping
///   ([`SttOptions::free_decoding`]).
///
/// Each setting can still be given on its own. What needs the intents
/// (the grammar, the prompt) is added by [`Decoding::stt_options`].
#[derive(Debug, Clone)]
pub struct Decoding {
    /// The whisper model file (`None`: the installed default).
    pub model: Option<PathBuf>,
    /// The profile's options with each flag applied; no grammar, no prompt.
    pub options: SttOptions,
    /// Decoding within the intents' grammar (`None`: free decoding).
    pub grammar: Option<GrammarFlags>,
    /// Whether whisper gets the vocabulary prompt.
    pub vocabulary_prompt: bool,
    /// Prompt the free reading of unsure grammar readings with the
    /// vocabulary (the default; `--no-free-prompt` turns it off).
    pub free_prompt: bool,
}

/// The grammar's flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrammarFlags {
    /// Leave sentences with free-text (wildcard) slots out.
    pub skip_wildcards: bool,
    /// Logit penalty for leaving it (`None`: forbid it).
    pub penalty: Option<f32>,
}

impl Default for Decoding {
    /// What no flag gives: the grammar profile.
    fn default() -> Decoding {
        Decoding::from_args(&SpeechArgs::default())
    }
}

impl Decoding {
    /// Reads the speech flags.
    pub fn from_args(args: &SpeechArgs) -> Decoding {
        let grammar = (!args.no_grammar).then_some(GrammarFlags {
            skip_wildcards: args.grammar_skip_wildcards,
            penalty: args.grammar_penalty,
        });
        let mut options = if grammar.is_some() {
            SttOptions::default()
        } else {
            SttOptions::free_decoding()
        };
        if let Some(n) = args.threads {
            options.threads = n.max(1);
        }
        options.shrink_window = !args.full_window;
        if let Some(frames) = args.min_window {
            options.min_audio_ctx = frames;
        }
        if let Some(n) = args.beam {
            options.beam = n.max(1);
        }
        if let Some(c) = args.retry_below {
            options.retry_below = c;
        }
        if let Some(c) = args.beam_below {
            options.beam_below = c;
        }
        if let Some(c) = args.free_below {
            options.free_below = c;
        }
        if let Some(x) = args.free_likelier {
            options.free_likelier = x;
        }
        options.free_backs = !args.no_free_backing;
        if let Some(w) = args.short_below {
            options.short_below = w;
        }
        if let Some(c) = args.free_first_below {
            options.free_first_below = c;
        }
        if let Some(n) = args.free_beam {
            options.free_beam = n;
        }
        options.fallback_model = args.fallback_model.clone();
        options.free_model = args.free_model.clone();
        Decoding {
            model: args.model.clone(),
            options,
            vocabulary_prompt: args.prompt || (grammar.is_none() && !args.no_prompt),
            free_prompt: !args.no_free_prompt,
            grammar,
        }
    }

    /// The options for decoding commands to `intents`: with their grammar
    /// and vocabulary prompt if chosen. `lead_in` is the wake phrases a
    /// command may start with.
    pub fn stt_options(&self, intents: &IntentSet, lead_in: &[String]) -> SttOptions {
        let mut options = self.options.clone();
        if let Some(flags) = self.grammar {
            let grammar_options = GrammarOptions {
                skip_wildcards: flags.skip_wildcards,
                lead_in: lead_in.to_vec(),
            };
            let mut grammar = SttGrammar::new(intents, grammar_options);
            if let Some(penalty) = flags.penalty {
                grammar.penalty = penalty;
            }
            options.grammar = Some(grammar);
        }
        if self.vocabulary_prompt {
            options.prompt = vocabulary_prompt(intents);
        }
        if self.free_prompt {
            options.free_prompt = vocabulary_prompt(intents);
        }
        options
    }
}

/// One configured wake word, as the file says it (the model is loaded, and
/// its manifest read, when the daemon starts).
#[derive(Debug, Clone, PartialEq)]
pub struct WakeWordSetting {
    /// The stage-1 model file.
    pub model: PathBuf,
    /// The phrase whisper verifies (`None`: from the model's manifest).
    pub phrase: Option<String>,
    /// 0..1.
    pub sensitivity: f32,
}

/// The wake word model shipped in `models/`: `./models/jarvis.rpw` when run
/// from a checkout, else the one beside the source tree the binary was
/// built from.
pub fn default_wake_model() -> PathBuf {
    let local = PathBuf::from("models/jarvis.rpw");
    if local.is_file() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/jarvis.rpw")
}

impl Settings {
    /// The audit log's database file.
    pub fn audit_db(&self) -> PathBuf {
        self.data_dir.join("audit.db")
    }

    /// The state database (alarms, timers, the execution journal).
    pub fn state_db(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }

    /// Merges the config file (explicit, or `./voicegate.toml` if present)
    /// with command-line flags; flags win.
    pub fn resolve(args: &GlobalArgs) -> Result<Settings, ConfigError> {
        let default_file = PathBuf::from("voicegate.toml");
        let (path, file, base) = match &args.config {
            Some(path) => (path.clone(), Some(read_config(path)?), parent(path)),
            None if default_file.is_file() => (
                default_file.clone(),
                Some(read_config(&default_file)?),
                PathBuf::from("."),
            ),
            None => (default_file, None, PathBuf::from(".")),
        };
        let file = file.unwrap_or_default();
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };
        let intents_dir = args
            .intents
            .clone()
            .or_else(|| file.intents_dir.map(|p| base.join(p)))
            .unwrap_or_else(default_intents_dir);
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| file.data_dir.map(|p| expand_home(&base.join(p))))
            .unwrap_or_else(default_data_dir);

        let mut gate = gate_config(&file.gate, &file.prices, args.confirm_timeout, &invalid)?;
        let catalogue = match &file.purchases.catalogue {
            Some(relative) => {
                let currency = file.gate.currency.as_deref().unwrap_or("USD");
                Catalogue::load(&base.join(relative), currency)?
            }
            None => Catalogue::example()?,
        };
        add_catalogue_prices(&mut gate, &catalogue, &invalid)?;
        let mut mpd = MpdConfig::default();
        if let Some(address) = &file.music.mpd {
            mpd.address =
                MpdAddress::parse(address).map_err(|e| invalid(format!("[music] mpd: {e}")))?;
        }
        mpd.password = file.music.password.clone();
        let mut wake_words = Vec::new();
        for w in &file.wakeword.words {
            let sensitivity = w.sensitivity.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&sensitivity) {
                return Err(invalid(format!(
                    "[[wakeword.words]] sensitivity must be in 0..1, got {sensitivity}"
                )));
            }
            wake_words.push(WakeWordSetting {
                model: base.join(&w.model),
                phrase: w.phrase.clone(),
                sensitivity,
            });
        }
        if wake_words.is_empty() {
            wake_words.push(WakeWordSetting {
                model: default_wake_model(),
                phrase: None,
                sensitivity: 0.5,
            });
        }
        Ok(Settings {
            intents_dir,
            data_dir,
            json: args.json,
            gate,
            handlers: file.handlers.unwrap_or_default(),
            mpd,
            ring_command: file.alarms.ring_command.clone(),
            ring_command_audible: file.alarms.ring_command_audible.unwrap_or(true),
            speech: SpeechSettings {
                echo_tail: file
                    .speech
                    .echo_tail_ms
                    .map_or(crate::audio::DEFAULT_TAIL, std::time::Duration::from_millis),
                tts: Sound::from_setting(file.speech.tts_command.as_deref()),
                wake_words,
                ack: Sound::from_setting(file.wakeword.ack_command.as_deref()),
                ..SpeechSettings::default()
            },
            understanding: understanding(&file.understanding).map_err(invalid)?,
            catalogue,
            wyoming: wyoming(&file.wyoming).map_err(|e| invalid(format!("[wyoming] {e}")))?,
        })
    }

    /// The lists the intents are built with: the catalogue's products.
    pub fn intent_lists(&self) -> std::collections::HashMap<String, crate::intent::ListDef> {
        self.catalogue.lists()
    }

    /// These settings with `voicegate run`'s flags applied (see
    /// [`SpeechSettings`]).
    pub fn with_run_flags(mut self, args: &RunArgs) -> Settings {
        self.speech.apply_run_flags(args);
        self
    }
}

/// `[understanding]` → the fallback's settings: its model, and thresholds
/// (each defaults to the model's calibrated value) in 0..1, the sure one
/// not below the out-of-scope one.
fn understanding(u: &UnderstandingSection) -> Result<crate::nlu::FallbackSettings, String> {
    let model: crate::nlu::FallbackModel = match &u.fallback {
        Some(name) => name.parse().map_err(|e| format!("[understanding] {e}"))?,
        None => Default::default(),
    };
    let mut thresholds = model.default_thresholds();
    if let Some(t) = u.out_of_scope {
        thresholds.out_of_scope = t;
    }
    if let Some(t) = u.sure {
        thresholds.sure = t;
    }
    let ok = |t: f32| t.is_finite() && (0.0..=1.0).contains(&t);
    if !ok(thresholds.out_of_scope) || !ok(thresholds.sure) {
        return Err("[understanding] out_of_scope and sure must be numbers from 0 to 1".into());
    }
    if thresholds.sure < thresholds.out_of_scope {
        return Err(format!(
            "[understanding] sure ({}) is below out_of_scope ({}): nothing could be unsure",
            thresholds.sure, thresholds.out_of_scope
        ));
    }
    Ok(crate::nlu::FallbackSettings { model, thresholds })
}

/// Adds the catalogue's prices to the gate's (`[prices]` ones are there
/// already). An item priced in both is an error rather than a silent
/// choice; prices follow the spend cap's currency, as `[prices]` do.
fn add_catalogue_prices(
    gate: &mut GateConfig,
    catalogue: &Catalogue,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    let file = catalogue
        .path
        .as_deref()
        .map_or_else(|| "the catalogue".to_string(), |p| p.display().to_string());
    for (item, money) in catalogue.prices() {
        if gate.prices.contains_key(item) {
            return Err(invalid(format!(
                "[prices] {item:?} is also priced in {file}: keep one (move the price to the item's `price` there and delete the [prices] entry)"
            )));
        }
        if let Some(cap) = &gate.daily_spend_cap
            && money.currency != cap.currency
        {
            return Err(invalid(format!(
                "{file}: item {item:?} is in {}, but [gate] daily_spend_cap is in {}: the cap can only count one currency",
                money.currency, cap.currency
            )));
        }
        gate.prices.insert(item.to_string(), money.clone());
    }
    Ok(())
}

/// The `[gate]` section and `[prices]` → a validated [`GateConfig`]
/// (`confirm_timeout` is the flag, which wins over the file).
fn gate_config(
    g: &GateSection,
    prices: &BTreeMap<String, String>,
    confirm_timeout: Option<f64>,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<GateConfig, ConfigError> {
    let currency = g.currency.clone().unwrap_or_else(|| "USD".into());
    let mut gate = GateConfig::default();
    let timeout = confirm_timeout.or(g.confirm_timeout_secs);
    if let Some(secs) = timeout {
        if !(secs.is_finite() && secs > 0.0 && secs <= 600.0) {
            return Err(invalid(format!(
                "confirm timeout must be between 0 and 600 seconds, got {secs}"
            )));
        }
        gate.confirm_timeout = Duration::milliseconds((secs * 1000.0).round() as i64);
    }
    if let Some(c) = g.min_confidence {
        if !(0.0..=1.0).contains(&c) {
            return Err(invalid(format!(
                "[gate] min_confidence must be in 0..1, got {c}"
            )));
        }
        gate.min_confidence = c;
    }
    if let Some(text) = &g.pin_hash {
        gate.pin =
            Some(PinHash::parse(text).map_err(|e| invalid(format!("[gate] pin_hash: {e}")))?);
    }
    gate.pin_kinds = g
        .pin_kinds
        .iter()
        .map(|k| {
            k.parse()
                .map_err(|e| invalid(format!("[gate] pin_kinds: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if !gate.pin_kinds.is_empty() && gate.pin.is_none() {
        return Err(invalid(
            "[gate] pin_kinds is set but pin_hash is not".into(),
        ));
    }
    if let Some(n) = g.pin_attempts {
        gate.pin_attempts = n.max(1);
    }
    if let Some(secs) = g.pin_lockout_secs {
        gate.pin_lockout = Duration::seconds(secs.min(86_400) as i64);
    }
    if let Some(cap) = &g.daily_spend_cap {
        gate.daily_spend_cap = Some(Money::parse(cap, &currency).ok_or_else(|| {
            invalid(format!(
                "[gate] daily_spend_cap {cap:?} is not an amount like \"50.00 USD\""
            ))
        })?);
    }
    for (item, price) in prices {
        let money = Money::parse(price, &currency).ok_or_else(|| {
            invalid(format!(
                "[prices] {item:?} = {price:?} is not an amount like \"4.99 USD\""
            ))
        })?;
        if let Some(cap) = &gate.daily_spend_cap
            && money.currency != cap.currency
        {
            return Err(invalid(format!(
                "[prices] {item:?} is in {}, but [gate] daily_spend_cap is in {}: the cap can only count one currency",
                money.currency, cap.currency
            )));
        }
        gate.prices.insert(item.clone(), money);
    }
    gate.allow_unpriced = g.allow_unpriced_purchases.unwrap_or(false);
    Ok(gate)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `./intents` when run from a checkout, else the intents shipped beside the
/// source tree the binary was built from.
fn default_intents_dir() -> PathBuf {
    let local = PathBuf::from("intents");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("intents")
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("voicegate"),
        _ => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".local/share/voicegate"),
            None => PathBuf::from(".voicegate"),
        },
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match (
        path.strip_prefix("./~").or_else(|_| path.strip_prefix("~")),
        std::env::var_os("HOME"),
    ) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str) -> Settings {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("voicegate.toml");
        std::fs::write(&path, text).expect("write the config");
        let args = GlobalArgs {
            config: Some(path),
            data_dir: Some(dir.path().to_path_buf()),
            json: false,
            intents: Some(dir.path().to_path_buf()),
            confirm_timeout: None,
        };
        Settings::resolve(&args).expect("a valid config")
    }

    /// Resolves a config with a catalogue file beside it.
    fn resolve_with_catalogue(config: &str, catalogue: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("shop")).expect("mkdir");
        std::fs::write(dir.path().join("shop/catalogue.toml"), catalogue).expect("write");
        let path = dir.path().join("voicegate.toml");
        std::fs::write(&path, config).expect("write the config");
        let args = GlobalArgs {
            config: Some(path),
            data_dir: Some(dir.path().to_path_buf()),
            json: false,
            intents: Some(dir.path().to_path_buf()),
            confirm_timeout: None,
        };
        Settings::resolve(&args)
    }

    const SHOP: &str = "[[item]]\nname = \"tea\"\nsynonyms = [\"tea bags\"]\nprice = \"3.50 USD\"\n\
                        [[item]]\nname = \"bread\"\n";

    #[test]
    fn the_catalogue_gives_the_products_and_their_prices() {
        let with = |extra: &str| {
            resolve_with_catalogue(
                &format!("[purchases]\ncatalogue = \"shop/catalogue.toml\"\n{extra}"),
                SHOP,
            )
        };
        let settings = with("[prices]\nlatte = \"4.50 USD\"\n").expect("valid");
        let names: Vec<&str> = settings
            .catalogue
            .items
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["tea", "bread"]);
        assert_eq!(settings.gate.prices["tea"].cents, 350);
        assert_eq!(
            settings.gate.prices["latte"].cents, 450,
            "[prices] still counts"
        );
        assert!(!settings.gate.prices.contains_key("bread"));
        assert!(settings.intent_lists().contains_key("purchase_product"));

        let both = with("[prices]\ntea = \"3.00 USD\"\n").expect_err("priced twice");
        assert!(
            both.to_string().contains("\"tea\" is also priced in"),
            "{both}"
        );
        assert!(both.to_string().contains("catalogue.toml"), "{both}");

        let cap = with("[gate]\ndaily_spend_cap = \"20.00 EUR\"\n").expect_err("currency");
        assert!(cap.to_string().contains("item \"tea\" is in USD"), "{cap}");
    }

    #[test]
    fn a_bad_catalogue_is_a_config_error_naming_the_file_and_item() {
        let config = "[purchases]\ncatalogue = \"shop/catalogue.toml\"\n";
        let error = resolve_with_catalogue(config, "[[item]]\nname = \"tea\"\nprice = \"lots\"\n")
            .expect_err("a bad price");
        let text = error.to_string();
        assert!(text.contains("shop/catalogue.toml"), "{text}");
        assert!(text.contains("item \"tea\": price \"lots\""), "{text}");
        let missing = resolve_with_catalogue("[purchases]\ncatalogue = \"nope.toml\"\n", SHOP)
            .expect_err("no such file");
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
    }

    #[test]
    fn without_a_catalogue_the_example_is_used_unpriced() {
        let settings = resolve_text("");
        assert_eq!(settings.catalogue.path, None);
        assert!(
            settings
                .catalogue
                .items
                .iter()
                .any(|i| i.name == "paper towels")
        );
        assert!(settings.gate.prices.is_empty());
    }

    #[test]
    fn the_fallback_settings_are_checked() {
        let default = resolve_text("");
        assert_eq!(
            default.understanding,
            crate::nlu::FallbackSettings::default()
        );
        let set = resolve_text("[understanding]\nfallback = \"off\"\nsure = 0.9\n");
        assert_eq!(set.understanding.model, crate::nlu::FallbackModel::Off);
        assert_eq!(set.understanding.thresholds.sure, 0.9);
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "[understanding]\nfallback = \"gpt\"\n",
            "[understanding]\nsure = 1.5\n",
            "[understanding]\nout_of_scope = 0.9\nsure = 0.5\n",
        ] {
            let path = dir.path().join("voicegate.toml");
            std::fs::write(&path, bad).expect("write");
            let args = GlobalArgs {
                config: Some(path),
                data_dir: Some(dir.path().to_path_buf()),
                json: false,
                intents: Some(dir.path().to_path_buf()),
                confirm_timeout: None,
            };
            let e = Settings::resolve(&args).expect_err(bad).to_string();
            assert!(e.contains("[understanding]"), "{e}");
        }
    }

    #[test]
    fn the_wyoming_address_is_loopback_unless_allowed() {
        let s = resolve_text("");
        assert_eq!(s.wyoming, WyomingSettings::default());
        let s = resolve_text("[wyoming]\nuri = \"tcp://127.0.0.1:10800\"\nmax_connections = 2\n");
        assert_eq!(s.wyoming.address.port(), 10800);
        assert_eq!(s.wyoming.max_connections, 2);
        let s = resolve_text("[wyoming]\nuri = \"tcp://localhost:10801\"\n");
        assert!(s.wyoming.address.ip().is_loopback());
        let refused = WyomingSettings::default().with_uri("tcp://0.0.0.0:10700");
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("allow_remote")),
            "{refused:?}"
        );
        let s = resolve_text("[wyoming]\nuri = \"tcp://0.0.0.0:10700\"\nallow_remote = true\n");
        assert!(!s.wyoming.address.ip().is_loopback());
        for bad in [
            "http://127.0.0.1:1",
            "tcp://127.0.0.1",
            "tcp://example.org:1",
        ] {
            assert!(WyomingSettings::default().with_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn half_duplex_keys_have_defaults_and_can_be_set() {
        let default = resolve_text("");
        assert_eq!(default.speech.echo_tail, crate::audio::DEFAULT_TAIL);
        assert!(default.ring_command_audible);
        let set = resolve_text(
            "[speech]\necho_tail_ms = 250\n[alarms]\nring_command = \"lamp on\"\nring_command_audible = false\n",
        );
        assert_eq!(set.speech.echo_tail, std::time::Duration::from_millis(250));
        assert!(!set.ring_command_audible);
    }

    /// `voicegate run ARGS`'s flags, parsed as `main` parses them.
    fn run_args(args: &[&str]) -> RunArgs {
        use clap::Parser;
        let argv = ["voicegate", "run"].iter().chain(args);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("valid flags");
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not `run`");
        };
        run
    }

    const SPEECH_CONFIG: &str = "[speech]\ntts_command = \"say\"\n\
        [wakeword]\nack_command = \"none\"\n\
        [[wakeword.words]]\nmodel = \"a.rpw\"\nsensitivity = 0.3\n\
        [[wakeword.words]]\nmodel = \"b.rpw\"\nphrase = \"computer\"\nsensitivity = 0.7\n";

    #[test]
    fn a_sound_setting_names_piper_a_command_or_nothing() {
        for (setting, sound) in [
            (None, Sound::Default),
            (Some("piper"), Sound::Piper),
            (Some(" piper "), Sound::Piper),
            (Some("none"), Sound::Silent),
            (Some(""), Sound::Silent),
            (
                Some("espeak-ng -s 160"),
                Sound::Command("espeak-ng -s 160".into()),
            ),
        ] {
            assert_eq!(Sound::from_setting(setting), sound, "{setting:?}");
        }
    }

    #[test]
    fn without_run_flags_the_config_speaks() {
        let settings = resolve_text(SPEECH_CONFIG);
        let speech = settings.clone().with_run_flags(&run_args(&[])).speech;
        assert_eq!(speech.listen, Listen::default());
        assert!(!speech.realtime);
        assert_eq!(speech.silence_end_ms, None);
        assert_eq!(speech.tts, Sound::Command("say".into()));
        assert_eq!(speech.ack, Sound::Silent);
        assert_eq!(speech.wake_words, settings.speech.wake_words);
        let sensitivities: Vec<f32> = speech.wake_words.iter().map(|w| w.sensitivity).collect();
        assert_eq!(sensitivities, [0.3, 0.7]);
        assert!(speech.decoding.grammar.is_some());
        assert!(!speech.decoding.vocabulary_prompt);
    }

    #[test]
    fn run_flags_win_over_the_config() {
        let settings = resolve_text(SPEECH_CONFIG);
        let flags = ["--tts", "none", "--ack", "beep", "--sensitivity", "0.9"];
        let speech = settings.clone().with_run_flags(&run_args(&flags)).speech;
        assert_eq!(speech.tts, Sound::Silent);
        assert_eq!(speech.ack, Sound::Command("beep".into()));
        assert!(speech.wake_words.iter().all(|w| w.sensitivity == 0.9));
        assert_eq!(speech.wake_words.len(), 2);

        let flags = ["--wake-model", "c.rpw", "--input", "x.wav", "--realtime"];
        let speech = settings.clone().with_run_flags(&run_args(&flags)).speech;
        assert_eq!(
            speech.wake_words,
            [WakeWordSetting {
                model: "c.rpw".into(),
                phrase: None,
                sensitivity: 0.5
            }]
        );
        assert_eq!(
            speech.listen,
            Listen::Audio(AudioInput::Wav("x.wav".into()))
        );
        assert!(speech.realtime);

        let flags = ["--no-wake", "--silence-ms", "300", "--no-grammar"];
        let speech = settings.clone().with_run_flags(&run_args(&flags)).speech;
        assert!(speech.wake_words.is_empty());
        assert_eq!(speech.silence_end_ms, Some(300));
        assert!(speech.decoding.grammar.is_none());
        assert!(speech.decoding.vocabulary_prompt);

        let speech = settings.with_run_flags(&run_args(&["--text"])).speech;
        assert_eq!(speech.listen, Listen::Typed);
        assert!(speech.wake_words.is_empty());
    }
}
