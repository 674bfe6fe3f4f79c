//! `slurm-ledger backfill`: past months from Slurm into the ledger and out to the sinks, month
//! by month (the rules: `crate::backfill`). Each month is read in windows no longer than
//! slurmdbd's `MaxQueryTimeRange`, then each sink is delivered to and the month's items checked. What is done is recorded per month
//! and part in the ledger (`collect:CLUSTER`, `report:SINK`): an interrupted backfill resumes at
//! the first part not done, and a month that failed is tried again by the next backfill while
//! the others go on. Cursors never move (the cron collect keeps its own), and past periods are
//! reopened for the sinks of this process only (Waldur: checked first that the token is staff's).

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backfill::{collect_part, months, report_month, report_part, windows, Month};
use crate::collect::collect_window;
use crate::delivery::consumer::{Consumer, ReopenError};
use crate::ledger::Ledger;
use crate::model::UnixTime;
use crate::slurm::source::SlurmSource;

use super::collect::clusters_arg;
use super::{
    build_sinks, ledger_for_sending, problems_text, settings, slurm_runner, system_now, tres_preflight, Cli, UsageError,
};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  slurm-ledger backfill --from 2024-01 --to 2024-12 --dry-run   # the months, windows and sacct calls; nothing read
  slurm-ledger backfill --from 2024-01 --to 2024-12 --sink waldur
  slurm-ledger backfill --from 2024-01                          # up to this month

Each month is read from Slurm in windows no longer than [slurm] max_query_time_range (slurmdbd's
MaxQueryTimeRange, default 1d; --window), stored in the ledger like any collect (cursors do not
move), then delivered to each sink. A month and part done is never done again: run the same
command after an interruption or a failure and it goes on where it stopped. Waldur takes past
months only from a staff token: that is checked before anything is read.

Exit status: 0 every month done, 1 a month failed (the others were done; run again), 2 bad usage
or credentials that are not staff's, 3 every month done but records were quarantined.")]
pub struct BackfillArgs {
    /// The first month: 2024-01.
    #[arg(long, value_name = "YYYY-MM")]
    pub from: String,
    /// The last month (default: the current month, in UTC).
    #[arg(long, value_name = "YYYY-MM")]
    pub to: Option<String>,
    /// Only this sink (repeatable). Default: every configured sink.
    #[arg(long = "sink", value_name = "NAME")]
    pub sinks: Vec<String>,
    /// Cluster to read (repeatable). Default: [slurm] clusters, else the local cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    /// Longest sacct window (default: [slurm] max_query_time_range, 1d): 12h, 1d, 7d.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Say what would be read and sent, month by month; read nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cli: &Cli, a: &BackfillArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let now = system_now();
    let months = months(&a.from, a.to.as_deref(), now).map_err(|e| UsageError(e.to_string()))?;
    let max = match &a.window {
        Some(w) => match crate::validate::parse_duration_secs(w) {
            Ok(n) if n >= 3600 => n,
            Ok(n) => return Err(UsageError(format!("--window {w}: {n} s is too short; use 1h or more")).into()),
            Err(e) => return Err(UsageError(format!("--window {w}: {e}")).into()),
        },
        None => s.slurm.max_query_range_secs,
    };
    let sinks = build_sinks(&s, &a.sinks, !a.dry_run)?;
    let out = &mut std::io::stdout().lock();
    if a.dry_run {
        return dry_run(&s, a, &months, &sinks, max, now, out);
    }
    // Past periods: every sink must be able to take them before anything is read.
    let range = (months[0].start, months[months.len() - 1].end);
    for c in &sinks {
        match c.sender.reopen(range.0, range.1, now) {
            Ok(()) => {}
            Err(ReopenError::Refused(e)) => return Err(UsageError(format!("backfill, sink {}: {e}", c.name)).into()),
            Err(ReopenError::Unreachable(e)) => {
                anyhow::bail!("backfill, sink {}: cannot check its credentials: {e}", c.name)
            }
        }
    }
    let Some((mut ledger, _lock)) = ledger_for_sending(&s, "backfill", false)? else { return Ok(ExitCode::from(1)) };
    let runner = slurm_runner(&s);
    let source = SlurmSource::new(&runner, Duration::from_secs(s.slurm.timeout_secs));
    let info = source.detect().context("asking Slurm for its version and fields (sacct --helpformat)")?;
    let clusters = match clusters_arg(&s, &a.clusters)? {
        c if c.is_empty() => vec![source.local_cluster().context("asking Slurm for the local cluster's name")?],
        c => c,
    };
    let done: HashSet<(String, String)> =
        ledger.backfill_parts()?.into_iter().filter(|p| p.done_at.is_some()).map(|p| (p.month, p.part)).collect();
    let bar = MonthBar::new(months.len() as u64, cli.quiet);
    let (mut failed, mut needs_a_hand) = (0usize, false);
    let mut preflight = tres_preflight(&s, &a.sinks);
    for m in &months {
        let is_done = |part: &str| done.contains(&(m.label.clone(), part.to_string()));
        let mut notes = Vec::new();
        let (mut month_ok, mut read_now) = (true, false);
        for cluster in &clusters {
            let part = collect_part(cluster);
            if is_done(&part) {
                notes.push(format!("{cluster} read before"));
                continue;
            }
            let ws = windows(m, max, system_now());
            let (mut runs, mut quarantined, started) = (0u64, 0u64, Instant::now());
            read_now = true;
            let mut error = None;
            for (k, w) in ws.iter().enumerate() {
                bar.step(&format!("{}: reading {cluster}, window {}/{}", m.label, k + 1, ws.len()));
                match collect_window(&source, &info, &mut ledger, cluster, *w, system_now()) {
                    Ok(c) => {
                        runs += c.runs_seen;
                        quarantined += c.quarantined_new;
                    }
                    Err(e) => {
                        error = Some(format!("reading {cluster} {} – {}: {e}", w.start, w.end));
                        break;
                    }
                }
            }
            record(&mut ledger, &m.label, &part, error.as_deref())?;
            match error {
                None => {
                    notes.push(format!(
                        "{cluster}: {runs} run records read in {} windows ({:.0} s)",
                        ws.len(),
                        started.elapsed().as_secs_f64()
                    ));
                    if quarantined > 0 {
                        needs_a_hand = true;
                        notes.push(format!("{quarantined} records quarantined (see `slurm-ledger status`)"));
                    }
                }
                Some(e) => {
                    month_ok = false;
                    notes.push(format!("FAILED {e}"));
                }
            }
        }
        if month_ok {
            if let Err(problems) = preflight(&ledger) {
                return Err(UsageError(problems_text(&problems)).into());
            }
            for c in &sinks {
                let part = report_part(&c.name);
                // A month read again now (another cluster, a failed read) is reported again.
                if is_done(&part) && !read_now {
                    notes.push(format!("{} reported before", c.name));
                    continue;
                }
                bar.step(&format!("{}: delivering to {}", m.label, c.name));
                match report_month(&mut ledger, c, range.0, m, &system_now)? {
                    Ok(note) => {
                        record(&mut ledger, &m.label, &part, None)?;
                        notes.push(note);
                    }
                    Err(e) => {
                        record(&mut ledger, &m.label, &part, Some(&e))?;
                        month_ok = false;
                        notes.push(format!("FAILED {}: {e}", c.name));
                    }
                }
            }
        } else {
            notes.push("not delivered: reading it failed (the next backfill reads it again)".into());
        }
        failed += usize::from(!month_ok);
        let line = format!("{}: {} — {}", m.label, if month_ok { "done" } else { "FAILED" }, notes.join("; "));
        if !cli.quiet || !month_ok {
            bar.println(out, &line)?;
        }
        bar.advance();
    }
    bar.finish();
    let n = months.len();
    if failed > 0 {
        writeln!(
            out,
            "{failed} of {n} months failed (reasons above and in `slurm-ledger status`); run the same command again: \
             months done are not done twice"
        )?;
        return Ok(ExitCode::from(1));
    }
    if !cli.quiet {
        writeln!(out, "{n} months done")?;
    }
    Ok(if needs_a_hand { ExitCode::from(super::NEEDS_A_HAND) } else { ExitCode::SUCCESS })
}

