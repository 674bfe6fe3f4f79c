//! `[sinks.waldur]`: the section as written, and its pure validation (every problem names its key
//! and the fix). No secret is a config value: the API token comes from the environment or the
//! file named by `token_file`; with OIDC client credentials (`oidc_token_url`, `oidc_client_id`)
//! the client secret comes from the environment or `oidc_client_secret_file`. Both are read when
//! the sink is built. The two ways are exclusive: a `token_file` next to `oidc_*` keys is refused.
//!
//! Components follow waldur-site-agent's `backend_components`: the key is the Slurm TRES and the
//! Waldur component type; `unit_factor` is how many TRES-minutes (memory: MiB-minutes) make one
//! Waldur unit (60000: cpu-minutes → k-Hours; 61440: MiB-minutes → GiB-hours). Only components
//! with `accounting_type = "usage"` are reported; `limit`/`one` components are the allocation
//! sync's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::delivery::slices::{validate_basis, validate_running_slice, validate_zone};
use crate::meter::Basis;
use crate::validate::{parse_duration_secs, push, Problems};

use super::amount::UnitFactor;

/// The section as `config example` shows it.
pub const EXAMPLE: &str = r#"# [sinks.waldur]                        # Waldur month-to-date usage per resource and user (waldur-site-agent's report)
# url = "https://waldur.example.org/api/"  # with or without /api/
# offering_uuid = "d42a18b6b8ba4c2bb0591b3ff8fb181d"  # the offering whose resources' backend_id are Slurm accounts
# token_file = "/etc/slurm-ledger/waldur.token"  # mode 0600; else env SLURM_LEDGER_WALDUR_TOKEN
# # Or, instead of a token, OIDC client credentials (Bearer tokens from e.g. Keycloak; not with token_file):
# # oidc_token_url = "https://keycloak.example.org/realms/hpc/protocol/openid-connect/token"
# # oidc_client_id = "slurm-ledger"
# # oidc_client_secret_file = "/etc/slurm-ledger/waldur-oidc.secret"  # mode 0600; else env SLURM_LEDGER_WALDUR_OIDC_SECRET
# # oidc_scope = "openid"               # optional
# basis = "allocated"                   # allocated (AllocTRES) or requested (ReqTRES, the site agent's)
# timezone = "UTC"                      # billing months are cut in this zone (the site agent's `timezone`)
# running_slice = "15m"                 # count running jobs once this much new time accrued
# grace = "7d"                          # the previous month is still reported this long after it ends
# allow_decrease = false                # a total that would go down (re-accounted jobs) is held and shown, not posted
# timeout_secs = 30                     # per HTTP request
# concurrency = 4                       # requests in flight at once (1 to 64); a 429 pauses them all
# ca_bundle = "/etc/ssl/certs/site-ca.pem"  # extra CA for the Waldur host (TLS is always verified)
# [sinks.waldur.components.cpu]
# unit_factor = 60000                   # TRES-minutes per Waldur unit: cpu-minutes → k-Hours
# measured_unit = "k-Hours"
# accounting_type = "usage"
# [sinks.waldur.users]                  # Slurm user → Waldur username (default: the same name)
# alice = "alice@example.org"
"#;

/// One `[sinks.waldur.components.TRES]` table as written.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub unit_factor: Option<toml::Value>,
    pub measured_unit: Option<String>,
    pub accounting_type: Option<String>,
    pub label: Option<String>,
    pub limit: Option<toml::Value>,
}

/// `[sinks.waldur]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWaldur {
    pub url: Option<String>,
    pub offering_uuid: Option<String>,
    pub token_file: Option<String>,
    pub oidc_token_url: Option<String>,
    pub oidc_client_id: Option<String>,
    pub oidc_client_secret_file: Option<String>,
    pub oidc_scope: Option<String>,
    pub basis: Option<String>,
    pub timezone: Option<String>,
    pub running_slice: Option<String>,
    pub allow_decrease: Option<bool>,
    pub grace: Option<String>,
    pub timeout_secs: Option<i64>,
    pub concurrency: Option<i64>,
    pub ca_bundle: Option<String>,
    #[serde(default)]
    pub components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// A component reported to Waldur.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Component {
    /// The Slurm TRES counted, and the Waldur component type it is reported as.
    pub tres: String,
    pub unit_factor: UnitFactor,
    pub measured_unit: Option<String>,
}

