//! Fakes of the remote services slurm-ledger delivers to, for the integration tests.
//!
//! Each fake listens on 127.0.0.1 (port 0) only, records what it accepted, refuses what the
//! platform's contract refuses, and injects faults on request. `http` is the shared HTTP/1.1
//! server, `faults` the fault plan they draw from (a scripted queue, a seeded mix, counts); one
//! file per platform holds its semantics.
//!
//! - `activate`: Parallel Works ACTIVATE usage events (contracts.md §1).
//! - `cc_backend`: ClusterCockpit cc-backend's job REST API as cc-slurm-adapter uses it (contracts.md §3).
//! - `waldur`: Waldur Mastermind's usage API as waldur-site-agent uses it (contracts.md §2).

pub mod activate;
pub mod cc_backend;
pub mod faults;
pub mod http;
pub mod waldur;

pub use activate::{
    base64_encode, Event, FakeActivate, FakeConfig, Fault, FaultKind, FaultMix, Outcome, RecordedRequest,
};
