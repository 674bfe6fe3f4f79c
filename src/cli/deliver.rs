//! `slurm-ledger deliver`: meter what the ledger holds and report it to each sink, exactly once;
//! `retry`: put rejected deliveries back after a fix; `run`: collect, then deliver (for cron).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use clap::Args;

use crate::collect::Since;
use crate::config::Settings;
use crate::delivery::consumer::Consumer;
use crate::delivery::engine::{self, EngineError, Preview};
use crate::ledger::{DeliveryState, Ledger};
use crate::model::UnixTime;
use crate::pass::{self, CollectPlan, PassLimits, SinkFailure, SinkOutcome};
use crate::tracker::TrackerSeeds;

use super::collect::{clusters_arg, print_clusters};
use super::{
    build_sinks, check_tres, check_tres_now, ledger_for_sending, problems_text, settings, slurm_runner, system_now,
    tres_preflight, Cli, UsageError,
};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  slurm-ledger deliver --dry-run             # print every request that would be sent; changes nothing
  slurm-ledger deliver                       # plan new usage and send what is due, to every sink
  slurm-ledger deliver --sink activate

A second of a job's usage is planned into exactly one slice per sink; a slice whose send had an
unknown outcome (timeout, 5xx, dropped connection) is looked up on the platform before it is sent
again. Runs that map to nothing are held (see `slurm-ledger status`) and go out once the mapping
is fixed. API keys come from the environment or key files, never from the command line.")]
pub struct DeliverArgs {
    /// Only this sink (repeatable): activate, jsonl. Default: every configured sink.
    #[arg(long = "sink", value_name = "NAME")]
    pub sinks: Vec<String>,

    /// Compute and print exactly what would be sent; write nothing, send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Longest this pass spends sending, shared by the sinks: 90s, 10m, 1h (default: [delivery] pass_time, 4m).
    /// What is left goes out in the next pass.
    #[arg(long, value_name = "DURATION", value_parser = parse_pass_time)]
    pub time_limit: Option<u64>,

