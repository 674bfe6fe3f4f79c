//! The cc-backend fake itself: it refuses what cc-backend refuses (`X-Auth-Token` auth, unknown
//! fields and wrong types, the start sanity checks, 422 on a duplicate start and on a second stop,
//! 404 on a stop that matches no job), plus its documented stricter checks; it stops the row a stop's
//! `startTime` names, lists running jobs, takes node states, and injects each fault as documented.
//! The client is reqwest's blocking client without a connection pool, as the sink will use it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fakes::cc_backend::{
    CcConfig, CcRequest, Cluster, FakeCcBackend, Fault, FaultKind, FaultMix, Outcome, SubCluster, JOBS, NODE_STATE,
    START_JOB, STOP_JOB,
};

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.fake.jwt";
/// The fixture's start time.
const T0: i64 = 1_649_723_812;

fn config() -> CcConfig {
    let mut cfg = CcConfig::new(TOKEN, "fritz", &["f0101", "f0102", "f0103"]);
    cfg.clusters[0].sub_clusters.push(SubCluster { name: "spr".into(), nodes: vec!["f0201".into()] });
    cfg.clusters.push(Cluster {
        name: "alex".into(),
        sub_clusters: vec![SubCluster { name: "a40".into(), nodes: Vec::new() }],
    });
    cfg
}

fn lax() -> CcConfig {
    CcConfig { strict: false, ..config() }
}

/// The adapter's shapes, byte-for-byte from the shared specs (see tests/fixtures/cc-backend/PROVENANCE.md).
fn payloads() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cc-backend/payloads.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture's start_job body with `numAcc` matching its one listed accelerator (the fixture's
/// values are illustrative: it lists one and says 0, which only the strict mode refuses).
fn start_body() -> Value {
    let mut b = payloads()["start_job_request_POST_/api/jobs/start_job/"].clone();
    b["numAcc"] = json!(1);
    b
}

fn job_body(job_id: i64, start: i64, hosts: &[&str]) -> Value {
    let resources: Vec<Value> = hosts.iter().map(|h| json!({"hostname": h, "hwthreads": [0, 1]})).collect();
    json!({"jobId": job_id, "user": "alice", "project": "p1", "cluster": "fritz", "partition": "main",
           "numNodes": hosts.len(), "numHwthreads": 2 * hosts.len(), "numAcc": 0, "walltime": 3600,
           "startTime": start, "resources": resources, "metaData": {"jobName": format!("j{job_id}")}})
}

fn stop_body(job_id: i64, start: i64, state: &str, stop: i64) -> Value {
    json!({"jobId": job_id, "cluster": "fritz", "startTime": start, "jobState": state, "stopTime": stop})
}

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
}

fn http(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(timeout).build().unwrap()
}

