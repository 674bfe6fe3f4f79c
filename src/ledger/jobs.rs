//! Job runs: idempotent upsert and filtered reads.

use std::sync::OnceLock;

use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, OptionalExtension, Row};

use crate::model::{ClusterName, ExitCode, JobKey, JobRun, JobState, Tres, UnixTime};

use super::{Ledger, LedgerError, Writer};

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    New,
    Updated,
    Unchanged,
}

/// Content columns in bind order (parameters 1..=47), then the bookkeeping columns.
const CONTENT: [&str; 47] = [
    "cluster",
    "job_id_raw",
    "submit",
    "job_id",
    "array_job_id",
    "array_task_id",
    "het_job_id",
    "het_job_offset",
    "name",
    "user_name",
    "uid",
    "group_name",
    "account",
    "partition",
    "qos",
    "state",
    "cancelled_by",
    "exit_code",
    "derived_exit_code",
    "eligible",
    "start",
    "end",
    "elapsed_secs",
    "suspended_secs",
    "timelimit_mins",
    "nnodes",
    "alloc_cpus",
    "req_cpus",
    "req_mem_bytes",
    "req_mem_per_cpu",
    "req_tres",
    "alloc_tres",
    "nodelist",
    "total_cpu_ms",
    "user_cpu_ms",
    "system_cpu_ms",
    "max_rss_bytes",
    "tres_usage_in_tot",
    "step_count",
    "energy_joules",
    "wckey",
    "reservation",
    "flags",
    "work_dir",
    "submit_line",
    "db_index",
    "is_final",
];

/// Looks a run up by its key: its rowid and content hash.
const FIND_SQL: &str =
    "SELECT rowid, content_hash FROM job_runs WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3";

/// A stored run in brief, for a conflict's reason.
const DESCRIBE_SQL: &str = "SELECT state, elapsed_secs, alloc_tres, coalesce(end, 0) FROM job_runs \
     WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3";

/// Whether any run of a cluster has a job id in a range (the primary key's prefix).
const ANY_IN_RANGE_SQL: &str = "SELECT 1 FROM job_runs WHERE cluster = ?1 AND job_id_raw BETWEEN ?2 AND ?3 LIMIT 1";

/// A new run: parameters 1..=47 are [`CONTENT`], 48 the hash, 49 the change sequence, 50 `now`.
/// A run already stored is left alone: the caller then looks it up (see [`RunWriter::write`]).
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let params: Vec<String> = (1..=CONTENT.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO job_runs ({}, content_hash, change_seq, first_seen, last_changed, revision) \
             VALUES ({}, ?48, ?49, ?50, ?50, 1) ON CONFLICT (cluster, job_id_raw, submit) DO NOTHING",
            CONTENT.join(", "),
            params.join(", ")
        )
    })
}

/// A changed run: the same parameters as [`insert_sql`] (the key, 1..=3, is not rewritten), and
/// its rowid as 51.
fn update_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let sets: Vec<String> = CONTENT.iter().enumerate().skip(3).map(|(i, c)| format!("{c} = ?{}", i + 1)).collect();
        format!(
            "UPDATE job_runs SET {}, content_hash = ?48, change_seq = ?49, last_changed = ?50, \
             revision = revision + 1 WHERE rowid = ?51",
            sets.join(", ")
        )
    })
}

/// FNV-1a over the bound values: decides whether a run's content changed. The stored hashes of
/// existing ledgers were made by it: changing it would mark every run changed once.
struct Fnv(u64);

impl Fnv {
    const START: u64 = 0xcbf2_9ce4_8422_2325;

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x100_0000_01b3);
    }

    fn value(&mut self, v: Val<'_>) {
        match v {
            Val::Null => self.bytes(b"\0null"),
            Val::Int(i) => self.bytes(&i.to_le_bytes()),
            Val::Text(t) => self.bytes(t.as_bytes()),
        }
    }
}

fn int(field: &'static str, v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::ValueRange { field, value: v })
}

fn opt_int(field: &'static str, v: Option<u64>) -> Result<Option<i64>, LedgerError> {
    v.map(|x| int(field, x)).transpose()
}

