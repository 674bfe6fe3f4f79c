//! The config file as written: serde types that mirror the TOML, nothing validated yet.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub slurm: RawSlurm,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub sinks: RawSinks,
    #[serde(default)]
    pub delivery: RawDelivery,
}

/// `[delivery]`: retry timing and batch size, shared by every sink.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub retry_backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub batch: Option<i64>,
}

/// `[sinks.*]`: one table per platform; a sink is on when its table is present.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSinks {
    pub activate: Option<RawActivate>,
    pub jsonl: Option<RawJsonl>,
}

/// `[sinks.activate]`: Parallel Works ACTIVATE usage events.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActivate {
    pub organization: Option<String>,
    pub host: Option<String>,
    pub api_key_file: Option<String>,
    pub default_sku: Option<String>,
    pub default_allocation: Option<String>,
    #[serde(default)]
    pub partition_sku: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub account_allocation: std::collections::BTreeMap<String, String>,
    pub tres: Option<String>,
    pub basis: Option<String>,
    pub period: Option<String>,
    pub timezone: Option<String>,
    pub running_slice: Option<String>,
    pub timeout_secs: Option<i64>,
}

/// `[sinks.jsonl]`: a local file of usage records, one JSON object per line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonl {
    pub path: Option<String>,
    pub tres: Option<String>,
    pub basis: Option<String>,
    pub period: Option<String>,
    pub timezone: Option<String>,
    pub running_slice: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlurm {
    pub clusters: Option<Vec<String>>,
    pub bin_dir: Option<String>,
    pub command_wrapper: Option<Vec<String>>,
    pub timeout_secs: Option<i64>,
    pub overlap: Option<String>,
    pub initial_lookback: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}
