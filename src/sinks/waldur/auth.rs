//! How the Waldur client authenticates: a static API token (`Authorization: Token …`), or OIDC
//! client credentials (`Authorization: Bearer …`, RFC 6749 §4.4), the site agent's two ways.
//!
//! OIDC: the access token is fetched from the token endpoint with `grant_type=client_credentials`
//! and the client's id and secret in the form body (`client_secret_post`, which Keycloak's default
//! client authenticator "Client Id and Secret" accepts, as it does HTTP Basic). It is cached until
//! `expires_in` minus a margin ([`margin`]); after a 401 from Waldur the client drops it and asks
//! once more ([`Auth::renew`]), so a token revoked or expired early costs one request, not a pass.
//!
//! Invariants: neither the client secret nor an access token reaches a message or a log line
//! (both are [`Secret`]s; the header value is marked sensitive; a token endpoint's answer is
//! scrubbed of the secret). A failure names the token URL (without user info or query), the
//! client id, and the fix.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::Value;

use crate::secret::Secret;
use crate::sinks::http::{describe, strip};

use super::{ENV_OIDC_SECRET, ENV_TOKEN};

/// A token without `expires_in` is used this long (Keycloak's default access token lifespan),
/// or until Waldur refuses it.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The most a cached token is given up before its expiry.
const MAX_MARGIN: Duration = Duration::from_secs(30);
/// After the token endpoint failed, its error is given for this long without asking again (a
/// pass of many items must not hammer the identity provider with a wrong secret, which may lock
/// the client out).
const FAILURE_HOLD: Duration = Duration::from_secs(30);

/// Where the client's `Authorization` header comes from.
pub enum Auth {
    /// A Waldur API token.
    Token(Secret),
    /// OIDC client credentials (boxed: the cache and the client are large).
    Oidc(Box<Oidc>),
}

/// Why no `Authorization` header could be made: the token endpoint failed. The request was not
/// sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Auth {
    /// The `Authorization` header value for the next request (marked sensitive).
    pub fn header(&self) -> Result<HeaderValue, AuthError> {
        let text = match self {
            Auth::Token(t) => format!("Token {}", t.expose()),
            Auth::Oidc(o) => format!("Bearer {}", o.token()?.expose()),
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            AuthError(match self {
                Auth::Token(_) => {
                    format!("the Waldur API token is not a valid header value; check {ENV_TOKEN} / token_file")
                }
                Auth::Oidc(o) => {
                    format!("the OIDC token endpoint {} gave an access token that is not a valid header value", o.at())
                }
            })
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// After Waldur answered 401 to a request sent with `used`: whether to send it once more
    /// (OIDC: the token is dropped, unless another request already replaced it, and the next
    /// [`Auth::header`] fetches a new one). A static token cannot be renewed.
    pub fn renew(&self, used: &HeaderValue) -> bool {
        match self {
            Auth::Token(_) => false,
            Auth::Oidc(o) => {
                let mut cache = o.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.as_ref().is_some_and(|c| used.as_bytes() == format!("Bearer {}", c.token.expose()).as_bytes())
                {
                    *cache = None;
                }
                true
            }
        }
    }

    /// What to check when Waldur refuses the credentials (401/403), for messages.
    pub fn hint(&self) -> String {
        match self {
            Auth::Token(_) => format!("check {ENV_TOKEN} / token_file"),
            Auth::Oidc(o) => format!(
                "check that OIDC client {:?} of {} maps to a Waldur user with a role on the offering",
                o.client_id,
                o.at()
            ),
        }
    }
}

/// OIDC client credentials and the cached access token.
pub struct Oidc {
    http: Client,
    token_url: Url,
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    cache: Mutex<Option<Cached>>,
    /// The token endpoint's last failure, given again until then.
    failed: Mutex<Option<(AuthError, Instant)>>,
    clock: fn() -> Instant,
}

/// An access token and when to stop using it.
#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    until: Instant,
}

