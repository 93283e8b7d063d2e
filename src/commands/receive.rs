//! `receive` command: a sample webhook consumer that does what a careful receiver should.
//!
//! Per request, in order: answer drilled failures (`--fail-first`, `--status`) for retry
//! drills; verify the signature and timestamp (401); reject a replayed request (409); drop a
//! repeat of an idempotency key (200 `duplicate`, not printed); otherwise print one JSON line
//! to stdout and answer 200 `accepted`.
//!
//! Replay versus retry: the bridge signs every attempt afresh. Under hokusai-v2 each attempt
//! has a new nonce, so a nonce seen twice is a replay. Under standard-webhooks `webhook-id` is
//! the idempotency key and stays the same across retries, so a replay is the same
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) seen twice. hokusai-legacy signs
//! no timestamp or nonce and has no replay protection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::sign::{resolve_secrets, unix_now};
use crate::cli::{ReceiveArgs, Scheme};
use crate::config::Secret;
use crate::delivery::signing::{
    HEADER_ATTEMPT, HEADER_EVENT, HEADER_IDEMPOTENCY_KEY, HEADER_WEBHOOK_SIGNATURE, Verified,
    scheme_name, verify,
};

/// Largest body accepted (1 MiB); larger ones get 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most replay entries kept at once; beyond that (after pruning) requests get 503 rather
/// than weakening replay protection.
const MAX_REPLAY_ENTRIES: usize = 100_000;
/// Most idempotency keys remembered; the oldest are forgotten first.
const MAX_SEEN_KEYS: usize = 100_000;
/// How long a replay entry lives when `--tolerance 0` turned the timestamp check off.
const REPLAY_WINDOW_WITHOUT_TOLERANCE: i64 = 300;

/// Runs `receive` until `--count` events were accepted or SIGINT/SIGTERM; exit code 0.
pub async fn run(args: ReceiveArgs) -> anyhow::Result<i32> {
    let references = if args.secrets.is_empty() {
        if std::env::var_os("WEBHOOK_SECRET").is_none() {
            // A configuration error (exit 78), like a missing secret in the config file.
            return Err(crate::config::ConfigError::Flag {
                flag: "--secret",
                message: "receive needs a secret to verify with: pass --secret SECRET (a literal, \
                 env:NAME or file:PATH; repeat during rotation) or set WEBHOOK_SECRET"
                    .into(),
            }
            .into());
        }
        vec!["env:WEBHOOK_SECRET".to_owned()]
    } else {
        args.secrets.clone()
    };
    let secrets = resolve_secrets(&references)?;
    let drill = Drill::from_args(&args)?;
    let limits = crate::http_server::ServerLimits {
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        max_connections: args.max_connections,
    };
    if let Err((key, why)) = limits.check() {
        anyhow::bail!("--{} {why}", key.replace('_', "-"));
    }

    let receiver = Arc::new(Receiver {
        secrets,
        scheme: args.scheme,
        tolerance: args.tolerance,
        drill,
        delay: args.delay,
        count: args.count,
        requests: AtomicU64::new(0),
        done: Notify::new(),
        state: Mutex::new(ReceiverState::default()),
    });

    // Install signal handlers before announcing the address, so a signal sent as soon as
    // the line is read already leads to a clean exit.
    let signals = Signals::install()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("receive cannot listen on {}", args.listen))?;
    let addr: SocketAddr = listener
        .local_addr()
        .context("receive cannot read its listening address")?;
    let schemes = match args.scheme {
        Some(scheme) => scheme_name(scheme).to_owned(),
        None => [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ]
        .map(scheme_name)
        .join(", "),
    };
    eprintln!("receive: listening on http://{addr} (schemes: {schemes})");

    let app = Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::clone(&receiver));
    let stop = Arc::clone(&receiver);
    crate::http_server::serve(
        listener,
        app,
        limits,
        async move { signals.wait(&stop).await },
    )
    .await;
    Ok(crate::exit::OK)
}

/// Failures answered on purpose, for retry drills.
#[derive(Debug, Clone, Copy)]
struct Drill {
    status: StatusCode,
    /// Fail only the first N requests; `None` fails every request.
    first: Option<u64>,
    retry_after: Option<u64>,
}

