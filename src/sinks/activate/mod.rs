//! Parallel Works ACTIVATE: usage events, slurm-tracker's job done exactly once.
//!
//! `POST {host}/api/organizations/{org}/allocations/{allocation}/usage`, Basic auth with the API
//! key as user and an empty password, body `sku, quantity, startedAt, endedAt, user, metadata`
//! and nothing else (contracts.md §1.1). ACTIVATE has no idempotency key: every event carries
//! slurm-ledger's deterministic delivery id in `metadata.deliveryId`, and an event whose outcome
//! is unknown is looked up by it before it is sent again.
//!
//! - [`config`]: `[sinks.activate]` as written, and its validation.
//! - [`planner`]: pricing for the shared slice planner: account → allocation and partition → SKU
//!   (pinned in each item's route), the billed TRES.
//! - [`event`]: the request body of one slice; pure.
//! - [`sender`]: renders and sends an item, looks one up.
//! - [`client`]: HTTP and the classification of answers into outcomes.
//! - [`host`]: where the API lives (config, `PW_PLATFORM_HOST`, or the key itself).

pub mod client;
pub mod config;
pub mod event;
pub mod host;
pub mod planner;
pub mod sender;

use std::time::Duration;

use crate::delivery::consumer::Consumer;
use crate::delivery::slices::SlicePlanner;
use crate::secret::{load_secret, SecretSource};

use super::{BuildCtx, Built, SinkError, SinkKind};
use client::ActivateClient;
use config::ActivateSettings;
use planner::ActivatePricing;
use sender::ActivateSender;

/// The sink's name in the ledger.
pub const NAME: &str = "activate";
/// The ACTIVATE API key (slurm-tracker's variable, read as it did).
pub const ENV_KEY: &str = "PW_API_KEY";
/// The ACTIVATE API key, slurm-ledger's own name (wins over `PW_API_KEY`).
pub const ENV_KEY_OWN: &str = "SLURM_LEDGER_ACTIVATE_API_KEY";
/// The ACTIVATE base URL (slurm-tracker's variable), when the config has no `host`.
pub const ENV_HOST: &str = "PW_PLATFORM_HOST";

/// The ACTIVATE sink kind (see the registry in `sinks`).
pub struct Activate;

impl SinkKind for Activate {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawActivate;
    type Settings = ActivateSettings;

    fn billed(s: &Self::Settings) -> Vec<super::BilledTres> {
        super::BilledTres::of_metering(NAME, &s.metering)
    }

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(a: &ActivateSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let src = SecretSource {
            what: "ACTIVATE API key",
            env: &[ENV_KEY_OWN, ENV_KEY],
            file: a.api_key_file.as_deref(),
            file_key: "sinks.activate.api_key_file",
        };
        let env = ctx.env;
        let from = src
            .env
            .iter()
            .find(|n| env(n).is_some_and(|v| !v.trim().is_empty()))
            .map(|n| format!("environment variable {n}"))
            .or_else(|| src.file.map(|f| format!("file {}", f.display())));
        if let Some(from) = &from {
            // Which source, never the value: a stale PW_API_KEY left by the tracker's cron shows here.
            tracing::info!("ACTIVATE API key from {from}");
        }
        let mut warnings = Vec::new();
        let sender = match load_secret(&src, env) {
            Ok((key, warning)) if ctx.online => {
                warnings.extend(warning);
                let host = host::resolve_host(a.host.as_deref(), env(ENV_HOST).as_deref(), &key)
                    .map_err(|e| SinkError::Config { sink: NAME, message: e.to_string() })?;
                let timeout = Duration::from_secs(a.timeout_secs);
                let client = ActivateClient::new(&host, &a.organization, key, timeout)
                    .map_err(|e| SinkError::Setup { sink: NAME, message: e.to_string() })?;
                ActivateSender::new(a.clone(), Some(client), Some(host))
            }
            Ok((key, _)) => {
                let host = host::resolve_host(a.host.as_deref(), env(ENV_HOST).as_deref(), &key).ok();
                ActivateSender::new(a.clone(), None, host)
            }
            Err(e) if ctx.online => return Err(e.into()),
            Err(_) => ActivateSender::new(a.clone(), None, a.host.clone()),
        };
        let planner = SlicePlanner::new(NAME, ActivatePricing::new(a.clone()), &a.metering)
            .map_err(|e| SinkError::Config { sink: NAME, message: e.to_string() })?;
        Ok(Built { consumer: Consumer::new(NAME, Box::new(planner), Box::new(sender), ctx.policy), warnings })
    }
}
