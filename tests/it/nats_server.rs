//! Debian's real nats-server for the NATS sink's tests (installed by `scripts/nats-server`):
//! each test starts its own with JetStream on a free loopback port and a store in a temporary
//! folder, waits until it answers, and kills it when dropped. Every wait is bounded. Also a
//! loopback TCP proxy that loses what a fault needs lost, and a JetStream admin for creating
//! the stream and reading what arrived.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

/// The nats-server binary: `NATS_SERVER` or the one on PATH.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin"]) {
        let p = PathBuf::from(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server is not installed: run `bash scripts/nats-server install` as root (Debian's nats-server package)"
    )
}

/// A free loopback port (bound and released: a server started next takes it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running nats-server; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Lines added to the server's config file (an `authorization { … }` block).
    extra: String,
    /// JetStream on (`-js`).
    js: bool,
}

impl NatsServer {
    /// `nats-server -js -a 127.0.0.1 -p PORT -sd DIR`.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// With a config file holding `extra` (for auth).
    pub fn start_with(extra: &str) -> Self {
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.into(),
            js: true,
        };
        s.launch();
        s
    }

    /// Without JetStream.
    pub fn start_core_only() -> Self {
        let mut s = NatsServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: String::new(),
            js: false,
        };
        s.launch();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again: same port, same store).
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let store = self.dir.path().join("store");
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(binary());
        if self.js {
            cmd.arg("-js").arg("-sd").arg(&store);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if !self.extra.is_empty() {
            let conf = self.dir.path().join("server.conf");
            std::fs::write(&conf, &self.extra).unwrap();
            cmd.arg("-c").arg(&conf);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("starting nats-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits (at most 15 s) until the server sends its INFO line.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited ({status}) before it answered:\n{}", self.log());
            }
            if let Ok(mut c) =
                TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
            {
                c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                let mut buf = [0u8; 4];
                if c.read_exact(&mut buf).is_ok() && &buf == b"INFO" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not answer on port {} within 15 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server as an admin does (SIGTERM: it flushes its store and exits; SIGKILL after
    /// 10 s); its store stays for [`NatsServer::launch`].
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server (its store stays for [`NatsServer::launch`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A folder that lives as long as the server (for key files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message of the stream as a subscriber reads it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub msg_id: Option<String>,
    pub payload: String,
}

/// A JetStream client for the test's own use: create the stream, read what arrived.
pub struct Admin {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Admin {
    pub fn connect(url: &str, opts: async_nats::ConnectOptions) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), opts.connect(url)).await })
            .expect("connect within 10 s")
            .expect("connect");
        // The context spawns its acker task: it needs the runtime entered.
        let js = {
            let _in = rt.enter();
            jetstream::new(client)
        };
        Admin { js, rt }
    }

    /// A file-backed stream capturing `subject` (which may be a filter such as `other.>`), with a
    /// de-duplication window.
    pub fn create_stream(&self, name: &str, subject: &str, duplicate_window: Duration) {
        let cfg = stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            duplicate_window,
            ..Default::default()
        };
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), self.js.create_stream(cfg)).await })
            .unwrap()
            .unwrap();
    }

    /// Every message of the stream, in order (bounded: 10 s).
    pub fn read_all(&self, name: &str) -> Vec<Stored> {
        self.rt.block_on(async {
            let mut s = self.js.get_stream(name).await.unwrap();
            let n = s.info().await.unwrap().state.messages;
            let c = s
                .create_consumer(consumer::pull::Config { ack_policy: consumer::AckPolicy::None, ..Default::default() })
                .await
                .unwrap();
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while (out.len() as u64) < n {
                let mut batch = c.fetch().max_messages(500).expires(Duration::from_secs(2)).messages().await.unwrap();
                while let Some(m) = tokio::time::timeout_at(deadline, batch.next()).await.expect("read within 10 s") {
                    let m = m.unwrap();
                    out.push(Stored {
                        msg_id: m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                            .map(|v| v.as_str().to_string()),
                        payload: String::from_utf8(m.payload.to_vec()).unwrap(),
                    });
                }
            }
            out
        })
    }

    /// The stream's last sequence number.
    pub fn last_seq(&self, name: &str) -> u64 {
        self.rt.block_on(async { self.js.get_stream(name).await.unwrap().info().await.unwrap().state.last_sequence })
    }
}

/// What the proxy does to the first connection that publishes (`HPUB`), once (again after
/// [`Proxy::arm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    None,
    /// Forward the publishes to the server, never its answers (the acks), then cut both sides:
    /// stored, not acknowledged.
    LoseAcks,
    /// Drop the data holding the publishes and cut both sides: never stored.
    DropPublishes,
}

/// A loopback TCP proxy to a server, faulty once as told.
pub struct Proxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    fired: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (f, fired, stop) =
            (Arc::new(Mutex::new(fault)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (fa, fi, st) = (f.clone(), fired.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (f, fi, st) = (fa.clone(), fi.clone(), st.clone());
                        std::thread::spawn(move || pump(client, upstream, f, fi, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { port, fault: f, fired, stop }
    }

    /// Arms `fault` again, for the next connection that publishes (whichever connection it is).
    pub fn arm(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// How many times the fault hit.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pump(client: TcpStream, upstream: u16, fault: Arc<Mutex<Fault>>, fired: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let mute = Arc::new(AtomicBool::new(false));
    // Server → client, unless muted.
    {
        let (mut from, mut to, mute, stop) =
            (server.try_clone().unwrap(), client.try_clone().unwrap(), mute.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if !mute.load(Ordering::SeqCst) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                }
            }
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    // Client → server, watching for the first publish.
    let (mut from, mut to) = (client, server);
    from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cut_at: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if cut_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if cut_at.is_none() && chunk.windows(5).any(|w| w == b"HPUB ") {
            let mut f = fault.lock().unwrap();
            match *f {
                Fault::None => {}
                Fault::LoseAcks => {
                    mute.store(true, Ordering::SeqCst);
                    cut_at = Some(Instant::now());
                    fired.fetch_add(1, Ordering::SeqCst);
                    *f = Fault::None;
                }
                Fault::DropPublishes => {
                    fired.fetch_add(1, Ordering::SeqCst);
                    *f = Fault::None;
                    break;
                }
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// A plain (core NATS) subscriber on a subject, as a site's consumer of job events is: each
/// message with the time it arrived (unix seconds). Stops when dropped.
pub struct Subscriber {
    got: Arc<Mutex<Vec<(f64, Stored)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes (the subscription is in place when this returns; bounded: 10 s).
    pub fn start(url: &str, subject: &str) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (g, s, url, subject) = (Arc::clone(&got), Arc::clone(&stop), url.to_string(), subject.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = async_nats::connect(&url).await.expect("subscriber connect");
                let mut sub = client.subscribe(subject).await.expect("subscribe");
                client.flush().await.expect("flush");
                ready_tx.send(()).unwrap();
                while !s.load(Ordering::SeqCst) {
                    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
                        let at = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs_f64();
                        let msg_id = m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                            .map(|v| v.as_str().to_string());
                        let payload = String::from_utf8_lossy(&m.payload).into_owned();
                        g.lock().unwrap().push((at, Stored { msg_id, payload }));
                    }
                }
            });
        });
        ready.recv_timeout(Duration::from_secs(10)).expect("the subscriber is ready within 10 s");
        Subscriber { got, stop, thread: Some(thread) }
    }

    /// Every message so far, with its arrival time.
    pub fn received(&self) -> Vec<(f64, Stored)> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
