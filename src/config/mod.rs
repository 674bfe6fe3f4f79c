//! Configuration: TOML file → raw serde types → pure validation → [`Settings`].
//!
//! Validation does no I/O and reports every problem at once, each naming the key and the fix.
//! Environment variable names live here, in one place.

mod raw;

use std::path::{Path, PathBuf};

pub use crate::validate::{parse_duration_secs, ConfigProblem};
pub use raw::{RawConfig, RawDaemon};

/// Config file used when none is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/slurm-ledger/config.toml";
/// Ledger used when neither the config nor the command line names one.
pub const DEFAULT_LEDGER_PATH: &str = "/var/lib/slurm-ledger/ledger.db";
/// Names the config file.
pub const ENV_CONFIG: &str = "SLURM_LEDGER_CONFIG";
/// Names the ledger file, over the config.
pub const ENV_LEDGER: &str = "SLURM_LEDGER_DB";
/// The address `slurm-ledger hook` sends to (a unix socket path or `tcp:HOST:PORT`).
pub const ENV_HOOK_SOCKET: &str = "SLURM_LEDGER_HOOK_SOCKET";
/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    pub ledger_path: PathBuf,
    pub slurm: SlurmSettings,
    pub log_level: String,
    pub sinks: crate::sinks::SinkSettings,
    pub delivery: DeliverySettings,
    /// `[daemon]` as written; `daemon::settings` validates it.
    pub daemon: RawDaemon,
}

/// `[delivery]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliverySettings {
    /// First retry delay; doubles per attempt up to `max_backoff_secs`.
    pub retry_backoff_secs: u64,
    pub max_backoff_secs: u64,
    /// Longest a `deliver` pass spends sending (shared by the sinks); what is left goes next pass.
    pub pass_time_secs: u64,
    /// Most deliveries sent per sink in one pass, if capped (default: no cap; the time bounds it).
    pub batch: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlurmSettings {
    /// Clusters to poll; empty means the local cluster as `scontrol show config` names it.
    pub clusters: Vec<String>,
    pub bin_dir: Option<PathBuf>,
    pub command_wrapper: Vec<String>,
    pub timeout_secs: u64,
    pub overlap_secs: i64,
    pub initial_lookback_secs: i64,
    /// The longest window one `sacct` call may ask for (slurmdbd's `MaxQueryTimeRange`): longer
    /// collects and `backfill` read in windows no longer than this.
    pub max_query_range_secs: i64,
}

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} has {} problem(s):\n{}", .problems.len(), crate::validate::list(.problems))]
    Invalid { path: String, problems: Vec<ConfigProblem> },
}

/// Reads TOML text into the raw config, going on past each problem: a key that is unknown or of
/// the wrong type, or a line that is not TOML, is reported (by line, never quoting its text: a
/// secret pasted into the wrong key must not reach a terminal) and left out, and reading starts
/// over without it, so every such problem is listed in one run. A table header that is the
/// problem is left out with its keys.
fn parse_lenient(text: &str) -> (RawConfig, Vec<ConfigProblem>) {
    let mut text = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let e = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return (raw, problems),
            Err(e) => e,
        };
        let Some(span) = e.span() else { break };
        let line_no = text[..span.start.min(text.len())].matches('\n').count();
        problems.push(ConfigProblem {
            key: format!("line {}", line_no + 1),
            message: without_values(e.message().trim_end()),
        });
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        let Some(first) = lines.get(line_no) else { break };
        if first.trim().is_empty() {
            break; // nothing left to leave out: the rest cannot be read
        }
        let header = first.trim_start().starts_with('[');
        let mut i = line_no;
        loop {
            lines[i] = " ".repeat(lines[i].chars().count());
            i += 1;
            if !header || i >= lines.len() || lines[i].trim_start().starts_with('[') {
                break;
            }
        }
        text = lines.join("\n");
    }
    (RawConfig::default(), problems)
}

/// A serde message without the value it quotes (`invalid type: string "…", expected u64`): the
/// value may be a secret pasted into the wrong key.
fn without_values(message: &str) -> String {
    match (message.find(" \""), message.rfind("\",")) {
        (Some(a), Some(b)) if message.starts_with("invalid") && b > a => {
            format!("{} (value not shown){}", &message[..a], &message[b + 1..])
        }
        _ => message.to_string(),
    }
}

/// The config file in effect: the named one, else the default path when it exists, else none
/// (built-in defaults).
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
    }
}

