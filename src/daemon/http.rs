//! The daemon's HTTP endpoint: `GET /metrics` (Prometheus) and `GET /healthz`, on `std::net`.
//!
//! Owns: binding (an error names the address and the fix), the accept thread, one short-lived
//! thread per connection, parsing a request head, and the answers:
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | 200, [`Metrics::render_as`] in the format the `Accept` header asks for ([`Format::negotiate`]) |
//! | `GET /healthz` | 200 `ok` when the daemon's [`HealthFn`] says healthy, else 503 with its reason |
//! | `HEAD` of either | the same status and headers, no body |
//! | another path | 404 |
//! | another method | 405 (`Allow: GET, HEAD`) |
//! | not HTTP/1.x, a bad request line or header | 400 |
//! | a head over [`MAX_HEAD`] | 431 |
//!
//! Invariants:
//! - Every answer is `Connection: close`; request bodies are never read (a GET has none).
//! - A connection lives at most about twice [`ServeOptions::request_timeout`] (the head must
//!   arrive within it, the answer must be taken within it), so a client that connects and sends
//!   nothing delays nobody: the next one has its own thread. At most
//!   [`ServeOptions::max_connections`] are open at once; beyond that the accept thread waits for
//!   one to end (at most a request timeout) and the kernel's backlog holds the newcomers.
//! - The wall clock is read here, at each scrape, for the cursor lag: this is the daemon's edge.
//! - Dropping [`MetricsServer`] stops it within [`STOP_WAIT`]: a flag, then a connection to itself
//!   wakes the blocked `accept`. Connections being answered finish by their own deadlines.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::metrics::{Format, Metrics};

/// What `/healthz` asks: `Ok(())` when the daemon is healthy, else `Err(reason)` (shown with 503).
pub type HealthFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The default port, 19464: not in the Prometheus wiki's sequential exporter allocations
/// (9100-9999 is full; 9464 is OpenTelemetry's Prometheus exporter, 9341 the Slurm exporter), not
/// IANA-assigned, and below Linux's ephemeral range (32768-60999).
pub const DEFAULT_PORT: u16 = 19464;

/// The default listen address: loopback only. A Prometheus on another host needs it set to an
/// address of this one (and a firewall rule).
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);

/// The most a request line and its headers may take.
pub const MAX_HEAD: usize = 8 * 1024;

/// The longest a drop of [`MetricsServer`] waits for the accept thread.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// Limits of the server; [`Default`] is what [`serve`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// A request head must arrive within this of the connection's accept; an answer must be
    /// taken within this too.
    pub request_timeout: Duration,
    /// Connections handled at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { request_timeout: Duration::from_secs(5), max_connections: 16 }
    }
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    /// Disconnected when the accept thread has ended.
    ended: Receiver<()>,
}

impl MetricsServer {
    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            // Under the lock, so an accept thread about to wait for a free slot either sees the
            // flag first or is waiting already and gets this notification.
            let _active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.slots_freed.notify_all();
        }
        let deadline = Instant::now() + STOP_WAIT;
        // A blocked accept() returns for this connection and sees the flag.
        let _ = TcpStream::connect_timeout(&wake_addr(self.local_addr), STOP_WAIT);
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        match self.ended.recv_timeout(left) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if let Some(t) = self.accept.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(addr = %self.local_addr, "the metrics server did not stop in time; leaving its thread");
            }
        }
    }
}

/// Where a connection to a listener bound to `addr` can go: a wildcard address is reached on
/// loopback.
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Connections being handled.
    active: Mutex<usize>,
    slots_freed: Condvar,
}

/// Frees a connection slot when its thread ends, panicking or not.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut active = self.0.active.lock().unwrap_or_else(|p| p.into_inner());
        *active -= 1;
        self.0.slots_freed.notify_all();
    }
}

/// Binds `addr` at once and serves `/metrics` and `/healthz` from a thread until the returned
/// server is dropped. A bind error names the address and what to do.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, health: HealthFn) -> io::Result<MetricsServer> {
    serve_with(addr, metrics, health, ServeOptions::default())
}

/// [`serve`] with other limits.
pub fn serve_with(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: HealthFn,
    options: ServeOptions,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).map_err(|e| bind_error(addr, e))?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared { stop: AtomicBool::new(false), active: Mutex::new(0), slots_freed: Condvar::new() });
    let (ended_tx, ended) = mpsc::channel::<()>();
    let app = Arc::new(App { metrics, health, options });
    let accept = {
        let shared = Arc::clone(&shared);
        thread::Builder::new().name("metrics-http".into()).spawn(move || {
            let _ended = ended_tx; // dropped when this thread ends, panicking or not
            accept_loop(&listener, &shared, &app);
        })?
    };
    tracing::info!(addr = %local_addr, "serving /metrics and /healthz");
    Ok(MetricsServer { local_addr, shared, accept: Some(accept), ended })
}

fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let fix = match e.kind() {
        ErrorKind::AddrInUse => format!(
            "another process listens there (`ss -ltnp 'sport = :{}'` shows it): stop it, or give the daemon's metrics address a free port",
            addr.port()
        ),
        ErrorKind::AddrNotAvailable => {
            "that IP address is not one of this host's (`ip -brief address` lists them): use 127.0.0.1 or one of those".into()
        }
        ErrorKind::PermissionDenied => "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a port above 1024".into(),
        _ => "check the daemon's metrics address".into(),
    };
    io::Error::new(e.kind(), format!("cannot listen on {addr} for /metrics and /healthz: {e}; {fix}"))
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, app: &Arc<App>) {
    loop {
        // Wait for a free slot (a connection ends within its deadlines), or for stop.
        {
            let mut active = shared.active.lock().unwrap_or_else(|p| p.into_inner());
            while *active >= app.options.max_connections.max(1) && !shared.stop.load(Ordering::SeqCst) {
                active = shared.slots_freed.wait(active).unwrap_or_else(|p| p.into_inner());
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %e, "metrics server: accept failed");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        *shared.active.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let slot = Slot(Arc::clone(shared));
        let app = Arc::clone(app);
        let spawned = thread::Builder::new().name("metrics-conn".into()).spawn(move || {
            let _slot = slot;
            app.handle(stream);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics server: cannot start a connection thread; connection closed");
        }
    }
}

struct App {
    metrics: Arc<Metrics>,
    health: HealthFn,
    options: ServeOptions,
}

/// A parsed request head: what routing needs.
#[derive(Debug, PartialEq)]
struct Head {
    method: String,
    path: String,
    accept: Option<String>,
}

struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, content_type: "text/plain; charset=utf-8", body: body.into(), allow: false }
    }
}

impl App {
    fn handle(&self, mut stream: TcpStream) {
        let deadline = Instant::now() + self.options.request_timeout;
        let _ = stream.set_nodelay(true);
        let answer = match read_head(&mut stream, deadline) {
            Ok(Some(bytes)) => match parse_head(&bytes) {
                Ok(head) => Some((self.route(&head), head.method == "HEAD")),
                Err(why) => Some((Answer::text(400, format!("bad request: {why}\n")), false)),
            },
            Ok(None) => None, // closed or timed out before a whole head: nothing to answer
            Err(HeadError::TooLarge) => {
                Some((Answer::text(431, format!("request head over {MAX_HEAD} bytes\n")), false))
            }
        };
        if let Some((answer, head_only)) = answer {
            let _ = stream.set_write_timeout(Some(self.options.request_timeout));
            if write_answer(&mut stream, &answer, head_only).is_ok() {
                linger(&mut stream);
            }
        }
    }

    fn route(&self, head: &Head) -> Answer {
        if head.method != "GET" && head.method != "HEAD" {
            return Answer {
                allow: true,
                ..Answer::text(405, format!("method {} not allowed: use GET\n", head.method))
            };
        }
        match head.path.as_str() {
            "/metrics" => {
                let format = Format::negotiate(head.accept.as_deref());
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
                Answer {
                    status: 200,
                    content_type: format.content_type(),
                    body: self.metrics.render_as(format, now),
                    allow: false,
                }
            }
            "/healthz" => match (self.health)() {
                Ok(()) => Answer::text(200, "ok\n"),
                Err(reason) => Answer::text(503, format!("{}\n", reason.trim_end())),
            },
            other => Answer::text(404, format!("not found: {other}; this server has /metrics and /healthz\n")),
        }
    }
}

enum HeadError {
    TooLarge,
}

/// Reads up to the blank line ending the head. `Ok(None)`: the peer closed, or the deadline
/// passed, before it.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Vec<u8>>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ok(None);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Ok(None), // timed out or reset
        };
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[searched_from..]) {
            let end = searched_from + end;
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The length of the head including its closing blank line (`\r\n\r\n`, or a bare `\n\n`).
fn find_head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the head is not UTF-8".to_string())?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("request line {line:?} is not `METHOD /path HTTP/1.1`"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("method {method:?} is not a token of capitals"));
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(format!("{version:?} is not HTTP/1.1 or HTTP/1.0"));
    }
    // origin-form (`/metrics?x`), or absolute-form (`http://host:port/metrics`) from a proxy
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !path.starts_with('/') {
        return Err(format!("target {target:?} is not a path"));
    }
    let path = path.split(['?', '#']).next().unwrap_or(path).to_string();
    let mut accept = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line {line:?} has no colon"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(format!("header name {name:?} is not a token"));
        }
        if name.eq_ignore_ascii_case("accept") {
            let value = value.trim();
            accept = Some(match accept {
                Some(earlier) => format!("{earlier}, {value}"),
                None => value.to_string(),
            });
        }
    }
    Ok(Head { method: method.to_string(), path, accept })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_answer(stream: &mut TcpStream, a: &Answer, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    if a.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&a.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Closes our side, then reads briefly what the client may still send (a body we did not read),
/// so the kernel does not answer it with a reset that could destroy the answer in flight.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, String> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn parses_what_scrapers_send() {
        let h = head("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n")
            .unwrap();
        assert_eq!(
            h,
            Head {
                method: "GET".into(),
                path: "/metrics".into(),
                accept: Some("application/openmetrics-text;version=1.0.0".into())
            }
        );
        assert_eq!(head("GET /healthz?verbose=1 HTTP/1.0\n\n").unwrap().path, "/healthz");
        assert_eq!(head("GET http://h:1/metrics HTTP/1.1\r\n\r\n").unwrap().path, "/metrics");
        // repeated Accept headers are one list
        assert_eq!(head("GET / HTTP/1.1\r\nAccept: a\r\naccept: b\r\n\r\n").unwrap().accept.as_deref(), Some("a, b"));
    }

    #[test]
    fn refuses_what_is_not_http_1() {
        for bad in [
            "hello\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nbad name: x\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        assert!(parse_head(b"GET /\xff HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn head_end_is_found_across_reads() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn wildcard_listeners_are_woken_on_loopback() {
        assert_eq!(wake_addr("0.0.0.0:9".parse().unwrap()), "127.0.0.1:9".parse().unwrap());
        assert_eq!(wake_addr("[::]:9".parse().unwrap()), "[::1]:9".parse().unwrap());
        assert_eq!(wake_addr("10.1.2.3:9".parse().unwrap()), "10.1.2.3:9".parse().unwrap());
    }
}
