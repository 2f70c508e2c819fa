//! Voice out: the TTS [`Speaker`] and the wake [`Acknowledger`], each on
//! its own thread so the coordinator never waits for a sound, and each
//! holding a playback on the shared `HalfDuplex` while it sounds.

use super::*;

/// Says a text aloud, returning once it has been said (tests put a fake
/// behind it).
pub(super) trait Voice: Send {
    fn say(&mut self, text: &str);

    /// Gets ready before the first text (piper loads its voice), so the
    /// first read-back is not slower than the others.
    fn warm(&mut self) {}
}

/// The voice `tts` names: piper when chosen or, by default, when it is
/// installed (espeak-ng then stands in if it fails); a command; or none.
pub(super) fn voice_for(tts: &crate::config::Sound) -> Option<Box<dyn Voice>> {
    use crate::config::Sound;
    let espeak = || default_tts().map(CommandVoice);
    match tts {
        Sound::Silent => None,
        Sound::Command(command) => Some(Box::new(CommandVoice(command.clone()))),
        Sound::Default | Sound::Piper => {
            let piper = match crate::tts::Piper::find(None) {
                Ok(found) => found,
                Err(e) => {
                    eprintln!("voicegate: {e}");
                    None
                }
            };
            match piper {
                Some(piper) => Some(Box::new(PiperVoice::new(piper, espeak()))),
                None => {
                    if *tts == Sound::Piper {
                        eprintln!(
                            "voicegate: piper is not installed (scripts/setup-tts.sh); speaking with espeak-ng"
                        );
                    }
                    espeak().map(|v| Box::new(v) as Box<dyn Voice>)
                }
            }
        }
    }
}

/// piper's voice: one process for the daemon's life (restarted once after
/// a failure), each text played on the default output device. A text
/// piper cannot say goes to `stand_in` (espeak-ng), and the failure is
/// logged once.
pub(super) struct PiperVoice {
    piper: crate::tts::Piper,
    session: Option<crate::tts::PiperSession>,
    stand_in: Option<CommandVoice>,
    warned: bool,
}

/// Longest piper may take to load its voice.
const PIPER_START: StdDuration = StdDuration::from_secs(60);

impl PiperVoice {
    pub(super) fn new(piper: crate::tts::Piper, stand_in: Option<CommandVoice>) -> PiperVoice {
        PiperVoice {
            piper,
            session: None,
            stand_in,
            warned: false,
        }
    }

