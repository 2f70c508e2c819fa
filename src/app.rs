//! The commands: what each subcommand does with typed settings.
//!
//! `main` parses arguments and calls [`run`]; everything here returns typed
//! errors and an exit code, and writes its output to the writer it is given.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::cli::{
    ChatArgs, CheckArgs, Cli, Command, EvalArgs, EvalCommand, ExplainArgs, GateCommand,
    IntentsCommand, RunArgs, SayArgs, SpeechArgs, TestArgs, TranscribeArgs,
};
use crate::config::Settings;
use crate::error::AppError;
use crate::gate::{PinHash, Utterance};
use crate::intent::suite;
use crate::intent::{Diagnostic, IntentSet, ListDef, Recognition};
use crate::output::print_events;
use crate::pipeline::{Pipeline, PipelineConfig};

/// Runs a parsed command line. Returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<i32, AppError> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Intents(IntentsCommand::Check(args)) => check(&settings, args, out),
        Command::Intents(IntentsCommand::Test(args)) => test(&settings, args, out),
        Command::Intents(IntentsCommand::Explain(args)) => explain(&settings, args, out),
        Command::Run(args) => run_daemon(&settings, args, out),
        Command::Transcribe(args) => transcribe(&settings, args, out),
        Command::Models(cmd) => {
            let dir = crate::stt::model::default_models_dir()?;
            Ok(crate::stt::model::cli::run(cmd, &dir, settings.json, out)?)
        }
        Command::Wakeword(cmd) => Ok(crate::wakeword::cli::run(cmd, settings.json, out)?),
        Command::Eval(EvalCommand::SpeechToIntent(args)) => eval_speech(&settings, args, out),
        Command::Say(args) => say(&settings, args, out),
        Command::Chat(args) => chat(&settings, args, out),
        Command::Audit(cmd) => Ok(crate::audit::cli::run(
            cmd,
            &settings.audit_db(),
            settings.json,
            Utc::now(),
            out,
        )?),
        Command::Gate(GateCommand::HashPin(args)) => hash_pin(args, out),
    }
}

/// Loads the configured intents for use, with the catalogue's products:
/// errors refuse to start (we never run a half-understood set of intents);
/// warnings go to stderr.
pub fn load_intents(settings: &Settings) -> Result<IntentSet, AppError> {
    load_intents_with(&settings.intents_dir, &settings.intent_lists())
}

fn load_intents_with(dir: &Path, lists: &HashMap<String, ListDef>) -> Result<IntentSet, AppError> {
    let (set, diags) = IntentSet::load_path(dir, lists)?;
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        return Err(AppError::Invalid {
            dir: dir.display().to_string(),
            count: errors,
        });
    }
    Ok(set)
}

fn parse_context(pairs: &[String]) -> Result<Map<String, Value>, AppError> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(AppError::Usage(format!(
                "--context wants KEY=VALUE, got '{pair}'"
            )));
        };
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        map.insert(key.trim().to_string(), value);
    }
    Ok(map)
}

/// The catalogue's lists, and a fixtures file's (which win) if given.
fn fixture_lists(
    settings: &Settings,
    fixtures: Option<&Path>,
) -> Result<HashMap<String, ListDef>, AppError> {
    let mut lists = settings.intent_lists();
    if let Some(path) = fixtures {
        lists.extend(suite::read_fixture_lists(path)?);
    }
    Ok(lists)
}

fn check(settings: &Settings, args: CheckArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let dir = args.dir.unwrap_or_else(|| settings.intents_dir.clone());
    let lists = fixture_lists(settings, args.fixtures.as_deref())?;
    let (set, diags) = IntentSet::load_path(&dir, &lists)?;
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if settings.json {
        let report = json!({
            "errors": errors,
            "warnings": warnings,
            "intents": set.intents().len(),
            "diagnostics": diags,
        });
        writeln!(out, "{report}")?;
    } else {
        for d in &diags {
            writeln!(out, "{d}\n")?;
        }
        writeln!(
            out,
            "{}: {} intent(s) in {} file(s), {errors} error(s), {warnings} warning(s)",
            dir.display(),
            set.intents().len(),
            set.definitions().files.len()
        )?;
    }
    Ok(if errors > 0 { 1 } else { 0 })
}