/// One request; `token` is the whole `X-Auth-Token` header; a body goes as `application/json`.
fn send_with(
    c: &reqwest::blocking::Client,
    f: &FakeCcBackend,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Resp, reqwest::Error> {
    let mut rb = c.request(method.parse().unwrap(), format!("{}{target}", f.base_url()));
    if let Some(t) = token {
        rb = rb.header("X-Auth-Token", t);
    }
    if let Some((content_type, bytes)) = body {
        rb = rb.header("Content-Type", content_type).body(bytes);
    }
    let r = rb.send()?;
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    Ok(Resp { status, headers, text: r.text()? })
}

fn send(f: &FakeCcBackend, method: &str, target: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    send_with(&http(Duration::from_secs(10)), f, method, target, token, body).unwrap()
}

fn post(f: &FakeCcBackend, target: &str, body: &Value) -> Resp {
    send(f, "POST", target, Some(TOKEN), Some(body))
}

fn get(f: &FakeCcBackend, target: &str) -> Resp {
    send(f, "GET", target, Some(TOKEN), None)
}

/// cc-backend's `{"status", "error"}` with this status and `text` in the error.
fn assert_refused(r: &Resp, status: u16, text: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert!(v["status"].is_string(), "{}", r.text);
    let error = v["error"].as_str().unwrap_or_else(|| panic!("no error text: {}", r.text));
    assert!(error.contains(text), "expected {text:?} in {error:?}");
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_adapters_payloads_start_and_stop_a_job() {
    let p = payloads();
    let start = p["start_job_request_POST_/api/jobs/start_job/"].clone();
    let stop = p["stop_job_request_POST_/api/jobs/stop_job/"].clone();

    // cc-backend's own rules take the adapter's bodies as they are.
    let f = FakeCcBackend::start(lax());
    let r = post(&f, START_JOB, &start);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json(), p["start_job_responses"]["201"]);
    let r = post(&f, STOP_JOB, &stop);
    assert_eq!(r.status, 200, "{}", r.text);
    let job = r.json();
    assert_eq!((job["jobState"].as_str(), job["duration"].as_i64()), (Some("completed"), Some(1_649_763_839 - T0)));
    let stored = f.jobs();
    assert_eq!(stored.len(), 1);
    let j = &stored[0];
    assert_eq!((j.job_id, j.cluster.as_str(), j.sub_cluster.as_str(), j.start_time), (123000, "fritz", "main", T0));
    assert_eq!((j.state.as_str(), j.stop_time), ("completed", Some(1_649_763_839)));
    assert_eq!(j.job["metaData"], start["metaData"]);
    assert_eq!(j.job["shared"], "none");
    assert_eq!(j.stop.as_ref(), Some(&stop));

    // Strict: the illustrative numAcc and the stop without startTime are named.
    let f = FakeCcBackend::start(config());
    assert_refused(&post(&f, START_JOB, &start), 400, "numAcc");
    assert_eq!(post(&f, START_JOB, &start_body()).status, 201);
    assert_refused(&post(&f, STOP_JOB, &stop), 400, "'startTime'");
    let mut full = stop.clone();
    full["startTime"] = p["stop_job_request_optional_field"]["startTime"].clone();
    let r = post(&f, STOP_JOB, &full);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(f.job("fritz", 123000, T0).unwrap().state, "completed");
}

#[test]
fn only_the_configured_token_in_x_auth_token_is_accepted() {
    let f = FakeCcBackend::start(config());
    let body = job_body(1, T0, &["f0101"]);
    assert_refused(&send(&f, "POST", START_JOB, None, Some(&body)), 401, "");
    assert_refused(&send(&f, "POST", START_JOB, Some("wrong"), Some(&body)), 401, "");
    assert_refused(&send(&f, "POST", START_JOB, Some(&format!("Bearer {TOKEN}x")), Some(&body)), 401, "");
    let r = http(Duration::from_secs(5))
        .post(format!("{}{START_JOB}", f.base_url()))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "Authorization is not X-Auth-Token");
    assert_eq!(send(&f, "GET", JOBS, None, None).status, 401);
    assert!(f.jobs().is_empty(), "nothing applied without auth");

    assert_eq!(send(&f, "POST", START_JOB, Some(TOKEN), Some(&body)).status, 201);
    let r = send(&f, "POST", START_JOB, Some(&format!("Bearer {TOKEN}")), Some(&job_body(2, T0, &["f0101"])));
    assert_eq!(r.status, 201, "a Bearer prefix inside X-Auth-Token: {}", r.text);
    assert_eq!(f.jobs().len(), 2);
    let auth: Vec<bool> = f.requests().iter().map(|r| r.auth).collect();
    assert_eq!(auth, [false, true, true, false, false, true, true]);
}

