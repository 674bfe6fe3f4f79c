//! `slurm-ledger hook`, the binary slurmctld runs as PrologSlurmctld/EpilogSlurmctld: it exits 0
//! whatever happens, fast, reads no config or ledger; the socket's permissions let only its group
//! send; and on the live testbed slurmctld really runs it for each job's start and end.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use slurm_ledger::daemon::hook::{HookAddr, HookContext, HookMessage, Listener, SocketPerms};

/// The hook as slurmctld runs it: no config or ledger variables, the script's variables given.
fn hook(socket: &Path, vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"));
    c.env_clear().env("SLURM_LEDGER_HOOK_SOCKET", socket).envs(vars.iter().copied()).arg("hook");
    c
}

const PROLOG_VARS: &[(&str, &str)] =
    &[("SLURM_JOB_ID", "4242"), ("SLURM_CLUSTER_NAME", "testcluster"), ("SLURM_SCRIPT_CONTEXT", "prolog_slurmctld")];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn listen(path: &Path, perms: &SocketPerms) -> (Listener, Receiver<HookMessage>) {
    let (tx, rx) = mpsc::channel();
    (Listener::start(&HookAddr::Unix(path.to_path_buf()), perms, tx).expect("bind the hook socket"), rx)
}

#[test]
fn with_no_daemon_the_hook_exits_0_fast_and_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let t = Instant::now();
    let out = hook(&missing, PROLOG_VARS).output().unwrap();
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));
    // A debug build on a busy machine; the release figure is the bench's (benches/hook.rs).
    assert!(took < Duration::from_secs(2), "{took:?}");

    let out = hook(&missing, PROLOG_VARS).arg("-v").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("nothing sent") && err.contains("missing.sock") && err.contains("No such file"), "{err}");
}

#[test]
fn the_hook_sends_what_slurmctld_set_without_config_or_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hook.sock");
    let (l, rx) = listen(&socket, &SocketPerms::default());
    // A config that would not load and a ledger that must not appear: the hook reads neither.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "this is not toml [").unwrap();
    let ledger = dir.path().join("ledger.db");
    let out = hook(&socket, PROLOG_VARS)
        .env("SLURM_LEDGER_CONFIG", &config)
        .env("SLURM_LEDGER_DB", &ledger)
        .arg("-v")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("sent job 4242 (prolog_slurmctld)"), "{}", text(&out.stderr));
    let m = rx.recv_timeout(Duration::from_secs(5)).expect("message");
    assert_eq!(m.job_id, 4242);
    assert_eq!(m.cluster.as_ref().map(|c| c.as_str()), Some("testcluster"));
    assert_eq!(m.context, HookContext::Prolog);
    assert!(!ledger.exists(), "the hook opened the ledger");

    // --socket over the environment.
    let other = dir.path().join("other.sock");
    let (_l2, rx2) = listen(&other, &SocketPerms::default());
    let out = hook(&socket, &[("SLURM_JOB_ID", "7"), ("SLURM_SCRIPT_CONTEXT", "epilog_slurmctld")])
        .arg("--socket")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(rx2.recv_timeout(Duration::from_secs(5)).unwrap().context, HookContext::Epilog);
    assert_eq!(l.counters().received, 1);
}

