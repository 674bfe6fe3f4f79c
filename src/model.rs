//! Shared vocabulary: the types every module speaks.
//!
//! A [`JobRun`] is one run of one Slurm job: the unit the ledger stores, the meter bills and the
//! sinks report. It is keyed by [`JobKey`] = (cluster, JobIDRaw, submit time), which is the key
//! slurmdbd itself uses for a job record, so that a requeued job's earlier run and a reused job id
//! never overwrite each other.
//!
//! Invariants:
//! - Every instant is a [`UnixTime`] (UTC seconds). Local-time strings stop at the `slurm` module.
//! - Every memory quantity is in bytes; every CPU time is in milliseconds; TRES counts are
//!   integers in the unit named by [`Tres`].
//! - Nothing here does I/O or reads a clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// RFC 3339 in UTC, e.g. `2026-11-22T00:21:57Z`.
    pub fn to_rfc3339(self) -> String {
        match jiff::Timestamp::from_second(self.0) {
            Ok(ts) => ts.to_string(),
            Err(_) => format!("@{}", self.0),
        }
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`). The
/// one copy of this arithmetic: Slurm's UTC times, billing periods and RFC 3339 output use it.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// A Slurm cluster name as slurmdbd knows it (`ClusterName` in slurm.conf).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterName(String);

impl ClusterName {
    /// A cluster name must be non-empty and free of whitespace and delimiters.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(format!("cluster name {name:?} is not valid: use 1-64 characters of letters, digits, '-', '_' or '.'"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of one job run: slurmdbd's own unique key for a job record.
///
/// `submit` tells runs apart: Slurm resets the submit time when it requeues a job, and a job id
/// reused after a controller reset has a new submit time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    pub cluster: ClusterName,
    pub job_id_raw: u64,
    pub submit: UnixTime,
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.cluster, self.job_id_raw, self.submit.0)
    }
}

/// Slurm job states. `Other` keeps any state this version does not know, never dropping it.
/// Serialized as Slurm spells it (`COMPLETED`), as the tables print it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Running,
    Suspended,
    Completing,
    Configuring,
    Requeued,
    RequeueHold,
    RequeueFed,
    Resizing,
    Signaling,
    StageOut,
    Stopped,
    SpecialExit,
    Revoked,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    Other(String),
}

impl JobState {
    /// Parses Slurm's state name (upper case, as sacct, squeue and the JSON formats print it).
    pub fn from_slurm(name: &str) -> Self {
        match name {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "SUSPENDED" => Self::Suspended,
            "COMPLETING" => Self::Completing,
            "CONFIGURING" => Self::Configuring,
            "REQUEUED" => Self::Requeued,
            "REQUEUE_HOLD" => Self::RequeueHold,
            "REQUEUE_FED" => Self::RequeueFed,
            "RESIZING" => Self::Resizing,
            "SIGNALING" => Self::Signaling,
            "STAGE_OUT" => Self::StageOut,
            "STOPPED" => Self::Stopped,
            "SPECIAL_EXIT" => Self::SpecialExit,
            "REVOKED" => Self::Revoked,
            "COMPLETED" => Self::Completed,
            "CANCELLED" => Self::Cancelled,
            "FAILED" => Self::Failed,
            "TIMEOUT" => Self::Timeout,
            "NODE_FAIL" => Self::NodeFail,
            "PREEMPTED" => Self::Preempted,
            "BOOT_FAIL" => Self::BootFail,
            "DEADLINE" => Self::Deadline,
            "OUT_OF_MEMORY" => Self::OutOfMemory,
            other => Self::Other(other.to_string()),
        }
    }

    /// Slurm's name for the state.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Suspended => "SUSPENDED",
            Self::Completing => "COMPLETING",
            Self::Configuring => "CONFIGURING",
            Self::Requeued => "REQUEUED",
            Self::RequeueHold => "REQUEUE_HOLD",
            Self::RequeueFed => "REQUEUE_FED",
            Self::Resizing => "RESIZING",
            Self::Signaling => "SIGNALING",
            Self::StageOut => "STAGE_OUT",
            Self::Stopped => "STOPPED",
            Self::SpecialExit => "SPECIAL_EXIT",
            Self::Revoked => "REVOKED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::NodeFail => "NODE_FAIL",
            Self::Preempted => "PREEMPTED",
            Self::BootFail => "BOOT_FAIL",
            Self::Deadline => "DEADLINE",
            Self::OutOfMemory => "OUT_OF_MEMORY",
            Self::Other(s) => s,
        }
    }

    /// Every state this reader knows (Slurm's names are their [`JobState::as_str`]).
    pub const KNOWN: [JobState; 23] = [
        Self::Pending,
        Self::Running,
        Self::Suspended,
        Self::Completing,
        Self::Configuring,
        Self::Requeued,
        Self::RequeueHold,
        Self::RequeueFed,
        Self::Resizing,
        Self::Signaling,
        Self::StageOut,
        Self::Stopped,
        Self::SpecialExit,
        Self::Revoked,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
        Self::Timeout,
        Self::NodeFail,
        Self::Preempted,
        Self::BootFail,
        Self::Deadline,
        Self::OutOfMemory,
    ];

    /// True when this run of the job will not change any more: it ended (any terminal state),
    /// or it was requeued or resized (Slurm starts a new record with a new submit time and
    /// leaves this one, ended, in REQUEUED or RESIZING).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Cancelled
                | Self::Failed
                | Self::Timeout
                | Self::NodeFail
                | Self::Preempted
                | Self::BootFail
                | Self::Deadline
                | Self::OutOfMemory
                | Self::Revoked
                | Self::Resizing
                | Self::SpecialExit
                | Self::Requeued
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `code:signal` as Slurm prints an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCode {
    pub code: u32,
    pub signal: u32,
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.code, self.signal)
    }
}

/// Trackable resources as integer counts, sorted by name.
///
/// Units: `mem`, `vmem`, `fs/*` and other byte quantities in bytes; `cpu` in a usage string
/// (TRESUsageIn*) in seconds; everything else a plain count (`cpu`, `node`, `billing`,
/// `gres/gpu`, `gres/gpu:a100`, `energy` in joules).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tres(Vec<(TresName, u64)>);

/// A TRES name: the common ones are shared static text, so reading a million jobs does not
/// allocate a `String` per entry.
type TresName = std::borrow::Cow<'static, str>;

fn tres_name(name: &str) -> TresName {
    match common_tres(name) {
        Some(c) => TresName::Borrowed(c),
        None => TresName::Owned(name.to_string()),
    }
}

fn tres_name_owned(name: String) -> TresName {
    match common_tres(&name) {
        Some(c) => TresName::Borrowed(c),
        None => TresName::Owned(name),
    }
}

/// The static copy of a name Slurm prints on every cluster; a `match` compares by length first.
fn common_tres(name: &str) -> Option<&'static str> {
    Some(match name {
        "billing" => "billing",
        "cpu" => "cpu",
        "energy" => "energy",
        "fs/disk" => "fs/disk",
        "gres/gpu" => "gres/gpu",
        "mem" => "mem",
        "node" => "node",
        "pages" => "pages",
        "vmem" => "vmem",
        "fs/lustre" => "fs/lustre",
        "ic/ofed" => "ic/ofed",
        "license" => "license",
        _ => return None,
    })
}

impl Tres {
    /// Builds from pairs; later duplicates of a name replace earlier ones.
    pub fn from_pairs<I: IntoIterator<Item = (String, u64)>>(pairs: I) -> Self {
        let mut t = Self::default();
        for (k, n) in pairs {
            match t.find(&k) {
                Ok(i) => t.0[i].1 = n,
                Err(i) => t.0.insert(i, (tres_name_owned(k), n)),
            }
        }
        t
    }

    /// An empty set with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// Removes every entry, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Sets one entry; a name already present is replaced.
    pub fn set(&mut self, name: &str, n: u64) {
        match self.find(name) {
            Ok(i) => self.0[i].1 = n,
            Err(i) => self.0.insert(i, (tres_name(name), n)),
        }
    }

    /// Index of `name`, or where it would go. Slurm prints names sorted, so the last entry is
    /// checked first.
    fn find(&self, name: &str) -> Result<usize, usize> {
        match self.0.last() {
            None => Err(0),
            Some((last, _)) if last.as_ref() < name => Err(self.0.len()),
            _ => self.0.binary_search_by(|(k, _)| k.as_ref().cmp(name)),
        }
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.find(name).ok().map(|i| self.0[i].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, n)| (k.as_ref(), *n))
    }

    /// GPUs allocated, counted once: the untyped `gres/gpu` when present (Slurm adds it beside the
    /// typed `gres/gpu:<type>` entries), else the sum of the typed entries.
    pub fn gpus(&self) -> u64 {
        if let Some(n) = self.get("gres/gpu") {
            return n;
        }
        self.iter().filter(|(k, _)| k.starts_with("gres/gpu:")).map(|(_, n)| n).sum()
    }

    /// Adds `other` into `self`: sums every entry, except the peak quantities (`mem`, `vmem`),
    /// which keep the maximum. Used to aggregate step usage into a job run.
    pub fn accumulate_usage(&mut self, other: &Tres) {
        for (k, n) in other.iter() {
            self.accumulate_one(k, n);
        }
    }

    /// Adds one usage entry: a sum, or the maximum for the peaks `mem` and `vmem`. Allocates
    /// only for a name not seen before.
    pub fn accumulate_one(&mut self, k: &str, n: u64) {
        let peak = k == "mem" || k == "vmem";
        match self.find(k) {
            Ok(i) => {
                let cur = &mut self.0[i].1;
                *cur = if peak { (*cur).max(n) } else { cur.saturating_add(n) };
            }
            Err(i) => self.0.insert(i, (tres_name(k), n)),
        }
    }

    /// Adds usage entries as [`Tres::accumulate_one`] does, in one merge pass when they come in
    /// name order (Slurm prints them sorted); an entry out of order is searched for instead.
    pub fn accumulate_sorted<'a>(&mut self, entries: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut at = 0;
        for (k, n) in entries {
            let found = if self.0.get(at).is_some_and(|(name, _)| name.as_ref() == k) {
                // The usual case: the same names as the step before, in the same order.
                Ok(at)
            } else if at > 0 && self.0[at - 1].0.as_ref() >= k {
                self.find(k)
            } else {
                let mut i = at;
                while i < self.0.len() && self.0[i].0.as_ref() < k {
                    i += 1;
                }
                if i < self.0.len() && self.0[i].0.as_ref() == k {
                    Ok(i)
                } else {
                    Err(i)
                }
            };
            let peak = k == "mem" || k == "vmem";
            at = match found {
                Ok(i) => {
                    let cur = &mut self.0[i].1;
                    *cur = if peak { (*cur).max(n) } else { cur.saturating_add(n) };
                    i + 1
                }
                Err(i) => {
                    self.0.insert(i, (tres_name(k), n));
                    i + 1
                }
            };
        }
    }

    /// Canonical text `name=count,...` (sorted by name, plain integers), stored in the ledger.
    pub fn to_canonical(&self) -> String {
        let mut s = String::new();
        self.write_canonical(&mut s);
        s
    }

    /// Appends the canonical text to `out`.
    pub fn write_canonical(&self, out: &mut String) {
        use std::fmt::Write;
        for (i, (k, n)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            let _ = write!(out, "{n}");
        }
    }

    /// Reads the canonical text back. Returns `None` on anything but `name=integer` pairs.
    pub fn from_canonical(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(Self::default());
        }
        let mut pairs = Vec::new();
        for part in s.split(',') {
            let (k, v) = part.split_once('=')?;
            pairs.push((k.to_string(), v.parse().ok()?));
        }
        Some(Self::from_pairs(pairs))
    }
}

/// One run of one Slurm job, with its steps' usage aggregated into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub key: JobKey,
    /// The id a person sees: `42`, `7_3`, `7_[2-3,5]`, `13+1`.
    pub job_id: String,
    pub array_job_id: Option<u64>,
    pub array_task_id: Option<u32>,
    pub het_job_id: Option<u64>,
    pub het_job_offset: Option<u32>,
    pub name: String,
    pub user: String,
    pub uid: Option<u32>,
    pub group: String,
    pub account: String,
    pub partition: String,
    pub qos: String,
    pub state: JobState,
    /// For `CANCELLED by <uid>`: who cancelled.
    pub cancelled_by: Option<u32>,
    pub exit_code: Option<ExitCode>,
    pub derived_exit_code: Option<ExitCode>,
    pub eligible: Option<UnixTime>,
    pub start: Option<UnixTime>,
    pub end: Option<UnixTime>,
    /// Run time in seconds, suspended time excluded (Slurm's ElapsedRaw).
    pub elapsed_secs: u64,
    pub suspended_secs: u64,
    /// Time limit in minutes; `None` when unlimited or unknown.
    pub timelimit_mins: Option<u64>,
    pub nnodes: u32,
    pub alloc_cpus: u32,
    pub req_cpus: u32,
    /// Requested memory in bytes, per node or per CPU as `req_mem_per_cpu` says.
    pub req_mem_bytes: Option<u64>,
    pub req_mem_per_cpu: bool,
    pub req_tres: Tres,
    pub alloc_tres: Tres,
    /// Compressed node list as Slurm prints it (`node[01-04]`); empty when none was assigned.
    pub nodelist: String,
    /// CPU time used by the job's steps, in milliseconds.
    pub total_cpu_ms: u64,
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    /// Largest MaxRSS of any step, in bytes.
    pub max_rss_bytes: Option<u64>,
    /// TRESUsageInTot summed over steps (peaks `mem`/`vmem` take the maximum).
    pub tres_usage_in_tot: Tres,
    pub step_count: u32,
    pub energy_joules: Option<u64>,
    pub wckey: String,
    pub reservation: String,
    pub flags: String,
    pub work_dir: String,
    pub submit_line: String,
    pub db_index: Option<u64>,
    /// The reader derived `elapsed_secs` as End − Start − Suspended: its input had no ElapsedRaw
    /// or Elapsed column (a layout older tools record). Said on the collect line; not stored.
    #[serde(skip)]
    pub elapsed_derived: bool,
    /// The reader took the key's JobIDRaw from a plain JobID: its input had no JobIDRaw column.
    /// Said on the collect line; not stored.
    #[serde(skip)]
    pub job_id_raw_from_job_id: bool,
    /// What slurmctld allocated the run node by node (`scontrol show job -d`), when it was asked
    /// while it still knew the job; `None`: not asked, or asked too late. Stored apart from the
    /// run's content (it never changes its hash or `change_seq`) and filled by `Ledger::job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
}

/// A run's allocation detail as slurmctld holds it while it knows the job (until MinJobAge after
/// its end): which hardware threads and GPUs on which node. slurmdbd keeps none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// One entry per node, in Slurm's order.
    pub nodes: Vec<NodeAllocation>,
    /// The job's comment (some sites list the GPUs' addresses there; cc-slurm-adapter's fallback).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The batch script (`scontrol write batch_script`), when a sink wants it (cc-backend's
    /// `job_script`) and the job has one; at most [`MAX_SCRIPT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// The longest batch script kept (longer ones are cut, with a note).
pub const MAX_SCRIPT: usize = 1 << 20;

/// One node of an [`Allocation`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAllocation {
    pub hostname: String,
    /// Slurm's CPU ids on the node (its abstract numbering: `CPU_IDs` of `scontrol -d`), sorted.
    pub hwthreads: Vec<u32>,
    /// GPU indices on the node (GRES `IDX`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
}

/// One node as `sinfo` shows it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// The node name (as job node lists name it).
    pub name: String,
    /// Slurm's state words, lower case, base state first, then its flags (`idle`, `drain`).
    pub states: Vec<String>,
    pub cpus_allocated: u32,
    pub memory_allocated_bytes: u64,
    pub gpus_allocated: u32,
}

impl JobRun {
    /// An empty run with only its key and id set; parsers fill in the rest.
    pub fn new(key: JobKey, job_id: String) -> Self {
        Self {
            key,
            job_id,
            array_job_id: None,
            array_task_id: None,
            het_job_id: None,
            het_job_offset: None,
            name: String::new(),
            user: String::new(),
            uid: None,
            group: String::new(),
            account: String::new(),
            partition: String::new(),
            qos: String::new(),
            state: JobState::Pending,
            cancelled_by: None,
            exit_code: None,
            derived_exit_code: None,
            eligible: None,
            start: None,
            end: None,
            elapsed_secs: 0,
            suspended_secs: 0,
            timelimit_mins: None,
            nnodes: 0,
            alloc_cpus: 0,
            req_cpus: 0,
            req_mem_bytes: None,
            req_mem_per_cpu: false,
            req_tres: Tres::default(),
            alloc_tres: Tres::default(),
            nodelist: String::new(),
            total_cpu_ms: 0,
            user_cpu_ms: 0,
            system_cpu_ms: 0,
            max_rss_bytes: None,
            tres_usage_in_tot: Tres::default(),
            step_count: 0,
            energy_joules: None,
            wckey: String::new(),
            reservation: String::new(),
            flags: String::new(),
            work_dir: String::new(),
            submit_line: String::new(),
            db_index: None,
            elapsed_derived: false,
            job_id_raw_from_job_id: false,
            allocation: None,
        }
    }

    /// GPUs allocated to the run, typed and untyped entries counted once.
    pub fn gpus(&self) -> u64 {
        self.alloc_tres.gpus()
    }
}

/// Step usage that is folded into its job run. Steps are not stored on their own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepUsage {
    pub total_cpu_ms: u64,
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    pub max_rss_bytes: Option<u64>,
    pub tres_usage_in_tot: Tres,
    pub energy_joules: Option<u64>,
}

impl JobRun {
    /// Folds one step's usage into the run.
    pub fn add_step(&mut self, s: &StepUsage) {
        self.step_count += 1;
        self.total_cpu_ms = self.total_cpu_ms.saturating_add(s.total_cpu_ms);
        self.user_cpu_ms = self.user_cpu_ms.saturating_add(s.user_cpu_ms);
        self.system_cpu_ms = self.system_cpu_ms.saturating_add(s.system_cpu_ms);
        if let Some(r) = s.max_rss_bytes {
            self.max_rss_bytes = Some(self.max_rss_bytes.map_or(r, |m| m.max(r)));
        }
        self.tres_usage_in_tot.accumulate_usage(&s.tres_usage_in_tot);
        if let Some(e) = s.energy_joules {
            self.energy_joules = Some(self.energy_joules.unwrap_or(0).saturating_add(e));
        }
    }
}

impl Serialize for JobState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_slurm(&String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_not_double_counted() {
        // AllocTRES of the testbed's GPU job (capture/sacct-steps-parsable2.txt, job 11).
        let t = Tres::from_pairs([
            ("billing".into(), 1),
            ("cpu".into(), 1),
            ("gres/gpu:fake".into(), 1),
            ("gres/gpu".into(), 1),
        ]);
        assert_eq!(t.gpus(), 1);
        let typed_only = Tres::from_pairs([("gres/gpu:a100".into(), 2), ("gres/gpu:v100".into(), 1)]);
        assert_eq!(typed_only.gpus(), 3);
    }

    #[test]
    fn canonical_roundtrip_sorts() {
        let t = Tres::from_pairs([("node".into(), 1), ("cpu".into(), 4), ("mem".into(), 1 << 30)]);
        assert_eq!(t.to_canonical(), "cpu=4,mem=1073741824,node=1");
        assert_eq!(Tres::from_canonical(&t.to_canonical()), Some(t));
        assert_eq!(Tres::from_canonical("cpu=x"), None);
    }

    #[test]
    fn usage_accumulates_sum_and_peak() {
        let mut a = Tres::from_pairs([("cpu".into(), 10), ("mem".into(), 100)]);
        a.accumulate_usage(&Tres::from_pairs([("cpu".into(), 5), ("mem".into(), 50), ("energy".into(), 3)]));
        assert_eq!(a.to_canonical(), "cpu=15,energy=3,mem=100");
    }

    #[test]
    fn sorted_accumulation_matches_one_by_one() {
        let steps: [&[(&str, u64)]; 4] = [
            &[("cpu", 1), ("energy", 0), ("fs/disk", 10), ("mem", 5), ("pages", 0), ("vmem", 9)],
            &[("cpu", 2), ("fs/disk", 1), ("gres/gpu:a100", 1), ("mem", 7), ("vmem", 3)],
            // Out of order and repeated names still add up.
            &[("vmem", 20), ("cpu", 3), ("cpu", 1), ("aaa", 4), ("mem", 1)],
            &[],
        ];
        let (mut merged, mut single) = (Tres::default(), Tres::default());
        for step in steps {
            merged.accumulate_sorted(step.iter().copied());
            for (k, n) in step {
                single.accumulate_one(k, *n);
            }
            assert_eq!(merged, single);
        }
        assert_eq!(merged.to_canonical(), "aaa=4,cpu=7,energy=0,fs/disk=11,gres/gpu:a100=1,mem=7,pages=0,vmem=20");
    }

    #[test]
    fn requeued_run_is_final_but_running_is_not() {
        assert!(JobState::Requeued.is_final());
        assert!(JobState::OutOfMemory.is_final());
        assert!(!JobState::Running.is_final());
        assert!(!JobState::Suspended.is_final());
        assert_eq!(JobState::from_slurm("WEIRD_NEW"), JobState::Other("WEIRD_NEW".into()));
        for known in &JobState::KNOWN {
            let name = known.as_str();
            assert_eq!(&JobState::from_slurm(name), known, "{name}");
            assert_eq!(serde_json::to_string(known).unwrap(), format!("\"{name}\""));
        }
    }
}
