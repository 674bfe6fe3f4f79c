//! Conversion of exact TRES-seconds to a platform's unit, rounded only at the edge.
//!
//! Quantities are integers of `1 / scale` units (e.g. micro core-hours). A slice's quantity is
//! the difference of the rounded cumulative totals at its two ends, so the slices of a run add up
//! exactly to the rounded total, whatever the slicing.

/// How a TRES's seconds become a platform quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// TRES-seconds per unit: 3600 for core-hours, 3600 × 2^30 for GiB-hours of memory.
    pub per_unit: u128,
    /// Decimal places kept: quantities are integers of 10^-decimals units.
    pub decimals: u32,
}

impl Unit {
    pub const HOURS: Unit = Unit { per_unit: 3600, decimals: 6 };
    /// GiB-hours of a byte count (Slurm's memory is binary).
    pub const GIB_HOURS: Unit = Unit { per_unit: 3600 * (1 << 30), decimals: 6 };

    fn scale(self) -> u128 {
        10u128.pow(self.decimals)
    }

    /// Rounded (half up) integer quantity of `tres_seconds`.
    pub fn quantize(self, tres_seconds: u128) -> u128 {
        (tres_seconds * self.scale() + self.per_unit / 2) / self.per_unit
    }

    /// The quantity of a slice covering cumulative usage `before..after` (after ≥ before).
    pub fn slice(self, before: u128, after: u128) -> u128 {
        self.quantize(after) - self.quantize(before)
    }

    /// A quantity as decimal text (`12.500000`), exact.
    pub fn format(self, q: u128) -> String {
        if self.decimals == 0 {
            return q.to_string();
        }
        // `{q / 10^d}.{q % 10^d:0d$}` without the formatting machinery (it runs once per slice).
        let width = self.decimals as usize + 1;
        let mut digits = [b'0'; 96];
        let mut i = digits.len();
        let mut n = q;
        while n > u64::MAX as u128 {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        // The common case in 64-bit arithmetic; at least one integer digit and `decimals`
        // fraction digits, zero-padded.
        let mut m = n as u64;
        while m > 0 || digits.len() - i < width {
            i -= 1;
            digits[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let text = &digits[i..];
        let (int, frac) = text.split_at(text.len() - self.decimals as usize);
        let mut out = String::with_capacity(text.len() + 1);
        out.push_str(std::str::from_utf8(int).unwrap_or_default());
        out.push('.');
        out.push_str(std::str::from_utf8(frac).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn core_hours() {
        assert_eq!(Unit::HOURS.format(Unit::HOURS.quantize(4 * 5400)), "6.000000");
        assert_eq!(Unit::HOURS.format(Unit::HOURS.quantize(1)), "0.000278");
        assert_eq!(Unit::GIB_HOURS.format(Unit::GIB_HOURS.quantize((1u128 << 30) * 3600)), "1.000000");
    }

    proptest! {
        /// The hand-written text is exactly `{q / 10^d}.{q % 10^d:0d$}`.
        #[test]
        fn format_is_exact_decimal_text(q in any::<u128>(), decimals in 0u32..=30) {
            let u = Unit { per_unit: 3600, decimals };
            let s = 10u128.pow(decimals);
            let expected = if decimals == 0 { q.to_string() } else { format!("{}.{:0width$}", q / s, q % s, width = decimals as usize) };
            prop_assert_eq!(u.format(q), expected);
        }

        /// Any cut of a total into slices sums exactly to the rounded total.
        #[test]
        fn slices_sum_to_the_total(total in 0u128..10_000_000_000, cuts in prop::collection::vec(0u128..10_000_000_000, 0..20)) {
            let mut points: Vec<u128> = cuts.into_iter().map(|c| c % (total + 1)).collect();
            points.push(0);
            points.push(total);
            points.sort();
            let u = Unit::HOURS;
            let sum: u128 = points.windows(2).map(|w| u.slice(w[0], w[1])).sum();
            prop_assert_eq!(sum, u.quantize(total));
        }
    }
}
