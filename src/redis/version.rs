//! The oldest Redis the bridge runs against, and the start-up check that refuses an older
//! server with an error naming both versions.
//!
//! Why 6.2.0: the list source moves items with `LMOVE`/`BLMOVE` and `migrate validate` reads
//! scores with `ZMSCORE`, all three added in Redis 6.2.0; the durable queues use `XPENDING`
//! with `IDLE` and `SCAN … TYPE` (6.2 and 6.0). On an older server these fail only when
//! first used, deep in a source or a queue; checking `INFO server` at start says so at once.

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::util::backoff::Backoff;

/// The oldest supported Redis version.
pub const MIN_REDIS_VERSION: Version = Version(6, 2, 0);

/// A Redis version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Why the server's version is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    /// The server is older than [`MIN_REDIS_VERSION`].
    #[error(
        "the Redis server is version {found}, older than {MIN_REDIS_VERSION}, the oldest the \
         bridge supports (it needs LMOVE, BLMOVE and ZMSCORE): upgrade Redis to {MIN_REDIS_VERSION} or newer"
    )]
    TooOld {
        /// The server's `redis_version`.
        found: Version,
    },
    /// `INFO server` has no readable `redis_version` line.
    #[error("the Redis server's INFO has no readable redis_version line")]
    Unreadable,
}

/// The `redis_version` of an `INFO server` reply (extra parts such as `-rc1` ignored).
pub fn parse_version(info: &str) -> Option<Version> {
    let value = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))?;
    let mut parts = value.trim().split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some(Version(major, minor, patch))
}

/// Accepts the `INFO server` reply of a supported server; returns its version.
pub fn check_info(info: &str) -> Result<Version, VersionError> {
    let found = parse_version(info).ok_or(VersionError::Unreadable)?;
    if found < MIN_REDIS_VERSION {
        return Err(VersionError::TooOld { found });
    }
    Ok(found)
}

/// Waits until Redis answers `INFO server` (retrying while it is unreachable, until
/// `shutdown`) and fails when the server is too old. A server that refuses `INFO` itself (an
/// ACL without `+info`, a renamed command) is let through with a warning: the version is then
/// unknown, not known to be too old.
pub async fn require_supported(
    conn: &mut ConnectionManager,
    shutdown: &CancellationToken,
) -> Result<(), VersionError> {
    let mut backoff = Backoff::default();
    loop {
        let reply: redis::RedisResult<String> =
            redis::cmd("INFO").arg("server").query_async(conn).await;
        match reply {
            Ok(info) => {
                let version = check_info(&info)?;
                tracing::info!(redis_version = %version, "Redis server version supported");
                return Ok(());
            }
            Err(e)
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal() =>
            {
                // The wait is drawn first so that the line can say how long it is.
                let delay = backoff.next_delay();
                // The same cause (refused, TLS, timeout) as the sources will log once they run.
                tracing::warn!(
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot reach Redis to check its version; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Redis server's version (INFO server); assuming it is {MIN_REDIS_VERSION} or newer");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> String {
        format!(
            "# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n"
        )
    }

    #[test]
    fn versions_from_6_2_0_on_are_supported() {
        for (v, want) in [
            ("6.2.0", Version(6, 2, 0)),
            ("6.2.14", Version(6, 2, 14)),
            ("7.0.15", Version(7, 0, 15)),
            ("7.2.4", Version(7, 2, 4)),
            ("8.0.0-rc1", Version(8, 0, 0)),
            ("10.0.1", Version(10, 0, 1)),
        ] {
            assert_eq!(check_info(&info(v)), Ok(want), "{v}");
        }
    }

    #[test]
    fn older_versions_are_refused_naming_the_version_and_the_minimum() {
        for (v, found) in [
            ("6.0.20", Version(6, 0, 20)),
            ("6.1.99", Version(6, 1, 99)),
            ("5.0.14", Version(5, 0, 14)),
            ("2.8.24", Version(2, 8, 24)),
        ] {
            let err = check_info(&info(v)).unwrap_err();
            assert_eq!(err, VersionError::TooOld { found }, "{v}");
            let text = err.to_string();
            assert!(
                text.contains(&found.to_string()) && text.contains("6.2.0"),
                "{text}"
            );
        }
    }

    #[test]
    fn an_info_without_a_readable_version_is_an_error() {
        assert_eq!(
            check_info("# Server\r\nredis_mode:standalone\r\n"),
            Err(VersionError::Unreadable)
        );
        assert_eq!(check_info(&info("unknown")), Err(VersionError::Unreadable));
    }
}
