//! Waldur Mastermind: month-to-date usage per resource, component and user — the job of
//! waldur-site-agent's `report` mode, from the ledger (no `sacct` call of its own).
//!
//! A resource of the configured offering is found by its `backend_id`, the Slurm account. Its
//! usage is a month's *total* per component, set with `set_usage` (last value wins), then each
//! user's part with `set_user_usages` (contracts.md §2.2). The planner keeps exact totals in the
//! outbox (accumulating items, TRES-seconds); the sender converts with the component's
//! `unit_factor` and rounds to the 2 decimals Waldur takes, only in the request. A total Waldur
//! already holds is not posted again; one that would lower Waldur's figure is refused with both
//! values until decreases are allowed.
//!
//! - [`config`]: `[sinks.waldur]` as written, and its validation.
//! - [`planner`]: runs → increments of totals per (month, account, component[, user]).
//! - [`amount`]: exact totals → Waldur amounts.
//! - [`sender`]: finds the resource, compares, sets.
//! - [`client`]: HTTP, pagination, and the classification of answers into outcomes.
//! - [`site_agent`]: waldur-site-agent's YAML config → this section (`migrate waldur-site-agent`).

pub mod amount;
pub mod client;
pub mod config;
pub mod planner;
pub mod sender;
pub mod site_agent;

use std::time::Duration;

use crate::delivery::consumer::Consumer;
use crate::secret::{load_secret, SecretSource};

use super::{BilledTres, BuildCtx, Built, SinkError, SinkKind};
use client::WaldurClient;
use config::WaldurSettings;
use planner::WaldurPlanner;
use sender::WaldurSender;

/// The sink's name in the ledger.
pub const NAME: &str = "waldur";
/// The Waldur API token.
pub const ENV_TOKEN: &str = "SLURM_LEDGER_WALDUR_TOKEN";

/// The Waldur sink kind (see the registry in `sinks`).
pub struct Waldur;

impl SinkKind for Waldur {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawWaldur;
    type Settings = WaldurSettings;

    fn billed(s: &Self::Settings) -> Vec<BilledTres> {
        let terms = planner::terms(s);
        s.components
            .iter()
            .map(|c| BilledTres {
                key: format!("sinks.{NAME}.components.{}", c.tres),
                tres: c.tres.clone(),
                basis: s.basis,
                terms: terms.clone(),
            })
            .collect()
    }

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(s: &WaldurSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let src = SecretSource {
            what: "Waldur API token",
            env: &[ENV_TOKEN],
            file: s.token_file.as_deref(),
            file_key: "sinks.waldur.token_file",
        };
        let mut warnings = Vec::new();
        let client = match load_secret(&src, ctx.env) {
            Ok((token, warning)) if ctx.online => {
                warnings.extend(warning);
                let http = super::http::client(Duration::from_secs(s.timeout_secs), s.ca_bundle.as_deref())
                    .map_err(|message| SinkError::Setup { sink: NAME, message })?;
                let client = WaldurClient::new(http, &s.api_url, &s.offering_uuid, token)
                    .map_err(|message| SinkError::Config { sink: NAME, message })?;
                Some(client)
            }
            Ok(_) => None,
            Err(e) if ctx.online => return Err(e.into()),
            Err(_) => None,
        };
        let planner =
            WaldurPlanner::new(NAME, s.clone()).map_err(|message| SinkError::Config { sink: NAME, message })?;
        let sender = WaldurSender::new(s.clone(), client);
        Ok(Built { consumer: Consumer::new(NAME, Box::new(planner), Box::new(sender), ctx.policy), warnings })
    }
}
