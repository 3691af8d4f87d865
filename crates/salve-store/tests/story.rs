//! One conformance story for the `Store`, run on SQLite always and on PostgreSQL when
//! `SALVE_TEST_POSTGRES_URL` is set (mandatory in CI), each in a fresh database.

use std::sync::Arc;

use salve_core::audit::{Actor, RequestContext};
use salve_core::patient::{
    ContactInput, ContactKind, ContactRole, PatientInput, PatientPatchInput, PatientRecord,
};
use salve_core::{ManualClock, PatientId, Sensitive};
use salve_crypto::MasterKey;
use salve_store::{Lookup, Store, StoreError, StoreOptions};
use salve_testkit::{Kind, TestDatabase};
use time::macros::datetime;

fn s(v: &str) -> Sensitive<String> {
    Sensitive::new(v.to_owned())
}

fn input(given: &str, family: &str, mrn: Option<&str>, phone: &str, email: &str) -> PatientInput {
    PatientInput {
        given_name: s(given),
        family_name: s(family),
        birth_date: s("1984-07-02"),
        mrn: mrn.map(s),
        preferred_language: Some("es".into()),
        time_zone: None,
        contacts: vec![
            ContactInput {
                kind: ContactKind::Phone,
                value: s(phone),
                role: ContactRole::Patient,
            },
            ContactInput {
                kind: ContactKind::Email,
                value: s(email),
                role: ContactRole::Patient,
            },
        ],
    }
}

async fn open(db: &TestDatabase, master: MasterKey) -> Result<Store, StoreError> {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await?;
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-25 09:00 UTC)));
    Store::open(&options, master, clock).await
}

async fn audit_actions(store: &Store, scope: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, targets FROM audit_events WHERE scope = $1 ORDER BY seq")
        .bind(scope)
        .fetch_all(store.pool_for_tests())
        .await
        .unwrap()
}

#[tokio::test]
async fn patient_story_on_every_backend() {
    for db in TestDatabase::all().await {
        patient_story(&db).await;
    }
}

