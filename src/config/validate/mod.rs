//! Validation: the raw shape read by figment becomes the checked [`Config`], with every
//! default applied and every rule checked, one function per section (endpoints and sources
//! in their own files). Each error names the key (`endpoints[0].url`) and what to do, never
//! a value that may be a secret; `load` adds where the value came from.

mod endpoint;
mod expressions;
mod sources;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use endpoint::{EndpointUrlError, validate_endpoint_url};
pub(super) use expressions::resolve_transform_files;
pub use sources::DEFAULT_CHANNEL;

use super::legacy::Legacy;
use super::raw::{self, RawConfig};
use super::{
    AdminConfig, Config, ConfigError, DeliveryConfig, DlqConfig, FallbackConfig, ListSource,
    LogConfig, MigrationConfig, RedisConfig, RedisUrl, RepublishConfig, SecurityConfig,
    SourceConfig, SourceSpec, StreamSource, TargetConfig, TargetKind, TlsKeys, TlsMaterial, tls,
};

/// The checked config of `raw`; `legacy` and `env` supply the registry's variables.
pub(super) fn validate(
    raw: RawConfig,
    legacy: &Legacy,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let redis = validate_redis(raw.redis)?;
    let sources = sources::validate_sources(raw.sources)?;
    let delivery = validate_delivery(raw.delivery)?;
    let security = validate_security(raw.security)?;
    let endpoints = endpoint::validate_endpoints(raw.endpoints, legacy, env, &security)?;
    let republish = validate_republish(raw.republish, &redis, &sources)?;
    let fallback = FallbackConfig {
        enabled: raw.fallback.enabled,
        target: validate_target(
            "fallback",
            raw::RawTarget {
                kind: Some(raw.fallback.kind),
                key: raw.fallback.key,
                redis_url: None,
            },
        )?,
    };
    let admin = validate_admin(raw.admin)?;
    check_log_filter(&raw.log.level)
        .map_err(|e| ConfigError::invalid("log.level", e.to_string()))?;
    Ok(Config {
        redis,
        sources,
        delivery,
        endpoints,
        republish,
        fallback,
        dlq: DlqConfig {
            max_entries: raw.dlq.max_entries,
            max_age: raw.dlq.max_age,
            oversized_body_prefix_bytes: raw.dlq.oversized_body_prefix_bytes,
        },
        security,
        admin,
        log: LogConfig {
            format: raw.log.format,
            level: raw.log.level,
        },
        migration: MigrationConfig {
            legacy_check_interval: raw.migration.legacy_check_interval,
        },
        file: None,
    })
}

/// `[redis]`: the URL, with the `tls_*` files read and checked (they need `rediss://`).
fn validate_redis(raw: raw::RawRedis) -> Result<RedisConfig, ConfigError> {
    let url =
        RedisUrl::parse(&raw.url).map_err(|e| ConfigError::invalid("redis.url", e.to_string()))?;
    let tls_ca_file = tls::path_opt(&raw.tls_ca_file);
    let tls_cert_file = tls::path_opt(&raw.tls_cert_file);
    let tls_key_file = tls::path_opt(&raw.tls_key_file);
    let tls = TlsMaterial::load(
        TlsKeys {
            ca: "redis.tls_ca_file",
            cert: "redis.tls_cert_file",
            key: "redis.tls_key_file",
        },
        tls_ca_file.as_deref(),
        tls_cert_file.as_deref(),
        tls_key_file.as_deref(),
    )?
    .map(Arc::new);
    if tls.is_some() && !url.is_tls() {
        return Err(ConfigError::invalid(
            "redis.url",
            format!(
                "{} is not rediss:// but redis.tls_* files are set; use rediss:// for TLS, or remove the tls_* keys",
                url.redacted()
            ),
        ));
    }
    if raw.key_prefix.trim().is_empty() {
        return Err(ConfigError::invalid(
            "redis.key_prefix",
            "must not be empty",
        ));
    }
    if raw.resubscribe_max_delay.0 < Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "redis.resubscribe_max_delay",
            "must be at least 10ms (e.g. \"1s\")",
        ));
    }
    Ok(RedisConfig {
        tls_files_sha256: tls.as_ref().map(|t| t.fingerprint()),
        url: url.with_tls(tls),
        key_prefix: raw.key_prefix,
        tls_ca_file,
        tls_cert_file,
        tls_key_file,
        resubscribe_max_delay: raw.resubscribe_max_delay,
    })
}

