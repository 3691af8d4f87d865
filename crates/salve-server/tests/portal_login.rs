//! Patients' own portal logins: created after link verification, password plus TOTP,
//! recovery codes once, the same answer for unknown and wrong, throttling, one practice's
//! logins invisible from another, the 10-minute idle, all audited as the patient.
//!
//! Counts argon2 verifications through a process-wide counter: relies on nextest's
//! one-process-per-test.

use std::num::NonZeroU64;

use axum::http::{Method, StatusCode, header};
use salve_core::audit::Actor;
use salve_core::{Clock, PracticeId};
use salve_crypto::totp::{Digits, TotpAlgorithm, TotpSecret};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::Duration;

mod portal_world;

use portal_world::{Reply, World};

const PASSWORD: &str = "a brand new passphrase for 2026";

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c.to_ascii_uppercase())
            .unwrap() as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

fn cookie_of(r: &Reply, name: &str) -> String {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

struct Login {
    patient: String,
    secret: TotpSecret,
    recovery: Vec<String>,
}

impl World {
    fn totp(&self, secret: &TotpSecret) -> String {
        salve_crypto::totp::code_at(
            secret,
            TotpAlgorithm::Sha1,
            Digits::Six,
            self.clock.now().unix_timestamp() as u64,
            NonZeroU64::new(30).unwrap(),
        )
    }

    /// Verifies through a secure link and returns the patient session cookie.
    async fn verified(&self, patient: &str, dob: &str) -> String {
        let (_, token) = self.send_link(patient).await;
        let link = self.open(&token).await;
        let r = self.birth_date(&link, dob).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
        let r = self.code(&link, &self.last_code()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        cookie_of(&r, "salve_patient")
    }

    /// A patient with an activated login (email `{given}@example.org`).
    async fn login(&self, given: &str) -> Login {
        let patient = self.patient(given, "1984-07-02", "+13125550142").await;
        let session = self.verified(&patient, "1984-07-02").await;
        let r = self
            .call(
                Method::POST,
                "/api/v1/portal/account",
                &[&session],
                false,
                Some(json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert!(
            r.json["otpauth_uri"]
                .as_str()
                .unwrap()
                .contains("issuer=Lakeside")
        );
        assert!(r.json["qr_svg"].as_str().unwrap().starts_with("<svg"));
        let secret =
            TotpSecret::from_bytes(&base32_decode(r.json["secret"].as_str().unwrap())).unwrap();
        let r = self
            .call(
                Method::POST,
                "/api/v1/portal/account/confirm",
                &[&session],
                false,
                Some(json!({"code": self.totp(&secret)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let recovery: Vec<String> = r.json["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(recovery.len(), 10);
        Login {
            patient,
            secret,
            recovery,
        }
    }

    async fn sign_in(&self, practice: PracticeId, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/session",
            &[],
            false,
            Some(json!({"practice_id": practice.as_uuid(), "email": email, "password": password})),
        )
        .await
    }

    async fn mfa(&self, pending: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/portal/session/mfa",
            &[pending],
            false,
            Some(body),
        )
        .await
    }

    async fn me(&self, session: &str) -> Reply {
        self.call(Method::GET, "/api/v1/portal/me", &[session], false, None)
            .await
    }

    /// (actor kind, actor id, action, outcome) of the patient login events.
    async fn login_events(&self) -> Vec<(String, String, String, String)> {
        sqlx::query_as(
            "SELECT actor_kind, actor_id, action, outcome FROM audit_events \
             WHERE action LIKE 'patient.account.%' OR action LIKE 'patient.sign_in%' ORDER BY occurred_at, seq",
        )
        .fetch_all(self.store.pool_for_tests())
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_patient_creates_a_login_and_signs_in_with_password_and_totp() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let patient = w.patient("Ana", "1984-07-02", "+13125550142").await;
        let session = w.verified(&patient, "1984-07-02").await;

        // A weak password is refused, and not echoed.
        let r = w
            .call(
                Method::POST,
                "/api/v1/portal/account",
                &[&session],
                false,
                Some(json!({"password": "ana-lakeside"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
        assert!(!r.json.to_string().contains("ana-lakeside"));
        // Without a patient session: nothing.
        let r = w
            .call(
                Method::POST,
                "/api/v1/portal/account",
                &[],
                false,
                Some(json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // A wrong first code does not activate the login, and is audited.
        let r = w
            .call(
                Method::POST,
                "/api/v1/portal/account",
                &[&session],
                false,
                Some(json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = w
            .call(
                Method::POST,
                "/api/v1/portal/account/confirm",
                &[&session],
                false,
                Some(json!({"code": "000000"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        let events = w.login_events().await;
        assert!(
            events.iter().any(|(kind, id, a, o)| kind == "patient"
                && *id == patient
                && a == "patient.account.activate"
                && o == "failure"),
            "{events:?}"
        );

        let login = w.login("Mia").await;
        let email = "Mia@Example.org";
        // The password needs its second factor.
        let r = w.sign_in(w.practice, email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["stage"], "mfa");
        let pending = cookie_of(&r, "salve_patient_login");
        // The pending cookie is not a patient session.
        assert_eq!(
            w.me(&pending.replace("salve_patient_login", "salve_patient"))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        // The code used to confirm the login is not accepted again.
        let r = w
            .mfa(&pending, json!({"code": w.totp(&login.secret)}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        w.clock.advance(Duration::seconds(30));
        let code = w.totp(&login.secret);
        let r = w.mfa(&pending, json!({"code": code})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["stage"], "active");
        let session = cookie_of(&r, "salve_patient");
        let r = w.me(&session).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["given_name"], "Mia");
        // The pending sign-in is spent.
        assert_eq!(
            w.mfa(&pending, json!({"code": code})).await.status,
            StatusCode::UNAUTHORIZED
        );

        // The session idles out after 10 minutes.
        w.clock
            .advance(Duration::minutes(10) - Duration::seconds(1));
        assert_eq!(w.me(&session).await.status, StatusCode::OK);
        w.clock.advance(Duration::minutes(10));
        assert_eq!(w.me(&session).await.status, StatusCode::UNAUTHORIZED);

        // The login cannot be created twice.
        let again = w.verified(&login.patient, "1984-07-02").await;
        let r = w
            .call(
                Method::POST,
                "/api/v1/portal/account",
                &[&again],
                false,
                Some(json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);

        // Audited as the patient.
        let events = w.login_events().await;
        assert_eq!(
            events
                .iter()
                .filter(|(kind, ..)| kind == "anonymous")
                .count(),
            1,
            "{events:?}"
        );
        let actions: Vec<(&str, &str)> = events
            .iter()
            .map(|(_, _, a, o)| (a.as_str(), o.as_str()))
            .collect();
        for expected in [
            ("patient.account.create", "success"),
            ("patient.account.activate", "success"),
            ("patient.sign_in", "failure"),
            ("patient.sign_in", "success"),
        ] {
            assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
        }
        assert!(
            events
                .iter()
                // Ana's attempt before her login was active: an unknown login, anonymous.
                .filter(|(kind, id, _, _)| kind != "anonymous" && *id != patient)
                .all(|(kind, id, _, _)| kind == "patient" && *id == login.patient),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn recovery_codes_work_once_and_practices_do_not_share_logins() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let login = w.login("Ana").await;
        let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let pending = cookie_of(&r, "salve_patient_login");
        let r = w
            .mfa(&pending, json!({"recovery_code": login.recovery[0]}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(
            w.me(&cookie_of(&r, "salve_patient")).await.status,
            StatusCode::OK
        );

        let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
        let pending = cookie_of(&r, "salve_patient_login");
        let r = w
            .mfa(&pending, json!({"recovery_code": login.recovery[0]}))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        let r = w
            .mfa(&pending, json!({"recovery_code": login.recovery[1]}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);

        // Another practice's id with the same email finds nothing.
        let other = w
            .store
            .create_practice(Actor::Cli, "Hillside", "US", "America/Chicago")
            .await
            .unwrap()
            .id;
        let r = w.sign_in(other, "ana@example.org", PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
}

#[tokio::test]
async fn unknown_and_wrong_look_the_same_and_repeated_failures_lock() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        w.login("Ana").await;
        let before = salve_crypto::password::verifications();
        let unknown = w.sign_in(w.practice, "nobody@example.org", PASSWORD).await;
        let middle = salve_crypto::password::verifications();
        let wrong = w
            .sign_in(
                w.practice,
                "ana@example.org",
                "not the right passphrase at all",
            )
            .await;
        let after = salve_crypto::password::verifications();
        assert_eq!((middle - before, after - middle), (1, 1));
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("request_id");
            v.as_object_mut().unwrap().remove("instance");
            v
        };
        assert_eq!(strip(&unknown.json), strip(&wrong.json));

        // Ten failures in a row lock the login, even for the right password.
        for _ in 0..8 {
            w.clock.advance(Duration::minutes(5));
            let r = w
                .sign_in(
                    w.practice,
                    "ana@example.org",
                    "not the right passphrase at all",
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        }
        let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
        assert!(r.headers.get(header::RETRY_AFTER).is_some());
        let events = w.login_events().await;
        assert!(
            events
                .iter()
                .any(|(kind, _, a, _)| kind == "patient" && a == "patient.sign_in_locked"),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn a_shredded_patients_login_no_longer_signs_in() {
    let w = World::new(TestDatabase::sqlite()).await;
    let login = w.login("Ana").await;
    let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    w.store
        .shred_patient(
            w.practice,
            &salve_core::permissions::Principal::Operator,
            &Default::default(),
            login.patient.parse().unwrap(),
        )
        .await
        .unwrap();
    let r = w.sign_in(w.practice, "ana@example.org", PASSWORD).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "answered like an unknown login"
    );
}
