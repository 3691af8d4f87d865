//! The appointments store, on SQLite always and on PostgreSQL when `SALVE_TEST_POSTGRES_URL`
//! is set: create (with idempotency), change, cancel, patient replies, lists, the system's
//! window query, CSV imports, and what the audit log and the database hold.

use std::sync::Arc;

use salve_core::appointments::{AppointmentStatus, StatusSource, Transition, parse_import};
use salve_core::audit::{Actor, RequestContext};
use salve_core::patient::{PatientInput, PatientRecord};
use salve_core::permissions::{Principal, Role, Scope};
use salve_core::{ManualClock, PatientId, PracticeId, Sensitive, TokenId, UserId};
use salve_crypto::MasterKey;
use salve_store::{
    APPOINTMENT_VERSION_CONFLICT, AppointmentFilter, AppointmentPatch, CatalogKind, Idempotency,
    NewAppointment, Store, StoreError, StoreOptions,
};
use salve_testkit::TestDatabase;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2027-03-01 09:00 UTC);

fn s(v: &str) -> Sensitive<String> {
    Sensitive::new(v.to_owned())
}

struct World {
    store: Store,
    practice: PracticeId,
    other: PracticeId,
    ana: PatientId,
    leo: PatientId,
    checkup: salve_core::CatalogItemId,
    main_st: salve_core::CatalogItemId,
    dr_lee: salve_core::CatalogItemId,
    retired: salve_core::CatalogItemId,
}

async fn world(db: &TestDatabase) -> World {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await.unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let store = Store::open(&options, MasterKey::generate(), clock)
        .await
        .unwrap();
    let practice = store
        .create_practice(Actor::Cli, "Lakeside", "US", "America/Chicago")
        .await
        .unwrap()
        .id;
    let other = store
        .create_practice(Actor::Cli, "Other", "US", "America/New_York")
        .await
        .unwrap()
        .id;
    let op = Principal::Operator;
    let ctx = RequestContext::default();
    let ictx = store.input_context(practice).await.unwrap();
    let mut patients = Vec::new();
    for (given, mrn) in [("Ana", "MRN-1"), ("Leo", "MRN-2")] {
        let record = PatientRecord::from_input(
            &PatientInput {
                given_name: s(given),
                family_name: s("Ruiz"),
                birth_date: s("1984-07-02"),
                mrn: Some(s(mrn)),
                preferred_language: None,
                time_zone: None,
                contacts: vec![],
            },
            &ictx,
        )
        .unwrap();
        let (p, _) = store
            .create_patient(practice, &op, &ctx, &record, None)
            .await
            .unwrap();
        patients.push(p.id);
    }
    let item = |kind, name: &'static str, active| {
        let store = &store;
        let ctx = &ctx;
        async move {
            store
                .upsert_catalog_item(
                    practice,
                    &Principal::Operator,
                    ctx,
                    kind,
                    name,
                    true,
                    active,
                )
                .await
                .unwrap()
        }
    };
    World {
        checkup: item(CatalogKind::AppointmentType, "Annual checkup", true).await,
        main_st: item(CatalogKind::Location, "Main St", true).await,
        dr_lee: item(CatalogKind::Provider, "Dr Lee", true).await,
        retired: item(CatalogKind::Provider, "Dr Gone", false).await,
        store,
        practice,
        other,
        ana: patients[0],
        leo: patients[1],
    }
}

fn staff(practice: PracticeId) -> Principal {
    Principal::Staff {
        practice,
        user: UserId::new(),
        role: Role::Staff,
    }
}

fn new_for(w: &World, patient: PatientId, at: OffsetDateTime) -> NewAppointment {
    NewAppointment {
        patient,
        external_id: None,
        starts_at: at,
        time_zone: "America/Chicago".into(),
        duration_minutes: 30,
        appointment_type: w.checkup,
        location: w.main_st,
        provider: w.dr_lee,
    }
}

async fn audit(store: &Store, practice: PracticeId) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT action, targets, outcome FROM audit_events WHERE scope = $1 ORDER BY seq",
    )
    .bind(practice.to_string())
    .fetch_all(store.pool_for_tests())
    .await
    .unwrap()
}

async fn count(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM appointments")
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap()
}

#[tokio::test]
async fn appointment_lifecycle_on_every_backend() {
    for db in TestDatabase::all().await {
        lifecycle(&world(&db).await).await;
    }
}

#[tokio::test]
async fn appointment_imports_on_every_backend() {
    for db in TestDatabase::all().await {
        imports(&world(&db).await).await;
    }
}

