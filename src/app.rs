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
    ChatArgs, CheckArgs, Cli, Command, ExplainArgs, GateCommand, IntentsCommand, SayArgs, TestArgs,
};
use crate::config::{ConfigError, Settings};
use crate::gate::{PinHash, Utterance};
use crate::intent::suite::{self, SuiteError};
use crate::intent::yaml;
use crate::intent::{Diagnostic, IntentSet, ListDef, LoadError, Recognition};
use crate::pipeline::{Event, Pipeline, PipelineConfig, PipelineError};

/// Errors a command can end with (beyond "exit 1" results like failed checks).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Intent files could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The intent files have errors.
    #[error(
        "{count} error(s) in the intent files in {dir}; run `voicegate intents check {dir}` to see them"
    )]
    Invalid {
        /// The directory.
        dir: String,
        /// How many errors.
        count: usize,
    },
    /// A suite could not be run.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The pipeline could not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Runs a parsed command line. Returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<i32, AppError> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Intents(IntentsCommand::Check(args)) => check(&settings, args, out),
        Command::Intents(IntentsCommand::Test(args)) => test(&settings, args, out),
        Command::Intents(IntentsCommand::Explain(args)) => explain(&settings, args, out),
        Command::Run => {
            let intents = load_intents(&settings.intents_dir)?;
            crate::daemon::run(&settings, intents, out)
        }
        Command::Say(args) => say(&settings, args, out),
        Command::Chat(args) => chat(&settings, args, out),
        Command::Audit(cmd) => Ok(crate::audit::cli::run(
            cmd,
            &settings.audit_db(),
            settings.json,
            Utc::now(),
            out,
        )?),
        Command::Gate(GateCommand::HashPin) => hash_pin(out),
    }
}

/// Loads the intents for use: errors refuse to start (we never run a
/// half-understood set of intents); warnings go to stderr.
pub fn load_intents(dir: &Path) -> Result<IntentSet, AppError> {
    load_intents_with(dir, &HashMap::new())
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

fn fixture_lists(fixtures: Option<&Path>) -> Result<HashMap<String, ListDef>, AppError> {
    let Some(path) = fixtures else {
        return Ok(HashMap::new());
    };
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let node = yaml::parse(&text).map_err(|e| SuiteError::Format {
        path: path.to_path_buf(),
        message: format!(
            "malformed YAML at {}:{}: {}",
            e.pos.line, e.pos.col, e.message
        ),
    })?;
    Ok(suite::fixture_lists(&node, path)?)
}

fn check(settings: &Settings, args: CheckArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let dir = args.dir.unwrap_or_else(|| settings.intents_dir.clone());
    let lists = fixture_lists(args.fixtures.as_deref())?;
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
            let set = load_intents(&dir)?;
            suite::run_own_tests(&set)
        }
    };
    print_report(&report, settings, args.verbose, out)?;
    Ok(if report.passed == report.total { 0 } else { 1 })
}

fn explain(settings: &Settings, args: ExplainArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let set = load_intents_with(
        &settings.intents_dir,
        &fixture_lists(args.fixtures.as_deref())?,
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
            writeln!(out, "intent: {} (risk {})", m.intent, risk_word(m.risk))?;
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

fn risk_word(risk: crate::intent::Risk) -> &'static str {
    match risk {
        crate::intent::Risk::Low => "low",
        crate::intent::Risk::High => "high",
    }
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
    }
}

fn pipeline(settings: &Settings) -> Result<Pipeline, AppError> {
    let intents = load_intents(&settings.intents_dir)?;
    Ok(Pipeline::start(
        intents,
        PipelineConfig {
            gate: settings.gate.clone(),
            audit_db: settings.audit_db(),
            state_db: settings.state_db(),
            handlers: settings.handlers.clone(),
            mpd: settings.mpd.clone(),
        },
    )?)
}

/// Prints events: one JSON object per line with `--json`, else readable lines.
pub fn print_events(events: &[Event], json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    for event in events {
        if json {
            writeln!(out, "{}", serde_json::to_string(event).unwrap_or_default())?;
            continue;
        }
        match event {
            Event::Intent {
                intent,
                risk,
                slots,
            } => {
                writeln!(out, "intent: {intent} (risk {})", risk_word(*risk))?;
                for (k, v) in slots {
                    writeln!(out, "  {k} = {v}")?;
                }
            }
            Event::Response { text, .. } => writeln!(out, "> {text}")?,
            Event::ConfirmRequest {
                action_id,
                expires_in_secs,
                ..
            } => writeln!(
                out,
                "[waiting {expires_in_secs:.0}s for yes/no on {action_id}]"
            )?,
            Event::Executed { intent, risk, .. } => {
                writeln!(out, "[executed {intent}, risk {}]", risk_word(*risk))?
            }
            Event::Failed { intent, error, .. } => writeln!(out, "[failed {intent}: {error}]")?,
            Event::Declined { intent, .. } => writeln!(out, "[declined {intent}]")?,
            Event::Expired { intent, .. } => writeln!(out, "[expired {intent}]")?,
            Event::Superseded { intent, .. } => writeln!(out, "[superseded {intent}]")?,
            Event::Refused { intent, .. } => writeln!(out, "[refused {intent}]")?,
            Event::NotUnderstood { .. } => writeln!(out, "[not understood]")?,
        }
    }
    out.flush()
}

fn say(settings: &Settings, args: SayArgs, out: &mut dyn Write) -> Result<i32, AppError> {
    let mut pipeline = pipeline(settings)?;
    let now = Utc::now();
    let mut events = pipeline.recover(now);
    let _ = parse_context(&args.context)?;
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

fn hash_pin(out: &mut dyn Write) -> Result<i32, AppError> {
    let mut pin = String::new();
    std::io::stdin().read_line(&mut pin)?;
    let digits: String = pin.trim().chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 4 || digits.len() != pin.trim().len() {
        return Err(AppError::Usage("a PIN is 4 or more digits".into()));
    }
    writeln!(out, "pin_hash = \"{}\"", PinHash::new(&digits))?;
    Ok(0)
}

/// Prints diagnostics to a writer (used by commands that load intents).
pub fn print_diagnostics(diags: &[Diagnostic], out: &mut dyn Write) -> std::io::Result<()> {
    for d in diags {
        writeln!(out, "{d}\n")?;
    }
    Ok(())
}
