//! Verification: tampering, stale timestamps, malformed and duplicated headers, scheme
//! detection and the canonical nonce.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

#[test]
fn verifies_the_published_standard_webhooks_headers_as_given() {
    // Built from the fixture text directly, not from our own signer.
    let f = fixtures();
    for v in f["standard_webhooks"].as_array().unwrap() {
        let headers = header_map(&[
            (HEADER_WEBHOOK_ID, text(v, "id").to_owned()),
            (HEADER_WEBHOOK_TIMESTAMP, text(v, "timestamp").to_owned()),
            (HEADER_WEBHOOK_SIGNATURE, text(v, "signature").to_owned()),
        ]);
        let secrets = [secret(text(v, "secret"))];
        verify(
            Some(Scheme::StandardWebhooks),
            &headers,
            text(v, "body").as_bytes(),
            &secrets,
            0,
            0,
        )
        .unwrap();
    }
}

#[test]
fn verifies_with_the_old_secret_during_rotation() {
    let both = [secret("new-secret"), secret("old-secret")];
    for scheme in [
        Scheme::HokusaiV2,
        Scheme::HokusaiLegacy,
        Scheme::StandardWebhooks,
    ] {
        let headers = header_map(&sign(scheme, &both, true, BODY, NOW, NONCE_1, "msg_1"));
        let old_only = [secret("old-secret")];
        let verified = verify(None, &headers, BODY, &old_only, NOW, 300).unwrap();
        assert_eq!(verified.scheme, scheme);
        assert_eq!(verified.secret_index, 0);
    }
}

#[test]
fn reports_which_listed_secret_matched() {
    let headers = v2_headers(&[secret("old-secret")], BODY, NOW);
    let listed = [secret("new-secret"), secret("old-secret")];
    let verified = verify(None, &headers, BODY, &listed, NOW, 300).unwrap();
    assert_eq!(verified.secret_index, 1);
}

#[test]
fn rejects_a_wrong_secret() {
    for scheme in [
        Scheme::HokusaiV2,
        Scheme::HokusaiLegacy,
        Scheme::StandardWebhooks,
    ] {
        let headers = header_map(&sign(
            scheme,
            &[secret("right")],
            false,
            BODY,
            NOW,
            NONCE_1,
            "msg_1",
        ));
        let result = verify(None, &headers, BODY, &[secret("wrong")], NOW, 300);
        assert_eq!(result, Err(VerifyError::NoMatch), "{scheme:?}");
    }
}

#[test]
fn rejects_a_tampered_body() {
    for scheme in [
        Scheme::HokusaiV2,
        Scheme::HokusaiLegacy,
        Scheme::StandardWebhooks,
    ] {
        let secrets = [secret("s3cret")];
        let headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, "msg_1"));
        let tampered = br#"{"model_id":"m","event_type":"model_ready" }"#;
        let result = verify(None, &headers, tampered, &secrets, NOW, 300);
        assert_eq!(result, Err(VerifyError::NoMatch), "{scheme:?}");
    }
}

#[test]
fn rejects_a_tampered_nonce_or_id() {
    let secrets = [secret("s3cret")];
    let mut headers = v2_headers(&secrets, BODY, NOW);
    headers.insert(HEADER_NONCE, HeaderValue::from_static(NONCE_2));
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn rejects_a_stale_timestamp() {
    let secrets = [secret("s3cret")];
    let headers = v2_headers(&secrets, BODY, NOW - 301);
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::StaleTimestamp { age_secs: 301 })
    );
    let headers = header_map(&sign(
        Scheme::StandardWebhooks,
        &secrets,
        false,
        BODY,
        NOW - 3600,
        "",
        "msg_1",
    ));
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::StaleTimestamp { age_secs: 3600 })
    );
}

#[test]
fn rejects_a_timestamp_from_the_future() {
    let secrets = [secret("s3cret")];
    let headers = v2_headers(&secrets, BODY, NOW + 301);
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::StaleTimestamp { age_secs: -301 })
    );
}

#[test]
fn accepts_a_timestamp_at_the_edge_of_the_tolerance() {
    let secrets = [secret("s3cret")];
    for ts in [NOW - 300, NOW + 300] {
        verify(
            None,
            &v2_headers(&secrets, BODY, ts),
            BODY,
            &secrets,
            NOW,
            300,
        )
        .unwrap();
    }
}

#[test]
fn accepts_any_timestamp_when_the_tolerance_is_zero() {
    let secrets = [secret("s3cret")];
    let headers = v2_headers(&secrets, BODY, 1);
    verify(None, &headers, BODY, &secrets, NOW, 0).unwrap();
}

