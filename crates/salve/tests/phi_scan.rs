//! Patients with known names, phones, emails, MRNs and birth dates go in through the API; then
//! the database's raw bytes (SQLite file and WAL, or every PostgreSQL row as text), every file
//! Salve wrote, the server's log (at debug level) and the error responses of a batch of bad
//! requests are scanned: none of those strings may appear. The same data reads back intact.

mod common;

use common::{Api, Salve};
use salve_testkit::{Kind, TestDatabase};
use serde_json::{Value, json};

/// Each patient's identifying strings, in every form they could leak in.
struct Person {
    body: Value,
    needles: Vec<String>,
}

fn person(
    given: &str,
    family: &str,
    dob: &str,
    mrn: &str,
    phone_local: &str,
    email: &str,
) -> Person {
    let digits: String = phone_local.chars().filter(char::is_ascii_digit).collect();
    Person {
        body: json!({
            "given_name": given, "family_name": family, "birth_date": dob, "mrn": mrn,
            "preferred_language": "es",
            "contacts": [
                {"kind": "phone", "value": phone_local, "role": "self"},
                {"kind": "email", "value": email, "role": "self"},
            ]
        }),
        needles: vec![
            given.into(),
            family.into(),
            dob.into(),
            mrn.into(),
            mrn.to_ascii_uppercase(),
            format!("+1{digits}"),
            digits.clone(),
            digits[3..].to_string(),
            email.into(),
            email.to_lowercase(),
            email.split('@').next().unwrap().into(),
        ],
    }
}

fn people() -> Vec<Person> {
    vec![
        person(
            "Zebulon",
            "Quintanilla",
            "1971-03-14",
            "ZQ-770311",
            "(312) 555-0199",
            "Zeb.Quint@Example.org",
        ),
        person(
            "Marisol",
            "Thistlewood",
            "1988-11-02",
            "MT-440210",
            "312-555-0177",
            "marisol.t@example.net",
        ),
        // A family phone shared with the first patient.
        person(
            "Octavia",
            "Quintanilla",
            "2012-06-30",
            "OQ-120630",
            "3125550199",
            "octavia.q@example.com",
        ),
    ]
}

fn scan(what: &str, bytes: &[u8], needles: &[String]) {
    for needle in needles {
        let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "`{needle}` appears in clear in {what}");
    }
}

fn scan_dir(dir: &std::path::Path, needles: &[String], scanned: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            scan_dir(&path, needles, scanned);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            scan(&path.display().to_string(), &bytes, needles);
            scanned.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
}

/// PostgreSQL has no single file to read: dump every row of every table as text.
async fn postgres_rows_as_text(url: &str) -> Vec<u8> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM {table} t"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for row in rows {
            out.extend_from_slice(row.as_bytes());
            out.push(b'\n');
        }
    }
    // Byte columns print as hex in row text; scan their raw bytes too.
    let raw: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT given_name FROM patients UNION ALL SELECT family_name FROM patients UNION ALL SELECT value FROM contacts",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for r in raw {
        out.extend_from_slice(&r);
    }
    out
}

#[tokio::test]
async fn no_patient_data_in_clear_anywhere() {
    for db in TestDatabase::all().await {
        run_scan(&db).await;
    }
}

