//! Embedded, append-only schema migrations, tracked in `PRAGMA user_version`.
//!
//! Invariant: a released migration is never edited; a change is a new file at the end of
//! [`MIGRATIONS`]. A ledger newer than this binary is refused, not downgraded.

use rusqlite::Connection;

use super::LedgerError;

/// (name, SQL) in order; the index + 1 is the schema version.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    ("0002_deliveries", include_str!("../../migrations/0002_deliveries.sql")),
    ("0003_imported_frontiers", include_str!("../../migrations/0003_imported_frontiers.sql")),
    ("0004_settle_asks", include_str!("../../migrations/0004_settle_asks.sql")),
    ("0005_outbox", include_str!("../../migrations/0005_outbox.sql")),
    ("0006_consumer_terms", include_str!("../../migrations/0006_consumer_terms.sql")),
    ("0007_outbox_queue", include_str!("../../migrations/0007_outbox_queue.sql")),
    ("0008_backfill", include_str!("../../migrations/0008_backfill.sql")),
    ("0009_run_allocations", include_str!("../../migrations/0009_run_allocations.sql")),
];

/// Brings the schema up to date inside one transaction per migration.
pub fn migrate(conn: &mut Connection) -> Result<u32, LedgerError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as u32;
    if current > latest {
        return Err(LedgerError::TooNew { found: current, supported: latest });
    }
    for (i, (_name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as u32)?;
        tx.commit()?;
    }
    Ok(latest)
}
