//! Bad input is quarantined with a reason; it never panics and never takes good rows with it.

use proptest::prelude::*;

use slurm_ledger::collect::import_file;
use slurm_ledger::ledger::Ledger;
use slurm_ledger::model::UnixTime;
use slurm_ledger::slurm::parsable::read_all;

use crate::common::*;

const RECORDING: &str = "testbed/sacct-all-fields-duplicates.txt";

fn recorded() -> String {
    String::from_utf8(fixture_bytes(RECORDING)).unwrap()
}

#[test]
fn each_kind_of_bad_row_is_quarantined_with_its_reason() {
    let text = recorded();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split('|').collect();
    let n = header.len();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let job1 = lines[1].clone();
    let set = |row: &str, name: &str, v: &str| {
        let mut f: Vec<&str> = row.split('|').collect();
        f[col(name)] = v;
        f.join("|")
    };
    let bad = [
        // First: after a complete record, a line without a delimiter continues its last column
        // (WorkDir here), so a stray one is only stray where a record should start.
        ("\u{0}\u{1}garbage\u{7f}".to_string(), "belong to no record"),
        (job1[..job1.len() / 2].to_string(), "truncated row"),
        (set(&job1, "AllocCPUS", "99999999999999"), "larger than any cluster"),
        (set(&set(&job1, "JobIDRaw", "900001"), "ElapsedRaw", "-5"), "ElapsedRaw"),
        (set(&set(&job1, "JobIDRaw", "900002"), "Submit", "yesterday"), "SLURM_TIME_FORMAT"),
        (set(&set(&job1, "JobIDRaw", "900003"), "State", "running fast"), "state"),
        (set(&set(&job1, "JobIDRaw", "900004"), "AllocTRES", "cpu=lots"), "TRES"),
        (set(&set(&job1, "JobIDRaw", "900005"), "Submit", "Unknown"), "cannot be keyed"),
        (format!("{}|extra", job1), "delimiter"),
    ];
    // Insert the bad rows after the header; all real rows follow unchanged.
    for (i, (row, _)) in bad.iter().enumerate() {
        lines.insert(1 + i, row.clone());
    }
    let input = lines.join("\n") + "\n";
    let (jobs, q) = parse(input.as_bytes(), opts("x"));
    let (clean_jobs, clean_q) = parse(text.as_bytes(), opts("x"));
    assert_eq!(jobs.len(), clean_jobs.len(), "no good row lost");
    assert_eq!(q.len(), clean_q.len() + bad.len(), "{q:#?}");
    for (row, why) in &bad {
        let hit = q.iter().find(|x| &x.raw == row).unwrap_or_else(|| panic!("not quarantined: {row:?}"));
        assert!(hit.reason.to_lowercase().contains(&why.to_lowercase()), "reason {:?} lacks {why:?}", hit.reason);
    }
    assert!(n > 100);
}

#[test]
fn absurd_memory_is_quarantined_at_the_ledger_not_wrapped() {
    let text = recorded();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split('|').collect();
    let tres = header.iter().position(|h| *h == "AllocTRES").unwrap();
    let mut f: Vec<String> = lines[1].split('|').map(String::from).collect();
    f[tres] = "cpu=1,mem=15E,node=1".into(); // 15 EiB: fits u64, not SQLite's i64
    lines[1] = f.join("|");
    let mut l = Ledger::open_in_memory().unwrap();
    let rep = import_file(&mut l, (lines.join("\n") + "\n").as_bytes(), opts("x"), "test", UnixTime(0)).unwrap();
    assert_eq!(rep.counts.runs_new, 25);
    let q = l.quarantined(10).unwrap();
    assert!(q.iter().any(|x| x.reason.contains("too large")), "{q:#?}");
}

#[test]
fn newline_inside_a_job_name_is_joined_back() {
    // 0x1F-delimited real rows; a job name with an embedded newline (sbatch accepts one).
    let text = String::from_utf8(fixture_bytes("testbed/sacct-X-delim-unitsep.txt")).unwrap();
    let cmd = std::fs::read_to_string(fixture("testbed/sacct-X-delim-unitsep.txt.cmd")).unwrap();
    let names: Vec<&str> =
        cmd.split("--format=").nth(1).unwrap().split_whitespace().next().unwrap().split(',').collect();
    let name_col = names.iter().position(|n| *n == "JobName").unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut f: Vec<String> = lines[0].split('\u{1f}').map(String::from).collect();
    f[name_col] = "first line\nsecond line".into();
    lines[0] = f.join("\u{1f}");
    let mut o = opts("x");
    o.delimiter = 0x1f;
    o.layout = Some(slurm_ledger::slurm::parsable::Layout::from_names(&names).unwrap());
    let (jobs, q) = parse((lines.join("\n") + "\n").as_bytes(), o);
    assert!(q.is_empty(), "{q:#?}");
    assert_eq!(jobs[0].name, "first line\nsecond line");
    assert_eq!(jobs.len(), 26);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random damage to a real recording: never a panic or a stream error, and every job row
    /// that survived intact (with an intact line before it) is still read.
    #[test]
    fn damage_never_panics_or_loses_intact_rows(
        edits in prop::collection::vec((0usize..80, 0u8..4, any::<Vec<u8>>()), 0..12)
    ) {
        let text = recorded();
        let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
        let mut damaged = vec![false; lines.len()];
        for (at, kind, bytes) in edits {
            let i = 1 + at % (lines.len() - 1);
            match kind {
                0 => { let cut = lines[i].len() / 3; lines[i].truncate(cut); damaged[i] = true; }
                1 => { lines[i].extend_from_slice(&bytes); damaged[i] = true; }
                2 => { let b: Vec<u8> = bytes.into_iter().filter(|&c| c != b'\n').collect(); lines.insert(i, b); damaged.insert(i, true); }
                _ => { lines[i] = lines[i].iter().map(|c| c ^ 0x55).collect(); damaged[i] = true; }
            }
        }
        let mut input = lines.join(&b'\n');
        input.push(b'\n');
        let items = read_all(&input[..], opts("x"));
        prop_assert!(items.is_ok(), "stream error: {:?}", items.err());
        let (jobs, _q) = parse(&input, opts("x"));
        for i in 1..lines.len() {
            let line = String::from_utf8_lossy(&lines[i]);
            let f: Vec<&str> = line.split('|').collect();
            let intact = !damaged[i] && !damaged[i - 1] && f.len() == 109;
            if intact && !f[33].contains('.') && f[33].parse::<u64>().is_ok() && !line.contains("pipe") {
                let raw: u64 = f[33].parse().unwrap();
                prop_assert!(jobs.iter().any(|j| j.key.job_id_raw == raw), "intact job row {raw} lost");
            }
        }
    }

    /// Arbitrary bytes: items or a clear stream error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in any::<Vec<u8>>()) {
        let _ = read_all(&bytes[..], opts("x"));
        let mut with_header = fixture_bytes(RECORDING)[..2000].to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = read_all(&with_header[..], opts("x"));
    }
}

