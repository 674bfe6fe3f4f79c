//! The daemon over the real Slurm testbed with the hook configured as slurmctld runs it
//! (PrologSlurmctld/EpilogSlurmctld in the testbed's slurm.conf), the fake cc-backend and Debian's
//! real nats-server with a plain subscriber: each of 20 submitted jobs is started in cc-backend
//! and seen by the subscriber within 2 s of its start, and stopped within 2 s of its end. The
//! figures (median and max) are printed with a PASS/FAIL against 2 s; the test fails on a median
//! over 2 s or a max over 3 s.
//!
//! Reference times are Slurm's own (`sacct` Start and End, whole seconds: the true instant lies in
//! the second after), so a measured latency is at most 1 s more than the true one; the check is
//! on the measured figure.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::daemon::{metric, DaemonProcess};
use crate::deliver_activate::{empty_site, Site};
use crate::fakes::cc_backend::{CcConfig, FakeCcBackend, Outcome};
use crate::nats_server::{Admin, NatsServer, Subscriber};

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.cc-live-jwt.sig";
const STREAM: &str = "SLURM_JOBS";
const SUBJECT: &str = "slurm.jobs";
/// Jobs measured.
const JOBS: usize = 20;
/// The target, in seconds.
const TARGET: f64 = 2.0;

fn write_cfg(site: &Site, cc: &str, nats: &str) {
    let dir = site.cfg.parent().unwrap();
    std::fs::write(
        &site.cfg,
        format!(
            "[slurm]\nclusters = [\"testcluster\"]\ninitial_lookback = \"2m\"\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"2s\"\n\
             [daemon]\ninterval = \"60s\"\nhook_socket_group = \"slurm\"\nhook_delay = \"0s\"\nmetrics_listen = \"127.0.0.1:0\"\n\
             [sinks.cc_backend]\nurl = \"{cc}/api\"\ntimeout_secs = 2\n\
             [sinks.nats]\nurl = \"{nats}\"\nsubject = \"{SUBJECT}\"\nstream = \"{STREAM}\"\ntimeout_secs = 2\n\
             [sinks.jsonl]\npath = \"{}\"\n",
            dir.join("out.jsonl").display()
        ),
    )
    .unwrap();
}

/// (JobIDRaw, state, start, end) of `jobs` as sacct has them (unix seconds; `None`: not yet).
fn sacct(jobs: &[u64]) -> BTreeMap<u64, (String, Option<f64>, Option<f64>)> {
    let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
    let out = Command::new("sacct")
        .args(["-n", "-X", "-P", "--format=JobIDRaw,State,Start,End", &format!("--jobs={}", ids.join(","))])
        .env("SLURM_TIME_FORMAT", "%s")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() == 4 {
            map.insert(f[0].parse().unwrap(), (f[1].to_string(), f[2].parse().ok(), f[3].parse().ok()));
        }
    }
    map
}

