//! What every HTTP sink shares: the client's settings, and how a failed answer or a transport
//! error reads in an outcome. Credentials never appear: messages carry URLs without user info
//! or query, and platforms' messages are cut to 500 characters.

use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::Url;
use serde_json::Value;

use crate::delivery::consumer::Outcome;

/// A blocking client: the timeout per request, no redirects (a redirected POST may or may not
/// have been recorded: the answer says where to point the sink instead), our User-Agent, and an
/// extra CA certificate (PEM) when the site has its own. TLS is always verified.
pub fn client(timeout: Duration, ca_bundle: Option<&Path>) -> Result<Client, String> {
    let mut b = Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("slurm-ledger/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path).map_err(|e| format!("reading the CA bundle {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("the CA bundle {} is not PEM certificates: {e}", path.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The URL without user info or query, for messages.
pub fn strip(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// The seconds of a `Retry-After` header, when it is a number.
pub fn retry_after(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The platform's error message: problem+json `detail`/`title`, a `message` or `error`, a
/// Django REST field error (`{"amount": ["…"]}`), or the text.
pub fn error_message(resp: Response) -> String {
    let text = resp.text().unwrap_or_default();
    let from_json = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        ["detail", "message", "title", "error"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_string))
            .or_else(|| (v.is_object() || v.is_array()).then(|| v.to_string()))
    });
    let msg = from_json.unwrap_or(text);
    let msg = msg.trim();
    if msg.is_empty() {
        return "(no message)".into();
    }
    msg.chars().take(500).collect()
}

/// A failure before any answer: certainly not sent (no connection), or perhaps recorded.
pub fn transport_outcome(e: &reqwest::Error) -> Outcome {
    if e.is_connect() {
        Outcome::Retry { reason: format!("cannot connect: {}", describe(e)), after_secs: None }
    } else {
        Outcome::Unknown { reason: describe(e) }
    }
}

/// An error with its causes (no credentials are ever in a URL).
pub fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