#[test]
fn routes_methods_and_content_types_outside_the_contract_are_refused() {
    let f = FakeCcBackend::start(config());
    let body = job_body(1, T0, &["f0101"]);
    assert_eq!(post(&f, "/api/jobs/start_job", &body).status, 404, "no trailing slash");
    assert_eq!(
        post(&f, "/api/nodestats/", &json!({"cluster": "fritz", "nodes": []})).status,
        404,
        "the swagger's path"
    );
    assert_eq!(post(&f, "/api/jobs/delete_job/", &body).status, 404);
    let r = send(&f, "GET", START_JOB, Some(TOKEN), None);
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST, PUT")));
    assert_eq!(send(&f, "DELETE", JOBS, Some(TOKEN), None).status, 405);
    let r = send_with(
        &http(Duration::from_secs(5)),
        &f,
        "POST",
        START_JOB,
        Some(TOKEN),
        Some(("text/plain", body.to_string().into_bytes())),
    )
    .unwrap();
    assert_eq!(r.status, 415);
    let r = send_with(
        &http(Duration::from_secs(5)),
        &f,
        "POST",
        START_JOB,
        Some(TOKEN),
        Some(("application/json", b"{".to_vec())),
    )
    .unwrap();
    assert_refused(&r, 400, "parsing request body failed");
    assert_refused(&post(&f, START_JOB, &json!([body])), 400, "cannot unmarshal array");
    assert!(f.jobs().is_empty());
    assert_eq!(send(&f, "PUT", START_JOB, Some(TOKEN), Some(&body)).status, 201, "PUT is routed too");
    let paths: Vec<(String, Outcome)> = f.requests().into_iter().map(|r| (r.path, r.outcome)).collect();
    assert_eq!(paths.len(), 9, "every request recorded: {paths:?}");
}

#[test]
fn unknown_fields_and_wrong_types_are_400_naming_the_field() {
    let f = FakeCcBackend::start(config());
    let b = job_body(1, T0, &["f0101"]);
    let cases = [
        (with(b.clone(), "jobName", json!("x")), "unknown field \"jobName\""),
        (with(b.clone(), "JobId", json!(1)), "unknown field \"JobId\""),
        (with(b.clone(), "resources", json!([{"hostname": "f0101", "gpus": 1}])), "unknown field \"gpus\""),
        (with(b.clone(), "numNodes", json!("1")), "Job.numNodes of type int32"),
        (with(b.clone(), "numNodes", json!(1.0)), "Job.numNodes of type int32"),
        (
            with(b.clone(), "numHwthreads", json!(3_000_000_000u64)),
            "number 3000000000 into Go struct field Job.numHwthreads",
        ),
        (with(b.clone(), "startTime", json!("1649723812")), "Job.startTime of type int64"),
        (with(b.clone(), "user", json!(7)), "Job.user of type string"),
        (with(b.clone(), "metaData", json!({"jobName": 1})), "Job.metaData of type string"),
        (
            with(b.clone(), "resources", json!([{"hostname": "f0101", "hwthreads": ["0"]}])),
            "Resource.resources.hwthreads of type int",
        ),
        (with(b.clone(), "resources", json!({"hostname": "f0101"})), "Job.resources of type []schema.Resource"),
        (with(b.clone(), "tags", json!([{"name": "x", "color": "red"}])), "unknown field \"color\""),
    ];
    for (body, text) in &cases {
        assert_refused(&post(&f, START_JOB, body), 400, text);
    }
    let stop_cases = [
        (with(stop_body(1, T0, "completed", T0 + 9), "exitCode", json!(0)), "unknown field \"exitCode\""),
        (with(stop_body(1, T0, "completed", T0 + 9), "jobId", json!("1")), "StopJobAPIRequest.jobId of type int64"),
        (with(stop_body(1, T0, "completed", T0 + 9), "stopTime", json!(1.5)), "StopJobAPIRequest.stopTime"),
    ];
    for (body, text) in &stop_cases {
        assert_refused(&post(&f, STOP_JOB, body), 400, text);
    }
    let node = |n: Value| json!({"cluster": "fritz", "nodes": [n]});
    assert_refused(
        &post(&f, NODE_STATE, &node(json!({"hostname": "f0101", "state": "idle"}))),
        400,
        "unknown field \"state\"",
    );
    assert_refused(
        &post(&f, NODE_STATE, &node(json!({"hostname": "f0101", "states": "idle"}))),
        400,
        "NodePayload.nodes.states",
    );
    assert!(f.jobs().is_empty() && f.node_states().is_empty());
    // null is Go's zero value, not a type error.
    assert_eq!(post(&f, START_JOB, &with(b, "partition", Value::Null)).status, 201);
}

