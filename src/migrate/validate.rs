//! `migrate validate`'s parity check: observe the pub/sub and stream sources for a while,
//! key every message exactly as ingest does, then read each endpoint's delivery ledger until
//! every observed message it matches is delivered or dead-lettered, or the grace period
//! ends.
//!
//! It passes only when every observed message was delivered to every endpoint that matches
//! it; dead-lettered (unless allowed), still pending and missing messages fail it, each one
//! named in the [`Report`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use serde::Serialize;

use crate::config::{Config, Durability, EndpointConfig, SourceConfig, SourceKind};
use crate::ingest;
use crate::queue::redis::ledger::LedgerKeys;
use crate::redis::redis_manager;
use crate::redis::reply::parse_entries;

/// Why the check could not run (a check that ran and failed is a [`Report`] with `ok`
/// false).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The ledger exists only for durable queues.
    #[error(
        "migrate validate reads the delivery ledger, which needs delivery.durability = \"redis\""
    )]
    NotDurable,
    /// No source can be observed; the text names those that cannot.
    #[error(
        "migrate validate observes pub/sub and stream sources and the config has none; it cannot check {0}"
    )]
    NothingToObserve(String),
    /// The subscription ended before the window did.
    #[error("the Redis subscription was lost while observing; run validate again")]
    SubscriptionLost,
    /// Redis refused or failed a command.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// How long to observe and how to judge.
#[derive(Debug, Clone, Copy)]
pub struct ValidateOptions {
    /// How long to observe the sources.
    pub duration: Duration,
    /// How long, after the window, deliveries have to settle.
    pub grace: Duration,
    /// Dead-lettered messages do not fail the check.
    pub allow_dead_lettered: bool,
}

/// What the check says while it runs (the command prints it on stderr).
#[derive(Debug)]
pub enum Progress<'a> {
    /// A configured source that cannot be observed, and why.
    NotChecked(&'a str),
    /// Observing these channels, patterns and streams for `duration`.
    Observing {
        /// Channels, patterns and stream keys.
        watched: Vec<String>,
        /// The window.
        duration: Duration,
    },
    /// The window ended with `messages` observed; waiting up to `grace`.
    Observed {
        /// Distinct messages observed.
        messages: usize,
        /// The grace period.
        grace: Duration,
    },
}

/// One endpoint's parity numbers: every observed message it should have received is in
/// exactly one of the four counts.
#[derive(Debug, Default, Serialize)]
pub struct Parity {
    /// The endpoint.
    pub endpoint: String,
    /// Observed messages the endpoint matches.
    pub expected: usize,
    /// Of those, delivered.
    pub delivered: usize,
    /// Of those, dead-lettered.
    pub dead_lettered: usize,
    /// Of those, journaled but not delivered yet.
    pub pending: usize,
    /// Of those, never journaled for the endpoint.
    pub missing: usize,
    /// Each expected message that is not delivered, with its state.
    pub not_delivered: Vec<NotDelivered>,
}

/// Where an observed message stands for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// In the endpoint's dead-letter ledger.
    DeadLettered,
    /// Journaled, not yet delivered (waiting or in retry) when the grace period ended.
    Pending,
    /// Never reached the endpoint's queue.
    Missing,
}

impl State {
    /// How the text report names the state.
    pub fn label(self) -> &'static str {
        match self {
            State::DeadLettered => "DEAD-LETTERED",
            State::Pending => "PENDING",
            State::Missing => "MISSING",
        }
    }
}

/// An expected message that was not delivered.
#[derive(Debug, Clone, Serialize)]
pub struct NotDelivered {
    /// Where it stands.
    pub state: State,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The channel (or stream key) it was observed on.
    pub channel: String,
    /// Its event type.
    pub event_type: String,
}

/// An observed message.
#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: String,
    channel: String,
    event_type: String,
    /// The body the endpoints' filters judge.
    body: bytes::Bytes,
}

/// The outcome of the check.
#[derive(Debug, Serialize)]
pub struct Report {
    /// How long the observation lasted, in seconds.
    pub window_secs: f64,
    /// Distinct messages observed.
    pub observed: usize,
    /// Observed messages the bridge cannot ingest: dead-lettered at ingest, never delivered.
    pub not_ingestible: usize,
    /// `--allow-dead-lettered`: dead-lettered messages do not fail the check.
    pub allow_dead_lettered: bool,
    /// Configured sources this check cannot observe (list sources).
    pub unchecked_sources: Vec<String>,
    /// Per endpoint, in config order.
    pub endpoints: Vec<Parity>,
    /// The check passed.
    pub ok: bool,
}

