//! Reader for `scontrol show job` text, in both layouts: the default multi-line records
//! (separated by blank lines) and `scontrol -o show job`, one line per job.
//!
//! A record starts at each line beginning with `JobId=`; its other lines are continuation lines.
//! Each line is a run of `Key=Value` pairs separated by whitespace. Values may hold spaces:
//! a value runs until the next whitespace-preceded `Key=`, and for free-text values (`JobName`,
//! `Command`, `WorkDir`, `StdOut`, `Comment`, …) only a key scontrol is known to print ends
//! them. `JobName` ends only at ` UserId=` or ` HetJobIdSet=` (or the end of the line): scontrol prints it
//! last on the first line, and only those keys can follow it in `-o` output.
//!
//! What the live view means, unlike sacct:
//! - `RunTime` is the elapsed time (suspended time excluded).
//! - `StartTime` of a PENDING job is the expected start: not kept. A job that ended without ever
//!   getting nodes (cancelled while pending) has no start, as sacct prints `Start=None`.
//! - `EndTime` of a running job is the expected end (start + limit): kept only once the state is
//!   final.
//! - `TRES=` (22.05) is the allocation once the job has nodes, else the request; newer versions
//!   print `ReqTRES=` and `AllocTRES=` separately.
//! - scontrol prints no cluster name (federations aside): `ClusterName=`/`Cluster=` when present,
//!   else the default cluster.
//! - `Command` is the batch script path (or the srun/salloc command), not sacct's `SubmitLine`;
//!   it is read (so the free-text layout parses) but not stored.

use crate::model::{ClusterName, JobKey, JobRun, JobState};

use super::json::live_suspended_secs;
use super::parsable::{Item, Quarantined};
use super::values::{self as v, TimeZone, TresKind, ValueError};

/// Keys scontrol prints for a job (21.08 … 25.11). Used only to end free-text values.
const KNOWN_KEYS: &[&str] = &[
    "JobId",
    "ArrayJobId",
    "ArrayTaskId",
    "ArrayTaskThrottle",
    "HetJobId",
    "HetJobOffset",
    "HetJobIdSet",
    "JobName",
    "UserId",
    "GroupId",
    "MCS_label",
    "Priority",
    "Nice",
    "Account",
    "QOS",
    "WCKey",
    "JobState",
    "Reason",
    "Dependency",
    "Requeue",
    "Restarts",
    "BatchFlag",
    "Reboot",
    "ExitCode",
    "DerivedExitCode",
    "RunTime",
    "TimeLimit",
    "TimeMin",
    "SubmitTime",
    "EligibleTime",
    "AccrueTime",
    "StartTime",
    "EndTime",
    "Deadline",
    "PreemptEligibleTime",
    "PreemptTime",
    "SuspendTime",
    "SecsPreSuspend",
    "LastSchedEval",
    "Scheduler",
    "ResizeTime",
    "Partition",
    "AllocNode:Sid",
    "ReqNodeList",
    "ExcNodeList",
    "NodeList",
    "SchedNodeList",
    "BatchHost",
    "NumNodes",
    "NumCPUs",
    "NumTasks",
    "CPUs/Task",
    "ReqB:S:C:T",
    "TRES",
    "ReqTRES",
    "AllocTRES",
    "Socks/Node",
    "NtasksPerN:B:S:C",
    "CoreSpec",
    "MinCPUsNode",
    "MinMemoryNode",
    "MinMemoryCPU",
    "MinTmpDiskNode",
    "Features",
    "Prefer",
    "ClusterFeatures",
    "DelayBoot",
    "OverSubscribe",
    "Contiguous",
    "Licenses",
    "LicensesAlloc",
    "Network",
    "Command",
    "WorkDir",
    "AdminComment",
    "SystemComment",
    "Comment",
    "StdErr",
    "StdIn",
    "StdOut",
    "Power",
    "TresPerNode",
    "TresPerJob",
    "TresPerSocket",
    "TresPerTask",
    "CpusPerTres",
    "MemPerTres",
    "TresBind",
    "TresFreq",
    "MailUser",
    "MailType",
    "Reservation",
    "BurstBuffer",
    "BurstBufferState",
    "CpuFreqMin",
    "CpuFreqMax",
    "CpuFreqGov",
    "Container",
    "ContainerID",
    "Clusters",
    "ClusterName",
    "Cluster",
    "FedOrigin",
    "FedViableSiblings",
    "FedActiveSiblings",
    "KillOInInvalidDependent",
    "NtasksPerTRES",
    "Nodes",
    "CPU_IDs",
    "Mem",
    "GRES",
    "Shared",
    "Segment",
    "ResvPort",
    "SegmentSize",
    "OOMKillStep",
    "NumNodesAllocated",
    "JobNameExt",
];

