//! Error classification and reconciliation against small local HTTP servers.

use salve_channels::telnyx::{TelnyxConfig, TelnyxProvider, TelnyxSender};
use salve_channels::twilio::TwilioSender;
use salve_channels::{MediaDeletion, MediaRef, Provider, ProviderError, Reconciliation};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::support::{
    ACCOUNT_SID, Behaviour, OUR_NUMBER, PATIENT, canned, form_pairs, message, refused_base_url,
    request_body, twilio, twilio_config,
};

fn twilio_error(code: u32, status: u16) -> String {
    json!({
        "code": code,
        "message": format!("The 'To' number {PATIENT} is not valid (error {code})"),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    })
    .to_string()
}

fn assert_log_safe(e: &ProviderError) {
    for shown in [e.to_string(), format!("{e:?}"), e.code().to_string()] {
        assert!(!shown.contains("0142"), "{shown}");
    }
}

#[tokio::test]
async fn twilio_send_posts_the_form_and_returns_the_sid() {
    let server = canned(Behaviour::Answer(
        201,
        json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}).to_string(),
    ))
    .await;
    let receipt = twilio(&server.base_url)
        .send(&message("See https://salve.example.org/m/x"))
        .await
        .unwrap();
    assert_eq!(receipt.provider_id, "SM0123456789abcdef0123456789abcdef");
    let raw = server.requests.lock().unwrap()[0].clone();
    assert!(raw.starts_with(&format!(
        "POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json HTTP/1.1"
    )));
    assert!(raw.to_ascii_lowercase().contains("authorization: basic "));
    let form = form_pairs(request_body(&raw));
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some(PATIENT));
    assert_eq!(get("From"), Some(OUR_NUMBER));
    assert_eq!(get("Body"), Some("See https://salve.example.org/m/x"));
    assert_eq!(
        get("StatusCallback"),
        Some("https://salve.example.org/hooks/twilio/status")
    );
    assert_eq!(get("ShortenUrls"), None, "links are never rewritten");
}

#[tokio::test]
async fn twilio_errors_are_classified() {
    let cases = [
        (500, String::new(), "transient", "http_500"),
        (503, twilio_error(20500, 503), "transient", "http_503"),
        (429, twilio_error(20429, 429), "transient", "http_429"),
        (400, twilio_error(21211, 400), "permanent", "twilio_21211"),
        (400, twilio_error(21610, 400), "permanent", "twilio_21610"),
        (400, "not json".to_string(), "permanent", "http_400"),
        (401, twilio_error(20003, 401), "transient", "twilio_20003"),
    ];
    for (status, body, kind, code) in cases {
        let server = canned(Behaviour::Answer(status, body.clone())).await;
        let e = twilio(&server.base_url)
            .send(&message("hello"))
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.code()), (kind, code), "{status} {body}");
        assert_log_safe(&e);
        if body.contains("error") {
            assert!(
                e.detail().expose().contains(PATIENT),
                "the provider's text is kept for sealed storage"
            );
        }
    }
    // An email is not sent as SMS, and nothing goes out.
    let server = canned(Behaviour::Answer(201, "{}".into())).await;
    let mut email = message("x");
    email.channel = salve_channels::Channel::Email;
    let e = twilio(&server.base_url).send(&email).await.unwrap_err();
    assert_eq!((e.kind(), e.code()), ("permanent", "channel_unsupported"));
    let e = telnyx(&server.base_url).send(&email).await.unwrap_err();
    assert_eq!(e.code(), "channel_unsupported");
    assert!(server.requests.lock().unwrap().is_empty());

    // 2xx without a sid: Twilio took it, Salve cannot say under which id.
    let server = canned(Behaviour::Answer(201, "{}".into())).await;
    let e = twilio(&server.base_url)
        .send(&message("x"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.code()), ("ambiguous", "response_unreadable"));
}

#[tokio::test]
async fn no_answer_after_sending_is_ambiguous_and_a_refused_connection_transient() {
    let server = canned(Behaviour::Hang).await;
    let e = twilio(&server.base_url)
        .send(&message("hello"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.code()), ("ambiguous", "timeout"));
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "the request was sent"
    );
    assert_log_safe(&e);

    let e = twilio(&refused_base_url().await)
        .send(&message("hello"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.code()), ("transient", "connect"));
}

fn listed(sid: &str, to: &str, body: &str, created: OffsetDateTime) -> serde_json::Value {
    json!({
        "sid": sid,
        "to": to,
        "from": OUR_NUMBER,
        "body": body,
        "direction": "outbound-api",
        "status": "queued",
        "date_created": created.format(&Rfc2822).unwrap(),
        "date_sent": null,
    })
}

