//! `voicegate wakeword train "PHRASE" --out FILE`: makes the first-stage
//! rustpotter model for any phrase. [`train`] takes a plain [`TrainConfig`]
//! (the CLI layer converts its arguments into one) and runs the recipe's
//! steps, one file each:
//!
//! 1. **Speech** ([`speech`]): the phrase and many other words and phrases
//!    ([`NEGATIVE_TEXTS`]) spoken by espeak-ng (random voice, variant,
//!    speed, pitch) and, when its virtualenv exists, piper (random noise and
//!    length scales).
//! 2. **Recordings** ([`recordings`]): [`Recordings::samples`] (the phrase,
//!    any WAV) and [`Recordings::negatives`] (anything else), resampled to
//!    16 kHz. Read first, so that a bad file fails before minutes of
//!    synthesis.
//! 3. **Clips** ([`clips`]): every utterance becomes one or more
//!    fixed-length clips ([`augment`](crate::wakeword::augment)): speed,
//!    reverberation, placement in the clip, background noise or speech at a
//!    random SNR, gain. Positives end near the end of the clip, as the
//!    keyword does in the detector's sliding window when it fires. Generated
//!    noises and silence are added as negatives.
//! 4. **Features** ([`features`]): rustpotter's own MFCC extraction
//!    (through `WakewordRef::new_from_sample_buffers`, one clip at a time),
//!    so the model sees exactly what the detector computes.
//! 5. **Training** ([`network`]): the network rustpotter's `WakewordModel`
//!    describes (tiny/small/medium/large: two or three dense layers, ReLU),
//!    trained here with mini-batch AdamW in plain Rust (see [`Mlp`] for why
//!    not `WakewordModelTrain::train_from_buffers`), then saved as a
//!    rustpotter `.rpw` file with rustpotter's `WakewordSave`.
//! 6. **Manifest** ([`output`]): `FILE.json` beside the model: phrase, seed,
//!    options, tool versions, inputs (with sha256s), held-out accuracy,
//!    output sha256.
//!
//! Everything random comes from one seed, so the same command on the same
//! inputs and tool versions writes the same bytes
//! (`scripts/make-wakeword-model.sh --check` retrains the shipped model and
//! compares).

mod clips;
mod config;
mod features;
mod network;
mod output;
mod recordings;
mod speech;

use std::time::Instant;

use rustpotter::WakewordModel;

pub use config::{
    Amounts, DEFAULT_SEED, NetworkConfig, PiperConfig, Recordings, SamplesSplit, Size, TrainConfig,
};
pub use features::Dataset;
pub use network::{Mlp, TrainOptions};
pub use output::{
    ClipCounts, InputFile, Inputs, Manifest, ModelInfo, OutputInfo, TestFigures, Tools,
    TrainReport, manifest_path, write_manifest,
};
pub use speech::{NEGATIVE_TEXTS, negative_texts};

use super::WakewordError;
use super::augment::{RATE, Rng};
use super::synth::{Espeak, Piper};

pub(crate) fn log(msg: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[wakeword train {t:6.1}s] {msg}");
}

/// The label of the phrase inside the model (rustpotter lower-cases it).
pub fn label_of(phrase: &str) -> String {
    phrase.trim().to_lowercase()
}

