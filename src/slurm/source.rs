//! The Slurm source: what the installed Slurm is, and the one sacct call per poll.
//!
//! Per poll slurm-ledger makes exactly one accounting query for all users and accounts:
//! `sacct --allusers --duplicates --parsable2 --delimiter=<0x1F> --noconvert --format=<fields>
//! --starttime=<start> --endtime=<end> --clusters=<c>`, with steps (no `-X`: job rows under `-X`
//! carry no CPU usage), requeued runs (`--duplicates`), a delimiter that cannot occur in data,
//! exact units (`--noconvert`), the header line kept (columns are found by name, not position)
//! and times pinned to UTC (`TZ=UTC`, `SLURM_TIME_FORMAT=standard`).
//! The only other accounting query is by job id (`--jobs=…`, same fields, no window), made only
//! when runs the ledger holds open were missing from the window (see `collect`): none in
//! steady state.
//! `sacct --version`, `sacct --helpformat` and `scontrol show config` are local calls that do
//! not query slurmdbd.
//!
//! For the sinks that want them (cc-backend), slurmctld is asked two more things: a run's
//! allocation detail (`scontrol -d show job <id>`, one call: scontrol takes one job id, so
//! several ids are one `scontrol -d show job` of every job slurmctld holds; `--json` from 23.11,
//! see [`ALLOC_JSON_SINCE`]), and the node states (`sinfo`, one call, [`SINFO_FORMAT`]).

use std::time::Duration;

use crate::model::{ClusterName, NodeState, UnixTime};

use super::alloc::{read_allocations_json, read_allocations_text, AllocRead};
use super::fields::{request_fields, Field};
use super::json::JsonError;
use super::parsable::{ParsableError, ReadOptions, SacctReader};
use super::runner::{Invocation, RunError, Runner, Started};
use super::sinfo::{read_sinfo_nodes, SinfoError, SINFO_FORMAT};
use super::values::{format_sacct_time, TimeZone};

/// The field delimiter slurm-ledger asks sacct for: ASCII unit separator, never in job data.
pub const DELIMITER: u8 = 0x1f;

/// Oldest Slurm whose output formats slurm-ledger reads.
pub const MIN_VERSION: SlurmVersion = SlurmVersion { major: 21, minor: 8, micro: 0 };

/// A Slurm release number (`22.05.8` is major 22, minor 5, micro 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlurmVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl std::fmt::Display for SlurmVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}.{}", self.major, self.minor, self.micro)
    }
}

impl SlurmVersion {
    /// Reads `slurm 22.05.8`, `slurm-wlm 22.05.8`, `slurm 23.11.0-0rc1`.
    pub fn parse(text: &str) -> Option<Self> {
        let word = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
        let mut it = word.split(['.', '-']);
        Some(Self {
            major: it.next()?.parse().ok()?,
            minor: it.next()?.parse().ok()?,
            micro: it.next().and_then(|m| m.parse().ok()).unwrap_or(0),
        })
    }
}

/// Errors of the Slurm source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot tell the Slurm version from `sacct --version` output {0:?}")]
    Version(String),
    #[error("Slurm {found} is older than {MIN_VERSION}, the oldest release slurm-ledger reads")]
    TooOld { found: SlurmVersion },
    #[error("`scontrol show config` printed no ClusterName; set [slurm] clusters in the config")]
    NoClusterName,
    #[error("the cluster name from `scontrol show config` is not usable: {0}")]
    BadClusterName(String),
    #[error(transparent)]
    Parse(#[from] ParsableError),
    #[error("reading `{command}`: {source}")]
    Json { command: String, source: JsonError },
    #[error("reading `{command}`: {source}")]
    Sinfo { command: String, source: SinfoError },
}

/// The first Slurm whose `scontrol --json show job` prints `job_resources.nodes.allocation`
/// (data_parser v0.0.40); older ones are read from `scontrol -d show job` text.
pub const ALLOC_JSON_SINCE: SlurmVersion = SlurmVersion { major: 23, minor: 11, micro: 0 };

/// What the installed Slurm is and can print.
#[derive(Debug, Clone)]
pub struct SlurmInfo {
    pub version: SlurmVersion,
    pub fields: Vec<Field>,
}

/// Reads Slurm through a [`Runner`].
pub struct SlurmSource<'r> {
    runner: &'r dyn Runner,
    timeout: Duration,
}

/// A time window for sacct's `-S`/`-E`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: UnixTime,
    pub end: UnixTime,
}

impl Window {
    /// The window as consecutive windows of at most `max` seconds (slurmdbd's
    /// MaxQueryTimeRange), in order, without gaps; `max` ≤ 0: the window whole. Empty when the
    /// window is.
    pub fn split(self, max: i64) -> impl Iterator<Item = Window> {
        let step = if max > 0 { max } else { i64::MAX };
        let mut start = self.start;
        std::iter::from_fn(move || {
            (start < self.end).then(|| {
                let w = Window { start, end: UnixTime(start.0.saturating_add(step).min(self.end.0)) };
                start = w.end;
                w
            })
        })
    }
}

