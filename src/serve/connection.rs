//! One Wyoming connection: its events in, its answers out.
//!
//! Why it exists: a connection is a small conversation with state (the
//! stream it is in, its audio so far, its wake detector, its gate session),
//! and every way a client can misbehave (garbage, a stream cut off, a
//! silence mid-stream, too much audio) has to end in an `error` event or a
//! closed connection, for this client only. Heavy work leaves the runtime:
//! transcription goes to the shared whisper thread (a full queue is an
//! `error` with code `busy`, not a wait), wake detection runs on the
//! blocking pool, and the gate thread handles transcripts.
//!
//! What a client can ask (the names are Wyoming's):
//!
//! - `describe` → `info`;
//! - `transcribe`, then `audio-start`, `audio-chunk`*, `audio-stop` →
//!   `transcript` (an `audio-start` without `transcribe` is a
//!   transcription too, as other Wyoming servers take it);
//! - `detect`, then audio → `detection` for each wake word heard, or
//!   `not-detected` at `audio-stop`;
//! - `transcript` → `handled` or `not-handled`, through the client's own
//!   gate session: the one of the satellite, device or conversation its
//!   context names (`satellite_id`, `device_id`, `conversation_id`, as Home
//!   Assistant sends them with every sentence, each on a new connection),
//!   or else this connection's own. Audit rows name the client: a
//!   `context.name`, or the `name` of the satellite's `info`, what its
//!   context names, and its address;
//! - `ping` → `pong`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::Shared;
use super::gate::SessionKey;
use super::pcm::{Converter, Format, RATE};
use super::wyoming::{Event, read_event, write_event};
use crate::pipeline::{self, SessionId};
use crate::stt::{SttError, SttThread};
use crate::wakeword::detector::{Detector, FRAME_SAMPLES, Outcome};

/// Between events of a transcription's stream: a client silent this long
/// has stopped mid-stream; it is told so and disconnected. (A wake word
/// stream may pause for as long as the idle limit: a satellite stops
/// sending it audio while its command goes elsewhere.)
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Between requests: an idle connection is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Writing one event: a client that does not read is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most audio one transcription takes (whisper's window).
pub const MAX_TRANSCRIBE_SECS: usize = 30;

/// How long a transcription may take once queued.
const STT_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest client name kept (it goes into audit rows).
const MAX_NAME_CHARS: usize = 64;

/// How long a transcript made here is remembered for its confidence.
const RECENT_FOR: Duration = Duration::from_secs(120);

/// How many transcripts are remembered.
const RECENT_MAX: usize = 64;

/// The transcripts this server made lately, with whisper's confidence.
///
/// Why: Wyoming's `transcript` carries no confidence, and Home Assistant
/// sends voicegate's own transcript back to it as a separate request. A
/// text it transcribed in the last [`RECENT_FOR`] is handled with the
/// confidence whisper gave it and its backing, so an unsure reading runs
/// nothing here either (the gate's rule for speech); any other text is
/// handled as typed (Wyoming gives no way to know how sure another engine
/// was).
#[derive(Default)]
pub struct Recent(
    std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, String, Heard)>>,
);

/// How sure whisper was of a transcript, as the gate takes it.
type Heard = (f32, Option<crate::stt::Backing>);

impl Recent {
    fn remember(&self, text: &str, heard: Heard) {
        let mut recent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() >= RECENT_MAX {
            recent.pop_front();
        }
        recent.push_back((std::time::Instant::now(), text.to_string(), heard));
    }

    /// The confidence and backing of the latest recent transcript with
    /// this text.
    fn heard(&self, text: &str) -> Option<Heard> {
        let recent = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .take_while(|(at, _, _)| at.elapsed() < RECENT_FOR)
            .find(|(_, t, _)| t == text)
            .map(|(_, _, heard)| heard.clone())
    }
}

/// What the connection is in the middle of.
enum Stream {
    Idle,
    /// `transcribe` (or `audio-start`) came; audio is collected.
    Transcribe {
        converter: Option<Converter>,
        samples: Vec<f32>,
    },
    /// `detect` came; audio goes through a detector.
    Detect(Box<Detecting>),
}

/// A wake word stream: its detector, the samples not yet a whole frame,
/// whether anything was heard.
struct Detecting {
    converter: Option<Converter>,
    detector: Option<Detector<Arc<SttThread>>>,
    pending: Vec<f32>,
    heard: bool,
}

/// One connection's state.
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// What the client calls itself, if it said.
    name: Option<String>,
    session: Option<SessionId>,
    stream: Stream,
}

