//! The vocabulary of config validation, shared by `config` and each sink's own section: a
//! problem names its key and the fix; durations are read one way everywhere. Pure.

/// One problem with the config: the key (`sinks.activate.tres`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

/// Every problem found so far; validation goes on after the first, so all are reported at once.
pub type Problems = Vec<ConfigProblem>;

/// Problems as every message lists them: one `  - key: message` line each.
pub fn list(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| format!("  - {}: {}", p.key, p.message)).collect::<Vec<_>>().join("\n")
}

/// Adds a problem.
pub fn push(problems: &mut Problems, key: impl Into<String>, message: impl Into<String>) {
    problems.push(ConfigProblem { key: key.into(), message: message.into() });
}

/// Reads a duration such as `90s`, `15m`, `2h`, `7d`, `1w` into seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 =
        num.parse().map_err(|_| format!("{s:?} is not a duration; write e.g. \"90s\", \"15m\", \"2h\", \"7d\""))?;
    let mult = match unit.trim() {
        "s" | "" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?} has unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too long"))
}

/// Requests a sink has in flight at once unless its `concurrency` key says otherwise: few enough
/// for any platform that is not rate-limited, enough to hide tens of ms a round trip.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The most requests a sink may have in flight at once (each is a thread during a batch).
pub const MAX_CONCURRENCY: i64 = 64;

/// A sink's `concurrency` key (requests in flight at once): 1 to [`MAX_CONCURRENCY`], default
/// [`DEFAULT_CONCURRENCY`]; out of range is a problem (and the default is used).
pub fn concurrency(problems: &mut Problems, key: &str, v: Option<i64>) -> usize {
    match v {
        None => DEFAULT_CONCURRENCY,
        Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => n as usize,
        Some(n) => {
            push(
                problems,
                key,
                format!(
                    "is {n}; use 1 to {MAX_CONCURRENCY} requests in flight at once (default {DEFAULT_CONCURRENCY}; 1 sends one \
                     after another)"
                ),
            );
            DEFAULT_CONCURRENCY
        }
    }
}

/// An optional non-empty name: an empty one is a problem (and dropped).
pub fn non_empty(problems: &mut Problems, key: &str, v: Option<String>, example: &str) -> Option<String> {
    match v {
        Some(s) if s.trim().is_empty() => {
            push(problems, key, format!("is empty; give a name such as {example:?} or remove the key"));
            None
        }
        other => other,
    }
}
