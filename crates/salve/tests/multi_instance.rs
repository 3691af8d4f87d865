//! Two Salve processes sharing one PostgreSQL database, writing to the same practice at once,
//! leave one valid audit chain per practice.

mod common;

use common::{Api, Salve, patient_body};
use salve_testkit::TestDatabase;

#[tokio::test]
async fn two_servers_writing_at_once_leave_one_valid_chain() {
    let Some(db) = TestDatabase::postgres().await else {
        common::skip_without_postgres("two_servers_writing_at_once_leave_one_valid_chain");
        return;
    };
    let salve = Salve::for_db(&db);
    let (practice, token) = salve.create_practice_and_token("Lakeside");
    let a = salve.start_server().await;
    let b = salve.start_server().await;
    let apis = [Api::new(&a.base_url, &token), Api::new(&b.base_url, &token)];
    let mut tasks = Vec::new();
    for writer in 0..8usize {
        let api = apis[writer % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..6 {
                let created = api.create_patient(&patient_body(writer * 100 + i)).await;
                let id = created["id"].as_str().unwrap().to_owned();
                let (status, _) = api.get_patient(&id).await;
                assert_eq!(status, 200);
                ids.push(id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), 48);
    // Every patient is visible through either server.
    for (i, id) in ids.iter().enumerate() {
        let (status, _) = apis[(i + 1) % 2].get_patient(id).await;
        assert_eq!(status, 200);
    }
    a.stop_async().await;
    b.stop_async().await;
    let out = salve.audit_verify(true).assert_success();
    assert!(out.stdout.contains("audit verify: OK"), "{}", out.stdout);

    // One chain per practice, without gaps or forks: 1 practice.create + 1 token.create +
    // 48 creates + 48 reads by the writers + 48 reads across servers.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (count, max): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM audit_events WHERE scope = $1")
            .bind(&practice)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(count, 2 + 48 * 3);
    assert_eq!(max, count, "sequence numbers are dense: one line, no forks");
}
