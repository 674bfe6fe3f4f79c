//! waldur-site-agent's YAML config → the `[sinks.waldur]` table that reports the same usage
//! (`slurm-ledger migrate waldur-site-agent`): the Waldur sink's knowledge of its predecessor
//! (contracts.md §2). It owns which offerings can be taken over (Slurm reporting with at least one
//! `usage` component), how each of their keys maps, and why every other key is not carried over.
//!
//! Pure: YAML text in, TOML text and notes out; no file, no clock, no environment.
//! Invariants:
//! - No secret of the YAML is in the output or an error. Only carried values are printed
//!   (addresses, UUIDs, the zone, components); `waldur_api_token`, `oidc_client_secret`, LDAP's
//!   `bind_password` and every key not carried over are named, never shown, and a syntax error's
//!   text is scrubbed of secret-looking values.
//! - Every key is carried over, used to choose the offerings, or named with the reason.
//! - A printed table validates as it is, except for what it lists "to fill in" (a placeholder that
//!   `config check` then refuses by its key).

use serde_yaml_ng::{Mapping, Value};

use super::amount::UnitFactor;
use super::config::is_uuid;
use super::{ENV_OIDC_SECRET, ENV_TOKEN};

/// Where the printed table expects the token (the site agent's `waldur_api_token`).
pub const TOKEN_FILE: &str = "/etc/slurm-ledger/waldur.token";
/// Where the printed table expects the OIDC client secret (the site agent's `oidc_client_secret`).
pub const OIDC_SECRET_FILE: &str = "/etc/slurm-ledger/waldur-oidc.secret";

/// The site agent's OIDC client credentials, used when `waldur_api_token` is blank.
const OIDC_KEYS: &[&str] = &["oidc_token_url", "oidc_client_id", "oidc_client_secret"];
const OIDC_UNUSED_TOKEN: &str =
    "OIDC client credentials: not used, as waldur_api_token is set (the site agent uses OIDC only without a token)";
const OIDC_UNUSED_NO_URL: &str = "OIDC client credentials: not used without oidc_token_url";

const ALLOCATION_SYNC: &str =
    "allocation sync's (issue: allocation sync): keep the site agent's order_process and membership_sync modes for it";
const MONITORING: &str =
    "the site agent's own monitoring; slurm-ledger logs to stderr, and `status` shows what needs a hand";
const LOG_SHIPPING: &str = "the site agent ships its logs to Waldur; slurm-ledger's go to stderr (cron mail, journald)";
const ORDER_ERRORS: &str = "details of failed orders sent to Waldur: allocation sync's (issue: allocation sync)";
const EVENTS: &str =
    "the site agent's event transport (STOMP) for orders and membership; slurm-ledger reads its ledger";
const VERIFY_SSL: &str = "slurm-ledger always verifies TLS; for a site CA give ca_bundle";
const BIN_PATH: &str = "where the Slurm commands are: the ledger's [slurm] bin_dir";
const TARGET: &str =
    "the site agent's mapping onto other Waldur components; slurm-ledger reports each component as its TRES";
const COMPONENT_FIELD: &str = "fields of Waldur's offering component (set in Waldur), not of reporting";
const UNKNOWN: &str = "unknown to slurm-ledger; ignored";

/// Fields of a `backend_components` entry that describe Waldur's offering component.
const OFFERING_COMPONENT_FIELDS: &[&str] = &[
    "description",
    "min_value",
    "max_value",
    "max_available_limit",
    "default_limit",
    "limit_period",
    "article_code",
    "is_boolean",
    "is_prepaid",
    "min_prepaid_duration",
    "max_prepaid_duration",
    "prepaid_duration_step",
    "min_renewal_duration",
    "max_renewal_duration",
    "renewal_duration_step",
];

/// Keys whose values are never shown, even scrubbed from a parser's message (by substring of the
/// key: `waldur_api_token`, `oidc_client_secret`, `bind_password`, `sentry_dsn`, …).
const SECRET_WORDS: &[&str] = &["token", "secret", "password", "passwd", "dsn", "key"];

/// Why the YAML cannot be read as waldur-site-agent's config. Messages name the fix; the caller
/// names the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SiteAgentError {
    #[error(
        "is not valid YAML: line {line}, column {column}: {message}; fix it there (the site agent reads the same YAML)"
    )]
    Syntax { line: usize, column: usize, message: String },
    #[error("is not valid YAML: {message}")]
    Yaml { message: String },
    #[error(
        "is not waldur-site-agent's config: {found}; give the YAML its `-c/--config` takes, with an `offerings:` list"
    )]
    NotAConfig { found: &'static str },
    #[error("has no offerings: {found}; give the YAML with the offerings to report (`offerings:`, a list)")]
    NoOfferings { found: &'static str },
}

/// A key not carried over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCarried {
    /// Its path in the YAML, from the top or from its offering (`backend_settings.ldap`).
    pub key: String,
    pub reason: String,
}

/// An offering that slurm-ledger cannot report, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub uuid: Option<String>,
    pub reason: String,
}

/// One offering's `[sinks.waldur]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    /// `waldur_offering_uuid`, when given.
    pub uuid: Option<String>,
    /// `backend_settings.cluster_name`, when given.
    pub cluster: Option<String>,
    /// The table (TOML, with `#` comments), ending in a newline.
    pub table: String,
    /// What the table holds a placeholder for, or carries wrongly: the table is not valid until done.
    pub fill_in: Vec<String>,
    /// What to do by hand besides pasting the table (the token).
    pub steps: Vec<String>,
    pub not_carried: Vec<NotCarried>,
}

