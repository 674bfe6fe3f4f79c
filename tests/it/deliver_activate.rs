//! `deliver` to the ACTIVATE fake, on the ledger of a recorded real testbed poll (the demo's):
//! exact contract, exact totals per run, faults without duplicates, dry run, held runs,
//! rejected deliveries and `retry`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use slurm_ledger::ledger::{DeliveryState, JobFilter, Ledger};

use crate::fakes::{Event, FakeActivate, FakeConfig, Fault};

pub const KEY: &str = "pwt_test.k3y-s3cr3t";

pub struct Site {
    _dir: tempfile::TempDir,
    pub db: PathBuf,
    pub cfg: PathBuf,
}

/// A ledger holding the recorded testbed poll (28 runs), and a config file path.
pub fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger")).arg("demo").arg("--into").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = dir.path().join("config.toml");
    Site { db, cfg, _dir: dir }
}

/// No ledger yet (a command creates it), and a config file path.
pub fn empty_site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    Site { db: dir.path().join("ledger.db"), cfg: dir.path().join("config.toml"), _dir: dir }
}

pub fn fake(allocations: &[&str]) -> FakeActivate {
    FakeActivate::start(FakeConfig {
        org: "acme".into(),
        api_key: KEY.into(),
        allocations: allocations.iter().map(|s| s.to_string()).collect(),
        seed: 7,
        ..Default::default()
    })
}

const ALL_MAPPED: &str = "research-team = \"alloc-rt\"\nengineering = \"alloc-eng\"\nhpc_proj1 = \"alloc-p1\"\n";

fn write_cfg(site: &Site, url: &str, accounts: &str) {
    let text = format!(
        "[delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n\
         [sinks.activate]\norganization = \"acme\"\nhost = \"{url}\"\ndefault_sku = \"standard-compute\"\ntimeout_secs = 1\nrunning_slice = \"1s\"\n\
         [sinks.activate.partition_sku]\ngpu = \"gpu-compute\"\n[sinks.activate.account_allocation]\n{accounts}"
    );
    std::fs::write(&site.cfg, text).unwrap();
}

pub fn slurm_ledger(site: &Site, args: &[&str], key: Option<&str>) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = key.map(|k| ("SLURM_LEDGER_ACTIVATE_API_KEY", k)).into_iter().collect();
    run_site(site, args, &env, &[], "warn")
}

/// Every variable a sink reads a secret or its platform from: unset for the binary unless a test
/// sets it.
const SINK_ENV: &[&str] = &[
    "PW_API_KEY",
    "PW_PLATFORM_HOST",
    "SLURM_LEDGER_ACTIVATE_API_KEY",
    "SLURM_LEDGER_WALDUR_TOKEN",
    "SLURM_LEDGER_WALDUR_OIDC_SECRET",
    "SLURM_LEDGER_CC_BACKEND_TOKEN",
    "SLURM_LEDGER_NATS_PASSWORD",
    "SLURM_LEDGER_NATS_TOKEN",
    "SLURM_LEDGER_NATS_NKEY_SEED",
    "SLURM_LEDGER_NATS_CREDS",
];

/// Runs the binary on the site's config and ledger with `env` set (and no other sink variable),
/// logging at `log`; none of `secrets` may appear in what it prints.
pub(crate) fn run_site(
    site: &Site,
    args: &[&str],
    env: &[(&str, &str)],
    secrets: &[&str],
    log: &str,
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
    c.arg("--config").arg(&site.cfg).arg("--ledger").arg(&site.db).args(args);
    for name in SINK_ENV {
        c.env_remove(name);
    }
    let o = c.envs(env.iter().copied()).env("RUST_LOG", log).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    for secret in secrets {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} leaked:\n{out}\n{err}");
    }
    (o.status.code().unwrap_or(-1), out, err)
}

pub fn deliver(site: &Site) -> String {
    let (code, out, err) = slurm_ledger(site, &["deliver"], Some(KEY));
    assert!(matches!(code, 0 | 1 | 3), "deliver exit {code}: {out}\n{err}");
    assert!(!out.contains(KEY) && !err.contains(KEY) && !err.contains("k3y-s3cr3t"), "the key leaked:\n{out}\n{err}");
    out
}

