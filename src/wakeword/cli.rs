//! `voicegate wakeword ...`: train a model for a phrase, measure a detector.
//!
//! The CLI layer of the wake word: the clap types of `wakeword train`
//! ([`TrainArgs`] and its value enums) and of `wakeword test`
//! ([`TestArgs`]), converted here into the plain [`TrainConfig`] and
//! [`TestConfig`] the library takes, and the dispatch, so `cli.rs` adds one
//! `Wakeword(WakewordCommand)`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::bench::TestConfig;
use super::train::{
    Amounts, DEFAULT_SEED, NetworkConfig, PiperConfig, Recordings, SamplesSplit, Size, TrainConfig,
};
use super::{Split, WakewordError};

/// `voicegate wakeword ...`
#[derive(Debug, Subcommand)]
pub enum WakewordCommand {
    /// Make a wake word model for any phrase from synthetic speech (espeak-ng,
    /// and piper when installed), augmented; plus recordings given with
    /// --samples. Writes FILE and FILE.json (what went in, versions, hashes).
    Train(TrainArgs),
    /// Stream WAV files through the same two-stage detector the daemon uses
    /// and count detections on positives and false alarms on negatives.
    Test(TestArgs),
}

/// Runs a `wakeword` subcommand. Returns the exit code.
pub fn run(cmd: WakewordCommand, json: bool, out: &mut dyn Write) -> Result<i32, WakewordError> {
    match cmd {
        WakewordCommand::Train(args) => train(args, json, out),
        WakewordCommand::Test(args) => super::bench::run(args.into(), json, out),
    }
}

/// `--size` values (rustpotter model types, see [`Size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SizeArg {
    /// One hidden layer of frames/15 units.
    Tiny,
    /// Hidden layers of frames/6 and frames/12 units.
    Small,
    /// Hidden layers of frames/3 and frames/6 units.
    Medium,
    /// Hidden layers of 2·frames/3 and frames/6 units.
    Large,
}

impl From<SizeArg> for Size {
    fn from(s: SizeArg) -> Self {
        match s {
            SizeArg::Tiny => Size::Tiny,
            SizeArg::Small => Size::Small,
            SizeArg::Medium => Size::Medium,
            SizeArg::Large => Size::Large,
        }
    }
}

/// `--samples-split` values (see [`SamplesSplit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplesSplitArg {
    /// Every file.
    All,
    /// Only files whose name hashes into the training split, so that the
    /// others stay unseen for validation (see `split_of`).
    Train,
}

impl From<SamplesSplitArg> for SamplesSplit {
    fn from(s: SamplesSplitArg) -> Self {
        match s {
            SamplesSplitArg::All => SamplesSplit::All,
            SamplesSplitArg::Train => SamplesSplit::Train,
        }
    }
}

/// `voicegate wakeword train`
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The phrase to wake on.
    pub phrase: String,
    /// The model file to write (a FILE.json manifest is written beside it).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Recordings of the phrase (WAV, any rate and channels), each augmented
    /// into --sample-copies clips.
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
    /// Use all files of --samples, or only those in the training split.
    #[arg(long, value_enum, default_value = "all")]
    pub samples_split: SamplesSplitArg,
    /// Recordings of anything but the phrase (WAV), cut into clips.
    #[arg(long, value_name = "DIR")]
    pub negatives: Option<PathBuf>,
    /// Seed of everything random (synthesis settings, augmentation, weights).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Network size (rustpotter model type).
    #[arg(long, value_enum, default_value = "small")]
    pub size: SizeArg,
    /// Training passes over the clips.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// AdamW learning rate (cosine-decayed to zero).
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// Clips per mini-batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Clip (and detector window) length in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub clip_ms: u32,
    /// MFCC coefficients per frame.
    #[arg(long, default_value_t = 16)]
    pub mfcc_size: u16,
    /// espeak-ng utterances of the phrase.
    #[arg(long, default_value_t = 600)]
    pub espeak_positives: usize,
    /// piper utterances of the phrase (when piper is installed).
    #[arg(long, default_value_t = 200)]
    pub piper_positives: usize,
    /// Augmented clips per synthetic utterance of the phrase.
    #[arg(long, default_value_t = 4)]
    pub copies: usize,
    /// Augmented clips per recording of --samples.
    #[arg(long, default_value_t = 60)]
    pub sample_copies: usize,
    /// espeak-ng utterances of other words and phrases.
    #[arg(long, default_value_t = 2400)]
    pub espeak_negatives: usize,
    /// piper utterances of other words and phrases.
    #[arg(long, default_value_t = 400)]
    pub piper_negatives: usize,
    /// Augmented clips per negative utterance.
    #[arg(long, default_value_t = 2)]
    pub negative_copies: usize,
    /// Clips of generated noise and silence.
    #[arg(long, default_value_t = 800)]
    pub noise_clips: usize,
    /// Clips cut from each file of --negatives.
    #[arg(long, default_value_t = 20)]
    pub negatives_per_file: usize,
    /// Python with piper installed (default: the virtualenv that
    /// scripts/setup-tts.sh makes, if present).
    #[arg(long, value_name = "PATH")]
    pub piper_python: Option<PathBuf>,
    /// Do not use piper even when installed.
    #[arg(long)]
    pub no_piper: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl From<TrainArgs> for TrainConfig {
    fn from(a: TrainArgs) -> Self {
        TrainConfig {
            phrase: a.phrase,
            out: a.out,
            recordings: Recordings {
                samples: a.samples,
                samples_split: a.samples_split.into(),
                negatives: a.negatives,
            },
            seed: a.seed,
            network: NetworkConfig {
                size: a.size.into(),
                epochs: a.epochs,
                learning_rate: a.learning_rate,
                batch_size: a.batch_size,
                clip_ms: a.clip_ms,
                mfcc_size: a.mfcc_size,
            },
            amounts: Amounts {
                espeak_positives: a.espeak_positives,
                piper_positives: a.piper_positives,
                copies: a.copies,
                sample_copies: a.sample_copies,
                espeak_negatives: a.espeak_negatives,
                piper_negatives: a.piper_negatives,
                negative_copies: a.negative_copies,
                noise_clips: a.noise_clips,
                negatives_per_file: a.negatives_per_file,
            },
            piper: PiperConfig {
                piper_python: a.piper_python,
                no_piper: a.no_piper,
            },
            threads: a.threads,
        }
    }
}

