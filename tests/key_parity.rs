//! The bridge's idempotency key is the key the registry's Python publisher computes:
//! `uuid5(NAMESPACE_DNS, f"{model_id}:{token_symbol}:{mlflow_run_id}:{model_version}")` over
//! `json.loads` of the message. Random messages (run-less models with `null`, booleans,
//! integers of any size, floats from tiny to huge and out of range, unicode and escaped
//! strings, absent fields, objects) are keyed by real `python3` and by [`ingest::parse`], on
//! the pub/sub path and inside the registry's list envelope.

use std::io::Write as _;
use std::process::{Command, Stdio};

use bytes::Bytes;
use proptest::prelude::*;
use redis_webhook_bridge::ingest::{self, fallback_key};

const FIELDS: [&str; 4] = ["model_id", "token_symbol", "mlflow_run_id", "model_version"];

/// The registry's rule, for one JSON message per input line; prints the key, or `-` when a
/// field is absent or is an object or array (the bridge's documented "no key from fields").
const PY_KEYS: &str = r#"
import json, sys, uuid
for line in sys.stdin.buffer.read().split(b"\n"):
    if not line:
        continue
    m = json.loads(line.decode("utf-8"))
    vals = [m.get(f, KeyError) for f in ("model_id", "token_symbol", "mlflow_run_id", "model_version")]
    if any(v is KeyError or isinstance(v, (dict, list)) for v in vals):
        print("-")
        continue
    model_id, token_symbol, mlflow_run_id, model_version = vals
    print(uuid.uuid5(uuid.NAMESPACE_DNS, f"{model_id}:{token_symbol}:{mlflow_run_id}:{model_version}"))
"#;

/// Keys of every body, computed by one `python3` process (one per batch: starting Python
/// per message would make the test slow). The `tests/common` helper takes no stdin.
fn python_keys(bodies: &[String]) -> Vec<String> {
    let mut child = match Command::new("python3")
        .arg("-c")
        .arg(PY_KEYS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "python3 not found on PATH: install it (Debian/Ubuntu: apt-get install -y python3)"
        ),
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let mut stdin = child.stdin.take().expect("python3 stdin");
    let input = bodies.join("\n");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python3 output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = String::from_utf8(out.stdout)
        .expect("python3 prints UTF-8")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(keys.len(), bodies.len(), "one key per message");
    keys
}

/// A string written as JSON, sometimes with every non-ASCII character (and `/`) escaped as
/// `\uXXXX` (surrogate pairs beyond the BMP), as other JSON encoders write it.
fn json_string(s: String, escape_all: bool) -> String {
    if !escape_all {
        return serde_json::to_string(&s).unwrap();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A JSON number as some encoder might write it: integers small and huge, floats in the
/// layouts `json.dumps`, JavaScript and Rust use, and out-of-range exponents.
fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{18,40}",
        Just("-0".to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:e}")),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:?}")),
        (any::<i32>(), -30i32..30).prop_map(|(m, e)| format!("{m}e{e}")),
        (any::<u16>(), 0u8..5, -400i32..400).prop_map(|(m, f, e)| format!("{m}.{f}E{e:+}")),
        prop::sample::select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "1.0",
            "100000.0",
            "1e5",
            "1E+20",
            "0.0001",
            "1e-05",
            "-0.0",
            "1e16",
            "1234567890123456.0",
            "0.1",
            "2.5e-7",
            "9007199254740993.0",
        ])
        .prop_map(String::from),
    ]
}

/// One key field's JSON text, or `None` for an absent field.
fn field() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => (any::<String>(), any::<bool>()).prop_map(|(s, e)| Some(json_string(s, e))),
        2 => "[a-z0-9-]{1,12}".prop_map(|s| Some(format!("\"{s}\""))),
        2 => Just(Some("null".to_string())),
        1 => any::<bool>().prop_map(|b| Some(b.to_string())),
        3 => json_number().prop_map(Some),
        1 => Just(None),
        1 => Just(Some(r#"{"a":[1,"x"]}"#.to_string())),
        1 => Just(Some("[]".to_string())),
    ]
}

/// A message with the four key fields (in a random order, some absent) and other fields.
fn message() -> impl Strategy<Value = String> {
    (prop::array::uniform4(field()), any::<bool>()).prop_map(|(values, reversed)| {
        let mut parts: Vec<String> = FIELDS
            .iter()
            .zip(values)
            .filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}")))
            .collect();
        if reversed {
            parts.reverse();
        }
        parts.push(r#""event_type":"model_ready","tags":{"team":"nlp"}"#.into());
        format!("{{{}}}", parts.join(","))
    })
}

fn key_fields() -> Vec<String> {
    FIELDS.map(String::from).to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_bridge_computes_the_registrys_key_for_any_message(
        bodies in prop::collection::vec(message(), 64)
    ) {
        let expected = python_keys(&bodies);
        for (body, want) in bodies.iter().zip(&expected) {
            let bytes = Bytes::from(body.clone());
            let direct = ingest::parse(&bytes, "pubsub", false, &key_fields(), 1 << 20)
                .expect("a JSON object is ingested");
            let want = if want == "-" { fallback_key("pubsub", &bytes) } else { want.clone() };
            prop_assert_eq!(&direct.idempotency_key, &want, "pub/sub message {}", body);

            // The same event in the registry's list envelope: the payload's fields decide.
            let envelope = Bytes::from(format!(
                r#"{{"message_id":"3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192","message_type":"model_ready_to_deploy","payload":{body},"retry_count":0}}"#
            ));
            let wrapped = ingest::parse(&envelope, "list", true, &key_fields(), 1 << 20)
                .expect("an envelope is ingested");
            if expected_from_fields(&want, &bytes) {
                prop_assert_eq!(&wrapped.idempotency_key, &want, "envelope of {}", body);
            } else {
                prop_assert_eq!(
                    wrapped.idempotency_key.as_str(),
                    "3f2b9c6e-8d4a-4e1b-9a7c-2d5e6f708192",
                    "without key fields the envelope keeps its message_id: {}", body
                );
            }
        }
    }
}

/// Whether `key` came from the fields (not the pub/sub fallback hash).
fn expected_from_fields(key: &str, body: &Bytes) -> bool {
    key != fallback_key("pubsub", body)
}
