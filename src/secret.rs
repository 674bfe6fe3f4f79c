//! Secrets (API keys, tokens): read from the environment or a file, never printed.
//!
//! [`Secret`]'s `Debug` and `Display` print `***`, so a secret cannot reach a log line or an
//! error message by accident; [`Secret::expose`] is the one way to its text, used only where a
//! request is built. A secret file that others can read is used, with a warning.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value, trimming surrounding whitespace (as slurm-tracker trims its key).
    pub fn new(value: &str) -> Self {
        Self(value.trim().to_string())
    }

    /// The secret's text, for building a request. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be loaded. Names where it was looked for, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what}: cannot read {path}: {source}; create it with mode 0600 holding only the key, or set {env}")]
    Read { what: String, path: PathBuf, env: String, source: std::io::Error },
    #[error("{what}: {path} is empty; write the key into it (mode 0600), or set {env}")]
    EmptyFile { what: String, path: PathBuf, env: String },
    #[error("{what}: no key given; set {env}, or name a file with `{key}` in the config")]
    Missing { what: String, env: String, key: String },
}

/// Where to look for one secret, in order: each environment variable, then the file.
#[derive(Debug, Clone)]
pub struct SecretSource<'a> {
    /// What the secret is for, in messages (`ACTIVATE API key`).
    pub what: &'a str,
    pub env: &'a [&'a str],
    pub file: Option<&'a Path>,
    /// The config key naming the file, in messages.
    pub file_key: &'a str,
}

/// Loads a secret from the environment (looked up through `env`, so tests need no globals) or
/// its file. Returns the secret and, for a file that group or others can read, a warning.
pub fn load_secret(
    src: &SecretSource<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, Option<String>), SecretError> {
    for name in src.env {
        if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
            return Ok((Secret::new(&v), None));
        }
    }
    let envs = src.env.join(" or ");
    let Some(path) = src.file else {
        return Err(SecretError::Missing { what: src.what.into(), env: envs, key: src.file_key.into() });
    };
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        what: src.what.into(),
        path: path.to_path_buf(),
        env: envs.clone(),
        source,
    })?;
    if text.trim().is_empty() {
        return Err(SecretError::EmptyFile { what: src.what.into(), path: path.to_path_buf(), env: envs });
    }
    Ok((Secret::new(&text), loose_permissions(path)))
}

/// A warning when a secret file is readable by group or others.
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "secret file {} has mode {:o}: others can read it; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("  pwt_abc.def\n");
        assert_eq!(s.expose(), "pwt_abc.def");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn env_wins_then_file_with_permission_warning() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "filekey\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = SecretSource { what: "test key", env: &["A", "B"], file: Some(&f), file_key: "k" };
        let env = |n: &str| (n == "B").then(|| "envkey".to_string());
        assert_eq!(load_secret(&src, &env).unwrap().0.expose(), "envkey");
        let (s, warn) = load_secret(&src, &no_env).unwrap();
        assert_eq!(s.expose(), "filekey");
        assert!(warn.unwrap().contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_secret(&src, &no_env).unwrap().1, None);
    }

    #[test]
    fn errors_name_the_place_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("empty");
        std::fs::write(&f, " \n").unwrap();
        let src = SecretSource { what: "test key", env: &["A"], file: Some(&f), file_key: "k" };
        let e = load_secret(&src, &no_env).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("set A"), "{e}");
        let src = SecretSource { file: None, ..src };
        let e = load_secret(&src, &no_env).unwrap_err().to_string();
        assert!(e.contains("set A") && e.contains("`k`"), "{e}");
    }
}
