//! `[daemon]`, validated: the config module keeps the table as written ([`RawDaemon`]); its values
//! are the daemon's own types (a hook address, a socket mode), so they are checked here, by
//! `slurm-ledger daemon` before it starts and by `config check`. Every problem names its key and
//! the fix.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{parse_duration_secs, ConfigProblem, RawDaemon};

use super::hook::{HookAddr, SocketPerms, DEFAULT_HOOK_SOCKET, DEFAULT_SOCKET_MODE};
use super::http::DEFAULT_ADDR;

/// The daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Time between two polls (one sacct per cluster each).
    pub interval: Duration,
    /// Where the hook reaches the daemon; `None`: no hook socket (polls only).
    pub hook_socket: Option<HookAddr>,
    pub hook_perms: SocketPerms,
    /// How long after a hook message sacct is first asked for the job.
    pub hook_delay: Duration,
    /// Where `/metrics` and `/healthz` are served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
}

/// The value that turns an address off.
const NONE: &str = "none";

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            interval: Duration::from_secs(60),
            hook_socket: Some(HookAddr::Unix(DEFAULT_HOOK_SOCKET.into())),
            hook_perms: SocketPerms::default(),
            hook_delay: Duration::ZERO,
            metrics_listen: Some(DEFAULT_ADDR),
        }
    }
}

impl DaemonSettings {
    /// Validates `[daemon]`: the settings, or every problem.
    pub fn from_raw(raw: &RawDaemon) -> Result<Self, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(ConfigProblem { key: format!("daemon.{key}"), message });
        };
        let mut s = DaemonSettings::default();
        let mut duration = |key: &str, value: &Option<String>, min: u64, max: u64, example: &str| {
            let text = value.as_deref()?;
            match parse_duration_secs(text) {
                Ok(n) if (min as i64..=max as i64).contains(&n) => Some(Duration::from_secs(n as u64)),
                Ok(n) => {
                    problem(key, format!("is {n} s; use {min} s to {max} s (e.g. {example:?})"));
                    None
                }
                Err(e) => {
                    problem(key, e);
                    None
                }
            }
        };
        if let Some(d) = duration("interval", &raw.interval, 1, 86_400, "60s") {
            s.interval = d;
        }
        if let Some(d) = duration("hook_delay", &raw.hook_delay, 0, 60, "1s") {
            s.hook_delay = d;
        }
        match raw.hook_socket.as_deref() {
            None => {}
            Some(NONE) => s.hook_socket = None,
            Some(text) => match text.parse::<HookAddr>() {
                Ok(a) => s.hook_socket = Some(a),
                Err(e) => problem("hook_socket", format!("{e}; or \"none\" for no hook")),
            },
        }
        if let Some(text) = raw.hook_socket_mode.as_deref() {
            match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
                Ok(m) if m <= 0o777 && m & 0o200 != 0 => s.hook_perms.mode = m,
                _ => problem(
                    "hook_socket_mode",
                    format!(
                        "{text:?} is not an octal mode the daemon can use; write it like \"{DEFAULT_SOCKET_MODE:04o}\" \
                         (owner write, group write for SlurmUser)"
                    ),
                ),
            }
        }
        if let Some(group) = raw.hook_socket_group.as_deref() {
            if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c == ':' || c == '/') {
                problem("hook_socket_group", format!("{group:?} is not a group name or number; e.g. \"slurm\""));
            } else {
                s.hook_perms.group = Some(group.to_string());
            }
        }
        match raw.metrics_listen.as_deref() {
            None => {}
            Some(NONE) => s.metrics_listen = None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => s.metrics_listen = Some(a),
                Err(_) => problem(
                    "metrics_listen",
                    format!(
                        "{text:?} is not IP:PORT; e.g. \"{DEFAULT_ADDR}\" (loopback), or \"none\" to serve no metrics"
                    ),
                ),
            },
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn raw(text: &str) -> RawDaemon {
        Settings::from_toml(text, "t").unwrap().daemon
    }

    #[test]
    fn the_example_gives_the_defaults_and_nothing_gives_them_too() {
        let example = Settings::from_toml(&crate::config::example(), "example").unwrap().daemon;
        assert_eq!(DaemonSettings::from_raw(&example).unwrap(), DaemonSettings::default());
        assert_eq!(DaemonSettings::from_raw(&RawDaemon::default()).unwrap(), DaemonSettings::default());
    }

    #[test]
    fn values_are_read() {
        let s = DaemonSettings::from_raw(&raw(
            "[daemon]\ninterval = \"5m\"\nhook_socket = \"tcp:10.0.0.5:6830\"\nhook_socket_mode = \"0660\"\n\
             hook_socket_group = \"slurm\"\nhook_delay = \"0s\"\nmetrics_listen = \"none\"\n",
        ))
        .unwrap();
        assert_eq!(s.interval, Duration::from_secs(300));
        assert_eq!(s.hook_socket, Some(HookAddr::Tcp { host: "10.0.0.5".into(), port: 6830 }));
        assert_eq!(s.hook_perms, SocketPerms { mode: 0o660, group: Some("slurm".into()) });
        assert_eq!(s.hook_delay, Duration::ZERO);
        assert_eq!(s.metrics_listen, None);
        let off = DaemonSettings::from_raw(&raw("[daemon]\nhook_socket = \"none\"\n")).unwrap();
        assert_eq!(off.hook_socket, None);
    }

    #[test]
    fn every_bad_value_is_named_with_its_fix() {
        let e = DaemonSettings::from_raw(&raw(
            "[daemon]\ninterval = \"0s\"\nhook_socket = \"relative.sock\"\nhook_socket_mode = \"0400\"\n\
             hook_socket_group = \"a b\"\nhook_delay = \"2 fortnights\"\nmetrics_listen = \"localhost\"\n",
        ))
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "daemon.interval",
                "daemon.hook_delay",
                "daemon.hook_socket",
                "daemon.hook_socket_mode",
                "daemon.hook_socket_group",
                "daemon.metrics_listen"
            ]
        );
        assert!(e[0].message.contains("1 s to 86400 s"), "{}", e[0].message);
        assert!(e[2].message.contains("absolute") && e[2].message.contains("none"), "{}", e[2].message);
        assert!(e[5].message.contains("127.0.0.1:19464"), "{}", e[5].message);
    }
}