impl Drill {
    /// `--status` alone fails every request; `--fail-first N` fails the first N with
    /// `--status` (default 503); neither (or `--fail-first 0`) drills nothing.
    fn from_args(args: &ReceiveArgs) -> anyhow::Result<Option<Self>> {
        let status = args
            .status
            .map(|code| {
                StatusCode::from_u16(code)
                    .with_context(|| format!("--status {code} is not an HTTP status code"))
            })
            .transpose()?;
        let drill = match (args.fail_first, status) {
            (Some(0), _) | (None, None) => None,
            (Some(n), status) => Some(Self {
                status: status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                first: Some(n),
                retry_after: args.retry_after,
            }),
            (None, Some(status)) => Some(Self {
                status,
                first: None,
                retry_after: args.retry_after,
            }),
        };
        if drill.is_none() && args.retry_after.is_some() {
            eprintln!("receive: --retry-after has no effect without --status or --fail-first");
        }
        Ok(drill)
    }

    /// Whether the `n`-th request (from 1) is to fail.
    fn applies_to(&self, n: u64) -> bool {
        self.first.is_none_or(|first| n <= first)
    }
}

/// Everything a request handler needs; shared by all requests.
struct Receiver {
    secrets: Vec<Secret>,
    scheme: Option<Scheme>,
    tolerance: u64,
    drill: Option<Drill>,
    delay: Option<Duration>,
    count: Option<u64>,
    /// Every request seen, drilled or not (the drill counts all requests).
    requests: AtomicU64,
    /// Signalled once `--count` events were accepted.
    done: Notify,
    state: Mutex<ReceiverState>,
}

impl Receiver {
    fn state(&self) -> MutexGuard<'_, ReceiverState> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for a sample receiver; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What makes a verified request a replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ReplayKey {
    /// hokusai-v2: the nonce, new for every attempt.
    Nonce(String),
    /// standard-webhooks: the id is stable across retries, so the whole signed triple counts.
    Standard {
        id: String,
        timestamp: i64,
        signature: String,
    },
}

/// The mutable part, behind one lock.
#[derive(Default)]
struct ReceiverState {
    /// Replay key → unix second after which the timestamp check rejects it anyway.
    replays: HashMap<ReplayKey, i64>,
    /// When to next drop expired replay entries.
    next_prune: i64,
    /// Idempotency keys already accepted, and their arrival order for eviction.
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    accepted: u64,
}

/// Why a verified request is refused before de-duplication.
enum ReplayCheck {
    Fresh,
    Replayed,
    Full,
}

impl ReceiverState {
    fn check_replay(&mut self, key: ReplayKey, expires_at: i64, now: i64) -> ReplayCheck {
        if now >= self.next_prune || self.replays.len() >= MAX_REPLAY_ENTRIES {
            self.replays.retain(|_, expiry| *expiry >= now);
            self.next_prune = now + 1;
        }
        if self.replays.contains_key(&key) {
            return ReplayCheck::Replayed;
        }
        if self.replays.len() >= MAX_REPLAY_ENTRIES {
            return ReplayCheck::Full;
        }
        self.replays.insert(key, expires_at);
        ReplayCheck::Fresh
    }

