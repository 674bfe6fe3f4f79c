//! Builds the configured sinks at the edge: reads API keys from the environment or their files
//! (warning when a key file is readable by others), resolves hosts, and picks which sinks a
//! command uses.

use anyhow::{bail, Context};

use crate::config::{Settings, ENV_ACTIVATE_HOST, ENV_ACTIVATE_KEY, ENV_ACTIVATE_KEY_OWN};
use crate::sinks::activate::{host::resolve_host, ActivateSink};
use crate::sinks::jsonl::JsonlSink;
use crate::sinks::secret::{load_secret, SecretSource};
use crate::sinks::Sink;

use super::UsageError;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The sinks named in `only` (all configured ones when empty). `online`: load keys so the sinks
/// can send; otherwise they can only plan and render (`--dry-run` needs no key).
pub fn build_sinks(s: &Settings, only: &[String], online: bool) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let configured = s.sinks.names();
    for name in only {
        if !configured.contains(&name.as_str()) {
            let have = if configured.is_empty() {
                "none is configured".to_string()
            } else {
                format!("configured: {}", configured.join(", "))
            };
            bail!(UsageError(format!(
                "--sink {name}: no [sinks.{name}] table in the config ({have}); see `slurm-ledger config example`"
            )));
        }
    }
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(a) = s.sinks.activate.as_ref().filter(|_| wanted("activate")) {
        let src = SecretSource {
            what: "ACTIVATE API key",
            env: &[ENV_ACTIVATE_KEY_OWN, ENV_ACTIVATE_KEY],
            file: a.api_key_file.as_deref(),
            file_key: "sinks.activate.api_key_file",
        };
        let from = src
            .env
            .iter()
            .find(|n| env_var(n).is_some_and(|v| !v.trim().is_empty()))
            .map(|n| format!("environment variable {n}"));
        let from = from.or_else(|| src.file.map(|f| format!("file {}", f.display())));
        if let Some(from) = &from {
            // Which source, never the value: a stale PW_API_KEY left by the tracker's cron shows here.
            tracing::info!("ACTIVATE API key from {from}");
        }
        let sink = match load_secret(&src, &env_var) {
            Ok((key, warning)) if online => {
                if let Some(w) = warning {
                    // On stderr even under -q: cron mails it.
                    eprintln!("warning: {w}");
                }
                let host =
                    resolve_host(a.host.as_deref(), env_var(ENV_ACTIVATE_HOST).as_deref(), &key).map_err(UsageError)?;
                ActivateSink::online(a.clone(), &host, key)
                    .map_err(anyhow::Error::msg)
                    .context("setting up the ACTIVATE sink")?
            }
            Ok((key, _)) => {
                let host = resolve_host(a.host.as_deref(), env_var(ENV_ACTIVATE_HOST).as_deref(), &key).ok();
                ActivateSink::offline(a.clone()).map_err(anyhow::Error::msg)?.with_base_url(host)
            }
            Err(e) if online => bail!(UsageError(e.to_string())),
            Err(_) => ActivateSink::offline(a.clone()).map_err(anyhow::Error::msg)?.with_base_url(a.host.clone()),
        };
        sinks.push(Box::new(sink));
    }
    if let Some(j) = s.sinks.jsonl.as_ref().filter(|_| wanted("jsonl")) {
        sinks.push(Box::new(JsonlSink::new(j.clone()).map_err(anyhow::Error::msg)?));
    }
    if sinks.is_empty() {
        bail!(UsageError(
            "no sink is configured: add a [sinks.activate] or [sinks.jsonl] table to the config (see `slurm-ledger config example`)".into()
        ));
    }
    Ok(sinks)
}

/// The engine policy of a sink's metering settings.
pub fn policy_for(s: &Settings, sink: &str) -> crate::delivery::engine::EnginePolicy {
    let running = match sink {
        "activate" => s.sinks.activate.as_ref().map(|a| a.metering.running_slice_secs),
        "jsonl" => s.sinks.jsonl.as_ref().map(|j| j.metering.running_slice_secs),
        _ => None,
    };
    crate::delivery::engine::EnginePolicy {
        min_running_slice_secs: running.unwrap_or(900),
        base_backoff_secs: s.delivery.retry_backoff_secs,
        max_backoff_secs: s.delivery.max_backoff_secs,
    }
}
