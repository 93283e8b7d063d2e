//! `pause`, `resume` and `status`: the cluster-wide kill switch and a summary read from
//! Redis (so it works without the admin port and covers every replica).

use anyhow::Context;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::config::{Config, ListSource, SourceConfig, SourceKind, SourceSpec, StreamSource};
use crate::endpoint_state::QueueCounts;
use crate::pause::{self, PauseInfo};
use crate::queue::redis::counts::queue_counts;
use crate::redis::redis_manager;

/// `pause [--reason]`.
pub async fn pause(cfg: &Config, reason: Option<String>) -> anyhow::Result<i32> {
    let mut conn = connect(cfg)?;
    let info = pause::pause(&mut conn, &cfg.redis.key_prefix, reason)
        .await
        .with_context(|| format!("cannot pause: Redis at {}", cfg.redis.url.redacted()))?;
    println!(
        "paused deliveries on every replica (by {} at {}); messages keep being received and wait in the queues. `resume` restarts them.",
        info.by, info.since
    );
    Ok(crate::exit::OK)
}

/// `resume`.
pub async fn resume(cfg: &Config) -> anyhow::Result<i32> {
    let mut conn = connect(cfg)?;
    let was_paused = pause::resume(&mut conn, &cfg.redis.key_prefix)
        .await
        .with_context(|| format!("cannot resume: Redis at {}", cfg.redis.url.redacted()))?;
    if was_paused {
        println!("resumed deliveries on every replica");
    } else {
        println!("deliveries were not paused");
    }
    Ok(crate::exit::OK)
}

/// An endpoint in `status`: the same queue counts, under the same names, as `/status`.
#[derive(Debug, Serialize)]
struct EndpointStatus {
    name: String,
    #[serde(flatten)]
    queue: QueueCounts,
    /// Entries of this endpoint in the dead-letter stream.
    dlq_entries: u64,
}

/// A pub/sub channel and its subscribers (every client, the bridge's replicas included).
#[derive(Debug, Serialize)]
struct ChannelStatus {
    channel: String,
    subscribers: u64,
}

#[derive(Debug, Serialize)]
struct SourceStatus {
    name: String,
    kind: SourceKind,
    /// Pub/sub: the channels with their subscriber counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    channels: Vec<ChannelStatus>,
    /// Pub/sub: the patterns (their subscribers are not visible to `PUBSUB NUMSUB`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patterns: Vec<String>,
    /// List or stream: the key read.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// List: items waiting; stream: entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ClusterStatus {
    version: &'static str,
    redis: String,
    paused: Option<PauseInfo>,
    replicas: Vec<String>,
    sources: Vec<SourceStatus>,
    endpoints: Vec<EndpointStatus>,
    dlq_entries: u64,
}

/// `status [--format json]`.
pub async fn status(cfg: &Config, json: bool) -> anyhow::Result<i32> {
    let st = cluster_status(cfg).await.with_context(|| {
        format!(
            "cannot read the status: Redis at {}",
            cfg.redis.url.redacted()
        )
    })?;
    print_status(&st, json)
}

/// Reads everything `status` shows from Redis.
async fn cluster_status(cfg: &Config) -> anyhow::Result<ClusterStatus> {
    let mut conn = connect(cfg)?;
    let prefix = &cfg.redis.key_prefix;
    let paused = pause::paused(&mut conn, prefix).await?;
    let replica_prefix = cfg.redis.key("replica:");
    let mut replicas: Vec<String> = scan(&mut conn, &format!("{replica_prefix}*"))
        .await?
        .into_iter()
        .map(|k| k[replica_prefix.len()..].to_string())
        .collect();
    replicas.sort();
    let dlq_key = cfg.redis.key("dlq");
    let dlq_entries: u64 = redis::cmd("XLEN")
        .arg(&dlq_key)
        .query_async(&mut conn)
        .await?;
    let dead = crate::dlq::Dlq::new(conn.clone(), cfg)
        .list(usize::MAX, None)
        .await?;

    let mut endpoints = Vec::new();
    for ep in &cfg.endpoints {
        endpoints.push(EndpointStatus {
            name: ep.name.clone(),
            queue: queue_counts(&mut conn, prefix, &ep.name).await?,
            dlq_entries: dead.iter().filter(|d| d.endpoint == ep.name).count() as u64,
        });
    }

    let mut sources = Vec::new();
    for s in &cfg.sources {
        sources.push(source_status(&mut conn, s).await?);
    }

    Ok(ClusterStatus {
        version: crate::VERSION,
        redis: cfg.redis.url.redacted(),
        paused,
        replicas,
        sources,
        endpoints,
        dlq_entries,
    })
}

