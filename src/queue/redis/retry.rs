//! The retry set (`retry:<endpoint>`): scheduling a retry moves the job's entry from the
//! stream into the set in one MULTI, and the mover puts due jobs back into the stream with a
//! Lua script, so replicas never move one twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::codec::retry_member;
use super::{GROUP, MOVE_EVERY, RedisQueue, now_ms};
use crate::message::Job;
use crate::shutdown::Ticker;

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
/// ARGV: now ms, limit. Members are `<n>:<entry id><n>:<meta><body>` (see [`super::codec::field`]), or JSON
/// objects of the entry's fields when an earlier version scheduled them. A member that is
/// neither stays where it is.
pub(super) const MOVE_LUA: &str = concat!(
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

/// Due jobs moved back per script call.
const MOVE_BATCH: usize = 256;

impl RedisQueue {
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

    /// Moves due retries back into the stream every [`MOVE_EVERY`] until `shutdown`.
    pub(super) async fn move_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = Ticker::new(MOVE_EVERY, &shutdown);
        while tick.tick().await {
            let mut conn = self.conn.clone();
            let r: redis::RedisResult<i64> = self
                .mover
                .key(&self.keys.retry)
                .key(&self.keys.stream)
                .arg(now_ms())
                .arg(MOVE_BATCH)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(stream = %self.keys.stream, error = %e, "moving due retries failed; will try again");
            }
        }
    }
}