/// The whole YAML, translated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Translation {
    /// The offerings slurm-ledger can report, in the YAML's order.
    pub fragments: Vec<Fragment>,
    pub refused: Vec<Refused>,
    /// Top-level keys not carried over.
    pub not_carried: Vec<NotCarried>,
}

impl Translation {
    /// The offering named `which` (its name, or its UUID with or without dashes).
    pub fn find(&self, which: &str) -> Option<&Fragment> {
        let norm = |u: &str| u.replace('-', "").to_ascii_lowercase();
        self.fragments
            .iter()
            .find(|f| f.name == which)
            .or_else(|| self.fragments.iter().find(|f| f.uuid.as_deref().is_some_and(|u| norm(u) == norm(which))))
    }

    /// The refused offering named `which` (name or UUID), to say why it cannot be chosen.
    pub fn find_refused(&self, which: &str) -> Option<&Refused> {
        self.refused.iter().find(|r| r.name == which || r.uuid.as_deref() == Some(which))
    }

    /// The output: a header of `#` notes (the switch, what is not carried over), then each chosen
    /// fragment. `only`: one fragment alone (`--offering`), else all of them. `source` names the
    /// YAML in the header. As TOML it is one config fragment when it holds one table.
    pub fn render(&self, source: &str, only: Option<&Fragment>) -> String {
        let chosen: Vec<&Fragment> = match only {
            Some(f) => vec![f],
            None => self.fragments.iter().collect(),
        };
        let mut out = String::new();
        push(&mut out, &format!("# [sinks.waldur] for slurm-ledger, from waldur-site-agent's config {source}"));
        push(&mut out, "# (slurm-ledger migrate waldur-site-agent; the lines starting with # are notes).");
        if chosen.is_empty() {
            push(&mut out, "#");
            push(&mut out, "# No offering of this YAML can be reported by slurm-ledger (why: below).");
        } else if chosen.len() > 1 {
            push(&mut out, "#");
            push(
                &mut out,
                "# slurm-ledger reports ONE Waldur offering per config (one [sinks.waldur] table per ledger).",
            );
            push(
                &mut out,
                &format!(
                    "# This YAML has {} offerings it can report, each below as its own fragment: put each in the",
                    chosen.len()
                ),
            );
            push(
                &mut out,
                "# config of the slurm-ledger that collects its cluster, or print one alone with --offering NAME|UUID.",
            );
        }
        if !chosen.is_empty() {
            push(&mut out, "#");
            push(&mut out, "# The switch:");
            push(&mut out, "#   1. stop waldur-site-agent's `report` mode (both would set the same month totals); its");
            push(
                &mut out,
                "#      order_process and membership_sync modes go on (slurm-ledger does not sync allocations);",
            );
            push(&mut out, "#   2. the steps of each offering below (the token or client secret), and paste its table into the config;");
            push(&mut out, "#   3. slurm-ledger config check, then slurm-ledger deliver --dry-run.");
            push(
                &mut out,
                "# Totals may differ from the site agent's: it counted each job's whole Elapsed in every month the",
            );
            push(
                &mut out,
                "# job touched, slurm-ledger cuts runs at month boundaries. A total lower than Waldur's is held and",
            );
            push(&mut out, "# shown by `status` (allow_decrease = true lowers it).");
        }
        let refused: &[Refused] = if only.is_some() { &[] } else { &self.refused };
        if !refused.is_empty() || !self.not_carried.is_empty() {
            push(&mut out, "#");
            push(&mut out, "# Not carried over:");
            for r in refused {
                let text = format!("offering {:?}{}: {}", r.name, uuid_text(r.uuid.as_deref()), r.reason);
                comment(&mut out, "#   ", "#     ", &text);
            }
            for (keys, reason) in grouped(&self.not_carried) {
                comment(&mut out, "#   ", "#     ", &format!("{keys}: {reason}"));
            }
        }
        for f in chosen {
            push(&mut out, "");
            push(
                &mut out,
                &format!(
                    "# --- offering {:?}{}: put this in the config of the slurm-ledger that collects its cluster{}",
                    f.name,
                    uuid_text(f.uuid.as_deref()),
                    f.cluster.as_ref().map_or(String::new(), |c| format!(" ([slurm] clusters = [{}])", toml_str(c)))
                ),
            );
            push(&mut out, "# (the sink reports the usage of every cluster that ledger collects).");
            if !f.fill_in.is_empty() {
                push(&mut out, "# To fill in (the table is not valid until then):");
                for p in &f.fill_in {
                    comment(&mut out, "#   - ", "#     ", p);
                }
            }
            if !f.steps.is_empty() {
                push(&mut out, "# Steps:");
                for s in &f.steps {
                    comment(&mut out, "#   - ", "#     ", s);
                }
            }
            if !f.not_carried.is_empty() {
                push(&mut out, "# Not carried over:");
                for (keys, reason) in grouped(&f.not_carried) {
                    comment(&mut out, "#   ", "#     ", &format!("{keys}: {reason}"));
                }
            }
            push(&mut out, f.table.trim_end_matches('\n'));
        }
        out
    }

