//! The slice planner: today's metering as a [`Planner`], shared by the sinks that bill usage as
//! it accrues (ACTIVATE, JSONL). Pure.
//!
//! A run's billable span `[Start, Start+ElapsedRaw)` is cut into slices that never overlap and
//! never cross a billing period (day or month) in the sink's zone; a slice's quantity is the
//! difference of the rounded cumulative totals at its ends, so a run's slices add up exactly to
//! its rounded total. The run's mark is the instant up to which its span is planned.
//!
//! Invariant: a second of a run's billable span is in at most one slice per sink, and once the
//! run is final, in exactly one.
//!
//! A sink says how it prices a run ([`Pricing`]: a count of one TRES in a unit, and the route
//! its items take, e.g. ACTIVATE's allocation and SKU); an item's id is [`delivery_id`].

use crate::ledger::{Delivery, NewItem, RunMark};
use crate::meter::period::{Calendar, PeriodKind};
use crate::meter::units::Unit;
use crate::meter::{billable_span, billed_count, tres_seconds, Basis};
use crate::model::{JobRun, UnixTime};
use crate::validate::{parse_duration_secs, push, Problems};

use super::consumer::{Decision, Planner, RenderError};

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
    /// New slices to deliver (zero-quantity slices are not delivered; the mark still moves).
    pub slices: Vec<Slice>,
    pub next: RunMark,
}

/// Plans what is left of `job` after `prev`, billing `count` of one TRES in `unit`.
///
/// `min_running_slice_secs`: a run that is still going is only sliced once this much new
/// billable time has accrued (the final remainder is always planned).
pub fn plan_run(
    job: &JobRun,
    prev: &RunMark,
    count: u64,
    unit: Unit,
    cal: &Calendar,
    min_running_slice_secs: i64,
) -> RunPlan {
    let final_run = job.state.is_final();
    let Some((span_start, span_end)) = billable_span(job) else {
        // Never started, or no billable time: nothing to report; final runs are complete.
        return RunPlan { slices: vec![], next: RunMark { mark: prev.mark, done: final_run, hold: None } };
    };
    let from = prev.mark.map_or(span_start, |p| UnixTime(p.max(span_start.0)));
    if from > span_end {
        // Slurm now accounts less time than was already planned (re-accounting, a purge): the
        // delivered part cannot be taken back. Hold and say so; never plan negative usage.
        let reason = format!(
            "Slurm now reports {} s of billable time but {} s were already planned; check the job (`sacct -j {}`) and resolve by hand",
            span_end.0 - span_start.0,
            from.0 - span_start.0,
            job.key.job_id_raw
        );
        return RunPlan { slices: vec![], next: RunMark { mark: prev.mark, done: false, hold: Some(reason) } };
    }
    if !final_run && span_end.0 - from.0 < min_running_slice_secs.max(1) {
        return RunPlan { slices: vec![], next: RunMark { mark: Some(from.0), done: false, hold: None } };
    }
    let cum = |t: UnixTime| tres_seconds(count, (t.0 - span_start.0) as u64);
    let slices = cal
        .pieces(from, span_end)
        .map(|(a, b)| Slice { start: a, end: b, quantity: unit.slice(cum(a), cum(b)) })
        .filter(|s| s.quantity > 0)
        .collect();
    RunPlan { slices, next: RunMark { mark: Some(span_end.0), done: final_run, hold: None } }
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

/// How a sink meters runs: which TRES, allocated or requested, cut in which periods. The keys
/// every slice sink's config section has (`tres`, `basis`, `period`, `timezone`, `running_slice`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Metering {
    /// The TRES counted (`cpu` → core-hours, `mem` → GiB-hours, `gres/gpu` → GPU-hours, …).
    pub tres: String,
    pub basis: Basis,
    pub period: PeriodKind,
    /// IANA zone in which billing periods are cut.
    pub timezone: String,
    /// A running run is reported once this much new billable time has accrued.
    pub running_slice_secs: i64,
}

