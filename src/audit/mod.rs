//! The audit log: an append-only, tamper-evident record of every event of
//! every high-stakes action (purchases, bookings).
//!
//! # Why it exists
//!
//! The action gate runs a high-stakes intent only after a spoken "yes".
//! Afterwards people must be able to answer "what did it buy, when, and on
//! which words?", and to trust the answer. So the gate writes one row per
//! event (`requested`, `confirmed`, `executed`, ...) *before* it moves on,
//! and refuses to run a purchase when the row cannot be written
//! ([`AuditError::is_unwritable`]). The log is also the gate's memory across
//! crashes ([`AuditLog::unresolved`]) and the basis of its daily spend cap
//! ([`AuditLog::spent_since`]).
//!
//! # Storage
//!
//! One SQLite file in WAL mode (readers never block the writer, and a reader
//! sees one consistent snapshot), `synchronous = FULL`, busy timeout 5 s.
//! Every append is one `BEGIN IMMEDIATE` transaction: read the head, insert
//! the row, advance the head, commit; so several processes may append to the
//! same file. Values are always bound parameters, never formatted into SQL.
//!
//! ```sql
//! CREATE TABLE audit (
//!     id               INTEGER PRIMARY KEY,  -- 1, 2, 3, ... in order, no gaps
//!     time             TEXT NOT NULL,        -- RFC 3339 UTC, milliseconds: 2025-01-31T09:00:00.000Z
//!     action_id        TEXT NOT NULL,
//!     intent           TEXT NOT NULL,
//!     slots            TEXT NOT NULL,        -- a JSON object
//!     transcript       TEXT NOT NULL,
//!     reply_transcript TEXT,                 -- the spoken confirmation, if any
//!     confidence       REAL,                 -- transcription confidence; NULL when typed
//!     wake_score       REAL,                 -- NULL when typed
//!     amount           TEXT,                 -- exact decimal, e.g. '12.50'
//!     currency         TEXT,                 -- ISO 4217 code, e.g. 'EUR'
//!     outcome          TEXT NOT NULL,        -- one of AuditOutcome (CHECK constraint)
//!     detail           TEXT,                 -- a reason or error message; with "via CLIENT"
//!                                            -- when a Wyoming client's session asked
//!     prev_hash        TEXT NOT NULL,        -- the previous row's hash; 64 zeros for row 1
//!     hash             TEXT NOT NULL         -- see "Hash" below
//! );
//! CREATE TABLE audit_head (                  -- exactly one row
//!     one INTEGER PRIMARY KEY CHECK (one = 1),
//!     version INTEGER NOT NULL,              -- schema version, 1
//!     count INTEGER NOT NULL,                -- rows appended so far
//!     last_hash TEXT NOT NULL                -- hash of row `count` (64 zeros when empty)
//! );
//! ```
//!
//! Triggers abort every `UPDATE` and `DELETE` on `audit` and `DELETE` on
//! `audit_head`, refuse an insert that does not continue the chain (id =
//! head count + 1, prev_hash = head last hash), and let the head only advance
//! by one row to the hash of that row. They stop accidents and casual edits
//! with the `sqlite3` shell; the hash chain is what detects deliberate ones.
//!
//! # Hash
//!
//! `hash` = SHA-256, as 64 lowercase hex digits, of the UTF-8 bytes of this
//! compact JSON array (no spaces), in this order:
//!
//! ```text
//! ["voicegate-audit/1", id, time, action_id, intent, slots, transcript,
//!  reply_transcript, confidence, wake_score, amount, currency, outcome,
//!  detail, prev_hash]
//! ```
//!
//! - `id` is a JSON integer; every other field is a JSON string or `null`
//!   (SQL NULL), so NULL, `""` and `"null"` all differ.
//! - Text fields are the stored text exactly; `slots` is the stored JSON
//!   text as a string (not re-serialised), `time` the stored timestamp.
//! - `confidence` and `wake_score` are the 16 lowercase hex digits of the
//!   IEEE 754 binary64 bit pattern (`0.93` → `"3fedc28f5c28f5c3"`), so floats
//!   need no decimal rendering rules; `-0.0` is stored as `0.0`.
//! - Strings escape `"` and `\` with a backslash, U+0008/09/0A/0C/0D as
//!   `\b \t \n \f \r`, other characters below U+0020 as `\u00xx` (lowercase
//!   hex), and leave everything else as raw UTF-8. This is exactly Python's
//!   `json.dumps(row, ensure_ascii=False, separators=(",", ":"))`, so an
//!   auditor can re-check the database file, or the CSV export (whose
//!   `slots` column is the stored text and whose reals read back exactly),
//!   without this program.
//!
//! The hash covers the row's own id and its previous hash, so a row cannot be
//! edited, moved, removed or slipped in without breaking the chain.
//!
//! # What [`AuditLog::verify`] detects, and what it cannot
//!
//! Walking the rows in id order within one read snapshot, it reports the
//! first problem and names the row:
//!
//! - an edited row (its content no longer matches its hash, or a value has a
//!   type the log never writes);
//! - a deleted row (a gap in the ids; or fewer rows than the head records,
//!   which catches deleting the *last* rows too);
//! - a reordered or inserted row (its previous hash is not the hash of the
//!   row before it; or rows the head does not record);
//! - a head that disagrees with the rows (the last row's hash is not the
//!   head's: the row was replaced, or later rows were deleted and the head's
//!   count edited to match).
//!
//! The honest limit: on its own this is tamper-*evidence* without a secret
//! or an outside witness. Someone who can write the file and rewrites it
//! consistently (recomputing the hashes from the first changed row on, and
//! the head; or deleting the last rows and setting the head to match) or
//! replaces it with an older copy or an empty log, is not detected by
//! `verify`: the file alone cannot tell a rewritten history from a true one.
//!
//! # The anchor: a witness kept elsewhere
//!
//! [`AuditLog::head`] (`voicegate audit head`) gives the [`Head`], written
//! `COUNT:HASH`: the row count and the last row's hash. An auditor keeps it
//! somewhere the log's writer cannot change (a note, a ticket, a backup,
//! another machine). Later, [`AuditLog::verify_extends`] (`voicegate audit
//! verify --expect-head COUNT:HASH`) checks the chain as `verify` does and,
//! in the same snapshot, that row COUNT still exists with hash HASH: since
//! every hash covers the previous one, that row pins every row up to it,
//! so the log now is the anchored log plus appended rows. A bare `HASH`
//! anchor means "some row has this hash". Against an anchor, a rewrite of
//! any row up to COUNT ([`Problem::AnchorMismatch`] or
//! [`Problem::AnchorNotFound`]), and a log rolled back, truncated or
//! replaced by an older copy or an empty one ([`Problem::AnchorBeyondEnd`]),
//! are detected.
//!
//! What an anchor cannot do: it says nothing about rows appended after it
//! was taken (those are as safe as the plain chain until the next anchor),
//! and it is only as good as the place it is kept: whoever can change both
//! the log and the kept anchor can rewrite history undetected. The writer
//! of the log needs no secret, and nothing about the anchor is stored in
//! the data directory.

