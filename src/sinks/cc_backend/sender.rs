//! Sends a cc-backend item: the start or stop body is rendered from the run as the ledger holds
//! it when the item leaves, then POSTed; a look-up lists the jobs with the run's start time.
//! Without a client (dry run, no token) it can only describe.

use regex::Regex;
use serde_json::Value;

use crate::delivery::consumer::{Lookup, Outcome, RenderError, Sender};
use crate::delivery::events::EventKind;
use crate::ledger::Delivery;
use crate::model::JobRun;
use crate::sinks::cc_job::{start_job_body, stop_job_body};

use super::client::{Call, CcClient};
use super::config::CcBackendSettings;

/// cc-backend's [`Sender`].
pub struct CcSender {
    cfg: CcBackendSettings,
    ignore: Option<Regex>,
    client: Option<CcClient>,
}

/// Which run and call an item is, as cc-backend names a job: its job id, cluster and start time.
struct Target<'r> {
    call: Call,
    run: &'r JobRun,
    job_id: u64,
    cluster: String,
    start: i64,
}

impl CcSender {
    pub fn new(cfg: CcBackendSettings, ignore: Option<Regex>, client: Option<CcClient>) -> Self {
        Self { cfg, ignore, client }
    }

    fn target<'r>(&self, d: &Delivery, run: Option<&'r JobRun>) -> Result<Target<'r>, String> {
        let run = run.ok_or_else(|| RenderError::NoRun { id: d.id.clone() }.to_string())?;
        let call = match EventKind::of_id(&d.id) {
            Some(EventKind::Start) => Call::Start,
            Some(EventKind::Stop) => Call::Stop,
            None => return Err(RenderError::BadRoute { id: d.id.clone(), route: d.route.clone() }.to_string()),
        };
        let cluster = self.cfg.cc_cluster(run.key.cluster.as_str()).to_string();
        Ok(Target { call, run, job_id: run.key.job_id_raw, cluster, start: run.start.map_or(0, |s| s.0) })
    }

    /// An item's target and request body (a look-up needs only the target).
    fn request<'r>(&self, d: &Delivery, run: Option<&'r JobRun>) -> Result<(Target<'r>, Value), String> {
        let t = self.target(d, run)?;
        let ignore = |h: &str| self.ignore.as_ref().is_some_and(|re| re.is_match(h));
        let body = match t.call {
            Call::Start => start_job_body(t.run, &t.cluster, &ignore),
            Call::Stop => stop_job_body(t.run, &t.cluster),
        };
        body.map(|b| (t, b)).map_err(|e| e.to_string())
    }
}

impl Sender for CcSender {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        let Some(client) = &self.client else {
            return Outcome::Retry {
                reason: "the cc-backend sink has no token loaded (dry run)".into(),
                after_secs: None,
            };
        };
        match self.request(d, run) {
            Ok((t, body)) => client.post(t.call, &body, t.job_id, &t.cluster, t.start),
            Err(reason) => Outcome::Rejected { reason },
        }
    }

    /// `[sinks.cc_backend] concurrency`: one POST per item.
    fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// A batch's starts (0) before its stops (1): cc-backend answers 404 to the stop of a run
    /// whose start it does not hold yet.
    fn phase(&self, d: &Delivery) -> u8 {
        u8::from(EventKind::of_id(&d.id) == Some(EventKind::Stop))
    }

    fn lookup(&self, d: &Delivery, run: Option<&JobRun>) -> Lookup {
        let Some(client) = &self.client else {
            return Lookup::Failed { reason: "the cc-backend sink has no token loaded (dry run)".into() };
        };
        match self.target(d, run) {
            Ok(t) => client.lookup(t.call, t.job_id, &t.cluster, t.start),
            Err(reason) => Lookup::Failed { reason },
        }
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        match self.request(d, run) {
            Ok((t, body)) => format!("POST {}/{}\n{body}", self.cfg.url, t.call.path()),
            Err(e) => format!("(cannot render: {e})"),
        }
    }
}