impl Metering {
    /// Reads and checks the metering keys of `[sinks.NAME]`; every problem names its key.
    pub fn validate(
        problems: &mut Problems,
        sink: &str,
        tres: Option<String>,
        basis: Option<String>,
        period: Option<String>,
        timezone: Option<String>,
        running_slice: Option<String>,
    ) -> Metering {
        let key = |k: &str| format!("sinks.{sink}.{k}");
        let tres = tres.unwrap_or_else(|| "cpu".into());
        let tres_ok = !tres.is_empty()
            && tres.len() <= 64
            && tres.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | ':' | '.'));
        if !tres_ok {
            push(
                problems,
                key("tres"),
                format!("{tres:?} is not a TRES name; use e.g. \"cpu\", \"mem\", \"gres/gpu\", \"billing\""),
            );
        }
        let basis = validate_basis(problems, &key("basis"), basis);
        let period = match period.as_deref() {
            None | Some("day") => PeriodKind::Day,
            Some("month") => PeriodKind::Month,
            Some(other) => {
                push(problems, key("period"), format!("is {other:?}; use \"day\" (default) or \"month\""));
                PeriodKind::Day
            }
        };
        let timezone = validate_zone(problems, &key("timezone"), timezone);
        let running_slice_secs = validate_running_slice(problems, &key("running_slice"), running_slice);
        Metering { tres, basis, period, timezone, running_slice_secs }
    }

    /// The calendar whose periods slices never cross.
    pub fn calendar(&self) -> Result<Calendar, MeteringError> {
        let tz = jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|e| MeteringError::TimeZone { zone: self.timezone.clone(), reason: e.to_string() })?;
        Ok(Calendar { kind: self.period, tz })
    }

    /// What a sink with these settings bills, as [`Planner::terms`] states it: TRES, basis,
    /// unit, period and zone (`running_slice` only says how often, so it is not a term).
    pub fn terms(&self) -> String {
        let basis = match self.basis {
            Basis::Allocated => "allocated",
            Basis::Requested => "requested",
        };
        let unit = if self.unit() == Unit::HOURS { "hours" } else { "GiB-hours" };
        let period = match self.period {
            PeriodKind::Day => "day",
            PeriodKind::Month => "month",
        };
        format!("tres={} basis={basis} unit={unit} period={period} zone={}", self.tres, self.timezone)
    }

    /// The unit the billed TRES is reported in.
    pub fn unit(&self) -> Unit {
        unit_of(&self.tres)
    }

    /// The run's count of the billed TRES (0 when it has none: nothing is reported).
    pub fn count(&self, job: &JobRun) -> u64 {
        billed_count(job, self.basis, &self.tres)
    }
}

/// `basis`: "allocated" (default) or "requested".
pub fn validate_basis(problems: &mut Problems, key: &str, basis: Option<String>) -> Basis {
    match basis.as_deref() {
        None | Some("allocated") => Basis::Allocated,
        Some("requested") => Basis::Requested,
        Some(other) => {
            push(
                problems,
                key,
                format!("is {other:?}; use \"allocated\" (AllocTRES, default) or \"requested\" (ReqTRES)"),
            );
            Basis::Allocated
        }
    }
}

/// `timezone`: an IANA zone in this machine's database (default UTC).
pub fn validate_zone(problems: &mut Problems, key: &str, zone: Option<String>) -> String {
    let zone = zone.unwrap_or_else(|| "UTC".into());
    if let Err(e) = jiff::tz::TimeZone::get(&zone) {
        push(
            problems,
            key,
            format!("{zone:?} is not a known time zone ({e}); use an IANA name such as \"UTC\" or \"Europe/Berlin\""),
        );
    }
    zone
}

/// `running_slice`: 1s to 31d (default 15m), in seconds.
pub fn validate_running_slice(problems: &mut Problems, key: &str, v: Option<String>) -> i64 {
    match v.map(|t| parse_duration_secs(&t)) {
        None => 900,
        Some(Ok(n)) if (1..=31 * 86_400).contains(&n) => n,
        Some(Ok(n)) => {
            push(problems, key, format!("is {n} s; use 1s to 31d (default \"15m\")"));
            900
        }
        Some(Err(e)) => {
            push(problems, key, e);
            900
        }
    }
}