mod canonical;
pub mod cli;
mod decimal;
mod export;
mod store;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use canonical::GENESIS_HASH;
pub use decimal::{Decimal, DecimalError};
pub use store::AuditLog;

/// What happened to a high-stakes action: the kind of one audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// The intent was recognised; the gate asked for confirmation.
    Requested,
    /// The user said yes; the action is about to run.
    Confirmed,
    /// The user said no.
    Declined,
    /// No answer in time.
    Expired,
    /// Another request replaced it before it was confirmed.
    Superseded,
    /// The gate refused it (e.g. over the daily spend cap).
    Refused,
    /// It ran and succeeded.
    Executed,
    /// It ran (or tried to) and failed.
    Failed,
    /// It may or may not have run (e.g. a crash after `confirmed`): needs review.
    Unknown,
}

impl AuditOutcome {
    /// Every outcome, in lifecycle order.
    pub const ALL: [AuditOutcome; 9] = [
        AuditOutcome::Requested,
        AuditOutcome::Confirmed,
        AuditOutcome::Declined,
        AuditOutcome::Expired,
        AuditOutcome::Superseded,
        AuditOutcome::Refused,
        AuditOutcome::Executed,
        AuditOutcome::Failed,
        AuditOutcome::Unknown,
    ];

    /// The stored name (lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Requested => "requested",
            AuditOutcome::Confirmed => "confirmed",
            AuditOutcome::Declined => "declined",
            AuditOutcome::Expired => "expired",
            AuditOutcome::Superseded => "superseded",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Executed => "executed",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`AuditOutcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown outcome {0:?} (expected one of: requested, confirmed, declined, expired, superseded, refused, executed, failed, unknown)"
)]
pub struct ParseOutcomeError(pub String);

impl FromStr for AuditOutcome {
    type Err = ParseOutcomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| ParseOutcomeError(s.to_string()))
    }
}

/// One event of a high-stakes action, as the gate reports it.
///
/// [`AuditLog::append`] validates it: `action_id` and `intent` non-empty;
/// `confidence` and `wake_score` finite; `amount` a plain decimal (see
/// [`Decimal::parse`]) and `currency` three uppercase ASCII letters, and
/// either both or neither present.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// The action's id (also the merchant's idempotency key).
    pub action_id: String,
    /// The intent name.
    pub intent: String,
    /// The intent's slot values.
    pub slots: Map<String, Value>,
    /// What the user said (or typed) to request the action.
    pub transcript: String,
    /// What the user said to confirm or decline, if anything yet.
    pub reply_transcript: Option<String>,
    /// Transcription confidence; `None` when typed.
    pub confidence: Option<f64>,
    /// Wake word score; `None` when typed.
    pub wake_score: Option<f64>,
    /// The amount, as exact decimal text (`"12.50"`), when known.
    pub amount: Option<String>,
    /// The ISO 4217 currency code (`"EUR"`), when the amount is known.
    pub currency: Option<String>,
    /// What happened.
    pub outcome: AuditOutcome,
    /// Why, in words: a reason ("over the daily spend cap"), an error message.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with no slots, reply, scores, amount or detail.
    pub fn new(
        action_id: impl Into<String>,
        intent: impl Into<String>,
        transcript: impl Into<String>,
        outcome: AuditOutcome,
    ) -> AuditEvent {
        AuditEvent {
            action_id: action_id.into(),
            intent: intent.into(),
            slots: Map::new(),
            transcript: transcript.into(),
            reply_transcript: None,
            confidence: None,
            wake_score: None,
            amount: None,
            currency: None,
            outcome,
            detail: None,
        }
    }

    /// The same action's next event: a copy with another outcome and detail.
    pub fn next(&self, outcome: AuditOutcome, detail: Option<String>) -> AuditEvent {
        AuditEvent {
            outcome,
            detail,
            ..self.clone()
        }
    }
}

/// One stored row: an event with its id, time and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// 1, 2, 3, ... in append order.
    pub id: i64,
    /// When it happened, as given to [`AuditLog::append`], to the millisecond.
    pub time: DateTime<Utc>,
    /// The event.
    pub event: AuditEvent,
    /// The previous row's hash ([`GENESIS_HASH`] for row 1).
    pub prev_hash: String,
    /// This row's hash (see the module header).
    pub hash: String,
}

impl AuditRow {
    /// The row as a JSON object with a fixed key order (used by `--json`
    /// output and the JSON export); `slots` is an object, absent values are
    /// `null`.
    pub fn to_json(&self) -> Value {
        let e = &self.event;
        json!({
            "id": self.id,
            "time": format_time(&self.time),
            "action_id": e.action_id,
            "intent": e.intent,
            "slots": e.slots,
            "transcript": e.transcript,
            "reply_transcript": e.reply_transcript,
            "confidence": e.confidence,
            "wake_score": e.wake_score,
            "amount": e.amount,
            "currency": e.currency,
            "outcome": e.outcome.as_str(),
            "detail": e.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }
}

/// Which rows [`AuditLog::list`] returns; the default is all of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows with this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only rows of this action.
    pub action_id: Option<String>,
}

/// The result of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every row and the head check out.
    Intact {
        /// How many rows.
        rows: u64,
        /// The last row's hash ([`GENESIS_HASH`] when empty). With `rows`,
        /// the [`Head`] to keep elsewhere as an anchor (see the module
        /// header).
        last_hash: String,
    },
    /// The first problem found.
    Broken {
        /// The row it concerns (0 for [`Problem::BadHead`] and
        /// [`Problem::AnchorNotFound`]).
        row: i64,
        /// What is wrong.
        problem: Problem,
    },
}

impl Verification {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verification::Intact { .. })
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verification::Intact { rows, .. } => write!(f, "audit log intact: {rows} rows"),
            Verification::Broken {
                problem: problem @ Problem::BadHead { .. },
                ..
            } => write!(f, "audit log BROKEN at the head record: {problem}"),
            Verification::Broken {
                problem: problem @ Problem::AnchorNotFound { .. },
                ..
            } => write!(f, "audit log BROKEN: {problem}"),
            Verification::Broken { row, problem } => {
                write!(f, "audit log BROKEN at row {row}: {problem}")
            }
        }
    }
}

/// The head of the log: how many rows it has and the last one's hash
/// ([`GENESIS_HASH`] when empty). Written `COUNT:HASH`; see
/// [`AuditLog::head`] and [`Anchor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Rows in the log.
    pub count: u64,
    /// Row `count`'s hash.
    pub hash: String,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.count, self.hash)
    }
}

