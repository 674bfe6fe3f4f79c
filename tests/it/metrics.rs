//! The daemon's `/metrics` and `/healthz` over real TCP connections (`daemon::http::serve` on
//! 127.0.0.1:0), and what it serves checked by an independent parser: Python's
//! `prometheus_client` (text 0.0.4 and OpenMetrics), from the venv `scripts/py-venv` makes.
//!
//! `scripts/test` exports SLURM_LEDGER_PYTHON (the venv's python). Without it the parser checks
//! print SKIPPED and pass, unless SLURM_LEDGER_REQUIRE_TESTBED=1 (CI): then they fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use slurm_ledger::daemon::http::{serve, serve_with, HealthFn, MetricsServer, ServeOptions, STOP_WAIT};
use slurm_ledger::daemon::metrics::Metrics;

/// What Prometheus 2.x/3.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT_CT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_CT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A cluster name an admin may well write in TOML: quotes, a backslash, a newline.
const ODD: &str = "odd \"quoted\" C:\\slurm\nnext line";

/// The test venv's python, or None (SKIPPED) when scripts/test did not provide one.
pub(crate) fn python() -> Option<PathBuf> {
    match std::env::var_os("SLURM_LEDGER_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            let required = std::env::var("SLURM_LEDGER_REQUIRE_TESTBED").as_deref() == Ok("1");
            assert!(
                !required,
                "SLURM_LEDGER_REQUIRE_TESTBED=1 but SLURM_LEDGER_PYTHON is not set: run `bash scripts/py-venv` (scripts/test does)"
            );
            eprintln!("SKIPPED: the exposition-format parser checks need SLURM_LEDGER_PYTHON (the venv python `bash scripts/py-venv` prints; scripts/test exports it)");
            None
        }
    }
}

/// Parses with `prometheus_client` and prints every family as JSON; a parse error exits 1.
const PARSE_PY: &str = r#"
import json, sys
fmt, path = sys.argv[1], sys.argv[2]
if fmt == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
text = open(path, encoding="utf-8", newline="").read()
families = [
    {"name": f.name, "type": f.type, "unit": f.unit, "help": f.documentation,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(text)
]
json.dump(families, sys.stdout, allow_nan=False)
"#;

/// The families `prometheus_client` reads from `body` in `format` ("text" or "openmetrics"), or
/// its error.
pub(crate) fn parse(py: &PathBuf, format: &str, body: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body.txt");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(py).arg("-c").arg(PARSE_PY).arg(format).arg(&path).output().expect("run the venv python");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("").to_string());
    }
    Ok(serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("the parser's JSON"))
}

fn family<'a>(families: &'a [Value], name: &str) -> &'a Value {
    families.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no family {name} in {families:#?}"))
}

/// The value of `family`'s sample `sample` with exactly these labels.
pub(crate) fn sample(families: &[Value], family_name: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let f = family(families, family_name);
    let want: serde_json::Map<String, Value> =
        labels.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
    f["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == sample && s["labels"].as_object() == Some(&want))
        .unwrap_or_else(|| panic!("no sample {sample} {labels:?} in {f:#}"))["value"]
        .as_f64()
        .unwrap()
}

pub(crate) struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a new connection and reads the answer to the end (the server closes).
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("read the answer");
    let text = String::from_utf8(bytes).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    let status: u16 = status[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let reply = Reply { status, headers, body: body.to_string() };
    assert_eq!(reply.header("Connection"), Some("close"));
    if let Some(len) = reply.header("Content-Length") {
        assert!(raw.starts_with(b"HEAD ") || len.parse::<usize>().unwrap() == reply.body.len(), "Content-Length {len}");
    }
    reply
}

pub(crate) fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").as_bytes())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn healthy() -> HealthFn {
    Arc::new(|| Ok(()))
}

fn start(metrics: &Arc<Metrics>, health: HealthFn) -> MetricsServer {
    serve("127.0.0.1:0".parse().unwrap(), Arc::clone(metrics), health).expect("serve on 127.0.0.1:0")
}

