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

/// A message sent through one server reaches a live-update stream opened on the other
/// (PostgreSQL LISTEN/NOTIFY wakes it; the event carries ids and a kind only).
#[tokio::test]
async fn an_inbox_change_on_one_server_reaches_a_stream_on_the_other() {
    let Some(db) = TestDatabase::postgres().await else {
        common::skip_without_postgres(
            "an_inbox_change_on_one_server_reaches_a_stream_on_the_other",
        );
        return;
    };
    let salve = Salve::for_db(&db);
    let practice = salve.create_practice("Lakeside");
    let token = salve.run_ok([
        "admin",
        "create-token",
        "--practice",
        &practice,
        "--scope",
        "patients:read,patients:write,messages:read,messages:write",
    ]);
    let a = salve.start_server().await;
    let b = salve.start_server().await;
    let api_b = Api::new(&b.base_url, &token);
    let patient = api_b.create_patient(&patient_body(7)).await;
    let patient_id = patient["id"].as_str().unwrap().to_owned();

    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!("{}/api/v1/inbox/events", a.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let text = "Your metformin refill is ready for pickup.";
    let sent = api_b
        .client
        .post(api_b.url(&format!("/api/v1/patients/{patient_id}/messages")))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let sent: serde_json::Value = sent.json().await.unwrap();
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();

    // Server A's own check interval is 5 s; the notification must arrive well before a
    // stream would find the change by itself, but the bound here is only a safety net.
    let mut seen = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(&conversation) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no change event on server A: {seen:?}");
    assert!(seen.contains("event: change"), "{seen}");
    assert!(!seen.contains("metformin"), "events carry ids only");
    assert!(
        !seen.contains(&patient_id),
        "events name the conversation, not the patient"
    );
    drop(stream);
    a.stop_async().await;
    b.stop_async().await;
}