/// Why metering settings cannot be used (validation accepted them on another machine, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeteringError {
    #[error(
        "time zone {zone:?} is not in this machine's zone database ({reason}); install tzdata or use another zone"
    )]
    TimeZone { zone: String, reason: String },
}

/// The unit a TRES is reported in: GiB-hours for byte quantities, hours of the count otherwise.
pub fn unit_of(tres: &str) -> Unit {
    if tres == "mem" || tres == "vmem" || tres.starts_with("fs/") || tres.starts_with("bb/") {
        Unit::GIB_HOURS
    } else {
        Unit::HOURS
    }
}

/// How a sink bills one run: a count of one TRES in a unit, and where its items go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub count: u64,
    pub unit: Unit,
    /// Pinned in each item when it is planned (opaque here; the sink's sender reads it).
    pub route: Option<String>,
}

/// A sink's pure pricing of a run.
pub trait Pricing {
    /// How this run is billed, or why it cannot be (held with this reason until fixed).
    fn price(&self, job: &JobRun) -> Result<Price, String>;
    /// The route an item planned with route `old` takes now (`retry` after a mapping was fixed):
    /// where it goes may change, what it was metered as (its TRES, its unit) never does.
    fn reroute(&self, job: &JobRun, old: Option<&str>) -> Result<Option<String>, String>;
}

/// The slice [`Planner`] of one sink.
pub struct SlicePlanner<P> {
    sink: String,
    pricing: P,
    calendar: Calendar,
    min_running_slice_secs: i64,
    terms: String,
}

impl<P: Pricing> SlicePlanner<P> {
    pub fn new(sink: &str, pricing: P, metering: &Metering) -> Result<Self, MeteringError> {
        Ok(Self {
            sink: sink.to_string(),
            pricing,
            calendar: metering.calendar()?,
            min_running_slice_secs: metering.running_slice_secs,
            terms: metering.terms(),
        })
    }
}

impl<P: Pricing> Planner for SlicePlanner<P> {
    fn plan(&self, job: &JobRun, mark: &RunMark, _now: UnixTime) -> Decision {
        if mark.done {
            return Decision::Nothing;
        }
        let price = match self.pricing.price(job) {
            Ok(p) => p,
            Err(reason) => return Decision::Hold(reason),
        };
        let plan = plan_run(job, mark, price.count, price.unit, &self.calendar, self.min_running_slice_secs);
        let items = plan
            .slices
            .iter()
            .map(|s| {
                NewItem::once(
                    delivery_id(&self.sink, job, s.start, s.end),
                    Some((s.start, s.end)),
                    Some(price.unit.format(s.quantity)),
                    price.route.clone(),
                )
            })
            .collect();
        Decision::Plan { items, next: plan.next }
    }

    fn reroute(&self, job: &JobRun, item: &Delivery) -> Result<Option<String>, String> {
        self.pricing.reroute(job, item.route.as_deref())
    }

    fn terms(&self) -> Option<String> {
        Some(self.terms.clone())
    }
}

/// A slice as a sender reads it back from the outbox: its span and exact quantity text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentSlice<'a> {
    pub start: UnixTime,
    pub end: UnixTime,
    pub quantity: &'a str,
}

impl<'a> SentSlice<'a> {
    /// The slice an item carries, or why it carries none (not a slice planner's item).
    pub fn of(item: &'a Delivery) -> Result<Self, RenderError> {
        match (item.span, item.amount.as_deref()) {
            (Some((start, end)), Some(quantity)) => Ok(Self { start, end, quantity }),
            _ => Err(RenderError::NoSlice { id: item.id.clone() }),
        }
    }

    /// The quantity as a JSON number, exactly as planned.
    pub fn number(&self, id: &str) -> Result<serde_json::Number, RenderError> {
        self.quantity
            .parse()
            .map_err(|_| RenderError::BadQuantity { id: id.to_string(), quantity: self.quantity.to_string() })
    }
}

#[cfg(test)]
mod tests;
