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

use super::collect::collect_all;
use super::jobs::{write_jobs, Format};
use super::status::write_status;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo ledger in this file (default: a temporary file, removed afterwards).
    #[arg(long = "into", value_name = "FILE")]
    pub into: Option<PathBuf>,
}

pub fn run(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempdir()?;
    let path = a.into.clone().unwrap_or_else(|| tmp.join("demo-ledger.db"));
    let mut settings = Settings::validate(RawConfig::default()).map_err(|_| anyhow::anyhow!("built-in defaults invalid"))?;
    settings.ledger_path = path.clone();
    let mut ledger = Ledger::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let runner = replay_runner();
    let out = &mut std::io::stdout().lock();
    writeln!(out, "slurm-ledger demo: recorded output of a real Slurm 22.05.8 cluster (testbed), replayed; ledger {}\n", path.display())?;
    writeln!(out, "== collect (first poll)")?;
    let failed = collect_all(&runner, &settings, &mut ledger, vec![], Since::Cursor, RECORDED_AT, out)?;
    writeln!(out, "\n== collect again (same window: nothing may change)")?;
    let failed = failed + collect_all(&runner, &settings, &mut ledger, vec![], Since::Cursor, RECORDED_AT, out)?;
    writeln!(out, "\n== Slurm calls made (one sacct query per poll):")?;
    for c in runner.calls() {
        writeln!(out, "  {}", c.display().replace('\u{1f}', "\\x1f"))?;
    }
    writeln!(out, "\n== status")?;
    write_status(out, &ledger.status(5)?)?;
    writeln!(out, "\n== jobs")?;
    write_jobs(out, &ledger.jobs(&JobFilter::default())?, Format::Table)?;
    if a.into.is_none() {
        drop(ledger);
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("slurm-ledger-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
