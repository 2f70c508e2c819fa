//! The default microphone and speaker path against a real sound server:
//! a user-level PulseAudio (Debian's `pulseaudio`, installed by
//! `scripts/setup.sh`) started by the test on a Unix socket of its own (no
//! network at all), with two null sinks: `mic_feed`, whose monitor is the
//! default source (the "microphone"), and `speaker`, the default sink.
//! voicegate runs with no `--input`: cpal opens ALSA's default device,
//! which the ALSA pulse plugin (`libasound2-plugins`) routes to this
//! server. The test plays speech into `mic_feed` and records `speaker`'s
//! monitor.
//!
//! Needs pulseaudio, piper (for the spoken input) and the whisper model:
//! skipped with a printed reason without them, failed under CI.

#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use voicegate::stt::model;

const RATE: u32 = 16_000;

/// A PulseAudio server of the test's own; killed when dropped.
struct Pulse {
    dir: PathBuf,
    child: Option<Child>,
}

impl Pulse {
    fn server(&self) -> String {
        format!("unix:{}", self.dir.join("native").display())
    }

    /// Starts (or restarts) the server and waits until it answers.
    fn start(&mut self) -> Result<(), String> {
        let script = self.dir.join("default.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 load-module module-null-sink sink_name=speaker\n\
                 load-module module-null-sink sink_name=mic_feed\n\
                 set-default-sink speaker\n\
                 set-default-source mic_feed.monitor\n",
                self.dir.join("native").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disable-shm=yes",
                "-F",
            ])
            .arg(&script)
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("pulseaudio: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let ok = Command::new("pactl")
                .arg("info")
                .env("PULSE_SERVER", self.server())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("pulseaudio did not answer within 15 s".into())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the test needs, or `None` with the skip reported.
fn needs(dir: &Path) -> Option<(Pulse, PathBuf)> {
    for tool in ["pulseaudio", "pactl", "paplay", "parecord"] {
        if Command::new(tool).arg("--version").output().is_err() {
            skip::missing(format!(
                "{tool} is not installed (scripts/setup.sh installs pulseaudio)"
            ));
            return None;
        }
    }
    if voicegate::tts::Piper::find(None).ok().flatten().is_none() {
        skip::missing("piper is not installed (scripts/setup-tts.sh)");
        return None;
    }
    let base = model::default_models_dir().ok()?;
    let Some(model) = model::find(model::DEFAULT_MODEL)
        .map(|m| m.path_in(&base))
        .filter(|p| p.is_file())
    else {
        skip::missing("the whisper model is not installed");
        return None;
    };
    let mut pulse = Pulse {
        dir: dir.join("pulse"),
        child: None,
    };
    std::fs::create_dir_all(&pulse.dir).expect("pulse dir");
    pulse.start().expect("start pulseaudio");
    Some((pulse, model))
}

/// `parts` spoken by piper (via `voicegate speak`), each followed by that
/// many seconds of silence, as one 16 kHz WAV.
fn spoken(dir: &Path, parts: &[(&str, f32)]) -> PathBuf {
    let mut all: Vec<i16> = vec![0; (RATE / 2) as usize];
    for (i, (text, pause)) in parts.iter().enumerate() {
        let wav = dir.join(format!("part{i}.wav"));
        let o = Command::new(env!("CARGO_BIN_EXE_voicegate"))
            .args(["speak", text, "--out"])
            .arg(&wav)
            .output()
            .expect("voicegate speak");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut reader = hound::WavReader::open(&wav).expect("piper wav");
        let rate = reader.spec().sample_rate;
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        // Nearest-sample resampling is enough for whisper here.
        let n = samples.len() as u64 * u64::from(RATE) / u64::from(rate);
        all.extend((0..n).map(|k| samples[(k * u64::from(rate) / u64::from(RATE)) as usize]));
        all.extend(std::iter::repeat_n(0, (pause * RATE as f32) as usize));
    }
    write_wav(&dir.join("input.wav"), &all)
}

/// Writes `samples` as a 16 kHz mono 16-bit WAV at `path`.
fn write_wav(path: &Path, samples: &[i16]) -> PathBuf {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for &s in samples {
        w.write_sample(s).expect("write");
    }
    w.finalize().expect("finalize");
    path.to_path_buf()
}

/// The daemon on the default microphone; its stdout and stderr lines come
/// through channels.
struct Daemon {
    child: Child,
    /// Each event with when it was read.
    events: mpsc::Receiver<(Instant, serde_json::Value)>,
    log: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(dir: &Path, model: &Path, pulse: &Pulse) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voicegate"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--json", "--data-dir"])
            .arg(dir.join("data"))
            .args(["run", "--tts", "none", "--model"])
            .arg(model)
            .env("PULSE_SERVER", pulse.server())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("voicegate run");
        let (etx, events) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = etx.send((Instant::now(), v));
                }
            }
        });
        let (ltx, log) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = ltx.send(line);
            }
        });
        Daemon { child, events, log }
    }

    /// Events until one satisfies `done` (returned last), or panics after
    /// `limit` with what came.
    fn events_until(
        &self,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        self.timed_events_until(limit, done)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// [`Daemon::events_until`], each event with when it was read.
    fn timed_events_until(
        &self,
        limit: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<(Instant, serde_json::Value)> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok((at, e)) = self.events.recv_timeout(left) {
                let stop = done(&e);
                seen.push((at, e));
                if stop {
                    return seen;
                }
            }
        }
        let seen: Vec<_> = seen.into_iter().map(|(_, e)| e).collect();
        let log: Vec<String> = self.log.try_iter().collect();
        panic!(
            "not within {limit:?}: {seen:#?}\nvoicegate's log:\n{}",
            log.join("\n")
        );
    }

    /// stderr lines until one contains `text`, or panics after `limit`.
    fn log_until(&self, limit: Duration, text: &str) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(line) = self.log.recv_timeout(left) {
                let found = line.contains(text);
                seen.push(line);
                if found {
                    return seen;
                }
            }
        }
        panic!("no {text:?} on stderr within {limit:?}: {seen:#?}");
    }

    fn stop(mut self) {
        // SIGTERM: the daemon stops cleanly.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("voicegate did not stop within 10 s of SIGTERM");
    }
}

