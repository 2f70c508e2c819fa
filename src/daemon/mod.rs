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
//! pipeline (SQLite) lives on its own "gate" thread and answers through
//! one-shot replies, at once: actions run on the executor thread, and their
//! outcomes come back to the gate thread as messages, which wakes the
//! coordinator to collect them (`Input::Executed`). So while a merchant's
//! webhook hangs, alarms still ring and commands are still heard. Every
//! producer has a shutdown path: they stop when the channel closes; on a
//! stop, the outcomes of actions still running are waited for and recorded.
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

use crate::actions::alarms::{self, AlarmError, Schedule};
use crate::actions::ring::{FallbackRinger, Ringer, configured_ringer};
use crate::audio::output::Player;
use crate::audio::{
    self, AudioSource, EndpointConfig, EndpointEvent, EndpointState, Endpointer, FRAME_SAMPLES,
    HalfDuplex, MicConfig, Playback,
};
use crate::config::{Listen, Settings, SpeechSettings, WakeWordSetting};
use crate::error::AppError;
use crate::gate::Utterance;
use crate::intent::IntentSet;
use crate::output::print_events;
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::stt::prompt::wake_prompt;
use crate::stt::{SttGrammar, SttOptions, SttThread, Transcript, WhisperTranscriber};
use crate::wakeword::{
    self,
    detector::{Detection, Detector, Outcome, WakeWord},
};
use std::sync::Arc;

mod gate_thread;
mod listener;
mod reload;
mod replay;
mod voice;

use gate_thread::*;
use listener::*;
use reload::*;
use voice::*;

pub use replay::{Clip, Replay};
pub use voice::default_tts;

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
    /// A wake word was heard (the acknowledgement gets ready).
    Wake(Detection),
    /// The user paused after the wake word: play the acknowledgement (see
    /// [`Acknowledger`]).
    Chime,
    /// Outcomes of actions came back to the gate thread and wait to be
    /// collected. Made by the coordinator when the gate thread wakes it
    /// (`GateThread::results_ready`), never queued behind other inputs.
    Executed,
}

/// Longest the loop sleeps without checking the schedule (another process,
/// e.g. `say`, may have set an alarm in the same database).
const MAX_SLEEP: StdDuration = StdDuration::from_secs(5);

/// How often a ringer is checked for having stopped by itself.
const RING_CHECK: StdDuration = StdDuration::from_millis(250);

/// Something voicegate says that is about no action.
fn say(text: String) -> Event {
    crate::pipeline::say(text, None)
}

/// Runs until SIGINT/SIGTERM, or until file input ends.
pub fn run(settings: &Settings, intents: IntentSet, out: &mut dyn Write) -> Result<i32, AppError> {
    // Inputs first: a missing microphone or model is an error before anything starts.
    let parts = Parts::open(settings, &intents)?;
    run_with(settings, intents, parts, out)
}

/// What the coordinator runs with: built from the settings by
/// [`Parts::open`], or by a test with fakes.
struct Parts {
    /// The audio path; `None`: typed lines on stdin.
    audio: Option<AudioPath>,
    /// The transcription grammar in use (rebuilt on reload), if any.
    grammar: Option<SttGrammar>,
    /// Says responses aloud; `None`: they are only logged.
    voice: Option<Box<dyn Voice>>,
    /// The acknowledgement command (`None`: the bundled chime; "none").
    ack: crate::config::Sound,
    /// Voicegate's own sounds, which the audio path does not listen to.
    duplex: Arc<HalfDuplex>,
    /// What is listened to, for the greeting ("the microphone for \"jarvis\"").
    listening_to: String,
}