/// `[sinks.waldur]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaldurSettings {
    /// The API root, always ending in `/api/`.
    pub api_url: String,
    pub offering_uuid: String,
    pub token_file: Option<PathBuf>,
    /// OIDC client credentials instead of a token.
    pub oidc: Option<OidcSettings>,
    pub basis: Basis,
    pub timezone: String,
    pub running_slice_secs: i64,
    pub allow_decrease: bool,
    /// How long after a month ends its totals are still reported (the previous month's grace).
    pub grace_secs: i64,
    pub timeout_secs: u64,
    /// Requests in flight at once (a busy month has thousands of totals, one request each).
    pub concurrency: usize,
    pub ca_bundle: Option<PathBuf>,
    /// Usage components, in TRES order.
    pub components: Vec<Component>,
    /// Slurm user → Waldur username, where they differ.
    pub users: BTreeMap<String, String>,
}

/// OIDC client credentials (RFC 6749 §4.4), validated. The secret is not here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OidcSettings {
    /// The token endpoint, http(s).
    pub token_url: String,
    pub client_id: String,
    pub secret_file: Option<PathBuf>,
    pub scope: Option<String>,
}

impl WaldurSettings {
    /// The Waldur username of a Slurm user.
    pub fn username<'a>(&'a self, slurm_user: &'a str) -> &'a str {
        self.users.get(slurm_user).map_or(slurm_user, String::as_str)
    }
}

/// `https://host/`, `https://host/api`, `https://host/api/` → `https://host/api/`. A path other
/// than `/api` is kept (a Waldur behind a prefix): `https://host/waldur/api/`.
pub fn api_root(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    if trimmed.ends_with("/api") {
        format!("{trimmed}/")
    } else {
        format!("{trimmed}/api/")
    }
}

const KEY: &str = "sinks.waldur";

/// Validates the section.
pub fn validate(w: RawWaldur, problems: &mut Problems) -> WaldurSettings {
    let key = |k: &str| format!("{KEY}.{k}");
    let api_url = match w.url {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) => {
            api_root(&u)
        }
        Some(u) => {
            push(problems, key("url"), format!("{u:?} is not a URL; write it as \"https://waldur.example.org/api/\""));
            String::new()
        }
        None => {
            push(
                problems,
                key("url"),
                "is missing; give Waldur's API address, e.g. \"https://waldur.example.org/api/\"",
            );
            String::new()
        }
    };
    let offering_uuid = match w.offering_uuid {
        Some(u) if is_uuid(&u) => u.replace('-', ""),
        Some(u) => {
            push(problems, key("offering_uuid"), format!("{u:?} is not a UUID; copy the offering's UUID from Waldur"));
            String::new()
        }
        None => {
            push(problems, key("offering_uuid"), "is missing; give the UUID of the offering to report to");
            String::new()
        }
    };
    let absolute = |problems: &mut Problems, k: &str, v: Option<String>| -> Option<PathBuf> {
        let p = PathBuf::from(v?);
        if !p.is_absolute() {
            push(problems, key(k), format!("{} is relative; give an absolute path", p.display()));
        }
        Some(p)
    };
    let token_file = absolute(problems, "token_file", w.token_file);
    let secret_file = absolute(problems, "oidc_client_secret_file", w.oidc_client_secret_file);
    let oidc = oidc(problems, w.oidc_token_url, w.oidc_client_id, secret_file, w.oidc_scope);
    if oidc.is_some() && token_file.is_some() {
        push(
            problems,
            key("token_file"),
            "is set with oidc_token_url: give one way to authenticate: remove token_file to use OIDC client \
             credentials, or the oidc_* keys to use the token",
        );
    }
    let ca_bundle = absolute(problems, "ca_bundle", w.ca_bundle);
    let basis = validate_basis(problems, &key("basis"), w.basis);
    let timezone = validate_zone(problems, &key("timezone"), w.timezone);
    let running_slice_secs = validate_running_slice(problems, &key("running_slice"), w.running_slice);
    let grace_secs = match w.grace.map(|g| parse_duration_secs(&g)) {
        None => 7 * 86_400,
        Some(Ok(n)) if (0..=3660 * 86_400).contains(&n) => n,
        Some(Ok(n)) => {
            push(problems, key("grace"), format!("is {n} s; use 0s to 3660d (default \"7d\")"));
            7 * 86_400
        }
        Some(Err(e)) => {
            push(problems, key("grace"), e);
            7 * 86_400
        }
    };
    let timeout_secs = w.timeout_secs.unwrap_or(30);
    if !(1..=600).contains(&timeout_secs) {
        push(problems, key("timeout_secs"), format!("is {timeout_secs}; use 1 to 600 seconds (default 30)"));
    }
    let concurrency = crate::validate::concurrency(problems, &key("concurrency"), w.concurrency);
    let components = components(w.components, problems);
    for (from, to) in &w.users {
        if to.trim().is_empty() {
            push(problems, key(&format!("users.{from}")), "maps to an empty name; give the Waldur username");
        }
    }
    WaldurSettings {
        api_url,
        offering_uuid,
        token_file,
        oidc,
        basis,
        timezone,
        running_slice_secs,
        allow_decrease: w.allow_decrease.unwrap_or(false),
        grace_secs,
        timeout_secs: timeout_secs.clamp(1, 600) as u64,
        concurrency,
        ca_bundle,
        components,
        users: w.users,
    }
}

