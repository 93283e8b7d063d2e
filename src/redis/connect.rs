//! Opening Redis connections: every connection the bridge makes goes through here, with the
//! same timeouts, and the first one records the (redacted) address that log lines about
//! Redis errors name. Also this replica's consumer name.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The Redis address (credentials redacted) that log lines about Redis errors name.
///
/// A process talks to one Redis, so it is kept once, when the first connection is set up,
/// rather than threaded through every queue, source and journal just for their log lines.
static REDIS_ADDRESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The redacted address of the Redis this process uses (empty before the first connection).
pub fn redis_address() -> &'static str {
    REDIS_ADDRESS.get().map(String::as_str).unwrap_or("")
}

/// A Redis connection that reconnects by itself, with bounded timeouts so that a dead Redis
/// makes calls fail fast instead of hanging.
pub fn redis_manager(
    url: &crate::config::RedisUrl,
) -> Result<ConnectionManager, redis::RedisError> {
    let _ = REDIS_ADDRESS.set(url.redacted());
    manager(url, Duration::from_secs(5))
}

/// A dedicated connection for blocking reads (XREADGROUP BLOCK would stall a shared one),
/// with a response timeout longer than the block.
pub fn redis_reader(url: &crate::config::RedisUrl) -> Result<ConnectionManager, redis::RedisError> {
    manager(url, Duration::from_secs(10))
}

fn manager(
    url: &crate::config::RedisUrl,
    response_timeout: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(url.client()?, cfg)
}

/// This replica's consumer name: `<hostname>-<pid>-<random>`, unique per process so that
/// replicas on one host never share pending entries.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bridge".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
