//! A ledger written by the schema-4 release (`tests/fixtures/ledger-v4`, see its README: every
//! delivery state, held runs, open runs, imported slurm-tracker rows) opened by this code: the
//! migration to the one outbox carries every cursor, frontier, delivery and import over, each
//! request is rendered byte for byte as the old release stored it, and the next `deliver` sends
//! only what was still owed, once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slurm_ledger::config::Settings;
use slurm_ledger::delivery::consumer::EnginePolicy;
use slurm_ledger::ledger::{DeliveryState, Ledger, RunMark};
use slurm_ledger::model::{ClusterName, JobKey, UnixTime};
use slurm_ledger::sinks::{build, BuildCtx};

use crate::fakes::{FakeActivate, FakeConfig};

const KEY: &str = "pwt_test.k3y-s3cr3t";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v4")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("manifest.json")).unwrap()).unwrap()
}

/// The config the fixture was written with (its README), with this fake's URL and a JSONL file.
fn config(url: &str, jsonl: &Path) -> String {
    format!(
        "[delivery]\nretry_backoff = \"2s\"\nmax_backoff = \"1h\"\n\
         [sinks.jsonl]\npath = {:?}\ntres = \"cpu\"\nrunning_slice = \"1m\"\n\
         [sinks.activate]\norganization = \"acme\"\nhost = \"{url}\"\ndefault_sku = \"standard-compute\"\ntimeout_secs = 1\n\
         running_slice = \"1m\"\n[sinks.activate.partition_sku]\ngpu = \"gpu-compute\"\n\
         [sinks.activate.account_allocation]\nresearch-team = \"alloc-rt\"\nengineering = \"alloc-eng\"\n",
        jsonl.display().to_string()
    )
}

fn key(v: &Value) -> JobKey {
    JobKey {
        cluster: ClusterName::new(v["cluster"].as_str().unwrap()).unwrap(),
        job_id_raw: v["job_id_raw"].as_u64().unwrap(),
        submit: UnixTime(v["submit"].as_i64().unwrap()),
    }
}

fn state(s: &str) -> DeliveryState {
    match s {
        "pending" => DeliveryState::Pending,
        "sent" => DeliveryState::Sent,
        "retry" => DeliveryState::Retry,
        "delivered" => DeliveryState::Delivered,
        "rejected" => DeliveryState::Rejected,
        other => panic!("state {other}"),
    }
}

/// A copy of the fixture, upgraded by opening it.
fn upgraded(dir: &Path) -> (PathBuf, Ledger) {
    let db = dir.join("ledger.db");
    std::fs::copy(fixture().join("ledger.db"), &db).unwrap();
    let ledger = Ledger::open(&db).unwrap();
    (db, ledger)
}

