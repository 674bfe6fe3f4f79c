//! The engine against an in-process platform that fails at random, with crashes (panics) at
//! every dangerous point: what the platform recorded per run equals the run's total, once.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::delivery::consumer::{Lookup, Outcome, Sender};
use crate::delivery::slices::{Metering, Price, Pricing, SlicePlanner};
use crate::meter::period::PeriodKind;
use crate::meter::units::Unit;
use crate::meter::{billed_tres, tres_seconds, Basis};
use crate::model::{ClusterName, JobKey, JobState, Tres};

#[derive(Default)]
struct Platform {
    /// delivery id → (run key text, quantity in micro-units, start, end)
    recorded: Vec<(String, String, u128, i64, i64)>,
}

/// Bills allocated CPUs in hours; a run without a cpu TRES is held.
struct CpuPricing;

impl Pricing for CpuPricing {
    fn price(&self, job: &JobRun) -> Result<Price, String> {
        let cpu = billed_tres(job, Basis::Allocated).into_iter().find(|(k, _)| k == "cpu").map(|(_, n)| n);
        cpu.map(|count| Price { count, unit: Unit::HOURS, route: None }).ok_or_else(|| "no cpu TRES".to_string())
    }
    fn reroute(&self, _job: &JobRun, old: Option<&str>) -> Result<Option<String>, String> {
        Ok(old.map(str::to_string))
    }
}

struct FakeSink {
    platform: Mutex<Platform>,
    rng: Mutex<u64>,
    /// Per-mille chance of each fault.
    fault_rate: u64,
    /// Items per batch the engine hands over (1 to 7, from the seed): a kill may fall anywhere
    /// in a batch whose intents are already recorded.
    batch: usize,
}

#[derive(Debug)]
enum Fault {
    None,
    RefuseBefore,
    CrashBefore,
    AcceptLoseAnswer,
    AcceptThenCrash,
}

impl FakeSink {
    fn new(seed: u64, fault_rate: u64) -> Arc<Self> {
        Arc::new(FakeSink {
            platform: Mutex::default(),
            rng: Mutex::new(seed),
            fault_rate,
            batch: 1 + (seed % 7) as usize,
        })
    }

    fn roll(&self) -> u64 {
        let mut x = *self.rng.lock().unwrap();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *self.rng.lock().unwrap() = x;
        x % 1000
    }

    fn fault(&self) -> Fault {
        let r = self.roll();
        let f = self.fault_rate;
        match r {
            _ if r < f => Fault::RefuseBefore,
            _ if r < 2 * f => Fault::CrashBefore,
            _ if r < 3 * f => Fault::AcceptLoseAnswer,
            _ if r < 4 * f => Fault::AcceptThenCrash,
            _ => Fault::None,
        }
    }

    fn record(&self, d: &Delivery) {
        let micro: u128 = d.amount.as_deref().unwrap().replace('.', "").parse().unwrap();
        let (start, end) = d.span.unwrap();
        self.platform.lock().unwrap().recorded.push((d.id.clone(), d.run_text(), micro, start.0, end.0));
    }
}

/// The test keeps one handle on the platform, the consumer the other.
struct Shared(Arc<FakeSink>);

impl Sender for Shared {
    fn send(&self, d: &Delivery, _run: Option<&JobRun>) -> Outcome {
        let s = &self.0;
        match s.fault() {
            Fault::None => {
                s.record(d);
                Outcome::Delivered { remote_id: Some(format!("r-{}", s.platform.lock().unwrap().recorded.len())) }
            }
            Fault::RefuseBefore => Outcome::Retry { reason: "503".into(), after_secs: Some(5) },
            Fault::CrashBefore => panic!("agent killed before the request left"),
            Fault::AcceptLoseAnswer => {
                s.record(d);
                Outcome::Unknown { reason: "timeout after send".into() }
            }
            Fault::AcceptThenCrash => {
                s.record(d);
                panic!("agent killed after the platform recorded")
            }
        }
    }
    fn lookup(&self, d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        let s = &self.0;
        if s.roll() < s.fault_rate {
            return Lookup::Failed { reason: "502 on look-up".into() };
        }
        match s.platform.lock().unwrap().recorded.iter().find(|r| r.0 == d.id) {
            Some(_) => Lookup::Found { remote_id: None },
            None => Lookup::NotFound,
        }
    }
    fn describe(&self, d: &Delivery, _run: Option<&JobRun>) -> String {
        d.id.clone()
    }
    fn batch_size(&self) -> usize {
        self.0.batch
    }
}

