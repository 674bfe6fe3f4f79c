//! The `slurm-ledger` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = slurm_ledger::cli::Cli::parse();
    slurm_ledger::cli::init_logging(&cli);
    match slurm_ledger::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
