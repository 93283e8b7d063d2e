//! Configuration: layering, legacy variables, secrets, validation.

pub mod secret;
pub use secret::{Secret, SecretError};
