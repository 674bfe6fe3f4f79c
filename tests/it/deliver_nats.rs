//! `deliver` to Debian's real nats-server (JetStream), on the ledger of a recorded real testbed
//! poll (the demo's): one start per started run and one stop per ended run, with the right ids
//! and bodies, nothing twice; exactly once when the acks are lost after the server stored the
//! messages, when the publishes are lost, and when the server is down for a pass; logins by
//! user/password, token and nkey, a wrong one named without its secret; the line protocol as a
//! strict parser reads it; `--dry-run`.
//!
//! The test streams keep a 100 ms de-duplication window, so JetStream's own `Nats-Msg-Id`
//! de-duplication cannot hide a second publish: only the sink's look-up keeps it out.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;
use slurm_ledger::delivery::events::{event_id, EventKind};
use slurm_ledger::ledger::{JobFilter, Ledger};
use slurm_ledger::model::JobRun;

use crate::deliver_activate::{run_site, site, Site};
use crate::nats_server::{Admin, Fault, NatsServer, Proxy, Stored};

const STREAM: &str = "SLURM_JOBS";
const SUBJECT: &str = "slurm.jobs";
const DUP_WINDOW: Duration = Duration::from_millis(100);
const PASSWORD: &str = "pw-s3cret-81c";
const TOKEN: &str = "tok-s3cret-55e";

/// The sink's section for `url` (`extra`: more `[sinks.nats]` lines); backoff 1 s.
fn write_cfg(site: &Site, url: &str, extra: &str) {
    let text = format!(
        "[delivery]\nretry_backoff = \"1s\"\nmax_backoff = \"1s\"\n\
         [sinks.nats]\nurl = \"{url}\"\nsubject = \"{SUBJECT}\"\nstream = \"{STREAM}\"\ntimeout_secs = 2\n{extra}\n"
    );
    std::fs::write(&site.cfg, text).unwrap();
}

/// Runs the binary with `env` (and no other NATS secret); no secret, and no value of `env`, may
/// appear in its output.
fn run(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let secrets: Vec<&str> = [PASSWORD, TOKEN].into_iter().chain(env.iter().map(|(_, v)| *v)).collect();
    run_site(site, args, env, &secrets, "info")
}

/// The numbers of `deliver`'s line for the sink.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pass {
    new: u64,
    delivered: u64,
    found: u64,
    retry: u64,
    unknown: u64,
    rejected: u64,
}

fn deliver(site: &Site, env: &[(&str, &str)]) -> (Pass, String) {
    deliver_args(site, &["deliver"], env)
}

fn deliver_args(site: &Site, args: &[&str], env: &[(&str, &str)]) -> (Pass, String) {
    let (code, out, err) = run(site, args, env);
    assert!(matches!(code, 0 | 1 | 3), "deliver exit {code}: {out}\n{err}");
    let line = out.lines().find(|l| l.starts_with("nats:")).unwrap_or_else(|| panic!("no nats line:\n{out}\n{err}"));
    let num = |before: &str| -> u64 {
        let i = line.find(before).unwrap_or_else(|| panic!("{before:?} in {line}"));
        line[..i].rsplit(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).unwrap().parse().unwrap()
    };
    let p = Pass {
        new: num(" new deliveries"),
        delivered: num(" delivered,"),
        found: num(" found already"),
        retry: num(" to retry"),
        unknown: num(" unknown"),
        rejected: num(" rejected"),
    };
    (p, format!("{out}\n{err}"))
}

/// The ledger's runs, and the event ids the sink owes them: a start per started run, a stop per
/// ended one.
fn owed(site: &Site) -> (Vec<JobRun>, BTreeSet<String>) {
    owed_where(site, |_| true)
}

/// The events owed for the runs `with` keeps (the line protocol: runs with hosts).
fn owed_where(site: &Site, with: impl Fn(&JobRun) -> bool) -> (Vec<JobRun>, BTreeSet<String>) {
    let runs = Ledger::open(&site.db).unwrap().jobs(&JobFilter::default()).unwrap();
    let mut ids = BTreeSet::new();
    for r in &runs {
        if r.start.is_some() && with(r) {
            ids.insert(event_id(EventKind::Start, &r.key));
            if r.state.is_final() {
                ids.insert(event_id(EventKind::Stop, &r.key));
            }
        }
    }
    (runs, ids)
}

