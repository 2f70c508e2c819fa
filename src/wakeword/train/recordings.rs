//! Step 2 of training, the recordings: every WAV file of a directory as
//! 16 kHz mono, with each file's name, sha256 and split for the manifest.
//! Read before synthesis so that a bad file fails in seconds, not after
//! minutes of speech synthesis.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{InputFile, Recordings, SamplesSplit};
use crate::wakeword::{Split, WakewordError, split_of};

/// The recordings' audio and their manifest entries.
pub(super) struct Loaded {
    /// Recordings of the phrase that are used.
    pub samples: Vec<Vec<f32>>,
    /// Every file of the samples directory.
    pub sample_files: Vec<InputFile>,
    /// Recordings of anything else.
    pub negatives: Vec<Vec<f32>>,
    /// Every file of the negatives directory.
    pub negative_files: Vec<InputFile>,
}

/// Reads the samples (only those in the split asked for) and the negatives.
/// A samples directory without a usable file is an error.
pub(super) fn load(config: &Recordings) -> Result<Loaded, WakewordError> {
    let (samples, sample_files) = match &config.samples {
        Some(dir) => load_dir(dir, Some(config.samples_split))?,
        None => (Vec::new(), Vec::new()),
    };
    if config.samples.is_some() && samples.is_empty() {
        return Err(WakewordError::Usage(format!(
            "no usable WAV files in {}",
            config
                .samples
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        )));
    }
    let (negatives, negative_files) = match &config.negatives {
        Some(dir) => load_dir(dir, None)?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(Loaded {
        samples,
        sample_files,
        negatives,
        negative_files,
    })
}

/// Reads every `.wav` in `dir` (sorted by name) as 16 kHz mono. With a
/// split, files outside it are listed but not used.
fn load_dir(
    dir: &Path,
    split: Option<SamplesSplit>,
) -> Result<(Vec<Vec<f32>>, Vec<InputFile>), WakewordError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WakewordError::Audio {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    paths.sort();
    let mut audio = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let bytes = std::fs::read(&path).map_err(|e| WakewordError::Audio {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let file_split = split_of(&name);
        let used = match split {
            Some(SamplesSplit::Train) => file_split == Split::Train,
            _ => true,
        };
        if used {
            audio.push(read_recording(&path)?);
        }
        files.push(InputFile {
            sha256: hex::encode(Sha256::digest(&bytes)),
            name,
            split: file_split,
            used,
        });
    }
    Ok((audio, files))
}

/// A recording as 16 kHz mono (any WAV, resampled); an empty one is an
/// error.
fn read_recording(path: &Path) -> Result<Vec<f32>, WakewordError> {
    let err = |reason: String| WakewordError::Audio {
        path: path.to_path_buf(),
        reason,
    };
    let out = crate::audio::read_wav_mono_16k(path, crate::audio::WavAccept::Any)
        .map_err(|e| err(e.to_string()))?;
    if out.is_empty() {
        return Err(err("no audio".into()));
    }
    Ok(out)
}
