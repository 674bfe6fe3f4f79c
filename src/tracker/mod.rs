//! A drop-in switch from Parallel Works' `slurm-tracker`: pure readers of what a site already
//! has, and the rule that turns the tracker's state into slurm-ledger's delivery frontier.
//!
//! # What is imported, and why
//! A site running slurm-tracker has three things slurm-ledger needs to take over without billing
//! anything twice or dropping anything:
//!
//! - **its command line** as the crontab has it ([`flags`]): `--org` becomes the ACTIVATE sink's
//!   organization; `--config` and `--state-file` say where the other two files are (relative
//!   paths are relative to the cron job's working directory); `--api-server`/`--api-key` are
//!   the platform and credential (the key is a [`crate::secret::Secret`] and never printed);
//! - **its `config.json`** ([`config_json`]): the partition → SKU and account → allocation
//!   mapping, rendered as the `[sinks.activate]` TOML snippet of slurm-ledger's config;
//! - **its state DB** `slurm_job_states.db` ([`state_db`], opened read-only): per JobIDRaw, how
//!   many seconds of ElapsedRaw the tracker already reported. [`imported_frontier`] turns one
//!   row and one run from our ledger into the instant up to which that run is already billed,
//!   so the first slurm-ledger delivery starts where the tracker stopped.
//!
//! Everything here is pure or read-only: nothing writes the tracker's files, and no clock is
//! read. The caller stops the tracker's cron entry first (a tracker still running would keep
//! billing past the imported frontier).
//!
//! # What the tracker's state means (from its source, `internal/tracker/tracker.go`)
//! - running job: it posted `ElapsedRaw − last_reported_elapsed` core-seconds and saved
//!   `last_reported_elapsed = ElapsedRaw`, `last_reported_at = Start + ElapsedRaw`;
//! - completed job: it posted the remainder and saved `last_reported_elapsed = ElapsedRaw`,
//!   `last_reported_at = End`, `completed_at = now()` (wall clock, not End; contracts §1.3 #7);
//! - a report with no new time (`delta ≤ 0`) writes nothing, so a job whose final poll added no
//!   time keeps a "running" row forever, as does a job that ended while the tracker was down
//!   (#1) or ended in a state the tracker ignores, e.g. `OUT_OF_MEMORY` (#3).
//!
//! So in every case the tracker billed exactly `last_reported_elapsed` seconds of ElapsedRaw,
//! which in slurm-ledger's billable span `[start, start + ElapsedRaw)` is the frontier
//! `start + last_reported_elapsed`.
//!
//! # Known limits of the import (not detectable from the files)
//! - `--dry-run` wrote state without posting (#2): such rows claim billing that never happened.
//!   The import cannot tell; a site that ever ran `--dry-run` on its real state file must say so.
//! - "POST then write state" is not atomic (#6): after a crash the platform may hold one slice
//!   more than the row says; that slice is billed again unless reconciled on the platform.
//! - The row has no cluster (#5): the caller offers only runs of the cluster the tracker ran on.

pub mod config_json;
pub mod flags;
pub mod seeds;
pub mod state_db;

pub use config_json::{ConfigJsonError, MappingProblem, TrackerMapping};
pub use flags::{FlagsError, TrackerFlags};
pub use seeds::TrackerSeeds;
pub use state_db::{Rejected, StateDb, StateDbError, StateRow, TrackerJobState};

/// One run of a job as our ledger has it: the facts the frontier rule compares with the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    /// Start, Unix seconds; `0` or less when the run has not started.
    pub start: i64,
    /// ElapsedRaw in seconds (suspended time excluded, as Slurm counts it).
    pub elapsed_secs: i64,
    /// The run will not change any more (it ended or was requeued).
    pub is_final: bool,
    /// End, Unix seconds, when the ledger knows it (final runs). `None` skips the exact End check
    /// for rows the tracker marked completed, leaving only the weaker "End is not before
    /// start + elapsed" check.
    pub end: Option<i64>,
}

/// The part of a run the tracker already billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedFrontier {
    /// Unix seconds: the instant up to which the tracker already billed this run, in the
    /// ledger's billable span `[start, start + elapsed)`.
    pub reported_until: i64,
    /// The run is final and the tracker billed all of it: nothing is left to deliver.
    pub complete: bool,
}

/// Why a tracker row gives no frontier for a run. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotImported {
    #[error("the slurm-tracker row is invalid ({0}); it gives no frontier: check the job on the platform before slurm-ledger bills it")]
    InvalidRow(String),
    #[error("the ledger's run has not started, so the slurm-tracker row (which billed {reported_secs} s) belongs to another run of this job id")]
    RunNotStarted { reported_secs: i64 },
    #[error(
        "slurm-tracker billed {reported_secs} s but this run has only {run_elapsed_secs} s of ElapsedRaw: the row belongs to another run \
         (an earlier run of a requeued job, a reused job id, or another cluster); try the job's other runs"
    )]
    MoreThanRun { reported_secs: i64, run_elapsed_secs: i64 },
    #[error(
        "the slurm-tracker row implies this job started at {implied_start} but the ledger's run started at {run_start}: the row belongs to another run \
         (requeue, reused job id, another cluster) or the tracker host parsed sacct times in another time zone (contracts §1.3 #10)"
    )]
    StartMismatch { implied_start: i64, run_start: i64 },
    #[error(
        "slurm-tracker recorded this job as ended, but the ledger's run is still running: collect again if the ledger is behind; \
         otherwise the row belongs to an earlier run"
    )]
    TrackerSawEnd,
    #[error(
        "slurm-tracker recorded End = {tracker_end} but the ledger's run ends at {run_end}: the row belongs to another run \
         (requeue, reused job id, another cluster) or the tracker host parsed sacct times in another time zone"
    )]
    EndMismatch { tracker_end: i64, run_end: i64 },
}

