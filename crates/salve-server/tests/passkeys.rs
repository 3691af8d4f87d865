//! Staff passkeys (WebAuthn), with real ceremonies run by a software authenticator
//! (`webauthn-authenticator-rs`'s `SoftPasskey`): registering one after sign-in, using it as
//! the second factor or instead of password and code, ceremony expiry and single use, another
//! user's passkeys, removal, and the audit trail. SQLite always; PostgreSQL too when
//! `SALVE_TEST_POSTGRES_URL` is set.

mod common;

use axum::http::StatusCode;
use common::{App, Req, Staff, count};
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::Duration;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// The server is configured to listen on this port, so its relying party is
/// `http://localhost:8080` (what the demo serves).
const ORIGIN: &str = "http://localhost:8080";

async fn app(db: TestDatabase) -> App {
    App::with_config(db, |c| c.listen = "127.0.0.1:8080".parse().unwrap()).await
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// A software passkey that performs user verification.
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// Registers a new passkey on `key` for the signed-in `cookie`; returns the passkey's id.
async fn register(app: &App, cookie: &str, key: &mut SoftPasskey) -> String {
    let r = app
        .send(
            Req::post("/api/v1/session/passkeys/register")
                .cookie(cookie)
                .same_origin(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let challenge: CreationChallengeResponse =
        serde_json::from_value(r.json()["options"].clone()).unwrap();
    let credential = key.do_registration(origin(), challenge).unwrap();
    let r = app
        .send(
            Req::post("/api/v1/session/passkeys/register/finish")
                .cookie(cookie)
                .same_origin()
                .json(&json!({
                    "ceremony_id": r.json()["ceremony_id"],
                    "credential": credential,
                })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The authenticator's answer to a request challenge (`{ceremony_id, options}`), as the
/// finish body.
fn answer(key: &mut SoftPasskey, challenge: &Value) -> Value {
    let options: RequestChallengeResponse =
        serde_json::from_value(challenge["options"].clone()).unwrap();
    let credential = key.do_authentication(origin(), options).unwrap();
    json!({ "ceremony_id": challenge["ceremony_id"], "credential": credential })
}

/// Password accepted; returns the half-signed-in session's token.
async fn password_step(app: &App, staff: &Staff) -> String {
    let r = app.sign_in(&staff.email, &staff.password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["stage"], "mfa");
    r.session_token().unwrap()
}

async fn mfa_challenge(app: &App, pending: &str) -> Value {
    let r = app
        .send(
            Req::post("/api/v1/session/mfa/passkey")
                .cookie(pending)
                .same_origin(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn mfa_finish(app: &App, pending: &str, body: &Value) -> common::Reply {
    app.send(
        Req::post("/api/v1/session/mfa/passkey/finish")
            .cookie(pending)
            .same_origin()
            .json(body),
    )
    .await
}

async fn passwordless_challenge(app: &App, email: &str) -> Value {
    let r = app
        .send(
            Req::post("/api/v1/session/passkey")
                .same_origin()
                .json(&json!({ "email": email })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn passwordless_finish(app: &App, body: &Value) -> common::Reply {
    app.send(
        Req::post("/api/v1/session/passkey/finish")
            .same_origin()
            .json(body),
    )
    .await
}

async fn session_stage(app: &App, cookie: &str) -> (StatusCode, Value) {
    let r = app.send(Req::get("/api/v1/session").cookie(cookie)).await;
    (r.status, r.json())
}

async fn list(app: &App, cookie: &str) -> Vec<Value> {
    let r = app
        .send(Req::get("/api/v1/session/passkeys").cookie(cookie))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["passkeys"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_registered_passkey_is_a_second_factor_and_a_sign_in_of_its_own() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (staff, cookie) = app.signed_in_staff(Role::Clinician).await;
        let mut key = authenticator();

        // Registered after sign-in; listed without a use yet.
        let id = register(&app, &cookie, &mut key).await;
        let listed = list(&app, &cookie).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], id.as_str());
        assert!(listed[0]["last_used_at"].is_null());

        // Password, then the passkey as the second factor; the sign-in names both factors.
        let r = app.sign_in(&staff.email, &staff.password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stage"], "mfa");
        assert_eq!(r.json()["factors"], json!(["totp", "passkey"]));
        let pending = r.session_token().unwrap();
        let challenge = mfa_challenge(&app, &pending).await;
        let r = mfa_finish(&app, &pending, &answer(&mut key, &challenge)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stage"], "active");
        let active = r.session_token().unwrap();
        assert_ne!(active, pending, "the token is swapped");
        let (status, session) = session_stage(&app, &active).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(session["stage"], "active");
        let used = list(&app, &active).await;
        assert!(used[0]["last_used_at"].is_string(), "{used:?}");

        // Passwordless: the passkey alone, a few times (its counter is kept up to date).
        for _ in 0..2 {
            app.advance(Duration::seconds(1));
            let challenge = passwordless_challenge(&app, &staff.email).await;
            let r = passwordless_finish(&app, &answer(&mut key, &challenge)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.json()["stage"], "active");
            let token = r.session_token().unwrap();
            let (status, session) = session_stage(&app, &token).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(session["user_id"], staff.id.to_string());
            assert_eq!(session["practice_id"], app.practice.to_string());
        }

        // The stored credential follows the authenticator's signature counter (one
        // registration, three assertions).
        let stored = app.store.passkeys(staff.id).await.unwrap();
        let credential: Value = serde_json::from_slice(&stored[0].credential).unwrap();
        assert_eq!(credential["cred"]["counter"], 3, "{credential}");

        let audit = app.practice_audit().await;
        let mine: Vec<_> = audit
            .iter()
            .filter(|r| r.actor_id == staff.id.to_string())
            .cloned()
            .collect();
        assert_eq!(count(&mine, "user.passkey.register", "success"), 1);
        // Enrolment, the passkey second factor, two passwordless sign-ins.
        assert_eq!(count(&mine, "auth.sign_in", "success"), 4);
        assert!(
            mine.iter()
                .any(|r| r.action == "user.passkey.register" && r.targets.contains(&id))
        );
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn an_unknown_account_gets_a_challenge_of_the_same_shape_that_nothing_answers() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (staff, cookie) = app.signed_in_staff(Role::Staff).await;
        let mut key = authenticator();
        register(&app, &cookie, &mut key).await;

        let known = passwordless_challenge(&app, &staff.email).await;
        let unknown = passwordless_challenge(&app, "nobody@lakeside.example").await;
        let shape = |v: &Value| {
            let mut keys: Vec<String> = v["options"]["publicKey"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            keys.sort();
            (v.as_object().unwrap().len(), keys)
        };
        assert_eq!(shape(&known), shape(&unknown));
        assert_eq!(
            unknown["options"]["publicKey"]["allowCredentials"],
            json!([])
        );
        // A real answer (to the known account's challenge) does not open the unknown one.
        let mut body = answer(&mut key, &known);
        body["ceremony_id"] = unknown["ceremony_id"].clone();
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.problem_type(), "urn:salve:problem:sign-in-failed");
        assert!(r.session_token().is_none());
    }
}

#[tokio::test]
async fn a_ceremony_expires_after_five_minutes_and_is_used_once() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (staff, cookie) = app.signed_in_staff(Role::Staff).await;
        let mut key = authenticator();

        // Registration: a challenge answered too late is refused, and nothing is stored.
        let r = app
            .send(
                Req::post("/api/v1/session/passkeys/register")
                    .cookie(&cookie)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let challenge: CreationChallengeResponse =
            serde_json::from_value(r.json()["options"].clone()).unwrap();
        let credential = key.do_registration(origin(), challenge).unwrap();
        app.advance(Duration::minutes(5) + Duration::seconds(1));
        let late = app
            .send(
                Req::post("/api/v1/session/passkeys/register/finish")
                    .cookie(&cookie)
                    .same_origin()
                    .json(
                        &json!({"ceremony_id": r.json()["ceremony_id"], "credential": credential}),
                    ),
            )
            .await;
        assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.text);
        assert!(list(&app, &cookie).await.is_empty());

        let mut key = authenticator();
        register(&app, &cookie, &mut key).await;

        // Passwordless: late is refused; on time works once, and the same answer again fails.
        let challenge = passwordless_challenge(&app, &staff.email).await;
        let body = answer(&mut key, &challenge);
        app.advance(Duration::minutes(5) + Duration::seconds(1));
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        let challenge = passwordless_challenge(&app, &staff.email).await;
        let body = answer(&mut key, &challenge);
        app.advance(Duration::minutes(4));
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert!(r.session_token().is_none());

        // Second factor: late is refused (the session stays half signed in); used once.
        app.next_step();
        let pending = password_step(&app, &staff).await;
        let challenge = mfa_challenge(&app, &pending).await;
        let body = answer(&mut key, &challenge);
        app.advance(Duration::minutes(5) + Duration::seconds(1));
        let r = mfa_finish(&app, &pending, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(session_stage(&app, &pending).await.1["stage"], "mfa");
        let challenge = mfa_challenge(&app, &pending).await;
        let body = answer(&mut key, &challenge);
        let r = mfa_finish(&app, &pending, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let pending = password_step(&app, &staff).await;
        let r = mfa_finish(&app, &pending, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

        // The refusals are audited as failed sign-ins.
        let audit = app.practice_audit().await;
        let mine: Vec<_> = audit
            .iter()
            .filter(|r| r.actor_id == staff.id.to_string())
            .cloned()
            .collect();
        assert!(count(&mine, "auth.sign_in", "failure") >= 3);
    }
}

#[tokio::test]
async fn another_users_passkey_is_neither_found_nor_accepted() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (alice, alice_cookie) = app.signed_in_staff(Role::Staff).await;
        let (bob, bob_cookie) = app.signed_in_staff(Role::Staff).await;
        let mut alice_key = authenticator();
        let mut bob_key = authenticator();
        register(&app, &alice_cookie, &mut alice_key).await;
        let bob_passkey = register(&app, &bob_cookie, &mut bob_key).await;

        // Alice cannot remove (or see) Bob's passkey.
        let r = app
            .send(
                Req::delete(format!("/api/v1/session/passkeys/{bob_passkey}"))
                    .cookie(&alice_cookie)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(list(&app, &bob_cookie).await.len(), 1);
        assert!(
            list(&app, &alice_cookie)
                .await
                .iter()
                .all(|p| p["id"] != bob_passkey.as_str())
        );

        // Bob's authenticator answering Bob's challenge does not finish Alice's sign-in.
        let pending = password_step(&app, &alice).await;
        let alice_challenge = mfa_challenge(&app, &pending).await;
        let bob_challenge = passwordless_challenge(&app, &bob.email).await;
        let mut body = answer(&mut bob_key, &bob_challenge);
        body["ceremony_id"] = alice_challenge["ceremony_id"].clone();
        let r = mfa_finish(&app, &pending, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(session_stage(&app, &pending).await.1["stage"], "mfa");

        // Nor Alice's passwordless sign-in.
        let alice_challenge = passwordless_challenge(&app, &alice.email).await;
        let bob_challenge = passwordless_challenge(&app, &bob.email).await;
        let mut body = answer(&mut bob_key, &bob_challenge);
        body["ceremony_id"] = alice_challenge["ceremony_id"].clone();
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

        // A ceremony started by one session cannot be finished by another.
        let pending = password_step(&app, &alice).await;
        let challenge = mfa_challenge(&app, &pending).await;
        let body = answer(&mut alice_key, &challenge);
        let other_pending = password_step(&app, &alice).await;
        let r = mfa_finish(&app, &other_pending, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
}

#[tokio::test]
async fn a_removed_passkey_no_longer_signs_in() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (staff, cookie) = app.signed_in_staff(Role::Admin).await;
        let mut key = authenticator();
        let id = register(&app, &cookie, &mut key).await;

        // A challenge issued before the removal is answered after it.
        let challenge = passwordless_challenge(&app, &staff.email).await;
        let body = answer(&mut key, &challenge);
        let r = app
            .send(
                Req::delete(format!("/api/v1/session/passkeys/{id}"))
                    .cookie(&cookie)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert!(list(&app, &cookie).await.is_empty());
        let r = passwordless_finish(&app, &body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

        // Now the account offers no passkey: TOTP only, and no passkey challenge.
        let pending = password_step(&app, &staff).await;
        let r = app.sign_in(&staff.email, &staff.password).await;
        assert_eq!(r.json()["factors"], json!(["totp"]));
        let r = app
            .send(
                Req::post("/api/v1/session/mfa/passkey")
                    .cookie(&pending)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let challenge = passwordless_challenge(&app, &staff.email).await;
        assert_eq!(
            challenge["options"]["publicKey"]["allowCredentials"],
            json!([])
        );

        // Removing it again: not found.
        let r = app
            .send(
                Req::delete(format!("/api/v1/session/passkeys/{id}"))
                    .cookie(&cookie)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

        let audit = app.practice_audit().await;
        let mine: Vec<_> = audit
            .iter()
            .filter(|r| r.actor_id == staff.id.to_string())
            .cloned()
            .collect();
        assert_eq!(count(&mine, "user.passkey.register", "success"), 1);
        assert_eq!(count(&mine, "user.passkey.remove", "success"), 1);
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn passwordless_failures_count_against_the_account_like_password_failures() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let (staff, cookie) = app.signed_in_staff(Role::Staff).await;
        let (other, other_cookie) = app.signed_in_staff(Role::Staff).await;
        let mut key = authenticator();
        let mut other_key = authenticator();
        register(&app, &cookie, &mut key).await;
        register(&app, &other_cookie, &mut other_key).await;

        // Three refused answers, each from a different address.
        for _ in 0..3 {
            let mine = passwordless_challenge(&app, &staff.email).await;
            let theirs = passwordless_challenge(&app, &other.email).await;
            let mut body = answer(&mut other_key, &theirs);
            body["ceremony_id"] = mine["ceremony_id"].clone();
            let r = passwordless_finish(&app, &body).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        }
        // The account now waits, whichever way it signs in.
        let r = app
            .send(
                Req::post("/api/v1/session/passkey")
                    .same_origin()
                    .json(&json!({ "email": staff.email })),
            )
            .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        assert!(r.retry_after().is_some());
        let r = app.sign_in(&staff.email, &staff.password).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
        // After the delay, the passkey works again and clears the account's count.
        app.advance(Duration::seconds(2));
        let challenge = passwordless_challenge(&app, &staff.email).await;
        let r = passwordless_finish(&app, &answer(&mut key, &challenge)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // Refusals are audited as failed sign-ins of the account's practice.
        let audit = app.practice_audit().await;
        let failures = audit
            .iter()
            .filter(|r| r.actor_id == staff.id.to_string())
            .filter(|r| r.action == "auth.sign_in" && r.outcome == "failure")
            .count();
        assert_eq!(failures, 3);
    }
}

#[tokio::test]
async fn one_address_gets_a_bounded_number_of_passwordless_challenges() {
    let app = app(TestDatabase::sqlite()).await;
    let address: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let ask = |email: &'static str| {
        app.send(
            Req::post("/api/v1/session/passkey")
                .same_origin()
                .client_ip(address)
                .json(&json!({ "email": email })),
        )
    };
    for _ in 0..30 {
        assert_eq!(ask("someone@lakeside.example").await.status, StatusCode::OK);
    }
    let refused = ask("someone-else@lakeside.example").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.retry_after().is_some());
    // Another address is not affected.
    let other = app
        .send(
            Req::post("/api/v1/session/passkey")
                .same_origin()
                .json(&json!({ "email": "someone@lakeside.example" })),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn the_account_page_lists_passkeys_offers_to_add_one_and_removes_one() {
    let app = app(TestDatabase::sqlite()).await;
    let (_, cookie) = app.signed_in_staff(Role::Clinician).await;
    const CSRF: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
    let page = |req: Req| {
        req.header(
            "cookie",
            format!("{}={cookie}; salve_csrf={CSRF}", salve_server::COOKIE),
        )
        .same_origin()
    };
    let r = app.send(page(Req::get("/account"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("You have no passkeys yet."));
    assert!(r.text.contains("id=\"passkey-register\""));
    assert!(
        r.text
            .contains("<script src=\"/static/passkey.js\" defer></script>")
    );
    assert!(!r.text.contains("<script>"), "no inline script");
    let js = app.send(Req::get("/static/passkey.js")).await.text;
    assert!(js.contains("navigator.credentials.create(creationOptions(r.json.options))"));
    assert!(js.contains("\"/api/v1/session/passkeys/register/finish\""));

    // Registered (by the API, as the script does): listed with a remove form.
    let mut key = authenticator();
    let id = register(&app, &cookie, &mut key).await;
    let r = app.send(page(Req::get("/account"))).await;
    let action = format!("action=\"/account/passkeys/{id}/remove\"");
    assert!(r.text.contains(&action), "{}", r.text);
    assert!(r.text.contains("Never"));

    // Without the form's token: refused; with it: removed, through the API's audit.
    let path = format!("/account/passkeys/{id}/remove");
    let r = app.send(page(Req::post(&path)).form("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .send(page(Req::post(&path)).form(&format!("csrf={CSRF}")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("The passkey was removed."));
    assert!(!r.text.contains(&action));
    let r = app
        .send(page(Req::post(&path)).form(&format!("csrf={CSRF}")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        count(
            &app.practice_audit().await,
            "user.passkey.remove",
            "success"
        ),
        1
    );

    // Signed out: to the sign-in page.
    let r = app.send(Req::get("/account")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_account_page_lists_ones_own_sessions_and_signs_out_another_device() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let mut staff = app.staff(app.practice, Role::Staff).await;
        let laptop = app.signed_in(&mut staff).await;
        app.next_step();
        let phone = app.signed_in(&mut staff).await;
        const CSRF: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
        let page = |req: Req| {
            req.header(
                "cookie",
                format!("{}={laptop}; salve_csrf={CSRF}", salve_server::COOKIE),
            )
            .same_origin()
        };
        let r = app.send(page(Req::get("/account"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.text.matches("(this session)").count(), 1, "{}", r.text);
        let sessions = app
            .send(Req::get("/api/v1/session/sessions").cookie(&laptop))
            .await
            .json();
        let other = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == false)
            .expect("the phone's session")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/account/sessions/{other}/end");
        assert!(r.text.contains(&format!("action=\"{path}\"")), "{}", r.text);

        // Without the form's token: refused, the phone still signed in.
        let r = app.send(page(Req::post(&path)).form("")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let still = app.send(Req::get("/api/v1/session").cookie(&phone)).await;
        assert_eq!(still.status, StatusCode::OK);

        let r = app
            .send(page(Req::post(&path)).form(&format!("csrf={CSRF}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("That session was signed out."));
        let gone = app.send(Req::get("/api/v1/session").cookie(&phone)).await;
        assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
        let mine = app.send(Req::get("/api/v1/session").cookie(&laptop)).await;
        assert_eq!(mine.status, StatusCode::OK, "this device stays signed in");
        let again = app
            .send(page(Req::post(&path)).form(&format!("csrf={CSRF}")))
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(
            count(&app.practice_audit().await, "session.end", "success"),
            1
        );
    }
}
