//! The binary as an admin uses it: help, errors, exit codes, the demo.

use std::process::{Command, Output};

use crate::common::fixture;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
    c.env_remove("SLURM_LEDGER_CONFIG").env_remove("SLURM_LEDGER_DB").env("RUST_LOG", "warn");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = c.output().expect("run slurm-ledger");
    (status.code().unwrap_or(-1), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn help_is_complete_and_stable() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    insta::assert_snapshot!("help", out);
    let (code, out, _) = run(bin().args(["collect", "--help"]));
    assert_eq!(code, 0);
    insta::assert_snapshot!("collect_help", out);
}

#[test]
fn demo_runs_the_pipeline_on_recorded_output() {
    let (code, out, err) = run(bin().arg("demo"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("28 runs read (28 new, 0 updated, 0 unchanged)"), "{out}");
    assert!(out.contains("28 runs read (0 new, 0 updated, 28 unchanged)"), "second poll changes nothing:\n{out}");
    assert!(out.contains("REQUEUED"), "{out}");
    assert!(out.contains("pipe|name ünïcødé ✓"), "our own 0x1F call keeps the name: {out}");
    assert!(!out.contains("quarantined ("), "nothing quarantined: {out}");
    // Metering and delivery to the local sink: every billable run once, then nothing new.
    assert!(out.contains("jsonl: 28 runs planned → 24 new deliveries (0 runs held); sent: 24 delivered"), "{out}");
    assert!(out.contains("jsonl: 0 runs planned → 0 new deliveries"), "{out}");
    assert!(out.contains("24 usage records"), "{out}");
    assert!(out.contains("POST https://activate.example.org/api/organizations/demo-org/allocations/demo-allocation/usage"), "{out}");
    assert!(out.contains("jsonl: 24 delivered; planned to change"), "status shows the sink: {out}");
}

#[test]
fn bad_config_exits_2_naming_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[slurm]\ntimeout_secs = -3\novelap = \"5m\"\n").unwrap();
    let (code, _, err) = run(bin().args(["config", "check", "--config"]).arg(&cfg));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `ovelap`") && err.contains("overlap"), "{err}");
    std::fs::write(&cfg, "[slurm]\ntimeout_secs = -3\n").unwrap();
    let (code, _, err) = run(bin().args(["config", "check", "--config"]).arg(&cfg));
    assert_eq!(code, 2);
    assert!(err.contains("slurm.timeout_secs") && err.contains("1 to 86400"), "{err}");
    let (code, out, _) = run(bin().args(["config", "example"]));
    assert_eq!(code, 0);
    std::fs::write(&cfg, out).unwrap();
    let (code, out, err) = run(bin().args(["config", "check", "--config"]).arg(&cfg));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("OK"));
}

#[test]
fn collect_without_slurm_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(bin().env("PATH", dir.path()).arg("--ledger").arg(dir.path().join("l.db")).arg("collect"));
    assert_eq!(code, 1);
    assert!(err.contains("sacct") && err.contains("command_wrapper"), "{err}");
}

#[test]
fn import_then_list_as_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let (code, out, err) = run(bin().arg("--ledger").arg(&db).args(["collect", "--from-file"]).arg(fixture("testbed/sacct-X-duplicates.txt")));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 quarantined"), "{out}");
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--user", "alice", "--state", "COMPLETED,FAILED", "--format", "csv"]));
    assert_eq!(code, 0);
    let mut rdr = csv::Reader::from_reader(out.as_bytes());
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert!(rows.len() >= 6, "{out}");
    assert!(rows.iter().all(|r| &r[5] == "alice"));
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--job", "23", "--format", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "both runs of the requeued job");
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).arg("status"));
    assert_eq!(code, 0);
    assert!(out.contains("Quarantined records: 1") && out.contains("delimiter"), "{out}");
    let (code, _, err) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--since", "last tuesday"]));
    assert_eq!(code, 2);
    assert!(err.contains("--since") && err.contains("now-2h"), "{err}");
}
