//! Shared helpers: the Python peers, a canned local HTTP server, provider configurations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use salve_channels::twilio::{
    SignatureAlgorithm, TwilioAuth, TwilioConfig, TwilioProvider, TwilioSender, WebhookSigning,
};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "12345678901234567890123456789012";
pub const OUR_NUMBER: &str = "+13125550100";
pub const PATIENT: &str = "+13125550142";

pub use salve_testkit::peers::run_python;

pub fn twilio_config(base_url: &str, sender: TwilioSender) -> TwilioConfig {
    let mut config = TwilioConfig::new(
        ACCOUNT_SID,
        TwilioAuth::AuthToken(SecretString::from(AUTH_TOKEN.to_string())),
        sender,
        WebhookSigning {
            algorithm: SignatureAlgorithm::HmacSha1,
            secret: SecretString::from(AUTH_TOKEN.to_string()),
        },
    );
    config.base_url = base_url.to_string();
    config.status_callback_url = Some("https://salve.example.org/hooks/twilio/status".into());
    config.connect_timeout = Duration::from_millis(300);
    config.request_timeout = Duration::from_millis(300);
    config
}

pub fn twilio(base_url: &str) -> TwilioProvider {
    TwilioProvider::new(twilio_config(
        base_url,
        TwilioSender::From(OUR_NUMBER.into()),
    ))
    .unwrap()
}

pub fn message(body: &str) -> salve_channels::OutgoingMessage {
    salve_channels::OutgoingMessage {
        id: uuid::Uuid::new_v4(),
        channel: salve_channels::Channel::Sms,
        to: salve_core::Sensitive::new(PATIENT.into()),
        subject: None,
        body: salve_core::Sensitive::new(body.into()),
    }
}

/// What a canned server does with each connection.
#[derive(Clone)]
pub enum Behaviour {
    /// Reads the request and answers with this status and JSON body.
    Answer(u16, String),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// A local HTTP/1.1 server that records the raw requests it got.
pub struct Canned {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub async fn canned(behaviour: Behaviour) -> Canned {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let request = read_request(&mut stream).await;
                seen.lock().unwrap().push(request);
                match behaviour {
                    Behaviour::Answer(status, body) => {
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    Behaviour::Hang => {
                        // Hold the connection open until the client gives up.
                        let mut sink = [0u8; 64];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    Canned { base_url, requests }
}

/// An address nobody listens on: a port that was just free.
pub async fn refused_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Percent-decodes a form body into pairs.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

pub fn request_body(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
