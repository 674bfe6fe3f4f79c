//! Exactly-once delivery to ACTIVATE under faults, over the live Slurm 22.05 testbed.
//!
//! Submits a varied mix of real jobs (users, accounts, 1–4 CPUs, 2–60 s, a failure, a cancel
//! while running, an array, a requeue), and meanwhile runs `slurm-ledger run` (collect +
//! deliver) again and again against [`FakeActivate`] injecting a seeded random mix of faults
//! (5xx before/after recording, 429, dropped connections, timeouts after recording, slow
//! answers), SIGKILLing about half of the runs after 0–800 ms. Once every job is final in Slurm,
//! faults stop and clean passes run until nothing is left to send. Then, per run of each job
//! submitted here (JobIDRaw + submit), the accepted events' quantities must add up exactly to
//! `CPUTimeRAW / 3600` core-hours (rounded half up to 10⁻⁶) from a separate `sacct` call; no
//! delivery id may be accepted twice; a run's events never overlap; no event crosses a UTC day.
//!
//! Skips like `testbed` when SLURM_LEDGER_TESTBED != 1. `CHAOS_SEED=<u64>` replays a seed (the
//! fault draws, the kill decisions and delays; Slurm's own timing is never the same twice).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};

use crate::fakes::activate::parse_date_time;
use crate::fakes::{Event, FakeActivate, FakeConfig, Fault, FaultMix};

const ORG: &str = "chaos-org";
const API_KEY: &str = "pwt_chaos.secret-key";
/// Chaos phase: from the first submit until every job is final (then leftovers are cancelled).
const CHAOS_LIMIT: Duration = Duration::from_secs(180);
/// Clean phase: until nothing is pending, sent or waiting for a retry.
const CLEAN_LIMIT: Duration = Duration::from_secs(60);
/// One waited-for `run` (a TimeoutAfter costs the client 1 s per request).
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Seeded splitmix64, for kill decisions and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
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