#[test]
fn the_start_sanity_checks_refuse_in_cc_backends_order() {
    let f = FakeCcBackend::start(lax());
    let b = job_body(1, T0, &["f0101", "f0102"]);
    let cases = [
        (with(b.clone(), "cluster", json!("emmy")), "no such cluster: emmy"),
        (without(b.clone(), "cluster"), "no such cluster"),
        (with(b.clone(), "subCluster", json!("icx")), "subcluster icx unkown"),
        (with(b.clone(), "resources", json!([{"hostname": "x9"}, {"hostname": "f0101"}])), "no subcluster for node x9"),
        (with(b.clone(), "resources", json!([])), "job without any resources"),
        (with(b.clone(), "user", json!("")), "'resources' and 'user' should not be empty"),
        (without(b.clone(), "user"), "'resources' and 'user' should not be empty"),
        (with(b.clone(), "numNodes", json!(0)), "'numNodes', 'numAcc' or 'numHwthreads' invalid"),
        (with(b.clone(), "numAcc", json!(-1)), "'numNodes', 'numAcc' or 'numHwthreads' invalid"),
        (with(b.clone(), "numHwthreads", json!(-4)), "'numNodes', 'numAcc' or 'numHwthreads' invalid"),
        (with(b.clone(), "numNodes", json!(3)), "len(resources) does not equal numNodes (2 vs 3)"),
    ];
    for (body, text) in &cases {
        assert_refused(&post(&f, START_JOB, body), 400, text);
    }
    assert!(f.jobs().is_empty());
    // The sub-cluster comes from the first host; an empty node list takes any host.
    assert_eq!(post(&f, START_JOB, &job_body(5, T0, &["f0201"])).status, 201);
    let alex = with(job_body(6, T0, &["a0001"]), "cluster", json!("alex"));
    assert_eq!(post(&f, START_JOB, &alex).status, 201);
    let subs: Vec<String> = f.jobs().into_iter().map(|j| j.sub_cluster).collect();
    assert_eq!(subs, ["spr", "a40"]);

    // What only the strict mode refuses, cc-backend's own rules take.
    let strict_cases = [
        (with(b.clone(), "jobId", json!(0)), "jobId"),
        (without(b.clone(), "startTime"), "startTime"),
        (with(b.clone(), "startTime", json!(4_102_444_800i64)), "startTime"),
        (with(b.clone(), "shared", json!("exclusive")), "shared"),
        (with(b.clone(), "numHwthreads", json!(3)), "numHwthreads"),
        (
            with(b.clone(), "resources", json!([{"hostname": "f0101", "hwthreads": [1, 1]}, {"hostname": "f0102"}])),
            "resources[0].hwthreads",
        ),
        (
            with(
                b.clone(),
                "resources",
                json!([{"hostname": "f0101", "accelerators": ["00:10.0"]}, {"hostname": "f0102"}]),
            ),
            "numAcc",
        ),
    ];
    let strict = FakeCcBackend::start(config());
    for (i, (body, text)) in strict_cases.iter().enumerate() {
        assert_refused(&post(&strict, START_JOB, body), 400, text);
        let body = with(body.clone(), "cluster", json!("fritz"));
        let body = if body.get("jobId") == Some(&json!(0)) { body } else { with(body, "jobId", json!(100 + i)) };
        let r = post(&f, START_JOB, &body);
        assert_eq!(r.status, 201, "{text}: {}", r.text);
    }
    assert!(strict.jobs().is_empty());
    let r = post(
        &strict,
        START_JOB,
        &with(b, "resources", json!([{"hostname": "f0101", "accelerators": ["00:10.0"]}, {"hostname": "f0102"}])),
    );
    assert_refused(&r, 400, "numAcc");
}

