//! Validation: the raw shape read by figment becomes the checked [`Config`], with every
//! default applied and every rule checked. Each error names the key (`endpoints[0].url`)
//! and what to do, never a value that may be a secret.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::legacy::Legacy;
use super::raw::{self, RawConfig};
use super::*;

const DEFAULT_TIMEOUT: Dur = Dur::secs(30);
const DEFAULT_MAX_RETRIES: u32 = 5;
const DEFAULT_RETRY_DELAY: Dur = Dur::secs(2);
const DEFAULT_MAX_RETRY_DELAY: Dur = Dur::secs(3600);
const DEFAULT_CB_THRESHOLD: u32 = 5;
const DEFAULT_CB_RECOVERY: Dur = Dur::secs(60);
const DEFAULT_CONCURRENCY: usize = 64;
/// The consumer group of a stream source without `group`.
const DEFAULT_GROUP: &str = "webhook-bridge";
/// The registry's pub/sub channel: the default source.
pub const DEFAULT_CHANNEL: &str = "hokusai:model_ready_queue:pubsub";

/// Headers the bridge sets itself; `headers = {}` may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "traceparent",
    "x-hokusai-idempotency-key",
    "x-hokusai-event",
    "x-hokusai-delivery-attempt",
    "x-hokusai-signature",
    "x-hokusai-timestamp",
    "x-hokusai-nonce",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

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
            let url = ep.url.url();
            let port = url.port_or_known_default().unwrap_or(443);
            let what = match url.host() {
                Some(url::Host::Ipv4(ip)) => {
                    (!crate::util::net::is_public(ip.into())).then_some("is")
                }
                Some(url::Host::Ipv6(ip)) => {
                    (!crate::util::net::is_public(ip.into())).then_some("is")
                }
                Some(url::Host::Domain(name)) => {
                    // A slow resolver must not hold up a start: no answer in 5 s passes.
                    let lookup = tokio::net::lookup_host((name, port));
                    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                        Ok(Ok(addrs)) => {
                            let addrs: Vec<SocketAddr> = addrs.collect();
                            (!addrs.is_empty()
                                && addrs.iter().all(|a| !crate::util::net::is_public(a.ip())))
                            .then_some("resolves only to")
                        }
                        Ok(Err(_)) | Err(_) => None,
                    }
                }
                None => None,
            };
            if let Some(what) = what {
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

pub(super) fn validate(
    raw: RawConfig,
    legacy: &Legacy,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let redis_url =
        RedisUrl::parse(&raw.redis.url).map_err(|m| ConfigError::invalid("redis.url", m))?;
    let redis_tls_ca_file = tls::path_opt(&raw.redis.tls_ca_file);
    let redis_tls_cert_file = tls::path_opt(&raw.redis.tls_cert_file);
    let redis_tls_key_file = tls::path_opt(&raw.redis.tls_key_file);
    let redis_tls = TlsMaterial::load(
        TlsKeys {
            ca: "redis.tls_ca_file",
            cert: "redis.tls_cert_file",
            key: "redis.tls_key_file",
        },
        redis_tls_ca_file.as_deref(),
        redis_tls_cert_file.as_deref(),
        redis_tls_key_file.as_deref(),
    )?
    .map(Arc::new);
    if redis_tls.is_some() && !redis_url.is_tls() {
        return Err(ConfigError::invalid(
            "redis.url",
            format!(
                "{} is not rediss:// but redis.tls_* files are set; use rediss:// for TLS, or remove the tls_* keys",
                redis_url.redacted()
            ),
        ));
    }
    let redis_url = redis_url.with_tls(redis_tls.clone());
    if raw.redis.key_prefix.trim().is_empty() {
        return Err(ConfigError::invalid(
            "redis.key_prefix",
            "must not be empty",
        ));
    }
    if raw.redis.resubscribe_max_delay.0 < std::time::Duration::from_millis(10) {
        return Err(ConfigError::invalid(
            "redis.resubscribe_max_delay",
            "must be at least 10ms (e.g. \"1s\")",
        ));
    }

    let sources = validate_sources(raw.sources)?;

    if raw
        .delivery
        .idempotency_key_fields
        .iter()
        .any(|f| f.is_empty())
    {
        return Err(ConfigError::invalid(
            "delivery.idempotency_key_fields",
            "field names must not be empty",
        ));
    }

    let security = SecurityConfig {
        allow_http: raw.security.allow_http,
        allow_private_networks: raw.security.allow_private_networks,
        max_payload_bytes: raw.security.max_payload_bytes,
        max_json_depth: raw.security.max_json_depth,
    };
    if security.max_payload_bytes == 0 {
        return Err(ConfigError::invalid(
            "security.max_payload_bytes",
            "must be greater than 0",
        ));
    }
    if security.max_json_depth == 0 {
        return Err(ConfigError::invalid(
            "security.max_json_depth",
            "must be greater than 0",
        ));
    }

    let mut raw_endpoints = raw.endpoints;
    if raw_endpoints.is_empty()
        && let Some(url) = env("WEBHOOK_URL").filter(|v| !v.trim().is_empty())
    {
        let secret = env("WEBHOOK_SECRET")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "WEBHOOK_SECRET",
                        "WEBHOOK_URL is set but WEBHOOK_SECRET is not; every endpoint needs a signing secret",
                    )
                })?;
        // The registry's consumers verify what its original publisher sent: an HMAC of
        // the body alone. The endpoint made from its variables keeps that scheme; define
        // the endpoint in the file to use hokusai-v2.
        raw_endpoints.push(raw::RawEndpoint {
            name: "default".into(),
            url,
            secrets: vec![Secret::from_bytes(secret)],
            signature: Some(Scheme::HokusaiLegacy),
            ..Default::default()
        });
    }
    if raw_endpoints.is_empty() {
        return Err(ConfigError::invalid(
            "endpoints",
            "no endpoint configured; add an [[endpoints]] table or set WEBHOOK_URL and WEBHOOK_SECRET",
        ));
    }
    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw_endpoints.len());
    for (i, ep) in raw_endpoints.into_iter().enumerate() {
        let e = validate_endpoint(i, ep, legacy, &security)?;
        if !names.insert(e.name.clone()) {
            return Err(ConfigError::invalid(
                format!("endpoints[{i}].name"),
                format!(
                    "`{}` is used by another endpoint; names must be unique",
                    e.name
                ),
            ));
        }
        endpoints.push(e);
    }

    let targets = raw
        .republish
        .targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| validate_target(&format!("republish.targets[{i}]"), t))
        .map(|t| {
            // The [redis] TLS files apply to every rediss:// connection, targets included.
            t.map(|mut t| {
                t.redis_url = t.redis_url.map(|u| u.with_tls(redis_tls.clone()));
                t
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, t) in targets.iter().enumerate() {
        let same_redis = t
            .redis_url
            .as_ref()
            .is_none_or(|u| u.expose() == redis_url.expose());
        let loops = same_redis
            && sources.iter().any(|s| match (&s.spec, t.kind) {
                (SourceSpec::PubSub(p), TargetKind::Channel) => p.matches(&t.key),
                (SourceSpec::List(ListSource { key }), TargetKind::List)
                | (SourceSpec::Stream(StreamSource { key, .. }), TargetKind::Stream) => {
                    *key == t.key
                }
                _ => false,
            });
        if loops {
            return Err(ConfigError::invalid(
                format!("republish.targets[{i}].key"),
                format!(
                    "`{}` is also a source: republishing there would loop; pick another key or another redis_url",
                    t.key
                ),
            ));
        }
    }
    let fallback_target = validate_target(
        "fallback",
        raw::RawTarget {
            kind: Some(raw.fallback.kind),
            key: raw.fallback.key,
            redis_url: None,
        },
    )?;

    let listen: SocketAddr = raw.admin.listen.parse().map_err(|_| {
        ConfigError::invalid("admin.listen", "not an address such as 127.0.0.1:9132")
    })?;
    if raw.admin.protect_metrics && raw.admin.token.is_none() {
        return Err(ConfigError::invalid(
            "admin.protect_metrics",
            "needs admin.token (the token /metrics would require)",
        ));
    }
    let limits = crate::http_server::ServerLimits {
        header_read_timeout: raw.admin.header_read_timeout.0,
        body_read_timeout: raw.admin.body_read_timeout.0,
        max_connections: raw.admin.max_connections,
    };
    limits
        .check()
        .map_err(|(key, why)| ConfigError::invalid(format!("admin.{key}"), why))?;
    check_log_filter(&raw.log.level).map_err(|m| ConfigError::invalid("log.level", m))?;

    Ok(Config {
        redis: RedisConfig {
            url: redis_url,
            key_prefix: raw.redis.key_prefix,
            tls_ca_file: redis_tls_ca_file,
            tls_cert_file: redis_tls_cert_file,
            tls_key_file: redis_tls_key_file,
            tls_files_sha256: redis_tls.as_ref().map(|t| t.fingerprint()),
            resubscribe_max_delay: raw.redis.resubscribe_max_delay,
        },
        sources,
        delivery: DeliveryConfig {
            durability: raw.delivery.durability,
            idempotency_key_fields: raw.delivery.idempotency_key_fields,
            dedupe_window: raw.delivery.dedupe_window,
            shutdown_timeout: raw.delivery.shutdown_timeout,
        },
        endpoints,
        republish: RepublishConfig { targets },
        fallback: FallbackConfig {
            enabled: raw.fallback.enabled,
            target: fallback_target,
        },
        dlq: DlqConfig {
            max_entries: raw.dlq.max_entries,
            max_age: raw.dlq.max_age,
            oversized_body_prefix_bytes: raw.dlq.oversized_body_prefix_bytes,
        },
        security,
        admin: AdminConfig {
            listen,
            token: raw.admin.token,
            protect_metrics: raw.admin.protect_metrics,
            limits,
        },
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

/// The level names a log filter accepts.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `log.level` / `--log-level` / `RUST_LOG` value: comma-separated directives, each
/// a level name or `target=level`. The tracing filter alone would take a misspelt level
/// (`warnn`) as a target name and silence every other log line, so a directive without `=`
/// must be a level. The message names the accepted values, never the value itself.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    let accepted = format!(
        "use one of {}, or target=level directives joined by commas (e.g. info,redis_webhook_bridge=debug)",
        LOG_LEVELS.join(", ")
    );
    let is_level = |s: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    let directives: Vec<&str> = filter.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err(format!("is empty; {accepted}"));
    }
    for (i, d) in directives.iter().enumerate() {
        let level = match d.rsplit_once('=') {
            // `target[span{field=value}]` carries no level of its own.
            Some((_, level)) if !level.contains([']', '}']) => level,
            _ => d,
        };
        if !d.is_empty() && !is_level(level) {
            return Err(format!(
                "directive {} of {} is not a level name; {accepted}",
                i + 1,
                directives.len()
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("is not a log filter ({e}); {accepted}"))
}

/// The sources, every default applied; without any, the registry's pub/sub channel.
fn validate_sources(raw: Vec<raw::RawSource>) -> Result<Vec<SourceConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![SourceConfig {
            name: "pubsub".into(),
            unwrap_envelope: false,
            spec: SourceSpec::PubSub(PubSubSource {
                channels: vec![DEFAULT_CHANNEL.into()],
                patterns: vec![],
            }),
        }]);
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let source = validate_source(i, s)?;
        if !names.insert(source.name.clone()) {
            return Err(ConfigError::invalid(
                format!("sources[{i}].name"),
                format!("`{}` is used by another source", source.name),
            ));
        }
        out.push(source);
    }
    Ok(out)
}

/// `sources[i]`: its kind's settings moved into the variant of that kind, and any key of
/// another kind refused by name.
fn validate_source(i: usize, s: raw::RawSource) -> Result<SourceConfig, ConfigError> {
    let at = |k: &str| format!("sources[{i}].{k}");
    let spec = match s.kind {
        SourceKind::Pubsub => {
            if s.channels.is_empty() && s.patterns.is_empty() {
                return Err(ConfigError::invalid(
                    at("channels"),
                    "a pubsub source needs at least one channel or pattern",
                ));
            }
            if let Some(k) = first_set(&[
                ("channels", s.channels.iter().any(String::is_empty)),
                ("patterns", s.patterns.iter().any(String::is_empty)),
            ]) {
                return Err(ConfigError::invalid(
                    at(k),
                    "channel names must not be empty",
                ));
            }
            if let Some(k) = first_set(&[("key", s.key.is_some()), ("group", s.group.is_some())]) {
                return Err(ConfigError::invalid(
                    at(k),
                    "`key` and `group` belong to list and stream sources; a pubsub source uses `channels`",
                ));
            }
            SourceSpec::PubSub(PubSubSource {
                channels: s.channels,
                patterns: s.patterns,
            })
        }
        SourceKind::List | SourceKind::Stream => {
            let key = s.key.filter(|k| !k.is_empty()).ok_or_else(|| {
                ConfigError::invalid(at("key"), "a list or stream source needs `key`")
            })?;
            if let Some(k) = first_set(&[
                ("channels", !s.channels.is_empty()),
                ("patterns", !s.patterns.is_empty()),
            ]) {
                return Err(ConfigError::invalid(
                    at(k),
                    "`channels`/`patterns` belong to pubsub sources; a list or stream source uses `key`",
                ));
            }
            match (s.kind, s.group) {
                (SourceKind::List, None) => SourceSpec::List(ListSource { key }),
                (SourceKind::List, Some(_)) => {
                    return Err(ConfigError::invalid(
                        at("group"),
                        "`group` belongs to stream sources; a list source has no consumer group",
                    ));
                }
                (_, group) => SourceSpec::Stream(StreamSource {
                    key,
                    group: group.unwrap_or_else(|| DEFAULT_GROUP.into()),
                }),
            }
        }
    };
    let name = s.name.unwrap_or_else(|| match &spec {
        SourceSpec::PubSub(_) if i == 0 => "pubsub".into(),
        SourceSpec::PubSub(_) => format!("pubsub{i}"),
        SourceSpec::List(l) => format!("list:{}", l.key),
        SourceSpec::Stream(st) => format!("stream:{}", st.key),
    });
    Ok(SourceConfig {
        name,
        unwrap_envelope: s.unwrap_envelope,
        spec,
    })
}

/// The first key whose condition holds: the key an error names.
fn first_set<'k>(keys: &[(&'k str, bool)]) -> Option<&'k str> {
    keys.iter().find(|(_, set)| *set).map(|(k, _)| *k)
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
            RedisUrl::parse(&u).map_err(|m| ConfigError::invalid(format!("{at}.redis_url"), m))
        })
        .transpose()?;
    Ok(TargetConfig {
        kind,
        key: t.key,
        redis_url,
    })
}

