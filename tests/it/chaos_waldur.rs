//! Waldur month totals under faults and kills, over the live Slurm 22.05 testbed.
//!
//! Submits the chaos job mix ([`Mix`]: four users, three accounts, a failure, a cancel while
//! running, an array, a requeue) and meanwhile runs `slurm-ledger run` (collect + deliver) again
//! and again against [`FakeWaldur`] (a resource per testbed account) injecting the seeded random
//! faults of [`crate::chaos::fault_mix`] on reads and writes (5xx before/after the write, 429,
//! dropped connections before/after, timeouts after the write, slow answers; about one request
//! in three), SIGKILLing about half of the runs after 0–800 ms. Running jobs are counted
//! every second (`running_slice = "1s"`), so totals are raised while jobs run. Once every job is
//! final in Slurm, faults stop and clean passes run until nothing is left to send. Then:
//!
//! 1. The ledger's exact totals (TRES-seconds per account, UTC month, component, and per Slurm
//!    user), in the outbox, equal what its runs hold: AllocTRES cpu (mem in MiB) × ElapsedRaw,
//!    each second in the month it falls in, over every run in the ledger.
//! 2. Independently of the ledger, for the runs submitted here: `sacct`'s AllocCPUS × ElapsedRaw
//!    (checked equal to CPUTimeRAW) and AllocTRES mem × ElapsedRaw, from a separate call, per
//!    account and per account and user. The testbed's accounts are shared: its left-running seed
//!    job (bob, engineering, 4 CPUs, 1 GiB) and whatever other jobs ran in the first collect's
//!    window (`initial_lookback = "5m"`: e.g. a test that ran just before) are in the same
//!    accounts and month, so the expected total is, exactly, the `sacct` figure of the test's own
//!    runs plus the ledger's figure of every other run in the ledger (printed per account, with
//!    how much of it is the test's own). The outbox must equal it to the second.
//! 3. The fake's final values per resource (account), month, component and user equal both the
//!    ledger's and the independent totals converted with `unit_factor` (cpu 1.5 CPU-minutes per
//!    unit: one cent is 0.9 CPU-seconds, so a second too many or too few shows; mem 1024:
//!    GiB-minutes) and rounded half up to the cent, with carol under her Waldur username.
//! 4. Nothing is posted twice: no write set a value Waldur already held (the fake counts them),
//!    and a second `deliver` posts nothing. (A second `run` may rightly post: it collects the
//!    seed's still-running job again, whose totals grow.) The sender guards the first twice: a
//!    send whose outcome is unknown is looked up before it is resent, and each send reads
//!    Waldur's value before it sets one; only with both guards gone do same-value writes show.
//!
//! No run may be held or refused. The fake's "today" is the real date (the jobs run now), so the
//! current month is open; it refuses a past month from a non-staff token, so on the 1st of a
//! month, when the seed's job (time limit one day) may hold time of the month before, the token
//! is a staff one.
//!
//! Skips like `testbed` when SLURM_LEDGER_TESTBED != 1. `CHAOS_SEED=<u64>` replays a seed (the
//! fault draws, the kill decisions and delays; Slurm's own timing is never the same twice).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};
use slurm_ledger::meter::{billed_count, Basis};

use crate::chaos::{assert_no_problems, chaos_phase, clean_phase, Mix, Rng, Runner, SacctRun, RUN_LIMIT};
use crate::deliver_waldur::{OFFERING, TOKEN};
use crate::fakes::waldur::{FakeWaldur, FaultMix, WaldurConfig};

/// Every account on the testbed: a job under any of them finds its resource.
const ACCOUNTS: [&str; 5] = ["research-team", "engineering", "hpc_cust1", "hpc_proj1", "root"];
/// The components, as the config writes them: (TRES, unit_factor, the same in millionths).
const COMPONENTS: [(&str, &str, i128); 2] = [("cpu", "1.5", 1_500_000), ("mem", "1024", 1_024_000_000)];
/// Slurm users whose Waldur username differs.
const USERS: [(&str, &str); 1] = [("carol", "carol@example.org")];

/// (account, `YYYY-MM`, TRES) and (account, `YYYY-MM`, TRES, Slurm user) → TRES-seconds (mem:
/// MiB-seconds).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Totals {
    per: BTreeMap<(String, String, String), i64>,
    users: BTreeMap<(String, String, String, String), i64>,
}

