//! `slurm-ledger daemon` under kill -9 and outages, over the live Slurm 22.05 testbed with the
//! hook configured as slurmctld runs it (PrologSlurmctld/EpilogSlurmctld → the testbed's hook
//! socket), delivering to the cc-backend fake and to Debian's real nats-server (a JetStream stream
//! whose de-duplication window outlasts the test).
//!
//! Submits chaos's mix of real jobs (users, accounts, short and long, failures, a cancel while
//! running, a requeue, an array) and meanwhile, by seeded draws (`CHAOS_SEED` replays them; Slurm's
//! own timing is never the same twice), every 0.2–5 s: SIGKILLs the daemon (two times in three)
//! and starts it again after 0–1.5 s (the stale hook socket must be replaced, the locks come back
//! from the kernel); stops the cc-backend fake for 3–15 s and resumes it on its port, keeping what
//! it stored; shuts nats-server down (SIGTERM) for 3–15 s and starts it again on its store;
//! switches cc-backend's injected faults (chaos's kinds, about one request in two: 5xx before and
//! after the write, 429, drops, timeouts, slow answers) on and off; arms the proxy between the
//! daemon and nats-server to lose the acks of the next publishes (stored, unacknowledged) or the
//! publishes themselves. Once every job is final in Slurm: faults off, both servers
//! up, the daemon left running until every event of our runs is settled in the ledger, then
//! stopped by SIGTERM (exit 0, socket removed). Then, against a separate `sacct` call (every run:
//! JobIDRaw, submit, start, end, state, nodes):
//! - cc-backend: each started run has one row with its start time, stopped with its end and
//!   state; of the requeued job's runs exactly one row (cc-backend's 24 h duplicate rule), never
//!   both; each start and stop of ours reached cc-backend as a write once (a resend is answered
//!   422, and counted as a problem);
//! - NATS: each started run has one start message and each ended run one stop message (by
//!   `Nats-Msg-Id`), with sacct's epochs and state; nothing else of ours, nothing twice. The
//!   window would hide a resend from the stream: a core subscriber counts the publishes, printed
//!   only (a publish that reached the server while it went down, not stored, is rightly sent again);
//! - the ledger: each of our runs is one of sacct's (no run made up from slurmctld's live view),
//!   and no item of ours is pending, sent or waiting for a retry; rejected only the requeued run
//!   cc-backend's rule refuses.
//!
//! A summary (seed, jobs, runs, kills, outages, events) is printed; every daemon's log is kept in
//! the temporary folder as `daemon-chaos-<seed>.log`. Skips like `testbed` when
//! SLURM_LEDGER_TESTBED != 1.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};

use crate::chaos::{Mix, Rng, CHAOS_LIMIT};
use crate::daemon::{metric, DaemonProcess};
use crate::deliver_activate::{empty_site, Site};
use crate::fakes::cc_backend::{CcConfig, CcRequest, FakeCcBackend, Fault, FaultMix, Outcome, START_JOB, STOP_JOB};
use crate::hook::TESTBED_HOOK_SOCKET;
use crate::nats_server::{self, Admin, NatsServer, Proxy, Subscriber};

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.cc-chaos-jwt.sig";
const STREAM: &str = "SLURM_JOBS";
const SUBJECT: &str = "slurm.jobs";
const CLUSTER: &str = "testcluster";
/// Our jobs are named `{PREFIX}-{tag}`.
const PREFIX: &str = "ledger-it-dchaos";
/// JetStream's de-duplication window: longer than the test.
const DUP_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Clean phase: until every event of our runs is settled.
const CLEAN_LIMIT: Duration = Duration::from_secs(120);
const CC: &str = "cc_backend";
const NATS: &str = "nats";

