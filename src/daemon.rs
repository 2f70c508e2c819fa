//! `voicegate run`: the long-running process.
//!
//! ```text
//!  audio thread ─┐  (source → endpointer → whisper thread)
//!  stdin thread ─┤
//!  reload thread ┼──▶ bounded channel ──▶ coordinator (tokio) ──▶ gate thread (Pipeline)
//!  signals ──────┘                           │  timers: confirm expiry, alarms
//!                                            ├──▶ stdout (events), TTS, ringer
//!                                            ├──▶ audio thread: what is due next
//!                                            │    (a command, a reply, a PIN)
//!                                            └──▶ whisper thread: a reloaded grammar
//! ```
//!
//! One coordinator loop over a closed [`Input`] enum. Producers are plain
//! threads (audio capture, inference and stdin block); the coordinator runs
//! on a single-threaded tokio runtime and never does heavy work itself: the
//! pipeline (SQLite, executors) lives on its own "gate" thread and answers
//! through one-shot replies. Every producer has a shutdown path: they stop
//! when the channel closes.
//!
//! **Clocks.** With a microphone (or `--realtime`) time is the wall clock.
//! With a file read as fast as possible, the gate's time is the *audio*
//! time (start + samples read / 16 kHz), so "a booking, then 10 s of
//! silence" expires exactly as it would live, in a fraction of the time;
//! when the file ends, time runs on to a pending confirmation's deadline.
//! Alarms always use the wall clock.
//!
//! At start it reconciles what a previous run left behind: actions
//! interrupted between confirmation and result (see `pipeline`), and alarms
//! that came due while it was down (reported, never rung late). On SIGINT or
//! SIGTERM it stops cleanly: a pending confirmation is recorded as expired.
//!
//! **The grammar.** When transcription is constrained to the intents'
//! sentences (`SttOptions::grammar`), two things keep it right:
//! - *Reload.* The reload thread builds the grammar of a changed, clean set
//!   of intent files itself (off the runtime) and sends it with the set
//!   (`Input::Reload`); the coordinator hands the set to the gate thread
//!   and the grammar to the transcription thread (`SttThread::set_grammar`),
//!   which uses it from the next utterance.
//! - *PIN.* A spoken PIN is no sentence of any intent, so the grammar would
//!   force it into some command. After every gate call the gate thread
//!   reports, besides the deadline, whether the gate waits for a PIN
//!   (`GateState`); the coordinator passes that on to the audio thread
//!   (`AudioControl::Expect` with `Expect::Pin`), which decodes that one
//!   utterance without the grammar (`SttThread::transcribe_free`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration as StdDuration, SystemTime};

use chrono::{DateTime, Local, TimeDelta, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::actions::alarms::{self, Schedule, State};
use crate::actions::ring::{AudioRinger, Ringer, configured_ringer};
use crate::app::{AppError, print_events};
use crate::audio::{
    self, AudioSource, EndpointConfig, EndpointEvent, EndpointState, Endpointer, FRAME_SAMPLES,
    MicConfig,
};
use crate::config::Settings;
use crate::gate::Utterance;
use crate::intent::IntentSet;
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::stt::{SttGrammar, SttOptions, SttThread, Transcript, WhisperTranscriber};
use crate::wakeword::{
    self,
    detector::{Detection, Detector, Outcome, WakeWord},
};
use std::sync::Arc;

/// Where utterances come from.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--input`: `None` the microphone, `-` raw PCM on stdin, else a WAV file.
    pub input: Option<String>,
    /// `--text`: typed lines on stdin instead of audio.
    pub text: bool,
    /// `--realtime`: pace file input like a microphone.
    pub realtime: bool,
    /// `--device`: input device name.
    pub device: Option<String>,
    /// The whisper model file.
    pub model: Option<PathBuf>,
    /// Transcription settings.
    pub stt: SttOptions,
    /// Command that speaks responses (text on stdin); `None` = only log.
    pub tts: Option<String>,
    /// Silence that ends a command, ms.
    pub silence_end_ms: u32,
    /// The wake words; empty: `--no-wake` (every utterance is a command).
    pub wake_words: Vec<WakeWord>,
    /// The acknowledgement command (`None`: the bundled chime; "none").
    pub ack_command: Option<String>,
}

/// What can wake the coordinator.
#[derive(Debug)]
enum Input {
    /// Something was said (or typed), at a time (`None`: the wall clock).
    Utterance(Utterance, Option<DateTime<Utc>>),
    /// Audio time passed (file input read faster than real time).
    Tick(DateTime<Utc>),
    /// The input ended (file input), at this audio time.
    Ended(Option<DateTime<Utc>>),
    /// The intent files changed and check clean; with the transcription
    /// grammar of the new set when decoding is constrained to one.
    Reload(Box<IntentSet>, Option<SttGrammar>),
    /// The intent files changed but have errors; the old set stays.
    ReloadFailed(String),
    /// Something to log (audio device lost and reopened, ...).
    Notice(String),
    /// A wake word was heard.
    Wake(Detection),
}

