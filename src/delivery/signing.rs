//! Webhook signatures: the three schemes, signing and verification.
