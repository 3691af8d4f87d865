//! Group commit of sends on SQLite: concurrent sends share durable commits, each is answered
//! only after the commit that holds it, and a send that fails (or is abandoned) inside a shared
//! batch leaves no trace while the others in that batch are kept. Run on PostgreSQL too when
//! `SALVE_TEST_POSTGRES_URL` is set (there every send is its own transaction).

use std::sync::Arc;
use std::time::Duration;

use salve_core::audit::{Actor, RequestContext};
use salve_core::patient::{ContactInput, ContactKind, ContactRole, PatientInput, PatientRecord};
use salve_core::permissions::{ContentKind, Principal};
use salve_core::{PatientId, PracticeId, Sensitive, SystemClock};
use salve_crypto::MasterKey;
use salve_store::{
    Backend, ConversationTarget, Direction, Idempotency, MessageChannel, MessageStatus,
    OutboundPlan, PlanRefused, Store, StoreOptions,
};
use salve_testkit::TestDatabase;
use sqlx::Connection;

fn s(v: &str) -> Sensitive<String> {
    Sensitive::new(v.to_owned())
}

async fn open(db: &TestDatabase) -> Arc<Store> {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await.unwrap();
    Arc::new(
        Store::open(&options, MasterKey::generate(), Arc::new(SystemClock))
            .await
            .unwrap(),
    )
}

async fn patient(store: &Store, practice: PracticeId, i: usize) -> PatientId {
    let ictx = store.input_context(practice).await.unwrap();
    let record = PatientRecord::from_input(
        &PatientInput {
            given_name: s(&format!("Given{i}")),
            family_name: s("Family"),
            birth_date: s("1980-01-02"),
            mrn: None,
            preferred_language: None,
            time_zone: None,
            contacts: vec![ContactInput {
                kind: ContactKind::Phone,
                value: s(&format!("+1312555{:04}", 1000 + i)),
                role: ContactRole::Patient,
            }],
        },
        &ictx,
    )
    .unwrap();
    let (created, _) = store
        .create_patient(
            practice,
            &Principal::Operator,
            &RequestContext::default(),
            &record,
            None,
        )
        .await
        .unwrap();
    created.id
}

/// A message that stays in the portal (no outbox job): what the plan closure would return.
fn portal_plan(text: &str) -> OutboundPlan {
    OutboundPlan {
        direction: Direction::Outbound,
        body: s(text),
        kind: ContentKind::Administrative,
        channel: MessageChannel::Portal,
        route: None,
        decision_json: None,
        delivery: "portal".into(),
        status: MessageStatus::Sent,
        status_reason: None,
        legal_basis: None,
        job: None,
    }
}

fn key(n: usize) -> Idempotency {
    let mut key_hash = [0u8; 32];
    key_hash[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Idempotency {
        key_hash,
        request_hash: [7; 32],
    }
}

/// What a send is asked to do in these tests.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Good,
    /// The plan is refused after the send created the patient's thread (a write inside the
    /// shared transaction): that write must be undone.
    Refused,
    /// A patient of another practice: refused before anything is written.
    Missing,
}

