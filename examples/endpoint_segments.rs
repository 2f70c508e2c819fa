//! Prints the utterances the always-armed endpointer finds in WAV files
//! (start and end in seconds): `cargo run --release --example
//! endpoint_segments -- FILE...`.
use std::path::PathBuf;

use voicegate::audio::{EndpointConfig, EndpointEvent, Endpointer, FRAME_SAMPLES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in std::env::args().skip(1) {
        let audio =
            voicegate::audio::read_wav_mono_16k(&file, voicegate::audio::WavAccept::Exact16kMono)?;
        let mut ep = Endpointer::new(EndpointConfig::always_armed());
        let mut padded = audio.clone();
        padded.extend(std::iter::repeat_n(0.0, 16_000));
        let mut found = Vec::new();
        let mut pos = 0usize;
        for chunk in padded.chunks(FRAME_SAMPLES) {
            let mut f = chunk.to_vec();
            f.resize(FRAME_SAMPLES, 0.0);
            pos += FRAME_SAMPLES;
            if let Some(EndpointEvent::Utterance(u)) = ep.push(&f) {
                let end = pos as f32 / 16_000.0;
                found.push(format!(
                    "{:.2}s long, handed over at {end:.2}s",
                    u.samples.len() as f32 / 16_000.0
                ));
            }
        }
        let name = PathBuf::from(&file);
        println!(
            "{}: {}",
            name.file_name().unwrap_or_default().to_string_lossy(),
            found.join("; ")
        );
    }
    Ok(())
}
