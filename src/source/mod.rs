//! Redis sources. Each source runs as one supervised task ([`spawn`]) that yields
//! [`Received`] messages into the ingest channel and keeps its [`SourceState`] up to date;
//! everything a task needs comes in one [`SourceCtx`].

pub mod list;
pub mod pubsub;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{RedisConfig, SourceConfig, SourceKind, SourceSpec};
use crate::telemetry::metric;
use crate::util::backoff::Backoff;

/// What one source task is given.
pub struct SourceCtx {
    /// The source's settings (its name, kind and what it reads).
    pub cfg: SourceConfig,
    /// `[redis]`: where Redis is, the key prefix and the resubscribe cap.
    pub redis: RedisConfig,
    /// The process's shared connection, for the occasional command beside the source's own
    /// blocking reads (creating a stream's group, claiming a stopped replica's entries).
    pub conn: ConnectionManager,
    /// This replica's consumer name (stream consumer, processing list).
    pub consumer: String,
    /// The source's live state, shared with `/status`, `/readyz` and metrics.
    pub state: Arc<SourceState>,
    /// The ingest channel.
    pub out: mpsc::Sender<Received>,
    /// Stops the source.
    pub shutdown: CancellationToken,
}

/// Starts the task that reads the source `ctx.cfg` describes until shutdown, or until the
/// ingest channel is gone. List and stream sources get a dedicated connection: their
/// blocking reads (`BLMOVE`, `XREADGROUP BLOCK`) would stall a shared one.
pub fn spawn(ctx: SourceCtx) -> redis::RedisResult<JoinHandle<()>> {
    Ok(match ctx.cfg.spec.clone() {
        SourceSpec::PubSub(sub) => tokio::spawn(pubsub::run(ctx, sub)),
        SourceSpec::List(list) => {
            let reader = crate::redis::redis_reader(&ctx.redis.url)?;
            tokio::spawn(list::run(ctx, reader, list))
        }
        SourceSpec::Stream(stream) => {
            let reader = crate::redis::redis_reader(&ctx.redis.url)?;
            tokio::spawn(stream::run(ctx, reader, stream))
        }
    })
}

impl SourceCtx {
    /// The source's name, as every [`Received`] of it carries it.
    fn name(&self) -> Arc<str> {
        Arc::from(self.cfg.name.as_str())
    }

    /// Where this source's messages go, counted.
    fn sink(&self) -> Sink {
        Sink {
            state: self.state.clone(),
            received: metrics::counter!(metric::MESSAGES_RECEIVED, "source" => self.cfg.name.clone()),
            out: self.out.clone(),
        }
    }

    /// Marks a reliable source as disconnected (counted and logged once per loss) and waits
    /// out the backoff. Messages wait in Redis meanwhile, so nothing is lost. Returns false
    /// when shutdown came first.
    async fn connection_lost(&self, e: &redis::RedisError, backoff: &mut Backoff) -> bool {
        let state = &self.state;
        if state.connected.swap(false, Ordering::Relaxed) {
            state.disconnects.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(metric::SOURCE_DISCONNECTS, "source" => self.cfg.name.clone())
                .increment(1);
            tracing::error!(source = %self.cfg.name, redis = %crate::redis::redis_address(), error = %e, "lost the Redis connection of a source; reconnecting (messages wait in Redis)");
        }
        backoff.wait(&self.shutdown).await
    }
}

/// The ingest channel of one source, counting what goes in (`SourceState::received`,
/// `bridge_messages_received_total`).
struct Sink {
    state: Arc<SourceState>,
    received: metrics::Counter,
    out: mpsc::Sender<Received>,
}

impl Sink {
    /// Counts `r` and hands it to ingest; false when ingest is gone (the source stops).
    async fn send(&self, r: Received) -> bool {
        self.state.received.fetch_add(1, Ordering::Relaxed);
        self.received.increment(1);
        self.out.send(r).await.is_ok()
    }
}

/// One message as read from Redis, before ingest looks at it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The source's configured name (metrics label).
    pub source: Arc<str>,
    /// The channel (pubsub) or key (list, stream) it came from: what endpoint `channels` globs
    /// match and what the fallback idempotency key hashes.
    pub channel: String,
    /// The bytes exactly as published.
    pub body: Bytes,
    /// When the bridge read it.
    pub received_at: SystemTime,
    /// Forward `envelope.payload` instead of the whole body.
    pub unwrap_envelope: bool,
    /// What to tell Redis once the message is journaled (list and stream sources).
    pub ack: Option<SourceAck>,
}

/// How a reliable source learns that a message is safely journaled.
#[derive(Debug, Clone)]
pub enum SourceAck {
    /// `LREM <processing> 1 <body>`: the item leaves the processing list.
    List {
        /// The processing list holding the item.
        processing: Arc<str>,
    },
    /// `XACK <key> <group> <id>`.
    Stream {
        /// The source stream.
        key: Arc<str>,
        /// The consumer group.
        group: Arc<str>,
        /// The entry id.
        id: String,
    },
}

/// Adds the acknowledgement of `r` to `pipe`.
pub fn ack_into(pipe: &mut redis::Pipeline, r: &Received) {
    match &r.ack {
        Some(SourceAck::List { processing }) => {
            pipe.cmd("LREM")
                .arg(&**processing)
                .arg(1)
                .arg(r.body.as_ref())
                .ignore();
        }
        Some(SourceAck::Stream { key, group, id }) => {
            pipe.cmd("XACK").arg(&**key).arg(&**group).arg(id).ignore();
        }
        None => {}
    }
}

/// Live state of a source, shared with `/status`, `/readyz` and metrics.
#[derive(Debug, Serialize)]
pub struct SourceState {
    /// pubsub, list or stream.
    pub kind: SourceKind,
    /// The configured name.
    pub name: String,
    /// Subscribed (pubsub) or reading (list, stream) right now.
    pub connected: AtomicBool,
    /// Messages read since start.
    pub received: AtomicU64,
    /// Times the connection was lost since start.
    pub disconnects: AtomicU64,
}

impl SourceState {
    /// A new, not yet connected source.
    pub fn new(kind: SourceKind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_string(),
            connected: AtomicBool::new(false),
            received: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
        }
    }

    /// Whether the source is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
