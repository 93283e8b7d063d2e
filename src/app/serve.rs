//! Serving: once everything has started, `run` waits for reload requests (SIGHUP, a change
//! of the config file) until shutdown and applies each one; a rejected reload leaves the
//! running config as it is.

use std::sync::atomic::Ordering;

use super::reload::reload;
use super::start::Running;
use crate::config::{Config, LoadOptions};
use crate::shutdown::Shutdown;
use crate::telemetry::metric;

/// Applies reloads until shutdown; returns the config that runs at the end.
pub(super) async fn serve_reloads(
    cfg: Config,
    load: &LoadOptions,
    running: &mut Running,
    shutdown: &Shutdown,
) -> Config {
    let mut reloads =
        crate::config::watch::reload_requests(cfg.file.clone(), shutdown.token.clone());
    let mut current = cfg;
    loop {
        let trigger = tokio::select! {
            t = reloads.recv() => match t { Some(t) => t, None => { shutdown.token.cancelled().await; break } },
            _ = shutdown.token.cancelled() => break,
        };
        match reload(&mut running.endpoints, &current, load, trigger).await {
            Ok(new) => {
                running.console.set_config(&new);
                current = new;
                let v = running
                    .status
                    .config_version
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                metrics::counter!(metric::CONFIG_RELOADS, "result" => "success").increment(1);
                tracing::info!(
                    config_version = v,
                    trigger = trigger.as_str(),
                    "config reloaded"
                );
            }
            Err(e) => {
                metrics::counter!(metric::CONFIG_RELOADS, "result" => "failure").increment(1);
                tracing::error!(trigger = trigger.as_str(), error = %format!("{e:#}"), "config reload rejected; the running config stays");
            }
        }
    }
    current
}