fn admin(server: &NatsServer) -> Admin {
    let a = Admin::connect(&server.url(), async_nats::ConnectOptions::new());
    a.create_stream(STREAM, SUBJECT, DUP_WINDOW);
    a
}

/// The stream's `Nats-Msg-Id`s, each once (a second copy fails the test).
fn stored_ids(stored: &[Stored]) -> BTreeSet<String> {
    let mut seen = HashSet::new();
    for m in stored {
        let id = m.msg_id.clone().expect("every message carries Nats-Msg-Id");
        assert!(seen.insert(id.clone()), "{id} is in the stream twice");
    }
    seen.into_iter().collect()
}

/// Waits out the backoff (1 s) and the de-duplication window.
fn later() {
    std::thread::sleep(Duration::from_millis(2200));
}

#[test]
fn each_run_gets_one_start_and_one_stop_and_a_second_pass_sends_nothing() {
    let server = NatsServer::start();
    let admin = admin(&server);
    let site = site();
    write_cfg(&site, &server.url(), "");
    let (runs, owed) = owed(&site);
    assert!(owed.len() >= 40, "the recording has ≥ 20 started runs, most ended: {}", owed.len());

    // A dry run prints what would go, sends nothing.
    let (code, out, err) = run(&site, &["deliver", "--dry-run"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let first = owed.iter().next().unwrap();
    assert!(
        out.contains(&format!("publish to subject {SUBJECT} (stream {STREAM})\nNats-Msg-Id: {first}\n{{")),
        "{out}"
    );
    assert_eq!(admin.last_seq(STREAM), 0, "a dry run publishes nothing");

    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { new: owed.len() as u64, delivered: owed.len() as u64, ..Pass::default() }, "{text}");
    let stored = admin.read_all(STREAM);
    assert_eq!(stored_ids(&stored), owed);
    // Each body is its run's, as the ledger holds it.
    for m in &stored {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        let id = m.msg_id.as_deref().unwrap();
        assert_eq!(v["id"], id);
        let kind = EventKind::of_id(id).unwrap();
        assert_eq!(v["event"], kind.as_str());
        let run = runs.iter().find(|r| event_id(kind, &r.key) == id).unwrap();
        assert_eq!(
            (v["cluster"].as_str(), v["jobIdRaw"].as_u64()),
            (Some(run.key.cluster.as_str()), Some(run.key.job_id_raw))
        );
        assert_eq!((v["user"].as_str(), v["account"].as_str()), (Some(run.user.as_str()), Some(run.account.as_str())));
        assert_eq!(v["startEpoch"].as_i64(), run.start.map(|t| t.0));
        assert_eq!(v["endEpoch"].as_i64(), if kind == EventKind::Stop { run.end.map(|t| t.0) } else { None }, "{v}");
        assert_eq!(v["state"], run.state.as_str());
        let hosts = slurm_ledger::slurm::hostlist::expand(&run.nodelist).unwrap();
        assert_eq!(v["nodes"], serde_json::json!(hosts));
    }
    // A start and a stop of a real run, as a consumer reads them: the GPU run.
    let gpu = runs.iter().find(|r| r.gpus() > 0 && r.state.is_final()).expect("the recording has a GPU run");
    for kind in [EventKind::Start, EventKind::Stop] {
        let id = event_id(kind, &gpu.key);
        let m = stored.iter().find(|m| m.msg_id.as_deref() == Some(id.as_str())).unwrap();
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&m.payload).unwrap()).unwrap();
        insta::assert_snapshot!(format!("gpu_run_{}", kind.as_str()), format!("Nats-Msg-Id: {id}\n{pretty}"));
    }

    // A second pass: nothing new, nothing published.
    let last = admin.last_seq(STREAM);
    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass::default(), "{text}");
    assert_eq!(admin.last_seq(STREAM), last);
}

#[test]
fn acks_lost_after_the_server_stored_the_messages_are_found_not_sent_again() {
    let server = NatsServer::start();
    let admin = admin(&server);
    let proxy = Proxy::start(server.port, Fault::LoseAcks);
    let site = site();
    write_cfg(&site, &proxy.url(), "");
    let (_, owed) = owed(&site);
    let n = owed.len() as u64;

    let (pass, text) = deliver(&site, &[]);
    assert_eq!(proxy.fired(), 1, "{text}");
    assert_eq!(pass, Pass { new: n, unknown: n, ..Pass::default() }, "every ack lost: {text}");
    assert_eq!(stored_ids(&admin.read_all(STREAM)), owed, "the server stored them all");
    let (_, status, _) = run(&site, &["status"], &[]);
    assert!(status.contains("no JetStream ack"), "{status}");

    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { found: n, ..Pass::default() }, "looked up, found, not sent again: {text}");
    assert_eq!(stored_ids(&admin.read_all(STREAM)), owed, "nothing twice");
    later();
    assert_eq!(deliver(&site, &[]).0, Pass::default());
}

