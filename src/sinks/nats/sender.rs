//! The NATS sender: publishes a batch to JetStream with each item's id as `Nats-Msg-Id`, and
//! looks items up by reading the stream. It owns a small current-thread tokio runtime (the engine
//! is synchronous) and a connection made on first use in a pass; any answer it cannot trust (an
//! ack that did not come) drops both, so nothing queued on an old connection goes out later. A
//! connection that cannot be made fails the pass's later batches at once (`Retry`, same reason)
//! instead of each waiting out its own timeout; the next pass tries again.
//!
//! Outcomes (the engine's one retry classifier, [`Outcome`]):
//! - `Delivered`: JetStream acknowledged the message (`PubAck`), new or `duplicate` (it was
//!   already stored: JetStream de-duplicates by `Nats-Msg-Id` within the stream's window).
//! - `Retry`: certainly not stored: the server could not be reached or refused the login, the
//!   stream is missing or does not capture the subject (checked once per connection), the client
//!   refused to queue the message, or the server answered without storing it (no stream for the
//!   subject, a JetStream error such as a full stream).
//! - `Unknown`: the message may be stored: no ack before the deadline, the connection lost while
//!   waiting, an ack that does not parse.
//! - `Rejected`: the item cannot become a message (no run, not an event), or the stream refuses
//!   its size for good (`max_msg_size`).
//!
//! The look-up is described in the module doc of `sinks::nats` (why it is exactly once, and
//! what it costs).

use std::collections::{HashMap, HashSet};
use std::future::IntoFuture;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{PublishErrorKind, RequestErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;

use crate::delivery::consumer::{Lookup, Outcome, Sender};
use crate::delivery::events::EventKind;
use crate::ledger::{Delivery, DeliveryState};
use crate::model::{JobRun, UnixTime};
use crate::secret::Secret;

use super::config::{captures, NatsSettings};
use super::event::{self, EventError};

/// Items per batch: one round trip of publishes and acks, one stream read for its look-ups.
pub const BATCH: usize = 256;

/// How far before an event's own instant a look-up starts reading the stream: the publish came
/// after the event, so only a clock difference between Slurm's host and the NATS server can
/// put it earlier. Generous: it only costs reading this much more.
pub const LOOKUP_MARGIN_SECS: i64 = 3600;

/// Messages asked for per pull request of a look-up.
const FETCH: usize = 1000;

/// The credentials the sink logs in with, loaded when it was built.
#[derive(Clone)]
pub enum Credentials {
    None,
    UserPassword {
        user: String,
        password: Secret,
    },
    Token(Secret),
    Nkey(Secret),
    /// A creds file's text (a user JWT and its nkey seed).
    Creds(Secret),
}

impl Credentials {
    /// How the sink logs in, for messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::None => "no credentials".into(),
            Self::UserPassword { user, .. } => format!("user {user:?} and its password"),
            Self::Token(_) => "a token".into(),
            Self::Nkey(_) => "an nkey seed".into(),
            Self::Creds(_) => "a creds file".into(),
        }
    }
}