/// Longest the loop sleeps without checking the schedule (another process,
/// e.g. `say`, may have set an alarm in the same database).
const MAX_SLEEP: StdDuration = StdDuration::from_secs(5);

/// How late a due alarm may be found at start and still ring.
const START_GRACE_SECS: i64 = 60;

fn say(text: String) -> Event {
    Event::Response {
        text,
        action_id: None,
    }
}

/// A call to the gate thread.
enum Call {
    Recover(DateTime<Utc>),
    Handle(Box<Utterance>, DateTime<Utc>),
    Tick(DateTime<Utc>),
    Shutdown(DateTime<Utc>),
    Context(&'static str, Option<Value>),
    Intents(Box<IntentSet>, DateTime<Utc>),
}

/// What the coordinator needs to know about the gate after each call (read
/// from the gate's state, never from what was said).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct GateState {
    /// When the pending confirmation expires, if one is pending.
    deadline: Option<DateTime<Utc>>,
    /// The gate waits for a spoken PIN (see `Gate::awaiting_pin`).
    pin: bool,
}

/// What the gate thread answers: events, and the gate's state after them.
type Reply = (Vec<Event>, GateState);

/// The pipeline on its own thread: SQLite and executors never block the
/// coordinator's runtime.
struct GateThread {
    calls: std_mpsc::SyncSender<(Call, oneshot::Sender<Reply>)>,
}

impl GateThread {
    fn start(mut pipeline: Pipeline) -> Result<GateThread, AppError> {
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
                        Call::Context(key, value) => {
                            pipeline.set_context(key, value);
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

    async fn call(&self, call: Call) -> Reply {
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

/// Speaks responses through the TTS command, one at a time, never blocking
/// the coordinator; the words are always logged too (the event stream).
struct Speaker {
    tx: Option<std_mpsc::SyncSender<String>>,
}

impl Speaker {
    fn start(command: Option<String>) -> Speaker {
        let Some(command) = command else {
            return Speaker { tx: None };
        };
        let (tx, rx) = std_mpsc::sync_channel::<String>(16);
        let spawned = thread::Builder::new()
            .name("voicegate-tts".into())
            .spawn(move || {
                for text in rx {
                    let child = std::process::Command::new("sh")
                        .arg("-c")
                        .arg(&command)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn();
                    if let Ok(mut child) = child {
                        if let Some(mut stdin) = child.stdin.take() {
                            let _ = stdin.write_all(text.as_bytes());
                        }
                        let _ = child.wait();
                    }
                }
            });
        Speaker {
            tx: spawned.ok().map(|_| tx),
        }
    }

    fn speak(&self, events: &[Event]) {
        let Some(tx) = &self.tx else { return };
        for event in events {
            if let Event::Response { text, .. } = event {
                // If the speaker is behind, drop rather than block.
                let _ = tx.try_send(text.clone());
            }
        }
    }
}

/// The TTS command to use by default: espeak-ng when it is installed.
pub fn default_tts() -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("espeak-ng").is_file()))
        .unwrap_or(false);
    found.then(|| "espeak-ng".to_string())
}

fn spawn_stdin_text(tx: mpsc::Sender<Input>) -> Result<(), AppError> {
    thread::Builder::new()
        .name("voicegate-stdin".into())
        .spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let line = line.trim().to_string();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if tx
                    .blocking_send(Input::Utterance(Utterance::typed(line), None))
                    .is_err()
                {
                    return;
                }
            }
        })
        .map_err(AppError::Output)?;
    Ok(())
}

/// What the coordinator tells the audio thread: what the next utterance is
/// expected to be. Sent after every utterance the audio thread delivers,
/// which waits for it, so that file input read faster than real time cannot
/// run past a question; and whenever the gate's state changes otherwise (a
/// confirmation expired).
#[derive(Debug, Clone, Copy, PartialEq)]
enum AudioControl {
    /// The next utterance is this.
    Expect(Expect),
}

/// What the next utterance is expected to be, from the gate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expect {
    /// A command: after the wake word (or any utterance with `--no-wake`).
    #[default]
    Command,
    /// The answer to a read-back (yes or no): listened for without the
    /// wake word.
    Reply,
    /// A spoken PIN: listened for without the wake word, and decoded
    /// without the intents' grammar (digits are no intent's sentence).
    Pin,
}

impl Expect {
    /// What the gate, in `state`, waits for.
    fn from_gate(state: GateState) -> Expect {
        match state {
            GateState { deadline: None, .. } => Expect::Command,
            GateState { pin: true, .. } => Expect::Pin,
            GateState { pin: false, .. } => Expect::Reply,
        }
    }

    /// A reply is due: listen without the wake word.
    fn is_reply(self) -> bool {
        self != Expect::Command
    }

    /// Decode the utterance without the grammar
    /// (`SttThread::transcribe_free`) instead of `SttThread::transcribe`.
    fn decode_free(self) -> bool {
        self == Expect::Pin
    }
}

