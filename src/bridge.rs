//! The `run` command: wires sources → ingest → per-endpoint queues → delivery workers, serves
//! the admin endpoints, and shuts down in order on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, watch};

use crate::admin::{self, Status};
use crate::config::Durability;
use crate::config::{Config, SourceKind};
use crate::control;
use crate::delivery::EndpointState;
use crate::delivery::worker::Worker;
use crate::dlq::Dlq;
use crate::ingest::{Ingest, IngestSettings, Route};
use crate::queue::Queue;
use crate::queue::memory::{DEFAULT_CAPACITY, MemoryQueue};
use crate::queue::redis::{self as redis_queue, QueueKeys, RedisQueue};
use crate::shutdown::Shutdown;
use crate::source::{self, SourceState};

/// Flags of `run` that are not config keys.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Republish to `[republish] targets`.
    pub dual: bool,
    /// Also write CloudWatch EMF lines.
    pub metrics_emf: bool,
}

/// A Redis connection that reconnects by itself, with bounded timeouts so that a dead Redis
/// makes calls fail fast instead of hanging.
pub fn redis_manager(
    url: &crate::config::RedisUrl,
) -> Result<ConnectionManager, redis::RedisError> {
    let client = url.client()?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, cfg)
}

/// A dedicated connection for blocking reads (XREADGROUP BLOCK would stall a shared one),
/// with a response timeout longer than the block.
pub fn redis_reader(url: &crate::config::RedisUrl) -> Result<ConnectionManager, redis::RedisError> {
    let client = url.client()?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, cfg)
}

/// One endpoint's queue, counters and worker, built from config.
pub struct EndpointRuntime {
    /// The route ingest uses.
    pub route: Route,
    /// The worker.
    pub worker: Arc<Worker>,
}

/// Where endpoint queues live.
#[derive(Clone)]
pub enum QueueMode {
    /// In process memory (also what `dlq replay` uses for its own, local delivery).
    Memory,
    /// Redis streams read as this replica's consumer.
    Redis {
        /// Shared connection for queue commands.
        conn: ConnectionManager,
        /// This replica's consumer name.
        consumer: String,
    },
}

/// Builds the runtime of every endpoint in `cfg`.
pub fn build_endpoints(
    cfg: &Config,
    dlq: &Dlq,
    mode: &QueueMode,
) -> anyhow::Result<Vec<EndpointRuntime>> {
    cfg.endpoints
        .iter()
        .map(|ep| {
            let ep = Arc::new(ep.clone());
            let keys = QueueKeys::new(&cfg.redis.key_prefix, &ep.name);
            let queue = match mode {
                QueueMode::Memory => Queue::Memory(Arc::new(MemoryQueue::new(DEFAULT_CAPACITY))),
                QueueMode::Redis { conn, consumer } => Queue::Redis(Arc::new(RedisQueue::new(
                    conn.clone(),
                    keys.clone(),
                    consumer,
                    ep.concurrency,
                ))),
            };
            let state = Arc::new(EndpointState::new(&ep.name, ep.url.url().as_str()));
            let worker = Worker::new(
                ep.clone(),
                &cfg.security,
                queue.clone(),
                state.clone(),
                dlq.clone(),
            )?;
            Ok(EndpointRuntime {
                route: Route {
                    endpoint: ep,
                    queue,
                    stream: keys.stream,
                    ledger: keys.ledger.queued,
                    state,
                },
                worker: Arc::new(worker),
            })
        })
        .collect()
}

