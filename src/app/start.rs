//! Starting `run`, in the order that matters: the heartbeat and the pause flag before any
//! worker (a paused cluster does not deliver during start-up), the admin server before
//! Redis is known to answer (so `/healthz` answers and `/readyz` says why it is not ready),
//! the Redis version check, the workers before the sources (so nothing ingest queues waits
//! for a consumer), then ingest and the sources.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::RunOptions;
use super::endpoints::{Context as EndpointContext, EndpointSet, QueueMode};
use crate::admin::{self, Status};
use crate::config::{Config, Durability};
use crate::console::Console;
use crate::dlq::Dlq;
use crate::ingest::{Ingest, IngestSettings};
use crate::pause;
use crate::queue::Intake;
use crate::queue::redis as redis_queue;
use crate::redis::{consumer_name, redis_manager};
use crate::shutdown::Shutdown;
use crate::source::{self, Received, SourceState};

/// Everything `run` started that [`stop`](super::stop::stop) ends, and what a reload
/// updates.
pub(super) struct Running {
    /// What `/status` reports (a reload bumps its config version).
    pub status: Arc<Status>,
    /// The live endpoints: queues, counters and workers.
    pub endpoints: EndpointSet,
    /// One task per source.
    pub sources: Vec<JoinHandle<()>>,
    /// The ingest stage; it ends once every source has dropped its sender.
    pub ingest: JoinHandle<()>,
    /// Stops the durable queues' background work (and the heartbeat) after the drain.
    pub queue_stop: CancellationToken,
    /// This replica's heartbeat.
    pub heartbeat: JoinHandle<()>,
    /// The console (a reload hands it the new config).
    pub console: Arc<Console>,
    /// The admin server.
    pub admin: JoinHandle<()>,
}

/// Logs what the config as loaded should change, before anything starts.
pub(super) fn warn_about_config(cfg: &Config, opts: &RunOptions) {
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    if opts.dual && cfg.republish.targets.is_empty() {
        tracing::warn!(
            "--dual is on but [republish] targets is empty; nothing will be republished"
        );
    }
}

/// Starts every part of the bridge. `None` when shutdown was requested while Redis was
/// still unreachable (nothing was received; what had started has been told to stop).
pub(super) async fn start(
    cfg: &Config,
    opts: &RunOptions,
    metrics: PrometheusHandle,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<Running>> {
    let conn = redis_manager(&cfg.redis.url).context("cannot set up the Redis connection")?;
    let dlq = Dlq::new(conn.clone(), cfg);
    let consumer = consumer_name();
    // Background work of the durable queues stops only after the workers have drained, so
    // acknowledgements of the last in-flight deliveries are still written.
    let queue_stop = CancellationToken::new();
    // Every replica heartbeats: durable queues and list/stream sources claim the work of
    // replicas whose heartbeat is gone.
    let heartbeat = tokio::spawn(redis_queue::heartbeat(
        conn.clone(),
        cfg.redis.key(&format!("replica:{consumer}")),
        queue_stop.clone(),
    ));
    let (paused_flag, paused) = watch_pause(&conn, cfg, shutdown).await;
    tokio::spawn(crate::migrate::watch_legacy_subscribers(
        conn.clone(),
        Arc::new(cfg.clone()),
        cfg.migration.legacy_check_interval.0,
        shutdown.token.clone(),
    ));
    let status = status(cfg, opts, paused_flag, &conn, metrics);
    let console = Arc::new(Console::new(status.clone(), dlq.clone(), cfg));
    let admin = serve_admin(cfg, status.clone(), console.clone(), shutdown).await?;

    // An older server would fail only where a source or a queue first uses a newer command.
    crate::redis::version::require_supported(&mut conn.clone(), &shutdown.token).await?;

    // Workers before sources, so that nothing ingest queues waits for a consumer.
    let ctx = EndpointContext {
        key_prefix: cfg.redis.key_prefix.clone(),
        redis_url: cfg.redis.url.clone(),
        dlq: dlq.clone(),
        mode: queue_mode(cfg, &conn, &consumer),
        paused,
        shutdown: shutdown.clone(),
        queue_stop: queue_stop.clone(),
        states: status.endpoints.clone(),
    };
    let endpoints = match EndpointSet::start(cfg, ctx).await {
        Ok(e) => e,
        Err(_) if shutdown.token.is_cancelled() => {
            queue_stop.cancel();
            return Ok(None);
        }
        Err(e) => return Err(e),
    };

    let (tx, rx) = mpsc::channel(4096);
    let ingest = tokio::spawn(ingest(cfg, opts, &endpoints, &dlq, &conn, shutdown)?.run(rx));
    let sources = spawn_sources(cfg, &status.sources, &consumer, &conn, tx, shutdown)?;
    spawn_background(opts, &endpoints, &dlq, shutdown);
    announce(cfg, opts, &dlq).await;
    Ok(Some(Running {
        status,
        endpoints,
        sources,
        ingest,
        queue_stop,
        heartbeat,
        console,
        admin,
    }))
}

/// What `/status` reports on: the pause flag, one state per source and (filled in when the
/// endpoints start) the endpoints' counters.
fn status(
    cfg: &Config,
    opts: &RunOptions,
    paused: Arc<AtomicBool>,
    conn: &ConnectionManager,
    metrics: PrometheusHandle,
) -> Arc<Status> {
    Arc::new(Status {
        paused,
        key_prefix: cfg.redis.key_prefix.clone(),
        dual: opts.dual,
        config_version: AtomicU64::new(1),
        sources: cfg
            .sources
            .iter()
            .map(|s| Arc::new(SourceState::new(s.kind(), &s.name)))
            .collect(),
        endpoints: Arc::new(RwLock::new(Vec::new())),
        redis: conn.clone(),
        metrics,
    })
}

/// Registers the process-wide series, reads the dead-letter depth once and says the bridge
/// runs.
async fn announce(cfg: &Config, opts: &RunOptions, dlq: &Dlq) {
    // Every series the dashboard and alerts use exists from the first scrape; each
    // endpoint's own are registered when its worker is built (also on reload).
    crate::telemetry::process_series(cfg);
    dlq.refresh_depth_gauge().await;
    tracing::info!(
        version = crate::VERSION,
        endpoints = cfg.endpoints.len(),
        sources = cfg.sources.len(),
        durability = cfg.delivery.durability.as_str(),
        dual = opts.dual,
        "bridge running"
    );
}

/// Where endpoint queues live: Redis streams read as this replica's consumer, or memory.
fn queue_mode(cfg: &Config, conn: &ConnectionManager, consumer: &str) -> QueueMode {
    if cfg.delivery.durability == Durability::Redis {
        QueueMode::Redis {
            conn: conn.clone(),
            consumer: consumer.to_owned(),
        }
    } else {
        QueueMode::Memory
    }
}

/// Reads the pause flag once before any worker starts, so a paused cluster does not
/// deliver during start-up, then keeps polling it: the flag `/status` reads and the channel
/// the workers wait on.
async fn watch_pause(
    conn: &ConnectionManager,
    cfg: &Config,
    shutdown: &Shutdown,
) -> (Arc<AtomicBool>, watch::Receiver<bool>) {
    let paused_flag = Arc::new(AtomicBool::new(false));
    let mut pause_conn = conn.clone();
    let initially_paused = matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            pause::paused(&mut pause_conn, &cfg.redis.key_prefix)
        )
        .await,
        Ok(Ok(Some(_)))
    );
    paused_flag.store(initially_paused, Ordering::Relaxed);
    if initially_paused {
        tracing::warn!("deliveries are paused (run `resume` to start them)");
    }
    let (pause_tx, pause_rx) = watch::channel(initially_paused);
    tokio::spawn(pause::watch_pause(
        conn.clone(),
        cfg.redis.key_prefix.clone(),
        paused_flag.clone(),
        pause_tx,
        shutdown.token.clone(),
    ));
    (paused_flag, pause_rx)
}

