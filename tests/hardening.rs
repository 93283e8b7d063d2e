//! Regression tests for the attacks of the second security round (docs/SECURITY.md, threat
//! model): each test reproduces the attack against the real binary — real `redis-server`,
//! real HTTP servers, real sockets — and shows the defence holds.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::{
    Bridge, DEFAULT_CHANNEL, ReceiveCmd, Receiver, RedisServer, base_toml, endpoint_toml, http,
    message, run_cli, show, wait_until,
};

/// An endpoint for bridges that are never sent a message.
const UNUSED_ENDPOINT: &str = "http://127.0.0.1:9/hook";
const PATIENCE: Duration = Duration::from_secs(20);

const V2_SECRET: &str = "hardening-v2-secret-0123456789abcdef";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `sign --scheme hokusai-v2` over the body in `body_file`; returns the `(name, value)` lines.
fn sign_v2(body_file: &Path, nonce: &str, timestamp: u64) -> Vec<(String, String)> {
    let out = run_cli(
        &[
            "sign",
            "--secret",
            V2_SECRET,
            "--scheme",
            "hokusai-v2",
            "--body",
            body_file.to_str().expect("UTF-8 path"),
            "--nonce",
            nonce,
            "--timestamp",
            &timestamp.to_string(),
        ],
        &[],
    );
    assert!(out.status.success(), "sign failed:\n{}", show(&out));
    String::from_utf8(out.stdout)
        .expect("UTF-8 headers")
        .lines()
        .map(|l| {
            let (name, value) = l.split_once(": ").expect("`Name: value`");
            (name.to_ascii_lowercase(), value.to_string())
        })
        .collect()
}

/// `verify` with `headers` over the body in `body_file`.
fn verify_cli(headers: &[(String, String)], body_file: &Path) -> std::process::Output {
    let flags: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    let mut args = vec!["verify", "--secret", V2_SECRET];
    for flag in &flags {
        args.extend(["--header", flag]);
    }
    args.extend(["--body", body_file.to_str().expect("UTF-8 path")]);
    run_cli(&args, &[])
}

/// The same headers with the nonce replaced.
fn with_nonce(headers: &[(String, String)], nonce: &str) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let v = if n == "x-hokusai-nonce" { nonce } else { v };
            (n.clone(), v.to_string())
        })
        .collect()
}

/// Attack (point 4): a request signed with nonce `N` over body `B1 + B2` is re-sent with nonce
/// `N.B1` and body `B2` — the MAC input `ts.N.B1B2` is unchanged. The `verify` command and
/// the `receive` server refuse it because the nonce is not a canonical UUID, while the genuine
/// request still verifies. (The library and the documented snippets have their own tests:
/// `signing::tests::rejects_bytes_moved_from_the_body_into_the_nonce` and
/// tests/docs_snippets.rs.)
#[tokio::test]
async fn verify_and_receive_refuse_body_bytes_moved_into_the_nonce() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (b1, b2) = (r#"{"model_id":"m1","#, r#""event_type":"model_ready"}"#);
    let whole = dir.path().join("whole.json");
    let tail = dir.path().join("tail.json");
    std::fs::write(&whole, format!("{b1}{b2}")).expect("write body");
    std::fs::write(&tail, b2).expect("write body");
    let nonce = uuid::Uuid::new_v4().to_string();
    let signed = sign_v2(&whole, &nonce, unix_now());
    let forged = with_nonce(&signed, &format!("{nonce}.{b1}"));
    let uppercase = with_nonce(&signed, &nonce.to_ascii_uppercase());

    // The `verify` command.
    let out = verify_cli(&signed, &whole);
    assert!(out.status.success(), "genuine request:\n{}", show(&out));
    for (what, headers, body) in [
        ("forged", &forged, &tail),
        ("uppercase", &uppercase, &whole),
    ] {
        let out = verify_cli(headers, body);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}:\n{}", show(&out));
        assert!(
            stderr.contains("x-hokusai-nonce header is malformed")
                && stderr.contains("canonical UUID"),
            "{what}: the reason names the nonce:\n{}",
            show(&out)
        );
    }

    // `sign` refuses to produce such a nonce in the first place.
    let out = run_cli(
        &[
            "sign",
            "--secret",
            V2_SECRET,
            "--body",
            whole.to_str().unwrap(),
            "--nonce",
            "n.1",
        ],
        &[],
    );
    assert!(!out.status.success(), "{}", show(&out));

    // The `receive` server: the forgery first (so it cannot be refused as a replay), then
    // the genuine request, which is accepted.
    let rx = ReceiveCmd::start(&["--secret", V2_SECRET, "--scheme", "hokusai-v2"]).await;
    let post = |headers: Vec<(String, String)>, body: &'static str| {
        let mut request = http()
            .post(format!("http://127.0.0.1:{}/hook", rx.port))
            .header("content-type", "application/json")
            .body(body);
        for (n, v) in headers {
            request = request.header(n, v);
        }
        async move { request.send().await.expect("POST to receive") }
    };
    let response = post(forged.clone(), b2).await;
    assert_eq!(response.status().as_u16(), 401);
    let text = response.text().await.unwrap_or_default();
    assert!(text.contains("canonical UUID"), "{text}");
    let response = post(
        uppercase.clone(),
        r#"{"model_id":"m1","event_type":"model_ready"}"#,
    )
    .await;
    assert_eq!(response.status().as_u16(), 401);
    let response = post(
        signed.clone(),
        r#"{"model_id":"m1","event_type":"model_ready"}"#,
    )
    .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "the genuine request is accepted"
    );
    assert_eq!(rx.events().len(), 1, "only the genuine request was printed");
}