/// A test that fails (panics) must not leave its daemon running.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until a recording stream is attached to the "microphone" and a
/// moment more, so that what is played next is heard from its first
/// sample: the daemon says it is listening once cpal's stream is started,
/// but on a busy machine the sound server may take a while longer to feed
/// it, and speech played before then is simply lost.
fn wait_for_recording(pulse: &Pulse) {
    wait_for_stream_on(pulse, "mic_feed.monitor");
}

/// Waits until something records from `source` on the sound server.
fn wait_for_stream_on(pulse: &Pulse, source: &str) {
    let pactl = |what: &str| {
        let out = Command::new("pactl")
            .args(["list", "short", what])
            .env("PULSE_SERVER", pulse.server())
            .output()
            .expect("pactl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // `list short sources`: index, name, ...; `source-outputs`: index,
    // the source's index, ... (the test's own recorder is on another source).
    let mic = pactl("sources")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.get(1) == Some(&source)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| panic!("no {source} source"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if pactl("source-outputs")
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(mic.as_str()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recording stream on the sound server within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
}

fn play(pulse: &Pulse, wav: &Path) {
    wait_for_recording(pulse);
    // Low latency, as a microphone's: its null sink then gives voicegate
    // audio in small pieces, not a block of seconds at a time.
    let ok = Command::new("paplay")
        .args(["--latency-msec=20", "-d", "mic_feed"])
        .arg(wav)
        .env("PULSE_SERVER", pulse.server())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "paplay failed");
}

/// Plays a 300 ms beep into the speaker and returns when it was started:
/// a mark on the recording's own clock, which starts some time after
/// `parecord` does (connecting to the server, on a busy machine).
fn mark(pulse: &Pulse, dir: &Path) -> Instant {
    let beep: Vec<i16> = (0..RATE * 3 / 10)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            (0.3 * (std::f32::consts::TAU * 1_000.0 * t).sin() * 32767.0) as i16
        })
        .collect();
    let path = write_wav(&dir.join("mark.wav"), &beep);
    let at = Instant::now();
    let ok = Command::new("paplay")
        .args(["-d", "speaker"])
        .arg(&path)
        .env("PULSE_SERVER", pulse.server())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "paplay (the mark) failed");
    at
}

/// Stretches of sound in 16 kHz mono s16 samples: (start, end) in
/// seconds, 20 ms frames above an RMS of 0.02, gaps under 0.3 s merged.
fn bursts(samples: &[i16]) -> Vec<(f32, f32)> {
    let frame = (RATE / 50) as usize;
    let mut out: Vec<(f32, f32)> = Vec::new();
    for (i, f) in samples.chunks(frame).enumerate() {
        let rms = (f
            .iter()
            .map(|&s| (f32::from(s) / 32768.0).powi(2))
            .sum::<f32>()
            / f.len() as f32)
            .sqrt();
        if rms < 0.02 {
            continue;
        }
        let (start, end) = (i as f32 * 0.02, (i + 1) as f32 * 0.02);
        match out.last_mut() {
            Some(last) if start - last.1 < 0.3 => last.1 = end,
            _ => out.push((start, end)),
        }
    }
    out
}

