//! The daemon: the loop that polls Slurm and delivers, woken early by the prolog/epilog hook.
//!
//! - [`hook`]: the hook socket's both ends: the message `slurm-ledger hook` sends from slurmctld's
//!   `PrologSlurmctld`/`EpilogSlurmctld`, and the [`hook::Listener`] that forwards it to the loop.
//! - [`metrics`]: what the loop reports, rendered in Prometheus' formats; [`http`]: `/metrics`
//!   and `/healthz`.

pub mod hook;
pub mod http;
pub mod metrics;
