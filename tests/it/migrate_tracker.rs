//! The switch from slurm-tracker: its crontab arguments, its config.json (the sample shipped with
//! slurm-tracker, tests/fixtures/slurm-tracker) and a state DB with its exact schema. What the
//! tracker already billed is not billed again; what it never finished is.

use std::collections::BTreeMap;

use slurm_ledger::ledger::{JobFilter, Ledger};
use slurm_ledger::model::JobRun;

use crate::common::fixture;
use crate::deliver_activate::{deliver, fake, micro, site, slurm_ledger, Site};

/// slurm-tracker's table, as its `state.go` creates it.
const TRACKER_DDL: &str = "CREATE TABLE job_states (job_id INTEGER PRIMARY KEY, last_reported_elapsed INTEGER NOT NULL,
    last_reported_at INTEGER NOT NULL, total_core_hours REAL NOT NULL, completed_at INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX idx_completed_at ON job_states(completed_at);";

fn run_of(site: &Site, job: u64) -> JobRun {
    let l = Ledger::open(&site.db).unwrap();
    let mut runs = l.jobs(&JobFilter { job_id_raw: Some(job), ..Default::default() }).unwrap();
    assert_eq!(runs.len(), 1, "job {job}");
    runs.remove(0)
}

fn cpus(j: &JobRun) -> u128 {
    j.alloc_tres.get("cpu").unwrap_or(j.alloc_cpus as u64) as u128
}

fn q(core_secs: u128) -> u128 {
    (core_secs * 1_000_000 + 1800) / 3600
}

#[test]
fn what_the_tracker_billed_is_not_billed_again() {
    let site = site();
    let done = run_of(&site, 5); // COMPLETED, 6 s: the tracker billed it all
    let running = run_of(&site, 11); // COMPLETED, 9 s: the tracker saw 4 s while it ran
    let oom = run_of(&site, 16); // FAILED (OOM-killed), 5 s: the tracker saw 3 s, then ignored the state
    assert_eq!((done.elapsed_secs, running.elapsed_secs, oom.elapsed_secs), (6, 9, 5), "the recorded poll changed");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("slurm_job_states.db");
    {
        let c = rusqlite::Connection::open(&state).unwrap();
        c.execute_batch(TRACKER_DDL).unwrap();
        let mut ins = c.prepare("INSERT INTO job_states VALUES (?1, ?2, ?3, ?4, ?5)").unwrap();
        let start = |j: &JobRun| j.start.unwrap().0;
        ins.execute(rusqlite::params![5, 6, done.end.unwrap().0, 0.0067, 1_795_312_700]).unwrap();
        ins.execute(rusqlite::params![11, 4, start(&running) + 4, 0.0011, 0]).unwrap();
        ins.execute(rusqlite::params![16, 3, start(&oom) + 3, 0.0008, 0]).unwrap();
        ins.execute(rusqlite::params![424242, 60, 1_795_000_060, 0.0166, 0]).unwrap();
    }
    let config = fixture("slurm-tracker/config.sample.json");
    let args = format!(
        "/usr/local/bin/slurm-tracker --org acme --lookback 10 --config {} --state-file {}",
        config.display(),
        state.display()
    );
    std::fs::write(&site.cfg, "").unwrap();
    let (code, out, err) = slurm_ledger(&site, &["migrate", "slurm-tracker", "--tracker-args", &args], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("4 rows read for cluster testcluster: 4 imported")
            && out.contains("1 will be matched when collected"),
        "{out}"
    );
    // The printed table is the config to use: the sample's mapping.
    let table: String = out.split_once("config.sample.json:\n").unwrap().1.split("\n\n").next().unwrap().to_string();
    assert!(
        table.contains("research-team = \"allocation-oid-12345\"")
            && table.contains("default_sku = \"standard-compute\""),
        "{table}"
    );
    // Importing again changes nothing.
    let (_, again, _) = slurm_ledger(&site, &["migrate", "slurm-tracker", "--tracker-args", &args], None);
    assert!(again.contains("0 imported, 4 already imported"), "{again}");

    let f = fake(&["allocation-oid-12345", "allocation-oid-67890", "default-allocation-oid"]);
    // The migrated table as printed, with the test's host: `host` etc. go right under its header.
    let extra = format!("[sinks.activate]\nhost = \"{}\"\ntimeout_secs = 1\nrunning_slice = \"1s\"\n", f.base_url());
    let cfg = format!("{}\n[delivery]\nretry_backoff = \"1s\"\n", table.replacen("[sinks.activate]\n", &extra, 1));
    std::fs::write(&site.cfg, &cfg).unwrap();
    let out = deliver(&site);
    assert!(out.contains("0 rejected"), "{out}\n{cfg}");

    let mut per_job: BTreeMap<u64, (u128, Vec<String>)> = BTreeMap::new();
    for e in f.events() {
        let m = e.metadata.unwrap();
        let entry = per_job.entry(m["jobId"].as_u64().unwrap()).or_default();
        entry.0 += micro(&e.quantity_text);
        entry.1.push(e.started_at.clone());
    }
    assert!(!per_job.contains_key(&5), "job 5 was billed in full by the tracker: {:?}", per_job.get(&5));
    let c = cpus(&running);
    assert_eq!(per_job[&11].0, q(c * 9) - q(c * 4), "job 11: only the 5 s after the tracker's 4");
    assert_eq!(per_job[&11].1[0], slurm_ledger::model::UnixTime(running.start.unwrap().0 + 4).to_rfc3339());
    let c = cpus(&oom);
    assert_eq!(per_job[&16].0, q(c * 5) - q(c * 3), "job 16: the OOM remainder the tracker never billed");
    // A run the tracker never saw is billed whole.
    let j6 = run_of(&site, 6);
    assert_eq!(per_job[&6].0, q(cpus(&j6) * j6.elapsed_secs as u128));
}

