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

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jaq_core::box_iter::box_once;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Compiler, Ctx, DataT, Error as JqError, Exn, Lut, Native, ValT, Vars};
use jaq_json::Val;
use serde::Deserialize as _;

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

/// The longest piece of an expression or of a runtime error quoted in an [`ExprError`].
const MAX_QUOTE: usize = 200;

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

/// Where in an expression a compile error is: 1-based line and column (in characters),
/// the byte offset, and the text found there (a piece of the expression, never of a
/// message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Byte offset into the expression.
    pub offset: usize,
    /// Whether the expression has more than one line (then the line is shown too).
    pub multiline: bool,
}

impl Position {
    fn at(src: &str, offset: usize) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            line,
            column,
            offset,
            multiline: src.contains('\n'),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multiline {
            write!(f, "line {}, column {}", self.line, self.column)
        } else {
            write!(f, "column {}", self.column)
        }
    }
}

/// Why an expression did not compile, or did not give an answer for one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The expression is not valid jq.
    #[error("syntax error at {position}: {message}")]
    Syntax {
        /// What was expected and what was found.
        message: String,
        /// Where.
        position: Position,
    },
    /// The expression names a filter or variable that does not exist, or uses something
    /// the bridge does not allow (modules, recursive definitions).
    #[error("{message} at {position}")]
    Compile {
        /// What is wrong.
        message: String,
        /// Where.
        position: Position,
    },
    /// The message body is not JSON.
    #[error("the message is not JSON: {0}")]
    Input(String),
    /// The expression failed on this message (jq's `error`, a type error, …).
    #[error("expression failed: {0}")]
    Runtime(String),
    /// The expression yielded no value.
    #[error("expression yielded no value (exactly one is required)")]
    NoOutput,
    /// The expression yielded more than one value.
    #[error("expression yielded more than one value (exactly one is required)")]
    SeveralOutputs,
    /// The expression took more steps than [`Limits::max_steps`].
    #[error("expression took more than {0} steps")]
    Steps(u64),
    /// The expression ran longer than [`Limits::max_time`].
    #[error("expression ran longer than {0:?}")]
    Time(Duration),
    /// The expression nested calls deeper than the thread's stack allows.
    #[error("expression nested too deeply")]
    Depth,
    /// The transform's output is larger than [`Limits::max_output_bytes`].
    #[error("expression output is larger than {0} bytes")]
    OutputTooLarge(usize),
    /// The transform's output cannot be written as JSON.
    #[error("expression output is not JSON: {0}")]
    NotJson(String),
}

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
        let program = compile(src)?;
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

    /// Run over a parsed message and return its single output.
    fn run_one(&self, input: Val) -> Result<Val, ExprError> {
        let budget = Budget::new(self.limits);
        let state = State {
            lut: &self.program.lut,
            budget: &budget,
        };
        let ctx = Ctx::<Data>::new(&state, Vars::new([]));
        let mut outputs = self.program.id.run((ctx, input));
        let first = outputs.next();
        budget.check()?;
        let first = match first {
            None => return Err(ExprError::NoOutput),
            Some(out) => out.map_err(runtime_error)?,
        };
        budget.deadline()?;
        let second = outputs.next();
        budget.check()?;
        match second {
            None => Ok(first),
            Some(Ok(_)) => Err(ExprError::SeveralOutputs),
            Some(Err(e)) => Err(runtime_error(e)),
        }
    }
}

/// An endpoint's `filter`: decides from a message's JSON whether the endpoint receives it.
#[derive(Debug, Clone)]
pub struct Filter(Expr);

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
#[derive(Debug, Clone)]
pub struct Transform(Expr);

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

/// Run `f` (parse, evaluate, write and drop every value of one run) with at least
/// [`RUN_STACK`] bytes of stack. jaq recurses on the Rust stack, and so does dropping a
/// deeply nested value: an expression like `reduce .[] as $x (null; [.])` over a large
/// array builds one nested as deep as the array is long without a single step, and
/// dropping it on a 2 MiB runtime thread would overflow the stack and abort the process.
/// On a thread with less left, a segment of [`EVAL_STACK`] bytes is mapped for the run
/// (lazily, so only the pages a run touches cost memory; mapping and unmapping it costs
/// some 20 µs). A thread spawned with a stack of [`EVAL_STACK`] bytes runs expressions
/// without that cost.
fn on_own_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(RUN_STACK, EVAL_STACK, f)
}

