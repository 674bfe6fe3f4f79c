//! Job runs: idempotent upsert and filtered reads.

use std::sync::OnceLock;

use rusqlite::types::ToSql;
use rusqlite::Row;

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
    "cluster", "job_id_raw", "submit", "job_id", "array_job_id", "array_task_id", "het_job_id", "het_job_offset",
    "name", "user_name", "uid", "group_name", "account", "partition", "qos", "state", "cancelled_by", "exit_code",
    "derived_exit_code", "eligible", "start", "end", "elapsed_secs", "suspended_secs", "timelimit_mins", "nnodes",
    "alloc_cpus", "req_cpus", "req_mem_bytes", "req_mem_per_cpu", "req_tres", "alloc_tres", "nodelist",
    "total_cpu_ms", "user_cpu_ms", "system_cpu_ms", "max_rss_bytes", "tres_usage_in_tot", "step_count",
    "energy_joules", "wckey", "reservation", "flags", "work_dir", "submit_line", "db_index", "is_final",
];

fn upsert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let n = CONTENT.len();
        let cols = CONTENT.join(", ");
        let params: Vec<String> = (1..=n + 4).map(|i| format!("?{i}")).collect();
        let sets: Vec<String> = CONTENT[3..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
        format!(
            "INSERT INTO job_runs ({cols}, content_hash, change_seq, first_seen, last_changed, revision) \
             VALUES ({}, 1) \
             ON CONFLICT (cluster, job_id_raw, submit) DO UPDATE SET {}, content_hash = excluded.content_hash, \
             change_seq = excluded.change_seq, last_changed = excluded.last_changed, revision = job_runs.revision + 1 \
             WHERE job_runs.content_hash != excluded.content_hash \
             RETURNING revision",
            params.join(", "),
            sets.join(", ")
        )
    })
}

/// FNV-1a over the bound values: decides whether a run's content changed.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x100_0000_01b3);
    }
}

fn int(field: &'static str, v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::ValueRange { field, value: v })
}

fn opt_int(field: &'static str, v: Option<u64>) -> Result<Option<i64>, LedgerError> {
    v.map(|x| int(field, x)).transpose()
}

impl Writer<'_> {
    /// Inserts a run or updates it when its content changed. Rejects values SQLite cannot hold.
    pub fn upsert_run(&mut self, j: &JobRun) -> Result<Upsert, LedgerError> {
        let exit = j.exit_code.map(|e| e.to_string());
        let derived = j.derived_exit_code.map(|e| e.to_string());
        let texts = [j.req_tres.to_canonical(), j.alloc_tres.to_canonical(), j.tres_usage_in_tot.to_canonical()];
        let ints: [Option<i64>; 30] = [
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
            None,
            None,
            None,
        ];
        for tres in [&j.req_tres, &j.alloc_tres, &j.tres_usage_in_tot] {
            for (name, n) in tres.iter() {
                if i64::try_from(n).is_err() {
                    return Err(LedgerError::ValueRange { field: if name == "mem" { "TRES mem" } else { "TRES count" }, value: n });
                }
            }
        }
        let [raw, submit, arr, task, het, hoff, uid, cby, elig, start, end, el, susp, tl, nn, ac, rc, rm, rmpc, tc, uc, sc, rss, steps, en, dbi, fin, ..] =
            ints;
        let values: [&dyn ToSql; 47] = [
            &j.key.cluster.as_str(), &raw, &submit, &j.job_id, &arr, &task, &het, &hoff,
            &j.name, &j.user, &uid, &j.group, &j.account, &j.partition, &j.qos, &j.state.as_str(), &cby, &exit,
            &derived, &elig, &start, &end, &el, &susp, &tl, &nn,
            &ac, &rc, &rm, &rmpc, &texts[0], &texts[1], &j.nodelist,
            &tc, &uc, &sc, &rss, &texts[2], &steps,
            &en, &j.wckey, &j.reservation, &j.flags, &j.work_dir, &j.submit_line, &dbi, &fin,
        ];
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        for v in &values {
            match v.to_sql()? {
                rusqlite::types::ToSqlOutput::Borrowed(r) => hash_ref(&mut h, r),
                rusqlite::types::ToSqlOutput::Owned(o) => hash_ref(&mut h, (&o).into()),
                _ => h.bytes(b"?"),
            }
        }
        let next_seq = self.seq + 1;
        let mut stmt = self.tx.prepare_cached(upsert_sql())?;
        for (i, v) in values.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, *v)?;
        }
        stmt.raw_bind_parameter(48, h.0 as i64)?;
        stmt.raw_bind_parameter(49, next_seq)?;
        stmt.raw_bind_parameter(50, self.now)?;
        stmt.raw_bind_parameter(51, self.now)?;
        let mut rows = stmt.raw_query();
        let outcome = match rows.next()? {
            Some(row) => {
                let revision: i64 = row.get(0)?;
                self.seq = next_seq;
                if revision == 1 { Upsert::New } else { Upsert::Updated }
            }
            None => Upsert::Unchanged,
        };
        Ok(outcome)
    }
}

fn hash_ref(h: &mut Fnv, v: rusqlite::types::ValueRef<'_>) {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => h.bytes(b"\0null"),
        ValueRef::Integer(i) => h.bytes(&i.to_le_bytes()),
        ValueRef::Real(f) => h.bytes(&f.to_le_bytes()),
        ValueRef::Text(t) | ValueRef::Blob(t) => h.bytes(t),
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
/// [`SELECT`] with `change_seq` as column 46.
const SELECT_SEQ: &str = concat!("SELECT ", job_columns!(), ", change_seq FROM job_runs");

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

    /// One run by its key.
    pub fn job(&self, key: &JobKey) -> Result<Option<JobRun>, LedgerError> {
        let sql = format!("{SELECT} WHERE cluster = ?1 AND job_id_raw = ?2 AND submit = ?3");
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let mut rows = stmt.query_map(rusqlite::params![key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], row_to_job)?;
        rows.next().transpose()?.transpose()
    }
}


fn u(v: i64) -> u64 {
    v.max(0) as u64
}

fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Result<JobRun, LedgerError>> {
    let cluster: String = r.get(0)?;
    let key_text = format!("{cluster}/{}", r.get::<_, i64>(1)?);
    let corrupt = |reason: String| LedgerError::Corrupt { key: key_text.clone(), reason };
    let cluster = match ClusterName::new(&cluster) {
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
