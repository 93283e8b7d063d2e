//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! Read-only: every route answers `GET` and changes nothing. `/status` names endpoints and
//! their last errors, so it can require a bearer token (`[admin] token`); `/metrics` too
//! with `protect_metrics`. `/healthz` and `/readyz` stay open for probes. What each endpoint
//! reveals is listed in docs/SECURITY.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use serde::Serialize;

use subtle::ConstantTimeEq as _;

use crate::config::Secret;
use crate::endpoint_state::{EndpointSnapshot, EndpointState};
use crate::pause::PauseInfo;
use crate::source::SourceState;

/// Everything the admin endpoints report on.
pub struct Status {
    /// Deliveries paused cluster-wide (kept current by `pause::watch_pause`).
    pub paused: Arc<AtomicBool>,
    /// `redis.key_prefix`, to read who paused and why.
    pub key_prefix: String,
    /// Dual publishing on.
    pub dual: bool,
    /// Bumped on every applied config.
    pub config_version: AtomicU64,
    /// Sources.
    pub sources: Vec<Arc<SourceState>>,
    /// Endpoints (swapped on reload).
    pub endpoints: Arc<std::sync::RwLock<Vec<Arc<EndpointState>>>>,
    /// Redis, for `/readyz`.
    pub redis: ConnectionManager,
    /// Prometheus registry.
    pub metrics: PrometheusHandle,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'static str,
    /// Who paused, when and why (as `status` shows it), or null while deliveries run.
    paused: Option<PauseInfo>,
    dual: bool,
    config_version: u64,
    sources: &'a [Arc<SourceState>],
    endpoints: Vec<EndpointSnapshot>,
}

/// Who may read the protected admin endpoints.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer token `/status` requires; everything is open when `None`.
    pub token: Option<Secret>,
    /// `/metrics` requires the token too.
    pub protect_metrics: bool,
}

/// The admin router.
pub fn router(status: Arc<Status>, access: Access) -> Router {
    let access = Arc::new(access);
    let mut protected = Router::new().route("/status", get(status_json));
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if access.protect_metrics {
        protected = protected.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(access, require_token));
    open.merge(protected).with_state(status)
}

/// Lets a request through when no token is configured or it carries
/// `Authorization: Bearer <token>`; otherwise `401` with `WWW-Authenticate: Bearer`.
async fn require_token(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = &access.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    // Constant time: the comparison takes as long whatever prefix of the token is right.
    if bool::from(presented.ct_eq(token.expose())) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized: this endpoint needs Authorization: Bearer <admin.token>\n",
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<Status>>) -> Response {
    let mut conn = s.redis.clone();
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        redis::cmd("PING").query_async::<String>(&mut conn),
    )
    .await;
    if !matches!(ping, Ok(Ok(_))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: Redis is unreachable\n",
        )
            .into_response();
    }
    let down: Vec<&str> = s
        .sources
        .iter()
        .filter(|src| !src.is_connected())
        .map(|src| src.name.as_str())
        .collect();
    if !down.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: source(s) not subscribed: {}\n", down.join(", ")),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(s): State<Arc<Status>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn status_json(State(s): State<Arc<Status>>) -> Response {
    let states: Vec<Arc<EndpointState>> = s
        .endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let endpoints = futures::future::join_all(states.iter().map(|e| e.snapshot())).await;
    // What this replica does (its last poll of the pause key), with who/when/why read from
    // the key; the details are blank if Redis does not answer.
    let paused = if s.paused.load(Ordering::Relaxed) {
        let mut conn = s.redis.clone();
        let info = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            crate::pause::paused(&mut conn, &s.key_prefix),
        )
        .await;
        Some(match info {
            Ok(Ok(Some(p))) => p,
            _ => PauseInfo {
                since: String::new(),
                by: String::new(),
                reason: None,
            },
        })
    } else {
        None
    };
    axum::Json(StatusJson {
        version: crate::VERSION,
        paused,
        dual: s.dual,
        config_version: s.config_version.load(Ordering::Relaxed),
        sources: &s.sources,
        endpoints,
    })
    .into_response()
}
