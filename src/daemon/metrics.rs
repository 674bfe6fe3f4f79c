//! The daemon's Prometheus metrics: what the loop records, and their rendering for `/metrics`.
//!
//! Owns the metric names, HELP texts, labels and histogram buckets (README "Metrics" lists them),
//! and the choice of exposition format from a scraper's `Accept` header ([`Format`]).
//!
//! Invariants:
//! - The methods take plain values (names, counts, seconds, UTC unix seconds) and no ledger
//!   types; the caller reads the clock (`finished_at_unix`, `now_unix`), this module never does.
//! - Every name starts with `slurm_ledger_`, carries its unit (`_seconds`) and, for a counter,
//!   `_total`. Labels are `cluster` and `sink` (names from the config, escaped by the encoder),
//!   and `result`/`state` with the fixed values documented on each metric.
//! - A `result` label's values all exist (at 0) from a series' first record, so `increase()` and
//!   `rate()` see a first failure.
//! - The cursor lag is computed at render time from the caller's `now`: a stuck daemon shows a
//!   lag that grows from scrape to scrape.
//! - What a render says is consistent per cluster: a cursor and its lag are read under one lock.
//!
//! Encoding is `prometheus-client`'s: the Prometheus text format 0.0.4 by default, OpenMetrics
//! 1.0.0 when the scraper asks for it (Prometheus does), each served with its own `Content-Type`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the time a collect spends in `sacct`: sub-second on a quiet
/// slurmdbd, minutes on a busy one, up to `slurm.timeout_secs` (default 600).
const SACCT_BUCKETS: [f64; 12] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Upper bounds (seconds) of a pass: the collects, then delivery within `delivery.pass_time`
/// (default 4 min).
const PASS_BUCKETS: [f64; 11] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 300.0, 600.0, 1200.0, 3600.0];

/// An exposition format that `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4: what a scraper gets unless it asks for OpenMetrics.
    Text,
    /// OpenMetrics 1.0.0 text (`# EOF` at the end, `# UNIT` lines).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` this format is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to serve for a request's `Accept` header: OpenMetrics when the header lists
    /// `application/openmetrics-text` with a quality above 0 and at least that of `text/plain`
    /// (as Prometheus' own header does); otherwise text (no header, `*/*`, `text/plain`).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterResult {
    cluster: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkState {
    sink: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

fn sacct_histogram() -> Histogram {
    Histogram::new(SACCT_BUCKETS)
}

/// A duration fit to observe: negative is 0, NaN and infinities are not observed.
fn seconds(secs: f64) -> Option<f64> {
    secs.is_finite().then_some(secs.max(0.0))
}

/// The daemon's metrics. `Send + Sync`: the loop records through an `Arc<Metrics>` while the
/// HTTP server thread renders it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    collects: Family<ClusterResult, Counter>,
    collect_last_success: Family<ClusterLabel, Gauge>,
    runs_read: Family<ClusterLabel, Counter>,
    sacct_calls: Family<ClusterLabel, Counter>,
    sacct_seconds: Family<ClusterLabel, Histogram, fn() -> Histogram>,
    cursor: Family<ClusterLabel, Gauge>,
    cursor_lag: Family<ClusterLabel, Gauge>,
    /// Each cluster's cursor (UTC unix seconds), for the lag at render time. Its lock is held
    /// while a render sets the lags and encodes, so concurrent renders do not mix their `now`.
    cursors: Mutex<BTreeMap<String, i64>>,
    outbox: Family<SinkState, Gauge>,
    delivered: Family<SinkLabel, Counter>,
    send_failures: Family<SinkLabel, Counter>,
    hook_messages: Family<ResultLabel, Counter>,
    passes: Family<ResultLabel, Counter>,
    pass_seconds: Histogram,
    pass_last_success: Gauge,
}

