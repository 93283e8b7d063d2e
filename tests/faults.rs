//! Faults around the bridge: Redis dying and coming back, messages that cannot be
//! delivered as they are, and shutting down with deliveries in flight.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// What [`send_one`] set up.
struct OneSent {
    rx: Receiver,
    config: String,
    bridge: Bridge,
    /// The first request, as it arrived (its answer may still be delayed).
    request: Recorded,
}

/// Starts a receiver that answers 200 after `delay` and a bridge on `redis` (key prefix
/// `prefix`, then the `extra` config, then one `site` endpoint at the receiver), publishes one
/// message, and returns once the receiver has the first request for it.
async fn send_one(redis: &RedisServer, prefix: &str, delay: Duration, extra: &str) -> OneSent {
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().delay(delay));
    let config = base_toml(redis, prefix) + extra + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    let request = rx.wait_for_count(1, PATIENCE).await.remove(0);
    OneSent {
        rx,
        config,
        bridge,
        request,
    }
}

/// Extra config: give up on deliveries in flight 300 ms after SIGTERM.
const SHUTDOWN_300MS: &str = "\n[delivery]\nshutdown_timeout = \"300ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_is_killed_and_restarted_the_bridge_resubscribes_and_delivers_new_messages() {
    let mut redis = RedisServer::start_with_aof();
    let OneSent { rx, bridge, .. } = send_one(&redis, "t-redis-restart", Duration::ZERO, "").await;

    redis.kill();
    wait_until(
        PATIENCE,
        "/readyz stops answering 200 after Redis died",
        || async { bridge.readyz().await != Some(200) },
    )
    .await;
    redis.restart();
    wait_until(
        PATIENCE,
        "/readyz answers 200 again after Redis restarted",
        || async { bridge.readyz().await == Some(200) },
    )
    .await;

    assert_eq!(
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", 2))
            .await,
        1,
        "the bridge is subscribed again\n{}",
        bridge.logs()
    );
    let reqs = rx.wait_for_count(2, PATIENCE).await;
    assert_eq!(reqs[1].json()["n"], 2, "{}", bridge.logs());
    let disconnects = bridge
        .metric_value("bridge_source_disconnects_total", &[("source", "pubsub")])
        .await;
    assert!(
        disconnects >= 1.0,
        "bridge_source_disconnects_total{{source=pubsub}} = {disconnects}\n{}",
        bridge.logs()
    );
}

