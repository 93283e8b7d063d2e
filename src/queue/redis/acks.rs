//! The acknowledger: settled jobs are acknowledged (XACK + XDEL) and noted in the delivery
//! ledger in batches, one round trip for up to [`ACK_BATCH`] of them.

use tokio::sync::mpsc;

use super::{GROUP, RedisQueue, now_ms};
use crate::message::Job;
use crate::util::backoff::Backoff;

/// Most acknowledgements sent in one round trip.
const ACK_BATCH: usize = 512;
/// The longest wait between two tries to write acknowledgements. Short: an entry that stays
/// unacknowledged is delivered again if this replica dies, so acknowledgements are written
/// again as soon as Redis answers.
const ACK_RETRY_CAP: std::time::Duration = std::time::Duration::from_millis(200);
/// Failed writes tolerated after [`Ack::Stop`] before the acknowledger gives up (the entries
/// left unacknowledged are delivered again, by another replica or the next start).
const TRIES_WHILE_STOPPING: u32 = 10;

/// What the acknowledger is told.
#[derive(Debug)]
pub(super) enum Ack {
    /// Acknowledge and delete an entry that needs no ledger note (deleted meanwhile).
    Entry(String),
    /// A job is settled: acknowledge its entry and note the outcome in the ledger.
    Settled {
        id: String,
        key: String,
        delivered: bool,
    },
    /// Flush and stop.
    Stop,
}

impl RedisQueue {
    /// Acknowledges a settled job and notes it in the ledger (batched).
    pub fn done(&self, job: &Job, delivered: bool) {
        if let Some(id) = &job.queue_id {
            let _ = self.ack_tx.send(Ack::Settled {
                id: id.clone(),
                key: job.msg.idempotency_key.clone(),
                delivered,
            });
        }
    }

    /// Closes the acknowledger; the task returned by [`start`](Self::start) ends once every
    /// queued acknowledgement is written.
    pub fn close(&self) {
        let _ = self.ack_tx.send(Ack::Stop);
    }

    /// Writes acknowledgements as they come until [`Ack::Stop`] (then flushes what it holds)
    /// or until every sender is gone. A failed write is retried with the batch kept: an
    /// unacknowledged entry would be delivered again after a restart.
    pub(super) async fn ack_loop(&self) {
        let Some(mut rx) = self.ack_rx.lock().await.take() else {
            return;
        };
        let mut batch: Vec<Ack> = Vec::with_capacity(ACK_BATCH);
        let mut stopping = false;
        let mut failures_while_stopping = 0u32;
        let mut backoff = Backoff::new(ACK_RETRY_CAP);
        loop {
            if batch.is_empty() {
                if stopping || !receive(&mut rx, &mut batch, &mut stopping).await {
                    return;
                }
                if batch.is_empty() {
                    continue;
                }
            }
            let mut conn = self.conn.clone();
            match self.ack_pipeline(&batch).query_async::<()>(&mut conn).await {
                Ok(()) => {
                    batch.clear();
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(stream = %self.keys.stream, redis = %crate::redis::redis_address(), error = %e, pending_acks = batch.len(), "acknowledging failed; retrying");
                    // No shutdown token ends this wait: the acknowledger stops only once told
                    // to, and then gives up after a few tries (below).
                    tokio::time::sleep(backoff.next_delay()).await;
                    if stopping {
                        failures_while_stopping += 1;
                        if failures_while_stopping > TRIES_WHILE_STOPPING {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One round trip for `batch`: a ZADD per ledger set with every key settled there, then
    /// XACK and XDEL of every entry.
    fn ack_pipeline(&self, batch: &[Ack]) -> redis::Pipeline {
        let now = now_ms();
        let mut ids: Vec<&str> = Vec::with_capacity(batch.len());
        // One ZADD per ledger set for the whole batch: (command, keys added).
        let [mut delivered_note, mut dead_note] =
            [&self.keys.ledger.delivered, &self.keys.ledger.dead].map(|set| {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(set);
                (zadd, 0usize)
            });
        for a in batch {
            match a {
                Ack::Entry(id) => ids.push(id),
                Ack::Settled { id, key, delivered } => {
                    ids.push(id);
                    let (zadd, added) = if *delivered {
                        &mut delivered_note
                    } else {
                        &mut dead_note
                    };
                    zadd.arg(now).arg(key);
                    *added += 1;
                }
                Ack::Stop => {}
            }
        }
        let mut pipe = redis::pipe();
        for (zadd, added) in [delivered_note, dead_note] {
            if added > 0 {
                pipe.add_command(zadd).ignore();
            }
        }
        pipe.cmd("XACK")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg(&ids)
            .ignore();
        pipe.cmd("XDEL").arg(&self.keys.stream).arg(&ids).ignore();
        pipe
    }
}

/// Waits for acknowledgements and takes whatever else arrived meanwhile, up to
/// [`ACK_BATCH`], without waiting; a [`Ack::Stop`] among them sets `stopping`. `false` once
/// every sender is gone.
async fn receive(
    rx: &mut mpsc::UnboundedReceiver<Ack>,
    batch: &mut Vec<Ack>,
    stopping: &mut bool,
) -> bool {
    if rx.recv_many(batch, ACK_BATCH).await == 0 {
        return false;
    }
    while batch.len() < ACK_BATCH {
        match rx.try_recv() {
            Ok(a) => batch.push(a),
            Err(_) => break,
        }
    }
    if batch.iter().any(|a| matches!(a, Ack::Stop)) {
        *stopping = true;
        batch.retain(|a| !matches!(a, Ack::Stop));
    }
    true
}
