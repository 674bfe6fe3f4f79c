//! slurm-tracker's `config.json` → [`TrackerMapping`] → the `[sinks.activate]` TOML snippet.
//!
//! The file is `{defaultSku, defaultAllocation, partition:[{name, sku}], account:[{name,
//! allocation}]}`; any key may be missing. slurm-tracker reads it with Go's `encoding/json`,
//! which ignores unknown keys, matches keys ignoring case, lets a later duplicate win and turns
//! `null` into `""`. This reader is strict instead: every such case is an error naming the file,
//! the key and the fix, and all problems are reported at once. Entry order is kept, so the
//! rendered snippet reads like the file it came from.

use std::fmt;
use std::path::Path;

/// The mapping a slurm-tracker site configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerMapping {
    /// SKU for partitions with no entry (`defaultSku`).
    pub default_sku: Option<String>,
    /// Allocation for accounts with no entry (`defaultAllocation`).
    pub default_allocation: Option<String>,
    /// `partition[]`: (Slurm partition, SKU), in file order.
    pub partition_skus: Vec<(String, String)>,
    /// `account[]`: (Slurm account, allocation name), in file order.
    pub account_allocations: Vec<(String, String)>,
}

/// One problem with the file: where it is (`partition[1].sku`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingProblem {
    pub key: String,
    pub message: String,
}

/// Why a slurm-tracker `config.json` cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ConfigJsonError {
    #[error("cannot read slurm-tracker config {path}: {source}; pass the file the crontab's --config names (default: config.json in the cron job's working directory)")]
    Read { path: String, source: std::io::Error },
    #[error("slurm-tracker config {path} is not valid JSON: {message}; fix the syntax (slurm-tracker could not have read it either)")]
    Syntax { path: String, message: String },
    #[error("slurm-tracker config {path} has {} problem(s):\n{}", .problems.len(), .problems.iter().map(|p| format!("  - {}: {}", p.key, p.message)).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, problems: Vec<MappingProblem> },
}

/// Reads and validates a slurm-tracker `config.json`.
pub fn read_config_json(path: &Path) -> Result<TrackerMapping, ConfigJsonError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigJsonError::Read { path: shown.clone(), source })?;
    parse_config_json(&text, &shown)
}

/// Parses and validates the text of a slurm-tracker `config.json`; `path` is only for messages.
pub fn parse_config_json(text: &str, path: &str) -> Result<TrackerMapping, ConfigJsonError> {
    let doc: Json = serde_json::from_str(text)
        .map_err(|e| ConfigJsonError::Syntax { path: path.into(), message: e.to_string() })?;
    let mut problems = Vec::new();
    let mapping = validate(&doc, &mut problems);
    if problems.is_empty() {
        Ok(mapping)
    } else {
        Err(ConfigJsonError::Invalid { path: path.into(), problems })
    }
}

const TOP_KEYS: [&str; 4] = ["defaultSku", "defaultAllocation", "partition", "account"];

fn validate(doc: &Json, problems: &mut Vec<MappingProblem>) -> TrackerMapping {
    let mut out = TrackerMapping::default();
    let Json::Object(fields) = doc else {
        problem(
            problems,
            "(top level)",
            format!("is {}, expected an object {{\"defaultSku\": …, \"partition\": […], …}}", doc.kind()),
        );
        return out;
    };
    for (i, (key, value)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(k, _)| k == key) {
            problem(
                problems,
                key,
                "appears more than once (slurm-tracker used the last one silently); keep one".into(),
            );
            continue;
        }
        match key.as_str() {
            "defaultSku" => out.default_sku = string_value(value, key, problems),
            "defaultAllocation" => out.default_allocation = string_value(value, key, problems),
            "partition" => out.partition_skus = entries(value, key, "sku", problems),
            "account" => out.account_allocations = entries(value, key, "allocation", problems),
            _ => problem(problems, key, unknown_key_message(key, &TOP_KEYS)),
        }
    }
    out
}