async fn run_scan(db: &TestDatabase) {
    let salve = Salve::for_db(db);
    let (_practice, token) = salve.create_practice_and_token("Lakeside Family Medicine");
    let server = {
        let this = salve.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = this.command(this.serve_args());
            cmd.env("SALVE_LOG", "debug");
            common::Server::spawn(cmd).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
        })
        .await
        .unwrap()
    };
    let api = Api::new(&server.base_url, &token);
    let people = people();
    let needles: Vec<String> = people.iter().flat_map(|p| p.needles.clone()).collect();

    let mut ids = Vec::new();
    for p in &people {
        let created = api.create_patient(&p.body).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Read everything back, through every read path.
    for (p, id) in people.iter().zip(&ids) {
        let (status, got) = api.get_patient(id).await;
        assert_eq!(status, 200);
        common::assert_same_patient(
            &{
                let mut expected = p.body.clone();
                expected["mrn"] = json!(p.body["mrn"].as_str().unwrap().to_ascii_uppercase());
                expected["contacts"][0]["value"] = got["contacts"][0]["value"].clone();
                expected
            },
            &got,
        );
        assert!(
            got["contacts"][0]["value"]
                .as_str()
                .unwrap()
                .starts_with("+1312555")
        );
        assert_eq!(
            got["contacts"][1]["value"].as_str().unwrap().to_lowercase(),
            p.body["contacts"][1]["value"]
                .as_str()
                .unwrap()
                .to_lowercase()
        );
    }
    let post = |path: &str, body: Value| {
        let api = api.clone();
        let path = path.to_owned();
        async move {
            let resp = api
                .client
                .post(api.url(&path))
                .bearer_auth(&api.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let (s, found) = post("/api/v1/patients/lookup", json!({"phone": "312.555.0199"})).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&found).unwrap()["patients"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (s, found) = post("/api/v1/patients/search", json!({"query": "thistle"})).await;
    assert_eq!(s, 200);
    assert!(found.contains("Marisol"));
    let (s, _) = post(
        "/api/v1/patients/lookup",
        json!({"email": "ZEB.QUINT@example.org"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post("/api/v1/patients/lookup", json!({"mrn": "mt-440210"})).await;
    assert_eq!(s, 200);
    let (s, list) = {
        let resp = api
            .client
            .get(api.url("/api/v1/patients"))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(s, 200);
    assert!(list.contains("Octavia"));

    // A batch of bad requests that carry the same personal data in the wrong places.
    let mut errors = String::new();
    let bad: Vec<(&str, String, &str)> = vec![
        ("/api/v1/patients", r#"{"given_name": "Zebulon", "family_name": "Quintanilla""#.into(), "application/json"),
        ("/api/v1/patients", json!({"given_name": ["Zebulon"], "family_name": "Quintanilla", "birth_date": "1971-03-14"}).to_string(), "application/json"),
        ("/api/v1/patients", json!({"given_name": "Zebulon", "family_name": "Quintanilla", "birth_date": "Zeb.Quint@Example.org"}).to_string(), "application/json"),
        ("/api/v1/patients", json!({"given_name": "Zebulon", "family_name": "Quintanilla", "birth_date": "1971-03-14", "ZQ-770311": "x"}).to_string(), "application/json"),
        ("/api/v1/patients", json!({"given_name": "Zebulon", "family_name": "Quintanilla", "birth_date": "1971-03-14",
            "contacts": [{"kind": "phone", "value": "555-0199 Zebulon", "role": "self"}]}).to_string(), "application/json"),
        ("/api/v1/patients", json!({"given_name": "Zebulon", "family_name": "Quintanilla", "birth_date": "1971-03-14",
            "contacts": [{"kind": "Zeb.Quint@Example.org", "value": "x", "role": "self"}]}).to_string(), "application/json"),
        ("/api/v1/patients", json!({"given_name": "Zebulon", "family_name": "Quintanilla".repeat(10_000), "birth_date": "1971-03-14"}).to_string(), "application/json"),
        ("/api/v1/patients", "Zebulon Quintanilla 1971-03-14".into(), "text/plain"),
        ("/api/v1/patients/lookup", json!({"phone": "Zebulon"}).to_string(), "application/json"),
        ("/api/v1/patients/lookup", json!({"email": "Zeb.Quint@Example"}).to_string(), "application/json"),
        ("/api/v1/patients/lookup", json!({"mrn": "ZQ 770311 Zebulon"}).to_string(), "application/json"),
        ("/api/v1/patients/search", json!({"query": "Z", "limit": "Quintanilla"}).to_string(), "application/json"),
        ("/api/v1/patients/search", json!({"query": "Zebulon", "Quintanilla": 1}).to_string(), "application/json"),
    ];
    for (path, body, content_type) in bad {
        let resp = api
            .client
            .post(api.url(path))
            .bearer_auth(&api.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        errors.push_str(&resp.text().await.unwrap());
    }
    let resp = api
        .client
        .patch(api.url(&format!("/api/v1/patients/{}", ids[0])))
        .bearer_auth(&api.token)
        .json(&json!({"birth_date": "Marisol Thistlewood"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    errors.push_str(&resp.text().await.unwrap());
    scan("the error responses", errors.as_bytes(), &needles);
    let (_, list) = api.list_patients().await;
    assert_eq!(
        list["patients"].as_array().unwrap().len(),
        3,
        "nothing partial was stored"
    );

    // While the server runs the newest pages are in the WAL: scan now and after shutdown.
    if db.kind == Kind::Sqlite {
        let path = salve.sqlite_path().unwrap();
        let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
        scan("salve.db", &std::fs::read(&path).unwrap(), &needles);
        let wal_bytes = std::fs::read(&wal).unwrap();
        assert!(!wal_bytes.is_empty(), "the WAL holds the recent writes");
        scan("salve.db-wal", &wal_bytes, &needles);
    }
    let log = server.stop_async().await;
    assert!(
        log.contains("/api/v1/patients/{id}"),
        "the log names route templates"
    );
    assert!(log.lines().count() > 20, "the debug log is not empty");
    scan("the server log", log.as_bytes(), &needles);
    for id in &ids {
        assert!(
            !log.contains(&format!("/api/v1/patients/{id}")),
            "raw paths are not logged"
        );
    }
    assert!(!log.contains(&token), "the API token is not logged");

    let mut scanned = Vec::new();
    // Everything this installation wrote: database, WAL, key, anchor, shred list.
    scan_dir(db.dir.path(), &needles, &mut scanned);
    scan(
        "the audit anchor",
        &std::fs::read(&salve.anchor).unwrap(),
        &needles,
    );
    if db.kind == Kind::Sqlite {
        assert!(
            scanned.iter().any(|f| f == "salve.db"),
            "scanned {scanned:?}"
        );
    } else {
        scan(
            "PostgreSQL rows",
            &postgres_rows_as_text(&db.url).await,
            &needles,
        );
    }
}
