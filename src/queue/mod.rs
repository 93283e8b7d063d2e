//! Per-endpoint queues of delivery jobs.
//!
//! A [`Job`] is one message bound for one endpoint. Ingest hands each routed batch to the
//! [`Intake`], which owns how it is stored: journaled into Redis streams ([`redis`]) or
//! pushed to [`memory`] queues. The endpoint's delivery worker takes jobs with
//! [`Queue::next`], and either finishes them (delivered or dead-lettered) or puts them back
//! with a due time for a retry.

pub mod gauges;
pub mod intake;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use crate::endpoint_state::QueueCounts;
use crate::message::Job;
use crate::util::backoff::Backoff;

pub use intake::Intake;

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
                let mut backoff = Backoff::default();
                while let Err(e) = q.retry_in(&job, delay).await {
                    tracing::warn!(idempotency_key = %job.msg.idempotency_key, redis = %crate::redis::redis_address(), error = %e, "cannot schedule the retry in Redis; trying again");
                    if !backoff.wait(shutdown).await {
                        return;
                    }
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
