//! `voicegate wakeword ...`: train a model for a phrase, measure a detector.
//!
//! The clap types of each subcommand live beside the code that runs it
//! ([`super::train::TrainArgs`], [`super::bench::TestArgs`]); this file only
//! gathers them, so `cli.rs` adds one `Wakeword(WakewordCommand)`.

use std::io::Write;

use clap::Subcommand;

use super::WakewordError;

/// `voicegate wakeword ...`
#[derive(Debug, Subcommand)]
pub enum WakewordCommand {
    /// Make a wake word model for any phrase from synthetic speech (espeak-ng,
    /// and piper when installed), augmented; plus recordings given with
    /// --samples. Writes FILE and FILE.json (what went in, versions, hashes).
    Train(super::train::TrainArgs),
    /// Stream WAV files through the same two-stage detector the daemon uses
    /// and count detections on positives and false alarms on negatives.
    Test(super::bench::TestArgs),
}

/// Runs a `wakeword` subcommand. Returns the exit code.
pub fn run(cmd: WakewordCommand, json: bool, out: &mut dyn Write) -> Result<i32, WakewordError> {
    match cmd {
        WakewordCommand::Train(args) => super::train::run(args, json, out),
        WakewordCommand::Test(args) => super::bench::run(args, json, out),
    }
}
