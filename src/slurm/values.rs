//! Parsers for the value notations Slurm prints: times, durations, memory sizes, TRES strings,
//! states, exit codes and job ids. Pure text → value functions; every error says what it got.

use std::fmt;

use crate::model::{ExitCode, JobState, Tres, UnixTime};

/// Why one value could not be read. The message names the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: String) -> Result<T, ValueError> {
    Err(ValueError(msg))
}

/// The zone that sacct printed its local times in.
///
/// slurm-ledger runs sacct with `TZ=UTC`, so the fast path is UTC; recorded files from other
/// sites are read in the zone the config names.
#[derive(Debug, Clone)]
pub enum TimeZone {
    Utc,
    Named(jiff::tz::TimeZone),
}

impl TimeZone {
    /// `UTC` or an IANA name from the system's tz database (`Europe/Berlin`).
    pub fn from_name(name: &str) -> Result<Self, ValueError> {
        if name.eq_ignore_ascii_case("utc") || name == "Etc/UTC" {
            return Ok(Self::Utc);
        }
        match jiff::tz::TimeZone::get(name) {
            Ok(tz) => Ok(Self::Named(tz)),
            Err(e) => {
                err(format!("unknown time zone {name:?} ({e}); use an IANA name such as \"Europe/Berlin\" or \"UTC\""))
            }
        }
    }
}

/// `s` split at the first `b` (an ASCII byte, so both sides are valid text). A plain loop: the
/// values are a few bytes long, too short for a vectorised search to pay off.
fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|c| c == b)?;
    Some((&s[..i], &s[i + 1..]))
}

/// `s.parse::<u64>()`, with a plain loop for the usual all-digit text; anything else (a sign,
/// 20 digits or more) takes the standard parser, so the accepted text is the same.
fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 19 {
        return s.parse().ok();
    }
    let mut n: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return s.parse().ok();
        }
        n = n * 10 + d as u64;
    }
    Some(n)
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u32;
    }
    Some(n)
}

/// Reads a sacct time: `2026-11-22T00:21:57` in `tz`; `Unknown`, `None` and empty give `None`.
/// A bare `0` (JSON-era "not set") also gives `None`.
pub fn parse_time(s: &str, tz: &TimeZone) -> Result<Option<UnixTime>, ValueError> {
    match s {
        "" | "Unknown" | "None" | "N/A" | "0" => return Ok(None),
        _ => {}
    }
    let b = s.as_bytes();
    let ok_shape = b.len() == 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':';
    let fields = ok_shape
        .then(|| {
            Some((
                digits(&b[0..4])?,
                digits(&b[5..7])?,
                digits(&b[8..10])?,
                digits(&b[11..13])?,
                digits(&b[14..16])?,
                digits(&b[17..19])?,
            ))
        })
        .flatten();
    let Some((y, mo, d, h, mi, se)) = fields else {
        return err(format!(
            "time {s:?} is not YYYY-MM-DDTHH:MM:SS (is SLURM_TIME_FORMAT set to something else for this run?)"
        ));
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return err(format!("time {s:?} has a field out of range"));
    }
    match tz {
        TimeZone::Utc => {
            let days = crate::model::days_from_civil(y as i64, i64::from(mo), i64::from(d));
            Ok(Some(UnixTime(days * 86_400 + (h * 3600 + mi * 60 + se) as i64)))
        }
        TimeZone::Named(zone) => {
            let dt = jiff::civil::DateTime::new(y as i16, mo as i8, d as i8, h as i8, mi as i8, se.min(59) as i8, 0)
                .map_err(|e| ValueError(format!("time {s:?}: {e}")))?;
            // Ambiguous local times (DST fall-back) resolve to the earlier instant, as Slurm does.
            let zoned =
                zone.to_ambiguous_zoned(dt).compatible().map_err(|e| ValueError(format!("time {s:?} in zone: {e}")))?;
            Ok(Some(UnixTime(zoned.timestamp().as_second())))
        }
    }
}

