//! `[[endpoints]]`: every endpoint checked and completed with the defaults (the registry's
//! `WEBHOOK_*` variables first, then the built-in ones), one function per group of keys,
//! and the URL policy every endpoint URL passes at load and again when its client is built.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use url::Url;

use super::expressions::expressions;
use crate::config::legacy::{self, Legacy};
use crate::config::raw::{RawCircuit, RawEndpoint, RawEndpointTls};
use crate::config::{
    CircuitConfig, ConfigError, Dur, EndpointConfig, EndpointTls, EndpointUrl, Scheme,
    SecurityConfig, TlsKeys, TlsMaterial, redact_endpoint_url, tls,
};

const DEFAULT_TIMEOUT: Dur = Dur::secs(30);
const DEFAULT_MAX_RETRIES: u32 = 5;
const DEFAULT_RETRY_DELAY: Dur = Dur::secs(2);
const DEFAULT_MAX_RETRY_DELAY: Dur = Dur::secs(3600);
const DEFAULT_CB_THRESHOLD: u32 = 5;
const DEFAULT_CB_RECOVERY: Dur = Dur::secs(60);
const DEFAULT_CONCURRENCY: usize = 64;

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

/// The endpoints: those of the file, or else the one `WEBHOOK_URL` defines; at least one,
/// with unique names (they name metrics, logs, Redis keys and `dlq replay --endpoint`).
pub(super) fn validate_endpoints(
    mut raw: Vec<RawEndpoint>,
    legacy: &Legacy,
    env: &dyn Fn(&str) -> Option<String>,
    security: &SecurityConfig,
) -> Result<Vec<EndpointConfig>, ConfigError> {
    if raw.is_empty() {
        raw.extend(legacy::default_endpoint(env)?);
    }
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            "endpoints",
            "no endpoint configured; add an [[endpoints]] table or set WEBHOOK_URL and WEBHOOK_SECRET",
        ));
    }
    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw.len());
    for (i, ep) in raw.into_iter().enumerate() {
        let e = validate_endpoint(&Keys(i), ep, legacy, security)?;
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
    Ok(endpoints)
}

/// The keys of `endpoints[i]`.
pub(super) struct Keys(usize);

impl Keys {
    /// `endpoints[i].<key>`.
    fn at(&self, key: &str) -> String {
        format!("endpoints[{}].{key}", self.0)
    }

    /// An error at `endpoints[i].<key>`.
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.at(key), message)
    }
}

