//! Webhook signatures: the three schemes, signing and verification.
//!
//! - `hokusai-v2`: `X-Hokusai-Timestamp`, `X-Hokusai-Nonce` and
//!   `X-Hokusai-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<nonce>." + body)>`.
//! - `hokusai-legacy`: `X-Hokusai-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, what the
//!   registry's original Python publisher sent (no timestamp, so no replay protection).
//! - `standard-webhooks`: `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>." + body)>`, where a `whsec_`
//!   secret is base64-decoded after the prefix (standardwebhooks.com).
//!
//! [`Signer`] is built once per endpoint and signs on the delivery hot path without key setup
//! per message; [`verify`] is what `verify`, `receive` and library users call.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::config::Secret;
pub use crate::config::{Scheme, SigningError};

/// `X-Hokusai-Signature`: `sha256=<hex>` (comma-separated when signing with several secrets).
pub const HEADER_SIGNATURE: &str = "x-hokusai-signature";
/// `X-Hokusai-Timestamp`: unix seconds (hokusai-v2).
pub const HEADER_TIMESTAMP: &str = "x-hokusai-timestamp";
/// `X-Hokusai-Nonce`: a fresh uuid4 per attempt (hokusai-v2).
pub const HEADER_NONCE: &str = "x-hokusai-nonce";
/// `X-Hokusai-Idempotency-Key`: stable for a message across retries, replicas and paths.
pub const HEADER_IDEMPOTENCY_KEY: &str = "x-hokusai-idempotency-key";
/// `X-Hokusai-Event`: the event type.
pub const HEADER_EVENT: &str = "x-hokusai-event";
/// `X-Hokusai-Delivery-Attempt`: 1 for the first try, then 2, 3, …
pub const HEADER_ATTEMPT: &str = "x-hokusai-delivery-attempt";
/// `webhook-id` (standard-webhooks): the idempotency key.
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// `webhook-timestamp` (standard-webhooks): unix seconds.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `webhook-signature` (standard-webhooks): `v1,<base64>` (space-separated when several).
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// Prefix of one hokusai signature entry.
const HOKUSAI_PREFIX: &str = "sha256=";
/// Version tag of one standard-webhooks signature entry.
const STANDARD_VERSION: &str = "v1";
/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Lowercase hex digits, for encoding without an intermediate allocation.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

type HmacSha256 = Hmac<Sha256>;

/// The config / CLI name of a scheme (`hokusai-v2`, `hokusai-legacy`, `standard-webhooks`).
pub fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::HokusaiV2 => "hokusai-v2",
        Scheme::HokusaiLegacy => "hokusai-legacy",
        Scheme::StandardWebhooks => "standard-webhooks",
    }
}

/// The HMAC key for `secret` under `scheme`: for standard-webhooks a `whsec_` secret is
/// base64-decoded after the prefix; everything else uses the secret's bytes as they are.
fn keyed_mac(scheme: Scheme, secret: &Secret, index: usize) -> Result<HmacSha256, SigningError> {
    let key = scheme.signing_key(secret, index)?;
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(&key).map_err(|_| SigningError::EmptySecret { index })
}

