//! Small helpers every stage shares and that belong to no stage: the one reconnect policy
//! ([`backoff`]), time formatting ([`time`]) and the network rules of [`net`] (public
//! addresses, the TLS crypto provider).

pub mod backoff;
pub mod net;
pub mod time;
