//! Replaying dead-letter entries: each selected entry is delivered again through the same
//! workers `run` uses (signing, retries, circuit breaker), each endpoint with a local memory
//! queue, and removed from the stream once settled — delivered, or dead-lettered anew with
//! the new error. Entries that cannot be replayed as they are stay in place, each with the
//! reason ([`SkipReason`]).
//!
//! A message that ingest refused is replayed under the rules of its source and goes through
//! the same checks ([`crate::ingest::parse_received`]), so that replay never delivers what
//! ingest would refuse. Every entry also passes its endpoint's current `filter` again (an
//! entry the filter failed on is replayed once the filter is fixed), and is delivered
//! through the endpoint's current `transform`, which the worker applies. The `dlq replay` command is one caller; it prints what
//! [`Progress`] reports and the [`ReplayReport`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::Dlq;
use crate::config::Config;
use crate::delivery::worker::{Worker, WorkerError};
use crate::endpoint_state::EndpointState;
use crate::expr::ExprError;
use crate::ingest::{IngestError, IngestSettings, Route, parse_received};
use crate::message::{DeadLetter, DlqError, Job, Message, Stage};
use crate::queue::Queue;
use crate::queue::memory::{DEFAULT_CAPACITY, MemoryQueue};
use crate::shutdown::Shutdown;

/// How often settled deliveries are counted while waiting.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long the workers may take to stop once every replayed job is settled.
const DRAIN: Duration = Duration::from_secs(5);

/// Which entries to replay.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These entries (an id that does not exist is an error).
    Ids(Vec<String>),
    /// Every entry.
    All,
}

/// What to replay: a selection, optionally only the entries of one endpoint.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The entries.
    pub selection: Selection,
    /// Only entries of this endpoint (and raw ingest entries are delivered only to it).
    pub endpoint: Option<String>,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The requested endpoint is not in the config.
    #[error("{0}: no such endpoint in the config")]
    UnknownEndpoint(String),
    /// The dead-letter stream could not be read (or an entry does not exist).
    #[error(transparent)]
    Dlq(#[from] DlqError),
    /// An endpoint's worker could not be built.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// A raw message dead-lettered at ingest whose source is no longer configured: the rules it
/// was read under are unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "source `{0}` is not in the config, so the ingest rules it was read under (unwrap_envelope) are unknown"
)]
pub struct UnknownSource(pub String);

/// Why an entry is left in place (the text follows the entry id in `dlq replay`'s output).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// Only a prefix of an oversized body is stored: delivering it would send a body the
    /// publisher never sent. The digest and size identify the original.
    #[error(
        "skipped: only a prefix of its {body_size}-byte body (sha256 {body_sha256}) is stored; left in place"
    )]
    Truncated {
        /// Size of the whole body.
        body_size: u64,
        /// SHA-256 of the whole body.
        body_sha256: String,
    },
    /// See [`UnknownSource`].
    #[error("skipped: {0}; left in place")]
    UnknownSource(UnknownSource),
    /// Ingest still refuses the raw message.
    #[error("skipped: still cannot be ingested ({0}); left in place")]
    NotIngestible(IngestError),
    /// No configured endpoint takes it (the entry's endpoint, named, is gone, or a raw
    /// message matches none).
    #[error("endpoint `{0}` is not in the config (or matches no endpoint); left in place")]
    NoEndpoint(String),
    /// The endpoint's filter fails on the message.
    #[error("skipped: the filter of endpoint `{endpoint}` still fails ({error}); left in place")]
    FilterFails {
        /// The endpoint.
        endpoint: String,
        /// The filter's error.
        error: ExprError,
    },
    /// The filters of every endpoint it would go to keep it out now.
    #[error(
        "skipped: the filter of endpoint `{0}` keeps it out now; left in place (`dlq purge` removes it)"
    )]
    FilteredOut(String),
}