/// Signs requests for one endpoint. Built once (and again on config reload); the HMAC key
/// state is precomputed, so each signature is a clone of it plus the message.
#[derive(Clone)]
pub struct Signer {
    scheme: Scheme,
    /// One keyed MAC per signing secret: only the first secret unless `sign_with_all_secrets`.
    keys: Vec<HmacSha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .field("signing_secrets", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Decodes the keys once. For standard-webhooks a secret starting with `whsec_` is
    /// base64-decoded after the prefix (an error if that fails); any other secret, and every
    /// hokusai secret, is used as raw bytes. Only the first secret signs unless
    /// `sign_with_all_secrets`; all are still checked so a bad one fails at load, not later.
    pub fn new(
        scheme: Scheme,
        secrets: &[Secret],
        sign_with_all_secrets: bool,
    ) -> Result<Self, SigningError> {
        if secrets.is_empty() {
            return Err(SigningError::NoSecret);
        }
        let mut keys = Vec::with_capacity(if sign_with_all_secrets {
            secrets.len()
        } else {
            1
        });
        for (index, secret) in secrets.iter().enumerate() {
            let mac = keyed_mac(scheme, secret, index)?;
            if index == 0 || sign_with_all_secrets {
                keys.push(mac);
            }
        }
        Ok(Self { scheme, keys })
    }

    /// The scheme this signer produces.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Appends the signature headers for one request to `out` (lowercase names).
    ///
    /// - hokusai-v2: `x-hokusai-timestamp`, `x-hokusai-nonce`, `x-hokusai-signature`.
    /// - hokusai-legacy: `x-hokusai-signature` only (`timestamp`, `nonce`, `message_id` unused).
    /// - standard-webhooks: `webhook-id` (= `message_id`), `webhook-timestamp`,
    ///   `webhook-signature`.
    ///
    /// `timestamp` is unix seconds. With several signing secrets the signatures are
    /// comma-separated (hokusai) or space-separated (standard-webhooks).
    pub fn sign(
        &self,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
        message_id: &str,
        out: &mut Vec<(&'static str, String)>,
    ) {
        match self.scheme {
            Scheme::HokusaiLegacy => {
                let signature = self.hokusai_signature(|mac| feed(self.scheme, mac, "", "", body));
                out.push((HEADER_SIGNATURE, signature));
            }
            Scheme::HokusaiV2 => {
                let ts = format_timestamp(timestamp);
                let signature =
                    self.hokusai_signature(|mac| feed(self.scheme, mac, &ts, nonce, body));
                out.push((HEADER_TIMESTAMP, ts));
                out.push((HEADER_NONCE, nonce.to_owned()));
                out.push((HEADER_SIGNATURE, signature));
            }
            Scheme::StandardWebhooks => {
                let ts = format_timestamp(timestamp);
                // "v1," + 44 base64 characters, plus a separating space.
                let mut signature = String::with_capacity(self.keys.len() * 48);
                for (i, key) in self.keys.iter().enumerate() {
                    let mut mac = key.clone();
                    feed(self.scheme, &mut mac, &ts, message_id, body);
                    if i > 0 {
                        signature.push(' ');
                    }
                    signature.push_str(STANDARD_VERSION);
                    signature.push(',');
                    STANDARD.encode_string(mac.finalize().into_bytes(), &mut signature);
                }
                out.push((HEADER_WEBHOOK_ID, message_id.to_owned()));
                out.push((HEADER_WEBHOOK_TIMESTAMP, ts));
                out.push((HEADER_WEBHOOK_SIGNATURE, signature));
            }
        }
    }

    /// `sha256=<hex>[,sha256=<hex>…]`, one entry per signing key, built in one allocation.
    fn hokusai_signature(&self, feed: impl Fn(&mut HmacSha256)) -> String {
        let mut signature =
            String::with_capacity(self.keys.len() * (HOKUSAI_PREFIX.len() + 2 * TAG_LEN + 1));
        for (i, key) in self.keys.iter().enumerate() {
            let mut mac = key.clone();
            feed(&mut mac);
            if i > 0 {
                signature.push(',');
            }
            signature.push_str(HOKUSAI_PREFIX);
            for &byte in mac.finalize().into_bytes().iter() {
                signature.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                signature.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
            }
        }
        signature
    }
}

/// Feeds `mac` the bytes `scheme` signs, for signing and verifying alike: hokusai-legacy the
/// body; hokusai-v2 `<timestamp>.<nonce>.<body>`; standard-webhooks `<id>.<timestamp>.<body>`.
fn feed(scheme: Scheme, mac: &mut HmacSha256, timestamp: &str, nonce_or_id: &str, body: &[u8]) {
    let (first, second) = match scheme {
        Scheme::HokusaiLegacy => {
            mac.update(body);
            return;
        }
        Scheme::HokusaiV2 => (timestamp, nonce_or_id),
        Scheme::StandardWebhooks => (nonce_or_id, timestamp),
    };
    mac.update(first.as_bytes());
    mac.update(b".");
    mac.update(second.as_bytes());
    mac.update(b".");
    mac.update(body);
}

/// Unix seconds as decimal text: both the header value and the signed bytes.
fn format_timestamp(timestamp: i64) -> String {
    let mut ts = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write!(ts, "{timestamp}");
    ts
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The scheme the request was verified under.
    pub scheme: Scheme,
    /// The signed timestamp (hokusai-v2, standard-webhooks).
    pub timestamp: Option<i64>,
    /// `X-Hokusai-Nonce` (hokusai-v2) or `webhook-id` (standard-webhooks).
    pub nonce_or_id: Option<String>,
    /// Which of the given secrets matched, counting from 0.
    pub secret_index: usize,
}

/// Why a request failed verification. One variant per failure; never contains secret material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error(
        "missing {0} header; check the sender's signature scheme and that proxies forward the header"
    )]
    MissingHeader(&'static str),
    /// A header appears more than once; a signed request carries exactly one of each.
    #[error("{0} header appears more than once; a signed request carries exactly one")]
    DuplicateHeader(&'static str),
    /// A header has the wrong shape: (header, what is wrong).
    #[error("{0} header is malformed: {1}")]
    Malformed(&'static str, &'static str),
    /// No signature entry has a supported prefix or version.
    #[error(
        "no signature with a supported version: expected `sha256=<hex>` (hokusai schemes) \
         or `v1,<base64>` (standard-webhooks)"
    )]
    WrongVersion,
    /// The signature header, or one entry in it, is empty (e.g. `v1,` with nothing after).
    #[error("signature is empty (an empty header, or an entry with nothing after its prefix)")]
    EmptySignature,
    /// The signed timestamp is further from now than the tolerance; positive ages are in the
    /// past, negative ones in the future.
    #[error(
        "timestamp is {age_secs} s away from this receiver's clock (positive: in the past), \
         beyond the tolerance; check both clocks (NTP), or this is a replayed request"
    )]
    StaleTimestamp {
        /// `now - timestamp`, in seconds.
        age_secs: i64,
    },
    /// The timestamp header is not a whole number of unix seconds.
    #[error("timestamp header is not a whole number of unix seconds")]
    BadTimestamp,
    /// Well-formed signatures, but none matches any secret.
    #[error(
        "no signature matches any configured secret; check the secret (and, during rotation, \
         that the old one is listed), the scheme, and that the body is verified byte-for-byte \
         as received"
    )]
    NoMatch,
    /// No signature header at all, so the scheme cannot be detected.
    #[error(
        "no signature headers (X-Hokusai-Signature or webhook-signature); the request is not \
         signed, or a proxy dropped the headers"
    )]
    UnknownScheme,
    /// No secret to verify with.
    #[error("no secret to verify with; give at least one")]
    NoSecret,
    /// A standard-webhooks secret starts with `whsec_` but is not base64. `index` counts from 0.
    #[error(
        "secret #{} starts with `whsec_` but the rest is not valid base64 (or is empty)",
        .index + 1
    )]
    InvalidSecret {
        /// Position of the secret in the list, from 0.
        index: usize,
    },
}

