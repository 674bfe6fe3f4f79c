//! A fake of the Parallel Works ACTIVATE usage API that enforces the contract and injects faults.
//!
//! Contract: /work/shared/contracts.md §1.1 and specs/activate/create-usage-event.openapi.json
//! (the `PostUsageEventInput`, `UsageEventOutput`, `Error` schemas). Checks, in this order:
//! route (404) → method (405) → auth (401) → organization and allocation (404) →
//! `Content-Type: application/json` (415) → body (400, the message starts with the field).
//!
//! Faults are drawn only for requests that pass every check (a fault never hides a client's
//! contract bug): POSTs take the scripted queue first, then the seeded random [`FaultMix`];
//! GETs take only the random mix, and only with `FaultMix::on_get`. "Before" faults record
//! nothing; "After" faults record the event, then answer badly (or not at all).
//!
//! Not faked: `DELETE …/usage` (405 here), the other GET filters (400 "not implemented"), JWT
//! validation (a configured Bearer token is compared to the API key), TLS (the base URL is `http://`).
//!
//! Assumption: the GET answer's real schema (`RatedCostsPaginatedResponse`) is not in our spec
//! excerpt; this fake answers `{"data": [event…], "page", "pageSize", "total"}` with events in
//! creation order, and the `metadata` filter is a case-insensitive substring of the metadata's
//! compact JSON text (the real server's text rendering is unknown: search for values, not for
//! `"key":value` with its separators).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use super::faults::Faults;
use super::http::{percent_decode, Reply, Request, Response, Server};

#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    pub org: String,
    pub api_key: String,
    pub allocations: Vec<String>,
    /// Accept `Authorization: Bearer <api_key>` too (the real API takes JWTs; default: refuse).
    pub accept_bearer: bool,
    /// Seeds the random fault draws and the event ids.
    pub seed: u64,
    pub faults: FaultMix,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status (meant: 500, 502, 503, 504); nothing recorded.
    Status5xxBefore(u16),
    /// Record the event, then answer this status instead of 200.
    Status5xxAfter(u16),
    /// 429 with `Retry-After: <secs>`; nothing recorded.
    TooMany { retry_after_secs: u64 },
    /// Close the connection without answering; nothing recorded.
    DropBefore,
    /// Record the event, then close without answering.
    DropAfter,
    /// Record the event, then wait `secs` (longer than the client's timeout) before the 200.
    TimeoutAfter { secs: u64 },
    /// Record the event, wait, then the normal 200.
    Slow { millis: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Status5xxBefore,
    Status5xxAfter,
    TooMany,
    DropBefore,
    DropAfter,
    TimeoutAfter,
    Slow,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Status5xxBefore(_) => FaultKind::Status5xxBefore,
            Fault::Status5xxAfter(_) => FaultKind::Status5xxAfter,
            Fault::TooMany { .. } => FaultKind::TooMany,
            Fault::DropBefore => FaultKind::DropBefore,
            Fault::DropAfter => FaultKind::DropAfter,
            Fault::TimeoutAfter { .. } => FaultKind::TimeoutAfter,
            Fault::Slow { .. } => FaultKind::Slow,
        }
    }
}

/// Random faults: each request gets the first fault whose cumulative probability exceeds a
/// seeded uniform draw, or none. Probabilities are ≥ 0 and sum to at most 1.
#[derive(Debug, Clone, Default)]
pub struct FaultMix {
    pub weights: Vec<(f64, Fault)>,
    /// Also draw for GETs (after-faults then just answer badly: a GET records nothing).
    pub on_get: bool,
}

/// An accepted usage event, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub organization: String,
    pub allocation: String,
    pub sku: String,
    pub quantity: f64,
    /// The JSON number exactly as it was in the body (`2.6666666666666665`, `1e-3`, `3`).
    pub quantity_text: String,
    pub started_at: String,
    pub ended_at: String,
    pub created_at: String,
    pub user: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The connection was closed without an answer.
    Dropped,
}

/// Every request that reached the fake as HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub outcome: Outcome,
    pub fault: Option<Fault>,
}

pub struct FakeActivate {
    shared: Arc<Shared>,
    server: Server,
}

struct Shared {
    cfg: FakeConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    requests: Vec<RecordedRequest>,
    faults: Faults,
    next_id: u64,
    /// Misbehave like a server that ignores the `metadata` filter (lists every event).
    ignore_metadata_filter: bool,
}

impl FakeActivate {
    /// Starts listening on 127.0.0.1 (a free port). Panics when the port or the mix is unusable.
    pub fn start(cfg: FakeConfig) -> FakeActivate {
        let state = State { faults: Faults::new(cfg.faults.clone(), cfg.seed), ..State::default() };
        let shared = Arc::new(Shared { cfg, state: Mutex::new(state) });
        let s = shared.clone();
        let server =
            Server::start(Arc::new(move |req: &Request| s.handle(req))).expect("fake ACTIVATE: bind 127.0.0.1:0");
        FakeActivate { shared, server }
    }

