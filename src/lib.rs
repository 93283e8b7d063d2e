//! `redis-webhook-bridge` moves events that a model registry publishes to Redis (pub/sub
//! channels, lists, streams) to signed HTTP webhooks, without touching the registry's code.
//!
//! # Layout
//!
//! The modules follow the path of one message, in pipeline order:
//!
//! - [`config`]: figment layering (defaults → TOML → legacy variables → `BRIDGE_*` → flags),
//!   secret references (`env:`, `file:`), TLS files, validation into checked types, and the
//!   reload triggers (SIGHUP, file change) in [`config::watch`].
//! - [`redis`](crate::redis): the Redis plumbing every stage shares — connections with
//!   bounded timeouts and the address that error lines name, this replica's consumer name,
//!   the minimum server version.
//! - [`source`]: Redis readers — `pubsub` (reconnects with backoff, counts gaps), `list`
//!   (atomic move into a processing list) and `stream` (consumer group) — yielding
//!   [`source::Received`] messages.
//! - [`ingest`]: size and JSON checks, envelope unwrapping, idempotency key, event type,
//!   routing, then the journal: one Lua call per batch records each message's key and
//!   appends it to every matching endpoint's queue; dual publishing ([`ingest::Republisher`]).
//! - [`key_render`]: idempotency key fields written exactly as the registry's Python does.
//! - [`queue`]: per-endpoint queues of [`queue::Job`]s: [`queue::redis`] (streams, consumer
//!   groups, retry set, heartbeats, claiming a dead replica's work, delivery ledger) and
//!   [`queue::memory`].
//! - [`expr`]: jq expressions (via the `jaq` crates) over a message's JSON — an endpoint's
//!   filter and transform — compiled once, run with bounds on steps, time and output size.
//! - [`delivery`]: per-endpoint workers that sign ([`delivery::signing`]), POST with one
//!   pooled client and the URL/SSRF policy ([`delivery::client`]), classify the answer into
//!   an [`delivery::Outcome`], retry with backoff ([`delivery::retry`]) and keep a circuit
//!   breaker ([`delivery::circuit`]).
//! - [`dlq`]: the dead-letter stream in Redis (and the fallback copy).
//! - [`control`]: the cluster-wide pause flag and the legacy-subscriber check.
//! - [`admin`]: the axum router for `/healthz`, `/readyz`, `/metrics` and `/status`.
//! - [`http_server`]: serving the admin router and `receive` with timeouts and a connection
//!   cap.
//! - [`telemetry`]: log subscriber (json/text, reloadable level), metric names and the
//!   Prometheus registry, CloudWatch EMF lines, OTLP trace export and `traceparent`.
//! - [`shutdown`]: one cancellation signal for every task and a drain with a deadline.
//! - [`util`]: helpers that belong to no stage — unix milliseconds and RFC 3339
//!   ([`util::time`]), which addresses a webhook may reach and the rustls provider
//!   ([`util::net`]).
//! - [`bridge`]: the `run` command — wires the stages, keeps the live endpoint set that a
//!   reload updates, and shuts down in order.
//! - [`commands`]: every other CLI command (`check-config`, `sign`, `verify`, `receive`,
//!   `dlq`, `pause`/`resume`/`status`, `migrate`).
//! - [`cli`]: the clap definitions that `main.rs` parses.

pub mod admin;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod dlq;
pub mod endpoint_state;
pub mod expr;
pub mod http_server;
pub mod ingest;
pub mod key_render;
pub mod message;
pub mod migrate;
pub mod pause;
pub mod queue;
pub mod redis;
pub mod shutdown;
pub mod source;
pub mod telemetry;
pub mod util;

/// The version string sent in `User-Agent` and reported by `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Process exit codes, as the contract defines them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Runtime failure.
    pub const RUNTIME: i32 = 1;
    /// Usage error (bad flags).
    pub const USAGE: i32 = 2;
    /// Configuration error.
    pub const CONFIG: i32 = 78;
}
