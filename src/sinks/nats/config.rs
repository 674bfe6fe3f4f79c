//! `[sinks.nats]`: the section as written, and its pure validation (every problem names its key
//! and the fix). No secret is a config value: a password, token, nkey seed or creds file is read
//! from the environment or a file when the sink is built, and a server address holding
//! credentials (`nats://user:pass@host`) is refused without being printed.

use std::path::PathBuf;

use crate::validate::{push, Problems};

/// The section as `config example` shows it.
pub const EXAMPLE: &str = r#"# [sinks.nats]                          # job start/stop events on a NATS JetStream subject (cc-slurm-adapter's feed)
# url = "nats://127.0.0.1:4222"         # or a cluster's servers: ["nats://n1:4222", "nats://n2:4222"]
# subject = "slurm.jobs"                # where each event is published (no wildcards)
# stream = "SLURM_JOBS"                 # the JetStream stream capturing the subject: nats stream add SLURM_JOBS --subjects slurm.jobs --defaults
# format = "json"                       # json (one object per event) or line-protocol (cc-slurm-adapter's)
# hostname = "head1"                    # line-protocol's hostname tag (default: this machine's name)
# timeout_secs = 10                     # connecting, each batch's acks, each look-up read
# # Auth, one way at most (default: a token from env SLURM_LEDGER_NATS_TOKEN when set, else none):
# # user = "slurm-ledger"               # password from env SLURM_LEDGER_NATS_PASSWORD or password_file
# # password_file = "/etc/slurm-ledger/nats.password"  # mode 0600
# # token_file = "/etc/slurm-ledger/nats.token"        # or env SLURM_LEDGER_NATS_TOKEN
# # nkey_seed_file = "/etc/slurm-ledger/nats.nk"       # a user nkey seed (SU…); or env SLURM_LEDGER_NATS_NKEY_SEED
# # creds_file = "/etc/slurm-ledger/nats.creds"        # a user JWT and seed (`nsc generate creds`)
"#;

/// The environment variables the sink reads its secrets from (they win over the files).
pub const ENV_PASSWORD: &str = "SLURM_LEDGER_NATS_PASSWORD";
pub const ENV_TOKEN: &str = "SLURM_LEDGER_NATS_TOKEN";
pub const ENV_NKEY_SEED: &str = "SLURM_LEDGER_NATS_NKEY_SEED";
pub const ENV_CREDS: &str = "SLURM_LEDGER_NATS_CREDS";

/// `url`: one server or a cluster's list.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum RawUrls {
    One(String),
    Many(Vec<String>),
}

/// `[sinks.nats]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    pub url: Option<RawUrls>,
    pub subject: Option<String>,
    pub stream: Option<String>,
    pub format: Option<String>,
    pub hostname: Option<String>,
    pub timeout_secs: Option<i64>,
    pub user: Option<String>,
    pub password_file: Option<String>,
    pub token_file: Option<String>,
    pub nkey_seed_file: Option<String>,
    pub creds_file: Option<String>,
}

/// What a message's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One JSON object per event (see the module doc of `sinks::nats`).
    Json,
    /// cc-slurm-adapter's InfluxDB line: `job,function=start_job,… event="<JSON>" <ns>`.
    LineProtocol,
}

/// How the sink proves who it is. Secrets are not here: only where they are read from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Auth {
    /// Nothing configured: a token from env `SLURM_LEDGER_NATS_TOKEN` when it is set, else none.
    Default,
    UserPassword {
        user: String,
        password_file: Option<PathBuf>,
    },
    Token {
        token_file: PathBuf,
    },
    Nkey {
        seed_file: PathBuf,
    },
    Creds {
        file: PathBuf,
    },
}

/// `[sinks.nats]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NatsSettings {
    /// Server addresses, each `nats://host:port`.
    pub servers: Vec<String>,
    pub subject: String,
    pub stream: String,
    pub format: Format,
    /// The line-protocol `hostname` tag; `None`: this machine's name, read when the sink is built.
    pub hostname: Option<String>,
    pub timeout_secs: u64,
    pub auth: Auth,
}

const KEY: &str = "sinks.nats";

/// The default server.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// Validates the section.
pub fn validate(n: RawNats, problems: &mut Problems) -> NatsSettings {
    let key = |k: &str| format!("{KEY}.{k}");
    let urls = match n.url {
        None => vec![DEFAULT_URL.to_string()],
        Some(RawUrls::One(u)) => vec![u],
        Some(RawUrls::Many(v)) if v.is_empty() => {
            push(problems, key("url"), "is an empty list; give a server such as \"nats://127.0.0.1:4222\"");
            Vec::new()
        }
        Some(RawUrls::Many(v)) => v,
    };
    let servers = urls
        .iter()
        .filter_map(|u| match server_address(u) {
            Ok(s) => Some(s),
            Err(why) => {
                push(problems, key("url"), why);
                None
            }
        })
        .collect();
    let subject = match n.subject {
        None => {
            push(problems, key("subject"), "is missing; give the subject events are published on, e.g. \"slurm.jobs\"");
            String::new()
        }
        Some(s) => {
            if let Err(why) = check_subject(&s) {
                push(problems, key("subject"), why);
            }
            s
        }
    };
    let stream = match n.stream {
        None => {
            push(
                problems,
                key("stream"),
                "is missing; name the JetStream stream that captures the subject, e.g. \"SLURM_JOBS\" \
                 (create it with `nats stream add SLURM_JOBS --subjects <subject> --defaults`)",
            );
            String::new()
        }
        Some(s) => {
            if let Err(why) = check_stream_name(&s) {
                push(problems, key("stream"), why);
            }
            s
        }
    };
    let format = match n.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("line-protocol") => Format::LineProtocol,
        Some(f) => {
            push(problems, key("format"), format!("{f:?} is not a format; use \"json\" or \"line-protocol\""));
            Format::Json
        }
    };
    let hostname = match n.hostname {
        Some(h) if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == '=') => {
            push(
                problems,
                key("hostname"),
                format!("{h:?} is not a host name; give one such as \"head1\" or remove the key"),
            );
            None
        }
        other => other,
    };
    let timeout_secs = match n.timeout_secs {
        None => 10,
        Some(t) if (1..=600).contains(&t) => t as u64,
        Some(t) => {
            push(problems, key("timeout_secs"), format!("{t} is out of range; give 1 to 600 seconds"));
            10
        }
    };
    let auth = auth(problems, n.user, n.password_file, n.token_file, n.nkey_seed_file, n.creds_file);
    NatsSettings { servers, subject, stream, format, hostname, timeout_secs, auth }
}

