//! The listener: producers of [`Input`] that block — the audio thread
//! (source → [wake word →] endpointer → whisper) and typed lines on stdin.
//!
//! The audio path is split in two so that its logic can be tested with
//! plain samples: [`Listener`] hears one frame at a time and says what to
//! tell the coordinator; the thread ([`spawn_audio`]) reads the source
//! ([`Capture`]: half-duplex muting, frames held while an answer is
//! awaited) and sends. The audio thread learns from the coordinator what
//! the next utterance is expected to be ([`AudioControl`], [`Expect`]).

use std::collections::VecDeque;

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
/// which hears nothing more until it comes (a live source is read on
/// meanwhile, and those frames heard after it), so that nothing is heard
/// with the gate's old state and file input read faster than real time
/// cannot run past a question; and whenever the gate's state changes
/// otherwise (a confirmation expired).
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
    /// The answer to a follow-up question ("For how long?"): listened for
    /// without the wake word, and decoded without the grammar, which
    /// leaves answers out (`intent::grammar`).
    Answer,
}

impl Expect {
    /// What the gate, in `state`, waits for.
    pub(super) fn from_gate(state: GateState) -> Expect {
        match state {
            GateState { deadline: None, .. } => Expect::Command,
            GateState { pin: true, .. } => Expect::Pin,
            GateState { answer: true, .. } => Expect::Answer,
            GateState { .. } => Expect::Reply,
        }
    }

    /// A reply is due: listen without the wake word.
    pub(super) fn is_reply(self) -> bool {
        self != Expect::Command
    }