#[test]
fn a_start_within_a_day_of_a_stored_one_is_422_and_a_second_stop_too() {
    let f = FakeCcBackend::start(config());
    assert_eq!(post(&f, START_JOB, &job_body(7, T0, &["f0101"])).status, 201);
    let dup = post(&f, START_JOB, &job_body(7, T0, &["f0101"]));
    assert_refused(&dup, 422, "a job with that jobId, cluster and startTime already exists: dbid: 1, jobid: 7");
    assert_refused(&post(&f, START_JOB, &job_body(7, T0 + 86_399, &["f0102"])), 422, "already exists");
    assert_refused(&post(&f, START_JOB, &job_body(7, T0 - 500_000, &["f0102"])), 422, "already exists");
    // Another cluster, another job id, or a day later (a reused id): a new job.
    assert_eq!(post(&f, START_JOB, &with(job_body(7, T0, &["a1"]), "cluster", json!("alex"))).status, 201);
    assert_eq!(post(&f, START_JOB, &job_body(8, T0, &["f0101"])).status, 201);
    assert_eq!(post(&f, START_JOB, &job_body(7, T0 + 86_400, &["f0101"])).status, 201);
    assert_eq!(f.jobs().len(), 4);

    assert_eq!(post(&f, STOP_JOB, &stop_body(8, T0, "failed", T0 + 60)).status, 200);
    let again = post(&f, STOP_JOB, &stop_body(8, T0, "completed", T0 + 90));
    assert_refused(&again, 422, "job has already been stopped (state is: failed)");
    let j = f.job("fritz", 8, T0).unwrap();
    assert_eq!((j.state.as_str(), j.stop_time), ("failed", Some(T0 + 60)), "the first stop stays");
}

/// An outage: stopped, the port refuses connections; resumed, the same port answers with what
/// was stored before.
#[test]
fn stopped_it_refuses_connections_and_resumed_on_its_port_it_kept_its_jobs() {
    let mut f = FakeCcBackend::start(config());
    let url = f.base_url();
    assert_eq!(post(&f, START_JOB, &job_body(7, T0, &["f0101"])).status, 201);
    f.stop();
    let refused = send_with(&http(Duration::from_secs(2)), &f, "GET", JOBS, Some(TOKEN), None);
    assert!(refused.as_ref().is_err_and(|e| e.is_connect()), "{:?}", refused.map(|r| r.status));
    f.resume();
    assert_eq!(f.base_url(), url);
    assert_refused(&post(&f, START_JOB, &job_body(7, T0, &["f0101"])), 422, "already exists");
    assert_eq!(post(&f, STOP_JOB, &stop_body(7, T0, "completed", T0 + 60)).status, 200);
    assert_eq!(f.jobs().len(), 1);
    assert_eq!(f.requests().len(), 3, "the refused connection reached nothing");
}