/// Trains and writes the model and manifest.
pub fn train(config: &TrainConfig) -> Result<TrainReport, WakewordError> {
    let started = Instant::now();
    let (phrase, threads) = validate(config)?;
    let (espeak, piper) = synthesizers(&config.piper)?;
    let clip_len = (config.network.clip_ms as usize * RATE as usize / 1000) / 480 * 480;
    // Clips are longer than the window by SHIFT_SAMPLES; training takes a
    // random window of each clip every epoch (see `Dataset`).
    let ext_len = clip_len + clips::SHIFT_SAMPLES;
    let mut rng = Rng::new(config.seed);

    // Recordings first: a bad file should fail before minutes of synthesis.
    let recordings = recordings::load(&config.recordings)?;
    let speech = speech::synthesize(
        phrase,
        &config.amounts,
        config.seed,
        &espeak,
        piper.as_ref(),
        threads,
        &mut rng,
    )?;
    let (positive_utterances, negative_utterances) = speech.counts();
    let inputs = Inputs {
        positive_utterances,
        negative_utterances,
        negative_texts: speech.negative_texts,
        samples: recordings.sample_files,
        negatives: recordings.negative_files,
    };
    let clips = clips::make_clips(
        speech,
        &recordings.samples,
        &recordings.negatives,
        &config.amounts,
        ext_len,
        &mut rng,
    );
    drop(recordings.samples);
    drop(recordings.negatives);
    let features = features::features(clips, config.network.mfcc_size, threads)?;
    let fitted = fit(&config.network, config.seed, &features, threads)?;

    let label = label_of(phrase);
    let model = WakewordModel {
        labels: vec!["none".to_string(), label.clone()],
        train_size: features.frames,
        mfcc_size: config.network.mfcc_size,
        m_type: config.network.size.model_type(),
        weights: fitted.mlp.weights(),
        rms_level: features.rms_level,
    };
    let bytes = output::write_model(&config.out, model)?;
    let manifest = Manifest {
        phrase: phrase.to_string(),
        label,
        seed: config.seed,
        options: config.clone(),
        tools: Tools {
            voicegate: env!("CARGO_PKG_VERSION").to_string(),
            rustpotter: "3.0.2".to_string(),
            espeak_ng: espeak.version.clone(),
            piper: piper.as_ref().map(|p| p.versions.iter().cloned().collect()),
        },
        inputs,
        clips: features.counts,
        model: ModelInfo {
            size: config.network.size,
            frames: features.frames,
            parameters: fitted.mlp.parameters(),
            layers: fitted.widths,
            train_loss: fitted.train_loss,
        },
        test: fitted.test,
        output: output::output_info(&config.out, &bytes),
        elapsed_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    let mpath = manifest_path(&config.out);
    write_manifest(&mpath, &manifest)?;
    log(&format!(
        "wrote {} and {}",
        config.out.display(),
        mpath.display()
    ));
    Ok(TrainReport {
        model_path: config.out.clone(),
        manifest_path: mpath,
        manifest,
    })
}

/// Checks the options that can be checked before any work; returns the
/// trimmed phrase and the number of worker threads.
fn validate(config: &TrainConfig) -> Result<(&str, usize), WakewordError> {
    let phrase = config.phrase.trim();
    if phrase.is_empty() {
        return Err(WakewordError::Usage("the phrase is empty".into()));
    }
    let net = &config.network;
    if net.epochs == 0 || net.batch_size == 0 || !(500..=3000).contains(&net.clip_ms) {
        return Err(WakewordError::Usage(
            "--epochs and --batch-size must be positive and --clip-ms in 500..=3000".into(),
        ));
    }
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    Ok((phrase, threads))
}

/// espeak-ng (required) and piper (unless turned off or not installed).
fn synthesizers(config: &PiperConfig) -> Result<(Espeak, Option<Piper>), WakewordError> {
    let espeak = Espeak::find()?;
    let piper = if config.no_piper {
        None
    } else {
        Piper::find(config.piper_python.as_deref())
            .map_err(|e| WakewordError::Synth(e.to_string()))?
    };
    if piper.is_none() && !config.no_piper {
        log(
            "piper not found (run scripts/setup-tts.sh for a second, natural voice): espeak-ng only",
        );
    }
    Ok((espeak, piper))
}

/// A trained network and its figures.
struct Fitted {
    mlp: Mlp,
    widths: Vec<usize>,
    train_loss: f64,
    test: TestFigures,
}

/// Step 5: builds the network for the features' shape and trains it (the
/// weights and the training order seeded from `seed`).
fn fit(
    net: &NetworkConfig,
    seed: u64,
    features: &features::Features,
    threads: usize,
) -> Result<Fitted, WakewordError> {
    let widths = net
        .size
        .widths(features.frames, usize::from(net.mfcc_size), 2);
    if widths.contains(&0) {
        return Err(WakewordError::Usage(format!(
            "--clip-ms {} is too short for a {:?} model",
            net.clip_ms, net.size
        )));
    }
    let mut mlp = Mlp::new(&widths, &mut Rng::derive(seed, 0x5EED));
    log(&format!(
        "training a {:?} network {:?} ({} weights) on {} clips, {} epochs",
        net.size,
        widths,
        mlp.parameters(),
        features.train.len(),
        net.epochs
    ));
    let opts = TrainOptions {
        epochs: net.epochs,
        learning_rate: net.learning_rate,
        batch_size: net.batch_size,
        weight_decay: 0.01,
        threads,
    };
    let train_loss = mlp.train(
        &features.train,
        &opts,
        &mut Rng::derive(seed, 0xBA7C),
        &|e, loss| {
            log(&format!("epoch {e}: loss {loss:.4}"));
        },
    );
    let test = network::evaluate(&mlp, &features.test);
    log(&format!(
        "held out: accuracy {:.2}%, recall {:.2}%, false positives {:.2}%",
        100.0 * test.accuracy,
        100.0 * test.recall,
        100.0 * test.false_positive_rate
    ));
    Ok(Fitted {
        mlp,
        widths,
        train_loss,
        test,
    })
}

/// A small, fast config for tests: one utterance of each kind, one epoch,
/// no piper, one thread.
#[cfg(test)]
pub(crate) fn tiny_config(out: std::path::PathBuf) -> TrainConfig {
    TrainConfig {
        seed: 3,
        network: NetworkConfig {
            size: Size::Tiny,
            epochs: 1,
            ..NetworkConfig::default()
        },
        amounts: Amounts {
            espeak_positives: 1,
            piper_positives: 0,
            copies: 1,
            sample_copies: 1,
            espeak_negatives: 1,
            piper_negatives: 0,
            negative_copies: 1,
            noise_clips: 1,
            negatives_per_file: 1,
        },
        piper: PiperConfig {
            piper_python: None,
            no_piper: true,
        },
        threads: Some(1),
        ..TrainConfig::new("jarvis", out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_sample_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("broken.wav");
        std::fs::write(&bad, b"not a wav").unwrap();
        let mut c = tiny_config(dir.path().join("m.rpw"));
        c.recordings.samples = Some(dir.path().to_path_buf());
        let err = train(&c).unwrap_err().to_string();
        assert!(err.contains("broken.wav"), "{err}");
    }

    /// The manifest's `options` keep the names and order the flat
    /// `TrainArgs` had: the committed manifest's keys, in its order.
    #[test]
    fn options_serialise_as_the_committed_manifest_has_them() {
        let committed = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/jarvis.rpw.json"
        ));
        let start = committed.find("\"options\": ").unwrap() + "\"options\": ".len();
        let len = committed[start..].find("\n  }").unwrap() + "\n  }".len();
        let theirs = &committed[start..start + len];
        let mut config = TrainConfig::new("jarvis", "/work/main/models/jarvis.rpw");
        config.recordings.samples = Some("/work/main/../shared/data/wake-word/jarvis".into());
        config.recordings.samples_split = SamplesSplit::Train;
        config.threads = Some(2);
        let ours = serde_json::to_string_pretty(&config)
            .unwrap()
            .replace('\n', "\n  ");
        assert_eq!(ours, theirs);
    }
}
