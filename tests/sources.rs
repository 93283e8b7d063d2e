//! The registry's other paths into the bridge: the list of envelopes, streams, repeats of
//! one message, and the Redis fallback for dead letters.

mod common;

use common::*;

async fn redis_cmd<T: redis::FromRedisValue>(redis: &RedisServer, args: &[&str]) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_pushed_to_the_registry_list_is_delivered_as_its_payload_keyed_like_the_pubsub_message()
 {
    let f = fixtures();
    let envelope = f["envelope"]["body"].as_str().unwrap();
    // The payload carries the key fields: the registry's pub/sub key, not the message_id.
    let pubsub_key = f["model_ready_message"]["idempotency_key"]
        .as_str()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(envelope).unwrap();

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-list-envelope")
        + r#"
[[sources]]
kind = "list"
key = "hokusai:model_ready_queue"
unwrap_envelope = true
"# + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let _: i64 = redis_cmd(&redis, &["LPUSH", "hokusai:model_ready_queue", envelope]).await;
    let reqs = rx.wait_for_count(1, PATIENCE).await;
    let req = &reqs[0];
    // The payload's bytes exactly as they sit inside the envelope, not re-serialised.
    let start = envelope.find(r#""payload":"#).unwrap() + r#""payload":"#.len();
    let end = envelope.rfind(r#","timestamp":"#).unwrap();
    let expected = &envelope[start..end];
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        expected,
        "the envelope's payload, byte for byte\n{}",
        bridge.logs()
    );
    assert_eq!(req.json(), parsed["payload"]);
    assert_eq!(req.idempotency_key(), pubsub_key);
    assert_eq!(req.header("x-hokusai-event"), "model_ready_to_deploy");
    wait_until(PATIENCE, "the source list is consumed", || async {
        redis_cmd::<i64>(&redis, &["LLEN", "hokusai:model_ready_queue"]).await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_added_to_a_stream_source_is_delivered_with_its_body_field() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-stream-source")
        + r#"
[[sources]]
kind = "stream"
key = "registry-events"
"# + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let body = message("model.ready", 1);
    let _: String = redis_cmd(&redis, &["XADD", "registry-events", "*", "body", &body]).await;
    let reqs = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(&reqs[0].body[..], body.as_bytes(), "{}", bridge.logs());
    assert_eq!(reqs[0].header("x-hokusai-event"), "model.ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_published_twice_is_delivered_once() {
    let f = fixtures();
    let body = f["model_ready_message"]["body"].as_str().unwrap();
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-dedupe") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    redis.publish(DEFAULT_CHANNEL, body).await;
    redis.publish(DEFAULT_CHANNEL, body).await;
    // The marker is published after both; once it arrived, the repeat would have too.
    redis.publish(DEFAULT_CHANNEL, message("marker", 99)).await;
    wait_until(PATIENCE, "the marker arrived", || async {
        rx.requests()
            .iter()
            .any(|r| r.body.starts_with(b"{\"event_type\":\"marker\""))
    })
    .await;
    wait_until(PATIENCE, "bridge_duplicates_dropped_total is 1", || async {
        bridge
            .metric_value("bridge_duplicates_dropped_total", &[])
            .await
            == 1.0
    })
    .await;
    let copies = rx
        .requests()
        .iter()
        .filter(|r| &r.body[..] == body.as_bytes())
        .count();
    assert_eq!(copies, 1, "delivered once\n{}", bridge.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enable_redis_fallback_a_dead_lettered_body_is_also_pushed_to_the_fallback_list() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(410));
    let config = base_toml(&redis, "t-fallback") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start_with_env(&config, &[("ENABLE_REDIS_FALLBACK", "true")]).await;

    let body = message("model.ready", 1);
    redis.publish(DEFAULT_CHANNEL, &body).await;
    let fallback = "hokusai:model_ready_queue:webhook-fallback";
    wait_until(PATIENCE, "the fallback list has the body", || async {
        redis_cmd::<Vec<String>>(&redis, &["LRANGE", fallback, "0", "-1"]).await
            == vec![body.clone()]
    })
    .await;
    let entries = bridge.dlq_entries(&[("ENABLE_REDIS_FALLBACK", "true")]);
    assert_eq!(entries.len(), 1, "and the DLQ has it: {entries:?}");
    assert_eq!(entries[0]["last_status"], 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_skips_a_list_item_that_was_not_a_registry_envelope_instead_of_posting_it_raw() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-replay-envelope")
        + r#"
[[sources]]
kind = "list"
name = "registry"
key = "hokusai:model_ready_queue"
unwrap_envelope = true
"# + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let raw = r#"{"model_id":"m","token_symbol":"t","mlflow_run_id":null,"model_version":"1"}"#;
    let _: i64 = redis_cmd(&redis, &["LPUSH", "hokusai:model_ready_queue", raw]).await;
    wait_until(
        PATIENCE,
        "the raw item is dead-lettered at ingest",
        || async { redis_cmd::<i64>(&redis, &["XLEN", "t-replay-envelope:dlq"]).await == 1 },
    )
    .await;
    let entries = bridge.dlq_entries(&[]);
    let e = &entries[0];
    assert_eq!(e["stage"], "ingest", "{e}");
    assert_eq!(e["source"], "registry", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("not a registry envelope"),
        "{e}"
    );

    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped entry makes replay fail: {}",
        show(&out)
    );
    assert!(
        err.contains("skipped") && err.contains("not a registry envelope"),
        "replay says why it skipped the entry: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 skipped"),
        "{}",
        show(&out)
    );
    assert!(
        rx.requests().is_empty(),
        "the raw item is never POSTed: {:?}",
        rx.requests()
    );
    assert_eq!(
        bridge.dlq_entries(&[]).len(),
        1,
        "the entry stays in the DLQ"
    );
}
