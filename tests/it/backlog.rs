//! A backlog larger than the old per-pass cap (10,000) drains in one `deliver` (issue 9, item
//! 12), and `status` shows a backlog and its age until it does. The runs are copies of a
//! recorded testbed run (the demo's poll) under new job ids.

use std::process::Command;

use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};
use slurm_ledger::model::{JobState, UnixTime};

use crate::deliver_activate::{site, slurm_ledger, Site};

/// Copies of the recorded run with the most CPU time, `n` of them, stored in the site's ledger.
pub(crate) fn copies_of_a_recorded_run(site: &Site, n: u64) {
    let mut ledger = Ledger::open(&site.db).unwrap();
    let recorded = ledger.jobs(&JobFilter { limit: None, ..Default::default() }).unwrap();
    let model = recorded
        .iter()
        .filter(|j| j.state == JobState::Completed && j.elapsed_secs > 0 && j.alloc_tres.get("cpu").is_some())
        .max_by_key(|j| j.elapsed_secs)
        .expect("a completed run with cpu in the recorded poll")
        .clone();
    let mut w = ledger.writer(UnixTime(model.key.submit.0 + 86_400)).unwrap();
    for i in 0..n {
        let mut j = model.clone();
        j.key.job_id_raw = 1_000_000 + i;
        j.job_id = j.key.job_id_raw.to_string();
        w.upsert_run(&j).unwrap();
    }
    w.commit().unwrap();
}

fn status_json(site: &Site) -> serde_json::Value {
    let (code, out, err) = slurm_ledger(site, &["status", "--format", "json"], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn jsonl_sink(site: &Site) -> serde_json::Value {
    status_json(site)["sinks"].as_array().unwrap().iter().find(|s| s["sink"] == "jsonl").cloned().unwrap()
}

#[test]
fn a_backlog_of_twelve_thousand_drains_in_one_deliver_and_status_shows_it_until_then() {
    let site = site();
    const N: u64 = 12_000;
    copies_of_a_recorded_run(&site, N);
    let out_file = site.db.with_file_name("usage.jsonl");
    std::fs::write(&site.cfg, format!("[sinks.jsonl]\npath = \"{}\"\ntres = \"cpu\"\n", out_file.display())).unwrap();

    // The demo's own pass already delivered the recorded runs (to another file).
    let delivered_before =
        Ledger::open(&site.db).unwrap().deliveries("jsonl", Some(DeliveryState::Delivered)).unwrap().len();
    // Plan only: the whole backlog is owed, and status says so with its age.
    let (code, out, err) = slurm_ledger(&site, &["deliver", "--limit", "0"], None);
    assert_eq!(code, 0, "{out}{err}");
    let owed = jsonl_sink(&site)["backlog"].as_u64().unwrap();
    assert!(owed >= N, "every copy is owed at least one delivery: {owed}");
    assert!(jsonl_sink(&site)["backlog_since"].as_i64().is_some());
    let (_, table, _) = slurm_ledger(&site, &["status"], None);
    assert!(table.contains(&format!("backlog: {owed} deliveries owed, the oldest since")), "{table}");

    // A capped pass leaves the rest, and says so.
    let (code, out, err) = slurm_ledger(&site, &["deliver", "--limit", "1000"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("jsonl: {} deliveries still due", owed - 1000)), "{out}");
    assert_eq!(jsonl_sink(&site)["backlog"].as_u64(), Some(owed - 1000));

    // One plain deliver drains the rest.
    let (code, out, err) = slurm_ledger(&site, &["deliver"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("still due"), "{out}");
    assert_eq!(jsonl_sink(&site)["backlog"].as_u64(), Some(0));
    assert!(!slurm_ledger(&site, &["status"], None).1.contains("backlog:"));

    // Every item is in the file exactly once.
    let text = std::fs::read_to_string(&out_file).unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u64, owed);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, owed, "a record was written twice");
    let ledger = Ledger::open(&site.db).unwrap();
    let delivered = ledger.deliveries("jsonl", Some(DeliveryState::Delivered)).unwrap().len() - delivered_before;
    assert_eq!(delivered as u64, owed);
}

#[test]
fn the_pass_time_is_checked_at_start() {
    let site = site();
    std::fs::write(&site.cfg, "[delivery]\npass_time = \"0s\"\n").unwrap();
    let (code, _, err) = slurm_ledger(&site, &["config", "check"], None);
    assert_ne!(code, 0);
    assert!(err.contains("delivery.pass_time"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .args(["deliver", "--time-limit", "forever"])
        .arg("--ledger")
        .arg(&site.db)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--time-limit"));
}
