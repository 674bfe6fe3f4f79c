//! One pass: collect every cluster (one `sacct` query each), then plan and execute every consumer.
//! What `run`, `demo` and the coming daemon repeat; it returns what happened and prints nothing.
//!
//! A failing cluster does not stop the others, nor the delivery of what the ledger already holds;
//! a failing sink does not stop the other sinks' delivery.

use std::time::Duration;

use crate::collect::{collect_cluster, CollectReport, Since, WindowPolicy};
use crate::config::SlurmSettings;
use crate::delivery::consumer::Consumer;
use crate::delivery::engine::{self, ExecReport, PlanReport};
use crate::ledger::Ledger;
use crate::model::{ClusterName, UnixTime};
use crate::slurm::runner::Runner;
use crate::slurm::source::{SlurmSource, SourceError};
use crate::tracker::TrackerSeeds;

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("asking sacct for its version and fields: {0}")]
    Detect(SourceError),
    #[error("finding the local cluster's name: {0}")]
    LocalCluster(SourceError),
}

/// What a pass collects: which clusters, from where.
pub struct CollectPlan<'a> {
    pub runner: &'a dyn Runner,
    pub slurm: &'a SlurmSettings,
    /// Empty: the local cluster, as `scontrol show config` names it.
    pub clusters: Vec<ClusterName>,
    pub since: Since,
}

/// What one cluster's collect did.
#[derive(Debug)]
pub enum ClusterOutcome {
    Collected(CollectReport),
    Failed { cluster: ClusterName, error: String },
}

impl ClusterOutcome {
    /// The collect failed, or asking for open runs by job id did.
    pub fn failed(&self) -> bool {
        match self {
            Self::Collected(r) => r.settled.as_ref().is_some_and(|s| s.error.is_some()),
            Self::Failed { .. } => true,
        }
    }
}

/// What one consumer's plan and execute did.
#[derive(Debug, Clone)]
pub struct SinkOutcome {
    pub sink: String,
    pub plan: PlanReport,
    pub exec: ExecReport,
    /// Why planning or sending stopped; what it did until then is above.
    pub error: Option<SinkFailure>,
}

/// Why a consumer's pass stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkFailure {
    /// Its terms changed after items were planned on the old ones: nothing was planned or sent
    /// until the operator restores them or accepts the change.
    TermsChanged { message: String, now: String },
    /// The ledger (or the engine) failed.
    Other(String),
}

impl std::fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TermsChanged { message, .. } | Self::Other(message) => f.write_str(message),
        }
    }
}

impl SinkOutcome {
    /// Nothing got through although there was work: the platform is down or refuses the key.
    pub fn stalled(&self) -> bool {
        let e = &self.exec;
        e.delivered + e.found_already_delivered == 0 && e.retry + e.unknown > 0
    }

    /// A delivery was rejected, nothing got through, or the pass stopped with an error.
    pub fn failed(&self) -> bool {
        self.exec.rejected > 0 || self.stalled() || self.error.is_some()
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub clusters: Vec<ClusterOutcome>,
    pub sinks: Vec<SinkOutcome>,
}

impl PassReport {
    /// Any cluster or sink failed (exit status 1).
    pub fn failed(&self) -> bool {
        self.clusters.iter().any(ClusterOutcome::failed) || self.sinks.iter().any(SinkOutcome::failed)
    }
}

/// Collects each cluster of the plan; a failing cluster does not stop the others.
pub fn collect_all(
    ledger: &mut Ledger,
    plan: &CollectPlan<'_>,
    now: UnixTime,
) -> Result<Vec<ClusterOutcome>, PassError> {
    let source = SlurmSource::new(plan.runner, Duration::from_secs(plan.slurm.timeout_secs));
    let info = source.detect().map_err(PassError::Detect)?;
    tracing::info!(version = %info.version, fields = info.fields.len(), "Slurm detected");
    let clusters = if plan.clusters.is_empty() {
        vec![source.local_cluster().map_err(PassError::LocalCluster)?]
    } else {
        plan.clusters.clone()
    };
    let policy =
        WindowPolicy { overlap_secs: plan.slurm.overlap_secs, initial_lookback_secs: plan.slurm.initial_lookback_secs };
    let mut out = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        match collect_cluster(&source, &info, ledger, &cluster, plan.since, now, policy) {
            Ok(report) => {
                if let Some(e) = report.settled.as_ref().and_then(|s| s.error.as_ref()) {
                    tracing::error!(cluster = %cluster, error = %e, "asking sacct for open runs by job id failed");
                }
                out.push(ClusterOutcome::Collected(report));
            }
            Err(e) => {
                tracing::error!(cluster = %cluster, error = %e, "collect failed");
                out.push(ClusterOutcome::Failed { cluster, error: e.to_string() });
            }
        }
    }
    Ok(out)
}

/// Plans and executes each consumer (up to `limit` sends each); one that fails does not stop the
/// others. slurm-tracker's seeds, if any were imported, are matched to runs as they are planned.
pub fn deliver_all(ledger: &mut Ledger, consumers: &[Consumer], limit: u64, now: UnixTime) -> Vec<SinkOutcome> {
    let mut out = Vec::with_capacity(consumers.len());
    for c in consumers {
        let mut o =
            SinkOutcome { sink: c.name.clone(), plan: PlanReport::default(), exec: ExecReport::default(), error: None };
        let result = engine::plan(ledger, c, Some(&TrackerSeeds), now)
            .map(|p| o.plan = p)
            .and_then(|()| engine::execute(ledger, c, now, limit))
            .map(|e| o.exec = e);
        if let Err(e) = result {
            tracing::error!(sink = %c.name, error = %e, "delivery stopped");
            o.error = Some(match &e {
                engine::EngineError::TermsChanged { now, .. } => {
                    SinkFailure::TermsChanged { message: e.to_string(), now: now.clone() }
                }
                _ => SinkFailure::Other(e.to_string()),
            });
        }
        out.push(o);
    }
    out
}

/// One pass: collect every cluster, then deliver to every consumer (even when a cluster failed:
/// what the ledger holds is still owed).
pub fn run(
    ledger: &mut Ledger,
    collect: &CollectPlan<'_>,
    consumers: &[Consumer],
    limit: u64,
    now: UnixTime,
) -> Result<PassReport, PassError> {
    let clusters = collect_all(ledger, collect, now)?;
    let sinks = deliver_all(ledger, consumers, limit, now);
    Ok(PassReport { clusters, sinks })
}
