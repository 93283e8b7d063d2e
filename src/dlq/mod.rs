//! The dead-letter queue: a Redis stream at `<key_prefix>:dlq` holding every delivery the
//! bridge gave up on (and every message it could not ingest), with enough context to
//! understand and replay it. With `[fallback]` enabled, each dead-lettered body is also
//! written to the fallback target so legacy Redis consumers still get it.
//!
//! Bounded: a body larger than `security.max_payload_bytes` (never deliverable) is stored as
//! its first `[dlq] oversized_body_prefix_bytes` bytes plus its full size and SHA-256, so the
//! original can be found without the stream holding it; and every write trims the stream to
//! `[dlq] max_entries` and `max_age` (counted in `bridge_dlq_trimmed_total`). Listing reads
//! the stream in pages, so memory does not grow with its length.
//!
//! [`replay`] re-drives entries through the delivery workers; [`Dlq`] is the
//! [`DeadLetterSink`] the earlier stages dead-letter through.

pub mod browse;
pub mod replay;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;

use crate::config::{Config, DlqConfig, FallbackConfig, TargetKind};
use crate::message::{DeadLetter, DeadLetterSink, DlqError, Stage, Truncated};
use crate::telemetry::metric;
use crate::util::backoff::Backoff;
use crate::util::time::unix_ms;

/// Handle to the dead-letter stream. Cheap to clone.
#[derive(Clone)]
pub struct Dlq {
    conn: ConnectionManager,
    key: String,
    fallback: Option<FallbackConfig>,
    retention: DlqConfig,
    max_payload_bytes: usize,
}

/// Entries read per `XRANGE` while listing: a page holds at most this many bodies.
const PAGE: usize = 32;

impl Dlq {
    /// A handle for `cfg`'s dead-letter stream over `conn`.
    pub fn new(conn: ConnectionManager, cfg: &Config) -> Self {
        Self {
            conn,
            key: cfg.redis.key("dlq"),
            fallback: cfg.fallback.enabled.then(|| cfg.fallback.clone()),
            retention: cfg.dlq.clone(),
            max_payload_bytes: cfg.security.max_payload_bytes,
        }
    }

    /// The body to store for `dl`: the whole body, or — when it is larger than
    /// `security.max_payload_bytes` and so could never be delivered — its first
    /// `oversized_body_prefix_bytes` bytes (a slice, not a copy) with its size and digest.
    fn stored_body(&self, dl: &DeadLetter) -> (Bytes, Option<Truncated>) {
        if dl.truncated.is_some() || dl.body.len() <= self.max_payload_bytes {
            return (dl.body.clone(), dl.truncated.clone());
        }
        let keep = dl
            .body
            .len()
            .min(self.retention.oversized_body_prefix_bytes);
        (dl.body.slice(..keep), Some(Truncated::of(&dl.body)))
    }

