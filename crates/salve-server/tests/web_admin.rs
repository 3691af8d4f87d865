//! Admin pages: the local outbox (what was "sent", with only this server's links clickable; reply
//! as the patient; mark delivered), patients and consent at intake (the consent text shown
//! verbatim and cited, the plain-SMS acknowledgment required, nothing recorded on a refusal),
//! confidential-communication requests, role refusals as pages, and CSRF refusals.

use axum::http::StatusCode;
use salve_core::permissions::Role;
use salve_server::HOST_COOKIE;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::{Reply, Req};
use messaging_world::{BASE, CLINICAL_TEXT, World};

/// A well-formed CSRF token (the double-submit cookie and the form field carry the same one).
const CSRF: &str = "demo-csrf-token-0123456789abcdefghijklmnopq";

/// A page request from a signed-in staff member's browser, holding the CSRF cookie.
async fn page(w: &World, cookie: &str, req: Req) -> Reply {
    assert_eq!(CSRF.len(), 43);
    w.app
        .send(
            req.header(
                "cookie",
                format!("{HOST_COOKIE}={cookie}; __Host-salve_csrf={CSRF}"),
            )
            .same_origin(),
        )
        .await
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn is_html_page(r: &Reply) -> bool {
    r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html")
}

async fn with_local_outbox(w: &World) {
    let r = w
        .admin(Req::post("/api/v1/admin/providers").json(&json!({
            "kind": "local_outbox", "label": "Demo outbox", "credentials": {},
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn consent_record(w: &World, patient: &str) -> Value {
    let r = w
        .clinician(Req::get(format!("/api/v1/patients/{patient}/consent")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_outbox_page_shows_what_was_sent_links_only_ours_and_simulates_the_patient() {
    for db in TestDatabase::all().await {
        outbox_story(db).await;
    }
}

async fn outbox_story(db: TestDatabase) {
    let w = World::new(db).await;
    with_local_outbox(&w).await;
    let ana = w.patient("Ana", "0142").await;
    for (channel, purpose) in [
        ("sms_plain", "care_messages"),
        ("sms_notify", "care_messages"),
    ] {
        w.grant(&ana, channel, purpose).await;
    }
    // Clinical: it goes secure; the text only carries a secure link to this server.
    let secure = w.sent_message(&ana, json!({"text": CLINICAL_TEXT})).await;
    assert_eq!(secure["route"], "secure", "{secure}");
    // A plain text that names another site's address: shown, never linked.
    let plain = w
        .sent_message(
            &ana,
            json!({"text": "Please call the office when you get a chance. Directions: https://maps.example.com/lakeside"}),
        )
        .await;
    assert!(w.run_worker().await >= 2);
    let sent = w.outbox();
    let link = sent
        .iter()
        .find_map(|r| {
            r.body
                .split_whitespace()
                .find(|t| t.starts_with(&format!("{BASE}/p/")))
        })
        .expect("a secure link was sent")
        .to_owned();

    let r = page(&w, &w.admin, Req::get("/admin/outbox")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<h1>Outbox</h1>"), "{}", r.text);
    assert_eq!(r.text.matches("<h1").count(), 1);
    assert!(r.text.contains("+13125550142"), "the address is shown");
    let links = hrefs(&r.text);
    assert!(links.contains(&link), "{link} is clickable: {links:?}");
    assert!(
        links.iter().all(|h| !h.contains("maps.example.com")),
        "another site's URL is never linked: {links:?}"
    );
    assert_eq!(plain["route"], "direct", "{plain}");
    assert!(
        r.text.contains("https://maps.example.com/lakeside"),
        "shown as text, exactly as sent"
    );
    assert!(!r.text.contains("style=") && !r.text.contains("<script>"));
    assert!(r.text.contains("/static/staff.js") && r.text.contains("/static/admin.css"));
    assert!(r.text.len() < 100 * 1024);
    let css = w.app.send(Req::get("/static/admin.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    // Every text can be answered and marked delivered.
    assert!(r.text.contains("Reply as the patient"));
    assert!(r.text.contains("Mark delivered"));

    // Reply as the patient: an inbound message in Ana's conversation.
    let conversation = secure["conversation_id"].as_str().unwrap().to_owned();
    let before = w.conversation(&conversation).await["messages"]
        .as_array()
        .unwrap()
        .len();
    let job = w
        .app
        .send(
            Req::get("/api/v1/admin/outbox")
                .header("cookie", format!("{HOST_COOKIE}={}", w.admin))
                .same_origin(),
        )
        .await
        .json()["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = form(&[
        ("csrf", CSRF),
        ("id", &job),
        ("from", "+13125550142"),
        ("text", "Thanks, I'll call tomorrow."),
    ]);
    let r = page(&w, &w.admin, Req::post("/admin/outbox/reply").form(&reply)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/admin/outbox?done=reply");
    let messages = w.conversation(&conversation).await["messages"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(messages.len(), before + 1);
    let last = messages.last().unwrap();
    assert_eq!(last["direction"], "inbound", "{last}");
    assert_eq!(last["text"], "Thanks, I'll call tomorrow.");

    // An empty reply is refused on the page, at its field.
    let empty = form(&[
        ("csrf", CSRF),
        ("id", &job),
        ("from", "+13125550142"),
        ("text", " "),
    ]);
    let r = page(&w, &w.admin, Req::post("/admin/outbox/reply").form(&empty)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("aria-invalid=\"true\""));
    assert!(
        r.text.contains("Write the patient&#39;s reply first")
            || r.text.contains("Write the patient&#x27;s reply first"),
        "{}",
        r.text
    );

    // Mark delivered: the message's status moves on.
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/outbox/status").form(&form(&[("csrf", CSRF), ("id", &job)])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(&w, &w.admin, Req::get("/admin/outbox?done=delivered")).await;
    assert!(r.text.contains("marked delivered"));
    assert!(r.text.contains("delivered</span>"), "{}", r.text);

    // CSRF: a form without the token (or with another) changes nothing.
    let count = messages.len();
    for bad in [
        form(&[("id", &job), ("from", "+13125550142"), ("text", "forged")]),
        form(&[
            ("csrf", "another-token-0123456789abcdefghijklmnopqrs"),
            ("id", &job),
            ("from", "+13125550142"),
            ("text", "forged"),
        ]),
    ] {
        let r = page(&w, &w.admin, Req::post("/admin/outbox/reply").form(&bad)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("reload the page"), "{}", r.text);
    }
    assert_eq!(
        w.conversation(&conversation).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        count
    );

    // Only admins: others get a refusal page.
    let r = page(&w, &w.clinician, Req::get("/admin/outbox")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(is_html_page(&r) && r.text.contains("clinician role cannot do this"));
    // Signed out: to the sign-in page.
    let r = w.app.send(Req::get("/admin/outbox")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign-in?next=")
    );
    // An API token is not a browser: refused.
    let r = w
        .app
        .send(Req::get("/admin/outbox").bearer(&w.app.token))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

#[tokio::test]
async fn consent_at_intake_cites_the_text_shown_and_needs_the_sms_acknowledgment() {
    for db in TestDatabase::all().await {
        consent_story(db).await;
    }
}

async fn consent_story(db: TestDatabase) {
    let w = World::new(db).await;
    let (_, front_desk) = messaging_world::session(&w.app, Role::Staff).await;
    let ana = w.patient("Ana", "0142").await;
    let path = format!("/admin/patients/{ana}/consent");

    // The patients list links to the consent page; search goes in a POST body.
    let r = page(&w, &front_desk, Req::get("/admin/patients")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Ana Quintanilla") && r.text.contains(&path));
    let r = page(
        &w,
        &front_desk,
        Req::post("/admin/patients/search").form(&form(&[("csrf", CSRF), ("query", "Quint")])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(&path));
    let r = page(
        &w,
        &front_desk,
        Req::post("/admin/patients/search").form(&form(&[("csrf", CSRF), ("query", "Q")])),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("at least 2 characters") && r.text.contains("aria-invalid=\"true\""));

    // The page: the current state, and the practice's consent text verbatim.
    let r = page(&w, &front_desk, Req::get(path.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.contains("I agree that Lakeside may text me."),
        "{}",
        r.text
    );
    assert!(r.text.contains("version 2026-01"));
    assert!(r.text.contains("<legend>Plain text messages (SMS)"));
    assert!(r.text.contains("not encrypted"));
    assert_eq!(r.text.matches("<h1").count(), 1);

    let events_before = w.rows("consent_events").await;
    let choices = |ack: bool, method: &str| {
        let mut pairs = vec![
            ("csrf", CSRF),
            ("consent_version", "2026-01"),
            ("consent_sha256", w.consent_sha.as_str()),
            ("choice", "sms_plain:appointment_reminders"),
            ("choice", "portal:care_messages"),
            ("method", method),
            ("evidence", "Signed intake form"),
        ];
        if ack {
            pairs.push(("sms_risk_acknowledged", "yes"));
        }
        form(&pairs)
    };

    // Plain SMS without the acknowledgment: a clear message at the checkbox, nothing recorded.
    let r = page(
        &w,
        &front_desk,
        Req::post(path.clone()).form(&choices(false, "intake_form")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text
            .contains("must acknowledge that texts are not encrypted"),
        "{}",
        r.text
    );
    assert!(r.text.contains("aria-describedby=\"sms-ack-error\""));
    assert!(r.text.contains(
        "id=\"sms-ack\" name=\"sms_risk_acknowledged\" value=\"yes\" aria-invalid=\"true\""
    ));
    assert_eq!(w.rows("consent_events").await, events_before);

    // No source chosen: refused too.
    let r = page(
        &w,
        &front_desk,
        Req::post(path.clone()).form(&choices(true, "")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Choose how the patient gave their consent"));
    assert_eq!(w.rows("consent_events").await, events_before);

    // With it: recorded with the text's version and hash, the acknowledgment, the source.
    let r = page(
        &w,
        &front_desk,
        Req::post(path.clone()).form(&choices(true, "intake_form")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(
        r.headers["location"],
        format!("{path}?saved=consent").as_str()
    );
    let record = consent_record(&w, &ana).await;
    let history = record["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{record}");
    for e in history {
        assert_eq!(e["action"], "grant");
        assert_eq!(e["method"], "intake_form");
        assert_eq!(e["consent_text"]["version"], "2026-01");
        assert_eq!(e["consent_text"]["sha256_hex"], w.consent_sha.as_str());
    }
    let sms = history
        .iter()
        .find(|e| e["channel"] == "sms_plain")
        .unwrap();
    assert_eq!(sms["sms_risk_acknowledged"], true);
    assert_eq!(sms["purpose"], "appointment_reminders");
    let r = page(&w, &front_desk, Req::get(format!("{path}?saved=consent"))).await;
    assert!(r.text.contains("Consent recorded."));
    assert!(r.text.contains("<span class=\"badge ok\">Yes</span>"));
    let audit = w.app.practice_audit().await;
    assert!(
        audit
            .iter()
            .any(|a| a.action.starts_with("consent.") && a.outcome == "success")
    );

    // Unticking withdraws: a revocation, the rest untouched.
    let r = page(
        &w,
        &front_desk,
        Req::post(path.clone()).form(&form(&[
            ("csrf", CSRF),
            ("consent_version", "2026-01"),
            ("consent_sha256", w.consent_sha.as_str()),
            ("choice", "portal:care_messages"),
            ("method", "verbal"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let record = consent_record(&w, &ana).await;
    let effective = |channel: &str, purpose: &str| {
        record["effective"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["channel"] == channel && e["purpose"] == purpose && e["granted"] == true)
    };
    assert!(!effective("sms_plain", "appointment_reminders"));
    assert!(effective("portal", "care_messages"));

    // Announcements need written consent: the domain's rule, shown at the source.
    let r = page(
        &w,
        &front_desk,
        Req::post(path.clone()).form(&form(&[
            ("csrf", CSRF),
            ("consent_version", "2026-01"),
            ("consent_sha256", w.consent_sha.as_str()),
            ("choice", "portal:care_messages"),
            ("choice", "portal:announcements"),
            ("method", "verbal"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("need written consent"));

    // A confidential-communication request.
    let r = page(
        &w,
        &front_desk,
        Req::post(format!("/admin/patients/{ana}/confidential")).form(&form(&[
            ("csrf", CSRF),
            ("rule", "never_medium"),
            ("value", "email"),
            ("method", "written_form"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(
        &w,
        &front_desk,
        Req::get(format!("{path}?saved=confidential")),
    )
    .await;
    assert!(r.text.contains("Never by email"), "{}", r.text);
    let request = consent_record(&w, &ana).await["confidential_requests"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = page(
        &w,
        &front_desk,
        Req::post(format!(
            "/admin/patients/{ana}/confidential/{request}/withdraw"
        ))
        .form(&form(&[("csrf", CSRF)])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let record = consent_record(&w, &ana).await;
    assert!(
        record["confidential_requests"][0]["withdrawn_at"].is_string(),
        "{record}"
    );
    let r = page(&w, &front_desk, Req::get(format!("{path}?saved=withdrawn"))).await;
    assert!(r.text.contains("withdrawn)") && !r.text.contains("/withdraw\""));
    let r = page(
        &w,
        &front_desk,
        Req::post(format!("/admin/patients/{ana}/confidential")).form(&form(&[
            ("csrf", CSRF),
            ("rule", "only_contact"),
            ("value", "not a phone"),
            ("method", "verbal"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("The request was not recorded"));

    // CSRF: nothing recorded without the token.
    let before = w.rows("consent_events").await;
    let mut forged = choices(true, "intake_form");
    forged = forged.replace(&format!("csrf={CSRF}&"), "");
    let r = page(&w, &front_desk, Req::post(path.clone()).form(&forged)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(w.rows("consent_events").await, before);

    // The auditor may not see or record consent; a refusal page, audited.
    let (_, auditor) = messaging_world::session(&w.app, Role::Auditor).await;
    let r = page(&w, &auditor, Req::get(path.clone())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(is_html_page(&r));
    let r = page(
        &w,
        &auditor,
        Req::post(path.clone()).form(&choices(true, "intake_form")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.rows("consent_events").await, before);
}

#[tokio::test]
async fn the_admin_index_lists_what_the_role_can_open() {
    let w = World::new(TestDatabase::sqlite()).await;
    let r = page(&w, &w.admin, Req::get("/admin")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for href in ["/admin/patients", "/admin/outbox"] {
        assert!(hrefs(&r.text).contains(&href.to_owned()), "{href}");
    }
    let r = page(&w, &w.clinician, Req::get("/admin")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn staff_pages_invite_change_roles_and_reset_authenticators() {
    let w = World::new(TestDatabase::sqlite()).await;
    let r = page(&w, &w.admin, Req::get("/admin/users")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<h1>Staff</h1>") && r.text.contains("Send invitation"));

    // A bad invitation: the errors at their fields, nobody invited.
    let users_before = w.rows("users").await;
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/users/invite").form(&form(&[
            ("csrf", CSRF),
            ("display_name", "Jo Nurse"),
            ("email", "not-an-email"),
            ("role", ""),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("aria-describedby=\"invite-email-error\""));
    assert!(r.text.contains("Choose a role."));
    assert!(
        r.text.contains("value=\"Jo Nurse\""),
        "the form keeps what was typed"
    );
    assert_eq!(w.rows("users").await, users_before);

    // A good one: the invitation email goes out, the person is listed.
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/users/invite").form(&form(&[
            ("csrf", CSRF),
            ("display_name", "Jo Nurse"),
            ("email", "jo.nurse@lakeside.example"),
            ("role", "staff"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/admin/users?done=invited");
    assert!(
        w.outbox()
            .iter()
            .any(|m| m.to == "jo.nurse@lakeside.example" && m.body.contains("/invite/"))
    );
    let r = page(&w, &w.admin, Req::get("/admin/users?done=invited")).await;
    assert!(r.text.contains("jo.nurse@lakeside.example") && r.text.contains("Invitation sent"));

    // Change the clinician's role, then reset an authenticator.
    let r = page(
        &w,
        &w.admin,
        Req::post(format!("/admin/users/{}/role", w.clinician_id))
            .form(&form(&[("csrf", CSRF), ("role", "staff")])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let list = w.admin(Req::get("/api/v1/users")).await.json();
    let clinician = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == w.clinician_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(clinician["role"], "staff");
    let r = page(
        &w,
        &w.admin,
        Req::post(format!("/admin/users/{}/mfa-reset", w.clinician_id))
            .form(&form(&[("csrf", CSRF)])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.headers["location"], "/admin/users?done=mfa");
    let audit = w.app.practice_audit().await;
    assert!(
        audit
            .iter()
            .any(|a| a.action.contains("mfa") && a.outcome == "success"),
        "audited"
    );

    // Front desk and auditors may see the list (as in the API) but not manage it.
    let (_, front_desk) = messaging_world::session(&w.app, Role::Staff).await;
    let r = page(&w, &front_desk, Req::get("/admin/users")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("Send invitation") && !r.text.contains("Reset authenticator"));
    let r = page(
        &w,
        &front_desk,
        Req::post("/admin/users/invite").form(&form(&[
            ("csrf", CSRF),
            ("display_name", "Eve"),
            ("email", "eve@lakeside.example"),
            ("role", "admin"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, auditor) = messaging_world::session(&w.app, Role::Auditor).await;
    let r = page(&w, &auditor, Req::get("/admin/users")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("Change role"));
}

#[tokio::test]
async fn catalog_saved_replies_and_practice_profile_pages() {
    let w = World::new(TestDatabase::sqlite()).await;
    let add = |name: &str, safe: bool| {
        let mut pairs = vec![
            ("csrf", CSRF),
            ("kind", "location"),
            ("name", name),
            ("active", "yes"),
        ];
        if safe {
            pairs.push(("sms_safe", "yes"));
        }
        form(&pairs)
    };
    // The catalog: add, then toggle; the policy's notes are shown.
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/catalog").form(&add("Main St office", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/catalog").form(&add("Cancer Center, 3rd floor", false)),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(&w, &w.admin, Req::get("/admin/catalog?done=saved")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Main St office") && r.text.contains("SMS-safe"));
    assert!(
        r.text
            .contains("Allow in plain texts<span class=\"visually-hidden\">: Cancer Center")
    );
    let items = w.admin(Req::get("/api/v1/catalog")).await.json();
    let cancer = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "Cancer Center, 3rd floor")
        .unwrap()
        .clone();
    assert_eq!(cancer["sms_safe"], false);
    assert!(!cancer["policy_warnings"].as_array().unwrap().is_empty());
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/catalog").form(&add("Main St office", false)),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let items = w.admin(Req::get("/api/v1/catalog")).await.json();
    assert!(
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "Main St office" && i["sms_safe"] == false)
    );
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/catalog").form(&add(" ", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("aria-describedby=\"name-error\""));

    // Saved replies: created with the policy's verdict; a broken variable is refused.
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/templates").form(&form(&[
            ("csrf", CSRF),
            ("name", "Call us"),
            (
                "body",
                "Hi {patient.first_name}, please call us at {practice.phone}.",
            ),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = page(&w, &w.admin, Req::get("/admin/templates")).await;
    assert!(r.text.contains("Call us") && r.text.contains("patient.first_name"));
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/templates").form(&form(&[
            ("csrf", CSRF),
            ("name", "Broken"),
            ("body", "Hi {patient.last_name}"),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("Not saved") && r.text.contains("value=\"Broken\""));
    let list = w.admin(Req::get("/api/v1/templates")).await.json();
    let templates = list["templates"].as_array().unwrap();
    assert_eq!(templates.len(), 1);
    let id = templates[0]["id"].as_str().unwrap();
    let r = page(
        &w,
        &w.admin,
        Req::post(format!("/admin/templates/{id}")).form(&form(&[
            ("csrf", CSRF),
            ("name", "Call us"),
            ("body", "Please call us at {practice.phone}."),
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let list = w.admin(Req::get("/api/v1/templates")).await.json();
    assert_eq!(list["templates"][0]["active"], false, "unticked: retired");

    // The practice profile: a sender name that reveals a specialty is refused at its field.
    let profile = |sender: &str| {
        form(&[
            ("csrf", CSRF),
            ("sender_name", sender),
            ("phone", "(312) 555-0100"),
            ("hours_text", "Mon-Fri 9-5"),
            ("expected_reply_text", "within one business day"),
            ("on_call_number", ""),
        ])
    };
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/practice").form(&profile("Lakeside Oncology")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("aria-describedby=\"sender_name-error\""));
    assert!(r.text.contains("value=\"Lakeside Oncology\""));
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/practice").form(&profile("Lakeside Family Care")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let settings = w.admin(Req::get("/api/v1/practice/messaging")).await.json();
    assert_eq!(settings["sender_name"], "Lakeside Family Care");
    assert_eq!(settings["on_call_number"], Value::Null);

    // Clinicians read, but the forms are not theirs.
    let r = page(&w, &w.clinician, Req::get("/admin/catalog")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("Add an item"));
    let r = page(
        &w,
        &w.clinician,
        Req::post("/admin/catalog").form(&add("Elm St", true)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = page(
        &w,
        &w.clinician,
        Req::post("/admin/practice").form(&profile("Mine")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn providers_agreements_and_the_carrier_checklist() {
    let w = World::new(TestDatabase::sqlite()).await;
    with_local_outbox(&w).await;
    let r = page(&w, &w.admin, Req::get("/admin/providers")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Demo outbox") && r.text.contains("not needed"));

    // A BAA without its document's hash is refused with the reason; nothing recorded.
    let agreement = |sha: &str| {
        form(&[
            ("csrf", CSRF),
            ("vendor", "Twilio Inc."),
            ("basis", "baa"),
            ("signed_on", "2026-01-15"),
            ("document_sha256", sha),
        ])
    };
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/providers/agreements").form(&agreement("")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("The agreement was not recorded")
            && r.text.contains("value=\"Twilio Inc.\"")
    );
    assert_eq!(w.rows("vendor_agreements").await, 0);
    let sha = "a".repeat(64);
    let r = page(
        &w,
        &w.admin,
        Req::post("/admin/providers/agreements").form(&agreement(&sha)),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(w.rows("vendor_agreements").await, 1);

    // The carrier checklist, for both number types.
    let r = page(&w, &w.admin, Req::get("/admin/carrier")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<h1>Carrier registration</h1>") && r.text.contains("Checklist"));
    let r = page(&w, &w.admin, Req::get("/admin/carrier?kind=toll_free")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text
            .contains("href=\"/admin/carrier?kind=toll_free\" aria-current=\"page\"")
    );

    // Recording agreements is the admin's; the front desk may not even look.
    let (_, front_desk) = messaging_world::session(&w.app, Role::Staff).await;
    let r = page(&w, &front_desk, Req::get("/admin/providers")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = page(
        &w,
        &front_desk,
        Req::post("/admin/providers/agreements").form(&agreement(&sha)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

// ---- staff status, sessions, guidelines, restricted patients ---------------------------------

/// Every visible form control has a label naming it (`<label for=id>`), the page has one h1,
/// and no inline style or script: the conventions the other admin pages keep.
fn assert_accessible(html: &str) {
    assert_eq!(html.matches("<h1").count(), 1, "{html}");
    assert!(!html.contains("style=") && !html.contains("<script>"));
    for control in ["<input", "<select", "<textarea"] {
        for rest in html.split(control).skip(1) {
            let tag = rest.split('>').next().unwrap();
            if tag.contains("type=\"hidden\"") {
                continue;
            }
            let id = tag
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("a control without an id: {tag}"));
            assert!(html.contains(&format!("for=\"{id}\"")), "no label for {id}");
        }
    }
    for form in html.split("<form method=\"post\"").skip(1) {
        assert!(form.contains("name=\"csrf\""), "a form without CSRF");
    }
}

async fn my_id(w: &World, cookie: &str) -> String {
    w.as_staff(cookie, Req::get("/api/v1/session")).await.json()["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn staff_can_be_disabled_in_the_practice_re_enabled_and_their_sessions_ended() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let admin_id = my_id(&w, &w.admin).await;
        let r = page(&w, &w.admin, Req::get("/admin/users")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_accessible(&r.text);
        assert!(
            r.text
                .contains(&format!("/admin/users/{}/disable", w.clinician_id))
        );
        assert!(
            !r.text.contains(&format!("/admin/users/{admin_id}/disable")),
            "no button to disable yourself"
        );

        // Yourself: refused, with the reason on the page, nothing changed.
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/users/{admin_id}/disable")).form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(r.text.contains("role=\"alert\"") && r.text.contains("your own account"));
        assert_accessible(&r.text);

        // The clinician: disabled here, their session ends at once.
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/users/{}/disable", w.clinician_id))
                .form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], "/admin/users?done=disabled");
        let r = w.clinician(Req::get("/api/v1/users")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = page(&w, &w.admin, Req::get("/admin/users?done=disabled")).await;
        assert!(r.text.contains("Disabled in this practice"));
        assert!(
            r.text
                .contains(&format!("/admin/users/{}/enable", w.clinician_id))
        );
        assert!(r.text.contains("badge warn\">disabled"));

        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/users/{}/enable", w.clinician_id))
                .form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], "/admin/users?done=enabled");
        let r = page(&w, &w.admin, Req::get("/admin/users")).await;
        assert!(!r.text.contains("badge warn\">disabled"));

        // Their sessions: two fresh ones listed (no address), one ended, then all.
        let clinician: salve_core::UserId = w.clinician_id.parse().unwrap();
        let one = w
            .app
            .raw_session(clinician, w.app.practice, salve_store::SessionStage::Active)
            .await;
        let two = w
            .app
            .raw_session(clinician, w.app.practice, salve_store::SessionStage::Active)
            .await;
        let sessions_page = format!("/admin/users/{}/sessions", w.clinician_id);
        let r = page(&w, &w.admin, Req::get(&sessions_page)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_accessible(&r.text);
        assert_eq!(r.text.matches("End session").count(), 2, "{}", r.text);
        assert!(!r.text.contains("127.0.0."));
        let listed = w
            .admin(Req::get(format!(
                "/api/v1/users/{}/sessions",
                w.clinician_id
            )))
            .await
            .json();
        let first = listed["sessions"][0]["id"].as_str().unwrap().to_owned();
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("{sessions_page}/{first}/end")).form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let alive = [
            w.as_staff(&one, Req::get("/api/v1/session")).await.status,
            w.as_staff(&two, Req::get("/api/v1/session")).await.status,
        ];
        assert_eq!(
            alive.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{alive:?}"
        );
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("{sessions_page}/end-all")).form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        for cookie in [&one, &two] {
            let r = w.as_staff(cookie, Req::get("/api/v1/session")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = page(
            &w,
            &w.admin,
            Req::get(format!("{sessions_page}?done=ended-all")),
        )
        .await;
        assert!(r.text.contains("No active sessions."));

        let audit = w.app.practice_audit().await;
        for action in [
            "user.disable",
            "user.enable",
            "session.end",
            "session.revoke_all",
            "session.list",
        ] {
            assert!(
                audit
                    .iter()
                    .any(|a| a.action == action && a.outcome == "success"),
                "{action} audited"
            );
        }
        // Front desk: no such page.
        let (_, desk) = messaging_world::session(&w.app, Role::Staff).await;
        let r = page(&w, &desk, Req::get(&sessions_page)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn guidelines_are_published_from_the_admin_page_with_who_acknowledged_them() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = page(&w, &w.admin, Req::get("/admin")).await;
        for href in ["/admin/guidelines", "/admin/restricted", "/admin/teams"] {
            assert!(hrefs(&r.text).contains(&href.to_owned()), "{href} linked");
        }
        let r = page(&w, &w.admin, Req::get("/admin/guidelines")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_accessible(&r.text);
        assert!(
            r.text.contains("No guidelines are published yet")
                && r.text.contains("Publish version 1")
        );

        // Empty: refused at the field, nothing published.
        let r = page(
            &w,
            &w.admin,
            Req::post("/admin/guidelines").form(&form(&[("csrf", CSRF), ("body", "  ")])),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(
            r.text
                .contains("aria-describedby=\"guidelines-body-error\"")
        );
        assert_accessible(&r.text);
        assert_eq!(
            w.clinician(Req::get("/api/v1/guidelines")).await.json()["version"],
            0
        );

        let text = "Be brief and kind.\n\nNever put a diagnosis in a plain text.";
        let r = page(
            &w,
            &w.admin,
            Req::post("/admin/guidelines").form(&form(&[("csrf", CSRF), ("body", text)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], "/admin/guidelines?done=published");
        // Acknowledgment is due again: the clinician is held until they accept version 1.
        let r = w.clinician(Req::get("/api/v1/users")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = page(&w, &w.admin, Req::get("/admin/guidelines?done=published")).await;
        assert!(
            r.text
                .contains("0 of 2 active staff acknowledged version 1"),
            "{}",
            r.text
        );
        let r = w
            .clinician(Req::post("/api/v1/guidelines/acknowledge").json(&json!({"version": 1})))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

        let r = page(&w, &w.admin, Req::get("/admin/guidelines")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.text
                .contains("1 of 2 active staff acknowledged version 1"),
            "{}",
            r.text
        );
        assert_eq!(r.text.matches("badge ok\">acknowledged").count(), 1);
        assert_eq!(r.text.matches("badge warn\">not yet").count(), 1);
        assert!(
            r.text.contains("Never put a diagnosis in a plain text."),
            "the current text to edit"
        );
        assert!(r.text.contains("Publish version 2"));

        // A second version: the clinician's acknowledgment is of version 1 only now.
        let r = page(
            &w,
            &w.admin,
            Req::post("/admin/guidelines").form(&form(&[("csrf", CSRF), ("body", "Version two.")])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = page(&w, &w.admin, Req::get("/admin/guidelines")).await;
        assert!(
            r.text
                .contains("0 of 2 active staff acknowledged version 2")
        );
        assert!(
            r.text.contains("Version 1, <time"),
            "who acknowledged which version"
        );
        let audit = w.app.practice_audit().await;
        assert_eq!(common::count(&audit, "guidelines.publish", "success"), 2);

        let r = page(&w, &w.clinician, Req::get("/admin/guidelines")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn restricted_patients_list_who_may_see_them_without_naming_the_others() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let admin_id = my_id(&w, &w.admin).await;
        let ana = w.patient("Ana", "0142").await;
        let ben = w.patient("Benedikt", "0143").await;
        let _carla = w.patient("Carla", "0144").await;
        let restrict = |id: &str, users: Vec<&str>| {
            w.admin(
                Req::put(format!("/api/v1/patients/{id}/restriction"))
                    .json(&json!({"restricted": true, "users": users})),
            )
        };
        assert_eq!(
            restrict(&ana, vec![&admin_id, &w.clinician_id])
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            restrict(&ben, vec![&w.clinician_id]).await.status,
            StatusCode::NO_CONTENT
        );
        let names = w.admin(Req::get("/api/v1/users")).await.json();
        let name_of = |id: &str| {
            names["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["id"] == id)
                .unwrap()["display_name"]
                .as_str()
                .unwrap()
                .to_owned()
        };

        let r = page(&w, &w.admin, Req::get("/admin/restricted")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_accessible(&r.text);
        assert!(r.text.contains("Ana Quintanilla"));
        assert!(!r.text.contains("Benedikt"), "not named on Ben: no name");
        assert!(!r.text.contains("Carla"), "not restricted");
        assert!(r.text.contains("Restricted patient (you are not named)"));
        assert!(r.text.contains(&name_of(&w.clinician_id)) && r.text.contains("(clinician)"));
        assert!(
            r.text
                .contains(&format!("action=\"/admin/restricted/{ana}\""))
        );
        assert!(
            !r.text
                .contains(&format!("action=\"/admin/restricted/{ben}\""))
        );
        // Opening the list is a patient list in the audit log, naming both.
        let audit = w.app.practice_audit().await;
        let listed = audit.iter().rfind(|a| a.action == "patient.list").unwrap();
        assert!(listed.targets.contains(&ana) && listed.targets.contains(&ben));

        // Only the admin may see Ana now; then the restriction is lifted.
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/restricted/{ana}")).form(&form(&[
                ("csrf", CSRF),
                ("users", &admin_id),
                ("action", "save"),
            ])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let list = w
            .admin(Req::get("/api/v1/patients/restricted"))
            .await
            .json();
        let entry = list["patients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == ana.as_str())
            .unwrap()
            .clone();
        assert_eq!(entry["allowed"].as_array().unwrap().len(), 1, "{entry}");
        assert_eq!(entry["allowed"][0]["user_id"], admin_id.as_str());
        let r = w
            .clinician(Req::get(format!("/api/v1/patients/{ana}")))
            .await;
        assert!(
            r.status.is_client_error(),
            "the clinician lost access: {}",
            r.text
        );
        // Ben's list is not the admin's to change.
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/restricted/{ben}")).form(&form(&[
                ("csrf", CSRF),
                ("users", &admin_id),
                ("action", "save"),
            ])),
        )
        .await;
        assert!(r.status.is_client_error(), "{}", r.text);
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/restricted/{ana}"))
                .form(&form(&[("csrf", CSRF), ("action", "lift")])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], "/admin/restricted?done=lifted");
        let r = page(&w, &w.admin, Req::get("/admin/restricted?done=lifted")).await;
        assert!(!r.text.contains("Ana Quintanilla") && r.text.contains("Restriction lifted"));
        let r = w
            .clinician(Req::get(format!("/api/v1/patients/{ana}")))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        let r = page(&w, &w.clinician, Req::get("/admin/restricted")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn teams_are_created_renamed_given_members_and_deleted_from_their_page() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let r = page(&w, &w.admin, Req::get("/admin/teams")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_accessible(&r.text);
        assert!(r.text.contains("No teams yet."));

        let create = |name: &str| {
            page(
                &w,
                &w.admin,
                Req::post("/admin/teams").form(&form(&[("csrf", CSRF), ("name", name)])),
            )
        };
        let r = create("   ").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("role=\"alert\"") && r.text.contains("1 to 100 characters"));
        let r = create("Front desk").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = create("Nursing").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = create("Front desk").await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a taken name: {}",
            r.text
        );
        assert!(
            r.text.contains("value=\"Front desk\""),
            "the form keeps the name"
        );

        let teams = w.admin(Req::get("/api/v1/teams")).await.json();
        let id_of = |name: &str| {
            teams["teams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (desk, nursing) = (id_of("Front desk"), id_of("Nursing"));
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/teams/{nursing}/members"))
                .form(&form(&[("csrf", CSRF), ("members", &w.clinician_id)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/teams/{nursing}/name"))
                .form(&form(&[("csrf", CSRF), ("name", "Nursing pool")])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/teams/{nursing}/name"))
                .form(&form(&[("csrf", CSRF), ("name", "Front desk")])),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let r = page(
            &w,
            &w.admin,
            Req::post(format!("/admin/teams/{desk}/delete")).form(&form(&[("csrf", CSRF)])),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);

        let teams = w.admin(Req::get("/api/v1/teams")).await.json();
        let list = teams["teams"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{teams}");
        assert_eq!(list[0]["name"], "Nursing pool");
        assert_eq!(list[0]["members"], json!([w.clinician_id]));
        let r = page(&w, &w.admin, Req::get("/admin/teams?done=deleted")).await;
        assert_accessible(&r.text);
        assert!(r.text.contains("Team deleted.") && r.text.contains("Nursing pool"));
        assert!(r.text.contains(&format!(
            "id=\"member-{nursing}-{}\" name=\"members\" value=\"{}\" checked",
            w.clinician_id, w.clinician_id
        )));
        let audit = w.app.practice_audit().await;
        assert_eq!(common::count(&audit, "team.change", "success"), 5);

        let r = page(&w, &w.clinician, Req::get("/admin/teams")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn systems_are_registered_with_public_keys_and_disabled_from_their_page() {
    let w = World::new(TestDatabase::sqlite()).await;
    let r = page(&w, &w.admin, Req::get("/admin/systems")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_accessible(&r.text);
    assert!(r.text.contains("No systems registered yet."));
    assert!(r.text.contains("/oauth2/token"), "the token URL is shown");
    assert!(r.text.contains("value=\"system/Patient.rs\""));

    let public = r#"{"keys": [{"kty": "EC", "crv": "P-384", "kid": "ehr-1",
        "x": "99klQ4ieizEIARDtVG-bd3KgDvJxINUfiRDL27LI4dpnr_qtyESLxwOjELh5lLsH",
        "y": "6erH6OLC-tlnJbe9tnpa3H9mA8OnefFe8ndTZevU-zNmVObFwOZrUYo29pYmXv2l"}]}"#;
    let private = public.replace("\"kid\"", "\"d\": \"c2VjcmV0\", \"kid\"");
    let register = |jwks: String, scopes: &[&str]| {
        let mut pairs = vec![("csrf", CSRF), ("name", "EHR sync")];
        pairs.extend(scopes.iter().map(|s| ("scopes", *s)));
        let mut body = form(&pairs);
        body.push_str(&format!("&{}", form(&[("jwks", &jwks)])));
        page(&w, &w.admin, Req::post("/admin/systems").form(&body))
    };

    // Refused: not JSON, a private key, no access chosen; the form keeps what was typed.
    let r = register("not json".into(), &["system/Patient.rs"]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("role=\"alert\"") && r.text.contains("JWK Set as JSON"));
    let r = register(private, &["system/Patient.rs"]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("Public keys: public keys only"),
        "{}",
        r.text
    );
    assert!(r.text.contains("value=\"system/Patient.rs\" checked"));
    let r = register(public.into(), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("Access: at least one scope is required"),
        "{}",
        r.text
    );
    assert!(r.text.contains("ehr-1"), "the keys are kept in the form");

    let r = register(
        public.into(),
        &["system/Patient.rs", "system/Appointment.crus"],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let clients = w.admin(Req::get("/api/v1/smart-clients")).await.json();
    let id = clients["clients"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = page(&w, &w.admin, Req::get("/admin/systems?done=registered")).await;
    assert!(r.text.contains(&id) && r.text.contains("System registered."));
    assert!(r.text.contains("<code>system/Appointment.crus</code>"));

    // Disabled from the page; a form without its token is refused.
    let path = format!("/admin/systems/{id}/disable");
    let r = page(&w, &w.admin, Req::post(&path).form("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = page(
        &w,
        &w.admin,
        Req::post(&path).form(&form(&[("csrf", CSRF)])),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let clients = w.admin(Req::get("/api/v1/smart-clients")).await.json();
    assert!(clients["clients"][0]["disabled_at"].is_string());
    let r = page(&w, &w.admin, Req::get("/admin/systems")).await;
    assert!(
        !r.text.contains(&format!("action=\"{path}\"")),
        "no second disable"
    );

    // The front desk cannot open the page.
    let (_, front_desk) = messaging_world::session(&w.app, Role::Staff).await;
    let r = page(&w, &front_desk, Req::get("/admin/systems")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