/// A connection: the runtime that drives it, and the JetStream context on it.
struct Conn {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

/// Where the sender's connection stands in this pass.
enum Link {
    /// Not tried yet (or dropped after an answer that did not come): connect on next use.
    None,
    Up(Box<Conn>),
    /// Connecting failed in this pass: the rest of the pass fails fast with this reason instead
    /// of waiting for each batch's own timeout (a new pass tries again).
    Down(String),
}

/// Publishes events to JetStream and looks them up in the stream.
pub struct NatsSender {
    cfg: NatsSettings,
    creds: Credentials,
    hostname: String,
    conn: Mutex<Link>,
}

impl NatsSender {
    /// `creds`: loaded from the environment or files (none for a dry run); `hostname`: the line
    /// protocol's tag.
    pub fn new(cfg: NatsSettings, creds: Credentials, hostname: String) -> Self {
        Self { cfg, creds, hostname, conn: Mutex::new(Link::None) }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    fn servers(&self) -> String {
        self.cfg.servers.join(", ")
    }

    /// The message an item becomes.
    pub fn payload(&self, d: &Delivery, run: Option<&JobRun>) -> Result<String, EventError> {
        event::payload(self.cfg.format, &self.hostname, d, run)
    }

    fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        let o = match &self.creds {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.expose().to_string())
            }
            Credentials::Token(t) => async_nats::ConnectOptions::with_token(t.expose().to_string()),
            Credentials::Nkey(seed) => async_nats::ConnectOptions::with_nkey(seed.expose().to_string()),
            Credentials::Creds(text) => async_nats::ConnectOptions::with_credentials(text.expose())
                .map_err(|_| "the creds file is not a NATS credentials file (a user JWT and seed)".to_string())?,
        };
        Ok(o.name("slurm-ledger")
            .connection_timeout(self.timeout())
            .request_timeout(Some(self.timeout()))
            .max_reconnects(Some(1)))
    }

    /// Connects and checks the stream: it exists and captures the subject. Every error says
    /// what to do, and never holds a secret.
    fn connect(&self) -> Result<Conn, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the NATS client's runtime: {e}"))?;
        let opts = self.options()?;
        let timeout = self.timeout();
        let servers = self.servers();
        let client = rt
            .block_on(async { tokio::time::timeout(timeout * 2, opts.connect(self.cfg.servers.as_slice())).await })
            .map_err(|_| format!("cannot reach NATS at {servers}: no answer within {}s", timeout.as_secs() * 2))?
            .map_err(|e| connect_error(&servers, &self.creds, e))?;
        // The context spawns its acker task on the runtime: it must be entered.
        let js = {
            let _in = rt.enter();
            jetstream::ContextBuilder::new().timeout(timeout).build(client)
        };
        let stream = rt.block_on(js.get_stream(&self.cfg.stream)).map_err(|e| self.stream_error(e))?;
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|f| captures(f, &self.cfg.subject)) {
            return Err(format!(
                "JetStream stream {} on {servers} captures {subjects:?}, not subject {:?}: add it (`nats stream edit {} \
                 --subjects {},{}`) or set sinks.nats.subject to a subject it captures",
                self.cfg.stream,
                self.cfg.subject,
                self.cfg.stream,
                subjects.join(","),
                self.cfg.subject,
            ));
        }
        Ok(Conn { rt, js })
    }

    fn stream_error(&self, e: jetstream::context::GetStreamError) -> String {
        use jetstream::context::GetStreamErrorKind as K;
        let (stream, subject, servers) = (&self.cfg.stream, &self.cfg.subject, self.servers());
        match e.kind() {
            K::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => format!(
                "JetStream stream {stream} does not exist on {servers}: create it (`nats stream add {stream} --subjects \
                 {subject} --storage file --defaults`), or set sinks.nats.stream to the stream that captures {subject}"
            ),
            K::Request if no_responders(&e) => format!(
                "JetStream is not enabled on {servers} (no answer to its API): start nats-server with -js, or \
                 `jetstream {{}}` in its config, for this account"
            ),
            _ => format!("asking {servers} about JetStream stream {stream}: {e}"),
        }
    }

    /// Runs `f` on the connection, made now if there is none and none failed in this pass;
    /// `Err`: no connection (why). `f` says whether the connection may be kept.
    fn with_conn<T>(&self, f: impl FnOnce(&Conn) -> (T, bool)) -> Result<T, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Link::None = *guard {
            *guard = match self.connect() {
                Ok(c) => Link::Up(Box::new(c)),
                Err(why) => {
                    // Once a pass: the batches after this one fail fast with the same reason.
                    tracing::warn!(sink = "nats", reason = %why, "no connection to NATS");
                    Link::Down(why)
                }
            };
        }
        let conn = match &*guard {
            Link::Up(c) => c,
            Link::Down(why) => return Err(why.clone()),
            Link::None => unreachable!("connected above"),
        };
        let (out, keep) = f(conn);
        if !keep {
            // An answer that did not come: nothing queued on this connection may go out later.
            *guard = Link::None;
        }
        Ok(out)
    }

    /// Publishes every message, then awaits the acks (pipelined: about one round trip a batch).
    async fn publish_all(
        js: &jetstream::Context,
        subject: &str,
        msgs: Vec<(&str, String)>,
        timeout: Duration,
    ) -> Vec<Outcome> {
        let mut acks = Vec::with_capacity(msgs.len());
        for (id, payload) in msgs {
            let p = PublishMessage::build().payload(bytes::Bytes::from(payload)).message_id(id);
            acks.push(js.send_publish(subject.to_string(), p).await);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::with_capacity(acks.len());
        for ack in acks {
            out.push(match ack {
                // Not queued: it never left.
                Err(e) => Outcome::Retry {
                    reason: format!("the NATS client did not take the message: {e}"),
                    after_secs: None,
                },
                Ok(fut) => match tokio::time::timeout_at(deadline, fut.into_future()).await {
                    Err(_) => Outcome::Unknown { reason: format!("no JetStream ack within {}s", timeout.as_secs()) },
                    Ok(Ok(ack)) => Outcome::Delivered { remote_id: Some(format!("{}:{}", ack.stream, ack.sequence)) },
                    Ok(Err(e)) => publish_error(subject, e),
                },
            });
        }
        out
    }

    /// Which of `wanted` the stream holds on the subject among the messages stored at or after
    /// `from` (all when `None`), up to its last message when the read began; the stream sequence
    /// of each found. Reads headers only, and stops once all are found.
    async fn scan(
        js: &jetstream::Context,
        stream: &str,
        subject: &str,
        from: Option<UnixTime>,
        wanted: &HashSet<&str>,
        timeout: Duration,
    ) -> Result<HashMap<String, u64>, String> {
        let mut found = HashMap::new();
        let stream = js.get_stream(stream).await.map_err(|e| format!("reading JetStream stream {stream}: {e}"))?;
        let last = stream.cached_info().state.last_sequence;
        let deliver_policy = match from {
            Some(t) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp(t.0)
                    .map_err(|e| format!("look-up start {t}: {e}"))?,
            },
            None => DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy,
                filter_subject: subject.to_string(),
                headers_only: true,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("reading JetStream stream {}: {e}", stream.cached_info().config.name))?;
        let mut pending = consumer.cached_info().num_pending;
        let mut result = Ok(());
        'read: while pending > 0 && found.len() < wanted.len() {
            let mut batch = match consumer.fetch().max_messages(FETCH).expires(timeout).messages().await {
                Ok(b) => b,
                Err(e) => {
                    result = Err(format!("reading the stream: {e}"));
                    break;
                }
            };
            let mut got = 0;
            loop {
                let next = match tokio::time::timeout(timeout + Duration::from_secs(10), batch.next()).await {
                    Ok(Some(Ok(m))) => m,
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        result = Err(format!("reading the stream: {e}"));
                        break 'read;
                    }
                    Err(_) => {
                        result = Err(format!("reading the stream: no message within {}s", timeout.as_secs()));
                        break 'read;
                    }
                };
                got += 1;
                let info = match next.info() {
                    Ok(i) => (i.stream_sequence, i.pending),
                    Err(e) => {
                        result = Err(format!("reading the stream: a message without its place ({e})"));
                        break 'read;
                    }
                };
                let (seq, left) = info;
                pending = if seq >= last { 0 } else { left };
                if let Some(id) = next.headers.as_ref().and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)) {
                    if let Some(w) = wanted.get(id.as_str()) {
                        found.insert((*w).to_string(), seq);
                    }
                }
            }
            if got == 0 && pending > 0 && found.len() < wanted.len() {
                result = Err(format!("reading the stream: it stopped with {pending} message(s) left to read"));
                break;
            }
        }
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await; // it expires by itself after 60 s anyway
        result.map(|()| found)
    }
}

