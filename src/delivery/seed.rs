//! Seeds: marks handed over by a tool that reported before slurm-ledger (slurm-tracker), stored
//! per consumer and job by `migrate` (`imported_frontiers`), applied by the engine to the first
//! never-planned run of the job whose facts match, in the transaction that stores that run's mark.
//!
//! The engine does not know the tool: the rule that matches a seed to a run is a [`SeedRule`] the
//! caller hands to a plan pass (see `pass`). A seed is taken once; a run that does not match yet
//! is held, never billed from its start.

use crate::ledger::{ImportedRow, RunMark};
use crate::model::JobRun;

/// Decides whether a stored seed describes a run.
pub trait SeedRule {
    /// The run's mark if the seed is this run's (the run then starts where the tool stopped), or
    /// why the run must wait (held with this reason until a run takes the seed or an admin
    /// releases it).
    fn apply(&self, seed: &ImportedRow, run: &JobRun) -> Result<RunMark, String>;
}