fn record(ledger: &mut Ledger, month: &str, part: &str, error: Option<&str>) -> anyhow::Result<()> {
    let mut w = ledger.writer(system_now())?;
    w.record_backfill(month, part, error.map_or(Ok(()), Err))?;
    w.commit()?;
    Ok(())
}

/// `--dry-run`: per month, what is done and what a run would read (windows = sacct calls) and
/// report. Nothing is read from Slurm or written.
fn dry_run(
    s: &crate::config::Settings,
    a: &BackfillArgs,
    months: &[Month],
    sinks: &[Consumer],
    max: i64,
    now: UnixTime,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let parts = if s.ledger_path.exists() {
        Ledger::open_read_only(&s.ledger_path)
            .with_context(|| format!("opening the ledger {} read-only (dry run)", s.ledger_path.display()))?
            .backfill_parts()?
    } else {
        Vec::new()
    };
    let clusters: Vec<String> = match clusters_arg(s, &a.clusters)? {
        c if c.is_empty() => vec!["(the local cluster)".into()],
        c => c.iter().map(ToString::to_string).collect(),
    };
    let state = |month: &str, part: &str| -> &str {
        match parts.iter().find(|p| p.month == month && p.part == part) {
            Some(p) if p.done_at.is_some() => "done",
            Some(_) => "failed before, to do again",
            None => "to do",
        }
    };
    writeln!(
        out,
        "backfill (dry run): {} months, windows of at most {} s; nothing is read or written",
        months.len(),
        max
    )?;
    let mut calls = 0;
    for m in months {
        let n = windows(m, max, now).len();
        let mut line = format!("{}:", m.label);
        for c in &clusters {
            let st = state(&m.label, &format!("collect:{c}"));
            if st != "done" {
                calls += n;
            }
            line.push_str(&format!(" read {c} in {n} sacct calls ({st});"));
        }
        for c in sinks {
            line.push_str(&format!(" deliver to {} ({});", c.name, state(&m.label, &report_part(&c.name))));
        }
        writeln!(out, "{}", line.trim_end_matches(';'))?;
    }
    writeln!(out, "in all: {calls} sacct calls still to make")?;
    if months.first().is_some_and(|m| m.end.0 <= now.0) {
        writeln!(out, "past months: a Waldur sink's token must be a staff user's (checked before anything is read)")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Months done, as a bar on a terminal (percent, months, ETA) or nothing (plain lines instead).
struct MonthBar(Option<ProgressBar>);

impl MonthBar {
    fn new(months: u64, quiet: bool) -> Self {
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(Some(months), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("backfill {bar:30} {percent:>3}% {pos}/{len} months, about {eta} left  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self(Some(bar))
    }

    fn step(&self, msg: &str) {
        match &self.0 {
            Some(b) => b.set_message(msg.to_string()),
            None => tracing::debug!("{msg}"),
        }
    }

    fn advance(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    fn println(&self, out: &mut dyn Write, line: &str) -> std::io::Result<()> {
        match &self.0 {
            Some(b) => {
                b.suspend(|| writeln!(out, "{line}"))?;
                Ok(())
            }
            None => writeln!(out, "{line}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
