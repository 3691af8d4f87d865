//! The appointments API end to end, on SQLite and (with `SALVE_TEST_POSTGRES_URL`) PostgreSQL:
//! booking with Idempotency-Key, changes with If-Match, cancellation, reading the status back,
//! lists, practice isolation, permissions, the audit trail, and the CSV import.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use common::{App, Reply, Req, patient_body};
use salve_core::CatalogItemId;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{Principal, Role, Scope};
use salve_store::CatalogKind;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Catalog {
    checkup: CatalogItemId,
    main_st: CatalogItemId,
    dr_lee: CatalogItemId,
    retired: CatalogItemId,
}

async fn catalog(app: &App) -> Catalog {
    let item = |kind, name: &'static str, active| async move {
        app.store
            .upsert_catalog_item(
                app.practice,
                &Principal::Operator,
                &RequestContext::default(),
                kind,
                name,
                true,
                active,
            )
            .await
            .unwrap()
    };
    Catalog {
        checkup: item(CatalogKind::AppointmentType, "Annual checkup", true).await,
        main_st: item(CatalogKind::Location, "Main St", true).await,
        dr_lee: item(CatalogKind::Provider, "Dr Lee", true).await,
        retired: item(CatalogKind::Provider, "Dr Gone", false).await,
    }
}

fn body(patient: &str, c: &Catalog, starts_at: &str) -> Value {
    json!({
        "patient_id": patient,
        "starts_at": starts_at,
        "time_zone": "America/Chicago",
        "duration_minutes": 30,
        "appointment_type_id": c.checkup.to_string(),
        "location_id": c.main_st.to_string(),
        "provider_id": c.dr_lee.to_string(),
    })
}

/// A CSV upload (the shared harness sends JSON and forms only).
async fn upload(app: &App, path: &str, auth: (&str, &str), content_type: &str, csv: &str) -> Reply {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header(auth.0, auth.1)
        .header(header::CONTENT_TYPE, content_type)
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(csv.to_owned()))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(app.fresh_ip(), 40000)));
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

async fn count_appointments(app: &App) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM appointments")
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap()
}

#[tokio::test]
async fn appointments_through_the_api() {
    for db in TestDatabase::all().await {
        api_story(&App::new(db).await).await;
    }
}

