//! The pure half of the ACTIVATE sink: which allocation and SKU a run maps to, and the usage
//! event (`PostUsageEventInput`, `additionalProperties: false`) for one slice.
//!
//! A run whose account or partition maps to nothing (no entry, no default) is held with a
//! reason that names the key to add; it is never guessed and never dropped.
//!
//! An item pins its [`Route`] (allocation, SKU, billed TRES) when it is planned; the event is
//! rendered from the run and the slice when it is sent, byte for byte what `--dry-run` shows.
//! [`payload_text`] is the schema-4 release's stored form, `{"allocation": …, "event": {…}}`
//! (benchmarks and tests compare against it).

#[cfg(test)]
use serde_json::{json, Map, Value};

use crate::delivery::consumer::RenderError;
use crate::delivery::slices::Slice;
use crate::model::JobRun;

use super::config::ActivateSettings;

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
        format!(
            "partition {:?} maps to no ACTIVATE SKU: add it under [sinks.activate.partition_sku] or set default_sku",
            job.partition
        )
    })
}

/// What an item is sent with, pinned when it is planned: the allocation (the URL, and where a
/// look-up searches), the SKU and the billed TRES's name (both in the body). A mapping or config
/// changed later does not change an item already planned; `retry` re-routes a rejected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub allocation: &'a str,
    pub sku: &'a str,
    pub tres: &'a str,
}

impl<'a> Route<'a> {
    /// The route of a run under this config, or why the run is held (the key to add).
    pub fn of(cfg: &'a ActivateSettings, job: &JobRun) -> Result<Self, String> {
        Ok(Self { allocation: allocation_for(cfg, job)?, sku: sku_for(cfg, job)?, tres: &cfg.metering.tres })
    }

    /// As the outbox stores it: the three fields joined by 0x1F (which no name contains).
    pub fn encode(&self) -> String {
        format!("{}\u{1f}{}\u{1f}{}", self.allocation, self.sku, self.tres)
    }

    /// An item's stored route.
    pub fn decode(item: &'a crate::ledger::Delivery) -> Result<Self, RenderError> {
        let bad = || RenderError::BadRoute { id: item.id.clone(), route: item.route.clone() };
        let mut parts = item.route.as_deref().ok_or_else(bad)?.split('\u{1f}');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(allocation), Some(sku), Some(tres), None) => Ok(Self { allocation, sku, tres }),
            _ => Err(bad()),
        }
    }
}

/// The schema-4 release's stored payload of one slice: `{"allocation": …, "event": …}`.
pub fn payload_text(route: &Route<'_>, event: &str) -> String {
    let mut out = String::with_capacity(event.len() + route.allocation.len() + 32);
    out.push_str("{\"allocation\":");
    out.push_str(&serde_json::Value::from(route.allocation).to_string());
    out.push_str(",\"event\":");
    out.push_str(event);
    out.push('}');
    out
}

/// [`payload_text`] for a run under a config (tests): the mapping decides the route.
#[cfg(test)]
pub fn render_payload(
    cfg: &ActivateSettings,
    job: &JobRun,
    slice: &Slice,
    delivery_id: &str,
    quantity: &str,
) -> Result<String, String> {
    let route = Route::of(cfg, job)?;
    let event = render_event(job, slice, delivery_id, quantity, &route).map_err(|e| e.to_string())?;
    Ok(payload_text(&route, &event))
}

/// The usage event (the request body) of one slice.
///
/// Written directly as JSON text, byte for byte what serializing the `json!` value tree of
/// [`render_payload_value`] gives (keys in `serde_json::Map`'s sorted order, serde_json's
/// string escaping and number formatting), without building the tree: it runs once per slice.
pub fn render_event(
    job: &JobRun,
    slice: &Slice,
    delivery_id: &str,
    quantity: &str,
    route: &Route<'_>,
) -> Result<String, RenderError> {
    let quantity: serde_json::Number = quantity
        .parse()
        .map_err(|_| RenderError::BadQuantity { id: delivery_id.to_string(), quantity: quantity.to_string() })?;
    let mut out: Vec<u8> = Vec::with_capacity(600);
    let str_ = |out: &mut Vec<u8>, s: &str| {
        let _ = serde_json::to_writer(&mut *out, s);
    };
    let time = |out: &mut Vec<u8>, t: crate::model::UnixTime| {
        out.push(b'"');
        push_rfc3339(out, t);
        out.push(b'"');
    };
    out.extend_from_slice(b"{\"endedAt\":");
    time(&mut out, slice.end);
    out.extend_from_slice(b",\"metadata\":{\"account\":");
    str_(&mut out, &job.account);
    out.extend_from_slice(b",\"cluster\":");
    str_(&mut out, job.key.cluster.as_str());
    out.extend_from_slice(b",\"deliveryId\":");
    str_(&mut out, delivery_id);
    out.extend_from_slice(b",\"jobId\":");
    let _ = serde_json::to_writer(&mut out, &job.key.job_id_raw);
    out.extend_from_slice(b",\"jobIdDisplay\":");
    str_(&mut out, &job.job_id);
    out.extend_from_slice(b",\"partition\":");
    str_(&mut out, &job.partition);
    out.extend_from_slice(b",\"qos\":");
    str_(&mut out, &job.qos);
    out.extend_from_slice(b",\"submit\":");
    time(&mut out, job.key.submit);
    out.extend_from_slice(b",\"tres\":");
    str_(&mut out, route.tres);
    out.extend_from_slice(b",\"user\":");
    str_(&mut out, &job.user);
    out.extend_from_slice(b"},\"quantity\":");
    let _ = serde_json::to_writer(&mut out, &quantity);
    out.extend_from_slice(b",\"sku\":");
    str_(&mut out, route.sku);
    out.extend_from_slice(b",\"startedAt\":");
    time(&mut out, slice.start);
    if !job.user.is_empty() {
        out.extend_from_slice(b",\"user\":");
        str_(&mut out, &job.user);
    }
    out.push(b'}');
    // Every piece written is UTF-8 (JSON text of UTF-8 strings, ASCII punctuation and digits).
    Ok(String::from_utf8(out).unwrap_or_default())
}

