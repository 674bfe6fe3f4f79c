//! `deliver` to the cc-backend fake, on the ledger of a recorded real testbed poll (the demo's):
//! every started run is started once, every ended run stopped once with its own start time and
//! cc-backend's state; a run that never started gets nothing; a second pass posts nothing; under
//! injected faults (5xx, 429, drops and timeouts after the write) the end state is the same and no
//! start or stop is accepted twice; the requeued job's second run, which cc-backend's duplicate
//! rule refuses, is shown as rejected with the rule named, its stop too.
//!
//! `run` with Slurm played by `sacct`, `scontrol` and `sinfo` scripts in `[slurm] bin_dir` that
//! answer with outputs recorded on the testbed in the same minute (2026-12-05: a running GPU job
//! 1252, two CPU jobs): the started runs' allocation detail is asked in one `scontrol` call and
//! the GPU job's start carries its hwthreads and PCI addresses; the node states read from
//! sinfo are posted to `/api/nodestate/` each pass; a second pass asks scontrol nothing.

use std::collections::BTreeMap;

use slurm_ledger::ledger::{JobFilter, Ledger};

use crate::common::fixture;
use crate::deliver_activate::{empty_site, run_site, site, Site};
use crate::fakes::cc_backend::{CcConfig, FakeCcBackend, Fault, FaultMix, START_JOB, STOP_JOB};

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.cc-test-jwt.sig";

fn fake(mix: FaultMix) -> FakeCcBackend {
    FakeCcBackend::start(CcConfig { faults: mix, seed: 11, ..CcConfig::new(TOKEN, "testcluster", &["vm"]) })
}

fn write_cfg(site: &Site, url: &str) {
    let text = format!(
        "[delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n[sinks.cc_backend]\nurl = \"{url}/api\"\ntimeout_secs = 2\n"
    );
    std::fs::write(&site.cfg, text).unwrap();
}

fn run(site: &Site, args: &[&str]) -> (i32, String, String) {
    run_site(site, args, &[("SLURM_LEDGER_CC_BACKEND_TOKEN", TOKEN)], &[TOKEN], "warn")
}

/// The ledger's runs: (job id, start) → (final, state, end), for started runs with hosts (jobs 3
/// and 4 were cancelled at their start, on no node: cc-backend refuses a job without resources).
fn started_runs(site: &Site) -> BTreeMap<(i64, i64), (bool, String, i64)> {
    let ledger = Ledger::open(&site.db).unwrap();
    let mut out = BTreeMap::new();
    for j in ledger.jobs(&JobFilter { limit: None, ..Default::default() }).unwrap() {
        if let Some(s) = j.start.filter(|_| !j.nodelist.is_empty()) {
            let end = j.end.map_or(s.0, |e| e.0.max(s.0));
            out.insert((j.key.job_id_raw as i64, s.0), (j.state.is_final(), j.state.as_str().to_string(), end));
        }
    }
    out
}

/// What the fake holds must be the ledger's runs, exactly, except one of the requeued job 21's
/// two runs (cc-backend keeps one row per job id within 24 h).
fn check_against_ledger(site: &Site, cc: &FakeCcBackend) {
    if let Err(e) = compare(site, cc) {
        panic!("{e}");
    }
}