/// A daemon's worth of records: two clusters (one oddly named), two sinks.
fn recorded() -> Arc<Metrics> {
    let now = unix_now();
    let m = Arc::new(Metrics::new(now - 3_600));
    m.collect_finished("alpha", true, 250, 1, 1.25, now - 100);
    m.collect_finished("alpha", false, 0, 1, 600.0, now - 50);
    m.collect_finished(ODD, true, 3, 2, 0.4, now - 20);
    m.set_cursor("alpha", now - 100);
    m.set_cursor(ODD, now - 20);
    m.set_outbox("activate", 12, 3, 1);
    m.set_outbox("jsonl", 0, 0, 0);
    m.delivered("activate", 40);
    m.send_failed("activate", 2);
    m.delivered("jsonl", 4096);
    m.hook_message(true);
    m.pass_finished(true, 42.0, now - 60);
    m
}

/// The families every scrape has, with their parsed type (counters without `_total`, as both
/// Python parsers name them).
const FAMILIES: &[(&str, &str)] = &[
    ("slurm_ledger_start_time_seconds", "gauge"),
    ("slurm_ledger_collects", "counter"),
    ("slurm_ledger_collect_last_success_timestamp_seconds", "gauge"),
    ("slurm_ledger_collect_runs_read", "counter"),
    ("slurm_ledger_sacct_calls", "counter"),
    ("slurm_ledger_collect_sacct_duration_seconds", "histogram"),
    ("slurm_ledger_cursor_timestamp_seconds", "gauge"),
    ("slurm_ledger_cursor_lag_seconds", "gauge"),
    ("slurm_ledger_outbox_items", "gauge"),
    ("slurm_ledger_delivered_items", "counter"),
    ("slurm_ledger_send_failures", "counter"),
    ("slurm_ledger_hook_messages", "counter"),
    ("slurm_ledger_passes", "counter"),
    ("slurm_ledger_pass_duration_seconds", "histogram"),
    ("slurm_ledger_pass_last_success_timestamp_seconds", "gauge"),
];

