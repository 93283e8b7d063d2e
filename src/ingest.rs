//! Ingest: from a [`Received`] message to one [`Job`] per matching endpoint.
//!
//! For each message: enforce `max_payload_bytes`, require JSON (UTF-8 throughout, nesting at
//! most `max_json_depth` deep), unwrap the registry's envelope when asked, compute the
//! idempotency key and event type, drop repeats of a key seen within `dedupe_window` (one
//! pipelined `SET NX PX` per batch), and fan out to the endpoints whose `channels` and
//! `event_types` match. Anything that cannot be ingested goes to the dead-letter stream with
//! the reason; nothing is dropped silently.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{EndpointConfig, TargetConfig, TargetKind};
use crate::endpoint_state::EndpointState;
use crate::message::{DeadLetter, DeadLetterSink, Job, Stage};
use crate::queue::Queue;
use crate::queue::memory::Full;
use crate::queue::redis::{JOURNAL_LUA, JournalEndpoint, journal_cmd};
use crate::source::Received;
use crate::telemetry::metric;
use crate::util::time::unix_ms;

/// What ingest makes of a received message; defined with the other shared types, named here
/// too because ingest is where it is made.
pub use crate::message::Message;

/// Why a message could not be ingested. Each becomes a dead-letter entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// Over `security.max_payload_bytes`.
    #[error("payload too large: {size} bytes > security.max_payload_bytes {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// `unwrap_envelope` is on but the message is not an envelope.
    #[error("not a registry envelope: {0}")]
    NotEnvelope(&'static str),
    /// Bytes that are not UTF-8 (JSON text is UTF-8 throughout, strings included).
    #[error("payload is not valid JSON: invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// Arrays and objects nested deeper than `security.max_json_depth`.
    #[error(
        "payload nests arrays/objects deeper than security.max_json_depth {max} (at byte {offset})"
    )]
    TooDeep {
        /// The limit.
        max: usize,
        /// Offset of the bracket that went over it.
        offset: usize,
    },
}

/// Checks what [`parse`] does not: that the whole body is UTF-8 and that arrays and objects
/// nest at most `max_depth` deep. Run it before [`parse`] on every message from outside.
///
/// Why by hand: serde_json checks neither in what it skips — a value held as a `RawValue`
/// or read as `IgnoredAny` may carry invalid UTF-8 inside a string and any nesting depth,
/// and its fixed recursion limit (128) applies only to values it builds. One pass over the
/// bytes, no allocation: `std::str::from_utf8` for the encoding, then a bracket count that
/// skips string contents (a multi-byte UTF-8 sequence never contains an ASCII byte, so `"`,
/// `\`, `[` and `{` are found reliably). JSON syntax itself is left to serde_json in
/// [`parse`].
pub fn validate(body: &[u8], max_depth: usize) -> Result<(), IngestError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(IngestError::InvalidUtf8 {
            offset: e.valid_up_to(),
        });
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(IngestError::TooDeep {
                        max: max_depth,
                        offset,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The parts of a message ingest needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Idempotency key.
    pub idempotency_key: String,
    /// Event type.
    pub event_type: String,
    /// The body to POST.
    pub body: Bytes,
    /// `traceparent` field of the payload.
    pub traceparent: Option<String>,
}

/// A JSON object's top-level fields in order, values left unparsed. Keys borrow from the
/// input unless they contain escapes; a repeated key resolves to its last value, as in a map.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// A key that borrows from the input when it can.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k.0, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A top-level JSON object's fields, values left unparsed (no allocation per value).
fn object_fields(bytes: &[u8]) -> Result<Option<Fields<'_>>, IngestError> {
    match serde_json::from_slice::<Fields<'_>>(bytes) {
        Ok(map) => Ok(Some(map)),
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Ok(None), // valid JSON, just not an object
            Err(e) => Err(IngestError::NotJson(e.to_string())),
        },
    }
}