#[tokio::test]
async fn twilio_reconcile_matches_recipient_sender_body_and_time() {
    let started = OffsetDateTime::now_utc();
    let earlier = started - time::Duration::hours(3);
    let m = message("Your appointment is confirmed");
    let body = m.body.expose().clone();
    let list = |messages: Vec<serde_json::Value>, next: Option<&str>| {
        json!({"messages": messages, "next_page_uri": next, "page": 0, "page_size": 50}).to_string()
    };

    // The attempt's message is there (queued, no send date yet): Sent, with its sid.
    let server = canned(Behaviour::Answer(
        200,
        list(
            vec![
                listed(
                    "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    PATIENT,
                    "other text",
                    started,
                ),
                listed(
                    "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                    PATIENT,
                    &body,
                    started,
                ),
                listed(
                    "SMcccccccccccccccccccccccccccccccc",
                    PATIENT,
                    &body,
                    earlier,
                ),
            ],
            Some("/next"),
        ),
    ))
    .await;
    let p = twilio(&server.base_url);
    assert_eq!(
        p.reconcile(&m, Some(started)).await,
        Reconciliation::Sent(salve_channels::SendReceipt {
            provider_id: "SMbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into()
        })
    );
    let raw = server.requests.lock().unwrap()[0].clone();
    let target = raw.lines().next().unwrap().to_string();
    assert!(target.starts_with(&format!(
        "GET /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?"
    )));
    let query = form_pairs(target.split_once('?').unwrap().1.split(' ').next().unwrap());
    assert!(query.contains(&("To".into(), PATIENT.into())));
    assert!(query.contains(&("From".into(), OUR_NUMBER.into())));
    // Without knowing when the attempt started, an identical message proves nothing.
    assert_eq!(p.reconcile(&m, None).await, Reconciliation::CannotTell);

    // Only an earlier identical message, and the list reaches before the attempt: NotSent.
    let server = canned(Behaviour::Answer(
        200,
        list(
            vec![listed(
                "SMcccccccccccccccccccccccccccccccc",
                PATIENT,
                &body,
                earlier,
            )],
            Some("/next"),
        ),
    ))
    .await;
    assert_eq!(
        twilio(&server.base_url).reconcile(&m, Some(started)).await,
        Reconciliation::NotSent
    );

    // A full page of newer, unrelated messages with more to come: cannot tell.
    let server = canned(Behaviour::Answer(
        200,
        list(
            vec![listed(
                "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                PATIENT,
                "other",
                started,
            )],
            Some("/next"),
        ),
    ))
    .await;
    assert_eq!(
        twilio(&server.base_url).reconcile(&m, Some(started)).await,
        Reconciliation::CannotTell
    );

    // Nothing at all for this recipient: NotSent, even without a start time.
    let server = canned(Behaviour::Answer(200, list(vec![], None))).await;
    assert_eq!(
        twilio(&server.base_url).reconcile(&m, None).await,
        Reconciliation::NotSent
    );

    // The list fails, answers garbage, or never answers: cannot tell.
    for behaviour in [
        Behaviour::Answer(500, String::new()),
        Behaviour::Answer(200, "{\"messages\": 5}".into()),
        Behaviour::Hang,
    ] {
        let server = canned(behaviour).await;
        assert_eq!(
            twilio(&server.base_url).reconcile(&m, Some(started)).await,
            Reconciliation::CannotTell
        );
    }
    assert_eq!(
        twilio(&refused_base_url().await)
            .reconcile(&m, Some(started))
            .await,
        Reconciliation::CannotTell
    );

    // Through a Messaging Service, the sender is matched on the service.
    let server = canned(Behaviour::Answer(
        200,
        list(
            vec![{
                let mut v = listed(
                    "SMdddddddddddddddddddddddddddddddd",
                    PATIENT,
                    &body,
                    started,
                );
                v["from"] = json!("+13125550199");
                v["messaging_service_sid"] = json!("MG0123456789abcdef0123456789abcdef");
                v
            }],
            None,
        ),
    ))
    .await;
    let p = salve_channels::twilio::TwilioProvider::new(twilio_config(
        &server.base_url,
        TwilioSender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
    ))
    .unwrap();
    assert!(matches!(
        p.reconcile(&m, Some(started)).await,
        Reconciliation::Sent(_)
    ));
    let raw = server.requests.lock().unwrap()[0].clone();
    assert!(
        !raw.lines().next().unwrap().contains("From="),
        "no From filter for a pool"
    );
}

