//! The seed deployment's variables: `REDIS_URL` / `REDIS_HOST` / `REDIS_PORT` /
//! `REDIS_AUTH_TOKEN` and `ENABLE_REDIS_FALLBACK` as a figment layer, and the `WEBHOOK_*`
//! endpoint defaults, read with their old spellings so that a deployment configured only
//! by them keeps working.

use figment::Figment;
use figment::providers::Serialized;
use url::Url;

use super::raw::RawEndpoint;
use super::{ConfigError, Dur, Scheme, Secret};

/// The registry's `WEBHOOK_*` delivery settings, as read from the environment: defaults of
/// every endpoint that does not set the key itself.
#[derive(Debug, Default)]
pub(super) struct Legacy {
    /// `WEBHOOK_TIMEOUT`.
    pub(super) timeout: Option<Dur>,
    /// `WEBHOOK_MAX_RETRIES`.
    pub(super) max_retries: Option<u32>,
    /// `WEBHOOK_RETRY_DELAY`.
    pub(super) retry_delay: Option<Dur>,
    /// `WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD`.
    pub(super) cb_threshold: Option<u32>,
    /// `WEBHOOK_CIRCUIT_BREAKER_RECOVERY_TIME`.
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

/// The endpoint `WEBHOOK_URL` and `WEBHOOK_SECRET` define, for a config that defines none.
pub(super) fn default_endpoint(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RawEndpoint>, ConfigError> {
    let Some(url) = env("WEBHOOK_URL").filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let secret = env("WEBHOOK_SECRET")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                "WEBHOOK_SECRET",
                "WEBHOOK_URL is set but WEBHOOK_SECRET is not; every endpoint needs a signing secret",
            )
        })?;
    // The registry's consumers verify what its original publisher sent: an HMAC of the body
    // alone. The endpoint made from its variables keeps that scheme; define the endpoint in
    // the file to use hokusai-v2.
    Ok(Some(RawEndpoint {
        name: "default".into(),
        url,
        secrets: vec![Secret::from_bytes(secret)],
        signature: Some(Scheme::HokusaiLegacy),
        ..Default::default()
    }))
}

/// The registry's boolean spellings.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl Legacy {
    /// Reads the variables; a value that is not a duration or a whole number is an error
    /// naming the variable.
    pub(super) fn read(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |n: &str| env(n).filter(|v| !v.trim().is_empty());
        let dur = |n: &str| -> Result<Option<Dur>, ConfigError> {
            get(n)
                .map(|v| Dur::parse(&v).map_err(|e| ConfigError::invalid(n, e.to_string())))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn booleans_are_read_in_the_registry_spellings() {
        for on in ["1", "true", "YES", " on "] {
            assert_eq!(parse_bool(on), Some(true), "{on}");
        }
        for off in ["0", "False", "no", "off"] {
            assert_eq!(parse_bool(off), Some(false), "{off}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn webhook_variables_are_read_and_blank_ones_ignored() {
        let env = env_of(&[
            ("WEBHOOK_TIMEOUT", "3s"),
            ("WEBHOOK_MAX_RETRIES", " 2 "),
            ("WEBHOOK_RETRY_DELAY", " "),
        ]);
        let legacy = Legacy::read(&env).unwrap();
        assert_eq!(legacy.timeout, Some(Dur::secs(3)));
        assert_eq!(legacy.max_retries, Some(2));
        assert_eq!(legacy.retry_delay, None);
    }

    #[test]
    fn a_bad_webhook_variable_is_an_error_naming_it() {
        let env = env_of(&[("WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "many")]);
        let e = Legacy::read(&env).unwrap_err().to_string();
        assert!(
            e.contains("WEBHOOK_CIRCUIT_BREAKER_FAILURE_THRESHOLD") && !e.contains("many"),
            "{e}"
        );
    }

    #[test]
    fn webhook_url_and_secret_define_a_hokusai_legacy_endpoint() {
        let env = env_of(&[
            ("WEBHOOK_URL", "https://example.com/h"),
            ("WEBHOOK_SECRET", "s"),
        ]);
        let ep = default_endpoint(&env).unwrap().unwrap();
        assert_eq!(
            (ep.name.as_str(), ep.url.as_str()),
            ("default", "https://example.com/h")
        );
        assert_eq!(ep.signature, Some(Scheme::HokusaiLegacy));
        assert_eq!(
            default_endpoint(&env_of(&[])).unwrap().map(|e| e.name),
            None
        );
    }

    #[test]
    fn webhook_url_without_a_secret_is_an_error_naming_webhook_secret() {
        let env = env_of(&[("WEBHOOK_URL", "https://example.com/h")]);
        let e = default_endpoint(&env).unwrap_err().to_string();
        assert!(e.contains("`WEBHOOK_SECRET`"), "{e}");
    }
}
