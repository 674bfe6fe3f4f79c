//! `[sinks.activate]`: the section as written, and its pure validation (every problem names its
//! key and the fix). The API key is never a config value: it comes from the environment or the
//! file named by `api_key_file`, read when the sink is built.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::delivery::slices::Metering;
use crate::validate::{non_empty, push, Problems};

/// The section as `config example` shows it.
pub const EXAMPLE: &str = r#"# [sinks.activate]                      # Parallel Works ACTIVATE usage events (slurm-tracker's job)
# organization = "my-org"               # slurm-tracker's --org
# host = "https://activate.example.org" # else PW_PLATFORM_HOST, else decoded from the API key
# api_key_file = "/etc/slurm-ledger/activate.key"  # mode 0600; else env SLURM_LEDGER_ACTIVATE_API_KEY or PW_API_KEY
# default_sku = "standard-compute"      # for partitions not in partition_sku; unset: such runs are held
# default_allocation = "my-allocation"  # for accounts not in account_allocation; unset: held
# tres = "cpu"                          # billed TRES: cpu (core-hours), mem (GiB-hours), gres/gpu, billing, ...
# basis = "allocated"                   # allocated (AllocTRES) or requested (ReqTRES)
# period = "day"                        # slices never cross a day (or month) boundary in `timezone`
# timezone = "UTC"
# running_slice = "15m"                 # report running jobs once this much new time accrued
# timeout_secs = 30                     # per HTTP request
# concurrency = 4                       # requests in flight at once (1 to 64); a 429 pauses them all
# [sinks.activate.partition_sku]
# compute = "standard-compute"
# [sinks.activate.account_allocation]
# research-team = "allocation-oid-12345"
"#;

/// `[sinks.activate]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActivate {
    pub organization: Option<String>,
    pub host: Option<String>,
    pub api_key_file: Option<String>,
    pub default_sku: Option<String>,
    pub default_allocation: Option<String>,
    #[serde(default)]
    pub partition_sku: BTreeMap<String, String>,
    #[serde(default)]
    pub account_allocation: BTreeMap<String, String>,
    pub tres: Option<String>,
    pub basis: Option<String>,
    pub period: Option<String>,
    pub timezone: Option<String>,
    pub running_slice: Option<String>,
    pub timeout_secs: Option<i64>,
    pub concurrency: Option<i64>,
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
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// A name that goes into a URL path as one segment.
fn path_segment_ok(name: &str) -> bool {
    !name.trim().is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// Validates the section.
pub fn validate(a: RawActivate, problems: &mut Problems) -> ActivateSettings {
    let organization = match a.organization {
        Some(o) if path_segment_ok(&o) => o,
        Some(o) => {
            push(
                problems,
                "sinks.activate.organization",
                format!(
                    "{o:?} is not an organization name; give the name used in ACTIVATE URLs (slurm-tracker's --org)"
                ),
            );
            String::new()
        }
        None => {
            push(
                problems,
                "sinks.activate.organization",
                "is missing; give the organization name (slurm-tracker's --org)",
            );
            String::new()
        }
    };
    let host = non_empty(problems, "sinks.activate.host", a.host, "https://activate.example.org");
    if let Some(h) = &host {
        if !(h.starts_with("https://") || h.starts_with("http://")) || h.contains(char::is_whitespace) {
            push(
                problems,
                "sinks.activate.host",
                format!("{h:?} is not a base URL; write it as \"https://activate.example.org\""),
            );
        } else if let Err(e) = super::host::check_transport(h) {
            push(problems, "sinks.activate.host", e.to_string());
        }
    }
    let api_key_file = a.api_key_file.map(PathBuf::from);
    if let Some(p) = &api_key_file {
        if !p.is_absolute() {
            push(
                problems,
                "sinks.activate.api_key_file",
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
                "sinks.activate.default_allocation",
                format!("{d:?} cannot be a URL path segment; give a name without '/', other than \".\" or \"..\""),
            );
        }
    }
    let timeout_secs = a.timeout_secs.unwrap_or(30);
    if !(1..=600).contains(&timeout_secs) {
        push(problems, "sinks.activate.timeout_secs", format!("is {timeout_secs}; use 1 to 600 seconds (default 30)"));
    }
    let concurrency = crate::validate::concurrency(problems, "sinks.activate.concurrency", a.concurrency);
    let metering = Metering::validate(problems, "activate", a.tres, a.basis, a.period, a.timezone, a.running_slice);
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
        concurrency,
    }
}

/// The `[sinks.activate]` table of a whole config text, validated (tests).
#[cfg(test)]
pub fn from_config_text(text: &str) -> ActivateSettings {
    let table: toml::Table = toml::from_str(text).expect("TOML");
    let raw: RawActivate = table["sinks"]["activate"].clone().try_into().expect("[sinks.activate]");
    let mut problems = Problems::new();
    let s = validate(raw, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    s
}
