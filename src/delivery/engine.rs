//! The engine: plan a consumer from its change cursor, then execute its due items. It knows no
//! consumer: planners decide what an item is, senders where it goes. Every state change is its
//! own SQLite transaction, taken *before* the action it guards where a crash could otherwise
//! double-charge:
//!
//! 1. plan: items + marks + consumer cursor commit together (an item is planned once);
//! 2. execute, a batch at a time: `pending → sent` commits for the whole batch before any of it
//!    leaves (intent recorded);
//! 3. the answers commit `sent → delivered | retry | rejected` together after the batch's sends;
//!    an unknown outcome stays `sent`, and so does every item of a batch whose answers a crash lost.
//!
//! An item found in `sent` (crash, timeout, dropped connection), or any item that ever left, is
//! looked up on the platform before it is sent again: found → delivered, not found → sent. So a
//! platform without idempotency keys still records each item once.
//!
//! Sends go out up to the sender's [`concurrency`](super::consumer::Sender::concurrency) at once
//! (scoped threads, one blocking request each), phase by phase within a batch, in outbox order;
//! outcomes are recorded per item whatever order they came back in. A sender that writes a batch
//! at once (`send_batch`) does so instead. A [`Outcome::Throttled`] answer (HTTP 429) pauses the
//! whole sink: no new send starts, no further batch is taken in this pass, the batch's items that
//! had not left go back to the state they were in before their intent (they never left, so
//! nothing needs looking up), and [`ExecReport::paused_until`] tells the caller when to come back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::ledger::{
    Delivery, DeliveryState, Ledger, LedgerError, MarkedRun, NewItem, PlanStatements, RunMark, Writer,
};
use crate::model::{JobKey, JobRun, UnixTime};

use super::consumer::{Consumer, Decision, EnginePolicy, Lookup, Outcome, Sender};
use super::seed::SeedRule;

/// Runs planned per transaction. Runs stream through (none is held in memory), so a larger
/// transaction costs no memory but the sums of totals ([`crate::ledger::PlanStatements`]): each
/// total is written once per transaction, and a busy month's few thousand totals were written
/// 100 times over a million-run day at 10,000. A crash loses at most one transaction's work,
/// which the next pass plans again.
const PLAN_CHUNK: u64 = 100_000;

/// Runs a dry run reads into memory at a time.
const PREVIEW_CHUNK: u64 = 10_000;

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{consumer} has imported frontiers (seeds) waiting, but no rule to match them to runs was given (internal error; report it)")]
    NoSeedRule { consumer: String },
    #[error("item {id} of {consumer} refers to run {run} that the ledger no longer has")]
    RunMissing { consumer: String, id: String, run: String },
    #[error("item {id} of {consumer} still has no route: {reason}")]
    StillUnroutable { consumer: String, id: String, reason: String },
    #[error(
        "{consumer}: what it bills changed since its items were planned (was: {was}; now: {now}); nothing was planned or \
         sent for it. Items already planned keep their terms and nothing is re-planned"
    )]
    TermsChanged { consumer: String, was: String, now: String },
}

/// The consumer's terms against the stored ones: `Ok(Some(terms))` when they are to be stored
/// (first pass, or nothing planned yet), `Ok(None)` when they match, an error when they changed
/// after items were planned on the old ones.
fn check_terms(ledger: &Ledger, consumer: &Consumer) -> Result<Option<String>, EngineError> {
    let Some(now) = consumer.planner.terms() else { return Ok(None) };
    match ledger.consumer_terms(&consumer.name)? {
        Some(was) if was == now => Ok(None),
        Some(was) if ledger.consumer_has_planned(&consumer.name)? => {
            Err(EngineError::TermsChanged { consumer: consumer.name.clone(), was, now })
        }
        _ => Ok(Some(now)),
    }
}

/// Accepts the consumer's current terms after a change: what accrues from now on (the rest of
/// runs already planned, and new runs) is planned on them; items already planned keep theirs.
/// Returns the terms before and after, or `None` when nothing changed.
pub fn accept_terms(
    ledger: &mut Ledger,
    consumer: &Consumer,
    now: UnixTime,
) -> Result<Option<(String, String)>, EngineError> {
    let Some(terms) = consumer.planner.terms() else { return Ok(None) };
    let was = ledger.consumer_terms(&consumer.name)?;
    if was.as_deref() == Some(terms.as_str()) {
        return Ok(None);
    }
    let mut w = ledger.writer(now)?;
    let id = w.consumer(&consumer.name)?;
    w.set_consumer_terms(id, &terms)?;
    w.commit()?;
    Ok(Some((was.unwrap_or_else(|| "(none stored)".into()), terms)))
}

