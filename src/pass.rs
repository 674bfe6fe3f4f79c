//! One pass: collect every cluster (one `sacct` query each), then plan and execute every consumer.
//! What `run`, `demo` and the coming daemon repeat; it returns what happened and prints nothing.
//!
//! A failing cluster does not stop the others, nor the delivery of what the ledger already holds;
//! a failing sink does not stop the other sinks' delivery. Side tasks for the sinks that want more
//! of Slurm (allocation detail before delivery, node states after): `side`.

pub mod side;

use std::time::{Duration, Instant};

use crate::collect::{collect_cluster, CollectReport, Since, WindowPolicy};
use crate::config::{ConfigProblem, SlurmSettings};
use crate::delivery::consumer::Consumer;
use crate::delivery::engine::{self, Budget, ExecReport, PlanReport};
use crate::ledger::Ledger;
use crate::model::{ClusterName, UnixTime};
use crate::sinks::SinkSettings;
use crate::slurm::runner::Runner;
use crate::slurm::source::{SlurmInfo, SlurmSource, SourceError};
use crate::tracker::TrackerSeeds;

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("asking sacct for its version and fields: {0}")]
    Detect(SourceError),
    #[error("finding the local cluster's name: {0}")]
    LocalCluster(SourceError),
    #[error("reading the collect cursors: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// What a pass collects: which clusters, from where.
pub struct CollectPlan<'a> {
    pub runner: &'a dyn Runner,
    pub slurm: &'a SlurmSettings,
    /// Empty: the local cluster, as `scontrol show config` names it.
    pub clusters: Vec<ClusterName>,
    pub since: Since,
}

impl CollectPlan<'_> {
    /// The Slurm source of this plan (its runner, `[slurm] timeout_secs`).
    pub fn source(&self) -> SlurmSource<'_> {
        SlurmSource::new(self.runner, Duration::from_secs(self.slurm.timeout_secs))
    }
}

/// What one cluster's collect did.
#[derive(Debug)]
pub enum ClusterOutcome {
    Collected(Box<CollectReport>),
    Failed { cluster: ClusterName, error: String },
}

impl ClusterOutcome {
    /// Something an admin must look at: a failure, or records quarantined for the first time.
    pub fn needs_a_hand(&self) -> bool {
        match self {
            Self::Collected(r) => {
                self.failed()
                    || r.counts.quarantined_new > 0
                    || r.settled.as_ref().is_some_and(|s| s.counts.quarantined_new > 0)
            }
            Self::Failed { .. } => true,
        }
    }

    /// The collect failed, or asking for open runs by job id did.
    pub fn failed(&self) -> bool {
        match self {
            Self::Collected(r) => r.settled.as_ref().is_some_and(|s| s.error.is_some()),
            Self::Failed { .. } => true,
        }
    }
}

/// What one consumer's plan and execute did.
#[derive(Debug, Clone)]
pub struct SinkOutcome {
    pub sink: String,
    pub plan: PlanReport,
    pub exec: ExecReport,
    /// Why planning or sending stopped; what it did until then is above.
    pub error: Option<SinkFailure>,
}

/// Why a consumer's pass stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkFailure {
    /// Its terms changed after items were planned on the old ones: nothing was planned or sent
    /// until the operator restores them or accepts the change.
    TermsChanged { message: String, now: String },
    /// The ledger (or the engine) failed.
    Other(String),
}

impl std::fmt::Display for SinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TermsChanged { message, .. } | Self::Other(message) => f.write_str(message),
        }
    }
}

impl SinkOutcome {
    /// Nothing got through although there was work: the platform is down or refuses the key.
    pub fn stalled(&self) -> bool {
        let e = &self.exec;
        e.delivered + e.found_already_delivered == 0 && e.retry + e.unknown > 0
    }

    /// Something an admin must look at: a failure, or runs held (a mapping to add).
    pub fn needs_a_hand(&self) -> bool {
        self.failed() || self.plan.runs_held > 0
    }

    /// A delivery was rejected, nothing got through, or the pass stopped with an error.
    pub fn failed(&self) -> bool {
        self.exec.rejected > 0 || self.stalled() || self.error.is_some()
    }