    /// `http://127.0.0.1:<port>`: the API host, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Accepted events, in the order they were recorded.
    pub fn events(&self) -> Vec<Event> {
        self.shared.state().events.clone()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// Faults for the next valid POSTs, one each, before any random draw.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state().faults.push(faults);
    }

    /// `n` normal answers in the scripted queue (to place a fault later in a script).
    pub fn push_pass(&self, n: usize) {
        self.shared.state().faults.push_pass(n);
    }

    /// From now on, ignore the `metadata` filter of GET listings (a server without it).
    pub fn ignore_metadata_filter(&self, on: bool) {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner()).ignore_metadata_filter = on;
    }

    pub fn set_mix(&self, mix: FaultMix) {
        self.shared.state().faults.set_mix(mix);
    }

    /// How many faults of each kind were injected (scripted and random).
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, u64> {
        self.shared.state().faults.counts()
    }

    /// Closes the port now; connection threads end within tens of milliseconds. Also on drop.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({"message": message, "code": status}))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, req: &Request) -> Reply {
        let (reply, fault) = self.answer(req);
        let outcome = match &reply {
            Reply::Drop => Outcome::Dropped,
            Reply::Send { response, .. } => Outcome::Status(response.status),
        };
        self.state().requests.push(RecordedRequest {
            method: req.method.clone(),
            target: req.target.clone(),
            outcome,
            fault,
        });
        reply
    }

    fn answer(&self, req: &Request) -> (Reply, Option<Fault>) {
        let now = |r: Response| Reply::Send { delay: Duration::ZERO, response: r };
        let Some((org, alloc)) = route(req.path()) else {
            return (now(error(404, &format!("no route for {}", req.path()))), None);
        };
        if req.method != "POST" && req.method != "GET" {
            return (
                now(error(405, &format!("{} not allowed here", req.method)).with_header("Allow", "GET, POST")),
                None,
            );
        }
        if let Err(why) = self.check_auth(req) {
            return (now(error(401, why).with_header("WWW-Authenticate", "Basic realm=\"ACTIVATE\"")), None);
        }
        if org != self.cfg.org || !self.cfg.allocations.contains(&alloc) {
            return (now(error(404, &format!("organization {org:?} has no allocation {alloc:?}"))), None);
        }
        let is_post = req.method == "POST";
        let input = if is_post {
            let ct = req.header("Content-Type").unwrap_or("");
            if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
                return (now(error(415, &format!("Content-Type must be application/json, got {ct:?}"))), None);
            }
            match validate(&req.body) {
                Ok(i) => Some(i),
                Err(m) => return (now(error(400, &m)), None),
            }
        } else {
            None
        };
        let listing = if is_post {
            None
        } else {
            match self.list(req, &org, &alloc) {
                Ok(v) => Some(v),
                Err(m) => return (now(error(400, &m)), None),
            }
        };
        let fault = self.draw(is_post);
        let reply = match &fault {
            Some(Fault::Status5xxBefore(c)) => return (now(error(*c, "injected fault")), fault),
            Some(Fault::TooMany { retry_after_secs: s }) => {
                return (
                    now(error(429, "injected fault: too many requests").with_header("Retry-After", &s.to_string())),
                    fault,
                )
            }
            Some(Fault::DropBefore) => return (Reply::Drop, fault),
            _ => match (input, listing) {
                (Some(input), _) => Response::json(200, &self.record(&org, &alloc, input).output()),
                (None, Some(v)) => Response::json(200, &v),
                (None, None) => unreachable!("a POST has an input, a GET a listing"),
            },
        };
        let reply = match &fault {
            Some(Fault::Status5xxAfter(c)) => now(error(*c, "injected fault (the event was recorded)")),
            Some(Fault::DropAfter) => Reply::Drop,
            Some(Fault::TimeoutAfter { secs }) => Reply::Send { delay: Duration::from_secs(*secs), response: reply },
            Some(Fault::Slow { millis }) => Reply::Send { delay: Duration::from_millis(*millis), response: reply },
            _ => now(reply),
        };
        (reply, fault)
    }

    fn check_auth(&self, req: &Request) -> Result<(), &'static str> {
        let h = req.header("Authorization").ok_or("missing Authorization header")?;
        let (scheme, cred) = h.split_once(' ').unwrap_or((h, ""));
        let cred = cred.trim();
        if scheme.eq_ignore_ascii_case("Basic") {
            let text = base64_decode(cred)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("Basic credentials are not base64")?;
            let (user, password) = text.split_once(':').ok_or("Basic credentials have no ':'")?;
            if !password.is_empty() {
                return Err("the password must be empty (the API key is the user)");
            }
            if user != self.cfg.api_key {
                return Err("wrong API key");
            }
            Ok(())
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            if !self.cfg.accept_bearer {
                return Err("Bearer is not accepted (this fake is configured for API keys)");
            }
            if cred != self.cfg.api_key {
                return Err("wrong bearer token");
            }
            Ok(())
        } else {
            Err("unsupported Authorization scheme")
        }
    }

    fn draw(&self, is_post: bool) -> Option<Fault> {
        self.state().faults.draw(is_post)
    }

    fn record(&self, org: &str, alloc: &str, i: Input) -> Event {
        let mut st = self.state();
        st.next_id += 1;
        let ev = Event {
            id: format!("{:08x}{:016x}", self.cfg.seed as u32, st.next_id),
            organization: org.into(),
            allocation: alloc.into(),
            sku: i.sku,
            quantity: i.quantity,
            quantity_text: i.quantity_text,
            started_at: i.started_at,
            ended_at: i.ended_at,
            created_at: jiff::Timestamp::now().to_string(),
            user: i.user,
            metadata: i.metadata,
        };
        st.events.push(ev.clone());
        ev
    }

    /// The GET answer; `Err` names the bad query parameter. With `ignore_metadata_filter` the
    /// `metadata` parameter is accepted and ignored, as a server without that filter would.
    fn list(&self, req: &Request, org: &str, alloc: &str) -> Result<Value, String> {
        let (mut page, mut page_size, mut needle, mut from, mut to) = (1u64, 50u64, None, None, None);
        for (k, v) in req.query()? {
            let bad = |what: &str| format!("{k}: {what}, got {v:?}");
            match k.as_str() {
                "page" => page = v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| bad("expected an integer ≥ 1"))?,
                "pageSize" => {
                    page_size =
                        v.parse().ok().filter(|p| (1..=1000).contains(p)).ok_or_else(|| bad("expected 1 to 1000"))?
                }
                "metadata" => needle = Some(v.to_lowercase()),
                "startedAtFrom" => {
                    from = Some(parse_date_time(&v).ok_or_else(|| bad("expected an RFC 3339 date-time"))?)
                }
                "startedAtTo" => to = Some(parse_date_time(&v).ok_or_else(|| bad("expected an RFC 3339 date-time"))?),
                "endedAtFrom" | "endedAtTo" | "createdAtFrom" | "createdAtTo" | "type" | "subtype" | "quantityMin"
                | "quantityMax" | "unitRateMin" | "unitRateMax" | "amountMin" | "amountMax" => {
                    return Err(format!("{k}: a real filter this fake does not implement"))
                }
                _ => return Err(format!("{k}: unknown query parameter")),
            }
        }
        let st = self.state();
        if st.ignore_metadata_filter {
            needle = None;
        }
        let hits: Vec<&Event> = st
            .events
            .iter()
            .filter(|e| e.organization == org && e.allocation == alloc)
            .filter(|e| {
                needle
                    .as_ref()
                    .map_or(true, |n| e.metadata.as_ref().is_some_and(|m| m.to_string().to_lowercase().contains(n)))
            })
            .filter(|e| {
                let t = parse_date_time(&e.started_at).expect("validated on POST");
                from.map_or(true, |f| t >= f) && to.map_or(true, |x| t <= x)
            })
            .collect();
        let skip = ((page - 1) * page_size) as usize;
        let data: Vec<Value> = hits.iter().skip(skip).take(page_size as usize).map(|e| e.listing()).collect();
        Ok(json!({"data": data, "page": page, "pageSize": page_size, "total": hits.len()}))
    }
}

