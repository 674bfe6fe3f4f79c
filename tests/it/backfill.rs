//! `backfill` to the Waldur fake, with Slurm played by a `sacct` script in `[slurm] bin_dir` that
//! answers every window with the recorded real testbed poll (tests/fixtures/testbed/, 28 runs of
//! 2026-11-22), logs each call, and fails a chosen window: the windows are no longer than
//! `max_query_time_range`; past months need a staff token, checked before anything is read; a
//! month whose window failed is not delivered while the others are; the same command resumes
//! with only what failed, and a third run reads and posts nothing. The fake's November totals end
//! exact to the cent.

use std::path::Path;

use crate::common::fake_sacct;
use crate::deliver_activate::{empty_site, Site};
use crate::deliver_waldur::{expected, fake, slurm_ledger, Totals, ACCOUNTS, OFFERING};
use crate::fakes::waldur::{FakeWaldur, FaultMix};

/// The window polls logged so far (`--parsable2` calls), each as its `--starttime`.
fn polls(dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("--parsable2"))
        .filter_map(|l| l.split(' ').find_map(|a| a.strip_prefix("--starttime=")).map(str::to_string))
        .collect()
}

/// The expected totals of the cpu component (the one these sites configure).
fn cpu_only((per, users): Totals<String>) -> Totals<String> {
    (per.into_iter().filter(|(k, _)| k.2 == "cpu").collect(), users.into_iter().filter(|(k, _)| k.2 == "cpu").collect())
}

fn today() -> String {
    jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date().to_string()
}

/// A fresh site whose Slurm is [`fake_sacct`] (in `bin`), and the Waldur fake (today's date),
/// configured with `slurm` in `[slurm]` and `waldur` in `[sinks.waldur]`.
fn sacct_site(slurm: &str, waldur_keys: &str) -> (Site, std::path::PathBuf, FakeWaldur) {
    let site = empty_site();
    let bin = site.cfg.parent().unwrap().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_sacct(&bin);
    let waldur = fake(&ACCOUNTS, FaultMix::default());
    waldur.set_today(&today());
    std::fs::write(
        &site.cfg,
        format!(
            "[slurm]\nclusters = [\"testcluster\"]\nbin_dir = \"{}\"\n{slurm}\n\
             [sinks.waldur]\nurl = \"{}\"\noffering_uuid = \"{OFFERING}\"\ntimeout_secs = 2\nrunning_slice = \"1s\"\n\
             {waldur_keys}\n[sinks.waldur.components.cpu]\nunit_factor = 60\n",
            bin.display(),
            waldur.base_url()
        ),
    )
    .unwrap();
    (site, bin, waldur)
}

