//! `voicegate eval nlu`: how much of what people actually write for an
//! intent voicegate handles, measured on any labelled sentences (CLINC150,
//! SNIPS, our own), so that widening the understanding has a figure to move.
//!
//! Each line of a JSONL file (`{"text", "intent", "slots"?, "split"?}`) is
//! handed by the caller to the same [`Pipeline`](crate::pipeline::Pipeline)
//! as `voicegate chat`, as a conversation of its own, with actions dry-run.
//! This module only reads the files, classifies the events and sums up; it
//! does no I/O of its own beyond reading the two files.
//!
//! # What counts (the shared data README's definitions)
//!
//! The **first** thing voicegate does with a line decides:
//!
//! - `handled`: a right intent ran (`executed`, `failed`,
//!   `outcome_unknown`: it was attempted), or was read back
//!   (`confirm_request`), or its missing slot was asked for (an `ask` event
//!   naming it);
//! - `asked_again`: a re-prompt or "did you mean" (`did_you_mean`,
//!   `clarify`, `reprompt`), or an `ask` for another intent: nothing ran;
//! - `wrong_action`: another intent ran or was read back;
//! - `not_understood`, with its reason (`no_match`, `ambiguous`, ...;
//!   `refused` when the gate refused it; `nevermind` when an intent that does
//!   nothing, such as "never mind", matched; `no_action` when an intent
//!   matched and nothing followed);
//! - on an out-of-scope line, `false_action`: *any* action run or read back.
//!
//! Nothing ever answers a read-back, so a high-stakes action that runs at
//! all ran without a "yes": every line is also checked for one
//! (`high_stakes_unconfirmed`, which must stay 0).
//!
//! Events are read as JSON by their `event` names, so kinds that do not
//! exist yet (`ask`, `did_you_mean`) count the moment the pipeline emits
//! them.
//!
//! # Slots
//!
//! For every labelled slot the map names, the value must be in the mapped
//! slot of the first `intent` event, and that intent must be a right one.
//! Values are compared as the matcher compares words
//! ([`normalize::tokenize`]): trimmed, case-insensitive, edge punctuation
//! dropped, number words equal to digits ("four" = 4). Slot accuracy is the
//! share of labelled values found.
//!
//! # The map
//!
//! A small TOML table (see `benchmarks/nlu/`) maps the dataset's names to
//! ours. Dataset intents it does not name (and `oos`) are out of scope.
//!
//! ```toml
//! [intents]
//! timer = "StartTimer"
//! change_volume = ["SetVolume", "VolumeUp", "VolumeDown"]   # any is right
//! [slots]
//! party_size_number = "party_size"
//! [slot_groups]
//! music = ["artist", "album", "track", "playlist", "genre", "query"]
//! ```
//!
//! `[slot_groups]` (optional) names slots of ours that hold the same kind of
//! value. Where a dataset's labels are ambiguous (SNIPS labels a bare "play
//! X" artist, track or album), a second figure is kept beside the right-slot
//! one: the value found, right, in *any* slot of the group its mapped slot
//! belongs to ("in a slot of its group"). The right-slot figure is never
//! replaced by it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::intent::normalize;

/// Errors reading the data or the map.
#[derive(Debug, thiserror::Error)]
pub enum NluEvalError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the data is not `{text, intent, ...}`.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The map is not the TOML table described in the module docs.
    #[error("map {path}: {reason}")]
    Map {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Dataset names → ours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NameMap {
    /// Dataset intent → the voicegate intents that are right for it.
    pub intents: BTreeMap<String, Vec<String>>,
    /// Dataset slot → ours.
    pub slots: BTreeMap<String, String>,
    /// Named groups of our slots that hold the same kind of value.
    pub slot_groups: BTreeMap<String, Vec<String>>,
}

/// One name or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    intents: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    slots: BTreeMap<String, String>,
    #[serde(default)]
    slot_groups: BTreeMap<String, Vec<String>>,
}

