//! Parser facts on recorded real Slurm output (testbed captures and public samples).

use slurm_ledger::model::{JobState, UnixTime};
use slurm_ledger::slurm::parsable::{read_all, Layout};
use slurm_ledger::slurm::values::TimeZone;

use crate::common::*;

#[test]
fn testbed_steps_output_gives_every_job_and_folds_steps() {
    // sacct -a --parsable2 (steps included), Slurm 22.05.8 testbed, `|` delimiter.
    let (jobs, q) = parse(&fixture_bytes("testbed/sacct-steps-parsable2.txt"), opts("x"));
    // Job 10's name holds a `|`: under `|` its job row and its steps cannot be split safely.
    assert_eq!(q.len(), 1 + find_steps_of_10(), "only job 10 and its steps are quarantined: {q:#?}");
    assert!(q[0].reason.contains("delimiter"), "{}", q[0].reason);
    assert!(q.iter().all(|x| x.raw.contains("|10")));
    // Everything else: the window's 26 job rows (INDEX.md's 28 jobs less 22 and 28, never
    // eligible so not in a -S/-E window; requeue's first run needs --duplicates) minus job 10.
    assert_eq!(jobs.len(), 25, "{:?}", jobs.iter().map(|j| &j.job_id).collect::<Vec<_>>());
    // TotalCPU of job 2 as Slurm totals it on the job row (its steps, rounded to ms, sum to 1.654 s).
    let j2 = one(&jobs, "2");
    assert_eq!(j2.total_cpu_ms, 1_655);
    assert!(j2.step_count >= 2);
    assert!(j2.max_rss_bytes.unwrap_or(0) > 0, "MaxRSS comes from the steps");
    // Multi-step job 8: four srun steps + batch + extern; DerivedExitCode 3:0.
    let j8 = one(&jobs, "8");
    assert_eq!(j8.derived_exit_code.map(|e| e.code), Some(3));
    assert!(j8.step_count >= 6, "{}", j8.step_count);
    // GPU job: AllocTRES has gres/gpu:fake=1 and gres/gpu=1 → one GPU.
    assert_eq!(one(&jobs, "11").gpus(), 1);
    assert_eq!(one(&jobs, "25").gpus(), 2);
    // Suspended job: elapsed excludes the 8 s suspension.
    let j24 = one(&jobs, "24");
    assert_eq!((j24.elapsed_secs, j24.suspended_secs), (9, 8));
    let wall = j24.end.unwrap().0 - j24.start.unwrap().0;
    assert_eq!(wall as u64, j24.elapsed_secs + j24.suspended_secs);
    // Array: 7_3's raw id reuses the master id 7.
    let raws: Vec<(String, u64)> =
        jobs.iter().filter(|j| j.array_job_id == Some(7)).map(|j| (j.job_id.clone(), j.key.job_id_raw)).collect();
    assert_eq!(raws, [("7_0".into(), 15), ("7_1".into(), 16), ("7_2".into(), 19), ("7_3".into(), 7)]);
    assert_eq!(one(&jobs, "7_3").state, JobState::Failed);
    // Het job components: raw ids 13 and 14, cancelled while pending.
    let h = one(&jobs, "13+1");
    assert_eq!((h.key.job_id_raw, h.het_job_id, h.het_job_offset, h.start), (14, Some(13), Some(1), None));
    assert_eq!(h.state, JobState::Cancelled);
    assert_eq!(h.cancelled_by, Some(0));
    // Running job: no end.
    let r = one(&jobs, "25");
    assert_eq!((r.state.clone(), r.end), (JobState::Running, None));
    // TIMEOUT runs past its limit.
    let t = one(&jobs, "17");
    assert_eq!((t.state.clone(), t.elapsed_secs, t.timelimit_mins), (JobState::Timeout, 76, Some(1)));
    // WCKey keeps Slurm's '*' default marker.
    assert_eq!(one(&jobs, "1").wckey, "*proj-alpha");
}

