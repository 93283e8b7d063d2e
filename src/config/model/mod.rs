//! The checked configuration: every type [`Config`] is made of, with defaults applied,
//! URLs parsed, secrets resolved and durations typed. Nothing here reads a file or the
//! environment; `load` and `validate` build these.

mod endpoint;
mod redis;
mod source;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

pub use endpoint::{
    CircuitConfig, EndpointConfig, EndpointTls, EndpointUrl, Verdict, is_sensitive_header,
};
pub use redis::{RedisConfig, RedisUrl, RedisUrlError};
pub use source::{ListSource, PubSubSource, SourceConfig, SourceKind, SourceSpec, StreamSource};

use super::{Dur, Secret};

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

impl LogFormat {
    /// The config and flag spelling: `json` or `text`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
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

impl Config {
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
