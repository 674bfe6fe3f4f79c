//! Readers of a job's allocation detail, which only slurmctld holds (slurmdbd keeps none of it,
//! and slurmctld forgets a job MinJobAge after its end): which CPUs and GPUs of which node.
//!
//! - `scontrol -d show job [<id>]` text (every version): per node group a line
//!   `Nodes=vm CPU_IDs=1-4 Mem=1024 GRES=gpu:fake:2(IDX:0-1)`; `Nodes=` may be a compressed list
//!   (`n[01-02]`, the same CPUs on each). `CPU_IDs` are Slurm's abstract CPU ids of the node
//!   (core-major, as slurmd numbers them), read as the hardware threads; `GRES` lists each
//!   generic resource with its indices (`IDX:0,2-3`; `N/A` or none after a job ended on 22.05).
//! - `scontrol --json show job [<id>]` (data_parser v0.0.40+, 23.11 and later):
//!   `jobs[].job_resources.nodes.allocation[]{index, name, sockets[]{index, cores[]{index,
//!   status}}}`; a core whose status holds `ALLOCATED` is hardware thread
//!   `socket.index × cores per socket + core.index` (cc-slurm-adapter's rule: cores per socket
//!   is the first socket's core count; threads per core are not counted). GPUs: the node's
//!   `gres_detail[allocation.index]` (`gpu:h100:4(IDX:0-3)`).
//!
//! A record is keyed like a run, (cluster, JobId, SubmitTime): a requeued job's new run is
//! another record, so a detail never lands on the wrong run. Records without nodes (pending,
//! cancelled before start) yield nothing. The job's `Comment` is kept (cc-slurm-adapter's
//! fallback for GPU addresses).

use serde_json::Value;

use crate::model::{Allocation, ClusterName, JobKey, NodeAllocation, UnixTime};

use super::hostlist;
use super::json::{parse_document, slurm_number, slurm_string, JsonError, SlurmNumber};
use super::scontrol::split_pairs;
use super::values::{parse_time, TimeZone};

/// An allocation detail and the run it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundAllocation {
    pub key: JobKey,
    pub allocation: Allocation,
}

/// What a reader made of its input: the details read, and why any record was not read (its
/// line and the reason; the others are kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocRead {
    pub found: Vec<FoundAllocation>,
    pub problems: Vec<String>,
}

/// Reads `scontrol -d show job` text (times in `tz`; the runner pins UTC).
pub fn read_allocations_text(text: &str, default_cluster: &ClusterName, tz: &TimeZone) -> AllocRead {
    let mut out = AllocRead::default();
    let mut records: Vec<(usize, Vec<&str>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim_start().starts_with("JobId=") {
            records.push((i + 1, vec![line]));
        } else if let Some((_, lines)) = records.last_mut() {
            lines.push(line);
        }
    }
    for (line_no, lines) in records {
        match text_record(&lines, default_cluster, tz) {
            Ok(Some(f)) => out.found.push(f),
            Ok(None) => {}
            Err(e) => out.problems.push(format!("line {line_no}: {e}")),
        }
    }
    out
}

fn text_record(
    lines: &[&str],
    default_cluster: &ClusterName,
    tz: &TimeZone,
) -> Result<Option<FoundAllocation>, String> {
    let mut job: Vec<(&str, &str)> = Vec::new();
    let mut nodes = Vec::new();
    for line in lines {
        let mut pairs = Vec::new();
        split_pairs(line, &mut pairs);
        match pairs.first() {
            Some(("Nodes", _)) => node_line(&pairs, &mut nodes)?,
            _ => job.extend(pairs),
        }
    }
    let get = |k: &str| job.iter().find(|(key, _)| *key == k).map(|(_, v)| *v).unwrap_or("");
    let raw: u64 = get("JobId").parse().map_err(|_| format!("JobId {:?} is not a number", get("JobId")))?;
    if nodes.is_empty() {
        return Ok(None);
    }
    let submit = parse_time(get("SubmitTime"), tz)
        .map_err(|e| format!("job {raw}: SubmitTime: {}", e.0))?
        .ok_or_else(|| format!("job {raw}: no SubmitTime: the run cannot be keyed"))?;
    let cluster = match (get("ClusterName"), get("Cluster")) {
        ("", "") => default_cluster.clone(),
        ("", c) | (c, _) => ClusterName::new(c)?,
    };
    let comment = match get("Comment") {
        "(null)" => "",
        c => c,
    };
    Ok(Some(FoundAllocation {
        key: JobKey { cluster, job_id_raw: raw, submit },
        allocation: Allocation { nodes, comment: comment.trim().to_string(), script: None },
    }))
}