async fn patient_story(db: &TestDatabase) {
    let store = open(db, MasterKey::generate()).await.unwrap();
    // Migrating again is a no-op.
    Store::migrate(&StoreOptions::new(db.url.clone()))
        .await
        .unwrap();

    let practice = store
        .create_practice(
            Actor::Cli,
            "Lakeside Family Medicine",
            "us",
            "America/Chicago",
        )
        .await
        .unwrap();
    let other = store
        .create_practice(Actor::Cli, "Other Clinic", "US", "America/New_York")
        .await
        .unwrap();
    let actor = salve_core::permissions::Principal::Operator;
    let ctx = RequestContext::default();
    let ictx = store.input_context(practice.id).await.unwrap();

    let ana = PatientRecord::from_input(
        &input(
            "Ana",
            "Ruiz",
            Some("mrn-1"),
            "(312) 555-0142",
            "Ana.Ruiz@Example.org",
        ),
        &ictx,
    )
    .unwrap();
    let (ana, replayed) = store
        .create_patient(practice.id, &actor, &ctx, &ana, None)
        .await
        .unwrap();
    assert!(!replayed);
    // Same family phone, different patient.
    let leo = PatientRecord::from_input(
        &input("Leo", "Ruiz", None, "+13125550142", "leo@example.org"),
        &ictx,
    )
    .unwrap();
    let (leo, _) = store
        .create_patient(practice.id, &actor, &ctx, &leo, None)
        .await
        .unwrap();

    let read = store
        .read_patient(practice.id, &actor, &ctx, ana.id)
        .await
        .unwrap();
    assert_eq!(read.record, ana.record);
    assert_eq!(read.record.contacts[0].value.expose(), "+13125550142");

    // Another practice cannot see it.
    assert!(matches!(
        store.read_patient(other.id, &actor, &ctx, ana.id).await,
        Err(StoreError::NotFound)
    ));

    let by_phone = store
        .lookup_patients(practice.id, &actor, &ctx, &Lookup::Phone(s("+13125550142")))
        .await
        .unwrap();
    let mut ids: Vec<PatientId> = by_phone.iter().map(|p| p.id).collect();
    ids.sort();
    let mut expected = vec![ana.id, leo.id];
    expected.sort();
    assert_eq!(ids, expected);
    let by_email = store
        .lookup_patients(
            practice.id,
            &actor,
            &ctx,
            &Lookup::Email(s("ana.ruiz@EXAMPLE.org")),
        )
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    let by_mrn = store
        .lookup_patients(practice.id, &actor, &ctx, &Lookup::Mrn(s("MRN-1")))
        .await
        .unwrap();
    assert_eq!(by_mrn[0].id, ana.id);
    assert!(
        store
            .lookup_patients(other.id, &actor, &ctx, &Lookup::Mrn(s("MRN-1")))
            .await
            .unwrap()
            .is_empty()
    );

    // MRNs are unique within a practice.
    let dup = PatientRecord::from_input(
        &input("X", "Y", Some("MRN-1"), "+13125550100", "x@example.org"),
        &ictx,
    )
    .unwrap();
    assert!(matches!(
        store
            .create_patient(practice.id, &actor, &ctx, &dup, None)
            .await,
        Err(StoreError::Conflict(_))
    ));

    let found = store
        .search_patients(practice.id, &actor, &ctx, "ruiz", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let patch = PatientPatchInput {
        family_name: Some(s("Ortega")),
        ..Default::default()
    };
    let updated = store
        .update_patient(practice.id, &actor, &ctx, ana.id, &patch, &ictx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, 2);
    // The name index follows the update.
    let found = store
        .search_patients(practice.id, &actor, &ctx, "ortega", 10)
        .await
        .unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), vec![ana.id]);

    let page = store
        .list_patients(practice.id, &actor, &ctx, None, 1)
        .await
        .unwrap();
    assert_eq!(page.patients.len(), 1);
    let page2 = store
        .list_patients(practice.id, &actor, &ctx, page.next_after, 1)
        .await
        .unwrap();
    assert_eq!(page2.patients.len(), 1);
    assert!(page2.next_after.is_none());

    // One audit event per call, naming the patients.
    let actions = audit_actions(&store, &practice.id.to_string()).await;
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "practice.create",
            "patient.create",
            "patient.create",
            "patient.read",
            "patient.lookup",
            "patient.lookup",
            "patient.lookup",
            "patient.search",
            "patient.update",
            "patient.search",
            "patient.list",
            "patient.list",
        ]
    );
    assert!(
        actions[4].1.contains(&ana.id.to_string()) && actions[4].1.contains(&leo.id.to_string())
    );
    // The failed duplicate create left no row and no event.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients")
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap();
    assert_eq!(count, 2);
    // The cross-practice read was recorded on the other practice's chain as a failure.
    let other_actions = audit_actions(&store, &other.id.to_string()).await;
    assert!(
        other_actions
            .iter()
            .any(|(a, t)| a == "patient.read" && t.contains(&ana.id.to_string()))
    );

    // Shredding one patient leaves the other readable and every chain verifiable.
    store
        .shred_patient(practice.id, &actor, &ctx, leo.id)
        .await
        .unwrap();
    assert!(matches!(
        store.read_patient(practice.id, &actor, &ctx, leo.id).await,
        Err(StoreError::Shredded)
    ));
    assert!(
        store
            .read_patient(practice.id, &actor, &ctx, ana.id)
            .await
            .is_ok()
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_keys WHERE patient_id = $1")
        .bind(leo.id.to_string())
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap();
    assert_eq!(left, 0);
    store.write_checkpoints(None).await.unwrap();
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chains, 3);
    store.close().await;
}

#[tokio::test]
async fn schemas_of_both_backends_are_the_same() {
    let sqlite = TestDatabase::sqlite();
    let Some(pg) = TestDatabase::postgres().await else {
        eprintln!(
            "skipped: schema comparison needs PostgreSQL ({})",
            salve_testkit::POSTGRES_ENV
        );
        return;
    };
    let a = open(&sqlite, MasterKey::generate()).await.unwrap();
    let b = open(&pg, MasterKey::generate()).await.unwrap();
    let sa = a.describe_schema().await.unwrap();
    let sb = b.describe_schema().await.unwrap();
    assert!(!sa.tables.is_empty());
    assert_eq!(sa.tables, sb.tables);
    assert_eq!(sa.indexes, sb.indexes);
}