/// Whether a JetStream API error is "no responders" (JetStream not enabled for the account).
fn no_responders(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        if let Some(r) = s.downcast_ref::<jetstream::context::RequestError>() {
            return r.kind() == RequestErrorKind::NoResponders;
        }
        cur = s.source();
    }
    false
}

/// A failed connect, with what to do; `Retry` (nothing was sent).
fn connect_error(servers: &str, creds: &Credentials, e: async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as K;
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => format!(
            "NATS at {servers} refused the login with {} ({e}): check the credentials sinks.nats names against the \
             server's authorization",
            creds.describe()
        ),
        K::TimedOut => format!("cannot reach NATS at {servers}: timed out"),
        _ => format!("cannot reach NATS at {servers}: {e}"),
    }
}

/// A publish the server answered without an ack, or whose ack was lost.
fn publish_error(subject: &str, e: jetstream::context::PublishError) -> Outcome {
    let retry = |reason: String| Outcome::Retry { reason, after_secs: None };
    match e.kind() {
        PublishErrorKind::StreamNotFound => {
            retry(format!("no JetStream stream captures subject {subject:?} (the server answered: no responders)"))
        }
        PublishErrorKind::TimedOut => Outcome::Unknown { reason: format!("no JetStream ack: {e}") },
        PublishErrorKind::BrokenPipe => Outcome::Unknown { reason: "the connection was lost before the ack".into() },
        PublishErrorKind::MaxAckPending
        | PublishErrorKind::WrongLastMessageId
        | PublishErrorKind::WrongLastSequence => retry(format!("JetStream did not take the message: {e}")),
        PublishErrorKind::Other => {
            let js = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<jetstream::Error>());
            match js {
                Some(j) if j.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => Outcome::Rejected {
                    reason: format!("JetStream refuses the message's size ({j}): raise the stream's max_msg_size"),
                },
                // The stream answered with an error: it did not store the message.
                Some(j) => retry(format!("JetStream did not store the message: {j}")),
                None => Outcome::Unknown { reason: format!("the JetStream ack could not be read: {e}") },
            }
        }
    }
}