/// Formats an instant the way sacct's `-S`/`-E` expect it, in UTC (sacct runs with `TZ=UTC`).
pub fn format_sacct_time(t: UnixTime) -> String {
    let ts = jiff::Timestamp::from_second(t.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Reads a Slurm duration into milliseconds: `D-HH:MM:SS`, `HH:MM:SS`, `MM:SS.mmm`, `MM:SS`,
/// with optional fraction. Empty gives 0. `INVALID` gives an error.
pub fn parse_duration_ms(s: &str) -> Result<u64, ValueError> {
    match duration_fixed_shape(s.as_bytes()) {
        Some(ms) => Ok(ms),
        None => parse_duration_general(s),
    }
}

fn parse_duration_general(s: &str) -> Result<u64, ValueError> {
    if s.is_empty() {
        return Ok(0);
    }
    let bad = || ValueError(format!("duration {s:?} is not [D-][HH:]MM:SS[.mmm]"));
    let b = s.as_bytes();
    // Up to four numbers: days (before '-'), then up to three ':'-separated parts, then a fraction.
    let (mut days, mut parts, mut nparts) = (0u64, [0u64; 3], 0usize);
    let (mut cur, mut digits, mut i) = (0u64, 0usize, 0usize);
    let mut frac_ms: Option<u64> = None;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                if digits >= 9 {
                    return Err(bad());
                }
                cur = cur * 10 + (c - b'0') as u64;
                digits += 1;
            }
            b'-' if nparts == 0 && digits > 0 && days == 0 && i == digits => {
                days = cur;
                (cur, digits) = (0, 0);
            }
            b':' if digits > 0 && nparts < 2 => {
                parts[nparts] = cur;
                nparts += 1;
                (cur, digits) = (0, 0);
            }
            b'.' if digits > 0 => {
                let f = &b[i + 1..];
                if f.is_empty() || f.len() > 6 || !f.iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                let mut ms = 0;
                for (k, ch) in f.iter().take(3).enumerate() {
                    ms += (ch - b'0') as u64 * [100, 10, 1][k];
                }
                frac_ms = Some(ms);
                break;
            }
            _ => return Err(bad()),
        }
        i += 1;
    }
    if digits == 0 {
        return Err(bad());
    }
    parts[nparts] = cur;
    nparts += 1;
    let (h, m, sec) = match nparts {
        3 => (parts[0], parts[1], parts[2]),
        2 => (0, parts[0], parts[1]),
        _ => return Err(bad()),
    };
    if m > 59 || sec > 59 {
        return Err(bad());
    }
    Ok((((days * 24 + h) * 60 + m) * 60 + sec) * 1000 + frac_ms.unwrap_or(0))
}

