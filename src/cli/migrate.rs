//! `slurm-ledger migrate slurm-tracker`: switch a site from slurm-tracker in minutes. Reads the
//! tracker's command line, `config.json` and `slurm_job_states.db` (read-only), prints the
//! `[sinks.activate]` config to use, and imports what the tracker already reported so that
//! nothing is billed twice.
//!
//! `slurm-ledger migrate waldur-site-agent`: reads waldur-site-agent's YAML config (the global
//! `--config` names it here) and prints, or writes with `--out`, the `[sinks.waldur]` table of each
//! offering it can report (the translation is `sinks::waldur::site_agent`). Stdout is TOML: every
//! note is a `#` comment, so `> file` is a config fragment. Touches no ledger and no slurm-ledger
//! config.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::ENV_CONFIG;
use crate::ledger::{ImportOutcome, ImportedRow, JobFilter};
use crate::model::ClusterName;
use crate::sinks::activate::NAME as ACTIVATE;
use crate::sinks::waldur::site_agent;
use crate::tracker::{self, StateDb, StateRow, TrackerFlags};

use super::{settings, system_now, Cli, UsageError};

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// From Parallel Works slurm-tracker: its flags, config.json and slurm_job_states.db.
    SlurmTracker(TrackerArgs),
    /// From waldur-site-agent's report mode: its YAML config (give it with --config) → [sinks.waldur].
    WaldurSiteAgent(SiteAgentArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "The switch, in order:
  1. remove slurm-tracker's cron entry (a tracker still running keeps billing);
  2. slurm-ledger collect --lookback 7d             # the ledger learns the recent runs
  3. slurm-ledger migrate slurm-tracker --tracker-args '--org acme --config /opt/tracker/config.json --state-file /opt/tracker/slurm_job_states.db' --dry-run
  4. paste the printed [sinks.activate] table into the config; put the API key in a 0600 file
  5. the same migrate command without --dry-run     # imports what the tracker already billed
  6. slurm-ledger deliver --dry-run, then add `*/5 * * * * slurm-ledger -q run` to cron

Each run starts where the tracker stopped; runs the tracker never finished (it ended while the
tracker was down, or in a state it ignores, e.g. OUT_OF_MEMORY) get their remainder billed.")]
pub struct TrackerArgs {
    /// slurm-tracker's arguments as its crontab has them (one string): --org, --config, --state-file, --api-server, --lookback.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub tracker_args: Option<String>,
    /// The organization (slurm-tracker's --org), over --tracker-args.
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// slurm-tracker's config.json, over --tracker-args (default there: config.json).
    #[arg(long, value_name = "FILE")]
    pub tracker_config: Option<PathBuf>,
    /// slurm-tracker's state database, over --tracker-args (default there: ./slurm_job_states.db).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// The cluster the tracker ran on (its rows carry none). Default: the only cluster configured or in the ledger.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Read and report everything; write nothing to the ledger.
    #[arg(long)]
    pub dry_run: bool,
    /// Import although slurm-ledger already planned runs of this cluster for ACTIVATE (those
    /// runs keep their own frontier; only runs never planned take the tracker's).
    #[arg(long)]
    pub force: bool,
    /// Import although some state rows are unreadable (their jobs are then billed in full).
    #[arg(long)]
    pub accept_refused: bool,
    /// Release the imported row of this JobIDRaw: it applies to no run, and the job's held runs
    /// are billed in full (when `status` says the tracker's state does not match them).
    #[arg(long, value_name = "JOBID", conflicts_with_all = ["dry_run", "force", "accept_refused"])]
    pub release: Option<u64>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Here --config FILE is waldur-site-agent's YAML (the file its own -c takes), not slurm-ledger's config.

  slurm-ledger migrate waldur-site-agent --config /etc/waldur/waldur-site-agent-config.yaml

prints the [sinks.waldur] table of each offering whose usage the site agent reported from Slurm
(`usage` components), with every key it does not carry over named in # comments: stdout is TOML,
so `> fragment.toml` keeps the notes. slurm-ledger reports one Waldur offering per config: with
several, each is printed as its own fragment; --offering prints one alone, and --out needs it.
No secret of the YAML is copied: the token goes into a file of mode 0600 (token_file).

The switch: stop the site agent's `report` mode (its order_process and membership_sync modes go
on), paste the table into slurm-ledger's config, write the token file, then
`slurm-ledger config check` and `slurm-ledger deliver --dry-run`.

Exit status: 0 printed or written; 3 the same, but the table holds a placeholder to fill in (an
empty offering UUID or URL); 2 the YAML cannot be read (or has no offering to report)."
)]
pub struct SiteAgentArgs {
    /// Only this offering (its name or UUID), when the YAML has several.
    #[arg(long, value_name = "NAME|UUID")]
    pub offering: Option<String>,
    /// Write the table to FILE instead of stdout (refused if FILE exists, unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With --out: overwrite FILE if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// With --out: print what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cli: &Cli, c: &MigrateCommand) -> anyhow::Result<ExitCode> {
    match c {
        MigrateCommand::SlurmTracker(a) => slurm_tracker(cli, a),
        MigrateCommand::WaldurSiteAgent(a) => waldur_site_agent(cli, a),
    }
}

