//! The pipeline on its own thread ("the gate thread"): SQLite never blocks
//! the coordinator's runtime, and the executors never block either of them.
//! The coordinator sends a [`Call`] and awaits a one-shot reply with the
//! events and the gate's state ([`GateState`]). The pipeline hands actions
//! to its executor thread and returns at once
//! ([`Pipeline::send_results_to`]); each outcome comes back to this
//! thread as a message, is recorded here ([`Pipeline::finish`]), and its
//! events wait for the coordinator, which `results_ready` wakes
//! (`Input::Executed`). So a merchant that hangs holds up nothing but its
//! own result.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::pipeline::Finished;

use super::*;

/// A call to the gate thread.
pub(super) enum Call {
    Recover(DateTime<Utc>),
    Handle(Box<Utterance>, DateTime<Utc>),
    Tick(DateTime<Utc>),
    /// Ends the session; answered once no job is in flight, so outcomes are
    /// recorded before the daemon stops.
    Shutdown(DateTime<Utc>),
    Flag(crate::gate::Flag, bool),
    Intents(Box<IntentSet>, DateTime<Utc>),
    /// Nothing to do: just the results that came back since the last call.
    Collect,
}

/// What the gate thread receives: calls from the coordinator, outcomes
/// from the executor thread, and the word to stop.
enum Message {
    Call(Call, oneshot::Sender<Reply>),
    Finished(Finished),
    /// The coordinator is gone (the executor holds a sender too, so the
    /// channel closing cannot say so).
    Stop,
}

/// What the coordinator needs to know about the gate after each call (read
/// from the gate's state, never from what was said).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct GateState {
    /// When the pending confirmation expires, if one is pending.
    pub(super) deadline: Option<DateTime<Utc>>,
    /// The gate waits for a spoken PIN (see `Gate::awaiting_pin`).
    pub(super) pin: bool,
    /// The gate waits for the answer to a follow-up question.
    pub(super) answer: bool,
    /// Actions handed to the executor whose outcome has not come back.
    pub(super) in_flight: usize,
}

/// What the gate thread answers: events, and the gate's state after them.
pub(super) type Reply = (Vec<Event>, GateState);

/// The pipeline on its own thread: SQLite and executors never block the
/// coordinator's runtime.
pub(super) struct GateThread {
    messages: std_mpsc::SyncSender<Message>,
    /// Woken when results came back and wait for a call to collect them.
    pub(super) results_ready: Arc<Notify>,
}

/// How many messages may wait for the gate thread.
const GATE_QUEUE: usize = 32;

impl GateThread {
    pub(super) fn start(mut pipeline: Pipeline) -> Result<GateThread, AppError> {
        let (tx, rx) = std_mpsc::sync_channel::<Message>(GATE_QUEUE);
        let results = tx.clone();
        pipeline.send_results_to(move |finished| {
            // Fails only once the gate thread is gone; the outcome is then
            // unrecorded, like one cut off by a crash (`recover` finds it).
            let _ = results.send(Message::Finished(finished));
        });
        let results_ready = Arc::new(Notify::new());
        let ready = Arc::clone(&results_ready);
        thread::Builder::new()
            .name("voicegate-gate".into())
            .spawn(move || serve(pipeline, rx, &ready))
            .map_err(AppError::Output)?;
        Ok(GateThread {
            messages: tx,
            results_ready,
        })
    }

    pub(super) async fn call(&self, call: Call) -> Reply {
        let (tx, rx) = oneshot::channel();
        let messages = self.messages.clone();
        // The channel is bounded and the gate thread quick; sending from a
        // blocking task keeps the runtime free even if it is busy.
        let sent =
            tokio::task::spawn_blocking(move || messages.send(Message::Call(call, tx)).is_ok())
                .await
                .unwrap_or(false);
        if !sent {
            return (vec![say("The gate stopped.".into())], GateState::default());
        }
        rx.await.unwrap_or_default()
    }
}

impl Drop for GateThread {
    fn drop(&mut self) {
        let _ = self.messages.send(Message::Stop);
    }
}

/// The gate thread's loop.
fn serve(mut pipeline: Pipeline, rx: std_mpsc::Receiver<Message>, ready: &Notify) {
    // Results not yet collected by a call.
    let mut results: Vec<Event> = Vec::new();
    // A shutdown waiting for the jobs in flight, with its events so far.
    let mut closing: Option<(oneshot::Sender<Reply>, Vec<Event>)> = None;
    // The latest time a call brought: an outcome is recorded no earlier,
    // so the audit log's times never run backwards when the gate runs on
    // audio time ahead of the wall clock.
    let mut latest = Utc::now();
    for message in rx.iter() {
        match message {
            Message::Stop => break,
            Message::Finished(finished) => {
                latest = latest.max(Utc::now());
                let events = pipeline.finish(finished, latest);
                match &mut closing {
                    Some((_, so_far)) => so_far.extend(events),
                    None if events.is_empty() => {}
                    None => {
                        results.extend(events);
                        ready.notify_one();
                    }
                }
            }
            Message::Call(call, reply) => {
                if let Some(now) = call_time(&call) {
                    latest = latest.max(now);
                }
                let stopping = matches!(call, Call::Shutdown(_));
                let mut events = std::mem::take(&mut results);
                events.extend(run_call(&mut pipeline, call));
                if stopping {
                    closing = Some((reply, events));
                } else {
                    let _ = reply.send((events, state_of(&pipeline)));
                }
            }
        }
        if pipeline.in_flight() == 0
            && let Some((reply, events)) = closing.take()
        {
            let _ = reply.send((events, state_of(&pipeline)));
        }
    }
    // The receiver goes first: an executor still finishing a job then
    // finds the channel closed instead of waiting for room in it, and the
    // pipeline (dropped next) can join its thread.
    drop(rx);
    drop(pipeline);
}

fn call_time(call: &Call) -> Option<DateTime<Utc>> {
    match call {
        Call::Recover(now)
        | Call::Handle(_, now)
        | Call::Tick(now)
        | Call::Shutdown(now)
        | Call::Intents(_, now) => Some(*now),
        Call::Flag(..) | Call::Collect => None,
    }
}

fn run_call(pipeline: &mut Pipeline, call: Call) -> Vec<Event> {
    match call {
        Call::Recover(now) => pipeline.recover(now),
        Call::Handle(u, now) => pipeline.handle(&u, now),
        Call::Tick(now) => pipeline.tick(now),
        Call::Shutdown(now) => pipeline.shutdown(now),
        Call::Flag(flag, on) => {
            pipeline.set_flag(flag, on);
            Vec::new()
        }
        Call::Intents(set, now) => pipeline.set_intents(*set, now),
        Call::Collect => Vec::new(),
    }
}

pub(super) fn state_of(pipeline: &Pipeline) -> GateState {
    GateState {
        deadline: pipeline.deadline(),
        pin: pipeline.awaiting_pin(),
        answer: pipeline.awaiting_answer(),
        in_flight: pipeline.in_flight(),
    }
}
