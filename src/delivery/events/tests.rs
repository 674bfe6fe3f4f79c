//! The event planner over a run's life, polled at any points: each event once, the start before
//! the stop, done after the stop; runs that never start or are skipped get nothing.

use proptest::prelude::*;

use super::*;
use crate::model::{ClusterName, JobState};

fn run(state: JobState, start: Option<i64>, end: Option<i64>) -> JobRun {
    let key = JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 42, submit: UnixTime(100) };
    let mut j = JobRun::new(key, "42".into());
    j.state = state;
    j.start = start.map(UnixTime);
    j.end = end.map(UnixTime);
    j
}

/// Plans the run as the engine does (a done mark is not planned again); returns item ids and the mark.
fn step(p: &dyn Planner, r: &JobRun, mark: &mut RunMark, out: &mut Vec<String>) {
    if mark.done {
        return;
    }
    match p.plan(r, mark, UnixTime(0)) {
        Decision::Nothing => {}
        Decision::Hold(h) => panic!("held: {h}"),
        Decision::Plan { items, next } => {
            out.extend(items.into_iter().map(|i| i.id));
            *mark = next;
        }
    }
}

#[test]
fn a_run_seen_pending_running_then_ended_gets_start_then_stop() {
    let p = EventPlanner::new(AllRuns);
    let (mut mark, mut ids) = (RunMark::default(), Vec::new());
    step(&p, &run(JobState::Pending, None, None), &mut mark, &mut ids);
    assert!(ids.is_empty() && !mark.done);
    step(&p, &run(JobState::Running, Some(200), None), &mut mark, &mut ids);
    step(&p, &run(JobState::Running, Some(200), None), &mut mark, &mut ids);
    assert_eq!(ids, ["start:c:42:100"]);
    assert!(!mark.done);
    step(&p, &run(JobState::Completed, Some(200), Some(260)), &mut mark, &mut ids);
    assert_eq!(ids, ["start:c:42:100", "stop:c:42:100"]);
    assert!(mark.done);
}

#[test]
fn a_run_first_seen_ended_gets_both_in_order_with_spans() {
    let p = EventPlanner::new(AllRuns);
    let Decision::Plan { items, next } =
        p.plan(&run(JobState::Failed, Some(200), Some(230)), &RunMark::default(), UnixTime(0))
    else {
        panic!("nothing planned")
    };
    let got: Vec<_> = items.iter().map(|i| (i.id.as_str(), i.span)).collect();
    assert_eq!(
        got,
        [
            ("start:c:42:100", Some((UnixTime(200), UnixTime(200)))),
            ("stop:c:42:100", Some((UnixTime(200), UnixTime(230))))
        ]
    );
    assert_eq!(next, RunMark { mark: Some(START | STOP), done: true, hold: None });
    assert!(items.iter().all(|i| i.increment.is_none()), "events are once-only");
}

#[test]
fn a_run_cancelled_while_pending_is_done_without_events() {
    let p = EventPlanner::new(AllRuns);
    let d = p.plan(&run(JobState::Cancelled, None, Some(300)), &RunMark::default(), UnixTime(0));
    assert_eq!(d, Decision::Plan { items: vec![], next: RunMark { mark: Some(0), done: true, hold: None } });
}

struct NoHosts;
impl EventFilter for NoHosts {
    fn skip(&self, run: &JobRun) -> Option<String> {
        run.nodelist.is_empty().then(|| "no nodes".to_string())
    }
}

#[test]
fn a_skipped_run_is_done_at_once_and_a_started_one_is_not_skipped_later() {
    let p = EventPlanner::new(NoHosts);
    let d = p.plan(&run(JobState::Running, Some(200), None), &RunMark::default(), UnixTime(0));
    assert_eq!(d, Decision::Plan { items: vec![], next: RunMark { mark: Some(0), done: true, hold: None } });
    // Started (with nodes) earlier: the stop still comes even if the filter would skip it now.
    let mark = RunMark { mark: Some(START), done: false, hold: None };
    let Decision::Plan { items, .. } = p.plan(&run(JobState::Completed, Some(200), Some(250)), &mark, UnixTime(0))
    else {
        panic!("no stop")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(EventKind::of_id(&items[0].id), Some(EventKind::Stop));
}

#[test]
fn an_end_before_the_start_gives_a_stop_span_that_does_not_go_backwards() {
    let p = EventPlanner::new(AllRuns);
    let Decision::Plan { items, .. } =
        p.plan(&run(JobState::NodeFail, Some(200), Some(150)), &RunMark::default(), UnixTime(0))
    else {
        panic!()
    };
    assert_eq!(items[1].span, Some((UnixTime(200), UnixTime(200))));
}

fn state_strategy() -> impl Strategy<Value = JobState> {
    prop::sample::select(vec![JobState::Pending, JobState::Running, JobState::Suspended])
}

proptest! {
    /// Over any sequence of polls through a run's life (each state seen any number of times,
    /// including not at all), the run gets exactly one start (when it started) and one stop
    /// (when it ended), start first.
    #[test]
    fn each_event_once_in_order(
        before in prop::collection::vec(state_strategy(), 0..6),
        repeats in 0usize..4,
        started in any::<bool>(),
        end_state in prop::sample::select(vec![JobState::Completed, JobState::Failed, JobState::Timeout, JobState::Cancelled, JobState::Requeued]),
    ) {
        let p = EventPlanner::new(AllRuns);
        let (mut mark, mut ids) = (RunMark::default(), Vec::new());
        for s in &before {
            let st = if *s == JobState::Pending || !started { None } else { Some(200) };
            let s = if st.is_none() { JobState::Pending } else { s.clone() };
            step(&p, &run(s, st, None), &mut mark, &mut ids);
        }
        for _ in 0..=repeats {
            step(&p, &run(end_state.clone(), started.then_some(200), Some(300)), &mut mark, &mut ids);
        }
        prop_assert!(mark.done);
        let want: Vec<String> = if started { vec!["start:c:42:100".into(), "stop:c:42:100".into()] } else { vec![] };
        prop_assert_eq!(ids, want);
    }
}
