//! Billing periods (day or month) in a configured time zone. A slice never crosses a boundary.
//!
//! In a zone with a fixed offset (UTC, the common case), periods are computed with integer
//! arithmetic on days (no zone look-ups); any other zone goes through jiff and its tz database.
//! Both give the same periods (a property test checks it).

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::model::{civil_from_days, days_from_civil, UnixTime};

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

const DAY: i64 = 86_400;
/// Instants the integer path handles: 1900-01-01 ..= 9000-01-01 UTC, well inside jiff's range,
/// so it never meets the out-of-range fallbacks of the jiff path.
const FAST_MIN: i64 = -2_208_988_800;
const FAST_MAX: i64 = 221_845_392_000;

impl Calendar {
    /// The period containing `t`: `[start, end)`. Days and months follow the zone's local
    /// calendar, DST included (a local day may last 23 or 25 hours).
    pub fn period_of(&self, t: UnixTime) -> (UnixTime, UnixTime) {
        match self.fixed_offset() {
            Some(off) if (FAST_MIN..=FAST_MAX).contains(&t.0) => self.fixed_period_of(t, off),
            _ => self.zoned_period_of(t),
        }
    }

    /// The zone's offset in seconds when it never changes (UTC, `Etc/GMT+5`, fixed offsets).
    fn fixed_offset(&self) -> Option<i64> {
        self.tz.to_fixed_offset().ok().map(|o| i64::from(o.seconds()))
    }

    /// [`Self::period_of`] in a zone of constant offset `off`: integer arithmetic only.
    fn fixed_period_of(&self, t: UnixTime, off: i64) -> (UnixTime, UnixTime) {
        let day = (t.0 + off).div_euclid(DAY);
        let (first, next) = match self.kind {
            PeriodKind::Day => (day, day + 1),
            PeriodKind::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        };
        (UnixTime(first * DAY - off), UnixTime(next * DAY - off))
    }

    /// [`Self::period_of`] through jiff and the zone's rules.
    fn zoned_period_of(&self, t: UnixTime) -> (UnixTime, UnixTime) {
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
        let to_ts =
            |d: jiff::civil::Date| d.to_zoned(self.tz.clone()).map(|z| z.timestamp().as_second()).unwrap_or(t.0);
        (UnixTime(to_ts(first)), UnixTime(to_ts(next)))
    }

    /// Cuts `[from, to)` at period boundaries.
    pub fn split(&self, from: UnixTime, to: UnixTime) -> Vec<(UnixTime, UnixTime)> {
        self.pieces(from, to).collect()
    }

    /// [`Self::split`] as an iterator (no allocation): the pieces in order, contiguous.
    pub fn pieces(&self, from: UnixTime, to: UnixTime) -> impl Iterator<Item = (UnixTime, UnixTime)> + '_ {
        let mut a = from;
        std::iter::from_fn(move || {
            if a >= to {
                return None;
            }
            let (_, end) = self.period_of(a);
            let b = if end > a { end.min(to) } else { to };
            let piece = (a, b);
            a = b;
            Some(piece)
        })
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

    proptest::proptest! {
        /// The integer path and jiff agree on every period of every fixed-offset zone, days
        /// and months, over the whole range the integer path takes (leap years, centuries).
        #[test]
        fn fixed_offsets_agree_with_jiff(
            t in FAST_MIN..=FAST_MAX,
            off_mins in -(25 * 60i32)..=(25 * 60),
            monthly in proptest::bool::ANY,
            near_boundary in proptest::bool::ANY,
        ) {
            let kind = if monthly { PeriodKind::Month } else { PeriodKind::Day };
            let offset = jiff::tz::Offset::from_seconds(off_mins * 60).unwrap();
            let cal = Calendar { kind, tz: TimeZone::fixed(offset) };
            // Also probe the instants next to the period's edges, where off-by-ones live.
            let (a, b) = cal.zoned_period_of(UnixTime(t));
            let probes = if near_boundary { vec![a.0, a.0 - 1, b.0 - 1, b.0] } else { vec![t] };
            for p in probes.into_iter().filter(|p| (FAST_MIN..=FAST_MAX).contains(p)) {
                proptest::prop_assert_eq!(cal.period_of(UnixTime(p)), cal.zoned_period_of(UnixTime(p)), "at {} offset {} min", p, off_mins);
            }
        }
    }

    #[test]
    fn utc_is_the_integer_path() {
        let utc = Calendar { kind: PeriodKind::Day, tz: TimeZone::get("UTC").unwrap() };
        assert_eq!(utc.fixed_offset(), Some(0));
        let berlin = Calendar { kind: PeriodKind::Day, tz: TimeZone::get("Europe/Berlin").unwrap() };
        assert_eq!(berlin.fixed_offset(), None, "a zone with DST takes the jiff path");
        // 2028-02-29 (leap day) and a month end in UTC.
        let (a, b) = utc.period_of(t("2028-02-29T13:00:00Z"));
        assert_eq!((a, b), (t("2028-02-29T00:00:00Z"), t("2028-03-01T00:00:00Z")));
        let m = Calendar { kind: PeriodKind::Month, tz: TimeZone::UTC };
        assert_eq!(m.period_of(t("2028-02-29T13:00:00Z")), (t("2028-02-01T00:00:00Z"), t("2028-03-01T00:00:00Z")));
        assert_eq!(m.period_of(t("2026-12-31T23:59:59Z")), (t("2026-12-01T00:00:00Z"), t("2027-01-01T00:00:00Z")));
    }
}
