//! Configuration: figment layering, the registry's legacy variables, secret references,
//! validation.
//!
//! Layers, later wins: built-in defaults → TOML file → legacy variables (`WEBHOOK_*`,
//! `REDIS_*`, `ENABLE_REDIS_FALLBACK`) → `BRIDGE_*` variables (`__` nests) → command-line
//! flags. `.env` is loaded into the environment by `main` before this runs. The result,
//! [`Config`], holds checked values only: URLs parsed, secrets resolved, durations typed.

mod duration;
mod error;
mod raw;
mod redact;
mod scheme;
pub mod secret;
mod tls;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Serialized};
use serde::Serialize;
use url::Url;

pub use duration::Dur;
pub use raw::RawConfig;
pub use redact::{redact_endpoint_url, redact_url};
pub use scheme::Scheme;
pub use secret::{Secret, SecretError};
pub use tls::{TlsKeys, TlsMaterial};

/// Everything that can be wrong with a configuration. Each message names the key (or
/// variable, or file) and never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A key has a wrong value (or is unknown).
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        /// The dotted key, e.g. `endpoints[0].url`, or an environment variable's name.
        key: String,
        /// Where the value came from (` (in file x.toml)`), or empty.
        origin: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A command-line flag has a wrong value.
    #[error("flag `{flag}`: {message}")]
    Flag {
        /// The flag, e.g. `--log-level`.
        flag: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            origin: String::new(),
            message: message.into(),
        }
    }
}

/// Inputs to [`Config::load`] that come from the command line.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// `--config` / `BRIDGE_CONFIG`.
    pub file: Option<PathBuf>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `run --admin-listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `[redis]`.
    pub redis: RedisConfig,
    /// `[[sources]]`; defaults to the registry's pub/sub channel.
    pub sources: Vec<SourceConfig>,
    /// `[delivery]`.
    pub delivery: DeliveryConfig,
    /// `[[endpoints]]`; at least one.
    pub endpoints: Vec<EndpointConfig>,
    /// `[republish]`.
    pub republish: RepublishConfig,
    /// `[fallback]`.
    pub fallback: FallbackConfig,
    /// `[dlq]`.
    pub dlq: DlqConfig,
    /// `[security]`.
    pub security: SecurityConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[migration]`.
    pub migration: MigrationConfig,
    /// The file the config came from, if any (for reload).
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// A Redis URL, plus the TLS material (`[redis] tls_*_file`) used when it is `rediss://`;
/// `Debug` and `Serialize` hide the password.
#[derive(Clone)]
pub struct RedisUrl {
    url: Url,
    tls: Option<Arc<TlsMaterial>>,
}

