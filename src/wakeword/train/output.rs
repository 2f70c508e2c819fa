//! Step 6 of training, the output: the model file with canonical bytes
//! (the same on every run) and the manifest beside it (`FILE.json`: what
//! went in, tool versions, held-out figures, the model's sha256). Its own
//! file because the manifest's types are the trainer's public record, and
//! the byte-level splicing of rustpotter's CBOR needs its explanation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rustpotter::{TensorData, WakewordLoad, WakewordModel, WakewordSave};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Size, TrainConfig};
use crate::wakeword::{Split, WakewordError};

/// What [`train`] wrote.
#[derive(Debug)]
pub struct TrainReport {
    /// The model.
    pub model_path: PathBuf,
    /// The manifest.
    pub manifest_path: PathBuf,
    /// Its content.
    pub manifest: Manifest,
}

/// The manifest written beside the model (`FILE.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The phrase.
    pub phrase: String,
    /// The label inside the model.
    pub label: String,
    /// The seed.
    pub seed: u64,
    /// Every option.
    pub options: TrainConfig,
    /// Versions of what made the model.
    pub tools: Tools,
    /// Synthetic utterances by source, and the recordings.
    pub inputs: Inputs,
    /// Clip counts.
    pub clips: ClipCounts,
    /// The model's shape.
    pub model: ModelInfo,
    /// Accuracy on held-out synthetic clips (utterances never trained on).
    pub test: TestFigures,
    /// The model file.
    pub output: OutputInfo,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
}

/// Tool versions.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    /// This program.
    pub voicegate: String,
    /// The rustpotter crate.
    pub rustpotter: String,
    /// `espeak-ng --version`.
    pub espeak_ng: String,
    /// Python package versions, when piper was used.
    pub piper: Option<HashMap<String, String>>,
}

/// What went in.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// Synthetic utterances of the phrase, by source.
    pub positive_utterances: HashMap<String, usize>,
    /// Synthetic utterances of other texts, by source.
    pub negative_utterances: HashMap<String, usize>,
    /// Distinct negative texts.
    pub negative_texts: usize,
    /// `--samples` recordings.
    pub samples: Vec<InputFile>,
    /// `--negatives` recordings.
    pub negatives: Vec<InputFile>,
}

/// One recording.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    /// File name.
    pub name: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its split.
    pub split: Split,
    /// Whether it was used (`SamplesSplit::Train` skips validation files).
    pub used: bool,
}

/// Clip counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipCounts {
    /// Positive training clips.
    pub train_positive: usize,
    /// Negative training clips.
    pub train_negative: usize,
    /// Held-out clips.
    pub test: usize,
    /// Training clips by kind.
    pub by_kind: HashMap<String, usize>,
}

/// The model's shape.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// rustpotter model type.
    pub size: Size,
    /// MFCC frames per window.
    pub frames: usize,
    /// Layer widths, input first.
    pub layers: Vec<usize>,
    /// Number of weights.
    pub parameters: usize,
    /// Final training loss.
    pub train_loss: f64,
}

/// Held-out figures (argmax decision).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TestFigures {
    /// Fraction correct.
    pub accuracy: f64,
    /// Fraction of positive clips classified positive.
    pub recall: f64,
    /// Fraction of negative clips classified positive.
    pub false_positive_rate: f64,
    /// Positive clips.
    pub positives: usize,
    /// Negative clips.
    pub negatives: usize,
}

/// The model file.
#[derive(Debug, Clone, Serialize)]
pub struct OutputInfo {
    /// File name.
    pub file: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Size.
    pub bytes: u64,
}

