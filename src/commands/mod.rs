//! Every CLI command other than `run`, one file each.

pub mod receive;
pub mod sign;
pub mod verify;
