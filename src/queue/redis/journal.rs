//! The journal: the one Lua call per ingest batch that records each message's idempotency
//! key and appends the fresh ones to the streams of their endpoints and to their ledgers,
//! and [`Journal`], which makes that call for the queues and retries it while Redis is away.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::encode_meta;
use crate::message::Message;
use crate::util::backoff::Backoff;
use crate::util::time::unix_ms;

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
#[derive(Debug, Clone, Copy)]
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

/// How long the journal keeps trying after shutdown before it gives up a batch (counted
/// once, for all the batches still coming).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Writes ingest batches with [`JOURNAL_LUA`], retrying while Redis is unreachable.
pub struct Journal {
    conn: ConnectionManager,
    script: redis::Script,
    /// `<key_prefix>:seen:`.
    seen_prefix: String,
    /// The de-duplication window, in ms (at least 1).
    window_ms: u64,
    shutdown: CancellationToken,
    /// When the journal stops trying, once shutdown has begun.
    gives_up_at: OnceLock<Instant>,
}

impl Journal {
    /// A journal over `conn` whose keys are recorded as `<seen_prefix><key>` for `window`.
    pub fn new(
        conn: ConnectionManager,
        seen_prefix: String,
        window: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            conn,
            script: redis::Script::new(JOURNAL_LUA),
            seen_prefix,
            window_ms: window.as_millis().max(1) as u64,
            shutdown,
            gives_up_at: OnceLock::new(),
        }
    }

    /// Journals `msgs`, each into the `endpoints` it lists, atomically in one script call;
    /// returns per message whether it was fresh. Retries while Redis is unreachable; the
    /// error is returned only when Redis stays away through shutdown (see
    /// `Journal::wait_to_retry`), and then nothing of the batch was journaled.
    pub async fn write(
        &self,
        endpoints: &[JournalEndpoint<'_>],
        msgs: &[(&Message, Vec<usize>)],
    ) -> redis::RedisResult<Vec<bool>> {
        let mut backoff = Backoff::default();
        loop {
            let cmd = journal_cmd(
                self.script.get_hash(),
                &self.seen_prefix,
                self.window_ms,
                unix_ms(SystemTime::now()),
                endpoints,
                msgs,
            );
            let mut conn = self.conn.clone();
            match cmd.query_async::<Vec<i64>>(&mut conn).await {
                Ok(r) if r.len() == msgs.len() => {
                    return Ok(r.into_iter().map(|x| x == 1).collect());
                }
                Ok(r) => {
                    // Cannot happen with this script; counting them fresh errs on delivering.
                    tracing::error!(
                        expected = msgs.len(),
                        got = r.len(),
                        "unexpected journal reply"
                    );
                    return Ok(vec![true; msgs.len()]);
                }
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let loaded: redis::RedisResult<String> = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(JOURNAL_LUA)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = loaded {
                        tracing::warn!(redis = %crate::redis::redis_address(), error = %e, "cannot load the journal script");
                    }
                }
                Err(e) => {
                    if !self.wait_to_retry(&mut backoff, &e, msgs.len()).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Waits before the next try after `e`; `false` when the batch is to be given up.
    ///
    /// Until shutdown the waits follow the one backoff policy and end early at shutdown. A
    /// received message the journal has not taken is either still held by its source
    /// (lists and streams: unacknowledged, read again at the next start) or only in this
    /// process (pub/sub), so shutdown does not stop the tries at once: they go on for
    /// [`SHUTDOWN_GRACE`], and a Redis that comes back within it saves the pub/sub messages.
    /// The grace is counted once for every batch still to come, so a Redis that stays away
    /// holds the exit up by no more than that.
    async fn wait_to_retry(
        &self,
        backoff: &mut Backoff,
        e: &redis::RedisError,
        messages: usize,
    ) -> bool {
        let delay = backoff.next_delay();
        let stopping = self.shutdown.is_cancelled();
        let delay = if stopping {
            let gives_up_at = *self
                .gives_up_at
                .get_or_init(|| Instant::now() + SHUTDOWN_GRACE);
            let left = gives_up_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            delay.min(left)
        } else {
            delay
        };
        tracing::warn!(redis = %crate::redis::redis_address(), error = %e, messages, retry_in_ms = delay.as_millis() as u64, "cannot journal received messages; retrying");
        if stopping {
            tokio::time::sleep(delay).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        true
    }
}
