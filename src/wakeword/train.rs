//! `voicegate wakeword train "PHRASE" --out FILE`: makes the first-stage
//! rustpotter model for any phrase.
//!
//! The recipe, in order:
//!
//! 1. **Speech**: the phrase and many other words and phrases ([`NEGATIVE_TEXTS`])
//!    spoken by espeak-ng (random voice, variant, speed, pitch) and, when its
//!    virtualenv exists, piper (random noise and length scales).
//! 2. **Recordings**: `--samples DIR` (the phrase, any WAV) and
//!    `--negatives DIR` (anything else), resampled to 16 kHz.
//! 3. **Clips**: every utterance becomes one or more fixed-length clips
//!    ([`augment`]): speed, reverberation, placement in the clip, background
//!    noise or speech at a random SNR, gain. Positives end near the end of the
//!    clip, as the keyword does in the detector's sliding window when it
//!    fires. Generated noises and silence are added as negatives.
//! 4. **Features**: rustpotter's own MFCC extraction (through
//!    `WakewordRef::new_from_sample_buffers`, one clip at a time), so the
//!    model sees exactly what the detector computes.
//! 5. **Training**: the network rustpotter's `WakewordModel` describes
//!    (tiny/small/medium/large: two or three dense layers, ReLU), trained
//!    here with mini-batch AdamW in plain Rust (see [`Mlp`] for why not
//!    `WakewordModelTrain::train_from_buffers`), then saved as a rustpotter
//!    `.rpw` file with rustpotter's `WakewordSave`.
//! 6. **Manifest**: `FILE.json` beside the model: phrase, seed, options,
//!    tool versions, inputs (with sha256s), held-out accuracy, output sha256.
//!
//! Everything random comes from one seed, so the same command on the same
//! inputs and tool versions writes the same bytes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use rustpotter::{
    ModelType, TensorData, WakewordLoad, WakewordModel, WakewordRef, WakewordRefBuildFromBuffers,
    WakewordSave,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::augment::{self, NoiseKind, RATE, Rng};
use super::synth::{Espeak, EspeakVoice, Piper, PiperRequest};
use super::{Split, WakewordError, split_of};

/// Model sizes (rustpotter's `ModelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// One hidden layer of frames/15 units.
    Tiny,
    /// Hidden layers of frames/6 and frames/12 units.
    Small,
    /// Hidden layers of frames/3 and frames/6 units.
    Medium,
    /// Hidden layers of 2·frames/3 and frames/6 units.
    Large,
}

impl Size {
    fn model_type(self) -> ModelType {
        match self {
            Size::Tiny => ModelType::Tiny,
            Size::Small => ModelType::Small,
            Size::Medium => ModelType::Medium,
            Size::Large => ModelType::Large,
        }
    }

    /// Layer widths for `frames` MFCC frames of `mfcc` coefficients, as
    /// rustpotter 3.0.2 builds them (`wakeword_nn.rs`).
    fn widths(self, frames: usize, mfcc: usize, labels: usize) -> Vec<usize> {
        let shifts = 3; // MFCCS_EXTRACTOR_OUT_SHIFTS
        let input = frames * mfcc;
        match self {
            Size::Tiny => vec![input, frames / (shifts * 5), labels],
            Size::Small => {
                let h1 = frames / (shifts * 2);
                vec![input, h1, h1 / 2, labels]
            }
            Size::Medium => vec![input, frames / shifts, frames / (shifts * 2), labels],
            Size::Large => vec![input, frames / shifts * 2, frames / (shifts * 2), labels],
        }
    }
}

/// Which recordings of `--samples` to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplesSplit {
    /// Every file.
    All,
    /// Only files whose name hashes into the training split, so that the
    /// others stay unseen for validation (see `split_of`).
    Train,
}

/// The default seed of `--seed`.
pub const DEFAULT_SEED: u64 = 1;

/// `voicegate wakeword train`
#[derive(Debug, Clone, Args, Serialize)]
pub struct TrainArgs {
    /// The phrase to wake on.
    pub phrase: String,
    /// The model file to write (a FILE.json manifest is written beside it).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Recordings of the phrase (WAV, any rate and channels), each augmented
    /// into --sample-copies clips.
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
    /// Use all files of --samples, or only those in the training split.
    #[arg(long, value_enum, default_value = "all")]
    pub samples_split: SamplesSplit,
    /// Recordings of anything but the phrase (WAV), cut into clips.
    #[arg(long, value_name = "DIR")]
    pub negatives: Option<PathBuf>,
    /// Seed of everything random (synthesis settings, augmentation, weights).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Network size (rustpotter model type).
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// Training passes over the clips.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// AdamW learning rate (cosine-decayed to zero).
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Clips per mini-batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Clip (and detector window) length in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub clip_ms: u32,
    /// MFCC coefficients per frame.
    #[arg(long, default_value_t = 16)]
    pub mfcc_size: u16,
    /// espeak-ng utterances of the phrase.
    #[arg(long, default_value_t = 600)]
    pub espeak_positives: usize,
    /// piper utterances of the phrase (when piper is installed).
    #[arg(long, default_value_t = 200)]
    pub piper_positives: usize,
    /// Augmented clips per synthetic utterance of the phrase.
    #[arg(long, default_value_t = 4)]
    pub copies: usize,
    /// Augmented clips per recording of --samples.
    #[arg(long, default_value_t = 60)]
    pub sample_copies: usize,
    /// espeak-ng utterances of other words and phrases.
    #[arg(long, default_value_t = 2400)]
    pub espeak_negatives: usize,
    /// piper utterances of other words and phrases.
    #[arg(long, default_value_t = 400)]
    pub piper_negatives: usize,
    /// Augmented clips per negative utterance.
    #[arg(long, default_value_t = 2)]
    pub negative_copies: usize,
    /// Clips of generated noise and silence.
    #[arg(long, default_value_t = 800)]
    pub noise_clips: usize,
    /// Clips cut from each file of --negatives.
    #[arg(long, default_value_t = 20)]
    pub negatives_per_file: usize,
    /// Python with piper installed (default: the virtualenv that
    /// scripts/setup-tts.sh makes, if present).
    #[arg(long, value_name = "PATH")]
    pub piper_python: Option<PathBuf>,
    /// Do not use piper even when installed.
    #[arg(long)]
    pub no_piper: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    #[serde(skip)]
    pub threads: Option<usize>,
}

/// Runs `wakeword train`.
pub fn run(args: TrainArgs, json: bool, out: &mut dyn Write) -> Result<i32, WakewordError> {
    let report = train(&args)?;
    let w = |e: std::io::Error| WakewordError::Write {
        path: PathBuf::from("<stdout>"),
        reason: e.to_string(),
    };
    if json {
        let summary = serde_json::json!({
            "model": report.model_path,
            "manifest": report.manifest_path,
            "phrase": report.manifest.phrase,
            "sha256": report.manifest.output.sha256,
            "bytes": report.manifest.output.bytes,
            "clips": report.manifest.clips,
            "test": report.manifest.test,
            "elapsed_seconds": report.manifest.elapsed_seconds,
        });
        writeln!(out, "{summary}").map_err(w)?;
    } else {
        let m = &report.manifest;
        writeln!(out, "model     {}", report.model_path.display()).map_err(w)?;
        writeln!(out, "manifest  {}", report.manifest_path.display()).map_err(w)?;
        writeln!(
            out,
            "clips     {} positive, {} negative (train); {} held out",
            m.clips.train_positive, m.clips.train_negative, m.clips.test
        )
        .map_err(w)?;
        writeln!(
            out,
            "held out  accuracy {:.2}%, recall {:.2}%, false positives {:.2}%",
            100.0 * m.test.accuracy,
            100.0 * m.test.recall,
            100.0 * m.test.false_positive_rate
        )
        .map_err(w)?;
        writeln!(out, "sha256    {}", m.output.sha256).map_err(w)?;
        writeln!(out, "time      {:.0} s", m.elapsed_seconds).map_err(w)?;
    }
    Ok(0)
}

