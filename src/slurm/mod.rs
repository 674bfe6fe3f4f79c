//! Everything that knows Slurm's text and JSON formats, and the only code that runs Slurm.
//!
//! Flow: a [`runner::Runner`] runs a command (for real, through a wrapper, or replayed from a
//! recording) → [`source::SlurmSource`] builds the one sacct call per poll → the parsers turn
//! text into [`crate::model::JobRun`]s. Nothing outside this module sees a Slurm string: local
//! times, `D-HH:MM:SS`, `256M`, `CANCELLED by 0`, `7_[2-3]` all stop here.
//!
//! Parsers: [`parsable`] (`sacct --parsable2`, streaming, with quarantine), [`json`]
//! (`sacct --json` of every schema era, `squeue --json`), [`scontrol`] (`scontrol show job`),
//! [`alloc`] (a job's allocation detail: `scontrol -d show job`, or its JSON), [`sinfo`] (node
//! states).

pub mod alloc;
pub mod fields;
pub mod hostlist;
pub mod json;
pub mod parsable;
pub mod runner;
pub mod scontrol;
pub mod sinfo;
pub mod source;
pub mod values;
