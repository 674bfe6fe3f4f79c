//! slurm-ledger: Slurm accounting → a durable ledger → metered usage → the platforms that bill it.
//!
//! # Layout
//! The flow is one direction, and so are the module dependencies:
//!
//! ```text
//! slurm (run + parse Slurm) → collect (one poll) → ledger (SQLite: runs, cursors, quarantine)
//!                                                    → meter / sinks / archive / report (later)
//! cli (clap types, one file per subcommand) and config (TOML → validated Settings) sit at the edge.
//! ```
//!
//! - [`model`]: shared vocabulary ([`model::JobRun`], [`model::JobKey`], [`model::Tres`]).
//! - [`slurm`]: the only code that knows Slurm's formats or runs its commands.
//! - [`ledger`]: the only code that knows the SQLite schema.
//! - [`collect`]: one poll: Slurm source → ledger, with cursor and quarantine.
//! - [`config`]: config file → pure validation → [`config::Settings`].
//!
//! See ARCHITECTURE.md for the invariants.

pub mod cli;
pub mod collect;
pub mod config;
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
