//! The frontier rule, one test per case of the tracker's behaviour (see `mod.rs`).

use super::*;

const T0: i64 = 1_780_000_000;

/// A row as the tracker writes it for a running job: `Start + ElapsedRaw`.
fn running_row(job_id: u64, start: i64, elapsed: i64) -> TrackerJobState {
    TrackerJobState {
        job_id,
        last_reported_elapsed: elapsed,
        last_reported_at: start + elapsed,
        total_core_hours: 1.0,
        completed_at: 0,
    }
}

/// A row as the tracker writes it for a completed job: `End`, and `completed_at = now()`.
fn completed_row(job_id: u64, elapsed: i64, end: i64) -> TrackerJobState {
    TrackerJobState {
        job_id,
        last_reported_elapsed: elapsed,
        last_reported_at: end,
        total_core_hours: 1.0,
        completed_at: end + 123,
    }
}

fn run(start: i64, elapsed_secs: i64, is_final: bool, end: Option<i64>) -> RunFacts {
    RunFacts { start, elapsed_secs, is_final, end }
}

fn frontier(reported_until: i64, complete: bool) -> Result<ImportedFrontier, NotImported> {
    Ok(ImportedFrontier { reported_until, complete })
}

#[test]
fn running_job_billed_up_to_start_plus_reported_elapsed() {
    let row = running_row(7, T0, 600);
    assert_eq!(imported_frontier(&row, &run(T0, 900, false, None)), frontier(T0 + 600, false));
    // The ledger saw the same instant the tracker did.
    assert_eq!(imported_frontier(&row, &run(T0, 600, false, None)), frontier(T0 + 600, false));
}

#[test]
fn job_that_ended_while_the_tracker_was_away_keeps_its_remainder() {
    // Contracts §1.3 #1 and #3: the row stays "running"; the run ended (or OOM'd) with more time.
    let row = running_row(7, T0, 600);
    assert_eq!(imported_frontier(&row, &run(T0, 1000, true, Some(T0 + 1000))), frontier(T0 + 600, false));
}

#[test]
fn final_poll_with_no_new_time_is_complete() {
    // The tracker skips a delta of 0 and never marks the row completed; nothing is left to bill.
    let row = running_row(7, T0, 600);
    assert_eq!(imported_frontier(&row, &run(T0, 600, true, Some(T0 + 600))), frontier(T0 + 600, true));
}

#[test]
fn completed_job_is_complete() {
    let row = completed_row(7, 3600, T0 + 3600);
    assert_eq!(imported_frontier(&row, &run(T0, 3600, true, Some(T0 + 3600))), frontier(T0 + 3600, true));
    assert_eq!(
        imported_frontier(&row, &run(T0, 3600, true, None)),
        frontier(T0 + 3600, true),
        "End unknown to the ledger"
    );
}

#[test]
fn suspended_job_frontier_is_start_plus_elapsed_not_end() {
    // Completed after 600 s suspended: End = start + elapsed + 600 (contracts §1.3 #8).
    let row = completed_row(7, 3600, T0 + 4200);
    assert_eq!(imported_frontier(&row, &run(T0, 3600, true, Some(T0 + 4200))), frontier(T0 + 3600, true));
    assert_eq!(imported_frontier(&row, &run(T0, 3600, true, None)), frontier(T0 + 3600, true));
    // Suspended while running: ElapsedRaw excludes it, and so did the tracker's Start + ElapsedRaw.
    let row = running_row(7, T0, 300);
    assert_eq!(imported_frontier(&row, &run(T0, 500, false, None)), frontier(T0 + 300, false));
}

#[test]
fn completed_row_but_run_still_running() {
    let row = completed_row(7, 3600, T0 + 3600);
    assert_eq!(imported_frontier(&row, &run(T0, 3000, false, None)), Err(NotImported::TrackerSawEnd));
    assert_eq!(imported_frontier(&row, &run(T0, 3600, false, None)), Err(NotImported::TrackerSawEnd));
}

#[test]
fn completed_row_with_less_time_than_the_ledger_bills_the_rest() {
    // Slurm re-accounted after the tracker finished: the difference is still owed.
    let row = completed_row(7, 3500, T0 + 3600);
    assert_eq!(imported_frontier(&row, &run(T0, 3600, true, Some(T0 + 3600))), frontier(T0 + 3500, false));
}

#[test]
fn completed_row_of_another_run_by_end() {
    let row = completed_row(7, 3600, T0 + 3600);
    assert_eq!(
        imported_frontier(&row, &run(T0 + 10, 3600, true, Some(T0 + 3610))),
        Err(NotImported::EndMismatch { tracker_end: T0 + 3600, run_end: T0 + 3610 })
    );
    // Without the ledger's End: End cannot be before start + elapsed.
    assert_eq!(
        imported_frontier(&row, &run(T0 + 10, 3600, true, None)),
        Err(NotImported::EndMismatch { tracker_end: T0 + 3600, run_end: T0 + 3610 })
    );
}

#[test]
fn run_not_started() {
    let row = running_row(7, T0, 600);
    assert_eq!(
        imported_frontier(&row, &run(0, 0, false, None)),
        Err(NotImported::RunNotStarted { reported_secs: 600 })
    );
    assert_eq!(
        imported_frontier(&row, &run(T0, -1, false, None)),
        Err(NotImported::RunNotStarted { reported_secs: 600 })
    );
}