/// What [`train`] wrote.
#[derive(Debug)]
pub struct TrainReport {
    /// The model.
    pub model_path: PathBuf,
    /// The manifest.
    pub manifest_path: PathBuf,
    /// Its content.
    pub manifest: Manifest,
}

/// The manifest written beside the model (`FILE.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The phrase.
    pub phrase: String,
    /// The label inside the model.
    pub label: String,
    /// `--seed`.
    pub seed: u64,
    /// Every option.
    pub options: TrainArgs,
    /// Versions of what made the model.
    pub tools: Tools,
    /// Synthetic utterances by source, and the recordings.
    pub inputs: Inputs,
    /// Clip counts.
    pub clips: ClipCounts,
    /// The model's shape.
    pub model: ModelInfo,
    /// Accuracy on held-out synthetic clips (utterances never trained on).
    pub test: TestFigures,
    /// The model file.
    pub output: OutputInfo,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
}

/// Tool versions.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    /// This program.
    pub voicegate: String,
    /// The rustpotter crate.
    pub rustpotter: String,
    /// `espeak-ng --version`.
    pub espeak_ng: String,
    /// Python package versions, when piper was used.
    pub piper: Option<HashMap<String, String>>,
}

/// What went in.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Synthetic utterances of the phrase, by source.
    pub positive_utterances: HashMap<String, usize>,
    /// Synthetic utterances of other texts, by source.
    pub negative_utterances: HashMap<String, usize>,
    /// Distinct negative texts.
    pub negative_texts: usize,
    /// `--samples` recordings.
    pub samples: Vec<InputFile>,
    /// `--negatives` recordings.
    pub negatives: Vec<InputFile>,
}

/// One recording.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    /// File name.
    pub name: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its split.
    pub split: Split,
    /// Whether it was used (`--samples-split train` skips validation files).
    pub used: bool,
}

/// Clip counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipCounts {
    /// Positive training clips.
    pub train_positive: usize,
    /// Negative training clips.
    pub train_negative: usize,
    /// Held-out clips.
    pub test: usize,
    /// Training clips by kind.
    pub by_kind: HashMap<String, usize>,
}

/// The model's shape.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// rustpotter model type.
    pub size: Size,
    /// MFCC frames per window.
    pub frames: usize,
    /// Layer widths, input first.
    pub layers: Vec<usize>,
    /// Number of weights.
    pub parameters: usize,
    /// Final training loss.
    pub train_loss: f64,
}

/// Held-out figures (argmax decision).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestFigures {
    /// Fraction correct.
    pub accuracy: f64,
    /// Fraction of positive clips classified positive.
    pub recall: f64,
    /// Fraction of negative clips classified positive.
    pub false_positive_rate: f64,
    /// Positive clips.
    pub positives: usize,
    /// Negative clips.
    pub negatives: usize,
}

/// The model file.
#[derive(Debug, Clone, Serialize)]
pub struct OutputInfo {
    /// File name.
    pub file: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Size.
    pub bytes: u64,
}

