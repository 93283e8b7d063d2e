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
