//! A fake of Waldur Mastermind's usage API (what waldur-site-agent's `report` mode and its
//! historical loader use) that enforces the contract and injects faults.
//!
//! Contract: /work/shared/contracts.md §2.1–2.3, 2.9, 2.10 and specs/waldur/
//! (`waldur-usage-contract.json`: endpoints, `ComponentUsageCreateRequest`,
//! `ComponentUserUsageCreateRequest`; the site agent's config examples: component types such as
//! `cpu`, `mem`, `gres/gpu` with `accounting_type` usage|limit|one). Paths as Waldur writes them,
//! under `/api/`, each with its trailing slash (without it: 404).
//!
//! Checks, in this order (Django REST framework authenticates before it looks at the method):
//! route (404) → `Authorization: Token <t>` (401 missing, not `Token`, or unknown token — DRF's
//! `TokenAuthentication`; 403 for a known token of a user without a role on the offering,
//! [`WaldurConfig::foreign_tokens`]) or, once OIDC is enabled, `Authorization: Bearer <t>` of an
//! access token the fake's OIDC endpoint issued, unexpired and not revoked (401 otherwise) →
//! method (405) → the object in the path (404) →
//! `Content-Type: application/json` (415) → JSON (400) → body and query (400, DRF's shape
//! `{"field": ["message"]}`). What each write enforces, and where it comes from:
//!
//! - `set_usage` (§2.2, `ComponentUsageCreateRequest`): `resource` exists, belongs to the
//!   offering, and is neither `Creating` nor `Terminated` (Mastermind's own tests:
//!   `test_it_should_not_be_possible_to_submit_usage_for_pending_resource`); every `type` is a
//!   component of the offering (the message names it); `amount` is a decimal string (the
//!   contract's type) with at most 2 decimal places ("Waldur rejects >2 decimal places", §2.9),
//!   at most 18 digits before the point (`max_digits=20`), and ≥ 0; `date` (optional) is ISO 8601
//!   and not after "today" ("Cannot submit usage for future dates"); its billing period is the
//!   first of its month, or of today's without `date`; a period before today's month, for a
//!   `usage` component, by a non-staff token is 400 "… when backfilling past billing periods"
//!   (§2.2, the contract's `known_400`; `limit` and `one` components are allowed, as the message
//!   says). Set semantics (§2.2): the value for (resource, period, type) is replaced, the last
//!   write wins, and keeps the component-usage uuid made by its first set. A request is applied
//!   whole or not at all.
//! - `set_user_usages` (§2.2, `ComponentUserUsageBulkCreateRequest`): the component usage in the
//!   path exists (404); each `usage` as `amount` above; `user`, if given, is the URL of an
//!   offering user with that `username`; `date`, if given, obeys the rules above and lies in the
//!   component usage's period. Set semantics per (component usage, username).
//!
//! - `GET marketplace-offering-users/` (`offering_uuid`, `state`, `username`): the configured
//!   offering users, each `OK`, for linking a user's part (`user`) as the site agent does.
//!
//! Values are stored as Waldur's `DecimalField(decimal_places=2)` stores them and lists return
//! them: `"5"` → `"5.00"`. Lists are paginated as Waldur's DRF does: the body is the JSON array
//! of one page, `page_size` 10 unless asked, `Link: <…>; rel="first"/"prev"/"next"/"last"`
//! (absolute URLs, query parameters sorted as DRF's `replace_query_param` writes them),
//! `X-Result-Count`; a page past the end is 404 "Invalid page.". Resource `state` filters take
//! Waldur's names (`OK`, `Erred`, `Terminated`, … — py-client's
//! `MarketplaceProviderResourcesListStateItem`), repeated for several; anything else is 400.
//!
//! OIDC (contracts.md §2: the site agent's `oidc_token_url`, `oidc_client_id`,
//! `oidc_client_secret`): [`FakeWaldur::enable_oidc`] opens a token endpoint on the same server at
//! [`OIDC_TOKEN_PATH`], answering as Keycloak's `/protocol/openid-connect/token` does for one
//! confidential client with the client-credentials grant (RFC 6749 §4.4): `POST`, form-encoded
//! (else 400 `invalid_request`); `grant_type` present (400 `invalid_request`), the client by
//! `client_id` + `client_secret` in the form (`client_secret_post`) or HTTP Basic
//! (`client_secret_basic`), unknown client or wrong secret 401 `invalid_client` "Invalid client or
//! Invalid client credentials"; `grant_type` other than `client_credentials` 400
//! `unsupported_grant_type`. Success: `{access_token, expires_in, token_type: "Bearer", …}` with an
//! opaque token valid for the configured `expires_in` seconds of real time, authenticating as the
//! configured user. Tests expire every issued token at once with [`FakeWaldur::revoke_oidc_tokens`]
//! (or after so many requests, [`FakeWaldur::revoke_oidc_tokens_after`]) and count token requests in [`FakeWaldur::requests`] (path [`OIDC_TOKEN_PATH`]). The token
//! endpoint takes no faults.
//!
//! Faults (the ACTIVATE fake's [`Fault`] and [`FaultMix`]) are drawn only for requests that pass
//! every check: writes take the scripted queue first, then the seeded random mix; reads take only
//! the mix, and only with `FaultMix::on_get`. "Before" faults apply nothing; "After" faults apply
//! the write, then answer badly or not at all.
//!
//! Stricter than Waldur, on purpose (a client bug the real server would hide): a JSON number as
//! `amount`/`usage` (DRF would coerce it; a float is not exact), unknown body fields and unknown
//! query parameters (DRF ignores them: a misspelt filter would list everything) and a `user` URL
//! of another username (Mastermind stores it) are 400. Not faked: `plan_period` (400 here), JWT
//! access tokens (the fake's are opaque, checked against what it issued), OIDC discovery, scopes
//! (`scope` is taken and ignored), the single `set_user_usage`, the signed public API, the server's time zone
//! (the period is the month of `date` as written: send the first of the month at 00:00 in the
//! offering's zone), TLS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jiff::civil::Date;
use serde_json::{json, Map, Value};

pub use super::activate::{Fault, FaultKind, FaultMix, Outcome};
use super::faults::Faults;
use super::http::{percent_decode, Reply, Request, Response, Server};

/// Where the fake's OIDC token endpoint listens (see [`FakeWaldur::enable_oidc`]).
pub const OIDC_TOKEN_PATH: &str = "/oidc/token";

