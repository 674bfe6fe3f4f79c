//! The delivery engine's durable state: per-sink cursors over `change_seq`, the per-run planning
//! frontier, and the outbox of deliveries with their state machine. Sink-agnostic: payloads are
//! opaque text.

use rusqlite::{params, CachedStatement, OptionalExtension, Row, Statement};

use crate::model::{ClusterName, JobKey, UnixTime};

use super::{Ledger, LedgerError, Writer};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Planned, never sent.
    Pending,
    /// Sent, no answer recorded: the platform may or may not have it. Looked up before a resend.
    Sent,
    /// The platform accepted it.
    Delivered,
    /// Failed in a way that is worth retrying at `next_attempt_at`.
    Retry,
    /// The platform refused it for good; kept with its error until retried by command.
    Rejected,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "retry" => Self::Retry,
            "rejected" => Self::Rejected,
            _ => return None,
        })
    }
}

/// One planned delivery of one slice of one run to one sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub sink: String,
    pub key: JobKey,
    pub slice_start: UnixTime,
    pub slice_end: UnixTime,
    /// The quantity as exact decimal text, in the sink's unit.
    pub quantity: String,
    /// The sink's request body, opaque to the ledger.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
}

/// The planning frontier of one run for one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkRun {
    /// Slices exist for the billable span up to here.
    pub planned_until: Option<UnixTime>,
    /// The run is final and its whole span is planned: nothing more will come.
    pub complete: bool,
    /// Why the run cannot be planned now (shown by `status`; planning resumes when fixed).
    pub hold_reason: Option<String>,
}

const COLS: &str =
    "id, sink, cluster, job_id_raw, submit, slice_start, slice_end, quantity, payload, state, attempts, \
                    next_attempt_at, last_error, remote_id";

fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<Result<Delivery, LedgerError>> {
    let id: String = r.get(0)?;
    let cluster: String = r.get(2)?;
    let state: String = r.get(9)?;
    let corrupt = |reason: String| LedgerError::Corrupt { key: id.clone(), reason };
    let Ok(cluster) = ClusterName::new(&cluster) else { return Ok(Err(corrupt(format!("cluster {cluster:?}")))) };
    let Some(state) = DeliveryState::parse(&state) else { return Ok(Err(corrupt(format!("state {state:?}")))) };
    Ok(Ok(Delivery {
        id: id.clone(),
        sink: r.get(1)?,
        key: JobKey { cluster, job_id_raw: r.get::<_, i64>(3)? as u64, submit: UnixTime(r.get(4)?) },
        slice_start: UnixTime(r.get(5)?),
        slice_end: UnixTime(r.get(6)?),
        quantity: r.get(7)?,
        payload: r.get(8)?,
        state,
        attempts: r.get::<_, i64>(10)? as u32,
        next_attempt_at: UnixTime(r.get(11)?),
        last_error: r.get(12)?,
        remote_id: r.get(13)?,
    }))
}

const READ_SINK_RUN: &str =
    "SELECT planned_until, complete, hold_reason FROM sink_runs WHERE sink = ?1 AND cluster = ?2 AND job_id_raw = ?3 AND submit = ?4";

const PUT_SINK_RUN: &str =
    "INSERT INTO sink_runs (sink, cluster, job_id_raw, submit, planned_until, complete, hold_reason, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (sink, cluster, job_id_raw, submit) DO UPDATE SET planned_until = excluded.planned_until,
         complete = excluded.complete, hold_reason = excluded.hold_reason, updated_at = excluded.updated_at";

const INSERT_DELIVERY: &str = "INSERT OR IGNORE INTO deliveries (id, sink, cluster, job_id_raw, submit, slice_start, slice_end, quantity, payload,
         state, attempts, next_attempt_at, last_error, remote_id, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)";

fn read_sink_run(conn: &rusqlite::Connection, sink: &str, key: &JobKey) -> Result<SinkRun, LedgerError> {
    query_sink_run(&mut *conn.prepare_cached(READ_SINK_RUN)?, sink, key)
}

