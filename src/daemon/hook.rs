//! The prolog/epilog fast path: slurmctld's `PrologSlurmctld`/`EpilogSlurmctld` runs
//! `slurm-ledger hook`, which sends one small message naming the job to the daemon's socket; the
//! daemon then asks Slurm for just that job instead of waiting for its next poll.
//!
//! This module owns both ends of that socket:
//! - [`HookAddr`]: where the daemon listens, parsed from text: a unix socket path, or
//!   `tcp:HOST:PORT` when the hook runs on another host (several controllers).
//! - [`HookMessage`]: the message, built from the environment slurmctld gives the script
//!   (`SLURM_JOB_ID`, `SLURM_CLUSTER_NAME`, `SLURM_SCRIPT_CONTEXT`), and its wire form: one JSON
//!   object of at most [`MAX_MESSAGE`] bytes (`{"job_id":42,"cluster":"c","context":"prolog_slurmctld"}`).
//! - [`send`]: the hook's side, bounded by a time budget.
//! - [`Listener`]: the daemon's side: binds the address, decodes on its own thread, forwards each
//!   message on the daemon's channel, counts what it received and refused.
//!
//! # Invariants
//! - **A message is only a hint.** It names a job id, never usage: whatever arrives (or is lost)
//!   changes nothing billed. A lost message costs at most one poll interval; a forged one makes
//!   the daemon ask Slurm about a job id, nothing more.
//! - **The sender never waits long.** [`send`] returns within its budget whatever the far side
//!   does: a missing socket or a refused connection fails at once; a full datagram queue (a burst
//!   of jobs while the daemon is busy: `net.unix.max_dgram_qlen` is 10 on some kernels) waits for
//!   room only until the budget is spent; a TCP connect, name lookup and write share the budget.
//! - **The receiver never panics on input.** Anything empty, oversized, not JSON, or with a job id
//!   of 0 or an invalid cluster name is refused: counted, logged (at most one line per
//!   [`REFUSAL_LOG_EVERY`]), dropped. Unknown JSON fields are ignored, so a newer hook can talk to
//!   an older daemon during an upgrade.
//! - **Only the intended writer can write.** A unix socket is created with [`SocketPerms`]' mode
//!   (default `0620`: Linux needs write permission on the socket file to `sendto` it, and nothing
//!   else; read and execute bits mean nothing on a socket) and group (slurmctld's `SlurmUser`
//!   group), both set before the socket appears at its path: it is bound in a private (`0700`)
//!   directory beside it, given its mode and group there, then hard-linked into place, which also
//!   fails rather than replace a socket another daemon created meanwhile.
//! - **One daemon per socket.** An existing socket at the path is removed at start only if nothing
//!   answers on it (a stale file after a crash); if something does, start fails ("another daemon
//!   is running"). Anything at the path that is not a socket is left alone and start fails.
//!   Dropping the [`Listener`] stops its thread and removes the socket file it created (only if
//!   the path still holds that file).
//! - **TCP is open to any peer that can connect.** Such a peer can make the daemon ask Slurm about
//!   a job id, nothing more. Each connection may carry [`MAX_PER_CONNECTION`] messages (one per
//!   line) within [`CONNECTION_DEADLINE`]; a silent or slow peer is cut off then, so it cannot hold
//!   the thread. Bind to the controllers' network only, and firewall the port.

use std::ffi::CString;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::ClusterName;

/// Where the hook sends and the daemon listens when nothing else is configured.
pub const DEFAULT_HOOK_SOCKET: &str = "/run/slurm-ledger/hook.sock";
/// The largest message on the wire, in bytes; anything larger is refused.
pub const MAX_MESSAGE: usize = 1024;
/// The longest `SLURM_SCRIPT_CONTEXT` carried, in bytes (longer ones are cut by the sender).
pub const MAX_CONTEXT: usize = 64;
/// How long the `slurm-ledger hook` command may spend sending.
pub const HOOK_BUDGET: Duration = Duration::from_millis(10);
/// TCP: the most messages one connection may carry.
pub const MAX_PER_CONNECTION: usize = 16;
/// TCP: how long one connection may take to send its messages before it is cut off.
pub const CONNECTION_DEADLINE: Duration = Duration::from_millis(500);
/// A refused message is logged at most once per this interval (with a count of the others).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// The socket file's default mode: the owner (the daemon) and its group (the hook's user) may
/// send, nobody else.
pub const DEFAULT_SOCKET_MODE: u32 = 0o620;

