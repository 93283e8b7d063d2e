//! Redis sources. Each source runs as one supervised task that yields [`Received`]
//! messages into the ingest channel and keeps its [`SourceState`] up to date.

pub mod list;
pub mod pubsub;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use crate::config::SourceKind;

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

/// Marks a reliable source as disconnected (counted and logged once per loss) and waits
/// out the backoff. Messages wait in Redis meanwhile, so nothing is lost.
pub(crate) async fn connection_lost(
    state: &SourceState,
    name: &str,
    e: &redis::RedisError,
    backoff: &mut std::time::Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    if state.connected.swap(false, Ordering::Relaxed) {
        state.disconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::telemetry::metric::SOURCE_DISCONNECTS, "source" => name.to_string()).increment(1);
        tracing::error!(source = %name, redis = %crate::redis::redis_address(), error = %e, "lost the Redis connection of a source; reconnecting (messages wait in Redis)");
    }
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.cancelled() => {}
    }
    *backoff = (*backoff * 2).min(std::time::Duration::from_secs(5));
}
