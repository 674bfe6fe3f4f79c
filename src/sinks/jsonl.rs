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
        let quantity: serde_json::Number = quantity.parse().map_err(|_| format!("quantity {quantity:?} is not a number"))?;
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
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.cfg.path)?;
            f.write_all(format!("{}\n", d.payload).as_bytes())?;
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
            let Ok(line) = line else { continue };
            let found = serde_json::from_str::<serde_json::Value>(&line).ok().is_some_and(|v| v.get("id").and_then(|i| i.as_str()) == Some(d.id.as_str()));
            if found {
                return Lookup::Found { remote_id: None };
            }
        }
        Lookup::NotFound
    }
}
