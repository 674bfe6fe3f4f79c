//! The outbox shared by every consumer: items with deterministic ids and their state machine.
//! Consumer-agnostic: an item is an opaque id, the run it belongs to (if any), a span, an amount
//! and a route, all written by the consumer's planner and read back by its sender.
//!
//! Invariants: an id is unique per consumer (an item is never planned twice); every state change
//! is a compare-and-set on (state, attempts), so two senders never both send an item.

use rusqlite::{params, CachedStatement, Row};

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
    /// Failed in a way that is worth retrying at `next_attempt_at`.
    Retry,
    /// The platform accepted it.
    Delivered,
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

    /// The stored code (`outbox.state`); below [`DeliveryState::Delivered`] is still to do.
    fn code(self) -> i64 {
        match self {
            Self::Pending => 0,
            Self::Sent => 1,
            Self::Retry => 2,
            Self::Delivered => 3,
            Self::Rejected => 4,
        }
    }

    pub(super) fn from_code(c: i64) -> Option<Self> {
        Some(match c {
            0 => Self::Pending,
            1 => Self::Sent,
            2 => Self::Retry,
            3 => Self::Delivered,
            4 => Self::Rejected,
            _ => return None,
        })
    }
}

/// An item as a planner hands it to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// Deterministic: the same item planned again gets the same id (and is then ignored).
    pub id: String,
    /// The interval (or instant, `start == end`) the item covers.
    pub span: Option<(UnixTime, UnixTime)>,
    /// The exact amount in the consumer's unit, as decimal text.
    pub amount: Option<String>,
    /// What the planner pinned for the sender (where the item goes); opaque to the ledger.
    pub route: Option<String>,
    /// `Some`: an accumulating item (a total). Planned again with the same id, the increment is
    /// added to its stored total, and an item whose total changed is due again (whatever state
    /// it was in: the sender sends the total as it is then, e.g. Waldur's `set_usage`). An
    /// increment of 0 changes nothing. Such an item belongs to no one run. `None`: the item is
    /// the planned run's, sent once; planned again with the same id it is ignored.
    pub increment: Option<i64>,
}

impl NewItem {
    /// An item of the planned run, sent once.
    pub fn once(id: String, span: Option<(UnixTime, UnixTime)>, amount: Option<String>, route: Option<String>) -> Self {
        Self { id, span, amount, route, increment: None }
    }
}

/// One item of the outbox, with its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// The item's id, unique per consumer (what a platform's metadata carries for look-ups).
    pub id: String,
    /// Its place in the outbox (the order items were planned in); 0 for an item not stored.
    #[serde(skip)]
    pub seq: i64,
    pub sink: String,
    /// The run the item belongs to.
    pub key: Option<JobKey>,
    pub span: Option<(UnixTime, UnixTime)>,
    pub amount: Option<String>,
    pub route: Option<String>,
    /// An accumulating item's total (see [`NewItem::increment`]).
    pub total: Option<i64>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
}

impl Delivery {
    /// The run key as `status` prints it, or `-` for an item of no run.
    pub fn run_text(&self) -> String {
        self.key.as_ref().map_or_else(|| "-".to_string(), |k| k.to_string())
    }
}

const COLS: &str =
    "o.key, c.name, o.cluster, o.job_id_raw, o.submit, o.span_start, o.span_end, o.amount, o.route, o.state, \
                    o.attempts, o.next_attempt_at, o.last_error, o.remote_id, o.total, o.id";
const FROM: &str = "FROM outbox o JOIN consumers c ON c.id = o.consumer";

fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<Result<Delivery, LedgerError>> {
    let id: String = r.get(0)?;
    let corrupt = |reason: String| LedgerError::Corrupt { key: id.clone(), reason };
    let key = match (r.get::<_, Option<String>>(2)?, r.get::<_, Option<i64>>(3)?, r.get::<_, Option<i64>>(4)?) {
        (Some(c), Some(job), Some(submit)) => match ClusterName::new(&c) {
            Ok(cluster) => Some(JobKey { cluster, job_id_raw: job as u64, submit: UnixTime(submit) }),
            Err(_) => return Ok(Err(corrupt(format!("cluster {c:?}")))),
        },
        _ => None,
    };
    let span = match (r.get::<_, Option<i64>>(5)?, r.get::<_, Option<i64>>(6)?) {
        (Some(a), Some(b)) => Some((UnixTime(a), UnixTime(b))),
        _ => None,
    };
    let code: i64 = r.get(9)?;
    let Some(state) = DeliveryState::from_code(code) else { return Ok(Err(corrupt(format!("state {code}")))) };
    Ok(Ok(Delivery {
        id: id.clone(),
        seq: r.get(15)?,
        sink: r.get(1)?,
        key,
        span,
        amount: r.get(7)?,
        route: r.get(8)?,
        state,
        attempts: r.get::<_, i64>(10)? as u32,
        next_attempt_at: UnixTime(r.get(11)?),
        last_error: r.get(12)?,
        remote_id: r.get(13)?,
        total: r.get(14)?,
    }))
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<Result<Delivery, LedgerError>>>,
) -> Result<Vec<Delivery>, LedgerError> {
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Values per row of [`INSERT_ITEMS_HEAD`].
pub(super) const ITEM_COLUMNS: usize = 14;

/// [`INSERT_ITEM`] for many rows: this head, then groups of [`ITEM_COLUMNS`] values as
/// [`item_values`] gives them.
pub(super) const INSERT_ITEMS_HEAD: &str = "INSERT OR IGNORE INTO outbox (consumer, key, cluster, job_id_raw, submit, \
     span_start, span_end, amount, route, state, attempts, next_attempt_at, updated_at, queued_at) VALUES";

/// An item row's values, in [`INSERT_ITEMS_HEAD`]'s order (pending, never tried, due now).
pub(super) fn item_values(
    consumer: i64,
    now: i64,
    run: Option<&JobKey>,
    item: &NewItem,
) -> [rusqlite::types::Value; ITEM_COLUMNS] {
    use rusqlite::types::Value;
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    let text = |v: Option<&str>| v.map_or(Value::Null, |t| Value::Text(t.to_string()));
    [
        Value::Integer(consumer),
        Value::Text(item.id.clone()),
        text(run.map(|k| k.cluster.as_str())),
        int(run.map(|k| k.job_id_raw as i64)),
        int(run.map(|k| k.submit.0)),
        int(item.span.map(|s| s.0 .0)),
        int(item.span.map(|s| s.1 .0)),
        text(item.amount.as_deref()),
        text(item.route.as_deref()),
        Value::Integer(DeliveryState::Pending.code()),
        Value::Integer(0),
        Value::Integer(now),
        Value::Integer(now),
        Value::Integer(now),
    ]
}

pub(super) const INSERT_ITEM: &str =
    "INSERT OR IGNORE INTO outbox (consumer, key, cluster, job_id_raw, submit, span_start, span_end,
         amount, route, state, attempts, next_attempt_at, updated_at, queued_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, ?10, ?10)";

/// An accumulating item: created with its first increment, or its total raised (a 0 increment
/// changes nothing). A raised item that was delivered is due again at once; one waiting to be
/// retried, sent with its outcome unknown, or rejected stays so (its backoff, its look-up, the
/// `retry` command), and sends the new total when it goes: a look-up compares the total.
pub(super) const ADD_TO_TOTAL: &str =
    "INSERT INTO outbox (consumer, key, span_start, span_end, amount, route, total, state,
         attempts, next_attempt_at, updated_at, queued_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?8, ?8)
     ON CONFLICT (consumer, key) DO UPDATE SET total = total + excluded.total,
         state = CASE WHEN state = 3 THEN 0 ELSE state END,
         next_attempt_at = CASE WHEN state = 3 THEN excluded.next_attempt_at ELSE next_attempt_at END,
         queued_at = CASE WHEN state = 3 THEN excluded.queued_at ELSE queued_at END,
         updated_at = excluded.updated_at
     WHERE excluded.total <> 0";

