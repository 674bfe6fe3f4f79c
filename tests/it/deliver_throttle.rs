//! Sends to an HTTP platform go out several at once (`[sinks.activate] concurrency`), and a 429
//! pauses that sink for the rest of the pass while the other sinks deliver: the binary on the
//! demo's ledger with copies of a recorded run, against the ACTIVATE fake.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use slurm_ledger::ledger::{Delivery, DeliveryState, Ledger};

use crate::backlog::copies_of_a_recorded_run;
use crate::deliver_activate::{deliver, fake, site, slurm_ledger, Site, KEY};
use crate::fakes::{Fault, FaultMix};

const ALLOCATIONS: [&str; 3] = ["alloc-rt", "alloc-eng", "alloc-p1"];

/// ACTIVATE with every account mapped and `concurrency`, and JSONL next to it.
fn write_cfg(site: &Site, url: &str, concurrency: usize) {
    let jsonl = site.db.with_file_name("usage.jsonl");
    let text = format!(
        "[sinks.activate]\norganization = \"acme\"\nhost = \"{url}\"\ndefault_sku = \"standard-compute\"\n\
         timeout_secs = 5\nconcurrency = {concurrency}\n\
         [sinks.activate.account_allocation]\nresearch-team = \"alloc-rt\"\nengineering = \"alloc-eng\"\nhpc_proj1 = \"alloc-p1\"\n\
         [sinks.jsonl]\npath = \"{}\"\ntres = \"cpu\"\n",
        jsonl.display()
    );
    std::fs::write(&site.cfg, text).unwrap();
}

fn items(site: &Site, sink: &str, state: DeliveryState) -> Vec<Delivery> {
    Ledger::open(&site.db).unwrap().deliveries(sink, Some(state)).unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn a_429_pauses_the_sink_for_the_pass_and_the_other_sink_still_delivers() {
    let site = site();
    copies_of_a_recorded_run(&site, 60);
    let f = fake(&ALLOCATIONS);
    write_cfg(&site, &f.base_url(), 4);
    f.push_pass(5);
    f.push_faults([Fault::TooMany { retry_after_secs: 120 }]);
    let before = unix_now();
    let out = deliver(&site);
    let after = unix_now();

    let posts = f.requests().iter().filter(|r| r.method == "POST").count();
    let events = f.events().len();
    assert_eq!(events + 1, posts, "every POST but the 429 recorded: {out}");
    let delivered = items(&site, "activate", DeliveryState::Delivered);
    let retry = items(&site, "activate", DeliveryState::Retry);
    let pending = items(&site, "activate", DeliveryState::Pending);
    assert_eq!(delivered.len(), events);
    assert!(items(&site, "activate", DeliveryState::Sent).is_empty(), "every send that left has its answer");
    // The throttled one waits for Retry-After; the ones that never left are pending as planned.
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert!(retry[0].next_attempt_at.0 >= before + 120, "{:?}", retry[0]);
    assert!(retry[0].last_error.as_deref().is_some_and(|e| e.contains("429")), "{:?}", retry[0]);
    assert!(pending.len() > 50, "the pass stopped at the 429: {} pending, {posts} POSTs", pending.len());
    assert!(pending.iter().all(|d| d.attempts == 0 && d.last_error.is_none()), "never sent");
    let line = out.lines().find(|l| l.contains("asked to slow down")).unwrap_or_else(|| panic!("{out}"));
    let (head, time) = line.split_at("  activate: the platform asked to slow down (429); sending resumes after ".len());
    assert_eq!(head, "  activate: the platform asked to slow down (429); sending resumes after ", "{line}");
    // The answer's time + Retry-After, as HH:MM:SSZ (today, UTC; after midnight with its date).
    let time = time.split_once('T').map_or(time, |(_, t)| t);
    let shown = [0, 3, 6].map(|i| time[i..i + 2].parse::<i64>().unwrap());
    let shown = shown[0] * 3600 + shown[1] * 60 + shown[2];
    assert!(
        (before + 120..=after + 120).any(|t| t.rem_euclid(86_400) == shown) && time[8..].starts_with("Z "),
        "{line}"
    );
    assert!(line.ends_with(&format!("({} deliveries still due wait for it)", pending.len())), "{line}");
    // The other sink of the same pass delivered everything.
    assert!(!items(&site, "jsonl", DeliveryState::Delivered).is_empty());
    for state in [DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Retry] {
        assert!(items(&site, "jsonl", state).is_empty(), "jsonl {state:?}");
    }

    // The next pass (the CLI keeps no pause; the daemon will) sends what never left, once each.
    deliver(&site);
    assert_eq!(items(&site, "activate", DeliveryState::Pending).len(), 0);
    let mut ids: Vec<String> = f.events().iter().map(|e| e.id.clone()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event was recorded twice");
    assert_eq!(n, items(&site, "activate", DeliveryState::Delivered).len());
}

/// Sends per second to the ACTIVATE fake answering each POST after `SLOW_MS` (default 20), at a
/// concurrency of 1 and of 4: `cargo test --test it deliver_throttle::figures -- --ignored
/// --nocapture`. Prints figures only (no timed assertion); every item still goes out once.
#[test]
#[ignore = "a figure, not a check: run it by name"]
fn figures_sends_per_second_at_concurrency_1_and_4() {
    let slow: u64 = std::env::var("SLOW_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let copies: u64 = std::env::var("COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    for concurrency in [1, 4] {
        let site = site();
        copies_of_a_recorded_run(&site, copies);
        let f = fake(&ALLOCATIONS);
        write_cfg(&site, &f.base_url(), concurrency);
        // Plan only, untimed.
        let (code, out, err) = slurm_ledger(&site, &["deliver", "--limit", "0"], Some(KEY));
        assert_eq!(code, 0, "{out}{err}");
        let due = items(&site, "activate", DeliveryState::Pending).len();
        f.set_mix(FaultMix { weights: vec![(1.0, Fault::Slow { millis: slow })], on_get: false });
        let t = Instant::now();
        let (code, out, err) = slurm_ledger(&site, &["deliver", "--sink", "activate"], Some(KEY));
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(f.events().len(), due, "every item once");
        println!(
            "concurrency {concurrency}: {due} sends in {secs:.2} s = {:.0} sends/s ({slow} ms a request; one `deliver` incl. start-up)",
            due as f64 / secs
        );
    }
}
