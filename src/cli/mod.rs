//! Command-line interface: clap types and one file per subcommand. The only place (with
//! `main.rs`) that uses `anyhow`; library errors arrive here typed and leave as messages.

mod backfill;
mod collect;
mod config_cmd;
mod daemon;
mod deliver;
mod demo;
pub mod hook;
mod jobs;
mod migrate;
mod status;
mod timeargs;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Settings, ENV_CONFIG, ENV_LEDGER};
use crate::delivery::consumer::{Consumer, EnginePolicy};
use crate::ledger::{lock, Ledger};
use crate::sinks::BuildCtx;
use crate::slurm::runner::CommandRunner;
use crate::slurm::source::SlurmSource;
use std::time::Duration;

pub use timeargs::{parse_time_arg, system_now};

const ABOUT: &str = "Turn Slurm accounting into trustworthy usage.

slurm-ledger reads every job run from Slurm with one sacct query per poll, keeps it in a durable
SQLite ledger (nothing lost, nothing counted twice), meters it (core-, GPU-, memory-hours, any
TRES) and reports every second of usage to each platform exactly once.

Start with `slurm-ledger demo` (no Slurm needed), then `slurm-ledger config example`.";

const AFTER: &str =
    "Exit status: 0 success (quarantined records are reported, not fatal), 1 failure, 2 bad usage or config.
Environment: SLURM_LEDGER_CONFIG (config file), SLURM_LEDGER_DB (ledger file), RUST_LOG (log filter).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "slurm-ledger", version, about = ABOUT, after_help = AFTER, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/slurm-ledger/config.toml if it exists, else built-in defaults.
    #[arg(short, long, global = true, env = ENV_CONFIG, value_name = "FILE", help_heading = "Global options")]
    pub config: Option<PathBuf>,

    /// Ledger database file, over the config's [ledger] path.
    #[arg(long, global = true, env = ENV_LEDGER, value_name = "FILE", help_heading = "Global options")]
    pub ledger: Option<PathBuf>,

    /// More log output (-v debug, -vv trace). Logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,

    /// Quiet, for cron: only errors on stderr, and collect/deliver/run print only what needs a hand (failures, new quarantine, held runs, rejected deliveries).
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = "Global options")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read job runs from Slurm (one sacct call per cluster) into the ledger. For cron.
    Collect(collect::CollectArgs),
    /// List job runs in the ledger.
    Jobs(jobs::JobsArgs),
    /// Show the ledger: cursors, runs by state, quarantined records, last collects.
    Status(status::StatusArgs),
    /// Check or print the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Meter the ledger's runs and report new usage to each sink, exactly once (--dry-run prints it).
    Deliver(deliver::DeliverArgs),
    /// Collect, then deliver: the one command for cron.
    Run(deliver::RunArgs),
    /// Put a sink's rejected deliveries back to pending after fixing the cause.
    Retry(deliver::RetryArgs),
    /// Accept a sink's changed billing terms (TRES, basis, unit, period, time zone) from now on.
    AcceptTerms(deliver::AcceptTermsArgs),
    /// Read past months from Slurm and report them, month by month; resumable.
    Backfill(backfill::BackfillArgs),
    /// Switch from another tool without billing twice (slurm-tracker, waldur-site-agent).
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Run the whole pipeline on recorded real Slurm 22.05 output (no Slurm needed) and show the result.
    Demo(demo::DemoArgs),
    /// Run as a service: collect and deliver every interval, at once for jobs the hook names; /metrics.
    Daemon(daemon::DaemonArgs),
    /// For slurm.conf's PrologSlurmctld/EpilogSlurmctld: tell the daemon a job started or ended (always exits 0).
    #[command(long_about = hook::LONG_ABOUT)]
    Hook(hook::HookArgs),
}

/// Sets up tracing to stderr: -q/-v, else RUST_LOG, else the config's level (read later).
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = if cli.quiet {
        EnvFilter::new("error")
    } else if cli.verbose > 0 {
        EnvFilter::new(if cli.verbose == 1 { "slurm_ledger=debug,info" } else { "trace" })
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    };
    // async-nats traces the CONNECT line it writes, password or token included: never below debug.
    let filter = filter.add_directive("async_nats::connection=debug".parse().expect("a valid directive"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Loads settings, exiting with status 2 and the problems when the config is bad.
fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let (mut s, _) =
        Settings::load(cli.config.as_deref()).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))?;
    if let Some(p) = &cli.ledger {
        s.ledger_path = p.clone();
    }
    Ok(s)
}

fn open_ledger(s: &Settings) -> anyhow::Result<Ledger> {
    // The error names the file and the fix.
    Ok(Ledger::open(&s.ledger_path)?)
}

/// The ledger for a dry run: read-only, nothing created or upgraded.
fn open_ledger_read_only(s: &Settings) -> anyhow::Result<Ledger> {
    Ledger::open_read_only(&s.ledger_path)
        .with_context(|| format!("opening the ledger {} read-only (dry run)", s.ledger_path.display()))
}

/// The ledger for a command that may send (`deliver`, `run`, `retry`, `migrate`): for a dry run
/// opened read-only (no lock, nothing created or upgraded); otherwise opened once the sender lock
/// is held, the lock returned with it. `Ok(None)`: another sender holds the lock (said on
/// stderr); the command does nothing this time.
fn ledger_for_sending(s: &Settings, what: &str, dry_run: bool) -> anyhow::Result<Option<(Ledger, SenderLock)>> {
    if dry_run {
        return Ok(Some((open_ledger_read_only(s)?, None)));
    }
    let Some(lock) = sender_lock(s, what)? else { return Ok(None) };
    Ok(Some((open_ledger(s)?, Some(lock))))
}