/// `Nodes=n[1-2] CPU_IDs=0-3 Mem=1024 GRES=gpu:a100:2(IDX:0-1)`: one entry per node.
fn node_line(pairs: &[(&str, &str)], out: &mut Vec<NodeAllocation>) -> Result<(), String> {
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v).unwrap_or("");
    let hosts = hostlist::expand(get("Nodes")).map_err(|e| format!("Nodes={}: {}", get("Nodes"), e.0))?;
    let hwthreads = id_list(get("CPU_IDs")).map_err(|e| format!("CPU_IDs={}: {e}", get("CPU_IDs")))?;
    let gpus = gres_gpu_indices(get("GRES")).map_err(|e| format!("GRES={}: {e}", get("GRES")))?;
    for hostname in hosts {
        out.push(NodeAllocation { hostname, hwthreads: hwthreads.clone(), gpus: gpus.clone() });
    }
    Ok(())
}

/// `0,5-7` → [0, 5, 6, 7], sorted and without repeats; empty or `N/A`: none.
pub fn id_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let s = s.trim();
    if s.is_empty() || s == "N/A" || s == "(null)" {
        return Ok(out);
    }
    for part in s.split(',') {
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("{t:?} is not an id"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a || b - a > 1 << 16 {
                    return Err(format!("range {part:?} is not an id range"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The GPU indices of a GRES allocation text: `gpu:fake:2(IDX:0-1)`, `gpu:2(IDX:0,2)`,
/// `gpu:a100:1(IDX:0),nic:1(IDX:0)` (other GRES are not GPUs), `gpu:0`, `` (none).
pub fn gres_gpu_indices(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for entry in split_top(s) {
        let entry = entry.trim();
        let name = entry.split([':', '(']).next().unwrap_or("");
        if name != "gpu" {
            continue;
        }
        let Some(open) = entry.find('(') else { continue };
        let inner = entry[open + 1..].strip_suffix(')').ok_or_else(|| format!("{entry:?} has no closing ')'"))?;
        if let Some(idx) = inner.strip_prefix("IDX:") {
            out.extend(id_list(idx)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Reads `scontrol --json show job` (data_parser v0.0.40+). A document that is not one (no
/// `jobs`) is an error; a job that cannot be read is a problem, the others are kept.
pub fn read_allocations_json(text: &str, default_cluster: &ClusterName) -> Result<AllocRead, JsonError> {
    let (jobs, lines) = parse_document(text, "scontrol --json show job")?;
    let mut out = AllocRead::default();
    for (job, line) in jobs.iter().zip(lines) {
        match json_job(job, default_cluster) {
            Ok(Some(f)) => out.found.push(f),
            Ok(None) => {}
            Err(e) => out.problems.push(format!("line {line}: {e}")),
        }
    }
    Ok(out)
}

fn json_job(job: &Value, default_cluster: &ClusterName) -> Result<Option<FoundAllocation>, String> {
    let number = |key: &str| -> Result<Option<i128>, String> {
        match slurm_number(job.get(key)).map_err(|e| format!("{key}: {e}"))? {
            SlurmNumber::Value(n) => Ok(Some(n)),
            _ => Ok(None),
        }
    };
    let raw = number("job_id")?.and_then(|n| u64::try_from(n).ok()).ok_or("job_id is missing")?;
    let allocation = job.pointer("/job_resources/nodes/allocation").and_then(Value::as_array);
    let Some(allocation) = allocation.filter(|a| !a.is_empty()) else { return Ok(None) };
    let submit = number("submit_time")?
        .and_then(|n| i64::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("job {raw}: no submit_time: the run cannot be keyed"))?;
    let cluster = match slurm_string(job.get("cluster"))? {
        c if c.is_empty() => default_cluster.clone(),
        c => ClusterName::new(&c)?,
    };
    let gres: Vec<String> = match job.get("gres_detail") {
        Some(Value::Array(a)) => a.iter().map(|g| g.as_str().unwrap_or("").to_string()).collect(),
        _ => Vec::new(),
    };
    let mut nodes = Vec::new();
    for (i, node) in allocation.iter().enumerate() {
        let hostname = slurm_string(node.get("name"))?;
        if hostname.is_empty() {
            return Err(format!("job {raw}: allocation[{i}] has no name"));
        }
        let sockets = node.get("sockets").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let per_socket = sockets.first().and_then(|s| s.get("cores")).and_then(Value::as_array).map_or(0, Vec::len);
        let mut hwthreads = Vec::new();
        for s in sockets {
            let si =
                s.get("index").and_then(Value::as_u64).ok_or_else(|| format!("job {raw}: a socket has no index"))?;
            for c in s.get("cores").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                let allocated = match c.get("status") {
                    Some(Value::String(s)) => s == "ALLOCATED",
                    Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some("ALLOCATED")),
                    _ => false,
                };
                if allocated {
                    let ci = c
                        .get("index")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("job {raw}: a core has no index"))?;
                    let id = si * per_socket as u64 + ci;
                    hwthreads.push(u32::try_from(id).map_err(|_| format!("job {raw}: hwthread {id} is too large"))?);
                }
            }
        }
        hwthreads.sort_unstable();
        hwthreads.dedup();
        let index = node.get("index").and_then(Value::as_u64).map_or(i, |n| n as usize);
        let gpus = match gres.get(index) {
            Some(g) => gres_gpu_indices(g).map_err(|e| format!("job {raw}: gres_detail[{index}]: {e}"))?,
            None => Vec::new(),
        };
        nodes.push(NodeAllocation { hostname, hwthreads, gpus });
    }
    let comment = slurm_string(job.get("comment")).unwrap_or_default();
    Ok(Some(FoundAllocation {
        key: JobKey { cluster, job_id_raw: raw, submit: UnixTime(submit) },
        allocation: Allocation { nodes, comment: comment.trim().to_string(), script: None },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterName {
        ClusterName::new("testcluster").unwrap()
    }

    fn t(s: &str) -> UnixTime {
        parse_time(s, &TimeZone::Utc).unwrap().unwrap()
    }

    /// Recorded on the testbed (Slurm 22.05.8, 2026-12-05): `scontrol -d show job 1252`, a
    /// running job with `--gres=gpu:2 -c 4` (tests/fixtures/testbed/own-scontrol-show-job-d-gpu.txt,
    /// command and date in its `.cmd`).
    #[test]
    fn a_running_gpu_job_as_recorded() {
        let text = include_str!("../../tests/fixtures/testbed/own-scontrol-show-job-d-gpu.txt");
        let r = read_allocations_text(text, &cluster(), &TimeZone::Utc);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.found.len(), 1);
        let f = &r.found[0];
        assert_eq!(f.key, JobKey { cluster: cluster(), job_id_raw: 1252, submit: t("2026-12-05T12:36:59") });
        assert_eq!(
            f.allocation.nodes,
            [NodeAllocation { hostname: "vm".into(), hwthreads: vec![1, 2, 3, 4], gpus: vec![0, 1] }]
        );
        assert_eq!(f.allocation.comment, "");
    }

    /// `scontrol -d show job` of every job slurmctld held (the same minute, 2026-12-05,
    /// tests/fixtures/testbed/own-scontrol-show-job-d-all.txt): finished jobs keep their detail
    /// until MinJobAge; pending and cancelled-while-pending ones have none; comments are kept.
    #[test]
    fn every_job_as_recorded() {
        let text = include_str!("../../tests/fixtures/testbed/own-scontrol-show-job-d-all.txt");
        let r = read_allocations_text(text, &cluster(), &TimeZone::Utc);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let by = |id: u64| r.found.iter().find(|f| f.key.job_id_raw == id);
        assert!(by(1253).is_none() && by(1300).is_none(), "pending, cancelled while pending: no detail");
        let j1302 = by(1302).unwrap();
        assert_eq!(j1302.allocation.nodes[0].hwthreads, [0, 5]);
        assert_eq!(j1302.allocation.comment, "note,x");
        assert_eq!(j1302.key.submit, t("2026-12-05T12:59:50"));
        assert_eq!(by(1303).unwrap().allocation.nodes[0].hwthreads, [6]);
        assert_eq!(by(1235).unwrap().allocation.nodes[0].hwthreads, [1, 7], "CPU_IDs=1,7");
        assert_eq!(by(1270).unwrap().allocation.nodes[0].hwthreads, [0, 6, 7], "CPU_IDs=0,6-7");
        assert_eq!(by(1252).unwrap().allocation.nodes[0].gpus, [0, 1]);
        // A GPU job that ended: 22.05 prints `GRES=` without indices then.
        assert!(by(1241).unwrap().allocation.nodes[0].gpus.is_empty());
        assert_eq!(by(1232).unwrap().allocation.comment, "billing test");
        assert_eq!(r.found.len(), 71, "every job that had nodes (81 records, 71 with a `Nodes=` line)");
    }

    #[test]
    fn an_unknown_job_reads_as_nothing() {
        // Recorded: `scontrol -d show job 999999` prints its error on stderr, nothing on stdout.
        let text = include_str!("../../tests/fixtures/testbed/own-scontrol-show-job-d-unknown.txt");
        assert_eq!(read_allocations_text(text, &cluster(), &TimeZone::Utc), AllocRead::default());
    }

    #[test]
    fn node_groups_and_gres_lists() {
        assert_eq!(id_list("0,5-7").unwrap(), [0, 5, 6, 7]);
        assert!(id_list("3-1").is_err() && id_list("x").is_err());
        assert_eq!(gres_gpu_indices("gpu:a100:1(IDX:2),nic:1(IDX:0),gpu:v100:2(IDX:0,4)").unwrap(), [0, 2, 4]);
        assert_eq!(gres_gpu_indices("gpu:0").unwrap(), Vec::<u32>::new());
        assert_eq!(gres_gpu_indices("gpu:fake:2(IDX:N/A)").unwrap(), Vec::<u32>::new());
        let mut nodes = Vec::new();
        node_line(&[("Nodes", "n[01-02]"), ("CPU_IDs", "0-1"), ("Mem", "10"), ("GRES", "gpu:1(IDX:3)")], &mut nodes)
            .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (nodes[1].hostname.as_str(), nodes[1].hwthreads.as_slice(), nodes[1].gpus.as_slice()),
            ("n02", &[0, 1][..], &[3][..])
        );
    }

    /// Slurm-web's recording of `/slurm/v0.0.43/job/4739` (Slurm 25.05.4; the same document as
    /// `scontrol --json show job 4739`; tests/fixtures/samples/PROVENANCE.md row 23): two sockets
    /// of 32 cores, the first 16 of each allocated.
    #[test]
    fn json_25_05_as_recorded() {
        let text = include_str!("../../tests/fixtures/samples/Slurm-web__25.05_v0.0.43__slurm-job-running.json");
        let r = read_allocations_json(text, &cluster()).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.found.len(), 1);
        let f = &r.found[0];
        assert_eq!((f.key.cluster.as_str(), f.key.job_id_raw, f.key.submit), ("hpc", 4739, UnixTime(1_762_789_009)));
        let n = &f.allocation.nodes[0];
        assert_eq!(n.hostname, "cn1");
        let want: Vec<u32> = (0..16).chain(32..48).collect();
        assert_eq!(n.hwthreads, want, "socket 1's cores follow socket 0's 32");
        assert!(n.gpus.is_empty());
    }
}