/// Parse a body with serde_json, whose recursion limit keeps a deeply nested message from
/// overflowing the stack.
fn parse(body: &[u8]) -> Result<Val, ExprError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let val = Val::deserialize(&mut de).map_err(|e| ExprError::Input(e.to_string()))?;
    de.end().map_err(|e| ExprError::Input(e.to_string()))?;
    Ok(val)
}

fn runtime_error(e: Exn<'_, Val>) -> ExprError {
    match e.get_err() {
        Ok(e) => ExprError::Runtime(quote(&e.to_string())),
        // `halt` is replaced by an error, so this is only reached if jaq adds another
        // kind of exception; it must still not exit the process.
        Err(_) => ExprError::Runtime("expression stopped without a value".into()),
    }
}

/// At most [`MAX_QUOTE`] characters of `s`, marked when cut.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

// ---------------------------------------------------------------------------------------
// Running: the data every native sees, and the step budget.

/// The kind of data the compiled program runs on: jaq's JSON values, plus the run's
/// [`State`] for the natives.
struct Data;

impl DataT for Data {
    type V<'a> = Val;
    type Data<'a> = &'a State<'a>;
}

/// What one run carries: the program's look-up table (jaq needs it) and the budget.
struct State<'a> {
    lut: &'a Lut<Data>,
    budget: &'a Budget,
}

impl<'a> jaq_core::data::HasLut<'a, Data> for &'a State<'a> {
    fn lut(&self) -> &'a Lut<Data> {
        self.lut
    }
}

/// Steps, deadline and stack of one run. Single-threaded by construction (a run happens on
/// the caller's thread), hence `Cell`.
struct Budget {
    limits: Limits,
    started: Instant,
    steps: Cell<u64>,
    exceeded: Cell<Option<ExprError>>,
}

impl Budget {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            started: Instant::now(),
            steps: Cell::new(0),
            exceeded: Cell::new(None),
        }
    }

    /// One step; fails (and keeps failing) once a bound is passed.
    fn tick(&self) -> Result<(), ExprError> {
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

    fn deadline(&self) -> Result<(), ExprError> {
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
    fn check(&self) -> Result<(), ExprError> {
        let e = self.exceeded.take();
        self.exceeded.set(e.clone());
        e.map_or(Ok(()), Err)
    }
}

fn tick_error<'a>(e: ExprError) -> Exn<'a, Val> {
    Exn::from(JqError::str(e))
}

// ---------------------------------------------------------------------------------------
// Compiling: the standard library with ticks, the replaced natives, error positions.

/// Definitions that come before the standard library: `range/3` with a tick per output.
const PRELUDE: &str = "def range($from; $upto; $by): __range($from; $upto; $by) | __tick;";

/// Definitions that come after the standard library: jq's `IN`, which jaq lacks and
/// filters use to pick values from a list.
const POSTLUDE: &str = "def IN(s): any(s == .; .); def IN(src; s): any(src == s; .);";

/// Natives replaced or renamed (see the module docs).
const REPLACED: &[&str] = &["env", "halt", "stderr_empty", "debug_empty", "range"];

fn funs() -> impl Iterator<Item = Fun<Data>> {
    let library = jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>());
    let mut kept = Vec::new();
    let mut range = None;
    for (name, args, native) in library {
        if name == "range" {
            range = Some(("__range", args, native));
        } else if !REPLACED.contains(&name) {
            kept.push((name, args, native));
        }
    }
    let env: Native<Data> = Native::new(|_| {
        box_once(Err(tick_error_str(
            "`env` is not available in bridge expressions",
        )))
    });
    let halt: Native<Data> = Native::new(|_| {
        box_once(Err(tick_error_str(
            "`halt` is not available in bridge expressions",
        )))
    });
    let silent = || -> Native<Data> { Native::new(|_| Box::new(core::iter::empty())) };
    let tick = Native::<Data>::new(|cv| match cv.0.data().budget.tick() {
        Ok(()) => box_once(Ok(cv.1)),
        Err(e) => box_once(Err(tick_error(e))),
    })
    .with_paths(|cv| match cv.0.data().budget.tick() {
        Ok(()) => box_once(Ok(cv.1)),
        Err(e) => box_once(Err(tick_error(e))),
    })
    .with_update(|cv, f| match cv.0.data().budget.tick() {
        Ok(()) => f(cv.1),
        Err(e) => box_once(Err(tick_error(e))),
    });
    kept.into_iter().chain(range).chain([
        ("env", v(0), env),
        ("halt", v(1), halt),
        ("stderr_empty", v(0), silent()),
        ("debug_empty", v(0), silent()),
        ("__tick", v(0), tick),
    ])
}

