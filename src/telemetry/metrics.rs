//! Metrics: the names of every series (exactly as the contract lists them), the closed set
//! of failure reasons, the series that must exist from the first scrape, and the
//! Prometheus registry that `/metrics` renders.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric names, exactly as the contract lists them.
pub mod metric {
    /// Counter{endpoint}: deliveries that got a 2xx.
    pub const PUBLISH_SUCCESS: &str = "webhook_publish_success_total";
    /// Counter{endpoint,reason}: failed attempts.
    pub const PUBLISH_FAILURE: &str = "webhook_publish_failure_total";
    /// Counter{endpoint}: retries scheduled.
    pub const RETRY_COUNT: &str = "webhook_retry_count_total";
    /// Gauge{endpoint}: 0 closed, 1 open, 2 half-open.
    pub const CIRCUIT_STATE: &str = "webhook_circuit_breaker_state";
    /// Histogram{endpoint}: one HTTP attempt.
    pub const DELIVERY_DURATION: &str = "webhook_delivery_duration_seconds";
    /// Histogram{endpoint}: receipt to delivered.
    pub const END_TO_END: &str = "webhook_end_to_end_latency_seconds";
    /// Counter{source}: messages read from Redis.
    pub const MESSAGES_RECEIVED: &str = "bridge_messages_received_total";
    /// Counter: messages dropped as repeats of an idempotency key.
    pub const DUPLICATES_DROPPED: &str = "bridge_duplicates_dropped_total";
    /// Counter{target}: messages republished (dual mode).
    pub const REPUBLISHED: &str = "bridge_messages_republished_total";
    /// Gauge{endpoint}: messages not delivered yet (waiting + taken + scheduled for retry).
    pub const QUEUE_DEPTH: &str = "bridge_queue_depth";
    /// Gauge{endpoint,state}: messages not delivered yet by state: waiting, taken,
    /// retry_scheduled.
    pub const QUEUE_JOBS: &str = "bridge_queue_jobs";
    /// Gauge{endpoint}: seconds since the head of the queue was received.
    pub const QUEUE_OLDEST_AGE: &str = "bridge_queue_oldest_age_seconds";
    /// Gauge: entries in the dead-letter stream.
    pub const DLQ_DEPTH: &str = "bridge_dlq_depth";
    /// Counter{limit}: dead-letter entries removed by `[dlq] max_entries` / `max_age`.
    pub const DLQ_TRIMMED: &str = "bridge_dlq_trimmed_total";
    /// Counter{source}: lost subscriptions.
    pub const SOURCE_DISCONNECTS: &str = "bridge_source_disconnects_total";
    /// Counter{result}: config reloads.
    pub const CONFIG_RELOADS: &str = "bridge_config_reloads_total";
    /// Gauge{channel}: subscribers of a source channel other than the bridge.
    pub const LEGACY_SUBSCRIBERS: &str = "bridge_legacy_subscribers";
    /// Counter{endpoint}: messages the endpoint's `filter` kept from it.
    pub const FILTERED_OUT: &str = "bridge_filtered_out_total";
    /// Counter{endpoint}: messages dead-lettered because the endpoint's `filter` failed.
    pub const FILTER_FAILURES: &str = "bridge_filter_failures_total";
    /// Counter{endpoint}: messages dead-lettered because the endpoint's `transform` failed.
    pub const TRANSFORM_FAILURES: &str = "bridge_transform_failures_total";

    /// Every metric name above.
    pub const ALL: &[&str] = &[
        PUBLISH_SUCCESS,
        PUBLISH_FAILURE,
        RETRY_COUNT,
        CIRCUIT_STATE,
        DELIVERY_DURATION,
        END_TO_END,
        MESSAGES_RECEIVED,
        DUPLICATES_DROPPED,
        REPUBLISHED,
        QUEUE_DEPTH,
        QUEUE_JOBS,
        QUEUE_OLDEST_AGE,
        DLQ_DEPTH,
        DLQ_TRIMMED,
        SOURCE_DISCONNECTS,
        CONFIG_RELOADS,
        LEGACY_SUBSCRIBERS,
        FILTERED_OUT,
        FILTER_FAILURES,
        TRANSFORM_FAILURES,
    ];
}

