//! One request to the sample receiver, in the order the module docs give: the body and
//! method, a drilled failure, the signature, then — under the state lock — the `--count`
//! limit, de-duplication, the replay check and acceptance.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::MAX_BODY_BYTES;
use super::state::{Drill, Receiver, ReplayCheck, replay_key};
use crate::cli::Scheme;
use crate::commands::sign::unix_now;
use crate::delivery::signing::{
    HEADER_ATTEMPT, HEADER_EVENT, HEADER_IDEMPOTENCY_KEY, Verified, scheme_name, verify,
};

/// One accepted event, as printed to stdout (one line each).
#[derive(Serialize)]
struct AcceptedEvent<'a> {
    idempotency_key: Option<&'a str>,
    event_type: Option<&'a str>,
    attempt: Option<u64>,
    scheme: &'static str,
    path: &'a str,
    received_at: String,
    /// The body parsed as JSON, or as a string when it is not JSON.
    body: Value,
}

/// A JSON response `{"<field>": "<text>"}`.
fn reply(status: StatusCode, field: &str, text: impl Into<String>) -> Response {
    (status, axum::Json(json!({ field: text.into() }))).into_response()
}

/// The text value of a header, if present and readable.
pub(super) fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Handles every request, whatever the path.
pub(super) async fn handle(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = uri.path();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return unreadable_body(&method, path, rejection),
    };
    if method != Method::POST {
        return not_post(&method, path);
    }
    if let Some(delay) = receiver.delay {
        tokio::time::sleep(delay).await;
    }

    // (1) Drilled failures: every request counts, valid or not.
    let n = receiver.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(drill) = receiver.drill.filter(|d| d.applies_to(n)) {
        return drilled(drill, n, path);
    }

    // (2) Signature and timestamp.
    let now = unix_now();
    let verified = match verify(
        receiver.scheme,
        &headers,
        &body,
        &receiver.secrets,
        now,
        receiver.tolerance,
    ) {
        Ok(verified) => verified,
        Err(reason) => {
            eprintln!("receive: rejected {path} → 401: {reason}");
            return reply(StatusCode::UNAUTHORIZED, "error", reason.to_string());
        }
    };
    admit(
        &receiver,
        &Request {
            verified: &verified,
            headers: &headers,
            body: &body,
            path,
            now,
        },
    )
}

/// A body that could not be read (too large, or the client stopped sending).
fn unreadable_body(method: &Method, path: &str, rejection: BytesRejection) -> Response {
    let status = rejection.status();
    let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("body is larger than {MAX_BODY_BYTES} bytes")
    } else {
        rejection.body_text()
    };
    eprintln!(
        "receive: rejected {method} {path} → {}: {reason}",
        status.as_u16()
    );
    reply(status, "error", reason)
}

/// 405 for anything but POST.
fn not_post(method: &Method, path: &str) -> Response {
    eprintln!("receive: rejected {method} {path} → 405: only POST is accepted");
    let mut response = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "error",
        "only POST is accepted",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// The answer to the `n`-th request when a drill fails it.
fn drilled(drill: Drill, n: u64, path: &str) -> Response {
    eprintln!(
        "receive: drilled failure for request #{n} {path} → {}",
        drill.status.as_u16()
    );
    let mut response = reply(drill.status, "error", "drilled failure (receive --status)");
    if let Some(secs) = drill.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A request whose signature verified.
struct Request<'a> {
    verified: &'a Verified,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    path: &'a str,
    now: i64,
}

/// Steps (3) to (5), under the state lock so that de-duplication, the replay check and the
/// order of printed lines agree; the lock is released before anything is logged.
fn admit(receiver: &Receiver, req: &Request<'_>) -> Response {
    let path = req.path;
    let idempotency_key =
        header_text(req.headers, HEADER_IDEMPOTENCY_KEY).or(match req.verified.scheme {
            Scheme::StandardWebhooks => req.verified.nonce_or_id.as_deref(),
            _ => None,
        });

    let mut state = receiver.state();
    if receiver.count.is_some_and(|count| state.accepted >= count) {
        drop(state);
        eprintln!("receive: {path} → 503: already accepted --count events, shutting down");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            "receiver is shutting down",
        );
    }

    // (3) De-duplication first: a retry of an event already accepted (its 200 was lost, say)
    // is answered 200 `duplicate`, never 409 — a 409 would dead-letter it at the sender. The
    // idempotency key header is not signed, so a replay with a fresh key still meets the
    // replay check below.
    if let Some(key) = idempotency_key
        && state.seen.contains(key)
    {
        drop(state);
        eprintln!("receive: duplicate {key} on {path} → 200");
        return reply(StatusCode::OK, "status", "duplicate");
    }

    // Replays.
    if let Some((key, expires_at)) =
        replay_key(req.verified, req.headers, req.now, receiver.tolerance)
    {
        match state.check_replay(key, expires_at, req.now) {
            ReplayCheck::Fresh => {}
            ReplayCheck::Replayed => {
                drop(state);
                return replayed(req.verified.scheme, path);
            }
            ReplayCheck::Full => {
                drop(state);
                return cache_full(path);
            }
        }
    }

    // (4) Remember the idempotency key (already known keys were answered above).
    if let Some(key) = idempotency_key {
        state.first_sighting(key);
    }

    // (5) Accepted: one line on stdout, printed under the lock so lines follow accept order.
    state.accepted += 1;
    let accepted = state.accepted;
    print_line(&AcceptedEvent {
        idempotency_key,
        event_type: header_text(req.headers, HEADER_EVENT),
        attempt: header_text(req.headers, HEADER_ATTEMPT).and_then(|a| a.parse().ok()),
        scheme: scheme_name(req.verified.scheme),
        path,
        received_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        body: serde_json::from_slice(req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body).into_owned())),
    });
    drop(state);

    if receiver.count.is_some_and(|count| accepted >= count) {
        receiver.done.notify_one();
    }
    reply(StatusCode::OK, "status", "accepted")
}

/// 409: the replay check has seen this request before.
fn replayed(scheme: Scheme, path: &str) -> Response {
    let what = match scheme {
        Scheme::StandardWebhooks => "webhook-id, timestamp and signature",
        _ => "nonce",
    };
    eprintln!("receive: rejected {path} → 409: replayed request (same {what})");
    reply(
        StatusCode::CONFLICT,
        "error",
        format!("replayed request (same {what} as an earlier request)"),
    )
}

/// 503: the replay cache is full even after pruning.
fn cache_full(path: &str) -> Response {
    eprintln!("receive: {path} → 503: replay cache is full");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "error",
        "replay cache is full; retry later",
    )
}

/// Writes one JSON line to stdout and flushes it, so a reader sees each event at once.
fn print_line(event: &AcceptedEvent<'_>) {
    let line = match serde_json::to_string(event) {
        Ok(line) => line,
        Err(e) => {
            eprintln!("receive: cannot encode the accepted event: {e}");
            return;
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        eprintln!("receive: cannot write to stdout: {e}");
    }
}
