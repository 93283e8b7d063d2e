//! Signing: the published vectors, rotation, secrets and what a signer shows of itself.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;

use super::*;

#[test]
fn reproduces_the_hokusai_legacy_vector() {
    let f = fixtures();
    let v = &f["hokusai_legacy"];
    let secrets = [secret(text(v, "secret"))];
    let body = text(v, "body").as_bytes();
    let out = sign(Scheme::HokusaiLegacy, &secrets, false, body, 0, "", "");
    assert_eq!(
        out,
        vec![(HEADER_SIGNATURE, text(v, "signature").to_owned())]
    );

    let verified = verify(None, &header_map(&out), body, &secrets, NOW, 300).unwrap();
    assert_eq!(verified.scheme, Scheme::HokusaiLegacy);
    assert_eq!(verified.timestamp, None);
    assert_eq!(verified.secret_index, 0);
}

#[test]
fn reproduces_the_hokusai_v2_vector() {
    let f = fixtures();
    let v = &f["hokusai_v2"];
    let secrets = [secret(text(v, "secret"))];
    let body = text(v, "body").as_bytes();
    let ts: i64 = text(v, "timestamp").parse().unwrap();
    let nonce = text(v, "nonce");
    let out = sign(
        Scheme::HokusaiV2,
        &secrets,
        false,
        body,
        ts,
        nonce,
        "unused",
    );
    assert_eq!(
        out,
        vec![
            (HEADER_TIMESTAMP, text(v, "timestamp").to_owned()),
            (HEADER_NONCE, nonce.to_owned()),
            (HEADER_SIGNATURE, text(v, "signature").to_owned()),
        ]
    );

    let verified = verify(None, &header_map(&out), body, &secrets, 0, 0).unwrap();
    assert_eq!(
        verified,
        Verified {
            scheme: Scheme::HokusaiV2,
            timestamp: Some(ts),
            nonce_or_id: Some(nonce.to_owned()),
            secret_index: 0,
        }
    );
}

#[test]
fn reproduces_both_standard_webhooks_vectors() {
    let f = fixtures();
    let vectors = f["standard_webhooks"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for v in vectors {
        let secrets = [secret(text(v, "secret"))];
        let body = text(v, "body").as_bytes();
        let ts: i64 = text(v, "timestamp").parse().unwrap();
        let id = text(v, "id");
        let out = sign(
            Scheme::StandardWebhooks,
            &secrets,
            false,
            body,
            ts,
            "unused",
            id,
        );
        assert_eq!(
            out,
            vec![
                (HEADER_WEBHOOK_ID, id.to_owned()),
                (HEADER_WEBHOOK_TIMESTAMP, text(v, "timestamp").to_owned()),
                (HEADER_WEBHOOK_SIGNATURE, text(v, "signature").to_owned()),
            ]
        );

        let verified = verify(None, &header_map(&out), body, &secrets, 0, 0).unwrap();
        assert_eq!(verified.scheme, Scheme::StandardWebhooks);
        assert_eq!(verified.timestamp, Some(ts));
        assert_eq!(verified.nonce_or_id.as_deref(), Some(id));
    }
}

#[test]
fn uses_a_secret_without_whsec_prefix_as_raw_bytes_for_standard_webhooks() {
    let out = sign(
        Scheme::StandardWebhooks,
        &[secret("plain-secret")],
        false,
        BODY,
        NOW,
        "",
        "msg_1",
    );
    let mut mac = HmacSha256::new_from_slice(b"plain-secret").unwrap();
    mac.update(format!("msg_1.{NOW}.").as_bytes());
    mac.update(BODY);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(value_of(&out, HEADER_WEBHOOK_SIGNATURE), expected);
}

#[test]
fn signs_with_every_secret_during_rotation() {
    let secrets = [secret("new-secret"), secret("old-secret")];
    let out = sign(Scheme::HokusaiV2, &secrets, true, BODY, NOW, NONCE_1, "");
    let signature = value_of(&out, HEADER_SIGNATURE);
    let entries: Vec<&str> = signature.split(',').collect();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.starts_with("sha256=") && e.len() == 71)
    );
    assert_ne!(entries[0], entries[1]);

    let out = sign(
        Scheme::StandardWebhooks,
        &secrets,
        true,
        BODY,
        NOW,
        "",
        "msg_1",
    );
    let entries: Vec<&str> = value_of(&out, HEADER_WEBHOOK_SIGNATURE)
        .split(' ')
        .collect();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.starts_with("v1,") && e.len() == 47)
    );
}

#[test]
fn signs_with_only_the_first_secret_unless_asked_for_all() {
    let secrets = [secret("new-secret"), secret("old-secret")];
    let out = sign(Scheme::HokusaiLegacy, &secrets, false, BODY, NOW, "", "");
    let signature = value_of(&out, HEADER_SIGNATURE);
    assert!(!signature.contains(','));
    let only_first = sign(
        Scheme::HokusaiLegacy,
        &secrets[..1],
        false,
        BODY,
        NOW,
        "",
        "",
    );
    assert_eq!(signature, value_of(&only_first, HEADER_SIGNATURE));
}

#[test]
fn refuses_an_invalid_whsec_secret() {
    let bad = [secret("ok"), secret("whsec_not*base64!")];
    assert_eq!(
        Signer::new(Scheme::StandardWebhooks, &bad, false).unwrap_err(),
        SigningError::InvalidWhsec { index: 1 }
    );
    assert_eq!(
        Signer::new(Scheme::StandardWebhooks, &[secret("whsec_")], false).unwrap_err(),
        SigningError::InvalidWhsec { index: 0 }
    );
    // The hokusai schemes use the bytes as they are.
    Signer::new(Scheme::HokusaiV2, &bad, true).unwrap();
    let signed_by_first = sign(
        Scheme::StandardWebhooks,
        &bad[..1],
        false,
        BODY,
        NOW,
        "",
        "m",
    );
    assert_eq!(
        verify(None, &header_map(&signed_by_first), BODY, &bad, NOW, 300),
        Err(VerifyError::InvalidSecret { index: 1 })
    );
}

#[test]
fn refuses_to_build_a_signer_without_secrets() {
    assert_eq!(
        Signer::new(Scheme::HokusaiV2, &[], false).unwrap_err(),
        SigningError::NoSecret
    );
    assert_eq!(
        verify(
            None,
            &v2_headers(&[secret("s")], BODY, NOW),
            BODY,
            &[],
            NOW,
            300
        ),
        Err(VerifyError::NoSecret)
    );
}

#[test]
fn never_prints_key_material() {
    let signer = Signer::new(
        Scheme::StandardWebhooks,
        &[secret("whsec_c2VjcmV0LWtleQ==")],
        false,
    )
    .unwrap();
    let debug = format!("{signer:?}");
    assert!(!debug.contains("whsec"), "{debug}");
    assert!(!debug.contains("c2VjcmV0"), "{debug}");
    assert!(!debug.contains("secret-key"), "{debug}");
    let error = SigningError::InvalidWhsec { index: 0 }.to_string();
    assert!(error.contains("#1"), "{error}");
}

#[test]
fn signer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Signer>();
}

#[test]
fn names_every_scheme_as_the_config_does() {
    for scheme in [
        Scheme::HokusaiV2,
        Scheme::HokusaiLegacy,
        Scheme::StandardWebhooks,
    ] {
        let json = serde_json::to_string(&scheme).unwrap();
        assert_eq!(json, format!("\"{}\"", scheme_name(scheme)));
    }
}