pub(super) fn exec_add_to_total(
    stmt: &mut CachedStatement<'_>,
    consumer: i64,
    now: i64,
    item: &NewItem,
    increment: i64,
) -> Result<bool, LedgerError> {
    if increment == 0 {
        return Ok(false);
    }
    let n = stmt.execute(params![
        consumer,
        item.id,
        item.span.map(|s| s.0 .0),
        item.span.map(|s| s.1 .0),
        item.amount,
        item.route,
        increment,
        now
    ])?;
    Ok(n == 1)
}

pub(super) fn exec_insert_item(
    stmt: &mut CachedStatement<'_>,
    consumer: i64,
    now: i64,
    run: Option<&JobKey>,
    item: &NewItem,
) -> Result<bool, LedgerError> {
    let n = stmt.execute(params![
        consumer,
        item.id,
        run.map(|k| k.cluster.as_str()),
        run.map(|k| k.job_id_raw as i64),
        run.map(|k| k.submit.0),
        item.span.map(|s| s.0 .0),
        item.span.map(|s| s.1 .0),
        item.amount,
        item.route,
        now
    ])?;
    Ok(n == 1)
}

impl Ledger {
    /// Up to `limit` items of a consumer due at `now` whose outbox id is above `after`, in id
    /// order: pending ones, and sent/retry ones whose time came. A pass walks its backlog once by
    /// passing the last id it got ([`Delivery::seq`]); `after` 0 starts at the oldest.
    pub fn due_deliveries(
        &self,
        sink: &str,
        now: UnixTime,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Delivery>, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(Vec::new()) };
        let sql = format!(
            "SELECT {COLS} FROM outbox o INDEXED BY outbox_open JOIN consumers c ON c.id = o.consumer WHERE o.consumer = ?1 AND o.state < 3 \
             AND (o.state = 0 OR o.next_attempt_at <= ?2) AND o.id > ?3 ORDER BY o.id LIMIT ?4"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(params![id, now.0, after, limit as i64], row_to_delivery)?;
        collect(rows)
    }

    /// How many items of a consumer are due at `now` with an outbox id above `after` (0: all;
    /// what a pass has to send, or has left).
    pub fn due_count(&self, sink: &str, now: UnixTime, after: i64) -> Result<u64, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(0) };
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM outbox INDEXED BY outbox_open WHERE consumer = ?1 AND state < 3 \
             AND (state = 0 OR next_attempt_at <= ?2) AND id > ?3",
            params![id, now.0, after],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The stored total of a consumer's accumulating item, if it exists.
    pub fn item_total(&self, sink: &str, key: &str) -> Result<Option<i64>, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(None) };
        let mut stmt = self.conn().prepare_cached("SELECT total FROM outbox WHERE consumer = ?1 AND key = ?2")?;
        let mut rows = stmt.query(params![id, key])?;
        Ok(match rows.next()? {
            Some(r) => r.get(0)?,
            None => None,
        })
    }

    /// Every item of a consumer in a state (or all states), oldest first.
    pub fn deliveries(&self, sink: &str, state: Option<DeliveryState>) -> Result<Vec<Delivery>, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(Vec::new()) };
        let sql = format!("SELECT {COLS} {FROM} WHERE o.consumer = ?1 AND (?2 IS NULL OR o.state = ?2) ORDER BY o.id");
        let mut stmt = self.conn().prepare(&sql)?;
        let rows = stmt.query_map(params![id, state.map(|s| s.code())], row_to_delivery)?;
        collect(rows)
    }
}

