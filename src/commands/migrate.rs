//! `migrate plan` and `migrate validate`: the operator's inventory and parity check for moving
//! the registry's consumers from Redis to webhooks.
//!
//! `validate` passes only when every message it observed on the pub/sub and stream sources
//! was delivered to every endpoint that matches it; dead-lettered (unless
//! `--allow-dead-lettered`), still pending and missing messages fail it, each one named.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::Serialize;

use crate::cli::Format;
use crate::config::{Config, Durability, SourceKind};
use crate::ingest;
use crate::queue::redis::ledger::LedgerKeys;
use crate::redis::redis_manager;
use crate::redis::reply::parse_entries;

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
    let mut keys = crate::redis::keys::scan_keys(conn, "*", Some(kind), MAX_KEYS).await?;
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

/// The suggested config: the registry's pub/sub channel (never its list, which the bridge
/// would take items from: that is a commented alternative with MIGRATION.md's warning), the
/// streams, the endpoints and the `[security]` settings they need, so that it passes
/// `check-config` as printed (with `WEBHOOK_SECRET` set).
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
    let registry_lists: Vec<&ListInfo> = lists
        .iter()
        .filter(|l| l.looks_like_envelope || l.key.starts_with("hokusai:"))
        .collect();
    let mut chans: Vec<&str> = channels
        .iter()
        .filter(|c| c.configured || c.channel.starts_with("hokusai:"))
        .map(|c| c.channel.as_str())
        .collect();
    // The registry publishes each event to its list and to its channel: read the channel.
    if chans.is_empty() && !registry_lists.is_empty() {
        chans.push(crate::config::DEFAULT_CHANNEL);
    }
    if !chans.is_empty() {
        out.push_str("[[sources]]\nkind = \"pubsub\"\n");
        out.push_str(&format!("channels = {:?}\n\n", chans));
    }
    for l in registry_lists {
        out.push_str(&format!(
            "# Alternative, never together with the channel above: the list {key:?}\n\
             # ({len} item(s) now{env}). A list source CONSUMES the list: each item goes to the\n\
             # bridge or to a legacy worker, not both. Move the list's workers to a republished\n\
             # copy (run --dual with a list target) first, and do not read both the channel and\n\
             # the list for the same endpoints: each event would be delivered twice under two\n\
             # idempotency keys. See MIGRATION.md, \"Can the bridge read the registry's list\n\
             # instead of the channel?\".\n\
             # [[sources]]\n# kind = \"list\"\n# key = {key:?}\n# unwrap_envelope = {unwrap}\n\n",
            key = l.key,
            len = l.length,
            env = if l.looks_like_envelope {
                ", registry envelopes"
            } else {
                ""
            },
            unwrap = l.looks_like_envelope
        ));
    }
    for s in streams.iter().filter(|s| s.key.starts_with("hokusai:")) {
        out.push_str(&format!(
            "[[sources]]\nkind = \"stream\"\nkey = {:?}\ngroup = \"webhook-bridge\"\n\n",
            s.key
        ));
    }
    // The endpoints below passed [security] as configured now; without these settings
    // their http:// or private-network URLs would not.
    if cfg.security.allow_http || cfg.security.allow_private_networks {
        out.push_str("[security]\n");
        if cfg.security.allow_http {
            out.push_str("allow_http = true\n");
        }
        if cfg.security.allow_private_networks {
            out.push_str("allow_private_networks = true\n");
        }
        out.push('\n');
    }
    if !cfg.endpoints.is_empty() {
        out.push_str("# Each endpoint signs with the secret in WEBHOOK_SECRET; set it, or edit.\n");
    }
    for e in &cfg.endpoints {
        if e.url.redacted() != e.url.url().as_str() {
            out.push_str(
                "# the URL is shown redacted: fill in the full one (check-config --show-urls)\n",
            );
        }
        out.push_str(&format!(
            "[[endpoints]]\nname = {:?}\nurl = {:?}\nsecrets = [\"env:WEBHOOK_SECRET\"]\nsignature = \"{}\"\n\n",
            e.name,
            e.url.redacted(),
            crate::delivery::signing::scheme_name(e.signature)
        ));
    }
    out
}

