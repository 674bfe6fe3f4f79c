//! Waldur amounts, exact until the request: totals are integer TRES-seconds (memory and other
//! byte TRES in MiB-seconds: Slurm's memory is whole MiB), and a component's Waldur amount is
//! `total / 60 / unit_factor` (the site agent's TRES-minutes per unit), rounded half up to the
//! 2 decimals Waldur accepts only when the request is written. Pure.

/// A positive `unit_factor`, exact: `millionths / 10^6` (up to 6 decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UnitFactor {
    millionths: u64,
}

impl UnitFactor {
    pub const ONE: UnitFactor = UnitFactor { millionths: 1_000_000 };

    /// From a TOML integer or float (`60000`, `61440`, `0.5`).
    pub fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let text = match v {
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => format!("{f}"),
            toml::Value::String(s) => s.clone(),
            other => return Err(format!("is {other}; give a positive number such as 60000")),
        };
        Self::parse(&text)
    }

    /// From decimal text with at most 6 decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("is {text:?}; give a positive number with at most 6 decimals, such as 60000");
        let (int, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if int.is_empty() && frac.is_empty()
            || frac.len() > 6
            || !(int.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let int: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let millionths = int.checked_mul(1_000_000).and_then(|i| i.checked_add(frac)).ok_or_else(bad)?;
        if millionths == 0 {
            return Err(bad());
        }
        Ok(Self { millionths })
    }

    /// The Waldur amount of `total` unit-seconds, in hundredths, rounded half up (away from 0).
    pub fn cents(self, total: i64) -> i128 {
        let num = i128::from(total) * 100 * 1_000_000;
        let den = 60 * i128::from(self.millionths);
        let q = (num.abs() + den / 2) / den;
        if num < 0 {
            -q
        } else {
            q
        }
    }

    /// The amount of `total` as Waldur's 2-decimal text (`"12.34"`).
    pub fn amount(self, total: i64) -> String {
        cents_text(self.cents(total))
    }
}

/// Hundredths as 2-decimal text.
pub fn cents_text(c: i128) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
}

/// A decimal text as Waldur returns it (`"12.34"`, `"12.3400"`, `"12"`, `12.34` as a number)
/// in hundredths, when it has no more than 2 significant decimals.
pub fn parse_cents(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = t.strip_prefix('-').map_or((false, t), |r| (true, r));
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac = frac.trim_end_matches('0');
    if int.is_empty() || frac.len() > 2 || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let c = int.parse::<i128>().ok()? * 100 + format!("{frac:0<2}").parse::<i128>().ok()?;
    Some(if neg { -c } else { c })
}

/// The count of one TRES in the unit totals are kept in: byte TRES (memory, file systems, burst
/// buffers) in whole MiB, any other TRES as Slurm counts it.
pub fn unit_count(tres: &str, count: u64) -> u64 {
    if tres == "mem" || tres == "vmem" || tres.starts_with("fs/") || tres.starts_with("bb/") {
        count >> 20
    } else {
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_the_site_agent_computes_them_but_exact() {
        let k_hours = UnitFactor::parse("60000").unwrap();
        // 10 CPUs for 1 hour = 600 cpu-minutes = 0.01 k-Hours.
        assert_eq!(k_hours.amount(10 * 3600), "0.01");
        // 1 CPU for 29 s rounds to 0.00; 1 CPU for 1 h 30 min: 90 / 60000 = 0.0015 → 0.00.
        assert_eq!(k_hours.amount(29), "0.00");
        let hours = UnitFactor::parse("60").unwrap();
        assert_eq!(hours.amount(5400), "1.50");
        assert_eq!(hours.amount(5418), "1.51", "1.505 rounds half up");
        let gib_hours = UnitFactor::parse("61440").unwrap();
        // 2 GiB (2048 MiB) for 1 hour.
        assert_eq!(gib_hours.amount(2048 * 3600), "2.00");
        assert_eq!(UnitFactor::parse("0.5").unwrap().amount(60), "2.00");
        assert_eq!(hours.amount(-5400), "-1.50");
        for bad in ["0", "-1", "1.1234567", "x", ""] {
            assert!(UnitFactor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn waldur_decimals_are_read_exactly() {
        assert_eq!(parse_cents("12.34"), Some(1234));
        assert_eq!(parse_cents("12.3400"), Some(1234));
        assert_eq!(parse_cents("12"), Some(1200));
        assert_eq!(parse_cents("0.5"), Some(50));
        assert_eq!(parse_cents("12.345"), None);
        assert_eq!(cents_text(5), "0.05");
        assert_eq!(unit_count("mem", 3 << 30), 3072);
        assert_eq!(unit_count("gres/gpu", 4), 4);
    }
}
