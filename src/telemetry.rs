//! Telemetry: the log subscriber (json or text), the Prometheus metrics registry and the
//! W3C trace context sent with each webhook.

use std::io::IsTerminal;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

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
/// [`FailureReason`], retries, circuit state, queue depth and both histograms), so the
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

type FilterHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Lets a config reload change the log level.
static FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Installs the log subscriber. `RUST_LOG`, when set, wins over `log.level`. Logs go to
/// stderr so that stdout stays free for command output.
pub fn init_logging(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel::layer());
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second init (tests, reload) keeps the first subscriber.
    let _ = result;
}

/// Applies a new `log.level` (a reload); `RUST_LOG`, when set, keeps winning.
pub fn set_log_level(level: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and overrides log.level".into());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(h) => h.reload(filter).map_err(|e| e.to_string()),
        None => Err("logging is not initialised".into()),
    }
}

/// Installs the Prometheus recorder and describes every metric. Call once per process.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
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

/// The `traceparent` to send for a delivery made inside `span`. With OpenTelemetry export
/// on, the span joins the publisher's trace (when the payload carried a valid
/// `traceparent`) and the header names the span itself; otherwise the header continues the
/// publisher's trace id with a fresh span id, or starts a new trace.
pub fn delivery_traceparent(span: &tracing::Span, parent: Option<&str>) -> String {
    otel::traceparent_for(span, parent).unwrap_or_else(|| traceparent(parent))
}

/// A W3C `traceparent` for one delivery: continues the publisher's trace when the payload
/// carried a valid `traceparent`, else starts a new trace. The span id is always new.
pub fn traceparent(parent: Option<&str>) -> String {
    use std::fmt::Write as _;
    // One allocation of the final size: this runs for every delivery attempt.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match parent.and_then(parse_trace_id) {
        Some(trace_id) => out.push_str(trace_id),
        None => {
            let _ = write!(out, "{:032x}", rand::random::<u128>() | 1);
        }
    }
    let _ = write!(out, "-{:016x}-01", rand::random::<u64>() | 1);
    out
}

/// The trace id of a valid version-00 `traceparent`.
fn parse_trace_id(tp: &str) -> Option<&str> {
    let mut parts = tp.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (version == "00"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parts.next().is_none())
    .then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_continues_a_valid_parent_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = traceparent(Some(parent));
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "span id must be new: {tp}"
        );
    }

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

    #[test]
    fn traceparent_starts_a_new_trace_for_garbage() {
        let tp = traceparent(Some("00-zz-zz-01"));
        let parts: Vec<_> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert!(parse_trace_id(&tp).is_some());
    }
}

/// CloudWatch Embedded Metric Format: with `--metrics-emf`, the four metrics the registry's
/// docs promised for CloudWatch are also written to stdout as EMF lines (namespace
/// `Hokusai/Webhooks`, one line per endpoint and interval, counters as deltas).
pub mod emf {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, RwLock};
    use std::time::{Duration, SystemTime};

    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::metric;
    use crate::endpoint_state::EndpointState;

    /// The EMF namespace.
    pub const NAMESPACE: &str = "Hokusai/Webhooks";

    /// One EMF document for an endpoint.
    pub fn line(
        endpoint: &str,
        success: u64,
        failure: u64,
        retries: u64,
        circuit: u64,
        now: SystemTime,
    ) -> String {
        let ts = crate::util::time::unix_ms(now);
        json!({
            "_aws": {
                "Timestamp": ts,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["endpoint"]],
                    "Metrics": [
                        {"Name": metric::PUBLISH_SUCCESS, "Unit": "Count"},
                        {"Name": metric::PUBLISH_FAILURE, "Unit": "Count"},
                        {"Name": metric::RETRY_COUNT, "Unit": "Count"},
                        {"Name": metric::CIRCUIT_STATE, "Unit": "None"}
                    ]
                }]
            },
            "endpoint": endpoint,
            metric::PUBLISH_SUCCESS: success,
            metric::PUBLISH_FAILURE: failure,
            metric::RETRY_COUNT: retries,
            metric::CIRCUIT_STATE: circuit,
        })
        .to_string()
    }

    /// Writes one line per endpoint every `interval` until `shutdown` (and once more then).
    pub async fn run(
        endpoints: Arc<RwLock<Vec<Arc<EndpointState>>>>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut last: HashMap<String, (u64, u64, u64)> = HashMap::new();
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.cancelled() => true,
            };
            let states = endpoints.read().unwrap_or_else(|p| p.into_inner()).clone();
            let now = SystemTime::now();
            let mut out = std::io::stdout().lock();
            for s in states {
                let cur = (
                    s.delivered.load(Ordering::Relaxed),
                    s.failed.load(Ordering::Relaxed),
                    s.retries.load(Ordering::Relaxed),
                );
                let prev = last.insert(s.name.clone(), cur).unwrap_or((0, 0, 0));
                let l = line(
                    &s.name,
                    cur.0.saturating_sub(prev.0),
                    cur.1.saturating_sub(prev.1),
                    cur.2.saturating_sub(prev.2),
                    s.circuit.load(Ordering::Relaxed),
                    now,
                );
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
            if stopping {
                return;
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_line_has_the_structure_cloudwatch_requires() {
            let l = line(
                "site",
                3,
                1,
                2,
                0,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            );
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            let aws = &v["_aws"];
            assert_eq!(aws["Timestamp"], 1_700_000_000_000u64);
            let cwm = &aws["CloudWatchMetrics"][0];
            assert_eq!(cwm["Namespace"], "Hokusai/Webhooks");
            assert_eq!(cwm["Dimensions"], serde_json::json!([["endpoint"]]));
            // Every declared metric and dimension must be a top-level member.
            for m in cwm["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                assert!(v[name].is_number(), "{name} missing from the document");
            }
            assert_eq!(v["endpoint"], "site");
            assert_eq!(v["webhook_publish_success_total"], 3);
            assert_eq!(v["webhook_retry_count_total"], 2);
        }
    }
}