/// Attack (point 5): a message with invalid UTF-8 inside a JSON string, and a 100,000-deep
/// nested array, published on a real Redis. serde_json skips both without complaint, so they
/// used to be POSTed as `application/json`. Now each is dead-lettered at ingest with the
/// reason and the endpoint receives only the valid message published after them (one
/// channel, read in order: once it arrived, the two before it were handled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_deep_nesting_are_dead_lettered_not_delivered() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-json-checks") + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let bad_utf8: &[u8] = b"{\"event_type\":\"model.ready\",\"model_id\":\"m\xff\xfe\"}";
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    redis.publish(DEFAULT_CHANNEL, bad_utf8).await;
    redis.publish(DEFAULT_CHANNEL, &deep).await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 7))
        .await;

    let reqs = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(reqs[0].json()["n"], 7, "{}", bridge.logs());
    let entries = bridge
        .wait_for_dlq_entries(2, "the DLQ holds the two rejected messages")
        .await;
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["error"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not valid JSON: invalid UTF-8 at byte 41")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("deeper than security.max_json_depth 128")),
        "{reasons:?}"
    );
    for e in &entries {
        assert_eq!(e["stage"], "ingest", "{e}");
    }
    assert_eq!(rx.requests().len(), 1, "only the valid message was POSTed");

    // Replay applies the same checks: both are skipped with the reason and stay.
    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("still cannot be ingested").count(),
        2,
        "{}",
        show(&out)
    );
    assert_eq!(
        rx.requests().len(),
        1,
        "replay POSTed nothing: {}",
        show(&out)
    );
    assert_eq!(bridge.dlq_entries(&[]).len(), 2, "both entries stay");
}

/// Idle attackers against one HTTP server: `holders` connections that each send half a
/// request header and, as soon as the server closes them, reconnect and do it again — so the
/// connection cap stays exhausted for as long as they run — plus `extra` connections opened
/// once, which wait in the listen backlog behind them.
struct IdleAttack {
    holders: Vec<tokio::task::JoinHandle<()>>,
    _extra: Vec<tokio::net::TcpStream>,
    /// How many times the server closed a holder's half-sent request.
    closed: Arc<AtomicUsize>,
}

const HALF_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: attacker\r\nX-Slow: ";

