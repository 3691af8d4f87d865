//! Secure links: a scanner's GET burns nothing; wrong date of birth, wrong code, expired,
//! revoked, locked, another patient's link; the code goes only to the link's contact point;
//! no token or code in any logged line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode, header};
use salve_testkit::TestDatabase;

mod portal_world;

use portal_world::World;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_patient_verifies_with_possession_and_knowledge_and_nothing_leaks() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ana = w.patient("Ana", "1984-07-02", "+13125550142").await;
        let leo = w.patient("Leo", "2015-03-11", "+13125550143").await;
        let (link, token) = w.send_link(&ana).await;
        let sent_before = w.outbox.list().unwrap().len();

        // A scanner's GET and a preview burn nothing and send nothing.
        let scanner = w.open(&token).await;
        w.open(&token).await;
        assert_eq!(w.failures(&link).await, 0);
        assert_eq!(w.outbox.list().unwrap().len(), sent_before);
        let code_hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT code_hash FROM secure_links WHERE id = $1")
                .bind(&link)
                .fetch_one(w.store.pool_for_tests())
                .await
                .unwrap();
        assert!(code_hash.is_none());
        let cookie = scanner;

        // Wrong date of birth (another patient's): a failure, no code.
        let r = w.birth_date(&cookie, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(w.failures(&link).await, 1);
        assert_eq!(w.outbox.list().unwrap().len(), sent_before);

        // Right date of birth: a code goes to the phone the link went to, and nowhere else.
        let r = w.birth_date(&cookie, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
        let sent = w.outbox.list().unwrap();
        assert_eq!(sent.len(), sent_before + 1);
        assert_eq!(sent.last().unwrap().to, "+13125550142");
        let code = w.last_code();

        // Wrong code, then the right one: a patient session for Ana only.
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let r = w.code(&cookie, wrong).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(w.failures(&link).await, 2);
        let r = w.code(&cookie, &code).await;
        assert_eq!(r.status, StatusCode::OK);
        let patient_cookie = r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let r = w
            .call(
                Method::GET,
                "/api/v1/portal/me",
                &[&patient_cookie],
                false,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json["given_name"], "Ana");
        // A code works once.
        let r = w.code(&cookie, &code).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The patient session idles out after 10 minutes.
        w.clock.advance(time::Duration::minutes(11));
        let r = w
            .call(
                Method::GET,
                "/api/v1/portal/me",
                &[&patient_cookie],
                false,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // The link stays usable (with verification each time) until it expires.
        let r = w.birth_date(&cookie, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);

        // Locked after five failures of either kind; staff can send a new link.
        let (locked_link, locked_token) = w.send_link(&leo).await;
        let c = w.open(&locked_token).await;
        for n in 0..5 {
            let r = if n % 2 == 0 {
                w.birth_date(&c, "1999-01-01").await
            } else {
                w.code(&c, "123456").await
            };
            let expected = if n == 4 {
                StatusCode::LOCKED
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(r.status, expected, "attempt {n}");
        }
        assert_eq!(w.failures(&locked_link).await, 5);
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::LOCKED, "even the right answer");
        let (_, fresh) = w.send_link(&leo).await;
        let c = w.open(&fresh).await;
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);

        // Revoked.
        let (revoked, revoked_token) = w.send_link(&ana).await;
        let c = w.open(&revoked_token).await;
        let r = w
            .call(
                Method::DELETE,
                &format!("/api/v1/secure-links/{revoked}"),
                &[],
                true,
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::GONE);

        // Expired after 72 hours.
        let (_, old_token) = w.send_link(&ana).await;
        let c = w.open(&old_token).await;
        w.clock.advance(time::Duration::hours(73));
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::GONE);

        // A made-up token is simply not valid.
        let c = w.open("salve_l_not-a-real-token").await;
        let r = w.birth_date(&c, "1984-07-02").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Codes are rate-limited per link.
        let (_, limited) = w.send_link(&leo).await;
        let c = w.open(&limited).await;
        for _ in 0..3 {
            let r = w.birth_date(&c, "2015-03-11").await;
            assert_eq!(r.status, StatusCode::ACCEPTED);
        }
        let r = w.birth_date(&c, "2015-03-11").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

        // Everything was audited, and the chain holds.
        let actions: Vec<String> =
            sqlx::query_scalar("SELECT action FROM audit_events ORDER BY scope, seq")
                .fetch_all(w.store.pool_for_tests())
                .await
                .unwrap();
        for expected in [
            "link.create",
            "link.open",
            "link.birth_date_failed",
            "link.code_sent",
            "link.code_failed",
            "link.locked",
            "link.verified",
            "link.revoke",
        ] {
            assert!(actions.iter().any(|a| a == expected), "{expected} audited");
        }
        assert!(w.store.verify_audit(None).await.unwrap().ok());

        // No link token or code in any logged line.
        let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("/p/{token}"), "the route template is logged");
        for record in w.outbox.list().unwrap() {
            if let Some(t) = record.body.split("/p/").nth(1) {
                assert!(!log.contains(t), "a link token was logged");
            } else {
                let code = &record.body.split("code is ").nth(1).unwrap()[..6];
                assert!(!standalone(&log, code), "a one-time code was logged");
            }
        }
        assert!(!log.contains("+1312555"), "no phone number logged");
    }
}

/// Whether `digits` occurs in `text` other than inside a longer run of digits (a latency figure
/// or an id may contain any six digits by chance).
fn standalone(text: &str, digits: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(digits).any(|(i, m)| {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + m.len()).copied();
        let digit_or_point = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit() || b == b'.');
        !digit_or_point(before) && !digit_or_point(after)
    })
}

#[tokio::test]
async fn the_code_is_written_in_the_patients_language() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let body = serde_json::json!({"given_name": "Rosa", "family_name": "Mendez",
            "birth_date": "1979-05-20", "preferred_language": "es",
            "contacts": [{"kind": "phone", "value": "+13125550177", "role": "self"}]});
        let r = w
            .call(Method::POST, "/api/v1/patients", &[], true, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
        let rosa = r.json["id"].as_str().unwrap().to_owned();
        let (_, token) = w.send_link(&rosa).await;
        let cookie = w.open(&token).await;
        let r = w.birth_date(&cookie, "1979-05-20").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);

        // The reviewed Spanish wording, and the code in it works.
        let sent = w.outbox.list().unwrap();
        let text = &sent.last().unwrap().body;
        assert!(
            text.starts_with("Lakeside: Su clave de acceso es "),
            "{text}"
        );
        assert!(text.contains("Vence en 10 minutos. No la comparta con nadie."));
        assert!(!text.contains("code"), "no English left: {text}");
        let code = &text.split("clave de acceso es ").nth(1).unwrap()[..6];
        let r = w.code(&cookie, code).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);

        // An English-speaking patient still gets the English wording.
        let ana = w.patient("Ana", "1984-07-02", "+13125550142").await;
        let (_, token) = w.send_link(&ana).await;
        let cookie = w.open(&token).await;
        w.birth_date(&cookie, "1984-07-02").await;
        let sent = w.outbox.list().unwrap();
        assert!(
            sent.last()
                .unwrap()
                .body
                .starts_with("Lakeside: Your verification code is "),
            "{}",
            sent.last().unwrap().body
        );
    }
}