#[tokio::test]
async fn a_wrong_master_key_is_refused() {
    for db in TestDatabase::all().await {
        let store = open(&db, MasterKey::generate()).await.unwrap();
        store.close().await;
        let err = open(&db, MasterKey::generate()).await.unwrap_err();
        assert!(matches!(err, StoreError::WrongMasterKey { .. }), "{err}");
        assert!(err.to_string().contains("does not belong to this database"));
    }
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    for db in TestDatabase::all().await {
        let store = open(&db, MasterKey::generate()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', $1, $2, 0)",
        )
        .bind(true)
        .bind(vec![0u8; 48])
        .execute(store.pool_for_tests())
        .await
        .unwrap();
        store.close().await;
        let options = StoreOptions::new(db.url.clone());
        let err = Store::migrate(&options).await.unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }
}

#[tokio::test]
async fn a_failing_audit_insert_undoes_the_action() {
    for db in TestDatabase::all().await {
        let store = open(&db, MasterKey::generate()).await.unwrap();
        let practice = store
            .create_practice(Actor::Cli, "P", "US", "America/Chicago")
            .await
            .unwrap();
        let trigger = match db.kind {
            Kind::Sqlite => vec![
                "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END",
            ],
            Kind::Postgres => vec![
                "CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_fails()",
            ],
        };
        for sql in trigger {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(store.pool_for_tests())
                .await
                .unwrap();
        }
        let ictx = store.input_context(practice.id).await.unwrap();
        let rec = PatientRecord::from_input(
            &input("A", "B", None, "+13125550142", "a@example.org"),
            &ictx,
        )
        .unwrap();
        assert!(
            store
                .create_patient(
                    practice.id,
                    &salve_core::permissions::Principal::Operator,
                    &RequestContext::default(),
                    &rec,
                    None
                )
                .await
                .is_err()
        );
        for table in ["patients", "patient_keys", "contacts"] {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(store.pool_for_tests())
                    .await
                    .unwrap();
            assert_eq!(n, 0, "{table} must be untouched");
        }
    }
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_does_not_open() {
    for db in TestDatabase::all().await {
        let store = open(&db, MasterKey::generate()).await.unwrap();
        let practice = store
            .create_practice(Actor::Cli, "P", "US", "America/Chicago")
            .await
            .unwrap();
        let ictx = store.input_context(practice.id).await.unwrap();
        let ctx = RequestContext::default();
        let mk = |given: &str, phone: &str| {
            PatientRecord::from_input(
                &input(given, "Doe", None, phone, &format!("{given}@example.org")),
                &ictx,
            )
            .unwrap()
        };
        let (a, _) = store
            .create_patient(
                practice.id,
                &salve_core::permissions::Principal::Operator,
                &ctx,
                &mk("Ann", "+13125550111"),
                None,
            )
            .await
            .unwrap();
        let (b, _) = store
            .create_patient(
                practice.id,
                &salve_core::permissions::Principal::Operator,
                &ctx,
                &mk("Bob", "+13125550112"),
                None,
            )
            .await
            .unwrap();
        // An insider swaps a sealed value between rows (same key ring, different row).
        let a_name: Vec<u8> = sqlx::query_scalar("SELECT given_name FROM patients WHERE id = $1")
            .bind(a.id.to_string())
            .fetch_one(store.pool_for_tests())
            .await
            .unwrap();
        sqlx::query("UPDATE patients SET given_name = $1 WHERE id = $2")
            .bind(a_name.clone())
            .bind(b.id.to_string())
            .execute(store.pool_for_tests())
            .await
            .unwrap();
        let err = store
            .read_patient(
                practice.id,
                &salve_core::permissions::Principal::Operator,
                &ctx,
                b.id,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Crypto(_)), "{err}");
        // Within its own row but in another column it fails too.
        sqlx::query("UPDATE patients SET family_name = $1 WHERE id = $2")
            .bind(a_name)
            .bind(a.id.to_string())
            .execute(store.pool_for_tests())
            .await
            .unwrap();
        assert!(matches!(
            store
                .read_patient(
                    practice.id,
                    &salve_core::permissions::Principal::Operator,
                    &ctx,
                    a.id
                )
                .await,
            Err(StoreError::Crypto(_))
        ));
    }
}
