//! Telnyx webhook signatures against Telnyx's own SDK (`telnyx.Telnyx().webhooks.unwrap`) and
//! an Ed25519 signer made with PyNaCl.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use http::{HeaderMap, HeaderValue};
use salve_channels::telnyx::{TelnyxConfig, TelnyxProvider, TelnyxSender};
use salve_channels::{Provider, SignatureError, WebhookEvent, WebhookRequest};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use crate::support::run_python;

const SEED: [u8; 32] = [7; 32];

fn payload() -> String {
    json!({
        "data": {
            "event_type": "message.received",
            "id": "b301ed3f-1490-491f-995f-6e64e69674d4",
            "occurred_at": "2026-12-02T10:00:00.000+00:00",
            "record_type": "event",
            "payload": {
                "id": "84cca175-9755-4859-b67f-4730d7f58aa3",
                "record_type": "message",
                "direction": "inbound",
                "type": "SMS",
                "from": {"phone_number": "+13125550142", "carrier": "T-Mobile USA", "line_type": "Wireless"},
                "to": [{"phone_number": "+13125550100", "status": "webhook_delivered"}],
                "text": "Running late, sorry — 10 min",
                "media": []
            }
        },
        "meta": {"attempt": 1, "delivered_to": "https://salve.example.org/hooks/telnyx"}
    })
    .to_string()
}

fn provider(public_key: &str) -> TelnyxProvider {
    TelnyxProvider::new(TelnyxConfig::new(
        SecretString::from("KEY_test".to_string()),
        TelnyxSender::From("+13125550100".into()),
        public_key,
    ))
    .unwrap()
}