/// The `SLURM_SCRIPT_CONTEXT` slurmctld sets for `PrologSlurmctld`.
const PROLOG: &str = "prolog_slurmctld";
/// The `SLURM_SCRIPT_CONTEXT` slurmctld sets for `EpilogSlurmctld`.
const EPILOG: &str = "epilog_slurmctld";

// ---------------------------------------------------------------------------------- address

/// Where the daemon listens and the hook sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAddr {
    /// A unix datagram socket at this absolute path.
    Unix(PathBuf),
    /// A TCP address; `host` is an IP address or a name (looked up within the send budget).
    Tcp { host: String, port: u16 },
}

/// A hook address that cannot be used, with the input and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hook socket address {input:?}: {reason}; use an absolute path such as {DEFAULT_HOOK_SOCKET}, or tcp:HOST:PORT such as tcp:10.0.0.5:6830")]
pub struct HookAddrError {
    pub input: String,
    pub reason: String,
}

impl std::str::FromStr for HookAddr {
    type Err = HookAddrError;

    fn from_str(input: &str) -> Result<Self, HookAddrError> {
        let err = |reason: &str| HookAddrError { input: input.to_string(), reason: reason.to_string() };
        if let Some(rest) = input.strip_prefix("tcp:") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("a TCP address needs a port"))?;
            let port: u16 = port.parse().map_err(|_| err("the port is not a number from 1 to 65535"))?;
            if port == 0 {
                return Err(err("the port is not a number from 1 to 65535"));
            }
            // `[::1]` for an IPv6 address, as in a URL.
            let host = match host.strip_prefix('[') {
                Some(h) => h.strip_suffix(']').ok_or_else(|| err("an IPv6 address in [ ] lacks its ]"))?,
                None if host.contains(':') => return Err(err("write an IPv6 address in brackets: tcp:[::1]:PORT")),
                None => host,
            };
            if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(err("the host is empty or not a host name"));
            }
            return Ok(HookAddr::Tcp { host: host.to_string(), port });
        }
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        let path = Path::new(input);
        if !path.is_absolute() {
            return Err(err("a socket path must be absolute (and other forms need the tcp: prefix)"));
        }
        // sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
        if input.len() > 107 {
            return Err(err("a unix socket path may be at most 107 bytes long"));
        }
        if input.ends_with('/') {
            return Err(err("it names a directory, not a socket file"));
        }
        Ok(HookAddr::Unix(path.to_path_buf()))
    }
}

impl fmt::Display for HookAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookAddr::Unix(p) => write!(f, "{}", p.display()),
            HookAddr::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            HookAddr::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

// ---------------------------------------------------------------------------------- message

/// Which script sent the message (`SLURM_SCRIPT_CONTEXT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HookContext {
    /// `prolog_slurmctld`: the job was just allocated.
    Prolog,
    /// `epilog_slurmctld`: the job just ended.
    Epilog,
    /// Anything else, as given (empty when the variable was not set): the job id is still a hint.
    Other(String),
}

impl HookContext {
    pub fn from_text(text: &str) -> Self {
        match text {
            PROLOG => HookContext::Prolog,
            EPILOG => HookContext::Epilog,
            other => HookContext::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            HookContext::Prolog => PROLOG,
            HookContext::Epilog => EPILOG,
            HookContext::Other(s) => s,
        }
    }
}

impl fmt::Display for HookContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.as_str().is_empty() { "no SLURM_SCRIPT_CONTEXT" } else { self.as_str() })
    }
}

/// One hook message: this job changed (started or ended) on this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookMessage {
    /// `SLURM_JOB_ID`: the job's own id (an array task's or het component's raw id), never 0.
    pub job_id: u64,
    /// `SLURM_CLUSTER_NAME`, when set and a valid cluster name.
    pub cluster: Option<ClusterName>,
    pub context: HookContext,
}

