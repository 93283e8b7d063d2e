//! What every stage reports about one endpoint: its live counters ([`EndpointState`]),
//! updated by ingest and delivery and read by `/status`, the `status` command and the EMF
//! lines, and the vocabulary of its queue's contents ([`QueueCounts`]).
//!
//! The queue itself is counted through [`QueueCounter`], which the queue implements: this
//! module sits below every stage, so that each of them can share the counters without
//! depending on the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// How long `/status` and the gauges wait for a queue to be counted.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// What an endpoint's queue holds that is not delivered yet. One vocabulary for `/status`,
/// the `status` command and the `bridge_queue_*` metrics, all computed by the queue's
/// `counts` (or, for `status`, by `queue::redis::queue_counts`, the same query):
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

/// Counts an endpoint's queue: implemented by the queue (which also keeps its
/// `bridge_queue_*` gauges), attached to the endpoint's [`EndpointState`].
#[async_trait::async_trait]
pub trait QueueCounter: Send + Sync + std::fmt::Debug {
    /// What the queue holds now, or `None` when it cannot be counted (Redis unreachable).
    async fn count(&self) -> Option<QueueCounts>;
}

/// Live counters of one endpoint, for `/status`.
#[derive(Debug, Default)]
pub struct EndpointState {
    /// Endpoint name.
    pub name: String,
    /// URL without credentials.
    pub url: String,
    /// Counts the endpoint's queue for `/status` and the `bridge_queue_*` gauges.
    queue: OnceLock<Arc<dyn QueueCounter>>,
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

    /// Attaches what counts the endpoint's queue (once; a changed endpoint keeps its queue).
    pub fn attach_queue(&self, counter: Arc<dyn QueueCounter>) {
        let _ = self.queue.set(counter);
    }

    /// Counts the queue now (which also records the counts in the `bridge_queue_*` gauges).
    /// When the queue cannot be counted (Redis unreachable) the last counts are returned
    /// unchanged.
    pub async fn count_queue(&self) -> QueueCounts {
        let counted = match self.queue.get() {
            Some(q) => tokio::time::timeout(COUNT_TIMEOUT, q.count()).await,
            None => return QueueCounts::default(),
        };
        let mut last = self.last_counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(Some(c)) = counted {
            *last = c;
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

    /// Records a delivery that got a 2xx, now.
    pub fn delivered_now(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_success_ms.store(
            crate::util::time::unix_ms(SystemTime::now()),
            Ordering::Relaxed,
        );
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
