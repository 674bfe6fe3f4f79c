//! Backfill's rules, as `slurm-ledger backfill` applies them: the months of a range, the sacct
//! windows that read one, the names of a month's parts in the ledger, and when a month counts as
//! reported. The command (`cli/backfill.rs`) loops over the months, records each part's outcome
//! (`ledger/backfill.rs`) and prints.
//!
//! Invariants: a month is read with [`ZONE_SLACK`] on both sides (a sink's month in its own zone
//! is then whole, whatever the zone); no window is longer than the caller's maximum (slurmdbd's
//! MaxQueryTimeRange) nor reaches past now; a month is reported only when no run is held and
//! every item from the range's first month up to its end went out.

use crate::delivery::consumer::Consumer;
use crate::delivery::engine::{self, EngineError};
use crate::ledger::{Ledger, LedgerError};
use crate::model::{ClusterName, UnixTime};
use crate::pass::{self, PassLimits};
use crate::slurm::source::Window;

/// A zone's month starts within this of the UTC month's start (UTC−12 … UTC+14).
pub const ZONE_SLACK: i64 = 14 * 3600;

/// A month of a backfill: its label and its UTC bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    pub label: String,
    pub start: UnixTime,
    pub end: UnixTime,
}

/// Why a range of months cannot be backfilled (the operator's input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{flag} {value:?}: write a month as YYYY-MM, e.g. 2024-01")]
    NotAMonth { flag: &'static str, value: String },
    #[error("--to {last}: that month has not begun; the last month a backfill can read is {this}")]
    NotBegun { last: String, this: String },
    #[error("--from {first} is after --to {last}: give the first month, then the last")]
    Reversed { first: String, last: String },
}

/// Why reporting a month stopped (the ledger or the engine failed; a refusal is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The months from `from` to `to` (`YYYY-MM`, inclusive; `None`: the month of `now`), not after
/// the month of `now` (in UTC).
pub fn months(from: &str, to: Option<&str>, now: UnixTime) -> Result<Vec<Month>, RangeError> {
    let month_of = |flag: &'static str, s: &str| -> Result<jiff::civil::Date, RangeError> {
        let d = format!("{s}-01").parse::<jiff::civil::Date>().ok().filter(|_| s.len() == 7);
        d.ok_or_else(|| RangeError::NotAMonth { flag, value: s.to_string() })
    };
    let utc = |d: jiff::civil::Date| -> UnixTime {
        UnixTime(d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp().as_second()).unwrap_or(i64::MAX))
    };
    let label = |d: jiff::civil::Date| d.strftime("%Y-%m").to_string();
    let this = jiff::Timestamp::from_second(now.0)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .first_of_month();
    let first = month_of("--from", from)?;
    let last = match to {
        Some(t) => month_of("--to", t)?,
        None => this,
    };
    if last > this {
        return Err(RangeError::NotBegun { last: label(last), this: label(this) });
    }
    if first > last {
        return Err(RangeError::Reversed { first: label(first), last: label(last) });
    }
    let mut out = Vec::new();
    let mut m = first;
    while m <= last {
        let Ok(next) = m.checked_add(jiff::Span::new().months(1)) else { break };
        out.push(Month { label: label(m), start: utc(m), end: utc(next) });
        m = next;
    }
    Ok(out)
}

/// The windows reading `month`, widened by [`ZONE_SLACK`] at both ends, each at most `max` long,
/// none past `now`.
pub fn windows(month: &Month, max: i64, now: UnixTime) -> Vec<Window> {
    let end = UnixTime((month.end.0 + ZONE_SLACK).min(now.0));
    Window { start: UnixTime(month.start.0 - ZONE_SLACK), end }.split(max).collect()
}

/// The ledger's name of a month's read of a cluster.
pub fn collect_part(cluster: &ClusterName) -> String {
    format!("collect:{cluster}")
}

/// The ledger's name of a month's report to a sink.
pub fn report_part(sink: &str) -> String {
    format!("report:{sink}")
}

