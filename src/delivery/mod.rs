//! Delivery: per-endpoint workers that sign ([`signing`]), POST ([`client`]), classify the
//! answer into an [`Outcome`], retry with backoff ([`retry`]) and keep a circuit breaker
//! ([`circuit`]). One endpoint's trouble never touches another's worker.

pub mod circuit;
pub mod client;
pub mod retry;
pub mod signing;
pub mod worker;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::queue::{Queue, QueueCounts};
use crate::telemetry::{FailureReason, metric};

/// The outcome of one HTTP attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Worth trying again: 3xx, 408, 425, 429, 5xx, timeout, connection or DNS error.
    Retry {
        /// The status, if the endpoint answered.
        status: Option<u16>,
        /// The endpoint's `Retry-After` (429/503), capped later by `max_retry_delay`.
        after: Option<Duration>,
        /// The metrics label.
        reason: FailureReason,
        /// What happened, for logs and the dead-letter entry.
        error: String,
    },
    /// Will not get better by trying again: other 4xx, refused URL.
    Permanent {
        /// The status, if the endpoint answered.
        status: Option<u16>,
        /// The metrics label.
        reason: FailureReason,
        /// What happened.
        error: String,
    },
}

/// Live counters of one endpoint, for `/status`.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Endpoint name.
    pub name: String,
    /// URL without credentials.
    pub url: String,
    /// The endpoint's queue, counted for `/status` and the `bridge_queue_*` gauges.
    queue: std::sync::OnceLock<Queue>,
    /// The last counts of the queue (what `/status` shows if Redis does not answer).
    last_counts: Mutex<QueueCounts>,
    /// Attempts in flight on this replica.
    pub in_flight: AtomicU64,
    /// Deliveries that got a 2xx.
    pub delivered: AtomicU64,
    /// Failed attempts.
    pub failed: AtomicU64,
    /// Retries scheduled.
    pub retries: AtomicU64,
    /// Deliveries given up on.
    pub dead_lettered: AtomicU64,
    /// Unix ms of the last 2xx (0 = never).
    pub last_success_ms: AtomicU64,
    /// The last failure's description.
    pub last_error: Mutex<Option<String>>,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit: AtomicU64,
    /// The `bridge_queue_*` gauges of this endpoint, looked up once.
    gauges: std::sync::OnceLock<QueueGauges>,
}

/// The queue gauges of one endpoint.
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
}

/// Registers the queue gauges of `endpoint` (at zero when new, unchanged otherwise), so they
/// exist from the first scrape.
pub fn zero_queue_gauges(endpoint: &str) {
    let g = QueueGauges::new(endpoint);
    for gauge in [g.depth, g.waiting, g.taken, g.retry_scheduled, g.oldest_age] {
        gauge.increment(0.0);
    }
}

impl QueueGauges {
    fn set(&self, c: &QueueCounts) {
        self.depth.set(c.not_delivered as f64);
        self.waiting.set(c.waiting as f64);
        self.taken.set(c.taken as f64);
        self.retry_scheduled.set(c.retry_scheduled as f64);
        self.oldest_age.set(c.oldest_age_seconds as f64);
    }
}

impl EndpointState {
    /// Fresh counters for an endpoint.
    pub fn new(name: &str, url: &str) -> Self {
        Self {
            name: name.to_string(),
            url: url.to_string(),
            ..Default::default()
        }
    }

    /// Attaches the endpoint's queue (once; a changed endpoint keeps its queue).
    pub fn attach_queue(&self, queue: &Queue) {
        let _ = self.queue.set(queue.clone());
    }

    /// Counts the queue now and records the counts in the `bridge_queue_*` gauges. When the
    /// queue cannot be counted (Redis unreachable) the last counts are returned unchanged.
    pub async fn count_queue(&self) -> QueueCounts {
        let counted = match self.queue.get() {
            Some(q) => tokio::time::timeout(std::time::Duration::from_secs(2), q.counts()).await,
            None => return QueueCounts::default(),
        };
        let mut last = self.last_counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Ok(c)) = counted {
            *last = c;
            self.gauges
                .get_or_init(|| QueueGauges::new(&self.name))
                .set(&c);
        }
        *last
    }

    /// Records a dead-lettered delivery.
    pub fn dead_lettered(&self, error: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.set_error(error);
    }

    /// Records the last error.
    pub fn set_error(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    /// A serialisable snapshot, with the queue counted now.
    pub async fn snapshot(&self) -> EndpointSnapshot {
        let queue = self.count_queue().await;
        let last = self.last_success_ms.load(Ordering::Relaxed);
        EndpointSnapshot {
            name: self.name.clone(),
            url: self.url.clone(),
            circuit: match self.circuit.load(Ordering::Relaxed) {
                1 => "open",
                2 => "half-open",
                _ => "closed",
            },
            queue,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            last_success: (last > 0).then(|| crate::util::time::rfc3339(last)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    pub(crate) fn delivered_now(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_success_ms.store(
            crate::util::time::unix_ms(SystemTime::now()),
            Ordering::Relaxed,
        );
    }
}

/// `/status` view of an endpoint.
#[derive(Debug, Serialize)]
pub struct EndpointSnapshot {
    /// Name.
    pub name: String,
    /// URL without credentials.
    pub url: String,
    /// closed, open or half-open.
    pub circuit: &'static str,
    /// Not delivered yet: waiting, taken, scheduled for retry (see [`QueueCounts`]).
    #[serde(flatten)]
    pub queue: QueueCounts,
    /// HTTP attempts in flight on this replica (part of `taken`).
    pub in_flight: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// RFC 3339 time of the last 2xx.
    pub last_success: Option<String>,
    /// Last error.
    pub last_error: Option<String>,
}
