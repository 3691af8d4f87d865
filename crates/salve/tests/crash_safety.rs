//! Crash safety of sending (issue 5): `salve serve` is killed with SIGKILL while 64 clients send
//! messages, some of them replaying acknowledged requests with their `Idempotency-Key`, and the
//! rest retrying whatever was not acknowledged against the restarted server. Afterwards every
//! acknowledged message is stored exactly once (with one notification job and one idempotency
//! row), the audit chains verify, and the local outbox shows no notification sent twice.
//!
//! Nothing here waits for time to pass: the kill happens once enough messages were
//! acknowledged, clients stop once enough more were acknowledged after the restart, and every
//! wait is a bounded poll.
//!
//! Outbox jobs the kill left in `sending`: on SQLite the restarted server reconciles all of them
//! at startup (one process owns the database, so they are all a dead worker's); the test does
//! nothing to help, and the outbox would not drain within the test's bound if it did not. On
//! PostgreSQL the server only reconciles jobs whose lease ran out (other instances may be
//! sending), so the test moves their `claimed_at` back past the lease instead of waiting 120 s.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{Api, Salve};
use salve_core::SystemClock;
use salve_core::audit::RequestContext;
use salve_core::permissions::Principal;
use salve_store::{Backend, Store, StoreOptions};
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

