//! Redis sources.
