//! Helpers shared by the integration tests.

use std::path::PathBuf;

use slurm_ledger::model::{ClusterName, JobRun};
use slurm_ledger::slurm::parsable::{read_all, Item, Quarantined, ReadOptions};
use slurm_ledger::slurm::values::TimeZone;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

pub fn opts(cluster: &str) -> ReadOptions {
    ReadOptions {
        delimiter: b'|',
        layout: None,
        tz: TimeZone::Utc,
        default_cluster: ClusterName::new(cluster).unwrap(),
    }
}

/// Parses bytes; returns (jobs, quarantined).
pub fn parse(bytes: &[u8], o: ReadOptions) -> (Vec<JobRun>, Vec<Quarantined>) {
    let items = read_all(bytes, o).expect("stream-level error");
    let mut jobs = Vec::new();
    let mut q = Vec::new();
    for i in items {
        match i {
            Item::Job(j) => jobs.push(*j),
            Item::Quarantine(x) => q.push(x),
        }
    }
    (jobs, q)
}

pub fn find<'a>(jobs: &'a [JobRun], job_id: &str) -> Vec<&'a JobRun> {
    jobs.iter().filter(|j| j.job_id == job_id).collect()
}

pub fn one<'a>(jobs: &'a [JobRun], job_id: &str) -> &'a JobRun {
    let v = find(jobs, job_id);
    assert_eq!(v.len(), 1, "expected one run of {job_id}, got {}", v.len());
    v[0]
}

/// The recorded testbed poll (`testbed/own-sacct-poll.txt`, 0x1F-delimited) as its header and
/// its records, each split into its fields. Records are cut where a physical line starts with a
/// job id (a digit) and holds a delimiter, a rule of this recording rather than the reader's:
/// the lines that continue a record here start with a letter (job 14's `name…` lines).
pub fn own_poll_records() -> (Vec<String>, Vec<Vec<String>>) {
    let text = String::from_utf8(fixture_bytes("testbed/own-sacct-poll.txt")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split('\u{1f}').map(String::from).collect();
    let mut records: Vec<String> = Vec::new();
    for line in lines {
        match records.last_mut() {
            Some(r) if !(line.contains('\u{1f}') && line.starts_with(|c: char| c.is_ascii_digit())) => {
                r.push('\n');
                r.push_str(line);
            }
            _ => records.push(line.to_string()),
        }
    }
    let records: Vec<Vec<String>> =
        records.iter().map(|r| r.split('\u{1f}').map(String::from).collect::<Vec<_>>()).collect();
    assert!(records.iter().all(|r| r.len() == header.len()), "the recording changed");
    (header, records)
}

/// Records as 0x1F-delimited text with a header, their columns in the order `order` gives (the
/// indices of `header`).
pub fn poll_text(header: &[String], records: &[Vec<String>], order: &[usize]) -> String {
    let row = |f: &[String]| order.iter().map(|&i| f[i].as_str()).collect::<Vec<_>>().join("\u{1f}") + "\n";
    std::iter::once(row(header)).chain(records.iter().map(|r| row(r))).collect()
}

/// A `sacct` in `dir` that answers from the recorded testbed poll (tests/fixtures/testbed/
/// own-sacct-poll.txt, 28 runs of 2026-11-22, with its version and helpformat) and appends
/// `<unix time> <arguments>` to `calls.log`; while the file `fail` exists, a query whose
/// arguments contain its text fails as slurmdbd does when it is down.
pub fn fake_sacct(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let f = |name: &str| fixture(&format!("testbed/{name}")).display().to_string();
    let script = format!(
        "#!/bin/sh\nd=$(dirname \"$0\")\necho \"$(date +%s.%N) $*\" >> \"$d/calls.log\"\ncase \"$*\" in\n\
         *--version*) cat '{}' ;;\n*--helpformat*) cat '{}' ;;\n\
         *--parsable2*) if [ -f \"$d/fail\" ] && echo \"$*\" | grep -q -- \"$(cat \"$d/fail\")\"; then \
         echo 'sacct: error: slurmdbd: Query took too long' >&2; exit 1; fi; cat '{}' ;;\n\
         *) echo \"fake sacct: unexpected $*\" >&2; exit 1 ;;\nesac\n",
        f("own-sacct-version.txt"),
        f("sacct-helpformat.txt"),
        f("own-sacct-poll.txt")
    );
    let path = dir.join("sacct");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