impl Metrics {
    /// Every metric registered; `started_at_unix` (UTC seconds) is the process start time shown.
    pub fn new(started_at_unix: i64) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("slurm_ledger"),
            collects: Family::default(),
            collect_last_success: Family::default(),
            runs_read: Family::default(),
            sacct_calls: Family::default(),
            sacct_seconds: Family::new_with_constructor(sacct_histogram),
            cursor: Family::default(),
            cursor_lag: Family::default(),
            cursors: Mutex::new(BTreeMap::new()),
            outbox: Family::default(),
            delivered: Family::default(),
            send_failures: Family::default(),
            hook_messages: Family::default(),
            passes: Family::default(),
            pass_seconds: Histogram::new(PASS_BUCKETS),
            pass_last_success: Gauge::default(),
        };
        let registry = &mut m.registry;

        registry.register(
            "build",
            "The running slurm-ledger's version (the value is always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let start: Gauge = Gauge::default();
        start.set(started_at_unix);
        registry.register_with_unit(
            "start_time",
            "When this slurm-ledger daemon started, in unix time (UTC)",
            Unit::Seconds,
            start,
        );

        registry.register(
            "collects",
            "Collects of a cluster from Slurm (one sacct poll, then open runs asked for by id), by result: ok or failed",
            m.collects.clone(),
        );
        registry.register_with_unit(
            "collect_last_success_timestamp",
            "When the cluster's last successful collect finished, in unix time (UTC)",
            Unit::Seconds,
            m.collect_last_success.clone(),
        );
        registry.register(
            "collect_runs_read",
            "Job runs read from sacct by collects of the cluster (a run read again by an overlapping window counts again)",
            m.runs_read.clone(),
        );
        registry.register(
            "sacct_calls",
            "sacct commands run by collects of the cluster (the load slurm-ledger puts on slurmdbd)",
            m.sacct_calls.clone(),
        );
        registry.register_with_unit(
            "collect_sacct_duration",
            "Time each collect of the cluster spent waiting for sacct, all its sacct calls together",
            Unit::Seconds,
            m.sacct_seconds.clone(),
        );
        registry.register_with_unit(
            "cursor_timestamp",
            "The cluster's collect cursor, in unix time (UTC): Slurm's records up to it are in the ledger",
            Unit::Seconds,
            m.cursor.clone(),
        );
        registry.register_with_unit(
            "cursor_lag",
            "How far the cluster's collect cursor is behind the clock at this scrape; it grows while collects fail",
            Unit::Seconds,
            m.cursor_lag.clone(),
        );

        registry.register(
            "outbox_items",
            "Items in the sink's outbox by state: pending (not sent yet), retrying (a send failed, will be tried again), rejected (refused by the platform, needs a hand: slurm-ledger retry)",
            m.outbox.clone(),
        );
        registry.register(
            "delivered_items",
            "Items the sink's platform confirmed (each usage item is delivered once)",
            m.delivered.clone(),
        );
        registry.register(
            "send_failures",
            "Sends to the sink that failed and will be retried or looked up (timeouts, refused connections, 5xx)",
            m.send_failures.clone(),
        );

        registry.register(
            "hook_messages",
            "Messages received on the hook socket, by result: accepted or refused",
            m.hook_messages.clone(),
        );
        registry.register(
            "passes",
            "Daemon passes (collect every cluster, then deliver to every sink), by result: ok or failed",
            m.passes.clone(),
        );
        registry.register_with_unit(
            "pass_duration",
            "How long each daemon pass took",
            Unit::Seconds,
            m.pass_seconds.clone(),
        );
        registry.register_with_unit(
            "pass_last_success_timestamp",
            "When the last successful daemon pass finished, in unix time (UTC); 0 before the first",
            Unit::Seconds,
            m.pass_last_success.clone(),
        );

        // Each result's series exists (at 0) from the start.
        for result in ["accepted", "refused"] {
            let _ = m.hook_messages.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "failed"] {
            let _ = m.passes.get_or_create(&ResultLabel { result });
        }
        m
    }

    /// A collect of `cluster` finished (`ok`: it succeeded), having read `runs_read` runs with
    /// `sacct_calls` sacct commands that took `sacct_secs` together.
    pub fn collect_finished(
        &self,
        cluster: &str,
        ok: bool,
        runs_read: u64,
        sacct_calls: u64,
        sacct_secs: f64,
        finished_at_unix: i64,
    ) {
        for result in ["ok", "failed"] {
            let counter = self.collects.get_or_create(&ClusterResult { cluster: cluster.to_string(), result });
            if (result == "ok") == ok {
                counter.inc();
            }
        }
        let label = ClusterLabel { cluster: cluster.to_string() };
        if ok {
            self.collect_last_success.get_or_create(&label).set(finished_at_unix);
        }
        self.runs_read.get_or_create(&label).inc_by(runs_read);
        self.sacct_calls.get_or_create(&label).inc_by(sacct_calls);
        let histogram = self.sacct_seconds.get_or_create(&label);
        if let Some(secs) = seconds(sacct_secs).filter(|_| sacct_calls > 0) {
            histogram.observe(secs);
        }
    }

    /// The daemon asked sacct `calls` more times on `cluster` for jobs named by hook messages
    /// (not a collect: the cursor does not move).
    pub fn hook_sacct_calls(&self, cluster: &str, calls: u64) {
        self.sacct_calls.get_or_create(&ClusterLabel { cluster: cluster.to_string() }).inc_by(calls);
    }

    /// `cluster`'s collect cursor is now at `cursor_unix` (UTC seconds).
    pub fn set_cursor(&self, cluster: &str, cursor_unix: i64) {
        let mut cursors = self.cursors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cursors.insert(cluster.to_string(), cursor_unix);
        self.cursor.get_or_create(&ClusterLabel { cluster: cluster.to_string() }).set(cursor_unix);
    }

    /// `sink`'s outbox holds this many items in each state (as the ledger counts them now).
    pub fn set_outbox(&self, sink: &str, pending: u64, retrying: u64, rejected: u64) {
        for (state, n) in [("pending", pending), ("retrying", retrying), ("rejected", rejected)] {
            let gauge = self.outbox.get_or_create(&SinkState { sink: sink.to_string(), state });
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// `n` more items of `sink` were delivered (confirmed by the platform).
    pub fn delivered(&self, sink: &str, n: u64) {
        self.delivered.get_or_create(&SinkLabel { sink: sink.to_string() }).inc_by(n);
        let _ = self.send_failures.get_or_create(&SinkLabel { sink: sink.to_string() });
        // exists, at 0
    }

    /// `n` more sends to `sink` failed (to be retried or looked up).
    pub fn send_failed(&self, sink: &str, n: u64) {
        self.send_failures.get_or_create(&SinkLabel { sink: sink.to_string() }).inc_by(n);
        let _ = self.delivered.get_or_create(&SinkLabel { sink: sink.to_string() });
        // exists, at 0
    }

    /// A message arrived on the hook socket; `accepted`: it was taken, else refused.
    pub fn hook_message(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.hook_messages.get_or_create(&ResultLabel { result }).inc();
    }

    /// A daemon pass finished after `secs` seconds; `ok`: it succeeded.
    pub fn pass_finished(&self, ok: bool, secs: f64, finished_at_unix: i64) {
        let result = if ok { "ok" } else { "failed" };
        self.passes.get_or_create(&ResultLabel { result }).inc();
        if let Some(secs) = seconds(secs) {
            self.pass_seconds.observe(secs);
        }
        if ok {
            self.pass_last_success.set(finished_at_unix);
        }
    }

    /// Everything, in the Prometheus text format 0.0.4, with each cursor's lag behind `now_unix`.
    pub fn render(&self, now_unix: i64) -> String {
        self.render_as(Format::Text, now_unix)
    }

    /// Everything in `format`, with each cursor's lag behind `now_unix` (UTC seconds).
    pub fn render_as(&self, format: Format, now_unix: i64) -> String {
        let cursors = self.cursors.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (cluster, cursor) in cursors.iter() {
            self.cursor_lag
                .get_or_create(&ClusterLabel { cluster: cluster.clone() })
                .set(now_unix.saturating_sub(*cursor));
        }
        let mut out = String::with_capacity(8 * 1024);
        let written = match format {
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry),
        };
        written.expect("encoding into a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample written exactly as `series` (name and labels), if it is there.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn records_what_the_loop_reports() {
        let m = Metrics::new(1_000);
        m.collect_finished("alpha", true, 120, 2, 1.5, 2_000);
        m.collect_finished("alpha", false, 3, 1, 0.2, 2_300);
        m.set_cursor("alpha", 1_990);
        m.set_outbox("activate", 7, 2, 1);
        m.delivered("activate", 40);
        m.delivered("activate", 2);
        m.send_failed("activate", 3);
        m.hook_message(true);
        m.hook_message(false);
        m.hook_message(true);
        m.pass_finished(true, 12.5, 2_010);
        m.pass_finished(false, 700.0, 2_400);
        let t = m.render(2_500);

        let v = |s: &str| value(&t, s).unwrap_or_else(|| panic!("no sample {s} in:\n{t}"));
        assert_eq!(v("slurm_ledger_start_time_seconds"), 1_000.0);
        assert_eq!(v("slurm_ledger_build_info{version=\"0.1.0\"}"), 1.0);
        assert_eq!(v("slurm_ledger_collects_total{cluster=\"alpha\",result=\"ok\"}"), 1.0);
        assert_eq!(v("slurm_ledger_collects_total{cluster=\"alpha\",result=\"failed\"}"), 1.0);
        // the failed collect does not move the last success
        assert_eq!(v("slurm_ledger_collect_last_success_timestamp_seconds{cluster=\"alpha\"}"), 2_000.0);
        assert_eq!(v("slurm_ledger_collect_runs_read_total{cluster=\"alpha\"}"), 123.0);
        assert_eq!(v("slurm_ledger_sacct_calls_total{cluster=\"alpha\"}"), 3.0);
        assert_eq!(v("slurm_ledger_collect_sacct_duration_seconds_count{cluster=\"alpha\"}"), 2.0);
        assert_eq!(v("slurm_ledger_collect_sacct_duration_seconds_sum{cluster=\"alpha\"}"), 1.7);
        assert_eq!(v("slurm_ledger_collect_sacct_duration_seconds_bucket{cluster=\"alpha\",le=\"0.25\"}"), 1.0);
        assert_eq!(v("slurm_ledger_collect_sacct_duration_seconds_bucket{cluster=\"alpha\",le=\"1\"}"), 1.0);
        assert_eq!(v("slurm_ledger_collect_sacct_duration_seconds_bucket{cluster=\"alpha\",le=\"2.5\"}"), 2.0);
        assert_eq!(v("slurm_ledger_cursor_timestamp_seconds{cluster=\"alpha\"}"), 1_990.0);
        assert_eq!(v("slurm_ledger_cursor_lag_seconds{cluster=\"alpha\"}"), 510.0);
        assert_eq!(v("slurm_ledger_outbox_items{sink=\"activate\",state=\"pending\"}"), 7.0);
        assert_eq!(v("slurm_ledger_outbox_items{sink=\"activate\",state=\"retrying\"}"), 2.0);
        assert_eq!(v("slurm_ledger_outbox_items{sink=\"activate\",state=\"rejected\"}"), 1.0);
        assert_eq!(v("slurm_ledger_delivered_items_total{sink=\"activate\"}"), 42.0);
        assert_eq!(v("slurm_ledger_send_failures_total{sink=\"activate\"}"), 3.0);
        assert_eq!(v("slurm_ledger_hook_messages_total{result=\"accepted\"}"), 2.0);
        assert_eq!(v("slurm_ledger_hook_messages_total{result=\"refused\"}"), 1.0);
        assert_eq!(v("slurm_ledger_passes_total{result=\"ok\"}"), 1.0);
        assert_eq!(v("slurm_ledger_passes_total{result=\"failed\"}"), 1.0);
        assert_eq!(v("slurm_ledger_pass_duration_seconds_count"), 2.0);
        assert_eq!(v("slurm_ledger_pass_duration_seconds_bucket{le=\"15\"}"), 1.0);
        assert_eq!(v("slurm_ledger_pass_duration_seconds_bucket{le=\"600\"}"), 1.0);
        assert_eq!(v("slurm_ledger_pass_duration_seconds_bucket{le=\"1200\"}"), 2.0);
        assert_eq!(v("slurm_ledger_pass_last_success_timestamp_seconds"), 2_010.0);
        // outbox gauges are set, not added
        m.set_outbox("activate", 0, 0, 1);
        let t = m.render(2_500);
        assert_eq!(value(&t, "slurm_ledger_outbox_items{sink=\"activate\",state=\"pending\"}"), Some(0.0));
    }

    #[test]
    fn result_series_exist_from_the_first_record() {
        let m = Metrics::new(0);
        let t = m.render(0);
        for s in [
            "slurm_ledger_hook_messages_total{result=\"accepted\"}",
            "slurm_ledger_hook_messages_total{result=\"refused\"}",
            "slurm_ledger_passes_total{result=\"ok\"}",
            "slurm_ledger_passes_total{result=\"failed\"}",
        ] {
            assert_eq!(value(&t, s), Some(0.0), "{s} in:\n{t}");
        }
        m.collect_finished("alpha", true, 0, 1, 0.1, 5);
        m.delivered("jsonl", 1);
        let t = m.render(10);
        assert_eq!(value(&t, "slurm_ledger_collects_total{cluster=\"alpha\",result=\"failed\"}"), Some(0.0));
        assert_eq!(value(&t, "slurm_ledger_send_failures_total{sink=\"jsonl\"}"), Some(0.0));
        // a cluster never collected shows no cursor, and no lag
        assert!(!t.contains("slurm_ledger_cursor_lag_seconds{"), "{t}");
    }

    #[test]
    fn cursor_lag_grows_with_the_clock() {
        let m = Metrics::new(0);
        m.set_cursor("alpha", 10_000);
        let lag = |now| value(&m.render(now), "slurm_ledger_cursor_lag_seconds{cluster=\"alpha\"}");
        assert_eq!(lag(10_000), Some(0.0));
        assert_eq!(lag(10_300), Some(300.0));
        assert_eq!(lag(13_600), Some(3_600.0)); // no collect in between: it keeps growing
        m.set_cursor("alpha", 13_500);
        assert_eq!(lag(13_600), Some(100.0));
    }

    #[test]
    fn odd_cluster_and_sink_names_are_escaped() {
        let m = Metrics::new(0);
        let odd = "a\"b\\c\nd";
        m.collect_finished(odd, true, 1, 1, 0.5, 100);
        m.set_cursor(odd, 50);
        m.delivered(odd, 1);
        for format in [Format::Text, Format::OpenMetrics] {
            let t = m.render_as(format, 100);
            let escaped = r#"cluster="a\"b\\c\nd""#;
            assert_eq!(value(&t, &format!("slurm_ledger_cursor_lag_seconds{{{escaped}}}")), Some(50.0), "{t}");
            assert!(t.contains(r#"slurm_ledger_delivered_items_total{sink="a\"b\\c\nd"} 1"#), "{t}");
            // no raw newline inside a sample line: every line starts a sample or a comment
            assert!(t.lines().all(|l| l.starts_with("slurm_ledger_") || l.starts_with("# ")), "{t}");
        }
    }

    #[test]
    fn formats_differ_where_the_specs_do() {
        let m = Metrics::new(0);
        m.hook_message(true);
        let text = m.render_as(Format::Text, 0);
        let om = m.render_as(Format::OpenMetrics, 0);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(!text.contains("# EOF"), "{text}");
        // OpenMetrics names the counter family without `_total`; text 0.0.4 names it as its samples
        assert!(om.contains("# TYPE slurm_ledger_hook_messages counter\n"), "{om}");
        assert!(text.contains("# TYPE slurm_ledger_hook_messages_total counter\n"), "{text}");
        assert!(om.contains("# UNIT slurm_ledger_pass_duration_seconds seconds\n"), "{om}");
        assert!(om.contains("# TYPE slurm_ledger_build info\n"), "{om}");
        assert!(text.contains("# TYPE slurm_ledger_build_info gauge\n"), "{text}");
    }

    #[test]
    fn accept_header_picks_the_format() {
        use Format::*;
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, Text),
            (Some(""), Text),
            (Some("*/*"), Text),
            (Some("text/plain"), Text),
            (Some(prometheus), OpenMetrics),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), OpenMetrics),
            (Some("Application/OpenMetrics-Text"), OpenMetrics),
            (Some("application/openmetrics-text;q=0.3,text/plain;q=0.9"), Text),
            (Some("application/openmetrics-text;q=0"), Text),
            (Some("application/openmetrics-text;q=zero"), Text),
            (Some("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=0.5"), OpenMetrics),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(OpenMetrics.content_type(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    }

    #[test]
    fn odd_durations_do_not_corrupt_the_sums() {
        let m = Metrics::new(0);
        m.pass_finished(true, f64::NAN, 1);
        m.pass_finished(true, -3.0, 2);
        m.collect_finished("alpha", true, 0, 1, f64::INFINITY, 3);
        m.collect_finished("alpha", true, 0, 0, 9.0, 4); // no sacct call: nothing to observe
        let t = m.render(5);
        assert_eq!(value(&t, "slurm_ledger_pass_duration_seconds_count"), Some(1.0), "{t}");
        assert_eq!(value(&t, "slurm_ledger_pass_duration_seconds_sum"), Some(0.0), "{t}");
        assert_eq!(value(&t, "slurm_ledger_collect_sacct_duration_seconds_count{cluster=\"alpha\"}"), Some(0.0));
    }
}