impl Totals {
    /// A run's `count` of `tres` over `[start, start + secs)`, each second in its UTC month.
    fn add_run(&mut self, account: &str, user: &str, tres: &str, count: i64, start: i64, secs: i64) {
        for (month, s) in month_pieces(start, secs) {
            let k = (account.to_string(), month, tres.to_string());
            *self.per.entry(k.clone()).or_default() += count * s;
            *self.users.entry((k.0, k.1, k.2, user.to_string())).or_default() += count * s;
        }
    }

    fn plus(mut self, other: &Totals) -> Totals {
        for (k, v) in &other.per {
            *self.per.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.users {
            *self.users.entry(k.clone()).or_default() += v;
        }
        self
    }

    /// As Waldur should hold them: 2-decimal amounts, users by their Waldur username.
    fn amounts(&self) -> Amounts {
        let waldur_user = |u: &str| USERS.iter().find(|(s, _)| *s == u).map_or(u, |(_, w)| w).to_string();
        (
            self.per.iter().map(|(k, t)| (k.clone(), amount(*t, &k.2))).collect(),
            self.users
                .iter()
                .map(|((a, m, c, u), t)| ((a.clone(), m.clone(), c.clone(), waldur_user(u)), amount(*t, c)))
                .collect(),
        )
    }
}

/// What the fake holds: per (account, month, type) and per (account, month, type, username).
type Amounts = (BTreeMap<(String, String, String), String>, BTreeMap<(String, String, String, String), String>);

/// `[start, start + secs)` cut at UTC month boundaries: (`YYYY-MM`, seconds) per month.
fn month_pieces(start: i64, secs: i64) -> Vec<(String, i64)> {
    use jiff::{tz::TimeZone, Timestamp, ToSpan};
    let (mut a, end, mut out) = (start, start + secs, Vec::new());
    while a < end {
        let day = Timestamp::from_second(a).unwrap().to_zoned(TimeZone::UTC).date();
        let next_month = day.first_of_month().checked_add(1.month()).unwrap();
        let b = next_month.to_zoned(TimeZone::UTC).unwrap().timestamp().as_second().min(end);
        out.push((format!("{:04}-{:02}", day.year(), day.month()), b - a));
        a = b;
    }
    out
}

/// TRES-seconds → the Waldur amount: `total / 60 / unit_factor`, in hundredths rounded half up.
fn amount(total: i64, tres: &str) -> String {
    let millionths = COMPONENTS.iter().find(|c| c.0 == tres).unwrap_or_else(|| panic!("component {tres}")).2;
    let den = 60 * millionths;
    let c = (i128::from(total) * 100 * 1_000_000 + den / 2) / den;
    format!("{}.{:02}", c / 100, c % 100)
}

/// Every run in the ledger, as its runs say: AllocTRES (mem in MiB) × ElapsedRaw. `skip`: runs
/// (JobIDRaw, submit) left out.
fn ledger_runs_totals(db: &std::path::Path, skip: &BTreeSet<(u64, i64)>) -> Totals {
    let mut t = Totals::default();
    for j in Ledger::open(db).unwrap().jobs(&JobFilter { limit: None, ..Default::default() }).unwrap() {
        let Some(start) = j.start.filter(|_| j.elapsed_secs > 0) else { continue };
        if skip.contains(&(j.key.job_id_raw, j.key.submit.0)) {
            continue;
        }
        for (tres, _, _) in COMPONENTS {
            let n = billed_count(&j, Basis::Allocated, tres) >> if tres == "mem" { 20 } else { 0 };
            if n > 0 {
                t.add_run(&j.account, &j.user, tres, n as i64, start.0, j.elapsed_secs as i64);
            }
        }
    }
    t
}

/// The ledger's outbox totals: item `wd:waldur:{month}:{account}|{tres}[|{user}]` → its total.
fn outbox_totals(db: &std::path::Path) -> Totals {
    let mut t = Totals::default();
    for d in Ledger::open(db).unwrap().deliveries("waldur", None).unwrap() {
        let total = d.total.unwrap_or_else(|| panic!("item {} has no total", d.id));
        let rest = d.id.strip_prefix("wd:waldur:").unwrap_or_else(|| panic!("item id {}", d.id));
        let (month, rest) = rest.split_once(':').unwrap_or_else(|| panic!("item id {}", d.id));
        let parts: Vec<&str> = rest.split('|').collect();
        let k = (parts[0].to_string(), month.to_string(), parts[1].to_string());
        match parts[2..] {
            [] => assert!(t.per.insert(k, total).is_none(), "item {} twice", d.id),
            [user] => {
                assert!(t.users.insert((k.0, k.1, k.2, user.to_string()), total).is_none(), "item {} twice", d.id)
            }
            _ => panic!("item id {}", d.id),
        }
    }
    t
}

/// `mem=256M` in `AllocTRES` (sacct `--noconvert` still writes a unit) → MiB.
fn alloc_mem_mib(alloc_tres: &str) -> i64 {
    let Some(v) = alloc_tres.split(',').find_map(|p| p.strip_prefix("mem=")) else { return 0 };
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: i64 = num.parse().unwrap_or_else(|_| panic!("AllocTRES mem {v:?}"));
    match unit {
        "K" => n >> 10,
        "" | "M" => n,
        "G" => n << 10,
        "T" => n << 20,
        _ => panic!("AllocTRES mem unit {v:?}"),
    }
}

/// The test's own runs, from `sacct` alone.
fn sacct_totals(rows: &[SacctRun], problems: &mut Vec<String>) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        if r.alloc_cpus * r.elapsed_raw != r.cpu_time_raw {
            problems.push(format!("sacct: job {} AllocCPUS × ElapsedRaw ≠ CPUTimeRAW: {r:?}", r.raw));
        }
        let Some(start) = r.start.filter(|_| r.elapsed_raw > 0) else { continue };
        for (tres, n) in [("cpu", r.alloc_cpus as i64), ("mem", alloc_mem_mib(&r.alloc_tres))] {
            if n > 0 {
                t.add_run(&r.account, &r.user, tres, n, start, r.elapsed_raw as i64);
            }
        }
    }
    t
}

