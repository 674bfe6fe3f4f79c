//! Readers for Slurm's JSON: `sacct --json` (and slurmrestd `/slurmdb/v0.0.4x/job(s)`) of every
//! schema era, and `squeue --json` (and slurmrestd `/slurm/v0.0.4x/jobs` and `/job/<id>`, which
//! is what `scontrol show job --json` prints).
//!
//! Both yield the same [`Item`]s as the parsable2 reader: a [`JobRun`] per job, or a
//! [`Quarantined`] job that could not be read, with the job's JSON text and the reason. A document
//! that is not JSON, or has no `jobs` array, is a [`JsonError`] for the whole call.
//!
//! # Schema eras handled
//! - **dbv0.0.37 (21.08), dbv0.0.38 (22.05)**: plain integers, `state.current` a string,
//!   `exit_code {status, return_code, signal {signal_id, name}}`, step `step.id` a string
//!   (`"batch"`, `"extern"`) or a number (`0`, `1`), `reservation.name` the integer `0`,
//!   `required.memory` in MB without the per-CPU flag (per CPU or per node is inferred from the memory TRES).
//! - **data_parser v0.0.39 (23.02)**: integers become `{set, infinite, number}`; `!set` or
//!   `infinite` read as "no value"; `required.memory_per_cpu` / `memory_per_node`.
//! - **v0.0.40+ (23.11 … 25.11, v0.0.40–v0.0.44)**: `state.current` and `exit_code.status` are
//!   arrays of strings, `return_code` and `signal.id` are `{set, number}`, step ids are
//!   `"123.batch"` strings (or `{job_id, step_id}` objects), step times are `{set, number}`.
//! - squeue v0.0.37/38 (plain ints, `job_state` a string, exit codes as raw wait statuses) and
//!   v0.0.40+ (`job_state` an array, exit codes as objects).
//!
//! Every sacct era above is tested against recorded output (`tests/fixtures/samples/PROVENANCE.md`):
//! dbv0.0.37, dbv0.0.38, v0.0.39, v0.0.40, v0.0.41, v0.0.42 (24.11.5/.7), v0.0.43 and v0.0.44
//! (25.11.0). The squeue/`/slurm/…/job` schema is tested with recorded v0.0.37, 22.05 (testbed),
//! v0.0.42, v0.0.43 and v0.0.44 output; v0.0.39–v0.0.41 squeue JSON is read by the same rules
//! without a recorded sample.
//!
//! # Known Slurm quirks, kept as Slurm prints them
//! - 22.05 JSON reports non-signal exit codes wrongly: a job that ran `exit 1` shows
//!   `{status: "SUCCESS", return_code: 0}` (the text `ExitCode` says `1:0`). Only signals come
//!   through. The reader keeps what the JSON says; prefer the parsable2 reader for exit codes on
//!   22.05.
//! - CPU time: from 23.02 on, slurmdbd fills the job's own `time.total/user/system`, and they
//!   are the run's CPU time (a step list can count the same usage twice). 22.05 leaves them
//!   always 0: then CPU time is the sum of the steps (summed in microseconds and then truncated
//!   to milliseconds, exactly as sacct's job row does).
//! - A job that is no array job may carry `array.job_id` equal to its own id: the array id is
//!   kept only for an array task (task id set) or a pending array record (task list set), in
//!   sacct and squeue JSON alike.
//! - The node count (`allocation_nodes`, squeue's `node_count`) may be absent or 0: the
//!   allocated TRES `node` count is used then (for sacct, the requested one when nothing was
//!   allocated).
//! - `wckey {wckey, flags: ["ASSIGNED_DEFAULT"]}` becomes `*wckey`, as sacct text and squeue
//!   print it; the scheduling flags become sacct's text names (`SchedMain`, `SchedBackfill`,
//!   `SchedSubmit`, `StartRecieved` — Slurm's spelling; `CLEAR_SCHEDULING` is not printed).
//! - sacct JSON has no uid and no canceller: `uid` and `cancelled_by` stay `None`.
//! - 24.11 prints the plain-integer `time.start` of a job cancelled before it started as NO_VAL
//!   (4294967294); it reads as "no start", like 0.
//!
//! The JSON compatibility helpers ([`slurm_number`], [`slurm_string`], [`slurm_state`],
//! [`slurm_exit_code`], [`slurm_tres`]) live here, in one place, for every JSON reader.

use serde_json::Value;

use crate::model::{ClusterName, ExitCode, JobKey, JobRun, JobState, StepUsage, Tres, UnixTime};

use super::parsable::{Item, Quarantined};
use super::values::{self as v, TresKind};

/// Errors that stop a whole JSON document (as opposed to one job).
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("{what} output is not JSON ({source}); expected the JSON document `{what}` prints, an object with a `jobs` array")]
    NotJson {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} output is empty: expected a JSON document with a `jobs` array (did the command fail? Slurm 22.05's scontrol has no --json)")]
    Empty { what: &'static str },
    #[error("{what} JSON has no `jobs` array ({found}); expected an object with a `jobs` array")]
    NoJobs { what: &'static str, found: String },
    #[error("{what} reported errors and returned no jobs: {errors}")]
    SlurmErrors { what: &'static str, errors: String },
    #[error(
        "this is `squeue --json` output (live jobs: their times and usage are not final), not accounting records; \
         nothing was imported. Import `sacct --json` (or `sacct --parsable2`) output"
    )]
    Squeue,
}

// ---------------------------------------------------------------------------------------------
// JSON compatibility helpers, shared by every JSON reader.
// ---------------------------------------------------------------------------------------------

/// Slurm's 64-bit "no value" and "infinite" sentinels (NO_VAL64, INFINITE64).
const NO_VAL64: i128 = 0xFFFF_FFFF_FFFF_FFFE;
/// Slurm's 32-bit sentinels (NO_VAL, INFINITE), printed as plain integers before 23.02.
const NO_VAL32: i128 = 0xFFFF_FFFE;
const INFINITE32: i128 = 0xFFFF_FFFF;

/// What a Slurm JSON integer field holds, whatever the era wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlurmNumber {
    /// Absent, `null`, `""`, or `{set: false}`.
    Unset,
    /// `{infinite: true}`.
    Infinite,
    Value(i128),
}

impl SlurmNumber {
    /// A non-negative value below the 64-bit sentinels; negative values (Slurm's `-1`/`-2`
    /// "not set") and sentinels give `None`.
    pub fn u64(self) -> Option<u64> {
        match self {
            Self::Value(n) if (0..NO_VAL64).contains(&n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// A value of a 32-bit Slurm field: the 32-bit sentinels (`NO_VAL`, `INFINITE`) also give
    /// `None`; a value that does not fit in 32 bits is an error.
    pub fn u32(self) -> Result<Option<u32>, String> {
        match self {
            Self::Value(n) if n == NO_VAL32 || n == INFINITE32 || !(0..NO_VAL64).contains(&n) => Ok(None),
            Self::Value(n) => u32::try_from(n).map(Some).map_err(|_| format!("{n} does not fit in 32 bits")),
            _ => Ok(None),
        }
    }
}

/// Short text of a JSON value for error messages.
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = v.to_string();
    if text.len() > 60 {
        let mut cut = 60;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} {text}")
}

/// Reads an integer in any era's form: a JSON number, a numeric string, `null`, or
/// `{set, infinite, number}` (23.02+).
pub fn slurm_number(v: Option<&Value>) -> Result<SlurmNumber, String> {
    let bad = |v: &Value| format!("expected an integer or {{set, infinite, number}}, got {}", describe(v));
    let Some(v) = v else { return Ok(SlurmNumber::Unset) };
    match v {
        Value::Null => Ok(SlurmNumber::Unset),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(SlurmNumber::Value(i as i128))
            } else if let Some(u) = n.as_u64() {
                Ok(SlurmNumber::Value(u as i128))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30 => Ok(SlurmNumber::Value(f as i128)),
                    _ => Err(bad(v)),
                }
            }
        }
        Value::String(s) => match s.trim() {
            "" => Ok(SlurmNumber::Unset),
            "UNLIMITED" | "INFINITE" | "Infinite" => Ok(SlurmNumber::Infinite),
            t => t.parse::<i128>().map(SlurmNumber::Value).map_err(|_| bad(v)),
        },
        Value::Object(m) if m.contains_key("number") || m.contains_key("set") || m.contains_key("infinite") => {
            if m.get("infinite").and_then(Value::as_bool) == Some(true) {
                return Ok(SlurmNumber::Infinite);
            }
            if m.get("set").and_then(Value::as_bool) == Some(false) {
                return Ok(SlurmNumber::Unset);
            }
            match m.get("number") {
                Some(inner @ (Value::Number(_) | Value::String(_) | Value::Null)) => slurm_number(Some(inner)),
                None => Ok(SlurmNumber::Unset),
                Some(_) => Err(bad(v)),
            }
        }
        _ => Err(bad(v)),
    }
}

/// Reads a string in any era's form: a string, `[string, …]` (the first; `[]` is empty),
/// `null` (empty), or a number (its digits; 22.05 prints `reservation.name` as `0`).
pub fn slurm_string(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Array(a)) => match a.first() {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => {
                Err(format!("expected a string or an array of strings, got an array holding {}", describe(other)))
            }
        },
        Some(other) => Err(format!("expected a string or an array of strings, got {}", describe(other))),
    }
}

/// Strings of a string-or-array field (`exit_code.status`, `flags`, `state.current`).
fn string_list(v: Option<&Value>) -> Result<Vec<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| match e {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(format!("expected an array of strings, got an array holding {}", describe(other))),
            })
            .collect(),
        Some(other) => Err(format!("expected a string or an array of strings, got {}", describe(other))),
    }
}

/// State flags in the order Slurm's `job_state_string()` prefers them over the base state, so
/// an array such as `["PENDING", "REQUEUED"]` (23.11+) reads as the text tools print it.
const STATE_FLAGS_FIRST: [&str; 12] = [
    "COMPLETING",
    "STAGE_OUT",
    "CONFIGURING",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
    "REVOKED",
    "RESV_DEL_HOLD",
    "SIGNALING",
];