/// Runs the check: observes for `opts.duration`, waits up to `opts.grace` for deliveries to
/// settle, and reports. `progress` hears what happens meanwhile.
pub async fn validate(
    cfg: &Config,
    opts: ValidateOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, ValidateError> {
    if cfg.delivery.durability != Durability::Redis {
        return Err(ValidateError::NotDurable);
    }
    let pubsub = of_kind(cfg, SourceKind::Pubsub);
    let streams = of_kind(cfg, SourceKind::Stream);
    let unchecked_sources: Vec<String> = cfg.sources.iter().filter_map(unobservable).collect();
    if pubsub.is_empty() && streams.is_empty() {
        return Err(ValidateError::NothingToObserve(
            unchecked_sources.join("; "),
        ));
    }
    for u in &unchecked_sources {
        progress(Progress::NotChecked(u));
    }
    let mut conn = redis_manager(&cfg.redis.url)?;
    let sub = subscribe(cfg, &pubsub).await?;
    let mut stream_starts = Vec::with_capacity(streams.len());
    for s in &streams {
        stream_starts.push(last_stream_id(&mut conn, stream_key(s)).await?);
    }
    progress(Progress::Observing {
        watched: watched(&pubsub, &streams),
        duration: opts.duration,
    });

    let mut observed = Observed::default();
    let started = Instant::now();
    observe_pubsub(cfg, &pubsub, sub, opts.duration, &mut observed).await?;
    for (s, start) in streams.iter().zip(&stream_starts) {
        let end = last_stream_id(&mut conn, stream_key(s)).await?;
        observe_stream(&mut conn, cfg, s, start, &end, &mut observed).await?;
    }
    let window_secs = started.elapsed().as_secs_f64();
    progress(Progress::Observed {
        messages: observed.seen.len(),
        grace: opts.grace,
    });

    let endpoints = settle(&mut conn, cfg, &observed.seen, opts.grace).await?;
    let dead_ok = |n: usize| n == 0 || opts.allow_dead_lettered;
    let ok = dead_ok(observed.not_ingestible)
        && endpoints
            .iter()
            .all(|p| p.missing == 0 && p.pending == 0 && dead_ok(p.dead_lettered));
    Ok(Report {
        window_secs,
        observed: observed.seen.len(),
        not_ingestible: observed.not_ingestible,
        allow_dead_lettered: opts.allow_dead_lettered,
        unchecked_sources,
        endpoints,
        ok,
    })
}

fn of_kind(cfg: &Config, kind: SourceKind) -> Vec<&SourceConfig> {
    cfg.sources.iter().filter(|s| s.kind() == kind).collect()
}

fn stream_key(s: &SourceConfig) -> &str {
    s.key().unwrap_or("")
}

/// Why a configured source cannot be observed by `migrate validate`.
fn unobservable(s: &SourceConfig) -> Option<String> {
    (s.kind() == SourceKind::List).then(|| {
        format!(
            "list source `{}` (key {}): the bridge moves each item out of the list as it reads it, so no other reader can see it",
            s.name,
            s.key().unwrap_or("")
        )
    })
}

/// The channels, patterns and stream keys observed, as the progress line names them.
fn watched(pubsub: &[&SourceConfig], streams: &[&SourceConfig]) -> Vec<String> {
    pubsub
        .iter()
        .filter_map(|s| s.pubsub())
        .flat_map(|p| p.channels.iter().chain(&p.patterns).map(String::as_str))
        .chain(streams.iter().filter_map(|s| s.key()))
        .map(str::to_owned)
        .collect()
}

/// A subscription to every channel and pattern of the pub/sub sources (none for a config
/// with only streams).
async fn subscribe(cfg: &Config, pubsub: &[&SourceConfig]) -> redis::RedisResult<PubSub> {
    let client = cfg.redis.url.client()?;
    let mut sub = client.get_async_pubsub().await?;
    for p in pubsub.iter().filter_map(|s| s.pubsub()) {
        if !p.channels.is_empty() {
            sub.subscribe(&p.channels).await?;
        }
        if !p.patterns.is_empty() {
            sub.psubscribe(&p.patterns).await?;
        }
    }
    Ok(sub)
}

/// What validate saw in its window.
#[derive(Default)]
struct Observed {
    /// Idempotency key → the message.
    seen: BTreeMap<String, Seen>,
    /// Messages the bridge cannot ingest (dead-lettered at ingest).
    not_ingestible: usize,
}

impl Observed {
    /// Keys a message exactly as the bridge's ingest does.
    fn record(&mut self, cfg: &Config, body: &[u8], channel: &str, unwrap: bool) {
        let body = bytes::Bytes::copy_from_slice(body);
        match ingest::parse(
            &body,
            channel,
            unwrap,
            &cfg.delivery.idempotency_key_fields,
            cfg.security.max_payload_bytes,
        ) {
            Ok(p) => {
                self.seen.entry(p.idempotency_key.clone()).or_insert(Seen {
                    idempotency_key: p.idempotency_key,
                    channel: channel.to_string(),
                    event_type: p.event_type,
                    body: p.body,
                });
            }
            Err(_) => self.not_ingestible += 1,
        }
    }
}

/// Records every message published on the subscription for `duration` (or just waits it
/// out when no source is pub/sub).
async fn observe_pubsub(
    cfg: &Config,
    pubsub: &[&SourceConfig],
    mut sub: PubSub,
    duration: Duration,
    observed: &mut Observed,
) -> Result<(), ValidateError> {
    let deadline = tokio::time::Instant::now() + duration;
    if pubsub.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return Ok(());
    }
    let mut stream = sub.on_message();
    loop {
        let msg = tokio::select! {
            m = stream.next() => match m { Some(m) => m, None => return Err(ValidateError::SubscriptionLost) },
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        };
        let channel = msg.get_channel_name().to_string();
        let unwrap = pubsub
            .iter()
            .find(|s| s.pubsub().is_some_and(|p| p.matches(&channel)))
            .is_some_and(|s| s.unwrap_envelope);
        observed.record(cfg, msg.get_payload_bytes(), &channel, unwrap);
    }
}

