//! Speech synthesis for wake-word training: espeak-ng (a Debian package,
//! many voices and variants, formant synthesis) and, when its virtualenv is
//! installed, piper (one natural neural voice, varied by its noise and
//! length scales).
//!
//! Both are external programs: espeak-ng is run once per utterance, piper
//! once per batch (a small Python driver reads requests on stdin and writes
//! raw samples on stdout, so the voice loads once). Everything returned is
//! 16 kHz mono `f32`, edges trimmed. Synthesis is deterministic: espeak-ng
//! has no randomness, and piper's random ops are seeded once per process
//! with a fixed request order.

use std::io::{Read, Write};

use std::process::{Command, Stdio};

use super::WakewordError;
use super::augment::{self, RATE, Rng};
use crate::audio::Resampler;

/// espeak-ng English voices used for training.
pub const ESPEAK_VOICES: &[&str] = &[
    "en-us",
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
];

/// espeak-ng voice variants (`voice+variant`); "" is the voice's own.
pub const ESPEAK_VARIANTS: &[&str] = &[
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
    "klatt2", "klatt3", "klatt4", "klatt6", "croak", "Andy", "Annie", "Alex", "Alicia", "Lee",
    "Michael", "aunty", "belinda", "benjamin", "david", "edward", "grandpa", "john", "linda",
    "max", "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
];

/// One espeak-ng voice setting.
#[derive(Debug, Clone, PartialEq)]
pub struct EspeakVoice {
    /// `-v`: voice, with `+variant` when there is one.
    pub voice: String,
    /// `-s`: words per minute.
    pub speed: u32,
    /// `-p`: pitch, 0–99.
    pub pitch: u32,
}

impl EspeakVoice {
    /// A random voice, variant, speed (110–210 wpm) and pitch (15–85).
    pub fn random(rng: &mut Rng) -> Self {
        let base = rng.pick(ESPEAK_VOICES);
        let variant = rng.pick(ESPEAK_VARIANTS);
        let voice = if variant.is_empty() {
            (*base).to_string()
        } else {
            format!("{base}+{variant}")
        };
        EspeakVoice {
            voice,
            speed: rng.range(110.0, 210.0) as u32,
            pitch: rng.range(15.0, 85.0) as u32,
        }
    }
}

/// The espeak-ng program.
#[derive(Debug, Clone)]
pub struct Espeak {
    /// `espeak-ng --version`, first line.
    pub version: String,
}

impl Espeak {
    /// Finds espeak-ng on the PATH.
    pub fn find() -> Result<Self, WakewordError> {
        let out = Command::new("espeak-ng")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                WakewordError::Synth(format!(
                    "espeak-ng is not installed or not runnable ({e}); \
                     install it with `apt-get install espeak-ng`"
                ))
            })?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(Espeak { version })
    }

    /// Speaks `text`; 16 kHz, edges trimmed.
    pub fn speak(&self, text: &str, voice: &EspeakVoice) -> Result<Vec<f32>, WakewordError> {
        let out = Command::new("espeak-ng")
            .args(["--stdout", "-v", &voice.voice])
            .args([
                "-s",
                &voice.speed.to_string(),
                "-p",
                &voice.pitch.to_string(),
            ])
            .arg("--")
            .arg(text)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| WakewordError::Synth(format!("cannot run espeak-ng: {e}")))?;
        if !out.status.success() {
            return Err(WakewordError::Synth(format!(
                "espeak-ng -v {} failed: {}",
                voice.voice,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let (rate, samples) = parse_wav_i16(&out.stdout)
            .map_err(|e| WakewordError::Synth(format!("espeak-ng output: {e}")))?;
        Ok(trim(&to_16k(rate, &samples)))
    }

    /// Speaks many (text, voice) pairs on `threads` threads; results in
    /// input order.
    pub fn speak_all(
        &self,
        jobs: &[(String, EspeakVoice)],
        threads: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>, WakewordError> {
        let threads = threads.max(1);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<Option<Result<Vec<f32>, WakewordError>>> =
            (0..jobs.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for t in 0..threads {
                let done = &done;
                handles.push(s.spawn(move || {
                    let mut part = Vec::new();
                    for i in (t..jobs.len()).step_by(threads) {
                        let (text, voice) = &jobs[i];
                        part.push((i, self.speak(text, voice)));
                        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        progress(n + 1);
                    }
                    part
                }));
            }
            for h in handles {
                for (i, r) in h.join().unwrap_or_default() {
                    results[i] = Some(r);
                }
            }
        });
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(WakewordError::Synth("a worker failed".into()))))
            .collect()
    }
}

/// One piper utterance request.
#[derive(Debug, Clone, PartialEq)]
pub struct PiperRequest {
    /// What to say.
    pub text: String,
    /// Phoneme duration scale (> 1 is slower).
    pub length_scale: f64,
    /// Variation of the voice.
    pub noise_scale: f64,
    /// Variation of the phoneme durations.
    pub noise_w: f64,
}

