//! Recordings heard as `voicegate run --no-wake --input FILE` hears them,
//! many in one process: what `voicegate eval speech` measures with.
//!
//! An evaluation must measure the daemon's speech path, not a copy of it
//! that drifts: so a clip goes through the daemon's own parts — the
//! [`Listener`] (endpointer, the choice between grammar and free decoding
//! from what the gate waits for, the transcription thread), whisper loaded
//! by the same function from the same settings ([`start_stt`],
//! [`decoding_options`], [`endpoint_config`]), and a [`Pipeline`] — and
//! only the routing between them is done here instead of by the
//! coordinator, synchronously, as the coordinator does it for a file read
//! faster than real time (the audio clock):
//!
//! - an utterance: `heard` (the PIN redacted while one is awaited), the
//!   gate, then the listener is told what is due next
//!   ([`Expect::from_gate`]), as `Coordinator::on_utterance` and
//!   `tell_audio` do;
//! - a second of audio: a pending confirmation expires when its deadline
//!   is passed (`Coordinator::on_tick`);
//! - the end of the clip: time runs on to a pending deadline, then the
//!   session ends (`Coordinator::on_ended`), so each clip is one
//!   conversation and the next starts with nothing pending.
//!
//! What differs, on purpose: no wake word (`--no-wake`), nothing is spoken
//! (`--tts none`: so no half-duplex muting either), no alarms ring, and
//! the pipeline is the caller's (a dry run, on a throwaway data directory,
//! for `eval speech`). Whisper and the fallback recogniser load once for
//! all clips.

use super::*;

/// whisper, loaded once, and the endpointer's settings: the daemon's audio
/// path for `--no-wake` file input, minus the file.
pub struct Replay {
    stt: Arc<SttThread>,
    endpoint: EndpointConfig,
}

/// What one clip gave.
#[derive(Debug, Default)]
pub struct Clip {
    /// The events, as `run --json` prints them (with `heard`), in order.
    pub events: Vec<Event>,
    /// What the daemon would log on stderr (a transcription that failed).
    pub notices: Vec<String>,
    /// Utterances the endpointer cut out of the clip and whisper wrote down.
    pub utterances: usize,
    /// From the moment the endpointer closed the first utterance to the
    /// gate's answer (transcription and gate): the wait after the user
    /// stopped talking, less the endpointer's hangover. `None`: nothing
    /// was heard.
    pub latency: Option<StdDuration>,
}

impl Replay {
    /// Loads whisper as `voicegate run` would with `settings` (the decoding
    /// flags, `--silence-ms`); wake words are ignored: every utterance is
    /// addressed, as with `--no-wake`.
    pub fn open(settings: &Settings, intents: &IntentSet) -> Result<Replay, AppError> {
        let speech = &settings.speech;
        let stt = start_stt(speech, decoding_options(speech, intents, &[]))?;
        Ok(Replay {
            stt,
            endpoint: endpoint_config(speech, false),
        })
    }

    /// Hears `samples` (16 kHz mono, as the WAV reader delivers them) as
    /// one conversation with `pipeline`, on an audio clock that starts now.
    pub fn hear(&self, samples: &[f32], pipeline: &mut Pipeline) -> Clip {
        let start = Utc::now();
        let mut listener = Listener::new(
            Arc::clone(&self.stt),
            None,
            self.endpoint.clone(),
            Some(start),
        );
        let mut clip = Clip::default();
        // One frame at a time, as the audio thread reads the file.
        for frame in samples.chunks(FRAME_SAMPLES) {
            let since = Instant::now();
            let heard = listener.on_frame(frame);
            route(heard, since, &mut listener, pipeline, &mut clip);
        }
        let since = Instant::now();
        let heard = listener.finish();
        route(heard, since, &mut listener, pipeline, &mut clip);
        let ended = listener.ended();
        route(vec![ended], since, &mut listener, pipeline, &mut clip);
        clip
    }
}

/// Does with what the listener heard what the coordinator does with it
/// (see the module docs). `since`: when the frame that produced it came.
fn route(
    heard: Vec<Input>,
    since: Instant,
    listener: &mut Listener,
    pipeline: &mut Pipeline,
    clip: &mut Clip,
) {
    for input in heard {
        match input {
            Input::Utterance(utterance, at) => {
                let now = at.unwrap_or_else(Utc::now);
                if let Some(confidence) = utterance.confidence {
                    let text = if pipeline.awaiting_pin() {
                        crate::gate::PIN_REDACTED.to_string()
                    } else {
                        utterance.text.clone()
                    };
                    clip.events.push(Event::Heard {
                        text,
                        confidence,
                        backing: utterance.backing.clone(),
                    });
                }
                clip.events.extend(pipeline.handle(&utterance, now));
                listener.expect(Expect::from_gate(state_of(pipeline)));
                clip.utterances += 1;
                if clip.latency.is_none() {
                    clip.latency = Some(since.elapsed());
                }
            }
            Input::Tick(at) => {
                if pipeline.deadline().is_some_and(|d| at >= d) {
                    clip.events.extend(pipeline.tick(at));
                    listener.expect(Expect::from_gate(state_of(pipeline)));
                }
            }
            Input::Ended(at) => {
                let end = pipeline.deadline().or(at).unwrap_or_else(Utc::now);
                clip.events.extend(pipeline.tick(end));
                clip.events.extend(pipeline.shutdown(end));
            }
            Input::Notice(text) => clip.notices.push(text),
            Input::Wake(detection) => clip.events.push(Event::Wake {
                phrase: detection.phrase,
                score: detection.score,
            }),
            // Replay plays no sound; not made by the audio path.
            Input::Chime | Input::Reload(..) | Input::ReloadFailed(_) | Input::Executed => {}
        }
    }
}