#[test]
fn a_stop_stops_the_row_its_start_time_names() {
    let f = FakeCcBackend::start(lax());
    let day2 = T0 + 2 * 86_400;
    assert_eq!(post(&f, START_JOB, &job_body(9, T0, &["f0101"])).status, 201);
    assert_eq!(post(&f, START_JOB, &job_body(9, day2, &["f0101"])).status, 201);

    let r = post(&f, STOP_JOB, &stop_body(9, T0, "timeout", T0 + 3600));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.json()["startTime"].as_i64(), r.json()["jobState"].as_str()), (Some(T0), Some("timeout")));
    assert_eq!(f.job("fritz", 9, T0).unwrap().state, "timeout");
    assert_eq!(f.job("fritz", 9, day2).unwrap().state, "running", "the newer row is untouched");

    assert_refused(&post(&f, STOP_JOB, &stop_body(9, T0 + 1, "completed", day2)), 404, "finding job failed");
    assert_refused(
        &post(&f, STOP_JOB, &with(stop_body(9, day2, "completed", day2), "cluster", json!("alex"))),
        404,
        "",
    );
    assert_refused(&post(&f, STOP_JOB, &stop_body(10, T0, "completed", day2)), 404, "");
    assert_refused(
        &post(&f, STOP_JOB, &without(stop_body(9, day2, "completed", day2), "jobId")),
        400,
        "'jobId' is required",
    );
    assert_refused(
        &post(&f, STOP_JOB, &stop_body(9, day2, "completed", day2 - 1)),
        400,
        "must be larger/equal than startTime",
    );
    assert_refused(&post(&f, STOP_JOB, &stop_body(9, day2, "COMPLETED", day2 + 5)), 400, "invalid requested job state");
    assert_refused(
        &post(&f, STOP_JOB, &stop_body(9, day2, "out-of-memory", day2 + 5)),
        400,
        "invalid requested job state",
    );

    // cc-backend alone: no state means completed; no startTime stops the newest row.
    let r = post(&f, STOP_JOB, &json!({"jobId": 9, "cluster": "fritz", "stopTime": day2 + 5}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(f.job("fritz", 9, day2).unwrap().state, "completed");

    let strict = FakeCcBackend::start(config());
    assert_eq!(post(&strict, START_JOB, &job_body(9, T0, &["f0101"])).status, 201);
    for k in ["cluster", "startTime", "jobState", "stopTime"] {
        assert_refused(
            &post(&strict, STOP_JOB, &without(stop_body(9, T0, "completed", T0 + 5), k)),
            400,
            &format!("'{k}'"),
        );
    }
    for s in ["running", "pending"] {
        assert_refused(&post(&strict, STOP_JOB, &stop_body(9, T0, s, T0 + 5)), 400, "not a final state");
    }
    assert_eq!(post(&strict, STOP_JOB, &stop_body(9, T0, "out_of_memory", T0 + 5)).status, 200);
}

#[test]
fn running_jobs_are_listed_by_cluster_newest_first() {
    let f = FakeCcBackend::start(config());
    for (id, start) in [(1, T0), (2, T0 + 10), (3, T0 + 20), (4, T0 + 30)] {
        assert_eq!(post(&f, START_JOB, &job_body(id, start, &["f0101"])).status, 201);
    }
    assert_eq!(post(&f, START_JOB, &with(job_body(5, T0, &["a1"]), "cluster", json!("alex"))).status, 201);
    assert_eq!(post(&f, STOP_JOB, &stop_body(2, T0 + 10, "completed", T0 + 99)).status, 200);

    let ids = |r: &Resp| -> Vec<i64> {
        r.json()["jobs"].as_array().unwrap().iter().map(|j| j["jobId"].as_i64().unwrap()).collect()
    };
    let r = get(&f, "/api/jobs/?state=running&cluster=fritz&items-per-page=9999999&page=1&with-metadata=false");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), [4, 3, 1]);
    let v = r.json();
    assert_eq!((v["items"].as_i64(), v["page"].as_i64()), (Some(9_999_999), Some(1)), "items is the page size asked");
    assert_eq!(v["jobs"][0]["metaData"]["jobName"], "j4", "cc-backend: with-metadata present, even =false, means with");
    assert!(get(&f, "/api/jobs/?state=running").json()["jobs"][0].get("metaData").is_none(), "without: left out");
    assert_eq!(v["jobs"][0]["jobState"], "running");
    assert_eq!(v["jobs"][0]["id"], 4);
    let r = get(&f, "/api/jobs/?cluster=fritz&with-metadata=true&items-per-page=2&page=2");
    assert_eq!(ids(&r), [2, 1]);
    assert_eq!(r.json()["jobs"][0]["metaData"]["jobName"], "j2");
    assert_eq!(ids(&get(&f, &format!("/api/jobs/?start-time={}-{}", T0 + 5, T0 + 20))), [3, 2]);
    assert_eq!(ids(&get(&f, "/api/jobs/?state=completed&state=failed")), [2]);
    assert_eq!(ids(&get(&f, "/api/jobs/")).len(), 5, "25 per page by default");
    assert_refused(&get(&f, "/api/jobs/?state=stopped"), 400, "invalid query parameter value: state");
    assert_refused(&get(&f, "/api/jobs/?clusters=fritz"), 400, "invalid query parameter: clusters");
    assert_refused(&get(&f, "/api/jobs/?start-time=5"), 400, "startTime");
    assert_refused(&get(&f, "/api/jobs/?page=x"), 400, "");
}

#[test]
fn node_states_are_taken_at_the_routers_path() {
    let f = FakeCcBackend::start(config());
    let body = json!({"cluster": "fritz", "nodes": [
        {"hostname": "f0101", "states": ["ALLOCATED"], "cpusAllocated": 72, "memoryAllocated": 1000, "gpusAllocated": 0, "jobsRunning": 1},
        {"hostname": "f0102", "states": ["IDLE", "DRAIN"]}]});
    let r = post(&f, NODE_STATE, &body);
    assert_eq!((r.status, r.text.as_str()), (200, ""), "the handler writes no body");
    let posts = f.node_states();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].cluster, "fritz");
    assert_eq!(Value::Array(posts[0].nodes.clone()), body["nodes"]);
    assert_refused(&post(&f, NODE_STATE, &with(body.clone(), "cluster", json!("emmy"))), 400, "cluster");
    assert_refused(
        &post(&f, NODE_STATE, &json!({"cluster": "fritz", "nodes": [{"states": ["IDLE"]}]})),
        400,
        "nodes[0].hostname",
    );
    let loose = FakeCcBackend::start(lax());
    assert_eq!(
        post(&loose, NODE_STATE, &with(body, "cluster", json!("emmy"))).status,
        200,
        "cc-backend does not check"
    );
    assert_eq!(f.node_states().len(), 1);
}

