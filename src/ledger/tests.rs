use super::*;
use crate::model::{JobKey, JobRun, JobState, Tres};

fn run(id: u64, submit: i64, state: JobState) -> JobRun {
    let mut j = JobRun::new(
        JobKey { cluster: ClusterName::new("c1").unwrap(), job_id_raw: id, submit: UnixTime(submit) },
        id.to_string(),
    );
    j.state = state;
    j.alloc_cpus = 4;
    j.alloc_tres = Tres::from_pairs([("cpu".into(), 4), ("mem".into(), 1 << 30)]);
    j
}

#[test]
fn upsert_is_idempotent_and_tracks_changes() {
    let mut l = Ledger::open_in_memory().unwrap();
    let mut w = l.writer(UnixTime(100)).unwrap();
    assert_eq!(w.upsert_run(&run(1, 10, JobState::Running)).unwrap(), Upsert::New);
    assert_eq!(w.upsert_run(&run(1, 10, JobState::Running)).unwrap(), Upsert::Unchanged);
    // A requeued job's second run has another submit time: a second row, not an overwrite.
    assert_eq!(w.upsert_run(&run(1, 20, JobState::Pending)).unwrap(), Upsert::New);
    w.commit().unwrap();
    assert_eq!(l.change_seq().unwrap(), 2);

    let mut w = l.writer(UnixTime(200)).unwrap();
    let mut done = run(1, 10, JobState::Completed);
    done.end = Some(UnixTime(150));
    assert_eq!(w.upsert_run(&done).unwrap(), Upsert::Updated);
    w.commit().unwrap();
    assert_eq!(l.change_seq().unwrap(), 3);

    let all = l.jobs(&JobFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], done, "a run reads back exactly as written");
    let st = l.status(5).unwrap();
    assert_eq!((st.total_runs, st.open_runs), (2, 1));
}

#[test]
fn uncommitted_writes_are_not_kept() {
    let mut l = Ledger::open_in_memory().unwrap();
    {
        let mut w = l.writer(UnixTime(1)).unwrap();
        w.upsert_run(&run(5, 1, JobState::Running)).unwrap();
        w.set_cursor(&ClusterName::new("c1").unwrap(), UnixTime(99)).unwrap();
        // dropped without commit: a crash mid-batch
    }
    assert!(l.jobs(&JobFilter::default()).unwrap().is_empty());
    assert_eq!(l.cursor(&ClusterName::new("c1").unwrap()).unwrap(), None);
}

#[test]
fn cursor_never_moves_back() {
    let mut l = Ledger::open_in_memory().unwrap();
    let c = ClusterName::new("c1").unwrap();
    let mut w = l.writer(UnixTime(1)).unwrap();
    w.set_cursor(&c, UnixTime(500)).unwrap();
    w.set_cursor(&c, UnixTime(400)).unwrap();
    w.commit().unwrap();
    assert_eq!(l.cursor(&c).unwrap(), Some(UnixTime(500)));
}

#[test]
fn quarantine_dedups_by_text() {
    let mut l = Ledger::open_in_memory().unwrap();
    let c = ClusterName::new("c1").unwrap();
    let mut w = l.writer(UnixTime(1)).unwrap();
    assert!(w.quarantine(&c, "sacct", 3, "garbage|row", "truncated row").unwrap());
    assert!(!w.quarantine(&c, "sacct", 7, "garbage|row", "truncated row").unwrap());
    w.commit().unwrap();
    let q = l.quarantined(10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].times_seen, q[0].line), (2, 7));
}

#[test]
fn absurd_values_are_refused_not_wrapped() {
    let mut l = Ledger::open_in_memory().unwrap();
    let mut w = l.writer(UnixTime(1)).unwrap();
    let mut j = run(9, 1, JobState::Completed);
    j.max_rss_bytes = Some(u64::MAX);
    let e = w.upsert_run(&j).unwrap_err();
    assert!(e.to_string().contains("MaxRSS"), "{e}");
}

#[test]
fn file_ledger_survives_reopen_and_refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("l.db");
    {
        let mut l = Ledger::open(&p).unwrap();
        let mut w = l.writer(UnixTime(1)).unwrap();
        w.upsert_run(&run(1, 1, JobState::Running)).unwrap();
        w.commit().unwrap();
    }
    let l = Ledger::open(&p).unwrap();
    assert_eq!(l.jobs(&JobFilter::default()).unwrap().len(), 1);
    l.conn().pragma_update(None, "user_version", 99).unwrap();
    drop(l);
    let e = Ledger::open(&p).err().unwrap();
    assert!(e.to_string().contains("upgrade slurm-ledger"), "{e}");
}
