//! slurm-ledger: Slurm accounting → a durable ledger → metered usage → the platforms that bill it.
//!
//! # Layout
//! The flow is one direction, and so are the module dependencies (`tests/it/layers.rs` checks it):
//!
//! ```text
//! slurm (run + parse Slurm) → collect (one poll) → ledger (SQLite: runs, cursors, quarantine, outbox)
//!     → delivery (the engine: each consumer's cursor, planner → outbox → sender) ← sinks/* (one folder each)
//! pass (one pass: collect every cluster, then every consumer) ← cli (clap, printing) and the daemon
//! ```
//!
//! - [`model`]: shared vocabulary ([`model::JobRun`], [`model::JobKey`], [`model::Tres`]).
//! - [`slurm`]: the only code that knows Slurm's formats or runs its commands.
//! - [`ledger`]: the only code that knows the SQLite schema.
//! - [`collect`]: one poll: Slurm source → ledger, with cursor and quarantine.
//! - [`meter`]: pure usage arithmetic (billable span, TRES-seconds, periods, units).
//! - [`delivery`]: the consumer interface and the engine that drives it; the slice planner.
//! - [`sinks`]: the platforms (ACTIVATE, JSONL), each owning its config section, in one registry.
//! - [`tracker`]: the switch from slurm-tracker (its files; its state as the engine's seeds).
//! - [`pass`]: one pass, as `run`, `demo` and the daemon repeat it.
//! - [`config`]: config file → pure validation → [`config::Settings`]; [`validate`], [`secret`].
//! - [`daemon`]: the daemon's parts: the prolog/epilog hook socket ([`daemon::hook`]), its metrics and
//!   the `/metrics` and `/healthz` endpoint.
//!
//! See ARCHITECTURE.md for the invariants.

pub mod backfill;
pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod ledger;
pub mod meter;
pub mod model;
pub mod pass;
pub mod secret;
pub mod sinks;
pub mod slurm;
pub mod tracker;
pub mod validate;

// Lets code shared with the benchmarks (`benches/synth.rs`, included by path in this crate's
// tests) name this crate as the benchmarks do.
#[cfg(test)]
extern crate self as slurm_ledger;
