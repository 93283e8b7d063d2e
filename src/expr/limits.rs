//! The bounds of one run ([`Limits`]) and the budget that enforces them step by step
//! ([`Budget`]), including the stack a run gets and keeps.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::ExprError;

/// How often (in steps) [`Limits::max_time`] is compared with the clock: reading the clock
/// costs more than the rest of a step.
pub const DEADLINE_EVERY: u64 = 256;

/// The deepest nesting of arrays and objects a transform may produce (serde_json's own
/// limit when a receiver parses the body).
pub const MAX_OUTPUT_DEPTH: usize = 128;

/// Stack that must remain for a step to go on; below it the run fails instead of
/// overflowing the stack (which would abort the process). Half or more of what a run
/// starts with (see [`RUN_STACK`]): when a deep recursion fails, its chain of lazy
/// iterators is dropped from the top, which recurses as deep again and needs room of its
/// own.
const MIN_STACK: usize = 96 * 1024 * 1024;

/// The stack a run starts with at least (see [`on_own_stack`]).
const RUN_STACK: usize = 192 * 1024 * 1024;

/// The size of the stack segment mapped for a run whose thread has less than
/// [`RUN_STACK`] left.
const EVAL_STACK: usize = 256 * 1024 * 1024;

/// Bounds on one run of an expression over one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Steps (calls of standard-library definitions and `range` outputs) per message.
    pub max_steps: u64,
    /// Wall-clock time per message, checked every [`DEADLINE_EVERY`] steps and between
    /// outputs.
    pub max_time: Duration,
    /// Size of a transform's serialised output.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    /// 1,000,000 steps, 100 ms, 1 MiB (the default `security.max_payload_bytes`). The
    /// registry's `model_registered` transform takes well under a hundred steps.
    fn default() -> Self {
        Self {
            max_steps: 1_000_000,
            max_time: Duration::from_millis(100),
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// Run `f` (parse, evaluate, write and drop every value of one run) with at least
/// [`RUN_STACK`] bytes of stack. jaq recurses on the Rust stack, and so does dropping a
/// deeply nested value: an expression like `reduce .[] as $x (null; [.])` over a large
/// array builds one nested as deep as the array is long without a single step, and
/// dropping it on a 2 MiB runtime thread would overflow the stack and abort the process.
/// On a thread with less left, a segment of [`EVAL_STACK`] bytes is mapped for the run
/// (lazily, so only the pages a run touches cost memory; mapping and unmapping it costs
/// some 20 µs). A thread spawned with a stack of [`EVAL_STACK`] bytes runs expressions
/// without that cost.
pub(super) fn on_own_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(RUN_STACK, EVAL_STACK, f)
}

/// Steps, deadline and stack of one run. Single-threaded by construction (a run happens on
/// the caller's thread), hence `Cell`.
pub(super) struct Budget {
    limits: Limits,
    started: Instant,
    steps: Cell<u64>,
    exceeded: Cell<Option<ExprError>>,
}

impl Budget {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            started: Instant::now(),
            steps: Cell::new(0),
            exceeded: Cell::new(None),
        }
    }

    /// One step; fails (and keeps failing) once a bound is passed.
    pub(super) fn tick(&self) -> Result<(), ExprError> {
        self.check()?;
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > self.limits.max_steps {
            return self.exceed(ExprError::Steps(self.limits.max_steps));
        }
        if stacker::remaining_stack().is_some_and(|left| left < MIN_STACK) {
            return self.exceed(ExprError::Depth);
        }
        if steps.is_multiple_of(DEADLINE_EVERY) {
            self.deadline()?;
        }
        Ok(())
    }

    pub(super) fn deadline(&self) -> Result<(), ExprError> {
        if self.started.elapsed() > self.limits.max_time {
            return self.exceed(ExprError::Time(self.limits.max_time));
        }
        Ok(())
    }

    fn exceed(&self, e: ExprError) -> Result<(), ExprError> {
        self.exceeded.set(Some(e.clone()));
        Err(e)
    }

    /// The bound passed earlier in the run, if any.
    pub(super) fn check(&self) -> Result<(), ExprError> {
        let e = self.exceeded.take();
        self.exceeded.set(e.clone());
        e.map_or(Ok(()), Err)
    }
}
