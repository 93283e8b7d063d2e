//! Per-endpoint `filter` and `transform` end to end: a real redis-server, the real binary,
//! a real HTTP receiver. Filters pass and block by content; receivers get the transformed
//! body, signed over the bytes sent, with the original message's idempotency key and event
//! type; a failing filter or transform dead-letters the message for its endpoint with the
//! expression's error, and fixing the config then `dlq replay` delivers it; invalid
//! expressions stop `check-config` with exit 78; `check-config` shows the expressions and
//! `check-config --try FILE` what each endpoint would receive.

mod common;

use std::time::SystemTime;

use common::*;
use redis_webhook_bridge::config::Secret;
use redis_webhook_bridge::delivery::signing::{self, Scheme};
use redis_webhook_bridge::expr::Transform;

/// The shipped transform to the registry's `model_registered` event.
const MODEL_REGISTERED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/transforms/model_registered.jq"
);

/// A model-ready message with `fields` added (a JSON object's members, without braces).
fn model_message(n: u32, fields: &str) -> String {
    let sep = if fields.is_empty() { "" } else { "," };
    format!(
        r#"{{"model_id":"m-{n}","token_symbol":"TOK-{n}","mlflow_run_id":"run-{n}","model_version":"{n}","timestamp":"2026-11-28T15:00:0{n}"{sep}{fields}}}"#
    )
}

/// `[delivery] durability = …` before the rest of a test config.
fn with_durability(durability: &str, rest: &str) -> String {
    format!("{rest}\n[delivery]\ndurability = \"{durability}\"\n")
}

/// Asserts that `req`'s hokusai-v2 signature verifies over the body it carried.
#[track_caller]
fn assert_signed_over_its_body(req: &Recorded, secret: &str) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let secrets = [Secret::from_bytes(secret)];
    signing::verify(
        Some(Scheme::HokusaiV2),
        &req.headers,
        &req.body,
        &secrets,
        now,
        300,
    )
    .unwrap_or_else(|e| panic!("the signature does not cover the body sent: {e}"));
}

async fn config_version(b: &Bridge) -> u64 {
    b.status_json().await["config_version"]
        .as_u64()
        .unwrap_or(0)
}