/// `voicegate wakeword test`
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The wake word model (rustpotter `.rpw`; its phrase is read from the
    /// `FILE.json` manifest beside it unless --phrase is given).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// The phrase whisper verifies (default: from the manifest).
    #[arg(long)]
    pub phrase: Option<String>,
    /// Recordings of the wake word: a directory of WAV files (or one file).
    /// May be repeated.
    #[arg(long, value_name = "DIR", required = true)]
    pub positives: Vec<PathBuf>,
    /// Recordings without it (a directory or one file); repeat for more.
    #[arg(long, value_name = "DIR")]
    pub negatives: Vec<PathBuf>,
    /// Only positives whose file name falls in this split (`validation`:
    /// the part of a recording set that training never saw).
    #[arg(long, value_parser = ["train", "validation"])]
    pub split: Option<String>,
    /// Sensitivity 0..1 (default 0.5).
    #[arg(long)]
    pub sensitivity: Option<f32>,
    /// Stage-1 threshold override (rustpotter score).
    #[arg(long)]
    pub stage1_threshold: Option<f32>,
    /// Stage-1 minimum positive frames override.
    #[arg(long)]
    pub stage1_min_scores: Option<usize>,
    /// The whisper model used by stage 2 (default: the installed
    /// tiny.en-q8_0).
    #[arg(long, value_name = "PATH")]
    pub whisper_model: Option<PathBuf>,
    /// Print every file's result (and every stage-2 score) too.
    #[arg(long)]
    pub details: bool,
    /// Measure stage 1 alone: every rustpotter trigger counts as a wake
    /// (whisper is not loaded). For design figures, not for the daemon.
    #[arg(long)]
    pub stage1_only: bool,
}

impl From<TestArgs> for TestConfig {
    fn from(a: TestArgs) -> Self {
        TestConfig {
            model: a.model,
            phrase: a.phrase,
            positives: a.positives,
            negatives: a.negatives,
            // clap allows only "train" and "validation".
            split: a.split.as_deref().map(|s| match s {
                "train" => Split::Train,
                _ => Split::Validation,
            }),
            sensitivity: a.sensitivity,
            stage1_threshold: a.stage1_threshold,
            stage1_min_scores: a.stage1_min_scores,
            whisper_model: a.whisper_model,
            details: a.details,
            stage1_only: a.stage1_only,
        }
    }
}