/// The two shapes sacct prints for nearly every duration, `MM:SS.mmm` and `HH:MM:SS`, read
/// directly; `None` for anything else (including out-of-range minutes or seconds), which the
/// general reader then accepts or rejects.
fn duration_fixed_shape(b: &[u8]) -> Option<u64> {
    let two = |i: usize| -> Option<u64> {
        let (x, y) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
        (x <= 9 && y <= 9).then(|| (x * 10 + y) as u64)
    };
    let (h, m, sec, ms) = match b.len() {
        9 if b[2] == b':' && b[5] == b'.' => {
            let ms = two(6)? * 10 + b[8].wrapping_sub(b'0').le(&9).then(|| (b[8] - b'0') as u64)?;
            (0, two(0)?, two(3)?, ms)
        }
        8 if b[2] == b':' && b[5] == b':' => (two(0)?, two(3)?, two(6)?, 0),
        _ => return None,
    };
    (m <= 59 && sec <= 59).then(|| ((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// Reads a plain unsigned integer field; empty gives `None`.
pub fn parse_opt_u64(name: &str, s: &str) -> Result<Option<u64>, ValueError> {
    if s.is_empty() {
        return Ok(None);
    }
    match parse_u64(s) {
        Some(n) => Ok(Some(n)),
        None => err(format!("{name} {s:?} is not a non-negative integer")),
    }
}

/// Reads a count that must fit in u32 (CPUs, nodes); empty gives 0.
pub fn parse_count(name: &str, s: &str) -> Result<u32, ValueError> {
    match parse_opt_u64(name, s)? {
        None => Ok(0),
        Some(n) => u32::try_from(n).map_err(|_| ValueError(format!("{name} {s:?} is larger than any cluster has"))),
    }
}

/// Reads a Slurm size with binary suffix into bytes: `256M`, `1G`, `62.50G`, `825768K`, `0`.
/// `default_unit` applies to a bare number (`'B'` for `--noconvert` RSS columns, `'M'` for
/// memory TRES).
pub fn parse_bytes(s: &str, default_unit: char) -> Result<u64, ValueError> {
    match bytes_plain(s.as_bytes(), default_unit) {
        Some(n) => Ok(n),
        None => parse_bytes_general(s, default_unit),
    }
}

fn parse_bytes_general(s: &str, default_unit: char) -> Result<u64, ValueError> {
    let bad = || ValueError(format!("size {s:?} is not a number with an optional K/M/G/T/P/E suffix"));
    if s.is_empty() {
        return Err(bad());
    }
    let (num, unit) = match s.as_bytes()[s.len() - 1] {
        c if c.is_ascii_alphabetic() => (&s[..s.len() - 1], c.to_ascii_uppercase() as char),
        _ => (s, default_unit),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        'P' => 50,
        'E' => 60,
        _ => return Err(bad()),
    };
    let (int_part, frac_part) = split_at_byte(num, b'.').unwrap_or((num, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = parse_u64(int_part).ok_or_else(bad)?;
    let mut bytes = whole
        .checked_shl(shift)
        .filter(|v| v >> shift == whole)
        .ok_or_else(|| ValueError(format!("size {s:?} does not fit in 64 bits: no real allocation is that large")))?;
    if !frac_part.is_empty() && shift > 0 {
        // Exact decimal fraction of one unit, rounded to the nearest byte.
        let digits = frac_part.len().min(12);
        let f: u128 = frac_part[..digits].parse().map_err(|_| bad())?;
        let scale = 10u128.pow(digits as u32);
        let frac_bytes = ((f << shift) + scale / 2) / scale;
        bytes = bytes.checked_add(frac_bytes as u64).ok_or_else(bad)?;
    }
    Ok(bytes)
}

/// [`parse_bytes`] for the usual text, digits and an optional unit letter; `None` for anything
/// else (a fraction, 19 digits or more, an error), which the general reader handles.
fn bytes_plain(b: &[u8], default_unit: char) -> Option<u64> {
    let (digits, unit) = match *b.last()? {
        c if c.is_ascii_alphabetic() => (&b[..b.len() - 1], c.to_ascii_uppercase()),
        _ => (b, default_unit as u8),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let shift = match unit {
        b'B' => 0,
        b'K' => 10,
        b'M' => 20,
        b'G' => 30,
        b'T' => 40,
        b'P' => 50,
        b'E' => 60,
        _ => return None,
    };
    let mut n = 0u64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as u64;
    }
    n.checked_shl(shift).filter(|v| v >> shift == n)
}

/// Reads ReqMem: `300M`, `1G`, or the pre-21.08 `3000Mc` (per CPU) / `48000Mn` (per node).
/// Returns (bytes, per_cpu).
pub fn parse_req_mem(s: &str) -> Result<Option<(u64, bool)>, ValueError> {
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let (body, per_cpu) = match s.as_bytes()[s.len() - 1] {
        b'c' => (&s[..s.len() - 1], true),
        b'n' => (&s[..s.len() - 1], false),
        _ => (s, false),
    };
    Ok(Some((parse_bytes(body, 'M')?, per_cpu)))
}

/// Which kind of TRES string is being read: allocations/requests or usage (TRESUsageIn*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TresKind {
    /// AllocTRES/ReqTRES: `mem` in MB unless suffixed; counts elsewhere.
    Alloc,
    /// TRESUsageIn*/Out*: `cpu` is a duration, `mem`/`vmem` in bytes with suffix, `fs/disk` bytes.
    Usage,
}

fn is_bytes_tres(name: &str) -> bool {
    // By first byte: most names (cpu, energy, node, billing, pages, gres/gpu) fail at once.
    match name.as_bytes().first() {
        Some(b'm') => name == "mem",
        Some(b'v') => name == "vmem",
        Some(b'f') => name.starts_with("fs/"),
        Some(b'b') => name.starts_with("bb/"),
        Some(b'g') => name == "gres/gpumem",
        _ => false,
    }
}

/// Reads a TRES string such as `billing=1,cpu=1,gres/gpu:fake=1,gres/gpu=1,mem=256M,node=1`
/// or `cpu=00:00:01,energy=0,fs/disk=19273,mem=6228K,pages=0,vmem=9872K`.
/// Negative counts (Slurm's "not set" `-2` for energy) are dropped; empty gives an empty set.
pub fn parse_tres(s: &str, kind: TresKind) -> Result<Tres, ValueError> {
    let mut tres = Tres::with_capacity(memchr::memchr_iter(b',', s.as_bytes()).count() + 1);
    parse_tres_into(s, kind, &mut tres)?;
    Ok(tres)
}

/// [`parse_tres`] into `tres`, which should be empty (entries already there are kept).
pub fn parse_tres_into(s: &str, kind: TresKind, tres: &mut Tres) -> Result<(), ValueError> {
    for_each_tres(s, kind, |name, n| tres.set(name, n))
}

/// Reads a TRES string entry by entry without allocating; `f` gets each (name, count).
pub fn for_each_tres<'a>(s: &'a str, kind: TresKind, mut f: impl FnMut(&'a str, u64)) -> Result<(), ValueError> {
    if s.is_empty() {
        return Ok(());
    }
    let mut rest = Some(s);
    while let Some(text) = rest {
        let part = match split_at_byte(text, b',') {
            Some((part, more)) => {
                rest = Some(more);
                part
            }
            None => {
                rest = None;
                text
            }
        };
        let Some((name, value)) = split_at_byte(part, b'=') else {
            return err(format!("TRES entry {part:?} in {s:?} is not name=value"));
        };
        if name.is_empty() {
            return err(format!("TRES entry {part:?} in {s:?} has no name"));
        }
        if value.starts_with('-') {
            continue;
        }
        let n = if kind == TresKind::Usage && name == "cpu" {
            parse_duration_ms(value)? / 1000
        } else if is_bytes_tres(name) {
            parse_bytes(value, if kind == TresKind::Alloc { 'M' } else { 'B' })?
        } else if let Some(n) = parse_u64(value) {
            n
        } else {
            // Counts may carry a unit suffix (billing=1.50K on huge jobs): take K/M/G as 10^3 steps.
            parse_si_count(value).ok_or_else(|| ValueError(format!("TRES {name}={value:?} in {s:?} is not a count")))?
        };
        f(name, n);
    }
    Ok(())
}

fn parse_si_count(v: &str) -> Option<u64> {
    let (num, mult) = match v.as_bytes().last()? {
        b'K' => (&v[..v.len() - 1], 1_000u64),
        b'M' => (&v[..v.len() - 1], 1_000_000),
        b'G' => (&v[..v.len() - 1], 1_000_000_000),
        _ => return None,
    };
    let f: f64 = num.parse().ok()?;
    (f.is_finite() && f >= 0.0).then(|| (f * mult as f64).round() as u64)
}

/// Reads a state column: `COMPLETED`, `CANCELLED by 1000`, `CANCELLED+` (truncated fixed-width).
/// Returns the state and, for cancellations, the canceller's uid.
pub fn parse_state(s: &str) -> Result<(JobState, Option<u32>), ValueError> {
    let s = s.trim_end_matches('+');
    if !s.as_bytes().contains(&b' ') {
        // The usual case: a bare state name.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return err(format!("state {s:?} is not a Slurm state name"));
        }
        return Ok((JobState::from_slurm(s), None));
    }
    let mut words = s.split(' ');
    let name = words.next().unwrap_or("");
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return err(format!("state {s:?} is not a Slurm state name"));
    }
    let by = match (words.next(), words.next()) {
        (Some("by"), Some(uid)) => {
            Some(uid.parse().map_err(|_| ValueError(format!("state {s:?}: uid after 'by' is not a number")))?)
        }
        (None, _) => None,
        _ => return err(format!("state {s:?} is not '<STATE>' or '<STATE> by <uid>'")),
    };
    Ok((JobState::from_slurm(name), by))
}

/// Reads `code:signal`; empty gives `None`.
pub fn parse_exit_code(s: &str) -> Result<Option<ExitCode>, ValueError> {
    if s.is_empty() {
        return Ok(None);
    }
    let parsed =
        split_at_byte(s, b':').and_then(|(c, sig)| Some(ExitCode { code: c.parse().ok()?, signal: sig.parse().ok()? }));
    parsed.map(Some).ok_or_else(|| ValueError(format!("exit code {s:?} is not code:signal")))
}

/// Reads TimelimitRaw (minutes) or Timelimit text; `UNLIMITED`/`Partition_Limit`/empty → `None`.
pub fn parse_timelimit_mins(s: &str) -> Result<Option<u64>, ValueError> {
    match s {
        "" | "UNLIMITED" | "Partition_Limit" | "INVALID" => Ok(None),
        _ if s.bytes().all(|b| b.is_ascii_digit()) => Ok(s.parse().ok()),
        _ => Ok(Some(parse_duration_ms(s)? / 60_000)),
    }
}

/// What a JobID column says about the job: array and het parts, and the step if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdParts {
    /// The job part without the step: `7_3`, `7_[2-3]`, `13+1`, `42`.
    pub job: String,
    pub base: u64,
    pub array_task: Option<u32>,
    /// True for a pending array range such as `7_[2-3,5]`.
    pub array_range: bool,
    pub het_offset: Option<u32>,
    /// `batch`, `extern`, `interactive`, `0`, `1`… for step rows.
    pub step: Option<String>,
}

/// [`JobIdParts`] borrowing from the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobIdRef<'a> {
    pub job: &'a str,
    pub base: u64,
    pub array_task: Option<u32>,
    pub array_range: bool,
    pub het_offset: Option<u32>,
    pub step: Option<&'a str>,
}

/// Reads a JobID: `42`, `42.batch`, `7_3`, `7_3.batch`, `7_[2-3,5]`, `13+1`, `13+1.0`.
pub fn parse_job_id(s: &str) -> Result<JobIdParts, ValueError> {
    let r = parse_job_id_ref(s)?;
    Ok(JobIdParts {
        job: r.job.to_string(),
        base: r.base,
        array_task: r.array_task,
        array_range: r.array_range,
        het_offset: r.het_offset,
        step: r.step.map(str::to_string),
    })
}

/// [`parse_job_id`] without allocating.
pub fn parse_job_id_ref(s: &str) -> Result<JobIdRef<'_>, ValueError> {
    let bad = |why: &str| ValueError(format!("job id {s:?} {why}"));
    // A step separator is the first '.' after the job part; array ranges contain no '.'.
    let (job, step) = match split_at_byte(s, b'.') {
        Some((j, st)) if !st.is_empty() => (j, Some(st)),
        Some(_) => return Err(bad("ends with '.'")),
        None => (s, None),
    };
    let mut parts = JobIdRef { job, base: 0, array_task: None, array_range: false, het_offset: None, step };
    if let Some((base, task)) = split_at_byte(job, b'_') {
        parts.base = base.parse().map_err(|_| bad("has a non-numeric array job id"))?;
        if task.starts_with('[') {
            if !task.ends_with(']') || task.len() < 3 {
                return Err(bad("has an unterminated array range"));
            }
            let inner = &task[1..task.len() - 1];
            let inner = inner.split('%').next().unwrap_or(inner);
            if !inner.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b',') {
                return Err(bad("has an array range that is not digits, '-' and ','"));
            }
            parts.array_range = true;
        } else {
            parts.array_task = Some(task.parse().map_err(|_| bad("has a non-numeric array task id"))?);
        }
    } else if let Some((base, off)) = split_at_byte(job, b'+') {
        parts.base = base.parse().map_err(|_| bad("has a non-numeric het job id"))?;
        parts.het_offset = Some(off.parse().map_err(|_| bad("has a non-numeric het job offset"))?);
    } else {
        parts.base = parse_u64(job).ok_or_else(|| bad("is not a number, array (N_M) or het (N+M) id"))?;
    }
    Ok(parts)
}

