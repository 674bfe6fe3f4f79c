//! Frontiers imported from a replaced tool: per sink and job, how much of the job that tool
//! already reported. The ledger stores them as given; the delivery engine decides, run by run,
//! whether a row applies (see `delivery::engine`), and records which run took it
//! (`applied_submit`; 0 = released by an admin: the row applies to no run).

use rusqlite::{params, OptionalExtension};

use crate::model::ClusterName;

use super::{Ledger, LedgerError, Writer};

/// What a replaced tool had reported of one job (slurm-tracker's `job_states` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub job_id_raw: u64,
    /// Seconds of ElapsedRaw already reported.
    pub reported_elapsed_secs: i64,
    /// Unix seconds: the end of the last reported window.
    pub reported_at: i64,
    /// Unix seconds when the tool saw the job complete; 0 while it thought it running.
    pub completed_at: i64,
}

/// What storing one imported row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Stored,
    /// The same row was imported before (importing twice is harmless).
    AlreadyThere,
    /// A different row for this job was imported and already applied to a run: left alone.
    AlreadyApplied,
}

impl Ledger {
    /// Whether the sink has imported rows not yet applied to a run.
    pub fn has_pending_imports(&self, sink: &str) -> Result<bool, LedgerError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM imported_frontiers WHERE sink = ?1 AND applied_submit IS NULL)",
            [sink],
            |r| r.get(0),
        )?)
    }

    /// The pending imported row of a job, if any (read-only; `--dry-run`).
    pub fn pending_import(
        &self,
        sink: &str,
        cluster: &ClusterName,
        job_id_raw: u64,
    ) -> Result<Option<ImportedRow>, LedgerError> {
        read_pending(self.conn(), sink, cluster, job_id_raw)
    }
}

fn read_pending(
    c: &rusqlite::Connection,
    sink: &str,
    cluster: &ClusterName,
    job_id_raw: u64,
) -> Result<Option<ImportedRow>, LedgerError> {
    let mut stmt = c.prepare_cached(
        "SELECT reported_elapsed_secs, reported_at, completed_at FROM imported_frontiers
         WHERE sink = ?1 AND cluster = ?2 AND job_id_raw = ?3 AND applied_submit IS NULL",
    )?;
    Ok(stmt
        .query_row(params![sink, cluster.as_str(), job_id_raw as i64], |r| {
            Ok(ImportedRow {
                job_id_raw,
                reported_elapsed_secs: r.get(0)?,
                reported_at: r.get(1)?,
                completed_at: r.get(2)?,
            })
        })
        .optional()?)
}

impl Writer<'_> {
    /// Stores an imported row (idempotent).
    pub fn put_import(
        &mut self,
        sink: &str,
        cluster: &ClusterName,
        row: &ImportedRow,
        source: &str,
    ) -> Result<ImportOutcome, LedgerError> {
        let existing: Option<(i64, i64, i64, Option<i64>)> = self
            .tx
            .query_row(
                "SELECT reported_elapsed_secs, reported_at, completed_at, applied_submit FROM imported_frontiers
                 WHERE sink = ?1 AND cluster = ?2 AND job_id_raw = ?3",
                params![sink, cluster.as_str(), row.job_id_raw as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match existing {
            Some((e, a, c, _)) if (e, a, c) == (row.reported_elapsed_secs, row.reported_at, row.completed_at) => {
                return Ok(ImportOutcome::AlreadyThere)
            }
            Some((_, _, _, Some(_))) => return Ok(ImportOutcome::AlreadyApplied),
            _ => {}
        }
        self.tx.execute(
            "INSERT INTO imported_frontiers (sink, cluster, job_id_raw, reported_elapsed_secs, reported_at, completed_at, source, imported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (sink, cluster, job_id_raw) DO UPDATE SET reported_elapsed_secs = excluded.reported_elapsed_secs,
                 reported_at = excluded.reported_at, completed_at = excluded.completed_at, source = excluded.source,
                 imported_at = excluded.imported_at",
            params![sink, cluster.as_str(), row.job_id_raw as i64, row.reported_elapsed_secs, row.reported_at, row.completed_at, source, self.now],
        )?;
        Ok(ImportOutcome::Stored)
    }

    /// The pending imported row of a job, read in this transaction.
    pub fn pending_import(
        &self,
        sink: &str,
        cluster: &ClusterName,
        job_id_raw: u64,
    ) -> Result<Option<ImportedRow>, LedgerError> {
        read_pending(&self.tx, sink, cluster, job_id_raw)
    }

    /// Releases a job's pending imported row: it applies to no run, and the job's runs are
    /// billed in full. Returns whether a pending row was released.
    pub fn release_import(&mut self, sink: &str, cluster: &ClusterName, job_id_raw: u64) -> Result<bool, LedgerError> {
        let n = self.tx.execute(
            "UPDATE imported_frontiers SET applied_submit = 0 WHERE sink = ?1 AND cluster = ?2 AND job_id_raw = ?3 AND applied_submit IS NULL",
            params![sink, cluster.as_str(), job_id_raw as i64],
        )?;
        Ok(n == 1)
    }

    /// Records that a job's imported row now belongs to the run submitted at `submit`.
    pub fn mark_import_applied(
        &self,
        sink: &str,
        cluster: &ClusterName,
        job_id_raw: u64,
        submit: i64,
    ) -> Result<(), LedgerError> {
        self.tx.execute(
            "UPDATE imported_frontiers SET applied_submit = ?4 WHERE sink = ?1 AND cluster = ?2 AND job_id_raw = ?3",
            params![sink, cluster.as_str(), job_id_raw as i64, submit],
        )?;
        Ok(())
    }
}
