//! Schedule: the SQLite store of alarms and timers.
//!
//! Exists so that everything that must survive a restart (what is set,
//! what rang, what was missed) lives behind one type, [`Schedule`], whose
//! every state change is one guarded statement or transaction. The table
//! and its states are described in the parent module's docs.

use super::*;

/// How long a connection waits for another one's write lock.
pub(super) const BUSY_TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// The schema version this code reads and writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schedule (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL CHECK (kind IN ('alarm', 'timer')),
    due_at        INTEGER NOT NULL,
    label         TEXT,
    created_at    INTEGER NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'ringing', 'done', 'cancelled', 'missed')),
    snoozed_until INTEGER,
    duration_ms   INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS schedule_by_ring_time
    ON schedule (state, COALESCE(snoozed_until, due_at));
";

/// The columns of an [`Entry`], in [`RawRow`] order.
pub(super) const COLUMNS: &str =
    "id, kind, due_at, label, created_at, state, snoozed_until, duration_ms";

/// The instant an entry rings: its snooze time if snoozed, else its due time.
pub(super) const RINGS_AT: &str = "COALESCE(snoozed_until, due_at)";

/// Whether an entry is an alarm (a clock time) or a timer (a countdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Set for a clock time.
    Alarm,
    /// Set for a length of time.
    Timer,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alarm => "alarm",
            Kind::Timer => "timer",
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self, AlarmError> {
        match text {
            "alarm" => Ok(Kind::Alarm),
            "timer" => Ok(Kind::Timer),
            other => Err(AlarmError::Corrupt(format!("kind {other:?}"))),
        }
    }
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting to ring (possibly snoozed).
    Pending,
    /// Ringing now.
    Ringing,
    /// Rang and was stopped.
    Done,
    /// Cancelled before it was stopped.
    Cancelled,
    /// Came due while the daemon was down; reported at start.
    Missed,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Ringing => "ringing",
            State::Done => "done",
            State::Cancelled => "cancelled",
            State::Missed => "missed",
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self, AlarmError> {
        match text {
            "pending" => Ok(State::Pending),
            "ringing" => Ok(State::Ringing),
            "done" => Ok(State::Done),
            "cancelled" => Ok(State::Cancelled),
            "missed" => Ok(State::Missed),
            other => Err(AlarmError::Corrupt(format!("state {other:?}"))),
        }
    }
}

/// One alarm or timer, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id; unique for the life of the database.
    pub id: i64,
    /// Alarm or timer.
    pub kind: Kind,
    /// When it was set to ring (before any snooze).
    pub due_at: DateTime<Utc>,
    /// The alarm's label or the timer's name, as spoken.
    pub label: Option<String>,
    /// When it was set.
    pub created_at: DateTime<Utc>,
    /// Where it is in its life.
    pub state: State,
    /// When it rings again after a snooze.
    pub snoozed_until: Option<DateTime<Utc>>,
    /// Timers: the length asked for.
    pub duration: Option<TimeDelta>,
}

/// An entry that came due (from [`Schedule::due`]) or was missed (from
/// [`Schedule::missed_at_start`]).
pub type Fired = Entry;

impl Entry {
    /// The instant it rings next: the snooze time if snoozed, else `due_at`.
    pub fn rings_at(&self) -> DateTime<Utc> {
        self.snoozed_until.unwrap_or(self.due_at)
    }

    /// A short text naming what rings, for
    /// [`Ringer::start`](crate::actions::ring::Ringer::start): `alarm`,
    /// `alarm: gym`, `timer`, `timer: pasta`.
    pub fn ring_text(&self) -> String {
        match &self.label {
            Some(label) => format!("{}: {label}", self.kind.as_str()),
            None => self.kind.as_str().to_string(),
        }
    }
}

/// A row as SQLite returns it, before validation.
pub(super) struct RawRow {
    id: i64,
    kind: String,
    due_at: i64,
    label: Option<String>,
    created_at: i64,
    state: String,
    snoozed_until: Option<i64>,
    duration_ms: Option<i64>,
}

