//! The config file's shape as read by figment, before validation. Unknown keys are errors.
//!
//! Fields that the registry's legacy variables can default (`timeout`, `max_retries`, …) are
//! `Option`s here so that validation can tell "not set" from "set to the default".
//!
//! Words from a fixed set (`kind`, `durability`, `format`) are read straight into their enums
//! ([`Word`]), so a misspelt one is an error of extraction that names the key with its file,
//! line and column. A source's kind-specific keys stay flat here, as the file writes them:
//! `validate` moves them into the variant of their kind and names any key that does not
//! belong to it (serde's internally tagged enums would lose figment's key paths and cannot
//! default `kind` to `pubsub`).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize};

use super::Scheme;
use super::Secret;
use super::duration::Dur;
use super::model::{Durability, LogFormat, SourceKind, TargetKind};

/// A config value that is one word of a fixed set. It is read by serde straight into its
/// enum; any other word is refused with [`Word::UNKNOWN`], which names the accepted words and
/// never repeats the value (a misplaced secret must not reach an error message).
pub(super) trait Word: Sized + Copy + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// What to say about a word that is none of them.
    const UNKNOWN: &'static str;
    /// The config spelling of `self`.
    fn word(self) -> &'static str;
    /// The value spelled `word`, if any.
    fn from_word(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.word() == word)
    }
}

/// Reads a [`Word`] from a string.
struct WordVisitor<T>(PhantomData<T>);

impl<T: Word> serde::de::Visitor<'_> for WordVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        T::from_word(v).ok_or_else(|| E::custom(T::UNKNOWN))
    }
}

/// Implements `Deserialize` for [`Word`] enums.
macro_rules! deserialize_word {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(WordVisitor::<Self>(PhantomData))
            }
        }
    )*};
}

deserialize_word!(SourceKind, TargetKind, Durability, LogFormat);

impl Word for SourceKind {
    const ALL: &'static [Self] = &[Self::Pubsub, Self::List, Self::Stream];
    const UNKNOWN: &'static str = "unknown source kind; use pubsub, list or stream";
    fn word(self) -> &'static str {
        self.as_str()
    }
    /// `kind = ""` has always meant the default, pubsub.
    fn from_word(word: &str) -> Option<Self> {
        match word {
            "" => Some(Self::Pubsub),
            _ => Self::ALL.iter().copied().find(|v| v.word() == word),
        }
    }
}

impl Word for TargetKind {
    const ALL: &'static [Self] = &[Self::Channel, Self::List, Self::Stream];
    const UNKNOWN: &'static str = "unknown target kind; use channel, list or stream";
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for Durability {
    const ALL: &'static [Self] = &[Self::Memory, Self::Redis];
    const UNKNOWN: &'static str = "unknown value; use \"redis\" or \"memory\"";
    fn word(self) -> &'static str {
        self.as_str()
    }
}

impl Word for LogFormat {
    const ALL: &'static [Self] = &[Self::Json, Self::Text];
    const UNKNOWN: &'static str = "unknown value; use \"json\" or \"text\"";
    fn word(self) -> &'static str {
        self.as_str()
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub redis: RawRedis,
    pub sources: Vec<RawSource>,
    pub delivery: RawDelivery,
    pub endpoints: Vec<RawEndpoint>,
    pub republish: RawRepublish,
    pub fallback: RawFallback,
    pub dlq: RawDlq,
    pub security: RawSecurity,
    pub admin: RawAdmin,
    pub log: RawLog,
    pub migration: RawMigration,
}

/// `[migration]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMigration {
    pub legacy_check_interval: Dur,
}

impl Default for RawMigration {
    fn default() -> Self {
        Self {
            legacy_check_interval: Dur::secs(60),
        }
    }
}

