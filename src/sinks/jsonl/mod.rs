//! A local sink: usage records appended to a file, one JSON object per line, each with its
//! delivery id. For sites that feed their own tooling, for audits, and for the demo.
//!
//! Exactly once holds here too: a record is appended and fsynced before it counts as delivered,
//! and a delivery whose outcome is unknown (a crash between append and ledger update) is looked
//! up by its id in the file before it is written again. Readers should skip a line that does
//! not parse (a crash in the middle of a write can leave one).
//!
//! A batch is one append and one sync. A batch of look-ups is one scan of the file for just those
//! ids (memory bounded by the batch, not the file); a line that is not JSON, or not UTF-8, holds
//! no id.

pub mod config;

use std::collections::HashSet;
use std::io::{BufRead, Write};

use serde_json::json;

use crate::delivery::consumer::{Consumer, Lookup, Outcome, RenderError, Sender};
use crate::delivery::slices::{Price, Pricing, SentSlice, SlicePlanner};
use crate::ledger::Delivery;
use crate::model::JobRun;

use super::{BuildCtx, Built, SinkError, SinkKind};
use config::JsonlSettings;

/// The sink's name in the ledger.
pub const NAME: &str = "jsonl";

/// The JSONL sink kind (see the registry in `sinks`).
pub struct Jsonl;

impl SinkKind for Jsonl {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawJsonl;
    type Settings = JsonlSettings;

    fn billed(s: &Self::Settings) -> Vec<super::BilledTres> {
        super::BilledTres::of_metering(NAME, &s.metering)
    }

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(s: &JsonlSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let planner = SlicePlanner::new(NAME, JsonlPricing(s.clone()), &s.metering)
            .map_err(|e| SinkError::Config { sink: NAME, message: e.to_string() })?;
        let sender = JsonlSink::new(s.clone());
        Ok(Built { consumer: Consumer::new(NAME, Box::new(planner), Box::new(sender), ctx.policy), warnings: vec![] })
    }
}

/// The billed TRES of `[sinks.jsonl]`; every run is priced (no mapping). The route pins the
/// TRES's name and unit each record carries: `tres`, 0x1F, `unit`.
struct JsonlPricing(JsonlSettings);

impl Pricing for JsonlPricing {
    fn price(&self, job: &JobRun) -> Result<Price, String> {
        let m = &self.0.metering;
        let unit = if m.unit().per_unit == 3600 { "hours" } else { "GiB-hours" };
        Ok(Price { count: m.count(job), unit: m.unit(), route: Some(format!("{}\u{1f}{unit}", m.tres)) })
    }

    /// A JSONL record goes nowhere else: the item keeps the TRES and unit it was metered as.
    fn reroute(&self, job: &JobRun, old: Option<&str>) -> Result<Option<String>, String> {
        match old {
            Some(r) => Ok(Some(r.to_string())),
            None => self.price(job).map(|p| p.route),
        }
    }
}

/// Appends usage records to a file.
pub struct JsonlSink {
    cfg: JsonlSettings,
}

/// Records per append (and sync).
const BATCH: usize = 2048;

impl JsonlSink {
    pub fn new(cfg: JsonlSettings) -> Self {
        Self { cfg }
    }

    /// The record of one item: the run as the ledger holds it, the item's slice, and the TRES and
    /// unit it was planned with.
    pub fn render(&self, d: &Delivery, job: Option<&JobRun>) -> Result<String, RenderError> {
        let job = job.ok_or_else(|| RenderError::NoRun { id: d.id.clone() })?;
        let slice = SentSlice::of(d)?;
        let bad = || RenderError::BadRoute { id: d.id.clone(), route: d.route.clone() };
        let (tres, unit) = d.route.as_deref().and_then(|r| r.split_once('\u{1f}')).ok_or_else(bad)?;
        let quantity = slice.number(&d.id)?;
        Ok(json!({
            "id": d.id,
            "cluster": job.key.cluster.as_str(),
            "jobIdRaw": job.key.job_id_raw,
            "jobId": job.job_id,
            "submit": job.key.submit.to_rfc3339(),
            "user": job.user,
            "account": job.account,
            "partition": job.partition,
            "qos": job.qos,
            "tres": tres,
            "unit": unit,
            "quantity": quantity,
            "startedAt": slice.start.to_rfc3339(),
            "endedAt": slice.end.to_rfc3339(),
        })
        .to_string())
    }