impl RedisUrl {
    /// Parses and checks the scheme (`redis`, `rediss`, `unix`). Error messages never
    /// repeat the URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text)
            .map_err(|e| format!("not a valid URL ({e}); expected e.g. redis://127.0.0.1:6379"))?;
        match url.scheme() {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Self { url, tls: None }),
            other => Err(format!(
                "unsupported scheme `{other}`; use redis:// (or rediss:// for TLS)"
            )),
        }
    }

    /// Uses `tls` (a CA to trust, a client certificate) when this URL is `rediss://`.
    pub fn with_tls(mut self, tls: Option<Arc<TlsMaterial>>) -> Self {
        self.tls = tls;
        self
    }

    /// Whether connections are TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "rediss"
    }

    /// The full URL, credentials included: only for opening the connection.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// A client for this URL. Every Redis connection the bridge opens is made here, so
    /// connection settings (TLS, auth) live in one place: `rediss://` with a configured CA
    /// or client certificate trusts only that CA and presents that certificate; `rediss://`
    /// without trusts the system roots. User and password come from the URL (AUTH, or ACL
    /// `AUTH user pass`).
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        // rustls (used for rediss://) needs the process-wide provider before any handshake.
        crate::util::net::install_crypto_provider();
        match &self.tls {
            Some(tls) if self.is_tls() => redis::Client::build_with_tls(
                self.expose(),
                redis::TlsCertificates {
                    client_tls: match (tls.client_cert_pem(), tls.client_key_pem()) {
                        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                            client_cert: cert.to_vec(),
                            client_key: key.to_vec(),
                        }),
                        _ => None,
                    },
                    root_cert: tls.ca_pem().map(<[u8]>::to_vec),
                },
            ),
            _ => redis::Client::open(self.expose()),
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }

    /// Whether this is `rediss://…#insecure`: TLS without certificate verification.
    pub fn is_insecure_tls(&self) -> bool {
        self.is_tls() && self.url.fragment() == Some("insecure")
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RedisUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// `[redis]`.
#[derive(Debug, Clone, Serialize)]
pub struct RedisConfig {
    /// Where Redis is.
    pub url: RedisUrl,
    /// Prefix of every key the bridge writes.
    pub key_prefix: String,
    /// CA bundle trusted for `rediss://` (default: the system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate for `rediss://` (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of `tls_cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// `sha256:…` of the TLS files' contents (shown by `check-config`; changes when a file
    /// does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_files_sha256: Option<String>,
    /// Cap of the (jittered) wait between attempts to subscribe again after a pub/sub
    /// connection loss; kept low because every second unsubscribed loses messages.
    pub resubscribe_max_delay: Dur,
}

impl RedisConfig {
    /// `<key_prefix>:<suffix>`.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}:{}", self.key_prefix, suffix)
    }
}

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// SUBSCRIBE / PSUBSCRIBE.
    Pubsub,
    /// A list queue (LPUSH by the publisher).
    List,
    /// A stream read through a consumer group.
    Stream,
}

impl SourceKind {
    /// The config spelling: `pubsub`, `list` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pubsub => "pubsub",
            SourceKind::List => "list",
            SourceKind::Stream => "stream",
        }
    }
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct SourceConfig {
    /// pubsub, list or stream.
    pub kind: SourceKind,
    /// A name for metrics and `/status` (default: `pubsub`, `list:<key>`, `stream:<key>`).
    pub name: String,
    /// Channels to SUBSCRIBE (pubsub).
    pub channels: Vec<String>,
    /// Patterns to PSUBSCRIBE (pubsub).
    pub patterns: Vec<String>,
    /// The list or stream key.
    pub key: Option<String>,
    /// The stream consumer group.
    pub group: Option<String>,
    /// Forward `envelope.payload`; key it like a pub/sub message, by `envelope.message_id`
    /// only when the payload has no key fields.
    pub unwrap_envelope: bool,
}

/// Where delivery jobs wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In process memory: in-flight and queued work is lost if the process dies.
    Memory,
    /// In Redis streams: survives crashes of the bridge.
    Redis,
}

impl Durability {
    /// The config spelling: `memory` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Memory => "memory",
            Durability::Redis => "redis",
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryConfig {
    /// Where queued jobs live.
    pub durability: Durability,
    /// Payload fields that, joined by `:`, name a message (uuid5 over them).
    pub idempotency_key_fields: Vec<String>,
    /// How long an idempotency key suppresses a repeat.
    pub dedupe_window: Dur,
    /// How long SIGTERM waits for in-flight attempts.
    pub shutdown_timeout: Dur,
}

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
pub struct EndpointUrl(Url);

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

    /// Whether a message from `channel` with `event_type` goes to this endpoint.
    pub fn matches(&self, channel: &str, event_type: &str) -> bool {
        let glob =
            |pats: &[String], s: &str| pats.iter().any(|p| wildmatch::WildMatch::new(p).matches(s));
        glob(&self.channels, channel)
            && (self.event_types.is_empty() || glob(&self.event_types, event_type))
    }
}

/// Republish target kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// PUBLISH to a channel.
    Channel,
    /// LPUSH to a list.
    List,
    /// XADD to a stream.
    Stream,
}

impl TargetKind {
    /// The config spelling: `channel`, `list` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Channel => "channel",
            TargetKind::List => "list",
            TargetKind::Stream => "stream",
        }
    }
}

