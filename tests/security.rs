//! Security properties, end to end:
//!
//! - secret hygiene: `Debug` of a whole `Config`, a panic carrying one, config errors about
//!   the Redis URL, and every surface of a real run (logs, `check-config`, `/status`,
//!   `/metrics`, `dlq list`) never show a secret, a Redis password, a TLS key or a
//!   credential-like header value;
//! - the SSRF guard: endpoints on loopback are refused by `check-config` and `run` (exit 78
//!   naming the URL key and `security.allow_private_networks`) and by the delivery client
//!   (a permanent failure naming the address), and never connected to — for a literal IP and
//!   for a name that resolves to loopback;
//! - hostile receivers: an endless body, a trickling body, too many headers and a huge
//!   header neither stall the worker nor exceed the endpoint timeout.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use redis_webhook_bridge::config::{Config, LoadOptions};

const SECS: fn(u64) -> Duration = Duration::from_secs;

const FILE_SECRET: &str = "file-SECRET-0b7e5d9a21";
const LITERAL_SECRET: &str = "literal-SECRET-c4f2e87b10";
const REDIS_PASSWORD: &str = "redis-PASS-6a1f93dd02";
const AUTH_HEADER: &str = "Bearer header-TOKEN-93c0aa7e55";

fn secrets() -> [&'static str; 4] {
    [FILE_SECRET, LITERAL_SECRET, REDIS_PASSWORD, AUTH_HEADER]
}

/// Panics naming the surface and showing the context if `text` holds any of `needles`.
fn assert_absent(surface: &str, text: &str, needles: &[&str]) {
    for needle in needles {
        if let Some(at) = text.find(needle) {
            let from = at.saturating_sub(200);
            let to = (at + 200).min(text.len());
            panic!(
                "{surface} contains `{needle}`:\n…{}…",
                String::from_utf8_lossy(&text.as_bytes()[from..to])
            );
        }
    }
}

