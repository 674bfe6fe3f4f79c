//! What `backfill` did, month by month (table `backfill`): each part of a month (the windows read
//! from a cluster, the items of a sink sent) is done once. An interrupted backfill resumes at the
//! first part not done; a part that failed keeps its reason and is tried again next time.

use rusqlite::params;

use crate::model::UnixTime;

use super::{Ledger, LedgerError, Writer};

/// One part of a backfill month as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPart {
    /// `YYYY-MM`.
    pub month: String,
    /// `collect:CLUSTER` or `report:SINK`.
    pub part: String,
    /// When it was done; `None`: not yet (see `error`).
    pub done_at: Option<UnixTime>,
    /// Why its last try failed.
    pub error: Option<String>,
}

/// The items of a consumer in a span of time (a month), by how far they got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemsIn {
    /// Pending, sent with the outcome unknown, or waiting for a retry.
    pub owed: u64,
    pub delivered: u64,
    pub rejected: u64,
    /// The last error of one item not delivered (rejected first), if any.
    pub example_error: Option<String>,
}

impl Ledger {
    /// Every recorded part of the backfill, by month and part.
    pub fn backfill_parts(&self) -> Result<Vec<BackfillPart>, LedgerError> {
        let mut stmt = self.conn().prepare("SELECT month, part, done_at, error FROM backfill ORDER BY month, part")?;
        let rows = stmt.query_map([], |r| {
            Ok(BackfillPart {
                month: r.get(0)?,
                part: r.get(1)?,
                done_at: r.get::<_, Option<i64>>(2)?.map(UnixTime),
                error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The items of consumer `sink` whose span starts in `[start, end)`, by state.
    pub fn items_in(&self, sink: &str, start: UnixTime, end: UnixTime) -> Result<ItemsIn, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(ItemsIn::default()) };
        let mut out = ItemsIn::default();
        let mut stmt = self.conn().prepare_cached(
            "SELECT state, count(*), max(last_error) FROM outbox
             WHERE consumer = ?1 AND span_start >= ?2 AND span_start < ?3 GROUP BY state",
        )?;
        let mut rows = stmt.query(params![id, start.0, end.0])?;
        let mut owed_error = None;
        while let Some(r) = rows.next()? {
            let (state, n, error): (i64, i64, Option<String>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            match super::DeliveryState::from_code(state) {
                Some(super::DeliveryState::Delivered) => out.delivered += n as u64,
                Some(super::DeliveryState::Rejected) => {
                    out.rejected += n as u64;
                    out.example_error = error;
                }
                _ => {
                    out.owed += n as u64;
                    owed_error = owed_error.or(error);
                }
            }
        }
        out.example_error = out.example_error.or(owed_error);
        Ok(out)
    }
}

impl Ledger {
    /// The ids of consumer `sink`'s rejected items whose span starts in `[start, end)`.
    pub fn rejected_in(&self, sink: &str, start: UnixTime, end: UnixTime) -> Result<Vec<String>, LedgerError> {
        let Some(id) = self.consumer_id(sink)? else { return Ok(Vec::new()) };
        let mut stmt = self.conn().prepare_cached(
            "SELECT key FROM outbox WHERE consumer = ?1 AND state = 4 AND span_start >= ?2 AND span_start < ?3 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![id, start.0, end.0], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Writer<'_> {
    /// Records how a part of a backfill month ended: done, or failed with its reason (a part done
    /// before stays done).
    pub fn record_backfill(&mut self, month: &str, part: &str, result: Result<(), &str>) -> Result<(), LedgerError> {
        let (done_at, error) = match result {
            Ok(()) => (Some(self.now), None),
            Err(e) => (None, Some(e)),
        };
        self.tx.execute(
            "INSERT INTO backfill (month, part, done_at, error, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (month, part) DO UPDATE SET
                 done_at = coalesce(backfill.done_at, excluded.done_at),
                 error = CASE WHEN backfill.done_at IS NULL THEN excluded.error ELSE backfill.error END,
                 updated_at = excluded.updated_at",
            params![month, part, done_at, error, self.now],
        )?;
        Ok(())
    }
}
