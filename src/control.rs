//! The cluster-wide kill switch: a key in Redis (`<key_prefix>:paused`) that every replica
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

/// Sets the pause flag.
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
    let info = PauseInfo {
        since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        by: format!("{user}@{host}"),
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

/// Checks the pub/sub source channels for subscribers other than the bridge's replicas
/// every `interval`, exports `bridge_legacy_subscribers{channel}` and logs a deprecation
/// warning while any remain. Bridge subscribers are counted as live replicas (heartbeat
/// keys) times the sources that list the channel, so a replica that is starting or a
/// running `migrate validate` shows up as one legacy subscriber for a moment. Pattern
/// subscribers are not visible to `PUBSUB NUMSUB`.
pub async fn watch_legacy_subscribers(
    mut conn: ConnectionManager,
    cfg: std::sync::Arc<crate::config::Config>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut channels: Vec<(String, u64)> = Vec::new();
    for p in cfg.sources.iter().filter_map(|s| s.pubsub()) {
        for c in &p.channels {
            match channels.iter_mut().find(|(name, _)| name == c) {
                Some((_, n)) => *n += 1,
                None => channels.push((c.clone(), 1)),
            }
        }
    }
    if channels.is_empty() || interval.is_zero() {
        return;
    }
    let replica_pattern = cfg.redis.key("replica:*");
    let mut tick = crate::shutdown::Ticker::new(interval, &shutdown);
    while tick.tick().await {
        let replicas = match crate::redis::keys::scan_keys(
            &mut conn,
            &replica_pattern,
            None,
            usize::MAX,
        )
        .await
        {
            Ok(keys) => keys.len() as u64,
            Err(_) => continue,
        };
        for (channel, sources) in &channels {
            let r: redis::RedisResult<Vec<(String, u64)>> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut conn)
                .await;
            let Ok(r) = r else { continue };
            let total = r.first().map(|x| x.1).unwrap_or(0);
            let legacy = total.saturating_sub(replicas.max(1) * sources);
            metrics::gauge!(crate::telemetry::metric::LEGACY_SUBSCRIBERS, "channel" => channel.clone()).set(legacy as f64);
            if legacy > 0 {
                tracing::warn!(
                    channel = %channel,
                    legacy_subscribers = legacy,
                    "deprecation: legacy Redis subscribers still read this channel; move them to webhooks before retiring the Redis path"
                );
            }
        }
    }
}