/// The consumer under test: slices of allocated CPUs per UTC day, every new second planned at
/// once, sent to the fake platform.
fn consumer(sink: &Arc<FakeSink>) -> Consumer {
    let policy = EnginePolicy { base_backoff_secs: 5, max_backoff_secs: 60 };
    Consumer::new("fake", Box::new(cpu_day_planner()), Box::new(Shared(sink.clone())), policy)
}

/// Allocated CPUs in hours, per UTC day, every new second planned at once.
fn cpu_day_planner() -> SlicePlanner<CpuPricing> {
    let metering = Metering {
        tres: "cpu".into(),
        basis: Basis::Allocated,
        period: PeriodKind::Day,
        timezone: "UTC".into(),
        running_slice_secs: 0,
    };
    SlicePlanner::new("fake", CpuPricing, &metering).unwrap()
}

fn run(id: u64, start: i64, elapsed: u64, state: JobState, cpus: u64) -> JobRun {
    let mut j = JobRun::new(
        JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: id, submit: UnixTime(start - 1) },
        id.to_string(),
    );
    j.start = Some(UnixTime(start));
    j.elapsed_secs = elapsed;
    j.state = state;
    j.alloc_tres = Tres::from_pairs([("cpu".to_string(), cpus)]);
    j
}

/// Keeps the simulated kills out of the test output; real panics still print.
fn quiet_simulated_kills() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.starts_with("agent killed") {
                default(info);
            }
        }));
    });
}

/// One engine pass where the agent may die anywhere (a panic unwinds: open transactions roll back).
fn pass(ledger: &mut Ledger, consumer: &Consumer, now: UnixTime) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        plan(ledger, consumer, None, now).unwrap();
        execute(ledger, consumer, now, Budget { max_items: Some(1000), ..Default::default() }, &mut |_, _| {}).unwrap();
    }));
}

