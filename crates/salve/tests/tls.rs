//! Salve terminates TLS itself with rustls when given a certificate and key; with TLS it may
//! listen beyond loopback.

mod common;

use std::process::Command;

use common::Salve;
use salve_testkit::TestDatabase;

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let db = TestDatabase::sqlite();
    let salve = Salve::for_db(&db);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = db.dir.path().join("cert.pem");
    let key_path = db.dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    // Any address is allowed with TLS; port 0 keeps the test self-contained.
    let server = salve
        .start_server_with(vec![
            "--tls-cert".into(),
            cert_path.display().to_string(),
            "--tls-key".into(),
            key_path.display().to_string(),
        ])
        .await;
    assert!(
        server.base_url.starts_with("https://"),
        "{}",
        server.base_url
    );
    let port = server.base_url.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/readyz");
    let cacert = cert_path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", &cacert, &url])
            .output()
            .expect("curl is installed by scripts/test")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
    // Plain HTTP on the TLS port is not served.
    let plain = format!("http://localhost:{port}/readyz");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", &plain])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    server.stop_async().await;
}