/// A line without any delimiter where a record should start (here after a complete record of a
/// layout whose last column, TRESUsageOutTot, holds no newline, and whose first, JobID, holds
/// none either) belongs to no record: it is quarantined by itself, and the row after it is read.
#[test]
fn a_line_without_a_delimiter_is_quarantined_by_itself() {
    let text = String::from_utf8(fixture_bytes("testbed/sacct-X-duplicates.txt")).unwrap();
    let (clean_jobs, clean_q) = parse(text.as_bytes(), opts("x"));
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "stray text");
    lines.insert(6, "two stray");
    lines.insert(7, "lines");
    let (jobs, q) = parse((lines.join("\n") + "\n").as_bytes(), opts("x"));
    assert_eq!(jobs, clean_jobs, "no row lost or changed");
    assert_eq!(q.len(), clean_q.len() + 2, "{q:#?}");
    for (raw, line) in [("stray text", 4), ("two stray\nlines", 7)] {
        let hit = q.iter().find(|x| x.raw == raw).unwrap_or_else(|| panic!("{raw:?} not quarantined: {q:#?}"));
        assert_eq!(hit.line, line);
        assert!(hit.reason.contains("belong to no record") && hit.reason.contains("JobID"), "{}", hit.reason);
    }
}

/// A layout whose first and last columns both may hold a newline (JobName first, SubmitLine
/// last): a line without a delimiter after a complete record may end it or begin the next, and
/// nothing tells which. Neither record is stored; both are quarantined with the reason.
#[test]
fn where_a_record_ends_cannot_be_told_both_rows_are_quarantined() {
    let (header, records) = own_poll_records();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let order: Vec<usize> =
        [col("JobName")].into_iter().chain((0..header.len()).filter(|&i| i != col("JobName"))).collect();
    let (want, _) = parse(&fixture_bytes("testbed/own-sacct-poll.txt"), opts("testcluster"));
    let (got, q) = parse(poll_text(&header, &records, &order).as_bytes(), opts("testcluster"));
    // Job 14's name, "nl\nname", starts its record on a line without a delimiter (after 13.extern,
    // whose SubmitLine is empty, so that line is not its continuation); its SubmitLine's last
    // line follows the complete record, and may end it or begin the next: neither is stored.
    let ids: Vec<&str> = q.iter().map(|x| x.raw.split('\u{1f}').nth(1).unwrap_or("")).collect();
    assert_eq!(ids, ["14", "14.batch", "14.extern"], "{q:#?}");
    assert!(q[0].raw.starts_with("nl\nname\u{1f}14\u{1f}") && q[0].raw.ends_with("\nname -t 5 --wrap sleep 1"));
    assert!(q[0].reason.contains("cannot tell") && q[0].reason.contains("JobName"), "{}", q[0].reason);
    assert!(q[1].reason.contains("may begin"), "{}", q[1].reason);
    assert!(q[2].reason.contains("does not follow its job row"), "{}", q[2].reason);
    // Every other run as recorded.
    let others: Vec<_> = want.iter().filter(|w| w.key.job_id_raw != 14).cloned().collect();
    assert_eq!(got, others);
}

/// A last column that runs on over more lines than a record may span: the record is
/// quarantined, and so are the lines past the limit (in groups), never appended without end.
#[test]
fn a_last_column_past_the_line_limit_is_quarantined() {
    let (header, mut records) = own_poll_records();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let i2 = records.iter().position(|r| r[col("JobID")] == "2").unwrap();
    records[i2][col("SubmitLine")] = (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
    let text = poll_text(&header, &records, &(0..header.len()).collect::<Vec<_>>());
    let (jobs, q) = parse(text.as_bytes(), opts("testcluster"));
    assert!(find(&jobs, "2").is_empty());
    assert!(q[0].raw.starts_with("2\u{1f}2\u{1f}") && q[0].raw.ends_with("\nline 63"), "{:?}", q[0]);
    assert!(q[0].reason.contains("more than 64 lines"), "{}", q[0].reason);
    assert_eq!(q[1].raw, (64..100).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n"));
    assert!(q[1].reason.contains("belong to no record"), "{}", q[1].reason);
    assert!(q[2..].iter().all(|x| x.raw.starts_with("2.") && x.reason.contains("does not follow")), "{q:#?}");
    assert_eq!(jobs.len(), 27);
}
