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
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn help_is_complete_and_stable() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    insta::assert_snapshot!("help", out);
    let (code, out, _) = run(bin().args(["collect", "--help"]));
    assert_eq!(code, 0);
    insta::assert_snapshot!("collect_help", out);
    // Every option of the commands an admin reads ledgers with says what it does.
    for cmd in ["jobs", "status"] {
        let (code, out, _) = run(bin().args([cmd, "--help"]));
        assert_eq!(code, 0);
        insta::assert_snapshot!(format!("{cmd}_help"), out);
    }
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
    assert!(
        out.contains("POST https://activate.example.org/api/organizations/demo-org/allocations/demo-allocation/usage"),
        "{out}"
    );
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
    let (code, out, err) = run(bin()
        .arg("--ledger")
        .arg(&db)
        .args(["collect", "--from-file"])
        .arg(fixture("testbed/sacct-X-duplicates.txt")));
    assert_eq!(code, 3, "a record quarantined for the first time needs a hand: {err}");
    assert!(out.contains("1 quarantined"), "{out}");
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args([
        "jobs",
        "--user",
        "alice",
        "--state",
        "COMPLETED,FAILED",
        "--format",
        "csv",
    ]));
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

/// `jobs` filters and `status --format json` on the demo's ledger: the recorded testbed poll
/// (tests/fixtures/testbed/own-sacct-poll.txt, 28 runs) collected through the replayed sacct.
#[test]
fn jobs_filters_and_status_json_on_the_recorded_poll() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let (code, _, err) = run(bin().args(["demo", "--into"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    let ids = |args: &[&str]| -> Vec<String> {
        let (code, out, err) = run(bin().arg("--ledger").arg(&db).arg("jobs").args(args).args(["--format", "json"]));
        assert_eq!(code, 0, "{args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array().unwrap().iter().map(|j| j["job_id"].as_str().unwrap().to_string()).collect()
    };
    // Facts read off the recording (columns Account, Partition, Submit, End of its job rows).
    assert_eq!(ids(&["--account", "hpc_proj1"]), ["9", "16"]);
    assert_eq!(ids(&["--partition", "gpu"]), ["15", "26", "27"]);
    assert_eq!(ids(&["--user", "carol", "--partition", "gpu"]), Vec::<String>::new());
    assert_eq!(ids(&["--cluster", "testcluster"]).len(), 28);
    assert!(ids(&["--cluster", "othercluster"]).is_empty());
    // Submitted before 01:57:22: jobs 1 and 2 and the two components of het job 3 (raw 3, 4).
    assert_eq!(ids(&["--until", "2026-11-22T01:57:22"]), ["1", "2", "3+0", "3+1"]);
    // Not ended before 01:58: the TIMEOUT job (01:58:47), the requeued job's second run
    // (01:58:03), the running and the pending job, and job 30.
    let mut late = ids(&["--since", "2026-11-22T01:58:00"]);
    late.sort();
    assert_eq!(late, ["2", "21", "26", "27", "30"]);
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--state", "running,pending"]));
    assert_eq!(code, 0);
    assert!(out.contains("still-running") && out.contains("pending-resources") && out.contains("2 run(s)"), "{out}");

    let (code, out, err) = run(bin().arg("--ledger").arg(&db).args(["status", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((st["total_runs"].as_u64(), st["open_runs"].as_u64()), (Some(28), Some(2)));
    let by_state: std::collections::BTreeMap<String, u64> = st["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["state"].as_str().unwrap().to_string(), s["runs"].as_u64().unwrap()))
        .collect();
    let want: std::collections::BTreeMap<String, u64> = [
        ("CANCELLED", 3),
        ("COMPLETED", 18),
        ("FAILED", 3),
        ("PENDING", 1),
        ("REQUEUED", 1),
        ("RUNNING", 1),
        ("TIMEOUT", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(by_state, want);
    // The demo polls at the recording's time: the cursor is there (2026-11-22T02:00:30Z).
    assert_eq!(st["cursors"][0]["cluster"], "testcluster");
    assert_eq!(st["cursors"][0]["position"].as_i64(), Some(1_795_312_830));
    assert_eq!(st["quarantined_total"].as_u64(), Some(0));
    assert!(st["last_collects"].as_array().is_some_and(|c| !c.is_empty()));
    // The table names the same things for a person.
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).arg("status"));
    assert_eq!(code, 0);
    assert!(out.contains("testcluster") && out.contains("COMPLETED") && out.contains("2026-11-22T02:00:30Z"), "{out}");
}

/// `collect --from-file` reads a recorded `sacct --json` too (tests/fixtures/testbed/sacct.json:
/// the Slurm 22.05.8 testbed's `sacct --json`, dbv0.0.38), found by its first byte.
#[test]
fn import_of_a_recorded_sacct_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let json = fixture("testbed/sacct.json");
    let (code, out, err) = run(bin().arg("--ledger").arg(&db).args(["collect", "--from-file"]).arg(&json));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("27 runs read (27 new, 0 updated, 0 unchanged)") && !out.contains("quarantined"), "{out}");
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--job", "10", "--format", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The job whose name holds `|` (quarantined from `|`-delimited text) is whole in JSON.
    assert_eq!(v[0]["name"], "pipe|name ünïcødé ✓");
    // The same file again changes nothing.
    let (_, out, _) = run(bin().arg("--ledger").arg(&db).args(["collect", "--from-file"]).arg(&json));
    assert!(out.contains("(0 new, 0 updated, 27 unchanged)"), "{out}");
    // Forced to text, the JSON is refused as not being --parsable2 text.
    let (code, _, err) =
        run(bin().arg("--ledger").arg(&db).args(["collect", "--file-format", "parsable", "--from-file"]).arg(&json));
    assert_eq!(code, 1);
    assert!(err.contains("sacct.json") && err.contains("not `sacct --parsable2` output"), "{err}");
}

/// `config check` lists every problem in one run, each with its key and fix (issue 9, item 11):
/// an unknown key, two bad values, a sink without its API key, and a TRES no run in the ledger
/// carries; and it says nothing of the secret it reads. Nothing is sent anywhere.
#[test]
fn config_check_lists_every_problem_at_once_sinks_included() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let (code, _, err) = run(bin().arg("demo").arg("--into").arg(&db));
    assert_eq!(code, 0, "{err}");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[slurm]\novelap = \"15m\"\ntimeout_secs = 0\n[log]\nlevel = \"loud\"\n\
         [sinks.activate]\norganization = \"acme\"\nhost = \"https://activate.example.org\"\n\
         [sinks.jsonl]\npath = \"/tmp/never-written.jsonl\"\ntres = \"cpuz\"\n",
    )
    .unwrap();
    let mut c = bin();
    c.env_remove("PW_API_KEY").env_remove("SLURM_LEDGER_ACTIVATE_API_KEY").env_remove("PW_PLATFORM_HOST");
    let (code, out, err) = run(c.args(["config", "check", "--config"]).arg(&cfg).arg("--ledger").arg(&db));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("5 problem(s)"), "{err}");
    for (key, says) in [
        ("line 2", "unknown field `ovelap`"),
        ("slurm.timeout_secs", "1 to 86400"),
        ("log.level", "loud"),
        ("sinks.activate", "API key"),
        ("sinks.jsonl.tres", "\"cpuz\""),
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!("- {key}:")) && l.contains(says)),
            "{key} ({says}) missing:\n{err}"
        );
    }
}

