//! Properties of signing and verification, over random secrets, bodies, timestamps, nonces
//! and ids, for all three schemes:
//!
//! - what the bridge signs, `verify` accepts (with the scheme given or detected, with the
//!   signing secret anywhere in a rotation list, with one or all secrets signing);
//! - any single-byte change to the body, the timestamp or the signature is rejected;
//! - a timestamp beyond the tolerance is rejected in both directions.

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use redis_webhook_bridge::config::Secret;
use redis_webhook_bridge::delivery::signing::{
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Scheme,
    Signer, VerifyError, verify,
};

const TOLERANCE: u64 = 300;

fn scheme() -> impl Strategy<Value = Scheme> {
    prop_oneof![
        Just(Scheme::HokusaiV2),
        Just(Scheme::HokusaiLegacy),
        Just(Scheme::StandardWebhooks),
    ]
}

/// Raw secret bytes, or (for any scheme) a `whsec_` + base64 secret.
fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 1..64)
            .prop_filter("raw secrets do not look like whsec_", |b| !b.starts_with(b"whsec_")),
        1 => prop::collection::vec(any::<u8>(), 1..48).prop_map(|k| {
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(k)).into_bytes()
        }),
    ]
}

/// A signing scenario.
#[derive(Debug, Clone)]
struct Case {
    scheme: Scheme,
    secrets: Vec<Vec<u8>>,
    sign_with_all: bool,
    body: Vec<u8>,
    timestamp: i64,
    /// now − timestamp, within the tolerance.
    skew: i64,
    nonce: String,
    id: String,
}

fn case() -> impl Strategy<Value = Case> {
    (
        scheme(),
        prop::collection::vec(secret(), 1..4),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..2048),
        0i64..100_000_000_000,
        -(TOLERANCE as i64)..=(TOLERANCE as i64),
        // Verifiers accept only a canonical UUID as a hokusai-v2 nonce.
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[A-Za-z0-9_.:-]{1,60}",
    )
        .prop_map(
            |(scheme, secrets, sign_with_all, body, timestamp, skew, nonce, id)| Case {
                scheme,
                secrets,
                sign_with_all,
                body,
                timestamp,
                skew,
                nonce,
                id,
            },
        )
}

fn to_secrets(raw: &[Vec<u8>]) -> Vec<Secret> {
    raw.iter().map(|s| Secret::from_bytes(s.clone())).collect()
}

fn sign(c: &Case) -> Vec<(&'static str, String)> {
    let signer = Signer::new(c.scheme, &to_secrets(&c.secrets), c.sign_with_all)
        .expect("random secrets make a signer");
    let mut out = Vec::new();
    signer.sign(&c.body, c.timestamp, &c.nonce, &c.id, &mut out);
    out
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("the signer writes valid header values"),
        );
    }
    map
}