const BASE_STATES: [&str; 12] = [
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// Reads a job state: a string (`"RUNNING"`) or an array of state and flag names (23.11+),
/// reduced to the one name `sacct`/`squeue` text would print.
pub fn slurm_state(v: Option<&Value>) -> Result<(JobState, Option<u32>), String> {
    let names = string_list(v)?;
    let pick = STATE_FLAGS_FIRST
        .iter()
        .find(|f| names.iter().any(|n| n == *f))
        .map(|f| f.to_string())
        .or_else(|| names.iter().find(|n| BASE_STATES.contains(&n.as_str())).cloned())
        .or_else(|| names.first().cloned());
    match pick {
        None => Err("is missing or empty".into()),
        Some(name) => v::parse_state(&name).map_err(|e| e.0),
    }
}

/// Decodes a raw wait(2) status as Slurm stores it (squeue ≤ 22.05 prints it as an integer).
fn wait_status(n: i128) -> Option<ExitCode> {
    if !(0..NO_VAL32).contains(&n) {
        return None;
    }
    let status = n as u32;
    let sig = status & 0x7f;
    Some(ExitCode { code: (status >> 8) & 0xff, signal: if sig == 0x7f { 0 } else { sig } })
}

/// Reads an exit code in any era's form: a raw wait status (integer or `{set, number}`), or
/// `{status, return_code, signal: {signal_id | id, name}}` with `status` a string or array.
/// 22.05: non-signal exit codes are wrong in the JSON (see the module doc); kept as printed.
pub fn slurm_exit_code(v: Option<&Value>) -> Result<Option<ExitCode>, String> {
    let Some(v) = v else { return Ok(None) };
    let Value::Object(m) = v else {
        return match slurm_number(Some(v))? {
            SlurmNumber::Value(n) => Ok(wait_status(n)),
            _ => Ok(None),
        };
    };
    if m.contains_key("number") || m.contains_key("set") {
        return match slurm_number(Some(v))? {
            SlurmNumber::Value(n) => Ok(wait_status(n)),
            _ => Ok(None),
        };
    }
    let status = string_list(m.get("status")).map_err(|e| format!("status: {e}"))?;
    let code = slurm_number(m.get("return_code"))
        .map_err(|e| format!("return_code: {e}"))?
        .u32()
        .map_err(|e| format!("return_code: {e}"))?;
    let signal = match m.get("signal") {
        Some(Value::Object(s)) => {
            let id = s.get("signal_id").or_else(|| s.get("id"));
            slurm_number(id).map_err(|e| format!("signal.id: {e}"))?.u32().map_err(|e| format!("signal.id: {e}"))?
        }
        None | Some(Value::Null) => None,
        Some(other) => slurm_number(Some(other)).map_err(|e| format!("signal: {e}"))?.u32()?,
    };
    if code.is_none() && signal.is_none() && !status.iter().any(|s| s == "SUCCESS") {
        return Ok(None);
    }
    Ok(Some(ExitCode { code: code.unwrap_or(0), signal: signal.unwrap_or(0) }))
}

/// Which unit convention a TRES list uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TresUnits {
    /// `tres.allocated` / `tres.requested` of a job: `mem` (and other byte TRES) in MB.
    Alloc,
    /// Step usage (`tres.requested.total/max`, `tres.consumed.*`): bytes, and `cpu` in
    /// milliseconds (stored in seconds, as the text `TRESUsageInTot` has it).
    Usage,
}

/// TRES name of a `{type, name}` entry: `cpu`, `gres/gpu:fake`, `fs/disk`.
fn tres_name(m: &serde_json::Map<String, Value>) -> Result<String, String> {
    let ty = slurm_string(m.get("type")).map_err(|e| format!("type: {e}"))?;
    let name = slurm_string(m.get("name")).map_err(|e| format!("name: {e}"))?;
    if ty.is_empty() {
        return Err("a TRES entry has no type".into());
    }
    let full = if name.is_empty() { ty } else { format!("{ty}/{name}") };
    if full.contains([',', '=']) || full.chars().any(char::is_whitespace) {
        return Err(format!("TRES name {full:?} contains a delimiter"));
    }
    Ok(full)
}

/// Reads a TRES list: an array of `{type, name, id, count}` (every JSON era), or a TRES string
/// (`cpu=4,mem=1G`). Negative and unset counts (Slurm's `-2` for energy) are dropped.
pub fn slurm_tres(v: Option<&Value>, units: TresUnits) -> Result<Tres, String> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Tres::default()),
        Some(Value::String(s)) => {
            let kind = if units == TresUnits::Alloc { TresKind::Alloc } else { TresKind::Usage };
            return v::parse_tres(s, kind).map_err(|e| e.0);
        }
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("expected an array of {{type, name, count}}, got {}", describe(other))),
    };
    let mut pairs = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(m) = item else {
            return Err(format!("expected a {{type, name, count}} entry, got {}", describe(item)));
        };
        let name = tres_name(m)?;
        let Some(count) = slurm_number(m.get("count")).map_err(|e| format!("{name} count: {e}"))?.u64() else {
            continue;
        };
        let n = match units {
            TresUnits::Usage if name == "cpu" => count / 1000,
            TresUnits::Usage => count,
            // The text parser owns the unit rules (mem in MB, counts plain): reuse them.
            TresUnits::Alloc => {
                v::parse_tres(&format!("{name}={count}"), TresKind::Alloc).map_err(|e| e.0)?.get(&name).unwrap_or(count)
            }
        };
        pairs.push((name, n));
    }
    Ok(Tres::from_pairs(pairs))
}

