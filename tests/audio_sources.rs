//! Audio sources: WAV files of every supported kind come out as 16 kHz
//! mono, broken files are clear errors (never panics), raw PCM from a
//! reader, and no microphone is a clear error pointing at `--input`.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use voicegate::audio::{
    AudioError, AudioInput, AudioSource, MicConfig, MicSource, MicStatus, PcmStdinSource,
    SAMPLE_RATE, WavAccept, WavSource, open_input, read_full, read_wav_mono_16k,
};

/// Reads a source to its end (or first error).
fn read_all(source: &mut dyn AudioSource) -> (Vec<f32>, Option<AudioError>) {
    let mut all = Vec::new();
    let mut buf = [0.0f32; 700];
    loop {
        match source.read(&mut buf) {
            Ok(0) => return (all, None),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => return (all, Some(e)),
        }
    }
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn frequency(x: &[f32]) -> f64 {
    let c: Vec<usize> = (1..x.len())
        .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
        .collect();
    (c.len() - 1) as f64 * f64::from(SAMPLE_RATE) / (c[c.len() - 1] - c[0]) as f64
}

/// Writes a WAV whose first channel is a 440 Hz sine at `amplitude` and
/// whose other channels are silent.
fn write_wav(
    path: &Path,
    rate: u32,
    channels: u16,
    bits: u16,
    float: bool,
    seconds: f64,
    amplitude: f64,
) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let frames = (f64::from(rate) * seconds) as usize;
    let full_scale = (1i64 << (bits - 1)) as f64 - 1.0;
    for i in 0..frames {
        let v = amplitude * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin();
        for ch in 0..channels {
            let v = if ch == 0 { v } else { 0.0 };
            if float {
                w.write_sample(v as f32).unwrap();
            } else {
                match bits {
                    8 => w.write_sample((v * full_scale).round() as i8).unwrap(),
                    16 => w.write_sample((v * full_scale).round() as i16).unwrap(),
                    _ => w.write_sample((v * full_scale).round() as i32).unwrap(),
                }
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn every_supported_wav_kind_comes_out_as_16k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(u32, u16, u16, bool)] = &[
        (16_000, 1, 16, false),
        (8_000, 1, 8, false),
        (22_050, 2, 16, false),
        (44_100, 2, 24, false),
        (48_000, 1, 32, false),
        (48_000, 2, 32, true),
        (32_000, 3, 16, false),
        (11_025, 6, 8, false),
    ];
    for &(rate, channels, bits, float) in cases {
        let path = dir
            .path()
            .join(format!("t_{rate}_{channels}_{bits}_{float}.wav"));
        write_wav(&path, rate, channels, bits, float, 0.5, 0.6);
        let mut source = WavSource::open(&path, false).unwrap();
        assert_eq!(source.file_sample_rate(), rate);
        assert_eq!(source.file_channels(), channels);
        let (samples, err) = read_all(&mut source);
        assert!(err.is_none(), "{err:?}");
        let what = format!(
            "{rate} Hz, {channels} ch, {bits}-bit {}",
            if float { "float" } else { "int" }
        );
        assert!(
            (samples.len() as i64 - 8_000).abs() <= 1,
            "{what}: {} samples",
            samples.len()
        );
        let steady = &samples[1_000..7_000];
        let f = frequency(steady);
        assert!((f - 440.0).abs() < 2.0, "{what}: {f} Hz");
        // One channel carries the sine: the mono average is 1/channels of it.
        let expected = 0.6 / f64::from(channels) / 2f64.sqrt();
        let level_db = 20.0 * (rms(steady) / expected).log10();
        assert!(
            level_db.abs() < 0.5,
            "{what}: level off by {level_db:.2} dB"
        );
        assert!(
            samples.iter().all(|s| s.is_finite() && s.abs() <= 1.0),
            "{what}"
        );
    }
}

/// The whole-file reader gives exactly what a `WavSource` streams; the
/// exact mode reads 16 kHz mono 16-bit and float files the same, with
/// 16-bit samples as v / 32768 (what `eval` always read), and refuses
/// anything that would need converting.
#[test]
fn a_whole_file_reads_as_the_source_streams_it() {
    let dir = tempfile::tempdir().unwrap();
    for &(rate, channels, bits, float, exact) in &[
        (16_000, 1, 16, false, true),
        (16_000, 1, 32, true, true),
        (44_100, 2, 24, false, false),
        (16_000, 2, 16, false, false),
        (16_000, 1, 8, false, false),
        (8_000, 1, 16, false, false),
    ] {
        let path = dir.path().join(format!("w_{rate}_{channels}_{bits}.wav"));
        write_wav(&path, rate, channels, bits, float, 0.3, 0.6);
        let (streamed, err) = read_all(&mut WavSource::open(&path, false).unwrap());
        assert!(err.is_none(), "{err:?}");
        let whole = read_wav_mono_16k(&path, WavAccept::Any).unwrap();
        assert_eq!(whole, streamed, "{path:?}");
        match read_wav_mono_16k(&path, WavAccept::Exact16kMono) {
            Ok(samples) => {
                assert!(exact, "{path:?} should be refused");
                assert_eq!(samples, streamed);
                if !float {
                    let mut reader = hound::WavReader::open(&path).unwrap();
                    let want: Vec<f32> = reader
                        .samples::<i16>()
                        .map(|v| f32::from(v.unwrap()) / 32768.0)
                        .collect();
                    assert_eq!(samples, want);
                }
            }
            Err(e) => {
                assert!(!exact, "{path:?}: {e}");
                assert!(matches!(e, AudioError::WavNotExact { .. }), "{e:?}");
                assert!(e.to_string().contains("expected 16 kHz mono"), "{e}");
            }
        }
    }
    // A cut file is an error, not a short read.
    let path = dir.path().join("cut.wav");
    write_wav(&path, 16_000, 1, 16, false, 1.0, 0.5);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..44 + 8_000]).unwrap();
    let err = read_wav_mono_16k(&path, WavAccept::Any).unwrap_err();
    assert!(matches!(err, AudioError::WavTruncated { .. }), "{err:?}");
}

