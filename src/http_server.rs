//! Serving HTTP/1.1 with limits against idle and slow clients: the admin server and `receive`.
//!
//! `axum::serve` sets no timeouts, so a client that opens a connection and sends half a
//! request header holds a file descriptor forever; a few hundred of them exhaust the
//! process's descriptors and webhook deliveries fail with "Too many open files". [`serve`]
//! runs the same router with:
//!
//! - a **cap on concurrent connections** ([`ServerLimits::max_connections`]): a semaphore
//!   permit is taken *before* `accept`, so beyond the cap new connections wait in the kernel's
//!   listen backlog — they are neither accepted nor given a descriptor — and are served in
//!   arrival order as permits come back;
//! - a **header-read timeout** (hyper's `header_read_timeout`): the request line and headers
//!   must arrive in full within this time of the server starting to wait for them. hyper
//!   starts that wait as soon as a connection is accepted *and* again right after each
//!   response on a kept-alive connection, so the same timeout also closes **idle keep-alive
//!   connections** (hyper has no separate idle timer for HTTP/1);
//! - a **body-read timeout** ([`ServerLimits::body_read_timeout`]): the whole body must arrive
//!   within this time of the headers. tower-http's `RequestBodyTimeoutLayer` restarts its
//!   timer on every frame, so a client sending one byte just before each deadline would never
//!   time out; [`DeadlineBody`] is a fixed deadline instead. A handler that does not read the
//!   body (every admin endpoint) makes hyper close the connection rather than drain it.
//!
//! Together: a client holds a connection slot for at most `header_read_timeout` before its
//! request is complete (plus `body_read_timeout` for a body), and a legitimate request queued
//! behind a full cap is served once the slowest of those expire.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// Default time a client has to send a request's headers (and to start its next request on a
/// kept-alive connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's body, from the end of its headers.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// How long an idle or slow client may hold a connection, and how many connections at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerLimits {
    /// Request line and headers must arrive within this; also the idle keep-alive timeout.
    #[serde(with = "humantime_serde_compat")]
    pub header_read_timeout: Duration,
    /// The whole body must arrive within this, counted from the end of the headers.
    #[serde(with = "humantime_serde_compat")]
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Serialises durations as humantime text, like the rest of the config.
mod humantime_serde_compat {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServerLimits {
    /// Refuses limits that would turn a defence off: `(key, what is wrong)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.header_read_timeout.is_zero() {
            return Err(("header_read_timeout", "must be greater than 0"));
        }
        if self.body_read_timeout.is_zero() {
            return Err(("body_read_timeout", "must be greater than 0"));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be greater than 0"));
        }
        if self.max_connections > Semaphore::MAX_PERMITS {
            return Err(("max_connections", "is too large"));
        }
        Ok(())
    }
}

/// Serves `app` on `listener` with `limits` until `stop` resolves, then lets the connections
/// in flight finish their current request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let body_timeout = limits.body_read_timeout;
    tokio::pin!(stop);
    loop {
        // The permit first: without one, the next connection stays in the backlog.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: not
                    // fatal; back off briefly so a persistent error does not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
            // The client's address, for handlers that record who acted (the console's pause).
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(request)
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let closing = closing.clone();
        tracker.spawn(async move {
            let _permit = permit; // released when the connection ends
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = closing.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    closing.cancel();
    tracker.close();
    tracker.wait().await;
}

/// A request body that fails once `deadline` passes, however steadily bytes trickle in.
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, cut off `timeout` from now.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
        }
    }
}

/// The body did not arrive in full within the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the body-read timeout")]
pub struct BodyTimeout;

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