impl Writer<'_> {
    /// Adds a planned item (of run `run`, if any), or adds to a total (see
    /// [`NewItem::increment`]). Returns whether the outbox changed: false when a once-only item
    /// with that id already exists (an item is never planned twice) or an increment was 0.
    pub fn insert_item(&mut self, consumer: i64, run: Option<&JobKey>, item: &NewItem) -> Result<bool, LedgerError> {
        match item.increment {
            Some(inc) => exec_add_to_total(&mut self.tx.prepare_cached(ADD_TO_TOTAL)?, consumer, self.now, item, inc),
            None => exec_insert_item(&mut self.tx.prepare_cached(INSERT_ITEM)?, consumer, self.now, run, item),
        }
    }

    /// Moves an item to a new state only if it is still in `from` (state, attempts): the
    /// compare-and-set that keeps two senders from both sending it. Returns whether it moved.
    #[allow(clippy::too_many_arguments)]
    pub fn mark_delivery_from(
        &mut self,
        sink: &str,
        id: &str,
        from: (DeliveryState, u32),
        state: DeliveryState,
        attempts: u32,
        next_attempt_at: UnixTime,
        last_error: Option<&str>,
        remote_id: Option<&str>,
    ) -> Result<bool, LedgerError> {
        let mut stmt = self.tx.prepare_cached(
            "UPDATE outbox SET state = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6,
                 remote_id = coalesce(?7, remote_id), updated_at = ?8,
                 delivered_total = CASE WHEN ?3 = 3 THEN total ELSE delivered_total END
             WHERE consumer = (SELECT id FROM consumers WHERE name = ?1) AND key = ?2 AND state = ?9 AND attempts = ?10",
        )?;
        let n = stmt.execute(params![
            sink,
            id,
            state.code(),
            attempts as i64,
            next_attempt_at.0,
            last_error,
            remote_id,
            self.now,
            from.0.code(),
            from.1 as i64
        ])?;
        Ok(n == 1)
    }

    /// Puts one rejected item back to pending with a new route (the mapping may have been
    /// fixed). The item's id, run, span and amount stay as planned.
    pub fn requeue_rejected(&mut self, sink: &str, id: &str, route: Option<&str>) -> Result<bool, LedgerError> {
        let n = self.tx.execute(
            "UPDATE outbox SET state = 0, route = ?3, next_attempt_at = ?4, updated_at = ?4, queued_at = ?4
             WHERE consumer = (SELECT id FROM consumers WHERE name = ?1) AND key = ?2 AND state = 4",
            params![sink, id, route, self.now],
        )?;
        Ok(n == 1)
    }
}

/// A run a consumer holds back, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldRun {
    pub key: String,
    pub reason: String,
}

/// An item that failed (refused, or waiting after an error), with the last answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryProblem {
    pub id: String,
    pub key: String,
    pub attempts: u32,
    pub error: String,
}

/// A total still to be set on the platform (or refused), as `status` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwedTotal {
    pub id: String,
    pub total: i64,
    /// The total when it was last delivered: what the platform holds as far as the ledger knows
    /// (`None`: never delivered).
    pub delivered_total: Option<i64>,
    pub state: String,
    pub error: Option<String>,
    /// The item's route as planned (what it totals), for the sink to show the figure.
    #[serde(skip)]
    pub route: Option<String>,
    #[serde(skip)]
    pub span: Option<(UnixTime, UnixTime)>,
}

/// What `status` shows of one consumer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkStatus {
    pub sink: String,
    /// Position in the change sequence the consumer has planned up to.
    pub change_seq: i64,
    /// Items by state (pending, sent = outcome unknown, retry, delivered, rejected).
    pub deliveries: Vec<(String, u64)>,
    pub held_total: u64,
    pub held: Vec<HeldRun>,
    pub rejected_total: u64,
    pub rejected: Vec<DeliveryProblem>,
    /// Items waiting after a failure (state `sent` = outcome unknown, or `retry`), with the last
    /// error: what an admin reads when nothing gets through.
    pub waiting: Vec<DeliveryProblem>,
    /// Accumulating items (totals) owed or refused, with their exact totals: for a consumer of
    /// totals, what is still to be set on the platform, per total (up to `recent`).
    pub totals_owed: Vec<OwedTotal>,
    /// Items owed and not yet delivered (pending, sent, retry).
    pub backlog: u64,
    /// When the oldest of them became owed (planned, or put back); `None` without a backlog.
    pub backlog_since: Option<UnixTime>,
}

const RUN_TEXT: &str = "coalesce(o.cluster || '/' || o.job_id_raw || '@' || o.submit, '-')";

