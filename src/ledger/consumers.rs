//! The consumers' durable state besides the outbox: per consumer, its cursor over `change_seq`;
//! per consumer and run, its mark (an opaque integer: for slices, how far the billable span is
//! planned), whether it is done with the run, and why it holds the run.
//!
//! Invariants: a consumer's cursor never moves back; a run's mark is written in the same
//! transaction as the items planned from it (see [`PlanStatements`]), so a crash plans an item
//! either with its mark or not at all.

use rusqlite::{params, CachedStatement, OptionalExtension, Row};

use crate::model::{ClusterName, JobKey, JobRun, UnixTime};

use super::jobs::{job_columns_of, row_to_job, JOB_COLUMN_COUNT};
use super::{Ledger, LedgerError, Writer};

/// What a consumer keeps about one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMark {
    /// The consumer's position in the run, its own meaning (slices: planned up to this instant).
    pub mark: Option<i64>,
    /// Nothing more will come of this run for the consumer.
    pub done: bool,
    /// Why the run cannot be planned now (shown by `status`; planning resumes when fixed).
    pub hold: Option<String>,
}

/// A run read for planning, with the consumer's mark and the run's place in the change sequence.
pub struct MarkedRun {
    pub seq: i64,
    pub run: JobRun,
    pub mark: RunMark,
}

fn mark_of(r: &Row<'_>, first: usize) -> rusqlite::Result<RunMark> {
    Ok(RunMark {
        mark: r.get(first)?,
        done: r.get::<_, Option<i64>>(first + 1)?.unwrap_or(0) != 0,
        hold: r.get(first + 2)?,
    })
}

/// Runs changed after `seq` (in change order) joined with their marks: the planner's one read,
/// walking `job_runs_by_change` and looking each mark up by its key (no temporary table).
const CHANGED: &str = "SELECT RUN_COLUMNS, m.mark, m.done, m.hold FROM job_runs r \
     LEFT JOIN consumer_runs m ON m.consumer = ?3 AND m.cluster = r.cluster AND m.job_id_raw = r.job_id_raw AND m.submit = r.submit \
     WHERE r.change_seq > ?1 ORDER BY r.change_seq LIMIT ?2";

/// Runs the consumer holds, with their marks.
const HELD: &str = "SELECT RUN_COLUMNS, m.mark, m.done, m.hold FROM consumer_runs m \
     JOIN job_runs r ON m.cluster = r.cluster AND m.job_id_raw = r.job_id_raw AND m.submit = r.submit \
     WHERE m.consumer = ?1 AND m.hold IS NOT NULL ORDER BY m.submit, m.cluster, m.job_id_raw";

const READ_MARK: &str =
    "SELECT mark, done, hold FROM consumer_runs WHERE consumer = ?1 AND cluster = ?2 AND job_id_raw = ?3 AND submit = ?4";

const PUT_MARK: &str = "INSERT INTO consumer_runs (consumer, cluster, job_id_raw, submit, mark, done, hold)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (consumer, cluster, job_id_raw, submit) DO UPDATE SET mark = excluded.mark, done = excluded.done,
         hold = excluded.hold";

fn sql(template: &str) -> String {
    template.replace("RUN_COLUMNS", &job_columns_of("r"))
}

