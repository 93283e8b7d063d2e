//! `redis-webhook-bridge` moves events that a model registry publishes to Redis (pub/sub
//! channels, lists, streams) to signed HTTP webhooks, without touching the registry's code.
//!
//! # Layout
//!
//! The modules follow the path of one message, in pipeline order:
//!
//! - [`config`]: figment layering (defaults → TOML → `.env`/environment → flags), the
//!   registry's legacy variables, secret references (`env:`, `file:`) and validation. The
//!   result is a [`config::Config`] whose fields are already checked newtypes.
//! - [`source`]: Redis readers (`pubsub` for now) that yield [`source::Received`] messages and
//!   reconnect with backoff when Redis goes away.
//! - [`ingest`]: turns a received message into a [`queue::Job`] per matching endpoint —
//!   size limit, JSON check, idempotency key, event type, routing, de-duplication.
//! - [`queue`]: per-endpoint queues of delivery jobs (`memory` today).
//! - [`delivery`]: per-endpoint workers that sign ([`delivery::signing`]), POST
//!   ([`delivery::client`]), classify the response into an [`delivery::Outcome`], retry with
//!   backoff ([`delivery::retry`]) and keep a circuit breaker ([`delivery::circuit`]).
//! - [`dlq`]: the dead-letter stream in Redis and its replay.
//! - [`control`]: the cluster-wide pause flag every replica honours.
//! - [`admin`]: the axum router for `/healthz`, `/readyz`, `/metrics` and `/status`.
//! - [`telemetry`]: log subscriber (json/text), metrics names and registry, trace context.
//! - [`shutdown`]: one cancellation signal for every task and a drain with a deadline.
//! - [`bridge`]: the `run` command — wires the stages above together and supervises them.
//! - [`commands`]: every other CLI command (`check-config`, `sign`, `verify`, `receive`, `dlq`).
//! - [`cli`]: the clap definitions that `main.rs` parses.

pub mod admin;
pub mod bridge;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod delivery;
pub mod dlq;
pub mod ingest;
pub mod queue;
pub mod shutdown;
pub mod source;
pub mod telemetry;

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
