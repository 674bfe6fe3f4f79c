//! Against the live Slurm 22.05 testbed (`testbed/slurm-testbed.sh ensure`).
//!
//! These run when SLURM_LEDGER_TESTBED=1 (set by `scripts/test` once the testbed is up). Without
//! it they print why they were skipped; with SLURM_LEDGER_REQUIRE_TESTBED=1 (CI) a missing
//! testbed is a failure.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use slurm_ledger::ledger::{JobFilter, Ledger};
use slurm_ledger::model::{JobRun, JobState};

/// Whether live-testbed tests run: SLURM_LEDGER_TESTBED=1. Otherwise prints SKIPPED, or fails
/// when SLURM_LEDGER_REQUIRE_TESTBED=1.
pub(crate) fn live_testbed_enabled() -> bool {
    let up = std::env::var("SLURM_LEDGER_TESTBED").as_deref() == Ok("1");
    let required = std::env::var("SLURM_LEDGER_REQUIRE_TESTBED").as_deref() == Ok("1");
    if !up {
        assert!(
            !required,
            "SLURM_LEDGER_REQUIRE_TESTBED=1 but the Slurm testbed is not up (run testbed/slurm-testbed.sh ensure)"
        );
        eprintln!("SKIPPED: Slurm testbed not up (SLURM_LEDGER_TESTBED != 1); run scripts/test as root on Debian 12 to start it");
    }
    up
}

/// Held by the live tests that need free CPUs on the testbed's one node, so that they do not
/// queue behind each other's jobs (`chaos_activate` fills the node for about two minutes).
pub(crate) fn exclusive_slurm() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The seed's job ids, or None (skip) when no testbed is up.
fn testbed() -> Option<HashMap<String, String>> {
    if !live_testbed_enabled() {
        return None;
    }
    let text = std::fs::read_to_string("/var/lib/slurm-testbed/seed.env").expect("seed.env of the seeded testbed");
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect(),
    )
}