fn print_report(
    report: &suite::Report,
    settings: &Settings,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    if settings.json {
        let by_intent: Map<String, Value> = report
            .by_intent
            .iter()
            .map(|(k, t)| (k.clone(), json!({"passed": t.passed, "total": t.total})))
            .collect();
        let mut value = json!({
            "passed": report.passed,
            "total": report.total,
            "by_intent": by_intent,
            "failures_by_cause": report.causes(),
        });
        if verbose {
            value["failures"] = serde_json::to_value(&report.failures).unwrap_or(Value::Null);
        }
        writeln!(out, "{value}")?;
        return Ok(());
    }
    let shown = if verbose {
        report.failures.len()
    } else {
        report.failures.len().min(50)
    };
    for f in report.failures.iter().take(shown) {
        writeln!(
            out,
            "FAIL {}: \"{}\" (expected {}): {}: {}",
            f.location,
            f.sentence,
            f.expected_intent.as_deref().unwrap_or("no match"),
            f.cause,
            f.detail
        )?;
    }
    if shown < report.failures.len() {
        writeln!(
            out,
            "... and {} more (use --verbose)",
            report.failures.len() - shown
        )?;
    }
    for (intent, tally) in &report.by_intent {
        if tally.passed != tally.total {
            writeln!(out, "  {intent}: {}/{}", tally.passed, tally.total)?;
        }
    }
    let causes: Vec<String> = report
        .causes()
        .iter()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    writeln!(
        out,
        "{} passed, {} failed{}",
        report.passed,
        report.total - report.passed,
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        }
    )?;
    Ok(())
}

fn test(settings: &Settings, args: TestArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let report = match &args.suite {
        Some(root) => {
            let sentences: PathBuf = args
                .dir
                .clone()
                .unwrap_or_else(|| root.join("sentences").join(&args.language));
            let tests = root.join("tests").join(&args.language);
            let set = suite::suite_set(&sentences, &tests)?;
            suite::run_suite(&set, &tests, args.policy.into())?
        }
        None => {
            let dir = args
                .dir
                .clone()
                .unwrap_or_else(|| settings.intents_dir.clone());
            let set = load_intents_with(&dir, &settings.intent_lists())?;
            suite::run_own_tests(&set)
        }
    };
    print_report(&report, settings, args.verbose, out)?;
    Ok(if report.passed == report.total { 0 } else { 1 })
}

fn explain(settings: &Settings, args: ExplainArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let set = load_intents_with(
        &settings.intents_dir,
        &fixture_lists(settings, args.fixtures.as_deref())?,
    )?;
    let context = parse_context(&args.context)?;
    let result = set.recognize(&args.text, &context);
    if args.all {
        let all = set.matches(&args.text, &context);
        if settings.json {
            writeln!(out, "{}", json!({"matches": all}))?;
        } else {
            for m in &all {
                writeln!(
                    out,
                    "{} {} wildcards={} literal={} \"{}\" ({}:{})",
                    m.intent,
                    Value::Object(m.slot_map()),
                    m.wildcards,
                    m.literal_chars,
                    m.template.text,
                    m.template.file.display(),
                    m.template.line
                )?;
            }
        }
    }
    let near = match &result {
        Recognition::Match(_) => None,
        Recognition::NotUnderstood(_) => set.near_miss(&args.text, &context),
    };
    if settings.json {
        writeln!(out, "{}", json!({"result": result, "closest": near}))?;
        return Ok(0);
    }
    match &result {
        Recognition::Match(m) => {
            writeln!(
                out,
                "intent: {} (risk {})",
                m.intent,
                crate::output::risk_word(m.risk)
            )?;
            for s in &m.slots {
                writeln!(out, "  {} = {}  (from \"{}\")", s.name, s.value, s.text)?;
            }
            writeln!(
                out,
                "template: \"{}\"\n  at {}:{}:{}",
                m.template.text,
                m.template.file.display(),
                m.template.line,
                m.template.col
            )?;
            writeln!(
                out,
                "specificity: {} wildcard(s), {} literal character(s)",
                m.wildcards, m.literal_chars
            )?;
        }
        Recognition::NotUnderstood(why) => {
            writeln!(out, "not understood: {}", describe(why))?;
            if let Some(near) = near {
                writeln!(
                    out,
                    "closest template ({}): \"{}\"\n  at {}:{}:{}",
                    near.intent,
                    near.template.text,
                    near.template.file.display(),
                    near.template.line,
                    near.template.col
                )?;
                match &near.stopped_at {
                    Some(word) => writeln!(
                        out,
                        "matching stopped at word {} (\"{word}\") after {} word(s)",
                        near.words_matched + 1,
                        near.words_matched
                    )?,
                    None => writeln!(out, "all words matched, but the template wants more")?,
                }
            }
        }
    }
    Ok(0)
}

