//! `slurm-ledger collect`: one poll of each cluster, or the import of a recorded sacct output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::collect::{import_file, import_items, CollectReport, Since};
use crate::config::{parse_duration_secs, Settings};
use crate::model::{ClusterName, UnixTime};
use crate::pass::{self, ClusterOutcome, CollectPlan};
use crate::slurm::json::read_sacct_json;
use crate::slurm::parsable::{Layout, ReadOptions};
use crate::slurm::source::DELIMITER;
use crate::slurm::values::TimeZone;

use super::{open_ledger, parse_time_arg, settings, system_now, Cli, UsageError};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  slurm-ledger collect                       # from each cluster's cursor (cron: every 5-15 minutes)
  slurm-ledger collect --lookback 30d        # backfill the last 30 days (the cursor never moves back)
  slurm-ledger collect --cluster c1 --since 2026-11-01
  slurm-ledger collect --from-file sacct.txt --file-cluster c1   # import a recorded `sacct --parsable2` output
  slurm-ledger collect --from-file jobs.json                     # or a `sacct --json` / slurmrestd slurmdb jobs document")]
pub struct CollectArgs {
    /// Cluster to collect (repeatable). Default: [slurm] clusters, else the local cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,

    /// Start of the window instead of the cursor: 2026-11-22, 2026-11-22T08:00:00 (UTC), now-2h.
    #[arg(long, value_name = "TIME", conflicts_with = "lookback")]
    pub since: Option<String>,

    /// Start the window this long before now instead of at the cursor: 90m, 12h, 30d.
    #[arg(long, value_name = "DURATION")]
    pub lookback: Option<String>,

    /// Import a recorded `sacct --parsable2` (its header line tells the columns; without one, give --columns) or `sacct --json` output; the cursor does not move.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["since", "lookback"])]
    pub from_file: Option<PathBuf>,

    /// With --from-file: parsable (`sacct --parsable2` text), json (`sacct --json`), or auto (JSON when it starts with `{`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = FileFormat::Auto, requires = "from_file")]
    pub file_format: FileFormat,

    /// With --from-file: the file's columns, in order, when it has no header line (recorded with --noheader): sacct's --format list.
    #[arg(long, value_name = "LIST", requires = "from_file", value_delimiter = ',')]
    pub columns: Vec<String>,

    /// With --from-file: the field delimiter, one character or 0xNN (default: told by the header line; with --columns, `|`).
    #[arg(long, value_name = "CHAR", requires = "from_file")]
    pub delimiter: Option<String>,

    /// With --from-file: cluster for rows that have no Cluster column.
    #[arg(long, value_name = "NAME", requires = "from_file")]
    pub file_cluster: Option<String>,

    /// With --from-file: the time zone the file's times are in (sacct prints local time).
    #[arg(long, value_name = "TZ", default_value = "UTC", requires = "from_file")]
    pub file_timezone: String,
}

/// What a `--from-file` file holds. squeue and scontrol outputs are not accounting records (a
/// live job's times and usage are not final there), so they are not imported into the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Auto,
    Parsable,
    Json,
}

/// Slurm keeps nothing from before this (2000-01-01T00:00:00Z): a window starting earlier is a
/// mistyped argument.
const EARLIEST: UnixTime = UnixTime(946_684_800);

/// A window's start from `--since`/`--lookback`: not in the future, not before [`EARLIEST`].
fn window_start(t: UnixTime, now: UnixTime, flag: &str) -> anyhow::Result<UnixTime> {
    if t > now {
        return Err(
            UsageError(format!("{flag}: {t} is in the future (now is {now}); a window starts in the past")).into()
        );
    }
    if t < EARLIEST {
        let days = (now.0 - EARLIEST.0) / 86_400;
        return Err(UsageError(format!(
            "{flag}: the window would start before {EARLIEST}, and Slurm keeps nothing older; reach back at most {days}d"
        ))
        .into());
    }
    Ok(t)
}