#[test]
fn more_reported_than_the_run_has_is_another_run() {
    let row = running_row(7, T0, 600);
    let e = imported_frontier(&row, &run(T0, 599, false, None)).unwrap_err();
    assert_eq!(e, NotImported::MoreThanRun { reported_secs: 600, run_elapsed_secs: 599 });
    assert!(e.to_string().contains("try the job's other runs"), "{e}");
}

#[test]
fn running_row_of_another_run_by_start() {
    let row = running_row(7, T0, 600);
    let e = imported_frontier(&row, &run(T0 + 3600, 900, false, None)).unwrap_err();
    assert_eq!(e, NotImported::StartMismatch { implied_start: T0, run_start: T0 + 3600 });
    assert!(e.to_string().contains("time zone"), "{e}");
}

#[test]
fn requeue_row_written_by_the_old_run() {
    // Old run: started T0, tracker reported 600 s, requeued at 700 s (REQUEUED: the tracker
    // ignores it). New run: started T0+1000, only 300 s so far (negative delta: tracker skipped).
    let row = running_row(7, T0, 600);
    let new_run = run(T0 + 1000, 300, false, None);
    let old_run = run(T0, 700, true, Some(T0 + 700));
    assert_eq!(
        imported_frontier(&row, &new_run),
        Err(NotImported::MoreThanRun { reported_secs: 600, run_elapsed_secs: 300 })
    );
    assert_eq!(
        pick_run(&row, &[new_run, old_run]),
        Ok((1, ImportedFrontier { reported_until: T0 + 600, complete: false }))
    );
    // The new run has grown past the old one's reported time, but the tracker has not reported yet.
    let new_run = run(T0 + 1000, 650, false, None);
    assert_eq!(
        imported_frontier(&row, &new_run),
        Err(NotImported::StartMismatch { implied_start: T0, run_start: T0 + 1000 })
    );
    assert_eq!(pick_run(&row, &[new_run, old_run]).map(|(i, _)| i), Ok(1));
}

#[test]
fn requeue_row_taken_over_by_the_new_run() {
    // Contracts §1.3 #4: once the new run passed 600 s the tracker billed the difference and saved
    // the new run's Start + ElapsedRaw. The row is the new run's; the old run gets nothing, so in
    // total exactly last_reported_elapsed seconds count as billed.
    let row = running_row(7, T0 + 1000, 800);
    let new_run = run(T0 + 1000, 900, false, None);
    let old_run = run(T0, 700, true, Some(T0 + 700));
    assert_eq!(
        pick_run(&row, &[new_run, old_run]),
        Ok((0, ImportedFrontier { reported_until: T0 + 1800, complete: false }))
    );
    assert_eq!(
        imported_frontier(&row, &old_run),
        Err(NotImported::MoreThanRun { reported_secs: 800, run_elapsed_secs: 700 })
    );
}

#[test]
fn job_requeued_after_the_tracker_completed_it() {
    // The tracker skips a completed row forever, so the new run was never billed.
    let row = completed_row(7, 3600, T0 + 3600);
    let new_run = run(T0 + 7200, 3600, true, Some(T0 + 10_800));
    let old_run = run(T0, 3600, true, Some(T0 + 3600));
    let got = pick_run(&row, &[new_run, old_run]);
    assert_eq!(got, Ok((1, ImportedFrontier { reported_until: T0 + 3600, complete: true })));
    // And without End the older run is still the one (End before the new run's start + elapsed).
    let (new_run, old_run) = (RunFacts { end: None, ..new_run }, RunFacts { end: None, ..old_run });
    assert_eq!(pick_run(&row, &[new_run, old_run]).map(|(i, _)| i), Ok(1));
}

#[test]
fn no_run_matches_gives_every_reason() {
    let row = running_row(7, T0, 600);
    let reasons = pick_run(&row, &[run(0, 0, false, None), run(T0 + 5, 900, false, None)]).unwrap_err();
    assert_eq!(
        reasons,
        [
            NotImported::RunNotStarted { reported_secs: 600 },
            NotImported::StartMismatch { implied_start: T0, run_start: T0 + 5 }
        ]
    );
    assert_eq!(pick_run(&row, &[]), Err(vec![]));
}

#[test]
fn invalid_rows_give_no_frontier() {
    let mut row = running_row(7, T0, 600);
    row.last_reported_elapsed = -1;
    assert!(matches!(imported_frontier(&row, &run(T0, 900, false, None)), Err(NotImported::InvalidRow(_))));
    let mut row = running_row(7, T0, 600);
    row.last_reported_at = 0;
    assert!(matches!(imported_frontier(&row, &run(T0, 900, false, None)), Err(NotImported::InvalidRow(_))));
}

#[test]
fn zero_elapsed_run_and_row() {
    // A run that started and ended at once; a row that reported nothing (the tracker never writes
    // one, but a hand-made one must still be safe).
    let row = running_row(7, T0, 0);
    assert_eq!(imported_frontier(&row, &run(T0, 0, true, Some(T0))), frontier(T0, true));
    assert_eq!(imported_frontier(&row, &run(T0, 60, true, Some(T0 + 60))), frontier(T0, false));
}