/// What a plan pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanReport {
    pub runs_considered: u64,
    /// Items added to the outbox (and totals raised).
    pub deliveries_planned: u64,
    pub runs_held: u64,
    /// Runs planned without a new item and not held: nothing new to deliver (for slices: not
    /// started, no elapsed time, or less new time than a running slice).
    pub runs_without_items: u64,
}

/// What an execute pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExecReport {
    pub delivered: u64,
    pub found_already_delivered: u64,
    pub retry: u64,
    pub unknown: u64,
    pub rejected: u64,
    /// Due items the budget left for the next pass (0: the backlog was drained), or that wait
    /// for the pause below.
    pub left: u64,
    /// The platform asked the sink to slow down ([`Outcome::Throttled`], HTTP 429): nothing more
    /// was sent to it in this pass, and a caller should send it nothing before this time (the
    /// platform's `Retry-After`, at most a day; without one, the throttled item's backoff).
    pub paused_until: Option<UnixTime>,
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

/// Plans every run that changed since the consumer's cursor, plus the runs it holds (a fixed
/// mapping releases them). `seeds` matches stored seeds (imported frontiers) to runs.
pub fn plan(
    ledger: &mut Ledger,
    consumer: &Consumer,
    seeds: Option<&dyn SeedRule>,
    now: UnixTime,
) -> Result<PlanReport, EngineError> {
    let name = consumer.name.as_str();
    let mut report = PlanReport::default();
    let seeds = pending_seeds(ledger, name, seeds)?;
    let new_terms = check_terms(ledger, consumer)?;
    // Held runs first: their mapping may have been fixed since.
    let mut w = ledger.writer(now)?;
    let id = w.consumer(name)?;
    if let Some(t) = &new_terms {
        w.set_consumer_terms(id, t)?;
    }
    let held = w.held_runs_marked(id)?;
    let mut st = w.plan_statements(id)?;
    for r in held {
        plan_run(&w, &mut st, consumer, r, now, seeds, &mut report)?;
    }
    report.deliveries_planned += st.finish()?;
    w.commit()?;
    let mut seq = ledger.consumer_cursor(name)?;
    loop {
        let mut w = ledger.writer(now)?;
        // Each run is planned as it is read (no batch of runs held in memory).
        let mut st = w.plan_statements(id)?;
        let last = w.for_each_changed_run(id, seq, PLAN_CHUNK, |r| {
            plan_run(&w, &mut st, consumer, r, now, seeds, &mut report)
        })?;
        report.deliveries_planned += st.finish()?;
        let Some(last) = last else { break };
        w.set_consumer_cursor(id, last)?;
        w.commit()?;
        seq = last;
    }
    Ok(report)
}

/// The seed rule, when the consumer has seeds waiting (`None` otherwise: no look-up per run).
fn pending_seeds<'s>(
    ledger: &Ledger,
    name: &str,
    seeds: Option<&'s dyn SeedRule>,
) -> Result<Option<&'s dyn SeedRule>, EngineError> {
    if !ledger.has_pending_imports(name)? {
        return Ok(None);
    }
    seeds.map(Some).ok_or_else(|| EngineError::NoSeedRule { consumer: name.to_string() })
}

/// Plans one run in the caller's transaction: a run never planned first takes its job's seed
/// (if one applies), then the planner decides and the decision is stored (items and mark).
fn plan_run(
    w: &Writer<'_>,
    st: &mut PlanStatements<'_>,
    consumer: &Consumer,
    r: MarkedRun,
    now: UnixTime,
    seeds: Option<&dyn SeedRule>,
    report: &mut PlanReport,
) -> Result<(), EngineError> {
    let name = consumer.name.as_str();
    let MarkedRun { run, mut mark, .. } = r;
    report.runs_considered += 1;
    let mut hold = None;
    if let Some(rule) = seeds.filter(|_| mark.mark.is_none() && !mark.done) {
        if let Some(row) = w.pending_import(name, &run.key.cluster, run.key.job_id_raw)? {
            match rule.apply(&row, &run) {
                // Taken once: the row is marked with this run, in the transaction that stores
                // the run's mark.
                Ok(m) => {
                    w.mark_import_applied(name, &run.key.cluster, run.key.job_id_raw, run.key.submit.0)?;
                    st.put_mark(&run.key, &m)?;
                    mark = m;
                }
                Err(reason) => hold = Some(reason),
            }
        }
    }
    let decision = match hold {
        Some(reason) => Decision::Hold(reason),
        None => consumer.planner.plan(&run, &mark, now),
    };
    store(st, &run.key, &mark, decision, report)
}

