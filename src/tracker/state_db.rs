//! slurm-tracker's state DB (`slurm_job_states.db`, SQLite) → [`TrackerJobState`] rows.
//!
//! The file is opened **read-only** (`SQLITE_OPEN_READ_ONLY`): the import never changes what the
//! tracker left. Its one table, as the tracker creates it:
//!
//! ```sql
//! CREATE TABLE job_states (job_id INTEGER PRIMARY KEY, last_reported_elapsed INTEGER NOT NULL,
//!   last_reported_at INTEGER NOT NULL, total_core_hours REAL NOT NULL,
//!   completed_at INTEGER NOT NULL DEFAULT 0);
//! ```
//!
//! (older descriptions omit the `NOT NULL`s, so NULLs are handled). Opening checks that the file
//! is this: a missing file, a file that is not SQLite, or a database without exactly these
//! columns is an error naming the file and the fix. Rows stream through a callback in job-id
//! order, so a large file is never held in memory. **Nothing is dropped:** a row with a NULL, a
//! value of the wrong type, a negative or an absurd number comes out as [`Rejected`] with every
//! reason, for the caller to show.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

/// One valid row: what the tracker had reported for a JobIDRaw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerJobState {
    /// JobIDRaw (no cluster: contracts §1.3 #5).
    pub job_id: u64,
    /// ElapsedRaw seconds already reported.
    pub last_reported_elapsed: i64,
    /// Unix seconds: `Start + ElapsedRaw` of the last report, or `End` once completed.
    pub last_reported_at: i64,
    /// Core-hours reported so far (kept for reconciliation; floating point, the tracker's sum).
    pub total_core_hours: f64,
    /// Unix seconds (wall clock) when the tracker reported the end; `0` while running.
    pub completed_at: i64,
}

/// A row that cannot be used, with why. `job_id` is the raw value (it may be the problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub job_id: i64,
    pub reason: String,
}

/// One row of the state DB.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRow {
    Job(TrackerJobState),
    Rejected(Rejected),
}

/// How many rows a pass read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub jobs: u64,
    pub rejected: u64,
}

/// Why the state DB cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("slurm-tracker state file {path} does not exist; pass the file the crontab's --state-file names (default: slurm_job_states.db in the cron job's working directory)")]
    NotFound { path: PathBuf },
    #[error("cannot open slurm-tracker state file {path} read-only: {source}; check the path and that this user may read it")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{path} is not a slurm-tracker state DB: {detail}; pass the file the crontab's --state-file names")]
    NotTrackerDb { path: PathBuf, detail: String },
    #[error("cannot read slurm-tracker state file {path}: {source}; if the tracker is still running, stop its cron entry and retry")]
    Read { path: PathBuf, source: rusqlite::Error },
}

/// The tracker's columns, in the order it created them.
const COLUMNS: [&str; 5] = ["job_id", "last_reported_elapsed", "last_reported_at", "total_core_hours", "completed_at"];

/// Largest JobIDRaw Slurm can hand out (a 32-bit id).
const MAX_JOB_ID: i64 = u32::MAX as i64;
/// More reported ElapsedRaw than ten years is not a real job.
const MAX_ELAPSED_SECS: i64 = 10 * 366 * 86_400;
/// Instants outside 2000-01-01 .. 2100-01-01 are not from a tracker run.
const MIN_INSTANT: i64 = 946_684_800;
const MAX_INSTANT: i64 = 4_102_444_800;
/// More than 10^12 core-hours (a million cores for a century) is corrupt.
const MAX_CORE_HOURS: f64 = 1e12;

/// An open, read-only slurm-tracker state DB.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").field("path", &self.path).finish_non_exhaustive()
    }
}