impl Event {
    /// `UsageEventOutput`, the POST answer.
    fn output(&self) -> Value {
        json!({"id": self.id, "organization": self.organization, "allocation": self.allocation, "quantity": self.quantity,
               "startedAt": self.started_at, "endedAt": self.ended_at, "createdAt": self.created_at})
    }
    /// One row of the GET answer.
    fn listing(&self) -> Value {
        let mut v = self.output();
        v["sku"] = json!(self.sku);
        v["user"] = json!(self.user);
        v["metadata"] = self.metadata.clone().unwrap_or(Value::Null);
        v
    }
}

/// `/api/organizations/{org}/allocations/{name}/usage`, segments percent-decoded.
fn route(path: &str) -> Option<(String, String)> {
    let seg: Vec<&str> = path.split('/').collect();
    match seg[..] {
        ["", "api", "organizations", org, "allocations", name, "usage"] if !org.is_empty() && !name.is_empty() => {
            Some((percent_decode(org, false)?, percent_decode(name, false)?))
        }
        _ => None,
    }
}

struct Input {
    sku: String,
    quantity: f64,
    quantity_text: String,
    started_at: String,
    ended_at: String,
    user: Option<String>,
    metadata: Option<Value>,
}

const ALLOWED: [&str; 6] = ["sku", "quantity", "startedAt", "endedAt", "user", "metadata"];
const REQUIRED: [&str; 4] = ["sku", "quantity", "startedAt", "endedAt"];

