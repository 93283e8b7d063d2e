//! Pause and resume from the console: the same cluster-wide flag as `pause`/`resume`
//! ([`crate::pause`]), recorded as paused by `console@<client address>` with the reason
//! given.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Console;
use super::guard::refuse;

/// Longest reason kept: the flag is read by every replica every 250 ms.
const MAX_REASON: usize = 500;

/// The body of a pause: an optional reason.
#[derive(Debug, Default, Deserialize)]
pub struct PauseRequest {
    reason: Option<String>,
}

/// `POST /api/pause`: pauses deliveries cluster-wide; answers what was recorded.
pub async fn pause(
    State(c): State<Arc<Console>>,
    extensions: axum::http::Extensions,
    Json(r): Json<PauseRequest>,
) -> Response {
    let reason = r
        .reason
        .map(|s| s.trim().chars().take(MAX_REASON).collect::<String>())
        .filter(|s| !s.is_empty());
    let by = match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("console@{}", addr.ip()),
        None => "console".to_string(),
    };
    let mut conn = c.status.redis.clone();
    match crate::pause::pause_as(&mut conn, &c.status.key_prefix, by, reason).await {
        Ok(info) => {
            tracing::warn!(by = %info.by, reason = info.reason.as_deref().unwrap_or(""), "deliveries paused from the console");
            Json(info).into_response()
        }
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot set the pause flag: {e}"),
        ),
    }
}

/// `POST /api/resume`: resumes deliveries; answers whether they were paused.
pub async fn resume(State(c): State<Arc<Console>>) -> Response {
    let mut conn = c.status.redis.clone();
    match crate::pause::resume(&mut conn, &c.status.key_prefix).await {
        Ok(was) => {
            tracing::info!(was_paused = was, "deliveries resumed from the console");
            Json(serde_json::json!({ "resumed": was })).into_response()
        }
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot clear the pause flag: {e}"),
        ),
    }
}