/// After the histories: passes until nothing is due (bounded; the platform still fails at its
/// rate), then what the platform recorded: no delivery twice, every run's slices summing exactly
/// to its total, none for a run that does not exist, none overlapping within a run.
fn drain_and_check(
    ledger: &mut Ledger,
    sink: &FakeSink,
    consumer: &Consumer,
    mut now: i64,
    totals: &HashMap<String, u128>,
) -> Result<(), TestCaseError> {
    for _ in 0..200 {
        now += 120;
        pass(ledger, consumer, UnixTime(now));
        if ledger.due_count("fake", UnixTime(now + 3600), 0).unwrap() == 0 {
            break;
        }
    }
    prop_assert!(ledger.due_count("fake", UnixTime(now + 3600), 0).unwrap() == 0, "work left after 200 passes");
    let p = sink.platform.lock().unwrap();
    let mut ids: Vec<&String> = p.recorded.iter().map(|r| &r.0).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    prop_assert_eq!(ids.len(), n, "a delivery was recorded twice");
    let mut sums: HashMap<String, u128> = HashMap::new();
    for r in &p.recorded {
        *sums.entry(r.1.clone()).or_default() += r.2;
    }
    for (key, total) in totals {
        prop_assert_eq!(sums.get(key).copied().unwrap_or(0), *total, "run {}", key);
    }
    prop_assert!(sums.keys().all(|k| totals.contains_key(k)), "a slice for a run that does not exist");
    let mut by_run: HashMap<&String, Vec<(i64, i64)>> = HashMap::new();
    for r in &p.recorded {
        by_run.entry(&r.1).or_default().push((r.3, r.4));
    }
    for v in by_run.values_mut() {
        v.sort();
        for w in v.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlap {:?}", w);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_run_is_recorded_exactly_once_in_total(
        seed in 1u64..u64::MAX,
        fault_rate in 0u64..200,
        runs in prop::collection::vec((1u64..64, prop::collection::vec(60u64..20_000, 1..8)), 1..6),
    ) {
        quiet_simulated_kills();
        let sink = FakeSink::new(seed, fault_rate);
        let consumer = consumer(&sink);
        let mut ledger = Ledger::open_in_memory().unwrap();
        let start = 1_795_300_000i64;
        let mut now = start;
        let mut totals: HashMap<String, u128> = HashMap::new();
        // Interleave the runs' polls: each poll upserts what Slurm shows, then the engine runs.
        let max_polls = runs.iter().map(|(_, p)| p.len()).max().unwrap();
        let mut elapsed = vec![0u64; runs.len()];
        for poll in 0..=max_polls {
            now += 600;
            let mut w = ledger.writer(UnixTime(now)).unwrap();
            for (i, (cpus, grows)) in runs.iter().enumerate() {
                let state = if poll < grows.len() { elapsed[i] += grows[poll]; JobState::Running } else { JobState::Completed };
                let j = run(i as u64 + 1, start + i as i64 * 37, elapsed[i], state, *cpus);
                totals.insert(j.key.to_string(), Unit::HOURS.quantize(tres_seconds(*cpus, elapsed[i])));
                w.upsert_run(&j).unwrap();
            }
            w.commit().unwrap();
            pass(&mut ledger, &consumer, UnixTime(now));
        }
        drain_and_check(&mut ledger, &sink, &consumer, now, &totals)?;
    }
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = EnginePolicy::default();
    let a = backoff_secs(&p, "x", 1);
    let b = backoff_secs(&p, "x", 4);
    assert!((30..=45).contains(&a), "{a}");
    assert!((240..=360).contains(&b), "{b}");
    assert!(backoff_secs(&p, "x", 30) <= 5400);
    assert_eq!(backoff_secs(&p, "x", 3), backoff_secs(&p, "x", 3), "deterministic");
}

