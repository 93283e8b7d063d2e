//! `[[endpoints]]`: where messages are delivered, how they are signed, retried and
//! limited, and how an endpoint's URL and headers are shown without their credentials.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::config::{Dur, Scheme, Secret, TlsMaterial, redact_endpoint_url};
use crate::expr::{Filter, Transform};

/// `circuit_breaker = { … }`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CircuitConfig {
    /// Consecutive failed attempts that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before one probe.
    pub recovery_time: Dur,
}

/// An endpoint URL, checked against `[security]` at load.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointUrl(pub(in crate::config) Url);

impl EndpointUrl {
    /// The full URL, credentials in path or query included: only for sending requests and
    /// for `check-config --show-urls`.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL as every output shows it (`/status`, logs, errors, `check-config`): see
    /// [`redact_endpoint_url`]. `Display`, `Debug` and `Serialize` show this too.
    pub fn redacted(&self) -> String {
        redact_endpoint_url(&self.0)
    }
}

impl std::fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for EndpointUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// One `[[endpoints]]` entry, every default applied. `Debug` and `Serialize` show the value
/// of a header whose name looks like a credential (see [`is_sensitive_header`]) as `***`.
#[derive(Clone, Serialize)]
pub struct EndpointConfig {
    /// Unique name: used in metrics, logs, Redis keys and `dlq replay --endpoint`.
    pub name: String,
    /// Where to POST.
    pub url: EndpointUrl,
    /// First signs; the rest are accepted during rotation (or all sign).
    pub secrets: Vec<Secret>,
    /// Signature scheme.
    pub signature: Scheme,
    /// One signature per secret.
    pub sign_with_all_secrets: bool,
    /// Globs over the source channel / key name.
    pub channels: Vec<String>,
    /// Event types to deliver (globs); empty = all.
    pub event_types: Vec<String>,
    /// `filter`: a jq expression over the message; the endpoint receives only the messages
    /// it is truthy for. Applied when a message is routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// `transform` (or the contents of `transform_file`): a jq expression whose single
    /// output is the body sent. Applied at delivery, so a replay runs the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// The file `transform` was read from (resolved against the config file's directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform_file: Option<PathBuf>,
    /// Per-attempt timeout.
    pub timeout: Dur,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First retry delay; doubles each retry.
    pub retry_delay: Dur,
    /// Cap of a retry delay (and of `Retry-After`).
    pub max_retry_delay: Dur,
    /// In-flight requests to this endpoint (1 when `ordered`).
    pub concurrency: usize,
    /// One at a time, in arrival order.
    pub ordered: bool,
    /// Circuit breaker.
    pub circuit_breaker: CircuitConfig,
    /// Extra static headers.
    #[serde(serialize_with = "serialize_headers")]
    pub headers: BTreeMap<String, String>,
    /// `tls = { … }`: a CA to trust and a client certificate for this endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<EndpointTls>,
}

/// An endpoint's `tls = { ca_file, client_cert_file, client_key_file }`; the files are read
/// and checked at load (and again on reload).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointTls {
    /// PEM CA bundle trusted in addition to the system roots (a private CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to the endpoint (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// `sha256:…` of the files' contents: shown by `check-config`, and it makes a renewed
    /// file at the same path a change of the endpoint on reload.
    pub files_sha256: String,
    /// The checked contents of the files.
    #[serde(skip)]
    pub material: Arc<TlsMaterial>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            name,
            url,
            secrets,
            signature,
            sign_with_all_secrets,
            channels,
            event_types,
            filter,
            transform,
            transform_file,
            timeout,
            max_retries,
            retry_delay,
            max_retry_delay,
            concurrency,
            ordered,
            circuit_breaker,
            headers,
            tls,
        } = self;
        f.debug_struct("EndpointConfig")
            .field("name", name)
            .field("url", url)
            .field("secrets", secrets)
            .field("signature", signature)
            .field("sign_with_all_secrets", sign_with_all_secrets)
            .field("channels", channels)
            .field("event_types", event_types)
            // The expressions as written; their compiled programs say nothing useful.
            .field("filter", &filter.as_ref().map(Filter::source))
            .field("transform", &transform.as_ref().map(Transform::source))
            .field("transform_file", transform_file)
            .field("timeout", timeout)
            .field("max_retries", max_retries)
            .field("retry_delay", retry_delay)
            .field("max_retry_delay", max_retry_delay)
            .field("concurrency", concurrency)
            .field("ordered", ordered)
            .field("circuit_breaker", circuit_breaker)
            .field("headers", &RedactedHeaders(headers))
            .field("tls", tls)
            .finish()
    }
}

