//! Exactly-once delivery to ACTIVATE under faults, over the live Slurm 22.05 testbed.
//!
//! Submits a varied mix of real jobs (users, accounts, 1–4 CPUs, 2–60 s, a failure, a cancel
//! while running, an array, a requeue), and meanwhile runs `slurm-ledger run` (collect +
//! deliver) again and again against [`FakeActivate`] injecting a seeded random mix of faults
//! (5xx before/after recording, 429, dropped connections, timeouts after recording, slow
//! answers), SIGKILLing about half of the runs after 0–800 ms. Once every job is final in Slurm,
//! faults stop and clean passes run until nothing is left to send. Then, per run of each job
//! submitted here (JobIDRaw + submit), the accepted events' quantities must add up exactly to
//! `CPUTimeRAW / 3600` core-hours (rounded half up to 10⁻⁶) from a separate `sacct` call; no
//! delivery id may be accepted twice; a run's events never overlap; no event crosses a UTC day.
//!
//! Skips like `testbed` when SLURM_LEDGER_TESTBED != 1. `CHAOS_SEED=<u64>` replays a seed (the
//! fault draws, the kill decisions and delays; Slurm's own timing is never the same twice).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use slurm_ledger::ledger::{DeliveryState, Ledger};

use crate::chaos::{assert_no_problems, chaos_phase, clean_phase, Mix, Rng, Runner};
use crate::fakes::activate::parse_date_time;
use crate::fakes::{Event, FakeActivate, FakeConfig, FaultMix};

const ORG: &str = "chaos-org";
const API_KEY: &str = "pwt_chaos.secret-key";

/// `12.345678` → 12345678 micro-units, exactly; panics on anything but a plain decimal.
fn micro(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    assert!(
        digits(int) && (frac.is_empty() || digits(frac)) && frac.len() <= 6,
        "quantity {text:?} is not a decimal with ≤ 6 places"
    );
    int.parse::<i128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<i128>().unwrap()
}

fn secs(rfc3339: &str) -> i64 {
    let (s, nanos) = parse_date_time(rfc3339).unwrap_or_else(|| panic!("not RFC 3339: {rfc3339:?}"));
    assert_eq!(nanos, 0, "sub-second time {rfc3339:?}");
    s
}

/// (JobIDRaw, submit) of an accepted event, from its metadata.
fn run_of(e: &Event) -> (u64, i64) {
    let m = e.metadata.as_ref().unwrap_or_else(|| panic!("event {} has no metadata", e.id));
    let raw = m["jobId"].as_u64().unwrap_or_else(|| panic!("event {}: metadata.jobId {}", e.id, m["jobId"]));
    let submit = m["submit"].as_str().unwrap_or_else(|| panic!("event {}: metadata.submit {}", e.id, m["submit"]));
    (raw, secs(submit))
}

fn delivery_id(e: &Event) -> String {
    e.metadata
        .as_ref()
        .and_then(|m| m["deliveryId"].as_str())
        .unwrap_or_else(|| panic!("event {} has no metadata.deliveryId", e.id))
        .to_string()
}

