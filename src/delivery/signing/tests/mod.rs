//! Unit tests of signing and verification: the published vectors, key rotation, the
//! `whsec_` decoding, and every way a request is rejected. Helpers shared by both files
//! are here.

use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::*;
use crate::config::Secret;

mod signing;
mod verification;

const FIXTURES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/signatures.json"
));

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).expect("signatures.json is valid JSON")
}

fn text<'v>(value: &'v Value, key: &str) -> &'v str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("fixture field {key} is a string"))
}

fn secret(s: &str) -> Secret {
    Secret::from_bytes(s)
}

fn sign(
    scheme: Scheme,
    secrets: &[Secret],
    all: bool,
    body: &[u8],
    ts: i64,
    nonce: &str,
    id: &str,
) -> Vec<(&'static str, String)> {
    let signer = Signer::new(scheme, secrets, all).expect("signer builds");
    let mut out = Vec::new();
    signer.sign(body, ts, nonce, id, &mut out);
    out
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            *name,
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    map
}

fn value_of<'p>(pairs: &'p [(&'static str, String)], name: &str) -> &'p str {
    pairs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("header {name} was emitted"))
}

const NOW: i64 = 1_764_342_000;
/// Canonical nonces, as the bridge sends them.
const NONCE_1: &str = "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234";
const NONCE_2: &str = "7c9d1e2f-3a4b-4c5d-8e6f-a0b1c2d3e4f5";
const BODY: &[u8] = br#"{"model_id":"m","event_type":"model_ready"}"#;

/// standard-webhooks headers for `BODY` at `NOW`, id `msg_1`, with the first secret.
fn standard_signed(secrets: &[Secret]) -> Vec<(&'static str, String)> {
    sign(
        Scheme::StandardWebhooks,
        secrets,
        false,
        BODY,
        NOW,
        "",
        "msg_1",
    )
}

fn v2_headers(secrets: &[Secret], body: &[u8], ts: i64) -> HeaderMap {
    header_map(&sign(
        Scheme::HokusaiV2,
        secrets,
        false,
        body,
        ts,
        NONCE_1,
        "unused",
    ))
}

fn standard_headers(signature: &str) -> HeaderMap {
    header_map(&[
        (HEADER_WEBHOOK_ID, "msg_1".to_owned()),
        (HEADER_WEBHOOK_TIMESTAMP, NOW.to_string()),
        (HEADER_WEBHOOK_SIGNATURE, signature.to_owned()),
    ])
}
