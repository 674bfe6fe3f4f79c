//! The Waldur HTTP client (contracts.md §2.1–2.2, specs/waldur/waldur-usage-contract.json):
//! the offering's resources, component usages (a month's total per resource and component),
//! and component user usages (a user's part), each *set*, not added: the last value wins.
//!
//! Every request carries the [`Auth`] header; a 401 with OIDC credentials fetches a new access
//! token and sends the request once more (a 401 means Waldur did not process it, so a write is
//! safe to resend). A token endpoint that fails means nothing was sent: retry.
//!
//! Answers become outcomes here: 200/201 → delivered; 429 → throttled (the whole sink waits out
//! `Retry-After`); 401/403 → retry once the credentials are fixed; 408, 5xx, a timeout or a
//! connection dropped after the request left → unknown (looked up before a resend); no
//! connection → retry; any other 4xx → rejected with Waldur's message (a past month needs a
//! staff token: the message says so).
//!
//! Lists are Django REST pages: a JSON array with a `Link: <…>; rel="next"` header (or a
//! `{results, next}` envelope), followed to the end, at most [`MAX_PAGES`] pages.

use std::collections::HashMap;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

use crate::delivery::consumer::Outcome;
use crate::sinks::http::{describe, error_message, retry_after, strip, transport_outcome};

use super::auth::{Auth, AuthError};

/// Items asked per page, and the most pages followed.
const PAGE_SIZE: u32 = 100;
const MAX_PAGES: u32 = 1000;

/// A resource of the offering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub uuid: String,
    pub name: String,
    pub backend_id: String,
    pub state: String,
}

impl Resource {
    /// Terminated: it gets no usage (Waldur still takes usage while it is `Terminating`).
    pub fn is_terminal(&self) -> bool {
        self.state.eq_ignore_ascii_case("terminated")
    }

    /// Being created: Waldur takes no usage yet.
    pub fn is_creating(&self) -> bool {
        self.state.eq_ignore_ascii_case("creating")
    }
}

/// A value on Waldur: the component usage's uuid and its usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub uuid: String,
    pub usage: String,
}

/// One offering's usage API.
pub struct WaldurClient {
    http: Client,
    api: Url,
    offering: String,
    auth: Auth,
}

/// Why a request got no answer: no credentials (not sent), or the transport.
enum SendError {
    Auth(AuthError),
    Transport(reqwest::Error),
}

impl WaldurClient {
    /// `api`: the API root, ending in `/api/`.
    pub fn new(http: Client, api: &str, offering: &str, auth: Auth) -> Result<Self, String> {
        let api = Url::parse(api).map_err(|e| format!("Waldur url {api:?} is not a URL: {e}"))?;
        if api.cannot_be_a_base() {
            return Err(format!("Waldur url {api} cannot be a base URL; write it as https://host/api/"));
        }
        Ok(Self { http, api, offering: offering.to_string(), auth })
    }

    fn url(&self, path: &str) -> Url {
        self.api.join(path).expect("a relative path joins a base URL")
    }

    /// What to check when Waldur refuses the credentials.
    pub fn auth_hint(&self) -> String {
        self.auth.hint()
    }

    /// Sends the request `build` makes with the credentials; after a 401, once more with renewed
    /// ones (OIDC). `build` is called again for the resend.
    fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, SendError> {
        let header = self.auth.header().map_err(SendError::Auth)?;
        let resp =
            build().header(reqwest::header::AUTHORIZATION, header.clone()).send().map_err(SendError::Transport)?;
        if resp.status() != StatusCode::UNAUTHORIZED || !self.auth.renew(&header) {
            return Ok(resp);
        }
        tracing::info!("Waldur refused the access token (401): fetching a new one and sending again");
        let header = self.auth.header().map_err(SendError::Auth)?;
        build().header(reqwest::header::AUTHORIZATION, header).send().map_err(SendError::Transport)
    }