fn find_steps_of_10() -> usize {
    let text = String::from_utf8(fixture_bytes("testbed/sacct-steps-parsable2.txt")).unwrap();
    text.lines().filter(|l| l.starts_with("10.")).count()
}

#[test]
fn unit_separator_keeps_the_pipe_name_intact() {
    // sacct -X --parsable2 --noheader --delimiter=0x1F: every row has 66 fields.
    let header = std::fs::read_to_string(fixture("testbed/sacct-X-delim-unitsep.txt.cmd")).unwrap();
    let format = header.split("--format=").nth(1).unwrap().split_whitespace().next().unwrap();
    let names: Vec<&str> = format.split(',').collect();
    let mut o = opts("x");
    o.delimiter = 0x1f;
    o.layout = Some(Layout::from_names(&names).unwrap());
    let (jobs, q) = parse(&fixture_bytes("testbed/sacct-X-delim-unitsep.txt"), o);
    assert!(q.is_empty(), "{q:#?}");
    assert_eq!(one(&jobs, "10").name, "pipe|name ünïcødé ✓");
    assert_eq!(jobs.len(), 26, "all 26 job rows of the window (22 and 28 were never eligible)");
}

#[test]
fn duplicates_give_the_requeued_job_two_runs() {
    let (jobs, q) = parse(&fixture_bytes("testbed/sacct-X-duplicates.txt"), opts("x"));
    assert_eq!(q.len(), 1, "only the `|`-named job: {q:#?}");
    let runs = find(&jobs, "23");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].key.job_id_raw, runs[1].key.job_id_raw);
    assert_ne!(runs[0].key.submit, runs[1].key.submit, "requeue resets Submit: two keys");
    assert_eq!(runs[0].state, JobState::Requeued);
    assert_eq!(runs[1].state, JobState::Completed);
    assert_ne!(runs[0].db_index, runs[1].db_index);
}

#[test]
fn every_column_output_parses_the_same_runs() {
    // -o ALL gives 109 columns in alphabetical order; columns are found by name.
    let (all, _) = parse(&fixture_bytes("testbed/sacct-all-fields-duplicates.txt"), opts("x"));
    let (x, _) = parse(&fixture_bytes("testbed/sacct-X-duplicates.txt"), opts("x"));
    let keys = |v: &[slurm_ledger::model::JobRun]| {
        let mut k: Vec<_> =
            v.iter().map(|j| (j.key.clone(), j.state.clone(), j.alloc_tres.clone(), j.elapsed_secs)).collect();
        k.sort_by(|a, b| a.0.cmp(&b.0));
        k
    };
    assert_eq!(keys(&all), keys(&x));
}

#[test]
fn xdmod_sample_old_format_with_per_cpu_memory() {
    // ubccr/xdmod accounting-logs.log: --noheader, 26 fields, 2015-2016 Slurm.
    let names = "jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,submit,eligible,start,end,elapsed,exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,alloctres,timelimit,nodelist,jobname";
    let names: Vec<&str> = names.split(',').collect();
    let mut o = opts("x");
    o.layout = Some(Layout::from_names(&names).unwrap());
    let (jobs, q) = parse(&fixture_bytes("samples/xdmod__accounting-logs.log"), o.clone());
    assert!(q.is_empty(), "{q:#?}");
    let j = one(&jobs, "4103947");
    assert_eq!(j.key.cluster.as_str(), "ub-hpc");
    assert_eq!(j.state, JobState::Timeout);
    assert_eq!((j.req_mem_bytes, j.req_mem_per_cpu), (Some(3000 << 20), true));
    assert_eq!(j.elapsed_secs, 3 * 86_400);
    assert_eq!(j.alloc_cpus, 256);
    assert_eq!(j.nnodes, 32);
    assert_eq!(slurm_ledger::slurm::hostlist::expand(&j.nodelist).unwrap().len(), 32);
    let c = one(&jobs, "4107166");
    assert_eq!((c.state.clone(), c.cancelled_by), (JobState::Cancelled, Some(102_216)));
    assert!(!c.req_mem_per_cpu);

    // Arrays: pending ranges `N_[1-3]` are kept as their own records, not expanded or dropped.
    let (arr, q) = parse(&fixture_bytes("samples/xdmod__accounting-logs-with-job-arrays.log"), o.clone());
    assert!(q.is_empty(), "{q:#?}");
    let ranges: Vec<&str> = arr.iter().filter(|j| j.job_id.contains('[')).map(|j| j.job_id.as_str()).collect();
    assert!(ranges.contains(&"4103947_[1-3]") && ranges.contains(&"4103947_[9-11,20]"), "{ranges:?}");
    assert_eq!(one(&arr, "4103947_100").array_task_id, Some(100));

    let (u, q) = parse(&fixture_bytes("samples/xdmod__utf8-multibyte-chars.log"), o);
    assert!(q.is_empty());
    assert!(u.iter().any(|j| j.name.contains("aàb")), "{:?}", u.iter().map(|j| &j.name).collect::<Vec<_>>());
}