fn write_cfg(site: &Site, cc: &str, nats: &str) {
    std::fs::write(
        &site.cfg,
        format!(
            "[slurm]\nclusters = [\"{CLUSTER}\"]\ninitial_lookback = \"2m\"\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"2s\"\n\
             [daemon]\ninterval = \"8s\"\nhook_socket_group = \"slurm\"\nhook_delay = \"0s\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [sinks.cc_backend]\nurl = \"{cc}/api\"\ntimeout_secs = 2\n\
             [sinks.nats]\nurl = \"{nats}\"\nsubject = \"{SUBJECT}\"\nstream = \"{STREAM}\"\ntimeout_secs = 2\n"
        ),
    )
    .unwrap();
}

/// cc-backend's faults while on: chaos's kinds, about one request in two, most of them after the
/// write (what a look-up must find).
fn faults() -> FaultMix {
    FaultMix {
        weights: vec![
            (0.08, Fault::Status5xxBefore(503)),
            (0.12, Fault::Status5xxAfter(500)),
            (0.05, Fault::TooMany { retry_after_secs: 1 }),
            (0.05, Fault::DropBefore),
            (0.12, Fault::DropAfter),
            (0.06, Fault::TimeoutAfter { secs: 3 }),
            (0.05, Fault::Slow { millis: 300 }),
        ],
        on_get: true,
    }
}

/// Cancels every job named `{PREFIX}-…` still queued or running when dropped (also after a panic
/// among the submits, before the mix's own guard exists).
struct CancelByName;

impl Drop for CancelByName {
    fn drop(&mut self) {
        let Ok(out) = Command::new("squeue").args(["-h", "-o", "%A %j"]).output() else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, name)| name.starts_with(&format!("{PREFIX}-")))
            .map(|(id, _)| id.to_string())
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
    }
}

/// One run as `sacct --duplicates -X` has it (unix seconds).
#[derive(Debug, Clone)]
struct Run {
    raw: u64,
    submit: i64,
    start: Option<i64>,
    end: Option<i64>,
    /// The first word (`CANCELLED by 0` → `CANCELLED`).
    state: String,
    nodes: String,
}

impl Run {
    /// Started on a node: it gets a start event in both sinks.
    fn started(&self) -> bool {
        self.start.is_some() && !self.nodes.is_empty() && self.nodes != "None assigned"
    }
    fn ended(&self) -> bool {
        self.end.is_some() && !["PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "COMPLETING"].contains(&&*self.state)
    }
    fn id(&self, kind: &str) -> String {
        format!("{kind}:{CLUSTER}:{}:{}", self.raw, self.submit)
    }
    /// What the events owe this run: its start, and its stop once ended.
    fn events(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.started() {
            v.push(self.id("start"));
            if self.ended() {
                v.push(self.id("stop"));
            }
        }
        v
    }
}

fn sacct(ids: &[u64]) -> Vec<Run> {
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = Command::new("sacct")
        .args(["--duplicates", "-X", "-P", "-n", "-o", "JobIDRaw,Submit,Start,End,State,NodeList", "-j", &list])
        .env("SLURM_TIME_FORMAT", "%s")
        .output()
        .expect("sacct");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sacct -j {list}: {}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 6, "sacct row {l:?}");
            Run {
                raw: f[0].parse().unwrap_or_else(|_| panic!("JobIDRaw in {l:?}")),
                submit: f[1].parse().unwrap_or_else(|_| panic!("Submit in {l:?}")),
                start: f[2].parse().ok(),
                end: f[3].parse().ok(),
                state: f[4].split_whitespace().next().unwrap_or("").to_string(),
                nodes: f[5].to_string(),
            }
        })
        .collect()
}

/// cc-backend's `schema.JobState` for a Slurm state (REQUEUED and the like: cancelled).
fn cc_state(slurm: &str) -> &'static str {
    match slurm {
        "COMPLETED" => "completed",
        "FAILED" => "failed",
        "TIMEOUT" => "timeout",
        "NODE_FAIL" => "node_fail",
        "PREEMPTED" => "preempted",
        "BOOT_FAIL" => "boot_fail",
        "DEADLINE" => "deadline",
        "OUT_OF_MEMORY" => "out_of_memory",
        _ => "cancelled",
    }
}