/// Concurrent clients.
const CLIENTS: usize = 64;
/// Patients the messages are spread over.
const PATIENTS: usize = 16;
/// The server is killed once this many messages were acknowledged.
const KILL_AFTER_ACKS: usize = 150;
/// After the restart, clients stop starting new messages once this many more were acknowledged.
const ACKS_AFTER_RESTART: usize = 64;
/// Every fourth client replays each acknowledged request once (same key, same body).
const REPLAYING_CLIENT_EVERY: usize = 4;
/// Bound on every wait in this test.
const WAIT: Duration = Duration::from_secs(45);
/// Pause between retries of a request that failed (server down, connection reset).
const RETRY_PAUSE: Duration = Duration::from_millis(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_server_killed_while_64_clients_send_loses_and_repeats_nothing() {
    crash_while_sending(TestDatabase::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_server_killed_while_64_clients_send_loses_and_repeats_nothing() {
    let Some(db) = TestDatabase::postgres().await else {
        common::skip_without_postgres(
            "postgres_server_killed_while_64_clients_send_loses_and_repeats_nothing",
        );
        return;
    };
    crash_while_sending(db).await;
}

/// What the clients share: where the server is now, and progress counters.
struct Shared {
    base_url: RwLock<String>,
    token: String,
    acked: AtomicUsize,
    /// Acknowledged requests whose answer was a replay of a send that had committed before the
    /// client saw its answer (the crash cut the connection, or a timeout).
    recovered_by_replay: AtomicUsize,
    /// Failed attempts (connection refused or reset, timeouts, 5xx, 409 in progress).
    failed_attempts: AtomicUsize,
    stop_new: AtomicBool,
}

/// One logical message as its client saw it acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    text: String,
    patient: String,
    id: String,
    conversation: String,
}

async fn crash_while_sending(db: TestDatabase) {
    let started = Instant::now();
    let salve = Salve::for_db(&db);
    let practice = salve.create_practice("Crash Safety Practice");
    let token = salve.run_ok([
        "admin",
        "create-token",
        "--practice",
        &practice,
        "--scope",
        "patients:read,patients:write,messages:read,messages:write,consent:write",
        "--label",
        "crash test",
    ]);
    let consent_text = publish_consent_text(&salve, &practice).await;

    let server = salve.start_server().await;
    let api = Api::new(&server.base_url, &token);
    let mut patients = Vec::new();
    for created in api.create_patients(PATIENTS).await {
        let id = created["id"].as_str().expect("patient id").to_owned();
        grant_sms_notify(&api, &id, &consent_text).await;
        patients.push(id);
    }
    let patients = Arc::new(patients);

    let shared = Arc::new(Shared {
        base_url: RwLock::new(server.base_url.clone()),
        token: token.clone(),
        acked: AtomicUsize::new(0),
        recovered_by_replay: AtomicUsize::new(0),
        failed_attempts: AtomicUsize::new(0),
        stop_new: AtomicBool::new(false),
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("HTTP client");
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (shared, client, patients) = (shared.clone(), client.clone(), patients.clone());
        tasks.push(tokio::spawn(run_client(c, shared, client, patients)));
    }

    // The crash: SIGKILL once enough messages were acknowledged, with all clients mid-flight.
    wait_for_acks(&shared, KILL_AFTER_ACKS, "before the kill").await;
    let killed_at = started.elapsed();
    let log = server.kill_async().await;
    let acked_at_kill = shared.acked.load(Ordering::SeqCst);
    let (backend, sending_at_kill) = jobs_in_sending(&salve).await;
    if backend == Backend::Postgres {
        let moved = expire_send_leases(&salve).await;
        assert_eq!(moved, sending_at_kill, "leases moved back");
    }
    eprintln!(
        "killed the server at {killed_at:?} after {acked_at_kill} acknowledged messages; \
         {sending_at_kill} outbox jobs were in `sending`"
    );

    // The restart on the same database and data directory; clients find it at its new port.
    let server = salve.start_server().await;
    *shared.base_url.write().unwrap() = server.base_url.clone();
    wait_for_acks(
        &shared,
        acked_at_kill + ACKS_AFTER_RESTART,
        "after the restart",
    )
    .await;
    shared.stop_new.store(true, Ordering::SeqCst);

    let mut acked: Vec<Acked> = Vec::new();
    for task in tasks {
        let mine = tokio::time::timeout(WAIT, task)
            .await
            .unwrap_or_else(|_| {
                panic!("a client did not get its message acknowledged within {WAIT:?}:\n{log}")
            })
            .expect("client task");
        acked.extend(mine);
    }
    let recovered = shared.recovered_by_replay.load(Ordering::SeqCst);
    let failed = shared.failed_attempts.load(Ordering::SeqCst);
    eprintln!(
        "{} messages acknowledged ({} before the kill); {failed} failed attempts retried, \
         {recovered} acknowledged by replaying a send committed before the crash",
        acked.len(),
        acked_at_kill
    );
    assert!(
        failed > 0,
        "no request failed: the kill did not hit any client in flight"
    );

    // Every acknowledgement names its own message: no two keys share an id.
    let ids: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), acked.len(), "two keys were answered with one id");

    // The worker drains the outbox, reconciling the jobs the crash left in `sending`.
    let drain_started = Instant::now();
    let jobs = wait_for_outbox_drained(&salve).await;
    eprintln!(
        "the outbox drained {:?} after the clients finished ({} jobs)",
        drain_started.elapsed(),
        jobs.len()
    );

    let pool_store = open_store(&salve).await;
    let pool = pool_store.pool_for_tests();
    // Exactly the acknowledged messages are stored: none lost, none twice.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE practice_id = $1 AND direction = 'outbound' ORDER BY id",
    )
    .bind(&practice)
    .fetch_all(pool)
    .await
    .expect("stored messages");
    let stored_set: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored.len(), acked.len(), "stored vs acknowledged messages");
    assert_eq!(
        stored_set, ids,
        "stored messages differ from acknowledged ones"
    );
    // One idempotency row per logical message, each naming a different message.
    let keyed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT resource_id, COUNT(*) FROM idempotency_keys WHERE practice_id = $1 \
         GROUP BY resource_id ORDER BY resource_id",
    )
    .bind(&practice)
    .fetch_all(pool)
    .await
    .expect("idempotency rows");
    assert_eq!(keyed.len(), acked.len(), "idempotency rows vs messages");
    assert!(
        keyed
            .iter()
            .all(|(id, n)| *n == 1 && ids.contains(id.as_str())),
        "a message has several idempotency keys, or a key names an unknown message"
    );
    // One notification job per message.
    let per_message: Vec<(String, i64)> = sqlx::query_as(
        "SELECT message_id, COUNT(*) FROM outbox_jobs WHERE practice_id = $1 GROUP BY message_id",
    )
    .bind(&practice)
    .fetch_all(pool)
    .await
    .expect("outbox jobs per message");
    assert_eq!(
        per_message.len(),
        acked.len(),
        "messages with an outbox job"
    );
    assert!(
        per_message.iter().all(|(_, n)| *n == 1),
        "a message has several outbox jobs"
    );
    // One line of audit per practice: dense sequence numbers.
    let (count, max): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_events WHERE scope = $1")
            .bind(&practice)
            .fetch_one(pool)
            .await
            .expect("audit chain");
    assert_eq!(max, count, "audit sequence numbers are dense");
    pool_store.close().await;

    // Through the API, each text is in its patient's thread exactly once, under its id.
    let api = api.at(&server.base_url);
    let mut by_conversation: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for a in &acked {
        by_conversation.entry(&a.conversation).or_default().push(a);
    }
    for (conversation, sent) in by_conversation {
        let resp = api
            .client
            .get(api.url(&format!("/api/v1/conversations/{conversation}")))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("GET /api/v1/conversations/{id}");
        assert_eq!(resp.status().as_u16(), 200, "reading a conversation");
        let detail: Value = resp.json().await.expect("conversation JSON");
        let messages = detail["messages"].as_array().expect("messages");
        for a in sent {
            let found: Vec<&Value> = messages
                .iter()
                .filter(|m| m["text"].as_str() == Some(a.text.as_str()))
                .collect();
            assert_eq!(
                found.len(),
                1,
                "text of {} found {} times",
                a.key,
                found.len()
            );
            assert_eq!(found[0]["id"].as_str(), Some(a.id.as_str()), "{}", a.key);
            assert_eq!(
                detail["conversation"]["patient_id"].as_str(),
                Some(a.patient.as_str())
            );
        }
    }

    // A graceful stop (final checkpoint), then every chain verifies against the anchor.
    let log = server.stop_async().await;
    if backend == Backend::Sqlite && sending_at_kill > 0 {
        assert!(
            log.contains("reconciled outbox jobs left in sending by a previous run"),
            "the restarted server did not reconcile at startup:\n{log}"
        );
    }
    let out = salve.audit_verify(true);
    assert!(out.success(), "audit verify failed: {out}");

    // The local outbox: one notification per job, none sent twice.
    let out = salve.run_async(["outbox", "list"]).await.assert_success();
    let records: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("outbox line is JSON"))
        .collect();
    let twice: Vec<&Value> = records
        .iter()
        .filter(|r| r["attempt"].as_u64() != Some(1))
        .collect();
    assert!(twice.is_empty(), "notifications sent twice: {twice:?}");
    let sent_ids: BTreeSet<String> = records
        .iter()
        .map(|r| r["id"].as_str().expect("outbox id").to_owned())
        .collect();
    assert_eq!(sent_ids.len(), records.len(), "an outbox id appears twice");
    assert_eq!(sent_ids, jobs, "outbox files vs outbox jobs");
    eprintln!("crash test done in {:?}", started.elapsed());
}

