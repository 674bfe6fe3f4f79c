//! One collect: the Slurm source's records into the ledger, for one cluster.
//!
//! Window: from the cluster's cursor minus a safety overlap (records reach slurmdbd late when
//! it was down), or from an explicit `--since`, to `now`; a window longer than `[slurm]
//! max_query_time_range` (slurmdbd refuses longer ones when its MaxQueryTimeRange is set) is read
//! in consecutive windows, the cursor moving after each. The records stream from sacct into
//! the ledger in chunked transactions (bounded memory; a crash loses at most one chunk, which
//! the next collect re-reads idempotently). The cursor moves to `now` only when sacct exited
//! cleanly, in the same transaction as the last chunk, and only when the window started at or
//! before it (a `--since` later than the cursor would otherwise skip the time between).
//! Unreadable records go to quarantine and never stop the batch or the cursor. Reading (and
//! encoding each run for its row) runs on a second thread while this one writes, linked by a
//! bounded channel.
//!
//! Settling open runs: a run the ledger holds as not final that the window did not show has
//! most likely ended before the window began (its end reached slurmdbd late, e.g. after the
//! link from slurmctld was down longer than the overlap), or has become invisible to windows
//! (a pending job put on hold). After the poll, such runs are asked for by job id (`sacct
//! --jobs`, no time window), at most [`MAX_SETTLE`] a collect, least recently asked first; a
//! run asked for and still open is asked again after a doubling delay (see
//! `ledger::settle`), so no run stays open forever unnoticed and none costs a query on every
//! collect. A failed ask is reported with the collect (exit 1) and asked again next time; the
//! window is stored and its cursor moved all the same.
//!
//! Allocation detail (`allocations`): for the sinks that report it, the runs that started since
//! the last ask are asked of slurmctld (one `scontrol` call) after the collect, and the daemon asks
//! for the job ids its hook names; see that module.

pub mod allocations;

use std::collections::HashSet;
use std::io::BufRead;

use crate::ledger::{CollectRunRecord, Ledger, LedgerError, OpenRun, PreparedRun, Rejected, Upsert, Writer};
use crate::model::{ClusterName, JobRun, JobState, UnixTime};
use crate::slurm::parsable::{Item, ParsableError, Quarantined, ReadOptions, SacctReader};
use crate::slurm::runner::RunError;
use crate::slurm::source::{SlurmInfo, SlurmSource, SourceError, Window};
use std::collections::hash_map::Entry;

/// Records per transaction.
pub const CHUNK: usize = 20_000;

/// Open runs settled by job id per collect at most; the rest wait for the next collect.
pub const MAX_SETTLE: usize = 2_000;

/// The source name of the by-id asks in the ledger (quarantine and collect history).
pub const BY_ID_SOURCE: &str = "sacct --jobs";

/// Job ids per `sacct --jobs` call (settling, the daemon's looks): keeps the command line short.
pub const IDS_PER_CALL: usize = 200;

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
    /// The longest window one sacct call asks for (slurmdbd's `MaxQueryTimeRange`); a longer
    /// one (a first collect, `--lookback`, a cursor left behind while collection was stopped)
    /// is read in consecutive windows, the cursor moving after each. 0: never split.
    pub max_window_secs: i64,
}

/// Counts of one ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub runs_seen: u64,
    pub runs_new: u64,
    pub runs_updated: u64,
    pub runs_unchanged: u64,
    pub quarantined: u64,
    /// Of `quarantined`, records never quarantined before (a bad row re-read by an overlapping
    /// window is not new).
    pub quarantined_new: u64,
    /// Runs whose elapsed time was derived as End − Start − Suspended (the input has no
    /// ElapsedRaw or Elapsed column).
    pub elapsed_derived: u64,
    /// Runs keyed by a JobIDRaw taken from their plain JobID (the input has no JobIDRaw column;
    /// array tasks and het components, whose JobID does not tell it, are quarantined).
    pub job_id_raw_from_job_id: u64,
    /// Runs read in a state this reader does not know (a newer Slurm's), by state: stored as
    /// they are, and billed as not final (never as ended) until Slurm reports a known end.
    pub unknown_states: std::collections::BTreeMap<String, u64>,
}

