//! The pipeline on its own thread for `serve`, with one gate session per
//! client.
//!
//! Why it exists: the pipeline does SQLite writes and waits for executors,
//! which must never run on the async runtime the connections share. So one
//! thread owns the one [`Pipeline`] (the same one `run`, `say` and `chat`
//! use) and the connections send it calls; each client's utterances go to
//! its own [`SessionId`], so a "yes" from one answers only a read-back
//! asked by it. Once a second the thread lets time pass in every session,
//! so an unanswered read-back is recorded `expired` on time even if its
//! client went quiet.
//!
//! Who "a client" is: Home Assistant opens a new connection for every
//! sentence, and says which satellite or device it came from in the
//! transcript's context; so a session is keyed by that name when there is
//! one ([`SessionKey::Named`]: it outlives the connection, and is closed
//! once nothing waits in it and it has been idle for [`NAMED_IDLE`]), and
//! is the connection's own otherwise ([`SessionKey::Connection`], closed
//! with it). The name is the client's claim: Wyoming has no
//! authentication, which is why `serve` listens on loopback by default.
//!
//! Alarms and timers set through any client ring on this machine, as
//! with `run`: the thread owns a [`Bell`] and rings what is due (it wakes
//! for the next one, and at least once a [`TICK`]); the configured ring
//! command can carry the ring elsewhere. What it says then goes to the
//! notice sink (`serve` prints it). While something rings, "stop" from
//! any client silences it: ringing is the household's, not a session's.
//!
//! The pipeline runs its executors in the calling thread's wait (as for
//! `chat`): a `transcript` is answered with the outcome of what it ran.
//! The cost: while a purchase handler runs (up to its timeout), the other
//! connections' `transcript`s wait; transcription and wake detection do
//! not.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::oneshot;

use crate::actions::alarms::{Bell, START_GRACE};
use crate::gate::{Flag, Utterance};
use crate::pipeline::{Event, Pipeline, SessionId};

/// How many calls may wait for the gate thread.
const QUEUE: usize = 64;

/// How often time passes in the sessions when nobody calls.
const TICK: Duration = Duration::from_secs(1);

/// A named session with nothing waiting is closed after this long unused.
pub const NAMED_IDLE: Duration = Duration::from_secs(300);

/// The most named sessions kept at once: a client inventing names cannot
/// grow the table without bound (idle ones are closed first).
pub const MAX_NAMED: usize = 256;

/// Whose session an utterance belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionKey {
    /// A satellite, device or conversation the client named.
    Named(String),
    /// The connection itself (no name given).
    Connection,
}

/// A call to the gate thread.
enum Call {
    Open(SessionKey, String, oneshot::Sender<Option<SessionId>>),
    Handle(SessionId, Box<Utterance>, oneshot::Sender<Vec<Event>>),
    Close(SessionId),
}

/// Where what nobody asked for goes: what is said when an alarm or timer
/// rings, or was missed.
pub type Notices = Box<dyn Fn(Vec<Event>) + Send>;

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
    /// With a `bell`, due alarms and timers ring, and what is said then
    /// goes to `notices`.
    pub fn start(
        pipeline: Pipeline,
        bell: Option<Bell>,
        notices: Notices,
    ) -> std::io::Result<(GateThread, thread::JoinHandle<()>)> {
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let handle = thread::Builder::new()
            .name("voicegate-serve-gate".into())
            .spawn(move || serve(pipeline, rx, bell, notices))?;
        Ok((GateThread { calls: tx }, handle))
    }

    /// The session for `key`: a named one already open, or a new one for
    /// a client described as `client` (audit rows say it). `None`: too
    /// many named sessions are open.
    pub async fn open(
        &self,
        key: SessionKey,
        client: String,
    ) -> Result<Option<SessionId>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Call::Open(key, client, tx)).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Handles `utterance` in `session`, with every event it caused.
    pub async fn handle(
        &self,
        session: SessionId,
        utterance: Utterance,
    ) -> Result<Vec<Event>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.send(Call::Handle(session, Box::new(utterance), tx))
            .await?;
        rx.await.map_err(|_| Stopped)
    }

    /// A connection ended: its own session is closed (a named one stays).
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

/// The named sessions: by name, and when each was last used.
#[derive(Default)]
struct Named {
    by_name: HashMap<String, SessionId>,
    used: HashMap<SessionId, (String, Instant)>,
}

