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

use crate::ledger::{Delivery, DeliveryState, ImportedRow, Ledger, LedgerError, SinkRun, Writer};
use std::collections::HashSet;

use crate::model::{JobKey, JobRun, UnixTime};
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
pub fn plan_sink(
    ledger: &mut Ledger,
    sink: &dyn Sink,
    now: UnixTime,
    policy: &EnginePolicy,
) -> Result<PlanReport, LedgerError> {
    let name = sink.name().to_string();
    let mut report = PlanReport::default();
    let imports = ledger.has_pending_imports(&name)?;
    // Held runs first: their mapping may have been fixed since.
    let held = ledger.held_runs(&name)?;
    if !held.is_empty() {
        let jobs: Vec<JobRun> = held.iter().filter_map(|(k, _)| ledger.job(k).transpose()).collect::<Result<_, _>>()?;
        let w = ledger.writer(now)?;
        plan_runs(&w, sink, jobs.iter(), now, policy, imports, &mut report)?;
        w.commit()?;
    }
    let mut seq = ledger.sink_cursor(&name)?;
    loop {
        let batch = ledger.runs_changed_since(seq, PLAN_CHUNK)?;
        let Some((last, _)) = batch.last() else { break };
        let last = *last;
        let mut w = ledger.writer(now)?;
        plan_runs(&w, sink, batch.iter().map(|(_, job)| job), now, policy, imports, &mut report)?;
        w.set_sink_cursor(&name, last)?;
        w.commit()?;
        seq = last;
    }
    Ok(report)
}