/// What a collect did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CollectReport {
    pub cluster: ClusterName,
    pub window: Option<(UnixTime, UnixTime)>,
    pub counts: Counts,
    pub slurm_version: Option<String>,
    /// The cursor when the window started after it: it stayed there (see the module doc).
    pub cursor_kept: Option<UnixTime>,
    /// Open runs the window did not show, asked for by job id, and what that read.
    pub settled: Option<Settled>,
    /// sacct commands run: one per window part, and the by-id asks (the load put on slurmdbd).
    pub sacct_calls: u64,
}

/// Open runs settled by job id after a poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Settled {
    /// Open runs the window did not show, and how many of them were due and asked for (at
    /// most [`MAX_SETTLE`]; the others were asked recently).
    pub open_unseen: u64,
    pub asked: u64,
    /// What the `sacct --jobs` calls returned (all runs of those ids).
    pub counts: Counts,
    /// Why asking failed; the runs not settled are asked again next collect.
    pub error: Option<String>,
    /// `sacct --jobs` commands run.
    pub calls: u64,
}

/// (JobIDRaw, submit) of the runs a poll saw that are not final.
pub type OpenSeen = HashSet<(u64, i64)>;

/// The window a collect reads, given the cluster's cursor.
fn window_for(cursor: Option<UnixTime>, since: Since, now: UnixTime, p: WindowPolicy) -> Window {
    let start = match since {
        Since::At(t) => t,
        Since::Cursor => match cursor {
            Some(c) => UnixTime(c.0 - p.overlap_secs),
            None => UnixTime(now.0 - p.initial_lookback_secs),
        },
    };
    Window { start: UnixTime(start.0.min(now.0 - 1)), end: now }
}

/// One line of the collect history.
fn history(
    cluster: &ClusterName,
    source: &str,
    version: Option<String>,
    window: Option<Window>,
    now: UnixTime,
    c: &Counts,
    error: Option<String>,
) -> CollectRunRecord {
    CollectRunRecord {
        cluster: cluster.to_string(),
        source: source.into(),
        slurm_version: version,
        window_start: window.map(|w| w.start),
        window_end: window.map(|w| w.end),
        started_at: now,
        finished_at: now,
        runs_seen: c.runs_seen,
        runs_new: c.runs_new,
        runs_updated: c.runs_updated,
        quarantined: c.quarantined,
        error,
    }
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
    let cursor = ledger.cursor(cluster)?;
    let window = window_for(cursor, since, now, policy);
    let cursor_kept = cursor.filter(|c| window.start > *c);
    let (mut counts, mut open_seen, mut sacct_calls) = (Counts::default(), OpenSeen::new(), 0);
    for part in window.split(policy.max_window_secs) {
        sacct_calls += 1;
        let (c, seen) = poll_window(source, info, ledger, cluster, part, cursor_kept.is_none(), now)?;
        counts.add(&c);
        open_seen.extend(seen);
    }
    let settled = settle_open_runs(source, info, ledger, cluster, &open_seen, now)?;
    sacct_calls += settled.as_ref().map_or(0, |s| s.calls);
    Ok(CollectReport {
        cluster: cluster.clone(),
        window: Some((window.start, window.end)),
        counts,
        slurm_version: Some(info.version.to_string()),
        cursor_kept,
        settled,
        sacct_calls,
    })
}

/// Reads one past window of a cluster (a backfill's): the records are stored like a poll's, and
/// recorded in the collect history, but the cursor never moves and open runs are not settled
/// (the cron collect does both). The window must not be longer than slurmdbd's
/// `MaxQueryTimeRange`, or slurmdbd refuses it.
pub fn collect_window(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    window: Window,
    now: UnixTime,
) -> Result<Counts, CollectError> {
    poll_window(source, info, ledger, cluster, window, false, now).map(|(counts, _)| counts)
}

