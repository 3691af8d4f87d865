//! The SMTP provider against a real SMTP server: aiosmtpd, run by `tests/peers/smtp_server.py`
//! from the test peers' venv (skipped, saying so, where the venv is missing outside CI).
//!
//! Each test makes its own CA and server certificate with rcgen, starts the server in the mode
//! it needs, sends, then closes the server's stdin and reads everything the server recorded
//! (AUTH attempts, MAIL commands, accepted messages with their TLS state) until it exits. No
//! sleeps: readiness is the server's "ready" line, completion is its exit.

use std::time::Duration;

use salve_channels::{
    Channel, ErrorClass, OutgoingMessage, Provider, ProviderError, Reconciliation, SmtpConfig,
    SmtpProvider, SmtpSecurity, SmtpTimeouts,
};
use salve_core::Sensitive;
use salve_testkit::peers::smtp::{Server, pki};
use serde_json::Value;

const USER: &str = "salve-notify";
const PASSWORD: &str = "correct horse battery staple";
const FROM: &str = "no-reply@practice.example";
const PRACTICE: &str = "Example Family Practice";

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn config(port: u16, security: SmtpSecurity, ca_pem: Option<&str>) -> SmtpConfig {
    SmtpConfig {
        host: "localhost".into(),
        port,
        security,
        username: USER.into(),
        password: PASSWORD.into(),
        from_address: FROM.into(),
        from_name: PRACTICE.into(),
        extra_root_ca_pem: ca_pem.map(str::to_owned),
        hello_name: None,
        default_subject: "You have a new secure message".into(),
        timeouts: SmtpTimeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data: Duration::from_secs(5),
        },
    }
}

fn notification(to: &str, body: &str) -> OutgoingMessage {
    OutgoingMessage {
        id: uuid::Uuid::new_v4(),
        channel: Channel::Email,
        to: Sensitive::new(to.to_owned()),
        subject: Some("New secure message".into()),
        body: Sensitive::new(body.to_owned()),
    }
}

/// What the rest of Salve knows about the patient; none of it may reach the email.
struct Patient {
    name: &'static str,
    family_name: &'static str,
    date_of_birth: &'static str,
    date_of_birth_us: &'static str,
    email: &'static str,
}

const PATIENT: Patient = Patient {
    name: "Margarethe Okonkwo-Lindqvist",
    family_name: "Okonkwo-Lindqvist",
    date_of_birth: "1957-03-14",
    date_of_birth_us: "03/14/1957",
    email: "m.okonkwo@patients.example",
};

