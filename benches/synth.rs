//! A synthetic day of a very large cluster, for benchmarks and scale tests.
//!
//! [`SyntheticDay`] streams `sacct --parsable2` output exactly as slurm-ledger's own poll gets it:
//! the 0x1F delimiter, a header line, the columns of [`Field::ALL`] in order, each job row followed
//! by its step rows (`batch`, `extern`, `0`, `1`, …). Every row is a real row of the Slurm 22.05
//! testbed recording (`tests/fixtures/testbed/sacct-all-fields-duplicates.txt`) used as a template,
//! with the fields that make a day of a large cluster rewritten: unique increasing JobID/JobIDRaw
//! and DBIndex, Submit/Eligible/Start/End within 2026-11-22 with ElapsedRaw/Elapsed consistent,
//! User/UID/Group/Account/Partition from pools, AllocCPUS/NCPUS/ReqCPUS 1..128, memory, GPUs
//! (typed + untyped and untyped only), NodeList, Timelimit, and per-step CPU times, MaxRSS and
//! TRESUsageInTot whose sums are the job's totals.
//!
//! It is lazy and deterministic: output depends only on (jobs, steps_per_job, seed), each job is
//! drawn from its own seeded xorshift stream, and memory stays O(1) (one small block of rows at a
//! time) whatever the size of the day.

use std::io::{BufRead, Read};

use slurm_ledger::slurm::fields::{Field, FIELD_COUNT};
use slurm_ledger::slurm::source::DELIMITER;

/// The recorded real output the rows are built from.
const RECORDED: &str = include_str!("../tests/fixtures/testbed/sacct-all-fields-duplicates.txt");

/// 2026-11-22T00:00:00Z, the synthetic day.
pub const DAY_START: i64 = 1_795_305_600;
const DAY_SECS: i64 = 86_400;
const DATE_PREFIX: &[u8] = b"2026-11-22T";
/// The first synthetic JobIDRaw; job i gets `FIRST_JOB_ID + i`.
pub const FIRST_JOB_ID: u64 = 30_000_001;
/// The first synthetic DBIndex.
const FIRST_DB_INDEX: u64 = 90_000_001;
/// The block the reader refills at a time (a few jobs; never the day).
const BLOCK: usize = 64 * 1024;

const USERS: u64 = 3_000;
const ACCOUNTS: u64 = 400;

/// Every Slurm account a synthetic day can bill (`acct000` …), as its rows write them.
pub fn account_names() -> Vec<String> {
    (0..ACCOUNTS)
        .map(|a| {
            let mut out = b"acct".to_vec();
            push_pad(&mut out, a, 3);
            String::from_utf8(out).expect("ascii")
        })
        .collect()
}
const NODES: u64 = 4_000;
const CPU_PARTITIONS: [&str; 8] = ["compute", "compute", "compute", "compute", "long", "short", "bigmem", "debug"];
const GPU_PARTITIONS: [&str; 2] = ["gpu", "gpu-a100"];
const GPU_TYPES: [&str; 3] = ["a100", "h100", "l40s"];

/// One recorded row, split into the requested fields.
#[derive(Debug, Clone)]
struct RowTemplate {
    f: Vec<Box<[u8]>>,
}

impl RowTemplate {
    fn get(&self, f: Field) -> &[u8] {
        &self.f[f.index()]
    }
}

/// A recorded job row with its own recorded steps.
#[derive(Debug, Clone)]
struct JobTemplate {
    job: RowTemplate,
    batch: Option<RowTemplate>,
    ext: Option<RowTemplate>,
    numbered: Vec<RowTemplate>,
}

#[derive(Debug)]
struct Templates {
    jobs: Vec<JobTemplate>,
    batch: Vec<RowTemplate>,
    ext: Vec<RowTemplate>,
    numbered: Vec<RowTemplate>,
}

fn is_timestamp(v: &[u8]) -> bool {
    v.len() == 19 && v[10] == b'T'
}

