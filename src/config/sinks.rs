//! `[sinks.*]` validation: which platforms receive usage, how each meters a run, and how it
//! maps Slurm's accounts and partitions to its own names. Pure: no I/O beyond the zone database.
//!
//! Secrets are never config values: an API key comes from the environment or from a file named
//! here (`api_key_file`), read when the sink starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::meter::period::PeriodKind;
use crate::meter::Basis;

use super::raw::{RawActivate, RawJsonl, RawSinks};
use super::{parse_duration_secs, ConfigProblem};

/// How a sink meters runs: which TRES, allocated or requested, cut in which periods.
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

/// `[sinks.activate]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActivateSettings {
    pub organization: String,
    /// Base URL; unset: `PW_PLATFORM_HOST`, else decoded from the API key.
    pub host: Option<String>,
    /// File holding the API key; unset: `PW_API_KEY` / `SLURM_LEDGER_ACTIVATE_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    pub default_sku: Option<String>,
    pub default_allocation: Option<String>,
    pub partition_sku: BTreeMap<String, String>,
    pub account_allocation: BTreeMap<String, String>,
    pub metering: Metering,
    pub timeout_secs: u64,
}

/// `[sinks.jsonl]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JsonlSettings {
    pub path: PathBuf,
    pub metering: Metering,
}

/// Every configured sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkSettings {
    pub activate: Option<ActivateSettings>,
    pub jsonl: Option<JsonlSettings>,
}

impl SinkSettings {
    /// Names of the configured sinks, in delivery order.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.activate.is_some() {
            v.push("activate");
        }
        if self.jsonl.is_some() {
            v.push("jsonl");
        }
        v
    }
}

type Problems = Vec<ConfigProblem>;

fn push(problems: &mut Problems, key: String, message: String) {
    problems.push(ConfigProblem { key, message });
}

/// Reads the shared metering keys of a `[sinks.NAME]` table.
fn metering(
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
    let basis = match basis.as_deref() {
        None | Some("allocated") => Basis::Allocated,
        Some("requested") => Basis::Requested,
        Some(other) => {
            push(
                problems,
                key("basis"),
                format!("is {other:?}; use \"allocated\" (AllocTRES, default) or \"requested\" (ReqTRES)"),
            );
            Basis::Allocated
        }
    };
    let period = match period.as_deref() {
        None | Some("day") => PeriodKind::Day,
        Some("month") => PeriodKind::Month,
        Some(other) => {
            push(problems, key("period"), format!("is {other:?}; use \"day\" (default) or \"month\""));
            PeriodKind::Day
        }
    };
    let timezone = timezone.unwrap_or_else(|| "UTC".into());
    if let Err(e) = jiff::tz::TimeZone::get(&timezone) {
        push(
            problems,
            key("timezone"),
            format!(
                "{timezone:?} is not a known time zone ({e}); use an IANA name such as \"UTC\" or \"Europe/Berlin\""
            ),
        );
    }
    let running_slice_secs = match running_slice.map(|t| parse_duration_secs(&t)) {
        None => 900,
        Some(Ok(n)) if (1..=31 * 86_400).contains(&n) => n,
        Some(Ok(n)) => {
            push(problems, key("running_slice"), format!("is {n} s; use 1s to 31d (default \"15m\")"));
            900
        }
        Some(Err(e)) => {
            push(problems, key("running_slice"), e);
            900
        }
    };
    Metering { tres, basis, period, timezone, running_slice_secs }
}

fn non_empty(problems: &mut Problems, key: &str, v: Option<String>, example: &str) -> Option<String> {
    match v {
        Some(s) if s.trim().is_empty() => {
            push(problems, key.into(), format!("is empty; give a name such as {example:?} or remove the key"));
            None
        }
        other => other,
    }
}

/// A name that goes into a URL path as one segment.
fn path_segment_ok(name: &str) -> bool {
    !name.trim().is_empty() && !name.contains('/') && name != "." && name != ".."
}

