//! Moving the registry's consumers from Redis to webhooks: the inventory `migrate plan`
//! prints ([`plan`](mod@plan), with the config it suggests in [`suggest`]), the parity check of
//! `migrate validate` ([`validate`](mod@validate)), and the check `run` keeps doing for subscribers that
//! still read the old channels ([`legacy`]).

pub mod legacy;
pub mod plan;
pub mod suggest;
pub mod validate;

pub use legacy::watch_legacy_subscribers;
pub use plan::plan;
pub use validate::validate;
