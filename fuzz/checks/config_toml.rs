//! The `config_toml` fuzz target's checks: arbitrary TOML text extracted into `RawConfig`
//! through figment (the loader's first stage), then, when that succeeds, the whole
//! `Config::load_with_env` validation from a file. Shared by the target and by
//! `tests/fuzz_corpus.rs`, which replays the corpus on stable Rust.
//!
//! Checks: no panic; an error names a key. Inputs that reference files (`file:`, `*_file`)
//! are skipped: they would read whatever the fuzzer names on this machine.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use redis_webhook_bridge::config::{Config, ConfigError, LoadOptions, RawConfig};

/// What the loader made of one input.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not UTF-8, references a file, or not extractable into `RawConfig`.
    Skipped,
    /// A valid config.
    Valid,
    /// Rejected; the key the error names.
    Invalid(String),
    /// The file could not be read.
    File,
}

/// The target's checks on one input; panics on a violation.
pub fn check(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Skipped;
    };
    if text.contains("file:") || text.contains("_file") {
        return Outcome::Skipped;
    }
    let fig = Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text));
    if fig.extract::<RawConfig>().is_err() {
        return Outcome::Skipped;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let opts = LoadOptions {
        file: Some(path),
        ..Default::default()
    };
    match Config::load_with_env(&opts, &|_| None) {
        Ok(cfg) => {
            assert!(!cfg.endpoints.is_empty());
            // check-config's rendering never fails on a valid config.
            let _ = cfg.to_redacted_toml();
            Outcome::Valid
        }
        Err(ConfigError::Invalid { key, .. }) => {
            assert!(!key.is_empty());
            Outcome::Invalid(key)
        }
        Err(ConfigError::File { .. }) => Outcome::File,
        // The fuzzed text is a file, never a flag: no flag is set above.
        Err(e @ ConfigError::Flag { .. }) => panic!("a config file was blamed on a flag: {e}"),
    }
}
