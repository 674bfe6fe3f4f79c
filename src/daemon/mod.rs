//! The daemon: the loop that polls Slurm and delivers, woken early by the prolog/epilog hook.
//!
//! - [`service`]: the loop (a full pass every interval, quick looks at the jobs the hook names,
//!   backoff while Slurm is down, a clean stop).
//! - [`settings`]: `[daemon]`, validated.
//! - [`hook`]: the hook socket's both ends: the message `slurm-ledger hook` sends from slurmctld's
//!   `PrologSlurmctld`/`EpilogSlurmctld`, and the [`hook::Listener`] that forwards it to the loop.
//! - [`metrics`]: what the loop reports, rendered in Prometheus' formats; [`http`]: `/metrics`
//!   and `/healthz`.

pub mod hook;
pub mod http;
pub mod metrics;
pub mod service;
pub mod settings;