#[test]
fn the_upgrade_carries_every_cursor_frontier_delivery_and_import() {
    let m = manifest();
    assert_eq!(m["user_version"], 4);
    let dir = tempfile::tempdir().unwrap();
    let (_db, ledger) = upgraded(dir.path());
    let status = ledger.status(1000).unwrap();
    assert_eq!(status.schema_version as usize, slurm_ledger::ledger::MIGRATIONS.len());
    assert_eq!(ledger.change_seq().unwrap(), m["change_seq"].as_i64().unwrap());
    assert_eq!(status.total_runs, m["job_runs_count"].as_u64().unwrap());
    let cursors: Vec<(String, i64)> = status.cursors.iter().map(|c| (c.cluster.clone(), c.position.0)).collect();
    let want: Vec<(String, i64)> = m["collect_cursors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cluster"].as_str().unwrap().to_string(), c["position"].as_i64().unwrap()))
        .collect();
    assert_eq!(cursors, want);

    for c in m["sink_cursors"].as_array().unwrap() {
        let sink = c["sink"].as_str().unwrap();
        assert_eq!(ledger.consumer_cursor(sink).unwrap(), c["change_seq"].as_i64().unwrap(), "{sink}");
    }
    for r in m["sink_runs"].as_array().unwrap() {
        let sink = r["sink"].as_str().unwrap();
        let want = RunMark {
            mark: r["planned_until"].as_i64(),
            done: r["complete"].as_i64() == Some(1),
            hold: r["hold_reason"].as_str().map(str::to_string),
        };
        assert_eq!(ledger.run_mark(sink, &key(r)).unwrap(), want, "{sink} {}", key(r));
    }
    let mut checked = 0;
    for sink in ["activate", "jsonl"] {
        let now: BTreeMap<String, _> =
            ledger.deliveries(sink, None).unwrap().into_iter().map(|d| (d.id.clone(), d)).collect();
        let old: Vec<&Value> = m["deliveries"].as_array().unwrap().iter().filter(|d| d["sink"] == sink).collect();
        assert_eq!(now.len(), old.len(), "{sink}: every delivery carried over, none added");
        for o in old {
            let d = &now[o["id"].as_str().unwrap()];
            assert_eq!(d.key.as_ref(), Some(&key(o)));
            let span = (UnixTime(o["slice_start"].as_i64().unwrap()), UnixTime(o["slice_end"].as_i64().unwrap()));
            assert_eq!(d.span, Some(span));
            assert_eq!(d.amount.as_deref(), o["quantity"].as_str());
            assert_eq!(d.state, state(o["state"].as_str().unwrap()), "{}", d.id);
            assert_eq!(u64::from(d.attempts), o["attempts"].as_u64().unwrap());
            assert_eq!(d.next_attempt_at.0, o["next_attempt_at"].as_i64().unwrap());
            assert_eq!(d.last_error.as_deref(), o["last_error"].as_str());
            assert_eq!(d.remote_id.as_deref(), o["remote_id"].as_str());
            // What the sink pinned in the payload: ACTIVATE's allocation, SKU and TRES; JSONL's TRES and unit.
            let p: Value = serde_json::from_str(o["payload"].as_str().unwrap()).unwrap();
            let route = match sink {
                "activate" => [&p["allocation"], &p["event"]["sku"], &p["event"]["metadata"]["tres"]]
                    .map(|v| v.as_str().unwrap())
                    .join("\u{1f}"),
                _ => [&p["tres"], &p["unit"]].map(|v| v.as_str().unwrap()).join("\u{1f}"),
            };
            assert_eq!(d.route.as_deref(), Some(route.as_str()), "{}", d.id);
            checked += 1;
        }
    }
    assert_eq!(checked, m["deliveries"].as_array().unwrap().len());

    let cluster = ClusterName::new("testcluster").unwrap();
    assert!(ledger.has_pending_imports("activate").unwrap());
    for i in m["imported_frontiers"].as_array().unwrap() {
        let job = i["job_id_raw"].as_u64().unwrap();
        let pending = ledger.pending_import("activate", &cluster, job).unwrap();
        assert_eq!(pending.is_some(), i["applied_submit"].is_null(), "job {job}");
        if let Some(p) = pending {
            assert_eq!(p.reported_elapsed_secs, i["reported_elapsed_secs"].as_i64().unwrap());
        }
    }
}

#[test]
fn every_request_renders_as_the_old_release_stored_it() {
    let m = manifest();
    let dir = tempfile::tempdir().unwrap();
    let (_db, ledger) = upgraded(dir.path());
    let settings =
        Settings::from_toml(&config("https://activate.example.org", &dir.path().join("u.jsonl")), "t").unwrap();
    let env = |_: &str| None;
    let ctx = BuildCtx { online: false, env: &env, policy: EnginePolicy::default() };
    let consumers = build(&settings.sinks, &[], &ctx).unwrap();
    let mut rendered = 0;
    for b in &consumers {
        let c = &b.consumer;
        for d in ledger.deliveries(&c.name, None).unwrap() {
            let old = m["deliveries"].as_array().unwrap().iter().find(|o| o["id"] == d.id.as_str()).unwrap();
            let payload = old["payload"].as_str().unwrap();
            let run = ledger.job(d.key.as_ref().unwrap()).unwrap();
            let now = c.sender.describe(&d, run.as_ref());
            let want = match c.name.as_str() {
                // The POST and its body (the event), as the old release sent the stored payload.
                "activate" => {
                    let v: Value = serde_json::from_str(payload).unwrap();
                    format!(
                        "POST https://activate.example.org/api/organizations/acme/allocations/{}/usage\n{}",
                        v["allocation"].as_str().unwrap(),
                        v["event"]
                    )
                }
                _ => payload.to_string(),
            };
            assert_eq!(now, want, "{}", d.id);
            rendered += 1;
        }
    }
    assert_eq!(rendered, m["deliveries"].as_array().unwrap().len());
}

