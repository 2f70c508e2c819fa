//! [`AuditLog`]: the SQLite file behind the audit log.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, SubsecRound, TimeZone, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
    params,
};
use serde_json::{Map, Value};

use super::canonical::{GENESIS_HASH, RowContent};
use super::decimal::Decimal;
use super::{
    Anchor, AuditError, AuditEvent, AuditOutcome, AuditRow, Filter, Head, Problem, Verification,
    export, format_time,
};

/// How long an append waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version recorded in `audit_head.version`.
const SCHEMA_VERSION: i64 = 1;

/// Tables, indexes and triggers (see the module header). The head row is
/// inserted separately, with bound values.
const SCHEMA: &str = "
CREATE TABLE audit (
    id               INTEGER PRIMARY KEY,
    time             TEXT NOT NULL,
    action_id        TEXT NOT NULL,
    intent           TEXT NOT NULL,
    slots            TEXT NOT NULL,
    transcript       TEXT NOT NULL,
    reply_transcript TEXT,
    confidence       REAL,
    wake_score       REAL,
    amount           TEXT,
    currency         TEXT,
    outcome          TEXT NOT NULL CHECK (outcome IN ('requested', 'confirmed', 'declined',
                         'expired', 'superseded', 'refused', 'executed', 'failed', 'unknown')),
    detail           TEXT,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL
);
CREATE INDEX audit_by_action ON audit (action_id, id);
CREATE INDEX audit_by_time ON audit (time);
CREATE TABLE audit_head (
    one       INTEGER PRIMARY KEY CHECK (one = 1),
    version   INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    last_hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused');
END;
CREATE TRIGGER audit_append_at_end BEFORE INSERT ON audit
WHEN NEW.id IS NOT (SELECT count + 1 FROM audit_head WHERE one = 1)
  OR NEW.prev_hash IS NOT (SELECT last_hash FROM audit_head WHERE one = 1)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: a row must continue the chain');
END;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'the audit head cannot be deleted');
END;
CREATE TRIGGER audit_head_advances BEFORE UPDATE ON audit_head
WHEN NEW.one IS NOT OLD.one
  OR NEW.version IS NOT OLD.version
  OR NEW.count IS NOT OLD.count + 1
  OR NEW.last_hash IS NOT (SELECT hash FROM audit WHERE id = NEW.count)
BEGIN
    SELECT RAISE(ABORT, 'the audit head can only advance to the row just appended');
END;
";

/// `SELECT <every column, in canonical order> FROM audit <rest>`.
macro_rules! select_rows {
    ($rest:literal) => {
        concat!(
            "SELECT id, time, action_id, intent, slots, transcript, reply_transcript, ",
            "confidence, wake_score, amount, currency, outcome, detail, prev_hash, hash ",
            "FROM audit ",
            $rest
        )
    };
}

/// The append-only, hash-chained audit log in one SQLite file.
///
/// One `AuditLog` holds one connection; it can move between threads but not
/// be shared: open one per thread or process (they may all append).
#[derive(Debug)]
pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
}

/// What a database holds, as far as the audit log is concerned.
enum SchemaState {
    /// No tables at all.
    Empty,
    /// The audit tables, at a version this code understands.
    Ready,
}