impl NameMap {
    /// Parses the TOML text of a map.
    pub fn parse(text: &str) -> Result<NameMap, String> {
        let raw: RawMap = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut intents = BTreeMap::new();
        for (theirs, ours) in raw.intents {
            let ours = match ours {
                OneOrMany::One(name) => vec![name],
                OneOrMany::Many(names) => names,
            };
            if ours.is_empty() || ours.iter().any(|n| n.trim().is_empty()) {
                return Err(format!("intent '{theirs}' maps to an empty name"));
            }
            intents.insert(theirs, ours);
        }
        for (group, members) in &raw.slot_groups {
            if members.is_empty() || members.iter().any(|n| n.trim().is_empty()) {
                return Err(format!(
                    "slot group '{group}' is empty or names an empty slot"
                ));
            }
        }
        Ok(NameMap {
            intents,
            slots: raw.slots,
            slot_groups: raw.slot_groups,
        })
    }

    /// Reads a map file.
    pub fn read(path: &Path) -> Result<NameMap, NluEvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| NluEvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        NameMap::parse(&text).map_err(|reason| NluEvalError::Map {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Our intents for a dataset intent; `None`: out of scope.
    pub fn ours(&self, theirs: &str) -> Option<&[String]> {
        self.intents.get(theirs).map(Vec::as_slice)
    }

    /// Our slots that count for a value mapped to `ours` in the second
    /// figure: `ours` and every slot of a group holding it.
    pub fn group_of<'m>(&'m self, ours: &'m str) -> Vec<&'m str> {
        let mut out = vec![ours];
        for members in self.slot_groups.values() {
            if members.iter().any(|m| m == ours) {
                out.extend(members.iter().map(String::as_str).filter(|m| *m != ours));
            }
        }
        out
    }
}

/// One labelled slot value (the span offsets, if any, are not needed).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LabelSlot {
    /// The dataset's slot name.
    pub slot: String,
    /// The value as written in the sentence.
    pub value: String,
}

/// One line of the data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Line {
    /// The sentence.
    pub text: String,
    /// The dataset's intent name.
    pub intent: String,
    /// `train`, `val`, ... when the file has splits.
    #[serde(default)]
    pub split: Option<String>,
    /// Labelled slots.
    #[serde(default)]
    pub slots: Vec<LabelSlot>,
}

/// Reads a JSONL file: blank lines are skipped; with `split`, lines whose
/// `split` differs are left out (lines without one are kept); then at most
/// `limit` lines.
pub fn read_lines(
    path: &Path,
    split: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<Line>, NluEvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| NluEvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| NluEvalError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            reason: e.to_string(),
        })?;
        if split.is_some_and(|want| line.split.as_deref().is_some_and(|s| s != want)) {
            continue;
        }
        lines.push(line);
        if limit.is_some_and(|n| lines.len() >= n) {
            break;
        }
    }
    Ok(lines)
}

/// The first thing voicegate did with a line (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The right intent ran, was read back, or asked for its missing slot.
    Handled {
        /// Ours (`ours` in `--lines` output: `intent` there is the
        /// dataset's).
        #[serde(rename = "ours")]
        intent: String,
    },
    /// A re-prompt or "did you mean": nothing ran.
    AskedAgain,
    /// Nothing was done.
    NotUnderstood {
        /// Why.
        reason: String,
    },
    /// Another intent ran or was read back (in-scope line).
    WrongAction {
        /// What ran (`ours` in `--lines` output).
        #[serde(rename = "ours")]
        intent: String,
    },
    /// An action ran or was read back on an out-of-scope line.
    FalseAction {
        /// What ran (`ours` in `--lines` output).
        #[serde(rename = "ours")]
        intent: String,
    },
}

/// Events that mean an action ran (or was attempted) or was read back.
const ACTION_EVENTS: [&str; 4] = ["executed", "failed", "outcome_unknown", "confirm_request"];
/// Events that ask the user again without acting.
const ASKED_EVENTS: [&str; 3] = ["did_you_mean", "clarify", "reprompt"];

