//! What an operator sees of a running bridge: the queue counts in `/status`, `status` and
//! `/metrics` (one set of numbers, the same in all three), the log lines to work from, and
//! one output vocabulary for `status --format json` and `/status`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// The queue counts every view reports, in the order they are compared.
const COUNTS: [&str; 4] = ["waiting", "taken", "retry_scheduled", "not_delivered"];

/// The bridge's JSON log lines whose `message` is `message`.
fn log_lines(bridge: &Bridge, message: &str) -> Vec<Value> {
    bridge
        .full_logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

/// `status --format json` (or the given flags) with the bridge's config, parsed.
fn cli_status(bridge: &Bridge, flags: &[&str]) -> Value {
    let mut args = vec!["status"];
    args.extend_from_slice(flags);
    let out = bridge.cli(&args, &[]);
    assert!(out.status.success(), "status failed: {}", show(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status {flags:?} is not JSON ({e}): {}", show(&out)))
}

/// The object named `name` in the array `list`.
fn named<'v>(list: &'v Value, name: &str) -> &'v Value {
    list.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// The counts of `endpoint` in a `/status` or `status` document.
fn counts(doc: &Value, endpoint: &str) -> Vec<u64> {
    let ep = named(&doc["endpoints"], endpoint);
    COUNTS
        .iter()
        .map(|k| {
            ep[*k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k} is not a count in {ep}"))
        })
        .collect()
}

/// The same counts from `/metrics`: `bridge_queue_jobs` by state, then `bridge_queue_depth`.
fn metric_counts(metrics: &str, endpoint: &str) -> Vec<u64> {
    let jobs = |state| {
        metric_in(
            metrics,
            "bridge_queue_jobs",
            &[("endpoint", endpoint), ("state", state)],
        )
        .unwrap_or(f64::NAN) as u64
    };
    vec![
        jobs("waiting"),
        jobs("taken"),
        jobs("retry_scheduled"),
        metric_in(metrics, "bridge_queue_depth", &[("endpoint", endpoint)]).unwrap_or(f64::NAN)
            as u64,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_circuit_open_status_the_status_command_and_metrics_count_the_same_undelivered_messages()
 {
    let redis = RedisServer::start();
    // Nothing listens there: every attempt is a refused connection.
    let refused = format!("http://127.0.0.1:{}/hook", free_port());
    let config = base_toml(&redis, "t-open-circuit")
        + &endpoint_toml(
            "down",
            &refused,
            "retry_delay = \"1h\"\nmax_retries = 10\nconcurrency = 1\n\
             circuit_breaker = { failure_threshold = 1, recovery_time = \"1h\" }\n",
        );
    let bridge = Bridge::start(&config).await;

    // The first message fails once (the circuit opens) and waits an hour for its retry.
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    wait_until(
        T,
        "/status shows the first message scheduled for retry",
        || async { bridge.endpoint_status("down").await["retry_scheduled"] == 1 },
    )
    .await;
    for n in 2..=6 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    // Nothing moves behind the open circuit; the views agree once all six are journaled.
    wait_until(
        T,
        "/status, `status --format json` and /metrics all count 6 not delivered",
        || async {
            let status = counts(&bridge.status_json().await, "down");
            let cli = counts(&cli_status(&bridge, &["--format", "json"]), "down");
            let metrics = metric_counts(&bridge.metrics_text().await, "down");
            status[3] == 6 && status == cli && status == metrics
        },
    )
    .await;

    let status = bridge.status_json().await;
    let ep = named(&status["endpoints"], "down");
    assert_eq!(ep["circuit"], "open", "{ep}");
    assert_eq!(ep["retry_scheduled"], 1, "{ep}");
    assert_eq!(
        ep["waiting"].as_u64().unwrap() + ep["taken"].as_u64().unwrap(),
        5,
        "the five later messages wait or are taken: {ep}"
    );
    assert_eq!(
        counts(&cli_status(&bridge, &["--json"]), "down"),
        counts(&status, "down"),
        "`status --json` is `status --format json`"
    );
    wait_until(
        T,
        "the head of the queue ages in /status and /metrics",
        || async {
            bridge.endpoint_status("down").await["oldest_age_seconds"].as_u64() >= Some(1)
                && bridge
                    .metric_value("bridge_queue_oldest_age_seconds", &[("endpoint", "down")])
                    .await
                    >= 1.0
        },
    )
    .await;

    // The refused attempt logs an error kind and no HTTP status.
    let failed = log_lines(&bridge, "attempt failed; will retry");
    let first = failed
        .first()
        .unwrap_or_else(|| panic!("{}", bridge.logs()));
    assert_eq!(first["error_kind"], "connect", "{first}");
    assert!(
        first.get("status").is_none(),
        "no status without an answer: {first}"
    );
    // Log fields use the config's spelling.
    let running = log_lines(&bridge, "bridge running");
    assert_eq!(running[0]["durability"], "redis", "{}", running[0]);

    // Shutdown says what stays queued in Redis.
    bridge.stop(T).await;
    let left = log_lines(&bridge, "stays queued in Redis");
    let down = left
        .iter()
        .find(|l| l["endpoint"] == "down")
        .unwrap_or_else(|| panic!("no shutdown count for endpoint down\n{}", bridge.logs()));
    assert_eq!(down["not_delivered"], 6, "{down}");
    assert_eq!(down["retry_scheduled"], 1, "{down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_succeeds_after_failed_attempts_logs_one_info_line() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    rx.script(vec![Reply::status(503), Reply::status(503)]);
    let config = base_toml(&redis, "t-recovered") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    rx.wait_for_count(3, T).await;
    wait_until(T, "the recovery is logged", || async {
        !log_lines(&bridge, "delivered after failed attempts").is_empty()
    })
    .await;
    let lines = log_lines(&bridge, "delivered after failed attempts");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["level"], "INFO", "{l}");
    assert_eq!(l["endpoint"], "site", "{l}");
    assert_eq!(l["attempts"], 3, "{l}");
    assert_eq!(l["status"], 200, "{l}");
    // Two retries of about 100 ms and 200 ms (±20 %) came before it.
    assert!(l["total_ms"].as_u64() >= Some(200), "{l}");
    let failed = log_lines(&bridge, "attempt failed; will retry");
    assert!(
        failed
            .iter()
            .all(|f| f["status"] == 503 && f.get("error_kind").is_none()),
        "an answered attempt has a status and no error kind: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connection_errors_name_the_redis_address_without_its_password() {
    let mut redis = RedisServer::start_with_password("pw-not-for-logs");
    let rx = Receiver::start().await;
    let config =
        base_toml(&redis, "t-redis-address") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    redis.kill();
    wait_until(T, "the lost subscription is logged", || async {
        !log_lines(&bridge, "lost the Redis subscription; reconnecting").is_empty()
    })
    .await;
    let lost = &log_lines(&bridge, "lost the Redis subscription; reconnecting")[0];
    let addr = lost["redis"]
        .as_str()
        .unwrap_or_else(|| panic!("no redis field: {lost}"));
    assert!(
        addr.contains(&format!("127.0.0.1:{}", redis.port)),
        "{lost}"
    );
    assert!(
        !bridge.full_logs().contains("pw-not-for-logs"),
        "{}",
        bridge.logs()
    );
    // The commands say which Redis they could not reach, too.
    for cmd in [&["status"][..], &["pause"], &["resume"]] {
        let out = bridge.cli(cmd, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd:?} without Redis fails");
        assert!(
            err.contains(&format!("127.0.0.1:{}", redis.port)) && !err.contains("pw-not-for-logs"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn every_command_with_machine_output_takes_format_json_and_its_json_alias() {
    for cmd in [
        &["status"][..],
        &["dlq", "list"],
        &["dlq", "show"],
        &["migrate", "plan"],
        &["migrate", "validate"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run_cli(&args, &[]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        assert!(
            help.contains("--format") && help.contains("--json"),
            "{cmd:?} takes --format and --json:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_and_the_admin_status_agree_key_by_key() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config =
        base_toml(&redis, "t-one-vocabulary") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;
    // The queue gauges exist, at zero, before the first message.
    let metrics = bridge.metrics_text().await;
    assert_eq!(
        metric_counts(&metrics, "site"),
        vec![0, 0, 0, 0],
        "{metrics}"
    );
    assert_eq!(
        metric_in(
            &metrics,
            "bridge_queue_oldest_age_seconds",
            &[("endpoint", "site")]
        ),
        Some(0.0),
        "{metrics}"
    );
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    rx.wait_for_count(1, T).await;
    let out = bridge.cli(&["pause", "--reason", "receiver deploy"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    wait_until(T, "/status shows the pause", || async {
        bridge.status_json().await["paused"].is_object()
    })
    .await;
    wait_until(T, "the delivery is acknowledged in the queue", || async {
        bridge.endpoint_status("site").await["not_delivered"] == 0
    })
    .await;

    let admin = bridge.status_json().await;
    let cli = cli_status(&bridge, &["--format", "json"]);
    let (a, c) = (admin.as_object().unwrap(), cli.as_object().unwrap());
    let shared: Vec<&String> = a.keys().filter(|k| c.contains_key(*k)).collect();
    for must in ["version", "paused", "sources", "endpoints"] {
        assert!(
            shared.iter().any(|k| *k == must),
            "both have {must}: {shared:?}"
        );
    }
    for k in &shared {
        match k.as_str() {
            "sources" | "endpoints" => {}
            _ => assert_eq!(a[*k], c[*k], "{k}: /status {} vs status {}", a[*k], c[*k]),
        }
    }
    assert_eq!(admin["paused"]["reason"], "receiver deploy", "{admin}");
    // Sources and endpoints: every field both show has the same value (and so type).
    for list in ["sources", "endpoints"] {
        for item in admin[list].as_array().unwrap() {
            let name = item["name"].as_str().unwrap();
            let other = named(&cli[list], name);
            let mut same = 0;
            for (k, v) in item.as_object().unwrap() {
                if let Some(w) = other.get(k) {
                    assert_eq!(v, w, "{list}.{name}.{k}: /status {v} vs status {w}");
                    same += 1;
                }
            }
            assert!(
                same >= 2,
                "{list}.{name} shares its name and more: {item} / {other}"
            );
        }
    }
    // Structured, not prose: the source channel's subscribers are a number.
    let source = &cli["sources"][0];
    assert_eq!(
        source["channels"][0]["channel"], DEFAULT_CHANNEL,
        "{source}"
    );
    assert!(
        source["channels"][0]["subscribers"].as_u64() >= Some(1),
        "{source}"
    );

    // Durations print as the config writes them.
    let out = bridge.cli(&["check-config"], &[]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("dedupe_window = \"24h\""), "{printed}");
    let out = bridge.cli(&["resume"], &[]);
    assert!(out.status.success(), "{}", show(&out));
}
