//! Delivery queues.