/// Polls `window`, stores what it read and records the collect; moves the cursor to the window's
/// end when `move_cursor` and sacct exited cleanly, in the transaction of the last chunk.
fn poll_window(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    window: Window,
    move_cursor: bool,
    now: UnixTime,
) -> Result<(Counts, OpenSeen), CollectError> {
    let (reader, handle) = source.poll(info, cluster, window)?;
    let version = info.version.to_string();
    let record = |c: &Counts, error: Option<String>| {
        history(cluster, "sacct", Some(version.clone()), Some(window), now, c, error)
    };
    // Whatever the stream did, sacct's own exit decides whether the window is complete.
    let mut recorded = false;
    let outcome = match ingest(ledger, reader, cluster, "sacct", now) {
        Ok((counts, open_seen, mut w)) => {
            recorded = true;
            let result = match handle.finish() {
                Ok(()) => {
                    if move_cursor {
                        w.set_cursor(cluster, window.end)?;
                    }
                    Ok((counts.clone(), open_seen))
                }
                Err(source) => Err(CollectError::Sacct { cluster: cluster.clone(), source }),
            };
            w.record_collect(&record(&counts, result.as_ref().err().map(|e| e.to_string())))?;
            w.commit()?;
            result
        }
        Err(e) => {
            // The stream broke; sacct's own failure, if any, is the real reason.
            let e = match handle.finish() {
                Err(source) => CollectError::Sacct { cluster: cluster.clone(), source },
                Ok(()) => e,
            };
            Err(e)
        }
    };
    if let (false, Err(e)) = (recorded, &outcome) {
        let mut w = ledger.writer(now)?;
        w.record_collect(&record(&Counts::default(), Some(e.to_string())))?;
        w.commit()?;
    }
    outcome
}

/// The source name of a look at given jobs (the daemon's, after a prolog/epilog hook message) in
/// the ledger's collect history and quarantine.
pub const HOOK_SOURCE: &str = "sacct --jobs (hook)";

/// Reads `job_ids` of `cluster` by id (one `sacct --jobs` call per [`IDS_PER_CALL`] ids)
/// and stores what sacct says, as a poll would: the daemon's fast path after a prolog or epilog
/// hook message. The cursor never moves (the next poll still reads its whole window), and the
/// collect history is left to the polls (one line per job start and end would bury them); the
/// caller logs and counts. Complete rows are kept even when sacct then fails.
pub fn collect_jobs(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    job_ids: &[u64],
    now: UnixTime,
) -> Result<Counts, CollectError> {
    let mut counts = Counts::default();
    for chunk in job_ids.chunks(IDS_PER_CALL) {
        let (reader, handle) = source.poll_jobs(info, cluster, chunk)?;
        let sacct_error = |source| CollectError::Sacct { cluster: cluster.clone(), source };
        let result = match ingest(ledger, reader, cluster, HOOK_SOURCE, now) {
            Ok((c, _, w)) => {
                let finished = handle.finish().map_err(sacct_error);
                w.commit()?;
                counts.add(&c);
                finished
            }
            Err(e) => Err(handle.finish().map_err(sacct_error).err().unwrap_or(e)),
        };
        result?;
    }
    Ok(counts)
}

/// The source name of a look at slurmctld's live view of given jobs (the daemon's, when sacct
/// does not show yet what a hook message said).
pub const LIVE_SOURCE: &str = "scontrol show job (hook)";

/// Up to this many jobs, slurmctld's view is asked one job id per call (22.05's scontrol takes
/// one); more cost one call for every job it holds.
const LIVE_BY_ID: usize = 2;

