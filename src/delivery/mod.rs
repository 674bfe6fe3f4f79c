//! The delivery engine shared by every sink: plan, then execute.
//!
//! - [`plan`] is pure: a run and its planning frontier for a sink → new slices (never
//!   overlapping what was planned, cut at billing-period boundaries, quantities that add up
//!   exactly to the run's rounded total) and the next frontier. The caller stores slices and
//!   frontier in one SQLite transaction, so a crash plans a slice either fully or not at all.
//!
//! Invariant: a second of a run's billable span is in at most one slice per sink, and once the
//! run is final, in exactly one.

pub mod engine;
pub mod plan;