/// What both formats must say, as parsed.
fn check_families(families: &[Value], format: &str) {
    for f in families {
        let name = f["name"].as_str().unwrap();
        assert!(name.starts_with("slurm_ledger_"), "{format}: {name}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{format}: {name} has no HELP");
        assert!(!["unknown", "untyped"].contains(&f["type"].as_str().unwrap()), "{format}: {name} untyped: {f:#}");
    }
    for (name, typ) in FAMILIES {
        assert_eq!(family(families, name)["type"], *typ, "{format}: {name}");
    }
    let build =
        if format == "openmetrics" { ("slurm_ledger_build", "info") } else { ("slurm_ledger_build_info", "gauge") };
    assert_eq!(family(families, build.0)["type"], build.1);
    assert_eq!(sample(families, build.0, "slurm_ledger_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    let s = |fam: &str, smp: &str, labels: &[(&str, &str)]| sample(families, fam, smp, labels);
    assert_eq!(
        s("slurm_ledger_collects", "slurm_ledger_collects_total", &[("cluster", "alpha"), ("result", "ok")]),
        1.0
    );
    assert_eq!(
        s("slurm_ledger_collects", "slurm_ledger_collects_total", &[("cluster", "alpha"), ("result", "failed")]),
        1.0
    );
    // the odd name comes back exactly: escaped on the way out, unescaped by the parser
    assert_eq!(s("slurm_ledger_collects", "slurm_ledger_collects_total", &[("cluster", ODD), ("result", "ok")]), 1.0);
    assert_eq!(s("slurm_ledger_collect_runs_read", "slurm_ledger_collect_runs_read_total", &[("cluster", ODD)]), 3.0);
    assert_eq!(s("slurm_ledger_sacct_calls", "slurm_ledger_sacct_calls_total", &[("cluster", "alpha")]), 2.0);
    let h = "slurm_ledger_collect_sacct_duration_seconds";
    assert_eq!(s(h, &format!("{h}_count"), &[("cluster", "alpha")]), 2.0);
    assert_eq!(s(h, &format!("{h}_sum"), &[("cluster", "alpha")]), 601.25);
    assert_eq!(s(h, &format!("{h}_bucket"), &[("cluster", "alpha"), ("le", "+Inf")]), 2.0);
    let lag = s("slurm_ledger_cursor_lag_seconds", "slurm_ledger_cursor_lag_seconds", &[("cluster", "alpha")]);
    // recorded() set the cursor 100 s before its clock; the scrape's clock is a little later
    assert!((100.0..100.0 + 60.0).contains(&lag), "{format}: lag {lag}");
    assert_eq!(
        s("slurm_ledger_outbox_items", "slurm_ledger_outbox_items", &[("sink", "activate"), ("state", "pending")]),
        12.0
    );
    assert_eq!(
        s("slurm_ledger_outbox_items", "slurm_ledger_outbox_items", &[("sink", "activate"), ("state", "rejected")]),
        1.0
    );
    assert_eq!(s("slurm_ledger_send_failures", "slurm_ledger_send_failures_total", &[("sink", "activate")]), 2.0);
    assert_eq!(s("slurm_ledger_send_failures", "slurm_ledger_send_failures_total", &[("sink", "jsonl")]), 0.0);
    assert_eq!(s("slurm_ledger_hook_messages", "slurm_ledger_hook_messages_total", &[("result", "refused")]), 0.0);
    assert_eq!(s("slurm_ledger_passes", "slurm_ledger_passes_total", &[("result", "ok")]), 1.0);
    let h = "slurm_ledger_pass_duration_seconds";
    assert_eq!(s(h, &format!("{h}_bucket"), &[("le", if format == "openmetrics" { "60.0" } else { "60" })]), 1.0);
}

#[test]
fn scrapes_parse_as_the_content_type_declares() {
    let Some(py) = python() else { return };
    let m = recorded();
    let server = start(&m, healthy());
    let addr = server.local_addr();

    // No Accept header (curl, most tools): the text format 0.0.4.
    let text = get(addr, "/metrics", None);
    assert_eq!(text.status, 200);
    assert_eq!(text.header("Content-Type"), Some(TEXT_CT));
    let families = parse(&py, "text", &text.body).unwrap_or_else(|e| panic!("text 0.0.4: {e}\n{}", text.body));
    check_families(&families, "text");
    assert!(!text.body.contains("# EOF"), "{}", text.body);

    // Prometheus' Accept header: OpenMetrics, which the strict OpenMetrics parser takes.
    let om = get(addr, "/metrics", Some(PROMETHEUS_ACCEPT));
    assert_eq!(om.status, 200);
    assert_eq!(om.header("Content-Type"), Some(OPENMETRICS_CT));
    let families = parse(&py, "openmetrics", &om.body).unwrap_or_else(|e| panic!("OpenMetrics: {e}\n{}", om.body));
    check_families(&families, "openmetrics");
    for (name, _) in FAMILIES.iter().filter(|(n, _)| n.ends_with("_seconds")) {
        assert_eq!(family(&families, name)["unit"], "seconds", "{name}");
    }

    // A counter moves between two scrapes, and the lag is computed at each.
    m.delivered("activate", 5);
    m.hook_message(false);
    let again = parse(&py, "text", &get(addr, "/metrics", None).body).unwrap();
    let delivered = |f: &[Value]| {
        sample(f, "slurm_ledger_delivered_items", "slurm_ledger_delivered_items_total", &[("sink", "activate")])
    };
    let first = parse(&py, "text", &text.body).unwrap();
    assert_eq!(delivered(&first), 40.0);
    assert_eq!(delivered(&again), 45.0);
    let refused = |f: &[Value]| {
        sample(f, "slurm_ledger_hook_messages", "slurm_ledger_hook_messages_total", &[("result", "refused")])
    };
    assert_eq!((refused(&first), refused(&again)), (0.0, 1.0));
}

#[test]
fn the_parsers_refuse_broken_bodies() {
    let Some(py) = python() else { return };
    let m = recorded();
    let server = start(&m, healthy());
    let text = get(server.local_addr(), "/metrics", None).body;
    let om = get(server.local_addr(), "/metrics", Some(PROMETHEUS_ACCEPT)).body;
    assert!(parse(&py, "text", &text).is_ok());
    assert!(parse(&py, "openmetrics", &om).is_ok());

    let replace = |body: &str, from: &str, to: &str| {
        assert!(body.contains(from), "{from:?} not in the body");
        body.replacen(from, to, 1)
    };
    let broken = [
        ("openmetrics", om.replace("# EOF\n", ""), "Missing # EOF"),
        (
            "openmetrics",
            replace(&om, "slurm_ledger_hook_messages_total{", "slurm_ledger_hook_messages{"),
            "Clashing name",
        ),
        (
            "openmetrics",
            replace(
                &om,
                "# UNIT slurm_ledger_pass_duration_seconds seconds",
                "# UNIT slurm_ledger_pass_duration_seconds bytes",
            ),
            "Unit does not match",
        ),
        ("text", replace(&text, "result=\"refused\"", "result=refused"), "Invalid labels"),
        (
            "text",
            replace(&text, "cluster=\"alpha\",result=\"ok\"} 1", "cluster=\"alpha\",result=\"ok\"} one"),
            "could not convert",
        ),
    ];
    for (format, body, why) in broken {
        match parse(&py, format, &body) {
            Ok(_) => panic!("{format} parser took a body broken for {why:?}"),
            Err(e) => assert!(e.contains(why), "{format}: {e:?}, wanted {why:?}"),
        }
    }
}

#[test]
fn healthz_says_what_the_daemon_says() {
    let reason: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let health: HealthFn = {
        let reason = Arc::clone(&reason);
        Arc::new(move || reason.lock().unwrap().clone().map_or(Ok(()), Err))
    };
    let server = start(&Arc::new(Metrics::new(0)), health);
    let addr = server.local_addr();

    let ok = get(addr, "/healthz", None);
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok\n"));
    *reason.lock().unwrap() = Some("no successful collect of cluster alpha for 25 min (sacct: timed out)".into());
    let sick = get(addr, "/healthz", None);
    assert_eq!(sick.status, 503);
    assert_eq!(sick.body, "no successful collect of cluster alpha for 25 min (sacct: timed out)\n");
    let head = exchange(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((head.status, head.body.as_str()), (503, ""));
    *reason.lock().unwrap() = None;
    assert_eq!(get(addr, "/healthz?x=1", None).status, 200);
}

#[test]
fn other_paths_methods_and_bad_requests_are_refused() {
    let server = start(&Arc::new(Metrics::new(0)), healthy());
    let addr = server.local_addr();
    for path in ["/", "/metric", "/metrics/", "/healthz/x"] {
        let r = get(addr, path, None);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("/metrics and /healthz"), "{}", r.body);
    }
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    assert_eq!(exchange(addr, b"DELETE /healthz HTTP/1.1\r\n\r\n").status, 405);
    for bad in [
        &b"hello\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // TLS to a plain-HTTP port
    ] {
        let r = exchange(addr, bad);
        assert_eq!(r.status, 400, "{:?}: {}", String::from_utf8_lossy(bad), r.body);
    }
    let big = format!("GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "x".repeat(9 * 1024));
    assert_eq!(exchange(addr, big.as_bytes()).status, 431);
    // and the server still answers
    assert_eq!(get(addr, "/metrics", None).status, 200);
}

#[test]
fn a_silent_client_does_not_hold_up_a_scrape() {
    let m = Arc::new(Metrics::new(0));
    // Default limits: the silent connection has its own thread; a scrape is answered at once.
    let server = start(&m, healthy());
    let _silent = TcpStream::connect(server.local_addr()).unwrap();
    let _half = {
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap(); // a head that never ends
        s
    };
    let t = Instant::now();
    assert_eq!(get(server.local_addr(), "/metrics", None).status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "scrape took {:?} behind a silent client", t.elapsed());

    // One slot, taken by a silent client: the scrape waits, but only until that client's
    // deadline, and the silent client is then closed.
    let options = ServeOptions { request_timeout: Duration::from_millis(800), max_connections: 1 };
    let server = serve_with("127.0.0.1:0".parse().unwrap(), Arc::clone(&m), healthy(), options).unwrap();
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // accepted: the slot is taken
    let t = Instant::now();
    assert_eq!(get(server.local_addr(), "/metrics", None).status, 200);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(4), "scrape waited {waited:?}");
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap(), 0, "the silent client is closed, unanswered");
}

#[test]
fn a_taken_address_is_named_with_the_fix() {
    let first = start(&Arc::new(Metrics::new(0)), healthy());
    let addr = first.local_addr();
    let err = serve(addr, Arc::new(Metrics::new(0)), healthy()).expect_err("the address is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("cannot listen on {addr} for /metrics and /healthz: ")), "{msg}");
    assert!(msg.contains(&format!("ss -ltnp 'sport = :{}'", addr.port())) && msg.contains("free port"), "{msg}");
}

#[test]
fn dropping_the_server_stops_it_promptly() {
    let server = start(&Arc::new(Metrics::new(0)), healthy());
    let addr = server.local_addr();
    let _silent = TcpStream::connect(addr).unwrap(); // a connection being handled does not delay the stop
    assert_eq!(get(addr, "/healthz", None).status, 200);
    let t = Instant::now();
    drop(server);
    assert!(t.elapsed() < STOP_WAIT.min(Duration::from_secs(1)), "stop took {:?}", t.elapsed());
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(refused.is_err(), "still listening on {addr} after drop");
}