/// Sends from many tasks at once; returns (kind, result) per send, in order.
async fn send_all(
    store: &Arc<Store>,
    practice: PracticeId,
    targets: Vec<(Kind, PatientId)>,
    check_visible: Option<String>,
) -> Vec<(Kind, PatientId, Result<String, String>)> {
    let mut tasks = Vec::new();
    for (n, (kind, patient)) in targets.into_iter().enumerate() {
        let store = store.clone();
        let check_visible = check_visible.clone();
        tasks.push(tokio::spawn(async move {
            let result = store
                .send_message(
                    practice,
                    &Principal::Operator,
                    &RequestContext::default(),
                    ConversationTarget::Main(patient),
                    &[],
                    Some(key(n)),
                    |_facts| match kind {
                        Kind::Refused => Err(PlanRefused("refused by the test".into())),
                        _ => Ok(portal_plan(&format!("message {n}"))),
                    },
                )
                .await;
            let result = match result {
                Ok((view, replayed)) => {
                    assert!(!replayed);
                    let id = view.id.to_string();
                    // Acknowledged means durable: another connection sees it at once.
                    if let Some(url) = check_visible {
                        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
                        let n: i64 =
                            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE id = $1")
                                .bind(&id)
                                .fetch_one(&mut conn)
                                .await
                                .unwrap();
                        assert_eq!(n, 1, "a send was answered before its commit");
                        conn.close().await.unwrap();
                    }
                    Ok(id)
                }
                Err(e) => Err(e.to_string()),
            };
            (kind, patient, result)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn count(store: &Store, sql: &str, bind: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind.to_owned())
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap()
}

async fn batch_with_failures(db: &TestDatabase) {
    sqlx::any::install_default_drivers();
    let store = open(db).await;
    let practice = store
        .create_practice(Actor::Cli, "Group Practice", "US", "America/Chicago")
        .await
        .unwrap();
    let other = store
        .create_practice(Actor::Cli, "Other Practice", "US", "America/Chicago")
        .await
        .unwrap();
    let stranger = patient(&store, other.id, 999).await;
    // One patient per refused send (their thread would be new), a few shared by good sends.
    let mut targets = Vec::new();
    let mut good_patients = Vec::new();
    for i in 0..4 {
        good_patients.push(patient(&store, practice.id, i).await);
    }
    for n in 0..48 {
        let kind = match n % 6 {
            1 => Kind::Refused,
            4 => Kind::Missing,
            _ => Kind::Good,
        };
        let target = match kind {
            Kind::Good => good_patients[n % good_patients.len()],
            Kind::Refused => patient(&store, practice.id, 100 + n).await,
            Kind::Missing => stranger,
        };
        targets.push((kind, target));
    }
    // Their threads exist before the concurrent sends (two first messages racing to create a
    // patient's thread is another matter, not this test's).
    for p in &good_patients {
        store
            .send_message(
                practice.id,
                &Principal::Operator,
                &RequestContext::default(),
                ConversationTarget::Main(*p),
                &[],
                None,
                |_| Ok(portal_plan("first")),
            )
            .await
            .unwrap();
    }
    let (batches_before, writes_before) = store.group_commit_counts();
    let results = send_all(&store, practice.id, targets, Some(db.url.clone())).await;
    let (batches_after, writes_after) = store.group_commit_counts();

    let mut good = 0;
    for (kind, patient, result) in &results {
        match kind {
            Kind::Good => {
                let id = result.as_ref().expect("a good send succeeds");
                good += 1;
                assert_eq!(
                    count(&store, "SELECT COUNT(*) FROM messages WHERE id = $1", id).await,
                    1
                );
            }
            Kind::Refused => {
                assert!(result.is_err(), "{kind:?} must fail");
                // The thread the refused send created inside the shared batch is gone.
                assert_eq!(
                    count(
                        &store,
                        "SELECT COUNT(*) FROM conversations WHERE patient_id = $1",
                        &patient.to_string()
                    )
                    .await,
                    0,
                    "a failed send left its writes behind"
                );
            }
            Kind::Missing => assert!(result.is_err(), "{kind:?} must fail"),
        }
    }
    assert_eq!(good, 32);
    let practice_id = practice.id.to_string();
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM messages WHERE practice_id = $1",
            &practice_id
        )
        .await,
        32 + 4,
        "exactly the good sends (and the four first messages) are stored"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM idempotency_keys WHERE practice_id = $1",
            &practice_id
        )
        .await,
        32
    );
    // One audit row per good send in the practice's chain, and every chain verifies.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'message.send' AND scope = $1",
            &practice_id
        )
        .await,
        32 + 4
    );
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    if store.backend() == Backend::Sqlite {
        let (batches, writes) = (batches_after - batches_before, writes_after - writes_before);
        assert_eq!(writes, 32, "every good send was committed through a batch");
        assert!(
            batches < writes,
            "48 concurrent sends never shared a commit ({batches} commits for {writes} sends)"
        );
    }

    // Retrying a good send with its key replays it (nothing is stored twice); a refused one
    // can be sent again once it is fixed.
    let (view, replayed) = store
        .send_message(
            practice.id,
            &Principal::Operator,
            &RequestContext::default(),
            ConversationTarget::Main(good_patients[0]),
            &[],
            Some(key(0)),
            |_| Ok(portal_plan("message 0")),
        )
        .await
        .unwrap();
    assert!(replayed);
    assert_eq!(&view.id.to_string(), results[0].2.as_ref().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_failing_send_does_not_fail_its_batch() {
    for db in TestDatabase::all().await {
        batch_with_failures(&db).await;
    }
}

/// Sends abandoned at random points (their futures dropped, as when a client disconnects)
/// while others share their batches: every acknowledged send is stored once, nothing half-done
/// is left, the chains verify and later writes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_sends_leave_the_batch_consistent() {
    sqlx::any::install_default_drivers();
    let db = TestDatabase::sqlite();
    let store = open(&db).await;
    let practice = store
        .create_practice(Actor::Cli, "Group Practice", "US", "America/Chicago")
        .await
        .unwrap();
    let mut patients = Vec::new();
    for i in 0..8 {
        patients.push(patient(&store, practice.id, i).await);
    }
    let mut tasks = Vec::new();
    for n in 0..64usize {
        let store = store.clone();
        let patient = patients[n % patients.len()];
        tasks.push(tokio::spawn(async move {
            let ctx = RequestContext::default();
            let send = store.send_message(
                practice.id,
                &Principal::Operator,
                &ctx,
                ConversationTarget::Main(patient),
                &[],
                Some(key(n)),
                |_| Ok(portal_plan(&format!("message {n}"))),
            );
            // Every third send is abandoned after a short, varying time.
            if n % 3 == 0 {
                let limit = Duration::from_micros(200 * (n as u64 % 7));
                match tokio::time::timeout(limit, send).await {
                    Ok(Ok((view, _))) => Some(view.id.to_string()),
                    _ => None,
                }
            } else {
                Some(send.await.unwrap().0.id.to_string())
            }
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            acknowledged.push(id);
        }
    }
    assert!(acknowledged.len() >= 42, "every unabandoned send succeeds");
    // A later plain write takes the lock, so anything an abandoned send left is cleaned up.
    patient(&store, practice.id, 500).await;
    for id in &acknowledged {
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM messages WHERE id = $1", id).await,
            1
        );
    }
    let practice_id = practice.id.to_string();
    let messages = count(
        &store,
        "SELECT COUNT(*) FROM messages WHERE practice_id = $1",
        &practice_id,
    )
    .await;
    // An abandoned send may have been committed after its caller left (like a reply lost on
    // the network), but never half: each stored message has its audit row and its key row.
    assert!(messages >= acknowledged.len() as i64);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM idempotency_keys WHERE practice_id = $1",
            &practice_id
        )
        .await,
        messages
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM audit_events WHERE action = 'message.send' AND scope = $1",
            &practice_id
        )
        .await,
        messages
    );
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The database file is not left locked: another connection can write.
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE; ROLLBACK")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The operator sends `text` to the patient's main thread: the message id and whether it was
/// a replay.
async fn operator_sends(
    store: &Store,
    practice: PracticeId,
    patient: PatientId,
    key: Option<Idempotency>,
    text: &str,
) -> Result<(String, bool), salve_store::StoreError> {
    store
        .send_message(
            practice,
            &Principal::Operator,
            &RequestContext::default(),
            ConversationTarget::Main(patient),
            &[],
            key,
            |_| Ok(portal_plan(text)),
        )
        .await
        .map(|(view, replayed)| (view.id.to_string(), replayed))
}