/// A [`Head`] taken earlier and kept outside the log, which
/// [`AuditLog::verify_extends`] checks the log against: `COUNT:HASH` (row
/// COUNT has hash HASH), or a bare `HASH` (some row has it).
///
/// Always well formed: the hash is 64 lowercase hex digits, the count fits
/// a row id, and a count of 0 goes with [`GENESIS_HASH`] and no other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    count: Option<u64>,
    hash: String,
}

impl Anchor {
    /// The anchor `count:hash` (`count` `None`: any row with `hash`).
    /// Hex digits may be upper or lower case.
    pub fn new(count: Option<u64>, hash: &str) -> Result<Anchor, ParseAnchorError> {
        let bad = |why: &str| Err(ParseAnchorError(why.to_string()));
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("the hash must be 64 hex digits");
        }
        let hash = hash.to_ascii_lowercase();
        if count.is_some_and(|c| i64::try_from(c).is_err()) {
            return bad("the row count is too large");
        }
        match (count, hash == GENESIS_HASH) {
            (Some(0), false) => return bad("an empty log's hash is 64 zeros"),
            (Some(1..), true) => return bad("64 zeros is only an empty log's hash"),
            _ => {}
        }
        Ok(Anchor { count, hash })
    }

    /// The anchored row count, when given.
    pub fn count(&self) -> Option<u64> {
        self.count
    }

    /// The anchored hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether every log extends it: the anchor of an empty log.
    pub fn is_empty_log(&self) -> bool {
        self.hash == GENESIS_HASH
    }

    /// Checks a log with `rows` intact rows against the anchor, given the
    /// hash of row `count` (when the anchor has a count and the log has that
    /// row) and whether any row has the anchored hash.
    pub(crate) fn check(
        &self,
        rows: u64,
        at_count: Option<&str>,
        hash_seen: bool,
    ) -> Option<(i64, Problem)> {
        if self.is_empty_log() {
            return None;
        }
        let Some(count) = self.count else {
            return (!hash_seen).then(|| {
                let problem = Problem::AnchorNotFound {
                    anchored: self.hash.clone(),
                };
                (0, problem)
            });
        };
        // `Anchor::new` keeps the count within i64.
        let row = i64::try_from(count).unwrap_or(i64::MAX);
        match at_count {
            None => Some((
                row,
                Problem::AnchorBeyondEnd {
                    anchored_rows: count,
                    rows,
                },
            )),
            Some(found) if found != self.hash => Some((
                row,
                Problem::AnchorMismatch {
                    anchored: self.hash.clone(),
                    found: found.to_string(),
                },
            )),
            Some(_) => None,
        }
    }

    /// What a missing log (no file) is, checked against this anchor.
    pub fn check_missing_log(&self) -> Verification {
        match self.check(0, None, false) {
            None => Verification::Intact {
                rows: 0,
                last_hash: GENESIS_HASH.to_string(),
            },
            Some((row, problem)) => Verification::Broken { row, problem },
        }
    }
}