/// How long before its expiry a token is given up: a tenth of its lifetime, at most 30 s (a
/// request must not arrive with a token that expired on the way; a 401 is retried anyway).
pub fn margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_MARGIN)
}

impl Oidc {
    pub fn new(
        http: Client,
        token_url: &str,
        client_id: &str,
        secret: Secret,
        scope: Option<String>,
    ) -> Result<Self, String> {
        let url = Url::parse(token_url).map_err(|e| format!("oidc_token_url {token_url:?} is not a URL: {e}"))?;
        Ok(Self::with_clock(http, url, client_id, secret, scope, Instant::now))
    }

    fn with_clock(
        http: Client,
        token_url: Url,
        client_id: &str,
        secret: Secret,
        scope: Option<String>,
        clock: fn() -> Instant,
    ) -> Self {
        Self {
            http,
            token_url,
            client_id: client_id.to_string(),
            secret,
            scope,
            cache: Mutex::new(None),
            failed: Mutex::new(None),
            clock,
        }
    }

    /// The token URL for messages.
    fn at(&self) -> String {
        strip(&self.token_url)
    }

    /// The cached token, or a new one from the token endpoint. Fetches hold the lock: requests
    /// that find no token wait for one fetch instead of each making their own.
    fn token(&self) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = (self.clock)();
        if let Some(c) = cache.as_ref().filter(|c| now < c.until) {
            return Ok(c.token.clone());
        }
        *cache = None;
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, _)) = failed.as_ref().filter(|(_, until)| now < *until) {
            return Err(e.clone());
        }
        let (token, lifetime) = self.fetch().inspect_err(|e| *failed = Some((e.clone(), now + FAILURE_HOLD)))?;
        *failed = None;
        *cache = Some(Cached { token: token.clone(), until: now + lifetime - margin(lifetime) });
        Ok(token)
    }

    /// One token request: the access token and its lifetime.
    fn fetch(&self) -> Result<(Secret, Duration), AuthError> {
        let at = self.at();
        let fix_secret =
            format!("check oidc_client_id and the client secret ({ENV_OIDC_SECRET} or oidc_client_secret_file)");
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose()),
        ];
        if let Some(s) = &self.scope {
            form.push(("scope", s));
        }
        let resp = self
            .http
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .map_err(|e| {
                AuthError(format!(
                    "OIDC token endpoint {at}: {}; check oidc_token_url and that the host is reachable",
                    self.scrub(&describe(&e))
                ))
            })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            // RFC 6749 §5.2: {"error": "invalid_client", "error_description": "…"}.
            let field = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(Value::as_str).map(str::to_string);
            let what = match (field("error"), field("error_description")) {
                (Some(e), Some(d)) => format!("{e}: {d}"),
                (Some(e), None) => e,
                _ => text.trim().chars().take(300).collect(),
            };
            let fix = match status.as_u16() {
                400 | 401 | 403 => fix_secret.clone(),
                _ => "the identity provider failed; it is asked again at the next attempt".to_string(),
            };
            return Err(AuthError(format!(
                "OIDC token endpoint {at} refused client {:?}: {status}: {}; {fix}",
                self.client_id,
                self.scrub(&what)
            )));
        }
        let Some(body) = body else {
            return Err(AuthError(format!("OIDC token endpoint {at}: the answer is not JSON; check oidc_token_url")));
        };
        let token = body.get("access_token").and_then(Value::as_str).filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            return Err(AuthError(format!(
                "OIDC token endpoint {at}: no access_token in the answer; check oidc_token_url"
            )));
        };
        if let Some(kind) = body.get("token_type").and_then(Value::as_str) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(AuthError(format!(
                    "OIDC token endpoint {at}: token_type {kind:?}, not Bearer; configure the client for bearer tokens"
                )));
            }
        }
        let lifetime = match body.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs),
            Some(Value::String(s)) => s.trim().parse().ok().map(Duration::from_secs),
            _ => None,
        };
        // An `expires_in` of 0 would ask for a token per request, an absurd one overflow the clock.
        let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME).clamp(Duration::from_secs(10), Duration::from_secs(86_400));
        Ok((Secret::new(token), lifetime))
    }

    /// A message without the client secret in it (an identity provider may echo a form).
    fn scrub(&self, text: &str) -> String {
        let s = self.secret.expose();
        if s.is_empty() {
            text.to_string()
        } else {
            text.replace(s, "***")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock that tests move by hand: an epoch plus this many milliseconds.
    static MILLIS: AtomicU64 = AtomicU64::new(0);
    fn epoch() -> Instant {
        static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *E.get_or_init(Instant::now)
    }
    fn clock() -> Instant {
        epoch() + Duration::from_millis(MILLIS.load(Ordering::SeqCst))
    }

    #[test]
    fn the_margin_is_a_tenth_at_most_30_s() {
        assert_eq!(margin(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(margin(Duration::from_secs(3600)), Duration::from_secs(30));
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(6));
        assert_eq!(margin(Duration::ZERO), Duration::ZERO);
    }

    /// The cache, without a network: a token stored at t=0 for 300 s is used until 270 s, and a
    /// 401 drops exactly the token that was refused.
    #[test]
    fn a_cached_token_is_used_until_its_expiry_minus_the_margin_and_dropped_on_401() {
        let url = Url::parse("http://127.0.0.1:9/token").unwrap();
        let o = Oidc::with_clock(Client::new(), url, "id", Secret::new("s3cret"), None, clock);
        let store = |token: &str, lifetime: u64| {
            let until = clock() + Duration::from_secs(lifetime) - margin(Duration::from_secs(lifetime));
            *o.cache.lock().unwrap() = Some(Cached { token: Secret::new(token), until });
        };
        MILLIS.store(0, Ordering::SeqCst);
        store("tok-1", 300);
        let auth = Auth::Oidc(Box::new(o));
        let Auth::Oidc(o) = &auth else { unreachable!() };
        MILLIS.store(269_999, Ordering::SeqCst);
        assert_eq!(o.token().unwrap().expose(), "tok-1", "still fresh before 270 s");
        MILLIS.store(270_000, Ordering::SeqCst);
        // Expired by the margin: a fetch is tried (port 9 refuses) and its error names the URL.
        let e = o.token().unwrap_err().0;
        assert!(e.contains("http://127.0.0.1:9/token") && !e.contains("s3cret"), "{e}");
        assert!(o.cache.lock().unwrap().is_none());
        // The failure is given again for 30 s without asking, then the endpoint is asked again.
        let held = o.failed.lock().unwrap().clone().unwrap();
        assert_eq!(held.1, clock() + FAILURE_HOLD);
        *o.failed.lock().unwrap() = Some((AuthError("held".into()), held.1));
        MILLIS.store(299_999, Ordering::SeqCst);
        assert_eq!(o.token().unwrap_err().0, "held");
        MILLIS.store(300_000, Ordering::SeqCst);
        assert_ne!(o.token().unwrap_err().0, "held");
        *o.failed.lock().unwrap() = None;
        // A 401 for an older token leaves a newer one; for the current one it drops it.
        MILLIS.store(0, Ordering::SeqCst);
        let Auth::Oidc(o2) = &auth else { unreachable!() };
        *o2.cache.lock().unwrap() =
            Some(Cached { token: Secret::new("tok-2"), until: clock() + Duration::from_secs(100) });
        assert!(auth.renew(&HeaderValue::from_static("Bearer tok-1")));
        assert!(o2.cache.lock().unwrap().is_some());
        assert!(auth.renew(&HeaderValue::from_static("Bearer tok-2")));
        assert!(o2.cache.lock().unwrap().is_none());
        // A static token is never renewed.
        assert!(!Auth::Token(Secret::new("t")).renew(&HeaderValue::from_static("Token t")));
    }

    #[test]
    fn headers_are_sensitive_and_never_printed() {
        let h = Auth::Token(Secret::new("tok-abc")).header().unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("tok-abc"));
    }
}
