//! Durability with real processes: the built binary, a real `redis-server`, a real HTTP
//! receiver. Bridges are killed with SIGKILL mid-run, replicas share and take over work,
//! an endpoint goes away for 20 s, Redis itself is killed with AOF on, and the list and
//! stream sources are drained and acknowledged. Every test asserts counts.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// Generous: the machine is small and shared.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------

/// A message whose idempotency key is `<tag>-<n>` (the payload's `idempotency_key` field).
fn keyed(tag: &str, n: usize) -> String {
    format!(r#"{{"event_type":"durability.test","idempotency_key":"{tag}-{n:05}","n":{n}}}"#)
}

fn key_of(tag: &str, n: usize) -> String {
    format!("{tag}-{n:05}")
}

/// PUBLISHes every body to `channel` in one pipeline; asserts each reached `subscribers`.
async fn publish_all(redis: &RedisServer, channel: &str, bodies: &[String], subscribers: i64) {
    let mut c = redis.conn().await;
    let mut pipe = redis::pipe();
    for b in bodies {
        pipe.cmd("PUBLISH").arg(channel).arg(b);
    }
    let got: Vec<i64> = pipe.query_async(&mut c).await.expect("pipelined PUBLISH");
    assert_eq!(got.len(), bodies.len());
    assert!(
        got.iter().all(|n| *n == subscribers),
        "every PUBLISH reached {subscribers} subscriber(s); got {:?}",
        got.iter().collect::<std::collections::BTreeSet<_>>()
    );
}

/// An integer reply of `cmd args…`.
async fn int(redis: &RedisServer, cmd: &str, args: &[&str]) -> i64 {
    let mut c = redis.conn().await;
    let mut command = redis::cmd(cmd);
    for a in args {
        command.arg(*a);
    }
    command
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"))
}

/// How many of `keys` exist (one EXISTS with every key).
async fn existing(redis: &RedisServer, keys: &[String]) -> i64 {
    let mut c = redis.conn().await;
    redis::cmd("EXISTS")
        .arg(keys)
        .query_async(&mut c)
        .await
        .expect("EXISTS")
}

/// The number of pending entries of `group` on `stream` (XPENDING summary).
async fn pending(redis: &RedisServer, stream: &str, group: &str) -> i64 {
    let mut c = redis.conn().await;
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("XPENDING {stream} {group}: {e}"));
    match v {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("XPENDING summary starts with {other:?}"),
        },
        other => panic!("XPENDING answered {other:?}"),
    }
}

/// Entries still in an endpoint's durable queue: its stream (acknowledged entries are
/// deleted) plus its retry set. 0 once everything journaled is delivered or dead-lettered.
async fn queued(redis: &RedisServer, prefix: &str, endpoint: &str) -> i64 {
    int(redis, "XLEN", &[&format!("{prefix}:q:{endpoint}")]).await
        + int(redis, "ZCARD", &[&format!("{prefix}:retry:{endpoint}")]).await
}

/// Requests per idempotency key: all of them, and those answered 2xx.
fn per_key(rx: &Receiver) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut all: HashMap<String, usize> = HashMap::new();
    let mut ok: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        let k = r.idempotency_key();
        if (200..300).contains(&r.status) {
            *ok.entry(k.clone()).or_default() += 1;
        }
        *all.entry(k).or_default() += 1;
    }
    (all, ok)
}

/// Distinct keys answered 2xx so far.
fn delivered(rx: &Receiver) -> usize {
    per_key(rx).1.len()
}

/// The `site` endpoint's `webhook_publish_success_total`.
async fn successes(bridge: &Bridge) -> f64 {
    bridge
        .metric_value("webhook_publish_success_total", &[("endpoint", "site")])
        .await
}

fn missing(ok: &HashMap<String, usize>, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| key_of(tag, i))
        .filter(|k| !ok.contains_key(k))
        .take(10)
        .collect()
}

/// Waits until the `site` endpoint's durable queue is empty: everything journaled was
/// delivered (or dead-lettered) and acknowledged, so no late duplicate is still on its way.
async fn queue_empty(redis: &RedisServer, prefix: &str) {
    wait_until(
        PATIENCE,
        "the endpoint's durable queue is empty",
        || async { queued(redis, prefix, "site").await == 0 },
    )
    .await;
}