/// `UnixTime::to_rfc3339` (jiff's `Timestamp` display) for years 0000..=9999, hand-written.
fn push_rfc3339(out: &mut Vec<u8>, t: crate::model::UnixTime) {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(MIN..=MAX).contains(&t.0) {
        out.extend_from_slice(t.to_rfc3339().as_bytes());
        return;
    }
    let days = t.0.div_euclid(86_400);
    let secs = t.0.rem_euclid(86_400);
    let (y, m, d) = crate::model::civil_from_days(days);
    let two = |out: &mut Vec<u8>, v: i64| out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.push(b'Z');
}

/// The payload as the `json!` value tree (the reference [`render_payload`] writes directly).
#[cfg(test)]
pub fn render_payload_value(
    cfg: &ActivateSettings,
    job: &JobRun,
    slice: &Slice,
    delivery_id: &str,
    quantity: &str,
) -> Result<String, String> {
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
/// A payload in the stored form, read back (tests).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub allocation: String,
    pub event: Value,
}

/// Reads a payload in the stored form (tests).
#[cfg(test)]
pub fn parse_payload(text: &str) -> Result<Payload, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("stored payload is not JSON: {e}"))?;
    let allocation = v.get("allocation").and_then(Value::as_str).ok_or("stored payload has no allocation")?.to_string();
    let event = v.get("event").filter(|e| e.is_object()).ok_or("stored payload has no event")?.clone();
    Ok(Payload { allocation, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterName, JobKey, UnixTime};

    fn cfg() -> ActivateSettings {
        let text = "[sinks.activate]\norganization = \"acme\"\ndefault_sku = \"standard-compute\"\n\
                    [sinks.activate.partition_sku]\ngpu = \"gpu-compute\"\n[sinks.activate.account_allocation]\nresearch-team = \"allocation-oid-12345\"\n";
        super::super::config::from_config_text(text)
    }

    fn job(account: &str, partition: &str) -> JobRun {
        let key = JobKey {
            cluster: ClusterName::new("mycluster").unwrap(),
            job_id_raw: 4242,
            submit: UnixTime(1_768_902_000),
        };
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

    proptest::proptest! {
        /// The hand-written JSON is byte for byte what serde_json writes for the same event.
        #[test]
        fn direct_writer_matches_serde_json(
            user in "\\PC{0,12}", account in "[a-z\"\\\\ é\u{1}-]{0,10}", qos in "\\PC{0,6}", job_id in "[0-9_+\\[\\]-]{1,12}",
            raw in proptest::prelude::any::<u32>(), submit in 0i64..4_000_000_000, len in 0i64..1_000_000, q in 0u64..10_000_000_000,
        ) {
            let mut j = job(&account, "gpu");
            j.user = user;
            j.qos = qos;
            j.job_id = job_id;
            j.key.job_id_raw = u64::from(raw);
            j.key.submit = UnixTime(submit);
            let slice = Slice { start: UnixTime(submit), end: UnixTime(submit + len), quantity: 0 };
            let quantity = crate::meter::units::Unit::HOURS.format(u128::from(q));
            let mut c = cfg();
            c.default_allocation = Some("default-alloc".into());
            proptest::prop_assert_eq!(
                render_payload(&c, &j, &slice, "sl:activate:x:1:2:3-4", &quantity).unwrap(),
                render_payload_value(&c, &j, &slice, "sl:activate:x:1:2:3-4", &quantity).unwrap()
            );
        }
    }
}
