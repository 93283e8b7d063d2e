//! Unit tests of [`super`]: keys, event types, envelopes and the body checks.

use super::*;

fn fixtures() -> serde_json::Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/signatures.json"
    )))
    .unwrap()
}

fn default_fields() -> Vec<String> {
    ["model_id", "token_symbol", "mlflow_run_id", "model_version"]
        .map(String::from)
        .to_vec()
}

#[test]
fn a_repeated_field_counts_with_its_last_value_and_escaped_keys_are_matched() {
    let body = Bytes::from_static(
        br#"{"event_type":"first","idempotency_key":"k-1","event_type":"last","trace\u0070arent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#,
    );
    let p = parse(&body, "c", false, &[], 1 << 20).unwrap();
    assert_eq!(p.event_type, "last", "like a JSON map: the last value wins");
    assert_eq!(p.idempotency_key, "k-1");
    assert_eq!(
        p.traceparent.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        "a key written with an escape is the same key"
    );
}

#[test]
fn reproduces_the_registry_publishers_idempotency_key() {
    let f = fixtures();
    let body = Bytes::from(
        f["model_ready_message"]["body"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let p = parse(
        &body,
        "hokusai:model_ready_queue:pubsub",
        false,
        &default_fields(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        p.idempotency_key,
        f["model_ready_message"]["idempotency_key"]
            .as_str()
            .unwrap()
    );
    assert_eq!(p.body, body, "the body is forwarded byte for byte");
}

#[test]
fn unwraps_the_envelope_and_keys_it_like_the_pubsub_message() {
    let f = fixtures();
    let body = Bytes::from(f["envelope"]["body"].as_str().unwrap().to_string());
    let p = parse(
        &body,
        "hokusai:model_ready_queue",
        true,
        &default_fields(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        p.idempotency_key,
        f["model_ready_message"]["idempotency_key"]
            .as_str()
            .unwrap(),
        "the payload carries the key fields: the same key as the pub/sub message"
    );
    assert_eq!(p.event_type, "model_ready_to_deploy");
    let expected_payload = f["model_ready_message"]["body"].as_str().unwrap();
    assert_eq!(std::str::from_utf8(&p.body).unwrap(), expected_payload);
}

/// The registry's list envelope and its pub/sub message for one event (the envelope's
/// payload is the pub/sub body), and the key Python computes:
/// `uuid5(NAMESPACE_DNS, "model-7f3a:demo-token:9b1c2d3e4f:3")`.
const PUBSUB_BODY: &str = r#"{"model_id":"model-7f3a","token_symbol":"demo-token","model_version":"3","mlflow_run_id":"9b1c2d3e4f","tags":{"team":"nlp"}}"#;
const REGISTRY_KEY: &str = "401caf00-623e-52e3-87e7-7be962a61f23";

fn envelope(payload: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"message_id":"3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192","message_type":"model_ready_to_deploy","payload":{payload},"timestamp":"2026-11-28T15:00:00","retry_count":0,"max_retries":3}}"#
    ))
}

#[test]
fn the_envelope_and_the_pubsub_message_of_one_event_get_the_same_key() {
    let f = default_fields();
    let direct = parse(&Bytes::from(PUBSUB_BODY), "pubsub", false, &f, 1 << 20).unwrap();
    let wrapped = parse(&envelope(PUBSUB_BODY), "list", true, &f, 1 << 20).unwrap();
    assert_eq!(direct.idempotency_key, REGISTRY_KEY);
    assert_eq!(wrapped.idempotency_key, REGISTRY_KEY);
    assert_eq!(wrapped.body, Bytes::from(PUBSUB_BODY));
}

