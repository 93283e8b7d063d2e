//! Telemetry: the log subscriber ([`logging`]), metric names and the Prometheus registry
//! ([`metrics`]), the W3C trace context sent with each webhook ([`trace`]), CloudWatch EMF
//! lines ([`emf`]) and OTLP trace export ([`otel`]).
//!
//! The items every stage uses are re-exported here, so call sites name
//! `crate::telemetry::metric::…`, `crate::telemetry::FailureReason` and the like whatever
//! file they live in. The submodule [`metrics`] shares its name with the `metrics` crate;
//! inside this module it is always written `self::metrics`.

pub mod emf;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod trace;

pub use self::metrics::{
    FailureReason, LATENCY_BUCKETS, endpoint_series, init_metrics, metric, process_series,
};
pub use logging::{LogLevelError, init_logging, set_log_level};
pub use trace::{delivery_traceparent, traceparent};
