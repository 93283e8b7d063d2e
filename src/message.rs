//! The types every stage shares: the [`Message`] ingest makes of what a source received, the
//! [`Job`] that carries it to one endpoint, and the [`DeadLetter`] written for what the bridge
//! gives up on.
//!
//! [`DeadLetterSink`] is how ingest, the queues and delivery record a dead letter: the
//! dead-letter stream ([`crate::dlq::Dlq`]) implements it, so the stages before it never
//! depend on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::util::time::unix_ms;

/// A message after ingest, shared by all the jobs it fans out to.
#[derive(Debug)]
pub struct Message {
    /// Stable across retries, replicas, restarts and the registry's own publisher.
    pub idempotency_key: String,
    /// `X-Hokusai-Event`.
    pub event_type: String,
    /// Source name.
    pub source: Arc<str>,
    /// Channel or key it was read from.
    pub channel: String,
    /// The bytes to POST, exactly as published (or the envelope's `payload` text).
    pub body: Bytes,
    /// When the bridge read it.
    pub received_at: SystemTime,
    /// The publisher's `traceparent`, if the payload carried one.
    pub traceparent: Option<String>,
}

impl Message {
    /// A minimal message for unit tests.
    pub fn for_test(key: &str) -> Self {
        Self {
            idempotency_key: key.to_string(),
            event_type: "test".into(),
            source: Arc::from("test"),
            channel: "test".into(),
            body: Bytes::from_static(b"{}"),
            received_at: SystemTime::now(),
            traceparent: None,
        }
    }
}

/// One message bound for one endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    /// The message, shared by every endpoint it fans out to.
    pub msg: Arc<Message>,
    /// HTTP attempts made so far (the next one sends `X-Hokusai-Delivery-Attempt: attempts + 1`).
    pub attempts: u32,
    /// Status of the last attempt, if it got an answer.
    pub last_status: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// The dead-letter entry this job replays; removed once the job is settled.
    pub replay_of: Option<String>,
    /// The job's entry id in its Redis stream (durable queue only).
    pub queue_id: Option<String>,
}

impl Job {
    /// A job that has not been tried yet.
    pub fn new(msg: Arc<Message>) -> Self {
        Self {
            msg,
            attempts: 0,
            last_status: None,
            last_error: None,
            replay_of: None,
            queue_id: None,
        }
    }
}

/// Where in the pipeline a message was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Before routing: too large, not JSON, not an envelope, queue full.
    Ingest,
    /// After the endpoint's last retry, or a permanent failure.
    Delivery,
    /// The endpoint's `filter` failed on the message (at routing, or on replay).
    Filter,
    /// The endpoint's `transform` failed on the message (at delivery): a runtime error, not
    /// exactly one output, or a bound hit.
    Transform,
}

impl Stage {
    /// The name stored in the entry and shown by `dlq list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Delivery => "delivery",
            Stage::Filter => "filter",
            Stage::Transform => "transform",
        }
    }

    /// The stage an entry names (`delivery` for a name this version does not know).
    pub fn from_name(name: &str) -> Self {
        match name {
            "ingest" => Stage::Ingest,
            "filter" => Stage::Filter,
            "transform" => Stage::Transform,
            _ => Stage::Delivery,
        }
    }
}

/// One dead-letter entry.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Stream entry id (empty before it is written).
    pub id: String,
    /// The endpoint; empty for ingest failures, which belong to no endpoint yet.
    pub endpoint: String,
    /// Where it failed.
    pub stage: Stage,
    /// The message's idempotency key (empty if ingest failed before computing it).
    pub idempotency_key: String,
    /// The event type.
    pub event_type: String,
    /// Source name.
    pub source: String,
    /// Channel or key it was read from.
    pub channel: String,
    /// The body that was (or would have been) POSTed; for ingest failures, as received.
    #[serde(serialize_with = "body_as_text")]
    pub body: Bytes,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Last HTTP status, if any.
    pub last_status: Option<u16>,
    /// Why it was given up on.
    pub error: String,
    /// When the bridge read the message (unix ms).
    pub received_at_ms: u64,
    /// When it was dead-lettered (unix ms).
    pub failed_at_ms: u64,
    /// Set when `body` is only the leading bytes of an oversized body.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

impl DeadLetter {
    /// The entry for `job`, given up on for `endpoint` at `stage` because of `error`, now.
    pub fn from_job(job: &Job, endpoint: &str, stage: Stage, error: &str) -> Self {
        Self {
            id: String::new(),
            endpoint: endpoint.to_string(),
            stage,
            idempotency_key: job.msg.idempotency_key.clone(),
            event_type: job.msg.event_type.clone(),
            source: job.msg.source.to_string(),
            channel: job.msg.channel.clone(),
            body: job.msg.body.clone(),
            attempts: job.attempts,
            last_status: job.last_status,
            error: error.to_string(),
            received_at_ms: unix_ms(job.msg.received_at),
            failed_at_ms: unix_ms(SystemTime::now()),
            truncated: None,
        }
    }
}

/// What identifies an oversized body of which only a prefix is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncated {
    /// Size of the whole body, in bytes.
    pub body_size: u64,
    /// Lowercase hex SHA-256 of the whole body.
    pub body_sha256: String,
}

impl Truncated {
    /// Size and digest of `body`.
    pub fn of(body: &[u8]) -> Self {
        Self {
            body_size: body.len() as u64,
            body_sha256: hex::encode(Sha256::digest(body)),
        }
    }
}

fn body_as_text<S: serde::Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Failures of the dead-letter stream.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Redis refused or is unreachable.
    #[error("redis error on the dead-letter stream: {0}")]
    Redis(#[from] redis::RedisError),
    /// No entry with that id.
    #[error("no dead-letter entry with id {0}")]
    NotFound(String),
}

/// Where a stage records what it gives up on. Implemented by the dead-letter stream
/// ([`crate::dlq::Dlq`]); ingest, the queues and delivery hold it as a trait object, so that
/// none of them depends on the stage after it. Dead-lettering is off the hot path (the boxed
/// future of each call costs nothing next to the Redis write).
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Writes `dl`, retrying for at most `patience` while the store is unreachable. Returns
    /// the entry id, or `None` when it could not be written (the sink logs the loss).
    async fn record(&self, dl: &DeadLetter, patience: Duration) -> Option<String>;

    /// Removes entry `id`: a replayed entry whose new attempt is settled (delivered, or
    /// dead-lettered anew).
    async fn remove(&self, id: &str) -> Result<(), DlqError>;
}
