//! `scontrol show job` reader (placeholder, being written).
