//! A streaming, band-limited resampler (windowed sinc, Kaiser window).
//!
//! Why it exists: microphones run at 44.1 or 48 kHz and WAV files at any
//! rate, while everything after the source (endpointing, wake word, whisper)
//! wants 16 kHz. Dropping samples would alias everything above 8 kHz down
//! into the speech band, so the signal is low-pass filtered and interpolated
//! in one step.
//!
//! How: output sample `k` sits at input time `t = k · in / out`. Its value is
//! `Σ x[i] · h(t − i)` where `h` is a sinc low-pass (cut-off just below the
//! lower of the two Nyquist frequencies) shaped by a Kaiser window, reaching
//! [`DEFAULT_ZERO_CROSSINGS`] zero crossings to each side. For a rational
//! ratio `L/M` (after dividing by the gcd) there are only `L` distinct
//! fractional offsets, so their coefficient sets are computed once
//! ("polyphase" table); an unusual ratio with more than
//! [`MAX_TABLE_PHASES`] offsets interpolates linearly between
//! [`INTERPOLATED_PHASES`] precomputed ones instead. Every coefficient set
//! is normalised to sum to one, so DC passes unchanged.
//!
//! Streaming: the input history needed by the next outputs is kept between
//! calls, so chunk boundaries are invisible (the output is the same however
//! the input is cut). There is no added delay: output `k` is aligned with
//! input time `k · in / out`; it is simply emitted once the input reaches
//! a few milliseconds past that point. [`Resampler::flush`] emits the rest
//! at the end of a stream.

use super::AudioError;

/// Zero crossings of the sinc on each side of the centre (at the lower of
/// the two rates): the filter's length, and so the steepness of its
/// transition band.
pub const DEFAULT_ZERO_CROSSINGS: usize = 32;

/// The cut-off as a fraction of the lower Nyquist frequency (0.93 at 16 kHz
/// output: 7.44 kHz).
pub const DEFAULT_ROLLOFF: f64 = 0.93;

/// Kaiser window shape: 8.0 gives about 80 dB of stop-band attenuation.
pub const DEFAULT_KAISER_BETA: f64 = 8.0;

/// Largest exact polyphase table (distinct fractional offsets).
/// 44.1 → 16 kHz needs 160; 22.05 → 16 kHz needs 320.
pub const MAX_TABLE_PHASES: u64 = 4096;

/// Offsets precomputed for ratios beyond [`MAX_TABLE_PHASES`] (fewer if
/// the filter is very long), interpolated linearly.
pub const INTERPOLATED_PHASES: usize = 1024;

/// Highest rate accepted on either side (a WAV header may claim anything;
/// real audio tops out at 768 kHz).
pub const MAX_RATE: u32 = 768_000;

/// Bound on the coefficients kept in a table (exact or interpolated).
const MAX_INTERPOLATED_COEFFICIENTS: usize = 1 << 22;

/// The filter's design parameters. `Default` is what the audio path uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResamplerConfig {
    /// Zero crossings of the sinc on each side, at the lower rate.
    pub zero_crossings: usize,
    /// Cut-off as a fraction of the lower Nyquist frequency, in (0, 1].
    pub rolloff: f64,
    /// Kaiser window β.
    pub kaiser_beta: f64,
}

impl Default for ResamplerConfig {
    fn default() -> Self {
        ResamplerConfig {
            zero_crossings: DEFAULT_ZERO_CROSSINGS,
            rolloff: DEFAULT_ROLLOFF,
            kaiser_beta: DEFAULT_KAISER_BETA,
        }
    }
}

/// How the coefficient sets are obtained.
#[derive(Debug, Clone)]
enum Kernel {
    /// Same rate in and out: samples pass through untouched.
    Identity,
    /// `phases × taps` coefficients, phase-major.
    Table(Vec<f32>),
    /// Too many phases for an exact table: `phases + 1` evenly spaced
    /// sets, interpolated per output into `scratch`.
    Interpolated {
        table: Vec<f32>,
        phases: usize,
        scratch: Vec<f32>,
    },
}