/// This replica's consumer name: `<hostname>-<pid>-<random>`, unique per process so that
/// replicas on one host never share pending entries.
pub fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bridge".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// Runs the bridge until SIGTERM/SIGINT (or `shutdown` is cancelled by the caller).
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    metrics: PrometheusHandle,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if opts.dual && cfg.republish.targets.is_empty() {
        tracing::warn!(
            "--dual is on but [republish] targets is empty; nothing will be republished"
        );
    }

    let conn = redis_manager(&cfg.redis.url).context("cannot set up the Redis connection")?;
    let dlq = Dlq::new(conn.clone(), &cfg);
    let durable = cfg.delivery.durability == Durability::Redis;
    let consumer = consumer_name();
    let mode = if durable {
        QueueMode::Redis {
            conn: conn.clone(),
            consumer: consumer.clone(),
        }
    } else {
        QueueMode::Memory
    };
    let endpoints = build_endpoints(&cfg, &dlq, &mode)?;
    // Background work of the durable queues stops only after the workers have drained, so
    // acknowledgements of the last in-flight deliveries are still written.
    let queue_stop = tokio_util::sync::CancellationToken::new();
    let heartbeat_key = cfg.redis.key(&format!("replica:{consumer}"));
    let mut ackers = Vec::new();
    // Every replica heartbeats: durable queues and list/stream sources claim the work of
    // replicas whose heartbeat is gone.
    let heartbeat = tokio::spawn(redis_queue::heartbeat(
        conn.clone(),
        heartbeat_key,
        queue_stop.clone(),
    ));
    if durable {
        for e in &endpoints {
            if let Queue::Redis(q) = &e.route.queue {
                let mut wait = Duration::from_millis(100);
                while let Err(err) = q.ensure_group().await {
                    tracing::warn!(stream = %q.stream(), error = %err, "cannot create the consumer group; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.token.cancelled() => return Ok(()),
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                let reader = redis_reader(&cfg.redis.url)?;
                ackers.push((
                    q.clone(),
                    q.start(reader, shutdown.token.clone(), queue_stop.clone()),
                ));
            }
        }
    }

    let sources: Vec<Arc<SourceState>> = cfg
        .sources
        .iter()
        .map(|s| Arc::new(SourceState::new(s.kind, &s.name)))
        .collect();
    // The pause flag is read once before any worker starts, so a paused cluster does not
    // deliver during start-up, then polled.
    let paused_flag = Arc::new(AtomicBool::new(false));
    let mut pause_conn = conn.clone();
    let initially_paused = matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            control::paused(&mut pause_conn, &cfg.redis.key_prefix)
        )
        .await,
        Ok(Ok(Some(_)))
    );
    paused_flag.store(initially_paused, Ordering::Relaxed);
    if initially_paused {
        tracing::warn!("deliveries are paused (run `resume` to start them)");
    }
    let (pause_tx, pause_rx) = watch::channel(initially_paused);
    tokio::spawn(control::watch_pause(
        conn.clone(),
        cfg.redis.key_prefix.clone(),
        paused_flag.clone(),
        pause_tx,
        shutdown.token.clone(),
    ));
    tokio::spawn(control::watch_legacy_subscribers(
        conn.clone(),
        Arc::new(cfg.clone()),
        cfg.migration.legacy_check_interval.0,
        shutdown.token.clone(),
    ));
    let status = Arc::new(Status {
        paused: paused_flag.clone(),
        dual: opts.dual,
        config_version: AtomicU64::new(1),
        sources: sources.clone(),
        endpoints: RwLock::new(endpoints.iter().map(|e| e.route.state.clone()).collect()),
        redis: conn.clone(),
        metrics,
    });

    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {}", cfg.admin.listen))?;
    tracing::info!(listen = %cfg.admin.listen, "admin server listening");
    let admin_stop = shutdown.token.clone();
    let admin_task = tokio::spawn(async move {
        let app = admin::router(status);
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { admin_stop.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    });

    // Workers first, so that nothing ingest queues waits for a consumer.
    let mut worker_tasks = Vec::new();
    for e in &endpoints {
        let w = e.worker.clone();
        worker_tasks.push(tokio::spawn(w.run(
            pause_rx.clone(),
            shutdown.token.clone(),
            shutdown.tracker.clone(),
        )));
    }

    let (tx, rx) = mpsc::channel(4096);
    let routes = Arc::new(RwLock::new(Arc::new(
        endpoints
            .iter()
            .map(|e| e.route.clone())
            .collect::<Vec<_>>(),
    )));
    let ingest = Ingest {
        settings: IngestSettings {
            key_fields: cfg.delivery.idempotency_key_fields.clone(),
            max_payload_bytes: cfg.security.max_payload_bytes,
            dedupe_window: cfg.delivery.dedupe_window.0,
            seen_prefix: cfg.redis.key("seen:"),
            durable,
        },
        routes,
        dlq: dlq.clone(),
        redis: conn.clone(),
        shutdown: shutdown.token.clone(),
        republisher: if opts.dual && !cfg.republish.targets.is_empty() {
            Some(crate::ingest::Republisher::new(
                &cfg.republish.targets,
                &conn,
            )?)
        } else {
            None
        },
    };
    let ingest_task = tokio::spawn(ingest.run(rx));

    let mut source_tasks = Vec::new();
    for (s, state) in cfg.sources.iter().zip(&sources) {
        let (s, state, tx, stop) = (s.clone(), state.clone(), tx.clone(), shutdown.token.clone());
        let task = match s.kind {
            SourceKind::Pubsub => tokio::spawn(source::pubsub::run(
                cfg.redis.url.clone(),
                s,
                state,
                tx,
                stop,
            )),
            SourceKind::List => {
                let keys = source::list::ListKeys::new(&cfg.redis.key_prefix, &s, &consumer);
                tokio::spawn(source::list::run(
                    redis_reader(&cfg.redis.url)?,
                    keys,
                    s,
                    state,
                    tx,
                    stop,
                ))
            }
            SourceKind::Stream => tokio::spawn(source::stream::run(
                redis_reader(&cfg.redis.url)?,
                conn.clone(),
                s,
                consumer.clone(),
                cfg.redis.key("replica:"),
                state,
                tx,
                stop,
            )),
        };
        source_tasks.push(task);
    }
    drop(tx);

    let depth_stop = shutdown.token.clone();
    let depth_dlq = dlq.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => depth_dlq.refresh_depth_gauge().await,
                _ = depth_stop.cancelled() => break,
            }
        }
    });

    tracing::info!(
        version = crate::VERSION,
        endpoints = cfg.endpoints.len(),
        sources = cfg.sources.len(),
        durability = ?cfg.delivery.durability,
        dual = opts.dual,
        "bridge running"
    );

    shutdown.token.cancelled().await;
    let deadline = cfg.delivery.shutdown_timeout.0;
    for t in source_tasks {
        let _ = t.await;
    }
    let _ = ingest_task.await;
    for t in worker_tasks {
        let _ = t.await;
    }
    if shutdown.drain(deadline).await {
        tracing::info!("all in-flight deliveries finished");
    } else {
        tracing::warn!(
            timeout_ms = deadline.as_millis() as u64,
            "shutdown_timeout passed with deliveries still in flight; leaving them"
        );
    }
    if durable {
        for (q, acker) in ackers {
            q.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
            q.leave().await;
        }
    } else {
        park_memory_jobs(&endpoints, &dlq).await;
    }
    queue_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), heartbeat).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// With `durability = memory`, jobs still queued at exit would vanish with the process; they
/// go to the dead-letter stream instead, from where `dlq replay` re-drives them.
async fn park_memory_jobs(endpoints: &[EndpointRuntime], dlq: &Dlq) {
    let mut parked = 0usize;
    for e in endpoints {
        let Queue::Memory(q) = &e.route.queue else {
            continue;
        };
        for job in q.take_all() {
            let dl = crate::ingest::dead_letter(
                &job,
                &e.route.endpoint.name,
                crate::dlq::Stage::Delivery,
                "not delivered before shutdown (durability = memory); replay with `dlq replay`",
            );
            if dlq
                .add_reliably(&dl, Duration::from_secs(5))
                .await
                .is_some()
            {
                parked += 1;
            }
        }
    }
    if parked > 0 {
        tracing::warn!(
            jobs = parked,
            "queued deliveries moved to the dead-letter stream at shutdown"
        );
    }
}
