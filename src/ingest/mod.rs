//! Ingest: from a [`Received`] message to one job per matching endpoint.
//!
//! For each message: enforce `max_payload_bytes`, require JSON (UTF-8 throughout, nesting at
//! most `max_json_depth` deep), unwrap the registry's envelope when asked, compute the
//! idempotency key and event type ([`parse`](mod@parse)), and route it to the endpoints whose
//! `channels` and `event_types` match and whose `filter` passes it ([`route`]). Each batch is
//! then handed to the queues ([`Enqueue`]), which drop repeats of a key seen within `dedupe_window` and queue the rest
//! in one Redis round trip; fresh messages are republished when dual publishing is on
//! ([`republish`]), and the sources are told their messages are taken. Anything that cannot
//! be ingested goes to the dead-letter stream with the reason; nothing is dropped silently.

pub mod parse;
pub mod republish;
pub mod route;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::message::{DeadLetter, DeadLetterSink, Job, Message, Stage};
use crate::source::Received;
use crate::telemetry::metric;
use crate::util::backoff::Backoff;
use crate::util::time::unix_ms;

pub use parse::{
    IngestError, IngestSettings, Parsed, fallback_key, key_from_fields, parse, parse_received,
    validate,
};
pub use republish::Republisher;
pub use route::{Enqueue, NotQueued, Route, RoutedBatch, Routes};

/// Most messages handled per batch (one Redis round trip each).
const BATCH: usize = 256;
/// How long a message that cannot be ingested may wait for the dead-letter stream.
const DLQ_PATIENCE: Duration = Duration::from_secs(30);
/// Tries to acknowledge a batch's source messages.
const ACK_TRIES: usize = 5;

/// The ingest stage: reads received messages in batches and hands them to the queues.
pub struct Ingest<E: Enqueue> {
    /// The rules applied to every message.
    pub settings: IngestSettings,
    /// Routing table.
    pub routes: Routes<E::Queue>,
    /// The queues, which take each routed batch.
    pub queue: E,
    /// Where what cannot be ingested goes (the dead-letter stream).
    pub dlq: Arc<dyn DeadLetterSink>,
    /// Redis, to acknowledge list and stream sources.
    pub redis: ConnectionManager,
    /// Ends the acknowledgement retries.
    pub shutdown: CancellationToken,
    /// Dual publishing (`--dual`), if on.
    pub republisher: Option<Republisher>,
}

/// The parsed messages of one batch, kept across batches so that their buffers are
/// allocated once.
#[derive(Default)]
struct Batch {
    msgs: Vec<Arc<Message>>,
    /// Each message exactly as received (what dual publishing writes).
    raws: Vec<Bytes>,
    /// Whether each message's source still holds it until it is acknowledged (lists and
    /// streams do; a pub/sub message exists only here).
    held: Vec<bool>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Self {
            msgs: Vec::with_capacity(n),
            raws: Vec::with_capacity(n),
            held: Vec::with_capacity(n),
        }
    }

    fn clear(&mut self) {
        self.msgs.clear();
        self.raws.clear();
        self.held.clear();
    }
}

impl<E: Enqueue> Ingest<E> {
    /// Runs until every sender of `rx` is gone (the sources stopped), draining what is left.
    pub async fn run(self, mut rx: mpsc::Receiver<Received>) {
        let mut received = Vec::with_capacity(BATCH);
        let mut batch = Batch::with_capacity(BATCH);
        while rx.recv_many(&mut received, BATCH).await > 0 {
            batch.clear();
            let mut acks = redis::pipe();
            let mut ack_count = 0;
            for r in &received {
                if r.ack.is_some() {
                    crate::source::ack_into(&mut acks, r);
                    ack_count += 1;
                }
            }
            for r in received.drain(..) {
                self.ingest_one(r, &mut batch).await;
            }
            if !batch.msgs.is_empty() {
                match self.route_batch(&batch.msgs).await {
                    Ok(fresh) => {
                        if let Some(rp) = &self.republisher {
                            rp.republish(&batch.msgs, &batch.raws, &fresh).await;
                        }
                    }
                    Err(e) => {
                        // Nothing of the batch was queued: acknowledging would lose what
                        // lists and streams still hold, so none of it is (what was
                        // dead-lettered meanwhile may be dead-lettered again when read again).
                        not_queued(&batch, &e);
                        continue;
                    }
                }
            }
            if ack_count > 0 {
                self.ack_sources(&acks).await;
            }
        }
        tracing::debug!("ingest stopped");
    }