/// The daemon, started again and again; every daemon's stderr kept in order.
struct Daemons<'a> {
    site: &'a Site,
    running: Option<DaemonProcess>,
    log: String,
    starts: u32,
    kills: u32,
    /// Hook messages the daemons accepted (read from `/metrics` before each kill and stop).
    hooks: f64,
}

impl<'a> Daemons<'a> {
    fn new(site: &'a Site) -> Self {
        Daemons { site, running: None, log: String::new(), starts: 0, kills: 0, hooks: 0.0 }
    }

    fn start(&mut self) {
        self.starts += 1;
        self.log.push_str(&format!("===== daemon start {}\n", self.starts));
        let env = [("SLURM_LEDGER_CC_BACKEND_TOKEN", TOKEN), ("RUST_LOG", "info,async_nats=warn")];
        self.running = Some(DaemonProcess::start(self.site, &env));
    }

    /// Stops the running daemon with `signal`; its exit code (`None`: by the signal).
    fn signal(&mut self, signal: i32) -> Option<i32> {
        let mut d = self.running.take().expect("a daemon runs");
        let accepted = "slurm_ledger_hook_messages_total{result=\"accepted\"}";
        self.hooks += metric(&d.metrics_text(), accepted).unwrap_or(0.0);
        let code = d.signal_and_wait(signal, Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(50)); // the last lines of stderr
        self.log.push_str(&d.log());
        code
    }

    fn kill(&mut self) {
        self.kills += 1;
        let code = self.signal(libc::SIGKILL);
        assert_eq!(code, None, "the daemon had exited by itself:\n{}", self.tail(60));
    }

