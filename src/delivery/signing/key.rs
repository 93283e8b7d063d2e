//! The HMAC key of a secret under a scheme, for signing and verifying alike. How a secret's
//! bytes become key material (a `whsec_` secret is base64-decoded after the prefix) is
//! [`Scheme::signing_key`], in config, so that loading a config can check the secrets
//! without building a signer.

use hmac::Mac;

use super::{HmacSha256, Scheme};
use crate::config::{Secret, SigningError};

/// The HMAC of `secret`'s key under `scheme`.
pub(super) fn keyed_mac(
    scheme: Scheme,
    secret: &Secret,
    index: usize,
) -> Result<HmacSha256, SigningError> {
    let key = scheme.signing_key(secret, index)?;
    // HMAC accepts keys of any length; this cannot fail.
    HmacSha256::new_from_slice(&key).map_err(|_| SigningError::EmptySecret { index })
}
