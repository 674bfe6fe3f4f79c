//! NATS: each run's start and stop as a message on one subject of a JetStream stream, exactly
//! once (issue 11). The events are the shared event planner's (`delivery::events`): a start item
//! `start:{cluster}:{job_id_raw}:{submit}` once the run has started, a stop item `stop:…` once it
//! is final. Both the item id and the message's `Nats-Msg-Id` header are that id.
//!
//! # Payload
//! `format = "json"` (the default): one JSON object per message, keys in this order of meaning
//! (serialized sorted by name):
//!
//! | key | value |
//! |---|---|
//! | `event` | `"start"` or `"stop"` |
//! | `id` | the delivery id, equal to `Nats-Msg-Id` |
//! | `cluster`, `jobId`, `jobIdRaw` | the run: `jobId` as a person sees it (`7_3`, `13+1`), `jobIdRaw` Slurm's JobIDRaw (a number) |
//! | `arrayJobId`, `arrayTaskId`, `hetJobId`, `hetJobOffset` | numbers, only when set |
//! | `name`, `user`, `group`, `account`, `partition`, `qos` | text as Slurm gives it |
//! | `state` | the run's Slurm state when the event is sent (`RUNNING`, `COMPLETED`, `CANCELLED`, …): a start sent after the run ended carries its final state |
//! | `submit`, `start` (+ `end` in a stop) | RFC 3339 UTC (`2026-11-22T00:21:57Z`) |
//! | `submitEpoch`, `startEpoch` (+ `endEpoch` in a stop) | the same instants in Unix seconds |
//! | `elapsedSecs`, `exitCode` | stop only: run time without suspended time; `code:signal` |
//! | `timeLimitSecs` | when the run has a limit |
//! | `nodeCount`, `nodeList`, `nodes` | node count, Slurm's compressed list (`c[1-2]`), the hosts expanded (`["c1","c2"]`; `null` if the list cannot be read) |
//! | `cpus`, `gpus` | allocated CPUs (AllocTRES `cpu`, else AllocCPUS) and GPUs |
//! | `tres` | the allocated TRES as a map: `{"billing":2,"cpu":2,"mem":1073741824,"node":1}` (memory in bytes) |
//!
//! `format = "line-protocol"`: cc-slurm-adapter's message, an InfluxDB line
//! `job,function=start_job|stop_job,hostname=<host>,type=node,type-id=0 event="<JSON>" <ns>`:
//! tags sorted by key, `hostname` this machine's name (or `hostname` in the section), the
//! `event` string field the JSON with `"` and `\` escaped, the time the event's instant (start;
//! end for a stop) in Unix nanoseconds. The JSON is cc-backend's `start_job`/`stop_job` body
//! (`sinks::cc_job`, as the cc-backend sink posts it); a run with no host gets no events in this
//! format (cc-backend refuses a job without resources).
//!
//! # Exactly once
//! A delivery counts only after JetStream's `PubAck` (new, or `duplicate: true`: already
//! stored). An item whose send may have reached the server (no ack, a lost connection, a crash
//! between intent and outcome) is looked up before it is sent again, by reading the stream:
//! - An item in state `retry` is not looked for: its last send certainly stored nothing (see
//!   `sender.rs` for what is `Retry`), and every send before it was preceded by a look-up that
//!   did not find it (the engine looks an item up before any resend). So it is not there.
//! - The others of a batch (at most 256) are looked for in one read of the stream, filtered by
//!   the subject, headers only: from the earliest instant any of them can have been published,
//!   which is its event's own instant (a publish follows the event) less an hour for the clocks
//!   of Slurm's host and the NATS server to differ, up to the stream's last message when the read
//!   began, each message's `Nats-Msg-Id` compared with the ids asked for. The outbox does not
//!   keep when an item was last sent (`next_attempt_at` is overwritten by a failed look-up), so
//!   the event's instant is the bound that is always known.
//! - Cost: a look-up batch reads the headers of the messages on the subject stored since its
//!   earliest event less an hour, and stops once every id asked for is found. Delivering as jobs
//!   run, that is the last minutes to hours of events; for items of old runs (a first delivery of
//!   a long ledger) it can be the whole stream, once per batch that had an unknown outcome.
//! - JetStream's own de-duplication (same `Nats-Msg-Id` within the stream's `duplicate_window`,
//!   2 min by default) is a second guard: a resend soon after a send is dropped by the server and
//!   answered `duplicate`. Correctness does not depend on the window: the read above does.
//!   Beyond it, what the stream no longer holds (removed by its limits) cannot be found, and a
//!   resend of such an item would store it again.
//!
//! # Connection
//! Made on the first send or look-up of a pass, checking once that the stream exists and
//! captures the subject (the error says how to create it: `nats stream add`); the sink never
//! creates or changes a stream (its limits are the NATS admin's). Errors name the servers and
//! the way of login, never a secret. `--dry-run` prints the subject, the header and the payload.

