use super::*;
use crate::model::{ClusterName, JobKey, JobRun, JobState, Tres};

fn job(start: i64, elapsed: u64, tres: &[(&str, u64)]) -> JobRun {
    let mut j = JobRun::new(
        JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 1, submit: UnixTime(start) },
        "1".into(),
    );
    j.start = Some(UnixTime(start));
    j.elapsed_secs = elapsed;
    j.state = JobState::Completed;
    j.alloc_tres = Tres::from_pairs(tres.iter().map(|(k, n)| (k.to_string(), *n)));
    j
}

#[test]
fn usage_is_count_times_billable_seconds() {
    // The testbed's GPU job 11 shape: typed and untyped GPU entries.
    let j = job(1000, 3600, &[("cpu", 4), ("gres/gpu", 1), ("gres/gpu:fake", 1), ("mem", 1 << 30), ("node", 1)]);
    let u = usage(&j, Basis::Allocated, UnixTime(0), UnixTime(10_000));
    let get = |k: &str| u.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    assert_eq!(get("cpu"), Some(4 * 3600));
    assert_eq!(get("gres/gpu"), Some(3600), "GPU counted once");
    assert_eq!(get("mem"), Some((1u128 << 30) * 3600));
    // A window cuts the span.
    assert_eq!(billable_secs(&j, UnixTime(1500), UnixTime(2000)), 500);
    assert_eq!(billable_secs(&j, UnixTime(5000), UnixTime(6000)), 0);
}

#[test]
fn typed_only_gpus_and_missing_cpu_tres() {
    let mut j = job(0, 10, &[("gres/gpu:a100", 2), ("gres/gpu:v100", 1)]);
    j.alloc_cpus = 8;
    let t = billed_tres(&j, Basis::Allocated);
    assert!(t.contains(&("gres/gpu".into(), 3)));
    assert!(t.contains(&("cpu".into(), 8)));
}

#[test]
fn never_started_or_zero_elapsed_bills_nothing() {
    let mut j = job(0, 0, &[("cpu", 4)]);
    assert_eq!(billable_span(&j), None);
    j.start = None;
    j.elapsed_secs = 100;
    assert_eq!(billable_span(&j), None);
}

#[test]
fn suspended_time_is_not_billed() {
    // The testbed's job 24: 17 s wall, 8 s suspended, ElapsedRaw 9.
    let mut j = job(0, 9, &[("cpu", 1)]);
    j.suspended_secs = 8;
    j.end = Some(UnixTime(17));
    assert_eq!(billable_secs(&j, UnixTime(0), UnixTime(100)), 9);
}

proptest::proptest! {
    /// The hot-path count is the list's entry, for every TRES name and both bases.
    #[test]
    fn billed_count_is_the_lists_entry(cpu in 0u64..512, gpu_typed in 0u64..8, gpu in proptest::option::of(0u64..8), mem in 0u64..1 << 40, alloc_cpus in 0u32..512) {
        let mut j = crate::model::JobRun::new(
            crate::model::JobKey { cluster: crate::model::ClusterName::new("c").unwrap(), job_id_raw: 1, submit: crate::model::UnixTime(0) },
            "1".into(),
        );
        let mut pairs = vec![("mem".to_string(), mem), ("gres/gpu:a100".to_string(), gpu_typed)];
        if cpu > 0 { pairs.push(("cpu".into(), cpu)); }
        if let Some(g) = gpu { pairs.push(("gres/gpu".into(), g)); }
        j.alloc_tres = crate::model::Tres::from_pairs(pairs);
        j.alloc_cpus = alloc_cpus;
        for basis in [super::Basis::Allocated, super::Basis::Requested] {
            let list = super::billed_tres(&j, basis);
            for name in ["cpu", "mem", "gres/gpu", "gres/gpu:a100", "billing", "node"] {
                let want = list.iter().find(|(k, _)| k == name).map_or(0, |(_, n)| *n);
                proptest::prop_assert_eq!(super::billed_count(&j, basis, name), want, "{} {:?}", name, basis);
            }
        }
    }
}
