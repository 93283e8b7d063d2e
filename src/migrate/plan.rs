//! `migrate plan`'s inventory: what the registry's Redis holds that a migration concerns —
//! the active pub/sub channels and their subscribers, the lists and streams (outside the
//! bridge's own keys) — and a config that reads them.

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::suggest::suggest;
use crate::config::Config;
use crate::redis::redis_manager;

/// Most keys of each type inspected, so `plan` stays cheap on a large Redis.
pub const MAX_KEYS: usize = 500;

/// A pub/sub channel: active now or named by the config.
#[derive(Debug, Serialize)]
pub struct ChannelInfo {
    /// The channel.
    pub channel: String,
    /// Its subscribers now (every client, the bridge's replicas included).
    pub subscribers: u64,
    /// Read by a source of the current config (by name or pattern).
    pub configured: bool,
}

/// A list outside the bridge's keys.
#[derive(Debug, Serialize)]
pub struct ListInfo {
    /// The key.
    pub key: String,
    /// Items in it.
    pub length: u64,
    /// Its oldest item is a registry envelope (`message_id` and `payload`).
    pub looks_like_envelope: bool,
}

/// A stream outside the bridge's keys.
#[derive(Debug, Serialize)]
pub struct StreamInfo {
    /// The key.
    pub key: String,
    /// Entries in it.
    pub length: u64,
    /// Its consumer groups.
    pub groups: Vec<String>,
}

/// What `migrate plan` reports.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The Redis inspected (credentials redacted).
    pub redis: String,
    /// Active and configured channels, sorted.
    pub channels: Vec<ChannelInfo>,
    /// Pattern subscriptions (not counted per channel).
    pub pattern_subscriptions: u64,
    /// Lists, sorted, at most [`MAX_KEYS`].
    pub lists: Vec<ListInfo>,
    /// Streams, sorted, at most [`MAX_KEYS`].
    pub streams: Vec<StreamInfo>,
    /// A config reading what was found (see [`suggest`]).
    pub suggested_config: String,
}

/// Takes the inventory of the Redis `cfg` names.
pub async fn plan(cfg: &Config) -> redis::RedisResult<Plan> {
    let mut conn = redis_manager(&cfg.redis.url)?;
    let own_prefix = format!("{}:", cfg.redis.key_prefix);
    let channels = channels(&mut conn, cfg).await?;
    let pattern_subscriptions: u64 = redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query_async(&mut conn)
        .await?;
    let lists = lists(&mut conn, &own_prefix).await?;
    let streams = streams(&mut conn, &own_prefix).await?;
    let suggested_config = suggest(cfg, &channels, &lists, &streams);
    Ok(Plan {
        redis: cfg.redis.url.redacted(),
        channels,
        pattern_subscriptions,
        lists,
        streams,
        suggested_config,
    })
}

/// Every active channel, plus the configured ones even when nobody subscribes, each with
/// its subscribers and whether a configured channel or pattern names it.
async fn channels(
    conn: &mut ConnectionManager,
    cfg: &Config,
) -> redis::RedisResult<Vec<ChannelInfo>> {
    let active: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(conn)
        .await?;
    let mut names: Vec<String> = active;
    for p in cfg.sources.iter().filter_map(|s| s.pubsub()) {
        names.extend(p.channels.iter().cloned());
    }
    names.sort();
    names.dedup();
    let configured = |c: &str| {
        cfg.sources
            .iter()
            .filter_map(|s| s.pubsub())
            .any(|p| p.matches(c))
    };
    let mut channels = Vec::new();
    for c in names {
        let r: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&c)
            .query_async(conn)
            .await?;
        channels.push(ChannelInfo {
            subscribers: r.first().map(|x| x.1).unwrap_or(0),
            configured: configured(&c),
            channel: c,
        });
    }
    Ok(channels)
}

/// The lists outside `own_prefix`, with their length and whether the oldest item is a
/// registry envelope.
async fn lists(
    conn: &mut ConnectionManager,
    own_prefix: &str,
) -> redis::RedisResult<Vec<ListInfo>> {
    let mut lists = Vec::new();
    for key in scan_type(conn, "list")
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(own_prefix))
    {
        let length: u64 = redis::cmd("LLEN").arg(&key).query_async(conn).await?;
        let oldest: Option<Vec<u8>> = redis::cmd("LINDEX")
            .arg(&key)
            .arg(-1)
            .query_async(conn)
            .await?;
        let looks_like_envelope = oldest.is_some_and(|b| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .map(|v| v.get("message_id").is_some() && v.get("payload").is_some())
                .unwrap_or(false)
        });
        lists.push(ListInfo {
            key,
            length,
            looks_like_envelope,
        });
    }
    Ok(lists)
}

/// The streams outside `own_prefix`, with their length and consumer groups.
async fn streams(
    conn: &mut ConnectionManager,
    own_prefix: &str,
) -> redis::RedisResult<Vec<StreamInfo>> {
    let mut streams = Vec::new();
    for key in scan_type(conn, "stream")
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(own_prefix))
    {
        let length: u64 = redis::cmd("XLEN").arg(&key).query_async(conn).await?;
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(conn)
            .await?;
        streams.push(StreamInfo {
            key,
            length,
            groups: group_names(&groups),
        });
    }
    Ok(streams)
}

/// The keys of type `kind`, sorted, at most [`MAX_KEYS`].
async fn scan_type(conn: &mut ConnectionManager, kind: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = crate::redis::keys::scan_keys(conn, "*", Some(kind), MAX_KEYS).await?;
    keys.sort();
    Ok(keys)
}

/// The group names of an `XINFO GROUPS` reply (RESP2 arrays or RESP3 maps).
fn group_names(v: &redis::Value) -> Vec<String> {
    let redis::Value::Array(groups) = v else {
        return Vec::new();
    };
    groups
        .iter()
        .filter_map(|g| {
            let fields: Vec<redis::Value> = match g {
                redis::Value::Array(f) => f.clone(),
                redis::Value::Map(kv) => kv
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect(),
                _ => return None,
            };
            let mut it = fields.iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if redis::from_redis_value_ref::<String>(k).ok().as_deref() == Some("name") {
                    return redis::from_redis_value_ref::<String>(v).ok();
                }
            }
            None
        })
        .collect()
}
