//! The auditor's pages: a patient's access report names the clinician who read their
//! conversation (through the API) with role and no user ids; the log search filters by action
//! and dates and finds patients by name in a POST body; the CSV export neutralizes formula cells
//! and is itself audited; verification reports an intact chain and a tampered row; and other
//! roles get the 403 page. SQLite always; PostgreSQL too when `SALVE_TEST_POSTGRES_URL` is set.

mod common;

use axum::http::StatusCode;
use common::{App, Req, patient_body};
use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::permissions::Role;
use salve_core::{Sensitive, UserId};
use salve_store::SessionStage;
use salve_testkit::TestDatabase;
use serde_json::json;

/// A CSRF token of the right shape: the cookie and the form field carry the same value.
const CSRF: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";

/// A signed-in member (session made in the store) and their display name.
async fn member(app: &App, role: Role) -> (UserId, String, String) {
    let user = app.passwordless_user(app.practice, role).await;
    let name = app
        .store
        .user_profile(user)
        .await
        .unwrap()
        .display_name
        .expose()
        .clone();
    let session = app
        .raw_session(user, app.practice, SessionStage::Active)
        .await;
    (user, session, name)
}

/// A page request from Salve's own pages, with the session and CSRF cookies.
fn page(req: Req, session: &str) -> Req {
    req.header(
        "cookie",
        format!("salve_session={session}; salve_csrf={CSRF}"),
    )
    .same_origin()
}

