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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Received, SourceState};
use crate::config::{RedisUrl, SourceConfig};
use crate::telemetry::metric;

/// How often an idle subscription is PINGed to notice a dead connection.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long a PING may take before the connection is declared dead.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The first wait before subscribing again.
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Runs the source until `shutdown`: subscribe, forward, and on any loss subscribe again with
/// exponential backoff from 100 ms, jittered within `max_delay` (`redis.resubscribe_max_delay`).
pub async fn run(
    redis_url: RedisUrl,
    max_delay: Duration,
    cfg: SourceConfig,
    state: Arc<SourceState>,
    out: mpsc::Sender<Received>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = Arc::from(cfg.name.as_str());
    let mut backoff = ResubscribeBackoff::new(max_delay);
    let mut down_since: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        match subscribe(&redis_url, &cfg).await {
            Ok(pubsub) => {
                if let Some(since) = down_since.take() {
                    tracing::warn!(
                        source = %name,
                        gap_ms = since.elapsed().as_millis() as u64,
                        "resubscribed; messages published during the gap were not seen (pub/sub is at-most-once)"
                    );
                } else {
                    tracing::info!(source = %name, channels = ?cfg.channels, patterns = ?cfg.patterns, "subscribed");
                }
                backoff = ResubscribeBackoff::new(max_delay);
                state.connected.store(true, Ordering::Relaxed);
                let end = forward(pubsub, &name, &cfg, &state, &out, &shutdown).await;
                state.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Shutdown => break,
                    End::Lost(reason) => {
                        state.disconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(metric::SOURCE_DISCONNECTS, "source" => name.to_string())
                            .increment(1);
                        tracing::error!(source = %name, redis = %redis_url.redacted(), error = %reason, "lost the Redis subscription; reconnecting");
                        down_since = Some(Instant::now());
                    }
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                }
                let wait = backoff.next_delay(rand::random::<f64>());
                tracing::warn!(
                    source = %name,
                    redis = %redis_url.redacted(),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot subscribe"
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracing::info!(source = %name, "source stopped");
}

/// The waits between attempts to subscribe again: the base doubles from 100 ms up to the cap,
/// and each wait is drawn from the upper half of its base ("equal jitter"), so replicas do not
/// retry in lockstep and no wait ever exceeds the cap. Written here rather than with `backon`
/// (used for delivery retries) because backon's jitter adds on top of the capped delay.
#[derive(Debug, Clone)]
struct ResubscribeBackoff {
    base: Duration,
    cap: Duration,
}

impl ResubscribeBackoff {
    fn new(cap: Duration) -> Self {
        Self {
            base: FIRST_DELAY.min(cap),
            cap,
        }
    }

    /// The next wait; `unit` in [0, 1) picks where within the jitter range.
    fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.base.min(self.cap);
        self.base = (self.base * 2).min(self.cap);
        base.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0)).min(self.cap)
    }
}

async fn subscribe(url: &RedisUrl, cfg: &SourceConfig) -> redis::RedisResult<redis::aio::PubSub> {
    let client = url.client()?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    if !cfg.channels.is_empty() {
        pubsub.subscribe(&cfg.channels).await?;
    }
    if !cfg.patterns.is_empty() {
        pubsub.psubscribe(&cfg.patterns).await?;
    }
    Ok(pubsub)
}

enum End {
    Shutdown,
    Lost(String),
}

async fn forward(
    pubsub: redis::aio::PubSub,
    name: &Arc<str>,
    cfg: &SourceConfig,
    state: &SourceState,
    out: &mpsc::Sender<Received>,
    shutdown: &CancellationToken,
) -> End {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let received = metrics::counter!(metric::MESSAGES_RECEIVED, "source" => name.to_string());
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return End::Shutdown,
            msg = stream.next() => {
                let Some(msg) = msg else { return End::Lost("connection closed".into()) };
                let body = match msg.get_payload::<Vec<u8>>() {
                    Ok(b) => Bytes::from(b),
                    Err(_) => Bytes::copy_from_slice(msg.get_payload_bytes()),
                };
                state.received.fetch_add(1, Ordering::Relaxed);
                received.increment(1);
                let r = Received {
                    source: name.clone(),
                    channel: msg.get_channel_name().to_string(),
                    body,
                    received_at: SystemTime::now(),
                    unwrap_envelope: cfg.unwrap_envelope,
                    ack: None,
                };
                if out.send(r).await.is_err() {
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
    fn resubscribe_waits_never_exceed_the_cap_whatever_the_jitter() {
        for cap_ms in [10, 100, 250, 1000, 5000] {
            let cap = Duration::from_millis(cap_ms);
            for unit in [0.0, 0.3, 0.5, 0.999, 1.0] {
                let mut b = ResubscribeBackoff::new(cap);
                for _ in 0..50 {
                    let d = b.next_delay(unit);
                    assert!(d <= cap, "{d:?} > cap {cap:?} (unit {unit})");
                    assert!(!d.is_zero());
                }
            }
        }
    }

    #[test]
    fn resubscribe_waits_double_from_100ms_up_to_the_default_one_second_cap() {
        let mut b = ResubscribeBackoff::new(Duration::from_secs(1));
        let top: Vec<u64> = (0..6)
            .map(|_| b.next_delay(1.0).as_millis() as u64)
            .collect();
        assert_eq!(top, vec![100, 200, 400, 800, 1000, 1000]);
        let mut b = ResubscribeBackoff::new(Duration::from_secs(1));
        let low: Vec<u64> = (0..6)
            .map(|_| b.next_delay(0.0).as_millis() as u64)
            .collect();
        assert_eq!(low, vec![50, 100, 200, 400, 500, 500]);
    }
}