    /// The platform asked the sink to slow down (HTTP 429): send it nothing before this time.
    pub fn paused_until(&self) -> Option<UnixTime> {
        self.exec.paused_until
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    pub clusters: Vec<ClusterOutcome>,
    pub sinks: Vec<SinkOutcome>,
    /// Sinks left out after the collect because the config does not fit the ledger (a TRES no
    /// run carries). Each names its key and the fix.
    pub refused: Vec<ConfigProblem>,
    /// Allocation asks and node-state reports (their failures never stop a delivery).
    pub side: side::SideReport,
}

impl PassReport {
    /// Something an admin must look at (a failure, new quarantine, runs held).
    pub fn needs_a_hand(&self) -> bool {
        self.clusters.iter().any(ClusterOutcome::needs_a_hand)
            || self.sinks.iter().any(SinkOutcome::needs_a_hand)
            || !self.refused.is_empty()
    }

    /// Any cluster or sink failed, or the config was refused for this ledger.
    pub fn failed(&self) -> bool {
        self.clusters.iter().any(ClusterOutcome::failed)
            || self.sinks.iter().any(SinkOutcome::failed)
            || !self.refused.is_empty()
    }
}

/// What is checked against the ledger after the collect, before anything is planned (see
/// [`check_billed_tres`]).
pub type Preflight<'a> = dyn FnMut(&Ledger) -> Result<(), Vec<ConfigProblem>> + 'a;

/// What a pass learns from Slurm before it reads: the version and fields sacct has, and the
/// clusters to collect. The daemon asks once and keeps it (asked again after a failed collect).
#[derive(Debug, Clone)]
pub struct Detected {
    pub info: SlurmInfo,
    pub clusters: Vec<ClusterName>,
}

/// Asks sacct for its version and fields, and `scontrol` for the local cluster's name when the
/// plan names no cluster.
pub fn detect(plan: &CollectPlan<'_>) -> Result<Detected, PassError> {
    let source = plan.source();
    let info = source.detect().map_err(PassError::Detect)?;
    tracing::info!(version = %info.version, fields = info.fields.len(), "Slurm detected");
    let clusters = if plan.clusters.is_empty() {
        vec![source.local_cluster().map_err(PassError::LocalCluster)?]
    } else {
        plan.clusters.clone()
    };
    Ok(Detected { info, clusters })
}

/// Collects each cluster of the plan; a failing cluster does not stop the others.
pub fn collect_all(
    ledger: &mut Ledger,
    plan: &CollectPlan<'_>,
    now: UnixTime,
) -> Result<Vec<ClusterOutcome>, PassError> {
    let detected = detect(plan)?;
    collect_detected(ledger, plan, &detected, now)
}

/// [`collect_all`] with what [`detect`] found.
pub fn collect_detected(
    ledger: &mut Ledger,
    plan: &CollectPlan<'_>,
    detected: &Detected,
    now: UnixTime,
) -> Result<Vec<ClusterOutcome>, PassError> {
    let source = plan.source();
    let info = &detected.info;
    let clusters = detected.clusters.clone();
    // A named cluster slurmdbd does not know would read nothing, exit 0 and leave a cursor for a
    // cluster that does not exist: ask slurmdbd which it knows (when it can be asked), once per
    // pass and only for clusters never collected (one with a cursor was known then).
    let mut new_named = false;
    for c in &plan.clusters {
        new_named |= ledger.cursor(c)?.is_none();
    }
    let known = if !new_named {
        None
    } else {
        match source.list_clusters() {
            Ok(list) => Some(list),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask slurmdbd for its clusters (sacctmgr show cluster); collecting as named");
                None
            }
        }
    };
    let policy = WindowPolicy {
        overlap_secs: plan.slurm.overlap_secs,
        initial_lookback_secs: plan.slurm.initial_lookback_secs,
        max_window_secs: plan.slurm.max_query_range_secs,
    };
    let mut out = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let unknown = known.as_ref().filter(|k| !k.iter().any(|c| c == cluster.as_str()));
        if let Some(known) = unknown.filter(|_| ledger.cursor(&cluster).ok().flatten().is_none()) {
            let error = format!(
                "slurmdbd knows no cluster {:?} (it knows: {}); check --cluster or [slurm] clusters. Nothing was read",
                cluster.as_str(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            );
            tracing::error!(cluster = %cluster, "{error}");
            out.push(ClusterOutcome::Failed { cluster, error });
            continue;
        }
        match collect_cluster(&source, info, ledger, &cluster, plan.since, now, policy) {
            Ok(report) => {
                if let Some(e) = report.settled.as_ref().and_then(|s| s.error.as_ref()) {
                    tracing::error!(cluster = %cluster, error = %e, "asking sacct for open runs by job id failed");
                }
                out.push(ClusterOutcome::Collected(Box::new(report)));
            }
            Err(e) => {
                tracing::error!(cluster = %cluster, error = %e, "collect failed");
                out.push(ClusterOutcome::Failed { cluster, error: e.to_string() });
            }
        }
    }
    Ok(out)
}

