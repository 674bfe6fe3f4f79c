//! Every file of the Slurm 22.05.8 testbed capture (tests/fixtures/testbed/, copied from
//! shared/slurm-testbed/capture/; INDEX.md there names each command and job) is exercised by a
//! test: here, or in the test named for it in [`COVERAGE`].
//!
//! The sacct outputs slurm-ledger reads are checked against INDEX.md's jobs; the outputs it
//! cannot read as job records (fixed-width sacct, YAML, sinfo, squeue text, sacctmgr, sreport,
//! sshare, scontrol node/partition, the empty `--json` captures) must be refused with a message
//! naming what is wrong, never read as an empty success.

use std::collections::BTreeSet;

use slurm_ledger::collect::import_file;
use slurm_ledger::ledger::Ledger;
use slurm_ledger::model::{ClusterName, JobState, UnixTime};
use slurm_ledger::slurm::json::{read_sacct_json, read_squeue_json};
use slurm_ledger::slurm::parsable::{read_all, Item, Layout};
use slurm_ledger::slurm::scontrol::read_scontrol_jobs;
use slurm_ledger::slurm::source::DELIMITER;
use slurm_ledger::slurm::values::{parse_bytes, parse_req_mem, parse_tres, TimeZone, TresKind};

use crate::common::*;

