//! The master key: start-up refuses a wrong, missing or group/world-readable key; a two-phase
//! rotation with servers running loses nothing (two servers on PostgreSQL, one on SQLite) and
//! retires the old key for good.

mod common;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Salve, Server, assert_same_patient, patient_body};
use salve_crypto::MasterKey;
use salve_testkit::TestDatabase;
use serde_json::Value;
use sqlx::Connection;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_wrong_missing_or_readable_master_key_refuses_start_up() {
    for db in TestDatabase::all().await {
        let salve = Salve::for_db(&db);
        salve.create_practice("Key Check Practice");
        assert_eq!(mode(&salve.key_file), 0o600, "the key is created 0600");

        // Another valid key.
        let other = db.dir.path().join("other.key");
        MasterKey::create_file(&other).unwrap();
        let out = salve
            .with_key(&other)
            .run_async(salve.serve_args())
            .await
            .assert_failure();
        assert!(
            out.stderr.contains("does not belong to this database"),
            "{:?}: {out}",
            db.kind
        );
        assert!(!out.stderr.contains(common::LISTENING), "{out}");

        // No key at all: refused, and no new key is made up for an existing database.
        let absent = db.dir.path().join("absent.key");
        let out = salve
            .with_key(&absent)
            .run_async(salve.serve_args())
            .await
            .assert_failure();
        assert!(
            out.stderr.contains("master key file") && out.stderr.contains("is missing"),
            "{:?}: {out}",
            db.kind
        );
        assert!(
            !absent.exists(),
            "a new key was created for an existing database"
        );

        // The right key, readable by others.
        std::fs::set_permissions(&salve.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = salve.run_async(salve.serve_args()).await.assert_failure();
        assert!(
            out.stderr
                .contains(&format!("chmod 600 {}", salve.key_file.display())),
            "{:?}: {out}",
            db.kind
        );

        // With the permissions fixed, the same key starts the server.
        std::fs::set_permissions(&salve.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        salve.start_server().await.stop_async().await;
    }
}

/// Every patient acknowledged (201) during a test, with the body it was created from.
#[derive(Clone, Default)]
struct Ledger {
    created: Arc<Mutex<Vec<(String, Value)>>>,
    next: Arc<AtomicUsize>,
}

impl Ledger {
    async fn write(&self, api: &Api) -> Result<(), String> {
        let body = patient_body(self.next.fetch_add(1, Ordering::SeqCst));
        match api.try_create_patient(&body).await {
            Ok((201, json)) => {
                let id = json["id"].as_str().ok_or("no id")?.to_owned();
                self.created.lock().unwrap().push((id, body));
                Ok(())
            }
            Ok((status, json)) => Err(format!(
                "{}: create answered {status}: {json}",
                api.base_url
            )),
            Err(e) => Err(format!("{}: create failed: {e}", api.base_url)),
        }
    }

    fn len(&self) -> usize {
        self.created.lock().unwrap().len()
    }

    /// `each` patients through every server, one after the other.
    async fn write_through(&self, apis: &[Api], each: usize) {
        for api in apis {
            for _ in 0..each {
                self.write(api).await.unwrap();
            }
        }
    }

    /// Runs `during` while one writer per server keeps creating patients: every writer has
    /// written twice before `during` starts and writes twice more after it ends. Any refused
    /// write fails the test.
    async fn while_writing<T>(&self, apis: &[Api], during: impl Future<Output = T>) -> T {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        let mut counts = Vec::new();
        for api in apis {
            let (ledger, api, stop) = (self.clone(), api.clone(), stop.clone());
            let count = Arc::new(AtomicUsize::new(0));
            counts.push(count.clone());
            writers.push(tokio::spawn(async move {
                let mut after_stop = 0;
                loop {
                    ledger.write(&api).await?;
                    count.fetch_add(1, Ordering::SeqCst);
                    if stop.load(Ordering::SeqCst) {
                        after_stop += 1;
                        if after_stop >= 2 {
                            return Ok::<usize, String>(count.load(Ordering::SeqCst));
                        }
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while counts.iter().any(|c| c.load(Ordering::SeqCst) < 2) {
            assert!(
                Instant::now() < deadline,
                "writers did not get going within 30 s"
            );
            if writers.iter().any(|w| w.is_finished()) {
                break; // A writer failed; its error is reported below.
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let out = during.await;
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            let written = w
                .await
                .expect("writer task")
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(written >= 4, "a writer wrote only {written} patients");
        }
        out
    }

    /// Every acknowledged patient reads back, with its data, through every server.
    async fn read_all(&self, apis: &[Api]) {
        let created = self.created.lock().unwrap().clone();
        for api in apis {
            for (id, body) in &created {
                let (status, got) = api.get_patient(id).await;
                assert_eq!(status, 200, "{}: patient {id} answered {got}", api.base_url);
                assert_same_patient(body, &got);
            }
        }
    }
}

fn apis(servers: &[Server], token: &str) -> Vec<Api> {
    servers
        .iter()
        .map(|s| Api::new(&s.base_url, token))
        .collect()
}

/// Rotates the master key with `instances` servers running and writing throughout.
async fn rotation_story(db: &TestDatabase, instances: usize) {
    let started = Instant::now();
    let old = Salve::for_db(db);
    let old_key = old.key_file.clone();
    let new_key = db.dir.path().join("new-master.key");
    let new = old.with_key(&new_key);
    let (_practice, token) = old.create_practice_and_token("Rotation Family Practice");

    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(old.start_server().await);
    }
    let ledger = Ledger::default();
    ledger.write_through(&apis(&servers, &token), 2).await;

    // Phase 1 with the old key, while every server keeps writing.
    let out = ledger
        .while_writing(
            &apis(&servers, &token),
            old.run_async([
                "keys",
                "rotate",
                "--new-key-file",
                new_key.to_str().unwrap(),
            ]),
        )
        .await
        .assert_success();
    assert!(out.stdout.contains("rotation phase 1 done"), "{out}");
    assert_eq!(mode(&new_key), 0o600, "the new key is created 0600");

    // Restart the servers one at a time with the new key; between restarts, old-key and
    // new-key servers work side by side and read each other's patients.
    for i in (0..instances).rev() {
        servers.remove(i).stop_async().await;
        servers.insert(i, new.start_server().await);
        ledger.write_through(&apis(&servers, &token), 2).await;
        ledger.read_all(&apis(&servers, &token)).await;
    }

    // Phase 2 with the new key, again while writing.
    let old_key_arg = old_key.to_str().unwrap();
    let out = ledger
        .while_writing(
            &apis(&servers, &token),
            new.run_async(["keys", "rotate", "--finish", "--old-key-file", old_key_arg]),
        )
        .await
        .assert_success();
    assert!(out.stdout.contains("rotation finished"), "{out}");
    ledger.write_through(&apis(&servers, &token), 2).await;

    // Nothing lost: every acknowledged patient, through every server.
    ledger.read_all(&apis(&servers, &token)).await;
    let count = ledger.len();
    for server in servers {
        server.stop_async().await;
    }

    // The trail is intact, including the anchor file both servers appended to.
    let out = new.audit_verify(false).assert_success();
    assert!(out.stdout.starts_with("audit verify: OK:"), "{out}");
    new.audit_verify(true).assert_success();

    // The old key is retired: nothing is wrapped under it, and it cannot start a server.
    let old_id = MasterKey::load_file(&old_key).unwrap().id().to_owned();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let (state,): (String,) = sqlx::query_as("SELECT state FROM master_keys WHERE id = $1")
        .bind(&old_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let wraps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM key_wraps WHERE master_key_id = $1")
        .bind(&old_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!((state.as_str(), wraps), ("retired", 0));
    let out = old.run_async(old.serve_args()).await.assert_failure();
    assert!(
        out.stderr.contains("was retired by a key rotation"),
        "the old key should be refused as retired: {out}"
    );
    eprintln!(
        "{:?}: rotation with {instances} server(s), {count} patients, in {:?}",
        db.kind,
        started.elapsed()
    );
}

#[tokio::test]
async fn rotation_with_two_servers_on_postgres_loses_nothing() {
    let Some(db) = TestDatabase::postgres().await else {
        common::skip_without_postgres("rotation_with_two_servers_on_postgres_loses_nothing");
        return;
    };
    rotation_story(&db, 2).await;
}

#[tokio::test]
async fn rotation_with_one_server_on_sqlite_loses_nothing() {
    rotation_story(&TestDatabase::sqlite(), 1).await;
}
