//! Where the ACTIVATE API lives: the config's `host`, else `PW_PLATFORM_HOST`, else the host
//! encoded inside the API key (`pwt_<base64url(host)>.<secret>`), as slurm-tracker resolves it.

use base64::Engine;

use crate::secret::Secret;

/// Why the ACTIVATE host cannot be used. Never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the ACTIVATE host is unknown: set `host` in [sinks.activate] or PW_PLATFORM_HOST (the API key does not encode one)")]
    Unknown,
    #[error("{url:?} would send the API key in clear text; use https:// (plain http:// is allowed only for 127.0.0.1, localhost or [::1])")]
    ClearText { url: String },
}

/// Resolves the base URL (no trailing slash). `https://` is prepended to a bare host name.
pub fn resolve_host(configured: Option<&str>, env_host: Option<&str>, key: &Secret) -> Result<String, HostError> {
    let chosen = configured
        .map(str::to_string)
        .or_else(|| env_host.map(str::trim).filter(|h| !h.is_empty()).map(str::to_string));
    let host = match chosen {
        Some(h) => h,
        None => host_from_key(key).ok_or(HostError::Unknown)?,
    };
    let url =
        if host.starts_with("http://") || host.starts_with("https://") { host } else { format!("https://{host}") };
    check_transport(&url)?;
    Ok(url.trim_end_matches('/').to_string())
}

/// Basic auth sends the key with every request: plain `http://` only to this machine.
pub fn check_transport(url: &str) -> Result<(), HostError> {
    let Some(rest) = url.strip_prefix("http://") else { return Ok(()) };
    let authority = rest.split('/').next().unwrap_or("");
    let host = if authority.starts_with('[') {
        authority.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    if ["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
        Ok(())
    } else {
        Err(HostError::ClearText { url: url.to_string() })
    }
}

/// The host inside a `pwt_<base64url(host)>.<secret>` key, if it has one.
pub fn host_from_key(key: &Secret) -> Option<String> {
    let rest = key.expose().strip_prefix("pwt_")?;
    let (encoded, _secret) = rest.split_once('.')?;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = engine.decode(encoded.trim_end_matches('=')).ok()?;
    let host = String::from_utf8(bytes).ok()?;
    let ok =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '_'));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(host: &str) -> Secret {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(host);
        Secret::new(&format!("pwt_{enc}.s3cr3t"))
    }

    #[test]
    fn order_config_env_key() {
        let k = key_for("cloud.parallel.works");
        assert_eq!(resolve_host(Some("http://127.0.0.1:9/"), Some("e.org"), &k).unwrap(), "http://127.0.0.1:9");
        assert_eq!(resolve_host(None, Some("e.org"), &k).unwrap(), "https://e.org");
        assert_eq!(resolve_host(None, None, &k).unwrap(), "https://cloud.parallel.works");
    }

    #[test]
    fn key_without_host_is_a_clear_error_without_the_key() {
        let k = Secret::new("plainkey-value");
        let e = resolve_host(None, None, &k).unwrap_err().to_string();
        assert!(e.contains("PW_PLATFORM_HOST") && !e.contains("plainkey"), "{e}");
    }
}
