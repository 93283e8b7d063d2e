//! The cluster-wide pause flag (the kill switch): a key in Redis (`<key_prefix>:paused`)
//! holding who paused, when and why, which `pause` sets, `resume` clears and every replica
//! polls; while it exists, workers start no delivery attempt. Messages keep being received
//! and journaled, so nothing waits anywhere but in the queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often replicas look at the pause key (the contract promises 1 s).
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// What `pause` stores.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PauseInfo {
    /// RFC 3339 time of the pause.
    pub since: String,
    /// `user@host` that paused.
    pub by: String,
    /// Optional reason.
    pub reason: Option<String>,
}

/// The pause key of a prefix.
pub fn pause_key(key_prefix: &str) -> String {
    format!("{key_prefix}:paused")
}

/// Sets the pause flag, recorded as paused by this process's `user@host`.
pub async fn pause(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    reason: Option<String>,
) -> redis::RedisResult<PauseInfo> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    pause_as(conn, key_prefix, format!("{user}@{host}"), reason).await
}

/// Sets the pause flag, recorded as paused `by` (the console names itself and the client's
/// address).
pub async fn pause_as(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    by: String,
    reason: Option<String>,
) -> redis::RedisResult<PauseInfo> {
    let info = PauseInfo {
        since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        by,
        reason,
    };
    let value = serde_json::to_string(&info).unwrap_or_default();
    redis::cmd("SET")
        .arg(pause_key(key_prefix))
        .arg(value)
        .query_async::<()>(conn)
        .await?;
    Ok(info)
}

/// Clears the pause flag; returns whether it was set.
pub async fn resume(conn: &mut ConnectionManager, key_prefix: &str) -> redis::RedisResult<bool> {
    let n: i64 = redis::cmd("DEL")
        .arg(pause_key(key_prefix))
        .query_async(conn)
        .await?;
    Ok(n > 0)
}

/// Reads the pause flag.
pub async fn paused(
    conn: &mut ConnectionManager,
    key_prefix: &str,
) -> redis::RedisResult<Option<PauseInfo>> {
    let v: Option<String> = redis::cmd("GET")
        .arg(pause_key(key_prefix))
        .query_async(conn)
        .await?;
    Ok(v.map(|v| {
        serde_json::from_str(&v).unwrap_or(PauseInfo {
            since: String::new(),
            by: String::new(),
            reason: Some(v),
        })
    }))
}

/// Polls the pause key until `shutdown` and publishes its state. While Redis is
/// unreachable the last known state stays.
pub async fn watch_pause(
    mut conn: ConnectionManager,
    key_prefix: String,
    flag: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut tick = crate::shutdown::Ticker::new(POLL_EVERY, &shutdown);
    while tick.tick().await {
        if let Ok(p) = paused(&mut conn, &key_prefix).await {
            let now = p.is_some();
            if flag.swap(now, Ordering::Relaxed) != now {
                match &p {
                    Some(info) => {
                        tracing::warn!(by = %info.by, reason = info.reason.as_deref().unwrap_or(""), "deliveries paused")
                    }
                    None => tracing::info!("deliveries resumed"),
                }
            }
            tx.send_if_modified(|v| {
                let changed = *v != now;
                *v = now;
                changed
            });
        }
    }
}

/// Waits while deliveries are paused. Returns false if `shutdown` fired first.
pub async fn wait_unpaused(rx: &mut watch::Receiver<bool>, shutdown: &CancellationToken) -> bool {
    loop {
        if !*rx.borrow_and_update() {
            return true;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return true },
            _ = shutdown.cancelled() => return false,
        }
    }
}
