//! Deliveries end to end: a real redis-server, the real binary, a real HTTP receiver.
//! Signatures, routing, retries, `Retry-After`, dead-lettering and replay, the circuit
//! breaker, and the binary's own `receive` command as the consumer.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Checks a captured request with Python's own `hmac`, `hashlib` and `base64`: no Rust code
/// of the crate is involved. argv: scheme, body file, headers JSON file, secret.
const PY_VERIFY: &str = r#"
import base64, hashlib, hmac, json, sys, time
scheme, body_path, headers_path, secret = sys.argv[1:5]
body = open(body_path, 'rb').read()
h = json.load(open(headers_path))
if scheme == 'hokusai-v2':
    ts, nonce = h['x-hokusai-timestamp'], h['x-hokusai-nonce']
    signed = ts.encode() + b'.' + nonce.encode() + b'.' + body
    expected = 'sha256=' + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    given = h['x-hokusai-signature'].split(',')
elif scheme == 'standard-webhooks':
    ts = h['webhook-timestamp']
    key = base64.b64decode(secret[len('whsec_'):]) if secret.startswith('whsec_') else secret.encode()
    signed = h['webhook-id'].encode() + b'.' + ts.encode() + b'.' + body
    expected = 'v1,' + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = h['webhook-signature'].split(' ')
elif scheme == 'hokusai-legacy':
    # The registry's original scheme: the body alone, no timestamp.
    ts = None
    expected = 'sha256=' + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = h['x-hokusai-signature'].split(',')
else:
    sys.exit('unknown scheme ' + scheme)
if ts is not None and abs(time.time() - int(ts)) > 300:
    print('stale timestamp', ts)
    sys.exit(2)
if not any(hmac.compare_digest(expected, g) for g in given):
    print('signature mismatch: expected', expected, 'got', given)
    sys.exit(1)
print('ok')
"#;