fn activate(problems: &mut Problems, a: RawActivate) -> ActivateSettings {
    let organization = match a.organization {
        Some(o) if path_segment_ok(&o) => o,
        Some(o) => {
            push(
                problems,
                "sinks.activate.organization".into(),
                format!(
                    "{o:?} is not an organization name; give the name used in ACTIVATE URLs (slurm-tracker's --org)"
                ),
            );
            String::new()
        }
        None => {
            push(
                problems,
                "sinks.activate.organization".into(),
                "is missing; give the organization name (slurm-tracker's --org)".into(),
            );
            String::new()
        }
    };
    let host = non_empty(problems, "sinks.activate.host", a.host, "https://activate.example.org");
    if let Some(h) = &host {
        if !(h.starts_with("https://") || h.starts_with("http://")) || h.contains(char::is_whitespace) {
            push(
                problems,
                "sinks.activate.host".into(),
                format!("{h:?} is not a base URL; write it as \"https://activate.example.org\""),
            );
        } else if let Err(e) = crate::sinks::activate::host::check_transport(h) {
            push(problems, "sinks.activate.host".into(), e);
        }
    }
    let api_key_file = a.api_key_file.map(PathBuf::from);
    if let Some(p) = &api_key_file {
        if !p.is_absolute() {
            push(
                problems,
                "sinks.activate.api_key_file".into(),
                format!(
                    "{} is relative; give an absolute path such as \"/etc/slurm-ledger/activate.key\"",
                    p.display()
                ),
            );
        }
    }
    let default_sku = non_empty(problems, "sinks.activate.default_sku", a.default_sku, "standard-compute");
    let default_allocation =
        non_empty(problems, "sinks.activate.default_allocation", a.default_allocation, "my-allocation");
    for (map, key) in [(&a.partition_sku, "partition_sku"), (&a.account_allocation, "account_allocation")] {
        for (from, to) in map {
            if !path_segment_ok(to) {
                push(
                    problems,
                    format!("sinks.activate.{key}.{from}"),
                    format!("maps to {to:?}; give a non-empty name without '/', other than \".\" or \"..\""),
                );
            }
        }
    }
    if let Some(d) = &default_allocation {
        if !path_segment_ok(d) {
            push(
                problems,
                "sinks.activate.default_allocation".into(),
                format!("{d:?} cannot be a URL path segment; give a name without '/', other than \".\" or \"..\""),
            );
        }
    }
    let timeout_secs = a.timeout_secs.unwrap_or(30);
    if !(1..=600).contains(&timeout_secs) {
        push(
            problems,
            "sinks.activate.timeout_secs".into(),
            format!("is {timeout_secs}; use 1 to 600 seconds (default 30)"),
        );
    }
    let metering = metering(problems, "activate", a.tres, a.basis, a.period, a.timezone, a.running_slice);
    ActivateSettings {
        organization,
        host,
        api_key_file,
        default_sku,
        default_allocation,
        partition_sku: a.partition_sku,
        account_allocation: a.account_allocation,
        metering,
        timeout_secs: timeout_secs.clamp(1, 600) as u64,
    }
}

fn jsonl(problems: &mut Problems, j: RawJsonl) -> JsonlSettings {
    let path = PathBuf::from(j.path.unwrap_or_else(|| "/var/lib/slurm-ledger/usage.jsonl".into()));
    if path.as_os_str().is_empty() {
        push(
            problems,
            "sinks.jsonl.path".into(),
            "is empty; give a file such as \"/var/lib/slurm-ledger/usage.jsonl\"".into(),
        );
    }
    let metering = metering(problems, "jsonl", j.tres, j.basis, j.period, j.timezone, j.running_slice);
    JsonlSettings { path, metering }
}

/// Validates every `[sinks.*]` table.
pub(super) fn validate(problems: &mut Problems, raw: RawSinks) -> SinkSettings {
    SinkSettings { activate: raw.activate.map(|a| activate(problems, a)), jsonl: raw.jsonl.map(|j| jsonl(problems, j)) }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn activate_section_is_validated_with_keys() {
        let text = "[sinks.activate]\nhost = \"activate.example.org\"\nbasis = \"both\"\nperiod = \"week\"\ntimezone = \"Mars/Olympus\"\napi_key_file = \"key\"\n[sinks.activate.account_allocation]\nphys = \"\"\n";
        let e = Settings::from_toml(text, "c.toml").unwrap_err().to_string();
        for key in [
            "sinks.activate.organization",
            "sinks.activate.host",
            "sinks.activate.basis",
            "sinks.activate.period",
            "sinks.activate.timezone",
            "sinks.activate.api_key_file",
            "sinks.activate.account_allocation.phys",
        ] {
            assert!(e.contains(key), "{key} missing in:\n{e}");
        }
    }

    #[test]
    fn api_key_is_not_a_config_key() {
        let e = Settings::from_toml("[sinks.activate]\norganization = \"o\"\napi_key = \"pwt_secret\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `api_key`") && e.contains("line 3"), "{e}");
        assert!(!e.contains("pwt_secret"), "the value of a misplaced key was printed: {e}");
    }

    #[test]
    fn defaults() {
        let s = Settings::from_toml("[sinks.activate]\norganization = \"acme\"\n", "c.toml").unwrap();
        let a = s.sinks.activate.unwrap();
        assert_eq!(a.metering.tres, "cpu");
        assert_eq!(a.metering.running_slice_secs, 900);
        assert_eq!(a.timeout_secs, 30);
        assert_eq!(s.sinks.jsonl, None);
    }
}

#[cfg(test)]
mod transport_tests {
    use crate::config::Settings;

    #[test]
    fn plain_http_is_only_for_loopback() {
        let e = Settings::from_toml(
            "[sinks.activate]\norganization = \"o\"\nhost = \"http://activate.example.org\"\n",
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sinks.activate.host") && e.contains("https://"), "{e}");
        assert!(Settings::from_toml("[sinks.activate]\norganization = \"o\"\nhost = \"http://127.0.0.1:8080\"\n", "c")
            .is_ok());
        let e = Settings::from_toml("[sinks.activate]\norganization = \"..\"\n", "c").unwrap_err().to_string();
        assert!(e.contains("sinks.activate.organization"), "{e}");
    }
}