/// Each capture file and the test that covers it: (file, source file of the test, test name).
/// A file in tests/fixtures/testbed/ missing here fails [`every_capture_file_is_exercised`];
/// `.cmd`/`.stderr` files, INDEX.md and slurm-ledger's own recordings (`own-*`) are exempt.
const COVERAGE: &[(&str, &str, &str)] = &[
    ("sacct-X-delim-unitsep.txt", "tests/it/parsers.rs", "unit_separator_keeps_the_pipe_name_intact"),
    ("sacct-X-duplicates.txt", "tests/it/parsers.rs", "duplicates_give_the_requeued_job_two_runs"),
    (
        "sacct-X-parsable2.txt",
        "tests/it/captures.rs",
        "noheader_pipe_output_reads_every_window_job_but_the_pipe_named_one",
    ),
    ("sacct-all-fields-duplicates.txt", "tests/it/parsers.rs", "every_column_output_parses_the_same_runs"),
    ("sacct-all-fields.txt", "tests/it/captures.rs", "all_fields_is_the_duplicates_output_less_the_requeued_run"),
    ("sacct-default.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacct-helpformat.txt", "src/slurm/fields.rs", "every_wanted_field_exists_in_22_05"),
    ("sacct-oom-cgroup-v1.json", "src/slurm/json.rs", "testbed_oom_cgroup"),
    ("sacct-oom-cgroup-v1.txt", "tests/it/parsers.rs", "file_without_key_columns_is_refused_with_the_fix"),
    ("sacct-states-running.txt", "src/slurm/parsable.rs", "recycled_runs_read_exactly_as_fresh_ones"),
    ("sacct-steps-parsable2.txt", "tests/it/parsers.rs", "testbed_steps_output_gives_every_job_and_folds_steps"),
    (
        "sacct-units-M.txt",
        "tests/it/captures.rs",
        "units_m_output_is_refused_and_its_values_are_the_exact_ones_rounded",
    ),
    ("sacct-yaml.yaml", "tests/it/captures.rs", "json_readers_refuse_what_is_not_a_jobs_document"),
    ("sacct.json", "src/slurm/json.rs", "testbed_requeued_job_has_two_runs"),
    (
        "sacctmgr-account-withassoc.txt",
        "tests/it/captures.rs",
        "outputs_that_are_not_sacct_parsable2_are_refused_by_name",
    ),
    ("sacctmgr-account.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-assoc-tree.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-assoc.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-cluster.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-json.txt", "tests/it/captures.rs", "json_captures_are_empty_because_22_05_has_no_json_there"),
    ("sacctmgr-qos.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-tres.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-user-withassoc.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-user.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("sacctmgr-wckey.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("scontrol-show-config.txt", "src/slurm/source.rs", "detect_and_build_the_poll_command"),
    ("scontrol-show-job-all.txt", "src/slurm/scontrol.rs", "multiline_and_oneliner_agree"),
    (
        "scontrol-show-job-finished.json",
        "tests/it/captures.rs",
        "json_captures_are_empty_because_22_05_has_no_json_there",
    ),
    ("scontrol-show-job-finished.txt", "src/slurm/scontrol.rs", "finished_job_24_with_suspension"),
    ("scontrol-show-job-oneliner.txt", "src/slurm/scontrol.rs", "multiline_and_oneliner_agree"),
    (
        "scontrol-show-job-running.json",
        "tests/it/captures.rs",
        "json_captures_are_empty_because_22_05_has_no_json_there",
    ),
    ("scontrol-show-job-running.txt", "src/slurm/scontrol.rs", "running_job_25"),
    ("scontrol-show-node.txt", "tests/it/captures.rs", "scontrol_reader_refuses_node_and_partition_records"),
    ("scontrol-show-partition.txt", "tests/it/captures.rs", "scontrol_reader_refuses_node_and_partition_records"),
    ("scontrol-version.txt", "src/slurm/source.rs", "detect_and_build_the_poll_command"),
    ("sinfo.json", "tests/it/captures.rs", "json_readers_refuse_what_is_not_a_jobs_document"),
    ("sinfo.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    ("squeue.json", "src/slurm/json.rs", "squeue_testbed"),
    ("squeue.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
    (
        "sreport-cluster-acctutil.txt",
        "tests/it/captures.rs",
        "outputs_that_are_not_sacct_parsable2_are_refused_by_name",
    ),
    ("sshare.txt", "tests/it/captures.rs", "outputs_that_are_not_sacct_parsable2_are_refused_by_name"),
];

/// One row of INDEX.md's job table.
#[derive(Debug)]
struct IndexJob {
    job_id: String,
    raw: u64,
    state: String,
    scenario: String,
}

/// INDEX.md's "Job IDs in this capture" table (`\|` inside a cell is a literal pipe).
fn index_jobs() -> Vec<IndexJob> {
    let text = String::from_utf8(fixture_bytes("testbed/INDEX.md")).unwrap();
    let table = text.split("Job IDs in this capture:").nth(1).expect("INDEX.md has its job table");
    let jobs: Vec<IndexJob> = table
        .lines()
        .filter_map(|l| {
            let l = l.replace("\\|", "\u{0}");
            let cells: Vec<String> = l.split('|').map(|c| c.trim().replace('\u{0}', "|")).collect();
            // `| id | raw | name | user | account | state | scenario |` splits into 9 cells.
            let raw = cells.get(2)?.parse().ok()?;
            Some(IndexJob { job_id: cells[1].clone(), raw, state: cells[6].clone(), scenario: cells[7].clone() })
        })
        .collect();
    assert_eq!(jobs.len(), 28, "INDEX.md lists 28 jobs: {jobs:#?}");
    jobs
}

/// The jobs a `-S/-E` window query returns: INDEX.md marks the held ones it does not.
fn window_job_ids() -> BTreeSet<String> {
    index_jobs()
        .into_iter()
        .filter(|j| !j.scenario.contains("NOT returned by -S/-E window"))
        .map(|j| j.job_id)
        .collect()
}

/// The `--format` list of a capture's `.cmd`, as a layout for its `--noheader` output.
fn format_layout(cmd_file: &str) -> Layout {
    let cmd = std::fs::read_to_string(fixture(cmd_file)).unwrap();
    let format = cmd.split("--format=").nth(1).unwrap().split_whitespace().next().unwrap();
    Layout::from_names(&format.split(',').collect::<Vec<_>>()).unwrap()
}

fn cmd(file: &str) -> String {
    std::fs::read_to_string(fixture(&format!("testbed/{file}.cmd"))).unwrap().trim().to_string()
}

fn text(file: &str) -> String {
    String::from_utf8(fixture_bytes(&format!("testbed/{file}"))).unwrap()
}

#[test]
fn noheader_pipe_output_reads_every_window_job_but_the_pipe_named_one() {
    let file = "sacct-X-parsable2.txt";
    assert!(cmd(file).contains("--noheader") && cmd(file).contains("--parsable2"), "{}", cmd(file));
    let bytes = fixture_bytes(&format!("testbed/{file}"));
    assert!(bytes.starts_with(b"1|1|testbed-smoke|"), "no header line: the first line is job 1");

    // Read as if it had a header, job 1's row would be taken for column names: refused, naming
    // the missing header line and how to give the columns (issue 9, item 5).
    let err = read_all(&bytes[..], opts("x")).unwrap_err().to_string();
    assert!(err.contains("recorded with --noheader") && err.contains("--columns"), "{err}");

    let mut o = opts("x");
    o.layout = Some(format_layout(&format!("testbed/{file}.cmd")));
    let (jobs, q) = parse(&bytes, o.clone());
    // Job 10's name holds `|`: its row has 68 fields for 66 columns and cannot be split safely.
    assert_eq!(q.len(), 1, "{q:#?}");
    assert!(q[0].raw.starts_with("10|10|pipe|name"), "{}", q[0].raw);
    assert!(q[0].reason.contains("68 fields") && q[0].reason.contains("delimiter '|'"), "{}", q[0].reason);
    assert!(q[0].reason.contains("0x1F"), "the reason names the fix: {}", q[0].reason);
    // Every job of INDEX.md's window once (-X: no steps), job 10 in quarantine.
    let mut ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    ids.push("10".into());
    assert_eq!(ids.len(), 26);
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), window_job_ids());
    for j in &jobs {
        assert_eq!(j.step_count, 0, "-X: job rows only ({})", j.job_id);
    }
    let index = index_jobs();
    for j in &jobs {
        let row = index.iter().find(|i| i.job_id == j.job_id).unwrap();
        assert_eq!(j.key.job_id_raw, row.raw, "JobIDRaw of {}", j.job_id);
    }
    // The requeued job's final run only (no --duplicates).
    assert_eq!(one(&jobs, "23").state, JobState::Completed);
    // The same call with the 0x1F delimiter reads the same runs, and job 10 as well.
    let mut u = o;
    u.delimiter = 0x1f;
    u.layout = Some(format_layout("testbed/sacct-X-delim-unitsep.txt.cmd"));
    let (all, uq) = parse(&fixture_bytes("testbed/sacct-X-delim-unitsep.txt"), u);
    assert!(uq.is_empty(), "{uq:#?}");
    let others: Vec<_> = all.iter().filter(|j| j.job_id != "10").cloned().collect();
    assert_eq!(jobs, others);
}

/// Half of 0.01 MiB, in bytes: how far `--units=M`'s two decimals may be from the exact value.
const HALF_CENTI_MIB: u64 = (1 << 20) / 200 + 1;

/// How sacct prints bytes under `--units=M`: two decimals (`6.08M`), none for whole mebibytes.
fn sacct_units_m(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        format!("{:.2}M", bytes as f64 / (1u64 << 20) as f64)
    }
}