/// One SQL value of a run's row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<Option<i64>> for Val<'a> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v)
    }
}

/// The derived values of a run's row (integers checked to fit SQLite, canonical TRES and exit
/// code text) and its content hash; computed apart from the write so that a collect can do it
/// on the parsing thread.
#[derive(Debug, Clone)]
struct Encoded {
    ints: [Option<i64>; 27],
    /// exit code, derived exit code, req_tres, alloc_tres, tres_usage_in_tot, end to end.
    text: String,
    /// End offsets of the five texts in `text`; `None` for a missing exit code.
    ends: [Option<u32>; 5],
    hash: u64,
}

fn push_exit(out: &mut String, e: Option<ExitCode>) -> Option<u32> {
    use std::fmt::Write;
    let e = e?;
    let _ = write!(out, "{}:{}", e.code, e.signal);
    Some(out.len() as u32)
}

fn check_tres(tres: &Tres) -> Result<(), LedgerError> {
    for (name, n) in tres.iter() {
        if i64::try_from(n).is_err() {
            return Err(LedgerError::ValueRange {
                field: if name == "mem" { "TRES mem" } else { "TRES count" },
                value: n,
            });
        }
    }
    Ok(())
}

impl Encoded {
    fn new(j: &JobRun) -> Result<Self, LedgerError> {
        let ints: [Option<i64>; 27] = [
            Some(int("JobIDRaw", j.key.job_id_raw)?),
            Some(j.key.submit.0),
            opt_int("ArrayJobID", j.array_job_id)?,
            j.array_task_id.map(i64::from),
            opt_int("HetJobID", j.het_job_id)?,
            j.het_job_offset.map(i64::from),
            j.uid.map(i64::from),
            j.cancelled_by.map(i64::from),
            j.eligible.map(|t| t.0),
            j.start.map(|t| t.0),
            j.end.map(|t| t.0),
            Some(int("ElapsedRaw", j.elapsed_secs)?),
            Some(int("Suspended", j.suspended_secs)?),
            opt_int("TimelimitRaw", j.timelimit_mins)?,
            Some(j.nnodes as i64),
            Some(j.alloc_cpus as i64),
            Some(j.req_cpus as i64),
            opt_int("ReqMem", j.req_mem_bytes)?,
            Some(j.req_mem_per_cpu as i64),
            Some(int("TotalCPU", j.total_cpu_ms)?),
            Some(int("UserCPU", j.user_cpu_ms)?),
            Some(int("SystemCPU", j.system_cpu_ms)?),
            opt_int("MaxRSS", j.max_rss_bytes)?,
            Some(j.step_count as i64),
            opt_int("ConsumedEnergyRaw", j.energy_joules)?,
            opt_int("DBIndex", j.db_index)?,
            Some(j.state.is_final() as i64),
        ];
        let mut text = String::with_capacity(160);
        let mut ends = [None; 5];
        ends[0] = push_exit(&mut text, j.exit_code);
        ends[1] = push_exit(&mut text, j.derived_exit_code);
        for (i, tres) in [&j.req_tres, &j.alloc_tres, &j.tres_usage_in_tot].into_iter().enumerate() {
            check_tres(tres)?;
            tres.write_canonical(&mut text);
            ends[2 + i] = Some(text.len() as u32);
        }
        let mut enc = Self { ints, text, ends, hash: 0 };
        let mut h = Fnv(Fnv::START);
        for v in enc.values(j) {
            h.value(v);
        }
        enc.hash = h.0;
        Ok(enc)
    }

    /// The i-th derived text; `None` is SQL NULL.
    fn text(&self, i: usize) -> Option<&str> {
        let end = self.ends[i]? as usize;
        let start = self.ends[..i].iter().rev().find_map(|e| *e).unwrap_or(0) as usize;
        Some(&self.text[start..end])
    }

