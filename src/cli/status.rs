//! `slurm-ledger status`: cursors, runs by state, quarantined records, last collects.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};

use crate::ledger::{Delivery, DeliveryState, LedgerStatus, OwedTotal};
use crate::model::UnixTime;

use super::{open_ledger, settings, Cli};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many recent collects and quarantined records to show.
    #[arg(long, default_value_t = 5)]
    pub recent: u64,
    /// table for people; json (cursors, counts by state, quarantine, recent collects, sinks) for scripts and monitoring.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(cli: &Cli, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let s = settings(cli)?;
    let ledger = open_ledger(&s)?;
    let st = ledger.status(a.recent)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &st)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(out, "ledger {}", s.ledger_path.display())?;
            // The configured sinks show their totals in their own units (offline: nothing sent).
            // A sink that cannot be built (a setting only `deliver` needs) leaves its totals exact.
            let sinks = if s.sinks.names().is_empty() {
                Vec::new()
            } else {
                super::build_sinks(&s, &[], false).unwrap_or_else(|e| {
                    eprintln!("note: totals are shown exact, not in the sinks' units: {e:#}");
                    Vec::new()
                })
            };
            let figure = |sink: &str, t: &OwedTotal, total: i64| {
                let c = sinks.iter().find(|c| c.name == sink)?;
                c.sender.figure(&owed_item(sink, t), total)
            };
            write_status_with(&mut out, &st, super::system_now(), &figure)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration for people: `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Shortens a raw record for one table cell, keeping it recognisable.
fn preview(raw: &str) -> String {
    cut(raw, 60)
}

/// `text` on one line (control characters shown as `·`), cut to `max` characters with `…`.
fn cut(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { '·' } else { c }).collect();
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

/// A listed total as the item its sender reads.
fn owed_item(sink: &str, t: &OwedTotal) -> Delivery {
    Delivery {
        id: t.id.clone(),
        seq: 0,
        sink: sink.to_string(),
        key: None,
        span: t.span,
        amount: None,
        route: t.route.clone(),
        total: Some(t.total),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: UnixTime(0),
        last_error: None,
        remote_id: None,
    }
}

/// A total in the sink's unit, if it has one: (sink, the listed total, the figure to show).
pub type Figure<'a> = dyn Fn(&str, &OwedTotal, i64) -> Option<String> + 'a;

/// The human-readable status, totals as exact figures.
pub fn write_status(out: &mut dyn Write, st: &LedgerStatus, now: UnixTime) -> std::io::Result<()> {
    write_status_with(out, st, now, &|_, _, _| None)
}

/// The human-readable status, totals in their sinks' units where `figure` tells them.
pub fn write_status_with(
    out: &mut dyn Write,
    st: &LedgerStatus,
    now: UnixTime,
    figure: &Figure<'_>,
) -> std::io::Result<()> {
    writeln!(
        out,
        "schema v{}; {} job runs ({} not final); change sequence {}",
        st.schema_version, st.total_runs, st.open_runs, st.change_seq
    )?;
    writeln!(out, "\nCollect cursors (next collect starts here, minus the overlap):")?;
    if st.cursors.is_empty() {
        writeln!(out, "  none yet: run `slurm-ledger collect`")?;
    }
    for c in &st.cursors {
        writeln!(out, "  {:<16} {}   (moved {})", c.cluster, c.position, c.updated_at)?;
    }
    writeln!(out, "\nRuns by state:")?;
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(["CLUSTER", "STATE", "RUNS"]);
    for s in &st.states {
        t.add_row([s.cluster.clone(), s.state.clone(), s.runs.to_string()]);
    }
    writeln!(out, "{t}")?;
    for s in &st.unknown_states {
        writeln!(
            out,
            "  note: {} run(s) of {} are in state {}, which this slurm-ledger does not know: billed as still running \
             (never as ended) until Slurm reports a known end state",
            s.runs, s.cluster, s.state
        )?;
    }
    writeln!(out, "\nQuarantined records: {}", st.quarantined_total)?;
    if !st.quarantined_recent.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(["ID", "CLUSTER", "SOURCE", "LINE", "SEEN", "REASON", "RECORD"]);
        for q in &st.quarantined_recent {
            t.add_row([
                q.id.to_string(),
                q.cluster.clone(),
                cut(&q.source, 40),
                q.line.to_string(),
                q.times_seen.to_string(),
                cut(&q.reason, 100),
                preview(&q.raw),
            ]);
        }
        writeln!(out, "{t}")?;
        writeln!(out, "  (`slurm-ledger status --format json` shows the full records and reasons)")?;
    }
    if st.unsettled_total > 0 {
        writeln!(
            out,
            "\nOpen runs slurmdbd has not settled though asked for by job id {}+ times: {} (asked again at most daily; \
             a run purged from slurmdbd while open stays here)",
            crate::ledger::UNSETTLED_AFTER,
            st.unsettled_total
        )?;
        for u in &st.unsettled {
            writeln!(
                out,
                "  {} job {} submitted {}: asked {} times, last {}",
                u.cluster, u.job_id_raw, u.submit, u.asks, u.last_asked
            )?;
        }
    }
    write_sinks(out, st, now, figure)?;
    writeln!(out, "\nLast collects:")?;
    if st.last_collects.is_empty() {
        writeln!(out, "  none yet")?;
    }
    for r in &st.last_collects {
        let window = match (r.window_start, r.window_end) {
            (Some(a), Some(b)) => format!("{a} .. {b}"),
            _ if r.source == crate::collect::BY_ID_SOURCE => "(open runs by job id)".into(),
            _ => "(file import)".into(),
        };
        let outcome = match &r.error {
            Some(e) => format!("FAILED: {e}"),
            None => "ok".into(),
        };
        writeln!(
            out,
            "  {} {} [{}] {}: {} read, {} new, {} updated, {} quarantined: {}",
            r.started_at, r.cluster, r.source, window, r.runs_seen, r.runs_new, r.runs_updated, r.quarantined, outcome
        )?;
    }
    Ok(())
}

/// Deliveries per sink: what is delivered, waiting, unknown, held and rejected, and why.
fn write_sinks(out: &mut dyn Write, st: &LedgerStatus, now: UnixTime, figure: &Figure<'_>) -> std::io::Result<()> {
    writeln!(out, "\nSinks:")?;
    if st.sinks.is_empty() {
        writeln!(out, "  none has planned yet: configure [sinks.*] and run `slurm-ledger deliver`")?;
    }
    for s in &st.sinks {
        let counts: Vec<String> = s.deliveries.iter().map(|(state, n)| format!("{n} {state}")).collect();
        let counts = if counts.is_empty() { "no deliveries".to_string() } else { counts.join(", ") };
        writeln!(
            out,
            "  {}: {counts}; planned to change {}; {} runs held, {} rejected",
            s.sink, s.change_seq, s.held_total, s.rejected_total
        )?;
        if let Some(since) = s.backlog_since.filter(|_| s.backlog > 0) {
            writeln!(
                out,
                "    backlog: {} deliveries owed, the oldest since {since} ({} ago)",
                s.backlog,
                age(now.0 - since.0)
            )?;
        }
        for t in &s.totals_owed {
            let shown = |total: i64| match figure(&s.sink, t, total) {
                Some(f) => format!("{f} (exact {total})"),
                None => format!("exact {total}"),
            };
            let has = t
                .delivered_total
                .map_or("nothing set by slurm-ledger yet".to_string(), |d| format!("{} as last set", shown(d)));
            writeln!(out, "    owed: {}: the platform has {has}; the ledger {}: {}", t.id, shown(t.total), t.state)?;
        }
        if !s.totals_owed.is_empty() {
            writeln!(
                out,
                "    (a total not listed as owed is as the platform has it; `status --recent N` lists more)"
            )?;
        }
        if s.deliveries.iter().any(|(state, n)| state == "sent" && *n > 0) {
            writeln!(out, "    'sent' = outcome unknown (timeout, 5xx): looked up on the platform before any resend")?;
        }
        for h in &s.held {
            writeln!(out, "    held {}: {}", h.key, h.reason)?;
        }
        if s.held_total > s.held.len() as u64 {
            writeln!(
                out,
                "    … {} more held (`status --format json --recent N`)",
                s.held_total - s.held.len() as u64
            )?;
        }
        for r in &s.waiting {
            writeln!(out, "    waiting {} ({}, {} attempts): {}", r.id, r.key, r.attempts, r.error)?;
        }
        for r in &s.rejected {
            writeln!(out, "    rejected {} ({}, {} attempts): {}", r.id, r.key, r.attempts, r.error)?;
        }
        if s.rejected_total > 0 {
            writeln!(out, "    fix the cause, then `slurm-ledger retry --sink {}`", s.sink)?;
        }
    }
    Ok(())
}