/// Binds `admin.listen` and serves the admin router and the console until shutdown.
async fn serve_admin(
    cfg: &Config,
    status: Arc<Status>,
    console: Arc<Console>,
    shutdown: &Shutdown,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {}", cfg.admin.listen))?;
    tracing::info!(listen = %cfg.admin.listen, "admin server listening");
    let admin_stop = shutdown.token.clone();
    let access = admin::Access {
        token: cfg.admin.token.clone(),
        protect_metrics: cfg.admin.protect_metrics,
    };
    let admin_limits = cfg.admin.limits;
    Ok(tokio::spawn(async move {
        let app = crate::console::router(console, &access).merge(admin::router(status, access));
        crate::http_server::serve(listener, app, admin_limits, async move {
            admin_stop.cancelled().await
        })
        .await;
    }))
}

/// The ingest stage over the endpoints' routing table (with dual publishing when asked
/// for and there is somewhere to republish to).
fn ingest(
    cfg: &Config,
    opts: &RunOptions,
    endpoints: &EndpointSet,
    dlq: &Dlq,
    conn: &ConnectionManager,
    shutdown: &Shutdown,
) -> anyhow::Result<Ingest<Intake>> {
    Ok(Ingest {
        settings: IngestSettings::from_config(cfg),
        routes: endpoints.routes(),
        queue: Intake::new(
            conn.clone(),
            cfg,
            Arc::new(dlq.clone()),
            shutdown.token.clone(),
        ),
        dlq: Arc::new(dlq.clone()),
        redis: conn.clone(),
        shutdown: shutdown.token.clone(),
        republisher: if opts.dual && !cfg.republish.targets.is_empty() {
            Some(crate::ingest::Republisher::new(
                &cfg.republish.targets,
                conn,
            )?)
        } else {
            None
        },
    })
}

/// One task per source, each handing what it receives to `tx`; ingest ends once every
/// one of them has stopped and dropped its sender.
fn spawn_sources(
    cfg: &Config,
    states: &[Arc<SourceState>],
    consumer: &str,
    conn: &ConnectionManager,
    tx: mpsc::Sender<Received>,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (s, state) in cfg.sources.iter().zip(states) {
        tasks.push(source::spawn(source::SourceCtx {
            cfg: s.clone(),
            redis: cfg.redis.clone(),
            conn: conn.clone(),
            consumer: consumer.to_owned(),
            state: state.clone(),
            out: tx.clone(),
            shutdown: shutdown.token.clone(),
        })?);
    }
    Ok(tasks)
}

/// The loops that only report: the dead-letter depth gauge and, with `--metrics-emf`, the
/// EMF lines.
fn spawn_background(opts: &RunOptions, endpoints: &EndpointSet, dlq: &Dlq, shutdown: &Shutdown) {
    let depth_stop = shutdown.token.clone();
    let depth_dlq = dlq.clone();
    tokio::spawn(async move {
        let mut tick = crate::shutdown::Ticker::new(Duration::from_secs(10), &depth_stop);
        while tick.tick().await {
            depth_dlq.refresh_depth_gauge().await;
        }
    });
    if opts.metrics_emf {
        tokio::spawn(crate::telemetry::emf::run(
            endpoints.states(),
            opts.metrics_emf_interval,
            shutdown.token.clone(),
        ));
    }
}