#[test]
fn rejects_a_timestamp_that_is_not_unix_seconds() {
    let secrets = [secret("s3cret")];
    for bad in ["", "-5", "+5", "1.5", "abc", "99999999999999999999"] {
        let mut headers = v2_headers(&secrets, BODY, NOW);
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::BadTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn rejects_an_empty_v1_entry_in_standard_webhooks() {
    let secrets = [secret("s3cret")];
    let good = standard_signed(&secrets);
    let good_sig = value_of(&good, HEADER_WEBHOOK_SIGNATURE).to_owned();
    for bad in [
        "v1,".to_owned(),
        format!("v1, {good_sig}"),
        format!("{good_sig} v1,"),
    ] {
        assert_eq!(
            verify(None, &standard_headers(&bad), BODY, &secrets, NOW, 300),
            Err(VerifyError::EmptySignature),
            "{bad:?}"
        );
    }
    verify(None, &standard_headers(&good_sig), BODY, &secrets, NOW, 300).unwrap();
}

#[test]
fn rejects_an_empty_signature_header() {
    let secrets = [secret("s3cret")];
    for scheme in [Scheme::HokusaiV2, Scheme::HokusaiLegacy] {
        let mut headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, ""));
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_static(""));
        assert_eq!(
            verify(Some(scheme), &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::EmptySignature)
        );
    }
    for bad in ["", "sha256=", "sha256=,sha256="] {
        let mut headers = v2_headers(&secrets, BODY, NOW);
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::EmptySignature),
            "{bad:?}"
        );
    }
    assert_eq!(
        verify(None, &standard_headers(""), BODY, &secrets, NOW, 300),
        Err(VerifyError::EmptySignature)
    );
}

#[test]
fn rejects_a_truncated_hex_digest() {
    let secrets = [secret("s3cret")];
    let mut headers = v2_headers(&secrets, BODY, NOW);
    let full = headers[HEADER_SIGNATURE].to_str().unwrap().to_owned();
    for cut in [full.len() - 1, full.len() - 2, "sha256=".len() + 1] {
        headers.insert(
            HEADER_SIGNATURE,
            HeaderValue::from_str(&full[..cut]).unwrap(),
        );
        assert!(
            matches!(
                verify(None, &headers, BODY, &secrets, NOW, 300),
                Err(VerifyError::Malformed(HEADER_SIGNATURE, _))
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn rejects_a_truncated_base64_signature() {
    let secrets = [secret("s3cret")];
    let good = standard_signed(&secrets);
    let tag = STANDARD
        .decode(&value_of(&good, HEADER_WEBHOOK_SIGNATURE)["v1,".len()..])
        .unwrap();
    // Valid base64 of the first 31 bytes of the right tag.
    let truncated = format!("v1,{}", STANDARD.encode(&tag[..TAG_LEN - 1]));
    assert!(matches!(
        verify(
            None,
            &standard_headers(&truncated),
            BODY,
            &secrets,
            NOW,
            300
        ),
        Err(VerifyError::Malformed(HEADER_WEBHOOK_SIGNATURE, _))
    ));
}

#[test]
fn rejects_a_digest_that_is_not_hex_or_base64() {
    let secrets = [secret("s3cret")];
    let mut headers = v2_headers(&secrets, BODY, NOW);
    let not_hex = format!("sha256={}", "zz".repeat(32));
    headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(&not_hex).unwrap());
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::Malformed(
            HEADER_SIGNATURE,
            "digest is not hexadecimal"
        ))
    );
    assert!(matches!(
        verify(
            None,
            &standard_headers("v1,%%%notbase64%%%"),
            BODY,
            &secrets,
            NOW,
            300
        ),
        Err(VerifyError::Malformed(HEADER_WEBHOOK_SIGNATURE, _))
    ));
}

#[test]
fn rejects_a_duplicated_header() {
    let secrets = [secret("s3cret")];
    for name in [HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_NONCE] {
        let mut headers = v2_headers(&secrets, BODY, NOW);
        let copy = headers[name].clone();
        headers.append(name, copy);
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300),
            Err(VerifyError::DuplicateHeader(name))
        );
    }
    let good = standard_signed(&secrets);
    let mut headers = header_map(&good);
    headers.append(
        HEADER_WEBHOOK_SIGNATURE,
        HeaderValue::from_static("v1,AAAA"),
    );
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::DuplicateHeader(HEADER_WEBHOOK_SIGNATURE))
    );
}

#[test]
fn rejects_a_wrong_prefix_or_version() {
    let secrets = [secret("s3cret")];
    let mut headers = v2_headers(&secrets, BODY, NOW);
    let hex = headers[HEADER_SIGNATURE].to_str().unwrap()["sha256=".len()..].to_owned();
    headers.insert(
        HEADER_SIGNATURE,
        HeaderValue::from_str(&format!("sha1={hex}")).unwrap(),
    );
    assert_eq!(
        verify(None, &headers, BODY, &secrets, NOW, 300),
        Err(VerifyError::WrongVersion)
    );

    let good = standard_signed(&secrets);
    let v2 = value_of(&good, HEADER_WEBHOOK_SIGNATURE).replacen("v1,", "v2,", 1);
    assert_eq!(
        verify(None, &standard_headers(&v2), BODY, &secrets, NOW, 300),
        Err(VerifyError::WrongVersion)
    );
}

