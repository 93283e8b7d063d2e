//! `migrate plan` and `migrate validate`: the operator's inventory and parity check for moving
//! the registry's consumers from Redis to webhooks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::bridge::redis_manager;
use crate::cli::Format;
use crate::config::{Config, Durability, SourceKind};
use crate::ingest;
use crate::queue::redis::LedgerKeys;

// ----------------------------------------------------------------------------- plan

#[derive(Debug, Serialize)]
struct ChannelInfo {
    channel: String,
    subscribers: u64,
    configured: bool,
}

#[derive(Debug, Serialize)]
struct ListInfo {
    key: String,
    length: u64,
    looks_like_envelope: bool,
}

#[derive(Debug, Serialize)]
struct StreamInfo {
    key: String,
    length: u64,
    groups: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Plan {
    redis: String,
    channels: Vec<ChannelInfo>,
    pattern_subscriptions: u64,
    lists: Vec<ListInfo>,
    streams: Vec<StreamInfo>,
    suggested_config: String,
}

/// Most keys of each type inspected, so `plan` stays cheap on a large Redis.
const MAX_KEYS: usize = 500;

/// `migrate plan`.
pub async fn plan(cfg: &Config, format: Format) -> anyhow::Result<i32> {
    let mut conn = redis_manager(&cfg.redis.url)?;
    let own_prefix = format!("{}:", cfg.redis.key_prefix);

    // Channels: every active one that a configured channel or pattern names, plus the
    // configured ones even when nobody subscribes.
    let active: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut conn)
        .await?;
    let mut names: Vec<String> = active;
    for s in cfg.sources.iter().filter(|s| s.kind == SourceKind::Pubsub) {
        names.extend(s.channels.iter().cloned());
    }
    names.sort();
    names.dedup();
    let configured = |c: &str| {
        cfg.sources
            .iter()
            .filter(|s| s.kind == SourceKind::Pubsub)
            .any(|s| {
                s.channels.iter().any(|x| x == c)
                    || s.patterns
                        .iter()
                        .any(|p| wildmatch::WildMatch::new(p).matches(c))
            })
    };
    let mut channels = Vec::new();
    for c in names {
        let r: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&c)
            .query_async(&mut conn)
            .await?;
        channels.push(ChannelInfo {
            subscribers: r.first().map(|x| x.1).unwrap_or(0),
            configured: configured(&c),
            channel: c,
        });
    }
    let pattern_subscriptions: u64 = redis::cmd("PUBSUB")
        .arg("NUMPAT")
        .query_async(&mut conn)
        .await?;

    let mut lists = Vec::new();
    for key in scan_type(&mut conn, "list")
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(&own_prefix))
    {
        let length: u64 = redis::cmd("LLEN").arg(&key).query_async(&mut conn).await?;
        let oldest: Option<Vec<u8>> = redis::cmd("LINDEX")
            .arg(&key)
            .arg(-1)
            .query_async(&mut conn)
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
    let mut streams = Vec::new();
    for key in scan_type(&mut conn, "stream")
        .await?
        .into_iter()
        .filter(|k| !k.starts_with(&own_prefix))
    {
        let length: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        streams.push(StreamInfo {
            key,
            length,
            groups: group_names(&groups),
        });
    }

    let suggested_config = suggest(cfg, &channels, &lists, &streams);
    let plan = Plan {
        redis: cfg.redis.url.redacted(),
        channels,
        pattern_subscriptions,
        lists,
        streams,
        suggested_config,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Format::Text => {
            println!("Redis {}\n", plan.redis);
            println!("Pub/sub channels (subscribers now; * = read by the current config):");
            for c in &plan.channels {
                println!(
                    "  {} {:<50} {} subscriber(s)",
                    if c.configured { "*" } else { " " },
                    c.channel,
                    c.subscribers
                );
            }
            if plan.pattern_subscriptions > 0 {
                println!(
                    "  ({} pattern subscription(s) not counted per channel)",
                    plan.pattern_subscriptions
                );
            }
            println!("\nLists:");
            for l in &plan.lists {
                println!(
                    "  {:<52} {} item(s){}",
                    l.key,
                    l.length,
                    if l.looks_like_envelope {
                        ", registry envelopes"
                    } else {
                        ""
                    }
                );
            }
            println!("\nStreams:");
            for s in &plan.streams {
                println!(
                    "  {:<52} {} entr(ies), groups: {}",
                    s.key,
                    s.length,
                    if s.groups.is_empty() {
                        "-".into()
                    } else {
                        s.groups.join(", ")
                    }
                );
            }
            println!("\nSuggested config:\n\n{}", plan.suggested_config);
        }
    }
    Ok(crate::exit::OK)
}

