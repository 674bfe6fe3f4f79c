//! `slurm-ledger config check|example`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{example, ConfigProblem, Settings};
use crate::delivery::consumer::EnginePolicy;
use crate::ledger::Ledger;
use crate::sinks::BuildCtx;

use super::{Cli, UsageError};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and its sinks (keys, hosts; the TRES against --ledger) and print the settings in effect. Exit 2 listing every problem.
    Check,
    /// Print a commented example config with every key and its default.
    Example,
}

/// Every problem of the config at once: TOML and values, then each configured sink as `deliver`
/// builds it (its key, its host; nothing is sent), then each sink's TRES against the ledger when
/// it exists (and Slurm's TRES list, read-only, for a TRES no run carries). A usage error listing
/// them all, or the settings (`--ledger` applied).
fn check_everything(cli: &Cli) -> anyhow::Result<(Settings, Option<std::path::PathBuf>)> {
    let path = crate::config::config_path(cli.config.as_deref());
    let shown = path.as_ref().map_or_else(|| "(built-in defaults)".to_string(), |p| p.display().to_string());
    let (mut s, mut problems) = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| UsageError(format!("cannot read config file {}: {e}", p.display())))?;
            Settings::check_toml(&text)
        }
        None => Settings::check_toml(""),
    };
    if let Some(p) = &cli.ledger {
        s.ledger_path = p.clone();
    }
    if let Err(p) = crate::daemon::settings::DaemonSettings::from_raw(&s.daemon) {
        problems.extend(p);
    }
    let env = |name: &str| std::env::var(name).ok();
    let ctx = BuildCtx { online: true, env: &env, policy: EnginePolicy::default() };
    for name in s.sinks.names() {
        // A sink whose section is already wrong is not built too (one cause, one problem).
        if problems.iter().any(|p| p.key.starts_with(&format!("sinks.{name}."))) {
            continue;
        }
        match crate::sinks::build(&s.sinks, &[name.to_string()], &ctx) {
            Ok(built) => built.iter().flat_map(|b| &b.warnings).for_each(|w| eprintln!("warning: {w}")),
            Err(e) => problems.push(ConfigProblem { key: format!("sinks.{name}"), message: e.to_string() }),
        }
    }
    if s.ledger_path.exists() {
        match Ledger::open_read_only(&s.ledger_path) {
            Ok(ledger) => {
                // Slurm's own TRES list is asked (read-only) only for a TRES no run carries.
                if let Err(p) = crate::pass::check_billed_tres(&ledger, &s.sinks, &[], &mut || super::slurm_tres(&s)) {
                    problems.extend(p);
                }
            }
            Err(e) => eprintln!("note: the ledger's TRES were not checked: {e}"),
        }
    }
    if !problems.is_empty() {
        let list = crate::validate::list(&problems);
        return Err(UsageError(format!("config file {shown} has {} problem(s):\n{list}", problems.len())).into());
    }
    Ok((s, path))
}

pub fn run(cli: &Cli, c: &ConfigCommand) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCommand::Example => print!("{}", example()),
        ConfigCommand::Check => {
            let (s, path) = check_everything(cli)?;
            match path {
                Some(p) => println!("config {}: OK", p.display()),
                None => {
                    println!("no config file ({} absent): built-in defaults: OK", crate::config::DEFAULT_CONFIG_PATH)
                }
            }
            let sl = &s.slurm;
            println!("ledger.path            = {}", s.ledger_path.display());
            println!(
                "slurm.clusters         = {}",
                if sl.clusters.is_empty() { "(local cluster)".into() } else { sl.clusters.join(", ") }
            );
            println!(
                "slurm.bin_dir          = {}",
                sl.bin_dir.as_ref().map_or("(PATH)".into(), |d| d.display().to_string())
            );
            println!(
                "slurm.command_wrapper  = {}",
                if sl.command_wrapper.is_empty() { "(none)".into() } else { sl.command_wrapper.join(" ") }
            );
            println!("slurm.timeout_secs     = {}", sl.timeout_secs);
            println!("slurm.overlap          = {} s", sl.overlap_secs);
            println!("slurm.initial_lookback = {} s", sl.initial_lookback_secs);
            println!("log.level              = {}", s.log_level);
            // Valid: checked above.
            if let Ok(d) = crate::daemon::settings::DaemonSettings::from_raw(&s.daemon) {
                let none = || "none".to_string();
                println!("daemon.interval        = {} s", d.interval.as_secs());
                println!("daemon.hook_socket     = {}", d.hook_socket.as_ref().map_or_else(none, |a| a.to_string()));
                println!("daemon.hook_delay      = {} ms", d.hook_delay.as_millis());
                println!("daemon.metrics_listen  = {}", d.metrics_listen.map_or_else(none, |a| a.to_string()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
