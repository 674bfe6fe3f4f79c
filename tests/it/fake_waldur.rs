//! The Waldur fake itself: it refuses what Waldur refuses (token auth, amounts beyond 2 decimals,
//! unknown components and resources, terminated resources, past periods for non-staff), sets
//! values with last-write-wins, paginates as Waldur does, and injects each fault as documented.
//! The client is reqwest's blocking client without a connection pool (no proxy, no reuse, so no
//! retry of its own), as the sink will use it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fakes::waldur::{
    Accounting, Component, FakeWaldur, Fault, FaultKind, FaultMix, Offering, OfferingUser, Outcome, Resource,
    ResourceState, WaldurConfig, WaldurRequest, WriteCounts, BACKFILL_REFUSAL, DEFAULT_PAGE_SIZE, OIDC_TOKEN_PATH,
};

const TOKEN: &str = "tok-site-agent";
const STRANGER: &str = "tok-stranger";
const OFFERING: &str = "5d4e0f2a-7c3b-4e1d-9a8b-0c1d2e3f4a5b";
const OTHER_OFFERING: &str = "99999999999949999999999999999999";
const SET_USAGE: &str = "/api/marketplace-component-usages/set_usage/";
const USAGES: &str = "/api/marketplace-component-usages/";
const USER_USAGES: &str = "/api/marketplace-component-user-usages/";
const RESOURCES: &str = "/api/marketplace-provider-resources/";