    /// The 47 [`CONTENT`] values of `j`'s row, in bind order.
    fn values<'a>(&'a self, j: &'a JobRun) -> [Val<'a>; 47] {
        let [raw, submit, arr, task, het, hoff, uid, cby, elig, start, end, el, susp, tl, nn, ac, rc, rm, rmpc, tc, uc, sc, rss, steps, en, dbi, fin] =
            self.ints;
        let t = |i: usize| self.text(i).map_or(Val::Null, Val::Text);
        [
            j.key.cluster.as_str().into(),
            raw.into(),
            submit.into(),
            j.job_id.as_str().into(),
            arr.into(),
            task.into(),
            het.into(),
            hoff.into(),
            j.name.as_str().into(),
            j.user.as_str().into(),
            uid.into(),
            j.group.as_str().into(),
            j.account.as_str().into(),
            j.partition.as_str().into(),
            j.qos.as_str().into(),
            j.state.as_str().into(),
            cby.into(),
            t(0),
            t(1),
            elig.into(),
            start.into(),
            end.into(),
            el.into(),
            susp.into(),
            tl.into(),
            nn.into(),
            ac.into(),
            rc.into(),
            rm.into(),
            rmpc.into(),
            t(2),
            t(3),
            j.nodelist.as_str().into(),
            tc.into(),
            uc.into(),
            sc.into(),
            rss.into(),
            t(4),
            steps.into(),
            en.into(),
            j.wckey.as_str().into(),
            j.reservation.as_str().into(),
            j.flags.as_str().into(),
            j.work_dir.as_str().into(),
            j.submit_line.as_str().into(),
            dbi.into(),
            fin.into(),
        ]
    }
}

/// A run checked and encoded for its row, ready for [`RunWriter::upsert`]. Building it is the
/// CPU part of an upsert; it needs no ledger, so a collect builds it on the parsing thread.
#[derive(Debug, Clone)]
pub struct PreparedRun {
    job: Box<JobRun>,
    enc: Encoded,
}

impl PreparedRun {
    /// The hash of what the ledger stores of the run (equal hashes: the same content).
    pub fn content_hash(&self) -> u64 {
        self.enc.hash
    }
}

/// A run SQLite cannot hold (a count over 2^63), with the reason.
#[derive(Debug)]
pub struct Rejected {
    pub job: Box<JobRun>,
    pub error: LedgerError,
}

impl PreparedRun {
    pub fn new(job: Box<JobRun>) -> Result<Self, Rejected> {
        match Encoded::new(&job) {
            Ok(enc) => Ok(Self { job, enc }),
            Err(error) => Err(Rejected { job, error }),
        }
    }

    pub fn job(&self) -> &JobRun {
        &self.job
    }

    pub fn into_job(self) -> Box<JobRun> {
        self.job
    }
}

/// Writes runs in one transaction with its statements prepared once, not per run.
pub struct RunWriter<'w> {
    find: CachedStatement<'w>,
    describe: CachedStatement<'w>,
    insert: CachedStatement<'w>,
    update: CachedStatement<'w>,
    any_in_range: CachedStatement<'w>,
    /// A cluster and job id range the ledger held no run in when [`RunWriter::expect_range`]
    /// looked: runs there are inserted straight away instead of looked up first.
    absent: Option<(ClusterName, u64, u64)>,
    seq: &'w mut i64,
    now: i64,
}

impl Writer<'_> {
    /// Statements for writing many runs in this transaction. Other writes of the transaction
    /// wait until the returned writer is dropped.
    pub fn runs(&mut self) -> Result<RunWriter<'_>, LedgerError> {
        let tx: &rusqlite::Connection = &self.tx;
        Ok(RunWriter {
            find: tx.prepare_cached(FIND_SQL)?,
            describe: tx.prepare_cached(DESCRIBE_SQL)?,
            insert: tx.prepare_cached(insert_sql())?,
            update: tx.prepare_cached(update_sql())?,
            any_in_range: tx.prepare_cached(ANY_IN_RANGE_SQL)?,
            absent: None,
            seq: &mut self.seq,
            now: self.now,
        })
    }

    /// Inserts a run or updates it when its content changed. Rejects values SQLite cannot hold.
    pub fn upsert_run(&mut self, j: &JobRun) -> Result<Upsert, LedgerError> {
        let enc = Encoded::new(j)?;
        self.runs()?.write(j, &enc)
    }
}

