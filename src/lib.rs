//! `redis-webhook-bridge` moves events that a model registry publishes to Redis (pub/sub
//! channels, lists, streams) to signed HTTP webhooks, without touching the registry's code.
//!
//! # Layout
//!
//! Dependencies point one way, in the order of one message's path: the types and plumbing
//! every stage shares at the bottom, then source → ingest → queue → delivery → dlq, then
//! serving and the commands on top. A stage never imports one that comes after it; it
//! reaches a later stage through a type or trait of its own that the later stage implements
//! (ingest hands batches to [`ingest::Enqueue`], which [`queue::Intake`] implements; every
//! stage dead-letters through [`message::DeadLetterSink`], which [`dlq::Dlq`] implements).
//! `tests/architecture.rs` reads the imports from the source and fails on any that points
//! up, and on any cycle.
//!
//! Shared types and plumbing:
//!
//! - [`message`]: [`message::Message`], [`message::Job`], [`message::DeadLetter`] — the
//!   types every stage passes on.
//! - [`endpoint_state`]: each endpoint's live counters and the queue counts' vocabulary,
//!   read by `/status`, the `status` command and the EMF lines.
//! - [`util`]: the one reconnect policy ([`util::backoff`]), time formatting
//!   ([`util::time`]), which addresses a webhook may reach and the rustls provider
//!   ([`util::net`]).
//! - [`shutdown`]: one cancellation signal for every task and a drain with a deadline.
//! - [`key_render`]: idempotency key fields written exactly as the registry's Python does.
//! - [`expr`]: jq expressions (via the `jaq` crates) over a message's JSON — an endpoint's
//!   filter and transform — compiled once, run with bounds on steps, time and output size.
//! - [`http_server`]: serving the admin router and `receive` with timeouts and a
//!   connection cap.
//! - [`config`]: figment layering (`load`: defaults → TOML → legacy variables → `BRIDGE_*`
//!   → flags), the checked types (`model`, re-exported as [`config::Config`] and the
//!   rest), raw → checked validation with its unit tests (`validate`), secret references,
//!   TLS files, and the reload triggers ([`config::watch`]).
//! - [`redis`]: connections and this replica's consumer name, reply parsing,
//!   key scans, claiming a stopped replica's pending entries, the minimum server version.
//! - [`telemetry`]: logging, metric names and the Prometheus registry, trace context, EMF
//!   lines, OTLP export.
//!
//! The pipeline:
//!
//! - [`pause`]: the cluster-wide pause flag that every worker waits on.
//! - [`source`]: Redis readers — `pubsub`, `list` (atomic move into a processing list),
//!   `stream` (consumer group) — each one task fed a [`source::SourceCtx`], yielding
//!   [`source::Received`] messages.
//! - [`ingest`]: size and JSON checks, envelope unwrapping, idempotency key and event type
//!   ([`ingest::parse`](mod@ingest::parse)), routing to endpoints ([`ingest::route`]), dual publishing
//!   ([`ingest::republish`]); it hands routed batches on and never writes a Redis key.
//! - [`queue`]: per-endpoint queues that own their storage — the journal, consumer groups,
//!   retry set and delivery ledger in Redis ([`queue::redis`]), or [`queue::memory`].
//! - [`delivery`]: per-endpoint workers that sign ([`delivery::signing`]), POST with one
//!   pooled client and the URL/SSRF policy ([`delivery::client`]), classify the answer into
//!   an [`delivery::Outcome`], retry ([`delivery::retry`]) and keep a circuit breaker
//!   ([`delivery::circuit`]).
//! - [`dlq`]: the dead-letter stream (and the fallback copy), and [`dlq::replay`], the
//!   library code behind `dlq replay`.
//!
//! On top:
//!
//! - [`admin`]: the axum router for `/healthz`, `/readyz`, `/metrics` and `/status`.
//! - [`migrate`]: the inventory of `migrate plan`, the parity check of `migrate validate`,
//!   and the watch for legacy subscribers.
//! - [`console`]: the operator's web page at `/` and the JSON API under `/api/` it uses —
//!   the overview, dead letters (browse, replay, purge) and pause/resume — guarded by
//!   `[admin] token`.
//! - [`app`]: the `run` command — start, serve (reloads), reload, stop in order.
//! - [`cli`]: the clap definitions that `main.rs` parses.
//! - [`commands`]: every other CLI command, thin: parse, call the library, print.

pub mod admin;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
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
