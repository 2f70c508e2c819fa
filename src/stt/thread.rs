//! [`SttThread`]: a transcriber on its own thread.
//!
//! Why it exists: inference takes tens to thousands of milliseconds of
//! CPU, and must run neither on the async runtime nor on the gate's
//! thread. The thread owns the engine; its handle sends jobs (transcribe,
//! transcribe without the grammar, score a phrase, swap the grammar) and
//! waits for each answer with a timeout.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{SttError, SttGrammar, Transcriber, Transcript};

/// Work for the transcription thread.
enum Job {
    /// Samples; true to decode without the grammar; where to answer.
    Transcribe(Vec<f32>, bool, mpsc::Sender<Result<Transcript, SttError>>),
    Score(Vec<f32>, String, mpsc::Sender<Result<f32, SttError>>),
    SetGrammar(Option<SttGrammar>),
}

/// A transcriber on its own thread. Cloning the handle is not offered:
/// one owner (the audio thread) asks and waits, or several share it in an
/// `Arc` (`serve`: every connection), each waiting for its own answer.
pub struct SttThread {
    jobs: Option<mpsc::SyncSender<Job>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl SttThread {
    /// Starts a thread that owns `engine`.
    pub fn start(engine: Box<dyn Transcriber>) -> Result<SttThread, SttError> {
        Self::start_with_queue(engine, 2)
    }

    /// [`SttThread::start`] with room for `queue` waiting jobs: beyond
    /// that, [`SttThread::try_transcribe`] answers [`SttError::Busy`].
    pub fn start_with_queue(
        mut engine: Box<dyn Transcriber>,
        queue: usize,
    ) -> Result<SttThread, SttError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let handle = thread::Builder::new()
            .name("voicegate-stt".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Transcribe(samples, free, reply) => {
                            let _ = reply.send(if free {
                                engine.transcribe_free(&samples)
                            } else {
                                engine.transcribe(&samples)
                            });
                        }
                        Job::SetGrammar(grammar) => engine.set_grammar(grammar),
                        Job::Score(samples, phrase, reply) => {
                            let _ = reply.send(engine.phrase_logprob(&samples, &phrase));
                        }
                    }
                }
            })
            .map_err(|e| SttError::Decode(format!("cannot start the transcription thread: {e}")))?;
        Ok(SttThread {
            jobs: Some(tx),
            handle: Some(handle),
        })
    }

    /// Transcribes on the thread and waits for the result.
    pub fn transcribe(&self, samples: Vec<f32>, timeout: Duration) -> Result<Transcript, SttError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Transcribe(samples, false, tx))?;
        rx.recv_timeout(timeout).map_err(|e| waited(e, timeout))?
    }

    /// [`SttThread::transcribe`] without the grammar (see
    /// [`Transcriber::transcribe_free`]).
    pub fn transcribe_free(
        &self,
        samples: Vec<f32>,
        timeout: Duration,
    ) -> Result<Transcript, SttError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Transcribe(samples, true, tx))?;
        rx.recv_timeout(timeout).map_err(|e| waited(e, timeout))?
    }

    /// [`SttThread::transcribe`], or [`SttError::Busy`] at once when the
    /// queue is full: a server with many clients answers "busy" rather
    /// than letting requests pile up behind one whisper.
    pub fn try_transcribe(
        &self,
        samples: Vec<f32>,
        timeout: Duration,
    ) -> Result<Transcript, SttError> {
        let (tx, rx) = mpsc::channel();
        let jobs = self.jobs.as_ref().ok_or(SttError::Stopped)?;
        jobs.try_send(Job::Transcribe(samples, false, tx))
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => SttError::Busy,
                mpsc::TrySendError::Disconnected(_) => SttError::Stopped,
            })?;
        rx.recv_timeout(timeout).map_err(|e| waited(e, timeout))?
    }

    /// Swaps the grammar (after the intent files were reloaded); takes
    /// effect from the next utterance.
    pub fn set_grammar(&self, grammar: Option<SttGrammar>) -> Result<(), SttError> {
        self.send(Job::SetGrammar(grammar))
    }

    /// Scores a phrase on the thread (see [`Transcriber::phrase_logprob`])
    /// and waits for the result.
    pub fn phrase_logprob(
        &self,
        samples: Vec<f32>,
        phrase: &str,
        timeout: Duration,
    ) -> Result<f32, SttError> {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Score(samples, phrase.to_string(), tx))?;
        rx.recv_timeout(timeout).map_err(|e| waited(e, timeout))?
    }

    fn send(&self, job: Job) -> Result<(), SttError> {
        self.jobs
            .as_ref()
            .ok_or(SttError::Stopped)?
            .send(job)
            .map_err(|_| SttError::Stopped)
    }
}

