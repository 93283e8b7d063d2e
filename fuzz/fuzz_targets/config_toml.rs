//! Config parsing: arbitrary TOML text extracted into `RawConfig` through figment (the
//! loader's first stage), then, when that succeeds, the whole `Config::load_with_env`
//! validation from a file.
//!
//! Checks: no panic; an error names a key. Inputs that reference files (`file:`, `*_file`)
//! are skipped: they would read whatever the fuzzer names on this machine.

#![no_main]

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use libfuzzer_sys::fuzz_target;
use redis_webhook_bridge::config::{Config, ConfigError, LoadOptions, RawConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("file:") || text.contains("_file") {
        return;
    }
    let fig = Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text));
    if fig.extract::<RawConfig>().is_err() {
        return;
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
        }
        Err(ConfigError::Invalid { key, .. }) => assert!(!key.is_empty()),
        Err(ConfigError::File { .. }) => {}
    }
});