/// Reads `job_ids` of `cluster` from slurmctld's live view (`scontrol show job`, one call per
/// id) and stores them as a poll would: the daemon's fallback when slurmdbd has not heard of a
/// job's start or end yet. sacct's record replaces it at the next look or poll (it has what
/// slurmctld's view lacks: CPU time, memory high-water mark, energy). A job slurmctld no longer
/// holds is skipped (logged); the cursor never moves.
pub fn collect_live_jobs(
    source: &SlurmSource<'_>,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    job_ids: &[u64],
    now: UnixTime,
) -> Result<Counts, CollectError> {
    let mut items = Vec::new();
    if job_ids.len() > LIVE_BY_ID {
        // One call for every job slurmctld holds, rather than one per id; only the asked jobs'
        // runs are kept (another job's unreadable record is the polls' to quarantine).
        match source.show_jobs(cluster) {
            Ok(found) => items.extend(found.into_iter().filter(|i| match i {
                Item::Job(r) => job_ids.contains(&r.key.job_id_raw),
                _ => false,
            })),
            Err(e) => tracing::debug!(cluster = %cluster, error = %e, "scontrol show job failed"),
        }
    } else {
        for &id in job_ids {
            match source.show_job(cluster, id) {
                Ok(found) => items.extend(found),
                Err(e) => {
                    tracing::debug!(cluster = %cluster, job_id = id, error = %e, "scontrol does not show the job")
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(Counts::default());
    }
    let (counts, _, w) = ingest(ledger, items.into_iter(), cluster, LIVE_SOURCE, now)?;
    w.commit()?;
    Ok(counts)
}

/// Asks sacct by job id for the open runs of `cluster` the poll did not show and that are due
/// (see the module doc); `None` when there were none. A failure of sacct or of its output is
/// reported in [`Settled::error`]; only a ledger failure is an error.
fn settle_open_runs(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    open_seen: &OpenSeen,
    now: UnixTime,
) -> Result<Option<Settled>, CollectError> {
    let unseen: Vec<OpenRun> =
        ledger.open_runs(cluster)?.into_iter().filter(|r| !open_seen.contains(&(r.job_id_raw, r.submit.0))).collect();
    if unseen.is_empty() {
        return Ok(None);
    }
    let due: Vec<&OpenRun> = unseen.iter().filter(|r| r.due(now)).take(MAX_SETTLE).collect();
    let mut settled = Settled { open_unseen: unseen.len() as u64, asked: due.len() as u64, ..Default::default() };
    // A requeued job's runs share one id: each id is asked once.
    let mut seen_ids = HashSet::new();
    let ids: Vec<u64> = due.iter().map(|r| r.job_id_raw).filter(|id| seen_ids.insert(*id)).collect();
    for chunk in ids.chunks(IDS_PER_CALL) {
        let chunk_ids: HashSet<u64> = chunk.iter().copied().collect();
        settled.calls += 1;
        let keys: Vec<(u64, UnixTime)> =
            due.iter().filter(|r| chunk_ids.contains(&r.job_id_raw)).map(|r| (r.job_id_raw, r.submit)).collect();
        match ask_by_id(source, info, ledger, cluster, chunk, &keys, now) {
            Ok(counts) => settled.counts.add(&counts),
            Err(CollectError::Ledger(e)) => return Err(e.into()),
            Err(e) => {
                // The window's wording ("the cursor stays…") does not apply here.
                settled.error = Some(match e {
                    CollectError::Sacct { source, .. } => source.to_string(),
                    other => other.to_string(),
                });
                break;
            }
        }
    }
    let mut w = ledger.writer(now)?;
    w.record_collect(&history(
        cluster,
        BY_ID_SOURCE,
        Some(info.version.to_string()),
        None,
        now,
        &settled.counts,
        settled.error.clone(),
    ))?;
    w.commit()?;
    tracing::info!(cluster = %cluster, open_unseen = settled.open_unseen, asked = settled.asked, updated = settled.counts.runs_updated, "open runs asked for by job id");
    Ok(Some(settled))
}

/// One `sacct --jobs` call: stores what it returns and, when sacct succeeded, counts the ask
/// for `keys` (the due runs of these ids) in the same transaction as the last rows.
fn ask_by_id(
    source: &SlurmSource<'_>,
    info: &SlurmInfo,
    ledger: &mut Ledger,
    cluster: &ClusterName,
    ids: &[u64],
    keys: &[(u64, UnixTime)],
    now: UnixTime,
) -> Result<Counts, CollectError> {
    let (reader, handle) = source.poll_jobs(info, cluster, ids)?;
    let sacct_error = |source| CollectError::Sacct { cluster: cluster.clone(), source };
    match ingest(ledger, reader, cluster, BY_ID_SOURCE, now) {
        Ok((counts, _, mut w)) => {
            // Complete rows are stored even when sacct then fails: they are true. The ask is
            // counted only for a complete answer.
            let finished = handle.finish();
            if finished.is_ok() {
                w.record_settle_asks(cluster, keys)?;
            }
            w.commit()?;
            finished.map_err(sacct_error)?;
            Ok(counts)
        }
        Err(e) => {
            handle.finish().map_err(sacct_error)?;
            Err(e)
        }
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.runs_seen += o.runs_seen;
        self.runs_new += o.runs_new;
        self.runs_updated += o.runs_updated;
        self.runs_unchanged += o.runs_unchanged;
        self.quarantined += o.quarantined;
        self.quarantined_new += o.quarantined_new;
        self.elapsed_derived += o.elapsed_derived;
        self.job_id_raw_from_job_id += o.job_id_raw_from_job_id;
        for (state, n) in &o.unknown_states {
            *self.unknown_states.entry(state.clone()).or_default() += n;
        }
    }
}

/// Reads a recorded sacct `--parsable2` output (with its header line) into the ledger.
/// The cursor does not move: a file says nothing about what the cluster did since.
pub fn import_file<R: BufRead + Send>(
    ledger: &mut Ledger,
    input: R,
    opts: ReadOptions,
    label: &str,
    now: UnixTime,
) -> Result<CollectReport, CollectError> {
    let cluster = opts.default_cluster.clone();
    import_items(ledger, SacctReader::new(input, opts), &cluster, label, now)
}

/// Stores already-read items (e.g. of a recorded `sacct --json` document) as [`import_file`]
/// does; `cluster` is the one quarantined records are filed under.
pub fn import_items(
    ledger: &mut Ledger,
    items: impl Items,
    cluster: &ClusterName,
    label: &str,
    now: UnixTime,
) -> Result<CollectReport, CollectError> {
    let cluster = cluster.clone();
    let (counts, _, mut w) = ingest(ledger, items, &cluster, label, now)?;
    w.record_collect(&history(&cluster, label, None, None, now, &counts, None))?;
    w.commit()?;
    Ok(CollectReport {
        cluster,
        window: None,
        counts,
        slurm_version: None,
        cursor_kept: None,
        settled: None,
        sacct_calls: 0,
    })
}

/// What [`ingest`] reads: job runs and quarantined records as a reader yields them, and where
/// runs go back for reuse once written.
pub trait Items: Send {
    fn next_item(&mut self) -> Option<Result<Item, ParsableError>>;
    /// Takes back a run that has been written (a streaming reader reuses its allocations).
    fn recycle(&mut self, _job: Box<JobRun>) {}
}

impl<R: BufRead + Send> Items for SacctReader<R> {
    fn next_item(&mut self) -> Option<Result<Item, ParsableError>> {
        self.next()
    }

    fn recycle(&mut self, job: Box<JobRun>) {
        SacctReader::recycle(self, job)
    }
}

/// Items read whole beforehand (the JSON readers).
impl Items for std::vec::IntoIter<Item> {
    fn next_item(&mut self) -> Option<Result<Item, ParsableError>> {
        self.next().map(Ok)
    }
}

/// What the parsing thread hands to the writing thread. Runs are the usual item, so the large
/// variant stays inline: boxing it would add an allocation per run.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Run(PreparedRun),
    Rejected(Rejected),
    Quarantine(Quarantined),
}

/// Items per message between the threads, and messages in flight: bounds memory to a few
/// thousand runs whatever the size of the poll.
const BATCH: usize = 512;
const BATCHES_IN_FLIGHT: usize = 8;

/// Writes a stream of items in chunks; returns the counts, the open runs it saw, and the open
/// last chunk, so the caller can move the cursor in the same transaction.
///
/// The stream is read (and each run encoded for its row) on a second thread while this one
/// writes to SQLite; a bounded channel between them keeps memory flat. A chunk (at least
/// [`CHUNK`] items, whole batches) commits as it fills; a stream error stops at once and keeps
/// only the committed chunks.
pub fn ingest<'l>(
    ledger: &'l mut Ledger,
    items: impl Items,
    cluster: &ClusterName,
    source: &str,
    now: UnixTime,
) -> Result<(Counts, OpenSeen, Writer<'l>), CollectError> {
    ingest_chunked(ledger, items, cluster, source, now, CHUNK)
}

/// [`ingest`] with chunks of `chunk` items.
fn ingest_chunked<'l>(
    ledger: &'l mut Ledger,
    items: impl Items,
    cluster: &ClusterName,
    source: &str,
    now: UnixTime,
    chunk: usize,
) -> Result<(Counts, OpenSeen, Writer<'l>), CollectError> {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        s.spawn(move || parse_side(items, ParseEnd { tx, back: back_rx }));
        write_side(ledger, WriteEnd { rx, back: back_tx, chunk }, cluster, source, now)
        // The write end is dropped here: a parsing thread still running stops at its next send.
    })
}

