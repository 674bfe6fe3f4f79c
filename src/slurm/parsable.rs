//! Streaming reader for `sacct --parsable2` output (any delimiter), job and step rows.
//!
//! It reads line by line from any `BufRead`, so a day of a large cluster never sits in memory,
//! and yields [`Item`]s: a [`JobRun`] with its steps folded in, or a [`Quarantined`] row.
//!
//! Rules that keep every record:
//! - Columns are found by name (header line, or the `--format` list that was requested).
//! - A layout without JobIDRaw but with JobID (older tools record such) takes JobIDRaw from the
//!   JobID where it is a plain job id (`123`, its steps `123.batch`); an array task (`123_4`), a
//!   pending array record (`123_[1-3]`) or a het component (`123+1`) has a JobIDRaw its JobID
//!   does not tell, so its rows are quarantined with the reason and the fix.
//! - A record is one physical line unless a field holds a newline (sbatch takes one in a job
//!   name, and the SubmitLine repeats it). The header fixes how many delimiters a record has:
//!   - a row with too few fields is joined with the following line(s) until it has them all (a
//!     newline in any field but the last);
//!   - a record that has them all is complete only when the next line starts a record: when the
//!     last column may hold a newline (SubmitLine, WorkDir, a comment …), the lines without any
//!     delimiter that follow it are that column's own lines and join it (one line of lookahead),
//!     unless the column is empty on the record's line (no value begins with a newline; a step
//!     row's SubmitLine is empty). By its format, a stray line after a record whose last column
//!     may run on is that column's: only where it cannot be (above) is it told apart;
//!   - a line without any delimiter that continues no record, where the first column cannot hold
//!     a newline (JobID), belongs to no record and is quarantined; where both the first and the
//!     last column may hold one, such a line may end a record or begin the next, and both are
//!     quarantined rather than guessed;
//!   - a record spans at most [`MAX_JOINED_LINES`] lines; past that it is quarantined.
//!
//!   A row with too many fields holds the delimiter inside a field (`|` in a job name under the
//!   default delimiter); it cannot be split safely and is quarantined. Empty lines between
//!   records are skipped; an empty line inside a last column that runs on is kept.
//! - Any value that does not parse quarantines the row with its text and the reason; the rest
//!   of the stream goes on.
//! - Steps follow their job row (sacct prints them so); a step whose job row was not seen just
//!   before is quarantined.
//! - A layout without NNodes/AllocNodes or AllocCPUS/NCPUS (older tools record such) takes the
//!   node and CPU counts from AllocTRES (`node=`, `cpu=`); a run never allocated has 0 CPUs and
//!   its requested nodes (ReqTRES `node=`), as the JSON readers read it.

use std::io::BufRead;

use crate::model::{ClusterName, JobKey, JobRun, StepUsage, Tres};

use super::fields::{Field, FIELD_COUNT};
use super::values::{self as v, TimeZone, TresKind, ValueError};

/// Runs kept for reuse at most: a few batches' worth.
const MAX_SPARE: usize = 4096;

/// The most lines one record may span before it is given up as malformed.
const MAX_JOINED_LINES: usize = 64;

/// A row that could not be read, kept with its text and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// 1-based line number of the row's first line in the stream.
    pub line: u64,
    pub raw: String,
    pub reason: String,
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Job(Box<JobRun>),
    Quarantine(Quarantined),
}

/// Which column holds which field.
#[derive(Debug, Clone)]
pub struct Layout {
    idx: [Option<usize>; FIELD_COUNT],
    ncols: usize,
    /// The first and the last column's names, for the reasons a record is quarantined with.
    ends: [String; 2],
    /// The first column may hold a newline: a record's first line may have no delimiter.
    first_breaks: bool,
    /// The last column may hold a newline: lines without a delimiter after a complete record
    /// are its own.
    runs_on: bool,
}

/// Whether a sacct column may hold a newline: free text a user or an admin typed (a job name, a
/// submit line, a path, a comment, a label). The others (ids, times, states, counts, TRES, node
/// lists, names Slurm checks) hold none, and neither, for this reader, does a column it does not
/// know: a line it cannot place is quarantined, never guessed into a record.
fn may_hold_newline(name: &str) -> bool {
    const TEXT: [&str; 15] = [
        "JobName",
        "SubmitLine",
        "WorkDir",
        "Comment",
        "AdminComment",
        "SystemComment",
        "Extra",
        "Constraints",
        "Container",
        "WCKey",
        "Reservation",
        "McsLabel",
        "StdOut",
        "StdErr",
        "StdIn",
    ];
    TEXT.iter().any(|t| t.eq_ignore_ascii_case(name.trim()))
}