fn describe(why: &crate::intent::NotUnderstood) -> String {
    match why {
        crate::intent::NotUnderstood::NoMatch => "no template matches".into(),
        crate::intent::NotUnderstood::Ambiguous { candidates } => {
            format!(
                "ambiguous between {} (we do not guess)",
                candidates.join(" and ")
            )
        }
        crate::intent::NotUnderstood::TooComplex => "too complex to match".into(),
        crate::intent::NotUnderstood::TooLong { chars, limit } => {
            format!("too long: {chars} characters, at most {limit}")
        }
    }
}

fn pipeline(settings: &Settings) -> Result<Pipeline, AppError> {
    let intents = load_intents(settings)?;
    Ok(Pipeline::start(
        intents,
        PipelineConfig::from_settings(settings),
    )?)
}

fn say(settings: &Settings, args: SayArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let mut pipeline = pipeline(settings)?;
    let now = Utc::now();
    let mut events = pipeline.recover(now);
    for (key, value) in parse_context(&args.context)? {
        pipeline.set_context(&key, Some(value));
    }
    events.extend(pipeline.handle(&Utterance::typed(args.text), now));
    // One utterance is the whole session: nothing can confirm later.
    events.extend(pipeline.shutdown(now));
    print_events(&events, settings.json, out)?;
    Ok(0)
}

fn chat(settings: &Settings, args: ChatArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let mut pipeline = pipeline(settings)?;
    let mut clock: DateTime<Utc> = Utc::now();
    let now = |clock: &DateTime<Utc>| {
        if args.virtual_clock {
            *clock
        } else {
            Utc::now()
        }
    };
    let events = pipeline.recover(now(&clock));
    print_events(&events, settings.json, out)?;

    // Lines arrive on their own thread so a pending confirmation can expire
    // on time even while nobody types.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Option<String>>(64);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(line) => {
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    loop {
        let line = match pipeline.deadline().filter(|_| !args.virtual_clock) {
            Some(deadline) => {
                let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
                match rx.recv_timeout(wait) {
                    Ok(line) => line,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let events = pipeline.tick(Utc::now());
                        print_events(&events, settings.json, out)?;
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
                }
            }
            None => rx.recv().unwrap_or(None),
        };
        let Some(line) = line else { break };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("/wait") {
            let secs: f64 = rest.trim().parse().map_err(|_| {
                AppError::Usage(format!("'/wait SECS' needs a number, got '{line}'"))
            })?;
            if !args.virtual_clock {
                return Err(AppError::Usage("'/wait' needs --virtual-clock".into()));
            }
            clock += chrono::Duration::milliseconds((secs * 1000.0) as i64);
            let events = pipeline.tick(clock);
            print_events(&events, settings.json, out)?;
            continue;
        }
        let events = pipeline.handle(&Utterance::typed(line), now(&clock));
        print_events(&events, settings.json, out)?;
    }
    let events = pipeline.shutdown(now(&clock));
    print_events(&events, settings.json, out)?;
    Ok(0)
}