#[test]
fn publishes_lost_on_the_way_are_looked_up_then_sent_once() {
    let server = NatsServer::start();
    let admin = admin(&server);
    let proxy = Proxy::start(server.port, Fault::DropPublishes);
    let site = site();
    write_cfg(&site, &proxy.url(), "");
    let (_, owed) = owed(&site);
    let n = owed.len() as u64;

    let (pass, text) = deliver(&site, &[]);
    assert_eq!(proxy.fired(), 1, "{text}");
    assert_eq!((pass.delivered, pass.unknown), (0, n), "{text}");
    assert!(admin.read_all(STREAM).is_empty(), "nothing reached the server");

    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { delivered: n, ..Pass::default() }, "looked up, not found, sent: {text}");
    assert_eq!(stored_ids(&admin.read_all(STREAM)), owed);
}

#[test]
fn a_server_down_for_a_pass_leaves_every_item_waiting_then_each_goes_once() {
    let mut server = NatsServer::start();
    let admin = admin(&server);
    drop(admin);
    server.stop();
    let site = site();
    write_cfg(&site, &server.url(), "");
    let (_, owed) = owed(&site);
    let n = owed.len() as u64;

    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { new: n, retry: n, ..Pass::default() }, "certainly not sent: {text}");
    let (_, status, _) = run(&site, &["status"], &[]);
    assert!(status.contains(&format!("cannot reach NATS at {}", server.url())), "{status}");

    server.launch();
    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { delivered: n, ..Pass::default() }, "{text}");
    let admin = Admin::connect(&server.url(), async_nats::ConnectOptions::new());
    assert_eq!(stored_ids(&admin.read_all(STREAM)), owed);
}

#[test]
fn a_missing_stream_a_stream_without_the_subject_and_no_jetstream_are_named_with_the_fix() {
    let server = NatsServer::start();
    let site = site();
    write_cfg(&site, &server.url(), "");
    let (_, owed) = owed(&site);
    let n = owed.len() as u64;
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { new: n, retry: n, ..Pass::default() }, "{text}");
    let (_, status, _) = run(&site, &["status"], &[]);
    assert!(
        status.contains(&format!("JetStream stream {STREAM} does not exist"))
            && status.contains(&format!("nats stream add {STREAM} --subjects {SUBJECT}")),
        "{status}"
    );

    let admin = Admin::connect(&server.url(), async_nats::ConnectOptions::new());
    admin.create_stream(STREAM, "other.>", DUP_WINDOW);
    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { retry: n, ..Pass::default() }, "{text}");
    let (_, status, _) = run(&site, &["status"], &[]);
    assert!(status.contains(&format!("captures [\"other.>\"], not subject \"{SUBJECT}\"")), "{status}");
    assert!(admin.read_all(STREAM).is_empty());

    let core = NatsServer::start_core_only();
    write_cfg(&site, &core.url(), "");
    later();
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass, Pass { retry: n, ..Pass::default() }, "{text}");
    let (_, status, _) = run(&site, &["status"], &[]);
    assert!(status.contains(&format!("JetStream is not enabled on {}", core.url())), "{status}");
}

#[test]
fn a_secret_in_the_config_is_refused_and_not_shown() {
    let site = site();
    for (key, value) in [("password", "hunter2-pw"), ("token", "s3cr3t-t0ken"), ("nkey_seed", "SUAB-seed")] {
        let url = "nats://127.0.0.1:4222";
        write_cfg(&site, url, &format!("{key} = \"{value}\""));
        let (code, out, err) = run(&site, &["config", "check"], &[]);
        assert_eq!(code, 2, "{out}\n{err}");
        assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
        assert!(
            !out.contains(value) && !err.contains(value),
            "the value of a misplaced key was printed:\n{out}\n{err}"
        );
    }
    write_cfg(&site, "nats://ledger:hunter2-pw@127.0.0.1:4222", "");
    let (code, out, err) = run(&site, &["config", "check"], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("sinks.nats.url") && err.contains("holds credentials"), "{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"), "{out}\n{err}");
}

