//! The Redis plumbing every stage shares: opening connections and the consumer name of this
//! replica ([`connect`]), reading replies ([`reply`]), finding keys ([`keys`]), claiming a
//! stopped replica's pending entries ([`group`]), and the oldest server version the bridge
//! runs against ([`version`]).
//!
//! Named after the external `redis` crate it wraps: inside this crate, `redis::…` is always
//! the external crate and `crate::redis::…` this module, so every reference to this module
//! is written with the `crate::` prefix.

pub mod connect;
pub mod group;
pub mod keys;
pub mod reply;
pub mod version;

pub use connect::{consumer_name, redis_address, redis_manager, redis_reader};
