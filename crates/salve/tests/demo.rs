//! The demo practice (`salve demo`), seeded directly against a temporary store through the same
//! in-process API the demo uses: staff of every role with an enrolled authenticator who can sign
//! in with the printed details, 20+ patients with consent in every state, conversations in
//! both directions, and complete printed sign-in details.

#[path = "../src/demo.rs"]
#[allow(dead_code)]
mod demo;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use salve_core::permissions::Role;
use salve_core::{Clock, ManualClock};
use salve_crypto::MasterKey;
use salve_server::{AppState, ServerConfig};
use salve_store::{Store, StoreOptions};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn state(db: &TestDatabase, clock: Arc<ManualClock>) -> AppState {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await.unwrap();
    let store = Arc::new(
        Store::open(&options, MasterKey::from_bytes(rand_key()), clock.clone())
            .await
            .unwrap(),
    );
    let outbox = salve_channels::LocalOutbox::new(
        db.dir.path().join("outbox"),
        store.outbox_key().await.unwrap(),
    );
    let mut config = ServerConfig::local("127.0.0.1:8080".parse().unwrap());
    config.quiet_hours = None;
    AppState::new(store, clock, config).with_local_outbox(outbox)
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        key[i] = *b;
    }
    key
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("sec-fetch-site", "same-origin");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("{}={c}", salve_server::COOKIE));
    }
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 2], 1))));
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{}=", salve_server::COOKIE)))
        .map(|v| v.split(';').next().unwrap().to_owned());
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        cookie,
    )
}