#[test]
fn a_truncated_data_chunk_gives_what_is_there_then_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    write_wav(&path, 16_000, 1, 16, false, 1.0, 0.5);
    let bytes = std::fs::read(&path).unwrap();
    // Keep the header and 0.25 s of data, plus half a sample.
    std::fs::write(&path, &bytes[..44 + 8_000 + 1]).unwrap();
    let mut source = WavSource::open(&path, false).unwrap();
    let (samples, err) = read_all(&mut source);
    assert_eq!(samples.len(), 4_000);
    let err = err.expect("a truncation error");
    assert!(
        matches!(
            err,
            AudioError::WavTruncated {
                read_frames: 4_000,
                expected_frames: 16_000,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("cut.wav") && message.contains("truncated"),
        "{message}"
    );
    // Then the end.
    assert_eq!(source.read(&mut [0.0; 10]).unwrap(), 0);
}

fn open_error(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = WavSource::open(&path, false).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(name), "{message}");
    message
}

/// A minimal header: `format` tag, channels, rate, bits, then a data chunk
/// of `data_len` bytes (not necessarily present).
fn header(format: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[test]
fn broken_files_are_clear_errors() {
    let m = open_error("notes.wav", b"this is a text file, not audio at all\n");
    assert!(
        m.contains("not a readable WAV file") && m.contains("RIFF"),
        "{m}"
    );
    let m = open_error("empty.wav", b"");
    assert!(m.contains("ends inside the header"), "{m}");
    let m = open_error("short.wav", &header(1, 1, 16_000, 16, 100)[..20]);
    assert!(m.contains("ends inside the header"), "{m}");
    let m = open_error("adpcm.wav", &header(2, 1, 16_000, 4, 0));
    assert!(
        m.contains("unsupported") || m.contains("not a readable"),
        "{m}"
    );
    let m = open_error("mulaw.wav", &header(7, 1, 8_000, 8, 0));
    assert!(m.contains("unsupported WAV sample format"), "{m}");
    let m = open_error("zero-rate.wav", &header(1, 1, 0, 16, 0));
    assert!(m.contains("0 Hz"), "{m}");
    let m = open_error("zero-channels.wav", &header(1, 0, 16_000, 16, 0));
    assert!(m.contains("zero channels"), "{m}");

    let missing = Path::new("/nonexistent/dir/missing.wav");
    let err = WavSource::open(missing, false).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/dir/missing.wav"),
        "{err}"
    );
}