/// A server whose config adds `auth` (an `authorization { … }` block), with the stream made by
/// a client logged in with `opts`.
fn auth_server(auth: &str, opts: async_nats::ConnectOptions) -> NatsServer {
    let server = NatsServer::start_with(auth);
    Admin::connect(&server.url(), opts).create_stream(STREAM, SUBJECT, DUP_WINDOW);
    server
}

/// `deliver` with a wrong login, then the right one: the first refused and named, no secret
/// shown even at `-vv` (async-nats traces its CONNECT line, credentials included); the second
/// delivers everything.
fn wrong_then_right(site: &Site, wrong: &[(&str, &str)], right: &[(&str, &str)], how: &str) {
    let (_, owed) = owed(site);
    let n = owed.len() as u64;
    let (pass, text) = deliver_args(site, &["-vv", "deliver"], wrong);
    assert_eq!(pass, Pass { new: n, retry: n, ..Pass::default() }, "{text}");
    let (_, status, _) = run(site, &["status"], &[]);
    assert!(status.contains("refused the login") && status.contains(how), "{status}");
    later();
    let (pass, text) = deliver(site, right);
    assert_eq!(pass, Pass { delivered: n, ..Pass::default() }, "{text}");
}

#[test]
fn user_and_password_from_the_environment_and_a_wrong_one_named_without_it() {
    let server = auth_server(
        &format!("authorization {{ user: ledger, password: \"{PASSWORD}\" }}\n"),
        async_nats::ConnectOptions::with_user_and_password("ledger".into(), PASSWORD.into()),
    );
    let site = site();
    write_cfg(&site, &server.url(), "user = \"ledger\"");
    wrong_then_right(
        &site,
        &[("SLURM_LEDGER_NATS_PASSWORD", "wrong-pw-77")],
        &[("SLURM_LEDGER_NATS_PASSWORD", PASSWORD)],
        "user \"ledger\"",
    );
    // No password at all: the config error names where to put it.
    let (code, out, err) = run(&site, &["deliver"], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("SLURM_LEDGER_NATS_PASSWORD") && err.contains("sinks.nats.password_file"), "{err}");
}

#[test]
fn a_token_from_a_file_and_a_wrong_one() {
    let server = auth_server(
        &format!("authorization {{ token: \"{TOKEN}\" }}\n"),
        async_nats::ConnectOptions::with_token(TOKEN.into()),
    );
    let site = site();
    let file = server.dir().join("nats.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The environment wins over the file: a wrong token there, then none.
    write_cfg(&site, &server.url(), &format!("token_file = \"{}\"", file.display()));
    wrong_then_right(&site, &[("SLURM_LEDGER_NATS_TOKEN", "wrong-pw-77")], &[], "a token");
}

#[test]
fn an_nkey_seed_from_a_file() {
    let user = nkeys::KeyPair::new_user();
    let server = auth_server(
        &format!("authorization {{ users: [ {{ nkey: {} }} ] }}\n", user.public_key()),
        async_nats::ConnectOptions::with_nkey(user.seed().unwrap()),
    );
    let site = site();
    let file = server.dir().join("nats.nk");
    std::fs::write(&file, format!("{}\n", user.seed().unwrap())).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_cfg(&site, &server.url(), &format!("nkey_seed_file = \"{}\"", file.display()));
    let other = nkeys::KeyPair::new_user();
    wrong_then_right(&site, &[("SLURM_LEDGER_NATS_NKEY_SEED", &other.seed().unwrap())], &[], "an nkey seed");
}

/// One line of InfluxDB line protocol, read strictly: measurement, tags, fields, timestamp.
#[derive(Debug)]
struct Line {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    ns: i128,
}

/// Reads `measurement[,k=v…] k="string"[,k=…] ts`: escapes `\,` `\=` `\ ` `\\` in names and tags,
/// `\"` `\\` in string fields; no raw newline; string fields only (what this sink writes).
fn parse_line(s: &str) -> Result<Line, String> {
    if s.contains('\n') {
        return Err("a raw newline".into());
    }
    let b = s.as_bytes();
    let mut i = 0;
    // A name or tag value up to an unescaped delimiter.
    let word = |i: &mut usize, stops: &[u8]| -> Result<String, String> {
        let mut out = String::new();
        while *i < b.len() && !stops.contains(&b[*i]) {
            if b[*i] == b'\\' && *i + 1 < b.len() && matches!(b[*i + 1], b',' | b'=' | b' ' | b'\\') {
                *i += 1;
            } else if b[*i] == b'"' {
                return Err(format!("a raw quote at {}", *i));
            }
            out.push(b[*i] as char);
            *i += 1;
        }
        if out.is_empty() {
            return Err(format!("an empty name at {}", *i));
        }
        Ok(out)
    };
    let measurement = word(&mut i, b", ")?;
    let mut tags = Vec::new();
    while i < b.len() && b[i] == b',' {
        i += 1;
        let k = word(&mut i, b"=, ")?;
        if b.get(i) != Some(&b'=') {
            return Err(format!("a tag without '=' at {i}"));
        }
        i += 1;
        tags.push((k, word(&mut i, b", ")?));
    }
    if b.get(i) != Some(&b' ') {
        return Err(format!("no space before the fields at {i}"));
    }
    i += 1;
    let mut fields = Vec::new();
    loop {
        let k = word(&mut i, b"= ")?;
        if b.get(i..i + 2) != Some(b"=\"") {
            return Err(format!("field {k} is not a string at {i}"));
        }
        i += 2;
        let mut v = Vec::new();
        loop {
            match b.get(i) {
                None => return Err("an unterminated string".into()),
                Some(b'\\') if matches!(b.get(i + 1), Some(b'"' | b'\\')) => {
                    v.push(b[i + 1]);
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(&c) => {
                    v.push(c);
                    i += 1;
                }
            }
        }
        fields.push((k, String::from_utf8(v).map_err(|e| e.to_string())?));
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b' ') => break,
            _ => return Err(format!("no timestamp at {i}")),
        }
    }
    i += 1;
    let ns = s[i..].parse::<i128>().map_err(|e| format!("timestamp {:?}: {e}", &s[i..]))?;
    Ok(Line { measurement, tags, fields, ns })
}

