//! The benchmark's own Redis and HTTP sink, the messages, and the windowed publisher.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::serve::ListenerExt as _;
use redis::aio::MultiplexedConnection;

use crate::procs::*;
use crate::*;

pub(crate) struct RedisServer {
    pub(crate) proc: Proc,
    pub(crate) url: String,
}

pub(crate) async fn start_redis(dir: &Path) -> anyhow::Result<RedisServer> {
    let port = free_port()?;
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut proc = Proc::spawn(
        cmd,
        "redis-server (install it: apt-get install -y redis-server, or brew install redis)",
    )?;
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = connect(&url).await {
            let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
            if pong.is_ok() {
                break;
            }
        }
        if !proc.alive() || Instant::now() > deadline {
            bail!(
                "redis-server did not come up on port {port}:\n{}",
                tail(&dir.join("redis.log"), 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(RedisServer { proc, url })
}

pub(crate) async fn connect(url: &str) -> redis::RedisResult<MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

// -------------------------------------------------------------------------------------------
// The sink
// -------------------------------------------------------------------------------------------

/// What the sink saw during one scenario.
pub(crate) struct Record {
    pub(crate) endpoints: usize,
    pub(crate) n: usize,
    /// First receipt time per (seq, endpoint), 0 = not yet.
    pub(crate) first: Box<[AtomicU64]>,
    /// Distinct (seq, endpoint) pairs received.
    pub(crate) unique: AtomicU64,
    /// Receipts of a pair already received.
    pub(crate) duplicates: AtomicU64,
    /// Requests that named no known endpoint or seq.
    pub(crate) stray: AtomicU64,
    pub(crate) per_endpoint: Box<[AtomicU64]>,
    pub(crate) last_ns: AtomicU64,
}

impl Record {
    pub(crate) fn new(n: usize, endpoints: usize) -> Self {
        Self {
            endpoints,
            n,
            first: (0..n * endpoints).map(|_| AtomicU64::new(0)).collect(),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            per_endpoint: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
            last_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn expected(&self) -> u64 {
        (self.n * self.endpoints) as u64
    }

    pub(crate) fn done(&self) -> u64 {
        self.unique.load(Ordering::Relaxed)
    }

    pub(crate) fn receipt(&self, seq: usize, endpoint: usize) -> Option<u64> {
        let t = self.first[seq * self.endpoints + endpoint].load(Ordering::Relaxed);
        (t != 0).then_some(t)
    }
}

pub(crate) struct Sink {
    pub(crate) record: RwLock<Arc<Record>>,
    /// How long the sink takes to answer (`BENCH_SINK_DELAY_MS`), after recording receipt.
    pub(crate) delay: Duration,
}

impl Sink {
    pub(crate) fn reset(&self, n: usize, endpoints: usize) -> Arc<Record> {
        let r = Arc::new(Record::new(n, endpoints));
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = r.clone();
        r
    }
}

/// `/ep<k>` → k.
pub(crate) fn endpoint_index(path: &str) -> Option<usize> {
    path.strip_prefix("/ep")?.parse().ok()
}

/// The `seq` field near the start of a benchmark body, by a cheap scan (no JSON parse).
pub(crate) fn seq_of(body: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"seq\":";
    let head = &body[..body.len().min(64)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut n = 0usize;
    let mut any = false;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
        any = true;
    }
    any.then_some(n)
}

pub(crate) async fn sink_handler(
    State(sink): State<Arc<Sink>>,
    uri: Uri,
    body: Bytes,
) -> StatusCode {
    let t = now_ns();
    let r = sink
        .record
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match (endpoint_index(uri.path()), seq_of(&body)) {
        (Some(e), Some(seq)) if e < r.endpoints && seq < r.n => {
            r.per_endpoint[e].fetch_add(1, Ordering::Relaxed);
            let slot = &r.first[seq * r.endpoints + e];
            if slot
                .compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                r.unique.fetch_add(1, Ordering::Relaxed);
                r.last_ns.fetch_max(t, Ordering::Relaxed);
            } else {
                r.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => {
            r.stray.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !sink.delay.is_zero() {
        tokio::time::sleep(sink.delay).await;
    }
    StatusCode::OK
}

pub(crate) async fn start_sink(delay: Duration) -> anyhow::Result<(Arc<Sink>, u16)> {
    let sink = Arc::new(Sink {
        record: RwLock::new(Arc::new(Record::new(0, 1))),
        delay,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .fallback(axum::routing::post(sink_handler))
        .with_state(sink.clone());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("bench: the sink stopped: {e}");
        }
    });
    Ok((sink, port))
}

// -------------------------------------------------------------------------------------------
// Messages and publishing
// -------------------------------------------------------------------------------------------

pub(crate) fn bodies(tag: &str, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|seq| {
            let mut s = String::with_capacity(BODY_TAIL.len() + 64);
            let _ = write!(
                s,
                r#"{{"seq":{seq},"model_id":"model-{tag}-{seq}",{BODY_TAIL}"#
            );
            Bytes::from(s)
        })
        .collect()
}

/// How far the bridge got, for the publisher's window.
pub(crate) enum Progress {
    /// Messages delivered to every endpoint (sink receipts ÷ endpoints).
    Sink(Arc<Record>),
    /// Messages journaled in Redis (stream + retry set + dead letters of the endpoint).
    Journal {
        conn: MultiplexedConnection,
        prefix: String,
    },
}

impl Progress {
    pub(crate) async fn through(&mut self) -> u64 {
        match self {
            Progress::Sink(r) => r.done() / r.endpoints as u64,
            Progress::Journal { conn, prefix } => journaled(conn, prefix).await,
        }
    }
}

pub(crate) async fn journaled(conn: &mut MultiplexedConnection, prefix: &str) -> u64 {
    let r: redis::RedisResult<(u64, u64, u64)> = redis::pipe()
        .cmd("XLEN")
        .arg(format!("{prefix}:q:ep0"))
        .cmd("ZCARD")
        .arg(format!("{prefix}:retry:ep0"))
        .cmd("XLEN")
        .arg(format!("{prefix}:dlq"))
        .query_async(conn)
        .await;
    r.map(|(a, b, c)| a + b + c).unwrap_or(0)
}

/// Publishes `bodies[from..to]` in pipelined batches, never more than [`WINDOW`] ahead of
/// `progress`. Records each message's publish time (the moment its batch was sent) in
/// `sent`, and returns how many PUBLISH calls reached no subscriber.
pub(crate) async fn publish_batched(
    conn: &mut MultiplexedConnection,
    bodies: &[Bytes],
    range: std::ops::Range<usize>,
    sent: &mut [u64],
    progress: &mut Progress,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut unheard = 0u64;
    let mut i = range.start;
    while i < range.end {
        while i as u64 > progress.through().await + WINDOW {
            if Instant::now() > deadline {
                bail!("the bridge stopped keeping up: {i} published, timed out");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = (i + PUBLISH_BATCH).min(range.end);
        let mut pipe = redis::pipe();
        for b in &bodies[i..end] {
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(b.as_ref());
        }
        let t = now_ns();
        let receivers: Vec<i64> = pipe.query_async(conn).await?;
        sent[i..end].fill(t);
        unheard += receivers.iter().filter(|r| **r < 1).count() as u64;
        i = end;
    }
    Ok(unheard)
}

/// Waits until the sink has every expected receipt; gives up at `deadline` or after 20 s
/// without progress.
pub(crate) async fn wait_for_sink(r: &Record, deadline: Instant) -> bool {
    let mut last = r.done();
    let mut moved = Instant::now();
    loop {
        let now = r.done();
        if now >= r.expected() {
            return true;
        }
        if now != last {
            last = now;
            moved = Instant::now();
        }
        if Instant::now() > deadline || moved.elapsed() > Duration::from_secs(20) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
