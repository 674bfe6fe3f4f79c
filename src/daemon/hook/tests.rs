use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

fn msg(job_id: u64, context: HookContext) -> HookMessage {
    HookMessage { job_id, cluster: Some(ClusterName::new("testcluster").unwrap()), context }
}

/// The next `n` messages, each within 5 s.
fn recv_n(rx: &Receiver<HookMessage>, n: usize) -> Vec<HookMessage> {
    (0..n).map(|i| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|e| panic!("message {i}: {e}"))).collect()
}

/// Waits (5 s at most) until the listener's counters say `want`.
fn wait_counters(l: &Listener, want: HookCounters) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while l.counters() != want {
        assert!(Instant::now() < deadline, "counters {:?}, want {want:?}", l.counters());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn unix_listener(dir: &Path) -> (Listener, Receiver<HookMessage>, HookAddr) {
    let addr = HookAddr::Unix(dir.join("hook.sock"));
    let (tx, rx) = mpsc::channel();
    let l = Listener::start(&addr, &SocketPerms::default(), tx).unwrap();
    (l, rx, addr)
}

// ------------------------------------------------------------------ address

#[test]
fn addresses_parse_and_print_back() {
    let cases = [
        ("/run/slurm-ledger/hook.sock", HookAddr::Unix("/run/slurm-ledger/hook.sock".into())),
        ("tcp:10.0.0.5:6830", HookAddr::Tcp { host: "10.0.0.5".into(), port: 6830 }),
        ("tcp:ctl1.example.org:6830", HookAddr::Tcp { host: "ctl1.example.org".into(), port: 6830 }),
        ("tcp:[::1]:6830", HookAddr::Tcp { host: "::1".into(), port: 6830 }),
    ];
    for (text, want) in cases {
        let got: HookAddr = text.parse().unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_string(), text);
    }
}

#[test]
fn a_bad_address_names_the_input_and_the_fix() {
    for (text, reason) in [
        ("", "empty"),
        ("hook.sock", "must be absolute"),
        ("localhost:6830", "must be absolute"),
        ("tcp:10.0.0.5", "needs a port"),
        ("tcp:10.0.0.5:0", "1 to 65535"),
        ("tcp:10.0.0.5:70000", "1 to 65535"),
        ("tcp::6830", "host is empty"),
        ("tcp:::1:6830", "in brackets"),
        ("tcp:[::1:6830", "lacks its ]"),
        ("/run/slurm-ledger/", "directory"),
    ] {
        let e = text.parse::<HookAddr>().unwrap_err().to_string();
        assert!(e.contains(&format!("{text:?}")) && e.contains(reason), "{text}: {e}");
        assert!(e.contains("/run/slurm-ledger/hook.sock") && e.contains("tcp:HOST:PORT"), "{e}");
    }
    let long = format!("/{}", "x".repeat(107));
    assert!(long.parse::<HookAddr>().unwrap_err().to_string().contains("107 bytes"));
}

// ------------------------------------------------------------------ message

#[test]
fn the_message_comes_from_slurmctlds_variables() {
    let m = HookMessage::from_env(&env(&[
        ("SLURM_JOB_ID", "42"),
        ("SLURM_CLUSTER_NAME", "testcluster"),
        ("SLURM_SCRIPT_CONTEXT", "prolog_slurmctld"),
    ]))
    .unwrap();
    assert_eq!(m, msg(42, HookContext::Prolog));
    let m = HookMessage::from_env(&env(&[("SLURM_JOBID", "7"), ("SLURM_SCRIPT_CONTEXT", "epilog_slurmctld")])).unwrap();
    assert_eq!(m, HookMessage { job_id: 7, cluster: None, context: HookContext::Epilog }, "older name, no cluster");
    // Missing or odd parts still give the job id.
    let m = HookMessage::from_env(&env(&[("SLURM_JOB_ID", "9"), ("SLURM_CLUSTER_NAME", "bad name")])).unwrap();
    assert_eq!(m, HookMessage { job_id: 9, cluster: None, context: HookContext::Other(String::new()) });
    let long = "é".repeat(40); // 80 bytes: cut at a char boundary within MAX_CONTEXT
    let m = HookMessage::from_env(&env(&[("SLURM_JOB_ID", "9"), ("SLURM_SCRIPT_CONTEXT", &long)])).unwrap();
    assert_eq!(m.context, HookContext::Other("é".repeat(32)));
}

