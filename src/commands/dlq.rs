//! `dlq list | show | replay | purge`: inspect and re-drive dead-lettered deliveries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{QueueMode, build_endpoints};
use crate::cli::DlqCommand;
use crate::config::Config;
use crate::dlq::{DeadLetter, Dlq, Stage};
use crate::ingest::{self, Message};
use crate::queue::Job;
use crate::redis::redis_manager;
use crate::shutdown::Shutdown;
use crate::util::time::rfc3339;

/// Runs a `dlq` subcommand.
pub async fn run(cfg: Config, cmd: DlqCommand) -> anyhow::Result<i32> {
    let conn = redis_manager(&cfg.redis.url)?;
    let dlq = Dlq::new(conn, &cfg);
    let redis = cfg.redis.url.redacted();
    match cmd {
        DlqCommand::List {
            limit,
            endpoint,
            output,
        } => {
            // Printed as read, page by page: memory does not grow with the stream.
            if output.is_json() {
                let mut failed = None;
                dlq.for_each(
                    limit,
                    endpoint.as_deref(),
                    |e| match serde_json::to_string(&e) {
                        Ok(line) => println!("{line}"),
                        Err(err) => {
                            failed.get_or_insert(err);
                        }
                    },
                )
                .await
                .with_context(|| format!("reading {} on {redis}", dlq.key()))?;
                if let Some(err) = failed {
                    return Err(err.into());
                }
            } else {
                println!(
                    "{:<17} {:<16} {:<8} {:<36} {:>4} {:>6}  {:<24}  error",
                    "id", "endpoint", "stage", "idempotency_key", "att", "status", "failed_at"
                );
                let shown = dlq
                    .for_each(limit, endpoint.as_deref(), |e| {
                        println!(
                            "{:<17} {:<16} {:<8} {:<36} {:>4} {:>6}  {:<24}  {}",
                            e.id,
                            if e.endpoint.is_empty() {
                                "-"
                            } else {
                                &e.endpoint
                            },
                            stage(e.stage),
                            e.idempotency_key,
                            e.attempts,
                            e.last_status
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "-".into()),
                            rfc3339(e.failed_at_ms),
                            e.error.chars().take(120).collect::<String>()
                        );
                    })
                    .await
                    .with_context(|| format!("reading {} on {redis}", dlq.key()))?;
                eprintln!("{shown} entr{} shown", if shown == 1 { "y" } else { "ies" });
            }
            Ok(crate::exit::OK)
        }
        DlqCommand::Show { id, output } => {
            // The error's own text already carries its Redis cause; as a context chain it
            // would print that cause once per layer.
            let e = dlq
                .get(&id)
                .await
                .map_err(|e| anyhow::anyhow!("reading {} on {redis}: {e}", dlq.key()))?;
            let mut v = serde_json::to_value(&e)?;
            v["received_at"] = rfc3339(e.received_at_ms).into();
            v["failed_at"] = rfc3339(e.failed_at_ms).into();
            if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&e.body) {
                v["body"] = body;
            }
            if output.is_json() {
                println!("{}", serde_json::to_string(&v)?);
                return Ok(crate::exit::OK);
            }
            // Text: one `field: value` line each, the body last and pretty-printed.
            let body = v.as_object_mut().and_then(|o| o.remove("body"));
            if let Some(fields) = v.as_object() {
                for (k, val) in fields {
                    match val {
                        serde_json::Value::String(s) => println!("{k}: {s}"),
                        serde_json::Value::Null => println!("{k}: -"),
                        other => println!("{k}: {other}"),
                    }
                }
            }
            if let Some(body) = body {
                println!("body:\n{}", serde_json::to_string_pretty(&body)?);
            }
            Ok(crate::exit::OK)
        }
        DlqCommand::Purge { endpoint, yes } => {
            if !yes {
                eprintln!("dlq purge deletes entries for good; add --yes to confirm");
                return Ok(crate::exit::USAGE);
            }
            let mut ids = Vec::new();
            dlq.for_each(usize::MAX, endpoint.as_deref(), |e| ids.push(e.id))
                .await?;
            let mut n = 0;
            for chunk in ids.chunks(500) {
                n += dlq.delete(chunk).await?;
            }
            println!("purged {n} entr{}", if n == 1 { "y" } else { "ies" });
            Ok(crate::exit::OK)
        }
        DlqCommand::Replay { endpoint, all, ids } => replay(&cfg, &dlq, endpoint, all, ids).await,
    }
}

