//! Unit tests of the NATS sink: its section's validation, its payloads, its build. The sink
//! against a real nats-server is `tests/it/deliver_nats.rs`.

use super::config::{self, captures, check_subject, server_address, Auth, Format, RawNats, RawUrls};
use super::event::{escape_string_field, escape_tag, line_protocol};
use super::*;
use crate::delivery::consumer::{EnginePolicy, Outcome, Sender};
use crate::delivery::events::EventKind;
use crate::ledger::{Delivery, DeliveryState};
use crate::model::{ClusterName, JobKey, JobRun, JobState, UnixTime};
use crate::validate::Problems;

fn raw() -> RawNats {
    RawNats { subject: Some("slurm.jobs".into()), stream: Some("SLURM_JOBS".into()), ..Default::default() }
}

fn check(r: RawNats) -> (NatsSettings, Problems) {
    let mut p = Vec::new();
    let s = config::validate(r, &mut p);
    (s, p)
}

fn problem_text(p: &Problems) -> String {
    crate::validate::list(p)
}

#[test]
fn defaults() {
    let (s, p) = check(raw());
    assert!(p.is_empty(), "{}", problem_text(&p));
    assert_eq!(s.servers, ["nats://127.0.0.1:4222"]);
    assert_eq!((s.format, s.timeout_secs, s.auth), (Format::Json, 10, Auth::Default));
}

#[test]
fn a_bad_subject_is_named_with_the_fix() {
    for bad in ["", "slurm.*", "slurm.>", "a..b", ".a", "a.", "a b", "a.\tb", "jobs>"] {
        let (_, p) = check(RawNats { subject: Some(bad.into()), ..raw() });
        assert_eq!(p.len(), 1, "{bad:?}: {}", problem_text(&p));
        assert_eq!(p[0].key, "sinks.nats.subject");
        assert!(p[0].message.contains("slurm.jobs"), "the fix is shown: {}", p[0].message);
    }
    for good in ["slurm", "slurm.jobs", "site-a.slurm_jobs.v1"] {
        assert_eq!(check_subject(good), Ok(()), "{good}");
    }
}

#[test]
fn missing_subject_and_stream_are_named() {
    let (_, p) = check(RawNats::default());
    let text = problem_text(&p);
    assert!(text.contains("sinks.nats.subject: is missing"), "{text}");
    assert!(text.contains("sinks.nats.stream: is missing") && text.contains("nats stream add"), "{text}");
    let (_, p) = check(RawNats { stream: Some("SLURM.JOBS".into()), ..raw() });
    assert_eq!(p[0].key, "sinks.nats.stream", "{}", problem_text(&p));
}

#[test]
fn a_url_holding_credentials_is_refused_without_showing_them() {
    for url in ["nats://ledger:hunter2@nats.example.org:4222", "nats://hunter2@nats.example.org", "tls://a:hunter2@h"] {
        let (_, p) = check(RawNats { url: Some(RawUrls::One(url.into())), ..raw() });
        let text = problem_text(&p);
        assert_eq!(p.len(), 1, "{text}");
        assert!(text.contains("sinks.nats.url") && !text.contains("hunter2"), "{text}");
    }
    let (_, p) = check(RawNats { url: Some(RawUrls::One("nats://ledger:hunter2@h".into())), ..raw() });
    assert!(problem_text(&p).contains("password_file"), "the fix is named: {}", problem_text(&p));
}

#[test]
fn server_addresses() {
    assert_eq!(server_address("nats://n1").unwrap(), "nats://n1:4222");
    assert_eq!(server_address("nats://n1:4333/").unwrap(), "nats://n1:4333");
    assert_eq!(server_address("nats://[::1]:4222").unwrap(), "nats://[::1]:4222");
    assert_eq!(server_address("nats://[::1]").unwrap(), "nats://[::1]:4222");
    for bad in ["n1:4222", "http://n1", "nats://", "nats://n1:x", "nats://n1:0", "nats://n1/path", "tls://n1:4222"] {
        assert!(server_address(bad).is_err(), "{bad}");
    }
    let (s, p) = check(RawNats { url: Some(RawUrls::Many(vec!["nats://a".into(), "nats://b:5222".into()])), ..raw() });
    assert!(p.is_empty());
    assert_eq!(s.servers, ["nats://a:4222", "nats://b:5222"]);
    let (_, p) = check(RawNats { url: Some(RawUrls::Many(vec![])), ..raw() });
    assert_eq!(p[0].key, "sinks.nats.url");
}