#[tokio::test]
async fn starttls_delivers_the_notification_and_nothing_else() {
    let pki = pki("Practice relay CA");
    let Some(server) = Server::start("starttls", Some(&pki)).await else {
        return;
    };
    let provider = SmtpProvider::new(config(
        server.port,
        SmtpSecurity::StartTls,
        Some(&pki.ca_pem),
    ))
    .unwrap();
    // The caller's notification text: a link, no PHI, though the caller knows the patient.
    let text = "You have a new secure message from Example Family Practice: \
                https://portal.practice.example/l/Yk3q9ZtQpR2mW8xN";
    let message = notification(PATIENT.email, text);
    let receipt = provider.send(&message).await.unwrap();
    assert_eq!(
        receipt.provider_id,
        format!("<{}@practice.example>", message.id)
    );

    let events = server.finish().await;
    let messages = of_kind(&events, "message");
    assert_eq!(messages.len(), 1, "exactly one message: {events:?}");
    let m = messages[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!([PATIENT.email]));
    assert_eq!(m["mail_from"], FROM);
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["login"], USER);
    assert!(
        m["tls"].as_str().is_some_and(|v| v.starts_with("TLSv1.")),
        "received over TLS: {m}"
    );
    let auth = of_kind(&events, "auth");
    assert_eq!(auth.len(), 1);
    assert!(
        auth[0]["ok"] == true && auth[0]["tls"].is_string(),
        "{auth:?}"
    );
    assert!(
        of_kind(&events, "mail")
            .iter()
            .all(|e| e["tls"].is_string()),
        "no envelope in plaintext"
    );

    // The body is the notification text, exactly.
    assert_eq!(
        m["body"].as_str().unwrap().trim_end_matches(['\r', '\n']),
        text
    );
    // The headers are the practice, the recipient, the subject, and mail plumbing.
    let headers: Vec<(String, String)> = m["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    for (name, _) in &headers {
        assert!(
            [
                "From",
                "To",
                "Subject",
                "Message-ID",
                "Date",
                "Auto-Submitted",
                "Content-Type",
                "Content-Transfer-Encoding",
                "MIME-Version",
            ]
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name)),
            "unexpected header {name}"
        );
    }
    assert_eq!(
        header("From"),
        Some(format!("{PRACTICE} <{FROM}>").as_str())
    );
    assert_eq!(header("To"), Some(PATIENT.email));
    assert_eq!(header("Subject"), Some("New secure message"));
    assert_eq!(
        header("Message-ID"),
        Some(format!("<{}@practice.example>", message.id).as_str())
    );
    assert_eq!(header("Auto-Submitted"), Some("auto-generated"));

    // Nothing about the patient anywhere in what the server received.
    let raw = m["content"].as_str().unwrap();
    for phi in [
        PATIENT.name,
        PATIENT.family_name,
        "Okonkwo",
        "Margarethe",
        PATIENT.date_of_birth,
        PATIENT.date_of_birth_us,
    ] {
        assert!(!raw.contains(phi), "{phi:?} is in the raw message:\n{raw}");
    }
    // The recipient address is the only patient-specific thing: in To, nowhere else.
    assert_eq!(raw.matches(PATIENT.email).count(), 1, "{raw}");
    assert_eq!(
        provider.reconcile(&message, None).await,
        Reconciliation::CannotTell
    );
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let pki = pki("Practice relay CA");
    let Some(server) = Server::start("implicit", Some(&pki)).await else {
        return;
    };
    let provider = SmtpProvider::new(config(
        server.port,
        SmtpSecurity::ImplicitTls,
        Some(&pki.ca_pem),
    ))
    .unwrap();
    let text = "You have a new secure message from Example Family Practice: \
                https://portal.practice.example/l/Q2w3E4r5";
    provider
        .send_classified(&notification("pat@patients.example", text))
        .await
        .unwrap();
    let events = server.finish().await;
    let messages = of_kind(&events, "message");
    assert_eq!(messages.len(), 1, "{events:?}");
    assert_eq!(
        messages[0]["rcpt_tos"],
        serde_json::json!(["pat@patients.example"])
    );
    assert_eq!(messages[0]["authenticated"], true);
    assert!(messages[0]["tls"].is_string(), "{}", messages[0]);
    let auth = of_kind(&events, "auth");
    assert!(auth.len() == 1 && auth[0]["tls"].is_string(), "{auth:?}");
}

#[tokio::test]
async fn a_server_without_tls_gets_no_password_and_no_message() {
    let Some(server) = Server::start("plaintext", None).await else {
        return;
    };
    let message = notification("pat@patients.example", "A secure message is waiting");

    // STARTTLS required but not offered: refused before AUTH.
    let starttls = SmtpProvider::new(config(server.port, SmtpSecurity::StartTls, None)).unwrap();
    let failure = starttls.send_classified(&message).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_tls")
    );
    assert!(
        failure.detail().contains("STARTTLS"),
        "{}",
        failure.detail()
    );
    let error = starttls.send(&message).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Permanent { .. }),
        "a TLS failure is permanent"
    );
    assert_eq!(error.code(), "smtp_tls");

    // Implicit TLS against a plaintext server: the handshake fails, nothing else happens.
    let implicit = SmtpProvider::new(config(server.port, SmtpSecurity::ImplicitTls, None)).unwrap();
    let failure = implicit.send_classified(&message).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_tls")
    );

    let events = server.finish().await;
    assert!(
        of_kind(&events, "auth").is_empty(),
        "no AUTH in plaintext: {events:?}"
    );
    assert!(of_kind(&events, "mail").is_empty(), "{events:?}");
    assert!(of_kind(&events, "message").is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_refused() {
    let server_pki = pki("The relay's CA");
    let our_ca = pki("Another CA");
    let Some(server) = Server::start("starttls", Some(&server_pki)).await else {
        return;
    };
    let message = notification("pat@patients.example", "A secure message is waiting");

    // Signed by a CA we do not trust (neither the system's roots nor our extra CA).
    let untrusted = SmtpProvider::new(config(
        server.port,
        SmtpSecurity::StartTls,
        Some(&our_ca.ca_pem),
    ))
    .unwrap();
    let failure = untrusted.send_classified(&message).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_tls"),
        "{}",
        failure.detail()
    );
    assert!(
        failure.detail().contains("UnknownIssuer"),
        "{}",
        failure.detail()
    );

    // Signed by a trusted CA, but for another name (the certificate says localhost).
    let mut wrong_name = config(
        server.port,
        SmtpSecurity::StartTls,
        Some(&server_pki.ca_pem),
    );
    wrong_name.host = "127.0.0.1".into();
    let failure = SmtpProvider::new(wrong_name)
        .unwrap()
        .send_classified(&message)
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_tls"),
        "{}",
        failure.detail()
    );
    assert!(
        failure.detail().contains("not valid for name"),
        "{}",
        failure.detail()
    );

    let events = server.finish().await;
    assert!(of_kind(&events, "auth").is_empty(), "{events:?}");
    assert!(of_kind(&events, "mail").is_empty(), "{events:?}");
    assert!(of_kind(&events, "message").is_empty(), "{events:?}");
}