#[test]
fn sonar_sample_production_rows_with_steps() {
    // NordicHPC/sonar testdata: UiO Fox, 32 fields, --noheader, steps included.
    let names = "JobID,JobIDRaw,User,Account,State,Start,End,AveCPU,AveDiskRead,AveDiskWrite,AveRSS,AveVMSize,ElapsedRaw,ExitCode,Layout,MaxRSS,MaxVMSize,MinCPU,ReqCPUS,ReqMem,ReqNodes,Reservation,Submit,Suspended,SystemCPU,TimelimitRaw,UserCPU,NodeList,Partition,AllocTRES,Priority,JobName";
    let names: Vec<&str> = names.split(',').collect();
    let mut o = opts("fox");
    o.layout = Some(Layout::from_names(&names).unwrap());
    let bytes = fixture_bytes("samples/sonar__src_testdata_sacct-output.txt");
    let (jobs, q) = parse(&bytes, o);
    assert!(q.is_empty(), "{q:#?}");
    let text = String::from_utf8_lossy(&bytes);
    let job_rows = text.lines().filter(|l| !l.split('|').nth(1).unwrap_or("").contains('.')).count();
    assert_eq!(jobs.len(), job_rows, "every job row is a run");
    let j = one(&jobs, "973821");
    assert_eq!(j.elapsed_secs, 7164);
    assert_eq!(j.max_rss_bytes, Some(10_121_984 << 10), "the largest step (973821.0), not the batch step");
    assert_eq!(j.alloc_tres.get("mem"), Some(10_000 << 20));
    // CPU times as Slurm totals them on the job row (exact), not the ms-rounded step sum.
    assert_eq!(j.system_cpu_ms, (22 * 60 + 53) * 1000 + 824);
    assert_eq!(j.user_cpu_ms, (11 * 3600 + 6 * 60 + 33) * 1000);
    assert_eq!(j.key.submit, UnixTime(1_731_486_640)); // 2024-11-13T08:30:40 read as UTC
}

#[test]
fn file_without_key_columns_is_refused_with_the_fix() {
    // sacct -j 30 -o JobID,JobName,State,... has neither JobIDRaw nor Submit (its JobID alone would
    // key its plain job, but not without the submit time).
    let err = read_all(&fixture_bytes("testbed/sacct-oom-cgroup-v1.txt")[..], opts("x")).unwrap_err();
    assert!(err.to_string().contains("no Submit column") && err.to_string().contains("--format"), "{err}");
}

#[test]
fn times_are_read_in_the_configured_zone() {
    let mut o = opts("x");
    o.tz = TimeZone::from_name("America/New_York").unwrap();
    let (jobs, _) = parse(&fixture_bytes("testbed/sacct-X-duplicates.txt"), o);
    let (utc, _) = parse(&fixture_bytes("testbed/sacct-X-duplicates.txt"), opts("x"));
    // November: New York is UTC-5.
    assert_eq!(one(&jobs, "1").key.submit.0 - one(&utc, "1").key.submit.0, 5 * 3600);
}