/// `--delimiter`: one character (one byte), or `0xNN`.
fn delimiter_arg(d: &str) -> anyhow::Result<u8> {
    if let Some(hex) = d.strip_prefix("0x").or_else(|| d.strip_prefix("0X")) {
        return u8::from_str_radix(hex, 16).map_err(|_| {
            UsageError(format!("--delimiter {d}: write one character, or a byte as 0xNN (e.g. 0x1F)")).into()
        });
    }
    match d.as_bytes() {
        [b] => Ok(*b),
        _ => Err(UsageError(format!(
            "--delimiter {d:?}: only a one-byte delimiter is read; record again with a one-character --delimiter (0x1F, which no job name holds, is safest)"
        ))
        .into()),
    }
}

fn cluster_arg(name: &str, what: &str) -> anyhow::Result<ClusterName> {
    ClusterName::new(name).map_err(|e| anyhow::Error::new(UsageError(format!("{what}: {e}"))))
}

/// The clusters of `--cluster` (default: `[slurm] clusters`; empty: the local cluster).
pub(crate) fn clusters_arg(s: &Settings, given: &[String]) -> anyhow::Result<Vec<ClusterName>> {
    let clusters = if given.is_empty() { &s.slurm.clusters } else { given };
    clusters.iter().map(|c| cluster_arg(c, "--cluster")).collect()
}

pub fn run(cli: &Cli, a: &CollectArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let now = system_now();
    // The arguments are checked before the ledger is opened (or created).
    let since = match (&a.since, &a.lookback) {
        (Some(t), _) => Since::At(window_start(
            parse_time_arg(t, now).map_err(|e| UsageError(format!("--since: {e}")))?,
            now,
            "--since",
        )?),
        (None, Some(d)) => {
            let secs = parse_duration_secs(d).map_err(|e| UsageError(format!("--lookback: {e}")))?;
            Since::At(window_start(UnixTime(now.0.saturating_sub(secs)), now, "--lookback")?)
        }
        (None, None) => Since::Cursor,
    };
    let mut ledger = open_ledger(&s)?;
    let out = &mut std::io::stdout();
    if let Some(file) = &a.from_file {
        let cluster = cluster_arg(a.file_cluster.as_deref().unwrap_or("imported"), "--file-cluster")?;
        let tz = TimeZone::from_name(&a.file_timezone).map_err(|e| UsageError(format!("--file-timezone: {e}")))?;
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let mut input = std::io::BufReader::new(f);
        let json = match a.file_format {
            FileFormat::Json => true,
            FileFormat::Parsable => false,
            // Only the first bytes are looked at: the buffer is consumed by the reader after.
            FileFormat::Auto => {
                let head =
                    std::io::BufRead::fill_buf(&mut input).with_context(|| format!("reading {}", file.display()))?;
                let head = head.strip_prefix("\u{feff}".as_bytes()).unwrap_or(head);
                head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            }
        };
        let label = format!("file:{}", file.display());
        let report = if json {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut input, &mut text)
                .with_context(|| format!("reading {} (JSON must be UTF-8)", file.display()))?;
            // JSON times are epoch seconds: --file-timezone does not apply.
            let items = read_sacct_json(&text, &cluster).with_context(|| format!("importing {}", file.display()))?;
            import_items(&mut ledger, items.into_iter(), &cluster, &label, now)
        } else {
            let delimiter = match a.delimiter.as_deref() {
                Some(d) => delimiter_arg(d)?,
                None if !a.columns.is_empty() => b'|',
                None => DELIMITER,
            };
            let layout = if a.columns.is_empty() {
                None
            } else {
                // A list typed by hand (`Name%NN` widths allowed): without a column that says what a
                // run held, every run would bill nothing; a misspelling is the likely cause.
                let names: Vec<&str> = a.columns.iter().map(|c| c.trim().split('%').next().unwrap_or("")).collect();
                use crate::slurm::fields::Field;
                let held = [Field::AllocTRES, Field::AllocCPUS, Field::NCPUS];
                if !names.iter().any(|n| Field::from_name(n).is_some_and(|f| held.contains(&f))) {
                    return Err(UsageError(
                        "--columns: none of AllocTRES, AllocCPUS or NCPUS is among the columns, so no run would bill \
                         anything; check their spelling against the file's --format list"
                            .into(),
                    )
                    .into());
                }
                Some(Layout::from_names(&names).map_err(|e| UsageError(format!("--columns: {e}")))?)
            };
            let opts = ReadOptions { delimiter, layout, tz, default_cluster: cluster };
            import_file(&mut ledger, input, opts, &label, now)
        }
        .with_context(|| format!("importing {}", file.display()))?;
        let needs_a_hand = report.counts.quarantined_new > 0;
        if !cli.quiet || needs_a_hand {
            print_report(out, &report)?;
        }
        return Ok(super::pass_exit(false, needs_a_hand));
    }

    let runner = super::slurm_runner(&s);
    let plan = CollectPlan { runner: &runner, slurm: &s.slurm, clusters: clusters_arg(&s, &a.clusters)?, since };
    let outcomes = pass::collect_all(&mut ledger, &plan, now)?;
    let failed = print_clusters(out, &outcomes, cli.quiet)?;
    Ok(super::pass_exit(failed > 0, outcomes.iter().any(ClusterOutcome::needs_a_hand)))
}