/// The manifest's path for a model path: `FILE.json`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Writes the manifest as pretty JSON.
pub fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), WakewordError> {
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| WakewordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| WakewordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn log(msg: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[wakeword train {t:6.1}s] {msg}");
}

/// The label of the phrase inside the model (rustpotter lower-cases it).
pub fn label_of(phrase: &str) -> String {
    phrase.trim().to_lowercase()
}

/// A clip to be turned into features.
struct Clip {
    samples: Vec<f32>,
    positive: bool,
    test: bool,
    kind: &'static str,
    /// The window offsets (in MFCC frames) at which the clip keeps its label.
    offsets: (usize, usize),
}

/// Samples a clip is longer than the detector window: each epoch takes a
/// window at a random offset, so the network sees the keyword at many
/// positions (as the sliding detector window does) without more clips.
const SHIFT_SAMPLES: usize = 4800;
/// The same in MFCC frames (10 ms each).
const SHIFT_FRAMES: usize = SHIFT_SAMPLES / 160;
/// Offsets for clips whose label does not depend on the window.
const ALL_OFFSETS: (usize, usize) = (0, SHIFT_FRAMES);

/// Source utterances.
struct Utterance {
    audio: Vec<f32>,
    test: bool,
    kind: &'static str,
}

/// Trains and writes the model and manifest.
pub fn train(args: &TrainArgs) -> Result<TrainReport, WakewordError> {
    let started = Instant::now();
    let phrase = args.phrase.trim();
    if phrase.is_empty() {
        return Err(WakewordError::Usage("the phrase is empty".into()));
    }
    if args.epochs == 0 || args.batch_size == 0 || !(500..=3000).contains(&args.clip_ms) {
        return Err(WakewordError::Usage(
            "--epochs and --batch-size must be positive and --clip-ms in 500..=3000".into(),
        ));
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let espeak = Espeak::find()?;
    let piper = if args.no_piper {
        None
    } else {
        Piper::find(args.piper_python.as_deref())?
    };
    if piper.is_none() && !args.no_piper {
        log(
            "piper not found (run scripts/setup-tts.sh for a second, natural voice): espeak-ng only",
        );
    }
    let clip_len = (args.clip_ms as usize * RATE as usize / 1000) / 480 * 480;
    // Clips are longer than the window by SHIFT_SAMPLES; training takes a
    // random window of each clip every epoch (see `Dataset`).
    let ext_len = clip_len + SHIFT_SAMPLES;
    let mut rng = Rng::new(args.seed);

    // 1. Recordings first: a bad file should fail before minutes of synthesis.
    let (samples, sample_files) = match &args.samples {
        Some(dir) => load_dir(dir, Some(args.samples_split))?,
        None => (Vec::new(), Vec::new()),
    };
    if args.samples.is_some() && samples.is_empty() {
        return Err(WakewordError::Usage(format!(
            "no usable WAV files in {}",
            args.samples
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        )));
    }
    let (neg_recordings, negative_files) = match &args.negatives {
        Some(dir) => load_dir(dir, None)?,
        None => (Vec::new(), Vec::new()),
    };

    // 2. Synthesis.
    let texts = negative_texts(phrase);
    let phrase_texts = phrase_variants(phrase);
    let mut espeak_jobs: Vec<(String, EspeakVoice)> = Vec::new();
    for _ in 0..args.espeak_positives {
        espeak_jobs.push((
            rng.pick(&phrase_texts).clone(),
            EspeakVoice::random(&mut rng),
        ));
    }
    for _ in 0..args.espeak_negatives {
        espeak_jobs.push((rng.pick(&texts).clone(), EspeakVoice::random(&mut rng)));
    }
    let mut piper_jobs: Vec<PiperRequest> = Vec::new();
    if piper.is_some() {
        for _ in 0..args.piper_positives {
            let t = rng.pick(&phrase_texts).clone();
            piper_jobs.push(PiperRequest::random(&t, &mut rng));
        }
        for _ in 0..args.piper_negatives {
            let t = rng.pick(&texts).clone();
            piper_jobs.push(PiperRequest::random(&t, &mut rng));
        }
    }
    log(&format!(
        "synthesising {} espeak-ng and {} piper utterances",
        espeak_jobs.len(),
        piper_jobs.len()
    ));
    let total = espeak_jobs.len();
    let progress = move |n: usize| {
        if n.is_multiple_of(500) || n == total {
            log(&format!("espeak-ng {n}/{total}"));
        }
    };
    let (espeak_audio, piper_audio) = std::thread::scope(|s| {
        // piper runs beside espeak-ng (one process per half of the requests).
        let piper_handle = piper.as_ref().map(|p| {
            let jobs = &piper_jobs;
            let seed = args.seed;
            s.spawn(move || -> Result<Vec<Vec<f32>>, WakewordError> {
                let half = jobs.len() / 2;
                let (a, b) = jobs.split_at(half);
                let pt = jobs.len();
                let prog = move |n: usize| {
                    if n.is_multiple_of(100) {
                        log(&format!("piper {n}/{}", pt / 2));
                    }
                };
                let (ra, rb) = std::thread::scope(|s2| {
                    let ha = s2.spawn(|| p.speak_batch(a, seed, &prog));
                    let rb = p.speak_batch(b, seed.wrapping_add(1), &|_| {});
                    (ha.join(), rb)
                });
                let mut out = ra.map_err(|_| WakewordError::Synth("piper worker".into()))??;
                out.extend(rb?);
                Ok(out)
            })
        });
        let e = espeak.speak_all(&espeak_jobs, threads, &progress);
        let p = piper_handle.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(WakewordError::Synth("piper worker".into())))
        });
        (e, p)
    });
    let espeak_audio = espeak_audio?;
    let piper_audio = piper_audio.transpose()?.unwrap_or_default();

    let mut pos_utts: Vec<Utterance> = Vec::new();
    let mut neg_utts: Vec<Utterance> = Vec::new();
    for (i, a) in espeak_audio.into_iter().enumerate() {
        let test = i % 10 == 9;
        if a.len() < 1600 {
            continue;
        }
        if i < args.espeak_positives {
            pos_utts.push(Utterance {
                audio: a,
                test,
                kind: "espeak",
            });
        } else {
            neg_utts.push(Utterance {
                audio: a,
                test,
                kind: "espeak",
            });
        }
    }
    for (i, a) in piper_audio.into_iter().enumerate() {
        let test = i % 10 == 9;
        if a.len() < 1600 {
            continue;
        }
        if i < args.piper_positives {
            pos_utts.push(Utterance {
                audio: a,
                test,
                kind: "piper",
            });
        } else {
            neg_utts.push(Utterance {
                audio: a,
                test,
                kind: "piper",
            });
        }
    }
    let mut positive_utterances = HashMap::new();
    let mut negative_utterances = HashMap::new();
    for u in &pos_utts {
        *positive_utterances.entry(u.kind.to_string()).or_insert(0) += 1;
    }
    for u in &neg_utts {
        *negative_utterances.entry(u.kind.to_string()).or_insert(0) += 1;
    }

    // 3. Clips.
    log("augmenting");
    let mut clips: Vec<Clip> = Vec::new();
    let neg_pool: Vec<&[f32]> = neg_utts.iter().map(|u| u.audio.as_slice()).collect();
    for u in &pos_utts {
        for _ in 0..args.copies {
            let (samples, offsets) = positive_clip(&u.audio, ext_len, &neg_pool, &mut rng);
            clips.push(Clip {
                samples,
                positive: true,
                test: u.test,
                kind: u.kind,
                offsets,
            });
        }
    }
    for s in &samples {
        let trimmed = {
            let span = augment::active_span(s, 30.0, 1600);
            s[span].to_vec()
        };
        for _ in 0..args.sample_copies {
            let (samples, offsets) = positive_clip(&trimmed, ext_len, &neg_pool, &mut rng);
            clips.push(Clip {
                samples,
                positive: true,
                test: false,
                kind: "recording",
                offsets,
            });
        }
    }
    for u in &neg_utts {
        for _ in 0..args.negative_copies {
            let samples = negative_speech_clip(&u.audio, ext_len, &mut rng);
            clips.push(Clip {
                samples,
                positive: false,
                test: u.test,
                kind: u.kind,
                offsets: ALL_OFFSETS,
            });
        }
    }
    for i in 0..args.noise_clips {
        let samples = noise_clip(ext_len, &mut rng);
        clips.push(Clip {
            samples,
            positive: false,
            test: i % 10 == 9,
            kind: "noise",
            offsets: ALL_OFFSETS,
        });
    }
    for r in &neg_recordings {
        for _ in 0..args.negatives_per_file {
            let samples = recording_crop(r, ext_len, &mut rng);
            clips.push(Clip {
                samples,
                positive: false,
                test: false,
                kind: "negative-recording",
                offsets: ALL_OFFSETS,
            });
        }
    }
    drop(pos_utts);
    drop(neg_utts);

    // 4. Features.
    log(&format!("computing MFCCs of {} clips", clips.len()));
    let features = mfccs(&clips, args.mfcc_size, threads)?;
    let mfcc = usize::from(args.mfcc_size);
    let frames = features
        .first()
        .map_or(0, |f| f.len() / mfcc)
        .saturating_sub(SHIFT_FRAMES);
    let rms_level = rms_level(&clips);
    let mut train_set = Dataset::new(frames, mfcc);
    let mut test_set = Dataset::new(frames, mfcc);
    let mut counts = ClipCounts::default();
    for (clip, f) in clips.iter().zip(features) {
        let label = usize::from(clip.positive);
        let (lo, hi) = (
            clip.offsets.0.min(SHIFT_FRAMES),
            clip.offsets.1.min(SHIFT_FRAMES),
        );
        if clip.test {
            test_set.push(f, label, (lo, hi));
            counts.test += 1;
        } else {
            train_set.push(f, label, (lo, hi));
            if clip.positive {
                counts.train_positive += 1;
            } else {
                counts.train_negative += 1;
            }
            let kind = format!(
                "{}-{}",
                if clip.positive {
                    "positive"
                } else {
                    "negative"
                },
                clip.kind
            );
            *counts.by_kind.entry(kind).or_insert(0) += 1;
        }
    }
    drop(clips);
    if counts.train_positive == 0 || counts.train_negative == 0 {
        return Err(WakewordError::Train(
            "need both positive and negative clips; raise the clip counts".into(),
        ));
    }

    // 5. Training.
    let widths = args.size.widths(frames, usize::from(args.mfcc_size), 2);
    if widths.contains(&0) {
        return Err(WakewordError::Usage(format!(
            "--clip-ms {} is too short for a {:?} model",
            args.clip_ms, args.size
        )));
    }
    let mut mlp = Mlp::new(&widths, &mut Rng::derive(args.seed, 0x5EED));
    log(&format!(
        "training a {:?} network {:?} ({} weights) on {} clips, {} epochs",
        args.size,
        widths,
        mlp.parameters(),
        train_set.len(),
        args.epochs
    ));
    let opts = TrainOptions {
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        batch_size: args.batch_size,
        weight_decay: 0.01,
        threads,
    };
    let train_loss = mlp.train(
        &train_set,
        &opts,
        &mut Rng::derive(args.seed, 0xBA7C),
        &|e, loss| {
            log(&format!("epoch {e}: loss {loss:.4}"));
        },
    );
    let test = evaluate(&mlp, &test_set);
    log(&format!(
        "held out: accuracy {:.2}%, recall {:.2}%, false positives {:.2}%",
        100.0 * test.accuracy,
        100.0 * test.recall,
        100.0 * test.false_positive_rate
    ));

    // 6. Output.
    let label = label_of(phrase);
    let model = WakewordModel {
        labels: vec!["none".to_string(), label.clone()],
        train_size: frames,
        mfcc_size: args.mfcc_size,
        m_type: args.size.model_type(),
        weights: mlp.weights(),
        rms_level,
    };
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| WakewordError::Write {
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    let bytes = canonical_model_bytes(model)?;
    std::fs::write(&args.out, &bytes).map_err(|e| WakewordError::Write {
        path: args.out.clone(),
        reason: e.to_string(),
    })?;
    let manifest = Manifest {
        phrase: phrase.to_string(),
        label,
        seed: args.seed,
        options: args.clone(),
        tools: Tools {
            voicegate: env!("CARGO_PKG_VERSION").to_string(),
            rustpotter: "3.0.2".to_string(),
            espeak_ng: espeak.version.clone(),
            piper: piper.as_ref().map(|p| p.versions.iter().cloned().collect()),
        },
        inputs: Inputs {
            positive_utterances,
            negative_utterances,
            negative_texts: texts.len(),
            samples: sample_files,
            negatives: negative_files,
        },
        clips: counts,
        model: ModelInfo {
            size: args.size,
            frames,
            parameters: mlp.parameters(),
            layers: widths,
            train_loss,
        },
        test,
        output: OutputInfo {
            file: args
                .out
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
        },
        elapsed_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    let mpath = manifest_path(&args.out);
    write_manifest(&mpath, &manifest)?;
    log(&format!(
        "wrote {} and {}",
        args.out.display(),
        mpath.display()
    ));
    Ok(TrainReport {
        model_path: args.out.clone(),
        manifest_path: mpath,
        manifest,
    })
}

/// The model file's bytes, the same on every run. rustpotter keeps the
/// weights in a `HashMap` with a random hasher, so `save_to_buffer` writes
/// them in a different order each time; here the CBOR map of weights is
/// rebuilt with its entries sorted by name: the model is serialised with no
/// weights and with each weight alone, and the entries are spliced into one
/// map (header `0xA0 + n`). rustpotter reads the result back (checked).
fn canonical_model_bytes(model: WakewordModel) -> Result<Vec<u8>, WakewordError> {
    let err = |m: String| WakewordError::Train(format!("serialising the model: {m}"));
    let WakewordModel {
        labels,
        train_size,
        mfcc_size,
        m_type,
        weights,
        rms_level,
    } = model;
    let with = |w: HashMap<String, TensorData>| -> Result<Vec<u8>, WakewordError> {
        WakewordModel {
            labels: labels.clone(),
            train_size,
            mfcc_size,
            m_type: m_type.clone(),
            weights: w,
            rms_level,
        }
        .save_to_buffer()
        .map_err(err)
    };
    let empty = with(HashMap::new())?;
    let mut names: Vec<String> = weights.keys().cloned().collect();
    names.sort();
    if names.len() >= 24 {
        return Err(err("too many tensors".into()));
    }
    let mut weights = weights;
    let mut entries = Vec::new();
    let mut split = None;
    for name in &names {
        let t = weights
            .remove(name)
            .ok_or_else(|| err("missing tensor".into()))?;
        let one = with(HashMap::from([(name.clone(), t)]))?;
        let p = empty
            .iter()
            .zip(&one)
            .position(|(a, b)| a != b)
            .ok_or_else(|| err("no weights map".into()))?;
        if empty[p] != 0xA0 || one[p] != 0xA1 {
            return Err(err("unexpected encoding".into()));
        }
        let suffix = empty.len() - p - 1;
        entries.extend_from_slice(&one[p + 1..one.len() - suffix]);
        split = Some(p);
    }
    let p = split.ok_or_else(|| err("no weights".into()))?;
    let mut out = Vec::with_capacity(empty.len() + entries.len());
    out.extend_from_slice(&empty[..p]);
    out.push(0xA0 + names.len() as u8);
    out.extend_from_slice(&entries);
    out.extend_from_slice(&empty[p + 1..]);
    rustpotter::WakewordModel::load_from_buffer(&out)
        .map_err(|e| err(format!("rustpotter cannot read it back: {e}")))?;
    Ok(out)
}

/// Reads every `.wav` in `dir` (sorted by name) as 16 kHz mono. With a
/// split, files outside it are listed but not used.
fn load_dir(
    dir: &Path,
    split: Option<SamplesSplit>,
) -> Result<(Vec<Vec<f32>>, Vec<InputFile>), WakewordError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WakewordError::Audio {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    let mut audio = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let bytes = std::fs::read(&path).map_err(|e| WakewordError::Audio {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let file_split = split_of(&name);
        let used = match split {
            Some(SamplesSplit::Train) => file_split == Split::Train,
            _ => true,
        };
        if used {
            audio.push(read_wav(&path)?);
        }
        files.push(InputFile {
            sha256: hex::encode(Sha256::digest(&bytes)),
            name,
            split: file_split,
            used,
        });
    }
    Ok((audio, files))
}

/// A WAV file as 16 kHz mono.
pub fn read_wav(path: &Path) -> Result<Vec<f32>, WakewordError> {
    let mut source =
        crate::audio::WavSource::open(path, false).map_err(|e| WakewordError::Audio {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    let mut buf = vec![0f32; 4096];
    loop {
        let n =
            crate::audio::read_full(&mut source, &mut buf).map_err(|e| WakewordError::Audio {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    if out.is_empty() {
        return Err(WakewordError::Audio {
            path: path.to_path_buf(),
            reason: "no audio".into(),
        });
    }
    Ok(out)
}

/// Other words and phrases spoken as negatives: common words, home
/// assistant commands, names, and words that share sounds with typical wake
/// words. One per line.
pub const NEGATIVE_TEXTS: &str = "\
the|a|and|yes|no|okay|hello|hi|hey|thanks|thank you|please|sorry|what|why|how|when|where|who
one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundred|thousand
today|tomorrow|tonight|morning|evening|weekend|monday|friday|sunday|minute|hour|second
water|coffee|tea|milk|sugar|latte|espresso|cappuccino|mocha|small|medium|large|cup|mug
light|lights|lamp|kitchen|bedroom|living room|bathroom|garage|garden|door|window|music
play|pause|stop|start|next|previous|louder|quieter|volume|mute|skip|repeat|shuffle
timer|alarm|reminder|weather|news|calendar|shopping list|temperature|thermostat
turn on the lights|turn off the lights|set a timer for ten minutes|what time is it
what's the weather like|play some music|stop the music|turn up the volume|turn it down
open the garage door|lock the front door|close the blinds|dim the bedroom lights
set an alarm for seven|remind me to call mom|add milk to the shopping list
how is the traffic|tell me a joke|what's on my calendar|call my sister
good morning|good night|see you later|i'm home|never mind|cancel that|that's all
jars|jar|jazz|jarring|jargon|jersey|jealous|journey|jogging|july|june|jury|justice
service|nervous|harvest|carvings|marvin|martin|marvel|garvey|travis|davis|paris|harris
artist|service desk|starve|carve|larva|jarred|charlie|charles|chavez|jarrod|java|jacuzzi
purpose|surface|office|nervous system|travel|gravel|marvelous|jarful|jasper|jervis
alex|alexis|election|commuter|hey google|okay google|siri|cortana|mycroft
hey there|hey you|hey buddy|hello there|listen|wake up|attention|excuse me|come here
garbage|garage|baggage|cabbage|carnival|marbles|parsley|varsity|arbiter|service area
dog|cat|house|car|tree|book|phone|table|chair|window|picture|paper|money|people|family
beautiful|wonderful|interesting|important|different|possible|together|because|however
this is a test|i don't know|maybe later|sounds good|let me think|right now|all right
the quick brown fox jumps over the lazy dog|she sells sea shells by the sea shore
how much wood would a woodchuck chuck|peter piper picked a peck of pickled peppers
";

/// The negative texts for `phrase`: [`NEGATIVE_TEXTS`] without any text
/// that contains the phrase (or that the phrase contains, for one word).
pub fn negative_texts(phrase: &str) -> Vec<String> {
    let p = phrase.trim().to_lowercase();
    let mut out: Vec<String> = NEGATIVE_TEXTS
        .split(['|', '\n'])
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .filter(|t| {
            let l = t.to_lowercase();
            !l.contains(&p)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Ways of saying the phrase (punctuation changes the synthesisers' prosody).
fn phrase_variants(phrase: &str) -> Vec<String> {
    let p = phrase.trim();
    let mut cap = p.to_string();
    if let Some(first) = cap.get(0..1) {
        cap = first.to_uppercase() + &cap[1..];
    }
    vec![
        p.to_string(),
        cap.clone(),
        format!("{cap}."),
        format!("{cap}!"),
        format!("{cap}?"),
        format!("{cap},"),
    ]
}

/// A positive clip: the utterance, sped up or slowed down, maybe
/// reverberated, placed so it ends in the last ~400 ms of the clip, maybe
/// preceded by another word, in noise, at a random level.
fn positive_clip(
    u: &[f32],
    len: usize,
    neg_pool: &[&[f32]],
    rng: &mut Rng,
) -> (Vec<f32>, (usize, usize)) {
    let mut x = augment::change_speed(u, rng.range(0.85, 1.15));
    if rng.chance(0.5) {
        x = augment::reverberate(&x, rng.range(0.1, 0.8), rng.range(0.05, 0.5), rng);
        let span = augment::active_span(&x, 40.0, 160);
        x = x[span].to_vec();
    }
    augment::normalize_peak(&mut x, 0.5);
    let rate = RATE as f64;
    let latest = len.saturating_sub((0.02 * rate) as usize);
    let earliest = len
        .saturating_sub((0.45 * rate) as usize)
        .max(x.len().min(len));
    let end = if latest > earliest {
        earliest + rng.below(latest - earliest)
    } else {
        latest
    };
    let (mut clip, region) = augment::place(&x, len, end);
    // Another word before the phrase, now and then, as in running speech.
    if rng.chance(0.2) && !neg_pool.is_empty() && region.start > 1600 {
        let mut other = rng.pick(neg_pool).to_vec();
        augment::normalize_peak(&mut other, rng.range(0.1, 0.5) as f32);
        let gap = rng.below(1600);
        let o_end = region.start.saturating_sub(gap);
        let o_start = o_end.saturating_sub(other.len());
        let take = o_end - o_start;
        let src = &other[other.len() - take..];
        for (c, v) in clip[o_start..o_end].iter_mut().zip(src) {
            *c += v;
        }
    }
    // A command right after the phrase, now and then, as in "jarvis, set a
    // timer": the daemon must wake before the command ends.
    if rng.chance(0.35) && !neg_pool.is_empty() && region.end + 800 < len {
        let mut other = rng.pick(neg_pool).to_vec();
        augment::normalize_peak(&mut other, rng.range(0.2, 0.5) as f32);
        let o_start = region.end + 800 + rng.below(4000);
        if o_start < len {
            let take = (len - o_start).min(other.len());
            for (c, v) in clip[o_start..o_start + take].iter_mut().zip(&other[..take]) {
                *c += v;
            }
        }
    }
    // Windows [o, o + len - SHIFT) in which the phrase is whole and ends in
    // the last ~0.45 s.
    let window = len - SHIFT_SAMPLES;
    let lo = (region.end + (0.02 * rate) as usize).saturating_sub(window);
    let hi = region.start.min(SHIFT_SAMPLES);
    let offsets = (lo.div_ceil(160), (hi / 160).max(lo.div_ceil(160)));
    add_background(&mut clip, region, neg_pool, rng);
    finish(&mut clip, rng);
    (clip, offsets)
}

/// A negative clip of speech: placed anywhere (it may run off either edge).
fn negative_speech_clip(u: &[f32], len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = augment::change_speed(u, rng.range(0.85, 1.15));
    if rng.chance(0.4) {
        x = augment::reverberate(&x, rng.range(0.1, 0.8), rng.range(0.05, 0.5), rng);
    }
    augment::normalize_peak(&mut x, 0.5);
    let mut clip = vec![0f32; len];
    // Position of the utterance's end relative to the clip's start.
    let lo = (len / 4).min(x.len());
    let hi = len + x.len() / 2;
    let end = lo + rng.below(hi.saturating_sub(lo).max(1));
    let start = end as i64 - x.len() as i64;
    for (i, &v) in x.iter().enumerate() {
        let t = start + i as i64;
        if t >= 0 && (t as usize) < len {
            clip[t as usize] = v;
        }
    }
    let region = start.max(0) as usize..end.min(len);
    add_background(&mut clip, region, &[], rng);
    finish(&mut clip, rng);
    clip
}

/// A clip of generated noise, or near silence.
fn noise_clip(len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut clip = if rng.chance(0.1) {
        vec![0f32; len]
    } else if rng.chance(0.15) {
        let mut n = augment::noise(NoiseKind::White, len, rng);
        augment::apply_gain_db(&mut n, rng.range(-70.0, -40.0));
        n
    } else {
        let kind = *rng.pick(&NoiseKind::ALL);
        let mut n = augment::noise(kind, len, rng);
        if rng.chance(0.3) {
            // Bursts: noise that starts or stops inside the window.
            let cut = rng.below(len);
            if rng.chance(0.5) {
                n[..cut].iter_mut().for_each(|v| *v *= 0.01);
            } else {
                n[cut..].iter_mut().for_each(|v| *v *= 0.01);
            }
        }
        n
    };
    finish(&mut clip, rng);
    clip
}

/// A random window of a recording.
fn recording_crop(r: &[f32], len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut clip = vec![0f32; len];
    if r.len() <= len {
        let off = rng.below(len - r.len() + 1);
        clip[off..off + r.len()].copy_from_slice(r);
    } else {
        let off = rng.below(r.len() - len + 1);
        clip.copy_from_slice(&r[off..off + len]);
    }
    augment::apply_gain_db(&mut clip, rng.range(-10.0, 6.0));
    augment::clip_unit(&mut clip);
    clip
}

/// Background: generated noise at 0–30 dB SNR (60%), other speech at
/// 5–20 dB (15%, when given), or a faint noise floor.
fn add_background(
    clip: &mut [f32],
    region: std::ops::Range<usize>,
    speech: &[&[f32]],
    rng: &mut Rng,
) {
    let p = rng.unit();
    if p < 0.6 {
        let kind = *rng.pick(&NoiseKind::ALL);
        let n = augment::noise(kind, clip.len(), rng);
        augment::mix_at_snr(clip, region, &n, rng.range(0.0, 30.0));
    } else if p < 0.75 && !speech.is_empty() {
        let mut babble = vec![0f32; clip.len()];
        let mut at = 0usize;
        while at < babble.len() {
            let s = rng.pick(speech);
            for (b, v) in babble[at..].iter_mut().zip(s.iter()) {
                *b += v;
            }
            at += s.len().max(1600) + rng.below(3200);
        }
        augment::mix_at_snr(clip, region, &babble, rng.range(5.0, 20.0));
    } else if p < 0.85 {
        let n = augment::noise(NoiseKind::White, clip.len(), rng);
        augment::mix_at_snr(clip, region, &n, rng.range(30.0, 60.0));
    }
    // Otherwise nothing: digital silence around the speech, as in
    // recordings made through a noise gate (log-mel features of exact zeros
    // are extreme, and a network that never saw them misfires on them).
}

/// Random overall gain, −20…+6 dB around a 0.5 peak, clipped to [-1, 1];
/// half the clips quantised to 16 bits as recordings are.
fn finish(clip: &mut [f32], rng: &mut Rng) {
    augment::normalize_peak(clip, 0.5);
    augment::apply_gain_db(clip, rng.range(-20.0, 6.0));
    augment::clip_unit(clip);
    if rng.chance(0.5) {
        clip.iter_mut()
            .for_each(|v| *v = (*v * 32767.0).round() / 32767.0);
    }
}

/// A clip as a 32-bit float WAV in memory.
fn wav_bytes(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + 4 * x.len());
    let data_len = (4 * x.len()) as u32;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 4).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&32u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// rustpotter's MFCCs of each clip, flattened (frames × coefficients).
fn mfccs(clips: &[Clip], mfcc_size: u16, threads: usize) -> Result<Vec<Vec<f32>>, WakewordError> {
    let one = |c: &Clip| -> Result<Vec<f32>, WakewordError> {
        let mut map = HashMap::new();
        map.insert("clip".to_string(), wav_bytes(&c.samples));
        let r = WakewordRef::new_from_sample_buffers("clip".into(), None, None, map, mfcc_size)
            .map_err(|e| WakewordError::Train(format!("MFCC extraction: {e}")))?;
        let frames = r
            .samples_features
            .into_values()
            .next()
            .ok_or_else(|| WakewordError::Train("MFCC extraction gave nothing".into()))?;
        Ok(frames.into_iter().flatten().collect())
    };
    let mut results: Vec<Option<Result<Vec<f32>, WakewordError>>> =
        (0..clips.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..clips.len())
                        .step_by(threads)
                        .map(|i| (i, one(&clips[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().unwrap_or_default() {
                results[i] = Some(r);
            }
        }
    });
    let out: Vec<Vec<f32>> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(WakewordError::Train("a worker failed".into()))))
        .collect::<Result<_, _>>()?;
    let n = out.first().map_or(0, Vec::len);
    if n == 0 || out.iter().any(|f| f.len() != n) {
        return Err(WakewordError::Train(
            "clips gave MFCCs of different lengths".into(),
        ));
    }
    Ok(out)
}

/// The level rustpotter's gain normaliser aims at: the mean over positive
/// clips of the median RMS of their 30 ms frames.
fn rms_level(clips: &[Clip]) -> f32 {
    let mut sum = 0f64;
    let mut n = 0usize;
    for c in clips.iter().filter(|c| c.positive && !c.test) {
        let mut r: Vec<f64> = c
            .samples
            .chunks_exact(480)
            .map(|f| augment::power(f).sqrt())
            .collect();
        if r.is_empty() {
            continue;
        }
        r.sort_by(f64::total_cmp);
        sum += r[r.len() / 2];
        n += 1;
    }
    if n == 0 {
        f32::NAN
    } else {
        (sum / n as f64) as f32
    }
}

/// Features and labels. Each example holds the MFCCs of a clip a little
/// longer than the window, with the range of window offsets (in frames) at
/// which its label holds; [`Dataset::window`] cuts a window and normalises
/// it as rustpotter's detector does (subtracting each coefficient's mean).
#[derive(Debug, Default)]
pub struct Dataset {
    frames: usize,
    mfcc: usize,
    x: Vec<Vec<f32>>,
    y: Vec<usize>,
    offsets: Vec<(usize, usize)>,
}

impl Dataset {
    /// An empty set of windows of `frames` frames of `mfcc` coefficients.
    pub fn new(frames: usize, mfcc: usize) -> Self {
        Dataset {
            frames,
            mfcc,
            ..Dataset::default()
        }
    }

    /// Adds one example (`x` at least `frames + offsets.1` frames long).
    pub fn push(&mut self, x: Vec<f32>, y: usize, offsets: (usize, usize)) {
        self.x.push(x);
        self.y.push(y);
        self.offsets.push(offsets);
    }

    /// Example `i`'s window at `offset` frames, mean-normalised, with
    /// `mask` frames (start, count) set to zero.
    fn window(&self, i: usize, offset: usize, mask: (usize, usize)) -> Vec<f32> {
        let (f, m) = (self.frames, self.mfcc);
        let avail = self.x[i].len() / m;
        let offset = offset.min(avail.saturating_sub(f));
        let mut w = self.x[i][offset * m..(offset + f) * m].to_vec();
        let mut mean = vec![0f32; m];
        for frame in w.chunks_exact(m) {
            mean.iter_mut().zip(frame).for_each(|(a, v)| *a += v);
        }
        mean.iter_mut().for_each(|a| *a /= f as f32);
        for frame in w.chunks_exact_mut(m) {
            frame.iter_mut().zip(&mean).for_each(|(v, a)| *v -= a);
        }
        let (ms, mc) = mask;
        for k in ms..(ms + mc).min(f) {
            w[k * m..(k + 1) * m].iter_mut().for_each(|v| *v = 0.0);
        }
        w
    }

    /// The window used for evaluation: the middle of the offset range.
    fn eval_window(&self, i: usize) -> Vec<f32> {
        let (lo, hi) = self.offsets[i];
        self.window(i, (lo + hi) / 2, (0, 0))
    }
    /// Examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// No examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Options of [`Mlp::train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes.
    pub epochs: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Threads (each takes a fixed part of every batch; the gradients are
    /// summed in a fixed order, so the result does not depend on timing).
    pub threads: usize,
}

/// One dense layer: `w` is `out × in`, row-major, as candle stores it.
#[derive(Debug, Clone)]
struct Dense {
    n_in: usize,
    n_out: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The network of a rustpotter `WakewordModel` (dense layers, ReLU between),
/// trained here rather than with `WakewordModelTrain::train_from_buffers`:
/// rustpotter 3.0.2 takes its clips in a `HashMap` with a random hasher, so
/// the order of the rows (and so the float rounding of every gradient) changes
/// from run to run and the same seed would not give the same file; it also
/// trains full-batch SGD only and prints to stdout. This trainer is plain
/// Rust, deterministic, and writes the same weight names, shapes and dtype.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Dense>,
}

/// Gradients (same shapes as the layers).
#[derive(Debug, Clone)]
struct Grads {
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    loss: f64,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

impl Mlp {
    /// Layers of `widths` (input first), weights Kaiming-normal and biases
    /// uniform in ±1/√fan-in (candle's `linear` init), from `rng`.
    pub fn new(widths: &[usize], rng: &mut Rng) -> Self {
        let layers = widths
            .windows(2)
            .map(|p| {
                let (n_in, n_out) = (p[0], p[1]);
                let std = (2.0 / n_in as f64).sqrt();
                let bound = 1.0 / (n_in as f64).sqrt();
                Dense {
                    n_in,
                    n_out,
                    w: (0..n_in * n_out)
                        .map(|_| (rng.normal() * std) as f32)
                        .collect(),
                    b: (0..n_out)
                        .map(|_| rng.range(-bound, bound) as f32)
                        .collect(),
                }
            })
            .collect();
        Mlp { layers }
    }

    /// The network stored in a rustpotter model (f32 weights named as
    /// [`Mlp::weights`] writes them); `None` if the layers do not fit.
    pub fn from_weights(weights: &HashMap<String, TensorData>) -> Option<Self> {
        let mut layers = Vec::new();
        for i in 1.. {
            let (Some(w), Some(b)) = (
                weights.get(&format!("ln{i}.weight")),
                weights.get(&format!("ln{i}.bias")),
            ) else {
                break;
            };
            let f = |t: &TensorData| -> Vec<f32> {
                t.bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let (&n_out, &n_in) = (w.dims.first()?, w.dims.get(1)?);
            layers.push(Dense {
                n_in,
                n_out,
                w: f(w),
                b: f(b),
            });
        }
        (!layers.is_empty()).then_some(Mlp { layers })
    }

    /// Number of weights and biases.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// Output logits of every layer's activations (input excluded).
    fn forward_all(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for (li, l) in self.layers.iter().enumerate() {
            let input: &[f32] = if li == 0 { x } else { &acts[li - 1] };
            let last = li + 1 == self.layers.len();
            let out: Vec<f32> = (0..l.n_out)
                .map(|o| {
                    let z = dot(&l.w[o * l.n_in..(o + 1) * l.n_in], input) + l.b[o];
                    if last { z } else { z.max(0.0) }
                })
                .collect();
            acts.push(out);
        }
        acts
    }

    /// The logits for one input.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.forward_all(x).pop().unwrap_or_default()
    }

    fn zero_grads(&self) -> Grads {
        Grads {
            w: self.layers.iter().map(|l| vec![0f32; l.w.len()]).collect(),
            b: self.layers.iter().map(|l| vec![0f32; l.b.len()]).collect(),
            loss: 0.0,
        }
    }

    /// Adds the weighted cross-entropy gradient of one example.
    fn backprop(&self, x: &[f32], y: usize, weight: f32, g: &mut Grads) {
        let acts = self.forward_all(x);
        let logits = &acts[acts.len() - 1];
        let m = logits.iter().cloned().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let mut delta: Vec<f32> = exps
            .iter()
            .enumerate()
            .map(|(i, e)| weight * (e / sum - if i == y { 1.0 } else { 0.0 }))
            .collect();
        g.loss += f64::from(weight) * -f64::from((exps[y] / sum).max(1e-12).ln());
        for li in (0..self.layers.len()).rev() {
            let l = &self.layers[li];
            let input: &[f32] = if li == 0 { x } else { &acts[li - 1] };
            for (o, &d) in delta.iter().enumerate() {
                if d == 0.0 {
                    continue;
                }
                g.b[li][o] += d;
                let row = &mut g.w[li][o * l.n_in..(o + 1) * l.n_in];
                for (gw, &xi) in row.iter_mut().zip(input) {
                    *gw += d * xi;
                }
            }
            if li > 0 {
                let mut prev = vec![0f32; l.n_in];
                for (o, &d) in delta.iter().enumerate() {
                    if d == 0.0 {
                        continue;
                    }
                    let row = &l.w[o * l.n_in..(o + 1) * l.n_in];
                    for (p, &w) in prev.iter_mut().zip(row) {
                        *p += d * w;
                    }
                }
                // ReLU: the previous layer's activation is zero where it was cut.
                for (p, &a) in prev.iter_mut().zip(&acts[li - 1]) {
                    if a <= 0.0 {
                        *p = 0.0;
                    }
                }
                delta = prev;
            }
        }
    }

    /// Mini-batch AdamW with a cosine learning-rate schedule; the classes
    /// are weighted so that both count equally. Returns the last epoch's
    /// mean loss.
    pub fn train(
        &mut self,
        data: &Dataset,
        opts: &TrainOptions,
        rng: &mut Rng,
        progress: &dyn Fn(usize, f64),
    ) -> f64 {
        let n = data.len();
        let n_pos = data.y.iter().filter(|&&y| y == 1).count().max(1);
        let n_neg = (n - n_pos.min(n)).max(1);
        let class_w = [
            n as f32 / (2.0 * n_neg as f32),
            n as f32 / (2.0 * n_pos as f32),
        ];
        let mut m = self.zero_grads();
        let mut v = self.zero_grads();
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let steps_per_epoch = n.div_ceil(opts.batch_size);
        let total_steps = (steps_per_epoch * opts.epochs).max(1);
        let mut step = 0usize;
        let mut order: Vec<usize> = (0..n).collect();
        let mut last_loss = 0.0;
        let threads = opts.threads.max(1);
        for epoch in 1..=opts.epochs {
            rng.shuffle(&mut order);
            // This epoch's window offset and time mask of every example.
            let picks: Vec<(usize, (usize, usize))> = (0..n)
                .map(|i| {
                    let (lo, hi) = data.offsets[i];
                    let o = lo + rng.below(hi.saturating_sub(lo) + 1);
                    let mask = if rng.chance(0.5) {
                        (rng.below(data.frames), 1 + rng.below(10))
                    } else {
                        (0, 0)
                    };
                    (o, mask)
                })
                .collect();
            let picks = &picks;
            let mut epoch_loss = 0.0;
            for batch in order.chunks(opts.batch_size) {
                let parts: Vec<&[usize]> = batch.chunks(batch.len().div_ceil(threads)).collect();
                let grads: Vec<Grads> = std::thread::scope(|s| {
                    let hs: Vec<_> = parts
                        .iter()
                        .map(|part| {
                            let this = &*self;
                            s.spawn(move || {
                                let mut g = this.zero_grads();
                                for &i in *part {
                                    let (o, mask) = picks[i];
                                    let x = data.window(i, o, mask);
                                    this.backprop(&x, data.y[i], class_w[data.y[i]], &mut g);
                                }
                                g
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().unwrap_or_else(|_| self.zero_grads()))
                        .collect()
                });
                let mut g = self.zero_grads();
                for part in &grads {
                    for li in 0..g.w.len() {
                        g.w[li]
                            .iter_mut()
                            .zip(&part.w[li])
                            .for_each(|(a, b)| *a += b);
                        g.b[li]
                            .iter_mut()
                            .zip(&part.b[li])
                            .for_each(|(a, b)| *a += b);
                    }
                    g.loss += part.loss;
                }
                epoch_loss += g.loss;
                step += 1;
                let lr = opts.learning_rate
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * step as f64 / total_steps as f64).cos());
                let scale = 1.0 / batch.len() as f64;
                let bc1 = 1.0 - b1.powi(step as i32);
                let bc2 = 1.0 - b2.powi(step as i32);
                for li in 0..self.layers.len() {
                    let layer = &mut self.layers[li];
                    let update =
                        |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: bool| {
                            for i in 0..p.len() {
                                let gi = f64::from(g[i]) * scale;
                                let mi = b1 * f64::from(m[i]) + (1.0 - b1) * gi;
                                let vi = b2 * f64::from(v[i]) + (1.0 - b2) * gi * gi;
                                m[i] = mi as f32;
                                v[i] = vi as f32;
                                let mut pi = f64::from(p[i]);
                                if decay {
                                    pi -= lr * opts.weight_decay * pi;
                                }
                                pi -= lr * (mi / bc1) / ((vi / bc2).sqrt() + eps);
                                p[i] = pi as f32;
                            }
                        };
                    update(&mut layer.w, &g.w[li], &mut m.w[li], &mut v.w[li], true);
                    update(&mut layer.b, &g.b[li], &mut m.b[li], &mut v.b[li], false);
                }
            }
            last_loss = epoch_loss / n as f64;
            progress(epoch, last_loss);
        }
        last_loss
    }

    /// The weights as rustpotter stores them: `ln{i}.weight` (`out × in`)
    /// and `ln{i}.bias`, f32 little-endian.
    pub fn weights(&self) -> HashMap<String, TensorData> {
        let mut out = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            out.insert(
                format!("ln{}.weight", i + 1),
                TensorData {
                    bytes: bytes(&l.w),
                    dims: vec![l.n_out, l.n_in],
                    d_type: "f32".into(),
                },
            );
            out.insert(
                format!("ln{}.bias", i + 1),
                TensorData {
                    bytes: bytes(&l.b),
                    dims: vec![l.n_out],
                    d_type: "f32".into(),
                },
            );
        }
        out
    }
}

/// Argmax figures on a dataset.
fn evaluate(mlp: &Mlp, data: &Dataset) -> TestFigures {
    let mut f = TestFigures::default();
    let (mut tp, mut fp, mut correct) = (0usize, 0usize, 0usize);
    for (i, &y) in data.y.iter().enumerate() {
        let l = mlp.logits(&data.eval_window(i));
        let pred = usize::from(l[1] > l[0]);
        if pred == y {
            correct += 1;
        }
        if y == 1 {
            f.positives += 1;
            tp += pred;
        } else {
            f.negatives += 1;
            fp += pred;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    f.accuracy = ratio(correct, data.len());
    f.recall = ratio(tp, f.positives);
    f.false_positive_rate = ratio(fp, f.negatives);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(out: PathBuf) -> TrainArgs {
        TrainArgs {
            phrase: "jarvis".into(),
            out,
            samples: None,
            samples_split: SamplesSplit::All,
            negatives: None,
            seed: 3,
            size: Size::Tiny,
            epochs: 1,
            learning_rate: 0.001,
            batch_size: 64,
            clip_ms: 1500,
            mfcc_size: 16,
            espeak_positives: 1,
            piper_positives: 0,
            copies: 1,
            sample_copies: 1,
            espeak_negatives: 1,
            piper_negatives: 0,
            negative_copies: 1,
            noise_clips: 1,
            negatives_per_file: 1,
            piper_python: None,
            no_piper: true,
            threads: Some(1),
        }
    }

    #[test]
    fn manifest_is_written_beside_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.rpw");
        assert_eq!(manifest_path(&model), dir.path().join("m.rpw.json"));
        let manifest = Manifest {
            phrase: "jarvis".into(),
            label: "jarvis".into(),
            seed: 3,
            options: args(model.clone()),
            tools: Tools {
                voicegate: "0".into(),
                rustpotter: "3.0.2".into(),
                espeak_ng: "eSpeak NG 1.51".into(),
                piper: None,
            },
            inputs: Inputs {
                positive_utterances: HashMap::from([("espeak".into(), 1)]),
                negative_utterances: HashMap::new(),
                negative_texts: 1,
                samples: vec![InputFile {
                    name: "a.wav".into(),
                    sha256: "00".into(),
                    split: Split::Train,
                    used: true,
                }],
                negatives: vec![],
            },
            clips: ClipCounts::default(),
            model: ModelInfo {
                size: Size::Tiny,
                frames: 150,
                layers: vec![2400, 10, 2],
                parameters: 24032,
                train_loss: 0.1,
            },
            test: TestFigures::default(),
            output: OutputInfo {
                file: "m.rpw".into(),
                sha256: "ab".into(),
                bytes: 1,
            },
            elapsed_seconds: 1.0,
        };
        let path = manifest_path(&model);
        write_manifest(&path, &manifest).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["phrase"], "jarvis");
        assert_eq!(v["seed"], 3);
        assert_eq!(v["options"]["size"], "tiny");
        assert_eq!(v["options"]["samples_split"], "all");
        assert_eq!(v["inputs"]["samples"][0]["split"], "train");
        assert_eq!(v["output"]["sha256"], "ab");
        assert_eq!(v["tools"]["rustpotter"], "3.0.2");
        // An unwritable place is an error naming the file, not a panic.
        let bad = dir.path().join("missing/dir/m.json");
        let err = write_manifest(&bad, &manifest).unwrap_err().to_string();
        assert!(err.contains("missing/dir/m.json"), "{err}");
    }

    #[test]
    fn unreadable_sample_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.wav");
        std::fs::write(&bad, b"not a wav").unwrap();
        let mut a = args(dir.path().join("m.rpw"));
        a.samples = Some(dir.path().to_path_buf());
        let err = train(&a).unwrap_err().to_string();
        assert!(err.contains("broken.wav"), "{err}");
    }

    #[test]
    fn trainer_is_deterministic_and_learns() {
        let mut data = Dataset::new(4, 8);
        let mut rng = Rng::new(5);
        for i in 0..200 {
            let y = i % 2;
            let x: Vec<f32> = (0..32)
                .map(|k| rng.normal() as f32 + if y == 1 && k < 4 { 2.0 } else { 0.0 })
                .collect();
            data.push(x, y, (0, 0));
        }
        let opts = TrainOptions {
            epochs: 20,
            learning_rate: 0.01,
            batch_size: 16,
            weight_decay: 0.0,
            threads: 2,
        };
        let fit = || {
            let mut m = Mlp::new(&[32, 8, 2], &mut Rng::new(1));
            m.train(&data, &opts, &mut Rng::new(2), &|_, _| {});
            m
        };
        let (a, b) = (fit(), fit());
        assert_eq!(a.layers[0].w, b.layers[0].w);
        assert!(evaluate(&a, &data).accuracy > 0.9);
        let w = a.weights();
        assert_eq!(w["ln1.weight"].dims, vec![8, 32]);
        assert_eq!(w["ln2.bias"].bytes.len(), 8);
    }
}