impl From<Head> for Anchor {
    fn from(head: Head) -> Anchor {
        Anchor {
            count: Some(head.count),
            hash: head.hash,
        }
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            Some(count) => write!(f, "{count}:{}", self.hash),
            None => f.write_str(&self.hash),
        }
    }
}

impl FromStr for Anchor {
    type Err = ParseAnchorError;

    /// `COUNT:HASH` or `HASH`, as `voicegate audit head` prints it
    /// (surrounding white space is ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        match text.split_once(':') {
            None => Anchor::new(None, text),
            Some((count, hash)) => {
                if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseAnchorError(
                        "the row count must be a whole number".to_string(),
                    ));
                }
                let count = count
                    .parse::<u64>()
                    .map_err(|_| ParseAnchorError("the row count is too large".to_string()))?;
                Anchor::new(Some(count), hash)
            }
        }
    }
}

/// Text that is not an [`Anchor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid anchor: {0} (expected COUNT:HASH as `voicegate audit head` prints it, or HASH)")]
pub struct ParseAnchorError(String);

/// What [`AuditLog::verify`] found wrong with a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The row's content does not match its hash.
    Edited,
    /// A value has a type or form the log never writes (e.g. text in a REAL
    /// column): edited outside the log.
    Malformed {
        /// Which value and how.
        reason: String,
    },
    /// The row is missing: the next row found has a later id.
    Deleted {
        /// The id found in its place.
        next: i64,
    },
    /// The row is missing at the end: the head records more rows than exist.
    Truncated {
        /// Rows the head records.
        head_rows: u64,
    },
    /// The row's previous hash is not the hash of the row before it.
    LinkBroken,
    /// The row has an id the log never assigns (below 1).
    BadId,
    /// The row exists but the head does not record it.
    NotInHead {
        /// Rows the head records.
        head_rows: u64,
    },
    /// The row is the last one but its hash differs from the head's: it was
    /// replaced, or rows after it were deleted and the head's count edited.
    HeadHashMismatch,
    /// The head record is missing or malformed (reported as row 0).
    BadHead {
        /// How.
        reason: String,
    },
    /// The log is intact but does not extend the anchor: the anchored row
    /// has another hash, so it or an earlier row was rewritten since the
    /// anchor was taken, or the log was replaced.
    AnchorMismatch {
        /// The anchor's hash.
        anchored: String,
        /// The row's hash now.
        found: String,
    },
    /// The log is intact but has fewer rows than the anchor: rows were
    /// removed since, or the log was replaced with an older copy.
    AnchorBeyondEnd {
        /// Rows the anchor records.
        anchored_rows: u64,
        /// Rows the log has.
        rows: u64,
    },
    /// The log is intact but no row has the anchor's hash (an anchor given
    /// as a bare hash; reported as row 0).
    AnchorNotFound {
        /// The anchor's hash.
        anchored: String,
    },
}

