//! A fake of ClusterCockpit cc-backend's job REST API (what cc-slurm-adapter uses) that enforces
//! the contract and injects faults.
//!
//! Contract: /work/shared/contracts.md §3.1–3.3, specs/cc-backend/swagger-jobs-excerpt.json
//! (`schema.Job`, `api.StopJobAPIRequest`, `api.UpdateNodeStatesRequest`, `schema.NodePayload`,
//! `schema.JobState`) and specs/cc-slurm-adapter/payloads.json (the adapter's request shapes and
//! cc-backend's answers). Routes, each with its trailing slash (chi: without it, 404):
//! `POST|PUT /api/jobs/start_job/`, `POST|PUT /api/jobs/stop_job/`, `GET /api/jobs/` and the
//! node states at the router's `POST|PUT /api/nodestate/` (the swagger's `/api/nodestats/` is 404,
//! as on the real server).
//!
//! Checks, in this order: route (404) → `X-Auth-Token: <token>` or `X-Auth-Token: Bearer <token>`
//! (401, `{"status": "Unauthorized", "error": …}`) → method (405) → `Content-Type:
//! application/json` on writes (415) → JSON (400) → Go's decoder (400): unknown fields
//! (`DisallowUnknownFields`, also in nested objects) and wrong types, both naming the field
//! (`json: unknown field "x"`, `json: cannot unmarshal string into Go struct field Job.numNodes of
//! type int32`, ints checked against their Go width) → the handler's checks. Errors are cc-backend's
//! `{"status": "<status text>", "error": "<message>"}`.
//!
//! - start_job: cc-backend's `SanityChecks` in its order: the cluster is configured (400 "no such
//!   cluster"); a sub-cluster: the one given must exist, else the first whose node list holds
//!   `resources[0].hostname` (a sub-cluster with no node list takes any host) (400); `resources` and
//!   `user` not empty; `numNodes ≥ 1`, `numAcc, numHwthreads ≥ 0`; `len(resources) == numNodes`.
//!   Then the duplicate rule, as cc-backend has it (signed, §3.3): any stored job with this `jobId`
//!   and `cluster` and `req.startTime − stored.startTime < 86400` → 422 "a job with that jobId,
//!   cluster and startTime already exists". Stored with `jobState = running`, `shared` defaulting to
//!   "none", `monitoringStatus` to 1, a new db `id`. 201 `{"msg":"success"}`.
//! - stop_job: `jobId` required (400); the job is the newest row (highest db id) with that `jobId`,
//!   and `cluster` and `startTime` when given (none: 404 "finding job failed: sql: no rows in result
//!   set"); not running → 422 "job has already been stopped (state is: X)"; `stopTime < startTime`
//!   → 400; a `jobState` outside `schema.JobState` → 400; none → `completed`. 200 with the full job.
//! - `GET /api/jobs/`: `state` (repeatable, `schema.JobState`), `cluster`, `project`, `start-time`
//!   (`from-to`, inclusive), `items-per-page` (25), `page` (1), `with-metadata` (present with any
//!   value, even `false`, as cc-backend reads it; else `metaData` is left out); any other parameter
//!   400 "invalid query parameter: X". Newest `startTime` first.
//!   `{jobs, items, page}` where `items` is the page size asked, not the count (as cc-backend does).
//! - nodestate: decoded as `UpdateNodeStatesRequest`; answered 200 with an empty body (the handler
//!   writes none). Each post is recorded as sent.
//!
//! Stricter than cc-backend, on purpose, unless [`CcConfig::strict`] is off (a sink bug the real
//! server would swallow): start: `jobId ≥ 1`; `startTime ≥ 1` and at most a day after the fake's
//! clock; `shared` one of none/single_user/multi_user; no hwthread listed twice on one host;
//! `numHwthreads` ≥ the hwthreads listed; `numAcc` = the accelerators listed when any is listed.
//! stop: `cluster`, `startTime`, `jobState` and `stopTime` present (the adapter's missing
//! `startTime` stops the newest row, §3.3), and `jobState` not `running`/`pending`. nodestate: the
//! cluster is configured and each node has a `hostname`. Always stricter: field names match
//! exactly (Go's decoder ignores case), the body is one JSON value with nothing after it, writes
//! need `Content-Type: application/json` (cc-backend does not look).
//!
//! Faults (the ACTIVATE fake's [`Fault`] and [`FaultMix`]) are drawn only for requests that pass
//! every check (a 404 or 422 is a refusal and takes none): writes take the scripted queue first,
//! then the seeded random mix; reads take only the mix, and only with `FaultMix::on_get`. "Before"
//! faults apply nothing; "After" faults apply the write, then answer badly or not at all. Check,
//! draw and apply happen under one lock, so concurrent requests see each write whole.
//!
//! Not faked: JWT validation and roles (one configured opaque token; `Authorization: Bearer` is 401
//! here), 403, archiving, metric data, tags as objects of their own, the job cache table, other
//! routes (`/api/jobs/{id}`, delete, edit_meta, tag_job: 404 here), NATS, TLS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

