//! What the chaos tests over the live Slurm testbed share (`chaos_activate`, `chaos_waldur`,
//! `daemon_chaos`): a
//! seeded [`Rng`] (`CHAOS_SEED` replays it), the job mix and its operators ([`Mix`]), what
//! `sacct` says of its runs ([`SacctRun`]), and the two phases: [`chaos_phase`] runs
//! `slurm-ledger run` again and again, SIGKILLing about half of the runs at a random point, until
//! every job is final in Slurm; [`clean_phase`] runs it until nothing is left to send.
//!
//! Only what Slurm and the binary do is here; each sink's fake, config and checks stay in its test.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};

use crate::fakes::activate::parse_date_time;
use crate::fakes::{Fault, FaultMix};

/// Chaos phase: from the first submit until every job is final (then leftovers are cancelled).
pub const CHAOS_LIMIT: Duration = Duration::from_secs(180);
/// Clean phase: until nothing is pending, sent or waiting for a retry.
pub const CLEAN_LIMIT: Duration = Duration::from_secs(60);
/// One waited-for `run` (a TimeoutAfter costs the client its timeout per request).
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Seeded splitmix64, for kill decisions and delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The faults both fakes inject, on reads and writes, about one request in three: 5xx before and
/// after the write, 429, dropped connections before and after, timeouts after the write (3 s:
/// past the client's 1 s), slow answers.
pub fn fault_mix() -> FaultMix {
    FaultMix {
        weights: vec![
            (0.06, Fault::Status5xxBefore(503)),
            (0.05, Fault::Status5xxAfter(500)),
            (0.05, Fault::TooMany { retry_after_secs: 1 }),
            (0.04, Fault::DropBefore),
            (0.05, Fault::DropAfter),
            (0.04, Fault::TimeoutAfter { secs: 3 }),
            (0.05, Fault::Slow { millis: 300 }),
        ],
        on_get: true,
    }
}

/// `CHAOS_SEED`, or one from the clock; printed with how to replay it.
pub fn seed() -> u64 {
    let seed: u64 = match std::env::var("CHAOS_SEED") {
        Ok(s) => s.trim().parse().expect("CHAOS_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("chaos: seed {seed} (replay the fault draws and kills with CHAOS_SEED={seed})");
    seed
}

/// One job to submit: as `user` under `account`, with extra sbatch arguments and a script.
struct Spec {
    tag: &'static str,
    user: &'static str,
    account: &'static str,
    args: &'static [&'static str],
    script: &'static str,
}

/// The mix, ≈ 320 CPU-seconds: the testbed's left-running seed job holds 4 of the node's 8 CPUs.
/// The 4-CPU job goes first (FIFO would otherwise hold everything behind it); the next two are
/// driven by the operator threads (cancel while running, requeue).
const SPECS: &[Spec] = &[
    Spec { tag: "wide", user: "bob", account: "engineering", args: &["-c", "4", "-t", "2"], script: "sleep 8" },
    Spec { tag: "cancel", user: "bob", account: "engineering", args: &["-c", "2", "-t", "3"], script: "sleep 120" },
    Spec {
        tag: "requeue",
        user: "root",
        account: "research-team",
        args: &["-c", "1", "-t", "2", "--requeue"],
        script: "sleep 15",
    },
    Spec { tag: "long", user: "carol", account: "hpc_proj1", args: &["-c", "1", "-t", "2"], script: "sleep 60" },
    Spec { tag: "short", user: "alice", account: "research-team", args: &["-c", "1", "-t", "1"], script: "sleep 2" },
    Spec { tag: "eng", user: "alice", account: "engineering", args: &["-c", "2", "-t", "1"], script: "sleep 5" },
    Spec { tag: "ntasks", user: "bob", account: "hpc_proj1", args: &["-n", "2", "-t", "1"], script: "sleep 10" },
    Spec { tag: "tiny", user: "carol", account: "hpc_proj1", args: &["-n", "1", "-t", "1"], script: "sleep 3" },
    Spec { tag: "root", user: "root", account: "research-team", args: &["-c", "2", "-t", "1"], script: "sleep 15" },
    Spec { tag: "fail", user: "root", account: "hpc_proj1", args: &["-c", "1", "-t", "1"], script: "sleep 4; exit 3" },
    Spec { tag: "failfast", user: "alice", account: "research-team", args: &["-c", "1", "-t", "1"], script: "exit 1" },
    Spec {
        tag: "array",
        user: "alice",
        account: "research-team",
        args: &["-c", "1", "-t", "1", "--array=0-3"],
        script: "sleep $((2 + SLURM_ARRAY_TASK_ID * 2))",
    },
    Spec {
        tag: "gpu",
        user: "carol",
        account: "hpc_proj1",
        args: &["-p", "gpu", "-c", "1", "-t", "1"],
        script: "sleep 12",
    },
    Spec {
        tag: "qos",
        user: "bob",
        account: "engineering",
        args: &["-c", "1", "-t", "2", "--qos=high"],
        script: "sleep 30",
    },
    Spec { tag: "three", user: "alice", account: "engineering", args: &["-n", "3", "-t", "1"], script: "sleep 10" },
    Spec { tag: "forty", user: "root", account: "engineering", args: &["-c", "1", "-t", "2"], script: "sleep 40" },
];
/// Tasks of the array spec.
const ARRAY_TASKS: usize = 4;

/// Submits as the spec's user, the job named `{prefix}-{tag}`; the job id.
fn submit(s: &Spec, prefix: &str) -> u64 {
    let name = format!("{prefix}-{}", s.tag);
    let out = Command::new("runuser")
        .args([
            "-u",
            s.user,
            "--",
            "sbatch",
            "--parsable",
            "-D",
            "/tmp",
            "-o",
            "/dev/null",
            "-J",
            &name,
            "-A",
            s.account,
        ])
        .args(s.args)
        .args(["--wrap", s.script])
        .output()
        .expect("runuser sbatch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sbatch {name} as {}: {}{}", s.user, text, String::from_utf8_lossy(&out.stderr));
    text.trim().split(';').next().unwrap().parse().unwrap_or_else(|_| panic!("sbatch {name}: no job id in {text:?}"))
}

/// Cancels the jobs still queued or running when dropped (a failing test leaves nothing behind).
struct CancelOnDrop(Vec<u64>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let ids: Vec<String> = self.0.iter().map(u64::to_string).collect();
        let _ = Command::new("scancel").args(&ids).stderr(Stdio::null()).status();
    }
}