/// A republish or fallback target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetConfig {
    /// channel, list or stream.
    pub kind: TargetKind,
    /// The key or channel.
    pub key: String,
    /// Another Redis, if not the main one.
    pub redis_url: Option<RedisUrl>,
}

impl TargetConfig {
    /// `<kind>:<key>`, the `target` label of `bridge_messages_republished_total`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.key)
    }
}

/// `[republish]`.
#[derive(Debug, Clone, Serialize)]
pub struct RepublishConfig {
    /// Targets used with `--dual`.
    pub targets: Vec<TargetConfig>,
}

/// `[fallback]`.
#[derive(Debug, Clone, Serialize)]
pub struct FallbackConfig {
    /// `ENABLE_REDIS_FALLBACK`.
    pub enabled: bool,
    /// Where dead-lettered bodies also go.
    #[serde(flatten)]
    pub target: TargetConfig,
}

/// `[dlq]`: how much the dead-letter stream keeps.
#[derive(Debug, Clone, Serialize)]
pub struct DlqConfig {
    /// Most entries kept; the oldest are trimmed beyond it. 0: no limit.
    pub max_entries: u64,
    /// Entries older than this are trimmed. 0: no limit.
    pub max_age: Dur,
    /// Of a body larger than `security.max_payload_bytes`, only this many leading bytes are
    /// stored (with the full size and SHA-256).
    pub oversized_body_prefix_bytes: usize,
}

/// `[security]`.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityConfig {
    /// Allow `http://` endpoints.
    pub allow_http: bool,
    /// Allow endpoints on loopback, private, link-local and metadata addresses.
    pub allow_private_networks: bool,
    /// Larger messages are dead-lettered.
    pub max_payload_bytes: usize,
    /// Messages whose arrays/objects nest deeper are dead-lettered.
    pub max_json_depth: usize,
}

/// `[admin]`.
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    /// Listen address of the admin server.
    pub listen: SocketAddr,
    /// Bearer token `/status` requires (and `/metrics` too with `protect_metrics`); open when
    /// unset.
    pub token: Option<Secret>,
    /// `/metrics` also requires the token.
    pub protect_metrics: bool,
    /// Timeouts and the connection cap of the admin server.
    pub limits: crate::http_server::ServerLimits,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

/// `[migration]`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationConfig {
    /// How often source channels are checked for subscribers other than the bridge
    /// (deprecation warnings, `bridge_legacy_subscribers`); `0s` turns the check off.
    pub legacy_check_interval: Dur,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    /// json or text.
    pub format: LogFormat,
    /// A tracing filter directive (`info`, `redis_webhook_bridge=debug`).
    pub level: String,
}

/// The registry's variables, with their old defaults, as read from the environment.
struct Legacy {
    timeout: Option<Dur>,
    max_retries: Option<u32>,
    retry_delay: Option<Dur>,
    cb_threshold: Option<u32>,
    cb_recovery: Option<Dur>,
}

const DEFAULT_TIMEOUT: Dur = Dur::secs(30);
const DEFAULT_MAX_RETRIES: u32 = 5;
const DEFAULT_RETRY_DELAY: Dur = Dur::secs(2);
const DEFAULT_MAX_RETRY_DELAY: Dur = Dur::secs(3600);
const DEFAULT_CB_THRESHOLD: u32 = 5;
const DEFAULT_CB_RECOVERY: Dur = Dur::secs(60);
const DEFAULT_CONCURRENCY: usize = 64;
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

/// `BRIDGE_*` variables that are command-line flags of the binary (`BRIDGE_CONFIG`,
/// `BRIDGE_DUAL`, …), not config keys: the config layer leaves them out (names without the
/// prefix).
pub const ENV_NOT_CONFIG: &[&str] = &["CONFIG", "DUAL", "METRICS_EMF", "METRICS_EMF_INTERVAL"];