/// The OIDC keys: `None` when none is given. `oidc_client_id` needs `oidc_token_url` and the
/// other way round; the other keys need both.
fn oidc(
    problems: &mut Problems,
    token_url: Option<String>,
    client_id: Option<String>,
    secret_file: Option<PathBuf>,
    scope: Option<String>,
) -> Option<OidcSettings> {
    let key = |k: &str| format!("{KEY}.{k}");
    if token_url.is_none() && client_id.is_none() && secret_file.is_none() && scope.is_none() {
        return None;
    }
    let token_url = match token_url.map(|u| u.trim().to_string()) {
        Some(u) if is_http_url(&u) => u,
        Some(u) => {
            push(
                problems,
                key("oidc_token_url"),
                format!(
                    "{u:?} is not an http(s) URL; give the token endpoint, e.g. \
                     \"https://keycloak.example.org/realms/REALM/protocol/openid-connect/token\""
                ),
            );
            String::new()
        }
        None => {
            push(
                problems,
                key("oidc_token_url"),
                "is missing, but other oidc_* keys are set; give the OIDC token endpoint, or remove the oidc_* keys \
                 to use a token",
            );
            String::new()
        }
    };
    let client_id = match client_id.map(|c| c.trim().to_string()) {
        Some(c) if !c.is_empty() => c,
        _ => {
            push(problems, key("oidc_client_id"), "is missing; give the OIDC client's id (with oidc_token_url)");
            String::new()
        }
    };
    let scope = scope.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Some(OidcSettings { token_url, client_id, secret_file, scope })
}

/// `http://host…` or `https://host…`, without whitespace.
fn is_http_url(u: &str) -> bool {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) && !u.contains(char::is_whitespace)
}

/// The usage components; at least one is needed.
fn components(raw: BTreeMap<String, RawComponent>, problems: &mut Problems) -> Vec<Component> {
    if raw.is_empty() {
        push(
            problems,
            format!("{KEY}.components"),
            "is missing; add a table per reported TRES, e.g. [sinks.waldur.components.cpu] with unit_factor = 60000",
        );
    }
    let mut out = Vec::new();
    for (tres, c) in raw {
        let key = |k: &str| format!("{KEY}.components.{tres}.{k}");
        let tres_ok = !tres.is_empty()
            && tres.len() <= 64
            && tres.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '/' | '_' | '-' | ':' | '.'));
        if !tres_ok {
            push(
                problems,
                format!("{KEY}.components.{tres}"),
                "is not a TRES name; use e.g. cpu, mem, gres/gpu, billing",
            );
        }
        let unit_factor = match c.unit_factor.as_ref().map(UnitFactor::from_toml) {
            None => UnitFactor::ONE,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                push(problems, key("unit_factor"), e);
                UnitFactor::ONE
            }
        };
        match c.accounting_type.as_deref() {
            None | Some("usage") => out.push(Component { tres, unit_factor, measured_unit: c.measured_unit }),
            Some("limit" | "one") => {}
            Some(other) => {
                push(problems, key("accounting_type"), format!("is {other:?}; use \"usage\", \"limit\" or \"one\""))
            }
        }
    }
    out
}