/// A stateful resampler from one fixed rate to another, for mono `f32`
/// samples. Feed it with [`process`](Self::process) as input arrives, and
/// call [`flush`](Self::flush) once at the end.
#[derive(Debug, Clone)]
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    /// Upsampling factor (output rate / gcd).
    up: u64,
    /// Downsampling factor (input rate / gcd).
    down: u64,
    /// Taps on each side of the centre, in input samples.
    half: usize,
    kernel: Kernel,
    /// Input samples; `history[0]` has absolute index `history_start`
    /// (negative indices are the zeros before the stream).
    history: Vec<f32>,
    history_start: i64,
    /// Total input samples received since the start (or the last flush).
    received: i64,
    /// Next output position: input index `pos` plus `phase / up`.
    pos: i64,
    phase: u64,
}

impl Resampler {
    /// A resampler from `input_rate` to `output_rate` with the default
    /// filter.
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, AudioError> {
        Self::with_config(input_rate, output_rate, ResamplerConfig::default())
    }

    /// A resampler with an explicit filter design. Fails on a rate of zero
    /// or above [`MAX_RATE`].
    pub fn with_config(
        input_rate: u32,
        output_rate: u32,
        config: ResamplerConfig,
    ) -> Result<Self, AudioError> {
        for (rate, what) in [
            (input_rate, "resampler input"),
            (output_rate, "resampler output"),
        ] {
            if rate == 0 || rate > MAX_RATE {
                return Err(AudioError::InvalidSampleRate {
                    rate,
                    what: what.to_string(),
                });
            }
        }
        let g = gcd(u64::from(input_rate), u64::from(output_rate));
        let up = u64::from(output_rate) / g;
        let down = u64::from(input_rate) / g;
        let rolloff = if config.rolloff.is_finite() {
            config.rolloff.clamp(0.05, 1.0)
        } else {
            DEFAULT_ROLLOFF
        };
        let zero_crossings = config.zero_crossings.clamp(2, 256);
        let beta = if config.kaiser_beta.is_finite() && config.kaiser_beta >= 0.0 {
            config.kaiser_beta.min(40.0)
        } else {
            DEFAULT_KAISER_BETA
        };
        // Cut-off in cycles per input sample: a fraction of the lower Nyquist.
        let lower = f64::from(input_rate.min(output_rate));
        let cutoff = rolloff * 0.5 * lower / f64::from(input_rate);
        // sinc(2·fc·t) crosses zero every 1/(2·fc) input samples.
        let half_width = zero_crossings as f64 / (2.0 * cutoff);
        let half = half_width.ceil() as usize;
        let mut resampler = Resampler {
            input_rate,
            output_rate,
            up,
            down,
            half,
            kernel: Kernel::Identity,
            history: Vec::new(),
            history_start: 0,
            received: 0,
            pos: 0,
            phase: 0,
        };
        if input_rate != output_rate {
            let taps = 2 * half;
            let exact = up <= MAX_TABLE_PHASES
                && (up as usize).saturating_mul(taps) <= MAX_INTERPOLATED_COEFFICIENTS;
            resampler.kernel = if exact {
                let mut table = vec![0.0f32; up as usize * taps];
                for (p, set) in table.chunks_exact_mut(taps).enumerate() {
                    fill(p as f64 / up as f64, half, cutoff, half_width, beta, set);
                }
                Kernel::Table(table)
            } else {
                let phases = (MAX_INTERPOLATED_COEFFICIENTS / taps).clamp(16, INTERPOLATED_PHASES);
                let mut table = vec![0.0f32; (phases + 1) * taps];
                for (i, set) in table.chunks_exact_mut(taps).enumerate() {
                    fill(
                        i as f64 / phases as f64,
                        half,
                        cutoff,
                        half_width,
                        beta,
                        set,
                    );
                }
                Kernel::Interpolated {
                    table,
                    phases,
                    scratch: vec![0.0; taps],
                }
            };
        }
        resampler.reset();
        Ok(resampler)
    }

    /// The input rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// The output rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// How many input samples past an output's position must arrive before
    /// that output is emitted (the filter's look-ahead).
    pub fn lookahead(&self) -> usize {
        if matches!(self.kernel, Kernel::Identity) {
            0
        } else {
            self.half
        }
    }

