//! Property tests: over random poll histories, crashes and period boundaries, a run's slices
//! never overlap and add up exactly to its total.

use proptest::prelude::*;

use super::*;
use crate::meter::period::PeriodKind;
use crate::model::{ClusterName, JobKey, JobState, Tres};

fn cal(kind: PeriodKind) -> Calendar {
    Calendar { kind, tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap() }
}

fn run(start: i64, elapsed: u64, state: JobState, cpus: u64) -> JobRun {
    let mut j = JobRun::new(
        JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 7, submit: UnixTime(start - 5) },
        "7".into(),
    );
    j.start = Some(UnixTime(start));
    j.elapsed_secs = elapsed;
    j.state = state;
    j.alloc_tres = Tres::from_pairs([("cpu".to_string(), cpus)]);
    j
}

#[test]
fn a_finished_job_is_planned_in_one_go_and_cut_at_midnight() {
    // 2026-11-21T22:00Z .. 2026-11-22T01:00Z: Berlin midnight is 23:00Z.
    let start = 1_795_298_400;
    let j = run(start, 3 * 3600, JobState::Completed, 4);
    let p = plan_run(&j, &RunMark::default(), 4, Unit::HOURS, &cal(PeriodKind::Day), 0);
    assert_eq!(p.slices.len(), 2);
    assert_eq!(p.slices[0].end.0, start + 3600);
    let total: u128 = p.slices.iter().map(|s| s.quantity).sum();
    assert_eq!(Unit::HOURS.format(total), "12.000000");
    assert!(p.next.done);
    // Planning again adds nothing.
    let again = plan_run(&j, &p.next, 4, Unit::HOURS, &cal(PeriodKind::Day), 0);
    assert!(again.slices.is_empty());
}

#[test]
fn less_time_than_planned_is_held_with_a_reason() {
    let j = run(1000, 50, JobState::Completed, 1);
    let prev = RunMark { mark: Some(1100), done: false, hold: None };
    let p = plan_run(&j, &prev, 1, Unit::HOURS, &cal(PeriodKind::Month), 0);
    assert!(p.slices.is_empty());
    assert!(p.next.hold.unwrap().contains("sacct -j 7"));
    assert_eq!(p.next.mark, Some(1100), "the frontier never moves back");
}

#[test]
fn never_started_is_complete_without_slices() {
    let mut j = run(1000, 0, JobState::Cancelled, 2);
    j.start = None;
    let p = plan_run(&j, &RunMark::default(), 2, Unit::HOURS, &cal(PeriodKind::Day), 0);
    assert!(p.slices.is_empty() && p.next.done);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A run observed at random polls (elapsed grows, suspensions make it grow slower than the
    /// wall clock), planned after each poll, where a random subset of plans crash before they
    /// are committed: the committed slices are contiguous, never overlap, and add up exactly to
    /// the final total, in every period calendar.
    #[test]
    fn slices_partition_the_run_exactly(
        start in 1_790_000_000i64..1_800_000_000,
        cpus in 1u64..256,
        steps in prop::collection::vec((1u64..40_000, any::<bool>()), 1..30),
        monthly in any::<bool>(),
        utc in any::<bool>(),
        min_slice in 0i64..3600,
    ) {
        let kind = if monthly { PeriodKind::Month } else { PeriodKind::Day };
        // UTC takes the calendar's integer path, Berlin the zone-rules path.
        let calendar = if utc { Calendar { kind, tz: jiff::tz::TimeZone::UTC } } else { cal(kind) };
        let mut state = RunMark::default();
        let mut committed: Vec<Slice> = Vec::new();
        let mut elapsed = 0u64;
        for (grow, crash) in &steps {
            elapsed += grow;
            let j = run(start, elapsed, JobState::Running, cpus);
            let p = plan_run(&j, &state, cpus, Unit::HOURS, &calendar, min_slice);
            if !crash {
                committed.extend(p.slices.iter().copied());
                state = p.next;
            }
        }
        // The run ends; the last plan (after any crash, planning is simply repeated) commits.
        let j = run(start, elapsed, JobState::Completed, cpus);
        let p = plan_run(&j, &state, cpus, Unit::HOURS, &calendar, min_slice);
        committed.extend(p.slices.iter().copied());
        prop_assert!(p.next.done);
        for w in committed.windows(2) {
            prop_assert!(w[0].end <= w[1].start, "overlap: {:?} then {:?}", w[0], w[1]);
        }
        for s in &committed {
            prop_assert!(s.start >= UnixTime(start) && s.end.0 <= start + elapsed as i64);
            let (a, b) = calendar.period_of(s.start);
            prop_assert!(s.start >= a && s.end <= b, "slice crosses a period boundary");
        }
        let sum: u128 = committed.iter().map(|s| s.quantity).sum();
        prop_assert_eq!(sum, Unit::HOURS.quantize(tres_seconds(cpus, elapsed)));
    }
}