/// Delivers everything due to one sink (no time limit: a backfill is watched), then judges the
/// month: `Ok` (what went out) when no run is held and every item whose period starts from the
/// range's first month (`first`) up to this one's end, in any zone, went out: an earlier month
/// raised by this one's read counts too. Items of those months that a pass without the backfill
/// refused as closed are put back first. `Err`: why the month is not reported yet.
pub fn report_month(
    ledger: &mut Ledger,
    c: &Consumer,
    first: UnixTime,
    m: &Month,
    clock: &dyn Fn() -> UnixTime,
) -> Result<Result<String, String>, BackfillError> {
    let (from, to) = (UnixTime(first.0 - ZONE_SLACK), UnixTime(m.end.0 - ZONE_SLACK));
    let mut requeued = 0;
    for id in ledger.rejected_in(&c.name, from, to)? {
        requeued += engine::retry_rejected(ledger, c, Some(&id), clock())?;
    }
    let limits = PassLimits { clock: Some(clock), ..Default::default() };
    let Some(outcome) = pass::deliver_all(ledger, std::slice::from_ref(c), limits, clock(), &mut |_, _, _| {}).pop()
    else {
        return Ok(Err("the sink was not delivered to".into()));
    };
    if let Some(e) = outcome.error {
        return Ok(Err(e.to_string()));
    }
    if outcome.plan.runs_held > 0 {
        return Ok(Err(format!(
            "{} runs held (reasons in `slurm-ledger status`): fix them, then run the backfill again",
            outcome.plan.runs_held
        )));
    }
    let items = ledger.items_in(&c.name, from, to)?;
    let sent = outcome.exec.delivered + outcome.exec.found_already_delivered;
    let again = if requeued > 0 { format!(", {requeued} refused before put back") } else { String::new() };
    Ok(if items.owed == 0 && items.rejected == 0 {
        Ok(format!("{}: {} items up to this month out ({sent} sent now{again})", c.name, items.delivered))
    } else {
        Err(format!(
            "{} items up to this month still owed, {} rejected (e.g. {})",
            items.owed,
            items.rejected,
            items.example_error.as_deref().unwrap_or("no error recorded")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_796_083_200 + 4 * 86_400); // 2026-12-05T00:00Z

    #[test]
    fn months_run_from_first_to_last_and_not_past_this_one() {
        let m = months("2024-11", Some("2025-02"), NOW).unwrap();
        let labels: Vec<&str> = m.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["2024-11", "2024-12", "2025-01", "2025-02"]);
        assert_eq!(m[0].start, UnixTime(1_730_419_200)); // 2024-11-01T00:00Z
        assert_eq!(m[0].end, m[1].start);
        assert_eq!(months("2026-11", None, NOW).unwrap().len(), 2);
        for (from, to, says) in [
            ("2024-1", None, "YYYY-MM"),
            ("2024-13", None, "YYYY-MM"),
            ("2026-12", Some("2027-01"), "has not begun"),
            ("2025-03", Some("2025-01"), "after --to"),
        ] {
            let e = months(from, to, NOW).unwrap_err().to_string();
            assert!(e.contains(says), "{from} {to:?}: {e}");
        }
    }

    #[test]
    fn windows_cover_the_month_widened_at_both_ends_never_longer_than_max_nor_past_now() {
        let m = months("2026-11", None, NOW).unwrap();
        let nov = windows(&m[0], 86_400, NOW);
        assert_eq!(nov.first().unwrap().start.0, m[0].start.0 - ZONE_SLACK);
        assert_eq!(nov.last().unwrap().end.0, m[0].end.0 + ZONE_SLACK);
        assert!(nov.iter().all(|w| w.end.0 - w.start.0 <= 86_400 && w.start < w.end));
        assert!(nov.windows(2).all(|p| p[0].end == p[1].start), "no gap between windows");
        assert_eq!(nov.len(), 32, "30 days and 28 h in windows of a day");
        let dec = windows(&m[1], 86_400, NOW);
        assert_eq!(dec.last().unwrap().end, NOW, "the current month is read up to now");
        assert_eq!(dec.len(), 5);
        assert_eq!(windows(&m[0], 7 * 86_400, NOW).len(), 5);
    }
}
