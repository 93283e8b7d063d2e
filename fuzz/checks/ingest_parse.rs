//! The `ingest_parse` fuzz target's checks: `ingest::parse` on arbitrary message bodies,
//! with and without envelope unwrapping. Shared by the target and by `tests/fuzz_corpus.rs`,
//! which replays the corpus on stable Rust.
//!
//! Checks: no panic; without unwrapping the body is forwarded byte for byte; with unwrapping
//! the forwarded body is a slice of the input that is itself valid JSON; the size limit
//! holds. (An empty `idempotency_key`, `event_type` or `message_type` field is taken as it
//! is, per the contract; so are values that are not valid header text — see docs/SECURITY.md.)

use bytes::Bytes;
use redis_webhook_bridge::ingest::{IngestError, parse};

/// The target's checks on one input; panics on a violation. Returns whether the body was
/// accepted without envelope unwrapping under the default 1 MiB limit (for the corpus
/// replay's expectations).
pub fn check(data: &[u8]) -> bool {
    let body = Bytes::copy_from_slice(data);
    let fields: Vec<String> = ["model_id", "token_symbol", "mlflow_run_id", "model_version"]
        .map(String::from)
        .to_vec();
    let mut accepted = false;
    for (unwrap, max) in [(false, 1 << 20), (true, 1 << 20), (false, 64), (true, 64)] {
        match parse(
            &body,
            "hokusai:model_ready_queue:pubsub",
            unwrap,
            &fields,
            max,
        ) {
            Ok(p) => {
                assert!(data.len() <= max);
                if unwrap {
                    let start = p.body.as_ptr() as usize - body.as_ptr() as usize;
                    assert!(
                        start + p.body.len() <= body.len(),
                        "payload is a slice of the input"
                    );
                    assert!(serde_json_valid(&p.body), "payload is JSON");
                } else {
                    assert_eq!(&p.body[..], data, "forwarded as published");
                    if max == 1 << 20 {
                        accepted = true;
                    }
                }
            }
            Err(IngestError::TooLarge { size, max: m }) => {
                assert_eq!(size, data.len());
                assert!(size > m);
            }
            Err(_) => {}
        }
    }
    accepted
}

fn serde_json_valid(b: &[u8]) -> bool {
    // Re-parsed with the same rules the bridge used; a payload it cut out must parse alone.
    parse(&Bytes::copy_from_slice(b), "c", false, &[], usize::MAX).is_ok()
}