/// Waits until `n` distinct keys were answered 2xx (`what` names that wait), then until the
/// `site` endpoint's durable queue is empty.
async fn drained(redis: &RedisServer, rx: &Receiver, prefix: &str, n: usize, what: &str) {
    wait_until(PATIENCE, what, || async { delivered(rx) == n }).await;
    queue_empty(redis, prefix).await;
}

/// Asserts that every one of the `n` keys of `tag` was answered 2xx (the failure names the
/// first 10 missing keys, then `context()`); returns [`per_key`].
fn none_missing(
    rx: &Receiver,
    tag: &str,
    n: usize,
    context: impl FnOnce() -> String,
) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let (all, ok) = per_key(rx);
    let missing = missing(&ok, tag, n);
    assert!(
        missing.is_empty(),
        "missing keys (first 10): {missing:?}\n{}",
        context()
    );
    (all, ok)
}

// ---------------------------------------------------------------------------------------
// Crashes of the bridge
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_2000_messages_then_a_new_run_delivers_every_one_with_bounded_duplicates()
 {
    const N: usize = 2000;
    const CONCURRENCY: usize = 16;
    let prefix = "t-dur-kill9";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    // A slow receiver: every answer waits 5 to 20 ms.
    rx.script(
        (0..N as u64 * 2)
            .map(|i| Reply::ok().delay(MS(5 + (i * 7) % 16)))
            .collect(),
    );
    rx.set_default(Reply::ok().delay(MS(10)));
    let config = base_toml(&redis, prefix)
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            &format!("concurrency = {CONCURRENCY}\n"),
        );
    let first = Bridge::start(&config).await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("kill", n)).collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 1).await;
    // Received means journaled: the dedupe key and the stream entries are written in one
    // Lua call, so every `seen:<key>` existing means every message is in the journal.
    let seen: Vec<String> = (0..N)
        .map(|n| format!("{prefix}:seen:{}", key_of("kill", n)))
        .collect();
    wait_until(PATIENCE, "all 2000 messages are journaled", || async {
        existing(&redis, &seen).await == N as i64
    })
    .await;
    wait_until(PATIENCE, "some hundreds are delivered", || async {
        rx.requests().len() >= 300
    })
    .await;
    first.kill();
    let at_kill = per_key(&rx).1.len();
    assert!(
        at_kill < N,
        "the kill came in the middle of the run ({at_kill} of {N} delivered)\n{}",
        first.logs()
    );

    let second = Bridge::start(&config).await;
    // Settled: the killed run's pending entries were claimed and acknowledged too, so no
    // late duplicate is still on its way.
    drained(
        &redis,
        &rx,
        prefix,
        N,
        "every message is delivered after the restart",
    )
    .await;

    let (all, ok) = none_missing(&rx, "kill", N, || {
        format!(
            "--- killed run ---\n{}\n--- next run ---\n{}",
            first.logs(),
            second.logs()
        )
    });
    assert_eq!(ok.len(), N, "no unexpected keys: {}", second.logs());
    let requests: usize = all.values().sum();
    let duplicates = requests - N;
    // At the kill, the killed consumer's pending entries are at most `concurrency` attempts
    // in flight (the worker's semaphore), `concurrency` prefetched jobs not yet attempted
    // (the prefetch channel holds at most `concurrency`), and delivered jobs whose batched
    // XACK was not written yet (one round trip). The next run claims and attempts all of
    // them again; only those the receiver had already seen become duplicates: the
    // in-flight attempts and the delivered-but-unacknowledged ones. So duplicates stay
    // within concurrency + prefetch = 2 × concurrency.
    assert!(
        duplicates <= 2 * CONCURRENCY,
        "{duplicates} duplicate requests (> 2 × concurrency = {}) for {N} messages\n--- next run ---\n{}",
        2 * CONCURRENCY,
        second.logs()
    );
    assert!(
        second.dlq_entries(&[]).is_empty(),
        "nothing was dead-lettered\n{}",
        second.logs()
    );
    eprintln!(
        "kill -9 test: {at_kill} delivered at the kill, {duplicates} duplicate(s) after restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_scheduled_in_redis_survive_a_kill_9_and_keep_their_attempt_count() {
    const N: usize = 10;
    let prefix = "t-dur-retry-kill";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let config = base_toml(&redis, prefix)
        + &endpoint_toml("site", &rx.url("/hook"), "retry_delay = \"3s\"\n");
    let first = Bridge::start(&config).await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("retry", n)).collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 1).await;
    let retry_set = format!("{prefix}:retry:site");
    wait_until(
        PATIENCE,
        "every message waits for its retry in Redis",
        || async { int(&redis, "ZCARD", &[&retry_set]).await == N as i64 },
    )
    .await;
    first.kill();
    assert_eq!(rx.requests().len(), N, "one failed attempt each");
    rx.set_default(Reply::ok());

    let second = Bridge::start(&config).await;
    drained(&redis, &rx, prefix, N, "every message is delivered").await;
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        2 * N,
        "one failure and one success each\n{}",
        second.logs()
    );
    for r in reqs.iter().filter(|r| r.status == 200) {
        assert_eq!(
            r.attempt(),
            2,
            "the attempt count survived the kill\n{}",
            second.logs()
        );
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            bodies[r.json()["n"].as_u64().unwrap() as usize]
        );
    }
    assert!(second.dlq_entries(&[]).is_empty(), "{}", second.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_work_and_the_survivors_finish_what_a_killed_one_left() {
    const N: usize = 1500;
    const CONCURRENCY: usize = 4;
    let prefix = "t-dur-replicas";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().delay(MS(20)));
    let endpoint = endpoint_toml(
        "site",
        &rx.url("/hook"),
        &format!("concurrency = {CONCURRENCY}\n"),
    );
    // Same Redis and key prefix; base_toml gives each its own admin port.
    let a = Bridge::start(&(base_toml(&redis, prefix) + &endpoint)).await;
    let b = Bridge::start(&(base_toml(&redis, prefix) + &endpoint)).await;
    let c = Bridge::start(&(base_toml(&redis, prefix) + &endpoint)).await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("rep", n)).collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 3).await;
    wait_until(PATIENCE, "replica b delivered 100 messages", || async {
        successes(&b).await >= 100.0
    })
    .await;
    let t0 = Instant::now();
    let b_share = successes(&b).await;
    b.kill();
    let t_kill = Instant::now();
    let at_kill = delivered(&rx);
    assert!(
        at_kill < N,
        "the kill came mid-run ({at_kill} of {N} delivered)"
    );

    drained(&redis, &rx, prefix, N, "every message is delivered").await;

    let (all, ok) = none_missing(&rx, "rep", N, || {
        format!("--- a ---\n{}\n--- c ---\n{}", a.logs(), c.logs())
    });
    let (a_share, c_share) = (successes(&a).await, successes(&c).await);
    assert!(
        a_share > 0.0 && b_share > 0.0 && c_share > 0.0,
        "each replica delivered a share: a {a_share}, b {b_share} (before its kill), c {c_share}"
    );
    // b may have counted a few more successes between the sample and the kill: attempts it
    // had in flight at the sample (at most `concurrency`) and attempts sent after it, which
    // reached the receiver between the sample and the kill.
    let after_sample = rx
        .requests()
        .iter()
        .filter(|r| r.at >= t0 && r.at <= t_kill)
        .count();
    let slack = (CONCURRENCY + after_sample) as f64;
    let total = a_share + b_share + c_share;
    assert!(
        total + slack >= N as f64,
        "the replicas' successes cover all {N} messages: a {a_share} + b {b_share} + c {c_share} (+ {slack} slack)"
    );
    let answered_ok: usize = ok.values().sum();
    assert!(
        total <= answered_ok as f64,
        "no replica counts a success the receiver did not answer: {total} > {answered_ok}"
    );
    eprintln!(
        "replicas: a {a_share}, b {b_share} (killed), c {c_share}; {} requests for {N} messages",
        all.values().sum::<usize>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_sigterm_mid_run_leaves_its_unstarted_jobs_to_the_other_and_none_is_lost()
 {
    const N: usize = 600;
    let prefix = "t-dur-sigterm";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::ok().delay(MS(20)));
    let endpoint = endpoint_toml("site", &rx.url("/hook"), "concurrency = 4\n");
    let a = Bridge::start(&(base_toml(&redis, prefix) + &endpoint)).await;
    let b = Bridge::start(&(base_toml(&redis, prefix) + &endpoint)).await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("term", n)).collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 2).await;
    wait_until(PATIENCE, "replica b delivered 50 messages", || async {
        successes(&b).await >= 50.0
    })
    .await;
    // b stops reading, finishes its attempts in flight, and leaves its prefetched jobs
    // pending in Redis for a to claim.
    b.stop(SECS(30)).await;
    let at_stop = delivered(&rx);
    assert!(
        at_stop < N,
        "b stopped mid-run ({at_stop} of {N} delivered)"
    );

    drained(&redis, &rx, prefix, N, "every message is delivered").await;
    let (all, _) = none_missing(&rx, "term", N, || {
        format!("--- a ---\n{}\n--- b ---\n{}", a.logs(), b.logs())
    });
    // A clean stop leaves no attempt in flight, so nothing is delivered twice.
    assert_eq!(
        all.values().sum::<usize>(),
        N,
        "no duplicates after a clean stop\n--- a ---\n{}\n--- b ---\n{}",
        a.logs(),
        b.logs()
    );
}

