//! `sacct --json` and `squeue --json` readers (placeholder, being written).
