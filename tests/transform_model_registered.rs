//! The shipped `examples/transforms/model_registered.jq` builds exactly the body the
//! registry's own Python publisher builds for its `model_registered` webhook event.
//!
//! The registry's rules are reproduced in Python below (from the event's description):
//! every combination of the optional fields is run through the transform and through the
//! Python, in one `python3` process for the whole batch, and the outputs are compared as
//! parsed JSON.

mod common;

use common::python;
use redis_webhook_bridge::expr::Transform;
use serde_json::{Value, json};

const TRANSFORM: &str = include_str!("../examples/transforms/model_registered.jq");

/// The registry's rules for the `model_registered` event, as its publisher applies them.
const REGISTRY: &str = r#"
import json, sys

def model_registered(message):
    model = {
        "id": message["token_symbol"].lower(),
        "name": message.get("model_name"),
        "status": message.get("status"),
        "version": message.get("model_version"),
    }
    if message.get("mlflow_run_id") is not None:
        model["run_id"] = message["mlflow_run_id"]
    tags = message.get("tags") or {}
    user_id = tags.get("user_id") or tags.get("fulfilled_by_user_id")
    if user_id:
        model["user_id"] = user_id
    for field in ("api_schema", "eval_spec", "scorer_ref", "primary_metric", "benchmark_spec_id"):
        if message.get(field) is not None:
            model[field] = message[field]
    return {
        "event_type": "model_registered",
        "model": model,
        "timestamp": f"{message['timestamp']}Z",
        "source": "mlflow",
    }

with open(sys.argv[1]) as batch:
    for line in batch:
        print(json.dumps(model_registered(json.loads(line))))
"#;

/// A model-ready message as the registry publishes it, with the optional fields set by
/// `case`'s bits.
fn message(case: u32) -> Value {
    let bit = |n: u32| case & (1 << n) != 0;
    let token_symbol = ["Demo-Token", "ABC", "mIxEd_42"][case as usize % 3];
    let status = ["registered", "ready"][case as usize % 2];
    let mut m = json!({
        "model_id": format!("model-{case}"),
        "token_symbol": token_symbol,
        "metric_name": "accuracy",
        "baseline_value": 0.812,
        "current_value": 0.861,
        "model_name": "sentiment-classifier",
        "status": status,
        "model_version": if bit(9) { json!(3) } else { json!(format!("{case}")) },
        "mlflow_run_id": if bit(0) { json!(format!("run-{case:04}")) } else { Value::Null },
        "improvement_percentage": 6.03,
        "contributor_address": "0x1234567890abcdef1234567890abcdef12345678",
        "experiment_name": "sentiment",
        "timestamp": format!("2026-11-28T15:{:02}:00", case % 60),
        "message_version": "1.0",
        "api_schema": if bit(3) { json!({"input": {"text": "string"}, "output": {"label": "string"}}) } else { Value::Null },
        "eval_spec": if bit(4) { json!({"dataset": "imdb", "split": "test"}) } else { Value::Null },
        "scorer_ref": if bit(5) { json!("scorers/accuracy:v2") } else { Value::Null },
        "primary_metric": if bit(6) { json!("accuracy") } else { Value::Null },
        "benchmark_spec_id": if bit(7) { json!(format!("bench-{case}")) } else { Value::Null },
    });
    // tags: user_id, fulfilled_by_user_id, both, neither, an empty user_id, or no tags.
    m["tags"] = match (case >> 1) & 3 {
        0 if bit(8) => Value::Null,
        0 => json!({"team": "nlp"}),
        1 => json!({"team": "nlp", "user_id": "user-1"}),
        2 => json!({"fulfilled_by_user_id": "user-2"}),
        _ if bit(8) => json!({"user_id": "", "fulfilled_by_user_id": "user-2"}),
        _ => json!({"user_id": "user-1", "fulfilled_by_user_id": "user-2"}),
    };
    // Optional fields the registry leaves out altogether rather than sending as null.
    if bit(8) && !bit(3) {
        m.as_object_mut().expect("an object").remove("api_schema");
    }
    if bit(8) && !bit(0) {
        m.as_object_mut()
            .expect("an object")
            .remove("mlflow_run_id");
    }
    m
}

#[test]
fn the_model_registered_transform_builds_what_the_registry_builds() {
    let transform = Transform::compile(TRANSFORM).expect("the shipped transform compiles");
    let messages: Vec<Value> = (0..1024).map(message).collect();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let batch = dir.path().join("messages.jsonl");
    let lines: Vec<String> = messages.iter().map(Value::to_string).collect();
    std::fs::write(&batch, lines.join("\n") + "\n").expect("the batch is written");
    let out = python(REGISTRY, &[batch.to_str().expect("a UTF-8 path")]);
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Value> = String::from_utf8(out.stdout)
        .expect("python3 prints UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("python3 prints JSON"))
        .collect();
    assert_eq!(expected.len(), messages.len());

    for (i, (message, expected)) in messages.iter().zip(&expected).enumerate() {
        let body = transform
            .apply(message.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("case {i}: {e}\nmessage: {message}"));
        let got: Value = serde_json::from_slice(&body).expect("the transform writes JSON");
        assert_eq!(&got, expected, "case {i}\nmessage: {message}");
    }
}

/// The fenced blocks of `docs/WEBHOOKS.md`'s `model_registered` example, in order.
fn doc_blocks() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/WEBHOOKS.md");
    let doc = std::fs::read_to_string(&path).expect("docs/WEBHOOKS.md is readable");
    let (_, example) = doc
        .split_once("### Example: the registry's `model_registered` event")
        .expect("docs/WEBHOOKS.md has the model_registered example");
    let mut blocks = Vec::new();
    let mut lines = example.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((info.to_owned(), body.join("\n")));
        }
    }
    blocks
}

#[test]
fn the_documented_model_registered_example_is_the_shipped_transform_and_its_output() {
    let blocks = doc_blocks();
    let [(jq_info, program), (in_info, message), (out_info, body)] = &blocks[..] else {
        panic!("expected a jq block, a message and a body in the example, got {blocks:?}");
    };
    assert_eq!(
        (jq_info.as_str(), in_info.as_str(), out_info.as_str()),
        ("jq", "json", "json")
    );
    assert!(
        TRANSFORM.trim_end().ends_with(program.trim_end()),
        "the example's program differs from examples/transforms/model_registered.jq"
    );
    let transform = Transform::compile(TRANSFORM).expect("the shipped transform compiles");
    let got = transform
        .apply(message.as_bytes())
        .expect("the transform applies to the example message");
    assert_eq!(String::from_utf8(got).expect("UTF-8"), *body);
}
