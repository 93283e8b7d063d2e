//! Per-endpoint queues of delivery jobs.
//!
//! A [`Job`] is one message bound for one endpoint. Ingest pushes jobs; the endpoint's
//! delivery worker takes them with [`memory::MemoryQueue::next`], and either finishes them
//! (delivered or dead-lettered) or puts them back with a due time for a retry.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ingest::Message;

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

/// What an endpoint's queue holds that is not delivered yet. One vocabulary for `/status`,
/// the `status` command and the `bridge_queue_*` metrics, all computed by [`Queue::counts`]
/// (or, for `status`, by [`redis::queue_counts`], the same query):
///
/// - `waiting`: not taken by any replica yet (stuck here while every worker is busy, the
///   circuit is open or deliveries are paused);
/// - `taken`: taken by a replica's worker and not settled: prefetched (waiting for a
///   concurrency slot, the circuit or the pause) or an HTTP attempt in flight;
/// - `retry_scheduled`: waiting for the due time of a retry;
/// - `not_delivered`: the sum of the three: everything neither delivered nor dead-lettered;
/// - `oldest_age_seconds`: seconds since the message at the head of the queue (the first
///   one waiting or taken, or the next retry due, whichever was received first) was
///   received; 0 when nothing is queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Not taken by any replica yet.
    pub waiting: u64,
    /// Prefetched or in flight.
    pub taken: u64,
    /// Waiting for a retry's due time.
    pub retry_scheduled: u64,
    /// `waiting + taken + retry_scheduled`.
    pub not_delivered: u64,
    /// Age of the head of the queue, in seconds.
    pub oldest_age_seconds: u64,
}

impl QueueCounts {
    /// Counts from their parts; `oldest` is the receipt time of the head of the queue.
    pub fn new(waiting: u64, taken: u64, retry_scheduled: u64, oldest: Option<SystemTime>) -> Self {
        let not_delivered = waiting + taken + retry_scheduled;
        let oldest_age_seconds = match oldest {
            Some(t) if not_delivered > 0 => SystemTime::now()
                .duration_since(t)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            _ => 0,
        };
        Self {
            waiting,
            taken,
            retry_scheduled,
            not_delivered,
            oldest_age_seconds,
        }
    }
}

/// An endpoint's queue, in memory or in Redis.
#[derive(Clone)]
pub enum Queue {
    /// `durability = "memory"`.
    Memory(Arc<memory::MemoryQueue>),
    /// `durability = "redis"`.
    Redis(Arc<redis::RedisQueue>),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Memory(_) => "Queue::Memory",
            Queue::Redis(_) => "Queue::Redis",
        })
    }
}

impl Queue {
    /// The next job to attempt; `None` once the queue is closed.
    pub async fn next(&self) -> Option<Job> {
        match self {
            Queue::Memory(q) => Some(q.next().await),
            Queue::Redis(q) => q.next().await,
        }
    }

    /// Schedules a retry of a taken job in `delay`. In Redis this is retried until it
    /// succeeds or `shutdown` fires (then the entry stays pending and is claimed again).
    pub async fn retry_in(
        &self,
        job: Job,
        delay: Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) {
        match self {
            Queue::Memory(q) => q.retry_at(job, tokio::time::Instant::now() + delay),
            Queue::Redis(q) => {
                let mut wait = Duration::from_millis(100);
                while let Err(e) = q.retry_in(&job, delay).await {
                    tracing::warn!(idempotency_key = %job.msg.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "cannot schedule the retry in Redis; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Marks a taken job as settled: delivered, or dead-lettered.
    pub fn done(&self, job: &Job, delivered: bool) {
        match self {
            Queue::Memory(q) => q.done(job),
            Queue::Redis(q) => q.done(job, delivered),
        }
    }

    /// Gives back a taken job that was not attempted (shutdown). In Redis the entry simply
    /// stays pending, and another replica (or the next start) claims it.
    pub fn release(&self, job: Job) {
        match self {
            Queue::Memory(q) => q.push_front(job),
            Queue::Redis(_) => {}
        }
    }

    /// What the queue holds that is not delivered yet (see [`QueueCounts`]). Memory queues
    /// count in process; durable queues ask Redis, so their counts cover every replica.
    pub async fn counts(&self) -> ::redis::RedisResult<QueueCounts> {
        match self {
            Queue::Memory(q) => Ok(q.counts()),
            Queue::Redis(q) => q.counts().await,
        }
    }
}
