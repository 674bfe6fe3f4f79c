//! Metering: what a job run used over an interval, per TRES. Pure: no clock, no I/O.
//!
//! A run's **billable span** is `[start, start + elapsed)`, where `elapsed` is Slurm's ElapsedRaw
//! (suspended time already excluded). For a running run, `elapsed` is what Slurm had accounted
//! when the ledger last saw it, so nothing is billed ahead of Slurm's own record, and a run that
//! is suspended later is never over-billed. Slurm does not say *when* a run was suspended, only
//! for how long; the span therefore places all billable seconds from the start.
//!
//! Usage is exact: integer TRES-seconds (`u128`; memory in byte-seconds). Conversion to a
//! platform's unit and rounding happen only at the edge ([`units`]), on cumulative totals, so
//! the reported slices of a run add up exactly to its rounded total.

pub mod period;
pub mod units;

use crate::model::{JobRun, UnixTime};

/// Which TRES figures are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// AllocTRES: what the run held (whole nodes for exclusive jobs, `--mem=0`…). Default.
    Allocated,
    /// ReqTRES: what was asked for (the Waldur site agent's rule).
    Requested,
}

/// The TRES counts billed for a run, typed GPUs folded once into `gres/gpu`.
///
/// `cpu` falls back to AllocCPUS when the TRES string has none (old formats); `gres/gpu` is the
/// untyped count, or the sum of the typed ones when Slurm printed only typed entries.
pub fn billed_tres(job: &JobRun, basis: Basis) -> Vec<(String, u64)> {
    let tres = match basis {
        Basis::Allocated => &job.alloc_tres,
        Basis::Requested => &job.req_tres,
    };
    let mut out: Vec<(String, u64)> = Vec::with_capacity(tres.iter().count() + 2);
    out.extend(tres.iter().map(|(k, n)| (k.to_string(), n)));
    if tres.get("cpu").is_none() {
        let cpus = match basis {
            Basis::Allocated => job.alloc_cpus,
            Basis::Requested => job.req_cpus,
        };
        if cpus > 0 {
            out.push(("cpu".into(), cpus as u64));
        }
    }
    let gpus = tres.gpus();
    if gpus > 0 && tres.get("gres/gpu").is_none() {
        out.push(("gres/gpu".into(), gpus));
    }
    out.sort();
    out
}

/// The count of one billed TRES of `job`, as [`billed_tres`] gives it, without building the
/// list: the metering hot path (one call per run and sink).
pub fn billed_count(job: &JobRun, basis: Basis, name: &str) -> u64 {
    let tres = match basis {
        Basis::Allocated => &job.alloc_tres,
        Basis::Requested => &job.req_tres,
    };
    if let Some(n) = tres.get(name) {
        return n;
    }
    match name {
        "cpu" => u64::from(match basis {
            Basis::Allocated => job.alloc_cpus,
            Basis::Requested => job.req_cpus,
        }),
        "gres/gpu" => tres.gpus(),
        _ => 0,
    }
}

/// The wall-clock span whose seconds are billed: `[start, start + elapsed)`, or `None` for a
/// run that never started or used no time.
pub fn billable_span(job: &JobRun) -> Option<(UnixTime, UnixTime)> {
    let start = job.start?;
    let elapsed = i64::try_from(job.elapsed_secs).ok()?;
    (elapsed > 0).then(|| (start, UnixTime(start.0 + elapsed)))
}

/// Billable seconds of `job` inside `[from, to)`.
pub fn billable_secs(job: &JobRun, from: UnixTime, to: UnixTime) -> u64 {
    match billable_span(job) {
        Some((a, b)) => {
            let lo = a.0.max(from.0);
            let hi = b.0.min(to.0);
            (hi - lo).max(0) as u64
        }
        None => 0,
    }
}

/// TRES-seconds of one TRES over a number of billable seconds.
pub fn tres_seconds(count: u64, secs: u64) -> u128 {
    count as u128 * secs as u128
}

/// Usage of every billed TRES of `job` inside `[from, to)`, in TRES-seconds.
pub fn usage(job: &JobRun, basis: Basis, from: UnixTime, to: UnixTime) -> Vec<(String, u128)> {
    let secs = billable_secs(job, from, to);
    billed_tres(job, basis).into_iter().map(|(k, n)| (k, tres_seconds(n, secs))).collect()
}

#[cfg(test)]
mod tests;