/// How long Redis stays down in the resubscribe test: long enough for the resubscribe
/// backoff to reach its cap (100 ms doubling reaches 1 s after four attempts, ~1.5 s).
const REDIS_DOWN_FOR: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_two_seconds_after_redis_is_back_is_delivered() {
    let mut redis = RedisServer::start_with_aof();
    let OneSent { rx, bridge, .. } = send_one(&redis, "t-resubscribe", Duration::ZERO, "").await;

    redis.kill();
    wait_until(
        SECS(10),
        "/readyz stops answering 200 after Redis died",
        || async { bridge.readyz().await != Some(200) },
    )
    .await;
    // The outage itself: the bridge keeps trying to subscribe and its waits grow to the cap.
    tokio::time::sleep(REDIS_DOWN_FOR).await;
    redis.restart();
    // The scenario, not a synchronisation: the registry publishes 2 s after Redis is back,
    // whether or not the bridge has resubscribed (pub/sub does not wait for it).
    let back = Instant::now();
    tokio::time::sleep(SECS(2)).await;
    let subscribers = redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 2))
        .await;
    assert_eq!(
        subscribers,
        1,
        "the bridge was not subscribed again {:?} after Redis came back\n{}",
        back.elapsed(),
        bridge.logs()
    );
    let reqs = rx.wait_for_count(2, SECS(10)).await;
    assert_eq!(reqs[1].json()["n"], 2, "{}", bridge.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_and_oversized_messages_are_dead_lettered_with_the_reason_and_do_not_block_others()
{
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-bad-messages").replace(
        "allow_private_networks = true",
        "allow_private_networks = true\nmax_payload_bytes = 64",
    ) + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let not_json = "this is { not json";
    let oversized = format!(r#"{{"event_type":"big","pad":"{}"}}"#, "x".repeat(100));
    assert!(oversized.len() > 64);
    redis.publish(DEFAULT_CHANNEL, not_json).await;
    redis.publish(DEFAULT_CHANNEL, &oversized).await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 3))
        .await;

    let reqs = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(reqs[0].json()["n"], 3, "{}", bridge.logs());
    let entries = bridge
        .wait_for_dlq_entries(2, "the DLQ holds the two rejected messages")
        .await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let find = |body: &str| {
        entries
            .iter()
            .find(|e| e["body"] == body)
            .unwrap_or_else(|| panic!("no DLQ entry with body {body}: {entries:?}"))
            .clone()
    };
    let e = find(not_json);
    assert!(
        e["error"].as_str().unwrap().contains("not valid JSON"),
        "{e}"
    );
    assert_eq!(e["stage"], "ingest", "{e}");
    let e = find(&oversized);
    assert!(
        e["error"].as_str().unwrap().contains("max_payload_bytes"),
        "{e}"
    );
    assert_eq!(e["stage"], "ingest", "{e}");
    assert_eq!(rx.requests().len(), 1, "only the valid message was POSTed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_delivery_in_flight_then_exits_0() {
    let redis = RedisServer::start();
    let OneSent { rx, bridge, .. } =
        send_one(&redis, "t-graceful", Duration::from_millis(1500), "").await;
    bridge.sigterm();
    let status = bridge.wait_exit(PATIENCE).await;
    let exited_at = Instant::now();

    assert!(status.success(), "exit status {status}\n{}", bridge.logs());
    let req = &rx.requests()[0];
    let answered_at = req
        .answered_at
        .unwrap_or_else(|| panic!("the bridge exited before the answer\n{}", bridge.logs()));
    assert!(exited_at >= answered_at);
    assert!(
        exited_at - req.at >= Duration::from_millis(1400),
        "exited {:?} after the request arrived; the receiver needed 1.5 s",
        exited_at - req.at
    );
    assert!(
        bridge
            .full_logs()
            .contains("all in-flight deliveries finished"),
        "{}",
        bridge.logs()
    );
    assert!(
        bridge.dlq_entries(&[]).is_empty(),
        "the finished delivery is not dead-lettered"
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_on_a_slow_delivery_after_shutdown_timeout_and_exits_0() {
    let redis = RedisServer::start();
    // `sent` keeps the receiver up: the bridge gives up on it, not the other way round. The
    // receiver holds its answer far longer than the test waits, so an exit while the request
    // is still unanswered can only be the bridge giving up.
    let sent = send_one(&redis, "t-shutdown-timeout", SECS(300), SHUTDOWN_300MS).await;
    let bridge = &sent.bridge;
    let signalled = Instant::now();
    bridge.sigterm();
    let status = bridge.wait_exit(PATIENCE).await;
    let took = signalled.elapsed();

    assert!(status.success(), "exit status {status}\n{}", bridge.logs());
    assert!(
        sent.rx.requests()[0].answered_at.is_none(),
        "the bridge exited before the receiver answered\n{}",
        bridge.logs()
    );
    assert!(
        took >= Duration::from_millis(300),
        "the bridge waited shutdown_timeout (300ms) first; it exited after {took:?}"
    );
    assert!(
        bridge.full_logs().contains("shutdown_timeout"),
        "the log says the deadline passed\n{}",
        bridge.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_abandoned_at_shutdown_timeout_stays_in_redis_and_the_next_run_delivers_it() {
    let redis = RedisServer::start();
    let OneSent {
        rx,
        config,
        bridge: first,
        request,
    } = send_one(&redis, "t-abandoned", SECS(300), SHUTDOWN_300MS).await;
    let key = request.idempotency_key();
    first.stop(PATIENCE).await;
    drop(first);

    // Restarted at once, as an orchestrator does after a rolling update.
    rx.set_default(Reply::ok());
    let next = Bridge::start(&config).await;
    let reqs = rx.wait_for_count(2, PATIENCE).await;
    assert_eq!(
        reqs[1].idempotency_key(),
        key,
        "the next run re-delivers the message the previous one left in flight\n{}",
        next.logs()
    );
    assert_eq!(reqs[1].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_flight_when_the_bridge_is_killed_with_sigkill_is_delivered_by_the_next_run() {
    let redis = RedisServer::start();
    // The first attempt never gets its answer: the bridge dies while waiting.
    let OneSent {
        rx,
        config,
        bridge: first,
        request,
    } = send_one(&redis, "t-kill-9", SECS(30), "").await;
    let key = request.idempotency_key();
    first.kill();
    rx.set_default(Reply::ok());

    let next = Bridge::start(&config).await;
    let reqs = rx.wait_for_count(2, PATIENCE).await;
    assert_eq!(
        reqs[1].idempotency_key(),
        key,
        "the next run delivers the message the killed one had in flight\n{}",
        next.logs()
    );
    assert_eq!(reqs[1].json()["n"], 1);
    assert_eq!(reqs[1].status, 200);
}

/// Runs one Redis command on `redis`.
async fn redis_cmd<T: redis::FromRedisValue>(redis: &RedisServer, args: &[&str]) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut redis.conn().await)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Pushes messages `ns` to the list source and adds them to the stream source.
async fn push_to_list_and_stream(redis: &RedisServer, ns: std::ops::RangeInclusive<u32>) {
    for n in ns {
        let _: i64 = redis_cmd(redis, &["LPUSH", "t-reconnect:list", &message("list", n)]).await;
        let _: String = redis_cmd(
            redis,
            &[
                "XADD",
                "t-reconnect:stream",
                "*",
                "body",
                &message("stream", n),
            ],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_stream_sources_reconnect_after_a_redis_restart_and_lose_nothing() {
    // AOF: what was pushed before the kill is still in Redis after the restart.
    let mut redis = RedisServer::start_with_aof();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-reconnect")
        + r#"
[[sources]]
kind = "list"
name = "list"
key = "t-reconnect:list"

[[sources]]
kind = "stream"
name = "stream"
key = "t-reconnect:stream"
"# + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    push_to_list_and_stream(&redis, 1..=3).await;
    rx.wait_for_count(6, SECS(30)).await;
    // Pushed right before the kill: some may be read before it, some only after the restart.
    push_to_list_and_stream(&redis, 4..=6).await;
    redis.kill();
    wait_until(
        SECS(30),
        "both sources count the lost connection",
        || async {
            bridge
                .metric_value("bridge_source_disconnects_total", &[("source", "list")])
                .await
                >= 1.0
                && bridge
                    .metric_value("bridge_source_disconnects_total", &[("source", "stream")])
                    .await
                    >= 1.0
        },
    )
    .await;
    redis.restart();
    push_to_list_and_stream(&redis, 7..=9).await;

    let all: Vec<(String, u64)> = ["list", "stream"]
        .iter()
        .flat_map(|kind| (1..=9).map(move |n| (kind.to_string(), n)))
        .collect();
    let got = || -> std::collections::BTreeSet<(String, u64)> {
        rx.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| {
                let v = r.json();
                (
                    v["event_type"].as_str().unwrap().to_string(),
                    v["n"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    wait_until(
        SECS(60),
        "every message pushed before, across and after the restart is delivered",
        || async { got().len() == all.len() },
    )
    .await;
    let all: std::collections::BTreeSet<(String, u64)> = all.into_iter().collect();
    assert_eq!(got(), all, "{}", bridge.logs());
    let status = bridge.status_json().await;
    for source in status["sources"].as_array().expect("/status sources") {
        assert_eq!(source["connected"], true, "{source}");
    }
}
