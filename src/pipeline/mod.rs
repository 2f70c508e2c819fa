//! The pipeline after transcription: utterance → intent → gate → actions →
//! audit, producing [`Event`]s. `voicegate say`, `voicegate chat` and the
//! daemon all go through this one type, so typed and spoken commands meet
//! exactly the same gate, timeouts and audit.
//!
//! Order of work for a confirmed high-stakes action, chosen so that a crash
//! (even SIGKILL) at any point never runs it twice and never loses track of
//! it:
//!
//! 1. append `confirmed` to the audit log — if that fails, the action does
//!    not run and the user is told why;
//! 2. write a `started` mark to the execution journal (state database);
//! 3. run the executor (off this thread);
//! 4. append `executed`, `failed`, or `unknown` when the executor cannot
//!    tell whether it happened (a merchant that did not answer in time, a
//!    5xx, a command killed on its timeout: see
//!    [`Outcome::Unknown`]). `unknown` counts toward the spend cap, and the
//!    user is told to check before ordering again.
//!
//! Step 3 hands the job to the executor thread. By default the call waits
//! there for the outcome and does step 4 itself, so `say` and `chat` get
//! every event from the call that caused it. The daemon instead calls
//! [`Pipeline::send_results_to`]: calls return as soon as the job is
//! handed over, the outcome comes back as a [`Finished`] message, and
//! [`Pipeline::finish`] does step 4 when it arrives, so a merchant that
//! hangs holds up nothing else. Meanwhile the job is *in flight*, and an
//! order in flight counts as an `unknown` one does: toward the spend cap,
//! and for the idempotency key of a repeat (below).
//!
//! One process at a time owns a data directory: [`Pipeline::start`] takes
//! an exclusive lock (`voicegate.lock`, an `flock` the kernel drops when the
//! process dies, however it dies), so a second process refuses to start
//! instead of "recovering" actions the first one is still running.
//!
//! # Sessions
//!
//! The gate's conversation state (a read-back waiting for "yes", a
//! follow-up question) belongs to whoever is talking. `say`, `chat` and the
//! daemon have one speaker: the pipeline's own gate. A front end with
//! several clients (`voicegate serve --wyoming`: a satellite per room)
//! opens a [`SessionId`] per client ([`Pipeline::open_session`]) and
//! handles each client's utterances in it ([`Pipeline::handle_in`]): each
//! session has its own gate, so a "yes" in one room confirms nothing asked
//! in another. Everything else is shared: the intents, the audit log, the
//! journal, the spend cap, the order keys, and the PIN lockout (one
//! counter for the household: opening more connections buys no more
//! guesses). Every audit row of a session's action names its client in
//! `detail` ("via wyoming kitchen (127.0.0.1:50012)").
//!
//! The PIN lockout (failures, locked until) is saved in the state database
//! after every change and restored at start, so a restart does not reset
//! it.
//!
//! At start-up, [`Pipeline::recover`] looks for actions whose last audit
//! event is `confirmed`: with a `started` mark they are recorded `unknown`
//! (it may have run: needs review); without one they are recorded `failed`
//! (it never started). Neither is ever retried.
//!
//! # Idempotency keys
//!
//! The `started` mark (step 2) is written together with the action's
//! *order*: its [`order_digest`](crate::gate::order_digest) (what is
//! ordered, without the action id), the [`IdempotencyKey`] it is sent with,
//! and the time. The key is the action's own id, except when the latest
//! order with the same digest in the last [`ORDER_KEY_WINDOW`] ended
//! `unknown` (or is still in flight): then the user is asking again for what may already have gone
//! through, and the new request carries that order's key, so a merchant
//! that honours keys charges once. After `executed` a repeat is a new order
//! (the user heard "done"); after `failed` nothing was charged, and a
//! merchant may have cached the failure under the old key: both get a
//! fresh key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, mpsc};
use std::thread;

use chrono::{DateTime, Local, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use crate::actions::alarms::{self, Schedule};
use crate::actions::handlers::Handlers;
use crate::actions::info::{self, About};
use crate::actions::music::{MpdConfig, MpdPlayer, MusicCommand, MusicPlayer};
use crate::audit::{AuditError, AuditEvent, AuditLog, AuditOutcome};
use crate::gate::{ConfirmedAction, Facts, Gate, GateConfig, Output, PinLock, Utterance};
use crate::intent::{By, IntentSet, NotUnderstood, Risk};
use crate::nlu::cache::EmbeddingCache;
use crate::nlu::{Embedder, FallbackSettings, NluError, Understander};
use crate::request::kind::Family;
use crate::request::{ActionKind, ActionRequest, IdempotencyKey, Outcome};

mod event;
mod executor;
mod journal;
mod lock;

pub use event::Event;
pub use executor::Execution;
use executor::{Executor, Job, Reply};
use journal::Journal;
use lock::DirLock;
pub use lock::{LOCK_FILE, LockError};

/// Errors starting the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The data directory could not be made.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state database could not be opened.
    #[error("cannot open the state database {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The alarm schedule could not be opened.
    #[error("cannot open the alarm schedule: {0}")]
    Schedule(#[from] alarms::AlarmError),
    /// The fallback recogniser could not be loaded or trained.
    #[error("{0}")]
    Understanding(NluError),
    /// The executor thread could not start.
    #[error("cannot start the executor thread: {0}")]
    Thread(std::io::Error),
    /// The audit log is broken in a way that stops recovery.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The data directory is locked by another process, or cannot be.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How long after an order whose outcome is unknown a confirmed repeat of
/// the same order reuses its idempotency key (see the module documentation).
pub const ORDER_KEY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Where the pipeline keeps things and what it talks to.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The gate's settings.
    pub gate: GateConfig,
    /// Audit log file.
    pub audit_db: PathBuf,
    /// State database (alarms, timers, execution journal).
    pub state_db: PathBuf,
    /// Handlers for high-stakes kinds.
    pub handlers: Handlers,
    /// mpd for music.
    pub mpd: MpdConfig,
    /// The fallback recogniser for what no template matches.
    pub understanding: FallbackSettings,
}

impl PipelineConfig {
    /// The pipeline's part of the settings.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        PipelineConfig {
            gate: settings.gate.clone(),
            audit_db: settings.audit_db(),
            state_db: settings.state_db(),
            handlers: settings.handlers.clone(),
            mpd: settings.mpd.clone(),
            understanding: settings.understanding,
        }
    }
}