#[test]
fn no_job_id_no_message() {
    assert_eq!(HookMessage::from_env(&env(&[])), Err(HookEnvError::NoJobId));
    for bad in ["", "0", "-1", "12_3", "abc"] {
        let e = HookMessage::from_env(&env(&[("SLURM_JOB_ID", bad)])).unwrap_err();
        assert_eq!(e, HookEnvError::BadJobId(bad.into()));
    }
    assert!(HookEnvError::NoJobId.to_string().contains("PrologSlurmctld"));
}

#[test]
fn the_wire_form_is_one_small_json_object() {
    let m = msg(42, HookContext::Prolog);
    assert_eq!(
        String::from_utf8(m.encode()).unwrap(),
        r#"{"job_id":42,"cluster":"testcluster","context":"prolog_slurmctld"}"#
    );
    for m in [
        m.clone(),
        msg(1, HookContext::Epilog),
        msg(3, HookContext::Other("prolog_slurmd".into())),
        HookMessage { job_id: 5, cluster: None, context: HookContext::Other(String::new()) },
    ] {
        assert_eq!(HookMessage::decode(&m.encode()), Ok(m));
    }
    // The largest message from_env can build, escapes and all, fits with a newline.
    let worst = HookMessage::from_env(&env(&[
        ("SLURM_JOB_ID", &u64::MAX.to_string()),
        ("SLURM_CLUSTER_NAME", &"c".repeat(64)),
        ("SLURM_SCRIPT_CONTEXT", &"\u{1}".repeat(100)),
    ]))
    .unwrap();
    let bytes = worst.encode();
    assert!(bytes.len() < MAX_MESSAGE, "{} bytes", bytes.len());
    assert_eq!(HookMessage::decode(&bytes), Ok(worst));
}

