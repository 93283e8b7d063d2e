//! The HTTP side of a delivery: one pooled client per endpoint, the URL/SSRF policy, and
//! the classification of an answer into an [`Outcome`].
//!
//! Redirects are never followed (a 3xx is a retryable failure): a signed request must reach
//! the configured URL and nothing else. Unless `allow_private_networks` is set, the client's
//! resolver refuses hosts that resolve to any non-global address and connects only to the
//! addresses it vetted, so a second DNS answer cannot rebind the request.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use super::Outcome;
use super::retry::parse_retry_after;
use crate::config::{EndpointConfig, SecurityConfig};
use crate::telemetry::FailureReason;
use crate::util::net::{install_crypto_provider, is_public};

/// How much of an error answer's body is kept for the log and the dead-letter entry.
const ERROR_BODY_CAP: usize = 512;
/// Beyond this, an answer's body is not drained (the connection is dropped instead).
const DRAIN_CAP: usize = 64 * 1024;
/// Most header lines accepted in an answer (hyper's default is 100). A webhook receiver has
/// no reason to send many; more is a parse error, retried like any broken answer. The size
/// of the header section is bounded by hyper's read buffer (about 400 KiB), the time to
/// receive it by the endpoint's `timeout`.
const MAX_RESPONSE_HEADERS: usize = 64;

/// Building a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client for endpoint {endpoint}: {source}")]
    Build {
        /// Endpoint name.
        endpoint: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The URL fails the URL policy of the `[security]` it is built with (a reload changed
    /// `allow_http`, or a caller skipped config validation).
    #[error("endpoint {endpoint}: {reason}")]
    Policy {
        /// Endpoint name.
        endpoint: String,
        /// What the policy refused.
        reason: String,
    },
    /// The endpoint's `tls` files were accepted at load but reqwest refused them.
    #[error("endpoint {endpoint}: cannot use {what}: {source}")]
    Tls {
        /// Endpoint name.
        endpoint: String,
        /// Which part: the CA file or the client certificate and key.
        what: &'static str,
        /// The cause.
        source: reqwest::Error,
    },
}

/// A destination refused by the SSRF policy.
#[derive(Debug)]
pub struct Blocked {
    host: String,
    addr: IpAddr,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host == self.addr.to_string() {
            write!(f, "{} is not a public address", self.addr)?;
        } else {
            write!(
                f,
                "{} resolves to {}, which is not a public address",
                self.host, self.addr
            )?;
        }
        f.write_str("; set security.allow_private_networks = true to allow it")
    }
}

impl std::error::Error for Blocked {}

/// One endpoint's HTTP client.
#[derive(Clone)]
pub struct EndpointClient {
    http: reqwest::Client,
    url: Url,
    allow_private: bool,
}

impl EndpointClient {
    /// Builds the pooled client for `ep`: its timeout, no redirects, keep-alive pool sized to
    /// its concurrency, a cap on answer headers, its `tls` CA (trusted in addition to the
    /// system roots) and client certificate, and the vetting resolver unless private
    /// networks are allowed.
    pub fn build(ep: &EndpointConfig, security: &SecurityConfig) -> Result<Self, ClientError> {
        // The URL policy once more, against the settings this client runs with: the client
        // is the last point before a request leaves.
        crate::config::validate_endpoint_url(ep.url.url().as_str(), security).map_err(
            |reason| ClientError::Policy {
                endpoint: ep.name.clone(),
                reason: reason.to_string(),
            },
        )?;
        install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("redis-webhook-bridge/", env!("CARGO_PKG_VERSION")))
            .timeout(ep.timeout.0)
            .connect_timeout(ep.timeout.0.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(ep.concurrency)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .http1_only()
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .no_proxy();
        if let Some(tls) = &ep.tls {
            let tls_err = |what: &'static str| {
                let endpoint = ep.name.clone();
                move |source| ClientError::Tls {
                    endpoint,
                    what,
                    source,
                }
            };
            if let Some(ca) = tls.material.ca_pem() {
                let certs =
                    reqwest::Certificate::from_pem_bundle(ca).map_err(tls_err("tls.ca_file"))?;
                b = b.tls_certs_merge(certs);
            }
            if let Some(pem) = tls.material.client_identity_pem() {
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(tls_err("tls.client_cert_file and tls.client_key_file"))?;
                b = b.identity(identity);
            }
        }
        if !security.allow_private_networks {
            b = b.dns_resolver(Arc::new(VettingResolver));
        }
        let http = b.build().map_err(|source| ClientError::Build {
            endpoint: ep.name.clone(),
            source,
        })?;
        Ok(Self {
            http,
            url: ep.url.url().clone(),
            allow_private: security.allow_private_networks,
        })
    }

    /// POSTs `body` with `headers` and classifies the answer.
    pub async fn post(&self, headers: reqwest::header::HeaderMap, body: Bytes) -> Outcome {
        if !self.allow_private
            && let Some(ip) = literal_ip(&self.url)
            && !is_public(ip)
        {
            return Outcome::Permanent {
                status: None,
                reason: FailureReason::Blocked,
                error: Blocked {
                    host: ip.to_string(),
                    addr: ip,
                }
                .to_string(),
            };
        }
        let result = self
            .http
            .post(self.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        match result {
            Ok(resp) => classify_response(resp).await,
            // reqwest's Display names the URL, which may carry a token: leave it out (the log
            // line and the dead-letter entry name the endpoint).
            Err(e) => classify_error(&e.without_url()),
        }
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

async fn classify_response(mut resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        drain(&mut resp).await;
        return Outcome::Delivered { status };
    }
    let retry_after = if status == 429 || status == 503 {
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|s| match Url::parse(s) {
            // A redirect target is shown like an endpoint URL: it may carry a token too.
            Ok(u) => crate::config::redact_endpoint_url(&u),
            Err(_) => "a relative location".to_string(),
        });
    let snippet = drain(&mut resp).await;
    let mut error = format!("HTTP {status}");
    if let Some(loc) = location {
        error.push_str(&format!(" (redirect to {loc} not followed)"));
    }
    if !snippet.is_empty() {
        error.push_str(": ");
        error.push_str(&snippet);
    }
    classify_status(status, retry_after, error)
}

/// Classifies a non-2xx status: 3xx, 408, 425, 429 and 5xx are retried, other 4xx are
/// permanent. (A non-2xx is never a delivery.)
pub fn classify_status(status: u16, retry_after: Option<Duration>, error: String) -> Outcome {
    let reason = FailureReason::from_status(status);
    match status {
        200..=299 => Outcome::Delivered { status },
        300..=399 | 408 | 425 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            after: retry_after,
            reason,
            error,
        },
        _ => Outcome::Permanent {
            status: Some(status),
            reason,
            error,
        },
    }
}