fn compare(site: &Site, cc: &FakeCcBackend) -> Result<(), String> {
    let runs = started_runs(site);
    let jobs = cc.jobs();
    let mut seen = BTreeMap::new();
    for j in &jobs {
        if seen.insert((j.job_id, j.start_time), ()).is_some() {
            return Err(format!("job {} started twice", j.job_id));
        }
        let (final_run, state, end) =
            runs.get(&(j.job_id, j.start_time)).ok_or_else(|| format!("unknown run {j:?}"))?;
        if *final_run {
            let want = match state.as_str() {
                "COMPLETED" => "completed",
                "FAILED" => "failed",
                "TIMEOUT" => "timeout",
                _ => "cancelled", // CANCELLED, and REQUEUED (no such state in cc-backend)
            };
            if j.state != want || j.stop_time != Some(*end) {
                return Err(format!("job {} ({state}, end {end}): {} at {:?}", j.job_id, j.state, j.stop_time));
            }
        } else if j.state != "running" {
            return Err(format!("job {} is {} in cc-backend, running in Slurm", j.job_id, j.state));
        }
        assert_eq!(j.job["project"].as_str().map(str::is_empty), Some(false));
        assert_eq!(j.job["resources"][0]["hostname"], "vm");
    }
    // Which of job 21's runs cc-backend keeps is whichever start reached it first (a fault can
    // delay the first run's start past the second's); the other is refused, never both kept.
    let missing: Vec<_> = runs.keys().filter(|k| !seen.contains_key(k)).collect();
    let runs_21 = runs.keys().filter(|k| k.0 == 21).count();
    if runs_21 != 2 || missing.len() != 1 || missing[0].0 != 21 {
        return Err(format!("exactly one of the requeued job's two runs may be missing: {missing:?}"));
    }
    Ok(())
}

fn writes(cc: &FakeCcBackend) -> usize {
    cc.requests().iter().filter(|r| r.method == "POST" && (r.path == START_JOB || r.path == STOP_JOB)).count()
}

#[test]
fn every_run_started_and_stopped_once_and_a_second_pass_posts_nothing() {
    let site = site();
    let cc = fake(FaultMix::default());
    write_cfg(&site, &cc.base_url());
    let (code, out, err) = run(&site, &["deliver", "--sink", "cc_backend"]);
    // The requeued run's start and stop are refused (cc-backend's duplicate rule): exit 1, named.
    assert_eq!(code, 1, "{out}\n{err}");
    check_against_ledger(&site, &cc);
    let j26 = cc.jobs().into_iter().find(|j| j.job_id == 26).expect("running job 26 started");
    assert_eq!((j26.job["numHwthreads"].as_i64(), j26.job["numAcc"].as_i64()), (Some(4), Some(2)));
    assert!(cc.jobs().iter().all(|j| j.job_id != 27 && j.job_id != 3), "a run that never started was reported");
    let (_, status, _) = run(&site, &["status"]);
    assert!(status.contains("duplicate rule"), "{status}");

    let before = writes(&cc);
    let (code, out, err) = run(&site, &["deliver", "--sink", "cc_backend"]);
    assert_eq!(code, 0, "nothing new: {out}\n{err}");
    assert_eq!(writes(&cc), before, "a second pass posted again");
}