/// A TOML file with every kind of secret, and the directory holding its files.
fn config_with_every_secret(dir: &std::path::Path, redis_url: &str, extra: &str) -> PathBuf {
    let secret_file = dir.join("hook.secret");
    std::fs::write(&secret_file, format!("{FILE_SECRET}\n")).unwrap();
    let tables = common::common_tables(
        &format!("url = \"{redis_url}\"\nkey_prefix = \"t-security\""),
        "debug",
    );
    let config = format!(
        r#"{tables}{extra}
[[endpoints]]
name = "from-file"
url = "http://127.0.0.1:9/hook"
secrets = ["file:{secret_file}", "{LITERAL_SECRET}"]
headers = {{ Authorization = "{AUTH_HEADER}", X-Team = "models" }}
retry_delay = "100ms"
"#,
        secret_file = secret_file.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn load(path: PathBuf) -> Config {
    Config::load_with_env(
        &LoadOptions {
            file: Some(path),
            ..Default::default()
        },
        &|_| None,
    )
    .expect("the test config loads")
}

// ---------------------------------------------------------------------------------------
// Secret hygiene in the library
// ---------------------------------------------------------------------------------------

#[test]
fn debug_serialize_and_a_panic_of_a_config_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_every_secret(
        dir.path(),
        &format!("redis://bridge:{REDIS_PASSWORD}@127.0.0.1:6379"),
        "",
    );
    let cfg = load(path);
    // The values really are in there, so the checks below mean something.
    assert_eq!(cfg.endpoints[0].secrets[0].expose(), FILE_SECRET.as_bytes());
    assert!(cfg.redis.url.expose().contains(REDIS_PASSWORD));
    assert_eq!(cfg.endpoints[0].headers["Authorization"], AUTH_HEADER);

    assert_absent("Debug", &format!("{cfg:?}"), &secrets());
    assert_absent("pretty Debug", &format!("{cfg:#?}"), &secrets());
    let toml = cfg.to_redacted_toml();
    assert_absent("check-config TOML", &toml, &secrets());
    assert!(toml.contains("bridge:***@127.0.0.1"), "{toml}");
    assert!(
        toml.contains("models"),
        "harmless headers stay visible: {toml}"
    );
    assert_absent("JSON", &serde_json::to_string(&cfg).unwrap(), &secrets());

    let payload = std::panic::catch_unwind(|| {
        let result: Result<(), Config> = std::hint::black_box(Err(cfg.clone()));
        result.expect("a panic that carries the whole config");
    })
    .expect_err("it panicked");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .expect("a formatted panic message");
    assert!(message.contains("EndpointConfig"), "{message}");
    assert_absent("the panic message", &message, &secrets());
}

#[test]
fn config_errors_about_the_redis_url_never_show_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let bad_urls = [
        format!("redis://user:{REDIS_PASSWORD}@127.0.0.1:99999"),
        format!("http://user:{REDIS_PASSWORD}@127.0.0.1:6379"),
        format!("redis://user:{REDIS_PASSWORD}@[::1"),
        format!("redis//user:{REDIS_PASSWORD}@127.0.0.1"),
    ];
    for url in &bad_urls {
        let path = config_with_every_secret(dir.path(), url, "");
        let err = Config::load_with_env(
            &LoadOptions {
                file: Some(path.clone()),
                ..Default::default()
            },
            &|_| None,
        )
        .expect_err("an invalid redis.url");
        let shown = format!("{err} / {err:?}");
        assert!(shown.contains("redis.url"), "{shown}");
        assert_absent(&format!("the error for {url}"), &shown, &secrets());

        // The same through the binary: exit 78, password absent from stdout and stderr.
        let path_arg = path.to_str().unwrap();
        let out = run_cli(&["--config", path_arg, "check-config"], &[]);
        assert_eq!(out.status.code(), Some(78), "{}", show(&out));
        assert_absent("check-config's output", &show(&out), &secrets());
    }

    // The registry's variables: a bad port next to REDIS_AUTH_TOKEN.
    let path = config_with_every_secret(dir.path(), "redis://127.0.0.1:6379", "");
    let env = |name: &str| match name {
        "REDIS_HOST" => Some("127.0.0.1".to_string()),
        "REDIS_PORT" => Some("not-a-port".to_string()),
        "REDIS_AUTH_TOKEN" => Some(REDIS_PASSWORD.to_string()),
        _ => None,
    };
    let err = Config::load_with_env(
        &LoadOptions {
            file: Some(path),
            ..Default::default()
        },
        &env,
    )
    .expect_err("REDIS_PORT is not a port");
    let shown = format!("{err} / {err:?}");
    assert!(shown.contains("REDIS_PORT"), "{shown}");
    assert_absent("the REDIS_PORT error", &shown, &secrets());

    // TLS files with a plain redis:// URL name the URL, redacted.
    let ca = dir.path().join("ca.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(&ca, cert.pem()).unwrap();
    let path = config_with_every_secret(
        dir.path(),
        &format!("redis://user:{REDIS_PASSWORD}@127.0.0.1:6379"),
        "",
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "key_prefix = \"t-security\"",
        &format!(
            "key_prefix = \"t-security\"\ntls_ca_file = \"{}\"",
            ca.display()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let err = Config::load_with_env(
        &LoadOptions {
            file: Some(path),
            ..Default::default()
        },
        &|_| None,
    )
    .expect_err("TLS files need rediss://");
    let shown = err.to_string();
    assert!(shown.contains("user:***@127.0.0.1"), "{shown}");
    assert_absent("the rediss error", &shown, &secrets());
}

// ---------------------------------------------------------------------------------------
// Secret hygiene of a whole run
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_and_a_redis_password_never_reach_any_output() {
    let redis = RedisServer::start_with_password(REDIS_PASSWORD);
    let rx = Receiver::start().await;
    // A retried attempt, a dead letter, then deliveries.
    rx.script(vec![Reply::status(503), Reply::status(401)]);
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_every_secret(dir.path(), &redis.url(), "");
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:9/hook", &rx.url("/hook"));
    let bridge = Bridge::start(&config).await;

    for n in 1..=3 {
        redis
            .publish(DEFAULT_CHANNEL, message("model.ready", n))
            .await;
    }
    wait_until(PATIENCE, "2 delivered and 1 dead-lettered", || async {
        let ep = bridge.endpoint_status("from-file").await;
        ep["delivered"] == 2 && ep["dead_lettered"] == 1
    })
    .await;
    // The receiver did get the credential header: it is used, just never shown.
    assert_eq!(rx.requests()[0].header("authorization"), AUTH_HEADER);

    let mut surfaces = vec![
        ("/status", bridge.status_json().await.to_string()),
        ("/metrics", bridge.metrics_text().await),
    ];
    let out = bridge.cli(&["check-config"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Authorization = \"***\""),
        "{}",
        show(&out)
    );
    surfaces.push(("check-config", show(&out)));
    let dlq = bridge.cli(&["dlq", "list", "--json"], &[]);
    assert!(dlq.status.success(), "{}", show(&dlq));
    assert!(
        String::from_utf8_lossy(&dlq.stdout).contains("401"),
        "the dead letter is there: {}",
        show(&dlq)
    );
    surfaces.push(("dlq list", show(&dlq)));

    bridge.sigterm();
    bridge.wait_exit(PATIENCE).await;
    let logs = bridge.full_logs();
    for expected in ["DEBUG", "will retry", "dead-lettered"] {
        assert!(logs.contains(expected), "the log has `{expected}`:\n{logs}");
    }
    surfaces.push(("the log", logs));
    for (surface, text) in &surfaces {
        assert_absent(surface, text, &secrets());
        assert!(!text.contains("PRIVATE KEY"), "{surface}");
    }
}

// ---------------------------------------------------------------------------------------
// SSRF guard
// ---------------------------------------------------------------------------------------

/// A TCP listener on 127.0.0.1 that only counts the connections it gets.
struct Tripwire {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            port,
            connections,
            task,
        }
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_on_loopback_are_refused_at_start_and_by_the_client_and_never_contacted() {
    let redis = RedisServer::start();
    let trip = Tripwire::start().await;
    for (url, host) in [
        (format!("https://127.0.0.1:{}/hook", trip.port), "127.0.0.1"),
        (format!("http://localhost:{}/hook", trip.port), "localhost"),
    ] {
        let config = base_toml(&redis, "t-ssrf").replace(
            "allow_private_networks = true",
            "allow_private_networks = false",
        ) + &endpoint_toml("loopback", &url, "max_retries = 3");

        // `check-config` and `run` refuse it at once, naming both settings.
        let bridge = Bridge::spawn(&config, &[]);
        let status = bridge.wait_exit(PATIENCE).await;
        assert_eq!(status.code(), Some(78), "run: {}", bridge.logs());
        let out = bridge.cli(&["check-config"], &[]);
        assert_eq!(out.status.code(), Some(78), "{}", show(&out));
        for shown in [
            bridge.full_logs(),
            String::from_utf8_lossy(&out.stderr).into(),
        ] {
            assert!(shown.contains("endpoints[0].url"), "{host}: {shown}");
            assert!(
                shown.contains("security.allow_private_networks"),
                "{host}: {shown}"
            );
        }

        // The client refuses it too: the last check before a request leaves (a name whose
        // DNS answer changes after the start), a permanent failure naming the address.
        let cfg = load(bridge.config_path().into());
        let client = redis_webhook_bridge::delivery::client::EndpointClient::build(
            &cfg.endpoints[0],
            &cfg.security,
        )
        .expect("the client builds");
        match client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
        {
            redis_webhook_bridge::delivery::Outcome::Permanent { error, .. } => {
                assert!(error.contains(host), "{host}: {error}");
                assert!(
                    error.contains("127.0.0.1") || error.contains("::1"),
                    "{host}: names the address: {error}"
                );
                assert!(error.contains("allow_private_networks"), "{host}: {error}");
            }
            other => panic!("{host}: expected a permanent refusal, got {other:?}"),
        }
    }
    assert_eq!(
        trip.connections.load(Ordering::SeqCst),
        0,
        "nothing connected to the loopback receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_loopback_endpoint_is_rejected_naming_both_settings() {
    let redis = RedisServer::start();
    let trip = Tripwire::start().await;
    // `.invalid` never resolves: the start-up check leaves unresolvable names to delivery.
    let config = base_toml(&redis, "t-ssrf-reload").replace(
        "allow_private_networks = true",
        "allow_private_networks = false",
    ) + &endpoint_toml("public", "https://hooks.example.invalid/hook", "");
    let bridge = Bridge::start(&config).await;
    std::fs::write(
        bridge.config_path(),
        config.clone()
            + &endpoint_toml(
                "loopback",
                &format!("https://127.0.0.1:{}/hook", trip.port),
                "",
            ),
    )
    .unwrap();
    bridge.sighup();
    wait_until(SECS(10), "a failed reload to be counted", || async {
        bridge
            .metric_value("bridge_config_reloads_total", &[("result", "failure")])
            .await
            >= 1.0
    })
    .await;
    let logs = bridge.full_logs();
    assert!(
        logs.contains("endpoints[1].url") && logs.contains("security.allow_private_networks"),
        "the rejection names both settings: {}",
        bridge.logs()
    );
    assert!(
        bridge.status_json().await["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() == 1),
        "the running endpoints stay"
    );
    assert_eq!(trip.connections.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------
// Hostile receivers
// ---------------------------------------------------------------------------------------

/// What a hostile path answers the first time (later requests get a plain 200).
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// 200, then body bytes as fast as possible, forever.
    EndlessBody,
    /// 503, then one body byte every 50 ms, forever.
    TricklingBody,
    /// 200 with 80 header lines: fewer than hyper's default limit (100), more than the
    /// bridge accepts (64).
    ManyHeaders,
    /// 200 with a 1 MiB header value.
    HugeHeader,
}

#[derive(Default)]
struct HostileLog {
    /// path → arrival time of each request.
    arrivals: HashMap<String, Vec<Instant>>,
    /// path → when the hostile body was dropped (the client went away).
    dropped: HashMap<String, Instant>,
}

/// Sets the drop time of its path when the body stream is dropped.
struct DropGuard {
    path: String,
    log: Arc<Mutex<HostileLog>>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.dropped.insert(self.path.clone(), Instant::now());
    }
}

async fn hostile(
    axum::extract::State(log): axum::extract::State<Arc<Mutex<HostileLog>>>,
    uri: Uri,
    _headers: HeaderMap,
    _body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let nth = {
        let mut g = log.lock().unwrap();
        let v = g.arrivals.entry(path.clone()).or_default();
        v.push(Instant::now());
        v.len()
    };
    let mode = match path.as_str() {
        "/endless" => Hostile::EndlessBody,
        "/trickle" => Hostile::TricklingBody,
        "/many-headers" => Hostile::ManyHeaders,
        "/huge-header" => Hostile::HugeHeader,
        _ => return (StatusCode::NOT_FOUND, "no such path").into_response(),
    };
    if nth > 1 {
        return (StatusCode::OK, "ok").into_response();
    }
    let guard = DropGuard {
        path,
        log: log.clone(),
    };
    match mode {
        Hostile::EndlessBody => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures::stream::unfold(guard, move |g| {
                let chunk = chunk.clone();
                async move { Some((Ok::<_, Infallible>(chunk), g)) }
            });
            (StatusCode::OK, Body::from_stream(stream)).into_response()
        }
        Hostile::TricklingBody => {
            let stream = futures::stream::unfold(guard, |g| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), g))
            });
            (StatusCode::SERVICE_UNAVAILABLE, Body::from_stream(stream)).into_response()
        }
        Hostile::ManyHeaders => {
            drop(guard);
            let mut resp = (StatusCode::OK, "ok").into_response();
            for i in 0..80 {
                resp.headers_mut().insert(
                    HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("filler"),
                );
            }
            resp
        }
        Hostile::HugeHeader => {
            drop(guard);
            let mut resp = (StatusCode::OK, "ok").into_response();
            resp.headers_mut().insert(
                "x-huge",
                HeaderValue::from_str(&"y".repeat(1024 * 1024)).unwrap(),
            );
            resp
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_answers_neither_stall_the_worker_nor_outlive_the_timeout() {
    /// The endless-body endpoint's timeout: far above what cutting at the drain cap takes.
    const ENDLESS_TIMEOUT: Duration = Duration::from_secs(60);
    let log = Arc::new(Mutex::new(HostileLog::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(hostile)
        .with_state(log.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let redis = RedisServer::start();
    let timeout = SECS(2);
    let mut config = base_toml(&redis, "t-hostile");
    for path in ["endless", "trickle", "many-headers", "huge-header"] {
        config += &endpoint_toml(
            path,
            &format!("http://{addr}/{path}"),
            // The endless body gets a long timeout: the drain cap, not the timeout, must end it.
            &format!(
                "timeout = \"{}s\"\nordered = true\nmax_retries = 5",
                if path == "endless" {
                    ENDLESS_TIMEOUT.as_secs()
                } else {
                    timeout.as_secs()
                }
            ),
        );
    }
    let bridge = Bridge::start(&config).await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 1))
        .await;
    redis
        .publish(DEFAULT_CHANNEL, message("model.ready", 2))
        .await;

    wait_until(
        PATIENCE,
        "every endpoint delivered both messages",
        || async {
            let mut all = true;
            for ep in ["endless", "trickle", "many-headers", "huge-header"] {
                all &= bridge.endpoint_status(ep).await["delivered"] == 2;
            }
            all
        },
    )
    .await;

    for ep in ["trickle", "many-headers", "huge-header"] {
        let st = bridge.endpoint_status(ep).await;
        assert_eq!(
            st["failed"], 1,
            "{ep}: the hostile answer is one failed attempt: {st}"
        );
        assert_eq!(st["dead_lettered"], 0, "{ep}: {st}");
    }
    let st = bridge.endpoint_status("endless").await;
    assert_eq!(
        st["failed"], 0,
        "a 2xx with an endless body is a delivery: {st}"
    );

    {
        let g = log.lock().unwrap();
        for path in ["/endless", "/trickle"] {
            let arrived = g.arrivals[path][0];
            let dropped = *g
                .dropped
                .get(path)
                .unwrap_or_else(|| panic!("{path}: the bridge never let go of the body"));
            // Both bodies never end; letting go at all is the point. The bound leaves a
            // busy machine plenty of scheduling delay and still tells a cut from none.
            let held = dropped.duration_since(arrived);
            assert!(
                held < ENDLESS_TIMEOUT / 2,
                "{path}: the attempt held the answer for {held:?}"
            );
        }
        let endless_held = g.dropped["/endless"].duration_since(g.arrivals["/endless"][0]);
        assert!(
            endless_held < ENDLESS_TIMEOUT / 2,
            "an endless body is cut at the drain cap, not read until its {ENDLESS_TIMEOUT:?} timeout: {endless_held:?}"
        );
    }
    for ep in ["many-headers", "huge-header"] {
        let last_error = bridge.endpoint_status(ep).await["last_error"].clone();
        assert!(
            last_error.as_str().unwrap_or("").contains("too large"),
            "{ep}: the failure is explained: {last_error}"
        );
    }
    server.abort();
}
