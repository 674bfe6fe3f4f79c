//! ClusterCockpit's job event bodies, rendered from a run as the ledger holds it: cc-backend's
//! `start_job` (`schema.Job`) and `stop_job` (`api.StopJobAPIRequest`) requests. The cc-backend
//! sink posts them; the NATS sink's line-protocol format carries them as cc-slurm-adapter did.
//! Not a sink: pure rendering, no I/O.
//!
//! Contract (`../shared/contracts.md` §3.1–3.3, `specs/cc-backend/swagger-jobs-excerpt.json`):
//! cc-backend decodes with `DisallowUnknownFields`, so only `schema.Job`'s own fields are sent.
//! - `jobId` is the run's JobIDRaw (an array task's own id), `arrayJobId` the array's (0: none);
//!   `project` is the account; `walltime` the time limit in seconds (left out when unlimited);
//!   `submitTime`/`startTime` epoch seconds; `numHwthreads` the allocated CPUs (AllocTRES `cpu`,
//!   else AllocCPUS), `numAcc` the allocated GPUs; `requestedMemory` MB when Slurm gives one.
//! - `resources`: one per host of the node list, expanded, in order, except hosts matching the
//!   sink's ignore rule; `hwthreads`/`accelerators` only when the run's allocation detail is
//!   known (`JobRun::allocation`, from slurmctld; without it, as cc-slurm-adapter after
//!   MinJobAge, hostnames only). `hwthreads`: the node's CPU ids. `accelerators`: the node's GPU
//!   indices mapped to PCI addresses by the caller's map (cc-slurm-adapter's `gpuPciAddrs`:
//!   every index of the node must be mapped); unmapped, the job's comment split at `,` (the
//!   adapter's fallback); else none. A node without GPU indices gets none.
//!   cc-backend requires `len(resources) == numNodes`, so `numNodes` is the hosts sent.
//! - `metaData`: `jobName`, `slurmInfo` (a short text of what the ledger knows), and `jobScript`
//!   when the allocation detail carries the batch script (`job_script = true`).
//! - The stop names the run by `jobId`, `cluster` and its `startTime` (the adapter left it out,
//!   so cc-backend stopped the newest row of that job id: a requeued job's wrong run).
//! - States map to `schema.JobState`; Slurm states with no match there (REQUEUED, RESIZING,
//!   REVOKED, SPECIAL_EXIT) become `cancelled` (the run ended without completing; its successor
//!   run, if any, is its own job row) and `failed` for SPECIAL_EXIT.

use serde_json::{json, Map, Value};

use crate::delivery::events::EventFilter;
use crate::model::{JobRun, JobState};
use crate::slurm::hostlist;

/// Why a run has no start body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("run {run} has not started")]
    NotStarted { run: String },
    #[error(
        "run {run} has no hosts to report (node list {nodes:?}{ignored}); cc-backend refuses a job without resources"
    )]
    NoHosts { run: String, nodes: String, ignored: &'static str },
    #[error("run {run}: {reason}")]
    NodeList { run: String, reason: String },
}

/// cc-backend's `schema.JobState` for a final Slurm state (a running one is `running`).
pub fn cc_state(state: &JobState) -> &'static str {
    match state {
        JobState::Completed => "completed",
        JobState::Failed | JobState::SpecialExit => "failed",
        JobState::Timeout => "timeout",
        JobState::NodeFail => "node_fail",
        JobState::Preempted => "preempted",
        JobState::BootFail => "boot_fail",
        JobState::Deadline => "deadline",
        JobState::OutOfMemory => "out_of_memory",
        JobState::Pending => "pending",
        JobState::Suspended => "suspended",
        JobState::Running => "running",
        _ => "cancelled",
    }
}

/// The hosts a run's events name: its node list expanded, without those `ignore` matches.
pub fn hosts(run: &JobRun, ignore: &dyn Fn(&str) -> bool) -> Result<Vec<String>, BodyError> {
    let all = hostlist::expand(&run.nodelist)
        .map_err(|e| BodyError::NodeList { run: run.key.to_string(), reason: e.to_string() })?;
    Ok(all.into_iter().filter(|h| !ignore(h)).collect())
}

/// Maps a host's GPU indices to their PCI addresses (`None`: no mapping covers them all).
pub type PciMap<'a> = &'a dyn Fn(&str, &[u32]) -> Option<Vec<String>>;

