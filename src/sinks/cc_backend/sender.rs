//! Sends a cc-backend item: the start or stop body is rendered from the run as the ledger holds
//! it when the item leaves, then POSTed; a look-up lists the jobs with the run's start time.
//! Without a client (dry run, no token) it can only describe.
//!
//! It wants runs' allocation detail (hwthreads, accelerators: `gpu_pci_addrs` maps a host's GPU
//! indices to PCI addresses) and, unless `node_states = false`, the node states of each pass,
//! which it posts as `{cluster, nodes: [schema.NodePayload]}`. It lists the jobs cc-backend shows
//! running (at most every 10 min per cluster) for the pass to reconcile with the ledger.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::delivery::consumer::{Lookup, Outcome, RenderError, RunningJob, Sender};
use crate::delivery::events::EventKind;
use crate::ledger::Delivery;
use crate::model::{ClusterName, JobRun, NodeState, UnixTime};
use crate::sinks::cc_job::{start_job_body, stop_job_body};

use super::client::{Call, CcClient};
use super::config::CcBackendSettings;

/// cc-backend's [`Sender`].
pub struct CcSender {
    cfg: CcBackendSettings,
    ignore: Option<Regex>,
    client: Option<CcClient>,
    /// `gpu_pci_addrs`, compiled, in name order.
    pci: Vec<(Regex, Vec<String>)>,
    /// When each cluster's running jobs were last listed for reconciliation.
    reconciled: Mutex<HashMap<String, Instant>>,
}

/// How often the running jobs are listed for reconciliation at most: a list of every running
/// job is a heavy query for cc-backend (cc-slurm-adapter refreshes it every 6 h).
const RECONCILE_EVERY: Duration = Duration::from_secs(600);

/// Which run and call an item is, as cc-backend names a job: its job id, cluster and start time.
struct Target<'r> {
    call: Call,
    run: &'r JobRun,
    job_id: u64,
    cluster: String,
    start: i64,
}

impl CcSender {
    pub fn new(cfg: CcBackendSettings, ignore: Option<Regex>, client: Option<CcClient>) -> Self {
        // Checked by the config's validation; a pattern that does not compile maps nothing.
        let pci = cfg
            .gpu_pci_addrs
            .iter()
            .filter_map(|(re, addrs)| Regex::new(re).ok().map(|re| (re, addrs.clone())))
            .collect();
        Self { cfg, ignore, client, pci, reconciled: Mutex::new(HashMap::new()) }
    }

    /// The PCI addresses of `gpus` (GRES indices) on `host`: the first pattern matching the host
    /// must list every index, else `None` (the body falls back, see `cc_job`).
    pub fn pci_addrs(&self, host: &str, gpus: &[u32]) -> Option<Vec<String>> {
        let (_, addrs) = self.pci.iter().find(|(re, _)| re.is_match(host))?;
        let out: Option<Vec<String>> = gpus.iter().map(|&i| addrs.get(i as usize).cloned()).collect();
        if out.is_none() {
            tracing::warn!(
                host,
                ?gpus,
                listed = addrs.len(),
                "gpu_pci_addrs lists fewer GPUs than the host has; sending no PCI addresses for it"
            );
        }
        out
    }