#[tokio::test]
async fn replies_decide_permanent_or_transient() {
    let pki = pki("Practice relay CA");
    let Some(server) = Server::start("starttls", Some(&pki)).await else {
        return;
    };
    let provider = SmtpProvider::new(config(
        server.port,
        SmtpSecurity::StartTls,
        Some(&pki.ca_pem),
    ))
    .unwrap();

    let permanent = notification("reject-permanent@patients.example", "A message is waiting");
    let failure = provider.send_classified(&permanent).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_5xx")
    );
    assert!(failure.detail().contains("550"), "{}", failure.detail());
    assert_eq!(
        provider.send(&permanent).await.unwrap_err().kind(),
        "permanent"
    );

    let transient = notification("reject-transient@patients.example", "A message is waiting");
    let failure = provider.send_classified(&transient).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Transient, "smtp_4xx")
    );
    assert!(failure.detail().contains("451"), "{}", failure.detail());
    assert_eq!(
        provider.send(&transient).await.unwrap_err().kind(),
        "transient"
    );

    // Wrong password: permanent until someone fixes the configuration.
    let mut wrong = config(server.port, SmtpSecurity::StartTls, Some(&pki.ca_pem));
    wrong.password = "not the password".into();
    let failure = SmtpProvider::new(wrong)
        .unwrap()
        .send_classified(&notification(
            "pat@patients.example",
            "A message is waiting",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Permanent, "smtp_auth")
    );

    let events = server.finish().await;
    assert!(of_kind(&events, "message").is_empty(), "{events:?}");
}

#[tokio::test]
async fn a_failure_after_the_content_was_sent_is_ambiguous() {
    let pki = pki("Practice relay CA");
    let Some(server) = Server::start("starttls", Some(&pki)).await else {
        return;
    };
    let mut settings = config(server.port, SmtpSecurity::StartTls, Some(&pki.ca_pem));
    settings.timeouts.data = Duration::from_secs(1);
    let provider = SmtpProvider::new(settings).unwrap();

    // The server takes the message, then drops the connection before replying.
    let dropped = notification("drop-after-data@patients.example", "A message is waiting");
    let failure = provider.send_classified(&dropped).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Ambiguous, "smtp_outcome_unknown"),
        "{}",
        failure.detail()
    );
    // The server takes the message and never replies.
    let hung = notification("hang-after-data@patients.example", "A message is waiting");
    let failure = provider.send_classified(&hung).await.unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Ambiguous, "smtp_outcome_unknown"),
        "{}",
        failure.detail()
    );
    // Never reported as a rejection (which would make it look safely unsent).
    assert_eq!(
        ProviderError::from(failure).kind(),
        "ambiguous",
        "reconciled, never blindly resent"
    );

    // Indeed: the server has both messages.
    let events = server.finish().await;
    assert_eq!(of_kind(&events, "message").len(), 2, "{events:?}");
}

#[tokio::test]
async fn no_server_listening_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut settings = config(port, SmtpSecurity::ImplicitTls, None);
    settings.host = "127.0.0.1".into();
    let failure = SmtpProvider::new(settings)
        .unwrap()
        .send_classified(&notification(
            "pat@patients.example",
            "A message is waiting",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (failure.class, failure.code),
        (ErrorClass::Transient, "smtp_connect"),
        "{}",
        failure.detail()
    );
}
