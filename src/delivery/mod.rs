//! The delivery engine shared by every consumer of the ledger: plan, then execute.
//!
//! - [`consumer`]: the interface. A consumer is a pure [`consumer::Planner`] (a changed run and
//!   the consumer's mark for it → outbox items with opaque, deterministic ids, and the next mark)
//!   and a [`consumer::Sender`] (send an item, look one up). Retryability is the
//!   [`consumer::Outcome`] a sender returns.
//! - [`engine`]: the cursor loop over `change_seq`, held runs, seeds, the outbox state machine
//!   (intent before send, look-up before resend), backoff, `--dry-run` previews and `retry`.
//! - [`slices`]: the slice planner (metering cut at billing periods, exact cumulative quantities)
//!   that the usage sinks (ACTIVATE, JSONL) share.
//! - [`events`]: the event planner (a run's start and stop as once-only items) that cc-backend
//!   and NATS share.
//! - [`seed`]: marks handed over by a replaced tool, matched to runs by a rule the caller gives.
//!
//! Invariant: the engine knows no particular consumer; an item is planned at most once per
//! consumer (its id), and sent again only after a look-up proved it absent.

pub mod consumer;
pub mod engine;
pub mod events;
pub mod seed;
pub mod slices;
pub mod totals;