#[test]
fn units_m_output_is_refused_and_its_values_are_the_exact_ones_rounded() {
    let file = "sacct-units-M.txt";
    let c = cmd(file);
    assert!(
        c.contains("--units=M") && c.contains("--format=JobID,ReqMem,MaxRSS,AveRSS,MaxVMSize,TRESUsageInTot"),
        "{c}"
    );
    // Its --format has neither JobIDRaw, State nor Submit (its JobID alone would key a plain job):
    // runs cannot be read, so it is refused whole.
    let err = read_all(&fixture_bytes(&format!("testbed/{file}"))[..], opts("x")).unwrap_err().to_string();
    assert!(err.contains("no State column") && err.contains("request it in --format"), "{err}");

    let units_m = text(file);
    let rows: Vec<Vec<&str>> = units_m.lines().skip(1).map(|l| l.split('|').collect()).collect();
    // No JobName column: the pipe-named job 10 splits like any other.
    assert!(rows.iter().all(|r| r.len() == 6), "every row has the 6 requested fields");
    let jobs: BTreeSet<String> = rows.iter().filter(|r| !r[0].contains('.')).map(|r| r[0].to_string()).collect();
    assert_eq!(jobs.len(), 26);
    assert_eq!(jobs, window_job_ids());

    // The same rows in sacct's default units (KiB for RSS/VM, bytes for fs/disk) from the
    // steps capture of the same window. Job 10's job row there has 68 fields: skipped (its
    // steps, named `batch` and `extern`, split fine and are compared).
    let steps = text("sacct-steps-parsable2.txt");
    let header: Vec<&str> = steps.lines().next().unwrap().split('|').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let exact_rows: Vec<Vec<&str>> = steps.lines().skip(1).map(|l| l.split('|').collect()).collect();
    let mut skipped = Vec::new();
    let (mut sizes, mut fractions) = (0, 0);
    for r in &rows {
        let id = r[0];
        let Some(e) = exact_rows.iter().find(|e| e[0] == id) else { panic!("{id} not in the steps capture") };
        if e.len() != header.len() {
            skipped.push(id);
            continue;
        }
        // ReqMem: `1024M` here is `1G` there; whole mebibytes are exact.
        assert_eq!(parse_req_mem(r[1]).unwrap(), parse_req_mem(e[col("ReqMem")]).unwrap(), "ReqMem of {id}");
        for (i, name) in [(2, "MaxRSS"), (3, "AveRSS"), (4, "MaxVMSize")] {
            let (m, k) = (r[i], e[col(name)]);
            assert_eq!(m.is_empty(), k.is_empty(), "{name} of {id}: {m:?} vs {k:?}");
            if m.is_empty() {
                continue;
            }
            let exact = parse_bytes(k, 'K').unwrap();
            assert_eq!(m, sacct_units_m(exact), "{name} of {id} ({k})");
            assert!(parse_bytes(m, 'M').unwrap().abs_diff(exact) <= HALF_CENTI_MIB, "{name} of {id}: {m} vs {k}");
            sizes += 1;
            fractions += usize::from(m.contains('.'));
        }
        let (tm, te) = (
            parse_tres(r[5], TresKind::Usage).unwrap(),
            parse_tres(e[col("TRESUsageInTot")], TresKind::Usage).unwrap(),
        );
        let names = |t: &slurm_ledger::model::Tres| t.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&tm), names(&te), "TRESUsageInTot of {id}");
        for (name, exact) in te.iter() {
            let m = tm.get(name).unwrap();
            if ["mem", "vmem", "fs/disk"].contains(&name) {
                assert!(m.abs_diff(exact) <= HALF_CENTI_MIB, "{name} of {id}: {m} vs {exact}");
            } else {
                assert_eq!(m, exact, "{name} of {id} is not a size: unchanged by --units");
            }
        }
    }
    assert_eq!(skipped, ["10"]);
    assert!(sizes >= 60 && fractions >= 60, "{sizes} sizes, {fractions} with fractions compared");
    // The OOM job's batch step: 825768K = 806.41M.
    let oom = rows.iter().find(|r| r[0] == "12.batch").unwrap();
    assert_eq!(oom[2], "806.41M");
    assert!(parse_bytes(oom[2], 'M').unwrap().abs_diff(825_768 << 10) <= HALF_CENTI_MIB);
}

