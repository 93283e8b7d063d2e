//! The HMAC key of a secret under a scheme: for standard-webhooks a `whsec_` secret is
//! base64-decoded after the prefix; every other secret is used as the bytes it is. The one
//! place a secret's bytes become key material, for signing and verifying alike.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::Mac;
use zeroize::Zeroizing;

use super::{HmacSha256, Scheme};
use crate::config::Secret;

/// Prefix of a standard-webhooks secret whose remainder is base64.
const WHSEC_PREFIX: &str = "whsec_";

/// Standard base64 that accepts `whsec_` secrets with or without trailing `=` padding
/// (some providers strip it).
const WHSEC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a [`Signer`](super::Signer) could not be built. Never contains secret material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigningError {
    /// The endpoint lists no secret.
    #[error("no signing secret: list at least one secret for the endpoint")]
    NoSecret,
    /// A standard-webhooks secret starts with `whsec_` but the rest is not base64 (or is empty).
    /// `index` counts from 0 in the listed order.
    #[error(
        "secret #{} starts with `whsec_` but the rest is not valid base64 (or is empty); \
         copy the whole secret from the receiver, or drop the prefix to use the bytes as-is",
        .index + 1
    )]
    InvalidWhsec {
        /// Position of the secret in the list, from 0.
        index: usize,
    },
    /// A secret has no bytes. `index` counts from 0 in the listed order.
    #[error("secret #{} is empty", .index + 1)]
    EmptySecret {
        /// Position of the secret in the list, from 0.
        index: usize,
    },
}

/// The HMAC key for `secret` under `scheme`: for standard-webhooks a `whsec_` secret is
/// base64-decoded after the prefix; everything else uses the secret's bytes as they are.
pub(super) fn keyed_mac(
    scheme: Scheme,
    secret: &Secret,
    index: usize,
) -> Result<HmacSha256, SigningError> {
    let raw = secret.expose();
    let decoded;
    let key: &[u8] = match (scheme, raw.strip_prefix(WHSEC_PREFIX.as_bytes())) {
        (Scheme::StandardWebhooks, Some(encoded)) => {
            decoded = Zeroizing::new(
                WHSEC_BASE64
                    .decode(encoded)
                    .map_err(|_| SigningError::InvalidWhsec { index })?,
            );
            if decoded.is_empty() {
                return Err(SigningError::InvalidWhsec { index });
            }
            &decoded
        }
        _ => raw,
    };
    if key.is_empty() {
        return Err(SigningError::EmptySecret { index });
    }
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).map_err(|_| SigningError::EmptySecret { index })
}