/// Prints what each cluster's collect did (with `quiet`, only what needs a hand: cron mails any
/// output). Returns how many failed.
pub(crate) fn print_clusters(out: &mut dyn Write, outcomes: &[ClusterOutcome], quiet: bool) -> std::io::Result<usize> {
    for o in outcomes.iter().filter(|o| !quiet || o.needs_a_hand()) {
        match o {
            ClusterOutcome::Collected(report) => print_report(out, report)?,
            ClusterOutcome::Failed { cluster, error } => writeln!(out, "{cluster}: FAILED: {error}")?,
        }
    }
    Ok(outcomes.iter().filter(|o| o.failed()).count())
}

fn print_report(out: &mut dyn Write, r: &CollectReport) -> std::io::Result<()> {
    let c = &r.counts;
    let window = match r.window {
        Some((a, b)) => format!("window {a} .. {b}: "),
        None => String::new(),
    };
    write!(
        out,
        "{}: {window}{} runs read ({} new, {} updated, {} unchanged)",
        r.cluster, c.runs_seen, c.runs_new, c.runs_updated, c.runs_unchanged
    )?;
    if c.quarantined > 0 {
        write!(out, ", {} quarantined (see `slurm-ledger status`)", c.quarantined)?;
    }
    if c.elapsed_derived > 0 {
        write!(
            out,
            ", {} with elapsed time derived as End − Start − Suspended (the input has no ElapsedRaw or Elapsed column)",
            c.elapsed_derived
        )?;
    }
    if c.job_id_raw_from_job_id > 0 {
        write!(
            out,
            ", {} keyed by their JobID (the input has no JobIDRaw column: JobIDRaw taken from JobID where it is a plain \
             job id; array tasks and het components, whose JobID does not tell it, are quarantined: record again with \
             JobIDRaw in --format)",
            c.job_id_raw_from_job_id
        )?;
    }
    let mut unknown = c.unknown_states.clone();
    for (state, n) in r.settled.iter().flat_map(|s| &s.counts.unknown_states) {
        *unknown.entry(state.clone()).or_default() += n;
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        write!(
            out,
            ", {} in a state this slurm-ledger does not know ({}): billed as still running until Slurm reports a known end state",
            unknown.values().sum::<u64>(),
            list.join(", ")
        )?;
    }
    if let Some(s) = &r.settled {
        write!(
            out,
            "; {} open run(s) the window did not show, {} due and asked for by job id ({} updated)",
            s.open_unseen, s.asked, s.counts.runs_updated
        )?;
        if s.counts.quarantined > 0 {
            write!(out, ", {} quarantined", s.counts.quarantined)?;
        }
        if let Some(e) = &s.error {
            write!(out, "; asking by job id FAILED (asked again next collect; the window is stored): {e}")?;
        }
    }
    if let Some(c) = r.cursor_kept {
        write!(out, "; cursor kept at {c}: the window starts after it, so the time between is still to be read")?;
    }
    writeln!(out)
}