impl Problem {
    /// A one-word kind for machine-readable output: `edited`, `deleted`,
    /// `reordered`, `inserted`, or `head` (the head disagrees with the rows,
    /// or is itself damaged).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Edited | Problem::Malformed { .. } => "edited",
            Problem::Deleted { .. } | Problem::Truncated { .. } => "deleted",
            Problem::LinkBroken => "reordered",
            Problem::BadId | Problem::NotInHead { .. } => "inserted",
            Problem::HeadHashMismatch | Problem::BadHead { .. } => "head",
            Problem::AnchorMismatch { .. } | Problem::AnchorNotFound { .. } => "rewritten",
            Problem::AnchorBeyondEnd { .. } => "deleted",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited => f.write_str("edited (hash mismatch)"),
            Problem::Malformed { reason } => write!(f, "edited ({reason})"),
            Problem::Deleted { next } => write!(f, "deleted (the next row is {next})"),
            Problem::Truncated { head_rows } => {
                write!(f, "deleted (the head records {head_rows} rows)")
            }
            Problem::LinkBroken => f.write_str("reordered or inserted (previous-hash link broken)"),
            Problem::BadId => f.write_str("inserted (row ids start at 1)"),
            Problem::NotInHead { head_rows } => {
                write!(f, "inserted (the head records only {head_rows} rows)")
            }
            Problem::HeadHashMismatch => f.write_str(
                "replaced, or later rows deleted (its hash differs from the head's last hash)",
            ),
            Problem::BadHead { reason } => write!(f, "{reason}"),
            Problem::AnchorMismatch { anchored, found } => write!(
                f,
                "does not extend the anchor: its hash is {found}, the anchor's {anchored} \
                 (this row or an earlier one was rewritten, or the log replaced)"
            ),
            Problem::AnchorBeyondEnd {
                anchored_rows,
                rows,
            } => write!(
                f,
                "does not extend the anchor: the anchor records {anchored_rows} rows, \
                 the log has {rows} (rows removed, or the log replaced by an older copy)"
            ),
            Problem::AnchorNotFound { anchored } => write!(
                f,
                "does not extend the anchor: no row has the hash {anchored} \
                 (rewritten, or the log replaced)"
            ),
        }
    }
}

