//! The console's JSON API against a real bridge, Redis and receiver, driven as `curl` would:
//! read-only without a token, every read and change guarded with one, cross-site requests
//! refused, and dead letters listed, shown, replayed and purged through the same library
//! code as `dlq replay` and `dlq purge`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "console-token-canary-9f3e1c";
const T: Duration = PATIENCE;

fn with_token(config: String) -> String {
    config.replace(
        "[admin]\n",
        "[admin]\ntoken = \"env:CONSOLE_ADMIN_TOKEN\"\n",
    )
}

async fn start_with_token(config: String) -> Bridge {
    Bridge::start_with_env(&with_token(config), &[("CONSOLE_ADMIN_TOKEN", TOKEN)]).await
}

/// GET `path` with an optional bearer token: status and JSON body (null if not JSON).
async fn get(bridge: &Bridge, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}{path}", bridge.admin_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("GET");
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_slice(&res.bytes().await.unwrap_or_default()).unwrap_or(Value::Null),
    )
}

/// POST `body` as JSON to `path` with an optional bearer token.
async fn post(bridge: &Bridge, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http()
        .post(format!("{}{path}", bridge.admin_url()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("POST");
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_slice(&res.bytes().await.unwrap_or_default()).unwrap_or(Value::Null),
    )
}

fn dead_letters_of(list: &Value) -> Vec<Value> {
    list["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_console_shows_everything_and_refuses_every_change() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let config =
        base_toml(&redis, "t-console-open") + &endpoint_toml("site", &receiver.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let page = http()
        .get(format!("{}/", bridge.admin_url()))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.headers().get("set-cookie").is_none(),
        "the console sets no cookie"
    );
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("/console.js"), "{html}");

    let (status, overview) = get(&bridge, "/api/overview", None).await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["read_only"], true);
    assert_eq!(overview["endpoints"][0]["name"], "site");
    assert_eq!(overview["endpoints"][0]["circuit"], "closed");
    assert_eq!(overview["sources"][0]["connected"], true, "{overview}");

    for (path, body) in [
        ("/api/dead-letters/replay", json!({"all": true})),
        (
            "/api/dead-letters/purge",
            json!({"all": true, "confirm": true}),
        ),
        ("/api/pause", json!({"reason": "test"})),
        ("/api/resume", json!({})),
    ] {
        let (status, answer) = post(&bridge, path, None, body).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("[admin] token"),
            "{path}: the refusal says what enables it: {answer}"
        );
    }
    let paused: bool = redis::cmd("EXISTS")
        .arg("t-console-open:paused")
        .query_async(&mut redis.conn().await)
        .await
        .expect("EXISTS");
    assert!(!paused, "nothing was paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_read_and_change_needs_it_and_cross_site_changes_are_refused() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let config =
        base_toml(&redis, "t-console-token") + &endpoint_toml("site", &receiver.url("/hook"), "");
    let bridge = start_with_token(config).await;

    assert_eq!(get(&bridge, "/api/overview", None).await.0, 401);
    assert_eq!(get(&bridge, "/api/overview", Some("wrong")).await.0, 401);
    assert_eq!(get(&bridge, "/api/dead-letters", None).await.0, 401);
    let (status, overview) = get(&bridge, "/api/overview", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(overview["read_only"], false);
    // The page itself holds no data and loads without the token.
    assert_eq!(
        http()
            .get(format!("{}/console.js", bridge.admin_url()))
            .send()
            .await
            .expect("GET /console.js")
            .status()
            .as_u16(),
        200
    );

    assert_eq!(post(&bridge, "/api/pause", None, json!({})).await.0, 401);
    let pause = format!("{}/api/pause", bridge.admin_url());
    let cross_origin = http()
        .post(&pause)
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.test")
        .header("content-type", "application/json")
        .body(json!({"reason": "x"}).to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_origin.status().as_u16(), 403, "another origin");
    let cross_site = http()
        .post(&pause)
        .bearer_auth(TOKEN)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/json")
        .body(json!({"reason": "x"}).to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(cross_site.status().as_u16(), 403, "a cross-site fetch");
    let form = http()
        .post(&pause)
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .expect("POST");
    assert_eq!(form.status().as_u16(), 415, "a form post");
    let (_, overview) = get(&bridge, "/api/overview", Some(TOKEN)).await;
    assert!(
        overview["paused"].is_null(),
        "none of those paused: {overview}"
    );

    let (status, paused) = post(
        &bridge,
        "/api/pause",
        Some(TOKEN),
        json!({"reason": "receiver maintenance"}),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["by"], "console@127.0.0.1");
    wait_until(
        T,
        "the overview shows the pause with its reason",
        || async {
            let (_, o) = get(&bridge, "/api/overview", Some(TOKEN)).await;
            o["paused"]["reason"] == "receiver maintenance"
        },
    )
    .await;
    // The same flag as the `status` command reads.
    let cli = bridge.cli(
        &["status", "--format", "json"],
        &[("CONSOLE_ADMIN_TOKEN", TOKEN)],
    );
    assert!(
        show(&cli).contains("receiver maintenance"),
        "{}",
        show(&cli)
    );

    let (status, resumed) = post(&bridge, "/api/resume", Some(TOKEN), json!({})).await;
    assert_eq!((status, resumed["resumed"].clone()), (200, json!(true)));
    wait_until(T, "the overview shows deliveries running", || async {
        get(&bridge, "/api/overview", Some(TOKEN)).await.1["paused"].is_null()
    })
    .await;

    for text in [
        get(&bridge, "/api/overview", Some(TOKEN))
            .await
            .1
            .to_string(),
        get(&bridge, "/api/overview", None).await.1.to_string(),
    ] {
        assert!(!text.contains(TOKEN), "the token is never echoed: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_found_by_filter_shown_in_full_replayed_once_fixed_and_another_purged() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::status(500));
    let config = base_toml(&redis, "t-console-dlq")
        + &endpoint_toml("site", &receiver.url("/hook"), "max_retries = 0\n")
        + &endpoint_toml("other", &receiver.url("/other"), "");
    let bridge = start_with_token(config).await;

    redis
        .publish(
            DEFAULT_CHANNEL,
            r#"{"event_type":"model.ready","model_id":"m-1"}"#,
        )
        .await;
    wait_until(T, "the failed delivery is dead-lettered", || async {
        let (_, list) = get(&bridge, "/api/dead-letters?endpoint=site", Some(TOKEN)).await;
        dead_letters_of(&list).len() == 1
    })
    .await;
    let (_, list) = get(
        &bridge,
        "/api/dead-letters?endpoint=site&stage=delivery&reason=500",
        Some(TOKEN),
    )
    .await;
    let entries = dead_letters_of(&list);
    assert_eq!(entries.len(), 1, "{list}");
    let id = entries[0]["id"].as_str().expect("id").to_string();
    assert_eq!(entries[0]["last_status"], 500);
    for (query, why) in [
        ("endpoint=other", "another endpoint"),
        ("stage=ingest", "another stage"),
        ("reason=timed%20out", "another reason"),
    ] {
        let (_, other) = get(&bridge, &format!("/api/dead-letters?{query}"), Some(TOKEN)).await;
        assert!(dead_letters_of(&other).is_empty(), "{why}: {other}");
    }
    assert_eq!(
        get(&bridge, "/api/dead-letters?stage=bogus", Some(TOKEN))
            .await
            .0,
        400
    );

    let (status, entry) = get(&bridge, &format!("/api/dead-letters/{id}"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["body_is_json"], true);
    assert!(
        entry["body"]
            .as_str()
            .unwrap_or_default()
            .contains("\n  \"model_id\": \"m-1\""),
        "pretty-printed: {entry}"
    );
    assert_eq!(entry["errors"][0]["last_status"], 500);
    let headers = entry["headers"].to_string();
    assert!(headers.contains("x-hokusai-idempotency-key"), "{headers}");
    assert_eq!(
        get(&bridge, "/api/dead-letters/0-1", Some(TOKEN)).await.0,
        404
    );

    // Fixed: the replay delivers it and removes the entry.
    receiver.set_default(Reply::ok());
    let before = receiver.requests_to("/hook").len();
    let (status, started) = post(
        &bridge,
        "/api/dead-letters/replay",
        Some(TOKEN),
        json!({"ids": [id]}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    wait_until(
        T,
        "the replay reports one delivered and finishes",
        || async {
            let (_, replays) = get(&bridge, "/api/replays", Some(TOKEN)).await;
            replays[0]["finished"] == true && replays[0]["delivered"] == 1
        },
    )
    .await;
    let after = receiver.requests_to("/hook");
    assert_eq!(after.len(), before + 1, "delivered once more");
    assert_eq!(after[before].json()["model_id"], "m-1");
    let (_, list) = get(&bridge, "/api/dead-letters?endpoint=site", Some(TOKEN)).await;
    assert!(
        dead_letters_of(&list).is_empty(),
        "the replayed entry is gone: {list}"
    );

    // Another failure, purged: only with confirmation.
    receiver.set_default(Reply::status(500));
    redis
        .publish(
            DEFAULT_CHANNEL,
            r#"{"event_type":"model.ready","model_id":"m-2"}"#,
        )
        .await;
    wait_until(T, "the second failure is dead-lettered", || async {
        let (_, list) = get(&bridge, "/api/dead-letters?endpoint=site", Some(TOKEN)).await;
        dead_letters_of(&list).len() == 1
    })
    .await;
    let all_of_site = json!({"all": true, "endpoint": "site"});
    assert_eq!(
        post(
            &bridge,
            "/api/dead-letters/purge",
            Some(TOKEN),
            all_of_site.clone()
        )
        .await
        .0,
        400,
        "no confirmation, no purge"
    );
    let mut confirmed = all_of_site;
    confirmed["confirm"] = json!(true);
    let (status, purged) = post(&bridge, "/api/dead-letters/purge", Some(TOKEN), confirmed).await;
    assert_eq!(
        (status, purged["purged"].clone()),
        (200, json!(1)),
        "{purged}"
    );
    let (_, list) = get(&bridge, "/api/dead-letters?endpoint=site", Some(TOKEN)).await;
    assert!(dead_letters_of(&list).is_empty(), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_ledger_parity_legacy_subscribers_and_no_credentials() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    // A credential the endpoint sends, which no view may show.
    let config = base_toml(&redis, "t-console-parity")
        + &endpoint_toml(
            "site",
            &receiver.url("/hook"),
            "headers = { Authorization = \"Bearer hook-pass-canary\" }\n",
        );
    let bridge = start_with_token(config).await;
    // A legacy consumer still reading the channel.
    let mut legacy = redis.client().get_async_pubsub().await.expect("pubsub");
    legacy.subscribe(DEFAULT_CHANNEL).await.expect("subscribe");

    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    receiver.wait_for_count(3, T).await;
    wait_until(
        T,
        "the parity counts 3 journaled and 3 delivered",
        || async {
            let (_, o) = get(&bridge, "/api/overview", Some(TOKEN)).await;
            let p = &o["parity"]["endpoints"][0];
            p["journaled"] == 3 && p["delivered"] == 3 && p["dead_lettered"] == 0
        },
    )
    .await;
    let (_, o) = get(&bridge, "/api/overview", Some(TOKEN)).await;
    assert_eq!(o["parity"]["window_seconds"], 300);
    assert_eq!(
        o["legacy_subscribers"][0]["channel"], DEFAULT_CHANNEL,
        "{o}"
    );
    assert_eq!(o["legacy_subscribers"][0]["subscribers"], 1, "{o}");
    assert_eq!(o["endpoints"][0]["delivered"], 3);
    let text = o.to_string();
    assert!(!text.contains("hook-pass-canary"), "{text}");
    assert!(!text.contains("test-secret-site"), "{text}");
}