/// Waldur's default page size (`REST_FRAMEWORK.PAGE_SIZE`).
pub const DEFAULT_PAGE_SIZE: usize = 10;
/// The text of Waldur's refusal of a past period (what the site agent looks for).
pub const BACKFILL_REFUSAL: &str = "Service providers can only specify date for limit-based or prepaid billing \
                                    components when backfilling past billing periods.";

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
pub struct WaldurConfig {
    pub offering: Offering,
    /// Resources of this offering and of others (whose usage the offering refuses).
    pub resources: Vec<Resource>,
    pub offering_users: Vec<OfferingUser>,
    /// The static token (`Authorization: Token <token>`) and its user.
    pub token: String,
    pub username: String,
    pub staff: bool,
    /// Valid tokens of users without a role on the offering: 403.
    pub foreign_tokens: Vec<String>,
    /// "Today", `YYYY-MM-DD`: decides the current billing month.
    pub today: String,
    /// Seeds the random fault draws and the uuids.
    pub seed: u64,
    pub faults: FaultMix,
}

#[derive(Debug, Clone)]
pub struct Offering {
    /// 32 hex digits (dashes allowed; Waldur writes it without).
    pub uuid: String,
    pub name: String,
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Waldur's `type`: `cpu`, `mem`, `gres/gpu`, …
    pub type_name: String,
    pub measured_unit: String,
    pub accounting: Accounting,
}

impl Component {
    pub fn new(type_name: &str, measured_unit: &str, accounting: Accounting) -> Component {
        Component { type_name: type_name.into(), measured_unit: measured_unit.into(), accounting }
    }
}

/// The site agent's `accounting_type`, Waldur's `billing_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    Usage,
    Limit,
    One,
}

impl Accounting {
    fn as_str(self) -> &'static str {
        match self {
            Accounting::Usage => "usage",
            Accounting::Limit => "limit",
            Accounting::One => "one",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub uuid: String,
    pub name: String,
    /// The Slurm account.
    pub backend_id: String,
    pub state: ResourceState,
    pub offering_uuid: String,
}

/// A marketplace resource's states, with the names Waldur's API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceState {
    Creating,
    Ok,
    Erred,
    Updating,
    Terminating,
    Terminated,
}

const STATES: [ResourceState; 6] = [
    ResourceState::Creating,
    ResourceState::Ok,
    ResourceState::Erred,
    ResourceState::Updating,
    ResourceState::Terminating,
    ResourceState::Terminated,
];

