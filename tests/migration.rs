//! The migration toolkit end to end, with the real binary, a real `redis-server` per test and
//! real HTTP consumers: the `receive` sample consumer, retries until an endpoint recovers,
//! dual publishing (`run --dual`), rollback by pausing (`scripts/rollback.sh`) and by
//! stopping the bridge, `migrate validate` (through `scripts/migrate-validate.sh`) on a
//! healthy run and on a run that lost messages, deprecation warnings for legacy
//! subscribers, the Redis fallback (`ENABLE_REDIS_FALLBACK`) and `migrate plan`.
//!
//! Timeouts are generous: the suite shares a small machine with other work.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// How long a test waits for something that normally takes well under a second.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers of this file
// ---------------------------------------------------------------------------------------

/// A registry-shaped model event (the fields of `tests/fixtures/signatures.json`'s
/// `model_ready_message`), distinct per `test` and `n`. Like the registry's, it has no
/// `event_type` field, so its key is the uuid5 over the four key fields.
fn registry_event(test: &str, n: u32) -> String {
    format!(
        r#"{{"model_id":"model-{test}-{n}","token_symbol":"tok-{test}","metric_name":"accuracy","baseline_value":0.812,"current_value":0.861,"model_name":"sentiment-classifier","model_version":"{n}","mlflow_run_id":"run-{n:04}","improvement_percentage":6.03,"timestamp":"2026-11-28T15:00:00","message_version":"1.0"}}"#
    )
}

/// The registry's Python publisher's idempotency key, computed here independently of the
/// crate: `uuid5(NAMESPACE_DNS, "<model_id>:<token_symbol>:<mlflow_run_id>:<model_version>")`.
fn registry_key(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let field = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => panic!("the event has no `{k}`: {v}"),
        other => other.to_string(),
    };
    let name = format!(
        "{}:{}:{}:{}",
        field("model_id"),
        field("token_symbol"),
        field("mlflow_run_id"),
        field("model_version")
    );
    Uuid::new_v5(&Uuid::NAMESPACE_DNS, name.as_bytes()).to_string()
}

/// Publishes `registry_event(test, n)` for each `n`; returns the bodies. Each PUBLISH must
/// reach exactly `subscribers` subscribers.
async fn publish_events(
    redis: &RedisServer,
    test: &str,
    ns: std::ops::RangeInclusive<u32>,
    subscribers: i64,
) -> Vec<String> {
    let mut bodies = Vec::new();
    for n in ns {
        let body = registry_event(test, n);
        let got = redis.publish(DEFAULT_CHANNEL, &body).await;
        assert_eq!(
            got, subscribers,
            "PUBLISH of event {n} reached {got} subscriber(s), expected {subscribers}"
        );
        bodies.push(body);
    }
    bodies
}

fn keys_of(bodies: &[String]) -> BTreeSet<String> {
    bodies.iter().map(|b| registry_key(b.as_bytes())).collect()
}

/// `PUBSUB NUMSUB channel`.
async fn numsub(redis: &RedisServer, channel: &str) -> u64 {
    let r: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut redis.conn().await)
        .await
        .expect("PUBSUB NUMSUB");
    r.first().map(|x| x.1).unwrap_or(0)
}

/// `LRANGE key 0 -1`.
async fn list_items(redis: &RedisServer, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(&mut redis.conn().await)
        .await
        .expect("LRANGE")
}