/// Looks up a dotted path (`time.submission`) in nested objects.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// Typed field access on one job (or step) object; every error names the field.
struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        lookup(self.0, path)
    }
    fn num(&self, path: &str) -> Result<SlurmNumber, String> {
        slurm_number(self.get(path)).map_err(|e| format!("{path}: {e}"))
    }
    fn u64(&self, path: &str) -> Result<Option<u64>, String> {
        Ok(self.num(path)?.u64())
    }
    fn u32(&self, path: &str) -> Result<Option<u32>, String> {
        self.num(path)?.u32().map_err(|e| format!("{path}: {e}"))
    }
    /// An instant; 0, unset, negative and the 32-bit sentinels are "not known" (24.11 prints
    /// the plain-integer `time.start` of a job cancelled before it started as NO_VAL).
    fn time(&self, path: &str) -> Result<Option<UnixTime>, String> {
        Ok(self
            .num(path)?
            .u64()
            .filter(|&t| t > 0 && t as i128 != NO_VAL32 && t as i128 != INFINITE32)
            .and_then(|t| i64::try_from(t).ok())
            .map(UnixTime))
    }
    fn string(&self, path: &str) -> Result<String, String> {
        slurm_string(self.get(path)).map_err(|e| format!("{path}: {e}"))
    }
    /// The first non-empty of several string fields.
    fn string_any(&self, paths: &[&str]) -> Result<String, String> {
        for p in paths {
            let s = self.string(p)?;
            if !s.is_empty() {
                return Ok(s);
            }
        }
        Ok(String::new())
    }
    fn tres(&self, path: &str, units: TresUnits) -> Result<Tres, String> {
        slurm_tres(self.get(path), units).map_err(|e| format!("{path}: {e}"))
    }
    fn exit_code(&self, path: &str) -> Result<Option<ExitCode>, String> {
        slurm_exit_code(self.get(path)).map_err(|e| format!("{path}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Document level.
// ---------------------------------------------------------------------------------------------

/// Parses a document and takes out its `jobs` array, with the line each job starts on.
pub(super) fn parse_document(text: &str, what: &'static str) -> Result<(Vec<Value>, Vec<u64>), JsonError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(JsonError::Empty { what });
    }
    let doc: Value = serde_json::from_str(text).map_err(|source| JsonError::NotJson { what, source })?;
    let Value::Object(mut map) = doc else {
        return Err(JsonError::NoJobs { what, found: format!("the document is {}", describe(&doc)) });
    };
    let errors = match map.get("errors") {
        Some(Value::Array(errs)) if !errs.is_empty() => Some(
            errs.iter()
                .map(|e| match e {
                    Value::Object(m) => ["description", "error", "source"]
                        .iter()
                        .filter_map(|k| m.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
                        .collect::<Vec<_>>()
                        .join(": "),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    };
    match map.remove("jobs") {
        Some(Value::Array(jobs)) => {
            if jobs.is_empty() {
                if let Some(errors) = errors {
                    return Err(JsonError::SlurmErrors { what, errors });
                }
            }
            let mut lines = job_start_lines(text);
            if lines.len() != jobs.len() {
                lines = vec![0; jobs.len()];
            }
            Ok((jobs, lines))
        }
        Some(other) => Err(JsonError::NoJobs { what, found: format!("`jobs` is {}", describe(&other)) }),
        None => match errors {
            Some(errors) => Err(JsonError::SlurmErrors { what, errors }),
            None => {
                let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
                Err(JsonError::NoJobs { what, found: format!("top-level keys: {}", keys.join(", ")) })
            }
        },
    }
}

/// 1-based line on which each element of the top-level `jobs` array starts, for quarantine
/// records. Works on text already known to be valid JSON; on any surprise the caller falls
/// back to 0 ("line unknown").
fn job_start_lines(text: &str) -> Vec<u64> {
    let mut lines = Vec::new();
    let (mut depth, mut line) = (0usize, 1u64);
    let (mut in_str, mut escaped) = (false, false);
    let mut str_start = 0usize;
    // Top-level object: whether the next string is a key, and the last key seen.
    let mut expect_key = false;
    let mut last_key_is_jobs = false;
    // Depth of the `jobs` array's elements while inside it.
    let mut jobs_depth: Option<usize> = None;
    let mut expect_value = false;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            line += 1;
        }
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
                if depth == 1 && expect_key {
                    last_key_is_jobs = &text.as_bytes()[str_start..i] == b"jobs";
                    expect_key = false;
                }
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if jobs_depth == Some(depth) && expect_value && b != b']' {
            lines.push(line);
            expect_value = false;
        }
        match b {
            b'"' => {
                in_str = true;
                str_start = i + 1;
            }
            b'{' | b'[' => {
                if depth == 1 && b == b'[' && last_key_is_jobs {
                    lines.clear();
                    jobs_depth = Some(2);
                    expect_value = true;
                }
                depth += 1;
                if depth == 1 {
                    expect_key = true;
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if jobs_depth.is_some_and(|d| depth < d) {
                    jobs_depth = None;
                }
            }
            b',' => {
                if depth == 1 {
                    expect_key = true;
                    last_key_is_jobs = false;
                }
                if jobs_depth == Some(depth) {
                    expect_value = true;
                }
            }
            _ => {}
        }
    }
    lines
}

fn quarantine(job: &Value, line: u64, reason: String) -> Item {
    Item::Quarantine(Quarantined { line, raw: serde_json::to_string(job).unwrap_or_default(), reason })
}

fn cluster_of(f: &Fields<'_>, default_cluster: &ClusterName) -> Result<ClusterName, String> {
    match f.string("cluster")?.as_str() {
        "" => Ok(default_cluster.clone()),
        c => ClusterName::new(c).map_err(|e| format!("cluster: {e}")),
    }
}

fn job_id_raw(f: &Fields<'_>) -> Result<u64, String> {
    match f.num("job_id")? {
        SlurmNumber::Value(n) if n > 0 => u64::try_from(n)
            .ok()
            .filter(|&n| (n as i128) < NO_VAL32)
            .ok_or_else(|| format!("job_id {n} is not a Slurm job id")),
        SlurmNumber::Value(n) => Err(format!("job_id {n} is not a Slurm job id")),
        _ => Err("job_id is missing: the run cannot be keyed".into()),
    }
}

/// `7_3`, `7_[2-5]`, `13+1` or `42`, as sacct prints the JobID.
fn display_job_id(raw: u64, array: Option<(u64, Option<u32>, String)>, het: Option<(u64, u32)>) -> String {
    match (array, het) {
        (Some((a, Some(t), _)), _) => format!("{a}_{t}"),
        (Some((a, None, range)), _) if !range.is_empty() => format!("{a}_[{range}]"),
        (_, Some((h, o))) => format!("{h}+{o}"),
        _ => raw.to_string(),
    }
}

/// A pending array's task list: `1-10`, `1,3,5-7%2`, or the hex bitmap `0x3C` slurmdbd stores.
fn array_range_text(s: &str) -> String {
    let s = s.trim();
    let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        return s.to_string();
    };
    let (hex, throttle) = match hex.split_once('%') {
        Some((h, t)) => (h, Some(t)),
        None => (hex, None),
    };
    let mut bits = Vec::new();
    for (nibble_idx, c) in hex.bytes().rev().enumerate() {
        let Some(d) = (c as char).to_digit(16) else { return s.to_string() };
        for b in 0..4 {
            if d & (1 << b) != 0 {
                bits.push(nibble_idx * 4 + b);
            }
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        let start = bits[i];
        let mut end = start;
        while i + 1 < bits.len() && bits[i + 1] == end + 1 {
            i += 1;
            end = bits[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    if let Some(t) = throttle {
        out.push('%');
        out.push_str(t);
    }
    out
}

/// sacct text names of the JSON scheduling flags; `CLEAR_SCHEDULING` is not printed by sacct.
fn flags_text(names: &[String]) -> String {
    names
        .iter()
        .filter_map(|n| match n.as_str() {
            "CLEAR_SCHEDULING" => None,
            "STARTED_ON_SUBMIT" => Some("SchedSubmit"),
            "STARTED_ON_SCHEDULE" => Some("SchedMain"),
            "STARTED_ON_BACKFILL" => Some("SchedBackfill"),
            "START_RECEIVED" => Some("StartRecieved"),
            other => Some(other),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Before 23.02, `required.memory` is MB without Slurm's per-CPU flag bit (22.05 strips it).
/// It is per CPU when it times the CPUs, and not times the nodes, gives the requested memory
/// TRES; otherwise per node. A set flag bit (bit 63) is honoured.
fn legacy_req_mem(mem_mb: u128, cpus: u32, nodes: u32, req_mem_tres: Option<u64>) -> Option<(u64, bool)> {
    const MEM_PER_CPU: u128 = 1 << 63;
    let (mb, flagged) = if mem_mb & MEM_PER_CPU != 0 { (mem_mb & !MEM_PER_CPU, true) } else { (mem_mb, false) };
    if mb == 0 || mb >= (NO_VAL64 as u128 & !MEM_PER_CPU) {
        return None;
    }
    let mb = u64::try_from(mb).ok()?;
    let bytes = mb.checked_mul(1 << 20)?;
    let per_cpu = flagged
        || req_mem_tres.is_some_and(|t| {
            let per_node = t == bytes.saturating_mul(u64::from(nodes.max(1)));
            !per_node && cpus > 1 && t == bytes.saturating_mul(u64::from(cpus))
        });
    Some((mb, per_cpu))
}

// ---------------------------------------------------------------------------------------------
// sacct --json
// ---------------------------------------------------------------------------------------------

/// Reads a `sacct --json` document (or a slurmrestd `/slurmdb/v0.0.4x/job(s)` body) of any era.
///
/// Each job becomes a [`JobRun`] keyed by (cluster, `job_id`, `time.submission`), its steps
/// folded in with [`JobRun::add_step`]; a job that cannot be read becomes a quarantine record
/// holding the job's JSON. A document that is not JSON, or has no `jobs` array, is an error.
pub fn read_sacct_json(text: &str, default_cluster: &ClusterName) -> Result<Vec<Item>, JsonError> {
    let (jobs, lines) = parse_document(text, "sacct --json")?;
    // squeue's jobs keep their submit time and state at the top (`submit_time`, `job_state`);
    // slurmdbd's under `time` and `state`.
    if jobs
        .first()
        .is_some_and(|j| j.get("time").is_none() && (j.get("submit_time").is_some() || j.get("job_state").is_some()))
    {
        return Err(JsonError::Squeue);
    }
    Ok(jobs
        .iter()
        .zip(lines)
        .map(|(job, line)| match sacct_job(job, default_cluster) {
            Ok(run) => Item::Job(Box::new(run)),
            Err(reason) => quarantine(job, line, reason),
        })
        .collect())
}

/// Where a schema keeps the fields that identify a run.
struct IdPaths {
    submit: &'static str,
    array_job: &'static str,
    array_task: &'static str,
    array_task_string: &'static str,
    het_job: &'static str,
    het_offset: &'static str,
}

const SACCT_IDS: IdPaths = IdPaths {
    submit: "time.submission",
    array_job: "array.job_id",
    array_task: "array.task_id",
    array_task_string: "array.task",
    het_job: "het.job_id",
    het_offset: "het.job_offset",
};

const SQUEUE_IDS: IdPaths = IdPaths {
    submit: "submit_time",
    array_job: "array_job_id",
    array_task: "array_task_id",
    array_task_string: "array_task_string",
    het_job: "het_job_id",
    het_offset: "het_job_offset",
};

/// A run with its key, display id, array and het parts set: the part every JSON schema shares.
fn new_run(f: &Fields, default_cluster: &ClusterName, p: &IdPaths) -> Result<JobRun, String> {
    let raw = job_id_raw(f)?;
    let submit = f.time(p.submit)?.ok_or_else(|| format!("{} is missing or 0: the run cannot be keyed", p.submit))?;
    let cluster = cluster_of(f, default_cluster)?;
    let array_job = f.u64(p.array_job)?.filter(|&a| a > 0);
    let array_task = f.u32(p.array_task)?;
    let array_range = array_range_text(&f.string(p.array_task_string)?);
    let het_job = f.u64(p.het_job)?.filter(|&h| h > 0);
    let het_offset = f.u32(p.het_offset)?;
    // Slurm may print a job's own id as its array id although it is no array job: only a task
    // (its task id) or a pending array record (its task list) is an array job.
    let array_job = array_job.filter(|_| array_task.is_some() || !array_range.is_empty());
    let het = het_job.map(|h| (h, het_offset.unwrap_or(0)));
    let job_id = display_job_id(raw, array_job.map(|a| (a, array_task, array_range)), het);
    let mut run = JobRun::new(JobKey { cluster, job_id_raw: raw, submit }, job_id);
    run.array_job_id = array_job;
    run.array_task_id = array_job.and(array_task);
    run.het_job_id = het_job;
    run.het_job_offset = het_job.and(Some(het_offset.unwrap_or(0)));
    Ok(run)
}

fn sacct_job(job: &Value, default_cluster: &ClusterName) -> Result<JobRun, String> {
    if !job.is_object() {
        return Err(format!("job entry is {}, not an object", describe(job)));
    }
    let f = Fields(job);
    let mut run = new_run(&f, default_cluster, &SACCT_IDS)?;
    run.name = f.string("name")?;
    run.user = f.string_any(&["user", "association.user"])?;
    run.group = f.string("group")?;
    run.account = f.string_any(&["account", "association.account"])?;
    run.partition = f.string("partition")?;
    run.qos = f.string("qos")?;
    let state = match f.get("state") {
        Some(Value::Object(_)) => f.get("state.current"),
        other => other,
    };
    (run.state, run.cancelled_by) = slurm_state(state).map_err(|e| format!("state.current: {e}"))?;
    run.exit_code = f.exit_code("exit_code")?;
    run.derived_exit_code = f.exit_code("derived_exit_code")?;
    run.eligible = f.time("time.eligible")?;
    run.start = f.time("time.start")?;
    run.end = f.time("time.end")?;
    run.elapsed_secs = f.u64("time.elapsed")?.unwrap_or(0);
    run.suspended_secs = f.u64("time.suspended")?.unwrap_or(0);
    run.timelimit_mins = f.u32("time.limit")?.map(u64::from);
    run.req_tres = f.tres("tres.requested", TresUnits::Alloc)?;
    run.alloc_tres = f.tres("tres.allocated", TresUnits::Alloc)?;
    run.req_cpus = f.u32("required.CPUs")?.unwrap_or(0);
    run.alloc_cpus = match run.alloc_tres.get("cpu") {
        Some(c) => u32::try_from(c).map_err(|_| format!("tres.allocated cpu {c} does not fit in 32 bits"))?,
        None => 0,
    };
    // Absent or 0: the allocated TRES tell the nodes; without an allocation, the requested ones.
    run.nnodes = match f.u32("allocation_nodes")?.filter(|&n| n > 0) {
        Some(n) => n,
        None => {
            run.alloc_tres.get("node").or(run.req_tres.get("node")).and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
        }
    };
    let per_cpu = f.u64("required.memory_per_cpu")?.filter(|&m| m > 0);
    let per_node = f.u64("required.memory_per_node")?.filter(|&m| m > 0);
    let mem = match (per_cpu, per_node) {
        (Some(mb), _) => Some((mb, true)),
        (None, Some(mb)) => Some((mb, false)),
        _ if f.get("required.memory_per_cpu").is_some() || f.get("required.memory_per_node").is_some() => None,
        _ => match f.num("required.memory")? {
            SlurmNumber::Value(mb) if mb > 0 => {
                let nodes = f.u32("allocation_nodes")?.unwrap_or(0).max(run.nnodes);
                legacy_req_mem(mb as u128, run.req_cpus, nodes, run.req_tres.get("mem"))
            }
            _ => None,
        },
    };
    if let Some((mb, pc)) = mem {
        run.req_mem_bytes =
            Some(mb.checked_mul(1 << 20).ok_or_else(|| format!("required memory {mb} MB does not fit in 64 bits"))?);
        run.req_mem_per_cpu = pc;
    }
    run.nodelist = match f.string("nodes")?.as_str() {
        "None assigned" | "None" | "(null)" => String::new(),
        n => n.to_string(),
    };
    run.wckey = match f.get("wckey") {
        Some(Value::Object(_)) => {
            let key = f.string("wckey.wckey")?;
            let flags = string_list(f.get("wckey.flags")).map_err(|e| format!("wckey.flags: {e}"))?;
            if flags.iter().any(|fl| fl == "ASSIGNED_DEFAULT") && !key.starts_with('*') {
                format!("*{key}")
            } else {
                key
            }
        }
        _ => f.string("wckey")?,
    };
    run.reservation = match f.get("reservation") {
        Some(Value::Object(_)) => match f.get("reservation.name") {
            Some(Value::Number(_)) => String::new(), // 22.05 prints the integer 0 for "none"
            _ => f.string("reservation.name")?,
        },
        _ => f.string("reservation")?,
    };
    run.flags = flags_text(&string_list(f.get("flags")).map_err(|e| format!("flags: {e}"))?);
    run.work_dir = f.string("working_directory")?;
    run.submit_line = f.string("submit_line")?;

    let steps = match f.get("steps") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(s)) => s.as_slice(),
        Some(other) => return Err(format!("steps: expected an array, got {}", describe(other))),
    };
    let mut acc_us = [0u128; 3];
    for (i, step) in steps.iter().enumerate() {
        let usage = step_usage(step, &mut acc_us).map_err(|e| format!("steps[{i}] ({}): {e}", step_label(step)))?;
        run.add_step(&usage);
    }
    // The job's own totals (slurmdbd fills them from 23.02 on) win over the step sum, which may
    // count the same usage twice; 22.05 leaves them all 0, and the step sum stands.
    let own = cpu_times(&f, &mut [0u128; 3])?;
    if own != [0, 0, 0] {
        [run.total_cpu_ms, run.user_cpu_ms, run.system_cpu_ms] = own;
    }
    Ok(run)
}

/// `batch`, `extern`, `0`, `123.batch`, for error messages.
fn step_label(step: &Value) -> String {
    match lookup(step, "step.id") {
        Some(Value::Object(m)) => slurm_string(m.get("step_id")).unwrap_or_default(),
        other => slurm_string(other).unwrap_or_default(),
    }
}

/// `{seconds, microseconds}` in microseconds.
fn micros(f: &Fields<'_>, path: &str) -> Result<u128, String> {
    let s = f.u64(&format!("{path}.seconds"))?.unwrap_or(0);
    let us = f.u64(&format!("{path}.microseconds"))?.unwrap_or(0);
    Ok(u128::from(s) * 1_000_000 + u128::from(us))
}

/// total/user/system CPU in ms. Running sums in µs are truncated once, so the steps of a job add
/// up to exactly what sacct's job row shows (its TotalCPU sums microseconds).
fn cpu_times(f: &Fields<'_>, acc_us: &mut [u128; 3]) -> Result<[u64; 3], String> {
    let mut out = [0u64; 3];
    for (i, path) in ["time.total", "time.user", "time.system"].iter().enumerate() {
        let before = acc_us[i] / 1000;
        acc_us[i] = acc_us[i].saturating_add(micros(f, path)?);
        out[i] = u64::try_from(acc_us[i] / 1000 - before).unwrap_or(u64::MAX);
    }
    Ok(out)
}

fn step_usage(step: &Value, acc_us: &mut [u128; 3]) -> Result<StepUsage, String> {
    if !step.is_object() {
        return Err(format!("step entry is {}, not an object", describe(step)));
    }
    let f = Fields(step);
    let [total, user, system] = cpu_times(&f, acc_us)?;
    let max = f.tres("tres.requested.max", TresUnits::Usage)?;
    let tot = f.tres("tres.requested.total", TresUnits::Usage)?;
    let energy = match f.num("statistics.energy.consumed")?.u64() {
        Some(e) => Some(e),
        None => tot.get("energy").or(f.tres("tres.consumed.total", TresUnits::Usage)?.get("energy")),
    };
    Ok(StepUsage {
        total_cpu_ms: total,
        user_cpu_ms: user,
        system_cpu_ms: system,
        max_rss_bytes: max.get("mem"),
        tres_usage_in_tot: tot,
        energy_joules: energy,
    })
}

// ---------------------------------------------------------------------------------------------
// squeue --json
// ---------------------------------------------------------------------------------------------

/// Reads a `squeue --json` document (or slurmrestd `/slurm/v0.0.4x/jobs` and `/job/<id>`, i.e.
/// `scontrol show job --json`), v0.0.37 to v0.0.44.
///
/// Live jobs: `start_time` of a PENDING job is the expected start and `end_time` of a running job
/// is start + limit, so both are kept only when they are facts (start once started, end once the
/// state is final). Elapsed is known only for finished jobs (end − start − suspended); a running
/// job has `elapsed_secs` 0. Suspended time is derived from `suspend_time` and `pre_sus_time`.
pub fn read_squeue_json(text: &str, default_cluster: &ClusterName) -> Result<Vec<Item>, JsonError> {
    let (jobs, lines) = parse_document(text, "squeue --json")?;
    Ok(jobs
        .iter()
        .zip(lines)
        .map(|(job, line)| match squeue_job(job, default_cluster) {
            Ok(run) => Item::Job(Box::new(run)),
            Err(reason) => quarantine(job, line, reason),
        })
        .collect())
}

/// Suspended seconds of a live job from scontrol/squeue's `SuspendTime` (last suspend or resume)
/// and `SecsPreSuspend` (run time before it): for a job not suspended now, everything between
/// start and the last resume that was not run time. Shared with the scontrol reader.
pub(crate) fn live_suspended_secs(
    start: UnixTime,
    suspend_time: Option<UnixTime>,
    pre_sus_secs: u64,
    state: &JobState,
) -> u64 {
    match suspend_time {
        Some(s) if *state != JobState::Suspended && s > start => {
            u64::try_from(s.0 - start.0).unwrap_or(0).saturating_sub(pre_sus_secs)
        }
        _ => 0,
    }
}

fn squeue_job(job: &Value, default_cluster: &ClusterName) -> Result<JobRun, String> {
    if !job.is_object() {
        return Err(format!("job entry is {}, not an object", describe(job)));
    }
    let f = Fields(job);
    let mut run = new_run(&f, default_cluster, &SQUEUE_IDS)?;
    run.name = f.string("name")?;
    run.user = f.string("user_name")?;
    run.uid = f.u32("user_id")?;
    run.group = f.string("group_name")?;
    run.account = f.string("account")?;
    run.partition = f.string("partition")?;
    run.qos = f.string("qos")?;
    (run.state, run.cancelled_by) = slurm_state(f.get("job_state")).map_err(|e| format!("job_state: {e}"))?;
    run.exit_code = f.exit_code("exit_code")?;
    run.derived_exit_code = f.exit_code("derived_exit_code")?;
    run.nodelist = match f.string("nodes")?.as_str() {
        "None assigned" | "(null)" => String::new(),
        n => n.to_string(),
    };
    let is_final = run.state.is_final();
    run.eligible = f.time("eligible_time")?;
    // PENDING: start_time is the scheduler's guess. Final without nodes: never ran (sacct
    // prints Start=None for it).
    let never_ran = run.state == JobState::Pending || (is_final && run.nodelist.is_empty());
    run.start = if never_ran { None } else { f.time("start_time")? };
    run.end = if is_final { f.time("end_time")? } else { None };
    if let Some(start) = run.start {
        let suspend_time = f.time("suspend_time")?;
        let pre_sus = f.u64("pre_sus_time")?.unwrap_or(0);
        run.suspended_secs = live_suspended_secs(start, suspend_time, pre_sus, &run.state);
        if let Some(end) = run.end {
            run.elapsed_secs = u64::try_from(end.0 - start.0).unwrap_or(0).saturating_sub(run.suspended_secs);
        }
    }
    run.timelimit_mins = f.u32("time_limit")?.map(u64::from);
    run.alloc_tres = f.tres("tres_alloc_str", TresUnits::Alloc)?;
    // Absent or 0: the allocated TRES tell the nodes.
    run.nnodes = match f.u32("node_count")?.filter(|&n| n > 0) {
        Some(n) => n,
        None => run.alloc_tres.get("node").and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
    };
    run.req_tres = f.tres("tres_req_str", TresUnits::Alloc)?;
    let cpus = f.u32("cpus")?.unwrap_or(0);
    run.req_cpus = match run.req_tres.get("cpu") {
        Some(c) => u32::try_from(c).unwrap_or(cpus),
        None => cpus,
    };
    run.alloc_cpus = match run.alloc_tres.get("cpu") {
        Some(c) => u32::try_from(c).map_err(|_| format!("tres_alloc_str cpu {c} does not fit in 32 bits"))?,
        None => 0,
    };
    let per_cpu = f.u64("memory_per_cpu")?.filter(|&m| m > 0);
    let per_node = f.u64("memory_per_node")?.filter(|&m| m > 0);
    if let Some((mb, pc)) = per_cpu.map(|m| (m, true)).or(per_node.map(|m| (m, false))) {
        run.req_mem_bytes =
            Some(mb.checked_mul(1 << 20).ok_or_else(|| format!("memory {mb} MB does not fit in 64 bits"))?);
        run.req_mem_per_cpu = pc;
    }
    run.wckey = f.string("wckey")?;
    run.reservation = f.string("resv_name")?;
    run.work_dir = f.string("current_working_directory")?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster() -> ClusterName {
        ClusterName::new("default").unwrap()
    }

    fn jobs(items: &[Item]) -> Vec<&JobRun> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Job(j) => Some(j.as_ref()),
                Item::Quarantine(_) => None,
            })
            .collect()
    }

    fn quarantined(items: &[Item]) -> Vec<&Quarantined> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Quarantine(q) => Some(q),
                Item::Job(_) => None,
            })
            .collect()
    }

    fn only_job(text: &str) -> JobRun {
        let items = read_sacct_json(text, &cluster()).unwrap();
        assert_eq!(items.len(), 1, "{items:?}");
        match &items[0] {
            Item::Job(j) => (**j).clone(),
            Item::Quarantine(q) => panic!("quarantined: {}", q.reason),
        }
    }

    const SARC_21_08: &str = include_str!("../../tests/fixtures/samples/SARC__sacct_json_slurm_21_8_8.json");
    const SARC_22_05: &str = include_str!("../../tests/fixtures/samples/SARC__sacct_json_slurm_22_5_9.json");
    const SARC_23_02: &str = include_str!("../../tests/fixtures/samples/SARC__sacct_json_slurm_23_2_6.json");
    const SARC_23_11: &str = include_str!("../../tests/fixtures/samples/SARC__sacct_json_slurm_23_11_5.json");
    const WEB_23_11: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__23.11_v0.0.40__slurmdb-job-completed.json");
    const WEB_24_05: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__24.05_v0.0.41__slurmdb-job-gpus-multi-nodes.json");
    const WEB_25_05: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.05_v0.0.43__slurmdb-job-gpus-per-task.json");
    const WEB_25_05_LIVE: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.05_v0.0.43__slurm-job-running.json");
    const WEB_24_11_DONE: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__24.11_v0.0.42__slurmdb-job-completed.json");
    const WEB_24_11_FAILED: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__24.11_v0.0.42__slurmdb-job-failed.json");
    const WEB_24_11_GPUS: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__24.11_v0.0.42__slurmdb-job-gpus-completed.json");
    const WEB_24_11_LIVE_PENDING: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__24.11_v0.0.42__slurm-job-pending.json");
    const WEB_25_11_DONE: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.11_v0.0.44__slurmdb-job-completed.json");
    const WEB_25_11_FAILED: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.11_v0.0.44__slurmdb-job-failed.json");
    const WEB_25_11_MULTI_NODES: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.11_v0.0.44__slurmdb-job-gpus-multi-nodes.json");
    const WEB_25_11_LIVE_PENDING: &str =
        include_str!("../../tests/fixtures/samples/Slurm-web__25.11_v0.0.44__slurm-job-pending.json");
    const PROM_SQUEUE: &str = include_str!("../../tests/fixtures/samples/prometheus-slurm-exporter__squeue_out.json");
    const TB_SACCT: &str = include_str!("../../tests/fixtures/testbed/sacct.json");
    const TB_OOM: &str = include_str!("../../tests/fixtures/testbed/sacct-oom-cgroup-v1.json");
    const TB_SQUEUE: &str = include_str!("../../tests/fixtures/testbed/squeue.json");

    #[test]
    fn sarc_21_08_requeued_with_cpu_tres() {
        let j = only_job(SARC_21_08);
        assert_eq!(j.key.cluster.as_str(), "cedar");
        assert_eq!((j.key.job_id_raw, j.key.submit), (55_978_384, UnixTime(1_673_275_023)));
        assert_eq!(j.state, JobState::Requeued);
        assert_eq!(j.alloc_tres.get("cpu"), Some(4));
        assert_eq!(j.alloc_tres.get("mem"), Some(40_960 << 20));
        assert_eq!(j.alloc_tres.get("gres/gpu"), Some(1));
        assert_eq!((j.alloc_cpus, j.req_cpus, j.nnodes), (4, 4, 1));
        assert_eq!(j.timelimit_mins, Some(1440));
        assert_eq!(j.elapsed_secs, 86_301);
        assert_eq!(j.wckey, "submitit");
        assert_eq!(j.flags, "SchedBackfill");
        assert_eq!(j.reservation, "");
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(j.array_job_id, None);
        assert_eq!(j.job_id, "55978384");
    }

    #[test]
    fn sarc_22_05_array_task_failed() {
        let j = only_job(SARC_22_05);
        assert_eq!(j.job_id, "20247445_100");
        assert_eq!((j.array_job_id, j.array_task_id), (Some(20_247_445), Some(100)));
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.alloc_cpus, 96);
        assert_eq!(j.alloc_tres.get("mem"), Some(256 << 30));
        assert_eq!(j.alloc_tres.gpus(), 16);
        assert_eq!(j.nnodes, 4);
        assert_eq!(j.nodelist, "ng[30103,30203,30706-30707]");
        // 65536 MB × 4 nodes = the 256 GiB memory TRES: per node.
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(64 << 30), false));
        assert_eq!(j.start, Some(UnixTime(1_693_740_641)));
        assert_eq!(j.end, Some(UnixTime(1_693_865_044)));
    }

    #[test]
    fn sarc_23_02_number_structs_and_energy_dropped() {
        let j = only_job(SARC_23_02);
        assert_eq!(j.key.job_id_raw, 4);
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.alloc_tres.get("energy"), None, "energy count -2 is dropped");
        assert_eq!(j.alloc_tres.get("billing"), Some(3));
        assert_eq!(j.timelimit_mins, Some(7200));
        assert_eq!(j.end, None, "time.end 0 while running");
        assert_eq!((j.array_job_id, j.array_task_id, j.het_job_id), (None, None, None));
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(32 << 30), false));
        assert_eq!(j.flags, "SchedSubmit");
    }

    #[test]
    fn sarc_23_11_state_array() {
        let j = only_job(SARC_23_11);
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.alloc_tres.gpus(), 2);
        assert_eq!(j.work_dir, "/home/mila/m/masterkohga");
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(j.user, "masterkohga");
    }

    #[test]
    fn slurm_web_23_11_completed_with_step() {
        let j = only_job(WEB_23_11);
        assert_eq!((j.key.job_id_raw, j.state.clone()), (509, JobState::Completed));
        assert_eq!(j.step_count, 1);
        assert_eq!(j.energy_joules, Some(0));
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(512 << 20), true));
        assert_eq!(j.submit_line, "sbatch --time 0:30 --wrap sleep 1 && true --ntasks 1");
        assert_eq!(j.flags, "SchedMain,StartRecieved");
        assert_eq!(j.alloc_tres.get("energy"), None);
    }

    #[test]
    fn slurm_web_24_05_pending_with_empty_alloc() {
        let j = only_job(WEB_24_05);
        assert_eq!(j.state, JobState::Pending);
        assert!(j.alloc_tres.is_empty());
        assert!(j.req_tres.is_empty());
        assert_eq!((j.alloc_cpus, j.gpus()), (0, 0));
        assert_eq!(j.timelimit_mins, Some(0));
        assert_eq!(j.step_count, 1);
    }

    #[test]
    fn slurm_web_25_05_running_end_none() {
        let j = only_job(WEB_25_05);
        assert_eq!(j.key.job_id_raw, 4754);
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.end, None);
        assert_eq!(j.start, Some(UnixTime(1_762_789_182)));
        assert_eq!(j.partition, "gpu");
        assert_eq!(j.step_count, 1);
        assert_eq!(j.alloc_cpus, 2);
    }

    #[test]
    fn slurm_web_24_11_completed_with_step() {
        let j = only_job(WEB_24_11_DONE);
        assert_eq!(j.key.cluster.as_str(), "hpc");
        assert_eq!((j.key.job_id_raw, j.key.submit, j.job_id.as_str()), (6362, UnixTime(1_762_788_774), "6362"));
        assert_eq!(j.state, JobState::Completed);
        assert_eq!(j.eligible, Some(UnixTime(1_762_788_774)));
        assert_eq!((j.start, j.end), (Some(UnixTime(1_762_788_776)), Some(UnixTime(1_762_788_837))));
        assert_eq!((j.elapsed_secs, j.suspended_secs, j.timelimit_mins), (61, 0, Some(2)));
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(j.derived_exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(j.alloc_tres.to_canonical(), format!("billing=32,cpu=32,mem={},node=1", 16_384u64 << 20));
        assert_eq!(j.req_tres, j.alloc_tres, "requested equals allocated (energy -2 dropped from the latter)");
        assert_eq!((j.alloc_cpus, j.req_cpus, j.nnodes, j.gpus()), (32, 32, 1, 0));
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(512 << 20), true));
        // One batch step, 0 s of CPU (a `sleep 60`); its energy is the set-but-zero `consumed`.
        assert_eq!((j.step_count, j.total_cpu_ms, j.user_cpu_ms, j.system_cpu_ms), (1, 0, 0, 0));
        assert_eq!((j.energy_joules, j.max_rss_bytes), (Some(0), None));
        assert_eq!((j.array_job_id, j.array_task_id, j.het_job_id, j.het_job_offset), (None, None, None, None));
        assert_eq!((j.user.as_str(), j.group.as_str(), j.account.as_str()), ("jbeck", "scientists", "biology"));
        assert_eq!((j.partition.as_str(), j.qos.as_str(), j.nodelist.as_str()), ("standard", "normal", "cn1"));
        assert_eq!(j.flags, "SchedMain,StartRecieved");
        assert_eq!((j.wckey.as_str(), j.reservation.as_str()), ("", ""));
        assert_eq!(j.submit_line, "sbatch --time 2 --wrap sleep 60 && true --ntasks 32");
        assert_eq!(j.work_dir, "/home/jbeck");
    }

    #[test]
    fn slurm_web_24_11_failed_exit_1() {
        let j = only_job(WEB_24_11_FAILED);
        assert_eq!((j.key.job_id_raw, j.key.submit), (9746, UnixTime(1_780_300_450)));
        assert_eq!(j.state, JobState::Failed);
        // `exit_code {status: ["ERROR"], return_code: 1}`: 1:0, which 22.05 JSON could not say.
        assert_eq!(j.exit_code, Some(ExitCode { code: 1, signal: 0 }));
        assert_eq!(j.derived_exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!((j.start, j.end, j.elapsed_secs), (Some(UnixTime(1_780_300_451)), Some(UnixTime(1_780_300_452)), 1));
        assert_eq!((j.alloc_cpus, j.alloc_tres.get("mem"), j.nnodes), (1, Some(512 << 20), 1));
        assert_eq!((j.name.as_str(), j.user.as_str(), j.group.as_str()), ("allocation", "mwilliams", "slurm"));
        assert_eq!((j.nodelist.as_str(), j.submit_line.as_str()), ("cn3", ""));
        assert_eq!((j.step_count, j.total_cpu_ms), (1, 0));
    }

    #[test]
    fn slurm_web_24_11_typed_gpus_counted_once() {
        let j = only_job(WEB_24_11_GPUS);
        assert_eq!((j.key.job_id_raw, j.state.clone()), (9612, JobState::Running));
        // `time.end` 0 while running; the step's `end {set: true, number: 0}` is not an end either.
        assert_eq!((j.start, j.end, j.elapsed_secs), (Some(UnixTime(1_780_298_437)), None, 30));
        // Typed GPU TRES only (no plain `gres/gpu`): 2 h100 + 4 h200, each counted once.
        assert_eq!(j.alloc_tres.get("gres/gpu:h100"), Some(2));
        assert_eq!(j.alloc_tres.get("gres/gpu:h200"), Some(4));
        assert_eq!(j.alloc_tres.get("gres/gpu"), None);
        assert_eq!(j.gpus(), 6);
        assert_eq!((j.req_tres.get("gres/gpu:h100"), j.req_tres.gpus()), (Some(6), 6));
        assert_eq!((j.alloc_cpus, j.nnodes, j.partition.as_str(), j.nodelist.as_str()), (1, 1, "ia", "ia1"));
        assert_eq!((j.step_count, j.total_cpu_ms), (1, 0));
    }

    #[test]
    fn slurm_web_25_11_completed_with_step() {
        let j = only_job(WEB_25_11_DONE);
        assert_eq!((j.key.cluster.as_str(), j.key.job_id_raw, j.key.submit), ("hpc", 5749, UnixTime(1_762_942_474)));
        assert_eq!(j.state, JobState::Completed);
        assert_eq!((j.start, j.end), (Some(UnixTime(1_762_942_475)), Some(UnixTime(1_762_942_505))));
        assert_eq!((j.elapsed_secs, j.timelimit_mins), (30, Some(2)));
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(j.alloc_tres.to_canonical(), format!("billing=4,cpu=4,mem={},node=1", 2_048u64 << 20));
        assert_eq!((j.alloc_cpus, j.req_cpus, j.nnodes, j.gpus()), (4, 4, 1, 0));
        assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(512 << 20), true));
        // v0.0.44 steps add `time.limit` ({infinite: true}) and step stdio paths; neither matters.
        assert_eq!((j.step_count, j.total_cpu_ms, j.energy_joules), (1, 0, Some(0)));
        // `association.user`/`.account` are empty in 25.11 responses; the top-level fields are not.
        assert_eq!((j.user.as_str(), j.account.as_str(), j.group.as_str()), ("vhartman", "biology", "scientists"));
        assert_eq!(j.reservation, "", "reservation {{id: 0, name: \"\", requested: \"\"}}");
        assert_eq!((j.partition.as_str(), j.flags.as_str()), ("normal", "SchedMain,StartRecieved"));
        assert_eq!(j.submit_line, "sbatch --time 2 --wrap sleep 30 && true --ntasks 4");
        assert_eq!((j.array_job_id, j.het_job_id, j.job_id.as_str()), (None, None, "5749"));
    }

    #[test]
    fn slurm_web_25_11_failed_exit_1() {
        let j = only_job(WEB_25_11_FAILED);
        assert_eq!((j.key.job_id_raw, j.key.submit), (5739, UnixTime(1_762_942_459)));
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.exit_code, Some(ExitCode { code: 1, signal: 0 }));
        assert_eq!((j.start, j.end, j.elapsed_secs), (Some(UnixTime(1_762_942_460)), Some(UnixTime(1_762_942_462)), 2));
        assert_eq!((j.alloc_cpus, j.alloc_tres.get("mem"), j.timelimit_mins), (1, Some(512 << 20), Some(1)));
        assert_eq!(j.submit_line, "sbatch --time 1 --wrap sleep 1 && false --ntasks 1");
        assert_eq!(j.step_count, 1);
    }

    #[test]
    fn slurm_web_25_11_running_on_two_nodes() {
        let j = only_job(WEB_25_11_MULTI_NODES);
        assert_eq!((j.key.job_id_raw, j.state.clone()), (5679, JobState::Running));
        assert_eq!((j.start, j.end, j.elapsed_secs), (Some(UnixTime(1_762_788_040)), None, 1));
        assert_eq!((j.nnodes, j.nodelist.as_str()), (2, "gpu[1-2]"));
        assert_eq!(j.alloc_tres.to_canonical(), format!("billing=2,cpu=2,mem={},node=2", 1_024u64 << 20));
        assert_eq!((j.alloc_cpus, j.req_cpus, j.req_tres.get("node")), (2, 1, Some(1)));
        // Submitted with `--gpus 8`, but this cluster does not account GPUs as TRES: none invented.
        assert_eq!((j.gpus(), j.req_tres.gpus()), (0, 0));
        assert_eq!((j.step_count, j.total_cpu_ms), (1, 0));
    }

    #[test]
    fn slurm_web_start_no_val_is_unknown() {
        // Job 9308 of rackslab/Slurm-web tests/assets/slurmrestd/24.11/0.0.42/slurmdb-jobs.json
        // (commit 53b3348f9fdda40c1b6aaab66b0319343ea97ddb; 225 KB, not copied here): cancelled
        // before it started, 24.11 prints `time.start` as NO_VAL (4294967294). These fields are
        // taken from it unchanged; the rest of the job is left out.
        let doc = r#"{"jobs":[{"job_id":9308,"cluster":"hpc","allocation_nodes":0,
            "time":{"elapsed":0,"eligible":1779917176,"end":1779917176,"start":4294967294,
              "submission":1779917176,"suspended":0},
            "nodes":"None assigned","state":{"current":["CANCELLED"],"reason":"None"},"steps":[],
            "tres":{"allocated":[],"requested":[{"type":"cpu","name":"","id":1,"count":1},
              {"type":"mem","name":"","id":2,"count":512},{"type":"node","name":"","id":4,"count":1},
              {"type":"billing","name":"","id":5,"count":1}]}}]}"#;
        let j = only_job(doc);
        assert_eq!(j.state, JobState::Cancelled);
        assert_eq!((j.start, j.end, j.elapsed_secs), (None, Some(UnixTime(1_779_917_176)), 0));
        // No allocation (`allocation_nodes` 0): the node count is the requested one.
        assert_eq!((j.nodelist.as_str(), j.nnodes, j.alloc_cpus), ("", 1, 0));
        assert_eq!(j.req_tres.to_canonical(), format!("billing=1,cpu=1,mem={},node=1", 512u64 << 20));
    }

    fn testbed() -> Vec<JobRun> {
        let items = read_sacct_json(TB_SACCT, &cluster()).unwrap();
        assert!(quarantined(&items).is_empty(), "{:?}", quarantined(&items));
        jobs(&items).into_iter().cloned().collect()
    }

    fn by_raw(all: &[JobRun], raw: u64) -> Vec<&JobRun> {
        all.iter().filter(|j| j.key.job_id_raw == raw).collect()
    }

    #[test]
    fn testbed_requeued_job_has_two_runs() {
        let all = testbed();
        assert_eq!(all.len(), 27);
        let runs = by_raw(&all, 23);
        assert_eq!(runs.len(), 2);
        assert_ne!(runs[0].key, runs[1].key);
        assert_eq!(runs[0].state, JobState::Requeued);
        assert_eq!(runs[0].key.submit, UnixTime(1_795_306_943));
        assert_eq!(runs[1].state, JobState::Completed);
        assert_eq!(runs[1].key.submit, UnixTime(1_795_306_949));
        assert_eq!(runs[0].key.cluster.as_str(), "testcluster");
    }

    #[test]
    fn testbed_names_gpus_arrays_hets() {
        let all = testbed();
        assert_eq!(by_raw(&all, 10)[0].name, "pipe|name ünïcødé ✓");
        let gpu = by_raw(&all, 11)[0];
        assert_eq!(gpu.gpus(), 1);
        assert_eq!(gpu.alloc_tres.get("gres/gpu:fake"), Some(1));
        assert_eq!(gpu.req_tres.get("gres/gpu"), Some(1));
        for (task, raw) in [(0u32, 15u64), (1, 16), (2, 19), (3, 7)] {
            let j = by_raw(&all, raw)[0];
            assert_eq!(j.job_id, format!("7_{task}"));
            assert_eq!((j.array_job_id, j.array_task_id), (Some(7), Some(task)));
        }
        let h1 = by_raw(&all, 14)[0];
        assert_eq!((h1.job_id.as_str(), h1.het_job_id, h1.het_job_offset), ("13+1", Some(13), Some(1)));
        assert_eq!((h1.start, h1.nodelist.as_str(), h1.state.clone()), (None, "", JobState::Cancelled));
        assert_eq!(by_raw(&all, 13)[0].job_id, "13+0");
        assert_eq!(by_raw(&all, 2)[0].wckey, "*proj-alpha");
        assert_eq!(by_raw(&all, 4)[0].wckey, "proj-alpha");
        // 2 CPUs × 256 MB = the 512 MB memory TRES: DefMemPerCPU, per CPU.
        let six = by_raw(&all, 6)[0];
        assert_eq!((six.req_mem_bytes, six.req_mem_per_cpu), (Some(256 << 20), true));
        assert_eq!((by_raw(&all, 3)[0].req_mem_bytes, by_raw(&all, 3)[0].req_mem_per_cpu), (Some(300 << 20), false));
    }

    #[test]
    fn testbed_cpu_time_is_the_step_sum() {
        // Job rows of capture/sacct-steps-parsable2.txt: TotalCPU / UserCPU / SystemCPU.
        let all = testbed();
        let j2 = by_raw(&all, 2)[0];
        assert_eq!((j2.total_cpu_ms, j2.user_cpu_ms, j2.system_cpu_ms), (1655, 1655, 0));
        assert_eq!(j2.step_count, 2);
        assert_eq!(j2.max_rss_bytes, Some(6228 << 10)); // 2.batch MaxRSS 6228K
        assert_eq!(j2.tres_usage_in_tot.get("fs/disk"), Some(19_273 + 6_976));
        assert_eq!(j2.tres_usage_in_tot.get("cpu"), Some(1));
        assert_eq!(j2.energy_joules, Some(0));
        let j8 = by_raw(&all, 8)[0];
        assert_eq!((j8.total_cpu_ms, j8.user_cpu_ms, j8.system_cpu_ms), (2991, 2986, 4));
        assert_eq!(j8.step_count, 6);
        let j24 = by_raw(&all, 24)[0];
        assert_eq!((j24.total_cpu_ms, j24.user_cpu_ms, j24.system_cpu_ms), (1497, 1493, 3));
    }

    /// From 23.02 on the job's own CPU totals are filled and win over the step sum, which may
    /// count the same usage twice; 22.05's are 0 and the step sum stands (issue 9, item 8). No
    /// recorded 23.02+ job used any CPU (all are `sleep` jobs), so the input is derived from
    /// Slurm-web's 24.11 `slurmdb-job-completed.json` (S1, job 6362, one batch step): the job's
    /// `time.total/user/system` set to 1.5 s / 1.2 s / 0.3 s, and its batch step given the same
    /// times and listed twice (a step list that repeats the job's usage).
    #[test]
    fn own_cpu_totals_win_over_a_step_sum_that_counts_twice() {
        let mut doc: Value = serde_json::from_str(WEB_24_11_DONE).unwrap();
        let job = &mut doc["jobs"][0];
        let mut step = job["steps"][0].clone();
        for (k, secs, us) in [("total", 1, 500_000), ("user", 1, 200_000), ("system", 0, 300_000)] {
            assert_eq!(job["time"][k], serde_json::json!({"seconds": 0, "microseconds": 0}), "the recording changed");
            job["time"][k] = serde_json::json!({"seconds": secs, "microseconds": us});
            step["time"][k] = serde_json::json!({"seconds": secs, "microseconds": us});
        }
        job["steps"] = serde_json::json!([step.clone(), step]);
        let j = only_job(&doc.to_string());
        assert_eq!(j.step_count, 2);
        assert_eq!((j.total_cpu_ms, j.user_cpu_ms, j.system_cpu_ms), (1500, 1200, 300), "the job's own totals");
        // The same job with its own totals 0, as 22.05 prints them: the steps' sum.
        for k in ["total", "user", "system"] {
            doc["jobs"][0]["time"][k] = serde_json::json!({"seconds": 0, "microseconds": 0});
        }
        let j = only_job(&doc.to_string());
        assert_eq!((j.total_cpu_ms, j.user_cpu_ms, j.system_cpu_ms), (3000, 2400, 600), "the step sum");
    }

    /// A job whose array id is its own id, with neither a task id nor a task list, is no array
    /// job; a pending array record (task list) and an array task (task id) are (issue 9, item 8).
    /// Derived from SARC 23.11.5 (job 4, `array.job_id` 0, task unset, task list "") with
    /// `array.job_id` set to 4, then with `array.task` "1-3" too; and from the
    /// prometheus-slurm-exporter squeue sample with job 26515966's `array_job_id` set to its own
    /// id (its pending array record 58948420, task list "1-10", as recorded).
    #[test]
    fn own_id_as_array_id_is_no_array_job() {
        let mut doc: Value = serde_json::from_str(SARC_23_11).unwrap();
        assert_eq!(doc["jobs"][0]["array"]["task"], "", "the recording changed");
        doc["jobs"][0]["array"]["job_id"] = serde_json::json!(4);
        let j = only_job(&doc.to_string());
        assert_eq!((j.array_job_id, j.array_task_id, j.job_id.as_str()), (None, None, "4"));
        doc["jobs"][0]["array"]["task"] = serde_json::json!("1-3");
        let j = only_job(&doc.to_string());
        assert_eq!((j.array_job_id, j.array_task_id, j.job_id.as_str()), (Some(4), None, "4_[1-3]"));

        let mut doc: Value = serde_json::from_str(PROM_SQUEUE).unwrap();
        assert_eq!(doc["jobs"][0]["job_id"], 26_515_966);
        doc["jobs"][0]["array_job_id"] = serde_json::json!(26_515_966);
        let items = read_squeue_json(&doc.to_string(), &cluster()).unwrap();
        let all = jobs(&items);
        assert_eq!((all[0].array_job_id, all[0].array_task_id, all[0].job_id.as_str()), (None, None, "26515966"));
        assert_eq!((all[1].array_job_id, all[1].job_id.as_str()), (Some(58_948_420), "58948420_[1-10]"));
    }

    /// Without a node count (absent or 0), the allocated TRES `node` count is the run's (issue 9,
    /// item 8). Derived from Slurm-web 25.11 `slurmdb-job-gpus-multi-nodes.json` (S7, job 5679:
    /// `allocation_nodes` 2, allocated `node` 2, requested `node` 1) with `allocation_nodes`
    /// removed, then 0; and from the prometheus-slurm-exporter squeue sample with job 26515966's
    /// `node_count` (1; `tres_alloc_str` has `node=1`) removed.
    #[test]
    fn node_count_from_allocated_tres() {
        let mut doc: Value = serde_json::from_str(WEB_25_11_MULTI_NODES).unwrap();
        doc["jobs"][0].as_object_mut().unwrap().remove("allocation_nodes").expect("the recording changed");
        assert_eq!(only_job(&doc.to_string()).nnodes, 2);
        doc["jobs"][0]["allocation_nodes"] = serde_json::json!(0);
        assert_eq!(only_job(&doc.to_string()).nnodes, 2);

        let mut doc: Value = serde_json::from_str(PROM_SQUEUE).unwrap();
        doc["jobs"][0].as_object_mut().unwrap().remove("node_count").expect("the recording changed");
        let items = read_squeue_json(&doc.to_string(), &cluster()).unwrap();
        assert_eq!(jobs(&items)[0].nnodes, 1);
    }

    #[test]
    fn testbed_times_states_exit_codes() {
        let all = testbed();
        let j24 = by_raw(&all, 24)[0];
        assert_eq!((j24.suspended_secs, j24.elapsed_secs), (8, 9));
        let j25 = by_raw(&all, 25)[0];
        assert_eq!((j25.state.clone(), j25.end), (JobState::Running, None));
        assert_eq!(j25.gpus(), 2);
        assert_eq!(j25.timelimit_mins, Some(1440));
        let j26 = by_raw(&all, 26)[0];
        assert_eq!((j26.state.clone(), j26.start, j26.end), (JobState::Pending, None, None));
        assert_eq!(by_raw(&all, 17)[0].state, JobState::Timeout);
        // Signals come through 22.05 JSON; the FAILED `exit 1` (job 9) does not (Slurm bug).
        assert_eq!(by_raw(&all, 12)[0].exit_code, Some(ExitCode { code: 0, signal: 9 }));
        assert_eq!(by_raw(&all, 9)[0].exit_code, Some(ExitCode { code: 0, signal: 0 }));
        assert_eq!(by_raw(&all, 9)[0].state, JobState::Failed);
        assert_eq!(by_raw(&all, 1)[0].flags, "SchedMain");
    }

    #[test]
    fn testbed_oom_cgroup() {
        let j = only_job(TB_OOM);
        assert_eq!(j.state, JobState::OutOfMemory);
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 125 }));
        assert_eq!(j.max_rss_bytes, Some(3352 << 10)); // 30.batch MaxRSS 3352K
                                                       // The text job row says TotalCPU 00:00.050 (steps 00:00.048 + 00:00.001 after truncation).
        assert_eq!((j.total_cpu_ms, j.step_count), (50, 2));
    }

    #[test]
    fn quarantine_lines_point_at_the_job() {
        let items = read_sacct_json(TB_SACCT, &cluster()).unwrap();
        assert_eq!(items.len(), 27);
        let lines = job_start_lines(TB_SACCT);
        assert_eq!(lines.len(), 27);
        let l = lines[1] as usize;
        let text_line = TB_SACCT.lines().nth(l - 1).unwrap();
        assert!(text_line.trim_start().starts_with('{'), "{text_line:?}");
    }

    #[test]
    fn squeue_testbed() {
        let items = read_squeue_json(TB_SQUEUE, &cluster()).unwrap();
        assert!(quarantined(&items).is_empty());
        let all: Vec<JobRun> = jobs(&items).into_iter().cloned().collect();
        assert_eq!(all.len(), 28);
        let j25 = by_raw(&all, 25)[0];
        assert_eq!(j25.state, JobState::Running);
        assert_eq!(j25.alloc_tres.get("gres/gpu"), Some(2));
        assert_eq!(j25.alloc_tres.get("mem"), Some(1 << 30));
        assert_eq!((j25.start, j25.end, j25.elapsed_secs), (Some(UnixTime(1_795_307_106)), None, 0));
        assert_eq!((j25.alloc_cpus, j25.uid, j25.wckey.as_str()), (4, Some(1002), "*proj-beta"));
        assert_eq!((j25.req_mem_bytes, j25.req_mem_per_cpu), (Some(256 << 20), true));
        let j26 = by_raw(&all, 26)[0];
        assert_eq!((j26.state.clone(), j26.start, j26.end), (JobState::Pending, None, None));
        assert!(j26.alloc_tres.is_empty());
        assert_eq!(j26.req_tres.get("gres/gpu"), Some(1));
        let j24 = by_raw(&all, 24)[0];
        assert_eq!((j24.suspended_secs, j24.elapsed_secs), (8, 9));
        // Exit codes are raw wait statuses here, and correct: 256 → 1:0, 9 → 0:9.
        assert_eq!(by_raw(&all, 9)[0].exit_code, Some(ExitCode { code: 1, signal: 0 }));
        assert_eq!(by_raw(&all, 12)[0].exit_code, Some(ExitCode { code: 0, signal: 9 }));
        assert_eq!(by_raw(&all, 8)[0].derived_exit_code, Some(ExitCode { code: 3, signal: 0 }));
        let t3 = by_raw(&all, 7)[0];
        assert_eq!((t3.job_id.as_str(), t3.array_task_id), ("7_3", Some(3)));
        let h = by_raw(&all, 14)[0];
        assert_eq!((h.job_id.as_str(), h.start), ("13+1", None));
        assert_eq!(by_raw(&all, 10)[0].name, "pipe|name ünïcødé ✓");
        assert_eq!(by_raw(&all, 17)[0].elapsed_secs, 76);
    }

    #[test]
    fn squeue_prometheus_21_08_mixed_eras() {
        let items = read_squeue_json(PROM_SQUEUE, &cluster()).unwrap();
        let all = jobs(&items);
        assert_eq!(all.len(), 2);
        let r = all[0];
        assert_eq!((r.key.job_id_raw, r.state.clone()), (26_515_966, JobState::Running));
        assert_eq!(r.alloc_tres.get("mem"), Some(64_000 << 20)); // 62.50G
        assert_eq!((r.req_mem_bytes, r.req_mem_per_cpu), (Some(64_000 << 20), true));
        assert_eq!(r.timelimit_mins, Some(30_240));
        assert_eq!(r.key.cluster.as_str(), "rivos");
        // Suspended for 1686200533 − 1684114921 − 1381100 s before its last resume.
        assert_eq!(r.suspended_secs, 704_512);
        let p = all[1];
        assert_eq!(p.job_id, "58948420_[1-10]");
        assert_eq!((p.array_job_id, p.array_task_id), (Some(58_948_420), None));
        assert_eq!((p.state.clone(), p.start), (JobState::Pending, None));
        assert_eq!(p.req_tres.get("mem"), Some(128 << 30));
        assert_eq!((p.req_mem_bytes, p.req_mem_per_cpu), (Some(128 << 30), false));
    }

    #[test]
    fn squeue_slurm_web_25_05_live_job() {
        let items = read_squeue_json(WEB_25_05_LIVE, &cluster()).unwrap();
        let all = jobs(&items);
        assert_eq!(all.len(), 1);
        let j = all[0];
        assert_eq!((j.key.job_id_raw, j.state.clone(), j.end), (4739, JobState::Running, None));
        assert_eq!((j.array_job_id, j.het_job_id, j.job_id.as_str()), (None, None, "4739"));
        assert_eq!(j.alloc_tres.get("mem"), Some(16 << 30));
        assert_eq!((j.alloc_cpus, j.nnodes, j.uid), (32, 1, Some(10_002)));
        assert_eq!(j.timelimit_mins, Some(2));
        assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
    }

    #[test]
    fn squeue_slurm_web_24_11_and_25_11_pending() {
        for (text, raw, submit, eligible, cpus, mem_gib, nodes, uid, user) in [
            (WEB_24_11_LIVE_PENDING, 6370, 1_762_788_785, 1_762_792_385, 4, 2, 1, 10_004, "jbeck"),
            (WEB_25_11_LIVE_PENDING, 5750, 1_762_942_475, 1_762_946_075, 128, 64, 2, 10_003, "vhartman"),
        ] {
            let items = read_squeue_json(text, &cluster()).unwrap();
            let all = jobs(&items);
            assert_eq!(all.len(), 1, "{items:?}");
            let j = all[0];
            assert_eq!((j.key.cluster.as_str(), j.key.job_id_raw, j.key.submit), ("hpc", raw, UnixTime(submit)));
            assert_eq!(j.state, JobState::Pending);
            // `start_time`/`end_time` of a pending job (`--begin now+1hour`) are the scheduler's
            // plan (begin, begin + 1 min limit), not facts.
            assert_eq!((j.start, j.end, j.elapsed_secs), (None, None, 0));
            assert_eq!(j.eligible, Some(UnixTime(eligible)));
            assert!(j.alloc_tres.is_empty());
            assert_eq!((j.req_tres.get("cpu"), j.req_tres.get("mem")), (Some(cpus), Some(mem_gib << 30)));
            assert_eq!((j.req_cpus, j.alloc_cpus, j.nnodes, j.gpus()), (cpus as u32, 0, nodes, 0));
            assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(512 << 20), true));
            assert_eq!((j.uid, j.user.as_str(), j.group.as_str()), (Some(uid), user, "scientists"));
            assert_eq!((j.timelimit_mins, j.nodelist.as_str()), (Some(1), ""));
            assert_eq!(j.job_id, raw.to_string());
            assert_eq!((j.array_job_id, j.het_job_id), (None, None));
            assert_eq!(j.exit_code, Some(ExitCode { code: 0, signal: 0 }));
        }
    }

    #[test]
    fn compat_helpers() {
        let n = |s: &str| slurm_number(Some(&serde_json::from_str(s).unwrap()));
        assert_eq!(n("5").unwrap(), SlurmNumber::Value(5));
        assert_eq!(n(r#"{"set":true,"infinite":false,"number":7}"#).unwrap(), SlurmNumber::Value(7));
        assert_eq!(n(r#"{"set":false,"infinite":false,"number":0}"#).unwrap(), SlurmNumber::Unset);
        assert_eq!(n(r#"{"set":true,"infinite":true,"number":0}"#).unwrap(), SlurmNumber::Infinite);
        assert_eq!(n("4294967294").unwrap().u32().unwrap(), None);
        assert_eq!(n("18446744073709551614").unwrap().u64(), None);
        assert_eq!(n("\"12\"").unwrap(), SlurmNumber::Value(12));
        assert!(n("\"abc\"").unwrap_err().contains("abc"));
        assert!(n("[1]").is_err());
        assert_eq!(n("-2").unwrap().u64(), None);
        let s = |t: &str| slurm_string(Some(&serde_json::from_str(t).unwrap()));
        assert_eq!(s(r#"["a","b"]"#).unwrap(), "a");
        assert_eq!(s("[]").unwrap(), "");
        assert_eq!(s("null").unwrap(), "");
        assert!(s("{}").is_err());
        let st = |t: &str| slurm_state(Some(&serde_json::from_str(t).unwrap())).map(|s| s.0);
        assert_eq!(st(r#"["PENDING","REQUEUED"]"#).unwrap(), JobState::Requeued);
        assert_eq!(st(r#"["RUNNING"]"#).unwrap(), JobState::Running);
        assert_eq!(st(r#"["COMPLETED","COMPLETING"]"#).unwrap(), JobState::Completing);
        assert!(st("[]").is_err());
        assert!(st(r#""running""#).is_err());
        let ec = |t: &str| slurm_exit_code(Some(&serde_json::from_str(t).unwrap()));
        assert_eq!(ec("256").unwrap(), Some(ExitCode { code: 1, signal: 0 }));
        assert_eq!(
            ec(r#"{"status":["SIGNALED"],"return_code":{"set":false,"infinite":false,"number":0},"signal":{"id":{"set":true,"infinite":false,"number":9},"name":"KILL"}}"#).unwrap(),
            Some(ExitCode { code: 0, signal: 9 })
        );
        assert_eq!(
            ec(r#"{"status":["ERROR"],"return_code":{"set":true,"infinite":false,"number":2}}"#).unwrap(),
            Some(ExitCode { code: 2, signal: 0 })
        );
        assert_eq!(ec(r#"{"status":["PENDING"],"return_code":{"set":false,"number":0}}"#).unwrap(), None);
        let tr = |t: &str| slurm_tres(Some(&serde_json::from_str(t).unwrap()), TresUnits::Alloc);
        let t = tr(r#"[{"type":"gres","name":"gpu:fake","id":1002,"count":2},{"type":"mem","name":null,"id":2,"count":1024},{"type":"energy","name":"","count":-2}]"#).unwrap();
        assert_eq!(t.to_canonical(), format!("gres/gpu:fake=2,mem={}", 1u64 << 30));
        assert!(tr(r#"[{"type":"cpu","count":"x"}]"#).is_err());
        assert_eq!(tr(r#""cpu=2,mem=1G""#).unwrap().get("cpu"), Some(2));
        assert_eq!(array_range_text("0x3C"), "2-5");
        assert_eq!(array_range_text("0x5%2"), "0,2%2");
        assert_eq!(array_range_text("1-10"), "1-10");
    }

    #[test]
    fn newer_step_id_shapes_and_step_times() {
        let doc = r#"{"jobs":[{"job_id":77,"time":{"submission":100,"start":{"set":true,"number":101},"end":0},
            "state":{"current":["RUNNING"]},"array":{"job_id":{"set":true,"number":0},"task_id":{"set":false,"number":0}},
            "steps":[
              {"step":{"id":{"job_id":77,"step_id":"batch"}},"time":{"total":{"seconds":1,"microseconds":500000}},
               "statistics":{"energy":{"consumed":{"set":true,"infinite":false,"number":12}}},
               "tres":{"requested":{"max":[{"type":"mem","name":"","id":2,"count":4096}],"total":[]}}},
              {"step":{"id":"77.0"},"time":{"total":{"seconds":{"set":true,"number":2},"microseconds":600000}},
               "statistics":{"energy":{"consumed":{"set":false,"number":0}}}},
              {"step":{"id":3},"time":{"total":{"seconds":0,"microseconds":0}}}
            ]}]}"#;
        let j = only_job(doc);
        assert_eq!(j.step_count, 3);
        assert_eq!(j.total_cpu_ms, 4100);
        assert_eq!(j.energy_joules, Some(12));
        assert_eq!(j.max_rss_bytes, Some(4096));
        assert_eq!((j.start, j.end), (Some(UnixTime(101)), None));
        assert_eq!(j.key.cluster.as_str(), "default");
    }

    #[test]
    fn malformed_documents_are_errors() {
        let c = cluster();
        let truncated = &TB_SACCT[..TB_SACCT.len() / 2];
        assert!(matches!(read_sacct_json(truncated, &c), Err(JsonError::NotJson { .. })));
        let e = read_sacct_json("JobID|State\n1|COMPLETED", &c).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = read_sacct_json(r#"{"meta":{},"errors":[]}"#, &c).unwrap_err();
        assert!(matches!(e, JsonError::NoJobs { .. }) && e.to_string().contains("jobs"), "{e}");
        assert!(matches!(read_sacct_json("[1,2]", &c), Err(JsonError::NoJobs { .. })));
        assert!(matches!(read_sacct_json(r#"{"jobs":{}}"#, &c), Err(JsonError::NoJobs { .. })));
        let e =
            read_sacct_json(r#"{"jobs":[],"errors":[{"error":"Unable to connect to slurmdbd","error_number":1}]}"#, &c)
                .unwrap_err();
        assert!(e.to_string().contains("slurmdbd"), "{e}");
        assert!(read_squeue_json("", &c).is_err());
        assert!(read_sacct_json(r#"{"jobs":[]}"#, &c).unwrap().is_empty());
    }

    #[test]
    fn unreadable_jobs_are_quarantined_with_their_json() {
        let c = cluster();
        let doc = r#"{
  "jobs": [
    {"job_id": "abc", "time": {"submission": 5}, "state": {"current": "COMPLETED"}},
    {"job_id": 9, "time": {"elapsed": 3}, "state": {"current": "COMPLETED"}},
    {"job_id": 10, "time": {"submission": 5}, "state": {"current": "COMPLETED"}, "tres": {"allocated": "cpu=x"}},
    42,
    {"job_id": 11, "time": {"submission": 5}, "state": {"current": "COMPLETED"}, "cluster": "bad name!"},
    {"job_id": 12, "time": {"submission": 5}, "state": {"current": ["COMPLETED"]}}
  ]
}"#;
        let items = read_sacct_json(doc, &c).unwrap();
        let q = quarantined(&items);
        assert_eq!(q.len(), 5);
        assert!(q[0].reason.contains("job_id") && q[0].raw.contains("\"abc\""), "{:?}", q[0]);
        assert_eq!(q[0].line, 3);
        assert!(q[1].reason.contains("time.submission"), "{}", q[1].reason);
        assert_eq!(q[1].line, 4);
        assert!(q[2].reason.contains("tres.allocated"), "{}", q[2].reason);
        assert!(q[3].reason.contains("not an object") && q[3].raw == "42");
        assert!(q[4].reason.contains("cluster"));
        assert_eq!(jobs(&items).len(), 1);
        let sq = read_squeue_json(r#"{"jobs":[{"job_id":1,"job_state":"RUNNING"}]}"#, &c).unwrap();
        assert!(quarantined(&sq)[0].reason.contains("submit_time"));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e20f64..1e20).prop_map(Value::from),
            "[a-zA-Z0-9_ .:=,\\-]{0,12}".prop_map(Value::String),
            prop_oneof![Just("job_id"), Just("RUNNING"), Just("batch"), Just("0x1F"), Just("mem")]
                .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("job_id".to_string()),
                            Just("time".to_string()),
                            Just("submission".to_string()),
                            Just("set".to_string()),
                            Just("number".to_string()),
                            Just("infinite".to_string()),
                            Just("steps".to_string()),
                            Just("tres".to_string()),
                            Just("state".to_string()),
                            Just("count".to_string()),
                            "[a-z_]{1,8}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    const FIELDS: [&str; 14] = [
        "job_id",
        "time",
        "state",
        "steps",
        "tres",
        "array",
        "het",
        "exit_code",
        "required",
        "wckey",
        "cluster",
        "job_state",
        "submit_time",
        "tres_alloc_str",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn never_panics_on_random_text(s in "\\PC{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let c = cluster();
            let _ = read_sacct_json(&s, &c);
            let _ = read_squeue_json(&s, &c);
            let lossy = String::from_utf8_lossy(&bytes);
            let _ = read_sacct_json(&lossy, &c);
            let _ = read_squeue_json(&lossy, &c);
            // Any prefix of a real document is an error or a result, never a panic.
            let cut = s.len() % WEB_23_11.len();
            if WEB_23_11.is_char_boundary(cut) {
                let _ = read_sacct_json(&WEB_23_11[..cut], &c);
            }
        }

        #[test]
        fn never_panics_on_random_job_values(v in arb_json(), field in 0usize..FIELDS.len(), as_job in any::<bool>()) {
            let c = cluster();
            let doc = if as_job {
                serde_json::json!({ "jobs": [v] })
            } else {
                // A real job with one field replaced by a random value.
                let mut base: Value = serde_json::from_str(WEB_23_11).unwrap();
                base["jobs"][0][FIELDS[field]] = v;
                base
            };
            let text = doc.to_string();
            let items = read_sacct_json(&text, &c).unwrap();
            prop_assert_eq!(items.len(), 1);
            let items = read_squeue_json(&text, &c).unwrap();
            prop_assert_eq!(items.len(), 1);
        }
    }
}
