//! The executor thread: actions run here, never on the gate's thread or
//! the daemon's runtime. A job is handed over with a [`Reply`], through
//! which its outcome goes back to whoever waits for it (the pipeline's
//! caller, or the daemon's result sink); a job dropped unanswered answers
//! `unknown`.

use super::*;

/// Whether the executor thread runs actions or only says what it would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// Actions run: alarms are stored, mpd is told, handlers are called.
    #[default]
    Real,
    /// Nothing runs: every action the gate lets through comes back `Done`
    /// with what would have run (`eval nlu` measures what voicegate *does*
    /// with a sentence without touching mpd, the schedule or a merchant).
    /// The gate is the same; only the executor's edge differs.
    DryRun,
}

/// What a dry run says instead of running `request`.
pub(super) fn dry_run(request: &ActionRequest) -> Outcome {
    Outcome::Done {
        message: format!("(dry run) would run {}", request.kind_str()),
        detail: serde_json::json!({
            "dry_run": true,
            "kind": request.kind_str(),
            "slots": request.slots,
        }),
    }
}

/// A job for the executor thread.
pub(super) enum Job {
    Low(Box<ActionRequest>, Reply),
    High(Box<ConfirmedAction>, IdempotencyKey, Reply),
}

impl Job {
    pub(super) fn into_reply(self) -> Reply {
        match self {
            Job::Low(_, reply) | Job::High(_, _, reply) => reply,
        }
    }
}

/// Where a job's outcome goes. A job dropped without an answer (the
/// executor thread died with it) answers `unknown`: it was handed over, so
/// it may have run, and whoever waits for it is never left waiting.
pub(super) struct Reply(Option<Box<dyn FnOnce(Outcome) + Send>>);

impl Reply {
    pub(super) fn new(send: impl FnOnce(Outcome) + Send + 'static) -> Reply {
        Reply(Some(Box::new(send)))
    }

    pub(super) fn send(mut self, outcome: Outcome) {
        if let Some(send) = self.0.take() {
            send(outcome);
        }
    }

    /// The job never reached the executor: nobody must hear of it from here.
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(send) = self.0.take() {
            send(Outcome::Unknown {
                error: "the executor stopped before answering".into(),
            });
        }
    }
}

/// The executor thread: actions run here, never on the gate's thread.
pub(super) struct Executor {
    jobs: mpsc::SyncSender<Job>,
    thread: Option<thread::JoinHandle<()>>,
}

/// How many jobs may wait for the executor thread; beyond that a job is
/// refused rather than block whoever hands it over.
pub(super) const EXECUTOR_QUEUE: usize = 16;

impl Executor {
    pub(super) fn start(
        state_db: PathBuf,
        handlers: Handlers,
        mpd: MpdConfig,
        execution: Execution,
        about: Arc<RwLock<About>>,
    ) -> Result<Executor, PipelineError> {
        let schedule = Schedule::open(&state_db)?;
        let (jobs, rx) = mpsc::sync_channel::<Job>(EXECUTOR_QUEUE);
        let thread = thread::Builder::new()
            .name("voicegate-executor".into())
            .spawn(move || {
                let mut music: Option<MpdPlayer> = None;
                for job in rx {
                    match job {
                        Job::Low(request, reply) => {
                            reply.send(match execution {
                                Execution::Real => {
                                    run_low(&request, &schedule, &mpd, &mut music, &about)
                                }
                                Execution::DryRun => dry_run(&request),
                            });
                        }
                        Job::High(action, key, reply) => {
                            reply.send(match execution {
                                Execution::Real => handlers.execute(*action, &key),
                                Execution::DryRun => dry_run(action.request()),
                            });
                        }
                    }
                }
            })
            .map_err(PipelineError::Thread)?;
        Ok(Executor {
            jobs,
            thread: Some(thread),
        })
    }

    /// Hands `job` over without waiting. On an error it certainly did not
    /// run, and its reply is never called.
    pub(super) fn hand(&self, job: Job) -> Result<(), String> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(job)) => {
                job.into_reply().disarm();
                Err("too many actions are waiting to run".into())
            }
            Err(mpsc::TrySendError::Disconnected(job)) => {
                job.into_reply().disarm();
                Err("the executor stopped".into())
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        let (dead, _) = mpsc::sync_channel(1);
        self.jobs = dead;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(super) fn run_low(
    request: &ActionRequest,
    schedule: &Schedule,
    mpd: &MpdConfig,
    music: &mut Option<MpdPlayer>,
    about: &RwLock<About>,
) -> Outcome {
    let nothing_can = || Outcome::Failed {
        error: format!("nothing here can run '{}'", request.kind_str()),
    };
    let Some(kind) = request.kind else {
        return nothing_can();
    };
    match kind.family() {
        Family::Alarms => alarms::execute_kind(kind, &request.slots, schedule, Local::now()),
        Family::Music => run_music(kind, &request.slots, mpd, music),
        Family::Nevermind => Outcome::Done {
            message: "OK.".into(),
            detail: Value::Null,
        },
        Family::Info => {
            let about = about
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            info::answer(kind, &request.slots, &about, Local::now().naive_local())
        }
        // High-stakes kinds run only as a ConfirmedAction; the gate's
        // replies are never run.
        Family::Purchase | Family::Booking | Family::Gate => nothing_can(),
    }
}

/// Runs a `music.*` action, connecting to mpd on first use.
pub(super) fn run_music(
    kind: ActionKind,
    slots: &Map<String, Value>,
    mpd: &MpdConfig,
    music: &mut Option<MpdPlayer>,
) -> Outcome {
    let command = match MusicCommand::from_kind(kind, slots) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failed {
                error: e.user_message(),
            };
        }
    };
    if music.is_none() {
        match MpdPlayer::new(mpd.clone()) {
            Ok(p) => *music = Some(p),
            Err(e) => {
                return Outcome::Failed {
                    error: e.user_message(),
                };
            }
        }
    }
    match music.as_mut().map(|p| p.execute(&command)) {
        Some(Ok(message)) => Outcome::Done {
            message,
            detail: Value::Null,
        },
        Some(Err(e)) => Outcome::Failed {
            error: e.user_message(),
        },
        None => Outcome::Failed {
            error: "music is not available".into(),
        },
    }
}
