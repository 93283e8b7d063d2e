//! Every CLI command other than `run`, one file each.

pub mod check_config;
pub mod control;
pub mod dlq;
pub mod migrate;
pub mod receive;
pub mod sign;
pub mod verify;
