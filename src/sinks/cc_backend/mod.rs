//! ClusterCockpit cc-backend: each run's start (`start_job`) and end (`stop_job`), once, as
//! cc-slurm-adapter reported them (contract §3), planned by the shared event planner
//! (`delivery::events`). A run without hosts to report (none assigned, or all matching
//! `ignore_hosts`) gets no events: cc-backend refuses a job without resources.
//!
//! `config.rs` (the section), `client.rs` (HTTP, answers → outcomes, the job list a look-up
//! reads), `sender.rs` (renders `sinks::cc_job`'s bodies from the run and sends).

pub mod client;
pub mod config;
pub mod sender;

use std::time::Duration;

use regex::Regex;

use crate::delivery::consumer::Consumer;
use crate::delivery::events::EventPlanner;
use crate::secret::{load_secret, SecretSource};
use crate::sinks::cc_job::HostFilter;

use super::{BuildCtx, Built, SinkError, SinkKind};
use client::CcClient;
use config::CcBackendSettings;
use sender::CcSender;

/// The sink's name in the ledger.
pub const NAME: &str = "cc_backend";
/// cc-backend's JWT (a token with the `api` role).
pub const ENV_TOKEN: &str = "SLURM_LEDGER_CC_BACKEND_TOKEN";

/// The cc-backend sink kind (see the registry in `sinks`).
pub struct CcBackend;

impl SinkKind for CcBackend {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawCcBackend;
    type Settings = CcBackendSettings;

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(s: &CcBackendSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let ignore = match &s.ignore_hosts {
            Some(re) => Some(Regex::new(re).map_err(|e| SinkError::Config { sink: NAME, message: e.to_string() })?),
            None => None,
        };
        let src = SecretSource {
            what: "cc-backend JWT",
            env: &[ENV_TOKEN],
            file: s.token_file.as_deref(),
            file_key: "sinks.cc_backend.token_file",
        };
        let mut warnings = Vec::new();
        let client = match load_secret(&src, ctx.env) {
            Ok((token, warning)) if ctx.online => {
                warnings.extend(warning);
                let timeout = Duration::from_secs(s.timeout_secs);
                Some(
                    CcClient::new(&s.url, token, timeout)
                        .map_err(|e| SinkError::Config { sink: NAME, message: e.to_string() })?,
                )
            }
            Ok(_) => None,
            Err(e) if ctx.online => return Err(e.into()),
            Err(_) => None,
        };
        let planner = EventPlanner::new(HostFilter::new(ignore.clone()));
        let sender = CcSender::new(s.clone(), ignore, client);
        Ok(Built { consumer: Consumer::new(NAME, Box::new(planner), Box::new(sender), ctx.policy), warnings })
    }
}
