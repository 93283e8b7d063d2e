//! `receive` command.
