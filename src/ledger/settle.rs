//! Open runs settled by job id: the runs a collect asks slurmdbd for by id because its window
//! did not show them, and how often each was already asked (table `settle_asks`).
//!
//! A run asked for and still open is asked again after a delay that doubles with each ask
//! (5 minutes, 10, 20, … up to a day), least recently asked first. So a run slurmdbd never
//! settles (purged while open, a job held pending) costs one query a day, not one a collect,
//! and never keeps newer runs from being asked. `status` lists runs asked
//! [`UNSETTLED_AFTER`] times or more.

use rusqlite::OptionalExtension;

use crate::model::{ClusterName, UnixTime};

use super::{Ledger, LedgerError, Writer};

/// Runs asked for this often and still open are listed by `status`.
pub const UNSETTLED_AFTER: u32 = 5;

/// A run of the ledger not in a final state, with how often it was asked for by job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRun {
    pub job_id_raw: u64,
    pub submit: UnixTime,
    pub asks: u32,
    pub last_asked: Option<UnixTime>,
}

impl OpenRun {
    /// Whether it is due to be asked for (again) at `now`.
    pub fn due(&self, now: UnixTime) -> bool {
        self.last_asked.map_or(true, |t| now.0 - t.0 >= retry_delay_secs(self.asks))
    }
}

/// Seconds before a run already asked for `asks` times is asked again.
pub fn retry_delay_secs(asks: u32) -> i64 {
    match asks {
        0 => 0,
        n => (300i64 << (n - 1).min(9)).min(86_400),
    }
}

/// An open run asked for [`UNSETTLED_AFTER`] times or more, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnsettledRun {
    pub cluster: String,
    pub job_id_raw: u64,
    pub submit: UnixTime,
    pub asks: u32,
    pub last_asked: UnixTime,
}

impl Ledger {
    /// The open runs of `cluster`, least recently asked for first (never asked before all),
    /// then oldest submit first.
    pub fn open_runs(&self, cluster: &ClusterName) -> Result<Vec<OpenRun>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT r.job_id_raw, r.submit, coalesce(a.asks, 0), a.last_asked
             FROM job_runs r
             LEFT JOIN settle_asks a ON a.cluster = r.cluster AND a.job_id_raw = r.job_id_raw AND a.submit = r.submit
             WHERE r.cluster = ?1 AND r.is_final = 0
             ORDER BY a.last_asked IS NOT NULL, a.last_asked, r.submit, r.job_id_raw",
        )?;
        let rows = stmt.query_map([cluster.as_str()], |r| {
            Ok(OpenRun {
                job_id_raw: r.get::<_, i64>(0)? as u64,
                submit: UnixTime(r.get(1)?),
                asks: r.get(2)?,
                last_asked: r.get::<_, Option<i64>>(3)?.map(UnixTime),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Open runs asked for [`UNSETTLED_AFTER`] times or more, most asked first.
    pub fn unsettled_runs(&self, limit: u64) -> Result<(u64, Vec<UnsettledRun>), LedgerError> {
        const OPEN: &str = "FROM settle_asks a JOIN job_runs r
             ON r.cluster = a.cluster AND r.job_id_raw = a.job_id_raw AND r.submit = a.submit AND r.is_final = 0
             WHERE a.asks >= ?1";
        let c = self.conn();
        let total: i64 = c.query_row(&format!("SELECT count(*) {OPEN}"), [UNSETTLED_AFTER], |r| r.get(0))?;
        let mut stmt = c.prepare(&format!(
            "SELECT a.cluster, a.job_id_raw, a.submit, a.asks, a.last_asked {OPEN} ORDER BY a.asks DESC, a.submit LIMIT ?2"
        ))?;
        let rows = stmt.query_map(rusqlite::params![UNSETTLED_AFTER, limit as i64], |r| {
            Ok(UnsettledRun {
                cluster: r.get(0)?,
                job_id_raw: r.get::<_, i64>(1)? as u64,
                submit: UnixTime(r.get(2)?),
                asks: r.get(3)?,
                last_asked: UnixTime(r.get(4)?),
            })
        })?;
        Ok((total as u64, rows.collect::<Result<_, _>>()?))
    }

    /// How often `(job_id_raw, submit)` of `cluster` was asked for (tests and diagnostics).
    pub fn settle_asks(&self, cluster: &ClusterName, job_id_raw: u64, submit: UnixTime) -> Result<u32, LedgerError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT asks FROM settle_asks WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3",
                rusqlite::params![cluster.as_str(), job_id_raw as i64, submit.0],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}

impl Writer<'_> {
    /// After the answer to an ask by job id is stored: counts one more ask for each of `keys`
    /// still open, and forgets every run of `cluster` that is no longer open.
    pub fn record_settle_asks(&mut self, cluster: &ClusterName, keys: &[(u64, UnixTime)]) -> Result<(), LedgerError> {
        let mut ask = self.tx.prepare_cached(
            "INSERT INTO settle_asks (cluster, job_id_raw, submit, asks, last_asked)
             SELECT ?1, ?2, ?3, 1, ?4 WHERE EXISTS
                 (SELECT 1 FROM job_runs WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3 AND is_final = 0)
             ON CONFLICT (cluster, job_id_raw, submit) DO UPDATE SET asks = asks + 1, last_asked = excluded.last_asked",
        )?;
        for (id, submit) in keys {
            ask.execute(rusqlite::params![cluster.as_str(), *id as i64, submit.0, self.now])?;
        }
        drop(ask);
        self.tx.execute(
            "DELETE FROM settle_asks WHERE cluster = ?1 AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.cluster = settle_asks.cluster
                 AND r.job_id_raw = settle_asks.job_id_raw AND r.submit = settle_asks.submit AND r.is_final = 0)",
            [cluster.as_str()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_back_off_to_a_day() {
        let delays: Vec<i64> = (0..12).map(retry_delay_secs).collect();
        assert_eq!(delays[..5], [0, 300, 600, 1200, 2400]);
        assert_eq!(delays[10..], [86_400, 86_400]);
        let run = |asks, last: Option<i64>| OpenRun {
            job_id_raw: 1,
            submit: UnixTime(0),
            asks,
            last_asked: last.map(UnixTime),
        };
        assert!(run(0, None).due(UnixTime(10)));
        assert!(!run(2, Some(1000)).due(UnixTime(1599)));
        assert!(run(2, Some(1000)).due(UnixTime(1600)));
    }
}