/// Errors from the audit log.
///
/// The gate must refuse a high-stakes action on *any* error from
/// [`AuditLog::append`]; [`AuditError::is_unwritable`] tells it whether to
/// say "I can't write the audit log" (storage trouble) rather than something
/// else.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database cannot be written or opened: a read-only file or
    /// connection, permission denied, disk full, an I/O error
    /// (`SQLITE_READONLY`, `SQLITE_PERM`, `SQLITE_FULL`, `SQLITE_CANTOPEN`,
    /// `SQLITE_IOERR`).
    #[error(
        "cannot write the audit log at {path} (read-only, no permission, disk full or I/O error): {source}"
    )]
    Unwritable {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another process held the database locked for longer than the busy
    /// timeout.
    #[error("the audit log at {path} is busy (locked by another process): {source}")]
    Busy {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// There is no database at the path (read-only opens never create one).
    #[error("no audit log at {} yet", .0.display())]
    Missing(PathBuf),
    /// The file is not a voicegate audit log, or one this version cannot use.
    #[error("the audit log at {path} cannot be used: {reason}")]
    Incompatible {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The log was damaged outside this program (e.g. the head disagrees with
    /// the last row, or a row cannot be read); appends are refused until a
    /// person has looked.
    #[error("the audit log at {path} is damaged: {reason}; run `voicegate audit verify`")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The event is not valid (see [`AuditEvent`]); nothing was written.
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    /// Any other database error.
    #[error("audit log error at {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Writing output (export, CLI) failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
}

impl AuditError {
    /// Whether the database cannot be written (or opened) at all: the gate
    /// must then refuse to run purchases and say so.
    pub fn is_unwritable(&self) -> bool {
        matches!(self, AuditError::Unwritable { .. })
    }
}

/// The stored form of a time: RFC 3339, UTC, milliseconds, `Z`.
fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