    fn tail(&self, n: usize) -> String {
        let mut text = self.log.clone();
        if let Some(d) = &self.running {
            text.push_str(&d.log());
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// An outage of one server: how many, how long in all, and when the current one ends.
#[derive(Default)]
struct Outages {
    count: u32,
    secs: f64,
    began: Option<Instant>,
    until: Option<Instant>,
}

impl Outages {
    fn begin(&mut self, secs: u64) {
        let now = Instant::now();
        self.count += 1;
        self.began = Some(now);
        self.until = Some(now + Duration::from_secs(secs));
    }
    fn due(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() >= t)
    }
    fn end(&mut self) {
        if let Some(b) = self.began.take() {
            self.secs += b.elapsed().as_secs_f64();
        }
        self.until = None;
    }
}

/// The ledger's items of both sinks for our runs: id → state.
fn items(db: &std::path::Path, raws: &BTreeSet<u64>) -> BTreeMap<(&'static str, String), (DeliveryState, String)> {
    let ledger = Ledger::open(db).unwrap();
    let mut out = BTreeMap::new();
    for sink in [CC, NATS] {
        for d in ledger.deliveries(sink, None).unwrap() {
            if d.key.as_ref().is_some_and(|k| raws.contains(&k.job_id_raw)) {
                out.insert((sink, d.id.clone()), (d.state, d.last_error.clone().unwrap_or_default()));
            }
        }
    }
    out
}

/// What keeps the clean phase going: an event of ours not planned, or not settled (delivered, or
/// rejected in cc-backend), or a run of ours not final in the ledger.
fn unsettled(db: &std::path::Path, runs: &[Run]) -> Vec<String> {
    let raws: BTreeSet<u64> = runs.iter().map(|r| r.raw).collect();
    let items = items(db, &raws);
    let mut open = Vec::new();
    for r in runs {
        for id in r.events() {
            for sink in [CC, NATS] {
                match items.get(&(sink, id.clone())) {
                    None => open.push(format!("{sink} {id}: not planned")),
                    Some((DeliveryState::Delivered, _)) => {}
                    Some((DeliveryState::Rejected, _)) if sink == CC => {}
                    Some((state, e)) => open.push(format!("{sink} {id}: {state:?} {e}")),
                }
            }
        }
    }
    let ledger = Ledger::open(db).unwrap();
    for r in runs {
        let held = ledger.jobs(&JobFilter { job_id_raw: Some(r.raw), ..Default::default() }).unwrap();
        if !held.iter().any(|j| j.key.submit.0 == r.submit && (j.state.is_final() || !r.ended())) {
            open.push(format!("run {}:{} ({}) not final in the ledger", r.raw, r.submit, r.state));
        }
    }
    open
}

/// Whether a request to cc-backend was applied as a write (accepted, or a fault after the write).
fn applied(r: &CcRequest) -> bool {
    matches!(r.outcome, Outcome::Status(s) if s < 300)
        || matches!(r.fault, Some(Fault::Status5xxAfter(_) | Fault::DropAfter | Fault::TimeoutAfter { .. }))
}

#[test]
fn daemon_chaos_kill_9_and_outages_each_event_once_over_live_slurm() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _socket = crate::hook::testbed_hook_socket();
    let _slurm = crate::testbed::exclusive_slurm();
    let _cancel = CancelByName;
    let started = Instant::now();
    let seed = crate::chaos::seed();
    let mut rng = Rng(seed ^ 0xdae_7070);

    let mut cc = FakeCcBackend::start(CcConfig { seed, faults: faults(), ..CcConfig::new(TOKEN, CLUSTER, &["vm"]) });
    let mut nats = NatsServer::start();
    Admin::connect(&nats.url(), async_nats::ConnectOptions::new()).create_stream(STREAM, SUBJECT, DUP_WINDOW);
    let sub = Subscriber::start(&nats.url(), SUBJECT);
    let site = empty_site();
    // The daemon reaches nats-server through a proxy that loses acks or publishes when armed.
    let proxy = Proxy::start(nats.port, nats_server::Fault::None);
    write_cfg(&site, &cc.base_url(), &proxy.url());
    let _wrapper = crate::hook::WrapperConf::new();
    let mut daemons = Daemons::new(&site);
    daemons.start();

    let mut mix = Mix::submit(PREFIX);
    // Chaos: until every job is final in Slurm (after CHAOS_LIMIT the rest are cancelled).
    let deadline = Instant::now() + CHAOS_LIMIT;
    let (mut cc_out, mut nats_out) = (Outages::default(), Outages::default());
    let (mut faults_on, mut toggles, mut steps, mut armed) = (true, 0u32, 0u32, 0u32);
    let mut cancelled_leftovers = false;
    while !mix.all_final() {
        if Instant::now() > deadline && !cancelled_leftovers {
            println!(
                "daemon chaos: WARNING: jobs not final after {CHAOS_LIMIT:?} (a busy testbed?); cancelling the rest"
            );
            let ids: Vec<String> = mix.ids.iter().map(u64::to_string).collect();
            let _ = Command::new("scancel").args(&ids).status();
            cancelled_leftovers = true;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "jobs never became final: {:#?}\n{}",
            sacct(&mix.ids),
            daemons.tail(40)
        );
        steps += 1;
        std::thread::sleep(Duration::from_millis(200 + rng.below(4800)));
        if cc_out.due() {
            cc.resume();
            cc_out.end();
        } else if cc_out.until.is_none() && ((steps == 2 && cc_out.count == 0) || rng.below(6) == 0) {
            cc.stop();
            cc_out.begin(3 + rng.below(13));
        }
        if nats_out.due() {
            nats.launch();
            nats_out.end();
        } else if nats_out.until.is_none() && ((steps == 4 && nats_out.count == 0) || rng.below(6) == 0) {
            nats.shutdown();
            nats_out.begin(3 + rng.below(13));
        }
        // Faults on about three quarters of the time.
        if rng.below(if faults_on { 6 } else { 2 }) == 0 {
            faults_on = !faults_on;
            toggles += 1;
            cc.set_mix(if faults_on { faults() } else { FaultMix::default() });
        }
        if rng.below(3) == 0 {
            armed += 1;
            let lose = rng.below(2) == 0;
            proxy.arm(if lose { nats_server::Fault::LoseAcks } else { nats_server::Fault::DropPublishes });
        }
        if rng.below(3) != 0 {
            daemons.kill();
            std::thread::sleep(Duration::from_millis(rng.below(1501)));
            daemons.start();
        }
        if steps % 10 == 0 {
            println!(
                "daemon chaos: {steps} steps, {} kills, outages cc-backend {} nats {}, {} cc-backend rows, {:.0} s",
                daemons.kills,
                cc_out.count,
                nats_out.count,
                cc.jobs().len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let chaos_secs = started.elapsed().as_secs_f64();
    println!("daemon chaos: all jobs final after {chaos_secs:.0} s; faults off, servers up");
    if cc_out.until.is_some() {
        cc.resume();
        cc_out.end();
    }
    if nats_out.until.is_some() {
        nats.launch();
        nats_out.end();
    }
    cc.set_mix(FaultMix::default());
    proxy.arm(nats_server::Fault::None);
    let fault_counts = cc.fault_counts();

    // Clean: the daemon runs until every event of our runs is settled.
    let clean_started = Instant::now();
    let runs = loop {
        let runs = sacct(&mix.ids);
        let open = unsettled(&site.db, &runs);
        if open.is_empty() {
            break runs;
        }
        assert!(
            clean_started.elapsed() < CLEAN_LIMIT,
            "not settled after {CLEAN_LIMIT:?} (seed {seed}): {} open:\n{}\nlog tail:\n{}",
            open.len(),
            open.iter().take(30).cloned().collect::<Vec<_>>().join("\n"),
            daemons.tail(60)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let clean_secs = clean_started.elapsed().as_secs_f64();
    assert_eq!(daemons.signal(libc::SIGTERM), Some(0), "SIGTERM:\n{}", daemons.tail(40));
    assert!(!std::path::Path::new(TESTBED_HOOK_SOCKET).exists(), "the hook socket was left behind");
    let log_path = std::env::temp_dir().join(format!("daemon-chaos-{seed}.log"));
    std::fs::write(&log_path, &daemons.log).unwrap();

    let mut problems: Vec<String> = Vec::new();
    let requeue_runs = runs.iter().filter(|r| r.raw == mix.requeue_id).count();
    if requeue_runs < 2 {
        problems.push(format!("the requeued job {} has {requeue_runs} run(s) in sacct; expected 2", mix.requeue_id));
    }
    let raws: BTreeSet<u64> = runs.iter().map(|r| r.raw).collect();
    let by_key: BTreeMap<(u64, i64), &Run> = runs.iter().map(|r| ((r.raw, r.submit), r)).collect();
    // Jobs with two started runs: cc-backend keeps one of them (its 24 h rule).
    let mut started_runs: BTreeMap<u64, Vec<&Run>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.started()) {
        started_runs.entry(r.raw).or_default().push(r);
    }
    let requeued = |raw: u64| started_runs.get(&raw).is_some_and(|v| v.len() > 1);

    // The ledger: only sacct's runs, every event settled, rejected only by the duplicate rule.
    let ledger = Ledger::open(&site.db).unwrap();
    for raw in &raws {
        for j in ledger.jobs(&JobFilter { job_id_raw: Some(*raw), ..Default::default() }).unwrap() {
            if !by_key.contains_key(&(*raw, j.key.submit.0)) {
                problems.push(format!("the ledger holds run {} that sacct does not have", j.key));
            }
        }
    }
    let owed: BTreeSet<String> = runs.iter().flat_map(Run::events).collect();
    for ((sink, id), (state, error)) in items(&site.db, &raws) {
        let raw: u64 = id.split(':').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
        if !owed.contains(&id) {
            problems.push(format!("{sink}: item {id} ({state:?}) for no event sacct shows"));
        } else if state == DeliveryState::Rejected && !(sink == CC && requeued(raw)) {
            problems.push(format!("{sink}: {id} rejected: {error}"));
        } else if !matches!(state, DeliveryState::Delivered | DeliveryState::Rejected) {
            problems.push(format!("{sink}: {id} left {state:?}"));
        }
    }

    // cc-backend: one row per started run (one per requeued job), right times and state.
    let rows: Vec<_> = cc.jobs().into_iter().filter(|j| raws.contains(&(j.job_id as u64))).collect();
    let mut rows_of: BTreeMap<(u64, i64), u32> = BTreeMap::new();
    for j in &rows {
        *rows_of.entry((j.job_id as u64, j.start_time)).or_default() += 1;
        let Some(r) = runs.iter().find(|r| r.raw == j.job_id as u64 && r.start == Some(j.start_time)) else {
            problems.push(format!("cc-backend: job {} started at {}: no such run in sacct", j.job_id, j.start_time));
            continue;
        };
        let end = r.end.map(|e| e.max(j.start_time));
        let want = if r.ended() { (cc_state(&r.state), end) } else { ("running", None) };
        if (j.state.as_str(), j.stop_time) != want {
            problems.push(format!(
                "cc-backend: job {} ({} {:?}..{:?}): {} stopped at {:?}, expected {want:?}",
                r.raw, r.state, r.start, r.end, j.state, j.stop_time
            ));
        }
    }
    for (k, n) in rows_of.iter().filter(|(_, n)| **n > 1) {
        problems.push(format!("cc-backend: job {} started at {} has {n} rows", k.0, k.1));
    }
    for (raw, started) in &started_runs {
        let n: u32 = rows_of.iter().filter(|(k, _)| k.0 == *raw).map(|(_, n)| *n).sum();
        if started.len() > 1 && n != 1 {
            problems
                .push(format!("cc-backend: requeued job {raw}: {n} rows for its {} runs; expected one", started.len()));
        } else if started.len() == 1 && n != 1 {
            problems.push(format!("cc-backend: job {raw}: {n} rows for its one run"));
        }
    }
    // Each start and stop of ours reached cc-backend as a write once: a second one is a resend
    // (a 422 against its own row, or against an already stopped one).
    let requests = cc.requests();
    let mut writes: BTreeMap<(String, u64, i64), (u32, u32)> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.method == "POST" && (r.path == START_JOB || r.path == STOP_JOB)) {
        let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let (Some(job), Some(start)) = (body["jobId"].as_u64(), body["startTime"].as_i64()) else { continue };
        if !raws.contains(&job) {
            continue;
        }
        let e = writes.entry((r.path.clone(), job, start)).or_default();
        if applied(r) {
            e.0 += 1;
        }
        let own_row = r.path == STOP_JOB || rows.iter().any(|j| j.job_id as u64 == job && j.start_time == start);
        if r.outcome == Outcome::Status(422) && own_row {
            e.1 += 1;
        }
    }
    for ((path, job, start), (applied, resent)) in &writes {
        if *applied > 1 || *resent > 0 {
            problems.push(format!(
                "cc-backend: {path} of job {job} started at {start}: applied {applied} times, sent again {resent} times"
            ));
        }
    }

    // NATS: one start and one stop message per run, by Nats-Msg-Id, with sacct's times.
    let stored = Admin::connect(&nats.url(), async_nats::ConnectOptions::new()).read_all(STREAM);
    let mut messages: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in &stored {
        let id = m.msg_id.clone().unwrap_or_default();
        let raw: u64 = id.split(':').nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
        if raws.contains(&raw) {
            messages.entry(id).or_default().push(serde_json::from_str(&m.payload).unwrap_or(Value::Null));
        }
    }
    for (id, ms) in &messages {
        if !owed.contains(id) {
            problems.push(format!("nats: message {id} for no event sacct shows"));
        }
        if ms.len() > 1 {
            problems.push(format!("nats: {id} stored {} times", ms.len()));
        }
    }
    for r in &runs {
        for id in r.events() {
            let Some(m) = messages.get(&id).and_then(|ms| ms.first()) else {
                problems.push(format!("nats: no message {id}"));
                continue;
            };
            let stop = id.starts_with("stop:");
            let got = (m["submitEpoch"].as_i64(), m["startEpoch"].as_i64(), stop.then(|| m["endEpoch"].as_i64()));
            let want = (Some(r.submit), r.start, stop.then_some(r.end));
            if got != want || (stop && m["state"].as_str() != Some(r.state.as_str())) {
                problems.push(format!(
                    "nats: {id}: (submit, start, end) {got:?} state {}, sacct {want:?} {}",
                    m["state"], r.state
                ));
            }
        }
    }
    let published = sub.received();
    let mut publishes: BTreeMap<String, u32> = BTreeMap::new();
    for (_, m) in &published {
        if let Some(id) = m.msg_id.as_ref().filter(|id| owed.contains(*id)) {
            *publishes.entry(id.clone()).or_default() += 1;
        }
    }
    let again: Vec<String> = publishes.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("{id} ×{n}")).collect();

    // Other runs the daemon read (other tests' jobs, the testbed's own): not judged, shown.
    let mut others: BTreeMap<String, u32> = BTreeMap::new();
    for sink in [CC, NATS] {
        for d in ledger.deliveries(sink, None).unwrap() {
            if !d.key.as_ref().is_some_and(|k| raws.contains(&k.job_id_raw)) {
                let why = d.last_error.as_deref().filter(|_| d.state != DeliveryState::Delivered).unwrap_or("");
                *others
                    .entry(format!("{sink} {:?} {}", d.state, why.chars().take(160).collect::<String>()))
                    .or_default() += 1;
            }
        }
    }
    for (what, n) in &others {
        println!("  other runs' items: {n} × {what}");
    }

    // Summary.
    let events_owed = owed.len();
    let stops = rows.iter().filter(|j| j.stop_time.is_some()).count();
    let injected: u64 = fault_counts.values().sum();
    let faults: Vec<String> = fault_counts.iter().map(|(k, n)| format!("{k:?}={n}")).collect();
    for r in &runs {
        println!(
            "  job {:>5} submit {} {:<10} start {:?} end {:?} on {:?}",
            r.raw, r.submit, r.state, r.start, r.end, r.nodes
        );
    }
    println!(
        "daemon chaos summary: seed {seed}; jobs {}, runs {} ({} started); {} steps, daemon started {} times, \
         SIGKILLed {} times; cc-backend down {} times ({:.0} s), nats-server down {} times ({:.0} s); \
         cc-backend faults toggled {toggles} times, {injected} injected [{}]; NATS proxy armed {armed} times, \
         fired {} times (acks or publishes lost); hook messages accepted {}; \
         events owed {events_owed}: cc-backend {} rows ({stops} stopped), NATS {} messages of ours \
         (a core subscriber, which misses what is published while it reconnects, saw {} publishes; ids it saw twice: {}); \
         chaos {chaos_secs:.0} s, clean {clean_secs:.0} s, total {:.0} s; daemons' log {}",
        raws.len(),
        runs.len(),
        runs.iter().filter(|r| r.started()).count(),
        steps,
        daemons.starts,
        daemons.kills,
        cc_out.count,
        cc_out.secs,
        nats_out.count,
        nats_out.secs,
        faults.join(", "),
        proxy.fired(),
        daemons.hooks,
        rows.len(),
        messages.values().map(Vec::len).sum::<usize>(),
        publishes.values().sum::<u32>(),
        if again.is_empty() { "none".to_string() } else { again.join(", ") },
        started.elapsed().as_secs_f64(),
        log_path.display()
    );
    if daemons.log.contains("panicked") {
        problems.push("a daemon panicked (see its log)".into());
    }
    // Not vacuous: the daemon was killed, both servers went down, faults hit, the hook spoke.
    if daemons.kills == 0 || cc_out.count == 0 || nats_out.count == 0 || injected == 0 || daemons.hooks == 0.0 {
        problems.push(format!(
            "the chaos did not bite: {} kills, {} + {} outages, {injected} faults, {} hook messages",
            daemons.kills, cc_out.count, nats_out.count, daemons.hooks
        ));
    }
    let shown = problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n");
    assert!(
        problems.is_empty(),
        "exactly-once violated (seed {seed}, replay with CHAOS_SEED={seed}), {} problems:\n{shown}\nlog: {}\ntail:\n{}",
        problems.len(),
        log_path.display(),
        daemons.tail(40)
    );
}