pub use super::activate::{Fault, FaultKind, FaultMix, Outcome};
use super::faults::Faults;
use super::http::{Reply, Request, Response, Server};

pub const START_JOB: &str = "/api/jobs/start_job/";
pub const STOP_JOB: &str = "/api/jobs/stop_job/";
pub const JOBS: &str = "/api/jobs/";
/// The router's path (the swagger's `/api/nodestats/` is not routed).
pub const NODE_STATE: &str = "/api/nodestate/";

/// cc-backend's `schema.JobState` values.
pub const JOB_STATES: [&str; 12] = [
    "boot_fail",
    "cancelled",
    "completed",
    "deadline",
    "failed",
    "node_fail",
    "out_of_memory",
    "pending",
    "preempted",
    "running",
    "suspended",
    "timeout",
];

const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
pub struct CcConfig {
    /// The JWT the fake accepts in `X-Auth-Token` (with or without `Bearer `).
    pub token: String,
    /// The clusters of cc-backend's archive config.
    pub clusters: Vec<Cluster>,
    /// The stricter checks of the module doc (default on).
    pub strict: bool,
    /// Seeds the random fault draws.
    pub seed: u64,
    pub faults: FaultMix,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub sub_clusters: Vec<SubCluster>,
}

#[derive(Debug, Clone)]
pub struct SubCluster {
    pub name: String,
    /// Hostnames of this sub-cluster; empty: any host (cc-backend's empty node list).
    pub nodes: Vec<String>,
}

impl CcConfig {
    /// One cluster with one sub-cluster `main` holding these hosts; strict, no faults.
    pub fn new(token: &str, cluster: &str, hosts: &[&str]) -> CcConfig {
        let main = SubCluster { name: "main".into(), nodes: hosts.iter().map(|h| h.to_string()).collect() };
        CcConfig {
            token: token.into(),
            clusters: vec![Cluster { name: cluster.into(), sub_clusters: vec![main] }],
            strict: true,
            seed: 0,
            faults: FaultMix::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What tests read

/// A job as stored: started, and stopped once a stop was accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct CcJob {
    pub db_id: i64,
    pub job_id: i64,
    pub cluster: String,
    pub sub_cluster: String,
    pub start_time: i64,
    /// `running`, or the state the stop gave.
    pub state: String,
    pub stop_time: Option<i64>,
    /// The job as cc-backend returns it (the start body with the server's fields).
    pub job: Value,
    /// The accepted stop body.
    pub stop: Option<Value>,
}

/// One accepted node-state post.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatePost {
    pub cluster: String,
    pub nodes: Vec<Value>,
}

/// Every request that reached the fake as HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct CcRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: String,
    /// An `X-Auth-Token` header was present (whatever it held).
    pub auth: bool,
    pub outcome: Outcome,
    pub fault: Option<Fault>,
    /// When the request was read whole (unix seconds).
    pub received_at: f64,
}

pub struct FakeCcBackend {
    shared: Arc<Shared>,
    server: Server,
}