impl StateDb {
    /// Opens `path` read-only and checks that it is a slurm-tracker state DB.
    pub fn open(path: &Path) -> Result<Self, StateDbError> {
        let path_buf = path.to_path_buf();
        if !path.is_file() {
            return Err(StateDbError::NotFound { path: path_buf });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|source| StateDbError::Open { path: path_buf.clone(), source })?;
        // A tracker finishing its cron run holds the write lock briefly.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|source| StateDbError::Open { path: path_buf.clone(), source })?;
        let db = Self { conn, path: path_buf };
        db.check_schema()?;
        Ok(db)
    }

    /// The file this reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StateDbError> {
        let not_db = |e: rusqlite::Error| StateDbError::NotTrackerDb {
            path: self.path.clone(),
            detail: format!("SQLite cannot read it ({e})"),
        };
        let mut stmt =
            self.conn.prepare("SELECT name FROM pragma_table_info('job_states') ORDER BY cid").map_err(not_db)?;
        let cols: Vec<String> =
            stmt.query_map([], |r| r.get(0)).map_err(not_db)?.collect::<Result<_, _>>().map_err(not_db)?;
        if cols.is_empty() {
            return Err(StateDbError::NotTrackerDb {
                path: self.path.clone(),
                detail: "it has no job_states table".into(),
            });
        }
        let missing: Vec<&str> = COLUMNS.iter().copied().filter(|c| !cols.iter().any(|x| x == c)).collect();
        let extra: Vec<&str> = cols.iter().map(String::as_str).filter(|c| !COLUMNS.contains(c)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let mut detail = String::from("its job_states table");
            if !missing.is_empty() {
                detail.push_str(&format!(" lacks column(s) {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                detail.push_str(&format!(
                    "{} has unknown column(s) {}",
                    if missing.is_empty() { "" } else { " and" },
                    extra.join(", ")
                ));
            }
            detail.push_str(&format!(" (expected exactly {})", COLUMNS.join(", ")));
            return Err(StateDbError::NotTrackerDb { path: self.path.clone(), detail });
        }
        Ok(())
    }

    fn read_err(&self) -> impl Fn(rusqlite::Error) -> StateDbError + '_ {
        |source| StateDbError::Read { path: self.path.clone(), source }
    }

    /// Number of rows in `job_states`.
    pub fn row_count(&self) -> Result<u64, StateDbError> {
        let n: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM job_states", [], |r| r.get(0)).map_err(self.read_err())?;
        Ok(n as u64)
    }

    /// Calls `f` for every row, in job-id order; returns the counts.
    pub fn for_each_row<F: FnMut(StateRow)>(&self, mut f: F) -> Result<RowCounts, StateDbError> {
        let sql = format!("SELECT {} FROM job_states ORDER BY job_id", COLUMNS.join(", "));
        let mut stmt = self.conn.prepare(&sql).map_err(self.read_err())?;
        let mut rows = stmt.query([]).map_err(self.read_err())?;
        let mut counts = RowCounts::default();
        while let Some(r) = rows.next().map_err(self.read_err())? {
            let values = read_values(r).map_err(self.read_err())?;
            let row = check_row(values);
            match row {
                StateRow::Job(_) => counts.jobs += 1,
                StateRow::Rejected(_) => counts.rejected += 1,
            }
            f(row);
        }
        Ok(counts)
    }

    /// All rows, in job-id order (for small files; prefer [`StateDb::for_each_row`]).
    pub fn read_all(&self) -> Result<Vec<StateRow>, StateDbError> {
        let mut out = Vec::new();
        self.for_each_row(|r| out.push(r))?;
        Ok(out)
    }

    /// The row of one JobIDRaw, if there is one.
    pub fn get(&self, job_id: u64) -> Result<Option<StateRow>, StateDbError> {
        let Ok(id) = i64::try_from(job_id) else { return Ok(None) };
        let sql = format!("SELECT {} FROM job_states WHERE job_id = ?1", COLUMNS.join(", "));
        let mut stmt = self.conn.prepare(&sql).map_err(self.read_err())?;
        let mut rows = stmt.query([id]).map_err(self.read_err())?;
        match rows.next().map_err(self.read_err())? {
            Some(r) => Ok(Some(check_row(read_values(r).map_err(self.read_err())?))),
            None => Ok(None),
        }
    }
}