/// Why the environment gave no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookEnvError {
    #[error("SLURM_JOB_ID is not set: slurm-ledger hook is run by slurmctld as PrologSlurmctld/EpilogSlurmctld, which sets it")]
    NoJobId,
    #[error("SLURM_JOB_ID={0:?} is not a job id (a number from 1)")]
    BadJobId(String),
}

/// Why a received message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookRefusal {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes or more, over the limit of {MAX_MESSAGE}")]
    Oversized(usize),
    #[error("not a hook message: {0}")]
    Malformed(String),
    #[error("job id 0")]
    ZeroJobId,
    #[error("{0}")]
    BadCluster(String),
    #[error("context of {0} bytes, over the limit of {MAX_CONTEXT}")]
    LongContext(usize),
    #[error("more than {MAX_PER_CONNECTION} messages on one connection")]
    TooMany,
    #[error("connection sent no complete message within {CONNECTION_DEADLINE:?}")]
    Slow,
}

/// The wire form: one JSON object. Unknown fields are ignored (a newer sender), missing optional
/// ones are `None`/empty.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire<'a> {
    job_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    cluster: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    context: std::borrow::Cow<'a, str>,
}

impl HookMessage {
    /// The message from slurmctld's script environment (`lookup` is `std::env::var(..).ok()` in
    /// the binary). `SLURM_JOB_ID` is required (`SLURM_JOBID`, its older name, is the fallback); a
    /// missing or invalid `SLURM_CLUSTER_NAME` leaves the cluster out; a context longer than
    /// [`MAX_CONTEXT`] is cut.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<HookMessage, HookEnvError> {
        let raw = lookup("SLURM_JOB_ID").or_else(|| lookup("SLURM_JOBID")).ok_or(HookEnvError::NoJobId)?;
        let job_id = match raw.trim().parse::<u64>() {
            Ok(id) if id > 0 => id,
            _ => return Err(HookEnvError::BadJobId(raw)),
        };
        let cluster = lookup("SLURM_CLUSTER_NAME").and_then(|c| ClusterName::new(c.trim()).ok());
        let mut context = lookup("SLURM_SCRIPT_CONTEXT").unwrap_or_default();
        if context.len() > MAX_CONTEXT {
            let mut end = MAX_CONTEXT;
            while !context.is_char_boundary(end) {
                end -= 1;
            }
            context.truncate(end);
        }
        Ok(HookMessage { job_id, cluster, context: HookContext::from_text(&context) })
    }

    /// The wire form: one JSON object, at most [`MAX_MESSAGE`] bytes for any message
    /// [`HookMessage::from_env`] or [`HookMessage::decode`] gives.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            job_id: self.job_id,
            cluster: self.cluster.as_ref().map(|c| c.as_str().into()),
            context: self.context.as_str().into(),
        };
        serde_json::to_vec(&wire).expect("a struct of a number and strings serializes")
    }

    /// Reads one message (surrounding whitespace allowed), or says why it is refused.
    pub fn decode(bytes: &[u8]) -> Result<HookMessage, HookRefusal> {
        if bytes.len() > MAX_MESSAGE {
            return Err(HookRefusal::Oversized(bytes.len()));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(HookRefusal::Empty);
        }
        // An object only (serde would also read a struct from an array).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(HookRefusal::Malformed("not a JSON object".into()));
        }
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| HookRefusal::Malformed(e.to_string()))?;
        if wire.job_id == 0 {
            return Err(HookRefusal::ZeroJobId);
        }
        if wire.context.len() > MAX_CONTEXT {
            return Err(HookRefusal::LongContext(wire.context.len()));
        }
        let cluster = match wire.cluster {
            Some(c) => Some(ClusterName::new(&c).map_err(HookRefusal::BadCluster)?),
            None => None,
        };
        Ok(HookMessage { job_id: wire.job_id, cluster, context: HookContext::from_text(&wire.context) })
    }
}

// ---------------------------------------------------------------------------------- send