#[tokio::test]
async fn twilio_deletes_only_its_own_media() {
    let server = canned(Behaviour::Answer(204, String::new())).await;
    let p = twilio(&server.base_url);
    let media = MediaRef {
        url: format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM0123456789abcdef0123456789abcdef/Media/ME0123456789abcdef0123456789abcdef",
            server.base_url
        ),
        content_type: "image/jpeg".into(),
    };
    assert_eq!(
        p.delete_media(&media).await.unwrap(),
        MediaDeletion::Deleted
    );
    let raw = server.requests.lock().unwrap()[0].clone();
    assert!(raw.starts_with(&format!("DELETE /2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM0123456789abcdef0123456789abcdef/Media/ME0123456789abcdef0123456789abcdef.json HTTP/1.1")), "{raw}");

    let gone = canned(Behaviour::Answer(404, twilio_error(20404, 404))).await;
    let media_gone = MediaRef {
        url: media.url.replace(&server.base_url, &gone.base_url),
        ..media.clone()
    };
    assert_eq!(
        twilio(&gone.base_url)
            .delete_media(&media_gone)
            .await
            .unwrap(),
        MediaDeletion::NotFound
    );

    // A URL elsewhere never gets the credentials.
    for url in [
        "https://attacker.example/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM0123456789abcdef0123456789abcdef/Media/ME0123456789abcdef0123456789abcdef".to_string(),
        format!("{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/../../x/Media/y", server.base_url),
        String::new(),
    ] {
        let e = p
            .delete_media(&MediaRef { url, content_type: "image/jpeg".into() })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.code()), ("permanent", "media_url_foreign"));
    }
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

fn telnyx(base_url: &str) -> TelnyxProvider {
    let mut config = TelnyxConfig::new(
        SecretString::from("KEY0123_secret".to_string()),
        TelnyxSender::MessagingProfile("400174b8-0b8c-4d4f-9d2d-6ef0d6b0c5a1".into()),
        // Any valid Ed25519 public key: the provider only needs one to build.
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            ed25519_dalek::SigningKey::from_bytes(&[1; 32])
                .verifying_key()
                .as_bytes(),
        ),
    );
    config.base_url = base_url.into();
    config.webhook_url = Some("https://salve.example.org/hooks/telnyx".into());
    config.connect_timeout = std::time::Duration::from_millis(300);
    config.request_timeout = std::time::Duration::from_millis(300);
    TelnyxProvider::new(config).unwrap()
}

#[tokio::test]
async fn telnyx_send_and_errors() {
    let server = canned(Behaviour::Answer(
        200,
        json!({"data": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "record_type": "message"}})
            .to_string(),
    ))
    .await;
    let p = telnyx(&server.base_url);
    let receipt = p.send(&message("hello")).await.unwrap();
    assert_eq!(receipt.provider_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
    let raw = server.requests.lock().unwrap()[0].clone();
    assert!(raw.starts_with("POST /v2/messages HTTP/1.1"));
    assert!(
        raw.contains("authorization: Bearer KEY0123_secret")
            || raw
                .to_ascii_lowercase()
                .contains("authorization: bearer key0123_secret")
    );
    let sent: serde_json::Value = serde_json::from_str(request_body(&raw)).unwrap();
    assert_eq!(
        sent,
        json!({
            "to": PATIENT,
            "text": "hello",
            "messaging_profile_id": "400174b8-0b8c-4d4f-9d2d-6ef0d6b0c5a1",
            "webhook_url": "https://salve.example.org/hooks/telnyx",
        })
    );
    assert!(p.capabilities().picks_sender_number);
    assert!(p.capabilities().handles_opt_out_keywords);
    assert!(!p.capabilities().can_reconcile);

    let stop = json!({"errors": [{"code": "40300", "title": "Blocked due to STOP message",
        "detail": format!("Messages cannot be sent from '+13125550100' to '{PATIENT}' due to an existing block rule.")}]})
    .to_string();
    for (status, body, kind, code) in [
        (403, stop.as_str(), "permanent", "telnyx_40300"),
        (
            422,
            r#"{"errors":[{"code":"40310","title":"Invalid 'to' address"}]}"#,
            "permanent",
            "telnyx_40310",
        ),
        (429, "", "transient", "http_429"),
        (502, "<html>", "transient", "http_502"),
    ] {
        let server = canned(Behaviour::Answer(status, body.into())).await;
        let e = telnyx(&server.base_url)
            .send(&message("x"))
            .await
            .unwrap_err();
        assert_eq!((e.kind(), e.code()), (kind, code));
        assert_log_safe(&e);
    }
    let server = canned(Behaviour::Hang).await;
    let e = telnyx(&server.base_url)
        .send(&message("x"))
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.code()), ("ambiguous", "timeout"));
    let e = telnyx(&refused_base_url().await)
        .send(&message("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "transient");

    // No reconciliation and no media deletion at Telnyx.
    assert_eq!(
        p.reconcile(&message("x"), Some(OffsetDateTime::now_utc()))
            .await,
        Reconciliation::CannotTell
    );
    assert_eq!(
        p.delete_media(&MediaRef {
            url: "https://x.example/a".into(),
            content_type: "image/png".into()
        })
        .await
        .unwrap(),
        MediaDeletion::Unsupported
    );
}