impl NatsSender {
    /// A batch published, then its acks awaited; one outcome per item, in order.
    fn publish_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
        let mut msgs = Vec::with_capacity(items.len());
        for (d, run) in items {
            match self.payload(d, *run) {
                Ok(p) => {
                    msgs.push((d.id.as_str(), p));
                    out.push(None);
                }
                Err(e) => out.push(Some(Outcome::Rejected { reason: e.to_string() })),
            }
        }
        if msgs.is_empty() {
            return out.into_iter().map(|o| o.expect("rendering failed")).collect();
        }
        let (subject, timeout) = (self.cfg.subject.as_str(), self.timeout());
        let sent = self.with_conn(|c| {
            let outcomes = c.rt.block_on(Self::publish_all(&c.js, subject, msgs, timeout));
            let keep = !outcomes.iter().any(|o| matches!(o, Outcome::Unknown { .. }));
            (outcomes, keep)
        });
        let mut sent = match sent {
            Ok(outcomes) => outcomes.into_iter(),
            Err(reason) => {
                // No connection: nothing left.
                let n = out.iter().filter(|o| o.is_none()).count();
                vec![Outcome::Retry { reason, after_secs: None }; n].into_iter()
            }
        };
        out.into_iter()
            .map(|o| {
                o.or_else(|| sent.next())
                    .unwrap_or(Outcome::Unknown { reason: "the NATS client gave no answer for this item".into() })
            })
            .collect()
    }
}

impl Sender for NatsSender {
    fn send(&self, d: &Delivery, run: Option<&JobRun>) -> Outcome {
        self.publish_batch(&[(d, run)]).remove(0)
    }

    /// Its own batch, not the engine's sends one by one: the whole batch is published on one
    /// connection without waiting, then the acks are awaited together, so a batch already costs
    /// about one round trip; threads would only queue on the one connection and runtime.
    /// JetStream has no 429 (a full stream is an error per message), so nothing here throttles.
    fn send_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Option<Vec<Outcome>> {
        Some(self.publish_batch(items))
    }

    /// A new connection each pass: one kept idle between passes (the daemon) may have been
    /// dropped by the server without this process noticing; one that failed is tried again.
    fn begin_pass(&self, _now: UnixTime) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Link::None;
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn lookup(&self, d: &Delivery, run: Option<&JobRun>) -> Lookup {
        self.lookup_batch(&[(d, run)]).remove(0)
    }

    /// See the module doc of `sinks::nats`: an item whose last send was refused (`retry`) is
    /// not on the server; the others are looked for in one read of the stream from the
    /// earliest of their events, less [`LOOKUP_MARGIN_SECS`].
    fn lookup_batch(&self, items: &[(&Delivery, Option<&JobRun>)]) -> Vec<Lookup> {
        let asked: Vec<&Delivery> = items.iter().map(|(d, _)| *d).filter(|d| d.state != DeliveryState::Retry).collect();
        if asked.is_empty() {
            return items.iter().map(|_| Lookup::NotFound).collect();
        }
        let wanted: HashSet<&str> = asked.iter().map(|d| d.id.as_str()).collect();
        // The earliest instant any of them can have been published: its event's, less the margin.
        let from = asked
            .iter()
            .map(|d| {
                let at = match (EventKind::of_id(&d.id), d.span) {
                    (Some(EventKind::Stop), Some((_, end))) => Some(end),
                    (_, Some((start, _))) => Some(start),
                    (_, None) => None,
                };
                at.map(|t| UnixTime(t.0 - LOOKUP_MARGIN_SECS))
            })
            .try_fold(UnixTime(i64::MAX), |a, t| t.map(|t| a.min(t)));
        let (stream, subject, timeout) = (self.cfg.stream.as_str(), self.cfg.subject.as_str(), self.timeout());
        let read = self.with_conn(|c| {
            let r = c.rt.block_on(Self::scan(&c.js, stream, subject, from, &wanted, timeout));
            let keep = r.is_ok();
            (r, keep)
        });
        let found = match read.and_then(|r| r) {
            Ok(found) => found,
            Err(reason) => {
                return items
                    .iter()
                    .map(|(d, _)| match d.state {
                        DeliveryState::Retry => Lookup::NotFound,
                        _ => Lookup::Failed { reason: reason.clone() },
                    })
                    .collect()
            }
        };
        items
            .iter()
            .map(|(d, _)| match found.get(d.id.as_str()) {
                Some(seq) => Lookup::Found { remote_id: Some(format!("{stream}:{seq}")) },
                None => Lookup::NotFound,
            })
            .collect()
    }

    fn describe(&self, d: &Delivery, run: Option<&JobRun>) -> String {
        match self.payload(d, run) {
            Ok(p) => format!(
                "publish to subject {} (stream {})\nNats-Msg-Id: {}\n{p}",
                self.cfg.subject, self.cfg.stream, d.id
            ),
            Err(e) => format!("(cannot render: {e})"),
        }
    }
}
