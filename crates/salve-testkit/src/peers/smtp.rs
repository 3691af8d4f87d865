//! A real SMTP server for tests: aiosmtpd, run by `peers/smtp_server.py` from the test peers'
//! venv, with a CA and a `localhost` certificate made by rcgen for each test. Readiness is the
//! server's "ready" line; [`Server::finish`] closes its stdin and returns everything it
//! recorded (AUTH attempts, MAIL commands, accepted messages with their TLS state).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Generous for a loopback server, short enough that a hang fails the test quickly.
const SERVER_WAIT: Duration = Duration::from_secs(10);

/// A CA and a server certificate for `localhost` that it signed, written out for the server.
pub struct Pki {
    pub ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pki {
    /// The server certificate's PEM file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
    /// The server key's PEM file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }
}

pub fn pki(ca_name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &*ca).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        _dir: dir,
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_server.py")
}

/// A running `smtp_server.py`.
pub struct Server {
    pub port: u16,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// Starts the server in `mode` ("starttls", "implicit", "plaintext"); `None` when the test
    /// peers are not installed (outside CI only: in CI that panics).
    pub async fn start(mode: &str, pki: Option<&Pki>) -> Option<Server> {
        let python = super::python()?;
        let mut command = Command::new(python);
        command.arg(script()).args(["--mode", mode]);
        if let Some(pki) = pki {
            command.arg("--cert").arg(&pki.cert);
            command.arg("--key").arg(&pki.key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp_server.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(SERVER_WAIT, lines.next_line())
            .await
            .expect("smtp_server.py did not get ready in time")
            .unwrap()
            .expect("smtp_server.py exited before it was ready");
        let ready: Value = serde_json::from_str(&ready).unwrap();
        assert_eq!(ready["event"], "ready", "{ready}");
        let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();
        Some(Server { port, child, lines })
    }

    /// Stops the server and returns everything it recorded, in order.
    pub async fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        let mut events = Vec::new();
        loop {
            let line = tokio::time::timeout(SERVER_WAIT, self.lines.next_line())
                .await
                .expect("smtp_server.py did not stop in time")
                .unwrap();
            match line {
                Some(line) => events.push(serde_json::from_str::<Value>(&line).unwrap()),
                None => break,
            }
        }
        let status = tokio::time::timeout(SERVER_WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "smtp_server.py: {status}");
        assert_eq!(
            events.pop().map(|e| e["event"].clone()),
            Some("stopped".into())
        );
        events
    }
}
