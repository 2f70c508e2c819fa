//! `voicegate eval speech`: `eval nlu`'s table for recordings, so that
//! understanding is measured where it matters — on what whisper writes
//! down from speech, through the daemon's own audio path.
//!
//! A manifest (JSONL) names the clips and their labels:
//!
//! ```text
//! {"audio": "clips/0001.wav", "intent": "timer", "text": "set a timer for 5 minutes"}
//! {"audio": "clips/0002.wav", "intent": "oos"}
//! {"audio": "/abs/timer.wav", "intent": "StartTimer", "slots": {"minutes": 10}}
//! ```
//!
//! `audio` is relative to the manifest's directory (or absolute);
//! `intent` is the label (`oos`: out of scope); `slots` (optional) maps
//! slot names to the values said; `text` (optional) is what was said, kept
//! for the report. Other keys (a generator's `voice`, `speed`) are
//! ignored. Names go through a map as in `eval nlu` (see [`nlu`]); without
//! one ([`identity_map`]) they are voicegate's own.
//!
//! The caller hears each clip with `daemon::Replay` (what `run --no-wake
//! --input` does) and hands its events here; scoring is `eval nlu`'s
//! ([`nlu::score`]), with two refinements for speech. When nothing ran,
//! the reason says whether nothing was heard (`nothing_heard`) or whisper
//! was too unsure for the gate to act (`unsure_audio`: the gate asked to
//! say it again). And a clip may hold the answer to a read-back too (a
//! purchase, then "yes"), so a high-stakes action counts as run without a
//! "yes" only when no read-back of it came before. A clip that cannot be read is an error of its own line,
//! reported beside the table; the other clips are still scored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::nlu::{self, LabelSlot, Line, LineResult, NameMap, Report, Verdict};

/// Errors reading the manifest.
#[derive(Debug, thiserror::Error)]
pub enum SpeechEvalError {
    /// The manifest could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `{audio, intent, slots?, text?}`.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A manifest line as written.
#[derive(Debug, Deserialize)]
struct RawEntry {
    audio: String,
    intent: String,
    #[serde(default)]
    slots: Map<String, Value>,
    #[serde(default)]
    text: Option<String>,
}

/// One clip to hear, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its line in the manifest (1-based).
    pub line: usize,
    /// The clip, resolved against the manifest's directory.
    pub audio: PathBuf,
    /// The label, as `eval nlu` scores it (`text`: what was said, if the
    /// manifest says).
    pub label: Line,
}

/// Parses a manifest's text; `path` names it in errors and `base` is the
/// directory relative clip paths start from. Blank lines are skipped; at
/// most `limit` entries.
pub fn parse_manifest(
    text: &str,
    path: &Path,
    base: &Path,
    limit: Option<usize>,
) -> Result<Vec<Entry>, SpeechEvalError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let error = |reason: String| SpeechEvalError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            reason,
        };
        let entry: RawEntry = serde_json::from_str(raw).map_err(|e| error(e.to_string()))?;
        if entry.audio.trim().is_empty() {
            return Err(error("`audio` is empty".into()));
        }
        if entry.intent.trim().is_empty() {
            return Err(error(
                "`intent` is empty (use \"oos\" for out of scope)".into(),
            ));
        }
        let mut slots = Vec::with_capacity(entry.slots.len());
        for (slot, value) in entry.slots {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(error(format!(
                        "slot `{slot}`: a value is a string or a number, not {other}"
                    )));
                }
            };
            slots.push(LabelSlot { slot, value });
        }
        entries.push(Entry {
            line: index + 1,
            audio: base.join(&entry.audio),
            label: Line {
                text: entry.text.unwrap_or_default(),
                intent: entry.intent,
                split: None,
                slots,
            },
        });
        if limit.is_some_and(|n| entries.len() >= n) {
            break;
        }
    }
    Ok(entries)
}

/// Reads a manifest file (see [`parse_manifest`]).
pub fn read_manifest(path: &Path, limit: Option<usize>) -> Result<Vec<Entry>, SpeechEvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpeechEvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_manifest(&text, path, base, limit)
}

/// The map when there is none: every label but `oos` is our intent of that
/// name, every slot ours of that name.
pub fn identity_map(entries: &[Entry]) -> NameMap {
    let mut map = NameMap::default();
    for entry in entries {
        if entry.label.intent != "oos" {
            map.intents
                .insert(entry.label.intent.clone(), vec![entry.label.intent.clone()]);
        }
        for slot in &entry.label.slots {
            map.slots.insert(slot.slot.clone(), slot.slot.clone());
        }
    }
    map
}

