//! The list source: reliable consumption of a list the publisher `LPUSH`es to.
//!
//! Items are moved atomically (`LMOVE … RIGHT LEFT`, oldest first) into this replica's
//! processing list `<key_prefix>:processing:<source>:<consumer>` and removed from it only
//! after ingest has journaled them. Processing lists of replicas whose heartbeat is gone
//! (crashed, killed) are read again at start and every few seconds; their items are
//! re-ingested, and the journal's de-duplication by idempotency key drops any that had
//! been journaled already.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Received, SourceAck, SourceState, connection_lost};
use crate::config::SourceConfig;
use crate::telemetry::metric;

/// Moves up to ARGV[1] items from KEYS[1] to KEYS[2], oldest first.
const MOVE_BATCH_LUA: &str = r#"
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not v then break end
  out[#out + 1] = v
end
return out
"#;

const BATCH: usize = 256;
const RECOVER_EVERY: Duration = Duration::from_secs(5);

/// Where a list source keeps its items while they are being journaled.
pub struct ListKeys {
    /// The source list.
    pub source: String,
    /// Prefix of every replica's processing list for this source.
    pub processing_prefix: String,
    /// This replica's processing list.
    pub processing: String,
    /// Prefix of heartbeat keys.
    pub replica_prefix: String,
}

impl ListKeys {
    /// Keys for source `cfg` read by `consumer`.
    pub fn new(key_prefix: &str, cfg: &SourceConfig, consumer: &str) -> Self {
        let processing_prefix = format!("{key_prefix}:processing:{}:", cfg.name);
        Self {
            source: cfg.key.clone().unwrap_or_default(),
            processing: format!("{processing_prefix}{consumer}"),
            processing_prefix,
            replica_prefix: format!("{key_prefix}:replica:"),
        }
    }
}

/// Runs the list source until `shutdown`.
pub async fn run(
    mut conn: ConnectionManager,
    keys: ListKeys,
    cfg: SourceConfig,
    state: Arc<SourceState>,
    out: mpsc::Sender<Received>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = Arc::from(cfg.name.as_str());
    let processing: Arc<str> = Arc::from(keys.processing.as_str());
    let received = metrics::counter!(metric::MESSAGES_RECEIVED, "source" => name.to_string());
    let mover = redis::Script::new(MOVE_BATCH_LUA);
    let mut last_recover: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let make = |body: Vec<u8>, processing: &Arc<str>| Received {
        source: name.clone(),
        channel: keys.source.clone(),
        body: Bytes::from(body),
        received_at: SystemTime::now(),
        unwrap_envelope: cfg.unwrap_envelope,
        ack: Some(SourceAck::List {
            processing: processing.clone(),
        }),
    };
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if last_recover.is_none_or(|t| t.elapsed() >= RECOVER_EVERY) {
            last_recover = Some(tokio::time::Instant::now());
            match recover(&mut conn, &keys).await {
                Ok(orphans) => {
                    for (list, items) in orphans {
                        tracing::warn!(source = %name, list = %list, items = items.len(), "recovering items a stopped replica left in its processing list");
                        let list: Arc<str> = Arc::from(list.as_str());
                        for item in items {
                            state.received.fetch_add(1, Ordering::Relaxed);
                            received.increment(1);
                            if out.send(make(item, &list)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(source = %name, error = %e, "recovery scan failed; will try again")
                }
            }
        }
        let batch: redis::RedisResult<Vec<Vec<u8>>> = mover
            .key(&keys.source)
            .key(&keys.processing)
            .arg(BATCH)
            .invoke_async(&mut conn)
            .await;
        let mut items = match batch {
            Ok(items) => items,
            Err(e) => {
                connection_lost(&state, &name, &e, &mut backoff, &shutdown).await;
                continue;
            }
        };
        if items.is_empty() {
            let mut blmove = redis::cmd("BLMOVE");
            blmove
                .arg(&keys.source)
                .arg(&keys.processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(1);
            let blocked: redis::RedisResult<Option<Vec<u8>>> = tokio::select! {
                r = blmove.query_async(&mut conn) => r,
                _ = shutdown.cancelled() => break,
            };
            match blocked {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(e) => {
                    connection_lost(&state, &name, &e, &mut backoff, &shutdown).await;
                    continue;
                }
            }
        }
        if !state.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(source = %name, list = %keys.source, "reading list");
        }
        backoff = Duration::from_millis(100);
        for item in items {
            state.received.fetch_add(1, Ordering::Relaxed);
            received.increment(1);
            if out.send(make(item, &processing)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(source = %name, "source stopped");
}

/// Items in processing lists of replicas whose heartbeat is gone.
async fn recover(
    conn: &mut ConnectionManager,
    keys: &ListKeys,
) -> redis::RedisResult<Vec<(String, Vec<Vec<u8>>)>> {
    let pattern = format!("{}*", keys.processing_prefix);
    let mut out = Vec::new();
    for list in crate::redis::keys::scan_keys(conn, &pattern, None, usize::MAX).await? {
        if list == keys.processing {
            continue;
        }
        let consumer = &list[keys.processing_prefix.len()..];
        let alive: bool = redis::cmd("EXISTS")
            .arg(format!("{}{consumer}", keys.replica_prefix))
            .query_async(conn)
            .await?;
        if alive {
            continue;
        }
        // Oldest first: items were pushed on the left.
        let mut items: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        items.reverse();
        if !items.is_empty() {
            out.push((list, items));
        }
    }
    Ok(out)
}