/// Submits as the spec's user; the job id.
fn submit(s: &Spec) -> u64 {
    let name = format!("chaos-{}", s.tag);
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

/// One row of `sacct --duplicates -X`: one run of a job.
#[derive(Debug, Clone)]
struct SacctRun {
    raw: u64,
    submit: i64,
    cpu_time_raw: u64,
    state: String,
}

fn sacct_runs(ids: &[u64]) -> Vec<SacctRun> {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new("sacct")
        .args(["--duplicates", "-X", "-P", "-n", "-o", "JobIDRaw,Submit,CPUTimeRAW,State", "-j", &list])
        .env("TZ", "UTC")
        .env("SLURM_TIME_FORMAT", "standard")
        .output()
        .expect("sacct");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sacct -j {list}: {}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 4, "sacct row {l:?}");
            let submit =
                parse_date_time(&format!("{}Z", f[1])).unwrap_or_else(|| panic!("sacct submit {:?} in {l:?}", f[1])).0;
            SacctRun {
                raw: f[0].parse().unwrap_or_else(|_| panic!("JobIDRaw {:?} in {l:?}", f[0])),
                submit,
                cpu_time_raw: f[2].parse().unwrap_or_else(|_| panic!("CPUTimeRAW {:?} in {l:?}", f[2])),
                state: f[3].split_whitespace().next().unwrap_or("").to_string(),
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

/// `12.345678` → 12345678 micro-units, exactly; panics on anything but a plain decimal.
fn micro(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    assert!(
        digits(int) && (frac.is_empty() || digits(frac)) && frac.len() <= 6,
        "quantity {text:?} is not a decimal with ≤ 6 places"
    );
    int.parse::<i128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap()
}

fn secs(rfc3339: &str) -> i64 {
    let (s, nanos) = parse_date_time(rfc3339).unwrap_or_else(|| panic!("not RFC 3339: {rfc3339:?}"));
    assert_eq!(nanos, 0, "sub-second time {rfc3339:?}");
    s
}

/// (JobIDRaw, submit) of an accepted event, from its metadata.
fn run_of(e: &Event) -> (u64, i64) {
    let m = e.metadata.as_ref().unwrap_or_else(|| panic!("event {} has no metadata", e.id));
    let raw = m["jobId"].as_u64().unwrap_or_else(|| panic!("event {}: metadata.jobId {}", e.id, m["jobId"]));
    let submit = m["submit"].as_str().unwrap_or_else(|| panic!("event {}: metadata.submit {}", e.id, m["submit"]));
    (raw, secs(submit))
}

fn delivery_id(e: &Event) -> String {
    e.metadata
        .as_ref()
        .and_then(|m| m["deliveryId"].as_str())
        .unwrap_or_else(|| panic!("event {} has no metadata.deliveryId", e.id))
        .to_string()
}

/// `slurm-ledger --config CFG --ledger DB run`, output appended to `log`.
fn spawn_run(cfg: &Path, db: &Path, log: &Path, label: &str) -> Child {
    let mut f = File::options().create(true).append(true).open(log).unwrap();
    writeln!(f, "\n===== {label}").unwrap();
    Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--config")
        .arg(cfg)
        .arg("--ledger")
        .arg(db)
        .arg("run")
        .env_remove("SLURM_LEDGER_CONFIG")
        .env_remove("SLURM_LEDGER_DB")
        .env_remove("PW_API_KEY")
        .env_remove("PW_PLATFORM_HOST")
        .env("SLURM_LEDGER_ACTIVATE_API_KEY", API_KEY)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("spawn slurm-ledger run")
}

fn wait_bounded(child: &mut Child, limit: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`slurm-ledger run` took more than {limit:?}; log tail:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Deliveries of the sink not yet settled (pending, sent with unknown outcome, waiting to retry).
fn open_deliveries(db: &Path) -> usize {
    let l = Ledger::open(db).unwrap();
    [DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Retry]
        .iter()
        .map(|s| l.deliveries("activate", Some(*s)).unwrap().len())
        .sum()
}

#[test]
fn chaos_activate_exactly_once_over_live_slurm() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _slurm = crate::testbed::exclusive_slurm();
    let started = Instant::now();
    let seed: u64 = match std::env::var("CHAOS_SEED") {
        Ok(s) => s.trim().parse().expect("CHAOS_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    println!("chaos: seed {seed} (replay the fault draws and kills with CHAOS_SEED={seed})");
    let mut rng = Rng(seed ^ 0x5eed);

    let allocations = ["alloc-research", "alloc-eng", "alloc-proj1", "alloc-other"];
    let mix = FaultMix {
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
    };
    let fake = FakeActivate::start(FakeConfig {
        org: ORG.into(),
        api_key: API_KEY.into(),
        allocations: allocations.iter().map(|s| s.to_string()).collect(),
        accept_bearer: false,
        seed,
        faults: mix,
    });

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let cfg = dir.path().join("config.toml");
    let log = dir.path().join("runs.log");
    std::fs::write(
        &cfg,
        format!(
            "[slurm]\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"2s\"\n\n\
             [sinks.activate]\norganization = \"{ORG}\"\nhost = \"{}\"\ndefault_sku = \"cpu-hours\"\n\
             default_allocation = \"alloc-other\"\nrunning_slice = \"5s\"\ntimeout_secs = 1\n\n\
             [sinks.activate.partition_sku]\ngpu = \"gpu-node-cpu-hours\"\n\n\
             [sinks.activate.account_allocation]\nresearch-team = \"alloc-research\"\nengineering = \"alloc-eng\"\nhpc_proj1 = \"alloc-proj1\"\n",
            fake.base_url()
        ),
    )
    .unwrap();

    // Submit the mix; the operators cancel one job and requeue another once they run.
    let ids: Vec<u64> = SPECS.iter().map(submit).collect();
    let _cleanup = CancelOnDrop(ids.clone());
    let expected_jobs = SPECS.len() - 1 + ARRAY_TASKS;
    println!("chaos: submitted {} jobs ({expected_jobs} with array tasks): {ids:?}", SPECS.len());
    let id_of = |tag: &str| ids[SPECS.iter().position(|s| s.tag == tag).expect("tag in SPECS")];
    let (cancel_id, requeue_id) = (id_of("cancel"), id_of("requeue"));
    let cmd = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    let cancel = vec![cmd(&["scancel", &cancel_id.to_string()])];
    // A requeue resets the submit time, which puts the job behind every other one (all have the
    // same priority): an admin priority lets its second run start as soon as it is eligible.
    let requeue = vec![
        cmd(&["scontrol", "requeue", &requeue_id.to_string()]),
        cmd(&["scontrol", "update", &format!("jobid={requeue_id}"), "priority=100000"]),
    ];
    let mut operators = vec![
        std::thread::spawn(move || act_when_running(cancel_id, 6, cancel)),
        std::thread::spawn(move || act_when_running(requeue_id, 4, requeue)),
    ];
    let chaos_deadline = Instant::now() + CHAOS_LIMIT;

    // Chaos: run after run, about half of them SIGKILLed after 0–800 ms, until all jobs are final.
    let (mut passes, mut kills, mut kills_alive) = (0u32, 0u32, 0u32);
    let mut cancelled_leftovers = false;
    loop {
        if operators.iter().all(|h| h.is_finished()) {
            for h in operators.drain(..) {
                match h.join().expect("operator thread") {
                    Ok(done) => println!("chaos: operator: {done}"),
                    Err(e) => panic!("chaos: operator failed: {e}"),
                }
            }
        }
        if operators.is_empty() && all_final(&sacct_runs(&ids), expected_jobs) {
            break;
        }
        if Instant::now() > chaos_deadline && !cancelled_leftovers {
            println!("chaos: WARNING: jobs not final after {CHAOS_LIMIT:?} (a busy testbed?); cancelling the rest");
            drop(CancelOnDrop(ids.clone()));
            cancelled_leftovers = true;
        }
        assert!(
            Instant::now() < chaos_deadline + Duration::from_secs(30),
            "jobs never became final: {:#?}",
            sacct_runs(&ids)
        );
        passes += 1;
        let t = Instant::now();
        let mut child = spawn_run(&cfg, &db, &log, &format!("chaos pass {passes}"));
        if rng.below(2) == 0 {
            let after = rng.below(801);
            std::thread::sleep(Duration::from_millis(after));
            let alive = child.try_wait().expect("try_wait").is_none();
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            kills += 1;
            kills_alive += u32::from(alive);
        } else {
            let st = wait_bounded(&mut child, RUN_LIMIT, &log);
            if !st.success() {
                println!("chaos: pass {passes}: {st} after {:.1} s (1: a cluster failed to collect or a delivery was rejected)", t.elapsed().as_secs_f64());
            }
        }
        if passes % 20 == 0 {
            println!(
                "chaos: {passes} passes, {kills} SIGKILLs ({kills_alive} of a live process), {} faults injected, {} events accepted, {} deliveries open, {:.0} s",
                fake.fault_counts().values().sum::<u64>(),
                fake.events().len(),
                open_deliveries(&db),
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let counts = fake.fault_counts();
    let chaos_requests = fake.requests();
    println!("chaos: all jobs final after {:.0} s; faults off", started.elapsed().as_secs_f64());

    // Clean passes until nothing is left to send and every run of ours is final in the ledger.
    fake.set_mix(FaultMix::default());
    let clean_deadline = Instant::now() + CLEAN_LIMIT;
    let mut clean = 0u32;
    let final_rows = loop {
        clean += 1;
        let mut child = spawn_run(&cfg, &db, &log, &format!("clean pass {clean}"));
        let st = wait_bounded(&mut child, RUN_LIMIT, &log);
        let rows = sacct_runs(&ids);
        let ledger = Ledger::open(&db).unwrap();
        let ours_final = rows.iter().all(|r| {
            let runs = ledger.jobs(&JobFilter { job_id_raw: Some(r.raw), ..Default::default() }).unwrap();
            runs.iter().any(|j| j.key.submit.0 == r.submit && j.state.is_final())
        });
        let open = open_deliveries(&db);
        println!("chaos: clean pass {clean}: {st}, {open} deliveries open, our runs final in the ledger: {ours_final}");
        if st.success() && open == 0 && ours_final {
            break rows;
        }
        assert!(
            Instant::now() < clean_deadline,
            "not settled after {CLEAN_LIMIT:?} of clean passes; log tail:\n{}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_secs(1));
    };

    // What the platform accepted, against what Slurm accounted.
    let events = fake.events();
    let ledger = Ledger::open(&db).unwrap();
    let mut problems: Vec<String> = Vec::new();

    let mut seen: HashMap<String, u32> = HashMap::new();
    for e in &events {
        *seen.entry(delivery_id(e)).or_default() += 1;
    }
    for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
        problems.push(format!("delivery {id} accepted {n} times"));
    }
    let delivered = ledger.deliveries("activate", Some(DeliveryState::Delivered)).unwrap();
    for d in delivered.iter().filter(|d| !seen.contains_key(&d.id)) {
        problems.push(format!("delivery {} is `delivered` in the ledger but the platform has no event for it", d.id));
    }
    for d in ledger.deliveries("activate", Some(DeliveryState::Rejected)).unwrap() {
        problems.push(format!("delivery {} rejected: {:?}", d.id, d.last_error));
    }
    for (key, reason) in ledger.held_runs("activate").unwrap() {
        if ids.contains(&key.job_id_raw) || final_rows.iter().any(|r| r.raw == key.job_id_raw) {
            problems.push(format!("run {key} held: {reason}"));
        }
    }

    let mut by_run: BTreeMap<(u64, i64), Vec<&Event>> = BTreeMap::new();
    for e in &events {
        by_run.entry(run_of(e)).or_default().push(e);
    }
    for ((raw, submit), evs) in &by_run {
        let mut spans: Vec<(i64, i64)> = evs.iter().map(|e| (secs(&e.started_at), secs(&e.ended_at))).collect();
        spans.sort();
        for (a, b) in &spans {
            if a.div_euclid(86_400) != (b - 1).div_euclid(86_400) {
                problems.push(format!("job {raw} submit {submit}: event {a}..{b} crosses a UTC day boundary"));
            }
        }
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                problems.push(format!("job {raw} submit {submit}: events {:?} and {:?} overlap", w[0], w[1]));
            }
        }
    }

    let mut max_diff: i128 = 0;
    let mut total_micro: i128 = 0;
    let mut table = String::new();
    for r in &final_rows {
        let expected = (i128::from(r.cpu_time_raw) * 1_000_000 + 1800) / 3600;
        let evs = by_run.get(&(r.raw, r.submit)).map(Vec::as_slice).unwrap_or(&[]);
        let got: i128 = evs.iter().map(|e| micro(&e.quantity_text)).sum();
        let diff = got - expected;
        max_diff = max_diff.max(diff.abs());
        total_micro += expected;
        table.push_str(&format!(
            "  job {:>5} submit {} {:<10} CPUTimeRAW {:>5} → expected {:>8} µ, events {:>2} sum {:>8} µ, diff {diff}\n",
            r.raw,
            r.submit,
            r.state,
            r.cpu_time_raw,
            expected,
            evs.len(),
            got
        ));
        if diff != 0 {
            problems.push(format!(
                "job {} submit {} ({}): events sum to {got} µ core-hours, Slurm accounts {expected} µ (diff {diff})",
                r.raw, r.submit, r.state
            ));
        }
    }
    let requeued = final_rows.iter().filter(|r| r.raw == requeue_id).count();
    if requeued < 2 {
        problems.push(format!("the requeued job {requeue_id} has {requeued} run(s) in sacct; expected 2"));
    }
    print!("{table}");
    let faults: Vec<String> = counts.iter().map(|(k, n)| format!("{k:?}={n}")).collect();
    let (posts, gets) =
        chaos_requests.iter().fold((0, 0), |(p, g), r| if r.method == "POST" { (p + 1, g) } else { (p, g + 1) });
    let injected = counts.values().sum::<u64>();
    println!(
        "chaos summary: seed {seed}; jobs {}, runs {}, events {} (all runs), kills {kills} ({kills_alive} of a live process) in {passes} chaos passes + {clean} clean; \
         {posts} POSTs + {gets} look-up GETs under faults, {injected} faults ({:.0}%) [{}]; {:.6} core-hours; max |difference| {max_diff} µ; {:.0} s",
        final_rows.iter().map(|r| r.raw).collect::<std::collections::BTreeSet<_>>().len(),
        final_rows.len(),
        events.len(),
        100.0 * injected as f64 / (posts + gets).max(1) as f64,
        faults.join(", "),
        total_micro as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    // Not vacuous: faults hit, kills hit live processes, and some run was sliced while running.
    let most_events = final_rows.iter().map(|r| by_run.get(&(r.raw, r.submit)).map_or(0, Vec::len)).max().unwrap_or(0);
    if injected == 0 || kills_alive == 0 || most_events < 3 {
        problems.push(format!("the chaos did not bite: {injected} faults, {kills_alive} kills of a live process, at most {most_events} events per run"));
    }
    let shown = problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
    let more = if problems.len() > 40 { format!("\n… and {} more", problems.len() - 40) } else { String::new() };
    assert!(
        problems.is_empty(),
        "exactly-once violated (seed {seed}), {} problems:\n{shown}{more}\nlog tail:\n{}",
        problems.len(),
        tail(&log)
    );
    assert_eq!(max_diff, 0);
}