/// Picks the scheme from the headers: `webhook-signature` → standard-webhooks, else
/// `x-hokusai-timestamp` → hokusai-v2, else `x-hokusai-signature` → hokusai-legacy.
fn detect_scheme(headers: &HeaderMap) -> Result<Scheme, VerifyError> {
    if headers.contains_key(HEADER_WEBHOOK_SIGNATURE) {
        Ok(Scheme::StandardWebhooks)
    } else if headers.contains_key(HEADER_TIMESTAMP) {
        Ok(Scheme::HokusaiV2)
    } else if headers.contains_key(HEADER_SIGNATURE) {
        Ok(Scheme::HokusaiLegacy)
    } else {
        Err(VerifyError::UnknownScheme)
    }
}

/// The single value of `name`, as text.
fn single_header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(VerifyError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader(name));
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| VerifyError::Malformed(name, "contains characters other than visible ASCII"))
}

/// Unix seconds: ASCII digits only (no sign, no spaces, no fractions).
fn parse_timestamp(value: &str) -> Result<i64, VerifyError> {
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    value.parse().map_err(|_| VerifyError::BadTimestamp)
}

/// Rejects a timestamp more than `tolerance_secs` away from `now`, in either direction.
fn check_tolerance(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), VerifyError> {
    if tolerance_secs == 0 {
        return Ok(());
    }
    let age_secs = now.saturating_sub(timestamp);
    if age_secs.unsigned_abs() > tolerance_secs {
        return Err(VerifyError::StaleTimestamp { age_secs });
    }
    Ok(())
}

/// The decoded digests of a `sha256=<hex>[,sha256=<hex>…]` header. Entries with another
/// algorithm are skipped; if none is left, that is [`VerifyError::WrongVersion`]. Any empty,
/// truncated or non-hex entry rejects the whole header.
fn parse_hokusai_signatures(value: &str) -> Result<Vec<[u8; TAG_LEN]>, VerifyError> {
    if value.is_empty() {
        return Err(VerifyError::EmptySignature);
    }
    let mut digests = Vec::with_capacity(2);
    for entry in value.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(VerifyError::EmptySignature);
        }
        let Some((algorithm, hex_digest)) = entry.split_once('=') else {
            return Err(VerifyError::Malformed(
                HEADER_SIGNATURE,
                "expected `sha256=<64 hex digits>`",
            ));
        };
        if algorithm != "sha256" {
            continue;
        }
        if hex_digest.is_empty() {
            return Err(VerifyError::EmptySignature);
        }
        if hex_digest.len() != 2 * TAG_LEN {
            return Err(VerifyError::Malformed(
                HEADER_SIGNATURE,
                "digest is not 64 hex digits (truncated or padded)",
            ));
        }
        let mut digest = [0u8; TAG_LEN];
        hex::decode_to_slice(hex_digest, &mut digest)
            .map_err(|_| VerifyError::Malformed(HEADER_SIGNATURE, "digest is not hexadecimal"))?;
        digests.push(digest);
    }
    if digests.is_empty() {
        return Err(VerifyError::WrongVersion);
    }
    Ok(digests)
}

/// The decoded tags of a `v1,<base64>[ v1,<base64>…]` header. Entries of other versions are
/// skipped (the specification lets receivers ignore them); if none is left, that is
/// [`VerifyError::WrongVersion`]. Any empty, truncated or non-base64 `v1` entry rejects the
/// whole header — an empty `v1,` must never slip through.
fn parse_standard_signatures(value: &str) -> Result<Vec<[u8; TAG_LEN]>, VerifyError> {
    let mut tags = Vec::with_capacity(2);
    let mut entries = 0usize;
    for entry in value.split_ascii_whitespace() {
        entries += 1;
        let Some((version, encoded)) = entry.split_once(',') else {
            return Err(VerifyError::Malformed(
                HEADER_WEBHOOK_SIGNATURE,
                "expected `v1,<base64>` entries separated by spaces",
            ));
        };
        if version != STANDARD_VERSION {
            continue;
        }
        if encoded.is_empty() {
            return Err(VerifyError::EmptySignature);
        }
        let decoded = STANDARD.decode(encoded).map_err(|_| {
            VerifyError::Malformed(HEADER_WEBHOOK_SIGNATURE, "signature is not valid base64")
        })?;
        let tag: [u8; TAG_LEN] = decoded.try_into().map_err(|_| {
            VerifyError::Malformed(
                HEADER_WEBHOOK_SIGNATURE,
                "signature is not a 32-byte HMAC-SHA256 (truncated or padded)",
            )
        })?;
        tags.push(tag);
    }
    if entries == 0 {
        return Err(VerifyError::EmptySignature);
    }
    if tags.is_empty() {
        return Err(VerifyError::WrongVersion);
    }
    Ok(tags)
}

