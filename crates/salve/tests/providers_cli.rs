//! `salve admin add-provider` and `renew-agreement`, the real binary on SQLite and PostgreSQL:
//! a provider that carries patient data needs a BAA (its document hashed) or a self-operation
//! attestation; the command prints the webhook URLs to configure at the vendor; bad settings
//! are clear errors with a non-zero exit, and secrets are never printed.

mod common;

use common::Salve;
use salve_testkit::TestDatabase;

const TWILIO: &str = r#"{"account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "a-secret-auth-token-do-not-print"}"#;

#[tokio::test]
async fn add_provider_needs_an_agreement_and_prints_the_webhook_urls() {
    for db in TestDatabase::all().await {
        let salve = Salve::for_db(&db);
        let practice = salve.create_practice("Lakeside");
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("twilio.json");
        std::fs::write(&creds, TWILIO).unwrap();
        let baa = dir.path().join("baa.pdf");
        std::fs::write(&baa, b"%PDF-1.4 signed business associate agreement").unwrap();
        let creds = creds.to_str().unwrap().to_owned();
        let base = [
            "admin",
            "add-provider",
            "--practice",
            &practice,
            "--kind",
            "twilio",
            "--label",
            "Main line",
            "--credentials-file",
            &creds,
            "--number",
            "+13125550100",
        ];

        let refused = salve.run_async(base).await.assert_failure();
        assert!(
            refused.stderr.contains("Business Associate Agreement"),
            "{refused}"
        );

        let mut bad_date: Vec<&str> = base.to_vec();
        bad_date.extend([
            "--baa-vendor",
            "Twilio Inc.",
            "--baa-signed-on",
            "soon",
            "--baa-document",
            baa.to_str().unwrap(),
        ]);
        let refused = salve.run_async(bad_date).await.assert_failure();
        assert!(refused.stderr.contains("--baa-signed-on"), "{refused}");

        let mut ok: Vec<&str> = base.to_vec();
        ok.extend([
            "--baa-vendor",
            "Twilio Inc.",
            "--baa-signed-on",
            "2026-01-15",
            "--baa-expires-on",
            "2027-01-14",
            "--baa-document",
            baa.to_str().unwrap(),
            "--public-url",
            "https://messages.lakeside.example",
        ]);
        let out = salve.run_async(ok).await.assert_success();
        let id = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("provider ")?.strip_suffix(" enabled"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned();
        assert!(out.stdout.contains(&format!(
            "configure at the vendor: https://messages.lakeside.example/webhooks/twilio/{id}/inbound"
        )));
        assert!(
            out.stdout
                .contains(&format!("/webhooks/twilio/{id}/status"))
        );
        assert!(
            !out.stdout.contains("a-secret-auth-token")
                && !out.stderr.contains("a-secret-auth-token")
        );

        // The number now belongs to this practice.
        let mut again: Vec<&str> = base.to_vec();
        again.extend(["--self-operated", "Our own gateway"]);
        let refused = salve.run_async(again).await.assert_failure();
        assert!(refused.stderr.contains("one practice"), "{refused}");

        let renewed = salve
            .run_async([
                "admin",
                "renew-agreement",
                "--practice",
                &practice,
                "--provider",
                &id,
                "--baa-vendor",
                "Twilio Inc.",
                "--baa-signed-on",
                "2026-11-01",
                "--baa-document",
                baa.to_str().unwrap(),
            ])
            .await
            .assert_success();
        assert!(
            renewed.stdout.contains("held messages are released"),
            "{renewed}"
        );

        // Unknown settings are named; plaintext SMTP is not an option.
        let smtp = dir.path().join("smtp.json");
        std::fs::write(
            &smtp,
            r#"{"host": "mail.lakeside.example", "port": 25, "security": "none", "username": "u", "password": "p", "from_address": "no-reply@lakeside.example"}"#,
        )
        .unwrap();
        let refused = salve
            .run_async([
                "admin",
                "add-provider",
                "--practice",
                &practice,
                "--kind",
                "smtp",
                "--label",
                "Relay",
                "--credentials-file",
                smtp.to_str().unwrap(),
                "--self-operated",
                "Our own relay",
            ])
            .await
            .assert_failure();
        assert!(refused.stderr.contains("credentials.security"), "{refused}");
    }
}
