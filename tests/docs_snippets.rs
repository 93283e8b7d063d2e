//! The verification code in `docs/INTEGRATION.md` is executed here, against real requests.
//!
//! Each test starts a real `redis-server`, a real HTTP receiver and the real bridge with
//! hokusai-v2 and standard-webhooks endpoints (one secret, and two with
//! `sign_with_all_secrets` for a rotation), publishes the registry's model event, and
//! captures the signed requests. The Python and Node.js blocks of the doc are then run with
//! `python3` / `node`, with a small harness appended that feeds them requests and prints each
//! answer; the Rust block must equal the `rust_snippet` module below, which is compiled and
//! run here. Tampered bodies, wrong secrets, stale timestamps, replayed nonces and nonces that
//! are not canonical UUIDs (bytes moved from the body into the nonce) must be rejected,
//! repeats answered as duplicates, and the doc's test vectors accepted.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

const DOC: &str = "docs/INTEGRATION.md";
const V2_SECRET: &str = "docs-secret-v2-0123456789abcdef";
const V2_NEW: &str = "docs-secret-new-0123456789abcdef";
const V2_OLD: &str = "docs-secret-old-0123456789abcdef";
const WRONG: &str = "not-the-secret-0123456789abcdef";

fn whsec(seed: &str) -> String {
    format!("whsec_{}", B64.encode(seed.as_bytes()))
}

fn doc_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {DOC}: {e}"))
}

/// The body of the one fenced block of `doc` whose info string is exactly `info`.
fn snippet(doc: &str, info: &str) -> String {
    let mut found = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.strip_prefix("```") == Some(info) {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l == "```" {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            found.push(body);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "{DOC} must have exactly one block opened with ```{info}"
    );
    found.remove(0)
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Captured {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the request has no {name} header: {self:?}"))
    }

    fn with_header(&self, name: &str, value: &str) -> Self {
        let mut c = self.clone();
        c.headers.insert(name.to_string(), value.to_string());
        c
    }

    fn with_body(&self, body: &[u8]) -> Self {
        let mut c = self.clone();
        c.body = body.to_vec();
        c
    }

    fn timestamp(&self) -> i64 {
        let ts = self
            .headers
            .get("x-hokusai-timestamp")
            .or_else(|| self.headers.get("webhook-timestamp"))
            .expect("a signed timestamp");
        ts.parse().expect("timestamp is a number")
    }

    fn http_headers(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in &self.headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        map
    }
}

/// The requests the bridge sent, by endpoint path.
struct Captures {
    v2: Captured,
    v2_rotation: Captured,
    standard: Captured,
    standard_rotation: Captured,
    /// The idempotency key the registry's publisher computes for the published event.
    key: String,
}

/// Runs redis-server, a receiver and the bridge; publishes the registry's model event and
/// returns what the four endpoints received.
async fn capture_real_requests() -> Captures {
    let redis = common::RedisServer::start();
    let receiver = common::Receiver::start().await;
    let endpoints = [
        (
            "v2",
            format!("secrets = [\"{V2_SECRET}\"]\nsignature = \"hokusai-v2\""),
        ),
        (
            "v2-rotation",
            format!(
                "secrets = [\"{V2_NEW}\", \"{V2_OLD}\"]\nsignature = \"hokusai-v2\"\nsign_with_all_secrets = true"
            ),
        ),
        (
            "standard",
            format!(
                "secrets = [\"{}\"]\nsignature = \"standard-webhooks\"",
                whsec("standard key")
            ),
        ),
        (
            "standard-rotation",
            format!(
                "secrets = [\"{}\", \"{}\"]\nsignature = \"standard-webhooks\"\nsign_with_all_secrets = true",
                whsec("standard new key"),
                whsec("standard old key")
            ),
        ),
    ];
    let mut toml = common::base_toml(&redis, "docs-snippets");
    for (name, extra) in &endpoints {
        toml.push_str(&common::endpoint_toml(
            name,
            &receiver.url(&format!("/{name}")),
            extra,
        ));
    }
    let bridge = common::Bridge::start(&toml).await;
    let fixtures = common::fixtures();
    let event = fixtures["model_ready_message"]["body"]
        .as_str()
        .expect("fixture body");
    let key = fixtures["model_ready_message"]["idempotency_key"]
        .as_str()
        .expect("fixture key")
        .to_string();
    let subscribers = redis.publish(common::DEFAULT_CHANNEL, event).await;
    assert_eq!(subscribers, 1, "the bridge is subscribed");
    let requests = receiver.wait_for_count(4, Duration::from_secs(15)).await;
    assert_eq!(requests.len(), 4, "one request per endpoint: {requests:?}");
    let get = |path: &str| {
        let r = receiver
            .requests_to(path)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no request to {path}; logs:\n{}", bridge.logs()));
        assert_eq!(
            r.body.as_ref(),
            event.as_bytes(),
            "the body is sent byte for byte"
        );
        Captured {
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        v.to_str().expect("ASCII header").to_string(),
                    )
                })
                .collect(),
            body: r.body.to_vec(),
        }
    };
    Captures {
        v2: get("/v2"),
        v2_rotation: get("/v2-rotation"),
        standard: get("/standard"),
        standard_rotation: get("/standard-rotation"),
        key,
    }
}