/// The `start_job` body of a started run (`cluster`: the name cc-backend knows the cluster by;
/// `pci`: GPU addresses of a host, see the module doc).
pub fn start_job_body(
    run: &JobRun,
    cluster: &str,
    ignore: &dyn Fn(&str) -> bool,
    pci: PciMap<'_>,
) -> Result<Value, BodyError> {
    let start = run.start.ok_or_else(|| BodyError::NotStarted { run: run.key.to_string() })?;
    let hosts = hosts(run, ignore)?;
    if hosts.is_empty() {
        let ignored = if run.nodelist.is_empty() || run.nodelist == "None assigned" { "" } else { ", all ignored" };
        return Err(BodyError::NoHosts { run: run.key.to_string(), nodes: run.nodelist.clone(), ignored });
    }
    let resources: Vec<Value> = hosts.iter().map(|h| resource(run, h, pci)).collect();
    let hwthreads = run.alloc_tres.get("cpu").unwrap_or(u64::from(run.alloc_cpus));
    let mut body = Map::new();
    body.insert("jobId".into(), json!(run.key.job_id_raw));
    body.insert("user".into(), json!(run.user));
    body.insert("project".into(), json!(run.account));
    body.insert("cluster".into(), json!(cluster));
    body.insert("partition".into(), json!(run.partition));
    body.insert("arrayJobId".into(), json!(run.array_job_id.unwrap_or(0)));
    body.insert("numNodes".into(), json!(resources.len()));
    body.insert("numHwthreads".into(), json!(hwthreads.min(i32::MAX as u64)));
    body.insert("numAcc".into(), json!(run.alloc_tres.gpus().min(i32::MAX as u64)));
    if let Some(limit) = run.timelimit_mins {
        body.insert("walltime".into(), json!(limit.saturating_mul(60)));
    }
    body.insert("submitTime".into(), json!(run.key.submit.0));
    body.insert("startTime".into(), json!(start.0));
    if let Some(mb) = requested_mb(run) {
        body.insert("requestedMemory".into(), json!(mb));
    }
    body.insert("resources".into(), Value::Array(resources));
    let info = format!(
        "JobId={} JobName={} UserId={} Account={} Partition={} QOS={} NodeList={} TRES={}",
        run.job_id,
        run.name,
        run.user,
        run.account,
        run.partition,
        run.qos,
        run.nodelist,
        run.alloc_tres.to_canonical()
    );
    let mut meta = json!({ "jobName": run.name, "slurmInfo": info });
    if let Some(script) = run.allocation.as_ref().and_then(|a| a.script.as_ref()) {
        meta["jobScript"] = json!(script);
    }
    body.insert("metaData".into(), meta);
    Ok(Value::Object(body))
}

/// One `schema.Resource`: the host, and what the allocation detail says of it.
fn resource(run: &JobRun, host: &str, pci: PciMap<'_>) -> Value {
    let mut r = Map::new();
    r.insert("hostname".into(), json!(host));
    let Some(a) = &run.allocation else { return Value::Object(r) };
    let Some(node) = a.nodes.iter().find(|n| n.hostname == host) else { return Value::Object(r) };
    if !node.hwthreads.is_empty() {
        r.insert("hwthreads".into(), json!(node.hwthreads));
    }
    if !node.gpus.is_empty() {
        let accelerators = pci(host, &node.gpus).unwrap_or_else(|| {
            a.comment.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        });
        if !accelerators.is_empty() {
            r.insert("accelerators".into(), json!(accelerators));
        }
    }
    Value::Object(r)
}

/// The `stop_job` body of a final run.
pub fn stop_job_body(run: &JobRun, cluster: &str) -> Result<Value, BodyError> {
    let start = run.start.ok_or_else(|| BodyError::NotStarted { run: run.key.to_string() })?;
    let stop = run.end.unwrap_or(start).max(start);
    Ok(json!({
        "jobId": run.key.job_id_raw,
        "cluster": cluster,
        "startTime": start.0,
        "jobState": cc_state(&run.state),
        "stopTime": stop.0,
    }))
}

/// The requested memory in MB (ReqMem per node × nodes, or per CPU × CPUs), when known.
fn requested_mb(run: &JobRun) -> Option<u64> {
    let bytes = run.req_mem_bytes?;
    let per =
        if run.req_mem_per_cpu { u64::from(run.req_cpus.max(run.alloc_cpus)) } else { u64::from(run.nnodes.max(1)) };
    Some(bytes.saturating_mul(per) / (1024 * 1024)).filter(|mb| *mb > 0 && *mb <= i32::MAX as u64)
}

/// The event filter of ClusterCockpit's consumers: a run with no host to report (none assigned,
/// or all matching the ignore rule) gets no events, as cc-backend refuses a job without resources.
pub struct HostFilter(Option<regex::Regex>);