/// What a replay reports while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// An entry is left in place.
    Skipped {
        /// The entry id.
        id: &'a str,
        /// Why.
        reason: &'a SkipReason,
    },
    /// Every replayable entry is queued: this many deliveries will be attempted.
    Queued {
        /// Deliveries queued.
        deliveries: u64,
    },
    /// Deliveries settled so far (reported every 100 ms until all are).
    Settled {
        /// Delivered.
        delivered: u64,
        /// Dead-lettered again.
        failed: u64,
    },
    /// Every delivery is settled; the workers are stopping.
    Finished,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries selected (0: nothing to replay, and nothing was started).
    pub selected: usize,
    /// Deliveries queued (an ingest entry may fan out to several endpoints).
    pub queued: u64,
    /// Deliveries that got a 2xx; their entries are removed.
    pub delivered: u64,
    /// Deliveries dead-lettered again (a new entry replaces the old one).
    pub failed: u64,
    /// Entries left in place.
    pub skipped: u64,
    /// From the first queued delivery until the workers stopped.
    pub elapsed: Duration,
}

/// An endpoint's local delivery for the replay.
type Local = Route<Arc<MemoryQueue>>;

/// Replays the entries of `request` from `dlq` to the endpoints of `cfg`, reporting to
/// `progress` as it goes.
pub async fn replay(
    cfg: &Config,
    dlq: &Dlq,
    request: &ReplayRequest,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<ReplayReport, ReplayError> {
    if let Some(name) = &request.endpoint
        && cfg.endpoint(name).is_none()
    {
        return Err(ReplayError::UnknownEndpoint(name.clone()));
    }
    let entries = select(dlq, request).await?;
    let mut report = ReplayReport {
        selected: entries.len(),
        queued: 0,
        delivered: 0,
        failed: 0,
        skipped: 0,
        elapsed: Duration::ZERO,
    };
    if entries.is_empty() {
        return Ok(report);
    }
    let (locals, workers) = local_endpoints(cfg, dlq)?;
    let shutdown = Shutdown::new();
    // Replay is an explicit operator action: it delivers even while the cluster is paused.
    let (_pause_tx, not_paused) = tokio::sync::watch::channel(false);
    for w in workers {
        tokio::spawn(w.run(
            not_paused.clone(),
            shutdown.token.clone(),
            shutdown.tracker.clone(),
        ));
    }
    let settings = IngestSettings::from_config(cfg);
    for e in &entries {
        match queue_entry(cfg, &settings, &locals, request.endpoint.as_deref(), e) {
            Ok(n) => report.queued += n,
            Err(reason) => {
                progress(Progress::Skipped {
                    id: &e.id,
                    reason: &reason,
                });
                report.skipped += 1;
            }
        }
    }
    progress(Progress::Queued {
        deliveries: report.queued,
    });
    let started = Instant::now();
    wait_settled(&locals, &mut progress).await;
    progress(Progress::Finished);
    shutdown.token.cancel();
    shutdown.drain(DRAIN).await;
    (report.delivered, report.failed) = settled(&locals);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The selected entries, oldest first for `All`, in the given order for ids; only those of
/// the requested endpoint.
async fn select(dlq: &Dlq, request: &ReplayRequest) -> Result<Vec<DeadLetter>, DlqError> {
    let endpoint = request.endpoint.as_deref();
    match &request.selection {
        Selection::All => dlq.list(usize::MAX, endpoint).await,
        Selection::Ids(ids) => {
            let mut v = Vec::new();
            for id in ids {
                let e = dlq.get(id).await?;
                if endpoint.is_none_or(|n| n == e.endpoint) {
                    v.push(e);
                }
            }
            Ok(v)
        }
    }
}

/// A memory queue, counters and worker for every endpoint of `cfg`; what the workers give
/// up on is dead-lettered to `dlq` again.
fn local_endpoints(cfg: &Config, dlq: &Dlq) -> Result<(Vec<Local>, Vec<Arc<Worker>>), ReplayError> {
    let mut locals = Vec::with_capacity(cfg.endpoints.len());
    let mut workers = Vec::with_capacity(cfg.endpoints.len());
    for ep in &cfg.endpoints {
        let endpoint = Arc::new(ep.clone());
        let queue = Arc::new(MemoryQueue::new(DEFAULT_CAPACITY));
        let state = Arc::new(EndpointState::new(&ep.name, &ep.url.redacted()));
        workers.push(Arc::new(Worker::new(
            endpoint.clone(),
            &cfg.security,
            Queue::Memory(queue.clone()),
            state.clone(),
            dlq.clone(),
        )?));
        locals.push(Route {
            endpoint,
            queue,
            state,
        });
    }
    Ok((locals, workers))
}

/// Queues the deliveries of entry `e`; returns how many, or why it is left in place.
fn queue_entry(
    cfg: &Config,
    settings: &IngestSettings,
    locals: &[Local],
    only: Option<&str>,
    e: &DeadLetter,
) -> Result<u64, SkipReason> {
    if let Some(t) = &e.truncated {
        return Err(SkipReason::Truncated {
            body_size: t.body_size,
            body_sha256: t.body_sha256.clone(),
        });
    }
    // An ingest entry with an endpoint was parsed already (a full memory queue): its body
    // and key are final, like a delivery entry's. Without one it holds the raw message.
    let raw = e.stage == Stage::Ingest && e.endpoint.is_empty();
    let msg = if raw {
        reingest(cfg, settings, e)?
    } else {
        as_delivered(e)
    };
    let targets: Vec<&Local> = locals
        .iter()
        .filter(|r| {
            if raw {
                only.is_none_or(|n| n == r.endpoint.name)
                    && r.endpoint.matches(&msg.channel, &msg.event_type)
            } else {
                r.endpoint.name == e.endpoint
            }
        })
        .collect();
    if targets.is_empty() {
        return Err(SkipReason::NoEndpoint(e.endpoint.clone()));
    }
    let targets = passing_filters(targets, &msg)?;
    let msg = Arc::new(msg);
    let mut queued = 0;
    // An ingest-stage entry may fan out to several endpoints; only the last job removes it.
    let last = targets.len() - 1;
    for (i, r) in targets.iter().enumerate() {
        let mut job = Job::new(msg.clone());
        if i == last {
            job.replay_of = Some(e.id.clone());
        }
        if r.queue.push(job).is_ok() {
            queued += 1;
        }
    }
    Ok(queued)
}

/// The targets whose current filter lets `msg` through; an entry that a filter fails on,
/// or that every filter keeps out, is left in place.
fn passing_filters<'a>(
    targets: Vec<&'a Local>,
    msg: &Message,
) -> Result<Vec<&'a Local>, SkipReason> {
    let mut passing = Vec::with_capacity(targets.len());
    let mut kept_out = None;
    for r in targets {
        match r.endpoint.accepts(&msg.body) {
            Ok(true) => passing.push(r),
            Ok(false) => kept_out = Some(r.endpoint.name.clone()),
            Err(error) => {
                return Err(SkipReason::FilterFails {
                    endpoint: r.endpoint.name.clone(),
                    error,
                });
            }
        }
    }
    match kept_out {
        Some(name) if passing.is_empty() => Err(SkipReason::FilteredOut(name)),
        _ => Ok(passing),
    }
}

