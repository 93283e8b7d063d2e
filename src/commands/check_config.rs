//! `check-config`: load, validate and print the effective config, secrets as `***`.

use crate::config::{Config, LoadOptions};

/// Prints the effective config; a [`crate::config::ConfigError`] propagates (exit 78).
pub fn run(opts: &LoadOptions) -> anyhow::Result<i32> {
    let cfg = Config::load(opts)?;
    print!("{}", cfg.to_redacted_toml());
    eprintln!(
        "config OK: {} endpoint(s), {} source(s)",
        cfg.endpoints.len(),
        cfg.sources.len()
    );
    Ok(crate::exit::OK)
}