/// Stores one run's decision: its items, and its mark when that changed.
fn store(
    st: &mut PlanStatements<'_>,
    key: &JobKey,
    prev: &RunMark,
    decision: Decision,
    report: &mut PlanReport,
) -> Result<(), EngineError> {
    match decision {
        Decision::Nothing => {}
        Decision::Hold(reason) => {
            report.runs_held += 1;
            let held = RunMark { hold: Some(reason), ..prev.clone() };
            if held != *prev {
                st.put_mark(key, &held)?;
            }
        }
        Decision::Plan { items, next } => {
            if items.is_empty() && next.hold.is_none() {
                report.runs_without_items += 1;
            }
            for item in items {
                st.insert_item(key, item)?;
            }
            if next.hold.is_some() {
                report.runs_held += 1;
            }
            // A run seen for the first time always gets its row, so that a later change is
            // planned from this mark, never from the start again.
            if next != *prev || prev == &RunMark::default() {
                st.put_mark(key, &next)?;
            }
        }
    }
    Ok(())
}

/// What a plan pass would add.
#[derive(Debug, Default)]
pub struct Preview {
    /// The items it would plan, with their run.
    pub planned: Vec<Delivery>,
    /// The runs it would hold: (run key, reason).
    pub held: Vec<(String, String)>,
}

/// What a plan pass would add, computed from the ledger without writing anything. `--dry-run`.
pub fn preview(
    ledger: &Ledger,
    consumer: &Consumer,
    seeds: Option<&dyn SeedRule>,
    now: UnixTime,
) -> Result<Preview, EngineError> {
    let name = consumer.name.as_str();
    let seeds = pending_seeds(ledger, name, seeds)?;
    check_terms(ledger, consumer)?;
    let mut preview = Preview::default();
    // What a real pass would have written by now: runs already decided, seeds already taken.
    let mut decided: HashSet<JobKey> = HashSet::new();
    let mut seeds_taken: HashSet<(String, u64)> = HashSet::new();
    let mut consider = |r: MarkedRun, preview: &mut Preview| -> Result<(), EngineError> {
        let MarkedRun { run, mut mark, .. } = r;
        if !decided.insert(run.key.clone()) {
            return Ok(());
        }
        let seed_key = (run.key.cluster.as_str().to_string(), run.key.job_id_raw);
        if let Some(rule) = seeds.filter(|_| mark.mark.is_none() && !mark.done && !seeds_taken.contains(&seed_key)) {
            if let Some(row) = ledger.pending_import(name, &run.key.cluster, run.key.job_id_raw)? {
                match rule.apply(&row, &run) {
                    Ok(m) => {
                        seeds_taken.insert(seed_key);
                        mark = m;
                    }
                    Err(reason) => {
                        preview.held.push((run.key.to_string(), reason));
                        return Ok(());
                    }
                }
            }
        }
        match consumer.planner.plan(&run, &mark, now) {
            Decision::Plan { items, next } => {
                preview.planned.extend(items.into_iter().map(|i| pending(name, &run, i, now)));
                if let Some(r) = next.hold {
                    preview.held.push((run.key.to_string(), r));
                }
            }
            Decision::Hold(reason) => preview.held.push((run.key.to_string(), reason)),
            Decision::Nothing => {}
        }
        Ok(())
    };
    for r in ledger.held_runs_marked(name)? {
        consider(r, &mut preview)?;
    }
    let mut seq = ledger.consumer_cursor(name)?;
    loop {
        let batch = ledger.changed_runs(name, seq, PREVIEW_CHUNK)?;
        let Some(last) = batch.last().map(|r| r.seq) else { break };
        seq = last;
        for r in batch {
            consider(r, &mut preview)?;
        }
    }
    preview.planned = with_totals(ledger, name, std::mem::take(&mut preview.planned))?;
    Ok(preview)
}