#[test]
fn all_fields_is_the_duplicates_output_less_the_requeued_run() {
    let (all_file, dup_file) = ("sacct-all-fields.txt", "sacct-all-fields-duplicates.txt");
    assert_eq!(cmd(dup_file).replace(" --duplicates", ""), cmd(all_file), "the same call but --duplicates");
    let (all, all_q) = parse(&fixture_bytes(&format!("testbed/{all_file}")), opts("x"));
    let (dup, dup_q) = parse(&fixture_bytes(&format!("testbed/{dup_file}")), opts("x"));
    // -o ALL holds JobName and SubmitLine: job 10's row has two `|` too many; its steps then
    // have no job row to follow. The same rows are quarantined in both.
    // (-o ALL is in alphabetical order: Account first, JobID and JobIDRaw further on.)
    assert!(all_q[0].raw.contains("|10|10|pipe|name") && all_q[0].reason.contains("111 fields"), "{:#?}", all_q[0]);
    assert!(all_q[0].reason.contains("delimiter '|'"), "{}", all_q[0].reason);
    assert_eq!(all_q.len(), 3, "job 10 and its batch and extern steps: {all_q:#?}");
    for step in &all_q[1..] {
        assert!(step.reason.contains("step of job 10 does not follow its job row"), "{}", step.reason);
    }
    assert_eq!(all_q.iter().map(|q| &q.raw).collect::<Vec<_>>(), dup_q.iter().map(|q| &q.raw).collect::<Vec<_>>());
    // Every job of the window but job 10, once.
    let mut ids: BTreeSet<String> = all.iter().map(|j| j.job_id.clone()).collect();
    assert_eq!(ids.len(), all.len(), "one run per job without --duplicates");
    ids.insert("10".into());
    assert_eq!(ids, window_job_ids());
    // Every run equals its run of the --duplicates output, field for field.
    for run in &all {
        let same: Vec<_> = dup.iter().filter(|d| d.key == run.key).collect();
        assert_eq!(same, [run], "run {} ({:?})", run.job_id, run.key);
    }
    // --duplicates adds exactly the requeued job's earlier run.
    let requeued: Vec<_> = index_jobs().into_iter().filter(|j| j.scenario.contains("scontrol requeue")).collect();
    assert_eq!(requeued.len(), 1);
    let extra: Vec<_> = dup.iter().filter(|d| !all.iter().any(|a| a.key == d.key)).collect();
    assert_eq!(extra.len(), 1, "{extra:#?}");
    assert_eq!((extra[0].job_id.as_str(), &extra[0].state), (requeued[0].job_id.as_str(), &JobState::Requeued));
    assert_eq!(extra[0].key.job_id_raw, requeued[0].raw);
    let last = one(&all, &requeued[0].job_id);
    assert_eq!((last.state.clone(), requeued[0].state.as_str()), (JobState::Completed, "COMPLETED"));
    assert!(extra[0].key.submit < last.key.submit, "the requeue resubmits: the earlier run is the extra one");
    assert_eq!(dup.len(), all.len() + 1);
}