/// One run of a snippet: the secrets it knows and the requests it gets, in order.
struct Case {
    what: &'static str,
    secrets: Vec<String>,
    /// (request, clock override in unix seconds, expected status, expected text prefix)
    requests: Vec<(Captured, Option<i64>, u16, &'static str)>,
}

impl Case {
    fn input(&self) -> Value {
        json!({
            "secrets": self.secrets,
            "requests": self.requests.iter().map(|(r, now, _, _)| json!({
                "headers": r.headers,
                "body_b64": B64.encode(&r.body),
                "now": now,
            })).collect::<Vec<_>>(),
        })
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Every case, from the captured requests and the fixtures' test vectors.
fn cases(c: &Captures) -> Vec<Case> {
    let v2 = &c.v2;
    let ts = v2.timestamp();
    let tampered = {
        let mut b = v2.body.clone();
        let i = b
            .iter()
            .position(|x| *x == b'3')
            .expect("a digit to change");
        b[i] = b'4';
        b
    };
    // Signed with nonce N over body B1 + B2, sent as nonce `N.B1` with body B2: the MAC sees
    // the same bytes, so only the nonce's form can reject it.
    let moved_nonce = {
        let (b1, b2) = v2.body.split_at(12);
        let nonce = format!(
            "{}.{}",
            v2.header("x-hokusai-nonce"),
            std::str::from_utf8(b1).expect("ASCII JSON")
        );
        v2.with_header("x-hokusai-nonce", &nonce).with_body(b2)
    };
    let uppercase_nonce = v2.with_header(
        "x-hokusai-nonce",
        &v2.header("x-hokusai-nonce").to_ascii_uppercase(),
    );
    let f = common::fixtures();
    let vector = &f["hokusai_v2"];
    let text = |v: &Value, k: &str| v[k].as_str().expect("fixture string").to_string();
    let v2_vector = Captured {
        headers: [
            ("x-hokusai-timestamp", text(vector, "timestamp")),
            ("x-hokusai-nonce", text(vector, "nonce")),
            ("x-hokusai-signature", text(vector, "signature")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        body: text(vector, "body").into_bytes(),
    };
    let vector_ts: i64 = text(vector, "timestamp").parse().expect("timestamp");
    let flipped = {
        let sig = text(vector, "signature");
        let last = sig.chars().last().expect("a digit");
        let other = if last == '0' { '1' } else { '0' };
        format!("{}{other}", &sig[..sig.len() - 1])
    };
    let truncated = text(vector, "signature")[..40].to_string();
    let mut standard_vectors = Vec::new();
    for sv in f["standard_webhooks"].as_array().expect("standard vectors") {
        let req = Captured {
            headers: [
                ("webhook-id", text(sv, "id")),
                ("webhook-timestamp", text(sv, "timestamp")),
                ("webhook-signature", text(sv, "signature")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            body: text(sv, "body").into_bytes(),
        };
        let now: i64 = text(sv, "timestamp").parse().expect("timestamp");
        standard_vectors.push(Case {
            what: "the standard-webhooks specification's test vector",
            secrets: vec![text(sv, "secret")],
            requests: vec![
                (req.clone(), Some(now), 200, "accepted"),
                (req.with_body(b"{\"test\": 1}"), Some(now), 401, ""),
            ],
        });
    }
    let std_ts = c.standard.timestamp();
    let mut all = vec![
        Case {
            what: "hokusai-v2 from the bridge: accepted, repeat, tampered, forged key, stale, future",
            secrets: vec![s(V2_SECRET)],
            requests: vec![
                (v2.clone(), None, 200, "accepted"),
                (v2.clone(), None, 200, "duplicate"),
                (v2.with_body(&tampered), None, 401, ""),
                (
                    v2.with_header("x-hokusai-idempotency-key", "forged-key"),
                    None,
                    409,
                    "",
                ),
                (v2.clone(), Some(ts + 301), 401, ""),
                (v2.clone(), Some(ts - 301), 401, ""),
            ],
        },
        Case {
            what: "hokusai-v2: body bytes moved into the nonce, an uppercase nonce",
            secrets: vec![s(V2_SECRET)],
            requests: vec![
                (moved_nonce, None, 401, ""),
                (uppercase_nonce, None, 401, ""),
                (v2.clone(), None, 200, "accepted"),
            ],
        },
        Case {
            what: "hokusai-v2: any of several secrets",
            secrets: vec![s(WRONG), s(V2_SECRET)],
            requests: vec![(v2.clone(), None, 200, "accepted")],
        },
        Case {
            what: "hokusai-v2: a wrong secret",
            secrets: vec![s(WRONG)],
            requests: vec![(v2.clone(), None, 401, "")],
        },
        Case {
            what: "hokusai-v2 rotation: a receiver that knows only the old secret",
            secrets: vec![s(V2_OLD)],
            requests: vec![(c.v2_rotation.clone(), None, 200, "accepted")],
        },
        Case {
            what: "hokusai-v2 rotation: a receiver that knows only the new secret",
            secrets: vec![s(V2_NEW)],
            requests: vec![(c.v2_rotation.clone(), None, 200, "accepted")],
        },
        Case {
            what: "standard-webhooks from the bridge: accepted, repeat, tampered, stale, wrong id",
            secrets: vec![whsec("standard key")],
            requests: vec![
                (c.standard.clone(), None, 200, "accepted"),
                (c.standard.clone(), None, 200, "duplicate"),
                (c.standard.with_body(&tampered), None, 401, ""),
                (c.standard.clone(), Some(std_ts + 301), 401, ""),
                (
                    c.standard.with_header("webhook-id", "other-id"),
                    None,
                    401,
                    "",
                ),
            ],
        },
        Case {
            what: "standard-webhooks: a wrong secret",
            secrets: vec![whsec("not the key")],
            requests: vec![(c.standard.clone(), None, 401, "")],
        },
        Case {
            what: "standard-webhooks rotation: only the old secret",
            secrets: vec![whsec("standard old key")],
            requests: vec![(c.standard_rotation.clone(), None, 200, "accepted")],
        },
        Case {
            what: "standard-webhooks rotation: only the new secret",
            secrets: vec![whsec("standard new key")],
            requests: vec![(c.standard_rotation.clone(), None, 200, "accepted")],
        },
        Case {
            what: "the hokusai-v2 test vector; a flipped, a truncated and an empty signature",
            secrets: vec![text(vector, "secret")],
            requests: vec![
                (v2_vector.clone(), Some(vector_ts), 200, "accepted"),
                (
                    v2_vector
                        .with_header("x-hokusai-nonce", "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234"),
                    Some(vector_ts),
                    401,
                    "",
                ),
                (
                    v2_vector
                        .with_header("x-hokusai-nonce", "1b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234")
                        .with_header("x-hokusai-signature", &flipped),
                    Some(vector_ts),
                    401,
                    "",
                ),
                (
                    v2_vector
                        .with_header("x-hokusai-nonce", "2b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234")
                        .with_header("x-hokusai-signature", &truncated),
                    Some(vector_ts),
                    401,
                    "",
                ),
                (
                    v2_vector
                        .with_header("x-hokusai-nonce", "3b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234")
                        .with_header("x-hokusai-signature", "sha256="),
                    Some(vector_ts),
                    401,
                    "",
                ),
            ],
        },
    ];
    all.extend(standard_vectors);
    all
}

/// Checks the facts the cases rely on, so that a change in the bridge shows here first.
fn check_captures(c: &Captures) {
    assert_eq!(c.v2.header("x-hokusai-idempotency-key"), c.key);
    assert_eq!(c.standard.header("webhook-id"), c.key);
    assert_eq!(c.standard.header("x-hokusai-idempotency-key"), c.key);
    assert_eq!(
        c.v2_rotation
            .header("x-hokusai-signature")
            .split(',')
            .count(),
        2,
        "two comma-separated signatures during a rotation"
    );
    assert_eq!(
        c.standard_rotation
            .header("webhook-signature")
            .split(' ')
            .count(),
        2,
        "two space-separated signatures during a rotation"
    );
}

/// Runs `program file input.json`; `missing` is the install hint when it is not installed.
fn run_snippet(program: &str, code: &str, file_name: &str, input: &Value, missing: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(file_name);
    std::fs::write(&file, code).expect("write the snippet");
    let input_path = dir.path().join("input.json");
    std::fs::write(&input_path, input.to_string()).expect("write the input");
    match Command::new(program)
        .arg(&file)
        .arg(&input_path)
        .current_dir(dir.path())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!("{missing}"),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

/// Runs every case through a snippet and checks each answer line and the event count.
fn check_cases(program: &str, code: &str, file_name: &str, missing: &str, cases: &[Case]) {
    for case in cases {
        let out = run_snippet(program, code, file_name, &case.input(), missing);
        assert!(
            out.status.success(),
            "{program} {file_name} failed on case `{}`:\n{}",
            case.what,
            common::show(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            case.requests.len() + 1,
            "case `{}`: one line per request plus the event count:\n{stdout}",
            case.what
        );
        for (i, (_, _, status, text)) in case.requests.iter().enumerate() {
            let (got_status, got_text) = lines[i].split_once(' ').unwrap_or((lines[i], ""));
            assert!(
                got_status == status.to_string() && got_text.starts_with(text),
                "case `{}`, request #{}: expected `{status} {text}…`, got `{}`\nall output:\n{stdout}",
                case.what,
                i + 1,
                lines[i]
            );
        }
        let accepted = case
            .requests
            .iter()
            .filter(|(_, _, _, t)| *t == "accepted")
            .count();
        assert_eq!(
            lines[case.requests.len()],
            format!("events {accepted}"),
            "case `{}`: the processing callback runs once per accepted request",
            case.what
        );
    }
}

const PYTHON_HARNESS: &str = r#"

# --- harness appended by tests/docs_snippets.rs; not part of the documented code ---
import base64 as _b64
import json as _json
import sys as _sys

_case = _json.load(open(_sys.argv[1]))
_processed, _nonces, _events = SeenStore(), SeenStore(), []
for _r in _case["requests"]:
    _status, _text = handle_webhook(
        _r["headers"],
        _b64.b64decode(_r["body_b64"]),
        _case["secrets"],
        _processed,
        _nonces,
        _events.append,
        _r["now"],
    )
    print(_status, _text)
print("events", len(_events))
"#;

const NODE_HARNESS: &str = r#"

// --- harness appended by tests/docs_snippets.rs; not part of the documented code ---
{
  const input = JSON.parse(require("node:fs").readFileSync(process.argv[2], "utf8"));
  const processed = new SeenStore();
  const nonces = new SeenStore();
  const events = [];
  for (const r of input.requests) {
    const [status, text] = handleWebhook(
      r.headers,
      Buffer.from(r.body_b64, "base64"),
      input.secrets,
      processed,
      nonces,
      (event) => events.push(event),
      r.now ?? undefined,
    );
    console.log(status, text);
  }
  console.log("events", events.length);
}
"#;

#[tokio::test]
async fn the_python_snippet_verifies_real_requests_and_rejects_tampered_ones() {
    let code = snippet(&doc_text(), "python title=\"webhook_verify.py\"") + PYTHON_HARNESS;
    let captures = capture_real_requests().await;
    check_captures(&captures);
    check_cases(
        "python3",
        &code,
        "webhook_verify.py",
        "python3 not found on PATH: install it (Debian/Ubuntu: apt-get install -y python3)",
        &cases(&captures),
    );
}

#[tokio::test]
async fn the_node_snippet_verifies_real_requests_and_rejects_tampered_ones() {
    let code = snippet(&doc_text(), "javascript title=\"webhookVerify.js\"") + NODE_HARNESS;
    let captures = capture_real_requests().await;
    check_captures(&captures);
    check_cases(
        "node",
        &code,
        "webhookVerify.js",
        "node not found on PATH: install Node.js (Debian/Ubuntu: apt-get install -y nodejs)",
        &cases(&captures),
    );
}

// The Rust block of docs/INTEGRATION.md, verbatim (the test below checks that they are equal).
// BEGIN verify.rs
mod rust_snippet {
    use std::time::{SystemTime, UNIX_EPOCH};

    use http::HeaderMap;
    use redis_webhook_bridge::config::Secret;
    use redis_webhook_bridge::delivery::signing::{Verified, VerifyError, verify};

    /// How far a signed timestamp may be from our clock, in seconds.
    pub const TOLERANCE_SECS: u64 = 300;

    /// The secrets that may have signed a request: new first, then old during a rotation.
    /// Each is a literal, `env:NAME` or `file:PATH`.
    pub fn load_secrets(references: &[&str]) -> Vec<Secret> {
        references
            .iter()
            .map(|r| Secret::resolve(r).expect("secret reference resolves"))
            .collect()
    }

    /// Checks a request from the bridge; `Err` means: answer 401. On success, de-duplicate by
    /// `X-Hokusai-Idempotency-Key`, and for hokusai-v2 reject a repeated `verified.nonce_or_id`
    /// (the nonce) within twice the tolerance.
    pub fn verify_request(
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
    ) -> Result<Verified, VerifyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // `None`: detect the scheme from the headers; pass `Some(scheme)` to insist on one.
        verify(None, headers, body, secrets, now, TOLERANCE_SECS)
    }

    /// The idempotency key of a verified request.
    pub fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
        headers
            .get("x-hokusai-idempotency-key")
            .and_then(|v| v.to_str().ok())
    }
}
// END verify.rs

/// The `rust_snippet` module's body, as it would read at the top level of a file.
fn rust_snippet_source() -> String {
    let me = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/docs_snippets.rs"
    ))
    .expect("read tests/docs_snippets.rs");
    let start =
        me.find("// BEGIN verify.rs\n").expect("BEGIN marker") + "// BEGIN verify.rs\n".len();
    let end = me.find("// END verify.rs").expect("END marker");
    let block = &me[start..end];
    let inner: Vec<&str> = block.lines().collect();
    // Drop `mod rust_snippet {` and `}`, and one level of indentation.
    inner[1..inner.len() - 1]
        .iter()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn the_rust_snippet_is_this_tested_code_and_verifies_real_requests() {
    assert_eq!(
        snippet(&doc_text(), "rust title=\"verify.rs\""),
        rust_snippet_source(),
        "the ```rust title=\"verify.rs\" block of {DOC} must equal the rust_snippet module of tests/docs_snippets.rs"
    );

    use redis_webhook_bridge::delivery::signing::{Scheme, VerifyError};
    let c = capture_real_requests().await;
    check_captures(&c);
    let secrets = rust_snippet::load_secrets(&[WRONG, V2_SECRET]);
    let v2 = rust_snippet::verify_request(&c.v2.http_headers(), &c.v2.body, &secrets)
        .expect("a real hokusai-v2 request verifies");
    assert_eq!(v2.scheme, Scheme::HokusaiV2);
    assert_eq!(v2.secret_index, 1, "the second listed secret matched");
    assert_eq!(
        rust_snippet::idempotency_key(&c.v2.http_headers()),
        Some(c.key.as_str())
    );
    let tampered = rust_snippet::verify_request(&c.v2.http_headers(), b"{}", &secrets);
    assert_eq!(tampered.unwrap_err(), VerifyError::NoMatch);
    let (b1, b2) = c.v2.body.split_at(12);
    let moved = c.v2.with_header(
        "x-hokusai-nonce",
        &format!(
            "{}.{}",
            c.v2.header("x-hokusai-nonce"),
            std::str::from_utf8(b1).expect("ASCII JSON")
        ),
    );
    let forged = rust_snippet::verify_request(&moved.http_headers(), b2, &secrets);
    assert!(
        matches!(forged, Err(VerifyError::Malformed("x-hokusai-nonce", _))),
        "bytes moved from the body into the nonce are refused: {forged:?}"
    );

    let old = rust_snippet::load_secrets(&[V2_OLD]);
    rust_snippet::verify_request(&c.v2_rotation.http_headers(), &c.v2_rotation.body, &old)
        .expect("the old secret matches one of the rotation's signatures");

    let standard = rust_snippet::load_secrets(&[&whsec("standard key")]);
    let v = rust_snippet::verify_request(&c.standard.http_headers(), &c.standard.body, &standard)
        .expect("a real standard-webhooks request verifies");
    assert_eq!(v.scheme, Scheme::StandardWebhooks);
    assert_eq!(v.nonce_or_id.as_deref(), Some(c.key.as_str()));
}

#[test]
fn the_docs_test_vectors_are_the_fixtures() {
    let doc = doc_text();
    let f = common::fixtures();
    let v2 = &f["hokusai_v2"];
    let legacy = &f["hokusai_legacy"];
    let standard = &f["standard_webhooks"][1];
    for value in [
        &v2["secret"],
        &v2["timestamp"],
        &v2["nonce"],
        &v2["body"],
        &v2["signature"],
        &legacy["signature"],
        &f["model_ready_message"]["idempotency_key"],
        &standard["secret"],
        &standard["id"],
        &standard["timestamp"],
        &standard["body"],
        &standard["signature"],
    ] {
        let value = value.as_str().expect("fixture string");
        assert!(doc.contains(value), "{DOC} lacks the fixture value {value}");
    }
    assert_eq!(
        legacy["body"], v2["body"],
        "the doc says both use the same body"
    );
}

/// Replaces `from` in `text`, failing when the README no longer contains it.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README's first-run snippet no longer contains `{from}`; update this test"
    );
    text.replace(from, to)
}

#[test]
fn the_readme_first_run_by_hand_delivers_one_verified_event() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let script = snippet(&readme, "sh first-run");
    let redis = common::RedisServer::start();
    let receive_port = common::free_port();
    let admin_port = common::free_port();
    let script = substitute(&script, "redis://127.0.0.1:6379", &redis.url());
    let script = substitute(&script, "-p 6379", &format!("-p {}", redis.port));
    let script = substitute(
        &script,
        "127.0.0.1:8787",
        &format!("127.0.0.1:{receive_port}"),
    );
    let script = substitute(
        &script,
        "127.0.0.1:9132",
        &format!("127.0.0.1:{admin_port}"),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("first-run.sh"), &script).expect("write the snippet");
    let bin_dir = Path::new(common::BIN)
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new("bash")
        .args(["-e", "first-run.sh"])
        .env_clear()
        .env("PATH", path)
        // The snippet's admin address; the default port may be taken on a test machine.
        .env("BRIDGE_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let group = child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let finished = loop {
        if child.try_wait().expect("poll the snippet").is_some() {
            break true;
        }
        if std::time::Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever happened, nothing the snippet started outlives the test.
    // SAFETY: kill(2) on the process group this test created; no memory is involved.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let out = child.wait_with_output().expect("the snippet's output");
    let log = std::fs::read_to_string(dir.path().join("bridge.log")).unwrap_or_default();
    assert!(
        finished,
        "the snippet did not finish within 60 s:\n{}\nbridge.log:\n{log}",
        common::show(&out)
    );
    assert!(
        out.status.success(),
        "the snippet failed:\n{}\nbridge.log:\n{log}",
        common::show(&out)
    );
    let received = std::fs::read_to_string(dir.path().join("received.jsonl")).expect("received");
    let lines: Vec<Value> = received
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "one verified event: {received}");
    assert_eq!(lines[0]["body"]["model_id"], "model-1", "{received}");
    assert_eq!(lines[0]["attempt"], 1, "{received}");
}