#[test]
fn the_line_protocol_format_reads_as_line_protocol() {
    // The reader itself refuses what line protocol refuses.
    for bad in
        [r#"job event="a"b" 1"#, "job event=\"a\" x", "job,t event=\"a\" 1", "job event=1 1", "job  event=\"a\" 1"]
    {
        assert!(parse_line(bad).is_err(), "{bad}");
    }
    let server = NatsServer::start();
    let admin = admin(&server);
    let site = site();
    write_cfg(&site, &server.url(), "format = \"line-protocol\"\nhostname = \"head1\"");
    // cc-backend's bodies need a host: the runs cancelled at their start on no node get no events.
    let (runs, owed) = owed_where(&site, |r| !r.nodelist.is_empty());
    assert!(owed.len() < self::owed(&site).1.len(), "the recorded poll has runs without a node");
    let (pass, text) = deliver(&site, &[]);
    assert_eq!(pass.delivered, owed.len() as u64, "{text}");
    let stored = admin.read_all(STREAM);
    assert_eq!(stored_ids(&stored), owed);
    for m in &stored {
        let id = m.msg_id.as_deref().unwrap();
        let kind = EventKind::of_id(id).unwrap();
        let run = runs.iter().find(|r| event_id(kind, &r.key) == id).unwrap();
        let line = parse_line(&m.payload).unwrap_or_else(|e| panic!("{e}: {}", m.payload));
        assert_eq!(line.measurement, "job");
        let function = if kind == EventKind::Start { "start_job" } else { "stop_job" };
        let want: Vec<(String, String)> =
            [("function", function), ("hostname", "head1"), ("type", "node"), ("type-id", "0")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(line.tags, want);
        assert_eq!(line.fields.len(), 1);
        assert_eq!(line.fields[0].0, "event");
        let body: Value =
            serde_json::from_str(&line.fields[0].1).unwrap_or_else(|e| panic!("{e}: {}", line.fields[0].1));
        assert_eq!(body["cluster"], run.key.cluster.as_str());
        assert_eq!(body["jobId"], run.key.job_id_raw, "cc-backend's body");
        if kind == EventKind::Start {
            assert_eq!(body["resources"][0]["hostname"], "vm");
        } else {
            assert!(body["jobState"].is_string() && body["stopTime"].is_i64(), "{body}");
        }
        let at = if kind == EventKind::Start { run.start.unwrap() } else { run.end.unwrap_or(run.start.unwrap()) };
        assert_eq!(line.ns, i128::from(at.0) * 1_000_000_000, "{}", m.payload);
    }
}