/// Outputs an admin might pass to `collect --from-file` by mistake, and what the refusal says.
const NOT_SACCT_PARSABLE2: &[(&str, &str)] = &[
    // No `|` or 0x1F on the first line (fixed width, YAML, JSON, key=value): not --parsable2.
    ("sacct-default.txt", "not `sacct --parsable2` output"),
    ("sacct-yaml.yaml", "not `sacct --parsable2` output"),
    ("sinfo.json", "not `sacct --parsable2` output"),
    ("sinfo.txt", "not `sacct --parsable2` output"),
    // `|`-delimited, but another command's columns: named (issue 9, item 7).
    ("squeue.txt", "this is `squeue` output"),
    ("sacctmgr-account-withassoc.txt", "this is `sacctmgr show account` output"),
    ("sacctmgr-account.txt", "this is `sacctmgr show account` output"),
    ("sacctmgr-assoc-tree.txt", "not `sacct --parsable2` output"),
    ("sacctmgr-assoc.txt", "this is `sacctmgr show association` output"),
    ("sacctmgr-cluster.txt", "this is `sacctmgr show cluster` output"),
    ("sacctmgr-qos.txt", "this is `sacctmgr show qos` output"),
    ("sacctmgr-tres.txt", "this is `sacctmgr show tres` output"),
    ("sacctmgr-user-withassoc.txt", "this is `sacctmgr show user` output"),
    ("sacctmgr-user.txt", "this is `sacctmgr show user` output"),
    ("sacctmgr-wckey.txt", "this is `sacctmgr show wckey` output"),
    ("sreport-cluster-acctutil.txt", "not `sacct --parsable2` output"),
    ("sshare.txt", "this is `sshare` output"),
    ("scontrol-show-node.txt", "not `sacct --parsable2` output"),
    ("scontrol-show-partition.txt", "not `sacct --parsable2` output"),
    // The failed `--json` captures are empty.
    ("sacctmgr-json.txt", "sacct output is empty: expected a header line"),
    ("scontrol-show-job-running.json", "sacct output is empty: expected a header line"),
    ("scontrol-show-job-finished.json", "sacct output is empty: expected a header line"),
];

