//! The scenarios: the direct-HTTP ceiling, throughput, latency and backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use axum::body::Bytes;
use redis::aio::MultiplexedConnection;
use redis_webhook_bridge::config::{Config, LoadOptions};
use redis_webhook_bridge::delivery::Outcome;
use redis_webhook_bridge::delivery::client::EndpointClient;
use redis_webhook_bridge::delivery::worker::AttemptHeaders;
use redis_webhook_bridge::message::Message;

use crate::*;
use crate::{bridge::*, harness::*, procs::*, table::*};

/// `n` bench bodies parsed as ingest parses them.
fn parsed(cfg: &Config, tag: &str, n: usize) -> anyhow::Result<Vec<Message>> {
    bodies(tag, n)
        .into_iter()
        .map(|b| {
            let p = redis_webhook_bridge::ingest::parse(
                &b,
                CHANNEL,
                false,
                &cfg.delivery.idempotency_key_fields,
                cfg.security.max_payload_bytes,
            )
            .map_err(|e| anyhow!("{e}"))?;
            Ok(Message {
                idempotency_key: p.idempotency_key,
                event_type: p.event_type,
                source: Arc::from("bench"),
                channel: CHANNEL.into(),
                body: p.body,
                received_at: SystemTime::now(),
                traceparent: None,
            })
        })
        .collect()
}

