//! The listener: producers of [`Input`] that block — the audio thread
//! (source → [wake word →] endpointer → whisper) and typed lines on stdin.
//! The audio thread learns from the coordinator what the next utterance is
//! expected to be ([`AudioControl`], [`Expect`]).

use super::*;

pub(super) fn spawn_stdin_text(tx: mpsc::Sender<Input>) -> Result<(), AppError> {
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
pub(super) enum AudioControl {
    /// The next utterance is this.
    Expect(Expect),
}

/// What the next utterance is expected to be, from the gate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Expect {
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
    pub(super) fn from_gate(state: GateState) -> Expect {
        match state {
            GateState { deadline: None, .. } => Expect::Command,
            GateState { pin: true, .. } => Expect::Pin,
            GateState { pin: false, .. } => Expect::Reply,
        }
    }

    /// A reply is due: listen without the wake word.
    pub(super) fn is_reply(self) -> bool {
        self != Expect::Command
    }

    /// Decode the utterance without the grammar
    /// (`SttThread::transcribe_free`) instead of `SttThread::transcribe`.
    pub(super) fn decode_free(self) -> bool {
        self == Expect::Pin
    }
}

/// Transcribes one utterance on the transcription thread, constrained to
/// the grammar (if there is one) unless `expect` says otherwise.
pub(super) fn transcribe_for(
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
pub(super) const CONTROL_WAIT: StdDuration = StdDuration::from_secs(30);

/// The wake-word detector as the audio thread uses it (a trait, so that a
/// test can fire it where it wants).
pub(super) trait WakeDetector: Send {
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
pub(super) enum Muting {
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
pub(super) struct AudioPath {
    pub(super) source: Box<dyn AudioSource>,
    pub(super) stt: Arc<SttThread>,
    /// `None`: `--no-wake`, every utterance is addressed to voicegate.
    pub(super) detector: Option<Box<dyn WakeDetector>>,
    pub(super) endpoint: EndpointConfig,
    /// The start of the audio clock (file input read faster than real
    /// time), or `None`: the wall clock.
    pub(super) audio_clock: Option<DateTime<Utc>>,
    pub(super) duplex: Arc<HalfDuplex>,
    pub(super) muting: Muting,
}

/// Speech this recent (in samples) when the wake word is confirmed means
/// the user is already saying the command: no chime then (200 ms).
pub(super) const STILL_SPEAKING: u64 = 3_200;

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
pub(super) fn spawn_audio(
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
            let mut next_tick = u64::from(crate::audio::SAMPLE_RATE);
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
                audio_clock.map(|start| {
                    start
                        + TimeDelta::milliseconds(
                            (samples * 1000 / u64::from(crate::audio::SAMPLE_RATE)) as i64,
                        )
                })
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
                    silence_left += (missed.as_secs_f64() * f64::from(crate::audio::SAMPLE_RATE))
                        .round() as u64;
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
                            next_tick += u64::from(crate::audio::SAMPLE_RATE);
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
