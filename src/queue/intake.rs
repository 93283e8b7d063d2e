//! Where ingest's batches enter the queues ([`Intake`], ingest's [`Enqueue`]): the journal
//! for durable queues, or the de-duplication keys and then the memory queues.
//!
//! Either way a batch costs one Redis round trip: the journal script records every key and
//! appends the fresh messages to their streams and ledgers at once; memory queues record
//! the keys with one pipelined `SET NX PX` and push in process.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::Queue;
use super::memory::Full;
use super::redis::journal::{Journal, JournalEndpoint};
use crate::config::{Config, Durability};
use crate::ingest::{Enqueue, NotQueued, Route, RoutedBatch};
use crate::message::{DeadLetter, DeadLetterSink, Job, Message, Stage};

/// How long a job that a full memory queue refuses may wait for the dead-letter stream.
const DLQ_PATIENCE: Duration = Duration::from_secs(30);

/// The queues' side of ingest: takes each routed batch (see [`Enqueue`]).
pub struct Intake {
    store: Store,
}

/// Where the batches go.
enum Store {
    /// `durability = "redis"`: the journal script.
    Journal(Journal),
    /// `durability = "memory"`: de-duplication keys in Redis, jobs in process.
    Memory(MemoryIntake),
}

/// The memory queues' intake.
struct MemoryIntake {
    conn: ConnectionManager,
    /// `<key_prefix>:seen:`.
    seen_prefix: String,
    /// The de-duplication window, in ms (at least 1).
    window_ms: u64,
    /// Where a job that a full queue refuses goes.
    dlq: Arc<dyn DeadLetterSink>,
}

impl Intake {
    /// The intake of `cfg`'s queues over `conn`. The journal retries while Redis is away
    /// until `shutdown` (and a little past it); a full memory queue dead-letters to `dlq`.
    pub fn new(
        conn: ConnectionManager,
        cfg: &Config,
        dlq: Arc<dyn DeadLetterSink>,
        shutdown: CancellationToken,
    ) -> Self {
        let seen_prefix = cfg.redis.key("seen:");
        let window = cfg.delivery.dedupe_window.0;
        let store = match cfg.delivery.durability {
            Durability::Redis => Store::Journal(Journal::new(conn, seen_prefix, window, shutdown)),
            Durability::Memory => Store::Memory(MemoryIntake {
                conn,
                seen_prefix,
                window_ms: window.as_millis().max(1) as u64,
                dlq,
            }),
        };
        Self { store }
    }
}

impl Enqueue for Intake {
    type Queue = Queue;

    async fn enqueue_batch(&self, batch: RoutedBatch<'_, Queue>) -> Result<Vec<bool>, NotQueued> {
        match &self.store {
            Store::Journal(journal) => {
                let (endpoints, msgs) = journal_batch(&batch);
                Ok(journal.write(&endpoints, &msgs).await?)
            }
            Store::Memory(memory) => Ok(memory.enqueue(&batch).await),
        }
    }
}

/// Each durable endpoint of a batch once, and each message with the indices of its
/// endpoints among them. (A memory queue has no stream to journal into; with one
/// durability setting for every endpoint, a durable batch never routes to one.)
fn journal_batch<'a>(
    batch: &RoutedBatch<'a, Queue>,
) -> (Vec<JournalEndpoint<'a>>, Vec<(&'a Message, Vec<usize>)>) {
    let mut endpoints: Vec<JournalEndpoint<'a>> = Vec::new();
    let mut index_of = |route: &'a Route<Queue>| {
        let Queue::Redis(q) = &route.queue else {
            return None;
        };
        let e = q.journal_endpoint();
        Some(
            endpoints
                .iter()
                .position(|known| known.stream == e.stream)
                .unwrap_or_else(|| {
                    endpoints.push(e);
                    endpoints.len() - 1
                }),
        )
    };
    let msgs = batch
        .msgs
        .iter()
        .zip(batch.targets)
        .map(|(m, t)| (&**m, t.iter().filter_map(|r| index_of(r)).collect()))
        .collect();
    (endpoints, msgs)
}

impl MemoryIntake {
    /// Records the keys, then pushes each fresh message to the memory queues of its routes.
    async fn enqueue(&self, batch: &RoutedBatch<'_, Queue>) -> Vec<bool> {
        let fresh = self.dedupe(batch.msgs).await;
        for ((msg, targets), fresh) in batch.msgs.iter().zip(batch.targets).zip(&fresh) {
            if *fresh {
                for route in targets {
                    self.push(route, msg).await;
                }
            }
        }
        fresh
    }

    /// For each message: whether its key was not seen within the window. If Redis cannot be
    /// asked, every message counts as fresh: delivering twice (receivers de-duplicate by key)
    /// beats losing one.
    async fn dedupe(&self, msgs: &[Arc<Message>]) -> Vec<bool> {
        let mut pipe = redis::pipe();
        for m in msgs {
            pipe.cmd("SET")
                .arg(format!("{}{}", self.seen_prefix, m.idempotency_key))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(self.window_ms);
        }
        let mut conn = self.conn.clone();
        match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
            Ok(replies) => replies.into_iter().map(|r| r.is_some()).collect(),
            Err(e) => {
                tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "de-duplication unavailable; delivering without it");
                vec![true; msgs.len()]
            }
        }
    }

    /// Pushes a job to a memory queue; a full queue dead-letters it instead.
    async fn push(&self, route: &Route<Queue>, msg: &Arc<Message>) {
        let Queue::Memory(q) = &route.queue else {
            return;
        };
        if let Err(Full(job)) = q.push(Job::new(msg.clone())) {
            let dl = DeadLetter::from_job(
                &job,
                &route.endpoint.name,
                Stage::Ingest,
                "endpoint queue is full (durability = memory holds at most 100000 jobs per endpoint)",
            );
            self.dlq.record(&dl, DLQ_PATIENCE).await;
            route.state.dead_lettered(&dl.error);
        }
    }
}