#[test]
fn one_way_to_log_in() {
    let (s, p) = check(RawNats {
        user: Some("ledger".into()),
        password_file: Some("/etc/slurm-ledger/nats.password".into()),
        ..raw()
    });
    assert!(p.is_empty(), "{}", problem_text(&p));
    assert!(matches!(s.auth, Auth::UserPassword { ref user, .. } if user == "ledger"));
    let (_, p) = check(RawNats { user: Some("ledger".into()), token_file: Some("/t".into()), ..raw() });
    assert_eq!(p.len(), 1, "{}", problem_text(&p));
    assert!(p[0].key == "sinks.nats.token_file" && p[0].message.contains("one way"), "{}", problem_text(&p));
    let (_, p) = check(RawNats { password_file: Some("/p".into()), ..raw() });
    assert_eq!(p[0].key, "sinks.nats.password_file");
    let (_, p) = check(RawNats { creds_file: Some("nats.creds".into()), ..raw() });
    assert!(p[0].key == "sinks.nats.creds_file" && p[0].message.contains("absolute"), "{}", problem_text(&p));
    let (_, p) = check(RawNats { format: Some("influx".into()), timeout_secs: Some(0), ..raw() });
    assert_eq!(p.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["sinks.nats.format", "sinks.nats.timeout_secs"]);
}

#[test]
fn subject_filters() {
    assert!(captures("slurm.jobs", "slurm.jobs"));
    assert!(captures("slurm.*", "slurm.jobs"));
    assert!(captures("slurm.>", "slurm.jobs"));
    assert!(captures(">", "slurm.jobs"));
    assert!(!captures("slurm.>", "slurm"));
    assert!(!captures("slurm.*", "slurm.jobs.x"));
    assert!(!captures("slurm.job", "slurm.jobs"));
    assert!(!captures("slurm.jobs.x", "slurm.jobs"));
}

#[test]
fn line_protocol_escapes_what_it_must() {
    assert_eq!(escape_string_field(r#"{"a":"x \"q\" \\ y"}"#), r#"{\"a\":\"x \\\"q\\\" \\\\ y\"}"#);
    assert_eq!(escape_tag("head 1,a=b\\"), "head\\ 1\\,a\\=b\\\\");
    let line = line_protocol(EventKind::Stop, "head1", r#"{"k":"v"}"#, UnixTime(1_700_000_000));
    assert_eq!(
        line,
        r#"job,function=stop_job,hostname=head1,type=node,type-id=0 event="{\"k\":\"v\"}" 1700000000000000000"#
    );
}

fn run() -> JobRun {
    let key = JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 7, submit: UnixTime(1_700_000_000) };
    let mut r = JobRun::new(key, "7".into());
    r.name = "say \"hi\"\\".into();
    r.state = JobState::Completed;
    r.start = Some(UnixTime(1_700_000_100));
    r.end = Some(UnixTime(1_700_000_400));
    r.nodelist = "c[1-2]".into();
    r.nnodes = 2;
    r
}

fn item(id: &str, state: DeliveryState) -> Delivery {
    Delivery {
        id: id.into(),
        seq: 0,
        sink: NAME.into(),
        key: Some(run().key),
        span: Some((UnixTime(1_700_000_100), UnixTime(1_700_000_400))),
        amount: None,
        route: None,
        total: None,
        state,
        attempts: 1,
        next_attempt_at: UnixTime(0),
        last_error: None,
        remote_id: None,
    }
}

fn settings(format: Format) -> NatsSettings {
    let (mut s, p) =
        check(RawNats { url: Some(RawUrls::One("nats://127.0.0.1:1".into())), timeout_secs: Some(1), ..raw() });
    assert!(p.is_empty());
    s.format = format;
    s
}

#[test]
fn a_stop_event_renders_and_its_line_carries_the_same_json() {
    let r = run();
    let d = item("stop:c:7:1700000000", DeliveryState::Pending);
    let json = NatsSender::new(settings(Format::Json), Credentials::None, String::new()).payload(&d, Some(&r)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["event"], "stop");
    assert_eq!(v["id"], d.id);
    assert_eq!(v["nodes"], serde_json::json!(["c1", "c2"]));
    assert_eq!((v["endEpoch"].as_i64(), v["end"].as_str()), (Some(1_700_000_400), Some("2023-11-14T22:20:00Z")));
    let line = NatsSender::new(settings(Format::LineProtocol), Credentials::None, "head1".into())
        .payload(&d, Some(&r))
        .unwrap();
    let (head, rest) = line.split_once(" event=\"").unwrap();
    assert_eq!(head, "job,function=stop_job,hostname=head1,type=node,type-id=0");
    let (field, ns) = rest.rsplit_once("\" ").unwrap();
    assert_eq!(ns, "1700000400000000000", "the stop's instant");
    let unescaped = field.replace("\\\\", "\u{0}").replace("\\\"", "\"").replace('\u{0}', "\\");
    let cc = crate::sinks::cc_job::stop_job_body(&r, r.key.cluster.as_str()).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&unescaped).unwrap(), cc, "cc-backend's stop_job body");
    // A start has no end.
    let start = NatsSender::new(settings(Format::Json), Credentials::None, String::new())
        .payload(&item("start:c:7:1700000000", DeliveryState::Pending), Some(&r))
        .unwrap();
    let s: serde_json::Value = serde_json::from_str(&start).unwrap();
    assert!(s.get("end").is_none() && s.get("elapsedSecs").is_none() && s["startEpoch"] == 1_700_000_100, "{s}");
}

