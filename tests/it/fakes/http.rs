//! A minimal HTTP/1.1 server on `std::net`, for fakes of remote APIs.
//!
//! Owns: listening on 127.0.0.1:0 (loopback only), one thread per connection, keep-alive,
//! `Content-Length` bodies, `Connection: close`, bounded reads, and the three ways a fake can
//! answer ([`Reply`]): a response (optionally after a delay) or a dropped connection.
//!
//! Invariants: every wait has a deadline or observes the stop flag within [`POLL`], so threads
//! end by themselves after [`Server::stop`]; an idle keep-alive connection is never closed by the
//! server before stop (a pooled client must not see spurious errors the test did not inject).
//! Bytes that are not HTTP/1.x are answered 400/413/431/501 with `Connection: close` and never reach
//! the handler. No chunked request bodies (a JSON client sends `Content-Length`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked reads and accepts look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Request line + headers.
const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 1024 * 1024;
/// A request that has started must be complete within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0: the connection closes after the answer unless it asked for keep-alive.
    pub http10: bool,
}

impl Request {
    /// The first header of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The target up to `?`, still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }
    /// Decoded query pairs (`+` is a space); `Err` names the undecodable parameter.
    pub fn query(&self) -> Result<Vec<(String, String)>, String> {
        let Some((_, q)) = self.target.split_once('?') else { return Ok(Vec::new()) };
        q.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let bad = || format!("query parameter {kv:?} is not valid percent-encoded UTF-8");
                Ok((percent_decode(k, true).ok_or_else(bad)?, percent_decode(v, true).ok_or_else(bad)?))
            })
            .collect()
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in a query string);
/// `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Extra headers; `Content-Length` (and `Connection: close` when closing) are added on write.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("a Value serialises"),
        }
    }
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the handler wants done with a request.
#[derive(Debug)]
pub enum Reply {
    /// Wait `delay` (cut short by stop, which then closes unanswered), then answer.
    Send { delay: Duration, response: Response },
    /// Close the connection without answering.
    Drop,
}

pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A running server; stopped on [`Server::stop`] or drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: Handler) -> std::io::Result<Server> {
        Server::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), handler)
    }

    /// Listens on `addr` (a loopback address; port 0: a free one), e.g. again on the port of a
    /// stopped server.
    pub fn start_at(addr: SocketAddr, handler: Handler) -> std::io::Result<Server> {
        assert!(addr.ip().is_loopback(), "fake HTTP server: {addr} is not a loopback address");
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = std::thread::Builder::new().name("fake-http-accept".into()).spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, f) = (handler.clone(), flag.clone());
                        let _ = std::thread::Builder::new()
                            .name("fake-http-conn".into())
                            .spawn(move || serve_connection(stream, &*h, &f));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })?;
        Ok(Server { addr, stop, accept: Some(accept) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (the listener is closed when this returns); open connections close
    /// within [`POLL`], delayed answers are abandoned.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sleeps `d` unless stop comes first; true when the full time passed.
pub fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

fn serve_connection(mut stream: TcpStream, handler: &(dyn Fn(&Request) -> Reply + Send + Sync), stop: &AtomicBool) {
    if stream.set_nonblocking(false).and_then(|_| stream.set_read_timeout(Some(POLL))).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream, &mut buf, stop) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(resp) => {
                if write_response(&mut stream, &resp, true).is_ok() {
                    close_gracefully(&mut stream);
                }
                return;
            }
        };
        let close = wants_close(&req);
        match handler(&req) {
            Reply::Drop => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            Reply::Send { delay, response } => {
                if !sleep_unless_stopped(delay, stop) || write_response(&mut stream, &response, close).is_err() || close
                {
                    return;
                }
            }
        }
    }
}

/// Ends a refused request without a reset (which could destroy the answer before the client
/// reads it): stop writing, then discard what the client still sends, for at most 500 ms.
fn close_gracefully(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 16 * 1024];
    while Instant::now() < end {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return,
        }
    }
}

fn wants_close(req: &Request) -> bool {
    let conn = req.header("Connection").unwrap_or("");
    let has = |t: &str| conn.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
    has("close") || (req.http10 && !has("keep-alive"))
}

/// Reads one request. `Ok(None)`: the peer closed, stop was requested, or a started request timed out.
/// `Err`: an answer for bytes that are not an acceptable HTTP/1.x request.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> Result<Option<Request>, Response> {
    let err = |status: u16, msg: &str| Response::json(status, &serde_json::json!({"message": msg, "code": status}));
    let mut started: Option<Instant> = (!buf.is_empty()).then(Instant::now);
    let mut chunk = [0u8; 16 * 1024];
    let mut fill = |buf: &mut Vec<u8>, started: &mut Option<Instant>| -> Option<()> {
        loop {
            if stop.load(Ordering::SeqCst) || started.is_some_and(|t| t.elapsed() > REQUEST_DEADLINE) {
                return None;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    started.get_or_insert_with(Instant::now);
                    return Some(());
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return None,
            }
        }
    };
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(err(431, "request head larger than 64 KiB"));
        }
        if fill(buf, &mut started).is_none() {
            return Ok(None);
        }
    };
    if head_end > MAX_HEAD {
        return Err(err(431, "request head larger than 64 KiB"));
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| err(400, "request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else { return Err(err(400, "malformed request line")) };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || method.is_empty() || !target.starts_with('/') {
        return Err(err(400, "malformed request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else { return Err(err(400, "malformed header line")) };
        if n.is_empty() || n.contains(' ') {
            return Err(err(400, "malformed header name"));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let http10 = version == "HTTP/1.0";
    let mut req = Request { method: method.into(), target: target.into(), headers, body: Vec::new(), http10 };
    if req.header("Transfer-Encoding").is_some() {
        return Err(err(501, "Transfer-Encoding is not supported by this fake; send Content-Length"));
    }
    let lengths: Vec<&str> =
        req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length")).map(|(_, v)| v.as_str()).collect();
    let len = match lengths[..] {
        [] => 0,
        [v] => v.parse::<usize>().map_err(|_| err(400, "Content-Length is not a number"))?,
        _ => return Err(err(400, "more than one Content-Length")),
    };
    if len > MAX_BODY {
        return Err(err(413, "body larger than 1 MiB"));
    }
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        if fill(buf, &mut started).is_none() {
            return Ok(None);
        }
    }
    req.body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    Ok(Some(req))
}

fn write_response(stream: &mut TcpStream, r: &Response, close: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (n, v) in &r.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