    /// The running session, started if there is none.
    fn session(&mut self) -> Result<&mut crate::tts::PiperSession, crate::tts::TtsError> {
        if self.session.is_none() {
            self.session = Some(crate::tts::PiperSession::start(&self.piper, PIPER_START)?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| crate::tts::TtsError::Piper("no session".into()))
    }

    fn speak(&mut self, text: &str) -> Result<(), String> {
        let session = self.session().map_err(|e| e.to_string())?;
        let rate = session.rate();
        let samples = match session.synthesize(text, MAX_SPEECH) {
            Ok(samples) => samples,
            Err(e) => {
                // Spent: the next text starts a new process.
                self.session = None;
                return Err(e.to_string());
            }
        };
        let length = StdDuration::from_secs_f64(samples.len() as f64 / f64::from(rate.max(1)));
        // Played whole: the player returns once the device has played it.
        Player::play(&samples, rate, None, length + PLAY_GRACE).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Voice for PiperVoice {
    fn say(&mut self, text: &str) {
        if let Err(e) = self.speak(text) {
            if !self.warned {
                self.warned = true;
                eprintln!("voicegate: piper cannot speak ({e}); using espeak-ng instead");
            }
            if let Some(stand_in) = &mut self.stand_in {
                stand_in.say(text);
            }
        }
    }

    fn warm(&mut self) {
        if let Err(e) = self.session() {
            self.warned = true;
            eprintln!("voicegate: piper did not start ({e}); using espeak-ng instead");
        }
    }
}

/// The TTS command: `sh -c <command>` with the text on stdin.
pub(super) struct CommandVoice(pub(super) String);

/// Longest a TTS command may take to say one text: the microphone is muted
/// while it runs, so a command that hangs must not deafen voicegate.
pub(super) const MAX_SPEECH: StdDuration = StdDuration::from_secs(30);

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
pub(super) struct Speaker {
    pub(super) tx: Option<std_mpsc::SyncSender<(String, Playback)>>,
    pub(super) duplex: Arc<HalfDuplex>,
}

impl Speaker {
    pub(super) fn start(voice: Option<Box<dyn Voice>>, duplex: Arc<HalfDuplex>) -> Speaker {
        let Some(mut voice) = voice else {
            return Speaker { tx: None, duplex };
        };
        let (tx, rx) = std_mpsc::sync_channel::<(String, Playback)>(16);
        let spawned = thread::Builder::new()
            .name("voicegate-tts".into())
            .spawn(move || {
                voice.warm();
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

    pub(super) fn speak(&self, events: &[Event]) {
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

/// Plays the acknowledgement of the wake word, on its own thread so the
/// coordinator never waits for a sound: the configured command, or the
/// bundled chime on the default output device. A failure is logged once
/// and the daemon goes on silently.
///
/// So that a chime never cuts a command said in the same breath ("jarvis,
/// set a timer"), the audio thread asks for it ([`Input::Chime`]) only
/// when the user has paused after the wake word: someone already talking
/// needs no signal to go on. The microphone is muted while the chime is
/// heard ([`Player`] switches a playback on for exactly those buffers; a
/// command holds one while it runs).
///
/// A sound server may take a while to start a new stream (see
/// [`crate::audio::output`]), longer than that pause: so the stream is
/// opened, silent, as soon as the wake word is heard
/// ([`Acknowledger::prepare`]), and the chime plays on it when due
/// ([`Acknowledger::ack`]). A prepared stream no chime follows is closed
/// after [`PREPARED_FOR`].
pub(super) struct Acknowledger {
    tx: Option<std_mpsc::SyncSender<Cue>>,
}

/// What the acknowledgement thread is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cue {
    /// The wake word was heard: a chime may be due soon.
    Prepare,
    /// Play it.
    Play,
}

/// How long a prepared stream waits for its chime.
pub(super) const PREPARED_FOR: StdDuration = StdDuration::from_secs(3);

/// A chime that has not started this long after it was due is not played:
/// the user may be talking by then, and the microphone is muted while the
/// chime is heard.
pub(super) const CHIME_LATE: StdDuration = StdDuration::from_millis(1_000);

/// How much longer than a sound a player may take to play it (the sound
/// server starting the stream).
pub(super) const PLAY_GRACE: StdDuration = StdDuration::from_secs(3);

impl Acknowledger {
    pub(super) fn start(ack: crate::config::Sound, duplex: Arc<HalfDuplex>) -> Acknowledger {
        let command = match ack {
            crate::config::Sound::Silent => return Acknowledger { tx: None },
            crate::config::Sound::Command(command) => Some(command),
            crate::config::Sound::Default | crate::config::Sound::Piper => None,
        };
        let (tx, rx) = std_mpsc::sync_channel::<Cue>(4);
        let spawned = thread::Builder::new()
            .name("voicegate-ack".into())
            .spawn(move || {
                let mut warned = false;
                let mut warn = |e: String| {
                    if !warned {
                        warned = true;
                        eprintln!("voicegate: cannot play the wake acknowledgement: {e}");
                    }
                };
                match command {
                    Some(command) => {
                        for cue in rx {
                            if cue == Cue::Play
                                && let Err(e) = run_ack_command(&command, &duplex)
                            {
                                warn(e);
                            }
                        }
                    }
                    None => chime_loop(&rx, &duplex, &mut warn),
                }
            });
        Acknowledger {
            tx: spawned.ok().map(|_| tx),
        }
    }

    /// The wake word was heard: get the chime's stream ready.
    pub(super) fn prepare(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Cue::Prepare);
        }
    }

    /// The user paused after the wake word: chime.
    pub(super) fn ack(&self) {
        if let Some(tx) = &self.tx {
            // Already busy: skip rather than queue.
            let _ = tx.try_send(Cue::Play);
        }
    }
}

/// The configured acknowledgement command, the microphone muted while it
/// runs.
fn run_ack_command(command: &str, duplex: &Arc<HalfDuplex>) -> Result<(), String> {
    let _playing = duplex.hold();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The bundled chime's thread: a stream opened on [`Cue::Prepare`] (or on
/// [`Cue::Play`] if none is open), the chime played on it, the stream
/// closed once the chime has been heard or none came in time.
fn chime_loop(
    rx: &std_mpsc::Receiver<Cue>,
    duplex: &Arc<HalfDuplex>,
    warn: &mut dyn FnMut(String),
) {
    let sound = ack_chime();
    let rate = crate::audio::SAMPLE_RATE;
    let open = || Player::once(&sound, rate, Some(duplex.idle_playback()));
    let mut prepared: Option<Player> = None;
    loop {
        let cue = if prepared.is_some() {
            match rx.recv_timeout(PREPARED_FOR) {
                Ok(cue) => cue,
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    prepared = None;
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(cue) => cue,
                Err(_) => return,
            }
        };
        if prepared.is_none() {
            match open() {
                Ok(player) => prepared = Some(player),
                Err(e) => {
                    warn(e.to_string());
                    continue;
                }
            }
        }
        if cue == Cue::Play
            && let Some(player) = prepared.take()
        {
            player.start();
            let heard = player.wait(Some(CHIME_LATE), ACK_LENGTH + PLAY_GRACE);
            if !heard && player.failed() {
                warn("the output stream failed".into());
            }
        }
    }
}

/// Length of the bundled acknowledgement.
pub(super) const ACK_LENGTH: StdDuration = StdDuration::from_millis(180);

/// The bundled acknowledgement: two short rising tones (A5, E6), each with
/// a soft attack and decay, 180 ms at 16 kHz.
pub(super) fn ack_chime() -> Vec<f32> {
    let rate = crate::audio::SAMPLE_RATE as f32;
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