impl HostFilter {
    pub fn new(ignore: Option<regex::Regex>) -> Self {
        Self(ignore)
    }
}

impl EventFilter for HostFilter {
    fn skip(&self, run: &JobRun) -> Option<String> {
        let ignore = |h: &str| self.0.as_ref().is_some_and(|re| re.is_match(h));
        match hosts(run, &ignore) {
            Ok(h) if h.is_empty() => Some(format!("no host to report (node list {:?})", run.nodelist)),
            // A node list that does not read is refused when sent, where `status` shows it.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Allocation, ClusterName, JobKey, NodeAllocation, Tres, UnixTime};

    /// Job 1252 as the testbed's sacct and `scontrol -d show job 1252` recorded it on 2026-12-05
    /// (own-sacct-poll-alloc.txt, own-scontrol-show-job-d-gpu.txt): 4 CPUs, gpu:2 on vm.
    fn run() -> JobRun {
        let key = JobKey {
            cluster: ClusterName::new("testcluster").unwrap(),
            job_id_raw: 1252,
            submit: UnixTime(1_796_474_219),
        };
        let mut r = JobRun::new(key, "1252".into());
        r.start = Some(UnixTime(1_796_474_220));
        r.state = JobState::Running;
        r.nodelist = "vm".into();
        r.alloc_tres = Tres::from_pairs([("cpu".to_string(), 4), ("gres/gpu".to_string(), 2)]);
        r
    }

    fn detail(comment: &str) -> Allocation {
        Allocation {
            nodes: vec![NodeAllocation { hostname: "vm".into(), hwthreads: vec![1, 2, 3, 4], gpus: vec![0, 1] }],
            comment: comment.into(),
            script: None,
        }
    }

    fn pci(host: &str, gpus: &[u32]) -> Option<Vec<String>> {
        let addrs = ["00000000:07:00.0", "00000000:0B:00.0"];
        (host == "vm").then(|| gpus.iter().map(|&g| addrs.get(g as usize).map(|s| s.to_string())).collect()).flatten()
    }

    #[test]
    fn the_allocation_detail_gives_hwthreads_and_pci_addresses() {
        let mut r = run();
        r.allocation = Some(detail(""));
        let b = start_job_body(&r, "c", &|_| false, &pci).unwrap();
        assert_eq!(
            b["resources"],
            json!([{"hostname": "vm", "hwthreads": [1, 2, 3, 4], "accelerators": ["00000000:07:00.0", "00000000:0B:00.0"]}])
        );
        assert_eq!(
            (b["numHwthreads"].as_u64(), b["numAcc"].as_u64(), b["numNodes"].as_u64()),
            (Some(4), Some(2), Some(1))
        );
    }

    #[test]
    fn unmapped_gpus_take_the_comment_and_no_detail_gives_hostnames_only() {
        let mut r = run();
        r.allocation = Some(detail("gpu-a, gpu-b"));
        let b = start_job_body(&r, "c", &|_| false, &|_, _| None).unwrap();
        assert_eq!(b["resources"][0]["accelerators"], json!(["gpu-a", "gpu-b"]), "cc-slurm-adapter's fallback");
        r.allocation = Some(detail(""));
        let b = start_job_body(&r, "c", &|_| false, &|_, _| None).unwrap();
        assert_eq!(b["resources"][0], json!({"hostname": "vm", "hwthreads": [1, 2, 3, 4]}));
        // slurmctld forgot the run (MinJobAge) before it was asked: what sacct says, never dropped.
        r.allocation = None;
        let b = start_job_body(&r, "c", &|_| false, &pci).unwrap();
        assert_eq!(b["resources"], json!([{"hostname": "vm"}]));
        assert_eq!((b["numHwthreads"].as_u64(), b["numAcc"].as_u64()), (Some(4), Some(2)));
    }

    #[test]
    fn the_batch_script_goes_in_metadata_when_the_detail_has_it() {
        let mut r = run();
        let mut d = detail("");
        r.allocation = Some(d.clone());
        let body = start_job_body(&r, "c", &|_| false, &|_, _| None).unwrap();
        assert!(body["metaData"].get("jobScript").is_none(), "{body}");
        d.script = Some("#!/bin/sh\nsleep 1\n".into());
        r.allocation = Some(d);
        let body = start_job_body(&r, "c", &|_| false, &|_, _| None).unwrap();
        assert_eq!(body["metaData"]["jobScript"], "#!/bin/sh\nsleep 1\n");
    }
}
