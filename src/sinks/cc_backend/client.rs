//! The cc-backend HTTP client: `start_job`, `stop_job`, the job list a look-up reads, and the
//! node states (`POST /api/nodestate/`, the router's path; the swagger's `/api/nodestats/` is a
//! 404): any 2xx is taken, anything else is an error for the pass to log (no retry: the next
//! pass sends newer states).
//!
//! Every answer is classified here into the engine's [`Outcome`] (contract §3.1):
//! - start: 201 → delivered; 422 → delivered when the stored job is this run (the same job id and
//!   start time: a start sent before whose answer was lost), else rejected with cc-backend's
//!   duplicate rule named (a requeued run within 24 h of the first: cc-backend keeps one row);
//! - stop: 200 → delivered; 422 (already stopped) → delivered; 404 → rejected when cc-backend holds
//!   another run of the job id within the 24 h before (its duplicate rule refused this run's
//!   start), else retry: this run's start is not delivered yet (it is sent first, so it comes);
//! - 429 → throttled: the whole sink waits out `Retry-After`; 401/403 → retry after the token is fixed;
//! - 408, 5xx, a timeout or a dropped connection → unknown: looked up before any resend;
//! - a connection never made → retry; any other 4xx → rejected with cc-backend's message.
//!
//! The JWT goes in `X-Auth-Token` and is never logged; errors carry URLs without credentials.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::delivery::consumer::{Lookup, Outcome};
use crate::secret::Secret;
use crate::sinks::http::{self, describe, error_message, retry_after, strip, transport_outcome};

/// Jobs per page of a look-up, and the most pages read (a start-time range of one second holds
/// one job id's runs: a page is plenty).
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: u32 = 10;
/// Pages of running jobs read for a reconciliation at most (100,000 jobs).
const MAX_RUNNING_PAGES: u32 = 1000;

/// Which request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Start,
    Stop,
}

impl Call {
    pub fn path(self) -> &'static str {
        match self {
            Self::Start => "api/jobs/start_job/",
            Self::Stop => "api/jobs/stop_job/",
        }
    }
}

/// The node-state route, as cc-backend's router registers it.
pub const NODE_STATE_PATH: &str = "api/nodestate/";

/// A job as cc-backend lists it (the fields a look-up needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedJob {
    pub db_id: Option<i64>,
    pub job_id: u64,
    pub start_time: i64,
    pub state: String,
}

/// Why the client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cc-backend url {url:?} is not a URL: {reason}")]
    NotUrl { url: String, reason: String },
    #[error("{reason}")]
    Build { reason: String },
}

/// A connection to one cc-backend.
pub struct CcClient {
    http: Client,
    base: Url,
    token: Secret,
}

impl CcClient {
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self, ClientError> {
        let mut base =
            Url::parse(base).map_err(|e| ClientError::NotUrl { url: base.to_string(), reason: e.to_string() })?;
        if base.cannot_be_a_base() {
            return Err(ClientError::NotUrl { url: base.to_string(), reason: "cannot be a base URL".into() });
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = http::client(timeout, None).map_err(|reason| ClientError::Build { reason })?;
        Ok(Self { http, base, token })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative path joins a base URL")
    }

    /// POSTs a start or stop body; `job_id`/`start` name the run (for a 422's look-up).
    pub fn post(&self, call: Call, body: &Value, job_id: u64, cluster: &str, start: i64) -> Outcome {
        let url = self.url(call.path());
        let req = self
            .http
            .post(url.clone())
            .header("X-Auth-Token", self.token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) => return transport_outcome(&e),
        };
        let status = resp.status();
        match (call, status) {
            (Call::Start, StatusCode::CREATED) | (Call::Stop, StatusCode::OK) => Outcome::Delivered { remote_id: None },
            (Call::Start, StatusCode::UNPROCESSABLE_ENTITY) => {
                let message = error_message(resp);
                match self.find(job_id, cluster, start) {
                    Ok(Some(j)) => Outcome::Delivered { remote_id: j.db_id.map(|i| i.to_string()) },
                    Ok(None) => Outcome::Rejected {
                        reason: format!(
                            "422: {message}: cc-backend keeps one job per job id and cluster within 24 h (its duplicate rule), and the one it has is another run of job {job_id} (a requeue?)"
                        ),
                    },
                    Err(reason) => Outcome::Unknown { reason: format!("422 ({message}), and the look-up failed: {reason}") },
                }
            }
            (Call::Stop, StatusCode::UNPROCESSABLE_ENTITY) => Outcome::Delivered { remote_id: None },
            (Call::Stop, StatusCode::NOT_FOUND) => match self.other_run(job_id, cluster, start) {
                Ok(Some(other)) => Outcome::Rejected {
                    reason: format!(
                        "404: cc-backend has no job {job_id} started at {start}; it holds the run started at {other} instead, and its duplicate rule (one job per job id and cluster within 24 h) refused this run's start"
                    ),
                },
                Ok(None) => Outcome::Retry {
                    reason: format!(
                        "404 from {}: cc-backend has no job {job_id} started at {start} yet (its start is not delivered: see `status`)",
                        strip(&url)
                    ),
                    after_secs: None,
                },
                Err(reason) => Outcome::Retry { reason: format!("404, and the look-up failed: {reason}"), after_secs: None },
            },
            _ => classify(status, resp, &url),
        }
    }