/// `PostUsageEventInput` (`additionalProperties: false`); `Err` starts with the field's name.
fn validate(body: &[u8]) -> Result<Input, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: not JSON ({e})"))?;
    let Value::Object(obj) = v else { return Err("body: must be a JSON object (PostUsageEventInput)".into()) };
    let members = top_level_members(std::str::from_utf8(body).expect("serde_json checked UTF-8"));
    for (i, (k, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(x, _)| x == k) {
            return Err(format!("{k}: property given twice"));
        }
    }
    if let Some(k) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(format!(
            "{k}: property not allowed (PostUsageEventInput has additionalProperties: false; allowed: {ALLOWED:?})"
        ));
    }
    if let Some(k) = REQUIRED.iter().find(|k| !obj.contains_key(**k)) {
        return Err(format!("{k}: required property missing"));
    }
    let sku = match &obj["sku"] {
        Value::String(s) if !s.is_empty() => s.clone(),
        other => return Err(format!("sku: expected a non-empty string, got {other}")),
    };
    let quantity = match &obj["quantity"] {
        Value::Number(n) => n
            .as_f64()
            .filter(|q| q.is_finite() && *q >= 0.0)
            .ok_or(format!("quantity: expected a number ≥ 0, got {n}"))?,
        other => return Err(format!("quantity: expected a number, got {other}")),
    };
    let quantity_text =
        members.iter().find(|(k, _)| k == "quantity").map(|(_, t)| t.clone()).expect("quantity is a member");
    let time = |k: &str| match &obj[k] {
        Value::String(s) => parse_date_time(s)
            .map(|t| (s.clone(), t))
            .ok_or(format!("{k}: expected an RFC 3339 date-time with offset, got {s:?}")),
        other => Err(format!("{k}: expected a date-time string, got {other}")),
    };
    let (started_at, t0) = time("startedAt")?;
    let (ended_at, t1) = time("endedAt")?;
    if t1 < t0 {
        return Err(format!("endedAt: {ended_at} is before startedAt {started_at}"));
    }
    let user = match obj.get("user") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("user: expected a string, got {other}")),
    };
    let metadata = match obj.get("metadata") {
        None => None,
        Some(m @ Value::Object(_)) => Some(m.clone()),
        Some(other) => return Err(format!("metadata: expected an object, got {other}")),
    };
    Ok(Input { sku, quantity, quantity_text, started_at, ended_at, user, metadata })
}

/// Each top-level member of a JSON object as (key, value text), in order, duplicates kept.
/// `s` must already have been parsed as an object (no error handling here).
fn top_level_members(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let skip_string = |mut j: usize| {
        j += 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return j + 1,
                _ => j += 1,
            }
        }
        j
    };
    let mut out = Vec::new();
    let mut i = s.find('{').map_or(b.len(), |p| p + 1);
    while i < b.len() {
        match b[i] {
            b'}' => break,
            b'"' => {
                let k_end = skip_string(i);
                let key: String = serde_json::from_str(&s[i..k_end]).unwrap_or_default();
                i = k_end + s[k_end..].find(':').map_or(0, |p| p + 1);
                let start = i;
                let mut depth = 0u32;
                while i < b.len() {
                    match b[i] {
                        b'"' => {
                            i = skip_string(i);
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' | b',' if depth == 0 => break,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
                out.push((key, s[start..i].trim().to_string()));
            }
            _ => i += 1,
        }
    }
    out
}

/// Strict RFC 3339 `YYYY-MM-DDTHH:MM:SS[.1-9 digits](Z|±HH:MM)` → (UTC seconds, nanoseconds).
pub fn parse_date_time(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter().all(u8::is_ascii_digit).then(|| d.iter().fold(0i64, |a, c| a * 10 + i64::from(c - b'0')))
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let dim = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > dim[mo as usize - 1] || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if sep(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(i + 1..i + 1 + digits)? as u32 * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant), proleptic Gregorian.
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset, nanos))
}

/// Standard alphabet, padded; `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (n, chunk) in b.chunks(4).enumerate() {
        let last = n == b.len() / 4 - 1;
        let keep = if last { 4 - pad } else { 4 };
        let mut acc = 0u32;
        for (j, c) in chunk.iter().enumerate() {
            acc = acc << 6 | if j < keep { u32::from(val(*c)?) } else { 0 };
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&bytes[..keep - 1]);
    }
    Some(out)
}

/// Standard padded base64 (for tests and callers building a Basic header).
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for j in 0..4 {
            out.push(if j <= c.len() { A[(n >> (18 - 6 * j)) as usize & 63] as char } else { '=' });
        }
    }
    out
}