impl IdleAttack {
    async fn start(addr: SocketAddr, holders: usize, extra: usize) -> Self {
        let closed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..holders {
            let closed = Arc::clone(&closed);
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    if s.write_all(HALF_HEADER).await.is_err() {
                        continue;
                    }
                    // Blocks until the server gives up on the request and closes.
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Let the holders take the slots before the extras queue up behind them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extras = Vec::new();
        for _ in 0..extra {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connect (the kernel completes it from the backlog)");
            s.write_all(HALF_HEADER).await.expect("send half a header");
            extras.push(s);
        }
        Self {
            holders: tasks,
            _extra: extras,
            closed,
        }
    }
}

impl Drop for IdleAttack {
    fn drop(&mut self) {
        for t in &self.holders {
            t.abort();
        }
    }
}

/// Attack (point 3) on the admin server: the bridge runs with 160 open files at most
/// (`RLIMIT_NOFILE`), the admin server with `max_connections = 16` and
/// `header_read_timeout = "1s"`. Sixteen idle clients hold every slot and reconnect the moment
/// they are dropped, and 200 more wait behind them — 216 connections, more than the bridge
/// could give descriptors to. Before the fix every one was accepted and kept, the bridge ran
/// out of descriptors and deliveries failed with "Too many open files".
///
/// Now: the bridge accepts at most 16 (the rest wait in the kernel's backlog, costing it no
/// descriptor), a message published while the attack runs is delivered, the server closes
/// each idle connection after the header timeout, and a `/healthz` request queued behind the
/// whole attack is answered 200 — the idle ones ahead of it time out in turn and slots are
/// handed out in arrival order, so the attackers reconnecting behind it never get ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_holding_every_admin_connection_starve_neither_healthz_nor_deliveries() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-idle-admin").replace(
        "[admin]\n",
        "[admin]\nmax_connections = 16\nheader_read_timeout = \"1s\"\n",
    ) + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start_with_fd_limit(&config, 160).await;
    let admin: SocketAddr = bridge
        .admin_url()
        .trim_start_matches("http://")
        .parse()
        .expect("admin address");

    let attack = IdleAttack::start(admin, 16, 200).await;

    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    let reqs = rx.wait_for_count(1, PATIENCE).await;
    assert_eq!(reqs[0].json()["n"], 1, "{}", bridge.logs());

    let healthz = http()
        .get(format!("{}/healthz", bridge.admin_url()))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz behind the attack: {e}\n{}", bridge.logs()));
    assert_eq!(healthz.status().as_u16(), 200);
    assert!(
        attack.closed.load(Ordering::SeqCst) >= 16,
        "the server closed the idle connections"
    );

    // Still delivering while the attackers keep reconnecting.
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 2))
        .await;
    rx.wait_for_count(2, PATIENCE).await;
    drop(attack);
    let logs = bridge.full_logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(
        bridge.dlq_entries(&[]).is_empty(),
        "nothing was dead-lettered"
    );
}

/// The same attack on `receive` (`--max-connections 4 --header-read-timeout 1s`): a signed
/// request queued behind 4 reconnecting idle clients and 20 more is still accepted, and a
/// client that sends its headers but trickles its body is cut off by
/// `--body-read-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_do_not_starve_receive() {
    let rx = ReceiveCmd::start(&[
        "--secret",
        V2_SECRET,
        "--max-connections",
        "4",
        "--header-read-timeout",
        "1s",
        "--body-read-timeout",
        "1s",
    ])
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], rx.port));

    // A body that never completes: the server answers (or closes) once the deadline passes,
    // though a byte arrives every 200 ms.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .await
    .expect("send headers");
    let trickle = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = slow.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return answer,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if slow.write_all(b" ").await.is_err() {
                        return answer;
                    }
                }
            }
        }
    });
    let answer = tokio::time::timeout(PATIENCE, trickle)
        .await
        .expect("the trickled body was cut off")
        .expect("trickle task");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "a timed-out body gets a 4xx or a closed connection: {answer}"
    );

    let attack = IdleAttack::start(addr, 4, 20).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = r#"{"model_id":"m2","event_type":"model_ready"}"#;
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).expect("write body");
    let mut request = http()
        .post(format!("http://{addr}/hook"))
        .timeout(Duration::from_secs(90))
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in sign_v2(&file, &uuid::Uuid::new_v4().to_string(), unix_now()) {
        request = request.header(n, v);
    }
    let response = request.send().await.expect("POST behind the attack");
    assert_eq!(response.status().as_u16(), 200);
    assert!(attack.closed.load(Ordering::SeqCst) >= 4);
    assert_eq!(rx.events().len(), 1);
}

