//! Compiling an expression: the standard library with a tick at the start of every
//! definition, the replaced natives, and compile errors with their position.

use jaq_core::box_iter::box_once;
use jaq_core::load::parse::{BinaryOp, Def, Term};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{Fun, v};
use jaq_core::{Compiler, Error as JqError, Exn, Native};
use jaq_json::Val;

use super::error::{ExprError, Position, quote};
use super::recursion::no_recursion;
use super::run::{Data, tick_error};

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

pub(super) fn compile(src: &str) -> Result<jaq_core::Filter<Data>, ExprError> {
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
pub(super) fn offset_of(whole: &str, part: &str) -> usize {
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
