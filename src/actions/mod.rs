//! Actions: what runs once an intent is accepted.
//!
//! Each kind of action has an executor at the edge of the program (SQLite for
//! alarms and timers, an mpd client for music, HTTP or a command for
//! purchases and bookings; the clock and the loaded intents for the answers
//! in `info`). The core hands executors plain data:
//!
//! - low-stakes intents arrive as an [`ActionRequest`](crate::request::ActionRequest);
//! - high-stakes intents arrive only as a [`crate::gate::ConfirmedAction`],
//!   which only the gate can construct, after a spoken "yes".
//!
//! Executors run off the gate's thread; their outcome is reported back
//! ([`Outcome`](crate::request::Outcome)). The request types themselves live
//! in [`crate::request`], below both the gate and the executors.

pub mod alarms;
pub mod handlers;
pub mod info;
pub mod music;
pub mod ring;
#[cfg(unix)]
mod signal;