#[tokio::test]
async fn the_demo_practice_is_complete_and_its_printed_details_work() {
    let db = TestDatabase::sqlite();
    // 10:00 in Chicago on a weekday: the office is open.
    let clock = Arc::new(ManualClock::new(
        time::macros::datetime!(2026-11-25 16:00 UTC),
    ));
    let state = state(&db, clock.clone()).await;
    let seeded = demo::seed(&state).await.expect("the demo seeds");

    // Seeding signed each account in; none of those sessions is left open.
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
        .fetch_one(state.store.pool_for_tests())
        .await
        .unwrap();
    assert_eq!(open, 0);

    // Staff: one per role, each with an enrolled authenticator.
    let roles: Vec<Role> = seeded.users.iter().map(|u| u.role).collect();
    for role in Role::ALL {
        assert!(roles.contains(&role), "a demo user with role {role:?}");
    }
    for u in &seeded.users {
        assert_eq!(u.totp_secret.len(), 32, "base32 of a 160-bit secret");
        assert!(
            u.otpauth_uri.starts_with("otpauth://totp/"),
            "{}",
            u.otpauth_uri
        );
        assert!(u.otpauth_uri.contains(&format!("secret={}", u.totp_secret)));
        assert!(u.password.len() >= 12);
    }

    // Patients and consent states.
    assert!(seeded.patients.len() >= 20, "{}", seeded.patients.len());
    for profile in [
        demo::ConsentProfile::Everything,
        demo::ConsentProfile::PortalOnly,
        demo::ConsentProfile::EmailOnly,
        demo::ConsentProfile::StoppedBySms,
        demo::ConsentProfile::Confidential,
        demo::ConsentProfile::Restricted,
        demo::ConsentProfile::NotYetAsked,
    ] {
        assert!(
            seeded.patients.iter().any(|p| p.consent == profile),
            "{profile:?}"
        );
    }
    for p in &seeded.patients {
        assert!(p.phone.starts_with("+1312555"), "fictional 555 numbers");
        assert!(p.email.ends_with("@example.org"));
    }

    // What the printed details promise works: sign in as the clinician with the password and
    // the authenticator code from the printed secret, and land in the inbox (guidelines
    // already acknowledged).
    let router = salve_server::build_router(state.clone());
    let clinician = seeded
        .users
        .iter()
        .find(|u| u.role == Role::Clinician)
        .unwrap();
    let (status, body, pending) = call(
        &router,
        "POST",
        "/api/v1/session",
        None,
        Some(json!({"email": clinician.email, "password": clinician.password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["stage"], "mfa",
        "the authenticator is already enrolled"
    );
    // The enrolment used the current step; the next code is the one a person would type.
    clock.advance(time::Duration::seconds(30));
    let now = clock.now().unix_timestamp() as u64;
    let code = demo::totp_code(&clinician.totp_secret, now).unwrap();
    let (status, body, active) = call(
        &router,
        "POST",
        "/api/v1/session/mfa",
        pending.as_deref(),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let active = active.or(pending).unwrap();
    let (status, inbox, _) =
        call(&router, "GET", "/api/v1/conversations", Some(&active), None).await;
    assert_eq!(status, StatusCode::OK, "no guidelines step first: {inbox}");
    let conversations = inbox["conversations"].as_array().unwrap();
    assert!(conversations.len() >= 6, "{inbox}");
    assert!(
        conversations.iter().any(|c| c["urgent"] == true),
        "an urgent one"
    );
    assert!(
        conversations.iter().any(|c| c["unread"].as_i64() > Some(0)),
        "an unread one"
    );
    let (_, closed, _) = call(
        &router,
        "GET",
        "/api/v1/conversations?state=closed",
        Some(&active),
        None,
    )
    .await;
    assert!(
        !closed["conversations"].as_array().unwrap().is_empty(),
        "a closed one"
    );
    // Both directions, and the Spanish one.
    let lucia = seeded
        .patients
        .iter()
        .find(|p| p.name == "Lucía Hernández")
        .unwrap();
    let c = conversations
        .iter()
        .find(|c| c["patient_id"] == lucia.id.as_str())
        .expect("Lucía's conversation");
    let (_, detail, _) = call(
        &router,
        "GET",
        &format!("/api/v1/conversations/{}", c["id"].as_str().unwrap()),
        Some(&active),
        None,
    )
    .await;
    let messages = detail["messages"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["direction"] == "inbound"
        && m["text"].as_str().unwrap_or("").contains("cambiar mi cita")));
    assert!(messages.iter().any(|m| m["direction"] == "outbound"));

    // Consent: a STOP revoked Samir's texting consent; nothing recorded for the not-yet-asked.
    let samir = seeded
        .patients
        .iter()
        .find(|p| p.consent == demo::ConsentProfile::StoppedBySms)
        .unwrap();
    let (_, record, _) = call(
        &router,
        "GET",
        &format!("/api/v1/patients/{}/consent", samir.id),
        Some(&active),
        None,
    )
    .await;
    let granted = |record: &Value, channel: &str| {
        record["effective"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["channel"] == channel && e["granted"] == true)
    };
    assert!(
        !granted(&record, "sms_plain") && granted(&record, "portal"),
        "{record}"
    );

    // The outbox holds what was "sent", and the portal link points at this server.
    let outbox = state.local_outbox.as_ref().unwrap().list().unwrap();
    assert!(outbox.len() >= 5, "{}", outbox.len());
    let portal = seeded.portal.as_ref().expect("a portal link");
    assert!(
        portal.url.starts_with("http://localhost:8080/p/"),
        "{}",
        portal.url
    );

    // The printed output: every URL, every user's sign-in details and secret.
    let printed = demo::describe(&seeded, "http://localhost:8080", "/tmp/salve-demo-x");
    assert!(printed.starts_with("Salve demo is running at http://localhost:8080\n"));
    for needle in [
        "http://localhost:8080/sign-in",
        "http://localhost:8080/admin/outbox",
        portal.url.as_str(),
        "/tmp/salve-demo-x",
        seeded.api_token.as_str(),
    ] {
        assert!(printed.contains(needle), "{needle} in\n{printed}");
    }
    for u in &seeded.users {
        for needle in [&u.email, &u.password, &u.totp_secret, &u.otpauth_uri] {
            assert!(printed.contains(needle.as_str()), "{needle} in\n{printed}");
        }
    }
    let report = state.store.verify_audit(None).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