/// Errors that stop the whole stream (as opposed to one row).
#[derive(Debug, thiserror::Error)]
pub enum ParsableError {
    #[error("this is `{0}` output, not `sacct --parsable2` job records; nothing was imported. Import sacct output (sacct --parsable2 with JobIDRaw in --format)")]
    OtherCommand(&'static str),
    #[error("the first line is a record, not a header (none of its values is a sacct column; it starts {0:?}): the file was recorded with --noheader. Give its columns with --columns, sacct's --format list in order (e.g. --columns JobID,JobIDRaw,Cluster,JobName,State,Submit,Start,End,ElapsedRaw,AllocTRES)")]
    NoHeaderLine(String),
    #[error("the header's delimiter is {0:?}, more than one character; only a one-byte delimiter is read. Record again with a one-character --delimiter (0x1F, which no job name holds, is safest)")]
    MultiByteDelimiter(String),
    #[error("sacct output has no {0} column: it cannot be keyed; request it in --format")]
    MissingColumn(&'static str),
    #[error("sacct output is empty: expected a header line")]
    NoHeader,
    #[error("the first line has no `|` or 0x1F delimiter, so this is not `sacct --parsable2` output (sacct's default table, YAML, or another command's output?); it starts {0:?}. Record sacct with --parsable2, or import a `sacct --json` document")]
    NotParsable(String),
    #[error("reading sacct output: {0}")]
    Io(#[from] std::io::Error),
}

/// The delimiter of a header line that uses neither 0x1F nor `|` (`sacct --delimiter=';'`): the
/// character after its first column name. A delimiter of several characters is refused by name.
fn header_delimiter(header: &str) -> Result<u8, ParsableError> {
    let not_parsable = || ParsableError::NotParsable(header.chars().take(40).collect());
    let end = header.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).ok_or_else(not_parsable)?;
    if Field::from_name(&header[..end]).is_none() {
        return Err(not_parsable());
    }
    let rest = &header[end..];
    let d = rest.chars().next().filter(|c| c.is_ascii() && !c.is_whitespace()).ok_or_else(not_parsable)?;
    let next = rest[d.len_utf8()..].chars().next();
    if next.is_some_and(|n| !(n.is_ascii_alphanumeric() || n == '_')) {
        let run: String = rest.chars().take_while(|c| !(c.is_ascii_alphanumeric() || *c == '_')).collect();
        return Err(ParsableError::MultiByteDelimiter(run));
    }
    Ok(d as u8)
}

/// The Slurm command whose `-P`/`--parsable2` output starts with these columns, when it is not
/// sacct's (recorded on the testbed: `tests/fixtures/testbed/`).
fn other_command(names: &[&str]) -> Option<&'static str> {
    let starts = |cols: &[&str]| names.len() >= cols.len() && names.iter().zip(cols).all(|(a, b)| a == b);
    Some(match () {
        _ if starts(&["JOBID", "NAME", "USER"]) || starts(&["JOBID", "PARTITION"]) => "squeue",
        _ if starts(&["Type", "Name", "ID"]) => "sacctmgr show tres",
        _ if starts(&["Cluster", "ControlHost"]) => "sacctmgr show cluster",
        _ if starts(&["Cluster", "Account", "User", "Partition"]) => "sacctmgr show association",
        _ if starts(&["Account", "Descr", "Org"]) => "sacctmgr show account",
        _ if starts(&["User", "Def Acct"]) => "sacctmgr show user",
        _ if starts(&["Name", "Priority", "GraceTime"]) => "sacctmgr show qos",
        _ if starts(&["WCKey", "Cluster", "User"]) => "sacctmgr show wckey",
        _ if starts(&["Account", "User", "RawShares"]) => "sshare",
        _ => return None,
    })
}

impl Layout {
    /// From column names, as in a header line or a `--format` list. Unknown names are skipped.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, ParsableError> {
        let mut idx = [None; FIELD_COUNT];
        for (i, n) in names.iter().enumerate() {
            if let Some(f) = Field::from_name(n.as_ref().trim()) {
                idx[f.index()].get_or_insert(i);
            }
        }
        // Without JobIDRaw, a JobID keys the runs it tells (see the module doc).
        let id = if idx[Field::JobIDRaw.index()].is_none() && idx[Field::JobID.index()].is_some() {
            Field::JobID
        } else {
            Field::JobIDRaw
        };
        for required in [id, Field::State, Field::Submit] {
            if idx[required.index()].is_none() {
                return Err(ParsableError::MissingColumn(required.name()));
            }
        }
        let name = |n: Option<&S>| n.map_or("", |n| n.as_ref().trim()).to_string();
        let ends = [name(names.first()), name(names.last())];
        Ok(Self {
            idx,
            ncols: names.len(),
            first_breaks: may_hold_newline(&ends[0]),
            runs_on: names.len() > 1 && may_hold_newline(&ends[1]),
            ends,
        })
    }

    pub fn from_fields(fields: &[Field]) -> Result<Self, ParsableError> {
        Self::from_names(&fields.iter().map(|f| f.name()).collect::<Vec<_>>())
    }

    pub fn columns(&self) -> usize {
        self.ncols
    }
}

/// How to read a stream.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The field delimiter: `|` for plain `--parsable2`, 0x1F for slurm-ledger's own calls.
    pub delimiter: u8,
    /// `None`: the first line is a header. `Some`: the columns, for `--noheader` output.
    pub layout: Option<Layout>,
    /// The zone sacct printed local times in.
    pub tz: TimeZone,
    /// Cluster for rows whose Cluster column is absent or empty.
    pub default_cluster: ClusterName,
}

/// Streaming reader; see the module doc.
pub struct SacctReader<R> {
    input: R,
    opts: ReadOptions,
    /// Shared so that taking it for a record is a reference count, not a copy.
    layout: Option<std::sync::Arc<Layout>>,
    line_no: u64,
    /// The raw bytes of the line being read, and the current record as text: both reused, so
    /// a stream of millions of rows allocates per row only what the parsed run keeps.
    buf: Vec<u8>,
    rec: String,
    /// The number of a line read ahead, to be processed next; its text is `ahead`.
    held: Option<u64>,
    /// The line read ahead (when `held`); otherwise a spare buffer. Swapped, never copied.
    ahead: String,
    /// The first line of delimiter-less lines that may begin the next record as well as end the
    /// one before (see [`Layout::first_breaks`]): the next record is quarantined too.
    suspect: Option<u64>,
    /// The job run being built, with its row's own CPU times as fallback when it has no steps.
    current: Option<(Box<JobRun>, RowTotals)>,
    /// Items ready to hand out.
    out: std::collections::VecDeque<Item>,
    done: bool,
    /// Runs given back by the consumer, whose allocations the next job rows reuse. Boxed
    /// because `Item::Job` carries a box: recycling keeps the box itself.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<JobRun>>,
    /// The current record's fields as byte ranges, valid when `split` is set.
    ranges: Vec<(usize, usize)>,
    split: bool,
}