/// Transcribes one utterance on the transcription thread, constrained to
/// the grammar (if there is one) unless `expect` says otherwise.
fn transcribe_for(
    stt: &SttThread,
    expect: Expect,
    samples: Vec<f32>,
) -> Result<Transcript, crate::stt::SttError> {
    let timeout = StdDuration::from_secs(60);
    if expect.decode_free() {
        stt.transcribe_free(samples, timeout)
    } else {
        stt.transcribe(samples, timeout)
    }
}

/// How long the audio thread waits for the coordinator to answer an
/// utterance (the gate thread is quick; this only guards a stuck process).
const CONTROL_WAIT: StdDuration = StdDuration::from_secs(30);

/// The audio path: source → [wake word →] endpointer → whisper → utterances.
///
/// With a wake-word detector, idle listening runs only its first stage
/// (the detector calls whisper only when that fires); a detection arms the
/// endpointer, whose buffer still holds speech that began just before, so
/// a command said in the same breath is kept whole and the wake phrase is
/// cut from the transcript. Without one (`--no-wake`) the endpointer is
/// always armed. While a reply is due ([`Expect`]) it listens without the
/// wake word, and a PIN is decoded without the grammar.
fn spawn_audio(
    mut source: Box<dyn AudioSource>,
    stt: Arc<SttThread>,
    mut detector: Option<Detector<Arc<SttThread>>>,
    endpoint: EndpointConfig,
    audio_clock: Option<DateTime<Utc>>,
    tx: mpsc::Sender<Input>,
    control: std_mpsc::Receiver<AudioControl>,
) -> Result<(), AppError> {
    thread::Builder::new()
        .name("voicegate-audio".into())
        .spawn(move || {
            let mut endpointer = Endpointer::new(endpoint);
            let phrases: Vec<String> = detector
                .as_ref()
                .map(|d| d.words().map(|w| w.phrase.clone()).collect())
                .unwrap_or_default();
            let mut frame = vec![0.0f32; FRAME_SAMPLES];
            let mut read: u64 = 0;
            let mut next_tick: u64 = 16_000;
            // Awake: the wake word was heard (its score), a command is due.
            let mut awake: Option<f32> = None;
            // What the gate waits for: a read-back's answer or a PIN is
            // listened for without the wake word (a PIN without the grammar).
            let mut expect = Expect::Command;
            let at = |samples: u64| {
                audio_clock
                    .map(|start| start + TimeDelta::milliseconds((samples * 1000 / 16_000) as i64))
            };
            // Transcribes one utterance; None if nothing was said (only the
            // wake phrase, or nothing whisper could write down).
            let transcribe =
                |samples: Vec<f32>, expect: Expect| -> Result<Option<(String, f32)>, String> {
                    let t = transcribe_for(&stt, expect, samples)
                        .map_err(|e| format!("transcription: {e}"))?;
                    let mut text = t.text;
                    for phrase in &phrases {
                        text = wakeword::strip_wake_phrase(&text, phrase);
                    }
                    Ok((!text.is_empty()).then_some((text, t.confidence)))
                };
            // Hands a command to the coordinator and waits for its answer:
            // `Some(Some(expect))` says what is due next, `Some(None)` no
            // answer in time, `None` the coordinator is gone.
            let deliver = |text: String,
                           confidence: f32,
                           wake_score: Option<f32>,
                           when: Option<DateTime<Utc>>|
             -> Option<Option<Expect>> {
                let utterance = Utterance {
                    text,
                    confidence: Some(confidence),
                    wake_score,
                    addressed: true,
                };
                tx.blocking_send(Input::Utterance(utterance, when)).ok()?;
                match control.recv_timeout(CONTROL_WAIT) {
                    Ok(AudioControl::Expect(next)) => Some(Some(next)),
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => None,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => Some(None),
                }
            };
            loop {
                while let Ok(AudioControl::Expect(next)) = control.try_recv() {
                    expect = next;
                }
                if expect.is_reply() && endpointer.state() == EndpointState::Idle {
                    endpointer.arm();
                }
                let n = match audio::read_full(&mut source, &mut frame) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Input::Notice(format!("audio input: {e}")));
                        break;
                    }
                };
                frame[n..].fill(0.0);
                read += n as u64;
                if let Some(d) = detector.as_mut()
                    && awake.is_none()
                    && !expect.is_reply()
                {
                    match d.push(&frame) {
                        Ok(Outcome::Detected(detection)) => {
                            awake = Some(detection.score);
                            // The command starts with the wake word (cut from
                            // the transcript later), so nothing said in the
                            // same breath is lost.
                            endpointer.arm_since(detection.window_samples);
                            if tx.blocking_send(Input::Wake(detection)).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Input::Notice(format!("wake word: {e}")));
                        }
                    }
                }
                let event = endpointer.push(&frame);
                let samples = match event {
                    Some(EndpointEvent::Utterance(u)) => u.samples,
                    Some(EndpointEvent::NoSpeech) => {
                        if awake.take().is_some() && !expect.is_reply() {
                            let notice = Input::Notice("woke, but no command followed".into());
                            if tx.blocking_send(notice).is_err() {
                                return;
                            }
                        }
                        if let Some(d) = detector.as_mut() {
                            d.reset();
                        }
                        continue;
                    }
                    _ => {
                        if audio_clock.is_some() && read >= next_tick {
                            next_tick += 16_000;
                            if let Some(when) = at(read)
                                && tx.blocking_send(Input::Tick(when)).is_err()
                            {
                                return;
                            }
                        }
                        continue;
                    }
                };
                match transcribe(samples, expect) {
                    Ok(Some((text, confidence))) => {
                        match deliver(text, confidence, awake.take(), at(read)) {
                            None => return,
                            Some(Some(next)) => expect = next,
                            Some(None) => {}
                        }
                        if let Some(d) = detector.as_mut() {
                            d.reset();
                        }
                    }
                    Ok(None) => {
                        // Only the wake word so far (or nothing intelligible):
                        // still awake, the command may follow.
                        if awake.is_some() || expect.is_reply() {
                            endpointer.arm();
                        }
                    }
                    Err(notice) => {
                        awake = None;
                        if tx.blocking_send(Input::Notice(notice)).is_err() {
                            return;
                        }
                    }
                }
            }
            // The input ended: a command still being spoken is complete.
            if let Some(EndpointEvent::Utterance(u)) = endpointer.finish()
                && let Ok(Some((text, confidence))) = transcribe(u.samples, expect)
                && deliver(text, confidence, awake.take(), at(read)).is_none()
            {
                return;
            }
            let _ = tx.blocking_send(Input::Ended(at(read)));
        })
        .map_err(AppError::Output)?;
    Ok(())
}

