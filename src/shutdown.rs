//! Shutdown: one cancellation token for every long-lived task, a tracker for in-flight
//! work, and the drain that waits for it with a deadline.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process-wide shutdown signal and the tracker of in-flight work.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Cancelled when the process should stop taking new work.
    pub token: CancellationToken,
    /// Every task that must finish (or be abandoned at the deadline) before exit.
    pub tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the token when SIGTERM or SIGINT arrives.
    pub fn on_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing in-flight deliveries");
            token.cancel();
        });
    }

    /// Waits for tracked tasks; returns `false` if `deadline` passed first.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// A periodic tick that ends with shutdown, for the bridge's background loops:
/// `while ticker.tick().await { … }`. A late tick is delayed, not bunched up.
pub struct Ticker {
    interval: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticker {
    /// Ticks every `period` (the first tick at once) until `stop` fires.
    pub fn new(period: Duration, stop: &CancellationToken) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            interval,
            stop: stop.clone(),
        }
    }

    /// Waits for the next tick; false once `stop` fired.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => !self.stop.is_cancelled(),
            _ = self.stop.cancelled() => false,
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