    /// Decode the utterance without the grammar
    /// (`SttThread::transcribe_free`) instead of `SttThread::transcribe`.
    pub(super) fn decode_free(self) -> bool {
        matches!(self, Expect::Pin | Expect::Answer)
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

/// The chime after the wake word (see [`Acknowledger`]), in samples of
/// audio: it is due once the user has been silent this long after the
/// word (300 ms)...
pub(super) const CHIME_PAUSE: u64 = 4_800;
/// ... unless speech went on this long after the detection (400 ms: more
/// than the word's own tail, so a command said in the same breath)...
pub(super) const WORD_TAIL: u64 = 6_400;
/// ... and only while the listener is no more than this far behind the
/// live microphone (300 ms: the pause it heard is still going on; the
/// microphone is muted from when the chime plays, not from the pause)...
pub(super) const CHIME_BEHIND: u64 = 4_800;
/// ... and no later than this after the detection (2 s): a chime long
/// after the word would be heard as an answer to something else.
pub(super) const CHIME_WITHIN: u64 = 32_000;

/// The audio path's logic, fed one frame at a time: [wake word →]
/// endpointer → whisper → what the coordinator is told. It does no I/O
/// of its own (whisper runs on the transcription thread, which it waits
/// for), so a test drives it with plain samples; the audio thread
/// ([`spawn_audio`]) reads the source and sends what it returns.
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
/// **Answers.** After it hands over an utterance it is
/// [`awaiting_answer`](Listener::awaiting_answer) until told what is due
/// next ([`Listener::expect`]) or that no answer came
/// ([`Listener::no_answer`]): the next frames must be heard with the gate's
/// new state, so the caller holds them back until then.
pub(super) struct Listener {
    stt: Arc<SttThread>,
    /// `None`: `--no-wake`, every utterance is addressed to voicegate.
    detector: Option<Box<dyn WakeDetector>>,
    endpointer: Endpointer,
    /// The wake phrases, cut from transcripts.
    phrases: Vec<String>,
    /// The start of the audio clock, or `None`: the wall clock.
    audio_clock: Option<DateTime<Utc>>,
    /// Samples fed so far.
    read: u64,
    /// When the next `Input::Tick` is due, in samples (audio clock only).
    next_tick: u64,
    /// Awake: the wake word was heard (its score), a command is due.
    awake: Option<f32>,
    /// What the gate waits for: a read-back's answer or a PIN is listened
    /// for without the wake word (a PIN without the grammar).
    expect: Expect,
    /// The end of the last frame with speech in it.
    last_voiced: Option<u64>,
    /// A chime may be due: when the wake word was detected (samples).
    chime: Option<u64>,
    /// How far behind the live source the frames being fed are (samples;
    /// set by the audio thread).
    behind: u64,
    /// An utterance was handed over; the coordinator has not answered yet.
    awaiting: bool,
    /// The frame being worked on (a short one padded with silence).
    frame: Vec<f32>,
}

impl Listener {
    /// A listener expecting a command, with nothing heard yet.
    pub(super) fn new(
        stt: Arc<SttThread>,
        detector: Option<Box<dyn WakeDetector>>,
        endpoint: EndpointConfig,
        audio_clock: Option<DateTime<Utc>>,
    ) -> Listener {
        Listener {
            phrases: detector.as_ref().map(|d| d.phrases()).unwrap_or_default(),
            stt,
            detector,
            endpointer: Endpointer::new(endpoint),
            audio_clock,
            read: 0,
            next_tick: u64::from(crate::audio::SAMPLE_RATE),
            awake: None,
            expect: Expect::Command,
            last_voiced: None,
            chime: None,
            behind: 0,
            awaiting: false,
            frame: Vec::with_capacity(FRAME_SAMPLES),
        }
    }

    /// What is due next, from the coordinator: its answer to an
    /// utterance, or a change of the gate's state (a confirmation expired).
    pub(super) fn expect(&mut self, next: Expect) {
        self.expect = next;
        self.awaiting = false;
    }

    /// The coordinator did not answer an utterance in time: listen on as
    /// before.
    pub(super) fn no_answer(&mut self) {
        self.awaiting = false;
    }

    /// The frames fed next are this many samples behind the live source
    /// (what waits in its buffer and in the capture's held frames).
    pub(super) fn behind(&mut self, samples: u64) {
        self.behind = samples;
    }

    /// An utterance was handed over and the coordinator has not said what
    /// is due next: frames heard now must wait (see [`Listener`]).
    pub(super) fn awaiting_answer(&self) -> bool {
        self.awaiting
    }

    /// Hears `samples` (16 kHz mono), [`FRAME_SAMPLES`] at a time; a
    /// shorter piece at the end is padded with silence (the end of the
    /// input). Returns what to tell the coordinator, in order.
    pub(super) fn on_frame(&mut self, samples: &[f32]) -> Vec<Input> {
        let mut out = Vec::new();
        for chunk in samples.chunks(FRAME_SAMPLES) {
            self.step(chunk, &mut out);
        }
        out
    }

    /// The input ended: a command still being spoken is complete. Returns
    /// it, if there is one; then [`Listener::ended`].
    pub(super) fn finish(&mut self) -> Vec<Input> {
        let mut out = Vec::new();
        if let Some(EndpointEvent::Utterance(u)) = self.endpointer.finish()
            && let Ok(Some(heard)) = self.transcribe(u.samples)
        {
            self.hand_over(heard, &mut out);
        }
        out
    }

    /// The last thing to tell the coordinator: the input ended (at this
    /// audio time).
    pub(super) fn ended(&self) -> Input {
        Input::Ended(self.at(self.read))
    }

    /// One frame (at most [`FRAME_SAMPLES`]).
    fn step(&mut self, chunk: &[f32], out: &mut Vec<Input>) {
        if self.expect.is_reply() && self.endpointer.state() == EndpointState::Idle {
            self.endpointer.arm();
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(chunk);
        frame.resize(FRAME_SAMPLES, 0.0);
        self.read += chunk.len() as u64;
        // Also in a reply window: a new command needs the wake word.
        if self.awake.is_none() {
            self.wake(&frame, out);
        }
        let event = self.endpointer.push(&frame);
        self.frame = frame;
        if self.endpointer.last_frame().is_some_and(|l| l.continues) {
            self.last_voiced = Some(self.read);
        }
        self.chime_if_paused(out);
        match event {
            Some(EndpointEvent::Utterance(u)) => self.utterance(u.samples, out),
            Some(EndpointEvent::NoSpeech) => self.no_speech(out),
            _ => self.tick(out),
        }
    }

    /// Feeds the wake-word detector, if there is one.
    fn wake(&mut self, frame: &[f32], out: &mut Vec<Input>) {
        let Some(detector) = self.detector.as_mut() else {
            return;
        };
        match detector.push(frame) {
            Ok(Outcome::Detected(detection)) => {
                self.awake = Some(detection.score);
                // The command starts with the wake word (cut from the
                // transcript later), so nothing said in the same breath
                // is lost.
                self.endpointer.arm_since(detection.window_samples);
                // A chime would cut a command said in the same breath (the
                // microphone is muted while it plays): only once the user
                // has paused.
                self.chime = Some(self.read);
                out.push(Input::Wake(detection));
            }
            Ok(_) => {}
            Err(e) => out.push(Input::Notice(format!("wake word: {e}"))),
        }
    }

    /// Asks for the chime once the user has paused after the wake word
    /// (see the constants above), or forgets it.
    fn chime_if_paused(&mut self, out: &mut Vec<Input>) {
        let Some(woke) = self.chime else { return };
        let spoke_on = self.last_voiced.map_or(0, |end| end.saturating_sub(woke));
        if spoke_on > WORD_TAIL || self.read.saturating_sub(woke) > CHIME_WITHIN {
            self.chime = None;
            return;
        }
        let paused = self
            .last_voiced
            .is_none_or(|end| self.read.saturating_sub(end) >= CHIME_PAUSE);
        if paused && self.behind <= CHIME_BEHIND {
            self.chime = None;
            out.push(Input::Chime);
        }
    }

    /// The endpointer gave up waiting for speech.
    fn no_speech(&mut self, out: &mut Vec<Input>) {
        self.chime = None;
        if self.awake.take().is_some() && !self.expect.is_reply() {
            out.push(Input::Notice("woke, but no command followed".into()));
        }
        if let Some(d) = self.detector.as_mut() {
            d.reset();
        }
    }

    /// Audio time passed (file input read faster than real time): a tick
    /// each second, so the gate's deadlines run on audio time.
    fn tick(&mut self, out: &mut Vec<Input>) {
        if self.audio_clock.is_some() && self.read >= self.next_tick {
            self.next_tick += u64::from(crate::audio::SAMPLE_RATE);
            if let Some(when) = self.at(self.read) {
                out.push(Input::Tick(when));
            }
        }
    }

    /// The endpointer closed an utterance.
    fn utterance(&mut self, samples: Vec<f32>, out: &mut Vec<Input>) {
        match self.transcribe(samples) {
            Ok(Some(heard)) => {
                self.hand_over(heard, out);
                if let Some(d) = self.detector.as_mut() {
                    d.reset();
                }
            }
            Ok(None) => {
                // Only the wake word so far (or nothing intelligible):
                // still awake, the command may follow.
                if self.awake.is_some() || self.expect.is_reply() {
                    self.endpointer.arm();
                }
            }
            Err(notice) => {
                self.awake = None;
                out.push(Input::Notice(notice));
            }
        }
    }

    /// Transcribes one utterance; `None` if nothing was said (only the
    /// wake phrase, or nothing whisper could write down).
    fn transcribe(&self, samples: Vec<f32>) -> Result<Option<Transcript>, String> {
        let mut t = transcribe_for(&self.stt, self.expect, samples)
            .map_err(|e| format!("transcription: {e}"))?;
        for phrase in &self.phrases {
            t.text = wakeword::strip_wake_phrase(&t.text, phrase);
        }
        Ok((!t.text.is_empty()).then_some(t))
    }

    /// Hands a transcript to the coordinator; its answer is awaited. A
    /// backed reading goes with its backing: the gate decides where the
    /// free reading's confidence may stand (never for a "yes").
    fn hand_over(&mut self, heard: Transcript, out: &mut Vec<Input>) {
        self.chime = None;
        let wake_score = self.awake.take();
        let utterance = Utterance {
            text: heard.text,
            confidence: Some(heard.confidence),
            wake_score,
            addressed: self.detector.is_none() || wake_score.is_some(),
            backing: heard.backed,
        };
        out.push(Input::Utterance(utterance, self.at(self.read)));
        self.awaiting = true;
    }

    /// The audio time after `samples`, or `None` on the wall clock.
    fn at(&self, samples: u64) -> Option<DateTime<Utc>> {
        self.audio_clock.map(|start| {
            start
                + TimeDelta::milliseconds(
                    (samples * 1000 / u64::from(crate::audio::SAMPLE_RATE)) as i64,
                )
        })
    }
}

/// The most frames the audio thread holds back while the coordinator
/// decides: [`CONTROL_WAIT`] of audio. A live source delivers no more
/// than that before the wait runs out; only a source read faster than
/// real time (unpaced PCM on stdin) reaches it, and is then left unread
/// until the answer comes (a pipe keeps what follows).
const MAX_HELD: usize =
    (CONTROL_WAIT.as_secs() as usize * crate::audio::SAMPLE_RATE as usize) / FRAME_SAMPLES;

/// Why the source gives no more frames.
#[derive(Debug, Clone)]
enum End {
    /// Its end.
    Eof,
    /// It failed: the notice to log.
    Failed(String),
}

/// The coordinator's answer to an utterance.
enum Answer {
    /// What is due next.
    Next(Expect),
    /// None in time ([`CONTROL_WAIT`]).
    Late,
    /// The coordinator is gone.
    Gone,
}

/// The source as the audio thread reads it: frames with voicegate's own
/// sounds silenced ([`Muting`]), and the frames captured while the
/// coordinator decided, held until its answer.
struct Capture {
    source: Box<dyn AudioSource>,
    duplex: Arc<HalfDuplex>,
    muting: Muting,
    /// Half-duplex with input read faster than real time: what has been
    /// played so far, and samples still to silence.
    played: crate::audio::duplex::Mark,
    silence_left: u64,
    /// Frames captured while awaiting an answer, oldest first: they go to
    /// the listener before anything read later.
    held: VecDeque<Vec<f32>>,
    /// The source gave no more (held frames still go first).
    end: Option<End>,
}

impl Capture {
    /// A capture of `source`; with [`Muting::Skip`] it waits first until
    /// the sounds playing now (the greeting) are over: they are not part
    /// of the file's recording.
    fn start(source: Box<dyn AudioSource>, duplex: Arc<HalfDuplex>, muting: Muting) -> Capture {
        let mut played = duplex.mark();
        if muting == Muting::Skip {
            duplex.wait_idle(&mut played);
        }
        Capture {
            source,
            duplex,
            muting,
            played,
            silence_left: 0,
            held: VecDeque::new(),
            end: None,
        }
    }

    /// How far the next frame is behind the live source, in samples: the
    /// frames held back and what waits in the source. Nothing, for a source
    /// that is not live: frames of a file read ahead while the coordinator
    /// decided are behind no one.
    fn behind(&self) -> u64 {
        if !self.source.is_live() {
            return 0;
        }
        let held: usize = self.held.iter().map(Vec::len).sum();
        held as u64 + self.source.backlog()
    }

    /// The next frame for the listener into `frame`: a held one first,
    /// then the source. Shorter than [`FRAME_SAMPLES`] only at the end.
    fn next(&mut self, frame: &mut Vec<f32>) -> Result<(), End> {
        if let Some(held) = self.held.pop_front() {
            *frame = held;
            return Ok(());
        }
        if let Some(end) = &self.end {
            return Err(end.clone());
        }
        self.read(frame)
            .inspect_err(|end| self.end = Some(end.clone()))
    }

    /// Reads a frame from the source and silences what voicegate's own
    /// sounds cover.
    fn read(&mut self, frame: &mut Vec<f32>) -> Result<(), End> {
        if self.muting == Muting::Skip {
            let missed = self.duplex.wait_idle(&mut self.played);
            self.silence_left +=
                (missed.as_secs_f64() * f64::from(crate::audio::SAMPLE_RATE)).round() as u64;
        }
        frame.resize(FRAME_SAMPLES, 0.0);
        let n = match audio::read_full(&mut self.source, frame) {
            Ok(0) => return Err(End::Eof),
            Ok(n) => n,
            Err(e) => return Err(End::Failed(format!("audio input: {e}"))),
        };
        frame.truncate(n);
        match self.muting {
            Muting::AtSource => {}
            Muting::AtRead => {
                if self.duplex.muted_at(Instant::now()) {
                    frame.fill(0.0);
                }
            }
            Muting::Skip => {
                let k = self.silence_left.min(n as u64);
                frame[..k as usize].fill(0.0);
                self.silence_left -= k;
            }
        }
        Ok(())
    }

    /// Waits for the coordinator's answer to an utterance, up to
    /// [`CONTROL_WAIT`]. A live source goes on being read meanwhile, into
    /// the held frames (up to [`MAX_HELD`]): a microphone's ring buffer
    /// must not overrun, and what the user says while the gate decides is
    /// heard once the answer is in. Input read faster than real time
    /// ([`Muting::Skip`]) is not read on: nothing is lost by waiting, and
    /// its audio clock and the silence it owes the read-back need the
    /// answer (and the read-back's playback) first.
    fn await_answer(&mut self, control: &std_mpsc::Receiver<AudioControl>) -> Answer {
        let deadline = Instant::now() + CONTROL_WAIT;
        loop {
            let read_on =
                self.muting != Muting::Skip && self.end.is_none() && self.held.len() < MAX_HELD;
            let received = if read_on {
                control.try_recv().map_err(|e| match e {
                    std_mpsc::TryRecvError::Empty => None,
                    std_mpsc::TryRecvError::Disconnected => Some(Answer::Gone),
                })
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                control.recv_timeout(left).map_err(|e| match e {
                    std_mpsc::RecvTimeoutError::Timeout => Some(Answer::Late),
                    std_mpsc::RecvTimeoutError::Disconnected => Some(Answer::Gone),
                })
            };
            match received {
                Ok(AudioControl::Expect(next)) => return Answer::Next(next),
                Err(Some(answer)) => return answer,
                Err(None) if Instant::now() >= deadline => return Answer::Late,
                Err(None) => {}
            }
            let mut frame = Vec::with_capacity(FRAME_SAMPLES);
            match self.read(&mut frame) {
                Ok(()) => self.held.push_back(frame),
                Err(end) => self.end = Some(end),
            }
        }
    }
}

/// Starts the audio thread: reads a frame → [`Listener::on_frame`] →
/// sends what it says; after an utterance, captures on while awaiting
/// the coordinator's answer ([`Capture::await_answer`]), then hears
/// those frames. Other control messages are applied between frames.
///
/// **Half-duplex.** Audio captured while voicegate makes a sound is
/// silence to the listener (see [`Muting`]).
pub(super) fn spawn_audio(
    path: AudioPath,
    tx: mpsc::Sender<Input>,
    control: std_mpsc::Receiver<AudioControl>,
) -> Result<(), AppError> {
    let AudioPath {
        source,
        stt,
        detector,
        endpoint,
        audio_clock,
        duplex,
        muting,
    } = path;
    thread::Builder::new()
        .name("voicegate-audio".into())
        .spawn(move || {
            let listener = Listener::new(stt, detector, endpoint, audio_clock);
            let capture = Capture::start(source, duplex, muting);
            listen(listener, capture, &tx, &control);
        })
        .map_err(AppError::Output)?;
    Ok(())
}

/// The audio thread's loop, until the input ends or the coordinator is
/// gone.
fn listen(
    mut listener: Listener,
    mut capture: Capture,
    tx: &mpsc::Sender<Input>,
    control: &std_mpsc::Receiver<AudioControl>,
) {
    let mut frame = Vec::with_capacity(FRAME_SAMPLES);
    loop {
        while let Ok(AudioControl::Expect(next)) = control.try_recv() {
            listener.expect(next);
        }
        match capture.next(&mut frame) {
            Ok(()) => {}
            Err(End::Eof) => break,
            Err(End::Failed(notice)) => {
                let _ = tx.blocking_send(Input::Notice(notice));
                break;
            }
        }
        listener.behind(capture.behind());
        let heard = listener.on_frame(&frame);
        if !send(heard, &mut listener, &mut capture, tx, control) {
            return;
        }
    }
    let heard = listener.finish();
    if send(heard, &mut listener, &mut capture, tx, control) {
        let _ = tx.blocking_send(listener.ended());
    }
}

/// Sends what the listener heard; if that handed over an utterance, waits
/// for the answer and tells the listener. False: the coordinator is gone.
fn send(
    heard: Vec<Input>,
    listener: &mut Listener,
    capture: &mut Capture,
    tx: &mpsc::Sender<Input>,
    control: &std_mpsc::Receiver<AudioControl>,
) -> bool {
    for input in heard {
        if tx.blocking_send(input).is_err() {
            return false;
        }
    }
    if listener.awaiting_answer() {
        match capture.await_answer(control) {
            Answer::Next(next) => listener.expect(next),
            Answer::Late => listener.no_answer(),
            Answer::Gone => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioError;
    use crate::stt::{SttError, Transcriber};

    /// Writes which call decoded each utterance ("grammar" or "free").
    /// Every reading is one a near free reading backed: 0.9 sure, 0.3 by
    /// the grammar alone.
    struct Fake;

    impl Fake {
        fn answer(call: &str) -> Result<Transcript, SttError> {
            Ok(Transcript {
                text: format!("decoded by {call}"),
                confidence: 0.9,
                audio_secs: 1.0,
                decode_secs: 0.0,
                audio_ctx: 1500,
                retried: false,
                free: false,
                backed: Some(crate::stt::Backing {
                    text: "decoded freely".into(),
                    own_confidence: 0.3,
                }),
            })
        }
    }

    impl Transcriber for Fake {
        fn transcribe(&mut self, _samples: &[f32]) -> Result<Transcript, SttError> {
            Fake::answer("grammar")
        }

        fn transcribe_free(&mut self, _samples: &[f32]) -> Result<Transcript, SttError> {
            Fake::answer("free")
        }

        fn phrase_logprob(&mut self, _samples: &[f32], _phrase: &str) -> Result<f32, SttError> {
            Ok(0.0)
        }
    }

    fn stt() -> Arc<SttThread> {
        Arc::new(SttThread::start(Box::new(Fake)).expect("stt thread"))
    }

    /// A wake word "heard" in any frame with a sample louder than 0.3
    /// (stage 1 needs real speech; these tests are about what the
    /// listener does with a detection).
    struct LoudWake;

    impl WakeDetector for LoudWake {
        fn push(&mut self, frame: &[f32]) -> Result<Outcome, wakeword::WakewordError> {
            if !frame.iter().any(|x| x.abs() > 0.3) {
                return Ok(Outcome::Nothing);
            }
            Ok(Outcome::Detected(Detection {
                phrase: "jarvis".into(),
                stage1_score: 0.9,
                logprob: -0.1,
                score: 0.9,
                at_sample: 0,
                window_samples: 9_600,
            }))
        }

        fn reset(&mut self) {}

        fn phrases(&self) -> Vec<String> {
            vec!["jarvis".into()]
        }
    }

    fn ms(n: usize) -> usize {
        n * 16
    }

    /// `n` ms of silence.
    fn silence(n: usize) -> Vec<f32> {
        vec![0.0; ms(n)]
    }

    /// An 800 ms tone (440 Hz, -20 dBFS: speech to the endpointer); if
    /// `wake`, its first 100 ms are loud (the wake word to [`LoudWake`]).
    fn burst(wake: bool) -> Vec<f32> {
        let amp = 0.1 * 2f32.sqrt();
        (0..ms(800))
            .map(|i| {
                let gain = if wake && i < ms(100) { 3.0 } else { 1.0 };
                gain * amp * (std::f32::consts::TAU * 440.0 * i as f32 / 16_000.0).sin()
            })
            .collect()
    }

    fn listener(wake: bool) -> Listener {
        let (detector, endpoint) = if wake {
            let endpoint = EndpointConfig {
                idle_history_ms: wakeword::detector::VERIFY_WINDOW_MS + 200,
                ..EndpointConfig::default()
            };
            (Some(Box::new(LoudWake) as Box<dyn WakeDetector>), endpoint)
        } else {
            (None, EndpointConfig::always_armed())
        };
        Listener::new(stt(), detector, endpoint, None)
    }

    /// What the listener says about `samples`, fed in frames, in short.
    fn hear(listener: &mut Listener, samples: &[f32]) -> Vec<String> {
        samples
            .chunks(FRAME_SAMPLES)
            .flat_map(|frame| listener.on_frame(frame))
            .map(|input| match input {
                Input::Utterance(u, _) => format!(
                    "{} (addressed: {}, wake score: {})",
                    u.text,
                    u.addressed,
                    u.wake_score.is_some()
                ),
                Input::Wake(d) => format!("wake {}", d.phrase),
                Input::Chime => "chime".to_string(),
                Input::Notice(n) => format!("notice: {n}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_wake_word_then_a_command_is_handed_over() {
        let mut listener = listener(true);
        let samples = [silence(1_000), burst(true), silence(1_500)].concat();
        assert_eq!(
            hear(&mut listener, &samples),
            [
                "wake jarvis",
                "decoded by grammar (addressed: true, wake score: true)"
            ]
        );
        assert!(listener.awaiting_answer(), "the coordinator must answer");
        listener.expect(Expect::Command);
        assert!(!listener.awaiting_answer());
    }

    /// The wake word alone: 200 ms, its first 100 ms loud.
    fn word() -> Vec<f32> {
        burst(true)[..ms(200)].to_vec()
    }

    /// The inputs, in short, with the sample each came at.
    fn timed(listener: &mut Listener, samples: &[f32]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for (i, frame) in samples.chunks(FRAME_SAMPLES).enumerate() {
            for input in listener.on_frame(frame) {
                let name = match input {
                    Input::Wake(_) => "wake".to_string(),
                    Input::Chime => "chime".to_string(),
                    other => format!("{other:?}"),
                };
                out.push((name, (i + 1) * FRAME_SAMPLES));
            }
        }
        out
    }

    #[test]
    fn the_chime_waits_for_a_pause_and_for_the_listener_to_catch_up() {
        // After a pause of 300 ms.
        let mut live = listener(true);
        let samples = [silence(1_000), word(), silence(1_000)].concat();
        let heard = timed(&mut live, &samples);
        let (woke, chimed) = (heard[0].1, heard[1].1);
        assert_eq!((&heard[0].0[..], &heard[1].0[..]), ("wake", "chime"));
        let pause = chimed - (ms(1_000) + ms(200));
        assert!(
            (ms(300)..ms(400)).contains(&pause),
            "chimed {} ms after the word",
            pause / 16
        );
        assert!(chimed > woke);

        // A listener 1 s behind the microphone waits; once it has caught
        // up (and the pause goes on) it chimes. (Before the utterance of
        // the word alone ends, after 600 ms.)
        let mut behind = listener(true);
        behind.behind(ms(1_000) as u64);
        let heard = timed(
            &mut behind,
            &[silence(1_000), word(), silence(450)].concat(),
        );
        assert_eq!(heard.len(), 1, "{heard:?}");
        behind.behind(0);
        assert_eq!(hear(&mut behind, &silence(60)), ["chime"]);
    }

    #[test]
    fn silence_and_speech_without_the_wake_word_say_nothing() {
        let mut listener = listener(true);
        let samples = [silence(3_000), burst(false), silence(6_000)].concat();
        assert!(hear(&mut listener, &samples).is_empty());
        assert!(listener.finish().is_empty());
        assert!(!listener.awaiting_answer());
    }

    #[test]
    fn in_a_reply_window_no_wake_word_is_needed_but_nothing_is_addressed() {
        let mut listener = listener(true);
        listener.expect(Expect::Reply);
        let samples = [silence(1_000), burst(false), silence(1_500)].concat();
        assert_eq!(
            hear(&mut listener, &samples),
            ["decoded by grammar (addressed: false, wake score: false)"]
        );
        // A PIN is decoded without the grammar; the wake word still
        // addresses a command.
        listener.expect(Expect::Pin);
        assert_eq!(
            hear(&mut listener, &samples),
            ["decoded by free (addressed: false, wake score: false)"]
        );
        listener.expect(Expect::Reply);
        let samples = [silence(1_000), burst(true), silence(1_500)].concat();
        assert_eq!(
            hear(&mut listener, &samples),
            [
                "wake jarvis",
                "decoded by grammar (addressed: true, wake score: true)"
            ]
        );
    }

    #[test]
    fn a_backed_reading_goes_to_the_gate_with_its_backing() {
        // The gate, not the listener, decides where the free reading's
        // confidence stands (tests/data/gate/cases.yaml): the listener
        // hands over both, for a command and a reply alike.
        let samples = [silence(1_000), burst(false), silence(1_500)].concat();
        let heard = |listener: &mut Listener| -> Vec<(Option<f32>, Option<f32>)> {
            samples
                .chunks(FRAME_SAMPLES)
                .flat_map(|frame| listener.on_frame(frame))
                .filter_map(|input| match input {
                    Input::Utterance(u, _) => {
                        Some((u.confidence, u.backing.map(|b| b.own_confidence)))
                    }
                    _ => None,
                })
                .collect()
        };
        let mut listener = listener(false);
        assert_eq!(heard(&mut listener), [(Some(0.9), Some(0.3))]);
        listener.expect(Expect::Reply);
        assert_eq!(heard(&mut listener), [(Some(0.9), Some(0.3))]);
    }

    #[test]
    fn a_command_still_spoken_when_the_input_ends_is_heard() {
        let mut listener = listener(false);
        let samples = [silence(1_000), burst(false)].concat();
        assert!(hear(&mut listener, &samples).is_empty());
        let last = listener.finish();
        assert!(
            matches!(&last[..], [Input::Utterance(u, _)] if u.addressed),
            "{last:?}"
        );
    }

    /// A microphone in memory: `samples` are captured at `SPEED` × real
    /// time from the first read, into a ring of `RING` samples; a reader
    /// that falls further behind loses the oldest (an overrun), as with
    /// the capture callback's ring buffer.
    struct Live {
        samples: Vec<f32>,
        start: Option<Instant>,
        at: usize,
    }

    impl Live {
        const SPEED: f64 = 4.0;
        /// 4 s of audio (1 s of the test's time).
        const RING: usize = 64_000;
    }

    impl AudioSource for Live {
        fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
            let start = *self.start.get_or_insert_with(Instant::now);
            loop {
                if self.at >= self.samples.len() {
                    return Ok(0);
                }
                let captured = (start.elapsed().as_secs_f64() * 16_000.0 * Self::SPEED) as usize;
                let captured = captured.min(self.samples.len());
                self.at = self.at.max(captured.saturating_sub(Self::RING));
                if captured > self.at {
                    let n = out.len().min(captured - self.at);
                    out[..n].copy_from_slice(&self.samples[self.at..self.at + n]);
                    self.at += n;
                    return Ok(n);
                }
                std::thread::sleep(StdDuration::from_millis(2));
            }
        }

        fn is_live(&self) -> bool {
            true
        }
    }

    /// The next input from the audio thread (which must come in time).
    fn recv(rx: &mut mpsc::Receiver<Input>) -> Option<Input> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::time::timeout(StdDuration::from_secs(20), rx.recv())
                .await
                .expect("the audio thread answers in time")
        })
    }

    /// Issue 14: while the gate decides, the audio thread reads on, so a
    /// live microphone's ring buffer does not overrun, and what was said
    /// meanwhile is heard once the answer is in, with the answer's rules.
    #[test]
    fn what_is_said_while_the_gate_decides_is_heard_after_its_answer() {
        // A command; while the coordinator takes 3 s (12 s of audio, more
        // than the ring holds) to answer "a PIN is due", the PIN is said.
        let samples = [
            silence(1_000),
            burst(false),
            silence(1_500),
            burst(false),
            silence(14_000),
        ]
        .concat();
        let (tx, mut rx) = mpsc::channel::<Input>(8);
        let (control_tx, control_rx) = std_mpsc::sync_channel::<AudioControl>(8);
        let path = AudioPath {
            source: Box::new(Live {
                samples,
                start: None,
                at: 0,
            }),
            stt: stt(),
            detector: None,
            endpoint: EndpointConfig::always_armed(),
            audio_clock: None,
            duplex: HalfDuplex::new(audio::DEFAULT_TAIL),
            muting: Muting::AtSource,
        };
        spawn_audio(path, tx, control_rx).expect("audio thread");
        let mut heard = Vec::new();
        loop {
            let input = recv(&mut rx);
            match input {
                Some(Input::Utterance(u, _)) => {
                    let answer = if heard.is_empty() {
                        std::thread::sleep(StdDuration::from_secs(3));
                        Expect::Pin
                    } else {
                        Expect::Command
                    };
                    heard.push(u.text);
                    control_tx
                        .send(AudioControl::Expect(answer))
                        .expect("control");
                }
                Some(Input::Ended(_)) | None => break,
                Some(_) => {}
            }
        }
        assert_eq!(heard, ["decoded by grammar", "decoded by free"]);
    }
}
