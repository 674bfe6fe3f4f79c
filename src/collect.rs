//! One collect: the Slurm source's records into the ledger, for one cluster.
//!
//! Window: from the cluster's cursor minus a safety overlap (records reach slurmdbd late when
//! it was down), or from an explicit `--since`, to `now`. The records stream from sacct into
//! the ledger in chunked transactions (bounded memory; a crash loses at most one chunk, which
//! the next collect re-reads idempotently). The cursor moves to `now` only when sacct exited
//! cleanly, in the same transaction as the last chunk. Unreadable records go to quarantine and
//! never stop the batch or the cursor.

use std::io::BufRead;

use crate::ledger::{CollectRunRecord, Ledger, LedgerError, Upsert, Writer};
use crate::model::{ClusterName, UnixTime};
use crate::slurm::parsable::{Item, ParsableError, ReadOptions, SacctReader};
use crate::slurm::runner::RunError;
use crate::slurm::source::{SlurmInfo, SlurmSource, SourceError, Window};

/// Records per transaction.
pub const CHUNK: usize = 20_000;

/// Errors that stop a collect. The ledger keeps what was committed; the cursor stays.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("sacct failed, the cursor of cluster {cluster} stays at its last position and the next collect retries this window: {source}")]
    Sacct { cluster: ClusterName, source: RunError },
    #[error(transparent)]
    Parse(#[from] ParsableError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Where a collect starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The cluster's cursor minus the overlap, or `now - initial_lookback` on the first run.
    Cursor,
    At(UnixTime),
}

/// Window settings.
#[derive(Debug, Clone, Copy)]
pub struct WindowPolicy {
    pub overlap_secs: i64,
    pub initial_lookback_secs: i64,
}

/// Counts of one ingest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub runs_seen: u64,
    pub runs_new: u64,
    pub runs_updated: u64,
    pub runs_unchanged: u64,
    pub quarantined: u64,
}

/// What a collect did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectReport {
    pub cluster: ClusterName,
    pub window: Option<(UnixTime, UnixTime)>,
    pub counts: Counts,
    pub slurm_version: Option<String>,
}

/// The window a collect of `cluster` reads.
pub fn window_for(ledger: &Ledger, cluster: &ClusterName, since: Since, now: UnixTime, p: WindowPolicy) -> Result<Window, LedgerError> {
    let start = match since {
        Since::At(t) => t,
        Since::Cursor => match ledger.cursor(cluster)? {
            Some(c) => UnixTime(c.0 - p.overlap_secs),
            None => UnixTime(now.0 - p.initial_lookback_secs),
        },
    };
    Ok(Window { start: UnixTime(start.0.min(now.0 - 1)), end: now })
}

/// Polls one cluster through `source` and writes what it read.
pub fn collect_cluster(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    since: Since,
    now: UnixTime,
    policy: WindowPolicy,
) -> Result<CollectReport, CollectError> {
    let window = window_for(ledger, cluster, since, now, policy)?;
    let (reader, handle) = source.poll(info, cluster, window)?;
    let version = info.version.to_string();
    let mut record = CollectRunRecord {
        cluster: cluster.to_string(),
        source: "sacct".into(),
        slurm_version: Some(version.clone()),
        window_start: Some(window.start),
        window_end: Some(window.end),
        started_at: now,
        finished_at: now,
        runs_seen: 0,
        runs_new: 0,
        runs_updated: 0,
        quarantined: 0,
        error: None,
    };
    // Whatever the stream did, sacct's own exit decides whether the window is complete.
    let mut recorded = false;
    let outcome = match ingest(ledger, reader, cluster, "sacct", now) {
        Ok((counts, mut w)) => {
            recorded = true;
            record.runs_seen = counts.runs_seen;
            record.runs_new = counts.runs_new;
            record.runs_updated = counts.runs_updated;
            record.quarantined = counts.quarantined;
            let result = match handle.finish() {
                Ok(()) => {
                    w.set_cursor(cluster, window.end)?;
                    Ok(counts)
                }
                Err(source) => Err(CollectError::Sacct { cluster: cluster.clone(), source }),
            };
            record.error = result.as_ref().err().map(|e| e.to_string());
            w.record_collect(&record)?;
            w.commit()?;
            result
        }
        Err(e) => {
            // The stream broke; sacct's own failure, if any, is the real reason.
            let e = match handle.finish() {
                Err(source) => CollectError::Sacct { cluster: cluster.clone(), source },
                Ok(()) => e,
            };
            record.error = Some(e.to_string());
            Err(e)
        }
    };
    if !recorded {
        let mut w = ledger.writer(now)?;
        w.record_collect(&record)?;
        w.commit()?;
    }
    let counts = outcome?;
    Ok(CollectReport { cluster: cluster.clone(), window: Some((window.start, window.end)), counts, slurm_version: Some(version) })
}