/// Plays the acknowledgement when a wake word is heard, on its own thread
/// so the coordinator never waits for a sound: the configured command, or
/// the bundled chime on the default output device. A failure is logged
/// once and the daemon goes on silently.
struct Acknowledger {
    tx: Option<std_mpsc::SyncSender<()>>,
}

impl Acknowledger {
    fn start(command: Option<String>) -> Acknowledger {
        if command.as_deref() == Some("none") {
            return Acknowledger { tx: None };
        }
        let (tx, rx) = std_mpsc::sync_channel::<()>(1);
        let spawned = thread::Builder::new()
            .name("voicegate-ack".into())
            .spawn(move || {
                let mut warned = false;
                let mut chime: Option<AudioRinger> = None;
                for () in rx {
                    let result = match &command {
                        Some(cmd) => std::process::Command::new("sh")
                            .arg("-c")
                            .arg(cmd)
                            .stdin(std::process::Stdio::null())
                            .stdout(std::process::Stdio::null())
                            .status()
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        None => {
                            let ringer = chime.get_or_insert_with(|| {
                                AudioRinger::from_samples(ack_chime(), 16_000)
                            });
                            let played = ringer.start("wake").map_err(|e| e.to_string());
                            thread::sleep(ACK_LENGTH);
                            ringer.stop();
                            played
                        }
                    };
                    if let Err(e) = result
                        && !warned
                    {
                        warned = true;
                        eprintln!("voicegate: cannot play the wake acknowledgement: {e}");
                    }
                }
            });
        Acknowledger {
            tx: spawned.ok().map(|_| tx),
        }
    }

    fn ack(&self) {
        if let Some(tx) = &self.tx {
            // Already playing one: skip rather than queue.
            let _ = tx.try_send(());
        }
    }
}

/// Length of the bundled acknowledgement.
const ACK_LENGTH: StdDuration = StdDuration::from_millis(180);

/// The bundled acknowledgement: two short rising tones (A5, E6), each with
/// a soft attack and decay, 180 ms at 16 kHz.
fn ack_chime() -> Vec<f32> {
    let rate = 16_000.0f32;
    let total = (ACK_LENGTH.as_secs_f32() * rate) as usize;
    let half = total / 2;
    (0..total)
        .map(|i| {
            let (freq, j) = if i < half {
                (880.0, i)
            } else {
                (1318.5, i - half)
            };
            let t = j as f32 / rate;
            let attack = (j as f32 / (0.005 * rate)).min(1.0);
            let decay = (-t * 25.0).exp();
            0.3 * attack * decay * (2.0 * std::f32::consts::PI * freq * t).sin()
        })
        .collect()
}

/// Newest modification time of the intent files (or `None` if unreadable).
fn intents_stamp(dir: &Path) -> Option<SystemTime> {
    let files = crate::intent::load::read_dir(dir).ok()?;
    files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).and_then(|m| m.modified()).ok())
        .max()
}

