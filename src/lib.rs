//! voicegate: the core of an on-device voice assistant.
//!
//! A spoken command travels through these stages (see ARCHITECTURE.md for the
//! whole picture):
//!
//! ```text
//! mic → wake word → endpointing → transcription → intent → gate → actions → audit
//! ```
//!
//! Module layout:
//!
//! - [`intent`]: the intent engine. Loads Home Assistant–compatible template
//!   files (plus our `risk`, `confirm`, `action` and `tests` extensions),
//!   compiles them once, and maps a transcript to an intent with slots. Pure:
//!   no I/O after loading, no clock reads.
//! - [`cli`]: the command-line arguments (raw); [`config`]: the config file
//!   and flags merged once into typed [`config::Settings`].
//! - [`gate`]: the action gate (pure state machine); [`pipeline`]: gate +
//!   audit + executors; [`audit`]: the hash-chained log; [`actions`]: the
//!   executors.
//! - [`audio`]: sources, resampling, endpointing; [`stt`]: whisper on its own
//!   thread, with its models' install and conversion ([`stt::model`]); [`wakeword`]: the
//!   two-stage wake word detector and its trainer; [`daemon`]: `voicegate run`.
//! - [`nlu`]: beyond the templates: the on-device sentence embedder
//!   ([`nlu::embed`]) the fallback intent recogniser will use.
//! - [`app`]: what each command does; `main.rs` only parses and calls it.

#![warn(missing_docs)]

pub mod actions;
pub mod app;
pub mod audio;
pub mod audit;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod eval;
pub mod gate;
pub mod intent;
pub mod nlu;
pub mod output;
pub mod pipeline;
pub mod request;
pub mod stt;
pub mod tts;
pub mod tty;
pub mod wakeword;