    /// Forgets all history: the next input is the start of a new stream.
    pub fn reset(&mut self) {
        self.history.clear();
        let lead = self.half.saturating_sub(1);
        self.history.resize(lead, 0.0);
        self.history_start = -(lead as i64);
        self.received = 0;
        self.pos = 0;
        self.phase = 0;
    }

    /// Resamples `input`, appending every output sample that is complete to
    /// `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if matches!(self.kernel, Kernel::Identity) {
            out.extend_from_slice(input);
            return;
        }
        self.history.extend_from_slice(input);
        self.received += input.len() as i64;
        self.produce(out, i64::MAX);
        self.trim();
    }

    /// Ends the stream: appends the remaining outputs (those aligned with
    /// input already received) to `out`, then resets for a new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        if matches!(self.kernel, Kernel::Identity) {
            return;
        }
        let end = self.received;
        self.history.resize(self.history.len() + self.half + 1, 0.0);
        self.produce(out, end);
        self.reset();
    }

    /// Emits outputs while their taps are all in the history and their
    /// position is before `limit`.
    fn produce(&mut self, out: &mut Vec<f32>, limit: i64) {
        let half = self.half as i64;
        let taps = 2 * self.half;
        let available_end = self.history_start + self.history.len() as i64;
        while self.pos + half < available_end && self.pos < limit {
            let first = (self.pos - half + 1 - self.history_start) as usize;
            let window = &self.history[first..first + taps];
            let value = match &mut self.kernel {
                // Not reached: `process` passes identity input through.
                Kernel::Identity => window[self.half - 1],
                Kernel::Table(table) => {
                    let start = self.phase as usize * taps;
                    dot(window, &table[start..start + taps])
                }
                Kernel::Interpolated {
                    table,
                    phases,
                    scratch,
                } => {
                    let at = self.phase as f64 / self.up as f64 * *phases as f64;
                    let i = (at as usize).min(*phases - 1);
                    let w = (at - i as f64) as f32;
                    let (a, b) = table[i * taps..(i + 2) * taps].split_at(taps);
                    for ((s, x), y) in scratch.iter_mut().zip(a).zip(b) {
                        *s = x + (y - x) * w;
                    }
                    dot(window, scratch)
                }
            };
            out.push(value);
            self.phase += self.down;
            self.pos += (self.phase / self.up) as i64;
            self.phase %= self.up;
        }
    }

    /// Drops history that no future output needs.
    fn trim(&mut self) {
        let needed_from = self.pos - self.half as i64 + 1;
        let drop = (needed_from - self.history_start).clamp(0, self.history.len() as i64) as usize;
        if drop > 0 {
            self.history.drain(..drop);
            self.history_start += drop as i64;
        }
    }
}

/// Fills `set` (2·half taps) with the normalised kernel for fractional
/// offset `frac`: tap `j` multiplies input `pos − half + 1 + j`.
fn fill(frac: f64, half: usize, cutoff: f64, half_width: f64, beta: f64, set: &mut [f32]) {
    let i0_beta = bessel_i0(beta);
    let mut sum = 0.0f64;
    for (j, c) in set.iter_mut().enumerate() {
        let t = frac + half as f64 - 1.0 - j as f64;
        let v = kernel(t, cutoff, half_width, beta, i0_beta);
        sum += v;
        *c = v as f32;
    }
    if sum.abs() > 1e-12 {
        let scale = (1.0 / sum) as f32;
        for c in set.iter_mut() {
            *c *= scale;
        }
    }
}

/// The windowed sinc at `t` input samples from the centre.
fn kernel(t: f64, cutoff: f64, half_width: f64, beta: f64, i0_beta: f64) -> f64 {
    if t.abs() >= half_width {
        return 0.0;
    }
    let x = 2.0 * cutoff * t;
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
    };
    let r = t / half_width;
    let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
    2.0 * cutoff * sinc * window
}

/// The modified Bessel function of the first kind, order zero (power
/// series; converges fast for the β values used here).
fn bessel_i0(x: f64) -> f64 {
    let half = x / 2.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        let f = half / k as f64;
        term *= f * f;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
