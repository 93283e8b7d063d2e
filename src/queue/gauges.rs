//! The `bridge_queue_*` gauges of each endpoint, and the queue counter that keeps them
//! current: [`CountedQueue`] is what an endpoint's [`EndpointState`] counts its queue with.
//!
//! [`EndpointState`]: crate::endpoint_state::EndpointState

use std::sync::Arc;

use super::Queue;
use crate::endpoint_state::{QueueCounter, QueueCounts};
use crate::telemetry::metric;

/// The queue gauges of one endpoint, looked up once.
#[derive(Debug)]
struct QueueGauges {
    depth: metrics::Gauge,
    waiting: metrics::Gauge,
    taken: metrics::Gauge,
    retry_scheduled: metrics::Gauge,
    oldest_age: metrics::Gauge,
}

impl QueueGauges {
    fn new(endpoint: &str) -> Self {
        let jobs = |state: &'static str| metrics::gauge!(metric::QUEUE_JOBS, "endpoint" => endpoint.to_string(), "state" => state);
        Self {
            depth: metrics::gauge!(metric::QUEUE_DEPTH, "endpoint" => endpoint.to_string()),
            waiting: jobs("waiting"),
            taken: jobs("taken"),
            retry_scheduled: jobs("retry_scheduled"),
            oldest_age: metrics::gauge!(metric::QUEUE_OLDEST_AGE, "endpoint" => endpoint.to_string()),
        }
    }

    fn set(&self, c: &QueueCounts) {
        self.depth.set(c.not_delivered as f64);
        self.waiting.set(c.waiting as f64);
        self.taken.set(c.taken as f64);
        self.retry_scheduled.set(c.retry_scheduled as f64);
        self.oldest_age.set(c.oldest_age_seconds as f64);
    }
}

/// Registers the queue gauges of `endpoint` (at zero when new, unchanged otherwise), so they
/// exist from the first scrape.
pub fn zero_queue_gauges(endpoint: &str) {
    let g = QueueGauges::new(endpoint);
    for gauge in [g.depth, g.waiting, g.taken, g.retry_scheduled, g.oldest_age] {
        gauge.increment(0.0);
    }
}

/// An endpoint's queue as its counters see it: each successful count also sets the
/// endpoint's `bridge_queue_*` gauges.
#[derive(Debug)]
pub struct CountedQueue {
    queue: Queue,
    gauges: QueueGauges,
}

impl CountedQueue {
    /// The counter of `endpoint`'s `queue`, for [`EndpointState::attach_queue`].
    ///
    /// [`EndpointState::attach_queue`]: crate::endpoint_state::EndpointState::attach_queue
    pub fn new(endpoint: &str, queue: Queue) -> Arc<Self> {
        Arc::new(Self {
            queue,
            gauges: QueueGauges::new(endpoint),
        })
    }
}

#[async_trait::async_trait]
impl QueueCounter for CountedQueue {
    async fn count(&self) -> Option<QueueCounts> {
        let counts = self.queue.counts().await.ok()?;
        self.gauges.set(&counts);
        Some(counts)
    }
}
