//! jq expressions over a message's JSON: an endpoint's `filter` (does it receive the
//! message?) and `transform` (what body does it receive?).
//!
//! The language is jq, run by the pure-Rust `jaq` crates (`jaq-core` for the interpreter,
//! `jaq-std` and `jaq-json` for the standard library) rather than an interpreter of our own.
//! An expression is parsed and compiled once ([`Filter::compile`], [`Transform::compile`]);
//! the compiled program is immutable, `Send + Sync` and cheap to clone, so a config holds it
//! and every delivery worker runs it.
//!
//! # Rules
//!
//! - A filter's message passes when the expression yields exactly one value and that value
//!   is truthy in jq's sense (anything but `false` and `null`).
//! - A transform yields exactly one JSON value, which is serialised compactly as the body.
//! - Zero or several outputs, a runtime error, or a bound below being hit is an
//!   [`ExprError`]; the caller dead-letters the message with it.
//!
//! # Bounds
//!
//! jaq has no fuel or step counter of its own, and a Rust thread cannot be stopped from
//! outside, so running an expression on a thread with a deadline would leave a runaway one
//! spinning forever. Instead the bounds are built into the program itself (see [`Limits`]):
//!
//! - **Steps.** Every definition of the standard library (`map`, `select`, `recurse`,
//!   `while`, `until`, `repeat`, `range/1` and `range/2`, …) is compiled with a call to a
//!   native `__tick` at its start, and `range/3` (native in jaq) passes each of its outputs
//!   through `__tick`. `__tick` counts steps against [`Limits::max_steps`], checks the
//!   deadline ([`Limits::max_time`]) every [`DEADLINE_EVERY`] steps and the remaining
//!   thread stack every step. Once a bound is hit every later tick fails too, so a `try`
//!   in the expression cannot swallow it, and the run reports the bound.
//! - **No recursion of the expression's own.** The only way to loop in jq without the
//!   standard library is a recursive `def`, which would not tick; such definitions are
//!   rejected at compile time with their position (the standard library's `recurse`,
//!   `while`, `until`, `repeat`, `limit` and `range` cover what they are used for).
//! - **Outputs.** At most two outputs are examined: one is the answer, a second makes it
//!   an error. The deadline is checked again before asking for the second.
//! - **Output size.** The body is written incrementally and the write stops with an error
//!   as soon as it passes [`Limits::max_output_bytes`]; values nested deeper than
//!   [`MAX_OUTPUT_DEPTH`] are refused.
//!
//! - **Stack.** A run gets at least 192 MiB of stack (a segment of its own, mapped lazily,
//!   unless the thread has that much left), and a step fails once less than 96 MiB remain,
//!   so deep recursion through the library ends in an error.
//!
//! What is *not* bounded: one single built-in operation on values the expression built.
//! `"x" * 1e9` allocates before anything can check it, and the built-ins that recurse
//! over a value (`..`, `walk`, `tojson`, comparisons) do not step: over a value the
//! expression itself nested hundreds of thousands of levels deep (one step, or one element
//! of the message, per level) they can exhaust the run's stack, which aborts the process.
//! Such values take an expression written to build them, not a message; the step and time
//! bounds stop loops, which is what a mistaken expression runs into.
//!
//! Built-ins that reach outside the message are replaced: `env` and `$ENV` (the process
//! environment holds secrets) and `halt`/`halt_error` (they would exit the process) fail
//! with an error, and `debug`/`stderr` print nothing (message contents do not go to logs).
//!
//! # Files
//!
//! `compile` (the standard library with ticks, the replaced natives, error positions),
//! `recursion` (the compile-time refusal of recursive definitions), `limits` (the bounds
//! and the step budget of one run), `run` (what a run carries and how it ends), `output`
//! (the bounded JSON writer) and `error` ([`ExprError`] and where it points).

use std::fmt;
use std::sync::Arc;

use jaq_core::ValT as _;
use jaq_json::Val;
use serde::Deserialize as _;

mod compile;
mod error;
mod limits;
mod output;
mod recursion;
mod run;

#[cfg(test)]
mod tests;

pub use error::{ExprError, Position};
pub use limits::{DEADLINE_EVERY, Limits, MAX_OUTPUT_DEPTH};

use limits::on_own_stack;
use output::Writer;
use run::{Data, parse};

/// A compiled jq expression with its source and bounds; shared by [`Filter`] and
/// [`Transform`]. Cloning shares the compiled program.
#[derive(Clone)]
pub struct Expr {
    src: Arc<str>,
    program: Arc<jaq_core::Filter<Data>>,
    limits: Limits,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr")
            .field("src", &&*self.src)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Expr {
    /// Parse and compile `src` with the default [`Limits`].
    pub fn compile(src: &str) -> Result<Self, ExprError> {
        let program = compile::compile(src)?;
        Ok(Self {
            src: src.into(),
            program: Arc::new(program),
            limits: Limits::default(),
        })
    }

    /// The same program with other bounds.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The bounds each run is held to.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// An endpoint's `filter`: decides from a message's JSON whether the endpoint receives it.
/// `Serialize` writes the expression as written (it is configuration, not a secret).
#[derive(Debug, Clone)]
pub struct Filter(Expr);

impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.source())
    }
}

impl Filter {
    /// Parse and compile a filter with the default [`Limits`].
    pub fn compile(src: &str) -> Result<Self, ExprError> {
        Expr::compile(src).map(Self)
    }

    /// The same filter with other bounds.
    #[must_use]
    pub fn with_limits(self, limits: Limits) -> Self {
        Self(self.0.with_limits(limits))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        self.0.source()
    }

    /// Whether the message passes: its single output is truthy (not `false`, not `null`).
    pub fn matches(&self, message: &serde_json::Value) -> Result<bool, ExprError> {
        on_own_stack(|| {
            let input = Val::deserialize(message).map_err(|e| ExprError::Input(e.to_string()))?;
            Ok(self.0.run_one(input)?.as_bool())
        })
    }

    /// [`Filter::matches`] over the raw body.
    pub fn matches_bytes(&self, body: &[u8]) -> Result<bool, ExprError> {
        on_own_stack(|| Ok(self.0.run_one(parse(body)?)?.as_bool()))
    }
}

/// An endpoint's `transform`: maps a message's JSON to the body the endpoint receives.
/// `Serialize` writes the expression as written.
#[derive(Debug, Clone)]
pub struct Transform(Expr);

impl serde::Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.source())
    }
}

impl Transform {
    /// Parse and compile a transform with the default [`Limits`].
    pub fn compile(src: &str) -> Result<Self, ExprError> {
        Expr::compile(src).map(Self)
    }

    /// The same transform with other bounds.
    #[must_use]
    pub fn with_limits(self, limits: Limits) -> Self {
        Self(self.0.with_limits(limits))
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        self.0.source()
    }

    /// The body for a message: the single output, serialised as compact JSON.
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, ExprError> {
        on_own_stack(|| {
            let out = self.0.run_one(parse(body)?)?;
            let mut writer = Writer {
                out: Vec::new(),
                max: self.0.limits.max_output_bytes,
            };
            writer.value(&out, 0)?;
            Ok(writer.out)
        })
    }
}