/// One client: sends new messages until told to stop, each until it is acknowledged,
/// retrying with the same key and body; every [`REPLAYING_CLIENT_EVERY`]th client also replays
/// each acknowledged request once and checks it gets the same message back.
async fn run_client(
    c: usize,
    shared: Arc<Shared>,
    client: reqwest::Client,
    patients: Arc<Vec<String>>,
) -> Vec<Acked> {
    let mut out = Vec::new();
    let mut i = 0;
    while !shared.stop_new.load(Ordering::SeqCst) {
        let key = format!("crash-{c}-{i}");
        let text = format!("Your lab results are ready to review in the portal (ref {key}).");
        let patient = patients[(c + i) % patients.len()].clone();
        let body = json!({"text": text, "purpose": "care_messages"});
        let (first, _) = send_until_acknowledged(&shared, &client, &patient, &key, &body).await;
        if c.is_multiple_of(REPLAYING_CLIENT_EVERY) {
            let (again, replayed) =
                send_until_acknowledged(&shared, &client, &patient, &key, &body).await;
            assert!(replayed, "{key}: a replay was not marked as one: {again}");
            assert_eq!(
                again["id"], first["id"],
                "{key}: a replay answered another id"
            );
        }
        assert_eq!(
            first["delivery"].as_str(),
            Some("secure_with_notification"),
            "{key}: every message should queue a notification: {first}"
        );
        out.push(Acked {
            key,
            text,
            patient,
            id: first["id"].as_str().expect("message id").to_owned(),
            conversation: first["conversation_id"]
                .as_str()
                .expect("conversation id")
                .to_owned(),
        });
        shared.acked.fetch_add(1, Ordering::SeqCst);
        i += 1;
    }
    out
}