/// Runs `wakeword train`: the training, then its summary on `out`.
fn train(args: TrainArgs, json: bool, out: &mut dyn Write) -> Result<i32, WakewordError> {
    let report = super::train::train(&TrainConfig::from(args))?;
    let w = |e: std::io::Error| WakewordError::Write {
        path: PathBuf::from("<stdout>"),
        reason: e.to_string(),
    };
    if json {
        let summary = serde_json::json!({
            "model": report.model_path,
            "manifest": report.manifest_path,
            "phrase": report.manifest.phrase,
            "sha256": report.manifest.output.sha256,
            "bytes": report.manifest.output.bytes,
            "clips": report.manifest.clips,
            "test": report.manifest.test,
            "elapsed_seconds": report.manifest.elapsed_seconds,
        });
        writeln!(out, "{summary}").map_err(w)?;
    } else {
        let m = &report.manifest;
        writeln!(out, "model     {}", report.model_path.display()).map_err(w)?;
        writeln!(out, "manifest  {}", report.manifest_path.display()).map_err(w)?;
        writeln!(
            out,
            "clips     {} positive, {} negative (train); {} held out",
            m.clips.train_positive, m.clips.train_negative, m.clips.test
        )
        .map_err(w)?;
        writeln!(
            out,
            "held out  accuracy {:.2}%, recall {:.2}%, false positives {:.2}%",
            100.0 * m.test.accuracy,
            100.0 * m.test.recall,
            100.0 * m.test.false_positive_rate
        )
        .map_err(w)?;
        writeln!(out, "sha256    {}", m.output.sha256).map_err(w)?;
        writeln!(out, "time      {:.0} s", m.elapsed_seconds).map_err(w)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: WakewordCommand,
    }

    fn parse(args: &[&str]) -> TrainConfig {
        let cli = Cli::try_parse_from(["wakeword"].iter().chain(args)).unwrap();
        match cli.cmd {
            WakewordCommand::Train(a) => a.into(),
            WakewordCommand::Test(_) => panic!("not train"),
        }
    }

    /// The CLI's defaults are [`TrainConfig::new`]'s.
    #[test]
    fn train_defaults_are_the_configs() {
        assert_eq!(
            parse(&["train", "jarvis", "--out", "m.rpw"]),
            TrainConfig::new("jarvis", "m.rpw")
        );
    }

    #[test]
    fn every_train_option_reaches_the_config() {
        let c = parse(&[
            "train",
            "hey computer",
            "--out",
            "m.rpw",
            "--samples",
            "s",
            "--samples-split",
            "train",
            "--negatives",
            "n",
            "--seed",
            "7",
            "--size",
            "large",
            "--epochs",
            "3",
            "--learning-rate",
            "0.5",
            "--batch-size",
            "8",
            "--clip-ms",
            "1000",
            "--mfcc-size",
            "12",
            "--espeak-positives",
            "1",
            "--piper-positives",
            "2",
            "--copies",
            "3",
            "--sample-copies",
            "4",
            "--espeak-negatives",
            "5",
            "--piper-negatives",
            "6",
            "--negative-copies",
            "7",
            "--noise-clips",
            "8",
            "--negatives-per-file",
            "9",
            "--piper-python",
            "py",
            "--no-piper",
            "--threads",
            "2",
        ]);
        assert_eq!(
            c,
            TrainConfig {
                phrase: "hey computer".into(),
                out: "m.rpw".into(),
                recordings: Recordings {
                    samples: Some("s".into()),
                    samples_split: SamplesSplit::Train,
                    negatives: Some("n".into()),
                },
                seed: 7,
                network: NetworkConfig {
                    size: Size::Large,
                    epochs: 3,
                    learning_rate: 0.5,
                    batch_size: 8,
                    clip_ms: 1000,
                    mfcc_size: 12,
                },
                amounts: Amounts {
                    espeak_positives: 1,
                    piper_positives: 2,
                    copies: 3,
                    sample_copies: 4,
                    espeak_negatives: 5,
                    piper_negatives: 6,
                    negative_copies: 7,
                    noise_clips: 8,
                    negatives_per_file: 9,
                },
                piper: PiperConfig {
                    piper_python: Some("py".into()),
                    no_piper: true,
                },
                threads: Some(2),
            }
        );
    }

    #[test]
    fn test_args_become_a_test_config() {
        let cli = Cli::try_parse_from([
            "wakeword",
            "test",
            "--model",
            "m.rpw",
            "--positives",
            "p",
            "--positives",
            "q",
            "--negatives",
            "n",
            "--split",
            "validation",
            "--sensitivity",
            "0.7",
            "--stage1-only",
        ])
        .unwrap();
        let WakewordCommand::Test(a) = cli.cmd else {
            panic!("not test")
        };
        let c = TestConfig::from(a);
        assert_eq!(c.positives, vec![PathBuf::from("p"), PathBuf::from("q")]);
        assert_eq!(c.split, Some(Split::Validation));
        assert_eq!(c.sensitivity, Some(0.7));
        assert!(c.stage1_only && !c.details);
        let train_split = |s: &str| {
            let cli = Cli::try_parse_from([
                "wakeword",
                "test",
                "--model",
                "m",
                "--positives",
                "p",
                "--split",
                s,
            ]);
            cli.map(|c| match c.cmd {
                WakewordCommand::Test(a) => TestConfig::from(a).split,
                WakewordCommand::Train(_) => None,
            })
        };
        assert_eq!(train_split("train").unwrap(), Some(Split::Train));
        assert!(train_split("other").is_err());
    }
}
