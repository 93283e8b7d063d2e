//! The `run` command: wires sources → ingest → per-endpoint queues → delivery workers, serves
//! the admin endpoints, and shuts down in order on SIGTERM/SIGINT.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::admin::{self, Status};
use crate::config::{Config, ConfigError, SourceKind};
use crate::delivery::EndpointState;
use crate::delivery::worker::Worker;
use crate::dlq::Dlq;
use crate::ingest::{Ingest, IngestSettings, Route};
use crate::queue::memory::{DEFAULT_CAPACITY, MemoryQueue};
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
    let client = redis::Client::open(url.expose())?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
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

/// Builds the runtime of every endpoint in `cfg`.
pub fn build_endpoints(cfg: &Config, dlq: &Dlq) -> anyhow::Result<Vec<EndpointRuntime>> {
    cfg.endpoints
        .iter()
        .map(|ep| {
            let ep = Arc::new(ep.clone());
            let queue = Arc::new(MemoryQueue::new(DEFAULT_CAPACITY));
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
                    state,
                },
                worker: Arc::new(worker),
            })
        })
        .collect()
}

/// Runs the bridge until SIGTERM/SIGINT (or `shutdown` is cancelled by the caller).
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    metrics: PrometheusHandle,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    for (i, s) in cfg.sources.iter().enumerate() {
        if s.kind != SourceKind::Pubsub {
            return Err(ConfigError::Invalid {
                key: format!("sources[{i}].kind"),
                origin: String::new(),
                message: "list and stream sources need durability = \"redis\", which this build does not have yet; use a pubsub source".into(),
            }
            .into());
        }
    }
    if opts.dual && cfg.republish.targets.is_empty() {
        tracing::warn!(
            "--dual is on but [republish] targets is empty; nothing will be republished"
        );
    }

    let conn = redis_manager(&cfg.redis.url).context("cannot set up the Redis connection")?;
    let dlq = Dlq::new(conn.clone(), &cfg);
    let endpoints = build_endpoints(&cfg, &dlq)?;

    let sources: Vec<Arc<SourceState>> = cfg
        .sources
        .iter()
        .map(|s| Arc::new(SourceState::new(s.kind, &s.name)))
        .collect();
    let status = Arc::new(Status {
        paused: AtomicBool::new(false),
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
        worker_tasks.push(tokio::spawn(
            w.run(shutdown.token.clone(), shutdown.tracker.clone()),
        ));
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
        },
        routes,
        dlq: dlq.clone(),
        redis: conn.clone(),
    };
    let ingest_task = tokio::spawn(ingest.run(rx));

    let mut source_tasks = Vec::new();
    for (s, state) in cfg.sources.iter().zip(&sources) {
        source_tasks.push(tokio::spawn(source::pubsub::run(
            cfg.redis.url.clone(),
            s.clone(),
            state.clone(),
            tx.clone(),
            shutdown.token.clone(),
        )));
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
    park_memory_jobs(&endpoints, &dlq).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// With `durability = memory`, jobs still queued at exit would vanish with the process; they
/// go to the dead-letter stream instead, from where `dlq replay` re-drives them.
async fn park_memory_jobs(endpoints: &[EndpointRuntime], dlq: &Dlq) {
    let mut parked = 0usize;
    for e in endpoints {
        for job in e.route.queue.take_all() {
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