fn id(seed: &HashMap<String, String>, k: &str) -> u64 {
    seed.get(k)
        .unwrap_or_else(|| panic!("{k} missing in seed.env"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} not a number"))
}

fn collect(db: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--ledger")
        .arg(db)
        .arg("collect")
        .args(extra)
        .env_remove("SLURM_LEDGER_CONFIG")
        .output()
        .expect("run collect");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "collect failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn runs(db: &std::path::Path, raw: u64) -> Vec<JobRun> {
    Ledger::open(db).unwrap().jobs(&JobFilter { job_id_raw: Some(raw), ..Default::default() }).unwrap()
}

/// Submits `script` as job `name` and collects (`--lookback 1h`) until the ledger shows it
/// RUNNING, before `deadline`; returns its job id.
fn submit_and_collect_running(db: &std::path::Path, name: &str, script: &str, deadline: Instant) -> u64 {
    let out = Command::new("sbatch")
        .args(["--parsable", "-J", name, "-o", "/dev/null", "-t", "2", "--wrap", script])
        .output()
        .expect("sbatch");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: u64 = String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().parse().unwrap();
    loop {
        collect(db, &["--lookback", "1h"]);
        if runs(db, job).first().is_some_and(|r| r.state == JobState::Running) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {job} never seen RUNNING");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn live_collect_gives_the_facts_an_admin_checks() {
    let Some(seed) = testbed() else { return };
    // No other test of this process may submit a job between the two collects compared below
    // (other processes and late requeues may: see `first_at`).
    let _slurm = exclusive_slurm();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    // Runs that first exist after this instant (a job another test process submitted, a late
    // requeue of an earlier test's job) may appear at the second collect; nothing older may.
    let first_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 1;
    let first = collect(&db, &["--lookback", "2d"]);
    assert!(!first.contains("quarantined"), "our own sacct call quarantines nothing: {first}");

    let rq = runs(&db, id(&seed, "JOB_REQUEUE"));
    assert_eq!(rq.len(), 2, "requeued job has two runs: {rq:#?}");
    assert!(rq.iter().any(|r| r.state == JobState::Requeued));
    assert_ne!(rq[0].key.submit, rq[1].key.submit);

    let s = &runs(&db, id(&seed, "JOB_SUSPEND"))[0];
    assert!(s.suspended_secs >= 5, "{s:#?}");
    let wall = (s.end.unwrap().0 - s.start.unwrap().0) as u64;
    assert_eq!(s.elapsed_secs + s.suspended_secs, wall, "elapsed excludes suspension");

    let p = &runs(&db, id(&seed, "JOB_PIPE_NAME"))[0];
    assert_eq!(p.name, "pipe|name ünïcødé ✓");

    let nl = &runs(&db, id(&seed, "JOB_NEWLINE_NAME"))[0];
    assert_eq!(nl.name, "nl\nname", "a newline inside a job name is joined back, not split into two rows");

    let g = &runs(&db, id(&seed, "JOB_GPU"))[0];
    assert_eq!(g.gpus(), 1, "typed and untyped gres/gpu counted once: {}", g.alloc_tres.to_canonical());

    let ledger = Ledger::open(&db).unwrap();
    let arr: Vec<JobRun> = ledger
        .jobs(&JobFilter::default())
        .unwrap()
        .into_iter()
        .filter(|j| j.array_job_id == Some(id(&seed, "JOB_ARRAY")))
        .collect();
    let mut tasks: Vec<u32> = arr.iter().filter_map(|j| j.array_task_id).collect();
    tasks.sort();
    assert_eq!(tasks, [0, 1, 2, 3], "array tasks are distinct runs");
    let mut raws: Vec<u64> = arr.iter().map(|j| j.key.job_id_raw).collect();
    raws.dedup();
    assert_eq!(raws.len(), 4);
    assert!(arr.iter().any(|j| j.state == JobState::Failed));

    let m = &runs(&db, id(&seed, "JOB_MULTISTEP"))[0];
    assert!(m.step_count >= 4 && m.total_cpu_ms > 0, "{m:#?}");

    // The OOM job (perl filling 400 MiB under --mem=50M): MaxRSS in bytes, the same peak as
    // its steps' TRESUsageInTot mem (sacct --noconvert prints both in bytes).
    let oom = &runs(&db, id(&seed, "JOB_OOM"))[0];
    // OUT_OF_MEMORY where cgroups catch it, FAILED where the kernel's OOM killer ends the step.
    assert!(matches!(oom.state, JobState::OutOfMemory | JobState::Failed), "{oom:#?}");
    let rss = oom.max_rss_bytes.expect("MaxRSS of the OOM job");
    assert!((40 << 20..=2 << 30).contains(&rss), "MaxRSS {rss} bytes is not a few hundred MiB");
    assert_eq!(Some(rss), oom.tres_usage_in_tot.get("mem"));

    // A second collect over the same two days changes no finished run (running ones may move on).
    let before: Vec<JobRun> = ledger.jobs(&JobFilter::default()).unwrap();
    let open = before.iter().filter(|j| !j.state.is_final()).count();
    drop(ledger);
    let second = collect(&db, &["--lookback", "2d"]);
    let after: Vec<JobRun> = Ledger::open(&db).unwrap().jobs(&JobFilter::default()).unwrap();
    let new: Vec<&JobRun> = after.iter().filter(|a| !before.iter().any(|b| b.key == a.key)).collect();
    assert!(second.contains(&format!("({} new,", new.len())), "{second}");
    for n in &new {
        assert!(n.key.submit.0 >= first_at, "a run submitted before the first collect appeared only now: {n:#?}");
    }
    let updated: usize = second
        .split(" updated")
        .next()
        .and_then(|h| h.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("updated count");
    assert!(updated <= open + 2, "only open runs (and jobs that started since) may change: {second}");
    for b in before.iter().filter(|j| j.state.is_final()) {
        let a = after.iter().find(|a| a.key == b.key).expect("run still there");
        assert_eq!(a, b, "finished run changed on re-collect");
    }
}

#[test]
fn live_running_job_is_updated_when_it_ends() {
    let Some(_) = testbed() else { return };
    let _slurm = exclusive_slurm();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = submit_and_collect_running(&db, "ledger-it-running", "sleep 8", deadline);
    // Then until it is accounted as completed.
    loop {
        std::thread::sleep(Duration::from_secs(2));
        collect(&db, &[]);
        let r = runs(&db, job);
        assert_eq!(r.len(), 1, "one run, updated in place");
        if r[0].state == JobState::Completed {
            assert!(r[0].end.is_some() && r[0].elapsed_secs >= 7, "{:#?}", r[0]);
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(60), "job {job} never completed: {:?}", r[0].state);
    }
}

#[test]
fn live_run_that_ended_before_the_window_is_settled_by_job_id() {
    let Some(_) = testbed() else { return };
    let _slurm = exclusive_slurm();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    // Bounded, with room for the seed's jobs still holding the node's CPUs.
    let deadline = Instant::now() + Duration::from_secs(300);
    // Long enough to be seen running by a collect of a debug build on a busy machine.
    let job = submit_and_collect_running(&db, "ledger-it-settle", "sleep 12", deadline);
    // Wait until slurmdbd has the end, then read a window that starts after it.
    loop {
        let out = Command::new("sacct")
            .args(["-n", "-X", "-P", "-o", "State", "-j", &job.to_string()])
            .output()
            .expect("sacct");
        if String::from_utf8_lossy(&out.stdout).trim() == "COMPLETED" {
            break;
        }
        assert!(Instant::now() < deadline, "job {job} never accounted COMPLETED");
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(2));
    let text = collect(&db, &["--lookback", "1s"]);
    assert!(text.contains("asked for by job id"), "{text}");
    assert!(text.contains("cursor kept at"), "a later --since does not skip the cursor ahead: {text}");
    let r = runs(&db, job);
    assert_eq!(r.len(), 1, "updated in place");
    assert_eq!(r[0].state, JobState::Completed, "{:#?}", r[0]);
    assert!(r[0].end.is_some() && r[0].elapsed_secs >= 12, "{:#?}", r[0]);
}

/// `collect --cluster nosuch` on the live Slurm: slurmdbd knows no such cluster, so the collect
/// fails naming the clusters it knows, reads nothing and leaves no cursor (sacct itself reads
/// nothing and exits 0 for an unknown cluster).
#[test]
fn live_unknown_cluster_is_named_and_gets_no_cursor() {
    if testbed().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--ledger")
        .arg(&db)
        .args(["collect", "--cluster", "nosuch", "--lookback", "1h"])
        .env_remove("SLURM_LEDGER_CONFIG")
        .output()
        .expect("run collect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("knows no cluster \"nosuch\"") && text.contains("testcluster"), "{text}");
    assert!(Ledger::open(&db).unwrap().status(0).unwrap().cursors.is_empty(), "a cursor for nosuch");
}
