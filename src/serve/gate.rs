//! The pipeline on its own thread for `serve`, with one gate session per
//! connection.
//!
//! Why it exists: the pipeline does SQLite writes and waits for executors,
//! which must never run on the async runtime the connections share. So one
//! thread owns the one [`Pipeline`] (the same one `run`, `say` and `chat`
//! use) and the connections send it calls; each connection's utterances
//! go to its own [`SessionId`], so a "yes" on one connection answers only
//! a read-back asked on it. While nobody calls, the thread lets time pass
//! in every session once a second, so an unanswered read-back is recorded
//! `expired` on time even if its client went quiet.
//!
//! The pipeline runs its executors in the calling thread's wait (as for
//! `chat`): a `transcript` is answered with the outcome of what it ran.
//! The cost: while a purchase handler runs (up to its timeout), the other
//! connections' `transcript`s wait; transcription and wake detection do
//! not.

use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::oneshot;

use crate::gate::Utterance;
use crate::pipeline::{Event, Pipeline, SessionId};

/// How many calls may wait for the gate thread.
const QUEUE: usize = 64;

/// How often time passes in the sessions when nobody calls.
const TICK: Duration = Duration::from_secs(1);

/// A call to the gate thread.
enum Call {
    Open(String, oneshot::Sender<SessionId>),
    Handle(SessionId, String, oneshot::Sender<Vec<Event>>),
    Close(SessionId),
}

/// The handle connections share.
#[derive(Clone)]
pub struct GateThread {
    calls: std_mpsc::SyncSender<Call>,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
#[error("the gate thread stopped")]
pub struct Stopped;

impl GateThread {
    /// Starts the thread that owns `pipeline`. It ends when every handle
    /// is dropped, closing the sessions left (their pending read-backs are
    /// recorded as expired).
    /// The thread's handle is for joining it at the end, so the sessions'
    /// last rows are written before the process exits.
    pub fn start(pipeline: Pipeline) -> std::io::Result<(GateThread, thread::JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let handle = thread::Builder::new()
            .name("voicegate-serve-gate".into())
            .spawn(move || serve(pipeline, rx))?;
        Ok((GateThread { calls: tx }, handle))
    }

    /// Opens a session for a client named `client` (audit rows say it).
    pub async fn open(&self, client: String) -> Result<SessionId, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Call::Open(client, tx)).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Handles `text` in `session`, with every event it caused.
    pub async fn handle(&self, session: SessionId, text: String) -> Result<Vec<Event>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Call::Handle(session, text, tx)).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Closes a session (its connection ended).
    pub async fn close(&self, session: SessionId) {
        let _ = self.send(Call::Close(session)).await;
    }

    async fn send(&self, call: Call) -> Result<(), Stopped> {
        let calls = self.calls.clone();
        // A full queue waits on the blocking pool, never on the runtime.
        tokio::task::spawn_blocking(move || calls.send(call).map_err(|_| Stopped))
            .await
            .map_err(|_| Stopped)?
    }
}

fn serve(mut pipeline: Pipeline, calls: std_mpsc::Receiver<Call>) {
    let mut ticked = std::time::Instant::now();
    loop {
        // Busy or not, time passes in every session at least once a TICK.
        if ticked.elapsed() >= TICK {
            pipeline.tick_sessions(Utc::now());
            ticked = std::time::Instant::now();
        }
        match calls.recv_timeout(TICK) {
            Ok(Call::Open(client, reply)) => {
                let _ = reply.send(pipeline.open_session(client));
            }
            Ok(Call::Handle(session, text, reply)) => {
                // Wyoming carries no confidence and no wake score with a
                // transcript: it is handled as an addressed, typed line.
                let events = pipeline.handle_in(session, &Utterance::typed(text), Utc::now());
                let _ = reply.send(events);
            }
            Ok(Call::Close(session)) => {
                pipeline.close_session(session, Utc::now());
            }
            // Expiry is recorded in the audit log at the next tick; nobody
            // waits for its events (Wyoming has no unasked-for messages).
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    pipeline.shutdown(Utc::now());
}