/// A field as header text (event type, trace context, explicit key): strings unquoted,
/// numbers and booleans as written; `null` counts as absent. Key fields are rendered by
/// [`crate::key_render`] instead.
fn field_text(v: &RawValue) -> Option<String> {
    let raw = v.get();
    if raw.starts_with('"') {
        serde_json::from_str::<String>(raw).ok()
    } else if raw == "null" || raw.starts_with('{') || raw.starts_with('[') {
        None
    } else {
        Some(raw.to_string())
    }
}

/// Parses a received body: size limit, JSON, envelope, key and event type.
pub fn parse(
    body: &Bytes,
    channel: &str,
    unwrap_envelope: bool,
    key_fields: &[String],
    max_payload_bytes: usize,
) -> Result<Parsed, IngestError> {
    if body.len() > max_payload_bytes {
        return Err(IngestError::TooLarge {
            size: body.len(),
            max: max_payload_bytes,
        });
    }
    let top = object_fields(body)?;
    let (payload_bytes, envelope_id, envelope_type) = if unwrap_envelope {
        let env = top
            .as_ref()
            .ok_or(IngestError::NotEnvelope("not a JSON object"))?;
        let payload = env
            .get("payload")
            .ok_or(IngestError::NotEnvelope("no `payload` field"))?;
        let id = env
            .get("message_id")
            .and_then(field_text)
            .ok_or(IngestError::NotEnvelope("no `message_id` field"))?;
        let mtype = env.get("message_type").and_then(field_text);
        (body.slice_ref(payload.get().as_bytes()), Some(id), mtype)
    } else {
        (body.clone(), None, None)
    };
    let fields = if unwrap_envelope {
        object_fields(&payload_bytes)?
    } else {
        top
    };
    let get = |k: &str| fields.as_ref().and_then(|f| f.get(k)).and_then(field_text);

    // Key precedence: the payload's `idempotency_key`, then the key fields (rendered as the
    // registry's Python renders them, see `key_render`), then the envelope's `message_id`,
    // then a hash. The fields come before `message_id` because the registry's pub/sub message
    // carries no envelope: only a key computed from the payload is the same on both paths.
    // A key that cannot travel as a header value (empty, too long, control or non-ASCII
    // characters) is passed over for the next rule, so every delivery carries one.
    let idempotency_key = get("idempotency_key")
        .filter(|k| is_header_token(k))
        .or_else(|| {
            key_from_fields(key_fields, &|k: &str| {
                fields
                    .as_ref()
                    .and_then(|f| f.get(k))
                    .and_then(crate::key_render::python_text)
            })
        })
        .or_else(|| envelope_id.filter(|k| is_header_token(k)))
        .unwrap_or_else(|| fallback_key(channel, &payload_bytes));
    let event_type = get("event_type")
        .filter(|t| is_header_text(t))
        .or_else(|| get("message_type").filter(|t| is_header_text(t)))
        .or(envelope_type.filter(|t| is_header_text(t)))
        .unwrap_or_else(|| header_safe(channel));
    Ok(Parsed {
        idempotency_key,
        event_type,
        traceparent: get("traceparent"),
        body: payload_bytes,
    })
}

/// Longest idempotency key or event type taken from a payload.
const MAX_HEADER_TEXT: usize = 256;

/// Non-empty visible ASCII without spaces, at most 256 bytes: usable as an idempotency key.
fn is_header_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_HEADER_TEXT && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Non-empty printable ASCII (spaces allowed), at most 256 bytes: usable as an event type.
fn is_header_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_HEADER_TEXT && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `s` with every character a header value cannot carry replaced by `_`.
fn header_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .take(MAX_HEADER_TEXT)
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect();
    if t.is_empty() { "_".into() } else { t }
}