/// `[{name, <value_key>}]` → pairs; every entry checked, duplicate names refused.
fn entries(value: &Json, key: &str, value_key: &str, problems: &mut Vec<MappingProblem>) -> Vec<(String, String)> {
    let Json::Array(items) = value else {
        problem(problems, key, format!("is {}, expected a list of {{\"name\": …, \"{value_key}\": …}}", value.kind()));
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Json::Object(fields) = item else {
            problem(problems, &at, format!("is {}, expected {{\"name\": …, \"{value_key}\": …}}", item.kind()));
            continue;
        };
        let (mut name, mut val) = (None, None);
        let (mut seen_name, mut seen_val) = (false, false);
        for (k, v) in fields {
            let here = format!("{at}.{k}");
            let (seen, slot) = if k == "name" {
                (&mut seen_name, &mut name)
            } else if k == value_key {
                (&mut seen_val, &mut val)
            } else {
                problem(problems, &here, unknown_key_message(k, &["name", value_key]));
                continue;
            };
            if *seen {
                problem(problems, &here, "appears more than once in this entry; keep one".into());
                continue;
            }
            *seen = true;
            *slot = string_value(v, &here, problems);
        }
        for (seen, k) in [(seen_name, "name"), (seen_val, value_key)] {
            if !seen {
                problem(
                    problems,
                    &format!("{at}.{k}"),
                    format!("is missing; every {key} entry needs \"name\" and \"{value_key}\""),
                );
            }
        }
        let (Some(name), Some(val)) = (name, val) else { continue };
        if let Some(first) = out.iter().position(|(n, _)| *n == name) {
            problem(
                problems,
                &format!("{at}.name"),
                format!("{name:?} is also {key}[{first}] (slurm-tracker used the last one silently); keep one entry per {key}"),
            );
            continue;
        }
        out.push((name, val));
    }
    out
}

/// A non-empty string without surrounding whitespace, or a problem.
fn string_value(value: &Json, key: &str, problems: &mut Vec<MappingProblem>) -> Option<String> {
    match value {
        Json::String(s) if s.trim().is_empty() => {
            problem(problems, key, "is empty; give it a value or remove the key".into());
            None
        }
        Json::String(s) if s.trim() != s => {
            problem(problems, key, format!("{s:?} has leading or trailing whitespace, which Slurm names and platform ids never have; remove it"));
            None
        }
        Json::String(s) => Some(s.clone()),
        other => {
            problem(
                problems,
                key,
                format!("is {}, expected a string; give it a value or remove the key", other.kind()),
            );
            None
        }
    }
}

fn unknown_key_message(key: &str, known: &[&str]) -> String {
    match known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        Some(k) => format!(
            "is not a known key; slurm-tracker matched keys ignoring case, slurm-ledger does not: rename it to \"{k}\""
        ),
        None => format!("is not a known key (known: {}); remove it or fix its spelling", known.join(", ")),
    }
}

fn problem(problems: &mut Vec<MappingProblem>, key: &str, message: String) {
    problems.push(MappingProblem { key: key.into(), message });
}

impl TrackerMapping {
    /// The `[sinks.activate]` snippet of slurm-ledger's config for this mapping and `--org`.
    ///
    /// Missing defaults are left out (TOML has no null); the two tables are always written, in
    /// the file's order, so the snippet shows where entries go. Keys that are not TOML bare keys
    /// (`gpu.a100`, `été`) are quoted, and values escaped, by the `toml` crate.
    pub fn to_ledger_toml(&self, organization: &str) -> String {
        let mut out = String::from("[sinks.activate]\n");
        out.push_str(&format!("organization = {}\n", toml_string(organization)));
        if let Some(s) = &self.default_sku {
            out.push_str(&format!("default_sku = {}\n", toml_string(s)));
        }
        if let Some(a) = &self.default_allocation {
            out.push_str(&format!("default_allocation = {}\n", toml_string(a)));
        }
        for (table, pairs) in
            [("partition_sku", &self.partition_skus), ("account_allocation", &self.account_allocations)]
        {
            out.push_str(&format!("[sinks.activate.{table}]\n"));
            for (k, v) in pairs {
                out.push_str(&format!("{} = {}\n", toml_key(k), toml_string(v)));
            }
        }
        out
    }
}

