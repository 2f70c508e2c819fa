//! `voicegate wakeword test`: how often the detector wakes on the keyword,
//! and how often on anything else.
//!
//! Every file is streamed through the same [`Detector`] the daemon runs
//! (both stages, 30 ms frames, the whisper verifier), from a fresh state,
//! followed by [`TAIL_MS`] of silence so a trigger at the very end is not
//! lost. A positive file counts as detected when the detector wakes at
//! least once in it; on negatives every wake is a false alarm. The
//! method follows the wake-word benchmarks' (Picovoice, openWakeWord): a
//! miss rate on keyword recordings, and false alarms per hour on
//! background audio. `cpu_fraction` is the process CPU time spent inside
//! the detector (rustpotter and whisper, all threads) per second of audio.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::detector::{Detector, FRAME_SAMPLES, Outcome, Stage1Settings, WakeWord};
use super::{Split, WakewordError, split_of};
use crate::audio::{WavAccept, read_wav_mono_16k};
use crate::stt::{SttOptions, WhisperTranscriber};

/// Silence streamed after each file.
pub const TAIL_MS: u32 = 1_000;

/// What `wakeword test` measures, as plain data (the CLI layer converts
/// its `TestArgs` into one).
#[derive(Debug, Clone, PartialEq)]
pub struct TestConfig {
    /// The wake word model (rustpotter `.rpw`; its phrase is read from the
    /// `FILE.json` manifest beside it unless `phrase` is given).
    pub model: PathBuf,
    /// The phrase whisper verifies (default: from the manifest).
    pub phrase: Option<String>,
    /// Recordings of the wake word: directories of WAV files (or files).
    pub positives: Vec<PathBuf>,
    /// Recordings without it (directories or files).
    pub negatives: Vec<PathBuf>,
    /// Only positives whose file name falls in this split.
    pub split: Option<Split>,
    /// Sensitivity 0..1 (default 0.5).
    pub sensitivity: Option<f32>,
    /// Stage-1 threshold override (rustpotter score).
    pub stage1_threshold: Option<f32>,
    /// Stage-1 minimum positive frames override.
    pub stage1_min_scores: Option<usize>,
    /// The whisper model used by stage 2 (default: the installed
    /// tiny.en-q8_0).
    pub whisper_model: Option<PathBuf>,
    /// Every file's result (and every stage-2 score) in the report too.
    pub details: bool,
    /// Stage 1 alone: every rustpotter trigger counts as a wake (whisper
    /// is not loaded). For design figures, not for the daemon.
    pub stage1_only: bool,
}

/// Stage 2 switched off: accepts every trigger (`--stage1-only`).
struct AcceptAll;

impl super::detector::Verifier for AcceptAll {
    fn score(&mut self, _samples: &[f32], _phrase: &str) -> Result<f32, WakewordError> {
        Ok(0.0)
    }
}

/// The figures (the JSON printed with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Positive files.
    pub positives: usize,
    /// Positive files with at least one detection.
    pub detected: usize,
    /// detected / positives.
    pub detection_rate: f64,
    /// Hours of negative audio.
    pub negative_hours: f64,
    /// Detections on negatives.
    pub false_alarms: usize,
    /// false_alarms / negative_hours.
    pub false_alarms_per_hour: f64,
    /// Detector CPU seconds per second of audio (all threads, both stages).
    pub cpu_fraction: f64,
    /// Negative files.
    pub negative_files: usize,
    /// Stage-1 triggers on positives and negatives (each one ran whisper).
    pub stage1_triggers: u64,
    /// Seconds of audio streamed (positives and negatives, without tails).
    pub audio_secs: f64,
    /// Per-file results (with --details).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileResult>,
}

/// One file's result.
#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    /// The file.
    pub path: PathBuf,
    /// True for a positive.
    pub positive: bool,
    /// Wakes in it.
    pub detections: usize,
    /// Every stage-2 verdict: (seconds into the file, log-probability),
    /// confirmed or not.
    pub stage2_scores: Vec<(f32, f32)>,
}

