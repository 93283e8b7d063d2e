//! Delivery: per-endpoint workers that sign, POST, classify and retry.

pub mod signing;