/// A tracker row that matches no run holds the run, and the command the hold reason prints
/// releases it as printed (no --org, no config.json needed); the run is then billed in full.
#[test]
fn the_release_command_in_a_hold_reason_works_as_printed() {
    let site = site();
    let run = run_of(&site, 6); // COMPLETED, 6 s
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("slurm_job_states.db");
    {
        let c = rusqlite::Connection::open(&state).unwrap();
        c.execute_batch(TRACKER_DDL).unwrap();
        // A row whose instants are another run's: it started 100 s before this one.
        let at = run.start.unwrap().0 - 100 + 3;
        c.execute("INSERT INTO job_states VALUES (6, 3, ?1, 0.001, 0)", [at]).unwrap();
    }
    let config = fixture("slurm-tracker/config.sample.json");
    let args = format!("--org acme --config {} --state-file {}", config.display(), state.display());
    let f = fake(&["allocation-oid-12345", "allocation-oid-67890", "default-allocation-oid"]);
    let cfg = format!(
        "[sinks.activate]\norganization = \"acme\"\nhost = \"{}\"\ndefault_sku = \"standard-compute\"\n\
         default_allocation = \"default-allocation-oid\"\ntimeout_secs = 1\n",
        f.base_url()
    );
    std::fs::write(&site.cfg, cfg).unwrap();
    let (code, out, err) = slurm_ledger(&site, &["migrate", "slurm-tracker", "--tracker-args", &args], None);
    assert_eq!(code, 0, "{out}\n{err}");
    deliver(&site);
    let held = Ledger::open(&site.db).unwrap().held_runs("activate").unwrap();
    let reason = &held.iter().find(|(k, _)| k.job_id_raw == 6).expect("job 6 held").1;
    let printed = reason.split('`').nth(1).expect("a command in backquotes");
    assert_eq!(printed, "slurm-ledger migrate slurm-tracker --release 6", "{reason}");
    let words: Vec<&str> = printed.split_whitespace().skip(1).collect();
    let (code, out, err) = slurm_ledger(&site, &words, None);
    assert_eq!(code, 0, "the printed command failed:\n{out}\n{err}");
    deliver(&site);
    let billed: u128 =
        f.events().iter().filter(|e| e.metadata.as_ref().unwrap()["jobId"] == 6).map(|e| micro(&e.quantity_text)).sum();
    assert_eq!(billed, q(cpus(&run) * run.elapsed_secs as u128), "job 6 billed in full once released");
}