/// 32 hex digits, with or without the dashes of the 8-4-4-4-12 form.
pub(crate) fn is_uuid(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && (!s.contains('-') || s.split('-').map(str::len).eq([8, 4, 4, 4, 12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_roots_with_or_without_api_and_slashes() {
        for u in [
            "https://w.example.org",
            "https://w.example.org/",
            "https://w.example.org/api",
            "https://w.example.org/api/",
        ] {
            assert_eq!(api_root(u), "https://w.example.org/api/", "{u}");
        }
        // A host ending in letters of "api" is not mangled (the site agent's rstrip("/api") bug).
        assert_eq!(api_root("https://waldur.hpc-api"), "https://waldur.hpc-api/api/");
        assert_eq!(api_root("https://host/waldur/api//"), "https://host/waldur/api/");
    }

    fn problems(text: &str) -> (Vec<(String, String)>, WaldurSettings) {
        let base =
            format!("url = \"https://w.example.org/\"\noffering_uuid = \"{}\"\n", "d42a18b6b8ba4c2bb0591b3ff8fb181d");
        let raw: RawWaldur = toml::from_str(&format!("{base}{text}\n[components.cpu]\n")).unwrap();
        let mut problems = Problems::new();
        let s = validate(raw, &mut problems);
        (problems.iter().map(|p| (p.key.clone(), p.message.clone())).collect(), s)
    }

    #[test]
    fn oidc_client_credentials_are_checked() {
        let (p, s) = problems(
            "oidc_token_url = \"https://kc.example.org/realms/hpc/protocol/openid-connect/token\"\n\
             oidc_client_id = \"slurm-ledger\"\noidc_client_secret_file = \"/etc/slurm-ledger/oidc.secret\"\n\
             oidc_scope = \"openid\"",
        );
        assert!(p.is_empty(), "{p:?}");
        let o = s.oidc.unwrap();
        assert_eq!(o.client_id, "slurm-ledger");
        assert_eq!(o.secret_file.as_deref(), Some(std::path::Path::new("/etc/slurm-ledger/oidc.secret")));
        assert_eq!(o.scope.as_deref(), Some("openid"));
        assert_eq!(problems("").1.oidc, None, "no oidc key: token auth");

        let has = |p: &[(String, String)], key: &str, words: &[&str]| {
            p.iter().any(|(k, m)| k == key && words.iter().all(|w| m.contains(w)))
        };
        // Both ways at once.
        let (p, _) = problems("token_file = \"/etc/t\"\noidc_token_url = \"https://kc/token\"\noidc_client_id = \"c\"");
        assert!(has(&p, "sinks.waldur.token_file", &["remove token_file", "oidc_*"]), "{p:?}");
        assert_eq!(p.len(), 1, "{p:?}");
        // Not an http(s) URL; no client id.
        for bad in ["ftp://kc/token", "kc.example.org/token", "https://", "https://kc/to ken"] {
            let (p, _) = problems(&format!("oidc_token_url = {bad:?}"));
            assert!(has(&p, "sinks.waldur.oidc_token_url", &["not an http(s) URL", "token endpoint"]), "{bad}: {p:?}");
            assert!(has(&p, "sinks.waldur.oidc_client_id", &["is missing"]), "{bad}: {p:?}");
        }
        // A client id, or a secret file, without the token URL; a relative secret file.
        let (p, _) = problems("oidc_client_id = \"c\"\noidc_client_secret_file = \"oidc.secret\"");
        assert!(has(&p, "sinks.waldur.oidc_token_url", &["is missing", "token endpoint"]), "{p:?}");
        assert!(has(&p, "sinks.waldur.oidc_client_secret_file", &["absolute path"]), "{p:?}");
        let (p, _) = problems("oidc_token_url = \"http://kc:8080/token\"\noidc_client_id = \" \"");
        assert_eq!(p.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["sinks.waldur.oidc_client_id"]);
    }

    /// The example's OIDC alternative (commented twice) validates in place of token_file.
    #[test]
    fn the_examples_oidc_alternative_validates() {
        let text: String = EXAMPLE
            .lines()
            .filter(|l| !l.starts_with("# token_file"))
            .map(|l| l.strip_prefix("# # ").filter(|k| k.starts_with("oidc_")).or_else(|| l.strip_prefix("# ")))
            .fold(String::new(), |t, l| t + l.unwrap_or("") + "\n");
        let table: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let raw: RawWaldur = table["sinks"]["waldur"].clone().try_into().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut problems = Problems::new();
        let s = validate(raw, &mut problems);
        assert!(problems.is_empty(), "{problems:?}\n{text}");
        assert_eq!(s.oidc.map(|o| o.client_id).as_deref(), Some("slurm-ledger"));
    }

    #[test]
    fn every_problem_is_named() {
        let raw: RawWaldur = toml::from_str(
            "url = \"ftp:/x\"\noffering_uuid = \"nope\"\nbasis = \"both\"\ntimezone = \"Mars/Base\"\n\
             [components.cpu]\nunit_factor = 0\n[components.mem]\naccounting_type = \"sometimes\"\n",
        )
        .unwrap();
        let mut problems = Problems::new();
        validate(raw, &mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "sinks.waldur.url",
            "sinks.waldur.offering_uuid",
            "sinks.waldur.basis",
            "sinks.waldur.timezone",
            "sinks.waldur.components.cpu.unit_factor",
            "sinks.waldur.components.mem.accounting_type",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
    }
}