#[test]
fn own_poll_reads_noconvert_max_rss_as_bytes() {
    // slurm-ledger's own poll (0x1F, --noconvert) on the Slurm 22.05.8 testbed: MaxRSS is printed
    // in bytes without a unit, the same number as the step's TRESUsageInTot mem=.
    let (jobs, q) = parse(&fixture_bytes("testbed/own-sacct-poll.txt"), opts("x"));
    assert!(q.is_empty(), "{q:#?}");
    // Job 16 is the OOM job (the kernel's OOM killer ended it: FAILED, batch step CANCELLED by
    // 0): its batch step peaked at 845746176 bytes (806 MiB), not 806 GiB.
    let j16 = one(&jobs, "16");
    assert_eq!(j16.name, "oom-job");
    assert_eq!(j16.state, JobState::Failed);
    assert_eq!(j16.max_rss_bytes, Some(845_746_176));
    assert_eq!(j16.tres_usage_in_tot.get("mem"), Some(845_746_176));
    // Every run's MaxRSS is the peak of its steps' mem, which is bytes in every row.
    for j in &jobs {
        if let (Some(rss), Some(mem)) = (j.max_rss_bytes, j.tres_usage_in_tot.get("mem")) {
            assert_eq!(rss, mem, "job {}", j.job_id);
        }
    }
}

/// Job 14 of the recorded poll (the testbed's `sbatch -J $'nl\nname' … --wrap 'sleep 1'`) holds
/// a newline in its JobName and in its SubmitLine, the poll's last column: its record spans
/// three physical lines. Its fields as recorded: the fixture's bytes from the record's start to
/// the next record's (`14.batch`), split at the 0x1F delimiter.
fn recorded_job_14() -> (Vec<String>, Vec<String>) {
    let text = String::from_utf8(fixture_bytes("testbed/own-sacct-poll.txt")).unwrap();
    let header = text.lines().next().unwrap().split('\u{1f}').map(String::from).collect();
    let start = text.find("\n14\u{1f}14\u{1f}").unwrap() + 1;
    let end = text.find("\n14.batch\u{1f}").unwrap();
    (header, text[start..end].split('\u{1f}').map(String::from).collect())
}

/// The ledger's listing of every run after importing `text`, and what was quarantined.
fn stored(text: &str) -> (Vec<slurm_ledger::model::JobRun>, usize) {
    let mut ledger = slurm_ledger::ledger::Ledger::open_in_memory().unwrap();
    let mut o = opts("testcluster");
    o.delimiter = 0x1f;
    let rep = slurm_ledger::collect::import_file(&mut ledger, text.as_bytes(), o, "test", UnixTime(0)).unwrap();
    (ledger.jobs(&Default::default()).unwrap(), rep.counts.quarantined as usize)
}

