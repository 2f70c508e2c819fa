//! The resampler: frequency and level are kept, what would alias is
//! removed, and chunk boundaries make no difference.

use voicegate::audio::{Resampler, SAMPLE_RATE};

fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                as f32
        })
        .collect()
}

fn resample_all(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut r = Resampler::new(from, to).unwrap();
    let mut out = Vec::new();
    r.process(input, &mut out);
    r.flush(&mut out);
    out
}

/// The steady middle of a signal (the filter's edges left out).
fn middle(x: &[f32]) -> &[f32] {
    let edge = 800.min(x.len() / 4);
    &x[edge..x.len() - edge]
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

fn db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// Frequency from upward zero crossings.
fn frequency(x: &[f32], rate: u32) -> f64 {
    let crossings: Vec<usize> = (1..x.len())
        .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
        .collect();
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
}

#[test]
fn a_1khz_sine_keeps_its_frequency_and_level_from_44k1_and_48k() {
    for from in [44_100, 48_000, 22_050, 8_000, 37_799] {
        let input = sine(1_000.0, from, 2.0, 0.5);
        let out = resample_all(&input, from, SAMPLE_RATE);
        let expected_len = input.len() as f64 * f64::from(SAMPLE_RATE) / f64::from(from);
        assert!(
            (out.len() as f64 - expected_len).abs() <= 1.0,
            "{from} Hz: {} samples out, expected {expected_len}",
            out.len()
        );
        let steady = middle(&out);
        let f = frequency(steady, SAMPLE_RATE);
        assert!((f - 1_000.0).abs() < 2.0, "{from} Hz: frequency {f}");
        let level = db(rms(steady) / (0.5 / 2f64.sqrt()));
        assert!(level.abs() < 1.0, "{from} Hz: level off by {level:.2} dB");
        println!("{from} Hz → 16 kHz: 1 kHz sine at {f:.2} Hz, level {level:+.3} dB");
    }
}

#[test]
fn seven_khz_passes_and_twelve_khz_is_removed_before_it_can_alias() {
    for from in [48_000, 44_100] {
        let pass = resample_all(&sine(7_000.0, from, 1.0, 0.5), from, SAMPLE_RATE);
        let pass_db = db(rms(middle(&pass)) / (0.5 / 2f64.sqrt()));
        assert!(
            pass_db.abs() < 1.0,
            "{from} Hz: 7 kHz changed by {pass_db:.2} dB"
        );
        let f = frequency(middle(&pass), SAMPLE_RATE);
        assert!(
            (f - 7_000.0).abs() < 15.0,
            "{from} Hz: 7 kHz came out at {f}"
        );

        // 12 kHz would fold to 4 kHz at 16 kHz.
        let stop = resample_all(&sine(12_000.0, from, 1.0, 0.5), from, SAMPLE_RATE);
        let stop_db = db(rms(middle(&stop)) / (0.5 / 2f64.sqrt()));
        assert!(
            stop_db < -30.0,
            "{from} Hz: 12 kHz only {stop_db:.1} dB down"
        );
        // Just above the new Nyquist: 9 kHz would fold onto 7 kHz.
        let near = resample_all(&sine(9_000.0, from, 1.0, 0.5), from, SAMPLE_RATE);
        let near_db = db(rms(middle(&near)) / (0.5 / 2f64.sqrt()));
        assert!(
            near_db < -60.0,
            "{from} Hz: 9 kHz only {near_db:.1} dB down"
        );
        println!(
            "{from} Hz: 7 kHz {pass_db:+.2} dB, 9 kHz {near_db:.1} dB, 12 kHz {stop_db:.1} dB"
        );
    }
}

#[test]
fn chunk_boundaries_do_not_change_the_output() {
    let input = sine(440.0, 44_100, 0.5, 0.8);
    let whole = resample_all(&input, 44_100, SAMPLE_RATE);
    let mut r = Resampler::new(44_100, SAMPLE_RATE).unwrap();
    let mut chunked = Vec::new();
    let mut rest = &input[..];
    let mut size = 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        r.process(&rest[..n], &mut chunked);
        rest = &rest[n..];
        size = size * 7 % 997 + 1;
    }
    r.flush(&mut chunked);
    assert_eq!(whole.len(), chunked.len());
    assert!(whole.iter().zip(&chunked).all(|(a, b)| a == b));
}

#[test]
fn the_same_rate_passes_samples_through_and_a_zero_rate_is_an_error() {
    let input = sine(300.0, SAMPLE_RATE, 0.1, 0.3);
    assert_eq!(resample_all(&input, SAMPLE_RATE, SAMPLE_RATE), input);
    let err = Resampler::new(0, SAMPLE_RATE).unwrap_err();
    assert!(err.to_string().contains("invalid sample rate 0"), "{err}");
}

#[test]
fn a_flushed_resampler_starts_a_new_stream() {
    let input = sine(1_000.0, 48_000, 0.2, 0.5);
    let mut r = Resampler::new(48_000, SAMPLE_RATE).unwrap();
    let mut first = Vec::new();
    r.process(&input, &mut first);
    r.flush(&mut first);
    let mut second = Vec::new();
    r.process(&input, &mut second);
    r.flush(&mut second);
    assert_eq!(first, second);
}