/// Serves one connection until it closes, misbehaves or times out.
pub async fn serve(socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut conn = Connection {
        shared,
        peer,
        name: None,
        session: None,
        stream: Stream::Idle,
    };
    loop {
        let streaming = matches!(conn.stream, Stream::Transcribe { .. });
        let limit = if streaming {
            STREAM_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        let (answers, close) = match timeout(limit, read_event(&mut reader)).await {
            Err(_) if streaming => (
                vec![Event::error(
                    format!(
                        "no audio for {} s in the middle of a stream; closing",
                        limit.as_secs()
                    ),
                    "timeout",
                )],
                true,
            ),
            Err(_) | Ok(Ok(None)) => (Vec::new(), true),
            Ok(Err(e)) => (vec![Event::error(e.to_string(), e.code())], true),
            Ok(Ok(Some(event))) => (conn.on_event(event).await, false),
        };
        for answer in &answers {
            match timeout(WRITE_TIMEOUT, write_event(&mut write, answer)).await {
                Ok(Ok(())) => {}
                _ => return conn.close().await,
            }
        }
        if close {
            return conn.close().await;
        }
    }
}

impl Connection {
    /// The connection ended: its session's pending read-back expires.
    async fn close(self) {
        if let Some(session) = self.session {
            self.shared.gate.close(session).await;
        }
    }

    async fn on_event(&mut self, event: Event) -> Vec<Event> {
        match event.kind.as_str() {
            "describe" => vec![self.shared.info.clone()],
            "ping" => vec![Event::new("pong", json!({ "text": event.str("text") }))],
            "info" => {
                // A satellite describing itself: its name names the session.
                let name = event
                    .data
                    .get("satellite")
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str);
                self.set_name(name);
                Vec::new()
            }
            "transcribe" => {
                self.stream = Stream::Transcribe {
                    converter: None,
                    samples: Vec::new(),
                };
                Vec::new()
            }
            "detect" => self.detect(&event).await,
            "audio-start" => self.audio_start(&event),
            "audio-chunk" => self.audio_chunk(&event).await,
            "audio-stop" => self.audio_stop().await,
            "transcript" => self.handle(&event).await,
            other => vec![Event::error(
                format!("voicegate does not serve \"{other}\" events"),
                "unknown-event",
            )],
        }
    }

    fn set_name(&mut self, name: Option<&str>) {
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty())
            && self.session.is_none()
        {
            self.name = Some(name.chars().take(MAX_NAME_CHARS).collect());
        }
    }

    /// What the audit rows call this client.
    fn client(&self, key: &SessionKey) -> String {
        let mut text = String::from("wyoming");
        if let Some(name) = &self.name {
            text.push_str(&format!(" {name:?}"));
        }
        if let SessionKey::Named(named) = key {
            text.push_str(&format!(" {named}"));
        }
        text.push_str(&format!(" ({})", self.peer));
        text
    }

    async fn detect(&mut self, event: &Event) -> Vec<Event> {
        let wanted: Vec<String> = event
            .data
            .get("names")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        let words: Vec<_> = self
            .shared
            .wake_words
            .iter()
            .filter(|w| wanted.is_empty() || wanted.contains(&w.phrase.to_lowercase()))
            .cloned()
            .collect();
        if words.is_empty() {
            self.stream = Stream::Idle;
            return vec![Event::error(
                format!(
                    "no such wake word here: {}",
                    if wanted.is_empty() {
                        "none is configured".to_string()
                    } else {
                        wanted.join(", ")
                    }
                ),
                "unknown-wake-word",
            )];
        }
        // Loading the stage-1 models reads files: off the runtime.
        let stt = Arc::clone(&self.shared.stt);
        let made = tokio::task::spawn_blocking(move || Detector::new(&words, stt)).await;
        match made {
            Ok(Ok(detector)) => {
                self.stream = Stream::Detect(Box::new(Detecting {
                    converter: None,
                    detector: Some(detector),
                    pending: Vec::new(),
                    heard: false,
                }));
                Vec::new()
            }
            Ok(Err(e)) => vec![Event::error(e.to_string(), "wake-word")],
            Err(e) => vec![Event::error(e.to_string(), "internal")],
        }
    }

    fn audio_start(&mut self, event: &Event) -> Vec<Event> {
        let converter = match format_of(event).and_then(Converter::new) {
            Ok(c) => c,
            Err(e) => {
                self.stream = Stream::Idle;
                return vec![Event::error(e, "bad-audio")];
            }
        };
        match &mut self.stream {
            Stream::Detect(d) => {
                d.converter = Some(converter);
            }
            Stream::Transcribe {
                converter: c,
                samples,
            } => {
                *c = Some(converter);
                samples.clear();
            }
            Stream::Idle => {
                self.stream = Stream::Transcribe {
                    converter: Some(converter),
                    samples: Vec::new(),
                }
            }
        }
        Vec::new()
    }

    async fn audio_chunk(&mut self, event: &Event) -> Vec<Event> {
        let converter = match &mut self.stream {
            Stream::Idle => {
                return vec![Event::error(
                    "audio-chunk outside a stream: send transcribe or detect and audio-start first",
                    "no-stream",
                )];
            }
            Stream::Transcribe { converter, .. } => converter,
            Stream::Detect(d) => &mut d.converter,
        };
        // A chunk names its format too; a change starts a new conversion.
        let format = match format_of(event) {
            Ok(f) => f,
            Err(e) => {
                self.stream = Stream::Idle;
                return vec![Event::error(e, "bad-audio")];
            }
        };
        if converter.as_ref().map(Converter::format) != Some(format) {
            match Converter::new(format) {
                Ok(c) => *converter = Some(c),
                Err(e) => {
                    self.stream = Stream::Idle;
                    return vec![Event::error(e, "bad-audio")];
                }
            }
        }
        let Some(converter) = converter.as_mut() else {
            return Vec::new();
        };
        let mut samples = Vec::new();
        if let Err(e) = converter.push(&event.payload, &mut samples) {
            self.stream = Stream::Idle;
            return vec![Event::error(e, "bad-audio")];
        }
        match &mut self.stream {
            Stream::Transcribe { samples: all, .. } => {
                all.extend(samples);
                if all.len() > MAX_TRANSCRIBE_SECS * RATE as usize {
                    self.stream = Stream::Idle;
                    return vec![Event::error(
                        format!("more than {MAX_TRANSCRIBE_SECS} s of audio to transcribe"),
                        "too-long",
                    )];
                }
                Vec::new()
            }
            Stream::Detect(d) => {
                d.pending.extend(samples);
                self.run_detector(false).await
            }
            Stream::Idle => Vec::new(),
        }
    }

    /// Feeds the whole frames collected (and at the end, the rest) to the
    /// detector on the blocking pool; each detection is an event.
    async fn run_detector(&mut self, end: bool) -> Vec<Event> {
        let Stream::Detect(d) = &mut self.stream else {
            return Vec::new();
        };
        let whole = d.pending.len() / FRAME_SAMPLES * FRAME_SAMPLES;
        if whole == 0 && !end {
            return Vec::new();
        }
        let frames: Vec<f32> = d.pending.drain(..whole).collect();
        let Some(mut detector) = d.detector.take() else {
            return Vec::new();
        };
        let ran = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            for frame in frames.chunks(FRAME_SAMPLES) {
                match detector.push(frame) {
                    Ok(Outcome::Detected(hit)) => found.push(Ok(hit)),
                    Ok(_) => {}
                    Err(e) => found.push(Err(e)),
                }
            }
            if end {
                match detector.finish() {
                    Ok(Outcome::Detected(hit)) => found.push(Ok(hit)),
                    Ok(_) => {}
                    Err(e) => found.push(Err(e)),
                }
            }
            (detector, found)
        })
        .await;
        let Ok((detector, found)) = ran else {
            self.stream = Stream::Idle;
            return vec![Event::error("the wake word detector failed", "internal")];
        };
        d.detector = Some(detector);
        let mut events = Vec::new();
        for hit in found {
            match hit {
                Ok(hit) => {
                    d.heard = true;
                    events.push(Event::new(
                        "detection",
                        json!({
                            "name": hit.phrase,
                            // Milliseconds into the stream.
                            "timestamp": hit.at_sample * 1000 / u64::from(RATE),
                        }),
                    ));
                }
                Err(e) => events.push(Event::error(e.to_string(), "wake-word")),
            }
        }
        events
    }

    async fn audio_stop(&mut self) -> Vec<Event> {
        match std::mem::replace(&mut self.stream, Stream::Idle) {
            Stream::Idle => vec![Event::error("audio-stop outside a stream", "no-stream")],
            Stream::Transcribe {
                converter,
                mut samples,
            } => {
                if let Some(mut c) = converter {
                    c.finish(&mut samples);
                }
                self.transcribe(samples).await
            }
            Stream::Detect(d) => {
                self.stream = Stream::Detect(d);
                let mut events = self.run_detector(true).await;
                let heard = match std::mem::replace(&mut self.stream, Stream::Idle) {
                    Stream::Detect(d) => d.heard,
                    _ => false,
                };
                if !heard {
                    events.push(Event::new("not-detected", json!({})));
                }
                events
            }
        }
    }

    async fn transcribe(&mut self, samples: Vec<f32>) -> Vec<Event> {
        if samples.is_empty() {
            return vec![Event::new("transcript", json!({ "text": "" }))];
        }
        let stt = Arc::clone(&self.shared.stt);
        let done =
            tokio::task::spawn_blocking(move || stt.try_transcribe(samples, STT_TIMEOUT)).await;
        match done {
            Ok(Ok(t)) => {
                // A satellite's audio may begin with the wake word; the
                // transcript, like the daemon's, does not.
                let mut text = t.text;
                for word in &self.shared.wake_words {
                    text = crate::wakeword::strip_wake_phrase(&text, &word.phrase);
                }
                self.shared.recent.remember(&text, (t.confidence, t.backed));
                vec![Event::new(
                    "transcript",
                    json!({ "text": text, "language": "en" }),
                )]
            }
            Ok(Err(SttError::Busy)) => vec![Event::error(
                "too many transcriptions are waiting; try again",
                "busy",
            )],
            Ok(Err(e)) => vec![Event::error(e.to_string(), "transcription")],
            Err(e) => vec![Event::error(e.to_string(), "internal")],
        }
    }

    async fn handle(&mut self, event: &Event) -> Vec<Event> {
        let Some(text) = event.str("text").map(str::to_string) else {
            return vec![Event::error("a transcript needs \"text\"", "bad-event")];
        };
        let context = event.data.get("context");
        let name = context
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.set_name(name.as_deref());
        let key = session_key(context);
        let session = match (&key, self.session) {
            (SessionKey::Connection, Some(s)) => s,
            _ => match self.shared.gate.open(key.clone(), self.client(&key)).await {
                Ok(Some(s)) => {
                    if key == SessionKey::Connection {
                        self.session = Some(s);
                    }
                    s
                }
                Ok(None) => {
                    return vec![Event::error(
                        "too many satellites and conversations at once; try again later",
                        "busy",
                    )];
                }
                Err(e) => return vec![Event::error(e.to_string(), "internal")],
            },
        };
        // Addressed (a satellite sends what followed its wake word), with
        // whisper's confidence when the text is one of ours.
        let mut utterance = crate::gate::Utterance::typed(text);
        if let Some((confidence, backing)) = self.shared.recent.heard(&utterance.text) {
            utterance.confidence = Some(confidence);
            utterance.backing = backing;
        }
        let events = match self.shared.gate.handle(session, utterance).await {
            Ok(events) => events,
            Err(e) => return vec![Event::error(e.to_string(), "internal")],
        };
        vec![answer(&events)]
    }
}

