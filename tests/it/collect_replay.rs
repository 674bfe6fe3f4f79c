//! The collect pipeline on replayed real recordings, with sacct faults injected.

use std::sync::Arc;
use std::time::Duration;

use slurm_ledger::collect::{collect_cluster, Since, WindowPolicy};
use slurm_ledger::demo::{replay_runner, RECORDED_AT, SACCT_HELPFORMAT, SLURM_VERSION};
use slurm_ledger::ledger::{JobFilter, Ledger};
use slurm_ledger::model::{ClusterName, JobState, UnixTime};
use slurm_ledger::slurm::runner::{Recording, ReplayRunner};
use slurm_ledger::slurm::source::SlurmSource;

use crate::common::fixture_bytes;

const POLICY: WindowPolicy = WindowPolicy { overlap_secs: 900, initial_lookback_secs: 86_400, max_window_secs: 86_400 };

fn cluster() -> ClusterName {
    ClusterName::new("testcluster").unwrap()
}

fn runner_with_poll(poll: Vec<u8>, exit_code: i32, stderr: &str) -> ReplayRunner {
    let mut sacct = Recording::ok("sacct", &["--parsable2"], poll);
    sacct.exit_code = exit_code;
    sacct.stderr = stderr.into();
    ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        sacct,
    ])
}

fn poll(
    runner: &ReplayRunner,
    ledger: &mut Ledger,
    now: UnixTime,
) -> Result<slurm_ledger::collect::CollectReport, slurm_ledger::collect::CollectError> {
    let src = SlurmSource::new(runner, Duration::from_secs(5));
    let info = src.detect().unwrap();
    collect_cluster(&src, &info, ledger, &cluster(), Since::Cursor, now, POLICY)
}

#[test]
fn second_collect_changes_nothing_and_window_follows_the_cursor() {
    let mut l = Ledger::open_in_memory().unwrap();
    let r = replay_runner();
    let first = poll(&r, &mut l, RECORDED_AT).unwrap();
    assert_eq!((first.counts.runs_new, first.counts.quarantined), (28, 0));
    assert_eq!(first.window.unwrap().0, UnixTime(RECORDED_AT.0 - 86_400), "first poll: initial lookback");
    let seq = l.change_seq().unwrap();
    let later = UnixTime(RECORDED_AT.0 + 300);
    let second = poll(&r, &mut l, later).unwrap();
    assert_eq!((second.counts.runs_new, second.counts.runs_updated, second.counts.runs_unchanged), (0, 0, 28));
    assert_eq!(l.change_seq().unwrap(), seq, "nothing changed, so no consumer is woken");
    assert_eq!(second.window.unwrap(), (UnixTime(RECORDED_AT.0 - 900), later), "cursor minus overlap");
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(later));
    // Exactly one sacct accounting query per poll.
    let polls = r.calls().iter().filter(|c| c.program == "sacct" && c.args.iter().any(|a| a == "--parsable2")).count();
    assert_eq!(polls, 2);
}

#[test]
fn failed_sacct_keeps_the_cursor_and_says_why() {
    let mut l = Ledger::open_in_memory().unwrap();
    poll(&replay_runner(), &mut l, RECORDED_AT).unwrap();
    let before = l.jobs(&JobFilter::default()).unwrap();
    // slurmdbd down: sacct prints its real error and exits 1.
    let r = runner_with_poll(Vec::new(), 1, "sacct: error: Problem talking to the database: Connection refused");
    let err = poll(&r, &mut l, UnixTime(RECORDED_AT.0 + 600)).unwrap_err().to_string();
    assert!(err.contains("Connection refused") && err.contains("cursor"), "{err}");
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(RECORDED_AT), "cursor did not move");
    assert_eq!(l.jobs(&JobFilter::default()).unwrap(), before, "nothing lost");
    let st = l.status(5).unwrap();
    assert!(st.last_collects[0].error.as_deref().unwrap_or("").contains("Connection refused"));
}

#[test]
fn output_cut_off_midway_keeps_complete_rows_but_not_the_cursor() {
    // sacct killed (timeout) after half its output: the rows that arrived are stored (re-read
    // idempotently next time), the cut row is quarantined, and the window is retried.
    let full = fixture_bytes("testbed/sacct-all-fields-duplicates.txt");
    let cut = full[..full.len() / 2].to_vec();
    let mut l = Ledger::open_in_memory().unwrap();
    let err = poll(&runner_with_poll(cut, -9, ""), &mut l, RECORDED_AT).unwrap_err();
    assert!(err.to_string().contains("exit status"), "{err}");
    assert_eq!(l.cursor(&cluster()).unwrap(), None);
    let stored = l.jobs(&JobFilter::default()).unwrap().len();
    assert!(stored > 5 && stored < 26, "{stored}");
    // The retry with the full output completes the set, nothing duplicated.
    poll(&runner_with_poll(full, 0, ""), &mut l, RECORDED_AT).unwrap();
    assert_eq!(l.jobs(&JobFilter::default()).unwrap().len(), 26);
}

