//! What `status` shows: cursors, runs by state, quarantine, the last collects.

use serde::Serialize;

use crate::model::UnixTime;

use super::{Ledger, LedgerError, QuarantineRecord, Writer};

#[derive(Debug, Clone, Serialize)]
pub struct CursorRecord {
    pub cluster: String,
    pub position: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    pub cluster: String,
    pub state: String,
    pub runs: u64,
}

/// One collect, as recorded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CollectRunRecord {
    pub cluster: String,
    pub source: String,
    pub slurm_version: Option<String>,
    pub window_start: Option<UnixTime>,
    pub window_end: Option<UnixTime>,
    pub started_at: UnixTime,
    pub finished_at: UnixTime,
    pub runs_seen: u64,
    pub runs_new: u64,
    pub runs_updated: u64,
    pub quarantined: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerStatus {
    pub schema_version: u32,
    pub total_runs: u64,
    pub open_runs: u64,
    pub change_seq: i64,
    pub cursors: Vec<CursorRecord>,
    pub states: Vec<StateCount>,
    /// Of `states`, those this reader does not know (a newer Slurm's): billed as not final.
    pub unknown_states: Vec<StateCount>,
    pub quarantined_total: u64,
    pub quarantined_recent: Vec<QuarantineRecord>,
    pub last_collects: Vec<CollectRunRecord>,
    /// Open runs asked for by job id [`super::UNSETTLED_AFTER`] times or more and still open
    /// (how many, and the most asked).
    pub unsettled_total: u64,
    pub unsettled: Vec<super::UnsettledRun>,
    /// Per sink: deliveries by state, held runs, rejected deliveries.
    pub sinks: Vec<super::SinkStatus>,
}

impl Writer<'_> {
    /// Records one collect's outcome.
    pub fn record_collect(&mut self, r: &CollectRunRecord) -> Result<(), LedgerError> {
        self.tx.execute(
            "INSERT INTO collect_runs (cluster, source, slurm_version, window_start, window_end, started_at, finished_at,
                 runs_seen, runs_new, runs_updated, quarantined, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params![
                r.cluster,
                r.source,
                r.slurm_version,
                r.window_start.map(|t| t.0),
                r.window_end.map(|t| t.0),
                r.started_at.0,
                r.finished_at.0,
                r.runs_seen as i64,
                r.runs_new as i64,
                r.runs_updated as i64,
                r.quarantined as i64,
                r.error
            ],
        )?;
        Ok(())
    }
}

impl Ledger {
    /// Everything `status` shows.
    pub fn status(&self, recent: u64) -> Result<LedgerStatus, LedgerError> {
        let c = self.conn();
        let schema_version: u32 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let (total_runs, open_runs): (i64, i64) =
            c.query_row("SELECT count(*), coalesce(sum(is_final = 0), 0) FROM job_runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let mut stmt = c.prepare("SELECT cluster, position, updated_at FROM collect_cursors ORDER BY cluster")?;
        let cursors = stmt
            .query_map([], |r| {
                Ok(CursorRecord { cluster: r.get(0)?, position: UnixTime(r.get(1)?), updated_at: UnixTime(r.get(2)?) })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt =
            c.prepare("SELECT cluster, state, count(*) FROM job_runs GROUP BY cluster, state ORDER BY cluster, state")?;
        let states = stmt
            .query_map([], |r| {
                Ok(StateCount { cluster: r.get(0)?, state: r.get(1)?, runs: r.get::<_, i64>(2)? as u64 })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let unknown_states = states
            .iter()
            .filter(|s| matches!(crate::model::JobState::from_slurm(&s.state), crate::model::JobState::Other(_)))
            .cloned()
            .collect();
        let quarantined_total: i64 = c.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?;
        let mut stmt = c.prepare(
            "SELECT cluster, source, slurm_version, window_start, window_end, started_at, finished_at, runs_seen, runs_new,
                    runs_updated, quarantined, error FROM collect_runs ORDER BY id DESC LIMIT ?1",
        )?;
        let last_collects = stmt
            .query_map([recent as i64], |r| {
                Ok(CollectRunRecord {
                    cluster: r.get(0)?,
                    source: r.get(1)?,
                    slurm_version: r.get(2)?,
                    window_start: r.get::<_, Option<i64>>(3)?.map(UnixTime),
                    window_end: r.get::<_, Option<i64>>(4)?.map(UnixTime),
                    started_at: UnixTime(r.get(5)?),
                    finished_at: UnixTime(r.get(6)?),
                    runs_seen: r.get::<_, i64>(7)? as u64,
                    runs_new: r.get::<_, i64>(8)? as u64,
                    runs_updated: r.get::<_, i64>(9)? as u64,
                    quarantined: r.get::<_, i64>(10)? as u64,
                    error: r.get(11)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let (unsettled_total, unsettled) = self.unsettled_runs(recent)?;
        Ok(LedgerStatus {
            schema_version,
            unsettled_total,
            unsettled,
            total_runs: total_runs as u64,
            open_runs: open_runs as u64,
            change_seq: self.change_seq()?,
            cursors,
            states,
            unknown_states,
            quarantined_total: quarantined_total as u64,
            quarantined_recent: self.quarantined(recent)?,
            last_collects,
            sinks: self.sink_status(recent)?,
        })
    }
}