fn read_values(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Value; 5]> {
    Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])
}

/// Validates one row's raw values: every problem is named, none is silently fixed.
fn check_row(values: [Value; 5]) -> StateRow {
    let [id, elapsed, at, hours, completed] = values;
    let mut reasons = Vec::new();
    // job_id is the rowid alias, so always an integer; it may still be out of Slurm's range.
    let job_id = match id {
        Value::Integer(n) => n,
        _ => 0,
    };
    if !(1..=MAX_JOB_ID).contains(&job_id) {
        reasons.push(format!("job_id {job_id} is not a Slurm JobIDRaw (1..={MAX_JOB_ID})"));
    }
    let elapsed = int_in(&elapsed, "last_reported_elapsed", 0, MAX_ELAPSED_SECS, &mut reasons);
    let at = int_in(&at, "last_reported_at", MIN_INSTANT, MAX_INSTANT, &mut reasons);
    let completed = match completed {
        // 0 means "still running"; otherwise a plausible instant.
        Value::Integer(0) => Some(0),
        ref v => int_in(v, "completed_at", MIN_INSTANT, MAX_INSTANT, &mut reasons),
    };
    let hours = match hours {
        Value::Real(x) => Some(x),
        Value::Integer(n) => Some(n as f64),
        ref v => {
            reasons.push(format!("total_core_hours is {}", describe(v)));
            None
        }
    };
    let hours = hours.filter(|x| {
        let ok = x.is_finite() && (0.0..=MAX_CORE_HOURS).contains(x);
        if !ok {
            reasons.push(format!("total_core_hours {x} is not in 0..={MAX_CORE_HOURS:e}"));
        }
        ok
    });
    match (reasons.is_empty(), elapsed, at, hours, completed) {
        (true, Some(last_reported_elapsed), Some(last_reported_at), Some(total_core_hours), Some(completed_at)) => {
            StateRow::Job(TrackerJobState {
                job_id: job_id as u64,
                last_reported_elapsed,
                last_reported_at,
                total_core_hours,
                completed_at,
            })
        }
        _ => StateRow::Rejected(Rejected { job_id, reason: reasons.join("; ") }),
    }
}

