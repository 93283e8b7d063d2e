//! The legacy-subscriber check of a migration: while the registry's old Redis consumers
//! still read a source channel, `run` exports how many there are and logs a deprecation
//! warning, so the operator knows when the Redis path can be retired.
//!
//! It lives with the rest of the migration (`migrate plan` counts the same subscribers,
//! `[migration] legacy_check_interval` sets its period) rather than with the pause flag it
//! used to share a file with: the two have nothing in common but Redis.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry::metric;

/// Checks the pub/sub source channels for subscribers other than the bridge's replicas
/// every `interval`, exports `bridge_legacy_subscribers{channel}` and logs a deprecation
/// warning while any remain. Bridge subscribers are counted as live replicas (heartbeat
/// keys) times the sources that list the channel, so a replica that is starting or a
/// running `migrate validate` shows up as one legacy subscriber for a moment. Pattern
/// subscribers are not visible to `PUBSUB NUMSUB`.
pub async fn watch_legacy_subscribers(
    mut conn: ConnectionManager,
    cfg: Arc<Config>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let channels = channel_sources(&cfg);
    if channels.is_empty() || interval.is_zero() {
        return;
    }
    let replica_pattern = cfg.redis.key("replica:*");
    let mut tick = crate::shutdown::Ticker::new(interval, &shutdown);
    while tick.tick().await {
        check_once(&mut conn, &replica_pattern, &channels).await;
    }
}

/// Every channel of a pub/sub source with the number of sources that list it (each
/// replica subscribes once per source).
fn channel_sources(cfg: &Config) -> Vec<(String, u64)> {
    let mut channels: Vec<(String, u64)> = Vec::new();
    for p in cfg.sources.iter().filter_map(|s| s.pubsub()) {
        for c in &p.channels {
            match channels.iter_mut().find(|(name, _)| name == c) {
                Some((_, n)) => *n += 1,
                None => channels.push((c.clone(), 1)),
            }
        }
    }
    channels
}

/// One round: exports each channel's count and warns while legacy subscribers remain. A
/// Redis error skips the round (or the channel); the next round tries again.
async fn check_once(
    conn: &mut ConnectionManager,
    replica_pattern: &str,
    channels: &[(String, u64)],
) {
    for (channel, legacy) in count(conn, replica_pattern, channels).await {
        metrics::gauge!(metric::LEGACY_SUBSCRIBERS, "channel" => channel.clone())
            .set(legacy as f64);
        if legacy > 0 {
            tracing::warn!(
                channel = %channel,
                legacy_subscribers = legacy,
                "deprecation: legacy Redis subscribers still read this channel; move them to webhooks before retiring the Redis path"
            );
        }
    }
}

/// The subscribers other than the bridge's replicas on each pub/sub source channel of
/// `cfg`, now (what the console shows; the same count as `bridge_legacy_subscribers`).
/// Empty when Redis does not answer.
pub async fn legacy_subscribers(conn: &mut ConnectionManager, cfg: &Config) -> Vec<(String, u64)> {
    let channels = channel_sources(cfg);
    count(conn, &cfg.redis.key("replica:*"), &channels).await
}

/// Counts the live replicas, then each channel's subscribers beyond one per replica and
/// source; a channel Redis does not answer for is left out.
async fn count(
    conn: &mut ConnectionManager,
    replica_pattern: &str,
    channels: &[(String, u64)],
) -> Vec<(String, u64)> {
    let replicas =
        match crate::redis::keys::scan_keys(conn, replica_pattern, None, usize::MAX).await {
            Ok(keys) => keys.len() as u64,
            Err(_) => return Vec::new(),
        };
    let mut out = Vec::with_capacity(channels.len());
    for (channel, sources) in channels {
        let r: redis::RedisResult<Vec<(String, u64)>> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(conn)
            .await;
        let Ok(r) = r else { continue };
        let total = r.first().map(|x| x.1).unwrap_or(0);
        out.push((
            channel.clone(),
            total.saturating_sub(replicas.max(1) * sources),
        ));
    }
    out
}
