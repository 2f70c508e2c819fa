//! `voicegate serve --wyoming`: the speech path and the gate, served to
//! other programs over the Wyoming protocol (Home Assistant, satellites).
//!
//! Why it exists: a home with Home Assistant already has satellites in its
//! rooms; this lets them use voicegate's whisper, wake word and gate
//! instead of only its own microphone. It is a second front end over the
//! same parts `voicegate run` uses, not a copy of them: the same
//! [`Pipeline`] (gate, audit, executors) on its own thread
//! ([`gate::GateThread`]) with a gate session per client, the same whisper
//! options (the intents' grammar, `daemon::decoding_options`) on one
//! [`SttThread`] every connection shares, and the same two-stage wake word
//! [`Detector`], one per connection, verified by that whisper.
//!
//! - [`wyoming`]: the wire format, within limits;
//! - [`pcm`]: a client's audio → 16 kHz mono;
//! - [`connection`]: one connection's events and answers;
//! - [`gate`]: the pipeline's thread, one gate session per client.
//!
//! Limits: at most `[wyoming] max_connections` connections at once (more
//! are told `busy` and closed), at most `stt_queue` transcriptions waiting
//! for whisper (more get an `error` with code `busy`), and the per-event
//! limits and timeouts of [`wyoming`] and [`connection`]. Loopback only
//! unless `[wyoming] allow_remote = true` (checked in `config`): Wyoming
//! has no authentication.
//!
//! [`Detector`]: crate::wakeword::detector::Detector

pub mod connection;
pub mod gate;
pub mod pcm;
pub mod wyoming;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::actions::alarms::{Bell, Schedule};
use crate::actions::ring::configured_ringer;
use crate::config::{Settings, WyomingSettings};
use crate::error::AppError;
use crate::intent::IntentSet;
use crate::pipeline::{Pipeline, PipelineConfig, PipelineError};
use crate::stt::{SttThread, WhisperTranscriber};
use crate::wakeword::detector::WakeWord;

/// What every connection shares.
pub struct Shared {
    /// The one whisper.
    pub stt: Arc<SttThread>,
    /// The pipeline's thread.
    pub gate: gate::GateThread,
    /// The wake words `detect` can listen for.
    pub wake_words: Vec<WakeWord>,
    /// The answer to `describe`.
    pub info: wyoming::Event,
    /// The transcripts this server made lately, with whisper's confidence.
    pub recent: connection::Recent,
}

/// Loads the models and the pipeline, then serves until SIGINT/SIGTERM.
pub fn run(
    settings: &Settings,
    intents: IntentSet,
    wyoming: WyomingSettings,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<i32, AppError> {
    let speech = &settings.speech;
    let wake_words = crate::daemon::load_wake_words(&speech.wake_words)?;
    let options = crate::daemon::decoding_options(speech, &intents, &wake_words);
    let model = crate::stt::model::locate(model.or(speech.decoding.model.as_deref()))?;
    let engine = WhisperTranscriber::load(&model, options)?;
    let stt = Arc::new(SttThread::start_with_queue(
        Box::new(engine),
        wyoming.stt_queue,
    )?);
    let mut pipeline = Pipeline::start(intents, PipelineConfig::from_settings(settings))?;
    let recovered = pipeline.recover(chrono::Utc::now());
    crate::output::print_events(&recovered, settings.json, out)?;
    let model_name = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "whisper".into());
    // Due alarms and timers ring here, as with `run` (the bundled sound on
    // this machine's speaker, or the configured ring command); what is
    // said then is printed below.
    let schedule = Schedule::open(settings.state_db()).map_err(PipelineError::from)?;
    let ringer = configured_ringer(
        settings.ring_command.as_deref(),
        None,
        settings.ring_command_audible,
    );
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let (gate, gate_thread) = gate::GateThread::start(
        pipeline,
        Some(Bell::new(schedule, ringer)),
        Box::new(move |events| {
            let _ = notice_tx.send(events);
        }),
    )
    .map_err(AppError::Output)?;
    let shared = Arc::new(Shared {
        stt,
        gate,
        info: info(&model_name, &wake_words),
        wake_words,
        recent: Default::default(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Output)?;
    let served = runtime.block_on(async {
        let listener = TcpListener::bind(wyoming.address)
            .await
            .map_err(|e| AppError::Usage(format!("cannot listen on {}: {e}", wyoming.address)))?;
        let address = listener.local_addr().map_err(AppError::Output)?;
        if settings.json {
            writeln!(
                out,
                "{}",
                json!({ "event": "serving", "wyoming": format!("tcp://{address}") })
            )?;
        } else {
            writeln!(out, "Serving Wyoming on tcp://{address}")?;
        }
        out.flush()?;
        let json = settings.json;
        let print_notices = async {
            while let Some(events) = notices.recv().await {
                // A closed stdout loses the words, not the ring.
                let _ = crate::output::print_events(&events, json, &mut *out);
            }
        };
        tokio::select! {
            _ = serve(listener, shared, wyoming.max_connections, stop_signal()) => {}
            _ = print_notices => {}
        }
        Ok::<(), AppError>(())
    });
    // Stopping the runtime drops the connections and with them the last
    // handles on the gate thread, which then closes its sessions (a
    // pending read-back is recorded as expired) and ends.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let _ = gate_thread.join();
    served?;
    Ok(0)
}

/// Accepts connections until `stop` resolves; each is served on its own
/// task, at most `max` at once.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    max: usize,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max));
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // A failed accept (a reset, out of descriptors) concerns
                // that connection only; a short pause keeps a lasting one
                // (descriptors) from spinning the loop.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(socket, max));
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            connection::serve(socket, peer, shared).await;
            drop(slot);
        });
    }
}

