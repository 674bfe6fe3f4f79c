//! Totals per period: the planning side of consumers that *set* a period's total on the far side
//! (Waldur's month-to-date usage) rather than add slices. Pure.
//!
//! A run's mark is the instant up to which its billable span `[Start, Start+ElapsedRaw)` has been
//! counted. Planning counts what is new after it, cut at period boundaries in the consumer's zone
//! (DST included): each piece says how many billable seconds of the run fall in one period. The
//! consumer turns pieces into increments of accumulating items (one per total), which the engine
//! adds to the stored totals in the plan transaction: a second of a run is counted in exactly one
//! period, once.
//!
//! A run that Slurm now accounts *less* time than was counted (re-accounting, a purge) would lower
//! totals already reported: it is held with a reason saying by how much, unless the consumer
//! allows decreases, in which case the seconds taken back are negative pieces.

use crate::ledger::RunMark;
use crate::meter::period::Calendar;
use crate::model::{JobRun, UnixTime};

/// Billable seconds of a run newly counted in one period (negative: taken back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The period `[start, end)` the seconds fall in.
    pub period: (UnixTime, UnixTime),
    pub secs: i64,
}

/// What counting one run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Count {
    /// New seconds per period (possibly none) and the run's next mark.
    Pieces { pieces: Vec<Counted>, next: RunMark },
    /// Not counted now: the totals would go down. The reason says by how much and how to allow it.
    Hold(String),
}

/// How a consumer of totals counts runs.
#[derive(Debug, Clone)]
pub struct Counting {
    pub calendar: Calendar,
    /// A running run is counted once this much new billable time has accrued (its final
    /// remainder always is).
    pub min_running_secs: i64,
    /// Whether time Slurm takes back from a run may lower totals already counted.
    pub allow_decrease: bool,
}

impl Counting {
    /// What is new in `job` after `prev`.
    pub fn count(&self, job: &JobRun, prev: &RunMark) -> Count {
        let final_run = job.state.is_final();
        let Some(start) = job.start else {
            return match prev.mark {
                // Slurm does not un-start a run; if it ever shows one so, say it rather than guess.
                Some(_) => Count::Hold(format!(
                    "Slurm no longer shows a start for this run, whose time was already counted; check the job (`sacct -j {}`)",
                    job.key.job_id_raw
                )),
                None => Count::Pieces { pieces: vec![], next: RunMark { mark: None, done: final_run, hold: None } },
            };
        };
        // Billable seconds sit at the start of the run (see `meter`): `[start, end)` now.
        let end = UnixTime(start.0.saturating_add(i64::try_from(job.elapsed_secs).unwrap_or(i64::MAX)));
        let from = prev.mark.map_or(start, |m| UnixTime(m.max(start.0)));
        if from > end {
            return self.taken_back(job, start, end, from);
        }
        if !final_run && end.0 - from.0 < self.min_running_secs.max(1) {
            return Count::Pieces { pieces: vec![], next: RunMark { mark: Some(from.0), done: false, hold: None } };
        }
        let pieces = self.pieces(from, end, 1);
        Count::Pieces { pieces, next: RunMark { mark: Some(end.0), done: final_run, hold: None } }
    }

    /// A run counted up to `counted`, past what Slurm accounts now (`[start, end)`): the seconds
    /// `[end, counted)` are taken back if allowed, else the run is held.
    fn taken_back(&self, job: &JobRun, start: UnixTime, end: UnixTime, counted: UnixTime) -> Count {
        let lost = counted.0 - end.0;
        if !self.allow_decrease {
            return Count::Hold(format!(
                "Slurm now accounts {} s of billable time for this run, {lost} s less than was already counted: its totals \
                 would go down. Check the job (`sacct -j {}`); to lower them, set allow_decrease = true in the sink's config",
                end.0 - start.0,
                job.key.job_id_raw
            ));
        }
        Count::Pieces {
            pieces: self.pieces(end, counted, -1),
            next: RunMark { mark: Some(end.0), done: job.state.is_final(), hold: None },
        }
    }

    /// `[from, to)` cut at period boundaries, each piece's seconds times `sign`.
    fn pieces(&self, from: UnixTime, to: UnixTime, sign: i64) -> Vec<Counted> {
        self.calendar
            .pieces(from, to)
            .map(|(a, b)| Counted { period: self.calendar.period_of(a), secs: sign * (b.0 - a.0) })
            .filter(|c| c.secs != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests;
