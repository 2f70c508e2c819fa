//! Writes clips of a benchmark directory mixed with noise, as `voicegate eval`
//! mixes them, so one clip can be transcribed on its own:
//! `cargo run --release --example mix_clip -- DIR LABELS NOISE SNR OUTDIR`.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, labels, noise, snr, out] = args.as_slice() else {
        return Err("usage: mix_clip DIR LABELS NOISE SNR OUTDIR".into());
    };
    let labels = voicegate::eval::read_labels(&PathBuf::from(labels))?;
    let noise =
        voicegate::audio::read_wav_mono_16k(noise, voicegate::audio::WavAccept::Exact16kMono)?;
    let snr: f64 = snr.parse()?;
    std::fs::create_dir_all(out)?;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for (index, file) in labels.keys().enumerate() {
        let path = PathBuf::from(dir).join(file);
        if !path.is_file() {
            continue;
        }
        let clean =
            voicegate::audio::read_wav_mono_16k(&path, voicegate::audio::WavAccept::Exact16kMono)?;
        let mixed = voicegate::eval::mix(&clean, &noise, snr, voicegate::eval::noise_offset(index));
        let mut w = hound::WavWriter::create(PathBuf::from(out).join(file), spec)?;
        for x in mixed {
            w.write_sample((x * 32767.0).round() as i16)?;
        }
        w.finalize()?;
    }
    Ok(())
}