/// The site agent's YAML: the global `--config`, given on the command line (SLURM_LEDGER_CONFIG
/// names slurm-ledger's own config, never the site agent's).
fn site_agent_yaml(cli: &Cli) -> anyhow::Result<PathBuf> {
    let missing = || usage("give waldur-site-agent's YAML config: --config FILE (the file its own -c takes)".into());
    let path = cli.config.clone().ok_or_else(missing)?;
    let on_command_line = std::env::args_os().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a.starts_with("--config") || (a.starts_with('-') && !a.starts_with("--") && a.contains('c'))
    });
    if !on_command_line && std::env::var_os(ENV_CONFIG).is_some_and(|v| path == v) {
        return Err(usage(format!(
            "give waldur-site-agent's YAML config: --config FILE ({ENV_CONFIG} names slurm-ledger's config, {})",
            path.display()
        )));
    }
    Ok(path)
}

fn waldur_site_agent(cli: &Cli, a: &SiteAgentArgs) -> anyhow::Result<ExitCode> {
    let path = site_agent_yaml(cli)?;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        usage(format!(
            "cannot read waldur-site-agent's config {shown}: {e}; give its YAML with --config FILE (the file its own -c takes)"
        ))
    })?;
    let t = site_agent::translate(&text).map_err(|e| usage(format!("waldur-site-agent's config {shown} {e}")))?;
    if t.fragments.is_empty() {
        let why: Vec<String> = t.refused.iter().map(|r| format!("  - offering {:?}: {}", r.name, r.reason)).collect();
        return Err(usage(format!(
            "waldur-site-agent's config {shown} has no offering slurm-ledger can report (Slurm usage with a `usage` \
             component):\n{}",
            why.join("\n")
        )));
    }
    let names = || t.fragments.iter().map(|f| format!("{:?}", f.name)).collect::<Vec<_>>().join(", ");
    let only = match &a.offering {
        None => None,
        Some(w) => Some(t.find(w).ok_or_else(|| match t.find_refused(w) {
            Some(r) => usage(format!("offering {:?} of {shown} cannot be reported: {}", r.name, r.reason)),
            None => usage(format!("{shown} has no offering {w:?}; give one of {} (a name or a UUID)", names())),
        })?),
    };
    let doc = t.render(&shown, only);
    let code = if t.needs_fill_in(only) { ExitCode::from(3) } else { ExitCode::SUCCESS };
    let Some(out) = &a.out else {
        std::io::stdout().lock().write_all(doc.as_bytes())?;
        return Ok(code);
    };
    let fragment = match (only, t.fragments.as_slice()) {
        (Some(f), _) | (None, [f]) => f,
        (None, _) => {
            return Err(usage(format!(
                "{shown} has {} offerings slurm-ledger can report ({}), and slurm-ledger reports one per config: give \
                 --offering NAME|UUID with --out (or print them all without --out)",
                t.fragments.len(),
                names()
            )))
        }
    };
    if out.exists() && !a.force {
        return Err(usage(format!("{} exists; give another --out FILE, or --force to overwrite it", out.display())));
    }
    if a.dry_run {
        std::io::stdout().lock().write_all(doc.as_bytes())?;
        eprintln!("(dry run: {} not written)", out.display());
        return Ok(code);
    }
    let written = if a.force {
        std::fs::write(out, &doc)
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(out).and_then(|mut f| f.write_all(doc.as_bytes()))
    };
    written.with_context(|| format!("writing {}", out.display()))?;
    let o = &mut std::io::stdout().lock();
    writeln!(
        o,
        "wrote {}: [sinks.waldur] for offering {:?}; its # notes say what is not carried over",
        out.display(),
        fragment.name
    )?;
    for p in &fragment.fill_in {
        writeln!(o, "to fill in: {p}")?;
    }
    for s in &fragment.steps {
        writeln!(o, "step: {s}")?;
    }
    writeln!(
        o,
        "then: put the table into slurm-ledger's config; slurm-ledger config check; slurm-ledger deliver --dry-run"
    )?;
    Ok(code)
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg))
}