impl RunWriter<'_> {
    /// Inserts the run, or updates it when its content hash differs from the stored one; an
    /// unchanged run is not written and takes no `change_seq`.
    pub fn upsert(&mut self, run: &PreparedRun) -> Result<Upsert, LedgerError> {
        self.write(&run.job, &run.enc)
    }

    /// Says that the next runs are of `cluster` with job ids in `lo..=hi` (a batch of a poll).
    /// When the ledger holds no run there, as for a poll of new jobs, each is inserted without
    /// being looked up first. Only a hint: any run may follow.
    pub fn expect_range(&mut self, cluster: &ClusterName, lo: u64, hi: u64) -> Result<(), LedgerError> {
        self.absent = None;
        let (Ok(lo_i), Ok(hi_i)) = (i64::try_from(lo), i64::try_from(hi)) else { return Ok(()) };
        let any =
            self.any_in_range.query_row(rusqlite::params![cluster.as_str(), lo_i, hi_i], |_| Ok(())).optional()?;
        if any.is_none() {
            self.absent = Some((cluster.clone(), lo, hi));
        }
        Ok(())
    }

    fn in_absent_range(&self, k: &JobKey) -> bool {
        matches!(&self.absent, Some((c, lo, hi)) if c == &k.cluster && (*lo..=*hi).contains(&k.job_id_raw))
    }

    fn write(&mut self, j: &JobRun, enc: &Encoded) -> Result<Upsert, LedgerError> {
        let values = enc.values(j);
        if self.in_absent_range(&j.key) {
            // Inserted unless the same key came earlier in this range (then looked up below).
            let next_seq = *self.seq + 1;
            if bind_row(&mut self.insert, &values, enc.hash, next_seq, self.now)?.raw_execute()? == 1 {
                *self.seq = next_seq;
                return Ok(Upsert::New);
            }
        }
        let found = self.find_row(&values[..3])?;
        let (stmt, outcome) = match found {
            Some((_, hash)) if hash == enc.hash as i64 => return Ok(Upsert::Unchanged),
            Some((rowid, _)) => {
                self.update.raw_bind_parameter(51, rowid)?;
                (&mut self.update, Upsert::Updated)
            }
            None => (&mut self.insert, Upsert::New),
        };
        let next_seq = *self.seq + 1;
        let changed = bind_row(stmt, &values, enc.hash, next_seq, self.now)?.raw_execute()?;
        if changed != 1 {
            // The key was looked up in this transaction: the write cannot miss its row.
            return Err(LedgerError::Corrupt {
                key: j.key.to_string(),
                reason: format!("{changed} rows written for one run"),
            });
        }
        *self.seq = next_seq;
        Ok(outcome)
    }

    /// (rowid, content_hash) of the row with the key `key`.
    fn find_row(&mut self, key: &[Val<'_>]) -> Result<Option<(i64, i64)>, LedgerError> {
        for (i, v) in key.iter().enumerate() {
            bind(&mut self.find, i + 1, *v)?;
        }
        let mut rows = self.find.raw_query();
        Ok(match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        })
    }

    /// What a stored run holds, in brief (for a conflict's reason).
    pub fn describe(&mut self, key: &JobKey) -> Result<String, LedgerError> {
        let params = rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0];
        Ok(self.describe.query_row(params, |r| {
            Ok(format!(
                "state {}, ElapsedRaw {}, AllocTRES {}, End {}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?
            ))
        })?)
    }
}

/// Binds a row's values, hash (48), change sequence (49) and `now` (50).
fn bind_row<'s, 'c>(
    stmt: &'s mut rusqlite::Statement<'c>,
    values: &[Val<'_>],
    hash: u64,
    seq: i64,
    now: i64,
) -> rusqlite::Result<&'s mut rusqlite::Statement<'c>> {
    for (i, v) in values.iter().enumerate() {
        bind(stmt, i + 1, *v)?;
    }
    stmt.raw_bind_parameter(48, hash as i64)?;
    stmt.raw_bind_parameter(49, seq)?;
    stmt.raw_bind_parameter(50, now)?;
    Ok(stmt)
}

fn bind(stmt: &mut rusqlite::Statement<'_>, i: usize, v: Val<'_>) -> rusqlite::Result<()> {
    match v {
        Val::Null => stmt.raw_bind_parameter(i, rusqlite::types::Null),
        Val::Int(n) => stmt.raw_bind_parameter(i, n),
        Val::Text(t) => stmt.raw_bind_parameter(i, t),
    }
}

/// Which runs `jobs` lists. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub cluster: Option<ClusterName>,
    pub user: Option<String>,
    pub account: Option<String>,
    pub partition: Option<String>,
    /// Slurm state names (`RUNNING`, `COMPLETED`…); any of them matches.
    pub states: Vec<String>,
    /// Runs active at or after this instant (not ended before it).
    pub since: Option<UnixTime>,
    /// Runs submitted before this instant.
    pub until: Option<UnixTime>,
    pub job_id_raw: Option<u64>,
    pub limit: Option<u64>,
}