impl AuditLog {
    /// Opens the log for appending, creating the file, tables and triggers if
    /// missing, and switching the file to WAL mode.
    ///
    /// The directory must exist. Fails with [`AuditError::Unwritable`] when
    /// the file cannot be created or written, and with
    /// [`AuditError::Incompatible`] for a file that holds something else.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
        let log = AuditLog {
            conn,
            path: path.to_path_buf(),
        };
        log.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| log.err(e))?;
        retry_while_busy(|| log.setup())?;
        Ok(log)
    }

    /// Opens an existing log for reading only (list, show, verify, export).
    /// Never creates or changes anything: a missing file (or one without any
    /// tables) is [`AuditError::Missing`].
    pub fn open_read_only(path: &Path) -> Result<AuditLog, AuditError> {
        if let Err(e) = std::fs::metadata(path)
            && e.kind() == std::io::ErrorKind::NotFound
        {
            return Err(AuditError::Missing(path.to_path_buf()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
        let log = AuditLog {
            conn,
            path: path.to_path_buf(),
        };
        log.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| log.err(e))?;
        match retry_while_busy(|| log.schema_state())? {
            SchemaState::Ready => Ok(log),
            SchemaState::Empty => Err(AuditError::Missing(log.path.clone())),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event at `time` (stored to the millisecond) and returns
    /// the stored row.
    ///
    /// Atomic: either the row and the head are both written or nothing is.
    /// Waits up to 5 s for another process's append. Refuses to append to a
    /// log whose head disagrees with its last row ([`AuditError::Damaged`]).
    pub fn append(&self, event: &AuditEvent, time: DateTime<Utc>) -> Result<AuditRow, AuditError> {
        let prepared = prepare(event, time)?;
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let (count, last_hash) = self.checked_head(&tx)?;
        let Some(id) = count.checked_add(1) else {
            return Err(self.damaged(format!("the head records {count} rows")));
        };
        let content = RowContent {
            id,
            time: prepared.time_text,
            action_id: event.action_id.clone(),
            intent: event.intent.clone(),
            slots: prepared.slots,
            transcript: event.transcript.clone(),
            reply_transcript: event.reply_transcript.clone(),
            confidence: prepared.confidence,
            wake_score: prepared.wake_score,
            amount: event.amount.clone(),
            currency: event.currency.clone(),
            outcome: event.outcome.as_str().to_string(),
            detail: event.detail.clone(),
            prev_hash: last_hash,
        };
        let hash = content.hash();
        tx.execute(
            "INSERT INTO audit (id, time, action_id, intent, slots, transcript, reply_transcript,
                 confidence, wake_score, amount, currency, outcome, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                content.id,
                content.time,
                content.action_id,
                content.intent,
                content.slots,
                content.transcript,
                content.reply_transcript,
                content.confidence,
                content.wake_score,
                content.amount,
                content.currency,
                content.outcome,
                content.detail,
                content.prev_hash,
                hash,
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE audit_head SET count = ?1, last_hash = ?2 WHERE one = 1",
            params![id, hash],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        let mut stored = event.clone();
        stored.confidence = prepared.confidence;
        stored.wake_score = prepared.wake_score;
        Ok(AuditRow {
            id,
            time: prepared.time,
            event: stored,
            prev_hash: content.prev_hash,
            hash,
        })
    }

    /// The rows matching `filter`, oldest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<AuditRow>, AuditError> {
        let since = filter.since.map(|t| bound_text(&t));
        let outcome = filter.outcome.map(AuditOutcome::as_str);
        self.query_rows(
            select_rows!(
                "WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR outcome = ?2)
                   AND (?3 IS NULL OR action_id = ?3) ORDER BY id"
            ),
            params![since, outcome, filter.action_id],
        )
    }

    /// One row by id.
    pub fn get(&self, id: i64) -> Result<Option<AuditRow>, AuditError> {
        let mut rows = self.query_rows(select_rows!("WHERE id = ?1"), params![id])?;
        Ok(rows.pop())
    }

    /// The head record (row count, last hash) within `tx`, checked against
    /// the last row: [`AuditError::Damaged`] when they disagree (a row
    /// replaced, or the last rows deleted and the head edited).
    fn checked_head(&self, tx: &Transaction) -> Result<(i64, String), AuditError> {
        let (count, hash) = match read_head(tx).map_err(|e| self.err(e))? {
            Ok(head) => head,
            Err(reason) => return Err(self.damaged(reason)),
        };
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let consistent = match &last {
            None => count == 0 && hash == GENESIS_HASH,
            Some((id, last_hash)) => *id == count && *last_hash == hash,
        };
        if !consistent {
            return Err(self.damaged(format!(
                "the head records {count} rows ending in {hash}, but the last row is {}",
                last.map_or_else(|| "missing".to_string(), |(id, h)| format!("{id} ({h})"))
            )));
        }
        Ok((count, hash))
    }

    /// The head (row count and last hash), read in one snapshot: what an
    /// auditor keeps elsewhere to check later, with [`Self::verify_extends`],
    /// that the log was only appended to since.
    ///
    /// Checks only that the head record and the last row agree
    /// ([`AuditError::Damaged`] otherwise), not the whole chain: run
    /// [`Self::verify`] before trusting a head enough to keep it.
    pub fn head(&self) -> Result<Head, AuditError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(|e| self.err(e))?;
        let (count, hash) = self.checked_head(&tx)?;
        Ok(Head {
            count: count.unsigned_abs(),
            hash,
        })
    }

    /// The outcome of `action_id`'s latest event, or `None` if it has none.
    pub fn last_outcome(&self, action_id: &str) -> Result<Option<AuditOutcome>, AuditError> {
        let name: Option<String> = self
            .conn
            .query_row(
                "SELECT outcome FROM audit WHERE action_id = ?1 ORDER BY id DESC LIMIT 1",
                params![action_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        name.map(|n| n.parse::<AuditOutcome>())
            .transpose()
            .map_err(|e| self.damaged(format!("action {action_id}: {e}")))
    }

    /// Checks the whole chain and the head within one read snapshot (so it
    /// works while other processes append) and reports the first problem.
    ///
    /// `Err` only when the database cannot be read at all; tampering is an
    /// `Ok(Verification::Broken { .. })`.
    pub fn verify(&self) -> Result<Verification, AuditError> {
        self.verify_with(None)
    }

    /// [`Self::verify`], and then, in the same snapshot, whether the log
    /// extends `anchor` (a [`Head`] taken earlier): row `anchor.count()`
    /// exists and still has the anchored hash (for a bare hash: some row
    /// has it). Chain problems are reported first; a log that is intact
    /// but does not extend the anchor is broken with
    /// [`Problem::AnchorMismatch`], [`Problem::AnchorBeyondEnd`] or
    /// [`Problem::AnchorNotFound`]. This detects what `verify` alone
    /// cannot: a consistent rewrite of rows the anchor covers, and a log
    /// replaced by an older copy.
    pub fn verify_extends(&self, anchor: &Anchor) -> Result<Verification, AuditError> {
        self.verify_with(Some(anchor))
    }

    fn verify_with(&self, anchor: Option<&Anchor>) -> Result<Verification, AuditError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(|e| self.err(e))?;
        // The first read starts the snapshot; everything below sees it.
        let (head_rows, head_hash) = match read_head(&tx).map_err(|e| self.err(e))? {
            Ok(head) => head,
            Err(reason) => {
                return Ok(Verification::Broken {
                    row: 0,
                    problem: Problem::BadHead { reason },
                });
            }
        };
        let mut stmt = tx
            .prepare(select_rows!("ORDER BY id"))
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut expected: i64 = 1;
        let mut prev = GENESIS_HASH.to_string();
        // The anchored row's hash, and whether any row has the anchored hash.
        let anchor_row = anchor.and_then(Anchor::count);
        let mut at_anchor: Option<String> = None;
        let mut anchor_seen = false;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let broken = |at: i64, problem: Problem| Ok(Verification::Broken { row: at, problem });
            // `id` is the rowid, always an integer.
            let id: i64 = row.get(0).map_err(|e| self.err(e))?;
            if id < 1 {
                return broken(id, Problem::BadId);
            }
            if id != expected {
                return broken(expected, Problem::Deleted { next: id });
            }
            let (content, hash) = match read_content(row) {
                Ok(read) => read,
                Err(reason) => return broken(id, Problem::Malformed { reason }),
            };
            if content.prev_hash != prev {
                return broken(id, Problem::LinkBroken);
            }
            if content.hash() != hash {
                return broken(id, Problem::Edited);
            }
            if let Some(anchor) = anchor {
                if anchor_row == Some(id.unsigned_abs()) {
                    at_anchor = Some(hash.clone());
                }
                anchor_seen |= hash == anchor.hash();
            }
            prev = hash;
            expected += 1;
        }
        let found = expected - 1;
        if head_rows > found {
            return Ok(Verification::Broken {
                row: found + 1,
                problem: Problem::Truncated {
                    head_rows: head_rows.unsigned_abs(),
                },
            });
        }
        if head_rows < found {
            return Ok(Verification::Broken {
                row: head_rows + 1,
                problem: Problem::NotInHead {
                    head_rows: head_rows.unsigned_abs(),
                },
            });
        }
        if head_hash != prev {
            return Ok(if found == 0 {
                Verification::Broken {
                    row: 0,
                    problem: Problem::BadHead {
                        reason: "the head's last hash is not the initial hash of an empty log"
                            .to_string(),
                    },
                }
            } else {
                Verification::Broken {
                    row: found,
                    problem: Problem::HeadHashMismatch,
                }
            });
        }
        if let Some((row, problem)) =
            anchor.and_then(|a| a.check(found.unsigned_abs(), at_anchor.as_deref(), anchor_seen))
        {
            return Ok(Verification::Broken { row, problem });
        }
        Ok(Verification::Intact {
            rows: found.unsigned_abs(),
            last_hash: prev,
        })
    }

    /// Actions whose last event is `confirmed`: they were about to run when
    /// the program stopped, so nobody knows whether they did.
    ///
    /// Returns each one's `confirmed` row, oldest first. At start-up the
    /// daemon records each as [`AuditOutcome::Unknown`] (needs review) and
    /// never retries it silently:
    ///
    /// ```no_run
    /// # use voicegate::audit::{AuditLog, AuditOutcome};
    /// # fn f(log: &AuditLog, now: chrono::DateTime<chrono::Utc>) -> Result<(), voicegate::audit::AuditError> {
    /// for row in log.unresolved()? {
    ///     let detail = Some("interrupted after confirmation; needs review".to_string());
    ///     log.append(&row.event.next(AuditOutcome::Unknown, detail), now)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn unresolved(&self) -> Result<Vec<AuditRow>, AuditError> {
        self.query_rows(
            select_rows!(
                "AS a WHERE a.outcome = 'confirmed'
                   AND a.id = (SELECT max(b.id) FROM audit AS b WHERE b.action_id = a.action_id)
                 ORDER BY a.id"
            ),
            [],
        )
    }

    /// The exact total amount in `currency` of actions that may have spent
    /// money since `since` (inclusive, to the millisecond): actions with an
    /// `executed` or `unknown` event at or after `since`, each counted once.
    ///
    /// Counting `unknown` (a merchant that did not answer in time, a 5xx,
    /// a command killed part-way, a crash after confirmation: it may have
    /// been charged) keeps a spend cap conservative. An action that ends
    /// `unknown` never gets a later outcome, so its last outcome is the one
    /// counted. An action's amount is the one on that event, or else on
    /// its latest earlier event that has one. Actions that are confirmed but
    /// not yet finished are not included: the gate knows those itself.
    pub fn spent_since(&self, since: DateTime<Utc>, currency: &str) -> Result<Decimal, AuditError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(|e| self.err(e))?;
        let mut spending = tx
            .prepare(
                "SELECT id, action_id, amount, currency FROM audit
                 WHERE outcome IN ('executed', 'unknown') AND time >= ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let mut earlier = tx
            .prepare(
                "SELECT amount, currency FROM audit
                 WHERE action_id = ?1 AND id < ?2 AND amount IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = spending
            .query(params![bound_text(&since)])
            .map_err(|e| self.err(e))?;
        let mut seen = HashSet::new();
        let mut total = Decimal::ZERO;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let read =
                |row: &Row<'_>| -> rusqlite::Result<(i64, String, Option<String>, Option<String>)> {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                };
            let (id, action_id, amount, row_currency) = read(row).map_err(|e| self.err(e))?;
            if !seen.insert(action_id.clone()) {
                continue;
            }
            let priced = match (amount, row_currency) {
                (Some(amount), Some(cur)) => Some((amount, cur)),
                _ => earlier
                    .query_row(params![action_id, id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                    })
                    .optional()
                    .map_err(|e| self.err(e))?
                    .and_then(|(amount, cur)| Some((amount, cur?))),
            };
            let Some((amount, cur)) = priced else {
                continue;
            };
            if cur != currency {
                continue;
            }
            let value =
                Decimal::parse(&amount).map_err(|e| self.damaged(format!("row {id}: {e}")))?;
            total = total
                .checked_add(value)
                .ok_or_else(|| self.damaged("the total spent is too large".to_string()))?;
        }
        Ok(total)
    }

    /// Writes every row as CSV (RFC 4180: a header row, CRLF line ends,
    /// fields quoted when needed, NULL as an empty field). Returns the
    /// number of rows.
    pub fn export_csv(&self, out: &mut dyn Write) -> Result<usize, AuditError> {
        let rows = self.list(&Filter::default())?;
        export::write_csv(&rows, out)?;
        Ok(rows.len())
    }

    /// Writes every row as a JSON array of objects (see
    /// [`AuditRow::to_json`]), one row per line. Returns the number of rows.
    pub fn export_json(&self, out: &mut dyn Write) -> Result<usize, AuditError> {
        let rows = self.list(&Filter::default())?;
        export::write_json(&rows, out)?;
        Ok(rows.len())
    }

    /// Switches to WAL mode, then creates or checks the schema.
    fn setup(&self) -> Result<(), AuditError> {
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AuditError::Incompatible {
                path: self.path.clone(),
                reason: format!("cannot switch it to WAL mode (the journal mode is {mode})"),
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|e| self.err(e))?;
        self.init()
    }

    /// Creates the schema in an empty database, or checks an existing one.
    fn init(&self) -> Result<(), AuditError> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if let SchemaState::Empty = self.schema_state()? {
            tx.execute_batch(SCHEMA).map_err(|e| self.err(e))?;
            tx.execute(
                "INSERT INTO audit_head (one, version, count, last_hash) VALUES (1, ?1, 0, ?2)",
                params![SCHEMA_VERSION, GENESIS_HASH],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Whether the database is empty or holds a usable audit log.
    fn schema_state(&self) -> Result<SchemaState, AuditError> {
        let objects: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|e| self.err(e))?;
        if objects == 0 {
            return Ok(SchemaState::Empty);
        }
        let ours: Vec<String> = self
            .conn
            .prepare(
                "SELECT name FROM sqlite_schema
                 WHERE type = 'table' AND name IN ('audit', 'audit_head') ORDER BY name",
            )
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        match ours.as_slice() {
            [] => {
                return Err(AuditError::Incompatible {
                    path: self.path.clone(),
                    reason: "the database holds other tables, not a voicegate audit log"
                        .to_string(),
                });
            }
            [present] => {
                let missing = if present == "audit" {
                    "audit_head"
                } else {
                    "audit"
                };
                return Err(self.damaged(format!("the table {missing} is missing")));
            }
            _ => {}
        }
        // A missing head row is left for `verify` to report.
        let version: Option<Option<i64>> = self
            .conn
            .query_row("SELECT version FROM audit_head WHERE one = 1", [], |row| {
                Ok(match row.get_ref(0)? {
                    ValueRef::Integer(v) => Some(v),
                    _ => None,
                })
            })
            .optional()
            .map_err(|e| self.err(e))?;
        match version {
            None | Some(Some(SCHEMA_VERSION)) => Ok(SchemaState::Ready),
            Some(found) => Err(AuditError::Incompatible {
                path: self.path.clone(),
                reason: format!(
                    "schema version {}; this program understands version {SCHEMA_VERSION}",
                    found.map_or_else(|| "(not a number)".to_string(), |v| v.to_string())
                ),
            }),
        }
    }

    /// Runs a `select_rows!` query and converts every row.
    fn query_rows(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<AuditRow>, AuditError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let converted = read_content(row).and_then(|(content, hash)| to_row(content, hash));
            match converted {
                Ok(r) => out.push(r),
                Err(reason) => {
                    let id = row.get::<_, i64>(0).unwrap_or_default();
                    return Err(self.damaged(format!("row {id}: {reason}")));
                }
            }
        }
        Ok(out)
    }

    fn err(&self, e: rusqlite::Error) -> AuditError {
        classify(&self.path, e)
    }

    fn damaged(&self, reason: String) -> AuditError {
        AuditError::Damaged {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Runs `step` again while it fails with [`AuditError::Busy`], for up to
/// the busy timeout. SQLite does not call the busy handler on every path:
/// switching a new file to WAL mode while another process opens it too can
/// fail with `SQLITE_BUSY` at once.
fn retry_while_busy<T>(mut step: impl FnMut() -> Result<T, AuditError>) -> Result<T, AuditError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(AuditError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Sorts a SQLite error into the [`AuditError`] the caller needs.
fn classify(path: &Path, e: rusqlite::Error) -> AuditError {
    let path = path.to_path_buf();
    match &e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            return AuditError::Damaged {
                path,
                reason: format!("a value has the wrong type ({e})"),
            };
        }
        _ => {}
    }
    match e.sqlite_error_code() {
        Some(
            ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure,
        ) => AuditError::Unwritable { path, source: e },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            AuditError::Busy { path, source: e }
        }
        Some(ErrorCode::NotADatabase) => AuditError::Incompatible {
            path,
            reason: "not an SQLite database".to_string(),
        },
        _ => AuditError::Database { path, source: e },
    }
}

/// An event's values in stored form, validated.
struct Prepared {
    time: DateTime<Utc>,
    time_text: String,
    slots: String,
    confidence: Option<f64>,
    wake_score: Option<f64>,
}

/// Validates an event (see [`AuditEvent`]) and computes its stored values.
fn prepare(event: &AuditEvent, time: DateTime<Utc>) -> Result<Prepared, AuditError> {
    let invalid = |msg: String| Err(AuditError::InvalidEvent(msg));
    if !(0..=9999).contains(&time.year()) {
        return invalid(format!("time {time} is outside the years 0000-9999"));
    }
    if event.action_id.is_empty() {
        return invalid("the action id is empty".to_string());
    }
    if event.intent.is_empty() {
        return invalid("the intent is empty".to_string());
    }
    let real = |value: Option<f64>, name: &str| match value {
        Some(x) if !x.is_finite() => Err(AuditError::InvalidEvent(format!(
            "the {name} is not a finite number ({x})"
        ))),
        // SQLite would read -0.0 back as 0.0 and break the hash: store 0.0.
        Some(x) => Ok(Some(if x == 0.0 { 0.0 } else { x })),
        None => Ok(None),
    };
    let confidence = real(event.confidence, "confidence")?;
    let wake_score = real(event.wake_score, "wake score")?;
    match (&event.amount, &event.currency) {
        (None, None) => {}
        (Some(amount), Some(currency)) => {
            if let Err(e) = Decimal::parse(amount) {
                return invalid(e.to_string());
            }
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                return invalid(format!(
                    "currency {currency:?} is not an ISO 4217 code (three capital letters)"
                ));
            }
        }
        (Some(_), None) => return invalid("an amount without a currency".to_string()),
        (None, Some(_)) => return invalid("a currency without an amount".to_string()),
    }
    let slots = serde_json::to_string(&event.slots)
        .map_err(|e| AuditError::InvalidEvent(format!("slots cannot be serialised: {e}")))?;
    let time = time.trunc_subsecs(3);
    Ok(Prepared {
        time_text: format_time(&time),
        time,
        slots,
        confidence,
        wake_score,
    })
}

/// A time as a bound for comparisons with stored times, clamped to the
/// years the log can store (so that text order is time order).
fn bound_text(time: &DateTime<Utc>) -> String {
    let first = Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).single();
    let last = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single();
    let clamped = match (first, last) {
        (Some(first), _) if *time < first => first,
        (_, Some(last)) if *time > last => last,
        _ => *time,
    };
    format_time(&clamped)
}

