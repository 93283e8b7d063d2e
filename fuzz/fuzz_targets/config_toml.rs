//! Config parsing: arbitrary TOML text through the loader; the checks are in
//! `fuzz/checks/config_toml.rs` (shared with `tests/fuzz_corpus.rs`, which replays the
//! corpus on stable Rust).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/config_toml.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check(data);
});