// ---------------------------------------------------------------------------------------
// An endpoint outage
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_for_20_s_gets_every_message_once_back_and_nothing_is_dead_lettered() {
    const N: usize = 20;
    let prefix = "t-dur-outage";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(503));
    let config = base_toml(&redis, prefix)
        + &endpoint_toml(
            "site",
            &rx.url("/hook"),
            "retry_delay = \"1s\"\nmax_retries = 5\ncircuit_breaker = { failure_threshold = 5, recovery_time = \"2s\" }\n",
        );
    let bridge = Bridge::start(&config).await;
    let outage_started = tokio::time::Instant::now();

    // Escapes and non-ASCII text: retried jobs round-trip through the retry set, and must
    // still be POSTed byte for byte.
    let bodies: Vec<String> = (0..N)
        .map(|n| {
            format!(
                r#"{{"event_type":"durability.test","idempotency_key":"{}","n":{n},"text":"caf\u00e9 café ☕ \"q\" \\ / 日本"}}"#,
                key_of("outage", n)
            )
        })
        .collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 1).await;
    wait_until(PATIENCE, "every message met the outage once", || async {
        per_key(&rx).0.len() == N
    })
    .await;
    // The outage itself lasts 20 s (this is the scenario, not a synchronisation).
    tokio::time::sleep_until(outage_started + SECS(20)).await;
    let failed_attempts = rx.requests().len();
    rx.set_default(Reply::ok());

    drained(&redis, &rx, prefix, N, "every message is delivered").await;

    let (_, ok) = none_missing(&rx, "outage", N, || bridge.logs());
    assert!(
        ok.values().all(|n| *n == 1),
        "each message delivered once: {ok:?}"
    );
    for r in rx.requests().iter().filter(|r| r.status == 200) {
        let n: usize = r.json()["n"].as_u64().unwrap() as usize;
        assert!(r.attempt() >= 2, "delivered on a retry: {}", r.attempt());
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            bodies[n],
            "a retried message is POSTed exactly as published\n{}",
            bridge.logs()
        );
    }
    let dlq = bridge.dlq_entries(&[]);
    assert!(
        dlq.is_empty(),
        "nothing dead-lettered, got {} entries: {dlq:?}\n{}",
        dlq.len(),
        bridge.logs()
    );
    assert_eq!(successes(&bridge).await, N as f64, "{}", bridge.logs());
    assert_eq!(
        bridge.endpoint_status("site").await["dead_lettered"],
        0,
        "{}",
        bridge.logs()
    );
    // The open circuit held the messages instead of spending their retries: after the
    // first attempts, about one probe per recovery_time (2 s) over the 20 s.
    assert!(
        failed_attempts <= N + 20,
        "{failed_attempts} attempts during the outage for {N} messages: the circuit should hold them\n{}",
        bridge.logs()
    );
    eprintln!("outage: {failed_attempts} failed attempts over 20 s for {N} messages");
}