fn headers(signature: &str, timestamp: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "Telnyx-Signature-Ed25519",
        HeaderValue::from_str(signature).unwrap(),
    );
    h.insert(
        "Telnyx-Timestamp",
        HeaderValue::from_str(timestamp).unwrap(),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

fn rust_sign(key: &SigningKey, timestamp: &str, body: &str) -> String {
    BASE64.encode(
        key.sign(format!("{timestamp}|{body}").as_bytes())
            .to_bytes(),
    )
}

fn verify(
    p: &TelnyxProvider,
    h: &HeaderMap,
    body: &str,
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    p.verify_webhook(
        &WebhookRequest {
            public_url: "https://salve.example.org/hooks/telnyx",
            headers: h,
            body: body.as_bytes(),
        },
        now,
    )
}

#[test]
fn ed25519_webhooks_agree_with_telnyxs_sdk() {
    let key = SigningKey::from_bytes(&SEED);
    let public_key = BASE64.encode(key.verifying_key().as_bytes());
    let p = provider(&public_key);
    let body = payload();
    // Telnyx's SDK checks against the real clock: so do these cases.
    let now = OffsetDateTime::now_utc();
    let ts = now.unix_timestamp().to_string();
    // The SDK reads its clock a moment later (Python starts): a margin keeps these clear of
    // the window's edge there. Rust is checked at the edge below, against the `now` it gets.
    let stale = (now.unix_timestamp() - 360).to_string();
    let future = (now.unix_timestamp() + 360).to_string();
    let rust_sig = rust_sign(&key, &ts, &body);
    let stale_sig = rust_sign(&key, &stale, &body);
    let future_sig = rust_sign(&key, &future, &body);
    let tampered = body.replace("10 min", "20 min");
    let h = |sig: &str, ts: &str| json!({"telnyx-signature-ed25519": sig, "telnyx-timestamp": ts});

    let cases = json!([
        {"op": "sign", "seed": BASE64.encode(SEED), "timestamp": ts, "payload": body},
        {"op": "unwrap", "public_key": public_key, "payload": body, "headers": h(&rust_sig, &ts)},
        {"op": "unwrap", "public_key": public_key, "payload": body, "headers": h(&stale_sig, &stale)},
        {"op": "unwrap", "public_key": public_key, "payload": body, "headers": h(&future_sig, &future)},
        {"op": "unwrap", "public_key": public_key, "payload": tampered, "headers": h(&rust_sig, &ts)},
    ]);
    let Some(out) = run_python("telnyx_webhooks.py", &cases) else {
        return;
    };
    let py_sig = out[0].as_str().unwrap().to_string();
    assert_eq!(
        py_sig, rust_sig,
        "Ed25519 is deterministic: same key, same signature"
    );
    assert_eq!(
        out[1][0],
        json!(true),
        "Telnyx's SDK accepts Salve-made signatures: {}",
        out[1]
    );
    assert_eq!(out[2][0], json!(false), "stale refused by the SDK");
    assert_eq!(out[3][0], json!(false), "future refused by the SDK");
    assert_eq!(out[4][0], json!(false), "tampered refused by the SDK");

    // Rust accepts the signature PyNaCl made.
    assert_eq!(verify(&p, &headers(&py_sig, &ts), &body, now), Ok(()));
    // Stale and future timestamps (validly signed) are refused, from 301 s either side.
    assert_eq!(
        verify(&p, &headers(&stale_sig, &stale), &body, now),
        Err(SignatureError::Stale)
    );
    assert_eq!(
        verify(&p, &headers(&future_sig, &future), &body, now),
        Err(SignatureError::Stale)
    );
    for offset in [-301, 301] {
        let t = (now.unix_timestamp() + offset).to_string();
        assert_eq!(
            verify(&p, &headers(&rust_sign(&key, &t, &body), &t), &body, now),
            Err(SignatureError::Stale),
            "{offset}"
        );
    }
    // 300 s is still inside the window.
    for offset in [-300, 300] {
        let edge = (now.unix_timestamp() + offset).to_string();
        assert_eq!(
            verify(
                &p,
                &headers(&rust_sign(&key, &edge, &body), &edge),
                &body,
                now
            ),
            Ok(())
        );
    }
    // The same request replayed later, against the `now` passed in.
    assert_eq!(
        verify(
            &p,
            &headers(&py_sig, &ts),
            &body,
            now + time::Duration::seconds(301)
        ),
        Err(SignatureError::Stale)
    );
    // Tampered body, timestamp swapped under a valid signature, another key.
    assert_eq!(
        verify(&p, &headers(&py_sig, &ts), &tampered, now),
        Err(SignatureError::Mismatch)
    );
    let ts_plus = (now.unix_timestamp() + 1).to_string();
    assert_eq!(
        verify(&p, &headers(&py_sig, &ts_plus), &body, now),
        Err(SignatureError::Mismatch)
    );
    let other =
        provider(&BASE64.encode(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes()));
    assert_eq!(
        verify(&other, &headers(&py_sig, &ts), &body, now),
        Err(SignatureError::Mismatch)
    );
    // Malformed and missing headers.
    assert_eq!(
        verify(&p, &headers("nope", &ts), &body, now),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(&p, &headers(&BASE64.encode([0u8; 63]), &ts), &body, now),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(&p, &headers(&py_sig, "soon"), &body, now),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(&p, &headers(&py_sig, "-99999999999999999999"), &body, now),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(&p, &headers(&py_sig, &i64::MIN.to_string()), &body, now),
        Err(SignatureError::Stale)
    );
    let mut missing = headers(&py_sig, &ts);
    missing.remove("telnyx-timestamp");
    assert_eq!(
        verify(&p, &missing, &body, now),
        Err(SignatureError::Missing)
    );

    // And the verified body parses.
    match p
        .parse_webhook(body.as_bytes(), Some("application/json"))
        .unwrap()
    {
        WebhookEvent::Inbound(m) => {
            assert_eq!(
                m.provider_message_id,
                "84cca175-9755-4859-b67f-4730d7f58aa3"
            );
            assert_eq!(m.body.expose(), "Running late, sorry — 10 min");
        }
        other => panic!("{other:?}"),
    }
}
