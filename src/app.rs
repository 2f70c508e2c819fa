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
    IntentsCommand, NluArgs, RunArgs, SayArgs, SpeechArgs, SpeechEvalArgs, TestArgs,
    TranscribeArgs,
};
use crate::config::{Decoding, Settings};
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
        Command::Run(args) => run_daemon(&settings, &args, out),
        Command::Serve(args) => serve(&settings, &args, out),
        Command::Transcribe(args) => transcribe(&settings, args, out),
        Command::Speak(args) => speak(args, out),
        Command::Models(cmd) => {
            let dir = crate::stt::model::default_models_dir()?;
            Ok(crate::stt::model::cli::run(cmd, &dir, settings.json, out)?)
        }
        Command::Wakeword(cmd) => Ok(crate::wakeword::cli::run(cmd, settings.json, out)?),
        Command::Eval(EvalCommand::SpeechToIntent(args)) => eval_speech(&settings, args, out),
        Command::Eval(EvalCommand::Nlu(args)) => eval_nlu(&settings, args, out),
        Command::Eval(EvalCommand::Speech(args)) => eval_speech_manifest(&settings, args, out),
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

/// The fallback recogniser, trained on `set` as the pipeline trains it
/// (`None` when the fallback is off).
fn load_understander(
    settings: &Settings,
    set: &IntentSet,
) -> Result<Option<crate::nlu::Understander>, AppError> {
    let nlu = |e: crate::nlu::NluError| AppError::Usage(e.to_string());
    let (embedder, mut cache) =
        crate::nlu::load_embedder_for(settings.understanding.model).map_err(nlu)?;
    crate::nlu::Understander::for_settings(set, settings.understanding, embedder, &mut cache)
        .map_err(nlu)
}

/// The fallback recogniser's reading of `text`, trained on `set` as the
/// pipeline would train it (`None` when the fallback is off).
fn fallback_reading(
    settings: &Settings,
    set: &IntentSet,
    text: &str,
) -> Result<Option<(crate::nlu::Reading, f32)>, AppError> {
    let nlu = |e: crate::nlu::NluError| AppError::Usage(e.to_string());
    let Some(understander) = load_understander(settings, set)? else {
        return Ok(None);
    };
    // The cut for the nearest intent: the out-of-scope threshold, less
    // its leeway when it has one.
    Ok(understander.read(text).map_err(nlu)?.map(|reading| {
        let cut = match set.intent(&reading.intent) {
            Some(info) => understander.cut(&reading.intent, info.risk),
            None => understander.thresholds().out_of_scope,
        };
        (reading, cut)
    }))
}

fn settings_model_name(settings: &Settings) -> &'static str {
    match settings.understanding.model {
        crate::nlu::FallbackModel::Minilm => "minilm",
        crate::nlu::FallbackModel::Hashed => "hashed",
        crate::nlu::FallbackModel::Off => "off",
    }
}

fn explain(settings: &Settings, args: ExplainArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let set = load_intents_with(
        &settings.intents_dir,
        &fixture_lists(settings, args.fixtures.as_deref())?,
    )?;
    let context = parse_context(&args.context)?;
    let result = set.recognize(&args.text, &context);
    if args.all {
        print_all_matches(&set.matches(&args.text, &context), settings.json, out)?;
    }
    let near = match &result {
        Recognition::Match(_) => None,
        Recognition::NotUnderstood(_) => set.near_miss(&args.text, &context),
    };
    // What the fallback recogniser would make of it (only asked when no
    // template matches): its nearest training sentences and scores.
    let fallback = match &result {
        Recognition::NotUnderstood(crate::intent::NotUnderstood::NoMatch) => {
            fallback_reading(settings, &set, &args.text)?
        }
        _ => None,
    };
    if settings.json {
        writeln!(
            out,
            "{}",
            json!({"result": result, "closest": near, "fallback": fallback.as_ref().map(|(r, _)| r)})
        )?;
        return Ok(0);
    }
    if let Some((reading, cut)) = &fallback {
        print_fallback(settings, reading, *cut, out)?;
    }
    print_recognition(&result, near, out)?;
    Ok(0)
}

