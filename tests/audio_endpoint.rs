//! The endpointer, as a table of synthetic signals (silence, noise at
//! several levels, tone bursts, espeak-ng speech in white noise at 20 and
//! 6 dB SNR) → expected events and utterance boundaries (±100 ms); then real
//! recorded commands from `../shared/data/speech-to-intent` when present.

#[path = "support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::Command;

use voicegate::audio::endpoint::FRAME_MS;
use voicegate::audio::{
    AudioSource, EndReason, EndpointConfig, EndpointEvent, Endpointer, FRAME_SAMPLES, Utterance,
    WavSource,
};

const RATE: usize = 16_000;
const TOLERANCE_MS: i64 = 100;

fn ms(n: usize) -> usize {
    n * RATE / 1000
}

fn to_ms(samples: u64) -> i64 {
    (samples * 1000 / RATE as u64) as i64
}

/// Deterministic Gaussian noise (xorshift + Box–Muller).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn db_to_amp(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64
}

/// One piece of a synthetic timeline.
#[derive(Clone, Copy, Debug)]
enum Seg {
    /// Nothing (only the background) for this many ms.
    Gap(usize),
    /// A sine burst: ms, Hz, level in dB full scale (RMS).
    Tone(usize, f64, f64),
    /// A phrase spoken by espeak-ng.
    Say(&'static str),
}

/// What fills the whole timeline under the segments.
#[derive(Clone, Copy, Debug)]
enum Background {
    Silent,
    /// White noise at this RMS level, dB full scale.
    NoiseDbfs(f64),
    /// White noise at this SNR below the speech's active level.
    Snr(f64),
}

/// When the endpointer is armed.
#[derive(Clone, Copy, Debug)]
enum Mode {
    AlwaysArmed,
    /// `arm()` before the frame at this many ms.
    ArmAt(usize),
}

/// An expected event.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An utterance from the start of segment `.0` to the end of segment
    /// `.1`, ending for `.2`.
    Utt(usize, usize, EndReason),
    /// An utterance cut at the maximum length: starts at segment `.0`.
    Cut(usize),
    /// No speech after arming, reported at this many ms.
    NoSpeech(usize),
}

struct Case {
    name: &'static str,
    segs: Vec<Seg>,
    background: Background,
    mode: Mode,
    config: EndpointConfig,
    expect: Vec<Expect>,
    /// How much earlier than the clean signal's end speech may be found to
    /// end, provided the audio handed over (with its post-roll) still
    /// reaches that end: at 6 dB SNR a final "ts" lies under the noise.
    early_end_ok_ms: i64,
}

fn case(name: &'static str, segs: Vec<Seg>, background: Background, expect: Vec<Expect>) -> Case {
    Case {
        name,
        segs,
        background,
        mode: Mode::AlwaysArmed,
        config: EndpointConfig::always_armed(),
        expect,
        early_end_ok_ms: 0,
    }
}

fn buried_ending(mut c: Case) -> Case {
    c.early_end_ok_ms = 250;
    c
}

fn armed(mut c: Case, at_ms: usize) -> Case {
    c.mode = Mode::ArmAt(at_ms);
    c.config.always_armed = false;
    c
}

use EndReason::{MaxLength, Silence};
use Expect::{Cut, NoSpeech, Utt};
use Seg::{Gap, Say, Tone};