impl Settings {
    /// Parses TOML text; `path` is only for messages.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let (settings, problems) = Self::check_toml(text);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid { path: path.into(), problems })
        }
    }

    /// Every problem of a config text at once (TOML, then values), with the settings as far as
    /// they could be read (a bad value takes its default): what `config check` builds on.
    pub fn check_toml(text: &str) -> (Self, Vec<ConfigProblem>) {
        let (raw, mut problems) = parse_lenient(text);
        let (settings, more) = Self::validate_lenient(raw);
        problems.extend(more);
        (settings, problems)
    }

    /// Loads the named config, or the default path if it exists, or built-in defaults.
    /// Returns the settings and the file they came from.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let Some(path) = config_path(explicit) else {
            return Ok((Self::validate(RawConfig::default()).expect("defaults are valid"), None));
        };
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Ok((Self::from_toml(&text, &shown)?, Some(path)))
    }

    /// Pure validation: every problem, each with its key and fix.
    pub fn validate(raw: RawConfig) -> Result<Self, Vec<ConfigProblem>> {
        match Self::validate_lenient(raw) {
            (s, p) if p.is_empty() => Ok(s),
            (_, p) => Err(p),
        }
    }

    /// [`Settings::validate`], returning the settings as far as they are valid (a bad value
    /// takes its default) with every problem.
    pub fn validate_lenient(raw: RawConfig) -> (Self, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| problems.push(ConfigProblem { key: key.into(), message });

        let ledger_path = PathBuf::from(raw.ledger.path.clone().unwrap_or_else(|| DEFAULT_LEDGER_PATH.into()));
        if ledger_path.as_os_str().is_empty() {
            problem("ledger.path", "is empty; give a file path such as \"/var/lib/slurm-ledger/ledger.db\"".into());
        }

        let s = raw.slurm;
        let clusters = s.clusters.unwrap_or_default();
        for (i, c) in clusters.iter().enumerate() {
            if let Err(e) = crate::model::ClusterName::new(c) {
                problem(&format!("slurm.clusters[{i}]"), e);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &clusters {
            if !seen.insert(c) {
                problem("slurm.clusters", format!("lists {c:?} twice; list each cluster once"));
            }
        }
        let bin_dir = s.bin_dir.map(PathBuf::from);
        if let Some(d) = &bin_dir {
            if !d.is_absolute() {
                problem(
                    "slurm.bin_dir",
                    format!("{:?} is relative; give an absolute directory such as \"/usr/bin\"", d),
                );
            }
        }
        let command_wrapper = s.command_wrapper.unwrap_or_default();
        if command_wrapper.iter().any(|a| a.is_empty()) {
            problem(
                "slurm.command_wrapper",
                "has an empty argument; write it as a list such as [\"ssh\", \"slurm-head\"]".into(),
            );
        }
        let timeout_secs = s.timeout_secs.unwrap_or(600);
        if !(1..=86_400).contains(&timeout_secs) {
            problem("slurm.timeout_secs", format!("is {timeout_secs}; use 1 to 86400 seconds (default 600)"));
        }
        let mut dur = |key: &str, v: Option<String>, default: i64, max: i64| -> i64 {
            match v.map(|t| parse_duration_secs(&t)) {
                None => default,
                Some(Ok(n)) if (0..=max).contains(&n) => n,
                Some(Ok(n)) => {
                    problem(key, format!("is {n} s; use at most {max} s"));
                    default
                }
                Some(Err(e)) => {
                    problem(key, e);
                    default
                }
            }
        };
        let overlap_secs = dur("slurm.overlap", s.overlap, 15 * 60, 7 * 86_400);
        let initial_lookback_secs = dur("slurm.initial_lookback", s.initial_lookback, 86_400, 3660 * 86_400);
        let max_query_range_secs = dur("slurm.max_query_time_range", s.max_query_time_range, 86_400, 366 * 86_400);

        let retry_backoff_secs = dur("delivery.retry_backoff", raw.delivery.retry_backoff, 30, 86_400).max(1) as u64;
        let max_backoff_secs = dur("delivery.max_backoff", raw.delivery.max_backoff, 3600, 7 * 86_400).max(1) as u64;
        let pass_time_secs = dur("delivery.pass_time", raw.delivery.pass_time, 4 * 60, 86_400);
        if pass_time_secs == 0 {
            problem("delivery.pass_time", "is 0: a pass could send nothing; use 1s to 24h (default 4m)".into());
        }
        let pass_time_secs = pass_time_secs.max(1) as u64;
        if max_query_range_secs < 3600 {
            problem(
                "slurm.max_query_time_range",
                format!("is {max_query_range_secs} s; use 1h or more (slurmdbd.conf's MaxQueryTimeRange; default 1d)"),
            );
        }
        let batch = raw.delivery.batch;
        if let Some(b) = batch.filter(|b| *b < 1) {
            problem(
                "delivery.batch",
                format!("is {b}; use 1 or more, or leave it out (no cap: pass_time bounds a pass)"),
            );
        }

        let log_level = raw.log.level.unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            problem("log.level", format!("is {log_level:?}; use one of error, warn, info, debug, trace"));
        }
        let sinks = crate::sinks::validate(raw.sinks, &mut problems);
        let settings = Self {
            ledger_path,
            slurm: SlurmSettings {
                clusters,
                bin_dir,
                command_wrapper,
                timeout_secs: timeout_secs as u64,
                overlap_secs,
                initial_lookback_secs,
                max_query_range_secs: max_query_range_secs.max(3600),
            },
            log_level,
            sinks,
            delivery: DeliverySettings {
                retry_backoff_secs,
                max_backoff_secs: max_backoff_secs.max(retry_backoff_secs),
                pass_time_secs,
                batch: batch.map(|b| b.max(1) as u64),
            },
            daemon: raw.daemon,
        };
        (settings, problems)
    }
}