/// The head record: `Ok((count, last_hash))`, or `Err(reason)` when it is
/// missing or malformed.
fn read_head(conn: &Connection) -> rusqlite::Result<Result<(i64, String), String>> {
    let head = conn
        .query_row(
            "SELECT count, last_hash FROM audit_head WHERE one = 1",
            [],
            |row| {
                Ok(match (row.get_ref(0)?, row.get_ref(1)?) {
                    (ValueRef::Integer(count), ValueRef::Text(hash)) if count >= 0 => {
                        std::str::from_utf8(hash)
                            .map(|h| (count, h.to_string()))
                            .map_err(|_| "the head's last hash is not text".to_string())
                    }
                    _ => Err("the head record is malformed".to_string()),
                })
            },
        )
        .optional()?;
    Ok(head.unwrap_or_else(|| Err("the head record is missing".to_string())))
}

/// Reads a row in `select_rows!` column order, checking every value's type
/// strictly. `Err` names the value that the log could not have written.
fn read_content(row: &Row<'_>) -> Result<(RowContent, String), String> {
    let content = RowContent {
        id: integer(row, 0, "id")?,
        time: text(row, 1, "time")?,
        action_id: text(row, 2, "action_id")?,
        intent: text(row, 3, "intent")?,
        slots: text(row, 4, "slots")?,
        transcript: text(row, 5, "transcript")?,
        reply_transcript: opt_text(row, 6, "reply_transcript")?,
        confidence: opt_real(row, 7, "confidence")?,
        wake_score: opt_real(row, 8, "wake_score")?,
        amount: opt_text(row, 9, "amount")?,
        currency: opt_text(row, 10, "currency")?,
        outcome: text(row, 11, "outcome")?,
        detail: opt_text(row, 12, "detail")?,
        prev_hash: text(row, 13, "prev_hash")?,
    };
    let hash = text(row, 14, "hash")?;
    Ok((content, hash))
}

