//! A sink's config changed between passes in every way the config allows (issue 9, item 1): what
//! it bills on (TRES, basis, period, time zone) is refused until accepted, with nothing planned
//! or sent; where items go (mapping, SKU) and how often (running_slice) may change freely. Over
//! random run histories and random changes, every run's billed total is exact once the settings
//! are back, and nothing is billed twice: never a silent loss or double.

use std::collections::BTreeMap;

use proptest::prelude::*;
use slurm_ledger::config::Settings;
use slurm_ledger::delivery::consumer::EnginePolicy;
use slurm_ledger::delivery::engine::{self, EngineError};
use slurm_ledger::ledger::Ledger;
use slurm_ledger::model::{ClusterName, JobKey, JobRun, JobState, Tres, UnixTime};
use slurm_ledger::sinks::{build, BuildCtx};

use crate::deliver_activate::{deliver, fake, micro, site, slurm_ledger, KEY};
use crate::fakes::FakeActivate;

/// One way the config can be at a pass.
#[derive(Debug, Clone, Copy)]
struct Variant {
    mapping_b: bool,
    other_sku: bool,
    fast_slices: bool,
    tres_mem: bool,
    requested: bool,
    monthly: bool,
    berlin: bool,
}

impl Variant {
    fn toml(&self, url: &str) -> String {
        let pick = |b: bool, yes: &'static str, no: &'static str| if b { yes } else { no };
        format!(
            "[sinks.activate]\norganization = \"acme\"\nhost = \"{url}\"\ntimeout_secs = 5\n\
             default_sku = \"{}\"\nrunning_slice = \"{}\"\ntres = \"{}\"\nbasis = \"{}\"\nperiod = \"{}\"\ntimezone = \"{}\"\n\
             [sinks.activate.account_allocation]\na0 = \"{}\"\na1 = \"{}\"\n",
            pick(self.other_sku, "sku-2", "sku-1"),
            pick(self.fast_slices, "1s", "15m"),
            pick(self.tres_mem, "mem", "cpu"),
            pick(self.requested, "requested", "allocated"),
            pick(self.monthly, "month", "day"),
            pick(self.berlin, "Europe/Berlin", "UTC"),
            pick(self.mapping_b, "alloc-b", "alloc-a"),
            pick(self.mapping_b, "alloc-a", "alloc-b"),
        )
    }
}

fn variant() -> impl Strategy<Value = Variant> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mapping_b, other_sku, fast_slices, tres_mem, requested, monthly, berlin)| Variant {
            mapping_b,
            other_sku,
            fast_slices,
            tres_mem,
            requested,
            monthly,
            berlin,
        })
}

