//! Receivers written for the registry's Python publisher keep working when the bridge takes
//! over: they compare the whole `X-Hokusai-Signature` header with one expected value
//! (`hmac.compare_digest`), as the registry's own receiver helper does.
//!
//! - The endpoint made from the registry's `WEBHOOK_URL` / `WEBHOOK_SECRET` signs with
//!   `hokusai-legacy`, the body-only scheme those receivers verify.
//! - With several secrets listed and `sign_with_all_secrets` left at its default (false), the
//!   header holds one signature, by the first secret, under both hokusai schemes.

mod common;

use std::time::Duration;

use common::{Bridge, DEFAULT_CHANNEL, Receiver, Recorded, RedisServer, base_toml, python};

const T: Duration = Duration::from_secs(30);

/// The registry's receiver check: one expected value, compared with the whole header.
/// Args: scheme (`legacy` or `v2`), secret, body (hex), header, timestamp, nonce.
const PY_ONE_VALUE: &str = r#"
import hashlib, hmac, sys
scheme, secret, body, header, ts, nonce = sys.argv[1:7]
body = bytes.fromhex(body)
signed = body if scheme == "legacy" else f"{ts}.{nonce}.".encode() + body
expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
print("valid" if hmac.compare_digest(expected, header) else "invalid")
"#;

/// What the one-value check says about `req` under `secret`.
fn one_value_check(scheme: &str, secret: &str, req: &Recorded) -> String {
    let out = python(
        PY_ONE_VALUE,
        &[
            scheme,
            secret,
            &hex::encode(&req.body),
            &req.header("x-hokusai-signature"),
            &req.header("x-hokusai-timestamp"),
            &req.header("x-hokusai-nonce"),
        ],
    );
    assert!(out.status.success(), "python3: {}", common::show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn event(n: u32) -> String {
    format!(
        r#"{{"model_id":"m-{n}","token_symbol":"tok","mlflow_run_id":null,"model_version":"{n}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_endpoint_signs_body_only_as_the_registrys_receivers_verify() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let secret = "registry-webhook-secret-4d1e";
    let url = rx.url("/hook");
    let bridge = Bridge::start_with_env(
        &base_toml(&redis, "t-legacy-env"),
        &[("WEBHOOK_URL", url.as_str()), ("WEBHOOK_SECRET", secret)],
    )
    .await;
    redis.publish(DEFAULT_CHANNEL, event(1)).await;
    let reqs = rx.wait_for_count(1, T).await;
    let req = &reqs[0];
    assert_eq!(
        req.header("x-hokusai-timestamp"),
        "",
        "hokusai-legacy signs no timestamp\n{}",
        bridge.logs()
    );
    assert_eq!(one_value_check("legacy", secret, req), "valid");
    assert_eq!(one_value_check("legacy", "another-secret", req), "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_signature_header_holds_one_value_that_a_one_value_comparison_accepts() {
    let redis = RedisServer::start();
    let rx = Receiver::start().await;
    let (new, old) = ("rotated-NEW-secret-77a0", "rotated-OLD-secret-0c3b");
    let mut config = base_toml(&redis, "t-one-value");
    for scheme in ["hokusai-v2", "hokusai-legacy"] {
        // Two secrets listed, `sign_with_all_secrets` not set: its default is false.
        config.push_str(&format!(
            "\n[[endpoints]]\nname = \"{scheme}\"\nurl = \"{}\"\nsecrets = [\"{new}\", \"{old}\"]\nsignature = \"{scheme}\"\n",
            rx.url(&format!("/{scheme}"))
        ));
    }
    let bridge = Bridge::start(&config).await;
    redis.publish(DEFAULT_CHANNEL, event(2)).await;
    rx.wait_for_count(2, T).await;
    for (scheme, py) in [("hokusai-v2", "v2"), ("hokusai-legacy", "legacy")] {
        let reqs = rx.requests_to(&format!("/{scheme}"));
        assert_eq!(reqs.len(), 1, "{scheme}\n{}", bridge.logs());
        let header = reqs[0].header("x-hokusai-signature");
        assert!(
            !header.contains(','),
            "{scheme}: one signature in the header by default: {header}"
        );
        assert_eq!(one_value_check(py, new, &reqs[0]), "valid", "{scheme}");
        assert_eq!(
            one_value_check(py, old, &reqs[0]),
            "invalid",
            "{scheme}: the first listed secret signs"
        );
    }
}