/// A commented example config: these settings, then each sink's commented table (its own
/// [`crate::sinks::SinkKind::EXAMPLE`]); `config example` prints it and tests check that it
/// validates, and that each sink's table does once uncommented.
pub fn example() -> String {
    format!("{EXAMPLE_BASE}{}", crate::sinks::examples())
}

/// The part of [`example`] that is not a sink's.
const EXAMPLE_BASE: &str = r#"# slurm-ledger configuration (TOML). Every key is optional; shown values are the defaults.

[ledger]
# The SQLite ledger file. Its directory must exist and be writable.
path = "/var/lib/slurm-ledger/ledger.db"

[slurm]
# Clusters to collect, each with its own cursor. Empty: the local cluster (scontrol show config).
clusters = []
# Directory of sacct/scontrol; unset: PATH.
# bin_dir = "/usr/bin"
# Prefix for every Slurm command, for sites whose client lives elsewhere. The far side runs
# `timeout -k 10 <timeout_secs> env TZ=UTC … sacct …` (GNU coreutils' timeout):
# command_wrapper = ["ssh", "slurm-head"]
# command_wrapper = ["docker", "exec", "slurmctld"]
command_wrapper = []
# Seconds one Slurm command may take before it is killed.
timeout_secs = 600
# How far each collect re-reads before the cursor (records reach slurmdbd late after outages).
overlap = "15m"
# How far the very first collect of a cluster reaches back.
initial_lookback = "1d"
# The longest time window slurmdbd answers in one query (slurmdbd.conf MaxQueryTimeRange):
# a longer collect (a first one, --lookback, a cursor left behind) and `backfill` read in
# windows no longer than this, one sacct call each.
max_query_time_range = "1d"

[log]
# error, warn, info, debug or trace. -v / -q on the command line override it.
level = "info"

[delivery]
# First retry delay after a failed send; doubles per attempt (with jitter) up to max_backoff.
# A send whose outcome is unknown (timeout, 5xx) is looked up on the platform, not resent blindly.
retry_backoff = "30s"
max_backoff = "1h"
# Longest a `deliver`/`run` pass spends sending, shared by the sinks (each gets the time left
# divided by the sinks still to go). A backlog larger than a pass can send (a backfill) drains
# over the next passes; `status` shows it and its age. Keep it under the cron interval.
pass_time = "4m"
# Optional cap on deliveries sent per sink in one pass (default: none; pass_time bounds a pass).
# batch = 100000

[daemon]
# `slurm-ledger daemon`: how often it collects (one sacct per cluster) and delivers.
interval = "60s"
# Where the prolog/epilog hook (`slurm-ledger hook`) reaches it: a unix socket path, or
# tcp:HOST:PORT for hooks on other controllers; "none": no hook, polls only.
hook_socket = "/run/slurm-ledger/hook.sock"
# The unix socket's mode and group: SlurmUser (slurm) must be able to write it.
hook_socket_mode = "0620"
# hook_socket_group = "slurm"
# How long after a hook message the daemon asks for the job: sacct, then slurmctld's live view
# (scontrol show job) for what slurmdbd has not heard of yet; asked again, doubling from 250 ms,
# while neither shows the change. "0s": at once.
hook_delay = "0s"
# /metrics and /healthz; "none": not served. Loopback by default.
metrics_listen = "127.0.0.1:19464"

