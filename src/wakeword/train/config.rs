//! What `wakeword train` is asked to do, as plain data: [`TrainConfig`] and
//! its parts. It exists so that the trainer takes no clap type: the CLI
//! layer (`wakeword/cli.rs`) parses `TrainArgs` and converts it into a
//! [`TrainConfig`]; tests and other callers build one directly, starting
//! from [`TrainConfig::new`] (every option at the CLI's default).
//!
//! The manifest records the config under `options`, flat, with the field
//! names and order `TrainArgs` had (the sub-structs are `#[serde(flatten)]`),
//! so manifests written before this split read the same.

use std::path::PathBuf;

use rustpotter::ModelType;
use serde::Serialize;

/// Model sizes (rustpotter's `ModelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// One hidden layer of frames/15 units.
    Tiny,
    /// Hidden layers of frames/6 and frames/12 units.
    Small,
    /// Hidden layers of frames/3 and frames/6 units.
    Medium,
    /// Hidden layers of 2·frames/3 and frames/6 units.
    Large,
}

impl Size {
    pub(super) fn model_type(self) -> ModelType {
        match self {
            Size::Tiny => ModelType::Tiny,
            Size::Small => ModelType::Small,
            Size::Medium => ModelType::Medium,
            Size::Large => ModelType::Large,
        }
    }

    /// Layer widths for `frames` MFCC frames of `mfcc` coefficients, as
    /// rustpotter 3.0.2 builds them (`wakeword_nn.rs`).
    pub(super) fn widths(self, frames: usize, mfcc: usize, labels: usize) -> Vec<usize> {
        let shifts = 3; // MFCCS_EXTRACTOR_OUT_SHIFTS
        let input = frames * mfcc;
        match self {
            Size::Tiny => vec![input, frames / (shifts * 5), labels],
            Size::Small => {
                let h1 = frames / (shifts * 2);
                vec![input, h1, h1 / 2, labels]
            }
            Size::Medium => vec![input, frames / shifts, frames / (shifts * 2), labels],
            Size::Large => vec![input, frames / shifts * 2, frames / (shifts * 2), labels],
        }
    }
}

/// Which recordings of [`Recordings::samples`] to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplesSplit {
    /// Every file.
    All,
    /// Only files whose name hashes into the training split, so that the
    /// others stay unseen for validation (see `split_of`).
    Train,
}

/// The default seed (`--seed`).
pub const DEFAULT_SEED: u64 = 1;

/// Everything `wakeword train` is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainConfig {
    /// The phrase to wake on.
    pub phrase: String,
    /// The model file to write (a FILE.json manifest is written beside it).
    pub out: PathBuf,
    /// Recordings to use besides synthetic speech.
    #[serde(flatten)]
    pub recordings: Recordings,
    /// Seed of everything random (synthesis settings, augmentation, weights).
    pub seed: u64,
    /// The network and how it is trained.
    #[serde(flatten)]
    pub network: NetworkConfig,
    /// How many utterances and clips of each kind.
    #[serde(flatten)]
    pub amounts: Amounts,
    /// Whether and how to use piper.
    #[serde(flatten)]
    pub piper: PiperConfig,
    /// Worker threads (`None`: all cores). Not in the manifest: it does not
    /// change the model.
    #[serde(skip)]
    pub threads: Option<usize>,
}

impl TrainConfig {
    /// A config for `phrase` written to `out`, every other option at its
    /// default (the CLI's defaults).
    pub fn new(phrase: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        TrainConfig {
            phrase: phrase.into(),
            out: out.into(),
            recordings: Recordings::default(),
            seed: DEFAULT_SEED,
            network: NetworkConfig::default(),
            amounts: Amounts::default(),
            piper: PiperConfig::default(),
            threads: None,
        }
    }
}

/// Recordings given besides synthetic speech.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recordings {
    /// Recordings of the phrase (WAV, any rate and channels), each augmented
    /// into [`Amounts::sample_copies`] clips.
    pub samples: Option<PathBuf>,
    /// Use all files of `samples`, or only those in the training split.
    pub samples_split: SamplesSplit,
    /// Recordings of anything but the phrase (WAV), cut into clips.
    pub negatives: Option<PathBuf>,
}

impl Default for Recordings {
    fn default() -> Self {
        Recordings {
            samples: None,
            samples_split: SamplesSplit::All,
            negatives: None,
        }
    }
}

/// The network and its training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkConfig {
    /// Network size (rustpotter model type).
    pub size: Size,
    /// Training passes over the clips.
    pub epochs: usize,
    /// AdamW learning rate (cosine-decayed to zero).
    pub learning_rate: f64,
    /// Clips per mini-batch.
    pub batch_size: usize,
    /// Clip (and detector window) length in milliseconds.
    pub clip_ms: u32,
    /// MFCC coefficients per frame.
    pub mfcc_size: u16,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            size: Size::Small,
            epochs: 30,
            learning_rate: 0.001,
            batch_size: 64,
            clip_ms: 1500,
            mfcc_size: 16,
        }
    }
}

/// How many utterances are synthesised and how many clips each becomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Amounts {
    /// espeak-ng utterances of the phrase.
    pub espeak_positives: usize,
    /// piper utterances of the phrase (when piper is installed).
    pub piper_positives: usize,
    /// Augmented clips per synthetic utterance of the phrase.
    pub copies: usize,
    /// Augmented clips per recording of [`Recordings::samples`].
    pub sample_copies: usize,
    /// espeak-ng utterances of other words and phrases.
    pub espeak_negatives: usize,
    /// piper utterances of other words and phrases.
    pub piper_negatives: usize,
    /// Augmented clips per negative utterance.
    pub negative_copies: usize,
    /// Clips of generated noise and silence.
    pub noise_clips: usize,
    /// Clips cut from each file of [`Recordings::negatives`].
    pub negatives_per_file: usize,
}

impl Default for Amounts {
    fn default() -> Self {
        Amounts {
            espeak_positives: 600,
            piper_positives: 200,
            copies: 4,
            sample_copies: 60,
            espeak_negatives: 2400,
            piper_negatives: 400,
            negative_copies: 2,
            noise_clips: 800,
            negatives_per_file: 20,
        }
    }
}

/// piper, the second synthesiser.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PiperConfig {
    /// Python with piper installed (`None`: the virtualenv that
    /// scripts/setup-tts.sh makes, if present).
    pub piper_python: Option<PathBuf>,
    /// Do not use piper even when installed.
    pub no_piper: bool,
}
