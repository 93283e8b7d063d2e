//! The `verify_headers` fuzz target's checks: `signing::verify` on arbitrary headers and body.
//! Shared by the target and by `tests/fuzz_corpus.rs`, which replays the corpus on stable Rust.
//!
//! Input: header lines `name: value` separated by `\n`, an empty line, then the body (all
//! bytes, not necessarily UTF-8). The secrets are the fixture secrets, so seeds holding real
//! signatures reach the matching path. Checks: no panic, under every scheme choice (given
//! or detected) and with the timestamp check on or off; an accepted request names a secret
//! that exists, and detecting the scheme never accepts what the named scheme rejects.

use http::{HeaderMap, HeaderName, HeaderValue};
use redis_webhook_bridge::config::Secret;
use redis_webhook_bridge::delivery::signing::{Scheme, verify};

/// The fixture's timestamp (tests/fixtures/signatures.json).
const NOW: i64 = 1_764_342_000;

fn split(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &data[data.len()..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let mut value = &line[colon + 1..];
        if value.first() == Some(&b' ') {
            value = &value[1..];
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    (headers, body)
}

/// The target's checks on one input; panics on a violation. Returns the scheme that
/// detection accepted with the timestamp check off, if any (for the corpus replay's
/// expectations).
pub fn check(data: &[u8]) -> Option<Scheme> {
    let secrets = [
        Secret::from_bytes("test-secret-0123456789abcdef"),
        Secret::from_bytes("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        Secret::from_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ];
    let (headers, body) = split(data);
    let mut accepted = None;
    for tolerance in [0, 300] {
        let detected = verify(None, &headers, body, &secrets, NOW, tolerance);
        if tolerance == 0 {
            accepted = detected.as_ref().ok().map(|v| v.scheme);
        }
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let given = verify(Some(scheme), &headers, body, &secrets, NOW, tolerance);
            if let Ok(v) = &given {
                assert!(v.secret_index < secrets.len());
                assert_eq!(v.scheme, scheme);
            }
            if let Ok(d) = &detected
                && d.scheme == scheme
            {
                assert!(
                    given.is_ok(),
                    "detected {d:?} but {scheme:?} says {given:?}"
                );
            }
        }
    }
    accepted
}
