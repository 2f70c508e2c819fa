//! The error a command ends with ([`AppError`]): every typed error of the
//! library a command can meet, and nothing else. Its own module so that the
//! commands (`app`) and the daemon (`daemon`), which both return it, depend
//! on it rather than on each other; `main` turns it into a message and an
//! exit code.

use crate::config::ConfigError;
use crate::intent::LoadError;
use crate::intent::suite::SuiteError;
use crate::pipeline::PipelineError;

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
    /// A wake word problem.
    #[error(transparent)]
    Wakeword(#[from] crate::wakeword::WakewordError),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A model problem (finding, installing, checking one).
    #[error(transparent)]
    Model(#[from] crate::stt::model::ModelError),
    /// Speech recognition failed (loading the model, decoding).
    #[error(transparent)]
    Stt(#[from] crate::stt::SttError),
    /// The pipeline could not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}
