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
//! **Half-duplex.** The device must not hear itself: a read-back ("Order
//! 1 pack of paper towels?") is itself a purchase sentence. Every sound
//! voicegate makes (the TTS, the wake chime, ringing) holds a playback on
//! one shared `HalfDuplex`, and the audio path treats what was captured
//! meanwhile, and for a short tail after (`[speech] echo_tail_ms`), as
//! silence: the microphone at capture time, paced input as it is read,
//! and file input read faster than real time by waiting for the sound to
//! end and silencing as much input as it lasted (`Muting`). The speaker
//! takes its playback when the coordinator queues the text, before the
//! audio thread is told what is due next.
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
use std::time::{Duration as StdDuration, Instant, SystemTime};

use chrono::{DateTime, Local, TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::actions::alarms::{self, Schedule, State};
use crate::actions::ring::{AudioRinger, Ringer, configured_ringer};
use crate::audio::{
    self, AudioSource, EndpointConfig, EndpointEvent, EndpointState, Endpointer, FRAME_SAMPLES,
    HalfDuplex, MicConfig, Playback,
};
use crate::config::Settings;
use crate::error::AppError;
use crate::gate::Utterance;
use crate::intent::IntentSet;
use crate::output::print_events;
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
    /// A wake word was heard; play the acknowledgement if true (the user
    /// has paused: see [`Acknowledger`]).
    Wake(Detection, bool),
}

/// Longest the loop sleeps without checking the schedule (another process,
/// e.g. `say`, may have set an alarm in the same database).
const MAX_SLEEP: StdDuration = StdDuration::from_secs(5);

/// How often a ringer is checked for having stopped by itself.
const RING_CHECK: StdDuration = StdDuration::from_millis(250);

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
    Flag(crate::gate::Flag, bool),
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

/// Says a text aloud, returning once it has been said (tests put a fake
/// behind it).
trait Voice: Send {
    fn say(&mut self, text: &str);
}

/// The TTS command: `sh -c <command>` with the text on stdin.
struct CommandVoice(String);

/// Longest a TTS command may take to say one text: the microphone is muted
/// while it runs, so a command that hangs must not deafen voicegate.
const MAX_SPEECH: StdDuration = StdDuration::from_secs(30);

impl Voice for CommandVoice {
    fn say(&mut self, text: &str) {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&self.0)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(text.as_bytes());
            }
            let deadline = Instant::now() + MAX_SPEECH;
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!("voicegate: the TTS command ran over {MAX_SPEECH:?}; stopped it");
                    return;
                }
                thread::sleep(StdDuration::from_millis(10));
            }
        }
    }
}

/// Speaks responses through the voice, one at a time, never blocking the
/// coordinator; the words are always logged too (the event stream).
///
/// Half-duplex: each text holds a [`Playback`] from the moment it is
/// queued (synchronously in `speak`, so the audio thread, which waits for
/// the coordinator's answer to an utterance, already sees it when it reads
/// on) until the voice has said it.
struct Speaker {
    tx: Option<std_mpsc::SyncSender<(String, Playback)>>,
    duplex: Arc<HalfDuplex>,
}

impl Speaker {
    fn start(voice: Option<Box<dyn Voice>>, duplex: Arc<HalfDuplex>) -> Speaker {
        let Some(mut voice) = voice else {
            return Speaker { tx: None, duplex };
        };
        let (tx, rx) = std_mpsc::sync_channel::<(String, Playback)>(16);
        let spawned = thread::Builder::new()
            .name("voicegate-tts".into())
            .spawn(move || {
                for (text, playing) in rx {
                    voice.say(&text);
                    drop(playing);
                }
            });
        Speaker {
            tx: spawned.ok().map(|_| tx),
            duplex,
        }
    }