/// Watches the intent files; a change that checks clean is loaded, one with
/// errors is reported (with file:line:col) and the running set kept.
///
/// With `grammar` (the transcription grammar in use, as a template), a set
/// that loads is sent with its own grammar, built here like the template
/// (same options and penalty): building it is heavy work, kept off the
/// coordinator's runtime.
fn spawn_reload(
    dir: PathBuf,
    grammar: Option<SttGrammar>,
    tx: mpsc::Sender<Input>,
) -> Result<(), AppError> {
    // Taken before the thread starts, so a change made right after this
    // returns is seen as one.
    let mut stamp = intents_stamp(&dir);
    thread::Builder::new()
        .name("voicegate-reload".into())
        .spawn(move || {
            loop {
                thread::sleep(StdDuration::from_secs(1));
                if tx.is_closed() {
                    return;
                }
                let now = intents_stamp(&dir);
                if now == stamp {
                    continue;
                }
                stamp = now;
                let input = match IntentSet::load_path(&dir, &Default::default()) {
                    Ok((set, diags)) => {
                        let errors: Vec<String> = diags
                            .iter()
                            .filter(|d| d.is_error())
                            .map(|d| d.to_string())
                            .collect();
                        if errors.is_empty() {
                            let rebuilt = grammar.as_ref().map(|g| g.rebuilt(&set));
                            Input::Reload(Box::new(set), rebuilt)
                        } else {
                            Input::ReloadFailed(errors.join("\n\n"))
                        }
                    }
                    Err(e) => Input::ReloadFailed(e.to_string()),
                };
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
        })
        .map_err(AppError::Output)?;
    Ok(())
}

/// Runs until SIGINT/SIGTERM, or until file input ends.
pub fn run(
    settings: &Settings,
    intents: IntentSet,
    options: RunOptions,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Output)?;
    runtime.block_on(coordinate(settings, intents, options, out))
}

