//! Loading: the figment layers (built-in defaults → TOML file → the seed deployment's
//! variables → `BRIDGE_*` variables → flags) and extraction into the raw shape; errors are
//! told by `error`, the rules checked by `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Serialized};

use super::legacy::{Legacy, legacy_layer};
use super::raw::Word as _;
use super::validate::{check_log_filter, resolve_transform_files, validate};
use super::{Config, ConfigError, LogFormat, RawConfig, error};

/// Inputs to [`Config::load`] that come from the command line.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// `--config` / `BRIDGE_CONFIG`.
    pub file: Option<PathBuf>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `run --admin-listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// `BRIDGE_*` variables that are command-line flags of the binary (`BRIDGE_CONFIG`,
/// `BRIDGE_DUAL`, …), not config keys: the config layer leaves them out (names without the
/// prefix).
pub const ENV_NOT_CONFIG: &[&str] = &["CONFIG", "DUAL", "METRICS_EMF", "METRICS_EMF_INTERVAL"];

impl Config {
    /// Loads from the file, the process environment and the flags in `opts`.
    pub fn load(opts: &LoadOptions) -> Result<Self, ConfigError> {
        Self::load_with_env(opts, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], reading legacy variables through `env` (tests inject it;
    /// `BRIDGE_*` variables are always read from the process environment).
    pub fn load_with_env(
        opts: &LoadOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(level) = &opts.log_level {
            check_log_filter(level).map_err(|e| ConfigError::Flag {
                flag: "--log-level",
                message: e.to_string(),
            })?;
        }
        if let Some(format) = &opts.log_format
            && LogFormat::from_word(format).is_none()
        {
            return Err(ConfigError::Flag {
                flag: "--log-format",
                message: "unknown format; use json or text".into(),
            });
        }
        if let Some(filter) = env("RUST_LOG") {
            check_log_filter(&filter)
                .map_err(|e| ConfigError::invalid("RUST_LOG", e.to_string()))?;
        }
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        let file = opts
            .file
            .as_deref()
            .map(error::ConfigFile::read)
            .transpose()?;
        if let Some(file) = &file {
            fig = fig.merge(file);
        }
        fig = legacy_layer(fig, env)?;
        fig = fig.merge(Env::prefixed("BRIDGE_").ignore(ENV_NOT_CONFIG).split("__"));
        if let Some(url) = &opts.redis_url {
            fig = fig.merge(Serialized::default("redis.url", url));
        }
        if let Some(level) = &opts.log_level {
            fig = fig.merge(Serialized::default("log.level", level));
        }
        if let Some(format) = &opts.log_format {
            fig = fig.merge(Serialized::default("log.format", format));
        }
        if let Some(addr) = &opts.admin_listen {
            fig = fig.merge(Serialized::default("admin.listen", addr.to_string()));
        }
        let mut raw: RawConfig = fig
            .extract()
            .map_err(|e| error::from_figment(e, file.as_ref()))?;
        if let Some(dir) = opts.file.as_deref().and_then(std::path::Path::parent) {
            resolve_transform_files(&mut raw, dir);
        }
        let legacy = Legacy::read(env)?;
        let mut cfg = validate(raw, &legacy, env).map_err(|e| match e {
            ConfigError::Invalid {
                key,
                origin,
                message,
            } if key == "endpoints" && opts.file.is_none() => ConfigError::Invalid {
                key,
                origin,
                message: format!(
                    "{message}; no config file was given: pass one with --config PATH or BRIDGE_CONFIG"
                ),
            },
            e => error::with_origin(e, &fig, file.as_ref()),
        })?;
        cfg.file = opts.file.clone();
        Ok(cfg)
    }
}