/// A resource uuid, written with dashes (the fake answers without).
fn uuid(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

fn hex(n: u32) -> String {
    uuid(n).replace('-', "")
}

fn resource(n: u32, backend_id: &str, state: ResourceState) -> Resource {
    Resource {
        uuid: uuid(n),
        name: format!("allocation {backend_id}"),
        backend_id: backend_id.into(),
        state,
        offering_uuid: OFFERING.into(),
    }
}

fn user_url(name: &str) -> String {
    format!("https://waldur.example.com/api/marketplace-offering-users/{name}0000000000000000000000000000/")
}

/// cpu, mem and gres/gpu by usage, storage by limit, cores prepaid; acct-a … in every state, one of another offering.
fn config() -> WaldurConfig {
    let c = |t: &str, unit: &str, a: Accounting| Component::new(t, unit, a);
    WaldurConfig {
        offering: Offering {
            uuid: OFFERING.into(),
            name: "HPC".into(),
            components: vec![
                c("cpu", "k-Hours", Accounting::Usage),
                c("mem", "gb-Hours", Accounting::Usage),
                c("gres/gpu", "GPU-Minutes", Accounting::Usage),
                c("storage", "TB", Accounting::Limit),
                c("cores", "cores", Accounting::One),
            ],
        },
        resources: vec![
            resource(1, "acct-a", ResourceState::Ok),
            resource(2, "acct-b", ResourceState::Erred),
            resource(3, "acct-gone", ResourceState::Terminated),
            resource(4, "acct-new", ResourceState::Creating),
            resource(5, "acct-ending", ResourceState::Terminating),
            Resource { offering_uuid: OTHER_OFFERING.into(), ..resource(6, "acct-elsewhere", ResourceState::Ok) },
        ],
        offering_users: ["alice", "bob"]
            .iter()
            .map(|u| OfferingUser { username: u.to_string(), url: user_url(u) })
            .collect(),
        token: TOKEN.into(),
        username: "site-agent".into(),
        staff: false,
        foreign_tokens: vec![STRANGER.into()],
        today: "2026-12-04".into(),
        seed: 3,
        faults: FaultMix::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// A plain client

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The `rel` URL of the `Link` header.
    fn link(&self, rel: &str) -> Option<String> {
        let tail = format!("; rel=\"{rel}\"");
        self.header("Link")?
            .split(", ")
            .find_map(|l| l.strip_suffix(&tail)?.strip_prefix('<')?.strip_suffix('>').map(str::to_string))
    }
}

fn http(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(timeout).build().unwrap()
}

/// One request; `auth` is the whole `Authorization` header.
fn send(
    f: &FakeWaldur,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<Resp, reqwest::Error> {
    send_with(&http(Duration::from_secs(10)), f, method, target, auth, body)
}

fn send_with(
    c: &reqwest::blocking::Client,
    f: &FakeWaldur,
    method: &str,
    target: &str,
    auth: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<Resp, reqwest::Error> {
    let url = if target.starts_with("http") { target.to_string() } else { format!("{}{target}", f.base_url()) };
    let mut rb = c.request(method.parse().unwrap(), url);
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    if let Some((content_type, bytes)) = body {
        rb = rb.header("Content-Type", content_type).body(bytes.to_vec());
    }
    let r = rb.send()?;
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    Ok(Resp { status, headers, text: r.text()? })
}

fn token() -> String {
    format!("Token {TOKEN}")
}

fn get(f: &FakeWaldur, target: &str) -> Resp {
    send(f, "GET", target, Some(&token()), None).unwrap()
}

fn post(f: &FakeWaldur, target: &str, body: &Value) -> Resp {
    send(f, "POST", target, Some(&token()), Some(("application/json", body.to_string().as_bytes()))).unwrap()
}

/// `set_usage` of (type, amount) pairs on resource `n`, with `date` unless `None`.
fn set_usage(f: &FakeWaldur, n: u32, date: Option<&str>, usages: &[(&str, &str)]) -> Resp {
    post(f, SET_USAGE, &usage_body(n, date, usages))
}

fn usage_body(n: u32, date: Option<&str>, usages: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = usages.iter().map(|(t, a)| json!({"type": t, "amount": a})).collect();
    let mut body = json!({"usages": items, "resource": uuid(n)});
    if let Some(d) = date {
        body["date"] = json!(d);
    }
    body
}

fn key(account: &str, month: &str, ctype: &str) -> (String, String, String) {
    (account.into(), month.into(), ctype.into())
}

/// The component usage uuid of (resource `n`, period, type), from the list endpoint.
fn cu_uuid(f: &FakeWaldur, n: u32, period: &str, ctype: &str) -> String {
    let r = get(f, &format!("{USAGES}?resource_uuid={}&billing_period={period}&type={ctype}", hex(n)));
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    rows[0]["uuid"].as_str().unwrap().to_string()
}

fn assert_refused(r: &Resp, status: u16, text: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let messages = serde_json::from_str(&r.text).map_or_else(|_| r.text.clone(), |v| strings(&v).join("\n"));
    assert!(messages.contains(text), "expected {text:?} in {}", r.text);
}

/// The strings of a JSON answer (DRF's messages), decoded.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(m) => m.iter().flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v))).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

#[test]
fn the_offering_lists_its_components_and_me_tells_whether_the_token_is_staff() {
    let f = FakeWaldur::start(config());
    for id in [OFFERING.to_string(), OFFERING.replace('-', "")] {
        let o = get(&f, &format!("/api/marketplace-provider-offerings/{id}/")).json();
        assert_eq!(o["uuid"], OFFERING.replace('-', ""));
        let comps: Vec<(&str, &str)> = o["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["billing_type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            comps,
            [("cpu", "usage"), ("mem", "usage"), ("gres/gpu", "usage"), ("storage", "limit"), ("cores", "one")]
        );
        assert_eq!(o["components"][0]["measured_unit"], "k-Hours");
    }
    assert_refused(&get(&f, &format!("/api/marketplace-provider-offerings/{OTHER_OFFERING}/")), 404, "Not found");
    assert_refused(&get(&f, "/api/marketplace-provider-offerings/not-a-uuid/"), 404, "Not found");

    assert_eq!(get(&f, "/api/users/me/").json(), json!({"username": "site-agent", "is_staff": false}));
    f.set_staff(true);
    assert_eq!(get(&f, "/api/users/me/").json()["is_staff"], true);
}

#[test]
fn resources_are_listed_by_offering_state_and_backend_id() {
    let f = FakeWaldur::start(config());
    let accounts = |target: &str| -> Vec<String> {
        let r = get(&f, target);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json().as_array().unwrap().iter().map(|r| r["backend_id"].as_str().unwrap().to_string()).collect()
    };
    let mine = format!("{RESOURCES}?offering_uuid={OFFERING}");
    assert_eq!(accounts(&mine), ["acct-a", "acct-b", "acct-gone", "acct-new", "acct-ending"]);
    assert_eq!(accounts(&format!("{mine}&state=OK&state=Erred")), ["acct-a", "acct-b"]);
    assert_eq!(accounts(&format!("{mine}&state=Terminated")), ["acct-gone"]);
    assert_eq!(accounts(&format!("{mine}&backend_id=acct-b")), ["acct-b"]);
    assert_eq!(accounts(&format!("{mine}&backend_id=acct")), Vec::<String>::new(), "backend_id is exact");
    assert_eq!(accounts(RESOURCES).len(), 6, "every offering without the filter");

    let row = &get(&f, &format!("{mine}&backend_id=acct-a")).json()[0];
    assert_eq!(row["uuid"], hex(1));
    assert_eq!(row["state"], "OK");
    assert_eq!(row["offering_uuid"], OFFERING.replace('-', ""));
    assert_eq!(row["name"], "allocation acct-a");
    let sparse = get(&f, &format!("{mine}&backend_id=acct-a&field=uuid&field=backend_id")).json();
    assert_eq!(sparse, json!([{"uuid": hex(1), "backend_id": "acct-a"}]));

    // Waldur's state names only, one per parameter; a filter the fake does not know is refused.
    assert_refused(&get(&f, &format!("{mine}&state=ERRED")), 400, "Select a valid choice");
    assert_refused(&get(&f, &format!("{mine}&state=OK,Erred")), 400, "Select a valid choice");
    assert_refused(&get(&f, &format!("{RESOURCES}?offering_uuid=nope")), 400, "Enter a valid UUID");
    assert_refused(&get(&f, &format!("{RESOURCES}?offering={OFFERING}")), 400, "\"offering\"");
}

#[test]
fn lists_are_paginated_with_link_headers_until_the_last_page() {
    let mut cfg = config();
    let many: Vec<Resource> = (0..23).map(|i| resource(100 + i, &format!("bulk-{i:02}"), ResourceState::Ok)).collect();
    cfg.resources.extend(many);
    let f = FakeWaldur::start(cfg);
    let first = format!("{RESOURCES}?state=OK&state=Erred&offering_uuid={OFFERING}");
    let want: Vec<String> =
        ["acct-a", "acct-b"].into_iter().map(String::from).chain((0..23).map(|i| format!("bulk-{i:02}"))).collect();

    let (mut seen, mut pages, mut next) = (Vec::new(), 0, Some(first.clone()));
    while let Some(target) = next.take() {
        assert!(pages < 10, "the Link chain does not end");
        let r = get(&f, &target);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("X-Result-Count"), Some("25"));
        assert!(r.link("first").is_some() && r.link("last").is_some());
        let rows = r.json();
        assert!(rows.as_array().unwrap().len() <= DEFAULT_PAGE_SIZE);
        seen.extend(rows.as_array().unwrap().iter().map(|x| x["backend_id"].as_str().unwrap().to_string()));
        next = r.link("next");
        pages += 1;
    }
    assert_eq!((pages, seen), (3, want.clone()));

    // The links carry the filters (sorted, as DRF writes them) and an absolute URL.
    let r = get(&f, &first);
    let next = r.link("next").unwrap();
    let q = format!("offering_uuid={}&page=2&state=OK&state=Erred", OFFERING);
    assert_eq!(next, format!("{}{RESOURCES}?{q}", f.base_url()));
    assert_eq!(r.link("prev"), None);
    let last = get(&f, &format!("{first}&page=last"));
    assert_eq!((last.json().as_array().unwrap().len(), last.link("next")), (5, None));
    assert!(last.link("prev").unwrap().contains("page=2"));

    let small = get(&f, &format!("{first}&page_size=7&page=4"));
    assert_eq!((small.json().as_array().unwrap().len(), small.link("next")), (4, None));
    assert_eq!(get(&f, &format!("{first}&page_size=oops")).json().as_array().unwrap().len(), DEFAULT_PAGE_SIZE);
    for bad in ["0", "4", "-1", "two"] {
        assert_refused(&get(&f, &format!("{first}&page={bad}")), 404, "Invalid page.");
    }
    let empty = get(&f, &format!("{RESOURCES}?backend_id=nobody"));
    assert_eq!((empty.status, empty.text.as_str(), empty.header("X-Result-Count")), (200, "[]", Some("0")));
}

// ---------------------------------------------------------------------------------------------
// set_usage

#[test]
fn set_usage_replaces_the_value_and_the_last_write_wins() {
    let f = FakeWaldur::start(config());
    let r = set_usage(&f, 1, Some("2026-12-01T00:00:00+01:00"), &[("cpu", "12.34"), ("mem", "5")]);
    assert_eq!(r.status, 201, "{}", r.text);
    let want = |cpu: &str| {
        BTreeMap::from([
            (key("acct-a", "2026-12", "cpu"), cpu.to_string()),
            (key("acct-a", "2026-12", "mem"), "5.00".into()),
        ])
    };
    assert_eq!(f.usages(), want("12.34"));
    let cu = cu_uuid(&f, 1, "2026-12-01", "cpu");

    // Down, then the same value again, then without a date (today's month): one value, one uuid.
    for (amount, date) in [("10.00", Some("2026-12-01")), ("10.00", Some("2026-12-03T10:00:00Z")), ("9.5", None)] {
        assert_eq!(set_usage(&f, 1, date, &[("cpu", amount)]).status, 201);
    }
    assert_eq!(f.usages(), want("9.50"));
    assert_eq!(cu_uuid(&f, 1, "2026-12-01", "cpu"), cu, "the component usage keeps its uuid");
    assert_eq!(f.writes(), WriteCounts { usage_changed: 4, usage_same: 1, user_changed: 0, user_same: 0 });

    let rows = get(&f, &format!("{USAGES}?resource_uuid={}&billing_period=2026-12-01", uuid(1))).json();
    let listed: Vec<(&str, &str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["type"].as_str().unwrap(), r["usage"].as_str().unwrap(), r["billing_period"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("cpu", "9.50", "2026-12-01"), ("mem", "5.00", "2026-12-01")]);
    assert_eq!(rows[0]["resource_uuid"], hex(1));
    assert_eq!(rows[0]["date"], "2026-12-04T00:00:00Z", "no date: today");
    assert_eq!(get(&f, &format!("{USAGES}?billing_period=2026-11-01")).text, "[]");
    assert_refused(&get(&f, &format!("{USAGES}?billing_period=2026-12")), 400, "Enter a valid date");

    // Erred and Terminating resources still take usage.
    assert_eq!(set_usage(&f, 2, None, &[("gres/gpu", "1")]).status, 201);
    assert_eq!(set_usage(&f, 5, None, &[("cpu", "0")]).status, 201);
    assert_eq!(f.usages()[&key("acct-b", "2026-12", "gres/gpu")], "1.00");
    assert_eq!(f.usages()[&key("acct-ending", "2026-12", "cpu")], "0.00");
}

#[test]
fn amounts_are_decimal_strings_with_at_most_two_places_and_not_negative() {
    let f = FakeWaldur::start(config());
    for (sent, stored) in [
        ("0", "0.00"),
        (".5", "0.50"),
        ("7.", "7.00"),
        ("007.10", "7.10"),
        ("+3", "3.00"),
        ("-0.00", "0.00"),
        ("123456789012345678.99", "123456789012345678.99"),
    ] {
        let r = set_usage(&f, 1, None, &[("cpu", sent)]);
        assert_eq!(r.status, 201, "{sent}: {}", r.text);
        assert_eq!(f.usages()[&key("acct-a", "2026-12", "cpu")], stored, "{sent}");
    }
    let before = f.usages();
    for (amount, text) in [
        (json!("1.234"), "no more than 2 decimal places"),
        (json!("1.500"), "no more than 2 decimal places"),
        (json!("-1"), "greater than or equal to 0"),
        (json!("-0.01"), "greater than or equal to 0"),
        (json!("1234567890123456789"), "no more than 18 digits before the decimal point"),
        (json!("1e3"), "A valid number is required"),
        (json!(" 1"), "A valid number is required"),
        (json!("1,5"), "A valid number is required"),
        (json!(""), "A valid number is required"),
        (json!("."), "A valid number is required"),
        (json!(12.5), "a decimal string is expected"),
        (json!(12), "a decimal string is expected"),
        (json!(null), "This field is required"),
    ] {
        let body = json!({"usages": [{"type": "cpu", "amount": amount}], "resource": uuid(1)});
        assert_refused(&post(&f, SET_USAGE, &body), 400, text);
    }
    let body = json!({"usages": [{"type": "cpu"}], "resource": uuid(1)});
    assert_refused(&post(&f, SET_USAGE, &body), 400, "usages[0].amount: This field is required");
    // A request is applied whole or not at all.
    assert_refused(&set_usage(&f, 1, None, &[("mem", "1.00"), ("cpu", "2.001")]), 400, "usages[1].amount");
    assert_eq!(f.usages(), before);
}

#[test]
fn unknown_components_and_resources_are_refused() {
    let f = FakeWaldur::start(config());
    assert_refused(&set_usage(&f, 1, None, &[("cpu", "1"), ("gpu", "1")]), 400, "Component \"gpu\" is not found");
    assert_refused(&set_usage(&f, 1, None, &[("billing", "1")]), 400, "\"billing\"");
    assert_refused(&set_usage(&f, 99, None, &[("cpu", "1")]), 400, "does not exist");
    assert_refused(&set_usage(&f, 6, None, &[("cpu", "1")]), 400, "belongs to offering 99999999");
    assert_refused(&set_usage(&f, 3, None, &[("cpu", "1")]), 400, "in state Terminated");
    assert_refused(&set_usage(&f, 4, None, &[("cpu", "1")]), 400, "in state Creating");
    let body = |resource: Value| json!({"usages": [{"type": "cpu", "amount": "1"}], "resource": resource});
    assert_refused(&post(&f, SET_USAGE, &body(json!("acct-a"))), 400, "does not exist");
    assert_refused(&post(&f, SET_USAGE, &body(json!(null))), 400, "resource");
    assert_refused(&post(&f, SET_USAGE, &json!({"usages": []})), 400, "resource");
    assert!(f.usages().is_empty());

    // A resource terminated mid-test takes nothing more; restored, it does.
    f.set_resource_state("acct-a", ResourceState::Terminated);
    assert_refused(&set_usage(&f, 1, None, &[("cpu", "1")]), 400, "in state Terminated");
    f.set_resource_state("acct-a", ResourceState::Ok);
    assert_eq!(set_usage(&f, 1, None, &[("gres/gpu", "1")]).status, 201);
    assert_eq!(f.usages().into_keys().collect::<Vec<_>>(), [key("acct-a", "2026-12", "gres/gpu")]);
}

#[test]
fn past_periods_need_a_staff_token_and_future_dates_are_refused() {
    let f = FakeWaldur::start(config());
    let nov = Some("2026-11-01T00:00:00+00:00");
    let r = set_usage(&f, 1, nov, &[("cpu", "4.00")]);
    assert_refused(&r, 400, "backfilling past billing periods");
    assert_eq!(r.json(), json!({"date": [BACKFILL_REFUSAL]}));
    assert_refused(&set_usage(&f, 1, nov, &[("storage", "2"), ("mem", "1")]), 400, "backfilling past billing periods");
    assert!(f.usages().is_empty(), "nothing of a refused request");
    // Limit-based and prepaid components may be dated in the past (the refusal's own wording).
    assert_eq!(set_usage(&f, 1, nov, &[("storage", "2"), ("cores", "16")]).status, 201);
    for future in ["2026-12-05", "2027-01-01T00:00:00Z"] {
        assert_refused(&set_usage(&f, 1, Some(future), &[("cpu", "1")]), 400, "Cannot submit usage for future dates");
    }
    for bad in ["2026-11", "2026-11-31", "01.11.2026", "2026-11-01 00:00", "2026-11-01T25:00"] {
        assert_refused(&set_usage(&f, 1, Some(bad), &[("storage", "1")]), 400, "Datetime has wrong format");
    }

    f.set_staff(true);
    assert_eq!(set_usage(&f, 1, Some("2026-11-30T23:59:59.5+02:00"), &[("cpu", "4.00")]).status, 201);
    assert_eq!(set_usage(&f, 1, Some("2024-01-01"), &[("cpu", "1")]).status, 201);
    f.set_staff(false);
    let months: Vec<(String, String)> = f.usages().into_keys().map(|(_, m, t)| (m, t)).collect();
    let want = [("2024-01", "cpu"), ("2026-11", "cores"), ("2026-11", "cpu"), ("2026-11", "storage")]
        .map(|(m, t)| (m.into(), t.into()));
    assert_eq!(months, want);

    // A new month: the last one is now past.
    assert_eq!(set_usage(&f, 1, Some("2026-12-01"), &[("cpu", "1")]).status, 201);
    f.set_today("2027-01-02");
    assert_refused(&set_usage(&f, 1, Some("2026-12-01"), &[("cpu", "2")]), 400, "backfilling past billing periods");
    assert_eq!(set_usage(&f, 1, Some("2027-01-01"), &[("cpu", "2")]).status, 201);
    assert_eq!(set_usage(&f, 1, None, &[("mem", "2")]).status, 201);
    assert_eq!(f.usages()[&key("acct-a", "2027-01", "mem")], "2.00");
}

#[test]
fn only_the_offerings_static_token_is_accepted() {
    let f = FakeWaldur::start(config());
    let body = usage_body(1, None, &[("cpu", "1")]).to_string();
    let json_body = Some(("application/json", body.as_bytes()));
    let cases = [
        (None, 401, "credentials were not provided"),
        (Some(format!("Bearer {TOKEN}")), 401, "credentials were not provided"),
        (Some(format!("token {TOKEN}")), 401, "credentials were not provided"),
        (Some("Token wrong".to_string()), 401, "Invalid token."),
        (Some(format!("Token {STRANGER}")), 403, "do not have permission"),
    ];
    for (auth, status, text) in &cases {
        let r = send(&f, "POST", SET_USAGE, auth.as_deref(), json_body).unwrap();
        assert_refused(&r, *status, text);
        if *status == 401 {
            assert_eq!(r.header("WWW-Authenticate"), Some("Token"));
        }
        assert_refused(&send(&f, "GET", RESOURCES, auth.as_deref(), None).unwrap(), *status, text);
    }
    // Authentication comes before the method check, as in DRF.
    assert_eq!(send(&f, "GET", SET_USAGE, None, None).unwrap().status, 401);
    assert!(f.usages().is_empty());
    assert_eq!(send(&f, "POST", SET_USAGE, Some(&token()), json_body).unwrap().status, 201);

    let auth: Vec<bool> = f.requests().iter().map(|r| r.auth).collect();
    assert_eq!(auth, [false, false, true, true, true, true, true, true, true, true, false, true]);
}

/// The token endpoint answers as Keycloak's does for client credentials; its access tokens pass
/// as `Bearer` until revoked; the static token keeps working.
#[test]
fn oidc_access_tokens_authenticate_as_bearer_until_revoked() {
    let f = FakeWaldur::start(config());
    // Before OIDC is enabled: no endpoint, and Bearer is not a scheme Waldur reads.
    assert_eq!(send(&f, "POST", OIDC_TOKEN_PATH, None, None).unwrap().status, 404);
    f.enable_oidc("ledger", "s3cret", 60);
    let form = |body: &str| Some(("application/x-www-form-urlencoded", body.as_bytes().to_vec()));
    let ask = |auth: Option<&str>, body: Option<(&str, Vec<u8>)>| {
        let body = body.as_ref().map(|(ct, b)| (*ct, b.as_slice()));
        send(&f, "POST", OIDC_TOKEN_PATH, auth, body).unwrap()
    };
    let oauth_error = |r: &Resp| r.json()["error"].as_str().unwrap_or_default().to_string();
    let good = "grant_type=client_credentials&client_id=ledger&client_secret=s3cret";
    let r = ask(None, form("grant_type=client_credentials&client_id=ledger&client_secret=wrong"));
    assert_eq!((r.status, oauth_error(&r)), (401, "invalid_client".into()), "{}", r.text);
    let r = ask(None, form("grant_type=client_credentials&client_id=other&client_secret=s3cret"));
    assert_eq!((r.status, oauth_error(&r)), (401, "invalid_client".into()));
    let r = ask(None, form("client_id=ledger&client_secret=s3cret"));
    assert_eq!((r.status, oauth_error(&r)), (400, "invalid_request".into()));
    let r = ask(None, Some(("application/json", good.as_bytes().to_vec())));
    assert_eq!((r.status, oauth_error(&r)), (400, "invalid_request".into()));
    let r = ask(None, form("grant_type=password&client_id=ledger&client_secret=s3cret"));
    assert_eq!((r.status, oauth_error(&r)), (400, "unsupported_grant_type".into()));
    assert_eq!(send(&f, "GET", OIDC_TOKEN_PATH, None, None).unwrap().status, 405);
    assert_eq!(f.oidc_issued(), 0);

    let r = ask(None, form(good));
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(60)));
    let post_token = body["access_token"].as_str().unwrap().to_string();
    // client_secret_basic: base64("ledger:s3cret").
    let r = ask(Some("Basic bGVkZ2VyOnMzY3JldA=="), form("grant_type=client_credentials"));
    assert_eq!(r.status, 200, "{}", r.text);
    let basic_token = r.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(post_token, basic_token);
    assert_eq!(f.oidc_issued(), 2);

    for t in [&post_token, &basic_token] {
        assert_eq!(send(&f, "GET", RESOURCES, Some(&format!("Bearer {t}")), None).unwrap().status, 200);
    }
    let r = send(&f, "GET", RESOURCES, Some("Bearer not-issued"), None).unwrap();
    assert_refused(&r, 401, "Invalid token.");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    f.revoke_oidc_tokens();
    assert_eq!(send(&f, "GET", RESOURCES, Some(&format!("Bearer {post_token}")), None).unwrap().status, 401);
    assert_eq!(get(&f, RESOURCES).status, 200, "the static token still works");
    // After 2 more requests, tokens issued so far are revoked; the second still passes.
    let fresh = ask(None, form(good)).json()["access_token"].as_str().unwrap().to_string();
    f.revoke_oidc_tokens_after(2);
    let status = || send(&f, "GET", RESOURCES, Some(&format!("Bearer {fresh}")), None).unwrap().status;
    assert_eq!([status(), status(), status()], [200, 200, 401]);
}

// ---------------------------------------------------------------------------------------------
// set_user_usages

#[test]
fn user_usages_are_set_per_user_on_their_component_usage() {
    let f = FakeWaldur::start(config());
    assert_eq!(set_usage(&f, 1, Some("2026-12-01"), &[("cpu", "5.50")]).status, 201);
    let cu = cu_uuid(&f, 1, "2026-12-01", "cpu");
    let target = format!("/api/marketplace-component-usages/{cu}/set_user_usages/");
    let body = json!({"usages": [
        {"username": "alice", "usage": "3", "user": user_url("alice"), "date": "2026-12-01T00:00:00+00:00"},
        {"username": "bob", "usage": "2.5"},
    ]});
    assert_eq!(post(&f, &target, &body).status, 201);
    let ukey = |u: &str| ("acct-a".to_string(), "2026-12".to_string(), "cpu".to_string(), u.to_string());
    assert_eq!(f.user_usages(), BTreeMap::from([(ukey("alice"), "3.00".into()), (ukey("bob"), "2.50".into())]));

    let users = |u: &str| json!({"usages": [{"username": u, "usage": "1.00"}, {"username": "bob", "usage": "2.50"}]});
    assert_eq!(post(&f, &target, &users("alice")).status, 201);
    assert_eq!(f.user_usages()[&ukey("alice")], "1.00");
    assert_eq!(f.writes(), WriteCounts { usage_changed: 1, usage_same: 0, user_changed: 3, user_same: 1 });

    let rows =
        get(&f, &format!("{USER_USAGES}?resource_uuid={}&component_usage_billing_period=2026-12-01", hex(1))).json();
    let listed: Vec<(&str, &str, &str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap();
            (s("username"), s("usage"), s("component_type"), s("component_usage_uuid"))
        })
        .collect();
    assert_eq!(listed, [("alice", "1.00", "cpu", cu.as_str()), ("bob", "2.50", "cpu", cu.as_str())]);
    assert_eq!(rows[0]["billing_period"], "2026-12-01");
    assert_eq!(get(&f, &format!("{USER_USAGES}?component_usage_billing_period=2026-11-01")).text, "[]");

    let one = |item: Value| json!({"usages": [item]});
    let refused = [
        (one(json!({"username": "alice", "usage": "1", "user": user_url("bob")})), "is the offering user \"bob\""),
        (one(json!({"username": "carol", "usage": "1", "user": user_url("carol")})), "Object does not exist"),
        (one(json!({"username": "alice", "usage": "1.005"})), "no more than 2 decimal places"),
        (one(json!({"username": "alice", "usage": 1})), "a decimal string is expected"),
        (one(json!({"username": "alice"})), "usages[0].usage: This field is required"),
        (one(json!({"usage": "1"})), "usages[0].username"),
        (one(json!({"username": "alice", "usage": "1", "date": "2026-11-15"})), "is of 2026-12"),
        (one(json!({"username": "alice", "usage": "1", "date": "2026-12-25"})), "future dates"),
        (one(json!({"username": "alice", "usage": "1", "email": "a@b"})), "usages[0].email: not a field"),
    ];
    for (body, text) in refused {
        assert_refused(&post(&f, &target, &body), 400, text);
    }
    for missing in [hex(12345), "nope".to_string()] {
        let t = format!("/api/marketplace-component-usages/{missing}/set_user_usages/");
        assert_refused(&post(&f, &t, &users("alice")), 404, "Not found");
    }
    assert_eq!(f.user_usages()[&ukey("alice")], "1.00", "nothing of a refused request");
}

