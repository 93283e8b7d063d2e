//! The durable queue (`durability = "redis"`, the default).
//!
//! Keys, under `<key_prefix>`:
//! - `q:<endpoint>` — a stream per endpoint; consumer group `workers`. The journal
//!   ([`journal`]) appends each message of an ingest batch to the streams of its endpoints
//!   in the same Lua call that records its idempotency key (`seen:<key>`), so a message is
//!   journaled exactly once or not at all.
//! - `retry:<endpoint>` — a sorted set of jobs waiting for a retry, scored by due time (ms)
//!   (`retry`). Scheduling a retry moves the entry from the stream into the set in one
//!   MULTI; a mover puts due jobs back into the stream with a Lua script, so replicas never
//!   move one twice.
//! - `ledger:<endpoint>:{queued,delivered,dead}` — the delivery ledger ([`ledger`]).
//! - `replica:<consumer>` — each replica's heartbeat (expires after [`HEARTBEAT_TTL`]).
//!   Entries read by a consumer whose heartbeat is gone (killed, crashed, or shut down) are
//!   claimed by the live replicas at once; that is how a dead replica's work is finished.
//!
//! How a job is stored is in [`codec`]. A job is acknowledged (XACK + XDEL, batched,
//! `acks`) only when it is delivered or dead-lettered.
//! Each worker prefetches at most `concurrency` jobs, so memory stays flat however long the
//! backlog in Redis grows.

#[macro_use]
mod retry;
mod acks;
pub mod codec;
pub mod counts;
pub mod journal;
pub mod ledger;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::endpoint_state::QueueCounts;
use crate::message::Job;
use crate::redis::group::claim_dead_consumers;
use crate::redis::reply::pending_ids;
use crate::shutdown::Ticker;
use crate::util::backoff::Backoff;
use acks::Ack;
use codec::{Read, job_from_fields, parse_jobs};
use counts::{COUNT_LUA, counts_with};
use journal::JournalEndpoint;
use ledger::LedgerKeys;
use retry::MOVE_LUA;

/// The consumer group every replica joins.
pub const GROUP: &str = "workers";
/// How long a replica's heartbeat lives without renewal.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// How often heartbeats are renewed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long one XREADGROUP blocks.
const BLOCK: Duration = Duration::from_millis(1000);
/// How often due retries are moved back and dead replicas' work is looked for.
const MOVE_EVERY: Duration = Duration::from_millis(100);
const CLAIM_EVERY: Duration = Duration::from_millis(1000);

/// Key names of one endpoint's queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// The stream.
    pub stream: String,
    /// The retry set.
    pub retry: String,
    /// Prefix of heartbeat keys: `<prefix>:replica:`.
    pub replica_prefix: String,
    /// The endpoint's delivery ledger.
    pub ledger: LedgerKeys,
}

impl QueueKeys {
    /// The keys of `endpoint` under `key_prefix`.
    pub fn new(key_prefix: &str, endpoint: &str) -> Self {
        Self {
            stream: format!("{key_prefix}:q:{endpoint}"),
            retry: format!("{key_prefix}:retry:{endpoint}"),
            replica_prefix: format!("{key_prefix}:replica:"),
            ledger: LedgerKeys::new(key_prefix, endpoint),
        }
    }
}

/// One endpoint's durable queue, as seen by this replica.
pub struct RedisQueue {
    conn: ConnectionManager,
    keys: QueueKeys,
    consumer: String,
    prefetch_tx: mpsc::Sender<Job>,
    prefetch_rx: Mutex<mpsc::Receiver<Job>>,
    ack_tx: mpsc::UnboundedSender<Ack>,
    ack_rx: Mutex<Option<mpsc::UnboundedReceiver<Ack>>>,
    mover: redis::Script,
    counter: redis::Script,
}

impl RedisQueue {
    /// A queue for `keys`, read as `consumer`, prefetching at most `prefetch` jobs.
    pub fn new(conn: ConnectionManager, keys: QueueKeys, consumer: &str, prefetch: usize) -> Self {
        let (prefetch_tx, prefetch_rx) = mpsc::channel(prefetch.max(1));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        Self {
            conn,
            keys,
            consumer: consumer.to_string(),
            prefetch_tx,
            prefetch_rx: Mutex::new(prefetch_rx),
            ack_tx,
            ack_rx: Mutex::new(Some(ack_rx)),
            mover: redis::Script::new(MOVE_LUA),
            counter: redis::Script::new(COUNT_LUA),
        }
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        &self.keys.stream
    }

    /// Creates the consumer group (and stream) if missing.
    pub async fn ensure_group(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Starts the reader (with its own connection, since XREADGROUP blocks), the retry
    /// mover, the dead-replica claimer and the acknowledger. They stop with `shutdown`; the
    /// acknowledger flushes what it holds first.
    ///
    /// The reader and claimer stop taking new work at `shutdown`; the mover and depth gauge
    /// run until `stop`, after in-flight deliveries have drained.
    pub fn start(
        self: &Arc<Self>,
        reader_conn: ConnectionManager,
        shutdown: CancellationToken,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().read_loop(reader_conn, shutdown.clone()));
        tokio::spawn(self.clone().claim_loop(shutdown));
        tokio::spawn(self.clone().move_loop(stop.clone()));
        tokio::spawn(self.clone().depth_loop(stop));
        let me = self.clone();
        tokio::spawn(async move { me.ack_loop().await })
    }