/// OpenTelemetry export over OTLP/HTTP, on when the standard `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set; the other standard variables
/// (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`) apply as usual. Spans
/// are sent with the bridge's own reqwest client.
pub mod otel {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    /// Whether the environment asks for OTLP export.
    pub fn requested() -> bool {
        [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
    }

    /// The exporter's transport: the bridge's reqwest client, run on the tokio runtime (the
    /// SDK's batch processor calls it from its own thread).
    #[derive(Debug)]
    struct Client {
        http: reqwest::Client,
        rt: tokio::runtime::Handle,
    }

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for Client {
        async fn send_bytes(
            &self,
            request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
        ) -> Result<
            opentelemetry_http::Response<opentelemetry_http::Bytes>,
            opentelemetry_http::HttpError,
        > {
            let http = self.http.clone();
            let task = self.rt.spawn(async move {
                let (parts, body) = request.into_parts();
                let mut req = http.request(parts.method, parts.uri.to_string()).body(body);
                for (k, v) in parts.headers.iter() {
                    req = req.header(k, v);
                }
                let resp = req.send().await?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let bytes = resp.bytes().await?;
                let mut out = opentelemetry_http::Response::new(bytes);
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                Ok::<_, reqwest::Error>(out)
            });
            match task.await {
                Ok(r) => r.map_err(|e| Box::new(e) as opentelemetry_http::HttpError),
                Err(e) => Err(Box::new(e) as opentelemetry_http::HttpError),
            }
        }
    }

    /// The tracing layer that exports spans, or `None` when export is off or cannot start
    /// (the reason is printed: logging is not up yet).
    pub fn layer<S>()
    -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        if !requested() {
            return None;
        }
        let rt = tokio::runtime::Handle::try_current().ok()?;
        crate::util::net::install_crypto_provider();
        let http = match reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("OpenTelemetry export off: cannot build its HTTP client: {e}");
                return None;
            }
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(Client { http, rt })
            .build();
        let exporter = match exporter {
            Ok(e) => e,
            Err(e) => {
                eprintln!("OpenTelemetry export off: {e}");
                return None;
            }
        };
        let service =
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "redis-webhook-bridge".into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("redis-webhook-bridge");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// Exports what is buffered; call before exit.
    pub fn shutdown() {
        if let Some(p) = PROVIDER.get() {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }

    /// With export on: makes `span` a child of the publisher's `traceparent` (if valid) and
    /// returns the `traceparent` naming `span`.
    pub fn traceparent_for(span: &tracing::Span, parent: Option<&str>) -> Option<String> {
        PROVIDER.get()?;
        if let Some(tp) = parent {
            let carrier: HashMap<String, String> =
                HashMap::from([("traceparent".to_string(), tp.to_string())]);
            let cx = TraceContextPropagator::new().extract(&carrier);
            if cx.span().span_context().is_valid() {
                let _ = span.set_parent(cx);
            }
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return None;
        }
        Some(format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ))
    }
}
