//! The pass's side tasks, for consumers that want more of Slurm than the ledger holds (see
//! `Sender::wants_allocations`, `Sender::wants_node_states`): runs' allocation detail, asked of
//! slurmctld after the collect and before delivery (so a start goes out with it), and the node
//! states, read once per cluster after delivery and handed to each consumer that reports them.
//! Neither is asked when no consumer wants it. A failure is logged and counted here; it never
//! holds up deliveries (a run without detail is reported with what sacct said).

use crate::collect::allocations::{fetch_new_allocations, AllocReport};
use crate::delivery::consumer::{Consumer, RunningJob};
use crate::ledger::{JobFilter, Ledger};
use crate::model::{ClusterName, UnixTime};
use crate::slurm::source::SlurmVersion;

use super::{ClusterOutcome, CollectPlan, Detected};

/// What the side tasks of a pass did.
#[derive(Debug, Default)]
pub struct SideReport {
    /// Per collected cluster, the allocation ask (or why it failed).
    pub allocations: Vec<(ClusterName, Result<AllocReport, String>)>,
    /// Per consumer and cluster, the node states reported.
    pub node_states: Vec<NodeStatesOutcome>,
    /// Per consumer and cluster, the platform's running jobs reconciled with the ledger.
    pub reconciled: Vec<Reconciled>,
}

/// One consumer's reconciliation of one cluster: the jobs the platform shows as running, checked
/// against the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub sink: String,
    pub cluster: Option<ClusterName>,
    /// Jobs the platform shows as running.
    pub running: usize,
    /// Of them, those whose run the ledger did not hold: asked of sacct by id (so that their
    /// stop is planned once Slurm has them ended).
    pub asked: Vec<u64>,
    /// Of them, those the ledger has ended over an hour ago: their stop went to another row of
    /// the platform (a requeued job under cc-backend's duplicate rule) or was refused; `status`
    /// shows the refused ones.
    pub stale: Vec<u64>,
    pub error: Option<String>,
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
            + self.reconciled.iter().filter(|o| o.error.is_some()).count()
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
    let scripts = consumers.iter().any(|c| c.sender.wants_job_scripts());
    let source = plan.source();
    let mut out = Vec::new();
    for c in clusters {
        let ClusterOutcome::Collected(r) = c else { continue };
        let Some(version) = r.slurm_version.as_deref().and_then(SlurmVersion::parse) else { continue };
        let result =
            fetch_new_allocations(&source, version, ledger, &r.cluster, scripts, now).map_err(|e| e.to_string());
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
    let source = plan.source();
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

/// Job ids asked of sacct per cluster and reconciliation at most.
const RECONCILE_ASKS: usize = 1_000;
/// How long after its end a run the platform still shows running is reported as stale.
const STALE_AFTER_SECS: i64 = 3_600;

/// Reconciles the jobs each consumer's platform shows as running with the ledger, per collected
/// cluster: a job whose run the ledger does not hold (a poll window missed it, the ledger was
/// replaced, another tool started it) is asked of sacct by id, so the pass plans its stop (and
/// its start, which the platform then answers as already there); a run ended over an hour ago
/// that the platform still shows running is reported, not guessed at. One job that cannot be
/// asked never stops the others.
pub fn reconcile(
    ledger: &mut Ledger,
    plan: &CollectPlan<'_>,
    detected: &Detected,
    clusters: &[ClusterOutcome],
    consumers: &[Consumer],
    now: UnixTime,
) -> Vec<Reconciled> {
    let source = plan.source();
    let mut out = Vec::new();
    for consumer in consumers {
        for c in clusters {
            let ClusterOutcome::Collected(r) = c else { continue };
            let Some(listed) = consumer.sender.running_jobs(&r.cluster) else { continue };
            let mut o =
                Reconciled { sink: consumer.name.clone(), cluster: Some(r.cluster.clone()), ..Default::default() };
            match listed
                .and_then(|jobs| check_running(ledger, &r.cluster, &jobs, now, &mut o).map_err(|e| e.to_string()))
            {
                Ok(()) => {}
                Err(e) => o.error = Some(e),
            }
            if !o.asked.is_empty() {
                match crate::collect::collect_jobs(&source, &detected.info, ledger, &r.cluster, &o.asked, now) {
                    Ok(counts) => tracing::info!(
                        sink = %consumer.name,
                        cluster = %r.cluster,
                        asked = o.asked.len(),
                        new = counts.runs_new,
                        "jobs the platform shows running and the ledger did not hold, asked of sacct"
                    ),
                    Err(e) => {
                        o.error =
                            Some(format!("asking sacct for {} job(s) the platform shows running: {e}", o.asked.len()))
                    }
                }
            }
            if !o.stale.is_empty() {
                tracing::warn!(
                    sink = %consumer.name,
                    cluster = %r.cluster,
                    jobs = ?o.stale.iter().take(10).collect::<Vec<_>>(),
                    count = o.stale.len(),
                    "the platform shows jobs running that ended in Slurm over an hour ago; their stop went to another row or was refused (see `slurm-ledger status`)"
                );
            }
            if let Some(e) = &o.error {
                tracing::warn!(sink = %consumer.name, cluster = %r.cluster, error = %e, "running jobs not reconciled");
            }
            out.push(o);
        }
    }
    out
}

/// Sorts the platform's running jobs into those to ask of sacct and the stale ones.
fn check_running(
    ledger: &Ledger,
    cluster: &ClusterName,
    jobs: &[RunningJob],
    now: UnixTime,
    o: &mut Reconciled,
) -> Result<(), crate::ledger::LedgerError> {
    o.running = jobs.len();
    for j in jobs {
        let runs = ledger.jobs(&JobFilter {
            cluster: Some(cluster.clone()),
            job_id_raw: Some(j.job_id),
            ..Default::default()
        })?;
        match runs.iter().find(|r| r.start == Some(j.start)) {
            None if o.asked.len() < RECONCILE_ASKS && !o.asked.contains(&j.job_id) => o.asked.push(j.job_id),
            None => {}
            Some(r) if r.state.is_final() && r.end.is_some_and(|e| e.0 + STALE_AFTER_SECS < now.0) => {
                o.stale.push(j.job_id)
            }
            Some(_) => {}
        }
    }
    Ok(())
}