/// `uuid5(NAMESPACE_DNS, "<f1>:<f2>:…")` when every configured field is present (`get`
/// gives a field's text, see [`crate::key_render`]): the registry's Python publisher computes
/// the same key, so receivers de-duplicate across paths.
pub fn key_from_fields(fields: &[String], get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(fields.len());
    for f in fields {
        parts.push(get(f)?);
    }
    Some(Uuid::new_v5(&Uuid::NAMESPACE_DNS, parts.join(":").as_bytes()).to_string())
}

/// `uuid5(NAMESPACE_DNS, hex(SHA-256(channel + "\n" + body)))`: stable for the same bytes on
/// the same channel, whichever replica reads them.
pub fn fallback_key(channel: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(channel.as_bytes());
    h.update(b"\n");
    h.update(body);
    let digest = hex::encode(h.finalize());
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, digest.as_bytes()).to_string()
}

/// One endpoint as ingest sees it: its filters and its queue.
#[derive(Clone)]
pub struct Route {
    /// The endpoint's config (filters).
    pub endpoint: Arc<EndpointConfig>,
    /// Its queue.
    pub queue: Queue,
    /// Its stream key (durable queue).
    pub stream: String,
    /// Its ledger's `queued` set (durable queue).
    pub ledger: String,
    /// Its live counters.
    pub state: Arc<EndpointState>,
}

/// The routing table; swapped whole on config reload.
pub type Routes = Arc<RwLock<Arc<Vec<Route>>>>;

/// Settings ingest reads for every message.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// `delivery.idempotency_key_fields`.
    pub key_fields: Vec<String>,
    /// `security.max_payload_bytes`.
    pub max_payload_bytes: usize,
    /// `security.max_json_depth`.
    pub max_json_depth: usize,
    /// `delivery.dedupe_window`.
    pub dedupe_window: Duration,
    /// `<key_prefix>:seen:` — prefix of de-duplication keys.
    pub seen_prefix: String,
    /// Journal into Redis streams (`durability = "redis"`) or push to memory queues.
    pub durable: bool,
}

/// The ingest stage: reads received messages in batches and fans them out.
pub struct Ingest {
    /// Settings.
    pub settings: IngestSettings,
    /// Routing table.
    pub routes: Routes,
    /// Where what cannot be ingested goes (the dead-letter stream).
    pub dlq: Arc<dyn DeadLetterSink>,
    /// Redis, for de-duplication and the journal.
    pub redis: ConnectionManager,
    /// Stops journal retries when Redis stays away during shutdown.
    pub shutdown: CancellationToken,
    /// Dual publishing (`--dual`), if on.
    pub republisher: Option<Republisher>,
}

/// Dual publishing: every fresh message is also written, exactly as received, to the
/// `[republish] targets`, so consumers of the old Redis path keep getting it while
/// webhooks take over. Only fresh messages are republished, so N replicas republish each
/// message once.
pub struct Republisher {
    targets: Vec<(TargetConfig, ConnectionManager, metrics::Counter)>,
}