/// The vocabulary prompt: one sample sentence per intent, in the intents'
/// own words, so whisper leans toward what the intents understand.
pub fn vocabulary_prompt(intents: &IntentSet) -> String {
    let mut sentences: Vec<String> = Vec::new();
    for intent in &intents.definitions().intents {
        if matches!(
            intent.action.as_ref().map(|a| a.kind.as_str()),
            Some("gate.confirm" | "gate.decline")
        ) {
            continue;
        }
        if let Some((text, _)) = intent.tests.first().and_then(|t| t.sentences.first()) {
            let mut s = text.trim().to_string();
            if let Some(first) = s.get(..1) {
                s = first.to_uppercase() + &s[1..];
            }
            sentences.push(s);
        }
    }
    // (Measured: adding the closed lists' values made short replies worse —
    // "milk, no." for "No." — so the prompt is sentences only.)
    let mut prompt = sentences.join(". ");
    prompt.push('.');
    // whisper keeps at most 224 prompt tokens (the last ones); stay inside.
    const MAX_CHARS: usize = 800;
    if prompt.len() > MAX_CHARS {
        // Keep the end (the sentences); drop words from the front.
        let mut start = prompt.len() - MAX_CHARS;
        while !prompt.is_char_boundary(start) {
            start += 1;
        }
        let start = prompt[start..]
            .find(", ")
            .map(|i| start + i + 2)
            .unwrap_or(start);
        prompt = prompt[start..].to_string();
    }
    prompt
}