#[test]
fn ignores_unknown_versions_next_to_a_valid_signature() {
    let secrets = [secret("s3cret")];
    let good = standard_signed(&secrets);
    let mixed = format!("v1a,AAAA {}", value_of(&good, HEADER_WEBHOOK_SIGNATURE));
    verify(None, &standard_headers(&mixed), BODY, &secrets, NOW, 300).unwrap();
}

#[test]
fn detects_the_scheme_from_the_headers() {
    let secrets = [secret("s3cret")];
    for scheme in [
        Scheme::HokusaiV2,
        Scheme::HokusaiLegacy,
        Scheme::StandardWebhooks,
    ] {
        let headers = header_map(&sign(scheme, &secrets, false, BODY, NOW, NONCE_1, "msg_1"));
        assert_eq!(
            verify(None, &headers, BODY, &secrets, NOW, 300)
                .unwrap()
                .scheme,
            scheme
        );
    }
}

#[test]
fn rejects_a_request_without_signature_headers() {
    let secrets = [secret("s3cret")];
    assert_eq!(
        verify(None, &HeaderMap::new(), BODY, &secrets, NOW, 300),
        Err(VerifyError::UnknownScheme)
    );
}

#[test]
fn a_pinned_scheme_needs_its_own_headers() {
    let secrets = [secret("s3cret")];
    let legacy = header_map(&sign(
        Scheme::HokusaiLegacy,
        &secrets,
        false,
        BODY,
        NOW,
        "",
        "",
    ));
    assert_eq!(
        verify(Some(Scheme::HokusaiV2), &legacy, BODY, &secrets, NOW, 300),
        Err(VerifyError::MissingHeader(HEADER_TIMESTAMP))
    );
    let v2 = v2_headers(&secrets, BODY, NOW);
    assert_eq!(
        verify(
            Some(Scheme::StandardWebhooks),
            &v2,
            BODY,
            &secrets,
            NOW,
            300
        ),
        Err(VerifyError::MissingHeader(HEADER_WEBHOOK_ID))
    );
}

#[test]
fn rejects_bytes_moved_from_the_body_into_the_nonce() {
    // Signed with nonce N over body B1 + B2; the forgery sends nonce `N.B1` and body B2,
    // which feeds the MAC exactly the same bytes.
    let secrets = [secret("s3cret")];
    let (b1, b2) = BODY.split_at(10);
    let signed = sign(Scheme::HokusaiV2, &secrets, false, BODY, NOW, NONCE_1, "");
    let mut forged = header_map(&signed);
    let moved = format!("{NONCE_1}.{}", std::str::from_utf8(b1).unwrap());
    forged.insert(HEADER_NONCE, HeaderValue::from_str(&moved).unwrap());
    assert_eq!(
        verify(None, &forged, b2, &secrets, NOW, 300),
        Err(VerifyError::Malformed(
            HEADER_NONCE,
            "is not a canonical UUID (lowercase hex, hyphenated 8-4-4-4-12)"
        ))
    );
    // The genuine request still verifies.
    assert!(verify(None, &header_map(&signed), BODY, &secrets, NOW, 300).is_ok());
}

#[test]
fn accepts_only_the_canonical_lowercase_uuid_as_a_nonce() {
    assert!(is_canonical_nonce(NONCE_1));
    assert!(is_canonical_nonce(&uuid::Uuid::new_v4().to_string()));
    for bad in [
        "",
        "n",
        "0B0E7A4C-5F1D-4C2E-9A3B-6D7E8F901234",
        "0b0e7a4c5f1d4c2e9a3b6d7e8f901234",
        "{0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234}",
        "urn:uuid:0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234",
        "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f90123.",
        "0b0e7a4c.5f1d-4c2e-9a3b-6d7e8f901234",
        "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f901234.x",
        "0b0e7a4c-5f1d-4c2e-9a3b-6d7e8f90123g",
    ] {
        assert!(!is_canonical_nonce(bad), "{bad:?}");
        // A request signed with such a nonce is refused before any MAC is computed.
        let secrets = [secret("s3cret")];
        let mut headers = v2_headers(&secrets, BODY, NOW);
        if let Ok(value) = HeaderValue::from_str(bad) {
            headers.insert(HEADER_NONCE, value);
            assert!(
                matches!(
                    verify(None, &headers, BODY, &secrets, NOW, 300),
                    Err(VerifyError::Malformed(HEADER_NONCE, _))
                ),
                "{bad:?}"
            );
        }
    }
}
