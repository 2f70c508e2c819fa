//! The pipeline on its own thread ("the gate thread"): SQLite and the
//! executors never block the coordinator's runtime. The coordinator sends a
//! [`Call`] and awaits a one-shot reply with the events and the gate's
//! state ([`GateState`]).

use super::*;

/// A call to the gate thread.
pub(super) enum Call {
    Recover(DateTime<Utc>),
    Handle(Box<Utterance>, DateTime<Utc>),
    Tick(DateTime<Utc>),
    Shutdown(DateTime<Utc>),
    Flag(crate::gate::Flag, bool),
    Intents(Box<IntentSet>, DateTime<Utc>),
}

/// What the coordinator needs to know about the gate after each call (read
/// from the gate's state, never from what was said).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct GateState {
    /// When the pending confirmation expires, if one is pending.
    pub(super) deadline: Option<DateTime<Utc>>,
    /// The gate waits for a spoken PIN (see `Gate::awaiting_pin`).
    pub(super) pin: bool,
}

/// What the gate thread answers: events, and the gate's state after them.
pub(super) type Reply = (Vec<Event>, GateState);

/// The pipeline on its own thread: SQLite and executors never block the
/// coordinator's runtime.
pub(super) struct GateThread {
    pub(super) calls: std_mpsc::SyncSender<(Call, oneshot::Sender<Reply>)>,
}

impl GateThread {
    pub(super) fn start(mut pipeline: Pipeline) -> Result<GateThread, AppError> {
        let (tx, rx) = std_mpsc::sync_channel::<(Call, oneshot::Sender<Reply>)>(8);
        thread::Builder::new()
            .name("voicegate-gate".into())
            .spawn(move || {
                for (call, reply) in rx {
                    let events = match call {
                        Call::Recover(now) => pipeline.recover(now),
                        Call::Handle(u, now) => pipeline.handle(&u, now),
                        Call::Tick(now) => pipeline.tick(now),
                        Call::Shutdown(now) => pipeline.shutdown(now),
                        Call::Flag(flag, on) => {
                            pipeline.set_flag(flag, on);
                            Vec::new()
                        }
                        Call::Intents(set, now) => pipeline.set_intents(*set, now),
                    };
                    let state = GateState {
                        deadline: pipeline.deadline(),
                        pin: pipeline.awaiting_pin(),
                    };
                    let _ = reply.send((events, state));
                }
            })
            .map_err(AppError::Output)?;
        Ok(GateThread { calls: tx })
    }

    pub(super) async fn call(&self, call: Call) -> Reply {
        let (tx, rx) = oneshot::channel();
        let calls = self.calls.clone();
        // The channel is bounded and the gate thread quick; sending from a
        // blocking task keeps the runtime free even if it is busy.
        let sent = tokio::task::spawn_blocking(move || calls.send((call, tx)).is_ok())
            .await
            .unwrap_or(false);
        if !sent {
            return (vec![say("The gate stopped.".into())], GateState::default());
        }
        rx.await.unwrap_or_default()
    }
}