impl Config {
    /// Loads from the file, the process environment and the flags in `opts`.
    pub fn load(opts: &LoadOptions) -> Result<Self, ConfigError> {
        Self::load_with_env(opts, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], reading legacy variables through `env` (tests inject it;
    /// `BRIDGE_*` variables are always read from the process environment).
    pub fn load_with_env(
        opts: &LoadOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(level) = &opts.log_level {
            check_log_filter(level).map_err(|message| ConfigError::Flag {
                flag: "--log-level",
                message,
            })?;
        }
        if let Some(format) = &opts.log_format
            && !LOG_FORMATS.contains(&format.as_str())
        {
            return Err(ConfigError::Flag {
                flag: "--log-format",
                message: "unknown format; use json or text".into(),
            });
        }
        if let Some(filter) = env("RUST_LOG") {
            check_log_filter(&filter).map_err(|m| ConfigError::invalid("RUST_LOG", m))?;
        }
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        let file = opts
            .file
            .as_deref()
            .map(error::ConfigFile::read)
            .transpose()?;
        if let Some(file) = &file {
            fig = fig.merge(file);
        }
        fig = legacy_layer(fig, env)?;
        fig = fig.merge(Env::prefixed("BRIDGE_").ignore(ENV_NOT_CONFIG).split("__"));
        if let Some(url) = &opts.redis_url {
            fig = fig.merge(Serialized::default("redis.url", url));
        }
        if let Some(level) = &opts.log_level {
            fig = fig.merge(Serialized::default("log.level", level));
        }
        if let Some(format) = &opts.log_format {
            fig = fig.merge(Serialized::default("log.format", format));
        }
        if let Some(addr) = &opts.admin_listen {
            fig = fig.merge(Serialized::default("admin.listen", addr.to_string()));
        }
        let raw: RawConfig = fig
            .extract()
            .map_err(|e| error::from_figment(e, file.as_ref()))?;
        let legacy = Legacy::read(env)?;
        let mut cfg = validate(raw, &legacy, env).map_err(|e| match e {
            ConfigError::Invalid {
                key,
                origin,
                message,
            } if key == "endpoints" && opts.file.is_none() => ConfigError::Invalid {
                key,
                origin,
                message: format!(
                    "{message}; no config file was given: pass one with --config PATH or BRIDGE_CONFIG"
                ),
            },
            e => with_origin(e, &fig),
        })?;
        cfg.file = opts.file.clone();
        Ok(cfg)
    }

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

    /// The endpoint called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// Settings that load but weaken security, one sentence each: `run` logs each as a WARN
    /// at start, `check-config` prints them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let targets = self.republish.targets.iter().enumerate();
        let urls = std::iter::once(("redis.url".to_string(), &self.redis.url)).chain(
            targets.filter_map(|(i, t)| {
                t.redis_url
                    .as_ref()
                    .map(|u| (format!("republish.targets[{i}].redis_url"), u))
            }),
        );
        for (key, url) in urls {
            if url.is_insecure_tls() {
                out.push(format!(
                    "{key} is rediss://…#insecure, which turns off verification of the server's certificate (anyone on the network path could pose as Redis); this build refuses such connections: remove #insecure and trust a private CA with redis.tls_ca_file"
                ));
            }
        }
        out
    }

    /// The effective config as TOML, every secret shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// `REDIS_URL` / `REDIS_HOST`… and `ENABLE_REDIS_FALLBACK` as a figment layer.
fn legacy_layer(
    mut fig: Figment,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Figment, ConfigError> {
    let nonempty = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    if let Some(url) = nonempty("REDIS_URL") {
        fig = fig.merge(Serialized::default("redis.url", url));
    } else if let Some(host) = nonempty("REDIS_HOST") {
        let port = nonempty("REDIS_PORT").unwrap_or_else(|| "6379".into());
        port.parse::<u16>()
            .map_err(|_| ConfigError::invalid("REDIS_PORT", "not a port number (1–65535)"))?;
        let mut url = Url::parse("redis://localhost")
            .map_err(|e| ConfigError::invalid("REDIS_HOST", e.to_string()))?;
        url.set_host(Some(&host))
            .map_err(|e| ConfigError::invalid("REDIS_HOST", format!("not a host name ({e})")))?;
        let _ = url.set_port(port.parse().ok());
        if let Some(token) = nonempty("REDIS_AUTH_TOKEN") {
            let _ = url.set_password(Some(&token));
        }
        fig = fig.merge(Serialized::default("redis.url", url.to_string()));
    }
    if let Some(v) = nonempty("ENABLE_REDIS_FALLBACK") {
        let on = parse_bool(&v).ok_or_else(|| {
            ConfigError::invalid("ENABLE_REDIS_FALLBACK", "not a boolean; use true or false")
        })?;
        fig = fig.merge(Serialized::default("fallback.enabled", on));
    }
    Ok(fig)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl Legacy {
    fn read(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |n: &str| env(n).filter(|v| !v.trim().is_empty());
        let dur = |n: &str| -> Result<Option<Dur>, ConfigError> {
            get(n)
                .map(|v| Dur::parse(&v).map_err(|m| ConfigError::invalid(n, m)))
                .transpose()
        };
        let num = |n: &str| -> Result<Option<u32>, ConfigError> {
            get(n)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| ConfigError::invalid(n, "not a whole number"))
                })
                .transpose()
        };
        Ok(Self {
            timeout: dur("WEBHOOK_TIMEOUT")?,
            max_retries: num("WEBHOOK_MAX_RETRIES")?,
            retry_delay: dur("WEBHOOK_RETRY_DELAY")?,
            cb_threshold: num("WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD")?,
            cb_recovery: dur("WEBHOOK_CIRCUIT_BREAKER_RECOVERY_TIME")?,
        })
    }
}

/// Adds where the value of an error's key came from (` (in file x.toml)`), for errors
/// found after extraction; keys as `error::display_key` writes them (`endpoints[0].url`).
fn with_origin(e: ConfigError, fig: &Figment) -> ConfigError {
    let ConfigError::Invalid {
        key,
        origin,
        message,
    } = e
    else {
        return e;
    };
    let mut parts = key.split(['.', '[']).map(|p| p.trim_end_matches(']'));
    let mut value = parts.next().and_then(|first| fig.find_value(first).ok());
    for part in parts {
        value = value.and_then(|v| match v {
            figment::value::Value::Dict(_, mut d) => d.remove(part),
            figment::value::Value::Array(_, mut a) => part
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .map(|i| a.swap_remove(i)),
            _ => None,
        });
    }
    let file = value
        .and_then(|v| fig.get_metadata(v.tag()))
        .and_then(|md| match &md.source {
            Some(figment::Source::File(p)) => Some(p.clone()),
            _ => None,
        });
    let origin = match file {
        Some(p) if origin.is_empty() => format!(" (in file {})", p.display()),
        _ => origin,
    };
    ConfigError::Invalid {
        key,
        origin,
        message,
    }
}

fn validate(
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

    let durability = match raw.delivery.durability.as_str() {
        "memory" => Durability::Memory,
        "redis" => Durability::Redis,
        _ => {
            return Err(ConfigError::invalid(
                "delivery.durability",
                "unknown value; use \"redis\" or \"memory\"",
            ));
        }
    };
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
            && sources.iter().any(|s| match (s.kind, t.kind) {
                (SourceKind::Pubsub, TargetKind::Channel) => {
                    s.channels.contains(&t.key)
                        || s.patterns.iter().any(|p| redis_glob_matches(p, &t.key))
                }
                (SourceKind::List, TargetKind::List) | (SourceKind::Stream, TargetKind::Stream) => {
                    s.key.as_deref() == Some(t.key.as_str())
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
            kind: raw.fallback.kind,
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
    let format = match raw.log.format.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        _ => {
            return Err(ConfigError::invalid(
                "log.format",
                "unknown value; use \"json\" or \"text\"",
            ));
        }
    };
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
            durability,
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
            format,
            level: raw.log.level,
        },
        migration: MigrationConfig {
            legacy_check_interval: raw.migration.legacy_check_interval,
        },
        file: None,
    })
}