#[test]
fn mangled_headers_and_data_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_wav(&good, 44_100, 2, 16, false, 0.05, 0.5);
    let original = std::fs::read(&good).unwrap();
    let path: PathBuf = dir.path().join("mangled.wav");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut opened, mut read_ok) = (0, 0);
    for round in 0..600 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % 64) as usize;
            bytes[at] = next() as u8;
        }
        if round % 3 == 0 {
            bytes.truncate((next() % bytes.len() as u64) as usize);
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut source) = WavSource::open(&path, false) {
            opened += 1;
            // A mangled rate can be huge; read a bounded amount.
            let mut buf = vec![0.0f32; 4096];
            let mut total = 0;
            let mut clean = true;
            while total < 200_000 {
                match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        assert!(buf[..n].iter().all(|s| s.is_finite()));
                        total += n;
                    }
                    Err(e) => {
                        assert!(e.to_string().contains("mangled.wav"), "{e}");
                        clean = false;
                        break;
                    }
                }
            }
            if clean {
                read_ok += 1;
            }
        }
    }
    println!("600 mangled files: {opened} opened, {read_ok} read without error");
}

#[test]
fn realtime_paces_reads_like_a_microphone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paced.wav");
    write_wav(&path, 16_000, 1, 16, false, 0.3, 0.5);
    let start = Instant::now();
    let (samples, _) = read_all(&mut WavSource::open(&path, true).unwrap());
    let paced = start.elapsed();
    assert_eq!(samples.len(), 4_800);
    assert!(paced >= Duration::from_millis(280), "took {paced:?}");
    let start = Instant::now();
    read_all(&mut WavSource::open(&path, false).unwrap());
    assert!(start.elapsed() < paced / 2);
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn raw_pcm_is_read_exactly_whatever_the_read_sizes() {
    let values: Vec<i16> = (0..5_000)
        .map(|i| ((i * 37) % 65_536 - 32_768) as i16)
        .collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let expected: Vec<f32> = values.iter().map(|&v| f32::from(v) / 32_768.0).collect();

    let (all, err) = read_all(&mut PcmStdinSource::new(Cursor::new(bytes.clone())));
    assert!(err.is_none());
    assert_eq!(all, expected);

    for step in [1, 3, 7, 4_095] {
        let (all, err) = read_all(&mut PcmStdinSource::new(Trickle { data: &bytes, step }));
        assert!(err.is_none(), "step {step}: {err:?}");
        assert_eq!(all, expected, "step {step}");
    }

    let mut frame = [0.0f32; 480];
    let mut source = PcmStdinSource::new(Trickle {
        data: &bytes,
        step: 5,
    });
    assert_eq!(read_full(&mut source, &mut frame).unwrap(), 480);
    assert_eq!(&frame[..], &expected[..480]);
}

#[test]
fn raw_pcm_with_an_odd_byte_count_delivers_then_complains() {
    let bytes = [0x00, 0x40, 0x00, 0xc0, 0x7f];
    let mut source = PcmStdinSource::new(Cursor::new(bytes));
    let (all, err) = read_all(&mut source);
    assert_eq!(all, [0.5, -0.5]);
    let err = err.expect("odd length error");
    assert!(matches!(err, AudioError::PcmOddLength { .. }));
    assert!(
        err.to_string().contains("16-bit little-endian 16 kHz mono"),
        "{err}"
    );
    assert_eq!(source.read(&mut [0.0; 4]).unwrap(), 0);
}

struct Broken;

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("pipe exploded"))
    }
}

#[test]
fn a_failing_pcm_reader_is_an_error() {
    let err = PcmStdinSource::new(Broken).read(&mut [0.0; 8]).unwrap_err();
    assert!(matches!(err, AudioError::PcmRead { .. }));
    assert!(err.to_string().contains("pipe exploded"), "{err}");
}