fn cases() -> Vec<Case> {
    let burst = Tone(800, 440.0, -20.0);
    // Syllable-like bursts: 300 ms on, 200 ms off, for 12 s.
    let mut chatter = vec![Gap(1_000)];
    for _ in 0..24 {
        chatter.push(Tone(300, 300.0, -20.0));
        chatter.push(Gap(200));
    }
    chatter.push(Gap(1_500));
    let mut max_cut = case(
        "max length cuts at 10 s, then the rest is an utterance",
        chatter,
        Background::NoiseDbfs(-55.0),
        vec![Cut(1), Utt(41, 47, Silence)],
    );
    max_cut.config.max_utterance_ms = 10_000;
    let mut short_silence = case(
        "silence_end_ms = 300 splits bursts 450 ms apart",
        vec![Gap(1_000), burst, Gap(450), burst, Gap(1_000)],
        Background::NoiseDbfs(-50.0),
        vec![Utt(1, 1, Silence), Utt(3, 3, Silence)],
    );
    short_silence.config.silence_end_ms = 300;
    // Below the start margin but above the continue margin over white noise
    // at -50 dBFS (in the voice band, where the noise is about -55 dBFS).
    let soft = |d| Tone(d, 300.0, -46.5);
    vec![
        case(
            "digital silence",
            vec![Gap(8_000)],
            Background::Silent,
            vec![],
        ),
        case(
            "quiet noise",
            vec![Gap(8_000)],
            Background::NoiseDbfs(-60.0),
            vec![],
        ),
        case(
            "moderate noise",
            vec![Gap(8_000)],
            Background::NoiseDbfs(-40.0),
            vec![],
        ),
        case(
            "loud noise",
            vec![Gap(8_000)],
            Background::NoiseDbfs(-20.0),
            vec![],
        ),
        case(
            "a tone burst in silence",
            vec![Gap(1_000), burst, Gap(2_000)],
            Background::Silent,
            vec![Utt(1, 1, Silence)],
        ),
        case(
            "a tone burst in noise",
            vec![Gap(1_500), burst, Gap(2_000)],
            Background::NoiseDbfs(-40.0),
            vec![Utt(1, 1, Silence)],
        ),
        case(
            "a 40 ms click is not speech",
            vec![Gap(1_000), Tone(40, 1_000.0, -10.0), Gap(2_000)],
            Background::NoiseDbfs(-50.0),
            vec![],
        ),
        case(
            "bursts 300 ms apart are one utterance",
            vec![Gap(1_000), burst, Gap(300), burst, Gap(1_500)],
            Background::NoiseDbfs(-50.0),
            vec![Utt(1, 3, Silence)],
        ),
        case(
            "bursts 1.2 s apart are two utterances",
            vec![Gap(1_000), burst, Gap(1_200), burst, Gap(1_500)],
            Background::NoiseDbfs(-50.0),
            vec![Utt(1, 1, Silence), Utt(3, 3, Silence)],
        ),
        short_silence,
        max_cut,
        case(
            "speech, clean",
            vec![Gap(1_000), Say("set a timer for ten minutes"), Gap(1_500)],
            Background::Silent,
            vec![Utt(1, 1, Silence)],
        ),
        case(
            "speech at 20 dB SNR",
            vec![Gap(1_500), Say("set a timer for ten minutes"), Gap(1_500)],
            Background::Snr(20.0),
            vec![Utt(1, 1, Silence)],
        ),
        buried_ending(case(
            "speech at 6 dB SNR",
            vec![Gap(1_500), Say("set a timer for ten minutes"), Gap(1_500)],
            Background::Snr(6.0),
            vec![Utt(1, 1, Silence)],
        )),
        case(
            "speech ending in a vowel at 6 dB SNR",
            vec![Gap(1_500), Say("set the lights to blue"), Gap(1_500)],
            Background::Snr(6.0),
            vec![Utt(1, 1, Silence)],
        ),
        case(
            "two commands at 20 dB SNR",
            vec![
                Gap(1_500),
                Say("turn on the kitchen lights"),
                Gap(1_500),
                Say("buy two packs of batteries"),
                Gap(1_500),
            ],
            Background::Snr(20.0),
            vec![Utt(1, 1, Silence), Utt(3, 3, Silence)],
        ),
        buried_ending(case(
            "two commands at 6 dB SNR",
            vec![
                Gap(1_500),
                Say("what time is it"),
                Gap(1_500),
                Say("play some music in the living room"),
                Gap(1_500),
            ],
            Background::Snr(6.0),
            vec![Utt(1, 1, Silence), Utt(3, 3, Silence)],
        )),
        case(
            "a soft onset before a loud burst backdates the start",
            vec![Gap(1_500), soft(600), burst, Gap(1_500)],
            Background::NoiseDbfs(-50.0),
            vec![Utt(1, 2, Silence)],
        ),
        case(
            "backdating stops at a gap longer than 300 ms",
            vec![Gap(1_500), soft(400), Gap(600), burst, Gap(1_500)],
            Background::NoiseDbfs(-50.0),
            vec![Utt(3, 3, Silence)],
        ),
        case(
            "backdating reaches back at most 2 s",
            vec![Gap(1_500), soft(1_000), soft(2_000), burst, Gap(1_500)],
            Background::NoiseDbfs(-50.0),
            vec![Utt(2, 3, Silence)],
        ),
        armed(
            case(
                "backdating stops where the endpointer was armed",
                vec![Gap(1_500), soft(500), soft(400), burst, Gap(1_500)],
                Background::NoiseDbfs(-50.0),
                vec![Utt(2, 3, Silence)],
            ),
            2_000,
        ),
        armed(
            case(
                "armed, nothing said: no speech after 5 s",
                vec![Gap(7_000)],
                Background::NoiseDbfs(-45.0),
                vec![NoSpeech(5_000)],
            ),
            0,
        ),
        armed(
            case(
                "armed, then a command",
                vec![Gap(2_000), Say("set an alarm for seven"), Gap(2_000)],
                Background::Snr(20.0),
                vec![Utt(1, 1, Silence)],
            ),
            1_000,
        ),
        armed(
            case(
                "speech before arming is ignored; only one command per arming",
                vec![
                    Gap(1_000),
                    burst,
                    Gap(1_000),
                    Gap(1_000),
                    burst,
                    Gap(1_000),
                    burst,
                    Gap(1_500),
                ],
                Background::NoiseDbfs(-50.0),
                vec![Utt(4, 4, Silence)],
            ),
            3_000,
        ),
        armed(
            case(
                "armed after a command: the timeout counts from arming",
                vec![Gap(1_000), burst, Gap(7_000)],
                Background::NoiseDbfs(-50.0),
                vec![NoSpeech(7_500)],
            ),
            2_500,
        ),
    ]
}

