//! Billing periods (day or month) in a configured time zone. A slice never crosses a boundary.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::model::UnixTime;

/// The length of a billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Day,
    Month,
}

/// A calendar in which periods are cut.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub kind: PeriodKind,
    pub tz: TimeZone,
}

impl Calendar {
    /// The period containing `t`: `[start, end)`. Days and months follow the zone's local
    /// calendar, DST included (a local day may last 23 or 25 hours).
    pub fn period_of(&self, t: UnixTime) -> (UnixTime, UnixTime) {
        let ts = Timestamp::from_second(t.0).unwrap_or(Timestamp::UNIX_EPOCH);
        let z = ts.to_zoned(self.tz.clone());
        let date = z.date();
        let first = match self.kind {
            PeriodKind::Day => date,
            PeriodKind::Month => date.first_of_month(),
        };
        let next = match self.kind {
            PeriodKind::Day => first.checked_add(1.day()),
            PeriodKind::Month => first.checked_add(1.month()),
        }
        .unwrap_or(first);
        let to_ts = |d: jiff::civil::Date| {
            d.to_zoned(self.tz.clone()).map(|z| z.timestamp().as_second()).unwrap_or(t.0)
        };
        (UnixTime(to_ts(first)), UnixTime(to_ts(next)))
    }

    /// Cuts `[from, to)` at period boundaries.
    pub fn split(&self, from: UnixTime, to: UnixTime) -> Vec<(UnixTime, UnixTime)> {
        let mut out = Vec::new();
        let mut a = from;
        while a < to {
            let (_, end) = self.period_of(a);
            let b = if end > a { end.min(to) } else { to };
            out.push((a, b));
            a = b;
        }
        out
    }

    /// The label of the period containing `t` (`2026-11` or `2026-11-22`), in the zone.
    pub fn label(&self, t: UnixTime) -> String {
        let z = Timestamp::from_second(t.0).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(self.tz.clone());
        match self.kind {
            PeriodKind::Day => z.strftime("%Y-%m-%d").to_string(),
            PeriodKind::Month => z.strftime("%Y-%m").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> UnixTime {
        UnixTime(s.parse::<Timestamp>().unwrap().as_second())
    }

    #[test]
    fn months_in_a_zone() {
        let cal = Calendar { kind: PeriodKind::Month, tz: TimeZone::get("Europe/Berlin").unwrap() };
        // 2026-10-31T23:30Z is already November in Berlin (UTC+1).
        let (a, b) = cal.period_of(t("2026-10-31T23:30:00Z"));
        assert_eq!((a, b), (t("2026-10-31T23:00:00Z"), t("2026-11-30T23:00:00Z")));
        assert_eq!(cal.label(t("2026-10-31T23:30:00Z")), "2026-11");
    }

    #[test]
    fn days_across_dst_and_split() {
        let cal = Calendar { kind: PeriodKind::Day, tz: TimeZone::get("Europe/Berlin").unwrap() };
        // 2026-10-25 has 25 hours in Berlin (DST ends).
        let (a, b) = cal.period_of(t("2026-10-25T12:00:00Z"));
        assert_eq!(b.0 - a.0, 25 * 3600);
        let parts = cal.split(t("2026-10-24T20:00:00Z"), t("2026-10-26T01:00:00Z"));
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.first().unwrap().0, t("2026-10-24T20:00:00Z"));
        assert_eq!(parts.last().unwrap().1, t("2026-10-26T01:00:00Z"));
        for w in parts.windows(2) {
            assert_eq!(w[0].1, w[1].0, "contiguous, no gap or overlap");
        }
        assert!(cal.split(t("2026-10-24T20:00:00Z"), t("2026-10-24T20:00:00Z")).is_empty());
    }
}
