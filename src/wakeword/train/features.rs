//! Step 4 of training, the features: rustpotter's own MFCC extraction
//! (through `WakewordRef::new_from_sample_buffers`, one clip at a time), so
//! the model sees exactly what the detector computes; then the training and
//! held-out [`Dataset`]s, and the gain normaliser's level.

use std::collections::HashMap;

use rustpotter::{WakewordRef, WakewordRefBuildFromBuffers};

use super::ClipCounts;
use super::clips::{Clip, SHIFT_FRAMES};
use super::log;
use crate::wakeword::WakewordError;
use crate::wakeword::augment::{self, RATE};

/// The clips as features.
pub(super) struct Features {
    /// Training examples.
    pub train: Dataset,
    /// Held-out examples.
    pub test: Dataset,
    /// How many of each.
    pub counts: ClipCounts,
    /// MFCC frames per window.
    pub frames: usize,
    /// The model's `rms_level` (see [`rms_level`]).
    pub rms_level: f32,
}

/// The features of `clips` (consumed: their memory is freed here). Needs
/// both positive and negative training clips.
pub(super) fn features(
    clips: Vec<Clip>,
    mfcc_size: u16,
    threads: usize,
) -> Result<Features, WakewordError> {
    log(&format!("computing MFCCs of {} clips", clips.len()));
    let features = mfccs(&clips, mfcc_size, threads)?;
    let mfcc = usize::from(mfcc_size);
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
    Ok(Features {
        train: train_set,
        test: test_set,
        counts,
        frames,
        rms_level,
    })
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
    pub(super) frames: usize,
    mfcc: usize,
    x: Vec<Vec<f32>>,
    pub(super) y: Vec<usize>,
    pub(super) offsets: Vec<(usize, usize)>,
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
    pub(super) fn window(&self, i: usize, offset: usize, mask: (usize, usize)) -> Vec<f32> {
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
    pub(super) fn eval_window(&self, i: usize) -> Vec<f32> {
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
