//! Parallel Works ACTIVATE: usage events, slurm-tracker's job done exactly once.
//!
//! `POST {host}/api/organizations/{org}/allocations/{allocation}/usage`, Basic auth with the API
//! key as user and an empty password, body `sku, quantity, startedAt, endedAt, user, metadata`
//! and nothing else (contracts.md §1.1). ACTIVATE has no idempotency key: every event carries
//! slurm-ledger's deterministic delivery id in `metadata.deliveryId`, and an event whose outcome
//! is unknown is looked up by it before it is sent again.
//!
//! - [`event`]: mapping (account → allocation, partition → SKU) and the request body; pure.
//! - [`client`]: HTTP and the classification of answers into outcomes.
//! - [`host`]: where the API lives (config, `PW_PLATFORM_HOST`, or the key itself).

pub mod client;
pub mod event;
pub mod host;

use std::time::Duration;

use crate::config::ActivateSettings;
use crate::delivery::plan::Slice;
use crate::ledger::Delivery;
use crate::meter::period::Calendar;
use crate::model::JobRun;
use crate::sinks::secret::Secret;
use crate::sinks::{metered_rate, Lookup, Outcome, Rate, Sink};

use client::ActivateClient;

/// The sink's name in the ledger.
pub const NAME: &str = "activate";

/// The ACTIVATE sink. Without a client (dry run, no key) it plans and renders but cannot send.
pub struct ActivateSink {
    cfg: ActivateSettings,
    calendar: Calendar,
    client: Option<ActivateClient>,
    /// The API's base URL, when known (shown by `--dry-run`).
    base_url: Option<String>,
}

impl ActivateSink {
    /// Shows this base URL in `--dry-run` output.
    pub fn with_base_url(mut self, url: Option<String>) -> Self {
        self.base_url = url;
        self
    }

    /// A sink that can plan and render only (`--dry-run`, `status`).
    pub fn offline(cfg: ActivateSettings) -> Result<Self, String> {
        let calendar = crate::sinks::calendar(&cfg.metering)?;
        Ok(Self { cfg, calendar, client: None, base_url: None })
    }

    /// A sink that sends to `base_url` with `key`.
    pub fn online(cfg: ActivateSettings, base_url: &str, key: Secret) -> Result<Self, String> {
        let client = ActivateClient::new(base_url, &cfg.organization, key, Duration::from_secs(cfg.timeout_secs))?;
        let mut s = Self::offline(cfg)?;
        s.client = Some(client);
        s.base_url = Some(base_url.to_string());
        Ok(s)
    }

    fn client(&self) -> Result<&ActivateClient, String> {
        self.client.as_ref().ok_or_else(|| "the ACTIVATE sink has no API key loaded (dry run)".to_string())
    }
}

impl Sink for ActivateSink {
    fn name(&self) -> &str {
        NAME
    }

    fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn rate(&self, job: &JobRun) -> Result<Rate, String> {
        event::allocation_for(&self.cfg, job)?;
        event::sku_for(&self.cfg, job)?;
        Ok(metered_rate(&self.cfg.metering, job))
    }

    fn render(&self, job: &JobRun, slice: &Slice, delivery_id: &str, quantity: &str) -> Result<String, String> {
        event::render_payload(&self.cfg, job, slice, delivery_id, quantity)
    }

    fn send(&self, d: &Delivery) -> Outcome {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Outcome::Retry { reason, after_secs: None },
        };
        match event::parse_payload(&d.payload) {
            Ok(p) => client.create(&p.allocation, &p.event),
            Err(reason) => Outcome::Rejected { reason },
        }
    }

    fn describe(&self, d: &Delivery) -> String {
        match event::parse_payload(&d.payload) {
            Ok(p) => format!(
                "POST {}/api/organizations/{}/allocations/{}/usage\n{}",
                self.base_url.as_deref().unwrap_or("{host}"),
                self.cfg.organization,
                p.allocation,
                p.event
            ),
            Err(e) => format!("(unreadable payload: {e})"),
        }
    }

    fn lookup(&self, d: &Delivery) -> Lookup {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Lookup::Failed { reason },
        };
        match event::parse_payload(&d.payload) {
            Ok(p) => client.find(&p.allocation, &d.id),
            Err(reason) => Lookup::Failed { reason },
        }
    }
}