    /// The next job to attempt.
    pub async fn next(&self) -> Option<Job> {
        self.prefetch_rx.lock().await.recv().await
    }

    /// What the queue holds that is not delivered yet, across every replica.
    pub async fn counts(&self) -> redis::RedisResult<QueueCounts> {
        let mut conn = self.conn.clone();
        counts_with(&self.counter, &mut conn, &self.keys).await
    }

    /// Its stream and ledger set, as the journal writes them.
    pub fn journal_endpoint(&self) -> JournalEndpoint<'_> {
        JournalEndpoint {
            stream: &self.keys.stream,
            ledger: &self.keys.ledger.queued,
        }
    }

    /// Reads the stream into the prefetch buffer, as much as it has room for, until
    /// `shutdown`: first this consumer's own unacknowledged entries (none for a fresh
    /// consumer name), then new ones. Retries with the one backoff policy while Redis is
    /// away.
    async fn read_loop(self: Arc<Self>, mut conn: ConnectionManager, shutdown: CancellationToken) {
        let mut cursor = "0";
        let mut backoff = Backoff::default();
        loop {
            let permit = tokio::select! {
                p = self.prefetch_tx.reserve() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let room = self.prefetch_tx.capacity() + 1;
            let cmd = self.read_cmd(cursor, room);
            let reply = tokio::select! {
                r = cmd.query_async::<Value>(&mut conn) => r,
                _ = shutdown.cancelled() => break,
            };
            let entries = match reply {
                Ok(v) => {
                    backoff.reset();
                    parse_jobs(v)
                }
                Err(e) if e.code() == Some("NOGROUP") => {
                    tracing::warn!(stream = %self.keys.stream, "consumer group missing (Redis restarted without persistence?); recreating");
                    let _ = self.ensure_group().await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(stream = %self.keys.stream, redis = %crate::redis::redis_address(), error = %e, "reading the queue failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if cursor == "0" && entries.len() < room {
                cursor = ">";
            }
            if !self.hand_over(entries, permit).await {
                return;
            }
        }
    }

    /// The XREADGROUP of up to `room` entries after `cursor` (`0`: this consumer's pending
    /// ones, which do not block; `>`: new ones, blocking for [`BLOCK`]).
    fn read_cmd(&self, cursor: &str, room: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(room);
        if cursor == ">" {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.keys.stream).arg(cursor);
        cmd
    }

    /// Puts the jobs read into the prefetch buffer, the first in the slot `permit` holds;
    /// entries deleted while pending are acknowledged. `false` once the buffer is closed.
    async fn hand_over(&self, entries: Vec<Read>, permit: mpsc::Permit<'_, Job>) -> bool {
        let mut permit = Some(permit);
        for entry in entries {
            let job = match entry {
                Read::Job(job) => job,
                Read::Deleted(id) => {
                    let _ = self.ack_tx.send(Ack::Entry(id));
                    continue;
                }
            };
            match permit.take() {
                Some(p) => p.send(job),
                None => {
                    if self.prefetch_tx.send(job).await.is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Claims entries of consumers whose heartbeat is gone.
    async fn claim_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = Ticker::new(CLAIM_EVERY, &shutdown);
        while tick.tick().await {
            if let Err(e) = self.claim_dead().await {
                tracing::debug!(stream = %self.keys.stream, error = %e, "claiming failed; will try again");
            }
        }
    }

    async fn claim_dead(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let tx = self.prefetch_tx.clone();
        let acks = self.ack_tx.clone();
        claim_dead_consumers(
            &mut conn,
            &self.keys.stream,
            GROUP,
            &self.consumer,
            &self.keys.replica_prefix,
            |id, fields| {
                let tx = tx.clone();
                let acks = acks.clone();
                async move {
                    match fields {
                        Some(f) => tx.send(job_from_fields(id, f)).await.is_ok(),
                        None => acks.send(Ack::Entry(id)).is_ok(),
                    }
                }
            },
        )
        .await
    }

    /// Leaves the consumer group at a clean shutdown if nothing is pending for this replica
    /// (pending entries stay, to be claimed by the others).
    pub async fn leave(&self) {
        let mut conn = self.conn.clone();
        let pending: redis::RedisResult<Value> = redis::cmd("XPENDING")
            .arg(&self.keys.stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(&self.consumer)
            .query_async(&mut conn)
            .await;
        if let Ok(v) = pending
            && pending_ids(&v).is_empty()
        {
            let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&self.keys.stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .query_async(&mut conn)
                .await;
        }
    }

    /// Trims the delivery ledger every minute until `shutdown`.
    async fn depth_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = Ticker::new(Duration::from_secs(60), &shutdown);
        while tick.tick().await {
            let mut pipe = redis::pipe();
            self.keys.ledger.trim_into(&mut pipe, now_ms());
            let mut conn = self.conn.clone();
            let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        }
    }
}

/// This replica's heartbeat: renews `replica:<consumer>` until shutdown, then deletes it so
/// the others claim what this replica leaves at once.
pub async fn heartbeat(conn: ConnectionManager, key: String, shutdown: CancellationToken) {
    let mut tick = Ticker::new(HEARTBEAT_EVERY, &shutdown);
    while tick.tick().await {
        let mut c = conn.clone();
        let _: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(HEARTBEAT_TTL.as_millis() as u64)
            .query_async(&mut c)
            .await;
    }
    let mut c = conn.clone();
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query_async(&mut c).await;
}

fn now_ms() -> u64 {
    crate::util::time::unix_ms(SystemTime::now())
}