/// Decides the frontier the tracker left for one run of a job, or why its row does not apply.
///
/// The tracker keys its row by JobIDRaw only, so the row belongs to *the latest run the tracker
/// saw*; the caller offers each of the job's runs (newest first, see [`pick_run`]) and this
/// function accepts exactly the run the row describes. Rules, in order:
///
/// 1. A row with negative or zero times is refused ([`NotImported::InvalidRow`]); the reader
///    already rejects these, this keeps the function total.
/// 2. A run that has not started cannot have been billed ([`NotImported::RunNotStarted`]).
/// 3. A row the tracker marked completed (`completed_at > 0`) describes a run that ended; if the
///    ledger's run is still going, the ledger is behind or the row is another run's
///    ([`NotImported::TrackerSawEnd`]). Never imported as complete: that would stop billing a
///    live run.
/// 4. A row that billed more seconds than the run has is another run's
///    ([`NotImported::MoreThanRun`]; the requeue case of contracts §1.3 #4, whose new run
///    restarts ElapsedRaw from zero).
/// 5. The row must be this run's by its instants. Running rows saved `Start + ElapsedRaw`, so
///    `last_reported_at − last_reported_elapsed` must equal the run's start exactly. Completed
///    rows saved `End`: it must equal the run's End when the ledger knows it, and can never be
///    before `start + elapsed` (suspended time only makes End later, contracts §1.3 #8). This
///    is what tells a requeued job's runs apart when their ElapsedRaw alone cannot.
/// 6. The frontier is `start + last_reported_elapsed` for both kinds of row: the tracker billed
///    exactly that many seconds of ElapsedRaw. It is **not** End for completed rows: a run that
///    was suspended has `End > start + elapsed`, and a frontier past the ledger's billable span
///    would hold the run in the planner instead of closing it.
/// 7. `complete` only when the run is final and the frontier reaches `start + elapsed`. A run
///    the tracker left "running" (it ended while the tracker was down, or in a state it ignores)
///    gets its remainder billed by slurm-ledger; a completed row whose ElapsedRaw is smaller than
///    the ledger's (Slurm re-accounted after the tracker finished) likewise.
///
/// The requeue case where the tracker went on with the new run (#4): once the new run's
/// ElapsedRaw passed the old run's, the tracker billed the difference and saved the new run's
/// `Start + ElapsedRaw`. The row then matches the new run with the frontier
/// `start + last_reported_elapsed`, and the old run matches nothing, so slurm-ledger bills the
/// old run whole. Per run the split differs from the tracker's windows, but the total billed
/// over both runs is exact: the tracker billed `last_reported_elapsed` seconds in all.
pub fn imported_frontier(row: &TrackerJobState, run: &RunFacts) -> Result<ImportedFrontier, NotImported> {
    // 1. Only rows the reader would accept.
    if row.last_reported_elapsed < 0 || row.last_reported_at <= 0 || row.completed_at < 0 {
        return Err(NotImported::InvalidRow(format!(
            "last_reported_elapsed={}, last_reported_at={}, completed_at={}",
            row.last_reported_elapsed, row.last_reported_at, row.completed_at
        )));
    }
    let reported = row.last_reported_elapsed;
    // 2. Slurm prints Unknown (read as 0 by the tracker and as None by the ledger) until a run starts.
    if run.start <= 0 || run.elapsed_secs < 0 {
        return Err(NotImported::RunNotStarted { reported_secs: reported });
    }
    let completed = row.completed_at > 0;
    // 3. The tracker saw this job end; a running run of ours is not that run (yet).
    if completed && !run.is_final {
        return Err(NotImported::TrackerSawEnd);
    }
    // 4. More billed than this run ever had: another run's row.
    if reported > run.elapsed_secs {
        return Err(NotImported::MoreThanRun { reported_secs: reported, run_elapsed_secs: run.elapsed_secs });
    }
    // 5. The row's instants must be this run's.
    if completed {
        match run.end {
            Some(end) if end != row.last_reported_at => {
                return Err(NotImported::EndMismatch { tracker_end: row.last_reported_at, run_end: end });
            }
            // Without a known End: End ≥ start + elapsed for the run the row describes.
            None if row.last_reported_at < run.start.saturating_add(run.elapsed_secs) => {
                return Err(NotImported::EndMismatch {
                    tracker_end: row.last_reported_at,
                    run_end: run.start.saturating_add(run.elapsed_secs),
                });
            }
            _ => {}
        }
    } else {
        let implied_start = row.last_reported_at - reported;
        if implied_start != run.start {
            return Err(NotImported::StartMismatch { implied_start, run_start: run.start });
        }
    }
    // 6. and 7.
    let reported_until = run.start + reported;
    let complete = run.is_final && reported == run.elapsed_secs;
    Ok(ImportedFrontier { reported_until, complete })
}

/// Applies [`imported_frontier`] to a job's runs in the order given (pass them newest first: the
/// row belongs to the latest run the tracker saw) and returns the first run that accepts the row,
/// as its index and frontier; otherwise the reason each run gave, in the same order.
///
/// At most one run is given the frontier: giving it to two would count the tracker's billing twice.
pub fn pick_run(
    row: &TrackerJobState,
    runs_newest_first: &[RunFacts],
) -> Result<(usize, ImportedFrontier), Vec<NotImported>> {
    let mut reasons = Vec::with_capacity(runs_newest_first.len());
    for (i, run) in runs_newest_first.iter().enumerate() {
        match imported_frontier(row, run) {
            Ok(f) => return Ok((i, f)),
            Err(r) => reasons.push(r),
        }
    }
    Err(reasons)
}

#[cfg(test)]
mod tests;
