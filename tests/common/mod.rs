//! Shared helpers of the integration tests: a real `redis-server` per test, a real HTTP
//! receiver that records every request, and the real `redis-webhook-bridge` binary.
//!
//! Nothing here is a mock. Every child process is killed when its handle is dropped, so a
//! failing test leaves nothing behind; a failing test also prints the bridge's log tail.

#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tempfile::TempDir;
use tokio::sync::Notify;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redis-webhook-bridge");

/// The channel the bridge reads when `[[sources]]` is not configured.
pub const DEFAULT_CHANNEL: &str = "hokusai:model_ready_queue:pubsub";

const REDIS_MISSING: &str = "redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis)";

/// Fails the test, saying how to install Redis, when `redis-server` is not on the `PATH` (for
/// tests that start it through another program).
pub fn require_redis_server() {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("redis-server --version failed: {}", show(&out)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
        Err(e) => panic!("cannot run redis-server: {e}"),
    }
}

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(25);

/// How long a test waits for something that must happen: generous, because it only bounds a
/// hang. The machine running the tests may be small and busy; a wait ends as soon as its
/// condition holds, so a long deadline costs nothing when things work.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Generic helpers
// ---------------------------------------------------------------------------------------

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port on 127.0.0.1")
}

/// Polls `cond` every 25 ms until it is true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `tests/fixtures/signatures.json`: the signature and idempotency-key vectors.
pub fn fixtures() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/signatures.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `Command` for the binary with a clean environment (only `PATH` plus `envs`) and a
/// working directory of its own, so that no `.env`, `RUST_LOG`, `WEBHOOK_*`, `REDIS_*` or
/// `BRIDGE_*` of the machine running the tests leaks in.
fn bin_command(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(cwd);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a one-shot command of the binary (`check-config`, `dlq list --json`, …) to the end.
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let cwd = TempDir::new().expect("tempdir");
    bin_command(args, envs, cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN} {args:?}: {e}"))
}

/// stdout and stderr of `out`, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to `pid` (through `kill(1)`: no libc or nix dependency needed).
fn sigterm_pid(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("cannot run kill(1)");
    assert!(status.success(), "kill -TERM {pid} failed: {status}");
}

/// A reqwest client for the admin endpoints and helper HTTP calls.
pub fn http() -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`; the process needs a provider installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("cannot build an HTTP client")
}

// ---------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------

/// A `redis-server` of the test's own, on a free port, with its own `--dir`.
pub struct RedisServer {
    /// The port it listens on (kept across [`RedisServer::restart`]).
    pub port: u16,
    password: Option<String>,
    extra: Vec<String>,
    dir: TempDir,
    proc: Option<Proc>,
}

impl RedisServer {
    /// Without persistence: `--save "" --appendonly no`.
    pub fn start() -> Self {
        Self::start_with(&["--appendonly", "no"], None)
    }

    /// With AOF persistence (`appendfsync everysec`), so data survives [`Self::restart`].
    pub fn start_with_aof() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"], None)
    }

    /// Without persistence, requiring `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Self {
        Self::start_with(&["--appendonly", "no"], Some(password))
    }

    fn start_with(extra: &[&str], password: Option<&str>) -> Self {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(p) = password {
            extra.push("--requirepass".into());
            extra.push(p.into());
        }
        // A port found free can be taken by a parallel test before redis binds it: retry.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                password: password.map(String::from),
                extra: extra.clone(),
                dir: TempDir::new().expect("tempdir for redis-server"),
                proc: None,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server could not start on a free port after 5 tries");
    }

    /// Starts the process on `self.port`; false if it exited (e.g. the port was taken).
    fn spawn(&mut self) -> bool {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--save", "", "--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", ""])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("redis log file"))
            .stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_MISSING}"),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let mut proc = Proc { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = proc.child.try_wait() {
                return false;
            }
            // Its own log line, not just a PING answer: a parallel test's server could hold
            // the port while this one is failing to bind it.
            let ready = std::fs::read_to_string(&log)
                .is_ok_and(|t| t.contains("Ready to accept connections"));
            if ready && self.answers_ping() && matches!(proc.child.try_wait(), Ok(None)) {
                self.proc = Some(proc);
                return true;
            }
            if Instant::now() >= deadline {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "redis-server on port {} did not answer PING within 30 s; log:\n{}",
                    self.port,
                    tail(&text, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        // `+PONG`, or `-NOAUTH …` with a password: either way the server is serving.
        matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
    }

    /// `redis://[:password@]127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills the server with SIGKILL (no shutdown, no final save).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same port with the same `--dir` (and so the same AOF).
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger for a moment; redis sets SO_REUSEADDR, retry briefly.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis client")
    }

    /// A new async connection to this server.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// PUBLISHes `body` to `channel`; returns the number of subscribers that got it.
    pub async fn publish(&self, channel: &str, body: impl AsRef<[u8]>) -> i64 {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(body.as_ref())
            .query_async(&mut self.conn().await)
            .await
            .expect("PUBLISH")
    }
}

