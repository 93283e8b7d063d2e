//! The pub/sub source: SUBSCRIBE / PSUBSCRIBE, reconnecting with backoff.
//!
//! Pub/sub is at-most-once: whatever is published while the connection is down is not seen.
//! Each loss of the connection is counted (`bridge_source_disconnects_total`) and logged with
//! how long the gap lasted, so an operator can tell a quiet channel from a blind bridge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use backon::BackoffBuilder;
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

/// Runs the source until `shutdown`: subscribe, forward, and on any loss reconnect with
/// exponential backoff (100 ms … 5 s, jittered).
pub async fn run(
    redis_url: RedisUrl,
    cfg: SourceConfig,
    state: Arc<SourceState>,
    out: mpsc::Sender<Received>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = Arc::from(cfg.name.as_str());
    let mut backoff = reconnect_backoff();
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
                backoff = reconnect_backoff();
                state.connected.store(true, Ordering::Relaxed);
                let end = forward(pubsub, &name, &cfg, &state, &out, &shutdown).await;
                state.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Shutdown => break,
                    End::Lost(reason) => {
                        state.disconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(metric::SOURCE_DISCONNECTS, "source" => name.to_string())
                            .increment(1);
                        tracing::error!(source = %name, error = %reason, "lost the Redis subscription; reconnecting");
                        down_since = Some(Instant::now());
                    }
                }
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                }
                let wait = backoff.next().unwrap_or(Duration::from_secs(5));
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

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
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
