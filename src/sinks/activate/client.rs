//! The ACTIVATE HTTP client: create a usage event, find one by its delivery id.
//!
//! Every answer is classified here into the engine's [`Outcome`]:
//! - 2xx with a usage event (JSON with an `id`) → delivered; any other 2xx or a 3xx → unknown;
//! - 429 → throttled: the whole sink waits out `Retry-After`; 401/403 → retry after the key is fixed (nothing was
//!   recorded, and a fixed key should deliver without a manual step);
//! - 408, 5xx, a timeout or a connection dropped after the request left → unknown: the event may
//!   have been recorded, so it is looked up before any resend;
//! - a connection never made → retry (nothing left);
//! - any other 4xx → rejected, with the platform's message, until `retry` after a fix.
//!
//! Look-up (`GET …/usage?metadata=<id>`): the response schema (`RatedCostsPaginatedResponse`)
//! is not in the published excerpt. We read the items from `data`, `items` or `results` (or a
//! bare array), and match `metadata.deliveryId` exactly (the server's search is a substring
//! match, so one id can match another that extends it).
//!
//! The API key is sent as Basic auth (key as user, empty password) and is never logged; errors
//! carry the URL without credentials.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::delivery::consumer::{Lookup, Outcome};
use crate::secret::Secret;
use crate::sinks::http::{self, describe, error_message, retry_after, strip, transport_outcome};

use super::event::DELIVERY_ID_KEY;

/// Items per look-up page, and the most pages read.
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: u32 = 50;

/// Why the client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ACTIVATE host {url:?} is not a URL: {reason}")]
    NotUrl { url: String, reason: String },
    #[error("ACTIVATE host {url} cannot be a base URL; write it as https://host")]
    NotBase { url: String },
    #[error("{reason}")]
    Build { reason: String },
}

/// A connection to one organization's allocations.
pub struct ActivateClient {
    http: Client,
    base: Url,
    organization: String,
    key: Secret,
}

impl ActivateClient {
    pub fn new(base: &str, organization: &str, key: Secret, timeout: Duration) -> Result<Self, ClientError> {
        let base =
            Url::parse(base).map_err(|e| ClientError::NotUrl { url: base.to_string(), reason: e.to_string() })?;
        if base.cannot_be_a_base() {
            return Err(ClientError::NotBase { url: base.to_string() });
        }
        let http = http::client(timeout, None).map_err(|reason| ClientError::Build { reason })?;
        Ok(Self { http, base, organization: organization.to_string(), key })
    }

    /// `{host}/api/organizations/{org}/allocations/{allocation}/usage`, segments escaped.
    fn usage_url(&self, allocation: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in new").pop_if_empty().extend([
            "api",
            "organizations",
            &self.organization,
            "allocations",
            allocation,
            "usage",
        ]);
        url
    }

    /// POSTs one event (its JSON text, sent as it is).
    pub fn create(&self, allocation: &str, event: String) -> Outcome {
        let url = self.usage_url(allocation);
        let req = self
            .http
            .post(url.clone())
            .basic_auth(self.key.expose(), Some(""))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event);
        match req.send() {
            Ok(resp) => classify(resp),
            Err(e) => transport_outcome(&e),
        }
    }

    /// Looks for the event carrying `delivery_id` in its metadata.
    ///
    /// `NotFound` only when absence is proven: the answer's envelope is recognised, every item
    /// returned carries the id in its metadata (so the server did apply the filter), and the
    /// listing ended (an empty page, or `total` reached). Anything else is `Failed`, and the
    /// delivery stays unresolved rather than risk a second charge.
    pub fn find(&self, allocation: &str, delivery_id: &str) -> Lookup {
        let url = self.usage_url(allocation);
        let mut seen = 0u64;
        for page in 1..=MAX_PAGES {
            let req = self.http.get(url.clone()).basic_auth(self.key.expose(), Some("")).query(&[
                ("metadata", delivery_id.to_string()),
                ("pageSize", PAGE_SIZE.to_string()),
                ("page", page.to_string()),
            ]);
            let resp = match req.send() {
                Ok(r) => r,
                Err(e) => return Lookup::Failed { reason: format!("GET {}: {}", strip(&url), describe(&e)) },
            };
            let status = resp.status();
            if !status.is_success() {
                return Lookup::Failed {
                    reason: format!("GET {} answered {status}: {}", strip(&url), error_message(resp)),
                };
            }
            let body: Value = match resp.json() {
                Ok(v) => v,
                Err(e) => {
                    return Lookup::Failed { reason: format!("GET {}: the answer is not JSON: {e}", strip(&url)) }
                }
            };
            let Some(items) = items_of(&body) else {
                return Lookup::Failed { reason: format!("GET {}: unrecognised list answer (no data/items/results array); cannot prove the event is absent", strip(&url)) };
            };
            for item in &items {
                let meta = item.get("metadata");
                if meta.and_then(|m| m.get(DELIVERY_ID_KEY)).and_then(Value::as_str) == Some(delivery_id) {
                    return Lookup::Found { remote_id: item.get("id").map(value_text) };
                }
                if !meta.is_some_and(|m| m.to_string().contains(delivery_id)) {
                    return Lookup::Failed {
                        reason: format!("GET {}: the platform returned events without {delivery_id:?} in their metadata (filter not applied?); cannot prove absence", strip(&url)),
                    };
                }
            }
            seen += items.len() as u64;
            let total = body.get("total").and_then(Value::as_u64);
            if items.is_empty() || total.is_some_and(|t| seen >= t) {
                return Lookup::NotFound;
            }
        }
        Lookup::Failed {
            reason: format!("more than {} events match {delivery_id:?}; cannot decide", MAX_PAGES * PAGE_SIZE),
        }
    }
}

/// The items of a list answer: a bare array, or the array under `data`, `items`, `results` or
/// `usage`; `None` for an envelope we do not know.
fn items_of(body: &Value) -> Option<Vec<Value>> {
    if let Some(a) = body.as_array() {
        return Some(a.clone());
    }
    ["data", "items", "results", "usage"].iter().find_map(|k| body.get(k).and_then(Value::as_array)).cloned()
}

fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Maps an HTTP answer to an outcome.
fn classify(resp: Response) -> Outcome {
    let status = resp.status();
    if status.is_success() {
        // Only a UsageEventOutput (JSON with an id) proves the event exists; a 200 page from a
        // proxy or a wrong host does not, so it is looked up instead.
        return match resp.json::<Value>().ok().and_then(|v| v.get("id").map(value_text)) {
            Some(id) => Outcome::Delivered { remote_id: Some(id) },
            None => Outcome::Unknown { reason: format!("{status} without a usage event (no JSON id): check the host") },
        };
    }
    if status.is_redirection() {
        let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
        return Outcome::Unknown {
            reason: format!("{status}: redirected to {to}; set `host` to the API's own address"),
        };
    }
    let retry_after = retry_after(&resp);
    let message = error_message(resp);
    match status {
        StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled { reason: format!("429 Too Many Requests: {message}"), after_secs: retry_after },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Retry {
            reason: format!("{status}: the platform refused the API key ({message}); check PW_API_KEY / api_key_file and the organization"),
            after_secs: retry_after,
        },
        StatusCode::REQUEST_TIMEOUT => Outcome::Unknown { reason: format!("{status}: {message}") },
        s if s.is_server_error() => Outcome::Unknown { reason: format!("{status}: {message}") },
        _ => Outcome::Rejected { reason: format!("{status}: {message}") },
    }
}