#[test]
fn quarantined_rows_do_not_hold_back_the_batch_or_the_cursor() {
    // After the header: after a record, a line without a delimiter would continue its last
    // column (WorkDir, in -o ALL), as a value with a newline does.
    let text = String::from_utf8(fixture_bytes("testbed/sacct-all-fields-duplicates.txt")).unwrap();
    let (header, rows) = text.split_once('\n').unwrap();
    let poll_text = format!("{header}\nthis line is not sacct output\n{rows}").into_bytes();
    let mut l = Ledger::open_in_memory().unwrap();
    let rep = poll(&runner_with_poll(poll_text, 0, ""), &mut l, RECORDED_AT).unwrap();
    assert_eq!(rep.counts.runs_new, 26);
    assert!(rep.counts.quarantined >= 1);
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(RECORDED_AT));
    let q = l.quarantined(10).unwrap();
    assert!(q.iter().any(|x| x.raw == "this line is not sacct output" && x.reason.contains("fields")), "{q:#?}");
}

#[test]
fn a_running_job_is_updated_when_it_ends() {
    let recorded = String::from_utf8(fixture_bytes("testbed/sacct-all-fields-duplicates.txt")).unwrap();
    let mut l = Ledger::open_in_memory().unwrap();
    poll(&runner_with_poll(recorded.clone().into_bytes(), 0, ""), &mut l, RECORDED_AT).unwrap();
    let filter = JobFilter { job_id_raw: Some(25), ..Default::default() };
    let running = l.jobs(&filter).unwrap();
    assert_eq!(running[0].state, JobState::Running);
    // The same recorded row of job 25 as sacct prints it once the job ended (State, End, Elapsed
    // changed; derived from the recorded row, the live testbed test checks the real transition).
    let header: Vec<&str> = recorded.lines().next().unwrap().split('|').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let ended: String = recorded
        .lines()
        .map(|line| {
            let mut f: Vec<String> = line.split('|').map(String::from).collect();
            if f.len() == header.len() && f[col("JobIDRaw")] == "25" {
                f[col("State")] = "COMPLETED".into();
                f[col("End")] = "2026-11-22T00:40:06".into();
                f[col("ElapsedRaw")] = "900".into();
            }
            f.join("|") + "\n"
        })
        .collect();
    let rep = poll(&runner_with_poll(ended.into_bytes(), 0, ""), &mut l, UnixTime(RECORDED_AT.0 + 900)).unwrap();
    assert_eq!(rep.counts.runs_updated, 1);
    let done = l.jobs(&filter).unwrap();
    assert_eq!(done.len(), 1, "same run updated, not a second run");
    assert_eq!((done[0].state.clone(), done[0].elapsed_secs), (JobState::Completed, 900));
    assert!(done[0].end.is_some());
}

/// Recorded from the project's testbed on 2026-11-30 (see tests/fixtures/samples/PROVENANCE.md):
/// job 443 seen RUNNING by one poll, then a poll whose window starts after its end.
fn settle_runner() -> ReplayRunner {
    ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        Recording::ok(
            "sacct",
            &["--starttime=2026-11-30T22:38:04", "--endtime=2026-11-30T22:48:04"],
            fixture_bytes("testbed/own-sacct-poll-running.txt"),
        ),
        Recording::ok(
            "sacct",
            &["--starttime=2026-11-30T22:48:27"],
            fixture_bytes("testbed/own-sacct-poll-after-end.txt"),
        ),
        Recording::ok("sacct", &["--jobs=443"], fixture_bytes("testbed/own-sacct-jobs-settle.txt")),
    ])
}

fn utc(s: &str) -> UnixTime {
    slurm_ledger::slurm::values::parse_time(s, &slurm_ledger::slurm::values::TimeZone::Utc).unwrap().unwrap()
}

fn poll_since(
    runner: &ReplayRunner,
    ledger: &mut Ledger,
    since: &str,
    now: &str,
) -> slurm_ledger::collect::CollectReport {
    let src = SlurmSource::new(runner, Duration::from_secs(5));
    let info = src.detect().unwrap();
    collect_cluster(&src, &info, ledger, &cluster(), Since::At(utc(since)), utc(now), POLICY).unwrap()
}