async fn coordinate(
    settings: &Settings,
    intents: IntentSet,
    options: RunOptions,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let json = settings.json;
    let (tx, mut rx) = mpsc::channel::<Input>(32);

    // Inputs first: a missing microphone or model is an error before anything starts.
    let file_input = options.input.as_deref().is_some_and(|i| i != "-");
    let audio_clock = (file_input && !options.realtime).then(Utc::now);
    let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
    // Only the audio path listens for control messages.
    let control = (!options.text).then_some(control_tx);
    // The transcription thread, for the coordinator too (a reload swaps
    // its grammar); `None` with typed input.
    let mut stt_handle: Option<Arc<SttThread>> = None;
    if options.text {
        spawn_stdin_text(tx.clone())?;
    } else {
        let model = crate::stt::model::locate(options.model.as_deref())?;
        let engine = WhisperTranscriber::load(&model, options.stt.clone())?;
        let stt = Arc::new(SttThread::start(Box::new(engine))?);
        stt_handle = Some(Arc::clone(&stt));
        let detector = if options.wake_words.is_empty() {
            None
        } else {
            Some(Detector::new(&options.wake_words, Arc::clone(&stt))?)
        };
        let source = audio::open_input(
            options.input.as_deref(),
            options.realtime,
            options.device.as_deref(),
            MicConfig::default(),
        )
        .map_err(|e| AppError::Usage(e.to_string()))?;
        let mut endpoint = if detector.is_some() {
            EndpointConfig {
                idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                ..EndpointConfig::default()
            }
        } else {
            EndpointConfig::always_armed()
        };
        if options.silence_end_ms > 0 {
            endpoint.silence_end_ms = options.silence_end_ms;
        }
        spawn_audio(
            source,
            stt,
            detector,
            endpoint,
            audio_clock,
            tx.clone(),
            control_rx,
        )?;
    }
    // The grammar is rebuilt on reload only if decoding uses one.
    let grammar_template = stt_handle
        .as_ref()
        .and(options.stt.grammar.as_ref())
        .cloned();
    spawn_reload(settings.intents_dir.clone(), grammar_template, tx.clone())?;
    drop(tx);

    let pipeline = Pipeline::start(intents, PipelineConfig::from_settings(settings))?;
    let gate = GateThread::start(pipeline)?;
    let schedule =
        Schedule::open(settings.state_db()).map_err(crate::pipeline::PipelineError::from)?;
    let mut ringer = configured_ringer(settings.ring_command.as_deref());
    let speaker = Speaker::start(options.tts.clone());
    let acknowledger = Acknowledger::start(options.ack_command.clone());
    // Tells the audio thread what is due next (see `AudioControl`).
    let tell_audio = |state: GateState| {
        if let Some(c) = &control {
            let _ = c.try_send(AudioControl::Expect(Expect::from_gate(state)));
        }
    };
    let emit = |events: &[Event], out: &mut dyn Write| -> Result<(), AppError> {
        print_events(events, json, out)?;
        speaker.speak(events);
        Ok(())
    };

    let wake = if options.text || options.wake_words.is_empty() {
        String::new()
    } else {
        let phrases: Vec<&str> = options
            .wake_words
            .iter()
            .map(|w| w.phrase.as_str())
            .collect();
        format!(" for \"{}\"", phrases.join("\" or \""))
    };
    let source = if options.text {
        "typed input on stdin"
    } else if file_input {
        "the audio file"
    } else if options.input.as_deref() == Some("-") {
        "raw audio on stdin"
    } else {
        "the microphone"
    };
    let now = Utc::now();
    let mut events = vec![say(format!("voicegate is listening to {source}{wake}."))];
    events.extend(gate.call(Call::Recover(now)).await.0);
    match schedule.missed_at_start(now, TimeDelta::seconds(START_GRACE_SECS)) {
        Ok(missed) => {
            for entry in missed {
                events.push(say(format!(
                    "While I was off you missed this: {}",
                    alarms::fired_message(&entry, Local::now())
                )));
            }
        }
        Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
    }
    emit(&events, out)?;

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(AppError::Output)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(AppError::Output)?;
    let mut ringing = false;
    // The gate's state after the last call: the deadline, a PIN awaited.
    let mut state = GateState::default();
    // The gate's clock: audio time for fast file input, else the wall clock.
    let mut gate_now = audio_clock;
    loop {
        // Wall-clock work: alarms, and confirm expiry when live.
        let now = Utc::now();
        let mut events = Vec::new();
        if audio_clock.is_none() && state.deadline.is_some_and(|d| now >= d) {
            let (ev, s) = gate.call(Call::Tick(now)).await;
            events.extend(ev);
            state = s;
            tell_audio(state);
        }
        match schedule.due(now) {
            Ok(fired) => {
                for entry in fired {
                    if let Err(e) = ringer.start(&entry.ring_text()) {
                        events.push(say(format!("(could not ring: {e})")));
                    }
                    ringing = true;
                    gate.call(Call::Context("alarm_ringing", Some(Value::Bool(true))))
                        .await;
                    events.push(say(alarms::fired_message(&entry, Local::now())));
                }
            }
            Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
        }
        emit(&events, out)?;

        let mut wait = MAX_SLEEP;
        let live_deadline = if audio_clock.is_none() {
            state.deadline
        } else {
            None
        };
        for d in [live_deadline, schedule.next_due().ok().flatten()]
            .into_iter()
            .flatten()
        {
            wait = wait.min((d - Utc::now()).to_std().unwrap_or_default());
        }
        let input = tokio::select! {
            input = rx.recv() => input,
            _ = tokio::time::sleep(wait) => continue,
            _ = sigterm.recv() => None,
            _ = sigint.recv() => None,
        };
        let Some(input) = input else {
            // A stop signal (or every producer gone): stop cleanly.
            let (mut events, _) = gate
                .call(Call::Shutdown(gate_now.unwrap_or_else(Utc::now)))
                .await;
            ringer.stop();
            events.push(say("voicegate stopped.".into()));
            emit(&events, out)?;
            return Ok(0);
        };
        match input {
            Input::Utterance(utterance, at) => {
                if at.is_some() {
                    gate_now = at;
                }
                let when = at.unwrap_or_else(Utc::now);
                let mut events = Vec::new();
                if let Some(confidence) = utterance.confidence {
                    events.push(Event::Heard {
                        text: utterance.text.clone(),
                        confidence,
                    });
                }
                let (handled, s) = gate.call(Call::Handle(Box::new(utterance), when)).await;
                events.extend(handled);
                state = s;
                tell_audio(state);
                emit(&events, out)?;
                if ringing && !any_ringing(&schedule) {
                    ringer.stop();
                    ringing = false;
                    gate.call(Call::Context("alarm_ringing", None)).await;
                }
            }
            Input::Tick(at) => {
                gate_now = Some(at);
                if state.deadline.is_some_and(|d| at >= d) {
                    let (events, s) = gate.call(Call::Tick(at)).await;
                    state = s;
                    tell_audio(state);
                    emit(&events, out)?;
                }
            }
            Input::Ended(at) => {
                // After the file, time runs on: a pending confirmation expires.
                let end = state.deadline.or(at).unwrap_or_else(Utc::now);
                let (mut events, _) = gate.call(Call::Tick(end)).await;
                events.extend(gate.call(Call::Shutdown(end)).await.0);
                ringer.stop();
                events.push(say("End of input.".into()));
                emit(&events, out)?;
                return Ok(0);
            }
            Input::Reload(set, grammar) => {
                let count = set.intents().len();
                let (mut events, s) = gate
                    .call(Call::Intents(set, gate_now.unwrap_or_else(Utc::now)))
                    .await;
                state = s;
                tell_audio(state);
                events.push(say(format!("Reloaded the intent files ({count} intents).")));
                if let (Some(stt), Some(grammar)) = (&stt_handle, grammar) {
                    // The transcription thread's queue may be full while it
                    // decodes: send from a blocking task, not the runtime.
                    let stt = Arc::clone(stt);
                    let sent = tokio::task::spawn_blocking(move || stt.set_grammar(Some(grammar)))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    if let Err(e) = sent {
                        events.push(say(format!("I could not update the speech grammar: {e}")));
                    }
                }
                emit(&events, out)?;
            }
            Input::ReloadFailed(errors) => {
                eprintln!(
                    "voicegate: the intent files have errors; still using the previous ones:\n{errors}"
                );
                emit(
                    &[say(
                        "The intent files have errors, so I kept the previous ones.".into(),
                    )],
                    out,
                )?;
            }
            Input::Notice(text) => eprintln!("voicegate: {text}"),
            Input::Wake(detection) => {
                acknowledger.ack();
                emit(
                    &[Event::Wake {
                        phrase: detection.phrase,
                        score: detection.score,
                    }],
                    out,
                )?;
            }
        }
    }
}

