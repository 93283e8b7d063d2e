//! Who may read and change what through the console's API.
//!
//! - No `[admin] token`: reads are open (like `/status` without a token) and every change
//!   is refused with 403: a console nobody configured must not be a way into the queue.
//! - A token: reads and changes need `Authorization: Bearer <token>` (compared in constant
//!   time), as `/status` does.
//! - Changes also need `Content-Type: application/json` (an HTML form cannot send it
//!   cross-site without a CORS preflight, which this server never grants) and, when the
//!   browser sends `Origin` or `Sec-Fetch-Site`, the request's own origin. No cookie is
//!   ever set or read, so there is no ambient credential for another site to use.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;

/// The console's access rule.
#[derive(Debug)]
pub struct Guard {
    token: Option<Secret>,
}

impl Guard {
    /// Guards with `token` (`[admin] token`), or read-only without one.
    pub fn new(token: Option<Secret>) -> Self {
        Self { token }
    }

    fn presented_matches(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        bool::from(presented.ct_eq(token.expose()))
    }
}

/// A JSON error answer: `{"error": "..."}` with `status`.
pub fn refuse(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

fn unauthorized() -> Response {
    let mut r = refuse(
        StatusCode::UNAUTHORIZED,
        "this needs Authorization: Bearer <admin.token>",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Lets a read through when no token is configured or the right one is presented.
pub async fn for_reading(State(g): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if g.presented_matches(request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

/// Lets a change through only with a configured token presented, a JSON body and no
/// cross-origin marks.
pub async fn for_changing(State(g): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if g.token.is_none() {
        return refuse(
            StatusCode::FORBIDDEN,
            "the console is read-only: set [admin] token to allow replay, purge, pause and resume",
        );
    }
    if !g.presented_matches(request.headers()) {
        return unauthorized();
    }
    if let Err(why) = same_origin(request.headers()) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "changes take a JSON body: send Content-Type: application/json",
        );
    }
    next.run(request).await
}

/// Refuses a request a browser marks as coming from another site: `Sec-Fetch-Site` other
/// than `same-origin`/`none`, or an `Origin` whose host is not the request's `Host`.
/// Requests without either (curl, scripts) pass.
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err("cross-site request refused");
    }
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        let host = text(header::HOST.as_str()).unwrap_or_default();
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or_default();
        if host.is_empty() || origin_host != host {
            return Err("cross-origin request refused");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_request_without_browser_marks_passes_the_origin_check() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9090")])).is_ok());
    }

    #[test]
    fn the_pages_own_origin_passes() {
        let h = headers(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&h).is_ok());
    }

    #[test]
    fn another_origin_or_a_cross_site_fetch_is_refused() {
        let other = headers(&[("host", "127.0.0.1:9090"), ("origin", "http://evil.test")]);
        assert!(same_origin(&other).is_err());
        let cross = headers(&[("host", "127.0.0.1:9090"), ("sec-fetch-site", "cross-site")]);
        assert!(same_origin(&cross).is_err());
        let null = headers(&[("host", "127.0.0.1:9090"), ("origin", "null")]);
        assert!(same_origin(&null).is_err());
    }

    #[test]
    fn the_token_is_required_only_when_configured() {
        let open = Guard::new(None);
        assert!(open.presented_matches(&HeaderMap::new()));
        let guarded = Guard::new(Some(Secret::from_bytes("s3cret")));
        assert!(!guarded.presented_matches(&HeaderMap::new()));
        assert!(!guarded.presented_matches(&headers(&[("authorization", "Bearer s3cre")])));
        assert!(guarded.presented_matches(&headers(&[("authorization", "Bearer s3cret")])));
    }
}