/// Plans `jobs` in the caller's transaction: each run's frontier is read (an imported one for
/// a run never planned), its decision stored (deliveries and frontier), on statements prepared
/// once for the whole batch.
fn plan_runs<'j>(
    w: &Writer<'_>,
    sink: &dyn Sink,
    jobs: impl Iterator<Item = &'j JobRun>,
    now: UnixTime,
    policy: &EnginePolicy,
    imports: bool,
    report: &mut PlanReport,
) -> Result<(), LedgerError> {
    let name = sink.name();
    let mut st = w.plan_statements()?;
    for job in jobs {
        let mut prev = st.sink_run(name, &job.key)?;
        let mut hold = None;
        if imports && prev.planned_until.is_none() && !prev.complete {
            if let Some(row) = w.pending_import(name, &job.key.cluster, job.key.job_id_raw)? {
                match imported_prev(&row, job) {
                    // Taken once: the row is marked with this run, in the transaction that
                    // stores the run's frontier.
                    ImportMatch::Applies(s) => {
                        w.mark_import_applied(name, &job.key.cluster, job.key.job_id_raw, job.key.submit.0)?;
                        st.put_sink_run(name, &job.key, &s)?;
                        prev = s;
                    }
                    ImportMatch::Wait(reason) => hold = Some(reason),
                }
            }
        }
        report.runs_considered += 1;
        let decision = match hold {
            Some(reason) => Decision::Hold { prev, reason },
            None => decide(sink, job, prev, now, policy),
        };
        match decision {
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

/// What a plan pass would add.
#[derive(Debug, Default)]
pub struct Preview {
    /// The deliveries it would plan.
    pub planned: Vec<Delivery>,
    /// The runs it would hold: (run key, reason).
    pub held: Vec<(String, String)>,
}

/// What a plan pass would add, computed from the ledger without writing anything. `--dry-run`.
pub fn preview_sink(
    ledger: &Ledger,
    sink: &dyn Sink,
    now: UnixTime,
    policy: &EnginePolicy,
) -> Result<Preview, LedgerError> {
    let name = sink.name();
    let imports = ledger.has_pending_imports(name)?;
    let mut preview = Preview::default();
    // What a real pass would have written by now: runs already decided, imports already taken.
    let mut decided: HashSet<JobKey> = HashSet::new();
    let mut imports_taken: HashSet<(String, u64)> = HashSet::new();
    let mut consider = |job: &JobRun, preview: &mut Preview| -> Result<(), LedgerError> {
        if !decided.insert(job.key.clone()) {
            return Ok(());
        }
        let mut prev = ledger.sink_run(name, &job.key)?;
        let import_key = (job.key.cluster.as_str().to_string(), job.key.job_id_raw);
        if imports && prev.planned_until.is_none() && !prev.complete && !imports_taken.contains(&import_key) {
            match ledger.pending_import(name, &job.key.cluster, job.key.job_id_raw)?.map(|r| imported_prev(&r, job)) {
                Some(ImportMatch::Applies(s)) => {
                    imports_taken.insert(import_key);
                    prev = s;
                }
                Some(ImportMatch::Wait(reason)) => {
                    preview.held.push((job.key.to_string(), reason));
                    return Ok(());
                }
                None => {}
            }
        }
        match decide(sink, job, prev, now, policy) {
            Decision::Plan { deliveries, next } => {
                preview.planned.extend(deliveries);
                if let Some(r) = next.hold_reason {
                    preview.held.push((job.key.to_string(), r));
                }
            }
            Decision::Hold { reason, .. } => preview.held.push((job.key.to_string(), reason)),
            Decision::Done => {}
        }
        Ok(())
    };
    for (k, _) in ledger.held_runs(name)? {
        if let Some(job) = ledger.job(&k)? {
            consider(&job, &mut preview)?;
        }
    }
    let mut seq = ledger.sink_cursor(name)?;
    loop {
        let batch = ledger.runs_changed_since(seq, PLAN_CHUNK)?;
        let Some((last, _)) = batch.last() else { break };
        seq = *last;
        for (_, job) in &batch {
            consider(job, &mut preview)?;
        }
    }
    Ok(preview)
}

/// How an imported frontier (slurm-tracker's state) relates to a run.
enum ImportMatch {
    /// The row describes this run: planning starts where the old tool stopped.
    Applies(SinkRun),
    /// The run does not match the row (yet: the ledger may be behind, or the row is another
    /// run's): hold it rather than bill what the old tool may already have billed.
    Wait(String),
}

fn imported_prev(row: &ImportedRow, job: &JobRun) -> ImportMatch {
    let state = crate::tracker::TrackerJobState {
        job_id: row.job_id_raw,
        last_reported_elapsed: row.reported_elapsed_secs,
        last_reported_at: row.reported_at,
        total_core_hours: 0.0,
        completed_at: row.completed_at,
    };
    // A requeued run never changes again either.
    let settled = job.state.is_final() || job.state == crate::model::JobState::Requeued;
    let facts = crate::tracker::RunFacts {
        start: job.start.map_or(0, |t| t.0),
        elapsed_secs: i64::try_from(job.elapsed_secs).unwrap_or(i64::MAX),
        is_final: settled,
        end: job.end.filter(|_| settled).map(|t| t.0),
    };
    match crate::tracker::imported_frontier(&state, &facts) {
        Ok(f) => ImportMatch::Applies(SinkRun { planned_until: Some(UnixTime(f.reported_until)), complete: f.complete, hold_reason: None }),
        Err(reason) if !settled => ImportMatch::Wait(format!("waiting for the run to match slurm-tracker's state: {reason}")),
        // A settled run that does not match: the row may belong to another run of the job (a
        // requeue; that run takes it when planned, and this one is then billed whole) or the
        // tracker's clock was off. Never guess: hold until a run takes the row or an admin
        // releases it.
        Err(reason) => ImportMatch::Wait(format!(
            "slurm-tracker's state for job {} does not match this run ({reason}); if the tracker did not bill this run, \
             `slurm-ledger migrate slurm-tracker --release {}` bills it in full",
            job.key.job_id_raw, job.key.job_id_raw
        )),
    }
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
pub fn execute_sink(
    ledger: &mut Ledger,
    sink: &dyn Sink,
    now: UnixTime,
    limit: u64,
    policy: &EnginePolicy,
) -> Result<ExecReport, LedgerError> {
    let mut report = ExecReport::default();
    for d in ledger.due_deliveries(sink.name(), now, limit)? {
        // A delivery that ever left may be on the platform (an unknown outcome, a crash, an
        // answer lost): look it up before any resend, whatever state it is in now.
        if d.state == DeliveryState::Sent || d.attempts > 0 {
            match sink.lookup(&d) {
                Lookup::Found { remote_id } => {
                    if mark(
                        ledger,
                        now,
                        &d,
                        (d.state, d.attempts),
                        DeliveryState::Delivered,
                        d.attempts,
                        now,
                        None,
                        remote_id.as_deref(),
                    )? {
                        report.found_already_delivered += 1;
                    }
                    continue;
                }
                Lookup::NotFound => {}
                Lookup::Failed { reason } => {
                    let at = UnixTime(now.0 + backoff_secs(policy, &d.id, d.attempts.max(1)) as i64);
                    let error = format!("look-up failed: {reason}");
                    if mark(
                        ledger,
                        now,
                        &d,
                        (d.state, d.attempts),
                        DeliveryState::Sent,
                        d.attempts,
                        at,
                        Some(&error),
                        None,
                    )? {
                        report.unknown += 1;
                    }
                    continue;
                }
            }
        }
        let attempts = d.attempts + 1;
        let wait = |after: Option<u64>| {
            UnixTime(now.0 + after.unwrap_or(0).min(86_400).max(backoff_secs(policy, &d.id, attempts)) as i64)
        };
        // Intent first: if we die after this, a later pass looks the delivery up, not before
        // the backoff (a platform may list an event a little after it accepted it). The
        // transition is conditional: a delivery another process already took is skipped.
        if !mark(
            ledger,
            now,
            &d,
            (d.state, d.attempts),
            DeliveryState::Sent,
            attempts,
            wait(None),
            d.last_error.as_deref(),
            None,
        )? {
            continue;
        }
        let sent = (DeliveryState::Sent, attempts);
        match sink.send(&d) {
            Outcome::Delivered { remote_id } => {
                mark(ledger, now, &d, sent, DeliveryState::Delivered, attempts, now, None, remote_id.as_deref())?;
                report.delivered += 1;
            }
            Outcome::Retry { reason, after_secs } => {
                mark(ledger, now, &d, sent, DeliveryState::Retry, attempts, wait(after_secs), Some(&reason), None)?;
                report.retry += 1;
            }
            Outcome::Unknown { reason } => {
                mark(ledger, now, &d, sent, DeliveryState::Sent, attempts, wait(None), Some(&reason), None)?;
                report.unknown += 1;
            }
            Outcome::Rejected { reason } => {
                mark(ledger, now, &d, sent, DeliveryState::Rejected, attempts, now, Some(&reason), None)?;
                report.rejected += 1;
            }
        }
    }
    Ok(report)
}

/// Moves a delivery from `from` (state, attempts) to a new state in its own transaction.
/// Returns false when the delivery is no longer in `from` (another process moved it).
#[allow(clippy::too_many_arguments)]
fn mark(
    ledger: &mut Ledger,
    now: UnixTime,
    d: &Delivery,
    from: (DeliveryState, u32),
    state: DeliveryState,
    attempts: u32,
    next: UnixTime,
    error: Option<&str>,
    remote_id: Option<&str>,
) -> Result<bool, LedgerError> {
    let mut w = ledger.writer(now)?;
    let moved = w.mark_delivery_from(&d.id, from, state, attempts, next, error, remote_id)?;
    w.commit()?;
    Ok(moved)
}

#[cfg(test)]
mod tests;