/// The columns [`row_to_job`] reads, in its order.
macro_rules! job_columns {
    () => {
        "cluster, job_id_raw, submit, job_id, array_job_id, array_task_id, het_job_id, het_job_offset, \
         name, user_name, uid, group_name, account, partition, qos, state, cancelled_by, exit_code, derived_exit_code, eligible, \
         start, end, elapsed_secs, suspended_secs, timelimit_mins, nnodes, alloc_cpus, req_cpus, req_mem_bytes, req_mem_per_cpu, \
         req_tres, alloc_tres, nodelist, total_cpu_ms, user_cpu_ms, system_cpu_ms, max_rss_bytes, tres_usage_in_tot, step_count, \
         energy_joules, wckey, reservation, flags, work_dir, submit_line, db_index"
    };
}

const SELECT: &str = concat!("SELECT ", job_columns!(), " FROM job_runs");
/// Columns read by [`row_to_job`]; [`SELECT_SEQ`] has `change_seq` after them.
pub(super) const JOB_COLUMN_COUNT: usize = 46;
/// [`SELECT`] with `change_seq` as column 46.
pub(super) const SELECT_SEQ: &str = concat!("SELECT ", job_columns!(), ", change_seq FROM job_runs");

/// The columns of [`SELECT_SEQ`], each qualified with `alias.` (for joins).
pub(super) fn job_columns_of(alias: &str) -> String {
    let mut out = String::new();
    for c in job_columns!().split(',').map(str::trim).chain(["change_seq"]) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(alias);
        out.push('.');
        out.push_str(c);
    }
    out
}