/// The sender lock a command holds while it lives (`None` for a dry run).
type SenderLock = Option<lock::LedgerLock>;

/// Exit status of `collect`, `deliver` and `run`: 1 when something failed, 3 when all went
/// through but something needs a hand (a record quarantined for the first time, runs held), 0
/// otherwise. (2 is a usage or config error, from the caller.)
fn pass_exit(failed: bool, needs_a_hand: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else if needs_a_hand {
        ExitCode::from(NEEDS_A_HAND)
    } else {
        ExitCode::SUCCESS
    }
}

/// The exit status of a pass that went through with something for an admin to look at.
pub const NEEDS_A_HAND: u8 = 3;

/// Takes the ledger's sender lock, or says who holds it. `Ok(None)`: skip this pass.
fn sender_lock(s: &Settings, what: &str) -> anyhow::Result<Option<lock::LedgerLock>> {
    let l = lock::try_lock(&s.ledger_path)
        .with_context(|| format!("locking {}", lock::lock_path(&s.ledger_path).display()))?;
    if l.is_none() {
        eprintln!(
            "slurm-ledger {what}: another deliver/run/retry/migrate/backfill is working on {} (lock {}); nothing done this time",
            s.ledger_path.display(),
            lock::lock_path(&s.ledger_path).display()
        );
    }
    Ok(l)
}

/// The configured sinks (or those named in `only`) as consumers. `online`: load keys so they can
/// send (a missing key is a usage error); otherwise they can only plan and describe (`--dry-run`).
/// Warnings (a key file others can read) go to stderr even under `-q`: cron mails them.
fn build_sinks(s: &Settings, only: &[String], online: bool) -> anyhow::Result<Vec<Consumer>> {
    let env = |name: &str| std::env::var(name).ok();
    let ctx = BuildCtx { online, env: &env, policy: engine_policy(s) };
    match crate::sinks::build(&s.sinks, only, &ctx) {
        Ok(built) => Ok(built
            .into_iter()
            .map(|b| {
                for w in &b.warnings {
                    eprintln!("warning: {w}");
                }
                b.consumer
            })
            .collect()),
        Err(e) if e.is_usage() => Err(UsageError(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

/// Checks each sink's billed TRES against the ledger, and against Slurm's list when no run
/// carries it (`sacctmgr show tres`, asked only then). The sinks that fail are said on stderr
/// (each key with its fix) and left out of `sinks`; returns whether any was.
fn check_tres(s: &Settings, ledger: &Ledger, only: &[String], sinks: &mut Vec<Consumer>) -> bool {
    let Err(problems) = tres_preflight(s, only)(ledger) else { return false };
    eprintln!("error: {}", problems_text(&problems));
    let skip = crate::pass::refused_sinks(&problems);
    sinks.retain(|c| !skip.contains(&c.name.as_str()));
    true
}

/// [`check_tres`] even for a sink whose stored terms equal its current ones (`accept-terms`
/// stores them: they are checked before).
fn check_tres_now(s: &Settings, ledger: &Ledger, only: &[String]) -> anyhow::Result<()> {
    crate::pass::check_billed_tres_unstored(ledger, &s.sinks, only, &mut || slurm_tres(s))
        .map_err(|p| UsageError(problems_text(&p)).into())
}

/// [`check_tres`] as the pass's preflight.
fn tres_preflight<'a>(
    s: &'a Settings,
    only: &'a [String],
) -> impl FnMut(&Ledger) -> Result<(), Vec<crate::config::ConfigProblem>> + 'a {
    move |ledger: &Ledger| crate::pass::check_billed_tres(ledger, &s.sinks, only, &mut || slurm_tres(s))
}

/// Config problems found against the ledger, as `config check` lists them.
fn problems_text(problems: &[crate::config::ConfigProblem]) -> String {
    format!("the config has {} problem(s) with this ledger:\n{}", problems.len(), crate::validate::list(problems))
}

/// The runner of every Slurm command, as `[slurm]` says (wrapper, bin_dir).
fn slurm_runner(s: &Settings) -> CommandRunner {
    CommandRunner { wrapper: s.slurm.command_wrapper.clone(), bin_dir: s.slurm.bin_dir.clone() }
}

/// The TRES Slurm knows (`sacctmgr show tres`), or `None` when it cannot be asked.
fn slurm_tres(s: &Settings) -> Option<Vec<String>> {
    SlurmSource::new(&slurm_runner(s), Duration::from_secs(s.slurm.timeout_secs)).list_tres().ok()
}

/// Retry timing from `[delivery]`.
fn engine_policy(s: &Settings) -> EnginePolicy {
    EnginePolicy { base_backoff_secs: s.delivery.retry_backoff_secs, max_backoff_secs: s.delivery.max_backoff_secs }
}

/// An error that is the user's input: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let result = match &cli.command {
        Command::Collect(a) => collect::run(&cli, a),
        Command::Jobs(a) => jobs::run(&cli, a),
        Command::Status(a) => status::run(&cli, a),
        Command::Config(c) => config_cmd::run(&cli, c),
        Command::Deliver(a) => deliver::run(&cli, a),
        Command::Run(a) => deliver::run_collect_and_deliver(&cli, a),
        Command::Retry(a) => deliver::retry(&cli, a),
        Command::AcceptTerms(a) => deliver::accept_terms(&cli, a),
        Command::Backfill(a) => backfill::run(&cli, a),
        Command::Migrate(c) => migrate::run(&cli, c),
        Command::Demo(a) => demo::run(a),
        Command::Daemon(a) => daemon::run(&cli, a),
        // `main` runs it before any set-up; here for completeness.
        Command::Hook(a) => Ok(hook::run(&cli, a)),
    };
    match result {
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
        other => other,
    }
}