#[test]
fn user_usages_of_a_past_period_need_a_staff_token_when_dated() {
    let f = FakeWaldur::start(config());
    f.set_staff(true);
    assert_eq!(set_usage(&f, 1, Some("2026-11-01"), &[("cpu", "8")]).status, 201);
    let target = format!("/api/marketplace-component-usages/{}/set_user_usages/", cu_uuid(&f, 1, "2026-11-01", "cpu"));
    let dated = json!({"usages": [{"username": "alice", "usage": "8", "date": "2026-11-01"}]});
    f.set_staff(false);
    assert_refused(&post(&f, &target, &dated), 400, "backfilling past billing periods");
    let undated = json!({"usages": [{"username": "alice", "usage": "7"}]});
    assert_eq!(post(&f, &target, &undated).status, 201, "undated, it goes to the component usage's period");
    f.set_staff(true);
    assert_eq!(post(&f, &target, &dated).status, 201);
    let want = [(("acct-a", "2026-11", "cpu", "alice"), "8.00")];
    let want: BTreeMap<_, String> = want
        .iter()
        .map(|((a, m, t, u), v)| ((a.to_string(), m.to_string(), t.to_string(), u.to_string()), v.to_string()))
        .collect();
    assert_eq!(f.user_usages(), want);
}

// ---------------------------------------------------------------------------------------------
// Outside the contract