/// The message of an entry whose body and key are final, as it was to be delivered.
fn as_delivered(e: &DeadLetter) -> Message {
    Message {
        idempotency_key: e.idempotency_key.clone(),
        event_type: e.event_type.clone(),
        source: Arc::from(e.source.as_str()),
        channel: e.channel.clone(),
        body: e.body.clone(),
        received_at: UNIX_EPOCH + Duration::from_millis(e.received_at_ms),
        traceparent: None,
    }
}

/// The message a raw entry holds, through the same checks, in the same order, as the
/// ingest step that dead-lettered it.
fn reingest(
    cfg: &Config,
    settings: &IngestSettings,
    e: &DeadLetter,
) -> Result<Message, SkipReason> {
    let unwrap_envelope = unwrap_envelope_for(cfg, e).map_err(SkipReason::UnknownSource)?;
    let parsed = parse_received(&e.body, &e.channel, unwrap_envelope, settings)
        .map_err(SkipReason::NotIngestible)?;
    Ok(parsed.into_message(
        Arc::from(e.source.as_str()),
        e.channel.clone(),
        UNIX_EPOCH + Duration::from_millis(e.received_at_ms),
    ))
}

/// Whether a raw message dead-lettered at ingest is to be unwrapped as a registry envelope
/// on replay: the rules of the source it was read from, so that replay never delivers what
/// ingest refused (an envelope expected but not found is not posted raw). A rejection as
/// "not a registry envelope" proves the source unwrapped; otherwise the source's current
/// setting decides, and an entry whose source is gone is skipped (its rules are unknown).
fn unwrap_envelope_for(cfg: &Config, e: &DeadLetter) -> Result<bool, UnknownSource> {
    if e.error.starts_with("not a registry envelope") {
        return Ok(true);
    }
    match cfg.sources.iter().find(|s| s.name == e.source) {
        Some(s) => Ok(s.unwrap_envelope),
        None => Err(UnknownSource(e.source.clone())),
    }
}

