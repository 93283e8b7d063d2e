//! The pub/sub source: SUBSCRIBE / PSUBSCRIBE, reconnecting with backoff.
//!
//! Pub/sub is at-most-once: whatever is published while the connection is down is not seen.
//! Each loss of the connection is counted (`bridge_source_disconnects_total`) and logged with
//! how long the gap lasted, so an operator can tell a quiet channel from a blind bridge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;

use super::{Received, Sink, SourceCtx};
use crate::config::{PubSubSource, RedisUrl};
use crate::telemetry::metric;
use crate::util::backoff::Backoff;

/// How often an idle subscription is PINGed to notice a dead connection.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a PING may take before the connection is declared dead.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the source until shutdown: subscribe, forward, and on any loss subscribe again with
/// the reconnect backoff, capped at `redis.resubscribe_max_delay` (every second unsubscribed
/// loses messages, so the cap is lower than other loops').
pub async fn run(ctx: SourceCtx, sub: PubSubSource) {
    let name = ctx.name();
    let sink = ctx.sink();
    let mut backoff = Backoff::new(ctx.redis.resubscribe_max_delay.0);
    let mut down_since: Option<Instant> = None;
    loop {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        match subscribe(&ctx.redis.url, &sub).await {
            Ok(pubsub) => {
                if let Some(since) = down_since.take() {
                    tracing::warn!(
                        source = %name,
                        gap_ms = since.elapsed().as_millis() as u64,
                        "resubscribed; messages published during the gap were not seen (pub/sub is at-most-once)"
                    );
                } else {
                    tracing::info!(source = %name, channels = ?sub.channels, patterns = ?sub.patterns, "subscribed");
                }
                backoff.reset();
                ctx.state.connected.store(true, Ordering::Relaxed);
                let end = forward(pubsub, &name, &ctx, &sink).await;
                ctx.state.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Shutdown => break,
                    End::Lost(reason) => {
                        subscription_lost(&ctx, &reason);
                        down_since = Some(Instant::now());
                    }
                }
            }
            Err(e) => {
                down_since.get_or_insert_with(Instant::now);
                if !wait_to_resubscribe(&ctx, &e, &mut backoff).await {
                    break;
                }
            }
        }
    }
    tracing::info!(source = %name, "source stopped");
}

/// Counts and logs the loss of a subscription.
fn subscription_lost(ctx: &SourceCtx, reason: &str) {
    let name = &ctx.cfg.name;
    ctx.state.disconnects.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(metric::SOURCE_DISCONNECTS, "source" => name.clone()).increment(1);
    tracing::error!(source = %name, redis = %ctx.redis.url.redacted(), error = %reason, "lost the Redis subscription; reconnecting");
}

/// Logs a failed attempt to subscribe and waits out the next backoff delay; false when
/// shutdown came first.
async fn wait_to_resubscribe(
    ctx: &SourceCtx,
    e: &redis::RedisError,
    backoff: &mut Backoff,
) -> bool {
    let wait = backoff.next_delay();
    tracing::warn!(
        source = %ctx.cfg.name,
        redis = %ctx.redis.url.redacted(),
        error = %e,
        retry_in_ms = wait.as_millis() as u64,
        "cannot subscribe"
    );
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = ctx.shutdown.cancelled() => false,
    }
}

async fn subscribe(url: &RedisUrl, sub: &PubSubSource) -> redis::RedisResult<redis::aio::PubSub> {
    let client = url.client()?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    if !sub.channels.is_empty() {
        pubsub.subscribe(&sub.channels).await?;
    }
    if !sub.patterns.is_empty() {
        pubsub.psubscribe(&sub.patterns).await?;
    }
    Ok(pubsub)
}

enum End {
    Shutdown,
    Lost(String),
}

/// Forwards every message of `pubsub` to ingest until shutdown or until the connection is
/// lost (closed, or an idle PING unanswered).
async fn forward(pubsub: redis::aio::PubSub, name: &Arc<str>, ctx: &SourceCtx, out: &Sink) -> End {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return End::Shutdown,
            msg = stream.next() => {
                let Some(msg) = msg else { return End::Lost("connection closed".into()) };
                let body = match msg.get_payload::<Vec<u8>>() {
                    Ok(b) => Bytes::from(b),
                    Err(_) => Bytes::copy_from_slice(msg.get_payload_bytes()),
                };
                let r = Received {
                    source: name.clone(),
                    channel: msg.get_channel_name().to_string(),
                    body,
                    received_at: SystemTime::now(),
                    unwrap_envelope: ctx.cfg.unwrap_envelope,
                    ack: None,
                };
                if !out.send(r).await {
                    return End::Shutdown;
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return End::Lost(e.to_string()),
                    Err(_) => return End::Lost("PING timed out".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resubscribe_waits_double_from_100ms_up_to_the_default_one_second_cap() {
        let cap = crate::config::RawConfig::default()
            .redis
            .resubscribe_max_delay
            .0;
        let b = Backoff::new(cap);
        let top: Vec<u128> = (0..6).map(|n| b.base(n).as_millis()).collect();
        assert_eq!(top, vec![100, 200, 400, 800, 1000, 1000]);
        let mut b = Backoff::new(cap);
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
