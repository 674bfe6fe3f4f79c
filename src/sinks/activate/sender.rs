//! Sends an ACTIVATE item: the event is rendered from the run as the ledger holds it and the
//! slice, allocation and SKU the item was planned with, then POSTed; a look-up searches the
//! allocation the item was routed to. Without a client (dry run, no key) it can only describe.

use crate::delivery::consumer::{Lookup, Outcome, Sender};
use crate::delivery::slices::{SentSlice, Slice};
use crate::ledger::Delivery;
use crate::model::JobRun;

use super::client::ActivateClient;
use super::config::ActivateSettings;
use super::event::{parse_payload, parse_route, render_routed, Payload};

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

    /// An item's request as text: `{"allocation": …, "event": {…}}`, the event being the body.
    pub fn render(&self, d: &Delivery, run: Option<&JobRun>) -> Result<String, String> {
        let run = run.ok_or_else(|| format!("item {} has no run in the ledger", d.id))?;
        let s = SentSlice::of(d)?;
        let (allocation, sku) = parse_route(d.route.as_deref())?;
        let slice = Slice { start: s.start, end: s.end, quantity: 0 };
        render_routed(&self.cfg, run, &slice, &d.id, s.quantity, allocation, sku)
    }

    /// [`Self::render`], read back: allocation and event.
    pub fn payload(&self, d: &Delivery, run: Option<&JobRun>) -> Result<Payload, String> {
        parse_payload(&self.render(d, run)?)
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
        match self.payload(d, run) {
            Ok(p) => client.create(&p.allocation, &p.event),
            Err(reason) => Outcome::Rejected { reason },
        }
    }

    fn lookup(&self, d: &Delivery, _run: Option<&JobRun>) -> Lookup {
        let client = match self.client() {
            Ok(c) => c,
            Err(reason) => return Lookup::Failed { reason },
        };
        // The allocation the item was sent to, whatever the run or the mapping say now.
        match parse_route(d.route.as_deref()) {
            Ok((allocation, _)) => client.find(allocation, &d.id),
            Err(reason) => Lookup::Failed { reason },
        }
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        match self.payload(d, run) {
            Ok(p) => format!(
                "POST {}/api/organizations/{}/allocations/{}/usage\n{}",
                self.base_url.as_deref().unwrap_or("{host}"),
                self.cfg.organization,
                p.allocation,
                p.event
            ),
            Err(e) => format!("(cannot render: {e})"),
        }
    }
}