#[test]
fn the_hook_exits_0_whatever_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hook.sock");
    let (l, _rx) = listen(&socket, &SocketPerms::default());
    // (what, arguments, variables, what -v or the error says)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("no environment", &["-v"], &[], "SLURM_JOB_ID is not set"),
        ("a job id that is not one", &["-v"], &[("SLURM_JOB_ID", "12_3")], "\"12_3\" is not a job id"),
        ("an unknown option", &["--bogus"], PROLOG_VARS, "unexpected argument '--bogus'"),
        ("a relative socket path", &["-v", "--socket", "hook.sock"], PROLOG_VARS, "must be absolute"),
    ];
    for (what, args, vars, said) in cases {
        let out = hook(&socket, vars).args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(said), "{what}: {}", text(&out.stderr));
    }
    // Global options before the word, and its help, exit 0 too.
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger")).args(["-q", "hook", "--nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = Command::new(env!("CARGO_BIN_EXE_slurm-ledger")).env_clear().args(["hook", "--help"]).output();
    let Output { status, stdout, .. } = help.unwrap();
    assert_eq!(status.code(), Some(0));
    insta::assert_snapshot!("hook_help", text(&stdout));
    assert_eq!(l.counters().received, 0, "nothing was sent by any of these");
    // Other commands keep their usage errors.
    let out = Command::new(env!("CARGO_BIN_EXE_slurm-ledger")).args(["jobs", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// contrib/slurm-ledger-hook, the wrapper slurm.conf names, pointed at `bin`.
fn contrib_wrapper(dir: &Path, bin: &str) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/slurm-ledger-hook")).unwrap();
    assert!(text.contains("/usr/local/bin/slurm-ledger hook"), "{text}");
    let path = dir.join(format!("wrapper-{}", bin.replace('/', "_")));
    std::fs::write(&path, text.replace("/usr/local/bin/slurm-ledger", bin)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The wrapper exits 0 whether the binary is there, missing, or fails; `hook --help` shows it.
#[test]
fn the_contrib_wrapper_exits_0_and_is_the_one_the_help_shows() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hook.sock");
    let (_l, rx) = listen(&socket, &SocketPerms::default());
    let run = |bin: &str| {
        let mut c = Command::new(contrib_wrapper(dir.path(), bin));
        c.env_clear().env("SLURM_LEDGER_HOOK_SOCKET", &socket).envs(PROLOG_VARS.iter().copied());
        c.output().unwrap()
    };
    let out = run(env!("CARGO_BIN_EXE_slurm-ledger"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().job_id, 4242);
    for bin in ["/nonexistent/slurm-ledger", "/bin/false"] {
        let out = run(bin);
        assert_eq!(out.status.code(), Some(0), "{bin}: {}", text(&out.stderr));
    }

    let contrib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/slurm-ledger-hook")).unwrap();
    let help =
        text(&Command::new(env!("CARGO_BIN_EXE_slurm-ledger")).args(["hook", "--help"]).output().unwrap().stdout);
    let shown: Vec<&str> = help.lines().skip_while(|l| !l.contains("#!/bin/sh")).take(3).map(str::trim).collect();
    assert_eq!(shown.len(), 3, "{help}");
    for line in shown {
        assert!(contrib.lines().any(|l| l == line), "--help shows {line:?}, not in contrib/slurm-ledger-hook");
    }
    let snippet = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/slurm.conf.snippet")).unwrap();
    for line in help.lines().filter(|l| l.contains("Slurmctld=")) {
        assert!(snippet.lines().any(|l| l == line.trim()), "{line:?} not in contrib/slurm.conf.snippet");
    }
}

/// Whether this process can act as other users (root) and they exist; otherwise says SKIPPED.
fn can_switch_users(users: &[&str]) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let present = users.iter().all(|u| Command::new("id").arg(u).output().is_ok_and(|o| o.status.success()));
    let runuser = Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists();
    if !(root && present && runuser) {
        eprintln!("SKIPPED: needs root, runuser and the users {users:?}");
    }
    root && present && runuser
}

/// The socket's mode (0620) and group let a member of the group send and nobody else: Linux needs
/// write permission on a socket file to send to it, and the owner is the daemon.
#[test]
fn only_the_sockets_group_can_send() {
    // nobody is in group nogroup; daemon is not.
    if !can_switch_users(&["nobody", "daemon"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("hook.sock");
    let (l, rx) = listen(&socket, &SocketPerms { mode: 0o620, group: Some("nogroup".into()) });
    let as_user = |user: &str, job: &str| {
        let out = Command::new("runuser")
            .args(["-u", user, "--", "env", "-i"])
            .arg(format!("SLURM_JOB_ID={job}"))
            .arg(env!("CARGO_BIN_EXE_slurm-ledger"))
            .args(["-v", "hook", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{user}: {}", text(&out.stderr));
        text(&out.stderr)
    };
    let said = as_user("nobody", "11");
    assert!(said.contains("sent job 11"), "{said}");
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().job_id, 11);
    let said = as_user("daemon", "12");
    assert!(said.contains("nothing sent") && said.contains("Permission denied"), "{said}");
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "a user outside the group sent");
    assert_eq!(l.counters().received, 1);
}

// ------------------------------------------------------------------ live testbed

/// Where slurmctld's wrapper (testbed/slurm-testbed.sh) reads which binary to run.
const TESTBED_HOOK_CONF: &str = "/var/lib/slurm-testbed/hook.conf";

/// The hook socket on the testbed: the binary's default path, since slurmctld's environment is
/// fixed when it starts.
pub(crate) const TESTBED_HOOK_SOCKET: &str = slurm_ledger::daemon::hook::DEFAULT_HOOK_SOCKET;

/// Held while a test listens on [`TESTBED_HOOK_SOCKET`]: one such test at a time in this process
/// and on this machine (other checkouts run their tests against the same slurmctld).
pub(crate) struct HookSocketGuard {
    _local: std::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

pub(crate) fn testbed_hook_socket() -> HookSocketGuard {
    static LOCAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let local = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(TESTBED_HOOK_SOCKET).parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lock = "/run/slurm-ledger-hook-test.lock";
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        assert!(Instant::now() < deadline, "{lock} held by another test process for 10 min");
        std::thread::sleep(Duration::from_millis(200));
    }
    HookSocketGuard { _local: local, _file: file }
}

/// Points the testbed's wrapper at this build and a dump file; undone on drop.
pub(crate) struct WrapperConf {
    dump: PathBuf,
}

impl WrapperConf {
    pub(crate) fn new() -> Self {
        let dump = PathBuf::from(format!("/var/lib/slurm-testbed/hook-env-{}.txt", std::process::id()));
        std::fs::write(&dump, "").unwrap();
        // slurmctld runs the wrapper as SlurmUser; the file only gets variable names.
        std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o666)).unwrap();
        let conf = format!("bin={}\ndump={}\n", env!("CARGO_BIN_EXE_slurm-ledger"), dump.display());
        let tmp = format!("{TESTBED_HOOK_CONF}.{}", std::process::id());
        std::fs::write(&tmp, conf).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, TESTBED_HOOK_CONF).unwrap();
        WrapperConf { dump }
    }
}

impl Drop for WrapperConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(TESTBED_HOOK_CONF);
        let _ = std::fs::remove_file(&self.dump);
    }
}