impl Republisher {
    /// Connections for each target (the main one, or the target's own `redis_url`).
    pub fn new(
        targets: &[TargetConfig],
        main: &ConnectionManager,
    ) -> Result<Self, redis::RedisError> {
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let conn = match &t.redis_url {
                Some(url) => crate::redis::redis_manager(url)?,
                None => main.clone(),
            };
            let label = t.label();
            out.push((
                t.clone(),
                conn,
                metrics::counter!(metric::REPUBLISHED, "target" => label),
            ));
        }
        Ok(Self { targets: out })
    }

    /// Writes the fresh messages of a batch to every target, one pipeline per target,
    /// retrying for a while if a target's Redis is unreachable.
    pub async fn republish(&self, msgs: &[Arc<Message>], raws: &[Bytes], fresh: &[bool]) {
        let n = fresh.iter().filter(|f| **f).count();
        if n == 0 {
            return;
        }
        for (t, conn, counter) in &self.targets {
            let mut pipe = redis::pipe();
            for ((m, raw), f) in msgs.iter().zip(raws).zip(fresh) {
                if !f {
                    continue;
                }
                match t.kind {
                    TargetKind::Channel => {
                        pipe.cmd("PUBLISH").arg(&t.key).arg(raw.as_ref()).ignore()
                    }
                    TargetKind::List => pipe.cmd("LPUSH").arg(&t.key).arg(raw.as_ref()).ignore(),
                    TargetKind::Stream => pipe
                        .cmd("XADD")
                        .arg(&t.key)
                        .arg("*")
                        .arg("body")
                        .arg(raw.as_ref())
                        .arg("idempotency_key")
                        .arg(&m.idempotency_key)
                        .ignore(),
                };
            }
            let mut wait = Duration::from_millis(100);
            let mut tries = 0;
            loop {
                let mut c = conn.clone();
                match pipe.query_async::<()>(&mut c).await {
                    Ok(()) => {
                        counter.increment(n as u64);
                        break;
                    }
                    Err(e) if tries < 8 => {
                        tracing::warn!(target_key = %t.key, error = %e, "republishing failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                        tries += 1;
                    }
                    Err(e) => {
                        for m in msgs.iter().zip(fresh).filter(|(_, f)| **f).map(|(m, _)| m) {
                            tracing::error!(target_key = %t.key, idempotency_key = %m.idempotency_key, error = %e, "not republished (the webhook path still delivers it)");
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Most messages handled per batch (one Redis round trip each).
const BATCH: usize = 256;

impl Ingest {
    /// Runs until every sender of `rx` is gone (the sources stopped), draining what is left.
    pub async fn run(self, mut rx: mpsc::Receiver<Received>) {
        let journal = redis::Script::new(JOURNAL_LUA);
        let mut batch = Vec::with_capacity(BATCH);
        let mut msgs: Vec<Arc<Message>> = Vec::with_capacity(BATCH);
        let mut raws: Vec<Bytes> = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            msgs.clear();
            raws.clear();
            let mut acks = redis::pipe();
            let mut ack_count = 0;
            for r in &batch {
                if r.ack.is_some() {
                    crate::source::ack_into(&mut acks, r);
                    ack_count += 1;
                }
            }
            for r in batch.drain(..) {
                let parsed = if r.body.len() > self.settings.max_payload_bytes {
                    // `parse` reports it as too large without reading it.
                    Ok(())
                } else {
                    validate(&r.body, self.settings.max_json_depth)
                }
                .and_then(|()| {
                    parse(
                        &r.body,
                        &r.channel,
                        r.unwrap_envelope,
                        &self.settings.key_fields,
                        self.settings.max_payload_bytes,
                    )
                });
                match parsed {
                    Ok(p) => {
                        raws.push(r.body);
                        msgs.push(Arc::new(Message {
                            idempotency_key: p.idempotency_key,
                            event_type: p.event_type,
                            source: r.source,
                            channel: r.channel,
                            body: p.body,
                            received_at: r.received_at,
                            traceparent: p.traceparent,
                        }))
                    }
                    Err(e) => self.reject(&r, &e).await,
                }
            }
            if !msgs.is_empty() {
                let fresh = self.route_batch(&journal, &msgs).await;
                if let Some(rp) = &self.republisher {
                    rp.republish(&msgs, &raws, &fresh).await;
                }
            }
            if ack_count > 0 {
                self.ack_sources(&acks).await;
            }
        }
        tracing::debug!("ingest stopped");
    }

    /// Journals (or queues in memory) a batch of parsed messages; returns which were fresh
    /// (not repeats of a key seen within the window).
    async fn route_batch(&self, journal: &redis::Script, msgs: &[Arc<Message>]) -> Vec<bool> {
        {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let targets: Vec<Vec<&Route>> = msgs
                .iter()
                .map(|m| {
                    routes
                        .iter()
                        .filter(|r| r.endpoint.matches(&m.channel, &m.event_type))
                        .collect()
                })
                .collect();
            let fresh = if self.settings.durable {
                self.journal(journal, msgs, &targets).await
            } else {
                self.dedupe(msgs).await
            };
            for ((msg, targets), fresh) in msgs.iter().zip(&targets).zip(&fresh) {
                if !fresh {
                    metrics::counter!(metric::DUPLICATES_DROPPED).increment(1);
                    tracing::debug!(idempotency_key = %msg.idempotency_key, "duplicate dropped");
                    continue;
                }
                if targets.is_empty() {
                    tracing::debug!(idempotency_key = %msg.idempotency_key, channel = %msg.channel, event_type = %msg.event_type, "no endpoint matches");
                }
                if !self.settings.durable {
                    for route in targets {
                        self.push_memory(route, msg).await;
                    }
                }
            }
            fresh
        }
    }

    /// Tells list and stream sources that their messages are journaled. If Redis is away
    /// the items stay in the processing list / pending list and are read again later; the
    /// journal's de-duplication drops them then.
    async fn ack_sources(&self, acks: &redis::Pipeline) {
        let mut wait = Duration::from_millis(100);
        for _ in 0..5 {
            let mut conn = self.redis.clone();
            match acks.query_async::<()>(&mut conn).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "acknowledging source messages failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// Records each key and journals each message into its endpoints' streams, the whole batch
    /// atomically in one script call ([`JOURNAL_LUA`]). Retries while Redis is unreachable: a
    /// received message is only ever dropped here if Redis stays away through shutdown
    /// (logged).
    async fn journal<'a>(
        &self,
        script: &redis::Script,
        msgs: &[Arc<Message>],
        targets: &[Vec<&'a Route>],
    ) -> Vec<bool> {
        let ms = self.settings.dedupe_window.as_millis().max(1) as u64;
        // Each endpoint once; each message with the indices of its endpoints.
        let mut endpoints: Vec<JournalEndpoint<'_>> = Vec::new();
        let mut index_of = |r: &'a Route| {
            endpoints
                .iter()
                .position(|e| e.stream == r.stream)
                .unwrap_or_else(|| {
                    endpoints.push(JournalEndpoint {
                        stream: &r.stream,
                        ledger: &r.ledger,
                    });
                    endpoints.len() - 1
                })
        };
        let batch: Vec<(&Message, Vec<usize>)> = msgs
            .iter()
            .zip(targets)
            .map(|(m, t)| (&**m, t.iter().map(|r| index_of(r)).collect()))
            .collect();
        let mut wait = Duration::from_millis(100);
        loop {
            let cmd = journal_cmd(
                script.get_hash(),
                &self.settings.seen_prefix,
                ms,
                unix_ms(SystemTime::now()),
                &endpoints,
                &batch,
            );
            let mut conn = self.redis.clone();
            match cmd.query_async::<Vec<i64>>(&mut conn).await {
                Ok(r) if r.len() == msgs.len() => return r.into_iter().map(|x| x == 1).collect(),
                Ok(r) => {
                    // Cannot happen with this script; counting them fresh errs on delivering.
                    tracing::error!(
                        expected = msgs.len(),
                        got = r.len(),
                        "unexpected journal reply"
                    );
                    return vec![true; msgs.len()];
                }
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let loaded: redis::RedisResult<String> = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(JOURNAL_LUA)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = loaded {
                        tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "cannot load the journal script");
                    }
                    continue;
                }
                Err(e) => {
                    if self.shutdown.is_cancelled() && wait >= Duration::from_secs(5) {
                        for m in msgs {
                            tracing::error!(idempotency_key = %m.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "Redis unreachable through shutdown: received message not journaled, lost");
                        }
                        return vec![false; msgs.len()];
                    }
                    tracing::warn!(redis = %crate::redis::redis_address(), error = %e, messages = msgs.len(), retry_in_ms = wait.as_millis() as u64, "cannot journal received messages; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// For each message: whether its key was not seen within the window. If Redis cannot be
    /// asked, every message counts as fresh: delivering twice (receivers de-duplicate by key)
    /// beats losing one.
    async fn dedupe(&self, msgs: &[Arc<Message>]) -> Vec<bool> {
        let ms = self.settings.dedupe_window.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        for m in msgs {
            pipe.cmd("SET")
                .arg(format!(
                    "{}{}",
                    self.settings.seen_prefix, m.idempotency_key
                ))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms);
        }
        let mut conn = self.redis.clone();
        match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
            Ok(replies) => replies.into_iter().map(|r| r.is_some()).collect(),
            Err(e) => {
                tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "de-duplication unavailable; delivering without it");
                vec![true; msgs.len()]
            }
        }
    }

    /// Pushes a job to a memory queue; a full queue dead-letters it instead.
    async fn push_memory(&self, route: &Route, msg: &Arc<Message>) {
        let Queue::Memory(q) = &route.queue else {
            return;
        };
        match q.push(Job::new(msg.clone())) {
            Ok(()) => {}
            Err(Full(job)) => {
                let dl = DeadLetter::from_job(
                    &job,
                    &route.endpoint.name,
                    Stage::Ingest,
                    "endpoint queue is full (durability = memory holds at most 100000 jobs per endpoint)",
                );
                self.dlq.record(&dl, Duration::from_secs(30)).await;
                route.state.dead_lettered(&dl.error);
            }
        }
    }

    async fn reject(&self, r: &Received, e: &IngestError) {
        tracing::warn!(source = %r.source, channel = %r.channel, error = %e, "message cannot be ingested; dead-lettered");
        let now = SystemTime::now();
        let dl = DeadLetter {
            id: String::new(),
            endpoint: String::new(),
            stage: Stage::Ingest,
            idempotency_key: fallback_key(&r.channel, &r.body),
            event_type: String::new(),
            source: r.source.to_string(),
            channel: r.channel.clone(),
            body: r.body.clone(),
            attempts: 0,
            last_status: None,
            error: e.to_string(),
            received_at_ms: unix_ms(r.received_at),
            failed_at_ms: unix_ms(now),
            truncated: None,
        };
        self.dlq.record(&dl, Duration::from_secs(30)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> serde_json::Value {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/signatures.json"
        )))
        .unwrap()
    }

    fn default_fields() -> Vec<String> {
        ["model_id", "token_symbol", "mlflow_run_id", "model_version"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_repeated_field_counts_with_its_last_value_and_escaped_keys_are_matched() {
        let body = Bytes::from_static(
            br#"{"event_type":"first","idempotency_key":"k-1","event_type":"last","trace\u0070arent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#,
        );
        let p = parse(&body, "c", false, &[], 1 << 20).unwrap();
        assert_eq!(p.event_type, "last", "like a JSON map: the last value wins");
        assert_eq!(p.idempotency_key, "k-1");
        assert_eq!(
            p.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "a key written with an escape is the same key"
        );
    }

    #[test]
    fn reproduces_the_registry_publishers_idempotency_key() {
        let f = fixtures();
        let body = Bytes::from(
            f["model_ready_message"]["body"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let p = parse(
            &body,
            "hokusai:model_ready_queue:pubsub",
            false,
            &default_fields(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            p.idempotency_key,
            f["model_ready_message"]["idempotency_key"]
                .as_str()
                .unwrap()
        );
        assert_eq!(p.body, body, "the body is forwarded byte for byte");
    }

    #[test]
    fn unwraps_the_envelope_and_keys_it_like_the_pubsub_message() {
        let f = fixtures();
        let body = Bytes::from(f["envelope"]["body"].as_str().unwrap().to_string());
        let p = parse(
            &body,
            "hokusai:model_ready_queue",
            true,
            &default_fields(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            p.idempotency_key,
            f["model_ready_message"]["idempotency_key"]
                .as_str()
                .unwrap(),
            "the payload carries the key fields: the same key as the pub/sub message"
        );
        assert_eq!(p.event_type, "model_ready_to_deploy");
        let expected_payload = f["model_ready_message"]["body"].as_str().unwrap();
        assert_eq!(std::str::from_utf8(&p.body).unwrap(), expected_payload);
    }

    /// The registry's list envelope and its pub/sub message for one event (the envelope's
    /// payload is the pub/sub body), and the key Python computes:
    /// `uuid5(NAMESPACE_DNS, "model-7f3a:demo-token:9b1c2d3e4f:3")`.
    const PUBSUB_BODY: &str = r#"{"model_id":"model-7f3a","token_symbol":"demo-token","model_version":"3","mlflow_run_id":"9b1c2d3e4f","tags":{"team":"nlp"}}"#;
    const REGISTRY_KEY: &str = "401caf00-623e-52e3-87e7-7be962a61f23";

    fn envelope(payload: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"message_id":"3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192","message_type":"model_ready_to_deploy","payload":{payload},"timestamp":"2026-11-28T15:00:00","retry_count":0,"max_retries":3}}"#
        ))
    }

    #[test]
    fn the_envelope_and_the_pubsub_message_of_one_event_get_the_same_key() {
        let f = default_fields();
        let direct = parse(&Bytes::from(PUBSUB_BODY), "pubsub", false, &f, 1 << 20).unwrap();
        let wrapped = parse(&envelope(PUBSUB_BODY), "list", true, &f, 1 << 20).unwrap();
        assert_eq!(direct.idempotency_key, REGISTRY_KEY);
        assert_eq!(wrapped.idempotency_key, REGISTRY_KEY);
        assert_eq!(wrapped.body, Bytes::from(PUBSUB_BODY));
    }

    #[test]
    fn an_envelope_whose_payload_lacks_the_key_fields_keeps_its_message_id() {
        let p = parse(
            &envelope(r#"{"model_id":"m","note":"no token symbol"}"#),
            "list",
            true,
            &default_fields(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(p.idempotency_key, "3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192");
        let p = parse(
            &envelope(r#"{"idempotency_key":"k-9","model_id":"m"}"#),
            "list",
            true,
            &default_fields(),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            p.idempotency_key, "k-9",
            "the payload's own key comes first"
        );
    }

    #[test]
    fn a_run_less_model_keys_with_none_like_the_registry() {
        let body = Bytes::from_static(
            br#"{"model_id":"m","token_symbol":"t","mlflow_run_id":null,"model_version":2.0,"x":true}"#,
        );
        let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
        assert_eq!(
            p.idempotency_key,
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"m:t:None:2.0").to_string()
        );
    }

    #[test]
    fn an_explicit_idempotency_key_field_wins_over_the_fields() {
        let body = Bytes::from_static(br#"{"idempotency_key":"k-1","model_id":"m","token_symbol":"t","mlflow_run_id":"r","model_version":"1"}"#);
        let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
        assert_eq!(p.idempotency_key, "k-1");
    }

    #[test]
    fn missing_fields_fall_back_to_a_hash_of_channel_and_body() {
        let body = Bytes::from_static(br#"{"model_id":"m"}"#);
        let a = parse(&body, "c1", false, &default_fields(), 1 << 20).unwrap();
        let b = parse(&body, "c1", false, &default_fields(), 1 << 20).unwrap();
        let c = parse(&body, "c2", false, &default_fields(), 1 << 20).unwrap();
        assert_eq!(a.idempotency_key, b.idempotency_key);
        assert_ne!(a.idempotency_key, c.idempotency_key);
        assert_eq!(a.idempotency_key, fallback_key("c1", &body));
    }

    #[test]
    fn event_type_comes_from_event_type_then_message_type_then_channel() {
        let fields = default_fields();
        let p = |b: &'static [u8]| {
            parse(&Bytes::from_static(b), "chan", false, &fields, 1 << 20)
                .unwrap()
                .event_type
        };
        assert_eq!(p(br#"{"event_type":"a","message_type":"b"}"#), "a");
        assert_eq!(p(br#"{"message_type":"b"}"#), "b");
        assert_eq!(p(br#"{"x":1}"#), "chan");
        assert_eq!(p(br#"[1,2]"#), "chan");
    }

    #[test]
    fn non_json_and_oversized_messages_are_rejected_with_a_reason() {
        let f = default_fields();
        let e = parse(&Bytes::from_static(b"not json"), "c", false, &f, 1 << 20).unwrap_err();
        assert!(matches!(e, IngestError::NotJson(_)), "{e}");
        let e = parse(
            &Bytes::from_static(b"{\"a\":\"0123456789\"}"),
            "c",
            false,
            &f,
            8,
        )
        .unwrap_err();
        assert_eq!(e, IngestError::TooLarge { size: 18, max: 8 });
        assert!(e.to_string().contains("max_payload_bytes"));
        let e = parse(&Bytes::from_static(b"{\"a\":1}"), "c", true, &f, 1 << 20).unwrap_err();
        assert_eq!(e, IngestError::NotEnvelope("no `payload` field"));
    }

    #[test]
    fn keys_and_event_types_that_cannot_be_header_values_are_passed_over() {
        let f = default_fields();
        let body = Bytes::from(
            r#"{"idempotency_key":"","event_type":"caf\u00e9","message_type":"ok type","model_id":"m"}"#,
        );
        let p = parse(&body, "chan", false, &f, 1 << 20).unwrap();
        assert_eq!(p.event_type, "ok type");
        assert_eq!(p.idempotency_key, fallback_key("chan", &p.body));
        let body = Bytes::from_static(br#"{"idempotency_key":"a\nb"}"#);
        let p = parse(&body, "ch\u{e9}", false, &f, 1 << 20).unwrap();
        assert!(is_header_token(&p.idempotency_key), "{}", p.idempotency_key);
        assert_eq!(p.event_type, "ch_");
    }

    #[test]
    fn numeric_fields_join_as_written() {
        let body = Bytes::from_static(
            br#"{"model_id":"m","token_symbol":"t","mlflow_run_id":"r","model_version":3}"#,
        );
        let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
        assert_eq!(
            p.idempotency_key,
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"m:t:r:3").to_string()
        );
    }

    #[test]
    fn invalid_utf8_inside_a_string_is_refused_though_serde_would_skip_it() {
        let body: &[u8] = b"{\"model_id\":\"m\xff\xfe\",\"event_type\":\"x\"}";
        // What let it through before: serde_json skips the string without checking it.
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok());
        let e = validate(body, 128).unwrap_err();
        assert_eq!(e, IngestError::InvalidUtf8 { offset: 14 });
        assert!(e.to_string().contains("invalid UTF-8 at byte 14"), "{e}");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_and_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(validate(deep(128).as_bytes(), 128), Ok(()));
        assert_eq!(
            validate(deep(129).as_bytes(), 128),
            Err(IngestError::TooDeep {
                max: 128,
                offset: 128
            })
        );
        let e = validate(deep(100_000).as_bytes(), 128).unwrap_err();
        assert!(e.to_string().contains("security.max_json_depth 128"), "{e}");
        // Brackets and escaped quotes inside strings are text, not structure.
        let body = br#"{"a":"[[[{{{\"[[[","b":[{"c":"]]]"}]}"#;
        assert_eq!(validate(body, 3), Ok(()));
        assert!(validate(body, 2).is_err());
        // The registry's message passes.
        let f = fixtures();
        let msg = f["envelope"]["body"].as_str().unwrap();
        assert_eq!(validate(msg.as_bytes(), 128), Ok(()));
    }
}
