//! `voicegate eval speech-to-intent`: the Picovoice speech-to-intent
//! benchmark's method, run through voicegate's own speech path.
//!
//! For each clip: optionally mix in noise at a given SNR (the benchmark's
//! way: scale the noise so that the loudest 2048-sample frame of speech over
//! the loudest of noise equals the SNR, add, normalise the sum to half of
//! full scale); cut the utterance out with the same endpointer the daemon
//! uses; transcribe; match; and score. A clip is **accepted** when the
//! recognised intent is the label's and every labelled slot has the label's
//! value (after trimming whitespace); a recognised slot the label does not
//! have is not a miss.
//!
//! Latency is measured from the end of the clip's audio to the decision
//! (endpointing the buffered clip, transcription and matching); the
//! real-time factor is decode time over audio time.
//!
//! The label's slot names map to ours in one table, [`SLOT_MAP`].
//!
//! [`nlu`] is `voicegate eval nlu`: typed sentences, scored per intent;
//! [`speech`] is `voicegate eval speech`: the same table for recordings,
//! heard through the daemon's audio path.

pub mod nlu;
pub mod speech;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::audio::WavAccept;
use crate::gate::Utterance;
use crate::intent::{IntentSet, Recognition};
use crate::nlu::Understander;
use crate::stt::Transcriber;

/// The benchmark's slot names → the slots of our `OrderDrink` intent.
/// Values are compared as the label spells them (our list values use the
/// same spellings).
pub const SLOT_MAP: [(&str, &str); 6] = [
    ("coffeeDrink", "drink"),
    ("size", "size"),
    ("roast", "roast"),
    ("numberOfShots", "shots"),
    ("milkAmount", "milk"),
    ("sugarAmount", "sugar"),
];

/// The benchmark's intent name → ours.
pub const INTENT_MAP: [(&str, &str); 1] = [("orderDrink", "OrderDrink")];

/// Errors running the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A clip or the noise could not be read, or is not 16 kHz mono.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// The labels file is not what the benchmark ships.
    #[error("labels {path}: {reason}")]
    Labels {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One label: intent and slots.
#[derive(Debug, Clone)]
pub struct Label {
    /// Intent name as the benchmark spells it.
    pub intent: String,
    /// Slots as the benchmark spells them (values trimmed).
    pub slots: BTreeMap<String, String>,
}

/// Reads the benchmark's `labels.json`.
pub fn read_labels(path: &Path) -> Result<BTreeMap<String, Label>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| EvalError::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let mut labels = BTreeMap::new();
    for (file, entry) in map {
        let intent = entry["intent"]
            .as_str()
            .ok_or_else(|| bad(format!("{file}: no intent")))?
            .to_string();
        let slots = entry["slots"]
            .as_object()
            .map(|s| {
                s.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.trim().to_string())))
                    .collect()
            })
            .unwrap_or_default();
        labels.insert(file.clone(), Label { intent, slots });
    }
    Ok(labels)
}