impl PiperRequest {
    /// `text` with random scales around the voice's defaults.
    pub fn random(text: &str, rng: &mut Rng) -> Self {
        PiperRequest {
            text: text.to_string(),
            length_scale: rng.range(0.75, 1.35),
            noise_scale: rng.range(0.3, 1.0),
            noise_w: rng.range(0.3, 1.2),
        }
    }
}

use crate::tts::DRIVER;
pub use crate::tts::{PIPER_PACKAGES, Piper};

/// Batch synthesis for training (the voice's own use is `crate::tts`).
impl Piper {
    /// Speaks the requests in order with one piper process seeded with
    /// `seed`; 16 kHz, edges trimmed.
    pub fn speak_batch(
        &self,
        requests: &[PiperRequest],
        seed: u64,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Vec<Vec<f32>>, WakewordError> {
        let err = |m: String| WakewordError::Synth(format!("piper: {m}"));
        let mut child = Command::new(&self.python)
            .arg("-c")
            .arg(DRIVER)
            .arg((seed % (1 << 31)).to_string())
            .env("OMP_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", self.python.display())))?;
        let mut input = String::new();
        for r in requests {
            let line = serde_json::json!({
                "text": r.text,
                "length_scale": r.length_scale,
                "noise_scale": r.noise_scale,
                "noise_w": r.noise_w,
            });
            input.push_str(&line.to_string());
            input.push('\n');
        }
        let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut stdout = child.stdout.take().ok_or_else(|| err("no stdout".into()))?;
        let mut stderr = child.stderr.take().ok_or_else(|| err("no stderr".into()))?;
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let read_u32 = |r: &mut dyn Read| -> Option<u32> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).ok()?;
            Some(u32::from_le_bytes(b))
        };
        let mut outputs = Vec::with_capacity(requests.len());
        let rate = read_u32(&mut stdout);
        if let Some(rate) = rate {
            for i in 0..requests.len() {
                let Some(n) = read_u32(&mut stdout) else {
                    break;
                };
                let mut bytes = vec![0u8; n as usize * 2];
                if stdout.read_exact(&mut bytes).is_err() {
                    break;
                }
                let x: Vec<f32> = bytes
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                    .collect();
                outputs.push(trim(&to_16k(rate, &x)));
                progress(i + 1);
            }
        }
        let _ = writer.join();
        let status = child.wait().map_err(|e| err(e.to_string()))?;
        let stderr = err_reader.join().unwrap_or_default();
        if outputs.len() != requests.len() || !status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(err(format!(
                "stopped after {} of {} utterances ({status}): {}",
                outputs.len(),
                requests.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        Ok(outputs)
    }
}

/// Parses a 16-bit PCM WAV as written by espeak-ng (whose header may give a
/// bogus data length when writing to a pipe: the data runs to the end).
/// Returns the rate and the first channel.
pub fn parse_wav_i16(bytes: &[u8]) -> Result<(u32, Vec<f32>), String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a WAV file".into());
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= bytes.len() {
            let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
            let rate = u32::from_le_bytes([
                bytes[body + 4],
                bytes[body + 5],
                bytes[body + 6],
                bytes[body + 7],
            ]);
            let bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
            fmt = Some((channels, rate, bits));
        } else if id == b"data" {
            let (channels, rate, bits) = fmt.ok_or("data before fmt")?;
            if bits != 16 || channels == 0 {
                return Err(format!(
                    "{bits}-bit, {channels} channels: expected 16-bit PCM"
                ));
            }
            let end = body.saturating_add(len).min(bytes.len());
            let step = 2 * usize::from(channels);
            let x = bytes[body..end]
                .chunks_exact(step)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                .collect();
            return Ok((rate, x));
        }
        pos = body.saturating_add(len + (len & 1));
    }
    Err("no data chunk".into())
}

/// Resamples to 16 kHz.
pub fn to_16k(rate: u32, x: &[f32]) -> Vec<f32> {
    if rate == RATE {
        return x.to_vec();
    }
    let Ok(mut r) = Resampler::new(rate, RATE) else {
        return x.to_vec();
    };
    let mut out = Vec::with_capacity(x.len() * RATE as usize / rate.max(1) as usize + 64);
    r.process(x, &mut out);
    r.flush(&mut out);
    out
}

/// Cuts leading and trailing near-silence (more than 40 dB under the
/// loudest 10 ms), keeping 20 ms each side.
pub fn trim(x: &[f32]) -> Vec<f32> {
    let span = augment::active_span(x, 40.0, (RATE / 50) as usize);
    x[span].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streamed_wav_headers() {
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF\xff\xff\xff\xffWAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes());
        w.extend_from_slice(&22050u32.to_le_bytes());
        w.extend_from_slice(&44100u32.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data\x00\xff\xff\x7f");
        w.extend_from_slice(&16384i16.to_le_bytes());
        w.extend_from_slice(&(-16384i16).to_le_bytes());
        let (rate, x) = parse_wav_i16(&w).unwrap();
        assert_eq!(rate, 22050);
        assert_eq!(x, vec![0.5, -0.5]);
        assert!(parse_wav_i16(b"nonsense").is_err());
    }
}