#[test]
fn outputs_that_are_not_sacct_parsable2_are_refused_by_name() {
    // sacct's default fixed-width output cuts long values with `+`: it could not bill anyway.
    let fixed = text("sacct-default.txt");
    assert!(fixed.starts_with("JobID           JobName  Partition"), "{fixed}");
    assert!(fixed.contains("testbed-s+") && fixed.contains("research-+"), "values cut at 10 characters");
    for &(file, why) in NOT_SACCT_PARSABLE2 {
        let bytes = fixture_bytes(&format!("testbed/{file}"));
        // The reader as `collect --from-file` sets it up: 0x1F or `|` told by the header.
        let mut o = opts("x");
        o.delimiter = DELIMITER;
        let err = read_all(&bytes[..], o.clone()).unwrap_err().to_string();
        assert!(err.contains(why), "{file}: {err}");
        // And through the import itself: the same refusal, nothing stored.
        let mut ledger = Ledger::open_in_memory().unwrap();
        let err = import_file(&mut ledger, &bytes[..], o, "test", UnixTime(0)).unwrap_err().to_string();
        assert!(err.contains(why), "{file}: {err}");
        assert!(ledger.runs_changed_since(0, 10).unwrap().is_empty(), "{file}: nothing stored");
        assert!(ledger.quarantined(10).unwrap().is_empty(), "{file}: nothing quarantined either");
    }
}

#[test]
fn json_readers_refuse_what_is_not_a_jobs_document() {
    let c = ClusterName::new("x").unwrap();
    // `sacct --yaml`: the same jobs as `sacct --json` (27 runs, both of job 23's), but not JSON.
    let yaml = text("sacct-yaml.yaml");
    assert_eq!(cmd("sacct-yaml.yaml").replace("--yaml", "--json"), cmd("sacct.json"));
    let json_runs = read_sacct_json(&text("sacct.json"), &c).unwrap().len();
    assert_eq!(yaml.lines().filter(|l| l.starts_with("  !!str job_id: !!int ")).count(), json_runs);
    let err = read_sacct_json(&yaml, &c).unwrap_err().to_string();
    assert!(err.starts_with("sacct --json output is not JSON (expected value at line 1 column 1)"), "{err}");
    assert!(err.contains("an object with a `jobs` array"), "{err}");
    // `sinfo --json` is JSON, with `nodes` where jobs would be.
    for err in [
        read_sacct_json(&text("sinfo.json"), &c).unwrap_err().to_string(),
        read_squeue_json(&text("sinfo.json"), &c).unwrap_err().to_string(),
    ] {
        assert!(err.contains("JSON has no `jobs` array (top-level keys: errors, meta, nodes)"), "{err}");
    }
    // The empty `--json` captures (22.05 has no --json there): refused as empty, with the hint.
    for file in ["scontrol-show-job-running.json", "scontrol-show-job-finished.json"] {
        let err = read_squeue_json(&text(file), &c).unwrap_err().to_string();
        assert!(err.starts_with("squeue --json output is empty") && err.contains("has no --json"), "{file}: {err}");
        // The text reader, handed the same empty output, quarantines it rather than reading "no jobs".
        let items = read_scontrol_jobs(&text(file), &c, &TimeZone::Utc);
        assert!(
            matches!(&items[..], [Item::Quarantine(q)] if q.reason.contains("scontrol output is empty")),
            "{file}: {items:?}"
        );
    }
    let err = read_sacct_json(&text("sacctmgr-json.txt"), &c).unwrap_err().to_string();
    assert!(err.starts_with("sacct --json output is empty"), "{err}");
}