async fn scan_type(conn: &mut ConnectionManager, kind: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = crate::queue::redis::scan_keys(conn, "*", Some(kind), MAX_KEYS).await?;
    keys.sort();
    Ok(keys)
}

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

fn suggest(
    cfg: &Config,
    channels: &[ChannelInfo],
    lists: &[ListInfo],
    streams: &[StreamInfo],
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n\n",
        cfg.redis.url.redacted(),
        cfg.redis.key_prefix
    ));
    let chans: Vec<&str> = channels
        .iter()
        .filter(|c| c.configured || c.channel.starts_with("hokusai:"))
        .map(|c| c.channel.as_str())
        .collect();
    if !chans.is_empty() {
        out.push_str("[[sources]]\nkind = \"pubsub\"\n");
        out.push_str(&format!("channels = {:?}\n\n", chans));
    }
    for l in lists
        .iter()
        .filter(|l| l.looks_like_envelope || l.key.starts_with("hokusai:"))
    {
        out.push_str(&format!(
            "# {} item(s) waiting now; the bridge becomes this list's consumer\n[[sources]]\nkind = \"list\"\nkey = {:?}\nunwrap_envelope = {}\n\n",
            l.length, l.key, l.looks_like_envelope
        ));
    }
    for s in streams.iter().filter(|s| s.key.starts_with("hokusai:")) {
        out.push_str(&format!(
            "[[sources]]\nkind = \"stream\"\nkey = {:?}\ngroup = \"webhook-bridge\"\n\n",
            s.key
        ));
    }
    for e in &cfg.endpoints {
        out.push_str(&format!(
            "[[endpoints]]\nname = {:?}\nurl = {:?}\nsecrets = [\"env:WEBHOOK_SECRET\"]\nsignature = \"{}\"\n\n",
            e.name,
            e.url.url().as_str(),
            crate::delivery::signing::scheme_name(e.signature)
        ));
    }
    out
}

// ------------------------------------------------------------------------- validate

/// One endpoint's parity numbers.
#[derive(Debug, Default, Serialize)]
struct Parity {
    endpoint: String,
    expected: usize,
    delivered: usize,
    dead_lettered: usize,
    pending: usize,
    missing: Vec<Missing>,
}

#[derive(Debug, Clone, Serialize)]
struct Missing {
    idempotency_key: String,
    channel: String,
    event_type: String,
}

#[derive(Debug, Serialize)]
struct Report {
    window_secs: f64,
    observed: usize,
    not_ingestible: usize,
    endpoints: Vec<Parity>,
    ok: bool,
}

