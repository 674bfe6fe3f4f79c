//! The event planner: a run's start and its end as once-only items, for the sinks that follow
//! jobs as they happen (cc-backend's `start_job`/`stop_job`, NATS job events). Pure.
//!
//! A run that has started gets a start item (`start:{cluster}:{job_id_raw}:{submit}`); once it is
//! final, a stop item (`stop:…`, planned after the start, in the same pass when the run was first
//! seen already ended). The mark is a bit set of what was planned ([`START`], [`STOP`]); the run
//! is done after its stop, or at once when it ended without ever starting (cancelled while
//! pending: no event) or the sink skips it ([`EventFilter`]: cc-backend's jobs without
//! resources). Item spans: the start instant; `[start, end]` for the stop.
//!
//! Invariant: each event of a run is planned at most once per sink (its id is the run's key and
//! the event), and a stop is never planned before its start: the outbox keeps planning order, so
//! a sender that sends in order sends a run's start first.

use crate::ledger::{Delivery, NewItem, RunMark};
use crate::model::{JobKey, JobRun, UnixTime};

use super::consumer::{Decision, Planner};

/// Bit of the mark: the start is planned.
pub const START: i64 = 1;
/// Bit of the mark: the stop is planned.
pub const STOP: i64 = 2;

/// Which event an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Stop,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    /// The event an item id names (`None`: not an event item).
    pub fn of_id(id: &str) -> Option<Self> {
        if id.starts_with("start:") {
            Some(Self::Start)
        } else if id.starts_with("stop:") {
            Some(Self::Stop)
        } else {
            None
        }
    }
}

/// The id of a run's event: `start:{cluster}:{job_id_raw}:{submit}` (or `stop:`). Unique per run
/// and event, and stable: a platform that de-duplicates by id (JetStream's `Nats-Msg-Id`) sees
/// the same id for the same event whenever it is sent.
pub fn event_id(kind: EventKind, key: &JobKey) -> String {
    format!("{}:{}:{}:{}", kind.as_str(), key.cluster.as_str(), key.job_id_raw, key.submit.0)
}

/// What a sink leaves out: `Some(reason)` for a run that gets no events at all (it is marked done
/// at once, and the reason is logged at debug level). Decided once per run, when it first starts.
pub trait EventFilter {
    fn skip(&self, run: &JobRun) -> Option<String>;
}

/// Every started run gets its events.
pub struct AllRuns;

impl EventFilter for AllRuns {
    fn skip(&self, _run: &JobRun) -> Option<String> {
        None
    }
}

/// The event planner of a sink (see the module doc).
pub struct EventPlanner<F> {
    filter: F,
}

impl<F: EventFilter> EventPlanner<F> {
    pub fn new(filter: F) -> Self {
        Self { filter }
    }
}

impl<F: EventFilter> Planner for EventPlanner<F> {
    fn plan(&self, run: &JobRun, mark: &RunMark, _now: UnixTime) -> Decision {
        let planned = mark.mark.unwrap_or(0);
        let final_run = run.state.is_final();
        let Some(start) = run.start else {
            // Not started: nothing yet; never to start once final (cancelled while pending).
            return if final_run { done(planned) } else { Decision::Nothing };
        };
        let mut items = Vec::with_capacity(2);
        let mut next = planned;
        if planned & START == 0 {
            if let Some(reason) = self.filter.skip(run) {
                tracing::debug!(run = %run.key, %reason, "no events for this run");
                return done(planned);
            }
            items.push(NewItem::once(event_id(EventKind::Start, &run.key), Some((start, start)), None, None));
            next |= START;
        }
        if final_run && planned & STOP == 0 {
            let end = run.end.unwrap_or(start).max(start);
            items.push(NewItem::once(event_id(EventKind::Stop, &run.key), Some((start, end)), None, None));
            next |= STOP;
        }
        if items.is_empty() {
            return Decision::Nothing;
        }
        Decision::Plan { items, next: RunMark { mark: Some(next), done: final_run, hold: None } }
    }

    fn reroute(&self, _run: &JobRun, _item: &Delivery) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// The run needs nothing more (the mark keeps what was planned).
fn done(planned: i64) -> Decision {
    Decision::Plan { items: Vec::new(), next: RunMark { mark: Some(planned), done: true, hold: None } }
}

#[cfg(test)]
mod tests;
