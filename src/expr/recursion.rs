//! The refusal of recursive definitions: the only way to loop in jq without the standard
//! library, whose definitions tick, is a `def` that calls itself, which would not.

use jaq_core::load;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};

use super::compile::offset_of;
use super::error::{ExprError, Position};

/// Refuse definitions that call themselves, directly or through each other: they would
/// loop without ticking (see the module docs). Conservative by name and arity: a
/// definition that calls another of the same name and arity counts as recursive.
pub(super) fn no_recursion(src: &str) -> Result<(), ExprError> {
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
