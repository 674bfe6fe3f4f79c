//! The daemon: the loop that polls Slurm and delivers, woken early by the prolog/epilog hook.
//!
//! - [`hook`]: the hook socket's both ends: the message `slurm-ledger hook` sends from slurmctld's
//!   `PrologSlurmctld`/`EpilogSlurmctld`, and the [`hook::Listener`] that forwards it to the loop.

pub mod hook;