// ------------------------------------------------------------------------- validate

/// One endpoint's parity numbers: every observed message it should have received is in
/// exactly one of the four counts.
#[derive(Debug, Default, Serialize)]
struct Parity {
    endpoint: String,
    expected: usize,
    delivered: usize,
    dead_lettered: usize,
    pending: usize,
    missing: usize,
    /// Each expected message that is not delivered, with its state.
    not_delivered: Vec<NotDelivered>,
}

/// Where an observed message stands for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum State {
    /// In the endpoint's dead-letter ledger.
    DeadLettered,
    /// Journaled, not yet delivered (waiting or in retry) when the grace period ended.
    Pending,
    /// Never reached the endpoint's queue.
    Missing,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::DeadLettered => "DEAD-LETTERED",
            State::Pending => "PENDING",
            State::Missing => "MISSING",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct NotDelivered {
    state: State,
    idempotency_key: String,
    channel: String,
    event_type: String,
}

/// An observed message.
#[derive(Debug, Clone)]
struct Seen {
    idempotency_key: String,
    channel: String,
    event_type: String,
}

#[derive(Debug, Serialize)]
struct Report {
    window_secs: f64,
    observed: usize,
    /// Observed messages the bridge cannot ingest: dead-lettered at ingest, never delivered.
    not_ingestible: usize,
    /// `--allow-dead-lettered`: dead-lettered messages do not fail the check.
    allow_dead_lettered: bool,
    /// Configured sources this check cannot observe (list sources).
    unchecked_sources: Vec<String>,
    endpoints: Vec<Parity>,
    ok: bool,
}

/// Why a configured source cannot be observed by `migrate validate`.
fn unobservable(s: &crate::config::SourceConfig) -> Option<String> {
    (s.kind() == SourceKind::List).then(|| {
        format!(
            "list source `{}` (key {}): the bridge moves each item out of the list as it reads it, so no other reader can see it",
            s.name,
            s.key().unwrap_or("")
        )
    })
}

/// What validate saw in its window.
#[derive(Default)]
struct Observed {
    /// Idempotency key → the message.
    seen: BTreeMap<String, Seen>,
    /// Messages the bridge cannot ingest (dead-lettered at ingest).
    not_ingestible: usize,
}

impl Observed {
    /// Keys a message exactly as the bridge's ingest does.
    fn record(&mut self, cfg: &Config, body: &[u8], channel: &str, unwrap: bool) {
        let body = bytes::Bytes::copy_from_slice(body);
        match ingest::parse(
            &body,
            channel,
            unwrap,
            &cfg.delivery.idempotency_key_fields,
            cfg.security.max_payload_bytes,
        ) {
            Ok(p) => {
                self.seen.entry(p.idempotency_key.clone()).or_insert(Seen {
                    idempotency_key: p.idempotency_key,
                    channel: channel.to_string(),
                    event_type: p.event_type,
                });
            }
            Err(_) => self.not_ingestible += 1,
        }
    }
}

/// The id of the newest entry of stream `key` (`0-0` when it is empty or absent).
async fn last_stream_id(conn: &mut ConnectionManager, key: &str) -> redis::RedisResult<String> {
    let v: redis::Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(parse_entries(v)
        .into_iter()
        .next()
        .map(|(id, _)| id)
        .unwrap_or_else(|| "0-0".into()))
}