/// Whether a header's value is likely a credential (`Authorization`, `Cookie`, `X-Api-Key`,
/// anything naming a token, secret, key, password, session or signature): such values are
/// shown as `***` by `check-config`, `Debug` and `/status`-like views.
pub fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "token",
        "secret",
        "key",
        "pass",
        "session",
        "signature",
        "credential",
    ]
    .iter()
    .any(|word| n.contains(word))
}

/// Headers with credential-like values replaced by `***`.
struct RedactedHeaders<'a>(&'a BTreeMap<String, String>);

impl RedactedHeaders<'_> {
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| {
            let shown = if is_sensitive_header(k) { "***" } else { v };
            (k.as_str(), shown)
        })
    }
}

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

fn serialize_headers<S: serde::Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(RedactedHeaders(headers).iter())
}

impl EndpointConfig {
    /// Whether `other` configures this endpoint identically, compared by value: secrets,
    /// header values and the contents of the `tls` files included (which `Serialize` and
    /// `Debug` hide). A reload rebuilds an endpoint only when this is false.
    pub fn same_as(&self, other: &EndpointConfig) -> bool {
        let shape = |e: &EndpointConfig| toml::to_string(e).unwrap_or_default();
        let tls_same = match (&self.tls, &other.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => a.material.same_as(&b.material),
            _ => false,
        };
        shape(self) == shape(other)
            && self.url == other.url
            && self.headers == other.headers
            && tls_same
            && self.secrets.len() == other.secrets.len()
            && self
                .secrets
                .iter()
                .zip(&other.secrets)
                .all(|(x, y)| x.expose() == y.expose())
    }

    /// Whether the endpoint's `filter` lets the message with this body through (always, without
    /// a filter). An error is the filter's, for this message: the caller dead-letters it.
    pub fn accepts(&self, body: &[u8]) -> Result<bool, crate::expr::ExprError> {
        self.filter
            .as_ref()
            .map_or(Ok(true), |f| f.matches_bytes(body))
    }

    /// Whether a message from `channel` with `event_type` goes to this endpoint (its
    /// `filter`, over the content, is [`EndpointConfig::accepts`]).
    pub fn matches(&self, channel: &str, event_type: &str) -> bool {
        globs(&self.channels, channel) && self.takes_event_type(event_type)
    }

    /// Whether `event_types` lets a message of `event_type` through (an empty list: all).
    pub fn takes_event_type(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || globs(&self.event_types, event_type)
    }

    /// What the endpoint does with a message of this body, by its filter and transform:
    /// what `check-config --try` shows. The delivery stages apply the same two steps
    /// (the filter at routing, the transform at delivery).
    pub fn verdict(&self, body: &[u8]) -> Verdict {
        match self.accepts(body) {
            Err(e) => Verdict::FilterFailed(e),
            Ok(false) => Verdict::KeptOut,
            Ok(true) => match &self.transform {
                None => Verdict::Receives(body.to_vec()),
                Some(t) => t
                    .apply(body)
                    .map_or_else(Verdict::TransformFailed, Verdict::Receives),
            },
        }
    }
}

/// Whether any of the globs `pats` matches `s`.
fn globs(pats: &[String], s: &str) -> bool {
    pats.iter().any(|p| wildmatch::WildMatch::new(p).matches(s))
}

/// What an endpoint does with one message ([`EndpointConfig::verdict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is sent this body (the message's own, or the transform's output).
    Receives(Vec<u8>),
    /// The filter keeps it out.
    KeptOut,
    /// The filter fails on it: it is dead-lettered for the endpoint.
    FilterFailed(crate::expr::ExprError),
    /// The transform fails on it: it is dead-lettered for the endpoint.
    TransformFailed(crate::expr::ExprError),
}

impl CircuitConfig {
    /// Recovery time as a `Duration`.
    pub fn recovery(&self) -> Duration {
        self.recovery_time.0
    }
}