fn tick_error_str<'a>(s: &str) -> Exn<'a, Val> {
    Exn::from(JqError::str(s))
}

/// The standard library, each definition starting with a tick.
fn defs() -> impl Iterator<Item = Def<&'static str>> {
    let prelude = load::parse(PRELUDE, |p| p.defs()).unwrap_or_default();
    let postlude = load::parse(POSTLUDE, |p| p.defs()).unwrap_or_default();
    prelude
        .into_iter()
        .chain(jaq_core::defs())
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(postlude)
        .map(ticked)
}

/// A definition whose body starts with a tick, and so do the definitions local to it
/// (`def repeat(f): def rec: f, rec; rec;` loops through the local `rec`). The library
/// only defines local definitions at the start of a body, where this finds them; the
/// step-bound tests over `repeat`, `recurse` and `while` fail if that changes.
fn ticked(def: Def<&'static str>) -> Def<&'static str> {
    fn locals(term: &mut Term<&'static str>) {
        if let Term::Def(defs, rest) = term {
            *defs = std::mem::take(defs).into_iter().map(ticked).collect();
            locals(rest);
        }
    }
    let mut body = def.body;
    locals(&mut body);
    Def {
        body: Term::BinOp(
            Box::new(Term::Call("__tick", Vec::new())),
            BinaryOp::Pipe(None),
            Box::new(body),
        ),
        ..def
    }
}

fn compile(src: &str) -> Result<jaq_core::Filter<Data>, ExprError> {
    let arena = Arena::default();
    let loader = Loader::new(defs());
    let modules = loader
        .load(
            &arena,
            File {
                code: src,
                path: (),
            },
        )
        .map_err(|errs| load_error(src, errs))?;
    // Imports would read files; the loader above has no reader, and this makes the
    // refusal explicit.
    load::import(&modules, |_| {
        Err("modules are not available in bridge expressions".into())
    })
    .map_err(|errs| load_error(src, errs))?;
    no_recursion(src)?;
    Compiler::default()
        .with_funs(funs())
        .compile(modules)
        .map_err(|errs| {
            let (found, undefined) = errs
                .into_iter()
                .flat_map(|(_, errs)| errs)
                .next()
                .map_or(("", None), |(found, u)| (found, Some(u)));
            let message = match undefined {
                Some(u) => format!("undefined {} `{}`", u.as_str(), quote(found)),
                None => "the expression does not compile".to_owned(),
            };
            ExprError::Compile {
                message,
                position: Position::at(src, offset_of(src, found)),
            }
        })
}

/// Byte offset of `part` (a slice of `whole`) in `whole`; the end when it is not one.
fn offset_of(whole: &str, part: &str) -> usize {
    let (start, p) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    if p >= start && p + part.len() <= start + whole.len() {
        p - start
    } else {
        whole.len()
    }
}

/// The first token of `found` (for messages), or "end of input".
fn found_text(found: &str) -> String {
    let token = found.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        "the end of the expression".to_owned()
    } else {
        let short: String = token.chars().take(20).collect();
        let cut = if short.len() < token.len() { "…" } else { "" };
        format!("`{short}{cut}`")
    }
}

