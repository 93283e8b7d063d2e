//! The durable queue (`durability = "redis"`, the default).
//!
//! Keys, under `<key_prefix>`:
//! - `q:<endpoint>` — a stream per endpoint; consumer group `workers`. Ingest journals each
//!   message into the streams of its endpoints in the same Lua call that records its
//!   idempotency key (`seen:<key>`), so a message is journaled exactly once or not at all.
//! - `retry:<endpoint>` — a sorted set of jobs waiting for a retry, scored by due time (ms).
//!   Scheduling a retry moves the entry from the stream into the set in one MULTI; a mover
//!   puts due jobs back into the stream with a Lua script, so replicas never move one twice.
//! - `replica:<consumer>` — each replica's heartbeat (expires after [`HEARTBEAT_TTL`]).
//!   Entries read by a consumer whose heartbeat is gone (killed, crashed, or shut down) are
//!   claimed by the live replicas at once; that is how a dead replica's work is finished.
//!
//! A job is acknowledged (XACK + XDEL, batched) only when it is delivered or dead-lettered.
//! Each worker prefetches at most `concurrency` jobs, so memory stays flat however long the
//! backlog in Redis grows.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::endpoint_state::QueueCounts;
use crate::message::{Job, Message};
use crate::redis::group::claim_dead_consumers;
use crate::redis::reply::{
    Fields, as_bytes, as_string, as_u64, fields_of, pending_ids, raw_read_reply,
};
use crate::shutdown::Ticker;

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
/// Most acknowledgements sent in one round trip.
const ACK_BATCH: usize = 512;

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

/// How a job is stored. A stream entry has two fields: `m`, everything but the body packed by
/// [`encode_meta`], and `b`, the body as it is; reading it back decodes five RESP values
/// instead of one per item. A retry-set member is `<n>:<entry id><n>:<meta><body>` (`<n>`: the
/// length in bytes of what follows the colon).
///
/// Earlier versions stored one field per item (`k`, `e`, `s`, `c`, `b`, `r`, `t`, `a`, `st`,
/// `er`) and a JSON object of those in the retry set. Both are still read, so what an older
/// replica journaled or scheduled before an upgrade is delivered by a newer one.
mod field {
    pub const META: &str = "m";
    pub const BODY: &str = "b";
    // The earlier format's fields.
    pub const KEY: &str = "k";
    pub const EVENT: &str = "e";
    pub const SOURCE: &str = "s";
    pub const CHANNEL: &str = "c";
    pub const RECEIVED: &str = "r";
    pub const TRACE: &str = "t";
    pub const ATTEMPTS: &str = "a";
    pub const STATUS: &str = "st";
    pub const ERROR: &str = "er";
}

/// The format tag `m` starts with. A later format may only append parts, so that a reader of
/// this one still finds its parts where it expects them.
const META_TAG: &[u8] = b"1;";

/// Appends `<len>:<part>`.
fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{}:", part.len()); // writing to a Vec cannot fail
    out.extend_from_slice(part);
}

/// Appends a number as a part.
fn push_num_part(out: &mut Vec<u8>, n: u64) {
    push_part(out, n.to_string().as_bytes());
}

/// Appends a job's metadata (the `m` field): the format tag, then as parts the idempotency
/// key, event type, source, channel, receipt time (ms), traceparent, attempts made, last
/// status and last error (empty when absent).
pub fn encode_meta(
    out: &mut Vec<u8>,
    msg: &Message,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<&str>,
) {
    out.extend_from_slice(META_TAG);
    push_part(out, msg.idempotency_key.as_bytes());
    push_part(out, msg.event_type.as_bytes());
    push_part(out, msg.source.as_bytes());
    push_part(out, msg.channel.as_bytes());
    push_num_part(out, crate::util::time::unix_ms(msg.received_at));
    push_part(out, msg.traceparent.as_deref().unwrap_or("").as_bytes());
    push_num_part(out, attempts.into());
    match last_status {
        Some(s) => push_num_part(out, s.into()),
        None => push_part(out, b""),
    }
    push_part(out, last_error.unwrap_or("").as_bytes());
}

/// Reads the parts [`encode_meta`] wrote, in order; a missing or malformed part reads as
/// empty.
struct MetaParts<'a>(&'a [u8]);

