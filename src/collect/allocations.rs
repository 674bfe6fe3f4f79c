//! Runs' allocation detail, asked of slurmctld for the sinks that report it (cc-backend's
//! hwthreads and accelerators): one `scontrol` call per ask (see `slurm::source`), what it shows
//! stored in the ledger keyed by run. Only slurmctld knows it, and only until MinJobAge after a
//! job's end, so it is asked right after a collect for the runs that started since (the pass),
//! or for the job ids a prolog/epilog hook names (the daemon). A run slurmctld no longer shows
//! is stored without detail and not asked again: the sinks then use what sacct said.

use std::collections::HashSet;

use crate::ledger::{Ledger, ALLOCATION_RECENT_SECS};
use crate::model::{Allocation, ClusterName, JobKey, UnixTime, MAX_SCRIPT};
use crate::slurm::source::{SlurmSource, SlurmVersion};

use super::CollectError;

/// Runs asked for per pass and cluster at most; the rest wait for the next pass.
pub const MAX_ASK: u64 = 5_000;

/// What one ask did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AllocReport {
    /// Runs (pass) or job ids (hook) asked for.
    pub asked: u64,
    /// Runs whose detail was stored.
    pub found: u64,
    /// Runs asked for that slurmctld no longer knew: stored without detail.
    pub gone: u64,
    /// Records scontrol printed that could not be read (the others were stored).
    pub problems: Vec<String>,
}

/// Asks for the allocation detail of `job_ids` of `cluster` (one scontrol call) and stores every
/// run of those ids that slurmctld shows. For the daemon's hook messages: a job whose run the
/// ledger does not hold yet gets its detail all the same, ready for when the run is collected.
pub fn fetch_allocations(
    source: &SlurmSource<'_>,
    version: SlurmVersion,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    job_ids: &[u64],
    scripts: bool,
    now: UnixTime,
) -> Result<AllocReport, CollectError> {
    ask(source, version, ledger, cluster, job_ids, &[], None, scripts, now)
}

/// Asks for the allocation detail of the runs of `cluster` that started since the last ask
/// (changed since the cluster's cursor, started on nodes, ended less than a day ago, never
/// asked), at most [`MAX_ASK`]; nothing to ask: no call.
pub fn fetch_new_allocations(
    source: &SlurmSource<'_>,
    version: SlurmVersion,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    scripts: bool,
    now: UnixTime,
) -> Result<AllocReport, CollectError> {
    let (runs, last) = ledger.allocation_candidates(cluster, UnixTime(now.0 - ALLOCATION_RECENT_SECS), MAX_ASK)?;
    if runs.is_empty() {
        if let Some(seq) = last {
            let mut w = ledger.writer(now)?;
            w.store_allocations(&[], &[], Some((cluster, seq)))?;
            w.commit()?;
        }
        return Ok(AllocReport::default());
    }
    let mut ids: Vec<u64> = runs.iter().map(|k| k.job_id_raw).collect();
    ids.sort_unstable();
    ids.dedup();
    ask(source, version, ledger, cluster, &ids, &runs, last, scripts, now)
}

/// Batch scripts read per ask at most (one `scontrol write batch_script` each).
const MAX_SCRIPTS: usize = 200;

