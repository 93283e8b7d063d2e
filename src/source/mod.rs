//! Redis sources. Each source runs as one supervised task that yields [`Received`]
//! messages into the ingest channel and keeps its [`SourceState`] up to date.

pub mod pubsub;

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