impl RawRow {
    pub(super) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: row.get(0)?,
            kind: row.get(1)?,
            due_at: row.get(2)?,
            label: row.get(3)?,
            created_at: row.get(4)?,
            state: row.get(5)?,
            snoozed_until: row.get(6)?,
            duration_ms: row.get(7)?,
        })
    }

    pub(super) fn into_entry(self) -> Result<Entry, AlarmError> {
        Ok(Entry {
            id: self.id,
            kind: Kind::parse(&self.kind)?,
            due_at: from_ms(self.due_at)?,
            label: self.label,
            created_at: from_ms(self.created_at)?,
            state: State::parse(&self.state)?,
            snoozed_until: self.snoozed_until.map(from_ms).transpose()?,
            duration: self.duration_ms.map(TimeDelta::milliseconds),
        })
    }
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(ms: i64) -> Result<DateTime<Utc>, AlarmError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| AlarmError::Corrupt(format!("time {ms}")))
}

/// Runs a statement that returns entry rows and collects them, soonest first.
pub(super) fn query_entries<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<Entry>, AlarmError> {
    let mut stmt = conn.prepare(sql)?;
    let raw = stmt
        .query_map(params, RawRow::read)?
        .collect::<Result<Vec<_>, _>>()?;
    let mut entries = raw
        .into_iter()
        .map(RawRow::into_entry)
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| (e.rings_at(), e.id));
    Ok(entries)
}

pub(super) fn clean_label(label: Option<&str>) -> Option<String> {
    label
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

pub(super) fn same_label(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Which alarms [`Schedule::cancel_alarms`] cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmFilter {
    /// Every pending or ringing alarm.
    All,
    /// Alarms matching every criterion given; with none given, all alarms.
    Matching {
        /// Local clock time of the alarm (its set time, not a snooze).
        time: Option<NaiveTime>,
        /// Local date of the alarm.
        date: Option<NaiveDate>,
        /// Label, compared ignoring ASCII case and surrounding spaces.
        label: Option<String>,
    },
}

impl AlarmFilter {
    /// Whether `entry` (an alarm) matches, reading its time in `tz`.
    pub fn matches<Tz: TimeZone>(&self, entry: &Entry, tz: &Tz) -> bool {
        match self {
            AlarmFilter::All => true,
            AlarmFilter::Matching { time, date, label } => {
                let local = entry.due_at.with_timezone(tz).naive_local();
                time.is_none_or(|t| local.time() == t)
                    && date.is_none_or(|d| local.date() == d)
                    && label
                        .as_deref()
                        .is_none_or(|l| entry.label.as_deref().is_some_and(|e| same_label(e, l)))
            }
        }
    }
}

/// Which timers [`Schedule::cancel_timers`] cancels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerFilter {
    /// Every pending or ringing timer.
    All,
    /// Timers with this name (ignoring ASCII case and surrounding spaces).
    Named(String),
    /// Timers set for this length ("cancel the 10 minute timer").
    Lasting(TimeDelta),
}

impl TimerFilter {
    /// Whether `entry` (a timer) matches.
    pub fn matches(&self, entry: &Entry) -> bool {
        match self {
            TimerFilter::All => true,
            TimerFilter::Named(name) => entry.label.as_deref().is_some_and(|l| same_label(l, name)),
            TimerFilter::Lasting(length) => entry.duration == Some(*length),
        }
    }

    /// Whether `entry` is *called* what this filter says: a named timer by
    /// its name, an unnamed one by its length ("the 10 minute timer").
    /// Stricter than [`TimerFilter::matches`], which lets "the 10 minute
    /// timer" also mean a pasta timer of 10 minutes: when several share a
    /// name, "the second 10 minute timer" counts only those called that,
    /// as the replies that named them did.
    pub fn calls(&self, entry: &Entry) -> bool {
        match self {
            TimerFilter::All => false,
            TimerFilter::Named(_) => self.matches(entry),
            TimerFilter::Lasting(_) => entry.label.is_none() && self.matches(entry),
        }
    }

    /// What `entry` is called by: its name, else its length.
    pub fn called(entry: &Entry) -> TimerFilter {
        match (&entry.label, entry.duration) {
            (Some(name), _) => TimerFilter::Named(name.clone()),
            (None, Some(length)) => TimerFilter::Lasting(length),
            (None, None) => TimerFilter::All,
        }
    }
}

/// A timer and the time it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerLeft {
    /// The timer.
    pub entry: Entry,
    /// Time until it rings; zero once it is ringing.
    pub remaining: TimeDelta,
}