    /// POSTs `{cluster, nodes}` (`api.UpdateNodeStatesRequest`) to the node-state route.
    pub fn post_node_states(&self, body: &Value) -> Result<(), String> {
        let url = self.url(NODE_STATE_PATH);
        let resp = self
            .http
            .post(url.clone())
            .header("X-Auth-Token", self.token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| format!("POST {}: {}", strip(&url), describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {} answered {status}: {}", strip(&url), error_message(resp)))
        }
    }

    /// The job cc-backend holds with this job id, cluster and start time (`Ok(None)`: none).
    pub fn find(&self, job_id: u64, cluster: &str, start: i64) -> Result<Option<ListedJob>, String> {
        Ok(self.list(cluster, start, start)?.into_iter().find(|j| j.job_id == job_id && j.start_time == start))
    }

    /// Every job of `cluster` started in `[from, to]` (both inclusive), all pages.
    fn list(&self, cluster: &str, from: i64, to: i64) -> Result<Vec<ListedJob>, String> {
        self.list_where(cluster, ("start-time", format!("{from}-{to}")), MAX_PAGES, &format!("started in {from}-{to}"))
    }

    /// Every job of `cluster` cc-backend shows as running, up to [`MAX_RUNNING_PAGES`] pages.
    pub fn running(&self, cluster: &str) -> Result<Vec<ListedJob>, String> {
        self.list_where(cluster, ("state", "running".to_string()), MAX_RUNNING_PAGES, "running")
    }

    /// The jobs of `cluster` matching `filter` (`what` names it in an error), all pages (at most
    /// `pages`).
    fn list_where(
        &self,
        cluster: &str,
        filter: (&str, String),
        pages: u32,
        what: &str,
    ) -> Result<Vec<ListedJob>, String> {
        let url = self.url("api/jobs/");
        let mut out = Vec::new();
        for page in 1..=pages {
            let req = self.http.get(url.clone()).header("X-Auth-Token", self.token.expose()).query(&[
                ("cluster", cluster.to_string()),
                (filter.0, filter.1.clone()),
                ("items-per-page", PAGE_SIZE.to_string()),
                ("page", page.to_string()),
            ]);
            let resp = req.send().map_err(|e| format!("GET {}: {}", strip(&url), describe(&e)))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET {} answered {status}: {}", strip(&url), error_message(resp)));
            }
            let body: Value = resp.json().map_err(|e| format!("GET {}: the answer is not JSON: {e}", strip(&url)))?;
            let jobs = body.get("jobs").and_then(Value::as_array).ok_or_else(|| {
                format!("GET {}: no `jobs` array in the answer; cannot prove the job is absent", strip(&url))
            })?;
            out.extend(jobs.iter().map(|j| ListedJob {
                db_id: j.get("id").and_then(Value::as_i64),
                job_id: j.get("jobId").and_then(Value::as_u64).unwrap_or(0),
                start_time: j.get("startTime").and_then(Value::as_i64).unwrap_or(i64::MIN),
                state: j.get("jobState").and_then(Value::as_str).unwrap_or("").to_string(),
            }));
            if jobs.len() < PAGE_SIZE as usize {
                return Ok(out);
            }
        }
        Err(format!("more than {} jobs of {cluster} {what}; cannot decide", pages * PAGE_SIZE))
    }

    /// The start time of another run of this job id that cc-backend holds within the 24 h before
    /// `start` (what its duplicate rule kept instead of this run), if any.
    fn other_run(&self, job_id: u64, cluster: &str, start: i64) -> Result<Option<i64>, String> {
        let jobs = self.list(cluster, start.saturating_sub(86_400), start)?;
        Ok(jobs.into_iter().find(|j| j.job_id == job_id && j.start_time != start).map(|j| j.start_time))
    }

    /// Looks up an item: a start is there when the run's row is; a stop when that row is no
    /// longer running.
    pub fn lookup(&self, call: Call, job_id: u64, cluster: &str, start: i64) -> Lookup {
        match self.find(job_id, cluster, start) {
            Ok(Some(j)) if call == Call::Start || j.state != "running" => {
                Lookup::Found { remote_id: j.db_id.map(|i| i.to_string()) }
            }
            Ok(_) => Lookup::NotFound,
            Err(reason) => Lookup::Failed { reason },
        }
    }
}

/// An answer that is not the call's own (above).
fn classify(status: StatusCode, resp: Response, url: &Url) -> Outcome {
    if status.is_success() || status.is_redirection() {
        return Outcome::Unknown {
            reason: format!("{status} from {}: not cc-backend's answer to this call; check `url`", strip(url)),
        };
    }
    let after = retry_after(&resp);
    let message = error_message(resp);
    match status {
        StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled { reason: format!("429 Too Many Requests: {message}"), after_secs: after },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Retry {
            reason: format!("{status}: cc-backend refused the token ({message}); check SLURM_LEDGER_CC_BACKEND_TOKEN / token_file (a JWT with the api role)"),
            after_secs: after,
        },
        StatusCode::REQUEST_TIMEOUT => Outcome::Unknown { reason: format!("{status}: {message}") },
        s if s.is_server_error() => Outcome::Unknown { reason: format!("{status}: {message}") },
        _ => Outcome::Rejected { reason: format!("{status} from {}: {message}", strip(url)) },
    }
}
