//! Per-endpoint queues of delivery jobs.
//!
//! A [`Job`] is one message bound for one endpoint. Ingest pushes jobs; the endpoint's
//! delivery worker takes them with [`memory::MemoryQueue::next`], and either finishes them
//! (delivered or dead-lettered) or puts them back with a due time for a retry.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

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

/// An endpoint's queue, in memory or in Redis.
#[derive(Clone)]
pub enum Queue {
    /// `durability = "memory"`.
    Memory(Arc<memory::MemoryQueue>),
    /// `durability = "redis"`.
    Redis(Arc<redis::RedisQueue>),
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
                    tracing::warn!(idempotency_key = %job.msg.idempotency_key, error = %e, "cannot schedule the retry in Redis; trying again");
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

    /// Jobs waiting (ready and scheduled retries, not in flight).
    pub fn depth(&self) -> usize {
        match self {
            Queue::Memory(q) => q.depth(),
            Queue::Redis(q) => q.depth() as usize,
        }
    }
}
