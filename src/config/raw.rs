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
    pub sinks: crate::sinks::RawSinks,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub daemon: RawDaemon,
}

/// `[daemon]`, as written: validated by `daemon::settings` (its values are the daemon's types),
/// by `slurm-ledger daemon` at start and by `config check`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub interval: Option<String>,
    pub hook_socket: Option<String>,
    pub hook_socket_mode: Option<String>,
    pub hook_socket_group: Option<String>,
    pub hook_delay: Option<String>,
    pub metrics_listen: Option<String>,
}

/// `[delivery]`: retry timing and how much a pass sends, shared by every sink.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub retry_backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub pass_time: Option<String>,
    pub batch: Option<i64>,
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
    pub max_query_time_range: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}
