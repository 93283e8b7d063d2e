//! `ingest::parse` on arbitrary message bodies, with and without envelope unwrapping.
//!
//! Checks: no panic; without unwrapping the body is forwarded byte for byte; with unwrapping
//! the forwarded body is a slice of the input that is itself valid JSON; the size limit
//! holds. (An empty `idempotency_key`, `event_type` or `message_type` field is taken as it
//! is, per the contract; so are values that are not valid header text — see docs/SECURITY.md.)

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use redis_webhook_bridge::ingest::{IngestError, parse};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let fields: Vec<String> = ["model_id", "token_symbol", "mlflow_run_id", "model_version"]
        .map(String::from)
        .to_vec();
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
                }
            }
            Err(IngestError::TooLarge { size, max: m }) => {
                assert_eq!(size, data.len());
                assert!(size > m);
            }
            Err(_) => {}
        }
    }
});

fn serde_json_valid(b: &[u8]) -> bool {
    // Re-parsed with the same rules the bridge used; a payload it cut out must parse alone.
    redis_webhook_bridge::ingest::parse(&Bytes::copy_from_slice(b), "c", false, &[], usize::MAX)
        .is_ok()
}