/// `migrate validate --duration D`.
pub async fn validate(
    cfg: &Config,
    duration: Duration,
    grace: Duration,
    format: Format,
) -> anyhow::Result<i32> {
    if cfg.delivery.durability != Durability::Redis {
        anyhow::bail!(
            "migrate validate reads the delivery ledger, which needs delivery.durability = \"redis\""
        );
    }
    let pubsub: Vec<_> = cfg
        .sources
        .iter()
        .filter(|s| s.kind == SourceKind::Pubsub)
        .collect();
    if pubsub.is_empty() {
        anyhow::bail!("migrate validate observes pub/sub sources and the config has none");
    }
    let client = cfg.redis.url.client()?;
    let mut sub = client.get_async_pubsub().await?;
    for s in &pubsub {
        if !s.channels.is_empty() {
            sub.subscribe(&s.channels).await?;
        }
        if !s.patterns.is_empty() {
            sub.psubscribe(&s.patterns).await?;
        }
    }
    eprintln!(
        "observing {} for {} …",
        pubsub
            .iter()
            .flat_map(|s| s.channels.iter().chain(&s.patterns))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        crate::config::Dur(duration)
    );

    // Observe: key → (channel, event type, unwrap?) of every message seen.
    let mut seen: BTreeMap<String, Missing> = BTreeMap::new();
    let mut not_ingestible = 0usize;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut stream = sub.on_message();
    loop {
        let msg = tokio::select! {
            m = stream.next() => match m { Some(m) => m, None => anyhow::bail!("the Redis subscription was lost while observing; run validate again") },
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let channel = msg.get_channel_name().to_string();
        let body = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
        let unwrap = pubsub
            .iter()
            .find(|s| {
                s.channels.contains(&channel)
                    || s.patterns
                        .iter()
                        .any(|p| wildmatch::WildMatch::new(p).matches(&channel))
            })
            .is_some_and(|s| s.unwrap_envelope);
        match ingest::parse(
            &body,
            &channel,
            unwrap,
            &cfg.delivery.idempotency_key_fields,
            cfg.security.max_payload_bytes,
        ) {
            Ok(p) => {
                seen.entry(p.idempotency_key.clone()).or_insert(Missing {
                    idempotency_key: p.idempotency_key,
                    channel,
                    event_type: p.event_type,
                });
            }
            Err(_) => not_ingestible += 1,
        }
    }
    drop(stream);
    let window_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "observed {} message(s); waiting up to {} for deliveries to settle …",
        seen.len(),
        crate::config::Dur(grace)
    );

    // Check the ledger, polling until everything is settled or the grace period ends.
    let mut conn = redis_manager(&cfg.redis.url)?;
    let settle_deadline = tokio::time::Instant::now() + grace;
    let endpoints = loop {
        let mut all_settled = true;
        let mut out = Vec::new();
        for ep in &cfg.endpoints {
            let expected: Vec<&Missing> = seen
                .values()
                .filter(|m| ep.matches(&m.channel, &m.event_type))
                .collect();
            let keys: Vec<&str> = expected
                .iter()
                .map(|m| m.idempotency_key.as_str())
                .collect();
            let ledger = LedgerKeys::new(&cfg.redis.key_prefix, &ep.name);
            let delivered = members(&mut conn, &ledger.delivered, &keys).await?;
            let dead = members(&mut conn, &ledger.dead, &keys).await?;
            let queued = members(&mut conn, &ledger.queued, &keys).await?;
            let mut p = Parity {
                endpoint: ep.name.clone(),
                expected: expected.len(),
                ..Default::default()
            };
            for (i, m) in expected.iter().enumerate() {
                if delivered[i] {
                    p.delivered += 1;
                } else if dead[i] {
                    p.dead_lettered += 1;
                } else if queued[i] {
                    p.pending += 1;
                    all_settled = false;
                } else {
                    p.missing.push((*m).clone());
                    all_settled = false;
                }
            }
            out.push(p);
        }
        if all_settled || tokio::time::Instant::now() >= settle_deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ok = endpoints.iter().all(|p| p.missing.is_empty());
    let report = Report {
        window_secs,
        observed: seen.len(),
        not_ingestible,
        endpoints,
        ok,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            println!(
                "parity report: {} message(s) observed in {:.1}s ({} not ingestible, see `dlq list`)",
                report.observed, report.window_secs, report.not_ingestible
            );
            println!(
                "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
                "endpoint", "expected", "delivered", "dead-lettered", "pending", "MISSING"
            );
            for p in &report.endpoints {
                println!(
                    "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
                    p.endpoint,
                    p.expected,
                    p.delivered,
                    p.dead_lettered,
                    p.pending,
                    p.missing.len()
                );
            }
            for p in &report.endpoints {
                for m in p.missing.iter().take(50) {
                    println!(
                        "MISSING for {}: idempotency key {} (channel {}, event {})",
                        p.endpoint, m.idempotency_key, m.channel, m.event_type
                    );
                }
                if p.missing.len() > 50 {
                    println!(
                        "… and {} more missing for {}",
                        p.missing.len() - 50,
                        p.endpoint
                    );
                }
            }
            println!(
                "{}",
                if report.ok {
                    "PASS: every observed message is delivered, dead-lettered or pending"
                } else {
                    "FAIL: messages observed on Redis never reached the bridge's queues (no replica was subscribed, or they were lost)"
                }
            );
        }
    }
    Ok(if report.ok {
        crate::exit::OK
    } else {
        crate::exit::RUNTIME
    })
}

/// Which of `keys` are members of the sorted set `set`.
async fn members(
    conn: &mut ConnectionManager,
    set: &str,
    keys: &[&str],
) -> redis::RedisResult<Vec<bool>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(set)
            .arg(chunk)
            .query_async(conn)
            .await?;
        out.extend(scores.into_iter().map(|s| s.is_some()));
    }
    Ok(out)
}