/// Many requests with one `Idempotency-Key` at once (a client retrying before its first try
/// was answered): one message is stored, with one key row and one send audit row; on SQLite
/// every other request replays it (a key recorded since the send's read snapshot is caught under
/// the write lock and the send retried); on PostgreSQL one still in progress may get 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_with_one_key_store_one_message() {
    sqlx::any::install_default_drivers();
    for db in TestDatabase::all().await {
        let store = open(&db).await;
        let practice = store
            .create_practice(Actor::Cli, "Group Practice", "US", "America/Chicago")
            .await
            .unwrap();
        let target = patient(&store, practice.id, 1).await;
        // The thread exists, so every send is planned from its read snapshot on SQLite.
        operator_sends(&store, practice.id, target, None, "first")
            .await
            .unwrap();
        // Other keys in the same batches, so the retried sends share them.
        let mut tasks = Vec::new();
        for n in 0..32usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = if n % 2 == 0 { key(4242) } else { key(n) };
                operator_sends(&store, practice.id, target, Some(key), "the same request")
                    .await
                    .map(|(id, replayed)| (n, id, replayed))
            }));
        }
        let (mut created, mut replayed, mut in_progress) = (Vec::new(), Vec::new(), 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok((n, id, false)) => created.push((n, id)),
                Ok((n, id, true)) => replayed.push((n, id)),
                Err(salve_store::StoreError::Conflict(_))
                    if store.backend() == Backend::Postgres =>
                {
                    in_progress += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        let shared: Vec<_> = created.iter().filter(|(n, _)| n % 2 == 0).collect();
        assert_eq!(
            shared.len(),
            1,
            "one request with the shared key stored its message"
        );
        assert_eq!(created.len(), 17);
        assert_eq!(replayed.len() + in_progress, 15);
        assert!(
            replayed
                .iter()
                .all(|(n, id)| n % 2 == 0 && *id == shared[0].1)
        );
        let practice_id = practice.id.to_string();
        for (sql, want) in [
            (
                "SELECT COUNT(*) FROM messages WHERE practice_id = $1",
                1 + 17,
            ),
            (
                "SELECT COUNT(*) FROM idempotency_keys WHERE practice_id = $1",
                17,
            ),
            (
                "SELECT COUNT(*) FROM audit_events WHERE action = 'message.send' AND scope = $1",
                1 + 17,
            ),
            (
                "SELECT COUNT(*) FROM audit_events WHERE action = 'message.duplicate' AND scope = $1",
                replayed.len() as i64,
            ),
        ] {
            assert_eq!(count(&store, sql, &practice_id).await, want, "{sql}");
        }
        let report = store.verify_audit(None).await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
