//! The consumer interface: what the engine asks of anything that follows the ledger.
//!
//! A consumer is a [`Planner`] (pure: a changed run and the consumer's mark for it → new outbox
//! items and the next mark) and a [`Sender`] (I/O: send an item, look one up). The engine knows
//! neither what an item means nor where it goes: it keeps the cursor loop, the marks, held runs,
//! the outbox state machine, backoff, and how many requests a sink has in flight at once
//! ([`Sender::concurrency`]). Retryability is decided in one place, the [`Outcome`] a sender
//! returns; a sink-wide slow-down is one of them ([`Outcome::Throttled`]).

use crate::ledger::{Delivery, NewItem, RunMark};
use crate::model::{ClusterName, JobRun, NodeState, UnixTime};

/// What planning one run decides, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to plan or store for this run now (its mark says done, or nothing is due yet).
    Nothing,
    /// Cannot be planned now: the mark is kept, with this reason (shown by `status`).
    Hold(String),
    /// New items of this run and its next mark (which may itself hold the run, with a reason).
    Plan { items: Vec<NewItem>, next: RunMark },
}

/// Pure planning: no clock but `now`, no I/O.
pub trait Planner {
    /// What is new in `run` for this consumer after `mark`.
    fn plan(&self, run: &JobRun, mark: &RunMark, now: UnixTime) -> Decision;
    /// The route an item of `run` takes now (for `retry` after a mapping was fixed), or why it
    /// still has none.
    fn reroute(&self, run: &JobRun, item: &Delivery) -> Result<Option<String>, String>;
    /// The terms this planner bills on, as text: what its items mean (for slices: TRES, basis,
    /// unit, period, zone), not where they go. Items are planned on the terms stored for the
    /// consumer; a pass with other terms is refused until the change is accepted, so that a
    /// changed setting never silently re-plans or skips what was already planned.
    fn terms(&self) -> Option<String> {
        None
    }
}

/// What happened to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The platform recorded it.
    Delivered { remote_id: Option<String> },
    /// The platform certainly did not record it (refused connection, 503 before processing);
    /// try again, not before `after_secs` if the platform said so.
    Retry { reason: String, after_secs: Option<u64> },
    /// The platform asked the whole sink to slow down (HTTP 429) and did not record the item.
    /// The engine starts no other send to the sink in this pass, puts back as they were the
    /// items of the batch that had not left, and retries this one not before `after_secs` (the
    /// platform's `Retry-After`; without one, its backoff). The pass reports when the sink may
    /// be sent to again ([`ExecReport::paused_until`](super::engine::ExecReport::paused_until)).
    Throttled { reason: String, after_secs: Option<u64> },
    /// The request may have been recorded (timeout after sending, dropped connection, 5xx):
    /// look it up before sending again.
    Unknown { reason: String },
    /// The platform refuses it for good (4xx): kept with the reason until retried by command.
    Rejected { reason: String },
}

/// Whether the platform already has an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found { remote_id: Option<String> },
    NotFound,
    Failed { reason: String },
}

/// Why a sender cannot turn an item into its request (an item planned by another consumer or
/// release, a run the ledger lost). The item is refused, never sent half-made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("item {id} refers to a run the ledger does not have")]
    NoRun { id: String },
    #[error("item {id} has no slice (span and quantity)")]
    NoSlice { id: String },
    #[error("item {id} has no usable route ({route:?}): it was planned by another sink or release")]
    BadRoute { id: String, route: Option<String> },
    #[error("item {id}: quantity {quantity:?} is not a number")]
    BadQuantity { id: String, quantity: String },
}