    /// A read's request, or the message of its failure.
    fn get(&self, url: &Url, build: impl Fn() -> RequestBuilder) -> Result<Response, String> {
        self.send(build).map_err(|e| match e {
            SendError::Auth(e) => format!("GET {}: not sent: {e}", strip(url)),
            SendError::Transport(e) => format!("GET {}: {}", strip(url), describe(&e)),
        })
    }

    /// The credentials' user: (username, is_staff), from `GET users/me/`.
    pub fn me(&self) -> Result<(String, bool), String> {
        let url = self.url("users/me/");
        let resp = self.get(&url, || self.http.get(url.clone()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {} answered {status}: {}", strip(&url), error_message(resp)));
        }
        let body: Value = resp.json().map_err(|e| format!("GET {}: the answer is not JSON: {e}", strip(&url)))?;
        Ok((text(&body, "username"), body.get("is_staff").and_then(Value::as_bool).unwrap_or(false)))
    }

    /// Every resource of the offering, whatever its state.
    pub fn resources(&self) -> Result<Vec<Resource>, String> {
        let url = self.url("marketplace-provider-resources/");
        let items = self.list(url, &[("offering_uuid", self.offering.as_str())])?;
        Ok(items
            .iter()
            .map(|r| Resource {
                uuid: text(r, "uuid"),
                name: text(r, "name"),
                backend_id: text(r, "backend_id"),
                state: text(r, "state"),
            })
            .filter(|r| !r.uuid.is_empty())
            .collect())
    }

    /// The component usages of a resource for a billing period (`YYYY-MM-01`), by type.
    pub fn component_usages(&self, resource: &str, period: &str) -> Result<HashMap<String, Stored>, String> {
        let url = self.url("marketplace-component-usages/");
        let items = self.list(url, &[("resource_uuid", resource), ("billing_period", period)])?;
        Ok(items
            .iter()
            .map(|u| (text(u, "type"), Stored { uuid: text(u, "uuid"), usage: text(u, "usage") }))
            .filter(|(t, _)| !t.is_empty())
            .collect())
    }

    /// The users' usages of a resource's components for a billing period, by (type, username).
    pub fn user_usages(&self, resource: &str, period: &str) -> Result<HashMap<(String, String), Stored>, String> {
        let url = self.url("marketplace-component-user-usages/");
        let items = self.list(url, &[("resource_uuid", resource), ("component_usage_billing_period", period)])?;
        Ok(items
            .iter()
            .filter_map(|u| {
                let ctype = ["component_type", "type"].iter().map(|k| text(u, k)).find(|t| !t.is_empty())?;
                Some(((ctype, text(u, "username")), Stored { uuid: text(u, "uuid"), usage: text(u, "usage") }))
            })
            .collect())
    }

    /// Sets a resource's total of one component for the month starting at `date`.
    pub fn set_usage(&self, resource: &str, tres: &str, amount: &str, date: &str) -> Outcome {
        let body = json!({"usages": [{"type": tres, "amount": amount}], "resource": resource, "date": date});
        self.post(self.url("marketplace-component-usages/set_usage/"), &body)
    }

    /// Sets one user's part of a component usage.
    /// The offering's users in state OK: username → the offering user's URL (what a user's part
    /// links to, as the site agent sends it).
    pub fn offering_users(&self) -> Result<HashMap<String, String>, String> {
        let url = self.url("marketplace-offering-users/");
        let items = self.list(url, &[("offering_uuid", self.offering.as_str()), ("state", "OK")])?;
        Ok(items
            .iter()
            .map(|u| (text(u, "username"), text(u, "url")))
            .filter(|(name, url)| !name.is_empty() && !url.is_empty())
            .collect())
    }

    /// Sets a user's part of a component usage; `user`: the offering user's URL, when known.
    pub fn set_user_usage(
        &self,
        component_usage: &str,
        username: &str,
        user: Option<&str>,
        usage: &str,
        date: &str,
    ) -> Outcome {
        let mut part = json!({"username": username, "usage": usage, "date": date});
        if let Some(url) = user {
            part["user"] = json!(url);
        }
        let body = json!({"usages": [part]});
        let path = format!("marketplace-component-usages/{component_usage}/set_user_usages/");
        self.post(self.url(&path), &body)
    }

    fn post(&self, url: Url, body: &Value) -> Outcome {
        match self.send(|| self.http.post(url.clone()).json(body)) {
            Ok(resp) => classify(resp, &url, &self.auth),
            Err(SendError::Transport(e)) => transport_outcome(&e),
            Err(SendError::Auth(e)) => {
                Outcome::Retry { reason: format!("POST {}: not sent: {e}", strip(&url)), after_secs: None }
            }
        }
    }

    /// Every item of a paginated list.
    fn list(&self, url: Url, query: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        let mut next = Some(url.clone());
        let mut first = true;
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(page) = next.take() else { return Ok(out) };
            let size = PAGE_SIZE.to_string();
            let resp = self.get(&page, || {
                let req = self.http.get(page.clone());
                if first {
                    req.query(query).query(&[("page_size", size.as_str())])
                } else {
                    req
                }
            })?;
            first = false;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET {} answered {status}: {}", strip(&page), error_message(resp)));
            }
            next = link_next(&resp);
            let body: Value = resp.json().map_err(|e| format!("GET {}: the answer is not JSON: {e}", strip(&page)))?;
            let items = match body {
                Value::Array(a) => a,
                Value::Object(mut o) => {
                    if next.is_none() {
                        next = o.get("next").and_then(Value::as_str).and_then(|n| Url::parse(n).ok());
                    }
                    match o.remove("results") {
                        Some(Value::Array(a)) => a,
                        _ => return Err(format!("GET {}: unrecognised list answer (no array)", strip(&page))),
                    }
                }
                _ => return Err(format!("GET {}: unrecognised list answer (no array)", strip(&page))),
            };
            out.extend(items);
        }
        Err(format!("GET {}: more than {MAX_PAGES} pages; giving up", strip(&url)))
    }
}

