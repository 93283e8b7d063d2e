//! Dual publishing (`--dual`): every fresh message is also written, exactly as received, to
//! the `[republish] targets`, so consumers of the old Redis path keep getting it while
//! webhooks take over.

use std::sync::Arc;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use crate::config::{TargetConfig, TargetKind};
use crate::message::Message;
use crate::telemetry::metric;
use crate::util::backoff::Backoff;

/// Failed writes to one target retried before its messages of the batch are given up.
const TRIES: u32 = 8;

/// Writes fresh messages to the `[republish] targets`. Only fresh messages are republished,
/// so N replicas republish each message once.
pub struct Republisher {
    targets: Vec<(TargetConfig, ConnectionManager, metrics::Counter)>,
}

impl Republisher {
    /// Connections for each target (the main one, or the target's own `redis_url`).
    pub fn new(
        targets: &[TargetConfig],
        main: &ConnectionManager,
    ) -> Result<Self, redis::RedisError> {
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let conn = match &t.redis_url {
                Some(url) => crate::redis::redis_manager(url)?,
                None => main.clone(),
            };
            let label = t.label();
            out.push((
                t.clone(),
                conn,
                metrics::counter!(metric::REPUBLISHED, "target" => label),
            ));
        }
        Ok(Self { targets: out })
    }

    /// Writes the fresh messages of a batch to every target, one pipeline per target,
    /// retrying for a while if a target's Redis is unreachable.
    pub async fn republish(&self, msgs: &[Arc<Message>], raws: &[Bytes], fresh: &[bool]) {
        let n = fresh.iter().filter(|f| **f).count();
        if n == 0 {
            return;
        }
        for (t, conn, counter) in &self.targets {
            let pipe = target_pipeline(t, msgs, raws, fresh);
            if let Err(e) = send(&pipe, conn, t).await {
                for m in msgs.iter().zip(fresh).filter(|(_, f)| **f).map(|(m, _)| m) {
                    tracing::error!(target_key = %t.key, idempotency_key = %m.idempotency_key, error = %e, "not republished (the webhook path still delivers it)");
                }
                continue;
            }
            counter.increment(n as u64);
        }
    }
}

/// The writes of the fresh messages of a batch to target `t`.
fn target_pipeline(
    t: &TargetConfig,
    msgs: &[Arc<Message>],
    raws: &[Bytes],
    fresh: &[bool],
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for ((m, raw), f) in msgs.iter().zip(raws).zip(fresh) {
        if !f {
            continue;
        }
        match t.kind {
            TargetKind::Channel => pipe.cmd("PUBLISH").arg(&t.key).arg(raw.as_ref()).ignore(),
            TargetKind::List => pipe.cmd("LPUSH").arg(&t.key).arg(raw.as_ref()).ignore(),
            TargetKind::Stream => pipe
                .cmd("XADD")
                .arg(&t.key)
                .arg("*")
                .arg("body")
                .arg(raw.as_ref())
                .arg("idempotency_key")
                .arg(&m.idempotency_key)
                .ignore(),
        };
    }
    pipe
}

/// Sends `pipe`, retrying [`TRIES`] times with the one backoff policy.
///
/// The waits do not end at shutdown: the batch's source messages are acknowledged only after
/// this returns, and once they are nobody republishes them, so a target that is briefly
/// away at shutdown still gets them. The tries are bounded (about 16 s in all), so a target
/// that stays away delays the exit by no more than that.
async fn send(
    pipe: &redis::Pipeline,
    conn: &ConnectionManager,
    t: &TargetConfig,
) -> redis::RedisResult<()> {
    let mut backoff = Backoff::default();
    let mut tries = 0;
    loop {
        let mut c = conn.clone();
        match pipe.query_async::<()>(&mut c).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < TRIES => {
                tracing::warn!(target_key = %t.key, error = %e, "republishing failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