fn classify_error(e: &reqwest::Error) -> Outcome {
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return Outcome::Permanent {
                status: None,
                reason: FailureReason::Blocked,
                error: b.to_string(),
            };
        }
        src = s.source();
    }
    let reason = error_kind(e);
    // The caller removed the URL from `e` (it may carry a credential in path or query).
    let mut error = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        error.push_str(": ");
        error.push_str(&s.to_string());
        src = s.source();
    }
    Outcome::Retry {
        status: None,
        after: None,
        reason,
        error,
    }
}

/// What kind of failure a request error is, for logs (`error_kind`) and the failure
/// metric's `reason`: `timeout`, `dns`, `tls`, `connect`, `body` or `request`.
fn error_kind(e: &reqwest::Error) -> FailureReason {
    if e.is_timeout() {
        return FailureReason::Timeout;
    }
    // reqwest and hyper expose no DNS or TLS predicate; their error chains name them.
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return FailureReason::Tls;
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return FailureReason::Dns;
        }
        if text.contains("certificate") || text.contains("tls handshake") {
            return FailureReason::Tls;
        }
        src = s.source();
    }
    if e.is_connect() {
        FailureReason::Connect
    } else if e.is_body() || e.is_decode() {
        FailureReason::Body
    } else {
        FailureReason::Request
    }
}

/// Reads the answer's body up to a cap (so the connection can be reused) and returns the
/// start of it as text for error messages.
async fn drain(resp: &mut reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Ok(Some(chunk)) = resp.chunk().await {
        seen += chunk.len();
        if kept.len() < ERROR_BODY_CAP {
            let take = (ERROR_BODY_CAP - kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..take]);
        }
        if seen > DRAIN_CAP {
            break;
        }
    }
    String::from_utf8_lossy(&kept)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// Resolves with the system resolver and refuses names with any non-public address.
struct VettingResolver;

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(Box::new(Blocked {
                    host,
                    addr: bad.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_2xx_statuses_are_never_delivered() {
        assert!(matches!(
            classify_status(503, None, String::new()),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify_status(302, None, String::new()),
            Outcome::Retry { .. }
        ));
        for s in [408, 425, 429, 500, 502, 504] {
            assert!(
                matches!(
                    classify_status(s, None, String::new()),
                    Outcome::Retry { .. }
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(
                matches!(
                    classify_status(s, None, String::new()),
                    Outcome::Permanent { .. }
                ),
                "{s}"
            );
        }
        assert_eq!(
            classify_status(204, None, String::new()),
            Outcome::Delivered { status: 204 }
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_a_special_purpose_address() {
        use std::str::FromStr as _;
        for host in ["127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "2001::1"] {
            let err = match VettingResolver.resolve(Name::from_str(host).unwrap()).await {
                Ok(_) => panic!("{host} was resolved, not refused"),
                Err(e) => e,
            };
            let blocked = err.downcast_ref::<Blocked>().expect("a Blocked error");
            assert!(
                blocked.to_string().contains("not a public address"),
                "{blocked}"
            );
        }
        let addrs: Vec<SocketAddr> = VettingResolver
            .resolve(Name::from_str("93.184.216.34").unwrap())
            .await
            .expect("a public literal resolves")
            .collect();
        assert_eq!(addrs.len(), 1);
    }
}