/// A field as text (strings as they are, numbers as written).
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The `rel="next"` target of a `Link` header.
fn link_next(resp: &Response) -> Option<Url> {
    let link = resp.headers().get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"").then_some(())?;
        Url::parse(target.trim().trim_start_matches('<').trim_end_matches('>')).ok()
    })
}

/// Maps an answer to a write to an outcome.
fn classify(resp: Response, url: &Url, auth: &Auth) -> Outcome {
    let status = resp.status();
    if status.is_success() {
        return Outcome::Delivered { remote_id: None };
    }
    if status.is_redirection() {
        let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
        return Outcome::Unknown {
            reason: format!("{status}: redirected to {to}; set `url` to the API's own address"),
        };
    }
    let after = retry_after(&resp);
    let message = error_message(resp);
    let at = strip(url);
    match status {
        StatusCode::TOO_MANY_REQUESTS => Outcome::Throttled { reason: format!("POST {at}: 429: {message}"), after_secs: after },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Retry {
            reason: format!(
                "POST {at}: {status}: Waldur refused the credentials ({message}); {}",
                auth.hint()
            ),
            after_secs: after,
        },
        StatusCode::REQUEST_TIMEOUT => Outcome::Unknown { reason: format!("POST {at}: {status}: {message}") },
        s if s.is_server_error() => Outcome::Unknown { reason: format!("POST {at}: {status}: {message}") },
        _ if message.contains("backfilling past billing periods") => Outcome::Rejected {
            reason: format!(
                "POST {at}: {status}: {message} (a past month needs a staff token; report it with one, then `slurm-ledger retry --sink waldur`)"
            ),
        },
        _ => Outcome::Rejected { reason: format!("POST {at}: {status}: {message}") },
    }
}