    /// Records `key`; false when it was already seen.
    fn first_sighting(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        if self.seen_order.len() >= MAX_SEEN_KEYS
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.to_owned());
        self.seen_order.push_back(key.to_owned());
        true
    }
}

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
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Handles every request, whatever the path.
async fn handle(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let path = uri.path();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
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
            return reply(status, "error", reason);
        }
    };
    if method != Method::POST {
        eprintln!("receive: rejected {method} {path} → 405: only POST is accepted");
        let mut response = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "error",
            "only POST is accepted",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(delay) = receiver.delay {
        tokio::time::sleep(delay).await;
    }

    // (1) Drilled failures: every request counts, valid or not.
    let n = receiver.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(drill) = receiver.drill.filter(|d| d.applies_to(n)) {
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
        return response;
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
    let idempotency_key = header_text(&headers, HEADER_IDEMPOTENCY_KEY).or(match verified.scheme {
        Scheme::StandardWebhooks => verified.nonce_or_id.as_deref(),
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
    if let Some((key, expires_at)) = replay_key(&verified, &headers, now, receiver.tolerance) {
        match state.check_replay(key, expires_at, now) {
            ReplayCheck::Fresh => {}
            ReplayCheck::Replayed => {
                drop(state);
                let what = match verified.scheme {
                    Scheme::StandardWebhooks => "webhook-id, timestamp and signature",
                    _ => "nonce",
                };
                eprintln!("receive: rejected {path} → 409: replayed request (same {what})");
                return reply(
                    StatusCode::CONFLICT,
                    "error",
                    format!("replayed request (same {what} as an earlier request)"),
                );
            }
            ReplayCheck::Full => {
                drop(state);
                eprintln!("receive: {path} → 503: replay cache is full");
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "error",
                    "replay cache is full; retry later",
                );
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
    let event = AcceptedEvent {
        idempotency_key,
        event_type: header_text(&headers, HEADER_EVENT),
        attempt: header_text(&headers, HEADER_ATTEMPT).and_then(|a| a.parse().ok()),
        scheme: scheme_name(verified.scheme),
        path,
        received_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        body: serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    };
    print_line(&event);
    drop(state);

    if receiver.count.is_some_and(|count| accepted >= count) {
        receiver.done.notify_one();
    }
    reply(StatusCode::OK, "status", "accepted")
}

/// The replay key of a verified request and when it may be forgotten; `None` for
/// hokusai-legacy, which signs nothing that could tell a replay from a retry.
fn replay_key(
    verified: &Verified,
    headers: &HeaderMap,
    now: i64,
    tolerance: u64,
) -> Option<(ReplayKey, i64)> {
    let timestamp = verified.timestamp?;
    let id = verified.nonce_or_id.clone()?;
    let key = match verified.scheme {
        Scheme::HokusaiV2 => ReplayKey::Nonce(id),
        Scheme::StandardWebhooks => ReplayKey::Standard {
            id,
            timestamp,
            signature: header_text(headers, HEADER_WEBHOOK_SIGNATURE)?.to_owned(),
        },
        Scheme::HokusaiLegacy => return None,
    };
    // Once the timestamp is outside the tolerance the request is rejected as stale anyway.
    let expires_at = if tolerance == 0 {
        now.saturating_add(REPLAY_WINDOW_WITHOUT_TOLERANCE)
    } else {
        timestamp
            .saturating_add(i64::try_from(tolerance).unwrap_or(i64::MAX))
            .max(now)
    };
    Some((key, expires_at))
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

/// SIGINT and SIGTERM, registered up front.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Resolves on SIGINT, SIGTERM or once `--count` events were accepted.
    async fn wait(self, receiver: &Receiver) {
        #[cfg(unix)]
        let (mut interrupt, mut terminate) = (self.interrupt, self.terminate);
        #[cfg(unix)]
        let signalled = async {
            tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            }
        };
        #[cfg(not(unix))]
        let signalled = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            "Ctrl-C"
        };
        tokio::select! {
            name = signalled => eprintln!("receive: {name}, shutting down"),
            () = receiver.done.notified() => {
                let accepted = receiver.state().accepted;
                eprintln!("receive: accepted {accepted} events (--count), shutting down");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_alone_fails_every_request() {
        let drill = Drill {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            first: None,
            retry_after: None,
        };
        assert!(drill.applies_to(1) && drill.applies_to(1_000));
    }

    #[test]
    fn fail_first_fails_only_the_first_requests() {
        let drill = Drill {
            status: StatusCode::SERVICE_UNAVAILABLE,
            first: Some(2),
            retry_after: None,
        };
        assert!(drill.applies_to(1) && drill.applies_to(2));
        assert!(!drill.applies_to(3));
    }

    #[test]
    fn a_replayed_nonce_is_caught_and_forgotten_after_it_expires() {
        let mut state = ReceiverState::default();
        let key = || ReplayKey::Nonce("n-1".into());
        assert!(matches!(
            state.check_replay(key(), 1_300, 1_000),
            ReplayCheck::Fresh
        ));
        assert!(matches!(
            state.check_replay(key(), 1_300, 1_200),
            ReplayCheck::Replayed
        ));
        assert!(matches!(
            state.check_replay(key(), 1_700, 1_400),
            ReplayCheck::Fresh
        ));
    }

    #[test]
    fn remembers_idempotency_keys_once() {
        let mut state = ReceiverState::default();
        assert!(state.first_sighting("k"));
        assert!(!state.first_sighting("k"));
        assert!(state.first_sighting("other"));
    }
}
