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
        (job1[..job1.len() / 2].to_string(), "truncated row"),
        (set(&job1, "AllocCPUS", "99999999999999"), "larger than any cluster"),
        (set(&set(&job1, "JobIDRaw", "900001"), "ElapsedRaw", "-5"), "ElapsedRaw"),
        (set(&set(&job1, "JobIDRaw", "900002"), "Submit", "yesterday"), "SLURM_TIME_FORMAT"),
        (set(&set(&job1, "JobIDRaw", "900003"), "State", "running fast"), "state"),
        (set(&set(&job1, "JobIDRaw", "900004"), "AllocTRES", "cpu=lots"), "TRES"),
        (set(&set(&job1, "JobIDRaw", "900005"), "Submit", "Unknown"), "cannot be keyed"),
        ("\u{0}\u{1}garbage\u{7f}".to_string(), "fields"),
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
