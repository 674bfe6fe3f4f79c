//! The pure planner: what is left to report of one run, as slices.

use crate::ledger::SinkRun;
use crate::meter::period::Calendar;
use crate::meter::units::Unit;
use crate::meter::{billable_span, tres_seconds};
use crate::model::{JobRun, UnixTime};

/// One slice of a run's billable span, with its quantity in `10^-decimals` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: UnixTime,
    pub end: UnixTime,
    pub quantity: u128,
}

/// The outcome of planning one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    /// New slices to deliver (zero-quantity slices are not delivered; the frontier still moves).
    pub slices: Vec<Slice>,
    pub next: SinkRun,
}

/// Plans what is left of `job` after `prev`, billing `count` of one TRES in `unit`.
///
/// `min_running_slice_secs`: a run that is still going is only sliced once this much new
/// billable time has accrued (the final remainder is always planned).
pub fn plan_run(
    job: &JobRun,
    prev: &SinkRun,
    count: u64,
    unit: Unit,
    cal: &Calendar,
    min_running_slice_secs: i64,
) -> RunPlan {
    let final_run = job.state.is_final();
    let Some((span_start, span_end)) = billable_span(job) else {
        // Never started, or no billable time: nothing to report; final runs are complete.
        return RunPlan {
            slices: vec![],
            next: SinkRun { planned_until: prev.planned_until, complete: final_run, hold_reason: None },
        };
    };
    let from = prev.planned_until.map_or(span_start, |p| p.max(span_start));
    if from > span_end {
        // Slurm now accounts less time than was already planned (re-accounting, a purge): the
        // delivered part cannot be taken back. Hold and say so; never plan negative usage.
        let reason = format!(
            "Slurm now reports {} s of billable time but {} s were already planned; check the job (`sacct -j {}`) and resolve by hand",
            span_end.0 - span_start.0,
            from.0 - span_start.0,
            job.key.job_id_raw
        );
        return RunPlan {
            slices: vec![],
            next: SinkRun { planned_until: prev.planned_until, complete: false, hold_reason: Some(reason) },
        };
    }
    if !final_run && span_end.0 - from.0 < min_running_slice_secs.max(1) {
        return RunPlan {
            slices: vec![],
            next: SinkRun { planned_until: Some(from), complete: false, hold_reason: None },
        };
    }
    let cum = |t: UnixTime| tres_seconds(count, (t.0 - span_start.0) as u64);
    let slices = cal
        .pieces(from, span_end)
        .map(|(a, b)| Slice { start: a, end: b, quantity: unit.slice(cum(a), cum(b)) })
        .filter(|s| s.quantity > 0)
        .collect();
    RunPlan { slices, next: SinkRun { planned_until: Some(span_end), complete: final_run, hold_reason: None } }
}

#[cfg(test)]
mod tests;
