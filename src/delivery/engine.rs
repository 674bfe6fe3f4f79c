//! The delivery engine's I/O half: plan a sink from its change cursor, then execute its due
//! deliveries. Every state change is its own SQLite transaction, taken *before* the action it
//! guards where a crash could otherwise double-charge:
//!
//! 1. plan: slices + frontier + sink cursor commit together (a slice is planned once);
//! 2. execute: `pending → sent` commits before the request leaves (intent recorded);
//! 3. the answer commits `sent → delivered | retry | rejected`; an unknown outcome stays `sent`.
//!
//! A delivery found in `sent` (crash, timeout, dropped connection) is looked up on the
//! platform before it is sent again: found → delivered, not found → sent. So a platform without
//! idempotency keys still records each slice once.

use crate::ledger::{Delivery, DeliveryState, Ledger, LedgerError, SinkRun};
use crate::model::{JobRun, UnixTime};
use crate::sinks::{Lookup, Outcome, Sink};

use super::plan::plan_run;

/// Runs read per planning transaction.
const PLAN_CHUNK: u64 = 10_000;

/// Planning and retry settings.
#[derive(Debug, Clone, Copy)]
pub struct EnginePolicy {
    /// A running run is sliced once this much new billable time accrued.
    pub min_running_slice_secs: i64,
    /// First retry delay; doubles per attempt up to `max_backoff_secs`.
    pub base_backoff_secs: u64,
    pub max_backoff_secs: u64,
}

impl Default for EnginePolicy {
    fn default() -> Self {
        Self { min_running_slice_secs: 900, base_backoff_secs: 30, max_backoff_secs: 3600 }
    }
}

/// What a plan pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanReport {
    pub runs_considered: u64,
    pub deliveries_planned: u64,
    pub runs_held: u64,
}

/// What an execute pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExecReport {
    pub delivered: u64,
    pub found_already_delivered: u64,
    pub retry: u64,
    pub unknown: u64,
    pub rejected: u64,
}

/// The deterministic id of a slice: the same slice of the same run for the same sink always
/// gets the same id, and it is what the platform's metadata carries for look-ups.
pub fn delivery_id(sink: &str, job: &JobRun, start: UnixTime, end: UnixTime) -> String {
    // `sl:{sink}:{cluster}:{job_id_raw}:{submit}:{start}-{end}`, sized once and written without
    // the formatting machinery: this runs for every slice of every run.
    let cluster = job.key.cluster.as_str();
    let mut id = String::with_capacity(8 + sink.len() + cluster.len() + 4 * 20);
    id.push_str("sl:");
    id.push_str(sink);
    id.push(':');
    id.push_str(cluster);
    id.push(':');
    push_u64(&mut id, job.key.job_id_raw);
    id.push(':');
    push_i64(&mut id, job.key.submit.0);
    id.push(':');
    push_i64(&mut id, start.0);
    id.push('-');
    push_i64(&mut id, end.0);
    id
}

