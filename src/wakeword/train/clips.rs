//! Step 3 of training, the clips: every utterance and recording becomes one
//! or more fixed-length clips ([`augment`]): speed, reverberation, placement
//! in the clip, background noise or speech at a random SNR, gain. Positives
//! end near the end of the clip, as the keyword does in the detector's
//! sliding window when it fires. Generated noises and silence are added as
//! negatives. Every random choice comes from one [`Rng`], in a fixed order.

use super::speech::Speech;
use super::{Amounts, log};
use crate::wakeword::augment::{self, NoiseKind, RATE, Rng};

/// A clip to be turned into features.
pub(super) struct Clip {
    pub samples: Vec<f32>,
    pub positive: bool,
    pub test: bool,
    pub kind: &'static str,
    /// The window offsets (in MFCC frames) at which the clip keeps its label.
    pub offsets: (usize, usize),
}

/// Samples a clip is longer than the detector window: each epoch takes a
/// window at a random offset, so the network sees the keyword at many
/// positions (as the sliding detector window does) without more clips.
pub(super) const SHIFT_SAMPLES: usize = 4800;
/// The same in MFCC frames (10 ms each).
pub(super) const SHIFT_FRAMES: usize = SHIFT_SAMPLES / 160;
/// Offsets for clips whose label does not depend on the window.
const ALL_OFFSETS: (usize, usize) = (0, SHIFT_FRAMES);

/// Every clip, `len` samples long, in a fixed order: synthetic positives,
/// recordings of the phrase, synthetic negatives, noise, negative
/// recordings. Consumes the speech (its memory is freed before features).
pub(super) fn make_clips(
    speech: Speech,
    samples: &[Vec<f32>],
    negative_recordings: &[Vec<f32>],
    amounts: &Amounts,
    len: usize,
    rng: &mut Rng,
) -> Vec<Clip> {
    log("augmenting");
    let mut clips: Vec<Clip> = Vec::new();
    let neg_pool: Vec<&[f32]> = speech
        .negatives
        .iter()
        .map(|u| u.audio.as_slice())
        .collect();
    for u in &speech.positives {
        for _ in 0..amounts.copies {
            let (samples, offsets) = positive_clip(&u.audio, len, &neg_pool, rng);
            clips.push(Clip {
                samples,
                positive: true,
                test: u.test,
                kind: u.kind,
                offsets,
            });
        }
    }
    for s in samples {
        let trimmed = {
            let span = augment::active_span(s, 30.0, 1600);
            s[span].to_vec()
        };
        for _ in 0..amounts.sample_copies {
            let (samples, offsets) = positive_clip(&trimmed, len, &neg_pool, rng);
            clips.push(Clip {
                samples,
                positive: true,
                test: false,
                kind: "recording",
                offsets,
            });
        }
    }
    for u in &speech.negatives {
        for _ in 0..amounts.negative_copies {
            let samples = negative_speech_clip(&u.audio, len, rng);
            clips.push(Clip {
                samples,
                positive: false,
                test: u.test,
                kind: u.kind,
                offsets: ALL_OFFSETS,
            });
        }
    }
    for i in 0..amounts.noise_clips {
        let samples = noise_clip(len, rng);
        clips.push(Clip {
            samples,
            positive: false,
            test: i % 10 == 9,
            kind: "noise",
            offsets: ALL_OFFSETS,
        });
    }
    for r in negative_recordings {
        for _ in 0..amounts.negatives_per_file {
            let samples = recording_crop(r, len, rng);
            clips.push(Clip {
                samples,
                positive: false,
                test: false,
                kind: "negative-recording",
                offsets: ALL_OFFSETS,
            });
        }
    }
    clips
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