/// Records the entries of a stream source added after `after`, up to `until` (both ids).
/// Reading with XRANGE leaves the bridge's consumer group untouched.
async fn observe_stream(
    conn: &mut ConnectionManager,
    cfg: &Config,
    source: &crate::config::SourceConfig,
    after: &str,
    until: &str,
    observed: &mut Observed,
) -> redis::RedisResult<()> {
    let key = source.key().unwrap_or("");
    let mut start = format!("({after}");
    loop {
        let v: redis::Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg(until)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        let page = parse_entries(v);
        let n = page.len();
        for (id, fields) in page {
            if let Some(fields) = fields {
                let body = crate::source::stream::body_of(fields);
                observed.record(cfg, &body, key, source.unwrap_envelope);
            }
            start = format!("({id}");
        }
        if n < 500 {
            return Ok(());
        }
    }
}

/// `migrate validate --duration D [--allow-dead-lettered]`.
pub async fn validate(
    cfg: &Config,
    duration: Duration,
    grace: Duration,
    format: Format,
    allow_dead_lettered: bool,
) -> anyhow::Result<i32> {
    if cfg.delivery.durability != Durability::Redis {
        anyhow::bail!(
            "migrate validate reads the delivery ledger, which needs delivery.durability = \"redis\""
        );
    }
    let pubsub: Vec<_> = cfg
        .sources
        .iter()
        .filter_map(|s| Some((s, s.pubsub()?)))
        .collect();
    let streams: Vec<_> = cfg
        .sources
        .iter()
        .filter(|s| s.kind() == SourceKind::Stream)
        .collect();
    let unchecked_sources: Vec<String> = cfg.sources.iter().filter_map(unobservable).collect();
    if pubsub.is_empty() && streams.is_empty() {
        anyhow::bail!(
            "migrate validate observes pub/sub and stream sources and the config has none; it cannot check {}",
            unchecked_sources.join("; ")
        );
    }
    for u in &unchecked_sources {
        eprintln!("not checked: {u}");
    }
    let mut conn = redis_manager(&cfg.redis.url)?;
    let client = cfg.redis.url.client()?;
    let mut sub = client.get_async_pubsub().await?;
    for (_, p) in &pubsub {
        if !p.channels.is_empty() {
            sub.subscribe(&p.channels).await?;
        }
        if !p.patterns.is_empty() {
            sub.psubscribe(&p.patterns).await?;
        }
    }
    let mut stream_starts = Vec::with_capacity(streams.len());
    for s in &streams {
        stream_starts.push(last_stream_id(&mut conn, s.key().unwrap_or("")).await?);
    }
    eprintln!(
        "observing {} for {} …",
        pubsub
            .iter()
            .flat_map(|(_, p)| p.channels.iter().chain(&p.patterns).map(String::as_str))
            .chain(streams.iter().filter_map(|s| s.key()))
            .collect::<Vec<_>>()
            .join(", "),
        crate::config::Dur(duration)
    );

    // Observe: key → (channel, event type) of every message seen.
    let mut observed = Observed::default();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    if pubsub.is_empty() {
        tokio::time::sleep_until(deadline).await;
    } else {
        let mut stream = sub.on_message();
        loop {
            let msg = tokio::select! {
                m = stream.next() => match m { Some(m) => m, None => anyhow::bail!("the Redis subscription was lost while observing; run validate again") },
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let channel = msg.get_channel_name().to_string();
            let unwrap = pubsub
                .iter()
                .find(|(_, p)| p.matches(&channel))
                .is_some_and(|(s, _)| s.unwrap_envelope);
            observed.record(cfg, msg.get_payload_bytes(), &channel, unwrap);
        }
    }
    for (s, start) in streams.iter().zip(&stream_starts) {
        let key = s.key().unwrap_or("");
        let end = last_stream_id(&mut conn, key).await?;
        observe_stream(&mut conn, cfg, s, start, &end, &mut observed).await?;
    }
    let Observed {
        seen,
        not_ingestible,
    } = observed;
    let window_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "observed {} message(s); waiting up to {} for deliveries to settle …",
        seen.len(),
        crate::config::Dur(grace)
    );

    // Check the ledger, polling until every message is delivered or dead-lettered, or the
    // grace period ends.
    let settle_deadline = tokio::time::Instant::now() + grace;
    let endpoints = loop {
        let mut all_settled = true;
        let mut out = Vec::new();
        for ep in &cfg.endpoints {
            let expected: Vec<&Seen> = seen
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
                let state = if delivered[i] {
                    p.delivered += 1;
                    continue;
                } else if dead[i] {
                    p.dead_lettered += 1;
                    State::DeadLettered
                } else if queued[i] {
                    p.pending += 1;
                    all_settled = false;
                    State::Pending
                } else {
                    p.missing += 1;
                    all_settled = false;
                    State::Missing
                };
                p.not_delivered.push(NotDelivered {
                    state,
                    idempotency_key: m.idempotency_key.clone(),
                    channel: m.channel.clone(),
                    event_type: m.event_type.clone(),
                });
            }
            out.push(p);
        }
        if all_settled || tokio::time::Instant::now() >= settle_deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let dead_ok = |n: usize| n == 0 || allow_dead_lettered;
    let ok = dead_ok(not_ingestible)
        && endpoints
            .iter()
            .all(|p| p.missing == 0 && p.pending == 0 && dead_ok(p.dead_lettered));
    let report = Report {
        window_secs,
        observed: seen.len(),
        not_ingestible,
        allow_dead_lettered,
        unchecked_sources,
        endpoints,
        ok,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    Ok(if report.ok {
        crate::exit::OK
    } else {
        crate::exit::RUNTIME
    })
}

/// Most not-delivered messages listed per endpoint in the text report (JSON lists all).
const LIST_LIMIT: usize = 50;

fn print_text(report: &Report) {
    println!(
        "parity report: {} message(s) observed in {:.1}s ({} not ingestible: dead-lettered at ingest, see `dlq list`)",
        report.observed, report.window_secs, report.not_ingestible
    );
    println!(
        "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
        "endpoint", "expected", "delivered", "dead-lettered", "pending", "MISSING"
    );
    for p in &report.endpoints {
        println!(
            "{:<24} {:>8} {:>9} {:>13} {:>8} {:>8}",
            p.endpoint, p.expected, p.delivered, p.dead_lettered, p.pending, p.missing
        );
    }
    for p in &report.endpoints {
        for m in p.not_delivered.iter().take(LIST_LIMIT) {
            println!(
                "{} for {}: idempotency key {} (channel {}, event {})",
                m.state.label(),
                p.endpoint,
                m.idempotency_key,
                m.channel,
                m.event_type
            );
        }
        if p.not_delivered.len() > LIST_LIMIT {
            println!(
                "… and {} more not delivered to {} (--format json lists all)",
                p.not_delivered.len() - LIST_LIMIT,
                p.endpoint
            );
        }
    }
    for u in &report.unchecked_sources {
        println!("NOT CHECKED: {u}");
    }
    let sum = |f: fn(&Parity) -> usize| report.endpoints.iter().map(f).sum::<usize>();
    let (dead, pending, missing) = (
        sum(|p| p.dead_lettered) + report.not_ingestible,
        sum(|p| p.pending),
        sum(|p| p.missing),
    );
    if report.ok {
        let accepted = if dead > 0 {
            format!(" ({dead} dead-lettered, accepted by --allow-dead-lettered)")
        } else {
            String::new()
        };
        println!("PASS: every observed message was delivered to every matching endpoint{accepted}");
    } else {
        let mut why = Vec::new();
        if missing > 0 {
            why.push(format!(
                "{missing} never reached the bridge's queues (no replica was subscribed, or they were lost)"
            ));
        }
        if pending > 0 {
            why.push(format!(
                "{pending} still pending after the grace period (retrying, circuit open or paused)"
            ));
        }
        if dead > 0 && !report.allow_dead_lettered {
            why.push(format!(
                "{dead} dead-lettered (fix and `dlq replay`, or accept them with --allow-dead-lettered)"
            ));
        }
        println!(
            "FAIL: not every observed message was delivered: {}",
            why.join("; ")
        );
    }
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