#[test]
fn a_run_whose_end_the_window_missed_is_settled_by_job_id_and_a_later_since_keeps_the_cursor() {
    let r = settle_runner();
    let mut l = Ledger::open_in_memory().unwrap();
    let jobs_calls =
        |r: &ReplayRunner| r.calls().iter().filter(|c| c.args.iter().any(|a| a.starts_with("--jobs="))).count();

    let first = poll_since(&r, &mut l, "2026-11-30T22:38:04", "2026-11-30T22:48:04");
    assert_eq!(first.settled, None, "every open run was in the window");
    let run = |l: &Ledger| l.jobs(&JobFilter { job_id_raw: Some(443), ..Default::default() }).unwrap();
    assert_eq!(run(&l)[0].state, JobState::Running);
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(utc("2026-11-30T22:48:04")));

    // The next window starts after job 443 ended (22:48:25): sacct's window does not show it.
    let second = poll_since(&r, &mut l, "2026-11-30T22:48:27", "2026-11-30T22:48:29");
    let s = second.settled.expect("job 443 was open and unseen");
    assert_eq!((s.open_unseen, s.asked, s.counts.runs_updated, s.counts.quarantined), (1, 1, 1, 0));
    let runs = run(&l);
    assert_eq!(runs.len(), 1, "updated in place, not a second run");
    assert_eq!(runs[0].state, JobState::Completed);
    assert_eq!(runs[0].end, Some(utc("2026-11-30T22:48:25")));
    assert_eq!(runs[0].elapsed_secs, 25);
    assert_eq!(jobs_calls(&r), 1);
    // --since later than the cursor: the time between (22:48:04 .. 22:48:27) is still unread.
    assert_eq!(second.cursor_kept, Some(utc("2026-11-30T22:48:04")));
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(utc("2026-11-30T22:48:04")), "cursor kept");

    // Settled runs are final: the same poll again asks sacct for nothing by id.
    let third = poll_since(&r, &mut l, "2026-11-30T22:48:27", "2026-11-30T22:48:29");
    assert_eq!(third.settled, None);
    assert_eq!(jobs_calls(&r), 1);
}

/// A run slurmdbd still reports open when asked by id is asked again only after a doubling
/// delay, least recently asked first, and `status` lists it once asked often. The by-id answer
/// here is the recorded window in which job 443 was RUNNING (own-sacct-poll-running.txt): what
/// sacct --jobs=443 would have printed before the job ended.
#[test]
fn a_run_still_open_when_asked_is_asked_again_less_and_less_often() {
    let r = ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        Recording::ok(
            "sacct",
            &["--starttime=2026-11-30T22:38:04", "--endtime=2026-11-30T22:48:04"],
            fixture_bytes("testbed/own-sacct-poll-running.txt"),
        ),
        Recording::ok("sacct", &["--jobs=443"], fixture_bytes("testbed/own-sacct-poll-running.txt")),
        // Any later window: the one recorded after 443 ended (443 absent).
        Recording::ok("sacct", &["--parsable2"], fixture_bytes("testbed/own-sacct-poll-after-end.txt")),
    ]);
    let src = SlurmSource::new(&r, Duration::from_secs(5));
    let info = src.detect().unwrap();
    let mut l = Ledger::open_in_memory().unwrap();
    let t0 = utc("2026-11-30T22:48:04");
    collect_cluster(&src, &info, &mut l, &cluster(), Since::At(utc("2026-11-30T22:38:04")), t0, POLICY).unwrap();
    let submit = utc("2026-11-30T22:47:59");
    let mut asked_at = Vec::new();
    // Polls every 5 minutes for 6 hours.
    for k in 1..=72 {
        let now = UnixTime(t0.0 + 300 * k);
        let rep = collect_cluster(&src, &info, &mut l, &cluster(), Since::Cursor, now, POLICY).unwrap();
        let s = rep.settled.expect("443 is open and not in the window");
        assert_eq!((s.open_unseen, s.error), (1, None));
        if s.asked == 1 {
            asked_at.push(k);
        }
        let run = &l.jobs(&JobFilter { job_id_raw: Some(443), ..Default::default() }).unwrap()[0];
        assert_eq!(run.state, JobState::Running, "slurmdbd still says RUNNING");
    }
    // Asked at once, then after 5, 10, 20, 40, 80, 160 minutes (polls every 5 minutes).
    assert_eq!(asked_at, [1, 2, 4, 8, 16, 32, 64]);
    assert_eq!(l.settle_asks(&cluster(), 443, submit).unwrap(), 7);
    let st = l.status(5).unwrap();
    assert_eq!(st.unsettled_total, 1);
    assert_eq!((st.unsettled[0].job_id_raw, st.unsettled[0].asks), (443, 7));
    let by_id = r.calls().iter().filter(|c| c.args.iter().any(|a| a == "--jobs=443")).count();
    assert_eq!(by_id, 7, "one sacct --jobs call per ask, none in between");
}

