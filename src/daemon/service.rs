//! The daemon's loop: a full pass every interval (one `sacct` poll per cluster, then every sink),
//! and between passes a quick look at the jobs the prolog/epilog hook names.
//!
//! Invariants:
//! - One sender at a time: each pass takes the ledger's sender lock and lets it go after, so a
//!   cron `run`, `retry` or `migrate` can work between passes and never sends at once with it.
//! - The cursor moves only as a collect reads (see `collect`): a failed collect leaves it, and the
//!   next poll is backed off (doubling from the interval up to [`MAX_BACKOFF`]) while what the
//!   ledger already holds is still delivered. Slurm's version is asked again after a failure.
//! - A hook message only brings a job's look forward: the job is asked for by id after
//!   `hook_delay` (`sacct --jobs`, then slurmctld's live view, `scontrol show job`, for what
//!   slurmdbd has not heard of yet), and again (doubling) while neither shows the change, at most
//!   [`HOOK_TRIES`] times; the polls see it anyway. At most [`MAX_WAITING`] jobs wait; more are
//!   left to the next poll.
//! - A hook message during a full pass's sending ends that pass after its current batch, so that
//!   a backlog never holds a job's start event back; the backlog goes on in the next pass.
//! - Stopping (SIGTERM, SIGINT) ends the pass after the batch under way, whose outcomes are
//!   recorded; an item whose answer was lost is looked up before it is sent again, as after a
//!   crash.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::collect::{self, allocations::fetch_allocations};
use crate::config::ConfigProblem;
use crate::delivery::consumer::Consumer;
use crate::ledger::{lock, JobFilter, Ledger};
use crate::model::{ClusterName, UnixTime};
use crate::pass::{self, side, ClusterOutcome, CollectPlan, Detected, PassLimits, Preflight, SinkOutcome};

use super::hook::{HookContext, HookMessage};
use super::metrics::Metrics;
use super::settings::DaemonSettings;

/// The longest wait between polls while collects fail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Looks at a job named by a hook message before it is left to the polls.
pub const HOOK_TRIES: u32 = 6;
/// Jobs waiting for their look at most.
pub const MAX_WAITING: usize = 10_000;
/// Longest a hook pass sends (the rest goes on in the next pass).
pub const HOOK_PASS_TIME: Duration = Duration::from_secs(30);
/// Jobs asked of slurmctld's live view (`scontrol show job`, one call each) per hook pass at most.
pub const LIVE_LOOKS: usize = 50;
/// How often the loop wakes to check the stop flag while it waits.
const TICK: Duration = Duration::from_millis(200);

/// Why the daemon stopped other than by being told to.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the ledger failed: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("locking {path}: {source}")]
    Lock { path: String, source: std::io::Error },
}

/// What the daemon works with, built by `slurm-ledger daemon` from the config.
pub struct Daemon<'a> {
    pub ledger: Ledger,
    /// The ledger's file, beside which the sender lock is taken each pass.
    pub ledger_path: PathBuf,
    pub collect: CollectPlan<'a>,
    pub consumers: Vec<Consumer>,
    pub preflight: Box<Preflight<'a>>,
    pub settings: DaemonSettings,
    /// Longest a full pass sends (`[delivery] pass_time`), and the cap on items per sink.
    pub pass_time: Duration,
    pub max_items: Option<u64>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub clock: &'a dyn Fn() -> UnixTime,
    /// Sinks paused by a 429; empty at start.
    pub paused: Paused,
}

/// Sinks paused by their platform (a 429 with `Retry-After`), until when.
#[derive(Debug, Default)]
pub struct Paused(BTreeMap<String, UnixTime>);

impl Paused {
    fn pause(&mut self, sink: &str, until: UnixTime) {
        self.0.insert(sink.to_string(), until);
    }

    /// Whether `sink` is paused at `now` .
    fn paused(&self, sink: &str, now: UnixTime) -> bool {
        self.0.get(sink).is_some_and(|until| *until > now)
    }
}

/// What the loop is told from outside: stop (a signal), or cut a long pass short (a hook message
/// arrived, or stop).
#[derive(Debug, Default)]
pub struct Flags {
    pub stop: AtomicBool,
    pub interrupt: AtomicBool,
}

