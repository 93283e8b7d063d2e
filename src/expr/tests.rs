//! Unit tests of filters and transforms: outputs, errors and every bound.

use std::time::Duration;

use serde_json::json;

use super::*;

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