// ---------------------------------------------------------------------------
// The schedule
// ---------------------------------------------------------------------------

/// Alarms and timers in a SQLite file.
///
/// Several `Schedule`s (threads or processes) may share one file: it is in
/// WAL mode with a busy timeout, and every state change is atomic. One
/// `Schedule` is not `Sync`; give each thread its own.
#[derive(Debug)]
pub struct Schedule {
    conn: Connection,
    path: PathBuf,
}

impl Schedule {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AlarmError> {
        let path = path.as_ref().to_path_buf();
        let wrap = |source| AlarmError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(wrap)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(wrap)?;
        // The answer is the mode in force ("memory" for in-memory files);
        // only a real error stops us.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(wrap)?;
        {
            let tx =
                Transaction::new_unchecked(&conn, TransactionBehavior::Immediate).map_err(wrap)?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(wrap)?;
            match version {
                0 => {
                    tx.execute_batch(SCHEMA).map_err(wrap)?;
                    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                        .map_err(wrap)?;
                }
                SCHEMA_VERSION => {}
                newer => return Err(AlarmError::UnsupportedSchema(newer)),
            }
            tx.commit().map_err(wrap)?;
        }
        Ok(Schedule { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn immediate(&self) -> Result<Transaction<'_>, AlarmError> {
        Ok(Transaction::new_unchecked(
            &self.conn,
            TransactionBehavior::Immediate,
        )?)
    }

    pub(super) fn insert(
        conn: &Connection,
        kind: Kind,
        due_at: DateTime<Utc>,
        label: Option<&str>,
        duration: Option<TimeDelta>,
        now: DateTime<Utc>,
    ) -> Result<Entry, AlarmError> {
        let sql = format!(
            "INSERT INTO schedule (kind, due_at, label, created_at, state, duration_ms, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?4) RETURNING {COLUMNS}"
        );
        let duration_ms = duration.map(|d| d.num_milliseconds());
        let mut rows = query_entries(
            conn,
            &sql,
            params![kind.as_str(), ms(due_at), label, ms(now), duration_ms],
        )?;
        rows.pop()
            .ok_or_else(|| AlarmError::Corrupt("insert returned no row".into()))
    }

    /// Sets an alarm ringing at `at`, with an optional label.
    ///
    /// If an identical alarm (same instant and label) is already pending, it
    /// is returned instead of adding a second one. `at` must be after
    /// `now` ([`AlarmError::Passed`] otherwise).
    pub fn set_alarm(
        &self,
        at: DateTime<Utc>,
        label: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Entry, AlarmError> {
        if at <= now {
            return Err(AlarmError::Passed(format!(
                "an alarm at {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )));
        }
        let label = clean_label(label);
        let tx = self.immediate()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM schedule
             WHERE kind = 'alarm' AND state = 'pending' AND due_at = ?1 AND label IS ?2"
        );
        let existing = query_entries(&tx, &sql, params![ms(at), label])?;
        let entry = match existing.into_iter().next() {
            Some(entry) => entry,
            None => Self::insert(&tx, Kind::Alarm, at, label.as_deref(), None, now)?,
        };
        tx.commit()?;
        Ok(entry)
    }

    /// Starts a timer of `length` from `now`, with an optional name.
    pub fn start_timer(
        &self,
        length: TimeDelta,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Entry, AlarmError> {
        let length = check_timer(length)?;
        let name = clean_label(name);
        Self::insert(
            &self.conn,
            Kind::Timer,
            now + length,
            name.as_deref(),
            Some(length),
            now,
        )
    }

    /// Cancels one pending or ringing entry by id. Returns it as it was
    /// before cancelling (so a caller can tell whether it was ringing), or
    /// `None` if there is no such active entry.
    pub fn cancel(&self, id: i64, now: DateTime<Utc>) -> Result<Option<Entry>, AlarmError> {
        let tx = self.immediate()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM schedule WHERE id = ?1 AND state IN ('pending', 'ringing')"
        );
        let found = query_entries(&tx, &sql, params![id])?.into_iter().next();
        if found.is_some() {
            tx.execute(
                "UPDATE schedule SET state = 'cancelled', updated_at = ?2 WHERE id = ?1",
                params![id, ms(now)],
            )?;
        }
        tx.commit()?;
        Ok(found)
    }

    /// Cancels the pending or ringing entries of `kind` that `select` picks,
    /// in one transaction. Returns them as they were before cancelling
    /// (so a caller can tell whether one was ringing).
    pub(super) fn cancel_where(
        &self,
        kind: Kind,
        now: DateTime<Utc>,
        select: impl Fn(&Entry) -> bool,
    ) -> Result<Vec<Entry>, AlarmError> {
        let tx = self.immediate()?;
        let sql = format!(
            "SELECT {COLUMNS} FROM schedule WHERE kind = ?1 AND state IN ('pending', 'ringing')"
        );
        let chosen: Vec<Entry> = query_entries(&tx, &sql, params![kind.as_str()])?
            .into_iter()
            .filter(|e| select(e))
            .collect();
        {
            let mut update = tx.prepare(
                "UPDATE schedule SET state = 'cancelled', updated_at = ?2 WHERE id = ?1",
            )?;
            for entry in &chosen {
                update.execute(params![entry.id, ms(now)])?;
            }
        }
        tx.commit()?;
        Ok(chosen)
    }

    /// Cancels the pending or ringing alarms that `filter` selects, reading
    /// local times in `tz`. Returns them in their state before cancelling.
    pub fn cancel_alarms<Tz: TimeZone>(
        &self,
        filter: &AlarmFilter,
        tz: &Tz,
        now: DateTime<Utc>,
    ) -> Result<Vec<Entry>, AlarmError> {
        self.cancel_where(Kind::Alarm, now, |e| filter.matches(e, tz))
    }

    /// Cancels the pending or ringing timers that `filter` selects. Returns
    /// them in their state before cancelling.
    pub fn cancel_timers(
        &self,
        filter: &TimerFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<Entry>, AlarmError> {
        self.cancel_where(Kind::Timer, now, |e| filter.matches(e))
    }

    pub(super) fn active(&self, kind: Kind) -> Result<Vec<Entry>, AlarmError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedule WHERE kind = ?1 AND state IN ('pending', 'ringing')"
        );
        query_entries(&self.conn, &sql, params![kind.as_str()])
    }

    /// The alarms still to ring or ringing now (snoozed ones included),
    /// soonest first. Needs no clock: what is pending is pending.
    pub fn list_alarms(&self) -> Result<Vec<Entry>, AlarmError> {
        self.active(Kind::Alarm)
    }

    /// The timers still running or ringing now, soonest first.
    pub fn list_timers(&self) -> Result<Vec<Entry>, AlarmError> {
        self.active(Kind::Timer)
    }

    /// True if an alarm or timer rings now. An entry that cannot be read
    /// counts as not ringing, so a read error never keeps a ringer on.
    pub fn any_ringing(&self) -> Result<bool, AlarmError> {
        let alarms = self.list_alarms().unwrap_or_default();
        let timers = self.list_timers().unwrap_or_default();
        Ok(alarms
            .iter()
            .chain(timers.iter())
            .any(|e| e.state == State::Ringing))
    }

    /// Time left on the running or ringing timers called `name` (ignoring
    /// ASCII case), or on all of them for `None`; soonest first.
    pub fn timer_status(
        &self,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TimerLeft>, AlarmError> {
        Ok(self
            .list_timers()?
            .into_iter()
            .filter(|e| name.is_none_or(|n| e.label.as_deref().is_some_and(|l| same_label(l, n))))
            .map(|entry| {
                let remaining = if entry.state == State::Ringing {
                    TimeDelta::zero()
                } else {
                    (entry.rings_at() - now).max(TimeDelta::zero())
                };
                TimerLeft { entry, remaining }
            })
            .collect())
    }

    /// Everything that should ring at `now`: pending entries whose ring time
    /// has come are marked ringing and returned, soonest first. A second
    /// call never returns the same entry again (until a snooze makes it
    /// pending once more).
    pub fn due(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, AlarmError> {
        let sql = format!(
            "UPDATE schedule SET state = 'ringing', updated_at = ?1
             WHERE state = 'pending' AND {RINGS_AT} <= ?1 RETURNING {COLUMNS}"
        );
        query_entries(&self.conn, &sql, params![ms(now)])
    }

    /// Stops everything ringing (ringing → done) and returns what stopped.
    pub fn stop(&self, now: DateTime<Utc>) -> Result<Vec<Entry>, AlarmError> {
        let sql = format!(
            "UPDATE schedule SET state = 'done', updated_at = ?1
             WHERE state = 'ringing' RETURNING {COLUMNS}"
        );
        query_entries(&self.conn, &sql, params![ms(now)])
    }

    /// Snoozes everything ringing: back to pending, ringing again at `now` +
    /// `minutes` (default [`DEFAULT_SNOOZE_MINUTES`]; 1 to
    /// [`MAX_SNOOZE_MINUTES`]). Timers ringing at the same time are snoozed
    /// too, since the user hears one ring. Returns what was snoozed.
    pub fn snooze(
        &self,
        minutes: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Entry>, AlarmError> {
        let minutes = minutes.unwrap_or(DEFAULT_SNOOZE_MINUTES);
        if !(1..=MAX_SNOOZE_MINUTES).contains(&minutes) {
            return Err(AlarmError::BadSnooze(u64::from(minutes)));
        }
        let until = now + TimeDelta::minutes(i64::from(minutes));
        let sql = format!(
            "UPDATE schedule SET state = 'pending', snoozed_until = ?2, updated_at = ?1
             WHERE state = 'ringing' RETURNING {COLUMNS}"
        );
        query_entries(&self.conn, &sql, params![ms(now), ms(until)])
    }

    /// Call once when the daemon starts, before the first [`Schedule::due`].
    ///
    /// Pending entries whose ring time is more than `grace` before `now`
    /// came due while nothing was running: they are marked missed and
    /// returned (once; a second call returns nothing), so the daemon can
    /// say "You missed an alarm at 7 AM" instead of ringing late. Entries
    /// overdue by less than `grace` stay pending and ring on the next
    /// [`Schedule::due`].
    ///
    /// Entries a previous run left ringing (it stopped mid-ring) are marked
    /// done without being reported: they did ring, and must not ring twice.
    pub fn missed_at_start(
        &self,
        now: DateTime<Utc>,
        grace: TimeDelta,
    ) -> Result<Vec<Fired>, AlarmError> {
        let tx = self.immediate()?;
        tx.execute(
            "UPDATE schedule SET state = 'done', updated_at = ?1 WHERE state = 'ringing'",
            params![ms(now)],
        )?;
        let cutoff = now - grace.max(TimeDelta::zero());
        let sql = format!(
            "UPDATE schedule SET state = 'missed', updated_at = ?1
             WHERE state = 'pending' AND {RINGS_AT} < ?2 RETURNING {COLUMNS}"
        );
        let missed = query_entries(&tx, &sql, params![ms(now), ms(cutoff)])?;
        tx.commit()?;
        Ok(missed)
    }

    /// When the next pending entry rings, for the scheduler to sleep until.
    pub fn next_due(&self) -> Result<Option<DateTime<Utc>>, AlarmError> {
        let sql = format!("SELECT MIN({RINGS_AT}) FROM schedule WHERE state = 'pending'");
        let next: Option<i64> = self.conn.query_row(&sql, [], |row| row.get(0))?;
        next.map(from_ms).transpose()
    }

    /// Deletes finished entries (done, cancelled, missed) last changed
    /// before `before`; returns how many.
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize, AlarmError> {
        Ok(self.conn.execute(
            "DELETE FROM schedule
             WHERE state IN ('done', 'cancelled', 'missed') AND updated_at < ?1",
            params![ms(before)],
        )?)
    }
}