// ---------------------------------------------------------------------------------------
// Redis crashes
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_messages_survive_a_kill_9_of_redis_with_aof_and_are_delivered_on_resume() {
    const N: usize = 50;
    let prefix = "t-dur-aof";
    let mut redis = RedisServer::start_with_aof();
    // Every write reaches the AOF before Redis answers it, so SIGKILL loses nothing written.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query_async(&mut redis.conn().await)
        .await
        .expect("CONFIG SET appendfsync always");
    let rx = Receiver::start().await;
    let config = base_toml(&redis, prefix) + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let out = bridge.cli(&["pause"], &[]);
    assert!(out.status.success(), "pause failed: {}", show(&out));
    wait_until(PATIENCE, "the bridge sees the pause", || async {
        bridge.status_json().await["paused"].is_object()
    })
    .await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("aof", n)).collect();
    publish_all(&redis, DEFAULT_CHANNEL, &bodies, 1).await;
    let stream = format!("{prefix}:q:site");
    wait_until(
        PATIENCE,
        "all messages are journaled in the stream",
        || async { int(&redis, "XLEN", &[&stream]).await == N as i64 },
    )
    .await;
    // An absence can only be observed over a period: 2 s, eight times the pause poll; a
    // bridge that ignored the pause would have delivered most of the 50 by then.
    tokio::time::sleep(SECS(2)).await;
    assert!(
        rx.requests().is_empty(),
        "nothing is delivered while paused\n{}",
        bridge.logs()
    );

    redis.kill();
    redis.restart();
    assert_eq!(
        int(&redis, "XLEN", &[&stream]).await,
        N as i64,
        "the journal survived the Redis crash"
    );

    let out = bridge.cli(&["resume"], &[]);
    assert!(out.status.success(), "resume failed: {}", show(&out));
    drained(
        &redis,
        &rx,
        prefix,
        N,
        "every journaled message is delivered",
    )
    .await;
    let (all, _) = none_missing(&rx, "aof", N, || bridge.logs());
    assert_eq!(
        all.values().sum::<usize>(),
        N,
        "each delivered once (the bridge itself did not crash)\n{}",
        bridge.logs()
    );
}