fn slurm_ledger(cfg: &Path, db: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_slurm-ledger"))
        .arg("--config")
        .arg(cfg)
        .arg("--ledger")
        .arg(db)
        .args(args)
        .env_remove("PW_API_KEY")
        .env_remove("PW_PLATFORM_HOST")
        .env("SLURM_LEDGER_ACTIVATE_API_KEY", KEY)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
}

#[test]
fn the_next_deliver_sends_only_what_was_owed_once() {
    let m = manifest();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    std::fs::copy(fixture().join("ledger.db"), &db).unwrap();
    let fake = FakeActivate::start(FakeConfig {
        org: "acme".into(),
        api_key: KEY.into(),
        allocations: vec!["alloc-rt".into()],
        seed: 7,
        ..Default::default()
    });
    let jsonl = dir.path().join("usage.jsonl");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config(&fake.base_url(), &jsonl)).unwrap();

    // The upgrade happens here, in the binary, as it would on a site.
    let (code, out, err) = slurm_ledger(&cfg, &db, &["deliver"]);
    assert_eq!(code, 1, "3 deliveries the fake refuses (the fixture's rejected ones): {out}\n{err}");
    assert!(out.contains("jsonl: 0 runs planned → 0 new deliveries"), "nothing re-planned for JSONL:\n{out}");
    assert!(out.contains("activate: 3 runs planned → 0 new deliveries (3 runs held)"), "only the held runs:\n{out}");
    assert!(!jsonl.exists(), "nothing was sent to JSONL again");

    let old = m["deliveries"].as_array().unwrap();
    let by_id: BTreeMap<&str, &Value> = old.iter().map(|d| (d["id"].as_str().unwrap(), d)).collect();
    let owed: BTreeSet<&str> = old
        .iter()
        .filter(|d| d["sink"] == "activate" && d["state"] != "delivered" && d["state"] != "rejected")
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    // The platform knows only alloc-rt (alloc-eng's are refused, as when the fixture was written).
    let must: BTreeSet<&str> = owed
        .iter()
        .copied()
        .filter(|id| by_id[id]["state"] != "retry" && by_id[id]["payload_allocation"] == "alloc-rt")
        .collect();
    let events = fake.events();
    let ids: Vec<&str> = events.iter().map(|e| e.metadata.as_ref().unwrap()["deliveryId"].as_str().unwrap()).collect();
    let sent: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(sent.len(), ids.len(), "an event was sent twice: {ids:?}");
    // The one in `retry` (429, Retry-After a day) goes out once its time has come.
    assert!(must.is_subset(&sent) && sent.is_subset(&owed), "sent {sent:?}, owed {owed:?}");
    for e in &events {
        let id = e.metadata.as_ref().unwrap()["deliveryId"].as_str().unwrap();
        let v: Value = serde_json::from_str(by_id[id]["payload"].as_str().unwrap()).unwrap();
        let ev = &v["event"];
        assert_eq!(e.allocation, v["allocation"].as_str().unwrap(), "{id}");
        assert_eq!(e.sku, ev["sku"].as_str().unwrap(), "{id}");
        assert_eq!(e.quantity_text, ev["quantity"].to_string(), "{id}");
        assert_eq!(e.started_at, ev["startedAt"].as_str().unwrap(), "{id}");
        assert_eq!(e.ended_at, ev["endedAt"].as_str().unwrap(), "{id}");
        assert_eq!(e.metadata.as_ref(), Some(&ev["metadata"]), "{id}");
    }

    // Again: nothing more goes out, and what went out is delivered in the ledger.
    let (code, out, err) = slurm_ledger(&cfg, &db, &["deliver"]);
    assert_eq!(code, 3, "nothing failed this time, runs still held: {out}\n{err}");
    assert_eq!(fake.events().len(), events.len(), "a second pass sent more:\n{out}");
    let ledger = Ledger::open(&db).unwrap();
    let delivered: BTreeSet<String> =
        ledger.deliveries("activate", Some(DeliveryState::Delivered)).unwrap().into_iter().map(|d| d.id).collect();
    for id in sent {
        assert!(delivered.contains(id), "{id} sent but not delivered in the ledger");
    }
}
