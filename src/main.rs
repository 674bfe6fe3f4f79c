//! The `slurm-ledger` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use slurm_ledger::cli::{hook, Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Under slurmctld a failing PrologSlurmctld requeues the job: a wrong hook line exits 0.
        Err(e) if hook::invoked(&std::env::args_os().collect::<Vec<_>>()) => return hook::refused_command_line(e),
        Err(e) => e.exit(),
    };
    if let Command::Hook(a) = &cli.command {
        // No logging, config or ledger: the hook is on the path of every job's start and end.
        return hook::run(&cli, a);
    }
    slurm_ledger::cli::init_logging(&cli);
    match slurm_ledger::cli::run(cli) {
        Ok(code) => code,
        // `slurm-ledger jobs | head`: the reader has what it wanted; stop without an error
        // message, with the status of a command ended by SIGPIPE (128 + 13), never 0: a
        // collect cut short this way may have left clusters unpolled.
        Err(e) if e.chain().any(is_broken_pipe) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.downcast_ref::<std::io::Error>().map(|io| io.kind()) == pipe
        || e.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == pipe
        || e.downcast_ref::<csv::Error>()
            .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
}