/// Sends one message, within `budget`.
///
/// Unix: one datagram from an unbound, non-blocking socket. A missing socket file, a socket
/// nothing listens on or one the caller may not write fails at once; a full queue waits for room
/// until the budget is spent, then fails with `TimedOut`. TCP: the name lookup (skipped for an
/// IP address), connect and write all within the budget, then close; each address of a name is
/// tried in turn while time is left. A lookup that outlasts the budget is left running on a
/// thread of its own (the hook's process exits right after).
pub fn send(addr: &HookAddr, msg: &HookMessage, budget: Duration) -> io::Result<()> {
    let deadline = Instant::now() + budget;
    let bytes = msg.encode();
    match addr {
        HookAddr::Unix(path) => send_datagram(path, &bytes, deadline),
        HookAddr::Tcp { host, port } => send_tcp(host, *port, &bytes, deadline),
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(io::ErrorKind::TimedOut, "the hook's time budget is spent"))
    } else {
        Ok(left)
    }
}

fn send_datagram(path: &Path, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    // Connected, so that poll() can wait for room in the receiver's queue.
    sock.connect(path)?;
    loop {
        match sock.send(bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {n} of {} bytes", bytes.len())))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = remaining(deadline)?;
                poll_fds(&mut [pollfd(sock.as_raw_fd(), libc::POLLOUT)], Some(left))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn send_tcp(host: &str, port: u16, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let addrs = resolve(host, port, deadline)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        let left = remaining(deadline)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(mut stream) => {
                stream.set_write_timeout(Some(remaining(deadline)?))?;
                let mut line = Vec::with_capacity(bytes.len() + 1);
                line.extend_from_slice(bytes);
                line.push(b'\n');
                stream.write_all(&line)?;
                return Ok(());
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The addresses of `host`: an IP address as is; a name looked up on a thread, waited for until
/// the deadline (getaddrinfo has no timeout of its own).
fn resolve(host: &str, port: u16, deadline: Instant) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new().name("hook-lookup".into()).spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
    })?;
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(result) => result,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("looking up {host} took longer than the budget")))
        }
    }
}

// ---------------------------------------------------------------------------------- listener

/// How the daemon's unix socket file is created. Ignored for TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPerms {
    /// Permission bits (at most `0o777`). Default [`DEFAULT_SOCKET_MODE`] (`0620`).
    pub mode: u32,
    /// The socket file's group (a name or a number): the group of the user slurmctld runs the hook
    /// as (its `SlurmUser`, usually `slurm`). `None`: the daemon's own group; the daemon's user
    /// must be a member of any other group named.
    pub group: Option<String>,
}

impl Default for SocketPerms {
    fn default() -> Self {
        SocketPerms { mode: DEFAULT_SOCKET_MODE, group: None }
    }
}

/// What a [`Listener`] has seen since it started, for the daemon's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCounters {
    /// Messages decoded and forwarded to the daemon.
    pub received: u64,
    /// Messages (or TCP connections) refused: malformed, oversized, too many, too slow.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    refused: AtomicU64,
}

/// The daemon's end of the hook socket: a thread that decodes messages and forwards them on the
/// daemon's channel. Dropping it stops the thread and removes the socket file it created.
pub struct Listener {
    addr: HookAddr,
    counters: Arc<Counters>,
    wake: UnixDatagram,
    thread: Option<JoinHandle<()>>,
    /// The unix socket file this listener created: path, device, inode.
    created: Option<(PathBuf, u64, u64)>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("addr", &self.addr).field("counters", &self.counters()).finish()
    }
}

