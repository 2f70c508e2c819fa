//! The wake word: a cheap always-on first stage (rustpotter) and a second
//! stage that verifies the keyword with the whisper model already loaded.
//!
//! - [`detector`]: the cascade the daemon and `wakeword test` share.
//! - [`train`]: `voicegate wakeword train`: synthetic speech, augmentation,
//!   rustpotter training, the manifest beside the model.
//! - [`synth`]: speech synthesis for training (espeak-ng, piper).
//! - [`augment`]: seeded augmentation (speed, gain, noise, reverberation).
//! - [`bench`](mod@bench): `voicegate wakeword test`: detection and false-alarm figures.
//! - [`cli`]: the clap types and dispatch.

pub mod augment;
pub mod bench;
pub mod cli;
pub mod detector;
pub mod synth;
pub mod train;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Errors from wake-word work.
#[derive(Debug, thiserror::Error)]
pub enum WakewordError {
    /// A model file could not be read or is not a rustpotter model.
    #[error("cannot load the wake word model {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Audio could not be read.
    #[error("cannot read {path}: {reason}")]
    Audio {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Synthesis failed or no synthesizer is available.
    #[error("speech synthesis failed: {0}")]
    Synth(String),
    /// Training failed.
    #[error("training failed: {0}")]
    Train(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The whisper verifier failed.
    #[error("keyword verification failed: {0}")]
    Verify(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

/// Which part of a recording set a file belongs to. Real recordings used
/// for training are split by a hash of the file name, so the split is the
/// same on every machine and needs no list: validation figures are reported
/// only on files whose hash puts them in [`Split::Validation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used for training (and choosing thresholds).
    Train,
    /// Never seen by training.
    Validation,
}

/// The split of a recording, from its file name (not its path).
pub fn split_of(file_name: &str) -> Split {
    let digest = Sha256::digest(file_name.as_bytes());
    if digest[0] < 128 {
        Split::Train
    } else {
        Split::Validation
    }
}

/// Removes the wake phrase from the start of a transcript: a command said
/// in the same breath ("Jarvis, set a timer for ten minutes.") reaches the
/// intents without it. The match ignores case and punctuation, and also
/// takes a near miss of a one-word phrase of five letters or more (whisper
/// writes "Jervis" now and then) since the detector has already confirmed
/// that the phrase was said. A phrase said twice ("Jarvis, Jarvis, …", or
/// whisper reading a lone "Jarvis" as "Jarvis Jarvis") goes too. Returns
/// the rest, trimmed; the text unchanged when it does not start with the
/// phrase.
pub fn strip_wake_phrase(text: &str, phrase: &str) -> String {
    let mut rest = strip_once(text, phrase);
    // At most a few repeats: each pass removes at least one word.
    for _ in 0..3 {
        let again = strip_once(&rest, phrase);
        if again == rest {
            break;
        }
        rest = again;
    }
    rest
}

/// [`strip_wake_phrase`], one phrase.
fn strip_once(text: &str, phrase: &str) -> String {
    let word = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let phrase_words: Vec<String> = phrase.split_whitespace().map(word).collect();
    if phrase_words.is_empty() {
        return text.trim().to_string();
    }
    // Byte offsets of the text's words.
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    if spans.len() < phrase_words.len() {
        return text.trim().to_string();
    }
    let exact = spans
        .iter()
        .zip(&phrase_words)
        .all(|(&(a, b), p)| word(&text[a..b]) == *p);
    let near = phrase_words.len() == 1 && phrase_words[0].chars().count() >= 5 && {
        let (a, b) = spans[0];
        edit_distance(&word(&text[a..b]), &phrase_words[0]) <= 2
    };
    if !(exact || near) {
        return text.trim().to_string();
    }
    let end = spans[phrase_words.len() - 1].1;
    text[end..]
        .trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '-')
        })
        .trim()
        .to_string()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_phrase_is_stripped_from_the_start_only() {
        for (text, phrase, rest) in [
            (
                "Jarvis, set a timer for 10 minutes.",
                "jarvis",
                "set a timer for 10 minutes.",
            ),
            ("Jarvis. Play some jazz.", "jarvis", "Play some jazz."),
            ("jarvis", "jarvis", ""),
            ("Jarvis Jarvis", "jarvis", ""),
            (
                "Jarvis, Jarvis, play some jazz.",
                "jarvis",
                "play some jazz.",
            ),
            ("Jarvis!", "jarvis", ""),
            ("Jervis, what time is it?", "jarvis", "what time is it?"),
            ("Set a timer, Jarvis.", "jarvis", "Set a timer, Jarvis."),
            ("Hey computer, lights on", "hey computer", "lights on"),
            ("Hey, lights on", "hey computer", "Hey, lights on"),
            ("Yes.", "jarvis", "Yes."),
            ("  ", "jarvis", ""),
        ] {
            assert_eq!(
                strip_wake_phrase(text, phrase),
                rest,
                "{text:?} / {phrase:?}"
            );
        }
    }

    #[test]
    fn the_split_is_stable_and_uses_the_name_only() {
        assert_eq!(split_of("a.wav"), split_of("a.wav"));
        let names: Vec<String> = (0..200).map(|i| format!("{i}.wav")).collect();
        let train = names.iter().filter(|n| split_of(n) == Split::Train).count();
        assert!((70..130).contains(&train), "{train} of 200 in train");
    }
}
