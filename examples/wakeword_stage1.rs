//! Measures the FIRST stage of the wake-word cascade alone: a rustpotter
//! model streamed over WAV files in 480-sample frames (16 kHz f32), with one
//! second of silence after each file to flush a pending detection.
//!
//! Reports, for each detector setting: recall on the validation split of
//! the jarvis recordings (files never trained on), detections per file and
//! per minute on the negative sets, and CPU seconds per audio second.
//!
//! Usage: cargo run --release --example wakeword_stage1 -- MODEL [DATA_DIR]
//! (DATA_DIR defaults to ../shared/data). Settings are given as
//! `THRESHOLD:MIN_SCORES:EAGER[:gain][:band]` in the STAGE1_CONFIGS
//! environment variable, space separated.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rustpotter::{Rustpotter, RustpotterConfig, SampleFormat};
use voicegate::audio::{WavAccept, read_wav_mono_16k};
use voicegate::wakeword::{Split, split_of};

#[derive(Debug, Clone)]
struct Setting {
    threshold: f32,
    min_scores: usize,
    eager: bool,
    gain: bool,
    band: bool,
}

impl Setting {
    fn parse(s: &str) -> Option<Self> {
        let p: Vec<&str> = s.split(':').collect();
        Some(Setting {
            threshold: p.first()?.parse().ok()?,
            min_scores: p.get(1)?.parse().ok()?,
            eager: p.get(2).is_some_and(|e| *e == "eager" || *e == "1"),
            gain: p.contains(&"gain"),
            band: p.contains(&"band"),
        })
    }

    fn name(&self) -> String {
        format!(
            "thr={} min={} eager={} gain={} band={}",
            self.threshold, self.min_scores, self.eager, self.gain, self.band
        )
    }
}

/// One setting's result: its name, (files with a detection, detections,
/// audio seconds) per set, total audio seconds, CPU seconds.
type Outcome = (String, Vec<(usize, usize, f64)>, f64, f64);

fn detector(model: &Path, s: &Setting) -> Rustpotter {
    let mut config = RustpotterConfig::default();
    config.fmt.sample_rate = 16_000;
    config.fmt.sample_format = SampleFormat::F32;
    config.fmt.channels = 1;
    config.detector.threshold = s.threshold;
    config.detector.avg_threshold = 0.0;
    config.detector.min_scores = s.min_scores;
    config.detector.eager = s.eager;
    config.filters.gain_normalizer.enabled = s.gain;
    config.filters.band_pass.enabled = s.band;
    let mut r = Rustpotter::new(&config).expect("detector");
    r.add_wakeword_from_file("w", model.to_str().expect("utf-8 path"))
        .expect("model loads");
    r
}

/// Detections in one file.
fn count(r: &mut Rustpotter, audio: &[f32]) -> usize {
    r.reset();
    let mut n = 0;
    let mut padded = audio.to_vec();
    padded.extend(std::iter::repeat_n(0.0, 16_000));
    // STAGE1_DITHER=A adds uniform noise of amplitude A (e.g. 0.0001, about
    // -80 dBFS): digital silence (noise-gated recordings, the padding) gives
    // extreme log-mel features otherwise.
    let dither: f32 = std::env::var("STAGE1_DITHER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    if dither > 0.0 {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for v in padded.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *v += dither * ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0);
        }
    }
    for frame in padded.chunks_exact(480) {
        if r.process_samples(frame.to_vec()).is_some() {
            n += 1;
        }
    }
    n
}

fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "wav"));
    v.sort();
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = PathBuf::from(
        args.first()
            .expect("usage: wakeword_stage1 MODEL [DATA_DIR]"),
    );
    let data = PathBuf::from(args.get(1).map_or("../shared/data", |s| s.as_str()));
    let configs = std::env::var("STAGE1_CONFIGS")
        .unwrap_or_else(|_| "0.5:5:0 0.5:10:0 0.6:10:0 0.7:10:0 0.5:5:eager".into());
    let settings: Vec<Setting> = configs
        .split_whitespace()
        .filter_map(Setting::parse)
        .collect();

    let ww = data.join("wake-word");
    let mut sets: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    let jarvis: Vec<Vec<f32>> = wavs(&ww.join("jarvis"))
        .into_iter()
        .filter(|p| {
            let want = if std::env::var("STAGE1_SPLIT").is_ok_and(|s| s == "train") {
                Split::Train
            } else {
                Split::Validation
            };
            split_of(&p.file_name().unwrap_or_default().to_string_lossy()) == want
        })
        .map(|p| read_wav_mono_16k(&p, WavAccept::Any).expect("wav"))
        .collect();
    sets.push(("jarvis-validation".into(), jarvis));
    for neg in ["alexa", "computer", "smart_mirror", "snowboy", "view_glass"] {
        let v = wavs(&ww.join(neg))
            .iter()
            .map(|p| read_wav_mono_16k(p, WavAccept::Any).expect("wav"))
            .collect();
        sets.push((neg.into(), v));
    }
    let s2i = data.join("speech-to-intent");
    let v = wavs(&s2i.join("clean"))
        .iter()
        .map(|p| read_wav_mono_16k(p, WavAccept::Any).expect("wav"))
        .collect();
    sets.push(("coffee-orders".into(), v));
    let kitchen = s2i.join("kitchen.wav");
    if kitchen.exists() {
        sets.push((
            "kitchen-noise".into(),
            vec![read_wav_mono_16k(&kitchen, WavAccept::Any).expect("wav")],
        ));
    }

    // Settings run in parallel, one thread each (two cores: two at a time).
    let results: Vec<Outcome> = std::thread::scope(|s| {
        let mut out = Vec::new();
        for chunk in settings.chunks(2) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|st| {
                    let sets = &sets;
                    let model = &model;
                    s.spawn(move || {
                        let mut r = detector(model, st);
                        let t0 = cpu_seconds();
                        let wall = Instant::now();
                        let mut audio_s = 0.0;
                        let mut per_set = Vec::new();
                        for (_, files) in sets {
                            let mut hit_files = 0;
                            let mut detections = 0;
                            let mut secs = 0.0;
                            for f in files {
                                let n = count(&mut r, f);
                                detections += n;
                                hit_files += usize::from(n > 0);
                                secs += (f.len() + 16_000) as f64 / 16_000.0;
                            }
                            audio_s += secs;
                            per_set.push((hit_files, detections, secs));
                        }
                        let _ = wall;
                        (st.name(), per_set, audio_s, cpu_seconds() - t0)
                    })
                })
                .collect();
            for h in hs {
                out.push(h.join().expect("worker"));
            }
        }
        out
    });
    println!("model {}", model.display());
    for (name, per_set, audio_s, cpu) in results {
        println!("== {name}   (CPU {:.4} s per audio s)", cpu / audio_s);
        for ((set, files), (hit, det, secs)) in sets.iter().zip(per_set) {
            println!(
                "  {set:18} files {:4}  files-with-detection {:4} ({:5.1}%)  detections {:4}  per-min {:6.3}  per-10s {:.3}",
                files.len(),
                hit,
                100.0 * hit as f64 / files.len().max(1) as f64,
                det,
                det as f64 * 60.0 / secs,
                det as f64 * 10.0 / secs
            );
        }
    }
}

/// CPU time of this thread.
fn cpu_seconds() -> f64 {
    // /proc/thread-self/stat fields 14 and 15: utime and stime in ticks.
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}
