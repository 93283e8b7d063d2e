//! `verify` command.
