//! Routing: which endpoints a message goes to, and the hand-over of a routed batch to the
//! queues.
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

/// For each message, the routes whose `channels` and `event_types` match it.
pub fn targets<'a, Q>(routes: &'a [Route<Q>], msgs: &[Arc<Message>]) -> Vec<Vec<&'a Route<Q>>> {
    msgs.iter()
        .map(|m| {
            routes
                .iter()
                .filter(|r| r.endpoint.matches(&m.channel, &m.event_type))
                .collect()
        })
        .collect()
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