/// Classifies a line's events. `expected`: the right intents, `None` for an
/// out-of-scope line. `inert(intent)`: the intent's action does nothing
/// (`nevermind`), so running it is no action.
pub fn classify(
    events: &[Value],
    expected: Option<&[String]>,
    inert: &dyn Fn(&str) -> bool,
) -> Verdict {
    let right = |intent: &str| expected.is_some_and(|e| e.iter().any(|x| x == intent));
    for event in events {
        let name = event["event"].as_str().unwrap_or("");
        let intent = event["intent"].as_str().unwrap_or("").to_string();
        if ACTION_EVENTS.contains(&name) {
            return if inert(&intent) {
                Verdict::NotUnderstood {
                    reason: "nevermind".into(),
                }
            } else if right(&intent) {
                Verdict::Handled { intent }
            } else if expected.is_some() {
                Verdict::WrongAction { intent }
            } else {
                Verdict::FalseAction { intent }
            };
        }
        if name == "ask" {
            return if right(&intent) {
                Verdict::Handled { intent }
            } else {
                Verdict::AskedAgain
            };
        }
        if ASKED_EVENTS.contains(&name) {
            return Verdict::AskedAgain;
        }
        if name == "not_understood" {
            let reason = event["why"]["reason"]
                .as_str()
                .or_else(|| event["reason"].as_str())
                .unwrap_or("unknown");
            return Verdict::NotUnderstood {
                reason: reason.to_string(),
            };
        }
        if name == "refused" {
            return Verdict::NotUnderstood {
                reason: "refused".into(),
            };
        }
    }
    Verdict::NotUnderstood {
        reason: "no_action".into(),
    }
}

/// A slot value as the matcher would read it: its tokens' normal forms.
fn canonical(text: &str) -> String {
    normalize::tokenize(text)
        .into_iter()
        .map(|t| t.norm)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Is `got` (a slot value from an `intent` event) the labelled `value`?
/// Trimmed, case-insensitive, number words equal to digits.
pub fn same_value(label: &str, got: &Value) -> bool {
    let got = match got {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return false,
    };
    let want = canonical(label);
    !want.is_empty() && want == canonical(&got)
}

/// One labelled value's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotResult {
    /// The dataset's slot name.
    pub slot: String,
    /// Found in the mapped slot.
    pub found: bool,
    /// Found in the mapped slot or another of its group.
    pub in_group: bool,
    /// The mapped slot is in a group (else `in_group` is `found`).
    pub grouped: bool,
}

/// One line's result.
#[derive(Debug, Clone, Serialize)]
pub struct LineResult {
    /// The sentence.
    pub text: String,
    /// The dataset's intent.
    pub intent: String,
    /// Whether the map names the intent.
    pub in_scope: bool,
    /// What voicegate did first.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The first recognised intent, if any.
    pub recognised: Option<String>,
    /// Labelled values of mapped slots.
    pub slots_labelled: usize,
    /// Of those, found in the right slot of a right intent.
    pub slots_found: usize,
    /// Of those, found in a slot of the right slot's group (the right slot
    /// included) of a right intent.
    pub slots_in_group: usize,
    /// Each labelled value of a mapped slot, and where it was found.
    pub slots: Vec<SlotResult>,
    /// The slots of the first recognised intent, as read (for looking at
    /// misses).
    pub slots_read: Map<String, Value>,
    /// A high-stakes action ran (or was attempted) on this line. Nothing
    /// here ever says "yes", so this must stay false: it would be an action
    /// the gate let through without a confirmation.
    pub high_stakes_unconfirmed: bool,
    /// The pipeline's time to handle the line, ms.
    pub latency_ms: f64,
    /// How the first intent was reached (`template`, `fallback`), if one was.
    pub by: Option<String>,
    /// The fallback's score: of its reading, or of the nearest intent of
    /// an out-of-scope answer (for calibrating the thresholds).
    pub score: Option<f64>,
    /// The best score of another intent, for a fallback reading.
    pub runner_up: Option<f64>,
    /// The nearest intent of an out-of-scope answer.
    pub nearest: Option<String>,
}

/// Events that mean an action ran or was attempted.
const RAN_EVENTS: [&str; 3] = ["executed", "failed", "outcome_unknown"];