# Sinks: a platform receives usage when its table is present. `slurm-ledger deliver` (or `run`)
# meters every run in the ledger and reports each second of it exactly once per sink.
#
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_valid_and_matches_defaults() {
        let mut s = Settings::from_toml(&example(), "example").unwrap();
        // `[daemon]` is kept as written (the daemon checks that its example gives its defaults).
        assert!(s.daemon.interval.is_some());
        s.daemon = Default::default();
        assert_eq!(s, Settings::validate(RawConfig::default()).unwrap());
        assert_eq!(s.slurm.overlap_secs, 900);
    }

    #[test]
    fn every_sinks_example_validates_once_uncommented() {
        let text = example();
        let sinks = &text[text.find("# [sinks.").expect("a sink example")..];
        let uncommented: String = sinks.lines().map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(""))).collect();
        let s = Settings::from_toml(&uncommented, "example").unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(s.sinks.names(), crate::sinks::KNOWN, "every sink has an example");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Settings::from_toml("[slurm]\ncluster = \"a\"\n", "c.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `cluster`") && e.contains("clusters"), "{e}");
        assert!(e.contains("c.toml"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_key_and_fix() {
        let text = "[slurm]\nclusters = [\"ok\", \"bad name\"]\ntimeout_secs = 0\noverlap = \"10 parsecs\"\nbin_dir = \"bin\"\n[log]\nlevel = \"loud\"\n";
        let e = Settings::from_toml(text, "c.toml").unwrap_err().to_string();
        for key in ["slurm.clusters[1]", "slurm.timeout_secs", "slurm.overlap", "slurm.bin_dir", "log.level"] {
            assert!(e.contains(key), "{key} missing in:\n{e}");
        }
        assert!(e.contains("5 problem(s)"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert!(parse_duration_secs("2 fortnights").is_err());
        assert!(parse_duration_secs("").is_err());
    }
}

#[cfg(test)]
mod sink_tests {
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
    fn a_value_of_the_wrong_type_is_not_printed() {
        let e = Settings::from_toml("[slurm]\ntimeout_secs = \"pwt_s3cret\"\n", "c.toml").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("invalid type") && !e.contains("pwt_s3cret"), "{e}");
    }

    #[test]
    fn api_key_is_not_a_config_key() {
        let e = Settings::from_toml("[sinks.activate]\norganization = \"o\"\napi_key = \"pwt_secret\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `api_key`") && e.contains("line 3"), "{e}");
        assert!(!e.contains("pwt_secret"), "the value of a misplaced key was printed: {e}");
    }

    /// Each HTTP sink's `concurrency`: 1 to 64, default 4; anything else named with its key and
    /// the range. The sinks that write a batch at once have no such key.
    #[test]
    fn concurrency_is_validated_per_http_sink() {
        for sink in ["activate", "waldur", "cc_backend"] {
            let key = format!("sinks.{sink}.concurrency");
            let problems = |extra: &str| {
                let (s, p) = Settings::check_toml(&format!("[sinks.{sink}]\n{extra}"));
                (s, p.into_iter().filter(|p| p.key == key).map(|p| p.message).collect::<Vec<_>>())
            };
            for bad in ["0", "65", "-1"] {
                let (_, p) = problems(&format!("concurrency = {bad}\n"));
                assert!(p.len() == 1 && p[0].contains(&format!("is {bad}; use 1 to 64")), "{key} = {bad}: {p:?}");
            }
            let (s, p) = problems("concurrency = 16\n");
            assert!(p.is_empty(), "{p:?}");
            let (d, _) = problems("");
            let got = |s: &Settings| match sink {
                "activate" => s.sinks.activate.as_ref().map(|a| a.concurrency),
                "waldur" => s.sinks.waldur.as_ref().map(|w| w.concurrency),
                _ => s.sinks.cc_backend.as_ref().map(|c| c.concurrency),
            };
            assert_eq!((got(&s), got(&d)), (Some(16), Some(4)), "{sink}");
        }
        for sink in ["jsonl", "nats"] {
            let (_, p) = Settings::check_toml(&format!("[sinks.{sink}]\nconcurrency = 4\n"));
            assert!(p.iter().any(|p| p.message.contains("unknown field `concurrency`")), "{sink}: {p:?}");
        }
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