/// sacct failing on the by-id ask: the window is stored and its cursor moved; the failure is
/// in the report and in the collect history, and the run is asked again next collect.
#[test]
fn a_failed_ask_by_id_keeps_the_window_and_is_reported() {
    let mut fail = Recording::ok("sacct", &["--jobs=443"], Vec::new());
    fail.exit_code = 1;
    fail.stderr = "sacct: error: Problem talking to the database: Connection refused".into();
    let r = ReplayRunner::new(vec![
        Recording::ok("sacct", &["--version"], Arc::<[u8]>::from(SLURM_VERSION)),
        Recording::ok("sacct", &["--helpformat"], Arc::<[u8]>::from(SACCT_HELPFORMAT)),
        Recording::ok(
            "sacct",
            &["--starttime=2026-11-30T22:38:04", "--endtime=2026-11-30T22:48:04"],
            fixture_bytes("testbed/own-sacct-poll-running.txt"),
        ),
        fail,
        Recording::ok("sacct", &["--parsable2"], fixture_bytes("testbed/own-sacct-poll-after-end.txt")),
    ]);
    let mut l = Ledger::open_in_memory().unwrap();
    poll_since(&r, &mut l, "2026-11-30T22:38:04", "2026-11-30T22:48:04");
    let now = utc("2026-11-30T22:53:04");
    let src = SlurmSource::new(&r, Duration::from_secs(5));
    let info = src.detect().unwrap();
    let rep = collect_cluster(&src, &info, &mut l, &cluster(), Since::Cursor, now, POLICY).unwrap();
    let s = rep.settled.unwrap();
    assert!(s.error.as_deref().unwrap_or("").contains("Connection refused"), "{s:?}");
    assert_eq!(rep.counts.runs_seen, 2, "the window itself was read");
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(now), "and its cursor moved");
    assert_eq!(l.settle_asks(&cluster(), 443, utc("2026-11-30T22:47:59")).unwrap(), 0, "a failed ask is not counted");
    let last = &l.status(1).unwrap().last_collects[0];
    assert_eq!(last.source, "sacct --jobs");
    assert!(last.error.as_deref().unwrap_or("").contains("Connection refused"));
    // Next collect asks again at once.
    let rep = collect_cluster(&src, &info, &mut l, &cluster(), Since::Cursor, UnixTime(now.0 + 300), POLICY).unwrap();
    assert_eq!(rep.settled.unwrap().asked, 1);
}

/// A window longer than slurmdbd's MaxQueryTimeRange (a first collect reaching back 3 days, a
/// cursor left behind while collection was stopped) is read in consecutive windows of at most
/// `max_window_secs`, each its own sacct call, the cursor moving to the end of the last.
#[test]
fn a_long_window_is_read_in_windows_no_longer_than_max_query_time_range() {
    let mut l = Ledger::open_in_memory().unwrap();
    let r = replay_runner();
    let src = SlurmSource::new(&r, Duration::from_secs(5));
    let info = src.detect().unwrap();
    let policy = WindowPolicy { initial_lookback_secs: 3 * 86_400 + 3600, ..POLICY };
    let report = collect_cluster(&src, &info, &mut l, &cluster(), Since::Cursor, RECORDED_AT, policy).unwrap();
    let starts: Vec<String> = r
        .calls()
        .iter()
        .filter(|c| c.args.iter().any(|a| a == "--parsable2"))
        .filter_map(|c| c.args.iter().find_map(|a| a.strip_prefix("--starttime=")).map(str::to_string))
        .collect();
    assert_eq!(
        starts,
        ["2026-11-19T01:00:30", "2026-11-20T01:00:30", "2026-11-21T01:00:30", "2026-11-22T01:00:30"],
        "3 days and 1 h in windows of a day"
    );
    assert_eq!(report.window.unwrap(), (UnixTime(RECORDED_AT.0 - 3 * 86_400 - 3600), RECORDED_AT));
    assert_eq!(report.counts.runs_new, 28, "the same runs seen by every window are stored once");
    assert_eq!(l.cursor(&cluster()).unwrap(), Some(RECORDED_AT));
}