/// One endpoint, in the order of its keys' checks: name, url, secrets, timing, concurrency,
/// circuit breaker, headers, tls, filter and transform, channels.
fn validate_endpoint(
    at: &Keys,
    ep: RawEndpoint,
    legacy: &Legacy,
    security: &SecurityConfig,
) -> Result<EndpointConfig, ConfigError> {
    check_name(at, &ep.name)?;
    let url =
        validate_endpoint_url(&ep.url, security).map_err(|e| at.invalid("url", e.to_string()))?;
    let signature = ep.signature.unwrap_or(Scheme::HokusaiV2);
    check_secrets(at, signature, &ep)?;
    let timeout = ep.timeout.or(legacy.timeout).unwrap_or(DEFAULT_TIMEOUT);
    if timeout.0.is_zero() {
        return Err(at.invalid("timeout", "must be greater than 0"));
    }
    let (retry_delay, max_retry_delay) = retry_delays(at, &ep, legacy)?;
    let concurrency = if ep.ordered {
        1
    } else {
        ep.concurrency.unwrap_or(DEFAULT_CONCURRENCY)
    };
    if concurrency == 0 {
        return Err(at.invalid("concurrency", "must be at least 1"));
    }
    let circuit_breaker = circuit(at, &ep.circuit_breaker, legacy)?;
    check_headers(at, &ep.headers)?;
    let tls = ep
        .tls
        .as_ref()
        .map(|t| endpoint_tls(at, t, &url))
        .transpose()?
        .flatten();
    let expressions = expressions(at, &ep, security)?;
    let channels = ep.channels.unwrap_or_else(|| vec!["*".into()]);
    if channels.is_empty() {
        return Err(at.invalid(
            "channels",
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
        filter: expressions.filter,
        transform: expressions.transform,
        transform_file: expressions.transform_file,
        timeout,
        max_retries: ep
            .max_retries
            .or(legacy.max_retries)
            .unwrap_or(DEFAULT_MAX_RETRIES),
        retry_delay,
        max_retry_delay,
        concurrency,
        ordered: ep.ordered,
        circuit_breaker,
        headers: ep.headers,
        tls,
    })
}

/// `name`: letters, digits, `-`, `_` and `.` only (it is part of Redis keys and metric
/// labels).
fn check_name(at: &Keys, name: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(at.invalid(
            "name",
            format!("`{name}` is not a valid name; use letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// `secrets`: at least one, and each one a key under `signature` (a `whsec_` secret must
/// decode), so that a bad secret fails at load and not at the first delivery.
fn check_secrets(at: &Keys, signature: Scheme, ep: &RawEndpoint) -> Result<(), ConfigError> {
    if ep.secrets.is_empty() {
        return Err(at.invalid(
            "secrets",
            "at least one signing secret is required (a literal, env:NAME or file:PATH)",
        ));
    }
    signature
        .check_secrets(&ep.secrets)
        .map_err(|e| at.invalid("secrets", e.to_string()))
}

/// `retry_delay` and `max_retry_delay`, which may not be shorter.
fn retry_delays(at: &Keys, ep: &RawEndpoint, legacy: &Legacy) -> Result<(Dur, Dur), ConfigError> {
    let retry_delay = ep
        .retry_delay
        .or(legacy.retry_delay)
        .unwrap_or(DEFAULT_RETRY_DELAY);
    let max_retry_delay = ep.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY);
    if max_retry_delay < retry_delay {
        return Err(at.invalid(
            "max_retry_delay",
            format!("{max_retry_delay} is shorter than retry_delay {retry_delay}"),
        ));
    }
    Ok((retry_delay, max_retry_delay))
}

/// `circuit_breaker = { failure_threshold, recovery_time }`; the threshold at least 1.
fn circuit(at: &Keys, raw: &RawCircuit, legacy: &Legacy) -> Result<CircuitConfig, ConfigError> {
    let failure_threshold = raw
        .failure_threshold
        .or(legacy.cb_threshold)
        .unwrap_or(DEFAULT_CB_THRESHOLD);
    if failure_threshold == 0 {
        return Err(at.invalid("circuit_breaker.failure_threshold", "must be at least 1"));
    }
    let recovery_time = raw
        .recovery_time
        .or(legacy.cb_recovery)
        .unwrap_or(DEFAULT_CB_RECOVERY);
    Ok(CircuitConfig {
        failure_threshold,
        recovery_time,
    })
}

/// `headers`: valid names and values, none of the headers the bridge sets itself. Only the
/// name is shown in an error: the value may be a credential.
fn check_headers(at: &Keys, headers: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (name, value) in headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| at.invalid("headers", format!("`{name}` is not a valid header name")))?;
        http::HeaderValue::from_str(value).map_err(|_| {
            at.invalid(
                "headers",
                format!("the value of `{name}` is not a valid header value"),
            )
        })?;
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(at.invalid(
                "headers",
                format!("`{name}` is set by the bridge itself and cannot be overridden"),
            ));
        }
    }
    Ok(())
}

/// `tls = { … }`: the files read and checked; `None` when every path is empty. TLS files
/// only make sense for an `https://` endpoint.
fn endpoint_tls(
    at: &Keys,
    t: &RawEndpointTls,
    url: &EndpointUrl,
) -> Result<Option<EndpointTls>, ConfigError> {
    let ca_file = tls::path_opt(&t.ca_file);
    let client_cert_file = tls::path_opt(&t.client_cert_file);
    let client_key_file = tls::path_opt(&t.client_key_file);
    let (ca, cert, key) = (
        at.at("tls.ca_file"),
        at.at("tls.client_cert_file"),
        at.at("tls.client_key_file"),
    );
    let material = TlsMaterial::load(
        TlsKeys {
            ca: &ca,
            cert: &cert,
            key: &key,
        },
        ca_file.as_deref(),
        client_cert_file.as_deref(),
        client_key_file.as_deref(),
    )?;
    let Some(material) = material else {
        return Ok(None);
    };
    if url.url().scheme() != "https" {
        return Err(at.invalid(
            "tls",
            format!(
                "{url}: TLS files only apply to https:// endpoints; use https:// or remove `tls`"
            ),
        ));
    }
    Ok(Some(EndpointTls {
        ca_file,
        client_cert_file,
        client_key_file,
        files_sha256: material.fingerprint(),
        material: Arc::new(material),
    }))
}

/// Why an endpoint URL is refused. Every message shows the URL redacted
/// ([`redact_endpoint_url`]), never its credentials, query or secret-looking path segments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointUrlError {
    /// Not a URL at all.
    #[error("not a valid URL ({0})")]
    NotAUrl(url::ParseError),
    /// User-info in the URL.
    #[error(
        "{0}: credentials in the URL are not allowed; use `headers` for an Authorization header"
    )]
    Credentials(String),
    /// `http://` without `security.allow_http`.
    #[error(
        "{0}: http:// is refused; use https:// or set security.allow_http = true for local testing"
    )]
    Http(String),
    /// Neither `https` nor `http`.
    #[error("{shown}: scheme `{scheme}` is not supported; use https://")]
    Scheme {
        /// The URL, redacted.
        shown: String,
        /// Its scheme.
        scheme: String,
    },
    /// No host to connect to.
    #[error("{0}: the URL has no host")]
    NoHost(String),
}

/// Checks an endpoint URL against the URL policy: http(s) only, `http` only with
/// `allow_http`, no user-info (credentials belong in `headers` or secrets, not in URLs that
/// end up in logs).
pub fn validate_endpoint_url(
    text: &str,
    security: &SecurityConfig,
) -> Result<EndpointUrl, EndpointUrlError> {
    let url = Url::parse(text).map_err(EndpointUrlError::NotAUrl)?;
    let shown = redact_endpoint_url(&url);
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointUrlError::Credentials(shown));
    }
    match url.scheme() {
        "https" => {}
        "http" if security.allow_http => {}
        "http" => return Err(EndpointUrlError::Http(shown)),
        other => {
            return Err(EndpointUrlError::Scheme {
                scheme: other.to_string(),
                shown,
            });
        }
    }
    if url.host().is_none() {
        return Err(EndpointUrlError::NoHost(shown));
    }
    Ok(EndpointUrl(url))
}