/// Scores one line from the events the pipeline gave for it.
pub fn score(
    line: &Line,
    map: &NameMap,
    events: &[Value],
    latency_ms: f64,
    inert: &dyn Fn(&str) -> bool,
) -> LineResult {
    let expected = map.ours(&line.intent);
    let verdict = classify(events, expected, inert);
    let first_intent = events.iter().find(|e| e["event"] == "intent");
    let recognised = first_intent.and_then(|e| e["intent"].as_str().map(str::to_string));
    let empty = Map::new();
    let slots = match (&recognised, expected) {
        (Some(intent), Some(ours)) if ours.contains(intent) => first_intent
            .and_then(|e| e["slots"].as_object())
            .unwrap_or(&empty),
        _ => &empty,
    };
    let mut per_slot = Vec::new();
    if expected.is_some() {
        for label in &line.slots {
            let Some(ours) = map.slots.get(&label.slot) else {
                continue;
            };
            let found_in =
                |name: &str| slots.get(name).is_some_and(|v| same_value(&label.value, v));
            per_slot.push(SlotResult {
                slot: label.slot.clone(),
                found: found_in(ours),
                in_group: map.group_of(ours).into_iter().any(found_in),
                grouped: map.group_of(ours).len() > 1,
            });
        }
    }
    let high_stakes_unconfirmed = events
        .iter()
        .any(|e| RAN_EVENTS.iter().any(|n| e["event"] == *n) && e["risk"] == "high");
    let labelled = per_slot.len();
    let found = per_slot.iter().filter(|s| s.found).count();
    let in_group = per_slot.iter().filter(|s| s.in_group).count();
    let slots_read = first_intent
        .and_then(|e| e["slots"].as_object())
        .cloned()
        .unwrap_or_default();
    let out_of_scope = events
        .iter()
        .find(|e| e["event"] == "not_understood" && e["why"]["reason"] == "out_of_scope");
    LineResult {
        by: first_intent.and_then(|e| e["by"].as_str().map(str::to_string)),
        score: first_intent
            .and_then(|e| e["score"].as_f64())
            .or_else(|| out_of_scope.and_then(|e| e["why"]["score"].as_f64())),
        runner_up: first_intent.and_then(|e| e["runner_up"].as_f64()),
        nearest: out_of_scope.and_then(|e| e["why"]["nearest"].as_str().map(str::to_string)),
        text: line.text.clone(),
        intent: line.intent.clone(),
        in_scope: expected.is_some(),
        verdict,
        recognised,
        slots_labelled: labelled,
        slots_found: found,
        slots_in_group: in_group,
        slots: per_slot,
        slots_read,
        high_stakes_unconfirmed,
        latency_ms,
    }
}

/// Labelled values of one slot, and how many were found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlotCount {
    /// Labelled values.
    pub labelled: usize,
    /// Found.
    pub found: usize,
    /// Found in a slot of its group.
    pub in_group: usize,
}

/// One row of the table: a dataset intent, or a total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// The dataset's intent (or the total's name).
    pub intent: String,
    /// Ours, as the map says (empty: out of scope).
    pub maps_to: Vec<String>,
    /// In scope.
    pub in_scope: bool,
    /// Lines.
    pub n: usize,
    /// Handled.
    pub handled: usize,
    /// Asked again.
    pub asked: usize,
    /// Another intent ran or was read back.
    pub wrong: usize,
    /// Nothing was done.
    pub not_understood: usize,
    /// Out of scope, and something ran or was read back.
    pub false_actions: usize,
    /// Labelled values of mapped slots.
    pub slots_labelled: usize,
    /// Of those, found.
    pub slots_found: usize,
    /// Of those, found in a slot of the right slot's group.
    pub slots_in_group: usize,
    /// slots_found / slots_labelled, when anything was labelled.
    pub slot_accuracy: Option<f64>,
    /// slots_in_group / slots_labelled, when anything was labelled.
    pub slot_in_group_accuracy: Option<f64>,
    /// Some labelled slot of the row maps to a slot in a group (its second
    /// figure says something).
    pub grouped: bool,
    /// Per dataset slot name: labelled values, and found.
    pub by_slot: BTreeMap<String, SlotCount>,
    /// High-stakes actions run without a "yes" (must be 0).
    pub high_stakes_unconfirmed: usize,
    /// Pipeline time per line, median, ms.
    pub p50_ms: f64,
    /// Pipeline time per line, 95th percentile, ms.
    pub p95_ms: f64,
    /// Not understood, by reason.
    pub reasons: BTreeMap<String, usize>,
    /// Wrong or false actions, by the intent that ran.
    pub acted_as: BTreeMap<String, usize>,
}