impl<'a> MetaParts<'a> {
    fn new(meta: &'a [u8]) -> Self {
        // Skip the format tag (`<digits>;`).
        let body = match meta.iter().position(|&b| b == b';') {
            Some(i) if meta[..i].iter().all(u8::is_ascii_digit) => &meta[i + 1..],
            _ => meta,
        };
        Self(body)
    }

    fn next_bytes(&mut self) -> &'a [u8] {
        let Some(colon) = self.0.iter().position(|&b| b == b':') else {
            self.0 = &[];
            return &[];
        };
        let len = std::str::from_utf8(&self.0[..colon])
            .ok()
            .and_then(|n| n.parse::<usize>().ok());
        let start = colon + 1;
        match len.and_then(|n| Some((n, self.0.get(start..start.checked_add(n)?)?))) {
            Some((n, part)) => {
                self.0 = &self.0[start + n..];
                part
            }
            None => {
                self.0 = &[];
                &[]
            }
        }
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.next_bytes()).into_owned()
    }
}

/// The job an entry in the two-field format holds; the body buffer becomes the job's body.
fn job_from_meta(id: String, meta: &[u8], body: Vec<u8>) -> Job {
    let mut p = MetaParts::new(meta);
    job_from_items(id, || p.text(), body)
}

/// A job from its stored items, taken in [`encode_meta`]'s order (key, event type, source,
/// channel, receipt ms, traceparent, attempts, last status, last error), and its body.
fn job_from_items(id: String, mut item: impl FnMut() -> String, body: Vec<u8>) -> Job {
    let idempotency_key = item();
    let event_type = item();
    let source = Arc::from(item().as_str());
    let channel = item();
    let received_ms: u64 = item().parse().unwrap_or(0);
    let trace = item();
    let attempts = item().parse().unwrap_or(0);
    let status = item();
    let error = item();
    let msg = Message {
        idempotency_key,
        event_type,
        source,
        channel,
        body: Bytes::from(body),
        received_at: UNIX_EPOCH + Duration::from_millis(received_ms),
        traceparent: (!trace.is_empty()).then_some(trace),
    };
    Job {
        msg: Arc::new(msg),
        attempts,
        last_status: status.parse().ok(),
        last_error: (!error.is_empty()).then_some(error),
        replay_of: None,
        queue_id: Some(id),
    }
}