impl Parts {
    /// Opens what `settings.speech` names: the wake word models (first: a
    /// missing one is the first error), the audio source, whisper, the
    /// speaker.
    fn open(settings: &Settings, intents: &IntentSet) -> Result<Parts, AppError> {
        let speech = &settings.speech;
        let wake_words = load_wake_words(&speech.wake_words)?;
        let stt_options = decoding_options(speech, intents, &wake_words);
        let duplex = HalfDuplex::new(speech.echo_tail);
        let wake = if speech.listen == Listen::Typed || wake_words.is_empty() {
            String::new()
        } else {
            let phrases: Vec<&str> = wake_words.iter().map(|w| w.phrase.as_str()).collect();
            format!(" for \"{}\"", phrases.join("\" or \""))
        };
        let source = match &speech.listen {
            Listen::Typed => "typed input on stdin",
            Listen::Audio(audio::AudioInput::Wav(_)) => "the audio file",
            Listen::Audio(audio::AudioInput::RawStdin) => "raw audio on stdin",
            Listen::Audio(audio::AudioInput::Microphone { .. }) => "the microphone",
        };
        let audio = if let Listen::Audio(input) = &speech.listen {
            let stt = start_stt(speech, stt_options.clone())?;
            let detector: Option<Box<dyn WakeDetector>> = if wake_words.is_empty() {
                None
            } else {
                Some(Box::new(Detector::new(&wake_words, Arc::clone(&stt))?))
            };
            let mic = matches!(input, audio::AudioInput::Microphone { .. });
            let source = match input {
                audio::AudioInput::Microphone { device } => {
                    let mut mic = audio::MicSource::open(device.as_deref(), MicConfig::default())
                        .map_err(|e| AppError::Usage(e.to_string()))?;
                    mic.mute_while_playing(Arc::clone(&duplex));
                    log_mic_status(&mut mic);
                    Box::new(mic) as Box<dyn AudioSource>
                }
                other => audio::open_input(other, speech.realtime, MicConfig::default())
                    .map_err(|e| AppError::Usage(e.to_string()))?,
            };
            let endpoint = endpoint_config(speech, detector.is_some());
            let file_input = matches!(input, audio::AudioInput::Wav(_));
            let audio_clock = (file_input && !speech.realtime).then(Utc::now);
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
        } else {
            None
        };
        Ok(Parts {
            grammar: audio.as_ref().and(stt_options.grammar),
            audio,
            voice: voice_for(&speech.tts),
            ack: speech.ack.clone(),
            duplex,
            listening_to: format!("{source}{wake}"),
        })
    }
}

/// Logs what happens to the microphone (lost, each reopen attempt, back)
/// on stderr from a thread of its own, so a microphone that disappears
/// mid-run is said, and its reopening seen, while the daemon goes on.
fn log_mic_status(mic: &mut audio::MicSource) {
    let Some(statuses) = mic.take_status_receiver() else {
        return;
    };
    let _ = thread::Builder::new()
        .name("voicegate-mic-status".into())
        .spawn(move || {
            for status in statuses {
                eprintln!("voicegate: microphone: {status}");
            }
        });
}

/// Loads whisper as `speech` says and starts its thread.
fn start_stt(speech: &SpeechSettings, options: SttOptions) -> Result<Arc<SttThread>, AppError> {
    let model = crate::stt::model::locate(speech.decoding.model.as_deref())?;
    let engine = WhisperTranscriber::load(&model, options)?;
    Ok(Arc::new(SttThread::start(Box::new(engine))?))
}

/// The endpointer's settings: after a wake word it keeps enough history
/// for the detector's check; without one (`--no-wake`) it is always armed.
fn endpoint_config(speech: &SpeechSettings, wake_word: bool) -> EndpointConfig {
    let mut endpoint = if wake_word {
        EndpointConfig {
            idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
            ..EndpointConfig::default()
        }
    } else {
        EndpointConfig::always_armed()
    };
    if let Some(ms) = speech.silence_end_ms {
        endpoint.silence_end_ms = ms;
    }
    endpoint
}

/// Loads the wake words `run` listens for. A missing model is an error
/// that says how to make one.
pub(crate) fn load_wake_words(settings: &[WakeWordSetting]) -> Result<Vec<WakeWord>, AppError> {
    settings
        .iter()
        .map(|w| {
            if !w.model.is_file() {
                return Err(AppError::Usage(format!(
                    "the wake word model {} is missing: make the default one with \
                     `scripts/make-wakeword-model.sh`, train one with `voicegate wakeword \
                     train PHRASE --out FILE`, or run with --no-wake",
                    w.model.display()
                )));
            }
            let mut word = WakeWord::from_model(&w.model, w.phrase.as_deref())?;
            word.sensitivity = w.sensitivity.clamp(0.0, 1.0);
            Ok(word)
        })
        .collect()
}

