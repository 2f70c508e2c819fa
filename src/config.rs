//! Configuration: the TOML file and the command line, merged once into typed
//! values. Commands receive a [`Settings`] and never parse anything again.
//!
//! ```toml
//! # voicegate.toml (every key is optional; these are the defaults)
//! intents_dir = "intents"      # relative paths are relative to this file
//! data_dir = "~/.local/share/voicegate"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::GlobalArgs;

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
        /// The parser's message (with line and column).
        message: String,
    },
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    intents_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
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
}

impl Settings {
    /// Merges the config file (explicit, or `./voicegate.toml` if present)
    /// with command-line flags; flags win.
    pub fn resolve(args: &GlobalArgs) -> Result<Settings, ConfigError> {
        let default_file = PathBuf::from("voicegate.toml");
        let (file, base) = match &args.config {
            Some(path) => (Some(read_config(path)?), parent(path)),
            None if default_file.is_file() => {
                (Some(read_config(&default_file)?), PathBuf::from("."))
            }
            None => (None, PathBuf::from(".")),
        };
        let file = file.unwrap_or_default();
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
        Ok(Settings {
            intents_dir,
            data_dir,
            json: args.json,
        })
    }
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