impl Ledger {
    /// Runs matching the filter, oldest submit first.
    pub fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRun>, LedgerError> {
        let mut sql = String::from(SELECT);
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        let mut push = |cond: &str, v: Box<dyn ToSql>| {
            args.push(v);
            conds.push(cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(c) = &f.cluster {
            push("cluster = ?", Box::new(c.as_str().to_string()));
        }
        if let Some(u) = &f.user {
            push("user_name = ?", Box::new(u.clone()));
        }
        if let Some(a) = &f.account {
            push("account = ?", Box::new(a.clone()));
        }
        if let Some(p) = &f.partition {
            push("partition = ?", Box::new(p.clone()));
        }
        if let Some(t) = f.since {
            push("(end IS NULL OR end >= ?)", Box::new(t.0));
        }
        if let Some(t) = f.until {
            push("submit < ?", Box::new(t.0));
        }
        if let Some(id) = f.job_id_raw {
            push("job_id_raw = ?", Box::new(id as i64));
        }
        let mut state_conds = Vec::new();
        for s in &f.states {
            args.push(Box::new(s.to_ascii_uppercase()));
            state_conds.push(format!("state = ?{}", args.len()));
        }
        if !state_conds.is_empty() {
            conds.push(format!("({})", state_conds.join(" OR ")));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(" ORDER BY submit, job_id_raw, cluster");
        if let Some(n) = f.limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut stmt = self.conn().prepare(&sql)?;
        let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
        let rows = stmt.query_map(params.as_slice(), row_to_job)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }
}

impl Ledger {
    /// Runs whose content changed after `seq`, in change order, with their sequence number:
    /// a consumer's read of "what is new since my cursor".
    pub fn runs_changed_since(&self, seq: i64, limit: u64) -> Result<Vec<(i64, JobRun)>, LedgerError> {
        let sql = format!("{SELECT_SEQ} WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2");
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([seq, limit as i64], |r| Ok((r.get::<_, i64>(46)?, row_to_job(r)?)))?;
        let mut out = Vec::new();
        for r in rows {
            let (s, j) = r?;
            out.push((s, j?));
        }
        Ok(out)
    }

    /// Whether any run carries this TRES (in its AllocTRES, or ReqTRES for `requested`), typed
    /// entries included (`gres/gpu:a100` carries `gres/gpu`). Stops at the first run found.
    pub fn runs_carry_tres(&self, name: &str, requested: bool) -> Result<bool, LedgerError> {
        let column = if requested { "req_tres" } else { "alloc_tres" };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM job_runs WHERE instr(',' || {column}, ',' || ?1 || '=') > 0 \
             OR instr(',' || {column}, ',' || ?1 || ':') > 0)"
        );
        Ok(self.conn().query_row(&sql, [name], |r| r.get(0))?)
    }

    /// The TRES names the latest `limit` runs carry (allocated or requested), sorted.
    pub fn recent_tres_names(&self, limit: u64) -> Result<Vec<String>, LedgerError> {
        let mut stmt =
            self.conn().prepare("SELECT alloc_tres, req_tres FROM job_runs ORDER BY change_seq DESC LIMIT ?1")?;
        let mut names = std::collections::BTreeSet::new();
        for row in stmt.query_map([limit as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (a, b) = row?;
            for entry in a.split(',').chain(b.split(',')) {
                if let Some((name, _)) = entry.split_once('=') {
                    names.insert(name.split(':').next().unwrap_or(name).to_string());
                }
            }
        }
        Ok(names.into_iter().filter(|n| !n.is_empty()).collect())
    }

    /// One run by its key, with its allocation detail when one is stored.
    pub fn job(&self, key: &JobKey) -> Result<Option<JobRun>, LedgerError> {
        let sql = format!("{SELECT} WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3");
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let mut rows =
            stmt.query_map(rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], row_to_job)?;
        let mut run = rows.next().transpose()?.transpose()?;
        if let Some(r) = run.as_mut() {
            r.allocation = self.allocation(key)?;
        }
        Ok(run)
    }
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

pub(super) fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Result<JobRun, LedgerError>> {
    let cluster_text: String = r.get(0)?;
    let id: i64 = r.get(1)?;
    // The key text is only built for an error (this runs once per row read).
    let corrupt = |reason: String| LedgerError::Corrupt { key: format!("{cluster_text}/{id}"), reason };
    let cluster = match ClusterName::new(&cluster_text) {
        Ok(c) => c,
        Err(e) => return Ok(Err(corrupt(e))),
    };
    let key = JobKey { cluster, job_id_raw: u(r.get(1)?), submit: UnixTime(r.get(2)?) };
    let mut j = JobRun::new(key, r.get(3)?);
    j.array_job_id = r.get::<_, Option<i64>>(4)?.map(u);
    j.array_task_id = r.get::<_, Option<i64>>(5)?.map(|v| v as u32);
    j.het_job_id = r.get::<_, Option<i64>>(6)?.map(u);
    j.het_job_offset = r.get::<_, Option<i64>>(7)?.map(|v| v as u32);
    j.name = r.get(8)?;
    j.user = r.get(9)?;
    j.uid = r.get::<_, Option<i64>>(10)?.map(|v| v as u32);
    j.group = r.get(11)?;
    j.account = r.get(12)?;
    j.partition = r.get(13)?;
    j.qos = r.get(14)?;
    j.state = JobState::from_slurm(&r.get::<_, String>(15)?);
    j.cancelled_by = r.get::<_, Option<i64>>(16)?.map(|v| v as u32);
    let exit = |s: Option<String>| -> Option<ExitCode> {
        let (c, sig) = s?.split_once(':').map(|(a, b)| (a.parse().ok(), b.parse().ok()))?;
        Some(ExitCode { code: c?, signal: sig? })
    };
    j.exit_code = exit(r.get(17)?);
    j.derived_exit_code = exit(r.get(18)?);
    j.eligible = r.get::<_, Option<i64>>(19)?.map(UnixTime);
    j.start = r.get::<_, Option<i64>>(20)?.map(UnixTime);
    j.end = r.get::<_, Option<i64>>(21)?.map(UnixTime);
    j.elapsed_secs = u(r.get(22)?);
    j.suspended_secs = u(r.get(23)?);
    j.timelimit_mins = r.get::<_, Option<i64>>(24)?.map(u);
    j.nnodes = r.get::<_, i64>(25)? as u32;
    j.alloc_cpus = r.get::<_, i64>(26)? as u32;
    j.req_cpus = r.get::<_, i64>(27)? as u32;
    j.req_mem_bytes = r.get::<_, Option<i64>>(28)?.map(u);
    j.req_mem_per_cpu = r.get::<_, i64>(29)? != 0;
    let tres = |i: usize| -> rusqlite::Result<Result<Tres, LedgerError>> {
        let s: String = r.get(i)?;
        Ok(Tres::from_canonical(&s).ok_or_else(|| corrupt(format!("TRES text {s:?}"))))
    };
    j.req_tres = match tres(30)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    j.alloc_tres = match tres(31)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    j.nodelist = r.get(32)?;
    j.total_cpu_ms = u(r.get(33)?);
    j.user_cpu_ms = u(r.get(34)?);
    j.system_cpu_ms = u(r.get(35)?);
    j.max_rss_bytes = r.get::<_, Option<i64>>(36)?.map(u);
    j.tres_usage_in_tot = match tres(37)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    j.step_count = r.get::<_, i64>(38)? as u32;
    j.energy_joules = r.get::<_, Option<i64>>(39)?.map(u);
    j.wckey = r.get(40)?;
    j.reservation = r.get(41)?;
    j.flags = r.get(42)?;
    j.work_dir = r.get(43)?;
    j.submit_line = r.get(44)?;
    j.db_index = r.get::<_, Option<i64>>(45)?.map(u);
    Ok(Ok(j))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterName, ExitCode, JobKey, JobRun, JobState, Tres, UnixTime};

    fn rich() -> JobRun {
        let mut j = JobRun::new(
            JobKey { cluster: ClusterName::new("c1").unwrap(), job_id_raw: 4242, submit: UnixTime(1_795_305_600) },
            "7_3".into(),
        );
        j.array_job_id = Some(7);
        j.array_task_id = Some(3);
        j.name = "train ünïcode".into();
        j.user = "alice".into();
        j.uid = Some(1000);
        j.group = "grp".into();
        j.account = "acct".into();
        j.partition = "gpu".into();
        j.qos = "normal".into();
        j.state = JobState::Cancelled;
        j.cancelled_by = Some(0);
        j.exit_code = Some(ExitCode { code: 0, signal: 15 });
        j.derived_exit_code = Some(ExitCode { code: 1, signal: 0 });
        j.eligible = Some(UnixTime(1_795_305_601));
        j.start = Some(UnixTime(1_795_305_602));
        j.end = Some(UnixTime(1_795_309_602));
        j.elapsed_secs = 4000;
        j.timelimit_mins = Some(120);
        j.nnodes = 2;
        j.alloc_cpus = 64;
        j.req_cpus = 64;
        j.req_mem_bytes = Some(1 << 34);
        j.req_tres = Tres::from_pairs([("cpu".into(), 64), ("gres/gpu".into(), 2), ("mem".into(), 1 << 34)]);
        j.alloc_tres = Tres::from_pairs([
            ("billing".into(), 80),
            ("cpu".into(), 64),
            ("gres/gpu:a100".into(), 2),
            ("gres/gpu".into(), 2),
        ]);
        j.nodelist = "c[0001-0002]".into();
        j.total_cpu_ms = 123_456;
        j.user_cpu_ms = 100_000;
        j.system_cpu_ms = 23_456;
        j.max_rss_bytes = Some(987_654_321);
        j.tres_usage_in_tot =
            Tres::from_pairs([("cpu".into(), 123), ("fs/disk".into(), 5_000_000), ("mem".into(), 987_654_321)]);
        j.step_count = 3;
        j.energy_joules = Some(0);
        j.wckey = "wc".into();
        j.flags = "SchedMain".into();
        j.work_dir = "/home/alice".into();
        j.submit_line = "sbatch\nrun.sh".into();
        j.db_index = Some(90_000_001);
        j
    }

    fn minimal() -> JobRun {
        let mut j = JobRun::new(
            JobKey { cluster: ClusterName::new("c1").unwrap(), job_id_raw: 4243, submit: UnixTime(5) },
            "4243".into(),
        );
        j.state = JobState::Other("WEIRD".into());
        j
    }

    /// The content hash must stay what earlier versions stored, or a re-collect would mark
    /// every run of an existing ledger changed (and advance change_seq for nothing).
    #[test]
    fn content_hash_is_stable_across_versions() {
        let mut l = Ledger::open_in_memory().unwrap();
        let mut w = l.writer(UnixTime(1)).unwrap();
        w.upsert_run(&rich()).unwrap();
        w.upsert_run(&minimal()).unwrap();
        w.commit().unwrap();
        let hashes: Vec<i64> = l
            .conn()
            .prepare("SELECT content_hash FROM job_runs ORDER BY job_id_raw")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(hashes, EXPECTED);
    }

    #[test]
    fn update_keeps_first_seen_and_bumps_revision() {
        let mut l = Ledger::open_in_memory().unwrap();
        let mut w = l.writer(UnixTime(10)).unwrap();
        assert_eq!(w.upsert_run(&rich()).unwrap(), Upsert::New);
        w.commit().unwrap();
        let mut w = l.writer(UnixTime(20)).unwrap();
        let mut changed = rich();
        changed.total_cpu_ms += 1;
        let mut runs = w.runs().unwrap();
        let prepared = PreparedRun::new(Box::new(changed.clone())).unwrap();
        assert_eq!(runs.upsert(&prepared).unwrap(), Upsert::Updated);
        assert_eq!(runs.upsert(&prepared).unwrap(), Upsert::Unchanged);
        drop(runs);
        w.commit().unwrap();
        let row: (i64, i64, i64, i64) = l
            .conn()
            .query_row("SELECT revision, first_seen, last_changed, change_seq FROM job_runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(row, (2, 10, 20, 2));
        assert_eq!(l.job(&changed.key).unwrap(), Some(changed));
    }

    #[test]
    fn a_range_expected_new_still_catches_repeats() {
        let mut l = Ledger::open_in_memory().unwrap();
        let c = ClusterName::new("c1").unwrap();
        let mut w = l.writer(UnixTime(1)).unwrap();
        let mut runs = w.runs().unwrap();
        let run = |id: u64, cpu: u64| {
            let mut j = minimal();
            j.key.job_id_raw = id;
            j.total_cpu_ms = cpu;
            PreparedRun::new(Box::new(j)).unwrap()
        };
        runs.expect_range(&c, 4000, 5000).unwrap();
        assert!(runs.absent.is_some());
        assert_eq!(runs.upsert(&run(4243, 1)).unwrap(), Upsert::New);
        // The same run again in the same range: looked up, not inserted twice.
        assert_eq!(runs.upsert(&run(4243, 1)).unwrap(), Upsert::Unchanged);
        assert_eq!(runs.upsert(&run(4243, 2)).unwrap(), Upsert::Updated);
        // Outside the hinted range, and a range that now holds a run: the usual look-up.
        assert_eq!(runs.upsert(&run(9, 1)).unwrap(), Upsert::New);
        runs.expect_range(&c, 4000, 5000).unwrap();
        assert!(runs.absent.is_none());
        assert_eq!(runs.upsert(&run(4244, 1)).unwrap(), Upsert::New);
        assert_eq!(runs.upsert(&run(4243, 2)).unwrap(), Upsert::Unchanged);
        drop(runs);
        w.commit().unwrap();
        assert_eq!(l.change_seq().unwrap(), 4);
        assert_eq!(l.jobs(&JobFilter::default()).unwrap().len(), 3);
    }

    // Stored by the ToSql-based upsert of the first release (commit ceb93f4).
    const EXPECTED: [i64; 2] = [-4138131130558500902, 4035863640027236456];
}