impl ResourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceState::Creating => "Creating",
            ResourceState::Ok => "OK",
            ResourceState::Erred => "Erred",
            ResourceState::Updating => "Updating",
            ResourceState::Terminating => "Terminating",
            ResourceState::Terminated => "Terminated",
        }
    }
    /// Usage can be set (Mastermind refuses `Creating` and `Terminated`, takes `Terminating`).
    fn takes_usage(self) -> bool {
        !matches!(self, ResourceState::Creating | ResourceState::Terminated)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OfferingUser {
    pub username: String,
    /// `…/api/marketplace-offering-users/<uuid>/`, compared as a string.
    pub url: String,
}

impl WaldurConfig {
    /// One offering with cpu and mem usage components (`cpu_unit`: cpu's measured unit), a
    /// resource in state OK per account (its backend_id), a non-staff token, no faults.
    pub fn with_accounts(offering: &str, accounts: &[&str], token: &str, cpu_unit: &str, today: &str) -> WaldurConfig {
        let resources = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| Resource {
                uuid: format!("{:08x}000040008000000000000000", i + 1),
                name: format!("allocation {a}"),
                backend_id: a.to_string(),
                state: ResourceState::Ok,
                offering_uuid: offering.into(),
            })
            .collect();
        WaldurConfig {
            offering: Offering {
                uuid: offering.into(),
                name: "HPC".into(),
                components: vec![
                    Component::new("cpu", cpu_unit, Accounting::Usage),
                    Component::new("mem", "GB-Hours", Accounting::Usage),
                ],
            },
            resources,
            offering_users: vec![],
            token: token.into(),
            username: "site-agent".into(),
            staff: false,
            foreign_tokens: vec![],
            today: today.into(),
            seed: 11,
            faults: FaultMix::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What tests read

/// Every request that reached the fake as HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct WaldurRequest {
    pub method: String,
    pub path: String,
    /// Decoded query pairs in order (empty when undecodable; the answer was then 400).
    pub query: Vec<(String, String)>,
    pub body: String,
    /// An `Authorization` header was present (whatever it held).
    pub auth: bool,
    pub outcome: Outcome,
    pub fault: Option<Fault>,
}

/// Writes applied, per value (one usage item or one user usage): `changed` set a new value
/// (or the first one), `same` set the value already stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub usage_changed: u64,
    pub usage_same: u64,
    pub user_changed: u64,
    pub user_same: u64,
}

pub struct FakeWaldur {
    shared: Arc<Shared>,
    server: Server,
}

impl FakeWaldur {
    /// Starts listening on 127.0.0.1 (a free port). Panics on an unusable config, port or mix.
    pub fn start(cfg: WaldurConfig) -> FakeWaldur {
        let cfg = checked(cfg);
        let today = parse_today(&cfg.today);
        let state = State {
            today,
            staff: cfg.staff,
            resources: cfg.resources.clone(),
            faults: Faults::new(cfg.faults.clone(), cfg.seed),
            ..State::default()
        };
        let shared = Arc::new(Shared { cfg, base: OnceLock::new(), state: Mutex::new(state) });
        let s = shared.clone();
        let server =
            Server::start(Arc::new(move |req: &Request| s.handle(req))).expect("fake Waldur: bind 127.0.0.1:0");
        shared.base.set(format!("http://{}", server.addr())).expect("set once");
        FakeWaldur { shared, server }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash (the site agent's `waldur_api_url`
    /// would be this plus `/api/`).
    pub fn base_url(&self) -> String {
        self.shared.base().to_string()
    }

    /// (backend_id, "YYYY-MM", type) → the stored value, `"12.30"`.
    pub fn usages(&self) -> BTreeMap<(String, String, String), String> {
        let st = self.shared.state();
        st.usages
            .iter()
            .map(|(k, u)| ((st.backend_id(&k.resource), label(k.period), k.ctype.clone()), u.value.clone()))
            .collect()
    }

    /// (backend_id, "YYYY-MM", type, username) → the stored value.
    pub fn user_usages(&self) -> BTreeMap<(String, String, String, String), String> {
        let st = self.shared.state();
        let by_uuid: BTreeMap<&str, &UsageKey> = st.usages.iter().map(|(k, u)| (u.uuid.as_str(), k)).collect();
        st.user_usages
            .iter()
            .map(|((cu, username), u)| {
                let k = by_uuid[cu.as_str()];
                ((st.backend_id(&k.resource), label(k.period), k.ctype.clone(), username.clone()), u.value.clone())
            })
            .collect()
    }

    pub fn writes(&self) -> WriteCounts {
        self.shared.state().writes
    }

    pub fn requests(&self) -> Vec<WaldurRequest> {
        self.shared.state().requests.clone()
    }

    /// Faults for the next valid writes, one each, before any random draw.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state().faults.push(faults);
    }

    /// `n` normal answers in the scripted queue (to place a fault later in a script).
    pub fn push_pass(&self, n: usize) {
        self.shared.state().faults.push_pass(n);
    }

    pub fn set_mix(&self, mix: FaultMix) {
        self.shared.state().faults.set_mix(mix);
    }

    /// How many faults of each kind were injected (scripted and random).
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, u64> {
        self.shared.state().faults.counts()
    }

    /// Moves "today" (`YYYY-MM-DD`), e.g. into the next month.
    pub fn set_today(&self, today: &str) {
        self.shared.state().today = parse_today(today);
    }

    pub fn set_staff(&self, staff: bool) {
        self.shared.state().staff = staff;
    }

    /// Changes the state of the resource with this backend_id (e.g. terminated mid-test).
    pub fn set_resource_state(&self, backend_id: &str, state: ResourceState) {
        let mut st = self.shared.state();
        let r = st.resources.iter_mut().find(|r| r.backend_id == backend_id);
        r.unwrap_or_else(|| panic!("fake Waldur: no resource {backend_id:?}")).state = state;
    }

    /// Opens the OIDC token endpoint ([`OIDC_TOKEN_PATH`]) for one confidential client; each
    /// access token it issues authenticates as the configured user for `expires_in` seconds.
    pub fn enable_oidc(&self, client_id: &str, secret: &str, expires_in: u64) {
        self.shared.state().oidc = Some(OidcClient { id: client_id.into(), secret: secret.into(), expires_in });
    }

    /// The token endpoint's URL, `http://127.0.0.1:<port>/oidc/token`.
    pub fn oidc_token_url(&self) -> String {
        format!("{}{OIDC_TOKEN_PATH}", self.base_url())
    }

    /// How many access tokens were issued.
    pub fn oidc_issued(&self) -> usize {
        self.shared.state().issued.len()
    }

    /// Every access token issued so far stops working (expired or revoked): Waldur answers 401.
    pub fn revoke_oidc_tokens(&self) {
        for t in &mut self.shared.state().issued {
            t.revoked = true;
        }
    }

    /// After `n` more requests authenticated by an access token, every token issued so far is
    /// revoked (the `n`-th still passes): a token that stops working in the middle of a pass.
    pub fn revoke_oidc_tokens_after(&self, n: usize) {
        assert!(n > 0, "fake Waldur: revoke after at least one request");
        self.shared.state().revoke_after = Some(n);
    }

    /// Closes the port now; connection threads end within tens of milliseconds. Also on drop.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

fn checked(mut cfg: WaldurConfig) -> WaldurConfig {
    let uuid = |what: &str, s: &str| norm_uuid(s).unwrap_or_else(|| panic!("fake Waldur: {what} {s:?} is not a uuid"));
    cfg.offering.uuid = uuid("offering", &cfg.offering.uuid);
    for r in &mut cfg.resources {
        r.uuid = uuid("resource", &r.uuid);
        r.offering_uuid = uuid("offering of resource", &r.offering_uuid);
    }
    let mut types: Vec<&str> = cfg.offering.components.iter().map(|c| c.type_name.as_str()).collect();
    let mut uuids: Vec<&str> = cfg.resources.iter().map(|r| r.uuid.as_str()).collect();
    let mut accounts: Vec<&str> = cfg.resources.iter().map(|r| r.backend_id.as_str()).collect();
    for (what, v) in [("component type", &mut types), ("resource uuid", &mut uuids), ("backend_id", &mut accounts)] {
        v.sort_unstable();
        assert!(v.windows(2).all(|w| w[0] != w[1]), "fake Waldur: a {what} given twice: {v:?}");
    }
    assert!(!cfg.token.is_empty() && !cfg.foreign_tokens.contains(&cfg.token), "fake Waldur: token");
    cfg
}

fn parse_today(s: &str) -> Date {
    parse_date(s).filter(|_| s.len() == 10).unwrap_or_else(|| panic!("fake Waldur: today {s:?} is not YYYY-MM-DD"))
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    cfg: WaldurConfig,
    base: OnceLock<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    today: Date,
    staff: bool,
    resources: Vec<Resource>,
    usages: BTreeMap<UsageKey, ComponentUsage>,
    /// (component usage uuid, username) → value.
    user_usages: BTreeMap<(String, String), UserUsage>,
    writes: WriteCounts,
    next_uuid: u64,
    requests: Vec<WaldurRequest>,
    faults: Faults,
    oidc: Option<OidcClient>,
    issued: Vec<Issued>,
    /// Bearer-authenticated requests still passing before every issued token is revoked.
    revoke_after: Option<usize>,
}

/// The one confidential client of the token endpoint.
struct OidcClient {
    id: String,
    secret: String,
    expires_in: u64,
}

/// An access token the token endpoint issued.
struct Issued {
    token: String,
    expires: Instant,
    revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UsageKey {
    resource: String,
    /// The first day of the billing month.
    period: Date,
    ctype: String,
}

struct ComponentUsage {
    uuid: String,
    value: String,
    /// `date` as sent, or today at midnight UTC.
    date: String,
    description: String,
    /// Creation order, for listing.
    seq: u64,
}

struct UserUsage {
    uuid: String,
    value: String,
    user: Option<String>,
    seq: u64,
}

impl State {
    fn backend_id(&self, resource_uuid: &str) -> String {
        self.resources.iter().find(|r| r.uuid == resource_uuid).map(|r| r.backend_id.clone()).unwrap_or_default()
    }

    fn new_uuid(&mut self, seed: u64) -> (String, u64) {
        self.next_uuid += 1;
        (format!("{:08x}{:024x}", seed as u32, self.next_uuid), self.next_uuid)
    }

    fn current_month(&self) -> Date {
        self.today.first_of_month()
    }

    fn offering_of(&self, resource_uuid: &str) -> Option<&String> {
        self.resources.iter().find(|r| r.uuid == resource_uuid).map(|r| &r.offering_uuid)
    }
}

fn label(period: Date) -> String {
    format!("{:04}-{:02}", period.year(), period.month())
}

// ---------------------------------------------------------------------------------------------
// Requests: route, checks, faults

#[derive(Debug, PartialEq)]
enum Route {
    Offering(String),
    Resources,
    SetUsage,
    Usages,
    SetUserUsages(String),
    UserUsages,
    OfferingUsers,
    Me,
}

impl Route {
    fn method(&self) -> &'static str {
        match self {
            Route::SetUsage | Route::SetUserUsages(_) => "POST",
            _ => "GET",
        }
    }
}

/// Paths as Waldur routes them, trailing slash included; a uuid segment as DRF's lookup takes it.
fn route(path: &str) -> Option<Route> {
    let seg: Vec<&str> = path.strip_prefix("/api/")?.strip_suffix('/')?.split('/').collect();
    Some(match seg[..] {
        ["marketplace-provider-offerings", uuid] => Route::Offering(uuid.into()),
        ["marketplace-provider-resources"] => Route::Resources,
        ["marketplace-component-usages", "set_usage"] => Route::SetUsage,
        ["marketplace-component-usages"] => Route::Usages,
        ["marketplace-component-usages", uuid, "set_user_usages"] => Route::SetUserUsages(uuid.into()),
        ["marketplace-component-user-usages"] => Route::UserUsages,
        ["marketplace-offering-users"] => Route::OfferingUsers,
        ["users", "me"] => Route::Me,
        _ => return None,
    })
}

/// A request that passed every check: a read's answer, or a write to apply.
enum Ready {
    Read(Response),
    Write(Write),
}

enum Write {
    Usage(UsageWrite),
    UserUsage(UserUsageWrite),
}

struct UsageWrite {
    resource: String,
    period: Date,
    date: String,
    /// (type, canonical amount, description), in request order.
    items: Vec<(String, String, String)>,
    echo: Value,
}

struct UserUsageWrite {
    cu: String,
    /// (username, canonical usage, user URL).
    items: Vec<(String, String, Option<String>)>,
    echo: Value,
}

fn detail(status: u16, text: &str) -> Response {
    Response::json(status, &json!({ "detail": text }))
}

/// DRF's validation error shape.
fn invalid(field: &str, text: &str) -> Response {
    Response::json(400, &json!({ field: [text] }))
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base(&self) -> &str {
        self.base.get().map_or("", String::as_str)
    }

    fn handle(&self, req: &Request) -> Reply {
        let (reply, fault) = self.answer(req);
        let outcome = match &reply {
            Reply::Drop => Outcome::Dropped,
            Reply::Send { response, .. } => Outcome::Status(response.status),
        };
        self.state().requests.push(WaldurRequest {
            method: req.method.clone(),
            path: req.path().to_string(),
            query: req.query().unwrap_or_default(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            auth: req.header("Authorization").is_some(),
            outcome,
            fault,
        });
        reply
    }

    fn answer(&self, req: &Request) -> (Reply, Option<Fault>) {
        let now = |r: Response| Reply::Send { delay: Duration::ZERO, response: r };
        if req.path() == OIDC_TOKEN_PATH && self.state().oidc.is_some() {
            return (now(self.token_endpoint(req)), None);
        }
        let ready = match self.check(req) {
            Ok(r) => r,
            Err(refusal) => return (now(refusal), None),
        };
        let fault = self.draw(matches!(ready, Ready::Write(_)));
        match &fault {
            Some(Fault::Status5xxBefore(c)) => return (now(detail(*c, "injected fault")), fault),
            Some(Fault::TooMany { retry_after_secs: s }) => {
                let r =
                    detail(429, "Request was throttled (injected fault).").with_header("Retry-After", &s.to_string());
                return (now(r), fault);
            }
            Some(Fault::DropBefore) => return (Reply::Drop, fault),
            _ => {}
        }
        let response = match ready {
            Ready::Read(r) => r,
            Ready::Write(w) => self.apply(w),
        };
        let reply = match &fault {
            Some(Fault::Status5xxAfter(c)) => now(detail(*c, "injected fault (the write was applied)")),
            Some(Fault::DropAfter) => Reply::Drop,
            Some(Fault::TimeoutAfter { secs }) => Reply::Send { delay: Duration::from_secs(*secs), response },
            Some(Fault::Slow { millis }) => Reply::Send { delay: Duration::from_millis(*millis), response },
            _ => now(response),
        };
        (reply, fault)
    }

    /// Every check of the module doc, in its order; `Err` is the refusal.
    fn check(&self, req: &Request) -> Result<Ready, Response> {
        let route = route(req.path()).ok_or_else(|| detail(404, "Not found."))?;
        self.check_auth(req)?;
        if req.method != route.method() {
            let text = format!("Method \"{}\" not allowed.", req.method);
            return Err(detail(405, &text).with_header("Allow", route.method()));
        }
        match route {
            Route::Offering(uuid) => self.offering(&uuid).map(Ready::Read),
            Route::Resources => self.list_resources(req).map(Ready::Read),
            Route::Usages => self.list_usages(req).map(Ready::Read),
            Route::UserUsages => self.list_user_usages(req).map(Ready::Read),
            Route::OfferingUsers => self.list_offering_users(req).map(Ready::Read),
            Route::Me => Ok(Ready::Read(self.me())),
            Route::SetUsage => {
                let body = json_body(req)?;
                self.check_set_usage(&body).map(|w| Ready::Write(Write::Usage(w)))
            }
            Route::SetUserUsages(cu) => {
                let key = self.component_usage(&cu).ok_or_else(|| detail(404, "Not found."))?;
                let body = json_body(req)?;
                self.check_set_user_usages(&key, &body).map(|w| Ready::Write(Write::UserUsage(w)))
            }
        }
    }

    /// DRF `TokenAuthentication`: 401 unless `Token <known>`; 403 for a user without a role.
    fn check_auth(&self, req: &Request) -> Result<(), Response> {
        let unauthorized = |text: &str| detail(401, text).with_header("WWW-Authenticate", "Token");
        let h =
            req.header("Authorization").ok_or_else(|| unauthorized("Authentication credentials were not provided."))?;
        let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
        let mut st = self.state();
        if scheme == "Bearer" && st.oidc.is_some() {
            let token = token.trim();
            let valid = st.issued.iter().any(|t| t.token == token && !t.revoked && Instant::now() < t.expires);
            return if valid {
                if let Some(n) = st.revoke_after.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        st.revoke_after = None;
                        st.issued.iter_mut().for_each(|t| t.revoked = true);
                    }
                }
                Ok(())
            } else {
                Err(detail(401, "Invalid token.").with_header("WWW-Authenticate", "Bearer"))
            };
        }
        drop(st);
        if scheme != "Token" {
            return Err(unauthorized("Authentication credentials were not provided."));
        }
        let token = token.trim();
        if token == self.cfg.token {
            Ok(())
        } else if self.cfg.foreign_tokens.iter().any(|t| t == token) {
            Err(detail(403, "You do not have permission to perform this action."))
        } else {
            Err(unauthorized("Invalid token."))
        }
    }

    /// Keycloak's token endpoint for the client-credentials grant (module doc).
    fn token_endpoint(&self, req: &Request) -> Response {
        let oauth = |status: u16, error: &str, description: &str| {
            Response::json(status, &json!({ "error": error, "error_description": description }))
        };
        if req.method != "POST" {
            return oauth(405, "invalid_request", "HTTP 405 Method Not Allowed").with_header("Allow", "POST");
        }
        let ct = req.header("Content-Type").unwrap_or("");
        let form =
            if ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                decode_form(&req.body)
            } else {
                Some(Vec::new())
            };
        let Some(form) = form else { return oauth(400, "invalid_request", "Invalid form encoding") };
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(grant) = field("grant_type") else {
            return oauth(400, "invalid_request", "Missing form parameter: grant_type");
        };
        // client_secret_basic: base64(urlencode(id) ":" urlencode(secret)) (RFC 6749 §2.3.1).
        let basic = req.header("Authorization").and_then(|h| h.strip_prefix("Basic ")).and_then(|b| {
            let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
            let (id, secret) =
                String::from_utf8(raw).ok()?.split_once(':').map(|(a, b)| (a.to_string(), b.to_string()))?;
            Some((percent_decode(&id, true)?, percent_decode(&secret, true)?))
        });
        let (id, secret) = match basic {
            Some((id, secret)) => (Some(id), Some(secret)),
            None => (field("client_id").map(str::to_string), field("client_secret").map(str::to_string)),
        };
        let mut st = self.state();
        let client = st.oidc.as_ref().expect("checked by the caller");
        if id.as_deref() != Some(client.id.as_str()) || secret.as_deref() != Some(client.secret.as_str()) {
            return oauth(401, "invalid_client", "Invalid client or Invalid client credentials");
        }
        if grant != "client_credentials" {
            return oauth(400, "unsupported_grant_type", "Unsupported grant_type");
        }
        let expires_in = client.expires_in;
        let n = st.issued.len() + 1;
        let token = format!("at-{:08x}-{n:06}", self.cfg.seed as u32);
        st.issued.push(Issued {
            token: token.clone(),
            expires: Instant::now() + Duration::from_secs(expires_in),
            revoked: false,
        });
        Response::json(
            200,
            &json!({
                "access_token": token,
                "expires_in": expires_in,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }),
        )
    }

    fn draw(&self, is_write: bool) -> Option<Fault> {
        self.state().faults.draw(is_write)
    }
}

/// `application/x-www-form-urlencoded` pairs; `None` when undecodable.
fn decode_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

fn json_body(req: &Request) -> Result<Map<String, Value>, Response> {
    let ct = req.header("Content-Type").unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(detail(415, &format!("Unsupported media type \"{ct}\" in request.")));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("non_field_errors", "Invalid data. Expected a dictionary.")),
        Err(e) => Err(detail(400, &format!("JSON parse error - {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

impl Shared {
    fn offering(&self, uuid: &str) -> Result<Response, Response> {
        if norm_uuid(uuid).as_deref() != Some(&self.cfg.offering.uuid) {
            return Err(detail(404, "Not found."));
        }
        let o = &self.cfg.offering;
        let components: Vec<Value> = o
            .components
            .iter()
            .map(|c| {
                json!({"type": c.type_name, "name": c.type_name, "measured_unit": c.measured_unit,
                       "billing_type": c.accounting.as_str()})
            })
            .collect();
        let url = format!("{}/api/marketplace-provider-offerings/{}/", self.base(), o.uuid);
        Ok(Response::json(200, &json!({"uuid": o.uuid, "url": url, "name": o.name, "components": components})))
    }

    fn me(&self) -> Response {
        let staff = self.state().staff;
        Response::json(200, &json!({"username": self.cfg.username, "is_staff": staff}))
    }

    fn list_resources(&self, req: &Request) -> Result<Response, Response> {
        let q = Query::parse(req, &["offering_uuid", "state", "backend_id"])?;
        let offerings = q.uuids("offering_uuid")?;
        let states = q.states()?;
        let backend_id = q.last("backend_id");
        let st = self.state();
        let rows: Vec<Value> = st
            .resources
            .iter()
            .filter(|r| offerings.is_empty() || offerings.contains(&r.offering_uuid))
            .filter(|r| states.is_empty() || states.contains(&r.state))
            .filter(|r| backend_id.map_or(true, |b| r.backend_id == b))
            .map(|r| self.resource_json(r))
            .collect();
        drop(st);
        self.page(req, &q, rows)
    }

    fn resource_json(&self, r: &Resource) -> Value {
        json!({"uuid": r.uuid, "url": format!("{}/api/marketplace-provider-resources/{}/", self.base(), r.uuid),
               "name": r.name, "backend_id": r.backend_id, "state": r.state.as_str(),
               "offering_uuid": r.offering_uuid,
               "offering": format!("{}/api/marketplace-provider-offerings/{}/", self.base(), r.offering_uuid)})
    }

    fn list_usages(&self, req: &Request) -> Result<Response, Response> {
        let q = Query::parse(req, &["resource_uuid", "offering_uuid", "billing_period", "type"])?;
        let resource = q.uuid("resource_uuid")?;
        let offerings = q.uuids("offering_uuid")?;
        let period = q.date("billing_period")?;
        let ctype = q.last("type");
        let st = self.state();
        let mut rows: Vec<(u64, Value)> = st
            .usages
            .iter()
            .filter(|(k, _)| resource.as_ref().map_or(true, |r| &k.resource == r))
            .filter(|(k, _)| offerings.is_empty() || st.offering_of(&k.resource).is_some_and(|o| offerings.contains(o)))
            .filter(|(k, _)| period.map_or(true, |p| k.period == p))
            .filter(|(k, _)| ctype.map_or(true, |t| k.ctype == t))
            .map(|(k, u)| {
                let row = json!({"uuid": u.uuid, "type": k.ctype, "usage": u.value,
                                 "billing_period": k.period.to_string(), "date": u.date,
                                 "description": u.description, "resource_uuid": k.resource});
                (u.seq, row)
            })
            .collect();
        drop(st);
        rows.sort_by_key(|(seq, _)| *seq);
        self.page(req, &q, rows.into_iter().map(|(_, v)| v).collect())
    }

    fn list_user_usages(&self, req: &Request) -> Result<Response, Response> {
        let q = Query::parse(
            req,
            &["resource_uuid", "component_usage_billing_period", "component_usage_uuid", "username"],
        )?;
        let resource = q.uuid("resource_uuid")?;
        let period = q.date("component_usage_billing_period")?;
        let cu = q.uuid("component_usage_uuid")?;
        let username = q.last("username");
        let st = self.state();
        let by_uuid: BTreeMap<&str, &UsageKey> = st.usages.iter().map(|(k, u)| (u.uuid.as_str(), k)).collect();
        let mut rows: Vec<(u64, Value)> = st
            .user_usages
            .iter()
            .map(|((cu_uuid, name), u)| (by_uuid[cu_uuid.as_str()], cu_uuid, name, u))
            .filter(|(k, ..)| resource.as_ref().map_or(true, |r| &k.resource == r))
            .filter(|(k, ..)| period.map_or(true, |p| k.period == p))
            .filter(|(_, cu_uuid, ..)| cu.as_ref().map_or(true, |c| c == *cu_uuid))
            .filter(|(_, _, name, _)| username.map_or(true, |n| n == name.as_str()))
            .map(|(k, cu_uuid, name, u)| {
                let row = json!({"uuid": u.uuid, "username": name, "usage": u.value, "user": u.user,
                                 "component_type": k.ctype, "billing_period": k.period.to_string(),
                                 "component_usage_uuid": cu_uuid, "resource_uuid": k.resource});
                (u.seq, row)
            })
            .collect();
        drop(st);
        rows.sort_by_key(|(seq, _)| *seq);
        self.page(req, &q, rows.into_iter().map(|(_, v)| v).collect())
    }

    /// The offering's users (`GET marketplace-offering-users/`): every one is `OK` here.
    fn list_offering_users(&self, req: &Request) -> Result<Response, Response> {
        let q = Query::parse(req, &["offering_uuid", "state", "username"])?;
        let offerings = q.uuids("offering_uuid")?;
        let username = q.last("username");
        let states: Vec<&str> = q.all("state");
        if let Some(bad) = states.iter().find(|s| !["OK", "Requested", "Creating", "Deleting", "Deleted"].contains(s)) {
            return Err(invalid(
                "state",
                &format!("Select a valid choice. {bad} is not one of the available choices."),
            ));
        }
        let rows = self
            .cfg
            .offering_users
            .iter()
            .filter(|_| offerings.is_empty() || offerings.contains(&self.cfg.offering.uuid))
            .filter(|_| states.is_empty() || states.contains(&"OK"))
            .filter(|u| username.map_or(true, |n| n == u.username))
            .map(|u| {
                let uuid = u.url.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
                json!({"uuid": uuid, "url": u.url, "username": u.username, "state": "OK",
                       "offering_uuid": self.cfg.offering.uuid})
            })
            .collect();
        self.page(req, &q, rows)
    }

    /// One page of `rows` (after `field=` selection), as Waldur's link-header pagination.
    fn page(&self, req: &Request, q: &Query, rows: Vec<Value>) -> Result<Response, Response> {
        let total = rows.len();
        let size = q.last("page_size").and_then(|s| s.parse::<usize>().ok()).filter(|n| *n > 0);
        let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
        let pages = total.div_ceil(size).max(1);
        let page = match q.last("page") {
            None => 1,
            Some("last") => pages,
            Some(p) => {
                p.parse().ok().filter(|p| (1..=pages).contains(p)).ok_or_else(|| detail(404, "Invalid page."))?
            }
        };
        let fields = q.all("field");
        let body: Vec<Value> =
            rows.into_iter().skip((page - 1) * size).take(size).map(|r| select(r, &fields)).collect();
        Ok(Response::json(200, &Value::Array(body))
            .with_header("X-Result-Count", &total.to_string())
            .with_header("Link", &self.links(req.path(), q, page, pages)))
    }

    /// `<first>; rel="first", [<prev>; rel="prev", ][<next>; rel="next", ]<last>; rel="last"`.
    fn links(&self, path: &str, q: &Query, page: usize, pages: usize) -> String {
        let link = |n: usize, rel: &str| format!("<{}>; rel=\"{rel}\"", self.page_url(path, q, n));
        let mut links = vec![link(1, "first")];
        if page > 1 {
            links.push(link(page - 1, "prev"));
        }
        if page < pages {
            links.push(link(page + 1, "next"));
        }
        links.push(link(pages, "last"));
        links.join(", ")
    }

    /// This request's URL with `page=n`, parameters sorted as DRF's `replace_query_param` does.
    fn page_url(&self, path: &str, q: &Query, n: usize) -> String {
        let mut pairs: Vec<(String, String)> = q.pairs.iter().filter(|(k, _)| k != "page").cloned().collect();
        pairs.push(("page".into(), n.to_string()));
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v))).collect();
        format!("{}{}?{}", self.base(), path, query.join("&"))
    }
}

/// Keeps only the `field=` keys of a row (all of them without any).
fn select(row: Value, fields: &[&str]) -> Value {
    match row {
        Value::Object(m) if !fields.is_empty() => {
            Value::Object(m.into_iter().filter(|(k, _)| fields.contains(&k.as_str())).collect())
        }
        other => other,
    }
}

/// A list's query: the endpoint's filters plus `page`, `page_size`, `field`; anything else is 400.
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(req: &Request, filters: &[&str]) -> Result<Query, Response> {
        let pairs = req.query().map_err(|e| detail(400, &e))?;
        if let Some((k, _)) = pairs
            .iter()
            .find(|(k, _)| !filters.contains(&k.as_str()) && !["page", "page_size", "field"].contains(&k.as_str()))
        {
            return Err(detail(
                400,
                &format!("query parameter {k:?} is not a filter this fake implements ({filters:?})"),
            ));
        }
        Ok(Query { pairs })
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }

    /// Django's `QueryDict.get`: the last value.
    fn last(&self, k: &str) -> Option<&str> {
        self.all(k).last().copied()
    }

    fn uuid(&self, k: &str) -> Result<Option<String>, Response> {
        self.last(k).map(|v| norm_uuid(v).ok_or_else(|| invalid(k, "Enter a valid UUID."))).transpose()
    }

    fn uuids(&self, k: &str) -> Result<Vec<String>, Response> {
        self.all(k).into_iter().map(|v| norm_uuid(v).ok_or_else(|| invalid(k, "Enter a valid UUID."))).collect()
    }

    fn date(&self, k: &str) -> Result<Option<Date>, Response> {
        self.last(k)
            .map(|v| parse_date(v).filter(|_| v.len() == 10).ok_or_else(|| invalid(k, "Enter a valid date.")))
            .transpose()
    }

    fn states(&self) -> Result<Vec<ResourceState>, Response> {
        self.all("state")
            .into_iter()
            .map(|v| {
                STATES.iter().copied().find(|s| s.as_str() == v).ok_or_else(|| {
                    invalid("state", &format!("Select a valid choice. {v} is not one of the available choices."))
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Writes: checked whole (nothing applied on a refusal), then applied

const USAGE_FIELDS: [&str; 4] = ["usages", "resource", "date", "plan_period"];
const USAGE_ITEM_FIELDS: [&str; 5] = ["type", "amount", "description", "missing_usage_policy", "recurring"];
const USER_USAGE_FIELDS: [&str; 1] = ["usages"];
const USER_USAGE_ITEM_FIELDS: [&str; 4] = ["username", "usage", "user", "date"];

impl Shared {
    fn check_set_usage(&self, body: &Map<String, Value>) -> Result<UsageWrite, Response> {
        known_fields(body, "", &USAGE_FIELDS)?;
        if body.contains_key("plan_period") {
            return Err(invalid("plan_period", "plan_period is not modelled by this fake: send resource"));
        }
        let st = self.state();
        let resource = self.usable_resource(&st, body.get("resource"))?;
        let (period, date) = period_of(&st, body.get("date"))?;
        let mut items = Vec::new();
        for (i, item) in objects(body, "usages")?.iter().enumerate() {
            known_fields(item, &format!("usages[{i}]."), &USAGE_ITEM_FIELDS)?;
            let ctype = string(item, "type")
                .ok_or_else(|| invalid("usages", &format!("usages[{i}].type: a string is required")))?;
            let component = self.component(ctype)?;
            let amount =
                decimal(item.get("amount")).map_err(|e| invalid("usages", &format!("usages[{i}].amount: {e}")))?;
            check_optional_item_fields(item, i)?;
            if period < st.current_month() && !st.staff && component.accounting == Accounting::Usage {
                return Err(invalid("date", BACKFILL_REFUSAL));
            }
            let description = string(item, "description").unwrap_or_default().to_string();
            items.push((ctype.to_string(), amount, description));
        }
        Ok(UsageWrite { resource, period, date, items, echo: Value::Object(body.clone()) })
    }

    /// The uuid of the resource named by `resource`, if usage can be set on it.
    fn usable_resource(&self, st: &State, v: Option<&Value>) -> Result<String, Response> {
        let Some(Value::String(given)) = v else {
            return Err(invalid("resource", "This field is required (a resource uuid)."));
        };
        let missing = || invalid("resource", &format!("Object with uuid={given} does not exist."));
        let uuid = norm_uuid(given).ok_or_else(missing)?;
        let r = st.resources.iter().find(|r| r.uuid == uuid).ok_or_else(missing)?;
        if r.offering_uuid != self.cfg.offering.uuid {
            let text = format!(
                "Resource {} belongs to offering {}, not to {}.",
                r.uuid, r.offering_uuid, self.cfg.offering.uuid
            );
            return Err(invalid("resource", &text));
        }
        if !r.state.takes_usage() {
            let text = format!("Usage cannot be submitted for resource {} in state {}.", r.uuid, r.state.as_str());
            return Err(invalid("non_field_errors", &text));
        }
        Ok(uuid)
    }

    fn component(&self, ctype: &str) -> Result<&Component, Response> {
        self.cfg.offering.components.iter().find(|c| c.type_name == ctype).ok_or_else(|| {
            invalid("usages", &format!("Component \"{ctype}\" is not found in offering {}.", self.cfg.offering.uuid))
        })
    }

    /// The key and uuid of the component usage with this uuid.
    fn component_usage(&self, uuid: &str) -> Option<(UsageKey, String)> {
        let uuid = norm_uuid(uuid)?;
        let st = self.state();
        st.usages.iter().find(|(_, u)| u.uuid == uuid).map(|(k, u)| (k.clone(), u.uuid.clone()))
    }

    fn check_set_user_usages(
        &self,
        cu: &(UsageKey, String),
        body: &Map<String, Value>,
    ) -> Result<UserUsageWrite, Response> {
        let (key, cu_uuid) = cu;
        known_fields(body, "", &USER_USAGE_FIELDS)?;
        let st = self.state();
        let accounting = self.component(&key.ctype)?.accounting;
        let mut items = Vec::new();
        for (i, item) in objects(body, "usages")?.iter().enumerate() {
            known_fields(item, &format!("usages[{i}]."), &USER_USAGE_ITEM_FIELDS)?;
            let username = string(item, "username")
                .filter(|u| !u.is_empty())
                .ok_or_else(|| invalid("usages", &format!("usages[{i}].username: a non-empty string is required")))?;
            let usage =
                decimal(item.get("usage")).map_err(|e| invalid("usages", &format!("usages[{i}].usage: {e}")))?;
            let user = self
                .offering_user(item.get("user"), username)
                .map_err(|e| invalid("user", &format!("usages[{i}].user: {e}")))?;
            if item.get("date").is_some_and(|d| !d.is_null()) {
                let (period, _) = period_of(&st, item.get("date"))?;
                if period != key.period {
                    let text = format!(
                        "usages[{i}].date: in {}, but component usage {cu_uuid} is of {} (this fake keeps user usages on their period's component usage)",
                        label(period),
                        label(key.period)
                    );
                    return Err(invalid("date", &text));
                }
                if period < st.current_month() && !st.staff && accounting == Accounting::Usage {
                    return Err(invalid("date", BACKFILL_REFUSAL));
                }
            }
            items.push((username.to_string(), usage, user));
        }
        Ok(UserUsageWrite { cu: cu_uuid.clone(), items, echo: Value::Object(body.clone()) })
    }

    /// `user`: absent/null, or the URL of an offering user with this username.
    fn offering_user(&self, v: Option<&Value>, username: &str) -> Result<Option<String>, String> {
        let url = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s,
            Some(other) => return Err(format!("a URL string is expected, got {other}")),
        };
        match self.cfg.offering_users.iter().find(|u| &u.url == url) {
            None => Err(format!("Invalid hyperlink - Object does not exist: {url}")),
            Some(u) if u.username != username => {
                Err(format!("{url} is the offering user {:?}, not {username:?}", u.username))
            }
            Some(_) => Ok(Some(url.clone())),
        }
    }

    fn apply(&self, w: Write) -> Response {
        let mut st = self.state();
        match w {
            Write::Usage(u) => {
                for (ctype, value, description) in u.items {
                    let key = UsageKey { resource: u.resource.clone(), period: u.period, ctype };
                    let changed = set_usage(&mut st, self.cfg.seed, key, value, u.date.clone(), description);
                    let w = &mut st.writes;
                    *if changed { &mut w.usage_changed } else { &mut w.usage_same } += 1;
                }
                Response::json(201, &u.echo)
            }
            Write::UserUsage(u) => {
                for (username, value, user) in u.items {
                    let changed = set_user_usage(&mut st, self.cfg.seed, (u.cu.clone(), username), value, user);
                    let w = &mut st.writes;
                    *if changed { &mut w.user_changed } else { &mut w.user_same } += 1;
                }
                Response::json(201, &u.echo)
            }
        }
    }
}

/// Sets one component usage (made, with its uuid, on the first set); true when the value changed.
fn set_usage(st: &mut State, seed: u64, key: UsageKey, value: String, date: String, description: String) -> bool {
    if let Some(cu) = st.usages.get_mut(&key) {
        let changed = cu.value != value;
        (cu.value, cu.date, cu.description) = (value, date, description);
        return changed;
    }
    let (uuid, seq) = st.new_uuid(seed);
    st.usages.insert(key, ComponentUsage { uuid, value, date, description, seq });
    true
}

/// Sets one user's usage on a component usage; true when the value changed.
fn set_user_usage(st: &mut State, seed: u64, key: (String, String), value: String, user: Option<String>) -> bool {
    if let Some(uu) = st.user_usages.get_mut(&key) {
        let changed = uu.value != value;
        (uu.value, uu.user) = (value, user);
        return changed;
    }
    let (uuid, seq) = st.new_uuid(seed);
    st.user_usages.insert(key, UserUsage { uuid, value, user, seq });
    true
}

/// The billing period (first of the month) of `date` as written, or of today without it; and
/// the date as stored. Future dates are refused.
fn period_of(st: &State, v: Option<&Value>) -> Result<(Date, String), Response> {
    let s = match v {
        None | Some(Value::Null) => return Ok((st.current_month(), format!("{}T00:00:00Z", st.today))),
        Some(Value::String(s)) => s,
        Some(other) => return Err(invalid("date", &format!("Datetime has wrong format ({other})."))),
    };
    let d = parse_when(s).ok_or_else(|| {
        invalid("date", "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
    })?;
    if d > st.today {
        return Err(invalid("date", "Cannot submit usage for future dates."));
    }
    Ok((d.first_of_month(), s.clone()))
}

/// The objects of the list `body[field]` (required, may be empty).
fn objects<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Vec<&'a Map<String, Value>>, Response> {
    let Some(Value::Array(items)) = body.get(field) else {
        return Err(invalid(field, "This field is required (a list)."));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_object().ok_or_else(|| invalid(field, &format!("{field}[{i}]: Invalid data. Expected a dictionary.")))
        })
        .collect()
}

fn string<'a>(obj: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    obj.get(k).and_then(Value::as_str)
}

fn known_fields(obj: &Map<String, Value>, prefix: &str, allowed: &[&str]) -> Result<(), Response> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(invalid(
            k,
            &format!("{prefix}{k}: not a field of this request (allowed: {allowed:?}; Waldur ignores it, this fake refuses it)"),
        )),
    }
}

/// `description` a string, `missing_usage_policy` none|reuse|zero, `recurring` a boolean or null.
fn check_optional_item_fields(item: &Map<String, Value>, i: usize) -> Result<(), Response> {
    let bad = |k: &str, want: &str| invalid("usages", &format!("usages[{i}].{k}: {want}"));
    match item.get("description") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(bad("description", "a string is expected")),
    }
    match item.get("missing_usage_policy").map(Value::as_str) {
        None | Some(Some("none" | "reuse" | "zero")) => {}
        Some(_) => return Err(bad("missing_usage_policy", "one of none, reuse, zero")),
    }
    match item.get("recurring") {
        None | Some(Value::Bool(_) | Value::Null) => Ok(()),
        Some(_) => Err(bad("recurring", "a boolean or null")),
    }
}

