//! The fuzz targets' corpora, replayed as ordinary tests on stable Rust: every file in
//! `fuzz/corpus/<target>/` (the committed `seed-*` files and whatever a local fuzzing run
//! added) and every crash in `fuzz/artifacts/<target>/` goes through the very checks the
//! target runs (`fuzz/checks/<target>.rs`), so a regression in the signature parser, the
//! ingest parser or the config loader fails `cargo test` without cargo-fuzz or nightly.
//! A crash that was fixed is kept as a `seed-crash-*` file in the corpus.

use std::path::{Path, PathBuf};

use redis_webhook_bridge::delivery::signing::Scheme;

#[path = "../fuzz/checks/config_toml.rs"]
mod config_toml;
#[path = "../fuzz/checks/ingest_parse.rs"]
mod ingest_parse;
#[path = "../fuzz/checks/verify_headers.rs"]
mod verify_headers;

/// The corpus and crash files of `target`, by file name; fails when the corpus has no seed.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("artifacts").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let seeds = files
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .count();
    assert!(
        seeds > 0,
        "fuzz/corpus/{target}/ has no seed-* file: the corpus is part of the repository"
    );
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (name, data)
        })
        .collect()
}

/// The input named `name` among `inputs`; fails when that seed is gone.
fn seed<'a, T>(outcomes: &'a [(String, T)], name: &str) -> &'a T {
    &outcomes
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("the corpus lost its seed {name}"))
        .1
}

#[test]
fn the_verify_headers_corpus_passes_the_targets_checks() {
    let outcomes: Vec<(String, Option<Scheme>)> = inputs("verify_headers")
        .into_iter()
        .map(|(name, data)| {
            eprintln!("replaying fuzz/…/verify_headers/{name}");
            let got = verify_headers::check(&data);
            (name, got)
        })
        .collect();
    // The seeds holding the fixtures' real signatures are accepted, under the right scheme;
    // the broken ones are not.
    for (name, scheme) in [
        ("seed-hokusai-legacy", Scheme::HokusaiLegacy),
        ("seed-hokusai-v2", Scheme::HokusaiV2),
        ("seed-hokusai-v2-rotation", Scheme::HokusaiV2),
        ("seed-standard-webhooks-1", Scheme::StandardWebhooks),
        ("seed-standard-webhooks-2", Scheme::StandardWebhooks),
    ] {
        assert_eq!(*seed(&outcomes, name), Some(scheme), "{name}");
    }
    // `-multi` holds a valid v1 signature next to a truncated `v1,AAAA`: a broken v1 entry
    // rejects the whole header, so that an empty or cut signature never slips through.
    for name in [
        "seed-hokusai-legacy-empty",
        "seed-standard-webhooks-empty-v1",
        "seed-standard-webhooks-multi",
        "seed-no-headers",
    ] {
        assert_eq!(*seed(&outcomes, name), None, "{name} is rejected");
    }
}

#[test]
fn the_ingest_parse_corpus_passes_the_targets_checks() {
    let outcomes: Vec<(String, bool)> = inputs("ingest_parse")
        .into_iter()
        .map(|(name, data)| {
            eprintln!("replaying fuzz/…/ingest_parse/{name}");
            let got = ingest_parse::check(&data);
            (name, got)
        })
        .collect();
    for name in [
        "seed-model-ready",
        "seed-envelope",
        "seed-idempotency-key",
        "seed-message-type",
    ] {
        assert!(*seed(&outcomes, name), "{name} is accepted");
    }
}

#[test]
fn the_config_toml_corpus_passes_the_targets_checks() {
    let outcomes: Vec<(String, config_toml::Outcome)> = inputs("config_toml")
        .into_iter()
        .map(|(name, data)| {
            eprintln!("replaying fuzz/…/config_toml/{name}");
            let got = config_toml::check(&data);
            (name, got)
        })
        .collect();
    for name in ["seed-minimal", "seed-full"] {
        assert_eq!(
            *seed(&outcomes, name),
            config_toml::Outcome::Valid,
            "{name}"
        );
    }
    match seed(&outcomes, "seed-bad-values") {
        config_toml::Outcome::Invalid(key) => assert!(!key.is_empty()),
        other => panic!("seed-bad-values is rejected naming a key, got {other:?}"),
    }
}