/// Why no answer came: the thread is gone, or it is still busy (with this
/// job or those before it) after `timeout`.
fn waited(e: mpsc::RecvTimeoutError, timeout: Duration) -> SttError {
    match e {
        mpsc::RecvTimeoutError::Timeout => SttError::TimedOut(timeout),
        mpsc::RecvTimeoutError::Disconnected => SttError::Stopped,
    }
}

impl Drop for SttThread {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An engine that holds each transcription until the test lets it go.
    struct Gated(Arc<Mutex<()>>);

    impl Transcriber for Gated {
        fn transcribe(&mut self, _samples: &[f32]) -> Result<Transcript, SttError> {
            let _open = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Ok(Transcript {
                text: "done".into(),
                confidence: 0.9,
                audio_secs: 1.0,
                decode_secs: 0.0,
                audio_ctx: 1500,
                retried: false,
                free: false,
                backed: None,
            })
        }

        fn phrase_logprob(&mut self, _samples: &[f32], _phrase: &str) -> Result<f32, SttError> {
            Ok(0.0)
        }
    }

    #[test]
    fn a_full_queue_answers_busy_at_once_and_the_queued_jobs_still_run() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().expect("lock");
        let stt = Arc::new(
            SttThread::start_with_queue(Box::new(Gated(Arc::clone(&gate))), 1).expect("thread"),
        );
        let wait = Duration::from_secs(10);
        // One job runs (held by the gate), one waits in the queue.
        let first = {
            let stt = Arc::clone(&stt);
            thread::spawn(move || stt.try_transcribe(vec![0.0], wait))
        };
        thread::sleep(Duration::from_millis(200));
        let second = {
            let stt = Arc::clone(&stt);
            thread::spawn(move || stt.try_transcribe(vec![0.0], wait))
        };
        thread::sleep(Duration::from_millis(200));
        // The third is refused at once (waited for on a channel, so a
        // regression that blocks fails here instead of hanging the test).
        let (tx, rx) = mpsc::channel();
        {
            let stt = Arc::clone(&stt);
            thread::spawn(move || tx.send(stt.try_transcribe(vec![0.0], wait)));
        }
        let third = rx.recv_timeout(Duration::from_secs(1));
        drop(held);
        assert!(matches!(third, Ok(Err(SttError::Busy))), "{third:?}");
        for job in [first, second] {
            let done = job.join().expect("job");
            assert_eq!(done.map(|t| t.text).ok().as_deref(), Some("done"));
        }
    }

    #[test]
    fn a_slow_transcription_is_a_timeout_not_a_stopped_thread() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().expect("lock");
        let stt = SttThread::start(Box::new(Gated(Arc::clone(&gate)))).expect("thread");
        let slow = stt.transcribe(vec![0.0], Duration::from_millis(50));
        assert!(
            matches!(slow, Err(SttError::TimedOut(t)) if t == Duration::from_millis(50)),
            "{slow:?}"
        );
        drop(held);
        // The thread is alive: the next job is answered.
        let next = stt.transcribe(vec![0.0], Duration::from_secs(10));
        assert_eq!(next.map(|t| t.text).ok().as_deref(), Some("done"));
    }
}
