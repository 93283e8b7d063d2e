//! Verification: what `verify`, `receive` and library users call to check a request —
//! the scheme from the headers, each header exactly once, the timestamp within the
//! tolerance, and a constant-time match against any listed secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use http::HeaderMap;
use subtle::{Choice, ConstantTimeEq};

use super::SigningError;
use super::key::keyed_mac;
use super::{
    HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP, HmacSha256, STANDARD_VERSION, Scheme, TAG_LEN, feed,
};
use crate::config::Secret;

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