async fn event(app: &App, actor: Actor, action: Action, targets: Vec<String>) {
    app.store
        .record_audit(AuditEvent::in_practice(
            app.practice,
            actor,
            &RequestContext::default(),
            action,
            targets,
            Outcome::Success,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_auditor_sees_who_read_a_patients_conversation() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let kind = app.kind;
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let sent = app
            .send(
                Req::post(format!("/api/v1/patients/{patient}/messages"))
                    .bearer(&app.token)
                    .json(&json!({"text": "Your forms are ready.", "kind": "administrative"})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
        let conversation = sent.json()["conversation_id"].as_str().unwrap().to_owned();
        let (clinician, clinician_session, clinician_name) = member(&app, Role::Clinician).await;
        let read = app
            .send(
                Req::get(format!("/api/v1/conversations/{conversation}"))
                    .cookie(&clinician_session)
                    .same_origin(),
            )
            .await;
        assert_eq!(read.status, StatusCode::OK, "{kind:?} {}", read.text);

        let (auditor, auditor_session, _) = member(&app, Role::Auditor).await;
        let r = app
            .send(page(
                Req::get(format!("/audit/patients/{patient}")),
                &auditor_session,
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{kind:?} {}", r.text);
        let row = r
            .text
            .split("<tr>")
            .find(|row| row.contains("Viewed conversation"))
            .unwrap_or_else(|| panic!("{kind:?}: no conversation view in {}", r.text));
        assert!(
            row.contains(&clinician_name) && row.contains("<td>clinician</td>"),
            "{row}"
        );
        assert!(
            r.text.contains("Sent message"),
            "the token's send is listed"
        );
        for id in [clinician.to_string(), auditor.to_string()] {
            assert!(!r.text.contains(&id), "{kind:?}: a user id on the page");
        }
        assert!(
            !r.text.contains("style=") && !r.text.contains("<script>"),
            "no inline style or script"
        );
        assert!(r.text.len() < 100 * 1024);

        // Finding the patient by name: the name travels in the POST body, the results link
        // to the report; without the CSRF field the form is refused.
        let found = app
            .send(
                page(Req::post("/audit/find-patient"), &auditor_session)
                    .form(&format!("csrf={CSRF}&query=Marisol")),
            )
            .await;
        assert_eq!(found.status, StatusCode::OK, "{}", found.text);
        assert!(found.text.contains(&format!("/audit/patients/{patient}")));
        assert!(found.text.contains("<label for=\"find-query\">"));
        let refused = app
            .send(page(Req::post("/audit/find-patient"), &auditor_session).form("query=Marisol"))
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let short = app
            .send(
                page(Req::post("/audit/find-patient"), &auditor_session)
                    .form(&format!("csrf={CSRF}&query=M")),
            )
            .await;
        assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            short.text.contains("aria-invalid=\"true\"")
                && short.text.contains("id=\"find-query-error\"")
        );

        // A restricted patient is hidden from the clinical search but found by the auditor.
        let restricted = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550127"))
            .await;
        app.store
            .set_restriction(
                app.practice,
                &salve_core::permissions::Principal::Operator,
                &RequestContext::default(),
                restricted.parse().unwrap(),
                true,
                &[],
            )
            .await
            .unwrap();
        let clinical = app
            .send(
                Req::post("/api/v1/patients/search")
                    .cookie(&clinician_session)
                    .same_origin()
                    .json(&json!({"query": "Marisol"})),
            )
            .await;
        assert!(!clinical.text.contains(&restricted), "{}", clinical.text);
        let found = app
            .send(
                page(Req::post("/audit/find-patient"), &auditor_session)
                    .form(&format!("csrf={CSRF}&query=marisol")),
            )
            .await;
        assert!(
            found
                .text
                .contains(&format!("/audit/patients/{restricted}"))
        );
        assert!(found.text.contains(&format!("/audit/patients/{patient}")));
        let searches: Vec<_> = app
            .practice_audit()
            .await
            .into_iter()
            .filter(|row| row.action == "patient.search" && row.actor_id == auditor.to_string())
            .collect();
        assert_eq!(searches.len(), 2, "the auditor's searches are audited");
        assert!(searches[1].targets.contains(&restricted));

        // The break-glass and consent reports render for the auditor.
        for path in ["/audit/break-glass", "/audit/consent", "/audit/verify"] {
            let r = app.send(page(Req::get(path), &auditor_session)).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
            assert_eq!(r.text.matches("<h1").count(), 1, "{path}");
        }
    }
}

#[tokio::test]
async fn search_filters_by_action_and_dates() {
    let app = App::new(TestDatabase::sqlite()).await;
    let patient = app
        .create_patient(&app.token, &patient_body("Oren", None, "+13125550124"))
        .await;
    let (lee, _, lee_name) = member(&app, Role::Clinician).await;
    // Day 1 (Nov 25 in Chicago): a conversation read. Day 3: a record read.
    event(
        &app,
        Actor::User(lee),
        Action::ConversationRead,
        vec![patient.clone(), "c1".into()],
    )
    .await;
    app.advance(time::Duration::days(2));
    event(
        &app,
        Actor::User(lee),
        Action::PatientRead,
        vec![patient.clone()],
    )
    .await;
    let (_, auditor, _) = member(&app, Role::Auditor).await;

    let rows = |text: &str| {
        text.split("<tbody>")
            .nth(1)
            .map(|t| t.matches("<tr>").count())
            .unwrap_or(0)
    };
    let get = |q: &str| app.send(page(Req::get(format!("/audit?{q}")), &auditor));

    let r = get("action=conversation.read").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(rows(&r.text), 1, "{}", r.text);
    assert!(r.text.contains("Viewed conversation") && r.text.contains(&lee_name));
    assert!(!r.text.contains("Viewed record</td>"));

    let r = get("action=patient.read&from=2026-11-27&to=2026-11-27").await;
    assert_eq!(rows(&r.text), 1, "{}", r.text);
    let r = get("action=patient.read&from=2026-11-25&to=2026-11-26").await;
    assert_eq!(rows(&r.text), 0, "{}", r.text);
    let r = get(&format!("user={lee}&from=2026-11-25&to=2026-11-27")).await;
    assert_eq!(rows(&r.text), 2, "{}", r.text);
    let r = get(&format!("patient={patient}&to=2026-11-26")).await;
    // The conversation read and the record's creation by the token.
    assert_eq!(rows(&r.text), 2, "{}", r.text);

    // Bad input: the form again, the field marked, no results.
    let r = get("from=yesterday&action=nope").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("id=\"from-error\"") && r.text.contains("id=\"action-error\""));
    assert!(r.text.contains("aria-describedby=\"from-error\""));
    assert_eq!(rows(&r.text), 0);
    for field in ["user", "action", "from", "to"] {
        assert!(
            r.text.contains(&format!("<label for=\"{field}\">")),
            "{field}"
        );
    }
}

#[tokio::test]
async fn the_csv_export_neutralizes_formulas_and_is_audited() {
    let app = App::new(TestDatabase::sqlite()).await;
    let patient = app
        .create_patient(&app.token, &patient_body("Priya", None, "+13125550125"))
        .await;
    let (_, auditor, _) = member(&app, Role::Auditor).await;
    let hostile = ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(1)", "\tx", "\rx"];
    for (i, name) in hostile.iter().enumerate() {
        let user = app
            .store
            .create_user(
                &Actor::Cli,
                &RequestContext::default(),
                app.practice,
                &Sensitive::new(format!("hostile{i}@lakeside.example")),
                &Sensitive::new((*name).to_owned()),
                None,
                Role::Staff,
                false,
            )
            .await
            .unwrap();
        event(
            &app,
            Actor::User(user),
            Action::PatientRead,
            vec![patient.clone()],
        )
        .await;
    }
    let r = app
        .send(page(
            Req::get(format!(
                "/audit/export.csv?action=patient.read&patient={patient}"
            )),
            &auditor,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let header = |n: &str| r.headers[n].to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/csv"));
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"salve-audit-2026-11-25.csv\""),
        "{disposition}"
    );
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let actors: Vec<String> = reader
        .records()
        .map(|rec| rec.unwrap()[1].to_owned())
        .collect();
    for name in hostile {
        assert!(
            actors.contains(&format!("'{name}")),
            "{name:?} not neutralized in {actors:?}"
        );
    }
    assert!(!actors.iter().any(|a| hostile.contains(&a.as_str())));
    assert!(!r.text.contains("Priya"), "no patient name in the file");

    let exports: Vec<_> = app
        .practice_audit()
        .await
        .into_iter()
        .filter(|row| row.action == "audit.export")
        .collect();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].actor_kind, "user");
    assert_eq!(exports[0].targets[0], patient);
    assert_eq!(exports[0].targets[1], "rows:6");
    // The export shows in the patient's access report.
    let report = app
        .send(page(
            Req::get(format!("/audit/patients/{patient}")),
            &auditor,
        ))
        .await;
    assert!(report.text.contains("Exported"));
}

#[tokio::test]
async fn verification_reports_an_intact_chain_and_a_tampered_row() {
    let app = App::new(TestDatabase::sqlite()).await;
    let patient = app
        .create_patient(&app.token, &patient_body("Quinn", None, "+13125550126"))
        .await;
    let (_, auditor, _) = member(&app, Role::Auditor).await;
    let verify =
        || app.send(page(Req::post("/audit/verify"), &auditor).form(&format!("csrf={CSRF}")));
    let r = verify().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("<strong>OK:</strong>"), "{}", r.text);

    // Someone with database access edits a row: the patient's creation now reads as a list.
    let scope = app.practice.to_string();
    let changed = sqlx::query(
        "UPDATE audit_events SET action = 'patient.list' WHERE scope = $1 AND action = 'patient.create' AND targets LIKE $2",
    )
    .bind(&scope)
    .bind(format!("%{patient}%"))
    .execute(app.store.pool_for_tests())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);
    let r = verify().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Problem found"), "{}", r.text);
    assert!(
        r.text.contains("This practice&#x27;s log, row")
            || r.text.contains("This practice&#39;s log, row"),
        "{}",
        r.text
    );
    assert!(r.text.contains("the row was edited"));
    // A GET only shows the button; it changes nothing and needs no token.
    let r = app.send(page(Req::get("/audit/verify"), &auditor)).await;
    assert!(r.text.contains("Verify now") && !r.text.contains("Problem found"));
}