    /// Whether the chosen fragments (all, or `only`) hold something to fill in.
    pub fn needs_fill_in(&self, only: Option<&Fragment>) -> bool {
        match only {
            Some(f) => !f.fill_in.is_empty(),
            None => self.fragments.iter().any(|f| !f.fill_in.is_empty()),
        }
    }
}

fn push(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

fn uuid_text(uuid: Option<&str>) -> String {
    match uuid {
        Some(u) => format!(" (uuid {u})"),
        None => " (uuid not set)".into(),
    }
}

/// Keys with the same reason together, in the order first seen; keys under one parent as
/// `parent.{a, b}`.
fn grouped(notes: &[NotCarried]) -> Vec<(String, &str)> {
    let mut out: Vec<(Vec<&str>, &str)> = Vec::new();
    for n in notes {
        match out.iter_mut().find(|(_, r)| *r == n.reason) {
            Some((keys, _)) => keys.push(&n.key),
            None => out.push((vec![&n.key], &n.reason)),
        }
    }
    let join = |keys: Vec<&str>| {
        let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
        for k in keys {
            let (parent, leaf) = k.rsplit_once('.').unwrap_or(("", k));
            match parts.iter_mut().find(|(p, _)| *p == parent) {
                Some((_, leaves)) => leaves.push(leaf),
                None => parts.push((parent, vec![leaf])),
            }
        }
        let shown: Vec<String> = parts
            .into_iter()
            .map(|(p, leaves)| match (p, leaves.as_slice()) {
                ("", _) => leaves.join(", "),
                (p, [one]) => format!("{p}.{one}"),
                (p, _) => format!("{p}.{{{}}}", leaves.join(", ")),
            })
            .collect();
        shown.join(", ")
    };
    out.into_iter().map(|(keys, r)| (join(keys), r)).collect()
}

/// `text` as `#` comment lines of at most 100 columns: the first after `first`, the others
/// after `next` (words are not split).
fn comment(out: &mut String, first: &str, next: &str, text: &str) {
    let mut cur = first.to_string();
    let mut empty = true;
    for word in text.split(' ') {
        if !empty && cur.chars().count() + 1 + word.chars().count() > 100 {
            out.push_str(&cur);
            out.push('\n');
            cur = next.to_string();
            empty = true;
        }
        if !empty {
            cur.push(' ');
        }
        cur.push_str(word);
        empty = false;
    }
    out.push_str(&cur);
    out.push('\n');
}

/// What applies to every offering: the top-level keys it carries.
struct Globals<'a> {
    timezone: Option<String>,
    reporting_periods: Option<&'a Value>,
}

/// Reads waldur-site-agent's config and translates each offering.
pub fn translate(text: &str) -> Result<Translation, SiteAgentError> {
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| syntax(&e, text))?;
    doc.apply_merge().map_err(|e| syntax(&e, text))?;
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Err(SiteAgentError::NotAConfig { found: "the file is empty" }),
        _ => return Err(SiteAgentError::NotAConfig { found: "its top level is not a mapping of keys" }),
    };
    let mut t = Translation::default();
    let mut g = Globals { timezone: None, reporting_periods: None };
    let mut offerings = None;
    for (k, v) in &top {
        let key = key_text(k);
        let why = match key.as_str() {
            "offerings" => {
                offerings = Some(v);
                continue;
            }
            "timezone" => {
                g.timezone = scalar_text(v).filter(|z| !z.is_empty());
                continue;
            }
            "reporting_periods" => {
                g.reporting_periods = Some(v);
                continue;
            }
            "sentry_dsn" | "elastic_apm_server_url" => MONITORING,
            "log_shipping" => LOG_SHIPPING,
            "expose_backend_error_details" => ORDER_ERRORS,
            _ => UNKNOWN,
        };
        t.not_carried.push(NotCarried { key, reason: why.into() });
    }
    let list = match offerings {
        None => return Err(SiteAgentError::NoOfferings { found: "no `offerings` key" }),
        Some(Value::Sequence(s)) if s.is_empty() => {
            return Err(SiteAgentError::NoOfferings { found: "`offerings` is an empty list" })
        }
        Some(Value::Sequence(s)) => s,
        Some(Value::Null) => return Err(SiteAgentError::NoOfferings { found: "`offerings` is empty" }),
        Some(_) => return Err(SiteAgentError::NoOfferings { found: "`offerings` is not a list" }),
    };
    for (i, o) in list.iter().enumerate() {
        let Value::Mapping(o) = o else {
            t.refused.push(Refused {
                name: format!("#{}", i + 1),
                uuid: None,
                reason: "not a mapping of keys; not read".into(),
            });
            continue;
        };
        match offering(o, i, &g) {
            Ok(f) => t.fragments.push(f),
            Err(r) => t.refused.push(r),
        }
    }
    Ok(t)
}

/// A syntax error, with its place and without any secret-looking value of the text.
fn syntax(e: &serde_yaml_ng::Error, text: &str) -> SiteAgentError {
    let mut message = e.to_string();
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(i) = message.find(&suffix) {
            message.replace_range(i..i + suffix.len(), "");
        }
    }
    for secret in secret_values(text) {
        message = message.replace(&secret, "<redacted>");
    }
    match e.location() {
        Some(loc) => SiteAgentError::Syntax { line: loc.line(), column: loc.column(), message },
        None => SiteAgentError::Yaml { message },
    }
}

