//! `voicegate audit ...`: list, show, verify, export the audit log, and
//! print its head (the anchor an auditor keeps elsewhere).
//!
//! These commands only read: they open the log read-only and never create
//! it. A missing file reads as an empty log, since without an outside
//! witness the two cannot be told apart anyway (see the honest limit in the
//! [module header](super)):
//!
//! - `list` prints "no audit log at PATH yet" (nothing with `--json`), exit 0;
//! - `show ID` prints "no audit log at PATH yet" (`null` with `--json`), exit 1;
//! - `verify` prints "no audit log at PATH yet: nothing to verify (0 rows)", exit 0
//!   (with `--expect-head`, exit 1 unless the anchor is an empty log's);
//! - `head` prints an empty log's anchor, `0:` and 64 zeros, exit 0;
//! - `export` writes an empty export (a CSV header, or `[]`), exit 0.
//!
//! Text output escapes control characters in transcripts and other recorded
//! text, so a recorded string cannot move the cursor or recolour a terminal.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::export;
use super::{
    Anchor, AuditError, AuditLog, AuditOutcome, AuditRow, Filter, GENESIS_HASH, Head, Verification,
};

/// `voicegate audit ...`
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum AuditCommand {
    /// List events, oldest first.
    List {
        /// Only events at or after TIME: RFC 3339 (2025-01-31T09:00:00Z), a date
        /// (2025-01-31, from midnight UTC) or an age (90s, 30m, 24h, 7d, 2w).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events with this outcome: requested, confirmed, declined, expired,
        /// superseded, refused, executed, failed or unknown.
        #[arg(long, value_name = "OUTCOME")]
        outcome: Option<AuditOutcome>,
        /// Only events of this action (its full id, as `show` prints it).
        #[arg(long, value_name = "ID")]
        action: Option<String>,
    },
    /// Show every field of one event.
    Show {
        /// The row id (the first column of `list`).
        id: i64,
    },
    /// Check the hash chain and the head; exit 1 if the log was tampered with.
    Verify {
        /// Also check that the log extends this anchor, printed earlier by
        /// `audit head` and kept elsewhere: row COUNT still has hash HASH
        /// (a bare HASH: some row has it). Without it, a consistent rewrite
        /// of the whole file passes.
        #[arg(long, value_name = "COUNT:HASH")]
        expect_head: Option<Anchor>,
    },
    /// Print the anchor to keep elsewhere: COUNT:HASH (the row count and the
    /// last row's hash), for a later `verify --expect-head`.
    Head,
    /// Export the whole log to standard output.
    Export {
        /// Output format. Default: csv, or json with --json.
        #[arg(long, value_enum)]
        format: Option<ExportFormat>,
    },
}

/// `voicegate audit export --format ...`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// A JSON array of objects, one row per line.
    Json,
}