/// `intents explain --all`: every template that matches.
fn print_all_matches(
    all: &[crate::intent::Match],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    if json {
        writeln!(out, "{}", json!({"matches": all}))?;
    } else {
        for m in all {
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
    Ok(())
}

/// What the fallback recogniser made of it, and its nearest sentences.
fn print_fallback(
    settings: &Settings,
    reading: &crate::nlu::Reading,
    cut: f32,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    let t = settings.understanding.thresholds;
    let verdict = if reading.score < cut {
        "out of scope"
    } else if reading.nearer_out_of_scope() {
        "out of scope: an out_of_scope sentence is nearer"
    } else if reading.score < t.sure {
        "unsure: \"did you mean\" (low stakes), read back (high stakes)"
    } else {
        "sure"
    };
    writeln!(
        out,
        "fallback ({}): {} score {:.3} ({verdict}; out of scope below {}, sure from {})",
        settings_model_name(settings),
        reading.intent,
        reading.score,
        // Rounded: 0.65 − 0.15 prints as 0.5, not 0.49999997.
        (cut * 1e4).round() / 1e4,
        t.sure
    )?;
    for n in &reading.nearest {
        writeln!(
            out,
            "  {:.3} {} \"{}\" ({:?})",
            n.score, n.intent, n.text, n.source
        )?;
    }
    Ok(())
}

/// The template match, or why none matched and the closest template.
fn print_recognition(
    result: &Recognition,
    near: Option<crate::intent::NearMiss>,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    match result {
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
    Ok(())
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
        crate::intent::NotUnderstood::OutOfScope { nearest, score } => {
            format!("out of scope (nearest: {nearest}, score {score:.2})")
        }
        crate::intent::NotUnderstood::Incomplete { intent, missing } => {
            format!("{intent} without {}", missing.join(", "))
        }
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

fn load_engine(
    intents: &IntentSet,
    args: &SpeechArgs,
) -> Result<crate::stt::WhisperTranscriber, AppError> {
    let decoding = Decoding::from_args(args);
    let model = crate::stt::model::locate(decoding.model.as_deref())?;
    Ok(crate::stt::WhisperTranscriber::load(
        &model,
        decoding.stt_options(intents, &[]),
    )?)
}

/// `voicegate run`: the flags applied onto the settings, then the daemon.
fn run_daemon(settings: &Settings, args: &RunArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let settings = settings.clone().with_run_flags(args);
    let intents = load_intents(&settings)?;
    crate::daemon::run(&settings, intents, out)
}

/// `voicegate speak`: piper's voice as the daemon uses it (one process;
/// started, then asked for the text), timed: `start_ms` is loading the
/// voice (once per daemon), `first_audio_ms` the text's synthesis, which
/// is what a read-back waits for before it sounds.
fn speak(args: crate::cli::SpeakArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    use std::time::{Duration, Instant};
    let piper = crate::tts::Piper::find(None)
        .map_err(|e| AppError::Usage(e.to_string()))?
        .ok_or_else(|| {
            AppError::Usage("piper is not installed: run scripts/setup-tts.sh".into())
        })?;
    let started = Instant::now();
    let mut session = crate::tts::PiperSession::start(&piper, Duration::from_secs(60))
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let start_ms = started.elapsed().as_secs_f64() * 1000.0;
    let asked = Instant::now();
    let samples = session
        .synthesize(&args.text, Duration::from_secs(30))
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let first_audio_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let rate = session.rate();
    let audio_secs = samples.len() as f64 / f64::from(rate.max(1));
    match &args.out {
        Some(path) => crate::tts::write_wav(path, &samples, rate)
            .map_err(|e| AppError::Usage(e.to_string()))?,
        None => {
            crate::audio::output::Player::play(
                &samples,
                rate,
                None,
                Duration::from_secs_f64(audio_secs + 3.0),
            )
            .map_err(|e| AppError::Usage(e.to_string()))?;
        }
    }
    writeln!(
        out,
        "{}",
        serde_json::json!({
            "voice": "piper",
            "rate": rate,
            "start_ms": start_ms,
            "first_audio_ms": first_audio_ms,
            "audio_secs": audio_secs,
        })
    )?;
    Ok(0)
}

/// `voicegate serve`: the address checked (loopback unless allowed), then
/// the server.
fn serve(
    settings: &Settings,
    args: &crate::cli::ServeArgs,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let wyoming = match &args.wyoming {
        Some(uri) => settings
            .wyoming
            .clone()
            .with_uri(uri)
            .map_err(|e| AppError::Usage(format!("--wyoming {e}")))?,
        None => settings.wyoming.clone(),
    };
    let intents = load_intents(settings)?;
    crate::serve::run(settings, intents, wyoming, args.model.as_deref(), out)
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
    // The gate asks it whether a backed reading's free reading means the
    // same (`gate::backing_agrees`); so does the benchmark.
    let fallback = load_understander(settings, &intents)?;
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
        fallback.as_ref(),
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

/// The names a map gives that no loaded intent has, sorted.
fn unknown_intents(intents: &IntentSet, map: &crate::eval::nlu::NameMap) -> Vec<String> {
    let mut unknown: Vec<String> = map
        .intents
        .values()
        .flatten()
        .filter(|name| intents.intent(name).is_none())
        .cloned()
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// The intents whose action does nothing ("never mind"): running one is no
/// action.
fn inert_intents(intents: &IntentSet) -> Vec<String> {
    intents
        .definitions()
        .intents
        .iter()
        .filter(|i| {
            intents
                .intent(&i.name)
                .and_then(|info| info.action.as_ref())
                .is_some_and(|a| a.kind.family() == crate::request::kind::Family::Nevermind)
        })
        .map(|i| i.name.clone())
        .collect()
}

/// The pipeline an evaluation runs: the configured gate and fallback, with
/// actions dry-run. Nothing of the user's data directory is touched: the
/// audit rows and the journal go to the returned directory, removed when
/// it is dropped.
fn dry_run_pipeline(
    settings: &Settings,
    intents: IntentSet,
) -> Result<(tempfile::TempDir, Pipeline), AppError> {
    let data = tempfile::tempdir().map_err(|source| crate::pipeline::PipelineError::DataDir {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut config = PipelineConfig::from_settings(settings);
    config.audit_db = data.path().join("audit.db");
    config.state_db = data.path().join("state.db");
    let pipeline = Pipeline::start_with(intents, config, crate::pipeline::Execution::DryRun)?;
    Ok((data, pipeline))
}

/// `voicegate eval speech`: every clip heard as `run --no-wake --input
/// FILE` hears it (`daemon::Replay`: the daemon's listener, whisper and
/// gate), each as a conversation of its own, with actions dry-run; whisper
/// and the fallback load once. Scored and printed as `eval nlu` does.
fn eval_speech_manifest(
    settings: &Settings,
    args: SpeechEvalArgs,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    use crate::eval::{nlu, speech};
    // The manifest and the map first: a mistake in them is reported before
    // the models take seconds to load.
    let entries = speech::read_manifest(&args.manifest, args.limit)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let map = match &args.map {
        Some(path) => nlu::NameMap::read(path).map_err(|e| AppError::Usage(e.to_string()))?,
        None => speech::identity_map(&entries),
    };
    // `run --no-wake --input MANIFEST --tts none --ack none` with these
    // speech flags: the settings the daemon would run with.
    let run = RunArgs {
        input: Some(args.manifest.display().to_string()),
        no_wake: true,
        tts: Some("none".into()),
        ack: Some("none".into()),
        silence_ms: args.silence_ms,
        speech: args.speech.clone(),
        ..RunArgs::default()
    };
    let settings = settings.clone().with_run_flags(&run);
    let intents = load_intents(&settings)?;
    let unknown = unknown_intents(&intents, &map);
    let inert_names = inert_intents(&intents);
    let inert = |name: &str| inert_names.iter().any(|n| n == name);
    let min_confidence = f64::from(settings.gate.min_confidence);
    let unsure = |c: f64| !c.is_finite() || c < min_confidence;
    let replay = crate::daemon::Replay::open(&settings, &intents)?;
    let (_data, mut pipeline) = dry_run_pipeline(&settings, intents)?;
    let verbose = args.verbose && !settings.json;
    let mut results = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for entry in &entries {
        let audio = entry.audio.display().to_string();
        // The reader `run --input` uses; a clip it cannot read is this
        // line's error, and the others are still heard.
        let samples =
            match crate::audio::read_wav_mono_16k(&entry.audio, crate::audio::WavAccept::Any) {
                Ok(samples) => samples,
                Err(e) => {
                    errors.push(speech::ClipError {
                        line: entry.line,
                        audio,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
        let started = std::time::Instant::now();
        let clip = replay.hear(&samples, &mut pipeline);
        let latency = clip.latency.unwrap_or_else(|| started.elapsed());
        let events: Vec<Value> = clip
            .events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let result = speech::score(
            entry,
            &map,
            &events,
            latency.as_secs_f64() * 1000.0,
            &inert,
            &unsure,
        );
        let result = speech::ClipResult {
            audio,
            line: entry.line,
            heard: speech::heard(&events),
            backed_by: speech::backed_by(&events),
            notices: clip.notices,
            result,
        };
        if verbose && !matches!(result.result.verdict, nlu::Verdict::Handled { .. }) {
            writeln!(
                out,
                "{}:{} {} {:?} heard {:?}: {}",
                args.manifest.display(),
                entry.line,
                entry.label.intent,
                entry.label.text,
                result.heard,
                serde_json::to_string(&result.result.verdict).unwrap_or_default()
            )?;
        }
        results.push(result);
    }
    if let Some(path) = &args.lines {
        write_json_lines(path, &results)?;
    }
    let scored: Vec<nlu::LineResult> = results.into_iter().map(|r| r.result).collect();
    let report = speech::SpeechReport {
        report: nlu::summarise(&scored, &map, unknown),
        errors,
    };
    if settings.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).unwrap_or_default()
        )?;
    } else {
        speech::write_table(&report, &args.manifest, out)?;
    }
    // Clips left out make the figures incomplete: say so in the status.
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// `voicegate eval nlu`: every line through the same pipeline as `chat`
/// (the configured gate, the loaded intents), each as a conversation of its
/// own, on a data directory of its own, with actions dry-run.
fn eval_nlu(settings: &Settings, args: NluArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    use crate::eval::nlu;
    let usage = |e: nlu::NluEvalError| AppError::Usage(e.to_string());
    let intents = load_intents(settings)?;
    let map = nlu::NameMap::read(&args.map).map_err(usage)?;
    let lines = nlu::read_lines(&args.file, args.split.as_deref(), args.limit).map_err(usage)?;
    let unknown = unknown_intents(&intents, &map);
    let inert_names = inert_intents(&intents);
    let inert = |name: &str| inert_names.iter().any(|n| n == name);
    let (_data, mut pipeline) = dry_run_pipeline(settings, intents)?;
    let verbose = args.verbose && !settings.json;
    let mut results = Vec::with_capacity(lines.len());
    for line in &lines {
        let now = Utc::now();
        let started = std::time::Instant::now();
        let events = pipeline.handle(&Utterance::typed(line.text.clone()), now);
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The conversation ends here, as `chat` ends at the end of its
        // input: a read-back waiting for "yes" is dropped, so the next
        // line starts with nothing pending.
        let _ = pipeline.shutdown(now);
        let events: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let result = nlu::score(line, &map, &events, latency_ms, &inert);
        if verbose && !matches!(result.verdict, nlu::Verdict::Handled { .. }) {
            // Out of scope, "no template matches" is the expected answer;
            // anything else (an action, a recognised intent) is worth seeing.
            let quiet = !result.in_scope
                && matches!(&result.verdict, nlu::Verdict::NotUnderstood { reason } if reason == "no_match");
            if !quiet {
                writeln!(
                    out,
                    "{} {:?}: {}",
                    result.intent,
                    result.text,
                    serde_json::to_string(&result.verdict).unwrap_or_default()
                )?;
            }
        }
        results.push(result);
    }
    if let Some(path) = &args.lines {
        write_json_lines(path, &results)?;
    }
    let report = nlu::summarise(&results, &map, unknown);
    if settings.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).unwrap_or_default()
        )?;
    } else {
        nlu::write_table(&report, out)?;
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

/// `--lines FILE` of `eval nlu` and `eval speech`: one JSON object per
/// result, one per line.
fn write_json_lines<T: serde::Serialize>(
    path: &std::path::Path,
    results: &[T],
) -> Result<(), AppError> {
    let text: String = results
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|line| line + "\n")
        .collect();
    std::fs::write(path, text).map_err(AppError::Output)
}
