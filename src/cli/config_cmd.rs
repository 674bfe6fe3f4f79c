//! `slurm-ledger config check|example`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{example, Settings};

use super::{Cli, UsageError};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config (and --ledger) and print the settings in effect. Exit 2 on problems.
    Check,
    /// Print a commented example config with every key and its default.
    Example,
}

pub fn run(cli: &Cli, c: &ConfigCommand) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCommand::Example => print!("{}", example()),
        ConfigCommand::Check => {
            let (mut s, path) = Settings::load(cli.config.as_deref()).map_err(|e| UsageError(e.to_string()))?;
            if let Some(p) = &cli.ledger {
                s.ledger_path = p.clone();
            }
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
        }
    }
    Ok(ExitCode::SUCCESS)
}
