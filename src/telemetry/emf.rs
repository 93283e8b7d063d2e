//! CloudWatch Embedded Metric Format: with `--metrics-emf`, the four metrics the registry's
//! docs promised for CloudWatch are also written to stdout as EMF lines (namespace
//! `Hokusai/Webhooks`, one line per endpoint and interval, counters as deltas).

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
