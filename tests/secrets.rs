//! Secrets never leave the process: a whole run with retries, a dead letter and debug
//! logging, then every surface an operator sees is searched for the secret values.

mod common;

use common::*;

const ENDPOINT_SECRET: &str = "hook-SECRET-9d2b7e44c1";
const LITERAL_SECRET: &str = "literal-SECRET-5a83f0d2";
const REDIS_PASSWORD: &str = "rds-PASS-5f0e8a1c77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_never_shows_a_secret_in_logs_status_metrics_or_check_config() {
    let mut redis = RedisServer::start_with_password(REDIS_PASSWORD);
    assert!(redis.url().contains(REDIS_PASSWORD));
    let rx = Receiver::start().await;
    // One retried delivery, one dead letter, the rest delivered.
    rx.script(vec![Reply::status(503), Reply::status(400)]);
    let config = base_toml(&redis, "t-secrets").replace("level = \"info\"", "level = \"debug\"")
        + &endpoint_toml(
            "from-env",
            &rx.url("/env"),
            "secrets = [\"env:HOOK_SECRET_FOR_TEST\"]",
        )
        + &endpoint_toml(
            "literal",
            &rx.url("/literal"),
            &format!("secrets = [\"{LITERAL_SECRET}\"]\nchannels = [\"nothing-matches\"]"),
        );
    let envs = [("HOOK_SECRET_FOR_TEST", ENDPOINT_SECRET)];
    let bridge = Bridge::start_with_env(&config, &envs).await;

    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    redis.publish(DEFAULT_CHANNEL, "not json").await;
    wait_until(PATIENCE, "2 delivered and 1 dead-lettered", || async {
        let ep = bridge.endpoint_status("from-env").await;
        ep["delivered"] == 2 && ep["dead_lettered"] == 1
    })
    .await;
    assert_eq!(
        bridge.dlq_entries(&envs).len(),
        2,
        "the 400 and the non-JSON message"
    );

    let mut surfaces = vec![
        ("/status", bridge.status_json().await.to_string()),
        ("/metrics", bridge.metrics_text().await),
    ];
    let out = bridge.cli(&["check-config"], &envs);
    assert!(out.status.success(), "{}", show(&out));
    surfaces.push(("check-config", show(&out)));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(":***@127.0.0.1"),
        "check-config shows the redis URL redacted: {}",
        show(&out)
    );
    surfaces.push(("dlq list", show(&bridge.cli(&["dlq", "list"], &envs))));

    // Losing Redis makes the bridge log the Redis URL: it must come out redacted.
    redis.kill();
    wait_until(
        PATIENCE,
        "the bridge logs that it cannot reach Redis",
        || async { bridge.full_logs().contains(":***@127.0.0.1") },
    )
    .await;
    redis.restart();
    bridge.wait_ready().await;

    bridge.sigterm();
    let status = bridge.wait_exit(PATIENCE).await;
    assert!(status.success(), "{status}\n{}", bridge.logs());
    let logs = bridge.full_logs();
    // The run did log its failures; the search below is not over an empty file.
    for expected in [
        "attempt failed; will retry",
        "delivery dead-lettered",
        "DEBUG",
    ] {
        assert!(logs.contains(expected), "the log has `{expected}`");
    }
    surfaces.push(("the bridge's stdout and stderr", logs));

    for (name, text) in &surfaces {
        for secret in [ENDPOINT_SECRET, LITERAL_SECRET, REDIS_PASSWORD] {
            if let Some(at) = text.find(secret) {
                let from = at.saturating_sub(300);
                let to = (at + 300).min(text.len());
                panic!(
                    "{name} contains the secret `{secret}`:\n…{}…",
                    String::from_utf8_lossy(&text.as_bytes()[from..to])
                );
            }
        }
    }
}