// ---------------------------------------------------------------------------------------
// De-duplication
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_published_twice_within_the_window_is_delivered_once_even_across_a_restart()
 {
    let prefix = "t-dur-dedupe";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, prefix)
        + "\n[delivery]\ndedupe_window = \"1h\"\n"
        + &endpoint_toml("site", &rx.url("/hook"), "");
    let first = Bridge::start(&config).await;

    let twice = keyed("dup", 1);
    publish_all(
        &redis,
        DEFAULT_CHANNEL,
        &[twice.clone(), twice.clone(), keyed("sentinel", 1)],
        1,
    )
    .await;
    wait_until(
        PATIENCE,
        "the repeat is dropped and the sentinel delivered",
        || async {
            first
                .metric_value("bridge_duplicates_dropped_total", &[])
                .await
                == 1.0
                && per_key(&rx).1.contains_key(&key_of("sentinel", 1))
                && per_key(&rx).1.contains_key(&key_of("dup", 1))
        },
    )
    .await;
    let (all, _) = per_key(&rx);
    assert_eq!(
        all[&key_of("dup", 1)],
        1,
        "delivered once\n{}",
        first.logs()
    );
    assert_eq!(
        all.values().sum::<usize>(),
        2,
        "two requests in all\n{}",
        first.logs()
    );
    assert_eq!(successes(&first).await, 2.0);
    assert_eq!(
        first
            .metric_value("bridge_duplicates_dropped_total", &[])
            .await,
        1.0
    );

    // The window lives in Redis: a new run still knows the key.
    first.stop(SECS(30)).await;
    drop(first);
    let second = Bridge::start(&config).await;
    publish_all(
        &redis,
        DEFAULT_CHANNEL,
        &[twice.clone(), keyed("sentinel", 2)],
        1,
    )
    .await;
    wait_until(
        PATIENCE,
        "the next run drops the repeat and delivers its sentinel",
        || async {
            second
                .metric_value("bridge_duplicates_dropped_total", &[])
                .await
                == 1.0
                && per_key(&rx).1.contains_key(&key_of("sentinel", 2))
        },
    )
    .await;
    let (all, _) = per_key(&rx);
    assert_eq!(
        all[&key_of("dup", 1)],
        1,
        "still delivered once\n{}",
        second.logs()
    );
    assert_eq!(all.values().sum::<usize>(), 3, "{}", second.logs());
}

// ---------------------------------------------------------------------------------------
// The list and stream sources
// ---------------------------------------------------------------------------------------