/// What Slurm does to a job between two polls.
#[derive(Debug, Clone)]
enum Step {
    /// Runs this many more billable seconds.
    Grow(u64),
    /// Suspended for the whole interval: state SUSPENDED, ElapsedRaw does not move.
    Suspend,
    /// Requeued: this run ends as REQUEUED and a new run (new submit, elapsed from 0) starts.
    Requeue,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![6 => (1u64..20_000).prop_map(Step::Grow), 2 => Just(Step::Suspend), 1 => Just(Step::Requeue)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random job histories (growth across many polls and day boundaries, suspensions,
    /// requeues), an agent that is down for random polls and killed at random points, a
    /// platform that fails at random: every run's recorded slices sum exactly to its total, no
    /// slice is recorded twice, and no two slices of a run overlap.
    #[test]
    fn requeues_suspensions_and_downtime_bill_every_run_exactly(
        seed in 1u64..u64::MAX,
        fault_rate in 0u64..200,
        jobs in prop::collection::vec((1u64..64, prop::collection::vec(step(), 1..10)), 1..5),
        agent_up in prop::collection::vec(any::<bool>(), 1..12),
    ) {
        quiet_simulated_kills();
        let sink = FakeSink::new(seed, fault_rate);
        let consumer = consumer(&sink);
        let mut ledger = Ledger::open_in_memory().unwrap();
        let mut now = 1_795_300_000i64;
        // Per job: (start of the current run, its elapsed); per run key: its exact total.
        let mut current: Vec<(i64, u64)> = (0..jobs.len()).map(|i| (now + i as i64 * 37, 0)).collect();
        let mut totals: HashMap<String, u128> = HashMap::new();
        let max_polls = jobs.iter().map(|(_, s)| s.len()).max().unwrap();
        for poll in 0..=max_polls {
            now += 600;
            let mut w = ledger.writer(UnixTime(now)).unwrap();
            for (i, (cpus, steps)) in jobs.iter().enumerate() {
                let id = i as u64 + 1;
                let state = match steps.get(poll) {
                    None => JobState::Completed,
                    Some(Step::Grow(g)) => { current[i].1 += g; JobState::Running }
                    Some(Step::Suspend) => JobState::Suspended,
                    Some(Step::Requeue) => {
                        let (start, elapsed) = current[i];
                        let old = run(id, start, elapsed, JobState::Requeued, *cpus);
                        totals.insert(old.key.to_string(), Unit::HOURS.quantize(tres_seconds(*cpus, elapsed)));
                        w.upsert_run(&old).unwrap();
                        current[i] = (now + i as i64 * 3, 0);
                        JobState::Running
                    }
                };
                let (start, elapsed) = current[i];
                let j = run(id, start, elapsed, state, *cpus);
                totals.insert(j.key.to_string(), Unit::HOURS.quantize(tres_seconds(*cpus, elapsed)));
                w.upsert_run(&j).unwrap();
            }
            w.commit().unwrap();
            if agent_up[poll % agent_up.len()] {
                pass(&mut ledger, &consumer, UnixTime(now));
            }
        }
        drain_and_check(&mut ledger, &sink, &consumer, now, &totals)?;
    }
}

proptest! {
    /// The hand-written id is byte for byte the documented format.
    #[test]
    fn delivery_id_is_the_documented_format(id in any::<u64>(), submit in any::<i64>(), start in any::<i64>(), end in any::<i64>()) {
        let key = JobKey { cluster: ClusterName::new("my-cluster.1").unwrap(), job_id_raw: id, submit: UnixTime(submit) };
        let job = JobRun::new(key, id.to_string());
        prop_assert_eq!(
            crate::delivery::slices::delivery_id("activate", &job, UnixTime(start), UnixTime(end)),
            format!("sl:activate:my-cluster.1:{id}:{submit}:{start}-{end}")
        );
    }
}

/// Answers every send with `answer`, counting the batches it was handed and the look-up calls.
struct Scripted {
    answer: Outcome,
    batches: Mutex<Vec<usize>>,
    lookup_calls: Mutex<usize>,
}

impl Sender for Scripted {
    fn send(&self, _d: &Delivery, _run: Option<&JobRun>) -> Outcome {
        self.answer.clone()
    }
    fn send_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Option<Vec<Outcome>> {
        self.batches.lock().unwrap().push(items.len());
        Some(items.iter().map(|_| self.answer.clone()).collect())
    }
    fn lookup(&self, _d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        Lookup::NotFound
    }
    fn lookup_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Lookup> {
        *self.lookup_calls.lock().unwrap() += 1;
        items.iter().map(|_| Lookup::NotFound).collect()
    }
    fn describe(&self, d: &Delivery, _run: Option<&JobRun>) -> String {
        d.id.clone()
    }
    fn batch_size(&self) -> usize {
        8
    }
}

struct ScriptedRef(Arc<Scripted>);

impl Sender for ScriptedRef {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        self.0.send(d, run)
    }
    fn send_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Option<Vec<Outcome>> {
        self.0.send_batch(items)
    }
    fn lookup(&self, d: &Delivery, run: Option<&JobRun>) -> Lookup {
        self.0.lookup(d, run)
    }
    fn lookup_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Lookup> {
        self.0.lookup_batch(items)
    }
    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        self.0.describe(d, run)
    }
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
}

/// 100 finished runs, one item each, planned for a consumer whose sender answers `answer`.
fn backlog_of_100(answer: Outcome) -> (Ledger, Consumer, Arc<Scripted>) {
    let sender = Arc::new(Scripted { answer, batches: Mutex::default(), lookup_calls: Mutex::default() });
    let consumer = Consumer::new(
        "fake",
        Box::new(cpu_day_planner()),
        Box::new(ScriptedRef(sender.clone())),
        EnginePolicy::default(),
    );
    let mut ledger = Ledger::open_in_memory().unwrap();
    let start = 1_795_300_000i64;
    let mut w = ledger.writer(UnixTime(start + 7200)).unwrap();
    for id in 1..=100 {
        w.upsert_run(&run(id, start, 600, JobState::Completed, 2)).unwrap();
    }
    w.commit().unwrap();
    let p = plan(&mut ledger, &consumer, None, UnixTime(start + 7200)).unwrap();
    assert_eq!(p.deliveries_planned, 100);
    (ledger, consumer, sender)
}