    /// The stream key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Writes one entry (and the fallback copy) and trims the stream to the retention limits,
    /// in one MULTI/EXEC; returns the entry id.
    pub async fn add(&self, dl: &DeadLetter) -> Result<String, DlqError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.entry_into(&mut pipe, dl);
        let trims = self.trims_into(&mut pipe);
        self.fallback_into(&mut pipe, dl);
        let mut conn = self.conn.clone();
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
        let mut replies = replies.into_iter();
        let id: String = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))
            .map_err(redis::RedisError::from)?;
        metrics::gauge!(metric::DLQ_DEPTH).increment(1.0);
        for limit in trims.into_iter().flatten() {
            let trimmed: u64 = replies
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or(0);
            if trimmed > 0 {
                metrics::counter!(metric::DLQ_TRIMMED, "limit" => limit).increment(trimmed);
                metrics::gauge!(metric::DLQ_DEPTH).decrement(trimmed as f64);
                tracing::warn!(trimmed, limit = %format!("dlq.{limit}"), "oldest dead-letter entries trimmed");
            }
        }
        Ok(id)
    }

    /// Adds the XADD of `dl` (its reply is the entry id).
    fn entry_into(&self, pipe: &mut redis::Pipeline, dl: &DeadLetter) {
        let status = dl.last_status.map(|s| s.to_string()).unwrap_or_default();
        let (body, truncated) = self.stored_body(dl);
        let xadd = pipe
            .cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg("endpoint")
            .arg(&dl.endpoint)
            .arg("stage")
            .arg(dl.stage.as_str())
            .arg("idempotency_key")
            .arg(&dl.idempotency_key)
            .arg("event_type")
            .arg(&dl.event_type)
            .arg("source")
            .arg(&dl.source)
            .arg("channel")
            .arg(&dl.channel)
            .arg("body")
            .arg(body.as_ref())
            .arg("attempts")
            .arg(dl.attempts)
            .arg("last_status")
            .arg(status)
            .arg("error")
            .arg(&dl.error)
            .arg("received_at_ms")
            .arg(dl.received_at_ms)
            .arg("failed_at_ms")
            .arg(dl.failed_at_ms);
        if let Some(t) = &truncated {
            xadd.arg("body_size")
                .arg(t.body_size)
                .arg("body_sha256")
                .arg(&t.body_sha256);
        }
    }

    /// Adds the XTRIMs of the retention limits that are on; returns their names in the order
    /// of their replies (each reply is the count of entries it trimmed).
    fn trims_into(&self, pipe: &mut redis::Pipeline) -> [Option<&'static str>; 2] {
        // Exact trimming (no `~`): the limits are what the operator configured, and the count
        // XTRIM returns feeds the trimmed-entries metric.
        // Age first, so an entry removed for its age is counted as such.
        let by_age = !self.retention.max_age.0.is_zero();
        if by_age {
            let cutoff = unix_ms(SystemTime::now())
                .saturating_sub(self.retention.max_age.0.as_millis() as u64);
            pipe.cmd("XTRIM")
                .arg(&self.key)
                .arg("MINID")
                .arg(format!("{cutoff}-0"));
        }
        let by_count = self.retention.max_entries > 0;
        if by_count {
            pipe.cmd("XTRIM")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg(self.retention.max_entries);
        }
        [
            by_age.then_some("max_age"),
            by_count.then_some("max_entries"),
        ]
    }

    /// Adds the write of the fallback copy, if `[fallback]` is on (its reply is ignored).
    fn fallback_into(&self, pipe: &mut redis::Pipeline, dl: &DeadLetter) {
        let Some(fb) = &self.fallback else {
            return;
        };
        match fb.target.kind {
            TargetKind::List => {
                pipe.cmd("LPUSH")
                    .arg(&fb.target.key)
                    .arg(dl.body.as_ref())
                    .ignore();
            }
            TargetKind::Channel => {
                pipe.cmd("PUBLISH")
                    .arg(&fb.target.key)
                    .arg(dl.body.as_ref())
                    .ignore();
            }
            TargetKind::Stream => {
                pipe.cmd("XADD")
                    .arg(&fb.target.key)
                    .arg("*")
                    .arg("body")
                    .arg(dl.body.as_ref())
                    .arg("idempotency_key")
                    .arg(&dl.idempotency_key)
                    .ignore();
            }
        }
    }

    /// Writes an entry, retrying with backoff while Redis is unreachable, for at most
    /// `patience`. A message is only ever lost here if Redis stays down that long; that is
    /// logged as an error with the idempotency key so it can be found.
    ///
    /// Shutdown does not cut the tries short: what is dead-lettered was already taken from
    /// its source or queue (or is about to be acknowledged there), so this write is its only
    /// copy; `patience` bounds how long it can hold up the exit.
    pub async fn add_reliably(&self, dl: &DeadLetter, patience: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut backoff = Backoff::default();
        loop {
            match self.add(dl).await {
                Ok(id) => return Some(id),
                Err(e) => {
                    let wait = backoff.next_delay();
                    if tokio::time::Instant::now() + wait > deadline {
                        tracing::error!(
                            endpoint = %dl.endpoint,
                            idempotency_key = %dl.idempotency_key,
                            redis = %crate::redis::redis_address(),
                            error = %e,
                            "cannot write to the dead-letter stream; this message is lost"
                        );
                        return None;
                    }
                    tracing::warn!(endpoint = %dl.endpoint, idempotency_key = %dl.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "dead-letter write failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Number of entries.
    #[allow(clippy::len_without_is_empty)] // async and fallible: `is_empty` would add nothing
    pub async fn len(&self) -> Result<u64, DlqError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN")
            .arg(&self.key)
            .query_async(&mut conn)
            .await?)
    }

    /// Sets the `bridge_dlq_depth` gauge from the stream's length.
    pub async fn refresh_depth_gauge(&self) {
        if let Ok(n) = self.len().await {
            metrics::gauge!(metric::DLQ_DEPTH).set(n as f64);
        }
    }

    /// Up to `limit` entries, oldest first, optionally only those of `endpoint`.
    pub async fn list(
        &self,
        limit: usize,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeadLetter>, DlqError> {
        let mut out = Vec::new();
        self.for_each(limit, endpoint, |dl| out.push(dl)).await?;
        Ok(out)
    }

    /// Hands up to `limit` entries to `each`, oldest first, optionally only those of
    /// `endpoint`, reading `PAGE` entries at a time: at most one page is in memory.
    /// Returns how many were handed over.
    pub async fn for_each(
        &self,
        limit: usize,
        endpoint: Option<&str>,
        mut each: impl FnMut(DeadLetter),
    ) -> Result<usize, DlqError> {
        let mut handed = 0;
        let mut start = "-".to_string();
        let mut conn = self.conn.clone();
        while handed < limit {
            let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn)
                .await?;
            let n = page.ids.len();
            for entry in page.ids {
                start = format!("({}", entry.id);
                let dl = from_entry(entry.id, entry.map);
                if endpoint.is_none_or(|e| dl.endpoint == e) {
                    each(dl);
                    handed += 1;
                    if handed >= limit {
                        break;
                    }
                }
            }
            if n < PAGE {
                break;
            }
        }
        Ok(handed)
    }

    /// One entry by id.
    pub async fn get(&self, id: &str) -> Result<DeadLetter, DlqError> {
        let mut conn = self.conn.clone();
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(id)
            .arg(id)
            .query_async(&mut conn)
            .await?;
        page.ids
            .into_iter()
            .next()
            .map(|e| from_entry(e.id, e.map))
            .ok_or_else(|| DlqError::NotFound(id.to_string()))
    }

    /// Deletes entries by id; returns how many existed.
    pub async fn delete(&self, ids: &[String]) -> Result<u64, DlqError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("XDEL")
            .arg(&self.key)
            .arg(ids)
            .query_async(&mut conn)
            .await?;
        metrics::gauge!(metric::DLQ_DEPTH).decrement(n as f64);
        Ok(n)
    }
}

fn from_entry(id: String, mut map: HashMap<String, redis::Value>) -> DeadLetter {
    // Taken out of the map, so the body's bytes move instead of being copied.
    let body = map
        .remove("body")
        .and_then(|v| redis::from_redis_value::<Vec<u8>>(v).ok())
        .unwrap_or_default();
    let s = |k: &str| -> String {
        map.get(k)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default()
    };
    let truncated = s("body_size").parse().ok().map(|body_size| Truncated {
        body_size,
        body_sha256: s("body_sha256"),
    });
    let stage = Stage::from_name(&s("stage"));
    DeadLetter {
        id,
        endpoint: s("endpoint"),
        stage,
        idempotency_key: s("idempotency_key"),
        event_type: s("event_type"),
        source: s("source"),
        channel: s("channel"),
        body: Bytes::from(body),
        attempts: s("attempts").parse().unwrap_or(0),
        last_status: s("last_status").parse().ok(),
        error: s("error"),
        received_at_ms: s("received_at_ms").parse().unwrap_or(0),
        failed_at_ms: s("failed_at_ms").parse().unwrap_or(0),
        truncated,
    }
}

#[async_trait::async_trait]
impl DeadLetterSink for Dlq {
    async fn record(&self, dl: &DeadLetter, patience: Duration) -> Option<String> {
        self.add_reliably(dl, patience).await
    }

    async fn remove(&self, id: &str) -> Result<(), DlqError> {
        self.delete(std::slice::from_ref(&id.to_string()))
            .await
            .map(|_| ())
    }
}