/// How long a deliver pass may send, and (optionally) how many items per sink. The time is
/// shared: each sink in turn gets the time left divided by the sinks still to go, so one slow
/// platform cannot starve the others; what a sink leaves goes to the next pass. `clock` is the
/// caller's clock, which sends are stamped with (see [`Budget`]); without one, the pass's `now`.
/// `stop`: once set, no further batch starts (see [`Budget`]).
#[derive(Clone, Copy, Default)]
pub struct PassLimits<'a> {
    pub time: Option<Duration>,
    pub max_items: Option<u64>,
    pub clock: Option<&'a dyn Fn() -> UnixTime>,
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// What a pass reports while it sends: the sink, items handled so far, items due at its start.
pub type Progress<'a> = dyn FnMut(&str, u64, u64) + 'a;

/// Plans and executes each consumer within `limits`; one that fails does not stop the others.
/// slurm-tracker's seeds, if any were imported, are matched to runs as they are planned.
pub fn deliver_all(
    ledger: &mut Ledger,
    consumers: &[Consumer],
    limits: PassLimits<'_>,
    now: UnixTime,
    progress: &mut Progress<'_>,
) -> Vec<SinkOutcome> {
    deliver_each(ledger, consumers.iter().collect(), limits, now, progress)
}

/// The sinks named by config problems (`sinks.NAME.…`).
pub fn refused_sinks(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().filter_map(|p| p.key.strip_prefix("sinks.")?.split('.').next()).collect()
}

fn deliver_each(
    ledger: &mut Ledger,
    consumers: Vec<&Consumer>,
    limits: PassLimits<'_>,
    now: UnixTime,
    progress: &mut Progress<'_>,
) -> Vec<SinkOutcome> {
    let end = limits.time.map(|t| Instant::now() + t);
    let count = consumers.len();
    let mut out = Vec::new();
    for (i, c) in consumers.into_iter().enumerate() {
        let mut o = plan_one(ledger, c, now);
        if o.error.is_none() {
            execute_one(ledger, c, &mut o, budget_of(limits, end, count - i), now, progress);
        }
        out.push(o);
    }
    out
}

/// [`deliver_all`] for the daemon woken by the hook: every consumer is planned first, then they
/// send in the order of the fewest items due, so that a job's start event is not stuck behind
/// another sink's backlog. The outcomes keep the consumers' order.
pub fn deliver_fewest_first(
    ledger: &mut Ledger,
    consumers: &[&Consumer],
    limits: PassLimits<'_>,
    now: UnixTime,
    progress: &mut Progress<'_>,
) -> Vec<SinkOutcome> {
    let end = limits.time.map(|t| Instant::now() + t);
    let mut out: Vec<SinkOutcome> = consumers.iter().map(|c| plan_one(ledger, c, now)).collect();
    let mut order: Vec<(u64, usize)> = Vec::new();
    for (i, c) in consumers.iter().enumerate() {
        if out[i].error.is_none() {
            // A count that fails sends last; its execute reports the error.
            order.push((ledger.due_count(&c.name, now, 0).unwrap_or(u64::MAX), i));
        }
    }
    order.sort();
    let count = order.len();
    for (k, (_, i)) in order.into_iter().enumerate() {
        execute_one(ledger, consumers[i], &mut out[i], budget_of(limits, end, count - k), now, progress);
    }
    out
}

