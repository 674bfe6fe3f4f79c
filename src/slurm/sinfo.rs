//! Reader of the node states `sinfo` prints, one node a line, in the format slurm-ledger asks for
//! ([`SINFO_FORMAT`]): `name|states|A/I/O/T CPUs|allocated memory MB|GRES used|`.
//!
//! Text, not `sinfo --json`: the JSON changed shape between releases (22.05 lists nodes,
//! 23.11+ lists partition × state groups whose CPU counts are sums over the group), while
//! `--Format` with `:0` widths (no padding, no truncation) reads the same on 21.08 … 25.x.
//! `--Node` prints a node once per partition: the first line of a node is kept. `StateComplete`
//! is the base state and its flags joined by `+` (`idle+drain`), lower case; a suffix sinfo may
//! add (`*` not responding, `~` powered off, …) is dropped, `*` kept as the flag
//! `not_responding`. A `CLUSTER: name` line (`--clusters`) is skipped.

use crate::model::NodeState;

use super::alloc::gres_gpu_indices;

/// `sinfo --Format` of [`read_sinfo_nodes`].
pub const SINFO_FORMAT: &str = "NodeList:0|,StateComplete:0|,CPUsState:0|,AllocMem:0|,GresUsed:0|";

/// Why sinfo's output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sinfo line {line}: {reason} in {text:?}; expected `name|state|A/I/O/T|MB|gres|` (sinfo --Format={SINFO_FORMAT})"
)]
pub struct SinfoError {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// Reads [`SINFO_FORMAT`] lines into one [`NodeState`] per node, in sinfo's order.
pub fn read_sinfo_nodes(text: &str) -> Result<Vec<NodeState>, SinfoError> {
    let mut out: Vec<NodeState> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with("CLUSTER:") {
            continue;
        }
        let err = |reason: String| SinfoError { line: i + 1, text: line.to_string(), reason };
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 5 {
            return Err(err(format!("{} fields", f.len())));
        }
        let name = f[0].trim();
        if name.is_empty() {
            return Err(err("no node name".into()));
        }
        if out.iter().any(|n| n.name == name) {
            continue;
        }
        let cpus_allocated = match f[2].split('/').next().map(str::trim) {
            Some(a) => a.parse::<u32>().map_err(|_| err(format!("CPUs {:?} is not A/I/O/T", f[2])))?,
            None => 0,
        };
        let mb = match f[3].trim() {
            "" | "N/A" => 0,
            m => m.parse::<u64>().map_err(|_| err(format!("allocated memory {m:?} is not MB")))?,
        };
        let gpus = gres_gpu_indices(f[4]).map_err(err)?;
        out.push(NodeState {
            name: name.to_string(),
            states: states(f[1]),
            cpus_allocated,
            memory_allocated_bytes: mb.saturating_mul(1 << 20),
            gpus_allocated: gpus.len() as u32,
        });
    }
    Ok(out)
}

/// `idle+drain` → [idle, drain]; `down*` → [down, not_responding]; abbreviations spelled out.
fn states(s: &str) -> Vec<String> {
    let s = s.trim().to_ascii_lowercase();
    let not_responding = s.ends_with('*');
    let s = s.trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']);
    let mut out: Vec<String> = s
        .split('+')
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "alloc" => "allocated",
            "mix" => "mixed",
            "resv" => "reserved",
            "drng" => "draining",
            "drain" | "drained" => "drain",
            "comp" => "completing",
            "unk" => "unknown",
            other => other,
        })
        .map(str::to_string)
        .collect();
    if not_responding && !out.iter().any(|w| w == "not_responding") {
        out.push("not_responding".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded on the testbed (Slurm 22.05.8, 2026-12-05; command and date in
    /// tests/fixtures/testbed/own-sinfo-nodes.txt.cmd): node vm in two partitions, 7 of 8 CPUs,
    /// 1792 MB and both GPUs allocated.
    #[test]
    fn the_testbed_node_as_recorded() {
        let text = include_str!("../../tests/fixtures/testbed/own-sinfo-nodes.txt");
        let nodes = read_sinfo_nodes(text).unwrap();
        assert_eq!(
            nodes,
            [NodeState {
                name: "vm".into(),
                states: vec!["mixed".into()],
                cpus_allocated: 7,
                memory_allocated_bytes: 1792 << 20,
                gpus_allocated: 2,
            }]
        );
    }

    #[test]
    fn flags_suffixes_and_bad_lines() {
        assert_eq!(states("IDLE+DRAIN"), ["idle", "drain"]);
        assert_eq!(states("down*"), ["down", "not_responding"]);
        assert_eq!(states("mix~"), ["mixed"]);
        let e = read_sinfo_nodes("vm|idle|x/1/0/1|0||\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("A/I/O/T"), "{e}");
        assert!(read_sinfo_nodes("vm idle\n").is_err());
        assert_eq!(read_sinfo_nodes("CLUSTER: c1\n\n").unwrap(), []);
    }
}