/// Appends `n` in decimal, as `Display` writes it.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends `v` in decimal, as `Display` writes it.
fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Retry delay: exponential with a deterministic jitter (from the id), so tests are repeatable
/// and a burst of failures does not retry in lockstep.
pub fn backoff_secs(policy: &EnginePolicy, id: &str, attempts: u32) -> u64 {
    let exp = policy.base_backoff_secs.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    let base = exp.min(policy.max_backoff_secs).max(1);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(attempts.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    base + h % (base / 2 + 1)
}

/// Plans every run that changed since the sink's cursor, plus runs it held (a fixed mapping
/// releases them). Returns what it did.
pub fn plan_sink(ledger: &mut Ledger, sink: &dyn Sink, now: UnixTime, policy: &EnginePolicy) -> Result<PlanReport, LedgerError> {
    let name = sink.name().to_string();
    let mut report = PlanReport::default();
    // Held runs first: their mapping may have been fixed since.
    let held = ledger.held_runs(&name)?;
    if !held.is_empty() {
        let jobs: Vec<JobRun> = held.iter().filter_map(|(k, _)| ledger.job(k).transpose()).collect::<Result<_, _>>()?;
        let w = ledger.writer(now)?;
        plan_runs(&w, sink, jobs.iter(), now, policy, &mut report)?;
        w.commit()?;
    }
    let mut seq = ledger.sink_cursor(&name)?;
    loop {
        let batch = ledger.runs_changed_since(seq, PLAN_CHUNK)?;
        let Some((last, _)) = batch.last() else { break };
        let last = *last;
        let mut w = ledger.writer(now)?;
        plan_runs(&w, sink, batch.iter().map(|(_, job)| job), now, policy, &mut report)?;
        w.set_sink_cursor(&name, last)?;
        w.commit()?;
        seq = last;
    }
    Ok(report)
}

/// Plans `jobs` in the caller's transaction: each run's frontier is read, its decision stored
/// (deliveries and frontier), on statements prepared once for the whole batch.
fn plan_runs<'j>(
    w: &crate::ledger::Writer<'_>,
    sink: &dyn Sink,
    jobs: impl Iterator<Item = &'j JobRun>,
    now: UnixTime,
    policy: &EnginePolicy,
    report: &mut PlanReport,
) -> Result<(), LedgerError> {
    let name = sink.name();
    let mut st = w.plan_statements()?;
    for job in jobs {
        let prev = st.sink_run(name, &job.key)?;
        // Stores the decision: deliveries and frontier, in the caller's transaction.
        report.runs_considered += 1;
        match decide(sink, job, prev, now, policy) {
            Decision::Done => {}
            Decision::Hold { prev, reason } => {
                report.runs_held += 1;
                st.put_sink_run(name, &job.key, &SinkRun { hold_reason: Some(reason), ..prev })?;
            }
            Decision::Plan { deliveries, next } => {
                for d in &deliveries {
                    if st.insert_delivery(d)? {
                        report.deliveries_planned += 1;
                    }
                }
                if next.hold_reason.is_some() {
                    report.runs_held += 1;
                }
                st.put_sink_run(name, &job.key, &next)?;
            }
        }
    }
    Ok(())
}

/// What a plan pass would add, computed from the ledger without writing anything: the
/// deliveries it would plan, and the runs it would hold (key text, reason). `--dry-run`.
pub fn preview_sink(ledger: &Ledger, sink: &dyn Sink, now: UnixTime, policy: &EnginePolicy) -> Result<(Vec<Delivery>, Vec<(String, String)>), LedgerError> {
    let name = sink.name();
    let mut planned = Vec::new();
    let mut held = Vec::new();
    let mut take = |job: &JobRun, d: Decision| {
        match d {
            Decision::Plan { deliveries, next } => {
                planned.extend(deliveries);
                if let Some(r) = next.hold_reason {
                    held.push((job.key.to_string(), r));
                }
            }
            Decision::Hold { reason, .. } => held.push((job.key.to_string(), reason)),
            Decision::Done => {}
        }
    };
    for (k, _) in ledger.held_runs(name)? {
        if let Some(job) = ledger.job(&k)? {
            let prev = ledger.sink_run(name, &job.key)?;
            take(&job, decide(sink, &job, prev, now, policy));
        }
    }
    let mut seq = ledger.sink_cursor(name)?;
    loop {
        let batch = ledger.runs_changed_since(seq, PLAN_CHUNK)?;
        let Some((last, _)) = batch.last() else { break };
        seq = *last;
        for (_, job) in &batch {
            let prev = ledger.sink_run(name, &job.key)?;
            take(job, decide(sink, job, prev, now, policy));
        }
    }
    Ok((planned, held))
}

/// The pure core of [`plan_sink`] for one run, without a ledger (benchmarks, tools): the
/// deliveries of the run's new slices after `prev` and its next frontier; `Ok(None)` when the
/// run is already complete for the sink; `Err(reason)` when it is held.
pub fn plan_deliveries(
    sink: &dyn Sink,
    job: &JobRun,
    prev: SinkRun,
    now: UnixTime,
    policy: &EnginePolicy,
) -> Result<Option<(Vec<Delivery>, SinkRun)>, String> {
    match decide(sink, job, prev, now, policy) {
        Decision::Done => Ok(None),
        Decision::Hold { reason, .. } => Err(reason),
        Decision::Plan { deliveries, next } => Ok(Some((deliveries, next))),
    }
}