#[test]
fn an_envelope_whose_payload_lacks_the_key_fields_keeps_its_message_id() {
    let p = parse(
        &envelope(r#"{"model_id":"m","note":"no token symbol"}"#),
        "list",
        true,
        &default_fields(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(p.idempotency_key, "3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192");
    let p = parse(
        &envelope(r#"{"idempotency_key":"k-9","model_id":"m"}"#),
        "list",
        true,
        &default_fields(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        p.idempotency_key, "k-9",
        "the payload's own key comes first"
    );
}

#[test]
fn a_run_less_model_keys_with_none_like_the_registry() {
    let body = Bytes::from_static(
        br#"{"model_id":"m","token_symbol":"t","mlflow_run_id":null,"model_version":2.0,"x":true}"#,
    );
    let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
    assert_eq!(
        p.idempotency_key,
        Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"m:t:None:2.0").to_string()
    );
}

#[test]
fn an_explicit_idempotency_key_field_wins_over_the_fields() {
    let body = Bytes::from_static(br#"{"idempotency_key":"k-1","model_id":"m","token_symbol":"t","mlflow_run_id":"r","model_version":"1"}"#);
    let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
    assert_eq!(p.idempotency_key, "k-1");
}

#[test]
fn missing_fields_fall_back_to_a_hash_of_channel_and_body() {
    let body = Bytes::from_static(br#"{"model_id":"m"}"#);
    let a = parse(&body, "c1", false, &default_fields(), 1 << 20).unwrap();
    let b = parse(&body, "c1", false, &default_fields(), 1 << 20).unwrap();
    let c = parse(&body, "c2", false, &default_fields(), 1 << 20).unwrap();
    assert_eq!(a.idempotency_key, b.idempotency_key);
    assert_ne!(a.idempotency_key, c.idempotency_key);
    assert_eq!(a.idempotency_key, fallback_key("c1", &body));
}

#[test]
fn event_type_comes_from_event_type_then_message_type_then_channel() {
    let fields = default_fields();
    let p = |b: &'static [u8]| {
        parse(&Bytes::from_static(b), "chan", false, &fields, 1 << 20)
            .unwrap()
            .event_type
    };
    assert_eq!(p(br#"{"event_type":"a","message_type":"b"}"#), "a");
    assert_eq!(p(br#"{"message_type":"b"}"#), "b");
    assert_eq!(p(br#"{"x":1}"#), "chan");
    assert_eq!(p(br#"[1,2]"#), "chan");
}

#[test]
fn non_json_and_oversized_messages_are_rejected_with_a_reason() {
    let f = default_fields();
    let e = parse(&Bytes::from_static(b"not json"), "c", false, &f, 1 << 20).unwrap_err();
    assert!(matches!(e, IngestError::NotJson(_)), "{e}");
    let e = parse(
        &Bytes::from_static(b"{\"a\":\"0123456789\"}"),
        "c",
        false,
        &f,
        8,
    )
    .unwrap_err();
    assert_eq!(e, IngestError::TooLarge { size: 18, max: 8 });
    assert!(e.to_string().contains("max_payload_bytes"));
    let e = parse(&Bytes::from_static(b"{\"a\":1}"), "c", true, &f, 1 << 20).unwrap_err();
    assert_eq!(e, IngestError::NotEnvelope("no `payload` field"));
}

#[test]
fn keys_and_event_types_that_cannot_be_header_values_are_passed_over() {
    let f = default_fields();
    let body = Bytes::from(
        r#"{"idempotency_key":"","event_type":"caf\u00e9","message_type":"ok type","model_id":"m"}"#,
    );
    let p = parse(&body, "chan", false, &f, 1 << 20).unwrap();
    assert_eq!(p.event_type, "ok type");
    assert_eq!(p.idempotency_key, fallback_key("chan", &p.body));
    let body = Bytes::from_static(br#"{"idempotency_key":"a\nb"}"#);
    let p = parse(&body, "ch\u{e9}", false, &f, 1 << 20).unwrap();
    assert!(is_header_token(&p.idempotency_key), "{}", p.idempotency_key);
    assert_eq!(p.event_type, "ch_");
}

#[test]
fn numeric_fields_join_as_written() {
    let body = Bytes::from_static(
        br#"{"model_id":"m","token_symbol":"t","mlflow_run_id":"r","model_version":3}"#,
    );
    let p = parse(&body, "c", false, &default_fields(), 1 << 20).unwrap();
    assert_eq!(
        p.idempotency_key,
        Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"m:t:r:3").to_string()
    );
}

#[test]
fn invalid_utf8_inside_a_string_is_refused_though_serde_would_skip_it() {
    let body: &[u8] = b"{\"model_id\":\"m\xff\xfe\",\"event_type\":\"x\"}";
    // What let it through before: serde_json skips the string without checking it.
    assert!(serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok());
    let e = validate(body, 128).unwrap_err();
    assert_eq!(e, IngestError::InvalidUtf8 { offset: 14 });
    assert!(e.to_string().contains("invalid UTF-8 at byte 14"), "{e}");
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_and_strings_do_not_count() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(validate(deep(128).as_bytes(), 128), Ok(()));
    assert_eq!(
        validate(deep(129).as_bytes(), 128),
        Err(IngestError::TooDeep {
            max: 128,
            offset: 128
        })
    );
    let e = validate(deep(100_000).as_bytes(), 128).unwrap_err();
    assert!(e.to_string().contains("security.max_json_depth 128"), "{e}");
    // Brackets and escaped quotes inside strings are text, not structure.
    let body = br#"{"a":"[[[{{{\"[[[","b":[{"c":"]]]"}]}"#;
    assert_eq!(validate(body, 3), Ok(()));
    assert!(validate(body, 2).is_err());
    // The registry's message passes.
    let f = fixtures();
    let msg = f["envelope"]["body"].as_str().unwrap();
    assert_eq!(validate(msg.as_bytes(), 128), Ok(()));
}

#[test]
fn a_received_body_is_checked_for_size_before_its_encoding_and_depth() {
    let body = Bytes::from_static(b"{\"a\":\"\xff\xff\xff\xff\"}");
    let small = IngestSettings {
        key_fields: default_fields(),
        max_payload_bytes: 8,
        max_json_depth: 128,
    };
    let e = parse_received(&body, "c", false, &small).unwrap_err();
    assert_eq!(e, IngestError::TooLarge { size: 12, max: 8 });
    let roomy = IngestSettings {
        max_payload_bytes: 1 << 20,
        ..small
    };
    let e = parse_received(&body, "c", false, &roomy).unwrap_err();
    assert_eq!(e, IngestError::InvalidUtf8 { offset: 6 });
    let ok = parse_received(
        &Bytes::from_static(br#"{"event_type":"x"}"#),
        "c",
        false,
        &roomy,
    );
    assert_eq!(ok.unwrap().event_type, "x");
}