#[test]
fn each_scripted_fault_behaves_as_documented() {
    let mut f = FakeCcBackend::start(config());
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
    let start = |id: i64| {
        let body = job_body(id, T0, &["f0101"]).to_string().into_bytes();
        send_with(&http(Duration::from_secs(10)), &f, "POST", START_JOB, Some(TOKEN), Some(("application/json", body)))
    };
    let started = |f: &FakeCcBackend| -> Vec<i64> { f.jobs().iter().map(|j| j.job_id).collect() };

    // Refused requests and reads take no scripted fault: the queue waits for a valid write.
    assert_eq!(post(&f, START_JOB, &with(job_body(1, T0, &["f0101"]), "numNodes", json!(2))).status, 400);
    assert_eq!(get(&f, JOBS).status, 200);
    assert_eq!(start(1).unwrap().status, 201);
    assert_eq!(start(1).unwrap().status, 422, "a refusal (422) takes no fault");

    let r = start(2).unwrap();
    assert_refused(&r, 503, "injected");
    assert_eq!(started(&f), [1], "5xx before: not applied");
    let r = start(3).unwrap();
    assert_eq!((r.status, r.header("Retry-After")), (429, Some("7")));
    assert_eq!(started(&f), [1], "429: not applied");
    let e = start(4).err().expect("drop before: no answer");
    assert!(!e.is_timeout(), "{e}");
    assert_eq!(started(&f), [1], "drop before: not applied");
    let e = start(5).err().expect("drop after: no answer");
    assert!(!e.is_timeout(), "{e}");
    assert_eq!(started(&f), [1, 5], "drop after: applied");
    assert_eq!(start(5).unwrap().status, 422, "the resend of an applied start is 422");
    // The stop after which the answer is 502 was applied: its resend is 422.
    assert_eq!(post(&f, STOP_JOB, &stop_body(5, T0, "completed", T0 + 9)).status, 502);
    assert_eq!(f.job("fritz", 5, T0).unwrap().state, "completed", "5xx after: applied");
    assert_refused(&post(&f, STOP_JOB, &stop_body(5, T0, "completed", T0 + 9)), 422, "already been stopped");
    let t = Instant::now();
    assert_eq!(start(7).unwrap().status, 201);
    assert!(t.elapsed() >= Duration::from_millis(300), "slow: {:?}", t.elapsed());
    let body = job_body(8, T0, &["f0101"]).to_string().into_bytes();
    let impatient = http(Duration::from_millis(300));
    let e = send_with(&impatient, &f, "POST", START_JOB, Some(TOKEN), Some(("application/json", body)))
        .err()
        .expect("timeout after: no answer in time");
    assert!(e.is_timeout(), "{e}");
    assert_eq!(started(&f), [1, 5, 7, 8], "timeout after: applied before the client gave up");
    assert_eq!(start(9).unwrap().status, 201, "the queue is spent");

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
        (Status(422), None),
        (Status(503), Some(kinds[0])),
        (Status(429), Some(kinds[1])),
        (Dropped, Some(kinds[2])),
        (Dropped, Some(kinds[3])),
        (Status(422), None),
        (Status(502), Some(kinds[4])),
        (Status(422), None),
        (Status(201), Some(kinds[5])),
        (Status(201), Some(kinds[6])),
        (Status(201), None),
    ];
    assert_eq!(log, want, "one request each: the client did not retry");
    let ids: Vec<i64> = f.jobs().iter().map(|j| j.db_id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "a before-fault takes no db id");

    let t = Instant::now();
    f.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "stop does not wait for the 30 s answer: {:?}", t.elapsed());
    assert!(
        send_with(&http(Duration::from_secs(2)), &f, "GET", JOBS, Some(TOKEN), None).is_err(),
        "the port is closed"
    );
}