/// Waits until every local queue is idle, reporting the settled counts meanwhile.
async fn wait_settled(locals: &[Local], progress: &mut impl FnMut(Progress<'_>)) {
    loop {
        let idle = locals.iter().all(|r| r.queue.outstanding() == 0);
        let (delivered, failed) = settled(locals);
        progress(Progress::Settled { delivered, failed });
        if idle {
            return;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Delivered and dead-lettered deliveries, summed over the endpoints.
fn settled(locals: &[Local]) -> (u64, u64) {
    locals.iter().fold((0, 0), |(d, f), r| {
        (
            d + r.state.delivered.load(Ordering::Relaxed),
            f + r.state.dead_lettered.load(Ordering::Relaxed),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_to_leave_an_entry_in_place_reads_as_the_command_prints_it() {
        let truncated = SkipReason::Truncated {
            body_size: 3_000_000,
            body_sha256: "ab12".into(),
        };
        assert_eq!(
            truncated.to_string(),
            "skipped: only a prefix of its 3000000-byte body (sha256 ab12) is stored; left in place"
        );
        assert_eq!(
            SkipReason::UnknownSource(UnknownSource("gone".into())).to_string(),
            "skipped: source `gone` is not in the config, so the ingest rules it was read under (unwrap_envelope) are unknown; left in place"
        );
        assert_eq!(
            SkipReason::NotIngestible(IngestError::NotEnvelope("no `payload` field")).to_string(),
            "skipped: still cannot be ingested (not a registry envelope: no `payload` field); left in place"
        );
        assert_eq!(
            SkipReason::NoEndpoint("old".into()).to_string(),
            "endpoint `old` is not in the config (or matches no endpoint); left in place"
        );
    }

    #[test]
    fn a_delivery_entry_is_replayed_as_it_was_to_be_delivered() {
        let e = DeadLetter {
            id: "1-0".into(),
            endpoint: "site".into(),
            stage: Stage::Delivery,
            idempotency_key: "k-1".into(),
            event_type: "model.ready".into(),
            source: "registry".into(),
            channel: "hokusai:events".into(),
            body: bytes::Bytes::from_static(b"{\"a\":1}"),
            attempts: 5,
            last_status: Some(503),
            error: "gave up after 5 attempts: HTTP 503".into(),
            received_at_ms: 1_700_000_000_123,
            failed_at_ms: 1_700_000_100_000,
            truncated: None,
        };
        let m = as_delivered(&e);
        assert_eq!(
            (m.idempotency_key.as_str(), m.event_type.as_str()),
            ("k-1", "model.ready")
        );
        assert_eq!(
            (&*m.source, m.channel.as_str()),
            ("registry", "hokusai:events")
        );
        assert_eq!(m.body, e.body);
        assert_eq!(
            m.received_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
    }
}