/// Waldur's `DecimalField(max_digits=20, decimal_places=2)` on a decimal string, ≥ 0; the value
/// as Waldur stores and returns it (`"5"` → `"5.00"`, `".5"` → `"0.50"`).
fn decimal(v: Option<&Value>) -> Result<String, String> {
    let s = match v {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Number(n)) => {
            return Err(format!("a decimal string is expected (the contract's type), got the JSON number {n}"))
        }
        None | Some(Value::Null) => return Err("This field is required.".into()),
        Some(other) => return Err(format!("A valid number is required, got {other}.")),
    };
    let (negative, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(format!("A valid number is required, got {s:?}."));
    }
    if frac.len() > 2 {
        return Err("Ensure that there are no more than 2 decimal places.".into());
    }
    let int = int.trim_start_matches('0');
    if int.len() > 18 {
        return Err("Ensure that there are no more than 18 digits before the decimal point.".into());
    }
    if negative && !(int.is_empty() && frac.bytes().all(|c| c == b'0')) {
        return Err("Ensure this value is greater than or equal to 0.".into());
    }
    Ok(format!("{}.{frac:0<2}", if int.is_empty() { "0" } else { int }))
}

// ---------------------------------------------------------------------------------------------
// Small parsers and encoders

/// A uuid as Python's `uuid.UUID` reads it (dashes anywhere), as Waldur writes it: 32 lowercase hex.
fn norm_uuid(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then(|| hex.to_ascii_lowercase())
}

