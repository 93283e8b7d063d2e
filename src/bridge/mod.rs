//! The `run` command: wires sources → ingest → per-endpoint queues → delivery workers, serves
//! the admin endpoints, and shuts down in order on SIGTERM/SIGINT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};

mod endpoints;

pub use endpoints::{
    Applied, EndpointRuntime, EndpointSet, QueueMode, build_endpoint, build_endpoints,
};

use crate::admin::{self, Status};
use crate::config::{Config, Durability, LoadOptions, SourceKind};
use crate::dlq::Dlq;
use crate::ingest::{Ingest, IngestSettings};
use crate::pause;
use crate::queue::redis as redis_queue;
use crate::redis::{consumer_name, redis_manager, redis_reader};
use crate::shutdown::Shutdown;
use crate::source::{self, SourceState};
use endpoints::Context as EndpointContext;

/// Flags of `run` that are not config keys.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Republish to `[republish] targets`.
    pub dual: bool,
    /// Also write CloudWatch EMF lines.
    pub metrics_emf: bool,
    /// How often EMF lines are written.
    pub metrics_emf_interval: Duration,
    /// How the config was loaded, to load it again on reload.
    pub load: LoadOptions,
}

/// Runs the bridge until SIGTERM/SIGINT (or `shutdown` is cancelled by the caller).
pub async fn run(
    cfg: Config,
    opts: RunOptions,
    metrics: PrometheusHandle,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
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
    // Background work of the durable queues stops only after the workers have drained, so
    // acknowledgements of the last in-flight deliveries are still written.
    let queue_stop = tokio_util::sync::CancellationToken::new();
    // Every replica heartbeats: durable queues and list/stream sources claim the work of
    // replicas whose heartbeat is gone.
    let heartbeat = tokio::spawn(redis_queue::heartbeat(
        conn.clone(),
        cfg.redis.key(&format!("replica:{consumer}")),
        queue_stop.clone(),
    ));

    // The pause flag is read once before any worker starts, so a paused cluster does not
    // deliver during start-up, then polled.
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
    tokio::spawn(crate::migrate::watch_legacy_subscribers(
        conn.clone(),
        Arc::new(cfg.clone()),
        cfg.migration.legacy_check_interval.0,
        shutdown.token.clone(),
    ));

    // The admin server starts first, so /healthz answers and /readyz says why it is not ready
    // while Redis is still unreachable at start-up.
    let endpoint_states = Arc::new(std::sync::RwLock::new(Vec::new()));
    let sources: Vec<Arc<SourceState>> = cfg
        .sources
        .iter()
        .map(|s| Arc::new(SourceState::new(s.kind, &s.name)))
        .collect();
    let status = Arc::new(Status {
        paused: paused_flag.clone(),
        key_prefix: cfg.redis.key_prefix.clone(),
        dual: opts.dual,
        config_version: AtomicU64::new(1),
        sources: sources.clone(),
        endpoints: endpoint_states.clone(),
        redis: conn.clone(),
        metrics,
    });

    let listener = tokio::net::TcpListener::bind(cfg.admin.listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {}", cfg.admin.listen))?;
    tracing::info!(listen = %cfg.admin.listen, "admin server listening");
    let admin_stop = shutdown.token.clone();
    let admin_status = status.clone();
    let access = admin::Access {
        token: cfg.admin.token.clone(),
        protect_metrics: cfg.admin.protect_metrics,
    };
    let admin_limits = cfg.admin.limits;
    let admin_task = tokio::spawn(async move {
        let app = admin::router(admin_status, access);
        crate::http_server::serve(listener, app, admin_limits, async move {
            admin_stop.cancelled().await
        })
        .await;
    });

    // An older server would fail only where a source or a queue first uses a newer command.
    crate::redis::version::require_supported(&mut conn.clone(), &shutdown.token).await?;

    // Workers before sources, so that nothing ingest queues waits for a consumer.
    let endpoints = EndpointSet::start(
        &cfg,
        EndpointContext {
            key_prefix: cfg.redis.key_prefix.clone(),
            redis_url: cfg.redis.url.clone(),
            dlq: dlq.clone(),
            mode,
            paused: pause_rx,
            shutdown: shutdown.clone(),
            queue_stop: queue_stop.clone(),
            states: endpoint_states,
        },
    )
    .await;
    let mut endpoints = match endpoints {
        Ok(e) => e,
        // SIGTERM while Redis was still unreachable: nothing was received, a clean exit.
        Err(_) if shutdown.token.is_cancelled() => {
            queue_stop.cancel();
            return Ok(());
        }
        Err(e) => return Err(e),
    };

    let (tx, rx) = mpsc::channel(4096);
    let ingest = Ingest {
        settings: IngestSettings {
            key_fields: cfg.delivery.idempotency_key_fields.clone(),
            max_payload_bytes: cfg.security.max_payload_bytes,
            max_json_depth: cfg.security.max_json_depth,
            dedupe_window: cfg.delivery.dedupe_window.0,
            seen_prefix: cfg.redis.key("seen:"),
            durable,
        },
        routes: endpoints.routes(),
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
                cfg.redis.resubscribe_max_delay.0,
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

    // Every series the dashboard and alerts use exists from the first scrape; each
    // endpoint's own are registered when its worker is built (also on reload).
    crate::telemetry::process_series(&cfg);
    dlq.refresh_depth_gauge().await;

    tracing::info!(
        version = crate::VERSION,
        endpoints = cfg.endpoints.len(),
        sources = cfg.sources.len(),
        durability = cfg.delivery.durability.as_str(),
        dual = opts.dual,
        "bridge running"
    );

    // Serve reloads until shutdown.
    let mut reloads =
        crate::config::watch::reload_requests(cfg.file.clone(), shutdown.token.clone());
    let mut current = cfg;
    loop {
        let trigger = tokio::select! {
            t = reloads.recv() => match t { Some(t) => t, None => { shutdown.token.cancelled().await; break } },
            _ = shutdown.token.cancelled() => break,
        };
        match reload(&mut endpoints, &current, &opts.load, trigger).await {
            Ok(new) => {
                current = new;
                let v = status.config_version.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::counter!(crate::telemetry::metric::CONFIG_RELOADS, "result" => "success")
                    .increment(1);
                tracing::info!(
                    config_version = v,
                    trigger = trigger.as_str(),
                    "config reloaded"
                );
            }
            Err(e) => {
                metrics::counter!(crate::telemetry::metric::CONFIG_RELOADS, "result" => "failure")
                    .increment(1);
                tracing::error!(trigger = trigger.as_str(), error = %format!("{e:#}"), "config reload rejected; the running config stays");
            }
        }
    }

    let deadline = current.delivery.shutdown_timeout.0;
    for t in source_tasks {
        let _ = t.await;
    }
    let _ = ingest_task.await;
    endpoints.join_workers().await;
    if shutdown.drain(deadline).await {
        tracing::info!("all in-flight deliveries finished");
    } else {
        tracing::warn!(
            timeout_ms = deadline.as_millis() as u64,
            "shutdown_timeout passed with deliveries still in flight; leaving them"
        );
    }
    endpoints.finish().await;
    queue_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), heartbeat).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// Loads the config again and applies what can change at run time: endpoints (URL,
/// secrets, filters, retry, circuit, concurrency, headers) and the log level. Settings that
/// need a restart are named in a warning and keep their running values.
async fn reload(
    endpoints: &mut EndpointSet,
    current: &Config,
    load: &LoadOptions,
    trigger: crate::config::watch::Trigger,
) -> anyhow::Result<Config> {
    tracing::info!(trigger = trigger.as_str(), "reloading config");
    let new = Config::load(load)?;
    let mut restart = Vec::new();
    let same = |a: &dyn erased::Show, b: &dyn erased::Show| a.show() == b.show();
    if current.redis.url.expose() != new.redis.url.expose() || !same(&current.redis, &new.redis) {
        restart.push("redis");
    }
    if !same(&current.migration, &new.migration) {
        restart.push("migration");
    }
    if !same(&current.sources, &new.sources) {
        restart.push("sources");
    }
    if !same(&current.delivery, &new.delivery) {
        restart.push("delivery");
    }
    if !same(&current.security, &new.security) {
        restart.push("security");
    }
    if !same(&current.dlq, &new.dlq) {
        restart.push("dlq");
    }
    if current.admin.listen != new.admin.listen {
        restart.push("admin.listen");
    }
    let same_token = match (&current.admin.token, &new.admin.token) {
        (Some(a), Some(b)) => a.expose() == b.expose(),
        (a, b) => a.is_none() && b.is_none(),
    };
    if !same_token
        || !same(&current.admin.limits, &new.admin.limits)
        || current.admin.protect_metrics != new.admin.protect_metrics
    {
        restart.push("admin");
    }
    if !same(&current.republish, &new.republish) || !same(&current.fallback, &new.fallback) {
        restart.push("republish/fallback");
    }
    if current.log.format != new.log.format {
        restart.push("log.format");
    }
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "these settings changed but need a restart to apply; running values kept");
    }
    // Keep the running values of restart-only settings: endpoints are built against the
    // security policy that runs, and the next reload compares against what actually runs.
    let level_changed = current.log.level != new.log.level;
    let mut kept = new;
    kept.redis = current.redis.clone();
    kept.sources = current.sources.clone();
    kept.delivery = current.delivery.clone();
    kept.security = current.security.clone();
    kept.dlq = current.dlq.clone();
    kept.admin = current.admin.clone();
    kept.republish = current.republish.clone();
    kept.fallback = current.fallback.clone();
    kept.migration = current.migration.clone();
    kept.log.format = current.log.format;
    // Against the security policy that runs, like the endpoints built below.
    kept.check_endpoint_networks().await?;
    let applied = endpoints.apply(&kept).await?;
    if level_changed {
        match crate::telemetry::set_log_level(&kept.log.level) {
            Ok(()) => tracing::info!(level = %kept.log.level, "log level changed"),
            Err(e) => tracing::warn!(error = %e, "log level not changed"),
        }
    }
    tracing::info!(
        added = ?applied.added,
        changed = ?applied.changed,
        removed = ?applied.removed,
        "endpoints updated"
    );
    Ok(kept)
}

/// Compares config sections by their rendered form (secrets render as `***`, which is fine
/// for the sections compared this way: none of them holds a secret).
mod erased {
    pub trait Show {
        fn show(&self) -> String;
    }
    impl<T: serde::Serialize> Show for T {
        fn show(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