fn query_sink_run(stmt: &mut Statement<'_>, sink: &str, key: &JobKey) -> Result<SinkRun, LedgerError> {
    Ok(stmt
        .query_row(params![sink, key.cluster.as_str(), key.job_id_raw as i64, key.submit.0], |r| {
            Ok(SinkRun {
                planned_until: r.get::<_, Option<i64>>(0)?.map(UnixTime),
                complete: r.get::<_, i64>(1)? != 0,
                hold_reason: r.get(2)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

fn exec_put_sink_run(
    stmt: &mut Statement<'_>,
    now: i64,
    sink: &str,
    key: &JobKey,
    s: &SinkRun,
) -> Result<(), LedgerError> {
    stmt.execute(params![
        sink,
        key.cluster.as_str(),
        key.job_id_raw as i64,
        key.submit.0,
        s.planned_until.map(|t| t.0),
        s.complete as i64,
        s.hold_reason,
        now
    ])?;
    Ok(())
}

fn exec_insert_delivery(stmt: &mut Statement<'_>, now: i64, d: &Delivery) -> Result<bool, LedgerError> {
    let n = stmt.execute(params![
        d.id,
        d.sink,
        d.key.cluster.as_str(),
        d.key.job_id_raw as i64,
        d.key.submit.0,
        d.slice_start.0,
        d.slice_end.0,
        d.quantity,
        d.payload,
        d.state.as_str(),
        d.attempts as i64,
        d.next_attempt_at.0,
        d.last_error,
        d.remote_id,
        now
    ])?;
    Ok(n == 1)
}

fn collect_deliveries(
    rows: impl Iterator<Item = rusqlite::Result<Result<Delivery, LedgerError>>>,
) -> Result<Vec<Delivery>, LedgerError> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

impl Ledger {
    /// The sink's position in the change sequence (0 before its first plan).
    pub fn sink_cursor(&self, sink: &str) -> Result<i64, LedgerError> {
        Ok(self
            .conn()
            .query_row("SELECT change_seq FROM sink_cursors WHERE sink = ?1", [sink], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// The planning frontier of a run for a sink.
    pub fn sink_run(&self, sink: &str, key: &JobKey) -> Result<SinkRun, LedgerError> {
        read_sink_run(self.conn(), sink, key)
    }

    /// Runs a sink holds back, with the reason.
    pub fn held_runs(&self, sink: &str) -> Result<Vec<(JobKey, String)>, LedgerError> {
        let mut stmt = self.conn().prepare(
            "SELECT cluster, job_id_raw, submit, hold_reason FROM sink_runs WHERE sink = ?1 AND hold_reason IS NOT NULL ORDER BY submit",
        )?;
        let rows = stmt.query_map([sink], |r| {
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

    /// Deliveries a sender should act on at `now`: due unknown outcomes first (to look up), then
    /// pending ones and due retries, oldest first.
    pub fn due_deliveries(&self, sink: &str, now: UnixTime, limit: u64) -> Result<Vec<Delivery>, LedgerError> {
        let sql = format!(
            "SELECT {COLS} FROM deliveries WHERE sink = ?1 AND (state = 'pending' OR (state IN ('sent', 'retry') AND next_attempt_at <= ?2)) \
             ORDER BY state = 'sent' DESC, created_at, id LIMIT ?3"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(params![sink, now.0, limit as i64], row_to_delivery)?;
        collect_deliveries(rows)
    }

    /// Every delivery of a sink in a state (or all states), oldest first.
    pub fn deliveries(&self, sink: &str, state: Option<DeliveryState>) -> Result<Vec<Delivery>, LedgerError> {
        let sql = format!(
            "SELECT {COLS} FROM deliveries WHERE sink = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY created_at, id"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params![sink, state.map(|s| s.as_str())], row_to_delivery)?;
        collect_deliveries(rows)
    }
}

impl Writer<'_> {
    /// The planning frontier, read inside this transaction (so two planners cannot overlap).
    pub fn sink_run(&self, sink: &str, key: &JobKey) -> Result<SinkRun, LedgerError> {
        read_sink_run(&self.tx, sink, key)
    }

    /// Moves the sink's change-sequence cursor.
    pub fn set_sink_cursor(&mut self, sink: &str, seq: i64) -> Result<(), LedgerError> {
        self.tx.execute(
            "INSERT INTO sink_cursors (sink, change_seq, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (sink) DO UPDATE SET change_seq = max(change_seq, excluded.change_seq), updated_at = excluded.updated_at",
            params![sink, seq, self.now],
        )?;
        Ok(())
    }

    /// Stores a run's planning frontier for a sink.
    pub fn put_sink_run(&mut self, sink: &str, key: &JobKey, s: &SinkRun) -> Result<(), LedgerError> {
        exec_put_sink_run(&mut *self.tx.prepare_cached(PUT_SINK_RUN)?, self.now, sink, key, s)
    }

    /// Adds a planned delivery. Returns false when a delivery with that id already exists (the
    /// slice was planned before): a slice is never planned twice.
    pub fn insert_delivery(&mut self, d: &Delivery) -> Result<bool, LedgerError> {
        exec_insert_delivery(&mut *self.tx.prepare_cached(INSERT_DELIVERY)?, self.now, d)
    }

    /// The statements a planning pass runs for every run, prepared once and held for a whole
    /// batch of runs (instead of a statement-cache look-up per row). Drop it before the next
    /// `&mut self` call on this writer.
    pub fn plan_statements(&self) -> Result<PlanStatements<'_>, LedgerError> {
        Ok(PlanStatements {
            read: self.tx.prepare_cached(READ_SINK_RUN)?,
            put: self.tx.prepare_cached(PUT_SINK_RUN)?,
            insert: self.tx.prepare_cached(INSERT_DELIVERY)?,
            now: self.now,
        })
    }

    /// Moves a delivery to a new state only if it is still in `from` (state, attempts): the
    /// compare-and-set that keeps two senders from both sending it. Returns whether it moved.
    #[allow(clippy::too_many_arguments)]
    pub fn mark_delivery_from(
        &mut self,
        id: &str,
        from: (DeliveryState, u32),
        state: DeliveryState,
        attempts: u32,
        next_attempt_at: UnixTime,
        last_error: Option<&str>,
        remote_id: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let mut stmt = self.tx.prepare_cached(
            "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5,
                 remote_id = coalesce(?6, remote_id), updated_at = ?7 WHERE id = ?1 AND state = ?8 AND attempts = ?9",
        )?;
        let n = stmt.execute(params![
            id,
            state.as_str(),
            attempts as i64,
            next_attempt_at.0,
            last_error,
            remote_id,
            self.now,
            from.0.as_str(),
            from.1 as i64
        ])?;
        Ok(n == 1)
    }

    /// Puts one rejected delivery back to pending with a re-rendered payload (the mapping or the
    /// sink's settings may have been fixed). The slice, its id and quantity stay as planned.
    pub fn requeue_rejected_with(&mut self, id: &str, payload: &str) -> Result<bool, LedgerError> {
        let n = self.tx.execute(
            "UPDATE deliveries SET state = 'pending', payload = ?2, next_attempt_at = ?3, updated_at = ?3
             WHERE id = ?1 AND state = 'rejected'",
            params![id, payload, self.now],
        )?;
        Ok(n == 1)
    }
}

/// A run a sink holds back, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldRun {
    pub key: String,
    pub reason: String,
}

/// A delivery that failed (refused, or waiting after an error), with the last answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryProblem {
    pub id: String,
    pub key: String,
    pub attempts: u32,
    pub error: String,
}

/// What `status` shows of one sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub sink: String,
    /// Position in the change sequence the sink has planned up to.
    pub change_seq: i64,
    /// Deliveries by state (pending, sent = outcome unknown, retry, delivered, rejected).
    pub deliveries: Vec<(String, u64)>,
    pub held_total: u64,
    pub held: Vec<HeldRun>,
    pub rejected_total: u64,
    pub rejected: Vec<DeliveryProblem>,
    /// Deliveries waiting after a failure (state `sent` = outcome unknown, or `retry`), with the
    /// last error: what an admin reads when nothing gets through.
    pub waiting: Vec<DeliveryProblem>,
}

impl Ledger {
    /// Per sink: cursor, deliveries by state, held runs and rejected deliveries (up to `recent`
    /// of each, oldest first).
    pub fn sink_status(&self, recent: u64) -> Result<Vec<SinkStatus>, LedgerError> {
        let c = self.conn();
        let mut names: Vec<String> = c
            .prepare("SELECT sink FROM sink_cursors UNION SELECT DISTINCT sink FROM sink_runs ORDER BY 1")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        names.dedup();
        let mut out = Vec::new();
        for sink in names {
            let deliveries = c
                .prepare_cached("SELECT state, count(*) FROM deliveries WHERE sink = ?1 GROUP BY state ORDER BY state")?
                .query_map([&sink], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<Result<_, _>>()?;
            let held_total: i64 = c.query_row(
                "SELECT count(*) FROM sink_runs WHERE sink = ?1 AND hold_reason IS NOT NULL",
                [&sink],
                |r| r.get(0),
            )?;
            let held = c
                .prepare_cached(
                    "SELECT cluster || '/' || job_id_raw || '@' || submit, hold_reason FROM sink_runs
                     WHERE sink = ?1 AND hold_reason IS NOT NULL ORDER BY submit LIMIT ?2",
                )?
                .query_map(params![sink, recent as i64], |r| Ok(HeldRun { key: r.get(0)?, reason: r.get(1)? }))?
                .collect::<Result<_, _>>()?;
            let rejected_total: i64 =
                c.query_row("SELECT count(*) FROM deliveries WHERE sink = ?1 AND state = 'rejected'", [&sink], |r| {
                    r.get(0)
                })?;
            let rejected = c
                .prepare_cached(
                    "SELECT id, cluster || '/' || job_id_raw || '@' || submit, attempts, coalesce(last_error, '') FROM deliveries
                     WHERE sink = ?1 AND state = 'rejected' ORDER BY created_at, id LIMIT ?2",
                )?
                .query_map(params![sink, recent as i64], |r| {
                    Ok(DeliveryProblem { id: r.get(0)?, key: r.get(1)?, attempts: r.get::<_, i64>(2)? as u32, error: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?;
            let waiting = c
                .prepare_cached(
                    "SELECT id, cluster || '/' || job_id_raw || '@' || submit, attempts, state || ': ' || last_error FROM deliveries
                     WHERE sink = ?1 AND state IN ('sent', 'retry') AND last_error IS NOT NULL ORDER BY created_at, id LIMIT ?2",
                )?
                .query_map(params![sink, recent as i64], |r| {
                    Ok(DeliveryProblem { id: r.get(0)?, key: r.get(1)?, attempts: r.get::<_, i64>(2)? as u32, error: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?;
            out.push(SinkStatus {
                waiting,
                change_seq: self.sink_cursor(&sink)?,
                sink,
                deliveries,
                held_total: held_total as u64,
                held,
                rejected_total: rejected_total as u64,
                rejected,
            });
        }
        Ok(out)
    }
}

/// [`Writer::sink_run`], [`Writer::put_sink_run`] and [`Writer::insert_delivery`] on statements
/// held for a batch of runs, inside the writer's transaction. Same SQL, same effects.
pub struct PlanStatements<'t> {
    read: CachedStatement<'t>,
    put: CachedStatement<'t>,
    insert: CachedStatement<'t>,
    now: i64,
}

impl PlanStatements<'_> {
    /// The planning frontier of a run, read inside the transaction.
    pub fn sink_run(&mut self, sink: &str, key: &JobKey) -> Result<SinkRun, LedgerError> {
        query_sink_run(&mut self.read, sink, key)
    }

    /// Stores a run's planning frontier for a sink.
    pub fn put_sink_run(&mut self, sink: &str, key: &JobKey, s: &SinkRun) -> Result<(), LedgerError> {
        exec_put_sink_run(&mut self.put, self.now, sink, key, s)
    }

    /// Adds a planned delivery; false when its id exists already.
    pub fn insert_delivery(&mut self, d: &Delivery) -> Result<bool, LedgerError> {
        exec_insert_delivery(&mut self.insert, self.now, d)
    }
}
