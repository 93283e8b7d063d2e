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
        let dead = Consumer {
            stream,
            group,
            name: &consumer,
        };
        let Some(claimed) = dead.claim_all(conn, me, &take).await? else {
            return Ok(());
        };
        if claimed > 0 {
            tracing::warn!(stream = %stream, dead_replica = %consumer, entries = claimed, "claimed the unfinished work of a replica that stopped");
        }
        dead.delete_if_done(conn).await?;
    }
    Ok(())
}

/// A consumer of a group, named for the commands about it.
struct Consumer<'a> {
    stream: &'a str,
    group: &'a str,
    name: &'a str,
}

impl Consumer<'_> {
    /// Up to `count` ids of the entries pending for this consumer.
    async fn pending(
        &self,
        conn: &mut ConnectionManager,
        count: usize,
    ) -> redis::RedisResult<Vec<String>> {
        let pending: Value = redis::cmd("XPENDING")
            .arg(self.stream)
            .arg(self.group)
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(self.name)
            .query_async(conn)
            .await?;
        Ok(pending_ids(&pending))
    }

    /// Claims this consumer's pending entries for `me`, 100 at a time, handing each to
    /// `take`. The number claimed, or `None` when `take` asked to stop.
    async fn claim_all<F, Fut>(
        &self,
        conn: &mut ConnectionManager,
        me: &str,
        take: &F,
    ) -> redis::RedisResult<Option<usize>>
    where
        F: Fn(String, Option<Fields>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut claimed = 0usize;
        loop {
            let ids = self.pending(conn, 100).await?;
            if ids.is_empty() {
                return Ok(Some(claimed));
            }
            // min-idle 1000 ms: if another replica claimed these a moment ago, this XCLAIM
            // takes nothing, so no entry is claimed twice.
            let reply: Value = redis::cmd("XCLAIM")
                .arg(self.stream)
                .arg(self.group)
                .arg(me)
                .arg(1000)
                .arg(&ids)
                .query_async(conn)
                .await?;
            let entries = parse_entries(reply);
            if entries.is_empty() {
                return Ok(Some(claimed));
            }
            for (id, fields) in entries {
                claimed += 1;
                if !take(id, fields).await {
                    return Ok(None);
                }
            }
        }
    }

    /// Removes the consumer once nothing is pending for it. DELCONSUMER drops the
    /// consumer's pending entries with it, so only a consumer with nothing left pending goes.
    /// (Entries it read less than the XCLAIM idle minimum ago were not claimed; the next
    /// round takes them.) A failed DELCONSUMER is left for the next round too.
    async fn delete_if_done(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        if self.pending(conn, 1).await?.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(self.stream)
                .arg(self.group)
                .arg(self.name)
                .query_async(conn)
                .await;
        }
        Ok(())
    }
}
