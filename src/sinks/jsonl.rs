//! A local sink: usage records appended to a file, one JSON object per line, each with its
//! delivery id. For sites that feed their own tooling, for audits, and for the demo.
//!
//! Exactly once holds here too: a record is appended and fsynced before it counts as delivered,
//! and a delivery whose outcome is unknown (a crash between append and ledger update) is looked
//! up by its id in the file before it is written again. Readers should skip a line that does
//! not parse (a crash in the middle of a write can leave one).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::json;

use crate::config::JsonlSettings;
use crate::delivery::plan::Slice;
use crate::ledger::Delivery;
use crate::meter::period::Calendar;
use crate::model::JobRun;
use crate::sinks::{metered_rate, unit_of, Lookup, Outcome, Rate, Sink};

/// The sink's name in the ledger.
pub const NAME: &str = "jsonl";

/// Appends usage records to a file.
pub struct JsonlSink {
    cfg: JsonlSettings,
    calendar: Calendar,
}

impl JsonlSink {
    pub fn new(cfg: JsonlSettings) -> Result<Self, String> {
        let calendar = crate::sinks::calendar(&cfg.metering)?;
        Ok(Self { cfg, calendar })
    }

    pub fn path(&self) -> &PathBuf {
        &self.cfg.path
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        NAME
    }

    fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    fn rate(&self, job: &JobRun) -> Result<Rate, String> {
        Ok(metered_rate(&self.cfg.metering, job))
    }

    fn render(&self, job: &JobRun, slice: &Slice, delivery_id: &str, quantity: &str) -> Result<String, String> {
        let unit = if unit_of(&self.cfg.metering.tres).per_unit == 3600 { "hours" } else { "GiB-hours" };
        let quantity: serde_json::Number =
            quantity.parse().map_err(|_| format!("quantity {quantity:?} is not a number"))?;
        Ok(json!({
            "id": delivery_id,
            "cluster": job.key.cluster.as_str(),
            "jobIdRaw": job.key.job_id_raw,
            "jobId": job.job_id,
            "submit": job.key.submit.to_rfc3339(),
            "user": job.user,
            "account": job.account,
            "partition": job.partition,
            "qos": job.qos,
            "tres": self.cfg.metering.tres,
            "unit": unit,
            "quantity": quantity,
            "startedAt": slice.start.to_rfc3339(),
            "endedAt": slice.end.to_rfc3339(),
        })
        .to_string())
    }

    fn send(&self, d: &Delivery) -> Outcome {
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.cfg.path)?;
            // A crash mid-write can leave a last line without its newline: end it first, so this
            // record starts a line of its own and stays readable.
            let mut line = String::with_capacity(d.payload.len() + 2);
            if !ends_with_newline(&mut f)? {
                line.push('\n');
            }
            line.push_str(&d.payload);
            line.push('\n');
            f.write_all(line.as_bytes())?;
            f.sync_data()
        };
        match write() {
            Ok(()) => Outcome::Delivered { remote_id: None },
            // A partial append may exist: look it up before writing again.
            Err(e) => Outcome::Unknown { reason: format!("writing {}: {e}", self.cfg.path.display()) },
        }
    }

    fn lookup(&self, d: &Delivery) -> Lookup {
        let f = match std::fs::File::open(&self.cfg.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::NotFound,
            Err(e) => return Lookup::Failed { reason: format!("reading {}: {e}", self.cfg.path.display()) },
        };
        for line in std::io::BufReader::new(f).lines() {
            let line = match line {
                Ok(l) => l,
                Err(e) => return Lookup::Failed { reason: format!("reading {}: {e}", self.cfg.path.display()) },
            };
            let found = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .is_some_and(|v| v.get("id").and_then(|i| i.as_str()) == Some(d.id.as_str()));
            if found {
                return Lookup::Found { remote_id: None };
            }
        }
        Lookup::NotFound
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
    use crate::config::Settings;
    use crate::ledger::DeliveryState;
    use crate::model::{ClusterName, JobKey, UnixTime};

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            sink: NAME.into(),
            key: JobKey { cluster: ClusterName::new("c").unwrap(), job_id_raw: 1, submit: UnixTime(0) },
            slice_start: UnixTime(0),
            slice_end: UnixTime(1),
            quantity: "1.000000".into(),
            payload: format!("{{\"id\":\"{id}\"}}"),
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
        let text = format!("[sinks.jsonl]\npath = {:?}\n", path.display().to_string());
        let sink = JsonlSink::new(Settings::from_toml(&text, "t").unwrap().sinks.jsonl.unwrap()).unwrap();
        assert_eq!(sink.lookup(&delivery("a")), Lookup::NotFound, "no file yet");
        assert_eq!(sink.send(&delivery("a")), Outcome::Delivered { remote_id: None });
        // A crash in the middle of the next write.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":\"b\",\"clu").unwrap();
        assert_eq!(sink.lookup(&delivery("b")), Lookup::NotFound, "a torn record is not a delivery");
        assert_eq!(sink.send(&delivery("b")), Outcome::Delivered { remote_id: None });
        assert_eq!(sink.lookup(&delivery("b")), Lookup::Found { remote_id: None });
        assert_eq!(sink.lookup(&delivery("a")), Lookup::Found { remote_id: None });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count(), 2, "{text}");
    }
}