/// The direct loop: the same client, signer, headers and concurrency as the worker, no Redis.
pub(crate) async fn ceiling(ctx: &Ctx, label: &str) -> anyhow::Result<Row> {
    let n = ctx.opts.n;
    let dir = ctx.dir.join("ceiling");
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join("bridge.toml");
    std::fs::write(
        &cfg_path,
        config_toml(ctx, "bench-ceiling", "redis", &sink_urls(ctx, 1), 0),
    )?;
    let cfg = Config::load_with_env(
        &LoadOptions {
            file: Some(cfg_path.clone()),
            ..LoadOptions::default()
        },
        &|_| None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let ep = cfg.endpoints[0].clone();
    let client = EndpointClient::build(&ep, &cfg.security)?;
    // The worker's own header building and signing.
    let headers = AttemptHeaders::new(&ep).map_err(|e| anyhow!("{e}"))?;
    // What ingest computes once per message, outside the timed loop (it is not HTTP work).
    let jobs = Arc::new(parsed(&cfg, &format!("ceiling-{label}"), n)?);
    wait_quiet(ctx).await;
    let record = ctx.sink.reset(n, 1);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let shared = Arc::new((client, headers));
    let meter = Meter::start(&[ctx.redis.proc.pid()]);
    let start = now_ns();
    let mut tasks = Vec::new();
    for _ in 0..ep.concurrency {
        let (jobs, next, failed, shared) =
            (jobs.clone(), next.clone(), failed.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let (client, headers) = &*shared;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(msg) = jobs.get(i) else {
                    break;
                };
                let traceparent = redis_webhook_bridge::telemetry::traceparent(None);
                if !matches!(
                    client
                        .post(
                            headers.build(msg, &msg.body, 1, &traceparent),
                            msg.body.clone()
                        )
                        .await,
                    Outcome::Delivered { .. }
                ) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 || record.done() < record.expected() {
        bail!(
            "the direct loop failed: {failed} requests not delivered, {} of {n} received",
            record.done()
        );
    }
    let seconds = secs(record.last_ns.load(Ordering::Relaxed) - start);
    Ok(Row {
        scenario: format!("ceiling ({label})"),
        msgs: n as u64,
        seconds,
        rate: n as f64 / seconds,
        other_pct: Some(meter.other_pct()),
        bench_cpu_per_1k: Some(meter.bench_cpu() / (n as f64 / 1000.0)),
        note: "direct loop, no Redis".into(),
        ..Row::default()
    })
}

/// With `BENCH_QUIET_WAIT=SECS`: waits (at most SECS) for a second in which other processes
/// use less than [`NOISY_PCT`] of the CPUs.
pub(crate) async fn wait_quiet(ctx: &Ctx) {
    if ctx.opts.quiet_wait == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(ctx.opts.quiet_wait);
    let mut said = false;
    loop {
        let m = Meter::start(&[ctx.redis.proc.pid()]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let other = m.other_pct();
        if other < NOISY_PCT {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("bench:   still busy ({other:.0}% used elsewhere); measuring anyway");
            return;
        }
        if !said {
            eprintln!("bench:   waiting for a quiet machine ({other:.0}% used elsewhere) …");
            said = true;
        }
    }
}

pub(crate) async fn flush(ctx: &Ctx) -> anyhow::Result<()> {
    wait_quiet(ctx).await;
    let mut c = ctx.admin_conn.clone();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut c)
        .await
        .context("FLUSHALL")?;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut c)
        .await
        .context("CONFIG RESETSTAT")
}

/// Commands Redis executed since the last [`flush`] (`INFO commandstats`): name, calls per
/// 1,000 messages and microseconds per call, most frequent first; without the benchmark's
/// own PUBLISH and admin commands. Commands run inside Lua scripts count too (and their time
/// is also part of the script's).
pub(crate) async fn redis_calls(ctx: &Ctx, messages: usize) -> Vec<(String, f64, f64)> {
    let mut c = ctx.admin_conn.clone();
    let info: String = match redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
    {
        Ok(i) => i,
        Err(_) => return Vec::new(),
    };
    let mut calls: Vec<(String, f64, f64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| -> Option<f64> {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            let n = field("calls")?;
            let per_call = field("usec_per_call").unwrap_or(f64::NAN);
            Some((
                name.to_string(),
                n * 1000.0 / messages.max(1) as f64,
                per_call,
            ))
        })
        .filter(|(name, _, _)| {
            // Redis 7 names subcommands `config|resetstat`.
            let base = name.split('|').next().unwrap_or_default();
            !matches!(base, "publish" | "info" | "config" | "flushall")
        })
        .collect();
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    calls
}

/// What every bridge scenario starts and ends the same way: Redis flushed, the bridge
/// started, a publisher connection, the messages, when each was published, and the cost
/// meters.
pub(crate) struct Run {
    pub(crate) bridge: Bridge,
    pub(crate) publisher: MultiplexedConnection,
    pub(crate) bodies: Vec<Bytes>,
    /// Publish time of each message (ns, [`now_ns`]).
    pub(crate) sent: Vec<u64>,
    pub(crate) costs: Costs,
    /// PUBLISH calls that reached no subscriber.
    pub(crate) unheard: u64,
}

/// The columns every bridge scenario fills the same way, and what its own columns need.
pub(crate) struct Ended {
    /// Cost columns, peak RSS and Redis commands set, the rest default.
    pub(crate) row: Row,
    /// Publish time of each message (ns, [`now_ns`]).
    pub(crate) sent: Vec<u64>,
    /// `"N PUBLISH reached no subscriber"` when any did not.
    pub(crate) unheard: Option<String>,
}

impl Run {
    pub(crate) async fn start(
        ctx: &Ctx,
        scenario: &str,
        durability: &str,
        urls: &[String],
        n: usize,
    ) -> anyhow::Result<Self> {
        flush(ctx).await?;
        let bodies = bodies(scenario, n);
        let bridge = start_bridge(ctx, scenario, durability, urls).await?;
        let publisher = connect(&ctx.redis.url).await?;
        let costs = Costs::start(ctx, &bridge);
        Ok(Self {
            bridge,
            publisher,
            bodies,
            sent: vec![0; n],
            costs,
            unheard: 0,
        })
    }

    /// [`publish_batched`] of `range`.
    pub(crate) async fn publish(
        &mut self,
        range: std::ops::Range<usize>,
        progress: &mut Progress,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        self.unheard += publish_batched(
            &mut self.publisher,
            &self.bodies,
            range,
            &mut self.sent,
            progress,
            deadline,
        )
        .await?;
        Ok(())
    }

    /// Publishes message `seq` alone and notes when.
    pub(crate) async fn publish_one(&mut self, seq: usize) -> anyhow::Result<()> {
        self.sent[seq] = now_ns();
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(self.bodies[seq].as_ref())
            .query_async(&mut self.publisher)
            .await?;
        if receivers < 1 {
            self.unheard += 1;
        }
        Ok(())
    }

    /// Ends the measurement and stops the bridge. `with_calls`: read the Redis commands
    /// since the flush (the backlog case's own progress checks would be most of them).
    pub(crate) async fn finish(self, ctx: &Ctx, with_calls: bool) -> anyhow::Result<Ended> {
        let n = self.sent.len();
        let costs = self.costs.per_1k(ctx, &self.bridge, n);
        let hwm = self.bridge.hwm_mb();
        let calls = if with_calls {
            redis_calls(ctx, n).await
        } else {
            Vec::new()
        };
        self.bridge.stop().await?;
        Ok(Ended {
            row: Row {
                rss_mb: Some(hwm),
                redis_calls: calls,
                ..costs
            },
            sent: self.sent,
            unheard: (self.unheard > 0)
                .then(|| format!("{} PUBLISH reached no subscriber", self.unheard)),
        })
    }
}

/// Seconds from the first publish to the sink's last receipt.
pub(crate) fn to_last_receipt(record: &Record, sent: &[u64]) -> f64 {
    secs(
        record
            .last_ns
            .load(Ordering::Relaxed)
            .saturating_sub(sent[0]),
    )
}

/// `durability` × `endpoints`: N messages through the bridge to the sink.
pub(crate) async fn throughput(
    ctx: &Ctx,
    scenario: &str,
    durability: &str,
    endpoints: usize,
) -> anyhow::Result<Row> {
    let n = ctx.opts.n;
    let record = ctx.sink.reset(n, endpoints);
    let mut run = Run::start(ctx, scenario, durability, &sink_urls(ctx, endpoints), n).await?;
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(2 * n as u64);
    let mut progress = Progress::Sink(record.clone());
    run.publish(0..n, &mut progress, deadline).await?;
    let complete = wait_for_sink(&record, deadline).await;
    let end = run.finish(ctx, true).await?;
    let deliveries = record.done();
    let seconds = to_last_receipt(&record, &end.sent);
    let mut note = Vec::new();
    if !complete {
        note.push(format!(
            "INCOMPLETE: {deliveries} of {} deliveries",
            record.expected()
        ));
    }
    note.extend(end.unheard);
    let dups = record.duplicates.load(Ordering::Relaxed);
    if dups > 0 {
        note.push(format!("{dups} duplicate deliveries"));
    }
    let stray = record.stray.load(Ordering::Relaxed);
    if stray > 0 {
        note.push(format!("{stray} requests with an unknown path or body"));
    }
    if endpoints > 1 {
        let per: Vec<u64> = record
            .per_endpoint
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        note.push(format!("total deliveries/s, per endpoint {per:?}"));
    }
    Ok(Row {
        scenario: scenario.into(),
        msgs: deliveries,
        seconds,
        rate: if complete {
            deliveries as f64 / seconds
        } else {
            0.0
        },
        vs_ceiling: true,
        note: note.join("; "),
        ..end.row
    })
}

/// Publish → receipt at a fixed rate, one PUBLISH per message, durable, one endpoint.
pub(crate) async fn latency(ctx: &Ctx) -> anyhow::Result<Row> {
    let rate = ctx.opts.latency_rate;
    let n = (rate * ctx.opts.latency_secs) as usize;
    let record = ctx.sink.reset(n, 1);
    let mut run = Run::start(ctx, "latency", "redis", &sink_urls(ctx, 1), n).await?;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    let hard_stop = Instant::now() + Duration::from_secs(ctx.opts.latency_secs * 3 + 30);
    for seq in 0..n {
        tick.tick().await;
        if Instant::now() > hard_stop {
            bail!("the latency publisher fell far behind its schedule");
        }
        run.publish_one(seq).await?;
    }
    let complete = wait_for_sink(&record, Instant::now() + Duration::from_secs(60)).await;
    let end = run.finish(ctx, true).await?;
    let mut lat: Vec<f64> = (0..n)
        .filter_map(|s| Some((record.receipt(s, 0)? - end.sent[s]) as f64 / 1e6))
        .collect();
    lat.sort_by(f64::total_cmp);
    let seconds = to_last_receipt(&record, &end.sent);
    let mut note = vec![format!("{rate} msg/s paced, durable, 1 endpoint")];
    if !complete {
        note.push(format!("INCOMPLETE: {} of {n} received", record.done()));
    }
    note.extend(end.unheard);
    Ok(Row {
        scenario: "latency durable-1".into(),
        msgs: record.done(),
        seconds,
        rate: record.done() as f64 / seconds,
        vs_ceiling: false,
        latency_ms: complete.then(|| {
            (
                percentile(&lat, 50.0),
                percentile(&lat, 99.0),
                lat.last().copied().unwrap_or(f64::NAN),
            )
        }),
        note: note.join("; "),
        ..end.row
    })
}

/// RSS samples of the backlog case: (messages queued, VmRSS MB).
pub(crate) type Samples = Vec<(u64, f64)>;

/// An endpoint that is down while messages pile up in Redis.
pub(crate) async fn backlog(ctx: &Ctx) -> anyhow::Result<(Row, Samples)> {
    let scenario = "backlog";
    let n = ctx.opts.backlog;
    // A port that was free a moment ago: connections are refused.
    let dead = format!("http://127.0.0.1:{}/ep0", free_port()?);
    let mut run = Run::start(ctx, scenario, "redis", &[dead], n).await?;
    let mut progress = Progress::Journal {
        conn: ctx.admin_conn.clone(),
        prefix: format!("bench-{scenario}"),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = vec![(0, run.bridge.rss_mb())];
    eprintln!("bench: backlog: 0 queued, RSS {:.1} MB", samples[0].1);
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(n as u64);
    let mut from = 0;
    let mut journaled_all_at = None;
    for target in [n / 4, n / 2, n] {
        run.publish(from..target, &mut progress, deadline).await?;
        from = target;
        let mut queued = progress.through().await;
        while queued < target as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            queued = progress.through().await;
        }
        if target == n {
            journaled_all_at = Some(now_ns());
        }
        // Let in-flight work settle before sampling.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = run.bridge.rss_mb();
        eprintln!("bench: backlog: {queued} queued, RSS {rss:.1} MB");
        samples.push((queued, rss));
    }
    let end = run.finish(ctx, false).await?;
    let seconds = secs(journaled_all_at.unwrap_or_else(now_ns) - end.sent[0]);
    let queued = samples.last().map(|s| s.0).unwrap_or(0);
    let mut note = vec!["endpoint down; msg/s = journaling rate".to_string()];
    if queued < n as u64 {
        note.push(format!("only {queued} of {n} queued"));
    }
    note.extend(end.unheard);
    Ok((
        Row {
            scenario: "backlog (endpoint down)".into(),
            msgs: queued,
            seconds,
            rate: queued as f64 / seconds,
            vs_ceiling: false,
            note: note.join("; "),
            ..end.row
        },
        samples,
    ))
}

// -------------------------------------------------------------------------------------------
