//! Sinks: one folder per platform. Each sink says, purely, how it bills a run ([`Sink::rate`])
//! and what one slice's request looks like ([`Sink::render`]); and, with I/O, how to send a
//! delivery and how to find out whether the platform already has it.
//!
//! Retryability is decided in one place, the [`Outcome`] a sink returns. No sink imports another;
//! the ledger stores a sink's name and its opaque payloads and knows no sink.

pub mod activate;
pub mod jsonl;
pub mod secret;

use crate::config::Metering;
use crate::delivery::plan::Slice;
use crate::ledger::Delivery;
use crate::meter::billed_count;
use crate::meter::period::Calendar;
use crate::meter::units::Unit;
use crate::model::JobRun;

/// The calendar of a sink's metering settings.
pub fn calendar(m: &Metering) -> Result<Calendar, String> {
    let tz = jiff::tz::TimeZone::get(&m.timezone).map_err(|e| format!("time zone {:?}: {e}", m.timezone))?;
    Ok(Calendar { kind: m.period, tz })
}

/// The unit a TRES is reported in: GiB-hours for byte quantities, hours of the count otherwise.
pub fn unit_of(tres: &str) -> Unit {
    if tres == "mem" || tres == "vmem" || tres.starts_with("fs/") || tres.starts_with("bb/") {
        Unit::GIB_HOURS
    } else {
        Unit::HOURS
    }
}

/// How a sink with these metering settings bills a run: its count of the billed TRES (0 when
/// the run has none of it: nothing is reported) in that TRES's unit.
pub fn metered_rate(m: &Metering, job: &JobRun) -> Rate {
    let count = billed_count(job, m.basis, &m.tres);
    Rate { count, unit: unit_of(&m.tres) }
}

/// How a sink bills one run: a count of one TRES, in a unit, cut in a calendar.
#[derive(Debug, Clone)]
pub struct Rate {
    pub count: u64,
    pub unit: Unit,
}

/// What happened to one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The platform recorded it.
    Delivered { remote_id: Option<String> },
    /// The platform certainly did not record it (refused connection, 429, 503 before
    /// processing); try again, not before `after_secs` if the platform said so.
    Retry { reason: String, after_secs: Option<u64> },
    /// The request may have been recorded (timeout after sending, dropped connection, 5xx):
    /// look it up before sending again.
    Unknown { reason: String },
    /// The platform refuses it for good (4xx): kept with the reason until retried by command.
    Rejected { reason: String },
}

/// Whether the platform already has a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found { remote_id: Option<String> },
    NotFound,
    Failed { reason: String },
}

/// A platform that receives usage.
pub trait Sink {
    /// The sink's name in the ledger (`activate`, …). Stable: renaming loses the sink's state.
    fn name(&self) -> &str;
    /// The calendar whose periods slices never cross.
    fn calendar(&self) -> &Calendar;
    /// Pure: how this run is billed, or why it cannot be (held with this reason until fixed).
    fn rate(&self, job: &JobRun) -> Result<Rate, String>;
    /// Pure: the request body for one slice.
    fn render(&self, job: &JobRun, slice: &Slice, delivery_id: &str, quantity: &str) -> Result<String, String>;
    /// Sends one delivery.
    fn send(&self, d: &Delivery) -> Outcome;
    /// Looks up whether the platform already recorded this delivery.
    fn lookup(&self, d: &Delivery) -> Lookup;
    /// The request a delivery becomes, as `--dry-run` prints it (no secrets).
    fn describe(&self, d: &Delivery) -> String {
        d.payload.clone()
    }
}
