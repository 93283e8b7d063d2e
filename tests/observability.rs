//! Observability and hot reload against the real binary: config reloads (add, remove, secret
//! rotation mid-stream, invalid config), every contract metric exported with true values,
//! CloudWatch EMF lines, and OTLP spans reaching an in-test OTLP/HTTP receiver.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Bridge, DEFAULT_CHANNEL, Receiver, RedisServer, Reply, base_toml, wait_until};
use redis_webhook_bridge::config::Secret;
use redis_webhook_bridge::delivery::signing::{self, Scheme};

const T: Duration = Duration::from_secs(30);

fn event(n: usize) -> String {
    format!(
        r#"{{"model_id":"m-{n}","token_symbol":"tok","mlflow_run_id":"run","model_version":"{n}"}}"#
    )
}

fn endpoint(name: &str, url: &str, secret: &str) -> String {
    format!(
        "\n[[endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{secret}\"]\nretry_delay = \"50ms\"\n"
    )
}

async fn config_version(b: &Bridge) -> u64 {
    b.status_json().await["config_version"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_an_endpoint_and_a_file_change_removes_one() {
    let redis = RedisServer::start();
    let a = Receiver::start().await;
    let b_recv = Receiver::start().await;
    let base = base_toml(&redis, "reload-add");
    let one = format!("{base}{}", endpoint("a", &a.url("/a"), "sa"));
    let bridge = Bridge::start(&one).await;

    redis.publish(DEFAULT_CHANNEL, event(1)).await;
    a.wait_for_count(1, T).await;

    // Add endpoint b and signal.
    let two = format!("{one}{}", endpoint("b", &b_recv.url("/b"), "sb"));
    std::fs::write(bridge.config_path(), &two).unwrap();
    bridge.sighup();
    wait_until(T, "config_version 2 after adding an endpoint", || async {
        config_version(&bridge).await >= 2
    })
    .await;
    let names: Vec<String> = bridge.status_json().await["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"], "{}", bridge.logs());
    redis.publish(DEFAULT_CHANNEL, event(2)).await;
    a.wait_for_count(2, T).await;
    let got_b = b_recv.wait_for_count(1, T).await;
    assert_eq!(
        got_b[0].json()["model_id"],
        "m-2",
        "the added endpoint gets new messages"
    );

    // Remove a by editing the file only (the poller notices the change).
    let only_b = format!("{base}{}", endpoint("b", &b_recv.url("/b"), "sb"));
    std::fs::write(bridge.config_path(), &only_b).unwrap();
    wait_until(T, "config_version 3 after removing an endpoint", || async {
        config_version(&bridge).await >= 3
    })
    .await;
    redis.publish(DEFAULT_CHANNEL, event(3)).await;
    b_recv.wait_for_count(2, T).await;
    // b got message 3; a must not. The marker (message 3 at b) proves it was routed already.
    assert_eq!(
        a.requests().len(),
        2,
        "a removed endpoint gets nothing new: {}",
        bridge.logs()
    );
    assert_eq!(
        bridge
            .metric_value("bridge_config_reloads_total", &[("result", "success")])
            .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_mid_stream_without_losing_a_delivery() {
    let redis = RedisServer::start();
    let recv = Receiver::start().await;
    let base = base_toml(&redis, "reload-rotate");
    let old = format!(
        "{base}{}",
        endpoint("site", &recv.url("/hook"), "old-secret-1")
    );
    let bridge = Bridge::start(&old).await;

    // A steady stream of messages while the secret changes: it runs until the reload took
    // effect and 20 more messages were delivered after it, however long that takes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let client = redis.client();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _: i64 = redis::cmd("PUBLISH")
                    .arg(DEFAULT_CHANNEL)
                    .arg(event(n))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            n
        })
    };
    recv.wait_for_count(20, T).await;
    let rotated = format!(
        "{base}\n[[endpoints]]\nname = \"site\"\nurl = \"{}\"\nsecrets = [\"new-secret-2\", \"old-secret-1\"]\nretry_delay = \"50ms\"\n",
        recv.url("/hook")
    );
    std::fs::write(bridge.config_path(), rotated).unwrap();
    bridge.sighup();
    wait_until(T, "config_version 2 after the rotation", || async {
        config_version(&bridge).await >= 2
    })
    .await;
    let after_reload = recv.requests().len();
    recv.wait_for_count(after_reload + 20, T).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total = publisher.await.unwrap();
    let got = recv.wait_for_count(total, Duration::from_secs(60)).await;

    let old = [Secret::from_bytes("old-secret-1")];
    let new = [Secret::from_bytes("new-secret-2")];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (mut by_old, mut by_new) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for r in &got {
        seen.insert(r.json()["model_id"].as_str().unwrap().to_string());
        let v_old =
            signing::verify(Some(Scheme::HokusaiV2), &r.headers, &r.body, &old, now, 300).is_ok();
        let v_new =
            signing::verify(Some(Scheme::HokusaiV2), &r.headers, &r.body, &new, now, 300).is_ok();
        assert!(
            v_old || v_new,
            "every delivery is signed with one of the secrets"
        );
        by_old += v_old as usize;
        by_new += v_new as usize;
    }
    assert_eq!(
        seen.len(),
        total,
        "no message lost across the rotation: {}",
        bridge.logs()
    );
    assert!(
        by_old > 0,
        "deliveries before the reload use the old secret"
    );
    assert!(by_new > 0, "deliveries after the reload use the new secret");
    // Once rotated, the new secret signs: the last delivery verifies with it.
    let last = got.last().unwrap();
    assert!(
        signing::verify(
            Some(Scheme::HokusaiV2),
            &last.headers,
            &last.body,
            &new,
            now,
            300
        )
        .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_rejected_and_the_running_config_stays() {
    let redis = RedisServer::start();
    let recv = Receiver::start().await;
    let cfg = format!(
        "{}{}",
        base_toml(&redis, "reload-bad"),
        endpoint("site", &recv.url("/hook"), "s1")
    );
    let bridge = Bridge::start(&cfg).await;
    std::fs::write(
        bridge.config_path(),
        format!("{cfg}\n[delivery]\nbogus_key = 1\n"),
    )
    .unwrap();
    bridge.sighup();
    wait_until(T, "a failed reload to be counted", || async {
        bridge
            .metric_value("bridge_config_reloads_total", &[("result", "failure")])
            .await
            >= 1.0
    })
    .await;
    assert_eq!(config_version(&bridge).await, 1, "the running config stays");
    assert!(
        bridge.full_logs().contains("bogus_key"),
        "the rejection names the key: {}",
        bridge.logs()
    );
    redis.publish(DEFAULT_CHANNEL, event(1)).await;
    recv.wait_for_count(1, T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_metric_is_exported_with_true_values() {
    let redis = RedisServer::start();
    let recv = Receiver::start().await;
    // First attempt 503, then 200; the "bad" endpoint answers 400 (dead-lettered).
    recv.script(vec![Reply::status(503)]);
    let bad = Receiver::start().await;
    bad.set_default(Reply::status(400));
    let cfg = format!(
        "{}{}{}\n[republish]\ntargets = [{{ kind = \"list\", key = \"metrics-test:legacy\" }}]\n",
        base_toml(&redis, "metrics"),
        endpoint("site", &recv.url("/hook"), "s1"),
        endpoint("bad", &bad.url("/bad"), "s2"),
    );
    let bridge = Bridge::start_with_env(&cfg, &[("BRIDGE_DUAL", "true")]).await;
    redis.publish(DEFAULT_CHANNEL, event(1)).await;
    redis.publish(DEFAULT_CHANNEL, event(1)).await; // a duplicate
    recv.wait_for_count(2, T).await;
    // The receiver records a request before the bridge has read the answer: wait for the
    // bridge's own accounting of both outcomes before taking the snapshot.
    wait_until(
        T,
        "the 400 to be dead-lettered and the 200 counted",
        || async {
            bridge.metric_value("bridge_dlq_depth", &[]).await >= 1.0
                && bridge
                    .metric_value("webhook_publish_success_total", &[("endpoint", "site")])
                    .await
                    >= 1.0
        },
    )
    .await;
    let text = bridge.metrics_text().await;
    for name in redis_webhook_bridge::telemetry::metric::ALL {
        assert!(
            text.contains(&format!("\n{name}")) || text.contains(&format!("{name}_bucket")),
            "{name} missing from /metrics:\n{text}"
        );
    }
    let v = |name: &str, labels: &[(&str, &str)]| {
        common::metric_in(&text, name, labels).unwrap_or(-1.0)
    };
    assert_eq!(
        v("bridge_messages_received_total", &[("source", "pubsub")]),
        2.0
    );
    assert_eq!(v("bridge_duplicates_dropped_total", &[]), 1.0);
    assert_eq!(
        v("webhook_publish_success_total", &[("endpoint", "site")]),
        1.0
    );
    assert_eq!(v("webhook_retry_count_total", &[("endpoint", "site")]), 1.0);
    assert_eq!(
        v(
            "webhook_publish_failure_total",
            &[("endpoint", "site"), ("reason", "http_503")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "webhook_publish_failure_total",
            &[("endpoint", "bad"), ("reason", "http_400")]
        ),
        1.0
    );
    assert_eq!(
        v("webhook_circuit_breaker_state", &[("endpoint", "site")]),
        0.0
    );
    assert_eq!(
        v(
            "bridge_messages_republished_total",
            &[("target", "list:metrics-test:legacy")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "webhook_delivery_duration_seconds_count",
            &[("endpoint", "site")]
        ),
        2.0
    );
    assert_eq!(
        v(
            "webhook_end_to_end_latency_seconds_count",
            &[("endpoint", "site")]
        ),
        1.0
    );
    assert_eq!(
        v("bridge_source_disconnects_total", &[("source", "pubsub")]),
        0.0
    );
    assert!(
        text.contains("le=\"0.001\"") && text.contains("le=\"60\""),
        "buckets span 1 ms … 60 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_emf_writes_cloudwatch_lines_for_the_seed_metrics() {
    let redis = RedisServer::start();
    let recv = Receiver::start().await;
    let cfg = format!(
        "{}{}",
        base_toml(&redis, "emf"),
        endpoint("site", &recv.url("/hook"), "s1")
    );
    let bridge = Bridge::start_with_env(
        &cfg,
        &[
            ("BRIDGE_METRICS_EMF", "true"),
            ("BRIDGE_METRICS_EMF_INTERVAL", "200ms"),
        ],
    )
    .await;
    redis.publish(DEFAULT_CHANNEL, event(1)).await;
    recv.wait_for_count(1, T).await;
    wait_until(T, "an EMF line counting the delivery", || async {
        bridge
            .full_logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                v["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Hokusai/Webhooks"
                    && v["endpoint"] == "site"
                    && v["webhook_publish_success_total"] == 1
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_spans_reach_an_otlp_receiver_and_continue_the_publishers_trace() {
    // An OTLP/HTTP receiver: records every POST to /v1/traces.
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let app = {
        let bodies = bodies.clone();
        axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let bodies = bodies.clone();
                async move {
                    bodies.lock().unwrap().push(body.to_vec());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let redis = RedisServer::start();
    let recv = Receiver::start().await;
    let cfg = format!(
        "{}{}",
        base_toml(&redis, "otlp"),
        endpoint("site", &recv.url("/hook"), "s1")
    );
    let endpoint_env = format!("http://{otlp}");
    let bridge = Bridge::start_with_env(
        &cfg,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint_env.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    redis
        .publish(
            DEFAULT_CHANNEL,
            format!(r#"{{"model_id":"t","token_symbol":"x","mlflow_run_id":"r","model_version":"1","traceparent":"00-{trace_id}-00f067aa0ba902b7-01"}}"#),
        )
        .await;
    let got = recv.wait_for_count(1, T).await;
    let tp = got[0].header("traceparent");
    assert!(
        tp.starts_with(&format!("00-{trace_id}-")),
        "traceparent continues the publisher's trace: {tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "with a span of its own: {tp}"
    );
    let span_id = tp.split('-').nth(2).unwrap().to_string();
    wait_until(T, "the delivery span at the OTLP receiver", || async {
        let all: Vec<u8> = bodies.lock().unwrap().concat();
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        has(b"delivery_attempt")
            && has(&hex::decode(trace_id).unwrap())
            && has(&hex::decode(&span_id).unwrap())
    })
    .await;
    drop(bridge);
}