/// Exact micro-units of a decimal with at most 6 places.
pub fn micro(text: &str) -> u128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 6 && !text.contains(['e', 'E', '-']), "quantity {text:?}");
    int.parse::<u128>().unwrap() * 1_000_000 + format!("{frac:0<6}").parse::<u128>().unwrap()
}

/// run key (jobIdRaw@submit) → expected micro core-hours: round_half_up(cpus × elapsed / 3600 × 10^6).
fn expected(db: &Path, accounts: &[&str]) -> BTreeMap<String, u128> {
    let ledger = Ledger::open(db).unwrap();
    ledger
        .jobs(&JobFilter::default())
        .unwrap()
        .into_iter()
        .filter(|j| accounts.contains(&j.account.as_str()) && j.start.is_some())
        .map(|j| {
            let cpus = j.alloc_tres.get("cpu").unwrap_or(j.alloc_cpus as u64) as u128;
            let core_secs = cpus * j.elapsed_secs as u128;
            (format!("{}@{}", j.key.job_id_raw, j.key.submit.to_rfc3339()), (core_secs * 1_000_000 + 1800) / 3600)
        })
        .filter(|(_, q)| *q > 0)
        .collect()
}

/// run key → recorded micro core-hours; asserts no delivery id twice and no overlap per run.
pub fn recorded(events: &[Event]) -> BTreeMap<String, u128> {
    let mut ids = HashSet::new();
    let mut spans: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut sums = BTreeMap::new();
    for e in events {
        let m = e.metadata.as_ref().expect("metadata");
        let id = m["deliveryId"].as_str().expect("deliveryId").to_string();
        assert!(ids.insert(id.clone()), "delivery {id} recorded twice");
        let run = format!("{}@{}", m["jobId"], m["submit"].as_str().unwrap());
        spans.entry(run.clone()).or_default().push((e.started_at.clone(), e.ended_at.clone()));
        *sums.entry(run).or_insert(0) += micro(&e.quantity_text);
    }
    for (run, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            assert!(w[0].1 <= w[1].0, "run {run}: slices overlap: {w:?}");
        }
    }
    sums
}

#[test]
fn every_run_is_delivered_once_with_its_exact_total() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    let out = deliver(&site);
    assert!(out.contains("0 rejected"), "{out}");
    let want = expected(&site.db, &["research-team", "engineering", "hpc_proj1"]);
    assert!(want.len() >= 20, "the recording has ≥ 20 billable runs: {want:?}");
    assert_eq!(recorded(&f.events()), want);
    // The contract's details: allocation in the path, SKU by partition, user, metadata.
    let gpu = f.events().into_iter().find(|e| e.metadata.as_ref().unwrap()["partition"] == "gpu").expect("a gpu run");
    assert_eq!(gpu.sku, "gpu-compute");
    assert_eq!(gpu.allocation, "alloc-eng");
    assert_eq!(gpu.user.as_deref(), Some("bob"));
    // A second pass sends nothing.
    let before = f.requests().len();
    let out = deliver(&site);
    assert!(out.contains("0 new deliveries") && out.contains("0 delivered"), "{out}");
    assert_eq!(f.requests().len(), before);
}

#[test]
fn faults_after_recording_never_duplicate() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    f.push_faults([
        Fault::Status5xxAfter(500),
        Fault::DropAfter,
        Fault::TimeoutAfter { secs: 3 },
        Fault::Status5xxBefore(503),
        Fault::TooMany { retry_after_secs: 1 },
        Fault::DropBefore,
        Fault::Slow { millis: 300 },
        Fault::Status5xxAfter(502),
    ]);
    let mut passes = 0;
    loop {
        passes += 1;
        deliver(&site);
        let ledger = Ledger::open(&site.db).unwrap();
        let open: usize = [DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Retry]
            .into_iter()
            .map(|s| ledger.deliveries("activate", Some(s)).unwrap().len())
            .sum();
        if open == 0 {
            break;
        }
        assert!(passes < 12, "deliveries still open after {passes} passes");
        std::thread::sleep(std::time::Duration::from_millis(2100));
    }
    assert!(passes >= 2, "faults forced at least one more pass");
    let counts = f.fault_counts();
    assert_eq!(counts.values().sum::<u64>(), 8, "every scripted fault was injected: {counts:?}");
    assert_eq!(recorded(&f.events()), expected(&site.db, &["research-team", "engineering", "hpc_proj1"]));
    // The unknown outcomes were resolved by look-up, not by resending.
    let gets = f.requests().iter().filter(|r| r.method == "GET").count();
    assert!(gets >= 3, "looked up the unknown outcomes: {gets} GETs");
}