/// `-q` (cron) prints nothing unless something needs a hand (issue 9, item 9): a clean collect
/// and delivery are silent; a record quarantined for the first time is said, once.
#[test]
fn quiet_prints_only_what_needs_a_hand() {
    let dir = tempfile::tempdir().unwrap();
    let (db, cfg) = (dir.path().join("ledger.db"), dir.path().join("c.toml"));
    let usage = dir.path().join("usage.jsonl");
    std::fs::write(&cfg, format!("[sinks.jsonl]\npath = {:?}\nrunning_slice = \"1m\"\n", usage.display().to_string()))
        .unwrap();
    let poll = fixture("testbed/own-sacct-poll.txt");
    let cli = |args: &[&str]| run(bin().arg("-q").arg("--config").arg(&cfg).arg("--ledger").arg(&db).args(args));
    let (code, out, err) = cli(&["collect", "--from-file", poll.to_str().unwrap(), "--file-cluster", "testcluster"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, err) = cli(&["deliver"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert_eq!(std::fs::read_to_string(&usage).unwrap().lines().count(), 24, "delivered all the same");
    // A record that cannot be read: said the first time, not when the same file is read again.
    let bad = dir.path().join("bad.txt");
    let mut text = std::fs::read_to_string(&poll).unwrap();
    text.push_str("not\u{1f}a\u{1f}job\n");
    std::fs::write(&bad, text).unwrap();
    let (code, out, _) = cli(&["collect", "--from-file", bad.to_str().unwrap(), "--file-cluster", "testcluster"]);
    assert!(code == 3 && out.contains("1 quarantined"), "exit 3: went through, needs a hand: {code} {out}");
    let (code, out, _) = cli(&["collect", "--from-file", bad.to_str().unwrap(), "--file-cluster", "testcluster"]);
    assert_eq!((code, out.as_str()), (0, ""), "the same quarantined record again is not news");
}

/// The smaller items of issue 9 (item 13): absurd or future windows are refused with the limit;
/// `jobs --state bogus` names the states; JSON spells states as the tables do; a ledger that
/// cannot be opened is said once; the demo says why some runs had nothing to bill.
#[test]
fn small_things_an_admin_trips_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    for (flag, value, says) in [
        ("--lookback", "99999999d", "Slurm keeps nothing older"),
        ("--since", "1999-12-31", "Slurm keeps nothing older"),
        ("--since", "2099-01-01", "is in the future"),
    ] {
        let (code, out, err) = run(bin().arg("--ledger").arg(&db).args(["collect", flag, value]));
        assert_eq!(code, 2, "{flag} {value}: {out}{err}");
        assert!(err.contains(flag) && err.contains(says), "{err}");
    }
    let (code, out, err) = run(bin().arg("demo").arg("--into").arg(&db));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("jsonl: 4 of the runs had nothing new to bill (not started"), "{out}");
    let (code, _, err) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--state", "bogus"]));
    assert!(code == 2 && err.contains("--state bogus") && err.contains("COMPLETED"), "{err}");
    let (code, out, _) = run(bin().arg("--ledger").arg(&db).args(["jobs", "--format", "json", "--job", "1"]));
    assert!(code == 0 && out.contains("\"state\": \"COMPLETED\""), "{out}");
    let missing = dir.path().join("no/such/dir/ledger.db");
    let (code, _, err) = run(bin().arg("--ledger").arg(&missing).arg("status"));
    assert_eq!(code, 1);
    assert_eq!(err.matches("unable to open database file").count(), 1, "said once: {err}");
}

/// `status` keeps its quarantine table readable: long reasons and sources are cut (the JSON
/// has them whole).
#[test]
fn status_cuts_long_quarantine_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let poll = std::fs::read_to_string(fixture("testbed/own-sacct-poll.txt")).unwrap();
    let first = poll.lines().nth(1).unwrap();
    let long_dir = dir.path().join("a-directory-with-a-rather-long-name-as-sites-have-them");
    std::fs::create_dir_all(&long_dir).unwrap();
    let file = long_dir.join("twice.txt");
    // The first job's row twice, the second with another state: a long conflict reason.
    std::fs::write(&file, format!("{poll}{}\n", first.replace("COMPLETED", "FAILED"))).unwrap();
    let (code, _, err) = run(bin()
        .arg("--ledger")
        .arg(&db)
        .args(["collect", "--from-file"])
        .arg(&file)
        .args(["--file-cluster", "testcluster"]));
    assert_eq!(code, 3, "{err}");
    let (_, out, _) = run(bin().arg("--ledger").arg(&db).arg("status"));
    assert!(out.contains("appears twice"), "{out}");
    let widest = out.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 320, "a status line {widest} characters wide:\n{out}");
    let (_, json, _) = run(bin().arg("--ledger").arg(&db).args(["status", "--format", "json"]));
    assert!(json.contains("check slurmdbd for duplicate records"), "the JSON keeps the whole reason");
}