#[test]
fn backfill_reads_in_windows_checks_staff_isolates_a_failed_month_and_resumes() {
    let (site, bin, waldur) = sacct_site("max_query_time_range = \"7d\"", "");
    let args = ["backfill", "--from", "2026-10", "--to", "2026-11"];

    // The plan: October and November, each from 14 h before to 14 h after it (a month in any
    // zone is read whole), in 5 windows of at most 7 days. Nothing read, no ledger made.
    let (code, out, err) = slurm_ledger(&site, &["backfill", "--from", "2026-10", "--to", "2026-11", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("2026-10: read testcluster in 5 sacct calls (to do)"), "{out}");
    assert!(out.contains("in all: 10 sacct calls still to make"), "{out}");
    assert!(polls(&bin).is_empty() && !site.db.exists(), "a dry run reads and writes nothing");

    // Waldur takes past months only from staff: refused before any window is read.
    let (code, out, err) = slurm_ledger(&site, &args);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("is not staff"), "{err}");
    assert!(polls(&bin).is_empty(), "nothing read before the staff check");

    // October's third window fails: October is not delivered, November is, exactly.
    waldur.set_staff(true);
    std::fs::write(bin.join("fail"), "--starttime=2026-10-14").unwrap();
    let (code, out, err) = slurm_ledger(&site, &args);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("2026-10: FAILED") && out.contains("Query took too long"), "{out}");
    assert!(out.contains("2026-11: done"), "{out}");
    let first = polls(&bin);
    assert_eq!(
        first,
        [
            "2026-09-30T10:00:00",
            "2026-10-07T10:00:00",
            "2026-10-14T10:00:00",
            "2026-10-31T10:00:00",
            "2026-11-07T10:00:00",
            "2026-11-14T10:00:00",
            "2026-11-21T10:00:00",
            "2026-11-28T10:00:00"
        ],
        "October stops at its failed window; November is read in windows of 7 days, from 14 h before it"
    );
    let (per, users) = cpu_only(expected(&site));
    assert!(!per.is_empty());
    assert_eq!(waldur.usages(), per, "November's totals exact to the cent");
    assert_eq!(waldur.user_usages(), users);
    let writes = waldur.writes();

    // Resumed: only October is read again; November is neither read nor posted again.
    std::fs::remove_file(bin.join("fail")).unwrap();
    let (code, out, err) = slurm_ledger(&site, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("2026-11: done — testcluster read before; waldur reported before"), "{out}");
    let second = &polls(&bin)[first.len()..];
    assert_eq!(second.len(), 5, "{second:?}");
    assert!(second.iter().all(|s| s.as_str() < "2026-11"), "{second:?}");
    assert_eq!(waldur.writes(), writes, "nothing posted again");

    // Done: nothing read, nothing posted.
    let (code, out, err) = slurm_ledger(&site, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(polls(&bin).len(), first.len() + 5);
    assert_eq!(waldur.writes(), writes);
    assert_eq!(waldur.usages(), per);
}

/// Reporting to Waldur asks Slurm nothing: `run` makes its one window poll whatever the number
/// of accounts (the site agent makes one `sacct` per account), and `deliver` makes no Slurm call
/// at all.
#[test]
fn reporting_to_waldur_adds_no_sacct_call() {
    let (site, bin, waldur) = sacct_site("", "grace = \"3650d\"");
    waldur.set_staff(true);
    let (code, out, err) = slurm_ledger(&site, &["run"]);
    assert!(code == 0 || code == 3, "{out}\n{err}");
    let log = || std::fs::read_to_string(bin.join("calls.log")).unwrap_or_default();
    assert_eq!(polls(&bin).len(), 1, "one window poll for {} accounts:\n{}", ACCOUNTS.len(), log());
    let (cpu, _) = cpu_only(expected(&site));
    assert_eq!(waldur.usages(), cpu, "{out}");
    let before = log();
    let (code, out, err) = slurm_ledger(&site, &["deliver"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(log(), before, "deliver called Slurm");
}

/// Only the months asked for are reopened: a backfill of October reads jobs that run into
/// November (every window here answers with November's jobs), and November's partial totals are
/// refused as closed (its grace is over), not posted; a backfill of November then puts those
/// back and reports them, exactly.
#[test]
fn a_backfill_reports_only_its_months_and_takes_back_what_a_pass_refused_in_them() {
    let (site, _bin, waldur) = sacct_site("max_query_time_range = \"7d\"", "grace = \"0s\"");
    waldur.set_staff(true);
    let (code, out, err) = slurm_ledger(&site, &["backfill", "--from", "2026-10", "--to", "2026-10"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(waldur.usages().is_empty(), "November posted by October's backfill: {:?}", waldur.usages());
    let (_, status, _) = slurm_ledger(&site, &["status"]);
    assert!(status.contains("owed: wd:waldur:2026-11:") && status.contains(": rejected"), "{status}");
    assert!(
        status.contains("outside this backfill's months (2026-10 to 2026-10)")
            && status.contains("`slurm-ledger backfill --from 2026-11 --to 2026-11`"),
        "the refusal says the total is partial and how to report it whole: {status}"
    );

    let (code, out, err) = slurm_ledger(&site, &["backfill", "--from", "2026-11", "--to", "2026-11"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("refused before put back"), "{out}");
    let (per, users) = cpu_only(expected(&site));
    assert_eq!(waldur.usages(), per);
    assert_eq!(waldur.user_usages(), users);
}