#[test]
fn what_cannot_become_a_message_is_rejected_and_a_server_that_is_down_is_a_retry() {
    let sender = NatsSender::new(settings(Format::Json), Credentials::None, String::new());
    let r = run();
    let (a, b, c) = (
        item("sl:x", DeliveryState::Pending),
        item("start:c:7:1700000000", DeliveryState::Pending),
        item("stop:c:7:1700000000", DeliveryState::Pending),
    );
    let out = sender.send_batch(&[(&a, Some(&r)), (&b, None), (&c, Some(&r))]).expect("its own batch");
    assert!(matches!(&out[0], Outcome::Rejected { reason } if reason.contains("not a start or stop")), "{out:?}");
    assert!(matches!(&out[1], Outcome::Rejected { reason } if reason.contains("run the ledger does not have")));
    // Nothing listens on port 1: certainly not sent.
    assert!(
        matches!(&out[2], Outcome::Retry { reason, .. } if reason.contains("cannot reach NATS at nats://127.0.0.1:1")),
        "{out:?}"
    );
    // An item refused last time is not looked for; one that may have left cannot be, now.
    let looked = sender.lookup_batch(&[(&item("stop:c:7:1700000000", DeliveryState::Retry), Some(&r)), (&c, Some(&r))]);
    assert_eq!(looked[0], Lookup::NotFound);
    assert!(matches!(&looked[1], Lookup::Failed { reason } if reason.contains("cannot reach")), "{looked:?}");
}

#[test]
fn a_server_that_does_not_answer_costs_one_timeout_a_pass() {
    // Accepts connections (the kernel's backlog) and never says INFO.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = settings(Format::Json);
    s.servers = vec![format!("nats://127.0.0.1:{}", silent.local_addr().unwrap().port())];
    let sender = NatsSender::new(s, Credentials::None, String::new());
    let (r, d) = (run(), item("start:c:7:1700000000", DeliveryState::Pending));
    let timed = |what: &str| {
        let t = std::time::Instant::now();
        let out = sender.send_batch(&[(&d, Some(&r))]).expect("its own batch");
        assert!(
            matches!(&out[0], Outcome::Retry { reason, .. } if reason.contains("cannot reach NATS")),
            "{what}: {out:?}"
        );
        t.elapsed()
    };
    assert!(timed("first batch") >= std::time::Duration::from_millis(900), "waited for the server");
    assert!(
        timed("second batch") < std::time::Duration::from_millis(300),
        "the pass knows the server is not answering"
    );
    sender.begin_pass(UnixTime(0));
    assert!(timed("next pass") >= std::time::Duration::from_millis(900), "a new pass tries again");
}

#[test]
fn dry_run_shows_subject_header_and_payload() {
    let sender = NatsSender::new(settings(Format::Json), Credentials::None, String::new());
    let d = item("start:c:7:1700000000", DeliveryState::Pending);
    let text = sender.describe(&d, Some(&run()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("publish to subject slurm.jobs (stream SLURM_JOBS)"));
    assert_eq!(lines.next(), Some("Nats-Msg-Id: start:c:7:1700000000"));
    assert!(lines.next().unwrap().starts_with("{\"account\""));
}

#[test]
fn build_reads_secrets_from_env_or_files_only_when_online() {
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("nats.nk");
    std::fs::write(&seed_file, "not-a-seed\n").unwrap();
    let mut s = settings(Format::Json);
    s.auth = Auth::Nkey { seed_file: seed_file.clone() };
    let env = |_: &str| None;
    let ctx = |online| BuildCtx { online, env: &env, policy: EnginePolicy::default() };
    assert!(Nats::build(&s, &ctx(false)).is_ok(), "a dry run needs no secret");
    let e = Nats::build(&s, &ctx(true)).err().unwrap().to_string();
    assert!(e.contains("not a user nkey seed") && !e.contains("not-a-seed"), "{e}");
    s.auth = Auth::UserPassword { user: "ledger".into(), password_file: None };
    let e = Nats::build(&s, &ctx(true)).err().unwrap().to_string();
    assert!(e.contains(config::ENV_PASSWORD) && e.contains("sinks.nats.password_file"), "{e}");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.auth = Auth::UserPassword { user: "ledger".into(), password_file: Some(pw) };
    let built = Nats::build(&s, &ctx(true)).unwrap();
    assert!(built.warnings.iter().any(|w| w.contains("chmod 600")), "{:?}", built.warnings);
    s.auth = Auth::Creds { file: dir.path().join("nats.creds") };
    std::fs::write(dir.path().join("nats.creds"), "hunter2").unwrap();
    let e = Nats::build(&s, &ctx(true)).err().unwrap().to_string();
    assert!(e.contains("not a NATS credentials file") && !e.contains("hunter2"), "{e}");
}

use crate::delivery::consumer::Lookup;