/// "Jarvis" — a pause — "set a timer for two seconds", played into the
/// server's microphone: voicegate wakes and chimes, sets the timer, and
/// rings; both sounds come out of the speaker, each when it is due, and
/// the chime does not cut the command.
#[test]
fn the_microphone_and_speaker_run_through_a_real_sound_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((pulse, model)) = needs(dir.path()) else {
        return;
    };
    let input = spoken(
        dir.path(),
        &[("Jarvis.", 1.5), ("Set a timer for two seconds.", 1.0)],
    );
    let recording = dir.path().join("speaker.raw");
    // A low latency for the recorder: with parecord's default (seconds),
    // the null sink renders in blocks that long, and a new stream on it
    // (the chime's) waits up to a block before it is played.
    let mut recorder = Command::new("parecord")
        .args([
            "--latency-msec=20",
            "-d",
            "speaker.monitor",
            "--raw",
            "--format=s16le",
            "--rate=16000",
            "--channels=1",
        ])
        .arg(&recording)
        .env("PULSE_SERVER", pulse.server())
        .spawn()
        .expect("parecord");
    // The mark is the recording's first sound: where it is in the
    // recording and when it was played set the recording's clock.
    wait_for_stream_on(&pulse, "speaker.monitor");
    std::thread::sleep(Duration::from_secs(2));
    let marked = mark(&pulse, dir.path());
    let daemon = Daemon::start(dir.path(), &model, &pulse);
    daemon.log_until(Duration::from_secs(60), "microphone: listening on");
    play(&pulse, &input);
    let events = daemon.timed_events_until(Duration::from_secs(60), |e| {
        e["text"]
            .as_str()
            .is_some_and(|t| t.contains("timer is done"))
    });
    // Seconds after the mark at which an event was read.
    let when = |kind: &str| {
        events
            .iter()
            .find(|(_, e)| e["event"] == kind)
            .map(|(at, _)| at.duration_since(marked).as_secs_f32())
            .unwrap_or_else(|| panic!("no {kind} event: {events:#?}"))
    };
    let (woke, understood) = (when("wake"), when("intent"));
    let (done_at, _) = events.last().expect("the ring");
    let rang = done_at.duration_since(marked).as_secs_f32();
    let intent = &events
        .iter()
        .find(|(_, e)| e["event"] == "intent")
        .expect("intent")
        .1;
    assert_eq!(intent["intent"], "StartTimer", "{events:#?}");
    assert_eq!(intent["slots"]["seconds"], 2, "{events:#?}");
    // Let the ring sound for a while (its first round reaches the sink
    // up to ~2 s after the event through PulseAudio's ALSA plugin), then
    // stop everything.
    std::thread::sleep(Duration::from_secs(5));
    daemon.stop();
    let _ = recorder.kill();
    let _ = recorder.wait();
    let bytes = std::fs::read(&recording).expect("recording");
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // The chime came out of the speaker between the wake word and the
    // command, and the ring when it was due: sound, not silence, from when
    // the timer was said to be done. Times are from the mark (the
    // recording's first burst); the margins allow for output latency and
    // for stdout's. That the command was understood whole (two seconds)
    // shows the chime's muting did not cut it.
    let all = bursts(&samples);
    let (mark_at, _) = *all.first().expect("the mark was recorded");
    let sounding_in = |from: f32, to: f32| -> f32 {
        all[1..]
            .iter()
            .map(|&(a, b)| (b - mark_at).min(to) - (a - mark_at).max(from))
            .map(|d| d.max(0.0))
            .sum()
    };
    let ring = sounding_in(rang - 0.5, rang + 5.0);
    assert!(
        ring >= 0.3,
        "no ring after the timer was done ({rang:.2} s after the mark): {all:?}"
    );
    let chime = sounding_in(woke - 0.5, understood);
    assert!(
        chime >= 0.1,
        "no chime between the wake word ({woke:.2} s after the mark) and the command \
         ({understood:.2} s): {all:?}"
    );
    let before = sounding_in(0.0, understood);
    assert!(
        before < 1.0,
        "more sound than a chime before the command was understood: {all:?}"
    );
    assert!(woke < understood, "{events:#?}");
}

/// The sound server goes away mid-run: voicegate says the microphone is
/// lost and retries, neither hanging nor exiting; when the server is back
/// it listens again and hears a command.
#[test]
fn a_microphone_that_disappears_is_reported_and_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((mut pulse, model)) = needs(dir.path()) else {
        return;
    };
    let input = spoken(dir.path(), &[("Jarvis, what time is it?", 1.0)]);
    let daemon = Daemon::start(dir.path(), &model, &pulse);
    daemon.log_until(Duration::from_secs(60), "microphone: listening on");
    pulse.stop();
    daemon.log_until(Duration::from_secs(20), "microphone: lost");
    daemon.log_until(Duration::from_secs(20), "still unavailable after attempt");
    pulse.start().expect("restart pulseaudio");
    daemon.log_until(Duration::from_secs(60), "microphone: back");
    // A stream reopened while the server was still loading may stall once
    // and be reopened again; give it time to settle before speaking.
    std::thread::sleep(Duration::from_secs(5));
    play(&pulse, &input);
    let events = daemon.events_until(Duration::from_secs(60), |e| e["event"] == "intent");
    assert_eq!(
        events.last().expect("intent")["intent"],
        "TellTime",
        "{events:#?}"
    );
    daemon.stop();
}