/// A TOML string literal, escaped by the `toml` crate.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when only `A-Za-z0-9_-`, else quoted by the `toml` crate. A key is always
/// one line (a name with a newline becomes `"a\nb"`, never a multi-line string, which TOML
/// does not allow as a key), so it is rendered through a one-entry table.
fn toml_key(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return k.to_owned();
    }
    let mut t = toml::Table::new();
    t.insert(k.to_owned(), toml::Value::Boolean(true));
    toml::to_string(&t)
        .ok()
        .and_then(|line| line.trim_end().strip_suffix(" = true").map(str::to_owned))
        .unwrap_or_else(|| toml_string(k))
}

/// JSON with object keys in order and duplicates kept, so they can be reported
/// (`serde_json::Value` keeps only the last of a duplicate key).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "a list",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n as f64))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Json, E> {
                Ok(Json::Number(n))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::String(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                Ok(Json::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copied from parallelworks/slurm-tracker via /work/shared/specs (see the fixture's PROVENANCE.md).
    const SAMPLE: &str = include_str!("../../tests/fixtures/slurm-tracker/config.sample.json");

    fn problems(text: &str) -> Vec<MappingProblem> {
        match parse_config_json(text, "/etc/tracker/config.json") {
            Err(ConfigJsonError::Invalid { problems, .. }) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn reads_the_sample_config_in_file_order() {
        let m = parse_config_json(SAMPLE, "config.sample.json").unwrap();
        assert_eq!(m.default_sku.as_deref(), Some("standard-compute"));
        assert_eq!(m.default_allocation.as_deref(), Some("default-allocation-oid"));
        assert_eq!(
            m.partition_skus,
            pairs(&[("compute", "standard-compute"), ("gpu", "gpu-compute"), ("highmem", "high-memory-compute")])
        );
        assert_eq!(
            m.account_allocations,
            pairs(&[
                ("research-team", "allocation-oid-12345"),
                ("engineering", "allocation-oid-67890"),
                ("data-science", "allocation-oid-abcde")
            ])
        );
    }

    #[test]
    fn every_key_may_be_missing() {
        assert_eq!(parse_config_json("{}", "c.json").unwrap(), TrackerMapping::default());
        let m = parse_config_json(r#"{"partition": [{"name": "gpu", "sku": "g"}]}"#, "c.json").unwrap();
        assert_eq!(m.partition_skus, pairs(&[("gpu", "g")]));
        assert_eq!((m.default_sku, m.default_allocation, m.account_allocations.len()), (None, None, 0));
    }

    #[test]
    fn unknown_keys_are_named_with_a_case_hint() {
        let p = problems(
            r#"{"defaultSKU": "x", "partitions": [], "account": [{"name": "a", "allocation": "b", "sku": "c"}]}"#,
        );
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["defaultSKU", "partitions", "account[0].sku"]);
        assert!(p[0].message.contains("rename it to \"defaultSku\""), "{}", p[0].message);
        assert!(p[1].message.contains("known: defaultSku, defaultAllocation, partition, account"), "{}", p[1].message);
    }

    #[test]
    fn duplicates_are_named() {
        let p = problems(
            r#"{"partition": [{"name": "gpu", "sku": "a"}, {"name": "cpu", "sku": "b"}, {"name": "gpu", "sku": "c"}],
                "account": [{"name": "x", "name": "y", "allocation": "z"}],
                "defaultSku": "s", "defaultSku": "t"}"#,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0].key, "partition[2].name");
        assert!(p[0].message.contains("\"gpu\" is also partition[0]"), "{}", p[0].message);
        assert_eq!(p[1].key, "account[0].name");
        assert_eq!(p[2].key, "defaultSku");
        assert!(p[2].message.contains("more than once"));
    }

    #[test]
    fn empty_null_and_wrong_types_are_refused() {
        let p = problems(
            r#"{"defaultSku": "", "defaultAllocation": null, "partition": {"name": "gpu"},
                "account": [{"name": " ", "allocation": 5}, {"name": "a "}, "x"]}"#,
        );
        let got: Vec<_> = p.iter().map(|p| (p.key.as_str(), p.message.split(';').next().unwrap_or(""))).collect();
        assert_eq!(
            got,
            [
                ("defaultSku", "is empty"),
                ("defaultAllocation", "is null, expected a string"),
                ("partition", "is an object, expected a list of {\"name\": …, \"sku\": …}"),
                ("account[0].name", "is empty"),
                ("account[0].allocation", "is a number, expected a string"),
                (
                    "account[1].name",
                    "\"a \" has leading or trailing whitespace, which Slurm names and platform ids never have"
                ),
                ("account[1].allocation", "is missing"),
                ("account[2]", "is a string, expected {\"name\": …, \"allocation\": …}"),
            ]
        );
    }

    #[test]
    fn errors_name_the_file() {
        let e = parse_config_json("{\"defaultSku\": \"\"}", "/opt/tracker/config.json").unwrap_err().to_string();
        assert_eq!(e, "slurm-tracker config /opt/tracker/config.json has 1 problem(s):\n  - defaultSku: is empty; give it a value or remove the key");
        let e = parse_config_json("{", "/opt/tracker/config.json").unwrap_err().to_string();
        assert!(e.starts_with("slurm-tracker config /opt/tracker/config.json is not valid JSON"), "{e}");
        let e = read_config_json(Path::new("/nonexistent/config.json")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read slurm-tracker config /nonexistent/config.json"), "{e}");
        assert!(e.contains("--config"), "{e}");
        let e = parse_config_json("[]", "c.json").unwrap_err().to_string();
        assert!(e.contains("(top level): is a list, expected an object"), "{e}");
    }

    #[test]
    fn renders_the_activate_snippet() {
        let m = parse_config_json(SAMPLE, "config.sample.json").unwrap();
        let t = m.to_ledger_toml("acme");
        assert_eq!(
            t,
            r#"[sinks.activate]
organization = "acme"
default_sku = "standard-compute"
default_allocation = "default-allocation-oid"
[sinks.activate.partition_sku]
compute = "standard-compute"
gpu = "gpu-compute"
highmem = "high-memory-compute"
[sinks.activate.account_allocation]
research-team = "allocation-oid-12345"
engineering = "allocation-oid-67890"
data-science = "allocation-oid-abcde"
"#
        );
        assert_reparses(&m, "acme", &t);
    }

    #[test]
    fn odd_names_are_quoted_and_reparse() {
        let m = TrackerMapping {
            default_sku: None,
            default_allocation: Some("alloc \"quoted\" \\ back".into()),
            partition_skus: pairs(&[("gpu.a100", "x"), ("été", "y"), ("a b", "z'q"), ("1", "n")]),
            account_allocations: pairs(&[("proj=\"x\"", "tab\there"), ("new\nline", "v")]),
        };
        let t = m.to_ledger_toml("org \"with\" quotes");
        assert!(!t.contains("default_sku"), "{t}");
        assert!(t.contains("\n1 = "), "digits are a bare key: {t}");
        assert_reparses(&m, "org \"with\" quotes", &t);
        let empty = TrackerMapping::default().to_ledger_toml("o");
        assert_eq!(empty, "[sinks.activate]\norganization = \"o\"\n[sinks.activate.partition_sku]\n[sinks.activate.account_allocation]\n");
        assert_reparses(&TrackerMapping::default(), "o", &empty);
    }

    fn assert_reparses(m: &TrackerMapping, org: &str, text: &str) {
        let v: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let a = v["sinks"]["activate"].as_table().unwrap();
        assert_eq!(a["organization"].as_str(), Some(org));
        assert_eq!(a.get("default_sku").and_then(|v| v.as_str()), m.default_sku.as_deref());
        assert_eq!(a.get("default_allocation").and_then(|v| v.as_str()), m.default_allocation.as_deref());
        for (table, want) in [("partition_sku", &m.partition_skus), ("account_allocation", &m.account_allocations)] {
            let t = a[table].as_table().unwrap();
            let mut got: Vec<(String, String)> =
                t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
            let mut want = want.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{table} in\n{text}");
        }
    }
}
