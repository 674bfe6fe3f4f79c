//! Counting runs into period totals: over any growth of a run, polled at any times, in any zone
//! (DST included), the seconds counted per period are exactly the run's seconds in that period,
//! and they add up to its elapsed time, never twice.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::meter::period::PeriodKind;
use crate::model::{ClusterName, JobKey, JobState};

fn counting(zone: &str, min_running_secs: i64, allow_decrease: bool) -> Counting {
    Counting {
        calendar: Calendar { kind: PeriodKind::Month, tz: TimeZone::get(zone).unwrap() },
        min_running_secs,
        allow_decrease,
    }
}

fn run(start: i64, elapsed: u64, state: JobState) -> JobRun {
    let mut j = JobRun::new(
        JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 7, submit: UnixTime(start) },
        "7".into(),
    );
    j.start = Some(UnixTime(start));
    j.elapsed_secs = elapsed;
    j.state = state;
    j
}

/// Counts the run through its polls; returns seconds per period label.
fn count_through(c: &Counting, start: i64, polls: &[u64], final_elapsed: u64) -> BTreeMap<String, i64> {
    let mut mark = RunMark::default();
    let mut per: BTreeMap<String, i64> = BTreeMap::new();
    let mut elapsed = 0u64;
    let steps = polls.iter().map(|g| (*g, JobState::Running)).chain([(0, JobState::Completed)]);
    for (grow, state) in steps {
        elapsed = if state == JobState::Completed { final_elapsed } else { elapsed + grow };
        match c.count(&run(start, elapsed, state), &mark) {
            Count::Pieces { pieces, next } => {
                for p in pieces {
                    *per.entry(c.calendar.label(p.period.0)).or_default() += p.secs;
                }
                mark = next;
            }
            Count::Hold(reason) => panic!("held: {reason}"),
        }
    }
    assert!(mark.done, "a completed run is done");
    per
}

/// The run's seconds in each period, counted directly second-range by period.
fn expected(c: &Counting, start: i64, elapsed: u64) -> BTreeMap<String, i64> {
    let mut per = BTreeMap::new();
    for (a, b) in c.calendar.pieces(UnixTime(start), UnixTime(start + elapsed as i64)) {
        *per.entry(c.calendar.label(a)).or_default() += b.0 - a.0;
    }
    per
}

#[test]
fn a_run_across_new_year_in_berlin_counts_each_month_for_its_own_seconds() {
    let c = counting("Europe/Berlin", 0, false);
    // 2026-12-31T22:00Z is 23:00 in Berlin: one hour in December, then five in January.
    let start = 1_798_754_400; // 2026-12-31T22:00:00Z
    let per = count_through(&c, start, &[1800, 1800], 6 * 3600);
    assert_eq!(per, BTreeMap::from([("2026-12".to_string(), 3600), ("2027-01".to_string(), 5 * 3600)]));
}

#[test]
fn less_time_than_counted_is_held_unless_decreases_are_allowed() {
    let start = 1_795_300_000;
    let prev = RunMark { mark: Some(start + 1000), done: false, hold: None };
    match counting("UTC", 0, false).count(&run(start, 400, JobState::Completed), &prev) {
        Count::Hold(reason) => assert!(reason.contains("600 s less") && reason.contains("allow_decrease"), "{reason}"),
        other => panic!("{other:?}"),
    }
    match counting("UTC", 0, true).count(&run(start, 400, JobState::Completed), &prev) {
        Count::Pieces { pieces, next } => {
            assert_eq!(pieces.iter().map(|p| p.secs).sum::<i64>(), -600);
            assert_eq!(next.mark, Some(start + 400));
            assert!(next.done);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_running_run_waits_for_enough_new_time() {
    let c = counting("UTC", 900, false);
    let start = 1_795_300_000;
    let prev = RunMark { mark: Some(start + 100), done: false, hold: None };
    match c.count(&run(start, 500, JobState::Running), &prev) {
        Count::Pieces { pieces, next } => assert!(pieces.is_empty() && next.mark == Some(start + 100)),
        other => panic!("{other:?}"),
    }
    match c.count(&run(start, 500, JobState::Completed), &prev) {
        Count::Pieces { pieces, next } => {
            assert_eq!(pieces.iter().map(|p| p.secs).sum::<i64>(), 400, "the final remainder always counts");
            assert!(next.done);
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn per_month_counts_add_up_to_each_runs_seconds_in_every_zone(
        zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham"]),
        // Starts spread over two years, so that month ends and DST changes fall inside runs.
        start in 1_767_225_600i64..1_830_297_600,
        polls in prop::collection::vec(0u64..40 * 86_400, 0..6),
        extra in 0u64..5 * 86_400,
        min_running in prop::sample::select(vec![0i64, 900, 86_400]),
    ) {
        let c = counting(zone, min_running, false);
        let final_elapsed = polls.iter().sum::<u64>() + extra;
        let per = count_through(&c, start, &polls, final_elapsed);
        prop_assert_eq!(per.values().sum::<i64>(), final_elapsed as i64);
        prop_assert_eq!(per, expected(&c, start, final_elapsed));
    }
}