impl Row {
    fn add(&mut self, r: &LineResult) {
        self.n += 1;
        match &r.verdict {
            Verdict::Handled { .. } => self.handled += 1,
            Verdict::AskedAgain => self.asked += 1,
            Verdict::NotUnderstood { reason } => {
                self.not_understood += 1;
                *self.reasons.entry(reason.clone()).or_default() += 1;
            }
            Verdict::WrongAction { intent } => {
                self.wrong += 1;
                *self.acted_as.entry(intent.clone()).or_default() += 1;
            }
            Verdict::FalseAction { intent } => {
                self.false_actions += 1;
                *self.acted_as.entry(intent.clone()).or_default() += 1;
            }
        }
        self.slots_labelled += r.slots_labelled;
        self.slots_found += r.slots_found;
        self.slots_in_group += r.slots_in_group;
        self.high_stakes_unconfirmed += usize::from(r.high_stakes_unconfirmed);
        for s in &r.slots {
            let count = self.by_slot.entry(s.slot.clone()).or_default();
            count.labelled += 1;
            count.found += usize::from(s.found);
            count.in_group += usize::from(s.in_group);
            self.grouped |= s.grouped;
        }
    }

    fn finish(&mut self, mut latencies: Vec<f64>) {
        latencies.sort_by(f64::total_cmp);
        self.p50_ms = super::percentile(&latencies, 50.0);
        self.p95_ms = super::percentile(&latencies, 95.0);
        self.slot_accuracy =
            (self.slots_labelled > 0).then(|| self.slots_found as f64 / self.slots_labelled as f64);
        self.slot_in_group_accuracy = (self.slots_labelled > 0)
            .then(|| self.slots_in_group as f64 / self.slots_labelled as f64);
    }

    /// A count as a share of the row's lines.
    pub fn share(&self, count: usize) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            count as f64 / self.n as f64
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Lines scored.
    pub lines: usize,
    /// One row per dataset intent: in scope first, by name.
    pub rows: Vec<Row>,
    /// All in-scope lines.
    pub in_scope: Row,
    /// All out-of-scope lines.
    pub out_of_scope: Row,
    /// Names the map gives that no loaded intent has: their lines cannot be
    /// handled.
    pub unknown_intents: Vec<String>,
    /// The map's slot groups, as `name: a|b|c` (empty: none, and no second
    /// slot figure is printed).
    pub slot_groups: Vec<String>,
}

/// Sums the results up per dataset intent and in two totals.
pub fn summarise(results: &[LineResult], map: &NameMap, unknown_intents: Vec<String>) -> Report {
    let mut rows: BTreeMap<(bool, String), (Row, Vec<f64>)> = BTreeMap::new();
    let mut in_scope = (Row::default(), Vec::new());
    let mut out_of_scope = (Row::default(), Vec::new());
    for r in results {
        // In-scope rows sort first (`!in_scope` is false for them).
        let (row, latencies) = rows
            .entry((!r.in_scope, r.intent.clone()))
            .or_insert_with(|| {
                (
                    Row {
                        intent: r.intent.clone(),
                        maps_to: map
                            .ours(&r.intent)
                            .map(<[String]>::to_vec)
                            .unwrap_or_default(),
                        in_scope: r.in_scope,
                        ..Row::default()
                    },
                    Vec::new(),
                )
            });
        row.add(r);
        latencies.push(r.latency_ms);
        let total = if r.in_scope {
            &mut in_scope
        } else {
            &mut out_of_scope
        };
        total.0.add(r);
        total.1.push(r.latency_ms);
    }
    let rows: Vec<Row> = rows
        .into_values()
        .map(|(mut row, latencies)| {
            row.finish(latencies);
            row
        })
        .collect();
    let total = |(mut row, latencies): (Row, Vec<f64>), name: &str, scope: bool| {
        row.intent = name.to_string();
        row.in_scope = scope;
        row.finish(latencies);
        row
    };
    Report {
        lines: results.len(),
        in_scope: total(in_scope, "in scope", true),
        out_of_scope: total(out_of_scope, "out of scope", false),
        rows,
        unknown_intents,
        slot_groups: map
            .slot_groups
            .iter()
            .map(|(name, members)| format!("{name}: {}", members.join("|")))
            .collect(),
    }
}

/// Out-of-scope intents listed one by one in the text table when there are
/// at most this many; beyond it, only those with a false action (the rest
/// are in the total).
const OUT_OF_SCOPE_ROWS: usize = 12;

fn pct(row: &Row, count: usize) -> String {
    format!("{:.1}%", row.share(count) * 100.0)
}