#[test]
fn routes_methods_and_bodies_outside_the_contract_are_refused_and_recorded() {
    let f = FakeWaldur::start(config());
    let auth = Some(token());
    let raw = |method: &str, target: &str, ct: &str, body: &str| {
        send(&f, method, target, auth.as_deref(), Some((ct, body.as_bytes()))).unwrap()
    };
    let good = usage_body(1, None, &[("cpu", "1")]).to_string();
    for path in ["/api/marketplace-component-usages/set_usage", "/api/nothing/", "/set_usage/", "/api/users/me"] {
        assert_refused(&raw("POST", path, "application/json", &good), 404, "Not found.");
    }
    let r = get(&f, SET_USAGE);
    assert_refused(&r, 405, "Method \"GET\" not allowed.");
    assert_eq!(r.header("Allow"), Some("POST"));
    assert_refused(&raw("POST", RESOURCES, "application/json", "{}"), 405, "not allowed");
    assert_refused(&raw("DELETE", USAGES, "application/json", ""), 405, "not allowed");
    assert_refused(&raw("POST", SET_USAGE, "text/plain", &good), 415, "Unsupported media type");
    assert_refused(&raw("POST", SET_USAGE, "application/json", "{\"usages\": ["), 400, "JSON parse error");
    assert_refused(&raw("POST", SET_USAGE, "application/json", "[]"), 400, "Expected a dictionary");
    let refused = [
        (
            json!({"usages": [{"type": "cpu", "amount": "1"}], "resource": uuid(1), "amounts": []}),
            "amounts: not a field",
        ),
        (
            json!({"usages": [{"type": "cpu", "amount": "1", "unit": "h"}], "resource": uuid(1)}),
            "usages[0].unit: not a field",
        ),
        (json!({"usages": [{"type": "cpu", "amount": "1"}], "plan_period": uuid(1)}), "plan_period is not modelled"),
        (json!({"usages": {"type": "cpu"}, "resource": uuid(1)}), "usages"),
        (json!({"usages": ["cpu"], "resource": uuid(1)}), "usages[0]: Invalid data"),
        (
            json!({"usages": [{"type": "cpu", "amount": "1", "missing_usage_policy": "sum"}], "resource": uuid(1)}),
            "none, reuse, zero",
        ),
    ];
    for (body, text) in refused {
        assert_refused(&post(&f, SET_USAGE, &body), 400, text);
    }
    assert_refused(
        &get(&f, &format!("{USAGES}?resource_uuid={}&billing_period_month=12", hex(1))),
        400,
        "billing_period_month",
    );
    assert_refused(&get(&f, &format!("{USAGES}?resource_uuid=%zz")), 400, "percent-encoded");
    assert!(f.usages().is_empty());

    let described = usage_body(1, None, &[("cpu", "1")]);
    let mut described_body = described.clone();
    described_body["usages"][0]["description"] = json!("cpu-hours of the month");
    assert_eq!(post(&f, SET_USAGE, &described_body).status, 201);
    let last: WaldurRequest = f.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str(), last.auth), ("POST", SET_USAGE, true));
    assert_eq!(serde_json::from_str::<Value>(&last.body).unwrap(), described_body);
    assert_eq!((last.outcome, last.fault), (Outcome::Status(201), None));
    let listed = get(&f, &format!("{USAGES}?resource_uuid={}&type=cpu", hex(1)));
    assert_eq!(listed.json()[0]["description"], "cpu-hours of the month");
    let recorded = f.requests().pop().unwrap();
    assert_eq!(recorded.query, [("resource_uuid".to_string(), hex(1)), ("type".to_string(), "cpu".to_string())]);
    assert_eq!(recorded.body, "");
}

