//! The sample receiver's state: the drilled failures, the replay cache and the idempotency
//! keys already accepted, all behind one lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::Notify;

use super::handle::header_text;
use crate::cli::{ReceiveArgs, Scheme};
use crate::config::Secret;
use crate::delivery::signing::{HEADER_WEBHOOK_SIGNATURE, Verified};

/// Most replay entries kept at once; beyond that (after pruning) requests get 503 rather
/// than weakening replay protection.
const MAX_REPLAY_ENTRIES: usize = 100_000;
/// Most idempotency keys remembered; the oldest are forgotten first.
const MAX_SEEN_KEYS: usize = 100_000;
/// How long a replay entry lives when `--tolerance 0` turned the timestamp check off.
const REPLAY_WINDOW_WITHOUT_TOLERANCE: i64 = 300;

/// Failures answered on purpose, for retry drills.
#[derive(Debug, Clone, Copy)]
pub(super) struct Drill {
    /// The status answered.
    pub(super) status: StatusCode,
    /// Fail only the first N requests; `None` fails every request.
    first: Option<u64>,
    /// `Retry-After` seconds sent with the failure.
    pub(super) retry_after: Option<u64>,
}

impl Drill {
    /// `--status` alone fails every request; `--fail-first N` fails the first N with
    /// `--status` (default 503); neither (or `--fail-first 0`) drills nothing.
    pub(super) fn from_args(args: &ReceiveArgs) -> anyhow::Result<Option<Self>> {
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
    pub(super) fn applies_to(&self, n: u64) -> bool {
        self.first.is_none_or(|first| n <= first)
    }
}

/// Everything a request handler needs; shared by all requests.
pub(super) struct Receiver {
    /// The secrets to verify with.
    pub(super) secrets: Vec<Secret>,
    /// `--scheme`, or `None` to detect it per request.
    pub(super) scheme: Option<Scheme>,
    /// `--tolerance` in seconds (0: no timestamp check).
    pub(super) tolerance: u64,
    /// `--status` / `--fail-first`.
    pub(super) drill: Option<Drill>,
    /// `--delay` before each answer.
    pub(super) delay: Option<Duration>,
    /// `--count`: stop after this many accepted events.
    pub(super) count: Option<u64>,
    /// Every request seen, drilled or not (the drill counts all requests).
    pub(super) requests: AtomicU64,
    /// Signalled once `--count` events were accepted.
    pub(super) done: Notify,
    /// Replays and idempotency keys.
    pub(super) state: Mutex<ReceiverState>,
}

impl Receiver {
    /// The state, locked.
    pub(super) fn state(&self) -> MutexGuard<'_, ReceiverState> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for a sample receiver; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What makes a verified request a replay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum ReplayKey {
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
pub(super) struct ReceiverState {
    /// Replay key → unix second after which the timestamp check rejects it anyway.
    replays: HashMap<ReplayKey, i64>,
    /// When to next drop expired replay entries.
    next_prune: i64,
    /// Idempotency keys already accepted, and their arrival order for eviction.
    pub(super) seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Events accepted so far.
    pub(super) accepted: u64,
}

/// Why a verified request is refused before de-duplication.
pub(super) enum ReplayCheck {
    /// Not seen before; now remembered.
    Fresh,
    /// Seen before: a replay.
    Replayed,
    /// The cache is full even after pruning.
    Full,
}

impl ReceiverState {
    /// Remembers `key` until `expires_at`, pruning expired entries at most once a second;
    /// whether it was fresh.
    pub(super) fn check_replay(
        &mut self,
        key: ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> ReplayCheck {
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
    pub(super) fn first_sighting(&mut self, key: &str) -> bool {
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

/// The replay key of a verified request and when it may be forgotten; `None` for
/// hokusai-legacy, which signs nothing that could tell a replay from a retry.
pub(super) fn replay_key(
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
