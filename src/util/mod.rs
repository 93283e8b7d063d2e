//! Small helpers every stage shares and that belong to no stage: time formatting.

pub mod time;