type Batch = Vec<Parsed>;

/// The parsing thread's end: batches go out; written batches come back, and their runs go back
/// to the reader for reuse (allocating on one thread and freeing on the other costs the
/// allocator far more than the parsing).
struct ParseEnd {
    tx: std::sync::mpsc::SyncSender<Result<Batch, ParsableError>>,
    back: std::sync::mpsc::Receiver<Batch>,
}

impl ParseEnd {
    /// Sends `batch`, leaving an empty one (a returned batch's allocation when there is one).
    /// False when the writer has stopped.
    fn send(&self, batch: &mut Batch, reader: &mut impl Items) -> bool {
        let mut next = Vec::new();
        while let Ok(mut done) = self.back.try_recv() {
            for item in done.drain(..) {
                if let Parsed::Run(run) = item {
                    reader.recycle(run.into_job());
                }
            }
            next = done;
        }
        if next.capacity() == 0 {
            next.reserve(BATCH);
        }
        self.tx.send(Ok(std::mem::replace(batch, next))).is_ok()
    }
}

/// The writing thread's end.
struct WriteEnd {
    rx: std::sync::mpsc::Receiver<Result<Batch, ParsableError>>,
    back: std::sync::mpsc::Sender<Batch>,
    /// Items per transaction.
    chunk: usize,
}