    /// Parses one received message into `batch`, or dead-letters it with the reason.
    async fn ingest_one(&self, r: Received, batch: &mut Batch) {
        match parse_received(&r.body, &r.channel, r.unwrap_envelope, &self.settings) {
            Ok(p) => {
                batch.held.push(r.ack.is_some());
                batch
                    .msgs
                    .push(Arc::new(p.into_message(r.source, r.channel, r.received_at)));
                batch.raws.push(r.body);
            }
            Err(e) => self.reject(&r, &e).await,
        }
    }

    /// Routes a batch of parsed messages and hands it to the queues; returns which messages
    /// were fresh (not repeats of a key seen within the window).
    async fn route_batch(&self, msgs: &[Arc<Message>]) -> Result<Vec<bool>, NotQueued> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let routing = route::targets(&routes, msgs);
        let fresh = self
            .queue
            .enqueue_batch(RoutedBatch {
                msgs,
                targets: &routing.targets,
            })
            .await?;
        self.filter_outcomes(msgs, &routing, &fresh).await;
        for ((msg, targets), fresh) in msgs.iter().zip(&routing.targets).zip(&fresh) {
            if !fresh {
                metrics::counter!(metric::DUPLICATES_DROPPED).increment(1);
                tracing::debug!(idempotency_key = %msg.idempotency_key, "duplicate dropped");
            } else if targets.is_empty() {
                tracing::debug!(idempotency_key = %msg.idempotency_key, channel = %msg.channel, event_type = %msg.event_type, "no endpoint matches");
            }
        }
        Ok(fresh)
    }

    /// Counts the messages the endpoints' filters kept out and dead-letters, for its
    /// endpoint, each message a filter failed on; repeats of a key seen within the window
    /// are neither (the first copy was).
    async fn filter_outcomes(
        &self,
        msgs: &[Arc<Message>],
        routing: &route::Routing<'_, E::Queue>,
        fresh: &[bool],
    ) {
        let is_fresh = |i: &usize| fresh.get(*i).copied().unwrap_or(false);
        for (_, r) in routing.filtered.iter().filter(|(i, _)| is_fresh(i)) {
            metrics::counter!(metric::FILTERED_OUT, "endpoint" => r.endpoint.name.clone())
                .increment(1);
        }
        for (i, r, e) in routing.failed.iter().filter(|(i, ..)| is_fresh(i)) {
            let msg = &msgs[*i];
            let error = format!("filter failed: {e}");
            tracing::error!(endpoint = %r.endpoint.name, idempotency_key = %msg.idempotency_key, error = %error, "filter failed on a message; dead-lettered");
            metrics::counter!(metric::FILTER_FAILURES, "endpoint" => r.endpoint.name.clone())
                .increment(1);
            let dl = DeadLetter::from_job(
                &Job::new(msg.clone()),
                &r.endpoint.name,
                Stage::Filter,
                &error,
            );
            self.dlq.record(&dl, DLQ_PATIENCE).await;
            r.state.dead_lettered(&error);
        }
    }

    /// Tells list and stream sources that their messages are queued. If Redis is away the
    /// items stay in the processing list / pending list and are read again later; the
    /// queues' de-duplication drops them then. For that reason the tries also end at
    /// shutdown.
    async fn ack_sources(&self, acks: &redis::Pipeline) {
        let mut backoff = Backoff::default();
        for _ in 0..ACK_TRIES {
            let mut conn = self.redis.clone();
            match acks.query_async::<()>(&mut conn).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "acknowledging source messages failed; retrying");
                    if !backoff.wait(&self.shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    async fn reject(&self, r: &Received, e: &IngestError) {
        tracing::warn!(source = %r.source, channel = %r.channel, error = %e, "message cannot be ingested; dead-lettered");
        self.dlq.record(&rejected(r, e), DLQ_PATIENCE).await;
    }
}

/// The dead-letter entry of a received message that cannot be ingested: the body as
/// received, keyed by channel and body since no key could be read from it.
fn rejected(r: &Received, e: &IngestError) -> DeadLetter {
    DeadLetter {
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
        failed_at_ms: unix_ms(SystemTime::now()),
        truncated: None,
    }
}

/// Logs each message of a batch the queues did not take before shutdown: lost if it came
/// from pub/sub, read again at the next start if its source still holds it.
fn not_queued(batch: &Batch, e: &NotQueued) {
    for (m, held) in batch.msgs.iter().zip(&batch.held) {
        if *held {
            tracing::warn!(idempotency_key = %m.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "Redis unreachable through shutdown: received message not journaled; it stays unacknowledged in its source and is read again at the next start");
        } else {
            tracing::error!(idempotency_key = %m.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "Redis unreachable through shutdown: received message not journaled, lost");
        }
    }
}
