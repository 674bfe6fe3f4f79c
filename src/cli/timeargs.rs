//! Times on the command line and in output: RFC 3339, dates, `now-2h`; UTC unless an offset is given.

use anyhow::bail;

use crate::config::parse_duration_secs;
use crate::model::UnixTime;

/// The wall clock, read only here at the edge.
pub fn system_now() -> UnixTime {
    UnixTime(jiff::Timestamp::now().as_second())
}

/// Reads `2026-11-22T08:00:00Z`, `2026-11-22T08:00:00+01:00`, `2026-11-22T08:00:00` (UTC),
/// `2026-11-22` (UTC midnight), `now`, `now-2h`.
pub fn parse_time_arg(s: &str, now: UnixTime) -> anyhow::Result<UnixTime> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(d) = s.strip_prefix("now-") {
        let secs = parse_duration_secs(d).map_err(anyhow::Error::msg)?;
        return Ok(UnixTime(now.0 - secs));
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(UnixTime(ts.as_second()));
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        if let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(UnixTime(z.timestamp().as_second()));
        }
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        if let Ok(z) = d.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(UnixTime(z.timestamp().as_second()));
        }
    }
    bail!("time {s:?} is not understood; write 2026-11-22, 2026-11-22T08:00:00 (UTC), 2026-11-22T08:00:00+01:00, now or now-2h")
}

/// `1-02:03:04` / `02:03:04` for a number of seconds.
pub fn format_elapsed(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Bytes as a short binary size (`1.5G`).
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v.fract() == 0.0 {
        format!("{}{}", v as u64, UNITS[i])
    } else {
        format!("{:.1}{}", v, UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_args() {
        let now = UnixTime(1_795_305_600); // 2026-11-22T00:00:00Z
        assert_eq!(parse_time_arg("now-2h", now).unwrap(), UnixTime(now.0 - 7200));
        assert_eq!(parse_time_arg("2026-11-22", now).unwrap(), now);
        assert_eq!(parse_time_arg("2026-11-22T00:00:00", now).unwrap(), now);
        assert_eq!(parse_time_arg("2026-11-22T01:00:00+01:00", now).unwrap(), now);
        assert!(parse_time_arg("yesterday", now).unwrap_err().to_string().contains("now-2h"));
        assert_eq!(format_elapsed(90_061), "1-01:01:01");
        assert_eq!(format_bytes(256 << 20), "256M");
        assert_eq!(format_bytes(1536 << 20), "1.5G");
    }
}
