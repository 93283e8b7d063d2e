//! Reloading the config while `run` runs: what can change at run time (endpoints — URL,
//! secrets, filters, retry, circuit, concurrency, headers — and the log level) is applied;
//! settings that need a restart are named in a warning and keep their running values.

use super::endpoints::EndpointSet;
use crate::config::watch::Trigger;
use crate::config::{Config, LoadOptions};

/// Loads the config again and applies it to `endpoints`; returns the config that now runs
/// (the new one, with the running values of every restart-only setting). Fails, changing
/// nothing, when the new config does not load or one of its endpoints cannot be built.
pub(super) async fn reload(
    endpoints: &mut EndpointSet,
    current: &Config,
    load: &LoadOptions,
    trigger: Trigger,
) -> anyhow::Result<Config> {
    tracing::info!(trigger = trigger.as_str(), "reloading config");
    let new = Config::load(load)?;
    let restart = needs_restart(current, &new);
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "these settings changed but need a restart to apply; running values kept");
    }
    let level_changed = current.log.level != new.log.level;
    let kept = keep_running_values(current, new);
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

/// The settings that differ between `current` and `new` but apply only at start, in the
/// order the warning names them.
fn needs_restart(current: &Config, new: &Config) -> Vec<&'static str> {
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
    restart
}

/// `new` with the running values of the restart-only settings: endpoints are built against
/// the security policy that runs, and the next reload compares against what actually runs.
fn keep_running_values(current: &Config, new: Config) -> Config {
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
    kept
}

/// Compares config sections by their rendered form (secrets render as `***`, which is fine
/// for the sections compared this way: none of them holds a secret).
mod erased {
    /// A value rendered as JSON for comparison.
    pub trait Show {
        /// The JSON text (empty if it cannot be rendered).
        fn show(&self) -> String;
    }
    impl<T: serde::Serialize> Show for T {
        fn show(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