/// Parses stored content into a typed row.
fn to_row(content: RowContent, hash: String) -> Result<AuditRow, String> {
    let time = DateTime::parse_from_rfc3339(&content.time)
        .map_err(|e| format!("time {:?} is not RFC 3339: {e}", content.time))?
        .with_timezone(&Utc);
    let slots: Map<String, Value> = serde_json::from_str(&content.slots)
        .map_err(|e| format!("slots are not a JSON object: {e}"))?;
    let outcome: AuditOutcome = content.outcome.parse().map_err(|e| format!("{e}"))?;
    Ok(AuditRow {
        id: content.id,
        time,
        event: AuditEvent {
            action_id: content.action_id,
            intent: content.intent,
            slots,
            transcript: content.transcript,
            reply_transcript: content.reply_transcript,
            confidence: content.confidence,
            wake_score: content.wake_score,
            amount: content.amount,
            currency: content.currency,
            outcome,
            detail: content.detail,
        },
        prev_hash: content.prev_hash,
        hash,
    })
}

fn value<'a>(row: &'a Row<'_>, i: usize) -> Result<ValueRef<'a>, String> {
    row.get_ref(i).map_err(|e| e.to_string())
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn integer(row: &Row<'_>, i: usize, name: &str) -> Result<i64, String> {
    match value(row, i)? {
        ValueRef::Integer(v) => Ok(v),
        other => Err(format!(
            "{name} is {} instead of an integer",
            type_name(other)
        )),
    }
}

fn text(row: &Row<'_>, i: usize, name: &str) -> Result<String, String> {
    match value(row, i)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| format!("{name} is not valid UTF-8")),
        other => Err(format!("{name} is {} instead of text", type_name(other))),
    }
}