fn header_value(pairs: &[(&'static str, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
}

fn replace(pairs: &mut [(&'static str, String)], name: &str, value: String) {
    for (n, v) in pairs.iter_mut() {
        if *n == name {
            *v = value.clone();
        }
    }
}

/// Verifies with the signing scheme given explicitly and detected from the headers; both
/// must agree.
fn check(
    c: &Case,
    pairs: &[(&'static str, String)],
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<usize, VerifyError> {
    let headers = header_map(pairs);
    let given = verify(Some(c.scheme), &headers, body, secrets, now, TOLERANCE);
    let detected = verify(None, &headers, body, secrets, now, TOLERANCE);
    assert_eq!(
        given.is_ok(),
        detected.is_ok(),
        "explicit {given:?} vs detected {detected:?}"
    );
    given.map(|v| v.secret_index)
}

/// A different byte for position `at` of `text` that keeps the header value valid
/// (visible ASCII), picked by `pick`.
fn other_visible_byte(current: u8, pick: u8) -> u8 {
    let candidate = 0x21 + (pick % 94);
    if candidate == current {
        if current == 0x7e { 0x21 } else { current + 1 }
    } else {
        candidate
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn what_the_bridge_signs_verifies(c in case()) {
        let pairs = sign(&c);
        let now = c.timestamp + c.skew;
        let index = check(&c, &pairs, &c.body, &to_secrets(&c.secrets), now)
            .expect("a fresh signature verifies");
        prop_assert_eq!(index, 0, "the first secret signs");
        // Every listed secret that signed is accepted on its own.
        let signers = if c.sign_with_all { c.secrets.len() } else { 1 };
        for s in &c.secrets[..signers] {
            check(&c, &pairs, &c.body, &to_secrets(std::slice::from_ref(s)), now)
                .expect("each signing secret verifies alone");
        }
    }

    #[test]
    fn the_signing_secret_is_found_anywhere_in_a_rotation_list(
        c in case(),
        others in prop::collection::vec(secret(), 0..4),
        position in any::<prop::sample::Index>(),
    ) {
        let c = Case { sign_with_all: false, ..c };
        let pairs = sign(&c);
        let mut list: Vec<Vec<u8>> = others
            .into_iter()
            .filter(|o| o != &c.secrets[0])
            .collect();
        let at = position.index(list.len() + 1);
        list.insert(at, c.secrets[0].clone());
        let index = check(&c, &pairs, &c.body, &to_secrets(&list), c.timestamp + c.skew)
            .expect("the signing secret is in the list");
        prop_assert_eq!(index, at);
    }

    #[test]
    fn a_secret_that_did_not_sign_is_rejected(c in case(), wrong in secret()) {
        prop_assume!(!c.secrets.contains(&wrong));
        let pairs = sign(&c);
        let err = check(&c, &pairs, &c.body, &to_secrets(&[wrong]), c.timestamp + c.skew)
            .expect_err("another secret never verifies");
        prop_assert_eq!(err, VerifyError::NoMatch);
    }

    #[test]
    fn any_single_byte_change_to_the_body_is_rejected(
        c in case(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
        kind in 0u8..3,
    ) {
        let pairs = sign(&c);
        let mut body = c.body.clone();
        match kind {
            // Change one byte.
            0 if !body.is_empty() => {
                let i = at.index(body.len());
                body[i] = body[i].wrapping_add(delta);
            }
            // Drop one byte.
            1 if !body.is_empty() => {
                body.remove(at.index(body.len()));
            }
            // Insert one byte.
            _ => body.insert(at.index(body.len() + 1), delta),
        }
        prop_assert!(check(&c, &pairs, &body, &to_secrets(&c.secrets), c.timestamp + c.skew).is_err());
    }

    #[test]
    fn any_single_byte_change_to_the_timestamp_is_rejected(
        c in case(),
        at in any::<prop::sample::Index>(),
        pick in any::<u8>(),
    ) {
        prop_assume!(c.scheme != Scheme::HokusaiLegacy); // signs no timestamp
        let name = if c.scheme == Scheme::StandardWebhooks {
            HEADER_WEBHOOK_TIMESTAMP
        } else {
            HEADER_TIMESTAMP
        };
        let mut pairs = sign(&c);
        let mut ts = header_value(&pairs, name).expect("a timestamp header").into_bytes();
        let i = at.index(ts.len());
        ts[i] = other_visible_byte(ts[i], pick);
        replace(&mut pairs, name, String::from_utf8(ts).unwrap());
        // Whatever the new text means, the old signature does not cover it.
        prop_assert!(check(&c, &pairs, &c.body, &to_secrets(&c.secrets), c.timestamp + c.skew).is_err());
    }

    #[test]
    fn any_single_byte_change_to_the_signature_is_rejected(
        c in case(),
        at in any::<prop::sample::Index>(),
        pick in any::<u8>(),
    ) {
        let name = if c.scheme == Scheme::StandardWebhooks {
            HEADER_WEBHOOK_SIGNATURE
        } else {
            HEADER_SIGNATURE
        };
        // One signing secret: with several, a change in one entry leaves the others valid,
        // which is the point of rotation.
        let c = Case { sign_with_all: false, ..c };
        let mut pairs = sign(&c);
        let mut sig = header_value(&pairs, name).expect("a signature header").into_bytes();
        let i = at.index(sig.len());
        let new = other_visible_byte(sig[i], pick);
        // Hex digits are case-insensitive to the decoder: `A` and `a` are the same digest
        // byte, not a different signature.
        prop_assume!(!(sig[i].is_ascii_hexdigit() && new.eq_ignore_ascii_case(&sig[i])));
        sig[i] = new;
        replace(&mut pairs, name, String::from_utf8(sig).unwrap());
        prop_assert!(check(&c, &pairs, &c.body, &to_secrets(&c.secrets), c.timestamp + c.skew).is_err());
    }

    #[test]
    fn a_timestamp_beyond_the_tolerance_is_rejected_both_ways(
        c in case(),
        beyond in (TOLERANCE as i64 + 1)..1_000_000,
        future in any::<bool>(),
    ) {
        prop_assume!(c.scheme != Scheme::HokusaiLegacy);
        let pairs = sign(&c);
        let now = if future { c.timestamp - beyond } else { c.timestamp + beyond };
        let err = check(&c, &pairs, &c.body, &to_secrets(&c.secrets), now)
            .expect_err("stale or future timestamps are rejected");
        let expected_age = now - c.timestamp;
        prop_assert_eq!(err, VerifyError::StaleTimestamp { age_secs: expected_age });
    }
}