/// Tells a connection over the limit why it is closed.
async fn refuse(mut socket: tokio::net::TcpStream, max: usize) {
    let event = wyoming::Event::error(
        format!("voicegate serves {max} connections at once; try again later"),
        "busy",
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        wyoming::write_event(&mut socket, &event).await?;
        // Closing with the client's bytes unread would reset the
        // connection and could lose the error before it is read: say
        // we are done, then drain until the client closes too.
        socket.shutdown().await?;
        let mut sink = [0u8; 4096];
        while socket.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, stopping is the process being killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The `info` event: what is served (field names are those of the
/// `wyoming` package's `info.py`).
fn info(model: &str, wake_words: &[WakeWord]) -> wyoming::Event {
    let version = env!("CARGO_PKG_VERSION");
    let ours = json!({ "name": "voicegate", "url": "https://github.com/voicegate/voicegate" });
    let artifact = |name: &str, description: &str| {
        json!({
            "name": name,
            "attribution": ours,
            "installed": true,
            "description": description,
            "version": version,
        })
    };
    let with = |mut base: serde_json::Value, extra: serde_json::Value| {
        if let (Some(b), serde_json::Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    };
    let asr_model = with(
        json!({
            "name": model,
            "attribution": { "name": "OpenAI Whisper", "url": "https://github.com/openai/whisper" },
            "installed": true,
            "description": "whisper, decoding constrained to the loaded intents' sentences",
            "version": null,
        }),
        json!({ "languages": ["en"] }),
    );
    let wake_models: Vec<_> = wake_words
        .iter()
        .map(|w| {
            with(
                artifact(
                    &w.phrase,
                    "two-stage wake word: rustpotter, then a whisper check",
                ),
                json!({ "languages": ["en"], "phrase": w.phrase }),
            )
        })
        .collect();
    let mut data = json!({
        "asr": [with(
            artifact("voicegate-asr", "voicegate's speech to text"),
            json!({ "models": [asr_model], "supports_transcript_streaming": false }),
        )],
        "handle": [with(
            artifact("voicegate-gate", "voicegate's intents, with a spoken confirmation for purchases and bookings"),
            json!({
                "models": [with(
                    artifact("voicegate-intents", "the loaded intent files"),
                    json!({ "languages": ["en"] }),
                )],
                "supports_handled_streaming": false,
            }),
        )],
        "wake": [],
        "tts": [], "intent": [], "mic": [], "snd": [],
    });
    if !wake_models.is_empty() {
        data["wake"] = json!([with(
            artifact("voicegate-wake", "voicegate's wake word detector"),
            json!({ "models": wake_models }),
        )]);
    }
    wyoming::Event::new("info", data)
}