fn int_in(v: &Value, col: &str, min: i64, max: i64, reasons: &mut Vec<String>) -> Option<i64> {
    match *v {
        Value::Integer(n) if (min..=max).contains(&n) => Some(n),
        Value::Integer(n) => {
            reasons.push(format!("{col} {n} is not in {min}..={max}"));
            None
        }
        ref other => {
            reasons.push(format!("{col} is {}", describe(other)));
            None
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(n) => format!("the integer {n}"),
        Value::Real(x) => format!("the real {x}, not an integer"),
        Value::Text(t) => format!("the text {:?}, not a number", t.chars().take(40).collect::<String>()),
        Value::Blob(b) => format!("a {}-byte blob, not a number", b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tracker's exact DDL (parallelworks/slurm-tracker `internal/state/state.go`).
    const TRACKER_DDL: &str = "CREATE TABLE IF NOT EXISTS job_states (
        job_id INTEGER PRIMARY KEY,
        last_reported_elapsed INTEGER NOT NULL,
        last_reported_at INTEGER NOT NULL,
        total_core_hours REAL NOT NULL,
        completed_at INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS idx_completed_at ON job_states(completed_at);";
    /// The schema as contracts.md §1.2 describes it (no NOT NULL): lets tests store NULLs.
    const LOOSE_DDL: &str = "CREATE TABLE job_states (job_id INTEGER PRIMARY KEY, last_reported_elapsed INTEGER, \
        last_reported_at INTEGER, total_core_hours REAL, completed_at INTEGER DEFAULT 0);";
    /// The tracker's upsert.
    const UPSERT: &str =
        "INSERT INTO job_states (job_id, last_reported_elapsed, last_reported_at, total_core_hours, completed_at)
        VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT(job_id) DO UPDATE SET last_reported_elapsed = excluded.last_reported_elapsed,
          last_reported_at = excluded.last_reported_at, total_core_hours = excluded.total_core_hours,
          completed_at = excluded.completed_at";

    fn db_with(ddl: &str, fill: impl FnOnce(&Connection)) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slurm_job_states.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(ddl).unwrap();
        fill(&conn);
        drop(conn);
        (dir, path)
    }

    #[test]
    fn reads_the_trackers_rows_in_job_order() {
        let (_d, path) = db_with(TRACKER_DDL, |c| {
            // A completed job, then a running one (inserted out of order), then the running one updated.
            c.execute(UPSERT, rusqlite::params![1042, 7200, 1_780_007_200_i64, 32.0, 1_780_007_500_i64]).unwrap();
            c.execute(UPSERT, rusqlite::params![77, 300, 1_780_000_300_i64, 0.5, 0]).unwrap();
            c.execute(UPSERT, rusqlite::params![77, 600, 1_780_000_600_i64, 1.0, 0]).unwrap();
        });
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.row_count().unwrap(), 2);
        let rows = db.read_all().unwrap();
        assert_eq!(
            rows,
            [
                StateRow::Job(TrackerJobState {
                    job_id: 77,
                    last_reported_elapsed: 600,
                    last_reported_at: 1_780_000_600,
                    total_core_hours: 1.0,
                    completed_at: 0
                }),
                StateRow::Job(TrackerJobState {
                    job_id: 1042,
                    last_reported_elapsed: 7200,
                    last_reported_at: 1_780_007_200,
                    total_core_hours: 32.0,
                    completed_at: 1_780_007_500
                }),
            ]
        );
        assert_eq!(db.get(77).unwrap(), Some(rows[0].clone()));
        assert_eq!(db.get(5).unwrap(), None);
        assert_eq!(db.get(u64::MAX).unwrap(), None);
    }

    #[test]
    fn streams_with_counts() {
        let (_d, path) = db_with(TRACKER_DDL, |c| {
            let tx = c.unchecked_transaction().unwrap();
            for id in 1..=5000_i64 {
                c.execute(UPSERT, rusqlite::params![id, id, 1_780_000_000 + id, 0.25, 0]).unwrap();
            }
            c.execute(UPSERT, rusqlite::params![5001, -1, 1_780_000_000_i64, 0.25, 0]).unwrap();
            tx.commit().unwrap();
        });
        let db = StateDb::open(&path).unwrap();
        let mut last = 0;
        let counts = db
            .for_each_row(|r| {
                if let StateRow::Job(j) = r {
                    assert!(j.job_id > last);
                    last = j.job_id;
                }
            })
            .unwrap();
        assert_eq!(counts, RowCounts { jobs: 5000, rejected: 1 });
    }

    #[test]
    fn bad_rows_are_returned_with_every_reason() {
        let (_d, path) = db_with(LOOSE_DDL, |c| {
            let ins = "INSERT INTO job_states VALUES (?1, ?2, ?3, ?4, ?5)";
            use rusqlite::types::Null;
            c.execute(ins, rusqlite::params![1, Null, 1_780_000_000_i64, 1.0, 0]).unwrap();
            c.execute(ins, rusqlite::params![2, -5, 1_780_000_000_i64, -1.0, 0]).unwrap();
            c.execute(ins, rusqlite::params![3, 600, 12, 1.0, -1]).unwrap();
            c.execute(ins, rusqlite::params![4, 400_000_000, 1_780_000_000_i64, 1e13, 0]).unwrap();
            c.execute(ins, rusqlite::params![5, "600s", 1_780_000_000_i64, "x", Null]).unwrap();
            c.execute(ins, rusqlite::params![6, 60.5, 1_780_000_000_i64, 1.0, 0]).unwrap();
            c.execute(ins, rusqlite::params![-7, 60, 1_780_000_000_i64, 1.0, 0]).unwrap();
            c.execute(ins, rusqlite::params![8, 60, 1_780_000_000_i64, f64::NAN, 0]).unwrap();
            c.execute(ins, rusqlite::params![9, 60, 1_780_000_000_i64, 3, 0]).unwrap();
        });
        let rows = StateDb::open(&path).unwrap().read_all().unwrap();
        let rejected: Vec<(i64, &str)> = rows
            .iter()
            .filter_map(|r| match r {
                StateRow::Rejected(x) => Some((x.job_id, x.reason.as_str())),
                StateRow::Job(_) => None,
            })
            .collect();
        assert_eq!(
            rejected,
            [
                (-7, "job_id -7 is not a Slurm JobIDRaw (1..=4294967295)"),
                (1, "last_reported_elapsed is NULL"),
                (2, "last_reported_elapsed -5 is not in 0..=316224000; total_core_hours -1 is not in 0..=1e12"),
                (3, "last_reported_at 12 is not in 946684800..=4102444800; completed_at -1 is not in 946684800..=4102444800"),
                (4, "last_reported_elapsed 400000000 is not in 0..=316224000; total_core_hours 10000000000000 is not in 0..=1e12"),
                (5, "last_reported_elapsed is the text \"600s\", not a number; completed_at is NULL; total_core_hours is the text \"x\", not a number"),
                (6, "last_reported_elapsed is the real 60.5, not an integer"),
                // SQLite stores NaN as NULL.
                (8, "total_core_hours is NULL"),
            ]
        );
        // An integer in the REAL column is a fine number of core-hours.
        assert!(rows.iter().any(|r| matches!(r, StateRow::Job(j) if j.job_id == 9 && j.total_core_hours == 3.0)));
    }

    #[test]
    fn opens_read_only_and_never_writes() {
        let (_d, path) = db_with(TRACKER_DDL, |c| {
            c.execute(UPSERT, rusqlite::params![1, 60, 1_780_000_060_i64, 1.0, 0]).unwrap();
        });
        let before = std::fs::read(&path).unwrap();
        let db = StateDb::open(&path).unwrap();
        let e = db.conn.execute("DELETE FROM job_states", []).unwrap_err();
        assert!(e.to_string().contains("readonly"), "{e}");
        drop(db);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_missing_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slurm_job_states.db");
        let e = StateDb::open(&path).unwrap_err();
        assert!(matches!(e, StateDbError::NotFound { .. }));
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("--state-file"), "{msg}");
        assert!(!path.exists(), "opening must not create the file");
        assert!(
            matches!(StateDb::open(dir.path()).unwrap_err(), StateDbError::NotFound { .. }),
            "a directory is not the file"
        );
    }

    #[test]
    fn files_that_are_not_tracker_dbs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("config.json");
        std::fs::write(&text, "{\"defaultSku\": \"x\"} and some more text to be longer than a header").unwrap();
        let e = StateDb::open(&text).unwrap_err();
        assert!(matches!(e, StateDbError::NotTrackerDb { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{} is not a slurm-tracker state DB: SQLite cannot read it", text.display())),
            "{e}"
        );

        let (_d1, other) = db_with("CREATE TABLE job_runs (id INTEGER);", |_| {});
        let e = StateDb::open(&other).unwrap_err().to_string();
        assert!(e.contains("is not a slurm-tracker state DB: it has no job_states table; pass the file the crontab's --state-file names"), "{e}");

        let (_d2, wrong) = db_with(
            "CREATE TABLE job_states (job_id INTEGER PRIMARY KEY, last_reported_elapsed INTEGER, note TEXT);",
            |_| {},
        );
        let e = StateDb::open(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("its job_states table lacks column(s) last_reported_at, total_core_hours, completed_at and has unknown column(s) note (expected exactly job_id, last_reported_elapsed, last_reported_at, total_core_hours, completed_at)"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_tracker_db_reads_as_no_rows() {
        let (_d, path) = db_with(TRACKER_DDL, |_| {});
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.for_each_row(|_| panic!("no rows")).unwrap(), RowCounts::default());
    }
}