/// A registry envelope around `payload` (raw JSON text, kept byte for byte).
fn envelope(message_id: &str, message_type: &str, payload: &str) -> String {
    format!(
        r#"{{"message_id":"{message_id}","message_type":"{message_type}","payload":{payload},"timestamp":"2026-11-28T15:00:00","retry_count":0,"max_retries":3}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_source_unwraps_registry_envelopes_empties_its_lists_and_recovers_a_dead_replicas_items()
 {
    let prefix = "t-dur-list";
    let list = "hokusai:model_ready_queue";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, prefix)
        + &format!(
            "\n[[sources]]\nkind = \"list\"\nname = \"registry\"\nkey = \"{list}\"\nunwrap_envelope = true\n"
        )
        + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let f = fixtures();
    let fixture_body = f["envelope"]["body"].as_str().unwrap().to_string();
    // The fixture's payload carries the key fields: keyed like the registry's pub/sub message.
    let fixture_id = f["model_ready_message"]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    let fixture_payload = f["model_ready_message"]["body"]
        .as_str()
        .unwrap()
        .to_string();
    // (body LPUSHed, expected id, expected event, expected POSTed body)
    let mut cases = vec![(
        fixture_body.clone(),
        fixture_id.clone(),
        "model_ready_to_deploy".to_string(),
        fixture_payload,
    )];
    for i in 1..=4 {
        // Odd spacing on purpose: the payload is forwarded as written, not re-serialised.
        let payload =
            format!(r#"{{ "model_id": "model-{i}",  "model_version":"{i}", "n" : {i} }}"#);
        let id = format!("env-{i}");
        let mtype = if i % 2 == 0 {
            "model_registered"
        } else {
            "model_ready_to_deploy"
        };
        cases.push((
            envelope(&id, mtype, &payload),
            id,
            mtype.to_string(),
            payload,
        ));
    }
    let mut c = redis.conn().await;
    let _: i64 = redis::cmd("LPUSH")
        .arg(list)
        .arg(cases.iter().map(|c| c.0.as_str()).collect::<Vec<_>>())
        .query_async(&mut c)
        .await
        .expect("LPUSH");

    wait_until(PATIENCE, "the five envelopes are delivered", || async {
        delivered(&rx) == cases.len()
    })
    .await;
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        cases.len(),
        "one request each\n{}",
        bridge.logs()
    );
    for (_, id, event, payload) in &cases {
        let r = reqs
            .iter()
            .find(|r| r.idempotency_key() == *id)
            .unwrap_or_else(|| panic!("no request for {id}\n{}", bridge.logs()));
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            payload,
            "the body is the envelope's payload, exactly"
        );
        assert_eq!(r.header("x-hokusai-event"), *event, "event of {id}");
    }
    let processing_pattern = format!("{prefix}:processing:registry:*");
    wait_until(
        PATIENCE,
        "the source list and the processing lists are empty",
        || async {
            let mut c = redis.conn().await;
            let lists: Vec<String> = redis::cmd("KEYS")
                .arg(&processing_pattern)
                .query_async(&mut c)
                .await
                .expect("KEYS");
            let mut left = int(&redis, "LLEN", &[list]).await;
            for l in &lists {
                left += int(&redis, "LLEN", &[l]).await;
            }
            left == 0
        },
    )
    .await;

    // Crash recovery: a replica that died (no heartbeat key) left two items in its
    // processing list: one new, and one that had been journaled already (the fixture).
    let dead_list = format!("{prefix}:processing:registry:dead-replica-0001");
    assert_eq!(
        int(
            &redis,
            "EXISTS",
            &[&format!("{prefix}:replica:dead-replica-0001")]
        )
        .await,
        0
    );
    let orphan_payload = r#"{"model_id":"model-orphan","model_version":"9"}"#;
    let orphan = envelope("env-orphan", "model_ready_to_deploy", orphan_payload);
    let _: i64 = redis::cmd("LPUSH")
        .arg(&dead_list)
        .arg(&[fixture_body.as_str(), orphan.as_str()])
        .query_async(&mut c)
        .await
        .expect("LPUSH to the dead replica's processing list");
    wait_until(
        PATIENCE,
        "the dead replica's items are recovered and its list removed",
        || async {
            per_key(&rx).1.contains_key("env-orphan")
                && int(&redis, "EXISTS", &[&dead_list]).await == 0
        },
    )
    .await;
    let (all, _) = per_key(&rx);
    assert_eq!(all["env-orphan"], 1, "{}", bridge.logs());
    assert_eq!(
        all[&fixture_id],
        1,
        "the already journaled item is dropped as a duplicate, not delivered again\n{}",
        bridge.logs()
    );
    assert_eq!(all.values().sum::<usize>(), cases.len() + 1);
    let orphan_req = rx
        .requests()
        .into_iter()
        .find(|r| r.idempotency_key() == "env-orphan")
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&orphan_req.body).unwrap(),
        orphan_payload
    );
    assert!(
        bridge
            .metric_value("bridge_duplicates_dropped_total", &[])
            .await
            >= 1.0,
        "{}",
        bridge.logs()
    );
}

