//! A client's audio, in whatever format it sends, turned into what the
//! speech path takes: 16 kHz mono `f32`.
//!
//! Why it exists: a Wyoming client names its format in `audio-start` and
//! every `audio-chunk` (`rate`, `width` in bytes, `channels`), and
//! satellites send 16 kHz mono s16 while other programs send 22.05 or
//! 48 kHz stereo. Channels are averaged, samples scaled to ±1, and the
//! rate changed with the audio path's own resampler, so chunk boundaries
//! change nothing.

use crate::audio::Resampler;

/// The rate everything after the source works at.
pub const RATE: u32 = crate::audio::SAMPLE_RATE;

/// The format a stream's chunks are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Samples per second.
    pub rate: u32,
    /// Bytes per sample: 1 (signed 8-bit), 2 (s16le) or 4 (s32le).
    pub width: u8,
    /// Interleaved channels.
    pub channels: u8,
}

impl Format {
    /// Checks a format a client announced; the error says what is wrong.
    pub fn new(
        rate: Option<u64>,
        width: Option<u64>,
        channels: Option<u64>,
    ) -> Result<Format, String> {
        let rate = rate.ok_or("no \"rate\"")?;
        let width = width.ok_or("no \"width\"")?;
        let channels = channels.ok_or("no \"channels\"")?;
        if !(4_000..=192_000).contains(&rate) {
            return Err(format!(
                "a rate of {rate} Hz is not supported (4000 to 192000)"
            ));
        }
        if ![1, 2, 4].contains(&width) {
            return Err(format!(
                "a sample width of {width} bytes is not supported (1, 2 or 4)"
            ));
        }
        if !(1..=8).contains(&channels) {
            return Err(format!("{channels} channels are not supported (1 to 8)"));
        }
        // Checked above, so the conversions cannot fail.
        Ok(Format {
            rate: rate as u32,
            width: width as u8,
            channels: channels as u8,
        })
    }
}

/// One stream's conversion: its format and the resampler's state.
pub struct Converter {
    format: Format,
    resampler: Option<Resampler>,
}

impl Converter {
    /// A converter for `format` (no resampler at 16 kHz).
    pub fn new(format: Format) -> Result<Converter, String> {
        let resampler = if format.rate == RATE {
            None
        } else {
            Some(Resampler::new(format.rate, RATE).map_err(|e| e.to_string())?)
        };
        Ok(Converter { format, resampler })
    }

    /// The format it converts.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Converts one chunk, appending 16 kHz mono samples to `out`. A
    /// trailing partial frame (a client cutting a sample in two) is an
    /// error: the stream would be misaligned from there on.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
        let width = usize::from(self.format.width);
        let channels = usize::from(self.format.channels);
        let frame = width * channels;
        if !bytes.len().is_multiple_of(frame) {
            return Err(format!(
                "a chunk of {} bytes is not a whole number of {frame}-byte frames",
                bytes.len()
            ));
        }
        let mono: Vec<f32> = bytes
            .chunks_exact(frame)
            .map(|f| {
                let sum: f32 = f.chunks_exact(width).map(sample).sum();
                sum / channels as f32
            })
            .collect();
        match &mut self.resampler {
            Some(r) => r.process(&mono, out),
            None => out.extend_from_slice(&mono),
        }
        Ok(())
    }

    /// The end of the stream: what the resampler still holds.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        if let Some(r) = &mut self.resampler {
            r.flush(out);
        }
    }
}

/// One little-endian signed sample of 1, 2 or 4 bytes, scaled to ±1.
fn sample(b: &[u8]) -> f32 {
    match *b {
        [x] => f32::from(x as i8) / 128.0,
        [a, c] => f32::from(i16::from_le_bytes([a, c])) / 32_768.0,
        [a, c, d, e] => (i32::from_le_bytes([a, c, d, e]) as f64 / 2_147_483_648.0) as f32,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(rate: u64, width: u64, channels: u64) -> Format {
        Format::new(Some(rate), Some(width), Some(channels)).expect("a valid format")
    }

    #[test]
    fn widths_and_channels_become_mono_floats() {
        let mut out = Vec::new();
        let mut c = Converter::new(format(16_000, 2, 2)).expect("converter");
        // Left 0.5, right -0.25: the mean is 0.125.
        let mut bytes = 16_384i16.to_le_bytes().to_vec();
        bytes.extend((-8_192i16).to_le_bytes());
        c.push(&bytes, &mut out).expect("push");
        assert_eq!(out, vec![0.125]);
        out.clear();
        let mut c = Converter::new(format(16_000, 4, 1)).expect("converter");
        c.push(&(i32::MIN / 2).to_le_bytes(), &mut out)
            .expect("push");
        assert_eq!(out, vec![-0.5]);
        out.clear();
        let mut c = Converter::new(format(16_000, 1, 1)).expect("converter");
        c.push(&[64u8], &mut out).expect("push");
        assert_eq!(out, vec![0.5]);
    }

    #[test]
    fn other_rates_are_resampled_to_16k() {
        let mut c = Converter::new(format(48_000, 2, 1)).expect("converter");
        let mut out = Vec::new();
        let second = vec![0u8; 48_000 * 2];
        for chunk in second.chunks(2_000) {
            c.push(chunk, &mut out).expect("push");
        }
        c.finish(&mut out);
        assert!((15_990..=16_010).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn bad_formats_and_split_frames_are_refused() {
        assert!(Format::new(Some(16_000), Some(3), Some(1)).is_err());
        assert!(Format::new(Some(0), Some(2), Some(1)).is_err());
        assert!(Format::new(Some(16_000), Some(2), Some(0)).is_err());
        assert!(Format::new(None, Some(2), Some(1)).is_err());
        let mut c = Converter::new(format(16_000, 2, 2)).expect("converter");
        assert!(c.push(&[0, 0, 0], &mut Vec::new()).is_err());
    }
}
