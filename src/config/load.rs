//! Loading: the figment layers (built-in defaults → TOML file → the seed deployment's
//! variables → `BRIDGE_*` variables → flags), extraction into the raw shape, and where an
//! error's value came from.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Serialized};

use super::legacy::{Legacy, legacy_layer};
use super::raw::Word as _;
use super::validate::{check_log_filter, validate};
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
            check_log_filter(level).map_err(|message| ConfigError::Flag {
                flag: "--log-level",
                message,
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
            check_log_filter(&filter).map_err(|m| ConfigError::invalid("RUST_LOG", m))?;
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
        let raw: RawConfig = fig
            .extract()
            .map_err(|e| error::from_figment(e, file.as_ref()))?;
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
            e => with_origin(e, &fig),
        })?;
        cfg.file = opts.file.clone();
        Ok(cfg)
    }
}

/// Adds where the value of an error's key came from (` (in file x.toml)`), for errors
/// found after extraction; keys as `error::display_key` writes them (`endpoints[0].url`).
fn with_origin(e: ConfigError, fig: &Figment) -> ConfigError {
    let ConfigError::Invalid {
        key,
        origin,
        message,
    } = e
    else {
        return e;
    };
    let mut parts = key.split(['.', '[']).map(|p| p.trim_end_matches(']'));
    let mut value = parts.next().and_then(|first| fig.find_value(first).ok());
    for part in parts {
        value = value.and_then(|v| match v {
            figment::value::Value::Dict(_, mut d) => d.remove(part),
            figment::value::Value::Array(_, mut a) => part
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .map(|i| a.swap_remove(i)),
            _ => None,
        });
    }
    let file = value
        .and_then(|v| fig.get_metadata(v.tag()))
        .and_then(|md| match &md.source {
            Some(figment::Source::File(p)) => Some(p.clone()),
            _ => None,
        });
    let origin = match file {
        Some(p) if origin.is_empty() => format!(" (in file {})", p.display()),
        _ => origin,
    };
    ConfigError::Invalid {
        key,
        origin,
        message,
    }
}