/// The values written after a secret-looking key (`key: value`), as they may appear in a message.
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("- ");
        let Some((key, value)) = line.split_once(':') else { continue };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'').to_ascii_lowercase();
        if !SECRET_WORDS.iter().any(|w| key.contains(w)) {
            continue;
        }
        let value = value.trim();
        let value = match value.find(" #") {
            Some(i) => &value[..i],
            None => value,
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if value.len() >= 3 {
            out.push(value.to_string());
        }
    }
    // The longest first, so a secret that contains another is replaced whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

fn key_text(k: &Value) -> String {
    scalar_text(k).unwrap_or_else(|| "(a key that is not text)".into())
}

/// A scalar as text (strings trimmed); `None` for null, lists and mappings.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_text(&t.value),
        _ => None,
    }
}

/// A non-empty text value of a mapping.
fn text_of(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).and_then(scalar_text).filter(|s| !s.is_empty())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it can be, else quoted (`"gres/gpu"`).
fn toml_key(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        s.to_string()
    } else {
        toml_str(s)
    }
}

/// One offering: its fragment, or why it cannot be reported.
fn offering(o: &Mapping, index: usize, g: &Globals<'_>) -> Result<Fragment, Refused> {
    let name = text_of(o, "name").unwrap_or_else(|| format!("#{}", index + 1));
    let uuid = text_of(o, "waldur_offering_uuid");
    let refuse = |reason: String| Refused { name: name.clone(), uuid: uuid.clone(), reason };

    // Which offerings report Slurm usage: reporting_backend, else backend_type (default slurm).
    let (backend_key, backend) = match text_of(o, "reporting_backend") {
        Some(b) => ("reporting_backend", b),
        None => ("backend_type", text_of(o, "backend_type").unwrap_or_else(|| "slurm".into())),
    };
    if backend != "slurm" {
        return Err(refuse(format!("{backend_key} {backend:?}: slurm-ledger reports Slurm usage only")));
    }

    let mut fill_in = Vec::new();
    let mut steps = Vec::new();
    let mut not_carried = Vec::new();
    let mut note = |key: String, reason: &str| not_carried.push(NotCarried { key, reason: reason.into() });

    // The components: the usage ones are reported; the others are named.
    let mut usage: Vec<(String, &Mapping)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    match o.get("backend_components") {
        Some(Value::Mapping(cs)) => {
            for (k, c) in cs {
                let tres = key_text(k);
                let at = match c {
                    Value::Mapping(c) => text_of(c, "accounting_type").unwrap_or_else(|| "usage".into()),
                    _ => "(not a mapping)".into(),
                };
                match (at.as_str(), c) {
                    ("usage", Value::Mapping(c)) => usage.push((tres, c)),
                    _ => others.push(format!("{tres}: {at}")),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => others.push("backend_components is not a mapping".into()),
    }
    if usage.is_empty() {
        let why = if others.is_empty() {
            "no backend_components: nothing to report".to_string()
        } else {
            format!(
                "no `usage` component ({}): `limit` components are the allocation sync's (Slurm limits), `one` \
                 is prepaid and billed by Waldur; nothing to report",
                others.join(", ")
            )
        };
        return Err(refuse(why));
    }

    // How the site agent authenticated: its token, else OIDC when oidc_token_url is set.
    let token_given = o.get("waldur_api_token").is_some_and(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    });
    let oidc_url = if token_given { None } else { text_of(o, "oidc_token_url") };

    // Every other key of the offering.
    let mut cluster = None;
    for (k, v) in o {
        let key = key_text(k);
        match key.as_str() {
            "name"
            | "waldur_api_url"
            | "waldur_api_token"
            | "waldur_offering_uuid"
            | "reporting_backend"
            | "backend_type"
            | "backend_components" => {}
            k if OIDC_KEYS.contains(&k) => match (token_given, &oidc_url) {
                (false, Some(_)) => {}
                (true, _) => note(key, OIDC_UNUSED_TOKEN),
                (false, None) => note(key, OIDC_UNUSED_NO_URL),
            },
            "username_management_backend"
            | "order_processing_backend"
            | "membership_sync_backend"
            | "resource_import_enabled"
            | "username_reconciliation_enabled" => note(key, ALLOCATION_SYNC),
            k if k.starts_with("stomp_") || k == "websocket_use_tls" => note(key, EVENTS),
            "verify_ssl" => note(key, VERIFY_SSL),
            "backend_settings" => {
                let Value::Mapping(bs) = v else { continue };
                for (bk, bv) in bs {
                    let bk = key_text(bk);
                    let full = format!("backend_settings.{bk}");
                    match bk.as_str() {
                        "cluster_name" => cluster = scalar_text(bv).filter(|c| !c.is_empty()),
                        "slurm_bin_path" => note(full, BIN_PATH),
                        _ => note(full, ALLOCATION_SYNC),
                    }
                }
            }
            _ => note(key, UNKNOWN),
        }
    }

    let mut table = String::from("[sinks.waldur]\n");
    let mut line = |s: &str| {
        table.push_str(s);
        table.push('\n');
    };

    // url
    match text_of(o, "waldur_api_url") {
        Some(u) if has_credentials(&u) => {
            line("url = \"<fill in: Waldur's API address>\"");
            fill_in
                .push("waldur_api_url carries credentials (user:password@): not copied; write url without them".into());
        }
        Some(u) => line(&format!("url = {}", toml_str(&u))),
        None => {
            line("url = \"<fill in: Waldur's API address>\"");
            fill_in.push(
                "waldur_api_url is empty: give Waldur's API address, e.g. \"https://waldur.example.org/api/\"".into(),
            );
        }
    }

    // offering_uuid
    match &uuid {
        Some(u) => {
            if !is_uuid(u) {
                fill_in.push(format!("waldur_offering_uuid {u:?} is not a UUID: copy the offering's UUID from Waldur"));
            }
            line(&format!("offering_uuid = {}", toml_str(u)));
        }
        None => {
            line("offering_uuid = \"<fill in: the offering's UUID>\"");
            fill_in.push(
                "waldur_offering_uuid is empty: give the offering's UUID (Waldur: the offering's page, or the UUID the \
                 running site agent was given)"
                    .into(),
            );
        }
    }

    // The credentials: the token, or OIDC client credentials; a secret is never copied, the table
    // points at the file it goes into.
    if let Some(token_url) = &oidc_url {
        if has_credentials(token_url) {
            line("oidc_token_url = \"<fill in: the OIDC token endpoint>\"");
            fill_in.push(
                "oidc_token_url carries credentials (user:password@): not copied; write oidc_token_url without them"
                    .into(),
            );
        } else {
            line(&format!("oidc_token_url = {}", toml_str(token_url)));
        }
        match text_of(o, "oidc_client_id") {
            Some(id) => line(&format!("oidc_client_id = {}", toml_str(&id))),
            None => {
                line("oidc_client_id = \"<fill in: the OIDC client id>\"");
                fill_in.push("oidc_client_id is empty: give the OIDC client's id".into());
            }
        }
        line(&format!(
            "oidc_client_secret_file = {}  # mode 0600; or env {ENV_OIDC_SECRET}",
            toml_str(OIDC_SECRET_FILE)
        ));
        steps.push(if text_of(o, "oidc_client_secret").is_some() {
            format!(
                "write the client secret (the YAML's oidc_client_secret, not copied here) to {OIDC_SECRET_FILE} \
                 (mode 0600), oidc_client_secret_file = {}",
                toml_str(OIDC_SECRET_FILE)
            )
        } else {
            format!("oidc_client_secret is empty: write the OIDC client's secret to {OIDC_SECRET_FILE} (mode 0600)")
        });
    } else {
        line(&format!("token_file = {}  # mode 0600; or env {ENV_TOKEN}", toml_str(TOKEN_FILE)));
        steps.push(if token_given {
            format!(
                "write the token (the YAML's waldur_api_token, not copied here) to {TOKEN_FILE} (mode 0600), \
                 token_file = {}",
                toml_str(TOKEN_FILE)
            )
        } else {
            format!(
                "waldur_api_token is empty: write a Waldur API token of the offering's service provider to \
                 {TOKEN_FILE} (mode 0600)"
            )
        });
    }

    // basis: the site agent counted ReqTRES (contracts.md §2.2, §2.10).
    line("# The site agent counted ReqTRES × Elapsed (requested); kept, so that Waldur's totals go on as they");
    line("# were counted. slurm-ledger's honest default is \"allocated\" (AllocTRES: whole-node jobs and --mem=0");
    line("# billed for what they held): change it at a month's start (then `slurm-ledger accept-terms`).");
    line("basis = \"requested\"");

    // timezone
    match &g.timezone {
        Some(z) => line(&format!("timezone = {}", toml_str(z))),
        None => {
            line("# timezone: not in the YAML, so the site agent cut months in the machine's zone; slurm-ledger's");
            line("# default is \"UTC\": set timezone = \"Area/City\" unless the machine runs in UTC.");
        }
    }

    // reporting_periods → grace
    let periods = g.reporting_periods.and_then(|v| v.as_i64());
    match (g.reporting_periods, periods) {
        (_, Some(1)) => {
            line("# reporting_periods = 1 (the current month only): a month is not reported after it ends.");
            line("grace = \"0s\"");
        }
        (None, _) | (_, Some(2)) => {
            line("# reporting_periods = 2 (the default): the site agent re-set the previous month all through the");
            line("# current one; slurm-ledger reports a month until grace after it ends (default \"7d\"; later");
            line("# changes are held and shown). A longer grace (up to \"31d\") comes closer; Waldur takes a past");
            line("# month from a staff token only.");
        }
        (Some(v), _) => {
            let shown = scalar_text(v).unwrap_or_else(|| "(not a number)".into());
            line(&format!(
                "# reporting_periods = {shown}: slurm-ledger reports a month until grace after it ends (default \"7d\");"
            ));
            line("# older months: waldur_site_load_historical_usage with a staff token.");
        }
    }

    // components: the carried fields in one order, whatever the YAML's
    for (tres, c) in &usage {
        line(&format!("[sinks.waldur.components.{}]", toml_key(tres)));
        let mut comp_note = |k: &str, why: &str| note(format!("backend_components.{tres}.{k}"), why);
        for k in c.keys() {
            let k = key_text(k);
            match k.as_str() {
                "unit_factor" | "measured_unit" | "label" | "limit" | "accounting_type" => {}
                "target_components" => comp_note(&k, TARGET),
                f if OFFERING_COMPONENT_FIELDS.contains(&f) => comp_note(&k, COMPONENT_FIELD),
                _ => comp_note(&k, UNKNOWN),
            }
        }
        match c.get("unit_factor").map(unit_factor) {
            None => {}
            Some(Ok(text)) => line(&format!("unit_factor = {text}")),
            Some(Err(e)) => {
                line("unit_factor = \"<fill in>\"");
                fill_in.push(format!("backend_components.{tres}.unit_factor {e}"));
            }
        }
        for k in ["measured_unit", "label"] {
            match c.get(k) {
                None => {}
                Some(v) => match scalar_text(v) {
                    Some(s) => line(&format!("{k} = {}", toml_str(&s))),
                    None => comp_note(k, "not text; not carried over"),
                },
            }
        }
        match c.get("limit") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => line(&format!("limit = {n}  # the allocation's, not used in reporting")),
            Some(_) => comp_note("limit", "not a number; not carried over"),
        }
        line("accounting_type = \"usage\"");
    }
    for other in others {
        let (tres, at) = other.split_once(": ").unwrap_or((other.as_str(), ""));
        let why = match at {
            "limit" => "a `limit` component: allocation sync's (Slurm limits), not reported",
            "one" => "a `one` component: prepaid, billed by Waldur; nothing to report",
            _ => "accounting_type unknown (usage, limit or one); not reported",
        };
        note(format!("backend_components.{tres}"), why);
    }

    Ok(Fragment { name, uuid, cluster, table, fill_in, steps, not_carried })
}

/// Whether a URL has a `user[:password]@` part.
fn has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@'))
}