/// Runs an audit command against the database at `db`, writing to `out`.
///
/// `json` selects machine-readable output; `now` resolves relative `--since`
/// values (the caller reads the clock). Returns the exit code: 0, or 1 when
/// `verify` finds the log broken (or not extending `--expect-head`) or
/// `show` finds no such row.
pub fn run(
    cmd: AuditCommand,
    db: &Path,
    json: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<i32, AuditError> {
    match cmd {
        AuditCommand::List {
            since,
            outcome,
            action,
        } => {
            let filter = Filter {
                since: since.as_deref().map(|s| parse_since(s, now)).transpose()?,
                outcome,
                action_id: action,
            };
            let Some(log) = open(db)? else {
                if !json {
                    writeln!(out, "no audit log at {} yet", db.display())?;
                }
                return Ok(0);
            };
            let rows = log.list(&filter)?;
            if json {
                for row in &rows {
                    serde_json::to_writer(&mut *out, &row.to_json())
                        .map_err(std::io::Error::from)?;
                    writeln!(out)?;
                }
            } else {
                write_table(&rows, out)?;
            }
            Ok(0)
        }
        AuditCommand::Show { id } => {
            let row = match open(db)? {
                Some(log) => log.get(id)?,
                None => {
                    if json {
                        writeln!(out, "null")?;
                    } else {
                        writeln!(out, "no audit log at {} yet", db.display())?;
                    }
                    return Ok(1);
                }
            };
            match (row, json) {
                (Some(row), true) => writeln!(out, "{}", row.to_json())?,
                (Some(row), false) => write_row(&row, out)?,
                (None, true) => {
                    writeln!(out, "null")?;
                    return Ok(1);
                }
                (None, false) => {
                    writeln!(out, "no row {id} in the audit log at {}", db.display())?;
                    return Ok(1);
                }
            }
            Ok(0)
        }
        AuditCommand::Verify { expect_head } => verify(db, expect_head, json, out),
        AuditCommand::Head => head(db, json, out),
        AuditCommand::Export { format } => {
            let format = format.unwrap_or(if json {
                ExportFormat::Json
            } else {
                ExportFormat::Csv
            });
            let rows = match open(db)? {
                Some(log) => log.list(&Filter::default())?,
                None => Vec::new(),
            };
            match format {
                ExportFormat::Csv => export::write_csv(&rows, out)?,
                ExportFormat::Json => export::write_json(&rows, out)?,
            }
            Ok(0)
        }
    }
}

/// Parses a `--since` value: RFC 3339 (any offset), a date `YYYY-MM-DD`
/// (midnight UTC), or an age before `now`: a whole number followed by `s`,
/// `m`, `h`, `d` or `w`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AuditError> {
    let bad = || {
        AuditError::Usage(format!(
            "invalid --since value {text:?}: expected an RFC 3339 time (2025-01-31T09:00:00Z), \
             a date (2025-01-31) or an age (90s, 30m, 24h, 7d, 2w)"
        ))
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if text.len() == 10
        && let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
    {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(bad);
    }
    let Some(unit) = text.chars().last() else {
        return Err(bad());
    };
    let number = &text[..text.len() - unit.len_utf8()];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds_per_unit: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per_unit))
        .and_then(TimeDelta::try_seconds)
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(bad)
}

