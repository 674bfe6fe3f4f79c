//! `slurm-ledger hook`: slurmctld's `PrologSlurmctld`/`EpilogSlurmctld` fast path. Reads only its
//! environment (no config file, no ledger, no logging set-up: `main` calls [`run`] before any of
//! that), sends one message to the daemon within [`HOOK_BUDGET`] and always exits 0, even when
//! its own command line is wrong or it panics: a failing `PrologSlurmctld` would requeue or cancel
//! the job.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use crate::config::ENV_HOOK_SOCKET;
use crate::daemon::hook::{send, HookAddr, HookMessage, DEFAULT_HOOK_SOCKET, HOOK_BUDGET};

use super::Cli;

pub const LONG_ABOUT: &str =
    "Tell the slurm-ledger daemon at once that a job started or ended, so it asks Slurm for that
job now instead of at its next poll. For slurmctld's PrologSlurmctld and EpilogSlurmctld.

slurmctld runs the program as SlurmUser, with no arguments, and with SLURM_JOB_ID,
SLURM_CLUSTER_NAME and SLURM_SCRIPT_CONTEXT in its environment. This command reads only those
(no config file, no ledger), sends one message to the daemon's socket within 10 ms and always
exits 0: a daemon that is down, a missing socket or an incomplete environment never delays or
fails a job, and the daemon's next poll sees the job anyway. -v says on stderr why nothing was
sent.

slurm.conf (the program takes no arguments, so point it at a wrapper), then `scontrol reconfigure`:
    PrologSlurmctld=/usr/local/libexec/slurm-ledger-hook
    EpilogSlurmctld=/usr/local/libexec/slurm-ledger-hook
/usr/local/libexec/slurm-ledger-hook, mode 0755, exits 0 even without the binary:
    #!/bin/sh
    [ -x /usr/local/bin/slurm-ledger ] && /usr/local/bin/slurm-ledger hook
    exit 0
slurmctld does not pass its own environment to the script: for another socket, export
SLURM_LEDGER_HOOK_SOCKET in the wrapper. SlurmUser must be able to write the socket: the daemon
creates it with mode 0620 and its service's group (contrib/systemd/slurm-ledger.service: slurm).";

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The daemon's socket: a unix socket path, or tcp:HOST:PORT for a daemon on another host.
    #[arg(long, env = ENV_HOOK_SOCKET, value_name = "ADDR", default_value = DEFAULT_HOOK_SOCKET)]
    pub socket: String,
}

/// Sends the message; exit status 0 whatever happens. With -v, says on stderr what was sent or
/// why nothing was.
pub fn run(cli: &Cli, a: &HookArgs) -> ExitCode {
    let verbose = cli.verbose > 0 && !cli.quiet;
    let outcome = std::panic::catch_unwind(|| send_from_env(&a.socket));
    if verbose {
        let line = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(why)) => format!("nothing sent: {why}"),
            Err(_) => "nothing sent: the hook panicked (above); please report it".to_string(),
        };
        // Never a panic over a closed stderr.
        let _ = writeln!(std::io::stderr(), "slurm-ledger hook: {line}");
    }
    ExitCode::SUCCESS
}

fn send_from_env(socket: &str) -> Result<String, String> {
    let addr: HookAddr = socket.parse().map_err(|e| format!("{e}"))?;
    let msg = HookMessage::from_env(&|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    match send(&addr, &msg, HOOK_BUDGET) {
        Ok(()) => Ok(format!("sent job {} ({}) to {addr}", msg.job_id, msg.context)),
        Err(e) => Err(format!(
            "sending job {} to {addr}: {e} (is `slurm-ledger daemon` running, listening there, and may SlurmUser write it?)",
            msg.job_id
        )),
    }
}

/// Whether this command line asks for `hook` (its first word that is not an option), so that a
/// command line clap refuses still exits 0 under slurmctld.
pub fn invoked(args: &[std::ffi::OsString]) -> bool {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        match w.to_str() {
            // Global options that take a value.
            Some("-c" | "--config" | "--ledger") => {
                words.next();
            }
            Some(w) if w.starts_with('-') => {}
            Some(w) => return w == "hook",
            None => return false,
        }
    }
    false
}

/// For a `hook` command line clap refused: say why (or print the help asked for), exit 0.
pub fn refused_command_line(e: clap::Error) -> ExitCode {
    let _ = e.print();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_word_is_found_after_global_options() {
        let args = |s: &str| s.split(' ').map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(invoked(&args("slurm-ledger hook")));
        assert!(invoked(&args("slurm-ledger -v hook --bogus")));
        assert!(invoked(&args("slurm-ledger --config hook.toml -q hook")));
        assert!(invoked(&args("slurm-ledger --ledger x.db hook")));
        assert!(!invoked(&args("slurm-ledger --config hook jobs")));
        assert!(!invoked(&args("slurm-ledger jobs hook")));
        assert!(!invoked(&args("slurm-ledger")));
        assert!(!invoked(&args("slurm-ledger --version")));
    }
}