fn validate_endpoint(
    i: usize,
    ep: raw::RawEndpoint,
    legacy: &Legacy,
    security: &SecurityConfig,
) -> Result<EndpointConfig, ConfigError> {
    let at = |k: &str| format!("endpoints[{i}].{k}");
    if ep.name.is_empty()
        || !ep
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError::invalid(
            at("name"),
            format!(
                "`{}` is not a valid name; use letters, digits, '-', '_' or '.'",
                ep.name
            ),
        ));
    }
    let url =
        validate_endpoint_url(&ep.url, security).map_err(|m| ConfigError::invalid(at("url"), m))?;
    if ep.secrets.is_empty() {
        return Err(ConfigError::invalid(
            at("secrets"),
            "at least one signing secret is required (a literal, env:NAME or file:PATH)",
        ));
    }
    let signature = ep.signature.unwrap_or(Scheme::HokusaiV2);
    signature
        .check_secrets(&ep.secrets)
        .map_err(|e| ConfigError::invalid(at("secrets"), e.to_string()))?;

    let timeout = ep.timeout.or(legacy.timeout).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            at("timeout"),
            "must be greater than 0",
        ));
    }
    let retry_delay = ep
        .retry_delay
        .or(legacy.retry_delay)
        .unwrap_or(DEFAULT_RETRY_DELAY);
    let max_retry_delay = ep.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY);
    if max_retry_delay < retry_delay {
        return Err(ConfigError::invalid(
            at("max_retry_delay"),
            format!("{max_retry_delay} is shorter than retry_delay {retry_delay}"),
        ));
    }
    let concurrency = if ep.ordered {
        1
    } else {
        ep.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    };
    if concurrency == 0 {
        return Err(ConfigError::invalid(
            at("concurrency"),
            "must be at least 1",
        ));
    }
    let failure_threshold = ep
        .circuit_breaker
        .failure_threshold
        .or(legacy.cb_threshold)
        .unwrap_or(DEFAULT_CB_THRESHOLD);
    if failure_threshold == 0 {
        return Err(ConfigError::invalid(
            at("circuit_breaker.failure_threshold"),
            "must be at least 1",
        ));
    }
    let recovery_time = ep
        .circuit_breaker
        .recovery_time
        .or(legacy.cb_recovery)
        .unwrap_or(DEFAULT_CB_RECOVERY);
    for (name, value) in &ep.headers {
        let lname = name.to_ascii_lowercase();
        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                at("headers"),
                format!("`{name}` is not a valid header name"),
            )
        })?;
        http::HeaderValue::from_str(value).map_err(|_| {
            ConfigError::invalid(
                at("headers"),
                format!("the value of `{name}` is not a valid header value"),
            )
        })?;
        if RESERVED_HEADERS.contains(&lname.as_str()) {
            return Err(ConfigError::invalid(
                at("headers"),
                format!("`{name}` is set by the bridge itself and cannot be overridden"),
            ));
        }
    }
    let tls = match &ep.tls {
        None => None,
        Some(t) => {
            let ca_file = tls::path_opt(&t.ca_file);
            let client_cert_file = tls::path_opt(&t.client_cert_file);
            let client_key_file = tls::path_opt(&t.client_key_file);
            let (ca_key, cert_key, key_key) = (
                at("tls.ca_file"),
                at("tls.client_cert_file"),
                at("tls.client_key_file"),
            );
            let material = TlsMaterial::load(
                TlsKeys {
                    ca: &ca_key,
                    cert: &cert_key,
                    key: &key_key,
                },
                ca_file.as_deref(),
                client_cert_file.as_deref(),
                client_key_file.as_deref(),
            )?;
            match material {
                None => None,
                Some(_) if url.url().scheme() != "https" => {
                    return Err(ConfigError::invalid(
                        at("tls"),
                        format!(
                            "{}: TLS files only apply to https:// endpoints; use https:// or remove `tls`",
                            url
                        ),
                    ));
                }
                Some(material) => Some(EndpointTls {
                    ca_file,
                    client_cert_file,
                    client_key_file,
                    files_sha256: material.fingerprint(),
                    material: Arc::new(material),
                }),
            }
        }
    };
    let channels = ep.channels.unwrap_or_else(|| vec!["*".into()]);
    if channels.is_empty() {
        return Err(ConfigError::invalid(
            at("channels"),
            "an empty list matches nothing; use [\"*\"] for every channel",
        ));
    }
    Ok(EndpointConfig {
        name: ep.name,
        url,
        secrets: ep.secrets,
        signature,
        sign_with_all_secrets: ep.sign_with_all_secrets,
        channels,
        event_types: ep.event_types,
        timeout,
        max_retries: ep
            .max_retries
            .or(legacy.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES),
        retry_delay,
        max_retry_delay,
        concurrency,
        ordered: ep.ordered,
        circuit_breaker: CircuitConfig {
            failure_threshold,
            recovery_time,
        },
        headers: ep.headers,
        tls,
    })
}

/// Checks an endpoint URL against the URL policy: http(s) only, `http` only with
/// `allow_http`, no user-info (credentials belong in `headers` or secrets, not in URLs that
/// end up in logs). Error messages show the URL redacted ([`redact_endpoint_url`]).
pub fn validate_endpoint_url(text: &str, security: &SecurityConfig) -> Result<EndpointUrl, String> {
    let url = Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))?;
    let shown = redact_endpoint_url(&url);
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown}: credentials in the URL are not allowed; use `headers` for an Authorization header"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if security.allow_http => {}
        "http" => {
            return Err(format!(
                "{shown}: http:// is refused; use https:// or set security.allow_http = true for local testing"
            ));
        }
        other => {
            return Err(format!(
                "{shown}: scheme `{other}` is not supported; use https://"
            ));
        }
    }
    if url.host().is_none() {
        return Err(format!("{shown}: the URL has no host"));
    }
    Ok(EndpointUrl(url))
}