/// Opens the log read-only; `None` when there is none yet.
fn open(db: &Path) -> Result<Option<AuditLog>, AuditError> {
    match AuditLog::open_read_only(db) {
        Ok(log) => Ok(Some(log)),
        Err(AuditError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The readable table of `list`.
fn write_table(rows: &[AuditRow], out: &mut dyn Write) -> Result<(), AuditError> {
    if rows.is_empty() {
        writeln!(out, "no matching rows")?;
        return Ok(());
    }
    let header = [
        "ID",
        "TIME",
        "OUTCOME",
        "INTENT",
        "AMOUNT",
        "ACTION",
        "TRANSCRIPT",
        "DETAIL",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let e = &row.event;
        let amount = match (&e.amount, &e.currency) {
            (Some(a), Some(c)) => format!("{a} {c}"),
            (Some(a), None) => a.clone(),
            _ => String::new(),
        };
        table.push(vec![
            row.id.to_string(),
            super::format_time(&row.time),
            e.outcome.to_string(),
            cut(&clean(&e.intent), 24),
            cut(&clean(&amount), 16),
            // A prefix, like a short git hash; `show` prints it whole.
            clean(&e.action_id.chars().take(8).collect::<String>()),
            cut(&clean(&e.transcript), 40),
            cut(&clean(e.detail.as_deref().unwrap_or("")), 40),
        ]);
    }
    let mut widths = vec![0; header.len()];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in &table {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < line.len() {
                let pad = w - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    writeln!(out, "{} rows", rows.len())?;
    Ok(())
}

/// Every field of one row, one per line.
fn write_row(row: &AuditRow, out: &mut dyn Write) -> Result<(), AuditError> {
    let e = &row.event;
    let none = || "(none)".to_string();
    let text = |v: &Option<String>| v.as_deref().map_or_else(none, clean);
    let real = |v: Option<f64>| v.map_or_else(none, |x| x.to_string());
    let slots = serde_json::to_string(&e.slots).map_err(std::io::Error::from)?;
    let fields = [
        ("id", row.id.to_string()),
        ("time", super::format_time(&row.time)),
        ("action id", clean(&e.action_id)),
        ("intent", clean(&e.intent)),
        ("slots", clean(&slots)),
        ("transcript", clean(&e.transcript)),
        ("reply transcript", text(&e.reply_transcript)),
        ("confidence", real(e.confidence)),
        ("wake score", real(e.wake_score)),
        ("amount", text(&e.amount)),
        ("currency", text(&e.currency)),
        ("outcome", e.outcome.to_string()),
        ("detail", text(&e.detail)),
        ("previous hash", row.prev_hash.clone()),
        ("hash", row.hash.clone()),
    ];
    for (label, value) in fields {
        writeln!(out, "{:<17} {value}", format!("{label}:"))?;
    }
    Ok(())
}

/// Text with control characters escaped (`\n`, `\u{1b}`, ...).
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, ending in `…` when shortened.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// `audit verify [--expect-head COUNT:HASH]`: 0 if the chain is intact (and
/// extends the anchor), 1 if not.
fn verify(
    db: &Path,
    expect_head: Option<Anchor>,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32, AuditError> {
    let Some(log) = open(db)? else {
        // No file: an empty log, which extends only an empty log's anchor.
        let verification = match &expect_head {
            Some(anchor) => anchor.check_missing_log(),
            None => Verification::Intact {
                rows: 0,
                last_hash: GENESIS_HASH.to_string(),
            },
        };
        if let Verification::Broken { row, problem } = &verification {
            let message = format!("no audit log at {}: {problem}", db.display());
            if json {
                let report = json!({
                    "intact": false,
                    "missing": true,
                    "row": row,
                    "problem": problem.kind(),
                    "message": message,
                });
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "{message}")?;
            }
            return Ok(1);
        }
        if json {
            let report = json!({ "intact": true, "rows": 0, "missing": true });
            writeln!(out, "{report}")?;
        } else {
            writeln!(
                out,
                "no audit log at {} yet: nothing to verify (0 rows)",
                db.display()
            )?;
        }
        return Ok(0);
    };
    let verification = match &expect_head {
        Some(anchor) => log.verify_extends(anchor)?,
        None => log.verify()?,
    };
    if json {
        let report = match &verification {
            Verification::Intact { rows, last_hash } => {
                let mut report = json!({ "intact": true, "rows": rows, "last_hash": last_hash });
                if let Some(anchor) = &expect_head {
                    report["extends"] = json!(anchor.to_string());
                }
                report
            }
            Verification::Broken { row, problem } => json!({
                "intact": false,
                "row": row,
                "problem": problem.kind(),
                "message": verification.to_string(),
            }),
        };
        writeln!(out, "{report}")?;
    } else {
        match (&verification, &expect_head) {
            (Verification::Intact { .. }, Some(anchor)) => {
                writeln!(out, "{verification}; it extends the anchor {anchor}")?
            }
            _ => writeln!(out, "{verification}")?,
        }
    }
    Ok(if verification.is_intact() { 0 } else { 1 })
}

/// `audit head`: the anchor to keep elsewhere.
fn head(db: &Path, json: bool, out: &mut dyn Write) -> Result<i32, AuditError> {
    let (head, missing) = match open(db)? {
        Some(log) => (log.head()?, false),
        None => (
            Head {
                count: 0,
                hash: GENESIS_HASH.to_string(),
            },
            true,
        ),
    };
    if json {
        let mut report = json!({ "count": head.count, "hash": head.hash });
        if missing {
            report["missing"] = json!(true);
        }
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "{head}")?;
        if missing {
            writeln!(
                out,
                "no audit log at {} yet: the anchor of an empty log",
                db.display()
            )?;
        } else {
            writeln!(
                out,
                "{} rows; keep this anchor elsewhere, and check later that the log only grew \
                 with `voicegate audit verify --expect-head {head}`",
                head.count
            )?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 31, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn since_forms() {
        let at = |y, mo, d, h, mi, s| {
            Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .unwrap_or_default()
        };
        let cases = [
            ("2025-01-30T09:15:00Z", at(2025, 1, 30, 9, 15, 0)),
            ("2025-01-30T10:15:00+01:00", at(2025, 1, 30, 9, 15, 0)),
            ("2025-01-30", at(2025, 1, 30, 0, 0, 0)),
            ("90s", at(2025, 1, 31, 11, 58, 30)),
            ("30m", at(2025, 1, 31, 11, 30, 0)),
            ("24h", at(2025, 1, 30, 12, 0, 0)),
            ("7d", at(2025, 1, 24, 12, 0, 0)),
            ("2w", at(2025, 1, 17, 12, 0, 0)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_since(text, now()).ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn bad_since_is_a_usage_error() {
        for text in [
            "",
            "h",
            "24",
            "24y",
            "-1d",
            "1.5h",
            "yesterday",
            "2025-13-01",
            "2025-1-5",
            "99999999999999999999d",
            "9223372036854775807w",
        ] {
            assert!(
                matches!(parse_since(text, now()), Err(AuditError::Usage(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}