#[allow(clippy::too_many_arguments)]
fn ask(
    source: &SlurmSource<'_>,
    version: SlurmVersion,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    job_ids: &[u64],
    expected: &[JobKey],
    cursor: Option<i64>,
    scripts: bool,
    now: UnixTime,
) -> Result<AllocReport, CollectError> {
    let read = source.allocations(version, cluster, job_ids)?;
    let wanted: HashSet<u64> = job_ids.iter().copied().collect();
    let found: Vec<(JobKey, Allocation)> = read
        .found
        .into_iter()
        .filter(|f| f.key.cluster == *cluster && wanted.contains(&f.key.job_id_raw))
        .map(|f| (f.key, f.allocation))
        .collect();
    let mut found = found;
    if scripts {
        // One scontrol call per job, at most MAX_SCRIPTS an ask; a job without a batch script
        // (srun, salloc) has none.
        for (key, alloc) in found.iter_mut().take(MAX_SCRIPTS) {
            match source.batch_script(cluster, key.job_id_raw) {
                Ok(mut text) => {
                    if text.len() > MAX_SCRIPT {
                        let mut cut = MAX_SCRIPT;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push_str("\n# (cut by slurm-ledger at 1 MiB)\n");
                    }
                    alloc.script = Some(text);
                }
                Err(e) => tracing::debug!(cluster = %cluster, job_id = key.job_id_raw, error = %e, "no batch script"),
            }
        }
    }
    let shown: HashSet<&JobKey> = found.iter().map(|(k, _)| k).collect();
    let gone: Vec<JobKey> = expected.iter().filter(|k| !shown.contains(k)).cloned().collect();
    let mut w = ledger.writer(now)?;
    w.store_allocations(&found, &gone, cursor.map(|seq| (cluster, seq)))?;
    w.commit()?;
    let report = AllocReport {
        asked: if expected.is_empty() { job_ids.len() } else { expected.len() } as u64,
        found: found.len() as u64,
        gone: gone.len() as u64,
        problems: read.problems,
    };
    tracing::debug!(cluster = %cluster, asked = report.asked, found = report.found, gone = report.gone, "allocation detail asked");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::runner::{Recording, ReplayRunner};
    use std::time::Duration;

    const POLL: &[u8] = include_bytes!("../../tests/fixtures/testbed/own-sacct-poll-alloc.txt");
    const ALL: &[u8] = include_bytes!("../../tests/fixtures/testbed/own-scontrol-show-job-d-all.txt");
    const V22: SlurmVersion = SlurmVersion { major: 22, minor: 5, micro: 8 };

    fn cluster() -> ClusterName {
        ClusterName::new("testcluster").unwrap()
    }

    /// The ledger of the recorded poll of 2026-12-05 (own-sacct-poll-alloc.txt).
    fn ledger() -> Ledger {
        use crate::slurm::parsable::{read_all, Item, ReadOptions};
        let mut l = Ledger::open_in_memory().unwrap();
        let opts = ReadOptions {
            delimiter: crate::slurm::source::DELIMITER,
            layout: None,
            tz: crate::slurm::values::TimeZone::Utc,
            default_cluster: cluster(),
        };
        let mut w = l.writer(UnixTime(1)).unwrap();
        for item in read_all(POLL, opts).unwrap() {
            if let Item::Job(j) = item {
                w.upsert_run(&j).unwrap();
            }
        }
        w.commit().unwrap();
        l
    }

    fn key(l: &Ledger, id: u64) -> JobKey {
        l.jobs(&Default::default()).unwrap().into_iter().find(|j| j.key.job_id_raw == id).unwrap().key
    }

    /// The pass's ask: the started runs (1252, 1299, 1302, 1303) in one `scontrol -d show job` of
    /// every job (recorded the same minute), each stored once; a second ask makes no call.
    #[test]
    fn started_runs_are_asked_once_in_one_call() {
        let mut l = ledger();
        let runner = ReplayRunner::new(vec![Recording::ok("scontrol", &["--details", "show", "job"], ALL)]);
        let src = SlurmSource::new(&runner, Duration::from_secs(5));
        let now = UnixTime(1_796_475_700);
        let r = fetch_new_allocations(&src, V22, &mut l, &cluster(), false, now).unwrap();
        assert_eq!((r.asked, r.found, r.gone), (4, 4, 0), "{r:?}");
        let calls = runner.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].args, ["--clusters=testcluster", "--details", "show", "job"], "every job: no id");
        let run = l.job(&key(&l, 1252)).unwrap().unwrap();
        let a = run.allocation.expect("stored and read with the run");
        assert_eq!((a.nodes[0].hwthreads.as_slice(), a.nodes[0].gpus.as_slice()), (&[1, 2, 3, 4][..], &[0, 1][..]));
        assert!(l.job(&key(&l, 1253)).unwrap().unwrap().allocation.is_none(), "pending: not asked");
        let again = fetch_new_allocations(&src, V22, &mut l, &cluster(), false, now).unwrap();
        assert_eq!(again, AllocReport::default());
        assert_eq!(runner.calls().len(), 1, "nothing new: no call");
    }

    /// Candidates: started on nodes, not ended before the bound, never asked; a limit cuts the
    /// list and the cursor stops at the last one returned, else it moves to the ledger's end.
    #[test]
    fn candidates_follow_the_change_sequence() {
        let l = ledger();
        let ids = |keys: &[JobKey]| keys.iter().map(|k| k.job_id_raw).collect::<Vec<_>>();
        let end_of_1299 = 1_796_475_559; // 2026-12-05T12:59:19
        let (all, last) = l.allocation_candidates(&cluster(), UnixTime(end_of_1299), 10).unwrap();
        assert_eq!(ids(&all), [1252, 1299, 1302, 1303]);
        assert_eq!(last, Some(l.change_seq().unwrap()));
        let (recent, _) = l.allocation_candidates(&cluster(), UnixTime(end_of_1299 + 1), 10).unwrap();
        assert_eq!(ids(&recent), [1252, 1302, 1303], "1299 ended before the bound");
        let (one, last) = l.allocation_candidates(&cluster(), UnixTime(0), 1).unwrap();
        assert_eq!(ids(&one), [1252]);
        assert!(last < Some(l.change_seq().unwrap()), "cut by the limit: the cursor stops at 1252");
    }

    /// A run slurmctld no longer knows (asked by id: scontrol fails with `Invalid job id`, as
    /// recorded) is stored without detail, not asked again, and its run keeps sacct's facts.
    #[test]
    fn a_run_slurmctld_forgot_is_stored_without_detail() {
        let mut l = ledger();
        // Only 1302 is left to ask.
        let others: Vec<(JobKey, Allocation)> =
            [1252, 1299, 1303].iter().map(|&id| (key(&l, id), Allocation::default())).collect();
        let mut w = l.writer(UnixTime(2)).unwrap();
        w.store_allocations(&others, &[], None).unwrap();
        w.commit().unwrap();
        let mut failed = Recording::ok("scontrol", &["show", "job", "1302"], Vec::new());
        failed.stderr = "slurm_load_jobs error: Invalid job id specified\n".into();
        failed.exit_code = 1;
        let runner = ReplayRunner::new(vec![failed]);
        let src = SlurmSource::new(&runner, Duration::from_secs(5));
        let r = fetch_new_allocations(&src, V22, &mut l, &cluster(), false, UnixTime(1_796_475_700)).unwrap();
        assert_eq!((r.asked, r.found, r.gone), (1, 0, 1), "{r:?}");
        let k = key(&l, 1302);
        assert!(l.allocation_asked(&k).unwrap() && l.allocation(&k).unwrap().is_none());
        assert_eq!(
            fetch_new_allocations(&src, V22, &mut l, &cluster(), false, UnixTime(1_796_475_700)).unwrap().asked,
            0
        );
        assert_eq!(runner.calls().len(), 1);
    }

    /// The hook's ask: a job id the ledger does not hold yet; its detail waits for its run.
    #[test]
    fn a_hook_job_id_is_asked_by_id() {
        let mut l = Ledger::open_in_memory().unwrap();
        let one = include_bytes!("../../tests/fixtures/testbed/own-scontrol-show-job-d-gpu.txt");
        let runner = ReplayRunner::new(vec![Recording::ok("scontrol", &["show", "job", "1252"], &one[..])]);
        let src = SlurmSource::new(&runner, Duration::from_secs(5));
        let r = fetch_allocations(&src, V22, &mut l, &cluster(), &[1252], false, UnixTime(5)).unwrap();
        assert_eq!((r.asked, r.found), (1, 1));
        let k = JobKey { cluster: cluster(), job_id_raw: 1252, submit: UnixTime(1_796_474_219) };
        assert_eq!(l.allocation(&k).unwrap().unwrap().nodes[0].gpus, [0, 1]);
    }

    /// With `scripts`, each job found gets its batch script (one `scontrol write batch_script`
    /// each; the recording is of another testbed job's script, see its `.cmd`); without, none is
    /// asked.
    #[test]
    fn batch_scripts_are_read_only_when_wanted() {
        let one = include_bytes!("../../tests/fixtures/testbed/own-scontrol-show-job-d-gpu.txt");
        let script = include_str!("../../tests/fixtures/testbed/own-scontrol-write-batch-script.txt");
        let k = JobKey { cluster: cluster(), job_id_raw: 1252, submit: UnixTime(1_796_474_219) };
        for wanted in [false, true] {
            let mut l = Ledger::open_in_memory().unwrap();
            let runner = ReplayRunner::new(vec![
                Recording::ok("scontrol", &["show", "job", "1252"], &one[..]),
                Recording::ok("scontrol", &["write", "batch_script", "1252"], script.as_bytes()),
            ]);
            let src = SlurmSource::new(&runner, Duration::from_secs(5));
            fetch_allocations(&src, V22, &mut l, &cluster(), &[1252], wanted, UnixTime(5)).unwrap();
            let stored = l.allocation(&k).unwrap().unwrap();
            assert_eq!(stored.script.as_deref(), wanted.then_some(script), "wanted: {wanted}");
            assert_eq!(runner.calls().len(), if wanted { 2 } else { 1 });
        }
    }
}