impl<'r> SlurmSource<'r> {
    pub fn new(runner: &'r dyn Runner, timeout: Duration) -> Self {
        Self { runner, timeout }
    }

    fn inv(&self, program: &str, args: &[&str]) -> Invocation {
        let mut inv = Invocation::new(program, args, self.timeout);
        inv.env = pinned_env();
        inv
    }

    /// Asks sacct for its version and its field list.
    pub fn detect(&self) -> Result<SlurmInfo, SourceError> {
        let text = self.runner.run_to_string(&self.inv("sacct", &["--version"]))?;
        let version = SlurmVersion::parse(&text).ok_or_else(|| SourceError::Version(text.trim().to_string()))?;
        if version < MIN_VERSION {
            return Err(SourceError::TooOld { found: version });
        }
        // An old or restricted sacct without --helpformat still gets the fields all versions have.
        let help = self.runner.run_to_string(&self.inv("sacct", &["--helpformat"])).ok();
        let fields = request_fields(help.as_deref());
        Ok(SlurmInfo { version, fields })
    }

    /// The TRES slurmdbd knows (`sacctmgr show tres -P`), as their names (`cpu`, `gres/gpu`).
    pub fn list_tres(&self) -> Result<Vec<String>, SourceError> {
        Ok(parse_tres_list(&self.runner.run_to_string(&self.inv("sacctmgr", &["show", "tres", "-P"]))?))
    }

