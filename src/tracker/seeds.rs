//! slurm-tracker's state rows as seeds of the delivery engine: `migrate slurm-tracker` stores one
//! per job (`imported_frontiers`), and [`TrackerSeeds`] is the rule the engine is handed to match
//! a row to the first never-planned run of its job ([`super::imported_frontier`]).

use crate::delivery::seed::SeedRule;
use crate::ledger::{ImportedRow, RunMark};
use crate::model::{JobRun, JobState};

use super::{imported_frontier, RunFacts, TrackerJobState};

/// The rule matching slurm-tracker's rows to runs.
pub struct TrackerSeeds;

impl SeedRule for TrackerSeeds {
    fn apply(&self, row: &ImportedRow, job: &JobRun) -> Result<RunMark, String> {
        let state = TrackerJobState {
            job_id: row.job_id_raw,
            last_reported_elapsed: row.reported_elapsed_secs,
            last_reported_at: row.reported_at,
            // Not part of the rule (the tracker's floating-point sum, kept for reconciliation).
            total_core_hours: 0.0,
            completed_at: row.completed_at,
        };
        // A requeued run never changes again either.
        let settled = job.state.is_final() || job.state == JobState::Requeued;
        let facts = RunFacts {
            start: job.start.map_or(0, |t| t.0),
            elapsed_secs: i64::try_from(job.elapsed_secs).unwrap_or(i64::MAX),
            is_final: settled,
            end: job.end.filter(|_| settled).map(|t| t.0),
        };
        match imported_frontier(&state, &facts) {
            Ok(f) => Ok(RunMark { mark: Some(f.reported_until), done: f.complete, hold: None }),
            Err(reason) if !settled => Err(format!("waiting for the run to match slurm-tracker's state: {reason}")),
            // A settled run that does not match: the row may belong to another run of the job (a
            // requeue; that run takes it when planned, and this one is then billed whole) or the
            // tracker's clock was off. Never guess: hold until a run takes the row or an admin
            // releases it.
            Err(reason) => Err(format!(
                "slurm-tracker's state for job {} does not match this run ({reason}); if the tracker did not bill this run, \
                 `slurm-ledger migrate slurm-tracker --release {}` bills it in full",
                job.key.job_id_raw, job.key.job_id_raw
            )),
        }
    }
}
