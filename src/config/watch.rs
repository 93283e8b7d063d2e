//! Reload triggers: SIGHUP, and a change of the config file's content.
//!
//! The file is polled (content hash every 2 s) rather than watched with inotify: Kubernetes
//! updates a mounted ConfigMap by swapping a symlinked directory, which file watches on the
//! old path miss, while a poll of the path always sees the new content.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the config file is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Why a reload was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// The file's content changed.
    FileChanged,
}

impl Trigger {
    /// A label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChanged => "file change",
        }
    }
}

fn content_hash(path: &PathBuf) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Starts the triggers; each request arrives on the returned channel until `shutdown`.
pub fn reload_requests(
    file: Option<PathBuf>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Trigger> {
    let (tx, rx) = mpsc::channel(4);
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload on file change only");
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = tx.try_send(Trigger::Signal); }
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    if let Some(path) = file {
        tokio::spawn(async move {
            let mut last = content_hash(&path);
            let mut tick = crate::shutdown::Ticker::new(POLL_EVERY, &shutdown);
            while tick.tick().await {
                let now = content_hash(&path);
                if now.is_some() && now != last {
                    last = now;
                    let _ = tx.try_send(Trigger::FileChanged);
                }
            }
        });
    }
    rx
}