/// Index of the first secret whose tag over `feed` equals any candidate, compared in
/// constant time on the decoded bytes.
fn find_matching_secret(
    scheme: Scheme,
    secrets: &[Secret],
    candidates: &[[u8; TAG_LEN]],
    feed: impl Fn(&mut HmacSha256),
) -> Result<usize, VerifyError> {
    // Key every secret first, so a broken one is reported whatever the request holds.
    let keys = secrets
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            keyed_mac(scheme, secret, index).map_err(|e| match e {
                SigningError::NoSecret => VerifyError::NoSecret,
                SigningError::InvalidWhsec { index } | SigningError::EmptySecret { index } => {
                    VerifyError::InvalidSecret { index }
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (index, key) in keys.into_iter().enumerate() {
        let mut mac = key;
        feed(&mut mac);
        let expected = mac.finalize().into_bytes();
        let matched = candidates.iter().fold(Choice::from(0), |acc, candidate| {
            acc | expected.as_slice().ct_eq(candidate.as_slice())
        });
        if bool::from(matched) {
            return Ok(index);
        }
    }
    Err(VerifyError::NoMatch)
}

/// Whether `nonce` is a UUID in the canonical text form the bridge sends: 36 characters,
/// lowercase hex digits in groups of 8-4-4-4-12 separated by `-`. Uppercase, braces, `urn:`
/// prefixes and the simple (unhyphenated) form are refused, so exactly one spelling of a nonce
/// verifies and a nonce can never contain the `.` that separates the signed parts.
///
/// Written by hand rather than with `uuid::Uuid::try_parse`, which accepts every one of those
/// other spellings.
pub fn is_canonical_nonce(nonce: &str) -> bool {
    nonce.len() == 36
        && nonce.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Verifies `body` against `headers` with any of `secrets`.
///
/// `scheme = None` detects it: `webhook-signature` present → standard-webhooks; else
/// `x-hokusai-timestamp` present → hokusai-v2; else hokusai-legacy (and no signature header at
/// all → [`VerifyError::UnknownScheme`]). `now` is unix seconds; `tolerance_secs = 0` turns the
/// timestamp check off, otherwise a timestamp more than `tolerance_secs` from `now` in either
/// direction is rejected.
///
/// Accepts when any listed signature matches any secret (constant-time comparison). Rejects
/// empty signatures and entries, truncated or non-hex/non-base64 digests, unsupported
/// prefixes or versions, a hokusai-v2 nonce that is not a canonical UUID
/// ([`is_canonical_nonce`]), and any header the scheme uses appearing more than once.
pub fn verify(
    scheme: Option<Scheme>,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance_secs: u64,
) -> Result<Verified, VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let scheme = match scheme {
        Some(scheme) => scheme,
        None => detect_scheme(headers)?,
    };
    if scheme == Scheme::HokusaiLegacy {
        let digests = parse_hokusai_signatures(single_header(headers, HEADER_SIGNATURE)?)?;
        let secret_index = find_matching_secret(scheme, secrets, &digests, |mac| {
            feed(scheme, mac, "", "", body)
        })?;
        return Ok(Verified {
            scheme,
            timestamp: None,
            nonce_or_id: None,
            secret_index,
        });
    }
    // hokusai-v2 and standard-webhooks differ in header names, signature encoding and the
    // order of the signed parts (`feed`).
    let v2 = scheme == Scheme::HokusaiV2;
    // Headers are read in the order of the signed parts, so a request missing several
    // names the first.
    let (ts_header, id_header, signature_header) = if v2 {
        (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
    } else {
        (
            HEADER_WEBHOOK_TIMESTAMP,
            HEADER_WEBHOOK_ID,
            HEADER_WEBHOOK_SIGNATURE,
        )
    };
    let (ts_text, id) = if v2 {
        let ts = single_header(headers, ts_header)?;
        (ts, single_header(headers, id_header)?)
    } else {
        let id = single_header(headers, id_header)?;
        (single_header(headers, ts_header)?, id)
    };
    let signature = single_header(headers, signature_header)?;
    let timestamp = parse_timestamp(ts_text)?;
    if id.is_empty() {
        return Err(VerifyError::Malformed(id_header, "is empty"));
    }
    // The MAC covers `<ts>.<nonce>.<body>` with nothing marking where the nonce ends, so a
    // nonce that may contain `.` lets bytes move between nonce and body under the same
    // signature. Only the exact form the bridge sends is accepted.
    if v2 && !is_canonical_nonce(id) {
        return Err(VerifyError::Malformed(
            id_header,
            "is not a canonical UUID (lowercase hex, hyphenated 8-4-4-4-12)",
        ));
    }
    let candidates = if v2 {
        parse_hokusai_signatures(signature)?
    } else {
        parse_standard_signatures(signature)?
    };
    check_tolerance(timestamp, now, tolerance_secs)?;
    let secret_index = find_matching_secret(scheme, secrets, &candidates, |mac| {
        feed(scheme, mac, ts_text, id, body)
    })?;
    Ok(Verified {
        scheme,
        timestamp: Some(timestamp),
        nonce_or_id: Some(id.to_owned()),
        secret_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::Value;

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

    #[test]
    fn reproduces_the_hokusai_legacy_vector() {
        let f = fixtures();
        let v = &f["hokusai_legacy"];
        let secrets = [secret(text(v, "secret"))];
        let body = text(v, "body").as_bytes();
        let out = sign(Scheme::HokusaiLegacy, &secrets, false, body, 0, "", "");
        assert_eq!(
            out,
            vec![(HEADER_SIGNATURE, text(v, "signature").to_owned())]
        );

        let verified = verify(None, &header_map(&out), body, &secrets, NOW, 300).unwrap();
        assert_eq!(verified.scheme, Scheme::HokusaiLegacy);
        assert_eq!(verified.timestamp, None);
        assert_eq!(verified.secret_index, 0);
    }

    #[test]
    fn reproduces_the_hokusai_v2_vector() {
        let f = fixtures();
        let v = &f["hokusai_v2"];
        let secrets = [secret(text(v, "secret"))];
        let body = text(v, "body").as_bytes();
        let ts: i64 = text(v, "timestamp").parse().unwrap();
        let nonce = text(v, "nonce");
        let out = sign(
            Scheme::HokusaiV2,
            &secrets,
            false,
            body,
            ts,
            nonce,
            "unused",
        );
        assert_eq!(
            out,
            vec![
                (HEADER_TIMESTAMP, text(v, "timestamp").to_owned()),
                (HEADER_NONCE, nonce.to_owned()),
                (HEADER_SIGNATURE, text(v, "signature").to_owned()),
            ]
        );

        let verified = verify(None, &header_map(&out), body, &secrets, 0, 0).unwrap();
        assert_eq!(
            verified,
            Verified {
                scheme: Scheme::HokusaiV2,
                timestamp: Some(ts),
                nonce_or_id: Some(nonce.to_owned()),
                secret_index: 0,
            }
        );
    }

    #[test]
    fn reproduces_both_standard_webhooks_vectors() {
        let f = fixtures();
        let vectors = f["standard_webhooks"].as_array().unwrap();
        assert_eq!(vectors.len(), 2);
        for v in vectors {
            let secrets = [secret(text(v, "secret"))];
            let body = text(v, "body").as_bytes();
            let ts: i64 = text(v, "timestamp").parse().unwrap();
            let id = text(v, "id");
            let out = sign(
                Scheme::StandardWebhooks,
                &secrets,
                false,
                body,
                ts,
                "unused",
                id,
            );
            assert_eq!(
                out,
                vec![
                    (HEADER_WEBHOOK_ID, id.to_owned()),
                    (HEADER_WEBHOOK_TIMESTAMP, text(v, "timestamp").to_owned()),
                    (HEADER_WEBHOOK_SIGNATURE, text(v, "signature").to_owned()),
                ]
            );

            let verified = verify(None, &header_map(&out), body, &secrets, 0, 0).unwrap();
            assert_eq!(verified.scheme, Scheme::StandardWebhooks);
            assert_eq!(verified.timestamp, Some(ts));
            assert_eq!(verified.nonce_or_id.as_deref(), Some(id));
        }
    }

    #[test]
    fn verifies_the_published_standard_webhooks_headers_as_given() {
        // Built from the fixture text directly, not from our own signer.
        let f = fixtures();
        for v in f["standard_webhooks"].as_array().unwrap() {
            let headers = header_map(&[
                (HEADER_WEBHOOK_ID, text(v, "id").to_owned()),
                (HEADER_WEBHOOK_TIMESTAMP, text(v, "timestamp").to_owned()),
                (HEADER_WEBHOOK_SIGNATURE, text(v, "signature").to_owned()),
            ]);
            let secrets = [secret(text(v, "secret"))];
            verify(
                Some(Scheme::StandardWebhooks),
                &headers,
                text(v, "body").as_bytes(),
                &secrets,
                0,
                0,
            )
            .unwrap();
        }
    }

    #[test]
    fn uses_a_secret_without_whsec_prefix_as_raw_bytes_for_standard_webhooks() {
        let out = sign(
            Scheme::StandardWebhooks,
            &[secret("plain-secret")],
            false,
            BODY,
            NOW,
            "",
            "msg_1",
        );
        let mut mac = HmacSha256::new_from_slice(b"plain-secret").unwrap();
        mac.update(format!("msg_1.{NOW}.").as_bytes());
        mac.update(BODY);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(value_of(&out, HEADER_WEBHOOK_SIGNATURE), expected);
    }

    #[test]
    fn signs_with_every_secret_during_rotation() {
        let secrets = [secret("new-secret"), secret("old-secret")];
        let out = sign(Scheme::HokusaiV2, &secrets, true, BODY, NOW, NONCE_1, "");
        let signature = value_of(&out, HEADER_SIGNATURE);
        let entries: Vec<&str> = signature.split(',').collect();
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .all(|e| e.starts_with("sha256=") && e.len() == 71)
        );
        assert_ne!(entries[0], entries[1]);

        let out = sign(
            Scheme::StandardWebhooks,
            &secrets,
            true,
            BODY,
            NOW,
            "",
            "msg_1",
        );
        let entries: Vec<&str> = value_of(&out, HEADER_WEBHOOK_SIGNATURE)
            .split(' ')
            .collect();
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .all(|e| e.starts_with("v1,") && e.len() == 47)
        );
    }

    #[test]
    fn signs_with_only_the_first_secret_unless_asked_for_all() {
        let secrets = [secret("new-secret"), secret("old-secret")];
        let out = sign(Scheme::HokusaiLegacy, &secrets, false, BODY, NOW, "", "");
        let signature = value_of(&out, HEADER_SIGNATURE);
        assert!(!signature.contains(','));
        let only_first = sign(
            Scheme::HokusaiLegacy,
            &secrets[..1],
            false,
            BODY,
            NOW,
            "",
            "",
        );
        assert_eq!(signature, value_of(&only_first, HEADER_SIGNATURE));
    }

    #[test]
    fn verifies_with_the_old_secret_during_rotation() {
        let both = [secret("new-secret"), secret("old-secret")];
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let headers = header_map(&sign(scheme, &both, true, BODY, NOW, NONCE_1, "msg_1"));
            let old_only = [secret("old-secret")];
            let verified = verify(None, &headers, BODY, &old_only, NOW, 300).unwrap();
            assert_eq!(verified.scheme, scheme);
            assert_eq!(verified.secret_index, 0);
        }
    }

    #[test]
    fn reports_which_listed_secret_matched() {
        let headers = v2_headers(&[secret("old-secret")], BODY, NOW);
        let listed = [secret("new-secret"), secret("old-secret")];
        let verified = verify(None, &headers, BODY, &listed, NOW, 300).unwrap();
        assert_eq!(verified.secret_index, 1);
    }

    #[test]
    fn rejects_a_wrong_secret() {
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let headers = header_map(&sign(
                scheme,
                &[secret("right")],
                false,
                BODY,
                NOW,
                NONCE_1,
                "msg_1",
            ));
            let result = verify(None, &headers, BODY, &[secret("wrong")], NOW, 300);
            assert_eq!(result, Err(VerifyError::NoMatch), "{scheme:?}");
        }
    }

    #[test]
    fn rejects_a_tampered_body() {
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let secrets = [secret("s3cret")];
            let headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, "msg_1"));
            let tampered = br#"{"model_id":"m","event_type":"model_ready" }"#;
            let result = verify(None, &headers, tampered, &secrets, NOW, 300);
            assert_eq!(result, Err(VerifyError::NoMatch), "{scheme:?}");
        }
    }

    #[test]
    fn rejects_a_tampered_nonce_or_id() {
        let secrets = [secret("s3cret")];
        let mut headers = v2_headers(&secrets, BODY, NOW);
        headers.insert(HEADER_NONCE, HeaderValue::from_static(NONCE_2));
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn rejects_a_stale_timestamp() {
        let secrets = [secret("s3cret")];
        let headers = v2_headers(&secrets, BODY, NOW - 301);
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::StaleTimestamp { age_secs: 301 })
        );
        let headers = header_map(&sign(
            Scheme::StandardWebhooks,
            &secrets,
            false,
            BODY,
            NOW - 3600,
            "",
            "msg_1",
        ));
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::StaleTimestamp { age_secs: 3600 })
        );
    }

    #[test]
    fn rejects_a_timestamp_from_the_future() {
        let secrets = [secret("s3cret")];
        let headers = v2_headers(&secrets, BODY, NOW + 301);
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::StaleTimestamp { age_secs: -301 })
        );
    }

    #[test]
    fn accepts_a_timestamp_at_the_edge_of_the_tolerance() {
        let secrets = [secret("s3cret")];
        for ts in [NOW - 300, NOW + 300] {
            verify(
                None,
                &v2_headers(&secrets, BODY, ts),
                BODY,
                &secrets,
                NOW,
                300,
            )
            .unwrap();
        }
    }

    #[test]
    fn accepts_any_timestamp_when_the_tolerance_is_zero() {
        let secrets = [secret("s3cret")];
        let headers = v2_headers(&secrets, BODY, 1);
        verify(None, &headers, BODY, &secrets, NOW, 0).unwrap();
    }

    #[test]
    fn rejects_a_timestamp_that_is_not_unix_seconds() {
        let secrets = [secret("s3cret")];
        for bad in ["", "-5", "+5", "1.5", "abc", "99999999999999999999"] {
            let mut headers = v2_headers(&secrets, BODY, NOW);
            headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                verify(None, &headers, BODY, &secrets, NOW, 300),
                Err(VerifyError::BadTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_an_empty_v1_entry_in_standard_webhooks() {
        let secrets = [secret("s3cret")];
        let good = standard_signed(&secrets);
        let good_sig = value_of(&good, HEADER_WEBHOOK_SIGNATURE).to_owned();
        for bad in [
            "v1,".to_owned(),
            format!("v1, {good_sig}"),
            format!("{good_sig} v1,"),
        ] {
            assert_eq!(
                verify(None, &standard_headers(&bad), BODY, &secrets, NOW, 300),
                Err(VerifyError::EmptySignature),
                "{bad:?}"
            );
        }
        verify(None, &standard_headers(&good_sig), BODY, &secrets, NOW, 300).unwrap();
    }

    #[test]
    fn rejects_an_empty_signature_header() {
        let secrets = [secret("s3cret")];
        for scheme in [Scheme::HokusaiV2, Scheme::HokusaiLegacy] {
            let mut headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, ""));
            headers.insert(HEADER_SIGNATURE, HeaderValue::from_static(""));
            assert_eq!(
                verify(Some(scheme), &headers, BODY, &secrets, NOW, 300),
                Err(VerifyError::EmptySignature)
            );
        }
        for bad in ["", "sha256=", "sha256=,sha256="] {
            let mut headers = v2_headers(&secrets, BODY, NOW);
            headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                verify(None, &headers, BODY, &secrets, NOW, 300),
                Err(VerifyError::EmptySignature),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(None, &standard_headers(""), BODY, &secrets, NOW, 300),
            Err(VerifyError::EmptySignature)
        );
    }

    #[test]
    fn rejects_a_truncated_hex_digest() {
        let secrets = [secret("s3cret")];
        let mut headers = v2_headers(&secrets, BODY, NOW);
        let full = headers[HEADER_SIGNATURE].to_str().unwrap().to_owned();
        for cut in [full.len() - 1, full.len() - 2, "sha256=".len() + 1] {
            headers.insert(
                HEADER_SIGNATURE,
                HeaderValue::from_str(&full[..cut]).unwrap(),
            );
            assert!(
                matches!(
                    verify(None, &headers, BODY, &secrets, NOW, 300),
                    Err(VerifyError::Malformed(HEADER_SIGNATURE, _))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rejects_a_truncated_base64_signature() {
        let secrets = [secret("s3cret")];
        let good = standard_signed(&secrets);
        let tag = STANDARD
            .decode(&value_of(&good, HEADER_WEBHOOK_SIGNATURE)["v1,".len()..])
            .unwrap();
        // Valid base64 of the first 31 bytes of the right tag.
        let truncated = format!("v1,{}", STANDARD.encode(&tag[..TAG_LEN - 1]));
        assert!(matches!(
            verify(
                None,
                &standard_headers(&truncated),
                BODY,
                &secrets,
                NOW,
                300
            ),
            Err(VerifyError::Malformed(HEADER_WEBHOOK_SIGNATURE, _))
        ));
    }

    #[test]
    fn rejects_a_digest_that_is_not_hex_or_base64() {
        let secrets = [secret("s3cret")];
        let mut headers = v2_headers(&secrets, BODY, NOW);
        let not_hex = format!("sha256={}", "zz".repeat(32));
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(&not_hex).unwrap());
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::Malformed(
                HEADER_SIGNATURE,
                "digest is not hexadecimal"
            ))
        );
        assert!(matches!(
            verify(
                None,
                &standard_headers("v1,%%%notbase64%%%"),
                BODY,
                &secrets,
                NOW,
                300
            ),
            Err(VerifyError::Malformed(HEADER_WEBHOOK_SIGNATURE, _))
        ));
    }

    #[test]
    fn rejects_a_duplicated_header() {
        let secrets = [secret("s3cret")];
        for name in [HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_NONCE] {
            let mut headers = v2_headers(&secrets, BODY, NOW);
            let copy = headers[name].clone();
            headers.append(name, copy);
            assert_eq!(
                verify(None, &headers, BODY, &secrets, NOW, 300),
                Err(VerifyError::DuplicateHeader(name))
            );
        }
        let good = standard_signed(&secrets);
        let mut headers = header_map(&good);
        headers.append(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_static("v1,AAAA"),
        );
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::DuplicateHeader(HEADER_WEBHOOK_SIGNATURE))
        );
    }

    #[test]
    fn rejects_a_wrong_prefix_or_version() {
        let secrets = [secret("s3cret")];
        let mut headers = v2_headers(&secrets, BODY, NOW);
        let hex = headers[HEADER_SIGNATURE].to_str().unwrap()["sha256=".len()..].to_owned();
        headers.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(&format!("sha1={hex}")).unwrap(),
        );
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::WrongVersion)
        );

        let good = standard_signed(&secrets);
        let v2 = value_of(&good, HEADER_WEBHOOK_SIGNATURE).replacen("v1,", "v2,", 1);
        assert_eq!(
            verify(None, &standard_headers(&v2), BODY, &secrets, NOW, 300),
            Err(VerifyError::WrongVersion)
        );
    }

    #[test]
    fn ignores_unknown_versions_next_to_a_valid_signature() {
        let secrets = [secret("s3cret")];
        let good = standard_signed(&secrets);
        let mixed = format!("v1a,AAAA {}", value_of(&good, HEADER_WEBHOOK_SIGNATURE));
        verify(None, &standard_headers(&mixed), BODY, &secrets, NOW, 300).unwrap();
    }

    #[test]
    fn detects_the_scheme_from_the_headers() {
        let secrets = [secret("s3cret")];
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, "msg_1"));
            assert_eq!(
                verify(None, &headers, BODY, &secrets, NOW, 300)
                    .unwrap()
                    .scheme,
                scheme
            );
        }
    }

    #[test]
    fn rejects_a_request_without_signature_headers() {
        let secrets = [secret("s3cret")];
        assert_eq!(
            verify(None, &HeaderMap::new(), BODY, &secrets, NOW, 300),
            Err(VerifyError::UnknownScheme)
        );
    }

    #[test]
    fn a_pinned_scheme_needs_its_own_headers() {
        let secrets = [secret("s3cret")];
        let legacy = header_map(&sign(
            Scheme::HokusaiLegacy,
            &secrets,
            false,
            BODY,
            NOW,
            "",
            "",
        ));
        assert_eq!(
            verify(Some(Scheme::HokusaiV2), &legacy, BODY, &secrets, NOW, 300),
            Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
        );
        let v2 = v2_headers(&secrets, BODY, NOW);
        assert_eq!(
            verify(
                Some(Scheme::StandardWebhooks),
                &v2,
                BODY,
                &secrets,
                NOW,
                300
            ),
            Err(VerifyError::MissingHeader(HEADER_WEBHOOK_ID))
        );
    }

    #[test]
    fn refuses_an_invalid_whsec_secret() {
        let bad = [secret("ok"), secret("whsec_not*base64!")];
        assert_eq!(
            Signer::new(Scheme::StandardWebhooks, &bad, false).unwrap_err(),
            SigningError::InvalidWhsec { index: 1 }
        );
        assert_eq!(
            Signer::new(Scheme::StandardWebhooks, &[secret("whsec_")], false).unwrap_err(),
            SigningError::InvalidWhsec { index: 0 }
        );
        // The hokusai schemes use the bytes as they are.
        Signer::new(Scheme::HokusaiV2, &bad, true).unwrap();
        let signed_by_first = sign(
            Scheme::StandardWebhooks,
            &bad[..1],
            false,
            BODY,
            NOW,
            "",
            "m",
        );
        assert_eq!(
            verify(None, &header_map(&signed_by_first), BODY, &bad, NOW, 300),
            Err(VerifyError::InvalidSecret { index: 1 })
        );
    }

    #[test]
    fn refuses_to_build_a_signer_without_secrets() {
        assert_eq!(
            Signer::new(Scheme::HokusaiV2, &[], false).unwrap_err(),
            SigningError::NoSecret
        );
        assert_eq!(
            verify(
                None,
                &v2_headers(&[secret("s")], BODY, NOW),
                BODY,
                &[],
                NOW,
                300
            ),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn never_prints_key_material() {
        let signer = Signer::new(
            Scheme::StandardWebhooks,
            &[secret("whsec_c2VjcmV0LWtleQ==")],
            false,
        )
        .unwrap();
        let debug = format!("{signer:?}");
        assert!(!debug.contains("whsec"), "{debug}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        assert!(!debug.contains("secret-key"), "{debug}");
        let error = SigningError::InvalidWhsec { index: 0 }.to_string();
        assert!(error.contains("#1"), "{error}");
    }

    #[test]
    fn signer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Signer>();
    }

    #[test]
    fn names_every_scheme_as_the_config_does() {
        for scheme in [
            Scheme::HokusaiV2,
            Scheme::HokusaiLegacy,
            Scheme::StandardWebhooks,
        ] {
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(json, format!("\"{}\"", scheme_name(scheme)));
        }
    }

    #[test]
    fn rejects_bytes_moved_from_the_body_into_the_nonce() {
        // Signed with nonce N over body B1 + B2; the forgery sends nonce `N.B1` and body B2,
        // which feeds the MAC exactly the same bytes.
        let secrets = [secret("s3cret")];
        let (b1, b2) = BODY.split_at(10);
        let signed = sign(Scheme::HokusaiV2, &secrets, false, BODY, NOW, NONCE_1, "");
        let mut forged = header_map(&signed);
        let moved = format!("{NONCE_1}.{}", std::str::from_utf8(b1).unwrap());
        forged.insert(HEADER_NONCE, HeaderValue::from_str(&moved).unwrap());
        assert_eq!(
            verify(None, &forged, b2, &secrets, NOW, 300),
            Err(VerifyError::Malformed(
                HEADER_NONCE,
                "is not a canonical UUID (lowercase hex, hyphenated 8-4-4-4-12)"
            ))
        );
        // The genuine request still verifies.
        assert!(verify(None, &header_map(&signed), BODY, &secrets, NOW, 300).is_ok());
    }

    #[test]
    fn accepts_only_the_canonical_lowercase_uuid_as_a_nonce() {
        assert!(is_canonical_nonce(NONCE_1));
        assert!(is_canonical_nonce(&uuid::Uuid::new_v4().to_string()));
        for bad in [
            "",
            "n",
            "0B0E7A4C-5F1D-4C2E-9A3B-6D7E8F901234",
            "0b0e7a4c5f1d4c2e9a3b6d7e8f901234",
            "{0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234}",
            "urn:uuid:0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234",
            "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f90123.",
            "0b0e7a4c.5f1d-4c2e-9a3b-6d7e8f901234",
            "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234.x",
            "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f90123g",
        ] {
            assert!(!is_canonical_nonce(bad), "{bad:?}");
            // A request signed with such a nonce is refused before any MAC is computed.
            let secrets = [secret("s3cret")];
            let mut headers = v2_headers(&secrets, BODY, NOW);
            if let Ok(value) = HeaderValue::from_str(bad) {
                headers.insert(HEADER_NONCE, value);
                assert!(
                    matches!(
                        verify(None, &headers, BODY, &secrets, NOW, 300),
                        Err(VerifyError::Malformed(HEADER_NONCE, _))
                    ),
                    "{bad:?}"
                );
            }
        }
    }
}
