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
    /// Jobs waiting (ready + scheduled retries).
    pub queued: AtomicU64,
    /// Attempts in flight.
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
    /// The `bridge_queue_depth` gauge of this endpoint, looked up once (set after every job).
    depth_gauge: std::sync::OnceLock<metrics::Gauge>,
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

    /// Records the queue depth (and the `bridge_queue_depth` gauge).
    pub fn queued_gauge(&self, depth: usize) {
        self.queued.store(depth as u64, Ordering::Relaxed);
        self.depth_gauge
            .get_or_init(|| metrics::gauge!(metric::QUEUE_DEPTH, "endpoint" => self.name.clone()))
            .set(depth as f64);
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

    /// A serialisable snapshot.
    pub fn snapshot(&self) -> EndpointSnapshot {
        let last = self.last_success_ms.load(Ordering::Relaxed);
        EndpointSnapshot {
            name: self.name.clone(),
            url: self.url.clone(),
            circuit: match self.circuit.load(Ordering::Relaxed) {
                1 => "open",
                2 => "half-open",
                _ => "closed",
            },
            queued: self.queued.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            last_success: (last > 0).then(|| crate::dlq::rfc3339(last)),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    pub(crate) fn delivered_now(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_success_ms
            .store(crate::dlq::unix_ms(SystemTime::now()), Ordering::Relaxed);
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
    /// Jobs waiting.
    pub queued: u64,
    /// Attempts in flight.
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
