//! `deliver` to the Waldur fake, on the ledger of a recorded real testbed poll (the demo's): the
//! fake's month totals per resource, component and user equal the ledger's exact figures
//! converted with `unit_factor` (to the cent); a second pass posts nothing; under injected
//! faults the totals end the same; an account without a resource waits in `status`, not dropped.

use std::collections::BTreeMap;

use slurm_ledger::ledger::{JobFilter, Ledger};
use slurm_ledger::meter::{billed_count, Basis};

use crate::deliver_activate::{run_site, site, Site};
use crate::fakes::waldur::{FakeWaldur, Fault, FaultMix, WaldurConfig};

pub(crate) const TOKEN: &str = "tok-3a7f-secret";
pub(crate) const OFFERING: &str = "5d4e0f2a7c3b4e1d9a8b0c1d2e3f4a5b";

pub(crate) fn fake(accounts: &[&str], mix: FaultMix) -> FakeWaldur {
    FakeWaldur::start(config(accounts, mix))
}

/// The fake's config: a resource per account (its backend_id), cpu and mem usage components.
pub fn config(accounts: &[&str], mix: FaultMix) -> WaldurConfig {
    // The recorded poll is of 2026-11-22: November is the current month.
    WaldurConfig { faults: mix, ..WaldurConfig::with_accounts(OFFERING, accounts, TOKEN, "Hours", "2026-11-25") }
}

/// A grace that keeps November 2026 (the recorded poll's month) open today, whatever today is.
pub(crate) fn open_grace() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    format!("{}d", (now - 1_796_083_200).max(0) / 86_400 + 30) // 2026-12-01T00:00Z
}

fn write_cfg(site: &Site, url: &str) {
    write_cfg_grace(site, url, &open_grace());
}

fn write_cfg_grace(site: &Site, url: &str, grace: &str) {
    let text = format!(
        "[delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n\
         [sinks.waldur]\nurl = \"{url}\"\noffering_uuid = \"{OFFERING}\"\ntimeout_secs = 2\nrunning_slice = \"1s\"\ngrace = \"{grace}\"\n\
         [sinks.waldur.components.cpu]\nunit_factor = 60\nmeasured_unit = \"Hours\"\n[sinks.waldur.components.mem]\nunit_factor = 61440\n"
    );
    std::fs::write(&site.cfg, text).unwrap();
}

pub(crate) fn slurm_ledger(site: &Site, args: &[&str]) -> (i32, String, String) {
    run_site(site, args, &[("SLURM_LEDGER_WALDUR_TOKEN", TOKEN)], &[TOKEN], "warn")
}

/// The ledger's exact totals, independently: per (account, "2026-11", component) and per user,
/// in TRES-seconds (memory in MiB-seconds), every run's whole billable time (all in November UTC).
pub(crate) type Totals<V> = (BTreeMap<(String, String, String), V>, BTreeMap<(String, String, String, String), V>);

fn ledger_totals(site: &Site) -> Totals<i64> {
    let ledger = Ledger::open(&site.db).unwrap();
    let (mut per, mut users) = (BTreeMap::new(), BTreeMap::new());
    for j in ledger.jobs(&JobFilter { limit: None, ..Default::default() }).unwrap() {
        if j.start.is_none() || j.elapsed_secs == 0 {
            continue;
        }
        for (tres, shift) in [("cpu", 0), ("mem", 20)] {
            let n = (billed_count(&j, Basis::Allocated, tres) >> shift) as i64 * j.elapsed_secs as i64;
            if n == 0 {
                continue;
            }
            let k = (j.account.clone(), "2026-11".to_string(), tres.to_string());
            *per.entry(k).or_default() += n;
            *users.entry((j.account.clone(), "2026-11".into(), tres.into(), j.user.clone())).or_default() += n;
        }
    }
    (per, users)
}

/// Hundredths of `total` unit-seconds at `unit_factor` TRES-minutes per unit, half up, as text.
fn amount(total: i64, unit_factor: i64) -> String {
    let c = (total as i128 * 100 + 30 * unit_factor as i128) / (60 * unit_factor as i128);
    format!("{}.{:02}", c / 100, c % 100)
}

pub(crate) fn expected(site: &Site) -> Totals<String> {
    let uf = |tres: &str| if tres == "cpu" { 60 } else { 61440 };
    let (per, users) = ledger_totals(site);
    (
        per.into_iter().map(|(k, t)| (k.clone(), amount(t, uf(&k.2)))).collect(),
        users.into_iter().map(|(k, t)| (k.clone(), amount(t, uf(&k.2)))).collect(),
    )
}

pub(crate) const ACCOUNTS: [&str; 3] = ["research-team", "engineering", "hpc_proj1"];

#[test]
fn totals_per_resource_month_component_and_user_are_exact_and_not_posted_again() {
    let site = site();
    let fake = fake(&ACCOUNTS, FaultMix::default());
    write_cfg(&site, &fake.base_url());
    let (code, out, err) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (per, users) = expected(&site);
    assert!(!per.is_empty() && per.keys().all(|k| ACCOUNTS.contains(&k.0.as_str())), "{per:?}");
    assert_eq!(fake.usages(), per);
    assert_eq!(fake.user_usages(), users);
    // Waldur is read once per resource and month (its totals again once they were set, for
    // their uuids: a batch sends its totals before its users' parts), not once per item: a read
    // per item made a 1M-job day's cycle 3 times slower.
    let reads = |path: &str| fake.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with(path)).count();
    assert_eq!(reads("/marketplace-component-user-usages/"), ACCOUNTS.len(), "{out}");
    assert_eq!(reads("/marketplace-component-usages/"), 2 * ACCOUNTS.len(), "{out}");
    let writes = fake.writes();
    let (code, out, _) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fake.writes(), writes, "a second pass posted again:\n{out}");
    assert!(out.contains("0 new deliveries"), "{out}");
}