fn load_error(src: &str, errs: load::Errors<&str, ()>) -> ExprError {
    use load::Error;
    let Some((_, err)) = errs.into_iter().next() else {
        return ExprError::Syntax {
            message: "invalid expression".into(),
            position: Position::at(src, 0),
        };
    };
    let (expected, found) = match err {
        Error::Io(errs) => {
            let (path, why) = errs.into_iter().next().unwrap_or(("", String::new()));
            return ExprError::Compile {
                message: quote(&why),
                position: Position::at(src, offset_of(src, path)),
            };
        }
        Error::Lex(errs) => match errs.into_iter().next() {
            Some((expected, found)) => (expected.as_str().to_owned(), found),
            None => (String::new(), ""),
        },
        Error::Parse(errs) => match errs.into_iter().next() {
            Some((expected, found)) => (expected.as_str().to_owned(), found),
            None => (String::new(), ""),
        },
    };
    let message = if expected.is_empty() {
        format!("unexpected {}", found_text(found))
    } else {
        format!("expected {expected}, found {}", found_text(found))
    };
    ExprError::Syntax {
        message,
        position: Position::at(src, offset_of(src, found)),
    }
}

/// Refuse definitions that call themselves, directly or through each other: they would
/// loop without ticking (see the module docs). Conservative by name and arity: a
/// definition that calls another of the same name and arity counts as recursive.
fn no_recursion(src: &str) -> Result<(), ExprError> {
    // The loader has parsed `src` already; this parse only fails for module headers,
    // which the loader refused above.
    let Some(term) = load::parse(src, |p| p.term()) else {
        return Ok(());
    };
    let mut defs = Vec::new();
    collect_defs(&term, &mut defs);
    // calls[i]: indices of the definitions that definition i's body calls.
    let calls: Vec<Vec<usize>> = defs
        .iter()
        .map(|def| {
            let mut names = Vec::new();
            collect_calls(&def.body, &mut names);
            defs.iter()
                .enumerate()
                .filter(|(_, d)| {
                    names
                        .iter()
                        .any(|(name, arity)| *name == d.name && *arity == d.args.len())
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    for (i, def) in defs.iter().enumerate() {
        // Depth-first search from i's callees for a path back to i.
        let mut seen = vec![false; defs.len()];
        let mut stack = calls[i].clone();
        while let Some(j) = stack.pop() {
            if j == i {
                return Err(ExprError::Compile {
                    message: format!(
                        "recursive definition `{}/{}` (not allowed in bridge expressions; \
                         use recurse, while, until, repeat, limit or range)",
                        def.name,
                        def.args.len()
                    ),
                    position: Position::at(src, offset_of(src, def.name)),
                });
            }
            if !std::mem::replace(&mut seen[j], true) {
                stack.extend(&calls[j]);
            }
        }
    }
    Ok(())
}

fn collect_defs<'s, 't>(term: &'t Term<&'s str>, out: &mut Vec<&'t Def<&'s str>>) {
    if let Term::Def(defs, _) = term {
        out.extend(defs.iter());
    }
    children(term, &mut |t| collect_defs(t, out));
}

fn collect_calls<'s>(term: &Term<&'s str>, out: &mut Vec<(&'s str, usize)>) {
    if let Term::Call(name, args) = term {
        out.push((name, args.len()));
    }
    children(term, &mut |t| collect_calls(t, out));
}

/// Visit every direct sub-term of `term`, including definition bodies.
fn children<'s, 't>(term: &'t Term<&'s str>, f: &mut dyn FnMut(&'t Term<&'s str>)) {
    use jaq_core::load::lex::StrPart;
    use jaq_core::path::Part;
    fn pattern<'s, 't>(p: &'t Pattern<&'s str>, f: &mut dyn FnMut(&'t Term<&'s str>)) {
        match p {
            Pattern::Var(_) => {}
            Pattern::Arr(ps) => ps.iter().for_each(|p| pattern(p, f)),
            Pattern::Obj(kvs) => kvs.iter().for_each(|(k, p)| {
                f(k);
                pattern(p, f);
            }),
        }
    }
    match term {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Str(_, parts) => parts.iter().for_each(|p| {
            if let StrPart::Term(t) = p {
                f(t)
            }
        }),
        Term::Arr(t) => t.iter().for_each(|t| f(t)),
        Term::Obj(kvs) => kvs.iter().for_each(|(k, v)| {
            f(k);
            v.iter().for_each(&mut *f);
        }),
        Term::Neg(t) | Term::Label(_, t) => f(t),
        Term::BinOp(l, op, r) => {
            f(l);
            if let BinaryOp::Pipe(Some(p)) = op {
                pattern(p, f);
            }
            f(r);
        }
        Term::Fold(_, xs, p, args) => {
            f(xs);
            pattern(p, f);
            args.iter().for_each(&mut *f);
        }
        Term::TryCatch(t, c) => {
            f(t);
            c.iter().for_each(|t| f(t));
        }
        Term::IfThenElse(branches, else_) => {
            branches.iter().for_each(|(c, t)| {
                f(c);
                f(t);
            });
            else_.iter().for_each(|t| f(t));
        }
        Term::Def(defs, t) => {
            defs.iter().for_each(|d| f(&d.body));
            f(t);
        }
        Term::Call(_, args) => args.iter().for_each(&mut *f),
        Term::Path(t, path) => {
            f(t);
            path.0.iter().for_each(|(part, _)| match part {
                Part::Index(i) => f(i),
                Part::Range(from, to) => {
                    from.iter().for_each(&mut *f);
                    to.iter().for_each(&mut *f);
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing the output: compact JSON, bounded in size and depth.

struct Writer {
    out: Vec<u8>,
    max: usize,
}

impl Writer {
    fn push(&mut self, bytes: &[u8]) -> Result<(), ExprError> {
        if self.out.len() + bytes.len() > self.max {
            return Err(ExprError::OutputTooLarge(self.max));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn string(&mut self, bytes: &[u8]) -> Result<(), ExprError> {
        let s = String::from_utf8_lossy(bytes);
        let json = serde_json::to_vec(&*s).map_err(|e| ExprError::NotJson(e.to_string()))?;
        self.push(&json)
    }

    fn value(&mut self, v: &Val, depth: usize) -> Result<(), ExprError> {
        if depth > MAX_OUTPUT_DEPTH {
            return Err(ExprError::NotJson(format!(
                "nested deeper than {MAX_OUTPUT_DEPTH} levels"
            )));
        }
        match v {
            Val::Null => self.push(b"null"),
            Val::Bool(true) => self.push(b"true"),
            Val::Bool(false) => self.push(b"false"),
            Val::Num(n) => self.number(n),
            Val::TStr(s) => self.string(s),
            Val::BStr(_) => Err(ExprError::NotJson(
                "a byte string has no JSON form (use `tostring` or `@base64`)".into(),
            )),
            Val::Arr(items) => {
                self.push(b"[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    self.value(item, depth + 1)?;
                }
                self.push(b"]")
            }
            Val::Obj(map) => {
                self.push(b"{")?;
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.push(b",")?;
                    }
                    match k {
                        Val::TStr(s) => self.string(s)?,
                        _ => {
                            return Err(ExprError::NotJson("an object key is not a string".into()));
                        }
                    }
                    self.push(b":")?;
                    self.value(item, depth + 1)?;
                }
                self.push(b"}")
            }
        }
    }

    fn number(&mut self, n: &jaq_json::Num) -> Result<(), ExprError> {
        use jaq_json::Num;
        match n {
            Num::Int(i) => self.push(i.to_string().as_bytes()),
            Num::BigInt(i) => self.push(i.to_string().as_bytes()),
            // jq writes a non-finite number as null too.
            Num::Float(f) if !f.is_finite() => self.push(b"null"),
            Num::Float(f) => {
                let json = serde_json::to_vec(f).map_err(|e| ExprError::NotJson(e.to_string()))?;
                self.push(&json)
            }
            // A decimal literal kept as written: valid JSON as it is, else via f64.
            Num::Dec(s) => {
                if serde_json::from_str::<serde_json::Number>(s).is_ok() {
                    self.push(s.as_bytes())
                } else {
                    let f = s.parse::<f64>().unwrap_or(f64::NAN);
                    self.number(&Num::Float(f))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transform(src: &str, body: &str) -> Result<String, ExprError> {
        let out = Transform::compile(src)?.apply(body.as_bytes())?;
        Ok(String::from_utf8(out).expect("JSON output is UTF-8"))
    }

    fn limited(src: &str, limits: Limits) -> Transform {
        Transform::compile(src)
            .expect("the expression compiles")
            .with_limits(limits)
    }

    #[test]
    fn a_filter_passes_a_message_whose_single_output_is_truthy() {
        let f = Filter::compile(".current_value > .baseline_value").unwrap();
        assert!(
            f.matches(&json!({"current_value": 2, "baseline_value": 1}))
                .unwrap()
        );
        assert!(
            !f.matches(&json!({"current_value": 1, "baseline_value": 2}))
                .unwrap()
        );
        let f = Filter::compile(".token_symbol").unwrap();
        assert!(f.matches(&json!({"token_symbol": "ABC"})).unwrap());
        assert!(
            f.matches(&json!({"token_symbol": 0})).unwrap(),
            "0 is truthy in jq"
        );
        assert!(!f.matches(&json!({"token_symbol": null})).unwrap());
        assert!(!f.matches(&json!({})).unwrap());
        assert!(!f.matches_bytes(br#"{"token_symbol":false}"#).unwrap());
        let f = Filter::compile(r#".token_symbol | IN("ABC", "XYZ")"#).unwrap();
        assert!(f.matches(&json!({"token_symbol": "XYZ"})).unwrap());
        assert!(!f.matches(&json!({"token_symbol": "abc"})).unwrap());
    }

    #[test]
    fn a_filter_with_no_or_several_outputs_is_an_error() {
        let f = Filter::compile(".a[]").unwrap();
        assert_eq!(f.matches(&json!({"a": []})), Err(ExprError::NoOutput));
        assert_eq!(
            f.matches(&json!({"a": [true, true]})),
            Err(ExprError::SeveralOutputs)
        );
        assert_eq!(f.matches(&json!({"a": [true]})), Ok(true));
    }

    #[test]
    fn a_runtime_error_names_what_failed() {
        let f = Filter::compile(r#"error("no token")"#).unwrap();
        match f.matches(&json!({})) {
            Err(ExprError::Runtime(why)) => assert!(why.contains("no token"), "{why}"),
            other => panic!("expected a runtime error, got {other:?}"),
        }
        let err = transform(".a + 1", r#"{"a":"x"}"#).unwrap_err();
        assert!(matches!(err, ExprError::Runtime(_)), "{err:?}");
    }

    #[test]
    fn a_transform_writes_its_single_output_as_compact_json() {
        assert_eq!(
            transform(
                r#"{id: .m, tags: [.t[] | ascii_upcase], n: (.n * 2), f: 0.5}"#,
                r#"{ "m" : "x", "t": ["a","b"], "n": 21 }"#
            )
            .unwrap(),
            r#"{"id":"x","tags":["A","B"],"n":42,"f":0.5}"#
        );
        assert_eq!(
            transform(".", r#"{"big":12345678901234567890}"#).unwrap(),
            r#"{"big":12345678901234567890}"#
        );
        assert_eq!(transform(r#""é\n""#, "null").unwrap(), r#""é\n""#);
        assert_eq!(transform("empty", "{}"), Err(ExprError::NoOutput));
        assert_eq!(transform("1, 2", "{}"), Err(ExprError::SeveralOutputs));
    }

    #[test]
    fn a_body_that_is_not_json_is_an_input_error() {
        assert!(matches!(transform(".", "{oops"), Err(ExprError::Input(_))));
        assert!(matches!(transform(".", "{} {}"), Err(ExprError::Input(_))));
    }

    #[test]
    fn a_syntax_error_names_the_column_and_what_was_found() {
        let err = Transform::compile("{id: .model_id)").unwrap_err();
        let ExprError::Syntax { position, .. } = &err else {
            panic!("expected a syntax error, got {err:?}");
        };
        assert_eq!(
            (position.line, position.column, position.offset),
            (1, 15, 14)
        );
        assert_eq!(
            err.to_string(),
            "syntax error at column 15: expected closing brace, found `)`"
        );

        let err = Filter::compile(".a |\n  .b +").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("syntax error at line 2, column 7: "),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_filter_is_a_compile_error_at_its_position() {
        let err = Filter::compile(".a | lenght").unwrap_err();
        assert_eq!(err.to_string(), "undefined filter `lenght` at column 6");
    }

    #[test]
    fn recursive_definitions_are_refused() {
        for src in [
            "def f: f; f",
            "def f: 1 + f; f",
            "def f(g): g | f(g); f(.)",
            "def a: def b: a; b; a",
        ] {
            let err = Filter::compile(src).unwrap_err();
            assert!(
                err.to_string().contains("recursive definition"),
                "{src}: {err}"
            );
        }
        assert!(Filter::compile("def f(g): g; def h: f(.); h").is_ok());
    }

    #[test]
    fn the_environment_and_halt_are_not_reachable() {
        for src in ["env", "$ENV", "halt", "halt_error", "{} | halt_error(1)"] {
            let result = Transform::compile(src).and_then(|t| t.apply(b"{}"));
            assert!(result.is_err(), "{src} gave {result:?}");
        }
        // debug/stderr pass their input on and print nothing.
        assert_eq!(transform("debug | stderr | .a", r#"{"a":1}"#).unwrap(), "1");
    }

    #[test]
    fn a_loop_past_the_step_bound_is_an_error_even_inside_try() {
        // The deadline is far away: only the step bound can stop these.
        let limits = Limits {
            max_steps: 1000,
            max_time: Duration::from_secs(600),
            ..Limits::default()
        };
        for src in [
            "[limit(100000; repeat(1))] | length",
            "last(range(1e9))",
            "try last(range(1e9)) catch 0",
            "[.[] | select(. > 0)] | length",
            "0 | [recurse(.+1; . < 1e9)] | length",
            "0 | [while(. < 1e9; .+1)] | length",
            "0 | until(. > 1e9; .+1)",
            "first(range(1e9) | select(. < 0))",
        ] {
            let input = format!("[{}]", vec!["1"; 5000].join(","));
            assert_eq!(
                limited(src, limits).apply(input.as_bytes()),
                Err(ExprError::Steps(1000)),
                "{src}"
            );
        }
        assert_eq!(
            limited("[range(10)] | length", limits)
                .apply(b"{}")
                .unwrap(),
            b"10"
        );
    }

    #[test]
    fn a_loop_past_the_time_bound_is_an_error() {
        // With steps unbounded only the deadline can stop this.
        let limits = Limits {
            max_steps: u64::MAX,
            max_time: Duration::from_millis(20),
            ..Limits::default()
        };
        assert_eq!(
            limited("last(range(1e15))", limits).apply(b"{}"),
            Err(ExprError::Time(limits.max_time))
        );
        assert_eq!(
            limited("1, last(range(1e15))", limits).apply(b"{}"),
            Err(ExprError::Time(limits.max_time))
        );
    }

    #[test]
    fn an_output_past_the_size_bound_is_an_error() {
        let limits = Limits {
            max_output_bytes: 100,
            ..Limits::default()
        };
        assert_eq!(
            limited("[range(100)]", limits).apply(b"{}"),
            Err(ExprError::OutputTooLarge(100))
        );
        assert_eq!(
            limited("[range(10)]", limits).apply(b"{}").unwrap(),
            b"[0,1,2,3,4,5,6,7,8,9]"
        );
    }

    #[test]
    fn an_output_nested_too_deeply_is_an_error_and_does_not_overflow_the_stack() {
        let err = transform("reduce range(200) as $i (0; [.])", "{}").unwrap_err();
        assert!(matches!(err, ExprError::NotJson(_)), "{err:?}");
        // A value nested as deep as a 1 MiB message is long, built without a step, is
        // built and dropped on the run's own stack.
        let input = format!("[{}]", vec!["0"; 500_000].join(","));
        let t = limited(
            "reduce .[] as $x (null; [.]) | 1",
            Limits {
                max_time: Duration::from_secs(600),
                ..Limits::default()
            },
        );
        assert_eq!(t.apply(input.as_bytes()).unwrap(), b"1");
    }

    #[test]
    fn compiled_expressions_are_shared_between_threads_and_show_their_source() {
        fn send_sync<T: Send + Sync + Clone>(_: &T) {}
        let t = Transform::compile(".a").unwrap();
        let f = Filter::compile(".a").unwrap();
        send_sync(&t);
        send_sync(&f);
        assert!(format!("{t:?}").contains(r#"src: ".a""#), "{t:?}");
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || t.apply(format!(r#"{{"a":{i}}}"#).as_bytes()).unwrap())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i.to_string().into_bytes());
        }
    }
}