#[test]
fn under_faults_each_run_is_started_and_stopped_exactly_once() {
    let site = site();
    let mix = FaultMix {
        weights: vec![
            (0.15, Fault::Status5xxBefore(503)),
            (0.15, Fault::Status5xxAfter(502)),
            (0.1, Fault::TooMany { retry_after_secs: 1 }),
            (0.1, Fault::DropAfter),
            (0.03, Fault::TimeoutAfter { secs: 3 }),
            (0.1, Fault::DropBefore),
        ],
        on_get: true,
    };
    let cc = fake(mix);
    write_cfg(&site, &cc.base_url());
    let started = std::time::Instant::now();
    for pass in 1..=40 {
        run(&site, &["deliver", "--sink", "cc_backend"]);
        if compare(&site, &cc).is_ok() {
            eprintln!("complete after {pass} passes, {:?}; faults {:?}", started.elapsed(), cc.fault_counts());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert!(cc.fault_counts().values().sum::<u64>() > 5, "faults were injected: {:?}", cc.fault_counts());
    check_against_ledger(&site, &cc);
}

/// `sacct`, `scontrol` and `sinfo` in `bin` answering with the recordings of 2026-12-05
/// (tests/fixtures/testbed/own-*-alloc/-d-/-nodes files, commands and dates in their `.cmd`);
/// each call appends its program and arguments to `calls.log`.
fn fake_slurm(bin: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let f = |name: &str| fixture(&format!("testbed/{name}")).display().to_string();
    let scripts = [
        (
            "sacct",
            format!(
                "case \"$*\" in\n*--version*) cat '{}' ;;\n*--helpformat*) cat '{}' ;;\n*--parsable2*) cat '{}' ;;\n\
                 *) echo \"fake sacct: unexpected $*\" >&2; exit 1 ;;\nesac\n",
                f("own-sacct-version.txt"),
                f("sacct-helpformat.txt"),
                f("own-sacct-poll-alloc.txt")
            ),
        ),
        (
            "scontrol",
            format!(
                "case \"$*\" in\n\"--clusters=testcluster --details show job\") cat '{}' ;;\n\
                 *) echo \"fake scontrol: unexpected $*\" >&2; exit 1 ;;\nesac\n",
                f("own-scontrol-show-job-d-all.txt")
            ),
        ),
        ("sinfo", format!("case \"$*\" in\n*--Node*) cat '{}' ;;\n*) exit 1 ;;\nesac\n", f("own-sinfo-nodes.txt"))),
    ];
    for (name, body) in scripts {
        let path = bin.join(name);
        let text = format!("#!/bin/sh\necho \"{name} $*\" >> \"$(dirname \"$0\")/calls.log\"\n{body}");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A fresh site whose Slurm is [`fake_slurm`] (in `<site>/bin`), the cc-backend fake, and a
/// config with `[sinks.cc_backend]` pointed at it, `extra` appended (more keys or tables).
fn slurm_site(extra: &str) -> (Site, std::path::PathBuf, FakeCcBackend) {
    let site = empty_site();
    let bin = site.cfg.parent().unwrap().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_slurm(&bin);
    let cc = FakeCcBackend::start(CcConfig { seed: 3, ..CcConfig::new(TOKEN, "testcluster", &["vm"]) });
    std::fs::write(
        &site.cfg,
        format!(
            "[slurm]\nclusters = [\"testcluster\"]\nbin_dir = \"{}\"\n[sinks.cc_backend]\nurl = \"{}\"\ntimeout_secs = 2\n{extra}",
            bin.display(),
            cc.base_url()
        ),
    )
    .unwrap();
    (site, bin, cc)
}

const PCI: [&str; 2] = ["00000000:07:00.0", "00000000:0B:00.0"];

#[test]
fn a_pass_sends_the_allocation_detail_and_posts_the_node_states() {
    let (site, bin, cc) =
        slurm_site(&format!("[sinks.cc_backend.gpu_pci_addrs]\n\"^vm$\" = [\"{}\", \"{}\"]\n", PCI[0], PCI[1]));
    let (code, out, err) = run(&site, &["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let calls = std::fs::read_to_string(bin.join("calls.log")).unwrap();
    let scontrol: Vec<&str> = calls.lines().filter(|l| l.starts_with("scontrol")).collect();
    assert_eq!(scontrol, ["scontrol --clusters=testcluster --details show job"], "one call for every started run");

    // The GPU job: its CPU ids and GPUs from scontrol; the CPU job its CPU ids.
    let job =
        |id: i64| cc.jobs().into_iter().find(|j| j.job_id == id).unwrap_or_else(|| panic!("job {id} not started"));
    assert_eq!(
        job(1252).job["resources"],
        serde_json::json!([{"hostname": "vm", "hwthreads": [1, 2, 3, 4], "accelerators": PCI}])
    );
    assert_eq!((job(1252).job["numHwthreads"].as_i64(), job(1252).job["numAcc"].as_i64()), (Some(4), Some(2)));
    assert_eq!(job(1302).job["resources"], serde_json::json!([{"hostname": "vm", "hwthreads": [0, 5]}]));

    // The node states as sinfo printed them: vm, mixed, 7 CPUs, 1792 MB, both GPUs.
    let posts = cc.node_states();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].cluster, "testcluster");
    assert_eq!(
        serde_json::Value::Array(posts[0].nodes.clone()),
        serde_json::json!([{"hostname": "vm", "states": ["mixed"], "cpusAllocated": 7, "memoryAllocated": 1792, "gpusAllocated": 2}])
    );

    // The next pass: nothing started since, so scontrol is not asked; node states are posted again.
    let (code, out, err) = run(&site, &["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let calls = std::fs::read_to_string(bin.join("calls.log")).unwrap();
    assert_eq!(calls.lines().filter(|l| l.starts_with("scontrol")).count(), 1, "{calls}");
    assert_eq!(cc.node_states().len(), 2);
}

/// Node states that cannot be read (no sinfo) are said, counted and never stop the pass's job
/// deliveries.
#[test]
fn a_node_state_failure_does_not_stop_deliveries() {
    let (site, bin, cc) = slurm_site("[sinks.cc_backend.clusters]\ntestcluster = \"testcluster\"\n");
    std::fs::remove_file(bin.join("sinfo")).unwrap();
    let (code, out, err) = run(&site, &["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("node states of testcluster not reported"), "{out}");
    assert!(cc.node_states().is_empty());
    assert!(cc.jobs().iter().any(|j| j.job_id == 1252), "deliveries went on");
}

/// cc-backend shows job 1299 running, but the ledger never held it (a poll window missed it, or
/// the ledger was replaced): the pass lists cc-backend's running jobs, asks sacct for that job by
/// id, and the run's stop goes out (its start is answered as already there). The window poll here
/// reads nothing; only `sacct --jobs` answers with the recording.
#[test]
fn a_job_cc_backend_shows_running_that_the_ledger_lacks_is_asked_of_sacct_and_stopped() {
    use std::os::unix::fs::PermissionsExt;
    let (site, bin, cc) = slurm_site("node_states = false\n");
    let recording = fixture("testbed/own-sacct-poll-alloc.txt");
    let text = std::fs::read_to_string(&recording).unwrap();
    let header = bin.join("header-only.txt");
    std::fs::write(&header, format!("{}\n", text.lines().next().unwrap())).unwrap();
    let f = |name: &str| fixture(&format!("testbed/{name}")).display().to_string();
    std::fs::write(
        bin.join("sacct"),
        format!(
            "#!/bin/sh\necho \"sacct $*\" >> \"$(dirname \"$0\")/calls.log\"\ncase \"$*\" in\n\
             *--version*) cat '{}' ;;\n*--helpformat*) cat '{}' ;;\n*--jobs=*) cat '{}' ;;\n*--parsable2*) cat '{}' ;;\n\
             *) echo \"fake sacct: unexpected $*\" >&2; exit 1 ;;\nesac\n",
            f("own-sacct-version.txt"),
            f("sacct-helpformat.txt"),
            recording.display(),
            header.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("sacct"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // Job 1299 as the recording has it, started in cc-backend by someone else.
    let mut o = crate::common::opts("testcluster");
    o.delimiter = 0x1f;
    let (runs, _) = crate::common::parse(text.as_bytes(), o);
    let job = runs.iter().find(|r| r.key.job_id_raw == 1299).expect("job 1299 in the recording");
    let (start, end) = (job.start.unwrap().0, job.end.unwrap().0);
    let body = serde_json::json!({"jobId": 1299, "user": "root", "project": "research-team", "cluster": "testcluster",
        "numNodes": 1, "numHwthreads": 2, "numAcc": 0, "walltime": 120, "startTime": start,
        "resources": [{"hostname": "vm"}]});
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/api/jobs/start_job/", cc.base_url()))
        .header("X-Auth-Token", TOKEN)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let (code, out, err) = run(&site, &["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let calls = std::fs::read_to_string(bin.join("calls.log")).unwrap();
    assert!(calls.lines().any(|l| l.contains("--jobs=1299 ")), "{calls}");
    assert!(out.contains("1 job(s) of testcluster it shows running were not in the ledger"), "{out}");
    let rows: Vec<_> = cc.jobs().into_iter().filter(|j| j.job_id == 1299).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].start_time, rows[0].state.as_str(), rows[0].stop_time), (start, "completed", Some(end)));
}
