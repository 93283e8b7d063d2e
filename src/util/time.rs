//! Time as the bridge stores and shows it: unix milliseconds (queue entries, dead letters,
//! metrics timestamps) and RFC 3339 (what `/status` and `dlq list` print).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats unix milliseconds as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