/// The parsing thread: items in batches, each run encoded; a stream error ends the stream.
fn parse_side(mut reader: impl Items, end: ParseEnd) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = reader.next_item() {
        let parsed = match item {
            Ok(Item::Job(job)) => match PreparedRun::new(job) {
                Ok(run) => Parsed::Run(run),
                Err(rejected) => Parsed::Rejected(rejected),
            },
            Ok(Item::Quarantine(q)) => Parsed::Quarantine(q),
            Err(e) => {
                // Whatever was read before the error is written, then the error ends the stream.
                if end.send(&mut batch, &mut reader) {
                    let _ = end.tx.send(Err(e));
                }
                return;
            }
        };
        batch.push(parsed);
        if batch.len() == BATCH && !end.send(&mut batch, &mut reader) {
            return;
        }
    }
    end.send(&mut batch, &mut reader);
}

/// The writing thread: chunked transactions, written as batches arrive; the last one is
/// returned open.
fn write_side<'l>(
    ledger: &'l mut Ledger,
    end: WriteEnd,
    cluster: &ClusterName,
    source: &str,
    now: UnixTime,
) -> Result<(Counts, OpenSeen, Writer<'l>), CollectError> {
    let mut counts = Counts::default();
    let mut open_seen = OpenSeen::new();
    let mut w = ledger.writer(now)?;
    let mut seen = SeenRuns::default();
    loop {
        if write_chunk(&mut w, &end, cluster, source, &mut counts, &mut open_seen, &mut seen)? {
            return Ok((counts, open_seen, w));
        }
        w.commit_and_continue()?;
    }
}

