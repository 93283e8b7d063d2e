//! The stream source: a consumer group on a stream the publisher `XADD`s to.
//!
//! Entries are read with `XREADGROUP` and acknowledged (`XACK`) only after ingest has
//! journaled them. Entries a stopped replica had read but not acknowledged are claimed
//! once its heartbeat is gone. The group is created at the stream's end (`$`) the first
//! time, so history from before the bridge is not replayed.
//!
//! The message body is the entry's `body`, `payload`, `data`, `message` or `json` field,
//! or its only field; an entry with several other fields is forwarded as a JSON object of
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::{Received, Sink, SourceAck, SourceCtx};
use crate::config::StreamSource;
use crate::redis::group::claim_dead_consumers;
use crate::redis::reply::{Fields, parse_read_reply};
use crate::util::backoff::Backoff;

const BODY_FIELDS: &[&str] = &["body", "payload", "data", "message", "json"];
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// The body of a source stream entry (see the module docs). Takes the fields by value so the
/// body's bytes move out of the reply instead of being copied (a large entry would otherwise
/// be in memory twice).
pub fn body_of(mut fields: Fields) -> Vec<u8> {
    for f in BODY_FIELDS {
        if let Some(v) = fields.remove(*f) {
            return v;
        }
    }
    if fields.len() == 1 {
        return fields.into_values().next().unwrap_or_default();
    }
    let obj: BTreeMap<&str, String> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// Runs the stream source until shutdown, reading with `reader` (a dedicated connection:
/// XREADGROUP blocks); the shared `ctx.conn` creates the group and claims.
pub async fn run(ctx: SourceCtx, reader: ConnectionManager, stream: StreamSource) {
    let mut r = StreamReader {
        entry: EntryMaker {
            name: ctx.name(),
            key: Arc::from(stream.key.as_str()),
            group: Arc::from(stream.group.as_str()),
            unwrap_envelope: ctx.cfg.unwrap_envelope,
        },
        replica_prefix: ctx.redis.key("replica:"),
        sink: ctx.sink(),
        backoff: Backoff::default(),
        reader,
        ctx,
    };
    if r.read().await {
        tracing::info!(source = %r.entry.name, "source stopped");
    }
}

/// One stream source's loop and what it keeps between turns.
struct StreamReader {
    ctx: SourceCtx,
    reader: ConnectionManager,
    entry: EntryMaker,
    replica_prefix: String,
    sink: Sink,
    backoff: Backoff,
}

/// Turns stream entries into [`Received`] messages.
struct EntryMaker {
    name: Arc<str>,
    key: Arc<str>,
    group: Arc<str>,
    unwrap_envelope: bool,
}

impl EntryMaker {
    /// Entry `id` as ingest receives it, to be acknowledged once journaled.
    fn received(&self, id: String, fields: Fields) -> Received {
        Received {
            source: self.name.clone(),
            channel: self.key.to_string(),
            body: Bytes::from(body_of(fields)),
            received_at: SystemTime::now(),
            unwrap_envelope: self.unwrap_envelope,
            ack: Some(SourceAck::Stream {
                key: self.key.clone(),
                group: self.group.clone(),
                id,
            }),
        }
    }
}

impl StreamReader {
    /// Reads until shutdown (true) or until ingest is gone (false): the group is created
    /// first (again after a NOGROUP), and once a second entries of stopped replicas are
    /// claimed.
    async fn read(&mut self) -> bool {
        // Its own handle, so that waiting on it does not hold `self` while a read uses it.
        let shutdown = self.ctx.shutdown.clone();
        let mut group_ready = false;
        let mut last_claim: Option<tokio::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return true;
            }
            if !group_ready {
                match self.create_group().await {
                    Ok(()) => group_ready = true,
                    Err(e) => {
                        if !self.ctx.connection_lost(&e, &mut self.backoff).await {
                            return true;
                        }
                        continue;
                    }
                }
            }
            if last_claim.is_none_or(|t| t.elapsed() >= CLAIM_EVERY) {
                last_claim = Some(tokio::time::Instant::now());
                self.claim().await;
            }
            let entries = tokio::select! {
                r = self.next_entries() => r,
                _ = shutdown.cancelled() => return true,
            };
            let entries = match entries {
                Ok(v) => parse_read_reply(v),
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        group_ready = false;
                    }
                    if !self.ctx.connection_lost(&e, &mut self.backoff).await {
                        return true;
                    }
                    continue;
                }
            };
            if !self.ctx.state.connected.swap(true, Ordering::Relaxed) {
                let e = &self.entry;
                tracing::info!(source = %e.name, stream = %e.key, group = %e.group, "reading stream");
            }
            self.backoff.reset();
            for (id, fields) in entries {
                let Some(fields) = fields else { continue };
                if !self.sink.send(self.entry.received(id, fields)).await {
                    return false;
                }
            }
        }
    }

    /// `XGROUP CREATE … $ MKSTREAM`: the group starts at the stream's end, so history from
    /// before the bridge is not replayed. A group that exists already is fine.
    async fn create_group(&mut self) -> redis::RedisResult<()> {
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&*self.entry.key)
            .arg(&*self.entry.group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut self.ctx.conn)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            r => r,
        }
    }

    /// Claims the entries stopped replicas had read but not acknowledged and hands them to
    /// ingest. A failure is tried again on the next round.
    async fn claim(&mut self) {
        let (entry, sink) = (&self.entry, &self.sink);
        let claimed = claim_dead_consumers(
            &mut self.ctx.conn,
            &entry.key,
            &entry.group,
            &self.ctx.consumer,
            &self.replica_prefix,
            |id, fields| {
                let r = fields.map(|f| entry.received(id, f));
                async move {
                    match r {
                        Some(r) => sink.send(r).await,
                        None => true,
                    }
                }
            },
        )
        .await;
        if let Err(e) = claimed {
            tracing::debug!(source = %entry.name, error = %e, "claiming failed; will try again");
        }
    }

    /// Up to 256 new entries for this consumer, waiting up to a second for the first.
    async fn next_entries(&mut self) -> redis::RedisResult<redis::Value> {
        let mut xread = redis::cmd("XREADGROUP");
        xread
            .arg("GROUP")
            .arg(&*self.entry.group)
            .arg(&self.ctx.consumer)
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&*self.entry.key)
            .arg(">");
        xread.query_async(&mut self.reader).await
    }
}
