//! Staff identity and access, exercised in-process with a controllable clock (no sleeps):
//! sign-in with TOTP enrolment and codes, session lifetimes, CSRF, throttling, the
//! authorization matrix enumerated from the route table, restricted patients, and ids of
//! another practice. SQLite always; PostgreSQL too when `SALVE_TEST_POSTGRES_URL` is set.
//!
//! The throttling test counts argon2 verifications through a process-wide counter, so it
//! relies on nextest's one-process-per-test (as the whole suite is run in CI).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use axum::http::{Method, StatusCode};
use base64::Engine;
use common::{App, AuditRow, PASSWORD, Req, count, patient_body};
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{
    Decision, DenyReason, Operation, PatientGuard, Principal, Role, Scope, authorize,
};
use salve_core::throttle;
use salve_core::{TokenId, UserId};
use salve_server::{Access, HOST_COOKIE, route_specs};
use salve_store::SessionStage;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::Duration;
use time::format_description::well_known::Rfc3339;

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// The rows naming this user as the actor.
fn by(rows: &[AuditRow], user: UserId) -> Vec<AuditRow> {
    rows.iter()
        .filter(|r| r.actor_kind == "user" && r.actor_id == user.to_string())
        .cloned()
        .collect()
}

// ---- 1. sign-in ---------------------------------------------------------------------------

