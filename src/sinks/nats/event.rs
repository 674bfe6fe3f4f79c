//! What a NATS message carries, rendered from the run as the ledger holds it when the event is
//! sent: the JSON event (the default format) and cc-slurm-adapter's InfluxDB line. Pure: no
//! clock, no I/O. The fields are documented in the module doc of `sinks::nats`.

use serde_json::{json, Map, Value};

use crate::delivery::events::EventKind;
use crate::ledger::Delivery;
use crate::model::{JobRun, UnixTime};
use crate::slurm::hostlist;

use super::config::Format;
use crate::sinks::cc_job;

/// Why an item cannot become a message (the item is refused with this reason, never sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("item {id} refers to a run the ledger does not have")]
    NoRun { id: String },
    #[error("item {id} is not a start or stop event: it was planned by another sink or release")]
    NotAnEvent { id: String },
    #[error("item {id}: run {run} has not started")]
    NotStarted { id: String, run: String },
    #[error("item {id}: {reason}")]
    Body { id: String, reason: String },
}

/// The event of an item and its run: which one, and its instant (start; end for a stop).
pub fn kind_of(d: &Delivery, run: &JobRun) -> Result<(EventKind, UnixTime), EventError> {
    let kind = EventKind::of_id(&d.id).ok_or_else(|| EventError::NotAnEvent { id: d.id.clone() })?;
    let start = run.start.ok_or_else(|| EventError::NotStarted { id: d.id.clone(), run: run.key.to_string() })?;
    let at = match kind {
        EventKind::Start => start,
        EventKind::Stop => run.end.unwrap_or(start).max(start),
    };
    Ok((kind, at))
}

/// The payload of an item in `format` (`hostname`: the line protocol's tag).
pub fn payload(format: Format, hostname: &str, d: &Delivery, run: Option<&JobRun>) -> Result<String, EventError> {
    let run = run.ok_or_else(|| EventError::NoRun { id: d.id.clone() })?;
    let (kind, at) = kind_of(d, run)?;
    match format {
        Format::Json => Ok(job_event(kind, &d.id, run).to_string()),
        Format::LineProtocol => {
            let body = adapter_body(kind, run).map_err(|reason| EventError::Body { id: d.id.clone(), reason })?;
            Ok(line_protocol(kind, hostname, &body.to_string(), at))
        }
    }
}

/// The `event` JSON of the line protocol: what cc-slurm-adapter put there, cc-backend's
/// `start_job`/`stop_job` request body (`sinks::cc_job`), with the run's own cluster name and
/// every host of its node list.
pub fn adapter_body(kind: EventKind, run: &JobRun) -> Result<Value, String> {
    let cluster = run.key.cluster.as_str();
    let body = match kind {
        EventKind::Start => cc_job::start_job_body(run, cluster, &|_| false, &|_, _| None),
        EventKind::Stop => cc_job::stop_job_body(run, cluster),
    };
    body.map_err(|e| e.to_string())
}

/// The JSON event (see the module doc of `sinks::nats` for each field).
pub fn job_event(kind: EventKind, id: &str, run: &JobRun) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_string(), v);
    };
    put("event", json!(kind.as_str()));
    put("id", json!(id));
    put("cluster", json!(run.key.cluster.as_str()));
    put("jobId", json!(run.job_id));
    put("jobIdRaw", json!(run.key.job_id_raw));
    if let Some(v) = run.array_job_id {
        put("arrayJobId", json!(v));
    }
    if let Some(v) = run.array_task_id {
        put("arrayTaskId", json!(v));
    }
    if let Some(v) = run.het_job_id {
        put("hetJobId", json!(v));
    }
    if let Some(v) = run.het_job_offset {
        put("hetJobOffset", json!(v));
    }
    put("name", json!(run.name));
    put("user", json!(run.user));
    put("group", json!(run.group));
    put("account", json!(run.account));
    put("partition", json!(run.partition));
    put("qos", json!(run.qos));
    put("state", json!(run.state.as_str()));
    put("submit", json!(run.key.submit.to_rfc3339()));
    put("submitEpoch", json!(run.key.submit.0));
    if let Some(start) = run.start {
        put("start", json!(start.to_rfc3339()));
        put("startEpoch", json!(start.0));
    }
    if kind == EventKind::Stop {
        if let Some(end) = run.end {
            put("end", json!(end.to_rfc3339()));
            put("endEpoch", json!(end.0));
        }
        put("elapsedSecs", json!(run.elapsed_secs));
        if let Some(e) = run.exit_code {
            put("exitCode", json!(e.to_string()));
        }
    }
    if let Some(m) = run.timelimit_mins {
        put("timeLimitSecs", json!(m.saturating_mul(60)));
    }
    put("nodeCount", json!(run.nnodes));
    put("nodeList", json!(run.nodelist));
    // A node list Slurm printed that cannot be expanded keeps its compressed form only.
    put("nodes", hostlist::expand(&run.nodelist).map_or(Value::Null, |h| json!(h)));
    put("cpus", json!(run.alloc_tres.get("cpu").unwrap_or(u64::from(run.alloc_cpus))));
    put("gpus", json!(run.gpus()));
    put("tres", Value::Object(run.alloc_tres.iter().map(|(k, n)| (k.to_string(), json!(n))).collect()));
    Value::Object(o)
}

/// cc-slurm-adapter's line: `job,function=start_job,hostname=H,type=node,type-id=0
/// event="<JSON>" <unix ns>` (tags in key order, as its encoder sorts them), at the event's
/// instant.
pub fn line_protocol(kind: EventKind, hostname: &str, event_json: &str, at: UnixTime) -> String {
    let function = match kind {
        EventKind::Start => "start_job",
        EventKind::Stop => "stop_job",
    };
    format!(
        "job,function={function},hostname={},type=node,type-id=0 event=\"{}\" {}",
        escape_tag(hostname),
        escape_string_field(event_json),
        i128::from(at.0) * 1_000_000_000
    )
}

/// A tag value: `,`, `=` and space are escaped with a backslash, and so is a backslash.
pub fn escape_tag(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A string field value (inside its double quotes): `"` and `\` are escaped with a backslash.
/// JSON text has no raw newline, so nothing else needs escaping.
pub fn escape_string_field(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + v.len() / 8);
    for c in v.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
