//! The config file's shape as read by figment, before validation. Unknown keys are errors.
//!
//! Fields that the registry's legacy variables can default (`timeout`, `max_retries`, …) are
//! `Option`s here so that validation can tell "not set" from "set to the default".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Scheme;
use super::Secret;
use super::duration::Dur;

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
    pub kind: String,
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
    pub durability: String,
    pub idempotency_key_fields: Vec<String>,
    pub dedupe_window: Dur,
    pub shutdown_timeout: Dur,
}

impl Default for RawDelivery {
    fn default() -> Self {
        Self {
            durability: "redis".into(),
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
    pub kind: String,
    pub key: String,
    pub redis_url: Option<String>,
}

/// `[fallback]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFallback {
    pub enabled: bool,
    pub kind: String,
    pub key: String,
}

impl Default for RawFallback {
    fn default() -> Self {
        Self {
            enabled: false,
            kind: "list".into(),
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
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}
