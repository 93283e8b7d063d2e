//! Why an expression did not compile or gave no answer ([`ExprError`]), and where in the
//! expression a compile error points ([`Position`]).

use std::fmt;
use std::time::Duration;

#[cfg(doc)]
use super::Limits;

/// The longest piece of an expression or of a runtime error quoted in an [`ExprError`].
const MAX_QUOTE: usize = 200;

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
    /// The position of byte `offset` of `src`.
    pub(super) fn at(src: &str, offset: usize) -> Self {
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

/// At most [`MAX_QUOTE`] characters of `s`, marked when cut.
pub(super) fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}