// ---------------------------------------------------------------------------------------------
// Faults

#[test]
fn each_scripted_fault_behaves_as_documented() {
    let mut f = FakeWaldur::start(config());
    f.push_pass(1);
    f.push_faults([
        Fault::Status5xxBefore(503),
        Fault::TooMany { retry_after_secs: 7 },
        Fault::DropBefore,
        Fault::DropAfter,
        Fault::Status5xxAfter(502),
        Fault::Slow { millis: 300 },
        Fault::TimeoutAfter { secs: 30 },
    ]);
    let cpu = |f: &FakeWaldur| f.usages().get(&key("acct-a", "2026-12", "cpu")).cloned();
    let write = |n: u32| {
        send(
            &f,
            "POST",
            SET_USAGE,
            Some(&token()),
            Some(("application/json", usage_body(1, None, &[("cpu", &n.to_string())]).to_string().as_bytes())),
        )
    };

    // Refused requests and reads take no scripted fault: the queue waits for a valid write.
    assert_eq!(set_usage(&f, 1, None, &[("gpu", "1")]).status, 400);
    assert_eq!(get(&f, RESOURCES).status, 200);
    assert_eq!(write(1).unwrap().status, 201);
    assert_eq!(cpu(&f).as_deref(), Some("1.00"));

    let r = write(2).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(cpu(&f).as_deref(), Some("1.00"), "5xx before: not applied");
    let r = write(3).unwrap();
    assert_eq!((r.status, r.header("Retry-After")), (429, Some("7")));
    assert_eq!(cpu(&f).as_deref(), Some("1.00"), "429: not applied");
    let e = write(4).err().expect("drop before: no answer");
    assert!(!e.is_timeout(), "{e}");
    assert_eq!(cpu(&f).as_deref(), Some("1.00"), "drop before: not applied");
    let e = write(5).err().expect("drop after: no answer");
    assert!(!e.is_timeout(), "{e}");
    assert_eq!(cpu(&f).as_deref(), Some("5.00"), "drop after: applied");
    assert_eq!(write(6).unwrap().status, 502);
    assert_eq!(cpu(&f).as_deref(), Some("6.00"), "5xx after: applied");
    let t = Instant::now();
    assert_eq!(write(7).unwrap().status, 201);
    assert!(t.elapsed() >= Duration::from_millis(300), "slow: {:?}", t.elapsed());
    let body = usage_body(1, None, &[("cpu", "8")]).to_string();
    let impatient = http(Duration::from_millis(300));
    let e = send_with(&impatient, &f, "POST", SET_USAGE, Some(&token()), Some(("application/json", body.as_bytes())))
        .err()
        .expect("timeout after: no answer in time");
    assert!(e.is_timeout(), "{e}");
    assert_eq!(cpu(&f).as_deref(), Some("8.00"), "timeout after: applied before the client gave up");
    assert_eq!(write(9).unwrap().status, 201, "the queue is spent");

    let kinds = [
        FaultKind::Status5xxBefore,
        FaultKind::TooMany,
        FaultKind::DropBefore,
        FaultKind::DropAfter,
        FaultKind::Status5xxAfter,
        FaultKind::Slow,
        FaultKind::TimeoutAfter,
    ];
    assert_eq!(f.fault_counts(), kinds.iter().map(|k| (*k, 1u64)).collect::<BTreeMap<_, _>>());
    let log: Vec<(Outcome, Option<FaultKind>)> =
        f.requests().iter().map(|r| (r.outcome, r.fault.as_ref().map(Fault::kind))).collect();
    use Outcome::{Dropped, Status};
    let want = [
        (Status(400), None),
        (Status(200), None),
        (Status(201), None),
        (Status(503), Some(kinds[0])),
        (Status(429), Some(kinds[1])),
        (Dropped, Some(kinds[2])),
        (Dropped, Some(kinds[3])),
        (Status(502), Some(kinds[4])),
        (Status(201), Some(kinds[5])),
        (Status(201), Some(kinds[6])),
        (Status(201), None),
    ];
    assert_eq!(log, want, "one request each: the client did not retry");
    assert_eq!(f.writes().usage_changed, 6, "1, 5, 6, 7, 8, 9");

    let t = Instant::now();
    f.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "stop does not wait for the 30 s answer: {:?}", t.elapsed());
    assert!(send(&f, "GET", RESOURCES, Some(&token()), None).is_err(), "the port is closed");
}