/// How whisper decodes, from the flags. Two profiles, each measured on the
/// speech-to-intent benchmark (see the README's figures):
/// - **the grammar (default):** decoding constrained to the loaded intents'
///   sentences, no vocabulary prompt (with the grammar it only slowed
///   decoding down), and the numbers of [`crate::stt::SttOptions::default`]
///   ([`crate::stt::SttOptions::for_intents`]);
/// - **free decoding (`--no-grammar`):** greedy, with the vocabulary prompt
///   and the larger window that keeps it from looping
///   ([`crate::stt::SttOptions::free_decoding`]).
///
/// Each setting can still be given on its own. `lead_in` is the wake
/// phrases a command may start with.
fn stt_options(
    intents: &IntentSet,
    args: &SpeechArgs,
    lead_in: &[String],
) -> crate::stt::SttOptions {
    let grammar = !args.no_grammar;
    let mut options = if grammar {
        let grammar_options = crate::intent::grammar::GrammarOptions {
            skip_wildcards: args.grammar_skip_wildcards,
            lead_in: lead_in.to_vec(),
        };
        crate::stt::SttOptions::for_intents(intents, grammar_options)
    } else {
        crate::stt::SttOptions::free_decoding()
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
    options.fallback_model = args.fallback_model.clone();
    if args.prompt || (!grammar && !args.no_prompt) {
        options.prompt = vocabulary_prompt(intents);
    }
    if let (Some(penalty), Some(grammar)) = (args.grammar_penalty, options.grammar.as_mut()) {
        grammar.penalty = penalty;
    }
    options
}

fn load_engine(
    intents: &IntentSet,
    args: &SpeechArgs,
) -> Result<crate::stt::WhisperTranscriber, AppError> {
    let model = crate::stt::model::locate(args.model.as_deref())?;
    Ok(crate::stt::WhisperTranscriber::load(
        &model,
        stt_options(intents, args, &[]),
    )?)
}

fn run_daemon(settings: &Settings, args: RunArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let intents = load_intents(settings)?;
    let sound = |flag: Option<&String>, setting: &crate::config::Sound| match flag {
        Some(text) => crate::config::Sound::from_setting(Some(text)),
        None => setting.clone(),
    };
    let tts = match sound(args.tts.as_ref(), &settings.tts) {
        crate::config::Sound::Default => crate::daemon::default_tts(),
        crate::config::Sound::Command(command) => Some(command),
        crate::config::Sound::Silent => None,
    };
    let wake_words = if args.no_wake || args.text {
        Vec::new()
    } else {
        wake_words(settings, &args)?
    };
    let options = crate::daemon::RunOptions {
        listen: if args.text {
            crate::daemon::Listen::Typed
        } else {
            crate::daemon::Listen::Audio(crate::audio::AudioInput::from_flags(
                args.input.as_deref(),
                args.device.as_deref(),
            ))
        },
        realtime: args.realtime,
        model: args.speech.model.clone(),
        stt: {
            let lead_in: Vec<String> = wake_words
                .iter()
                .map(|w| {
                    crate::wakeword::detector::whisper_spelling(&w.phrase)
                        .trim()
                        .to_string()
                })
                .collect();
            let mut stt = stt_options(&intents, &args.speech, &lead_in);
            if let Some(word) = wake_words.first() {
                stt.prompt = wake_prompt(&stt.prompt, &word.phrase);
            }
            stt
        },
        tts,
        silence_end_ms: args.silence_ms,
        wake_words,
        ack: sound(args.ack.as_ref(), &settings.ack),
    };
    crate::daemon::run(settings, intents, options, out)
}

/// The vocabulary prompt as the daemon hears commands: each sentence after
/// the wake word ("Jarvis, play some jazz."), since with a wake word every
/// command's audio starts with it. Measured on the piper fixtures: with the
/// plain prompt whisper wrote "Jarvis. Place some jazz."; with this one the
/// command comes out right.
pub fn wake_prompt(prompt: &str, phrase: &str) -> String {
    if prompt.is_empty() {
        return String::new();
    }
    let wake = crate::wakeword::detector::whisper_spelling(phrase);
    let wake = wake.trim();
    prompt
        .split(". ")
        .map(|sentence| {
            let mut chars = sentence.chars();
            let rest: String = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            format!("{wake}, {rest}")
        })
        .collect::<Vec<_>>()
        .join(". ")
}

/// The wake words `run` listens for: `--wake-model` files, else the
/// config's (default: the shipped jarvis model). A missing model is an
/// error that says how to make one.
fn wake_words(
    settings: &Settings,
    args: &RunArgs,
) -> Result<Vec<crate::wakeword::detector::WakeWord>, AppError> {
    use crate::config::WakeWordSetting;
    let configured: Vec<WakeWordSetting> = if args.wake_model.is_empty() {
        settings.wake_words.clone()
    } else {
        args.wake_model
            .iter()
            .map(|m| WakeWordSetting {
                model: m.clone(),
                phrase: None,
                sensitivity: 0.5,
            })
            .collect()
    };
    configured
        .into_iter()
        .map(|w| {
            if !w.model.is_file() {
                return Err(AppError::Usage(format!(
                    "the wake word model {} is missing: make the default one with \
                     `scripts/make-wakeword-model.sh`, train one with `voicegate wakeword \
                     train PHRASE --out FILE`, or run with --no-wake",
                    w.model.display()
                )));
            }
            let mut word =
                crate::wakeword::detector::WakeWord::from_model(&w.model, w.phrase.as_deref())?;
            word.sensitivity = args.sensitivity.unwrap_or(w.sensitivity).clamp(0.0, 1.0);
            Ok(word)
        })
        .collect()
}

fn transcribe(
    settings: &Settings,
    args: TranscribeArgs,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    use crate::stt::Transcriber;
    let intents = load_intents(settings)?;
    let mut engine = load_engine(&intents, &args.speech)?;
    let samples = crate::audio::read_wav_mono_16k(&args.file, crate::audio::WavAccept::Any)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let t = engine.transcribe(&samples)?;
    if settings.json {
        writeln!(out, "{}", serde_json::to_string(&t).unwrap_or_default())?;
    } else {
        writeln!(out, "{}", t.text)?;
        writeln!(
            out,
            "confidence {:.2}, {:.2} s of audio in {:.2} s (encoder window {}{})",
            t.confidence,
            t.audio_secs,
            t.decode_secs,
            t.audio_ctx,
            if t.retried {
                ", decoded again after a repetition"
            } else {
                ""
            }
        )?;
    }
    Ok(0)
}

fn eval_speech(settings: &Settings, args: EvalArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let intents = load_intents(settings)?;
    let mut engine = load_engine(&intents, &args.speech)?;
    let mut labels =
        crate::eval::read_labels(&args.labels).map_err(|e| AppError::Usage(e.to_string()))?;
    if let Some(limit) = args.limit {
        labels = labels.into_iter().take(limit).collect();
    }
    let noise = match &args.noise {
        Some(path) => Some(
            crate::audio::read_wav_mono_16k(path, crate::audio::WavAccept::Exact16kMono)
                .map_err(|e| AppError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    let noise_ref = noise.as_deref().zip(args.snr);
    let whole_clip = args.whole_clip;
    let trim = move |audio: &[f32]| -> Vec<Vec<f32>> {
        if whole_clip {
            return vec![audio.to_vec()];
        }
        let mut endpointer =
            crate::audio::Endpointer::new(crate::audio::EndpointConfig::always_armed());
        let frame = crate::audio::FRAME_SAMPLES;
        let mut padded = audio.to_vec();
        // The daemon keeps listening after the clip; trailing silence lets
        // the endpointer see the end, as it would live.
        padded.extend(std::iter::repeat_n(0.0, crate::audio::SAMPLE_RATE as usize));
        // Every utterance, in order, as the daemon hands them over.
        let mut found = Vec::new();
        for chunk in padded.chunks(frame) {
            let mut f = chunk.to_vec();
            f.resize(frame, 0.0);
            if let Some(crate::audio::EndpointEvent::Utterance(u)) = endpointer.push(&f) {
                found.push(u.samples);
            }
        }
        if found.is_empty() {
            found.push(audio.to_vec());
        }
        found
    };
    let verbose = args.verbose && !settings.json;
    let mut lines: Vec<String> = Vec::new();
    let (summary, results) = crate::eval::run(
        &args.dir,
        &labels,
        noise_ref,
        &intents,
        &mut engine,
        &trim,
        settings.gate.min_confidence,
        |r| {
            if verbose {
                lines.push(format!(
                    "{} {} {:.0} ms conf {:.2} utt {} \"{}\" {}",
                    if r.accepted { "ok  " } else { "MISS" },
                    r.file,
                    r.latency_ms,
                    r.confidence,
                    r.utterances,
                    r.transcript,
                    r.intent.as_deref().unwrap_or("-")
                ));
            }
        },
    )
    .map_err(|e| AppError::Usage(e.to_string()))?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    let _ = results;
    if settings.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&summary).unwrap_or_default()
        )?;
    } else {
        writeln!(
            out,
            "{} clips, {} accepted ({:.1}%), {} of them with a confidence the gate acts on ({:.1}%); {} clips had more than one utterance; latency p50 {:.0} ms, p95 {:.0} ms, rtf {:.3}",
            summary.clips,
            summary.accepted,
            summary.acceptance * 100.0,
            summary.accepted_sure,
            summary.accepted_sure as f64 * 100.0 / summary.clips.max(1) as f64,
            summary.split_clips,
            summary.latency_ms.get("p50").copied().unwrap_or(0.0),
            summary.latency_ms.get("p95").copied().unwrap_or(0.0),
            summary.rtf
        )?;
    }
    Ok(0)
}

fn hash_pin(args: crate::cli::HashPinArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let pin = if args.stdin {
        let mut pin = String::new();
        std::io::stdin().read_line(&mut pin)?;
        pin
    } else {
        let first = crate::tty::read_secret("PIN: ").map_err(pin_prompt_error)?;
        let again = crate::tty::read_secret("The same PIN again: ").map_err(pin_prompt_error)?;
        if first.trim() != again.trim() {
            return Err(AppError::Usage(
                "the two PINs differ; nothing was printed".into(),
            ));
        }
        first
    };
    let pin = pin.trim();
    if pin.len() < 4 || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(AppError::Usage("a PIN is 4 or more digits".into()));
    }
    writeln!(out, "pin_hash = \"{}\"", PinHash::new(pin))?;
    Ok(0)
}

fn pin_prompt_error(e: std::io::Error) -> AppError {
    AppError::Usage(format!(
        "cannot ask for the PIN on the terminal ({e}); run it in a terminal, or pass --stdin"
    ))
}

/// Prints diagnostics to a writer (used by commands that load intents).
pub fn print_diagnostics(diags: &[Diagnostic], out: &mut dyn Write) -> std::io::Result<()> {
    for d in diags {
        writeln!(out, "{d}\n")?;
    }
    Ok(())
}
