//! Moving the registry's consumers from Redis to webhooks: the check `run` keeps doing for
//! subscribers that still read the old channels ([`legacy`]).

pub mod legacy;

pub use legacy::watch_legacy_subscribers;
