//! `check-config`: load, validate and print the effective config, secrets as `***`.

use crate::config::{Config, LoadOptions};

/// Prints the effective config; a [`crate::config::ConfigError`] propagates (exit 78),
/// including an endpoint on a private network that `[security]` does not allow. Endpoint
/// URLs are shown redacted unless `show_urls`.
pub async fn run(opts: &LoadOptions, show_urls: bool) -> anyhow::Result<i32> {
    let cfg = Config::load(opts)?;
    cfg.check_endpoint_networks().await?;
    if show_urls {
        print!("{}", with_full_urls(&cfg)?);
    } else {
        print!("{}", cfg.to_redacted_toml());
    }
    for warning in cfg.warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "config OK: {} endpoint(s), {} source(s)",
        cfg.endpoints.len(),
        cfg.sources.len()
    );
    Ok(crate::exit::OK)
}

/// The effective config as TOML with each endpoint's full URL (secrets still `***`).
fn with_full_urls(cfg: &Config) -> anyhow::Result<String> {
    let mut table = toml::Table::try_from(cfg)?;
    if let Some(toml::Value::Array(endpoints)) = table.get_mut("endpoints") {
        for (shown, ep) in endpoints.iter_mut().zip(&cfg.endpoints) {
            if let Some(t) = shown.as_table_mut() {
                t.insert("url".into(), ep.url.url().as_str().into());
            }
        }
    }
    Ok(toml::to_string_pretty(&table)?)
}
