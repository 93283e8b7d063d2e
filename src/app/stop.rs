//! Stopping `run` in an order that loses nothing: the sources stop taking messages, ingest
//! drains what they handed it, the workers finish their in-flight deliveries within
//! `shutdown_timeout`, and only then do the durable queues' background tasks stop, so the
//! acknowledgements of those last deliveries still land.

use std::time::Duration;

use super::start::Running;
use crate::shutdown::Shutdown;

/// Waits for every part of `running` to stop after the shutdown token fired, in order.
/// `deadline` is the running config's `shutdown_timeout`.
pub(super) async fn stop(running: Running, deadline: Duration, shutdown: &Shutdown) {
    let Running {
        mut endpoints,
        sources,
        ingest,
        queue_stop,
        heartbeat,
        admin,
        ..
    } = running;
    for t in sources {
        let _ = t.await;
    }
    let _ = ingest.await;
    endpoints.join_workers().await;
    if shutdown.drain(deadline).await {
        tracing::info!("all in-flight deliveries finished");
    } else {
        tracing::warn!(
            timeout_ms = deadline.as_millis() as u64,
            "shutdown_timeout passed with deliveries still in flight; leaving them"
        );
    }
    endpoints.finish().await;
    queue_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), heartbeat).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
    tracing::info!("bridge stopped");
}