/// How whisper decodes commands here: with a wake word, every command's
/// audio starts with it, so the grammar lets a command start with any
/// wake phrase (as whisper spells it), and the vocabulary prompt, if any,
/// puts the first one before each sentence ([`wake_prompt`]).
pub(crate) fn decoding_options(
    speech: &SpeechSettings,
    intents: &IntentSet,
    wake_words: &[WakeWord],
) -> SttOptions {
    let lead_in: Vec<String> = wake_words
        .iter()
        .map(|w| {
            crate::stt::prompt::whisper_spelling(&w.phrase)
                .trim()
                .to_string()
        })
        .collect();
    let mut stt = speech.decoding.stt_options(intents, &lead_in);
    if let Some(word) = wake_words.first() {
        stt.prompt = wake_prompt(&stt.prompt, &word.phrase);
    }
    stt
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
    let (tx, rx) = mpsc::channel::<Input>(32);
    let Parts {
        audio,
        grammar,
        voice,
        ack,
        duplex,
        listening_to,
    } = parts;

    let audio_clock = audio.as_ref().and_then(|a| a.audio_clock);
    let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
    spawn_reload(
        settings.intents_dir.clone(),
        settings.intent_lists(),
        grammar,
        tx.clone(),
    )?;

    // Starting the pipeline loads the embedding model and trains the
    // fallback recogniser (seconds on a first start): off the runtime.
    let config = PipelineConfig::from_settings(settings);
    let pipeline = tokio::task::spawn_blocking(move || Pipeline::start(intents, config))
        .await
        .map_err(|e| {
            AppError::Output(std::io::Error::other(format!(
                "the pipeline did not start: {e}"
            )))
        })??;
    let mut coordinator = Coordinator {
        json: settings.json,
        gate: GateThread::start(pipeline)?,
        schedule: ScheduleHandle::open(settings.state_db()).await?,
        ringer: configured_ringer(
            settings.ring_command.as_deref(),
            Some(&duplex),
            settings.ring_command_audible,
        ),
        speaker: Speaker::start(voice, Arc::clone(&duplex)),
        acknowledger: Acknowledger::start(ack, Arc::clone(&duplex)),
        // Only the audio path listens for control messages.
        control: audio.is_some().then_some(control_tx),
        // The transcription thread, for the coordinator too (a reload
        // swaps its grammar); `None` with typed input.
        stt: audio.as_ref().map(|a| Arc::clone(&a.stt)),
        audio_clock,
        ringing: false,
        state: GateState::default(),
        gate_now: audio_clock,
        audio_waits: false,
    };
    coordinator.greet(&listening_to, out).await?;
    // Input starts after the greeting is queued, so that its playback is
    // seen by the audio thread from the first frame on.
    match audio {
        None => spawn_stdin_text(tx.clone())?,
        Some(path) => spawn_audio(path, tx.clone(), control_rx)?,
    }
    drop(tx);
    coordinator.run(rx, out).await
}

/// The coordinator's state and what it routes to. One method per [`Input`]
/// variant; none of them waits for anything slow (the gate thread answers
/// at once, the schedule's queries are quick and off the runtime).
struct Coordinator {
    /// JSON lines on stdout, or text.
    json: bool,
    gate: GateThread,
    schedule: ScheduleHandle,
    ringer: FallbackRinger,
    speaker: Speaker,
    acknowledger: Acknowledger,
    /// Tells the audio thread what is due next; `None` with typed input.
    control: Option<std_mpsc::SyncSender<AudioControl>>,
    stt: Option<Arc<SttThread>>,
    /// The audio clock's start for file input read faster than real time.
    audio_clock: Option<DateTime<Utc>>,
    /// An alarm or timer rings.
    ringing: bool,
    /// The gate's state after the last call: the deadline, a PIN awaited,
    /// jobs in flight.
    state: GateState,
    /// The gate's clock: audio time for fast file input, else the wall clock.
    gate_now: Option<DateTime<Utc>>,
    /// The audio thread waits to hear what is due next until the actions
    /// in flight are done (fast file input only: see `tell_audio`).
    audio_waits: bool,
}

impl Coordinator {
    /// Prints the events and queues what they say for the speaker.
    fn emit(&self, events: &[Event], out: &mut dyn Write) -> Result<(), AppError> {
        print_events(events, self.json, out)?;
        self.speaker.speak(events);
        Ok(())
    }

    /// Tells the audio thread what is due next (see `AudioControl`). File
    /// input read faster than real time would otherwise run ahead of a
    /// result still on its way: it waits until no action is in flight, so
    /// a replay gives its events in the same order every time.
    fn tell_audio(&mut self) {
        let Some(control) = &self.control else {
            return;
        };
        if self.audio_clock.is_some() && self.state.in_flight > 0 {
            self.audio_waits = true;
            return;
        }
        self.audio_waits = false;
        let _ = control.try_send(AudioControl::Expect(Expect::from_gate(self.state)));
    }

