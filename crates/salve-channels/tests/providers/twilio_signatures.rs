//! Twilio webhook signatures against Twilio's own `RequestValidator` (the `twilio` package).

use http::{HeaderMap, HeaderValue};
use salve_channels::SignatureError;
use salve_channels::twilio::{
    SignatureAlgorithm, WebhookSigning, compute_signature, verify_signature,
};
use secrecy::SecretString;
use serde_json::json;
use sha2::Digest as _;

use crate::support::{AUTH_TOKEN, run_python};

const SHARED_KEY: &str = "webhooks-shared-key-secret-0123456789";
const URL: &str = "https://salve.example.org/hooks/twilio/inbound?practice=7&note=a%20b";

fn params() -> Vec<(String, String)> {
    [
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("From", "+13125550142"),
        ("To", "+13125550100"),
        ("Body", "Café at 5? ok & thanks = yes+no"),
        ("NumMedia", "2"),
        // Repeated parameters, out of order: the validator sorts each name's values.
        ("Tag", "zeta"),
        ("Tag", "alpha"),
        ("Tag", "alpha"),
        (
            "MediaUrl0",
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn form_body(params: &[(String, String)]) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

fn signing(algorithm: SignatureAlgorithm) -> WebhookSigning {
    let secret = match algorithm {
        SignatureAlgorithm::HmacSha1 => AUTH_TOKEN,
        SignatureAlgorithm::HmacSha256 => SHARED_KEY,
    };
    WebhookSigning {
        algorithm,
        secret: SecretString::from(secret.to_string()),
    }
}

fn headers(signature: &str, settings: Option<&str>, content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "X-Twilio-Signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    if let Some(s) = settings {
        h.insert(
            "X-Twilio-Webhooks-Signature-Settings",
            HeaderValue::from_str(s).unwrap(),
        );
    }
    h.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    h
}

const FORM: &str = "application/x-www-form-urlencoded";
const SHA256_SETTINGS: &str = "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA256";

fn pairs_json(params: &[(String, String)]) -> serde_json::Value {
    json!(params.iter().map(|(k, v)| [k, v]).collect::<Vec<_>>())
}

#[test]
fn signatures_made_by_twilios_validator_are_accepted_and_tampering_is_refused() {
    let params = params();
    let with_port = URL.replacen(".org/", ".org:443/", 1);
    let json_body = r#"{"MessageSid":"SM0123456789abcdef0123456789abcdef","Body":"hi"}"#;
    let json_url = format!(
        "https://salve.example.org/hooks/twilio/json?bodySHA256={}",
        hex::encode(sha2::Sha256::digest(json_body.as_bytes()))
    );
    let cases = json!([
        // 0: form, URL as configured
        {"op": "sign", "secret": AUTH_TOKEN, "url": URL, "params": pairs_json(&params)},
        // 1: form, Twilio signed the URL with an explicit :443
        {"op": "sign", "secret": AUTH_TOKEN, "url": with_port, "params": pairs_json(&params)},
        // 2: JSON body: only the URL (with bodySHA256) is signed
        {"op": "sign", "secret": AUTH_TOKEN, "url": json_url, "params": []},
        // 3: HMAC-SHA256 with a SharedKey
        {"op": "sign", "secret": SHARED_KEY, "url": URL, "params": pairs_json(&params), "algorithm": "HMAC_SHA256"},
        // 4: HMAC-SHA1 with the SharedKey secret (what a downgrade would send)
        {"op": "sign", "secret": SHARED_KEY, "url": URL, "params": pairs_json(&params), "algorithm": "HMAC_SHA1"},
    ]);
    let Some(out) = run_python("twilio_validator.py", &cases) else {
        return;
    };
    let sig = |i: usize| out[i].as_str().unwrap().to_string();
    let body = form_body(&params);
    let sha1 = signing(SignatureAlgorithm::HmacSha1);
    let sha256 = signing(SignatureAlgorithm::HmacSha256);

    // Accepted: form with repeated params and a query string, with and without the port.
    assert_eq!(
        verify_signature(&sha1, URL, &headers(&sig(0), None, FORM), &body),
        Ok(())
    );
    assert_eq!(
        verify_signature(&sha1, URL, &headers(&sig(1), None, FORM), &body),
        Ok(()),
        "signed with :443, configured without"
    );
    assert_eq!(
        verify_signature(&sha1, &with_port, &headers(&sig(0), None, FORM), &body),
        Ok(()),
        "signed without the port, configured with :443"
    );
    // The charset parameter of the content type does not matter.
    assert_eq!(
        verify_signature(
            &sha1,
            URL,
            &headers(
                &sig(0),
                None,
                "application/x-www-form-urlencoded; charset=UTF-8"
            ),
            &body
        ),
        Ok(())
    );
    // Parameter order in the body does not matter.
    let mut reordered = params.clone();
    reordered.reverse();
    assert_eq!(
        verify_signature(
            &sha1,
            URL,
            &headers(&sig(0), None, FORM),
            &form_body(&reordered)
        ),
        Ok(())
    );
    // JSON with bodySHA256.
    assert_eq!(
        verify_signature(
            &sha1,
            &json_url,
            &headers(&sig(2), None, "application/json"),
            json_body.as_bytes()
        ),
        Ok(())
    );
    // SHA-256 pinned, SHA-256 sent.
    assert_eq!(
        verify_signature(
            &sha256,
            URL,
            &headers(&sig(3), Some(SHA256_SETTINGS), FORM),
            &body
        ),
        Ok(())
    );

    // Tampered parameter, added parameter, dropped repeated value, other URL, other body.
    let mut tampered = params.clone();
    tampered[3].1.push('!');
    let mut added = params.clone();
    added.push(("Extra".into(), "1".into()));
    let mut dropped = params.clone();
    dropped.retain(|(k, v)| !(k == "Tag" && v == "zeta"));
    for bad in [tampered, added, dropped] {
        assert_eq!(
            verify_signature(&sha1, URL, &headers(&sig(0), None, FORM), &form_body(&bad)),
            Err(SignatureError::Mismatch)
        );
    }
    assert_eq!(
        verify_signature(
            &sha1,
            &URL.replace("practice=7", "practice=8"),
            &headers(&sig(0), None, FORM),
            &body
        ),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(
            &sha1,
            &json_url,
            &headers(&sig(2), None, "application/json"),
            br#"{"MessageSid":"SM0123456789abcdef0123456789abcdef","Body":"hj"}"#
        ),
        Err(SignatureError::Mismatch),
        "the body must match bodySHA256"
    );
    assert_eq!(
        verify_signature(
            &sha1,
            "https://salve.example.org/hooks/twilio/json",
            &headers(&sig(2), None, "application/json"),
            json_body.as_bytes()
        ),
        Err(SignatureError::Mismatch),
        "a JSON body without bodySHA256 is refused"
    );

    // Downgrade: SHA-256 pinned, a SHA-1 signature without the settings header is refused
    // before any MAC is computed; and SHA-1 pinned refuses a request claiming SHA-256.
    assert_eq!(
        verify_signature(&sha256, URL, &headers(&sig(4), None, FORM), &body),
        Err(SignatureError::WrongAlgorithm)
    );
    assert_eq!(
        verify_signature(
            &sha1,
            URL,
            &headers(&sig(3), Some(SHA256_SETTINGS), FORM),
            &body
        ),
        Err(SignatureError::WrongAlgorithm)
    );
    assert_eq!(
        verify_signature(
            &sha256,
            URL,
            &headers(&sig(4), Some("algorithm=HMAC_SHA1"), FORM),
            &body
        ),
        Err(SignatureError::WrongAlgorithm)
    );
    // The header claims SHA-256 but the signature is SHA-1: no match.
    assert_eq!(
        verify_signature(
            &sha256,
            URL,
            &headers(&sig(4), Some(SHA256_SETTINGS), FORM),
            &body
        ),
        Err(SignatureError::Mismatch)
    );
    // Unknown algorithm, missing and malformed signatures.
    assert_eq!(
        verify_signature(
            &sha1,
            URL,
            &headers(&sig(0), Some("algorithm=HMAC_MD5"), FORM),
            &body
        ),
        Err(SignatureError::WrongAlgorithm)
    );
    let mut none = headers(&sig(0), None, FORM);
    none.remove("X-Twilio-Signature");
    assert_eq!(
        verify_signature(&sha1, URL, &none, &body),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify_signature(&sha1, URL, &headers("not base64!", None, FORM), &body),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify_signature(&sha1, URL, &headers("", None, FORM), &body),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn signatures_made_in_rust_pass_twilios_validator() {
    let params = params();
    let with_port = URL.replacen(".org/", ".org:443/", 1);
    let s1 = compute_signature(SignatureAlgorithm::HmacSha1, AUTH_TOKEN, URL, &params);
    let s1_port = compute_signature(
        SignatureAlgorithm::HmacSha1,
        AUTH_TOKEN,
        &with_port,
        &params,
    );
    let s256 = compute_signature(SignatureAlgorithm::HmacSha256, SHARED_KEY, URL, &params);
    let json_body = r#"{"a":1}"#;
    let json_url = format!(
        "https://salve.example.org/hooks/json?bodySHA256={}",
        hex::encode(sha2::Sha256::digest(json_body.as_bytes()))
    );
    let s_json = compute_signature(SignatureAlgorithm::HmacSha1, AUTH_TOKEN, &json_url, &[]);
    let mut tampered = params.clone();
    tampered[1].1 = "+13125550143".into();
    let cases = json!([
        {"op": "validate", "secret": AUTH_TOKEN, "url": URL, "params": pairs_json(&params), "signature": s1},
        {"op": "validate", "secret": AUTH_TOKEN, "url": with_port, "params": pairs_json(&params), "signature": s1},
        {"op": "validate", "secret": AUTH_TOKEN, "url": URL, "params": pairs_json(&params), "signature": s1_port},
        {"op": "validate", "secret": SHARED_KEY, "url": URL, "params": pairs_json(&params), "signature": s256, "algorithm": "HMAC_SHA256"},
        {"op": "validate", "secret": AUTH_TOKEN, "url": json_url, "body": json_body, "signature": s_json},
        // Refused by Twilio's validator too:
        {"op": "validate", "secret": AUTH_TOKEN, "url": URL, "params": pairs_json(&tampered), "signature": s1},
        {"op": "validate", "secret": SHARED_KEY, "url": URL, "params": pairs_json(&params), "signature": s256, "algorithm": "HMAC_SHA1"},
        {"op": "validate", "secret": AUTH_TOKEN, "url": json_url, "body": "{\"a\":2}", "signature": s_json},
    ]);
    let Some(out) = run_python("twilio_validator.py", &cases) else {
        return;
    };
    assert_eq!(
        out,
        json!([true, true, true, true, true, false, false, false])
    );
}
