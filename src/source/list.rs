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

use super::{Received, Sink, SourceAck, SourceCtx};
use crate::config::ListSource;
use crate::util::backoff::Backoff;

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
    /// Keys for the list source `name` reading `list`, as `consumer`.
    pub fn new(key_prefix: &str, name: &str, list: &ListSource, consumer: &str) -> Self {
        let processing_prefix = format!("{key_prefix}:processing:{name}:");
        Self {
            source: list.key.clone(),
            processing: format!("{processing_prefix}{consumer}"),
            processing_prefix,
            replica_prefix: format!("{key_prefix}:replica:"),
        }
    }
}

/// Runs the list source until shutdown, reading with `conn` (a dedicated connection: BLMOVE
/// blocks).
pub async fn run(ctx: SourceCtx, conn: ConnectionManager, list: ListSource) {
    let keys = ListKeys::new(&ctx.redis.key_prefix, &ctx.cfg.name, &list, &ctx.consumer);
    let mut reader = ListReader {
        name: ctx.name(),
        processing: Arc::from(keys.processing.as_str()),
        sink: ctx.sink(),
        mover: redis::Script::new(MOVE_BATCH_LUA),
        backoff: Backoff::default(),
        conn,
        keys,
        ctx,
    };
    if reader.read().await {
        tracing::info!(source = %reader.name, "source stopped");
    }
}

/// One list source's loop and what it keeps between turns.
struct ListReader {
    ctx: SourceCtx,
    conn: ConnectionManager,
    keys: ListKeys,
    name: Arc<str>,
    processing: Arc<str>,
    sink: Sink,
    mover: redis::Script,
    backoff: Backoff,
}

/// What one turn of reading the list gave.
enum Turn {
    /// Items moved into the processing list (none when a blocking wait timed out).
    Items(Vec<Vec<u8>>),
    /// The connection failed.
    Lost(redis::RedisError),
    /// Shutdown came during a blocking wait.
    Shutdown,
}

impl ListReader {
    /// Reads until shutdown (true) or until ingest is gone (false). Every few seconds the
    /// processing lists of stopped replicas are read again first.
    async fn read(&mut self) -> bool {
        let mut last_recover: Option<tokio::time::Instant> = None;
        loop {
            if self.ctx.shutdown.is_cancelled() {
                return true;
            }
            if last_recover.is_none_or(|t| t.elapsed() >= RECOVER_EVERY) {
                last_recover = Some(tokio::time::Instant::now());
                if !self.recover_orphans().await {
                    return false;
                }
            }
            let items = match self.next_items().await {
                Turn::Items(items) => items,
                Turn::Lost(e) => {
                    if !self.ctx.connection_lost(&e, &mut self.backoff).await {
                        return true;
                    }
                    continue;
                }
                Turn::Shutdown => return true,
            };
            if !self.ctx.state.connected.swap(true, Ordering::Relaxed) {
                tracing::info!(source = %self.name, list = %self.keys.source, "reading list");
            }
            self.backoff.reset();
            for item in items {
                let r = self.received(item, &self.processing);
                if !self.sink.send(r).await {
                    return false;
                }
            }
        }
    }

    /// Up to a batch of items, oldest first; when the list is empty, waits (blocking, up to
    /// a second) for one.
    async fn next_items(&mut self) -> Turn {
        let batch: redis::RedisResult<Vec<Vec<u8>>> = self
            .mover
            .key(&self.keys.source)
            .key(&self.keys.processing)
            .arg(BATCH)
            .invoke_async(&mut self.conn)
            .await;
        match batch {
            Ok(items) if items.is_empty() => {}
            Ok(items) => return Turn::Items(items),
            Err(e) => return Turn::Lost(e),
        }
        let mut blmove = redis::cmd("BLMOVE");
        blmove
            .arg(&self.keys.source)
            .arg(&self.keys.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(1);
        let blocked: redis::RedisResult<Option<Vec<u8>>> = tokio::select! {
            r = blmove.query_async(&mut self.conn) => r,
            _ = self.ctx.shutdown.cancelled() => return Turn::Shutdown,
        };
        match blocked {
            Ok(item) => Turn::Items(item.into_iter().collect()),
            Err(e) => Turn::Lost(e),
        }
    }

    /// Re-ingests the items stopped replicas left in their processing lists; false when
    /// ingest is gone. A failed scan is tried again on the next round.
    async fn recover_orphans(&mut self) -> bool {
        let orphans = match recover(&mut self.conn, &self.keys).await {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::debug!(source = %self.name, error = %e, "recovery scan failed; will try again");
                return true;
            }
        };
        for (list, items) in orphans {
            tracing::warn!(source = %self.name, list = %list, items = items.len(), "recovering items a stopped replica left in its processing list");
            let list: Arc<str> = Arc::from(list.as_str());
            for item in items {
                if !self.sink.send(self.received(item, &list)).await {
                    return false;
                }
            }
        }
        true
    }

    /// An item as ingest receives it, to be removed from `processing` once journaled.
    fn received(&self, body: Vec<u8>, processing: &Arc<str>) -> Received {
        Received {
            source: self.name.clone(),
            channel: self.keys.source.clone(),
            body: Bytes::from(body),
            received_at: SystemTime::now(),
            unwrap_envelope: self.ctx.cfg.unwrap_envelope,
            ack: Some(SourceAck::List {
                processing: processing.clone(),
            }),
        }
    }
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