impl Listener {
    /// Binds `addr` and starts forwarding every message received on `tx`. The thread ends when
    /// the listener is dropped or `tx`'s receiver is.
    ///
    /// Unix: the directory must exist (systemd's `RuntimeDirectory=` makes it); a stale socket
    /// file is replaced, a live one is an `AddrInUse` error ("another daemon is running"), a file
    /// that is not a socket an `AlreadyExists` error. TCP: binds the address given (`port` 0: any
    /// free port; [`Listener::addr`] tells which).
    pub fn start(addr: &HookAddr, perms: &SocketPerms, tx: Sender<HookMessage>) -> io::Result<Listener> {
        let counters = Arc::new(Counters::default());
        let (wake, wake_rx) = UnixDatagram::pair()?;
        let c = Arc::clone(&counters);
        let (bound, created, thread) = match addr {
            HookAddr::Unix(path) => {
                let (sock, created) = bind_unix(path, perms)?;
                let thread = std::thread::Builder::new()
                    .name("hook-listener".into())
                    .spawn(move || serve_unix(sock, wake_rx, tx, c))?;
                (addr.clone(), Some(created), thread)
            }
            HookAddr::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port)).map_err(|e| {
                    io::Error::new(e.kind(), format!("binding the hook socket {addr}: {e}; is another daemon running, or is the address not this host's?"))
                })?;
                listener.set_nonblocking(true)?;
                let local = listener.local_addr()?;
                let bound = HookAddr::Tcp { host: local.ip().to_string(), port: local.port() };
                let thread = std::thread::Builder::new()
                    .name("hook-listener".into())
                    .spawn(move || serve_tcp(listener, wake_rx, tx, c))?;
                (bound, None, thread)
            }
        };
        tracing::info!(socket = %bound, "listening for prolog/epilog hook messages");
        Ok(Listener { addr: bound, counters, wake, thread: Some(thread), created })
    }

    /// The address as bound (for TCP, with the port the system chose for port 0).
    pub fn addr(&self) -> &HookAddr {
        &self.addr
    }

    /// Messages received and refused so far.
    pub fn counters(&self) -> HookCounters {
        HookCounters {
            received: self.counters.received.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.wake.send(b"stop");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Only the file this listener created: a later daemon may have replaced a removed one.
        if let Some((path, dev, ino)) = &self.created {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Binds the unix socket at `path` with `perms` (see the module's invariants); returns it
/// (non-blocking) and the file's identity.
fn bind_unix(path: &Path, perms: &SocketPerms) -> io::Result<(UnixDatagram, (PathBuf, u64, u64))> {
    if perms.mode & !0o777 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("hook socket mode {:o}: only permission bits (at most 777) can be set", perms.mode),
        ));
    }
    let gid = perms.group.as_deref().map(group_id).transpose()?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("/"),
    };
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the hook socket's directory {} does not exist: create it (systemd: RuntimeDirectory=slurm-ledger makes /run/slurm-ledger)",
                dir.display()
            ),
        ));
    }
    remove_if_stale(path)?;

    // Bind where nobody else can reach it, set mode and group, then link it into place.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let private = dir.join(format!(".{name}.bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private); // left by a crash of a process with this pid
    std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(|e| {
        io::Error::new(e.kind(), format!("creating {} to bind the hook socket: {e}", private.display()))
    })?;
    let staged = private.join("s");
    let result = (|| {
        let sock = UnixDatagram::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(perms.mode))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&staged, None, Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "giving the hook socket to group {}: {e}; the daemon's user must be a member of that group",
                        perms.group.as_deref().unwrap_or_default()
                    ),
                )
            })?;
        }
        std::fs::hard_link(&staged, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} appeared while binding: another daemon is running", path.display()),
                )
            } else {
                io::Error::new(e.kind(), format!("linking the hook socket to {}: {e}", path.display()))
            }
        })?;
        sock.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((sock, (path.to_path_buf(), meta.dev(), meta.ino())))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Removes a socket file nothing listens on; refuses a live one, or anything else at `path`.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket: remove it, or choose another hook socket path", path.display()),
        ));
    }
    let probe = UnixDatagram::unbound()?;
    match probe.connect(path) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            tracing::info!(socket = %path.display(), "removing a stale hook socket (nothing listens on it)");
            std::fs::remove_file(path)
        }
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another daemon is running: something listens on the hook socket {}; stop it, or give this daemon another hook_socket",
                path.display()
            ),
        )),
        // EPROTOTYPE: a stream socket something listens on; EACCES: someone else's.
        Err(e) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("the hook socket {} is in use or not ours ({e}); stop what uses it, or choose another path", path.display()),
        )),
    }
}