/// A source as `status` shows it: a pub/sub source's channels with their subscribers, a
/// list's or stream's length.
async fn source_status(
    conn: &mut ConnectionManager,
    s: &SourceConfig,
) -> redis::RedisResult<SourceStatus> {
    let mut st = SourceStatus {
        name: s.name.clone(),
        kind: s.kind(),
        channels: Vec::new(),
        patterns: Vec::new(),
        key: None,
        length: None,
    };
    match &s.spec {
        SourceSpec::PubSub(p) => {
            for ch in &p.channels {
                let r: Vec<(String, u64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(ch)
                    .query_async(conn)
                    .await?;
                st.channels.push(ChannelStatus {
                    channel: ch.clone(),
                    subscribers: r.first().map(|x| x.1).unwrap_or(0),
                });
            }
            st.patterns = p.patterns.clone();
        }
        SourceSpec::List(ListSource { key }) | SourceSpec::Stream(StreamSource { key, .. }) => {
            let cmd = if s.kind() == SourceKind::List {
                "LLEN"
            } else {
                "XLEN"
            };
            st.length = Some(redis::cmd(cmd).arg(key).query_async(conn).await?);
            st.key = Some(key.clone());
        }
    }
    Ok(st)
}

/// Prints `status` as text or JSON.
fn print_status(st: &ClusterStatus, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(st)?);
        return Ok(crate::exit::OK);
    }
    println!("redis:      {}", st.redis);
    match &st.paused {
        Some(p) => println!(
            "deliveries: PAUSED since {} by {}{}",
            p.since,
            p.by,
            p.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        None => println!("deliveries: running"),
    }
    println!(
        "replicas:   {} live{}",
        st.replicas.len(),
        if st.replicas.is_empty() {
            String::new()
        } else {
            format!(" ({})", st.replicas.join(", "))
        }
    );
    for s in &st.sources {
        let mut parts: Vec<String> = s
            .channels
            .iter()
            .map(|c| format!("{}: {} subscriber(s)", c.channel, c.subscribers))
            .collect();
        parts.extend(s.patterns.iter().map(|p| format!("{p}: pattern")));
        if let (Some(key), Some(n)) = (&s.key, s.length) {
            parts.push(match s.kind {
                SourceKind::List => format!("{key}: {n} item(s) waiting"),
                _ => format!("{key}: {n} entr(ies)"),
            });
        }
        println!(
            "source {} ({}): {}",
            s.name,
            s.kind.as_str(),
            parts.join(", ")
        );
    }
    for e in &st.endpoints {
        let q = &e.queue;
        println!(
            "endpoint {}: {} not delivered ({} waiting, {} taken by replicas (prefetched or in flight), {} scheduled for retry; oldest {}), {} in the dead-letter queue",
            e.name,
            q.not_delivered,
            q.waiting,
            q.taken,
            q.retry_scheduled,
            crate::config::Dur::secs(q.oldest_age_seconds),
            e.dlq_entries
        );
    }
    println!(
        "dead-letter queue: {} entr{}",
        st.dlq_entries,
        if st.dlq_entries == 1 { "y" } else { "ies" }
    );
    Ok(crate::exit::OK)
}

fn connect(cfg: &Config) -> anyhow::Result<ConnectionManager> {
    Ok(redis_manager(&cfg.redis.url)?)
}

/// Every key matching `pattern`.
async fn scan(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    crate::redis::keys::scan_keys(conn, pattern, None, usize::MAX).await
}