/// Records each message's idempotency key and journals it into the streams of its endpoints,
/// noting it in each endpoint's `ledger:<endpoint>:queued` set, for a whole ingest batch in one
/// atomic call: a message is journaled exactly once or not at all, and a batch whose reply
/// is lost and is sent again only finds its keys seen.
///
/// KEYS: the m seen keys, then per endpoint its stream and ledger set. ARGV: window ms, now
/// ms, m; then per message: n targets, n endpoint indices (from 1), then the key, the entry's
/// `m` field ([`encode_meta`]) and the body. Returns per message 1 (journaled) or 0 (the key
/// was seen within the window).
pub const JOURNAL_LUA: &str = r#"
local window, now, m = ARGV[1], ARGV[2], tonumber(ARGV[3])
local fresh = {}
local ledger = {}
local a = 4
for i = 1, m do
  local nt = tonumber(ARGV[a])
  local t0 = a + 1
  a = t0 + nt
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', window) then
    fresh[i] = 1
    local k = ARGV[a]
    for j = 0, nt - 1 do
      local ep = tonumber(ARGV[t0 + j])
      redis.call('XADD', KEYS[m + 2 * ep - 1], '*', 'm', ARGV[a + 1], 'b', ARGV[a + 2])
      local l = ledger[ep]
      if not l then l = {} ledger[ep] = l end
      l[#l + 1] = now
      l[#l + 1] = k
    end
  else
    fresh[i] = 0
  end
  a = a + 3
end
-- One ZADD per ledger set (in chunks that fit Lua's stack) instead of one per message.
for ep, l in pairs(ledger) do
  for s = 1, #l, 1000 do
    redis.call('ZADD', KEYS[m + 2 * ep], unpack(l, s, math.min(s + 999, #l)))
  end
end
return fresh
"#;

/// One endpoint of a journal batch.
#[derive(Debug)]
pub struct JournalEndpoint<'a> {
    /// Its stream.
    pub stream: &'a str,
    /// Its ledger's `queued` set.
    pub ledger: &'a str,
}

/// The `EVALSHA` of [`JOURNAL_LUA`]: `msgs` each with the indices (into `endpoints`) of the
/// endpoints it goes to.
pub fn journal_cmd(
    sha: &str,
    seen_prefix: &str,
    window_ms: u64,
    now_ms: u64,
    endpoints: &[JournalEndpoint<'_>],
    msgs: &[(&Message, Vec<usize>)],
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(msgs.len() + 2 * endpoints.len());
    let mut seen = String::with_capacity(seen_prefix.len() + 64);
    for (m, _) in msgs {
        seen.clear();
        seen.push_str(seen_prefix);
        seen.push_str(&m.idempotency_key);
        cmd.arg(seen.as_str());
    }
    for e in endpoints {
        cmd.arg(e.stream).arg(e.ledger);
    }
    cmd.arg(window_ms).arg(now_ms).arg(msgs.len());
    let mut meta = Vec::with_capacity(256);
    for (m, targets) in msgs {
        cmd.arg(targets.len());
        for i in targets {
            cmd.arg(i + 1);
        }
        meta.clear();
        encode_meta(&mut meta, m, 0, None, None);
        // The body goes straight into the command buffer, not copied first.
        cmd.arg(&m.idempotency_key)
            .arg(meta.as_slice())
            .arg(m.body.as_ref());
    }
    cmd
}

/// How long the delivery ledger remembers a message (what `migrate validate` can check).
pub const LEDGER_WINDOW: Duration = Duration::from_secs(6 * 3600);
/// At most this many keys per ledger set; the oldest go first.
pub const LEDGER_MAX: u64 = 1_000_000;

/// The delivery ledger of one endpoint: which idempotency keys were journaled for it,
/// delivered to it, or dead-lettered, each scored by time (ms). Bounded by
/// [`LEDGER_WINDOW`] and [`LEDGER_MAX`].
#[derive(Debug, Clone)]
pub struct LedgerKeys {
    /// Journaled for the endpoint.
    pub queued: String,
    /// Delivered (2xx).
    pub delivered: String,
    /// Dead-lettered.
    pub dead: String,
}

impl LedgerKeys {
    /// The ledger of `endpoint` under `key_prefix`.
    pub fn new(key_prefix: &str, endpoint: &str) -> Self {
        Self {
            queued: format!("{key_prefix}:ledger:{endpoint}:queued"),
            delivered: format!("{key_prefix}:ledger:{endpoint}:delivered"),
            dead: format!("{key_prefix}:ledger:{endpoint}:dead"),
        }
    }

    /// Adds the commands that drop entries older than the window or beyond the cap.
    pub fn trim_into(&self, pipe: &mut redis::Pipeline, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(LEDGER_WINDOW.as_millis() as u64);
        for k in [&self.queued, &self.delivered, &self.dead] {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(k)
                .arg("-inf")
                .arg(format!("({cutoff}"))
                .ignore();
            pipe.cmd("ZREMRANGEBYRANK")
                .arg(k)
                .arg(0)
                .arg(-(LEDGER_MAX as i64) - 1)
                .ignore();
        }
    }
}

/// What the acknowledger is told.
#[derive(Debug)]
enum Ack {
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

/// A Lua function both retry-set scripts start with: where the metadata of a retry member
/// `<n>:<entry id><n>:<meta><body>` starts and how long it is, or nothing when the member is
/// not in that layout. A macro, not a `const`, because `concat!` takes only literals.
macro_rules! member_meta_lua {
    () => {
        r#"
local function member_meta(m)
  local n = tonumber(string.match(m, '^(%d+):'))
  local p = n and (string.find(m, ':', 1, true) + 1 + n)
  local mn = p and tonumber(string.match(m, '^(%d+):', p))
  if not mn then return nil end
  return string.find(m, ':', p, true) + 1, mn
end
"#
    };
}

/// Moves due jobs from the retry set back into the stream. KEYS: retry set, stream.
/// ARGV: now ms, limit. Members are `<n>:<entry id><n>:<meta><body>` (see [`field`]), or JSON
/// objects of the entry's fields when an earlier version scheduled them. A member that is
/// neither stays where it is.
const MOVE_LUA: &str = concat!(
    member_meta_lua!(),
    r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, m in ipairs(due) do
  if string.sub(m, 1, 1) == '{' then
    local j = cjson.decode(m)
    redis.call('XADD', KEYS[2], '*', 'k', j.k, 'e', j.e, 's', j.s, 'c', j.c, 'b', j.b,
      'r', j.r, 't', j.t, 'a', j.a, 'st', j.st, 'er', j.er)
    redis.call('ZREM', KEYS[1], m)
    moved = moved + 1
  else
    local q, mn = member_meta(m)
    if q then
      redis.call('XADD', KEYS[2], '*', 'm', string.sub(m, q, q + mn - 1), 'b', string.sub(m, q + mn))
      redis.call('ZREM', KEYS[1], m)
      moved = moved + 1
    end
  end
end
return moved
"#
);

/// Counts a queue in one atomic step: `[XLEN, pending, ZCARD, head, next_retry]`, where
/// `head` and `next_retry` are `["m", <meta>]` (or `["r", <receipt ms>]` for the earlier
/// formats) of the first stream entry and of the retry due first, or empty. Only the
/// metadata leaves Redis, never a body. A missing consumer group counts as nothing pending.
const COUNT_LUA: &str = concat!(
    member_meta_lua!(),
    r#"
local len = redis.call('XLEN', KEYS[1])
local retry = redis.call('ZCARD', KEYS[2])
local pending = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err and p[1] then pending = p[1] end
local head = {}
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] and first[1][2] then
  local f = first[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'm' or f[i] == 'r' then head = {f[i], f[i + 1]} break end
  end
end
local due = {}
local r = redis.call('ZRANGE', KEYS[2], 0, 0)
if r[1] then
  local m = r[1]
  if string.sub(m, 1, 1) == '{' then
    local ok, j = pcall(cjson.decode, m)
    if ok and j.r then due = {'r', tostring(j.r)} end
  else
    local q, mn = member_meta(m)
    if q then due = {'m', string.sub(m, q, q + mn - 1)} end
  end
end
return {len, pending, retry, head, due}
"#
);

/// Counts the queue of `keys` (see [`COUNT_LUA`]).
async fn counts_with(
    script: &redis::Script,
    conn: &mut ConnectionManager,
    keys: &QueueKeys,
) -> redis::RedisResult<QueueCounts> {
    let v: Value = script
        .key(&keys.stream)
        .key(&keys.retry)
        .arg(GROUP)
        .invoke_async(conn)
        .await?;
    let items = match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let num = |i: usize| items.get(i).and_then(as_u64).unwrap_or(0);
    let (len, pending, retry) = (num(0), num(1), num(2));
    let oldest = [items.get(3), items.get(4)]
        .into_iter()
        .flatten()
        .filter_map(received_ms_of)
        .filter(|ms| *ms > 0)
        .min()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    Ok(QueueCounts::new(
        len.saturating_sub(pending),
        pending,
        retry,
        oldest,
    ))
}

/// The receipt time (ms) in a `["m", <meta>]` or `["r", <ms>]` pair.
fn received_ms_of(v: &Value) -> Option<u64> {
    let Value::Array(pair) = v else { return None };
    let kind = as_string(pair.first()?)?;
    let value = as_bytes(pair.get(1)?)?;
    match kind.as_str() {
        "m" => {
            let mut p = MetaParts::new(&value);
            for _ in 0..4 {
                p.next_bytes();
            }
            std::str::from_utf8(p.next_bytes()).ok()?.parse().ok()
        }
        "r" => std::str::from_utf8(&value).ok()?.parse().ok(),
        _ => None,
    }
}

/// What the queue of `endpoint` under `key_prefix` holds that is not delivered yet: the same
/// numbers a running bridge reports (used by the `status` command).
pub async fn queue_counts(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    endpoint: &str,
) -> redis::RedisResult<QueueCounts> {
    let keys = QueueKeys::new(key_prefix, endpoint);
    counts_with(&redis::Script::new(COUNT_LUA), conn, &keys).await
}

/// A retry-set member for `job`: `<n>:<entry id><n>:<meta><body>`. The entry id keeps the
/// member unique even if the same job is scheduled twice.
pub fn retry_member(job: &Job) -> Vec<u8> {
    let mut meta = Vec::with_capacity(256);
    encode_meta(
        &mut meta,
        &job.msg,
        job.attempts,
        job.last_status,
        job.last_error.as_deref(),
    );
    let id = job.queue_id.as_deref().unwrap_or("");
    let mut member = Vec::with_capacity(meta.len() + job.msg.body.len() + id.len() + 16);
    push_part(&mut member, id.as_bytes());
    push_part(&mut member, &meta);
    member.extend_from_slice(&job.msg.body);
    member
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

    /// Moves a job from the stream into the retry set, due in `delay`, in one MULTI.
    pub async fn retry_in(&self, job: &Job, delay: Duration) -> redis::RedisResult<()> {
        let due = now_ms() + delay.as_millis() as u64;
        let member = retry_member(job);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&self.keys.retry)
            .arg(due)
            .arg(member)
            .ignore();
        if let Some(id) = &job.queue_id {
            pipe.cmd("XACK")
                .arg(&self.keys.stream)
                .arg(GROUP)
                .arg(id)
                .ignore();
            pipe.cmd("XDEL").arg(&self.keys.stream).arg(id).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// What the queue holds that is not delivered yet, across every replica.
    pub async fn counts(&self) -> redis::RedisResult<QueueCounts> {
        let mut conn = self.conn.clone();
        counts_with(&self.counter, &mut conn, &self.keys).await
    }

    async fn read_loop(self: Arc<Self>, mut conn: ConnectionManager, shutdown: CancellationToken) {
        // First this consumer's own unacknowledged entries (none for a fresh consumer name),
        // then new ones.
        let mut cursor = "0";
        let mut backoff = Duration::from_millis(100);
        loop {
            let permit = tokio::select! {
                p = self.prefetch_tx.reserve() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let room = self.prefetch_tx.capacity() + 1;
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
            let reply = tokio::select! {
                r = cmd.query_async::<Value>(&mut conn) => r,
                _ = shutdown.cancelled() => break,
            };
            let entries = match reply {
                Ok(v) => {
                    backoff = Duration::from_millis(100);
                    parse_jobs(v)
                }
                Err(e) => {
                    if e.code() == Some("NOGROUP") {
                        tracing::warn!(stream = %self.keys.stream, "consumer group missing (Redis restarted without persistence?); recreating");
                        let _ = self.ensure_group().await;
                    } else {
                        tracing::warn!(stream = %self.keys.stream, redis = %crate::redis::redis_address(), error = %e, "reading the queue failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.cancelled() => break,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    continue;
                }
            };
            if cursor == "0" && entries.len() < room {
                cursor = ">";
            }
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
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn move_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = Ticker::new(MOVE_EVERY, &shutdown);
        while tick.tick().await {
            let mut conn = self.conn.clone();
            let r: redis::RedisResult<i64> = self
                .mover
                .key(&self.keys.retry)
                .key(&self.keys.stream)
                .arg(now_ms())
                .arg(256)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(stream = %self.keys.stream, error = %e, "moving due retries failed; will try again");
            }
        }
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

    async fn ack_loop(&self) {
        let Some(mut rx) = self.ack_rx.lock().await.take() else {
            return;
        };
        let mut batch: Vec<Ack> = Vec::with_capacity(ACK_BATCH);
        let mut stopping = false;
        let mut failures_while_stopping = 0u32;
        loop {
            if batch.is_empty() {
                if stopping {
                    return;
                }
                if rx.recv_many(&mut batch, ACK_BATCH).await == 0 {
                    return;
                }
                // Take whatever else arrived meanwhile, without waiting.
                while batch.len() < ACK_BATCH {
                    match rx.try_recv() {
                        Ok(a) => batch.push(a),
                        Err(_) => break,
                    }
                }
                if batch.iter().any(|a| matches!(a, Ack::Stop)) {
                    stopping = true;
                    batch.retain(|a| !matches!(a, Ack::Stop));
                }
                if batch.is_empty() {
                    continue;
                }
            }
            let now = now_ms();
            let mut ids: Vec<&str> = Vec::with_capacity(batch.len());
            // One ZADD per ledger set for the whole batch: (command, keys added).
            let [mut delivered_note, mut dead_note] =
                [&self.keys.ledger.delivered, &self.keys.ledger.dead].map(|set| {
                    let mut zadd = redis::cmd("ZADD");
                    zadd.arg(set);
                    (zadd, 0usize)
                });
            for a in &batch {
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
            let mut conn = self.conn.clone();
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => batch.clear(),
                Err(e) => {
                    // Keep them: an unacknowledged entry would be delivered again after a
                    // restart; retrying the ack avoids that duplicate.
                    tracing::warn!(stream = %self.keys.stream, redis = %crate::redis::redis_address(), error = %e, pending_acks = batch.len(), "acknowledging failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if stopping {
                        // Give up after a few tries at shutdown; the entries will be redelivered.
                        failures_while_stopping += 1;
                        if failures_while_stopping > 10 {
                            return;
                        }
                    }
                }
            }
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

/// One entry of a queue read.
#[derive(Debug)]
pub enum Read {
    /// The job it holds, in either format (see [`field`]).
    Job(Job),
    /// The entry was deleted while pending (e.g. a duplicate settled elsewhere): its id, to
    /// acknowledge.
    Deleted(String),
}

/// The entries of a queue read (XREADGROUP).
pub fn parse_jobs(v: Value) -> Vec<Read> {
    raw_read_reply(v)
        .into_iter()
        .map(|(id, kv)| match kv {
            Some(kv) => Read::Job(job_from_values(id, kv)),
            None => Read::Deleted(id),
        })
        .collect()
}

/// The job an entry's field/value list holds: straight from `[m, meta, b, body]` as this
/// version writes it, through a map otherwise.
fn job_from_values(id: String, kv: Vec<Value>) -> Job {
    match <[Value; 4]>::try_from(kv) {
        Ok(
            [
                Value::BulkString(f1),
                Value::BulkString(meta),
                Value::BulkString(f2),
                Value::BulkString(body),
            ],
        ) if f1 == field::META.as_bytes() && f2 == field::BODY.as_bytes() => {
            job_from_meta(id, &meta, body)
        }
        Ok(four) => job_from_fields(id, fields_of(four.into())),
        Err(kv) => job_from_fields(id, fields_of(kv)),
    }
}

/// The job an entry holds, in either format; takes the fields' buffers instead of copying
/// them (the body becomes the job's `Bytes` as it is).
fn job_from_fields(id: String, mut f: Fields) -> Job {
    let body = f.remove(field::BODY).unwrap_or_default();
    if let Some(meta) = f.remove(field::META) {
        return job_from_meta(id, &meta, body);
    }
    let mut items = [
        field::KEY,
        field::EVENT,
        field::SOURCE,
        field::CHANNEL,
        field::RECEIVED,
        field::TRACE,
        field::ATTEMPTS,
        field::STATUS,
        field::ERROR,
    ]
    .into_iter();
    let item = || match items.next().and_then(|k| f.remove(k)) {
        Some(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        None => String::new(),
    };
    job_from_items(id, item, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn tricky() -> Message {
        Message {
            // Colons, semicolons, digits and non-ASCII where the format uses them as markers.
            idempotency_key: "12:ab;3:c".into(),
            event_type: "model.ready".into(),
            source: Arc::from("registry;1:"),
            channel: "hokusai:events:é".into(),
            body: Bytes::from_static(b"{\"a\":\"1:2;3\"}\n\xff"),
            received_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    fn assert_same(job: &Job, msg: &Message) {
        assert_eq!(job.msg.idempotency_key, msg.idempotency_key);
        assert_eq!(job.msg.event_type, msg.event_type);
        assert_eq!(job.msg.source, msg.source);
        assert_eq!(job.msg.channel, msg.channel);
        assert_eq!(job.msg.body, msg.body);
        assert_eq!(job.msg.received_at, msg.received_at);
        assert_eq!(job.msg.traceparent, msg.traceparent);
    }

    #[test]
    fn an_entry_round_trips_every_field_whatever_bytes_they_hold() {
        let msg = tricky();
        let mut meta = Vec::new();
        encode_meta(
            &mut meta,
            &msg,
            3,
            Some(503),
            Some("HTTP 503: busy: try later"),
        );
        let kv = vec![bulk(b"m"), bulk(&meta), bulk(b"b"), bulk(&msg.body)];
        let job = job_from_values("5-1".into(), kv);
        assert_same(&job, &msg);
        assert_eq!(job.attempts, 3);
        assert_eq!(job.last_status, Some(503));
        assert_eq!(job.last_error.as_deref(), Some("HTTP 503: busy: try later"));
        assert_eq!(job.queue_id.as_deref(), Some("5-1"));

        // Nothing to report yet, no traceparent: absent, not empty strings.
        let fresh = Message {
            traceparent: None,
            ..tricky()
        };
        meta.clear();
        encode_meta(&mut meta, &fresh, 0, None, None);
        let mut fields = Fields::new();
        fields.insert("m".into(), meta.clone());
        fields.insert("b".into(), fresh.body.to_vec());
        // Through the map as well (the claim path reads entries that way).
        let job = job_from_fields("5-2".into(), fields);
        assert_same(&job, &fresh);
        assert_eq!(
            (job.attempts, job.last_status, job.last_error),
            (0, None, None)
        );
    }

    #[test]
    fn an_entry_in_the_earlier_one_field_per_item_format_reads_as_the_same_job() {
        let msg = tricky();
        let kv: Vec<Value> = [
            ("k", msg.idempotency_key.as_bytes()),
            ("e", msg.event_type.as_bytes()),
            ("s", msg.source.as_bytes()),
            ("c", msg.channel.as_bytes()),
            ("b", &msg.body[..]),
            ("r", b"1700000000123"),
            ("t", msg.traceparent.as_deref().unwrap().as_bytes()),
            ("a", b"2"),
            ("st", b"502"),
            ("er", b"HTTP 502"),
        ]
        .into_iter()
        .flat_map(|(f, v)| [bulk(f.as_bytes()), bulk(v)])
        .collect();
        let job = job_from_values("7-0".into(), kv);
        assert_same(&job, &msg);
        assert_eq!(job.attempts, 2);
        assert_eq!(job.last_status, Some(502));
        assert_eq!(job.last_error.as_deref(), Some("HTTP 502"));
    }

    #[test]
    fn a_cut_short_meta_keeps_the_parts_before_the_cut_and_leaves_the_rest_empty() {
        let msg = tricky();
        let mut meta = Vec::new();
        encode_meta(&mut meta, &msg, 1, None, None);
        // Cut inside the channel part.
        let at = meta
            .windows(msg.channel.len())
            .position(|w| w == msg.channel.as_bytes())
            .expect("the channel is in the meta");
        let cut = at + 3;
        let job = job_from_meta("1-0".into(), &meta[..cut], msg.body.to_vec());
        assert_eq!(job.msg.idempotency_key, msg.idempotency_key);
        assert_eq!(job.msg.event_type, msg.event_type);
        assert_eq!(&*job.msg.source, &*msg.source);
        assert_eq!(job.msg.channel, "", "the cut part");
        assert_eq!(job.msg.traceparent, None);
        assert_eq!(job.attempts, 0);
        assert_eq!(job.msg.body, msg.body);
    }

    #[test]
    fn a_retry_member_is_the_id_the_meta_and_the_body_each_findable_by_length() {
        let mut job = Job::new(Arc::new(tricky()));
        job.queue_id = Some("1700000000123-7".into());
        job.attempts = 4;
        job.last_status = Some(500);
        let member = retry_member(&job);
        let mut p = MetaParts(&member);
        assert_eq!(p.next_bytes(), b"1700000000123-7");
        let meta = p.next_bytes().to_vec();
        assert_eq!(p.0, &job.msg.body[..], "the body is the rest, as it is");
        let back = job_from_meta("9-9".into(), &meta, p.0.to_vec());
        assert_same(&back, &job.msg);
        assert_eq!((back.attempts, back.last_status), (4, Some(500)));
    }

    #[test]
    fn the_receipt_time_is_read_from_a_meta_or_an_earlier_format_time() {
        let msg = tricky();
        let mut meta = Vec::new();
        encode_meta(&mut meta, &msg, 2, Some(503), Some("boom"));
        let pair = Value::Array(vec![bulk(b"m"), bulk(&meta)]);
        assert_eq!(received_ms_of(&pair), Some(1_700_000_000_123));
        let old = Value::Array(vec![bulk(b"r"), bulk(b"1700000000999")]);
        assert_eq!(received_ms_of(&old), Some(1_700_000_000_999));
        assert_eq!(received_ms_of(&Value::Array(vec![])), None);
    }
}
