//! Running Slurm's commands: one narrow trait, a real runner and a replay runner.
//!
//! The real runner streams stdout to the caller (a day of sacct output never sits in memory),
//! drains stderr on its own thread (a chatty child cannot block on a full pipe), kills the
//! whole process group when the timeout passes, and keeps the tail of stderr for the error.
//! Sites whose Slurm client lives elsewhere set a command wrapper (`ssh head`, `docker exec
//! slurmctl`): the wrapped command is `wrapper… timeout -k 10 <secs> env TZ=UTC … sacct …`, so
//! the pinned environment crosses the wrapper, and a command that outlives its timeout is
//! stopped on the far side too (killing the local `ssh` or `docker` client alone would leave
//! sacct running on the head node). `timeout` is GNU coreutils', present on any Linux host.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How much of stderr an error keeps (the tail, where the reason usually is).
const STDERR_KEEP: usize = 8 * 1024;

/// One command to run: a Slurm program, its arguments, the environment it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `sacct`, `scontrol`, `squeue`…
    pub program: String,
    pub args: Vec<String>,
    /// Variables set for the command only (e.g. `TZ=UTC`).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl Invocation {
    pub fn new(program: &str, args: &[&str], timeout: Duration) -> Self {
        Self { program: program.into(), args: args.iter().map(|s| s.to_string()).collect(), env: Vec::new(), timeout }
    }

    /// The command line as a person would type it (for errors and logs; holds no secrets).
    pub fn display(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.env {
            s.push_str(&format!("{k}={v} "));
        }
        s.push_str(&self.program);
        for a in &self.args {
            s.push(' ');
            if a.chars().any(|c| c.is_whitespace() || c.is_control() || c == '|') {
                s.push_str(&format!("{:?}", a));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// Why a command did not give its output.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start `{command}`: {source}. Is the Slurm client installed and on PATH? Otherwise set [slurm] bin_dir or command_wrapper in the config")]
    Spawn { command: String, source: std::io::Error },
    #[error("cannot start the command wrapper `{wrapper}` (for `{command}`): {source}. Check [slurm] command_wrapper in the config: its first word must be a program on this host's PATH")]
    SpawnWrapper { wrapper: String, command: String, source: std::io::Error },
    #[error("`{command}` did not finish within {secs} s and was killed; raise [slurm] timeout_secs if slurmdbd is slow. stderr: {stderr}")]
    Timeout { command: String, secs: u64, stderr: String },
    #[error("`{command}` failed ({status}). stderr: {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("reading the output of `{command}`: {source}")]
    Io { command: String, source: std::io::Error },
    #[error("replay has no recording for `{command}`")]
    NotRecorded { command: String },
}

/// A started command: read `stdout` to the end, then call [`Started::finish`].
pub struct Started {
    pub stdout: Box<dyn BufRead + Send>,
    finisher: Box<dyn FnOnce() -> Result<(), RunError> + Send>,
}

impl Started {
    /// Waits for the command and reports how it ended.
    pub fn finish(self) -> Result<(), RunError> {
        drop(self.stdout);
        (self.finisher)()
    }

    /// Reads all of stdout as text and finishes (for small outputs: versions, configs).
    pub fn into_string(mut self, command: &str) -> Result<String, RunError> {
        let mut s = String::new();
        let read =
            self.stdout.read_to_string(&mut s).map_err(|source| RunError::Io { command: command.into(), source });
        let fin = self.finish();
        fin?;
        read?;
        Ok(s)
    }
}

/// Runs Slurm commands. Implemented by [`CommandRunner`] and [`ReplayRunner`].
pub trait Runner: Send + Sync {
    fn start(&self, inv: &Invocation) -> Result<Started, RunError>;

    /// Runs a command with small output and returns it as text.
    fn run_to_string(&self, inv: &Invocation) -> Result<String, RunError> {
        self.start(inv)?.into_string(&inv.display())
    }
}

/// Runs commands on this machine, directly or through a wrapper.
#[derive(Debug, Clone, Default)]
pub struct CommandRunner {
    /// Prefix for every command, e.g. `["ssh", "head"]` or `["docker", "exec", "slurmctl"]`.
    pub wrapper: Vec<String>,
    /// Directory of the Slurm binaries; `None` means PATH (or the wrapper's PATH).
    pub bin_dir: Option<PathBuf>,
}

struct Watch {
    reaped: bool,
    timed_out: bool,
}

impl CommandRunner {
    fn argv(&self, inv: &Invocation) -> Vec<String> {
        let program = match &self.bin_dir {
            Some(dir) => dir.join(&inv.program).to_string_lossy().into_owned(),
            None => inv.program.clone(),
        };
        let mut argv = Vec::new();
        if !self.wrapper.is_empty() {
            argv.extend(self.wrapper.iter().cloned());
            // The far side's own deadline: TERM at the timeout, KILL 10 s later.
            argv.extend(["timeout".into(), "-k".into(), "10".into(), inv.timeout.as_secs().max(1).to_string()]);
            if !inv.env.is_empty() {
                argv.push("env".into());
                argv.extend(inv.env.iter().map(|(k, v)| format!("{k}={v}")));
            }
        }
        argv.push(program);
        argv.extend(inv.args.iter().cloned());
        argv
    }
}

impl Runner for CommandRunner {
    fn start(&self, inv: &Invocation) -> Result<Started, RunError> {
        let command = inv.display();
        let argv = self.argv(inv);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        if self.wrapper.is_empty() {
            cmd.envs(inv.env.iter().map(|(k, v)| (k, v)));
        }
        let mut child: Child = cmd.spawn().map_err(|source| match self.wrapper.first() {
            Some(w) => RunError::SpawnWrapper { wrapper: w.clone(), command: command.clone(), source },
            None => RunError::Spawn { command: command.clone(), source },
        })?;
        let pid = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");

        // Drain stderr so the child never blocks on it; keep the tail.
        let stderr_thread = std::thread::spawn(move || {
            let mut tail: VecDeque<u8> = VecDeque::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                tail.extend(&chunk[..n]);
                while tail.len() > STDERR_KEEP {
                    tail.pop_front();
                }
            }
            String::from_utf8_lossy(&tail.into_iter().collect::<Vec<u8>>()).trim().to_string()
        });

        // Watchdog: kills the process group at the deadline unless the child was reaped first.
        // Reaping and killing happen under one lock, so a reused pid is never signalled.
        let watch = Arc::new((Mutex::new(Watch { reaped: false, timed_out: false }), Condvar::new()));
        let deadline = Instant::now() + inv.timeout;
        let w = watch.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*w;
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if g.reaped {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    // SAFETY: kill(2) with a negative pid signals the child's own process group,
                    // which exists until the child is reaped (checked above, under the lock).
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                    g.timed_out = true;
                    return;
                }
                g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        });

        let secs = inv.timeout.as_secs();
        let finisher = move || -> Result<(), RunError> {
            let status = loop {
                let (lock, cv) = &*watch;
                let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
                match child.try_wait() {
                    Ok(Some(st)) => {
                        g.reaped = true;
                        cv.notify_all();
                        break Ok((st, g.timed_out));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        g.reaped = true;
                        cv.notify_all();
                        break Err(e);
                    }
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(5));
            };
            let stderr = stderr_thread.join().unwrap_or_default();
            let (status, timed_out) = status.map_err(|source| RunError::Io { command: command.clone(), source })?;
            if timed_out {
                return Err(RunError::Timeout { command, secs, stderr });
            }
            if !status.success() {
                return Err(RunError::Failed { command, status: status.to_string(), stderr });
            }
            Ok(())
        };
        Ok(Started { stdout: Box::new(BufReader::with_capacity(256 * 1024, stdout)), finisher: Box::new(finisher) })
    }
}