impl Flags {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The daemon's health for `/healthz`: the last full pass succeeded, not too long ago.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Longest a healthy daemon goes without a successful pass.
    grace: Duration,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

impl Health {
    /// Healthy while a pass succeeded within `grace` (or the daemon started less than `grace`
    /// ago and none failed yet).
    pub fn new(grace: Duration) -> Health {
        Health { started: Instant::now(), grace, state: Mutex::new(HealthState::default()) }
    }

    /// The grace for a daemon: three intervals plus a pass's sending time.
    pub fn grace_for(interval: Duration, pass_time: Duration) -> Duration {
        interval * 3 + pass_time
    }

    fn record(&self, error: Option<String>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_none() {
            s.last_ok = Some(Instant::now());
        }
        s.last_error = error;
    }

    /// `Ok` when healthy, else why not.
    pub fn check(&self) -> Result<(), String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let since = s.last_ok.unwrap_or(self.started);
        let late = since.elapsed() > self.grace;
        match (&s.last_error, late) {
            (_, false) if s.last_ok.is_some() || s.last_error.is_none() => Ok(()),
            (Some(e), _) => Err(format!("the last pass failed: {e}")),
            (None, _) => Err(format!("no pass succeeded for {} s", since.elapsed().as_secs())),
        }
    }
}

/// A job named by hook messages, waiting for its look.
#[derive(Debug, Clone)]
struct Waiting {
    /// The latest message's context: an epilog supersedes a prolog.
    context: HookContext,
    due: Instant,
    tries: u32,
}

/// Jobs named by hook messages, by (cluster as the message named it, job id).
type WaitingJobs = BTreeMap<(Option<ClusterName>, u64), Waiting>;

/// A waiting job due for its look: the cluster it is asked on, its key and its state.
type Due<'w> = (ClusterName, &'w (Option<ClusterName>, u64), &'w Waiting);

