//! Quarantine: records that could not be read, kept with their text and the reason.
//!
//! The same raw text seen again (an overlapping window re-reads it) bumps `times_seen` instead
//! of adding a row. Collect never deletes from here.

use crate::model::{ClusterName, UnixTime};

use super::{Ledger, LedgerError, Writer};

/// One quarantined record as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuarantineRecord {
    pub id: i64,
    pub cluster: String,
    /// Where it came from: `sacct`, `file:<path>`…
    pub source: String,
    pub line: u64,
    pub raw: String,
    pub reason: String,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    pub times_seen: u64,
}

impl Writer<'_> {
    /// Stores an unreadable record. Returns true when it was not already quarantined.
    pub fn quarantine(
        &mut self,
        cluster: &ClusterName,
        source: &str,
        line: u64,
        raw: &str,
        reason: &str,
    ) -> Result<bool, LedgerError> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO quarantine (cluster, source, line, raw, reason, first_seen, last_seen, times_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)
             ON CONFLICT (cluster, raw) DO UPDATE SET last_seen = excluded.last_seen, times_seen = times_seen + 1,
                 reason = excluded.reason, source = excluded.source, line = excluded.line
             RETURNING times_seen",
        )?;
        let times: i64 = stmt
            .query_row(rusqlite::params![cluster.as_str(), source, line as i64, raw, reason, self.now], |r| r.get(0))?;
        Ok(times == 1)
    }
}

impl Ledger {
    /// Quarantined records, newest first.
    pub fn quarantined(&self, limit: u64) -> Result<Vec<QuarantineRecord>, LedgerError> {
        let mut stmt = self.conn().prepare(
            "SELECT id, cluster, source, line, raw, reason, first_seen, last_seen, times_seen
             FROM quarantine ORDER BY last_seen DESC, id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(QuarantineRecord {
                id: r.get(0)?,
                cluster: r.get(1)?,
                source: r.get(2)?,
                line: r.get::<_, i64>(3)? as u64,
                raw: r.get(4)?,
                reason: r.get(5)?,
                first_seen: UnixTime(r.get(6)?),
                last_seen: UnixTime(r.get(7)?),
                times_seen: r.get::<_, i64>(8)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