/// The calendar date of the first 10 characters, `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes().get(..10)?;
    let shape = b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    let num = |r: std::ops::Range<usize>| s[r].parse::<i16>().ok();
    if !shape {
        return None;
    }
    Date::new(num(0..4)?, num(5..7)? as i8, num(8..10)? as i8).ok()
}

/// The calendar date, as written, of `YYYY-MM-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]` (ISO 8601 as DRF's
/// `DateTimeField` takes it; the date alone is midnight).
fn parse_when(s: &str) -> Option<Date> {
    let date = parse_date(s)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(date);
    }
    let b = rest.strip_prefix('T')?.as_bytes();
    let two = |i: usize, max: u8| -> Option<()> {
        let d = b.get(i..i + 2)?;
        (d.iter().all(u8::is_ascii_digit) && (d[0] - b'0') * 10 + (d[1] - b'0') <= max).then_some(())
    };
    two(0, 23)?;
    (b.get(2) == Some(&b':')).then_some(())?;
    two(3, 59)?;
    let mut i = 5;
    if b.get(i) == Some(&b':') {
        two(i + 1, 59)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            (1..=9).contains(&n).then_some(())?;
            i += 1 + n;
        }
    }
    match &b[i..] {
        b"" | b"Z" => Some(date),
        [b'+' | b'-', ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            two(i + 1, 23)?;
            two(i + 4, 59)?;
            Some(date)
        }
        _ => None,
    }
}

/// Python's `quote_plus` (what DRF's `replace_query_param` writes): unreserved bytes kept, a
/// space as `+`, everything else `%XX`.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(c as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}
