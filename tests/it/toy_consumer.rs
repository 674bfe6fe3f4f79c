//! A consumer that is not a slice sink, written against the public consumer interface alone: it
//! records each finished run's key once (what an archive of finished runs or a "job ended" event
//! needs). Over random run histories, a platform that fails at random and an agent killed at
//! random points (a panic unwinds mid-pass; the ledger file is reopened as after a restart),
//! every finished run is recorded exactly once and no other run is.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use crate::kills::{quiet_kills, Dice};
use slurm_ledger::delivery::consumer::{Consumer, Decision, EnginePolicy, Lookup, Outcome, Planner, Sender};
use slurm_ledger::delivery::engine;
use slurm_ledger::ledger::{Delivery, Ledger, NewItem, RunMark};
use slurm_ledger::model::{ClusterName, JobKey, JobRun, JobState, UnixTime};

/// Plans one item per run, once it is final; the mark then says done.
struct FinishedRuns;

impl Planner for FinishedRuns {
    fn plan(&self, run: &JobRun, mark: &RunMark, _now: UnixTime) -> Decision {
        if mark.done || !run.state.is_final() {
            return Decision::Nothing;
        }
        let id = format!("fin:{}", run.key);
        Decision::Plan {
            items: vec![NewItem::once(id, None, None, None)],
            next: RunMark { done: true, ..RunMark::default() },
        }
    }
    fn reroute(&self, _run: &JobRun, item: &Delivery) -> Result<Option<String>, String> {
        Ok(item.route.clone())
    }
}

/// The far side: what it recorded, and a die for faults (per mille) and kills.
struct Far {
    recorded: Mutex<Vec<String>>,
    dice: Dice,
    fault_rate: u64,
}

struct ToSender(Arc<Far>);

impl Sender for ToSender {
    fn send(&self, item: &Delivery, _run: Option<&JobRun>) -> Outcome {
        let (far, r, f) = (&self.0, self.0.dice.roll(), self.0.fault_rate);
        if r < f {
            panic!("agent killed before the item left");
        }
        if r < 2 * f {
            return Outcome::Retry { reason: "503".into(), after_secs: None };
        }
        far.recorded.lock().unwrap().push(item.id.clone());
        if r < 3 * f {
            panic!("agent killed after the far side recorded");
        }
        if r < 4 * f {
            return Outcome::Unknown { reason: "timeout after sending".into() };
        }
        Outcome::Delivered { remote_id: None }
    }
    fn lookup(&self, item: &Delivery, _run: Option<&JobRun>) -> Lookup {
        if self.0.dice.roll() < self.0.fault_rate {
            return Lookup::Failed { reason: "look-up failed".into() };
        }
        match self.0.recorded.lock().unwrap().contains(&item.id) {
            true => Lookup::Found { remote_id: None },
            false => Lookup::NotFound,
        }
    }
    fn describe(&self, item: &Delivery, _run: Option<&JobRun>) -> String {
        item.id.clone()
    }
}

/// Pending, then running for a while, then one of the final states (or still running).
fn history() -> impl Strategy<Value = (usize, usize, Option<JobState>)> {
    let end = prop_oneof![
        Just(Some(JobState::Completed)),
        Just(Some(JobState::Failed)),
        Just(Some(JobState::OutOfMemory)),
        Just(Some(JobState::Requeued)),
        Just(Some(JobState::Cancelled)),
        Just(None),
    ];
    (0usize..4, 0usize..6, end)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn each_finished_run_is_recorded_once_under_kills(
        seed in 1u64..u64::MAX,
        fault_rate in 0u64..150,
        runs in prop::collection::vec(history(), 1..12),
        agent_up in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        quiet_kills();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let far = Arc::new(Far { recorded: Mutex::default(), dice: Dice::new(seed), fault_rate });
        let consumer = Consumer::new(
            "finished",
            Box::new(FinishedRuns),
            Box::new(ToSender(far.clone())),
            EnginePolicy { base_backoff_secs: 1, max_backoff_secs: 5 },
        );
        let cluster = ClusterName::new("c").unwrap();
        let mut now = 1_795_300_000i64;
        let mut finished = BTreeSet::new();
        let polls = runs.iter().map(|(p, r, _)| p + r + 1).max().unwrap();
        for poll in 0..=polls {
            now += 60;
            let mut ledger = Ledger::open(&path).unwrap();
            let mut w = ledger.writer(UnixTime(now)).unwrap();
            for (i, (pending, running, end)) in runs.iter().enumerate() {
                let key = JobKey { cluster: cluster.clone(), job_id_raw: i as u64 + 1, submit: UnixTime(1_795_300_000 + i as i64) };
                let mut j = JobRun::new(key, (i + 1).to_string());
                j.state = match poll {
                    p if p < *pending => JobState::Pending,
                    p if p < pending + running => JobState::Running,
                    _ => end.clone().unwrap_or(JobState::Running),
                };
                if j.state.is_final() {
                    finished.insert(format!("fin:{}", j.key));
                }
                w.upsert_run(&j).unwrap();
            }
            w.commit().unwrap();
            if agent_up[poll % agent_up.len()] {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    engine::plan(&mut ledger, &consumer, None, UnixTime(now)).unwrap();
                    engine::execute(&mut ledger, &consumer, UnixTime(now), engine::Budget { max_items: Some(100), ..Default::default() }, &mut |_, _| {}).unwrap();
                }));
            }
            // The process ends here (killed or not); the next poll starts a new one.
        }
        for _ in 0..200 {
            now += 30;
            let mut ledger = Ledger::open(&path).unwrap();
            let _ = catch_unwind(AssertUnwindSafe(|| {
                engine::plan(&mut ledger, &consumer, None, UnixTime(now)).unwrap();
                engine::execute(&mut ledger, &consumer, UnixTime(now), engine::Budget { max_items: Some(100), ..Default::default() }, &mut |_, _| {}).unwrap();
            }));
            if ledger.due_count("finished", UnixTime(now + 600), 0).unwrap() == 0 {
                break;
            }
        }
        let ledger = Ledger::open(&path).unwrap();
        prop_assert!(ledger.due_count("finished", UnixTime(now + 600), 0).unwrap() == 0, "work left");
        let recorded = far.recorded.lock().unwrap().clone();
        let mut counts: BTreeMap<&String, u32> = BTreeMap::new();
        for id in &recorded {
            *counts.entry(id).or_default() += 1;
        }
        prop_assert!(counts.values().all(|n| *n == 1), "recorded twice: {:?}", recorded);
        let got: BTreeSet<String> = recorded.iter().cloned().collect();
        prop_assert_eq!(got, finished);
    }
}