impl<R: BufRead> SacctReader<R> {
    pub fn new(input: R, opts: ReadOptions) -> Self {
        let layout = opts.layout.clone().map(std::sync::Arc::new);
        Self {
            input,
            opts,
            layout,
            line_no: 0,
            buf: Vec::with_capacity(4096),
            rec: String::with_capacity(4096),
            held: None,
            ahead: String::with_capacity(4096),
            suspect: None,
            current: None,
            out: Default::default(),
            done: false,
            ranges: Vec::with_capacity(64),
            split: false,
            spare: Vec::new(),
        }
    }

    /// Gives back a run this reader yielded and the consumer is done with: the next job rows
    /// reuse its allocations (a collect reads millions of runs; this keeps the allocator idle).
    pub fn recycle(&mut self, job: Box<JobRun>) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(job);
        }
    }

    /// Reads one physical line (without its `\n`) into `into`, lossily decoded: invalid UTF-8
    /// becomes U+FFFD, so a job name in Latin-1 still bills, and garbage in a numeric field still
    /// quarantines. Returns its 1-based line number.
    fn read_line(&mut self, into: &mut String) -> Result<Option<u64>, ParsableError> {
        if let Some(n) = self.held.take() {
            std::mem::swap(into, &mut self.ahead);
            return Ok(Some(n));
        }
        self.buf.clear();
        let Some(newline) = self.read_until_newline()? else {
            return Ok(None);
        };
        self.line_no += 1;
        if newline && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        // The bytes become the text without a copy; `into`'s old allocation is the next buffer.
        let bytes = std::mem::replace(&mut self.buf, std::mem::take(into).into_bytes());
        match String::from_utf8(bytes) {
            Ok(text) => *into = text,
            Err(e) => {
                let bytes = e.into_bytes();
                *into = String::from_utf8_lossy(&bytes).into_owned();
                self.buf = bytes;
            }
        }
        Ok(Some(self.line_no))
    }

    /// Appends the input up to the next `\n` (not included) to `self.buf`, searching the
    /// reader's own buffer. Whether a `\n` ended the line; `None` at the end of the stream
    /// with nothing read.
    fn read_until_newline(&mut self) -> Result<Option<bool>, ParsableError> {
        let mut any = false;
        loop {
            let avail = match self.input.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if avail.is_empty() {
                return Ok(any.then_some(false));
            }
            any = true;
            match memchr::memchr(b'\n', avail) {
                Some(i) => {
                    self.buf.extend_from_slice(&avail[..i]);
                    self.input.consume(i + 1);
                    return Ok(Some(true));
                }
                None => {
                    let n = avail.len();
                    self.buf.extend_from_slice(avail);
                    self.input.consume(n);
                }
            }
        }
    }

    fn count_fields(&self, s: &str) -> usize {
        memchr::memchr_iter(self.opts.delimiter, s.as_bytes()).count() + 1
    }

    /// Splits `rec` into `self.ranges`, returning the field count; `self.split` says the
    /// ranges are those of the current record.
    fn split_record(&mut self, rec: &str) -> usize {
        split_fields(rec.as_bytes(), self.opts.delimiter, &mut self.ranges);
        self.split = true;
        self.ranges.len()
    }

    /// Assembles the next record into `self.rec`: one line, or several joined at embedded
    /// newlines (see the module doc). Returns the line number of its first line.
    fn next_record(&mut self, layout: &Layout) -> Result<Option<u64>, ParsableError> {
        let mut rec = std::mem::take(&mut self.rec);
        let result = self.assemble(&mut rec, layout);
        self.rec = rec;
        result
    }

    fn assemble(&mut self, rec: &mut String, layout: &Layout) -> Result<Option<u64>, ParsableError> {
        let ncols = layout.ncols;
        'record: loop {
            let suspect = self.suspect.take();
            let line_no = loop {
                let Some(line_no) = self.read_line(rec)? else { return Ok(None) };
                if !rec.is_empty() {
                    break line_no;
                }
            };
            let n = self.split_record(rec);
            let mut lines = 1;
            if n == 1 && ncols > 1 && !layout.first_breaks {
                // No record starts without a delimiter here, and none was there to continue.
                let run = self.run_on(rec, &mut lines)?;
                let first = &layout.ends[0];
                let last = &layout.ends[1];
                let cause = if layout.runs_on {
                    format!(
                        "they continue no record either: there is no row before them, or it ends with an empty {last} \
                         (which a value does not continue on the next line), or it ran past {MAX_JOINED_LINES} lines"
                    )
                } else {
                    format!("they continue no record either (the last column, {last}, holds no newline)")
                };
                self.out.push_back(Item::Quarantine(Quarantined {
                    line: line_no,
                    raw: rec.clone(),
                    reason: format!(
                        "{} line(s) without any delimiter {:?} (a record has {ncols} fields) belong to no record: a \
                         record cannot start with one (its first column, {first}, holds no newline), and {cause}",
                        run.lines + 1,
                        self.opts.delimiter as char
                    ),
                }));
                continue;
            }
            if n < ncols {
                // Too few fields: join following lines while the count stays within the header's.
                self.split = false;
                let mut count = n;
                let mut next = std::mem::take(&mut self.ahead);
                loop {
                    let Some(next_no) = self.read_line(&mut next)? else {
                        self.ahead = next;
                        self.quarantine_short(line_no, rec.clone(), count, ncols, "the stream ended");
                        return Ok(None);
                    };
                    let more = self.count_fields(&next) - 1;
                    if count + more > ncols || lines >= MAX_JOINED_LINES {
                        // The next line starts a record of its own: the accumulated one was truncated.
                        self.ahead = next;
                        self.held = Some(next_no);
                        self.quarantine_short(line_no, rec.clone(), count, ncols, "the next line starts a new row");
                        continue 'record;
                    }
                    rec.push('\n');
                    rec.push_str(&next);
                    count += more;
                    lines += 1;
                    if count == ncols {
                        break;
                    }
                }
                self.ahead = next;
            }
            // Every delimiter is there; the record is complete when the next line starts one.
            // A last column left empty on the record's line is not continued: no value it holds
            // begins with a newline (a SubmitLine starts with its command, a WorkDir with `/`),
            // and a step row's is empty; a line without a delimiter after it is stray.
            let run = if layout.runs_on && rec.as_bytes().last() != Some(&self.opts.delimiter) {
                self.run_on(rec, &mut lines)?
            } else {
                RunOn::default()
            };
            if run.lines > 0 {
                self.split = false;
            }
            let [first, last] = &layout.ends;
            let reason = if n > ncols {
                format!(
                    "row has {n} fields but the header has {ncols}: a field contains the delimiter {:?} \
                     (collect with slurm-ledger's own sacct call, which uses the 0x1F delimiter)",
                    self.opts.delimiter as char
                )
            } else if run.at_limit {
                format!(
                    "the last column, {last}, runs on over more than {MAX_JOINED_LINES} lines (lines without a \
                     delimiter after the record): the record is not stored, and the lines past the limit are \
                     quarantined after it"
                )
            } else if run.lines > 0 && layout.first_breaks {
                self.suspect = Some(run.first);
                format!(
                    "{}the reader cannot tell where this record ends: its last {} line(s) have no delimiter, and with \
                     {first} as the first column and {last} as the last, both of which may hold a newline, they may \
                     end this record's {last} or begin the next record's {first}; neither record is stored. Record \
                     the input with JobIDRaw or JobID as the first column, as slurm-ledger's own sacct call does",
                    suspect
                        .map_or(String::new(), |at| format!("line {at} may begin this record (see the row before); ")),
                    run.lines
                )
            } else if let Some(at) = suspect {
                format!(
                    "the line(s) without a delimiter just before this record (from line {at}) may begin its {first} \
                     as well as end the record before: the reader cannot tell where this record starts, so it is \
                     not stored (see the row before). Record the input with JobIDRaw or JobID as the first column, \
                     as slurm-ledger's own sacct call does"
                )
            } else {
                return Ok(Some(line_no));
            };
            self.out.push_back(Item::Quarantine(Quarantined { line: line_no, raw: rec.clone(), reason }));
        }
    }

    /// After a record with every delimiter (or a line that belongs to no record), appends the
    /// lines without any delimiter that follow: its last column's own lines (an empty line among
    /// them too), while the record spans at most [`MAX_JOINED_LINES`] lines. The first line with
    /// a delimiter, or the first past the limit, is held for the next record. This is the one
    /// line of lookahead every record pays for when its last column may run on: a read into the
    /// spare buffer and a search for the delimiter that stops at the first field.
    fn run_on(&mut self, rec: &mut String, lines: &mut usize) -> Result<RunOn, ParsableError> {
        debug_assert!(self.held.is_none(), "a held line is read before the record it starts");
        let mut next = std::mem::take(&mut self.ahead);
        let (mut run, mut blanks) = (RunOn::default(), 0);
        while let Some(no) = self.read_line(&mut next)? {
            if next.is_empty() {
                blanks += 1;
                continue;
            }
            let at_limit = *lines + blanks >= MAX_JOINED_LINES;
            if at_limit || memchr::memchr(self.opts.delimiter, next.as_bytes()).is_some() {
                self.held = Some(no);
                run.at_limit = at_limit;
                break;
            }
            if run.lines == 0 {
                run.first = no - blanks as u64;
            }
            for _ in 0..=blanks {
                rec.push('\n');
            }
            rec.push_str(&next);
            *lines += blanks + 1;
            run.lines += blanks + 1;
            blanks = 0;
        }
        self.ahead = next;
        Ok(run)
    }

    fn quarantine_short(&mut self, line: u64, raw: String, count: usize, ncols: usize, why: &str) {
        self.out.push_back(Item::Quarantine(Quarantined {
            line,
            raw,
            reason: format!("truncated row: {count} fields where the header has {ncols}, and {why}"),
        }));
    }

    /// Moves the finished current job, if any, to the output.
    fn flush_current(&mut self) {
        if let Some((mut job, row)) = self.current.take() {
            // Slurm's own job-row totals are exact (summed in microseconds); the step sum is
            // rounded per step. The job row is empty under -X and in old outputs: use the steps.
            if row.cpu_ms != [0, 0, 0] || job.step_count == 0 {
                [job.total_cpu_ms, job.user_cpu_ms, job.system_cpu_ms] = row.cpu_ms;
            }
            if job.energy_joules.is_none() {
                job.energy_joules = row.energy_joules;
            }
            self.out.push_back(Item::Job(job));
        }
    }

    fn fill(&mut self) -> Result<(), ParsableError> {
        let layout = match &self.layout {
            Some(l) => l.clone(),
            None => {
                let mut header = String::new();
                if self.read_line(&mut header)?.is_none() {
                    return Err(ParsableError::NoHeader);
                }
                // A recorded file tells its delimiter by its header.
                if !header.as_bytes().contains(&self.opts.delimiter) {
                    match [0x1f, b'|'].into_iter().find(|d| header.as_bytes().contains(d)) {
                        Some(d) => self.opts.delimiter = d,
                        None => self.opts.delimiter = header_delimiter(&header)?,
                    }
                }
                let names: Vec<&str> = header.split(self.opts.delimiter as char).map(str::trim).collect();
                if let Some(what) = other_command(&names) {
                    return Err(ParsableError::OtherCommand(what));
                }
                if names.iter().all(|n| Field::from_name(n).is_none()) {
                    return Err(ParsableError::NoHeaderLine(header.chars().take(40).collect()));
                }
                let l = std::sync::Arc::new(Layout::from_names(&names)?);
                self.layout = Some(l.clone());
                l
            }
        };
        while self.out.is_empty() {
            let Some(line_no) = self.next_record(&layout)? else {
                self.flush_current();
                self.done = true;
                return Ok(());
            };
            let rec = std::mem::take(&mut self.rec);
            if !self.split {
                self.split_record(&rec);
            }
            let row = Row { text: &rec, ranges: &self.ranges, layout: &layout };
            let result = match row.is_step() {
                Ok(false) => {
                    let job = row.to_job(&self.opts, self.spare.pop());
                    // A job row that cannot be read ends the run before it too: its steps must
                    // not fold into that run (a requeued job's runs share a JobIDRaw).
                    self.flush_current();
                    job.map(|(job, cpu)| self.current = Some((job, cpu)))
                }
                Ok(true) => row.add_step_to(&mut self.current),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.out.push_back(Item::Quarantine(Quarantined { line: line_no, raw: rec.clone(), reason: e.0 }));
            }
            self.rec = rec;
        }
        Ok(())
    }
}

