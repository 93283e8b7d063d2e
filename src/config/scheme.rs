//! The signature schemes an endpoint can be signed with: a config value (`signature`) and a
//! flag value (`sign`, `verify`, `receive --scheme`), so it lives with the config, below both
//! the command line and the signing code. So does what a scheme makes of a secret (the HMAC
//! key: a `whsec_` secret decoded for standard-webhooks), which validation checks at load
//! and the signing code keys its MACs with.

use std::ops::Deref;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use clap::ValueEnum;
use zeroize::Zeroizing;

use super::Secret;

/// A signature scheme, as named in the config's `signature` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `X-Hokusai-Timestamp`, `X-Hokusai-Nonce`, `X-Hokusai-Signature: sha256=…` over `ts.nonce.body`.
    HokusaiV2,
    /// `X-Hokusai-Signature: sha256=…` over the body alone (the registry's original publisher).
    HokusaiLegacy,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` (standardwebhooks.com).
    StandardWebhooks,
}

/// Prefix of a standard-webhooks secret whose remainder is base64.
const WHSEC_PREFIX: &str = "whsec_";

/// Standard base64 that accepts `whsec_` secrets with or without trailing `=` padding
/// (some providers strip it).
const WHSEC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an endpoint's secrets cannot sign. Never contains secret material.
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

/// The HMAC key of one secret: its bytes as they are, or the decoded remainder of a
/// `whsec_` secret (zeroed on drop).
pub enum SigningKey<'s> {
    /// The secret's own bytes.
    Raw(&'s [u8]),
    /// Decoded from base64.
    Decoded(Zeroizing<Vec<u8>>),
}

impl Deref for SigningKey<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SigningKey::Raw(bytes) => bytes,
            SigningKey::Decoded(bytes) => bytes,
        }
    }
}

impl Scheme {
    /// The HMAC key of `secret`, the `index`-th listed (from 0, for the error): for
    /// standard-webhooks a `whsec_` secret is base64-decoded after the prefix; everything
    /// else uses the secret's bytes as they are. The key is never empty.
    pub fn signing_key(
        self,
        secret: &Secret,
        index: usize,
    ) -> Result<SigningKey<'_>, SigningError> {
        let raw = secret.expose();
        let key = match (self, raw.strip_prefix(WHSEC_PREFIX.as_bytes())) {
            (Scheme::StandardWebhooks, Some(encoded)) => {
                let decoded = Zeroizing::new(
                    WHSEC_BASE64
                        .decode(encoded)
                        .map_err(|_| SigningError::InvalidWhsec { index })?,
                );
                if decoded.is_empty() {
                    return Err(SigningError::InvalidWhsec { index });
                }
                SigningKey::Decoded(decoded)
            }
            _ => SigningKey::Raw(raw),
        };
        if key.is_empty() {
            return Err(SigningError::EmptySecret { index });
        }
        Ok(key)
    }

    /// Checks that there is a secret and that every one of `secrets` has a key under this
    /// scheme: what signing needs, checked at load so that a bad secret fails there and not
    /// at the first delivery.
    pub fn check_secrets(self, secrets: &[Secret]) -> Result<(), SigningError> {
        if secrets.is_empty() {
            return Err(SigningError::NoSecret);
        }
        for (index, secret) in secrets.iter().enumerate() {
            self.signing_key(secret, index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whsec_secret_is_decoded_for_standard_webhooks_only() {
        let secret = Secret::from_bytes("whsec_aGVsbG8");
        let key = Scheme::StandardWebhooks.signing_key(&secret, 0).unwrap();
        assert_eq!(&*key, b"hello");
        let key = Scheme::HokusaiV2.signing_key(&secret, 0).unwrap();
        assert_eq!(&*key, b"whsec_aGVsbG8");
    }

    #[test]
    fn a_whsec_secret_that_is_not_base64_or_empty_is_refused_by_position() {
        let secrets = [Secret::from_bytes("ok"), Secret::from_bytes("whsec_!!!")];
        assert_eq!(
            Scheme::StandardWebhooks.check_secrets(&secrets),
            Err(SigningError::InvalidWhsec { index: 1 })
        );
        assert_eq!(
            Scheme::StandardWebhooks.check_secrets(&[Secret::from_bytes("whsec_")]),
            Err(SigningError::InvalidWhsec { index: 0 })
        );
        assert_eq!(Scheme::HokusaiLegacy.check_secrets(&secrets), Ok(()));
    }

    #[test]
    fn no_secret_at_all_is_refused() {
        assert_eq!(
            Scheme::HokusaiV2.check_secrets(&[]),
            Err(SigningError::NoSecret)
        );
    }
}
