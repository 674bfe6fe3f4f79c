//! `[sinks.jsonl]`: the section as written, and its pure validation.

use std::path::PathBuf;

use crate::delivery::slices::Metering;
use crate::validate::{push, Problems};

/// The section as `config example` shows it.
pub const EXAMPLE: &str = r#"# [sinks.jsonl]                         # a local file, one JSON usage record per line
# path = "/var/lib/slurm-ledger/usage.jsonl"
# tres = "cpu"
"#;

/// `[sinks.jsonl]` as written: a local file of usage records, one JSON object per line.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonl {
    pub path: Option<String>,
    pub tres: Option<String>,
    pub basis: Option<String>,
    pub period: Option<String>,
    pub timezone: Option<String>,
    pub running_slice: Option<String>,
}

/// `[sinks.jsonl]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JsonlSettings {
    pub path: PathBuf,
    pub metering: Metering,
}

/// Validates the section.
pub fn validate(j: RawJsonl, problems: &mut Problems) -> JsonlSettings {
    let path = PathBuf::from(j.path.unwrap_or_else(|| "/var/lib/slurm-ledger/usage.jsonl".into()));
    if path.as_os_str().is_empty() {
        push(problems, "sinks.jsonl.path", "is empty; give a file such as \"/var/lib/slurm-ledger/usage.jsonl\"");
    }
    let metering = Metering::validate(problems, "jsonl", j.tres, j.basis, j.period, j.timezone, j.running_slice);
    JsonlSettings { path, metering }
}
