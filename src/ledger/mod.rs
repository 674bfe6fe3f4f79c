//! The durable ledger: SQLite in WAL mode, the only code that knows the schema.
//!
//! Tables (see `migrations/`): `job_runs` (one row per run, keyed by slurmdbd's own key),
//! `collect_cursors` (per cluster), `quarantine` (unreadable records with text and reason),
//! `collect_runs` (history), `meta` (the change sequence), `settle_asks` (open runs asked for
//! by id); for the consumers: `consumers` (one cursor each), `consumer_runs` (per run: mark,
//! done, hold), `outbox` (items and their state machine), `imported_frontiers` (seeds from a
//! replaced tool); `backfill` (what `backfill` did, month by month); `run_allocations` (runs'
//! allocation detail from slurmctld, asked once per run) and `allocation_cursors`.
//!
//! Invariants:
//! - Upserts are idempotent: the same record written twice changes nothing (a content hash
//!   decides), so re-reading an overlapping window is free and safe.
//! - Every insert or content change takes the next `change_seq`; consumers (meter, sinks,
//!   archive) follow that sequence with their own cursors and never scan the whole table.
//! - A cursor moves only in the same transaction as the last rows of its poll.
//! - Writes happen in `BEGIN IMMEDIATE` transactions with `synchronous=FULL`: what a commit
//!   returned survives a crash or power loss.

mod allocations;
mod backfill;
mod consumers;
mod imports;
mod jobs;
pub mod lock;
mod migrations;
mod outbox;
mod quarantine;
mod settle;
mod status;

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::model::{ClusterName, UnixTime};

pub use allocations::ALLOCATION_RECENT_SECS;
pub use backfill::{BackfillPart, ItemsIn};
pub use consumers::{MarkedRun, PlanStatements, RunMark};
pub use imports::{ImportOutcome, ImportedRow};
pub use jobs::{JobFilter, PreparedRun, Rejected, RunWriter, Upsert};
pub use migrations::MIGRATIONS;
pub use outbox::{Delivery, DeliveryProblem, DeliveryState, HeldRun, NewItem, OwedTotal, SinkStatus};
pub use quarantine::QuarantineRecord;
pub use settle::{retry_delay_secs, OpenRun, UnsettledRun, UNSETTLED_AFTER};
pub use status::{CollectRunRecord, CursorRecord, LedgerStatus, StateCount};

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the ledger at {path}: {reason}. Check that the directory exists and is writable, or set [ledger] path")]
    Open { path: String, reason: rusqlite::Error },
    #[error("the ledger has schema version {found}, newer than this slurm-ledger understands ({supported}); upgrade slurm-ledger")]
    TooNew { found: u32, supported: u32 },
    #[error("the ledger has schema version {found}; this slurm-ledger uses {supported}. A dry run changes nothing, so it cannot upgrade it: run any command without --dry-run (e.g. `slurm-ledger status`) once")]
    NeedsUpgrade { found: u32, supported: u32 },
    #[error("{field} = {value} is too large to store (over 2^63); no real job has that")]
    ValueRange { field: &'static str, value: u64 },
    #[error("ledger row {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("a planning pass's writes were not finished before its commit; nothing of it was kept (internal error; report it)")]
    UnfinishedPlan,
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
}

