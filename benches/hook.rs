//! Hook benchmark: the wall time of `slurm-ledger hook`, the release binary, as slurmctld runs it
//! for every job's start and end (`PrologSlurmctld`/`EpilogSlurmctld`). It must never delay an
//! allocation: the goal is at most 20 ms, median and max.
//!
//! `cargo bench --bench hook` (release profile). Each phase runs the binary [`RUNS`] times
//! (`-- N` for another count) with the variables slurmctld sets, and measures from spawn to exit:
//! - `no daemon`: the socket file is missing (the daemon is down): nothing to send to.
//! - `unix listener`: this process's `Listener` bound on a unix socket; every message must arrive.
//! - `tcp listener`: the same on `tcp:127.0.0.1:PORT` (a daemon on another controller).
//! - `via /bin/sh wrapper`: as slurm.conf runs it, through `contrib/slurm-ledger-hook` (pointed at
//!   this build), to the unix listener.

#[path = "common.rs"]
mod common;
use common::{loadavg, machine};

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use slurm_ledger::daemon::hook::{HookAddr, HookMessage, Listener, SocketPerms};

/// Runs per phase.
const RUNS: usize = 100;
/// The goal for both the median and the max, in ms.
const TARGET_MS: f64 = 20.0;

struct Phase {
    name: &'static str,
    times_ms: Vec<f64>,
    /// For a phase with a listener: every job id arrived, once.
    arrived: Option<bool>,
}

impl Phase {
    fn median(&self) -> f64 {
        let mut t = self.times_ms.clone();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        }
    }

    fn max(&self) -> f64 {
        self.times_ms.iter().copied().fold(0.0, f64::max)
    }
}

/// Runs `program args` `runs` times as slurmctld would (job ids 1..=runs), timing each.
fn time_runs(program: &Path, args: &[&str], socket: &str, runs: usize) -> Vec<f64> {
    (1..=runs)
        .map(|job| {
            let mut c = Command::new(program);
            c.args(args)
                .env_clear()
                .env("SLURM_JOB_ID", job.to_string())
                .env("SLURM_CLUSTER_NAME", "benchcluster")
                .env("SLURM_SCRIPT_CONTEXT", "prolog_slurmctld")
                .env("SLURM_LEDGER_HOOK_SOCKET", socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let t = Instant::now();
            let status = c.status().expect("run slurm-ledger hook");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(status.success(), "slurm-ledger hook exited {status}");
            ms
        })
        .collect()
}

/// Whether job ids 1..=runs each arrived once.
fn all_arrived(rx: &Receiver<HookMessage>, runs: usize) -> bool {
    let mut ids = Vec::new();
    while let Ok(m) = rx.recv_timeout(Duration::from_secs(if ids.len() < runs { 5 } else { 0 })) {
        ids.push(m.job_id);
        if ids.len() > runs {
            break;
        }
    }
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    let ok = ids.len() == runs && unique == (1..=runs as u64).collect();
    if !ok {
        eprintln!("arrived: {} messages, {} distinct job ids of {runs}", ids.len(), unique.len());
    }
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args.iter().skip(1).find_map(|a| a.parse::<usize>().ok()).unwrap_or(RUNS);
    let bin = Path::new(env!("CARGO_BIN_EXE_slurm-ledger"));
    println!("hook benchmark: {runs} runs of `{} hook` per phase", bin.display());
    println!("machine : {}", machine());
    println!("load    : {} (1/5/15 min) before the run", loadavg());

    let dir = tempfile::tempdir().unwrap();
    let hook = ["hook"];
    // Warm the page cache and the dynamic loader once; not measured.
    time_runs(bin, &hook, "/nonexistent/hook.sock", 1);

    let mut phases = Vec::new();
    let missing = dir.path().join("missing.sock");
    phases.push(Phase {
        name: "no daemon (socket missing)",
        times_ms: time_runs(bin, &hook, missing.to_str().unwrap(), runs),
        arrived: None,
    });

    let unix = HookAddr::Unix(dir.path().join("hook.sock"));
    let (tx, rx) = mpsc::channel();
    let listener = Listener::start(&unix, &SocketPerms::default(), tx).unwrap();
    let times_ms = time_runs(bin, &hook, &unix.to_string(), runs);
    let arrived = all_arrived(&rx, runs) && listener.counters().received == runs as u64;
    phases.push(Phase { name: "unix listener", times_ms, arrived: Some(arrived) });

    // As slurm.conf runs it: contrib/slurm-ledger-hook, pointed at this build.
    let wrapper = dir.path().join("slurm-ledger-hook");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/slurm-ledger-hook")).unwrap();
    std::fs::write(&wrapper, text.replace("/usr/local/bin/slurm-ledger", bin.to_str().unwrap())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let times_ms = time_runs(&wrapper, &[], &unix.to_string(), runs);
    let arrived = all_arrived(&rx, runs) && listener.counters().received == 2 * runs as u64;
    phases.push(Phase { name: "unix listener, via /bin/sh wrapper", times_ms, arrived: Some(arrived) });
    drop(listener);

    let (tx, rx) = mpsc::channel();
    let any_port = HookAddr::Tcp { host: "127.0.0.1".into(), port: 0 };
    let listener = Listener::start(&any_port, &SocketPerms::default(), tx).unwrap();
    let times_ms = time_runs(bin, &hook, &listener.addr().to_string(), runs);
    let arrived = all_arrived(&rx, runs) && listener.counters().received == runs as u64;
    phases.push(Phase { name: "tcp listener (127.0.0.1)", times_ms, arrived: Some(arrived) });
    drop(listener);

    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!();
    println!("{:<38} {:>10} {:>10} {:>10} {:>9}  result", "phase", "median ms", "max ms", "goal ms", "arrived");
    let mut all_ok = true;
    for p in &phases {
        let arrived = p.arrived.unwrap_or(true);
        let ok = p.median() <= TARGET_MS && p.max() <= TARGET_MS && arrived;
        all_ok &= ok;
        println!(
            "{:<38} {:>10.2} {:>10.2} {:>10} {:>9}  {}",
            p.name,
            p.median(),
            p.max(),
            format!("<= {TARGET_MS}"),
            p.arrived.map_or("-", |a| if a { "all" } else { "NOT ALL" }),
            verdict(ok)
        );
    }
    println!("(wall time from spawn to exit of each run, median and max over {runs}; load after: {})", loadavg());
    println!("hook: {}", verdict(all_ok));
}
