//! Consumer-group helpers shared by the endpoint queues and the stream source: finishing the
//! work of a replica that stopped.

use redis::Value;
use redis::aio::ConnectionManager;

use crate::redis::reply::{Fields, parse_entries, pending_consumers, pending_ids};

/// Claims the pending entries of every consumer of `stream`/`group` whose heartbeat key
/// (`<replica_prefix><consumer>`) is gone, hands each to `take` (fields `None` when the entry
/// was deleted meanwhile), and removes the dead consumer. Used by the endpoint queues and
/// the stream source alike. `take` returns false to stop.
pub async fn claim_dead_consumers<F, Fut>(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    me: &str,
    replica_prefix: &str,
    take: F,
) -> redis::RedisResult<()>
where
    F: Fn(String, Option<Fields>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let summary: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    for (consumer, _count) in pending_consumers(&summary) {
        if consumer == me {
            continue;
        }
        let alive: bool = redis::cmd("EXISTS")
            .arg(format!("{replica_prefix}{consumer}"))
            .query_async(conn)
            .await?;
        if alive {
            continue;
        }
        let mut claimed = 0usize;
        loop {
            let pending: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .arg("-")
                .arg("+")
                .arg(100)
                .arg(&consumer)
                .query_async(conn)
                .await?;
            let ids = pending_ids(&pending);
            if ids.is_empty() {
                break;
            }
            // min-idle 1000 ms: if another replica claimed these a moment ago, this XCLAIM
            // takes nothing, so no entry is claimed twice.
            let reply: Value = redis::cmd("XCLAIM")
                .arg(stream)
                .arg(group)
                .arg(me)
                .arg(1000)
                .arg(&ids)
                .query_async(conn)
                .await?;
            let entries = parse_entries(reply);
            if entries.is_empty() {
                break;
            }
            for (id, fields) in entries {
                claimed += 1;
                if !take(id, fields).await {
                    return Ok(());
                }
            }
        }
        if claimed > 0 {
            tracing::warn!(stream = %stream, dead_replica = %consumer, entries = claimed, "claimed the unfinished work of a replica that stopped");
        }
        // DELCONSUMER drops the consumer's pending entries with it, so only a consumer with
        // nothing left pending goes. (Entries it read less than the XCLAIM idle minimum ago
        // were not taken above; the next round takes them.)
        let left: Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&consumer)
            .query_async(conn)
            .await?;
        if pending_ids(&left).is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(group)
                .arg(&consumer)
                .query_async(conn)
                .await;
        }
    }
    Ok(())
}
