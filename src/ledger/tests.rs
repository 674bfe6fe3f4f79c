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

fn total(id: &str, increment: i64) -> NewItem {
    NewItem { increment: Some(increment), ..NewItem::once(id.into(), None, None, None) }
}

/// A raised total is due again when it was delivered; a retry keeps its backoff, a sent one its
/// look-up, a rejected one waits for `retry`; a 0 increment changes nothing.
#[test]
fn raising_a_total_respects_its_state() {
    let mut l = Ledger::open_in_memory().unwrap();
    let mut w = l.writer(UnixTime(100)).unwrap();
    let c = w.consumer("totals").unwrap();
    for id in ["delivered", "retry", "sent", "rejected"] {
        assert!(w.insert_item(c, None, &total(id, 5)).unwrap());
    }
    assert!(!w.insert_item(c, None, &total("never", 0)).unwrap(), "a 0 first increment creates nothing");
    for (id, to) in [
        ("delivered", DeliveryState::Delivered),
        ("retry", DeliveryState::Retry),
        ("sent", DeliveryState::Sent),
        ("rejected", DeliveryState::Rejected),
    ] {
        assert!(w
            .mark_delivery_from("totals", id, (DeliveryState::Pending, 0), to, 1, UnixTime(5000), None, None)
            .unwrap());
    }
    w.commit().unwrap();
    let mut w = l.writer(UnixTime(200)).unwrap();
    for id in ["delivered", "retry", "sent", "rejected"] {
        assert!(!w.insert_item(c, None, &total(id, 0)).unwrap(), "{id}: a 0 increment changes nothing");
        assert!(w.insert_item(c, None, &total(id, 2)).unwrap(), "{id}");
    }
    w.commit().unwrap();
    let by_id: std::collections::BTreeMap<String, Delivery> =
        l.deliveries("totals", None).unwrap().into_iter().map(|d| (d.id.clone(), d)).collect();
    assert_eq!(by_id.len(), 4);
    let state = |id: &str| (by_id[id].state, by_id[id].total, by_id[id].next_attempt_at.0, by_id[id].attempts);
    assert_eq!(state("delivered"), (DeliveryState::Pending, Some(7), 200, 1), "due again at once");
    assert_eq!(state("retry"), (DeliveryState::Retry, Some(7), 5000, 1), "its backoff kept");
    assert_eq!(state("sent"), (DeliveryState::Sent, Some(7), 5000, 1), "looked up when due");
    assert_eq!(state("rejected"), (DeliveryState::Rejected, Some(7), 5000, 1), "until `retry`");
    // `status` shows what the platform holds (the total when last delivered) beside the ledger's.
    let st = l.sink_status(10).unwrap();
    let owed: std::collections::BTreeMap<&str, (i64, Option<i64>)> =
        st[0].totals_owed.iter().map(|t| (t.id.as_str(), (t.total, t.delivered_total))).collect();
    assert_eq!(owed["delivered"], (7, Some(5)), "delivered at 5, raised to 7");
    assert_eq!(owed["retry"], (7, None), "never delivered");
    assert_eq!(owed.len(), 4);
}

/// The plan writes go out in multi-row statements: over several full statements and a partial
/// one, a run's later mark wins over its earlier one in the same statement, every item is
/// stored once, and writes not finished are refused at commit.
#[test]
fn plan_writes_are_batched_in_order_and_must_be_finished() {
    let mut l = Ledger::open_in_memory().unwrap();
    let mut w = l.writer(UnixTime(100)).unwrap();
    let c = w.consumer("c").unwrap();
    let mut st = w.plan_statements(c).unwrap();
    let keys: Vec<JobKey> = (0..150u64).map(|i| run(i + 1, 1000, JobState::Running).key).collect();
    for (i, k) in keys.iter().enumerate() {
        st.put_mark(k, &RunMark { mark: Some(1), done: false, hold: Some("first".into()) }).unwrap();
        st.insert_item(k, NewItem::once(format!("item-{i}"), None, Some("1.0".into()), None)).unwrap();
        st.insert_item(k, NewItem::once(format!("item-{i}"), None, Some("2.0".into()), None)).unwrap();
        st.put_mark(k, &RunMark { mark: Some(i as i64), done: i % 2 == 0, hold: None }).unwrap();
    }
    assert_eq!(st.finish().unwrap(), 150, "each id stored once, the second plan of it ignored");
    w.commit().unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(l.run_mark("c", k).unwrap(), RunMark { mark: Some(i as i64), done: i % 2 == 0, hold: None });
    }
    let items = l.deliveries("c", None).unwrap();
    assert_eq!(items.len(), 150);
    assert!(items.iter().all(|d| d.amount.as_deref() == Some("1.0")), "the first plan of an id stands");

    let w = l.writer(UnixTime(200)).unwrap();
    let mut st = w.plan_statements(c).unwrap();
    st.put_mark(&keys[0], &RunMark::default()).unwrap();
    drop(st);
    assert!(matches!(w.commit(), Err(LedgerError::UnfinishedPlan)), "a plan not finished must not commit");
    assert_eq!(l.run_mark("c", &keys[0]).unwrap().mark, Some(0), "nothing of it was kept");
}
