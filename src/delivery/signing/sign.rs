//! Signing: the [`Signer`] an endpoint builds once, whose precomputed keys sign every
//! delivery without key setup per message.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::SigningError;
use super::key::keyed_mac;
use super::{
    HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP, HOKUSAI_PREFIX, HmacSha256, STANDARD_VERSION, Scheme, TAG_LEN, feed,
};
use crate::config::Secret;

/// Lowercase hex digits, for encoding without an intermediate allocation.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

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

/// Unix seconds as decimal text: both the header value and the signed bytes.
fn format_timestamp(timestamp: i64) -> String {
    let mut ts = String::with_capacity(20);
    // Writing to a String cannot fail.
    let _ = write!(ts, "{timestamp}");
    ts
}