    fn speak(&self, events: &[Event]) {
        let Some(tx) = &self.tx else { return };
        for event in events {
            if let Event::Response { text, .. } = event {
                // If the speaker is behind, drop rather than block (the
                // dropped text's playback ends with it).
                let _ = tx.try_send((text.clone(), self.duplex.hold()));
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

/// The wake-word detector as the audio thread uses it (a trait, so that a
/// test can fire it where it wants).
trait WakeDetector: Send {
    /// Feeds one frame.
    fn push(&mut self, frame: &[f32]) -> Result<Outcome, wakeword::WakewordError>;
    /// Forgets the audio so far (after a command).
    fn reset(&mut self);
    /// The wake phrases, to cut from transcripts.
    fn phrases(&self) -> Vec<String>;
}

impl<V: wakeword::detector::Verifier + Send> WakeDetector for Detector<V> {
    fn push(&mut self, frame: &[f32]) -> Result<Outcome, wakeword::WakewordError> {
        Detector::push(self, frame)
    }

    fn reset(&mut self) {
        Detector::reset(self);
    }

    fn phrases(&self) -> Vec<String> {
        self.words().map(|w| w.phrase.clone()).collect()
    }
}

/// How the audio thread keeps voicegate from hearing itself (see
/// [`HalfDuplex`]), by kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Muting {
    /// The source silences itself at capture time (the microphone).
    AtSource,
    /// Paced input (`--realtime`, raw PCM on stdin): frames read while
    /// muted are zeroed.
    AtRead,
    /// Input read faster than real time (the audio clock): before reading
    /// on, wait until nothing plays, then silence as many samples as the
    /// playback lasted in wall time plus the tail, what a live microphone
    /// would have missed meanwhile.
    Skip,
}

/// Everything the audio thread works with.
struct AudioPath {
    source: Box<dyn AudioSource>,
    stt: Arc<SttThread>,
    /// `None`: `--no-wake`, every utterance is addressed to voicegate.
    detector: Option<Box<dyn WakeDetector>>,
    endpoint: EndpointConfig,
    /// The start of the audio clock (file input read faster than real
    /// time), or `None`: the wall clock.
    audio_clock: Option<DateTime<Utc>>,
    duplex: Arc<HalfDuplex>,
    muting: Muting,
}

/// Speech this recent (in samples) when the wake word is confirmed means
/// the user is already saying the command: no chime then (200 ms).
const STILL_SPEAKING: u64 = 3_200;

/// The audio path: source → [wake word →] endpointer → whisper → utterances.
///
/// With a wake-word detector, idle listening runs only its first stage
/// (the detector calls whisper only when that fires); a detection arms the
/// endpointer, whose buffer still holds speech that began just before, so
/// a command said in the same breath is kept whole and the wake phrase is
/// cut from the transcript. Without one (`--no-wake`) the endpointer is
/// always armed. While a reply is due ([`Expect`]) it listens without the
/// wake word, and a PIN is decoded without the grammar.
///
/// **Addressed.** An utterance that follows a wake-word detection (or any,
/// with `--no-wake`) is addressed to voicegate. One heard in a reply
/// window without the wake word is not (`Utterance::addressed` false): the
/// gate lets it answer the question and nothing else, so a television
/// saying "set a timer" while a purchase waits runs nothing. The detector
/// keeps running in reply windows, so "jarvis, set a timer" said then is
/// addressed (and the wake phrase cut as usual).
///
/// **Half-duplex.** Audio captured while voicegate makes a sound is
/// silence to everything here (see [`Muting`]).
fn spawn_audio(
    path: AudioPath,
    tx: mpsc::Sender<Input>,
    control: std_mpsc::Receiver<AudioControl>,
) -> Result<(), AppError> {
    let AudioPath {
        mut source,
        stt,
        mut detector,
        endpoint,
        audio_clock,
        duplex,
        muting,
    } = path;
    thread::Builder::new()
        .name("voicegate-audio".into())
        .spawn(move || {
            let mut endpointer = Endpointer::new(endpoint);
            let phrases: Vec<String> = detector.as_ref().map(|d| d.phrases()).unwrap_or_default();
            // Without a detector every utterance is addressed.
            let always_addressed = detector.is_none();
            let mut frame = vec![0.0f32; FRAME_SAMPLES];
            let mut read: u64 = 0;
            let mut next_tick: u64 = 16_000;
            // Awake: the wake word was heard (its score), a command is due.
            let mut awake: Option<f32> = None;
            // What the gate waits for: a read-back's answer or a PIN is
            // listened for without the wake word (a PIN without the grammar).
            let mut expect = Expect::Command;
            // Half-duplex with input read faster than real time: what has
            // been played so far, and samples still to silence. A file
            // starts once the sounds playing at start (the greeting) are
            // over: they are not part of its recording.
            let mut played = duplex.mark();
            if muting == Muting::Skip {
                duplex.wait_idle(&mut played);
            }
            let mut silence_left: u64 = 0;
            // The end of the last frame with speech in it.
            let mut last_voiced: Option<u64> = None;
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
                    addressed: always_addressed || wake_score.is_some(),
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
                if muting == Muting::Skip {
                    let missed = duplex.wait_idle(&mut played);
                    silence_left += (missed.as_secs_f64() * 16_000.0).round() as u64;
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
                match muting {
                    Muting::AtSource => {}
                    Muting::AtRead => {
                        if duplex.muted_at(Instant::now()) {
                            frame.fill(0.0);
                        }
                    }
                    Muting::Skip => {
                        let k = silence_left.min(n as u64);
                        frame[..k as usize].fill(0.0);
                        silence_left -= k;
                    }
                }
                read += n as u64;
                // Also in a reply window: a new command needs the wake word.
                if let Some(d) = detector.as_mut()
                    && awake.is_none()
                {
                    match d.push(&frame) {
                        Ok(Outcome::Detected(detection)) => {
                            awake = Some(detection.score);
                            // The command starts with the wake word (cut from
                            // the transcript later), so nothing said in the
                            // same breath is lost.
                            endpointer.arm_since(detection.window_samples);
                            // A chime would cut a command said in the same
                            // breath (the microphone is muted while it
                            // plays): only when the user has paused.
                            let chime = last_voiced
                                .is_none_or(|end| read.saturating_sub(end) > STILL_SPEAKING);
                            if tx.blocking_send(Input::Wake(detection, chime)).is_err() {
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
                if endpointer.last_frame().is_some_and(|l| l.continues) {
                    last_voiced = Some(read);
                }
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
///
/// The microphone is muted while it plays (a [`Playback`] taken when
/// asked, released when the sound is over). So that a chime never cuts a
/// command said in the same breath ("jarvis, set a timer"), the audio
/// thread asks for it only when the user has paused after the wake word
/// (`Input::Wake`): someone already talking needs no signal to go on.
struct Acknowledger {
    tx: Option<std_mpsc::SyncSender<Playback>>,
    duplex: Arc<HalfDuplex>,
}

impl Acknowledger {
    fn start(command: Option<String>, duplex: Arc<HalfDuplex>) -> Acknowledger {
        if command.as_deref() == Some("none") {
            return Acknowledger { tx: None, duplex };
        }
        let (tx, rx) = std_mpsc::sync_channel::<Playback>(1);
        let spawned = thread::Builder::new()
            .name("voicegate-ack".into())
            .spawn(move || {
                let mut warned = false;
                let mut chime: Option<AudioRinger> = None;
                for playing in rx {
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
                    drop(playing);
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
            duplex,
        }
    }

    fn ack(&self) {
        if let Some(tx) = &self.tx {
            // Already playing one: skip rather than queue.
            let _ = tx.try_send(self.duplex.hold());
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
    // Inputs first: a missing microphone or model is an error before anything starts.
    let parts = Parts::open(settings, options)?;
    run_with(settings, intents, parts, out)
}

/// What the coordinator runs with: built from [`RunOptions`] by
/// [`Parts::open`], or by a test with fakes.
struct Parts {
    /// The audio path; `None`: typed lines on stdin.
    audio: Option<AudioPath>,
    /// The transcription grammar in use (rebuilt on reload), if any.
    grammar: Option<SttGrammar>,
    /// Says responses aloud; `None`: they are only logged.
    voice: Option<Box<dyn Voice>>,
    /// The acknowledgement command (`None`: the bundled chime; "none").
    ack_command: Option<String>,
    /// Voicegate's own sounds, which the audio path does not listen to.
    duplex: Arc<HalfDuplex>,
    /// What is listened to, for the greeting ("the microphone for \"jarvis\"").
    listening_to: String,
}

impl Parts {
    fn open(settings: &Settings, options: RunOptions) -> Result<Parts, AppError> {
        let duplex = HalfDuplex::new(settings.echo_tail);
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
        let file_input = options.input.as_deref().is_some_and(|i| i != "-");
        let source = if options.text {
            "typed input on stdin"
        } else if file_input {
            "the audio file"
        } else if options.input.as_deref() == Some("-") {
            "raw audio on stdin"
        } else {
            "the microphone"
        };
        let audio = if options.text {
            None
        } else {
            let model = crate::stt::model::locate(options.model.as_deref())?;
            let engine = WhisperTranscriber::load(&model, options.stt.clone())?;
            let stt = Arc::new(SttThread::start(Box::new(engine))?);
            let detector: Option<Box<dyn WakeDetector>> = if options.wake_words.is_empty() {
                None
            } else {
                Some(Box::new(Detector::new(
                    &options.wake_words,
                    Arc::clone(&stt),
                )?))
            };
            let mic = options.input.is_none();
            let source = if mic {
                let mic = audio::MicSource::open(options.device.as_deref(), MicConfig::default())
                    .map_err(|e| AppError::Usage(e.to_string()))?;
                mic.mute_while_playing(Arc::clone(&duplex));
                Box::new(mic) as Box<dyn AudioSource>
            } else {
                audio::open_input(
                    options.input.as_deref(),
                    options.realtime,
                    options.device.as_deref(),
                    MicConfig::default(),
                )
                .map_err(|e| AppError::Usage(e.to_string()))?
            };
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
            let audio_clock = (file_input && !options.realtime).then(Utc::now);
            let muting = if mic {
                Muting::AtSource
            } else if audio_clock.is_some() {
                Muting::Skip
            } else {
                Muting::AtRead
            };
            Some(AudioPath {
                source,
                stt,
                detector,
                endpoint,
                audio_clock,
                duplex: Arc::clone(&duplex),
                muting,
            })
        };
        Ok(Parts {
            grammar: audio.as_ref().and(options.stt.grammar.clone()),
            audio,
            voice: options
                .tts
                .map(|command| Box::new(CommandVoice(command)) as Box<dyn Voice>),
            ack_command: options.ack_command,
            duplex,
            listening_to: format!("{source}{wake}"),
        })
    }
}

/// Runs the coordinator over `parts` on a single-threaded runtime.
fn run_with(
    settings: &Settings,
    intents: IntentSet,
    parts: Parts,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Output)?;
    runtime.block_on(coordinate(settings, intents, parts, out))
}

async fn coordinate(
    settings: &Settings,
    intents: IntentSet,
    parts: Parts,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let json = settings.json;
    let (tx, mut rx) = mpsc::channel::<Input>(32);
    let Parts {
        audio,
        grammar,
        voice,
        ack_command,
        duplex,
        listening_to,
    } = parts;

    let audio_clock = audio.as_ref().and_then(|a| a.audio_clock);
    let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
    // Only the audio path listens for control messages.
    let control = audio.is_some().then_some(control_tx);
    // The transcription thread, for the coordinator too (a reload swaps
    // its grammar); `None` with typed input.
    let stt_handle: Option<Arc<SttThread>> = audio.as_ref().map(|a| Arc::clone(&a.stt));
    spawn_reload(settings.intents_dir.clone(), grammar, tx.clone())?;

    let pipeline = Pipeline::start(intents, PipelineConfig::from_settings(settings))?;
    let gate = GateThread::start(pipeline)?;
    let schedule =
        Schedule::open(settings.state_db()).map_err(crate::pipeline::PipelineError::from)?;
    let mut ringer = configured_ringer(
        settings.ring_command.as_deref(),
        Some(&duplex),
        settings.ring_command_audible,
    );
    let speaker = Speaker::start(voice, Arc::clone(&duplex));
    let acknowledger = Acknowledger::start(ack_command, Arc::clone(&duplex));
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

    let now = Utc::now();
    let mut events = vec![say(format!("voicegate is listening to {listening_to}."))];
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
    // Input starts after the greeting is queued, so that its playback is
    // seen by the audio thread from the first frame on.
    match audio {
        None => spawn_stdin_text(tx.clone())?,
        Some(path) => spawn_audio(path, tx.clone(), control_rx)?,
    }
    drop(tx);

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
                    gate.call(Call::Flag(crate::gate::Flag::AlarmRinging, true))
                        .await;
                    events.push(say(alarms::fired_message(&entry, Local::now())));
                }
            }
            Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
        }
        emit(&events, out)?;

        let mut wait = MAX_SLEEP;
        if ringing {
            // A ring command that exits by itself stops muting the
            // microphone soon after.
            ringer.check();
            wait = wait.min(RING_CHECK);
        }
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
                    // What is said while the gate waits for a PIN is the
                    // PIN: it is never printed (the gate never keeps it).
                    let text = if state.pin {
                        crate::gate::PIN_REDACTED.to_string()
                    } else {
                        utterance.text.clone()
                    };
                    events.push(Event::Heard { text, confidence });
                }
                let (handled, s) = gate.call(Call::Handle(Box::new(utterance), when)).await;
                events.extend(handled);
                state = s;
                // Spoken first: the speaker takes its playback before the
                // audio thread, told what is due next, reads on.
                emit(&events, out)?;
                tell_audio(state);
                if ringing && !any_ringing(&schedule) {
                    ringer.stop();
                    ringing = false;
                    gate.call(Call::Flag(crate::gate::Flag::AlarmRinging, false))
                        .await;
                }
            }
            Input::Tick(at) => {
                gate_now = Some(at);
                if state.deadline.is_some_and(|d| at >= d) {
                    let (events, s) = gate.call(Call::Tick(at)).await;
                    state = s;
                    emit(&events, out)?;
                    tell_audio(state);
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
            Input::Wake(detection, chime) => {
                if chime {
                    acknowledger.ack();
                }
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
    use serde_json::Value;
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
                pin_kinds: vec![crate::request::ActionKind::PurchaseOrder],
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
        wake_bursts(&vec![false; bursts])
    }

    /// Like [`bursts`], one per flag; a burst whose flag is set starts
    /// with 100 ms above [`WAKE_LEVEL`] (a wake word to [`LoudWake`]).
    fn wake_bursts(wake: &[bool]) -> Vec<f32> {
        let ms = |n: usize| n * 16;
        let amp = 0.1 * 2f32.sqrt();
        let mut signal = vec![0.0; ms(1_000)];
        for &loud in wake {
            signal.extend((0..ms(800)).map(|i| {
                let gain = if loud && i < ms(100) { 3.0 } else { 1.0 };
                gain * amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()
            }));
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
        let path = AudioPath {
            source: Box::new(Samples {
                samples: bursts(answers.len()),
                at: 0,
            }),
            stt,
            detector: None,
            endpoint: EndpointConfig::always_armed(),
            audio_clock: None,
            duplex: HalfDuplex::new(audio::DEFAULT_TAIL),
            muting: Muting::AtRead,
        };
        spawn_audio(path, tx, control_rx).expect("audio thread");
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
                        assert!(u.addressed, "--no-wake: every utterance is addressed");
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

    /// Peak level of a "wake word" in test audio: a loud burst is one.
    const WAKE_LEVEL: f32 = 0.3;

    /// A wake word that is "heard" in any frame louder than
    /// [`WAKE_LEVEL`] (stage 1 needs real speech; these tests are about
    /// what the audio thread does with a detection).
    #[derive(Default)]
    struct LoudWake {
        pos: u64,
    }

    impl WakeDetector for LoudWake {
        fn push(&mut self, frame: &[f32]) -> Result<Outcome, wakeword::WakewordError> {
            self.pos += frame.len() as u64;
            if !frame.iter().any(|x| x.abs() > WAKE_LEVEL) {
                return Ok(Outcome::Nothing);
            }
            Ok(Outcome::Detected(Detection {
                phrase: "jarvis".into(),
                stage1_score: 0.9,
                logprob: -0.1,
                score: 0.9,
                at_sample: self.pos,
                window_samples: 9_600,
            }))
        }

        fn reset(&mut self) {}

        fn phrases(&self) -> Vec<String> {
            vec!["jarvis".into()]
        }
    }

    /// Runs the audio thread over `samples` (no wake word, always armed)
    /// with `muting`, answering every utterance with `Expect::Command`;
    /// returns how many utterances it delivered.
    fn utterances_heard(samples: Vec<f32>, duplex: Arc<HalfDuplex>, muting: Muting) -> usize {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stt = Arc::new(SttThread::start(Box::new(Fake { calls })).expect("stt thread"));
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
        let path = AudioPath {
            source: Box::new(Samples { samples, at: 0 }),
            stt,
            detector: None,
            endpoint: EndpointConfig::always_armed(),
            audio_clock: None,
            duplex,
            muting,
        };
        spawn_audio(path, tx, control_rx).expect("audio thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut heard = 0;
        runtime.block_on(async {
            loop {
                let input = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                    .await
                    .expect("the audio thread answers in time");
                match input {
                    Some(Input::Utterance(..)) => {
                        heard += 1;
                        control_tx
                            .send(AudioControl::Expect(Expect::Command))
                            .expect("control");
                    }
                    Some(Input::Ended(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
        heard
    }

    #[test]
    fn paced_input_read_while_voicegate_plays_is_silence() {
        let duplex = HalfDuplex::new(audio::DEFAULT_TAIL);
        let playing = duplex.hold();
        assert_eq!(
            utterances_heard(bursts(2), Arc::clone(&duplex), Muting::AtRead),
            0
        );
        // The microphone silences itself: the audio thread leaves it be.
        assert_eq!(
            utterances_heard(bursts(2), Arc::clone(&duplex), Muting::AtSource),
            2
        );
        drop(playing);
        std::thread::sleep(audio::DEFAULT_TAIL);
        assert_eq!(utterances_heard(bursts(2), duplex, Muting::AtRead), 2);
    }

    #[test]
    fn no_chime_cuts_a_command_said_in_the_same_breath() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stt = Arc::new(SttThread::start(Box::new(Fake { calls })).expect("stt thread"));
        let ms = |n: usize| n * 16;
        let tone = |i: usize, gain: f32| {
            gain * 0.1 * 2f32.sqrt() * (std::f32::consts::TAU * 440.0 * i as f32 / 16_000.0).sin()
        };
        // The wake word confirmed while speech goes on (the loud part in
        // the middle of a burst), then after a pause (a loud burst alone).
        let mut samples = vec![0.0; ms(1_000)];
        samples.extend((0..ms(800)).map(|i| {
            tone(
                i,
                if (ms(400)..ms(500)).contains(&i) {
                    3.0
                } else {
                    1.0
                },
            )
        }));
        samples.resize(samples.len() + ms(1_500), 0.0);
        samples.extend((0..ms(100)).map(|i| tone(i, 3.0)));
        samples.resize(samples.len() + ms(3_000), 0.0);
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
        let path = AudioPath {
            source: Box::new(Samples { samples, at: 0 }),
            stt,
            detector: Some(Box::new(LoudWake::default())),
            endpoint: EndpointConfig {
                idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                ..EndpointConfig::default()
            },
            audio_clock: None,
            duplex: HalfDuplex::new(audio::DEFAULT_TAIL),
            muting: Muting::AtRead,
        };
        spawn_audio(path, tx, control_rx).expect("audio thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut chimes = Vec::new();
        runtime.block_on(async {
            loop {
                let input = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                    .await
                    .expect("the audio thread answers in time");
                match input {
                    Some(Input::Utterance(..)) => control_tx
                        .send(AudioControl::Expect(Expect::Command))
                        .expect("control"),
                    Some(Input::Wake(_, chime)) => chimes.push(chime),
                    Some(Input::Ended(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
        assert_eq!(chimes, [false, true], "a chime only after a pause");
    }

    #[test]
    fn in_a_reply_window_only_the_wake_word_addresses_a_command() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stt = Arc::new(SttThread::start(Box::new(Fake { calls })).expect("stt thread"));
        // Burst 0 follows the wake word: a purchase, read back. Burst 1,
        // in the reply window, has no wake word; burst 2 has one; burst 3
        // (nothing pending, no wake word) is not listened to.
        let answers = [Expect::Reply, Expect::Reply, Expect::Command];
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
        let path = AudioPath {
            source: Box::new(Samples {
                samples: wake_bursts(&[true, false, true, false]),
                at: 0,
            }),
            stt,
            detector: Some(Box::new(LoudWake::default())),
            endpoint: EndpointConfig {
                idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                ..EndpointConfig::default()
            },
            audio_clock: None,
            duplex: HalfDuplex::new(audio::DEFAULT_TAIL),
            muting: Muting::AtRead,
        };
        spawn_audio(path, tx, control_rx).expect("audio thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut heard = Vec::new();
        let mut wakes = 0;
        runtime.block_on(async {
            loop {
                let input = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                    .await
                    .expect("the audio thread answers in time");
                match input {
                    Some(Input::Utterance(u, _)) => {
                        let answer = answers.get(heard.len()).copied().unwrap_or_default();
                        heard.push((u.addressed, u.wake_score.is_some()));
                        control_tx
                            .send(AudioControl::Expect(answer))
                            .expect("control");
                    }
                    Some(Input::Wake(..)) => wakes += 1,
                    Some(Input::Ended(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
        assert_eq!(wakes, 2, "the detector runs in the reply window too");
        assert_eq!(
            heard,
            [(true, true), (false, false), (true, true)],
            "(addressed, with a wake score) per utterance"
        );
    }

    /// Texts as tones: a fake voice says text number `i` as an 800 ms tone
    /// of `220 + 60 i` Hz, and a fake transcriber hears the strongest known
    /// tone in an utterance as its text.
    #[derive(Default)]
    struct Codebook(Mutex<Vec<String>>);

    impl Codebook {
        fn freq(i: usize) -> f32 {
            220.0 + 60.0 * i as f32
        }

        /// The tone that says `text` (a new one for a new text).
        fn tone(&self, text: &str) -> Vec<f32> {
            let mut texts = self.0.lock().expect("lock");
            let i = match texts.iter().position(|t| t == text) {
                Some(i) => i,
                None => {
                    texts.push(text.to_string());
                    texts.len() - 1
                }
            };
            let (freq, amp) = (Self::freq(i), 0.1 * 2f32.sqrt());
            (0..12_800)
                .map(|n| amp * (std::f32::consts::TAU * freq * n as f32 / 16_000.0).sin())
                .collect()
        }

        /// The text whose tone is strongest in `samples` (Goertzel), if
        /// any is there.
        fn text(&self, samples: &[f32]) -> Option<String> {
            let texts = self.0.lock().expect("lock");
            let power = |freq: f32| {
                let w = std::f32::consts::TAU * freq / 16_000.0;
                let (mut s1, mut s2) = (0.0f32, 0.0f32);
                for &x in samples {
                    let s0 = x + 2.0 * w.cos() * s1 - s2;
                    s2 = s1;
                    s1 = s0;
                }
                (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / samples.len().max(1) as f32
            };
            let (best, p) = (0..texts.len())
                .map(|i| (i, power(Self::freq(i))))
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            // Silence or noise: nothing (a tone of a second scores ~40).
            (p > 1.0).then(|| texts[best].clone())
        }
    }

    /// Hears tones as their codebook texts.
    struct ToneReader(Arc<Codebook>);

    impl ToneReader {
        fn read(&self, samples: &[f32]) -> Result<Transcript, SttError> {
            Ok(Transcript {
                text: self.0.text(samples).unwrap_or_default(),
                confidence: 0.9,
                audio_secs: samples.len() as f32 / 16_000.0,
                decode_secs: 0.0,
                audio_ctx: 1500,
                retried: false,
            })
        }
    }

    impl Transcriber for ToneReader {
        fn transcribe(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
            self.read(samples)
        }

        fn transcribe_free(&mut self, samples: &[f32]) -> Result<Transcript, SttError> {
            self.read(samples)
        }

        fn phrase_logprob(&mut self, _samples: &[f32], _phrase: &str) -> Result<f32, SttError> {
            Ok(0.0)
        }
    }

    /// An input stream the loudspeaker plays into: what is read, and the
    /// read position.
    #[derive(Default)]
    struct Room {
        samples: Vec<f32>,
        at: usize,
        /// Texts spoken into it (a device that hears itself would talk on
        /// forever; it stops after a few).
        spoken: usize,
        /// Where the last text spoken into it ends: the next one follows.
        spoken_end: usize,
        /// Reading has begun: what is said before (the greeting) is not
        /// part of the recording.
        started: bool,
    }

    /// Reads the room, as fast as it is read.
    struct RoomSource(Arc<Mutex<Room>>);

    impl AudioSource for RoomSource {
        fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
            let mut room = self.0.lock().expect("lock");
            room.started = true;
            let at = room.at;
            let n = out.len().min(room.samples.len() - at);
            out[..n].copy_from_slice(&room.samples[at..at + n]);
            room.at += n;
            Ok(n)
        }
    }

    /// A TTS whose sound goes back into the input: saying a text splices
    /// its tone and a 700 ms pause into the room at the read position (or
    /// after the previous text, if that is not read yet), and takes as long
    /// as they last.
    struct LoopbackVoice {
        room: Arc<Mutex<Room>>,
        book: Arc<Codebook>,
    }

    impl Voice for LoopbackVoice {
        fn say(&mut self, text: &str) {
            let mut tone = self.book.tone(text);
            tone.resize(tone.len() + 11_200, 0.0);
            let length = StdDuration::from_secs_f32(tone.len() as f32 / 16_000.0);
            {
                let mut room = self.room.lock().expect("lock");
                if room.spoken >= 8 {
                    return;
                }
                if !room.started {
                    drop(room);
                    thread::sleep(length);
                    return;
                }
                room.spoken += 1;
                let at = room.at.max(room.spoken_end);
                room.spoken_end = at + tone.len();
                room.samples.splice(at..at, tone);
            }
            thread::sleep(length);
        }
    }

    /// Settings for a daemon test: the gate tests' intents, state in `dir`.
    fn test_settings(dir: &Path) -> Settings {
        let intents = dir.join("intents");
        std::fs::create_dir_all(&intents).expect("intents dir");
        std::fs::copy(GATE_INTENTS, intents.join("base.yaml")).expect("copy the intents");
        Settings {
            intents_dir: intents,
            data_dir: dir.to_path_buf(),
            json: true,
            gate: Default::default(),
            handlers: Default::default(),
            mpd: Default::default(),
            ring_command: None,
            ring_command_audible: true,
            echo_tail: audio::DEFAULT_TAIL,
            tts_command: None,
            wake_words: Vec::new(),
            ack_command: None,
        }
    }

    /// The events a run printed (JSON lines), as (kind, the whole event).
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|v| (v["event"].as_str().unwrap_or("").to_string(), v))
            .collect()
    }

    /// Item 3 of issue 13: the read-back is a purchase sentence, and a
    /// device that hears itself would take it for a new command.
    #[test]
    fn the_read_back_is_not_heard_as_a_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = test_settings(dir.path());
        let book = Arc::new(Codebook::default());
        // The user: "buy paper towels", 4 s of silence, "yes".
        let mut samples = vec![0.0; 16_000];
        samples.extend(book.tone("buy paper towels"));
        samples.resize(samples.len() + 64_000, 0.0);
        samples.extend(book.tone("yes"));
        samples.resize(samples.len() + 32_000, 0.0);
        let room = Arc::new(Mutex::new(Room {
            samples,
            ..Room::default()
        }));
        let stt = Arc::new(
            SttThread::start(Box::new(ToneReader(Arc::clone(&book)))).expect("stt thread"),
        );
        let duplex = HalfDuplex::new(audio::DEFAULT_TAIL);
        let parts = Parts {
            audio: Some(AudioPath {
                source: Box::new(RoomSource(Arc::clone(&room))),
                stt,
                detector: None,
                endpoint: EndpointConfig::always_armed(),
                audio_clock: Some(Utc::now()),
                duplex: Arc::clone(&duplex),
                muting: Muting::Skip,
            }),
            grammar: None,
            voice: Some(Box::new(LoopbackVoice {
                room: Arc::clone(&room),
                book: Arc::clone(&book),
            })),
            ack_command: Some("none".into()),
            duplex,
            listening_to: "the room".into(),
        };
        let (set, _) =
            IntentSet::load_path(&settings.intents_dir, &Default::default()).expect("intents");
        let mut out = Vec::new();
        run_with(&settings, set, parts, &mut out).expect("run");
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        let heard: Vec<&str> = events
            .iter()
            .filter(|(k, _)| k == "heard")
            .filter_map(|(_, v)| v["text"].as_str())
            .collect();
        assert!(
            room.lock().expect("lock").spoken >= 2,
            "the read-back went into the room"
        );
        assert_eq!(heard, ["buy paper towels", "yes"], "{kinds:?}");
        let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(count("confirm_request"), 1, "one read-back: {kinds:?}");
        assert_eq!(count("superseded"), 0, "{kinds:?}");
        let executed: Vec<&Value> = events
            .iter()
            .filter(|(k, _)| k == "executed")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(executed.len(), 1, "the purchase runs once: {kinds:?}");
        assert_eq!(executed[0]["intent"], "OrderItem");
    }

    const GARDEN: &str = "language: en
intents:
  WaterPlants:
    risk: low
    action: {kind: nevermind}
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
    /// Item 2 of issue 13, end to end through the coordinator and the
    /// gate: in a reply window, what is heard without the wake word can
    /// only answer; a different command ends the request and runs nothing,
    /// and a new command needs the wake word again.
    #[test]
    fn a_spoken_pin_is_heard_as_pin_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(dir.path());
        settings.gate.pin = Some(crate::gate::PinHash::new("4321"));
        settings.gate.pin_kinds = vec![crate::request::ActionKind::PurchaseOrder];
        let book = Arc::new(Codebook::default());
        let pause = |samples: &mut Vec<f32>| samples.resize(samples.len() + 24_000, 0.0);
        let mut samples = vec![0.0; 16_000];
        let mut command = book.tone("buy paper towels");
        for x in &mut command[..1_600] {
            *x *= 3.0;
        }
        samples.extend(command);
        pause(&mut samples);
        for text in ["yes", "4 3 2 1"] {
            samples.extend(book.tone(text));
            pause(&mut samples);
        }
        let stt = Arc::new(
            SttThread::start(Box::new(ToneReader(Arc::clone(&book)))).expect("stt thread"),
        );
        let duplex = HalfDuplex::new(audio::DEFAULT_TAIL);
        let parts = Parts {
            audio: Some(AudioPath {
                source: Box::new(Samples { samples, at: 0 }),
                stt,
                detector: Some(Box::new(LoudWake::default())),
                endpoint: EndpointConfig {
                    idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                    ..EndpointConfig::default()
                },
                audio_clock: Some(Utc::now()),
                duplex: Arc::clone(&duplex),
                muting: Muting::Skip,
            }),
            grammar: None,
            voice: None,
            ack_command: Some("none".into()),
            duplex,
            listening_to: "the room".into(),
        };
        let (set, _) =
            IntentSet::load_path(&settings.intents_dir, &Default::default()).expect("intents");
        let mut out = Vec::new();
        run_with(&settings, set, parts, &mut out).expect("run");
        let printed = String::from_utf8_lossy(&out);
        let events = events(&out);
        let heard: Vec<&str> = events
            .iter()
            .filter(|(k, _)| k == "heard")
            .filter_map(|(_, v)| v["text"].as_str())
            .collect();
        assert_eq!(heard, ["buy paper towels", "yes", "[PIN]"], "{printed}");
        assert!(
            events.iter().any(|(k, _)| k == "executed"),
            "the right PIN confirms: {printed}"
        );
        assert!(!printed.contains("4 3 2 1"), "{printed}");
    }

    #[test]
    fn a_command_without_the_wake_word_in_a_reply_window_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = test_settings(dir.path());
        let book = Arc::new(Codebook::default());
        let pause = |samples: &mut Vec<f32>| samples.resize(samples.len() + 24_000, 0.0);
        let mut samples = vec![0.0; 16_000];
        // "jarvis, buy paper towels": the wake word is the loud start.
        let mut command = book.tone("buy paper towels");
        for x in &mut command[..1_600] {
            *x *= 3.0;
        }
        samples.extend(command);
        pause(&mut samples);
        // Then, without the wake word (a television, say):
        for text in ["set a timer for 5 minutes", "buy aa batteries", "yes"] {
            samples.extend(book.tone(text));
            pause(&mut samples);
        }
        let stt = Arc::new(
            SttThread::start(Box::new(ToneReader(Arc::clone(&book)))).expect("stt thread"),
        );
        let duplex = HalfDuplex::new(audio::DEFAULT_TAIL);
        let parts = Parts {
            audio: Some(AudioPath {
                source: Box::new(Samples { samples, at: 0 }),
                stt,
                detector: Some(Box::new(LoudWake::default())),
                endpoint: EndpointConfig {
                    idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                    ..EndpointConfig::default()
                },
                audio_clock: Some(Utc::now()),
                duplex: Arc::clone(&duplex),
                muting: Muting::Skip,
            }),
            grammar: None,
            voice: None,
            ack_command: Some("none".into()),
            duplex,
            listening_to: "the room".into(),
        };
        let (set, _) =
            IntentSet::load_path(&settings.intents_dir, &Default::default()).expect("intents");
        let mut out = Vec::new();
        run_with(&settings, set, parts, &mut out).expect("run");
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        let heard: Vec<&str> = events
            .iter()
            .filter(|(k, _)| k == "heard")
            .filter_map(|(_, v)| v["text"].as_str())
            .collect();
        // Once the request has ended, nothing is listened to without the
        // wake word: "buy aa batteries" and "yes" are not even heard.
        assert_eq!(
            heard,
            ["buy paper towels", "set a timer for 5 minutes"],
            "{kinds:?}"
        );
        let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(count("confirm_request"), 1, "{kinds:?}");
        assert_eq!(count("superseded"), 1, "the request ends: {kinds:?}");
        assert_eq!(count("executed"), 0, "nothing runs: {kinds:?}");
        assert_eq!(count("failed"), 0, "nothing runs: {kinds:?}");
    }
}