#[tokio::test]
async fn front_desk_staff_and_admins_get_the_403_page() {
    let app = App::new(TestDatabase::sqlite()).await;
    for role in [Role::Staff, Role::Admin, Role::Clinician] {
        let (_, session, _) = member(&app, role).await;
        for path in [
            "/audit",
            "/audit/break-glass",
            "/audit/consent",
            "/audit/verify",
            "/audit/export.csv",
        ] {
            let r = app.send(page(Req::get(path), &session)).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?} {path}");
            assert!(
                r.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{role:?} {path}: the error page"
            );
            assert!(r.text.contains("Error 403"), "{}", r.text);
        }
    }
    // Not signed in: to the sign-in page, coming back here afterwards.
    let r = app.send(Req::get("/audit/break-glass")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers["location"],
        "/sign-in?next=%2Faudit%2Fbreak%2Dglass"
    );
}

#[tokio::test]
async fn the_privacy_officer_reviews_a_break_glass_access_with_a_sealed_note() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550127"))
            .await;
        let patient_id: salve_core::PatientId = patient.parse().unwrap();
        app.store
            .set_restriction(
                app.practice,
                &salve_core::permissions::Principal::Operator,
                &RequestContext::default(),
                patient_id,
                true,
                &[],
            )
            .await
            .unwrap();
        let (clinician, _, clinician_name) = member(&app, Role::Clinician).await;
        app.store
            .break_glass(
                app.practice,
                &salve_core::permissions::Principal::Staff {
                    practice: app.practice,
                    user: clinician,
                    role: Role::Clinician,
                },
                &RequestContext::default(),
                patient_id,
                salve_core::permissions::BreakGlassCategory::EmergencyTreatment,
                &Sensitive::new("Arrived unresponsive at the front desk".into()),
            )
            .await
            .unwrap();
        let (_, auditor, auditor_name) = member(&app, Role::Auditor).await;
        let (_, admin, _) = member(&app, Role::Admin).await;

        // Not reviewed yet: listed under "not reviewed", with a labelled review form.
        let r = app
            .send(page(
                Req::get("/audit/break-glass?show=unreviewed"),
                &auditor,
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains(&clinician_name));
        assert!(r.text.contains("Not reviewed"));
        let grant = r
            .text
            .split("action=\"/audit/break-glass/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            r.text
                .contains(&format!("<label for=\"note-{grant}\">Review note</label>"))
        );
        assert!(r.text.contains("<option value=\"unreviewed\" selected>"));
        let r = app
            .send(page(Req::get("/audit/break-glass?show=reviewed"), &auditor))
            .await;
        assert!(
            r.text
                .contains("No break-glass access has been reviewed yet.")
        );

        // An admin may neither review by the API nor by the page.
        let r = app
            .send(
                Req::post(format!("/api/v1/audit/break-glass/{grant}/review"))
                    .cookie(&admin)
                    .same_origin()
                    .json(&json!({"note": "Looks fine"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let path = format!("/audit/break-glass/{grant}/review");
        let r = app
            .send(page(Req::post(&path), &admin).form(&format!("csrf={CSRF}&note=fine")))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // An empty note comes back on its row.
        let r = app
            .send(
                page(Req::post(&path), &auditor)
                    .form(&format!("csrf={CSRF}&note=+++&show=unreviewed")),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains("Write a short note"));
        assert!(
            r.text
                .contains(&format!("aria-describedby=\"note-error-{grant}\""))
        );

        // Reviewed: who and when, the note; the filters follow.
        let note = "Confirmed with the ER log: the emergency was real";
        let r = app
            .send(page(Req::post(&path), &auditor).form(&format!(
                "csrf={CSRF}&show=unreviewed&note={}",
                note.replace(' ', "+").replace(':', "%3A")
            )))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.headers["location"], "/audit/break-glass?show=unreviewed");
        let r = app
            .send(page(
                Req::get("/audit/break-glass?show=unreviewed"),
                &auditor,
            ))
            .await;
        assert!(
            r.text
                .contains("Every break-glass access has been reviewed.")
        );
        let r = app
            .send(page(Req::get("/audit/break-glass?show=reviewed"), &auditor))
            .await;
        assert!(
            r.text.contains(&format!("by {auditor_name}, ")),
            "{}",
            r.text
        );
        assert!(r.text.contains(note));
        assert!(!r.text.contains(&format!("action=\"{path}\"")));

        // Once only.
        let r = app
            .send(page(Req::post(&path), &auditor).form(&format!("csrf={CSRF}&note=again")))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(r.text.contains("This access was already reviewed."));
        assert!(r.text.contains(note), "the first note stands");
        let r = app
            .send(
                Req::post(format!("/api/v1/audit/break-glass/{grant}/review"))
                    .cookie(&auditor)
                    .same_origin()
                    .json(&json!({"note": "again"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT);

        // The API's report and filter.
        let r = app
            .send(
                Req::get("/api/v1/audit/break-glass?reviewed=true")
                    .cookie(&auditor)
                    .same_origin(),
            )
            .await;
        let grants = r.json()["grants"].as_array().unwrap().clone();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0]["review"]["note"], note);
        let r = app
            .send(
                Req::get("/api/v1/audit/break-glass?reviewed=false")
                    .cookie(&auditor)
                    .same_origin(),
            )
            .await;
        assert!(r.json()["grants"].as_array().unwrap().is_empty());

        // Sealed at rest; audited without the note in clear.
        let stored: Vec<u8> = sqlx::query_scalar("SELECT note FROM break_glass_reviews")
            .fetch_one(app.store.pool_for_tests())
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("ER log"));
        let audit = app.practice_audit().await;
        let row = audit
            .iter()
            .find(|row| row.action == "break_glass.review")
            .expect("the review is audited");
        assert_eq!(row.targets, vec![patient.clone(), grant.clone()]);
        assert!(
            row.context
                .as_ref()
                .is_none_or(|c| !String::from_utf8_lossy(c).contains("ER log"))
        );
        app.assert_audit_verifies().await;
    }
}
