//! Seeded audio augmentation for wake-word training: speed, gain, noise at
//! a chosen SNR, synthetic reverberation, generated noises, and placing an
//! utterance in a fixed-length clip.
//!
//! Everything random comes from [`Rng`], a small PRNG written here (no `rand`
//! crate), so the same seed always gives the same clips, on every machine:
//! that is what makes `wakeword train --seed N` reproducible to the byte.
//! All audio is 16 kHz mono `f32` in [-1, 1].

use crate::audio::Resampler;

/// The sample rate every function here assumes.
pub const RATE: u32 = crate::audio::SAMPLE_RATE;

/// SplitMix64 seeding a xoshiro256** generator. Small, fast, and good
/// enough for augmentation; fully determined by the seed.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// An independent generator derived from this seed and a stream number
    /// (so that parallel work does not depend on the order it runs in).
    pub fn derive(seed: u64, stream: u64) -> Self {
        Rng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Mean power (mean of squares); 0 for empty input.
pub fn power(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64
}

/// Changes speed (tempo and pitch together) by `factor` (> 1 is faster):
/// the audio is resampled as if it had been recorded at `factor × 16 kHz`.
/// The output has about `len / factor` samples.
pub fn change_speed(x: &[f32], factor: f64) -> Vec<f32> {
    let in_rate = (f64::from(RATE) * factor).round() as u32;
    if in_rate == RATE || x.is_empty() {
        return x.to_vec();
    }
    let Ok(mut resampler) = Resampler::new(in_rate, RATE) else {
        return x.to_vec();
    };
    let mut out = Vec::with_capacity((x.len() as f64 / factor) as usize + 64);
    resampler.process(x, &mut out);
    resampler.flush(&mut out);
    out
}

/// Multiplies by a gain in dB.
pub fn apply_gain_db(x: &mut [f32], db: f64) {
    let g = 10f64.powf(db / 20.0) as f32;
    x.iter_mut().for_each(|v| *v *= g);
}

/// Scales to a peak of `peak` (no-op on silence).
pub fn normalize_peak(x: &mut [f32], peak: f32) {
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        let g = peak / m;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// Adds `noise` (repeated or cut to length) to `signal` so that the ratio of
/// the signal's power, measured on `signal[region]`, to the noise power is
/// `snr_db`. Returns the gain applied to the noise.
pub fn mix_at_snr(
    signal: &mut [f32],
    region: std::ops::Range<usize>,
    noise: &[f32],
    snr_db: f64,
) -> f64 {
    if noise.is_empty() || signal.is_empty() {
        return 0.0;
    }
    let region = region.start.min(signal.len())..region.end.min(signal.len());
    let ps = power(&signal[region]);
    let pn = power(noise);
    if ps <= 0.0 || pn <= 0.0 {
        return 0.0;
    }
    let gain = (ps / (pn * 10f64.powf(snr_db / 10.0))).sqrt();
    let g = gain as f32;
    for (i, v) in signal.iter_mut().enumerate() {
        *v += g * noise[i % noise.len()];
    }
    gain
}

/// Kinds of generated noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// Flat spectrum.
    White,
    /// 1/f (Paul Kellet's filter).
    Pink,
    /// 1/f² (leaky integrated white noise).
    Brown,
    /// Mains hum: 50 or 60 Hz and harmonics, with a little white noise.
    Hum,
}

impl NoiseKind {
    /// All kinds.
    pub const ALL: [NoiseKind; 4] = [
        NoiseKind::White,
        NoiseKind::Pink,
        NoiseKind::Brown,
        NoiseKind::Hum,
    ];

    /// A short name (for manifests and clip names).
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::White => "white",
            NoiseKind::Pink => "pink",
            NoiseKind::Brown => "brown",
            NoiseKind::Hum => "hum",
        }
    }
}

/// `len` samples of noise of `kind`, peak-normalised to 0.5.
pub fn noise(kind: NoiseKind, len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    match kind {
        NoiseKind::White => {
            for _ in 0..len {
                out.push(rng.normal() as f32);
            }
        }
        NoiseKind::Pink => {
            let mut b = [0f64; 7];
            for _ in 0..len {
                let w = rng.normal();
                b[0] = 0.99886 * b[0] + w * 0.0555179;
                b[1] = 0.99332 * b[1] + w * 0.0750759;
                b[2] = 0.96900 * b[2] + w * 0.1538520;
                b[3] = 0.86650 * b[3] + w * 0.3104856;
                b[4] = 0.55000 * b[4] + w * 0.5329522;
                b[5] = -0.7616 * b[5] - w * 0.0168980;
                let v = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
                b[6] = w * 0.115926;
                out.push(v as f32);
            }
        }
        NoiseKind::Brown => {
            let mut acc = 0f64;
            for _ in 0..len {
                acc = 0.995 * acc + 0.1 * rng.normal();
                out.push(acc as f32);
            }
        }
        NoiseKind::Hum => {
            let f0 = if rng.chance(0.5) { 50.0 } else { 60.0 };
            let amps: Vec<f64> = (0..5).map(|_| rng.range(0.0, 1.0)).collect();
            let phases: Vec<f64> = (0..5)
                .map(|_| rng.range(0.0, std::f64::consts::TAU))
                .collect();
            for i in 0..len {
                let t = i as f64 / f64::from(RATE);
                let mut v = 0.02 * rng.normal();
                for (h, (a, p)) in amps.iter().zip(&phases).enumerate() {
                    v += a / (h as f64 + 1.0)
                        * (2.0 * std::f64::consts::PI * f0 * (h as f64 + 1.0) * t + p).sin();
                }
                out.push(v as f32);
            }
        }
    }
    normalize_peak(&mut out, 0.5);
    out
}

