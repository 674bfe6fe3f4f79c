//! A consumer of *totals*, the shape Waldur's month-to-date usage takes, on the public interface:
//! per account, the CPU-seconds of its runs, *set* on the far side (not added). The planner keeps
//! per run how many seconds it counted (its mark) and adds only the new ones to the account's
//! total item. Over random histories, random platform faults and kills (a panic mid-pass, the
//! ledger reopened as after a restart), the far side ends with every account's exact total, and a
//! total that did not change is not sent again.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use crate::kills::{quiet_kills, Dice};
use slurm_ledger::delivery::consumer::{Consumer, Decision, EnginePolicy, Lookup, Outcome, Planner, Sender};
use slurm_ledger::delivery::engine;
use slurm_ledger::ledger::{Delivery, Ledger, NewItem, RunMark};
use slurm_ledger::model::{ClusterName, JobKey, JobRun, JobState, UnixTime};

/// Adds each run's new CPU-seconds to its account's total.
struct CpuSecondsPerAccount;

impl Planner for CpuSecondsPerAccount {
    fn plan(&self, run: &JobRun, mark: &RunMark, _now: UnixTime) -> Decision {
        if mark.done {
            return Decision::Nothing;
        }
        let counted = mark.mark.unwrap_or(0);
        let elapsed = run.elapsed_secs as i64;
        let increment = (elapsed - counted) * i64::from(run.alloc_cpus);
        let item =
            NewItem { increment: Some(increment), ..NewItem::once(format!("total:{}", run.account), None, None, None) };
        Decision::Plan {
            items: vec![item],
            next: RunMark { mark: Some(elapsed), done: run.state.is_final(), hold: None },
        }
    }
    fn reroute(&self, _run: &JobRun, item: &Delivery) -> Result<Option<String>, String> {
        Ok(item.route.clone())
    }
}

struct Far {
    /// key → the value last set.
    values: Mutex<BTreeMap<String, i64>>,
    /// Every set, in order.
    history: Mutex<Vec<(String, i64)>>,
    dice: Dice,
    fault_rate: u64,
}

struct SetSender(Arc<Far>);

impl Sender for SetSender {
    fn send(&self, item: &Delivery, run: Option<&JobRun>) -> Outcome {
        assert!(run.is_none(), "a total belongs to no run");
        let (far, r, f) = (&self.0, self.0.dice.roll(), self.0.fault_rate);
        if r < f {
            panic!("agent killed before the total left");
        }
        if r < 2 * f {
            return Outcome::Retry { reason: "503".into(), after_secs: None };
        }
        far.values.lock().unwrap().insert(item.id.clone(), item.total.unwrap());
        far.history.lock().unwrap().push((item.id.clone(), item.total.unwrap()));
        if r < 3 * f {
            panic!("agent killed after the far side set it");
        }
        if r < 4 * f {
            return Outcome::Unknown { reason: "timeout after sending".into() };
        }
        Outcome::Delivered { remote_id: None }
    }
    /// The far side has this item when it holds this total.
    fn lookup(&self, item: &Delivery, _run: Option<&JobRun>) -> Lookup {
        match self.0.values.lock().unwrap().get(&item.id) {
            Some(v) if Some(*v) == item.total => Lookup::Found { remote_id: None },
            _ => Lookup::NotFound,
        }
    }
    fn describe(&self, item: &Delivery, _run: Option<&JobRun>) -> String {
        format!("{} = {:?}", item.id, item.total)
    }
}

/// One engine pass in a fresh process that may be killed anywhere.
fn pass(path: &std::path::Path, consumer: &Consumer, now: i64) {
    let mut ledger = Ledger::open(path).unwrap();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        engine::plan(&mut ledger, consumer, None, UnixTime(now)).unwrap();
        engine::execute(
            &mut ledger,
            consumer,
            UnixTime(now),
            engine::Budget { max_items: Some(100), ..Default::default() },
            &mut |_, _| {},
        )
        .unwrap();
    }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_account_total_is_exact_and_unchanged_totals_are_not_resent(
        seed in 1u64..u64::MAX,
        fault_rate in 0u64..150,
        runs in prop::collection::vec((0usize..3, 1u32..8, prop::collection::vec(1u64..5000, 1..6)), 1..10),
        agent_up in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        quiet_kills();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let far = Arc::new(Far { values: Mutex::default(), history: Mutex::default(), dice: Dice::new(seed), fault_rate });
        let policy = EnginePolicy { base_backoff_secs: 1, max_backoff_secs: 5 };
        let consumer = Consumer::new("totals", Box::new(CpuSecondsPerAccount), Box::new(SetSender(far.clone())), policy);
        let cluster = ClusterName::new("c").unwrap();
        let mut now = 1_795_300_000i64;
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        let polls = runs.iter().map(|(_, _, g)| g.len()).max().unwrap();
        for poll in 0..=polls {
            now += 60;
            want.clear();
            let mut ledger = Ledger::open(&path).unwrap();
            let mut w = ledger.writer(UnixTime(now)).unwrap();
            for (i, (account, cpus, grows)) in runs.iter().enumerate() {
                let key = JobKey { cluster: cluster.clone(), job_id_raw: i as u64 + 1, submit: UnixTime(1_795_300_000) };
                let mut j = JobRun::new(key, (i + 1).to_string());
                j.account = format!("acct{account}");
                j.alloc_cpus = *cpus;
                j.elapsed_secs = grows.iter().take(poll).sum();
                j.state = if poll < grows.len() { JobState::Running } else { JobState::Completed };
                *want.entry(format!("total:{}", j.account)).or_default() += j.elapsed_secs as i64 * i64::from(*cpus);
                w.upsert_run(&j).unwrap();
            }
            w.commit().unwrap();
            drop(ledger);
            if agent_up[poll % agent_up.len()] {
                pass(&path, &consumer, now);
            }
        }
        for _ in 0..200 {
            now += 30;
            pass(&path, &consumer, now);
            if Ledger::open(&path).unwrap().due_count("totals", UnixTime(now + 600), 0).unwrap() == 0 {
                break;
            }
        }
        prop_assert!(Ledger::open(&path).unwrap().due_count("totals", UnixTime(now + 600), 0).unwrap() == 0, "work left");
        // Accounts whose total is 0 were never worth a request.
        want.retain(|_, v| *v != 0);
        prop_assert_eq!(&*far.values.lock().unwrap(), &want);
        // A total is set again only when it changed (a run that ended without new seconds, a
        // quiet pass: nothing is sent).
        pass(&path, &consumer, now + 3600);
        let mut last: BTreeMap<&String, i64> = BTreeMap::new();
        let history = far.history.lock().unwrap();
        for (key, value) in history.iter() {
            prop_assert!(last.insert(key, *value) != Some(*value), "{} = {} set twice in a row: {:?}", key, value, history);
        }
    }
}