/// Planned items as a pass would leave them: the increments of one accumulating item summed
/// into one item, carrying the total it would have (its stored total plus them).
fn with_totals(ledger: &Ledger, consumer: &str, planned: Vec<Delivery>) -> Result<Vec<Delivery>, EngineError> {
    let mut out: Vec<Delivery> = Vec::with_capacity(planned.len());
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for d in planned {
        let Some(inc) = d.total.filter(|_| d.key.is_none()) else {
            out.push(d);
            continue;
        };
        match at.get(&d.id) {
            Some(&i) => out[i].total = out[i].total.map(|t| t.saturating_add(inc)),
            None => {
                let stored = ledger.item_total(consumer, &d.id)?.unwrap_or(0);
                at.insert(d.id.clone(), out.len());
                out.push(Delivery { total: Some(stored.saturating_add(inc)), ..d });
            }
        }
    }
    Ok(out)
}

/// A planned item as the outbox would hold it, before it is stored.
/// (An accumulating item shows its increment as its total; [`preview`] sums them.)
fn pending(consumer: &str, run: &JobRun, item: NewItem, now: UnixTime) -> Delivery {
    Delivery {
        seq: 0,
        id: item.id,
        sink: consumer.to_string(),
        key: item.increment.is_none().then(|| run.key.clone()),
        span: item.span,
        amount: item.amount,
        route: item.route,
        total: item.increment,
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        remote_id: None,
    }
}

/// The pure core of [`plan`] for one run, without a ledger (benchmarks, tools): the items of the
/// run after `mark` and its next mark; `Ok(None)` when the run is done for the consumer;
/// `Err(reason)` when it is held.
pub fn plan_one(
    consumer: &Consumer,
    run: &JobRun,
    mark: &RunMark,
    now: UnixTime,
) -> Result<Option<(Vec<Delivery>, RunMark)>, String> {
    match consumer.planner.plan(run, mark, now) {
        Decision::Nothing => Ok(None),
        Decision::Hold(reason) => Err(reason),
        Decision::Plan { items, next } => {
            Ok(Some((items.into_iter().map(|i| pending(&consumer.name, run, i, now)).collect(), next)))
        }
    }
}

/// The run an item belongs to, as the ledger holds it now.
fn run_of(ledger: &Ledger, d: &Delivery) -> Result<Option<JobRun>, EngineError> {
    match &d.key {
        Some(k) => Ok(ledger.job(k)?),
        None => Ok(None),
    }
}