/// `[delivery]`.
fn validate_delivery(raw: raw::RawDelivery) -> Result<DeliveryConfig, ConfigError> {
    if raw.idempotency_key_fields.iter().any(|f| f.is_empty()) {
        return Err(ConfigError::invalid(
            "delivery.idempotency_key_fields",
            "field names must not be empty",
        ));
    }
    Ok(DeliveryConfig {
        durability: raw.durability,
        idempotency_key_fields: raw.idempotency_key_fields,
        dedupe_window: raw.dedupe_window,
        shutdown_timeout: raw.shutdown_timeout,
    })
}

/// `[security]`.
fn validate_security(raw: raw::RawSecurity) -> Result<SecurityConfig, ConfigError> {
    if raw.max_payload_bytes == 0 {
        return Err(ConfigError::invalid(
            "security.max_payload_bytes",
            "must be greater than 0",
        ));
    }
    if raw.max_json_depth == 0 {
        return Err(ConfigError::invalid(
            "security.max_json_depth",
            "must be greater than 0",
        ));
    }
    Ok(SecurityConfig {
        allow_http: raw.allow_http,
        allow_private_networks: raw.allow_private_networks,
        max_payload_bytes: raw.max_payload_bytes,
        max_json_depth: raw.max_json_depth,
    })
}

/// `[republish]`: every target checked, none that would feed a source of this bridge.
fn validate_republish(
    raw: raw::RawRepublish,
    redis: &RedisConfig,
    sources: &[SourceConfig],
) -> Result<RepublishConfig, ConfigError> {
    let mut targets = Vec::with_capacity(raw.targets.len());
    for (i, t) in raw.targets.into_iter().enumerate() {
        let mut t = validate_target(&format!("republish.targets[{i}]"), t)?;
        // The [redis] TLS files apply to every rediss:// connection, targets included.
        t.redis_url = t.redis_url.map(|u| u.with_tls(redis.url.tls()));
        if loops_back(&t, &redis.url, sources) {
            return Err(ConfigError::invalid(
                format!("republish.targets[{i}].key"),
                format!(
                    "`{}` is also a source: republishing there would loop; pick another key or another redis_url",
                    t.key
                ),
            ));
        }
        targets.push(t);
    }
    Ok(RepublishConfig { targets })
}

/// Whether republishing to `t` would be read again by one of `sources` (same Redis, and the
/// channel, list or stream a source reads).
fn loops_back(t: &TargetConfig, redis_url: &RedisUrl, sources: &[SourceConfig]) -> bool {
    let same_redis = t
        .redis_url
        .as_ref()
        .is_none_or(|u| u.expose() == redis_url.expose());
    same_redis
        && sources.iter().any(|s| match (&s.spec, t.kind) {
            (SourceSpec::PubSub(p), TargetKind::Channel) => p.matches(&t.key),
            (SourceSpec::List(ListSource { key }), TargetKind::List)
            | (SourceSpec::Stream(StreamSource { key, .. }), TargetKind::Stream) => *key == t.key,
            _ => false,
        })
}

/// A republish or fallback target at `at` (`republish.targets[0]`, `fallback`).
fn validate_target(at: &str, t: raw::RawTarget) -> Result<TargetConfig, ConfigError> {
    let kind = t.kind.ok_or_else(|| {
        ConfigError::invalid(
            format!("{at}.kind"),
            "unknown target kind; use channel, list or stream",
        )
    })?;
    if t.key.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.key"),
            "must not be empty",
        ));
    }
    let redis_url = t
        .redis_url
        .map(|u| {
            RedisUrl::parse(&u)
                .map_err(|e| ConfigError::invalid(format!("{at}.redis_url"), e.to_string()))
        })
        .transpose()?;
    Ok(TargetConfig {
        kind,
        key: t.key,
        redis_url,
    })
}