#[test]
fn the_receiver_refuses_what_is_not_a_message() {
    let refused = |b: &[u8]| HookMessage::decode(b).unwrap_err();
    assert_eq!(refused(b""), HookRefusal::Empty);
    assert_eq!(refused(b" \n"), HookRefusal::Empty);
    assert_eq!(refused(&[b' '; MAX_MESSAGE + 1]), HookRefusal::Oversized(MAX_MESSAGE + 1));
    assert_eq!(refused(br#"{"job_id":0}"#), HookRefusal::ZeroJobId);
    assert!(matches!(refused(br#"{"cluster":"c"}"#), HookRefusal::Malformed(_)));
    assert!(matches!(refused(br#"{"job_id":-1}"#), HookRefusal::Malformed(_)));
    assert!(matches!(refused(br#"{"job_id":"42"}"#), HookRefusal::Malformed(_)));
    assert!(matches!(refused(b"[42]"), HookRefusal::Malformed(_)));
    assert!(matches!(refused(b"\xff\xfe"), HookRefusal::Malformed(_)));
    assert!(matches!(refused(br#"{"job_id":42} {"job_id":43}"#), HookRefusal::Malformed(_)));
    assert!(matches!(refused(br#"{"job_id":42,"cluster":"a b"}"#), HookRefusal::BadCluster(_)));
    let long = format!(r#"{{"job_id":42,"context":"{}"}}"#, "x".repeat(MAX_CONTEXT + 1));
    assert_eq!(refused(long.as_bytes()), HookRefusal::LongContext(MAX_CONTEXT + 1));
    // A newer sender's extra field is ignored; surrounding whitespace is fine.
    let m = HookMessage::decode(b" {\"job_id\":42,\"array_job_id\":40,\"context\":\"epilog_slurmctld\"}\n").unwrap();
    assert_eq!(m, HookMessage { job_id: 42, cluster: None, context: HookContext::Epilog });
}

// ------------------------------------------------------------------ send

#[test]
fn with_no_socket_send_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = HookAddr::Unix(dir.path().join("missing.sock"));
    let t = Instant::now();
    let e = send(&missing, &msg(1, HookContext::Prolog), Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());

    // A socket file nothing listens on (a daemon that died): refused, at once.
    let path = dir.path().join("stale.sock");
    drop(UnixDatagram::bind(&path).unwrap());
    let t = Instant::now();
    let e = send(&HookAddr::Unix(path), &msg(1, HookContext::Prolog), Duration::from_secs(5)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
}

#[test]
fn a_full_queue_waits_only_for_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let _never_read = UnixDatagram::bind(&path).unwrap();
    let addr = HookAddr::Unix(path);
    let budget = Duration::from_millis(30);
    let mut sent = 0;
    let e = loop {
        let t = Instant::now();
        match send(&addr, &msg(1, HookContext::Prolog), budget) {
            Ok(()) => sent += 1,
            Err(e) => break (e, t.elapsed()),
        }
        assert!(sent < 100_000, "the queue never filled");
    };
    assert!(sent >= 1, "the first message had room");
    assert_eq!(e.0.kind(), io::ErrorKind::TimedOut, "{:?}", e.0);
    assert!(e.1 >= budget && e.1 < budget + Duration::from_millis(200), "waited {:?}", e.1);
}

#[test]
fn a_full_queue_takes_the_message_once_the_daemon_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sock");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let addr = HookAddr::Unix(path);
    let mut sent = 0;
    while send(&addr, &msg(1, HookContext::Prolog), Duration::ZERO).is_ok() {
        sent += 1;
        assert!(sent < 100_000, "the queue never filled");
    }
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; MAX_MESSAGE];
        receiver.recv(&mut buf).unwrap();
        receiver
    });
    send(&addr, &msg(2, HookContext::Epilog), Duration::from_secs(5)).expect("room made within the budget");
    drop(reader.join().unwrap());
}

// ------------------------------------------------------------------ listener, unix

#[test]
fn messages_sent_arrive_and_garbage_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (l, rx, addr) = unix_listener(dir.path());
    assert_eq!(l.addr(), &addr);
    for id in 1..=3 {
        send(&addr, &msg(id, HookContext::Prolog), HOOK_BUDGET).unwrap();
    }
    let got: Vec<u64> = recv_n(&rx, 3).iter().map(|m| m.job_id).collect();
    assert_eq!(got, [1, 2, 3]);

    let HookAddr::Unix(path) = &addr else { unreachable!() };
    let raw = UnixDatagram::unbound().unwrap();
    for junk in [&b""[..], &[b'{'; MAX_MESSAGE + 100][..], b"not json", br#"{"job_id":0}"#] {
        raw.send_to(junk, path).unwrap();
    }
    send(&addr, &msg(4, HookContext::Epilog), HOOK_BUDGET).unwrap();
    assert_eq!(recv_n(&rx, 1)[0], msg(4, HookContext::Epilog), "the listener outlived the garbage");
    wait_counters(&l, HookCounters { received: 4, refused: 4 });
}

#[test]
fn the_socket_file_has_the_mode_and_group_asked_for_and_appears_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hook.sock");
    let (tx, _rx) = mpsc::channel();
    let egid = unsafe { libc::getegid() };
    let l = Listener::start(&HookAddr::Unix(path.clone()), &SocketPerms::default(), tx.clone()).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o620, "default: the owner and the group may send, nobody else");
    assert_eq!(meta.gid(), egid, "no group asked for: the daemon's own");
    drop(l);

    let perms = SocketPerms { mode: 0o600, group: Some(egid.to_string()) };
    let _l = Listener::start(&HookAddr::Unix(path.clone()), &perms, tx).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.gid(), egid);
    // Bound in a private directory and linked into place: nothing of it left beside the socket.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["hook.sock"]);
}

#[test]
fn bad_permissions_or_groups_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let addr = HookAddr::Unix(dir.path().join("hook.sock"));
    let (tx, _rx) = mpsc::channel();
    let e = Listener::start(&addr, &SocketPerms { mode: 0o4620, group: None }, tx.clone()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("4620"), "{e}");
    let perms = SocketPerms { mode: 0o620, group: Some("no-such-group-xyz".into()) };
    let e = Listener::start(&addr, &perms, tx).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("\"no-such-group-xyz\" does not exist"), "{e}");
    assert!(!dir.path().join("hook.sock").exists());
    assert_eq!(group_id("root").unwrap(), 0);
    assert_eq!(group_id("64030").unwrap(), 64030);
}

#[test]
fn a_stale_socket_is_replaced_a_live_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hook.sock");
    drop(UnixDatagram::bind(&path).unwrap()); // a crashed daemon's file
    let (l, rx, addr) = unix_listener(dir.path());
    send(&addr, &msg(1, HookContext::Prolog), HOOK_BUDGET).unwrap();
    assert_eq!(recv_n(&rx, 1)[0].job_id, 1);

    let (tx2, _rx2) = mpsc::channel();
    let e = Listener::start(&addr, &SocketPerms::default(), tx2).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    assert!(e.to_string().contains("another daemon is running"), "{e}");
    send(&addr, &msg(2, HookContext::Prolog), HOOK_BUDGET).unwrap();
    assert_eq!(recv_n(&rx, 1)[0].job_id, 2, "the running one still listens");
    drop(l);
}

#[test]
fn what_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hook.sock");
    std::fs::write(&path, "admin's notes").unwrap();
    let (tx, _rx) = mpsc::channel();
    let e = Listener::start(&HookAddr::Unix(path.clone()), &SocketPerms::default(), tx.clone()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "admin's notes");

    let e = Listener::start(&HookAddr::Unix(dir.path().join("no/such/dir/h.sock")), &SocketPerms::default(), tx)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("RuntimeDirectory=slurm-ledger"), "{e}");
}

#[test]
fn drop_stops_and_removes_only_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let (l, rx, addr) = unix_listener(dir.path());
    let HookAddr::Unix(path) = addr.clone() else { unreachable!() };
    let t = Instant::now();
    drop(l);
    assert!(t.elapsed() < Duration::from_millis(500), "stopping took {:?}", t.elapsed());
    assert!(!path.exists(), "socket file removed");
    assert!(rx.recv_timeout(Duration::from_millis(10)).is_err());
    assert_eq!(send(&addr, &msg(1, HookContext::Prolog), HOOK_BUDGET).unwrap_err().kind(), io::ErrorKind::NotFound);

    // A file that replaced it (an admin, another daemon) is not removed.
    let (l, _rx, _) = unix_listener(dir.path());
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "someone else's").unwrap();
    drop(l);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
}

#[test]
fn the_thread_ends_when_the_daemon_drops_its_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (l, rx, addr) = unix_listener(dir.path());
    drop(rx);
    send(&addr, &msg(1, HookContext::Prolog), HOOK_BUDGET).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !l.thread.as_ref().unwrap().is_finished() {
        assert!(Instant::now() < deadline, "thread still running");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ------------------------------------------------------------------ listener, tcp

fn tcp_listener() -> (Listener, Receiver<HookMessage>, HookAddr) {
    let (tx, rx) = mpsc::channel();
    let any_port = HookAddr::Tcp { host: "127.0.0.1".into(), port: 0 };
    let l = Listener::start(&any_port, &SocketPerms::default(), tx).unwrap();
    let addr = l.addr().clone();
    (l, rx, addr)
}

fn tcp_connect(addr: &HookAddr) -> TcpStream {
    let HookAddr::Tcp { host, port } = addr else { unreachable!() };
    TcpStream::connect((host.as_str(), *port)).unwrap()
}

#[test]
fn tcp_messages_arrive() {
    let (l, rx, addr) = tcp_listener();
    let HookAddr::Tcp { port, .. } = addr else { unreachable!() };
    assert_ne!(port, 0, "the port bound is told");
    send(&addr, &msg(7, HookContext::Prolog), HOOK_BUDGET).unwrap();
    // By name too (looked up within the budget).
    let by_name = HookAddr::Tcp { host: "localhost".into(), port };
    if send(&by_name, &msg(8, HookContext::Epilog), Duration::from_secs(2)).is_err() {
        // localhost may resolve to ::1 first on some hosts with nothing on it: then by address.
        send(&addr, &msg(8, HookContext::Epilog), HOOK_BUDGET).unwrap();
    }
    assert_eq!(recv_n(&rx, 2), [msg(7, HookContext::Prolog), msg(8, HookContext::Epilog)]);
    wait_counters(&l, HookCounters { received: 2, refused: 0 });
}

#[test]
fn a_tcp_connection_is_capped_in_count_size_and_time() {
    let (l, rx, addr) = tcp_listener();
    // Several on one connection, the last without a newline: all arrive.
    let mut c = tcp_connect(&addr);
    c.write_all(b"{\"job_id\":1}\n\n{\"job_id\":2}\n{\"job_id\":3}").unwrap();
    drop(c);
    assert_eq!(recv_n(&rx, 3).iter().map(|m| m.job_id).collect::<Vec<_>>(), [1, 2, 3]);

    // One more than the cap: the cap's worth forwarded, then the connection is cut.
    let mut c = tcp_connect(&addr);
    for id in 1..=MAX_PER_CONNECTION as u64 + 1 {
        c.write_all(format!("{{\"job_id\":{id}}}\n").as_bytes()).unwrap();
    }
    drop(c);
    assert_eq!(recv_n(&rx, MAX_PER_CONNECTION).len(), MAX_PER_CONNECTION);
    wait_counters(&l, HookCounters { received: 3 + MAX_PER_CONNECTION as u64, refused: 1 });

    // A line that never ends within the limit.
    let mut c = tcp_connect(&addr);
    let _ = c.write_all(&[b'x'; 3 * MAX_MESSAGE]);
    wait_counters(&l, HookCounters { received: 3 + MAX_PER_CONNECTION as u64, refused: 2 });
    drop(c);

    // A silent peer is cut off after the deadline; the next one is served.
    let silent = tcp_connect(&addr);
    let t = Instant::now();
    send(&addr, &msg(99, HookContext::Prolog), HOOK_BUDGET).unwrap();
    assert_eq!(recv_n(&rx, 1)[0].job_id, 99);
    let waited = t.elapsed();
    assert!(waited >= CONNECTION_DEADLINE - Duration::from_millis(50), "served before the silent one? {waited:?}");
    assert!(waited < CONNECTION_DEADLINE + Duration::from_secs(2), "{waited:?}");
    wait_counters(&l, HookCounters { received: 4 + MAX_PER_CONNECTION as u64, refused: 3 });
    drop(silent);
}

#[test]
fn tcp_with_nothing_listening_fails_within_the_budget() {
    // A port just freed: nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = HookAddr::Tcp { host: "127.0.0.1".into(), port };
    let t = Instant::now();
    assert!(send(&addr, &msg(1, HookContext::Prolog), HOOK_BUDGET).is_err());
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    // A daemon that never answers: its accept queue is full, so the kernel drops the SYN and a
    // connect hangs; the send gives up at the budget.
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) again on a socket this test owns, to shrink its backlog.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    let port = full.local_addr().unwrap().port();
    let mut queued = Vec::new();
    while let Ok(c) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) {
        queued.push(c);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    let addr = HookAddr::Tcp { host: "127.0.0.1".into(), port };
    let t = Instant::now();
    let e = send(&addr, &msg(1, HookContext::Prolog), Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(t.elapsed() < Duration::from_millis(300), "{:?}", t.elapsed());
}
