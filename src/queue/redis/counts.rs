//! Counting a queue: what it holds that is not delivered yet, in one atomic script call
//! that returns only metadata, never a body. The same query serves `/status`, the gauges
//! and the `status` command.

use std::time::{Duration, UNIX_EPOCH};

use redis::Value;
use redis::aio::ConnectionManager;

use super::codec::received_ms_of;
use super::{GROUP, QueueKeys};
use crate::endpoint_state::QueueCounts;
use crate::redis::reply::as_u64;

/// Counts a queue in one atomic step: `[XLEN, pending, ZCARD, head, next_retry]`, where
/// `head` and `next_retry` are `["m", <meta>]` (or `["r", <receipt ms>]` for the earlier
/// formats) of the first stream entry and of the retry due first, or empty. Only the
/// metadata leaves Redis, never a body. A missing consumer group counts as nothing pending.
pub(super) const COUNT_LUA: &str = concat!(
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
pub(super) async fn counts_with(
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