/// How much one [`execute`] may do: it drains the consumer's due items batch after batch until
/// none is left, the deadline passes (a batch under way finishes), or `max_items` were handled.
/// `clock` tells the time transitions are stamped with (the caller's clock: the library reads
/// none); without one, the pass's `now`. `stop`: once set (a daemon told to stop), no further
/// batch starts; the batch under way finishes and records its outcomes.
#[derive(Clone, Copy, Default)]
pub struct Budget<'a> {
    pub deadline: Option<Instant>,
    pub max_items: Option<u64>,
    pub clock: Option<&'a dyn Fn() -> UnixTime>,
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Budget<'_> {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Sends the consumer's due items (those due at `now`), in batches of the sender's
/// [`batch_size`](super::consumer::Sender::batch_size), within `budget`. `progress(done, total)`
/// is called before the first batch and after each. The walk is by outbox id, so an item is
/// handled at most once per call: one that fails waits for its backoff, whatever time is left.
///
/// Per batch: look-ups of items that ever left; one transaction with their answers and the
/// intent (`→ sent`) of every item to send; the sends (up to the sender's concurrency at once);
/// one transaction with the outcomes. A throttled send ends the pass after its batch (see
/// [`ExecReport::paused_until`]).
pub fn execute(
    ledger: &mut Ledger,
    consumer: &Consumer,
    now: UnixTime,
    budget: Budget<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExecReport, EngineError> {
    let name = consumer.name.as_str();
    let batch = consumer.sender.batch_size().max(1) as u64;
    let total = ledger.due_count(name, now, 0)?;
    let at_start = move || now;
    let clock: &dyn Fn() -> UnixTime = budget.clock.unwrap_or(&at_start);
    consumer.sender.begin_pass(clock());
    let mut report = ExecReport::default();
    let (mut done, mut after) = (0u64, 0i64);
    progress(0, total);
    loop {
        let room = budget.max_items.map_or(batch, |m| m.saturating_sub(done).min(batch));
        if room == 0 || budget.stopped() {
            break;
        }
        let due = ledger.due_deliveries(name, now, after, room)?;
        let Some(last) = due.last() else { break };
        after = last.seq;
        done += due.len() as u64;
        let unsent = execute_batch(ledger, consumer, clock, due, &mut report)?;
        progress(done - unsent, total.max(done));
        if report.paused_until.is_some() {
            // Due again as they were: counted with what is left.
            report.left += unsent;
            break;
        }
        if budget.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    report.left += ledger.due_count(name, now, after)?;
    Ok(report)
}

/// One batch of [`execute`]. Transitions are stamped with `clock` when they are written (the
/// intents before the sends, the outcomes after them), not with the pass's start: an item sent
/// late in a long pass is not looked up before its backoff has run from its own send. Returns
/// how many items were put back unsent (the sink was throttled before their turn).
fn execute_batch(
    ledger: &mut Ledger,
    consumer: &Consumer,
    clock: &dyn Fn() -> UnixTime,
    due: Vec<Delivery>,
    report: &mut ExecReport,
) -> Result<u64, EngineError> {
    let now = clock();
    let name = consumer.name.as_str();
    let policy = &consumer.policy;
    let sender = consumer.sender.as_ref();
    let runs = due.iter().map(|d| run_of(ledger, d)).collect::<Result<Vec<_>, _>>()?;
    // An item that ever left may be on the platform (an unknown outcome, a crash, an answer
    // lost): look it up before any resend, whatever state it is in now.
    let mut answers: Vec<(usize, Transition<'_>, Found)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut to_send: Vec<usize> = Vec::with_capacity(due.len());
    let ever_left: Vec<usize> =
        (0..due.len()).filter(|&i| due[i].state == DeliveryState::Sent || due[i].attempts > 0).collect();
    let asked: Vec<(&Delivery, Option<&JobRun>)> = ever_left.iter().map(|&i| (&due[i], runs[i].as_ref())).collect();
    // Nothing to ask, no call: a look-up may cost the sender a scan (JSONL reads its file).
    let mut found = if asked.is_empty() { Vec::new() } else { sender.lookup_batch(&asked) }.into_iter();
    let mut looked_up = ever_left.iter().peekable();
    for (i, d) in due.iter().enumerate() {
        if looked_up.next_if(|&&j| j == i).is_some() {
            let answer = found.next().unwrap_or(Lookup::Failed { reason: "the sender gave no answer".into() });
            match answer {
                Lookup::Found { remote_id } => {
                    answers.push((
                        i,
                        Transition::new(DeliveryState::Delivered, d.attempts, now),
                        Found::Yes(remote_id),
                    ));
                    continue;
                }
                Lookup::NotFound => {}
                Lookup::Failed { reason } => {
                    let at = UnixTime(now.0 + backoff_secs(policy, &d.id, d.attempts.max(1)) as i64);
                    errors.push(format!("look-up failed: {reason}"));
                    answers.push((
                        i,
                        Transition::new(DeliveryState::Sent, d.attempts, at),
                        Found::Failed(errors.len() - 1),
                    ));
                    continue;
                }
            }
        }
        to_send.push(i);
    }
    let wait = |d: &Delivery, attempts: u32, after: Option<u64>| {
        UnixTime(now.0 + after.unwrap_or(0).min(MAX_WAIT_SECS).max(backoff_secs(policy, &d.id, attempts)) as i64)
    };
    // Intent first, for the whole batch: if we die after this, a later pass looks each item up,
    // not before its backoff (a platform may list an event a little after it accepted it). Each
    // transition is conditional: an item another process already took is skipped.
    let mut sending: Vec<usize> = Vec::with_capacity(to_send.len());
    {
        let mut w = ledger.writer(now)?;
        for (i, to, found) in &answers {
            let d = &due[*i];
            let to = match found {
                Found::Yes(remote) => Transition { remote_id: remote.as_deref(), ..*to },
                Found::Failed(e) => Transition { error: Some(errors[*e].as_str()), ..*to },
            };
            if mark_in(&mut w, name, d, (d.state, d.attempts), to)? {
                match found {
                    Found::Yes(_) => report.found_already_delivered += 1,
                    Found::Failed(_) => report.unknown += 1,
                }
            }
        }
        for &i in &to_send {
            let d = &due[i];
            let intent = Transition::new(DeliveryState::Sent, d.attempts + 1, wait(d, d.attempts + 1, None))
                .error(d.last_error.as_deref());
            if mark_in(&mut w, name, d, (d.state, d.attempts), intent)? {
                sending.push(i);
            }
        }
        w.commit()?;
    }
    if sending.is_empty() {
        return Ok(0);
    }
    let items: Vec<(&Delivery, Option<&JobRun>)> = sending.iter().map(|&i| (&due[i], runs[i].as_ref())).collect();
    let outcomes: Vec<Option<Outcome>> = match sender.send_batch(&items) {
        Some(mut all) => {
            // A sender that answered fewer items than it was given: the rest may have left.
            all.resize(items.len(), Outcome::Unknown { reason: "the sender gave no answer for this item".into() });
            all.into_iter().map(Some).collect()
        }
        None => send_each(sender, &items),
    };
    let now = clock();
    let wait = |d: &Delivery, attempts: u32, after: Option<u64>| {
        UnixTime(now.0 + after.unwrap_or(0).min(MAX_WAIT_SECS).max(backoff_secs(policy, &d.id, attempts)) as i64)
    };
    let mut unsent = 0;
    let mut w = ledger.writer(now)?;
    for ((d, _), outcome) in items.iter().zip(&outcomes) {
        let attempts = d.attempts + 1;
        let sent = (DeliveryState::Sent, attempts);
        let Some(outcome) = outcome else {
            // Never left (the sink was throttled before its turn): back as it was before its
            // intent, due now, with nothing to look up.
            unsent += 1;
            let back = Transition::new(d.state, d.attempts, d.next_attempt_at).error(d.last_error.as_deref());
            mark_in(&mut w, name, d, sent, back)?;
            continue;
        };
        let to = match outcome {
            Outcome::Delivered { remote_id } => {
                report.delivered += 1;
                Transition::new(DeliveryState::Delivered, attempts, now).remote(remote_id.as_deref())
            }
            Outcome::Retry { reason, after_secs } => {
                report.retry += 1;
                Transition::new(DeliveryState::Retry, attempts, wait(d, attempts, *after_secs)).error(Some(reason))
            }
            Outcome::Throttled { reason, after_secs } => {
                report.retry += 1;
                let next = wait(d, attempts, *after_secs);
                // The sink's pause is what the platform asked for; the item itself also waits
                // out its backoff.
                let until = after_secs.map_or(next, |a| UnixTime(now.0 + a.min(MAX_WAIT_SECS) as i64));
                report.paused_until = report.paused_until.max(Some(until));
                Transition::new(DeliveryState::Retry, attempts, next).error(Some(reason))
            }
            Outcome::Unknown { reason } => {
                report.unknown += 1;
                Transition::new(DeliveryState::Sent, attempts, wait(d, attempts, None)).error(Some(reason))
            }
            Outcome::Rejected { reason } => {
                report.rejected += 1;
                Transition::new(DeliveryState::Rejected, attempts, now).error(Some(reason))
            }
        };
        mark_in(&mut w, name, d, sent, to)?;
    }
    w.commit()?;
    Ok(unsent)
}

/// The longest a platform's `Retry-After` is honoured: a day.
const MAX_WAIT_SECS: u64 = 86_400;

/// Sends `items` one request each with [`Sender::send`], up to the sender's
/// [`concurrency`](Sender::concurrency) at once: phase by phase ([`Sender::phase`]), each phase in
/// the items' order (an item starts only after every earlier one of its phase started). Once an
/// answer is [`Outcome::Throttled`] (or a send panicked) no new send starts; the sends in flight
/// finish. One answer per item, in the items' order: `None` for an item that never left.
///
/// With a concurrency of 1 the sends run on the caller's thread, one after another.
fn send_each(sender: &dyn Sender, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Option<Outcome>> {
    let n = sender.concurrency().max(1);
    let mut out: Vec<Option<Outcome>> = vec![None; items.len()];
    let mut order: Vec<(u8, usize)> = items.iter().enumerate().map(|(i, (d, _))| (sender.phase(d), i)).collect();
    order.sort_unstable();
    let stop = AtomicBool::new(false);
    let send = |i: usize| {
        let (d, run) = items[i];
        let outcome = sender.send(d, run);
        if matches!(outcome, Outcome::Throttled { .. }) {
            stop.store(true, Ordering::SeqCst);
        }
        outcome
    };
    for phase in order.chunk_by(|a, b| a.0 == b.0) {
        let todo: Vec<usize> = phase.iter().map(|&(_, i)| i).collect();
        if n == 1 || todo.len() == 1 {
            for &i in &todo {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                out[i] = Some(send(i));
            }
            continue;
        }
        let next = AtomicUsize::new(0);
        let answers = Mutex::new(&mut out);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..n.min(todo.len()))
                .map(|_| {
                    scope.spawn(|| {
                        // A send that panics stops the others from starting new ones (a crash
                        // loses the batch's answers; its intents are recorded).
                        let _stop_on_panic = StopOnPanic(&stop);
                        loop {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let Some(&i) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                            let outcome = send(i);
                            answers.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
                        }
                    })
                })
                .collect();
            // Every worker joined; the first panic goes on up as the caller's own.
            let panics: Vec<_> = workers.into_iter().filter_map(|w| w.join().err()).collect();
            if let Some(p) = panics.into_iter().next() {
                std::panic::resume_unwind(p);
            }
        });
    }
    out
}

/// Sets the flag when dropped by a panicking thread.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// What a look-up found, for its transition.
enum Found {
    Yes(Option<String>),
    /// The look-up failed; the index of its error text.
    Failed(usize),
}

/// Where an item moves: state, attempts, next attempt, last error, remote id.
#[derive(Clone, Copy)]
struct Transition<'a> {
    state: DeliveryState,
    attempts: u32,
    next: UnixTime,
    error: Option<&'a str>,
    remote_id: Option<&'a str>,
}