/// XADDs `body` to `stream` and reads it as `consumer` of `group` in one MULTI, so that no
/// blocked reader of the running bridge gets it first: it is left pending for `consumer`.
async fn read_by_dead_consumer(
    redis: &RedisServer,
    stream: &str,
    group: &str,
    consumer: &str,
    body: &str,
) {
    let mut c = redis.conn().await;
    let (_, read): (String, redis::Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("body")
        .arg(body)
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(&mut c)
        .await
        .expect("XADD + XREADGROUP as a dead replica");
    assert!(
        !matches!(read, redis::Value::Nil),
        "{consumer} read the entry it leaves pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_source_delivers_its_entries_and_acknowledges_them_in_its_group() {
    const N: usize = 30;
    let prefix = "t-dur-stream";
    let stream = "registry:events";
    let group = "bridge-group";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, prefix)
        + &format!(
            "\n[[sources]]\nkind = \"stream\"\nname = \"events\"\nkey = \"{stream}\"\ngroup = \"{group}\"\n"
        )
        + &endpoint_toml("site", &rx.url("/hook"), "");
    // Replicas that stopped (no heartbeat key) had read an entry each and not acknowledged
    // it: one before this bridge starts (found at start), one while it runs, read a moment
    // ago (found once its idle time allows a claim).
    let mut c = redis.conn().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .expect("XGROUP CREATE");
    let orphans: Vec<String> = (0..2).map(|n| keyed("orphan", n)).collect();
    read_by_dead_consumer(&redis, stream, group, "dead-replica-0001", &orphans[0]).await;
    assert_eq!(pending(&redis, stream, group).await, 1);
    let bridge = Bridge::start(&config).await;
    read_by_dead_consumer(&redis, stream, group, "dead-replica-0002", &orphans[1]).await;

    let bodies: Vec<String> = (0..N).map(|n| keyed("stream", n)).collect();
    let mut pipe = redis::pipe();
    for b in &bodies {
        pipe.cmd("XADD").arg(stream).arg("*").arg("body").arg(b);
    }
    let ids: Vec<String> = pipe.query_async(&mut c).await.expect("XADD");
    assert_eq!(ids.len(), N);

    wait_until(
        PATIENCE,
        "every entry, and the dead replica's two, is delivered",
        || async { delivered(&rx) == N + orphans.len() },
    )
    .await;
    wait_until(
        PATIENCE,
        "the source group has no pending entries",
        || async { pending(&redis, stream, group).await == 0 },
    )
    .await;
    let reqs = rx.requests();
    assert_eq!(
        reqs.len(),
        N + orphans.len(),
        "each once\n{}",
        bridge.logs()
    );
    for (n, body) in orphans.iter().enumerate() {
        let r = reqs
            .iter()
            .find(|r| r.idempotency_key() == key_of("orphan", n))
            .unwrap_or_else(|| panic!("orphan {n} not delivered\n{}", bridge.logs()));
        assert_eq!(std::str::from_utf8(&r.body).unwrap(), body);
    }
    for (n, body) in bodies.iter().enumerate() {
        let r = reqs
            .iter()
            .find(|r| r.idempotency_key() == key_of("stream", n))
            .unwrap_or_else(|| panic!("entry {n} not delivered\n{}", bridge.logs()));
        assert_eq!(std::str::from_utf8(&r.body).unwrap(), body);
    }
    // The 30 entries it read plus the 2 it claimed from dead consumers.
    assert_eq!(
        bridge
            .metric_value("bridge_messages_received_total", &[("source", "events")])
            .await,
        (N + 2) as f64,
        "{}",
        bridge.logs()
    );
    queue_empty(&redis, prefix).await;
}
