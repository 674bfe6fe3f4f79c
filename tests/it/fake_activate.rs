//! The ACTIVATE fake itself: it refuses what the contract refuses, accepts the sample request,
//! lists with search and paging, and injects each fault as documented. The client here is a
//! hand-written HTTP/1.1 client on `TcpStream`, so nothing is hidden by a library's retries.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::fixture_bytes;
use crate::fakes::activate::parse_date_time;
use crate::fakes::http::percent_decode;
use crate::fakes::{
    base64_encode, Event, FakeActivate, FakeConfig, Fault, FaultKind, FaultMix, Outcome, RecordedRequest,
};

const KEY: &str = "pwt_bG9jYWxob3N0.s3cret";
const USAGE: &str = "/api/organizations/acme/allocations/alloc-a/usage";

fn config() -> FakeConfig {
    FakeConfig {
        org: "acme".into(),
        api_key: KEY.into(),
        allocations: vec!["alloc-a".into(), "alloc b".into()],
        seed: 7,
        ..FakeConfig::default()
    }
}

fn basic(user_pass: &str) -> String {
    format!("Basic {}", base64_encode(user_pass.as_bytes()))
}

fn sample() -> Value {
    let v: Value = serde_json::from_slice(&fixture_bytes("activate/sample-usage-event.json")).unwrap();
    v["request"].clone()
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
enum Got {
    Resp(Resp),
    /// The server closed the connection without a byte of answer.
    Closed,
    TimedOut,
}

impl Got {
    fn resp(self) -> Resp {
        match self {
            Got::Resp(r) => r,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

/// One keep-alive connection.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(f: &FakeActivate, read_timeout: Duration) -> Conn {
        let addr = f.base_url().trim_start_matches("http://").parse().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(read_timeout)).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Got {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: fake\r\nContent-Length: {}\r\n", body.len());
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        if self.s.write_all(&bytes).is_err() {
            return Got::Closed;
        }
        self.read()
    }

    /// Reads one answer (Content-Length framed).
    fn read(&mut self) -> Got {
        let mut chunk = [0u8; 8192];
        let mut fill = |buf: &mut Vec<u8>| match self.s.read(&mut chunk) {
            Ok(0) => Err(Got::Closed),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(Got::TimedOut),
            Err(_) => Err(Got::Closed),
        };
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if let Err(g) = fill(&mut self.buf) {
                assert!(self.buf.is_empty(), "a partial answer: {:?}", String::from_utf8_lossy(&self.buf));
                return g;
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> =
            lines.map(|l| l.split_once(':').unwrap()).map(|(n, v)| (n.to_string(), v.trim().to_string())).collect();
        let len: usize =
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).unwrap().1.parse().unwrap();
        while self.buf.len() < end + 4 + len {
            fill(&mut self.buf).unwrap_or_else(|g| panic!("body cut short: {g:?}"));
        }
        let body = self.buf[end + 4..end + 4 + len].to_vec();
        self.buf.drain(..end + 4 + len);
        Got::Resp(Resp { status, headers, body })
    }

    /// True when the server closed this connection within `within`.
    fn closed_by_server(&mut self, within: Duration) -> bool {
        self.s.set_read_timeout(Some(within)).unwrap();
        let closed = match self.s.read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        closed && self.buf.is_empty()
    }
}

fn once(f: &FakeActivate, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Got {
    Conn::open(f, Duration::from_secs(5)).send(method, target, headers, body)
}

/// A POST with good credentials and content type.
fn post(f: &FakeActivate, target: &str, body: &Value) -> Got {
    let auth = basic(&format!("{KEY}:"));
    once(
        f,
        "POST",
        target,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn get(f: &FakeActivate, target: &str) -> Resp {
    let auth = basic(&format!("{KEY}:"));
    once(f, "GET", target, &[("Authorization", &auth)], b"").resp()
}

fn event(n: u32, marker: &str) -> Value {
    json!({"sku": "cpu-hour", "quantity": n, "startedAt": format!("2026-01-20T{:02}:00:00Z", n),
           "endedAt": format!("2026-01-20T{:02}:30:00Z", n), "metadata": {"deliveryId": format!("{marker}:{n}")}})
}

#[test]
fn accepts_the_sample_request_and_answers_a_usage_event_output() {
    let f = FakeActivate::start(config());
    let r = post(&f, USAGE, &sample()).resp();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let out = r.json();
    for k in ["id", "organization", "allocation", "quantity", "startedAt", "endedAt", "createdAt"] {
        assert!(!out[k].is_null(), "{k} missing in {out}");
    }
    assert_eq!((out["organization"].as_str(), out["allocation"].as_str()), (Some("acme"), Some("alloc-a")));
    assert_eq!(out["quantity"].as_f64(), Some(2.6666666666666665));
    assert!(parse_date_time(out["createdAt"].as_str().unwrap()).is_some(), "{out}");

    // A second one, to an allocation whose name needs percent-encoding, gets a fresh id.
    let auth = basic(&format!("{KEY}:"));
    let raw = br#"{"sku": "s", "quantity": 1e-3, "startedAt": "2026-01-20T12:00:00.5+02:00", "endedAt": "2026-01-20T10:00:00.75Z"}"#;
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let second = once(&f, "POST", "/api/organizations/acme/allocations/alloc%20b/usage", &h, raw).resp();
    assert_eq!(second.status, 200, "{}", String::from_utf8_lossy(&second.body));
    assert_ne!(second.json()["id"], out["id"]);

    let ev: Vec<Event> = f.events();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].id, out["id"].as_str().unwrap());
    assert_eq!(
        (ev[0].sku.as_str(), ev[0].quantity_text.as_str(), ev[0].user.as_deref()),
        ("standard-compute", "2.6666666666666665", Some("jdoe"))
    );
    assert_eq!(ev[0].metadata.as_ref().unwrap()["jobId"], 4242);
    assert_eq!((ev[1].allocation.as_str(), ev[1].quantity_text.as_str(), ev[1].quantity), ("alloc b", "1e-3", 0.001));
    assert_eq!((ev[1].user.clone(), ev[1].metadata.clone()), (None, None));
}

#[test]
fn refuses_missing_or_wrong_credentials() {
    let f = FakeActivate::start(config());
    let body = sample().to_string();
    let ct = ("Content-Type", "application/json");
    let refused = [
        None,
        Some(basic("pwt_other.key:")),
        Some(basic(&format!("{KEY}:password"))),
        Some(basic(KEY)),
        Some(basic(&format!(" {KEY}:"))),
        Some("Basic !!not-base64!!".to_string()),
        Some(format!("Bearer {KEY}")),
        Some(KEY.to_string()),
    ];
    for auth in &refused {
        let headers: Vec<(&str, &str)> =
            std::iter::once(ct).chain(auth.as_deref().map(|a| ("Authorization", a))).collect();
        let r = once(&f, "POST", USAGE, &headers, body.as_bytes()).resp();
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.json()["code"], 401);
        assert!(!String::from_utf8_lossy(&r.body).contains(KEY), "the key never echoes back");
    }
    let g = once(&f, "GET", USAGE, &[("Authorization", &basic("nope:"))], b"").resp();
    assert_eq!(g.status, 401);
    assert!(f.events().is_empty());

    let bearer = FakeActivate::start(FakeConfig { accept_bearer: true, ..config() });
    let ok = once(&bearer, "POST", USAGE, &[ct, ("Authorization", &format!("Bearer {KEY}"))], body.as_bytes()).resp();
    assert_eq!(ok.status, 200);
    let wrong = once(&bearer, "POST", USAGE, &[ct, ("Authorization", "Bearer pwt_x.y")], body.as_bytes()).resp();
    assert_eq!(wrong.status, 401);
}

#[test]
fn refuses_bodies_outside_post_usage_event_input() {
    let f = FakeActivate::start(config());
    let with = |k: &str, v: Value| {
        let mut b = sample();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = sample();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("allocation", json!("alloc-a")), "allocation"),
        (with("customSKUCode", json!("x")), "customSKUCode"),
        (without("sku"), "sku"),
        (without("quantity"), "quantity"),
        (without("startedAt"), "startedAt"),
        (without("endedAt"), "endedAt"),
        (with("sku", json!("")), "sku"),
        (with("sku", json!(5)), "sku"),
        (with("quantity", json!("2.5")), "quantity"),
        (with("quantity", json!(-0.5)), "quantity"),
        (with("quantity", Value::Null), "quantity"),
        (with("user", json!(1000)), "user"),
        (with("metadata", json!(["a"])), "metadata"),
        (with("metadata", json!("{}")), "metadata"),
        (with("startedAt", json!(1768903200)), "startedAt"),
        (with("startedAt", json!("2026-01-20T10:00:00")), "startedAt"),
        (with("startedAt", json!("2026-01-20 10:00:00Z")), "startedAt"),
        (with("startedAt", json!("2026-01-20t10:00:00z")), "startedAt"),
        (with("startedAt", json!("2026-02-29T10:00:00Z")), "startedAt"),
        (with("startedAt", json!("2026-01-20T24:00:00Z")), "startedAt"),
        (with("startedAt", json!("2026-01-20T10:00:00.Z")), "startedAt"),
        (with("startedAt", json!("2026-01-20T10:00:00+0200")), "startedAt"),
        (with("endedAt", json!("2026-01-20T10:40:00+24:00")), "endedAt"),
        (with("endedAt", json!("1768905600")), "endedAt"),
        (with("endedAt", json!("2026-01-20T09:59:59.999Z")), "endedAt"),
        // 10:30+01:00 is 09:30Z: before the start even though it reads later.
        (with("endedAt", json!("2026-01-20T10:30:00+01:00")), "endedAt"),
        (json!([sample()]), "body"),
    ];
    for (body, field) in &cases {
        let r = post(&f, USAGE, body).resp();
        assert_eq!(r.status, 400, "{field}: {body}");
        let e = r.json();
        assert_eq!(e["code"], 400);
        assert!(e["message"].as_str().unwrap().starts_with(&format!("{field}:")), "{field}: {e}");
    }
    let auth = basic(&format!("{KEY}:"));
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let truncated = &b"{\"sku\": \"a\", "[..];
    let twice =
        &br#"{"sku":"a","sku":"b","quantity":1,"startedAt":"2026-01-20T10:00:00Z","endedAt":"2026-01-20T10:00:00Z"}"#[..];
    for raw in [truncated, twice] {
        let r = once(&f, "POST", USAGE, &h, raw).resp();
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
    }
    assert!(f.events().is_empty(), "nothing refused is recorded");
    assert!(f.requests().iter().all(|r| r.outcome == Outcome::Status(400) && r.fault.is_none()));
}

#[test]
fn refuses_unknown_targets_methods_and_content_types() {
    let f = FakeActivate::start(config());
    let body = sample().to_string();
    let auth = basic(&format!("{KEY}:"));
    let a = auth.as_str();
    let good = [("Authorization", a), ("Content-Type", "application/json")];
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 10] = [
        ("POST", "/api/organizations/acme/allocations/nope/usage", &good, 404),
        ("POST", "/api/organizations/other/allocations/alloc-a/usage", &good, 404),
        ("POST", "/api/organizations/acme/allocations/alloc-a/usage/", &good, 404),
        ("POST", "/api/organizations/acme/allocations/alloc-a", &good, 404),
        ("POST", "/usage", &good, 404),
        ("PUT", USAGE, &good, 405),
        ("DELETE", USAGE, &good, 405),
        ("POST", USAGE, &[("Authorization", a)], 415),
        ("POST", USAGE, &[("Authorization", a), ("Content-Type", "text/plain")], 415),
        ("POST", USAGE, &[("Authorization", a), ("Content-Type", "application/x-www-form-urlencoded")], 415),
    ];
    for (method, target, headers, status) in cases {
        let r = once(&f, method, target, headers, body.as_bytes()).resp();
        assert_eq!(r.status, status, "{method} {target} {headers:?}");
        assert_eq!(r.json()["code"], status);
        assert!(r.json()["message"].is_string());
        if status == 405 {
            assert_eq!(r.header("Allow"), Some("GET, POST"));
        }
    }
    let charset =
        once(&f, "POST", USAGE, &[good[0], ("Content-Type", "Application/JSON; charset=utf-8")], body.as_bytes());
    assert_eq!(charset.resp().status, 200);
    assert_eq!(f.events().len(), 1);
}