async fn lifecycle(w: &World) {
    let store = &w.store;
    let ctx = RequestContext::default();
    let desk = staff(w.practice);
    let at = datetime!(2027-03-15 15:00 UTC);

    // Idempotent create: the same key and body answer the first appointment.
    let idem = Idempotency {
        key_hash: [1; 32],
        request_hash: [2; 32],
    };
    let mut new = new_for(w, w.ana, at);
    new.external_id = Some(s("EHR-77"));
    let (a, replayed) = store
        .create_appointment(w.practice, &desk, &ctx, &new, Some(idem))
        .await
        .unwrap()
        .unwrap();
    assert!(!replayed);
    assert_eq!(
        (a.status, a.status_source, a.version),
        (AppointmentStatus::Booked, StatusSource::Staff, 1)
    );
    let (again, replayed) = store
        .create_appointment(w.practice, &desk, &ctx, &new, Some(idem))
        .await
        .unwrap()
        .unwrap();
    assert!(replayed);
    assert_eq!(again, a);
    assert_eq!(count(store).await, 1);
    let other_body = Idempotency {
        request_hash: [3; 32],
        ..idem
    };
    assert!(matches!(
        store
            .create_appointment(w.practice, &desk, &ctx, &new, Some(other_body))
            .await,
        Err(StoreError::IdempotencyMismatch)
    ));
    // The EHR's id is unique within the practice.
    assert!(matches!(
        store
            .create_appointment(w.practice, &desk, &ctx, &new, None)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Catalog ids must be active items of the right kind.
    let mut bad = new_for(w, w.leo, at);
    bad.provider = w.retired;
    bad.location = w.checkup;
    let errors = store
        .create_appointment(w.practice, &desk, &ctx, &bad, None)
        .await
        .unwrap()
        .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["location_id", "provider_id"]);

    // Read back, decrypted.
    let read = store
        .read_appointment(w.practice, &desk, &ctx, a.id)
        .await
        .unwrap();
    assert_eq!(read, a);
    assert_eq!(read.external_id.as_ref().unwrap().expose(), "EHR-77");

    // Another practice sees nothing, even with the id.
    let stranger = staff(w.other);
    assert!(matches!(
        store.read_appointment(w.other, &stranger, &ctx, a.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .read_appointment(w.practice, &stranger, &ctx, a.id)
            .await,
        Err(StoreError::NotFound)
    ));

    // Reschedule with the right version; a stale version is refused.
    let later = datetime!(2027-03-16 15:00 UTC);
    let moved = store
        .update_appointment(
            w.practice,
            &desk,
            &ctx,
            a.id,
            &AppointmentPatch {
                starts_at: Some(later),
                duration_minutes: Some(45),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (moved.starts_at, moved.duration_minutes, moved.version),
        (later, 45, 2)
    );
    assert!(matches!(
        store
            .update_appointment(w.practice, &desk, &ctx, a.id, &AppointmentPatch::default(), Some(1))
            .await,
        Err(StoreError::Conflict(m)) if m == APPOINTMENT_VERSION_CONFLICT
    ));
    // A patch that changes nothing writes nothing.
    let same = store
        .update_appointment(
            w.practice,
            &desk,
            &ctx,
            a.id,
            &AppointmentPatch {
                duration_minutes: Some(45),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.version, 2);

    // The patient confirms by text; again is no change; then cancels.
    let (confirmed, t) = store
        .set_appointment_status_by_patient_reply(
            w.practice,
            a.id,
            AppointmentStatus::Confirmed,
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(t, Transition::Changed);
    assert_eq!(
        (confirmed.status, confirmed.status_source, confirmed.version),
        (AppointmentStatus::Confirmed, StatusSource::PatientReply, 3)
    );
    let (_, t) = store
        .set_appointment_status_by_patient_reply(
            w.practice,
            a.id,
            AppointmentStatus::Confirmed,
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(t, Transition::Unchanged);
    let (cancelled, _) = store
        .set_appointment_status_by_patient_reply(
            w.practice,
            a.id,
            AppointmentStatus::Cancelled,
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    // Cancelled is final for the patient...
    assert!(matches!(
        store
            .set_appointment_status_by_patient_reply(
                w.practice,
                a.id,
                AppointmentStatus::Confirmed,
                &ctx
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    // ...but staff may rebook it.
    let rebooked = store
        .update_appointment(
            w.practice,
            &desk,
            &ctx,
            a.id,
            &AppointmentPatch {
                status: Some(AppointmentStatus::Booked),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rebooked.status, rebooked.status_source, rebooked.version),
        (AppointmentStatus::Booked, StatusSource::Staff, 5)
    );

    // An API token cancels; cancelling again changes nothing.
    let token = Principal::Token {
        practice: w.practice,
        token: TokenId::new(),
        scopes: vec![Scope::AppointmentsRead, Scope::AppointmentsWrite],
    };
    let gone = store
        .cancel_appointment(w.practice, &token, &ctx, a.id, Some(5))
        .await
        .unwrap();
    assert_eq!(
        (gone.status, gone.status_source, gone.version),
        (AppointmentStatus::Cancelled, StatusSource::Api, 6)
    );
    let again = store
        .cancel_appointment(w.practice, &token, &ctx, a.id, None)
        .await
        .unwrap();
    assert_eq!(again.version, 6);
    // A token without the scope may not.
    let reader = Principal::Token {
        practice: w.practice,
        token: TokenId::new(),
        scopes: vec![Scope::AppointmentsRead],
    };
    assert!(matches!(
        store
            .cancel_appointment(w.practice, &reader, &ctx, a.id, None)
            .await,
        Err(StoreError::Forbidden)
    ));

    // Lists: by patient, by window; the system's query spans practices.
    let (b, _) = store
        .create_appointment(
            w.practice,
            &desk,
            &ctx,
            &new_for(w, w.leo, datetime!(2027-03-20 14:00 UTC)),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let ana_list = store
        .list_appointments(
            w.practice,
            &desk,
            &ctx,
            &AppointmentFilter {
                patient: Some(w.ana),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ana_list.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    let window = store
        .list_appointments(
            w.practice,
            &desk,
            &ctx,
            &AppointmentFilter {
                from: Some(datetime!(2027-03-17 00:00 UTC)),
                to: Some(datetime!(2027-03-21 00:00 UTC)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(window.iter().map(|x| x.id).collect::<Vec<_>>(), vec![b.id]);
    let stranger_list = store
        .list_appointments(w.other, &stranger, &ctx, &AppointmentFilter::default())
        .await
        .unwrap();
    assert!(stranger_list.is_empty());
    let system = store
        .appointments_starting_between(
            datetime!(2027-03-01 00:00 UTC),
            datetime!(2027-04-01 00:00 UTC),
        )
        .await
        .unwrap();
    assert_eq!(
        system.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(
        store
            .appointment_for_system(w.practice, b.id)
            .await
            .unwrap(),
        b
    );
    assert!(matches!(
        store.appointment_for_system(w.other, b.id).await,
        Err(StoreError::NotFound)
    ));

    // A shredded patient's appointments are gone from the system's view.
    store
        .shred_patient(w.practice, &Principal::Operator, &ctx, w.leo)
        .await
        .unwrap();
    let system = store
        .appointments_starting_between(
            datetime!(2027-03-01 00:00 UTC),
            datetime!(2027-04-01 00:00 UTC),
        )
        .await
        .unwrap();
    assert_eq!(system.iter().map(|x| x.id).collect::<Vec<_>>(), vec![a.id]);

    // Audit: every change and read, naming only ids.
    let events = audit(store, w.practice).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|(a, _, _)| a.as_str())
        .filter(|a| a.starts_with("appointment."))
        .collect();
    assert_eq!(
        actions,
        vec![
            "appointment.create",
            "appointment.read", // the idempotent replay
            "appointment.read",
            "appointment.update",
            "appointment.update", // the no-op patch is still recorded
            "appointment.update", // confirmed by the patient
            "appointment.cancel", // cancelled by the patient
            "appointment.update", // rebooked
            "appointment.cancel",
            "appointment.cancel",
            "appointment.create",
            "appointment.read",
            "appointment.read",
        ]
    );
    let patient_actor: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor_kind, actor_id FROM audit_events WHERE action = 'appointment.update' \
         AND actor_kind = 'patient'",
    )
    .fetch_all(store.pool_for_tests())
    .await
    .unwrap();
    assert_eq!(patient_actor, vec![("patient".into(), w.ana.to_string())]);
    for (_, targets, _) in &events {
        assert!(!targets.contains("EHR-77"), "{targets}");
    }
    // The EHR id, type, location and provider are sealed.
    let raw: Vec<u8> = sqlx::query_scalar("SELECT external_id FROM appointments WHERE id = $1")
        .bind(a.id.to_string())
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("EHR-77"));
    let raw: Vec<u8> =
        sqlx::query_scalar("SELECT appointment_type_id FROM appointments WHERE id = $1")
            .bind(a.id.to_string())
            .fetch_one(store.pool_for_tests())
            .await
            .unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(&w.checkup.to_string()));
}

async fn imports(w: &World) {
    let store = &w.store;
    let ctx = RequestContext::default();
    let desk = staff(w.practice);
    let header = "external_id,patient_mrn,starts_at,time_zone,duration_minutes,appointment_type,location,provider\n";
    let good = format!(
        "{header}E-1,MRN-1,2027-03-15 09:00,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-2,mrn-2,2027-03-15 10:00,America/Chicago,30,annual CHECKUP,Main St,Dr Lee\n"
    );
    let bad = format!(
        "{header}E-1,MRN-1,2027-03-15 09:00,America/Chicago,30,Annual checkup,Main St,Dr Lee\n\
         E-3,MRN-404,2027-03-15 11:00,America/Chicago,30,Annual checkup,Main St,Dr Gone\n\
         E-4,MRN-2,2027-03-14 02:30,America/Chicago,30,\"=HYPERLINK(\"\"http://x\"\")\",Main St,Dr Lee\n"
    );
    // Errors from parsing and from resolving, all of them; nothing imported.
    let report = store
        .import_appointments(
            w.practice,
            &desk,
            &ctx,
            &parse_import(bad.as_bytes(), NOW),
            false,
        )
        .await
        .unwrap();
    assert_eq!((report.rows, report.imported), (3, 0));
    let found: Vec<(usize, &str)> = report
        .errors
        .iter()
        .map(|e| (e.row, e.column.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![(3, "patient_mrn"), (3, "provider"), (4, "starts_at")],
        "{:?}",
        report.errors
    );
    assert_eq!(report.errors[0].value, None);
    assert_eq!(report.errors[1].value.as_deref(), Some("Dr Gone"));
    assert_eq!(
        count(store).await,
        0,
        "an import with errors imports nothing"
    );

    // The formula cell, once the row's time is right, is an unknown type echoed escaped.
    let formula = bad.replace("2027-03-14 02:30", "2027-03-14 09:30");
    let report = store
        .import_appointments(
            w.practice,
            &desk,
            &ctx,
            &parse_import(formula.as_bytes(), NOW),
            true,
        )
        .await
        .unwrap();
    let cell = report
        .errors
        .iter()
        .find(|e| e.column == "appointment_type")
        .unwrap();
    assert_eq!(cell.value.as_deref(), Some("'=HYPERLINK(\"http://x\")"));

    // A clean dry run reports and writes nothing.
    let parsed = parse_import(good.as_bytes(), NOW);
    let dry = store
        .import_appointments(w.practice, &desk, &ctx, &parsed, true)
        .await
        .unwrap();
    assert_eq!(
        (dry.dry_run, dry.rows, dry.imported, dry.errors.len()),
        (true, 2, 0, 0)
    );
    assert_eq!(count(store).await, 0);

    // The import writes all rows; running it again changes nothing.
    let done = store
        .import_appointments(w.practice, &desk, &ctx, &parsed, false)
        .await
        .unwrap();
    assert_eq!((done.imported, done.unchanged), (2, 0));
    assert_eq!(count(store).await, 2);
    let again = store
        .import_appointments(w.practice, &desk, &ctx, &parsed, false)
        .await
        .unwrap();
    assert_eq!((again.imported, again.unchanged), (0, 2));
    assert_eq!(count(store).await, 2);
    let listed = store
        .list_appointments(
            w.practice,
            &desk,
            &ctx,
            &AppointmentFilter {
                patient: Some(w.leo),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let leo = &listed[0];
    assert_eq!(leo.external_id.as_ref().unwrap().expose(), "E-2");
    assert_eq!(leo.starts_at, datetime!(2027-03-15 15:00 UTC));
    assert_eq!((leo.status_source, leo.version), (StatusSource::Import, 1));

    // A changed row updates its appointment instead of adding one.
    let moved = good.replace("2027-03-15 10:00", "2027-03-15 11:00");
    let changed = store
        .import_appointments(
            w.practice,
            &desk,
            &ctx,
            &parse_import(moved.as_bytes(), NOW),
            false,
        )
        .await
        .unwrap();
    assert_eq!((changed.imported, changed.unchanged), (1, 1));
    assert_eq!(count(store).await, 2);
    let leo = store
        .read_appointment(w.practice, &desk, &ctx, leo.id)
        .await
        .unwrap();
    assert_eq!(
        (leo.starts_at, leo.version),
        (datetime!(2027-03-15 16:00 UTC), 2)
    );

    // Another practice's import cannot reach these patients.
    let stranger = staff(w.other);
    let report = store
        .import_appointments(w.other, &stranger, &ctx, &parsed, true)
        .await
        .unwrap();
    let unknown: Vec<usize> = report
        .errors
        .iter()
        .filter(|e| e.column == "patient_mrn")
        .map(|e| e.row)
        .collect();
    assert_eq!(unknown, vec![2, 3]);

    // Audit: one event per import attempt, with ids only.
    let events = audit(store, w.practice).await;
    let imports: Vec<(&str, &str)> = events
        .iter()
        .filter(|(a, _, _)| a == "appointment.import")
        .map(|(_, t, o)| (t.as_str(), o.as_str()))
        .collect();
    assert_eq!(imports.len(), 6);
    assert_eq!(imports[0].1, "failure");
    assert_eq!(imports[3].1, "success");
    for (targets, _) in &imports {
        for secret in ["MRN-", "E-1", "E-2", "checkup"] {
            assert!(!targets.contains(secret), "{targets}");
        }
    }
    assert!(imports[3].0.contains(&w.ana.to_string()));
}
