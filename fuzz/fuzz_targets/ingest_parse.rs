//! `ingest::parse` on arbitrary message bodies; the checks are in
//! `fuzz/checks/ingest_parse.rs` (shared with `tests/fuzz_corpus.rs`, which replays the
//! corpus on stable Rust).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/ingest_parse.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check(data);
});