/// The outcome of a job the pipeline handed to the executor thread, as it
/// comes back to whoever owns the pipeline (see
/// [`Pipeline::send_results_to`]); [`Pipeline::finish`] records it.
#[derive(Debug)]
pub struct Finished {
    job: u64,
    outcome: Outcome,
}

/// A client's own gate session (see "Sessions" in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

/// One session: its gate and who it is, as the audit rows name it.
struct Session {
    gate: Gate,
    client: String,
}

/// Where results go once [`Pipeline::send_results_to`] was called.
type ResultSink = Arc<dyn Fn(Finished) + Send + Sync>;

/// A job on the executor thread whose outcome has not come back: what
/// step 4 needs to record it and to say what happened.
struct InFlight {
    id: String,
    intent: String,
    kind: Option<ActionKind>,
    risk: Risk,
    /// High stakes: what the outcome is audited with.
    facts: Option<Box<Facts>>,
    /// The session's client it was asked from (`None`: the local one).
    client: Option<String>,
}

/// A crash point for the reliability tests: with `VOICEGATE_TEST_KILL_AT`
/// set to a step's name, the process sends itself SIGKILL there. Only in
/// debug builds (which the tests drive): a release build has no such hook,
/// so no environment variable can make a shipped daemon kill itself.
#[cfg(debug_assertions)]
fn crash_point(step: &str) {
    if std::env::var("VOICEGATE_TEST_KILL_AT").is_ok_and(|s| s == step) {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        // SIGKILL is not instant; never go on past the crash point.
        loop {
            thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

#[cfg(not(debug_assertions))]
fn crash_point(_step: &str) {}

/// The pipeline: gate, audit, journal and the executor thread.
pub struct Pipeline {
    /// Held for the pipeline's life (see [`LOCK_FILE`]).
    _lock: DirLock,
    intents: IntentSet,
    /// The fallback for what no template matches, trained on `intents`
    /// (`None`: off).
    understander: Option<Understander>,
    understanding: FallbackSettings,
    /// The loaded embedding model, when the fallback uses one.
    embedder: Option<Arc<dyn Embedder>>,
    /// Its training sentences' vectors, kept between starts.
    vector_cache: EmbeddingCache,
    context: Map<String, Value>,
    /// The gate of the session being served: the local one, except while
    /// [`Pipeline::in_session`] has swapped a client's in.
    gate: Gate,
    /// The clients' sessions, each with the local gate's settings; while
    /// one is served its gate is in `gate` and the local one here.
    sessions: BTreeMap<SessionId, Session>,
    next_session: u64,
    /// The client of the session being served (`None`: the local one).
    serving: Option<String>,
    audit: Result<AuditLog, AuditError>,
    journal: Journal,
    /// The PIN lockout as last saved.
    saved_lock: PinLock,
    executor: Executor,
    /// `None`: each call waits for the jobs it hands over (`say`, `chat`).
    /// `Some`: calls return at once and outcomes come back as [`Finished`]
    /// messages (the daemon).
    results: Option<ResultSink>,
    /// Jobs handed over whose outcome has not been recorded, by job number.
    in_flight: BTreeMap<u64, InFlight>,
    next_job: u64,
    /// What the answers about voicegate itself say, from the intents;
    /// shared with the executor thread and replaced with the intents.
    about: Arc<RwLock<About>>,
}

impl Pipeline {
    /// Opens the state, starts the executor thread.
    pub fn start(intents: IntentSet, config: PipelineConfig) -> Result<Pipeline, PipelineError> {
        Self::start_with(intents, config, Execution::Real)
    }

    /// [`Pipeline::start`], with the executor running actions or only
    /// saying what it would run ([`Execution::DryRun`], for `eval nlu`).
    pub fn start_with(
        intents: IntentSet,
        config: PipelineConfig,
        execution: Execution,
    ) -> Result<Pipeline, PipelineError> {
        for path in [&config.audit_db, &config.state_db] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| PipelineError::DataDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
        }
        let lock_dir = config
            .state_db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let lock = DirLock::take(lock_dir)?;
        let journal = Journal::open(&config.state_db)?;
        let saved_lock = journal.pin_lock().map_err(|source| PipelineError::State {
            path: config.state_db.clone(),
            source,
        })?;
        let mut gate = Gate::new(config.gate);
        gate.restore_pin_lock(saved_lock);
        let about = Arc::new(RwLock::new(About::from_intents(&intents)));
        let executor = Executor::start(
            config.state_db.clone(),
            config.handlers.clone(),
            config.mpd.clone(),
            execution,
            Arc::clone(&about),
        )?;
        // An audit log that cannot be opened does not stop low-stakes
        // commands; high-stakes ones are refused while it is unavailable.
        let audit = AuditLog::open(&config.audit_db);
        let (embedder, mut vector_cache) =
            crate::nlu::load_embedder_for(config.understanding.model)
                .map_err(PipelineError::Understanding)?;
        let understander = Understander::for_settings(
            &intents,
            config.understanding,
            embedder.clone(),
            &mut vector_cache,
        )
        .map_err(PipelineError::Understanding)?;
        Ok(Pipeline {
            _lock: lock,
            intents,
            understander,
            understanding: config.understanding,
            embedder,
            vector_cache,
            context: Map::new(),
            gate,
            sessions: BTreeMap::new(),
            next_session: 0,
            serving: None,
            audit,
            journal,
            saved_lock,
            executor,
            results: None,
            in_flight: BTreeMap::new(),
            next_job: 0,
            about,
        })
    }

    /// From now on, calls hand their jobs to the executor thread and return
    /// at once; each outcome is passed to `sink` (on the executor thread)
    /// as a [`Finished`], which the owner gives back to [`Pipeline::finish`]
    /// to record it (step 4 in the module docs). Until then the job counts
    /// as in flight: like an `unknown` order for the spend cap and the
    /// order keys, since it may go through.
    pub fn send_results_to(&mut self, sink: impl Fn(Finished) + Send + Sync + 'static) {
        self.results = Some(Arc::new(sink));
    }

    /// How many jobs were handed over and have no recorded outcome yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Records the outcome of a job (step 4) and says what happened. A
    /// result this pipeline does not wait for (already recorded) is ignored.
    pub fn finish(&mut self, finished: Finished, now: DateTime<Utc>) -> Vec<Event> {
        match self.in_flight.remove(&finished.job) {
            Some(job) => self.complete(job, finished.outcome, now),
            None => Vec::new(),
        }
    }

    /// Hands a job to the executor thread. Without a result sink it waits
    /// for the outcome and records it; with one it returns at once and the
    /// outcome comes back through the sink.
    fn dispatch(
        &mut self,
        job: InFlight,
        make: impl FnOnce(Reply) -> Job,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let Some(sink) = self.results.clone() else {
            let (tx, rx) = mpsc::channel();
            let handed = self.executor.hand(make(Reply::new(move |outcome| {
                let _ = tx.send(outcome);
            })));
            let outcome = match handed {
                // The job was handed over, so it may have run (and a reply
                // dropped unanswered says so).
                Ok(()) => rx.recv().unwrap_or(Outcome::Unknown {
                    error: "the executor stopped before answering".into(),
                }),
                Err(error) => Outcome::Failed { error },
            };
            return self.complete(job, outcome, now);
        };
        let number = self.next_job;
        self.next_job += 1;
        let reply = Reply::new(move |outcome| {
            sink(Finished {
                job: number,
                outcome,
            })
        });
        match self.executor.hand(make(reply)) {
            Ok(()) => {
                self.in_flight.insert(number, job);
                Vec::new()
            }
            Err(error) => self.complete(job, Outcome::Failed { error }, now),
        }
    }

    /// Step 4: records the outcome of a high-stakes job in the audit log,
    /// and turns the outcome into events.
    fn complete(&mut self, job: InFlight, outcome: Outcome, now: DateTime<Utc>) -> Vec<Event> {
        let Some(facts) = job.facts else {
            // A reply that ends with a question: its answer is waited for.
            let asks = match &outcome {
                Outcome::Done { message, detail } => detail
                    .get(crate::request::ASKS_KEY)
                    .and_then(Value::as_str)
                    .map(|ask| (ask.to_string(), message.clone())),
                _ => None,
            };
            let mut events = result_events(&job.id, &job.intent, job.kind, job.risk, outcome);
            if let Some((slot, text)) = asks
                && self.gate.action_asks(&self.intents, &job.id, &slot, now)
            {
                events.push(Event::Ask {
                    intent: job.intent,
                    slot,
                    text,
                });
            }
            return events;
        };
        crash_point("after_executed");
        let (audit_outcome, detail) = match &outcome {
            Outcome::Done { message, .. } => (AuditOutcome::Executed, Some(message.clone())),
            Outcome::Failed { error } => (AuditOutcome::Failed, Some(error.clone())),
            Outcome::Unknown { error } => (AuditOutcome::Unknown, Some(error.clone())),
        };
        let mut events = result_events(&job.id, &job.intent, job.kind, job.risk, outcome);
        if let Err(e) = self.record_for(&facts, audit_outcome, detail, job.client.as_deref(), now) {
            events.push(say(
                format!("It ran, but I could not record the result in the audit log: {e}"),
                Some(job.id),
            ));
        }
        events
    }

    /// Replaces the intents (after the files changed and checked clean).
    /// A pending request whose intent was removed or changed is cancelled.
    pub fn set_intents(&mut self, intents: IntentSet, now: DateTime<Utc>) -> Vec<Event> {
        // A client's pending request is cancelled as the local one is; its
        // events are recorded, not returned (nobody asked just now).
        for id in self.sessions.keys().copied().collect::<Vec<_>>() {
            self.in_session(id, |p| {
                let outputs = p.gate.intents_changed(&intents);
                p.apply(outputs, now)
            });
        }
        let outputs = self.gate.intents_changed(&intents);
        let trained = Understander::for_settings(
            &intents,
            self.understanding,
            self.embedder.clone(),
            &mut self.vector_cache,
        );
        let about = About::from_intents(&intents);
        *self
            .about
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = about;
        self.intents = intents;
        let mut events = self.apply(outputs, now);
        match trained {
            Ok(understander) => self.understander = understander,
            Err(e) => {
                self.understander = None;
                events.push(say(
                    format!("I could not train the fallback recogniser ({e}); only the templates understand now."),
                    None,
                ));
            }
        }
        events
    }

    /// Raises or lowers one of voicegate's own context flags
    /// (`alarm_ringing: true` while something rings).
    pub fn set_flag(&mut self, flag: crate::gate::Flag, on: bool) {
        self.set_context(flag.key(), on.then_some(Value::Bool(true)));
    }

    /// Sets (or with `None` removes) a context value every utterance is
    /// matched with (`say --context KEY=VALUE` passes the user's own).
    pub fn set_context(&mut self, key: &str, value: Option<Value>) {
        match value {
            Some(v) => {
                self.context.insert(key.to_string(), v);
            }
            None => {
                self.context.remove(key);
            }
        }
    }

    /// When the pending confirmation expires, if one is pending.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.gate.deadline()
    }

    /// True while the gate waits for a spoken PIN (see [`Gate::awaiting_pin`]).
    pub fn awaiting_pin(&self) -> bool {
        self.gate.awaiting_pin()
    }

    /// A follow-up question waits for its answer (see
    /// `Gate::awaiting_answer`).
    pub fn awaiting_answer(&self) -> bool {
        self.gate.awaiting_answer()
    }

    /// Records actions a previous run left between `confirmed` and a result.
    /// Never runs them again.
    pub fn recover(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let mut events = Vec::new();
        let rows = match &self.audit {
            Ok(audit) => match audit.unresolved() {
                Ok(rows) => rows,
                Err(e) => {
                    events.push(say(
                        format!("I could not check the audit log for interrupted actions: {e}"),
                        None,
                    ));
                    return events;
                }
            },
            Err(_) => return events,
        };
        for row in rows {
            let started = self
                .journal
                .was_started(&row.event.action_id)
                .unwrap_or(true);
            let (outcome, detail, text) = if started {
                (
                    AuditOutcome::Unknown,
                    "interrupted while running: it may or may not have gone through; needs review",
                    format!(
                        "I was interrupted while running {}; it may or may not have gone through, so please check before asking again.",
                        row.event.intent
                    ),
                )
            } else {
                (
                    AuditOutcome::Failed,
                    "interrupted after confirmation, before it started: it did not run and was not retried",
                    format!(
                        "{} was confirmed but did not run because I was interrupted. Ask again if you still want it.",
                        row.event.intent
                    ),
                )
            };
            let event = row.event.next(outcome, Some(detail.to_string()));
            if let Ok(audit) = &self.audit {
                let _ = audit.append(&event, now);
            }
            events.push(say(text, Some(row.event.action_id.clone())));
        }
        events
    }

    /// Lets time pass (expiry of a pending confirmation).
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let outputs = self.gate.tick(now);
        self.apply(outputs, now)
    }

    /// Handles one utterance. The events of the actions it starts are in
    /// the result, unless results go to a sink ([`Pipeline::send_results_to`]):
    /// then they come from [`Pipeline::finish`].
    pub fn handle(&mut self, utterance: &Utterance, now: DateTime<Utc>) -> Vec<Event> {
        let spent = self.spent_today(now);
        let outputs = self.gate.handle_understood(
            &self.intents,
            self.understander.as_ref(),
            utterance,
            &self.context,
            now,
            spent,
        );
        self.apply(outputs, now)
    }

    /// Ends the session: a pending confirmation is recorded as expired
    /// (the clients' sessions' too; their events are only recorded).
    pub fn shutdown(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        for id in self.sessions.keys().copied().collect::<Vec<_>>() {
            self.close_session(id, now);
        }
        let outputs = self.gate.shutdown();
        self.apply(outputs, now)
    }

    /// Opens a gate session for a client (a Wyoming connection): its own
    /// pending read-back and follow-up question, nothing else of its own.
    /// `client` names it in the audit rows of its actions.
    pub fn open_session(&mut self, client: impl Into<String>) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let session = Session {
            gate: Gate::new(self.gate.config().clone()),
            client: client.into(),
        };
        self.sessions.insert(id, session);
        id
    }

    /// Handles one utterance in a client's session ([`Pipeline::handle`]
    /// there). An unknown (closed) session handles nothing.
    pub fn handle_in(
        &mut self,
        session: SessionId,
        utterance: &Utterance,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        self.in_session(session, |p| p.handle(utterance, now))
            .unwrap_or_default()
    }

    /// Lets time pass in every client's session: expired read-backs are
    /// recorded. The events, by session, for whoever still listens.
    pub fn tick_sessions(&mut self, now: DateTime<Utc>) -> Vec<(SessionId, Vec<Event>)> {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| Some((id, self.in_session(id, |p| p.tick(now))?)))
            .filter(|(_, events)| !events.is_empty())
            .collect()
    }

    /// Closes a client's session (the connection ended): a pending
    /// read-back is recorded as expired, as at shutdown.
    pub fn close_session(&mut self, session: SessionId, now: DateTime<Utc>) -> Vec<Event> {
        let events = self
            .in_session(session, |p| {
                let outputs = p.gate.shutdown();
                p.apply(outputs, now)
            })
            .unwrap_or_default();
        self.sessions.remove(&session);
        events
    }

    /// True while a client's session waits for a reply (a read-back or a
    /// question).
    pub fn session_waiting(&self, session: SessionId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.gate.deadline().is_some() || s.gate.awaiting_answer())
    }

    /// Runs `f` with `session`'s gate as the pipeline's gate, so every
    /// step (apply, read-back, audit) is the one the local session uses;
    /// the PIN lockout is carried in and out, since it is shared.
    fn in_session<R>(&mut self, session: SessionId, f: impl FnOnce(&mut Self) -> R) -> Option<R> {
        let mut entry = self.sessions.remove(&session)?;
        entry.gate.restore_pin_lock(self.gate.pin_lock());
        std::mem::swap(&mut self.gate, &mut entry.gate);
        let outer = self.serving.replace(entry.client.clone());
        let result = f(self);
        self.serving = outer;
        std::mem::swap(&mut self.gate, &mut entry.gate);
        self.gate.restore_pin_lock(entry.gate.pin_lock());
        self.sessions.insert(session, entry);
        Some(result)
    }

    fn spent_today(&self, now: DateTime<Utc>) -> i64 {
        let (Some(cap), Ok(audit)) = (&self.gate.config().daily_spend_cap, &self.audit) else {
            return 0;
        };
        let midnight = now
            .with_timezone(&Local)
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(Local).earliest())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let recorded = match audit.spent_since(midnight, &cap.currency) {
            Ok(total) => crate::gate::Money::parse(&total.to_string(), &cap.currency)
                .map(|m| m.cents)
                .unwrap_or(i64::MAX),
            // Unknown spending: assume the cap is reached (fail safe).
            Err(_) => return i64::MAX,
        };
        // An order still running counts as an `unknown` one does: it may
        // go through, and a second one must not take the cap past it.
        self.in_flight
            .values()
            .filter_map(|job| job.facts.as_ref()?.amount.as_ref())
            // Other currencies are left out, as `spent_since` leaves them.
            .filter(|amount| amount.currency == cap.currency)
            .map(|amount| amount.cents)
            .fold(recorded, i64::saturating_add)
    }

    fn audit_event(
        facts: &Facts,
        outcome: AuditOutcome,
        detail: Option<String>,
        client: Option<&str>,
    ) -> AuditEvent {
        // A client's session says whose it is in every row (see "Sessions").
        let detail = match (detail, client) {
            (detail, None) => detail,
            (None, Some(client)) => Some(format!("via {client}")),
            (Some(detail), Some(client)) => Some(format!("{detail} (via {client})")),
        };
        AuditEvent {
            action_id: facts.action_id.to_string(),
            intent: facts.intent.clone(),
            slots: facts.slots.clone(),
            transcript: facts.transcript.clone(),
            reply_transcript: facts.reply.clone(),
            confidence: facts.confidence.map(f64::from),
            wake_score: facts.wake_score.map(f64::from),
            amount: facts.amount.as_ref().map(|a| a.decimal()),
            currency: facts.amount.as_ref().map(|a| a.currency.clone()),
            outcome,
            detail,
        }
    }

    /// Appends to the audit log; on failure, says so (the caller decides
    /// whether the action may still proceed: it may not, for high stakes).
    fn record(
        &self,
        facts: &Facts,
        outcome: AuditOutcome,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        self.record_for(facts, outcome, detail, self.serving.as_deref(), now)
    }

    /// [`Pipeline::record`] for a given session's client (an outcome
    /// coming back after its session was left).
    fn record_for(
        &self,
        facts: &Facts,
        outcome: AuditOutcome,
        detail: Option<String>,
        client: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        match &self.audit {
            Ok(audit) => audit
                .append(&Self::audit_event(facts, outcome, detail, client), now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("the audit log is unavailable: {e}")),
        }
    }

    /// The PIN lockout survives restarts: it is saved whenever it changes.
    /// An event says so if it cannot be.
    fn save_pin_lock(&mut self) -> Vec<Event> {
        let lock = self.gate.pin_lock();
        if lock == self.saved_lock {
            return Vec::new();
        }
        match self.journal.save_pin_lock(lock) {
            Ok(()) => {
                self.saved_lock = lock;
                Vec::new()
            }
            Err(e) => vec![say(
                format!("I could not save the PIN lock in the state database: {e}"),
                None,
            )],
        }
    }

    /// Records `requested` and reads the request back; without an audit
    /// log there is no purchase, so the pending request is dropped.
    fn read_back(
        &mut self,
        facts: &Facts,
        readback: String,
        digest: String,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let id = facts.action_id.to_string();
        // A request the templates did not match says so in its row: an
        // auditor sees which purchases came from a statistical reading.
        let how = match facts.by {
            By::Template => None,
            By::Fallback { score, .. } => Some(format!(
                "understood by the fallback recogniser (similarity {score:.3}), not a template"
            )),
        };
        if let Err(e) = self.record(facts, AuditOutcome::Requested, how, now) {
            let _ = self.gate.shutdown();
            let reason = format!(
                "I can't record purchases and bookings right now ({e}), so I won't do this"
            );
            return vec![
                Event::Refused {
                    action_id: id.clone(),
                    intent: facts.intent.clone(),
                    reason: reason.clone(),
                },
                say(reason, Some(id)),
            ];
        }
        vec![
            Event::ConfirmRequest {
                action_id: id.clone(),
                intent: facts.intent.clone(),
                readback: readback.clone(),
                digest,
                expires_in_secs: (expires_at - now).num_milliseconds() as f64 / 1000.0,
            },
            say(readback, Some(id)),
        ]
    }

    fn apply(&mut self, outputs: Vec<Output>, now: DateTime<Utc>) -> Vec<Event> {
        let mut events = self.save_pin_lock();
        for output in outputs {
            match output {
                Output::Intent(m) => events.push(Event::Intent {
                    intent: m.intent.clone(),
                    risk: m.risk,
                    slots: m.slot_map(),
                    by: m.by,
                }),
                Output::RunLow(request) => {
                    let job = InFlight {
                        id: request.id.to_string(),
                        intent: request.intent.clone(),
                        kind: request.kind,
                        risk: Risk::Low,
                        facts: None,
                        client: self.serving.clone(),
                    };
                    events.extend(self.dispatch(
                        job,
                        |reply| Job::Low(Box::new(request), reply),
                        now,
                    ));
                }
                Output::ConfirmRequest {
                    facts,
                    readback,
                    digest,
                    expires_at,
                } => events.extend(self.read_back(&facts, readback, digest, expires_at, now)),
                Output::Reprompt { facts, text } => {
                    events.push(say(text, Some(facts.action_id.to_string())))
                }
                Output::RunHigh { facts, action } => {
                    events.extend(self.run_high(&facts, *action, now))
                }
                Output::Declined { facts, reason } => {
                    let _ = self.record(&facts, AuditOutcome::Declined, Some(reason.clone()), now);
                    let id = facts.action_id.to_string();
                    events.push(Event::Declined {
                        action_id: id.clone(),
                        intent: facts.intent.clone(),
                        reason: reason.clone(),
                    });
                    events.push(say(format!("OK, I won't ({reason})."), Some(id)));
                }
                Output::Expired { facts, reason } => {
                    let _ = self.record(&facts, AuditOutcome::Expired, reason.clone(), now);
                    let id = facts.action_id.to_string();
                    events.push(Event::Expired {
                        action_id: id.clone(),
                        intent: facts.intent.clone(),
                    });
                    let text = match reason {
                        Some(reason) => format!("I cancelled it: {reason}."),
                        None => "No answer, so I cancelled it.".into(),
                    };
                    events.push(say(text, Some(id)));
                }
                Output::Superseded { facts } => {
                    let _ = self.record(&facts, AuditOutcome::Superseded, None, now);
                    events.push(Event::Superseded {
                        action_id: facts.action_id.to_string(),
                        intent: facts.intent.clone(),
                    });
                }
                Output::Refused { facts, reason } => {
                    let _ = self.record(&facts, AuditOutcome::Refused, Some(reason.clone()), now);
                    let id = facts.action_id.to_string();
                    events.push(Event::Refused {
                        action_id: id.clone(),
                        intent: facts.intent.clone(),
                        reason: reason.clone(),
                    });
                    events.push(say(format!("I won't do that: {reason}."), Some(id)));
                }
                Output::NotUnderstood { text, why } => {
                    let reply = not_understood_reply(&why);
                    events.push(Event::NotUnderstood { text, why });
                    events.push(say(reply, None));
                }
                Output::Ask { intent, slot, text } => {
                    events.push(Event::Ask {
                        intent,
                        slot,
                        text: text.clone(),
                    });
                    events.push(say(text, None));
                }
                Output::DidYouMean { intent, text } => {
                    events.push(Event::DidYouMean {
                        intent,
                        text: text.clone(),
                    });
                    events.push(say(text, None));
                }
                Output::Say(text) => events.push(say(text, None)),
            }
        }
        events
    }

    /// The idempotency key for `action`: the key of the latest order with
    /// the same digest within [`ORDER_KEY_WINDOW`] if that order's last
    /// audit outcome is `unknown`, otherwise the action's own id.
    fn idempotency_key(
        &self,
        action: &ConfirmedAction,
        order_digest: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyKey, String> {
        let own = IdempotencyKey::of(action.id());
        let Some((earlier, key)) = self
            .journal
            .latest_order(order_digest, now - ORDER_KEY_WINDOW)
            .map_err(|e| e.to_string())?
        else {
            return Ok(own);
        };
        // Still running: it may go through, as an unknown one may have.
        if self.in_flight.values().any(|job| job.id == earlier) {
            return Ok(key);
        }
        let audit = self.audit.as_ref().map_err(|e| e.to_string())?;
        match audit.last_outcome(&earlier).map_err(|e| e.to_string())? {
            Some(AuditOutcome::Unknown) => Ok(key),
            _ => Ok(own),
        }
    }

    fn run_high(
        &mut self,
        facts: &Facts,
        action: ConfirmedAction,
        now: DateTime<Utc>,
    ) -> Vec<Event> {
        let id = facts.action_id.to_string();
        let intent = facts.intent.clone();
        // 1. The confirmation must be on record before anything runs.
        if let Err(e) = self.record(facts, AuditOutcome::Confirmed, None, now) {
            let reason = format!("I can't record this in the audit log ({e}), so I did not do it");
            return vec![
                Event::Refused {
                    action_id: id.clone(),
                    intent,
                    reason: reason.clone(),
                },
                say(reason, Some(id)),
            ];
        }
        crash_point("after_confirmed");
        // The key it is sent with: the action's own id, or the key of the
        // same order if that one's outcome is unknown (module docs).
        let order_digest = action.order_digest();
        let key = match self.idempotency_key(&action, &order_digest, now) {
            Ok(key) => key,
            Err(e) => {
                let reason = format!(
                    "I can't check whether this repeats an earlier order ({e}), so I did not do it"
                );
                let _ = self.record(facts, AuditOutcome::Failed, Some(reason.clone()), now);
                return vec![
                    Event::Failed {
                        action_id: id.clone(),
                        intent,
                        risk: Risk::High,
                        error: reason.clone(),
                    },
                    say(reason, Some(id)),
                ];
            }
        };
        let kind = action.request().kind;
        // 2. Mark it started, so a crash during 3 is known to be ambiguous.
        if let Err(e) = self.journal.mark_started(&id, &order_digest, &key, now) {
            let reason = format!("I can't write my journal ({e}), so I did not do it");
            let _ = self.record(facts, AuditOutcome::Failed, Some(reason.clone()), now);
            return vec![
                Event::Failed {
                    action_id: id.clone(),
                    intent,
                    risk: Risk::High,
                    error: reason.clone(),
                },
                say(reason, Some(id)),
            ];
        }
        crash_point("after_started");
        // 3. Hand it to the executor thread; 4. (recording the outcome)
        // happens in `complete`, now or when the result comes back.
        let job = InFlight {
            id,
            intent,
            kind,
            risk: Risk::High,
            facts: Some(Box::new(facts.clone())),
            client: self.serving.clone(),
        };
        self.dispatch(job, |reply| Job::High(Box::new(action), key, reply), now)
    }
}