#[test]
fn dry_run_prints_the_requests_and_changes_nothing() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    let status = |s: &Site| slurm_ledger(s, &["status", "--format", "json"], None).1;
    let before = status(&site);
    // No key needed for a dry run.
    let (code, out, err) = slurm_ledger(&site, &["deliver", "--dry-run"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("POST {}/api/organizations/acme/allocations/alloc-eng/usage", f.base_url())),
        "{out}"
    );
    assert!(
        out.contains("\"sku\":\"gpu-compute\"") && out.contains("\"deliveryId\":\"sl:activate:testcluster:"),
        "{out}"
    );
    assert_eq!(status(&site), before, "a dry run wrote to the ledger");
    assert!(f.requests().is_empty(), "a dry run sent requests");
    // What the dry run showed is what is then sent.
    let shown = out.matches("\nPOST ").count();
    deliver(&site);
    assert_eq!(f.events().len(), shown);
}

#[test]
fn unmapped_runs_are_held_with_a_reason_then_released() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), "research-team = \"alloc-rt\"\nengineering = \"alloc-eng\"\n");
    let out = deliver(&site);
    assert!(out.contains("runs held"), "{out}");
    assert!(f.events().iter().all(|e| e.allocation != "alloc-p1"));
    let (_, st, _) = slurm_ledger(&site, &["status"], None);
    assert!(
        st.contains("held testcluster/") && st.contains("account \"hpc_proj1\" maps to no ACTIVATE allocation"),
        "{st}"
    );
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    deliver(&site);
    assert_eq!(recorded(&f.events()), expected(&site.db, &["research-team", "engineering", "hpc_proj1"]));
    let (_, st, _) = slurm_ledger(&site, &["status"], None);
    assert!(st.contains("0 runs held"), "{st}");
}

#[test]
fn rejected_deliveries_are_kept_shown_and_retried_after_a_fix() {
    let site = site();
    // The platform does not know alloc-p1: 404, a permanent refusal.
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-new"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    let (code, out, _) = slurm_ledger(&site, &["deliver"], Some(KEY));
    assert_eq!(code, 1, "rejections make the exit status 1: {out}");
    let (_, st, _) = slurm_ledger(&site, &["status"], None);
    assert!(st.contains("rejected sl:activate:") && st.contains("404"), "{st}");
    // Fix the mapping, retry by command: the payload is re-rendered with the new allocation.
    write_cfg(
        &site,
        &f.base_url(),
        "research-team = \"alloc-rt\"\nengineering = \"alloc-eng\"\nhpc_proj1 = \"alloc-new\"\n",
    );
    let (code, out, err) = slurm_ledger(&site, &["retry", "--sink", "activate"], None);
    assert_eq!(code, 0, "{out}{err}");
    deliver(&site);
    assert_eq!(recorded(&f.events()), expected(&site.db, &["research-team", "engineering", "hpc_proj1"]));
    assert!(f.events().iter().any(|e| e.allocation == "alloc-new"));
}

#[test]
fn a_wrong_key_is_retried_not_rejected_and_never_printed() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    let (code, out, err) = slurm_ledger(&site, &["deliver"], Some("pwt_wrong.not-the-key"));
    assert_eq!(code, 1, "nothing delivered is a failure for cron: {out}");
    assert!(!out.contains("not-the-key") && !err.contains("not-the-key"), "{out}{err}");
    assert!(out.contains("0 delivered") && out.contains("0 rejected"), "{out}");
    assert!(f.events().is_empty());
    let (_, st, _) = slurm_ledger(&site, &["status", "--format", "json"], None);
    assert!(st.contains("\"retry\""), "{st}");
    // No key at all: a clear error naming where to put it.
    let (code, _, err) = slurm_ledger(&site, &["deliver"], None);
    assert_eq!(code, 2);
    assert!(err.contains("SLURM_LEDGER_ACTIVATE_API_KEY") && err.contains("api_key_file"), "{err}");
}