/// The WAV files a `--positives`/`--negatives` argument names, sorted.
pub fn wav_files(path: &Path) -> Result<Vec<PathBuf>, WakewordError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| WakewordError::Audio {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a WAV file as 16 kHz mono (resampled if needed).
pub fn read_audio(path: &Path) -> Result<Vec<f32>, WakewordError> {
    read_wav_mono_16k(path, WavAccept::Any).map_err(|e| WakewordError::Audio {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// CPU time of the whole process (all threads).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Streams one clip through the detector; returns (wakes, stage-2 scores).
pub fn stream_clip<V: super::detector::Verifier>(
    detector: &mut Detector<V>,
    samples: &[f32],
    cpu: &mut Duration,
) -> Result<(usize, Vec<(f32, f32)>), WakewordError> {
    detector.reset();
    let start = detector.position();
    let secs = |at: u64| (at - start) as f32 / crate::audio::SAMPLE_RATE as f32;
    let tail = vec![0.0f32; TAIL_MS as usize * 16];
    let mut wakes = 0;
    let mut scores = Vec::new();
    let mut record = |outcome: Outcome| match outcome {
        Outcome::Detected(d) => {
            wakes += 1;
            scores.push((secs(d.at_sample), d.logprob));
        }
        Outcome::Rejected(r) => scores.push((secs(r.at_sample), r.logprob)),
        Outcome::Nothing => {}
    };
    let before = process_cpu_time();
    for frame in samples
        .chunks(FRAME_SAMPLES)
        .chain(tail.chunks(FRAME_SAMPLES))
    {
        record(detector.push(frame)?);
    }
    record(detector.finish()?);
    *cpu += process_cpu_time().saturating_sub(before);
    Ok((wakes, scores))
}

/// Runs `wakeword test`.
pub fn run(args: TestConfig, json: bool, out: &mut dyn Write) -> Result<i32, WakewordError> {
    let mut word = WakeWord::from_model(&args.model, args.phrase.as_deref())?;
    if let Some(s) = args.sensitivity {
        word.sensitivity = s;
    }
    let mut stage1 = Stage1Settings::default();
    if let Some(t) = args.stage1_threshold {
        stage1.threshold = t;
    }
    if let Some(m) = args.stage1_min_scores {
        stage1.min_scores = m;
    }
    word.stage1 = stage1;
    if args.stage1_only {
        let detector = Detector::new(std::slice::from_ref(&word), AcceptAll)?;
        return measure(detector, &word, &args, json, out);
    }
    let whisper_path = crate::stt::model::locate(args.whisper_model.as_deref())
        .map_err(|e| WakewordError::Verify(e.to_string()))?;
    let whisper = WhisperTranscriber::load(&whisper_path, SttOptions::default())
        .map_err(|e| WakewordError::Verify(e.to_string()))?;
    let detector = Detector::new(std::slice::from_ref(&word), whisper)?;
    measure(detector, &word, &args, json, out)
}

/// Streams every file through `detector` and reports.
fn measure<V: super::detector::Verifier>(
    mut detector: Detector<V>,
    word: &WakeWord,
    args: &TestConfig,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, WakewordError> {
    let split = args.split;
    let mut positives = Vec::new();
    for dir in &args.positives {
        for f in wav_files(dir)? {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if split.is_none_or(|s| split_of(name) == s) {
                positives.push(f);
            }
        }
    }
    let mut negatives = Vec::new();
    for dir in &args.negatives {
        negatives.extend(wav_files(dir)?);
    }
    if positives.is_empty() {
        return Err(WakewordError::Usage(
            "no positive WAV files found (check --positives and --split)".into(),
        ));
    }

    let mut cpu = Duration::ZERO;
    let mut audio_secs = 0.0f64;
    let mut negative_secs = 0.0f64;
    let mut detected = 0;
    let mut false_alarms = 0;
    let mut files = Vec::new();
    let total = positives.len() + negatives.len();
    for (n, (path, positive)) in positives
        .iter()
        .map(|p| (p, true))
        .chain(negatives.iter().map(|p| (p, false)))
        .enumerate()
    {
        let samples = read_audio(path)?;
        let secs = samples.len() as f64 / f64::from(crate::audio::SAMPLE_RATE);
        audio_secs += secs;
        let (wakes, scores) = stream_clip(&mut detector, &samples, &mut cpu)?;
        if positive {
            detected += usize::from(wakes > 0);
        } else {
            negative_secs += secs;
            false_alarms += wakes;
        }
        if args.details {
            files.push(FileResult {
                path: path.clone(),
                positive,
                detections: wakes,
                stage2_scores: scores,
            });
        }
        if (n + 1) % 50 == 0 {
            eprintln!("wakeword test: {}/{total} files", n + 1);
        }
    }
    let negative_hours = negative_secs / 3600.0;
    let report = Report {
        positives: positives.len(),
        detected,
        detection_rate: detected as f64 / positives.len() as f64,
        negative_hours,
        false_alarms,
        false_alarms_per_hour: if negative_hours > 0.0 {
            false_alarms as f64 / negative_hours
        } else {
            0.0
        },
        cpu_fraction: cpu.as_secs_f64() / audio_secs.max(1e-9),
        negative_files: negatives.len(),
        stage1_triggers: detector.stats().stage1_triggers,
        audio_secs,
        files,
    };
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).unwrap_or_default()
        )
        .map_err(|e| WakewordError::Usage(e.to_string()))?;
    } else {
        print_report(&report, word, out).map_err(|e| WakewordError::Usage(e.to_string()))?;
    }
    Ok(0)
}

fn print_report(r: &Report, word: &WakeWord, out: &mut dyn Write) -> std::io::Result<()> {
    for f in &r.files {
        let scores: Vec<String> = f
            .stage2_scores
            .iter()
            .map(|(at, s)| format!("{s:.2}@{at:.2}s"))
            .collect();
        writeln!(
            out,
            "{} {} wakes={} stage2=[{}]",
            if f.positive { "+" } else { "-" },
            f.path.display(),
            f.detections,
            scores.join(", ")
        )?;
    }
    writeln!(
        out,
        "wake word {:?} (sensitivity {}, stage 2 threshold {:.1})",
        word.phrase,
        word.sensitivity,
        word.verify_threshold()
    )?;
    writeln!(
        out,
        "detected {}/{} ({:.1}%)",
        r.detected,
        r.positives,
        100.0 * r.detection_rate
    )?;
    writeln!(
        out,
        "false alarms {} in {:.2} h of negatives ({} files): {:.2}/h",
        r.false_alarms, r.negative_hours, r.negative_files, r.false_alarms_per_hour
    )?;
    writeln!(
        out,
        "stage 1 fired {} times; CPU {:.4} s per audio second",
        r.stage1_triggers, r.cpu_fraction
    )
}