fn group_gid(name: &str) -> u32 {
    let out = Command::new("getent").args(["group", name]).output().unwrap();
    text(&out.stdout).split(':').nth(2).and_then(|g| g.trim().parse().ok()).expect("gid")
}

/// slurmctld runs the hook for each job's allocation and end: a Prolog and an Epilog message
/// arrive for every job submitted, with the cluster's name, through a socket that only
/// SlurmUser's group may write.
#[test]
fn live_slurmctld_runs_the_hook_for_each_jobs_start_and_end() {
    if !crate::testbed::live_testbed_enabled() {
        return;
    }
    let _socket = testbed_hook_socket();
    let _slurm = crate::testbed::exclusive_slurm();
    let path = Path::new(TESTBED_HOOK_SOCKET);
    let (l, rx) = listen(path, &SocketPerms { mode: 0o620, group: Some("slurm".into()) });
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o620, group_gid("slurm")));
    let conf = WrapperConf::new();

    let mut jobs = Vec::new();
    for i in 0..3 {
        let out = Command::new("sbatch")
            .args(["--parsable", "-J", &format!("ledger-it-hook-{i}"), "-o", "/dev/null", "-t", "1"])
            .args(["--wrap", "sleep 1"])
            .output()
            .expect("sbatch");
        assert!(out.status.success(), "{}", text(&out.stderr));
        jobs.push(text(&out.stdout).trim().split(';').next().unwrap().parse::<u64>().unwrap());
    }
    let mut seen: HashMap<u64, BTreeSet<String>> = HashMap::new();
    let want: BTreeSet<String> = ["epilog_slurmctld".to_string(), "prolog_slurmctld".to_string()].into();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !jobs.iter().all(|j| seen.get(j) == Some(&want)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("jobs {jobs:?}: within 180 s only {seen:?} (read /var/log/slurm-testbed/slurmctld.log)")
        });
        // Other tests' jobs ring too; only ours are counted.
        if jobs.contains(&m.job_id) {
            assert_eq!(m.cluster.as_ref().map(|c| c.as_str()), Some("testcluster"), "{m:?}");
            seen.entry(m.job_id).or_default().insert(m.context.as_str().to_string());
        }
    }
    assert_eq!(l.counters().refused, 0);

    // What slurmctld put in the script's environment (names only).
    let dump = std::fs::read_to_string(&conf.dump).unwrap();
    let names: BTreeSet<&str> = dump.split_whitespace().collect();
    eprintln!("variables slurmctld set for PrologSlurmctld/EpilogSlurmctld: {names:?}");
    for v in ["SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_SCRIPT_CONTEXT"] {
        assert!(names.contains(v), "{v} not in the script's environment: {names:?}");
    }
    // slurmctld builds the environment afresh (not even PATH): `hook --help` says to export
    // SLURM_LEDGER_HOOK_SOCKET in the wrapper for that reason.
    assert!(!names.contains("PATH"), "slurmctld passed its own environment: {names:?}");
}