/// One clip's result: `eval nlu`'s, plus what was heard.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    /// The clip.
    pub audio: String,
    /// Its manifest line.
    pub line: usize,
    /// The transcripts the gate got, in order.
    pub heard: Vec<String>,
    /// The free readings that backed some of them (`gate::Backing`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backed_by: Vec<String>,
    /// What went wrong on the way (a transcription that failed).
    pub notices: Vec<String>,
    /// The scores.
    #[serde(flatten)]
    pub result: LineResult,
}

/// Scores one clip from the events it gave (see the module docs).
/// `unsure(confidence)`: the gate would not act on a transcript this sure.
pub fn score(
    entry: &Entry,
    map: &NameMap,
    events: &[Value],
    latency_ms: f64,
    inert: &dyn Fn(&str) -> bool,
    unsure: &dyn Fn(f64) -> bool,
) -> LineResult {
    let mut result = nlu::score(&entry.label, map, events, latency_ms, inert);
    // A clip may hold the "yes" too (`purchase_yes.wav`): a high-stakes
    // action that ran after its own read-back was confirmed; one that ran
    // without any read-back was not.
    result.high_stakes_unconfirmed = ran_unconfirmed(events);
    if matches!(&result.verdict, Verdict::NotUnderstood { reason } if reason == "no_action") {
        let mut heard = events.iter().filter(|e| e["event"] == "heard").peekable();
        let reason = if heard.peek().is_none() {
            Some("nothing_heard")
        } else if heard.any(|e| e["confidence"].as_f64().is_none_or(unsure)) {
            Some("unsure_audio")
        } else {
            None
        };
        if let Some(reason) = reason {
            result.verdict = Verdict::NotUnderstood {
                reason: reason.into(),
            };
        }
    }
    result
}

/// Events that mean an action ran or was attempted.
const RAN_EVENTS: [&str; 3] = ["executed", "failed", "outcome_unknown"];

/// A high-stakes action ran (or was attempted) with no read-back of it
/// (`confirm_request` with its `action_id`) before.
fn ran_unconfirmed(events: &[Value]) -> bool {
    events.iter().enumerate().any(|(i, e)| {
        RAN_EVENTS.iter().any(|n| e["event"] == *n)
            && e["risk"] == "high"
            && !events[..i].iter().any(|earlier| {
                earlier["event"] == "confirm_request"
                    && earlier["action_id"].is_string()
                    && earlier["action_id"] == e["action_id"]
            })
    })
}

/// The transcripts in a clip's events.
pub fn heard(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "heard")
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

/// The free readings that backed a transcript in a clip's events
/// ("Set a timer." ← "Set a time."), in order.
pub fn backed_by(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "heard")
        .filter_map(|e| e["backing"]["text"].as_str().map(str::to_string))
        .collect()
}

/// A clip that could not be heard.
#[derive(Debug, Clone, Serialize)]
pub struct ClipError {
    /// Its manifest line.
    pub line: usize,
    /// The clip.
    pub audio: String,
    /// Why.
    pub error: String,
}

/// The whole report: `eval nlu`'s, and the clips that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct SpeechReport {
    /// Per intent and in total.
    #[serde(flatten)]
    pub report: Report,
    /// Clips left out.
    pub errors: Vec<ClipError>,
}