/// Energy of the loudest 2048-sample frame.
fn peak_frame_energy(samples: &[f32]) -> f64 {
    samples
        .chunks(2048)
        .map(|frame| {
            frame
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

/// The factor that puts `noise` at `snr_db` below `speech`, by peak frame energy.
fn noise_scale(speech: &[f32], noise: &[f32], snr_db: f64) -> f64 {
    let noise_peak = peak_frame_energy(noise);
    if noise_peak > 0.0 {
        (peak_frame_energy(speech) / (noise_peak * 10f64.powf(snr_db / 10.0))).sqrt()
    } else {
        0.0
    }
}

/// Mixes `noise` into `speech` at `snr_db` the benchmark's way. The noise is
/// taken from `offset` (wrapping), so each clip gets a different stretch.
pub fn mix(speech: &[f32], noise: &[f32], snr_db: f64, offset: usize) -> Vec<f32> {
    if noise.is_empty() || speech.is_empty() {
        return speech.to_vec();
    }
    let stretch: Vec<f32> = (0..speech.len())
        .map(|i| noise[(offset + i) % noise.len()])
        .collect();
    let scale = noise_scale(speech, &stretch, snr_db);
    let mut mixed: Vec<f32> = speech
        .iter()
        .zip(&stretch)
        .map(|(&s, &n)| s + (scale * f64::from(n)) as f32)
        .collect();
    let max = mixed.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    if max > 0.0 {
        let gain = 0.5 / max;
        for x in &mut mixed {
            *x *= gain;
        }
    }
    mixed
}

/// Where in the noise clip number `index` (in label order) starts: a
/// different stretch for each clip, the same on every run.
pub fn noise_offset(index: usize) -> usize {
    index * 7919 * 16
}

/// Is the recognised result what the label says?
pub fn accepted(label: &Label, intent: Option<&str>, slots: &Map<String, Value>) -> bool {
    let want_intent = INTENT_MAP
        .iter()
        .find(|(theirs, _)| *theirs == label.intent)
        .map(|(_, ours)| *ours);
    if want_intent.is_none() || intent != want_intent {
        return false;
    }
    label.slots.iter().all(|(theirs, value)| {
        let ours = SLOT_MAP.iter().find(|(t, _)| t == theirs).map(|(_, o)| *o);
        match ours.and_then(|o| slots.get(o)) {
            Some(Value::String(got)) => got.trim() == value,
            _ => false,
        }
    })
}

/// One clip's result.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    /// The file name.
    pub file: String,
    /// What whisper heard.
    pub transcript: String,
    /// Its confidence.
    pub confidence: f32,
    /// The intent, if understood.
    pub intent: Option<String>,
    /// The slots, if understood.
    pub slots: Map<String, Value>,
    /// Whether it counts.
    pub accepted: bool,
    /// Accepted, and with a confidence the gate acts on (at or above its
    /// `min_confidence`; below it the gate asks again instead).
    pub sure: bool,
    /// Utterances the endpointer found in the clip.
    pub utterances: usize,
    /// From the end of the audio to the decision, ms.
    pub latency_ms: f64,
}

/// The benchmark's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Clips run.
    pub clips: usize,
    /// Clips accepted.
    pub accepted: usize,
    /// accepted / clips.
    pub acceptance: f64,
    /// Clips accepted with a confidence the gate acts on.
    pub accepted_sure: usize,
    /// Clips in which the endpointer found more than one utterance.
    pub split_clips: usize,
    /// Latency percentiles, ms.
    pub latency_ms: BTreeMap<String, f64>,
    /// Decode time over audio time (of the audio transcribed).
    pub rtf: f64,
    /// SNR of the mixed noise, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_db: Option<f64>,
}

/// The `p`th percentile of sorted values (nearest rank; 0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Cuts the utterances out of a clip, in order, as the daemon's endpointer
/// does on the live stream (the clip itself if no speech is found).
pub type Trim = dyn Fn(&[f32]) -> Vec<Vec<f32>>;

/// Runs every labelled clip in `dir`.
///
/// Every utterance of a clip is handed over, as the daemon hands them to
/// the gate: the first one that is understood is what the daemon acts on
/// (a coffee order is read back; what follows would be the reply), so the
/// clip counts only if *that* reading is right. A spurious first utterance
/// that matches something loses the clip, as it would live; utterances
/// that match nothing are passed over, as the daemon says "sorry" and
/// listens on. `min_confidence` is the gate's threshold, for
/// [`ClipResult::sure`]; a backed reading is as sure as its free reading
/// only where the gate would take it so ([`Utterance::as_command`], with
/// `fallback`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    dir: &Path,
    labels: &BTreeMap<String, Label>,
    noise: Option<(&[f32], f64)>,
    intents: &IntentSet,
    fallback: Option<&Understander>,
    stt: &mut dyn Transcriber,
    trim: &Trim,
    min_confidence: f32,
    mut progress: impl FnMut(&ClipResult),
) -> Result<(Summary, Vec<ClipResult>), EvalError> {
    let mut results = Vec::new();
    let mut audio_secs = 0.0f64;
    let mut decode_secs = 0.0f64;
    for (index, (file, label)) in labels.iter().enumerate() {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let clean = crate::audio::read_wav_mono_16k(&path, WavAccept::Exact16kMono)?;
        let audio = match noise {
            Some((noise, snr)) => mix(&clean, noise, snr, noise_offset(index)),
            None => clean,
        };
        let utterances = trim(&audio);
        // The reading the daemon acts on: the first one understood (or, if
        // none is, the last one heard, for the report).
        let mut acting = (String::new(), 0.0f32, None, Map::new());
        let mut latency_ms = 0.0;
        for utterance in &utterances {
            // The clock starts when the utterance's last sample has arrived.
            let started = Instant::now();
            let (transcript, confidence) = match stt.transcribe(utterance) {
                Ok(t) => {
                    audio_secs += f64::from(t.audio_secs);
                    decode_secs += f64::from(t.decode_secs);
                    // As the gate judges it for a command.
                    let heard = Utterance {
                        confidence: Some(t.confidence),
                        backing: t.backed,
                        ..Utterance::typed(t.text)
                    };
                    let judged = heard.as_command(intents, fallback, &Map::new());
                    (heard.text.clone(), judged.confidence.unwrap_or(0.0))
                }
                Err(_) => (String::new(), 0.0),
            };
            let recognition = intents.recognize(&transcript, &Map::new());
            latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let understood = matches!(recognition, Recognition::Match(_));
            acting = match recognition {
                Recognition::Match(m) => {
                    (transcript, confidence, Some(m.intent.clone()), m.slot_map())
                }
                Recognition::NotUnderstood(_) => (transcript, confidence, None, Map::new()),
            };
            if understood {
                break;
            }
        }
        let (transcript, confidence, intent, slots) = acting;
        let is_accepted = accepted(label, intent.as_deref(), &slots);
        let result = ClipResult {
            file: file.clone(),
            accepted: is_accepted,
            sure: is_accepted && confidence.is_finite() && confidence >= min_confidence,
            utterances: utterances.len(),
            transcript,
            confidence,
            intent,
            slots,
            latency_ms,
        };
        progress(&result);
        results.push(result);
    }
    let accepted_count = results.iter().filter(|r| r.accepted).count();
    let mut latencies: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mut latency = BTreeMap::new();
    latency.insert("p50".to_string(), percentile(&latencies, 50.0));
    latency.insert("p95".to_string(), percentile(&latencies, 95.0));
    let summary = Summary {
        clips: results.len(),
        accepted: accepted_count,
        accepted_sure: results.iter().filter(|r| r.sure).count(),
        split_clips: results.iter().filter(|r| r.utterances > 1).count(),
        acceptance: if results.is_empty() {
            0.0
        } else {
            accepted_count as f64 / results.len() as f64
        },
        latency_ms: latency,
        rtf: if audio_secs > 0.0 {
            decode_secs / audio_secs
        } else {
            0.0
        },
        snr_db: noise.map(|(_, snr)| snr),
    };
    Ok((summary, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(intent: &str, slots: &[(&str, &str)]) -> Label {
        Label {
            intent: intent.into(),
            slots: slots
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn slots(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn scoring_follows_the_benchmark() {
        let l = label("orderDrink", &[("coffeeDrink", "latte"), ("size", "large")]);
        assert!(accepted(
            &l,
            Some("OrderDrink"),
            &slots(&[("drink", "latte"), ("size", "large")])
        ));
        // An extra slot the label does not have is not a miss.
        assert!(accepted(
            &l,
            Some("OrderDrink"),
            &slots(&[("drink", "latte"), ("size", "large"), ("milk", "milk")])
        ));
        assert!(!accepted(
            &l,
            Some("OrderDrink"),
            &slots(&[("drink", "latte")])
        ));
        assert!(!accepted(
            &l,
            Some("OrderDrink"),
            &slots(&[("drink", "mocha"), ("size", "large")])
        ));
        assert!(!accepted(&l, None, &Map::new()));
        assert!(!accepted(
            &l,
            Some("OrderItem"),
            &slots(&[("drink", "latte"), ("size", "large")])
        ));
    }

    #[test]
    fn mixing_hits_the_snr_and_half_scale() {
        let speech: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let noise: Vec<f32> = (0..9000)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        let mixed = mix(&speech, &noise, 6.0, 0);
        let max = mixed.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        assert!((max - 0.5).abs() < 1e-4, "{max}");
        for snr in [24.0, 6.0, 0.0] {
            let stretch: Vec<f32> = (0..speech.len()).map(|i| noise[i % noise.len()]).collect();
            let scale = noise_scale(&speech, &stretch, snr);
            let scaled: Vec<f32> = stretch
                .iter()
                .map(|&n| (f64::from(n) * scale) as f32)
                .collect();
            let got = 10.0 * (peak_frame_energy(&speech) / peak_frame_energy(&scaled)).log10();
            assert!((got - snr).abs() < 0.01, "{got} vs {snr}");
        }
    }
}