/// espeak-ng's voice for `text`, read back through `WavSource` (which
/// resamples espeak's 22.05 kHz to 16 kHz). `None` if espeak-ng is absent.
fn speak(text: &str, dir: &Path) -> Option<Vec<f32>> {
    let path = dir.join(format!("{}.wav", text.replace(' ', "_")));
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "160", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let mut source = WavSource::open(&path, false).unwrap();
    let mut out = Vec::new();
    let mut buf = [0.0f32; 4096];
    loop {
        let n = source.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    Some(out)
}

/// The active region of a clean signal: first to last 10 ms block within
/// `range_db` of the loudest block.
fn active_region(x: &[f32], range_db: f64) -> (usize, usize) {
    let block = ms(10);
    let levels: Vec<f64> = x
        .chunks(block)
        .map(|c| 10.0 * (power(c) + 1e-12).log10())
        .collect();
    let peak = levels.iter().cloned().fold(f64::MIN, f64::max);
    let first = levels
        .iter()
        .position(|&l| l >= peak - range_db)
        .unwrap_or(0);
    let last = levels
        .iter()
        .rposition(|&l| l >= peak - range_db)
        .unwrap_or(0);
    (first * block, ((last + 1) * block).min(x.len()))
}

/// Builds the signal and, per segment, its true [start, end) in samples.
fn render(
    c: &Case,
    voices: &std::collections::HashMap<&'static str, Vec<f32>>,
) -> (Vec<f32>, Vec<(usize, usize)>) {
    let mut signal = Vec::new();
    let mut truth = Vec::new();
    let mut speech_power = Vec::new();
    for seg in &c.segs {
        let at = signal.len();
        match *seg {
            Gap(d) => {
                signal.resize(at + ms(d), 0.0);
                truth.push((at, at + ms(d)));
            }
            Tone(d, f, level) => {
                let amp = db_to_amp(level) * 2f64.sqrt();
                signal.extend((0..ms(d)).map(|i| {
                    (amp * (2.0 * std::f64::consts::PI * f * i as f64 / RATE as f64).sin()) as f32
                }));
                truth.push((at, at + ms(d)));
                speech_power.push(db_to_amp(level).powi(2));
            }
            Say(text) => {
                let voice = &voices[text];
                let (a, b) = active_region(voice, 35.0);
                signal.extend_from_slice(voice);
                truth.push((at + a, at + b));
                speech_power.push(power(&voice[a..b]));
            }
        }
    }
    let noise_rms = match c.background {
        Background::Silent => 0.0,
        Background::NoiseDbfs(db) => db_to_amp(db),
        Background::Snr(snr) => {
            let p = speech_power.iter().sum::<f64>() / speech_power.len() as f64;
            (p / 10f64.powf(snr / 10.0)).sqrt()
        }
    };
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ c.name.len() as u64);
    for s in &mut signal {
        *s += (noise_rms * noise.gaussian()) as f32;
    }
    (signal, truth)
}