/// Prints `eval nlu`'s table, then the clips that could not be read, each
/// as `MANIFEST:LINE: error`.
pub fn write_table(
    report: &SpeechReport,
    manifest: &Path,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    nlu::write_table(&report.report, out)?;
    if !report.errors.is_empty() {
        writeln!(
            out,
            "{} clip(s) could not be heard and are not counted:",
            report.errors.len()
        )?;
        for e in &report.errors {
            writeln!(out, "{}:{}: {}", manifest.display(), e.line, e.error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Vec<Entry>, SpeechEvalError> {
        parse_manifest(text, Path::new("m.jsonl"), Path::new("/clips"), None)
    }

    #[test]
    fn entries_resolve_their_audio_and_keep_their_labels() {
        let entries = parse(concat!(
            "{\"audio\": \"a.wav\", \"intent\": \"timer\", \"text\": \"set a timer\", \"voice\": \"en-us\"}\n",
            "\n",
            "{\"audio\": \"/abs/b.wav\", \"intent\": \"StartTimer\", \"slots\": {\"minutes\": 10, \"name\": \"tea\"}}\n",
        ))
        .expect("parses");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line, 1);
        assert_eq!(entries[0].audio, Path::new("/clips/a.wav"));
        assert_eq!(entries[0].label.text, "set a timer");
        assert_eq!(entries[1].line, 3);
        assert_eq!(entries[1].audio, Path::new("/abs/b.wav"));
        assert_eq!(
            entries[1].label.slots,
            vec![
                LabelSlot {
                    slot: "minutes".into(),
                    value: "10".into()
                },
                LabelSlot {
                    slot: "name".into(),
                    value: "tea".into()
                },
            ]
        );
        let map = identity_map(&entries);
        assert_eq!(
            map.ours("StartTimer"),
            Some(&["StartTimer".to_string()][..])
        );
        assert_eq!(
            map.slots.get("minutes").map(String::as_str),
            Some("minutes")
        );
    }

    #[test]
    fn a_bad_line_is_reported_with_its_file_and_line() {
        let good = "{\"audio\": \"a.wav\", \"intent\": \"oos\"}\n";
        let cases = [
            ("{\"audio\": \"a.wav\"", "EOF"),
            ("{\"intent\": \"timer\"}", "missing field `audio`"),
            ("{\"audio\": \"a.wav\"}", "missing field `intent`"),
            (
                "{\"audio\": \"\", \"intent\": \"timer\"}",
                "`audio` is empty",
            ),
            (
                "{\"audio\": \"a.wav\", \"intent\": \" \"}",
                "`intent` is empty",
            ),
            (
                "{\"audio\": \"a.wav\", \"intent\": \"t\", \"slots\": {\"x\": [1]}}",
                "slot `x`",
            ),
            (
                "{\"audio\": \"a.wav\", \"intent\": \"t\", \"slots\": [\"x\"]}",
                "invalid type",
            ),
            ("not json", "expected"),
        ];
        for (bad, why) in cases {
            let text = format!("{good}\n{bad}\n{good}");
            let error = parse(&text).expect_err(bad).to_string();
            assert!(
                error.starts_with("m.jsonl:3: ") && error.contains(why),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn when_nothing_ran_the_reason_says_whether_anything_was_heard() {
        let entries = parse("{\"audio\": \"a.wav\", \"intent\": \"StartTimer\"}").expect("ok");
        let map = identity_map(&entries);
        let never = |_: &str| false;
        let unsure = |c: f64| c < 0.5;
        let reason = |events: &[Value]| match score(&entries[0], &map, events, 1.0, &never, &unsure)
            .verdict
        {
            Verdict::NotUnderstood { reason } => reason,
            other => format!("{other:?}"),
        };
        assert_eq!(reason(&[]), "nothing_heard");
        let unsure_heard = [
            json!({"event": "heard", "text": "set a timer", "confidence": 0.2}),
            json!({"event": "intent", "intent": "StartTimer"}),
            json!({"event": "response", "text": "please say it again"}),
        ];
        assert_eq!(reason(&unsure_heard), "unsure_audio");
        let sure_heard = [
            json!({"event": "heard", "text": "yes", "confidence": 0.9}),
            json!({"event": "intent", "intent": "Confirm"}),
        ];
        assert_eq!(reason(&sure_heard), "no_action");
        let ran = [
            json!({"event": "heard", "text": "set a timer", "confidence": 0.2}),
            json!({"event": "executed", "intent": "StartTimer", "risk": "low"}),
        ];
        assert!(matches!(
            score(&entries[0], &map, &ran, 1.0, &never, &unsure).verdict,
            Verdict::Handled { .. }
        ));
        assert_eq!(heard(&unsure_heard), vec!["set a timer".to_string()]);
    }

    #[test]
    fn a_high_stakes_action_counts_as_unconfirmed_unless_its_read_back_came_first() {
        let entries = parse("{\"audio\": \"a.wav\", \"intent\": \"OrderItem\"}").expect("ok");
        let map = identity_map(&entries);
        let never = |_: &str| false;
        let unsure = |_: f64| false;
        let flagged = |events: &[Value]| {
            score(&entries[0], &map, events, 1.0, &never, &unsure).high_stakes_unconfirmed
        };
        let read_back =
            json!({"event": "confirm_request", "intent": "OrderItem", "action_id": "a1"});
        let ran = |id: &str| json!({"event": "executed", "intent": "OrderItem", "risk": "high", "action_id": id});
        assert!(
            !flagged(&[read_back.clone(), ran("a1")]),
            "read back, then yes"
        );
        assert!(flagged(&[ran("a1")]), "no read-back");
        assert!(
            flagged(&[read_back.clone(), ran("a2")]),
            "another action's read-back"
        );
        assert!(
            flagged(&[ran("a1"), read_back]),
            "read back only after it ran"
        );
        let low =
            json!({"event": "executed", "intent": "StartTimer", "risk": "low", "action_id": "t"});
        assert!(!flagged(&[low]));
    }
}