/// One recorded command output.
#[derive(Debug, Clone)]
pub struct Recording {
    pub program: String,
    /// Arguments the invocation must contain for this recording to answer it.
    pub must_contain: Vec<String>,
    pub stdout: Arc<[u8]>,
    pub stderr: String,
    pub exit_code: i32,
}

impl Recording {
    pub fn ok(program: &str, must_contain: &[&str], stdout: impl Into<Arc<[u8]>>) -> Self {
        Self {
            program: program.into(),
            must_contain: must_contain.iter().map(|s| s.to_string()).collect(),
            stdout: stdout.into(),
            stderr: String::new(),
            exit_code: 0,
        }
    }
}

/// Serves recorded outputs; records every invocation it was asked for.
#[derive(Debug, Default)]
pub struct ReplayRunner {
    recordings: Vec<Recording>,
    calls: Mutex<Vec<Invocation>>,
}

impl ReplayRunner {
    pub fn new(recordings: Vec<Recording>) -> Self {
        Self { recordings, calls: Mutex::new(Vec::new()) }
    }

    /// Every invocation so far, in order.
    pub fn calls(&self) -> Vec<Invocation> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Runner for ReplayRunner {
    fn start(&self, inv: &Invocation) -> Result<Started, RunError> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(inv.clone());
        let command = inv.display();
        let rec = self
            .recordings
            .iter()
            .find(|r| r.program == inv.program && r.must_contain.iter().all(|a| inv.args.iter().any(|x| x == a)))
            .ok_or_else(|| RunError::NotRecorded { command: command.clone() })?
            .clone();
        let data = rec.stdout.clone();
        let finisher = move || {
            if rec.exit_code == 0 {
                Ok(())
            } else {
                Err(RunError::Failed { command, status: format!("exit status: {}", rec.exit_code), stderr: rec.stderr })
            }
        };
        Ok(Started { stdout: Box::new(std::io::Cursor::new(data)), finisher: Box::new(finisher) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> Invocation {
        Invocation::new("sh", &["-c", script], Duration::from_millis(timeout_ms))
    }

    #[test]
    fn streams_stdout_and_succeeds() {
        let out = CommandRunner::default().run_to_string(&sh("printf 'a\\nb\\n'", 5_000)).unwrap();
        assert_eq!(out, "a\nb\n");
    }

    #[test]
    fn failure_keeps_stderr() {
        let err = CommandRunner::default()
            .run_to_string(&sh("echo 'sacct: error: Invalid field requested: \"Planned\"' >&2; exit 1", 5_000))
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RunError::Failed { .. }));
        assert!(msg.contains("Invalid field requested"), "{msg}");
        assert!(msg.contains("exit status: 1"), "{msg}");
    }

    #[test]
    fn large_stderr_does_not_block_and_large_stdout_streams() {
        // 1 MiB on stderr and 8 MiB on stdout: both pipes must be drained.
        let script = "head -c 1048576 /dev/zero | tr '\\0' e >&2; head -c 8388608 /dev/zero | tr '\\0' o";
        let out = CommandRunner::default().run_to_string(&sh(script, 30_000)).unwrap();
        assert_eq!(out.len(), 8 << 20);
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let start = Instant::now();
        // The child and its grandchild sleep; both must die so stdout reaches EOF.
        let err =
            CommandRunner::default().run_to_string(&sh("echo started >&2; sleep 30 & sleep 30", 300)).unwrap_err();
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("started"));
        assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    }