/// Whose session a transcript belongs to: the satellite, else the device,
/// else the conversation its context names (the most stable first: a room
/// keeps its satellite across conversations), else the connection.
fn session_key(context: Option<&Value>) -> SessionKey {
    for field in ["satellite_id", "device_id", "conversation_id"] {
        if let Some(id) = context
            .and_then(|c| c.get(field))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let id: String = id.chars().take(MAX_NAME_CHARS).collect();
            return SessionKey::Named(format!("{field} {id}"));
        }
    }
    SessionKey::Connection
}

/// The format an `audio-start` or `audio-chunk` names.
fn format_of(event: &Event) -> Result<Format, String> {
    Format::new(
        event.uint("rate"),
        event.uint("width"),
        event.uint("channels"),
    )
    .map_err(|e| format!("{}: {e}", event.kind))
}

/// What the pipeline said, as Wyoming's answer: `not-handled` when nothing
/// was understood, `handled` otherwise, with everything voicegate says.
fn answer(events: &[pipeline::Event]) -> Event {
    let text: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            pipeline::Event::Response { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let text = text.join(" ");
    let understood = !events
        .iter()
        .any(|e| matches!(e, pipeline::Event::NotUnderstood { .. }));
    Event::new(
        if understood { "handled" } else { "not-handled" },
        json!({ "text": text }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_made_here_keeps_its_confidence_and_backing() {
        // The gate judges a backed "yes" on its own confidence; the text
        // Home Assistant sends back must reach it with the backing.
        let recent = Recent::default();
        let backing = crate::stt::Backing {
            text: "Don't do it.".into(),
            own_confidence: 0.3,
        };
        recent.remember("Yes, do it.", (0.8, Some(backing.clone())));
        recent.remember("Set a timer.", (0.9, None));
        assert_eq!(recent.heard("Yes, do it."), Some((0.8, Some(backing))));
        assert_eq!(recent.heard("Set a timer."), Some((0.9, None)));
        assert_eq!(recent.heard("Buy paper towels."), None);
    }
}