    /// The clusters slurmdbd knows (`sacctmgr show cluster -P`).
    pub fn list_clusters(&self) -> Result<Vec<String>, SourceError> {
        let text = self.runner.run_to_string(&self.inv("sacctmgr", &["show", "cluster", "-P"]))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split('|').next())
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != "Cluster")
            .map(str::to_string)
            .collect())
    }

    /// `scontrol --clusters=CLUSTER show job ID`: slurmctld's live view of a job, which it has a moment
    /// before slurmdbd (and sacct) does. A job slurmctld no longer holds (older than its
    /// MinJobAge) is an error: sacct has it by then.
    pub fn show_job(&self, cluster: &ClusterName, job_id: u64) -> Result<Vec<super::parsable::Item>, SourceError> {
        let id = job_id.to_string();
        let text = self
            .runner
            .run_to_string(&self.inv("scontrol", &[&format!("--clusters={cluster}"), "show", "job", &id]))?;
        Ok(super::scontrol::read_scontrol_jobs(&text, cluster, &TimeZone::Utc))
    }

    /// `scontrol --clusters=CLUSTER show job`: every job slurmctld holds, as [`Self::show_job`].
    pub fn show_jobs(&self, cluster: &ClusterName) -> Result<Vec<super::parsable::Item>, SourceError> {
        let text =
            self.runner.run_to_string(&self.inv("scontrol", &[&format!("--clusters={cluster}"), "show", "job"]))?;
        Ok(super::scontrol::read_scontrol_jobs(&text, cluster, &TimeZone::Utc))
    }

    /// `scontrol --clusters=CLUSTER write batch_script ID -`: the job's batch script, as slurmctld
    /// holds it (until MinJobAge after the end). A job without one (srun, salloc) is an error.
    pub fn batch_script(&self, cluster: &ClusterName, job_id: u64) -> Result<String, SourceError> {
        let id = job_id.to_string();
        Ok(self.runner.run_to_string(
            &self.inv("scontrol", &[&format!("--clusters={cluster}"), "write", "batch_script", &id, "-"]),
        )?)
    }

    /// The local cluster's name, from `scontrol show config` (asks slurmctld, not slurmdbd).
    pub fn local_cluster(&self) -> Result<ClusterName, SourceError> {
        let text = self.runner.run_to_string(&self.inv("scontrol", &["show", "config"]))?;
        let name = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "ClusterName").then(|| v.trim().to_string())
            })
            .ok_or(SourceError::NoClusterName)?;
        ClusterName::new(&name).map_err(SourceError::BadClusterName)
    }

    /// The one accounting query of a poll.
    pub fn sacct_invocation(&self, info: &SlurmInfo, cluster: &ClusterName, w: Window) -> Invocation {
        let window =
            [format!("--starttime={}", format_sacct_time(w.start)), format!("--endtime={}", format_sacct_time(w.end))];
        self.sacct(info, cluster, window)
    }

    /// The same query for given job ids at any time (`--jobs` without `--starttime` reads from
    /// the epoch): how runs left open in the ledger, whose end fell before the poll's window
    /// (slurmdbd received it late), are settled.
    pub fn sacct_jobs_invocation(&self, info: &SlurmInfo, cluster: &ClusterName, job_ids: &[u64]) -> Invocation {
        let ids: Vec<String> = job_ids.iter().map(u64::to_string).collect();
        self.sacct(info, cluster, [format!("--jobs={}", ids.join(","))])
    }

    /// sacct with the fields, format and options every accounting query shares, selecting
    /// with `selection` (a window or job ids) on `cluster`.
    fn sacct(
        &self,
        info: &SlurmInfo,
        cluster: &ClusterName,
        selection: impl IntoIterator<Item = String>,
    ) -> Invocation {
        let format = info.fields.iter().map(|f| f.name()).collect::<Vec<_>>().join(",");
        let mut args = vec![
            "--allusers".to_string(),
            "--duplicates".into(),
            "--parsable2".into(),
            format!("--delimiter={}", DELIMITER as char),
            "--noconvert".into(),
            format!("--format={format}"),
        ];
        args.extend(selection);
        args.push(format!("--clusters={cluster}"));
        Invocation { program: "sacct".into(), args, env: pinned_env(), timeout: self.timeout }
    }

    /// The one scontrol call that reads the allocation detail of `job_ids` (see the module doc):
    /// by id when there is one, else every job slurmctld holds (scontrol takes one id).
    pub fn allocations_invocation(&self, version: SlurmVersion, cluster: &ClusterName, job_ids: &[u64]) -> Invocation {
        let mut args = vec![format!("--clusters={cluster}")];
        args.push(if version >= ALLOC_JSON_SINCE { "--json".to_string() } else { "--details".to_string() });
        args.extend(["show".to_string(), "job".to_string()]);
        if let [one] = job_ids {
            args.push(one.to_string());
        }
        Invocation { program: "scontrol".into(), args, env: pinned_env(), timeout: self.timeout }
    }

    /// Reads the allocation detail of `job_ids` (one call). A job slurmctld no longer knows
    /// (MinJobAge passed) is simply absent; asked for by id, scontrol then fails with `Invalid
    /// job id specified`, which reads as nothing found.
    pub fn allocations(
        &self,
        version: SlurmVersion,
        cluster: &ClusterName,
        job_ids: &[u64],
    ) -> Result<AllocRead, SourceError> {
        let inv = self.allocations_invocation(version, cluster, job_ids);
        let text = match self.runner.run_to_string(&inv) {
            Ok(t) => t,
            Err(RunError::Failed { stderr, .. }) if job_ids.len() == 1 && stderr.contains("Invalid job id") => {
                return Ok(AllocRead::default());
            }
            Err(e) => return Err(e.into()),
        };
        if version >= ALLOC_JSON_SINCE {
            read_allocations_json(&text, cluster).map_err(|source| SourceError::Json { command: inv.display(), source })
        } else {
            Ok(read_allocations_text(&text, cluster, &TimeZone::Utc))
        }
    }

    /// The one sinfo call of a pass: every node of `cluster`, once.
    pub fn node_states_invocation(&self, cluster: &ClusterName) -> Invocation {
        let args = [
            format!("--clusters={cluster}"),
            "--all".into(),
            "--noheader".into(),
            "--Node".into(),
            format!("--Format={SINFO_FORMAT}"),
        ];
        Invocation { program: "sinfo".into(), args: args.into(), env: pinned_env(), timeout: self.timeout }
    }

    /// Reads every node's state (one `sinfo` call).
    pub fn node_states(&self, cluster: &ClusterName) -> Result<Vec<NodeState>, SourceError> {
        let inv = self.node_states_invocation(cluster);
        let text = self.runner.run_to_string(&inv)?;
        read_sinfo_nodes(&text).map_err(|source| SourceError::Sinfo { command: inv.display(), source })
    }

    /// Starts the poll's sacct and returns a streaming reader over its job runs.
    pub fn poll(
        &self,
        info: &SlurmInfo,
        cluster: &ClusterName,
        w: Window,
    ) -> Result<(SacctStream, PollHandle), SourceError> {
        self.start(self.sacct_invocation(info, cluster, w), cluster)
    }

    /// Starts sacct for `job_ids` (see [`Self::sacct_jobs_invocation`]).
    pub fn poll_jobs(
        &self,
        info: &SlurmInfo,
        cluster: &ClusterName,
        job_ids: &[u64],
    ) -> Result<(SacctStream, PollHandle), SourceError> {
        self.start(self.sacct_jobs_invocation(info, cluster, job_ids), cluster)
    }

    fn start(&self, inv: Invocation, cluster: &ClusterName) -> Result<(SacctStream, PollHandle), SourceError> {
        let mut started = self.runner.start(&inv)?;
        let stdout = std::mem::replace(&mut started.stdout, Box::new(std::io::empty()));
        let opts = ReadOptions {
            delimiter: DELIMITER,
            // The header line names the columns: the reader checks them instead of trusting order.
            layout: None,
            tz: TimeZone::Utc,
            default_cluster: cluster.clone(),
        };
        Ok((SacctReader::new(stdout, opts), PollHandle { started, command: inv.display() }))
    }
}