/// A legacy Redis consumer: a plain `SUBSCRIBE` on one channel (not the bridge), recording
/// every message. Unsubscribes (closes its connection) when dropped.
struct Subscriber {
    got: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Subscribes and returns once Redis confirmed the subscription.
    async fn start(redis: &RedisServer, channel: &str) -> Self {
        let mut ps = redis
            .client()
            .get_async_pubsub()
            .await
            .expect("pub/sub connection to the test redis-server");
        ps.subscribe(channel).await.expect("SUBSCRIBE");
        let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = got.clone();
        let mut stream = ps.into_on_message();
        let task = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(msg.get_payload_bytes().to_vec());
            }
        });
        Self { got, task }
    }

    /// Every message body so far, as text, in arrival order.
    fn bodies(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// Waits until at least `n` messages arrived.
    async fn wait_for(&self, n: usize, what: &str) {
        wait_until(PATIENCE, what, || async { self.bodies().len() >= n }).await;
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `scripts/<name>`.
fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// `bash scripts/<name> args…` with a clean environment (PATH, and the binary under test
/// through `REDIS_WEBHOOK_BRIDGE_BIN`) in a directory of its own (no `.env`).
fn script_command(name: &str, args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script_path(name))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDIS_WEBHOOK_BRIDGE_BIN", BIN)
        .current_dir(cwd)
        .stdin(Stdio::null());
    cmd
}

/// Runs a script to the end.
fn run_script(name: &str, args: &[&str]) -> Output {
    let cwd = TempDir::new().expect("tempdir");
    script_command(name, args, cwd.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{name}: {e}"))
}

/// A script running in the background, in a process group of its own: the group (the script
/// and the binary it started) is killed when this is dropped.
struct Background {
    child: Child,
    dir: TempDir,
}

impl Background {
    fn spawn(name: &str, args: &[&str]) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let child = script_command(name, args, dir.path())
            .stdout(File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(File::create(dir.path().join("stderr")).expect("stderr file"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start scripts/{name}: {e}"));
        Self { child, dir }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for the script to exit.
    async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the script did not exit within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // The whole group: bash and the `migrate validate` it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// `scripts/rollback.sh --config <the bridge's config> <command>`; asserts it exits 0 and
/// returns its stdout.
fn rollback(bridge: &Bridge, command: &str) -> String {
    let out = run_script("rollback.sh", &["--config", bridge.config_path(), command]);
    assert!(
        out.status.success(),
        "rollback.sh {command}: {}",
        show(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `status --json` with the bridge's config, parsed.
fn cluster_status(bridge: &Bridge) -> Value {
    let out = bridge.cli(&["status", "--json"], &[]);
    assert!(out.status.success(), "status --json failed: {}", show(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", show(&out)))
}

/// The webhook bodies a harness receiver got, as text.
fn bodies_of(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// (a) The `receive` consumer
// ---------------------------------------------------------------------------------------

/// The sample consumer a webhook team starts from gets every event, each with a signature it
/// verified (its stdout lines are accepted, verified events only), under hokusai-v2 and
/// standard-webhooks, keyed like the registry's own publisher; a forged request is refused
/// and not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_consumer_gets_every_event_with_a_valid_signature() {
    const N: u32 = 20;
    let v2_secret = "migration-receive-v2-secret-0123456789";
    let whsec = "whsec_bWlncmF0aW9uLXJlY2VpdmUtc3RkLXNlY3JldA==";
    let v2 = ReceiveCmd::start(&["--secret", v2_secret, "--scheme", "hokusai-v2"]).await;
    let std_ = ReceiveCmd::start(&["--secret", whsec, "--scheme", "standard-webhooks"]).await;
    let redis = RedisServer::start();
    let config = base_toml(&redis, "t-mig-receive")
        + &endpoint_toml(
            "site-v2",
            &format!("http://127.0.0.1:{}/hook", v2.port),
            &format!("secrets = [\"{v2_secret}\"]\nsignature = \"hokusai-v2\""),
        )
        + &endpoint_toml(
            "site-std",
            &format!("http://127.0.0.1:{}/hook", std_.port),
            &format!("secrets = [\"{whsec}\"]\nsignature = \"standard-webhooks\""),
        );
    let bridge = Bridge::start(&config).await;

    let bodies = publish_events(&redis, "receive", 1..=N, 1).await;
    let expected = keys_of(&bodies);
    for (name, rx) in [("hokusai-v2", &v2), ("standard-webhooks", &std_)] {
        wait_until(
            PATIENCE,
            &format!("the {name} consumer printed {N} events"),
            || async { rx.events().len() >= N as usize },
        )
        .await;
        let events = rx.events();
        assert_eq!(
            events.len(),
            N as usize,
            "{name}: one line per event\n{events:#?}"
        );
        let keys: BTreeSet<String> = events
            .iter()
            .map(|e| e["idempotency_key"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(keys, expected, "{name}: the registry's keys, each once");
        for e in &events {
            assert_eq!(e["scheme"], name, "{name}: {e}");
            assert_eq!(e["attempt"], 1, "{name}: {e}");
            let key = e["idempotency_key"].as_str().unwrap();
            let published = bodies
                .iter()
                .find(|b| registry_key(b.as_bytes()) == key)
                .expect("a published body with this key");
            let published: Value = serde_json::from_str(published).unwrap();
            assert_eq!(e["body"], published, "{name}: the body as published");
        }
        assert!(
            !rx.stderr().contains("rejected"),
            "{name}: nothing the bridge sent was rejected:\n{}",
            rx.stderr()
        );
    }

    // The lines really are verified events: a request with a wrong signature is refused and
    // not printed.
    let forged = http()
        .post(format!("http://127.0.0.1:{}/hook", v2.port))
        .header("content-type", "application/json")
        .header("x-hokusai-timestamp", unix_now().to_string())
        .header("x-hokusai-nonce", Uuid::new_v4().to_string())
        .header("x-hokusai-signature", format!("sha256={}", "0".repeat(64)))
        .header("x-hokusai-idempotency-key", Uuid::new_v4().to_string())
        .body(registry_event("forged", 1))
        .send()
        .await
        .expect("POST to receive");
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(
        v2.events().len(),
        N as usize,
        "a forged request is not printed"
    );
    drop(bridge);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------
// (b) Retries until the endpoint recovers
// ---------------------------------------------------------------------------------------

/// The consumer answers its first 6 requests with 503 and then recovers: every event is
/// delivered, the failed attempts were retried (with the circuit breaker opening on the way),
/// nothing is dead-lettered, and the metrics count exactly the drilled failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_until_it_recovers() {
    const N: u32 = 5;
    const FAILURES: u64 = 6;
    let secret = "migration-retry-secret-0123456789";
    let rx = ReceiveCmd::start(&["--secret", secret, "--fail-first", &FAILURES.to_string()]).await;
    let redis = RedisServer::start();
    let config = base_toml(&redis, "t-mig-retry")
        + &endpoint_toml(
            "site",
            &format!("http://127.0.0.1:{}/hook", rx.port),
            &format!(
                "secrets = [\"{secret}\"]\nmax_retries = 10\ncircuit_breaker = {{ failure_threshold = 3, recovery_time = \"500ms\" }}"
            ),
        );
    let bridge = Bridge::start(&config).await;

    let bodies = publish_events(&redis, "retry", 1..=N, 1).await;
    wait_until(PATIENCE, "every event was accepted", || async {
        rx.events().len() >= N as usize
    })
    .await;
    let events = rx.events();
    assert_eq!(events.len(), N as usize, "{events:#?}");
    let keys: BTreeSet<String> = events
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, keys_of(&bodies));
    let attempts: Vec<u64> = events
        .iter()
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert!(
        attempts.iter().any(|a| *a > 1),
        "some event needed retries: {attempts:?}"
    );
    // Each drilled 503 was one failed attempt of some event, and the event's accepted attempt
    // number counts its failed ones: together they are exactly the drilled failures.
    assert_eq!(
        attempts.iter().map(|a| a - 1).sum::<u64>(),
        FAILURES,
        "attempts {attempts:?}\n{}",
        rx.stderr()
    );
    assert_eq!(
        rx.stderr().matches("drilled failure").count() as u64,
        FAILURES
    );

    let failures = bridge
        .metric_value(
            "webhook_publish_failure_total",
            &[("endpoint", "site"), ("reason", "http_503")],
        )
        .await;
    assert_eq!(failures, FAILURES as f64, "{}", bridge.metrics_text().await);
    let success = bridge
        .metric_value("webhook_publish_success_total", &[("endpoint", "site")])
        .await;
    assert_eq!(success, N as f64);
    let retries = bridge
        .metric_value("webhook_retry_count_total", &[("endpoint", "site")])
        .await;
    assert_eq!(retries, FAILURES as f64);
    assert!(
        bridge.dlq_entries(&[]).is_empty(),
        "nothing is dead-lettered"
    );
}

// ---------------------------------------------------------------------------------------
// (c) Dual publishing
// ---------------------------------------------------------------------------------------

/// `run --dual` (here `BRIDGE_DUAL=true`, the same flag) with a channel and a list target:
/// a Redis consumer of the target channel, the target list and the webhook each get every
/// message, byte for byte, and the webhook's idempotency key is the registry's uuid5 of the
/// republished body, so a consumer reading both paths de-duplicates across them. A repeat of
/// a message is neither republished nor delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_mode_delivers_every_message_to_the_redis_targets_and_the_webhook_with_one_key() {
    const N: u32 = 10;
    let target_channel = "t-mig-dual:legacy-copy";
    let target_list = "t-mig-dual:legacy-list";

    // The key rule of this file is the registry's own: check it against the fixture.
    let f = fixtures();
    assert_eq!(
        registry_key(
            f["model_ready_message"]["body"]
                .as_str()
                .unwrap()
                .as_bytes()
        ),
        f["model_ready_message"]["idempotency_key"]
            .as_str()
            .unwrap()
    );

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-dual")
        + &endpoint_toml("site", &rx.url("/hook"), "")
        + &format!(
            "\n[republish]\ntargets = [{{ kind = \"channel\", key = \"{target_channel}\" }}, {{ kind = \"list\", key = \"{target_list}\" }}]\n"
        );
    let bridge = Bridge::start_with_env(&config, &[("BRIDGE_DUAL", "true")]).await;
    assert_eq!(bridge.status_json().await["dual"], true);

    // Subscribed before anything is published: pub/sub keeps nothing for late subscribers.
    let copy = Subscriber::start(&redis, target_channel).await;
    let bodies = publish_events(&redis, "dual", 1..=N, 1).await;

    copy.wait_for(
        N as usize,
        "the target channel's subscriber got every message",
    )
    .await;
    let webhook = rx.wait_for_count(N as usize, PATIENCE).await;
    wait_until(PATIENCE, "the target list holds every message", || async {
        list_items(&redis, target_list).await.len() >= N as usize
    })
    .await;

    let published: BTreeSet<String> = bodies.iter().cloned().collect();
    let on_channel: BTreeSet<String> = copy.bodies().into_iter().collect();
    let on_list: BTreeSet<String> = list_items(&redis, target_list).await.into_iter().collect();
    let on_webhook: BTreeSet<String> = bodies_of(&webhook).into_iter().collect();
    assert_eq!(
        copy.bodies().len(),
        N as usize,
        "each message once on the channel"
    );
    assert_eq!(on_channel, published, "republished byte for byte (channel)");
    assert_eq!(on_list, published, "republished byte for byte (list)");
    assert_eq!(on_webhook, published, "delivered byte for byte (webhook)");
    assert_eq!(
        webhook.len(),
        N as usize,
        "each message once on the webhook"
    );

    // One key across both paths: what a Redis consumer computes from the republished body is
    // what the webhook's header says for the same body.
    let webhook_keys: BTreeMap<String, String> = webhook
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.body).into_owned(),
                r.idempotency_key(),
            )
        })
        .collect();
    for body in copy.bodies() {
        assert_eq!(
            webhook_keys.get(&body),
            Some(&registry_key(body.as_bytes())),
            "the same idempotency key on both paths for {body}"
        );
    }

    for target in [
        format!("channel:{target_channel}"),
        format!("list:{target_list}"),
    ] {
        let n = bridge
            .metric_value("bridge_messages_republished_total", &[("target", &target)])
            .await;
        assert_eq!(
            n, N as f64,
            "bridge_messages_republished_total{{target={target}}}"
        );
    }

    // A repeat is dropped by the journal, so it is not republished either. The sentinel
    // published after it goes through the same source and ingest in order: once the sentinel
    // is on the target channel, the repeat would be there before it.
    redis.publish(DEFAULT_CHANNEL, &bodies[0]).await;
    let sentinel = registry_event("dual", N + 1);
    redis.publish(DEFAULT_CHANNEL, &sentinel).await;
    copy.wait_for(N as usize + 1, "the sentinel was republished")
        .await;
    assert_eq!(
        copy.bodies().last(),
        Some(&sentinel),
        "the repeat was not republished"
    );
    assert_eq!(copy.bodies().len(), N as usize + 1);
    rx.wait_for_count(N as usize + 1, PATIENCE).await;
    assert_eq!(rx.requests().len(), N as usize + 1, "nor delivered again");
    assert!(
        bridge
            .metric_value("bridge_duplicates_dropped_total", &[])
            .await
            >= 1.0
    );

    // `pause` holds webhook deliveries only: ingest, and so republishing, go on, which is why
    // pausing (not stopping) is the rollback while consumers read a republished copy.
    let out = bridge.cli(&["pause", "--reason", "drill"], &[]);
    assert!(out.status.success(), "pause: {}", show(&out));
    wait_until(PATIENCE, "the replica saw the pause", || async {
        bridge.status_json().await["paused"].is_object()
    })
    .await;
    let while_paused = registry_event("dual", N + 2);
    redis.publish(DEFAULT_CHANNEL, &while_paused).await;
    copy.wait_for(N as usize + 2, "republished while paused")
        .await;
    assert_eq!(copy.bodies().last(), Some(&while_paused));
    assert_eq!(rx.requests().len(), N as usize + 1, "held while paused");
    let out = bridge.cli(&["resume"], &[]);
    assert!(out.status.success(), "resume: {}", show(&out));
    let got = rx.wait_for_count(N as usize + 2, PATIENCE).await;
    assert_eq!(bodies_of(&got).last(), Some(&while_paused));
}

// ---------------------------------------------------------------------------------------
// (d) Rollback
// ---------------------------------------------------------------------------------------

/// Rollback by pausing, with `scripts/rollback.sh pause`: the legacy Redis consumer of the
/// registry's channel keeps getting everything, webhooks get nothing while paused, and after
/// `scripts/rollback.sh resume` the held messages are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_by_pause_keeps_legacy_consumers_whole_and_resume_delivers_what_was_held() {
    const N: u32 = 5;
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-pause") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    let legacy = Subscriber::start(&redis, DEFAULT_CHANNEL).await;

    let text = rollback(&bridge, "pause");
    assert!(
        text.contains("paused deliveries on every replica"),
        "{text}"
    );
    assert!(
        text.contains("deliveries: PAUSED") && text.contains("(rollback)"),
        "rollback.sh pause prints `status`: {text}"
    );
    wait_until(PATIENCE, "the replica saw the pause", || async {
        bridge.status_json().await["paused"].is_object()
    })
    .await;

    // The bridge and the legacy consumer are both subscribed while paused.
    let bodies = publish_events(&redis, "pause", 1..=N, 2).await;
    legacy
        .wait_for(N as usize, "the legacy consumer got every message")
        .await;
    assert_eq!(legacy.bodies(), bodies, "the legacy path is untouched");
    // Journaled and not delivered: either still waiting in the endpoint's stream or taken
    // (prefetched) by the replica's worker, which holds it while paused.
    let waiting = |st: &Value| st["endpoints"][0]["not_delivered"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let st = cluster_status(&bridge);
        if waiting(&st) == N as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused bridge holds all {N} messages: {st:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing must reach the webhook: an absence can only be observed over a period, so this
    // sleeps (3 s, twelve times the replicas' 250 ms pause poll).
    tokio::time::sleep(SECS(3)).await;
    assert!(
        rx.requests().is_empty(),
        "a paused bridge delivered {} request(s)",
        rx.requests().len()
    );
    let st = cluster_status(&bridge);
    assert_eq!(st["paused"]["reason"], "rollback", "{st:#}");

    let text = rollback(&bridge, "resume");
    assert!(
        text.contains("resumed deliveries") && text.contains("deliveries: running"),
        "{text}"
    );
    let delivered = rx.wait_for_count(N as usize, PATIENCE).await;
    let keys: BTreeSet<String> = delivered.iter().map(|r| r.idempotency_key()).collect();
    assert_eq!(keys, keys_of(&bodies), "every held message is delivered");
    assert_eq!(delivered.len(), N as usize);
    assert_eq!(legacy.bodies().len(), N as usize);
}

/// Rollback by stopping (`scripts/rollback.sh stop` pauses and says how to stop; then
/// SIGTERM): the legacy consumer keeps getting everything, the webhook nothing. Messages
/// published while the bridge was down are never delivered (pub/sub keeps nothing); a
/// bridge started again stays paused until `resume`, then delivers new messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_by_stopping_the_bridge_keeps_legacy_consumers_whole() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-stop") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    let legacy = Subscriber::start(&redis, DEFAULT_CHANNEL).await;

    let before = publish_events(&redis, "stop", 1..=3, 2).await;
    rx.wait_for_count(3, PATIENCE).await;

    let text = rollback(&bridge, "stop");
    for needle in [
        "deliveries: PAUSED",
        "systemctl stop redis-webhook-bridge",
        "kubectl scale deployment/redis-webhook-bridge --replicas=0",
        "rollback.sh resume",
    ] {
        assert!(
            text.contains(needle),
            "rollback.sh stop prints {needle:?}:\n{text}"
        );
    }

    bridge.stop(SECS(60)).await;
    assert!(
        cluster_status(&bridge)["replicas"]
            .as_array()
            .is_some_and(|r| r.is_empty()),
        "the stopped replica removed its heartbeat"
    );

    // Only the legacy consumer is subscribed now.
    let during = publish_events(&redis, "stop", 4..=8, 1).await;
    legacy
        .wait_for(8, "the legacy consumer got every message")
        .await;
    let all: Vec<String> = before.iter().chain(&during).cloned().collect();
    assert_eq!(legacy.bodies(), all, "the legacy path is untouched");
    // An absence again: wait a moment (2 s) before asserting that nothing more arrived.
    tokio::time::sleep(SECS(2)).await;
    assert_eq!(rx.requests().len(), 3, "a stopped bridge delivers nothing");

    // Undo: start again (paused, as the key is still set), resume, and new messages flow.
    let bridge = Bridge::start(&config).await;
    assert!(
        bridge.status_json().await["paused"].is_object(),
        "starts paused"
    );
    rollback(&bridge, "resume");
    let after = publish_events(&redis, "stop", 9..=9, 2).await;
    let got = rx.wait_for_count(4, PATIENCE).await;
    assert_eq!(
        got.last().map(|r| r.idempotency_key()),
        Some(registry_key(after[0].as_bytes()))
    );
    assert_eq!(
        got.len(),
        4,
        "messages published while no replica was subscribed are never delivered"
    );
}

// ---------------------------------------------------------------------------------------
// (e) migrate validate
// ---------------------------------------------------------------------------------------

/// Waits until `channel` has `n` subscribers (e.g. the bridge and a running validate).
async fn wait_for_subscribers(redis: &RedisServer, channel: &str, n: u64, bg: &Background) {
    let deadline = Instant::now() + PATIENCE;
    while numsub(redis, channel).await < n {
        assert!(
            Instant::now() < deadline,
            "{channel} did not reach {n} subscribers\n{}",
            bg.output()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts `scripts/migrate-validate.sh --config <the bridge's config> <args>` in the
/// background and waits until it listens: the source channel has 2 subscribers, it and the
/// bridge.
async fn start_validate(redis: &RedisServer, bridge: &Bridge, args: &[&str]) -> Background {
    let mut full = vec!["--config", bridge.config_path()];
    full.extend_from_slice(args);
    let validate = Background::spawn("migrate-validate.sh", &full);
    wait_for_subscribers(redis, DEFAULT_CHANNEL, 2, &validate).await;
    validate
}

/// A healthy run: `scripts/migrate-validate.sh` (over `migrate validate`), started in the
/// background while events are published, passes — exit 0, and its report shows every
/// observed message delivered to the endpoint that matches and none expected by the one that
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_validate_passes_on_a_healthy_run() {
    const N: u32 = 10;
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-validate-ok")
        + &endpoint_toml("site", &rx.url("/hook"), "")
        + &endpoint_toml("elsewhere", &rx.url("/other"), "channels = [\"other:*\"]");
    let bridge = Bridge::start(&config).await;

    // The window opens when validate subscribes; a generous one leaves a busy machine time
    // to publish inside it (the test waits for the window's end).
    let mut validate = start_validate(
        &redis,
        &bridge,
        &["--duration", "15s", "--grace", "30s", "--format", "json"],
    )
    .await;
    let listening = Instant::now();
    let bodies = publish_events(&redis, "validate-ok", 1..=N, 2).await;
    assert!(
        listening.elapsed() < SECS(15),
        "published within the window (the machine is very slow: raise --duration)"
    );

    let status = validate.wait(SECS(90)).await;
    assert!(
        status.success(),
        "validate passes: {status}\n{}",
        validate.output()
    );
    let report: Value = serde_json::from_str(&validate.stdout())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e})\n{}", validate.output()));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["observed"], N, "{report:#}");
    let site = report["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|p| p["endpoint"] == "site"))
        .unwrap_or_else(|| panic!("no parity for site: {report:#}"));
    assert_eq!(site["expected"], N, "{report:#}");
    assert_eq!(site["delivered"], N, "{report:#}");
    assert_eq!(site["missing"], 0, "{report:#}");
    assert_eq!(site["dead_lettered"], 0, "{report:#}");
    assert_eq!(site["pending"], 0, "{report:#}");
    assert_eq!(site["not_delivered"], Value::Array(vec![]), "{report:#}");
    let elsewhere = report["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|p| p["endpoint"] == "elsewhere"))
        .unwrap_or_else(|| panic!("no parity for elsewhere: {report:#}"));
    assert_eq!(elsewhere["expected"], 0, "its filter matches nothing here");
    assert!(
        validate.stderr().contains("window 1/1: PASS"),
        "{}",
        validate.output()
    );
    let delivered: BTreeSet<String> = rx
        .requests_to("/hook")
        .iter()
        .map(|r| r.idempotency_key())
        .collect();
    assert_eq!(delivered, keys_of(&bodies), "the endpoint got each message");
    assert_eq!(rx.requests_to("/hook").len(), N as usize, "each once");
}

/// A run that silently lost messages fails, naming them.
///
/// "Silently lost" is modelled the way it happens with this design: no bridge replica was
/// subscribed while the registry published (here it was stopped with SIGTERM; in production
/// a crash loop, a deploy with one replica, a network partition). Redis pub/sub drops such
/// messages without a trace anywhere — no error, no dead-letter entry, no failure metric —
/// so only a parity check against what Redis carried can find them. (Deleting ledger entries
/// instead would model a bookkeeping bug of the bridge, not a loss.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_validate_fails_naming_the_messages_an_endpoint_never_got() {
    const WINDOW: u64 = 25;
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config =
        base_toml(&redis, "t-mig-validate-gap") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let window = format!("{WINDOW}s");
    let mut validate =
        start_validate(&redis, &bridge, &["--duration", &window, "--grace", "3s"]).await;
    let listening = Instant::now();
    let delivered = publish_events(&redis, "gap", 1..=3, 2).await;
    rx.wait_for_count(3, PATIENCE).await;
    bridge.sigterm();
    bridge.wait_exit(SECS(60)).await;
    // Only the validator hears these.
    let lost = publish_events(&redis, "gap", 4..=5, 1).await;
    assert!(
        listening.elapsed() < SECS(WINDOW - 2),
        "the lost messages were published within the window (the machine is very slow: raise WINDOW)"
    );

    let status = validate.wait(SECS(90)).await;
    assert_eq!(
        status.code(),
        Some(1),
        "a gap exits 1\n{}",
        validate.output()
    );
    let out = validate.stdout();
    assert!(out.contains("FAIL"), "{out}");
    for key in keys_of(&lost) {
        assert!(
            out.contains(&format!("MISSING for site: idempotency key {key}")),
            "the lost message {key} is named\n{out}"
        );
    }
    for key in keys_of(&delivered) {
        assert!(
            !out.contains(&key),
            "the delivered {key} is not named\n{out}"
        );
    }
    let row = out
        .lines()
        .find(|l| l.starts_with("site "))
        .unwrap_or_else(|| panic!("no row for site\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        ["site", "5", "3", "0", "0", "2"],
        "expected 5, delivered 3, dead-lettered 0, pending 0, missing 2\n{out}"
    );
    assert!(
        validate.stderr().contains("window 1/1: FAIL"),
        "{}",
        validate.output()
    );
}

/// A dead-lettered message fails the check, named as such, unless `--allow-dead-lettered`
/// accepts it; the counts say where each observed message stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_validate_fails_on_a_dead_lettered_message_unless_allowed() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400)); // permanent: dead-lettered at once
    let config =
        base_toml(&redis, "t-mig-validate-dead") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    for (round, args) in [
        (
            1u32,
            vec!["--duration", "5s", "--grace", "20s", "--format", "json"],
        ),
        (
            2,
            vec![
                "--duration",
                "5s",
                "--grace",
                "20s",
                "--format",
                "json",
                "--allow-dead-lettered",
            ],
        ),
    ] {
        let mut validate = start_validate(&redis, &bridge, &args).await;
        let bodies = publish_events(&redis, &format!("dead-{round}"), 1..=1, 2).await;
        let status = validate.wait(SECS(90)).await;
        let report: Value = serde_json::from_str(&validate.stdout())
            .unwrap_or_else(|e| panic!("the report is not JSON ({e})\n{}", validate.output()));
        let site = &report["endpoints"][0];
        assert_eq!(site["endpoint"], "site", "{report:#}");
        assert_eq!(
            (
                &site["expected"],
                &site["delivered"],
                &site["dead_lettered"],
                &site["pending"],
                &site["missing"]
            ),
            (
                &serde_json::json!(1),
                &serde_json::json!(0),
                &serde_json::json!(1),
                &serde_json::json!(0),
                &serde_json::json!(0)
            ),
            "{report:#}"
        );
        let listed = &site["not_delivered"][0];
        assert_eq!(listed["state"], "dead_lettered", "{report:#}");
        assert_eq!(
            listed["idempotency_key"].as_str(),
            keys_of(&bodies).iter().next().map(String::as_str),
            "{report:#}"
        );
        if round == 1 {
            assert_eq!(status.code(), Some(1), "{}", validate.output());
            assert_eq!(report["ok"], false, "{report:#}");
        } else {
            assert!(status.success(), "{}", validate.output());
            assert_eq!(report["ok"], true, "{report:#}");
        }
    }
}

/// A stream source is checked too: entries added during the window are read with XRANGE
/// (the bridge's consumer group is not touched) and keyed as the bridge keys them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_validate_checks_the_entries_of_a_stream_source() {
    const N: u32 = 3;
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-validate-stream")
        + "\n[[sources]]\nkind = \"stream\"\nname = \"events\"\nkey = \"hokusai:model_events\"\n"
        + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    let mut validate = Background::spawn(
        "migrate-validate.sh",
        &[
            "--config",
            bridge.config_path(),
            "--duration",
            "15s",
            "--grace",
            "30s",
            "--format",
            "json",
        ],
    );
    // It prints this once it has noted where the stream ends.
    let deadline = Instant::now() + PATIENCE;
    while !validate.stderr().contains("observing") {
        assert!(Instant::now() < deadline, "{}", validate.output());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let observing = Instant::now();
    let mut c = redis.conn().await;
    let mut bodies = Vec::new();
    for n in 1..=N {
        let body = registry_event("validate-stream", n);
        let _: String = redis::cmd("XADD")
            .arg("hokusai:model_events")
            .arg("*")
            .arg("body")
            .arg(&body)
            .query_async(&mut c)
            .await
            .expect("XADD");
        bodies.push(body);
    }
    // A window of 15 s leaves a loaded machine ample time for three XADDs; if one still
    // came late, the count below would say so rather than pass.
    assert!(
        observing.elapsed() < SECS(15),
        "the entries were added within the window"
    );
    let status = validate.wait(SECS(90)).await;
    assert!(status.success(), "{}", validate.output());
    let report: Value = serde_json::from_str(&validate.stdout())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e})\n{}", validate.output()));
    assert_eq!(report["observed"], N, "{report:#}");
    let site = &report["endpoints"][0];
    assert_eq!(site["expected"], N, "{report:#}");
    assert_eq!(site["delivered"], N, "{report:#}");
    let keys: BTreeSet<String> = rx.requests().iter().map(|r| r.idempotency_key()).collect();
    assert_eq!(keys, keys_of(&bodies));
}

/// A config whose only source is a list is refused, saying why the list cannot be observed.
#[test]
fn migrate_validate_refuses_a_config_with_only_a_list_source_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        "[redis]\nurl = \"redis://127.0.0.1:1\"\n\n[[sources]]\nkind = \"list\"\nname = \"registry\"\nkey = \"hokusai:model_ready_queue\"\nunwrap_envelope = true\n\n[[endpoints]]\nname = \"site\"\nurl = \"https://example.com/hook\"\nsecrets = [\"s\"]\n",
    )
    .unwrap();
    let out = run_cli(
        &[
            "--config",
            config.to_str().unwrap(),
            "migrate",
            "validate",
            "--duration",
            "1s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("list source `registry`") && err.contains("no other reader can see it"),
        "{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------------------
// (f) Deprecation warnings
// ---------------------------------------------------------------------------------------

/// While a subscriber other than the bridge reads the source channel, the bridge exports
/// `bridge_legacy_subscribers{channel} ≥ 1` and logs a deprecation warning naming the
/// channel; once it leaves, the gauge returns to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_subscribers_are_counted_and_named_in_a_deprecation_warning() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-mig-legacy")
        + &endpoint_toml("site", &rx.url("/hook"), "")
        + "\n[migration]\nlegacy_check_interval = \"1s\"\n";
    let bridge = Bridge::start(&config).await;
    let labels = [("channel", DEFAULT_CHANNEL)];
    let gauge = || async {
        metric_in(
            &bridge.metrics_text().await,
            "bridge_legacy_subscribers",
            &labels,
        )
    };
    let warnings = || {
        bridge
            .full_logs()
            .lines()
            .filter(|l| l.contains("deprecation") && l.contains(DEFAULT_CHANNEL))
            .count()
    };

    wait_until(
        PATIENCE,
        "the gauge reads 0 with only the bridge subscribed",
        || async { gauge().await == Some(0.0) },
    )
    .await;
    let quiet = warnings();

    let legacy = Subscriber::start(&redis, DEFAULT_CHANNEL).await;
    wait_until(PATIENCE, "bridge_legacy_subscribers ≥ 1", || async {
        gauge().await.is_some_and(|v| v >= 1.0)
    })
    .await;
    wait_until(
        PATIENCE,
        "a deprecation warning naming the channel",
        || async { warnings() > quiet },
    )
    .await;
    let line = bridge
        .full_logs()
        .lines()
        .rfind(|l| l.contains("deprecation") && l.contains(DEFAULT_CHANNEL))
        .map(String::from)
        .unwrap();
    let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(json["level"], "WARN", "{line}");
    // JSON logs are flattened: the event's fields sit next to `level` and `message`.
    assert_eq!(json["channel"], DEFAULT_CHANNEL, "{line}");
    assert_eq!(json["legacy_subscribers"], 1, "{line}");

    drop(legacy);
    wait_until(PATIENCE, "the gauge is back to 0", || async {
        gauge().await == Some(0.0)
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (g) ENABLE_REDIS_FALLBACK
// ---------------------------------------------------------------------------------------

/// With `ENABLE_REDIS_FALLBACK=true`, a delivery dead-lettered by a 400 is also LPUSHed, body
/// as published, to the fallback list; without it, only the dead-letter entry is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_enable_redis_fallback_a_dead_lettered_delivery_is_also_pushed_to_the_fallback_list() {
    let fallback_key = "hokusai:model_ready_queue:webhook-fallback:t-mig-fallback";
    let config_for = |redis: &RedisServer, rx: &Receiver| {
        base_toml(redis, "t-mig-fallback")
            + &endpoint_toml("site", &rx.url("/hook"), "")
            + &format!("\n[fallback]\nkey = \"{fallback_key}\"\n")
    };

    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400));
    let bridge = Bridge::start_with_env(
        &config_for(&redis, &rx),
        &[("ENABLE_REDIS_FALLBACK", "true")],
    )
    .await;
    let bodies = publish_events(&redis, "fallback", 1..=2, 1).await;
    wait_until(PATIENCE, "both bodies are on the fallback list", || async {
        list_items(&redis, fallback_key).await.len() >= 2
    })
    .await;
    // Deliveries run concurrently, so they may be dead-lettered in either order.
    let mut on_list = list_items(&redis, fallback_key).await;
    on_list.sort();
    let mut expected = bodies.clone();
    expected.sort();
    assert_eq!(on_list, expected, "the bodies as published, once each");
    let dead = bridge.dlq_entries(&[]);
    assert_eq!(dead.len(), 2, "{dead:#?}");
    for d in &dead {
        assert_eq!(d["endpoint"], "site", "{d}");
        assert_eq!(d["last_status"], 400, "{d}");
        assert_eq!(d["attempts"], 1, "a 400 is permanent: no retry\n{d}");
        let body = d["body"].as_str().unwrap();
        assert_eq!(d["idempotency_key"], registry_key(body.as_bytes()), "{d}");
    }
    assert_eq!(rx.requests().len(), 2);

    // Control: the same without the variable writes the dead-letter entry only (both are
    // written in one MULTI, so once the entry exists the list would too).
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(400));
    let bridge = Bridge::start(&config_for(&redis, &rx)).await;
    publish_events(&redis, "fallback-off", 1..=1, 1).await;
    wait_until(PATIENCE, "the delivery is dead-lettered", || async {
        bridge.dlq_entries(&[]).len() == 1
    })
    .await;
    assert!(list_items(&redis, fallback_key).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// (h) migrate plan
// ---------------------------------------------------------------------------------------

/// `migrate plan --format json` lists the source channel with its subscribers (the bridge
/// and a legacy consumer), the registry's envelope list with its length, a stream with its
/// consumer group, none of the bridge's own keys, and a suggested config that reads the
/// channel (the list only as a commented alternative) and passes `check-config` as printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_plan_lists_channels_with_subscribers_and_lists_with_lengths() {
    let prefix = "t-mig-plan";
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, prefix) + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    let _legacy = Subscriber::start(&redis, DEFAULT_CHANNEL).await;
    assert_eq!(numsub(&redis, DEFAULT_CHANNEL).await, 2);

    let f = fixtures();
    let envelope = f["envelope"]["body"].as_str().unwrap();
    let mut c = redis.conn().await;
    for _ in 0..3 {
        let _: i64 = redis::cmd("LPUSH")
            .arg("hokusai:model_ready_queue")
            .arg(envelope)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let _: String = redis::cmd("XADD")
        .arg("hokusai:model_events")
        .arg("*")
        .arg("body")
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: String = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("hokusai:model_events")
        .arg("legacy-readers")
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    // The bridge writes its own keys (queue stream, ledger, seen markers); plan skips them.
    publish_events(&redis, "plan", 1..=1, 2).await;
    rx.wait_for_count(1, PATIENCE).await;

    let out = bridge.cli(&["migrate", "plan", "--format", "json"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let plan: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("plan is not JSON ({e}): {}", show(&out)));

    let channel = plan["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["channel"] == DEFAULT_CHANNEL))
        .unwrap_or_else(|| panic!("the source channel is listed: {plan:#}"));
    assert_eq!(
        channel["subscribers"], 2,
        "the bridge and the legacy consumer"
    );
    assert_eq!(channel["configured"], true);

    let list = plan["lists"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["key"] == "hokusai:model_ready_queue"))
        .unwrap_or_else(|| panic!("the registry's list is listed: {plan:#}"));
    assert_eq!(list["length"], 3);
    assert_eq!(list["looks_like_envelope"], true);

    let stream = plan["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == "hokusai:model_events"))
        .unwrap_or_else(|| panic!("the stream is listed: {plan:#}"));
    assert_eq!(stream["length"], 1);
    assert_eq!(stream["groups"], serde_json::json!(["legacy-readers"]));

    for kind in ["lists", "streams"] {
        for item in plan[kind].as_array().unwrap() {
            let key = item["key"].as_str().unwrap();
            assert!(
                !key.starts_with(&format!("{prefix}:")),
                "the bridge's own key {key} is not inventoried"
            );
        }
    }
    let suggested = plan["suggested_config"].as_str().unwrap();
    let parsed: toml::Table = toml::from_str(suggested)
        .unwrap_or_else(|e| panic!("the suggested config is TOML ({e}):\n{suggested}"));
    let sources = parsed["sources"].as_array().expect("sources");
    assert!(
        sources.iter().any(|s| s["kind"].as_str() == Some("pubsub")
            && s["channels"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c.as_str() == Some(DEFAULT_CHANNEL)))),
        "the registry's channel is the suggested source:\n{suggested}"
    );
    assert!(
        sources.iter().all(|s| s["kind"].as_str() != Some("list")),
        "the registry's list is not an active source (the bridge would take its items):\n{suggested}"
    );
    assert!(
        suggested.contains("# key = \"hokusai:model_ready_queue\"")
            && suggested.contains("# unwrap_envelope = true")
            && suggested.contains("CONSUMES the list")
            && suggested.contains("MIGRATION.md"),
        "the envelope list is a commented alternative with the warning:\n{suggested}"
    );
    // As printed, it passes check-config (the endpoint is http on loopback: [security] too).
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("suggested.toml");
    std::fs::write(&path, suggested).unwrap();
    let check = run_cli(
        &["--config", path.to_str().unwrap(), "check-config"],
        &[("WEBHOOK_SECRET", "plan-secret")],
    );
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}\n{suggested}",
        show(&check)
    );

    let text = bridge.cli(&["migrate", "plan"], &[]);
    assert!(text.status.success(), "{}", show(&text));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(DEFAULT_CHANNEL) && l.contains("2 subscriber(s)")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// The scripts' own contract
// ---------------------------------------------------------------------------------------

/// `--help` documents each script (exit 0); bad usage exits 2; the binary's exit status is
/// passed through (78 for a missing config file, 2 for a bad flag value); a missing binary
/// is named.
#[test]
fn the_scripts_document_themselves_and_pass_exit_codes_through() {
    for name in ["rollback.sh", "migrate-validate.sh"] {
        let out = run_script(name, &["--help"]);
        assert!(out.status.success(), "{name} --help: {}", show(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Exit status"), "{name}: {help}");
        assert!(
            !help.contains("set -euo"),
            "{name}: only the comment block: {help}"
        );
    }
    let help = String::from_utf8_lossy(&run_script("rollback.sh", &["--help"]).stdout).into_owned();
    for word in [
        "pause",
        "resume",
        "status",
        "stop",
        "--config",
        "BRIDGE_CONFIG",
    ] {
        assert!(help.contains(word), "rollback.sh --help mentions {word}");
    }

    let code = |name: &str, args: &[&str]| run_script(name, args).status.code();
    assert_eq!(code("rollback.sh", &[]), Some(2), "no command");
    assert_eq!(
        code("rollback.sh", &["explode"]),
        Some(2),
        "unknown command"
    );
    assert_eq!(
        code("rollback.sh", &["pause", "resume"]),
        Some(2),
        "two commands"
    );
    assert_eq!(code("migrate-validate.sh", &["--windows", "0"]), Some(2));
    assert_eq!(code("migrate-validate.sh", &["--bogus"]), Some(2));
    assert_eq!(
        code("migrate-validate.sh", &["--duration", "not-a-duration"]),
        Some(2),
        "the binary's usage error"
    );
    let missing = "/nonexistent/bridge.toml";
    let out = run_script("rollback.sh", &["--config", missing, "status"]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(missing));
    let out = run_script("migrate-validate.sh", &["--config", missing]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));

    let cwd = TempDir::new().unwrap();
    let out = script_command("rollback.sh", &["status"], cwd.path())
        .env(
            "REDIS_WEBHOOK_BRIDGE_BIN",
            "/nonexistent/redis-webhook-bridge",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_WEBHOOK_BRIDGE_BIN"));
}