impl Templates {
    /// Parses the recorded rows by header name; rows whose field count is off (a `|` inside a
    /// job name under the recording's `|` delimiter) are not used.
    fn recorded() -> Self {
        let mut lines = RECORDED.lines();
        let header: Vec<&str> = lines.next().expect("recording has a header").split('|').collect();
        let col: Vec<Option<usize>> =
            Field::ALL.iter().map(|f| header.iter().position(|h| h.eq_ignore_ascii_case(f.name()))).collect();
        let mut all: Vec<JobTemplate> = Vec::new();
        for line in lines {
            let vals: Vec<&str> = line.split('|').collect();
            if vals.len() != header.len() {
                continue;
            }
            let row = RowTemplate {
                f: col.iter().map(|c| c.map_or(&b""[..], |i| vals[i].as_bytes()).to_vec().into_boxed_slice()).collect(),
            };
            let raw = std::str::from_utf8(row.get(Field::JobIDRaw)).unwrap_or("");
            match raw.split_once('.') {
                None => all.push(JobTemplate { job: row, batch: None, ext: None, numbered: Vec::new() }),
                Some((id, step)) => {
                    let Some(jt) = all.last_mut().filter(|j| j.job.get(Field::JobIDRaw) == id.as_bytes()) else {
                        continue;
                    };
                    match step {
                        "batch" => jt.batch = Some(row),
                        "extern" => jt.ext = Some(row),
                        s if s.bytes().all(|b| b.is_ascii_digit()) => jt.numbered.push(row),
                        _ => {}
                    }
                }
            }
        }
        let batch: Vec<RowTemplate> = all.iter().filter_map(|j| j.batch.clone()).collect();
        let ext: Vec<RowTemplate> = all.iter().filter_map(|j| j.ext.clone()).collect();
        let numbered: Vec<RowTemplate> = all.iter().flat_map(|j| j.numbered.iter().cloned()).collect();
        // A template job ran (it has a start time) and has its batch and extern steps.
        let jobs: Vec<JobTemplate> = all
            .into_iter()
            .filter(|j| is_timestamp(j.job.get(Field::Start)) && j.batch.is_some() && j.ext.is_some())
            .collect();
        assert!(!jobs.is_empty() && !numbered.is_empty(), "the recording has usable job and step rows");
        Self { jobs, batch, ext, numbered }
    }
}

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// An independent stream per (seed, job): splitmix64 of both.
    fn for_job(seed: u64, i: u64) -> Self {
        let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// What one synthetic job is, before it is written.
struct Plan {
    id: u64,
    submit: i64,
    start: i64,
    end: i64,
    cpus: u64,
    nnodes: u64,
    node0: u64,
    mem_mb: u64,
    gpus: u64,
    gpu_type: Option<&'static str>,
    user: u64,
    partition: &'static str,
    timelimit_min: u64,
}

/// Per-step usage; the job row carries their sums.
#[derive(Clone, Copy, Default)]
struct StepCpu {
    total_ms: u64,
    user_ms: u64,
    sys_ms: u64,
    rss_kb: u64,
    vmem_kb: u64,
    disk: u64,
}

/// A streaming synthetic `sacct --parsable2 --delimiter=0x1F` output; see the module doc.
pub struct SyntheticDay {
    jobs: u64,
    steps_per_job: u32,
    seed: u64,
    templates: Templates,
    next_job: u64,
    header_done: bool,
    buf: Vec<u8>,
    pos: usize,
    steps: Vec<StepCpu>,
}

impl SyntheticDay {
    /// A day of `jobs` jobs with `steps_per_job` steps each (`batch`, `extern`, then `0`, `1`, …).
    pub fn new(jobs: u64, steps_per_job: u32, seed: u64) -> Self {
        Self {
            jobs,
            steps_per_job,
            seed,
            templates: Templates::recorded(),
            next_job: 0,
            header_done: false,
            buf: Vec::with_capacity(BLOCK + 16 * 1024),
            pos: 0,
            steps: Vec::with_capacity(steps_per_job as usize),
        }
    }

    /// Data rows the whole day holds (the header line not counted): jobs × (1 + steps).
    pub fn expected_rows(&self) -> u64 {
        self.jobs * (1 + self.steps_per_job as u64)
    }

    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    pub fn steps_per_job(&self) -> u32 {
        self.steps_per_job
    }

    /// The header line's column names: [`Field::ALL`], as slurm-ledger's `--format` requests.
    pub fn header() -> String {
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        names.join(&(DELIMITER as char).to_string())
    }

    /// Refills the block: the header first, then whole jobs until the block is full.
    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        if !self.header_done {
            self.header_done = true;
            self.buf.extend_from_slice(Self::header().as_bytes());
            self.buf.push(b'\n');
        }
        while self.buf.len() < BLOCK && self.next_job < self.jobs {
            let i = self.next_job;
            self.next_job += 1;
            self.write_job(i);
        }
    }

    fn plan(&self, i: u64, rng: &mut Rng) -> Plan {
        // Submit times rise with the job id, spread over the day.
        let slot = (i as u128 * (DAY_SECS as u128 - 60) / self.jobs.max(1) as u128) as i64;
        let submit = slot;
        let wait = match rng.below(10) {
            0..=5 => rng.below(30) as i64,
            6..=8 => rng.range(30, 900) as i64,
            _ => rng.range(900, 7200) as i64,
        };
        let start = (submit + wait).min(DAY_SECS - 1);
        let run = match rng.below(20) {
            0..=5 => rng.below(300),
            6..=13 => rng.range(300, 3600),
            14..=18 => rng.range(3600, 4 * 3600),
            _ => rng.range(4 * 3600, 12 * 3600),
        } as i64;
        let end = (start + run).min(DAY_SECS - 1);
        let gpu = rng.below(10) == 0;
        let cpus = match rng.below(20) {
            0..=4 => 1,
            5..=7 => 2,
            8..=9 => 4,
            10..=11 => 8,
            12 => 16,
            13 => 32,
            14 => 64,
            15 => 128,
            _ => rng.range(1, 128),
        };
        let nnodes = cpus.div_ceil(64);
        let gpus = if gpu { rng.range(1, 8) } else { 0 };
        let gpu_type = (gpu && rng.below(10) < 7).then(|| GPU_TYPES[rng.below(GPU_TYPES.len() as u64) as usize]);
        let mem_mb = cpus * [512, 1024, 2048, 4096, 8192][rng.below(5) as usize];
        // A skewed user pool: a few users submit most jobs.
        let user = rng.below(USERS) * rng.below(USERS) / USERS;
        let partition = if gpu {
            GPU_PARTITIONS[rng.below(GPU_PARTITIONS.len() as u64) as usize]
        } else {
            CPU_PARTITIONS[rng.below(CPU_PARTITIONS.len() as u64) as usize]
        };
        let need = ((end - start) as u64).div_ceil(60).max(1);
        let timelimit_min = *[30u64, 60, 120, 240, 480, 720, 1440, 2880].iter().find(|&&t| t >= need).unwrap_or(&2880);
        let timelimit_min = timelimit_min.max(need);
        Plan {
            id: FIRST_JOB_ID + i,
            submit,
            start,
            end,
            cpus,
            nnodes,
            node0: rng.below(NODES - 2),
            mem_mb,
            gpus,
            gpu_type,
            user,
            partition,
            timelimit_min,
        }
    }

    fn write_job(&mut self, i: u64) {
        let mut rng = Rng::for_job(self.seed, i);
        let p = self.plan(i, &mut rng);
        let t = &self.templates;
        let jt = &t.jobs[rng.below(t.jobs.len() as u64) as usize];
        let n = self.steps_per_job as usize;

        // CPU use: the job's CPU-seconds at some efficiency, split over the steps.
        let elapsed = (p.end - p.start) as u64;
        let util_pct = rng.range(5, 100);
        let total_ms = elapsed * 1000 * p.cpus * util_pct / 100;
        self.steps.clear();
        let numbered = n.saturating_sub(2) as u64;
        for k in 0..n {
            let ms = match k {
                1 => rng.below(5),                          // extern: a few ms
                0 if numbered == 0 => total_ms,             // batch does the work
                0 => total_ms / 20,                         // batch script around srun
                _ => (total_ms - total_ms / 20) / numbered, // srun steps share the rest
            };
            let ms = representable_cpu_ms(ms);
            let user_ms = representable_cpu_ms(ms / 10 * 9);
            let sys_ms = representable_cpu_ms(ms - user_ms);
            let rss_kb = if k == 1 { rng.range(1500, 2500) } else { rng.range(4_000, (p.mem_mb * 1024).max(4_001)) };
            self.steps.push(StepCpu {
                total_ms: ms,
                user_ms,
                sys_ms,
                rss_kb,
                vmem_kb: rss_kb + rng.range(1000, 200_000),
                disk: rng.range(5_000, 50_000_000),
            });
        }
        let sum = self.steps.iter().fold(StepCpu::default(), |a, s| StepCpu {
            total_ms: a.total_ms + s.total_ms,
            user_ms: a.user_ms + s.user_ms,
            sys_ms: a.sys_ms + s.sys_ms,
            ..a
        });
        let job_cpu = if n == 0 {
            StepCpu {
                total_ms: representable_cpu_ms(total_ms),
                user_ms: representable_cpu_ms(total_ms / 10 * 9),
                ..sum
            }
        } else {
            sum
        };

        let out = &mut self.buf;
        write_row(out, &jt.job, &p, RowKind::Job, &job_cpu);
        for k in 0..n {
            let (tpl, kind) = match k {
                0 => (jt.batch.as_ref().unwrap_or(&t.batch[0]), RowKind::Batch),
                1 => (jt.ext.as_ref().unwrap_or(&t.ext[0]), RowKind::Extern),
                s => {
                    let s = s - 2;
                    let pool = if jt.numbered.is_empty() { &t.numbered } else { &jt.numbered };
                    (&pool[s % pool.len()], RowKind::Numbered(s as u64))
                }
            };
            write_row(out, tpl, &p, kind, &self.steps[k]);
        }
    }
}