    /// The greeting, actions a previous run left unfinished, alarms missed
    /// while it was down.
    async fn greet(&mut self, listening_to: &str, out: &mut dyn Write) -> Result<(), AppError> {
        let now = Utc::now();
        let mut events = vec![say(format!("voicegate is listening to {listening_to}."))];
        events.extend(self.gate.call(Call::Recover(now)).await.0);
        let grace = alarms::START_GRACE;
        match self
            .schedule
            .with(move |s| s.missed_at_start(now, grace))
            .await
        {
            Ok(missed) => {
                for entry in missed {
                    events.push(say(alarms::missed_while_off(&entry, Local::now())));
                }
            }
            Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
        }
        self.emit(&events, out)
    }

    /// The loop: wall-clock work, then the next input, a result or a
    /// signal, until a stop.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        out: &mut dyn Write,
    ) -> Result<i32, AppError> {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(AppError::Output)?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(AppError::Output)?;
        let results_ready = Arc::clone(&self.gate.results_ready);
        loop {
            self.wall_clock(out).await?;
            let wait = self.wait().await;
            let input = tokio::select! {
                input = rx.recv() => input,
                () = results_ready.notified() => Some(Input::Executed),
                () = tokio::time::sleep(wait) => continue,
                _ = sigterm.recv() => None,
                _ = sigint.recv() => None,
            };
            // `None`: a stop signal (or every producer gone).
            let done = match input {
                None => Some(self.stop(out).await?),
                Some(input) => self.handle(input, out).await?,
            };
            if let Some(code) = done {
                return Ok(code);
            }
        }
    }

    /// Routes one input; `Some(code)` when the daemon is done.
    async fn handle(&mut self, input: Input, out: &mut dyn Write) -> Result<Option<i32>, AppError> {
        match input {
            Input::Utterance(utterance, at) => self.on_utterance(utterance, at, out).await?,
            Input::Tick(at) => self.on_tick(at, out).await?,
            Input::Ended(at) => return self.on_ended(at, out).await.map(Some),
            Input::Reload(set, grammar) => self.on_reload(set, grammar, out).await?,
            Input::ReloadFailed(errors) => {
                eprintln!(
                    "voicegate: the intent files have errors; still using the previous ones:\n{errors}"
                );
                self.emit(
                    &[say(
                        "The intent files have errors, so I kept the previous ones.".into(),
                    )],
                    out,
                )?;
            }
            Input::Notice(text) => eprintln!("voicegate: {text}"),
            Input::Chime => self.acknowledger.ack(),
            Input::Wake(detection) => {
                self.acknowledger.prepare();
                self.emit(
                    &[Event::Wake {
                        phrase: detection.phrase,
                        score: detection.score,
                    }],
                    out,
                )?;
            }
            Input::Executed => self.on_executed(out).await?,
        }
        Ok(None)
    }

    /// Wall-clock work: confirm expiry when live, and alarms that are due.
    async fn wall_clock(&mut self, out: &mut dyn Write) -> Result<(), AppError> {
        let now = Utc::now();
        let mut events = Vec::new();
        if self.audio_clock.is_none() && self.state.deadline.is_some_and(|d| now >= d) {
            let (ev, s) = self.gate.call(Call::Tick(now)).await;
            events.extend(ev);
            self.state = s;
            self.tell_audio();
        }
        match self.schedule.with(move |s| s.due(now)).await {
            Ok(fired) => {
                for entry in fired {
                    if let Err(e) = self.ringer.start(&entry.ring_text()) {
                        events.push(say(format!("(could not ring: {e})")));
                    }
                    self.ringing = true;
                    // A call also hands over results that came back
                    // meanwhile: they are said, not dropped.
                    let (ev, s) = self
                        .gate
                        .call(Call::Flag(crate::gate::Flag::AlarmRinging, true))
                        .await;
                    events.extend(ev);
                    self.state = s;
                    events.push(say(alarms::fired_message(&entry, Local::now())));
                }
            }
            Err(e) => events.push(say(format!("I could not read the alarm schedule: {e}"))),
        }
        self.emit(&events, out)
    }

    /// How long to sleep before the next wall-clock work.
    async fn wait(&mut self) -> StdDuration {
        let mut wait = MAX_SLEEP;
        if self.ringing {
            // A ring command that exits by itself stops muting the
            // microphone soon after.
            self.ringer.check();
            wait = wait.min(RING_CHECK);
        }
        let live_deadline = if self.audio_clock.is_none() {
            self.state.deadline
        } else {
            None
        };
        let next_alarm = self.schedule.with(|s| s.next_due()).await.ok().flatten();
        for d in [live_deadline, next_alarm].into_iter().flatten() {
            wait = wait.min((d - Utc::now()).to_std().unwrap_or_default());
        }
        wait
    }

    async fn on_utterance(
        &mut self,
        utterance: Utterance,
        at: Option<DateTime<Utc>>,
        out: &mut dyn Write,
    ) -> Result<(), AppError> {
        if at.is_some() {
            self.gate_now = at;
        }
        let when = at.unwrap_or_else(Utc::now);
        let mut events = Vec::new();
        if let Some(confidence) = utterance.confidence {
            // What is said while the gate waits for a PIN is the PIN: it
            // is never printed (the gate never keeps it).
            let text = if self.state.pin {
                crate::gate::PIN_REDACTED.to_string()
            } else {
                utterance.text.clone()
            };
            events.push(Event::Heard {
                text,
                confidence,
                backing: utterance.backing.clone(),
            });
        }
        let (handled, s) = self
            .gate
            .call(Call::Handle(Box::new(utterance), when))
            .await;
        events.extend(handled);
        self.state = s;
        // Spoken first: the speaker takes its playback before the audio
        // thread, told what is due next, reads on.
        self.emit(&events, out)?;
        self.tell_audio();
        self.quiet_if_nothing_rings(out).await
    }

    /// Stops the ringer once nothing rings any more ("stop" was said, or
    /// a result stopped it). The gate call hands over any results that
    /// came back meanwhile (the "stop" itself, when its executor finished
    /// first): they are said here, or they would be lost.
    async fn quiet_if_nothing_rings(&mut self, out: &mut dyn Write) -> Result<(), AppError> {
        if self.ringing
            && !self
                .schedule
                .with(Schedule::any_ringing)
                .await
                .unwrap_or(false)
        {
            self.ringer.stop();
            self.ringing = false;
            let (events, s) = self
                .gate
                .call(Call::Flag(crate::gate::Flag::AlarmRinging, false))
                .await;
            self.state = s;
            self.emit(&events, out)?;
        }
        Ok(())
    }

    /// Results came back from the executor: say them.
    async fn on_executed(&mut self, out: &mut dyn Write) -> Result<(), AppError> {
        let (events, s) = self.gate.call(Call::Collect).await;
        // An outcome may end with a question ("Which one should I
        // cancel?"): the audio thread must then take the answer without
        // the wake word.
        let asks = s.answer && !self.state.answer;
        self.state = s;
        self.emit(&events, out)?;
        if self.audio_waits || asks {
            self.tell_audio();
        }
        // A "stop" that silenced an alarm is done only now.
        self.quiet_if_nothing_rings(out).await
    }

    async fn on_tick(&mut self, at: DateTime<Utc>, out: &mut dyn Write) -> Result<(), AppError> {
        self.gate_now = Some(at);
        if self.state.deadline.is_some_and(|d| at >= d) {
            let (events, s) = self.gate.call(Call::Tick(at)).await;
            self.state = s;
            self.emit(&events, out)?;
            self.tell_audio();
        }
        Ok(())
    }

    /// After the file, time runs on: a pending confirmation expires.
    async fn on_ended(
        &mut self,
        at: Option<DateTime<Utc>>,
        out: &mut dyn Write,
    ) -> Result<i32, AppError> {
        let end = self.state.deadline.or(at).unwrap_or_else(Utc::now);
        let (mut events, _) = self.gate.call(Call::Tick(end)).await;
        events.extend(self.gate.call(Call::Shutdown(end)).await.0);
        self.ringer.stop();
        events.push(say("End of input.".into()));
        self.emit(&events, out)?;
        Ok(0)
    }

    /// Stops cleanly: a pending confirmation is recorded as expired, and
    /// the outcomes of actions still running are waited for and recorded.
    async fn stop(&mut self, out: &mut dyn Write) -> Result<i32, AppError> {
        let now = self.gate_now.unwrap_or_else(Utc::now);
        let (mut events, _) = self.gate.call(Call::Shutdown(now)).await;
        self.ringer.stop();
        events.push(say("voicegate stopped.".into()));
        self.emit(&events, out)?;
        Ok(0)
    }

    async fn on_reload(
        &mut self,
        set: Box<IntentSet>,
        grammar: Option<SttGrammar>,
        out: &mut dyn Write,
    ) -> Result<(), AppError> {
        let count = set.intents().len();
        let now = self.gate_now.unwrap_or_else(Utc::now);
        let (mut events, s) = self.gate.call(Call::Intents(set, now)).await;
        self.state = s;
        self.tell_audio();
        events.push(say(format!("Reloaded the intent files ({count} intents).")));
        if let (Some(stt), Some(grammar)) = (&self.stt, grammar) {
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
        self.emit(&events, out)
    }
}

