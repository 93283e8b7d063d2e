//! The `run` command, in four steps of its own file each: `start` wires sources → ingest →
//! per-endpoint queues → delivery workers and serves the admin endpoints, `serve` applies
//! config reloads until SIGTERM/SIGINT, `reload` is one such reload, and `stop` shuts down
//! in order. The live endpoint set that a reload updates is [`EndpointSet`].

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

mod endpoints;
mod reload;
mod serve;
mod start;
mod stop;

pub use endpoints::{Applied, EndpointRuntime, EndpointSet, QueueMode, build_endpoint};

use crate::config::{Config, LoadOptions};
use crate::shutdown::Shutdown;

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
    start::warn_about_config(&cfg, &opts);
    let Some(mut running) = start::start(&cfg, &opts, metrics, &shutdown).await? else {
        // SIGTERM while Redis was still unreachable: nothing was received, a clean exit.
        return Ok(());
    };
    let current = serve::serve_reloads(cfg, &opts.load, &mut running, &shutdown).await;
    stop::stop(running, current.delivery.shutdown_timeout.0, &shutdown).await;
    Ok(())
}