/// The values `log.format` and `--log-format` accept.
const LOG_FORMATS: &[&str] = &["json", "text"];

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

/// Redis glob semantics are close enough to wildmatch's `*`/`?` for loop detection.
fn redis_glob_matches(pattern: &str, key: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(key)
}

fn validate_sources(raw: Vec<raw::RawSource>) -> Result<Vec<SourceConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![SourceConfig {
            kind: SourceKind::Pubsub,
            name: "pubsub".into(),
            channels: vec![DEFAULT_CHANNEL.into()],
            patterns: vec![],
            key: None,
            group: None,
            unwrap_envelope: false,
        }]);
    }
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("sources[{i}].{k}");
        let kind = match s.kind.as_str() {
            "pubsub" | "" => SourceKind::Pubsub,
            "list" => SourceKind::List,
            "stream" => SourceKind::Stream,
            _ => {
                return Err(ConfigError::invalid(
                    at("kind"),
                    "unknown source kind; use pubsub, list or stream",
                ));
            }
        };
        let name = match kind {
            SourceKind::Pubsub => {
                if s.channels.is_empty() && s.patterns.is_empty() {
                    return Err(ConfigError::invalid(
                        at("channels"),
                        "a pubsub source needs at least one channel or pattern",
                    ));
                }
                if s.channels.iter().chain(&s.patterns).any(|c| c.is_empty()) {
                    return Err(ConfigError::invalid(
                        at("channels"),
                        "channel names must not be empty",
                    ));
                }
                if s.key.is_some() || s.group.is_some() {
                    return Err(ConfigError::invalid(
                        at("key"),
                        "`key` and `group` belong to list and stream sources; a pubsub source uses `channels`",
                    ));
                }
                s.name.clone().unwrap_or_else(|| {
                    if i == 0 {
                        "pubsub".into()
                    } else {
                        format!("pubsub{i}")
                    }
                })
            }
            SourceKind::List | SourceKind::Stream => {
                let key = s.key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
                    ConfigError::invalid(at("key"), "a list or stream source needs `key`")
                })?;
                if !s.channels.is_empty() || !s.patterns.is_empty() {
                    return Err(ConfigError::invalid(
                        at("channels"),
                        "`channels`/`patterns` belong to pubsub sources; a list or stream source uses `key`",
                    ));
                }
                let prefix = if kind == SourceKind::List {
                    "list"
                } else {
                    "stream"
                };
                s.name.clone().unwrap_or_else(|| format!("{prefix}:{key}"))
            }
        };
        if !names.insert(name.clone()) {
            return Err(ConfigError::invalid(
                at("name"),
                format!("`{name}` is used by another source"),
            ));
        }
        let group = match kind {
            SourceKind::Stream => Some(s.group.clone().unwrap_or_else(|| "webhook-bridge".into())),
            _ => s.group.clone(),
        };
        out.push(SourceConfig {
            kind,
            name,
            channels: s.channels,
            patterns: s.patterns,
            key: s.key,
            group,
            unwrap_envelope: s.unwrap_envelope,
        });
    }
    Ok(out)
}

fn validate_target(at: &str, t: raw::RawTarget) -> Result<TargetConfig, ConfigError> {
    let kind = match t.kind.as_str() {
        "channel" => TargetKind::Channel,
        "list" => TargetKind::List,
        "stream" => TargetKind::Stream,
        _ => {
            return Err(ConfigError::invalid(
                format!("{at}.kind"),
                "unknown target kind; use channel, list or stream",
            ));
        }
    };
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
    crate::delivery::signing::Signer::new(signature, &ep.secrets, ep.sign_with_all_secrets)
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

impl CircuitConfig {
    /// Recovery time as a `Duration`.
    pub fn recovery(&self) -> Duration {
        self.recovery_time.0
    }
}