// ---------------------------------------------------------------------------------------
// HTTP receiver
// ---------------------------------------------------------------------------------------

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Waits this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 at once.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// `status` at once.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status it was (or will be) answered with.
    pub status: u16,
    /// When the answer was handed back (None while the receiver still delays it).
    pub answered_at: Option<Instant>,
}

impl Recorded {
    /// A header's value as text, or "" when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// `X-Hokusai-Delivery-Attempt`.
    pub fn attempt(&self) -> u32 {
        let a = self.header("x-hokusai-delivery-attempt");
        a.parse()
            .unwrap_or_else(|_| panic!("X-Hokusai-Delivery-Attempt `{a}` is not a number"))
    }

    /// `X-Hokusai-Idempotency-Key`.
    pub fn idempotency_key(&self) -> String {
        self.header("x-hokusai-idempotency-key")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct ReceiverInner {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
}

struct ReceiverShared {
    inner: Mutex<ReceiverInner>,
    arrived: Notify,
}

/// A real HTTP server on 127.0.0.1 that records every request and answers as scripted.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<ReceiverShared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on a free port; answers 200 until scripted otherwise.
    pub async fn start() -> Self {
        let shared = Arc::new(ReceiverShared {
            inner: Mutex::new(ReceiverInner {
                script: VecDeque::new(),
                default: Reply::ok(),
                requests: Vec::new(),
            }),
            arrived: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let app = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests get these answers, in order; then the default.
    pub fn script(&self, replies: Vec<Reply>) {
        self.lock().script.extend(replies);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = reply;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests to `path`, in arrival order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests arrived; returns all of them.
    pub async fn wait_for_count(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let got = self.requests();
                if got.len() >= n {
                    return got;
                }
                panic!(
                    "timed out after {timeout:?} waiting for {n} request(s) at the receiver; got {}: {:?}",
                    got.len(),
                    got.iter()
                        .map(|r| format!(
                            "{} {} -> {}",
                            r.path,
                            String::from_utf8_lossy(&r.body),
                            r.status
                        ))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReceiverInner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    axum::extract::State(shared): axum::extract::State<Arc<ReceiverShared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (index, reply) = {
        let mut g = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let reply = g.script.pop_front().unwrap_or_else(|| g.default.clone());
        g.requests.push(Recorded {
            method,
            path: uri.path().to_string(),
            headers,
            body,
            at: Instant::now(),
            status: reply.status,
            answered_at: None,
        });
        (g.requests.len() - 1, reply)
    };
    shared.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut resp = (
        StatusCode::from_u16(reply.status).expect("scripted status"),
        "ok",
    )
        .into_response();
    for (k, v) in &reply.headers {
        resp.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    shared
        .inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests[index]
        .answered_at = Some(Instant::now());
    resp
}

// ---------------------------------------------------------------------------------------
// The bridge
// ---------------------------------------------------------------------------------------

/// The `[redis]`, `[security]`, `[admin]` and `[log]` tables every test config starts with:
/// the test's redis, its own key prefix, a free admin port, http and loopback endpoints
/// allowed, JSON logs.
pub fn base_toml(redis: &RedisServer, key_prefix: &str) -> String {
    common_tables(
        &format!("url = \"{}\"\nkey_prefix = \"{key_prefix}\"", redis.url()),
        "info",
    )
}

/// `[redis]` with `redis_lines`, then `[security]` (http and loopback endpoints allowed),
/// `[admin]` on a free port and JSON `[log]` at `level`.
pub fn common_tables(redis_lines: &str, level: &str) -> String {
    format!(
        r#"[redis]
{redis_lines}

[security]
allow_http = true
allow_private_networks = true

[admin]
listen = "127.0.0.1:{admin}"

[log]
format = "json"
level = "{level}"
"#,
        admin = free_port(),
    )
}

/// A running `redis-webhook-bridge run`, killed when dropped.
pub struct Bridge {
    proc: Mutex<Option<Proc>>,
    dir: TempDir,
    config: PathBuf,
    admin: SocketAddr,
    http: reqwest::Client,
}

impl Bridge {
    /// Starts `run` with `config_toml` and waits for `/readyz` 200.
    pub async fn start(config_toml: &str) -> Self {
        Self::start_with_env(config_toml, &[]).await
    }

    /// Like [`Bridge::start`], with extra environment variables.
    ///
    /// The admin port in the config was free when the config was written; another process
    /// may have taken it since. Then the bridge exits at once saying so, and it is started
    /// again on another free port (the config file it runs with says which).
    pub async fn start_with_env(config_toml: &str, envs: &[(&str, &str)]) -> Self {
        let mut config = config_toml.to_string();
        for _ in 0..5 {
            let b = Self::spawn(&config, envs);
            if b.wait_ready_or_port_taken().await {
                return b;
            }
            let taken = format!("\"{}\"", b.admin);
            let fresh = format!("\"127.0.0.1:{}\"", free_port());
            config = config.replacen(&taken, &fresh, 1);
        }
        panic!("the bridge could not bind a free admin port after 5 tries");
    }

    /// Starts `run` without waiting for it to be ready.
    pub fn spawn(config_toml: &str, envs: &[(&str, &str)]) -> Self {
        Self::spawn_limited(config_toml, envs, None)
    }

    /// Like [`Bridge::start`], with the process's open-file limit (`RLIMIT_NOFILE`, soft and
    /// hard) set to `max_open_files`, as a small `ulimit -n` would.
    pub async fn start_with_fd_limit(config_toml: &str, max_open_files: u64) -> Self {
        let b = Self::spawn_limited(config_toml, &[], Some(max_open_files));
        b.wait_ready().await;
        b
    }

    fn spawn_limited(config_toml: &str, envs: &[(&str, &str)], nofile: Option<u64>) -> Self {
        let dir = TempDir::new().expect("tempdir for the bridge");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml).expect("write config.toml");
        let parsed: toml::Table = toml::from_str(config_toml)
            .unwrap_or_else(|e| panic!("the test's config is not TOML: {e}\n{config_toml}"));
        let admin: SocketAddr = parsed
            .get("admin")
            .and_then(|a| a.get("listen"))
            .and_then(|l| l.as_str())
            .expect("test configs set [admin] listen")
            .parse()
            .expect("[admin] listen is an address");
        let config_arg = config.to_str().expect("utf-8 path").to_string();
        let mut cmd = bin_command(&["--config", &config_arg, "run"], envs, dir.path());
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    let rlim = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).expect("stdout.log"))
            .stderr(File::create(dir.path().join("stderr.log")).expect("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        Self {
            proc: Mutex::new(Some(Proc { child })),
            dir,
            config,
            admin,
            http: http(),
        }
    }

    /// Waits ([`PATIENCE`] at most) until `GET /readyz` answers 200.
    pub async fn wait_ready(&self) {
        if !self.wait_ready_or_port_taken().await {
            panic!(
                "the bridge could not bind its admin port {}; logs:\n{}",
                self.admin,
                self.logs()
            );
        }
    }

    /// Like [`Bridge::wait_ready`], but false when the bridge exited because its admin port
    /// was taken.
    async fn wait_ready_or_port_taken(&self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Its own /readyz: the process must still run (another process could answer on a
            // port it failed to bind).
            if self.readyz().await == Some(200) && self.exited().is_none() {
                return true;
            }
            if let Some(status) = self.exited() {
                // "Address already in use" from binding admin.listen.
                if self.full_logs().contains("already in use") {
                    return false;
                }
                panic!(
                    "the bridge exited ({status}) before it was ready; logs:\n{}",
                    self.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "the bridge was not ready within {PATIENCE:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The status of `GET /readyz`, or None when the admin server does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        self.http
            .get(format!("{}/readyz", self.admin_url()))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The config file the bridge was started with (for CLI commands with the same config).
    pub fn config_path(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    async fn get_text(&self, path: &str) -> String {
        let resp = self
            .http
            .get(format!("{}{path}", self.admin_url()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nlogs:\n{}", self.logs()));
        assert!(
            resp.status().is_success(),
            "GET {path} answered {}",
            resp.status()
        );
        resp.text().await.expect("admin response body")
    }

    /// `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        self.get_text("/metrics").await
    }

    /// The value of the sample `name{labels…}` in `/metrics` (labels: a subset that must
    /// match); 0 when there is no such sample yet.
    pub async fn metric_value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_in(&self.metrics_text().await, name, labels).unwrap_or(0.0)
    }

    /// `GET /status` as JSON.
    pub async fn status_json(&self) -> serde_json::Value {
        let text = self.get_text("/status").await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {text}"))
    }

    /// `/status` of endpoint `name`.
    pub async fn endpoint_status(&self, name: &str) -> serde_json::Value {
        let status = self.status_json().await;
        status["endpoints"]
            .as_array()
            .and_then(|eps| eps.iter().find(|e| e["name"] == name).cloned())
            .unwrap_or_else(|| panic!("/status has no endpoint {name}: {status}"))
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.lock().as_ref().expect("bridge running").pid();
        sigterm_pid(pid);
    }

    /// Sends SIGTERM, waits (`timeout` at most) until the process exits, and asserts that it
    /// exited 0.
    pub async fn stop(&self, timeout: Duration) {
        self.sigterm();
        let status = self.wait_exit(timeout).await;
        assert!(
            status.success(),
            "after SIGTERM the bridge exits 0, got {status}\n{}",
            self.logs()
        );
    }

    /// Sends SIGHUP (config reload).
    pub fn sighup(&self) {
        let pid = self.lock().as_ref().expect("bridge running").pid();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("cannot run kill(1)");
        assert!(status.success(), "kill -HUP {pid} failed: {status}");
    }

    /// Kills the process with SIGKILL (a crash: no shutdown at all) and reaps it.
    pub fn kill(&self) {
        if let Some(p) = self.lock().as_mut() {
            p.kill();
        }
    }

    /// The exit status, if the process has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut g = self.lock();
        let proc = g.as_mut()?;
        proc.child.try_wait().expect("try_wait on the bridge")
    }

    /// Waits until the process exits; panics with the logs after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the bridge did not exit within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything the bridge wrote to stdout and stderr so far.
    pub fn full_logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }

    /// The last 60 lines of the bridge's output, for assertion messages.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- bridge stdout (tail) ---\n{}\n--- bridge stderr (tail) ---\n{}",
            tail(&read("stdout.log"), 20),
            tail(&read("stderr.log"), 60)
        )
    }

    /// Runs a one-shot command with this bridge's config file, e.g. `["dlq", "list", "--json"]`.
    pub fn cli(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut full = vec!["--config", self.config_path()];
        full.extend_from_slice(args);
        run_cli(&full, envs)
    }

    /// `dlq list --json` with this bridge's config, parsed.
    pub fn dlq_entries(&self, envs: &[(&str, &str)]) -> Vec<serde_json::Value> {
        let out = self.cli(&["dlq", "list", "--json"], envs);
        assert!(out.status.success(), "dlq list failed: {}", show(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("dlq list line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (up to [`PATIENCE`]) until `dlq list` shows at least `n` entries and returns
    /// them all, so the caller can also assert that no more than `n` arrived.
    pub async fn wait_for_dlq_entries(&self, n: usize, what: &str) -> Vec<serde_json::Value> {
        let mut entries = Vec::new();
        wait_until(PATIENCE, what, || {
            entries = self.dlq_entries(&[]);
            let len = entries.len();
            async move { len >= n }
        })
        .await;
        entries
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut p) = self.lock().take() {
            p.kill();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// Finds `name{labels}` in Prometheus text and returns its value.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.rfind('}') else { continue };
            (&r[..end], r[end + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            continue; // a longer name, e.g. `_bucket`
        };
        let have = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
        {
            let value = value.split_whitespace().next().unwrap_or("");
            return value.parse().ok();
        }
    }
    None
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim_matches(|c: char| c == ',' || c.is_whitespace())
            .to_string();
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key, value));
    }
}

// ---------------------------------------------------------------------------------------
// `receive` as a child process
// ---------------------------------------------------------------------------------------

/// The binary's `receive` command, running; killed when dropped.
pub struct ReceiveCmd {
    proc: Proc,
    dir: TempDir,
    /// Where it listens.
    pub port: u16,
}

impl ReceiveCmd {
    /// Starts `receive --listen 127.0.0.1:<free port> <args>` and waits until it listens; on
    /// another port when a parallel process took the first one meanwhile.
    pub async fn start(args: &[&str]) -> Self {
        for _ in 0..5 {
            if let Some(me) = Self::try_start(args).await {
                return me;
            }
        }
        panic!("`receive` could not bind a free port after 5 tries");
    }

    /// None when `receive` exited because its port was taken.
    async fn try_start(args: &[&str]) -> Option<Self> {
        let dir = TempDir::new().expect("tempdir for receive");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut full = vec!["receive", "--listen", &listen];
        full.extend_from_slice(args);
        let child = bin_command(&full, &[], dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout.log")).expect("stdout.log"))
            .stderr(File::create(dir.path().join("stderr.log")).expect("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} receive: {e}"));
        let mut me = Self {
            proc: Proc { child },
            dir,
            port,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if me.stderr().contains("listening on")
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Some(me);
            }
            if let Ok(Some(status)) = me.proc.child.try_wait() {
                if me.stderr().contains("already in use") {
                    return None;
                }
                panic!("`receive` on {listen} exited ({status}) before it listened");
            }
            assert!(
                Instant::now() < deadline,
                "`receive` did not listen on {listen} within {PATIENCE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The JSON lines printed so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("receive printed a non-JSON line ({e}): {l}"))
            })
            .collect()
    }
}

impl Drop for ReceiveCmd {
    fn drop(&mut self) {
        self.proc.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- receive stdout ---\n{}\n--- receive stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// python3
// ---------------------------------------------------------------------------------------

/// Runs `python3 -c script args…`; returns its output.
pub fn python(script: &str, args: &[&str]) -> Output {
    match Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "python3 not found on PATH: install it (Debian/Ubuntu: apt-get install -y python3)"
            )
        }
        Err(e) => panic!("cannot run python3: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Config snippets
// ---------------------------------------------------------------------------------------

/// An `[[endpoints]]` table: `name`, `url`, then `extra` lines. Unless `extra` sets them, the
/// secret is `test-secret-<name>` and `retry_delay` is 100 ms.
pub fn endpoint_toml(name: &str, url: &str, extra: &str) -> String {
    let mut t = format!("\n[[endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\n");
    if !extra.contains("secrets") {
        t.push_str(&format!("secrets = [\"test-secret-{name}\"]\n"));
    }
    if !extra.contains("retry_delay") {
        t.push_str("retry_delay = \"100ms\"\n");
    }
    t.push_str(extra);
    t.push('\n');
    t
}

/// A small JSON message with an event type and a number, distinct per `n`.
pub fn message(event_type: &str, n: u32) -> String {
    format!(r#"{{"event_type":"{event_type}","n":{n}}}"#)
}