/// Writes batches into `w` until it holds a chunk of items (returns false) or the stream ended
/// (returns true). Runs go through one set of prepared statements; quarantined rows follow them.
fn write_chunk(
    w: &mut Writer<'_>,
    end: &WriteEnd,
    cluster: &ClusterName,
    source: &str,
    counts: &mut Counts,
    open_seen: &mut OpenSeen,
    seen: &mut SeenRuns,
) -> Result<bool, CollectError> {
    // (cluster, line, raw, reason), written after the runs so the statements stay prepared.
    let mut quarantined: Vec<(ClusterName, u64, String, String)> = Vec::new();
    let (mut n, mut ended) = (0, false);
    {
        let mut runs = w.runs()?;
        while n < end.chunk {
            let Ok(batch) = end.rx.recv() else {
                ended = true;
                break;
            };
            let mut batch = batch?;
            if let Some((c, lo, hi)) = job_id_range(&batch) {
                runs.expect_range(c, lo, hi)?;
            }
            for item in batch.iter_mut() {
                n += 1;
                match item {
                    Parsed::Run(run) => {
                        let job = run.job();
                        // One run twice in this input with other content: keep the first.
                        let key = run_tag(&job.key);
                        match seen.entry(key) {
                            Entry::Occupied(first) if *first.get() != run.content_hash() => {
                                let first = runs.describe(&job.key)?;
                                let raw = serde_json::to_string(job).unwrap_or_else(|_| format!("{job:?}"));
                                let reason = format!(
                                    "run {} appears twice in this input with other content; the first is kept ({first}), \
                                     this one is not stored (state {}, ElapsedRaw {}, AllocTRES {}, End {}). Two records \
                                     of one run: check slurmdbd for duplicate records, or the file for concatenated outputs",
                                    job.key,
                                    job.state.as_str(),
                                    job.elapsed_secs,
                                    job.alloc_tres.to_canonical(),
                                    job.end.map_or(0, |t| t.0)
                                );
                                quarantined.push((job.key.cluster.clone(), 0, raw, reason));
                                continue;
                            }
                            Entry::Occupied(_) => {}
                            Entry::Vacant(v) => {
                                v.insert(run.content_hash());
                            }
                        }
                        counts.runs_seen += 1;
                        counts.elapsed_derived += u64::from(job.elapsed_derived);
                        counts.job_id_raw_from_job_id += u64::from(job.job_id_raw_from_job_id);
                        if !job.state.is_final() {
                            open_seen.insert((job.key.job_id_raw, job.key.submit.0));
                            if let JobState::Other(state) = &job.state {
                                *counts.unknown_states.entry(state.clone()).or_default() += 1;
                            }
                        }
                        match runs.upsert(run)? {
                            Upsert::New => counts.runs_new += 1,
                            Upsert::Updated => counts.runs_updated += 1,
                            Upsert::Unchanged => counts.runs_unchanged += 1,
                        }
                    }
                    Parsed::Rejected(Rejected { job, error }) => {
                        let raw = serde_json::to_string(&job).unwrap_or_else(|_| format!("{job:?}"));
                        quarantined.push((job.key.cluster.clone(), 0, raw, error.to_string()));
                    }
                    Parsed::Quarantine(q) => quarantined.push((
                        cluster.clone(),
                        q.line,
                        std::mem::take(&mut q.raw),
                        std::mem::take(&mut q.reason),
                    )),
                }
            }
            let _ = end.back.send(batch);
        }
    }
    for (cluster, line, raw, reason) in quarantined {
        counts.quarantined += 1;
        counts.quarantined_new += u64::from(w.quarantine(&cluster, source, line, &raw, &reason)?);
    }
    Ok(ended)
}