/// The budget of a sink when `left` sinks (this one included) share the time up to `end`.
fn budget_of<'a>(limits: PassLimits<'a>, end: Option<Instant>, left: usize) -> Budget<'a> {
    let start = Instant::now();
    let deadline = end.map(|end| start + end.saturating_duration_since(start) / left.max(1) as u32);
    Budget { deadline, max_items: limits.max_items, clock: limits.clock, stop: limits.stop }
}

/// Plans one consumer; a failure is kept in the outcome.
fn plan_one(ledger: &mut Ledger, c: &Consumer, now: UnixTime) -> SinkOutcome {
    let mut o =
        SinkOutcome { sink: c.name.clone(), plan: PlanReport::default(), exec: ExecReport::default(), error: None };
    match engine::plan(ledger, c, Some(&TrackerSeeds), now) {
        Ok(p) => o.plan = p,
        Err(e) => o.error = Some(failure(c, e)),
    }
    o
}

/// Sends one planned consumer's due items within `budget`; a failure is kept in the outcome.
fn execute_one(
    ledger: &mut Ledger,
    c: &Consumer,
    o: &mut SinkOutcome,
    budget: Budget<'_>,
    now: UnixTime,
    progress: &mut Progress<'_>,
) {
    match engine::execute(ledger, c, now, budget, &mut |done, total| progress(&c.name, done, total)) {
        Ok(e) => o.exec = e,
        Err(e) => o.error = Some(failure(c, e)),
    }
}

fn failure(c: &Consumer, e: engine::EngineError) -> SinkFailure {
    tracing::error!(sink = %c.name, error = %e, "delivery stopped");
    match &e {
        engine::EngineError::TermsChanged { now, .. } => {
            SinkFailure::TermsChanged { message: e.to_string(), now: now.clone() }
        }
        _ => SinkFailure::Other(e.to_string()),
    }
}

/// Checks, before anything is planned, that each sink bills a TRES that exists: one some run in
/// the ledger carries (or `cpu`, which every run has), or else one Slurm lists (`slurm_tres`,
/// asked only then; `None` when Slurm cannot be asked). A mistyped TRES (`gpu` for `gres/gpu`)
/// would otherwise plan every run as zero usage and lose it for good. A ledger without runs has
/// nothing to bill yet and is not judged, nor is a sink that already planned on these terms (it
/// was checked then). `only`: the sinks a command uses (empty: all).
pub fn check_billed_tres(
    ledger: &Ledger,
    sinks: &SinkSettings,
    only: &[String],
    slurm_tres: &mut dyn FnMut() -> Option<Vec<String>>,
) -> Result<(), Vec<ConfigProblem>> {
    check_tres_of(ledger, sinks, only, slurm_tres, true)
}

/// [`check_billed_tres`] without skipping sinks that already planned on these terms (for
/// `accept-terms`, which stores new terms).
pub fn check_billed_tres_unstored(
    ledger: &Ledger,
    sinks: &SinkSettings,
    only: &[String],
    slurm_tres: &mut dyn FnMut() -> Option<Vec<String>>,
) -> Result<(), Vec<ConfigProblem>> {
    check_tres_of(ledger, sinks, only, slurm_tres, false)
}

