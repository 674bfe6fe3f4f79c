//! Runs' allocation detail (table `run_allocations`, migration 0009): asked of slurmctld once per
//! run, for the sinks that report it, while slurmctld still knows the run. A run asked for too
//! late gets a row without detail and is not asked again. Candidates are found by following
//! `change_seq` with a per-cluster cursor (`allocation_cursors`), so no pass scans the table.

use rusqlite::OptionalExtension;

use crate::model::{Allocation, ClusterName, JobKey, UnixTime};

use super::{Ledger, LedgerError, Writer};

/// A run that ended longer ago than this is not asked for: slurmctld forgot it (MinJobAge is
/// minutes on most sites).
pub const ALLOCATION_RECENT_SECS: i64 = 86_400;

impl Ledger {
    /// A run's stored allocation detail (`None`: never asked, or asked too late).
    pub fn allocation(&self, key: &JobKey) -> Result<Option<Allocation>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT detail FROM run_allocations WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3",
        )?;
        let text: Option<Option<String>> = stmt
            .query_row(rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], |r| r.get(0))
            .optional()?;
        match text.flatten() {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| LedgerError::Corrupt { key: key.to_string(), reason: format!("allocation detail: {e}") }),
        }
    }

    /// Whether a run was asked for already (with or without an answer).
    pub fn allocation_asked(&self, key: &JobKey) -> Result<bool, LedgerError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT 1 FROM run_allocations WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3")?;
        Ok(stmt
            .query_row(rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Runs of `cluster` to ask the allocation of: changed since the cluster's cursor, started on
    /// nodes, not ended before `ended_since`, never asked; at most `limit`, in `change_seq`
    /// order (one range scan of `job_runs_by_change` from the cursor). Also the `change_seq` the
    /// cursor may move to once they are asked (the last run returned when `limit` cut the list,
    /// else the ledger's latest), `None` when nothing changed since the cursor.
    pub fn allocation_candidates(
        &self,
        cluster: &ClusterName,
        ended_since: UnixTime,
        limit: u64,
    ) -> Result<(Vec<JobKey>, Option<i64>), LedgerError> {
        let cursor: i64 = self
            .conn()
            .query_row("SELECT change_seq FROM allocation_cursors WHERE cluster = ?1", [cluster.as_str()], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let mut stmt = self.conn().prepare_cached(
            "SELECT j.job_id_raw, j.submit, j.change_seq FROM job_runs j \
             WHERE j.change_seq > ?2 AND j.cluster = ?1 AND j.start IS NOT NULL AND j.nodelist <> '' \
               AND (j.end IS NULL OR j.end >= ?3) \
               AND NOT EXISTS (SELECT 1 FROM run_allocations a WHERE a.cluster = j.cluster \
                               AND a.job_id_raw = j.job_id_raw AND a.submit = j.submit) \
             ORDER BY j.change_seq LIMIT ?4",
        )?;
        let mut keys = Vec::new();
        let mut last = None;
        let mut rows = stmt.query(rusqlite::params![cluster.as_str(), cursor, ended_since.0, limit as i64])?;
        while let Some(r) = rows.next()? {
            last = Some(r.get::<_, i64>(2)?);
            let raw: i64 = r.get(0)?;
            keys.push(JobKey { cluster: cluster.clone(), job_id_raw: raw as u64, submit: UnixTime(r.get(1)?) });
        }
        drop(rows);
        if (keys.len() as u64) < limit {
            // Every run changed so far was considered: the cursor may move to the ledger's end.
            let seq = self.change_seq()?;
            last = (seq > cursor).then_some(seq);
        }
        Ok((keys, last))
    }
}

impl Writer<'_> {
    /// Stores what an ask found (`found`: a detail per run, replacing any) and the runs it asked
    /// for that slurmctld did not know (`gone`: a row without detail, never replacing one), and
    /// moves the cluster's cursor to `cursor` (never backwards).
    pub fn store_allocations(
        &mut self,
        found: &[(JobKey, Allocation)],
        gone: &[JobKey],
        cursor: Option<(&ClusterName, i64)>,
    ) -> Result<(), LedgerError> {
        for (key, a) in found {
            let text = serde_json::to_string(a).map_err(|e| LedgerError::Corrupt {
                key: key.to_string(),
                reason: format!("allocation detail: {e}"),
            })?;
            self.tx.execute(
                "INSERT OR REPLACE INTO run_allocations (cluster, job_id_raw, submit, asked_at, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0, self.now, text],
            )?;
        }
        for key in gone {
            self.tx.execute(
                "INSERT OR IGNORE INTO run_allocations (cluster, job_id_raw, submit, asked_at, detail) \
                 VALUES (?1, ?2, ?3, ?4, NULL)",
                rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0, self.now],
            )?;
        }
        if let Some((cluster, seq)) = cursor {
            self.tx.execute(
                "INSERT INTO allocation_cursors (cluster, change_seq) VALUES (?1, ?2) \
                 ON CONFLICT(cluster) DO UPDATE SET change_seq = max(change_seq, excluded.change_seq)",
                rusqlite::params![cluster.as_str(), seq],
            )?;
        }
        Ok(())
    }
}