#[tokio::test]
async fn sign_in_enrols_then_asks_for_a_code_swapping_the_token_at_each_step() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let mut alice = app.staff(app.practice, Role::Clinician).await;
        let credentials = json!({"email": alice.email, "password": alice.password});

        // Login CSRF: a sign-in posted from another site is refused before anything else.
        let r = app
            .send(Req::post("/api/v1/session").json(&credentials))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.set_cookie().is_none());

        // The password opens a half-finished session; a cookie sent along is not adopted.
        let r = app
            .send(
                Req::post("/api/v1/session")
                    .same_origin()
                    .cookie("attacker-chosen-token")
                    .json(&credentials),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json(), json!({"stage": "enroll"}));
        let set_cookie = r.set_cookie().unwrap();
        assert!(set_cookie.starts_with("salve_session="), "{set_cookie}");
        for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
        let pending = r.session_token().unwrap();
        assert_ne!(pending, "attacker-chosen-token");

        let r = app.send(Req::get("/api/v1/session").cookie(&pending)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["stage"], "enroll");
        assert_eq!(r.json()["user_id"], alice.id.to_string());
        // Half signed in: no patient data, and the code step is not this stage's.
        let r = app
            .send(Req::get("/api/v1/patients").cookie(&pending))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = app
            .send(
                Req::post("/api/v1/session/mfa")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({"code": "123456"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // Enrolment: a secret, then a first code confirms it.
        let r = app
            .send(
                Req::post("/api/v1/session/mfa/enroll")
                    .cookie(&pending)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let secret = common::secret_from_base32(r.json()["secret"].as_str().unwrap());
        let confirm = |code: String| {
            Req::post("/api/v1/session/mfa/confirm")
                .cookie(&pending)
                .same_origin()
                .json(&json!({ "code": code }))
        };
        let r = app.send(confirm("12345x".into())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.problem_type(), "urn:salve:problem:mfa-failed");
        let enrol_code = app.code_for(&secret);
        let r = app.send(confirm(enrol_code.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let codes: Vec<String> = r.json()["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 10);
        let active = r.session_token().unwrap();
        assert_ne!(active, pending, "a new token once signed in");
        alice.totp = Some(secret);
        alice.last_step = Some(app.step());

        // Fixation: the pre-MFA token is dead; the new one is active and opens patient data.
        let r = app.send(Req::get("/api/v1/session").cookie(&pending)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = app.send(Req::get("/api/v1/session").cookie(&active)).await;
        assert_eq!(r.json()["stage"], "active");
        let r = app.send(Req::get("/api/v1/patients").cookie(&active)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mine = by(&app.practice_audit().await, alice.id);
        assert_eq!(count(&mine, "user.mfa.enroll", "success"), 1);
        assert_eq!(count(&mine, "auth.sign_in", "success"), 1);

        // A later sign-in asks for a code. The code that confirmed enrolment is spent.
        let mfa_step = |token: &str, body: Value| {
            Req::post("/api/v1/session/mfa")
                .cookie(token)
                .same_origin()
                .json(&body)
        };
        let r = app.sign_in(&alice.email, PASSWORD).await;
        assert_eq!(r.json(), json!({"stage": "mfa", "factors": ["totp"]}));
        let pending = r.session_token().unwrap();
        let r = app
            .send(mfa_step(&pending, json!({ "code": enrol_code })))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.problem_type(), "urn:salve:problem:mfa-failed");
        app.next_step();
        let code = app.totp_code(&alice);
        let r = app.send(mfa_step(&pending, json!({ "code": code }))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json(), json!({"stage": "active"}));
        let second = r.session_token().unwrap();
        assert_ne!(second, pending);
        let r = app.send(Req::get("/api/v1/session").cookie(&pending)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "fixation");
        let r = app.send(Req::get("/api/v1/session").cookie(&second)).await;
        assert_eq!(r.json()["stage"], "active");

        // Replay: the same code in a new sign-in, within the same 30 s step, is refused.
        let r = app.sign_in(&alice.email, PASSWORD).await;
        let pending = r.session_token().unwrap();
        let r = app.send(mfa_step(&pending, json!({ "code": code }))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.problem_type(), "urn:salve:problem:mfa-failed");
        let r = app.send(Req::get("/api/v1/session").cookie(&pending)).await;
        assert_eq!(
            r.json()["stage"],
            "mfa",
            "still waiting for a second factor"
        );

        // A recovery code works once; typing is forgiving (case, no dashes).
        let r = app
            .send(mfa_step(&pending, json!({ "recovery_code": codes[0] })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.sign_in(&alice.email, PASSWORD).await;
        let pending = r.session_token().unwrap();
        let r = app
            .send(mfa_step(&pending, json!({ "recovery_code": codes[0] })))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "spent: {}", r.text);
        let loose = codes[1].to_uppercase().replace('-', "");
        let r = app
            .send(mfa_step(&pending, json!({ "recovery_code": loose })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let last = r.session_token().unwrap();

        // Wrong password and unknown account: the same status and the same problem.
        let wrong = app.sign_in(&alice.email, "not the password at all").await;
        let unknown = app.sign_in("nobody@lakeside.example", PASSWORD).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            wrong.problem_without_request_id(),
            unknown.problem_without_request_id()
        );
        assert_eq!(wrong.json()["detail"], "the email or password is incorrect");
        assert!(wrong.set_cookie().is_none() && unknown.set_cookie().is_none());
        let mine = by(&app.practice_audit().await, alice.id);
        assert_eq!(
            count(&mine, "auth.sign_in", "failure"),
            4,
            "three refused second factors and the wrong password"
        );
        assert_eq!(count(&mine, "auth.sign_in", "success"), 4);
        let system = app.audit("system").await;
        assert!(
            system.iter().any(|r| r.action == "auth.sign_in"
                && r.outcome == "failure"
                && r.actor_kind == "anonymous"),
            "the unknown account's failure is on the system chain"
        );

        // A disabled account: its sessions end, and the right password no longer opens it.
        app.store
            .disable_user(&Actor::Cli, &RequestContext::default(), alice.id)
            .await
            .unwrap();
        let r = app.send(Req::get("/api/v1/session").cookie(&last)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            app.end_reasons(alice.id)
                .await
                .contains(&Some("disabled".into()))
        );
        let disabled = app.sign_in(&alice.email, PASSWORD).await;
        assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            disabled.problem_without_request_id(),
            wrong.problem_without_request_id(),
            "a disabled account looks like a wrong password"
        );
        app.assert_audit_verifies().await;
    }
}

// ---- 5. enrolment output ------------------------------------------------------------------

#[tokio::test]
async fn enrolment_gives_an_otpauth_uri_for_salve_and_an_inline_svg() {
    let app = App::new(TestDatabase::sqlite()).await;
    let alice = app.staff(app.practice, Role::Staff).await;
    let pending = app
        .sign_in(&alice.email, PASSWORD)
        .await
        .session_token()
        .unwrap();
    let enroll = || {
        Req::post("/api/v1/session/mfa/enroll")
            .cookie(&pending)
            .same_origin()
    };
    let r = app.send(enroll()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.headers["cache-control"], "no-store",
        "the secret is in the body"
    );
    let body = r.json();
    let secret = body["secret"].as_str().unwrap();
    assert_eq!(common::base32_decode(secret).len(), 20, "160-bit secret");
    let uri = body["otpauth_uri"].as_str().unwrap();
    let label = alice.email.replace('@', "%40");
    assert!(
        uri.starts_with(&format!("otpauth://totp/Salve:{label}?")),
        "{uri}"
    );
    for param in [
        format!("secret={secret}"),
        "issuer=Salve".into(),
        "algorithm=SHA1".into(),
        "digits=6".into(),
        "period=30".into(),
    ] {
        assert!(uri.contains(&param), "{uri} lacks {param}");
    }
    let svg = body["qr_svg"].as_str().unwrap().trim();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    assert!(!svg.contains("<?xml") && !svg.contains("<script") && !svg.contains("href"));

    // Starting again replaces the pending secret: the first one no longer confirms.
    let first = common::secret_from_base32(secret);
    let r = app.send(enroll()).await;
    let second = common::secret_from_base32(r.json()["secret"].as_str().unwrap());
    assert_ne!(r.json()["secret"].as_str().unwrap(), secret);
    let confirm = |code: String| {
        Req::post("/api/v1/session/mfa/confirm")
            .cookie(&pending)
            .same_origin()
            .json(&json!({ "code": code }))
    };
    let r = app.send(confirm(app.code_for(&first))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.send(confirm(app.code_for(&second))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

// ---- 2. sessions --------------------------------------------------------------------------

#[tokio::test]
async fn idle_sessions_end_and_only_user_requests_keep_them_alive() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (mut alice, first) = app.signed_in_staff(Role::Staff).await;
        let t0 = app.now();
        let status = |token: &str| app.send(Req::get("/api/v1/session").cookie(token));

        let r = status(&first).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.json()["idle_expires_at"],
            rfc3339(t0 + Duration::minutes(15))
        );
        assert_eq!(r.json()["warn_at"], rfc3339(t0 + Duration::minutes(13)));
        assert_eq!(r.json()["expires_at"], rfc3339(t0 + Duration::hours(12)));

        // Polling the status is not activity: the session still ends 15 minutes after sign-in.
        app.advance(Duration::minutes(10));
        let r = status(&first).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.json()["idle_expires_at"],
            rfc3339(t0 + Duration::minutes(15))
        );
        app.advance(Duration::minutes(5) - Duration::seconds(1));
        assert_eq!(status(&first).await.status, StatusCode::OK);
        let ends_before = count(&app.practice_audit().await, "session.end", "success");
        app.advance(Duration::seconds(1));
        assert_eq!(status(&first).await.status, StatusCode::UNAUTHORIZED);
        let r = app.send(Req::get("/api/v1/patients").cookie(&first)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.end_reasons(alice.id).await, vec![Some("idle".into())]);
        let rows = by(&app.practice_audit().await, alice.id);
        let ends: Vec<&AuditRow> = rows.iter().filter(|r| r.action == "session.end").collect();
        assert_eq!(ends.len(), 1, "ended and audited once");
        assert_eq!(
            count(&app.practice_audit().await, "session.end", "success"),
            ends_before + 1
        );
        let sealed = ends[0].context.as_ref().expect("the reason is recorded");
        assert!(
            !sealed.windows(4).any(|w| w == b"idle"),
            "the reason is sealed, not in clear"
        );

        // A user-initiated request counts: at 10 and 20 minutes the session is still alive.
        let second = app.signed_in(&mut alice).await;
        let t1 = app.now();
        app.advance(Duration::minutes(10));
        let r = app.send(Req::get("/api/v1/patients").cookie(&second)).await;
        assert_eq!(r.status, StatusCode::OK);
        app.advance(Duration::minutes(10));
        let r = app.send(Req::get("/api/v1/patients").cookie(&second)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "extended by the request at 10 min"
        );
        let r = status(&second).await;
        assert_eq!(
            r.json()["idle_expires_at"],
            rfc3339(t1 + Duration::minutes(35))
        );
        app.advance(Duration::minutes(15) - Duration::seconds(1));
        assert_eq!(status(&second).await.status, StatusCode::OK);
        app.advance(Duration::seconds(1));
        assert_eq!(status(&second).await.status, StatusCode::UNAUTHORIZED);

        // A half-finished sign-in lives 10 minutes.
        app.next_step();
        let pending = app
            .sign_in(&alice.email, PASSWORD)
            .await
            .session_token()
            .unwrap();
        app.advance(Duration::minutes(10) - Duration::seconds(1));
        assert_eq!(status(&pending).await.json()["stage"], "mfa");
        app.advance(Duration::seconds(1));
        let r = app
            .send(
                Req::post("/api/v1/session/mfa")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({"code": app.totp_code(&alice)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(app.end_reasons(alice.id).await.iter().all(Option::is_some));
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn sessions_end_after_twelve_hours_however_active() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (alice, token) = app.signed_in_staff(Role::Clinician).await;
        let patients = || app.send(Req::get("/api/v1/patients").cookie(&token));
        // A request every 14 minutes for 11 h 54 min, then one at 11 h 59 min.
        for _ in 0..51 {
            app.advance(Duration::minutes(14));
            assert_eq!(patients().await.status, StatusCode::OK);
        }
        app.advance(Duration::minutes(5));
        assert_eq!(patients().await.status, StatusCode::OK);
        app.advance(Duration::minutes(1));
        assert_eq!(patients().await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.end_reasons(alice.id).await,
            vec![Some("absolute".into())]
        );
        assert_eq!(
            count(
                &by(&app.practice_audit().await, alice.id),
                "session.end",
                "success"
            ),
            1
        );
    }
}

#[tokio::test]
async fn signing_out_ends_one_session_or_all_of_them() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (mut alice, first) = app.signed_in_staff(Role::Staff).await;
        let (_bob, bobs) = app.signed_in_staff(Role::Staff).await;
        let status = |token: &str| app.send(Req::get("/api/v1/session").cookie(token));

        // Sign-out is an unsafe method: another site cannot sign the user out.
        let r = app
            .send(Req::delete("/api/v1/session").cookie(&first))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(status(&first).await.status, StatusCode::OK);
        let r = app
            .send(Req::delete("/api/v1/session").cookie(&first).same_origin())
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let cleared = r.set_cookie().unwrap();
        assert!(cleared.starts_with("salve_session=;") && cleared.contains("Max-Age=0"));
        assert_eq!(status(&first).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.end_reasons(alice.id).await,
            vec![Some("sign_out".into())]
        );

        // Two devices; signing out everywhere from one ends both, and nobody else's.
        let laptop = app.signed_in(&mut alice).await;
        let phone = app.signed_in(&mut alice).await;
        assert_eq!(status(&laptop).await.status, StatusCode::OK);
        assert_eq!(status(&phone).await.status, StatusCode::OK);
        let r = app
            .send(
                Req::post("/api/v1/session/end-all")
                    .cookie(&phone)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(status(&laptop).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&phone).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(status(&bobs).await.status, StatusCode::OK);
        assert_eq!(
            app.end_reasons(alice.id).await,
            vec![
                Some("sign_out".into()),
                Some("sign_out_everywhere".into()),
                Some("sign_out_everywhere".into())
            ]
        );
        let mine = by(&app.practice_audit().await, alice.id);
        assert_eq!(count(&mine, "session.revoke_all", "success"), 1);
        let revoke = mine
            .iter()
            .find(|r| r.action == "session.revoke_all")
            .unwrap();
        assert_eq!(revoke.targets, vec![alice.id.to_string()]);
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_role_change_or_an_mfa_reset_ends_the_users_sessions() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (admin, admins) = app.signed_in_staff(Role::Admin).await;
        let (mut alice, first) = app.signed_in_staff(Role::Staff).await;
        let status = |token: &str| app.send(Req::get("/api/v1/session").cookie(token));
        let as_admin = |req: Req| app.send(req.cookie(&admins).same_origin());

        let r = as_admin(
            Req::put(format!("/api/v1/users/{}/role", alice.id)).json(&json!({"role": "root"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status(&first).await.status,
            StatusCode::OK,
            "nothing changed"
        );

        let r = as_admin(
            Req::put(format!("/api/v1/users/{}/role", alice.id)).json(&json!({"role": "auditor"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(status(&first).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(&admins).await.status,
            StatusCode::OK,
            "not the admin's"
        );
        assert_eq!(
            app.end_reasons(alice.id).await,
            vec![Some("role_changed".into())]
        );
        let change = app
            .practice_audit()
            .await
            .into_iter()
            .find(|r| r.action == "user.membership")
            .expect("audited");
        assert_eq!(
            (change.actor_id.as_str(), change.targets.clone()),
            (admin.id.to_string().as_str(), vec![alice.id.to_string()])
        );
        // Signed in again, the new role applies: an auditor sees no patients.
        let again = app.signed_in(&mut alice).await;
        let r = app.send(Req::get("/api/v1/patients").cookie(&again)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let r = as_admin(Req::post(format!("/api/v1/users/{}/mfa-reset", alice.id))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(status(&again).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.end_reasons(alice.id).await.last().unwrap(),
            &Some("mfa_reset".into())
        );
        let rows = app.practice_audit().await;
        let reset = rows.iter().find(|r| r.action == "user.mfa.reset").unwrap();
        assert_eq!(reset.actor_id, admin.id.to_string());
        assert_eq!(reset.targets, vec![alice.id.to_string()]);
        // The next sign-in enrols a new authenticator.
        let r = app.sign_in(&alice.email, PASSWORD).await;
        assert_eq!(r.json(), json!({"stage": "enroll"}));
        app.assert_audit_verifies().await;
    }
}

// ---- 3. CSRF ------------------------------------------------------------------------------

#[tokio::test]
async fn cookie_requests_from_other_sites_are_refused_and_bearer_requests_ignore_cookies() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (alice, cookie) = app.signed_in_staff(Role::Staff).await;
        let create = |given: &str| {
            Req::post("/api/v1/patients")
                .cookie(&cookie)
                .json(&patient_body(given, None, "+13125550111"))
        };
        let listed = || async {
            app.send(Req::get("/api/v1/patients").bearer(&app.token))
                .await
                .patient_ids()
                .len()
        };
        let denied_before = count(
            &by(&app.practice_audit().await, alice.id),
            "access.denied",
            "denied",
        );

        let refused = [
            ("no Origin, no Sec-Fetch-Site", create("Ines")),
            (
                "cross-site",
                create("Ines").header("sec-fetch-site", "cross-site"),
            ),
            (
                "same-site (a sibling subdomain)",
                create("Ines").header("sec-fetch-site", "same-site"),
            ),
            (
                "a foreign Origin",
                create("Ines").header("origin", "https://evil.example"),
            ),
            ("Origin null", create("Ines").header("origin", "null")),
            (
                "Sec-Fetch-Site wins over a matching Origin",
                create("Ines")
                    .header("host", "salve.test")
                    .header("origin", "http://salve.test")
                    .header("sec-fetch-site", "cross-site"),
            ),
            (
                "a cross-site form post",
                Req::post("/api/v1/patients")
                    .cookie(&cookie)
                    .header("sec-fetch-site", "cross-site")
                    .form("given_name=Ines&family_name=Q&birth_date=1971-03-14"),
            ),
            (
                "a form post without browser headers",
                Req::post("/api/v1/patients")
                    .cookie(&cookie)
                    .form("given_name=Ines&family_name=Q&birth_date=1971-03-14"),
            ),
        ];
        let n_refused = refused.len();
        for (case, req) in refused {
            let r = app.send(req).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{case}: {}", r.text);
            assert_eq!(r.problem_type(), "urn:salve:problem:forbidden", "{case}");
        }
        assert_eq!(listed().await, 0, "nothing was created");
        assert_eq!(
            count(
                &by(&app.practice_audit().await, alice.id),
                "access.denied",
                "denied"
            ),
            denied_before + n_refused,
            "every refusal is audited"
        );

        // The same form from Salve's own page passes the check and only then meets the parser.
        let r = app
            .send(
                Req::post("/api/v1/patients")
                    .cookie(&cookie)
                    .same_origin()
                    .form("given_name=Ines&family_name=Q&birth_date=1971-03-14"),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let r = app.send(create("Ines").same_origin()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Without a configured public URL, our origin is http://{Host}.
        let r = app
            .send(
                create("Jonas")
                    .header("host", "salve.test")
                    .header("origin", "http://salve.test"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // Safe methods need neither (links from other sites still open pages).
        let r = app
            .send(
                Req::get("/api/v1/patients")
                    .cookie(&cookie)
                    .header("sec-fetch-site", "cross-site"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);

        // A bearer token needs no Origin, and a cookie beside it is ignored, even a dead one.
        let r = app
            .send(
                Req::post("/api/v1/patients")
                    .bearer(&app.token)
                    .json(&patient_body("Kara", None, "+13125550112")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let (bob, bobs) = app.signed_in_staff(Role::Staff).await;
        app.store
            .disable_user(&Actor::Cli, &RequestContext::default(), bob.id)
            .await
            .unwrap();
        let r = app.send(Req::get("/api/v1/patients").cookie(&bobs)).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "the cookie alone is dead"
        );
        let r = app
            .send(
                Req::post("/api/v1/patients")
                    .bearer(&app.token)
                    .cookie(&bobs)
                    .header("sec-fetch-site", "cross-site")
                    .json(&patient_body("Lena", None, "+13125550113")),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let created = app
            .practice_audit()
            .await
            .into_iter()
            .rfind(|r| r.action == "patient.create")
            .unwrap();
        assert_eq!(
            created.actor_kind, "token",
            "the token acted, not the cookie"
        );
        assert_eq!(listed().await, 4);
    }
}

#[tokio::test]
async fn with_an_https_public_url_the_cookie_is_host_prefixed_and_secure() {
    let app = App::with_config(TestDatabase::sqlite(), |c| {
        c.public_url = Some("https://salve.example".into());
    })
    .await;
    let alice = app.staff(app.practice, Role::Staff).await;
    let credentials = json!({"email": alice.email, "password": PASSWORD});
    let r = app
        .send(
            Req::post("/api/v1/session")
                .header("origin", "http://salve.example")
                .json(&credentials),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "http is not our origin");
    let r = app
        .send(
            Req::post("/api/v1/session")
                .header("origin", "https://salve.example")
                .json(&credentials),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let set_cookie = r.set_cookie().unwrap();
    assert!(
        set_cookie.starts_with(&format!("{HOST_COOKIE}=")),
        "{set_cookie}"
    );
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    assert!(r.headers.contains_key("strict-transport-security"));
    let token = r.session_token().unwrap();
    let r = app
        .send(Req::get("/api/v1/session").header("cookie", format!("{HOST_COOKIE}={token}")))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.send(Req::get("/api/v1/session").cookie(&token)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the unprefixed name is not read"
    );
    let r = app
        .send(
            Req::delete("/api/v1/session")
                .header("cookie", format!("{HOST_COOKIE}={token}"))
                .header("origin", "https://salve.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let cleared = r.set_cookie().unwrap();
    assert!(cleared.starts_with(&format!("{HOST_COOKIE}=;")) && cleared.contains("; Secure"));
}

// ---- 4. throttling ------------------------------------------------------------------------

/// One sign-in attempt as the client sees it, and the argon2 verifications it cost.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: StatusCode,
    retry_after: Option<String>,
    problem: Value,
    verifications: u64,
}

async fn attempt(app: &App, email: &str, password: &str) -> Seen {
    let before = salve_crypto::password::verifications();
    let r = app.sign_in(email, password).await;
    Seen {
        status: r.status,
        retry_after: r.retry_after(),
        problem: r.problem_without_request_id(),
        verifications: salve_crypto::password::verifications() - before,
    }
}

/// Ten wrong passwords for one account (each from a new address, so only the account's key
/// counts), waiting out each delay, then one more after the lock. Checks each answer.
async fn hammer(app: &App, email: &str) -> Vec<Seen> {
    let wrong = "definitely not it, sorry";
    let mut seen = Vec::new();
    for failures in 1..=11 {
        let s = attempt(app, email, wrong).await;
        assert_eq!(
            s.status,
            StatusCode::UNAUTHORIZED,
            "failure {failures}: {s:?}"
        );
        assert_eq!(s.verifications, 1, "the password was checked once");
        seen.push(s);
        let lock = throttle::delay_after(failures);
        if lock == Duration::ZERO {
            assert!(failures < 3, "delays start at the third failure");
            continue;
        }
        let s = attempt(app, email, wrong).await;
        assert_eq!(
            s.status,
            StatusCode::TOO_MANY_REQUESTS,
            "after failure {failures}"
        );
        assert_eq!(s.retry_after, Some(lock.whole_seconds().to_string()));
        assert_eq!(s.verifications, 0, "a locked key costs no password check");
        seen.push(s);
        if failures == 11 {
            break;
        }
        app.advance(lock - Duration::milliseconds(1));
        let s = attempt(app, email, wrong).await;
        assert_eq!(s.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(s.retry_after.as_deref(), Some("1"));
        seen.push(s);
        app.advance(Duration::milliseconds(1));
    }
    seen
}

#[tokio::test]
async fn known_and_unknown_accounts_are_throttled_alike_and_locks_are_audited() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let alice = app.staff(app.practice, Role::Staff).await;
        let system_before = app.audit("system").await;

        let known = hammer(&app, &alice.email).await;
        // Even the right password waits out the lock.
        let s = attempt(&app, &alice.email, PASSWORD).await;
        assert_eq!(s.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(s.verifications, 0);
        let unknown = hammer(&app, "nobody.at.all@lakeside.example").await;
        assert_eq!(known, unknown, "the same answers, delays and work");
        let locked = known
            .iter()
            .filter(|s| s.status == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            locked,
            2 * 8 + 1,
            "each delay seen at its start and its last millisecond"
        );
        assert_eq!(
            known[0].problem["detail"],
            "the email or password is incorrect"
        );
        assert_eq!(known.last().unwrap().retry_after.as_deref(), Some("900"));

        // Audited: failures and the lock on the account's practice, or the system chain for
        // the unknown account; refusals while locked name nobody.
        let mine = by(&app.practice_audit().await, alice.id);
        assert_eq!(count(&mine, "auth.sign_in", "failure"), 11);
        assert_eq!(
            count(&mine, "auth.locked", "denied"),
            1,
            "once, at the tenth failure"
        );
        let system = app.audit("system").await;
        let new: Vec<AuditRow> = system[system_before.len()..]
            .iter()
            .filter(|r| r.actor_kind == "anonymous")
            .cloned()
            .collect();
        assert_eq!(count(&new, "auth.sign_in", "failure"), 11);
        assert_eq!(count(&new, "auth.locked", "denied"), 1);
        assert_eq!(count(&new, "auth.sign_in", "denied"), 2 * locked + 1);

        // Once the lock is over (the unknown account's run took longer), the right password
        // works and clears the account's count.
        let s = attempt(&app, &alice.email, PASSWORD).await;
        assert_eq!(s.status, StatusCode::OK, "{s:?}");
        assert_eq!(s.verifications, 1);
        for _ in 0..3 {
            let s = attempt(&app, &alice.email, "wrong again, once more").await;
            assert_eq!(s.status, StatusCode::UNAUTHORIZED, "free attempts again");
        }
        let s = attempt(&app, &alice.email, PASSWORD).await;
        assert_eq!(s.status, StatusCode::TOO_MANY_REQUESTS);
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn one_address_is_throttled_across_accounts() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let alice = app.staff(app.practice, Role::Staff).await;
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let from = |ip: IpAddr, email: String, password: &str| {
            app.send(
                Req::post("/api/v1/session")
                    .same_origin()
                    .client_ip(ip)
                    .json(&json!({"email": email, "password": password})),
            )
        };
        for n in 1..=3 {
            let r = from(ip, format!("guess{n}@lakeside.example"), "wrong password 1").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = from(ip, "guess4@lakeside.example".into(), "wrong password 1").await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "a new account, the same address"
        );
        let r = from(ip, alice.email.clone(), PASSWORD).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "the address is locked"
        );
        let r = from(app.fresh_ip(), alice.email.clone(), PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "elsewhere, the account is fine");
        app.advance(Duration::seconds(1));
        let r = from(ip, alice.email.clone(), PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "the delay is over");
    }
}

#[tokio::test]
async fn wrong_second_factors_are_throttled_and_lock_the_account() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (mut alice, _) = app.signed_in_staff(Role::Clinician).await;
        app.next_step();
        let pending = app
            .sign_in(&alice.email, PASSWORD)
            .await
            .session_token()
            .unwrap();
        let send_code = |code: String| {
            app.send(
                Req::post("/api/v1/session/mfa")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({ "code": code })),
            )
        };
        for failures in 1..=10 {
            let r = send_code("nope!!".into()).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "failure {failures}");
            let lock = throttle::delay_after(failures);
            if lock > Duration::ZERO {
                // Even the right code waits.
                let r = send_code(app.totp_code(&alice)).await;
                assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
                assert_eq!(r.retry_after(), Some(lock.whole_seconds().to_string()));
                if failures < 10 {
                    app.advance(lock);
                }
            }
        }
        let mine = by(&app.practice_audit().await, alice.id);
        assert_eq!(count(&mine, "auth.sign_in", "failure"), 10);
        assert_eq!(count(&mine, "auth.locked", "denied"), 1);
        // The half-finished sign-in has lapsed by the end of the lock; a new one succeeds.
        app.advance(Duration::minutes(15));
        let r = send_code(app.totp_code(&alice)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let token = app.sign_in_with_code(&mut alice).await;
        let r = app.send(Req::get("/api/v1/session").cookie(&token)).await;
        assert_eq!(r.json()["stage"], "active");
    }
}

// ---- 6. the authorization matrix ----------------------------------------------------------

/// Routes anyone may call without credentials. Adding one is a decision: add it here.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/session"),
    // Passwordless sign-in with a passkey: the same answer whether or not the account exists.
    ("POST", "/api/v1/session/passkey"),
    ("POST", "/api/v1/session/passkey/finish"),
    // Browsers' Content-Security-Policy violation reports.
    ("POST", "/csp-report"),
    // Stylesheets and scripts compiled into the binary.
    ("GET", "/static/{*file}"),
    // Salve's public keys for a practice's EHR connection (public keys only).
    ("GET", "/ehr/{practice}/jwks.json"),
    // Asking for a password reset: the same answer whether or not the account exists.
    ("POST", "/api/v1/password-reset"),
    // A patient's portal login: the same answer whether or not the login exists.
    ("POST", "/api/v1/portal/session"),
];
/// Routes behind the metrics token.
const METRICS_ROUTES: &[(&str, &str)] = &[("GET", "/metrics")];
/// Routes whose handler checks a link or a patient session (secure links, the patient portal,
/// staff invitations and password resets), with a body that would get past parsing. Staff
/// credentials must change nothing on them.
const LINK_ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/p/{token}", None),
    ("GET", "/api/v1/portal/conversations", None),
    (
        "POST",
        "/api/v1/portal/messages",
        Some(r#"{"text": "Is my appointment still on?"}"#),
    ),
    ("GET", "/api/v1/portal/attachments/{id}", None),
    (
        "POST",
        "/api/v1/portal/birth-date",
        Some(r#"{"birth_date": "1971-03-14"}"#),
    ),
    ("POST", "/api/v1/portal/code", Some(r#"{"code": "123456"}"#)),
    ("GET", "/api/v1/portal/me", None),
    (
        "DELETE",
        "/api/v1/portal/confidential-requests/{request_id}",
        None,
    ),
    (
        "POST",
        "/api/v1/portal/account",
        Some(r#"{"password": "a brand new passphrase for 2026"}"#),
    ),
    (
        "POST",
        "/api/v1/portal/account/confirm",
        Some(r#"{"code": "123456"}"#),
    ),
    (
        "POST",
        "/api/v1/portal/session/mfa",
        Some(r#"{"code": "123456"}"#),
    ),
    ("GET", "/invite/{token}", None),
    ("GET", "/reset/{token}", None),
    // Provider webhooks: only the provider's signature opens them, never staff credentials.
    (
        "POST",
        "/webhooks/twilio/{id}/inbound",
        Some(r#"{"MessageSid": "SM1"}"#),
    ),
    (
        "POST",
        "/webhooks/twilio/{id}/status",
        Some(r#"{"MessageSid": "SM1"}"#),
    ),
    ("POST", "/webhooks/telnyx/{id}", Some(r#"{"data": {}}"#)),
    // SMART token requests: only a client's signed assertion opens them.
    ("POST", "/oauth2/token", None),
    (
        "POST",
        "/api/v1/account/password",
        Some(r#"{"password": "a brand new passphrase for 2026"}"#),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Admin,
    Clinician,
    Staff,
    Auditor,
    /// An API token of the practice with every scope.
    Token,
    /// A session that has not passed its second factor.
    HalfSignedIn,
    SignedOut,
}

impl Who {
    const ALL: [Who; 7] = [
        Who::Admin,
        Who::Clinician,
        Who::Staff,
        Who::Auditor,
        Who::Token,
        Who::HalfSignedIn,
        Who::SignedOut,
    ];

    fn role(self) -> Option<Role> {
        match self {
            Who::Admin => Some(Role::Admin),
            Who::Clinician => Some(Role::Clinician),
            Who::Staff => Some(Role::Staff),
            Who::Auditor => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// Whose record a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The path names no record.
    NoId,
    Own,
    /// A restricted patient of the practice that names nobody (or a link to one).
    Restricted,
    /// A record of another practice.
    Other,
}

/// The kinds of record a path can name, by path prefix.
/// Fixture keys of the catalog items appointments are booked with.
const CATALOG_TYPE: &str = "catalog:appointment_type";
const CATALOG_LOCATION: &str = "catalog:location";
const CATALOG_PROVIDER: &str = "catalog:provider";

const RECORD_KINDS: &[(&str, &[Target])] = &[
    (
        "/api/v1/patients/{id}",
        &[Target::Own, Target::Restricted, Target::Other],
    ),
    ("/api/v1/users/{id}", &[Target::Own, Target::Other]),
    ("/api/v1/teams/{id}", &[Target::Own, Target::Other]),
    (
        "/api/v1/admin/providers/{id}",
        &[Target::Own, Target::Other],
    ),
    ("/api/v1/inbound/triage/{id}", &[Target::Own, Target::Other]),
    (
        "/api/v1/inbound/reviews/{id}",
        &[Target::Own, Target::Other],
    ),
    ("/api/v1/tokens/{id}", &[Target::Own, Target::Other]),
    ("/api/v1/smart-clients/{id}", &[Target::Own, Target::Other]),
    (
        "/api/v1/secure-links/{id}",
        &[Target::Own, Target::Restricted, Target::Other],
    ),
    (
        "/api/v1/conversations/{id}",
        &[Target::Own, Target::Restricted, Target::Other],
    ),
    (
        "/api/v1/attachments/{id}",
        &[Target::Own, Target::Restricted, Target::Other],
    ),
    ("/api/v1/templates/{id}", &[Target::Own, Target::Other]),
    (
        "/api/v1/appointments/{id}",
        &[Target::Own, Target::Restricted, Target::Other],
    ),
    // No reminder is held back in the fixture: an allowed caller is told it is not found.
    ("/api/v1/reminders/{id}", &[Target::Own]),
    // No break-glass access in the fixture either: an allowed reviewer is told it is not found.
    ("/api/v1/audit/break-glass/{id}", &[Target::Own]),
    ("/api/v1/announcements/{id}", &[Target::Own, Target::Other]),
];

/// The records the matrix points at, by path prefix and target.
struct Fixture {
    ids: BTreeMap<(&'static str, Target), String>,
    /// Restricted too; used only by break-glass routes, whose success changes access.
    glass_patient: String,
    guidelines_version: i64,
}

/// How to call one route, and what it answers when the caller is allowed.
struct Template {
    method: Method,
    path: &'static str,
    body: fn(&Fixture) -> Option<Value>,
    /// The status when allowed (on the caller's own practice's records).
    ok: u16,
    /// The status when allowed on the restricted patient, where it differs.
    ok_restricted: Option<u16>,
    /// Success changes what every staff member must do next (new guidelines to acknowledge).
    publishes_guidelines: bool,
}

fn no_body(_: &Fixture) -> Option<Value> {
    None
}

fn t(method: Method, path: &'static str, ok: u16) -> Template {
    Template {
        method,
        path,
        body: no_body,
        ok,
        ok_restricted: None,
        publishes_guidelines: false,
    }
}

impl Template {
    fn body(mut self, body: fn(&Fixture) -> Option<Value>) -> Self {
        self.body = body;
        self
    }
    fn key(&self) -> (String, String) {
        (self.method.to_string(), self.path.to_owned())
    }
}

/// One entry per route that needs a token or a staff session. A route missing here fails the
/// matrix test.
fn templates() -> Vec<Template> {
    vec![
        // Sign-in steps and sign-out (Access::Session).
        t(Method::GET, "/api/v1/session", 200),
        t(Method::DELETE, "/api/v1/session", 204),
        t(Method::POST, "/api/v1/session/end-all", 204),
        // An empty body gets past the gate and fails validation.
        t(Method::POST, "/api/v1/session/mfa", 422).body(|_| Some(json!({}))),
        t(Method::POST, "/api/v1/session/mfa/enroll", 200),
        // Without an enrolment started first.
        t(Method::POST, "/api/v1/session/mfa/confirm", 400)
            .body(|_| Some(json!({"code": "000000"}))),
        // Passkeys. These accounts have none: no second-factor challenge (400), an empty list.
        t(Method::POST, "/api/v1/session/mfa/passkey", 400),
        t(Method::POST, "/api/v1/session/mfa/passkey/finish", 422).body(|_| Some(json!({}))),
        t(Method::POST, "/api/v1/session/passkeys/register", 200),
        t(
            Method::POST,
            "/api/v1/session/passkeys/register/finish",
            422,
        )
        .body(|_| Some(json!({}))),
        t(Method::GET, "/api/v1/session/passkeys", 200),
        // The path's literal `{id}` is no passkey of the caller's.
        t(Method::DELETE, "/api/v1/session/passkeys/{id}", 404),
        // One's own sessions; the literal `{id}` is no session.
        t(Method::GET, "/api/v1/session/sessions", 200),
        t(Method::DELETE, "/api/v1/session/sessions/{id}", 404),
        // Staff administration.
        t(Method::GET, "/api/v1/users", 200),
        t(Method::PUT, "/api/v1/users/{id}/role", 204).body(|_| Some(json!({"role": "staff"}))),
        t(Method::POST, "/api/v1/users/{id}/mfa-reset", 204),
        // Disabled in the practice, then enabled again (each idempotent).
        t(Method::POST, "/api/v1/users/{id}/disable", 204),
        t(Method::POST, "/api/v1/users/{id}/enable", 204),
        t(Method::GET, "/api/v1/users/{id}/sessions", 200),
        t(Method::POST, "/api/v1/users/{id}/sessions/end-all", 204),
        // The literal `{session_id}` is no session of theirs.
        t(Method::DELETE, "/api/v1/users/{id}/sessions/{session_id}", 404),
        // Only admins may invite, so the address is used once.
        t(Method::POST, "/api/v1/users/invite", 201).body(|_| {
            Some(json!({
                "email": "invitee@lakeside.example",
                "display_name": "New Colleague",
                "role": "staff"
            }))
        }),
        // Announcements: admins and the front desk write and send them, clinicians read them.
        // Sending again moves the time; cancelling again changes nothing.
        t(Method::GET, "/api/v1/announcements", 200),
        t(Method::POST, "/api/v1/announcements", 201)
            .body(|_| Some(json!({"text": "Our office is closed on Friday."}))),
        t(Method::POST, "/api/v1/announcements/preview", 200)
            .body(|_| Some(json!({"text": "Our office is closed on Friday."}))),
        t(Method::GET, "/api/v1/announcements/{id}", 200),
        t(Method::POST, "/api/v1/announcements/{id}/send", 200).body(|_| Some(json!({}))),
        t(Method::POST, "/api/v1/announcements/{id}/cancel", 200),
        // Teams: only admins manage them (one creation per name, one deletion per team).
        t(Method::GET, "/api/v1/teams", 200),
        t(Method::POST, "/api/v1/teams", 201).body(|_| Some(json!({"name": "Front desk"}))),
        t(Method::PUT, "/api/v1/teams/{id}/members", 204).body(|_| Some(json!({"members": []}))),
        t(Method::PUT, "/api/v1/teams/{id}", 204).body(|_| Some(json!({"name": "Nursing pool"}))),
        t(Method::DELETE, "/api/v1/teams/{id}", 204),
        // Providers and agreements: admins manage them, auditors read the BAA report.
        t(Method::GET, "/api/v1/admin/providers", 200),
        t(Method::GET, "/api/v1/admin/carrier-registration", 200),
        t(Method::POST, "/api/v1/admin/agreements", 201).body(|_| {
            Some(json!({"vendor": "Our own relay", "basis": "self_operated", "attested_on": "2026-01-05"}))
        }),
        t(Method::POST, "/api/v1/admin/providers", 201).body(|_| {
            Some(json!({"kind": "local_outbox", "label": "Demo outbox", "credentials": {}}))
        }),
        t(Method::POST, "/api/v1/admin/providers/{id}/agreement", 201).body(|_| {
            Some(json!({"vendor": "Our own relay", "basis": "self_operated", "attested_on": "2026-01-05"}))
        }),
        // The inbound queues: every staff role works them (the ids name no item here, so
        // whoever gets past authorization is told 404; tests/inbound_queues.rs does the work).
        t(Method::GET, "/api/v1/inbound/triage", 200),
        t(Method::POST, "/api/v1/inbound/triage/{id}/attribute", 404)
            .body(|_| Some(json!({"patient_id": uuid::Uuid::nil()}))),
        t(Method::GET, "/api/v1/inbound/reviews", 200),
        t(Method::POST, "/api/v1/inbound/reviews/{id}", 404)
            .body(|_| Some(json!({"decision": "not_opt_out"}))),
        // The local outbox (this test server runs with one): admins only.
        t(Method::GET, "/api/v1/admin/outbox", 200),
        t(Method::POST, "/api/v1/admin/outbox/inbound", 202)
            .body(|_| Some(json!({"from": "+13125550177", "text": "Is the office open Saturday?"}))),
        t(Method::POST, "/api/v1/admin/outbox/status", 404)
            .body(|_| Some(json!({"id": uuid::Uuid::nil(), "status": "delivered"}))),
        // API tokens: admins only; a token cannot make tokens.
        t(Method::GET, "/api/v1/tokens", 200),
        t(Method::POST, "/api/v1/tokens", 201)
            .body(|_| Some(json!({"label": "EHR", "scopes": ["patients:read"]}))),
        t(Method::DELETE, "/api/v1/tokens/{id}", 204),
        // SMART clients: admins only, like tokens.
        t(Method::GET, "/api/v1/smart-clients", 200),
        t(Method::POST, "/api/v1/smart-clients", 201).body(|_| {
            Some(json!({"name": "EHR", "scopes": ["system/Patient.rs"], "jwks": {"keys": [{
                "kty": "EC", "crv": "P-384", "kid": "matrix",
                "x": "99klQ4ieizEIARDtVG-bd3KgDvJxINUfiRDL27LI4dpnr_qtyESLxwOjELh5lLsH",
                "y": "6erH6OLC-tlnJbe9tnpa3H9mA8OnefFe8ndTZevU-zNmVObFwOZrUYo29pYmXv2l"}]}}))
        }),
        t(Method::DELETE, "/api/v1/smart-clients/{id}", 204),
        // The EHR connection: admins only, like tokens.
        t(Method::PUT, "/api/v1/ehr/connection", 200).body(|_| {
            Some(json!({"base_url": "https://ehr.example.org/fhir/r4",
                "auth": {"kind": "bearer", "token": "matrix-token"},
                "patient_identifier_system": "urn:oid:1.2.3", "write": "communication",
                "push_consent": false, "enabled": false}))
        }),
        // None set up in this fixture (cells do not run in order): 404 for whoever may ask.
        t(Method::GET, "/api/v1/ehr/connection", 404),
        // The pull from the EHR: admins only. An interval out of range fails validation
        // (whether a connection exists depends on which cells ran before); a pull never
        // turned on does not run (409).
        t(Method::GET, "/api/v1/ehr/pull", 200),
        t(Method::PUT, "/api/v1/ehr/pull", 422)
            .body(|_| Some(json!({"enabled": true, "interval_secs": 5}))),
        t(Method::POST, "/api/v1/ehr/pull/run", 409),
        // Patients.
        t(Method::POST, "/api/v1/patients", 201)
            .body(|_| Some(patient_body("Nadia", None, "+13125550190"))),
        t(Method::GET, "/api/v1/patients", 200),
        t(Method::POST, "/api/v1/patients/search", 200)
            .body(|_| Some(json!({"query": "Quintanilla"}))),
        t(Method::POST, "/api/v1/patients/lookup", 200).body(|_| Some(json!({"mrn": "MRN-OWN-1"}))),
        t(Method::GET, "/api/v1/patients/{id}", 200),
        t(Method::PATCH, "/api/v1/patients/{id}", 200)
            .body(|_| Some(json!({"preferred_language": "es"}))),
        t(Method::GET, "/api/v1/patients/restricted", 200),
        t(Method::PUT, "/api/v1/patients/{id}/restriction", 204)
            .body(|_| Some(json!({"restricted": false, "users": []}))),
        // An unrestricted patient needs no glass (400); a restricted one is opened (201).
        Template {
            ok_restricted: Some(201),
            ..t(Method::POST, "/api/v1/patients/{id}/break-glass", 400).body(|_| {
                Some(json!({
                    "category": "emergency_treatment",
                    "reason": "unconscious in the ER, allergies needed"
                }))
            })
        },
        // Secure links (revoking is idempotent, so one link serves every caller).
        t(Method::POST, "/api/v1/patients/{id}/secure-links", 201)
            .body(|_| Some(json!({"contact_index": 0}))),
        t(Method::DELETE, "/api/v1/secure-links/{id}", 204),
        // Oversight.
        t(Method::GET, "/api/v1/audit/break-glass", 200),
        t(Method::POST, "/api/v1/audit/break-glass/{id}/review", 404)
            .body(|_| Some(json!({"note": "Checked against the ER log."}))),
        t(Method::GET, "/api/v1/guidelines", 200),
        Template {
            publishes_guidelines: true,
            ..t(Method::PUT, "/api/v1/guidelines", 200)
                .body(|_| Some(json!({"body": "Clinical questions go through the portal."})))
        },
        t(Method::POST, "/api/v1/guidelines/acknowledge", 204)
            .body(|f| Some(json!({"version": f.guidelines_version}))),
        t(Method::GET, "/api/v1/guidelines/acknowledgments", 200),
        // Messaging. Sends are administrative so that the front desk may read them back.
        t(Method::GET, "/api/v1/conversations", 200),
        t(Method::GET, "/api/v1/conversations/{id}", 200),
        t(Method::POST, "/api/v1/conversations/{id}/notes", 201)
            .body(|_| Some(json!({"text": "Called back, left a voicemail."}))),
        t(Method::PUT, "/api/v1/conversations/{id}/assignment", 204).body(|_| Some(json!({}))),
        t(Method::PUT, "/api/v1/conversations/{id}/state", 204)
            .body(|_| Some(json!({"state": "open"}))),
        t(Method::POST, "/api/v1/conversations/{id}/read", 204),
        t(Method::POST, "/api/v1/patients/{id}/messages", 201).body(|_| {
            Some(json!({"text": "Please call the office when you can.", "kind": "administrative"}))
        }),
        t(Method::POST, "/api/v1/patients/{id}/messages/preview", 200)
            .body(|_| Some(json!({"text": "Please call the office when you can."}))),
        t(Method::POST, "/api/v1/patients/{id}/conversations", 201)
            .body(|_| Some(json!({"topic": "Billing question"}))),
        t(Method::GET, "/api/v1/attachments/{id}", 200),
        // The matrix's server closes streams at once (zero lifetime), so the answer ends.
        t(Method::GET, "/api/v1/inbox/events", 200),
        // Consent and confidential communications.
        t(Method::GET, "/api/v1/patients/{id}/consent", 200),
        t(Method::POST, "/api/v1/patients/{id}/consent", 201).body(|_| {
            Some(json!({"events": [{
                "channel": "sms_plain", "purpose": "care_messages",
                "action": "revoke", "method": "verbal"
            }]}))
        }),
        // Nothing granted, so nothing to revoke.
        t(Method::POST, "/api/v1/patients/{id}/consent/revoke-all", 200)
            .body(|_| Some(json!({"method": "verbal"}))),
        t(Method::POST, "/api/v1/patients/{id}/confidential-requests", 201).body(|_| {
            Some(json!({"rule": "never_medium", "value": "email", "method": "verbal"}))
        }),
        // The path's literal `{request_id}` names no request.
        t(
            Method::DELETE,
            "/api/v1/patients/{id}/confidential-requests/{request_id}",
            404,
        ),
        // Practice settings: everyone who messages reads them; admins change them.
        t(Method::GET, "/api/v1/consent-texts", 200),
        t(Method::POST, "/api/v1/consent-texts", 201)
            .body(|_| Some(json!({"version": "matrix-1", "text": "I agree to texts."}))),
        // Appointments: the front desk, clinicians and admins manage them, auditors see none.
        // Booking takes the fixture's own patient; the list needs a patient or a window (422
        // past the gate); the import takes text/csv only (415 past the gate).
        t(Method::POST, "/api/v1/appointments", 201).body(|f| {
            Some(json!({
                "patient_id": f.ids[&("/api/v1/patients/{id}", Target::Own)],
                "starts_at": "2026-12-07T09:30:00-06:00",
                "time_zone": "America/Chicago",
                "duration_minutes": 30,
                "appointment_type_id": f.ids[&(CATALOG_TYPE, Target::Own)],
                "location_id": f.ids[&(CATALOG_LOCATION, Target::Own)],
                "provider_id": f.ids[&(CATALOG_PROVIDER, Target::Own)],
            }))
        }),
        t(Method::GET, "/api/v1/appointments", 422),
        t(Method::POST, "/api/v1/appointments/import", 415).body(|_| Some(json!({}))),
        t(Method::GET, "/api/v1/appointments/{id}", 200),
        t(Method::PATCH, "/api/v1/appointments/{id}", 200)
            .body(|_| Some(json!({"duration_minutes": 45}))),
        t(Method::POST, "/api/v1/appointments/{id}/cancel", 200),
        t(Method::GET, "/api/v1/appointments/{id}/reminders", 200),
        t(Method::GET, "/api/v1/reminders/settings", 200),
        t(Method::PUT, "/api/v1/reminders/settings", 200).body(|_| {
            Some(json!({"default_schedule": "72h,24h", "daily_cap": 1, "min_lead_minutes": 120}))
        }),
        t(Method::GET, "/api/v1/reminders/held", 200),
        t(Method::POST, "/api/v1/reminders/{id}/release", 404),
        t(Method::GET, "/api/v1/catalog", 200),
        t(Method::PUT, "/api/v1/catalog", 200).body(|_| {
            Some(json!({"kind": "location", "name": "Main Street office", "sms_safe": true}))
        }),
        t(Method::GET, "/api/v1/templates", 200),
        t(Method::POST, "/api/v1/templates", 201).body(|_| {
            Some(json!({"name": "Call us", "body": "Hi {patient.first_name}, please call {practice.phone}."}))
        }),
        t(Method::PUT, "/api/v1/templates/{id}", 200).body(|_| {
            Some(json!({"name": "Hello", "body": "Hello {patient.first_name}."}))
        }),
        t(Method::GET, "/api/v1/practice/messaging", 200),
        t(Method::PUT, "/api/v1/practice/messaging", 204).body(|_| {
            Some(json!({
                "sender_name": "Lakeside Clinic",
                "phone": "(312) 555-0100",
                "hours_text": "Mon-Fri 8-5",
                "expected_reply_text": "within 1 business day"
            }))
        }),
        t(Method::GET, "/api/v1/practice/office-hours", 200),
        t(Method::PUT, "/api/v1/practice/office-hours", 200).body(|_| {
            Some(json!({"weekly": {"mon": [{"start": "09:00", "end": "17:00"}]}}))
        }),
        t(Method::GET, "/api/v1/practice/response-settings", 200),
        t(Method::PUT, "/api/v1/practice/response-settings", 204)
            .body(|_| Some(json!({"target_minutes": 240}))),
        t(Method::GET, "/api/v1/reports/response-time", 200),
        t(Method::GET, "/api/v1/practice/unread-settings", 200),
        t(Method::PUT, "/api/v1/practice/unread-settings", 204)
            .body(|_| Some(json!({"delay_hours": 72}))),
    ]
}

/// What the route table and `authorize` say a call should get: a status and, for refusals,
/// the problem type.
fn expected(
    app: &App,
    op: Operation,
    who: Who,
    target: Target,
    template: &Template,
) -> (u16, Option<&'static str>) {
    const UNAUTHORIZED: Option<&str> = Some("urn:salve:problem:unauthorized");
    const FORBIDDEN: Option<&str> = Some("urn:salve:problem:forbidden");
    const NOT_FOUND: Option<&str> = Some("urn:salve:problem:not-found");
    let principal = match who {
        Who::SignedOut | Who::HalfSignedIn => return (401, UNAUTHORIZED),
        Who::Token => Principal::Token {
            practice: app.practice,
            token: TokenId::new(),
            scopes: Scope::ALL.to_vec(),
        },
        staff => Principal::Staff {
            practice: app.practice,
            user: UserId::new(),
            role: staff.role().unwrap(),
        },
    };
    // The route's gate: no record is known yet.
    if authorize(&principal, op, None) != Decision::Allow {
        return (403, FORBIDDEN);
    }
    match target {
        Target::NoId | Target::Own => (template.ok, None),
        Target::Other => (404, NOT_FOUND),
        Target::Restricted => {
            let guard = PatientGuard {
                restricted: true,
                named: false,
                break_glass: false,
                ..PatientGuard::default()
            };
            match authorize(&principal, op, Some(&guard)) {
                Decision::Allow => (template.ok_restricted.unwrap_or(template.ok), None),
                Decision::BreakGlassRequired => {
                    (403, Some("urn:salve:problem:break-glass-required"))
                }
                // Not allowed to know it exists: the same answer as no such patient.
                Decision::Deny(DenyReason::Restricted) => (404, NOT_FOUND),
                Decision::Deny(_) => (403, FORBIDDEN),
            }
        }
    }
}

/// The record kind (path prefix) a path names, and the targets to try.
fn record_kind(path: &str) -> Option<(&'static str, &'static [Target])> {
    let found = RECORD_KINDS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .copied();
    assert!(
        found.is_some() || !path.contains('{'),
        "{path}: a path parameter the matrix does not know; add own/other records to RECORD_KINDS"
    );
    found
}

fn fill(path: &str, target: Target, op: Operation, f: &Fixture) -> String {
    match record_kind(path) {
        None => path.to_owned(),
        Some((prefix, _)) => {
            let id = if op == Operation::BreakGlass && target == Target::Restricted {
                &f.glass_patient
            } else {
                &f.ids[&(prefix, target)]
            };
            path.replace("{id}", id)
        }
    }
}

/// Every staff principal acknowledges the current guidelines, so that the gate that asks
/// for it does not hide the permission being tested.
async fn acknowledge_guidelines(app: &App, cookies: &BTreeMap<Who, String>) -> i64 {
    let mut version = 0;
    for cookie in cookies.values() {
        let r = app
            .send(Req::get("/api/v1/guidelines").cookie(cookie))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        version = r.json()["version"].as_i64().unwrap();
        if r.json()["acknowledgment_required"] == true {
            let r = app
                .send(
                    Req::post("/api/v1/guidelines/acknowledge")
                        .cookie(cookie)
                        .same_origin()
                        .json(&json!({ "version": version })),
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        }
    }
    version
}

/// The practice's records, a restricted patient naming nobody, another practice's records.
async fn matrix_fixture(app: &App, admin: &str) -> Fixture {
    let own_patient = app
        .create_patient(
            &app.token,
            &patient_body("Olive", Some("MRN-OWN-1"), "+13125550100"),
        )
        .await;
    let restricted_patient = app
        .create_patient(
            &app.token,
            &patient_body("Rosa", Some("MRN-R-1"), "+13125550101"),
        )
        .await;
    let glass_patient = app
        .create_patient(
            &app.token,
            &patient_body("Gloria", Some("MRN-G-1"), "+13125550102"),
        )
        .await;
    let other_patient = app
        .create_patient(
            &app.other_token,
            &patient_body("Otto", Some("MRN-OWN-1"), "+13125550100"),
        )
        .await;
    for id in [&restricted_patient, &glass_patient] {
        let r = app
            .send(
                Req::put(format!("/api/v1/patients/{id}/restriction"))
                    .cookie(admin)
                    .same_origin()
                    .json(&json!({"restricted": true, "users": []})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    let link = async |token: &str, patient: &str| {
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{patient}/secure-links"))
                    .bearer(token)
                    .json(&json!({"contact_index": 0})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let own_link = link(&app.token, &own_patient).await;
    let restricted_link = link(&app.token, &restricted_patient).await;
    let other_link = link(&app.other_token, &other_patient).await;
    let own_user = app.passwordless_user(app.practice, Role::Staff).await;
    let other_user = app.passwordless_user(app.other, Role::Admin).await;
    let team = async |cookie: &str, name: &str| {
        let r = app
            .send(
                Req::post("/api/v1/teams")
                    .cookie(cookie)
                    .same_origin()
                    .json(&json!({ "name": name })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let own_team = team(admin, "Nurses").await;
    let other_admin = app
        .raw_session(other_user, app.other, SessionStage::Active)
        .await;
    let other_team = team(&other_admin, "Nurses").await;
    let mut ids = BTreeMap::new();
    let patients = "/api/v1/patients/{id}";
    ids.insert((patients, Target::Own), own_patient);
    ids.insert((patients, Target::Restricted), restricted_patient);
    ids.insert((patients, Target::Other), other_patient);
    let users = "/api/v1/users/{id}";
    ids.insert(
        ("/api/v1/reminders/{id}", Target::Own),
        uuid::Uuid::now_v7().to_string(),
    );
    ids.insert(
        ("/api/v1/audit/break-glass/{id}", Target::Own),
        uuid::Uuid::now_v7().to_string(),
    );
    ids.insert((users, Target::Own), own_user.to_string());
    ids.insert((users, Target::Other), other_user.to_string());
    let teams = "/api/v1/teams/{id}";
    ids.insert((teams, Target::Own), own_team);
    ids.insert((teams, Target::Other), other_team);
    // Tokens made only to be revoked (the matrix's own token must keep working).
    let spare_token = async |practice| {
        let t = salve_crypto::token::mint("salve");
        app.store
            .create_token(
                Actor::Cli,
                practice,
                &[Scope::PatientsRead],
                "spare",
                &t.hash,
            )
            .await
            .unwrap()
            .to_string()
    };
    let provider = async |practice| {
        app.store
            .add_provider(
                practice,
                Actor::Cli,
                &RequestContext::default(),
                &salve_store::NewProvider {
                    kind: salve_core::vendors::ProviderKind::LocalOutbox,
                    label: "Demo outbox".into(),
                    credentials: salve_core::Sensitive::new("{}".into()),
                    numbers: Vec::new(),
                    agreement: None,
                },
            )
            .await
            .unwrap()
            .to_string()
    };
    for queue in [
        "/api/v1/inbound/triage/{id}",
        "/api/v1/inbound/reviews/{id}",
    ] {
        for target in [Target::Own, Target::Other] {
            ids.insert((queue, target), uuid::Uuid::now_v7().to_string());
        }
    }
    let providers = "/api/v1/admin/providers/{id}";
    ids.insert((providers, Target::Own), provider(app.practice).await);
    ids.insert((providers, Target::Other), provider(app.other).await);
    let tokens = "/api/v1/tokens/{id}";
    ids.insert((tokens, Target::Own), spare_token(app.practice).await);
    ids.insert((tokens, Target::Other), spare_token(app.other).await);
    let spare_client = async |practice| {
        app.store
            .register_smart_client(
                Actor::Cli,
                &RequestContext::default(),
                practice,
                "spare",
                r#"{"keys": []}"#,
                "system/Patient.rs",
            )
            .await
            .unwrap()
            .to_string()
    };
    let clients = "/api/v1/smart-clients/{id}";
    ids.insert((clients, Target::Own), spare_client(app.practice).await);
    ids.insert((clients, Target::Other), spare_client(app.other).await);
    let links = "/api/v1/secure-links/{id}";
    ids.insert((links, Target::Own), own_link);
    ids.insert((links, Target::Restricted), restricted_link);
    ids.insert((links, Target::Other), other_link);
    // A conversation with an attachment for each patient (tokens may write to restricted ones).
    let png = {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(2, 2)
            .write_to(&mut bytes, image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes.into_inner())
    };
    let message = async |token: &str, patient: &str| {
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{patient}/messages"))
                    .bearer(token)
                    .json(&json!({
                        "text": "Here is the form you asked for.",
                        "kind": "administrative",
                        "attachments": [{"file_name": "form.png", "content_base64": png}]
                    })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let m = r.json();
        (
            m["conversation_id"].as_str().unwrap().to_owned(),
            m["attachments"][0]["id"].as_str().unwrap().to_owned(),
        )
    };
    let conversations = "/api/v1/conversations/{id}";
    let attachments = "/api/v1/attachments/{id}";
    for (target, token, patient) in [
        (
            Target::Own,
            &app.token,
            ids[&(patients, Target::Own)].clone(),
        ),
        (
            Target::Restricted,
            &app.token,
            ids[&(patients, Target::Restricted)].clone(),
        ),
        (
            Target::Other,
            &app.other_token,
            ids[&(patients, Target::Other)].clone(),
        ),
    ] {
        let (conversation, attachment) = message(token, &patient).await;
        ids.insert((conversations, target), conversation);
        ids.insert((attachments, target), attachment);
    }
    let template = async |cookie: &str| {
        let r = app
            .send(
                Req::post("/api/v1/templates")
                    .cookie(cookie)
                    .same_origin()
                    .json(&json!({"name": "Fixture", "body": "Please call {practice.phone}."})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let templates = "/api/v1/templates/{id}";
    ids.insert((templates, Target::Own), template(admin).await);
    ids.insert((templates, Target::Other), template(&other_admin).await);
    // An appointment for each patient, booked with each practice's catalog.
    for (target, practice, token) in [
        (Target::Own, app.practice, &app.token),
        (Target::Restricted, app.practice, &app.token),
        (Target::Other, app.other, &app.other_token),
    ] {
        let mut item = async |kind, key: &'static str, name: &str| {
            let id = app
                .store
                .upsert_catalog_item(
                    practice,
                    &Principal::Operator,
                    &RequestContext::default(),
                    kind,
                    name,
                    true,
                    true,
                )
                .await
                .unwrap()
                .to_string();
            ids.insert((key, target), id.clone());
            id
        };
        let kind = item(
            salve_store::CatalogKind::AppointmentType,
            CATALOG_TYPE,
            "Checkup",
        )
        .await;
        let location = item(
            salve_store::CatalogKind::Location,
            CATALOG_LOCATION,
            "Main St",
        )
        .await;
        let provider = item(
            salve_store::CatalogKind::Provider,
            CATALOG_PROVIDER,
            "Dr Lee",
        )
        .await;
        let r = app
            .send(
                Req::post("/api/v1/appointments")
                    .bearer(token)
                    .json(&json!({
                        "patient_id": ids[&(patients, target)],
                        "starts_at": "2026-12-07T09:30:00-06:00",
                        "time_zone": "America/Chicago",
                        "duration_minutes": 30,
                        "appointment_type_id": kind,
                        "location_id": location,
                        "provider_id": provider,
                    })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.insert(
            ("/api/v1/appointments/{id}", target),
            r.json()["id"].as_str().unwrap().to_owned(),
        );
    }
    let announcement = async |practice| {
        app.store
            .create_announcement(
                practice,
                &salve_core::permissions::Principal::Operator,
                &RequestContext::default(),
                &salve_store::NewAnnouncement {
                    text: salve_core::Sensitive::new("Our office is closed on Friday.".into()),
                    decision_json: "{}".into(),
                    route: salve_core::policy::Route::Direct,
                    filter: Default::default(),
                    scheduled_at: None,
                },
                None,
            )
            .await
            .unwrap()
            .0
            .id
            .to_string()
    };
    let announcements = "/api/v1/announcements/{id}";
    ids.insert(
        (announcements, Target::Own),
        announcement(app.practice).await,
    );
    ids.insert(
        (announcements, Target::Other),
        announcement(app.other).await,
    );
    Fixture {
        ids,
        glass_patient,
        guidelines_version: 0,
    }
}

#[tokio::test]
async fn every_route_allows_and_denies_exactly_what_the_permission_table_says() {
    // The route table is complete: every route is public, metrics or patient by decision, or
    // has a template.
    let templates = templates();
    let by_key: BTreeMap<(String, String), &Template> =
        templates.iter().map(|t| (t.key(), t)).collect();
    assert_eq!(by_key.len(), templates.len(), "one template per route");
    let specs = route_specs();
    let spec_keys: BTreeSet<(String, String)> = specs
        .iter()
        .map(|s| (s.method.to_string(), s.path.to_owned()))
        .collect();
    let link_routes: Vec<(&str, &str)> = LINK_ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect();
    // Problems are collected, so that one run lists every route to look at.
    let mut unlisted = Vec::new();
    // Pages call the same operations as the API routes listed here; tests/web.rs covers them.
    // FHIR routes answer with OperationOutcome, not problem documents: tests/fhir.rs checks
    // their gates (no token, a missing scope, another practice, a role without the operation).
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| !s.page && !s.path.starts_with("/fhir/"))
        .collect();
    for spec in &specs {
        let key = (spec.method.to_string(), spec.path.to_owned());
        let listed = |list: &[(&str, &str)]| list.contains(&(key.0.as_str(), key.1.as_str()));
        let route = format!("{} {}", key.0, key.1);
        match spec.access {
            Access::Public if !listed(PUBLIC_ROUTES) => unlisted.push(format!(
                "{route} is public: add it to PUBLIC_ROUTES if that is intended, else give it a permission"
            )),
            Access::MetricsToken if !listed(METRICS_ROUTES) => {
                unlisted.push(format!("{route} needs the metrics token: add it to METRICS_ROUTES"))
            }
            Access::Op(_) | Access::Session(_) if !by_key.contains_key(&key) => unlisted.push(
                format!("{route} is not in the authorization matrix: add a template"),
            ),
            Access::Public | Access::MetricsToken | Access::Op(_) | Access::Session(_) => {}
            // Links and patient sessions, checked by the handler.
            _ if !listed(&link_routes) => unlisted.push(format!(
                "{route} ({:?}) is checked by its handler: add it to LINK_ROUTES",
                spec.access
            )),
            _ => {}
        }
    }
    for (method, path) in PUBLIC_ROUTES
        .iter()
        .chain(METRICS_ROUTES)
        .chain(&link_routes)
    {
        if !spec_keys.contains(&(method.to_string(), path.to_string())) {
            unlisted.push(format!("{method} {path} is listed but no longer a route"));
        }
    }
    for key in by_key.keys() {
        if !spec_keys.contains(key) {
            unlisted.push(format!("stale template {key:?}"));
        }
    }

    for db in TestDatabase::all().await {
        // Live-update streams end at once, so a call's whole answer can be read.
        let app = App::with_config(db, |c| {
            c.stream_max_lifetime = std::time::Duration::ZERO;
        })
        .await;
        let mut cookies = BTreeMap::new();
        for who in [Who::Admin, Who::Clinician, Who::Staff, Who::Auditor] {
            let (_, cookie) = app.signed_in_staff(who.role().unwrap()).await;
            cookies.insert(who, cookie);
        }
        let half = app.passwordless_user(app.practice, Role::Admin).await;
        let half_signed_in = app.raw_session(half, app.practice, SessionStage::Mfa).await;
        let mut fixture = matrix_fixture(&app, &cookies[&Who::Admin]).await;
        // Guidelines exist and everyone has acknowledged them.
        let r = app
            .send(
                Req::put("/api/v1/guidelines")
                    .cookie(&cookies[&Who::Admin])
                    .same_origin()
                    .json(&json!({"body": "Use the portal for clinical questions."})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        fixture.guidelines_version = acknowledge_guidelines(&app, &cookies).await;

        let with_credentials = |req: Req, who: Who| match who {
            Who::SignedOut => req,
            Who::Token => req.bearer(&app.token),
            Who::HalfSignedIn => req.cookie(&half_signed_in).same_origin(),
            staff => req.cookie(&cookies[&staff]).same_origin(),
        };
        let mut seen: BTreeMap<(Who, String, Target), u16> = BTreeMap::new();
        let mut wrong = unlisted.clone();
        for spec in &specs {
            let key = (spec.method.to_string(), spec.path.to_owned());
            let route = format!("{} {}", key.0, key.1);
            match spec.access {
                Access::Public | Access::MetricsToken => {}
                Access::Op(_) | Access::Session(_) if !by_key.contains_key(&key) => {}
                Access::Op(op) => {
                    let template = by_key[&key];
                    let targets = record_kind(spec.path).map_or(&[Target::NoId][..], |k| k.1);
                    for &target in targets {
                        for who in Who::ALL {
                            let path = fill(spec.path, target, op, &fixture);
                            let mut req =
                                with_credentials(Req::new(spec.method.clone(), path), who);
                            if let Some(body) = (template.body)(&fixture) {
                                req = req.json(&body);
                            }
                            let r = app.send(req).await;
                            let (status, problem) = expected(&app, op, who, target, template);
                            if r.status.as_u16() != status
                                || problem.is_some_and(|p| r.problem_type() != p)
                            {
                                wrong.push(format!(
                                    "{route} as {who:?} on {target:?}: expected {status} {problem:?}, got {} {}",
                                    r.status, r.text
                                ));
                            }
                            seen.insert((who, route.clone(), target), r.status.as_u16());
                            if template.publishes_guidelines && r.status.is_success() {
                                fixture.guidelines_version =
                                    acknowledge_guidelines(&app, &cookies).await;
                            }
                        }
                    }
                }
                Access::Session(stages) => {
                    // A fresh account and session for each call: these routes end sessions and
                    // start enrolments.
                    let template = by_key[&key];
                    let callers = [
                        (Some(SessionStage::Enroll), false),
                        (Some(SessionStage::Mfa), false),
                        (Some(SessionStage::Active), false),
                        (None, true),
                        (None, false),
                    ];
                    for (stage, bearer) in callers {
                        let mut req = Req::new(spec.method.clone(), spec.path);
                        if let Some(stage) = stage {
                            let user = app.passwordless_user(app.practice, Role::Staff).await;
                            let token = app.raw_session(user, app.practice, stage).await;
                            req = req.cookie(&token).same_origin();
                        } else if bearer {
                            req = req.bearer(&app.token);
                        }
                        if let Some(body) = (template.body)(&fixture) {
                            req = req.json(&body);
                        }
                        let r = app.send(req).await;
                        let allowed = stage.is_some_and(|s| stages.contains(&s));
                        let ok = if allowed {
                            r.status.as_u16() == template.ok
                        } else {
                            r.status == StatusCode::UNAUTHORIZED
                                && r.problem_type() == "urn:salve:problem:unauthorized"
                        };
                        if !ok {
                            wrong.push(format!(
                                "{route} with a session at {stage:?} (bearer: {bearer}): allowed {allowed}, got {} {}",
                                r.status, r.text
                            ));
                        }
                    }
                }
                _ => {
                    // Links and patient sessions: staff credentials neither open nor change
                    // these routes. Every caller gets what a stranger gets; nobody succeeds.
                    let body = LINK_ROUTES
                        .iter()
                        .find(|(m, p, _)| (*m, *p) == (key.0.as_str(), key.1.as_str()))
                        .and_then(|(_, _, body)| *body);
                    let path = spec
                        .path
                        .replace("{token}", "salve_l_not-a-real-link-token")
                        .replace("{id}", &uuid::Uuid::now_v7().to_string());
                    let mut answers = BTreeSet::new();
                    for who in Who::ALL {
                        // Sent from Salve's own pages, as a patient's browser would.
                        let mut req = with_credentials(
                            Req::new(spec.method.clone(), &path).same_origin(),
                            who,
                        );
                        if let Some(body) = body {
                            req = req.json(&serde_json::from_str(body).unwrap());
                        }
                        let r = app.send(req).await;
                        if r.status.is_success() {
                            wrong.push(format!("{route} as {who:?}: {} {}", r.status, r.text));
                        }
                        answers.insert((r.status.as_u16(), r.problem_type()));
                    }
                    if answers.len() != 1 {
                        wrong.push(format!("{route}: answers differ by caller: {answers:?}"));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} cells disagree:\n{}",
            wrong.len(),
            wrong.join("\n")
        );

        // Written out by hand, so the matrix is not only checked against itself.
        let hand: &[(Who, &str, Target, u16)] = &[
            (Who::Auditor, "GET /api/v1/patients", Target::NoId, 403),
            (Who::Auditor, "GET /api/v1/patients/{id}", Target::Own, 403),
            (
                Who::Auditor,
                "POST /api/v1/patients/search",
                Target::NoId,
                403,
            ),
            (Who::Auditor, "GET /api/v1/users", Target::NoId, 200),
            (Who::Staff, "PUT /api/v1/users/{id}/role", Target::Own, 403),
            (
                Who::Clinician,
                "PUT /api/v1/users/{id}/role",
                Target::Own,
                403,
            ),
            (
                Who::Clinician,
                "POST /api/v1/users/{id}/mfa-reset",
                Target::Own,
                403,
            ),
            (
                Who::Clinician,
                "PUT /api/v1/patients/{id}/restriction",
                Target::Own,
                403,
            ),
            (Who::Token, "GET /api/v1/users", Target::NoId, 403),
            (
                Who::Token,
                "POST /api/v1/users/{id}/mfa-reset",
                Target::Own,
                403,
            ),
            (
                Who::Token,
                "PUT /api/v1/patients/{id}/restriction",
                Target::Own,
                403,
            ),
            (
                Who::Token,
                "GET /api/v1/patients/{id}",
                Target::Restricted,
                200,
            ),
            (Who::Token, "GET /api/v1/patients/{id}", Target::Other, 404),
            (Who::Admin, "PUT /api/v1/users/{id}/role", Target::Own, 204),
            (
                Who::Admin,
                "PUT /api/v1/users/{id}/role",
                Target::Other,
                404,
            ),
            (
                Who::Admin,
                "POST /api/v1/users/{id}/mfa-reset",
                Target::Other,
                404,
            ),
            (Who::Admin, "GET /api/v1/patients/{id}", Target::Other, 404),
            (Who::Staff, "GET /api/v1/patients/{id}", Target::Own, 200),
            (
                Who::Staff,
                "GET /api/v1/patients/{id}",
                Target::Restricted,
                404,
            ),
            (
                Who::Clinician,
                "GET /api/v1/patients/{id}",
                Target::Restricted,
                403,
            ),
            (Who::SignedOut, "GET /api/v1/users", Target::NoId, 401),
            (Who::HalfSignedIn, "GET /api/v1/patients", Target::NoId, 401),
        ];
        for (who, route, target, status) in hand {
            assert_eq!(
                seen.get(&(*who, route.to_string(), *target)),
                Some(status),
                "{route} as {who:?} on {target:?}"
            );
        }
        let op_routes = specs
            .iter()
            .filter(|s| matches!(s.access, Access::Op(_)))
            .count();
        assert!(seen.len() >= op_routes * Who::ALL.len(), "every cell ran");
        app.assert_audit_verifies().await;
    }
}

// ---- 7. restricted patients ---------------------------------------------------------------

/// Who is signed in for the restricted-patient tests, and the two patients.
struct Restricted {
    app: App,
    admin: String,
    /// Staff named on the restricted patient.
    a: (UserId, String),
    /// Staff not named.
    b: (UserId, String),
    /// A clinician not named (may break the glass).
    c: (UserId, String),
    /// An auditor (no patient content at all).
    d: (UserId, String),
    restricted: String,
    plain: String,
}

async fn restricted_world(db: TestDatabase) -> Restricted {
    let app = App::new(db).await;
    let (_, admin) = app.signed_in_staff(Role::Admin).await;
    let (a, ac) = app.signed_in_staff(Role::Staff).await;
    let (b, bc) = app.signed_in_staff(Role::Staff).await;
    let (c, cc) = app.signed_in_staff(Role::Clinician).await;
    let (d, dc) = app.signed_in_staff(Role::Auditor).await;
    let restricted = app
        .create_patient(
            &app.token,
            &patient_body("Rosalind", Some("MRN-ROS-1"), "+13125550123"),
        )
        .await;
    let plain = app
        .create_patient(
            &app.token,
            &patient_body("Ulrich", Some("MRN-ULR-1"), "+13125550124"),
        )
        .await;
    let r = app
        .send(
            Req::put(format!("/api/v1/patients/{restricted}/restriction"))
                .cookie(&admin)
                .same_origin()
                .json(&json!({"restricted": true, "users": [a.id]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    Restricted {
        app,
        admin,
        a: (a.id, ac),
        b: (b.id, bc),
        c: (c.id, cc),
        d: (d.id, dc),
        restricted,
        plain,
    }
}

#[tokio::test]
async fn a_restricted_patient_is_seen_only_by_the_people_named_on_it() {
    for db in TestDatabase::all().await {
        let w = restricted_world(db).await;
        let app = &w.app;
        let restrict_row = app
            .practice_audit()
            .await
            .into_iter()
            .rfind(|r| r.action == "patient.restrict")
            .expect("audited");
        assert_eq!(
            (restrict_row.outcome.as_str(), restrict_row.targets.clone()),
            ("success", vec![w.restricted.clone()])
        );
        // Naming someone from another practice is refused, and changes nothing.
        let stranger = app.passwordless_user(app.other, Role::Staff).await;
        let r = app
            .send(
                Req::put(format!("/api/v1/patients/{}/restriction", w.plain))
                    .cookie(&w.admin)
                    .same_origin()
                    .json(&json!({"restricted": true, "users": [stranger]})),
            )
            .await;
        assert!(r.status.is_client_error(), "{}", r.text);

        let read = |cookie: &str, id: &str| {
            app.send(Req::get(format!("/api/v1/patients/{id}")).cookie(cookie))
        };
        let list = async |cookie: &str| {
            app.send(Req::get("/api/v1/patients").cookie(cookie))
                .await
                .patient_ids()
        };
        let search = async |cookie: &str, query: &str| {
            app.send(
                Req::post("/api/v1/patients/search")
                    .cookie(cookie)
                    .same_origin()
                    .json(&json!({ "query": query })),
            )
            .await
            .patient_ids()
        };
        let both = BTreeSet::from([w.restricted.clone(), w.plain.clone()]);
        let only_plain = BTreeSet::from([w.plain.clone()]);
        let set = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<_>>();

        // A, named: reads it, lists it, finds it.
        let r = read(&w.a.1, &w.restricted).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["given_name"], "Rosalind");
        assert_eq!(set(list(&w.a.1).await), both);
        assert_eq!(search(&w.a.1, "Rosalind").await, vec![w.restricted.clone()]);
        assert_eq!(set(search(&w.a.1, "Quintanilla").await), both);

        // B, staff not named: the patient does not exist, as far as B can tell.
        let r = read(&w.b.1, &w.restricted).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        let nobody = read(&w.b.1, &uuid::Uuid::now_v7().to_string()).await;
        assert_eq!(
            r.problem_without_request_id(),
            nobody.problem_without_request_id(),
            "restricted looks like no such patient"
        );
        let r = app
            .send(
                Req::patch(format!("/api/v1/patients/{}", w.restricted))
                    .cookie(&w.b.1)
                    .same_origin()
                    .json(&json!({"preferred_language": "fr"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(set(list(&w.b.1).await), only_plain);
        assert!(search(&w.b.1, "Rosalind").await.is_empty());
        assert_eq!(set(search(&w.b.1, "Quintanilla").await), only_plain);

        // C, a clinician not named: told that opening it needs a reason (break-glass).
        let r = read(&w.c.1, &w.restricted).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.problem_type(), "urn:salve:problem:break-glass-required");
        let r = app
            .send(
                Req::patch(format!("/api/v1/patients/{}", w.restricted))
                    .cookie(&w.c.1)
                    .same_origin()
                    .json(&json!({"preferred_language": "fr"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.problem_type(), "urn:salve:problem:break-glass-required");
        assert_eq!(set(list(&w.c.1).await), only_plain);
        assert!(search(&w.c.1, "Rosalind").await.is_empty());

        // D, an auditor: no patient content at all, refused at the gate.
        assert_eq!(
            read(&w.d.1, &w.restricted).await.status,
            StatusCode::FORBIDDEN
        );

        // An integration token acts for the practice's systems of record: it sees everything.
        let r = app
            .send(Req::get(format!("/api/v1/patients/{}", w.restricted)).bearer(&app.token))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app
            .send(Req::get("/api/v1/patients").bearer(&app.token))
            .await;
        assert_eq!(set(r.patient_ids()), both);
        let r = app
            .send(
                Req::post("/api/v1/patients/search")
                    .bearer(&app.token)
                    .json(&json!({"query": "Rosalind"})),
            )
            .await;
        assert_eq!(r.patient_ids(), vec![w.restricted.clone()]);
        let patient = app
            .send(Req::get(format!("/api/v1/patients/{}", w.restricted)).bearer(&app.token))
            .await;
        assert_eq!(
            patient.json()["version"],
            1,
            "B's and C's changes were refused"
        );

        // Every refusal is audited: the read (or update) with outcome `denied`, or the
        // gate's `access.denied`; and lists record only what they showed.
        let rows = app.practice_audit().await;
        for (user, who) in [(w.b.0, "B"), (w.c.0, "C")] {
            let mine = by(&rows, user);
            let denied_read = mine.iter().any(|r| {
                r.action == "patient.read"
                    && r.outcome == "denied"
                    && r.targets == [w.restricted.clone()]
            });
            assert!(denied_read, "{who}'s read is audited as denied");
            let denied_update = mine.iter().any(|r| {
                r.action == "patient.update"
                    && r.outcome == "denied"
                    && r.targets == [w.restricted.clone()]
            });
            assert!(denied_update, "{who}'s update is audited as denied");
            for shown in mine
                .iter()
                .filter(|r| matches!(r.action.as_str(), "patient.list" | "patient.search"))
            {
                assert!(!shown.targets.contains(&w.restricted), "{who}: {shown:?}");
            }
        }
        assert_eq!(count(&by(&rows, w.d.0), "access.denied", "denied"), 1);
        assert!(
            by(&rows, w.a.0)
                .iter()
                .any(|r| r.action == "patient.read" && r.outcome == "success")
        );
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_restricted_patient_stays_out_of_lookups_by_people_not_named() {
    for db in TestDatabase::all().await {
        let w = restricted_world(db).await;
        let app = &w.app;
        let lookup = async |req: Req, body: Value| {
            let r = app.send(req.json(&body)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.patient_ids()
        };
        let as_cookie = |cookie: &str| {
            Req::post("/api/v1/patients/lookup")
                .cookie(cookie)
                .same_origin()
        };
        let by_token = || Req::post("/api/v1/patients/lookup").bearer(&app.token);
        for body in [
            json!({"mrn": "MRN-ROS-1"}),
            json!({"phone": "+13125550123"}),
            json!({"email": "rosalind@example.org"}),
        ] {
            let expect = vec![w.restricted.clone()];
            assert_eq!(
                lookup(as_cookie(&w.a.1), body.clone()).await,
                expect,
                "A: {body}"
            );
            assert_eq!(
                lookup(by_token(), body.clone()).await,
                expect,
                "token: {body}"
            );
            assert_eq!(
                lookup(as_cookie(&w.b.1), body.clone()).await,
                Vec::<String>::new(),
                "B: {body}"
            );
            assert_eq!(
                lookup(as_cookie(&w.c.1), body.clone()).await,
                Vec::<String>::new(),
                "C: {body}"
            );
        }
        let rows = app.practice_audit().await;
        for user in [w.b.0, w.c.0] {
            for shown in by(&rows, user)
                .iter()
                .filter(|r| r.action == "patient.lookup")
            {
                assert!(!shown.targets.contains(&w.restricted), "{shown:?}");
            }
        }
    }
}

// ---- 8. another practice's ids ------------------------------------------------------------

#[tokio::test]
async fn another_practices_users_and_patients_answer_404_and_stay_unchanged() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (_, admin) = app.signed_in_staff(Role::Admin).await;
        let mut victim = app.staff(app.other, Role::Staff).await;
        let victims = app.enroll(&mut victim).await;
        let as_admin = |req: Req| app.send(req.cookie(&admin).same_origin());
        let other_chain_before = app.audit(&app.other.to_string()).await.len();

        // Users: role changes and MFA resets of another practice's member.
        let not_found = |r: &common::Reply| {
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
            r.problem_without_request_id()
        };
        let missing = uuid::Uuid::now_v7().to_string();
        for (id, what) in [
            (victim.id.to_string(), "another practice's user"),
            (missing.clone(), "no such user"),
            ("not-a-uuid".to_owned(), "a malformed id"),
        ] {
            let role = as_admin(
                Req::put(format!("/api/v1/users/{id}/role")).json(&json!({"role": "admin"})),
            )
            .await;
            let reset = as_admin(Req::post(format!("/api/v1/users/{id}/mfa-reset"))).await;
            let expected = json!({
                "type": "urn:salve:problem:not-found",
                "title": "Not found",
                "status": 404,
                "detail": "no user with this id in your practice"
            });
            assert_eq!(not_found(&role), expected, "{what}");
            assert_eq!(not_found(&reset), expected, "{what}");
        }
        let r = as_admin(Req::get("/api/v1/users")).await;
        let listed: Vec<String> = r.json()["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed.len(), 1, "only the admin: {listed:?}");
        assert!(!listed.contains(&victim.id.to_string()));
        assert_eq!(
            app.store.role_in(victim.id, app.other).await.unwrap(),
            Some(Role::Staff)
        );
        let r = app.send(Req::get("/api/v1/session").cookie(&victims)).await;
        assert_eq!(r.status, StatusCode::OK, "the victim's session lives on");
        assert_eq!(app.end_reasons(victim.id).await, vec![None]);
        let victim_row = app.audit(&app.other.to_string()).await;
        assert_eq!(
            victim_row.len(),
            other_chain_before,
            "nothing happened there"
        );

        // Signing in to another practice than one's own is a plain failure.
        let mine = app.staff(app.practice, Role::Staff).await;
        let r = app
            .send(Req::post("/api/v1/session").same_origin().json(&json!({
                "email": mine.email,
                "password": PASSWORD,
                "practice_id": app.other.to_string()
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["detail"], "the email or password is incorrect");

        // Patients: read, change, restrict, by staff and by token.
        let theirs = app
            .create_patient(
                &app.other_token,
                &patient_body("Otto", Some("MRN-OTTO-1"), "+13125550150"),
            )
            .await;
        let calls = |id: &str| {
            vec![
                Req::get(format!("/api/v1/patients/{id}")),
                Req::patch(format!("/api/v1/patients/{id}"))
                    .json(&json!({"given_name": "Mallory"})),
                Req::put(format!("/api/v1/patients/{id}/restriction"))
                    .json(&json!({"restricted": true, "users": []})),
            ]
        };
        for (i, req) in calls(&theirs).into_iter().enumerate() {
            let staff = as_admin(req.clone()).await;
            assert_eq!(
                staff.status,
                StatusCode::NOT_FOUND,
                "call {i}: {}",
                staff.text
            );
            if i < 2 {
                let token = app.send(req.bearer(&app.token)).await;
                assert_eq!(
                    token.status,
                    StatusCode::NOT_FOUND,
                    "call {i}: {}",
                    token.text
                );
            }
        }
        let r = app
            .send(Req::get(format!("/api/v1/patients/{theirs}")).bearer(&app.other_token))
            .await;
        assert_eq!(r.json()["given_name"], "Otto");
        assert_eq!(r.json()["version"], 1);
        // Naming another practice's member on one of ours is refused too.
        let ours = app
            .create_patient(
                &app.token,
                &patient_body("Paula", Some("MRN-PAULA-1"), "+13125550151"),
            )
            .await;
        let r = as_admin(
            Req::put(format!("/api/v1/patients/{ours}/restriction"))
                .json(&json!({"restricted": true, "users": [victim.id]})),
        )
        .await;
        assert!(r.status.is_client_error(), "{}", r.text);
        let r = as_admin(Req::get(format!("/api/v1/patients/{ours}"))).await;
        assert_eq!(r.status, StatusCode::OK, "still unrestricted");
    }
}

// ---- 9. disabling staff in one practice, and their sessions --------------------------------

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

#[tokio::test]
async fn disabling_is_per_practice_ends_sessions_there_and_spares_yourself_and_the_last_admin() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (admin, admins) = app.signed_in_staff(Role::Admin).await;
        let as_admin = |req: Req| app.send(req.cookie(&admins).same_origin());
        let (nurse, nurses) = app.signed_in_staff(Role::Staff).await;
        // The nurse also works for the other practice, with a live session there.
        let token: [u8; 32] = rand::random();
        let (same, new_account) = app
            .store
            .invite_user(
                &Actor::Cli,
                &RequestContext::default(),
                app.other,
                &salve_core::Sensitive::new(nurse.email.clone()),
                &salve_core::Sensitive::new("Nurse".to_owned()),
                Role::Clinician,
                &token,
                3600,
            )
            .await
            .unwrap();
        assert!(same == nurse.id && !new_account);
        let elsewhere = app
            .raw_session(nurse.id, app.other, SessionStage::Active)
            .await;

        let r = as_admin(Req::post(format!("/api/v1/users/{}/disable", nurse.id))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        // Out of this practice: the session here is dead, the other practice's lives on.
        let r = app.send(Req::get("/api/v1/users").cookie(&nurses)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        let r = app
            .send(Req::get("/api/v1/users").cookie(&elsewhere).same_origin())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let reasons = app.end_reasons(nurse.id).await;
        assert!(
            reasons.contains(&Some("disabled".to_owned())),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&None),
            "the other practice's session: {reasons:?}"
        );
        assert_eq!(
            app.store.role_in(nurse.id, app.other).await.unwrap(),
            Some(Role::Clinician)
        );
        let listed = as_admin(Req::get("/api/v1/users")).await.json();
        let row = listed["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == nurse.id.to_string())
            .unwrap()
            .clone();
        assert_eq!(row["disabled"], true, "{row}");
        // Signing in to this practice fails like a wrong password; the other practice is
        // still open (and now the only one, so it needs no choice).
        let r = app
            .send(Req::post("/api/v1/session").same_origin().json(&json!({
                "email": nurse.email, "password": PASSWORD, "practice_id": app.practice.to_string()
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        let r = app.sign_in(&nurse.email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // Refusals, each a clear problem and a denied audit row; nothing changes.
        let r = as_admin(Req::post(format!("/api/v1/users/{}/disable", admin.id))).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert_eq!(
            r.problem_type(),
            "urn:salve:problem:cannot-disable-yourself"
        );
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("your own account")
        );
        let verdict = app
            .store
            .disable_member(
                &Actor::Cli,
                &RequestContext::default(),
                app.practice,
                admin.id,
            )
            .await
            .unwrap();
        assert_eq!(
            verdict,
            Err(salve_core::staff_access::DisableRefusal::LastAdmin)
        );
        assert_eq!(
            app.store.role_in(admin.id, app.practice).await.unwrap(),
            Some(Role::Admin)
        );
        let r = as_admin(Req::get("/api/v1/users")).await;
        assert_eq!(r.status, StatusCode::OK, "the admin still works");
        let other_member = app.staff(app.other, Role::Staff).await;
        for id in [other_member.id.to_string(), "not-a-uuid".to_owned()] {
            let r = as_admin(Req::post(format!("/api/v1/users/{id}/disable"))).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        }
        // Front desk cannot disable anyone.
        let (_, desk) = app.signed_in_staff(Role::Staff).await;
        let r = app
            .send(
                Req::post(format!("/api/v1/users/{}/enable", nurse.id))
                    .cookie(&desk)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // Enabled again: they may sign in to this practice.
        let r = as_admin(Req::post(format!("/api/v1/users/{}/enable", nurse.id))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(
            app.store.role_in(nurse.id, app.practice).await.unwrap(),
            Some(Role::Staff)
        );
        let r = app
            .send(Req::post("/api/v1/session").same_origin().json(&json!({
                "email": nurse.email, "password": PASSWORD, "practice_id": app.practice.to_string()
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        let audit = app.practice_audit().await;
        let on = |action: &str, outcome: &str| {
            audit
                .iter()
                .filter(|a| {
                    a.action == action
                        && a.outcome == outcome
                        && a.targets.contains(&nurse.id.to_string())
                })
                .count()
        };
        assert_eq!(on("user.disable", "success"), 1);
        assert_eq!(on("user.enable", "success"), 1);
        assert_eq!(count(&by(&audit, admin.id), "user.disable", "denied"), 1);
        assert_eq!(count(&audit, "user.disable", "denied"), 2, "the CLI's too");
        assert!(
            app.audit(&app.other.to_string())
                .await
                .iter()
                .all(|a| a.action != "user.disable"),
            "the other practice's chain is untouched"
        );
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn admins_see_and_end_a_members_sessions_and_members_their_own() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let (admin, admins) = app.signed_in_staff(Role::Admin).await;
        let as_admin = |req: Req| app.send(req.cookie(&admins).same_origin());
        let (mut nurse, first) = app.signed_in_staff(Role::Clinician).await;
        // A second sign-in from Firefox.
        app.next_step();
        let r = app
            .send(
                Req::post("/api/v1/session")
                    .same_origin()
                    .header("user-agent", FIREFOX)
                    .json(&json!({"email": nurse.email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let pending = r.session_token().unwrap();
        let r = app
            .send(
                Req::post("/api/v1/session/mfa")
                    .cookie(&pending)
                    .same_origin()
                    .json(&json!({ "code": app.totp_code(&nurse) })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        nurse.last_step = Some(app.step());
        let second = r.session_token().unwrap();
        app.advance(Duration::minutes(1));

        let r = as_admin(Req::get(format!("/api/v1/users/{}/sessions", nurse.id))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let sessions = r.json()["sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(sessions[0]["client"], "Firefox on Linux", "newest first");
        assert_eq!(sessions[1]["client"], "Unknown browser");
        assert!(!r.text.contains("127.0.0.") && !r.text.contains("rv:133"));
        assert!(sessions.iter().all(|s| s["current"] == false));

        // The member sees their own, the current one marked, and ends the other one.
        let r = app
            .send(
                Req::get("/api/v1/session/sessions")
                    .cookie(&first)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let own = r.json()["sessions"].as_array().unwrap().clone();
        assert_eq!(own.len(), 2);
        assert_eq!(own[1]["current"], true);
        let firefox = own[0]["id"].as_str().unwrap().to_owned();
        let r = app
            .send(
                Req::delete(format!("/api/v1/session/sessions/{firefox}"))
                    .cookie(&first)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = app.send(Req::get("/api/v1/session").cookie(&second)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "ended");
        // Not someone else's session: the admin's is not found through the member's list.
        let admin_session = as_admin(Req::get(format!("/api/v1/users/{}/sessions", admin.id)))
            .await
            .json()["sessions"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .send(
                Req::delete(format!("/api/v1/session/sessions/{admin_session}"))
                    .cookie(&first)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

        // The admin ends one, then all.
        let r = app.sign_in_with_code(&mut nurse).await;
        let r2 = as_admin(Req::get(format!("/api/v1/users/{}/sessions", nurse.id))).await;
        let ids: Vec<String> = r2.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 2);
        let r3 = as_admin(Req::delete(format!(
            "/api/v1/users/{}/sessions/{}",
            nurse.id, ids[0]
        )))
        .await;
        assert_eq!(r3.status, StatusCode::NO_CONTENT, "{}", r3.text);
        let alive = app.send(Req::get("/api/v1/session").cookie(&r)).await;
        assert_eq!(alive.status, StatusCode::UNAUTHORIZED, "the newest ended");
        let r4 = as_admin(Req::post(format!(
            "/api/v1/users/{}/sessions/end-all",
            nurse.id
        )))
        .await;
        assert_eq!(r4.status, StatusCode::NO_CONTENT, "{}", r4.text);
        let alive = app.send(Req::get("/api/v1/session").cookie(&first)).await;
        assert_eq!(alive.status, StatusCode::UNAUTHORIZED);
        let r = as_admin(Req::get(format!("/api/v1/users/{}/sessions", nurse.id))).await;
        assert_eq!(r.json()["sessions"].as_array().unwrap().len(), 0);
        let reasons = app.end_reasons(nurse.id).await;
        assert_eq!(
            reasons
                .iter()
                .filter(|r| r.as_deref() == Some("ended_by_admin"))
                .count(),
            2,
            "{reasons:?}"
        );

        let audit = by(&app.practice_audit().await, admin.id);
        assert_eq!(count(&audit, "session.list", "success"), 4);
        assert_eq!(count(&audit, "session.end", "success"), 1);
        assert_eq!(count(&audit, "session.revoke_all", "success"), 1);
        // Members without the right see nobody's sessions.
        let (_, desk) = app.signed_in_staff(Role::Staff).await;
        let r = app
            .send(
                Req::get(format!("/api/v1/users/{}/sessions", admin.id))
                    .cookie(&desk)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
}
