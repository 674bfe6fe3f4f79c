//! `slurm-ledger demo`: the whole pipeline on recorded real Slurm output, no Slurm needed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::collect::Since;
use crate::config::{RawConfig, Settings};
use crate::demo::{replay_runner, RECORDED_AT};
use crate::ledger::{JobFilter, Ledger};

use crate::sinks::activate::ActivateSink;
use crate::sinks::jsonl::JsonlSink;
use crate::sinks::Sink;

use super::collect::collect_all;
use super::deliver::deliver_all;
use super::jobs::{write_jobs, Format};
use super::sink_setup::policy_for;
use super::status::write_status;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo ledger in this file, and its JSONL usage beside it as FILE.usage.jsonl
    /// (default: temporary files, removed afterwards).
    #[arg(long = "into", value_name = "FILE")]
    pub into: Option<PathBuf>,
}

pub fn run(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = a.into.as_ref().filter(|p| p.exists()) {
        anyhow::bail!(super::UsageError(format!(
            "--into {}: the file exists; the demo writes a new ledger (give a new path)",
            p.display()
        )));
    }
    let tmp = tempdir()?;
    let path = a.into.clone().unwrap_or_else(|| tmp.join("demo-ledger.db"));
    let mut settings =
        Settings::validate(RawConfig::default()).map_err(|_| anyhow::anyhow!("built-in defaults invalid"))?;
    settings.ledger_path = path.clone();
    // The JSONL sink's file: beside a kept ledger, else in the temporary directory.
    let jsonl_path = match &a.into {
        Some(p) => p.with_extension("usage.jsonl"),
        None => tmp.join("usage.jsonl"),
    };
    let mut ledger = Ledger::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let runner = replay_runner();
    let out = &mut std::io::stdout().lock();
    writeln!(
        out,
        "slurm-ledger demo: recorded output of a real Slurm 22.05.8 cluster (testbed), replayed; ledger {}\n",
        path.display()
    )?;
    writeln!(out, "== collect (first poll)")?;
    let failed = collect_all(&runner, &settings, &mut ledger, vec![], Since::Cursor, RECORDED_AT, out)?;
    writeln!(out, "\n== collect again (same window: nothing may change)")?;
    let failed = failed + collect_all(&runner, &settings, &mut ledger, vec![], Since::Cursor, RECORDED_AT, out)?;
    writeln!(out, "\n== Slurm calls made (one sacct query per poll):")?;
    for c in runner.calls() {
        writeln!(out, "  {}", c.display().replace('\u{1f}', "\\x1f"))?;
    }
    let failed = failed + demo_deliver(&mut ledger, &jsonl_path, out)?;
    writeln!(out, "\n== status")?;
    write_status(out, &ledger.status(5)?)?;
    writeln!(out, "\n== jobs")?;
    write_jobs(out, &ledger.jobs(&JobFilter::default())?, Format::Table)?;
    drop(ledger);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The demo's sinks: a local JSONL file, and ACTIVATE as a dry run (no platform here).
const DEMO_SINKS: &str = r#"
[sinks.jsonl]
tres = "cpu"
running_slice = "1m"
[sinks.activate]
organization = "demo-org"
host = "https://activate.example.org"
default_sku = "standard-compute"
default_allocation = "demo-allocation"
running_slice = "1m"
[sinks.activate.partition_sku]
gpu = "gpu-compute"
"#;

/// Meters the ledger and delivers to the local JSONL sink (twice: the second pass sends nothing),
/// then shows what ACTIVATE would receive. Returns 1 if anything was rejected.
fn demo_deliver(ledger: &mut Ledger, jsonl: &std::path::Path, out: &mut dyn Write) -> anyhow::Result<usize> {
    let text = DEMO_SINKS.replacen(
        "[sinks.jsonl]\n",
        &format!("[sinks.jsonl]\npath = {:?}\n", jsonl.display().to_string()),
        1,
    );
    let settings = Settings::from_toml(&text, "demo").map_err(|e| anyhow::anyhow!("demo sinks: {e}"))?;
    let jsonl_sink = JsonlSink::new(settings.sinks.jsonl.clone().expect("demo config has [sinks.jsonl]"))
        .map_err(anyhow::Error::msg)?;
    let activate = ActivateSink::offline(settings.sinks.activate.clone().expect("demo config has [sinks.activate]"))
        .map_err(anyhow::Error::msg)?
        .with_base_url(Some("https://activate.example.org".into()));
    let policy = |n: &str| policy_for(&settings, n);
    let local: Vec<Box<dyn Sink>> = vec![Box::new(jsonl_sink)];
    writeln!(out, "\n== deliver core-hours to a local JSONL sink ({})", jsonl.display())?;
    let mut failed = deliver_all(ledger, &local, &policy, 10_000, false, RECORDED_AT, out)? as usize;
    writeln!(out, "\n== deliver again (nothing new may be sent)")?;
    failed += deliver_all(ledger, &local, &policy, 10_000, false, RECORDED_AT, out)? as usize;
    let lines = std::fs::read_to_string(jsonl).unwrap_or_default();
    writeln!(out, "\n{} usage records; the first three:", lines.lines().count())?;
    for l in lines.lines().take(3) {
        writeln!(out, "  {l}")?;
    }
    writeln!(out, "\n== ACTIVATE, dry run (what slurm-tracker's replacement would POST; first two)")?;
    let remote: Vec<Box<dyn Sink>> = vec![Box::new(activate)];
    let mut preview = Vec::new();
    deliver_all(ledger, &remote, &policy, 10_000, true, RECORDED_AT, &mut preview)?;
    let preview = String::from_utf8_lossy(&preview);
    let mut shown = 0;
    for block in preview.split("\n\n") {
        if block.starts_with('#') && block.contains("\nPOST ") && shown < 2 {
            writeln!(out, "{block}\n")?;
            shown += 1;
        } else if !block.starts_with('#') {
            writeln!(out, "{}", block.trim_end())?;
        }
    }
    Ok(failed)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("slurm-ledger-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