    #[test]
    fn missing_program_names_the_fix() {
        let err = CommandRunner::default()
            .run_to_string(&Invocation::new("sacct-does-not-exist", &["--version"], Duration::from_secs(5)))
            .unwrap_err();
        assert!(err.to_string().contains("command_wrapper"), "{err}");
    }

    #[test]
    fn wrapper_carries_the_environment() {
        // The wrapper is `sh -c '"$@"' wrap`: it runs its arguments, as ssh or docker exec would.
        let runner =
            CommandRunner { wrapper: vec!["sh".into(), "-c".into(), "\"$@\"".into(), "wrap".into()], bin_dir: None };
        let mut inv = Invocation::new("sh", &["-c", "echo $TZ"], Duration::from_secs(5));
        inv.env.push(("TZ".into(), "UTC".into()));
        assert_eq!(runner.run_to_string(&inv).unwrap().trim(), "UTC");
        assert_eq!(
            runner.argv(&inv)[..10],
            ["sh", "-c", "\"$@\"", "wrap", "timeout", "-k", "10", "5", "env", "TZ=UTC"]
        );
    }

    #[test]
    fn wrapped_command_is_stopped_on_the_far_side_at_its_timeout() {
        // The "far side" is `setsid sh -c '"$@"'`: a new session the local kill of the process
        // group does not reach, as a command ssh started on the head node. The `timeout` put
        // before the wrapped command must end it by itself: its marker must never appear.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("still-ran");
        let runner = CommandRunner {
            wrapper: vec!["setsid".into(), "sh".into(), "-c".into(), "\"$@\"".into(), "wrap".into()],
            bin_dir: None,
        };
        let script = format!("sleep 3; touch {}", marker.display());
        let inv = Invocation::new("sh", &["-c", &script], Duration::from_secs(1));
        // Local watchdog or far-side timeout (exit 124), whichever ends it first: never Ok.
        let err = runner.run_to_string(&inv).unwrap_err();
        assert!(matches!(&err, RunError::Timeout { .. }) || err.to_string().contains("124"), "{err}");
        std::thread::sleep(Duration::from_millis(3500));
        assert!(!marker.exists(), "the wrapped command outlived its timeout on the far side");
    }

    #[test]
    fn a_missing_wrapper_is_named_as_the_wrapper() {
        let runner = CommandRunner { wrapper: vec!["/nonexistent/ssh".into(), "head".into()], bin_dir: None };
        let err = runner
            .run_to_string(&Invocation::new("sacct", &["--version"], Duration::from_secs(1)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("command wrapper `/nonexistent/ssh`") && err.contains("command_wrapper"), "{err}");
    }

    #[test]
    fn replay_serves_and_records() {
        let r = ReplayRunner::new(vec![Recording::ok("sacct", &["--version"], b"slurm 22.05.8\n".to_vec())]);
        let inv = Invocation::new("sacct", &["--version"], Duration::from_secs(1));
        assert_eq!(r.run_to_string(&inv).unwrap(), "slurm 22.05.8\n");
        let other = Invocation::new("sacct", &["--json"], Duration::from_secs(1));
        assert!(matches!(r.run_to_string(&other), Err(RunError::NotRecorded { .. })));
        assert_eq!(r.calls().len(), 2);
    }
}