/// Sends one request until the server answers 201; returns the body and whether it was marked
/// as a replay. Connection errors, timeouts, 409 (the same key in progress), 429 and 5xx are
/// retried with the same key and body; anything else fails the test.
async fn send_until_acknowledged(
    shared: &Shared,
    client: &reqwest::Client,
    patient: &str,
    key: &str,
    body: &Value,
) -> (Value, bool) {
    let deadline = Instant::now() + WAIT;
    let mut attempts = 0u32;
    loop {
        assert!(
            Instant::now() < deadline,
            "{key}: not acknowledged within {WAIT:?} ({attempts} attempts)"
        );
        attempts += 1;
        let base = shared.base_url.read().unwrap().clone();
        let sent = client
            .post(format!("{base}/api/v1/patients/{patient}/messages"))
            .bearer_auth(&shared.token)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(_) => {
                shared.failed_attempts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let Ok(text) = resp.text().await else {
            shared.failed_attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        match status {
            201 => {
                let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("{key}: 201 with a body that is not JSON ({e}): {text}")
                });
                if replayed && attempts > 1 {
                    shared.recovered_by_replay.fetch_add(1, Ordering::SeqCst);
                }
                return (json, replayed);
            }
            409 | 429 | 500..=599 => {
                shared.failed_attempts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            _ => panic!("{key}: sending answered {status}: {text}"),
        }
    }
}

/// Waits (bounded) until at least `n` messages were acknowledged.
async fn wait_for_acks(shared: &Shared, n: usize, when: &str) {
    let deadline = Instant::now() + WAIT;
    while shared.acked.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{when}: only {} of {n} messages acknowledged within {WAIT:?}",
            shared.acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Opens the installation's database in this process (the master key is the test's own).
async fn open_store(salve: &Salve) -> Store {
    let key = salve_crypto::MasterKey::load_file(&salve.key_file).expect("master key");
    let mut options = StoreOptions::new(salve.database_url.clone());
    options.max_connections = 2;
    Store::open(&options, key, Arc::new(SystemClock))
        .await
        .expect("open the store")
}

/// Publishes consent text v1. The API only lets an admin session do this (not a token), so
/// the test calls the store as an operator would; returns `(version, sha256 hex)`.
async fn publish_consent_text(salve: &Salve, practice: &str) -> (String, String) {
    let store = open_store(salve).await;
    let published = store
        .publish_consent_text(
            practice.parse().expect("practice id"),
            &Principal::Operator,
            &RequestContext::default(),
            "v1",
            "Lakeside may text you when a secure message is waiting in your portal. \
             The text will not say what the message is about. Reply STOP to end.",
        )
        .await
        .expect("publish the consent text");
    store.close().await;
    (published.version, published.sha256_hex)
}

async fn grant_sms_notify(api: &Api, patient: &str, (version, sha256): &(String, String)) {
    let resp = api
        .client
        .post(api.url(&format!("/api/v1/patients/{patient}/consent")))
        .bearer_auth(&api.token)
        .json(&json!({"events": [{
            "channel": "sms_notify",
            "purpose": "care_messages",
            "action": "grant",
            "method": "intake_form",
            "consent_text": {"version": version, "sha256_hex": sha256},
            "sms_risk_acknowledged": false,
        }]}))
        .send()
        .await
        .expect("POST consent");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        status == 200 || status == 201,
        "recording consent answered {status}: {body}"
    );
}

/// Which database the installation uses, and how many outbox jobs are in `sending`.
async fn jobs_in_sending(salve: &Salve) -> (Backend, u64) {
    let store = open_store(salve).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox_jobs WHERE status = 'sending'")
        .fetch_one(store.pool_for_tests())
        .await
        .expect("jobs in sending");
    let backend = store.backend();
    store.close().await;
    (backend, n as u64)
}

/// PostgreSQL only (see the module comment): the server is dead and its jobs in `sending`
/// will never finish: make their lease run out now (moving `claimed_at` back past [`salve_server::worker::SENDING_LEASE_SECS`]) instead
/// of waiting for it, so the restarted worker reconciles them on its first pass. Returns how
/// many jobs were in `sending`.
async fn expire_send_leases(salve: &Salve) -> u64 {
    let store = open_store(salve).await;
    let past = (salve_server::worker::SENDING_LEASE_SECS + 60) * 1_000_000;
    let moved =
        sqlx::query("UPDATE outbox_jobs SET claimed_at = claimed_at - $1 WHERE status = 'sending'")
            .bind(past)
            .execute(store.pool_for_tests())
            .await
            .expect("expire send leases")
            .rows_affected();
    store.close().await;
    moved
}

/// Polls (bounded) until no outbox job is `pending` or `sending`; asserts they all ended
/// `sent` and returns their ids.
async fn wait_for_outbox_drained(salve: &Salve) -> BTreeSet<String> {
    let store = open_store(salve).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = store.outbox_counts().await.expect("outbox counts");
        let busy = counts
            .iter()
            .any(|(status, n)| (status == "pending" || status == "sending") && *n > 0);
        if !busy {
            assert!(
                counts.iter().all(|(status, _)| status == "sent"),
                "outbox jobs not sent: {counts:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain within {WAIT:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM outbox_jobs")
        .fetch_all(store.pool_for_tests())
        .await
        .expect("outbox job ids");
    store.close().await;
    ids.into_iter().collect()
}
