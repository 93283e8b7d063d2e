//! The seed deployment's variables: `REDIS_URL` / `REDIS_HOST` / `REDIS_PORT` /
//! `REDIS_AUTH_TOKEN` and `ENABLE_REDIS_FALLBACK` as a figment layer, and the `WEBHOOK_*`
//! endpoint defaults, read with their old spellings so that a deployment configured only
//! by them keeps working.

use figment::Figment;
use figment::providers::Serialized;
use url::Url;

use super::{ConfigError, Dur};

/// The registry's variables, with their old defaults, as read from the environment.
pub(super) struct Legacy {
    pub(super) timeout: Option<Dur>,
    pub(super) max_retries: Option<u32>,
    pub(super) retry_delay: Option<Dur>,
    pub(super) cb_threshold: Option<u32>,
    pub(super) cb_recovery: Option<Dur>,
}

/// `REDIS_URL` / `REDIS_HOST`… and `ENABLE_REDIS_FALLBACK` as a figment layer.
pub(super) fn legacy_layer(
    mut fig: Figment,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Figment, ConfigError> {
    let nonempty = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    if let Some(url) = nonempty("REDIS_URL") {
        fig = fig.merge(Serialized::default("redis.url", url));
    } else if let Some(host) = nonempty("REDIS_HOST") {
        let port = nonempty("REDIS_PORT").unwrap_or_else(|| "6379".into());
        port.parse::<u16>()
            .map_err(|_| ConfigError::invalid("REDIS_PORT", "not a port number (1–65535)"))?;
        let mut url = Url::parse("redis://localhost")
            .map_err(|e| ConfigError::invalid("REDIS_HOST", e.to_string()))?;
        url.set_host(Some(&host))
            .map_err(|e| ConfigError::invalid("REDIS_HOST", format!("not a host name ({e})")))?;
        let _ = url.set_port(port.parse().ok());
        if let Some(token) = nonempty("REDIS_AUTH_TOKEN") {
            let _ = url.set_password(Some(&token));
        }
        fig = fig.merge(Serialized::default("redis.url", url.to_string()));
    }
    if let Some(v) = nonempty("ENABLE_REDIS_FALLBACK") {
        let on = parse_bool(&v).ok_or_else(|| {
            ConfigError::invalid("ENABLE_REDIS_FALLBACK", "not a boolean; use true or false")
        })?;
        fig = fig.merge(Serialized::default("fallback.enabled", on));
    }
    Ok(fig)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl Legacy {
    pub(super) fn read(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |n: &str| env(n).filter(|v| !v.trim().is_empty());
        let dur = |n: &str| -> Result<Option<Dur>, ConfigError> {
            get(n)
                .map(|v| Dur::parse(&v).map_err(|m| ConfigError::invalid(n, m)))
                .transpose()
        };
        let num = |n: &str| -> Result<Option<u32>, ConfigError> {
            get(n)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| ConfigError::invalid(n, "not a whole number"))
                })
                .transpose()
        };
        Ok(Self {
            timeout: dur("WEBHOOK_TIMEOUT")?,
            max_retries: num("WEBHOOK_MAX_RETRIES")?,
            retry_delay: dur("WEBHOOK_RETRY_DELAY")?,
            cb_threshold: num("WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD")?,
            cb_recovery: dur("WEBHOOK_CIRCUIT_BREAKER_RECOVERY_TIME")?,
        })
    }
}