fn write_row(
    out: &mut dyn std::io::Write,
    row: &Row,
    name: &str,
    width: usize,
) -> std::io::Result<()> {
    let dash = || "-".to_string();
    let (handled, wrong) = if row.in_scope {
        (pct(row, row.handled), pct(row, row.wrong))
    } else {
        (dash(), dash())
    };
    let false_actions = if row.in_scope {
        dash()
    } else {
        format!("{} ({})", row.false_actions, pct(row, row.false_actions))
    };
    let slots = match row.slot_accuracy {
        Some(a) => format!("{:.1}% of {}", a * 100.0, row.slots_labelled),
        None => dash(),
    };
    writeln!(
        out,
        "{name:<width$} {:>6} {handled:>8} {:>7} {wrong:>7} {:>9} {false_actions:>12} {slots:>14} {:>7.2} {:>7.2}",
        row.n,
        pct(row, row.asked),
        pct(row, row.not_understood),
        row.p50_ms,
        row.p95_ms,
    )
}

/// Prints the report as a table, one row per intent, then the totals and
/// what the misses were.
pub fn write_table(report: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let out_count = report.rows.iter().filter(|r| !r.in_scope).count();
    let show_all_out = out_count <= OUT_OF_SCOPE_ROWS;
    let mut named: Vec<(String, &Row)> = Vec::new();
    for row in &report.rows {
        if row.in_scope {
            named.push((format!("{} → {}", row.intent, row.maps_to.join("|")), row));
        } else if show_all_out || row.false_actions > 0 || row.intent == "oos" {
            named.push((format!("{} (out of scope)", row.intent), row));
        }
    }
    let in_count = report.rows.len() - out_count;
    let intents = |n: usize| {
        if n == 1 {
            "1 intent".to_string()
        } else {
            format!("{n} intents")
        }
    };
    named.push((
        format!("in scope ({})", intents(in_count)),
        &report.in_scope,
    ));
    named.push((
        format!("out of scope ({})", intents(out_count)),
        &report.out_of_scope,
    ));
    let width = named
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(16);
    writeln!(
        out,
        "{:<width$} {:>6} {:>8} {:>7} {:>7} {:>9} {:>12} {:>14} {:>7} {:>7}",
        "intent → ours",
        "n",
        "handled",
        "asked",
        "wrong",
        "not und.",
        "false act.",
        "slots",
        "p50 ms",
        "p95 ms"
    )?;
    for (name, row) in &named {
        write_row(out, row, name, width)?;
    }
    for row in report.rows.iter().filter(|r| !r.by_slot.is_empty()) {
        let slots: Vec<String> = row
            .by_slot
            .iter()
            .map(|(slot, c)| format!("{slot} {}/{}", c.found, c.labelled))
            .collect();
        writeln!(out, "{}, slots found: {}", row.intent, slots.join(", "))?;
    }
    if !report.slot_groups.is_empty() {
        for row in report.rows.iter().filter(|r| r.grouped) {
            let slots: Vec<String> = row
                .by_slot
                .iter()
                .map(|(slot, c)| format!("{slot} {}/{}", c.in_group, c.labelled))
                .collect();
            let share = row.slot_in_group_accuracy.unwrap_or(0.0) * 100.0;
            writeln!(
                out,
                "{}, in a slot of its group ({}): {share:.1}% of {}: {}",
                row.intent,
                report.slot_groups.join("; "),
                row.slots_labelled,
                slots.join(", ")
            )?;
        }
    }
    for total in [&report.in_scope, &report.out_of_scope] {
        if !total.reasons.is_empty() {
            writeln!(
                out,
                "{}, not understood: {}",
                total.intent,
                counts(&total.reasons)
            )?;
        }
        if !total.acted_as.is_empty() {
            let what = if total.in_scope { "wrong" } else { "false" };
            writeln!(
                out,
                "{}, {what} actions: {}",
                total.intent,
                counts(&total.acted_as)
            )?;
        }
    }
    writeln!(
        out,
        "high-stakes actions run without a yes: {}",
        report.in_scope.high_stakes_unconfirmed + report.out_of_scope.high_stakes_unconfirmed
    )?;
    if !report.unknown_intents.is_empty() {
        writeln!(
            out,
            "not among the loaded intents (their lines cannot be handled): {}",
            report.unknown_intents.join(", ")
        )?;
    }
    Ok(())
}

