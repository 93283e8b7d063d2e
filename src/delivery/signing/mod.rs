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
//!
//! The files: `key` turns a secret into the HMAC key of a scheme (the `whsec_` decoding,
//! in one place), `sign` holds the [`Signer`], `verify` the checks of [`verify`]; the bytes
//! each scheme signs (`feed`) are shared by both and live here.

use hmac::{Hmac, Mac};
use sha2::Sha256;

mod key;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

pub use crate::config::Scheme;
pub use crate::config::SigningError;
pub use sign::Signer;
pub use verify::{Verified, VerifyError, is_canonical_nonce, verify};

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

type HmacSha256 = Hmac<Sha256>;

/// The config / CLI name of a scheme (`hokusai-v2`, `hokusai-legacy`, `standard-webhooks`).
pub fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::HokusaiV2 => "hokusai-v2",
        Scheme::HokusaiLegacy => "hokusai-legacy",
        Scheme::StandardWebhooks => "standard-webhooks",
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