/// The id of the newest entry of stream `key` (`0-0` when it is empty or absent).
async fn last_stream_id(conn: &mut ConnectionManager, key: &str) -> redis::RedisResult<String> {
    let v: redis::Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(parse_entries(v)
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .unwrap_or_else(|| "0-0".into()))
}

/// Records the entries of a stream source added after `after`, up to `until` (both ids).
/// Reading with XRANGE leaves the bridge's consumer group untouched.
async fn observe_stream(
    conn: &mut ConnectionManager,
    cfg: &Config,
    source: &SourceConfig,
    after: &str,
    until: &str,
    observed: &mut Observed,
) -> redis::RedisResult<()> {
    let key = stream_key(source);
    let mut start = format!("({after}");
    loop {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg(until)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        let page = parse_entries(v);
        let n = page.len();
        for (id, fields) in page {
            if let Some(fields) = fields {
                let body = crate::source::stream::body_of(fields);
                observed.record(cfg, &body, key, source.unwrap_envelope);
            }
            start = format!("({id}");
        }
        if n < 500 {
            return Ok(());
        }
    }
}

/// Reads the ledgers, polling until every expected message is delivered or dead-lettered,
/// or `grace` ends; the parity of each endpoint at that point.
async fn settle(
    conn: &mut ConnectionManager,
    cfg: &Config,
    seen: &BTreeMap<String, Seen>,
    grace: Duration,
) -> redis::RedisResult<Vec<Parity>> {
    let settle_deadline = tokio::time::Instant::now() + grace;
    loop {
        let mut all_settled = true;
        let mut out = Vec::new();
        for ep in &cfg.endpoints {
            let (parity, settled) = parity(conn, &cfg.redis.key_prefix, ep, seen).await?;
            all_settled &= settled;
            out.push(parity);
        }
        if all_settled || tokio::time::Instant::now() >= settle_deadline {
            return Ok(out);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where each observed message `ep` matches (and its filter lets through) stands in its ledger, and whether none is still
/// pending or missing.
async fn parity(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    ep: &EndpointConfig,
    seen: &BTreeMap<String, Seen>,
) -> redis::RedisResult<(Parity, bool)> {
    // A message the endpoint's filter keeps out is not expected there; one the filter fails
    // on is (it is dead-lettered for the endpoint).
    let expected: Vec<&Seen> = seen
        .values()
        .filter(|m| {
            ep.matches(&m.channel, &m.event_type) && !matches!(ep.accepts(&m.body), Ok(false))
        })
        .collect();
    let keys: Vec<&str> = expected
        .iter()
        .map(|m| m.idempotency_key.as_str())
        .collect();
    let ledger = LedgerKeys::new(key_prefix, &ep.name);
    let delivered = members(conn, &ledger.delivered, &keys).await?;
    let dead = members(conn, &ledger.dead, &keys).await?;
    let queued = members(conn, &ledger.queued, &keys).await?;
    let mut p = Parity {
        endpoint: ep.name.clone(),
        expected: expected.len(),
        ..Default::default()
    };
    let mut settled = true;
    for (i, m) in expected.iter().enumerate() {
        let state = if delivered[i] {
            p.delivered += 1;
            continue;
        } else if dead[i] {
            p.dead_lettered += 1;
            State::DeadLettered
        } else if queued[i] {
            p.pending += 1;
            settled = false;
            State::Pending
        } else {
            p.missing += 1;
            settled = false;
            State::Missing
        };
        p.not_delivered.push(NotDelivered {
            state,
            idempotency_key: m.idempotency_key.clone(),
            channel: m.channel.clone(),
            event_type: m.event_type.clone(),
        });
    }
    Ok((p, settled))
}

/// Which of `keys` are members of the sorted set `set`.
async fn members(
    conn: &mut ConnectionManager,
    set: &str,
    keys: &[&str],
) -> redis::RedisResult<Vec<bool>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(set)
            .arg(chunk)
            .query_async(conn)
            .await?;
        out.extend(scores.into_iter().map(|s| s.is_some()));
    }
    Ok(out)
}