/// "a 3, b 1", largest first.
fn counts(map: &BTreeMap<String, usize>) -> String {
    let mut pairs: Vec<(&String, &usize)> = map.iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn never(_: &str) -> bool {
        false
    }

    #[test]
    fn slot_values_compare_trimmed_caseless_and_numbers_as_digits() {
        let cases: &[(&str, Value, bool)] = &[
            ("Miles Davis", json!("miles davis"), true),
            ("  Kind of Blue ", json!("Kind Of Blue"), true),
            ("four", json!(4), true),
            ("4", json!("four"), true),
            ("twenty five", json!(25), true),
            ("twenty-five", json!("25"), true),
            ("four", json!(5), false),
            ("Miles Davis", json!("Miles"), false),
            ("jazz", json!({"x": 1}), false),
            ("", json!(""), false),
        ];
        for (label, got, want) in cases {
            assert_eq!(same_value(label, got), *want, "{label:?} vs {got}");
        }
    }

    #[test]
    fn the_first_thing_done_decides() {
        let expected = vec!["StartTimer".to_string()];
        let ran = |intent: &str| json!({"event": "executed", "intent": intent});
        /// Events, the right intents (`None`: out of scope), the verdict.
        type Case<'a> = (Vec<Value>, Option<&'a [String]>, Verdict);
        let cases: Vec<Case> = vec![
            (
                vec![
                    json!({"event": "intent", "intent": "StartTimer"}),
                    ran("StartTimer"),
                ],
                Some(&expected),
                Verdict::Handled {
                    intent: "StartTimer".into(),
                },
            ),
            (
                vec![ran("CancelTimer")],
                Some(&expected),
                Verdict::WrongAction {
                    intent: "CancelTimer".into(),
                },
            ),
            (
                vec![ran("CancelTimer")],
                None,
                Verdict::FalseAction {
                    intent: "CancelTimer".into(),
                },
            ),
            (
                vec![json!({"event": "ask", "intent": "StartTimer", "slot": "duration"})],
                Some(&expected),
                Verdict::Handled {
                    intent: "StartTimer".into(),
                },
            ),
            (
                vec![json!({"event": "did_you_mean", "intent": "StartTimer"})],
                Some(&expected),
                Verdict::AskedAgain,
            ),
            (
                vec![json!({"event": "not_understood", "why": {"reason": "no_match"}})],
                None,
                Verdict::NotUnderstood {
                    reason: "no_match".into(),
                },
            ),
            (
                vec![
                    json!({"event": "intent", "intent": "Confirm"}),
                    json!({"event": "response"}),
                ],
                Some(&expected),
                Verdict::NotUnderstood {
                    reason: "no_action".into(),
                },
            ),
        ];
        for (events, expected, want) in cases {
            assert_eq!(classify(&events, expected, &never), want, "{events:?}");
        }
        let inert = |i: &str| i == "Nevermind";
        assert_eq!(
            classify(&[ran("Nevermind")], None, &inert),
            Verdict::NotUnderstood {
                reason: "nevermind".into()
            }
        );
    }

    #[test]
    fn a_line_written_out_keeps_the_datasets_intent_beside_ours() {
        let map = NameMap::parse("[intents]\ntimer = \"StartTimer\"\n").expect("map");
        let line = Line {
            text: "play jazz".into(),
            intent: "oos".into(),
            split: None,
            slots: vec![],
        };
        let events = [json!({"event": "executed", "intent": "PlayMusic", "risk": "low"})];
        let r = score(&line, &map, &events, 1.0, &never);
        assert_eq!(
            r.verdict,
            Verdict::FalseAction {
                intent: "PlayMusic".into()
            }
        );
        // The flattened verdict once wrote a second "intent" key, which
        // JSON readers take over the dataset's.
        let text = serde_json::to_string(&r).expect("json");
        assert_eq!(text.matches("\"intent\":").count(), 1, "{text}");
        let v: Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(v["intent"], "oos");
        assert_eq!(v["ours"], "PlayMusic");
        assert_eq!(v["verdict"], "false_action");
    }

    #[test]
    fn a_high_stakes_action_run_on_the_first_utterance_is_counted() {
        let map = NameMap::parse("[intents]\nBook = \"BookTable\"\n").expect("map");
        let line = Line {
            text: "book".into(),
            intent: "Book".into(),
            split: None,
            slots: vec![],
        };
        let read_back = [json!({"event": "confirm_request", "intent": "BookTable"})];
        assert!(!score(&line, &map, &read_back, 1.0, &never).high_stakes_unconfirmed);
        for ran in ["executed", "failed", "outcome_unknown"] {
            let events = [json!({"event": ran, "intent": "BookTable", "risk": "high"})];
            assert!(
                score(&line, &map, &events, 1.0, &never).high_stakes_unconfirmed,
                "{ran}"
            );
        }
        let low = [json!({"event": "executed", "intent": "StartTimer", "risk": "low"})];
        assert!(!score(&line, &map, &low, 1.0, &never).high_stakes_unconfirmed);
    }

    #[test]
    fn maps_take_one_name_or_several_and_refuse_unknown_tables() {
        let map = NameMap::parse(
            "[intents]\ntimer = \"StartTimer\"\nchange_volume = [\"SetVolume\", \"VolumeUp\"]\n[slots]\nparty_size_number = \"party_size\"\n",
        )
        .expect("parses");
        assert_eq!(map.ours("timer"), Some(&["StartTimer".to_string()][..]));
        assert_eq!(map.ours("change_volume").map(<[String]>::len), Some(2));
        assert_eq!(map.ours("oos"), None);
        assert!(NameMap::parse("[intent]\ntimer = \"StartTimer\"\n").is_err());
        assert!(NameMap::parse("[intents]\ntimer = []\n").is_err());
    }

    #[test]
    fn slots_count_only_for_a_right_intent() {
        let map = NameMap::parse("[intents]\nBook = \"BookTable\"\n[slots]\nparty = \"party_size\"\nignored_by_map = \"x\"\n").expect("map");
        let line = Line {
            text: "book for four".into(),
            intent: "Book".into(),
            split: None,
            slots: vec![
                LabelSlot {
                    slot: "party".into(),
                    value: "four".into(),
                },
                LabelSlot {
                    slot: "not_mapped".into(),
                    value: "x".into(),
                },
            ],
        };
        let right = [json!({"event": "intent", "intent": "BookTable", "slots": {"party_size": 4}})];
        let r = score(&line, &map, &right, 1.0, &never);
        assert_eq!((r.slots_labelled, r.slots_found), (1, 1));
        assert!(!r.high_stakes_unconfirmed);
        assert_eq!(
            r.slots,
            vec![SlotResult {
                slot: "party".to_string(),
                found: true,
                in_group: true,
                grouped: false,
            }]
        );
        let wrong = [json!({"event": "intent", "intent": "BookRide", "slots": {"party_size": 4}})];
        let r = score(&line, &map, &wrong, 1.0, &never);
        assert_eq!((r.slots_labelled, r.slots_found), (1, 0));
    }

    #[test]
    fn a_value_in_another_slot_of_its_group_counts_only_in_the_second_figure() {
        let map = NameMap::parse(
            "[intents]\nPlay = \"PlayMusic\"\n[slots]\nartist = \"artist\"\nalbum = \"album\"\n[slot_groups]\nmusic = [\"artist\", \"album\", \"query\"]\n",
        )
        .expect("map");
        assert_eq!(map.group_of("album"), ["album", "artist", "query"]);
        assert_eq!(map.group_of("party_size"), ["party_size"]);
        assert!(NameMap::parse("[slot_groups]\nmusic = []\n").is_err());
        let line = Line {
            text: "play kind of blue by miles davis".into(),
            intent: "Play".into(),
            split: None,
            slots: vec![
                LabelSlot {
                    slot: "album".into(),
                    value: "Kind of Blue".into(),
                },
                LabelSlot {
                    slot: "artist".into(),
                    value: "Miles Davis".into(),
                },
            ],
        };
        // The album read as a query, the artist as the album: both are in
        // the group, one with the wrong value.
        let events = [json!({"event": "intent", "intent": "PlayMusic",
            "slots": {"query": "kind of blue", "album": "miles"}})];
        let r = score(&line, &map, &events, 1.0, &never);
        assert_eq!(
            (r.slots_labelled, r.slots_found, r.slots_in_group),
            (2, 0, 1)
        );
        let report = summarise(&[r], &map, vec![]);
        let row = &report.rows[0];
        assert!(row.grouped);
        assert_eq!(
            (row.slot_accuracy, row.slot_in_group_accuracy),
            (Some(0.0), Some(0.5))
        );
        assert_eq!(
            row.by_slot["album"],
            SlotCount {
                labelled: 1,
                found: 0,
                in_group: 1
            }
        );
    }
}