impl FakeCcBackend {
    /// Starts listening on 127.0.0.1 (a free port). Panics on an unusable config, port or mix.
    pub fn start(cfg: CcConfig) -> FakeCcBackend {
        assert!(!cfg.token.is_empty(), "fake cc-backend: empty token");
        assert!(!cfg.clusters.is_empty(), "fake cc-backend: no cluster");
        assert!(
            cfg.clusters.iter().all(|c| !c.sub_clusters.is_empty()),
            "fake cc-backend: a cluster without sub-cluster"
        );
        let state = State { faults: Faults::new(cfg.faults.clone(), cfg.seed), ..State::default() };
        let shared = Arc::new(Shared { cfg, state: Mutex::new(state) });
        let server = Server::start(handler(&shared)).expect("fake cc-backend: bind 127.0.0.1:0");
        FakeCcBackend { shared, server }
    }

    /// Back after [`FakeCcBackend::stop`] (an outage): listens again on the same port, with the same jobs,
    /// requests and fault plan. Retries the bind for at most 5 s (the port is briefly in use).
    pub fn resume(&mut self) {
        let addr = self.server.addr();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        self.server = loop {
            match Server::start_at(addr, handler(&self.shared)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "fake cc-backend: bind {addr} again: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash (the adapter's `ccRestUrl`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Every stored job, in start order.
    pub fn jobs(&self) -> Vec<CcJob> {
        self.shared.state().jobs.clone()
    }

    /// The job stored for (cluster, jobId, startTime), if any.
    pub fn job(&self, cluster: &str, job_id: i64, start_time: i64) -> Option<CcJob> {
        let st = self.shared.state();
        st.jobs.iter().find(|j| j.cluster == cluster && j.job_id == job_id && j.start_time == start_time).cloned()
    }

    pub fn node_states(&self) -> Vec<NodeStatePost> {
        self.shared.state().node_posts.clone()
    }

    pub fn requests(&self) -> Vec<CcRequest> {
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

    /// Closes the port now (connections to it are refused; delayed answers are never sent);
    /// connection threads end within tens of milliseconds. What the fake stored stays for
    /// [`FakeCcBackend::resume`]. Also on drop.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

fn handler(shared: &Arc<Shared>) -> super::http::Handler {
    let s = shared.clone();
    Arc::new(move |req: &Request| s.handle(req))
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    cfg: CcConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: Vec<CcJob>,
    node_posts: Vec<NodeStatePost>,
    next_id: i64,
    requests: Vec<CcRequest>,
    faults: Faults,
}

impl State {
    fn draw(&mut self, is_write: bool) -> Option<Fault> {
        self.faults.draw(is_write)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    StartJob,
    StopJob,
    Jobs,
    NodeState,
}

fn route(path: &str) -> Option<Route> {
    match path {
        START_JOB => Some(Route::StartJob),
        STOP_JOB => Some(Route::StopJob),
        JOBS => Some(Route::Jobs),
        NODE_STATE => Some(Route::NodeState),
        _ => None,
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// cc-backend's `api.ErrorResponse`.
fn error(status: u16, msg: &str) -> Response {
    Response::json(status, &json!({ "status": status_text(status), "error": msg }))
}

fn bad(msg: &str) -> Response {
    error(400, msg)
}

/// A checked write, applied under the lock after the fault draw.
enum Write {
    Start(Box<CcJob>),
    /// Index into `jobs`, the state, the stop time, the body.
    Stop(usize, String, i64, Value),
    Nodes(NodeStatePost),
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, req: &Request) -> Reply {
        let received_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let (reply, fault) = self.answer(req);
        let outcome = match &reply {
            Reply::Drop => Outcome::Dropped,
            Reply::Send { response, .. } => Outcome::Status(response.status),
        };
        self.state().requests.push(CcRequest {
            method: req.method.clone(),
            path: req.path().to_string(),
            query: req.query().unwrap_or_default(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            auth: req.header("X-Auth-Token").is_some(),
            outcome,
            fault,
            received_at,
        });
        reply
    }

    fn answer(&self, req: &Request) -> (Reply, Option<Fault>) {
        let now = |r: Response| Reply::Send { delay: Duration::ZERO, response: r };
        let route = match self.check_request(req) {
            Ok(r) => r,
            Err(refusal) => return (now(refusal), None),
        };
        // Decoding needs no state; the handler's checks, the draw and the write share one lock.
        let body = match route {
            Route::Jobs => None,
            _ => match decode(req, route) {
                Ok(b) => Some(b),
                Err(refusal) => return (now(refusal), None),
            },
        };
        let mut st = self.state();
        let checked = match (route, body) {
            (Route::Jobs, _) => self.list_jobs(&st, req).map(|r| (r, None)),
            (Route::StartJob, Some(b)) => self.check_start(&st, b).map(|w| (created(), Some(w))),
            (Route::StopJob, Some(b)) => self.check_stop(&st, b).map(|w| (Response::json(200, &json!({})), Some(w))),
            (Route::NodeState, Some(b)) => self.check_nodes(b).map(|w| (empty_ok(), Some(w))),
            _ => unreachable!("writes have a body"),
        };
        let (mut response, write) = match checked {
            Ok(x) => x,
            Err(refusal) => return (now(refusal), None),
        };
        let fault = st.draw(write.is_some());
        match &fault {
            Some(Fault::Status5xxBefore(c)) => return (now(error(*c, "injected fault")), fault),
            Some(Fault::TooMany { retry_after_secs: s }) => {
                let r = error(429, "injected fault").with_header("Retry-After", &s.to_string());
                return (now(r), fault);
            }
            Some(Fault::DropBefore) => return (Reply::Drop, fault),
            _ => {}
        }
        if let Some(w) = write {
            if let Some(job) = apply(&mut st, w) {
                response = Response::json(200, &job);
            }
        }
        drop(st);
        let reply = match &fault {
            Some(Fault::Status5xxAfter(c)) => now(error(*c, "injected fault (the write was applied)")),
            Some(Fault::DropAfter) => Reply::Drop,
            Some(Fault::TimeoutAfter { secs }) => Reply::Send { delay: Duration::from_secs(*secs), response },
            Some(Fault::Slow { millis }) => Reply::Send { delay: Duration::from_millis(*millis), response },
            _ => now(response),
        };
        (reply, fault)
    }

    /// Route, auth, method, content type.
    fn check_request(&self, req: &Request) -> Result<Route, Response> {
        let route = route(req.path()).ok_or_else(|| error(404, "404 page not found"))?;
        let token = req.header("X-Auth-Token").ok_or_else(|| error(401, "missing X-Auth-Token"))?;
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        if token != self.cfg.token {
            return Err(error(401, "token is unverifiable: invalid token"));
        }
        let allowed: &[&str] = if route == Route::Jobs { &["GET"] } else { &["POST", "PUT"] };
        if !allowed.contains(&req.method.as_str()) {
            return Err(
                error(405, &format!("method {} not allowed", req.method)).with_header("Allow", &allowed.join(", "))
            );
        }
        if route != Route::Jobs {
            let ct = req.header("Content-Type").unwrap_or("");
            if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
                return Err(error(415, &format!("Content-Type {ct:?} is not application/json")));
            }
        }
        Ok(route)
    }

    fn check_start(&self, st: &State, mut job: Map<String, Value>) -> Result<Write, Response> {
        let strict = self.cfg.strict;
        let int = |k: &str| job.get(k).and_then(Value::as_i64).unwrap_or(0);
        let text = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (job_id, start_time, cluster_name) = (int("jobId"), int("startTime"), text("cluster"));
        let resources: Vec<Map<String, Value>> = job
            .get("resources")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| r.as_object().cloned()).collect())
            .unwrap_or_default();
        // SanityChecks, in cc-backend's order.
        let cluster = self.cfg.clusters.iter().find(|c| c.name == cluster_name);
        let cluster = cluster.ok_or_else(|| bad(&format!("no such cluster: {cluster_name}")))?;
        let given = text("subCluster");
        let sub_cluster = if !given.is_empty() {
            if !cluster.sub_clusters.iter().any(|s| s.name == given) {
                return Err(bad(&format!("already assigned subcluster {given} unkown (cluster: {cluster_name})")));
            }
            given
        } else {
            let host0 = resources.first().and_then(|r| r.get("hostname")).and_then(Value::as_str);
            let Some(host0) = host0.or(resources.first().map(|_| "")) else {
                return Err(bad("job without any resources/hosts"));
            };
            let sc = cluster.sub_clusters.iter().find(|s| s.nodes.iter().any(|n| n == host0));
            let sc = sc.or_else(|| cluster.sub_clusters.first().filter(|s| s.nodes.is_empty()));
            sc.ok_or_else(|| bad(&format!("no subcluster for node {host0} (cluster: {cluster_name})")))?.name.clone()
        };
        if resources.is_empty() || text("user").is_empty() {
            return Err(bad("'resources' and 'user' should not be empty"));
        }
        let (nodes, acc, hwt) = (int("numNodes"), int("numAcc"), int("numHwthreads"));
        if acc < 0 || hwt < 0 || nodes < 1 {
            return Err(bad("'numNodes', 'numAcc' or 'numHwthreads' invalid"));
        }
        if resources.len() as i64 != nodes {
            return Err(bad(&format!("len(resources) does not equal numNodes ({} vs {nodes})", resources.len())));
        }
        if strict {
            self.strict_start(&job, &resources)?;
        }
        // Duplicates: cc-backend's signed 24 h rule.
        if let Some(d) =
            st.jobs.iter().find(|j| j.job_id == job_id && j.cluster == cluster_name && start_time - j.start_time < DAY)
        {
            return Err(error(
                422,
                &format!(
                    "a job with that jobId, cluster and startTime already exists: dbid: {}, jobid: {}",
                    d.db_id, d.job_id
                ),
            ));
        }
        let no_shared = text("shared").is_empty();
        job.insert("jobState".into(), json!("running"));
        job.insert("subCluster".into(), json!(sub_cluster));
        if no_shared {
            job.insert("shared".into(), json!("none"));
        }
        job.entry("monitoringStatus").or_insert(json!(1));
        Ok(Write::Start(Box::new(CcJob {
            db_id: 0,
            job_id,
            cluster: cluster_name,
            sub_cluster,
            start_time,
            state: "running".into(),
            stop_time: None,
            job: Value::Object(job),
            stop: None,
        })))
    }

    fn strict_start(&self, job: &Map<String, Value>, resources: &[Map<String, Value>]) -> Result<(), Response> {
        let int = |k: &str| job.get(k).and_then(Value::as_i64);
        if int("jobId").unwrap_or(0) < 1 {
            return Err(bad("jobId: must be ≥ 1 (strict: cc-backend stores 0)"));
        }
        let start = int("startTime").unwrap_or(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if start < 1 || start > now + DAY {
            return Err(bad(&format!("startTime: {start} is not a plausible epoch second (strict)")));
        }
        if let Some(s) = job.get("shared").and_then(Value::as_str) {
            if !["none", "single_user", "multi_user"].contains(&s) {
                return Err(bad(&format!("shared: {s:?} is not none, single_user or multi_user (strict)")));
            }
        }
        let (mut threads, mut accs, mut any_acc) = (0i64, 0i64, false);
        for (i, r) in resources.iter().enumerate() {
            let list = |k: &str| r.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
            let hw = list("hwthreads");
            let mut ids: Vec<i64> = hw.iter().filter_map(Value::as_i64).collect();
            ids.sort_unstable();
            if ids.windows(2).any(|w| w[0] == w[1]) {
                return Err(bad(&format!("resources[{i}].hwthreads: a hwthread listed twice (strict)")));
            }
            threads += ids.len() as i64;
            any_acc |= r.contains_key("accelerators");
            accs += list("accelerators").len() as i64;
        }
        if int("numHwthreads").unwrap_or(0) < threads {
            return Err(bad(&format!("numHwthreads: fewer than the {threads} hwthreads listed in resources (strict)")));
        }
        if any_acc && int("numAcc").unwrap_or(0) != accs {
            return Err(bad(&format!("numAcc: not the {accs} accelerators listed in resources (strict)")));
        }
        Ok(())
    }

    fn check_stop(&self, st: &State, body: Map<String, Value>) -> Result<Write, Response> {
        let Some(job_id) = body.get("jobId").and_then(Value::as_i64) else {
            return Err(bad("the field 'jobId' is required"));
        };
        let cluster = body.get("cluster").and_then(Value::as_str);
        let start = body.get("startTime").and_then(Value::as_i64);
        let state = body.get("jobState").and_then(Value::as_str).unwrap_or("");
        let stop_time = body.get("stopTime").and_then(Value::as_i64).unwrap_or(0);
        if self.cfg.strict {
            for k in ["cluster", "startTime", "jobState", "stopTime"] {
                if body.get(k).map_or(true, Value::is_null) {
                    return Err(bad(&format!(
                        "the field '{k}' is required (strict: without it cc-backend stops the newest row)"
                    )));
                }
            }
            if matches!(state, "running" | "pending") {
                return Err(bad(&format!("jobState: {state:?} is not a final state (strict)")));
            }
        }
        let found = st
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| {
                j.job_id == job_id
                    && cluster.map_or(true, |c| c == j.cluster)
                    && start.map_or(true, |s| s == j.start_time)
            })
            .max_by_key(|(_, j)| j.db_id);
        let Some((idx, job)) = found else {
            return Err(error(404, "finding job failed: sql: no rows in result set"));
        };
        let who = format!("jobId {} (id {}) on {}", job.job_id, job.db_id, job.cluster);
        if job.state != "running" {
            return Err(error(422, &format!("{who} : job has already been stopped (state is: {})", job.state)));
        }
        if job.start_time > stop_time {
            return Err(bad(&format!(
                "{who} : stopTime {stop_time} must be larger/equal than startTime {}",
                job.start_time
            )));
        }
        if !state.is_empty() && !JOB_STATES.contains(&state) {
            return Err(bad(&format!("{who} : invalid requested job state: {state:?}")));
        }
        let state = if state.is_empty() { "completed" } else { state };
        Ok(Write::Stop(idx, state.to_string(), stop_time, Value::Object(body)))
    }

    fn check_nodes(&self, body: Map<String, Value>) -> Result<Write, Response> {
        let cluster = body.get("cluster").and_then(Value::as_str).unwrap_or("").to_string();
        let nodes = body.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default();
        if self.cfg.strict {
            if !self.cfg.clusters.iter().any(|c| c.name == cluster) {
                return Err(bad(&format!("cluster: no such cluster: {cluster:?} (strict)")));
            }
            if let Some(i) =
                nodes.iter().position(|n| n.get("hostname").and_then(Value::as_str).unwrap_or("").is_empty())
            {
                return Err(bad(&format!("nodes[{i}].hostname: required (strict)")));
            }
        }
        Ok(Write::Nodes(NodeStatePost { cluster, nodes }))
    }

    fn list_jobs(&self, st: &State, req: &Request) -> Result<Response, Response> {
        let query = req.query().map_err(|e| bad(&e))?;
        let (mut states, mut cluster, mut project, mut range) = (Vec::new(), None, None, None);
        let (mut per_page, mut page, mut with_meta) = (25i64, 1i64, false);
        let num = |v: &str| v.parse::<i64>().map_err(|e| bad(&format!("strconv.Atoi: parsing {v:?}: {e}")));
        for (k, v) in &query {
            match k.as_str() {
                "state" if JOB_STATES.contains(&v.as_str()) => states.push(v.clone()),
                "state" => return Err(bad("invalid query parameter value: state")),
                "cluster" if cluster.is_none() => cluster = Some(v.clone()),
                "project" if project.is_none() => project = Some(v.clone()),
                "cluster" | "project" => {}
                "start-time" => {
                    let parts: Vec<&str> = v.split('-').collect();
                    let [from, to] = parts[..] else { return Err(bad("invalid query parameter value: startTime")) };
                    range = Some((num(from)?, num(to)?));
                }
                "items-per-page" => per_page = num(v)?,
                "page" => page = num(v)?,
                "with-metadata" => with_meta = true,
                _ => return Err(bad(&format!("invalid query parameter: {k}"))),
            }
        }
        let mut jobs: Vec<&CcJob> = st
            .jobs
            .iter()
            .filter(|j| states.is_empty() || states.contains(&j.state))
            .filter(|j| cluster.as_ref().map_or(true, |c| *c == j.cluster))
            .filter(|j| project.as_ref().map_or(true, |p| j.job.get("project").and_then(Value::as_str) == Some(p)))
            .filter(|j| range.map_or(true, |(a, b)| a <= j.start_time && j.start_time <= b))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.start_time, j.db_id)));
        let skip = if per_page > 0 { ((page.max(1) - 1) * per_page) as usize } else { 0 };
        let take = if per_page > 0 { per_page as usize } else { usize::MAX };
        let rows: Vec<Value> = jobs
            .into_iter()
            .skip(skip)
            .take(take)
            .map(|j| {
                let mut v = j.job.clone();
                if !with_meta {
                    if let Some(m) = v.as_object_mut() {
                        m.remove("metaData");
                    }
                }
                v
            })
            .collect();
        Ok(Response::json(200, &json!({ "jobs": rows, "items": per_page, "page": page })))
    }
}

fn created() -> Response {
    Response::json(201, &json!({ "msg": "success" }))
}

fn empty_ok() -> Response {
    Response { status: 200, headers: Vec::new(), body: Vec::new() }
}

/// Applies a checked write; a stop returns the stopped job (the 200 body).
fn apply(st: &mut State, w: Write) -> Option<Value> {
    match w {
        Write::Start(mut job) => {
            st.next_id += 1;
            job.db_id = st.next_id;
            if let Some(m) = job.job.as_object_mut() {
                m.insert("id".into(), json!(job.db_id));
            }
            st.jobs.push(*job);
            None
        }
        Write::Stop(idx, state, stop_time, body) => {
            let j = &mut st.jobs[idx];
            j.state = state.clone();
            j.stop_time = Some(stop_time);
            j.stop = Some(body);
            if let Some(m) = j.job.as_object_mut() {
                m.insert("jobState".into(), json!(state));
                m.insert("duration".into(), json!(stop_time - j.start_time));
            }
            Some(j.job.clone())
        }
        Write::Nodes(post) => {
            st.node_posts.push(post);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Go's JSON decoder, as far as these bodies need it

#[derive(Debug)]
enum Ty {
    /// Go type name, bounds.
    Int(&'static str, i64, i64),
    Float,
    Str,
    Arr(&'static Ty),
    Map(&'static Ty),
    Obj(&'static Struct),
}

#[derive(Debug)]
struct Struct {
    name: &'static str,
    fields: &'static [(&'static str, Ty)],
}

const I32: Ty = Ty::Int("int32", i32::MIN as i64, i32::MAX as i64);
const I64: Ty = Ty::Int("int64", i64::MIN, i64::MAX);
const INT: Ty = Ty::Int("int", i64::MIN, i64::MAX);

const RESOURCE: Struct = Struct {
    name: "Resource",
    fields: &[
        ("hostname", Ty::Str),
        ("hwthreads", Ty::Arr(&INT)),
        ("accelerators", Ty::Arr(&Ty::Str)),
        ("configuration", Ty::Str),
    ],
};
const TAG: Struct =
    Struct { name: "Tag", fields: &[("id", I64), ("type", Ty::Str), ("name", Ty::Str), ("scope", Ty::Str)] };
const UNIT: Struct = Struct { name: "Unit", fields: &[("base", Ty::Str), ("prefix", Ty::Str)] };
const STATISTICS: Struct = Struct {
    name: "JobStatistics",
    fields: &[("unit", Ty::Obj(&UNIT)), ("avg", Ty::Float), ("min", Ty::Float), ("max", Ty::Float)],
};
const JOB_LINK: Struct = Struct { name: "JobLink", fields: &[("id", I64), ("jobId", I64)] };
const JOB_LINKS: Struct =
    Struct { name: "JobLinkResultList", fields: &[("items", Ty::Arr(&Ty::Obj(&JOB_LINK))), ("count", INT)] };
const JOB: Struct = Struct {
    name: "Job",
    fields: &[
        ("id", I64),
        ("jobId", I64),
        ("user", Ty::Str),
        ("project", Ty::Str),
        ("cluster", Ty::Str),
        ("subCluster", Ty::Str),
        ("partition", Ty::Str),
        ("arrayJobId", I64),
        ("numNodes", I32),
        ("numHwthreads", I32),
        ("numAcc", I32),
        ("shared", Ty::Str),
        ("monitoringStatus", I32),
        ("smt", I32),
        ("jobState", Ty::Str),
        ("startTime", I64),
        ("duration", I32),
        ("walltime", I64),
        ("submitTime", I64),
        ("requestedMemory", I64),
        ("resources", Ty::Arr(&Ty::Obj(&RESOURCE))),
        ("metaData", Ty::Map(&Ty::Str)),
        ("tags", Ty::Arr(&Ty::Obj(&TAG))),
        ("energy", Ty::Float),
        ("energyFootprint", Ty::Map(&Ty::Float)),
        ("footprint", Ty::Map(&Ty::Float)),
        ("statistics", Ty::Map(&Ty::Obj(&STATISTICS))),
        ("concurrentJobs", Ty::Obj(&JOB_LINKS)),
    ],
};
const STOP: Struct = Struct {
    name: "StopJobAPIRequest",
    fields: &[("jobId", I64), ("cluster", Ty::Str), ("startTime", I64), ("jobState", Ty::Str), ("stopTime", I64)],
};
const NODE: Struct = Struct {
    name: "NodePayload",
    fields: &[
        ("hostname", Ty::Str),
        ("states", Ty::Arr(&Ty::Str)),
        ("cpusAllocated", INT),
        ("memoryAllocated", INT),
        ("gpusAllocated", INT),
        ("jobsRunning", INT),
    ],
};
const NODES: Struct =
    Struct { name: "UpdateNodeStatesRequest", fields: &[("nodes", Ty::Arr(&Ty::Obj(&NODE))), ("cluster", Ty::Str)] };

/// The body as the route's Go struct would decode it: 400 "parsing request body failed: …".
fn decode(req: &Request, route: Route) -> Result<Map<String, Value>, Response> {
    let fail = |e: String| bad(&format!("parsing request body failed: {e}"));
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| fail(format!("invalid JSON: {e}")))?;
    let root = match route {
        Route::StartJob => &JOB,
        Route::StopJob => &STOP,
        _ => &NODES,
    };
    check_type(&v, &Ty::Obj(root), root.name, "").map_err(fail)?;
    match v {
        Value::Object(m) => Ok(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        _ => Ok(Map::new()),
    }
}

fn go_type(ty: &Ty) -> String {
    match ty {
        Ty::Int(name, ..) => name.to_string(),
        Ty::Float => "float64".into(),
        Ty::Str => "string".into(),
        Ty::Arr(t) => format!("[]{}", go_type(t)),
        Ty::Map(t) => format!("map[string]{}", go_type(t)),
        Ty::Obj(s) => format!("schema.{}", s.name),
    }
}

/// Go's `encoding/json` with `DisallowUnknownFields`: null leaves the zero value. Go's message
/// names the innermost struct and the dotted field path from the root (`Resource.resources.hwthreads`).
fn check_type(v: &Value, ty: &Ty, root: &str, path: &str) -> Result<(), String> {
    let mismatch = |kind: String| {
        let at =
            if path.is_empty() { " into Go value".to_string() } else { format!(" into Go struct field {root}.{path}") };
        Err(format!("json: cannot unmarshal {kind}{at} of type {}", go_type(ty)))
    };
    let kind = |v: &Value| match v {
        Value::String(_) => "string".to_string(),
        Value::Number(_) => "number".to_string(),
        Value::Bool(_) => "bool".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
        Value::Null => "null".to_string(),
    };
    match (ty, v) {
        (_, Value::Null) => Ok(()),
        (Ty::Int(_, lo, hi), Value::Number(n)) => match n.as_i64() {
            Some(i) if (*lo..=*hi).contains(&i) => Ok(()),
            _ => mismatch(format!("number {n}")),
        },
        (Ty::Float, Value::Number(_)) | (Ty::Str, Value::String(_)) => Ok(()),
        (Ty::Arr(t), Value::Array(a)) => a.iter().try_for_each(|x| check_type(x, t, root, path)),
        (Ty::Map(t), Value::Object(m)) => m.values().try_for_each(|x| check_type(x, t, root, path)),
        (Ty::Obj(s), Value::Object(m)) => {
            for (k, x) in m {
                let Some((_, t)) = s.fields.iter().find(|(name, _)| name == k) else {
                    return Err(format!("json: unknown field {k:?}"));
                };
                let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                check_type(x, t, s.name, &sub)?;
            }
            Ok(())
        }
        _ => mismatch(kind(v)),
    }
}
