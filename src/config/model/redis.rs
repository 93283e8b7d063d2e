//! `[redis]`: where Redis is and how the bridge connects to it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use url::Url;

use crate::config::{Dur, TlsMaterial, redact_url};

/// A Redis URL, plus the TLS material (`[redis] tls_*_file`) used when it is `rediss://`;
/// `Debug` and `Serialize` hide the password.
#[derive(Clone)]
pub struct RedisUrl {
    url: Url,
    tls: Option<Arc<TlsMaterial>>,
}

/// Why a Redis URL is refused. The message never repeats the URL (it may hold a password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedisUrlError {
    /// Not a URL at all.
    #[error("not a valid URL ({0}); expected e.g. redis://127.0.0.1:6379")]
    NotAUrl(url::ParseError),
    /// A URL of another scheme.
    #[error("unsupported scheme `{0}`; use redis:// (or rediss:// for TLS)")]
    Scheme(String),
}

impl RedisUrl {
    /// Parses and checks the scheme (`redis`, `rediss`, `unix`).
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let url = Url::parse(text).map_err(RedisUrlError::NotAUrl)?;
        match url.scheme() {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Self { url, tls: None }),
            other => Err(RedisUrlError::Scheme(other.to_string())),
        }
    }

    /// The TLS material this URL connects with, if any.
    pub(in crate::config) fn tls(&self) -> Option<Arc<TlsMaterial>> {
        self.tls.clone()
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