/// Keys whose values are free text and may hold spaces.
const FREE_TEXT_KEYS: &[&str] = &[
    "JobName",
    "Command",
    "WorkDir",
    "StdErr",
    "StdIn",
    "StdOut",
    "Comment",
    "AdminComment",
    "SystemComment",
    "MailUser",
    "Container",
    "Reason",
];

/// Reads `scontrol show job` output (multi-line or `-o`) into job runs; records that cannot be
/// read become quarantine records with their text. Times are read in `tz`.
///
/// Empty input is itself quarantined: scontrol prints `No jobs in the system` when there are
/// none, so nothing at all means the command failed (22.05's `scontrol show job --json` prints
/// nothing and an error) or its output went elsewhere.
pub fn read_scontrol_jobs(text: &str, default_cluster: &ClusterName, tz: &TimeZone) -> Vec<Item> {
    if text.trim().is_empty() {
        return vec![Item::Quarantine(Quarantined {
            line: 1,
            raw: text.into(),
            reason:
                "scontrol output is empty: `scontrol show job` prints `No jobs in the system` when there are none, \
                     so the command failed or printed elsewhere (Slurm 22.05 has no `scontrol --json`)"
                    .into(),
        })];
    }
    let mut out = Vec::new();
    // (first line number, lines) of the record being collected.
    let mut current: Option<(u64, Vec<&str>)> = None;
    let mut stray: Option<(u64, Vec<&str>)> = None;
    let flush = |rec: Option<(u64, Vec<&str>)>, out: &mut Vec<Item>| {
        if let Some((line, lines)) = rec {
            out.push(record_item(line, &lines, default_cluster, tz));
        }
    };
    for (i, raw_line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = raw_line.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.starts_with("JobId=") {
            flush(current.take(), &mut out);
            current = Some((line_no, vec![line]));
        } else if trimmed.trim().is_empty() {
            continue;
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        } else if trimmed != "No jobs in the system" {
            stray.get_or_insert((line_no, Vec::new())).1.push(line);
        }
    }
    flush(current, &mut out);
    if let Some((line, lines)) = stray {
        out.insert(
            0,
            Item::Quarantine(Quarantined {
                line,
                raw: lines.join("\n"),
                reason: "text before the first `JobId=` line is not a job record (is this `scontrol show job` output?)"
                    .into(),
            }),
        );
    }
    out
}

fn record_item(line: u64, lines: &[&str], default_cluster: &ClusterName, tz: &TimeZone) -> Item {
    let mut pairs = Vec::new();
    for l in lines {
        split_pairs(l, &mut pairs);
    }
    match to_job(&Record(pairs), default_cluster, tz) {
        Ok(run) => Item::Job(Box::new(run)),
        Err(e) => Item::Quarantine(Quarantined { line, raw: lines.join("\n"), reason: e.0 }),
    }
}

/// True for bytes that may appear in a key: `MCS_label`, `CPUs/Task`, `AllocNode:Sid`.
fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'/' || b == b':'
}

