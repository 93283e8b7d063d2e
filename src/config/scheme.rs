//! The signature schemes an endpoint can be signed with: a config value (`signature`) and a
//! flag value (`sign`, `verify`, `receive --scheme`), so it lives with the config, below both
//! the command line and the signing code.

use clap::ValueEnum;

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
