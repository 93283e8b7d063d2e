//! `check-config`: load, validate and print the effective config, secrets as `***`.

use crate::config::{Config, LoadOptions};

/// Prints the effective config; a [`crate::config::ConfigError`] propagates (exit 78),
/// including an endpoint on a private network that `[security]` does not allow.
pub async fn run(opts: &LoadOptions) -> anyhow::Result<i32> {
    let cfg = Config::load(opts)?;
    cfg.check_endpoint_networks().await?;
    print!("{}", cfg.to_redacted_toml());
    eprintln!(
        "config OK: {} endpoint(s), {} source(s)",
        cfg.endpoints.len(),
        cfg.sources.len()
    );
    Ok(crate::exit::OK)
}