/// What planning one run decides, before anything is stored.
enum Decision {
    /// Already complete for this sink.
    Done,
    /// Cannot be planned now; `prev` is kept with the reason.
    Hold { prev: SinkRun, reason: String },
    /// New deliveries and the next frontier.
    Plan { deliveries: Vec<Delivery>, next: SinkRun },
}

/// Pure: the deliveries of one run's new slices for a sink, or why it is held.
fn decide(sink: &dyn Sink, job: &JobRun, prev: SinkRun, now: UnixTime, policy: &EnginePolicy) -> Decision {
    if prev.complete {
        return Decision::Done;
    }
    let rate = match sink.rate(job) {
        Ok(r) => r,
        Err(reason) => return Decision::Hold { prev, reason },
    };
    let name = sink.name();
    let plan = plan_run(job, &prev, rate.count, rate.unit, sink.calendar(), policy.min_running_slice_secs);
    let mut deliveries = Vec::with_capacity(plan.slices.len());
    for s in &plan.slices {
        let id = delivery_id(name, job, s.start, s.end);
        let quantity = rate.unit.format(s.quantity);
        let payload = match sink.render(job, s, &id, &quantity) {
            Ok(p) => p,
            // Nothing of this plan is stored: the run stays where it was, held.
            Err(reason) => return Decision::Hold { prev, reason },
        };
        deliveries.push(Delivery {
            id,
            sink: name.to_string(),
            key: job.key.clone(),
            slice_start: s.start,
            slice_end: s.end,
            quantity,
            payload,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            remote_id: None,
        });
    }
    Decision::Plan { deliveries, next: plan.next }
}

/// Sends up to `limit` due deliveries of the sink.
pub fn execute_sink(ledger: &mut Ledger, sink: &dyn Sink, now: UnixTime, limit: u64, policy: &EnginePolicy) -> Result<ExecReport, LedgerError> {
    let mut report = ExecReport::default();
    for d in ledger.due_deliveries(sink.name(), now, limit)? {
        if d.state == DeliveryState::Sent {
            match sink.lookup(&d) {
                Lookup::Found { remote_id } => {
                    mark(ledger, now, &d, DeliveryState::Delivered, d.attempts, now, None, remote_id.as_deref())?;
                    report.found_already_delivered += 1;
                    continue;
                }
                Lookup::NotFound => {}
                Lookup::Failed { reason } => {
                    let at = UnixTime(now.0 + backoff_secs(policy, &d.id, d.attempts) as i64);
                    mark(ledger, now, &d, DeliveryState::Sent, d.attempts, at, Some(&format!("look-up failed: {reason}")), None)?;
                    report.unknown += 1;
                    continue;
                }
            }
        }
        let attempts = d.attempts + 1;
        // Intent first: if we die after this, the next pass looks the delivery up.
        mark(ledger, now, &d, DeliveryState::Sent, attempts, now, d.last_error.as_deref(), None)?;
        let wait = |after: Option<u64>| UnixTime(now.0 + after.unwrap_or(0).max(backoff_secs(policy, &d.id, attempts)) as i64);
        match sink.send(&d) {
            Outcome::Delivered { remote_id } => {
                mark(ledger, now, &d, DeliveryState::Delivered, attempts, now, None, remote_id.as_deref())?;
                report.delivered += 1;
            }
            Outcome::Retry { reason, after_secs } => {
                mark(ledger, now, &d, DeliveryState::Retry, attempts, wait(after_secs), Some(&reason), None)?;
                report.retry += 1;
            }
            Outcome::Unknown { reason } => {
                mark(ledger, now, &d, DeliveryState::Sent, attempts, wait(None), Some(&reason), None)?;
                report.unknown += 1;
            }
            Outcome::Rejected { reason } => {
                mark(ledger, now, &d, DeliveryState::Rejected, attempts, now, Some(&reason), None)?;
                report.rejected += 1;
            }
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn mark(
    ledger: &mut Ledger,
    now: UnixTime,
    d: &Delivery,
    state: DeliveryState,
    attempts: u32,
    next: UnixTime,
    error: Option<&str>,
    remote_id: Option<&str>,
) -> Result<(), LedgerError> {
    let mut w = ledger.writer(now)?;
    w.mark_delivery(&d.id, state, attempts, next, error, remote_id)?;
    w.commit()
}

#[cfg(test)]
mod tests;
