//! `slurm-ledger deliver`: meter what the ledger holds and report it to each sink, exactly once;
//! `retry`: put rejected deliveries back after a fix; `run`: collect, then deliver (for cron).

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::collect::Since;
use crate::delivery::engine::{execute_sink, plan_sink, preview_sink, EnginePolicy};
use crate::ledger::{DeliveryState, Ledger};
use crate::model::{ClusterName, UnixTime};
use crate::sinks::Sink;
use crate::slurm::runner::CommandRunner;

use super::collect::collect_all;
use super::sink_setup::{build_sinks, policy_for};
use super::{open_ledger, open_ledger_read_only, sender_lock, settings, system_now, Cli, UsageError};

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

    /// Most deliveries sent per sink in this pass (default: [delivery] batch).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
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
    let sinks = build_sinks(&s, &a.sinks, !a.dry_run)?;
    let _lock = if a.dry_run {
        None
    } else {
        match sender_lock(&s, "deliver")? {
            Some(l) => Some(l),
            None => return Ok(ExitCode::SUCCESS),
        }
    };
    let mut ledger = if a.dry_run { open_ledger_read_only(&s)? } else { open_ledger(&s)? };
    let out = &mut std::io::stdout().lock();
    let now = system_now();
    let failed = deliver_all(
        &mut ledger,
        &sinks,
        &|n| policy_for(&s, n),
        a.limit.unwrap_or(s.delivery.batch),
        a.dry_run,
        now,
        out,
    )?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn run_collect_and_deliver(cli: &Cli, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let _lock = if a.deliver.dry_run {
        None
    } else {
        match sender_lock(&s, "run")? {
            Some(l) => Some(l),
            None => return Ok(ExitCode::SUCCESS),
        }
    };
    let mut ledger = if a.deliver.dry_run { open_ledger_read_only(&s)? } else { open_ledger(&s)? };
    let out = &mut std::io::stdout().lock();
    let now = system_now();
    let clusters = if a.clusters.is_empty() { s.slurm.clusters.clone() } else { a.clusters.clone() };
    let clusters = clusters
        .iter()
        .map(|c| ClusterName::new(c).map_err(|e| anyhow::Error::new(UsageError(format!("--cluster: {e}")))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runner = CommandRunner { wrapper: s.slurm.command_wrapper.clone(), bin_dir: s.slurm.bin_dir.clone() };
    // A dry run must not move cursors either: it plans from what the ledger already holds.
    let collect_failed = if a.deliver.dry_run {
        writeln!(out, "(dry run: not collecting; planning from the ledger as it is)")?;
        0
    } else {
        collect_all(&runner, &s, &mut ledger, clusters, Since::Cursor, now, out)?
    };
    // Sinks after collecting: a missing key must not stop the collect.
    let sinks = build_sinks(&s, &a.deliver.sinks, !a.deliver.dry_run)?;
    // Deliver even when a cluster failed: what the ledger holds is still owed.
    let failed = deliver_all(
        &mut ledger,
        &sinks,
        &|n| policy_for(&s, n),
        a.deliver.limit.unwrap_or(s.delivery.batch),
        a.deliver.dry_run,
        now,
        out,
    )?;
    Ok(if failed || collect_failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn retry(cli: &Cli, a: &RetryArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let sinks = build_sinks(&s, std::slice::from_ref(&a.sink), false)?;
    let Some(_lock) = sender_lock(&s, "retry")? else { return Ok(ExitCode::from(1)) };
    let sink = &sinks[0];
    let mut ledger = open_ledger(&s)?;
    let rejected: Vec<_> = ledger
        .deliveries(&a.sink, Some(DeliveryState::Rejected))?
        .into_iter()
        .filter(|d| a.id.as_ref().map_or(true, |id| *id == d.id))
        .collect();
    // Re-render each payload with today's config: the fix may be a mapping.
    let mut payloads = Vec::with_capacity(rejected.len());
    for d in &rejected {
        let Some(job) = ledger.job(&d.key)? else {
            anyhow::bail!("delivery {} refers to run {} that the ledger no longer has", d.id, d.key)
        };
        let slice = crate::delivery::plan::Slice { start: d.slice_start, end: d.slice_end, quantity: 0 };
        match sink.render(&job, &slice, &d.id, &d.quantity) {
            Ok(p) => payloads.push((d.id.clone(), p)),
            Err(reason) => anyhow::bail!(UsageError(format!("delivery {} still cannot be rendered: {reason}", d.id))),
        }
    }
    let mut w = ledger.writer(system_now())?;
    let mut n = 0;
    for (id, p) in &payloads {
        n += u64::from(w.requeue_rejected_with(id, p)?);
    }
    w.commit()?;
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

/// Plans and executes every sink (or previews, for a dry run). Returns whether any delivery
/// was rejected, or a sink had work and delivered none of it.
pub(crate) fn deliver_all(
    ledger: &mut Ledger,
    sinks: &[Box<dyn Sink>],
    policy: &dyn Fn(&str) -> EnginePolicy,
    limit: u64,
    dry_run: bool,
    now: UnixTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut failed = false;
    for sink in sinks {
        let name = sink.name();
        let p = policy(name);
        if dry_run {
            dry_run_sink(ledger, sink.as_ref(), now, &p, out)?;
            continue;
        }
        let plan = plan_sink(ledger, sink.as_ref(), now, &p)?;
        let exec = execute_sink(ledger, sink.as_ref(), now, limit, &p)?;
        writeln!(
            out,
            "{name}: {} runs planned → {} new deliveries ({} runs held); sent: {} delivered, {} found already delivered, {} to retry, {} unknown (looked up next time), {} rejected",
            plan.runs_considered, plan.deliveries_planned, plan.runs_held, exec.delivered, exec.found_already_delivered, exec.retry, exec.unknown, exec.rejected
        )?;
        if exec.rejected > 0 {
            writeln!(out, "  {name}: see `slurm-ledger status` for the platform's reasons; `slurm-ledger retry --sink {name}` after a fix")?;
            failed = true;
        }
        // Nothing got through although there was work: the platform is down or refuses the key.
        if exec.delivered + exec.found_already_delivered == 0 && exec.retry + exec.unknown > 0 {
            writeln!(
                out,
                "  {name}: nothing was delivered; `slurm-ledger status` shows the last error of each waiting delivery"
            )?;
            failed = true;
        }
    }
    Ok(failed)
}

fn dry_run_sink(
    ledger: &Ledger,
    sink: &dyn Sink,
    now: UnixTime,
    p: &EnginePolicy,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let name = sink.name();
    let crate::delivery::engine::Preview { planned, held } = preview_sink(ledger, sink, now, p)?;
    let waiting: Vec<_> = ledger
        .deliveries(name, None)?
        .into_iter()
        .filter(|d| matches!(d.state, DeliveryState::Pending | DeliveryState::Retry | DeliveryState::Sent))
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
        writeln!(out, "\n# {}  {} {}..{} quantity {}{note}", d.id, d.key, d.slice_start, d.slice_end, d.quantity)?;
        writeln!(out, "{}", sink.describe(d))?;
    }
    for (key, reason) in &held {
        writeln!(out, "\n# held {key}: {reason}")?;
    }
    Ok(())
}
