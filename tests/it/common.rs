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