/// `unit_factor` as TOML: a number as written, checked as the sink will check it.
fn unit_factor(v: &Value) -> Result<String, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err("is not a number; give a positive number such as 60000".into()),
    };
    UnitFactor::parse(&text)?;
    let bare = {
        let (int, frac) = text.split_once('.').unwrap_or((&text, "0"));
        !int.is_empty() && !frac.is_empty() && (int.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    };
    Ok(if bare { text } else { toml_str(&text) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Problems;

    const UUID: &str = "d42a18b6b8ba4c2bb0591b3ff8fb181d";

    /// One Slurm offering with `extra` lines in it and `top` lines above `offerings:`.
    fn yaml(top: &str, extra: &str) -> String {
        format!(
            "{top}offerings:\n  - name: \"HPC\"\n    waldur_api_url: \"https://w.example.org/api/\"\n    waldur_api_token: \"tok-SECRET-123\"\n    \
             waldur_offering_uuid: \"{UUID}\"\n    backend_type: \"slurm\"\n{extra}    backend_components:\n      cpu:\n        \
             unit_factor: 60000\n        measured_unit: \"k-Hours\"\n        accounting_type: \"usage\"\n        label: \"CPU\"\n"
        )
    }

    fn one(text: &str) -> Fragment {
        let t = translate(text).unwrap();
        assert_eq!(t.fragments.len(), 1, "{t:?}");
        t.fragments[0].clone()
    }

    /// The table as the sink reads it: no problem at all.
    fn validates(f: &Fragment) -> super::super::config::WaldurSettings {
        let table: toml::Table = toml::from_str(&f.table).unwrap();
        let raw: super::super::config::RawWaldur =
            table["sinks"]["waldur"].clone().try_into().unwrap_or_else(|e| panic!("{e}\n{}", f.table));
        let mut problems = Problems::new();
        let s = super::super::config::validate(raw, &mut problems);
        assert!(problems.is_empty(), "{problems:?}\n{}", f.table);
        s
    }

    #[test]
    fn reporting_periods_map_to_grace() {
        let grace = |top: &str| validates(&one(&yaml(top, ""))).grace_secs;
        assert_eq!(grace("reporting_periods: 1\n"), 0, "the current month only: no grace");
        assert_eq!(grace("reporting_periods: 2\n"), 7 * 86_400, "two periods: the default");
        assert_eq!(grace(""), 7 * 86_400, "absent is the site agent's default, 2");
        let f = one(&yaml("reporting_periods: 3\n", ""));
        assert_eq!(validates(&f).grace_secs, 7 * 86_400);
        assert!(f.table.contains("# reporting_periods = 3:") && f.table.contains("historical"), "{}", f.table);
    }

    #[test]
    fn the_table_carries_url_uuid_zone_basis_and_token_file() {
        let f = one(&yaml("timezone: \"Europe/Tallinn\"\n", ""));
        let s = validates(&f);
        assert_eq!(s.api_url, "https://w.example.org/api/");
        assert_eq!(s.offering_uuid, UUID);
        assert_eq!(s.timezone, "Europe/Tallinn");
        assert_eq!(s.basis, crate::meter::Basis::Requested, "the site agent's ReqTRES");
        assert_eq!(s.token_file.as_deref(), Some(std::path::Path::new(TOKEN_FILE)));
        assert!(f.fill_in.is_empty(), "{:?}", f.fill_in);
        assert!(f.steps[0].contains("write the token") && f.steps[0].contains("0600"), "{:?}", f.steps);
        // Without a zone, the table says the site agent used the machine's.
        let f = one(&yaml("", ""));
        assert!(f.table.contains("# timezone: not in the YAML"), "{}", f.table);
        assert_eq!(validates(&f).timezone, "UTC");
    }

    #[test]
    fn unit_factor_as_written_and_checked() {
        let comp = |uf: &str| {
            let text = yaml("", "").replace("unit_factor: 60000", &format!("unit_factor: {uf}"));
            one(&text)
        };
        let factor = |f: &Fragment| validates(f).components[0].unit_factor;
        assert_eq!(factor(&comp("60000")), UnitFactor::parse("60000").unwrap());
        assert_eq!(factor(&comp("0.5")), UnitFactor::parse("0.5").unwrap());
        assert_eq!(factor(&comp("\"61440\"")), UnitFactor::parse("61440").unwrap());
        for bad in ["0", "abc", "[1]"] {
            let f = comp(bad);
            assert!(f.table.contains("unit_factor = \"<fill in>\""), "{bad}: {}", f.table);
            assert!(
                f.fill_in.iter().any(|p| p.starts_with("backend_components.cpu.unit_factor")),
                "{bad}: {:?}",
                f.fill_in
            );
        }
    }

    #[test]
    fn only_usage_components_are_reported_and_the_rest_named() {
        let text = yaml("", "").replace(
            "    backend_components:\n",
            "    backend_components:\n      mem:\n        limit: 10\n        accounting_type: limit\n      \
             gpu:\n        accounting_type: one\n      \"gres/gpu\":\n        unit_factor: 1\n        \
             target_components: {gpu_hours: {factor: 60}}\n        article_code: \"G-1\"\n        colour: blue\n",
        );
        let f = one(&text);
        let s = validates(&f);
        let tres: Vec<&str> = s.components.iter().map(|c| c.tres.as_str()).collect();
        assert_eq!(tres, ["cpu", "gres/gpu"], "accounting_type absent is usage (as the sink takes it)");
        assert!(f.table.contains("[sinks.waldur.components.\"gres/gpu\"]"), "{}", f.table);
        let why = |key: &str| f.not_carried.iter().find(|n| n.key == key).map(|n| n.reason.clone()).unwrap_or_default();
        assert!(why("backend_components.mem").contains("allocation sync"));
        assert!(why("backend_components.gpu").contains("prepaid"));
        assert_eq!(why("backend_components.gres/gpu.target_components"), TARGET);
        assert_eq!(why("backend_components.gres/gpu.article_code"), COMPONENT_FIELD);
        assert_eq!(why("backend_components.gres/gpu.colour"), UNKNOWN);
    }

    #[test]
    fn offerings_that_cannot_be_reported_are_refused_with_the_reason() {
        let text = format!(
            "{}  - name: prepaid\n    backend_type: slurm\n    backend_components:\n      cpu: {{accounting_type: one}}\n      \
             gpu: {{accounting_type: limit}}\n  - name: moab\n    backend_type: moab\n    backend_components:\n      \
             deposit: {{accounting_type: usage}}\n  - name: other-reporter\n    backend_type: slurm\n    reporting_backend: mup\n  \
             - name: empty\n    backend_type: slurm\n  - just text\n",
            yaml("", "")
        );
        let t = translate(&text).unwrap();
        assert_eq!(t.fragments.len(), 1);
        let why = |n: &str| t.refused.iter().find(|r| r.name == n).map(|r| r.reason.clone()).unwrap_or_default();
        assert!(why("prepaid").contains("no `usage` component (cpu: one, gpu: limit)"), "{}", why("prepaid"));
        assert!(why("moab").contains("backend_type \"moab\""), "{}", why("moab"));
        assert!(why("other-reporter").contains("reporting_backend \"mup\""), "{}", why("other-reporter"));
        assert!(why("empty").contains("no backend_components"), "{}", why("empty"));
        assert!(why("#6").contains("not a mapping"), "{:?}", t.refused);
        let out = t.render("c.yaml", None);
        assert!(out.contains("#   offering \"moab\" (uuid not set): backend_type \"moab\""), "{out}");
    }

    #[test]
    fn unknown_and_other_keys_are_named_never_their_values() {
        let text = yaml(
            "sentry_dsn: \"https://KEY-SECRET@sentry.example.org/1\"\nfrobnicate: 42\n",
            "    oidc_client_secret: \"OIDC-SECRET\"\n    stomp_enabled: false\n    polish: true\n    \
             backend_settings:\n      cluster_name: alpha\n      ldap: {bind_password: \"LDAP-SECRET\"}\n",
        );
        let t = translate(&text).unwrap();
        let top: Vec<(&str, &str)> = t.not_carried.iter().map(|n| (n.key.as_str(), n.reason.as_str())).collect();
        assert_eq!(top, [("sentry_dsn", MONITORING), ("frobnicate", UNKNOWN)]);
        let f = &t.fragments[0];
        assert_eq!(f.cluster.as_deref(), Some("alpha"));
        let why = |key: &str| f.not_carried.iter().find(|n| n.key == key).map(|n| n.reason.as_str());
        assert_eq!(why("oidc_client_secret"), Some(OIDC_UNUSED_TOKEN));
        assert_eq!(why("stomp_enabled"), Some(EVENTS));
        assert_eq!(why("polish"), Some(UNKNOWN));
        assert_eq!(why("backend_settings.ldap"), Some(ALLOCATION_SYNC));
        let out = t.render("c.yaml", None);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(out.contains("#   frobnicate: unknown to slurm-ledger; ignored"), "{out}");
        assert!(out.contains("[slurm] clusters = [\"alpha\"]"), "{out}");
    }

    #[test]
    fn oidc_client_credentials_are_carried_over_without_the_secret() {
        let oidc = "    oidc_token_url: \"https://kc.example.org/realms/hpc/protocol/openid-connect/token\"\n    \
                    oidc_client_id: \"site-agent\"\n    oidc_client_secret: \"OIDC-SECRET-9\"\n";
        let text = yaml("", oidc).replace("\"tok-SECRET-123\"", "\"\"");
        let f = one(&text);
        let s = validates(&f);
        let o = s.oidc.as_ref().expect("oidc carried over");
        assert_eq!(o.token_url, "https://kc.example.org/realms/hpc/protocol/openid-connect/token");
        assert_eq!(o.client_id, "site-agent");
        assert_eq!(o.secret_file.as_deref(), Some(std::path::Path::new(OIDC_SECRET_FILE)));
        assert_eq!(s.token_file, None, "a token_file next to OIDC would be refused");
        assert!(f.not_carried.iter().all(|n| !n.key.starts_with("oidc_")), "{:?}", f.not_carried);
        assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
        assert!(f.steps[0].contains("write the client secret") && f.steps[0].contains("0600"), "{:?}", f.steps);
        assert!(f.steps[0].contains(OIDC_SECRET_FILE), "{:?}", f.steps);
        let out = translate(&text).unwrap().render("c.yaml", None);
        assert!(!out.contains("OIDC-SECRET-9") && !out.contains("tok-SECRET"), "{out}");

        // A token wins, as in the site agent: OIDC is not carried over, and said so.
        let f = one(&yaml("", oidc));
        let s = validates(&f);
        assert_eq!((s.oidc, s.token_file.is_some()), (None, true));
        let why = |key: &str| f.not_carried.iter().find(|n| n.key == key).map(|n| n.reason.as_str());
        assert_eq!(why("oidc_token_url"), Some(OIDC_UNUSED_TOKEN));
        let out = translate(&yaml("", oidc)).unwrap().render("c.yaml", None);
        assert!(!out.contains("OIDC-SECRET-9") && !out.contains("tok-SECRET"), "{out}");

        // No token and no token URL: a token is asked for; the client's keys are named.
        let f = one(&text.replace("https://kc.example.org/realms/hpc/protocol/openid-connect/token", ""));
        assert!(validates(&f).oidc.is_none());
        assert!(f.steps[0].contains("waldur_api_token is empty"), "{:?}", f.steps);
        let why = |key: &str| f.not_carried.iter().find(|n| n.key == key).map(|n| n.reason.as_str());
        assert_eq!(why("oidc_client_secret"), Some(OIDC_UNUSED_NO_URL));

        // No client id: a placeholder to fill in.
        let f = one(&text.replace("\"site-agent\"", "\"\""));
        assert!(f.table.contains("oidc_client_id = \"<fill in"), "{}", f.table);
        assert_eq!(f.fill_in.len(), 1, "{:?}", f.fill_in);
    }

    #[test]
    fn an_empty_uuid_or_url_is_a_placeholder_to_fill_in() {
        let text = yaml("", "").replace(UUID, "").replace("https://w.example.org/api/", "https://me:pw@w.example.org/");
        let f = one(&text);
        assert_eq!(f.fill_in.len(), 2, "{:?}", f.fill_in);
        assert!(f.table.contains("offering_uuid = \"<fill in: the offering's UUID>\""), "{}", f.table);
        assert!(!f.table.contains("pw@"), "{}", f.table);
        let table: toml::Table = toml::from_str(&f.table).unwrap();
        let mut problems = Problems::new();
        super::super::config::validate(table["sinks"]["waldur"].clone().try_into().unwrap(), &mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["sinks.waldur.url", "sinks.waldur.offering_uuid"]);
    }

    #[test]
    fn bad_input_is_named_with_its_place_and_no_secret() {
        let e = translate("timezone: UTC\n").unwrap_err();
        assert_eq!(e, SiteAgentError::NoOfferings { found: "no `offerings` key" });
        assert!(matches!(translate("").unwrap_err(), SiteAgentError::NotAConfig { .. }));
        assert!(matches!(translate("- a\n- b\n").unwrap_err(), SiteAgentError::NotAConfig { .. }));
        assert!(matches!(translate("offerings: 3\n").unwrap_err(), SiteAgentError::NoOfferings { .. }));
        let e = translate("offerings:\n  - name: x\n    waldur_api_token: \"tok-SECRET\n  - y: [\n").unwrap_err();
        let SiteAgentError::Syntax { line, column, .. } = &e else { panic!("{e:?}") };
        assert!(*line >= 3 && *column >= 1, "{e}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(e.to_string().contains(&format!("line {line}, column {column}")), "{e}");
    }

    #[test]
    fn merge_keys_are_applied() {
        let text = "defaults: &d\n  waldur_api_url: \"https://w.example.org/api/\"\n  backend_type: slurm\n  \
                    backend_components: {cpu: {unit_factor: 60000, accounting_type: usage}}\n\
                    offerings:\n  - <<: *d\n    name: a\n  - <<: *d\n    name: b\n";
        let t = translate(text).unwrap();
        assert_eq!(t.fragments.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(t.find("b").is_some() && t.find("c").is_none());
    }

    #[test]
    fn secret_values_are_found_after_secret_looking_keys() {
        let v = secret_values("a: 1\n  waldur_api_token: \"abc123\" # x\n  - bind_password: 'pw-x'\nname: token\n");
        assert_eq!(v, ["abc123", "pw-x"]);
    }
}