/// Each key where `got` differs from `want`, as a problem named `what`.
fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
    problems: &mut Vec<String>,
) {
    for k in got.keys().chain(want.keys()).collect::<BTreeSet<_>>() {
        if got.get(k) != want.get(k) {
            problems.push(format!("{what} {k:?}: {:?}, expected {:?}", got.get(k), want.get(k)));
        }
    }
}

/// `deliver_waldur`'s fake (its component labels are not this config's units: the fake converts
/// nothing) with a resource per testbed account, the chaos faults, and the real date (UTC).
fn fake_waldur(seed: u64) -> FakeWaldur {
    let today = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    FakeWaldur::start(WaldurConfig {
        staff: today.day() == 1,
        today: today.to_string(),
        seed,
        ..crate::deliver_waldur::config(&ACCOUNTS, crate::chaos::fault_mix())
    })
}

#[test]
fn chaos_waldur_totals_exact_over_live_slurm() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _slurm = crate::testbed::exclusive_slurm();
    let started = Instant::now();
    let seed = crate::chaos::seed();
    let mut rng = Rng(seed ^ 0x3a1d);
    let fake = fake_waldur(seed);

    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::new(dir.path(), vec![("SLURM_LEDGER_WALDUR_TOKEN", TOKEN.to_string())]);
    let components: String = COMPONENTS
        .iter()
        .map(|(tres, factor, _)| format!("[sinks.waldur.components.{tres}]\nunit_factor = {factor}\n"))
        .collect();
    let users: String = USERS.iter().map(|(s, w)| format!("{s} = \"{w}\"\n")).collect();
    std::fs::write(
        &runner.cfg,
        format!(
            "[slurm]\noverlap = \"10m\"\ninitial_lookback = \"5m\"\n\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"2s\"\n\n\
             [sinks.waldur]\nurl = \"{}/api/\"\noffering_uuid = \"{OFFERING}\"\ntimeout_secs = 1\nrunning_slice = \"1s\"\n\n\
             {components}\n[sinks.waldur.users]\n{users}",
            fake.base_url()
        ),
    )
    .unwrap();

    let mut jobs = Mix::submit("chaos-wd");
    let chaos = chaos_phase(&mut jobs, &runner, &mut rng, || {
        let w = fake.writes();
        format!(
            "{} faults injected, {} totals and {} user parts set, {} deliveries open",
            fake.fault_counts().values().sum::<u64>(),
            w.usage_changed,
            w.user_changed,
            runner.open_deliveries("waldur")
        )
    });
    let counts = fake.fault_counts();
    let chaos_requests = fake.requests().len();
    println!("chaos: all jobs final after {:.0} s; faults off", started.elapsed().as_secs_f64());
    fake.set_mix(FaultMix::default());
    let (final_rows, clean) = clean_phase(&jobs, &runner, "waldur");

    // Nothing posted twice: a second `deliver` posts nothing.
    let (writes, posts) = (fake.writes(), fake.requests().iter().filter(|r| r.method == "POST").count());
    let mut child = runner.spawn(&["deliver"], "second deliver");
    let st = runner.wait(&mut child, RUN_LIMIT);
    let mut problems: Vec<String> = Vec::new();
    let posts_again = fake.requests().iter().filter(|r| r.method == "POST").count() - posts;
    if !st.success() || posts_again > 0 || fake.writes() != writes {
        problems
            .push(format!("the second `deliver` ({st}) posted {posts_again} times: {writes:?} → {:?}", fake.writes()));
    }
    if writes.usage_same + writes.user_same > 0 {
        problems.push(format!("a value Waldur already held was posted again: {writes:?}"));
    }

    let ledger = Ledger::open(&runner.db).unwrap();
    for d in ledger.deliveries("waldur", Some(DeliveryState::Rejected)).unwrap() {
        problems.push(format!("item {} refused: {:?}", d.id, d.last_error));
    }
    for (key, reason) in ledger.held_runs("waldur").unwrap() {
        problems.push(format!("run {key} held: {reason}"));
    }
    problems.extend(jobs.requeue_problem(&final_rows));

    // 1. The outbox against the ledger's runs; 2. against sacct for our runs plus the others.
    let ours: BTreeSet<(u64, i64)> = final_rows.iter().map(|r| (r.raw, r.submit)).collect();
    let outbox = outbox_totals(&runner.db);
    let from_runs = ledger_runs_totals(&runner.db, &BTreeSet::new());
    let mine = sacct_totals(&final_rows, &mut problems);
    let others = ledger_runs_totals(&runner.db, &ours);
    let independent = mine.clone().plus(&others);
    diff("outbox total vs the ledger's runs", &outbox.per, &from_runs.per, &mut problems);
    diff("outbox user total vs the ledger's runs", &outbox.users, &from_runs.users, &mut problems);
    diff("outbox total vs sacct + others", &outbox.per, &independent.per, &mut problems);
    diff("outbox user total vs sacct + others", &outbox.users, &independent.users, &mut problems);
    // 3. The fake against both, in Waldur's units.
    let (fake_per, fake_users) = (fake.usages(), fake.user_usages());
    for (what, want) in [("the ledger's runs", from_runs.amounts()), ("sacct + others", independent.amounts())] {
        diff(&format!("Waldur total vs {what}"), &fake_per, &want.0, &mut problems);
        diff(&format!("Waldur user total vs {what}"), &fake_users, &want.1, &mut problems);
    }

    let mut table = String::new();
    for (k, total) in &independent.per {
        let own = mine.per.get(k).copied().unwrap_or(0);
        table.push_str(&format!(
            "  {:<14} {} {:<3}: ours (sacct) {:>7} + others (ledger) {:>9} = {:>9} TRES-s → {:>8} expected, Waldur has {:>8}\n",
            k.0,
            k.1,
            k.2,
            own,
            total - own,
            total,
            amount(*total, &k.2),
            fake_per.get(k).map_or("-", String::as_str)
        ));
    }
    print!("{table}");
    let faults: Vec<String> = counts.iter().map(|(k, n)| format!("{k:?}={n}")).collect();
    let injected = counts.values().sum::<u64>();
    println!(
        "chaos summary: seed {seed}; runs {} of ours + {} others in the ledger; kills {} ({} of a live process) in {} chaos passes + {clean} clean; \
         {chaos_requests} requests under faults, {injected} faults ({:.0}%) [{}]; writes {writes:?}; {} totals, {} user parts; {:.0} s",
        final_rows.len(),
        ledger.jobs(&JobFilter { limit: None, ..Default::default() }).unwrap().len().saturating_sub(ours.len()),
        chaos.kills,
        chaos.kills_alive,
        chaos.passes,
        100.0 * injected as f64 / chaos_requests.max(1) as f64,
        faults.join(", "),
        fake_per.len(),
        fake_users.len(),
        started.elapsed().as_secs_f64()
    );
    // Not vacuous: faults hit, kills hit live processes, and totals were raised while jobs ran.
    if injected == 0 || chaos.kills_alive == 0 || writes.usage_changed <= fake_per.len() as u64 {
        problems.push(format!(
            "the chaos did not bite: {injected} faults, {} kills of a live process, {} totals set for {} keys",
            chaos.kills_alive,
            writes.usage_changed,
            fake_per.len()
        ));
    }
    assert_no_problems(&problems, seed, &runner);
}