#[test]
fn chaos_activate_exactly_once_over_live_slurm() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _slurm = crate::testbed::exclusive_slurm();
    let started = Instant::now();
    let seed = crate::chaos::seed();
    let mut rng = Rng(seed ^ 0x5eed);

    let allocations = ["alloc-research", "alloc-eng", "alloc-proj1", "alloc-other"];
    let fake = FakeActivate::start(FakeConfig {
        org: ORG.into(),
        api_key: API_KEY.into(),
        allocations: allocations.iter().map(|s| s.to_string()).collect(),
        accept_bearer: false,
        seed,
        faults: crate::chaos::fault_mix(),
    });

    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::new(dir.path(), vec![("SLURM_LEDGER_ACTIVATE_API_KEY", API_KEY.to_string())]);
    std::fs::write(
        &runner.cfg,
        format!(
            "[slurm]\noverlap = \"10m\"\ninitial_lookback = \"1h\"\n\n\
             [delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"2s\"\n\n\
             [sinks.activate]\norganization = \"{ORG}\"\nhost = \"{}\"\ndefault_sku = \"cpu-hours\"\n\
             default_allocation = \"alloc-other\"\nrunning_slice = \"5s\"\ntimeout_secs = 1\n\n\
             [sinks.activate.partition_sku]\ngpu = \"gpu-node-cpu-hours\"\n\n\
             [sinks.activate.account_allocation]\nresearch-team = \"alloc-research\"\nengineering = \"alloc-eng\"\nhpc_proj1 = \"alloc-proj1\"\n",
            fake.base_url()
        ),
    )
    .unwrap();

    // Submit the mix; the operators cancel one job and requeue another once they run.
    let mut jobs = Mix::submit("chaos");
    // Chaos: run after run, about half of them SIGKILLed after 0–800 ms, until all jobs are final.
    let chaos = chaos_phase(&mut jobs, &runner, &mut rng, || {
        format!(
            "{} faults injected, {} events accepted, {} deliveries open",
            fake.fault_counts().values().sum::<u64>(),
            fake.events().len(),
            runner.open_deliveries("activate")
        )
    });
    let counts = fake.fault_counts();
    let chaos_requests = fake.requests();
    println!("chaos: all jobs final after {:.0} s; faults off", started.elapsed().as_secs_f64());

    // Clean passes until nothing is left to send and every run of ours is final in the ledger.
    fake.set_mix(FaultMix::default());
    let (final_rows, clean) = clean_phase(&jobs, &runner, "activate");

    // What the platform accepted, against what Slurm accounted.
    let events = fake.events();
    let ledger = Ledger::open(&runner.db).unwrap();
    let mut problems: Vec<String> = Vec::new();

    let mut seen: HashMap<String, u32> = HashMap::new();
    for e in &events {
        *seen.entry(delivery_id(e)).or_default() += 1;
    }
    for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
        problems.push(format!("delivery {id} accepted {n} times"));
    }
    let delivered = ledger.deliveries("activate", Some(DeliveryState::Delivered)).unwrap();
    for d in delivered.iter().filter(|d| !seen.contains_key(&d.id)) {
        problems.push(format!("delivery {} is `delivered` in the ledger but the platform has no event for it", d.id));
    }
    for d in ledger.deliveries("activate", Some(DeliveryState::Rejected)).unwrap() {
        problems.push(format!("delivery {} rejected: {:?}", d.id, d.last_error));
    }
    for (key, reason) in ledger.held_runs("activate").unwrap() {
        if jobs.ids.contains(&key.job_id_raw) || final_rows.iter().any(|r| r.raw == key.job_id_raw) {
            problems.push(format!("run {key} held: {reason}"));
        }
    }

    let mut by_run: BTreeMap<(u64, i64), Vec<&Event>> = BTreeMap::new();
    for e in &events {
        by_run.entry(run_of(e)).or_default().push(e);
    }
    for ((raw, submit), evs) in &by_run {
        let mut spans: Vec<(i64, i64)> = evs.iter().map(|e| (secs(&e.started_at), secs(&e.ended_at))).collect();
        spans.sort();
        for (a, b) in &spans {
            if a.div_euclid(86_400) != (b - 1).div_euclid(86_400) {
                problems.push(format!("job {raw} submit {submit}: event {a}..{b} crosses a UTC day boundary"));
            }
        }
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                problems.push(format!("job {raw} submit {submit}: events {:?} and {:?} overlap", w[0], w[1]));
            }
        }
    }

    let mut max_diff: i128 = 0;
    let mut total_micro: i128 = 0;
    let mut table = String::new();
    for r in &final_rows {
        let expected = (i128::from(r.cpu_time_raw) * 1_000_000 + 1800) / 3600;
        let evs = by_run.get(&(r.raw, r.submit)).map(Vec::as_slice).unwrap_or(&[]);
        let got: i128 = evs.iter().map(|e| micro(&e.quantity_text)).sum();
        let diff = got - expected;
        max_diff = max_diff.max(diff.abs());
        total_micro += expected;
        table.push_str(&format!(
            "  job {:>5} submit {} {:<10} CPUTimeRAW {:>5} → expected {:>8} µ, events {:>2} sum {:>8} µ, diff {diff}\n",
            r.raw,
            r.submit,
            r.state,
            r.cpu_time_raw,
            expected,
            evs.len(),
            got
        ));
        if diff != 0 {
            problems.push(format!(
                "job {} submit {} ({}): events sum to {got} µ core-hours, Slurm accounts {expected} µ (diff {diff})",
                r.raw, r.submit, r.state
            ));
        }
    }
    problems.extend(jobs.requeue_problem(&final_rows));
    print!("{table}");
    let faults: Vec<String> = counts.iter().map(|(k, n)| format!("{k:?}={n}")).collect();
    let (posts, gets) =
        chaos_requests.iter().fold((0, 0), |(p, g), r| if r.method == "POST" { (p + 1, g) } else { (p, g + 1) });
    let injected = counts.values().sum::<u64>();
    println!(
        "chaos summary: seed {seed}; jobs {}, runs {}, events {} (all runs), kills {} ({} of a live process) in {} chaos passes + {clean} clean; \
         {posts} POSTs + {gets} look-up GETs under faults, {injected} faults ({:.0}%) [{}]; {:.6} core-hours; max |difference| {max_diff} µ; {:.0} s",
        final_rows.iter().map(|r| r.raw).collect::<std::collections::BTreeSet<_>>().len(),
        final_rows.len(),
        events.len(),
        chaos.kills,
        chaos.kills_alive,
        chaos.passes,
        100.0 * injected as f64 / (posts + gets).max(1) as f64,
        faults.join(", "),
        total_micro as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    // Not vacuous: faults hit, kills hit live processes, and some run was sliced while running.
    let most_events = final_rows.iter().map(|r| by_run.get(&(r.raw, r.submit)).map_or(0, Vec::len)).max().unwrap_or(0);
    if injected == 0 || chaos.kills_alive == 0 || most_events < 3 {
        problems.push(format!("the chaos did not bite: {injected} faults, {} kills of a live process, at most {most_events} events per run", chaos.kills_alive));
    }
    assert_no_problems(&problems, seed, &runner);
    assert_eq!(max_diff, 0);
}