/// Runs the endpointer over `signal` in 30 ms frames; returns the events
/// with the stream position (samples) at which each was reported.
fn run(signal: &[f32], config: EndpointConfig, arm_at: Option<usize>) -> Vec<(u64, EndpointEvent)> {
    let mut ep = Endpointer::new(config);
    let mut events = Vec::new();
    let mut arm_at = arm_at;
    for (i, frame) in signal.chunks_exact(FRAME_SAMPLES).enumerate() {
        if arm_at.is_some_and(|at| i * FRAME_SAMPLES >= at) {
            ep.arm();
            arm_at = None;
        }
        if let Some(e) = ep.push(frame) {
            events.push((ep.position(), e));
        }
    }
    // The end of the input hands over an utterance still in progress.
    if let Some(e) = ep.finish() {
        events.push((ep.position(), e));
    }
    events
}

fn describe(events: &[(u64, EndpointEvent)]) -> String {
    events
        .iter()
        .map(|(at, e)| match e {
            EndpointEvent::SpeechStarted { at_sample } => {
                format!("start@{} ({}ms)", to_ms(*at_sample), to_ms(*at))
            }
            EndpointEvent::Utterance(u) => format!(
                "utt {}–{} ms {:?} ({}ms)",
                to_ms(u.speech_start),
                to_ms(u.speech_end),
                u.reason,
                to_ms(*at)
            ),
            EndpointEvent::NoSpeech => format!("no-speech@{}ms", to_ms(*at)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn synthetic_signals_give_the_expected_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut voices = std::collections::HashMap::new();
    let mut espeak = true;
    for c in cases() {
        for seg in &c.segs {
            if let Say(text) = *seg
                && espeak
                && !voices.contains_key(text)
            {
                match speak(text, dir.path()) {
                    Some(v) => {
                        voices.insert(text, v);
                    }
                    None => {
                        skip::missing("espeak-ng is not available: skipping the speech cases");
                        espeak = false;
                    }
                }
            }
        }
    }
    let mut failures = Vec::new();
    let mut ran = 0;
    for c in cases() {
        if c.segs.iter().any(|s| matches!(s, Say(_))) && !espeak {
            continue;
        }
        ran += 1;
        let (signal, truth) = render(&c, &voices);
        let arm_at = match c.mode {
            Mode::AlwaysArmed => None,
            Mode::ArmAt(t) => Some(ms(t)),
        };
        let max_len = ms(c.config.max_utterance_ms as usize) as u64;
        let events = run(&signal, c.config.clone(), arm_at);
        let got = describe(&events);
        println!("{:<62} {got}", c.name);
        let mut problems = Vec::new();
        let finished: Vec<&(u64, EndpointEvent)> = events
            .iter()
            .filter(|(_, e)| !matches!(e, EndpointEvent::SpeechStarted { .. }))
            .collect();
        let starts = events.len() - finished.len();
        let utterances = finished
            .iter()
            .filter(|(_, e)| matches!(e, EndpointEvent::Utterance(_)))
            .count();
        if starts != utterances {
            problems.push(format!(
                "{starts} speech starts for {utterances} utterances"
            ));
        }
        if finished.len() != c.expect.len() {
            problems.push(format!(
                "expected {} events, got {}",
                c.expect.len(),
                finished.len()
            ));
        }
        for (want, (at, got)) in c.expect.iter().zip(&finished) {
            let near = |what: &str, got_ms: i64, want_ms: i64, problems: &mut Vec<String>| {
                if (got_ms - want_ms).abs() > TOLERANCE_MS {
                    problems.push(format!("{what} at {got_ms} ms, expected {want_ms} ms"));
                }
            };
            match (want, got) {
                (Utt(first, last, reason), EndpointEvent::Utterance(u)) => {
                    check_utterance(u, &mut problems);
                    if u.reason != *reason {
                        problems.push(format!("ended by {:?}, expected {reason:?}", u.reason));
                    }
                    near(
                        "start",
                        to_ms(u.speech_start),
                        to_ms(truth[*first].0 as u64),
                        &mut problems,
                    );
                    let true_end = to_ms(truth[*last].1 as u64);
                    let end = to_ms(u.speech_end);
                    let audio_end = to_ms(u.start_sample + u.samples.len() as u64);
                    let buried =
                        end < true_end && true_end - end <= c.early_end_ok_ms + TOLERANCE_MS;
                    if buried {
                        if audio_end + TOLERANCE_MS < true_end {
                            problems.push(format!(
                                "audio ends at {audio_end} ms, speech at {true_end} ms"
                            ));
                        }
                    } else {
                        near("end", end, true_end, &mut problems);
                    }
                }
                (Cut(first), EndpointEvent::Utterance(u)) => {
                    check_utterance(u, &mut problems);
                    if u.reason != MaxLength {
                        problems.push(format!("ended by {:?}, expected MaxLength", u.reason));
                    }
                    near(
                        "start",
                        to_ms(u.speech_start),
                        to_ms(truth[*first].0 as u64),
                        &mut problems,
                    );
                    near(
                        "cut",
                        to_ms(u.speech_end),
                        to_ms(truth[*first].0 as u64 + max_len),
                        &mut problems,
                    );
                }
                (NoSpeech(t), EndpointEvent::NoSpeech) => {
                    near("no-speech", to_ms(*at), *t as i64, &mut problems)
                }
                (want, got) => problems.push(format!(
                    "expected {want:?}, got {}",
                    describe(&[(*at, got.clone())])
                )),
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {} [{got}]", c.name, problems.join("; ")));
        }
    }
    println!("{ran} cases run");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// An utterance's audio matches its positions: pre-roll before the speech,
/// post-roll after it.
fn check_utterance(u: &Utterance, problems: &mut Vec<String>) {
    let config = EndpointConfig::default();
    let pre = ms(config.pre_roll_ms as usize) as u64;
    if u.start_sample + pre != u.speech_start && u.start_sample != 0 {
        problems.push(format!(
            "pre-roll of {} samples, expected {pre}",
            u.speech_start - u.start_sample
        ));
    }
    let end = u.start_sample + u.samples.len() as u64;
    if end < u.speech_end {
        problems.push("audio ends before the speech".to_string());
    }
}

#[test]
fn arming_while_speaking_is_ignored_and_disarm_drops_the_utterance() {
    let mut ep = Endpointer::new(EndpointConfig::default());
    let loud: Vec<f32> = (0..FRAME_SAMPLES)
        .map(|i| 0.3 * ((i as f32) * 0.2).sin())
        .collect();
    let quiet = [0.0f32; FRAME_SAMPLES];
    for _ in 0..30 {
        assert_eq!(ep.push(&quiet), None);
    }
    ep.arm();
    let mut started = false;
    for _ in 0..10 {
        started |= matches!(ep.push(&loud), Some(EndpointEvent::SpeechStarted { .. }));
    }
    assert!(started);
    ep.arm();
    assert_eq!(ep.state(), voicegate::audio::EndpointState::Speaking);
    ep.disarm();
    assert_eq!(ep.state(), voicegate::audio::EndpointState::Idle);
    for _ in 0..40 {
        assert_eq!(ep.push(&quiet), None);
    }
}

#[test]
fn the_end_of_the_input_hands_over_the_utterance_in_progress() {
    let mut signal = vec![0.0f32; ms(1_000)];
    signal.extend(
        (0..ms(1_500))
            .map(|i| 0.2 * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / RATE as f32).sin()),
    );
    let events = run(&signal, EndpointConfig::always_armed(), None);
    let Some((_, EndpointEvent::Utterance(u))) = events.last() else {
        panic!("no utterance: {}", describe(&events));
    };
    assert_eq!(u.reason, EndReason::EndOfStream);
    assert!((to_ms(u.speech_start) - 1_000).abs() <= TOLERANCE_MS);
    assert!((to_ms(u.speech_end) - 2_500).abs() <= TOLERANCE_MS);
    let mut ep = Endpointer::new(EndpointConfig::always_armed());
    assert_eq!(ep.finish(), None);
}

#[test]
fn odd_frames_never_panic() {
    let mut ep = Endpointer::new(EndpointConfig::always_armed());
    let mut noise = Noise(7);
    for len in [0usize, 1, 17, 480, 4_800, 3] {
        let frame: Vec<f32> = (0..len).map(|_| noise.gaussian() as f32).collect();
        ep.push(&frame);
    }
    ep.push(&[f32::NAN, f32::INFINITY, -f32::INFINITY, 1e30]);
    let mut zero = Endpointer::new(EndpointConfig {
        sample_rate: 0,
        silence_end_ms: 0,
        max_utterance_ms: 0,
        no_speech_timeout_ms: 0,
        pre_roll_ms: 0,
        post_roll_ms: 0,
        ..EndpointConfig::default()
    });
    zero.arm();
    for _ in 0..5 {
        zero.push(&[0.5; FRAME_SAMPLES]);
    }
    for rate in [1, 8_000, 1_000_000, u32::MAX] {
        let mut ep = Endpointer::new(EndpointConfig {
            sample_rate: rate,
            ..EndpointConfig::always_armed()
        });
        for i in 0..40 {
            let level = if i % 10 < 5 { 0.5 } else { 0.0 };
            ep.push(&[level; FRAME_SAMPLES]);
        }
        ep.finish();
    }
}

// ---------------------------------------------------------------------------
// Real recordings.

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/speech-to-intent");
    let clean = dir.join("clean");
    if clean.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", clean.display());
        None
    }
}

fn read_wav(path: &Path) -> Vec<f32> {
    let mut source = WavSource::open(path, false).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0.0f32; 16_384];
    loop {
        let n = source.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn clips(dir: &Path) -> Vec<PathBuf> {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(dir.join("clean"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    clips.sort();
    clips
}

/// The loud region of a recorded command: from the first to the last pair
/// of consecutive 30 ms frames within 30 dB of the loudest frame (a pair, so
/// that a lone click in the background is not "speech").
fn loud_region(x: &[f32]) -> (usize, usize) {
    let frame = ms(FRAME_MS as usize);
    let levels: Vec<f64> = x
        .chunks(frame)
        .map(|c| 10.0 * (power(c) + 1e-12).log10())
        .collect();
    let peak = levels.iter().cloned().fold(f64::MIN, f64::max);
    let loud: Vec<bool> = levels
        .windows(2)
        .map(|w| w[0] >= peak - 30.0 && w[1] >= peak - 30.0)
        .collect();
    let first = loud.iter().position(|&l| l).unwrap_or(0);
    let last = loud.iter().rposition(|&l| l).map_or(0, |i| i + 1);
    (first * frame, ((last + 1) * frame).min(x.len()))
}

/// Utterances found in `x` (always armed), with their audio spans.
fn utterances(x: &[f32]) -> Vec<Utterance> {
    run(x, EndpointConfig::always_armed(), None)
        .into_iter()
        .filter_map(|(_, e)| match e {
            EndpointEvent::Utterance(u) => Some(u),
            _ => None,
        })
        .collect()
}

/// Whether exactly one utterance was found and its audio covers `region`,
/// give or take `slack` samples at each end.
fn one_covering(found: &[Utterance], region: (usize, usize), slack: usize) -> bool {
    match found {
        [u] => {
            let start = u.start_sample as usize;
            let end = start + u.samples.len();
            start <= region.0 + slack && end + slack >= region.1
        }
        _ => false,
    }
}

/// `clip` with kitchen noise added at `snr_db` below the clip's loud-region
/// level; the noise starts `offset` samples into the kitchen recording.
fn mix(clip: &[f32], kitchen: &[f32], offset: usize, snr_db: f64) -> Vec<f32> {
    let (a, b) = loud_region(clip);
    let speech = power(&clip[a..b]);
    let noise: Vec<f32> = (0..clip.len())
        .map(|i| kitchen[(offset + i) % kitchen.len()])
        .collect();
    let gain = (speech / power(&noise) / 10f64.powf(snr_db / 10.0)).sqrt() as f32;
    clip.iter().zip(&noise).map(|(s, n)| s + gain * n).collect()
}

#[test]
fn real_commands_give_one_utterance_covering_the_speech() {
    let Some(dir) = shared_data() else { return };
    let all = clips(&dir);
    // A spread of the set: every 20th clip.
    for path in all.iter().step_by(20) {
        let clip = read_wav(path);
        let region = loud_region(&clip);
        let found = utterances(&clip);
        let spans: Vec<String> = found
            .iter()
            .map(|u| {
                let end = u.start_sample + u.samples.len() as u64;
                format!(
                    "{}–{} ms ({:?})",
                    to_ms(u.start_sample),
                    to_ms(end),
                    u.reason
                )
            })
            .collect();
        let name = path.file_name().unwrap().to_string_lossy();
        println!(
            "{name}: loud {}–{} ms, utterances {spans:?}",
            to_ms(region.0 as u64),
            to_ms(region.1 as u64)
        );
        assert!(
            one_covering(&found, region, 0),
            "{name}: loud region {region:?}, utterances {spans:?}"
        );
        assert_eq!(found[0].reason, Silence, "{name}");
    }
}

/// Tallies for one condition of the measurement.
#[derive(Default)]
struct Tally {
    clips: usize,
    exactly_one: usize,
    covering: usize,
    covering_100ms: usize,
    ended_by_input_end: usize,
    counts: std::collections::BTreeMap<usize, usize>,
}

impl Tally {
    fn add(&mut self, found: &[Utterance], region: (usize, usize)) {
        self.clips += 1;
        self.exactly_one += usize::from(found.len() == 1);
        self.covering += usize::from(one_covering(found, region, 0));
        self.covering_100ms += usize::from(one_covering(found, region, ms(100)));
        self.ended_by_input_end += found
            .iter()
            .filter(|u| u.reason == EndReason::EndOfStream)
            .count();
        *self.counts.entry(found.len()).or_insert(0) += 1;
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {}/{} clips give exactly one utterance; {} of those cover the loud region \
             ({} within 100 ms); utterances per clip {{count: clips}} {:?}; {} utterance(s) only \
             ended with the clip",
            self.exactly_one,
            self.clips,
            self.covering,
            self.covering_100ms,
            self.counts,
            self.ended_by_input_end
        );
    }
}

/// Measures the endpointer on the benchmark's real commands and holds it
/// to what it achieved (set `VOICEGATE_ENDPOINT_VERBOSE` for every clip's
/// spans).
#[test]
fn real_commands_give_one_utterance_each_clean_and_in_kitchen_noise() {
    let Some(dir) = shared_data() else { return };
    let kitchen_path = dir.join("kitchen.wav");
    let kitchen = kitchen_path.is_file().then(|| read_wav(&kitchen_path));
    if kitchen.is_none() {
        println!("kitchen.wav absent: measuring clean clips only");
    }
    let verbose = std::env::var_os("VOICEGATE_ENDPOINT_VERBOSE").is_some();
    let (mut clean, mut noisy) = (Tally::default(), Tally::default());
    for (i, path) in clips(&dir).iter().enumerate() {
        let clip = read_wav(path);
        let region = loud_region(&clip);
        let found = utterances(&clip);
        clean.add(&found, region);
        let mut conditions = vec![("clean", found)];
        if let Some(kitchen) = &kitchen {
            // Each clip gets a different stretch of the kitchen recording.
            let offset = (i * 7_919 * 16) % kitchen.len();
            let found = utterances(&mix(&clip, kitchen, offset, 6.0));
            noisy.add(&found, region);
            conditions.push(("kitchen 6 dB", found));
        }
        if verbose {
            for (what, found) in conditions {
                let spans: Vec<_> = found
                    .iter()
                    .map(|u| {
                        (
                            to_ms(u.start_sample),
                            to_ms(u.start_sample + u.samples.len() as u64),
                        )
                    })
                    .collect();
                println!(
                    "{i:3} {what:12} loud {}–{} ms: {spans:?}",
                    to_ms(region.0 as u64),
                    to_ms(region.1 as u64)
                );
            }
        }
    }
    clean.report("clean");
    // Clean speech: every clip is one utterance covering its loud region.
    assert_eq!(clean.exactly_one, clean.clips, "clean clips split or lost");
    assert_eq!(clean.covering_100ms, clean.clips, "clean clips cut short");
    if kitchen.is_some() {
        noisy.report("kitchen noise at 6 dB SNR");
        // Floors measured on 2026-12-06 (117 and 115 of 124): the
        // endpointer must not get worse in noise. Raise them when it gets
        // better.
        assert!(
            noisy.exactly_one >= 117,
            "in noise, {} of {} clips give one utterance (was 117)",
            noisy.exactly_one,
            noisy.clips
        );
        assert!(
            noisy.covering_100ms >= 115,
            "in noise, {} of {} clips cover the loud region within 100 ms (was 115)",
            noisy.covering_100ms,
            noisy.clips
        );
    }
}

/// The audio span `[start, end)` of an utterance, in stream samples.
fn span(u: &Utterance) -> (u64, u64) {
    (u.start_sample, u.start_sample + u.samples.len() as u64)
}

/// The fraction of `reference` that `found` covers.
fn coverage(reference: (u64, u64), found: (u64, u64)) -> f64 {
    let overlap = found
        .1
        .min(reference.1)
        .saturating_sub(found.0.max(reference.0));
    overlap as f64 / (reference.1 - reference.0).max(1) as f64
}

/// The longest utterance's span (`(0, 0)` if none).
fn longest(found: &[Utterance]) -> (u64, u64) {
    found
        .iter()
        .map(span)
        .max_by_key(|(a, b)| b - a)
        .unwrap_or((0, 0))
}

/// Clips whose utterance at 6 dB (kitchen noise mixed the benchmark's way,
/// [`voicegate::eval::mix`]) covers at least 90% of the clean clip's own
/// utterance, before start backdating: 103 of 124 (after: 118).
const COVERING_90_BEFORE: usize = 103;
/// The floor this test holds (118 measured with backdating, minus a margin).
const COVERING_90_FLOOR: usize = 115;
/// Clips whose utterance at 6 dB covers at least 90% of the loud region
/// (a reference that does not move with the endpointer): 112 before
/// backdating, 122 after; the floor held.
const LOUD_90_FLOOR: usize = 119;

/// Late starts at 6 dB: per clip, how much of the clean clip's utterance
/// (the endpointer's own, so it moves with the endpointer) the longest
/// utterance found with kitchen noise mixed in covers.
#[test]
fn noisy_utterances_cover_the_clean_utterance() {
    let Some(dir) = shared_data() else { return };
    let kitchen_path = dir.join("kitchen.wav");
    if !kitchen_path.is_file() {
        println!("skipped: {} is absent", kitchen_path.display());
        return;
    }
    let kitchen = read_wav(&kitchen_path);
    let verbose = std::env::var_os("VOICEGATE_ENDPOINT_VERBOSE").is_some();
    let (mut clips_seen, mut covering_90, mut loud_90_clean, mut loud_90_noisy) = (0, 0, 0, 0);
    let mut total = 0.0;
    // Sorted file names are the labels' order, which `noise_offset` counts.
    for (i, path) in clips(&dir).iter().enumerate() {
        let clip = read_wav(path);
        let loud = loud_region(&clip);
        let loud = (loud.0 as u64, loud.1 as u64);
        let clean = longest(&utterances(&clip));
        let mixed = voicegate::eval::mix(&clip, &kitchen, 6.0, voicegate::eval::noise_offset(i));
        let found = utterances(&mixed);
        let noisy = longest(&found);
        let c = coverage(clean, noisy);
        clips_seen += 1;
        total += c;
        covering_90 += usize::from(c >= 0.9);
        loud_90_clean += usize::from(coverage(loud, clean) >= 0.9);
        loud_90_noisy += usize::from(coverage(loud, noisy) >= 0.9);
        if verbose {
            println!(
                "{i:3} {}: clean {}–{} ms, 6 dB {} utterance(s), longest {}–{} ms: {:.0}%",
                path.file_name().unwrap().to_string_lossy(),
                to_ms(clean.0),
                to_ms(clean.1),
                found.len(),
                to_ms(noisy.0),
                to_ms(noisy.1),
                100.0 * c
            );
        }
    }
    println!(
        "6 dB utterance covers ≥ 90% of the clean one: {covering_90}/{clips_seen} \
         (before backdating: {COVERING_90_BEFORE}); mean coverage {:.1}%; \
         ≥ 90% of the loud region: clean {loud_90_clean}, 6 dB {loud_90_noisy}",
        100.0 * total / clips_seen.max(1) as f64
    );
    assert!(
        covering_90 >= COVERING_90_FLOOR,
        "{covering_90}/{clips_seen} clips covered ≥ 90%, expected at least {COVERING_90_FLOOR}"
    );
    assert!(
        loud_90_noisy >= LOUD_90_FLOOR,
        "{loud_90_noisy}/{clips_seen} clips covered ≥ 90% of the loud region at 6 dB, \
         expected at least {LOUD_90_FLOOR}"
    );
}