#[test]
fn lists_with_metadata_search_time_filter_and_paging() {
    let f = FakeActivate::start(config());
    for n in 1..=5 {
        assert_eq!(post(&f, USAGE, &event(n, "sl:activate:cl:123")).resp().status, 200);
    }
    assert_eq!(post(&f, USAGE, &event(6, "other run")).resp().status, 200);
    let mut no_meta = event(7, "x");
    no_meta.as_object_mut().unwrap().remove("metadata");
    assert_eq!(post(&f, USAGE, &no_meta).resp().status, 200);
    // Another allocation's events never show.
    assert_eq!(
        post(&f, "/api/organizations/acme/allocations/alloc%20b/usage", &event(8, "sl:activate:cl:123")).resp().status,
        200
    );

    let all = get(&f, USAGE).json();
    assert_eq!((all["total"].as_u64(), all["page"].as_u64(), all["pageSize"].as_u64()), (Some(7), Some(1), Some(50)));
    let row = &all["data"][0];
    for k in
        ["id", "organization", "allocation", "sku", "quantity", "startedAt", "endedAt", "createdAt", "user", "metadata"]
    {
        assert!(row.get(k).is_some(), "{k} missing in {row}");
    }

    // Percent-encoded, upper case (the search ignores case), with `+` as a space elsewhere.
    let page = get(&f, &format!("{USAGE}?metadata=SL%3AACTIVATE%3Acl%3A123&pageSize=2&page=2")).json();
    assert_eq!(page["total"], 5);
    let ids: Vec<&str> =
        page["data"].as_array().unwrap().iter().map(|e| e["metadata"]["deliveryId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["sl:activate:cl:123:3", "sl:activate:cl:123:4"]);
    let last = get(&f, &format!("{USAGE}?metadata=sl:activate:cl:123&pageSize=2&page=3")).json();
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    let beyond = get(&f, &format!("{USAGE}?metadata=sl:activate:cl:123&pageSize=2&page=9")).json();
    assert_eq!((beyond["data"].as_array().unwrap().len(), beyond["total"].as_u64()), (0, Some(5)));
    assert_eq!(get(&f, &format!("{USAGE}?metadata=other+run")).json()["total"], 1);
    assert_eq!(get(&f, &format!("{USAGE}?metadata=other%2Brun")).json()["total"], 0);

    let window =
        get(&f, &format!("{USAGE}?startedAtFrom=2026-01-20T02%3A00%3A00Z&startedAtTo=2026-01-20T05:00:00%2B01:00"))
            .json();
    let started: Vec<&str> =
        window["data"].as_array().unwrap().iter().map(|e| e["startedAt"].as_str().unwrap()).collect();
    assert_eq!(started, ["2026-01-20T02:00:00Z", "2026-01-20T03:00:00Z", "2026-01-20T04:00:00Z"]);

    let refused =
        ["page=0", "pageSize=1001", "pageSize=x", "startedAtFrom=yesterday", "endedAtFrom=2026-01-20T00:00:00Z"];
    for bad in refused.into_iter().chain(["color=red", "metadata=%zz"]) {
        let r = get(&f, &format!("{USAGE}?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[test]
fn each_scripted_fault_behaves_as_documented() {
    let mut f = FakeActivate::start(config());
    f.push_pass(1);
    f.push_faults([
        Fault::Status5xxBefore(503),
        Fault::Status5xxAfter(502),
        Fault::TooMany { retry_after_secs: 7 },
        Fault::DropBefore,
        Fault::DropAfter,
        Fault::Slow { millis: 300 },
        Fault::TimeoutAfter { secs: 30 },
    ]);
    let body = |n| event(n, "fault").to_string();
    let auth = basic(&format!("{KEY}:"));
    let h = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
    let recorded = |f: &FakeActivate| f.events().len();

    // Invalid requests take no fault: the queue waits for a valid one.
    assert_eq!(post(&f, USAGE, &json!({"sku": "x"})).resp().status, 400);
    let mut c = Conn::open(&f, Duration::from_secs(5));
    assert_eq!(c.send("POST", USAGE, &h, body(1).as_bytes()).resp().status, 200);
    assert_eq!(recorded(&f), 1);

    let r = c.send("POST", USAGE, &h, body(2).as_bytes()).resp();
    assert_eq!((r.status, r.json()["code"].as_u64()), (503, Some(503)));
    assert_eq!(recorded(&f), 1, "5xx before: not recorded");

    let r = c.send("POST", USAGE, &h, body(3).as_bytes()).resp();
    assert_eq!(r.status, 502);
    assert_eq!(recorded(&f), 2, "5xx after: recorded");

    let r = c.send("POST", USAGE, &h, body(4).as_bytes()).resp();
    assert_eq!((r.status, r.header("Retry-After")), (429, Some("7")));
    assert_eq!(recorded(&f), 2, "429: not recorded");

    // The keep-alive connection survived every answer so far; a drop ends it.
    assert!(matches!(c.send("POST", USAGE, &h, body(5).as_bytes()), Got::Closed));
    assert_eq!(recorded(&f), 2, "drop before: not recorded");
    assert!(matches!(post(&f, USAGE, &event(6, "fault")), Got::Closed));
    assert_eq!(recorded(&f), 3, "drop after: recorded");

    let t = Instant::now();
    assert_eq!(post(&f, USAGE, &event(7, "fault")).resp().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "slow: {:?}", t.elapsed());
    assert_eq!(recorded(&f), 4);

    let mut slow = Conn::open(&f, Duration::from_millis(300));
    assert!(matches!(slow.send("POST", USAGE, &h, body(8).as_bytes()), Got::TimedOut));
    assert_eq!(recorded(&f), 5, "timeout after: recorded before the client gave up");

    // The queue is spent: back to normal.
    assert_eq!(post(&f, USAGE, &event(9, "fault")).resp().status, 200);

    let kinds = [
        FaultKind::Status5xxBefore,
        FaultKind::Status5xxAfter,
        FaultKind::TooMany,
        FaultKind::DropBefore,
        FaultKind::DropAfter,
        FaultKind::Slow,
        FaultKind::TimeoutAfter,
    ];
    assert_eq!(f.fault_counts(), kinds.iter().map(|k| (*k, 1u64)).collect::<std::collections::BTreeMap<_, _>>());
    let requests: Vec<RecordedRequest> = f.requests();
    assert!(requests.iter().all(|r| r.method == "POST" && r.target == USAGE));
    let log: Vec<(Outcome, Option<FaultKind>)> =
        requests.iter().map(|r| (r.outcome, r.fault.as_ref().map(Fault::kind))).collect();
    use Outcome::{Dropped, Status};
    let want = [
        (Status(400), None),
        (Status(200), None),
        (Status(503), Some(kinds[0])),
        (Status(502), Some(kinds[1])),
        (Status(429), Some(kinds[2])),
        (Dropped, Some(kinds[3])),
        (Dropped, Some(kinds[4])),
        (Status(200), Some(kinds[5])),
        (Status(200), Some(kinds[6])),
        (Status(200), None),
    ];
    assert_eq!(log, want);
    let recorded: Vec<String> =
        f.events().iter().map(|e| e.metadata.as_ref().unwrap()["deliveryId"].as_str().unwrap().into()).collect();
    assert_eq!(recorded, ["fault:1", "fault:3", "fault:6", "fault:7", "fault:8", "fault:9"]);

    // Stop does not wait for the 30 s answer still pending on `slow`.
    let t = Instant::now();
    f.stop();
    assert!(slow.closed_by_server(Duration::from_secs(2)));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn random_faults_follow_the_seed_and_are_counted() {
    let mix = FaultMix {
        weights: vec![
            (0.2, Fault::DropBefore),
            (0.2, Fault::Status5xxBefore(500)),
            (0.2, Fault::Status5xxAfter(502)),
            (0.1, Fault::DropAfter),
        ],
        on_get: false,
    };
    let run = |seed: u64| {
        let f = FakeActivate::start(FakeConfig { seed, faults: mix.clone(), ..config() });
        for n in 0..40u32 {
            post(&f, USAGE, &event(n % 24, "chaos"));
        }
        assert_eq!(get(&f, USAGE).status, 200, "GETs take no fault unless on_get");
        let counts = f.fault_counts();
        let faulted = f.requests().iter().filter(|r| r.fault.is_some()).count() as u64;
        assert_eq!(counts.values().sum::<u64>(), faulted);
        let not_recorded =
            counts.get(&FaultKind::DropBefore).unwrap_or(&0) + counts.get(&FaultKind::Status5xxBefore).unwrap_or(&0);
        assert_eq!(f.events().len() as u64, 40 - not_recorded);
        (f.requests().into_iter().map(|r| (r.outcome, r.fault)).collect::<Vec<_>>(), counts)
    };
    let (a, counts) = run(11);
    let (b, _) = run(11);
    assert_eq!(a, b, "same seed, same faults");
    assert!(counts.len() == 4 && counts.values().all(|n| *n > 0), "40 draws hit every kind: {counts:?}");
    let (c, _) = run(12);
    assert_ne!(a, c, "another seed, other faults");

    let f = FakeActivate::start(config());
    f.set_mix(FaultMix { weights: vec![(1.0, Fault::Status5xxBefore(504))], on_get: true });
    assert_eq!(get(&f, USAGE).status, 504);
    assert_eq!(post(&f, USAGE, &sample()).resp().status, 504);
    f.set_mix(FaultMix::default());
    assert_eq!(post(&f, USAGE, &sample()).resp().status, 200);
}

#[test]
fn keeps_connections_alive_and_honours_connection_close() {
    let f = FakeActivate::start(config());
    let auth = basic(&format!("{KEY}:"));
    let mut c = Conn::open(&f, Duration::from_secs(5));
    for _ in 0..3 {
        let r = c.send("GET", USAGE, &[("Authorization", &auth)], b"");
        assert_eq!(r.resp().status, 200);
    }
    let r = c.send("GET", USAGE, &[("Authorization", &auth), ("Connection", "close")], b"").resp();
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    assert!(c.closed_by_server(Duration::from_secs(2)));

    // Two pipelined requests in one write are both answered, in order.
    let mut c = Conn::open(&f, Duration::from_secs(5));
    let one = format!("GET {USAGE} HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n");
    c.s.write_all(format!("{one}GET /nope HTTP/1.1\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(c.read().resp().status, 200);
    assert_eq!(c.read().resp().status, 404);
}

#[test]
fn bounds_what_it_reads() {
    let f = FakeActivate::start(config());
    let auth = basic(&format!("{KEY}:"));
    let mut c = Conn::open(&f, Duration::from_secs(5));
    c.s.write_all(
        format!("POST {USAGE} HTTP/1.1\r\nAuthorization: {auth}\r\nContent-Length: 2000000\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(c.read().resp().status, 413);
    assert!(c.closed_by_server(Duration::from_secs(2)));

    let big = "x".repeat(70 * 1024);
    let r = once(&f, "GET", USAGE, &[("X-Big", &big)], b"");
    assert_eq!(r.resp().status, 431);

    let mut c = Conn::open(&f, Duration::from_secs(5));
    c.s.write_all(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").unwrap();
    assert_eq!(c.read().resp().status, 501);
    let mut c = Conn::open(&f, Duration::from_secs(5));
    c.s.write_all(b"GARBAGE\r\n\r\n").unwrap();
    assert_eq!(c.read().resp().status, 400);
    assert!(f.requests().is_empty(), "what is not HTTP never reaches the fake's handler");
}

#[test]
fn stop_closes_the_port_and_idle_connections() {
    let mut f = FakeActivate::start(config());
    let addr = f.base_url().trim_start_matches("http://").to_string();
    let mut idle = Conn::open(&f, Duration::from_secs(5));
    f.stop();
    assert!(idle.closed_by_server(Duration::from_secs(2)));
    assert!(TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_err());
}

#[test]
fn date_times_are_parsed_strictly() {
    let ok = [
        ("1970-01-01T00:00:00Z", (0, 0)),
        ("2026-01-20T10:00:00Z", (1_768_903_200, 0)),
        ("2026-01-20T11:00:00+01:00", (1_768_903_200, 0)),
        ("2026-01-20T09:30:00-00:30", (1_768_903_200, 0)),
        ("2024-02-29T23:59:59.5Z", (1_709_251_199, 500_000_000)),
        ("2000-02-29T00:00:00.123456789Z", (951_782_400, 123_456_789)),
        ("1969-12-31T23:59:59Z", (-1, 0)),
    ];
    for (s, want) in ok {
        assert_eq!(parse_date_time(s), Some(want), "{s}");
    }
    let bad = [
        "",
        "2026-01-20",
        "2026-01-20T10:00Z",
        "2026-01-20T10:00:00",
        "2026-01-20T10:00:00z",
        "2026-01-20t10:00:00Z",
        "2026-01-20T10:00:00 Z",
        "2026-01-20T10:00:00Z ",
        "2026-1-20T10:00:00Z",
        "2026-00-20T10:00:00Z",
        "2026-13-20T10:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-20T10:60:00Z",
        "2026-01-20T10:00:60Z",
        "2026-01-20T10:00:00.1234567890Z",
        "2026-01-20T10:00:00+01",
        "2026-01-20T10:00:00+01:60",
        "2026-01-20T10:00:00UTC",
        "+2026-01-20T10:00:00Z",
        "２026-01-20T10:00:00Z",
    ];
    for s in bad {
        assert_eq!(parse_date_time(s), None, "{s:?}");
    }
}

proptest! {
    #[test]
    fn date_times_agree_with_jiff(secs in 0i64..8_000_000_000, nanos in 0u32..1_000_000_000, off_min in -1439i32..=1439) {
        let ts = jiff::Timestamp::new(secs, nanos as i32).unwrap();
        let tz = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(off_min * 60).unwrap());
        let text = ts.to_zoned(tz).strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string();
        prop_assert_eq!(parse_date_time(&text), Some((secs, nanos)), "{}", text);
    }
}

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(percent_decode("sl%3Aactivate%3Acl%3A123%3A9", true).as_deref(), Some("sl:activate:cl:123:9"));
    assert_eq!(percent_decode("a+b%2Bc", true).as_deref(), Some("a b+c"));
    assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    assert_eq!(percent_decode("%C3%A9t%c3%a9", true).as_deref(), Some("été"));
    for bad in ["%", "%4", "%zz", "%FF", "%C3"] {
        assert_eq!(percent_decode(bad, true), None, "{bad}");
    }
}
