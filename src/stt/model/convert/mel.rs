//! The mel filterbank a ggml header carries.
//!
//! Why it exists: the CTranslate2 package has no mel filters, and a ggml
//! model must: these are librosa's Slaney filters for 16 kHz, n_fft 400,
//! as OpenAI's whisper computes them.

// ---------------------------------------------------------------------------
// Mel filterbank
// ---------------------------------------------------------------------------

pub(super) const SLANEY_F_SP: f64 = 200.0 / 3.0;
pub(super) const SLANEY_MIN_LOG_HZ: f64 = 1000.0;

pub(super) fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz → mel on the Slaney scale (librosa's default, `htk=False`).
pub fn hz_to_mel(hz: f64) -> f64 {
    let min_log_mel = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;
    if hz >= SLANEY_MIN_LOG_HZ {
        min_log_mel + (hz / SLANEY_MIN_LOG_HZ).ln() / slaney_log_step()
    } else {
        hz / SLANEY_F_SP
    }
}

/// Mel → Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    let min_log_mel = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;
    if mel >= min_log_mel {
        SLANEY_MIN_LOG_HZ * (slaney_log_step() * (mel - min_log_mel)).exp()
    } else {
        SLANEY_F_SP * mel
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels)` with its defaults (fmin 0,
/// fmax sr/2, Slaney scale, Slaney area normalisation): `n_mels` rows of
/// `n_fft / 2 + 1` weights, row-major, rounded as librosa rounds them
/// (bit-identical to whisper's `mel_filters.npz` for 16 kHz, n_fft 400).
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_freq = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|k| k as f64 * sample_rate / n_fft as f64)
        .collect();
    // n_mels + 2 points evenly spaced in mel (numpy.linspace), back to Hz.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let points = n_mels + 2;
    let step = (hi - lo) / (points - 1) as f64;
    let hz: Vec<f64> = (0..points)
        .map(|i| {
            if i == points - 1 {
                mel_to_hz(hi)
            } else {
                mel_to_hz(i as f64 * step + lo)
            }
        })
        .collect();
    let mut weights = Vec::with_capacity(n_mels * n_freq);
    for m in 0..n_mels {
        let below = hz[m + 1] - hz[m];
        let above = hz[m + 2] - hz[m + 1];
        let norm = 2.0 / (hz[m + 2] - hz[m]);
        for &f in &fft_freqs {
            let lower = -(hz[m] - f) / below;
            let upper = (hz[m + 2] - f) / above;
            // librosa keeps the triangles in a float32 array and
            // normalises that array in place: round, scale, round again.
            // (numpy's maximum(0, -0.0) keeps the -0.0 at [0][0]; so do we.)
            let w = lower.min(upper);
            let w = if w < 0.0 { 0.0 } else { w } as f32;
            weights.push((f64::from(w) * norm) as f32);
        }
    }
    weights
}