pub mod config;
pub mod event;
pub mod sender;

use crate::delivery::consumer::Consumer;
use crate::delivery::events::{AllRuns, EventPlanner};
use crate::secret::{load_secret, Secret, SecretSource};
use crate::sinks::cc_job::HostFilter;

use super::{BuildCtx, Built, SinkError, SinkKind};
use config::{Auth, Format, NatsSettings, ENV_CREDS, ENV_NKEY_SEED, ENV_PASSWORD, ENV_TOKEN};
use sender::{Credentials, NatsSender};

/// The sink's name in the ledger.
pub const NAME: &str = "nats";

/// The NATS sink kind (see the registry in `sinks`).
pub struct Nats;

impl SinkKind for Nats {
    const NAME: &'static str = NAME;
    const EXAMPLE: &'static str = config::EXAMPLE;
    type Raw = config::RawNats;
    type Settings = NatsSettings;

    fn validate(raw: Self::Raw, problems: &mut crate::validate::Problems) -> Self::Settings {
        config::validate(raw, problems)
    }

    fn build(s: &NatsSettings, ctx: &BuildCtx<'_>) -> Result<Built, SinkError> {
        let mut warnings = Vec::new();
        let creds = if ctx.online {
            let (creds, warning) = credentials(s, ctx.env)?;
            warnings.extend(warning);
            creds
        } else {
            Credentials::None
        };
        let hostname = match (&s.hostname, s.format) {
            (Some(h), _) => h.clone(),
            (None, Format::Json) => String::new(),
            (None, Format::LineProtocol) => this_host().ok_or_else(|| SinkError::Config {
                sink: NAME,
                message: "cannot read this machine's host name for the line protocol's hostname tag: set hostname"
                    .into(),
            })?,
        };
        // The line protocol carries cc-backend's bodies, which need a host: runs without one get no
        // events there (as cc-slurm-adapter skipped them); the JSON events report every started run.
        let planner: Box<dyn crate::delivery::consumer::Planner> = match s.format {
            Format::Json => Box::new(EventPlanner::new(AllRuns)),
            Format::LineProtocol => Box::new(EventPlanner::new(HostFilter::new(None))),
        };
        let sender = NatsSender::new(s.clone(), creds, hostname);
        Ok(Built { consumer: Consumer::new(NAME, planner, Box::new(sender), ctx.policy), warnings })
    }
}

/// The credentials the section names, read from the environment or their file, and a warning for
/// a file others can read. No secret is ever in the config.
fn credentials(
    s: &NatsSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Credentials, Option<String>), SinkError> {
    let load = |what: &str, envs: &[&str], file: Option<&std::path::Path>, key: &str| {
        load_secret(&SecretSource { what, env: envs, file, file_key: key }, env)
    };
    Ok(match &s.auth {
        Auth::Default => match env(ENV_TOKEN).filter(|t| !t.trim().is_empty()) {
            Some(t) => (Credentials::Token(Secret::new(&t)), None),
            None => (Credentials::None, None),
        },
        Auth::UserPassword { user, password_file } => {
            let (password, warn) =
                load("NATS password", &[ENV_PASSWORD], password_file.as_deref(), "sinks.nats.password_file")?;
            (Credentials::UserPassword { user: user.clone(), password }, warn)
        }
        Auth::Token { token_file } => {
            let (t, warn) = load("NATS token", &[ENV_TOKEN], Some(token_file), "sinks.nats.token_file")?;
            (Credentials::Token(t), warn)
        }
        Auth::Nkey { seed_file } => {
            let (seed, warn) = load("NATS nkey seed", &[ENV_NKEY_SEED], Some(seed_file), "sinks.nats.nkey_seed_file")?;
            // A user seed is 58 base32 characters starting `SU`; say so now rather than at connect.
            let s = seed.expose();
            if !(s.len() == 58
                && s.starts_with("SU")
                && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
            {
                return Err(SinkError::Config {
                    sink: NAME,
                    message: format!(
                        "the NATS nkey seed (from {ENV_NKEY_SEED} or {}) is not a user nkey seed: it should be one \
                         line of 58 characters starting SU (`nk -gen user`)",
                        seed_file.display()
                    ),
                });
            }
            (Credentials::Nkey(seed), warn)
        }
        Auth::Creds { file } => {
            let (text, warn) = load("NATS creds file", &[ENV_CREDS], Some(file), "sinks.nats.creds_file")?;
            if async_nats::ConnectOptions::with_credentials(text.expose()).is_err() {
                return Err(SinkError::Config {
                    sink: NAME,
                    message: format!(
                        "{} (or {ENV_CREDS}) is not a NATS credentials file: it should hold a user JWT and its nkey \
                         seed, as `nsc generate creds` writes",
                        file.display()
                    ),
                });
            }
            (Credentials::Creds(text), warn)
        }
    })
}

/// This machine's host name.
fn this_host() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests;