/// `[admin]`.
fn validate_admin(raw: raw::RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::invalid("admin.listen", "not an address such as 127.0.0.1:9132")
    })?;
    if raw.protect_metrics && raw.token.is_none() {
        return Err(ConfigError::invalid(
            "admin.protect_metrics",
            "needs admin.token (the token /metrics would require)",
        ));
    }
    let limits = crate::http_server::ServerLimits {
        header_read_timeout: raw.header_read_timeout.0,
        body_read_timeout: raw.body_read_timeout.0,
        max_connections: raw.max_connections,
    };
    limits
        .check()
        .map_err(|(key, why)| ConfigError::invalid(format!("admin.{key}"), why))?;
    Ok(AdminConfig {
        listen,
        token: raw.token,
        protect_metrics: raw.protect_metrics,
        limits,
    })
}

/// The level names a log filter accepts.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// What a log filter may be, ending every [`LogFilterError`] (it names each of
/// [`LOG_LEVELS`]; a unit test keeps the two in step).
const LOG_FILTER_HINT: &str = "use one of trace, debug, info, warn, error, off, or target=level directives joined by commas (e.g. info,redis_webhook_bridge=debug)";

/// Why a log filter is refused. The message names the accepted values, never the value.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// Nothing but commas and blanks.
    #[error("is empty; {LOG_FILTER_HINT}")]
    Empty,
    /// A directive without `=` that is not a level name (a misspelt level).
    #[error("directive {index} of {count} is not a level name; {LOG_FILTER_HINT}")]
    NotALevel {
        /// The directive's position, from 1.
        index: usize,
        /// How many directives the filter has.
        count: usize,
    },
    /// The tracing filter refuses it.
    #[error("is not a log filter ({0}); {LOG_FILTER_HINT}")]
    Syntax(tracing_subscriber::filter::ParseError),
}

/// Checks a `log.level` / `--log-level` / `RUST_LOG` value: comma-separated directives, each
/// a level name or `target=level`. The tracing filter alone would take a misspelt level
/// (`warnn`) as a target name and silence every other log line, so a directive without `=`
/// must be a level.
pub fn check_log_filter(filter: &str) -> Result<(), LogFilterError> {
    let is_level = |s: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err(LogFilterError::Empty);
    }
    for (i, d) in directives.iter().enumerate() {
        let level = match d.rsplit_once('=') {
            // `target[span{field=value}]` carries no level of its own.
            Some((_, level)) if !level.contains([']', '}']) => level,
            _ => d,
        };
        if !d.is_empty() && !is_level(level) {
            return Err(LogFilterError::NotALevel {
                index: i + 1,
                count: directives.len(),
            });
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(LogFilterError::Syntax)
}

impl Config {
    /// Refuses, unless `security.allow_private_networks` is set, an endpoint whose host is a
    /// loopback, private or otherwise non-public address, or a name that resolves only to
    /// such addresses: every delivery to it would be refused and dead-lettered. `check-config`,
    /// `run` at start and a reload call this; other commands skip the name lookups. A name
    /// that does not resolve now passes (DNS may recover), and one with a public address
    /// passes too — delivery still refuses each non-public address it meets.
    pub async fn check_endpoint_networks(&self) -> Result<(), ConfigError> {
        if self.security.allow_private_networks {
            return Ok(());
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            if let Some(what) = private_host(ep.url.url()).await {
                return Err(ConfigError::invalid(
                    format!("endpoints[{i}].url"),
                    format!(
                        "the host {what} loopback or private addresses, and security.allow_private_networks is false, so every delivery would be refused and dead-lettered; set security.allow_private_networks = true (local testing, internal receivers) or use a public host"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `Some("is")` when the host of `url` is a non-public address, `Some("resolves only to")`
/// when it is a name whose every address is non-public; `None` otherwise, and when the name
/// does not resolve within 5 s (a slow resolver must not hold up a start).
async fn private_host(url: &url::Url) -> Option<&'static str> {
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host()? {
        url::Host::Ipv4(ip) => (!crate::util::net::is_public(ip.into())).then_some("is"),
        url::Host::Ipv6(ip) => (!crate::util::net::is_public(ip.into())).then_some("is"),
        url::Host::Domain(name) => {
            let lookup = tokio::net::lookup_host((name, port));
            let addrs: Vec<SocketAddr> = tokio::time::timeout(Duration::from_secs(5), lookup)
                .await
                .ok()?
                .ok()?
                .collect();
            (!addrs.is_empty() && addrs.iter().all(|a| !crate::util::net::is_public(a.ip())))
                .then_some("resolves only to")
        }
    }
}
