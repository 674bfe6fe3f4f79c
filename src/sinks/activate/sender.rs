//! Sends an ACTIVATE item: the event is rendered from the run as the ledger holds it and the
//! slice, allocation and SKU the item was planned with, then POSTed; a look-up searches the
//! allocation the item was routed to. Without a client (dry run, no key) it can only describe.

use crate::delivery::consumer::{Lookup, Outcome, RenderError, Sender};
use crate::delivery::slices::{SentSlice, Slice};
use crate::ledger::Delivery;
use crate::model::JobRun;

use super::client::ActivateClient;
use super::config::ActivateSettings;
use super::event::{payload_text, render_event, Route};

/// ACTIVATE's [`Sender`].
pub struct ActivateSender {
    cfg: ActivateSettings,
    client: Option<ActivateClient>,
    /// The API's base URL, when known (shown by `--dry-run`).
    base_url: Option<String>,
}

impl ActivateSender {
    pub fn new(cfg: ActivateSettings, client: Option<ActivateClient>, base_url: Option<String>) -> Self {
        Self { cfg, client, base_url }
    }

    /// An item's route and request body: the event, rendered from the run as the ledger holds it
    /// and the slice, SKU and TRES the item was planned with.
    pub fn event<'d>(&self, d: &'d Delivery, run: Option<&JobRun>) -> Result<(Route<'d>, String), RenderError> {
        let run = run.ok_or_else(|| RenderError::NoRun { id: d.id.clone() })?;
        let s = SentSlice::of(d)?;
        let route = Route::decode(d)?;
        let slice = Slice { start: s.start, end: s.end, quantity: 0 };
        let event = render_event(run, &slice, &d.id, s.quantity, &route)?;
        Ok((route, event))
    }

    /// An item's request in the schema-4 release's stored form, `{"allocation": …, "event": …}`.
    pub fn render(&self, d: &Delivery, run: Option<&JobRun>) -> Result<String, RenderError> {
        let (route, event) = self.event(d, run)?;
        Ok(payload_text(&route, &event))
    }

    fn client(&self) -> Result<&ActivateClient, String> {
        self.client.as_ref().ok_or_else(|| "the ACTIVATE sink has no API key loaded (dry run)".to_string())
    }
}

impl Sender for ActivateSender {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Outcome::Retry { reason, after_secs: None },
        };
        match self.event(d, run) {
            Ok((route, event)) => client.create(route.allocation, event),
            Err(e) => Outcome::Rejected { reason: e.to_string() },
        }
    }

    /// `[sinks.activate] concurrency`: one POST per item, the platform's round trip each.
    fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    fn lookup(&self, d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Lookup::Failed { reason },
        };
        // The allocation the item was sent to, whatever the run or the mapping say now.
        match Route::decode(d) {
            Ok(route) => client.find(route.allocation, &d.id),
            Err(e) => Lookup::Failed { reason: e.to_string() },
        }
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        match self.event(d, run) {
            Ok((route, event)) => format!(
                "POST {}/api/organizations/{}/allocations/{}/usage\n{event}",
                self.base_url.as_deref().unwrap_or("{host}"),
                self.cfg.organization,
                route.allocation,
            ),
            Err(e) => format!("(cannot render: {e})"),
        }
    }
}
