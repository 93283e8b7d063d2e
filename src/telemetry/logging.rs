//! Logging: the subscriber (json or text on stderr, with the OTLP layer when export is on)
//! and the level a config reload may change.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::otel;
use crate::config::{LogConfig, LogFormat};

/// Why a reload's `log.level` was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// `RUST_LOG` chose the filter at start and keeps winning.
    #[error("RUST_LOG is set and overrides log.level")]
    OverriddenByRustLog,
    /// The level is not a valid filter directive.
    #[error("{0}")]
    Invalid(#[from] tracing_subscriber::filter::ParseError),
    /// The subscriber refused the new filter.
    #[error("{0}")]
    Reload(#[from] tracing_subscriber::reload::Error),
    /// [`init_logging`] has not run in this process.
    #[error("logging is not initialised")]
    NotInitialised,
}

type FilterHandle = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Lets a config reload change the log level.
static FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Installs the log subscriber. `RUST_LOG`, when set, wins over `log.level`. Logs go to
/// stderr so that stdout stays free for command output.
pub fn init_logging(cfg: &LogConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel::layer());
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second init (tests, reload) keeps the first subscriber.
    let _ = result;
}

/// Applies a new `log.level` (a reload); `RUST_LOG`, when set, keeps winning.
pub fn set_log_level(level: &str) -> Result<(), LogLevelError> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err(LogLevelError::OverriddenByRustLog);
    }
    let filter = EnvFilter::try_new(level)?;
    match FILTER.get() {
        Some(h) => Ok(h.reload(filter)?),
        None => Err(LogLevelError::NotInitialised),
    }
}
