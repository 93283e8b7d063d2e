//! The console's dead-letter view: `GET /api/dead-letters` (filtered pages of summaries),
//! `GET /api/dead-letters/{id}` (one entry in full) and `POST /api/dead-letters/purge`.
//! Replays are in [`super::replays`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Console;
use super::guard::refuse;
use crate::dlq::browse::Filter;
use crate::message::{DeadLetter, DlqError, Stage};

/// Entries per page unless `limit` says otherwise, and the most a page holds.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Bytes of a body a summary previews.
const PREVIEW_BYTES: usize = 160;
/// Bytes of a body one entry's view shows: the page must stay responsive whatever the
/// body's size (the stream keeps bodies up to `security.max_payload_bytes`).
pub const SHOW_BYTES: usize = 64 * 1024;

/// The query of a listing: `endpoint`, `stage`, `reason` (text the error contains), `after`
/// (the `next` of the previous page) and `limit`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    endpoint: Option<String>,
    stage: Option<String>,
    reason: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// One entry in a listing.
#[derive(Serialize)]
struct Summary {
    id: String,
    endpoint: String,
    stage: &'static str,
    event_type: String,
    idempotency_key: String,
    attempts: u32,
    last_status: Option<u16>,
    error: String,
    failed_at_ms: u64,
    body_bytes: u64,
    preview: String,
}

impl Summary {
    fn of(dl: DeadLetter) -> Self {
        let body_bytes = dl
            .truncated
            .as_ref()
            .map_or(dl.body.len() as u64, |t| t.body_size);
        Self {
            preview: clip(&dl.body, PREVIEW_BYTES).0,
            id: dl.id,
            endpoint: dl.endpoint,
            stage: dl.stage.as_str(),
            event_type: dl.event_type,
            idempotency_key: dl.idempotency_key,
            attempts: dl.attempts,
            last_status: dl.last_status,
            error: dl.error,
            failed_at_ms: dl.failed_at_ms,
            body_bytes,
        }
    }
}

/// At most `max` bytes of `body` as text (cut at a character boundary), and whether it was
/// cut.
fn clip(body: &[u8], max: usize) -> (String, bool) {
    let text = String::from_utf8_lossy(body);
    if text.len() <= max {
        return (text.into_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_string(), true)
}

fn stage(name: &str) -> Option<Stage> {
    let s = Stage::from_name(name);
    (s.as_str() == name).then_some(s)
}

/// `GET /api/dead-letters`.
pub async fn list(State(c): State<Arc<Console>>, Query(q): Query<ListQuery>) -> Response {
    let stage = match q.stage.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => match stage(name) {
            Some(s) => Some(s),
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "stage: expected ingest, delivery, filter or transform",
                );
            }
        },
    };
    let filter = Filter {
        endpoint: q.endpoint.filter(|e| !e.is_empty()),
        stage,
        reason: q.reason.filter(|r| !r.is_empty()),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let after = q.after.filter(|a| !a.is_empty());
    match c.dlq.page(after.as_deref(), limit, &filter).await {
        Ok(page) => Json(serde_json::json!({
            "entries": page.entries.into_iter().map(Summary::of).collect::<Vec<_>>(),
            "next": page.next,
        }))
        .into_response(),
        Err(e) => dlq_error(&e),
    }
}

/// `GET /api/dead-letters/{id}`: the entry's fields, the headers its delivery carries, its
/// errors, and its body (pretty-printed when it is JSON, at most [`SHOW_BYTES`]).
pub async fn show(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let dl = match c.dlq.get(&id).await {
        Ok(dl) => dl,
        Err(e) => return dlq_error(&e),
    };
    let pretty = serde_json::from_slice::<serde_json::Value>(&dl.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let json = pretty.is_some();
    let (body, cut) = match &pretty {
        Some(p) => clip(p.as_bytes(), SHOW_BYTES),
        None => clip(&dl.body, SHOW_BYTES),
    };
    let headers = delivery_headers(&dl);
    Json(serde_json::json!({
        "entry": &dl,
        "stage": dl.stage.as_str(),
        "headers": headers,
        "errors": [{
            "at_ms": dl.failed_at_ms,
            "attempts": dl.attempts,
            "last_status": dl.last_status,
            "error": dl.error,
        }],
        "body": body,
        "body_is_json": json,
        "body_cut": cut || dl.truncated.is_some(),
    }))
    .into_response()
}

/// The headers a delivery of `dl` carries that the entry determines, by the contract's
/// names; the signature (and its timestamp and nonce) is made anew at each attempt, and the
/// endpoint's own configured headers are not shown (they may carry credentials).
fn delivery_headers(dl: &DeadLetter) -> Vec<(&'static str, String)> {
    use crate::delivery::signing::{HEADER_EVENT, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE};
    let mut h = vec![("content-type", "application/json".to_string())];
    if !dl.idempotency_key.is_empty() {
        h.push((HEADER_IDEMPOTENCY_KEY, dl.idempotency_key.clone()));
    }
    if !dl.event_type.is_empty() {
        h.push((HEADER_EVENT, dl.event_type.clone()));
    }
    h.push((HEADER_SIGNATURE, "(signed at each attempt)".to_string()));
    h
}

/// The body of a purge: some entries by id, or (with `all`) every entry, of `endpoint` if
/// given; `confirm` must be true.
#[derive(Debug, Deserialize)]
pub struct PurgeRequest {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
    endpoint: Option<String>,
    #[serde(default)]
    confirm: bool,
}

/// `POST /api/dead-letters/purge`: deletes for good, only with `"confirm": true`.
pub async fn purge(State(c): State<Arc<Console>>, Json(r): Json<PurgeRequest>) -> Response {
    if !r.confirm {
        return refuse(
            StatusCode::BAD_REQUEST,
            "purge deletes entries for good; send \"confirm\": true",
        );
    }
    let done = match (r.all, r.ids.is_empty()) {
        (true, true) => c.dlq.purge(&Filter::endpoint(r.endpoint.as_deref())).await,
        (false, false) => c.dlq.delete(&r.ids).await,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "send either \"ids\": [...] or \"all\": true (with an optional \"endpoint\")",
            );
        }
    };
    match done {
        Ok(n) => {
            tracing::info!(purged = n, "dead-letter entries purged from the console");
            Json(serde_json::json!({ "purged": n })).into_response()
        }
        Err(e) => dlq_error(&e),
    }
}

/// 404 for an entry that does not exist, 503 when Redis fails.
pub fn dlq_error(e: &DlqError) -> Response {
    match e {
        DlqError::NotFound(_) => refuse(StatusCode::NOT_FOUND, &e.to_string()),
        _ => refuse(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clip_cuts_at_a_character_boundary_and_says_so() {
        assert_eq!(clip("héllo".as_bytes(), 2), ("h".to_string(), true));
        assert_eq!(clip(b"abc", 3), ("abc".to_string(), false));
    }

    #[test]
    fn only_known_stage_names_filter() {
        assert_eq!(stage("transform"), Some(Stage::Transform));
        assert_eq!(stage("nonsense"), None);
    }
}
