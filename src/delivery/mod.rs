//! Delivery: per-endpoint workers that sign ([`signing`]), POST ([`client`]), classify the
//! answer into an [`Outcome`], retry with backoff ([`retry`]) and keep a circuit breaker
//! ([`circuit`]). One endpoint's trouble never touches another's worker.

pub mod circuit;
pub mod client;
pub mod retry;
pub mod signing;
pub mod worker;

use std::time::Duration;

use crate::telemetry::FailureReason;

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