/// Splits one line into `(key, value)` pairs (see the module doc for the rules).
pub(super) fn split_pairs<'a>(line: &'a str, out: &mut Vec<(&'a str, &'a str)>) {
    let b = line.as_bytes();
    // Candidate key starts: (key start, '=' position). Only ASCII bytes are inspected, so every
    // index is a char boundary.
    let mut cands = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if (i == 0 || b[i - 1].is_ascii_whitespace()) && b[i].is_ascii_alphabetic() {
            let mut j = i;
            while j < b.len() && key_byte(b[j]) {
                j += 1;
            }
            if j < b.len() && b[j] == b'=' {
                cands.push((i, j));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    let mut cur: Option<(&str, usize)> = None; // (key, value start)
    for (start, eq) in cands {
        let key = &line[start..eq];
        if let Some((ck, vs)) = cur {
            let ends = match ck {
                // scontrol prints JobName last on its line; in `-o` output only HetJobIdSet
                // (het jobs) or UserId follows it.
                "JobName" => key == "UserId" || key == "HetJobIdSet",
                k if FREE_TEXT_KEYS.contains(&k) => KNOWN_KEYS.contains(&key),
                _ => true,
            };
            if !ends {
                continue;
            }
            out.push((ck, line[vs..start].trim()));
        }
        cur = Some((key, eq + 1));
    }
    if let Some((ck, vs)) = cur {
        out.push((ck, line[vs..].trim()));
    }
}

/// One record's pairs; the first occurrence of a key wins.
struct Record<'a>(Vec<(&'a str, &'a str)>);

impl Record<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
    /// The value, with scontrol's "no value" spellings as empty.
    fn text(&self, key: &str) -> &str {
        match self.get(key) {
            None | Some("(null)") | Some("N/A") => "",
            Some(v) => v,
        }
    }
    fn time(&self, key: &str, tz: &TimeZone) -> Result<Option<crate::model::UnixTime>, ValueError> {
        v::parse_time(self.text(key), tz).map_err(|e| ValueError(format!("{key}: {}", e.0)))
    }
    fn u64(&self, key: &str) -> Result<Option<u64>, ValueError> {
        v::parse_opt_u64(key, self.text(key))
    }
    /// `NumNodes=1`, `NumNodes=1-2` (a pending range: the minimum), `NumCPUs=4`.
    fn count(&self, key: &str) -> Result<u32, ValueError> {
        let s = self.text(key);
        let first = s.split(['-', ':']).next().unwrap_or("");
        v::parse_count(key, first)
    }
}

/// `bob(1002)` → ("bob", Some(1002)); `1002` → ("", Some(1002)); `bob` → ("bob", None).
fn name_and_id(key: &str, s: &str) -> Result<(String, Option<u32>), ValueError> {
    let bad = || ValueError(format!("{key} {s:?} is not name(id)"));
    if let Some(open) = s.rfind('(') {
        let Some(id) = s[open + 1..].strip_suffix(')') else { return Err(bad()) };
        let name = &s[..open];
        let name = if name == "(null)" { "" } else { name };
        return Ok((name.to_string(), Some(id.parse().map_err(|_| bad())?)));
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((String::new(), Some(s.parse().map_err(|_| bad())?)));
    }
    Ok((s.to_string(), None))
}

fn to_job(r: &Record<'_>, default_cluster: &ClusterName, tz: &TimeZone) -> Result<JobRun, ValueError> {
    let raw = match r.text("JobId") {
        "" => return Err(ValueError("JobId is empty: the run cannot be keyed".into())),
        s => s.parse::<u64>().map_err(|_| ValueError(format!("JobId {s:?} is not a number")))?,
    };
    let submit = r
        .time("SubmitTime", tz)?
        .ok_or_else(|| ValueError("SubmitTime is missing or unknown: the run cannot be keyed".into()))?;
    let cluster = match (r.text("ClusterName"), r.text("Cluster")) {
        ("", "") => default_cluster.clone(),
        ("", c) | (c, _) => ClusterName::new(c).map_err(ValueError)?,
    };

    let array_job = r.u64("ArrayJobId")?.filter(|&a| a > 0);
    let task_text = r.text("ArrayTaskId");
    let (array_task, array_range) = match task_text.parse::<u32>() {
        Ok(t) => (Some(t), String::new()),
        Err(_) => (None, task_text.split('%').next().unwrap_or("").to_string()),
    };
    let het_job = r.u64("HetJobId")?.filter(|&h| h > 0);
    let het_offset = r.u64("HetJobOffset")?;
    let job_id = match (array_job, het_job) {
        (Some(a), _) if array_task.is_some() => format!("{a}_{}", array_task.unwrap_or(0)),
        (Some(a), _) if !array_range.is_empty() => format!("{a}_[{array_range}]"),
        (_, Some(h)) => format!("{h}+{}", het_offset.unwrap_or(0)),
        _ => raw.to_string(),
    };
    let mut run = JobRun::new(JobKey { cluster, job_id_raw: raw, submit }, job_id);
    run.array_job_id = array_job;
    run.array_task_id = array_job.and(array_task);
    run.het_job_id = het_job;
    if het_job.is_some() {
        let off = het_offset.unwrap_or(0);
        run.het_job_offset =
            Some(u32::try_from(off).map_err(|_| ValueError(format!("HetJobOffset {off} is too large")))?);
    }
    run.name = r.get("JobName").unwrap_or("").to_string();
    (run.user, run.uid) = name_and_id("UserId", r.text("UserId"))?;
    run.group = name_and_id("GroupId", r.text("GroupId"))?.0;
    run.account = r.text("Account").to_string();
    run.qos = r.text("QOS").to_string();
    run.wckey = r.text("WCKey").to_string();
    run.partition = r.text("Partition").to_string();
    run.reservation = r.text("Reservation").to_string();
    (run.state, run.cancelled_by) =
        v::parse_state(r.text("JobState")).map_err(|e| ValueError(format!("JobState: {}", e.0)))?;
    run.exit_code = v::parse_exit_code(r.text("ExitCode"))?;
    run.derived_exit_code = v::parse_exit_code(r.text("DerivedExitCode"))?;
    run.nodelist = match r.text("NodeList") {
        "None assigned" => String::new(),
        n => n.to_string(),
    };
    let is_final = run.state.is_final();
    let never_ran = run.state == JobState::Pending || (is_final && run.nodelist.is_empty());
    run.eligible = r.time("EligibleTime", tz)?;
    let start = r.time("StartTime", tz)?;
    let end = r.time("EndTime", tz)?;
    run.start = if never_ran { None } else { start };
    run.end = if is_final { end } else { None };
    run.elapsed_secs =
        v::parse_duration_ms(r.text("RunTime")).map_err(|e| ValueError(format!("RunTime: {}", e.0)))? / 1000;
    if let Some(start) = run.start {
        run.suspended_secs = match run.end {
            // Wall time not spent running.
            Some(end) if end >= start => u64::try_from(end.0 - start.0).unwrap_or(0).saturating_sub(run.elapsed_secs),
            _ => {
                let suspend_time = r.time("SuspendTime", tz)?;
                let pre_sus = r.u64("SecsPreSuspend")?.unwrap_or(0);
                live_suspended_secs(start, suspend_time, pre_sus, &run.state)
            }
        };
    }
    run.timelimit_mins =
        v::parse_timelimit_mins(r.text("TimeLimit")).map_err(|e| ValueError(format!("TimeLimit: {}", e.0)))?;
    run.nnodes = r.count("NumNodes")?;
    let cpus = r.count("NumCPUs")?;
    run.req_cpus = cpus;

    let tres =
        |key: &str| v::parse_tres(r.text(key), TresKind::Alloc).map_err(|e| ValueError(format!("{key}: {}", e.0)));
    run.req_tres = tres("ReqTRES")?;
    run.alloc_tres = tres("AllocTRES")?;
    let plain = tres("TRES")?;
    if !plain.is_empty() {
        // 22.05 prints one `TRES=`: the allocation once the job has nodes, else the request.
        if run.nodelist.is_empty() {
            if run.req_tres.is_empty() {
                run.req_tres = plain;
            }
        } else if run.alloc_tres.is_empty() {
            run.alloc_tres = plain;
        }
    }
    run.alloc_cpus = match run.alloc_tres.get("cpu") {
        Some(c) => u32::try_from(c).map_err(|_| ValueError(format!("allocated cpu {c} does not fit in 32 bits")))?,
        None if !run.nodelist.is_empty() => cpus,
        None => 0,
    };
    for (key, per_cpu) in [("MinMemoryCPU", true), ("MinMemoryNode", false)] {
        match r.text(key) {
            "" | "0" => {}
            m => {
                run.req_mem_bytes = Some(v::parse_bytes(m, 'M').map_err(|e| ValueError(format!("{key}: {}", e.0)))?);
                run.req_mem_per_cpu = per_cpu;
                break;
            }
        }
    }
    run.work_dir = r.text("WorkDir").to_string();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExitCode, UnixTime};
    use proptest::prelude::*;

    const ALL: &str = include_str!("../../tests/fixtures/testbed/scontrol-show-job-all.txt");
    const ONELINER: &str = include_str!("../../tests/fixtures/testbed/scontrol-show-job-oneliner.txt");
    const RUNNING: &str = include_str!("../../tests/fixtures/testbed/scontrol-show-job-running.txt");
    const FINISHED: &str = include_str!("../../tests/fixtures/testbed/scontrol-show-job-finished.txt");

    fn cluster() -> ClusterName {
        ClusterName::new("testcluster").unwrap()
    }

    fn read(text: &str) -> Vec<Item> {
        read_scontrol_jobs(text, &cluster(), &TimeZone::Utc)
    }

    fn runs(text: &str) -> Vec<JobRun> {
        read(text)
            .into_iter()
            .map(|i| match i {
                Item::Job(j) => *j,
                Item::Quarantine(q) => panic!("quarantined line {}: {}", q.line, q.reason),
            })
            .collect()
    }

    fn t(s: &str) -> Option<UnixTime> {
        v::parse_time(s, &TimeZone::Utc).unwrap()
    }

    #[test]
    fn running_job_25() {
        let r = runs(RUNNING);
        assert_eq!(r.len(), 1);
        let j = &r[0];
        assert_eq!((j.key.job_id_raw, j.job_id.as_str(), j.name.as_str()), (25, "25", "still-running"));
        assert_eq!(j.key.submit, t("2026-11-22T00:25:06").unwrap());
        assert_eq!(j.key.cluster.as_str(), "testcluster");
        assert_eq!((j.user.as_str(), j.uid, j.group.as_str()), ("bob", Some(1002), "bob"));
        assert_eq!((j.account.as_str(), j.qos.as_str(), j.wckey.as_str()), ("engineering", "normal", "*proj-beta"));
        assert_eq!((j.state.clone(), j.partition.as_str()), (JobState::Running, "gpu"));
        assert_eq!(j.start, t("2026-11-22T00:25:06"));
        assert_eq!(j.end, None, "EndTime of a running job is the expected end");
        assert_eq!((j.elapsed_secs, j.suspended_secs), (50, 0));
        assert_eq!(j.timelimit_mins, Some(1440));
        assert_eq!((j.nnodes, j.alloc_cpus, j.req_cpus), (1, 4, 4));
        assert_eq!(j.alloc_tres.get("gres/gpu"), Some(2));
        assert_eq!(j.alloc_tres.get("mem"), Some(1 << 30));
        assert_eq!(j.gpus(), 2);
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(256 << 20), true));
        assert_eq!(j.nodelist, "vm");
        assert_eq!(j.work_dir, "/var/lib/slurm-testbed");
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
    }

    #[test]
    fn finished_job_24_with_suspension() {
        let r = runs(FINISHED);
        assert_eq!(r.len(), 1);
        let j = &r[0];
        assert_eq!((j.key.job_id_raw, j.name.as_str(), j.state.clone()), (24, "suspend-me", JobState::Completed));
        assert_eq!((j.user.as_str(), j.uid), ("alice", Some(1001)));
        assert_eq!(j.start, t("2026-11-22T00:22:29"));
        assert_eq!(j.end, t("2026-11-22T00:22:46"));
        assert_eq!((j.elapsed_secs, j.suspended_secs), (9, 8));
        assert_eq!(j.timelimit_mins, Some(5));
        assert_eq!(j.alloc_tres.to_canonical(), format!("billing=1,cpu=1,mem={},node=1", 256u64 << 20));
    }

    #[test]
    fn multiline_and_oneliner_agree() {
        let a = runs(ALL);
        let o = runs(ONELINER);
        assert_eq!(a.len(), 28);
        assert_eq!(a, o);
        // The single-job captures are the same records as in the full listing.
        let a25 = a.iter().find(|j| j.key.job_id_raw == 25).unwrap();
        assert_eq!(a25.key, runs(RUNNING)[0].key);
    }

    #[test]
    fn special_records() {
        let a = runs(ALL);
        let by = |raw: u64| a.iter().find(|j| j.key.job_id_raw == raw).unwrap();
        assert_eq!(by(10).name, "pipe|name ünïcødé ✓");
        for (task, raw) in [(0u32, 15u64), (1, 16), (2, 19), (3, 7)] {
            assert_eq!(by(raw).job_id, format!("7_{task}"));
            assert_eq!((by(raw).array_job_id, by(raw).array_task_id), (Some(7), Some(task)));
        }
        let h = by(14);
        assert_eq!((h.job_id.as_str(), h.het_job_id, h.het_job_offset), ("13+1", Some(13), Some(1)));
        assert_eq!(h.name, "het-job", "HetJobIdSet follows JobName in -o output");
        assert_eq!((h.start, h.end.is_some()), (None, true), "cancelled while pending: never started");
        assert!(h.alloc_tres.is_empty());
        assert_eq!(h.req_tres.get("cpu"), Some(2));
        assert_eq!((h.req_mem_bytes, h.req_mem_per_cpu), (Some(300 << 20), false));
        assert_eq!(by(9).exit_code, Some(ExitCode { code: 1, signal: 0 }));
        assert_eq!(by(12).exit_code, Some(ExitCode { code: 0, signal: 9 }));
        assert_eq!(by(17).elapsed_secs, 76);
        let p = by(26);
        assert_eq!((p.state.clone(), p.start, p.end), (JobState::Pending, None, None));
        assert_eq!(p.req_tres.get("gres/gpu"), Some(1));
        assert_eq!(p.eligible, t("2026-11-22T00:25:07"));
        let held = by(28);
        assert_eq!((held.eligible, held.start), (None, None));
        assert_eq!(by(27).wckey, "*");
        // "Comment=billing test": free text with a space, next to known keys.
        assert_eq!(by(3).work_dir, "/var/lib/slurm-testbed");
    }

    #[test]
    fn pairs_split_on_known_keys() {
        let mut p = Vec::new();
        split_pairs("JobId=1 JobName=a b=c Account=x UserId=u(1) GroupId=g(2)", &mut p);
        assert_eq!(p[1], ("JobName", "a b=c Account=x"));
        assert_eq!(p[2], ("UserId", "u(1)"));
        let mut p = Vec::new();
        split_pairs("   NodeList= SchedNodeList=vm", &mut p);
        assert_eq!(p, vec![("NodeList", ""), ("SchedNodeList", "vm")]);
        let mut p = Vec::new();
        split_pairs("   Comment=billing test x=1 StdErr=/a b/c.out TRES=cpu=1,mem=1G", &mut p);
        assert_eq!(p, vec![("Comment", "billing test x=1"), ("StdErr", "/a b/c.out"), ("TRES", "cpu=1,mem=1G")]);
    }

    #[test]
    fn time_zone_applies() {
        let berlin = TimeZone::from_name("Europe/Berlin").unwrap();
        let j = match &read_scontrol_jobs(FINISHED, &cluster(), &berlin)[0] {
            Item::Job(j) => j.clone(),
            Item::Quarantine(q) => panic!("{}", q.reason),
        };
        assert_eq!(j.key.submit.0, t("2026-11-22T00:22:29").unwrap().0 - 3600);
    }

    #[test]
    fn bad_records_are_quarantined() {
        let text = "slurm_load_jobs error: Invalid job id specified\n\
                    JobId=abc JobName=x\n   SubmitTime=2026-11-22T00:25:06 JobState=RUNNING\n\n\
                    JobId=5 JobName=y\n   JobState=RUNNING\n\n\
                    JobId=6 JobName=z UserId=u(1) JobState=RUNNING SubmitTime=2026-11-22T00:25:06 RunTime=x\n\
                    JobId=7 JobName=ok UserId=u(1) JobState=COMPLETED SubmitTime=2026-11-22T00:25:06 RunTime=00:00:01\n";
        let items = read(text);
        assert_eq!(items.len(), 5);
        let q: Vec<&Quarantined> =
            items.iter().filter_map(|i| if let Item::Quarantine(q) = i { Some(q) } else { None }).collect();
        assert_eq!(q.len(), 4);
        assert_eq!(q[0].line, 1);
        assert!(q[0].reason.contains("JobId="));
        assert!(q[1].reason.contains("JobId") && q[1].line == 2 && q[1].raw.contains("JobName=x"), "{:?}", q[1]);
        assert!(q[2].reason.contains("SubmitTime"), "{}", q[2].reason);
        assert!(q[3].reason.contains("RunTime"), "{}", q[3].reason);
        assert!(read("No jobs in the system\n").is_empty());
        for empty in ["", "\n  \n"] {
            let items = read(empty);
            assert!(matches!(&items[..], [Item::Quarantine(q)] if q.reason.contains("empty")), "{items:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn never_panics(s in "\\PC{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300), cut in 0usize..ALL.len()) {
            let _ = read(&s);
            let _ = read(&format!("JobId={s}"));
            let _ = read(&String::from_utf8_lossy(&bytes));
            if ALL.is_char_boundary(cut) {
                let _ = read(&ALL[..cut]);
                let _ = read(&ALL[cut..]);
            }
        }
    }
}