impl Ledger {
    /// Opens (creating if needed) the ledger file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|reason| LedgerError::Open { path: path.display().to_string(), reason })?;
        Self::setup(conn, path.display().to_string())
    }

    /// Opens an existing ledger without writing anything (no file is created, no migration
    /// runs): for `--dry-run`. A ledger whose schema is older or newer than this binary's is
    /// refused with what to do.
    pub fn open_read_only(path: &Path) -> Result<Self, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|reason| LedgerError::Open { path: path.display().to_string(), reason })?;
        conn.execute_batch("PRAGMA busy_timeout=10000;")
            .map_err(|reason| LedgerError::Open { path: path.display().to_string(), reason })?;
        let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let supported = MIGRATIONS.len() as u32;
        if found > supported {
            return Err(LedgerError::TooNew { found, supported });
        }
        if found < supported {
            return Err(LedgerError::NeedsUpgrade { found, supported });
        }
        Ok(Self { conn })
    }

    /// An in-memory ledger (tests, `--dry-run` previews).
    pub fn open_in_memory() -> Result<Self, LedgerError> {
        Self::setup(Connection::open_in_memory()?, ":memory:".into())
    }

    fn setup(mut conn: Connection, path: String) -> Result<Self, LedgerError> {
        let pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; \
                       PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY;";
        conn.execute_batch(pragmas).map_err(|reason| LedgerError::Open { path, reason })?;
        conn.set_prepared_statement_cache_capacity(64);
        migrations::migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// Starts a write transaction. `now` stamps every row written through it.
    pub fn writer(&mut self, now: UnixTime) -> Result<Writer<'_>, LedgerError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seq = read_change_seq(&tx)?;
        Ok(Writer { tx, seq, now: now.0, open_plans: std::cell::Cell::new(0) })
    }

    /// Where the next poll of `cluster` starts, if it was ever polled.
    pub fn cursor(&self, cluster: &ClusterName) -> Result<Option<UnixTime>, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT position FROM collect_cursors WHERE cluster = ?1")?;
        let mut rows = stmt.query([cluster.as_str()])?;
        Ok(match rows.next()? {
            Some(r) => Some(UnixTime(r.get(0)?)),
            None => None,
        })
    }

    /// The ledger-wide change sequence: the `change_seq` of the latest written run.
    pub fn change_seq(&self) -> Result<i64, LedgerError> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = 'change_seq'", [], |r| r.get(0))?)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// A write transaction; nothing is visible until [`Writer::commit`].
pub struct Writer<'c> {
    tx: rusqlite::Transaction<'c>,
    seq: i64,
    now: i64,
    /// Planning writes gathered but not finished ([`PlanStatements`]): a commit is refused.
    open_plans: std::cell::Cell<u32>,
}

impl Writer<'_> {
    /// Moves the cluster's cursor (never backwards).
    pub fn set_cursor(&mut self, cluster: &ClusterName, position: UnixTime) -> Result<(), LedgerError> {
        self.tx.execute(
            "INSERT INTO collect_cursors (cluster, position, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(cluster) DO UPDATE SET position = max(position, excluded.position), updated_at = excluded.updated_at",
            rusqlite::params![cluster.as_str(), position.0, self.now],
        )?;
        Ok(())
    }

    /// Makes everything written durable.
    pub fn commit(self) -> Result<(), LedgerError> {
        if self.open_plans.get() != 0 {
            return Err(LedgerError::UnfinishedPlan);
        }
        self.tx.execute("UPDATE meta SET value = ?1 WHERE key = 'change_seq'", [self.seq])?;
        self.tx.commit()?;
        Ok(())
    }

    /// Makes everything written so far durable, as [`Writer::commit`], and goes on in a new
    /// transaction: a long ingest commits chunk by chunk through one writer. After an error the
    /// writer must be dropped (its transaction, if any is open, rolls back).
    pub fn commit_and_continue(&mut self) -> Result<(), LedgerError> {
        if self.open_plans.get() != 0 {
            return Err(LedgerError::UnfinishedPlan);
        }
        self.tx.execute("UPDATE meta SET value = ?1 WHERE key = 'change_seq'", [self.seq])?;
        // The guard stays: the transaction begun here is the one it commits or rolls back.
        self.tx.execute_batch("COMMIT")?;
        self.tx.execute_batch("BEGIN IMMEDIATE")?;
        // Another process may have written runs between the two transactions.
        self.seq = read_change_seq(&self.tx)?;
        Ok(())
    }
}

fn read_change_seq(conn: &Connection) -> Result<i64, LedgerError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'change_seq'", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests;