impl Ledger {
    /// Per consumer: cursor, items by state, held runs and rejected items (up to `recent` of
    /// each, oldest first).
    pub fn sink_status(&self, recent: u64) -> Result<Vec<SinkStatus>, LedgerError> {
        let c = self.conn();
        let consumers: Vec<(i64, String, i64)> = c
            .prepare("SELECT id, name, change_seq FROM consumers ORDER BY name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (id, sink, change_seq) in consumers {
            let mut deliveries: Vec<(String, u64)> = Vec::new();
            let mut stmt = c.prepare_cached("SELECT state, count(*) FROM outbox WHERE consumer = ?1 GROUP BY state")?;
            for row in stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (code, n) = row?;
                let name = DeliveryState::from_code(code).map_or("unknown", DeliveryState::as_str);
                deliveries.push((name.to_string(), n as u64));
            }
            deliveries.sort();
            let held_total: i64 = c.query_row(
                "SELECT count(*) FROM consumer_runs WHERE consumer = ?1 AND hold IS NOT NULL",
                [id],
                |r| r.get(0),
            )?;
            let held = c
                .prepare_cached(
                    "SELECT cluster || '/' || job_id_raw || '@' || submit, hold FROM consumer_runs
                     WHERE consumer = ?1 AND hold IS NOT NULL ORDER BY submit, cluster, job_id_raw LIMIT ?2",
                )?
                .query_map(params![id, recent as i64], |r| Ok(HeldRun { key: r.get(0)?, reason: r.get(1)? }))?
                .collect::<Result<_, _>>()?;
            let rejected_total: i64 =
                c.query_row("SELECT count(*) FROM outbox WHERE consumer = ?1 AND state = 4", [id], |r| r.get(0))?;
            let problem = |r: &Row<'_>| {
                Ok(DeliveryProblem {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    attempts: r.get::<_, i64>(2)? as u32,
                    error: r.get(3)?,
                })
            };
            let rejected = c
                .prepare_cached(&format!(
                    "SELECT o.key, {RUN_TEXT}, o.attempts, coalesce(o.last_error, '') FROM outbox o
                     WHERE o.consumer = ?1 AND o.state = 4 ORDER BY o.id LIMIT ?2"
                ))?
                .query_map(params![id, recent as i64], problem)?
                .collect::<Result<_, _>>()?;
            let waiting = c
                .prepare_cached(&format!(
                    "SELECT o.key, {RUN_TEXT}, o.attempts,
                         CASE o.state WHEN 1 THEN 'sent' ELSE 'retry' END || ': ' || o.last_error FROM outbox o
                     WHERE o.consumer = ?1 AND o.state IN (1, 2) AND o.last_error IS NOT NULL ORDER BY o.id LIMIT ?2"
                ))?
                .query_map(params![id, recent as i64], problem)?
                .collect::<Result<_, _>>()?;
            let (backlog, backlog_since): (i64, Option<i64>) = c.query_row(
                "SELECT count(*), min(coalesce(queued_at, updated_at)) FROM outbox INDEXED BY outbox_open
                 WHERE consumer = ?1 AND state < 3",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let totals_owed = c
                .prepare_cached(
                    "SELECT key, total, state, last_error, delivered_total, route, span_start, span_end FROM outbox
                     WHERE consumer = ?1 AND total IS NOT NULL AND state <> 3 ORDER BY key LIMIT ?2",
                )?
                .query_map(params![id, recent as i64], |r| {
                    let code: i64 = r.get(2)?;
                    let span: (Option<i64>, Option<i64>) = (r.get(6)?, r.get(7)?);
                    Ok(OwedTotal {
                        id: r.get(0)?,
                        total: r.get(1)?,
                        state: DeliveryState::from_code(code).map_or("unknown", DeliveryState::as_str).to_string(),
                        error: r.get(3)?,
                        delivered_total: r.get(4)?,
                        route: r.get(5)?,
                        span: match span {
                            (Some(a), Some(b)) => Some((UnixTime(a), UnixTime(b))),
                            _ => None,
                        },
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push(SinkStatus {
                totals_owed,
                backlog: backlog as u64,
                backlog_since: backlog_since.map(UnixTime),
                sink,
                change_seq,
                deliveries,
                held_total: held_total as u64,
                held,
                rejected_total: rejected_total as u64,
                rejected,
                waiting,
            });
        }
        Ok(out)
    }
}