fn check_tres_of(
    ledger: &Ledger,
    sinks: &SinkSettings,
    only: &[String],
    slurm_tres: &mut dyn FnMut() -> Option<Vec<String>>,
    skip_stored: bool,
) -> Result<(), Vec<ConfigProblem>> {
    let err = |e: crate::ledger::LedgerError| vec![ConfigProblem { key: "ledger".into(), message: e.to_string() }];
    if ledger.change_seq().map_err(err)? == 0 {
        return Ok(());
    }
    let mut slurm: Option<Option<Vec<String>>> = None;
    let mut problems = Vec::new();
    for (sink, m) in sinks.billed() {
        if !(only.is_empty() || only.iter().any(|o| o == sink)) || m.tres == "cpu" {
            continue;
        }
        // Already planned on these very terms: checked then (no scan, no Slurm call per pass).
        if skip_stored && ledger.consumer_terms(sink).map_err(err)?.is_some_and(|t| t == m.terms) {
            continue;
        }
        let requested = m.basis == crate::meter::Basis::Requested;
        if ledger.runs_carry_tres(&m.tres, requested).map_err(err)? {
            continue;
        }
        let listed = slurm.get_or_insert_with(&mut *slurm_tres);
        if listed.as_ref().is_some_and(|l| l.contains(&m.tres)) {
            continue;
        }
        let mut known = ledger.recent_tres_names(10_000).map_err(err)?;
        known.extend(listed.iter().flatten().cloned());
        known.sort();
        known.dedup();
        let slurm_says = match listed {
            Some(_) => "and Slurm does not list it (sacctmgr show tres)",
            None => "and Slurm was not or could not be asked (sacctmgr show tres)",
        };
        problems.push(ConfigProblem {
            key: m.key.clone(),
            message: format!(
                "{:?} is carried by no run in the ledger {slurm_says}: billing it would bill nothing. Known TRES: {}; \
                 e.g. \"gres/gpu\" for GPU-hours, \"mem\" for memory GiB-hours. Nothing is planned until it is fixed",
                m.tres,
                known.join(", ")
            ),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One pass: collect every cluster, check the config against the ledger (`preflight`), then
/// deliver to every consumer (even when a cluster failed: what the ledger holds is still owed).
pub fn run(
    ledger: &mut Ledger,
    collect: &CollectPlan<'_>,
    consumers: &[Consumer],
    limits: PassLimits<'_>,
    now: UnixTime,
    preflight: &mut Preflight<'_>,
    progress: &mut Progress<'_>,
) -> Result<PassReport, PassError> {
    let detected = detect(collect)?;
    let clusters = collect_detected(ledger, collect, &detected, now)?;
    let allocations = side::ask_allocations(ledger, collect, &clusters, consumers, now);
    let reconciled = side::reconcile(ledger, collect, &detected, &clusters, consumers, now);
    let all: Vec<&Consumer> = consumers.iter().collect();
    let (sinks, refused) = deliver_checked(ledger, &all, limits, now, preflight, progress);
    let skip = refused_sinks(&refused);
    let consumers: Vec<&Consumer> = consumers.iter().filter(|c| !skip.contains(&c.name.as_str())).collect();
    let node_states = side::report_node_states(collect, &clusters, &consumers);
    Ok(PassReport { clusters, sinks, refused, side: side::SideReport { allocations, node_states, reconciled } })
}

/// The delivery half of [`run`]: checks the config against the ledger (`preflight`), then
/// delivers to every consumer it fits. A sink the config does not fit is left out (its problems
/// are returned); the others deliver what they owe.
pub fn deliver_checked(
    ledger: &mut Ledger,
    consumers: &[&Consumer],
    limits: PassLimits<'_>,
    now: UnixTime,
    preflight: &mut Preflight<'_>,
    progress: &mut Progress<'_>,
) -> (Vec<SinkOutcome>, Vec<ConfigProblem>) {
    let refused = preflight(ledger).err().unwrap_or_default();
    let skip = refused_sinks(&refused);
    let consumers = consumers.iter().copied().filter(|c| !skip.contains(&c.name.as_str())).collect();
    (deliver_each(ledger, consumers, limits, now, progress), refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::model::{ClusterName, JobKey, JobRun, Tres};

    fn sinks(tres: &str) -> SinkSettings {
        Settings::from_toml(&format!("[sinks.jsonl]\ntres = \"{tres}\"\n"), "t").unwrap().sinks
    }

    #[test]
    fn a_tres_no_run_carries_is_refused_unless_slurm_lists_it() {
        let mut ledger = Ledger::open_in_memory().unwrap();
        // An empty ledger has nothing to bill: not judged.
        assert!(check_billed_tres(&ledger, &sinks("gpu"), &[], &mut || None).is_ok());
        let mut w = ledger.writer(UnixTime(100)).unwrap();
        let mut j = JobRun::new(
            JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 1, submit: UnixTime(1) },
            "1".into(),
        );
        j.alloc_tres =
            Tres::from_pairs([("cpu".to_string(), 2), ("gres/gpu:a100".to_string(), 1), ("mem".to_string(), 1 << 30)]);
        w.upsert_run(&j).unwrap();
        w.commit().unwrap();
        for ok in ["cpu", "mem", "gres/gpu", "gres/gpu:a100"] {
            assert!(
                check_billed_tres(&ledger, &sinks(ok), &[], &mut || panic!("Slurm asked for {ok}")).is_ok(),
                "{ok}"
            );
        }
        let listed = || Some(crate::slurm::source::parse_tres_list("Type|Name|ID\ncpu||1\nbilling||5\nenergy||3\n"));
        assert!(check_billed_tres(&ledger, &sinks("billing"), &[], &mut { listed }).is_ok(), "listed by Slurm");
        for bad in ["gpu", "cpuz", "billing"] {
            let e = check_billed_tres(&ledger, &sinks(bad), &[], &mut || None).unwrap_err();
            assert_eq!(e[0].key, "sinks.jsonl.tres");
            assert!(
                e[0].message.contains(&format!("{bad:?}")) && e[0].message.contains("gres/gpu"),
                "{}",
                e[0].message
            );
        }
        assert!(
            check_billed_tres(&ledger, &sinks("gpu"), &["activate".into()], &mut || None).is_ok(),
            "not this command's sink"
        );
    }

    /// A named cluster slurmdbd does not know (`sacctmgr show cluster -P`, recorded on the
    /// testbed) fails by name, reads nothing and leaves no cursor; the known one is collected.
    #[test]
    fn an_unknown_cluster_is_named_and_gets_no_cursor() {
        use crate::demo::{RECORDED_AT, SACCT_HELPFORMAT, SACCT_POLL, SLURM_VERSION};
        use crate::slurm::runner::{Recording, ReplayRunner};
        use std::sync::Arc;
        let runner = ReplayRunner::new(vec![
            Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
            Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
            Recording::ok(
                "sacctmgr",
                &["show", "cluster"],
                Arc::<[u8]>::from(&include_bytes!("../tests/fixtures/testbed/sacctmgr-cluster.txt")[..]),
            ),
            Recording::ok("sacct", &["--parsable2"], Arc::<[u8]>::from(SACCT_POLL)),
        ]);
        let slurm = Settings::validate(crate::config::RawConfig::default()).unwrap().slurm;
        let plan = CollectPlan {
            runner: &runner,
            slurm: &slurm,
            clusters: vec![ClusterName::new("nosuch").unwrap(), ClusterName::new("testcluster").unwrap()],
            since: crate::collect::Since::Cursor,
        };
        let mut ledger = Ledger::open_in_memory().unwrap();
        let out = collect_all(&mut ledger, &plan, RECORDED_AT).unwrap();
        match &out[0] {
            ClusterOutcome::Failed { cluster, error } => {
                assert_eq!(cluster.as_str(), "nosuch");
                assert!(error.contains("\"nosuch\"") && error.contains("it knows: testcluster"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[1], ClusterOutcome::Collected(r) if r.counts.runs_seen == 28), "{:?}", out[1]);
        assert_eq!(ledger.cursor(&ClusterName::new("nosuch").unwrap()).unwrap(), None);
        let polls = runner.calls().iter().filter(|c| c.display().contains("--parsable2")).count();
        assert_eq!(polls, 1, "the unknown cluster was not polled");
    }

    #[test]
    fn sacctmgr_tres_list_as_recorded() {
        let text = include_str!("../tests/fixtures/testbed/sacctmgr-tres.txt");
        assert_eq!(
            crate::slurm::source::parse_tres_list(text),
            ["cpu", "mem", "energy", "node", "billing", "fs/disk", "vmem", "pages", "gres/gpu", "gres/gpu:fake"]
        );
    }
}