/// Runs the loop until `flags.stop` is set. Messages from the hook arrive on `hook` (the
/// listener's channel); `refused` tells how many messages the listener refused so far.
pub fn run(
    d: &mut Daemon<'_>,
    hook: Option<Receiver<HookMessage>>,
    refused: &dyn Fn() -> u64,
    flags: &Flags,
) -> Result<(), DaemonError> {
    let mut detected: Option<Detected> = None;
    let mut failures: u32 = 0;
    let mut next_poll = Instant::now();
    let mut waiting = WaitingJobs::new();
    let mut refused_seen = 0;
    let mut dropped_logged = false;
    tracing::info!(interval_secs = d.settings.interval.as_secs(), sinks = d.consumers.len(), "daemon started");
    while !flags.stopping() {
        // Wait for the poll, the first waiting job, a message or the stop flag.
        let wake = waiting.values().map(|w| w.due).min().map_or(next_poll, |due| due.min(next_poll));
        let now = Instant::now();
        if now < wake {
            let slice = (wake - now).min(TICK);
            match hook.as_ref().map(|rx| rx.recv_timeout(slice)) {
                Some(Ok(msg)) => {
                    d.metrics.hook_message(true);
                    add_waiting(&mut waiting, msg, d.settings.hook_delay, &mut dropped_logged);
                }
                Some(Err(RecvTimeoutError::Timeout)) => {}
                Some(Err(RecvTimeoutError::Disconnected)) | None => std::thread::sleep(slice),
            }
            let n = refused();
            for _ in refused_seen..n {
                d.metrics.hook_message(false);
            }
            refused_seen = n;
            continue;
        }
        if let Some(rx) = hook.as_ref() {
            while let Ok(msg) = rx.try_recv() {
                d.metrics.hook_message(true);
                add_waiting(&mut waiting, msg, d.settings.hook_delay, &mut dropped_logged);
            }
        }
        let Some(_lock) = sender_lock(d)? else {
            // Another sender works on the ledger (a cron run, retry, migrate): try again soon.
            let later = Instant::now() + Duration::from_secs(5);
            next_poll = next_poll.max(later);
            for w in waiting.values_mut() {
                w.due = w.due.max(later);
            }
            continue;
        };
        flags.interrupt.store(false, Ordering::SeqCst);
        if Instant::now() >= next_poll {
            let ok = full_pass(d, &mut detected, flags)?;
            failures = if ok { 0 } else { failures + 1 };
            next_poll = Instant::now() + poll_delay(d.settings.interval, failures);
            // The poll read every job the messages named up to now (the window reaches the
            // present); those whose change sacct did not show yet stay.
            looked_at(d, &mut waiting, &mut |_| true)?;
        } else {
            hook_pass(d, &mut detected, &mut waiting, flags)?;
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// The wait before the next poll after `failures` failed ones in a row.
fn poll_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    interval.saturating_mul(1 << failures.min(16).saturating_sub(1)).min(MAX_BACKOFF.max(interval))
}

fn add_waiting(waiting: &mut WaitingJobs, msg: HookMessage, delay: Duration, dropped_logged: &mut bool) {
    let key = (msg.cluster, msg.job_id);
    let due = Instant::now() + delay;
    if waiting.len() >= MAX_WAITING && !waiting.contains_key(&key) {
        if !*dropped_logged {
            tracing::warn!(
                waiting = waiting.len(),
                "more jobs named by the hook than the daemon keeps waiting; the next poll reads the others"
            );
            *dropped_logged = true;
        }
        return;
    }
    // The latest word on the job, with a fresh set of looks.
    waiting.insert(key, Waiting { context: msg.context, due, tries: 0 });
}

fn sender_lock(d: &Daemon<'_>) -> Result<Option<lock::LedgerLock>, DaemonError> {
    let l = lock::try_lock(&d.ledger_path)
        .map_err(|source| DaemonError::Lock { path: lock::lock_path(&d.ledger_path).display().to_string(), source })?;
    if l.is_none() {
        tracing::info!(
            lock = %lock::lock_path(&d.ledger_path).display(),
            "another deliver/run/retry/migrate/backfill holds the ledger; this pass waits"
        );
    }
    Ok(l)
}

/// Asks Slurm for its version and fields (and the local cluster) when not known yet.
fn detect<'d>(d: &Daemon<'_>, detected: &'d mut Option<Detected>) -> Result<&'d Detected, String> {
    if detected.is_none() {
        *detected = Some(pass::detect(&d.collect).map_err(|e| e.to_string())?);
    }
    Ok(detected.as_ref().expect("set above"))
}

/// Collects every cluster, then delivers to every sink. Returns whether every collect worked.
fn full_pass(d: &mut Daemon<'_>, detected: &mut Option<Detected>, flags: &Flags) -> Result<bool, DaemonError> {
    let started = Instant::now();
    let now = (d.clock)();
    let mut errors: Vec<String> = Vec::new();
    let mut outcomes: Vec<ClusterOutcome> = Vec::new();
    match detect(d, detected) {
        Ok(found) => {
            let found = found.clone();
            for cluster in &found.clusters {
                let one = Detected { info: found.info.clone(), clusters: vec![cluster.clone()] };
                let t = Instant::now();
                let outcome = match pass::collect_detected(&mut d.ledger, &d.collect, &one, now) {
                    Ok(mut o) => o.pop(),
                    Err(e) => Some(ClusterOutcome::Failed { cluster: cluster.clone(), error: e.to_string() }),
                };
                let secs = t.elapsed().as_secs_f64();
                let at = (d.clock)().0;
                match &outcome {
                    Some(o @ ClusterOutcome::Collected(r)) => {
                        let ok = !o.failed();
                        d.metrics.collect_finished(cluster.as_str(), ok, r.counts.runs_seen, r.sacct_calls, secs, at);
                        if let Some(e) = r.settled.as_ref().and_then(|s| s.error.clone()) {
                            errors.push(format!("{cluster}: asking sacct for open runs by id: {e}"));
                        }
                        tracing::info!(
                            cluster = %cluster,
                            seen = r.counts.runs_seen,
                            new = r.counts.runs_new,
                            updated = r.counts.runs_updated,
                            quarantined_new = r.counts.quarantined_new,
                            "collected"
                        );
                    }
                    Some(ClusterOutcome::Failed { error, .. }) => {
                        d.metrics.collect_finished(cluster.as_str(), false, 0, 1, secs, at);
                        errors.push(format!("{cluster}: {error}"));
                    }
                    None => {}
                }
                outcomes.extend(outcome);
                if let Some(c) = d.ledger.cursor(cluster)? {
                    d.metrics.set_cursor(cluster.as_str(), c.0);
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot ask Slurm; delivering what the ledger holds, polling again later");
            for c in &d.collect.clusters {
                d.metrics.collect_finished(c.as_str(), false, 0, 0, 0.0, (d.clock)().0);
            }
            errors.push(e);
        }
    }
    let collected = errors.is_empty();
    if !collected {
        // Slurm may have been upgraded or restarted: ask its version again next time.
        *detected = None;
    }
    let limits = PassLimits {
        time: Some(d.pass_time),
        max_items: d.max_items,
        clock: Some(d.clock),
        stop: Some(&flags.interrupt),
    };
    // Allocation detail before the sends (a start goes out with it), node states after them.
    let allocations = side::ask_allocations(&mut d.ledger, &d.collect, &outcomes, &d.consumers, now);
    let reconciled = match detected.as_ref() {
        Some(found) => side::reconcile(&mut d.ledger, &d.collect, found, &outcomes, &d.consumers, now),
        None => Vec::new(),
    };
    // A sink the platform asked to slow down (429) waits until the time it gave.
    let sending: Vec<&Consumer> = d.consumers.iter().filter(|c| !d.paused.paused(&c.name, now)).collect();
    let (sinks, refused) =
        pass::deliver_checked(&mut d.ledger, &sending, limits, now, &mut *d.preflight, &mut |_, _, _| {});
    record_sinks(d, &sinks)?;
    record_outbox(d)?;
    let skip = pass::refused_sinks(&refused);
    let reporting: Vec<&Consumer> = d.consumers.iter().filter(|c| !skip.contains(&c.name.as_str())).collect();
    let node_states = side::report_node_states(&d.collect, &outcomes, &reporting);
    let side_report = side::SideReport { allocations, node_states, reconciled };
    if side_report.failures() > 0 {
        tracing::warn!(
            failures = side_report.failures(),
            "allocation detail or node states not read or reported (above)"
        );
    }
    for p in &refused {
        errors.push(format!("{}: {}", p.key, p.message));
    }
    if !refused.is_empty() {
        tracing::error!(problems = %problems_line(&refused), "sinks left out: the config does not fit the ledger");
    }
    for o in sinks.iter().filter(|o| o.error.is_some()) {
        errors.push(format!("{}: {}", o.sink, o.error.as_ref().expect("filtered")));
    }
    let ok = errors.is_empty();
    d.metrics.pass_finished(ok, started.elapsed().as_secs_f64(), (d.clock)().0);
    d.health.record(if ok { None } else { Some(errors.join("; ")) });
    Ok(collected)
}

fn problems_line(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect::<Vec<_>>().join("; ")
}

/// Looks at the waiting jobs that are due: one `sacct --jobs` per cluster, then every sink, the
/// sinks with the fewest items due first.
fn hook_pass(
    d: &mut Daemon<'_>,
    detected: &mut Option<Detected>,
    waiting: &mut WaitingJobs,
    flags: &Flags,
) -> Result<(), DaemonError> {
    let now_i = Instant::now();
    let found = match detect(d, detected) {
        Ok(f) => f.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask Slurm for the jobs the hook named; trying again later");
            *detected = None;
            retry_later(d, waiting, now_i);
            return Ok(());
        }
    };
    // The due jobs, each with the cluster it is asked on (a message without one: the first
    // collected); a job of a cluster this daemon does not collect is dropped.
    let mut due: Vec<Due<'_>> = Vec::new();
    let mut foreign = Vec::new();
    for (key, w) in waiting.iter().filter(|(_, w)| w.due <= now_i) {
        match key.0.clone().or_else(|| found.clusters.first().cloned()) {
            Some(c) if found.clusters.contains(&c) => due.push((c, key, w)),
            other => {
                tracing::debug!(cluster = ?other, job_id = key.1, "a hook message names a cluster this daemon does not collect");
                foreign.push(key.clone());
            }
        }
    }
    let now = (d.clock)();
    let source = d.collect.source();
    // At a job's start slurmdbd has not heard of it yet (measured on the testbed: never on the
    // first look): slurmctld's view is asked at once, below.
    let asked = by_cluster(due.iter().filter(|(_, _, w)| w.context != HookContext::Prolog || w.tries > 0));
    for (cluster, ids) in &asked {
        let t = Instant::now();
        d.metrics.hook_sacct_calls(cluster.as_str(), ids.len().div_ceil(collect::IDS_PER_CALL) as u64);
        match collect::collect_jobs(&source, &found.info, &mut d.ledger, cluster, ids, now) {
            Ok(c) => tracing::debug!(
                cluster = %cluster,
                jobs = ids.len(),
                new = c.runs_new,
                updated = c.runs_updated,
                secs = t.elapsed().as_secs_f64(),
                "looked at the jobs the hook named"
            ),
            Err(e) => tracing::warn!(cluster = %cluster, error = %e, "asking sacct for the jobs the hook named failed"),
        }
    }
    // What sacct does not show yet (slurmdbd hears of a start or end a moment after slurmctld),
    // slurmctld's live view does: asked for those jobs only, a few per pass.
    let mut unshown = Vec::new();
    for entry in &due {
        if unshown.len() < LIVE_LOOKS && !shows(&d.ledger, entry.1, &entry.2.context)? {
            unshown.push(entry);
        }
    }
    for (cluster, ids) in &by_cluster(unshown.into_iter()) {
        match collect::collect_live_jobs(&source, &mut d.ledger, cluster, ids, now) {
            Ok(c) => {
                tracing::debug!(cluster = %cluster, jobs = ids.len(), new = c.runs_new, updated = c.runs_updated, "looked at slurmctld's view of the jobs sacct does not show yet")
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster, error = %e, "asking scontrol for the jobs the hook named failed")
            }
        }
    }
    if d.consumers.iter().any(|c| c.sender.wants_allocations()) {
        let scripts = d.consumers.iter().any(|c| c.sender.wants_job_scripts());
        let started = by_cluster(due.iter().filter(|(_, _, w)| w.context == HookContext::Prolog));
        for (cluster, ids) in &started {
            let version = found.info.version;
            if let Err(e) = fetch_allocations(&source, version, &mut d.ledger, cluster, ids, scripts, now) {
                tracing::warn!(cluster = %cluster, error = %e, "asking scontrol for the allocation detail failed; the start goes out with what sacct says");
            }
        }
    }
    for key in foreign {
        waiting.remove(&key);
    }
    let due = |w: &Waiting| w.due <= now_i;
    looked_at(d, waiting, &mut |w| due(w))?;
    let consumers: Vec<&Consumer> = d.consumers.iter().filter(|c| !d.paused.paused(&c.name, now)).collect();
    let limits = PassLimits {
        time: Some(HOOK_PASS_TIME.min(d.pass_time)),
        max_items: d.max_items,
        clock: Some(d.clock),
        stop: Some(&flags.stop),
    };
    let sinks = pass::deliver_fewest_first(&mut d.ledger, &consumers, limits, now, &mut |_, _, _| {});
    record_sinks(d, &sinks)
}

/// The job ids of `due` entries, by the cluster they are asked on.
fn by_cluster<'e, 'w: 'e>(due: impl Iterator<Item = &'e Due<'w>>) -> BTreeMap<ClusterName, Vec<u64>> {
    let mut out: BTreeMap<ClusterName, Vec<u64>> = BTreeMap::new();
    for (cluster, key, _) in due {
        out.entry(cluster.clone()).or_default().push(key.1);
    }
    out
}

/// Puts off every due waiting job after a failed look.
fn retry_later(d: &Daemon<'_>, waiting: &mut WaitingJobs, now: Instant) {
    waiting.retain(|_, w| {
        if w.due > now {
            return true;
        }
        w.tries += 1;
        w.due = now + backoff(d.settings.hook_delay, w.tries);
        w.tries < HOOK_TRIES
    });
}

/// The wait before the `tries`-th look again (`tries` ≥ 1): from a quarter second (slurmctld
/// tells slurmdbd within a moment, mostly), doubling.
fn backoff(delay: Duration, tries: u32) -> Duration {
    delay.max(Duration::from_millis(250)).saturating_mul(1 << tries.saturating_sub(1).min(10))
}

/// After a look: a waiting job whose change the ledger shows (a prolog's job has started, an
/// epilog's has ended) is done; another is looked at again later, up to [`HOOK_TRIES`] times.
/// `looked`: which waiting jobs the look covered.
fn looked_at(
    d: &Daemon<'_>,
    waiting: &mut WaitingJobs,
    looked: &mut dyn FnMut(&Waiting) -> bool,
) -> Result<(), DaemonError> {
    let now = Instant::now();
    let mut done = Vec::new();
    for (key, w) in waiting.iter_mut() {
        if !looked(w) {
            continue;
        }
        if shows(&d.ledger, key, &w.context)? {
            done.push(key.clone());
            continue;
        }
        w.tries += 1;
        if w.tries >= HOOK_TRIES {
            tracing::debug!(job_id = key.1, "sacct does not show what the hook said yet; leaving the job to the polls");
            done.push(key.clone());
        } else {
            w.due = now + backoff(d.settings.hook_delay, w.tries);
        }
    }
    for key in done {
        waiting.remove(&key);
    }
    Ok(())
}

/// Whether the ledger shows what a hook message said of a job: started (prolog) or ended
/// (epilog; also any other context).
fn shows(ledger: &Ledger, key: &(Option<ClusterName>, u64), context: &HookContext) -> Result<bool, DaemonError> {
    let runs = ledger.jobs(&JobFilter { cluster: key.0.clone(), job_id_raw: Some(key.1), ..Default::default() })?;
    Ok(match context {
        HookContext::Prolog => runs.iter().any(|r| r.start.is_some()),
        _ => runs.iter().any(|r| r.state.is_final()),
    })
}

/// Counts what each sink delivered; remembers a sink paused by a 429.
fn record_sinks(d: &mut Daemon<'_>, sinks: &[SinkOutcome]) -> Result<(), DaemonError> {
    for o in sinks {
        if let Some(until) = o.paused_until() {
            tracing::warn!(sink = %o.sink, until = until.0, "the platform asked to slow down (429); the sink waits");
            d.paused.pause(&o.sink, until);
        }
        let e = &o.exec;
        d.metrics.delivered(&o.sink, e.delivered + e.found_already_delivered);
        d.metrics.send_failed(&o.sink, e.retry + e.unknown);
        if e.delivered + e.found_already_delivered + e.retry + e.unknown + e.rejected > 0 {
            tracing::info!(
                sink = %o.sink,
                delivered = e.delivered,
                found_already_delivered = e.found_already_delivered,
                retry = e.retry,
                unknown = e.unknown,
                rejected = e.rejected,
                left = e.left,
                "sent"
            );
        }
    }
    Ok(())
}

/// Sets the outbox gauges from the ledger's counts (a scan of the outbox: once per full pass,
/// not on the hook path).
fn record_outbox(d: &Daemon<'_>) -> Result<(), DaemonError> {
    for s in d.ledger.sink_status(0)? {
        let n = |state: &str| s.deliveries.iter().filter(|(st, _)| st == state).map(|(_, n)| *n).sum::<u64>();
        d.metrics.set_outbox(&s.sink, n("pending"), n("sent") + n("retry"), n("rejected"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_while_they_fail_and_not_beyond_the_cap() {
        let i = Duration::from_secs(60);
        let waits: Vec<u64> = (0..8).map(|f| poll_delay(i, f).as_secs()).collect();
        assert_eq!(waits, [60, 60, 120, 240, 480, 600, 600, 600]);
        // An interval longer than the cap is never shortened.
        assert_eq!(poll_delay(Duration::from_secs(3600), 3), Duration::from_secs(3600));
    }

    #[test]
    fn health_turns_bad_after_a_failure_and_good_after_a_success() {
        let h = Health::new(Duration::from_secs(60));
        assert_eq!(h.check(), Ok(()), "just started");
        h.record(Some("sacct: connection refused".into()));
        assert!(h.check().unwrap_err().contains("connection refused"));
        h.record(None);
        assert_eq!(h.check(), Ok(()));
        let stale = Health::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(stale.check().unwrap_err().contains("no pass succeeded"));
    }
}
