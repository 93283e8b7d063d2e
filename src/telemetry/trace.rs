//! W3C trace context: the `traceparent` header sent with each delivery, continuing the
//! publisher's trace when its payload carried one.

use super::otel;

/// The `traceparent` to send for a delivery made inside `span`. With OpenTelemetry export
/// on, the span joins the publisher's trace (when the payload carried a valid
/// `traceparent`) and the header names the span itself; otherwise the header continues the
/// publisher's trace id with a fresh span id, or starts a new trace.
pub fn delivery_traceparent(span: &tracing::Span, parent: Option<&str>) -> String {
    otel::traceparent_for(span, parent).unwrap_or_else(|| traceparent(parent))
}

/// A W3C `traceparent` for one delivery: continues the publisher's trace when the payload
/// carried a valid `traceparent`, else starts a new trace. The span id is always new.
pub fn traceparent(parent: Option<&str>) -> String {
    use std::fmt::Write as _;
    // One allocation of the final size: this runs for every delivery attempt.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match parent.and_then(parse_trace_id) {
        Some(trace_id) => out.push_str(trace_id),
        None => {
            let _ = write!(out, "{:032x}", rand::random::<u128>() | 1);
        }
    }
    let _ = write!(out, "-{:016x}-01", rand::random::<u64>() | 1);
    out
}

/// The trace id of a valid version-00 `traceparent`.
fn parse_trace_id(tp: &str) -> Option<&str> {
    let mut parts = tp.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (version == "00"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parts.next().is_none())
    .then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_continues_a_valid_parent_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = traceparent(Some(parent));
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "span id must be new: {tp}"
        );
    }

    #[test]
    fn traceparent_starts_a_new_trace_for_garbage() {
        let tp = traceparent(Some("00-zz-zz-01"));
        let parts: Vec<_> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert!(parse_trace_id(&tp).is_some());
    }
}