fn read_marked(stmt: &mut rusqlite::Statement<'_>, p: impl rusqlite::Params) -> Result<Vec<MarkedRun>, LedgerError> {
    let rows = stmt.query_map(p, |r| {
        Ok((r.get::<_, i64>(JOB_COLUMN_COUNT)?, row_to_job(r)?, mark_of(r, JOB_COLUMN_COUNT + 1)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (seq, run, mark) = r?;
        out.push(MarkedRun { seq, run: run?, mark });
    }
    Ok(out)
}

fn consumer_id(c: &rusqlite::Connection, name: &str) -> Result<Option<i64>, LedgerError> {
    Ok(c.prepare_cached("SELECT id FROM consumers WHERE name = ?1")?.query_row([name], |r| r.get(0)).optional()?)
}

impl Ledger {
    /// The consumer's id, if it ever planned.
    pub fn consumer_id(&self, name: &str) -> Result<Option<i64>, LedgerError> {
        consumer_id(self.conn(), name)
    }

    /// The consumer's position in the change sequence (0 before its first plan).
    pub fn consumer_cursor(&self, name: &str) -> Result<i64, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT change_seq FROM consumers WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// The mark of a run for a consumer (the default when there is none).
    pub fn run_mark(&self, name: &str, key: &JobKey) -> Result<RunMark, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(RunMark::default()) };
        let mut stmt = self.conn().prepare_cached(READ_MARK)?;
        Ok(stmt
            .query_row(params![id, key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], |r| mark_of(r, 0))
            .optional()?
            .unwrap_or_default())
    }

    /// Up to `limit` runs changed after `seq`, each with the consumer's mark.
    pub fn changed_runs(&self, name: &str, seq: i64, limit: u64) -> Result<Vec<MarkedRun>, LedgerError> {
        let id = self.consumer_id(name)?.unwrap_or(-1);
        let mut stmt = self.conn().prepare_cached(&sql(CHANGED))?;
        read_marked(&mut stmt, params![seq, limit as i64, id])
    }

    /// The runs a consumer holds, each with its mark (whose `hold` says why).
    pub fn held_runs_marked(&self, name: &str) -> Result<Vec<MarkedRun>, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(Vec::new()) };
        let mut stmt = self.conn().prepare_cached(&sql(HELD))?;
        read_marked(&mut stmt, [id])
    }

    /// Runs a consumer holds back, with the reason.
    pub fn held_runs(&self, name: &str) -> Result<Vec<(JobKey, String)>, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(Vec::new()) };
        let mut stmt = self.conn().prepare(
            "SELECT cluster, job_id_raw, submit, hold FROM consumer_runs WHERE consumer = ?1 AND hold IS NOT NULL
             ORDER BY submit, cluster, job_id_raw",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (c, id, submit, reason) = row?;
            let cluster =
                ClusterName::new(&c).map_err(|e| LedgerError::Corrupt { key: format!("{c}/{id}"), reason: e })?;
            out.push((JobKey { cluster, job_id_raw: id as u64, submit: UnixTime(submit) }, reason));
        }
        Ok(out)
    }

    /// The terms the consumer's items were planned on (`None`: not stored yet).
    pub fn consumer_terms(&self, name: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT terms FROM consumers WHERE name = ?1")?
            .query_row([name], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Runs the consumer has planned and is not done with.
    pub fn consumer_open_runs(&self, name: &str) -> Result<u64, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(0) };
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM consumer_runs WHERE consumer = ?1 AND done = 0",
            [id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Whether the consumer has planned anything: a mark or an item.
    pub fn consumer_has_planned(&self, name: &str) -> Result<bool, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(false) };
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM consumer_runs WHERE consumer = ?1) OR EXISTS (SELECT 1 FROM outbox WHERE consumer = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }

    /// Whether the consumer has planned or held any run of the cluster.
    pub fn consumer_has_runs(&self, name: &str, cluster: &ClusterName) -> Result<bool, LedgerError> {
        let Some(id) = self.consumer_id(name)? else { return Ok(false) };
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM consumer_runs WHERE consumer = ?1 AND cluster = ?2)",
            params![id, cluster.as_str()],
            |r| r.get(0),
        )?)
    }
}

impl Writer<'_> {
    /// The consumer's id, registering the name on first use.
    pub fn consumer(&mut self, name: &str) -> Result<i64, LedgerError> {
        if let Some(id) = consumer_id(&self.tx, name)? {
            return Ok(id);
        }
        self.tx.execute(
            "INSERT INTO consumers (name, change_seq, updated_at) VALUES (?1, 0, ?2)",
            params![name, self.now],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Stores the terms the consumer's items are planned on from now.
    pub fn set_consumer_terms(&mut self, consumer: i64, terms: &str) -> Result<(), LedgerError> {
        self.tx.execute("UPDATE consumers SET terms = ?2 WHERE id = ?1", params![consumer, terms])?;
        Ok(())
    }

    /// Moves the consumer's change-sequence cursor (never backwards).
    pub fn set_consumer_cursor(&mut self, consumer: i64, seq: i64) -> Result<(), LedgerError> {
        self.tx.execute(
            "UPDATE consumers SET change_seq = max(change_seq, ?2), updated_at = ?3 WHERE id = ?1",
            params![consumer, seq, self.now],
        )?;
        Ok(())
    }

    /// Calls `f` on up to `limit` runs changed after `seq`, in change order, each with its mark,
    /// as they are read inside this transaction (`f` may write through [`PlanStatements`]).
    /// Returns the change sequence number of the last run, if there was one.
    pub fn for_each_changed_run<E: From<LedgerError>>(
        &self,
        consumer: i64,
        seq: i64,
        limit: u64,
        mut f: impl FnMut(MarkedRun) -> Result<(), E>,
    ) -> Result<Option<i64>, E> {
        let mut stmt = self.tx.prepare_cached(&sql(CHANGED)).map_err(LedgerError::from)?;
        let mut rows = stmt.query(params![seq, limit as i64, consumer]).map_err(LedgerError::from)?;
        let mut last = None;
        while let Some(r) = rows.next().map_err(LedgerError::from)? {
            let seq: i64 = r.get(JOB_COLUMN_COUNT).map_err(LedgerError::from)?;
            let run = row_to_job(r).map_err(LedgerError::from)??;
            let mark = mark_of(r, JOB_COLUMN_COUNT + 1).map_err(LedgerError::from)?;
            last = Some(seq);
            f(MarkedRun { seq, run, mark })?;
        }
        Ok(last)
    }

    /// The runs the consumer holds with their marks, read inside this transaction.
    pub fn held_runs_marked(&self, consumer: i64) -> Result<Vec<MarkedRun>, LedgerError> {
        let mut stmt = self.tx.prepare_cached(&sql(HELD))?;
        read_marked(&mut stmt, [consumer])
    }

    /// The writes a planning pass makes for every run, batched into multi-row statements inside
    /// this transaction. Call [`PlanStatements::finish`] before committing.
    pub fn plan_statements(&self, consumer: i64) -> Result<PlanStatements<'_>, LedgerError> {
        let add = self.tx.prepare_cached(super::outbox::ADD_TO_TOTAL)?;
        self.open_plans.set(self.open_plans.get() + 1);
        Ok(PlanStatements {
            open: &self.open_plans,
            tx: &self.tx,
            consumer,
            add,
            marks: Vec::with_capacity(ROWS_PER_STATEMENT),
            items: Vec::with_capacity(ROWS_PER_STATEMENT),
            totals: Vec::new(),
            total_at: std::collections::HashMap::default(),
            changed: 0,
            now: self.now,
        })
    }
}