/// The tracker's flags: from --tracker-args (split on whitespace, quotes honoured), or defaults.
fn tracker_flags(a: &TrackerArgs) -> anyhow::Result<Option<TrackerFlags>> {
    let Some(text) = &a.tracker_args else { return Ok(None) };
    let words = split_words(text).map_err(|e| usage(format!("--tracker-args: {e}")))?;
    let flags = tracker::flags::parse_flags(&words).map_err(|e| usage(format!("--tracker-args: {e}")))?;
    Ok(Some(flags))
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("an opening quote is not closed".into());
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    // The crontab line may start with the program itself.
    if words.first().is_some_and(|w| !w.starts_with('-')) {
        words.remove(0);
    }
    Ok(words)
}

fn slurm_tracker(cli: &Cli, a: &TrackerArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let flags = tracker_flags(a)?;
    let out = &mut std::io::stdout().lock();
    let org = a.org.clone().or_else(|| flags.as_ref().map(|f| f.org.clone()));
    let config_path = a
        .tracker_config
        .clone()
        .or_else(|| flags.as_ref().map(|f| f.config.clone()))
        .unwrap_or_else(|| tracker::flags::DEFAULT_CONFIG.into());
    let state_path = a
        .state_file
        .clone()
        .or_else(|| flags.as_ref().map(|f| f.state_file.clone()))
        .unwrap_or_else(|| tracker::flags::DEFAULT_STATE_FILE.into());
    // Releasing one job's row needs neither the organization nor the tracker's config.json.
    if a.release.is_none() {
        let org =
            org.ok_or_else(|| usage("give the organization: --org ORG or --tracker-args '--org ORG …'".into()))?;
        if flags.as_ref().is_some_and(|f| f.api_key.is_some()) {
            writeln!(out, "note: the tracker's --api-key is not copied anywhere; write it into a file of mode 0600 and set api_key_file (or SLURM_LEDGER_ACTIVATE_API_KEY)")?;
        }
        if flags.as_ref().is_some_and(|f| f.dry_run) {
            writeln!(out, "WARNING: the tracker ran with --dry-run; its state file then claims usage it never sent (slurm-tracker bug): check before importing")?;
        }

        // 1. The mapping, as slurm-ledger config.
        let mapping = tracker::config_json::read_config_json(&config_path).map_err(|e| usage(e.to_string()))?;
        let mut toml = mapping.to_ledger_toml(&org);
        if let Some(host) = flags.as_ref().and_then(|f| f.api_server.clone()) {
            let host = toml::Value::String(host).to_string();
            toml = toml.replacen("[sinks.activate]\n", &format!("[sinks.activate]\nhost = {host}\n"), 1);
        }
        writeln!(out, "# [sinks.activate] for slurm-ledger's config, from {}:\n{toml}", config_path.display())?;
        if s.sinks.activate.is_none() {
            writeln!(out, "note: the config has no [sinks.activate] yet; add the table above before `deliver`")?;
        }
    }

    // 2. The cluster the rows belong to.
    let Some((mut ledger, _lock)) = super::ledger_for_sending(&s, "migrate", a.dry_run)? else {
        return Ok(ExitCode::from(1));
    };
    let cluster = match &a.cluster {
        Some(c) => ClusterName::new(c).map_err(|e| usage(format!("--cluster: {e}")))?,
        None => {
            let mut known: Vec<String> = s.slurm.clusters.clone();
            known.extend(ledger.status(0)?.cursors.into_iter().map(|c| c.cluster));
            known.sort();
            known.dedup();
            match known.as_slice() {
                [one] => ClusterName::new(one).map_err(usage)?,
                [] => {
                    return Err(usage(
                        "no cluster is known yet: run `slurm-ledger collect` first, or give --cluster".into(),
                    ))
                }
                many => {
                    return Err(usage(format!(
                        "several clusters are known ({}); give the tracker's with --cluster",
                        many.join(", ")
                    )))
                }
            }
        }
    };
    if let Some(job) = a.release {
        let mut w = ledger.writer(system_now())?;
        let released = w.release_import(ACTIVATE, &cluster, job)?;
        w.commit()?;
        if !released {
            writeln!(out, "no pending slurm-tracker row for job {job} on {cluster}")?;
            return Ok(ExitCode::from(1));
        }
        writeln!(
            out,
            "job {job} on {cluster}: slurm-tracker's row released; the next `deliver` bills its runs in full"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if ledger.consumer_has_runs(ACTIVATE, &cluster)? && !a.force {
        return Err(usage(format!(
            "slurm-ledger has already planned ACTIVATE usage for cluster {cluster}: runs planned before the import keep their \
             own frontier, so what the tracker billed of them would be billed again. Import before the first `deliver`/`run` \
             (use a fresh ledger, or pass --force if you know those runs were not billed by the tracker)"
        )));
    }

    // 3. The state rows, imported in one transaction.
    let db = StateDb::open(&state_path).map_err(|e| usage(e.to_string()))?;
    let source = format!("slurm-tracker:{}", state_path.display());
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    db.for_each_row(|r| match r {
        StateRow::Job(j) => rows.push(j),
        StateRow::Rejected(r) => rejected.push(r),
    })
    .with_context(|| format!("reading {}", state_path.display()))?;
    for r in &rejected {
        writeln!(out, "  refused row job_id={}: {}", r.job_id, r.reason)?;
    }
    let (mut in_ledger, mut later) = (0u64, 0u64);
    for r in &rows {
        let runs = ledger.jobs(&JobFilter {
            cluster: Some(cluster.clone()),
            job_id_raw: Some(r.job_id),
            limit: Some(1),
            ..Default::default()
        })?;
        if runs.is_empty() {
            later += 1;
        } else {
            in_ledger += 1;
        }
    }
    let read = rows.len() + rejected.len();
    if a.dry_run {
        writeln!(
            out,
            "{}: {read} rows read for cluster {cluster}: {} would be imported ({in_ledger} jobs in the ledger now, {later} matched when collected); {} rows refused\n(dry run: nothing written)",
            state_path.display(),
            rows.len(),
            rejected.len()
        )?;
        return Ok(if rejected.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if !rejected.is_empty() && !a.accept_refused {
        return Err(usage(format!(
            "{} of {read} rows of {} are unreadable (listed above); nothing imported. Fix them, or pass --accept-refused to import the rest (those jobs are then billed in full)",
            rejected.len(),
            state_path.display()
        )));
    }
    let mut counts = [0u64; 3];
    let mut w = ledger.writer(system_now())?;
    for r in &rows {
        let row = ImportedRow {
            job_id_raw: r.job_id,
            reported_elapsed_secs: r.last_reported_elapsed,
            reported_at: r.last_reported_at,
            completed_at: r.completed_at,
        };
        let i = match w.put_import(ACTIVATE, &cluster, &row, &source)? {
            ImportOutcome::Stored => 0,
            ImportOutcome::AlreadyThere => 1,
            ImportOutcome::AlreadyApplied => 2,
        };
        counts[i] += 1;
    }
    w.commit()?;
    writeln!(
        out,
        "{}: {read} rows read for cluster {cluster}: {} imported, {} already imported, {} left alone (already applied to a run); \
         {in_ledger} jobs are in the ledger now, {later} will be matched when collected; {} rows refused",
        state_path.display(),
        counts[0],
        counts[1],
        counts[2],
        rejected.len()
    )?;
    writeln!(
        out,
        "Each run starts where slurm-tracker stopped; `slurm-ledger deliver --dry-run` shows what is left to bill."
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn crontab_args_split_like_a_shell() {
        assert_eq!(
            split_words("/usr/local/bin/slurm-tracker --org acme --config '/opt/t r/config.json' --dry-run").unwrap(),
            ["--org", "acme", "--config", "/opt/t r/config.json", "--dry-run"]
        );
        assert!(split_words("--org 'acme").is_err());
    }
}
