//! `GET /api/overview`: everything the console's first view shows, in one answer the page
//! polls — this replica's endpoints and sources (as `/status` reports them), the pause,
//! the dead-letter depth, legacy subscribers still on the source channels, and, with
//! durable queues, the parity of the last minutes from each endpoint's delivery ledger.
//!
//! Counts are this replica's since it started (rates are the page's differences between
//! two polls); queue depths, the dead-letter depth and the ledger are cluster-wide.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use redis::aio::ConnectionManager;
use serde::Serialize;

use super::Console;
use super::replays::ReplayView;
use crate::config::{Config, Durability};
use crate::endpoint_state::{EndpointSnapshot, EndpointState};
use crate::pause::PauseInfo;
use crate::queue::redis::ledger::LedgerKeys;
use crate::source::SourceState;

/// The window of the parity figures.
pub const PARITY_WINDOW: Duration = Duration::from_secs(300);

/// How long one Redis read of the overview may take before it is reported as unknown.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of `/api/overview`.
#[derive(Serialize)]
pub struct Overview {
    version: &'static str,
    /// When this was read (unix ms): rates are differences between two answers.
    at_ms: u64,
    config_version: u64,
    /// `redis` or `memory`.
    durability: Durability,
    /// True when `[admin] token` is unset: the console changes nothing.
    read_only: bool,
    dual: bool,
    /// Who paused, when and why, or null while deliveries run.
    paused: Option<PauseInfo>,
    sources: Vec<Arc<SourceState>>,
    endpoints: Vec<EndpointSnapshot>,
    /// Entries in the dead-letter stream (null when Redis does not answer).
    dead_letters: Option<u64>,
    /// Subscribers other than the bridge's replicas, per pub/sub source channel.
    legacy_subscribers: Vec<LegacySubscribers>,
    /// Ledger parity of the last [`PARITY_WINDOW`]; null with memory queues.
    parity: Option<Parity>,
    /// Replays started from the console, newest first.
    replays: Vec<ReplayView>,
}

#[derive(Serialize)]
struct LegacySubscribers {
    channel: String,
    subscribers: u64,
}

/// Messages journaled for, delivered to and dead-lettered for each endpoint within the
/// window, from the ledger every replica writes.
#[derive(Serialize)]
struct Parity {
    window_seconds: u64,
    endpoints: Vec<EndpointParity>,
}

#[derive(Serialize)]
struct EndpointParity {
    endpoint: String,
    journaled: u64,
    delivered: u64,
    dead_lettered: u64,
}

/// The overview, read now.
pub async fn overview(State(c): State<Arc<Console>>) -> Response {
    let cfg = c.config();
    let status = &c.status;
    let states: Vec<Arc<EndpointState>> = status
        .endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let endpoints = futures::future::join_all(states.iter().map(|e| e.snapshot())).await;
    let mut conn = status.redis.clone();
    let paused = if status.paused.load(Ordering::Relaxed) {
        within(crate::pause::paused(&mut conn, &status.key_prefix))
            .await
            .and_then(|r| r.ok().flatten())
    } else {
        None
    };
    let dead_letters = within(c.dlq.len()).await.and_then(Result::ok);
    let legacy_subscribers = within(crate::migrate::legacy::legacy_subscribers(&mut conn, &cfg))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(channel, subscribers)| LegacySubscribers {
            channel,
            subscribers,
        })
        .collect();
    let parity = match cfg.delivery.durability {
        Durability::Redis => within(parity(&mut conn, &cfg)).await.flatten(),
        Durability::Memory => None,
    };
    axum::Json(Overview {
        version: crate::VERSION,
        at_ms: crate::util::time::unix_ms(std::time::SystemTime::now()),
        config_version: status.config_version.load(Ordering::Relaxed),
        durability: cfg.delivery.durability,
        read_only: cfg.admin.token.is_none(),
        dual: status.dual,
        paused,
        sources: status.sources.clone(),
        endpoints,
        dead_letters,
        legacy_subscribers,
        parity,
        replays: c.replays.views(),
    })
    .into_response()
}

/// `f`'s answer, or `None` when Redis takes longer than [`READ_TIMEOUT`]: the page shows
/// "unknown" instead of hanging.
async fn within<T>(f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(READ_TIMEOUT, f).await.ok()
}

/// One pipeline of `ZCOUNT`s over every endpoint's ledger sets since the window began.
async fn parity(conn: &mut ConnectionManager, cfg: &Config) -> Option<Parity> {
    let since = crate::util::time::unix_ms(std::time::SystemTime::now())
        .saturating_sub(PARITY_WINDOW.as_millis() as u64);
    let mut pipe = redis::pipe();
    for e in &cfg.endpoints {
        let keys = LedgerKeys::new(&cfg.redis.key_prefix, &e.name);
        for set in [&keys.queued, &keys.delivered, &keys.dead] {
            pipe.cmd("ZCOUNT").arg(set).arg(since).arg("+inf");
        }
    }
    let counts: Vec<u64> = pipe.query_async(conn).await.ok()?;
    let endpoints = cfg
        .endpoints
        .iter()
        .zip(counts.chunks(3))
        .map(|(e, c)| EndpointParity {
            endpoint: e.name.clone(),
            journaled: c.first().copied().unwrap_or(0),
            delivered: c.get(1).copied().unwrap_or(0),
            dead_lettered: c.get(2).copied().unwrap_or(0),
        })
        .collect();
    Some(Parity {
        window_seconds: PARITY_WINDOW.as_secs(),
        endpoints,
    })
}