/// The `reason` label of `webhook_publish_failure_total`: a closed set, so that each series
/// can exist (at zero) from the first scrape and alert expressions never see it absent.
/// Statuses a receiver commonly answers have their own value; any other one is counted in
/// its class (`http_3xx`, `http_4xx`, `http_5xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// Any 3xx (redirects are not followed).
    Http3xx,
    /// 400 Bad Request.
    Http400,
    /// 401 Unauthorized (a signature the receiver rejects).
    Http401,
    /// 403 Forbidden.
    Http403,
    /// 404 Not Found.
    Http404,
    /// 408 Request Timeout.
    Http408,
    /// 409 Conflict.
    Http409,
    /// 410 Gone.
    Http410,
    /// 413 Content Too Large.
    Http413,
    /// 422 Unprocessable Content.
    Http422,
    /// 425 Too Early.
    Http425,
    /// 429 Too Many Requests.
    Http429,
    /// Any other 4xx.
    Http4xx,
    /// 500 Internal Server Error.
    Http500,
    /// 502 Bad Gateway.
    Http502,
    /// 503 Service Unavailable.
    Http503,
    /// 504 Gateway Timeout.
    Http504,
    /// Any other 5xx.
    Http5xx,
    /// Any other status outside 2xx–5xx.
    HttpOther,
    /// No answer within the endpoint's `timeout`.
    Timeout,
    /// The connection could not be made (refused, reset, unreachable).
    Connect,
    /// The endpoint's host name did not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The answer's body could not be read.
    Body,
    /// Any other request failure.
    Request,
    /// The URL policy refused the address (`allow_private_networks`).
    Blocked,
}

impl FailureReason {
    /// Every value, in label order.
    pub const ALL: &[FailureReason] = &[
        Self::Http3xx,
        Self::Http400,
        Self::Http401,
        Self::Http403,
        Self::Http404,
        Self::Http408,
        Self::Http409,
        Self::Http410,
        Self::Http413,
        Self::Http422,
        Self::Http425,
        Self::Http429,
        Self::Http4xx,
        Self::Http500,
        Self::Http502,
        Self::Http503,
        Self::Http504,
        Self::Http5xx,
        Self::HttpOther,
        Self::Timeout,
        Self::Connect,
        Self::Dns,
        Self::Tls,
        Self::Body,
        Self::Request,
        Self::Blocked,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http3xx => "http_3xx",
            Self::Http400 => "http_400",
            Self::Http401 => "http_401",
            Self::Http403 => "http_403",
            Self::Http404 => "http_404",
            Self::Http408 => "http_408",
            Self::Http409 => "http_409",
            Self::Http410 => "http_410",
            Self::Http413 => "http_413",
            Self::Http422 => "http_422",
            Self::Http425 => "http_425",
            Self::Http429 => "http_429",
            Self::Http4xx => "http_4xx",
            Self::Http500 => "http_500",
            Self::Http502 => "http_502",
            Self::Http503 => "http_503",
            Self::Http504 => "http_504",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Body => "body",
            Self::Request => "request",
            Self::Blocked => "blocked",
        }
    }

    /// The reason for a non-2xx status.
    pub fn from_status(status: u16) -> Self {
        match status {
            300..=399 => Self::Http3xx,
            400 => Self::Http400,
            401 => Self::Http401,
            403 => Self::Http403,
            404 => Self::Http404,
            408 => Self::Http408,
            409 => Self::Http409,
            410 => Self::Http410,
            413 => Self::Http413,
            422 => Self::Http422,
            425 => Self::Http425,
            429 => Self::Http429,
            402..=499 => Self::Http4xx,
            500 => Self::Http500,
            502 => Self::Http502,
            503 => Self::Http503,
            504 => Self::Http504,
            501..=599 => Self::Http5xx,
            _ => Self::HttpOther,
        }
    }
}

/// Registers every per-endpoint series at zero (success, failure for each
/// [`FailureReason`], retries, filtered-out and filter/transform failures, circuit state,
/// queue depth and both histograms), so the
/// dashboard and alerts see them from the first scrape. Called for each endpoint when its
/// worker is built, at start and when a reload adds it.
pub fn endpoint_series(endpoint: &str) {
    let name = endpoint.to_string();
    metrics::counter!(metric::PUBLISH_SUCCESS, "endpoint" => name.clone()).increment(0);
    for r in FailureReason::ALL {
        metrics::counter!(metric::PUBLISH_FAILURE, "endpoint" => name.clone(), "reason" => r.as_str())
            .increment(0);
    }
    metrics::counter!(metric::RETRY_COUNT, "endpoint" => name.clone()).increment(0);
    for expression in [
        metric::FILTERED_OUT,
        metric::FILTER_FAILURES,
        metric::TRANSFORM_FAILURES,
    ] {
        metrics::counter!(expression, "endpoint" => name.clone()).increment(0);
    }
    metrics::gauge!(metric::CIRCUIT_STATE, "endpoint" => name.clone()).set(0.0);
    metrics::gauge!(metric::QUEUE_DEPTH, "endpoint" => name.clone()).increment(0.0);
    let _ = metrics::histogram!(metric::DELIVERY_DURATION, "endpoint" => name.clone());
    let _ = metrics::histogram!(metric::END_TO_END, "endpoint" => name);
}