/// Writes `body` and the request's headers to files and runs [`PY_VERIFY`] on them.
fn python_verifies(
    dir: &std::path::Path,
    scheme: &str,
    req: &Recorded,
    body: &[u8],
    secret: &str,
) -> std::process::Output {
    let headers: BTreeMap<String, String> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body_path = dir.join(format!("{scheme}.body"));
    let headers_path = dir.join(format!("{scheme}.headers.json"));
    std::fs::write(&body_path, body).unwrap();
    std::fs::write(&headers_path, serde_json::to_vec(&headers).unwrap()).unwrap();
    python(
        PY_VERIFY,
        &[
            scheme,
            body_path.to_str().unwrap(),
            headers_path.to_str().unwrap(),
            secret,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_message_arrives_byte_for_byte_and_python_verifies_both_signature_schemes() {
    let f = fixtures();
    let body = f["model_ready_message"]["body"].as_str().unwrap();
    let expected_key = f["model_ready_message"]["idempotency_key"]
        .as_str()
        .unwrap();
    let whsec = f["standard_webhooks"][0]["secret"].as_str().unwrap();
    let v2_secret = "python-checks-this-v2-secret";

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-python-verify")
        + &endpoint_toml(
            "v2",
            &rx.url("/v2"),
            &format!("secrets = [\"{v2_secret}\"]\nsignature = \"hokusai-v2\""),
        )
        + &endpoint_toml(
            "std",
            &rx.url("/std"),
            &format!("secrets = [\"{whsec}\"]\nsignature = \"standard-webhooks\""),
        );
    let bridge = Bridge::start(&config).await;

    assert_eq!(redis.publish(DEFAULT_CHANNEL, body).await, 1);
    rx.wait_for_count(2, PATIENCE).await;
    let v2 = rx.requests_to("/v2").pop().expect("a request to /v2");
    let std_ = rx.requests_to("/std").pop().expect("a request to /std");

    for req in [&v2, &std_] {
        assert_eq!(req.method, "POST");
        assert_eq!(
            &req.body[..],
            body.as_bytes(),
            "{}: the body must arrive exactly as published\n{}",
            req.path,
            bridge.logs()
        );
        assert_eq!(req.idempotency_key(), expected_key, "{}", req.path);
        assert_eq!(req.header("content-type"), "application/json");
        assert!(
            req.header("user-agent")
                .starts_with("redis-webhook-bridge/"),
            "User-Agent: {}",
            req.header("user-agent")
        );
        assert_eq!(req.attempt(), 1);
    }
    assert_eq!(
        std_.header("webhook-id"),
        expected_key,
        "standard-webhooks' webhook-id is the idempotency key"
    );

    let dir = tempfile::TempDir::new().unwrap();
    for (scheme, req, secret) in [
        ("hokusai-v2", &v2, v2_secret),
        ("standard-webhooks", &std_, whsec),
    ] {
        let out = python_verifies(dir.path(), scheme, req, &req.body, secret);
        assert!(
            out.status.success(),
            "python rejects the {scheme} signature: {}",
            show(&out)
        );
        // The check is not vacuous: one changed byte of the body must fail it.
        let mut tampered = req.body.to_vec();
        tampered[1] ^= 0x01;
        let out = python_verifies(dir.path(), scheme, req, &tampered, secret);
        assert_eq!(
            out.status.code(),
            Some(1),
            "python accepted a tampered body under {scheme}: {}",
            show(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_receives_exactly_the_messages_its_channel_and_event_filters_select() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-routing")
        + r#"
[[sources]]
kind = "pubsub"
channels = ["models:ready", "orders:created", "marker"]
patterns = ["events:*"]
"# + &endpoint_toml(
        "models",
        &rx.url("/models"),
        r#"channels = ["models:*", "marker"]"#,
    ) + &endpoint_toml(
        "deploys",
        &rx.url("/deploys"),
        "channels = [\"events:*\", \"marker\"]\nevent_types = [\"deploy.*\", \"marker\"]",
    );
    let bridge = Bridge::start(&config).await;

    // models: 1 and 5; deploys: 2 (via the PSUBSCRIBE pattern); 3 and 4: nobody.
    let sent = [
        ("models:ready", message("model.ready", 1)),
        ("events:deploy", message("deploy.started", 2)),
        ("events:billing", message("billing.charged", 3)),
        ("orders:created", message("deploy.started", 4)),
        ("models:ready", message("deploy.finished", 5)),
    ];
    for (channel, body) in &sent {
        assert_eq!(
            redis.publish(channel, body).await,
            1,
            "{channel} is subscribed"
        );
    }
    // Both positives must arrive before the marker makes the counts final.
    wait_until(
        PATIENCE,
        "models got n=1 and n=5 and deploys got n=2",
        || async { rx.requests_to("/models").len() >= 2 && !rx.requests_to("/deploys").is_empty() },
    )
    .await;
    redis.publish("marker", message("marker", 99)).await;
    wait_until(PATIENCE, "both endpoints got the marker", || async {
        let marked = |path: &str| rx.requests_to(path).iter().any(|r| r.json()["n"] == 99);
        marked("/models") && marked("/deploys")
    })
    .await;

    let ns = |path: &str| -> Vec<u64> {
        let mut v: Vec<u64> = rx
            .requests_to(path)
            .iter()
            .map(|r| r.json()["n"].as_u64().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ns("/models"), vec![1, 5, 99], "{}", bridge.logs());
    assert_eq!(ns("/deploys"), vec![2, 99], "{}", bridge.logs());
    assert_eq!(rx.requests().len(), 5, "no request to any other path");
    for r in rx.requests() {
        assert_eq!(
            r.header("x-hokusai-event"),
            r.json()["event_type"].as_str().unwrap(),
            "X-Hokusai-Event is the payload's event_type"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_with_rising_attempt_numbers_and_the_same_key_then_delivered() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.script(vec![Reply::status(503), Reply::status(503)]);
    let config = base_toml(&redis, "t-retry-503")
        + &endpoint_toml("site", &rx.url("/hook"), "max_retries = 5");
    let bridge = Bridge::start(&config).await;

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    let reqs = rx.wait_for_count(3, PATIENCE).await;
    let attempts: Vec<u32> = reqs.iter().map(Recorded::attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3], "{}", bridge.logs());
    let keys: HashSet<String> = reqs.iter().map(Recorded::idempotency_key).collect();
    assert_eq!(
        keys.len(),
        1,
        "one idempotency key across retries: {keys:?}"
    );
    assert!(!keys.iter().next().unwrap().is_empty());
    let nonces: HashSet<String> = reqs.iter().map(|r| r.header("x-hokusai-nonce")).collect();
    assert_eq!(nonces.len(), 3, "every attempt is signed afresh");

    let labels = [("endpoint", "site")];
    wait_until(
        PATIENCE,
        "webhook_publish_success_total{endpoint=site} is 1",
        || async {
            bridge
                .metric_value("webhook_publish_success_total", &labels)
                .await
                == 1.0
        },
    )
    .await;
    let retries = bridge
        .metric_value("webhook_retry_count_total", &labels)
        .await;
    assert!(retries >= 2.0, "webhook_retry_count_total = {retries}");
    assert_eq!(rx.requests().len(), 3, "nothing after the 2xx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_a_429_is_honoured_over_a_shorter_retry_delay() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.script(vec![Reply::status(429).header("Retry-After", "2")]);
    let config = base_toml(&redis, "t-retry-after")
        + &endpoint_toml("site", &rx.url("/hook"), "retry_delay = \"50ms\"");
    let bridge = Bridge::start(&config).await;

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    let reqs = rx.wait_for_count(2, PATIENCE).await;
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        // The upper bound only says the delay was not wildly longer; a busy machine adds
        // scheduling delay, never less waiting.
        gap >= Duration::from_millis(2000) && gap < SECS(30),
        "second attempt {gap:?} after the 429 with Retry-After: 2 (retry_delay is 50ms)\n{}",
        bridge.logs()
    );
    assert_eq!(reqs[1].attempt(), 2);
    assert_eq!(reqs[1].idempotency_key(), reqs[0].idempotency_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_at_once_and_dlq_replay_delivers_it_once_the_receiver_is_fixed() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400));
    let config = base_toml(&redis, "t-dlq-replay")
        + &endpoint_toml("site", &rx.url("/hook"), "max_retries = 5");
    let bridge = Bridge::start(&config).await;
    let body = message("model.ready", 7);

    redis.publish(DEFAULT_CHANNEL, &body).await;
    wait_until(
        PATIENCE,
        "/status shows 1 dead-lettered delivery",
        || async { bridge.endpoint_status("site").await["dead_lettered"] == 1 },
    )
    .await;
    assert_eq!(rx.requests().len(), 1, "a 400 is permanent: no retry");
    let key = rx.requests()[0].idempotency_key();

    let entries = bridge.dlq_entries(&[]);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["endpoint"], "site", "{e}");
    assert_eq!(e["last_status"], 400, "{e}");
    assert_eq!(e["body"], body.as_str(), "{e}");
    assert_eq!(e["idempotency_key"], key.as_str(), "{e}");
    assert_eq!(e["attempts"], 1, "{e}");

    // The receiver is fixed; replay through the CLI with the same config.
    rx.set_default(Reply::ok());
    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    assert!(out.status.success(), "dlq replay --all: {}", show(&out));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "the replay POSTed once more");
    assert_eq!(&reqs[1].body[..], body.as_bytes());
    assert_eq!(
        reqs[1].idempotency_key(),
        key,
        "replay keeps the idempotency key"
    );
    assert_eq!(reqs[1].status, 200);
    let left = bridge.dlq_entries(&[]);
    assert!(
        left.is_empty(),
        "the DLQ is empty after the replay: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_the_threshold_pauses_for_the_recovery_time_then_delivers_everything()
 {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.script(vec![Reply::status(503); 3]);
    // One request at a time, so that the order of failures and the breaker is deterministic.
    let config = base_toml(&redis, "t-circuit")
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            r#"retry_delay = "50ms"
max_retry_delay = "200ms"
max_retries = 20
concurrency = 1
circuit_breaker = { failure_threshold = 3, recovery_time = "1s" }"#,
        );
    let bridge = Bridge::start(&config).await;

    for n in 1..=10 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    // The circuit is open for only 1 s, which a busy machine's polling can miss; its log
    // line stays. (The gauge and /status while open are checked in tests/observability.rs.)
    wait_until(PATIENCE, "the log says the circuit opened", || async {
        bridge
            .full_logs()
            .lines()
            .any(|l| l.contains("circuit opened") && l.contains("\"endpoint\":\"site\""))
    })
    .await;

    wait_until(PATIENCE, "all 10 messages were delivered", || async {
        rx.requests()
            .iter()
            .filter(|r| r.status == 200)
            .map(Recorded::idempotency_key)
            .collect::<HashSet<_>>()
            .len()
            == 10
    })
    .await;
    let reqs = rx.requests();
    let gap = reqs[3].at - reqs[2].at;
    assert!(
        gap >= Duration::from_millis(950),
        "no request may go while the circuit is open (recovery_time 1s); gap #3→#4 was {gap:?}\n{}",
        bridge.logs()
    );
    assert_eq!(
        reqs.len(),
        13,
        "3 failures + 10 deliveries: {}",
        bridge.logs()
    );
    let max_attempt = reqs.iter().map(Recorded::attempt).max().unwrap();
    assert!(
        max_attempt <= 2,
        "waiting on an open circuit spends no attempts; saw attempt {max_attempt}"
    );
    wait_until(PATIENCE, "webhook_publish_success_total is 10", || async {
        bridge
            .metric_value("webhook_publish_success_total", &[("endpoint", "site")])
            .await
            == 10.0
    })
    .await;
    assert_eq!(bridge.endpoint_status("site").await["dead_lettered"], 0);
    assert_eq!(bridge.endpoint_status("site").await["circuit"], "closed");
    assert!(bridge.dlq_entries(&[]).is_empty(), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_command_accepts_three_signed_events_after_one_drilled_failure() {
    let secret = "receive-cmd-secret-42";
    let receive = ReceiveCmd::start(&["--secret", secret, "--fail-first", "1"]).await;
    let redis = RedisServer::start();
    // `ordered`: the failed first message is retried in place, so it is accepted first.
    let config = base_toml(&redis, "t-receive")
        + &endpoint_toml(
            "site",
            &format!("http://127.0.0.1:{}/hook", receive.port),
            &format!("secrets = [\"{secret}\"]\nordered = true"),
        );
    let bridge = Bridge::start(&config).await;

    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    wait_until(PATIENCE, "`receive` printed 3 accepted events", || async {
        receive.events().len() >= 3
    })
    .await;
    let events = receive.events();
    assert_eq!(events.len(), 3, "{events:?}\n{}", bridge.logs());
    let attempts: Vec<u64> = events
        .iter()
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![2, 1, 1], "{events:?}");
    let ns: Vec<u64> = events
        .iter()
        .map(|e| e["body"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, vec![1, 2, 3], "in publish order: {events:?}");
    let keys: HashSet<&str> = events
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "distinct idempotency keys: {events:?}");
    assert!(
        events.iter().all(|e| e["scheme"] == "hokusai-v2"),
        "{events:?}"
    );
    assert!(
        receive.stderr().contains("drilled failure"),
        "{}",
        receive.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_another_endpoint() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let slow = Receiver::start().await;
    // The slow endpoint holds its first request far longer than the test runs.
    slow.set_default(Reply::ok().delay(SECS(300)));
    let config = base_toml(&redis, "t-isolation")
        + &endpoint_toml(
            "slow",
            &slow.url("/slow"),
            "concurrency = 1\ntimeout = \"600s\"",
        )
        + &endpoint_toml("fast", &rx.url("/fast"), "");
    let bridge = Bridge::start(&config).await;

    for n in 1..=5 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    // All five reach the fast endpoint while the slow one is still stuck on its first: had
    // the fast one waited for the slow one, it would have got nothing before its answer.
    let reqs = rx.wait_for_count(5, PATIENCE).await;
    assert_eq!(reqs.len(), 5, "{}", bridge.logs());
    let stuck = slow.requests();
    assert!(
        stuck.len() <= 1 && stuck.iter().all(|r| r.answered_at.is_none()),
        "the slow endpoint is still on its first, unanswered request: {stuck:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_deliver_each_message_exactly_once() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let endpoint = endpoint_toml("site", &rx.url("/hook"), "");
    // Same key prefix, so they share the journal and the queues; each its own admin port.
    let a = Bridge::start(&(base_toml(&redis, "t-replicas") + &endpoint)).await;
    let b = Bridge::start(&(base_toml(&redis, "t-replicas") + &endpoint)).await;

    for n in 1..=20 {
        assert_eq!(
            redis
                .publish(DEFAULT_CHANNEL, message("model.ready", n))
                .await,
            2,
            "both replicas are subscribed"
        );
    }
    rx.wait_for_count(20, PATIENCE).await;
    // Asserting that no duplicate follows: give one a fair chance to arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reqs = rx.requests();
    let keys: HashSet<String> = reqs.iter().map(Recorded::idempotency_key).collect();
    assert_eq!(keys.len(), 20, "every message arrived");
    assert_eq!(
        reqs.len(),
        20,
        "no message was delivered twice\n--- replica a ---\n{}\n--- replica b ---\n{}",
        a.logs(),
        b.logs()
    );
}

#[test]
fn dlq_show_of_a_malformed_id_prints_the_redis_error_once() {
    let redis = RedisServer::start();
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("config.toml");
    let config =
        base_toml(&redis, "t-dlq-show") + &endpoint_toml("site", "https://example.com/hook", "");
    std::fs::write(&path, config).unwrap();
    let out = run_cli(
        &[
            "--config",
            path.to_str().unwrap(),
            "dlq",
            "show",
            "not-an-id",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("Invalid stream ID").count(),
        1,
        "the Redis error once: {}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hokusai_legacy_endpoint_signs_the_body_as_pythons_hmac_does() {
    let f = fixtures();
    let legacy = &f["hokusai_legacy"];
    let body = legacy["body"].as_str().unwrap();
    let secret = legacy["secret"].as_str().unwrap();

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-legacy")
        + &endpoint_toml(
            "legacy",
            &rx.url("/legacy"),
            &format!("secrets = [\"{secret}\"]\nsignature = \"hokusai-legacy\""),
        );
    let bridge = Bridge::start(&config).await;

    assert_eq!(redis.publish(DEFAULT_CHANNEL, body).await, 1);
    let req = rx.wait_for_count(1, PATIENCE).await.remove(0);
    assert_eq!(&req.body[..], body.as_bytes(), "{}", bridge.logs());
    assert_eq!(
        req.header("x-hokusai-signature"),
        legacy["signature"].as_str().unwrap(),
        "the fixture's signature, computed with Python's hmac over this body"
    );
    for absent in [
        "x-hokusai-timestamp",
        "x-hokusai-nonce",
        "webhook-signature",
    ] {
        assert_eq!(req.header(absent), "", "hokusai-legacy sends no {absent}");
    }

    let dir = tempfile::TempDir::new().unwrap();
    let out = python_verifies(dir.path(), "hokusai-legacy", &req, &req.body, secret);
    assert!(
        out.status.success(),
        "python rejects the hokusai-legacy signature: {}",
        show(&out)
    );
    let mut tampered = req.body.to_vec();
    tampered[1] ^= 0x01;
    let out = python_verifies(dir.path(), "hokusai-legacy", &req, &tampered, secret);
    assert_eq!(
        out.status.code(),
        Some(1),
        "python accepted a tampered body: {}",
        show(&out)
    );
    let out = python_verifies(
        dir.path(),
        "hokusai-legacy",
        &req,
        &req.body,
        "another-secret",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "python accepted another secret: {}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_its_target_gets_nothing_and_the_message_is_dead_lettered() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let target = Receiver::start().await;
    rx.set_default(Reply::status(302).header("Location", &target.url("/elsewhere")));
    let config = base_toml(&redis, "t-redirect")
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            "max_retries = 2\nretry_delay = \"50ms\"",
        );
    let bridge = Bridge::start(&config).await;
    let body = message("model.ready", 1);

    redis.publish(DEFAULT_CHANNEL, &body).await;
    wait_until(
        SECS(30),
        "/status shows the redirected message dead-lettered",
        || async { bridge.endpoint_status("site").await["dead_lettered"] == 1 },
    )
    .await;

    // A 3xx is retried like a 5xx (the first attempt and max_retries more), never followed.
    let reqs = rx.requests();
    assert_eq!(
        reqs.iter().map(Recorded::attempt).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{}",
        bridge.logs()
    );
    assert!(reqs.iter().all(|r| r.path == "/hook" && r.status == 302));
    assert!(
        target.requests().is_empty(),
        "the redirect target was contacted: {:?}",
        target.requests()
    );
    let entries = bridge.dlq_entries(&[]);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["last_status"], 302, "{e}");
    assert_eq!(e["body"], body.as_str(), "{e}");
    assert_eq!(e["attempts"], 3, "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("not followed"),
        "the DLQ entry says the redirect was not followed: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_holds_the_next_attempt_until_that_date() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-retry-after-date")
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            "retry_delay = \"50ms\"\nmax_retry_delay = \"60s\"",
        );
    let bridge = Bridge::start(&config).await;

    // An HTTP date has whole seconds: the bridge may retry from that (floored) second on.
    let (now_instant, now_system) = (std::time::Instant::now(), std::time::SystemTime::now());
    let date = httpdate::fmt_http_date(now_system + SECS(6));
    let not_before = httpdate::parse_http_date(&date).unwrap();
    rx.script(vec![Reply::status(503).header("Retry-After", &date)]);
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    let reqs = rx.wait_for_count(2, SECS(60)).await;
    let as_system = |at: std::time::Instant| now_system + (at - now_instant);
    let first = as_system(reqs[0].at);
    assert!(
        first + SECS(1) < not_before,
        "the first attempt came too late to tell a held retry from an immediate one; the \
         date was {date}\n{}",
        bridge.logs()
    );
    // 50 ms of slack for the two clocks read at slightly different moments above.
    let second = as_system(reqs[1].at);
    assert!(
        second + Duration::from_millis(50) >= not_before,
        "the second attempt came {:?} before Retry-After: {date} (retry_delay is 50ms)\n{}",
        not_before.duration_since(second).unwrap_or_default(),
        bridge.logs()
    );
    assert_eq!(reqs[1].attempt(), 2);
    assert_eq!(reqs[1].idempotency_key(), reqs[0].idempotency_key());
    assert_eq!(reqs[1].status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_of_chosen_ids_or_of_one_endpoint_delivers_only_those_entries() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400));
    let config = base_toml(&redis, "t-dlq-replay-some")
        + &endpoint_toml("a", &rx.url("/a"), "")
        + &endpoint_toml("b", &rx.url("/b"), "");
    let bridge = Bridge::start(&config).await;
    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    wait_until(
        SECS(30),
        "each endpoint dead-lettered 3 messages",
        || async {
            bridge.endpoint_status("a").await["dead_lettered"] == 3
                && bridge.endpoint_status("b").await["dead_lettered"] == 3
        },
    )
    .await;
    assert_eq!(
        rx.requests().len(),
        6,
        "a 400 is permanent: one attempt each"
    );
    let entries = bridge.dlq_entries(&[]);
    assert_eq!(entries.len(), 6, "{entries:?}");
    let of = |entries: &[serde_json::Value], ep: &str| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = entries
            .iter()
            .filter(|e| e["endpoint"] == ep)
            .map(|e| {
                let n: serde_json::Value =
                    serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
                (
                    e["id"].as_str().unwrap().to_string(),
                    n["n"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort_by_key(|(_, n)| *n);
        v
    };
    let a = of(&entries, "a");
    let b = of(&entries, "b");
    assert_eq!(a.len(), 3, "{entries:?}");
    assert_eq!(b.len(), 3, "{entries:?}");
    rx.set_default(Reply::ok());

    // Two of a's entries by id: exactly those two are POSTed again and leave the DLQ.
    let out = bridge.cli(&["dlq", "replay", &a[0].0, &a[2].0], &[]);
    assert!(out.status.success(), "dlq replay ID ID: {}", show(&out));
    let replayed: Vec<u64> = rx.requests()[6..]
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/a", "only endpoint a's entries were chosen");
            assert_eq!(r.status, 200);
            r.json()["n"].as_u64().unwrap()
        })
        .collect();
    let mut sorted = replayed.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 3], "the chosen entries, no others");
    let left = bridge.dlq_entries(&[]);
    assert_eq!(of(&left, "a"), vec![a[1].clone()], "a's third entry stays");
    assert_eq!(of(&left, "b"), b, "b's entries stay");

    // --endpoint b --all: b's three, not a's remaining one.
    let out = bridge.cli(&["dlq", "replay", "--endpoint", "b", "--all"], &[]);
    assert!(
        out.status.success(),
        "dlq replay --endpoint b --all: {}",
        show(&out)
    );
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 11, "6 dead-lettered, 2 replayed to a, 3 to b");
    let mut to_b: Vec<u64> = reqs[8..]
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/b", "only endpoint b's entries were replayed");
            r.json()["n"].as_u64().unwrap()
        })
        .collect();
    to_b.sort();
    assert_eq!(to_b, vec![1, 2, 3]);
    let left = bridge.dlq_entries(&[]);
    assert_eq!(
        of(&left, "a"),
        vec![a[1].clone()],
        "a's entry is still there"
    );
    assert!(of(&left, "b").is_empty(), "b's entries are gone: {left:?}");
}