/// `dlq replay --all` with the bridge's config file, which must succeed; its stdout and
/// stderr (where entries left in place are named).
fn replay_all(bridge: &Bridge) -> String {
    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    assert!(out.status.success(), "dlq replay failed: {}", show(&out));
    show(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_passes_and_blocks_messages_by_content_for_its_endpoint_only() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-filter")
        + &endpoint_toml(
            "better",
            &rx.url("/better"),
            "filter = '.current_value > .baseline_value'",
        )
        + &endpoint_toml("all", &rx.url("/all"), "");
    let bridge = Bridge::start(&config).await;

    for (n, current) in [(1, 0.9), (2, 0.7), (3, 0.95)] {
        let m = model_message(
            n,
            &format!(r#""baseline_value":0.8,"current_value":{current}"#),
        );
        redis.publish(DEFAULT_CHANNEL, m).await;
    }
    rx.wait_for_count(5, PATIENCE).await;
    wait_until(PATIENCE, "the blocked message counted", || async {
        bridge
            .metric_value("bridge_filtered_out_total", &[("endpoint", "better")])
            .await
            >= 1.0
    })
    .await;
    let ids = |path: &str| -> Vec<String> {
        let mut v: Vec<String> = rx
            .requests_to(path)
            .iter()
            .map(|r| r.json()["model_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids("/better"), ["m-1", "m-3"], "{}", bridge.logs());
    assert_eq!(ids("/all"), ["m-1", "m-2", "m-3"]);
    let text = bridge.metrics_text().await;
    for name in [
        "bridge_filtered_out_total",
        "bridge_filter_failures_total",
        "bridge_transform_failures_total",
    ] {
        assert_eq!(
            metric_in(&text, name, &[("endpoint", "all")]),
            Some(0.0),
            "{name} exists at zero for every endpoint:\n{text}"
        );
    }
    assert_eq!(
        metric_in(
            &text,
            "bridge_filtered_out_total",
            &[("endpoint", "better")]
        ),
        Some(1.0)
    );
    assert_eq!(bridge.dlq_entries(&[]).len(), 0, "blocking is not an error");
}

/// The shipped `model_registered` transform on one endpoint, none on another: the first
/// gets the transform's output, signed over it, the second the message as published, and
/// both the same idempotency key and event type.
async fn the_transformed_body_arrives_signed(durability: &str) {
    let f = fixtures();
    let body = f["model_ready_message"]["body"].as_str().unwrap();
    let key = f["model_ready_message"]["idempotency_key"]
        .as_str()
        .unwrap();
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = with_durability(
        durability,
        &(base_toml(&redis, &format!("t-transform-{durability}"))
            + &endpoint_toml(
                "site",
                &rx.url("/site"),
                &format!("secrets = [\"site-secret\"]\ntransform_file = \"{MODEL_REGISTERED}\""),
            )
            + &endpoint_toml("raw", &rx.url("/raw"), "")),
    );
    let bridge = Bridge::start(&config).await;

    redis.publish(DEFAULT_CHANNEL, body).await;
    rx.wait_for_count(2, PATIENCE).await;
    let site = rx.requests_to("/site").pop().expect("a request to /site");
    let raw = rx.requests_to("/raw").pop().expect("a request to /raw");
    let transform =
        Transform::compile(&std::fs::read_to_string(MODEL_REGISTERED).unwrap()).unwrap();
    let expected = transform.apply(body.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&site.body),
        String::from_utf8_lossy(&expected),
        "{}",
        bridge.logs()
    );
    assert_eq!(site.json()["event_type"], "model_registered");
    assert_eq!(site.json()["model"]["id"], "demo-token");
    assert_eq!(
        &raw.body[..],
        body.as_bytes(),
        "no transform: the body as published"
    );
    assert_eq!(
        site.idempotency_key(),
        key,
        "the key of the original message"
    );
    assert_eq!(raw.idempotency_key(), key);
    assert_eq!(
        site.header("x-hokusai-event"),
        raw.header("x-hokusai-event")
    );
    assert_eq!(site.header("content-length"), expected.len().to_string());
    assert_signed_over_its_body(&site, "site-secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durable_queues_the_receiver_gets_the_transformed_body_signed_with_the_original_key() {
    the_transformed_body_arrives_signed("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_queues_the_receiver_gets_the_transformed_body_signed_with_the_original_key() {
    the_transformed_body_arrives_signed("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transform_dead_letters_the_message_and_after_a_reload_replay_delivers_it() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let base = base_toml(&redis, "t-transform-fails");
    let site = |transform: &str| {
        endpoint_toml(
            "site",
            &rx.url("/site"),
            &format!("secrets = [\"site-secret\"]\ntransform = '{transform}'"),
        )
    };
    let broken = format!(
        "{base}{}",
        site("{id: .model_id, name: (.model_name | ascii_downcase)}")
    );
    let bridge = Bridge::start(&broken).await;

    redis.publish(DEFAULT_CHANNEL, model_message(1, "")).await;
    let entries = bridge
        .wait_for_dlq_entries(1, "the message dead-lettered")
        .await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    let key = e["idempotency_key"].as_str().unwrap().to_string();
    assert!(!key.is_empty());
    assert_eq!(e["endpoint"], "site");
    assert_eq!(e["stage"], "transform");
    let error = e["error"].as_str().unwrap();
    assert!(
        error.starts_with("transform failed: expression failed:") && error.contains("null"),
        "the expression's error is the reason: {error}"
    );
    assert_eq!(
        e["body"].as_str().unwrap(),
        model_message(1, ""),
        "the entry keeps the original message"
    );
    assert_eq!(
        bridge
            .metric_value("bridge_transform_failures_total", &[("endpoint", "site")])
            .await,
        1.0
    );
    assert!(
        rx.requests().is_empty(),
        "nothing is sent for a failed transform"
    );

    // Fixed: a missing name is "unnamed". The reload recompiles it for new messages…
    let fixed = format!(
        "{base}{}",
        site("{id: .model_id, name: (.model_name // \"unnamed\")}")
    );
    std::fs::write(bridge.config_path(), &fixed).unwrap();
    bridge.sighup();
    wait_until(PATIENCE, "the fixed config running", || async {
        config_version(&bridge).await >= 2
    })
    .await;
    redis.publish(DEFAULT_CHANNEL, model_message(2, "")).await;
    let got = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(
        got[0].json(),
        serde_json::json!({"id": "m-2", "name": "unnamed"})
    );

    // …and replay runs it over the dead-lettered one.
    let out = replay_all(&bridge);
    let got = rx.wait_for_count(2, PATIENCE).await;
    assert_eq!(
        got[1].json(),
        serde_json::json!({"id": "m-1", "name": "unnamed"}),
        "{out}"
    );
    assert_eq!(got[1].idempotency_key(), key, "the original message's key");
    assert_signed_over_its_body(&got[1], "site-secret");
    assert_eq!(
        bridge.dlq_entries(&[]).len(),
        0,
        "the replayed entry is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_filter_dead_letters_the_message_for_its_endpoint_and_replay_reruns_the_fixed_filter()
 {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let base = base_toml(&redis, "t-filter-fails");
    let config = |filter: &str| {
        format!(
            "{base}{}{}",
            endpoint_toml("picky", &rx.url("/picky"), &format!("filter = '{filter}'")),
            endpoint_toml("all", &rx.url("/all"), "")
        )
    };
    let bridge = Bridge::start(&config("(.tags.user_id | ascii_downcase) == \"u1\"")).await;

    redis.publish(DEFAULT_CHANNEL, model_message(1, "")).await;
    let entries = bridge
        .wait_for_dlq_entries(1, "the message dead-lettered")
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["endpoint"], "picky");
    assert_eq!(entries[0]["stage"], "filter");
    let error = entries[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("filter failed: expression failed:"),
        "{error}"
    );
    rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(
        rx.requests_to("/all").len(),
        1,
        "the other endpoint still gets it"
    );
    assert_eq!(
        bridge
            .metric_value("bridge_filter_failures_total", &[("endpoint", "picky")])
            .await,
        1.0
    );

    // Fixed so that it passes the message; replay reads the config file as it is now.
    std::fs::write(bridge.config_path(), config(".token_symbol == \"TOK-1\"")).unwrap();
    let out = replay_all(&bridge);
    let got = rx.wait_for_count(2, PATIENCE).await;
    let picky = rx.requests_to("/picky");
    assert_eq!(picky.len(), 1, "{out}\n{got:?}");
    assert_eq!(picky[0].json()["model_id"], "m-1");
    assert_eq!(bridge.dlq_entries(&[]).len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_leaves_an_entry_in_place_while_the_filter_still_fails_or_now_blocks_it() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let base = base_toml(&redis, "t-filter-replay");
    let config = |filter: &str| {
        format!(
            "{base}{}",
            endpoint_toml("picky", &rx.url("/picky"), &format!("filter = '{filter}'"))
        )
    };
    let bridge = Bridge::start(&config("error(\"not yet\")")).await;
    redis.publish(DEFAULT_CHANNEL, model_message(1, "")).await;
    bridge
        .wait_for_dlq_entries(1, "the message dead-lettered")
        .await;

    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an entry left in place: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "skipped: the filter of endpoint `picky` still fails (expression failed: \"not yet\"); left in place"
        ),
        "{}",
        show(&out)
    );
    std::fs::write(bridge.config_path(), config(".token_symbol == \"other\"")).unwrap();
    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an entry left in place: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("skipped: the filter of endpoint `picky` keeps it out now; left in place"),
        "{}",
        show(&out)
    );
    assert_eq!(bridge.dlq_entries(&[]).len(), 1, "still there");
    assert!(rx.requests().is_empty());
}

/// Runs the binary with `config` written to `bridge.toml` in a directory of its own (with
/// `files` beside it) and `args` after `--config`.
fn with_config(config: &str, files: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, config).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let mut full = vec!["--config", path.to_str().unwrap()];
    full.extend_from_slice(args);
    run_cli(&full, &[])
}

#[test]
fn an_invalid_filter_or_transform_exits_78_naming_the_endpoint_and_the_position() {
    let filter = endpoint_toml(
        "site",
        "https://example.com/hook",
        "filter = '.current_value >'",
    );
    let out = with_config(&filter, &[], &["check-config"]);
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config key `endpoints[0].filter`")
            && stderr.contains(
                "endpoint `site`: the filter does not compile: syntax error at column 17"
            ),
        "{}",
        show(&out)
    );

    let file = endpoint_toml(
        "site",
        "https://example.com/hook",
        "transform_file = 'shape.jq'",
    );
    let out = with_config(
        &file,
        &[("shape.jq", "{\n  id: .model_id\n  name: .model_name\n}")],
        &["check-config"],
    );
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config key `endpoints[0].transform_file`")
            && stderr.contains("shape.jq does not compile: syntax error at line 3, column 3"),
        "{}",
        show(&out)
    );
}

#[test]
fn check_config_shows_each_endpoints_filter_and_transform() {
    let config = endpoint_toml(
        "site",
        "https://example.com/hook",
        "filter = '.status == \"ready\"'\ntransform_file = 'shape.jq'",
    ) + &endpoint_toml("raw", "https://example.com/raw", "");
    let out = with_config(
        &config,
        &[("shape.jq", "{id: .model_id}\n")],
        &["check-config"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let shown: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let endpoints = shown["endpoints"].as_array().unwrap();
    assert_eq!(
        endpoints[0]["filter"].as_str(),
        Some(".status == \"ready\"")
    );
    assert_eq!(
        endpoints[0]["transform"].as_str(),
        Some("{id: .model_id}\n")
    );
    assert!(
        endpoints[0]["transform_file"]
            .as_str()
            .unwrap()
            .ends_with("/shape.jq"),
        "read beside the config file: {}",
        show(&out)
    );
    assert!(endpoints[1].get("filter").is_none() && endpoints[1].get("transform").is_none());
}

#[test]
fn check_config_try_shows_what_each_endpoint_would_receive_for_a_message() {
    let model_registered = std::fs::read_to_string(MODEL_REGISTERED).unwrap();
    let config = endpoint_toml(
        "site",
        "https://example.com/site",
        "filter = '.current_value > .baseline_value'\ntransform_file = 'model_registered.jq'",
    ) + &endpoint_toml("raw", "https://example.com/raw", "")
        + &endpoint_toml(
            "picky",
            "https://example.com/picky",
            "filter = '.token_symbol == \"OTHER\"'",
        )
        + &endpoint_toml(
            "broken",
            "https://example.com/broken",
            "transform = '.tags.user_id | ascii_downcase'",
        );
    let f = fixtures();
    let body = f["model_ready_message"]["body"].as_str().unwrap();
    let key = f["model_ready_message"]["idempotency_key"]
        .as_str()
        .unwrap();
    let tmp = tempfile::TempDir::new().unwrap();
    let message = tmp.path().join("message.json");
    std::fs::write(&message, body).unwrap();
    let files = [("model_registered.jq", model_registered.as_str())];
    let out = with_config(
        &config,
        &files,
        &["check-config", "--try", message.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a transform fails: {}",
        show(&out)
    );
    let transformed = Transform::compile(&model_registered)
        .unwrap()
        .apply(body.as_bytes())
        .unwrap();
    let expected = format!(
        "message on `hokusai:model_ready_queue:pubsub`: idempotency key {key}, event type hokusai:model_ready_queue:pubsub\n\
         endpoint `site`: receives (transformed)\n{}\n\
         endpoint `raw`: receives\n{body}\n\
         endpoint `picky`: kept out by its filter\n\
         endpoint `broken`: dead-lettered: transform failed: expression failed: cannot use null as string\n",
        String::from_utf8_lossy(&transformed)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        show(&out)
    );
}