/// One pass with the consumer this variant builds. Returns whether it was refused.
fn pass(ledger: &mut Ledger, fake: &FakeActivate, v: Variant, now: i64) -> bool {
    let settings = Settings::from_toml(&v.toml(&fake.base_url()), "t").unwrap();
    let env = |n: &str| (n == "SLURM_LEDGER_ACTIVATE_API_KEY").then(|| KEY.to_string());
    let ctx = BuildCtx { online: true, env: &env, policy: EnginePolicy { base_backoff_secs: 1, max_backoff_secs: 1 } };
    let c = build(&settings.sinks, &[], &ctx).unwrap().remove(0).consumer;
    match engine::plan(ledger, &c, None, UnixTime(now)) {
        Err(EngineError::TermsChanged { .. }) => return true,
        other => {
            other.unwrap();
        }
    }
    engine::execute(
        ledger,
        &c,
        UnixTime(now),
        engine::Budget { max_items: Some(10_000), ..Default::default() },
        &mut |_, _| {},
    )
    .unwrap();
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn a_changed_config_bills_exactly_or_is_refused(
        runs in prop::collection::vec((0usize..2, 1u64..16, prop::collection::vec(1u64..40_000, 1..5)), 1..6),
        variants in prop::collection::vec(variant(), 2..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
        let fake = fake(&["alloc-a", "alloc-b"]);
        let start = 1_795_300_000i64;
        let mut now = start;
        let mut want: BTreeMap<u64, u128> = BTreeMap::new();
        let mut refused = 0;
        let polls = variants.len().max(runs.iter().map(|r| r.2.len()).max().unwrap() + 1);
        for poll in 0..polls {
            now += 3 * 3600;
            let mut w = ledger.writer(UnixTime(now)).unwrap();
            for (i, (account, cpus, grows)) in runs.iter().enumerate() {
                let id = i as u64 + 1;
                let mut j = JobRun::new(JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: id, submit: UnixTime(start) }, id.to_string());
                j.account = format!("a{account}");
                j.partition = "p".into();
                j.user = "u".into();
                j.start = Some(UnixTime(start + 1));
                j.elapsed_secs = grows.iter().take(poll + 1).sum();
                j.state = if poll + 1 < grows.len() { JobState::Running } else { JobState::Completed };
                // 3 GiB a CPU: billing memory instead of CPUs triples the figure.
                let tres = Tres::from_pairs([("cpu".to_string(), *cpus), ("mem".to_string(), (3 * cpus) << 30)]);
                j.alloc_tres = tres.clone();
                j.req_tres = tres;
                let count = u128::from(*cpus) * if variants[0].tres_mem { 3 } else { 1 };
                want.insert(id, (count * u128::from(j.elapsed_secs) * 1_000_000 + 1800) / 3600);
                w.upsert_run(&j).unwrap();
            }
            w.commit().unwrap();
            let v = variants[poll % variants.len()];
            let events = fake.events().len();
            let was_refused = pass(&mut ledger, &fake, v, now);
            // The first pass stores the terms it plans on; a pass on other terms is refused whole.
            if was_refused {
                refused += 1;
                prop_assert!(fake.events().len() == events, "a refused pass sent something");
            }
            prop_assert_eq!(was_refused, strip(v) != strip(variants[0]), "pass {} on {:?}", poll, v);
        }
        // Back to the first variant's terms (its mapping may differ): drain.
        let back = Variant { mapping_b: false, other_sku: false, ..variants[0] };
        for _ in 0..5 {
            now += 60;
            prop_assert!(!pass(&mut ledger, &fake, back, now), "the first terms are refused");
        }
        let events = fake.events();
        let mut ids: Vec<&str> = events.iter().map(|e| e.metadata.as_ref().unwrap()["deliveryId"].as_str().unwrap()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), n, "an item was billed twice");
        let mut got: BTreeMap<u64, u128> = BTreeMap::new();
        for e in &events {
            *got.entry(e.metadata.as_ref().unwrap()["jobId"].as_u64().unwrap()).or_default() += micro(&e.quantity_text);
        }
        // What the first terms bill: core-hours, or GiB-hours of memory (3 a CPU); allocated or
        // requested (the same here); cut by day or month, in UTC or Berlin (the same totals).
        want.retain(|_, q| *q > 0);
        prop_assert_eq!(got, want, "refused {} of {} passes", refused, variants.len());
    }
}

/// The terms of a variant (what it bills on), without where and how often.
fn strip(v: Variant) -> (bool, bool, bool, bool) {
    (v.tres_mem, v.requested, v.monthly, v.berlin)
}

fn config_at(site: &crate::deliver_activate::Site, url: &str, tres: &str) {
    let text = format!(
        "[sinks.activate]\norganization = \"acme\"\nhost = \"{url}\"\ndefault_sku = \"standard-compute\"\ntimeout_secs = 1\n\
         tres = \"{tres}\"\ndefault_allocation = \"alloc-rt\"\n"
    );
    std::fs::write(&site.cfg, text).unwrap();
}

/// The admin's path: a TRES changed after delivering is refused with the fix; restoring it
/// bills nothing twice; accepting it says what happens and plans on the new terms from then on.
#[test]
fn a_changed_tres_is_refused_until_restored_or_accepted() {
    let site = site();
    let f = fake(&["alloc-rt"]);
    config_at(&site, &f.base_url(), "cpu");
    deliver(&site);
    let billed = f.events().len();
    assert!(billed > 0);
    config_at(&site, &f.base_url(), "mem");
    let (code, out, err) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("activate: FAILED") && out.contains("was: tres=cpu") && out.contains("now: tres=mem"),
        "{out}"
    );
    assert!(out.contains("accept-terms --sink activate"), "the fix is named:\n{out}");
    let (code, dry, _) = slurm_ledger(&site, &["deliver", "--dry-run"], Some(KEY));
    assert!(code == 1 && dry.contains("FAILED"), "the dry run says so too:\n{dry}");
    assert_eq!(f.events().len(), billed, "nothing sent while refused");
    // Restored: nothing billed twice.
    config_at(&site, &f.base_url(), "cpu");
    let (code, out, _) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 0, "{out}");
    assert_eq!(f.events().len(), billed);
    // Accepted: the command says what happens; the next pass plans on the new terms.
    config_at(&site, &f.base_url(), "mem");
    let (code, out, err) = slurm_ledger(&site, &["accept-terms", "--sink", "activate", "--dry-run"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("tres=cpu")
            && out.contains("tres=mem")
            && out.contains("nothing is re-planned")
            && out.contains("dry run"),
        "{out}"
    );
    let (code, out, _) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 1, "still refused after a dry run:\n{out}");
    let (code, out, err) = slurm_ledger(&site, &["accept-terms", "--sink", "activate"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 0, "{out}");
    assert_eq!(f.events().len(), billed, "runs already planned are not re-planned");
}