/// A group name or number → gid.
fn group_id(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = CString::new(group)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("group name {group:?} contains a NUL")))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: getgrnam_r writes the entry into `grp` and its strings into `buf` (of the length
        // given); `result` points at `grp` or is null. Nothing is kept past this call but the gid.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe { libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("group {group:?} does not exist: name the group of slurmctld's SlurmUser (usually slurm)"),
            ));
        }
        return Ok(grp.gr_gid);
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// poll(2) until one of `fds` is ready or `timeout` passes (`None`: no timeout); retries EINTR.
fn poll_fds(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as libc::c_int);
    loop {
        // SAFETY: `fds` is a valid slice of pollfd for the call's duration.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `fd` is readable; `false` once the wake socket says stop.
fn wait_readable(fd: RawFd, wake: &UnixDatagram) -> bool {
    let mut fds = [pollfd(fd, libc::POLLIN), pollfd(wake.as_raw_fd(), libc::POLLIN)];
    if let Err(e) = poll_fds(&mut fds, None) {
        tracing::warn!(error = %e, "hook listener: poll failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    fds[1].revents == 0
}

/// What the listener thread does with one message's bytes. `false`: the daemon is gone, stop.
struct Forward {
    tx: Sender<HookMessage>,
    counters: Arc<Counters>,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Forward {
    fn bytes(&mut self, bytes: &[u8], from: &dyn fmt::Display) -> bool {
        match HookMessage::decode(bytes) {
            Ok(msg) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job_id = msg.job_id, context = %msg.context, "hook message");
                self.tx.send(msg).is_ok()
            }
            Err(why) => {
                self.refuse(&why, from);
                true
            }
        }
    }

    fn refuse(&mut self, why: &HookRefusal, from: &dyn fmt::Display) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        if self.last_log.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(from = %from, reason = %why, refused_unlogged = self.unlogged, "hook message refused");
        self.last_log = Some(Instant::now());
        self.unlogged = 0;
    }
}

fn serve_unix(sock: UnixDatagram, wake: UnixDatagram, tx: Sender<HookMessage>, counters: Arc<Counters>) {
    let mut fwd = Forward { tx, counters, last_log: None, unlogged: 0 };
    // One byte more than the limit: a longer datagram is cut to this, and so seen as oversized.
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let from = "the unix socket";
    while wait_readable(sock.as_raw_fd(), &wake) {
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n > MAX_MESSAGE => fwd.refuse(&HookRefusal::Oversized(n), &from),
                Ok(n) => {
                    if !fwd.bytes(&buf[..n], &from) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "hook listener: receive failed");
                    break;
                }
            }
        }
    }
}

fn serve_tcp(listener: TcpListener, wake: UnixDatagram, tx: Sender<HookMessage>, counters: Arc<Counters>) {
    let mut fwd = Forward { tx, counters, last_log: None, unlogged: 0 };
    while wait_readable(listener.as_raw_fd(), &wake) {
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if !serve_connection(stream, peer, &mut fwd) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: do not spin.
                    tracing::warn!(error = %e, "hook listener: accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

/// Reads up to [`MAX_PER_CONNECTION`] newline-separated messages within [`CONNECTION_DEADLINE`].
/// `false`: the daemon is gone, stop.
fn serve_connection(mut stream: TcpStream, peer: SocketAddr, fwd: &mut Forward) -> bool {
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    let _ = stream.set_nonblocking(false);
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_MESSAGE + 1);
    let mut chunk = [0u8; 1024];
    let mut count = 0usize;
    loop {
        let Ok(left) = remaining(deadline) else {
            fwd.refuse(&HookRefusal::Slow, &peer);
            return true;
        };
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                fwd.refuse(&HookRefusal::Slow, &peer);
                return true;
            }
            Err(_) => return true, // reset by the peer: nothing to count
        };
        let eof = n == 0;
        pending.extend_from_slice(&chunk[..n]);
        // Every complete line, then at the end what is left.
        loop {
            let split = match pending.iter().position(|&b| b == b'\n') {
                Some(pos) => pos + 1,
                None if eof && !pending.is_empty() => pending.len(),
                None => break,
            };
            let line: Vec<u8> = pending.drain(..split).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            count += 1;
            if count > MAX_PER_CONNECTION {
                fwd.refuse(&HookRefusal::TooMany, &peer);
                return true;
            }
            if !fwd.bytes(&line, &peer) {
                return false;
            }
        }
        if eof {
            return true;
        }
        if pending.len() > MAX_MESSAGE {
            fwd.refuse(&HookRefusal::Oversized(pending.len()), &peer);
            return true;
        }
    }
}

#[cfg(test)]
mod tests;