    /// Most deliveries sent per sink in this pass (default: [delivery] batch, no cap); 0 plans and sends nothing.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

fn parse_pass_time(s: &str) -> Result<u64, String> {
    match crate::validate::parse_duration_secs(s)? {
        n @ 1..=86_400 => Ok(n as u64),
        n => Err(format!("{n} s is not a pass length; use 1s to 24h")),
    }
}

impl DeliverArgs {
    /// What this pass may send: the command line over `[delivery]`.
    fn limits(&self, s: &Settings) -> PassLimits<'static> {
        PassLimits {
            clock: Some(&system_now),
            time: Some(Duration::from_secs(self.time_limit.unwrap_or(s.delivery.pass_time_secs))),
            max_items: self.limit.or(s.delivery.batch),
            stop: None,
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  slurm-ledger retry --sink activate                      # every rejected delivery of the sink
  slurm-ledger retry --sink activate --id 'sl:activate:…'  # one delivery")]
pub struct RetryArgs {
    /// The sink whose rejected deliveries go back to pending.
    #[arg(long, value_name = "NAME")]
    pub sink: String,
    /// Only this delivery id (as `status` shows it).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "What a sink bills on (its TRES, basis, unit, period and time zone) is stored when it first
plans. After a change of any of them, `deliver` refuses that sink (nothing planned, nothing sent)
until the old settings are back or the change is accepted here. Accepting re-plans nothing: items
already planned are sent as planned; what accrues from now on (the rest of runs still open, and
new runs) is billed on the new terms.

Examples:
  slurm-ledger accept-terms --sink activate --dry-run   # what would change
  slurm-ledger accept-terms --sink activate")]
pub struct AcceptTermsArgs {
    /// The sink whose changed terms to accept.
    #[arg(long, value_name = "NAME")]
    pub sink: String,
    /// Say what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples (cron, every 5 minutes):
  */5 * * * * root /usr/local/bin/slurm-ledger -q run")]
pub struct RunArgs {
    /// Cluster to collect (repeatable). Default: [slurm] clusters, else the local cluster.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub deliver: DeliverArgs,
}

pub fn run(cli: &Cli, a: &DeliverArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let mut sinks = build_sinks(&s, &a.sinks, !a.dry_run)?;
    let Some((mut ledger, _lock)) = ledger_for_sending(&s, "deliver", a.dry_run)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // A sink the config does not fit is left out (exit 2 at the end); the others deliver.
    let refused = check_tres(&s, &ledger, &a.sinks, &mut sinks);
    let out = &mut std::io::stdout().lock();
    let now = system_now();
    let (failed, needs_a_hand) = if a.dry_run {
        (dry_run(&ledger, &sinks, now, out)?, false)
    } else {
        let mut bars = SendProgress::new(cli.quiet);
        let report = pass::deliver_all(&mut ledger, &sinks, a.limits(&s), now, &mut |n, d, t| bars.update(n, d, t));
        bars.finish();
        (print_sinks(out, &report, cli.quiet)?, report.iter().any(SinkOutcome::needs_a_hand))
    };
    Ok(if refused { ExitCode::from(2) } else { super::pass_exit(failed, needs_a_hand) })
}

pub fn run_collect_and_deliver(cli: &Cli, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let Some((mut ledger, _lock)) = ledger_for_sending(&s, "run", a.deliver.dry_run)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let out = &mut std::io::stdout().lock();
    let now = system_now();
    let clusters = clusters_arg(&s, &a.clusters)?;
    // Sinks are built first, but a sink that cannot be built (a missing key) must not stop the
    // collect: the error is reported after it.
    let sinks = build_sinks(&s, &a.deliver.sinks, !a.deliver.dry_run);
    if a.deliver.dry_run {
        // A dry run must not move cursors either: it plans from what the ledger already holds.
        writeln!(out, "(dry run: not collecting; planning from the ledger as it is)")?;
        let mut sinks = sinks?;
        let config = check_tres(&s, &ledger, &a.deliver.sinks, &mut sinks);
        let refused = dry_run(&ledger, &sinks, now, out)?;
        return Ok(if config {
            ExitCode::from(2)
        } else if refused {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let runner = slurm_runner(&s);
    let plan = CollectPlan { runner: &runner, slurm: &s.slurm, clusters, since: Since::Cursor };
    let mut preflight = tres_preflight(&s, &a.deliver.sinks);
    let mut bars = SendProgress::new(cli.quiet);
    let consumers = sinks.as_deref().unwrap_or_default();
    let limits = a.deliver.limits(&s);
    let report =
        pass::run(&mut ledger, &plan, consumers, limits, now, &mut preflight, &mut |n, d, t| bars.update(n, d, t))?;
    bars.finish();
    print_clusters(out, &report.clusters, cli.quiet)?;
    // After the collect's report: a sink that could not be built is the operator's to fix.
    sinks?;
    print_sinks(out, &report.sinks, cli.quiet)?;
    print_side(out, &report.side)?;
    if !report.refused.is_empty() {
        return Err(UsageError(problems_text(&report.refused)).into());
    }
    Ok(super::pass_exit(report.failed(), report.needs_a_hand()))
}

/// The side tasks' failures (allocation asks, node-state reports): said, never fatal.
fn print_side(out: &mut dyn std::io::Write, side: &pass::side::SideReport) -> anyhow::Result<()> {
    for (cluster, r) in &side.allocations {
        if let Err(e) = r {
            writeln!(out, "{cluster}: allocation detail not read ({e}); runs are reported with what sacct says")?;
        }
    }
    for o in side.node_states.iter().filter(|o| o.error.is_some()) {
        writeln!(out, "{}: node states of {} not reported: {}", o.sink, o.cluster, o.error.as_deref().unwrap_or(""))?;
    }
    for o in &side.reconciled {
        let cluster = o.cluster.as_ref().map_or("-", |c| c.as_str());
        if let Some(e) = &o.error {
            writeln!(out, "{}: running jobs of {cluster} not reconciled: {e}", o.sink)?;
        }
        if !o.asked.is_empty() {
            writeln!(
                out,
                "{}: {} job(s) of {cluster} it shows running were not in the ledger; asked sacct for them",
                o.sink,
                o.asked.len()
            )?;
        }
        if !o.stale.is_empty() {
            writeln!(out, "{}: {} job(s) of {cluster} it shows running ended over an hour ago (first: {:?}); their stop went to another row or was refused", o.sink, o.stale.len(), &o.stale[..o.stale.len().min(10)])?;
        }
    }
    Ok(())
}

pub fn retry(cli: &Cli, a: &RetryArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let sinks = build_sinks(&s, std::slice::from_ref(&a.sink), false)?;
    let Some((mut ledger, _lock)) = ledger_for_sending(&s, "retry", false)? else { return Ok(ExitCode::from(1)) };
    let n = match engine::retry_rejected(&mut ledger, &sinks[0], a.id.as_deref(), system_now()) {
        Ok(n) => n,
        Err(e @ EngineError::StillUnroutable { .. }) => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    println!(
        "{}: {n} rejected deliveries put back to pending with today's mapping; the next `deliver` sends them",
        a.sink
    );
    if n == 0 && a.id.is_some() {
        println!("no rejected delivery has id {:?} (see `slurm-ledger status`)", a.id.as_deref().unwrap_or_default());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn accept_terms(cli: &Cli, a: &AcceptTermsArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let sinks = build_sinks(&s, std::slice::from_ref(&a.sink), false)?;
    let Some((mut ledger, _lock)) = ledger_for_sending(&s, "accept-terms", a.dry_run)? else {
        return Ok(ExitCode::from(1));
    };
    let c = &sinks[0];
    let name = c.name.as_str();
    let now = c.planner.terms().unwrap_or_default();
    let was = ledger.consumer_terms(name)?;
    if was.as_deref().map_or(true, |w| w == now) {
        println!("{name}: nothing to accept; it bills on {now}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{name}: items were planned on: {}", was.unwrap_or_default());
    println!("{name}: the config now says:    {now}");
    println!(
        "Items already planned are sent as planned; nothing is re-planned. What accrues from now on is billed on the \
         new terms: the rest of the {} run(s) still open, and every new run.",
        ledger.consumer_open_runs(name)?
    );
    // The new terms must bill something: a TRES no run carries and Slurm does not list is refused
    // here as it is by `deliver` (once accepted, it would not be checked again).
    check_tres_now(&s, &ledger, std::slice::from_ref(&a.sink))?;
    if a.dry_run {
        println!("(dry run: nothing changed)");
        return Ok(ExitCode::SUCCESS);
    }
    engine::accept_terms(&mut ledger, c, system_now())?;
    println!("{name}: accepted; the next `deliver` plans on the new terms");
    Ok(ExitCode::SUCCESS)
}

/// Prints what each sink's plan and execute did (with `quiet`, only what needs a hand). Returns
/// whether any delivery was rejected, or a sink had work and delivered none of it.
pub(crate) fn print_sinks(out: &mut dyn Write, sinks: &[SinkOutcome], quiet: bool) -> std::io::Result<bool> {
    for o in sinks.iter().filter(|o| !quiet || o.needs_a_hand()) {
        let (name, plan, exec) = (&o.sink, &o.plan, &o.exec);
        writeln!(
            out,
            "{name}: {} runs planned → {} new deliveries ({} runs held); sent: {} delivered, {} found already delivered, {} to retry, {} unknown (looked up next time), {} rejected",
            plan.runs_considered,
            plan.deliveries_planned,
            plan.runs_held,
            exec.delivered,
            exec.found_already_delivered,
            exec.retry,
            exec.unknown,
            exec.rejected
        )?;
        if let Some(at) = exec.paused_until {
            writeln!(
                out,
                "  {name}: the platform asked to slow down (429); sending resumes after {}{}",
                resume_time(at, system_now()),
                match exec.left {
                    0 => String::new(),
                    n => format!(" ({n} deliveries still due wait for it)"),
                }
            )?;
        } else if exec.left > 0 {
            writeln!(
                out,
                "  {name}: {} deliveries still due when this pass reached its limit ([delivery] pass_time, --time-limit or --limit); the next pass sends them (`status` shows the backlog)",
                exec.left
            )?;
        }
        if plan.runs_without_items > 0 {
            writeln!(
                out,
                "  {name}: {} of the runs had nothing new to bill (not started, no elapsed time, or less new time than running_slice)",
                plan.runs_without_items
            )?;
        }
        if exec.rejected > 0 {
            writeln!(
                out,
                "  {name}: see `slurm-ledger status` for the platform's reasons; `slurm-ledger retry --sink {name}` after a fix"
            )?;
        }
        if let Some(e) = &o.error {
            writeln!(out, "  {name}: FAILED: {e}")?;
            if let SinkFailure::TermsChanged { now, .. } = e {
                writeln!(
                    out,
                    "  {name}: restore the old settings of [sinks.{name}], or run `slurm-ledger accept-terms --sink {name}` \
                     to bill what accrues from now on as: {now}"
                )?;
            }
        }
        if o.stalled() {
            writeln!(
                out,
                "  {name}: nothing was delivered; `slurm-ledger status` shows the last error of each waiting delivery"
            )?;
        }
    }
    Ok(sinks.iter().any(SinkOutcome::failed))
}

/// `HH:MM:SSZ` of `at`, with its date in front when that is not `now`'s (UTC).
fn resume_time(at: UnixTime, now: UnixTime) -> String {
    let (at_text, now_text) = (at.to_rfc3339(), now.to_rfc3339());
    match (at_text.split_once('T'), now_text.split_once('T')) {
        (Some((day, time)), Some((today, _))) if day == today => time.to_string(),
        _ => at_text,
    }
}

/// Prints, for each sink, every request a pass would send now: what is already planned and
/// waiting, and what planning would add. Writes nothing. Returns whether a sink would be refused
/// (its terms changed).
pub(crate) fn dry_run(ledger: &Ledger, sinks: &[Consumer], now: UnixTime, out: &mut dyn Write) -> anyhow::Result<bool> {
    let mut refused = false;
    for c in sinks {
        let name = c.name.as_str();
        let Preview { planned, held } = match engine::preview(ledger, c, Some(&TrackerSeeds), now) {
            Ok(p) => p,
            Err(e @ EngineError::TermsChanged { .. }) => {
                writeln!(out, "{name} (dry run): FAILED: {e}")?;
                writeln!(
                    out,
                    "  {name}: restore the old settings of [sinks.{name}], or see `slurm-ledger accept-terms --help`"
                )?;
                refused = true;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // A total this pass raises is shown once, with the total it would then have.
        let raised: std::collections::HashSet<&str> =
            planned.iter().filter(|d| d.key.is_none()).map(|d| d.id.as_str()).collect();
        let waiting: Vec<_> = ledger
            .deliveries(name, None)?
            .into_iter()
            .filter(|d| matches!(d.state, DeliveryState::Pending | DeliveryState::Retry | DeliveryState::Sent))
            .filter(|d| !raised.contains(d.id.as_str()))
            .collect();
        writeln!(
            out,
            "{name} (dry run): {} already planned and waiting, {} new from this pass, {} runs held",
            waiting.len(),
            planned.len(),
            held.len()
        )?;
        for d in waiting.iter().chain(planned.iter()) {
            let note = match d.state {
                DeliveryState::Sent => " (outcome unknown: looked up first)",
                DeliveryState::Retry => " (retry)",
                _ => "",
            };
            let (a, b) =
                d.span.map_or_else(|| ("-".to_string(), "-".to_string()), |(a, b)| (a.to_string(), b.to_string()));
            let amount = match (&d.amount, d.total) {
                (Some(a), _) => format!("quantity {a}"),
                (None, Some(t)) => format!("total {t}"),
                (None, None) => "quantity -".into(),
            };
            writeln!(out, "\n# {}  {} {a}..{b} {amount}{note}", d.id, d.run_text())?;
            let run = match &d.key {
                Some(k) => ledger.job(k)?,
                None => None,
            };
            writeln!(out, "{}", c.sender.describe(d, run.as_ref()))?;
        }
        for (key, reason) in &held {
            writeln!(out, "\n# held {key}: {reason}")?;
        }
    }
    Ok(refused)
}

/// A progress bar per sink while a pass sends, on stderr when it is a terminal; none under `-q`,
/// for a pass with little to send, or when stderr is a file or a pipe (cron, logs).
struct SendProgress {
    show: bool,
    bar: Option<(String, ProgressBar)>,
}

/// Fewer due items than this are sent without a bar.
const BAR_FROM: u64 = 1_000;

impl SendProgress {
    fn new(quiet: bool) -> Self {
        Self { show: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()), bar: None }
    }

    fn update(&mut self, sink: &str, done: u64, total: u64) {
        if !self.show || total < BAR_FROM {
            return;
        }
        if self.bar.as_ref().is_some_and(|(s, _)| s != sink) {
            self.finish();
        }
        let (_, bar) = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix}: sending {bar:30} {human_pos}/{human_len} deliveries, {rate}/s, about {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", s.per_sec());
            });
            bar.set_style(style);
            bar.set_prefix(sink.to_string());
            (sink.to_string(), bar)
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_time_is_the_time_of_day_unless_it_is_another_day() {
        let now = UnixTime(1_796_428_800 + 13 * 3600); // 2026-12-05T13:00:00Z
        assert_eq!(resume_time(UnixTime(now.0 + 311), now), "13:05:11Z");
        assert_eq!(resume_time(UnixTime(now.0 + 86_400), now), "2026-12-06T13:00:00Z");
    }
}
