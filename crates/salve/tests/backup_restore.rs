//! `salve backup` while a server is writing, then `salve restore`: the restored database
//! verifies, a patient shredded after the backup stays shredded (410), the others read back.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, Salve, assert_same_patient, patient_body};
use salve_testkit::TestDatabase;
use serde_json::Value;

type Created = Arc<Mutex<Vec<(String, Value)>>>;

/// Waits until at least `n` patients were acknowledged.
async fn wait_for(created: &Created, n: usize, writer: &tokio::task::JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while created.lock().unwrap().len() < n {
        assert!(!writer.is_finished(), "the writer stopped early");
        assert!(
            Instant::now() < deadline,
            "{n} patients not written in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_backup_taken_during_writes_restores_without_reviving_shredded_patients() {
    let started = Instant::now();
    let db = TestDatabase::sqlite();
    let salve = Salve::for_db(&db);
    let (practice, token) = salve.create_practice_and_token("Backup Family Practice");
    let server = salve.start_server().await;
    let api = Api::new(&server.base_url, &token);

    // A writer creating patients until told to stop; every 201 is recorded.
    let created: Created = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, created, stop) = (api.clone(), created.clone(), stop.clone());
        let next = AtomicUsize::new(0);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let body = patient_body(next.fetch_add(1, Ordering::SeqCst));
                let json = api.create_patient(&body).await;
                let id = json["id"].as_str().unwrap().to_owned();
                created.lock().unwrap().push((id, body));
            }
        })
    };

    // Patients acknowledged before the backup starts are certainly in it.
    wait_for(&created, 3, &writer).await;
    let in_backup = created.lock().unwrap().clone();
    let backup = db.dir.path().join("backup.db");
    let out = salve
        .run_async(["backup", backup.to_str().unwrap()])
        .await
        .assert_success();
    assert!(out.stdout.contains("backup written to"), "{out}");
    let during = created.lock().unwrap().len() - in_backup.len();
    // And patients acknowledged after it finished are certainly not.
    let after_backup = created.lock().unwrap().len();
    wait_for(&created, after_backup + 2, &writer).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let created = created.lock().unwrap().clone();
    let (later_id, _) = created.last().unwrap().clone();
    assert!(created.len() > after_backup);

    // The backup is a consistent database on its own (verified on a copy, so that opening it
    // cannot change the file that is restored below).
    let probe = db.dir.path().join("backup-probe.db");
    std::fs::copy(&backup, &probe).unwrap();
    salve
        .with_database_url(format!("sqlite://{}", probe.display()))
        .audit_verify(false)
        .assert_success();

    // Shred a patient who is in the backup, while the server runs.
    let (shredded_id, _) = in_backup[0].clone();
    let out = salve
        .run_async([
            "admin",
            "shred-patient",
            "--practice",
            &practice,
            "--patient",
            &shredded_id,
            "--confirm",
        ])
        .await
        .assert_success();
    assert!(out.stdout.contains("shredded"), "{out}");
    let (status, body) = api.get_patient(&shredded_id).await;
    assert_eq!(status, 410, "shredded patient before the restore: {body}");
    let shred_list = std::fs::read_to_string(salve.data_dir.join("shred-list.jsonl")).unwrap();
    assert!(shred_list.contains(&shredded_id), "{shred_list}");
    server.stop_async().await;

    // Restore with the server stopped. Both records of the shred are there: the shred list in
    // the data directory and the current database's shredded_patients table.
    let restored = restore(&salve, &backup).await;
    let server = salve.start_server().await;
    let api = api.at(&server.base_url);
    let (status, body) = api.get_patient(&shredded_id).await;
    assert_eq!(
        status, 410,
        "the patient shredded after the backup must stay shredded (410, not 404): {body}"
    );
    for (id, sent) in &in_backup[1..] {
        let (status, got) = api.get_patient(id).await;
        assert_eq!(status, 200, "patient {id} from the backup: {got}");
        assert_same_patient(sent, &got);
    }
    // The restore really went back to the backup: a patient written after it is gone.
    let (status, body) = api.get_patient(&later_id).await;
    assert_eq!(status, 404, "a patient created after the backup: {body}");
    server.stop_async().await;
    salve.audit_verify(false).assert_success();
    let mut restores = vec![restored];

    // Each record suffices on its own. Without the shred list (the current database's table
    // remembers the shred):
    let list = salve.data_dir.join("shred-list.jsonl");
    let saved_list = std::fs::read(&list).unwrap();
    std::fs::remove_file(&list).unwrap();
    restores.push(restore(&salve, &backup).await);
    assert_still_shredded(&salve, &api, &shredded_id, &in_backup[1].0).await;

    // Without the current database, as after losing the disk (the shred list remembers):
    std::fs::write(&list, saved_list).unwrap();
    let db_file = salve.sqlite_path().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db_file.display()));
    }
    restores.push(restore(&salve, &backup).await);
    assert_still_shredded(&salve, &api, &shredded_id, &in_backup[1].0).await;

    eprintln!(
        "backup during writes: {} patients written ({} while the backup ran); restores took {:?}; \
         whole test {:?}",
        created.len(),
        during,
        restores,
        started.elapsed()
    );
}

/// `salve restore FILE`, expecting one patient re-shredded and a verifiable result; returns
/// how long the restore took.
async fn restore(salve: &Salve, backup: &std::path::Path) -> Duration {
    let started = Instant::now();
    let out = salve
        .run_async(["restore", backup.to_str().unwrap()])
        .await
        .assert_success();
    let took = started.elapsed();
    assert!(
        out.stdout
            .contains("1 patients shredded since the backup were shredded again"),
        "{out}"
    );
    let out = salve.audit_verify(false).assert_success();
    assert!(out.stdout.starts_with("audit verify: OK:"), "{out}");
    took
}

/// Starts a server: the shredded patient answers 410, another patient 200.
async fn assert_still_shredded(salve: &Salve, api: &Api, shredded: &str, other: &str) {
    let server = salve.start_server().await;
    let api = api.at(&server.base_url);
    let (status, body) = api.get_patient(shredded).await;
    assert_eq!(status, 410, "shredded patient after the restore: {body}");
    let (status, body) = api.get_patient(other).await;
    assert_eq!(status, 200, "another patient after the restore: {body}");
    server.stop_async().await;
}
