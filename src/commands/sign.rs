//! `sign` command.