#[test]
fn a_look_up_that_cannot_prove_absence_never_resends() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    // The first send is dropped before it is recorded: its outcome is unknown.
    f.push_faults([Fault::DropBefore]);
    deliver(&site);
    let delivered = f.events().len();
    // A server that ignores the metadata filter lists other events: absence is not proven.
    f.ignore_metadata_filter(true);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    deliver(&site);
    assert_eq!(f.events().len(), delivered, "resent without proof that the platform lacks it");
    let (_, st, _) = slurm_ledger(&site, &["status", "--format", "json"], None);
    assert!(st.contains("filter not applied"), "{st}");
    // With a working filter the look-up proves absence and the slice goes out, once.
    f.ignore_metadata_filter(false);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    deliver(&site);
    assert_eq!(recorded(&f.events()), expected(&site.db, &["research-team", "engineering", "hpc_proj1"]));
}

/// What an item pins when it is planned (allocation, SKU, billed TRES) is what it is sent with,
/// even when the mapping and the TRES are changed before it leaves: the quantity was metered for
/// that TRES, and a look-up must search the allocation it went to.
#[test]
fn items_planned_before_a_config_change_go_out_as_planned() {
    let site = site();
    let f = fake(&["alloc-rt", "alloc-eng", "alloc-p1", "alloc-new"]);
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    // Planned, nothing sent yet (the platform is down, say).
    let (code, out, err) = slurm_ledger(&site, &["deliver", "--limit", "0"], Some(KEY));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(f.events().is_empty());
    let planned = Ledger::open(&site.db).unwrap().deliveries("activate", Some(DeliveryState::Pending)).unwrap().len();
    assert!(planned > 0);
    // Another mapping, another SKU, another TRES.
    let text = std::fs::read_to_string(&site.cfg)
        .unwrap()
        .replace("alloc-rt", "alloc-new")
        .replace("default_sku = \"standard-compute\"\n", "default_sku = \"other-sku\"\ntres = \"mem\"\n");
    std::fs::write(&site.cfg, text).unwrap();
    // A changed TRES is refused until accepted (tests/it/terms_change.rs); accepted here.
    let (code, out, err) = slurm_ledger(&site, &["accept-terms", "--sink", "activate"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    deliver(&site);
    let events = f.events();
    assert_eq!(events.len(), planned, "every planned item went out once");
    for e in &events {
        let meta = e.metadata.as_ref().unwrap();
        assert_ne!(e.allocation, "alloc-new", "{e:?}");
        assert!(e.sku == "standard-compute" || e.sku == "gpu-compute", "{e:?}");
        assert_eq!(meta["tres"], "cpu", "{e:?}");
    }
    assert_eq!(recorded(&events), expected(&site.db, &["research-team", "engineering", "hpc_proj1"]));
}

/// `retry` after a fix re-routes a rejected item (its allocation, its SKU) but never changes what
/// it was metered as: planned as core-hours, it is sent as core-hours even after the TRES changed
/// and was accepted.
#[test]
fn retry_reroutes_but_keeps_the_tres_an_item_was_metered_as() {
    let site = site();
    let f = fake(&["alloc-rt"]);
    // engineering's and hpc_proj1's allocations are unknown to the platform: 404, rejected.
    write_cfg(&site, &f.base_url(), ALL_MAPPED);
    deliver(&site);
    let rejected = Ledger::open(&site.db).unwrap().deliveries("activate", Some(DeliveryState::Rejected)).unwrap().len();
    assert!(rejected > 0);
    let before = f.events().len();
    write_cfg(
        &site,
        &f.base_url(),
        "research-team = \"alloc-rt\"\nengineering = \"alloc-rt\"\nhpc_proj1 = \"alloc-rt\"\n",
    );
    let text = std::fs::read_to_string(&site.cfg).unwrap().replace("running_slice", "tres = \"mem\"\nrunning_slice");
    std::fs::write(&site.cfg, text).unwrap();
    let (code, out, err) = slurm_ledger(&site, &["accept-terms", "--sink", "activate"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = slurm_ledger(&site, &["retry", "--sink", "activate"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    deliver(&site);
    let events = f.events();
    let retried = &events[before..];
    assert!(retried.len() >= rejected, "{} sent after the retry", retried.len());
    for e in retried.iter().filter(|e| e.metadata.as_ref().unwrap()["account"] != "research-team") {
        assert_eq!(e.allocation, "alloc-rt", "re-routed: {e:?}");
        assert_eq!(e.metadata.as_ref().unwrap()["tres"], "cpu", "metered as core-hours, sent as such: {e:?}");
    }
}