#[test]
fn scontrol_reader_refuses_node_and_partition_records() {
    let c = ClusterName::new("x").unwrap();
    for (file, first) in
        [("scontrol-show-node.txt", "NodeName=vm "), ("scontrol-show-partition.txt", "PartitionName=compute")]
    {
        let t = text(file);
        let items = read_scontrol_jobs(&t, &c, &TimeZone::Utc);
        // Nothing read as a job; the whole text kept in one quarantine record that says why.
        assert_eq!(items.len(), 1, "{file}: {items:#?}");
        let Item::Quarantine(q) = &items[0] else { panic!("{file}: read as a job: {items:#?}") };
        assert!(q.reason.contains("not a job record") && q.reason.contains("scontrol show job"), "{}", q.reason);
        assert_eq!(q.line, 1);
        assert!(q.raw.starts_with(first), "{file}: {}", q.raw);
        assert_eq!(
            q.raw.lines().count(),
            t.lines().filter(|l| !l.trim().is_empty()).count(),
            "{file}: every line kept"
        );
    }
}

#[test]
fn json_captures_are_empty_because_22_05_has_no_json_there() {
    for (file, tool) in [
        ("scontrol-show-job-running.json", "scontrol"),
        ("scontrol-show-job-finished.json", "scontrol"),
        ("sacctmgr-json.txt", "sacctmgr"),
    ] {
        assert!(fixture_bytes(&format!("testbed/{file}")).is_empty(), "{file} is empty");
        let c = cmd(file);
        assert!(c.starts_with(&format!("{tool} ")) && c.ends_with("--json"), "{c}");
        let stderr = text(&format!("{file}.stderr"));
        assert!(stderr.starts_with(&format!("{tool}: unrecognized option '--json'")), "{file}: {stderr}");
        assert!(
            stderr.contains(&format!("Try \"{tool} --help\"")) && stderr.trim_end().ends_with("exit=1"),
            "{stderr}"
        );
    }
}

#[test]
fn every_capture_file_is_exercised() {
    let dir = fixture("testbed");
    let mut on_disk = BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".cmd") || name.ends_with(".stderr") || name == "INDEX.md" || name.starts_with("own-") {
            continue;
        }
        on_disk.insert(name);
    }
    let listed: BTreeSet<String> = COVERAGE.iter().map(|(f, _, _)| f.to_string()).collect();
    assert_eq!(listed.len(), COVERAGE.len(), "a file is listed twice");
    let untested: Vec<_> = on_disk.difference(&listed).collect();
    assert!(untested.is_empty(), "capture files no test reads; add a test and list it in COVERAGE: {untested:?}");
    let gone: Vec<_> = listed.difference(&on_disk).collect();
    assert!(gone.is_empty(), "COVERAGE lists files not in tests/fixtures/testbed: {gone:?}");
    // Each named test exists, in a source that names the file.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, source, test) in COVERAGE {
        let code = std::fs::read_to_string(root.join(source)).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(code.contains(&format!("fn {test}()")), "{source} has no test {test} (for {file})");
        assert!(code.contains(file), "{source} does not name {file}");
    }
    // Every file of the shared capture (../shared/slurm-testbed/capture/, when it is at hand) is
    // copied here byte for byte, with its command.
    let shared = root.join("../shared/slurm-testbed/capture");
    if shared.is_dir() {
        for e in std::fs::read_dir(&shared).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let ours = std::fs::read(dir.join(&name)).unwrap_or_else(|_| panic!("{name} of the capture is not copied"));
            assert!(ours == std::fs::read(e.path()).unwrap(), "{name} differs from the capture");
        }
    }
}