/// Registers the process-wide series at zero: received and disconnects per source,
/// republished per configured target (also without `--dual`: it then stays 0), duplicates,
/// DLQ depth, both reload results and the legacy-subscriber gauge of every source channel.
pub fn process_series(cfg: &crate::config::Config) {
    for s in &cfg.sources {
        metrics::counter!(metric::MESSAGES_RECEIVED, "source" => s.name.clone()).increment(0);
        metrics::counter!(metric::SOURCE_DISCONNECTS, "source" => s.name.clone()).increment(0);
        if let Some(p) = s.pubsub() {
            for c in &p.channels {
                metrics::gauge!(metric::LEGACY_SUBSCRIBERS, "channel" => c.clone()).increment(0.0);
            }
        }
    }
    for t in &cfg.republish.targets {
        metrics::counter!(metric::REPUBLISHED, "target" => t.label()).increment(0);
    }
    metrics::counter!(metric::DUPLICATES_DROPPED).increment(0);
    for limit in ["max_entries", "max_age"] {
        metrics::counter!(metric::DLQ_TRIMMED, "limit" => limit).increment(0);
    }
    metrics::gauge!(metric::DLQ_DEPTH).increment(0.0);
    for result in ["success", "failure"] {
        metrics::counter!(metric::CONFIG_RELOADS, "result" => result).increment(0);
    }
}

/// Histogram buckets that suit webhooks: 1 ms … 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus recorder and describes every metric. Call once per process.
pub fn init_metrics() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        metric::PUBLISH_SUCCESS,
        "Webhook deliveries answered with 2xx"
    );
    describe_counter!(metric::PUBLISH_FAILURE, "Failed webhook attempts by reason");
    describe_counter!(metric::RETRY_COUNT, "Webhook retries scheduled");
    describe_gauge!(
        metric::CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open"
    );
    describe_histogram!(
        metric::DELIVERY_DURATION,
        Unit::Seconds,
        "Duration of one HTTP attempt"
    );
    describe_histogram!(metric::END_TO_END, Unit::Seconds, "Receipt to delivered");
    describe_counter!(
        metric::MESSAGES_RECEIVED,
        "Messages read from Redis sources"
    );
    describe_counter!(
        metric::DUPLICATES_DROPPED,
        "Messages dropped as repeats of an idempotency key"
    );
    describe_counter!(metric::REPUBLISHED, "Messages republished in dual mode");
    describe_gauge!(
        metric::QUEUE_DEPTH,
        "Messages not delivered yet per endpoint: waiting, taken (prefetched or in flight) and scheduled for retry"
    );
    describe_gauge!(
        metric::QUEUE_JOBS,
        "Messages not delivered yet per endpoint by state: waiting, taken, retry_scheduled"
    );
    describe_gauge!(
        metric::QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Seconds since the message at the head of the endpoint's queue was received"
    );
    describe_gauge!(metric::DLQ_DEPTH, "Entries in the dead-letter stream");
    describe_counter!(
        metric::DLQ_TRIMMED,
        "Dead-letter entries removed by the retention limits"
    );
    describe_counter!(metric::SOURCE_DISCONNECTS, "Lost Redis subscriptions");
    describe_counter!(metric::CONFIG_RELOADS, "Config reloads by result");
    describe_gauge!(
        metric::LEGACY_SUBSCRIBERS,
        "Non-bridge subscribers of a source channel"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_to_one_of_the_closed_set_of_failure_reasons() {
        assert_eq!(FailureReason::from_status(401).as_str(), "http_401");
        assert_eq!(FailureReason::from_status(503).as_str(), "http_503");
        assert_eq!(FailureReason::from_status(418).as_str(), "http_4xx");
        assert_eq!(FailureReason::from_status(507).as_str(), "http_5xx");
        assert_eq!(FailureReason::from_status(301).as_str(), "http_3xx");
        assert_eq!(FailureReason::from_status(102).as_str(), "http_other");
        for status in 100..=999 {
            let r = FailureReason::from_status(status);
            assert!(FailureReason::ALL.contains(&r), "{status} → {r:?}");
        }
        let labels: std::collections::BTreeSet<_> =
            FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels.len(),
            FailureReason::ALL.len(),
            "labels are distinct"
        );
    }
}
