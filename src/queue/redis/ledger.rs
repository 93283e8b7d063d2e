//! The delivery ledger of each endpoint: which idempotency keys were journaled for it,
//! delivered to it or dead-lettered (what `migrate validate` checks), and how it is kept
//! bounded.

use std::time::Duration;

/// How long the delivery ledger remembers a message (what `migrate validate` can check).
pub const LEDGER_WINDOW: Duration = Duration::from_secs(6 * 3600);
/// At most this many keys per ledger set; the oldest go first.
pub const LEDGER_MAX: u64 = 1_000_000;

/// The delivery ledger of one endpoint: which idempotency keys were journaled for it,
/// delivered to it, or dead-lettered, each scored by time (ms). Bounded by
/// [`LEDGER_WINDOW`] and [`LEDGER_MAX`].
#[derive(Debug, Clone)]
pub struct LedgerKeys {
    /// Journaled for the endpoint.
    pub queued: String,
    /// Delivered (2xx).
    pub delivered: String,
    /// Dead-lettered.
    pub dead: String,
}

impl LedgerKeys {
    /// The ledger of `endpoint` under `key_prefix`.
    pub fn new(key_prefix: &str, endpoint: &str) -> Self {
        Self {
            queued: format!("{key_prefix}:ledger:{endpoint}:queued"),
            delivered: format!("{key_prefix}:ledger:{endpoint}:delivered"),
            dead: format!("{key_prefix}:ledger:{endpoint}:dead"),
        }
    }

    /// Adds the commands that drop entries older than the window or beyond the cap.
    pub fn trim_into(&self, pipe: &mut redis::Pipeline, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(LEDGER_WINDOW.as_millis() as u64);
        for k in [&self.queued, &self.delivered, &self.dead] {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(k)
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .ignore();
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(k)
                .arg(0)
                .arg(-(LEDGER_MAX as i64) - 1)
                .ignore();
        }
    }
}