#[test]
fn a_pass_drains_the_whole_backlog_in_batches_with_progress() {
    let (mut ledger, consumer, sender) = backlog_of_100(Outcome::Delivered { remote_id: None });
    let mut seen = Vec::new();
    let r = execute(&mut ledger, &consumer, UnixTime(1_795_310_000), Budget::default(), &mut |d, t| seen.push((d, t)))
        .unwrap();
    assert_eq!((r.delivered, r.left), (100, 0));
    assert_eq!(*sender.batches.lock().unwrap(), [8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 4]);
    // No item had left before: nothing to look up, and the sender is not asked (a JSONL look-up
    // reads its whole file: once per batch, a day's backlog took minutes instead of seconds).
    assert_eq!(*sender.lookup_calls.lock().unwrap(), 0);
    assert_eq!(seen.first(), Some(&(0, 100)));
    assert_eq!(seen.last(), Some(&(100, 100)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    assert_eq!(ledger.due_count("fake", UnixTime(1_795_310_000), 0).unwrap(), 0);
}

#[test]
fn a_pass_stops_at_its_deadline_or_cap_and_says_what_is_left() {
    let (mut ledger, consumer, sender) = backlog_of_100(Outcome::Delivered { remote_id: None });
    let now = UnixTime(1_795_310_000);
    // A deadline already past: one batch goes (a pass always makes progress), the rest waits.
    let past = Budget { deadline: Some(Instant::now()), ..Default::default() };
    let r = execute(&mut ledger, &consumer, now, past, &mut |_, _| {}).unwrap();
    assert_eq!((r.delivered, r.left), (8, 92));
    let capped = Budget { max_items: Some(10), ..Default::default() };
    let r = execute(&mut ledger, &consumer, now, capped, &mut |_, _| {}).unwrap();
    assert_eq!((r.delivered, r.left), (10, 82));
    assert_eq!(*sender.batches.lock().unwrap(), [8, 8, 2]);
}

#[test]
fn a_failing_item_is_tried_once_per_pass_whatever_time_is_left() {
    let (mut ledger, consumer, sender) = backlog_of_100(Outcome::Retry { reason: "503".into(), after_secs: Some(0) });
    let r = execute(&mut ledger, &consumer, UnixTime(1_795_310_000), Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!((r.retry, r.delivered, r.left), (100, 0, 0));
    assert_eq!(sender.batches.lock().unwrap().iter().sum::<usize>(), 100);
}

#[test]
fn sends_are_stamped_with_the_callers_clock_not_the_pass_start() {
    let (mut ledger, consumer, _) = backlog_of_100(Outcome::Unknown { reason: "timeout".into() });
    let now = UnixTime(1_795_310_000);
    // The pass started long ago (a slow collect, other sinks first): the clock says 2 h later.
    let later = || UnixTime(now.0 + 7200);
    let budget = Budget { clock: Some(&later), ..Default::default() };
    let r = execute(&mut ledger, &consumer, now, budget, &mut |_, _| {}).unwrap();
    assert_eq!(r.unknown, 100);
    for d in ledger.deliveries("fake", None).unwrap() {
        assert!(d.next_attempt_at.0 >= now.0 + 7200 + 30, "looked up before its backoff from its own send: {d:?}");
    }
}

/// Answers each item by its run's job id (`script`; otherwise delivered, with the job id as the
/// remote id), up to `concurrency` at once, and records what it saw: the job ids sent (in the
/// order they started), the sends in flight at most, and start/end events per item.
struct ByJob {
    script: HashMap<u64, Outcome>,
    concurrency: usize,
    batch: usize,
    /// Runs with an even job id go in phase 1.
    phased: bool,
    /// Each send takes `delay × (1 + job id % 3)`: answers come back out of order.
    delay: std::time::Duration,
    /// A send waits (at most 250 ms) until this many are in flight: the bound is reached, not
    /// hoped for.
    wait_for: usize,
    sent: Mutex<Vec<u64>>,
    events: Mutex<Vec<(bool, u64)>>,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl ByJob {
    fn new(concurrency: usize, batch: usize) -> Self {
        ByJob {
            script: HashMap::new(),
            concurrency,
            batch,
            phased: false,
            delay: std::time::Duration::ZERO,
            wait_for: 0,
            sent: Mutex::default(),
            events: Mutex::default(),
            in_flight: Default::default(),
            most: Default::default(),
        }
    }
    fn sent(&self) -> Vec<u64> {
        self.sent.lock().unwrap().clone()
    }
}

fn job_of(d: &Delivery) -> u64 {
    d.key.as_ref().expect("a slice has a run").job_id_raw
}

impl Sender for Arc<ByJob> {
    fn send(&self, d: &Delivery, _run: Option<&JobRun>) -> Outcome {
        use std::sync::atomic::Ordering::SeqCst;
        let job = job_of(d);
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        self.sent.lock().unwrap().push(job);
        self.events.lock().unwrap().push((true, job));
        let t = Instant::now();
        while self.most.load(SeqCst) < self.wait_for && t.elapsed() < std::time::Duration::from_millis(250) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(self.delay * (1 + (job % 3) as u32));
        self.events.lock().unwrap().push((false, job));
        self.in_flight.fetch_sub(1, SeqCst);
        self.script.get(&job).cloned().unwrap_or(Outcome::Delivered { remote_id: Some(format!("r{job}")) })
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn phase(&self, d: &Delivery) -> u8 {
        u8::from(self.phased && job_of(d) % 2 == 0)
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn lookup(&self, _d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        Lookup::NotFound
    }
    fn describe(&self, d: &Delivery, _run: Option<&JobRun>) -> String {
        d.id.clone()
    }
}

const T0: i64 = 1_795_310_000;

/// 100 finished runs (job ids 1 to 100, planned in that order), one item each, for a consumer
/// named `name` sending with `sender`.
fn backlog_for(name: &str, sender: &Arc<ByJob>, ledger: &mut Ledger) -> Consumer {
    let consumer = Consumer::new(name, Box::new(cpu_day_planner()), Box::new(sender.clone()), EnginePolicy::default());
    let start = 1_795_300_000i64;
    if ledger.change_seq().unwrap() == 0 {
        let mut w = ledger.writer(UnixTime(start + 7200)).unwrap();
        for id in 1..=100 {
            w.upsert_run(&run(id, start, 600, JobState::Completed, 2)).unwrap();
        }
        w.commit().unwrap();
    }
    assert_eq!(plan(ledger, &consumer, None, UnixTime(start + 7200)).unwrap().deliveries_planned, 100);
    consumer
}

/// Each item of the consumer by its run's job id.
fn items_by_job(ledger: &Ledger, name: &str) -> HashMap<u64, Delivery> {
    ledger.deliveries(name, None).unwrap().into_iter().map(|d| (job_of(&d), d)).collect()
}

#[test]
fn sends_go_out_up_to_the_senders_concurrency_at_once_never_more() {
    for n in [1, 4] {
        let mut s = ByJob::new(n, 32);
        s.wait_for = n;
        s.delay = std::time::Duration::from_millis(1);
        let s = Arc::new(s);
        let mut ledger = Ledger::open_in_memory().unwrap();
        let consumer = backlog_for("fake", &s, &mut ledger);
        let r = execute(&mut ledger, &consumer, UnixTime(T0), Budget::default(), &mut |_, _| {}).unwrap();
        assert_eq!((r.delivered, r.left, r.paused_until), (100, 0, None));
        let most = s.most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, n, "at most {n} in flight, and {n} reached");
        let mut sent = s.sent();
        // Started in outbox order, each once.
        assert!(n > 1 || sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");
        sent.sort_unstable();
        assert_eq!(sent, (1..=100).collect::<Vec<_>>());
    }
}

#[test]
fn concurrent_outcomes_are_recorded_against_their_own_items() {
    let mut s = ByJob::new(4, 32);
    s.delay = std::time::Duration::from_millis(2);
    for job in 1..=100u64 {
        let answer = match job % 4 {
            0 => continue,
            1 => Outcome::Retry { reason: format!("busy {job}"), after_secs: Some(100 + job) },
            2 => Outcome::Unknown { reason: format!("timeout {job}") },
            _ => Outcome::Rejected { reason: format!("refused {job}") },
        };
        s.script.insert(job, answer);
    }
    let s = Arc::new(s);
    let mut ledger = Ledger::open_in_memory().unwrap();
    let consumer = backlog_for("fake", &s, &mut ledger);
    let r = execute(&mut ledger, &consumer, UnixTime(T0), Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!((r.delivered, r.retry, r.unknown, r.rejected, r.left), (25, 25, 25, 25, 0));
    for (job, d) in items_by_job(&ledger, "fake") {
        assert_eq!(d.attempts, 1, "{d:?}");
        let mine = |text: &str| d.last_error.as_deref() == Some(&format!("{text} {job}"));
        match job % 4 {
            0 => assert!(d.state == DeliveryState::Delivered && d.remote_id == Some(format!("r{job}")), "{d:?}"),
            1 => assert!(
                d.state == DeliveryState::Retry && mine("busy") && d.next_attempt_at.0 >= T0 + 100 + job as i64,
                "{d:?}"
            ),
            2 => assert!(d.state == DeliveryState::Sent && mine("timeout"), "{d:?}"),
            _ => assert!(d.state == DeliveryState::Rejected && mine("refused"), "{d:?}"),
        }
    }
}

#[test]
fn a_later_phase_starts_only_after_the_earlier_one_answered() {
    let mut s = ByJob::new(4, 100);
    s.phased = true;
    s.delay = std::time::Duration::from_millis(1);
    let s = Arc::new(s);
    let mut ledger = Ledger::open_in_memory().unwrap();
    let consumer = backlog_for("fake", &s, &mut ledger);
    let r = execute(&mut ledger, &consumer, UnixTime(T0), Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!(r.delivered, 100);
    let events = s.events.lock().unwrap().clone();
    let last_odd_end = events.iter().rposition(|&(start, job)| !start && job % 2 == 1).unwrap();
    let first_even_start = events.iter().position(|&(start, job)| start && job % 2 == 0).unwrap();
    assert!(last_odd_end < first_even_start, "{events:?}");
}

/// A 429 (job 10) at one sender's concurrency and batch size: what was sent, and what the
/// ledger holds afterwards.
fn throttled_pass(concurrency: usize, batch: usize) -> (Arc<ByJob>, Ledger, ExecReport) {
    let mut s = ByJob::new(concurrency, batch);
    s.delay = std::time::Duration::from_millis(3);
    s.script.insert(10, Outcome::Throttled { reason: "429 Too Many Requests".into(), after_secs: Some(600) });
    let s = Arc::new(s);
    let mut ledger = Ledger::open_in_memory().unwrap();
    let consumer = backlog_for("fake", &s, &mut ledger);
    let clock = || UnixTime(T0 + 5);
    let budget = Budget { clock: Some(&clock), ..Default::default() };
    let r = execute(&mut ledger, &consumer, UnixTime(T0), budget, &mut |_, _| {}).unwrap();
    (s, ledger, r)
}

#[test]
fn a_429_pauses_the_sink_for_the_pass_and_what_did_not_leave_stays_pending() {
    let (s, ledger, r) = throttled_pass(1, 8);
    // One after another: 1 to 10 left, the 429 was the last send of the pass.
    assert_eq!(s.sent(), (1..=10).collect::<Vec<_>>());
    assert_eq!((r.delivered, r.retry, r.left), (9, 1, 90));
    assert_eq!(r.paused_until, Some(UnixTime(T0 + 5 + 600)), "the platform's Retry-After, from the answer");
    let items = items_by_job(&ledger, "fake");
    let throttled = &items[&10];
    assert_eq!((throttled.state, throttled.attempts), (DeliveryState::Retry, 1));
    assert!(throttled.next_attempt_at.0 >= T0 + 5 + 600, "{throttled:?}");
    assert!(throttled.last_error.as_deref().is_some_and(|e| e.contains("429")));
    for job in 11..=100 {
        let d = &items[&job];
        // Never left: pending as planned, nothing to look up, due now.
        assert_eq!((d.state, d.attempts, d.last_error.as_deref()), (DeliveryState::Pending, 0, None), "{d:?}");
        assert!(d.next_attempt_at.0 <= T0, "{d:?}");
    }
    assert_eq!(ledger.due_count("fake", UnixTime(T0), 0).unwrap(), 90);
}

#[test]
fn a_429_under_concurrency_lets_only_the_sends_in_flight_finish() {
    let (s, ledger, r) = throttled_pass(4, 32);
    let sent = s.sent();
    let k = sent.len() as u64;
    let mut sorted = sent.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=k).collect::<Vec<_>>(), "started in order: a prefix of the backlog");
    assert!((10..32).contains(&k), "the rest of the batch and the later batches stay: {sent:?}");
    // What started after the 429's answer: each other worker may have been taking its next item
    // as it came (a few microseconds; each send takes 3 ms or more), none after.
    let events = s.events.lock().unwrap().clone();
    let answered = events.iter().position(|&e| e == (false, 10)).unwrap();
    let late = events[answered..].iter().filter(|e| e.0).count();
    assert!(late < 4, "{late} sends started after the 429: {events:?}");
    assert_eq!((r.delivered, r.retry, r.left), (k - 1, 1, 100 - k));
    assert!(r.paused_until.is_some());
    for (job, d) in items_by_job(&ledger, "fake") {
        match job {
            10 => assert_eq!(d.state, DeliveryState::Retry),
            j if j <= k => assert_eq!(d.state, DeliveryState::Delivered, "{d:?}"),
            _ => assert_eq!((d.state, d.attempts), (DeliveryState::Pending, 0), "{d:?}"),
        }
    }
}

#[test]
fn items_put_back_after_a_429_keep_their_state_and_a_sent_one_is_still_looked_up() {
    // Pass 1: job 3 refused (retry), job 5 unknown (sent), the rest delivered.
    let mut s = ByJob::new(1, 100);
    s.script.insert(3, Outcome::Retry { reason: "503".into(), after_secs: None });
    s.script.insert(5, Outcome::Unknown { reason: "timeout".into() });
    let s = Arc::new(s);
    let mut ledger = Ledger::open_in_memory().unwrap();
    let consumer = backlog_for("fake", &s, &mut ledger);
    let r = execute(&mut ledger, &consumer, UnixTime(T0), Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!((r.delivered, r.retry, r.unknown), (98, 1, 1));
    let before = items_by_job(&ledger, "fake");
    // Pass 2, both due: job 3 is throttled, so job 5 (looked up: not found) never leaves.
    let mut s2 = ByJob::new(1, 100);
    s2.script.insert(3, Outcome::Throttled { reason: "429".into(), after_secs: None });
    let s2 = Arc::new(s2);
    let consumer2 = Consumer::new("fake", Box::new(cpu_day_planner()), Box::new(s2.clone()), EnginePolicy::default());
    let later = UnixTime(T0 + 86_400);
    let r = execute(&mut ledger, &consumer2, later, Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!(s2.sent(), [3]);
    assert_eq!((r.retry, r.left), (1, 1));
    let after = items_by_job(&ledger, "fake");
    // Without Retry-After: the sink waits the throttled item's backoff.
    assert_eq!(r.paused_until, Some(after[&3].next_attempt_at));
    assert!(after[&3].next_attempt_at.0 > later.0);
    let (b, a) = (&before[&5], &after[&5]);
    assert_eq!(
        (a.state, a.attempts, a.next_attempt_at, &a.last_error),
        (b.state, b.attempts, b.next_attempt_at, &b.last_error),
        "put back exactly as it was: still `sent`, so still looked up before it is sent"
    );
    assert_eq!(a.state, DeliveryState::Sent);
}

#[test]
fn another_consumer_in_the_same_pass_still_delivers() {
    let (_, mut ledger, r) = throttled_pass(4, 8);
    assert!(r.paused_until.is_some());
    let other = Arc::new(ByJob::new(4, 8));
    let consumer = backlog_for("other", &other, &mut ledger);
    let r = execute(&mut ledger, &consumer, UnixTime(T0), Budget::default(), &mut |_, _| {}).unwrap();
    assert_eq!((r.delivered, r.left, r.paused_until), (100, 0, None));
}