    /// Appends records, one per line, and syncs them.
    fn append(&self, records: &[&str]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.cfg.path)?;
        // A crash mid-write can leave a last line without its newline: end it first, so these
        // records start a line of their own and stay readable.
        let mut text = String::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 1);
        if !ends_with_newline(&mut f)? {
            text.push('\n');
        }
        for r in records {
            text.push_str(r);
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }

    /// Which of `wanted` the file holds, in one scan (a line that does not parse holds none).
    fn find_ids<'w>(&self, wanted: &HashSet<&'w str>) -> std::io::Result<HashSet<&'w str>> {
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
        }
        let mut found = HashSet::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let f = match std::fs::File::open(&self.cfg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(e),
        };
        let mut reader = std::io::BufReader::new(f);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line)? > 0 {
            if let Ok(r) = serde_json::from_slice::<Id<'_>>(&line) {
                if let Some(w) = wanted.get(r.id.as_ref()) {
                    found.insert(*w);
                }
            }
            line.clear();
        }
        Ok(found)
    }
}

impl JsonlSink {
    /// A batch's records in one append and one sync; one outcome per item, in order.
    fn write_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Outcome> {
        let rendered: Vec<Result<String, RenderError>> = items.iter().map(|(d, run)| self.render(d, *run)).collect();
        let records: Vec<&str> = rendered.iter().filter_map(|r| r.as_deref().ok()).collect();
        let written = if records.is_empty() { Ok(()) } else { self.append(&records) };
        rendered
            .into_iter()
            .map(|r| match (r, &written) {
                (Err(e), _) => Outcome::Rejected { reason: e.to_string() },
                (Ok(_), Ok(())) => Outcome::Delivered { remote_id: None },
                // A partial append may exist: look it up before writing again.
                (Ok(_), Err(e)) => Outcome::Unknown { reason: format!("writing {}: {e}", self.cfg.path.display()) },
            })
            .collect()
    }
}

impl Sender for JsonlSink {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        self.write_batch(&[(d, run)]).remove(0)
    }

    /// Its own batch write, not the engine's sends one by one: a file takes a batch in one
    /// append and one fsync (concurrent appends would only contend for it and sync once each),
    /// and nothing here ever throttles. So the default concurrency (1) is never used.
    fn send_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Option<Vec<Outcome>> {
        Some(self.write_batch(items))
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn lookup(&self, d: &Delivery, run: Option<&JobRun>) -> Lookup {
        self.lookup_batch(&[(d, run)]).remove(0)
    }

    fn lookup_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Lookup> {
        let wanted: HashSet<&str> = items.iter().map(|(d, _)| d.id.as_str()).collect();
        match self.find_ids(&wanted) {
            Ok(found) => {
                items
                    .iter()
                    .map(|(d, _)| {
                        if found.contains(d.id.as_str()) {
                            Lookup::Found { remote_id: None }
                        } else {
                            Lookup::NotFound
                        }
                    })
                    .collect()
            }
            Err(e) => {
                let reason = format!("reading {}: {e}", self.cfg.path.display());
                items.iter().map(|_| Lookup::Failed { reason: reason.clone() }).collect()
            }
        }
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        self.render(d, run).unwrap_or_else(|e| format!("(cannot render: {e})"))
    }
}

/// Whether the file is empty or its last byte is a newline.
fn ends_with_newline(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::DeliveryState;
    use crate::model::{ClusterName, JobKey, UnixTime};

    fn run() -> JobRun {
        JobRun::new(JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 1, submit: UnixTime(0) }, "1".into())
    }

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            seq: 0,
            sink: NAME.into(),
            key: Some(run().key),
            span: Some((UnixTime(0), UnixTime(1))),
            amount: Some("1.000000".into()),
            route: Some("cpu\u{1f}hours".into()),
            total: None,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: UnixTime(0),
            last_error: None,
            remote_id: None,
        }
    }

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.jsonl");
        let mut problems = Vec::new();
        let raw = config::RawJsonl { path: Some(path.display().to_string()), ..Default::default() };
        let sink = JsonlSink::new(config::validate(raw, &mut problems));
        assert!(problems.is_empty());
        let job = run();
        let run = Some(&job);
        assert_eq!(sink.lookup(&delivery("a"), run), Lookup::NotFound, "no file yet");
        assert_eq!(sink.send(&delivery("a"), run), Outcome::Delivered { remote_id: None });
        // A crash in the middle of the next write.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":\"b\",\"clu").unwrap();
        assert_eq!(sink.lookup(&delivery("b"), run), Lookup::NotFound, "a torn record is not a delivery");
        assert_eq!(sink.send(&delivery("b"), run), Outcome::Delivered { remote_id: None });
        assert_eq!(sink.lookup(&delivery("b"), run), Lookup::Found { remote_id: None });
        assert_eq!(sink.lookup(&delivery("a"), run), Lookup::Found { remote_id: None });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count(), 2, "{text}");
        // A torn write that cut a character in two: not UTF-8, holds no id, hides none.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":\"c\xe2\x82\n").unwrap();
        let (a, c) = (delivery("a"), delivery("c"));
        assert_eq!(sink.lookup_batch(&[(&a, run), (&c, run)]), [Lookup::Found { remote_id: None }, Lookup::NotFound]);
    }
}
