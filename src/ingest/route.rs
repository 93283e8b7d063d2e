//! Routing: which endpoints a message goes to — by `channels` and `event_types`, then by the
//! endpoint's `filter` over the content — and the hand-over of a routed batch to the queues.
//!
//! The filter runs here rather than at delivery so that a message an endpoint does not want
//! is never queued for it. A filter that fails on a message (a runtime error, not exactly one
//! output, a bound hit) does not route it either: ingest dead-letters it for that endpoint
//! with the error, so that fixing the filter and replaying delivers it.
//!
//! Ingest comes before the queues in the pipeline, so it does not name them: a [`Route`]
//! holds its endpoint's queue as whatever type the queues give it, and a batch is handed over
//! through [`Enqueue`], which the queues implement (`queue::Intake`). They own their storage
//! (the journal script, the de-duplication keys, the memory queues); ingest writes no queue
//! key itself.

use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::config::EndpointConfig;
use crate::endpoint_state::EndpointState;
use crate::expr::ExprError;
use crate::message::Message;

/// One endpoint as ingest sees it: its filters, its queue and its counters.
#[derive(Clone)]
pub struct Route<Q> {
    /// The endpoint's config (filters).
    pub endpoint: Arc<EndpointConfig>,
    /// Its queue.
    pub queue: Q,
    /// Its live counters.
    pub state: Arc<EndpointState>,
}

/// The routing table; swapped whole on config reload.
pub type Routes<Q> = Arc<RwLock<Arc<Vec<Route<Q>>>>>;

/// Where the messages of a batch go.
pub struct Routing<'a, Q> {
    /// For each message, the routes whose `channels` and `event_types` match it and whose
    /// `filter` (if any) lets it through.
    pub targets: Vec<Vec<&'a Route<Q>>>,
    /// Each (message index, route) whose filter kept the message from the route.
    pub filtered: Vec<(usize, &'a Route<Q>)>,
    /// Each (message index, route, error) whose filter failed on the message.
    pub failed: Vec<(usize, &'a Route<Q>, ExprError)>,
}

/// Routes each message: the routes whose `channels` and `event_types` match it, kept when
/// their filter passes it.
pub fn targets<'a, Q>(routes: &'a [Route<Q>], msgs: &[Arc<Message>]) -> Routing<'a, Q> {
    let mut routing = Routing {
        targets: Vec::with_capacity(msgs.len()),
        filtered: Vec::new(),
        failed: Vec::new(),
    };
    for (i, m) in msgs.iter().enumerate() {
        let mut to = Vec::new();
        for r in routes
            .iter()
            .filter(|r| r.endpoint.matches(&m.channel, &m.event_type))
        {
            match r.endpoint.accepts(&m.body) {
                Ok(true) => to.push(r),
                Ok(false) => routing.filtered.push((i, r)),
                Err(e) => routing.failed.push((i, r, e)),
            }
        }
        routing.targets.push(to);
    }
    routing
}

/// A batch of parsed messages, each with the routes it goes to.
pub struct RoutedBatch<'a, Q> {
    /// The messages, in the order they were received.
    pub msgs: &'a [Arc<Message>],
    /// For each message, the routes that match it (possibly none).
    pub targets: &'a [Vec<&'a Route<Q>>],
}

/// A batch the queues could not take before shutdown (Redis unreachable): nothing of it was
/// queued, so its source messages must stay unacknowledged.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NotQueued(#[from] pub redis::RedisError);

/// Where ingest hands its routed batches: implemented by the queues.
pub trait Enqueue: Send + Sync + 'static {
    /// What a [`Route`] holds to reach its endpoint's queue.
    type Queue: Clone + Send + Sync + 'static;

    /// Records each message's idempotency key and queues the messages whose key was not seen
    /// within the de-duplication window for the endpoints of their routes (a message with no
    /// route is still recorded). Returns, per message, whether it was fresh.
    ///
    /// Called once per batch on the hot path; an implementation makes one Redis round trip
    /// per batch, not one per message.
    fn enqueue_batch(
        &self,
        batch: RoutedBatch<'_, Self::Queue>,
    ) -> impl Future<Output = Result<Vec<bool>, NotQueued>> + Send;
}