#[test]
fn under_faults_the_totals_end_exact() {
    let site = site();
    let mix = FaultMix {
        weights: vec![
            // About one request in four fails (reads too); a send makes two to four.
            (0.05, Fault::Status5xxBefore(503)),
            (0.06, Fault::Status5xxAfter(502)),
            (0.05, Fault::DropAfter),
            (0.04, Fault::DropBefore),
            (0.03, Fault::TooMany { retry_after_secs: 1 }),
            (0.02, Fault::TimeoutAfter { secs: 3 }),
        ],
        on_get: true,
    };
    let fake = fake(&ACCOUNTS, mix);
    write_cfg(&site, &fake.base_url());
    let mut left = true;
    for _ in 0..40 {
        let (code, out, err) = slurm_ledger(&site, &["deliver"]);
        assert!(matches!(code, 0 | 1), "{out}\n{err}");
        let st = slurm_ledger(&site, &["status", "--format", "json"]).1;
        let v: serde_json::Value = serde_json::from_str(&st).unwrap();
        left = v["sinks"].as_array().unwrap().iter().any(|s| s["sink"] == "waldur" && s["backlog"].as_u64() != Some(0));
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert!(!left, "a backlog was left after 40 passes:\n{}", slurm_ledger(&site, &["status"]).1);
    let (per, users) = expected(&site);
    assert_eq!(fake.usages(), per);
    assert_eq!(fake.user_usages(), users);
    assert!(fake.fault_counts().values().sum::<u64>() > 0, "no fault was injected");
}

#[test]
fn an_account_without_a_resource_waits_in_status_and_goes_once_it_exists() {
    let site = site();
    let fake = fake(&ACCOUNTS[..2], FaultMix::default());
    write_cfg(&site, &fake.base_url());
    let (code, out, err) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "the others went through; hpc_proj1 waits: {out}\n{err}");
    let (_, status, _) = slurm_ledger(&site, &["status"]);
    assert!(status.contains("backlog:") && status.contains("has backend_id \"hpc_proj1\""), "{status}");
    let (per, _) = ledger_totals(&site);
    let cpu = per[&("hpc_proj1".to_string(), "2026-11".to_string(), "cpu".to_string())];
    assert!(
        status.contains(&format!(
            "owed: wd:waldur:2026-11:hpc_proj1|cpu: the platform has nothing set by slurm-ledger yet; the ledger 0.00 Hours (exact {cpu}): retry"
        )),
        "{status}"
    );
    let (per, _) = expected(&site);
    let others: BTreeMap<_, _> =
        per.iter().filter(|(k, _)| k.0 != "hpc_proj1").map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(fake.usages(), others, "the other accounts are reported meanwhile");
}

#[test]
fn a_month_past_its_grace_is_not_reported_and_says_how() {
    let site = site();
    let fake = fake(&ACCOUNTS, FaultMix::default());
    // November 2026 ended on 2026-12-01: with no grace, it is closed today.
    write_cfg_grace(&site, &fake.base_url(), "0s");
    let (code, out, _) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 1, "rejected, for the admin to see: {out}");
    assert!(fake.usages().is_empty() && fake.user_usages().is_empty(), "nothing posted");
    let (_, status, _) = slurm_ledger(&site, &["status"]);
    assert!(status.contains("2026-11 ended more than grace") && status.contains("staff token"), "{status}");
    // With a grace that covers it, `retry` reports them, exactly.
    write_cfg(&site, &fake.base_url());
    let (code, out, _) = slurm_ledger(&site, &["retry", "--sink", "waldur"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(fake.usages(), expected(&site).0);
}

/// A user's part links the offering user of that username when Waldur lists one (as the site
/// agent sends it), and goes by username alone otherwise.
#[test]
fn a_users_part_links_its_offering_user_when_waldur_has_one() {
    let site = site();
    let url = "https://waldur.example.org/api/marketplace-offering-users/0c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5/";
    let mut cfg = config(&ACCOUNTS, FaultMix::default());
    cfg.offering_users = vec![crate::fakes::waldur::OfferingUser { username: "alice".into(), url: url.into() }];
    let fake = FakeWaldur::start(cfg);
    write_cfg(&site, &fake.base_url());
    let (code, out, err) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let parts: Vec<String> =
        fake.requests().into_iter().filter(|r| r.path.ends_with("/set_user_usages/")).map(|r| r.body).collect();
    let (alice, others): (Vec<&String>, Vec<&String>) =
        parts.iter().partition(|b| b.contains("\"username\":\"alice\""));
    assert!(!alice.is_empty() && !others.is_empty(), "{parts:?}");
    assert!(alice.iter().all(|b| b.contains(&format!("\"user\":\"{url}\""))), "{alice:?}");
    assert!(others.iter().all(|b| !b.contains("\"user\"")), "{others:?}");
    assert_eq!(fake.user_usages(), expected(&site).1);
}
