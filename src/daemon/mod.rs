//! The daemon: its metrics and the HTTP endpoint that serves them (`/metrics`, `/healthz`).

pub mod http;
pub mod metrics;
