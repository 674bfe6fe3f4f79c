//! A job state this reader does not know (a newer Slurm adds them) is shown where an admin looks
//! (the collect line, `status`, `status --format json`) and billed as not final: as running
//! time, never as an ended run (issue 9, item 3).
//!
//! Input: the recorded testbed poll (`tests/fixtures/testbed/own-sacct-poll.txt`) with one
//! change, made here: job 26's job row says `EXPEDITING` instead of `RUNNING` (no recorded output
//! of a Slurm with a state unknown to this reader exists).

use std::process::Command;

use slurm_ledger::ledger::{JobFilter, Ledger};

use crate::common::fixture_bytes;

fn cli(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--ledger")
        .arg(dir.join("ledger.db"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

/// The recorded poll with job 26's job row in state `state`.
fn poll_with_job_26_in(state: &str) -> String {
    let text = String::from_utf8(fixture_bytes("testbed/own-sacct-poll.txt")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split('\u{1f}').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, st) = (col("JobID"), col("State"));
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split('\u{1f}').collect();
            if f.get(id) == Some(&"26") {
                assert_eq!(f[st], "RUNNING", "the recording changed");
                f[st] = state;
                changed += 1;
            }
            f.join("\u{1f}")
        })
        .collect();
    assert_eq!(changed, 1);
    lines.join("\n") + "\n"
}

#[test]
fn an_unknown_state_is_shown_and_billed_as_not_final() {
    let dir = tempfile::tempdir().unwrap();
    let usage = dir.path().join("usage.jsonl");
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[sinks.jsonl]\npath = {:?}\nrunning_slice = \"1m\"\n", usage.display().to_string()),
    )
    .unwrap();
    let file = dir.path().join("poll.txt");
    std::fs::write(&file, poll_with_job_26_in("EXPEDITING")).unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = cli(dir.path(), &["collect", "--from-file", f, "--file-cluster", "testcluster"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("1 in a state this slurm-ledger does not know (EXPEDITING: 1)"),
        "the collect line says so:\n{out}"
    );
    let (_, status, _) = cli(dir.path(), &["status"]);
    assert!(status.contains("state EXPEDITING, which this slurm-ledger does not know"), "{status}");
    let (_, json, _) = cli(dir.path(), &["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["unknown_states"][0]["state"], "EXPEDITING", "{json}");

    let (code, out, err) = cli(dir.path(), &["deliver"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let run = ledger.jobs(&JobFilter { job_id_raw: Some(26), ..Default::default() }).unwrap().remove(0);
    let mark = ledger.run_mark("jsonl", &run.key).unwrap();
    assert!(!mark.done, "billed as an ended run: {mark:?}");
    assert_eq!(
        mark.mark,
        Some(run.start.unwrap().0 + run.elapsed_secs as i64),
        "billed as running, up to Slurm's elapsed"
    );
}
