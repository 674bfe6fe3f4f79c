//! The pass's side tasks, for consumers that want more of Slurm than the ledger holds (see
//! `Sender::wants_allocations`, `Sender::wants_node_states`): runs' allocation detail, asked of
//! slurmctld after the collect and before delivery (so a start goes out with it), and the node
//! states, read once per cluster after delivery and handed to each consumer that reports them.
//! Neither is asked when no consumer wants it. A failure is logged and counted here; it never
//! holds up deliveries (a run without detail is reported with what sacct said).

use std::time::Duration;

use crate::collect::allocations::{fetch_new_allocations, AllocReport};
use crate::delivery::consumer::Consumer;
use crate::ledger::Ledger;
use crate::model::{ClusterName, UnixTime};
use crate::slurm::source::{SlurmSource, SlurmVersion};

use super::{ClusterOutcome, CollectPlan};

/// What the side tasks of a pass did.
#[derive(Debug, Default)]
pub struct SideReport {
    /// Per collected cluster, the allocation ask (or why it failed).
    pub allocations: Vec<(ClusterName, Result<AllocReport, String>)>,
    /// Per consumer and cluster, the node states reported.
    pub node_states: Vec<NodeStatesOutcome>,
}

/// One consumer's node-state report of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatesOutcome {
    pub sink: String,
    pub cluster: ClusterName,
    /// Nodes read (0 when reading failed).
    pub nodes: usize,
    pub error: Option<String>,
}

impl SideReport {
    /// Failed asks and reports (each also logged).
    pub fn failures(&self) -> usize {
        self.allocations.iter().filter(|(_, r)| r.is_err()).count()
            + self.node_states.iter().filter(|o| o.error.is_some()).count()
    }
}

/// Asks for the allocation detail of the runs that started, in each cluster collected, when a
/// consumer wants it.
pub fn ask_allocations(
    ledger: &mut Ledger,
    plan: &CollectPlan<'_>,
    clusters: &[ClusterOutcome],
    consumers: &[Consumer],
    now: UnixTime,
) -> Vec<(ClusterName, Result<AllocReport, String>)> {
    if !consumers.iter().any(|c| c.sender.wants_allocations()) {
        return Vec::new();
    }
    let source = SlurmSource::new(plan.runner, Duration::from_secs(plan.slurm.timeout_secs));
    let mut out = Vec::new();
    for c in clusters {
        let ClusterOutcome::Collected(r) = c else { continue };
        let Some(version) = r.slurm_version.as_deref().and_then(SlurmVersion::parse) else { continue };
        let result = fetch_new_allocations(&source, version, ledger, &r.cluster, now).map_err(|e| e.to_string());
        match &result {
            Ok(a) if !a.problems.is_empty() => {
                tracing::warn!(cluster = %r.cluster, problems = ?a.problems, "some allocation records of scontrol were not read")
            }
            Err(e) => {
                tracing::warn!(cluster = %r.cluster, error = %e, "asking scontrol for allocation detail failed; runs are reported with what sacct says")
            }
            Ok(_) => {}
        }
        out.push((r.cluster.clone(), result));
    }
    out
}

/// Reads each cluster's node states (one `sinfo`) when a consumer reports them, and hands them
/// to each such consumer.
pub fn report_node_states(
    plan: &CollectPlan<'_>,
    clusters: &[ClusterOutcome],
    consumers: &[&Consumer],
) -> Vec<NodeStatesOutcome> {
    let wanting: Vec<&&Consumer> = consumers.iter().filter(|c| c.sender.wants_node_states()).collect();
    if wanting.is_empty() {
        return Vec::new();
    }
    let source = SlurmSource::new(plan.runner, Duration::from_secs(plan.slurm.timeout_secs));
    let mut out = Vec::new();
    for c in clusters {
        let cluster = match c {
            ClusterOutcome::Collected(r) => &r.cluster,
            ClusterOutcome::Failed { cluster, .. } => cluster,
        };
        let read = source.node_states(cluster);
        for consumer in &wanting {
            let (nodes, error) = match &read {
                Ok(nodes) => (nodes.len(), consumer.sender.node_states(cluster, nodes).err()),
                Err(e) => (0, Some(format!("reading the node states: {e}"))),
            };
            if let Some(e) = &error {
                tracing::warn!(sink = %consumer.name, cluster = %cluster, error = %e, "node states not reported");
            }
            out.push(NodeStatesOutcome { sink: consumer.name.clone(), cluster: cluster.clone(), nodes, error });
        }
    }
    out
}