/// Rows per multi-row statement of a planning pass (one statement instead of 64 saves most of
/// SQLite's per-statement work; 64 × 14 parameters is far below SQLite's limit).
const ROWS_PER_STATEMENT: usize = 64;

/// A fast hasher for the item ids of one planning transaction (FxHash's mix, 8 bytes a step):
/// the ids are the planner's own, not an attacker's, and SipHash over millions of them cost a
/// day's planning more than the map itself.
#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Distinct totals whose increments a planning pass sums in memory before writing them.
const MAX_TOTALS: usize = 65_536;

/// `sql_head` followed by `rows` groups of `width` placeholders, then `sql_tail`.
fn multi_row(sql_head: &str, width: usize, rows: usize, sql_tail: &str) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    format!("{sql_head} {} {sql_tail}", vec![group; rows].join(", "))
}

const MARK_HEAD: &str = "INSERT INTO consumer_runs (consumer, cluster, job_id_raw, submit, mark, done, hold) VALUES";
const MARK_TAIL: &str = "ON CONFLICT (consumer, cluster, job_id_raw, submit) DO UPDATE SET mark = excluded.mark, \
                         done = excluded.done, hold = excluded.hold";

fn exec_put_mark(stmt: &mut CachedStatement<'_>, consumer: i64, key: &JobKey, m: &RunMark) -> Result<(), LedgerError> {
    stmt.execute(params![
        consumer,
        key.cluster.as_str(),
        key.job_id_raw as i64,
        key.submit.0,
        m.mark,
        m.done as i64,
        m.hold
    ])?;
    Ok(())
}

/// The writes of a planning pass ([`Writer::put_mark`], [`Writer::insert_item`]) gathered into
/// multi-row statements, inside the writer's transaction; in order, so a run's later mark wins.
/// Dropped without [`PlanStatements::finish`], its writes are lost and the writer refuses to commit.
pub struct PlanStatements<'t> {
    /// The writer's count of unfinished plans: [`PlanStatements::finish`] takes this one off.
    open: &'t std::cell::Cell<u32>,
    tx: &'t rusqlite::Transaction<'t>,
    consumer: i64,
    add: CachedStatement<'t>,
    marks: Vec<(JobKey, RunMark)>,
    items: Vec<(JobKey, super::NewItem)>,
    /// Increments of accumulating items, summed per item id in the order first seen, written
    /// when there are [`MAX_TOTALS`] or at [`PlanStatements::finish`]: a busy month's few
    /// thousand totals take millions of increments, and one write per total per transaction
    /// is what SQLite is asked instead of one per increment.
    totals: Vec<(super::NewItem, i64)>,
    total_at: std::collections::HashMap<String, usize, std::hash::BuildHasherDefault<IdHasher>>,
    /// Items added (or totals changed) so far.
    changed: u64,
    now: i64,
}

