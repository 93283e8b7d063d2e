//! `pause`, `resume` and `status`: the cluster-wide kill switch and a summary read from
//! Redis (so it works without the admin port and covers every replica).

use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::bridge::redis_manager;
use crate::config::{Config, SourceKind};
use crate::control::{self, PauseInfo};
use crate::queue::redis::{GROUP, QueueKeys};

/// `pause [--reason]`.
pub async fn pause(cfg: &Config, reason: Option<String>) -> anyhow::Result<i32> {
    let mut conn = connect(cfg)?;
    let info = control::pause(&mut conn, &cfg.redis.key_prefix, reason).await?;
    println!(
        "paused deliveries on every replica (by {} at {}); messages keep being received and wait in the queues. `resume` restarts them.",
        info.by, info.since
    );
    Ok(crate::exit::OK)
}

/// `resume`.
pub async fn resume(cfg: &Config) -> anyhow::Result<i32> {
    let mut conn = connect(cfg)?;
    if control::resume(&mut conn, &cfg.redis.key_prefix).await? {
        println!("resumed deliveries on every replica");
    } else {
        println!("deliveries were not paused");
    }
    Ok(crate::exit::OK)
}

#[derive(Debug, Serialize)]
struct EndpointStatus {
    name: String,
    queued: u64,
    in_flight: u64,
    retrying: u64,
    dead_lettered: u64,
}

#[derive(Debug, Serialize)]
struct SourceStatus {
    name: String,
    kind: SourceKind,
    /// Subscribers of each channel (pubsub) or items waiting (list) / entries (stream).
    detail: String,
}

#[derive(Debug, Serialize)]
struct ClusterStatus {
    version: &'static str,
    redis: String,
    paused: Option<PauseInfo>,
    replicas: Vec<String>,
    sources: Vec<SourceStatus>,
    endpoints: Vec<EndpointStatus>,
    dlq: u64,
}

/// `status [--json]`.
pub async fn status(cfg: &Config, json: bool) -> anyhow::Result<i32> {
    let mut conn = connect(cfg)?;
    let prefix = &cfg.redis.key_prefix;
    let paused = control::paused(&mut conn, prefix).await?;
    let replica_prefix = cfg.redis.key("replica:");
    let mut replicas: Vec<String> = scan(&mut conn, &format!("{replica_prefix}*"))
        .await?
        .into_iter()
        .map(|k| k[replica_prefix.len()..].to_string())
        .collect();
    replicas.sort();
    let dlq_key = cfg.redis.key("dlq");
    let dlq: u64 = redis::cmd("XLEN")
        .arg(&dlq_key)
        .query_async(&mut conn)
        .await?;
    let dead = crate::dlq::Dlq::new(conn.clone(), cfg)
        .list(usize::MAX, None)
        .await?;

    let mut endpoints = Vec::new();
    for ep in &cfg.endpoints {
        let keys = QueueKeys::new(prefix, &ep.name);
        let (len, retrying): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.retry)
            .query_async(&mut conn)
            .await?;
        let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(&keys.stream)
            .arg(GROUP)
            .query_async(&mut conn)
            .await;
        let in_flight = match pending {
            Ok(redis::Value::Array(v)) => match v.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        endpoints.push(EndpointStatus {
            name: ep.name.clone(),
            queued: len.saturating_sub(in_flight),
            in_flight,
            retrying,
            dead_lettered: dead.iter().filter(|d| d.endpoint == ep.name).count() as u64,
        });
    }

    let mut sources = Vec::new();
    for s in &cfg.sources {
        let detail = match s.kind {
            SourceKind::Pubsub => {
                let mut parts = Vec::new();
                for ch in &s.channels {
                    let r: Vec<(String, u64)> = redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(ch)
                        .query_async(&mut conn)
                        .await?;
                    let n = r.first().map(|x| x.1).unwrap_or(0);
                    parts.push(format!("{ch}: {n} subscriber(s)"));
                }
                for p in &s.patterns {
                    parts.push(format!("{p}: pattern"));
                }
                parts.join(", ")
            }
            SourceKind::List => {
                let key = s.key.clone().unwrap_or_default();
                let n: u64 = redis::cmd("LLEN").arg(&key).query_async(&mut conn).await?;
                format!("{key}: {n} item(s) waiting")
            }
            SourceKind::Stream => {
                let key = s.key.clone().unwrap_or_default();
                let n: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
                format!("{key}: {n} entr(ies)")
            }
        };
        sources.push(SourceStatus {
            name: s.name.clone(),
            kind: s.kind,
            detail,
        });
    }

    let st = ClusterStatus {
        version: crate::VERSION,
        redis: cfg.redis.url.redacted(),
        paused,
        replicas,
        sources,
        endpoints,
        dlq,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
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
        println!("source {} ({:?}): {}", s.name, s.kind, s.detail);
    }
    for e in &st.endpoints {
        println!(
            "endpoint {}: {} queued, {} taken by replicas (in flight or prefetched), {} waiting to retry, {} dead-lettered",
            e.name, e.queued, e.in_flight, e.retrying, e.dead_lettered
        );
    }
    println!(
        "dead-letter queue: {} entr{}",
        st.dlq,
        if st.dlq == 1 { "y" } else { "ies" }
    );
    Ok(crate::exit::OK)
}

fn connect(cfg: &Config) -> anyhow::Result<ConnectionManager> {
    Ok(redis_manager(&cfg.redis.url)?)
}

/// Every key matching `pattern`.
pub async fn scan(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    crate::queue::redis::scan_keys(conn, pattern, None, usize::MAX).await
}