    /// The node-state body: `schema.NodePayload` per node, Slurm's state words as cc-backend
    /// reads them (it lower-cases and looks for allocated, reserved, idle, down, mixed), memory
    /// in MB.
    pub fn node_state_body(cluster: &str, nodes: &[NodeState]) -> Value {
        let nodes: Vec<Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "hostname": n.name,
                    "states": n.states,
                    "cpusAllocated": n.cpus_allocated,
                    "memoryAllocated": n.memory_allocated_bytes / (1 << 20),
                    "gpusAllocated": n.gpus_allocated,
                })
            })
            .collect();
        serde_json::json!({ "cluster": cluster, "nodes": nodes })
    }

    fn target<'r>(&self, d: &Delivery, run: Option<&'r JobRun>) -> Result<Target<'r>, String> {
        let run = run.ok_or_else(|| RenderError::NoRun { id: d.id.clone() }.to_string())?;
        let call = match EventKind::of_id(&d.id) {
            Some(EventKind::Start) => Call::Start,
            Some(EventKind::Stop) => Call::Stop,
            None => return Err(RenderError::BadRoute { id: d.id.clone(), route: d.route.clone() }.to_string()),
        };
        let cluster = self.cfg.cc_cluster(run.key.cluster.as_str()).to_string();
        Ok(Target { call, run, job_id: run.key.job_id_raw, cluster, start: run.start.map_or(0, |s| s.0) })
    }

    /// An item's target and request body (a look-up needs only the target).
    fn request<'r>(&self, d: &Delivery, run: Option<&'r JobRun>) -> Result<(Target<'r>, Value), String> {
        let t = self.target(d, run)?;
        let ignore = |h: &str| self.ignore.as_ref().is_some_and(|re| re.is_match(h));
        let body = match t.call {
            Call::Start => start_job_body(t.run, &t.cluster, &ignore, &|h, g| self.pci_addrs(h, g)),
            Call::Stop => stop_job_body(t.run, &t.cluster),
        };
        body.map(|b| (t, b)).map_err(|e| e.to_string())
    }
}

impl Sender for CcSender {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        let Some(client) = &self.client else {
            return Outcome::Retry {
                reason: "the cc-backend sink has no token loaded (dry run)".into(),
                after_secs: None,
            };
        };
        match self.request(d, run) {
            Ok((t, body)) => client.post(t.call, &body, t.job_id, &t.cluster, t.start),
            Err(reason) => Outcome::Rejected { reason },
        }
    }

    /// `[sinks.cc_backend] concurrency`: one POST per item.
    fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// A batch's starts (0) before its stops (1): cc-backend answers 404 to the stop of a run
    /// whose start it does not hold yet.
    fn phase(&self, d: &Delivery) -> u8 {
        u8::from(EventKind::of_id(&d.id) == Some(EventKind::Stop))
    }

    fn lookup(&self, d: &Delivery, run: Option<&JobRun>) -> Lookup {
        let Some(client) = &self.client else {
            return Lookup::Failed { reason: "the cc-backend sink has no token loaded (dry run)".into() };
        };
        match self.target(d, run) {
            Ok(t) => client.lookup(t.call, t.job_id, &t.cluster, t.start),
            Err(reason) => Lookup::Failed { reason },
        }
    }

    fn wants_allocations(&self) -> bool {
        true
    }

    fn wants_node_states(&self) -> bool {
        self.cfg.node_states
    }

    fn wants_job_scripts(&self) -> bool {
        self.cfg.job_script
    }

    fn running_jobs(&self, cluster: &ClusterName) -> Option<Result<Vec<RunningJob>, String>> {
        let client = self.client.as_ref()?;
        {
            // At most once per RECONCILE_EVERY per cluster (a daemon asks every pass).
            let mut last = self.reconciled.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last.get(cluster.as_str()).is_some_and(|t| now.duration_since(*t) < RECONCILE_EVERY) {
                return None;
            }
            last.insert(cluster.to_string(), now);
        }
        Some(client.running(self.cfg.cc_cluster(cluster.as_str())).map(|jobs| {
            jobs.into_iter().map(|j| RunningJob { job_id: j.job_id, start: UnixTime(j.start_time) }).collect()
        }))
    }

    fn node_states(&self, cluster: &ClusterName, nodes: &[NodeState]) -> Result<(), String> {
        let Some(client) = &self.client else { return Err("the cc-backend sink has no token loaded".into()) };
        let ignore = |h: &str| self.ignore.as_ref().is_some_and(|re| re.is_match(h));
        let kept: Vec<NodeState> = nodes.iter().filter(|n| !ignore(&n.name)).cloned().collect();
        client.post_node_states(&Self::node_state_body(self.cfg.cc_cluster(cluster.as_str()), &kept))
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        match self.request(d, run) {
            Ok((t, body)) => format!("POST {}/{}\n{body}", self.cfg.url, t.call.path()),
            Err(e) => format!("(cannot render: {e})"),
        }
    }
}