impl PlanStatements<'_> {
    /// Stores a run's mark.
    pub fn put_mark(&mut self, key: &JobKey, m: &RunMark) -> Result<(), LedgerError> {
        self.marks.push((key.clone(), m.clone()));
        if self.marks.len() == ROWS_PER_STATEMENT {
            self.flush_marks()?;
        }
        Ok(())
    }

    /// Adds a planned item of run `key` (ignored if its id exists), or adds to a total.
    pub fn insert_item(&mut self, key: &JobKey, item: super::NewItem) -> Result<(), LedgerError> {
        if let Some(inc) = item.increment {
            match self.total_at.get(&item.id) {
                Some(&i) => {
                    let sum = &mut self.totals[i].1;
                    *sum = sum
                        .checked_add(inc)
                        .ok_or(LedgerError::ValueRange { field: "a total's increment", value: inc.unsigned_abs() })?;
                }
                None => {
                    self.total_at.insert(item.id.clone(), self.totals.len());
                    self.totals.push((item, inc));
                }
            }
            if self.totals.len() == MAX_TOTALS {
                self.flush_totals()?;
            }
            return Ok(());
        }
        self.items.push((key.clone(), item));
        if self.items.len() == ROWS_PER_STATEMENT {
            self.flush_items()?;
        }
        Ok(())
    }

    /// Writes what is gathered; returns how many items were added, and totals changed (each
    /// once per write of its sum), in all.
    /// Until this returns, the transaction cannot commit.
    pub fn finish(mut self) -> Result<u64, LedgerError> {
        self.flush_marks()?;
        self.flush_items()?;
        self.flush_totals()?;
        self.open.set(self.open.get() - 1);
        Ok(self.changed)
    }

    /// Adds each gathered sum to its stored total (a sum of 0 changes nothing).
    fn flush_totals(&mut self) -> Result<(), LedgerError> {
        self.total_at.clear();
        for (item, sum) in std::mem::take(&mut self.totals) {
            let n = super::outbox::exec_add_to_total(&mut self.add, self.consumer, self.now, &item, sum)?;
            self.changed += u64::from(n);
        }
        Ok(())
    }

    fn flush_marks(&mut self) -> Result<(), LedgerError> {
        let marks = std::mem::take(&mut self.marks);
        if marks.len() == ROWS_PER_STATEMENT {
            let mut stmt = self.tx.prepare_cached(&multi_row(MARK_HEAD, 7, ROWS_PER_STATEMENT, MARK_TAIL))?;
            let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(7 * marks.len());
            for (k, m) in &marks {
                args.extend(mark_values(self.consumer, k, m));
            }
            stmt.execute(rusqlite::params_from_iter(args))?;
        } else {
            let mut stmt = self.tx.prepare_cached(PUT_MARK)?;
            for (k, m) in &marks {
                exec_put_mark(&mut stmt, self.consumer, k, m)?;
            }
        }
        self.marks = marks;
        self.marks.clear();
        Ok(())
    }

    fn flush_items(&mut self) -> Result<(), LedgerError> {
        let items = std::mem::take(&mut self.items);
        if items.len() == ROWS_PER_STATEMENT {
            let sql = multi_row(super::outbox::INSERT_ITEMS_HEAD, super::outbox::ITEM_COLUMNS, ROWS_PER_STATEMENT, "");
            let mut stmt = self.tx.prepare_cached(&sql)?;
            let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(super::outbox::ITEM_COLUMNS * items.len());
            for (k, item) in &items {
                args.extend(super::outbox::item_values(self.consumer, self.now, Some(k), item));
            }
            self.changed += stmt.execute(rusqlite::params_from_iter(args))? as u64;
        } else {
            let mut stmt = self.tx.prepare_cached(super::outbox::INSERT_ITEM)?;
            for (k, item) in &items {
                self.changed +=
                    u64::from(super::outbox::exec_insert_item(&mut stmt, self.consumer, self.now, Some(k), item)?);
            }
        }
        self.items = items;
        self.items.clear();
        Ok(())
    }
}

/// A mark row's values, in [`MARK_HEAD`]'s order.
fn mark_values(consumer: i64, k: &JobKey, m: &RunMark) -> [rusqlite::types::Value; 7] {
    use rusqlite::types::Value;
    [
        Value::Integer(consumer),
        Value::Text(k.cluster.as_str().to_string()),
        Value::Integer(k.job_id_raw as i64),
        Value::Integer(k.submit.0),
        m.mark.map_or(Value::Null, Value::Integer),
        Value::Integer(m.done as i64),
        m.hold.clone().map_or(Value::Null, Value::Text),
    ]
}