/// `[admin] token` (point 9): `/status` answers 401 without the bearer token or with a wrong
/// one, 200 with it; `/healthz`, `/readyz` and `/metrics` stay open; every route is
/// read-only (a `POST` is refused). With `protect_metrics`, `/metrics` needs the token too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_requires_the_admin_token_when_one_is_configured() {
    const TOKEN: &str = "admin-token-canary-0123456789";
    let redis = RedisServer::start();
    let config = base_toml(&redis, "t-admin-token").replace(
        "[admin]\n",
        "[admin]\ntoken = \"env:HARDENING_ADMIN_TOKEN\"\n",
    ) + &endpoint_toml("site", UNUSED_ENDPOINT, "");
    let bridge = Bridge::start_with_env(&config, &[("HARDENING_ADMIN_TOKEN", TOKEN)]).await;
    assert_eq!(admin_get(&bridge, "/status", None).await, 401);
    assert_eq!(
        admin_get(&bridge, "/status", Some("wrong-token")).await,
        401
    );
    assert_eq!(
        admin_get(&bridge, "/status", Some(&TOKEN[..TOKEN.len() - 1])).await,
        401
    );
    assert_eq!(admin_get(&bridge, "/status", Some(TOKEN)).await, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            admin_get(&bridge, open, None).await,
            200,
            "{open} stays open"
        );
    }
    let post = http()
        .post(format!("{}/status", bridge.admin_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST /status");
    assert_eq!(post.status().as_u16(), 405, "the admin server is read-only");
    let unauthorized = http()
        .get(format!("{}/status", bridge.admin_url()))
        .send()
        .await
        .expect("GET /status");
    assert_eq!(
        unauthorized.headers()["www-authenticate"],
        "Bearer",
        "401 says which scheme"
    );
    let text = unauthorized.text().await.unwrap_or_default();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        !bridge.full_logs().contains(TOKEN),
        "the token is never logged"
    );
    drop(bridge);

    let protected = base_toml(&redis, "t-admin-token-metrics").replace(
        "[admin]\n",
        "[admin]\ntoken = \"env:HARDENING_ADMIN_TOKEN\"\nprotect_metrics = true\n",
    ) + &endpoint_toml("site", UNUSED_ENDPOINT, "");
    let bridge = Bridge::start_with_env(&protected, &[("HARDENING_ADMIN_TOKEN", TOKEN)]).await;
    assert_eq!(admin_get(&bridge, "/metrics", None).await, 401);
    assert_eq!(admin_get(&bridge, "/metrics", Some(TOKEN)).await, 200);
}