/// Whether a raw message dead-lettered at ingest is to be unwrapped as a registry envelope
/// on replay: the rules of the source it was read from, so that replay never delivers what
/// ingest refused (an envelope expected but not found is not posted raw). A rejection as
/// "not a registry envelope" proves the source unwrapped; otherwise the source's current
/// setting decides, and an entry whose source is gone is skipped (its rules are unknown).
fn ingest_rules(cfg: &Config, e: &DeadLetter) -> Result<bool, String> {
    let source = cfg.sources.iter().find(|s| s.name == e.source);
    if e.error.starts_with("not a registry envelope") {
        return Ok(true);
    }
    match source {
        Some(s) => Ok(s.unwrap_envelope),
        None => Err(format!(
            "source `{}` is not in the config, so the ingest rules it was read under (unwrap_envelope) are unknown",
            e.source
        )),
    }
}

fn stage(s: Stage) -> &'static str {
    match s {
        Stage::Ingest => "ingest",
        Stage::Delivery => "delivery",
    }
}

/// Re-drives entries through the same workers `run` uses (signing, retries, circuit
/// breaker). Each entry is removed once settled: delivered, or dead-lettered anew with the
/// new error. Entries whose endpoint no longer exists are left in place.
async fn replay(
    cfg: &Config,
    dlq: &Dlq,
    endpoint: Option<String>,
    all: bool,
    ids: Vec<String>,
) -> anyhow::Result<i32> {
    if !all && ids.is_empty() {
        eprintln!("dlq replay needs entry ids or --all");
        return Ok(crate::exit::USAGE);
    }
    if let Some(name) = &endpoint
        && cfg.endpoint(name).is_none()
    {
        anyhow::bail!("--endpoint {name}: no such endpoint in the config");
    }
    let entries: Vec<DeadLetter> = if all {
        dlq.list(usize::MAX, endpoint.as_deref()).await?
    } else {
        let mut v = Vec::new();
        for id in &ids {
            let e = dlq.get(id).await?;
            if endpoint.as_deref().is_none_or(|n| n == e.endpoint) {
                v.push(e);
            }
        }
        v
    };
    if entries.is_empty() {
        println!("nothing to replay");
        return Ok(crate::exit::OK);
    }

    let endpoints = build_endpoints(cfg, dlq, &QueueMode::Memory)?;
    let shutdown = Shutdown::new();
    // Replay is an explicit operator action: it delivers even while the cluster is paused.
    let (_pause_tx, not_paused) = tokio::sync::watch::channel(false);
    for e in &endpoints {
        tokio::spawn(e.worker.clone().run(
            not_paused.clone(),
            shutdown.token.clone(),
            shutdown.tracker.clone(),
        ));
    }
    let ingest_settings = crate::ingest::IngestSettings {
        key_fields: cfg.delivery.idempotency_key_fields.clone(),
        max_payload_bytes: cfg.security.max_payload_bytes,
        max_json_depth: cfg.security.max_json_depth,
        dedupe_window: cfg.delivery.dedupe_window.0,
        seen_prefix: cfg.redis.key("seen:"),
        durable: false,
    };

    let mut skipped = 0u64;
    let mut queued = 0u64;
    for e in &entries {
        // Only a prefix of an oversized body is kept: delivering it would send a body the
        // publisher never sent. The digest and size identify the original for the operator.
        if let Some(t) = &e.truncated {
            eprintln!(
                "{}: skipped: only a prefix of its {}-byte body (sha256 {}) is stored; left in place",
                e.id, t.body_size, t.body_sha256
            );
            skipped += 1;
            continue;
        }
        let received_at = UNIX_EPOCH + Duration::from_millis(e.received_at_ms);
        // An ingest entry with an endpoint was parsed already (a full memory queue): its body
        // and key are final, like a delivery entry's. Without one it holds the raw message.
        let raw = e.stage == Stage::Ingest && e.endpoint.is_empty();
        let targets: Vec<_> = if raw {
            endpoints
                .iter()
                .filter(|r| {
                    endpoint
                        .as_deref()
                        .is_none_or(|n| n == r.route.endpoint.name)
                })
                .collect()
        } else {
            endpoints
                .iter()
                .filter(|r| r.route.endpoint.name == e.endpoint)
                .collect()
        };
        let msg = if !raw {
            Message {
                idempotency_key: e.idempotency_key.clone(),
                event_type: e.event_type.clone(),
                source: Arc::from(e.source.as_str()),
                channel: e.channel.clone(),
                body: e.body.clone(),
                received_at,
                traceparent: None,
            }
        } else {
            let unwrap_envelope = match ingest_rules(cfg, e) {
                Ok(u) => u,
                Err(why) => {
                    eprintln!("{}: skipped: {why}; left in place", e.id);
                    skipped += 1;
                    continue;
                }
            };
            // The same checks, in the same order, as the ingest step that dead-lettered it.
            match ingest::validate(&e.body, ingest_settings.max_json_depth).and_then(|()| {
                ingest::parse(
                    &e.body,
                    &e.channel,
                    unwrap_envelope,
                    &ingest_settings.key_fields,
                    ingest_settings.max_payload_bytes,
                )
            }) {
                Ok(p) => Message {
                    idempotency_key: p.idempotency_key,
                    event_type: p.event_type,
                    source: Arc::from(e.source.as_str()),
                    channel: e.channel.clone(),
                    body: p.body,
                    received_at,
                    traceparent: p.traceparent,
                },
                Err(err) => {
                    eprintln!(
                        "{}: skipped: still cannot be ingested ({err}); left in place",
                        e.id
                    );
                    skipped += 1;
                    continue;
                }
            }
        };
        let targets: Vec<_> = targets
            .into_iter()
            .filter(|r| !raw || r.route.endpoint.matches(&msg.channel, &msg.event_type))
            .collect();
        if targets.is_empty() {
            eprintln!(
                "{}: endpoint `{}` is not in the config (or matches no endpoint); left in place",
                e.id, e.endpoint
            );
            skipped += 1;
            continue;
        }
        let msg = Arc::new(msg);
        // An ingest-stage entry may fan out to several endpoints; only the last job removes it.
        let last = targets.len() - 1;
        for (i, r) in targets.iter().enumerate() {
            let mut job = Job::new(msg.clone());
            if i == last {
                job.replay_of = Some(e.id.clone());
            }
            if let crate::queue::Queue::Memory(q) = &r.route.queue
                && q.push(job).is_ok()
            {
                queued += 1;
            }
        }
    }

    let bar = if queued >= 20 {
        let b = ProgressBar::new(queued);
        b.set_style(
            ProgressStyle::with_template("replay {bar:40} {pos}/{len} settled, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let settled = || -> (u64, u64) {
        endpoints.iter().fold((0, 0), |(d, f), e| {
            (
                d + e.route.state.delivered.load(Ordering::Relaxed),
                f + e.route.state.dead_lettered.load(Ordering::Relaxed),
            )
        })
    };
    let started = SystemTime::now();
    loop {
        let idle = endpoints.iter().all(|e| match &e.route.queue {
            crate::queue::Queue::Memory(q) => q.outstanding() == 0,
            crate::queue::Queue::Redis(_) => true,
        });
        let (d, f) = settled();
        bar.set_position(d + f);
        bar.set_message(format!("{d} delivered, {f} failed again"));
        if idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    shutdown.token.cancel();
    shutdown.drain(Duration::from_secs(5)).await;
    let (delivered, failed) = settled();
    println!(
        "replayed {queued} deliver{} in {:.1}s: {delivered} delivered, {failed} dead-lettered again, {skipped} skipped",
        if queued == 1 { "y" } else { "ies" },
        started.elapsed().unwrap_or_default().as_secs_f64()
    );
    Ok(if failed > 0 || skipped > 0 {
        crate::exit::RUNTIME
    } else {
        crate::exit::OK
    })
}