#[test]
fn random_faults_follow_the_seed_and_are_counted() {
    let mix = FaultMix {
        weights: vec![(0.2, Fault::DropBefore), (0.2, Fault::Status5xxBefore(500)), (0.2, Fault::DropAfter)],
        on_get: false,
    };
    let run = |seed: u64| {
        let f = FakeWaldur::start(WaldurConfig { seed, faults: mix.clone(), ..config() });
        for n in 1..=40u32 {
            let _ = send(
                &f,
                "POST",
                SET_USAGE,
                Some(&token()),
                Some(("application/json", usage_body(1, None, &[("cpu", &n.to_string())]).to_string().as_bytes())),
            );
        }
        assert_eq!(get(&f, RESOURCES).status, 200, "reads take no fault unless on_get");
        let counts = f.fault_counts();
        let faulted = f.requests().iter().filter(|r| r.fault.is_some()).count() as u64;
        assert_eq!(counts.values().sum::<u64>(), faulted);
        let before =
            counts.get(&FaultKind::DropBefore).unwrap_or(&0) + counts.get(&FaultKind::Status5xxBefore).unwrap_or(&0);
        assert_eq!(f.writes().usage_changed, 40 - before, "every write but the before-faulted ones applied");
        (f.requests().into_iter().map(|r| (r.outcome, r.fault)).collect::<Vec<_>>(), counts)
    };
    let (a, counts) = run(11);
    let (b, _) = run(11);
    assert_eq!(a, b, "same seed, same faults");
    assert!(counts.len() == 3 && counts.values().all(|n| *n > 0), "40 draws hit every kind: {counts:?}");
    let (c, _) = run(12);
    assert_ne!(a, c, "another seed, other faults");

    let f = FakeWaldur::start(config());
    f.set_mix(FaultMix { weights: vec![(1.0, Fault::Status5xxBefore(504))], on_get: true });
    assert_eq!(get(&f, RESOURCES).status, 504);
    assert_eq!(set_usage(&f, 1, None, &[("cpu", "1")]).status, 504);
    f.set_mix(FaultMix::default());
    assert_eq!(set_usage(&f, 1, None, &[("cpu", "1")]).status, 201);
}
