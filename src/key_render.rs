//! Idempotency key fields rendered as the registry's Python publisher renders them.
//!
//! The registry computes a message's key as
//! `uuid5(NAMESPACE_DNS, f"{model_id}:{token_symbol}:{mlflow_run_id}:{model_version}")` over
//! the values `json.loads` gives. For the bridge to put the same key on the webhook, each
//! field must become exactly the text Python's `f"{value}"` writes:
//!
//! | JSON value | Python value | text |
//! |---|---|---|
//! | `null` | `None` | `None` |
//! | `true` / `false` | `True` / `False` | `True` / `False` |
//! | integer (no `.`, `e`, `E`) | `int` (arbitrary precision) | as written; `-0` → `0` |
//! | any other number | `float` (correctly rounded) | `repr(float)`: shortest round-trip digits, `1e-05`, `0.0001`, `1.0`, `1e+16`; out of `f64` range `inf` / `-inf` |
//! | string | `str` | the decoded string, unquoted |
//! | object / array | `dict` / `list` | not rendered: no key from fields |
//!
//! Objects and arrays are left out on purpose: Python writes them with `repr` of every
//! nested string (quote choice, escapes by Unicode category), which no key field of the
//! registry's schema carries; a message with one falls back to the body hash, as does a
//! string that Python could not encode (a lone surrogate escape makes the registry's `uuid5`
//! raise). A field that is absent is not rendered either; the caller decides what that means.

use serde_json::value::RawValue;

/// The text Python's `f"{value}"` gives for the value `json.loads` makes of `raw`, or `None`
/// for an object, an array or a string with a lone surrogate (see the module docs).
pub fn python_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b'{' | b'[' => None,
        b'n' => Some("None".into()),
        b't' => Some("True".into()),
        b'f' => Some("False".into()),
        _ => Some(python_number(text)),
    }
}

/// A JSON number (valid JSON number syntax) as Python prints what `json.loads` makes of it:
/// an `int` when it has no fraction and no exponent, else a `float`.
pub fn python_number(text: &str) -> String {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        // `str::parse` rounds correctly, like Python's `float()`; out of range gives ±inf,
        // as in Python (`json.loads("1e400")` is `inf`).
        match text.parse::<f64>() {
            Ok(x) => python_float_repr(x),
            Err(_) => text.to_string(), // not reachable for validated JSON
        }
    } else if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
        "0".into() // `int("-0")` is 0
    } else {
        text.to_string()
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, laid out as CPython's
/// `float_repr_style = 'short'` does — positional with at least one fractional digit when the
/// decimal exponent is in `-4..16`, else `d[.ddd]e±XX` with at least two exponent digits.
///
/// Rust's `{:e}` formatting yields the same shortest round-trip digits (both pick the
/// shortest string that reads back to the same `f64`, ties to the nearest); only the layout
/// differs, which this function maps. Written here because no maintained crate offers
/// Python's layout.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // `{:e}` of a finite f64: `[-]d[.ddd]e[-]N`, e.g. `1e16`, `-1.5e-5`, `0e0`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> Option<String> {
        let raw: Box<RawValue> = serde_json::from_str(json).unwrap();
        python_text(&raw)
    }

    #[test]
    fn floats_use_pythons_repr_layout() {
        // Each pair checked against CPython 3: `repr(float(s))`.
        for (x, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (100000.0, "100000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e20, "1e+20"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(python_float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn json_values_render_as_python_f_strings_of_json_loads() {
        assert_eq!(text("null").as_deref(), Some("None"));
        assert_eq!(text("true").as_deref(), Some("True"));
        assert_eq!(text("false").as_deref(), Some("False"));
        assert_eq!(text("3").as_deref(), Some("3"));
        assert_eq!(text("-0").as_deref(), Some("0"));
        assert_eq!(
            text("123456789012345678901234567890").as_deref(),
            Some("123456789012345678901234567890"),
            "Python ints have no size limit"
        );
        assert_eq!(text("1e5").as_deref(), Some("100000.0"));
        assert_eq!(text("1E-5").as_deref(), Some("1e-05"));
        assert_eq!(text("1.0").as_deref(), Some("1.0"));
        assert_eq!(text("-0.0").as_deref(), Some("-0.0"));
        assert_eq!(text("1e400").as_deref(), Some("inf"));
        assert_eq!(text("-1e400").as_deref(), Some("-inf"));
        assert_eq!(text("1e-400").as_deref(), Some("0.0"));
        assert_eq!(text(r#""caf\u00e9 \"x\"""#).as_deref(), Some("café \"x\""));
        assert_eq!(text(r#""""#).as_deref(), Some(""));
        assert_eq!(text(r#"{"a":1}"#), None);
        assert_eq!(text("[1]"), None);
        assert_eq!(text(r#""\ud800""#), None, "a lone surrogate");
    }
}
