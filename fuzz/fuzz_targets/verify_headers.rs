//! `signing::verify` on arbitrary headers and body; the checks are in
//! `fuzz/checks/verify_headers.rs` (shared with `tests/fuzz_corpus.rs`, which replays the
//! corpus on stable Rust).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/verify_headers.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check(data);
});