#[test]
fn random_faults_follow_the_seed_and_are_counted() {
    let mix = FaultMix {
        weights: vec![(0.2, Fault::DropBefore), (0.2, Fault::Status5xxBefore(500)), (0.2, Fault::DropAfter)],
        on_get: false,
    };
    let run = |seed: u64| {
        let f = FakeCcBackend::start(CcConfig { seed, faults: mix.clone(), ..config() });
        let client = http(Duration::from_secs(10));
        for id in 1..=40 {
            let body = job_body(id, T0, &["f0101"]).to_string().into_bytes();
            let _ = send_with(&client, &f, "POST", START_JOB, Some(TOKEN), Some(("application/json", body)));
        }
        assert_eq!(get(&f, JOBS).status, 200, "reads take no fault unless on_get");
        let counts = f.fault_counts();
        let faulted = f.requests().iter().filter(|r| r.fault.is_some()).count() as u64;
        assert_eq!(counts.values().sum::<u64>(), faulted);
        let before =
            counts.get(&FaultKind::DropBefore).unwrap_or(&0) + counts.get(&FaultKind::Status5xxBefore).unwrap_or(&0);
        assert_eq!(f.jobs().len() as u64, 40 - before, "every start but the before-faulted ones applied");
        let log: Vec<(Outcome, Option<Fault>)> =
            f.requests().into_iter().map(|r: CcRequest| (r.outcome, r.fault)).collect();
        (log, counts)
    };
    let (a, counts) = run(11);
    let (b, _) = run(11);
    assert_eq!(a, b, "same seed, same faults");
    assert!(counts.len() == 3 && counts.values().all(|n| *n > 0), "40 draws hit every kind: {counts:?}");
    let (c, _) = run(12);
    assert_ne!(a, c, "another seed, other faults");

    let f = FakeCcBackend::start(config());
    f.set_mix(FaultMix { weights: vec![(1.0, Fault::Status5xxBefore(504))], on_get: true });
    assert_eq!(get(&f, JOBS).status, 504);
    assert_eq!(post(&f, NODE_STATE, &json!({"cluster": "fritz", "nodes": []})).status, 504);
    f.set_mix(FaultMix::default());
    assert_eq!(post(&f, NODE_STATE, &json!({"cluster": "fritz", "nodes": []})).status, 200);
}

/// cc-backend decodes node states as `api.UpdateNodeStatesRequest` with unknown fields refused:
/// a field `schema.NodePayload` lacks (older cc-backends had `cpusTotal`), a count as text, or
/// states as one string are 400 naming the field, and nothing is recorded.
#[test]
fn a_bad_node_state_body_is_400_naming_the_field() {
    let f = FakeCcBackend::start(config());
    let node = json!({"hostname": "f0101", "states": ["mixed"], "cpusAllocated": 7, "memoryAllocated": 1792, "gpusAllocated": 2});
    let body = |n: Value| json!({"cluster": "fritz", "nodes": [n]});
    assert_refused(
        &post(&f, NODE_STATE, &body(with(node.clone(), "cpusTotal", json!(8)))),
        400,
        "unknown field \"cpusTotal\"",
    );
    assert_refused(
        &post(&f, NODE_STATE, &body(with(node.clone(), "cpusAllocated", json!("7")))),
        400,
        "cannot unmarshal string into Go struct field NodePayload.nodes.cpusAllocated of type int",
    );
    assert_refused(&post(&f, NODE_STATE, &body(with(node.clone(), "states", json!("mixed")))), 400, "of type []string");
    assert_refused(
        &post(&f, NODE_STATE, &with(body(node.clone()), "nodeList", json!([]))),
        400,
        "unknown field \"nodeList\"",
    );
    assert!(f.node_states().is_empty(), "nothing refused is recorded");
    assert_eq!(post(&f, NODE_STATE, &body(node)).status, 200);
    assert_eq!(
        post(&f, "/api/nodestats/", &json!({"cluster": "fritz", "nodes": []})).status,
        404,
        "the swagger's path"
    );
    assert_eq!(f.node_states().len(), 1);
}
