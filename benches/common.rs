//! What the benchmarks share: the synthetic day's size (`SYNTH_*`), the reader's options, the
//! machine's description and /proc readings (CPU time, host busy share, load, peak RSS), and
//! running a phase in a child process.
#![allow(dead_code)]

use slurm_ledger::model::ClusterName;
use slurm_ledger::slurm::parsable::ReadOptions;
use slurm_ledger::slurm::source::DELIMITER;
use slurm_ledger::slurm::values::TimeZone;

/// The synthetic day: jobs, steps per job, seed.
#[derive(Clone, Copy)]
pub struct Cfg {
    pub jobs: u64,
    pub steps: u32,
    pub seed: u64,
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// How the benchmarks read the synthetic day (as slurm-ledger reads its own sacct poll).
pub fn opts() -> ReadOptions {
    ReadOptions {
        delimiter: DELIMITER,
        layout: None,
        tz: TimeZone::Utc,
        default_cluster: ClusterName::new("testcluster").unwrap(),
    }
}

/// This process's CPU time (user + system), all threads, in seconds.
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// System-wide CPU jiffies (total, idle, steal) from /proc/stat.
pub fn cpu_jiffies() -> (f64, f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    (v.iter().take(8).sum(), get(3) + get(4), get(7))
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn vmhwm_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| l.strip_prefix(name)).map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|s| s.trim().to_string());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!(
        "nproc {nproc}, {} @ {} MHz, MemTotal {}",
        field("model name").unwrap_or_else(|| "?".into()),
        field("cpu MHz").unwrap_or_else(|| "?".into()),
        mem.unwrap_or_else(|| "?".into())
    )
}

/// A phase's `RESULT k=v …` line, as its child process printed it, plus what the rest of the
/// machine did meanwhile (`busy_pct`, `steal_pct`) and the load before it (`load`).
pub struct PhaseResult {
    pub kv: Vec<(String, String)>,
}

impl PhaseResult {
    pub fn get(&self, k: &str) -> f64 {
        self.kv.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.parse().ok()).unwrap_or(f64::NAN)
    }

    pub fn text(&self, k: &str) -> &str {
        self.kv.iter().find(|(key, _)| key == k).map_or("", |(_, v)| v.as_str())
    }
}

/// Runs `phase` in a child process of this benchmark binary (`--phase P --ledger L`, the day's
/// size in `SYNTH_*`), so the peak RSS it reports is that phase's alone.
pub fn child(phase: &str, cfg: Cfg, ledger: &std::path::Path) -> PhaseResult {
    let exe = std::env::current_exe().unwrap();
    let before = cpu_jiffies();
    let load = loadavg();
    let out = std::process::Command::new(exe)
        .args(["--phase", phase, "--ledger"])
        .arg(ledger)
        .env("SYNTH_JOBS", cfg.jobs.to_string())
        .env("SYNTH_STEPS", cfg.steps.to_string())
        .env("SYNTH_SEED", cfg.seed.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run phase child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "phase {phase} failed: {}\n{stdout}", out.status);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("RESULT line");
    let mut kv = line
        .split(' ')
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Vec<(String, String)>>();
    // What the rest of the machine did meanwhile: busy CPUs (of all) and hypervisor steal.
    let after = cpu_jiffies();
    let total = (after.0 - before.0).max(1.0);
    kv.push(("busy_pct".into(), format!("{:.0}", 100.0 * (1.0 - (after.1 - before.1) / total))));
    kv.push(("steal_pct".into(), format!("{:.0}", 100.0 * (after.2 - before.2) / total)));
    kv.push(("load".into(), load.replace(' ', "/")));
    PhaseResult { kv }
}

/// The day from `SYNTH_JOBS`/`SYNTH_STEPS`/`SYNTH_SEED` (1,000,000 jobs of 3 steps by default).
pub fn cfg_from_env() -> Cfg {
    Cfg {
        jobs: env_u64("SYNTH_JOBS", 1_000_000),
        steps: env_u64("SYNTH_STEPS", 3) as u32,
        seed: env_u64("SYNTH_SEED", 20261122),
    }
}

/// `cargo bench --bench X -- 100000`: a positional job count overrides `SYNTH_JOBS`.
pub fn with_positional_jobs(cfg: Cfg, args: &[String]) -> Cfg {
    match args.iter().find_map(|a| a.replace('_', "").parse::<u64>().ok()) {
        Some(jobs) => Cfg { jobs, ..cfg },
        None => cfg,
    }
}

/// The value after `name` on the command line.
pub fn arg_after(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}