#[test]
fn open_input_picks_the_source_from_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.wav");
    write_wav(&path, 48_000, 2, 16, false, 0.2, 0.5);
    let input = AudioInput::from_flags(path.to_str(), None);
    assert_eq!(input, AudioInput::Wav(path.clone()));
    assert_eq!(
        AudioInput::from_flags(Some("-"), None),
        AudioInput::RawStdin
    );
    assert_eq!(
        AudioInput::from_flags(None, Some("hw:1")),
        AudioInput::Microphone {
            device: Some("hw:1".into())
        }
    );
    let mut source = open_input(&input, false, MicConfig::default()).unwrap();
    let (samples, err) = read_all(&mut source);
    assert!(err.is_none());
    assert_eq!(samples.len(), 3_200);
    let missing = AudioInput::from_flags(Some("/nonexistent.wav"), None);
    let err = open_input(&missing, false, MicConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent.wav"), "{err}");
}

fn machine_has_no_sound_card() -> bool {
    match std::fs::read_to_string("/proc/asound/cards") {
        Ok(cards) => cards.contains("no soundcards"),
        Err(_) => true,
    }
}

#[test]
fn no_microphone_is_a_clear_error_suggesting_input() {
    if !machine_has_no_sound_card() {
        println!("skipped: this machine has a sound card, so opening the microphone may work");
        return;
    }
    let err = MicSource::open(None, MicConfig::default()).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(matches!(err, AudioError::NoInputDevice { .. }), "{err:?}");
    assert!(
        message.contains("--input FILE.wav") && message.contains("--input -"),
        "{message}"
    );
}

#[test]
fn an_unknown_device_name_is_a_clear_error() {
    let err = MicSource::open(Some("no-such-microphone-42"), MicConfig::default()).unwrap_err();
    let message = err.to_string();
    println!("{message}");
    assert!(
        message.contains("no-such-microphone-42")
            || matches!(err, AudioError::NoInputDevice { .. }),
        "{message}"
    );
    assert!(message.contains("--input"), "{message}");
}

#[test]
fn the_alsa_null_device_runs_through_the_real_capture_path() {
    // ALSA's "null" capture device opens without a sound card; depending on
    // the ALSA build it delivers silence or nothing at all. Either way the
    // real path runs: cpal, the callback, the ring buffer and the resampler,
    // or the stall watchdog, the reopen loop and its giving up. Skipped
    // where the device does not exist (other hosts).
    let config = MicConfig {
        stall_ms: 300,
        reopen_initial_ms: 10,
        reopen_max_ms: 20,
        reopen_max_attempts: Some(2),
        ..MicConfig::default()
    };
    let mut source = match MicSource::open(Some("alsa:null"), config) {
        Ok(source) => source,
        Err(e) => {
            println!("skipped: no ALSA null device here ({e})");
            return;
        }
    };
    let status = source.take_status_receiver().unwrap();
    let start = Instant::now();
    let mut frame = [1.0f32; 480 * 10];
    match read_full(&mut source, &mut frame) {
        Ok(n) => {
            assert_eq!(n, frame.len());
            assert!(frame.iter().all(|&s| s.abs() < 1e-6));
            println!("alsa:null delivered silence");
        }
        Err(e) => {
            assert!(
                matches!(e, AudioError::DeviceLost { attempts: 2, .. }),
                "{e}"
            );
            assert!(e.to_string().contains("stalled"), "{e}");
            println!("alsa:null delivered nothing: {e}");
        }
    }
    let statuses: Vec<_> = status.try_iter().collect();
    println!(
        "after {:?}: {} statuses, first {:?}",
        start.elapsed(),
        statuses.len(),
        &statuses[..statuses.len().min(3)]
    );
    assert!(matches!(statuses[0], MicStatus::Opened { .. }));
    // Stopped: what was already converted is handed over, then the
    // stream ends (no more is taken from the device).
    source.stop_handle().stop();
    let mut after = 0;
    loop {
        let n = source.read(&mut frame).unwrap();
        if n == 0 {
            break;
        }
        after += n;
        assert!(after <= 160_000, "reads went on after the stop");
    }
}
