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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Received, SourceAck, SourceState, connection_lost};
use crate::config::SourceConfig;
use crate::redis::group::claim_dead_consumers;
use crate::redis::reply::{Fields, parse_read_reply};
use crate::telemetry::metric;

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

/// Runs the stream source until `shutdown`. `reader` is a dedicated connection (XREADGROUP
/// blocks); `conn` is shared, for claims.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut reader: ConnectionManager,
    mut conn: ConnectionManager,
    cfg: SourceConfig,
    consumer: String,
    replica_prefix: String,
    state: Arc<SourceState>,
    out: mpsc::Sender<Received>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = Arc::from(cfg.name.as_str());
    let key: Arc<str> = Arc::from(cfg.key.clone().unwrap_or_default().as_str());
    let group: Arc<str> = Arc::from(
        cfg.group
            .clone()
            .unwrap_or_else(|| "webhook-bridge".into())
            .as_str(),
    );
    let received = metrics::counter!(metric::MESSAGES_RECEIVED, "source" => name.to_string());
    let make = |id: String, fields: Fields| Received {
        source: name.clone(),
        channel: key.to_string(),
        body: Bytes::from(body_of(fields)),
        received_at: SystemTime::now(),
        unwrap_envelope: cfg.unwrap_envelope,
        ack: Some(SourceAck::Stream {
            key: key.clone(),
            group: group.clone(),
            id,
        }),
    };
    let mut backoff = Duration::from_millis(100);
    let mut group_ready = false;
    let mut last_claim: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        if !group_ready {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&*key)
                .arg(&*group)
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match r {
                Ok(()) => group_ready = true,
                Err(e) if e.code() == Some("BUSYGROUP") => group_ready = true,
                Err(e) => {
                    connection_lost(&state, &name, &e, &mut backoff, &shutdown).await;
                    continue;
                }
            }
        }
        if last_claim.is_none_or(|t| t.elapsed() >= CLAIM_EVERY) {
            last_claim = Some(tokio::time::Instant::now());
            let tx = out.clone();
            let claimed = claim_dead_consumers(
                &mut conn,
                &key,
                &group,
                &consumer,
                &replica_prefix,
                |id, fields| {
                    let tx = tx.clone();
                    let r = fields.map(|f| make(id, f));
                    if r.is_some() {
                        state.received.fetch_add(1, Ordering::Relaxed);
                        received.increment(1);
                    }
                    async move {
                        match r {
                            Some(r) => tx.send(r).await.is_ok(),
                            None => true,
                        }
                    }
                },
            )
            .await;
            if let Err(e) = claimed {
                tracing::debug!(source = %name, error = %e, "claiming failed; will try again");
            }
        }
        let mut xread = redis::cmd("XREADGROUP");
        xread
            .arg("GROUP")
            .arg(&*group)
            .arg(&consumer)
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&*key)
            .arg(">");
        let read: redis::RedisResult<redis::Value> = tokio::select! {
            r = xread.query_async(&mut reader) => r,
            _ = shutdown.cancelled() => break,
        };
        let entries = match read {
            Ok(v) => parse_read_reply(v),
            Err(e) => {
                if e.code() == Some("NOGROUP") {
                    group_ready = false;
                }
                connection_lost(&state, &name, &e, &mut backoff, &shutdown).await;
                continue;
            }
        };
        if !state.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(source = %name, stream = %key, group = %group, "reading stream");
        }
        backoff = Duration::from_millis(100);
        for (id, fields) in entries {
            let Some(fields) = fields else { continue };
            state.received.fetch_add(1, Ordering::Relaxed);
            received.increment(1);
            if out.send(make(id, fields)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(source = %name, "source stopped");
}
