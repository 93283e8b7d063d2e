//! Writing a transform's output: compact JSON, bounded in size and depth as it is written.

use jaq_json::Val;

use super::ExprError;
use super::limits::MAX_OUTPUT_DEPTH;

/// A bounded JSON writer: fails as soon as the output would pass `max` bytes.
pub(super) struct Writer {
    /// The JSON written so far.
    pub(super) out: Vec<u8>,
    /// The size it may not pass.
    pub(super) max: usize,
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

    pub(super) fn value(&mut self, v: &Val, depth: usize) -> Result<(), ExprError> {
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