/// `[redis]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub url: String,
    pub key_prefix: String,
    /// PEM CA bundle to trust for `rediss://` (instead of the system roots).
    pub tls_ca_file: Option<String>,
    /// PEM client certificate chain for `rediss://` (with `tls_key_file`).
    pub tls_cert_file: Option<String>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<String>,
    /// Longest wait between two attempts to subscribe again after a pub/sub connection loss.
    pub resubscribe_max_delay: Dur,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "webhook-bridge".into(),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            resubscribe_max_delay: Dur::secs(1),
        }
    }
}

/// `[[sources]]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSource {
    pub kind: SourceKind,
    pub name: Option<String>,
    pub channels: Vec<String>,
    pub patterns: Vec<String>,
    pub key: Option<String>,
    pub group: Option<String>,
    pub unwrap_envelope: bool,
}

/// `[delivery]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDelivery {
    pub durability: Durability,
    pub idempotency_key_fields: Vec<String>,
    pub dedupe_window: Dur,
    pub shutdown_timeout: Dur,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            durability: Durability::Redis,
            idempotency_key_fields: ["model_id", "token_symbol", "mlflow_run_id", "model_version"]
                .map(String::from)
                .to_vec(),
            dedupe_window: Dur::secs(24 * 3600),
            shutdown_timeout: Dur::secs(30),
        }
    }
}

/// `[[endpoints]]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEndpoint {
    pub name: String,
    pub url: String,
    pub secrets: Vec<Secret>,
    pub signature: Option<Scheme>,
    pub sign_with_all_secrets: bool,
    pub channels: Option<Vec<String>>,
    pub event_types: Vec<String>,
    pub filter: Option<String>,
    pub transform: Option<String>,
    pub transform_file: Option<String>,
    pub timeout: Option<Dur>,
    pub max_retries: Option<u32>,
    pub retry_delay: Option<Dur>,
    pub max_retry_delay: Option<Dur>,
    pub concurrency: Option<usize>,
    pub ordered: bool,
    pub circuit_breaker: RawCircuit,
    pub headers: BTreeMap<String, String>,
    pub tls: Option<RawEndpointTls>,
}

/// `tls = { ca_file = "…", client_cert_file = "…", client_key_file = "…" }`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEndpointTls {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

/// `circuit_breaker = { … }`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCircuit {
    pub failure_threshold: Option<u32>,
    pub recovery_time: Option<Dur>,
}

/// `[republish]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRepublish {
    pub targets: Vec<RawTarget>,
}

/// A republish or fallback target.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTarget {
    /// Required; `None` only so that a missing `kind` is told like an unknown one.
    pub kind: Option<TargetKind>,
    pub key: String,
    pub redis_url: Option<String>,
}

/// `[fallback]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFallback {
    pub enabled: bool,
    pub kind: TargetKind,
    pub key: String,
}

impl Default for RawFallback {
    fn default() -> Self {
        Self {
            enabled: false,
            kind: TargetKind::List,
            key: "hokusai:model_ready_queue:webhook-fallback".into(),
        }
    }
}

/// `[dlq]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDlq {
    pub max_entries: u64,
    pub max_age: Dur,
    pub oversized_body_prefix_bytes: usize,
}

impl Default for RawDlq {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_age: Dur::secs(30 * 24 * 3600),
            oversized_body_prefix_bytes: 64 * 1024,
        }
    }
}

/// `[security]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSecurity {
    pub allow_http: bool,
    pub allow_private_networks: bool,
    pub max_payload_bytes: usize,
    pub max_json_depth: usize,
}

impl Default for RawSecurity {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_networks: false,
            max_payload_bytes: 1024 * 1024,
            max_json_depth: 128,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    pub token: Option<Secret>,
    pub protect_metrics: bool,
    pub header_read_timeout: Dur,
    pub body_read_timeout: Dur,
    pub max_connections: usize,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9132".into(),
            token: None,
            protect_metrics: false,
            header_read_timeout: Dur(crate::http_server::DEFAULT_HEADER_READ_TIMEOUT),
            body_read_timeout: Dur(crate::http_server::DEFAULT_BODY_READ_TIMEOUT),
            max_connections: crate::http_server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: LogFormat,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}