/// What voicegate says when it understood nothing.
fn not_understood_reply(why: &NotUnderstood) -> String {
    match why {
        NotUnderstood::Ambiguous { .. } => {
            "Sorry, that could mean more than one thing. Please say it differently.".to_string()
        }
        NotUnderstood::TooLong { chars, limit } => {
            format!("That is too long for me: {chars} characters, and I take at most {limit}.")
        }
        NotUnderstood::OutOfScope { .. } => "Sorry, I can't help with that.".to_string(),
        NotUnderstood::Incomplete { missing, .. } => {
            let missing: Vec<String> = missing.iter().map(|s| s.replace('_', " ")).collect();
            format!(
                "Sorry, I didn't catch the {}. Please say it again.",
                missing.join(" or the ")
            )
        }
        _ => "Sorry, I didn't understand that.".to_string(),
    }
}

/// A [`Event::Response`]: something voicegate says, about an action or not.
pub(crate) fn say(text: String, action_id: Option<String>) -> Event {
    Event::Response { text, action_id }
}

fn result_events(
    id: &str,
    intent: &str,
    kind: Option<ActionKind>,
    risk: Risk,
    outcome: Outcome,
) -> Vec<Event> {
    match outcome {
        Outcome::Unknown { error } => {
            let again = match kind.map(ActionKind::family) {
                Some(Family::Purchase) => "order it again",
                Some(Family::Booking) => "book it again",
                _ => "ask for it again",
            };
            vec![
                Event::OutcomeUnknown {
                    action_id: id.to_string(),
                    intent: intent.to_string(),
                    risk,
                    error: error.clone(),
                },
                say(
                    format!(
                        "I don't know whether that went through: {error}. Please check before you {again}."
                    ),
                    Some(id.to_string()),
                ),
            ]
        }
        Outcome::Done { message, .. } => vec![
            Event::Executed {
                action_id: id.to_string(),
                intent: intent.to_string(),
                risk,
                message: message.clone(),
            },
            say(message, Some(id.to_string())),
        ],
        Outcome::Failed { error } => vec![
            Event::Failed {
                action_id: id.to_string(),
                intent: intent.to_string(),
                risk,
                error: error.clone(),
            },
            say(format!("Sorry, that failed: {error}"), Some(id.to_string())),
        ],
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use crate::gate::PinHash;
    use crate::nlu::FallbackModel;

    const GATE_INTENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gate/intents.yaml");

    fn pipeline(dir: &Path, gate: GateConfig) -> Pipeline {
        let (set, _) =
            IntentSet::load_path(Path::new(GATE_INTENTS), &Default::default()).expect("load");
        let config = PipelineConfig {
            gate,
            audit_db: dir.join("audit.db"),
            state_db: dir.join("state.db"),
            handlers: Default::default(),
            mpd: Default::default(),
            understanding: FallbackSettings {
                model: FallbackModel::Off,
                ..Default::default()
            },
        };
        Pipeline::start(set, config).expect("pipeline")
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                Event::ConfirmRequest { .. } => "confirm_request",
                Event::Executed { .. } => "executed",
                Event::Refused { .. } => "refused",
                Event::Declined { .. } => "declined",
                Event::Expired { .. } => "expired",
                Event::Intent { .. } => "intent",
                Event::Response { .. } => "response",
                _ => "other",
            })
            .filter(|k| *k != "response" && *k != "intent")
            .collect()
    }

    fn rows(dir: &Path) -> Vec<(String, Option<String>)> {
        let audit = AuditLog::open(&dir.join("audit.db")).expect("audit");
        audit
            .list(&Default::default())
            .expect("rows")
            .into_iter()
            .map(|r| (r.event.outcome.as_str().to_string(), r.event.detail))
            .collect()
    }

    #[test]
    fn a_yes_answers_only_the_read_back_of_its_own_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = pipeline(dir.path(), GateConfig::default());
        let now = Utc::now();
        let kitchen = p.open_session("kitchen");
        let garage = p.open_session("garage");
        let said = |p: &mut Pipeline, s: Option<SessionId>, text: &str| {
            let u = Utterance::typed(text);
            let events = match s {
                Some(s) => p.handle_in(s, &u, now),
                None => p.handle(&u, now),
            };
            kinds(&events)
        };
        assert_eq!(
            said(&mut p, Some(kitchen), "buy paper towels"),
            ["confirm_request"]
        );
        assert!(p.session_waiting(kitchen) && !p.session_waiting(garage));
        assert_eq!(said(&mut p, Some(garage), "yes"), Vec::<&str>::new());
        assert_eq!(said(&mut p, None, "yes"), Vec::<&str>::new());
        assert_eq!(said(&mut p, Some(kitchen), "yes"), ["executed"]);
        let rows = rows(dir.path());
        let outcomes: Vec<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(outcomes, ["requested", "confirmed", "executed"]);
        for (_, detail) in &rows {
            assert!(
                detail.as_deref().is_some_and(|d| d.contains("via kitchen")),
                "{rows:?}"
            );
        }
    }

    #[test]
    fn the_pin_lockout_counts_wrong_pins_from_every_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = GateConfig {
            pin: Some(PinHash::new("4321")),
            pin_kinds: vec![ActionKind::PurchaseOrder],
            pin_attempts: 3,
            ..Default::default()
        };
        let mut p = pipeline(dir.path(), gate);
        let now = Utc::now();
        let a = p.open_session("a");
        let b = p.open_session("b");
        for (s, text) in [
            (a, "buy paper towels"),
            (a, "yes"),
            (a, "1 1 1 1"),
            (a, "2 2 2 2"),
            (b, "buy paper towels"),
            (b, "yes"),
            (b, "3 3 3 3"),
        ] {
            p.handle_in(s, &Utterance::typed(text), now);
        }
        // Three wrong PINs in all: locked, whichever session asks next.
        assert!(
            p.gate.pin_lock().locked_until.is_some(),
            "{:?}",
            p.gate.pin_lock()
        );
        let events = p.handle(&Utterance::typed("buy paper towels"), now);
        assert_eq!(kinds(&events), ["refused"], "{events:?}");
    }

    #[test]
    fn a_closed_or_timed_out_session_records_its_read_back_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = pipeline(dir.path(), GateConfig::default());
        let now = Utc::now();
        let left = p.open_session("left");
        let quiet = p.open_session("quiet");
        p.handle_in(left, &Utterance::typed("buy paper towels"), now);
        p.handle_in(quiet, &Utterance::typed("buy paper towels"), now);
        assert_eq!(kinds(&p.close_session(left, now)), ["expired"]);
        // The closed session is gone: what it would say is not handled.
        assert!(p.handle_in(left, &Utterance::typed("yes"), now).is_empty());
        let later = now + chrono::TimeDelta::seconds(60);
        let ticked = p.tick_sessions(later);
        assert_eq!(ticked.len(), 1);
        assert_eq!(ticked[0].0, quiet);
        assert_eq!(kinds(&ticked[0].1), ["expired"]);
        let rows = rows(dir.path());
        let expired: Vec<_> = rows.iter().filter(|(o, _)| o == "expired").collect();
        assert_eq!(expired.len(), 2, "{rows:?}");
    }
}
