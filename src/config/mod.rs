//! Configuration: figment layering, the registry's legacy variables, secret references,
//! validation.
//!
//! Layers, later wins: built-in defaults → TOML file → legacy variables (`WEBHOOK_*`,
//! `REDIS_*`, `ENABLE_REDIS_FALLBACK`) → `BRIDGE_*` variables (`__` nests) → command-line
//! flags. `.env` is loaded into the environment by `main` before this runs. The result,
//! [`Config`], holds checked values only: URLs parsed, secrets resolved, durations typed.
//!
//! - `load`: the layers and [`Config::load`]; `legacy`: the seed deployment's variables;
//! - `raw`: the file's shape as figment reads it; `validate`: raw → checked, every rule;
//! - `model`: the checked types; `error`: [`ConfigError`] and how every error is told;
//! - `duration`, `secret`, `scheme`, `tls`, `redact`: value types and how they are shown;
//! - `watch`: reload triggers.

mod duration;
mod error;
mod legacy;
mod load;
mod model;
mod raw;
mod redact;
mod scheme;
pub mod secret;
mod tls;
mod validate;
pub mod watch;

pub use duration::{Dur, DurError};
pub use error::ConfigError;
pub use load::{ENV_NOT_CONFIG, LoadOptions};
pub use model::*;
pub use raw::RawConfig;
pub use redact::{redact_endpoint_url, redact_url};
pub use scheme::{Scheme, SigningError, SigningKey};
pub use secret::{Secret, SecretError};
pub use tls::{TlsKeys, TlsMaterial};
pub use validate::{
    DEFAULT_CHANNEL, EndpointUrlError, LogFilterError, check_log_filter, validate_endpoint_url,
};