/// Reads a recorded sacct `--parsable2` output (with its header line) into the ledger.
/// The cursor does not move: a file says nothing about what the cluster did since.
pub fn import_file<R: BufRead>(ledger: &mut Ledger, input: R, opts: ReadOptions, label: &str, now: UnixTime) -> Result<CollectReport, CollectError> {
    let cluster = opts.default_cluster.clone();
    let reader = SacctReader::new(input, opts);
    let (counts, mut w) = ingest(ledger, reader, &cluster, label, now)?;
    w.record_collect(&CollectRunRecord {
        cluster: cluster.to_string(),
        source: label.into(),
        slurm_version: None,
        window_start: None,
        window_end: None,
        started_at: now,
        finished_at: now,
        runs_seen: counts.runs_seen,
        runs_new: counts.runs_new,
        runs_updated: counts.runs_updated,
        quarantined: counts.quarantined,
        error: None,
    })?;
    w.commit()?;
    Ok(CollectReport { cluster, window: None, counts, slurm_version: None })
}

/// Writes a stream of items in chunks; returns the counts and the open last chunk, so the caller
/// can move the cursor in the same transaction.
pub fn ingest<'l, I>(ledger: &'l mut Ledger, items: I, cluster: &ClusterName, source: &str, now: UnixTime) -> Result<(Counts, Writer<'l>), CollectError>
where
    I: IntoIterator<Item = Result<Item, ParsableError>>,
{
    let mut counts = Counts::default();
    let mut pending: Vec<Item> = Vec::with_capacity(CHUNK);
    let mut items = items.into_iter();
    loop {
        pending.clear();
        for item in items.by_ref() {
            pending.push(item?);
            if pending.len() == CHUNK {
                break;
            }
        }
        if pending.len() < CHUNK {
            break;
        }
        let mut w = ledger.writer(now)?;
        for item in pending.drain(..) {
            write_item(&mut w, item, cluster, source, &mut counts)?;
        }
        w.commit()?;
    }
    // The last (partial) chunk stays open so the caller can move the cursor in it.
    let mut w = ledger.writer(now)?;
    for item in pending.drain(..) {
        write_item(&mut w, item, cluster, source, &mut counts)?;
    }
    Ok((counts, w))
}

fn write_item(w: &mut Writer<'_>, item: Item, cluster: &ClusterName, source: &str, counts: &mut Counts) -> Result<(), CollectError> {
    match item {
        Item::Job(job) => match w.upsert_run(&job) {
            Ok(u) => {
                counts.runs_seen += 1;
                match u {
                    Upsert::New => counts.runs_new += 1,
                    Upsert::Updated => counts.runs_updated += 1,
                    Upsert::Unchanged => counts.runs_unchanged += 1,
                }
            }
            Err(e @ LedgerError::ValueRange { .. }) => {
                let raw = serde_json::to_string(&job).unwrap_or_else(|_| format!("{job:?}"));
                counts.quarantined += 1;
                w.quarantine(&job.key.cluster, source, 0, &raw, &e.to_string())?;
            }
            Err(e) => return Err(e.into()),
        },
        Item::Quarantine(q) => {
            counts.quarantined += 1;
            w.quarantine(cluster, source, q.line, &q.raw, &q.reason)?;
        }
    }
    Ok(())
}