async fn api_story(app: &App) {
    let c = catalog(app).await;
    let ana = app
        .create_patient(
            &app.token,
            &patient_body("Ana", Some("MRN-1"), "+13125550142"),
        )
        .await;
    let t = &app.token;

    // Booking, with an Idempotency-Key: the replay answers the first appointment.
    let mut new = body(&ana, &c, "2026-12-07T09:30:00-06:00");
    new["external_id"] = json!("EHR-991");
    let first = app
        .send(
            Req::post("/api/v1/appointments")
                .bearer(t)
                .header("idempotency-key", "book-1")
                .json(&new),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let a = first.json();
    let id = a["id"].as_str().unwrap().to_owned();
    assert_eq!(a["starts_at"], "2026-12-07T09:30:00-06:00");
    assert_eq!(a["status"], "booked");
    assert_eq!(a["status_source"], "api");
    assert_eq!(a["appointment_type"]["name"], "Annual checkup");
    assert_eq!(a["location"]["name"], "Main St");
    assert_eq!(a["provider"]["name"], "Dr Lee");
    assert_eq!(a["external_id"], "EHR-991");
    assert_eq!(
        first.headers[header::LOCATION],
        format!("/api/v1/appointments/{id}").as_str()
    );
    let replay = app
        .send(
            Req::post("/api/v1/appointments")
                .bearer(t)
                .header("idempotency-key", "book-1")
                .json(&new),
        )
        .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json()["id"], a["id"]);
    let mut other_body = new.clone();
    other_body["duration_minutes"] = json!(45);
    let mismatch = app
        .send(
            Req::post("/api/v1/appointments")
                .bearer(t)
                .header("idempotency-key", "book-1")
                .json(&other_body),
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        mismatch.problem_type(),
        "urn:salve:problem:idempotency-key-reused"
    );
    assert_eq!(count_appointments(app).await, 1);

    // Bad input: 422 naming every field; unknown patient 404; inactive provider 422.
    let mut bad = body(&ana, &c, "2026-12-07T09:30:00");
    bad["time_zone"] = json!("Mars/Olympus");
    bad["duration_minutes"] = json!(2);
    let r = app
        .send(Req::post("/api/v1/appointments").bearer(t).json(&bad))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, vec!["starts_at", "time_zone", "duration_minutes"]);
    let mut gone = body(&ana, &c, "2026-12-07T09:30:00-06:00");
    gone["provider_id"] = json!(c.retired.to_string());
    let r = app
        .send(Req::post("/api/v1/appointments").bearer(t).json(&gone))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["field"], "provider_id");
    let nobody = body(
        &uuid::Uuid::new_v4().to_string(),
        &c,
        "2026-12-07T09:30:00-06:00",
    );
    let r = app
        .send(Req::post("/api/v1/appointments").bearer(t).json(&nobody))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Staff reschedule it (If-Match), a stale version is refused, then it is cancelled.
    let (_, cookie) = app.signed_in_staff(Role::Staff).await;
    let path = format!("/api/v1/appointments/{id}");
    let moved = app
        .send(
            Req::patch(&path)
                .cookie(&cookie)
                .same_origin()
                .header("if-match", "\"1\"")
                .json(&json!({"starts_at": "2026-12-08T10:00:00-06:00", "duration_minutes": 45})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.json()["version"], 2);
    assert_eq!(moved.json()["starts_at"], "2026-12-08T10:00:00-06:00");
    assert_eq!(
        moved.json()["status_source"],
        "api",
        "the status itself did not change"
    );
    assert_eq!(moved.headers[header::ETAG], "\"2\"");
    let stale = app
        .send(
            Req::patch(&path)
                .cookie(&cookie)
                .same_origin()
                .header("if-match", "\"1\"")
                .json(&json!({"duration_minutes": 60})),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.text
    );
    let r = app
        .send(
            Req::patch(&path)
                .bearer(t)
                .json(&json!({"status": "finished"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["errors"][0]["field"], "status");
    let cancelled = app
        .send(
            Req::post(format!("{path}/cancel"))
                .cookie(&cookie)
                .same_origin(),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.json()["status"], "cancelled");
    assert_eq!(cancelled.json()["status_source"], "staff");

    // The EHR reads the status back.
    let read = app.send(Req::get(&path).bearer(t)).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json()["status"], "cancelled");
    assert_eq!(read.json()["version"], 3);

    // Lists: one patient's, a window; a window is required without a patient.
    let second = app
        .send(Req::post("/api/v1/appointments").bearer(t).json(&body(
            &ana,
            &c,
            "2026-12-20T08:00:00-06:00",
        )))
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let ids = |r: &Reply| -> Vec<String> {
        r.json()["appointments"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.text))
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app
        .send(Req::get(format!("/api/v1/appointments?patient_id={ana}")).bearer(t))
        .await;
    assert_eq!(ids(&all).len(), 2);
    let window = app
        .send(
            Req::get("/api/v1/appointments?from=2026-12-01T00:00:00Z&to=2026-12-10T00:00:00Z")
                .bearer(t),
        )
        .await;
    assert_eq!(ids(&window), vec![id.clone()]);
    let r = app.send(Req::get("/api/v1/appointments").bearer(t)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(
            Req::get("/api/v1/appointments?from=2026-12-01T00:00:00Z&to=2027-03-01T00:00:00Z")
                .bearer(t),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Another practice can neither see nor change it.
    let o = &app.other_token;
    assert_eq!(
        app.send(Req::get(&path).bearer(o)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Req::post(format!("{path}/cancel")).bearer(o))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(
            Req::patch(&path)
                .bearer(o)
                .json(&json!({"duration_minutes": 60}))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let theirs = app
        .send(
            Req::get("/api/v1/appointments?from=2026-12-01T00:00:00Z&to=2026-12-10T00:00:00Z")
                .bearer(o),
        )
        .await;
    assert!(ids(&theirs).is_empty());
    assert_eq!(
        app.send(Req::get(format!("/api/v1/appointments?patient_id={ana}")).bearer(o))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Req::get("/api/v1/appointments/not-an-id").bearer(t))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Permissions: auditors see no appointments; a token needs the appointments scopes.
    let (_, auditor) = app.signed_in_staff(Role::Auditor).await;
    assert_eq!(
        app.send(Req::get(&path).cookie(&auditor)).await.status,
        StatusCode::FORBIDDEN
    );
    let minted = salve_crypto::token::mint("salve");
    app.store
        .create_token(
            Actor::Cli,
            app.practice,
            &[Scope::PatientsRead, Scope::AppointmentsRead],
            "reader",
            &minted.hash,
        )
        .await
        .unwrap();
    let reader = minted.secret.as_str().to_owned();
    assert_eq!(
        app.send(Req::get(&path).bearer(&reader)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(Req::post(format!("{path}/cancel")).bearer(&reader))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let (_, clinician) = app.signed_in_staff(Role::Clinician).await;
    assert_eq!(
        app.send(Req::get(&path).cookie(&clinician)).await.status,
        StatusCode::OK
    );

    // Audit: creation, changes and reads, naming only ids.
    let audit = app.practice_audit().await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|r| r.action.as_str())
        .filter(|a| a.starts_with("appointment."))
        .collect();
    for wanted in [
        "appointment.create",
        "appointment.update",
        "appointment.cancel",
        "appointment.read",
    ] {
        assert!(actions.contains(&wanted), "{wanted}: {actions:?}");
    }
    let create = audit
        .iter()
        .find(|r| r.action == "appointment.create")
        .unwrap();
    assert_eq!(create.targets, vec![ana.clone(), id.clone()]);
    let text = format!("{audit:?}");
    for phi in [
        "EHR-991",
        "MRN-1",
        "Annual checkup",
        "Dr Lee",
        "Main St",
        "2026-12",
    ] {
        assert!(!text.contains(phi), "{phi} in the audit log");
    }
    app.assert_audit_verifies().await;
}

const HEADER: &str = "external_id,patient_mrn,starts_at,time_zone,duration_minutes,appointment_type,location,provider\n";

#[tokio::test]
async fn appointments_imported_from_csv() {
    for db in TestDatabase::all().await {
        import_story(&App::new(db).await).await;
    }
}

async fn import_story(app: &App) {
    catalog(app).await;
    let ana = app
        .create_patient(
            &app.token,
            &patient_body("Ana", Some("MRN-1"), "+13125550142"),
        )
        .await;
    app.create_patient(
        &app.token,
        &patient_body("Leo", Some("MRN-2"), "+13125550143"),
    )
    .await;
    let (k, v) = bearer(&app.token);
    let auth = (k, v.as_str());
    let path = "/api/v1/appointments/import";

    // A dry run lists every bad row, escaping what it echoes and never echoing an MRN.
    let bad = format!(
        "{HEADER}\
         E-1,MRN-1,2026-12-07 09:00,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-2,MRN-2,2026-12-07 09:00,Mars/Olympus,30,Annual checkup,Main St,Dr Lee\n\
         E-3,MRN-2,2027-03-14 02:30,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-4,MRN-404,2026-12-07 09:00,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-5,MRN-2,2026-12-07 09:00,America/Chicago,30,Dental surgery,Main St,Dr Lee\n\
         E-6,MRN-2,2026-12-07 09:00,America/Chicago,999,Annual checkup,Main St,Dr Lee\n\
         E-7,MRN-2,2026-12-07 09:00,America/Chicago,30,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",Main St,Dr Lee\n"
    );
    let dry = upload(app, &format!("{path}?dry_run=true"), auth, "text/csv", &bad).await;
    assert_eq!(dry.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", dry.text);
    let report = dry.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["rows"], 7);
    assert_eq!(report["imported"], 0);
    let errors: Vec<(u64, String, Option<String>)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().unwrap().to_owned(),
                e["value"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (3, "time_zone".into(), Some("Mars/Olympus".into())),
            (4, "starts_at".into(), Some("2027-03-14 02:30".into())),
            (5, "patient_mrn".into(), None),
            (6, "appointment_type".into(), Some("Dental surgery".into())),
            (7, "duration_minutes".into(), Some("999".into())),
            (
                8,
                "appointment_type".into(),
                Some("'=HYPERLINK(\"http://evil.example\",\"x\")".into())
            ),
        ],
        "{}",
        dry.text
    );
    assert!(
        report["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "the DST gap is named"
    );
    assert!(!dry.text.contains("MRN-"), "no MRN echoed: {}", dry.text);

    // The same file for real: the one good row is not imported either.
    let r = upload(app, path, auth, "text/csv", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["dry_run"], false);
    assert_eq!(r.json()["imported"], 0);
    assert_eq!(count_appointments(app).await, 0);

    // A clean file imports every row; importing it again changes nothing.
    let good = format!(
        "{HEADER}\
         E-1,MRN-1,2026-12-07 09:00,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-2,MRN-2,2026-12-07 09:30,America/Chicago,45,Annual checkup,Main St,Dr Lee\n"
    );
    let clean_dry = upload(
        app,
        &format!("{path}?dry_run=true"),
        auth,
        "text/csv",
        &good,
    )
    .await;
    assert_eq!(clean_dry.status, StatusCode::OK, "{}", clean_dry.text);
    assert_eq!(count_appointments(app).await, 0);
    let done = upload(app, path, auth, "text/csv", &good).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.json()["imported"], 2);
    assert_eq!(count_appointments(app).await, 2);
    let again = upload(app, path, auth, "text/csv", &good).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (
            again.json()["imported"].clone(),
            again.json()["unchanged"].clone()
        ),
        (json!(0), json!(2))
    );
    assert_eq!(count_appointments(app).await, 2);
    let listed = app
        .send(Req::get(format!("/api/v1/appointments?patient_id={ana}")).bearer(&app.token))
        .await;
    let a = &listed.json()["appointments"][0];
    assert_eq!(a["starts_at"], "2026-12-07T09:00:00-06:00");
    assert_eq!(a["status_source"], "import");
    assert_eq!(a["external_id"], "E-1");

    // Only CSV; and staff of the front desk may import, auditors may not.
    let r = upload(app, path, auth, "application/json", "{}").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (_, desk) = app.signed_in_staff(Role::Staff).await;
    let cookie = format!("{}={desk}", salve_server::COOKIE);
    let r = upload(app, path, ("cookie", &cookie), "text/csv", &good).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, auditor) = app.signed_in_staff(Role::Auditor).await;
    let cookie = format!("{}={auditor}", salve_server::COOKIE);
    let r = upload(app, path, ("cookie", &cookie), "text/csv", &good).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // One audit event per import, ids only.
    let audit = app.practice_audit().await;
    let imports: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "appointment.import")
        .collect();
    assert_eq!(
        imports
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        vec![
            "failure", "failure", "success", "success", "success", "success"
        ]
    );
    let text = format!("{audit:?}");
    for phi in ["MRN-", "E-1", "Annual checkup", "HYPERLINK"] {
        assert!(!text.contains(phi), "{phi} in the audit log");
    }
    app.assert_audit_verifies().await;
}