/// Reads JobIDRaw: `15` or `15.batch`. Returns (raw id, step).
pub fn parse_job_id_raw(s: &str) -> Result<(u64, Option<&str>), ValueError> {
    let (id, step) = match split_at_byte(s, b'.') {
        Some((i, st)) => (i, Some(st)),
        None => (s, None),
    };
    let n = parse_u64(id).ok_or_else(|| ValueError(format!("JobIDRaw {s:?} is not a number")))?;
    Ok((n, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_utc_and_zoned() {
        // From capture/sacct-steps-parsable2.txt, job 1 submit.
        let t = parse_time("2026-11-22T00:21:57", &TimeZone::Utc).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T00:21:57Z");
        assert_eq!(parse_time("Unknown", &TimeZone::Utc).unwrap(), None);
        assert_eq!(parse_time("None", &TimeZone::Utc).unwrap(), None);
        let berlin = TimeZone::from_name("Europe/Berlin").unwrap();
        let b = parse_time("2026-11-22T01:21:57", &berlin).unwrap().unwrap();
        assert_eq!(b, t);
        assert!(parse_time("11/22-00:21:57", &TimeZone::Utc).unwrap_err().0.contains("SLURM_TIME_FORMAT"));
        assert!(parse_time("2026-13-22T00:21:57", &TimeZone::Utc).is_err());
        assert!(TimeZone::from_name("Mars/Olympus").unwrap_err().0.contains("IANA"));
    }

    #[test]
    fn time_roundtrip_with_sacct_format() {
        for secs in [0i64, 951_782_400, 1_795_000_000, 4_102_444_799] {
            let s = format_sacct_time(UnixTime(secs));
            assert_eq!(parse_time(&s, &TimeZone::Utc).unwrap(), Some(UnixTime(secs)), "{s}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("00:01.655").unwrap(), 1_655);
        assert_eq!(parse_duration_ms("00:00:00").unwrap(), 0);
        assert_eq!(parse_duration_ms("3-00:00:00").unwrap(), 3 * 86_400_000);
        assert_eq!(parse_duration_ms("22:53.824").unwrap(), (22 * 60 + 53) * 1000 + 824);
        assert_eq!(parse_duration_ms("11:06:33").unwrap(), (11 * 3600 + 6 * 60 + 33) * 1000);
        assert_eq!(parse_duration_ms("14:00:49").unwrap(), (14 * 3600 + 49) * 1000);
        assert_eq!(parse_duration_ms("").unwrap(), 0);
        for bad in ["INVALID", "1:2:3:4", "00:61", "x-00:00:01", "00:01.", "00:01.x"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fast_paths_agree_with_the_general_readers() {
        let durations = [
            "00:01.655",
            "59:59.999",
            "60:00.000",
            "00:60.000",
            "12:34:56",
            "99:59:59",
            "00:61:00",
            "1a:00:00",
            "00:00.0x0",
            "0:00:00",
            "00:00:00",
        ];
        for d in durations {
            if let Some(fast) = duration_fixed_shape(d.as_bytes()) {
                assert_eq!(Ok(fast), parse_duration_general(d), "{d}");
            }
            assert_eq!(parse_duration_ms(d), parse_duration_general(d), "{d}");
        }
        let sizes = [
            "0",
            "256M",
            "825768K",
            "19273",
            "1g",
            "999999999999999999E",
            "99999999999999E",
            "12Q",
            "1.5G",
            "",
            "K",
            "00012K",
            "+5M",
        ];
        for s in sizes {
            for unit in ['K', 'M', 'B'] {
                if let Some(fast) = bytes_plain(s.as_bytes(), unit) {
                    assert_eq!(Ok(fast), parse_bytes_general(s, unit), "{s}");
                }
                assert_eq!(parse_bytes(s, unit), parse_bytes_general(s, unit), "{s}");
            }
        }
        assert!(durations.iter().filter(|d| duration_fixed_shape(d.as_bytes()).is_some()).count() >= 4);
        assert!(sizes.iter().filter(|s| bytes_plain(s.as_bytes(), 'K').is_some()).count() >= 5);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256M", 'M').unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1G", 'M').unwrap(), 1 << 30);
        assert_eq!(parse_bytes("825768K", 'K').unwrap(), 825_768 << 10);
        assert_eq!(parse_bytes("62.50G", 'M').unwrap(), 64_000u64 << 20);
        assert_eq!(parse_bytes("0.02M", 'M').unwrap(), 20_972); // 0.02 MiB, rounded to the byte
        assert_eq!(parse_bytes("19273", 'B').unwrap(), 19_273);
        assert_eq!(parse_bytes("0", 'K').unwrap(), 0);
        assert!(parse_bytes("99999999999999E", 'M').unwrap_err().0.contains("64 bits"));
        assert!(parse_bytes("12Q", 'M').is_err());
        assert!(parse_bytes("-5M", 'M').is_err());
        assert_eq!(parse_req_mem("3000Mc").unwrap(), Some((3000 << 20, true)));
        assert_eq!(parse_req_mem("48000Mn").unwrap(), Some((48_000 << 20, false)));
        assert_eq!(parse_req_mem("300M").unwrap(), Some((300 << 20, false)));
    }

    #[test]
    fn tres_alloc_and_usage() {
        let a = parse_tres("billing=1,cpu=1,gres/gpu:fake=1,gres/gpu=1,mem=256M,node=1", TresKind::Alloc).unwrap();
        assert_eq!(a.get("mem"), Some(256 << 20));
        assert_eq!(a.gpus(), 1);
        let u =
            parse_tres("cpu=00:00:01,energy=0,fs/disk=19273,mem=6228K,pages=0,vmem=9872K", TresKind::Usage).unwrap();
        assert_eq!(u.get("cpu"), Some(1));
        assert_eq!(u.get("mem"), Some(6228 << 10));
        assert_eq!(u.get("fs/disk"), Some(19_273));
        // Energy "not set" is -2 in Slurm; it is dropped, not wrapped around.
        assert_eq!(parse_tres("cpu=4,energy=-2", TresKind::Alloc).unwrap().get("energy"), None);
        // squeue's fractional memory (prometheus-slurm-exporter sample).
        assert_eq!(parse_tres("cpu=8,mem=62.50G,node=1", TresKind::Alloc).unwrap().get("mem"), Some(64_000 << 20));
        assert!(parse_tres("cpu", TresKind::Alloc).is_err());
        assert!(parse_tres("cpu=abc", TresKind::Alloc).is_err());
    }

    #[test]
    fn states_and_exit_codes() {
        assert_eq!(parse_state("CANCELLED by 0").unwrap(), (JobState::Cancelled, Some(0)));
        assert_eq!(parse_state("CANCELLED by 102216").unwrap(), (JobState::Cancelled, Some(102_216)));
        assert_eq!(parse_state("OUT_OF_MEMORY").unwrap(), (JobState::OutOfMemory, None));
        assert_eq!(parse_state("CANCELLED+").unwrap().0, JobState::Cancelled);
        assert!(parse_state("cancelled").is_err());
        assert!(parse_state("CANCELLED by x").is_err());
        assert_eq!(parse_exit_code("0:15").unwrap(), Some(ExitCode { code: 0, signal: 15 }));
        assert_eq!(parse_exit_code("").unwrap(), None);
        assert!(parse_exit_code("1").is_err());
        assert_eq!(parse_timelimit_mins("UNLIMITED").unwrap(), None);
        assert_eq!(parse_timelimit_mins("5").unwrap(), Some(5));
        assert_eq!(parse_timelimit_mins("3-00:00:00").unwrap(), Some(3 * 24 * 60));
    }

    #[test]
    fn job_ids() {
        let p = parse_job_id("7_3").unwrap();
        assert_eq!((p.base, p.array_task, p.step), (7, Some(3), None));
        let p = parse_job_id("7_0.batch").unwrap();
        assert_eq!((p.job.as_str(), p.step.as_deref()), ("7_0", Some("batch")));
        let p = parse_job_id("4103947_[9-11,13,16-20]").unwrap();
        assert!(p.array_range && p.array_task.is_none() && p.base == 4_103_947);
        let p = parse_job_id("7_[2-3%2]").unwrap();
        assert!(p.array_range);
        let p = parse_job_id("13+1").unwrap();
        assert_eq!((p.base, p.het_offset), (13, Some(1)));
        let p = parse_job_id("13+1.0").unwrap();
        assert_eq!(p.step.as_deref(), Some("0"));
        for bad in ["", "abc", "7_", "7_[1-3", "7_x", "13+", "1."] {
            assert!(parse_job_id(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_job_id_raw("15.batch").unwrap(), (15, Some("batch")));
        assert!(parse_job_id_raw("x").is_err());
    }
}