fn any_ringing(schedule: &Schedule) -> bool {
    let alarms = schedule.list_alarms().unwrap_or_default();
    let timers = schedule.list_timers().unwrap_or_default();
    alarms
        .iter()
        .chain(timers.iter())
        .any(|e| e.state == State::Ringing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioError;
    use crate::intent::grammar::{Grammar, GrammarOptions};
    use crate::stt::{SttError, Transcriber};
    use std::sync::Mutex;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + secs, 0).expect("a time")
    }

    #[test]
    fn what_is_expected_follows_the_gate_state() {
        // (deadline, pin) → expected, listen without the wake word, decode freely.
        for (deadline, pin, expect, reply, free) in [
            (None, false, Expect::Command, false, false),
            (Some(at(10)), false, Expect::Reply, true, false),
            (Some(at(10)), true, Expect::Pin, true, true),
            // Nothing pending: no PIN can be awaited, whatever the flag.
            (None, true, Expect::Command, false, false),
        ] {
            let got = Expect::from_gate(GateState { deadline, pin });
            assert_eq!(got, expect, "{deadline:?} {pin}");
            assert_eq!(got.is_reply(), reply, "{got:?}");
            assert_eq!(got.decode_free(), free, "{got:?}");
        }
    }

    #[test]
    fn the_gate_thread_reports_when_a_pin_is_awaited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (set, _) =
            IntentSet::load_path(Path::new(GATE_INTENTS), &Default::default()).expect("load");
        let config = PipelineConfig {
            gate: crate::gate::GateConfig {
                pin: Some(crate::gate::PinHash::new("4321")),
                pin_kinds: vec!["purchase.order".into()],
                ..Default::default()
            },
            audit_db: dir.path().join("audit.db"),
            state_db: dir.path().join("state.db"),
            handlers: Default::default(),
            mpd: Default::default(),
        };
        let gate = GateThread::start(Pipeline::start(set, config).expect("pipeline"))
            .expect("gate thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let now = Utc::now();
        // What the coordinator tells the audio thread after each utterance.
        let mut told = Vec::new();
        for (k, text) in [
            "buy paper towels",
            "yes",
            "one two three four",
            "four three two one",
            "book a table for 2",
            "yes",
        ]
        .into_iter()
        .enumerate()
        {
            let call = Call::Handle(
                Box::new(Utterance::typed(text)),
                now + TimeDelta::seconds(k as i64),
            );
            let (_, state) = runtime.block_on(gate.call(call));
            told.push(Expect::from_gate(state));
        }
        assert_eq!(
            told,
            [
                Expect::Reply,
                Expect::Pin,
                Expect::Pin,
                Expect::Command,
                Expect::Reply,
                Expect::Command
            ]
        );
    }

    /// Says which call decoded each utterance.
    struct Fake {
        calls: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Fake {
        fn answer(&self, call: &'static str) -> Result<Transcript, SttError> {
            self.calls.lock().expect("lock").push(call);
            Ok(Transcript {
                text: format!("decoded by {call}"),
                confidence: 0.9,
                audio_secs: 1.0,
                decode_secs: 0.0,
                audio_ctx: 1500,
                retried: false,
            })
        }
    }

    impl Transcriber for Fake {
        fn transcribe(&mut self, _samples: &[f32]) -> Result<Transcript, SttError> {
            self.answer("grammar")
        }

        fn transcribe_free(&mut self, _samples: &[f32]) -> Result<Transcript, SttError> {
            self.answer("free")
        }

        fn phrase_logprob(&mut self, _samples: &[f32], _phrase: &str) -> Result<f32, SttError> {
            Ok(0.0)
        }
    }

    /// Samples from memory, as fast as they are read.
    struct Samples {
        samples: Vec<f32>,
        at: usize,
    }

    impl AudioSource for Samples {
        fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
            let n = out.len().min(self.samples.len() - self.at);
            out[..n].copy_from_slice(&self.samples[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// `bursts` tone bursts (800 ms, 440 Hz, -20 dBFS: speech to the
    /// endpointer), each followed by 1.5 s of silence, after 1 s of it.
    fn bursts(bursts: usize) -> Vec<f32> {
        let ms = |n: usize| n * 16;
        let amp = 0.1 * 2f32.sqrt();
        let mut signal = vec![0.0; ms(1_000)];
        for _ in 0..bursts {
            signal.extend(
                (0..ms(800)).map(|i| {
                    amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()
                }),
            );
            signal.resize(signal.len() + ms(1_500), 0.0);
        }
        signal
    }

    #[test]
    fn the_audio_thread_decodes_a_pin_without_the_grammar() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stt = Arc::new(
            SttThread::start(Box::new(Fake {
                calls: Arc::clone(&calls),
            }))
            .expect("stt thread"),
        );
        // What the coordinator answers after each utterance: a purchase is
        // read back, "yes" is said to a PIN kind, the PIN, then a command.
        let answers = [Expect::Reply, Expect::Pin, Expect::Command, Expect::Command];
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
        spawn_audio(
            Box::new(Samples {
                samples: bursts(answers.len()),
                at: 0,
            }),
            stt,
            None,
            EndpointConfig::always_armed(),
            None,
            tx,
            control_rx,
        )
        .expect("audio thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut heard = Vec::new();
        runtime.block_on(async {
            loop {
                let input = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                    .await
                    .expect("the audio thread answers in time");
                match input {
                    Some(Input::Utterance(u, _)) => {
                        let answer = answers.get(heard.len()).copied().unwrap_or_default();
                        heard.push(u.text);
                        control_tx
                            .send(AudioControl::Expect(answer))
                            .expect("control");
                    }
                    Some(Input::Ended(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
        assert_eq!(
            heard,
            [
                "decoded by grammar",
                "decoded by grammar",
                "decoded by free",
                "decoded by grammar"
            ],
            "the utterance after Expect::Pin, and only it, is decoded freely"
        );
        assert_eq!(
            *calls.lock().expect("lock"),
            ["grammar", "grammar", "free", "grammar"]
        );
    }

    const GATE_INTENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gate/intents.yaml");

    const GARDEN: &str = "language: en
intents:
  WaterPlants:
    risk: low
    action: {kind: garden.water}
    data:
      - sentences: [\"water the (plants|garden)\"]
";

    /// A temp intent dir holding the gate tests' intents, its file dated
    /// an hour back (so that a file added now is surely newer).
    fn intent_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.yaml");
        std::fs::copy(GATE_INTENTS, &base).expect("copy the intents");
        std::fs::File::options()
            .write(true)
            .open(&base)
            .and_then(|f| f.set_modified(SystemTime::now() - StdDuration::from_secs(3600)))
            .expect("date the file back");
        dir
    }

    /// The next reload message, within 10 s.
    fn next_reload(rx: &mut mpsc::Receiver<Input>) -> Input {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(async { tokio::time::timeout(StdDuration::from_secs(10), rx.recv()).await })
            .expect("a reload within 10 s")
            .expect("the reload thread is running")
    }

    #[test]
    fn a_reload_carries_the_grammar_of_the_new_files() {
        let dir = intent_dir();
        let (set, _) = IntentSet::load_path(dir.path(), &Default::default()).expect("load");
        let options = GrammarOptions {
            skip_wildcards: true,
            ..GrammarOptions::default()
        };
        let template = SttGrammar {
            grammar: Grammar::build(set.definitions(), &options),
            options: options.clone(),
            penalty: 7.5,
        };
        assert!(template.grammar.accepts("get me a taxi"));
        assert!(!template.grammar.accepts("water the garden"));

        let (tx, mut rx) = mpsc::channel::<Input>(4);
        spawn_reload(dir.path().to_path_buf(), Some(template), tx).expect("reload thread");
        std::fs::write(dir.path().join("garden.yaml"), GARDEN).expect("new intent file");
        match next_reload(&mut rx) {
            Input::Reload(set, Some(grammar)) => {
                assert!(set.intent("WaterPlants").is_some());
                assert!(grammar.grammar.accepts("water the garden"));
                assert!(grammar.grammar.accepts("water the plants"));
                assert!(grammar.grammar.accepts("get me a taxi"));
                assert!(!grammar.grammar.accepts("water the lawn"));
                // Built like the template.
                assert_eq!(grammar.options, options);
                assert_eq!(grammar.penalty, 7.5);
            }
            other => panic!("want a reload with a grammar, got {other:?}"),
        }
    }

    #[test]
    fn a_reload_without_a_grammar_in_use_carries_none() {
        let dir = intent_dir();
        let (tx, mut rx) = mpsc::channel::<Input>(4);
        spawn_reload(dir.path().to_path_buf(), None, tx).expect("reload thread");
        std::fs::write(dir.path().join("garden.yaml"), GARDEN).expect("new intent file");
        match next_reload(&mut rx) {
            Input::Reload(set, None) => assert!(set.intent("WaterPlants").is_some()),
            other => panic!("want a reload without a grammar, got {other:?}"),
        }
    }
}