/// The one way to authenticate the section names (at most one), with its files absolute.
fn auth(
    problems: &mut Problems,
    user: Option<String>,
    password_file: Option<String>,
    token_file: Option<String>,
    nkey_seed_file: Option<String>,
    creds_file: Option<String>,
) -> Auth {
    let key = |k: &str| format!("{KEY}.{k}");
    let mut file = |k: &str, v: Option<String>| -> Option<PathBuf> {
        let p = PathBuf::from(v?);
        if !p.is_absolute() {
            push(problems, key(k), format!("{} is relative; give an absolute path", p.display()));
        }
        Some(p)
    };
    let password_file = file("password_file", password_file);
    let token_file = file("token_file", token_file);
    let seed_file = file("nkey_seed_file", nkey_seed_file);
    let creds = file("creds_file", creds_file);
    let user = match user {
        Some(u) if u.trim().is_empty() || u.chars().any(char::is_whitespace) => {
            push(problems, key("user"), format!("{u:?} is not a NATS user name; give one such as \"slurm-ledger\""));
            None
        }
        other => other,
    };
    let named: Vec<&str> = [
        user.as_ref().map(|_| "user"),
        token_file.as_ref().map(|_| "token_file"),
        seed_file.as_ref().map(|_| "nkey_seed_file"),
        creds.as_ref().map(|_| "creds_file"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if named.len() > 1 {
        push(
            problems,
            key(named[1]),
            format!("is set with {}: give one way to authenticate and remove the other keys", named[0]),
        );
    }
    if password_file.is_some() && user.is_none() {
        push(problems, key("password_file"), "is set without `user`: give the user name the password belongs to");
    }
    match (user, token_file, seed_file, creds) {
        (Some(user), _, _, _) => Auth::UserPassword { user, password_file },
        (None, Some(token_file), _, _) => Auth::Token { token_file },
        (None, None, Some(seed_file), _) => Auth::Nkey { seed_file },
        (None, None, None, Some(file)) => Auth::Creds { file },
        (None, None, None, None) => Auth::Default,
    }
}

/// `nats://host[:port]` (port 4222 when left out) → `nats://host:port`. A URL holding credentials
/// is refused without being printed (it holds a secret).
pub fn server_address(url: &str) -> Result<String, String> {
    let u = url.trim();
    let Some(rest) = u.strip_prefix("nats://") else {
        let shown = if u.contains('@') { "a URL holding credentials".to_string() } else { format!("{u:?}") };
        return Err(format!(
            "{shown} is not a NATS server address; write it as \"nats://host:4222\" (tls:// is not supported yet)"
        ));
    };
    if rest.contains('@') {
        return Err("holds credentials (user:password@ or token@): remove them and give them as `user` with \
                    env SLURM_LEDGER_NATS_PASSWORD or `password_file`, or as `token_file` / env SLURM_LEDGER_NATS_TOKEN"
            .to_string());
    }
    let rest = rest.trim_end_matches('/');
    let bad = || format!("{u:?} is not a NATS server address; write it as \"nats://host:4222\"");
    if rest.is_empty() || rest.contains(['/', '?', '#']) || rest.contains(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        // A bracketed IPv6 literal without a port: `[::1]`.
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (rest, 4222),
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(format!("nats://{host}:{port}"))
}

/// A subject to publish on: tokens separated by `.`, none empty, no wildcard (`*`, `>`), no
/// white space or control character.
pub fn check_subject(s: &str) -> Result<(), String> {
    let fix = "write it as dot-separated tokens such as \"slurm.jobs\"";
    if s.is_empty() {
        return Err(format!("is empty; {fix}"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} holds white space or a control character; {fix}"));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("{s:?} has an empty token (a leading, trailing or doubled `.`); {fix}"));
    }
    if s.split('.').any(|t| t == "*" || t == ">" || t.contains(['*', '>'])) {
        return Err(format!("{s:?} holds a wildcard (`*` or `>`): events are published on one subject; {fix}"));
    }
    Ok(())
}

/// A JetStream stream name: no white space, `.`, `*`, `>`, path separators or control characters.
pub fn check_stream_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty; name the stream, e.g. \"SLURM_JOBS\"".to_string());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')) {
        return Err(format!(
            "{s:?} is not a JetStream stream name (no white space, '.', '*', '>', '/' or '\\'); e.g. \"SLURM_JOBS\""
        ));
    }
    Ok(())
}

/// Whether a stream's subject filter (which may hold `*` and `>`) captures a concrete subject.
pub fn captures(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
