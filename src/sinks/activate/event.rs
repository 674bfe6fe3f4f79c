//! The pure half of the ACTIVATE sink: which allocation and SKU a run maps to, and the usage
//! event (`PostUsageEventInput`, `additionalProperties: false`) for one slice.
//!
//! A run whose account or partition maps to nothing (no entry, no default) is held with a
//! reason that names the key to add; it is never guessed and never dropped.
//!
//! The stored payload is `{"allocation": …, "event": {…}}`: the allocation goes into the URL
//! path, the event is the request body, byte for byte what `--dry-run` shows.

use serde_json::{json, Map, Value};

use crate::config::ActivateSettings;
use crate::delivery::plan::Slice;
use crate::model::JobRun;

/// The metadata key carrying slurm-ledger's delivery id; look-ups search for it.
pub const DELIVERY_ID_KEY: &str = "deliveryId";

/// The allocation a run's account maps to.
pub fn allocation_for<'a>(cfg: &'a ActivateSettings, job: &JobRun) -> Result<&'a str, String> {
    cfg.account_allocation.get(&job.account).or(cfg.default_allocation.as_ref()).map(String::as_str).ok_or_else(|| {
        format!(
            "account {:?} maps to no ACTIVATE allocation: add it under [sinks.activate.account_allocation] or set default_allocation",
            job.account
        )
    })
}

/// The SKU a run's partition maps to.
pub fn sku_for<'a>(cfg: &'a ActivateSettings, job: &JobRun) -> Result<&'a str, String> {
    cfg.partition_sku.get(&job.partition).or(cfg.default_sku.as_ref()).map(String::as_str).ok_or_else(|| {
        format!("partition {:?} maps to no ACTIVATE SKU: add it under [sinks.activate.partition_sku] or set default_sku", job.partition)
    })
}

/// The stored payload of one slice: allocation and event body.
pub fn render_payload(cfg: &ActivateSettings, job: &JobRun, slice: &Slice, delivery_id: &str, quantity: &str) -> Result<String, String> {
    let allocation = allocation_for(cfg, job)?;
    let sku = sku_for(cfg, job)?;
    let quantity: serde_json::Number =
        quantity.parse().map_err(|_| format!("quantity {quantity:?} is not a number (internal error; report it)"))?;
    let mut meta = Map::new();
    meta.insert("jobId".into(), json!(job.key.job_id_raw));
    meta.insert("jobIdDisplay".into(), json!(job.job_id));
    meta.insert("user".into(), json!(job.user));
    meta.insert("partition".into(), json!(job.partition));
    meta.insert("cluster".into(), json!(job.key.cluster.as_str()));
    meta.insert("account".into(), json!(job.account));
    meta.insert("qos".into(), json!(job.qos));
    meta.insert("submit".into(), json!(job.key.submit.to_rfc3339()));
    meta.insert("tres".into(), json!(cfg.metering.tres));
    meta.insert(DELIVERY_ID_KEY.into(), json!(delivery_id));
    let mut event = Map::new();
    event.insert("sku".into(), json!(sku));
    event.insert("quantity".into(), Value::Number(quantity));
    event.insert("startedAt".into(), json!(slice.start.to_rfc3339()));
    event.insert("endedAt".into(), json!(slice.end.to_rfc3339()));
    if !job.user.is_empty() {
        event.insert("user".into(), json!(job.user));
    }
    event.insert("metadata".into(), Value::Object(meta));
    Ok(json!({ "allocation": allocation, "event": Value::Object(event) }).to_string())
}

/// A stored payload, read back for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub allocation: String,
    pub event: Value,
}

/// Reads a stored payload.
pub fn parse_payload(text: &str) -> Result<Payload, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("stored payload is not JSON: {e}"))?;
    let allocation = v.get("allocation").and_then(Value::as_str).ok_or("stored payload has no allocation")?.to_string();
    let event = v.get("event").filter(|e| e.is_object()).ok_or("stored payload has no event")?.clone();
    Ok(Payload { allocation, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::model::{ClusterName, JobKey, UnixTime};

    fn cfg() -> ActivateSettings {
        let text = "[sinks.activate]\norganization = \"acme\"\ndefault_sku = \"standard-compute\"\n\
                    [sinks.activate.partition_sku]\ngpu = \"gpu-compute\"\n[sinks.activate.account_allocation]\nresearch-team = \"allocation-oid-12345\"\n";
        Settings::from_toml(text, "t").unwrap().sinks.activate.unwrap()
    }

    fn job(account: &str, partition: &str) -> JobRun {
        let key = JobKey { cluster: ClusterName::new("mycluster").unwrap(), job_id_raw: 4242, submit: UnixTime(1_768_902_000) };
        let mut j = JobRun::new(key, "4242".into());
        j.account = account.into();
        j.partition = partition.into();
        j.user = "jdoe".into();
        j.qos = "normal".into();
        j
    }

    #[test]
    fn event_has_exactly_the_contract_fields() {
        let slice = Slice { start: UnixTime(1_768_903_200), end: UnixTime(1_768_905_600), quantity: 0 };
        let p = render_payload(&cfg(), &job("research-team", "gpu"), &slice, "sl:x", "2.666667").unwrap();
        let p = parse_payload(&p).unwrap();
        assert_eq!(p.allocation, "allocation-oid-12345");
        let mut keys: Vec<&str> = p.event.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["endedAt", "metadata", "quantity", "sku", "startedAt", "user"]);
        assert_eq!(p.event["sku"], "gpu-compute");
        assert_eq!(p.event["quantity"].to_string(), "2.666667");
        assert_eq!(p.event["startedAt"], "2026-01-20T10:00:00Z");
        assert_eq!(p.event["metadata"]["jobId"], 4242);
        assert_eq!(p.event["metadata"][DELIVERY_ID_KEY], "sl:x");
    }

    #[test]
    fn unmapped_account_is_held_with_the_key_to_add() {
        let e = allocation_for(&cfg(), &job("physics", "gpu")).unwrap_err();
        assert!(e.contains("\"physics\"") && e.contains("account_allocation"), "{e}");
        assert_eq!(sku_for(&cfg(), &job("physics", "debug")).unwrap(), "standard-compute");
    }
}
