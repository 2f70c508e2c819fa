//! The execution journal: which confirmed actions were started, with the
//! order each carried (digest, idempotency key), and the PIN lockout, in
//! the state database. What start-up recovery and the order keys read.

use super::*;

/// The journal of started executions, and the orders they carried, in the
/// state database.
pub(super) struct Journal {
    conn: Connection,
}

impl Journal {
    pub(super) fn open(path: &Path) -> Result<Journal, PipelineError> {
        let err = |source| PipelineError::State {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS executions (
                 action_id  TEXT PRIMARY KEY,
                 started_at TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS pin_lock (
                 one          INTEGER PRIMARY KEY CHECK (one = 1),
                 failures     INTEGER NOT NULL,
                 locked_until TEXT
             );
             CREATE TABLE IF NOT EXISTS orders (
                 action_id       TEXT PRIMARY KEY,
                 order_digest    TEXT NOT NULL,
                 idempotency_key TEXT NOT NULL,
                 started_at      TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS orders_by_digest ON orders (order_digest, started_at);",
        )
        .map_err(err)?;
        Ok(Journal { conn })
    }

    /// The saved PIN lockout (none saved: no failures, not locked).
    pub(super) fn pin_lock(&self) -> rusqlite::Result<PinLock> {
        let row = self.conn.query_row(
            "SELECT failures, locked_until FROM pin_lock WHERE one = 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
        );
        match row {
            Ok((failures, until)) => Ok(PinLock {
                failures: u32::try_from(failures).unwrap_or(u32::MAX),
                // An unreadable time is read as "locked for a long time":
                // a damaged row must not unlock purchases.
                locked_until: until.map(|t| {
                    DateTime::parse_from_rfc3339(&t)
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC)
                }),
            }),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(PinLock::default()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn save_pin_lock(&self, lock: PinLock) -> rusqlite::Result<()> {
        self.conn
            .execute(
                "INSERT INTO pin_lock (one, failures, locked_until) VALUES (1, ?1, ?2)
                 ON CONFLICT (one) DO UPDATE SET failures = ?1, locked_until = ?2",
                params![
                    i64::from(lock.failures),
                    lock.locked_until.map(|t| t.to_rfc3339())
                ],
            )
            .map(|_| ())
    }

    /// Marks `action_id` started and records the order it carries, in one
    /// transaction.
    pub(super) fn mark_started(
        &mut self,
        action_id: &str,
        order_digest: &str,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        let at = stored_time(now);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO executions (action_id, started_at) VALUES (?1, ?2)",
            params![action_id, at],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO orders (action_id, order_digest, idempotency_key, started_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![action_id, order_digest, key.as_str(), at],
        )?;
        tx.commit()
    }

    /// The latest order with `order_digest` started at or after `since`:
    /// its action id and key.
    pub(super) fn latest_order(
        &self,
        order_digest: &str,
        since: DateTime<Utc>,
    ) -> rusqlite::Result<Option<(String, IdempotencyKey)>> {
        self.conn
            .query_row(
                "SELECT action_id, idempotency_key FROM orders
                 WHERE order_digest = ?1 AND started_at >= ?2
                 ORDER BY started_at DESC, rowid DESC LIMIT 1",
                params![order_digest, stored_time(since)],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        IdempotencyKey::from_string(row.get(1)?),
                    ))
                },
            )
            .optional()
    }

    pub(super) fn was_started(&self, action_id: &str) -> rusqlite::Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM executions WHERE action_id = ?1",
                params![action_id],
                |_| Ok(()),
            )
            .map(|_| true)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(false),
                e => Err(e),
            })
    }
}

/// A time as the journal stores it: RFC 3339 in UTC with a fixed number of
/// fractional digits, so text order is time order.
pub(super) fn stored_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