/// sacct prints CPU times of an hour or more without milliseconds: keep only what it can print.
fn representable_cpu_ms(ms: u64) -> u64 {
    if ms >= 3_600_000 {
        ms / 1000 * 1000
    } else {
        ms
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Job,
    Batch,
    Extern,
    Numbered(u64),
}

fn write_row(out: &mut Vec<u8>, tpl: &RowTemplate, p: &Plan, kind: RowKind, cpu: &StepCpu) {
    let is_job = kind == RowKind::Job;
    // Steps: sacct shows a step's own start as its Submit and Eligible.
    let (start, end) = match kind {
        RowKind::Job | RowKind::Batch | RowKind::Extern => (p.start, p.end),
        RowKind::Numbered(s) => ((p.start + 1 + s as i64).min(p.end), p.end),
    };
    let step_nodes = if kind == RowKind::Batch { 1 } else { p.nnodes };
    for (idx, &f) in Field::ALL.iter().enumerate() {
        if idx > 0 {
            out.push(DELIMITER);
        }
        let v = tpl.get(f);
        match f {
            Field::JobID | Field::JobIDRaw => {
                push_u64(out, p.id);
                match kind {
                    RowKind::Job => {}
                    RowKind::Batch => out.extend_from_slice(b".batch"),
                    RowKind::Extern => out.extend_from_slice(b".extern"),
                    RowKind::Numbered(s) => {
                        out.push(b'.');
                        push_u64(out, s);
                    }
                }
            }
            Field::User if !v.is_empty() => {
                out.extend_from_slice(b"user");
                push_pad(out, p.user, 4);
            }
            Field::UID if !v.is_empty() => push_u64(out, 20_000 + p.user),
            Field::Group if !v.is_empty() => {
                out.extend_from_slice(b"grp");
                push_pad(out, p.user % 250, 3);
            }
            Field::Account if !v.is_empty() => {
                out.extend_from_slice(b"acct");
                push_pad(out, p.user * 7 % ACCOUNTS, 3);
            }
            Field::Partition if !v.is_empty() => out.extend_from_slice(p.partition.as_bytes()),
            Field::Submit => push_time(out, if is_job { p.submit } else { start }),
            Field::Eligible if !v.is_empty() => push_time(out, if is_job { p.submit } else { start }),
            Field::Start => push_time(out, start),
            Field::End => push_time(out, end),
            Field::ElapsedRaw if !v.is_empty() => push_u64(out, (end - start) as u64),
            Field::Elapsed if !v.is_empty() => push_hms(out, (end - start) as u64),
            Field::TimelimitRaw if !v.is_empty() => push_u64(out, p.timelimit_min),
            Field::Timelimit if !v.is_empty() => push_hms(out, p.timelimit_min * 60),
            Field::NNodes | Field::AllocNodes if !v.is_empty() => push_u64(out, step_nodes),
            Field::AllocCPUS | Field::NCPUS | Field::ReqCPUS if !v.is_empty() => push_u64(out, p.cpus),
            Field::ReqMem if !v.is_empty() => {
                push_u64(out, p.mem_mb);
                out.push(b'M');
            }
            Field::ReqTRES if !v.is_empty() => push_tres(out, p, true, is_job, false),
            Field::AllocTRES if !v.is_empty() => {
                let billing = v.starts_with(b"billing=");
                push_tres(out, p, billing, false, kind == RowKind::Batch);
            }
            Field::NodeList if !v.is_empty() => push_nodelist(out, p.node0, step_nodes),
            Field::TotalCPU => push_cpu(out, cpu.total_ms),
            Field::UserCPU => push_cpu(out, cpu.user_ms),
            Field::SystemCPU => push_cpu(out, cpu.sys_ms),
            Field::MaxRSS if !is_job => {
                push_u64(out, cpu.rss_kb);
                out.push(b'K');
            }
            Field::TRESUsageInTot if !is_job => {
                out.extend_from_slice(b"cpu=");
                push_hms(out, cpu.total_ms / 1000);
                out.extend_from_slice(b",energy=0,fs/disk=");
                push_u64(out, cpu.disk);
                out.extend_from_slice(b",mem=");
                push_u64(out, cpu.rss_kb);
                out.extend_from_slice(b"K,pages=0,vmem=");
                push_u64(out, cpu.vmem_kb);
                out.push(b'K');
            }
            Field::DBIndex if !v.is_empty() => push_u64(out, FIRST_DB_INDEX + (p.id - FIRST_JOB_ID)),
            Field::WorkDir if !v.is_empty() => {
                out.extend_from_slice(b"/home/user");
                push_pad(out, p.user, 4);
                out.extend_from_slice(b"/run");
            }
            _ => out.extend_from_slice(v),
        }
    }
    out.push(b'\n');
}

/// `billing=..,cpu=..,[gres/gpu:<type>=..,]gres/gpu=..,mem=..M,node=..`, sorted as sacct prints.
fn push_tres(out: &mut Vec<u8>, p: &Plan, billing: bool, request: bool, one_node: bool) {
    if billing {
        out.extend_from_slice(b"billing=");
        push_u64(out, p.cpus + 8 * p.gpus);
        out.push(b',');
    }
    out.extend_from_slice(b"cpu=");
    push_u64(out, p.cpus);
    if p.gpus > 0 {
        // A request names untyped GPUs; the allocation adds the typed entry beside the untyped one.
        if let (Some(ty), false) = (p.gpu_type, request) {
            out.extend_from_slice(b",gres/gpu:");
            out.extend_from_slice(ty.as_bytes());
            out.push(b'=');
            push_u64(out, p.gpus);
        }
        out.extend_from_slice(b",gres/gpu=");
        push_u64(out, p.gpus);
    }
    out.extend_from_slice(b",mem=");
    push_u64(out, p.mem_mb);
    out.extend_from_slice(b"M,node=");
    push_u64(out, if one_node { 1 } else { p.nnodes });
}

fn push_nodelist(out: &mut Vec<u8>, node0: u64, n: u64) {
    if n <= 1 {
        out.push(b'c');
        push_pad(out, node0, 4);
    } else {
        out.extend_from_slice(b"c[");
        push_pad(out, node0, 4);
        out.push(b'-');
        push_pad(out, node0 + n - 1, 4);
        out.push(b']');
    }
}

/// "00".."99", for writing two digits per division.
const DIGITS2: &[u8; 200] =
    b"0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while n >= 100 {
        let r = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[r..r + 2]);
    }
    if n >= 10 {
        let r = n as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&DIGITS2[r..r + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Zero-padded to at least `width` digits.
fn push_pad(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut m = n;
    while m > 0 || tmp.len() - i < width {
        i -= 1;
        tmp[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push2(out: &mut Vec<u8>, n: u64) {
    let r = (n % 100) as usize * 2;
    out.extend_from_slice(&DIGITS2[r..r + 2]);
}

/// `2026-11-22THH:MM:SS` for seconds into the day.
fn push_time(out: &mut Vec<u8>, secs: i64) {
    let s = secs.clamp(0, DAY_SECS - 1) as u64;
    out.extend_from_slice(DATE_PREFIX);
    push2(out, s / 3600);
    out.push(b':');
    push2(out, s / 60 % 60);
    out.push(b':');
    push2(out, s % 60);
}

/// `[D-]HH:MM:SS`, as sacct prints Elapsed, Timelimit and TRES cpu usage.
fn push_hms(out: &mut Vec<u8>, secs: u64) {
    let days = secs / 86_400;
    if days > 0 {
        push_u64(out, days);
        out.push(b'-');
    }
    push2(out, secs / 3600 % 24);
    out.push(b':');
    push2(out, secs / 60 % 60);
    out.push(b':');
    push2(out, secs % 60);
}

/// CPU times as sacct prints them: `MM:SS.mmm` under an hour, else `[D-]HH:MM:SS`.
fn push_cpu(out: &mut Vec<u8>, ms: u64) {
    if ms < 3_600_000 {
        let s = ms / 1000;
        push2(out, s / 60);
        out.push(b':');
        push2(out, s % 60);
        out.push(b'.');
        let r = ms % 1000;
        out.push(b'0' + (r / 100) as u8);
        push2(out, r % 100);
    } else {
        push_hms(out, ms / 1000);
    }
}

impl Read for SyntheticDay {
    fn read(&mut self, dst: &mut [u8]) -> std::io::Result<usize> {
        let src = self.fill_buf()?;
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for SyntheticDay {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            self.refill();
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

const _: () = assert!(FIELD_COUNT == Field::ALL.len());

#[cfg(test)]
mod tests {
    use super::*;
    use slurm_ledger::model::{ClusterName, UnixTime};
    use slurm_ledger::slurm::parsable::{Item, ReadOptions, SacctReader};
    use slurm_ledger::slurm::values::TimeZone;

    fn opts() -> ReadOptions {
        ReadOptions {
            delimiter: DELIMITER,
            layout: None,
            tz: TimeZone::Utc,
            default_cluster: ClusterName::new("synth").unwrap(),
        }
    }

    fn bytes(day: SyntheticDay) -> Vec<u8> {
        let mut v = Vec::new();
        std::io::BufReader::new(day).read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn header_is_the_requested_fields() {
        let out = bytes(SyntheticDay::new(2, 3, 1));
        let first = out.split(|&b| b == b'\n').next().unwrap();
        let names: Vec<&[u8]> = first.split(|&b| b == DELIMITER).collect();
        assert_eq!(names.len(), Field::ALL.len());
        for (n, f) in names.iter().zip(Field::ALL) {
            assert_eq!(*n, f.name().as_bytes());
        }
        // Every row has exactly the header's columns.
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            assert_eq!(line.iter().filter(|&&b| b == DELIMITER).count() + 1, Field::ALL.len());
        }
    }

    #[test]
    fn a_small_day_parses_cleanly() {
        let day = SyntheticDay::new(1_000, 3, 42);
        assert_eq!(day.expected_rows(), 4_000);
        let mut jobs = 0;
        let (mut typed_gpu, mut untyped_gpu) = (0, 0);
        let mut last_id = 0;
        for item in SacctReader::new(day, opts()) {
            match item.unwrap() {
                Item::Job(j) => {
                    jobs += 1;
                    assert_eq!(j.step_count, 3, "job {}", j.job_id);
                    assert!(j.key.job_id_raw > last_id, "ids increase");
                    last_id = j.key.job_id_raw;
                    let (s, e) = (j.start.unwrap().0, j.end.unwrap().0);
                    assert!(j.key.submit.0 >= DAY_START && e < DAY_START + DAY_SECS && j.key.submit.0 <= s && s <= e);
                    assert_eq!(j.elapsed_secs, (e - s) as u64);
                    assert!((1..=128).contains(&j.alloc_cpus));
                    assert_eq!(j.alloc_tres.get("cpu"), Some(j.alloc_cpus as u64));
                    assert!(j.total_cpu_ms <= j.elapsed_secs * 1000 * j.alloc_cpus as u64 + 10);
                    assert!(j.max_rss_bytes.is_some() && j.tres_usage_in_tot.get("mem").is_some());
                    if j.alloc_tres.gpus() > 0 {
                        let typed = j.alloc_tres.iter().any(|(k, _)| k.starts_with("gres/gpu:"));
                        if typed {
                            typed_gpu += 1
                        } else {
                            untyped_gpu += 1
                        }
                        assert_eq!(j.alloc_tres.gpus(), j.alloc_tres.get("gres/gpu").unwrap());
                    }
                }
                Item::Quarantine(q) => panic!("quarantined line {}: {} ({})", q.line, q.reason, q.raw),
            }
        }
        assert_eq!(jobs, 1_000);
        assert!(typed_gpu > 0 && untyped_gpu > 0, "typed {typed_gpu}, untyped {untyped_gpu}");
    }

    #[test]
    fn deterministic_by_seed() {
        let a = bytes(SyntheticDay::new(300, 3, 7));
        assert_eq!(a, bytes(SyntheticDay::new(300, 3, 7)));
        assert_ne!(a, bytes(SyntheticDay::new(300, 3, 8)));
        // Plain Read with a small buffer gives the same stream.
        let mut day = SyntheticDay::new(300, 3, 7);
        let mut b = Vec::new();
        let mut chunk = [0u8; 777];
        loop {
            let n = day.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            b.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(a, b);
    }

    #[test]
    fn other_step_counts() {
        for steps in [0u32, 1, 2, 5] {
            let day = SyntheticDay::new(50, steps, 3);
            let items: Vec<Item> = SacctReader::new(day, opts()).map(|i| i.unwrap()).collect();
            assert_eq!(items.len(), 50);
            for it in items {
                let Item::Job(j) = it else { panic!("quarantined: {it:?}") };
                assert_eq!(j.step_count, steps);
            }
        }
    }

    #[test]
    fn imports_into_a_ledger() {
        let mut ledger = slurm_ledger::ledger::Ledger::open_in_memory().unwrap();
        let input = std::io::BufReader::new(SyntheticDay::new(500, 3, 9));
        let r = slurm_ledger::collect::import_file(&mut ledger, input, opts(), "synth", UnixTime(DAY_START + DAY_SECS))
            .unwrap();
        assert_eq!((r.counts.runs_new, r.counts.quarantined), (500, 0));
        let input = std::io::BufReader::new(SyntheticDay::new(500, 3, 9));
        let r = slurm_ledger::collect::import_file(&mut ledger, input, opts(), "synth", UnixTime(DAY_START + DAY_SECS))
            .unwrap();
        assert_eq!((r.counts.runs_unchanged, r.counts.runs_new, r.counts.runs_updated), (500, 0, 0));
    }
}