/// The alarm schedule as the coordinator uses it: every query is SQLite,
/// which blocks, so it runs on tokio's blocking pool, never on the
/// coordinator's runtime thread.
struct ScheduleHandle(Arc<std::sync::Mutex<Schedule>>);

impl ScheduleHandle {
    async fn open(path: PathBuf) -> Result<ScheduleHandle, AppError> {
        let opened = tokio::task::spawn_blocking(move || Schedule::open(path))
            .await
            .map_err(|e| AppError::Usage(format!("the alarm schedule could not be opened: {e}")))?
            .map_err(crate::pipeline::PipelineError::from)?;
        Ok(ScheduleHandle(Arc::new(std::sync::Mutex::new(opened))))
    }

    /// Runs `query` on the schedule off the runtime. A query that cannot
    /// run (its thread panicked) is an error like any other.
    async fn with<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Schedule) -> Result<T, AlarmError> + Send + 'static,
    ) -> Result<T, AlarmError> {
        let schedule = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let schedule = schedule
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query(&schedule)
        })
        .await
        .unwrap_or_else(|e| Err(AlarmError::Unavailable(e.to_string())))
    }
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
        // (deadline, pin, answer) → expected, listen without the wake word,
        // decode freely.
        for (deadline, pin, answer, expect, reply, free) in [
            (None, false, false, Expect::Command, false, false),
            (Some(at(10)), false, false, Expect::Reply, true, false),
            (Some(at(10)), true, false, Expect::Pin, true, true),
            // A follow-up question: its answer is decoded without the
            // grammar, which leaves answers out.
            (Some(at(10)), false, true, Expect::Answer, true, true),
            // Nothing pending: no PIN or answer can be awaited.
            (None, true, false, Expect::Command, false, false),
            (None, false, true, Expect::Command, false, false),
        ] {
            let got = Expect::from_gate(GateState {
                deadline,
                pin,
                answer,
                in_flight: 0,
            });
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
            understanding: Default::default(),
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
                free: false,
                backed: None,
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
        // The wake word confirmed while speech goes on for a second (the
        // loud part in the middle of a burst: a command in the same
        // breath), then alone, followed by a pause (a loud burst alone).
        let mut samples = vec![0.0; ms(1_000)];
        samples.extend((0..ms(1_500)).map(|i| {
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
        let mut heard = Vec::new();
        runtime.block_on(async {
            loop {
                let input = tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                    .await
                    .expect("the audio thread answers in time");
                match input {
                    Some(Input::Utterance(..)) => {
                        // A slow answer (a loaded machine): the file is
                        // read ahead meanwhile, and those frames are
                        // behind no one, so the chime still comes.
                        std::thread::sleep(StdDuration::from_millis(800));
                        control_tx
                            .send(AudioControl::Expect(Expect::Command))
                            .expect("control")
                    }
                    Some(Input::Wake(_)) => heard.push("wake"),
                    Some(Input::Chime) => heard.push("chime"),
                    Some(Input::Ended(_)) | None => break,
                    Some(_) => {}
                }
            }
        });
        assert_eq!(
            heard,
            ["wake", "wake", "chime"],
            "a chime only after a pause"
        );
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
                    Some(Input::Wake(_)) => wakes += 1,
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
                free: false,
                backed: None,
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
            speech: SpeechSettings {
                tts: crate::config::Sound::Silent,
                ..SpeechSettings::default()
            },
            // The conversations here are about the audio path and the
            // gate; what the fallback makes of a sentence is tested in
            // tests/understanding.rs.
            understanding: crate::nlu::FallbackSettings {
                model: crate::nlu::FallbackModel::Off,
                ..Default::default()
            },
            wyoming: Default::default(),
            catalogue: crate::catalogue::Catalogue::example().expect("the example catalogue"),
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
            ack: crate::config::Sound::Silent,
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
        spawn_reload(
            dir.path().to_path_buf(),
            Default::default(),
            Some(template),
            tx,
        )
        .expect("reload thread");
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
        spawn_reload(dir.path().to_path_buf(), Default::default(), None, tx)
            .expect("reload thread");
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
    /// Runs the coordinator on tone-coded audio: `command` after the wake
    /// word (the loud start that `LoudWake` hears), then each of `then`
    /// without it, 1.5 s apart. Returns what it printed.
    fn woken_conversation(settings: &Settings, command: &str, then: &[&str]) -> Vec<u8> {
        let book = Arc::new(Codebook::default());
        let pause = |samples: &mut Vec<f32>| samples.resize(samples.len() + 24_000, 0.0);
        let mut samples = vec![0.0; 16_000];
        let mut spoken = book.tone(command);
        for x in &mut spoken[..1_600] {
            *x *= 3.0;
        }
        samples.extend(spoken);
        pause(&mut samples);
        for text in then {
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
            ack: crate::config::Sound::Silent,
            duplex,
            listening_to: "the room".into(),
        };
        let (set, _) =
            IntentSet::load_path(&settings.intents_dir, &Default::default()).expect("intents");
        let mut out = Vec::new();
        run_with(settings, set, parts, &mut out).expect("run");
        out
    }

    #[test]
    fn a_spoken_pin_is_heard_as_pin_and_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = test_settings(dir.path());
        settings.gate.pin = Some(crate::gate::PinHash::new("4321"));
        settings.gate.pin_kinds = vec![crate::request::ActionKind::PurchaseOrder];
        let out = woken_conversation(&settings, "buy paper towels", &["yes", "4 3 2 1"]);
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
    fn a_follow_up_question_is_answered_without_the_wake_word() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = test_settings(dir.path());
        let out = woken_conversation(&settings, "set a timer", &["10 minutes", "5 minutes"]);
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        let asked: Vec<&Value> = events
            .iter()
            .filter(|(k, _)| k == "ask")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(asked.len(), 1, "{kinds:?}");
        assert_eq!(asked[0]["intent"], "StartTimer");
        assert_eq!(asked[0]["slot"], "minutes");
        assert_eq!(asked[0]["text"], "For how long?");
        let executed: Vec<&Value> = events
            .iter()
            .filter(|(k, _)| k == "executed")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(executed.len(), 1, "{kinds:?}");
        assert_eq!(executed[0]["intent"], "StartTimer", "{kinds:?}");
        // Once answered, the window is closed: "five minutes" is not heard.
        let heard = kinds.iter().filter(|k| **k == "heard").count();
        assert_eq!(heard, 2, "{kinds:?}");
    }

    /// A question the action asks ("Which one should I cancel?") opens the
    /// reply window like the gate's own: the answer needs no wake word.
    #[test]
    fn which_timer_to_cancel_is_answered_without_the_wake_word() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = test_settings(dir.path());
        {
            let schedule = Schedule::open(settings.state_db()).expect("schedule");
            for minutes in [5, 10] {
                schedule
                    .start_timer(TimeDelta::minutes(minutes), None, Utc::now())
                    .expect("a timer");
            }
        }
        let out = woken_conversation(&settings, "cancel the timer", &["the 5 minute one"]);
        let events = events(&out);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        let asked: Vec<&Value> = events
            .iter()
            .filter(|(k, _)| k == "ask")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(asked.len(), 1, "{kinds:?}");
        assert_eq!(asked[0]["intent"], "CancelTimer");
        assert_eq!(asked[0]["slot"], "which");
        let done: Vec<&str> = events
            .iter()
            .filter(|(k, _)| k == "executed")
            .filter_map(|(_, v)| v["message"].as_str())
            .collect();
        assert_eq!(
            done,
            [
                "You have 2 timers: the 5 minute timer and the 10 minute timer. \
                 Which one should I cancel?",
                "Cancelled the 5 minute timer."
            ],
            "{kinds:?}"
        );
    }

    #[test]
    fn a_command_without_the_wake_word_in_a_reply_window_runs_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = test_settings(dir.path());
        let out = woken_conversation(
            &settings,
            "buy paper towels",
            &["set a timer for 5 minutes", "buy aa batteries", "yes"],
        );
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