#[test]
fn a_newline_in_the_last_column_stays_in_its_record() {
    let (header, f) = recorded_job_14();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!((f.len(), col("SubmitLine")), (header.len(), header.len() - 1), "the recording changed");
    let submit_line = "sbatch --parsable -o /var/lib/slurm-testbed/jobs/newline-%j.out -J nl\nname -t 5 --wrap sleep 1";
    assert_eq!((f[col("JobName")].as_str(), f[col("SubmitLine")].as_str()), ("nl\nname", submit_line));

    let text = String::from_utf8(fixture_bytes("testbed/own-sacct-poll.txt")).unwrap();
    let (jobs, q) = parse(text.as_bytes(), opts("testcluster"));
    assert!(q.is_empty(), "{q:#?}");
    let j = one(&jobs, "14");
    assert_eq!((j.name.as_str(), j.submit_line.as_str()), ("nl\nname", submit_line), "as sacct recorded it");
    assert_eq!(j.step_count, 2, "14.batch and 14.extern fold in");
    // No JSON capture holds job 14 (the testbed's sacct.json is of another seed, without it).

    // Every run is stored as from the same poll with job 14's two newlines made spaces (one
    // line per record, which any reader reads), job 14 but for those two characters.
    let flat = text.replacen("\u{1f}nl\nname\u{1f}", "\u{1f}nl name\u{1f}", 1).replacen(
        "-J nl\nname -t 5",
        "-J nl name -t 5",
        1,
    );
    assert_eq!(flat.lines().count(), text.lines().count() - 2);
    let ((runs, held), (flat_runs, flat_held)) = (stored(&text), stored(&flat));
    assert_eq!((runs.len(), held, flat_held), (28, 0, 0));
    assert_eq!(runs.len(), flat_runs.len());
    for (r, mut flat) in runs.into_iter().zip(flat_runs) {
        if r.key.job_id_raw == 14 {
            assert_eq!((flat.name.as_str(), r.name.as_str()), ("nl name", "nl\nname"));
            assert_eq!(flat.submit_line.replace("nl name", "nl\nname"), r.submit_line);
            (flat.name, flat.submit_line) = (r.name.clone(), r.submit_line.clone());
        }
        assert_eq!(r, flat, "{}", r.key);
    }
}

#[test]
fn a_record_reads_the_same_whichever_column_runs_over_lines() {
    // The recorded poll with its columns reordered: columns are found by name, so every order
    // reads the same runs, wherever job 14's two multi-line fields (JobName, SubmitLine) stand:
    // in the middle (the record is short until the line that completes it), or last (the lines
    // without a delimiter after a complete record run on).
    let (header, records) = own_poll_records();
    let n = header.len();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (want, _) = parse(&fixture_bytes("testbed/own-sacct-poll.txt"), opts("testcluster"));
    let moved_last = |name: &str| (0..n).filter(|&i| i != col(name)).chain([col(name)]).collect::<Vec<_>>();
    for (what, order) in [
        ("as recorded: SubmitLine last", (0..n).collect::<Vec<_>>()),
        ("JobName last, SubmitLine in the middle", moved_last("JobName")),
        ("WorkDir last, both multi-line fields in the middle", moved_last("WorkDir")),
        ("a column that holds no newline last", moved_last("State")),
    ] {
        let (got, q) = parse(poll_text(&header, &records, &order).as_bytes(), opts("testcluster"));
        assert!(q.is_empty(), "{what}: {q:#?}");
        assert_eq!(got, want, "{what}");
    }

    // Only the last column holds a newline (job 14's name made one line), over several lines,
    // one of them empty, and in the stream's last record, whose last line has no `\n`.
    let mut records = records;
    let i14 = records.iter().position(|r| r[col("JobID")] == "14").unwrap();
    records[i14][col("JobName")] = "nl name".into();
    records[i14][col("SubmitLine")] = "sbatch --wrap 'echo a\n\necho b\n  echo c'".into();
    let last = records.iter().rposition(|r| !r[col("JobID")].contains('.')).unwrap();
    records.truncate(last + 1); // its steps, which hold no SubmitLine, dropped
    records[last][col("SubmitLine")] = "sbatch --wrap 'true\nfalse'".into();
    let text = poll_text(&header, &records, &(0..n).collect::<Vec<_>>());
    let (got, q) = parse(text.trim_end_matches('\n').as_bytes(), opts("testcluster"));
    assert!(q.is_empty(), "{q:#?}");
    assert_eq!(got.len(), want.len(), "every run");
    let j14 = one(&got, "14");
    assert_eq!(
        (j14.name.as_str(), j14.submit_line.as_str()),
        ("nl name", "sbatch --wrap 'echo a\n\necho b\n  echo c'")
    );
    assert_eq!(j14.step_count, 2);
    let final_id = &records[last][col("JobIDRaw")];
    let end = got.iter().find(|j| j.key.job_id_raw.to_string() == *final_id).unwrap();
    assert_eq!(end.submit_line, "sbatch --wrap 'true\nfalse'");
}