impl<R: BufRead> Iterator for SacctReader<R> {
    type Item = Result<Item, ParsableError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.out.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.out.pop_front().map(Ok)
    }
}

/// Splits `text` at every `delim` into `ranges` as (start, end) byte offsets.
///
/// A row has some 40 fields of a few bytes each, where a call to a vectorised search per field
/// costs more than one pass over the whole row that turns each block of bytes into a bit mask
/// of its delimiters and walks the set bits: 16 bytes at a time with SSE2 (part of every x86-64
/// CPU), 8 at a time with plain word arithmetic elsewhere.
fn split_fields(text: &[u8], delim: u8, ranges: &mut Vec<(usize, usize)>) {
    ranges.clear();
    let mut start = 0;
    let mut push_mask = |base: usize, mut hits: u64, start: &mut usize| {
        while hits != 0 {
            let i = base + hits.trailing_zeros() as usize;
            ranges.push((*start, i));
            *start = i + 1;
            hits &= hits - 1;
        }
    };
    let mut base = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
        let chunks = text.chunks_exact(16);
        // SAFETY: SSE2 is part of the x86-64 baseline, so these instructions exist on every CPU
        // this code can run on; each load reads exactly the 16 bytes of its chunk.
        unsafe {
            let pattern = _mm_set1_epi8(delim as i8);
            for chunk in chunks {
                let block = _mm_loadu_si128(chunk.as_ptr().cast());
                let hits = _mm_movemask_epi8(_mm_cmpeq_epi8(block, pattern)) as u32 as u64;
                push_mask(base, hits, &mut start);
                base += 16;
            }
        }
    }
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let pattern = u64::from_le_bytes([delim; 8]);
    let mut chunks = text[base..].chunks_exact(8);
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ pattern;
        // Exactly the high bit of every zero byte of `w`, i.e. of every delimiter; one bit per
        // byte once shifted down and gathered.
        let bytes = !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7);
        let mut hits = 0u64;
        let mut b = bytes;
        while b != 0 {
            hits |= 1 << (b.trailing_zeros() / 8);
            b &= b - 1;
        }
        push_mask(base, hits, &mut start);
        base += 8;
    }
    for (k, &b) in chunks.remainder().iter().enumerate() {
        if b == delim {
            ranges.push((start, base + k));
            start = base + k + 1;
        }
    }
    ranges.push((start, text.len()));
}