fn opt_text(row: &Row<'_>, i: usize, name: &str) -> Result<Option<String>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        _ => text(row, i, name).map(Some),
    }
}

fn opt_real(row: &Row<'_>, i: usize, name: &str) -> Result<Option<f64>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Real(v) => Ok(Some(v)),
        other => Err(format!(
            "{name} is {} instead of a real number",
            type_name(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_738_314_000 + secs, 0)
            .single()
            .unwrap_or_default()
    }

    fn event(n: usize, transcript: String) -> AuditEvent {
        let mut e = AuditEvent::new(
            format!("action-{n}"),
            "OrderItem",
            transcript,
            AuditOutcome::Requested,
        );
        e.amount = Some("12.50".to_string());
        e.currency = Some("EUR".to_string());
        e
    }

    fn page_count(log: &AuditLog) -> i64 {
        log.conn
            .pragma_query_value(None, "page_count", |row| row.get(0))
            .unwrap_or(-1)
    }

    /// `max_page_count` is per connection, so this needs the log's own one.
    #[test]
    fn disk_full_is_unwritable_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.db");
        let log = AuditLog::open(&path).expect("open");
        for n in 1..=3 {
            log.append(&event(n, "order oat milk".into()), time(n as i64))
                .expect("append");
        }
        let pages = page_count(&log);
        assert!(pages > 0);
        log.conn
            .pragma_update(None, "max_page_count", pages)
            .expect("limit");

        // 100 kB of transcript needs new pages: SQLITE_FULL.
        let err = log
            .append(&event(4, "x".repeat(100_000)), time(4))
            .expect_err("the disk is full");
        assert!(err.is_unwritable(), "{err:?}");
        assert!(err.to_string().contains("disk full"), "{err}");

        // Nothing half-written: three rows, head untouched, chain intact,
        // seen both through this connection and a fresh one.
        assert_eq!(page_count(&log), pages);
        for check in [&log, &AuditLog::open_read_only(&path).expect("reopen")] {
            assert_eq!(
                check.verify().expect("verify"),
                Verification::Intact {
                    rows: 3,
                    last_hash: check.get(3).expect("get").expect("row 3").hash,
                }
            );
            assert_eq!(check.list(&Filter::default()).expect("list").len(), 3);
        }

        // Space again: the next append continues the chain at id 4.
        log.conn
            .pragma_update(None, "max_page_count", 1_000_000)
            .expect("unlimit");
        let row = log
            .append(&event(4, "x".repeat(100_000)), time(4))
            .expect("append");
        assert_eq!(row.id, 4);
        assert!(log.verify().expect("verify").is_intact());
    }
}