/// The runs one input has written so far, by a 64-bit fingerprint of their key (cluster,
/// JobIDRaw, Submit; see [`run_tag`]), with their content hash: a second row of one run with other
/// content is a conflict, whatever the ledger held before. About 20 bytes a run.
type SeenRuns = std::collections::HashMap<u64, u64, std::hash::BuildHasherDefault<Premixed>>;

/// A run key's fingerprint for [`SeenRuns`]: FNV-1a of the cluster, mixed with the two numbers
/// (splitmix64 finalizer). Two keys sharing one is as likely as a random 64-bit collision.
fn run_tag(k: &crate::model::JobKey) -> u64 {
    let c =
        k.cluster.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut x = c ^ k.job_id_raw.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k.submit.0 as u64).rotate_left(32);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hasher for keys that are already well mixed ([`run_tag`]): passes the `u64` through.
#[derive(Default)]
struct Premixed(u64);

impl std::hash::Hasher for Premixed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The cluster and job id range of a batch's runs, when they are all of one cluster.
fn job_id_range(batch: &[Parsed]) -> Option<(&ClusterName, u64, u64)> {
    let mut runs = batch.iter().filter_map(|p| match p {
        Parsed::Run(r) => Some(&r.job().key),
        _ => None,
    });
    let first = runs.next()?;
    let (mut lo, mut hi) = (first.job_id_raw, first.job_id_raw);
    for k in runs {
        if k.cluster != first.cluster {
            return None;
        }
        (lo, hi) = (lo.min(k.job_id_raw), hi.max(k.job_id_raw));
    }
    Some((&first.cluster, lo, hi))
}

/// The benchmarks' synthetic-day generator (it lives with them, not in the library).
#[cfg(test)]
#[path = "../benches/synth.rs"]
#[allow(dead_code)] // the benchmarks use all of it; these tests, part
mod synth;

#[cfg(test)]
mod tests {
    use super::synth::{SyntheticDay, DAY_START};
    use super::*;
    use crate::slurm::source::DELIMITER;
    use crate::slurm::values::TimeZone;

    fn day(jobs: u64) -> SacctReader<std::io::BufReader<SyntheticDay>> {
        let opts = ReadOptions {
            delimiter: DELIMITER,
            layout: None,
            tz: TimeZone::Utc,
            default_cluster: ClusterName::new("synth").unwrap(),
        };
        SacctReader::new(std::io::BufReader::new(SyntheticDay::new(jobs, 3, 5)), opts)
    }

    /// Full chunks commit as they fill (a chunk ends at a batch boundary), with consecutive
    /// change sequence numbers; the last one stays open for the cursor and is lost with it when
    /// not committed.
    #[test]
    fn chunks_commit_as_they_fill_and_the_last_stays_open() {
        let mut ledger = Ledger::open_in_memory().unwrap();
        let c = ClusterName::new("synth").unwrap();
        let now = UnixTime(DAY_START + 86_400);
        let (counts, _, w) = ingest_chunked(&mut ledger, day(1200), &c, "t", now, 1000).unwrap();
        assert_eq!((counts.runs_seen, counts.runs_new), (1200, 1200));
        drop(w); // a crash before the last commit
        let committed = 2 * BATCH as i64;
        assert_eq!(ledger.change_seq().unwrap(), committed, "the first chunk, two batches, is committed");
        assert_eq!(ledger.jobs(&crate::ledger::JobFilter::default()).unwrap().len() as i64, committed);

        let (counts, _, mut w) = ingest_chunked(&mut ledger, day(1200), &c, "t", now, 1000).unwrap();
        assert_eq!((counts.runs_new, counts.runs_unchanged), (1200 - committed as u64, committed as u64));
        w.set_cursor(&c, now).unwrap();
        w.commit().unwrap();
        let changed = ledger.runs_changed_since(0, 2000).unwrap();
        let seqs: Vec<i64> = changed.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=1200).collect::<Vec<_>>());
        assert_eq!(ledger.cursor(&c).unwrap(), Some(now));
    }
}