/// Synthetic reverberation: convolves with a sparse exponentially decaying
/// noise impulse response ("velvet noise": random-sign taps at random
/// positions, ~1500 taps per second, amplitude falling 60 dB over `rt60`
/// seconds, cut at −50 dB), plus the direct path. Sparse taps keep this cheap
/// without an FFT. The output is as long as the input plus the tail and has
/// the input's peak level.
pub fn reverberate(x: &[f32], rt60: f64, wet: f64, rng: &mut Rng) -> Vec<f32> {
    let rate = f64::from(RATE);
    let tail = ((rt60 * 50.0 / 60.0) * rate) as usize;
    let density = 1500.0;
    let grid = (rate / density) as usize;
    let mut taps: Vec<(usize, f32)> = vec![(0, 1.0)];
    let mut energy = 0f64;
    let mut pos = rng.below(grid) + 16;
    while pos < tail {
        let t = pos as f64 / rate;
        let amp = 10f64.powf(-3.0 * t / rt60) * if rng.chance(0.5) { 1.0 } else { -1.0 };
        energy += amp * amp;
        taps.push((pos, amp as f32));
        pos += grid / 2 + rng.below(grid);
    }
    // Scale the reverberant part to `wet` of the direct path's energy.
    if energy > 0.0 {
        let s = (wet / energy).sqrt() as f32;
        taps.iter_mut().skip(1).for_each(|t| t.1 *= s);
    }
    let peak_in = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut out = vec![0f32; x.len() + tail];
    for &(d, a) in &taps {
        for (o, &v) in out[d..d + x.len()].iter_mut().zip(x) {
            *o += a * v;
        }
    }
    normalize_peak(&mut out, peak_in);
    out
}

/// The span of `x` that holds sound: from the first to the last 10 ms frame
/// whose RMS is within `range_db` of the loudest frame, widened by `margin`
/// samples each side.
pub fn active_span(x: &[f32], range_db: f64, margin: usize) -> std::ops::Range<usize> {
    let frame = (RATE / 100) as usize;
    let rms: Vec<f64> = x.chunks(frame).map(|c| power(c).sqrt()).collect();
    let peak = rms.iter().cloned().fold(0f64, f64::max);
    if peak <= 0.0 {
        return 0..0;
    }
    let floor = peak * 10f64.powf(-range_db / 20.0);
    let first = rms.iter().position(|&r| r >= floor).unwrap_or(0);
    let last = rms.iter().rposition(|&r| r >= floor).unwrap_or(0);
    let start = (first * frame).saturating_sub(margin);
    let end = ((last + 1) * frame + margin).min(x.len());
    start..end
}

/// Places `utterance` in a clip of `len` samples so that it ends at
/// `end` (clamped so it fits; an utterance longer than the clip keeps its
/// last `len` samples). Returns the clip (zeros elsewhere) and the range the
/// utterance occupies.
pub fn place(utterance: &[f32], len: usize, end: usize) -> (Vec<f32>, std::ops::Range<usize>) {
    let mut clip = vec![0f32; len];
    let u = if utterance.len() > len {
        &utterance[utterance.len() - len..]
    } else {
        utterance
    };
    let end = end.clamp(u.len(), len);
    let start = end - u.len();
    clip[start..end].copy_from_slice(u);
    (clip, start..end)
}

/// Clips to [-1, 1].
pub fn clip_unit(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (0.3 * (i as f64 * 0.05).sin()) as f32)
            .collect()
    }

    #[test]
    fn rng_is_deterministic_and_seed_dependent() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(8);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(3) < 3);
        }
    }

    #[test]
    fn augmentation_is_deterministic_with_a_seed() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let n = noise(NoiseKind::Pink, 4000, &mut rng);
            let mut x = reverberate(&tone(8000), 0.4, 0.5, &mut rng);
            mix_at_snr(&mut x, 0..8000, &n, 10.0);
            x
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn snr_mixing_is_correct() {
        let mut rng = Rng::new(11);
        let clean = tone(16000);
        for kind in NoiseKind::ALL {
            let n = noise(kind, 16000, &mut rng);
            for snr in [0.0, 10.0, 25.0] {
                let mut mixed = clean.clone();
                mix_at_snr(&mut mixed, 0..16000, &n, snr);
                let added: Vec<f32> = mixed.iter().zip(&clean).map(|(m, c)| m - c).collect();
                let measured = 10.0 * (power(&clean) / power(&added)).log10();
                assert!((measured - snr).abs() < 0.01, "{kind:?} {snr}: {measured}");
            }
        }
    }

    #[test]
    fn speed_change_scales_length() {
        let x = tone(16000);
        for factor in [0.85, 1.0, 1.15] {
            let y = change_speed(&x, factor);
            let expect = 16000.0 / factor;
            assert!(
                (y.len() as f64 - expect).abs() < 0.01 * expect,
                "{factor}: {}",
                y.len()
            );
        }
    }

    #[test]
    fn placing_and_spans() {
        let u = vec![0.5f32; 100];
        let (clip, r) = place(&u, 1000, 900);
        assert_eq!(r, 800..900);
        assert_eq!(clip.len(), 1000);
        assert_eq!(clip[799], 0.0);
        assert_eq!(clip[800], 0.5);
        let (_, r) = place(&u, 1000, 50);
        assert_eq!(r, 0..100);
        let mut x = vec![0f32; 3200];
        x[1600..1760].iter_mut().for_each(|v| *v = 0.5);
        assert_eq!(active_span(&x, 30.0, 0), 1600..1760);
        let r = reverberate(&u, 0.3, 0.5, &mut Rng::new(1));
        assert!(r.len() > u.len());
    }
}
