//! Outgoing Twilio requests checked by Stoplight Prism, a validating mock serving Twilio's own
//! OpenAPI description: a request that does not match the description gets a 4xx.

use std::process::Stdio;
use std::time::Duration;

use salve_channels::twilio::{TwilioProvider, TwilioSender};
use salve_channels::{Provider, Reconciliation};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, message, twilio_config};

/// A running Prism; killed when dropped.
struct Prism {
    _child: Child,
    base_url: String,
}

/// Starts `prism mock` on a free port and waits (for what it prints, not for a time) until it
/// listens. `None` when Prism is not installed (outside CI).
async fn start_prism(validate_responses: bool) -> Option<Prism> {
    let prism = salve_testkit::peers::prism()?;
    let spec = salve_testkit::peers::twilio_openapi()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut command = Command::new(prism);
    command.arg("mock");
    if validate_responses {
        command.arg("--errors");
    }
    let mut child = command
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prism starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Prism is listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "Prism did not start listening within 20 s");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Prism {
        _child: child,
        base_url: format!("http://127.0.0.1:{port}"),
    })
}

fn provider(base_url: &str, sender: TwilioSender) -> TwilioProvider {
    let mut config = twilio_config(base_url, sender);
    // Prism's first answer compiles the schema: give it time.
    config.request_timeout = Duration::from_secs(10);
    config.connect_timeout = Duration::from_secs(2);
    TwilioProvider::new(config).unwrap()
}

#[tokio::test]
async fn sends_are_valid_requests_by_twilios_openapi() {
    let Some(prism) = start_prism(true).await else {
        return;
    };
    // The mock really validates: a request without the required `To` is refused.
    let refused = reqwest::Client::new()
        .post(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            prism.base_url
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .form(&[("From", OUR_NUMBER), ("Body", "hello")])
        .send()
        .await
        .unwrap();
    assert!(
        refused.status().is_client_error(),
        "Prism must refuse a request without To, got {}",
        refused.status()
    );

    // From a fixed number.
    let twilio = provider(&prism.base_url, TwilioSender::From(OUR_NUMBER.into()));
    let receipt = twilio
        .send(&message(
            "A secure message is waiting: https://salve.example.org/m/abc",
        ))
        .await
        .expect("Prism accepts the send as valid");
    assert!(receipt.provider_id.starts_with("SM"), "{receipt:?}");
    assert_eq!(receipt.provider_id.len(), 34);

    // Through a Messaging Service.
    let twilio = provider(
        &prism.base_url,
        TwilioSender::MessagingService("MG0123456789abcdef0123456789abcdef".into()),
    );
    let receipt = twilio.send(&message("Your code is 123456")).await.unwrap();
    assert!(receipt.provider_id.starts_with("SM"), "{receipt:?}");
    assert!(twilio.capabilities().picks_sender_number);
}

/// The list call runs without `--errors`: the description's own list examples fail its
/// schema, which `--errors` would report. Requests are still validated (422 when invalid).
#[tokio::test]
async fn reconcile_lists_messages_with_a_valid_request() {
    let Some(prism) = start_prism(false).await else {
        return;
    };
    // The mock validates list requests too: a PageSize over 1000 is refused.
    let refused = reqwest::Client::new()
        .get(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?PageSize=5000",
            prism.base_url
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);

    let twilio = provider(&prism.base_url, TwilioSender::From(OUR_NUMBER.into()));
    // Prism answers with the description's example (old messages to other numbers): a
    // valid request, parsed, and nothing of this attempt in it.
    let outcome = twilio
        .reconcile(&message("hello"), Some(time::OffsetDateTime::now_utc()))
        .await;
    assert_eq!(outcome, Reconciliation::NotSent);
}