impl Named {
    /// Closes the named sessions nothing waits in that have been idle for
    /// `idle` (all idle ones with `Duration::ZERO`).
    fn sweep(&mut self, pipeline: &mut Pipeline, idle: Duration) {
        let stale: Vec<SessionId> = self
            .used
            .iter()
            .filter(|(id, (_, at))| at.elapsed() >= idle && !pipeline.session_waiting(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some((name, _)) = self.used.remove(&id) {
                self.by_name.remove(&name);
            }
            pipeline.close_session(id, Utc::now());
        }
    }

    fn open(&mut self, pipeline: &mut Pipeline, name: String, client: String) -> Option<SessionId> {
        if let Some(&id) = self.by_name.get(&name) {
            self.used.insert(id, (name, Instant::now()));
            return Some(id);
        }
        if self.by_name.len() >= MAX_NAMED {
            self.sweep(pipeline, Duration::ZERO);
            if self.by_name.len() >= MAX_NAMED {
                return None;
            }
        }
        let id = pipeline.open_session(client);
        self.by_name.insert(name.clone(), id);
        self.used.insert(id, (name, Instant::now()));
        Some(id)
    }
}

/// Rings what is due, and tells the gate so that "stop" means it.
fn ring_due(bell: &mut Bell, pipeline: &mut Pipeline, notices: &Notices) {
    bell.check();
    let said = bell.ring_due(Utc::now());
    if !said.is_empty() {
        pipeline.set_flag(Flag::AlarmRinging, true);
        notices(says(said));
    }
}

/// Silences the bell once nothing rings any more ("stop" was said).
fn quiet_if_nothing_rings(bell: &mut Bell, pipeline: &mut Pipeline) {
    if bell.quiet_if_nothing_rings() {
        pipeline.set_flag(Flag::AlarmRinging, false);
    }
}

fn says(texts: Vec<String>) -> Vec<Event> {
    texts
        .into_iter()
        .map(|text| crate::pipeline::say(text, None))
        .collect()
}

fn serve(
    mut pipeline: Pipeline,
    calls: std_mpsc::Receiver<Call>,
    mut bell: Option<Bell>,
    notices: Notices,
) {
    let mut ticked = Instant::now();
    let mut named = Named::default();
    if let Some(bell) = &bell {
        let missed = bell.missed(Utc::now(), START_GRACE);
        if !missed.is_empty() {
            notices(says(missed));
        }
    }
    loop {
        // Busy or not, time passes in every session at least once a TICK.
        if ticked.elapsed() >= TICK {
            pipeline.tick_sessions(Utc::now());
            named.sweep(&mut pipeline, NAMED_IDLE);
            ticked = Instant::now();
        }
        let mut wait = TICK;
        if let Some(bell) = bell.as_mut() {
            ring_due(bell, &mut pipeline, &notices);
            if let Some(next) = bell.next_due() {
                wait = wait.min((next - Utc::now()).to_std().unwrap_or_default());
            }
        }
        match calls.recv_timeout(wait) {
            Ok(Call::Open(key, client, reply)) => {
                let session = match key {
                    SessionKey::Named(name) => named.open(&mut pipeline, name, client),
                    SessionKey::Connection => Some(pipeline.open_session(client)),
                };
                let _ = reply.send(session);
            }
            Ok(Call::Handle(session, utterance, reply)) => {
                // What came due meanwhile rings first, so a "stop" said
                // just as it rings is understood.
                if let Some(bell) = bell.as_mut() {
                    ring_due(bell, &mut pipeline, &notices);
                }
                let events = pipeline.handle_in(session, &utterance, Utc::now());
                if let Some((_, at)) = named.used.get_mut(&session) {
                    *at = Instant::now();
                }
                if let Some(bell) = bell.as_mut() {
                    quiet_if_nothing_rings(bell, &mut pipeline);
                }
                let _ = reply.send(events);
            }
            Ok(Call::Close(session)) => {
                // A named session outlives its connections (the sweep
                // closes it); a connection's own ends with it.
                if !named.used.contains_key(&session) {
                    pipeline.close_session(session, Utc::now());
                }
            }
            // Expiry is recorded in the audit log at the next tick; nobody
            // waits for its events (Wyoming has no unasked-for messages).
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(bell) = bell.as_mut() {
        bell.stop();
    }
    pipeline.shutdown(Utc::now());
}