fn is_final(state: &str) -> bool {
    !["PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "CONFIGURING", "COMPLETING"].contains(&state)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn live_each_job_reaches_cc_backend_and_a_nats_subscriber_within_2_s_of_its_start_and_end() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _socket = crate::hook::testbed_hook_socket();
    let _slurm = crate::testbed::exclusive_slurm();
    let cc = FakeCcBackend::start(CcConfig::new(TOKEN, "testcluster", &["vm"]));
    let nats = NatsServer::start();
    Admin::connect(&nats.url(), async_nats::ConnectOptions::new()).create_stream(
        STREAM,
        SUBJECT,
        Duration::from_secs(120),
    );
    let sub = Subscriber::start(&nats.url(), SUBJECT);
    let site = empty_site();
    write_cfg(&site, &cc.base_url(), &nats.url());
    let _wrapper = crate::hook::WrapperConf::new();
    let d = DaemonProcess::start(
        &site,
        &[("SLURM_LEDGER_CC_BACKEND_TOKEN", TOKEN), ("RUST_LOG", "slurm_ledger=debug,async_nats=warn,info")],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !d.metrics_text().contains("slurm_ledger_passes_total{result=\"ok\"} 1") {
        assert!(Instant::now() < deadline, "no first pass within 120 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let out = Command::new("sbatch")
            .args(["--parsable", "-J", &format!("ledger-it-latency-{i}"), "-o", "/dev/null", "-t", "2", "-c", "1"])
            .args(["--wrap", &format!("sleep {}", 2 + i % 3)])
            .output()
            .expect("sbatch");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        jobs.push(String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().parse::<u64>().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let facts = loop {
        let f = sacct(&jobs);
        if f.len() == jobs.len() && f.values().all(|(s, _, e)| is_final(s) && e.is_some()) {
            break f;
        }
        assert!(Instant::now() < deadline, "jobs not ended within 300 s: {f:?}");
        std::thread::sleep(Duration::from_secs(1));
    };
    // The last stop gets its 2 s (and some slack for the check itself) before anything is judged.
    std::thread::sleep(Duration::from_secs(4));

    let requests = cc.requests();
    let nats_got = sub.received();
    let cc_at = |path: &str, job: u64| {
        requests
            .iter()
            .filter(|r| r.path.ends_with(path) && matches!(r.outcome, Outcome::Status(s) if s < 300))
            .find(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["jobId"] == job)
            .map(|r| r.received_at)
    };
    let nats_at = |kind: &str, job: u64| {
        let prefix = format!("{kind}:testcluster:{job}:");
        nats_got.iter().find(|(_, m)| m.msg_id.as_deref().is_some_and(|id| id.starts_with(&prefix))).map(|(t, _)| *t)
    };
    let (mut lat, mut rows) = (BTreeMap::<&str, Vec<f64>>::new(), Vec::new());
    for job in &jobs {
        let (state, start, end) = &facts[job];
        let (start, end) = (start.expect("started"), end.expect("ended"));
        let l = [
            ("cc-backend start", cc_at("/start_job/", *job).map(|t| t - start)),
            ("NATS start", nats_at("start", *job).map(|t| t - start)),
            ("cc-backend stop", cc_at("/stop_job/", *job).map(|t| t - end)),
            ("NATS stop", nats_at("stop", *job).map(|t| t - end)),
        ];
        rows.push(format!(
            "job {job} {state}: {}",
            l.iter()
                .map(|(k, v)| format!("{k} {}", v.map_or("MISSING".into(), |v| format!("{v:.2} s"))))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (k, v) in l {
            lat.entry(k).or_default().push(v.unwrap_or(f64::INFINITY));
        }
    }
    eprintln!("{}", rows.join("\n"));
    let log = std::env::temp_dir().join("daemon-live.log");
    std::fs::write(&log, d.log()).unwrap();
    eprintln!("the daemon's log: {}", log.display());
    let mut summary = Vec::new();
    for (k, v) in lat.iter_mut() {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        summary.push(format!("{k}: median {:.2} s, max {:.2} s over {} jobs", median(v), max, v.len()));
    }
    eprintln!("latency from Slurm's Start/End (whole seconds) to arrival:\n{}", summary.join("\n"));
    let m = d.metrics_text();
    let hooks = metric(&m, "slurm_ledger_hook_messages_total{result=\"accepted\"}").unwrap_or(0.0);
    eprintln!(
        "hook messages accepted: {hooks}; sacct calls: {:?}",
        metric(&m, "slurm_ledger_sacct_calls_total{cluster=\"testcluster\"}")
    );
    assert!(hooks >= (2 * JOBS) as f64, "{hooks} hook messages for {JOBS} jobs:\n{}", d.log());
    // The figure is judged against the target and printed; the test fails on a median over it,
    // or a max over it by more than a second (a scheduling stall of a loaded 2-core CI machine is
    // not the daemon's; the printed verdict says it either way).
    for (k, v) in lat.iter_mut() {
        let max = v.iter().cloned().fold(f64::MIN, f64::max);
        let med = median(v);
        eprintln!("{k}: {} (max {max:.2} s against {TARGET} s)", if max <= TARGET { "PASS" } else { "FAIL" });
        assert!(
            med <= TARGET && max <= TARGET + 1.0,
            "{k}: median {med:.2} s, max {max:.2} s\n{}\n{}",
            rows.join("\n"),
            d.log()
        );
    }
}