/// What [`SacctReader::run_on`] appended.
#[derive(Debug, Default)]
struct RunOn {
    /// Lines appended, and the number of the first.
    lines: usize,
    first: u64,
    /// It stopped at a line without a delimiter, past the lines a record may span.
    at_limit: bool,
}

/// A job row's own totals: CPU times preferred over the step sum when present; energy used
/// when no step reports any.
#[derive(Debug, Clone, Copy)]
struct RowTotals {
    cpu_ms: [u64; 3],
    energy_joules: Option<u64>,
}

/// A step's TRES usage entries, kept on the stack up to a size no real row reaches.
#[derive(Default)]
struct StepTres<'a> {
    inline: [(&'a str, u64); 16],
    len: usize,
    more: Vec<(&'a str, u64)>,
}

impl<'a> StepTres<'a> {
    fn push(&mut self, name: &'a str, n: u64) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = (name, n);
                self.len += 1;
            }
            None => self.more.push((name, n)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'a str, u64)> + '_ {
        self.inline[..self.len].iter().chain(self.more.iter()).copied()
    }
}

/// One record split into fields.
struct Row<'a> {
    text: &'a str,
    ranges: &'a [(usize, usize)],
    layout: &'a Layout,
}

impl Row<'_> {
    fn get(&self, f: Field) -> &str {
        match self.layout.idx[f.index()] {
            Some(i) => {
                let (a, b) = self.ranges[i];
                &self.text[a..b]
            }
            None => "",
        }
    }

    fn has(&self, f: Field) -> bool {
        self.layout.idx[f.index()].is_some()
    }

    fn is_step(&self) -> Result<bool, ValueError> {
        let column = if self.has(Field::JobIDRaw) { Field::JobIDRaw } else { Field::JobID };
        let raw = self.get(column);
        if raw.is_empty() {
            return Err(ValueError(format!("{} is empty", column.name())));
        }
        Ok(memchr::memchr(b'.', raw.as_bytes()).is_some())
    }

    /// The row's JobIDRaw. A layout without that column takes it from the JobID where the JobID
    /// tells it: a plain job id (`123`, `123.batch`) is its own JobIDRaw; an array task or a het
    /// component has another, which only JobIDRaw tells (array task `7_3` can be JobIDRaw 7 or
    /// 19), so its row is refused with the fix.
    fn job_id_raw(&self) -> Result<u64, ValueError> {
        if self.has(Field::JobIDRaw) {
            return Ok(v::parse_job_id_raw(self.get(Field::JobIDRaw))?.0);
        }
        let text = self.get(Field::JobID);
        let id = v::parse_job_id_ref(text)?;
        let what = match (id.array_task, id.array_range, id.het_offset) {
            (Some(_), _, _) => "an array task",
            (_, true, _) => "a pending array record",
            (_, _, Some(_)) => "a het job component",
            _ => return Ok(id.base),
        };
        Err(ValueError(format!(
            "no JobIDRaw column: JobIDRaw is taken from JobID only where it is a plain job id, and JobID {text:?} is \
             {what}, whose JobIDRaw its JobID does not tell; this row is not stored. Record the input again with \
             JobIDRaw in --format"
        )))
    }

    /// Reads a step row and folds it into `current`, its job. The step is read whole before
    /// anything is folded, so a bad step is quarantined without touching the job.
    fn add_step_to(&self, current: &mut Option<(Box<JobRun>, RowTotals)>) -> Result<(), ValueError> {
        let raw = self.job_id_raw()?;
        let job = match current {
            Some((job, _)) if job.key.job_id_raw == raw => job,
            _ => {
                return Err(ValueError(format!(
                    "step of job {raw} does not follow its job row (the job row was missing or quarantined)"
                )))
            }
        };
        // MaxRSS is bytes: `--noconvert` prints `845746176` (the same number as the step's
        // TRESUsageInTot `mem=`), converted output carries its unit (`825768K`).
        let max_rss = self.get(Field::MaxRSS);
        let energy = self.get(Field::ConsumedEnergyRaw);
        let usage = StepUsage {
            total_cpu_ms: v::parse_duration_ms(self.get(Field::TotalCPU))?,
            user_cpu_ms: v::parse_duration_ms(self.get(Field::UserCPU))?,
            system_cpu_ms: v::parse_duration_ms(self.get(Field::SystemCPU))?,
            max_rss_bytes: if max_rss.is_empty() { None } else { Some(v::parse_bytes(max_rss, 'B')?) },
            tres_usage_in_tot: Default::default(),
            energy_joules: if energy.is_empty() { None } else { v::parse_opt_u64("ConsumedEnergyRaw", energy)? },
        };
        // The entries are read whole before any is folded; on the stack for any real row.
        let mut tres = StepTres::default();
        v::for_each_tres(self.get(Field::TRESUsageInTot), TresKind::Usage, |name, n| tres.push(name, n))?;
        job.add_step(&usage);
        job.tres_usage_in_tot.accumulate_sorted(tres.iter());
        Ok(())
    }

    /// Reads a job row into a new run, reusing the allocations of `spare` (a run already
    /// handed out and given back through [`SacctReader::recycle`]) when there is one.
    fn to_job(&self, opts: &ReadOptions, spare: Option<Box<JobRun>>) -> Result<(Box<JobRun>, RowTotals), ValueError> {
        let tz = &opts.tz;
        let raw = self.job_id_raw()?;
        let job_id_text = if self.has(Field::JobID) { self.get(Field::JobID) } else { self.get(Field::JobIDRaw) };
        let id = v::parse_job_id_ref(job_id_text)?;
        let cluster = match (self.get(Field::Cluster), &spare) {
            ("", _) => opts.default_cluster.clone(),
            (c, Some(old)) if old.key.cluster.as_str() == c => old.key.cluster.clone(),
            (c, _) => ClusterName::new(c).map_err(ValueError)?,
        };
        let submit = v::parse_time(self.get(Field::Submit), tz)?
            .ok_or_else(|| ValueError("Submit time is unknown: the run cannot be keyed".into()))?;
        let key = JobKey { cluster, job_id_raw: raw, submit };
        let mut job = match spare {
            Some(mut old) => {
                renew(&mut old, key);
                old
            }
            None => Box::new(JobRun::new(key, String::new())),
        };
        job.job_id.push_str(id.job);
        job.job_id_raw_from_job_id = !self.has(Field::JobIDRaw);
        job.array_job_id = (id.array_task.is_some() || id.array_range).then_some(id.base);
        job.array_task_id = id.array_task;
        job.het_job_id = id.het_offset.map(|_| id.base);
        job.het_job_offset = id.het_offset;
        job.name.push_str(self.get(Field::JobName));
        job.user.push_str(self.get(Field::User));
        job.uid = v::parse_opt_u64("UID", self.get(Field::UID))?.map(|u| u as u32);
        job.group.push_str(self.get(Field::Group));
        job.account.push_str(self.get(Field::Account));
        job.partition.push_str(self.get(Field::Partition));
        job.qos.push_str(self.get(Field::QOS));
        (job.state, job.cancelled_by) = v::parse_state(self.get(Field::State))?;
        job.exit_code = v::parse_exit_code(self.get(Field::ExitCode))?;
        job.derived_exit_code = v::parse_exit_code(self.get(Field::DerivedExitCode))?;
        job.eligible = v::parse_time(self.get(Field::Eligible), tz)?;
        job.start = v::parse_time(self.get(Field::Start), tz)?;
        job.end = v::parse_time(self.get(Field::End), tz)?;
        job.suspended_secs = v::parse_duration_ms(self.get(Field::Suspended))? / 1000;
        job.elapsed_secs = if self.has(Field::ElapsedRaw) {
            v::parse_opt_u64("ElapsedRaw", self.get(Field::ElapsedRaw))?.unwrap_or(0)
        } else if self.has(Field::Elapsed) {
            v::parse_duration_ms(self.get(Field::Elapsed))? / 1000
        } else {
            // A layout without either (older tools record such): derive what can be derived,
            // never bill a run that ran as 0.
            match (job.start, job.end) {
                (Some(_), Some(_)) if !self.has(Field::Suspended) => {
                    return Err(ValueError(
                        "the input has no ElapsedRaw, Elapsed or Suspended column: the run's billable time (End − Start − \
                         Suspended) cannot be known, so it is not stored; record it again with ElapsedRaw in --format"
                            .into(),
                    ))
                }
                (Some(start), Some(end)) if end < start => {
                    return Err(ValueError(format!(
                        "the input has no ElapsedRaw or Elapsed column and End ({end}) is before Start ({start}): the run's \
                         billable time cannot be known, so it is not stored"
                    )))
                }
                (Some(start), Some(end)) => {
                    job.elapsed_derived = true;
                    u64::try_from(end.0 - start.0).unwrap_or(0).saturating_sub(job.suspended_secs)
                }
                (Some(_), None) => {
                    return Err(ValueError(
                        "the input has no ElapsedRaw or Elapsed column and this run has no End: its billable time cannot be \
                         known, so it is not stored; record it again with ElapsedRaw in --format"
                            .into(),
                    ))
                }
                (None, _) => 0,
            }
        };
        job.timelimit_mins = if self.has(Field::TimelimitRaw) {
            v::parse_timelimit_mins(self.get(Field::TimelimitRaw))?
        } else {
            v::parse_timelimit_mins(self.get(Field::Timelimit))?
        };
        job.req_cpus = v::parse_count("ReqCPUS", self.get(Field::ReqCPUS))?;
        if let Some((bytes, per_cpu)) = v::parse_req_mem(self.get(Field::ReqMem))? {
            job.req_mem_bytes = Some(bytes);
            job.req_mem_per_cpu = per_cpu;
        }
        v::parse_tres_into(self.get(Field::ReqTRES), TresKind::Alloc, &mut job.req_tres)?;
        v::parse_tres_into(self.get(Field::AllocTRES), TresKind::Alloc, &mut job.alloc_tres)?;
        // A layout without the count columns (older tools record such): AllocTRES tells them. A
        // run never allocated has no CPUs (as the JSON readers read it) and its requested nodes.
        let tres_count = |tres: &Tres, column: Field, name: &str| {
            tres.get(name).map_or(Ok(0), |n| {
                u32::try_from(n)
                    .map_err(|_| ValueError(format!("{} {name}={n} is larger than any cluster has", column.name())))
            })
        };
        job.nnodes = match [Field::NNodes, Field::AllocNodes].into_iter().find(|&f| self.has(f)) {
            Some(nodes) => v::parse_count(nodes.name(), self.get(nodes))?,
            None if job.alloc_tres.get("node").is_some() => tres_count(&job.alloc_tres, Field::AllocTRES, "node")?,
            None => tres_count(&job.req_tres, Field::ReqTRES, "node")?,
        };
        job.alloc_cpus = match [Field::AllocCPUS, Field::NCPUS].into_iter().find(|&f| self.has(f)) {
            Some(cpus) => v::parse_count(cpus.name(), self.get(cpus))?,
            None => tres_count(&job.alloc_tres, Field::AllocTRES, "cpu")?,
        };
        match self.get(Field::NodeList) {
            "None assigned" | "None" => {}
            n => job.nodelist.push_str(n),
        }
        job.wckey.push_str(self.get(Field::WCKey));
        job.reservation.push_str(self.get(Field::Reservation));
        job.flags.push_str(self.get(Field::Flags));
        job.work_dir.push_str(self.get(Field::WorkDir));
        job.submit_line.push_str(self.get(Field::SubmitLine));
        job.db_index = v::parse_opt_u64("DBIndex", self.get(Field::DBIndex))?;
        let totals = RowTotals {
            cpu_ms: [
                v::parse_duration_ms(self.get(Field::TotalCPU))?,
                v::parse_duration_ms(self.get(Field::UserCPU))?,
                v::parse_duration_ms(self.get(Field::SystemCPU))?,
            ],
            energy_joules: v::parse_opt_u64("ConsumedEnergyRaw", self.get(Field::ConsumedEnergyRaw))?,
        };
        Ok((job, totals))
    }
}

/// Makes `job` a fresh run with key `key` (as [`JobRun::new`] with an empty id), keeping the
/// allocations of its text and TRES fields. A field not listed here is simply reset, never
/// carried over: the fresh run is built first.
fn renew(job: &mut JobRun, key: JobKey) {
    let mut fresh = JobRun::new(key, String::new());
    let texts = [
        (&mut fresh.job_id, &mut job.job_id),
        (&mut fresh.name, &mut job.name),
        (&mut fresh.user, &mut job.user),
        (&mut fresh.group, &mut job.group),
        (&mut fresh.account, &mut job.account),
        (&mut fresh.partition, &mut job.partition),
        (&mut fresh.qos, &mut job.qos),
        (&mut fresh.nodelist, &mut job.nodelist),
        (&mut fresh.wckey, &mut job.wckey),
        (&mut fresh.reservation, &mut job.reservation),
        (&mut fresh.flags, &mut job.flags),
        (&mut fresh.work_dir, &mut job.work_dir),
        (&mut fresh.submit_line, &mut job.submit_line),
    ];
    for (new, old) in texts {
        *new = std::mem::take(old);
        new.clear();
    }
    for (new, old) in [
        (&mut fresh.req_tres, &mut job.req_tres),
        (&mut fresh.alloc_tres, &mut job.alloc_tres),
        (&mut fresh.tres_usage_in_tot, &mut job.tres_usage_in_tot),
    ] {
        *new = std::mem::take(old);
        new.clear();
    }
    *job = fresh;
}

/// Reads a whole stream into items; for tests and small inputs.
pub fn read_all<R: BufRead>(input: R, opts: ReadOptions) -> Result<Vec<Item>, ParsableError> {
    SacctReader::new(input, opts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::values::TimeZone;

    fn opts() -> ReadOptions {
        ReadOptions {
            delimiter: b'|',
            layout: None,
            tz: TimeZone::Utc,
            default_cluster: ClusterName::new("fallback").unwrap(),
        }
    }

    /// Recycled runs must not carry anything of the run they were before.
    #[test]
    fn recycled_runs_read_exactly_as_fresh_ones() {
        for text in [
            include_str!("../../tests/fixtures/testbed/sacct-all-fields-duplicates.txt"),
            include_str!("../../tests/fixtures/testbed/sacct-steps-parsable2.txt"),
            include_str!("../../tests/fixtures/testbed/sacct-states-running.txt"),
            include_str!("../../tests/fixtures/testbed/own-sacct-poll.txt"),
        ] {
            let fresh = read_all(text.as_bytes(), opts()).unwrap();
            let mut reader = SacctReader::new(text.as_bytes(), opts());
            let mut recycled = Vec::new();
            // Each run goes back as soon as it is yielded: later job rows reuse it.
            while let Some(item) = reader.next() {
                let item = item.unwrap();
                if let Item::Job(job) = &item {
                    reader.recycle(job.clone());
                }
                recycled.push(item);
            }
            assert!(fresh.iter().filter(|i| matches!(i, Item::Job(_))).count() > 2);
            assert_eq!(recycled, fresh);
        }
    }

    /// Empty lines between records are skipped, also after a record whose last column may run
    /// on and at the end of the stream; only an empty line between two of a value's lines is
    /// kept (tests/it/parsers.rs).
    #[test]
    fn empty_lines_between_records_are_skipped() {
        let text = include_str!("../../tests/fixtures/testbed/own-sacct-poll.txt");
        let want = read_all(text.as_bytes(), opts()).unwrap();
        // Before a step after a run-on job row (15), before a job after a step row (15.batch is
        // after job 15; job 16 after 15.extern), after job 14's three lines, and at the end.
        let spaced = text
            .replace("\n14.batch", "\n\n\n14.batch")
            .replace("\n15.batch", "\n\n15.batch")
            .replace("\n16\u{1f}", "\n\n16\u{1f}")
            + "\n\n";
        assert_eq!(spaced.len(), text.len() + 6);
        assert_eq!(read_all(spaced.as_bytes(), opts()).unwrap(), want);
        // A stream that ends with a job row, its SubmitLine set, then empty lines.
        let cut = &text[..text.find("\n15.batch").unwrap() + 1];
        let items = read_all(format!("{cut}\n\n").as_bytes(), opts()).unwrap();
        let Some(Item::Job(j15)) = items.last() else { panic!("{items:?}") };
        assert!(j15.submit_line.starts_with("sbatch ") && j15.submit_line.ends_with("burn.sh 2 3"), "{j15:?}");
    }

    #[test]
    fn block_split_matches_a_plain_split() {
        let texts = [
            "",
            "|",
            "||",
            "a",
            "a|b",
            "|a|",
            "1234567|",
            "12345678|9",
            "1234567|12345678|||x",
            "ünï|cödé|€|",
            "no delimiter in a row longer than eight bytes",
            "0123456789abcdef|0123456789abcde|0123456789abcdef0|||||||||||||||||||||x",
            "|0123456789abcdef0123456789abcdef|",
        ];
        for delim in [b'|', 0x1f] {
            for t in texts {
                let t = t.replace('|', &(delim as char).to_string());
                let mut ranges = Vec::new();
                split_fields(t.as_bytes(), delim, &mut ranges);
                let got: Vec<&str> = ranges.iter().map(|&(a, b)| &t[a..b]).collect();
                let want: Vec<&str> = t.split(delim as char).collect();
                assert_eq!(got, want, "{t:?}");
            }
        }
    }
}