/// The status code of `GET path` on the bridge's admin server, with `token` as bearer.
async fn admin_get(bridge: &Bridge, path: &str, token: Option<&str>) -> u16 {
    let mut request = http().get(format!("{}{path}", bridge.admin_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status()
        .as_u16()
}

/// Without `[admin] token`, `/status` is open, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_open_when_no_admin_token_is_configured() {
    let redis = RedisServer::start();
    let config = base_toml(&redis, "t-admin-open") + &endpoint_toml("site", UNUSED_ENDPOINT, "");
    let bridge = Bridge::start(&config).await;
    let status = http()
        .get(format!("{}/status", bridge.admin_url()))
        .send()
        .await
        .expect("GET /status");
    assert_eq!(status.status().as_u16(), 200);
}

/// Attack (point 6): a list item far larger than `security.max_payload_bytes`. It is
/// dead-lettered as too large, and the DLQ entry holds only the configured prefix of the
/// body plus the whole body's size and SHA-256 — not the body. (Peak memory for a 50 MB item
/// is measured by hand with the release binary; see docs/OPERATIONS.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_item_is_dead_lettered_as_prefix_size_and_digest() {
    use sha2::Digest as _;
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let config = base_toml(&redis, "t-oversized").replace(
        "allow_private_networks = true\n",
        "allow_private_networks = true\nmax_payload_bytes = 1024\n",
    ) + "\n[dlq]\noversized_body_prefix_bytes = 100\n"
        + "\n[[sources]]\nkind = \"list\"\nkey = \"big-items\"\n"
        + &endpoint_toml("site", &rx.url("/hook"), "");
    let bridge = Bridge::start(&config).await;

    let pad = "x".repeat(2_000_000);
    let big = format!(r#"{{"event_type":"model.ready","pad":"{pad}"}}"#);
    let mut conn = redis.conn().await;
    let _: i64 = redis::cmd("LPUSH")
        .arg("big-items")
        .arg(&big)
        .query_async(&mut conn)
        .await
        .expect("LPUSH");

    let entries = bridge
        .wait_for_dlq_entries(1, "the oversized item is dead-lettered")
        .await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains("payload too large"),
        "{e}"
    );
    assert_eq!(e["body"], &big[..100], "the first 100 bytes only");
    assert_eq!(e["body_size"], big.len() as u64);
    assert_eq!(
        e["body_sha256"],
        hex::encode(sha2::Sha256::digest(big.as_bytes()))
    );
    // What Redis holds, not just what `dlq list` shows.
    let stored: redis::Value = redis::cmd("XRANGE")
        .arg("t-oversized:dlq")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let text = format!("{stored:?}");
    assert!(
        text.len() < 10_000,
        "the stream entry does not hold the body: {} bytes",
        text.len()
    );
    assert!(rx.requests().is_empty(), "nothing was POSTed");

    // Replay must not send the stored prefix as if it were the message.
    let out = bridge.cli(&["dlq", "replay", "--all"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only a prefix of its"),
        "{}",
        show(&out)
    );
    assert!(rx.requests().is_empty(), "replay POSTed nothing");
    assert_eq!(bridge.dlq_entries(&[]).len(), 1, "the entry stays");
}

/// `[dlq] max_entries` and `max_age`: each write trims the oldest entries beyond the limits,
/// and `bridge_dlq_trimmed_total{limit}` counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_retention_trims_the_oldest_entries_and_counts_them() {
    let redis = RedisServer::start();
    let config = base_toml(&redis, "t-dlq-retention")
        + "\n[dlq]\nmax_entries = 3\nmax_age = \"2s\"\n"
        + &endpoint_toml("site", UNUSED_ENDPOINT, "");
    let bridge = Bridge::start(&config).await;
    let bodies: Vec<String> = (1..=5).map(|n| format!("not json #{n}")).collect();
    let dead = |bridge: &Bridge| -> Vec<String> {
        bridge
            .dlq_entries(&[])
            .iter()
            .map(|e| e["body"].as_str().unwrap_or("").to_string())
            .collect()
    };

    for body in &bodies {
        redis.publish(DEFAULT_CHANNEL, body).await;
    }
    wait_until(PATIENCE, "two entries trimmed by max_entries", || async {
        bridge
            .metric_value("bridge_dlq_trimmed_total", &[("limit", "max_entries")])
            .await
            >= 2.0
    })
    .await;
    assert_eq!(
        dead(&bridge),
        bodies[2..].to_vec(),
        "the newest three remain"
    );
    assert_eq!(
        bridge
            .metric_value("bridge_dlq_trimmed_total", &[("limit", "max_entries")])
            .await,
        2.0
    );

    // Once the three are older than max_age, the next write removes them.
    let written = std::time::SystemTime::now();
    wait_until(PATIENCE, "max_age has passed", || async {
        written.elapsed().unwrap_or_default() > Duration::from_millis(2100)
    })
    .await;
    redis.publish(DEFAULT_CHANNEL, "not json, late").await;
    wait_until(PATIENCE, "three entries trimmed by max_age", || async {
        bridge
            .metric_value("bridge_dlq_trimmed_total", &[("limit", "max_age")])
            .await
            >= 3.0
    })
    .await;
    assert_eq!(dead(&bridge), vec!["not json, late".to_string()]);
    assert_eq!(
        bridge
            .metric_value("bridge_dlq_trimmed_total", &[("limit", "max_entries")])
            .await,
        2.0,
        "age is applied first: the old entries count as trimmed for their age"
    );
}

/// Settings that would turn a defence off are refused by `check-config` (exit 78) naming the
/// key, and a configured admin token is shown as `***`.
#[test]
fn limits_that_would_turn_a_defence_off_are_refused_and_the_admin_token_is_hidden() {
    let check = |extra: &str, envs: &[(&str, &str)]| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        let toml = format!(
            "{extra}\n[[endpoints]]\nname = \"site\"\nurl = \"https://example.com/hook\"\nsecrets = [\"literal-secret\"]\n"
        );
        std::fs::write(&path, toml).expect("write config");
        run_cli(
            &["--config", path.to_str().expect("UTF-8"), "check-config"],
            envs,
        )
    };
    for (extra, key) in [
        ("[security]\nmax_json_depth = 0", "security.max_json_depth"),
        ("[admin]\nmax_connections = 0", "admin.max_connections"),
        (
            "[admin]\nheader_read_timeout = \"0s\"",
            "admin.header_read_timeout",
        ),
        (
            "[admin]\nbody_read_timeout = \"0s\"",
            "admin.body_read_timeout",
        ),
        ("[admin]\nprotect_metrics = true", "admin.protect_metrics"),
    ] {
        let out = check(extra, &[]);
        assert_eq!(out.status.code(), Some(78), "{extra}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(key),
            "{extra}: names {key}: {}",
            show(&out)
        );
    }
    let token = "admin-token-canary-9876543210";
    let out = check(
        "[admin]\ntoken = \"env:HARDENING_ADMIN_TOKEN\"\nprotect_metrics = true",
        &[("HARDENING_ADMIN_TOKEN", token)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!show(&out).contains(token), "{}", show(&out));
}
