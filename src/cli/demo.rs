//! `slurm-ledger demo`: the whole pipeline on recorded real Slurm output, no Slurm needed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::collect::Since;
use crate::config::{RawConfig, Settings};
use crate::delivery::consumer::Consumer;
use crate::demo::{replay_runner, RECORDED_AT};
use crate::ledger::{JobFilter, Ledger};
use crate::pass::PassLimits;
use crate::pass::{self, CollectPlan};
use crate::sinks::{build, BuildCtx};

use super::collect::print_clusters;
use super::deliver::{dry_run, print_sinks};
use super::jobs::{write_jobs, Format};
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
    let plan = CollectPlan { runner: &runner, slurm: &settings.slurm, clusters: vec![], since: Since::Cursor };
    let (sink_settings, jsonl, activate) = demo_sinks(&jsonl_path)?;
    let jsonl = [jsonl];
    writeln!(
        out,
        "== one pass (what cron's `run` and the daemon repeat): collect, then deliver core-hours to a local JSONL sink ({})",
        jsonl_path.display()
    )?;
    // No Slurm to ask here: the recorded runs must carry the demo sinks' TRES.
    let mut preflight = |l: &Ledger| pass::check_billed_tres(l, &sink_settings.sinks, &[], &mut || None);
    let first =
        pass::run(&mut ledger, &plan, &jsonl, PassLimits::default(), RECORDED_AT, &mut preflight, &mut |_, _, _| {})?;
    print_clusters(out, &first.clusters, false)?;
    print_sinks(out, &first.sinks, false)?;
    writeln!(out, "\n== the same pass again (same window: no run may change, nothing new may be sent)")?;
    let second =
        pass::run(&mut ledger, &plan, &jsonl, PassLimits::default(), RECORDED_AT, &mut preflight, &mut |_, _, _| {})?;
    print_clusters(out, &second.clusters, false)?;
    print_sinks(out, &second.sinks, false)?;
    let failed = usize::from(first.failed()) + usize::from(second.failed());
    writeln!(out, "\n== Slurm calls made (one sacct query per poll):")?;
    for c in runner.calls() {
        writeln!(out, "  {}", c.display().replace('\u{1f}', "\\x1f"))?;
    }
    let lines = std::fs::read_to_string(&jsonl_path).unwrap_or_default();
    writeln!(out, "\n{} usage records; the first three:", lines.lines().count())?;
    for l in lines.lines().take(3) {
        writeln!(out, "  {l}")?;
    }
    writeln!(out, "\n== ACTIVATE, dry run (what slurm-tracker's replacement would POST; first two)")?;
    let mut preview = Vec::new();
    dry_run(&ledger, std::slice::from_ref(&activate), RECORDED_AT, &mut preview)?;
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
    writeln!(out, "\n== status")?;
    write_status(out, &ledger.status(5)?, RECORDED_AT)?;
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

/// The demo's sinks: the local JSONL file, and ACTIVATE offline (no key: it can only show what
/// it would send).
fn demo_sinks(jsonl: &std::path::Path) -> anyhow::Result<(Settings, Consumer, Consumer)> {
    let text = DEMO_SINKS.replacen(
        "[sinks.jsonl]\n",
        &format!("[sinks.jsonl]\npath = {:?}\n", jsonl.display().to_string()),
        1,
    );
    let settings = Settings::from_toml(&text, "demo").map_err(|e| anyhow::anyhow!("demo sinks: {e}"))?;
    let env = |_: &str| None;
    let ctx = BuildCtx { online: false, env: &env, policy: super::engine_policy(&settings) };
    let mut built = build(&settings.sinks, &[], &ctx)?.into_iter().map(|b| b.consumer);
    let (Some(activate), Some(jsonl)) = (built.next(), built.next()) else {
        anyhow::bail!("the demo config has [sinks.activate] and [sinks.jsonl]")
    };
    Ok((settings, jsonl, activate))
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("slurm-ledger-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