/// A mistyped TRES (`gpu` for `gres/gpu`, `cpuz`) is a config error before anything is planned:
/// fixed, every GPU-second is billed, none lost to the typo.
#[test]
fn a_mistyped_tres_is_refused_before_anything_is_planned() {
    let site = site();
    let f = fake(&["alloc-rt"]);
    for typo in ["gpu", "cpuz"] {
        config_at(&site, &f.base_url(), typo);
        for args in [&["deliver"][..], &["deliver", "--dry-run"][..]] {
            let (code, out, err) = slurm_ledger(&site, args, Some(KEY));
            assert_eq!(code, 2, "{args:?} with tres {typo}:\n{out}\n{err}");
            assert!(
                err.contains("sinks.activate.tres") && err.contains(&format!("{typo:?}")) && err.contains("gres/gpu"),
                "{err}"
            );
        }
    }
    assert!(f.events().is_empty(), "nothing was sent");
    assert_eq!(Ledger::open(&site.db).unwrap().consumer_cursor("activate").unwrap(), 0, "nothing was planned");
    config_at(&site, &f.base_url(), "gres/gpu");
    deliver(&site);
    let gpu_secs: u128 = Ledger::open(&site.db)
        .unwrap()
        .jobs(&slurm_ledger::ledger::JobFilter::default())
        .unwrap()
        .iter()
        // Running runs are billed once 15 minutes have accrued (running_slice); these have not.
        .filter(|j| j.start.is_some() && j.state.is_final())
        .map(|j| u128::from(j.alloc_tres.gpus()) * u128::from(j.elapsed_secs))
        .sum();
    let billed: u128 = f.events().iter().map(|e| micro(&e.quantity_text)).sum();
    assert!(gpu_secs > 0);
    // Rounded per run; within a micro-hour per run of the exact figure.
    let exact = gpu_secs * 1_000_000 / 3600;
    assert!(billed.abs_diff(exact) <= 30, "billed {billed} µh, GPU-seconds {gpu_secs}");
}

/// A mistyped TRES cannot be accepted as a sink's new terms either: once stored, terms are not
/// checked again, so `accept-terms` checks them first.
#[test]
fn a_mistyped_tres_cannot_be_accepted() {
    let site = site();
    let f = fake(&["alloc-rt"]);
    config_at(&site, &f.base_url(), "cpu");
    deliver(&site);
    let sent = f.events().len();
    config_at(&site, &f.base_url(), "gpu");
    let (code, _, err) = slurm_ledger(&site, &["accept-terms", "--sink", "activate"], None);
    assert!(code == 2 && err.contains("sinks.activate.tres") && err.contains("\"gpu\""), "{err}");
    config_at(&site, &f.base_url(), "cpu");
    let (code, out, _) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!((code, f.events().len()), (0, sent), "the old terms stand:\n{out}");
}

/// A sink the config does not fit is left out; the others still deliver what they owe (a new GPU
/// sink mistyped must not stop the billing that works).
#[test]
fn a_refused_sink_does_not_stop_the_others() {
    let site = site();
    let f = fake(&["alloc-rt"]);
    config_at(&site, &f.base_url(), "gpu");
    let usage = site.cfg.with_file_name("usage.jsonl");
    let text = std::fs::read_to_string(&site.cfg).unwrap()
        + &format!("[sinks.jsonl]\npath = {:?}\nrunning_slice = \"1m\"\n", usage.display().to_string());
    std::fs::write(&site.cfg, text).unwrap();
    // The demo ledger's JSONL sink has delivered everything already: it runs its pass (planning
    // nothing new) and is not refused with ACTIVATE.
    let (code, out, err) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("sinks.activate.tres") && !err.contains("sinks.jsonl"), "{err}");
    assert!(out.contains("jsonl: ") && !out.contains("activate: "), "jsonl delivered, activate left out:\n{out}");
    assert!(f.events().is_empty());
}