/// The manifest's path for a model path: `FILE.json`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Writes the manifest as pretty JSON.
pub fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), WakewordError> {
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| WakewordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| WakewordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `model` to `path` (creating its directory) with canonical bytes;
/// returns the bytes.
pub(super) fn write_model(path: &Path, model: WakewordModel) -> Result<Vec<u8>, WakewordError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| WakewordError::Write {
            path: parent.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    let bytes = canonical_model_bytes(model)?;
    std::fs::write(path, &bytes).map_err(|e| WakewordError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(bytes)
}

/// The model file's entry in the manifest.
pub(super) fn output_info(path: &Path, bytes: &[u8]) -> OutputInfo {
    OutputInfo {
        file: path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    }
}

/// The model file's bytes, the same on every run. rustpotter keeps the
/// weights in a `HashMap` with a random hasher, so `save_to_buffer` writes
/// them in a different order each time; here the CBOR map of weights is
/// rebuilt with its entries sorted by name: the model is serialised with no
/// weights and with each weight alone, and the entries are spliced into one
/// map (header `0xA0 + n`). rustpotter reads the result back (checked).
fn canonical_model_bytes(model: WakewordModel) -> Result<Vec<u8>, WakewordError> {
    let err = |m: String| WakewordError::Train(format!("serialising the model: {m}"));
    let WakewordModel {
        labels,
        train_size,
        mfcc_size,
        m_type,
        weights,
        rms_level,
    } = model;
    let with = |w: HashMap<String, TensorData>| -> Result<Vec<u8>, WakewordError> {
        WakewordModel {
            labels: labels.clone(),
            train_size,
            mfcc_size,
            m_type: m_type.clone(),
            weights: w,
            rms_level,
        }
        .save_to_buffer()
        .map_err(err)
    };
    let empty = with(HashMap::new())?;
    let mut names: Vec<String> = weights.keys().cloned().collect();
    names.sort();
    if names.len() >= 24 {
        return Err(err("too many tensors".into()));
    }
    let mut weights = weights;
    let mut entries = Vec::new();
    let mut split = None;
    for name in &names {
        let t = weights
            .remove(name)
            .ok_or_else(|| err("missing tensor".into()))?;
        let one = with(HashMap::from([(name.clone(), t)]))?;
        let p = empty
            .iter()
            .zip(&one)
            .position(|(a, b)| a != b)
            .ok_or_else(|| err("no weights map".into()))?;
        if empty[p] != 0xA0 || one[p] != 0xA1 {
            return Err(err("unexpected encoding".into()));
        }
        let suffix = empty.len() - p - 1;
        entries.extend_from_slice(&one[p + 1..one.len() - suffix]);
        split = Some(p);
    }
    let p = split.ok_or_else(|| err("no weights".into()))?;
    let mut out = Vec::with_capacity(empty.len() + entries.len());
    out.extend_from_slice(&empty[..p]);
    out.push(0xA0 + names.len() as u8);
    out.extend_from_slice(&entries);
    out.extend_from_slice(&empty[p + 1..]);
    rustpotter::WakewordModel::load_from_buffer(&out)
        .map_err(|e| err(format!("rustpotter cannot read it back: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_written_beside_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.rpw");
        assert_eq!(manifest_path(&model), dir.path().join("m.rpw.json"));
        let manifest = Manifest {
            phrase: "jarvis".into(),
            label: "jarvis".into(),
            seed: 3,
            options: super::super::tiny_config(model.clone()),
            tools: Tools {
                voicegate: "0".into(),
                rustpotter: "3.0.2".into(),
                espeak_ng: "eSpeak NG 1.51".into(),
                piper: None,
            },
            inputs: Inputs {
                positive_utterances: HashMap::from([("espeak".into(), 1)]),
                negative_utterances: HashMap::new(),
                negative_texts: 1,
                samples: vec![InputFile {
                    name: "a.wav".into(),
                    sha256: "00".into(),
                    split: Split::Train,
                    used: true,
                }],
                negatives: vec![],
            },
            clips: ClipCounts::default(),
            model: ModelInfo {
                size: Size::Tiny,
                frames: 150,
                layers: vec![2400, 10, 2],
                parameters: 24032,
                train_loss: 0.1,
            },
            test: TestFigures::default(),
            output: OutputInfo {
                file: "m.rpw".into(),
                sha256: "ab".into(),
                bytes: 1,
            },
            elapsed_seconds: 1.0,
        };
        let path = manifest_path(&model);
        write_manifest(&path, &manifest).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["phrase"], "jarvis");
        assert_eq!(v["seed"], 3);
        assert_eq!(v["options"]["size"], "tiny");
        assert_eq!(v["options"]["samples_split"], "all");
        assert_eq!(v["inputs"]["samples"][0]["split"], "train");
        assert_eq!(v["output"]["sha256"], "ab");
        assert_eq!(v["tools"]["rustpotter"], "3.0.2");
        // An unwritable place is an error naming the file, not a panic.
        let bad = dir.path().join("missing/dir/m.json");
        let err = write_manifest(&bad, &manifest).unwrap_err().to_string();
        assert!(err.contains("missing/dir/m.json"), "{err}");
    }
}
