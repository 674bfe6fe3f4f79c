//! `slurm-ledger jobs`: list job runs from the ledger as a table, JSON or CSV.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use crate::ledger::JobFilter;
use crate::model::{ClusterName, JobRun, JobState};

use super::timeargs::{format_bytes, format_elapsed};
use super::{open_ledger, parse_time_arg, settings, system_now, Cli, UsageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  slurm-ledger jobs --user alice --since now-1d
  slurm-ledger jobs --state RUNNING,PENDING --format csv > open.csv
  slurm-ledger jobs --account engineering --since 2026-11-01 --until 2026-12-01 --format json")]
pub struct JobsArgs {
    /// Only runs of this cluster (as collected; see `status` for the clusters in the ledger).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Only runs of this Slurm user name.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only runs charged to this Slurm account.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// Only runs in this partition.
    #[arg(long, value_name = "PARTITION")]
    pub partition: Option<String>,
    /// Slurm states, comma-separated: RUNNING,PENDING,COMPLETED,FAILED,CANCELLED,TIMEOUT,OUT_OF_MEMORY,REQUEUED…
    #[arg(long, value_name = "STATES", value_delimiter = ',')]
    pub state: Vec<String>,
    /// Runs not ended before this time (2026-11-22, 2026-11-22T08:00:00 UTC, now-2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Runs submitted before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this JobIDRaw (all its runs).
    #[arg(long, value_name = "ID")]
    pub job: Option<u64>,
    /// At most this many runs (oldest submit first); 0 for all.
    #[arg(long, default_value_t = 1000)]
    pub limit: u64,
    /// table for people; json (one array of runs, all fields) or csv (a header row) for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(cli: &Cli, a: &JobsArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let ledger = open_ledger(&s)?;
    let now = system_now();
    let time = |v: &Option<String>, flag: &str| -> anyhow::Result<_> {
        v.as_deref()
            .map(|t| parse_time_arg(t, now).map_err(|e| anyhow::Error::new(UsageError(format!("{flag}: {e}")))))
            .transpose()
    };
    let filter = JobFilter {
        cluster: a
            .cluster
            .as_deref()
            .map(ClusterName::new)
            .transpose()
            .map_err(|e| UsageError(format!("--cluster: {e}")))?,
        user: a.user.clone(),
        account: a.account.clone(),
        partition: a.partition.clone(),
        states: a.state.clone(),
        since: time(&a.since, "--since")?,
        until: time(&a.until, "--until")?,
        job_id_raw: a.job,
        limit: (a.limit > 0).then_some(a.limit),
    };
    // A state that no run has and Slurm does not have is a typo, not "no such runs".
    let stored = if filter.states.is_empty() { Vec::new() } else { ledger.status(0)?.states };
    for st in &filter.states {
        for one in st.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let upper = one.to_uppercase();
            let known = JobState::KNOWN.iter().any(|k| k.as_str() == upper)
                || stored.iter().any(|s| s.state.eq_ignore_ascii_case(one));
            if !known {
                return Err(UsageError(format!(
                    "--state {one}: not a Slurm job state; use one of {}",
                    JobState::KNOWN.iter().map(JobState::as_str).collect::<Vec<_>>().join(", ")
                ))
                .into());
            }
        }
    }
    let jobs = ledger.jobs(&filter)?;
    let mut out = std::io::stdout().lock();
    write_jobs(&mut out, &jobs, a.format)?;
    if a.format == Format::Table && a.limit > 0 && jobs.len() as u64 == a.limit {
        eprintln!("(showing the first {} runs; --limit 0 shows all)", a.limit);
    }
    Ok(ExitCode::SUCCESS)
}

const CSV_HEADER: [&str; 22] = [
    "cluster",
    "job_id",
    "job_id_raw",
    "submit",
    "name",
    "user",
    "account",
    "partition",
    "qos",
    "state",
    "exit_code",
    "start",
    "end",
    "elapsed_secs",
    "suspended_secs",
    "alloc_cpus",
    "gpus",
    "nnodes",
    "alloc_tres",
    "total_cpu_ms",
    "max_rss_bytes",
    "nodelist",
];

/// Writes runs in the chosen format.
pub fn write_jobs(out: &mut dyn Write, jobs: &[JobRun], format: Format) -> anyhow::Result<()> {
    let t = |v: Option<crate::model::UnixTime>| v.map(|t| t.to_rfc3339()).unwrap_or_default();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, jobs)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER)?;
            for j in jobs {
                w.write_record([
                    j.key.cluster.to_string(),
                    j.job_id.clone(),
                    j.key.job_id_raw.to_string(),
                    j.key.submit.to_rfc3339(),
                    j.name.clone(),
                    j.user.clone(),
                    j.account.clone(),
                    j.partition.clone(),
                    j.qos.clone(),
                    j.state.to_string(),
                    j.exit_code.map(|e| e.to_string()).unwrap_or_default(),
                    t(j.start),
                    t(j.end),
                    j.elapsed_secs.to_string(),
                    j.suspended_secs.to_string(),
                    j.alloc_cpus.to_string(),
                    j.gpus().to_string(),
                    j.nnodes.to_string(),
                    j.alloc_tres.to_canonical(),
                    j.total_cpu_ms.to_string(),
                    j.max_rss_bytes.map(|b| b.to_string()).unwrap_or_default(),
                    j.nodelist.clone(),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(UTF8_BORDERS_ONLY);
            table.set_header([
                "CLUSTER",
                "JOBID",
                "RAW",
                "NAME",
                "USER",
                "ACCOUNT",
                "PARTITION",
                "STATE",
                "START",
                "ELAPSED",
                "CPUS",
                "GPUS",
                "MEM",
                "CPU TIME",
            ]);
            for j in jobs {
                let mut state = j.state.to_string();
                if let Some(by) = j.cancelled_by {
                    state.push_str(&format!(" by {by}"));
                }
                table.add_row([
                    j.key.cluster.to_string(),
                    j.job_id.clone(),
                    j.key.job_id_raw.to_string(),
                    j.name.clone(),
                    j.user.clone(),
                    j.account.clone(),
                    j.partition.clone(),
                    state,
                    j.start.map(|s| s.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    format_elapsed(j.elapsed_secs),
                    j.alloc_cpus.to_string(),
                    j.gpus().to_string(),
                    j.alloc_tres.get("mem").map(format_bytes).unwrap_or_else(|| "-".into()),
                    format_elapsed(j.total_cpu_ms / 1000),
                ]);
            }
            writeln!(out, "{table}")?;
            writeln!(out, "{} run(s)", jobs.len())?;
        }
    }
    Ok(())
}
