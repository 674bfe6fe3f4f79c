//! `[sinks.cc_backend]`: the section as written, and its pure validation (every problem names its
//! key and the fix). The JWT is never a config value: it comes from the environment or the file
//! named by `token_file`, read when the sink is built.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::validate::{push, Problems};

/// The section as `config example` shows it.
pub const EXAMPLE: &str = r#"# [sinks.cc_backend]                    # ClusterCockpit cc-backend job starts and stops (cc-slurm-adapter's job)
# url = "https://cc.example.org"        # cc-backend's base URL (the API is under /api/)
# token_file = "/etc/slurm-ledger/cc-backend.jwt"  # mode 0600; else env SLURM_LEDGER_CC_BACKEND_TOKEN
# ignore_hosts = "^login[0-9]+$"        # regex: hosts left out of a job's resources (a job with only such hosts is not reported)
# timeout_secs = 30                     # per HTTP request
# concurrency = 4                       # requests in flight at once (1 to 64); a 429 pauses them all
# job_script = false                    # send each job's batch script in metaData.jobScript (scontrol write batch_script)
# node_states = true                    # post sinfo's node states to /api/nodestate/ each pass
# [sinks.cc_backend.gpu_pci_addrs]      # host regex -> PCI address of GPU index 0, 1, … (cc-slurm-adapter's gpuPciAddrs)
# "^gpu[0-9]+$" = ["00000000:07:00.0", "00000000:0B:00.0"]
# [sinks.cc_backend.clusters]           # Slurm cluster name -> cc-backend's cluster name (default: the same)
# mycluster = "mycluster"
"#;

/// `[sinks.cc_backend]` as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCcBackend {
    pub url: Option<String>,
    pub token_file: Option<String>,
    pub ignore_hosts: Option<String>,
    pub timeout_secs: Option<i64>,
    pub node_states: Option<bool>,
    pub job_script: Option<bool>,
    pub concurrency: Option<i64>,
    #[serde(default)]
    pub clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub gpu_pci_addrs: BTreeMap<String, Vec<String>>,
}

/// `[sinks.cc_backend]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CcBackendSettings {
    /// Base URL, without a trailing `/` or `/api`.
    pub url: String,
    pub token_file: Option<PathBuf>,
    /// A regex (checked) of hosts left out.
    pub ignore_hosts: Option<String>,
    pub timeout_secs: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Slurm cluster → cc-backend cluster.
    pub clusters: BTreeMap<String, String>,
    /// Post node states each pass.
    pub node_states: bool,
    /// Send each job's batch script in `metaData.jobScript`.
    pub job_script: bool,
    /// Host regex (checked) → PCI addresses by GPU index; the first pattern (in name order)
    /// matching a host applies.
    pub gpu_pci_addrs: BTreeMap<String, Vec<String>>,
}

impl CcBackendSettings {
    /// The name cc-backend knows a Slurm cluster by.
    pub fn cc_cluster<'a>(&'a self, slurm: &'a str) -> &'a str {
        self.clusters.get(slurm).map_or(slurm, String::as_str)
    }
}

/// Validates the section.
pub fn validate(raw: RawCcBackend, problems: &mut Problems) -> CcBackendSettings {
    let url = match raw.url {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) => {
            // The adapter's users write the API's own path too; the routes are added here.
            let u = u.trim_end_matches('/');
            u.strip_suffix("/api").unwrap_or(u).to_string()
        }
        Some(u) => {
            push(
                problems,
                "sinks.cc_backend.url",
                format!("{u:?} is not a base URL; write it as \"https://cc.example.org\""),
            );
            String::new()
        }
        None => {
            push(
                problems,
                "sinks.cc_backend.url",
                "is missing; give cc-backend's base URL, e.g. \"https://cc.example.org\"",
            );
            String::new()
        }
    };
    let token_file = raw.token_file.map(PathBuf::from);
    if let Some(p) = token_file.as_ref().filter(|p| !p.is_absolute()) {
        push(
            problems,
            "sinks.cc_backend.token_file",
            format!("{} is relative; give an absolute path such as \"/etc/slurm-ledger/cc-backend.jwt\"", p.display()),
        );
    }
    if let Some(re) = &raw.ignore_hosts {
        if let Err(e) = regex::Regex::new(re) {
            push(problems, "sinks.cc_backend.ignore_hosts", format!("{re:?} is not a regular expression: {e}"));
        }
    }
    for (from, to) in &raw.clusters {
        if to.trim().is_empty() || to.contains(char::is_whitespace) {
            push(
                problems,
                format!("sinks.cc_backend.clusters.{from}"),
                format!("maps to {to:?}; give the cluster's name in cc-backend's config (no spaces)"),
            );
        }
    }
    for (re, addrs) in &raw.gpu_pci_addrs {
        let key = format!("sinks.cc_backend.gpu_pci_addrs.{re:?}");
        if let Err(e) = regex::Regex::new(re) {
            push(problems, key.clone(), format!("{re:?} is not a regular expression: {e}"));
        }
        if addrs.is_empty() || addrs.iter().any(|a| a.trim().is_empty() || a.contains(char::is_whitespace)) {
            push(
                problems,
                key,
                "give the GPUs' PCI addresses in GRES index order, e.g. [\"00000000:07:00.0\", \"00000000:0B:00.0\"]",
            );
        }
    }
    let timeout_secs = raw.timeout_secs.unwrap_or(30);
    if !(1..=600).contains(&timeout_secs) {
        push(
            problems,
            "sinks.cc_backend.timeout_secs",
            format!("is {timeout_secs}; use 1 to 600 seconds (default 30)"),
        );
    }
    let concurrency = crate::validate::concurrency(problems, "sinks.cc_backend.concurrency", raw.concurrency);
    CcBackendSettings {
        url,
        token_file,
        ignore_hosts: raw.ignore_hosts,
        timeout_secs: timeout_secs.clamp(1, 600) as u64,
        concurrency,
        clusters: raw.clusters,
        node_states: raw.node_states.unwrap_or(true),
        job_script: raw.job_script.unwrap_or(false),
        gpu_pci_addrs: raw.gpu_pci_addrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (CcBackendSettings, Vec<String>) {
        let raw: RawCcBackend = toml::from_str(text).unwrap();
        let mut problems = Problems::new();
        let s = validate(raw, &mut problems);
        (s, problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect())
    }

    #[test]
    fn a_url_with_the_api_path_is_taken_as_its_base() {
        let (s, p) = check("url = \"https://cc.example.org/api/\"");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s.url, "https://cc.example.org");
        assert_eq!(s.cc_cluster("c1"), "c1");
    }

    #[test]
    fn every_problem_names_its_key() {
        let (_, p) = check("url = \"cc.example.org\"\nignore_hosts = \"(\"\ntimeout_secs = 0\ntoken_file = \"k\"\n[clusters]\na = \"\"\n[gpu_pci_addrs]\n\"^n(\" = [\"00000000:07:00.0\"]\n\"^m$\" = []");
        let all = p.join("\n");
        for key in [
            "sinks.cc_backend.url",
            "ignore_hosts",
            "timeout_secs",
            "token_file",
            "clusters.a",
            "gpu_pci_addrs.\"^n(\"",
            "gpu_pci_addrs.\"^m$\"",
        ] {
            assert!(all.contains(key), "{key} not named in {all}");
        }
    }
}
