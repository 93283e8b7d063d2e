//! Running a compiled program over one message: the data every native sees (the program's
//! look-up table and the budget), and how a run's outputs become one answer or an error.

use jaq_core::{Ctx, DataT, Error as JqError, Exn, Lut, Vars};
use jaq_json::Val;
use serde::Deserialize as _;

use super::error::quote;
use super::limits::Budget;
use super::{Expr, ExprError};

impl Expr {
    /// Run over a parsed message and return its single output.
    pub(super) fn run_one(&self, input: Val) -> Result<Val, ExprError> {
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

/// Parse a body with serde_json, whose recursion limit keeps a deeply nested message from
/// overflowing the stack.
pub(super) fn parse(body: &[u8]) -> Result<Val, ExprError> {
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

/// The kind of data the compiled program runs on: jaq's JSON values, plus the run's
/// [`State`] for the natives.
pub(super) struct Data;

impl DataT for Data {
    type V<'a> = Val;
    type Data<'a> = &'a State<'a>;
}

/// What one run carries: the program's look-up table (jaq needs it) and the budget.
pub(super) struct State<'a> {
    /// The compiled program's look-up table.
    pub(super) lut: &'a Lut<Data>,
    /// The steps, deadline and stack left.
    pub(super) budget: &'a Budget,
}

impl<'a> jaq_core::data::HasLut<'a, Data> for &'a State<'a> {
    fn lut(&self) -> &'a Lut<Data> {
        self.lut
    }
}

pub(super) fn tick_error<'a>(e: ExprError) -> Exn<'a, Val> {
    Exn::from(JqError::str(e))
}