/// The job runs of a started sacct, as they stream in.
pub type SacctStream = SacctReader<Box<dyn std::io::BufRead + Send>>;

/// Finishes a poll's command once its output has been read.
pub struct PollHandle {
    started: Started,
    pub command: String,
}

impl PollHandle {
    pub fn finish(self) -> Result<(), RunError> {
        self.started.finish()
    }
}

/// The environment every Slurm command runs with: times in UTC, ISO format.
pub fn pinned_env() -> Vec<(String, String)> {
    vec![("TZ".into(), "UTC".into()), ("SLURM_TIME_FORMAT".into(), "standard".into())]
}

/// The names in `sacctmgr show tres -P` output (`Type|Name|ID` rows): `cpu`, `fs/disk`, `gres/gpu`.
pub fn parse_tres_list(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split('|');
        let (Some(kind), Some(name)) = (f.next(), f.next()) else { continue };
        let kind = kind.trim();
        if kind.is_empty() || kind == "Type" {
            continue;
        }
        out.push(if name.trim().is_empty() { kind.to_string() } else { format!("{kind}/{}", name.trim()) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::runner::{Recording, ReplayRunner};

    #[test]
    fn versions() {
        assert_eq!(SlurmVersion::parse("slurm 22.05.8\n"), Some(SlurmVersion { major: 22, minor: 5, micro: 8 }));
        assert_eq!(SlurmVersion::parse("slurm-wlm 23.11.0-0rc1").map(|v| v.to_string()), Some("23.11.0".into()));
        assert_eq!(SlurmVersion::parse("garbage"), None);
    }

    #[test]
    fn detect_and_build_the_poll_command() {
        let runner = ReplayRunner::new(vec![
            Recording::ok(
                "sacct",
                &["--version"],
                include_bytes!("../../tests/fixtures/testbed/scontrol-version.txt").to_vec(),
            ),
            Recording::ok(
                "sacct",
                &["--helpformat"],
                include_bytes!("../../tests/fixtures/testbed/sacct-helpformat.txt").to_vec(),
            ),
            Recording::ok(
                "scontrol",
                &["show", "config"],
                include_bytes!("../../tests/fixtures/testbed/scontrol-show-config.txt").to_vec(),
            ),
        ]);
        let src = SlurmSource::new(&runner, Duration::from_secs(5));
        let info = src.detect().unwrap();
        assert_eq!(info.version.to_string(), "22.05.8");
        let cluster = src.local_cluster().unwrap();
        assert_eq!(cluster.as_str(), "testcluster");
        let inv = src.sacct_invocation(
            &info,
            &cluster,
            Window { start: UnixTime(1_795_305_600), end: UnixTime(1_795_309_200) },
        );
        let args = inv.args.join(" ");
        assert!(!inv.args.iter().any(|a| a == "-X" || a == "--allocations"), "steps are needed");
        for want in [
            "--allusers",
            "--duplicates",
            "--noconvert",
            "--delimiter=\u{1f}",
            "--starttime=2026-11-22T00:00:00",
            "--endtime=2026-11-22T01:00:00",
            "--clusters=testcluster",
        ] {
            assert!(args.contains(want), "{want} missing in {args}");
        }
        assert!(inv.env.contains(&("TZ".into(), "UTC".into())));
    }

    #[test]
    fn jobs_query_names_the_ids_and_no_window() {
        let runner = ReplayRunner::new(vec![]);
        let src = SlurmSource::new(&runner, Duration::from_secs(5));
        let info = SlurmInfo { version: MIN_VERSION, fields: request_fields(None) };
        let inv = src.sacct_jobs_invocation(&info, &ClusterName::new("c1").unwrap(), &[41, 7, 1003]);
        assert!(inv.args.iter().any(|a| a == "--jobs=41,7,1003"), "{:?}", inv.args);
        assert!(inv.args.iter().any(|a| a == "--duplicates") && inv.args.iter().any(|a| a == "--clusters=c1"));
        assert!(!inv.args.iter().any(|a| a.starts_with("--starttime") || a.starts_with("--endtime")), "{:?}", inv.args);
    }

    #[test]
    fn too_old_is_refused_with_the_version() {
        let runner = ReplayRunner::new(vec![Recording::ok("sacct", &["--version"], b"slurm 20.11.9\n".to_vec())]);
        let err = SlurmSource::new(&runner, Duration::from_secs(5)).detect().unwrap_err();
        assert!(err.to_string().contains("20.11.9"), "{err}");
    }
}