fn squeue_state(id: u64) -> String {
    let out = Command::new("squeue").args(["-h", "-o", "%T", "-j", &id.to_string()]).output().expect("squeue");
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string()
}

/// Waits (bounded) until the job runs, then `secs` more, then runs each command in turn.
fn act_when_running(id: u64, secs: u64, cmds: Vec<Vec<String>>) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while squeue_state(id) != "RUNNING" {
        if Instant::now() > deadline {
            return Err(format!("job {id} never RUNNING within 120 s (state {:?})", squeue_state(id)));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(secs));
    for c in &cmds {
        let out = Command::new(&c[0]).args(&c[1..]).output().map_err(|e| format!("{}: {e}", c[0]))?;
        if !out.status.success() {
            return Err(format!("{}: {}", c.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(format!(
        "job {id}, {secs} s after it started: {}",
        cmds.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join("; ")
    ))
}

/// The submitted mix: a varied set of real jobs (users, accounts, 1–4 CPUs, 2–60 s, a failure,
/// a cancel while running, a 4-task array, a requeue), and the operator threads that cancel one
/// and requeue another once they run. Cancels what is left when dropped.
pub struct Mix {
    pub ids: Vec<u64>,
    /// Job ids to expect in `sacct` (array tasks split out).
    pub expected_jobs: usize,
    pub requeue_id: u64,
    operators: Vec<JoinHandle<Result<String, String>>>,
    _cleanup: CancelOnDrop,
}

impl Mix {
    /// Submits the mix, the jobs named `{prefix}-{tag}`, and starts the operators.
    pub fn submit(prefix: &str) -> Mix {
        let ids: Vec<u64> = SPECS.iter().map(|s| submit(s, prefix)).collect();
        let expected_jobs = SPECS.len() - 1 + ARRAY_TASKS;
        println!("chaos: submitted {} jobs ({expected_jobs} with array tasks): {ids:?}", SPECS.len());
        let id_of = |tag: &str| ids[SPECS.iter().position(|s| s.tag == tag).expect("tag in SPECS")];
        let (cancel_id, requeue_id) = (id_of("cancel"), id_of("requeue"));
        let cmd = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
        let cancel = vec![cmd(&["scancel", &cancel_id.to_string()])];
        // A requeue resets the submit time, which puts the job behind every other one (all have
        // the same priority): an admin priority lets its second run start as soon as it is eligible.
        let requeue = vec![
            cmd(&["scontrol", "requeue", &requeue_id.to_string()]),
            cmd(&["scontrol", "update", &format!("jobid={requeue_id}"), "priority=100000"]),
        ];
        let operators = vec![
            std::thread::spawn(move || act_when_running(cancel_id, 6, cancel)),
            std::thread::spawn(move || act_when_running(requeue_id, 4, requeue)),
        ];
        Mix { _cleanup: CancelOnDrop(ids.clone()), ids, expected_jobs, requeue_id, operators }
    }

    /// The operators are done (a failed one fails the test) and every job is final in `sacct`.
    pub fn all_final(&mut self) -> bool {
        if self.operators.iter().all(|h| h.is_finished()) {
            for h in self.operators.drain(..) {
                match h.join().expect("operator thread") {
                    Ok(done) => println!("chaos: operator: {done}"),
                    Err(e) => panic!("chaos: operator failed: {e}"),
                }
            }
        }
        self.operators.is_empty() && all_final(&sacct_runs(&self.ids), self.expected_jobs)
    }

    /// The requeued job's runs must be two; a problem otherwise.
    pub fn requeue_problem(&self, rows: &[SacctRun]) -> Option<String> {
        let n = rows.iter().filter(|r| r.raw == self.requeue_id).count();
        (n < 2).then(|| format!("the requeued job {} has {n} run(s) in sacct; expected 2", self.requeue_id))
    }
}

/// One row of `sacct --duplicates -X`: one run of a job.
#[derive(Debug, Clone)]
pub struct SacctRun {
    pub raw: u64,
    pub submit: i64,
    pub cpu_time_raw: u64,
    pub state: String,
    pub account: String,
    pub user: String,
    /// Unix seconds; `None` for a run that never started.
    pub start: Option<i64>,
    pub alloc_cpus: u64,
    pub elapsed_raw: u64,
    /// `AllocTRES` as sacct prints it with `--noconvert` (`billing=1,cpu=1,mem=256M,node=1`).
    pub alloc_tres: String,
}

/// `2026-12-05T06:49:25` (UTC) → Unix seconds; `None` for `Unknown`/`None`.
fn utc_secs(text: &str) -> Option<i64> {
    parse_date_time(&format!("{text}Z")).map(|(s, _)| s)
}

pub fn sacct_runs(ids: &[u64]) -> Vec<SacctRun> {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let fields = "JobIDRaw,Submit,CPUTimeRAW,State,Account,User,Start,AllocCPUS,ElapsedRaw,AllocTRES";
    let out = Command::new("sacct")
        .args(["--duplicates", "-X", "-P", "-n", "--noconvert", "-o", fields, "-j", &list])
        .env("TZ", "UTC")
        .env("SLURM_TIME_FORMAT", "standard")
        .output()
        .expect("sacct");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sacct -j {list}: {}", String::from_utf8_lossy(&out.stderr));
    let num = |l: &str, what: &str, f: &str| f.parse::<u64>().unwrap_or_else(|_| panic!("{what} {f:?} in {l:?}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 10, "sacct row {l:?}");
            SacctRun {
                raw: num(l, "JobIDRaw", f[0]),
                submit: utc_secs(f[1]).unwrap_or_else(|| panic!("sacct submit {:?} in {l:?}", f[1])),
                cpu_time_raw: num(l, "CPUTimeRAW", f[2]),
                state: f[3].split_whitespace().next().unwrap_or("").to_string(),
                account: f[4].to_string(),
                user: f[5].to_string(),
                start: utc_secs(f[6]),
                alloc_cpus: num(l, "AllocCPUS", f[7]),
                elapsed_raw: num(l, "ElapsedRaw", f[8]),
                alloc_tres: f[9].to_string(),
            }
        })
        .collect()
}

const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REQUEUED",
];

/// Every job is final: each row terminal, a requeued job has a later run that is not REQUEUED,
/// and all `jobs` job ids (array tasks split out) are there.
fn all_final(rows: &[SacctRun], jobs: usize) -> bool {
    let mut by_raw: BTreeMap<u64, Vec<&SacctRun>> = BTreeMap::new();
    for r in rows {
        by_raw.entry(r.raw).or_default().push(r);
    }
    by_raw.len() == jobs
        && by_raw.values().all(|runs| {
            runs.iter().all(|r| TERMINAL.contains(&r.state.as_str())) && runs.iter().any(|r| r.state != "REQUEUED")
        })
}

/// How `slurm-ledger` is run: its config, ledger and log (every run's output appended), and the
/// environment the sink's secret comes from.
pub struct Runner {
    pub cfg: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    pub env: Vec<(&'static str, String)>,
}

impl Runner {
    /// In `dir`: `config.toml` (written by the caller), `ledger.db`, `runs.log`.
    pub fn new(dir: &std::path::Path, env: Vec<(&'static str, String)>) -> Runner {
        Runner { cfg: dir.join("config.toml"), db: dir.join("ledger.db"), log: dir.join("runs.log"), env }
    }

    /// `slurm-ledger --config CFG --ledger DB <args>`, its output appended to the log.
    pub fn spawn(&self, args: &[&str], label: &str) -> Child {
        let mut f = File::options().create(true).append(true).open(&self.log).unwrap();
        writeln!(f, "\n===== {label}").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
        cmd.arg("--config").arg(&self.cfg).arg("--ledger").arg(&self.db).args(args);
        for k in ["SLURM_LEDGER_CONFIG", "SLURM_LEDGER_DB", "PW_API_KEY", "PW_PLATFORM_HOST"] {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn slurm-ledger")
    }

    /// Waits for `child`, at most `limit` (then kills it and fails with the log's tail).
    pub fn wait(&self, child: &mut Child, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`slurm-ledger` took more than {limit:?}; log tail:\n{}", self.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last 40 lines of the log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Deliveries of `sink` not yet settled (pending, sent with unknown outcome, waiting to retry).
    pub fn open_deliveries(&self, sink: &str) -> usize {
        let l = Ledger::open(&self.db).unwrap();
        [DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Retry]
            .iter()
            .map(|s| l.deliveries(sink, Some(*s)).unwrap().len())
            .sum()
    }
}

/// What the chaos phase did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Chaos {
    pub passes: u32,
    pub kills: u32,
    /// Kills that hit a process still running.
    pub kills_alive: u32,
}

/// Runs `slurm-ledger run` again and again, about half of the runs SIGKILLed after 0–800 ms,
/// until every job of `mix` is final in Slurm (after [`CHAOS_LIMIT`] the rest are cancelled).
/// Every 20 passes it prints its progress, with what `sink_progress` says of the sink's side.
pub fn chaos_phase(mix: &mut Mix, runner: &Runner, rng: &mut Rng, sink_progress: impl Fn() -> String) -> Chaos {
    let started = Instant::now();
    let deadline = Instant::now() + CHAOS_LIMIT;
    let mut c = Chaos::default();
    let mut cancelled_leftovers = false;
    loop {
        if mix.all_final() {
            return c;
        }
        if Instant::now() > deadline && !cancelled_leftovers {
            println!("chaos: WARNING: jobs not final after {CHAOS_LIMIT:?} (a busy testbed?); cancelling the rest");
            drop(CancelOnDrop(mix.ids.clone()));
            cancelled_leftovers = true;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "jobs never became final: {:#?}",
            sacct_runs(&mix.ids)
        );
        c.passes += 1;
        let t = Instant::now();
        let mut child = runner.spawn(&["run"], &format!("chaos pass {}", c.passes));
        if rng.below(2) == 0 {
            let after = rng.below(801);
            std::thread::sleep(Duration::from_millis(after));
            let alive = child.try_wait().expect("try_wait").is_none();
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            c.kills += 1;
            c.kills_alive += u32::from(alive);
        } else {
            let st = runner.wait(&mut child, RUN_LIMIT);
            if !st.success() {
                println!(
                    "chaos: pass {}: {st} after {:.1} s (1: a cluster failed to collect or a delivery was rejected)",
                    c.passes,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        if c.passes % 20 == 0 {
            println!(
                "chaos: {} passes, {} SIGKILLs ({} of a live process), {}, {:.0} s",
                c.passes,
                c.kills,
                c.kills_alive,
                sink_progress(),
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `slurm-ledger run` until a pass succeeds with no delivery of `sink` open and every run of
/// `mix` final in the ledger (at most [`CLEAN_LIMIT`]); `sacct`'s final rows of the mix and the
/// number of passes.
pub fn clean_phase(mix: &Mix, runner: &Runner, sink: &str) -> (Vec<SacctRun>, u32) {
    let deadline = Instant::now() + CLEAN_LIMIT;
    let mut clean = 0u32;
    loop {
        clean += 1;
        let mut child = runner.spawn(&["run"], &format!("clean pass {clean}"));
        let st = runner.wait(&mut child, RUN_LIMIT);
        let rows = sacct_runs(&mix.ids);
        let ledger = Ledger::open(&runner.db).unwrap();
        let ours_final = rows.iter().all(|r| {
            let runs = ledger.jobs(&JobFilter { job_id_raw: Some(r.raw), ..Default::default() }).unwrap();
            runs.iter().any(|j| j.key.submit.0 == r.submit && j.state.is_final())
        });
        let open = runner.open_deliveries(sink);
        println!("chaos: clean pass {clean}: {st}, {open} deliveries open, our runs final in the ledger: {ours_final}");
        if st.success() && open == 0 && ours_final {
            return (rows, clean);
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {CLEAN_LIMIT:?} of clean passes; log tail:\n{}",
            runner.tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Fails with the problems found (at most 40 shown) and the log's tail.
pub fn assert_no_problems(problems: &[String], seed: u64, runner: &Runner) {
    let shown = problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
    let more = if problems.len() > 40 { format!("\n… and {} more", problems.len() - 40) } else { String::new() };
    assert!(
        problems.is_empty(),
        "exactly-once violated (seed {seed}), {} problems:\n{shown}{more}\nlog tail:\n{}",
        problems.len(),
        runner.tail()
    );
}