impl<'a> Transition<'a> {
    fn new(state: DeliveryState, attempts: u32, next: UnixTime) -> Self {
        Self { state, attempts, next, error: None, remote_id: None }
    }
    fn error(self, error: Option<&'a str>) -> Self {
        Self { error, ..self }
    }
    fn remote(self, remote_id: Option<&'a str>) -> Self {
        Self { remote_id, ..self }
    }
}

/// Moves an item from `from` (state, attempts) within the writer's transaction. Returns false
/// when the item is no longer in `from` (another process moved it).
fn mark_in(
    w: &mut Writer<'_>,
    consumer: &str,
    d: &Delivery,
    from: (DeliveryState, u32),
    to: Transition<'_>,
) -> Result<bool, EngineError> {
    Ok(w.mark_delivery_from(consumer, &d.id, from, to.state, to.attempts, to.next, to.error, to.remote_id)?)
}

/// Puts a consumer's rejected items (or the one with `id`) back to pending, each with the route
/// its planner gives it now (the fix may be a mapping). Nothing moves unless every one of them
/// has a route. Returns how many moved.
pub fn retry_rejected(
    ledger: &mut Ledger,
    consumer: &Consumer,
    id: Option<&str>,
    now: UnixTime,
) -> Result<u64, EngineError> {
    let name = consumer.name.as_str();
    let rejected: Vec<Delivery> = ledger
        .deliveries(name, Some(DeliveryState::Rejected))?
        .into_iter()
        .filter(|d| id.map_or(true, |id| id == d.id))
        .collect();
    let mut routes = Vec::with_capacity(rejected.len());
    for d in &rejected {
        let route = match run_of(ledger, d)? {
            Some(run) => consumer.planner.reroute(&run, d).map_err(|reason| EngineError::StillUnroutable {
                consumer: name.to_string(),
                id: d.id.clone(),
                reason,
            })?,
            None if d.key.is_some() => {
                return Err(EngineError::RunMissing { consumer: name.to_string(), id: d.id.clone(), run: d.run_text() })
            }
            None => d.route.clone(),
        };
        routes.push((d.id.as_str(), route));
    }
    let mut w = ledger.writer(now)?;
    let mut n = 0;
    for (id, route) in routes {
        n += u64::from(w.requeue_rejected(name, id, route.as_deref())?);
    }
    w.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests;
