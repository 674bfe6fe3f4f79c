//! `slurm-ledger daemon` as a process, with Slurm played by a `sacct` script in `[slurm] bin_dir`
//! that answers with the recorded real testbed poll (tests/fixtures/testbed/, 28 runs of
//! 2026-11-22) and logs each call with its time: it polls, delivers and serves `/metrics`; a hook
//! message makes it ask sacct for that job by id at once; SIGTERM stops it cleanly (socket gone,
//! exit 0) and a cron `run` after it sends nothing twice; while sacct fails it backs off, keeps
//! the cursor and still delivers what the ledger holds, and recovers when sacct does; one daemon
//! per ledger, while a cron `run` can work between its passes; a bad `[daemon]` table is refused at
//! start with its key.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slurm_ledger::ledger::Ledger;
use slurm_ledger::model::ClusterName;

use crate::common::{fake_sacct, fixture};
use crate::deliver_activate::{empty_site, run_site, Site};
use crate::metrics::{get, parse, python, sample};

/// The accounting queries logged so far: (time, arguments).
fn queries(bin: &Path) -> Vec<(f64, String)> {
    let log = std::fs::read_to_string(bin.join("calls.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("--parsable2"))
        .filter_map(|l| l.split_once(' ').map(|(t, a)| (t.parse().unwrap(), a.to_string())))
        .collect()
}

/// A site whose Slurm is [`fake_sacct`] (in `<site>/bin`), with a JSONL sink and `[daemon]`
/// settings `daemon` (the hook socket in the site's directory, metrics on a free loopback port).
fn daemon_site(site: Site, daemon: &str) -> (Site, PathBuf) {
    let dir = site.cfg.parent().unwrap().to_path_buf();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_sacct(&bin);
    std::fs::write(
        &site.cfg,
        format!(
            "[slurm]\nclusters = [\"testcluster\"]\nbin_dir = \"{}\"\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n\
             [daemon]\nhook_socket = \"{}\"\nmetrics_listen = \"127.0.0.1:0\"\nhook_delay = \"0s\"\n{daemon}\n\
             [sinks.jsonl]\npath = \"{}\"\n",
            bin.display(),
            dir.join("hook.sock").display(),
            dir.join("out.jsonl").display()
        ),
    )
    .unwrap();
    (site, bin)
}

/// A running `slurm-ledger daemon`, its stderr collected; killed on drop.
pub(crate) struct DaemonProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    pub metrics: Option<SocketAddr>,
}

impl DaemonProcess {
    /// Starts the daemon on `site` and waits until it says it started.
    pub(crate) fn start(site: &Site, env: &[(&str, &str)]) -> DaemonProcess {
        let mut c = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
        c.arg("--config").arg(&site.cfg).arg("--ledger").arg(&site.db).arg("daemon");
        c.env("RUST_LOG", "info").envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let l = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = l.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut d = DaemonProcess { child, log, metrics: None };
        assert!(d.wait_for("daemon started", Duration::from_secs(30)), "the daemon did not start:\n{}", d.log());
        d.metrics = d
            .log()
            .lines()
            .find(|l| l.contains("serving /metrics"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")).map(|a| a.parse().unwrap()));
        d
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `what`; false after `timeout`.
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(what) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub(crate) fn metrics_text(&self) -> String {
        get(self.metrics.expect("metrics served"), "/metrics", None).body
    }

    /// Sends `signal` and waits (at most `timeout`) for the exit: its code (`None`: by signal).
    pub(crate) fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the daemon did not exit within {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sample's value in the text exposition (`name{labels} value`).
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn jsonl_ids(site: &Site) -> Vec<String> {
    let path = site.cfg.parent().unwrap().join("out.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hook(socket: &Path, job: &str, context: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .args(["-v", "hook", "--socket"])
        .arg(socket)
        .env_clear()
        .env("SLURM_JOB_ID", job)
        .env("SLURM_CLUSTER_NAME", "testcluster")
        .env("SLURM_SCRIPT_CONTEXT", context)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains(&format!("sent job {job}")), "{said}");
}

#[test]
fn the_daemon_polls_delivers_looks_at_hooked_jobs_and_stops_on_sigterm() {
    let (site, bin) = daemon_site(empty_site(), "interval = \"1h\"");
    let mut d = DaemonProcess::start(&site, &[]);
    // The first pass at once: one poll, every run delivered.
    wait_until("the first pass", Duration::from_secs(30), || {
        d.metrics_text().contains("slurm_ledger_passes_total{result=\"ok\"} 1")
    });
    let delivered = jsonl_ids(&site);
    assert!(delivered.len() > 20, "{delivered:?}");
    let m = d.metrics_text();
    assert_eq!(metric(&m, "slurm_ledger_delivered_items_total{sink=\"jsonl\"}"), Some(delivered.len() as f64), "{m}");
    assert_eq!(metric(&m, "slurm_ledger_collect_runs_read_total{cluster=\"testcluster\"}"), Some(28.0), "{m}");
    assert_eq!(metric(&m, "slurm_ledger_outbox_items{sink=\"jsonl\",state=\"pending\"}"), Some(0.0), "{m}");
    assert_eq!(queries(&bin).len(), 1, "one poll");
    let cursor = Ledger::open(&site.db).unwrap().cursor(&ClusterName::new("testcluster").unwrap()).unwrap();
    assert!(cursor.is_some());
    let health = get(d.metrics.unwrap(), "/healthz", None);
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    // What the running daemon serves, read by an independent parser (Python's prometheus_client).
    if let Some(py) = python() {
        let families = parse(&py, "text", &m).unwrap_or_else(|e| panic!("{e}\n{m}"));
        let runs = sample(
            &families,
            "slurm_ledger_collect_runs_read",
            "slurm_ledger_collect_runs_read_total",
            &[("cluster", "testcluster")],
        );
        assert_eq!(runs, 28.0);
        let sent = sample(
            &families,
            "slurm_ledger_delivered_items",
            "slurm_ledger_delivered_items_total",
            &[("sink", "jsonl")],
        );
        assert_eq!(sent, delivered.len() as f64);
        let lag = sample(
            &families,
            "slurm_ledger_cursor_lag_seconds",
            "slurm_ledger_cursor_lag_seconds",
            &[("cluster", "testcluster")],
        );
        assert!((0.0..60.0).contains(&lag), "{lag}");
    }

    // A hook message: sacct is asked for that job by id at once, not at the next poll (1 h).
    let socket = site.cfg.parent().unwrap().join("hook.sock");
    let sent = Instant::now();
    hook(&socket, "21", "epilog_slurmctld");
    wait_until("the look at job 21", Duration::from_secs(5), || {
        queries(&bin).iter().any(|(_, a)| a.contains("--jobs=21 "))
    });
    eprintln!("hook message to sacct --jobs: {:?}", sent.elapsed());
    wait_until("the hook message counted", Duration::from_secs(5), || {
        metric(&d.metrics_text(), "slurm_ledger_hook_messages_total{result=\"accepted\"}") == Some(1.0)
    });
    assert_eq!(queries(&bin).len(), 2, "the look, and no other query");
    assert_eq!(jsonl_ids(&site), delivered, "the same recording: nothing new to send");

    // SIGTERM: a clean stop, the socket removed.
    let t = Instant::now();
    assert_eq!(d.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)), Some(0), "{}", d.log());
    eprintln!("stopped in {:?}", t.elapsed());
    assert!(d.log().contains("daemon stopped"), "{}", d.log());
    assert!(!socket.exists(), "the socket file was left behind");

    // A cron run afterwards finds everything delivered.
    let (code, out, err) = run_site(&site, &["run"], &[], &[], "warn");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("0 new deliveries"), "{out}");
    let ids = jsonl_ids(&site);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "an id written twice");
    assert_eq!(ids, delivered);
}

#[test]
fn while_sacct_fails_the_daemon_backs_off_keeps_the_cursor_still_delivers_and_recovers() {
    let (site, bin) = daemon_site(empty_site(), "interval = \"1s\"");
    // The ledger holds the recorded poll (read from its file: no cursor yet), nothing delivered.
    let poll = fixture("testbed/own-sacct-poll.txt");
    let (code, out, err) = run_site(
        &site,
        &["collect", "--from-file", poll.to_str().unwrap(), "--cluster", "testcluster"],
        &[],
        &[],
        "warn",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let cluster = ClusterName::new("testcluster").unwrap();
    let cursor_before = Ledger::open(&site.db).unwrap().cursor(&cluster).unwrap();
    assert_eq!(cursor_before, None);
    std::fs::write(bin.join("fail"), "--parsable2").unwrap();
    let mut d = DaemonProcess::start(&site, &[]);
    // What the ledger holds goes out although Slurm cannot be read.
    wait_until("the ledger's runs delivered", Duration::from_secs(20), || !jsonl_ids(&site).is_empty());
    std::thread::sleep(Duration::from_secs(7));
    let polls = queries(&bin);
    let times: Vec<f64> = polls.iter().map(|(t, _)| *t).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("failed polls at gaps {gaps:?}");
    // Every 1 s would be 8 polls; backing off (1, 2, 4 s) gives 4.
    assert!((2..=5).contains(&polls.len()), "{gaps:?}");
    assert!(gaps.windows(2).all(|g| g[1] > g[0] * 1.5), "not backing off: {gaps:?}");
    assert_eq!(Ledger::open(&site.db).unwrap().cursor(&cluster).unwrap(), cursor_before, "the cursor moved");
    let m = d.metrics_text();
    assert!(
        metric(&m, "slurm_ledger_collects_total{cluster=\"testcluster\",result=\"failed\"}").unwrap() >= 2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "slurm_ledger_collects_total{cluster=\"testcluster\",result=\"ok\"}"), Some(0.0), "{m}");
    let health = get(d.metrics.unwrap(), "/healthz", None);
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.contains("Query took too long"), "{}", health.body);

    // slurmdbd is back: the next poll reads and moves the cursor.
    std::fs::remove_file(bin.join("fail")).unwrap();
    wait_until("a successful poll", Duration::from_secs(20), || {
        metric(&d.metrics_text(), "slurm_ledger_collects_total{cluster=\"testcluster\",result=\"ok\"}") >= Some(1.0)
    });
    let after = Ledger::open(&site.db).unwrap().cursor(&cluster).unwrap();
    assert!(after > cursor_before, "{after:?} vs {cursor_before:?}");
    wait_until("healthy again", Duration::from_secs(10), || get(d.metrics.unwrap(), "/healthz", None).status == 200);
    assert_eq!(d.signal_and_wait(libc::SIGINT, Duration::from_secs(10)), Some(0), "{}", d.log());
}

#[test]
fn one_daemon_per_ledger_and_a_cron_run_works_between_its_passes() {
    let (site, _bin) = daemon_site(empty_site(), "interval = \"1h\"");
    let mut first = DaemonProcess::start(&site, &[]);
    wait_until("the first pass", Duration::from_secs(30), || {
        first.metrics_text().contains("slurm_ledger_passes_total{result=\"ok\"} 1")
    });
    let delivered = jsonl_ids(&site);
    // A second daemon (its own socket and port, the same ledger) is refused.
    let other = site.cfg.with_file_name("other.toml");
    let text = std::fs::read_to_string(&site.cfg).unwrap().replace("hook.sock", "other.sock");
    std::fs::write(&other, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--config")
        .arg(&other)
        .arg("--ledger")
        .arg(&site.db)
        .arg("daemon")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("another slurm-ledger daemon runs on") && err.contains(".daemon.lock"), "{err}");
    // Between passes the sender lock is free: cron's `run` works, and sends nothing twice.
    let (code, out, err) = run_site(&site, &["run"], &[], &[], "warn");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("0 new deliveries"), "{out}");
    assert_eq!(jsonl_ids(&site), delivered);
    assert_eq!(first.signal_and_wait(libc::SIGTERM, Duration::from_secs(10)), Some(0));
}

#[test]
fn a_bad_daemon_table_is_refused_at_start_with_its_keys() {
    let (site, _bin) = daemon_site(empty_site(), "interval = \"0s\"\nhook_socket_mode = \"777x\"");
    let (code, out, err) = run_site(&site, &["daemon"], &[], &[], "warn");
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("daemon.interval") && err.contains("daemon.hook_socket_mode"), "{err}");
    assert!(!site.db.exists(), "the ledger was created before the config was checked");
    let (code, _, err) = run_site(&site, &["config", "check"], &[], &[], "warn");
    assert_eq!(code, 2);
    assert!(err.contains("daemon.interval"), "{err}");
}