/// I/O: where items go. `run` is the item's run as the ledger holds it now (`None` for an item
/// of no run, or a run the ledger no longer has).
///
/// `Sync`: the engine calls [`Sender::send`] from up to [`Sender::concurrency`] threads at once,
/// so what a sender caches sits behind a lock.
pub trait Sender: Sync {
    /// Sends one item.
    fn send(&self, item: &Delivery, run: Option<&JobRun>) -> Outcome;
    /// Sends a whole batch at once, for a sender that does better than one request per item
    /// (JSONL: one append and one sync): one outcome per item, in order. The engine recorded
    /// every item's intent before this call and records the outcomes after it. `None` (the
    /// default): the engine sends the items itself with [`Sender::send`], up to
    /// [`Sender::concurrency`] at once, and stops starting new ones at a
    /// [`Outcome::Throttled`].
    fn send_batch(&self, _items: &[(&Delivery, Option<&JobRun>)]) -> Option<Vec<Outcome>> {
        None
    }
    /// How many items the engine sends at once when it sends them one by one (no
    /// [`Sender::send_batch`]): each a blocking request on its own thread. 1 (the default): one
    /// after another.
    fn concurrency(&self) -> usize {
        1
    }
    /// When an item may leave within its batch: the engine sends a batch phase by phase, lowest
    /// first, and starts a phase only once every item of the earlier ones has answered. For a
    /// platform where one item needs another in (Waldur: a user's part needs its total; cc-backend:
    /// a stop needs its start). 0 (the default) for all: one phase, in outbox order.
    fn phase(&self, _item: &Delivery) -> u8 {
        0
    }
    /// Called when a pass starts sending, with the time: a sender that caches what the platform
    /// holds forgets it here, so a sender kept across passes (the daemon) never answers from what
    /// it read before another process wrote; one whose rules depend on the date learns it.
    fn begin_pass(&self, _now: UnixTime) {}
    /// A backfill reports the months of `[from, until)` (UTC month bounds) whatever their age
    /// (`now`: the time of the check): a sender whose platform closes past periods (Waldur after
    /// a grace) keeps those open for as long as it lives, and checks first that the platform
    /// will take them (Waldur: a staff token), so that a backfill fails at once, not month after
    /// month.
    fn reopen(&self, _from: UnixTime, _until: UnixTime, _now: UnixTime) -> Result<(), ReopenError> {
        Ok(())
    }
    /// How many items the engine hands [`Sender::send_batch`] at once (and records per
    /// transaction). A crash loses at most one batch's answers: those items are looked up.
    fn batch_size(&self) -> usize {
        32
    }
    /// Looks up whether the platform already recorded this item.
    fn lookup(&self, item: &Delivery, run: Option<&JobRun>) -> Lookup;
    /// Looks up a batch: one answer per item, in order. The default asks one by one; a sender
    /// that can answer many at once (one scan of a file) does.
    fn lookup_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Lookup> {
        items.iter().map(|(d, run)| self.lookup(d, *run)).collect()
    }
    /// A total of an accumulating item as the platform shows it (Waldur: `12.34 k-Hours`), for
    /// `status`; `None`: no unit of its own (the exact figure is shown).
    fn figure(&self, _item: &Delivery, _total: i64) -> Option<String> {
        None
    }
    /// The request an item becomes, as `--dry-run` prints it (no secrets).
    fn describe(&self, item: &Delivery, run: Option<&JobRun>) -> String;
    /// Whether this sender renders runs' allocation detail (`JobRun::allocation`: which CPUs and
    /// GPUs of which node). A pass then asks slurmctld for it, once per run that started, before
    /// it delivers; without any such sender nobody asks.
    fn wants_allocations(&self) -> bool {
        false
    }
    /// Whether this sender renders runs' batch scripts (asked with the allocation detail, one
    /// `scontrol write batch_script` per run).
    fn wants_job_scripts(&self) -> bool {
        false
    }
    /// Whether this sender reports node states: a pass then reads them (one `sinfo` per cluster)
    /// after delivering and hands them to [`Sender::node_states`].
    fn wants_node_states(&self) -> bool {
        false
    }
    /// Reports `cluster`'s node states as read now (a side task of the pass: not an outbox item,
    /// nothing is retried; the next pass sends newer ones). An error is logged and counted by the
    /// pass and never holds up deliveries.
    fn node_states(&self, _cluster: &ClusterName, _nodes: &[NodeState]) -> Result<(), String> {
        Ok(())
    }
    /// The jobs of `cluster` the platform shows as running, for the pass to reconcile with the
    /// ledger (a job the ledger does not hold is asked of sacct by id, so its stop is planned);
    /// `None`: this sender keeps no such list, or need not be asked again yet.
    fn running_jobs(&self, _cluster: &ClusterName) -> Option<Result<Vec<RunningJob>, String>> {
        None
    }
}

/// A job a platform shows as running: its id and start (what names a run of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningJob {
    pub job_id: u64,
    pub start: UnixTime,
}

/// Why a sender cannot report past months.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReopenError {
    /// The platform will not take them from these credentials (the operator's to fix).
    #[error("{0}")]
    Refused(String),
    /// The platform could not be asked.
    #[error("{0}")]
    Unreachable(String),
}

/// Retry timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnginePolicy {
    /// First retry delay; doubles per attempt up to `max_backoff_secs`.
    pub base_backoff_secs: u64,
    pub max_backoff_secs: u64,
}

impl Default for EnginePolicy {
    fn default() -> Self {
        Self { base_backoff_secs: 30, max_backoff_secs: 3600 }
    }
}

/// One consumer of the ledger: its name (stable: renaming loses its state), planner, sender.
pub struct Consumer {
    pub name: String,
    pub planner: Box<dyn Planner>,
    pub sender: Box<dyn Sender>,
    pub policy: EnginePolicy,
}

impl Consumer {
    pub fn new(name: &str, planner: Box<dyn Planner>, sender: Box<dyn Sender>, policy: EnginePolicy) -> Self {
        Self { name: name.to_string(), planner, sender, policy }
    }
}
