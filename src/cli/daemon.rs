//! `slurm-ledger daemon`: builds the loop of `daemon::service` from the config and runs it until
//! SIGTERM or SIGINT (a second one exits at once; what was under way is looked up later, as after
//! a crash).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::collect::Since;
use crate::daemon::hook::{HookMessage, Listener};
use crate::daemon::http;
use crate::daemon::metrics::Metrics;
use crate::daemon::service::{self, Daemon, Flags, Health};
use crate::daemon::settings::DaemonSettings;
use crate::ledger::lock;
use crate::pass::CollectPlan;

use super::collect::clusters_arg;
use super::{
    build_sinks, open_ledger, sender_lock, settings, slurm_runner, system_now, tres_preflight, Cli, UsageError,
};

#[derive(Debug, Args)]
#[command(after_help = "Runs in the foreground and logs to stderr (journald under systemd:
contrib/systemd/slurm-ledger.service). Settings: the [daemon] table (`slurm-ledger config
example`): interval, hook_socket, hook_socket_mode, hook_socket_group, hook_delay, metrics_listen.

Every interval it collects each cluster (one sacct query) and delivers to every sink, as `run`
does; a message from `slurm-ledger hook` (slurm.conf PrologSlurmctld/EpilogSlurmctld) makes it
ask sacct for that job at once and deliver. Each pass takes the ledger's sender lock, so `retry`
or a cron `run` wait for it and never send at once with it; one daemon per ledger.

SIGTERM or SIGINT: stops after the batch being sent (a second one: at once; an unanswered send
is looked up on the platform before it is sent again).")]
pub struct DaemonArgs {}

/// Set by the signal handlers; read by the loop.
static FLAGS: Flags = Flags { stop: AtomicBool::new(false), interrupt: AtomicBool::new(false) };

extern "C" fn on_signal(_: libc::c_int) {
    // Only atomics and _exit: async-signal-safe.
    if FLAGS.stop.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; nothing is unwound or flushed.
        unsafe { libc::_exit(130) };
    }
    FLAGS.interrupt.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> std::io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only touches atomics and calls _exit.
        let prev = unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
        if prev == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn run(cli: &Cli, _a: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let ds = DaemonSettings::from_raw(&s.daemon).map_err(|p| {
        UsageError(format!("the config's [daemon] table has {} problem(s):\n{}", p.len(), crate::validate::list(&p)))
    })?;
    // Keys are loaded now: a missing one stops the daemon at start, not at its first send.
    let consumers = build_sinks(&s, &[], true)?;
    let Some(_daemon_lock) = lock::try_daemon_lock(&s.ledger_path)
        .with_context(|| format!("locking {}", lock::daemon_lock_path(&s.ledger_path).display()))?
    else {
        anyhow::bail!(
            "another slurm-ledger daemon runs on {} (lock {}); stop it first (systemctl stop slurm-ledger)",
            s.ledger_path.display(),
            lock::daemon_lock_path(&s.ledger_path).display()
        );
    };
    // Opening may create or upgrade the ledger: under the sender lock, as every sender does.
    let ledger = {
        let Some(_l) = sender_lock(&s, "daemon")? else { return Ok(ExitCode::from(1)) };
        open_ledger(&s)?
    };
    install_signal_handlers().context("installing the SIGTERM/SIGINT handlers")?;

    let metrics = Arc::new(Metrics::new(system_now().0));
    let pass_time = Duration::from_secs(s.delivery.pass_time_secs);
    let health = Arc::new(Health::new(Health::grace_for(ds.interval, pass_time)));
    let _server = match ds.metrics_listen {
        Some(addr) => {
            let h = Arc::clone(&health);
            let server = http::serve(addr, Arc::clone(&metrics), Arc::new(move || h.check()))
                .context("serving /metrics ([daemon] metrics_listen)")?;
            Some(server)
        }
        None => None,
    };
    let (listener, hook_rx) = match &ds.hook_socket {
        Some(addr) => {
            let (tx, rx) = mpsc::channel::<HookMessage>();
            let listener = Listener::start(addr, &ds.hook_perms, tx)
                .with_context(|| format!("listening on the hook socket {addr} ([daemon] hook_socket)"))?;
            (Some(listener), Some(forward(rx)?))
        }
        None => (None, None),
    };

    let runner = slurm_runner(&s);
    let clusters = clusters_arg(&s, &[])?;
    let mut d = Daemon {
        ledger,
        ledger_path: s.ledger_path.clone(),
        collect: CollectPlan { runner: &runner, slurm: &s.slurm, clusters, since: Since::Cursor },
        consumers,
        preflight: Box::new(tres_preflight(&s, &[])),
        settings: ds,
        pass_time,
        max_items: s.delivery.batch,
        metrics,
        health,
        clock: &system_now,
        paused: Default::default(),
    };
    let refused = || listener.as_ref().map_or(0, |l| l.counters().refused);
    service::run(&mut d, hook_rx, &refused, &FLAGS)?;
    Ok(ExitCode::SUCCESS)
}

/// Passes the listener's messages on to the loop, flagging each so that a long pass stops after
/// its current batch and the job is looked at now.
fn forward(from: mpsc::Receiver<HookMessage>) -> std::io::Result<mpsc::Receiver<HookMessage>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("hook-forward".into()).spawn(move || {
        for msg in from {
            FLAGS.interrupt.store(true, Ordering::SeqCst);
            if tx.send(msg).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}
