//! Patients with known names, phones, emails, MRNs and birth dates go in through the API; then
//! the database's raw bytes (SQLite file and WAL, or every PostgreSQL row as text), every file
//! Salve wrote, the server's log (at debug level) and the error responses of a batch of bad
//! requests are scanned: none of those strings may appear. The same data reads back intact.
//!
//! Messaging rides along: consent with evidence, a confidential request naming a phone, a
//! clinical message, an allow-listed plain text, an internal note, a topic, attachments (a PNG
//! whose text chunk the sanitizer must drop, a PDF kept as is), the outbox worker's sends to the
//! sealed local outbox, a portal reply, a glimpse of the SSE stream, and bad messaging requests.
//! Their texts, file names and markers are scanned for in the same places.

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
    // Byte columns print as hex in row text; scan the raw bytes of every one of them too.
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND data_type = 'bytea'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        columns.iter().any(|(t, _)| t == "messages"),
        "sealed message columns are bytea: {columns:?}"
    );
    for (table, column) in columns {
        let raw: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT \"{column}\" FROM \"{table}\""
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for r in raw.into_iter().flatten() {
            out.extend_from_slice(&r);
            out.push(b'\n');
        }
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
    let (practice, token) = salve.create_practice_and_token("Lakeside Family Medicine");
    let messaging_token = salve.run_ok([
        "admin",
        "create-token",
        "--practice",
        &practice,
        "--scope",
        "patients:read,patients:write,messages:read,messages:write,consent:write",
    ]);
    let consent = publish_consent_text(&salve, &practice).await;
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
    let mut needles: Vec<String> = people.iter().flat_map(|p| p.needles.clone()).collect();
    needles.extend(messaging_needles());

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

    let messages = Api::new(&server.base_url, &messaging_token);
    let sse = messaging(&salve, &messages, &ids[1], &consent).await;
    scan("the inbox event stream", sse.as_bytes(), &needles);

    // A batch of bad requests that carry the same personal data in the wrong places.
    let mut errors = bad_messaging_requests(&messages, &ids[1]).await;
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
    assert!(
        !log.contains(&messaging_token),
        "the API token is not logged"
    );
    assert!(
        log.contains("/api/v1/patients/{id}/messages"),
        "the log names messaging route templates"
    );

    let mut scanned = Vec::new();
    // Everything this installation wrote: database, WAL, key, anchor, shred list.
    scan_dir(db.dir.path(), &needles, &mut scanned);
    scan(
        "the audit anchor",
        &std::fs::read(&salve.anchor).unwrap(),
        &needles,
    );
    let outbox_files = std::fs::read_dir(salve.data_dir.join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(outbox_files > 0, "the sealed outbox was scanned too");
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

// ---- Messaging ----------------------------------------------------------------------------

/// Unique strings that mark each piece of messaging content (none is a prefix of another).
const CLINICAL: &str = "Marisol, your A1C came back at 7.2 (ref KRONVALE-MSG-A), so we would like to raise your metformin dose.";
/// Allow-listed by the policy: goes out as a plain SMS, so the outbox holds it word for word.
const SAFE: &str =
    "Please call the office when you get a chance, the form is ready at the front desk.";
const NOTE: &str = "Internal note KRONVALE-NOTE-B: Marisol prefers afternoon calls.";
const WITH_FILES: &str = "Your lab report KRONVALE-ATT-C is attached.";
const PNG_NAME: &str = "KRONVALE-PNGNAME-D.png";
const PNG_TEXT: &str = "KRONVALE-PNGTEXT-E";
const PDF_NAME: &str = "KRONVALE-PDFNAME-F.pdf";
const PDF_BODY: &str = "KRONVALE-PDFBODY-G";
const EVIDENCE: &str = "Signed intake form KRONVALE-EVIDENCE-H, scanned";
const CONFIDENTIAL_EVIDENCE: &str = "Asked at the desk KRONVALE-CONF-I";
const TOPIC: &str = "Knee surgery follow-up KRONVALE-TOPIC-J";
const REPLY: &str = "Thanks, KRONVALE-REPLY-K, I will pick up the form tomorrow.";
/// Markers that only travel in bad requests: nothing may store, log or echo them.
const BAD_MARKERS: [&str; 9] = [
    "KRONVALE-BADKEY-L",
    "KRONVALE-B64-M",
    "KRONVALE-SVG-N",
    "KRONVALE-LONG-O",
    "KRONVALE-CTRL-P",
    "KRONVALE-BADPDF-Q",
    "KRONVALE-KIND-R",
    "KRONVALE-CHANNEL-S",
    "KRONVALE-PATH-T",
];
/// Marisol's birth date, typed into the portal.
const MARISOL_BIRTH_DATE: &str = "1988-11-02";

fn messaging_needles() -> Vec<String> {
    let mut out: Vec<String> = [
        CLINICAL,
        "KRONVALE-MSG-A",
        "metformin",
        SAFE,
        NOTE,
        "KRONVALE-NOTE-B",
        WITH_FILES,
        "KRONVALE-ATT-C",
        PNG_NAME,
        "KRONVALE-PNGNAME-D",
        PNG_TEXT,
        PDF_NAME,
        "KRONVALE-PDFNAME-F",
        PDF_BODY,
        EVIDENCE,
        "KRONVALE-EVIDENCE-H",
        CONFIDENTIAL_EVIDENCE,
        "KRONVALE-CONF-I",
        TOPIC,
        "KRONVALE-TOPIC-J",
        REPLY,
        "KRONVALE-REPLY-K",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    out.extend(BAD_MARKERS.iter().map(|m| m.to_string()));
    out
}

/// A published consent text, as consent events cite it: (version, sha256 hex).
struct ConsentText {
    version: String,
    sha256: String,
}

/// Publishing a consent text takes an admin's browser session; the test uses the store itself
/// (as the operator), before the server starts.
async fn publish_consent_text(salve: &Salve, practice: &str) -> ConsentText {
    let store = salve_store::Store::open(
        &salve_store::StoreOptions::new(salve.database_url.clone()),
        salve_crypto::MasterKey::load_file(&salve.key_file).unwrap(),
        std::sync::Arc::new(salve_core::SystemClock),
    )
    .await
    .unwrap();
    let text = store
        .publish_consent_text(
            practice.parse().unwrap(),
            &salve_core::permissions::Principal::Operator,
            &salve_core::audit::RequestContext::default(),
            "2026-01",
            "I agree that Lakeside may text me. Plain texts are not encrypted; I can reply STOP at any time.",
        )
        .await
        .unwrap();
    store.close().await;
    ConsentText {
        version: text.version,
        sha256: text.sha256_hex,
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 2x2 RGB PNG, built by hand (uncompressed deflate), with a `tEXt` chunk holding `text`.
fn png_with_text(text: &str) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    // Each row: filter byte 0, then two RGB pixels.
    let raw: Vec<u8> = [0u8, 200, 30, 30, 30, 200, 30, 0, 30, 30, 200, 250, 250, 250].to_vec();
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    let len = u16::try_from(raw.len()).unwrap();
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
    chunk(&mut out, b"tEXt", format!("Comment\0{text}").as_bytes());
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A minimal PDF whose page text carries `marker`.
fn pdf_with_text(marker: &str) -> Vec<u8> {
    format!(
        "%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
         2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n\
         3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>\nendobj\n\
         % {marker}\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )
    .into_bytes()
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `METHOD path` with the token and an optional JSON body: (status, body text).
async fn call(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = api
        .client
        .request(method, api.url(path))
        .bearer_auth(&api.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn post_created(api: &Api, path: &str, body: Value) -> Value {
    let (status, text) = call(api, reqwest::Method::POST, path, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The local outbox through the CLI (decrypted): the bodies, oldest first.
async fn outbox_bodies(salve: &Salve) -> Vec<String> {
    let out = salve.run_async(["outbox", "list"]).await.assert_success();
    out.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The first `name=value` a response sets.
fn set_cookie(resp: &reqwest::Response) -> String {
    resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Everything messaging can store for one patient (Marisol: her own phone, no family phone):
/// consent, a confidential request, messages of each kind with attachments, the worker's sends
/// and a portal reply; every read path. Returns what the SSE stream carried meanwhile.
async fn messaging(salve: &Salve, api: &Api, patient: &str, consent: &ConsentText) -> String {
    use reqwest::Method;
    let grant = |channel: &str| {
        json!({
            "channel": channel, "purpose": "care_messages", "action": "grant",
            "method": "intake_form",
            "consent_text": {"version": consent.version, "sha256_hex": consent.sha256},
            "sms_risk_acknowledged": channel == "sms_plain",
        })
    };
    post_created(
        api,
        &format!("/api/v1/patients/{patient}/consent"),
        json!({"events": [grant("sms_plain"), grant("sms_notify")], "evidence": EVIDENCE}),
    )
    .await;
    post_created(
        api,
        &format!("/api/v1/patients/{patient}/confidential-requests"),
        json!({"rule": "only_contact", "value": "312-555-0177", "method": "written_form",
               "evidence": CONFIDENTIAL_EVIDENCE}),
    )
    .await;

    // The inbox's live stream, open while content is written.
    let mut sse = api
        .client
        .get(api.url("/api/v1/inbox/events"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    assert!(
        sse.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let messages = format!("/api/v1/patients/{patient}/messages");
    let clinical = post_created(api, &messages, json!({"text": CLINICAL})).await;
    assert_eq!(clinical["route"], "secure", "{clinical}");
    let safe = post_created(api, &messages, json!({"text": SAFE})).await;
    assert_eq!(safe["route"], "direct", "{safe}");
    let png = png_with_text(PNG_TEXT);
    let pdf = pdf_with_text(PDF_BODY);
    let with_files = post_created(
        api,
        &messages,
        json!({"text": WITH_FILES, "attachments": [
            {"file_name": PNG_NAME, "content_base64": b64(&png)},
            {"file_name": PDF_NAME, "content_base64": b64(&pdf)},
        ]}),
    )
    .await;
    let files = with_files["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{with_files}");
    assert_eq!(files[0]["file_name"], PNG_NAME);
    assert_eq!(files[1]["file_name"], PDF_NAME);
    let conversation = clinical["conversation_id"].as_str().unwrap().to_owned();
    post_created(
        api,
        &format!("/api/v1/conversations/{conversation}/notes"),
        json!({"text": NOTE}),
    )
    .await;
    post_created(
        api,
        &format!("/api/v1/patients/{patient}/conversations"),
        json!({"topic": TOPIC}),
    )
    .await;

    // The stream carries ids and kinds only; read what it sent for a moment, then drop it.
    let mut events = Vec::new();
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until, sse.chunk()).await {
        events.extend_from_slice(&chunk);
    }
    drop(sse);
    let events = String::from_utf8_lossy(&events).into_owned();
    assert!(events.contains(&conversation), "SSE events: {events}");

    // Attachments read back: the PNG lost its text chunk, the PDF is byte for byte the same.
    for (file, original, kept) in [(&files[0], &png, false), (&files[1], &pdf, true)] {
        let resp = api
            .client
            .get(api.url(&format!(
                "/api/v1/attachments/{}",
                file["id"].as_str().unwrap()
            )))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes[..] == original[..], kept, "PDFs are kept as sent");
        assert!(!contains(&bytes, PNG_TEXT), "the PNG text chunk is dropped");
        assert_eq!(contains(&bytes, PDF_BODY), kept);
    }

    // The worker sends the SMS and the notification; wait (bounded) until nothing is queued.
    let detail = {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (status, text) = call(
                api,
                Method::GET,
                &format!("/api/v1/conversations/{conversation}"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{text}");
            let detail: Value = serde_json::from_str(&text).unwrap();
            let pending = detail["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "outbound")
                .any(|m| matches!(m["status"].as_str(), Some("queued" | "sending")));
            if !pending {
                break detail;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the worker did not send: {detail}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let texts: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    for text in [CLINICAL, SAFE, NOTE, WITH_FILES] {
        assert!(texts.contains(&text), "{text:?} reads back: {detail}");
    }
    let sent_safe = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == safe["id"])
        .unwrap();
    assert_eq!(sent_safe["status"], "sent", "{sent_safe}");
    let (status, list) = call(api, Method::GET, "/api/v1/conversations", None).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(&conversation));
    let (status, record) = call(
        api,
        Method::GET,
        &format!("/api/v1/patients/{patient}/consent"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{record}");
    assert!(record.contains("+13125550177"), "{record}");

    // The outbox holds the plain text and a secure link (sealed on disk: scanned later).
    let sent = outbox_bodies(salve).await;
    assert!(sent.iter().any(|b| b.contains(SAFE)), "{sent:?}");
    assert!(
        !sent.iter().any(|b| b.contains("KRONVALE-MSG-A")),
        "{sent:?}"
    );
    let link = sent
        .iter()
        .rev()
        .find_map(|b| b.rsplit_once("/p/").map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_else(|| panic!("no secure link in {sent:?}"));

    // The patient follows the link, proves the birth date and the texted code, and replies.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = browser
        .get(api.url(&format!("/p/{link}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let link_cookie = set_cookie(&resp);
    let portal_post = |path: &str, cookie: &str, body: Value| {
        browser
            .post(api.url(path))
            .header("cookie", cookie)
            .header("sec-fetch-site", "same-origin")
            .json(&body)
            .send()
    };
    let resp = portal_post(
        "/api/v1/portal/birth-date",
        &link_cookie,
        json!({"birth_date": MARISOL_BIRTH_DATE}),
    )
    .await
    .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let sent = outbox_bodies(salve).await;
    let code: String = sent
        .last()
        // The reviewed wording in the patient's language (this patient reads Spanish).
        .and_then(|b| {
            b.split("code is ")
                .nth(1)
                .or_else(|| b.split("clave de acceso es ").nth(1))
        })
        .map(|c| c.chars().take(6).collect())
        .unwrap_or_else(|| panic!("no code in {sent:?}"));
    let resp = portal_post("/api/v1/portal/code", &link_cookie, json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let patient_cookie = set_cookie(&resp);
    let resp = portal_post(
        "/api/v1/portal/messages",
        &patient_cookie,
        json!({"text": REPLY}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (status, detail) = call(
        api,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(detail.contains(REPLY), "the reply reads back: {detail}");
    events
}

/// Bad messaging requests carrying markers and PHI; returns their (problem) bodies.
async fn bad_messaging_requests(api: &Api, patient: &str) -> String {
    let messages = format!("/api/v1/patients/{patient}/messages");
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg"><text>{} Marisol</text></svg>"#,
        BAD_MARKERS[2]
    );
    let bad: Vec<(String, String)> = vec![
        (
            messages.clone(),
            json!({"text": SAFE, BAD_MARKERS[0]: "Marisol Thistlewood"}).to_string(),
        ),
        (
            messages.clone(),
            json!({"text": "Marisol Thistlewood", "attachments": [
                {"file_name": "KRONVALE-PNGNAME-D.png", "content_base64": format!("{}!!", BAD_MARKERS[1])},
            ]})
            .to_string(),
        ),
        (
            messages.clone(),
            json!({"text": NOTE, "attachments": [
                {"file_name": format!("{}.svg", BAD_MARKERS[2]), "content_base64": b64(svg.as_bytes())},
            ]})
            .to_string(),
        ),
        (
            messages.clone(),
            json!({"text": format!("{} Marisol metformin ", BAD_MARKERS[3]).repeat(300)}).to_string(),
        ),
        (
            messages.clone(),
            json!({"text": format!("{} Marisol\u{7}", BAD_MARKERS[4])}).to_string(),
        ),
        (
            messages.clone(),
            json!({"text": WITH_FILES, "attachments": [
                {"file_name": PDF_NAME, "content_base64": b64(format!("%PDF-1.4 {}", BAD_MARKERS[5]).as_bytes())},
            ]})
            .to_string(),
        ),
        (
            messages.clone(),
            json!({"text": CLINICAL, "kind": BAD_MARKERS[6], "purpose": "Marisol"}).to_string(),
        ),
        (
            messages.clone(),
            json!({"text": ["Marisol", "metformin"]}).to_string(),
        ),
        (
            messages.clone(),
            format!(r#"{{"text": "{CLINICAL}""#),
        ),
        (
            format!("/api/v1/patients/{}/messages", BAD_MARKERS[8]),
            json!({"text": SAFE}).to_string(),
        ),
        (
            format!("/api/v1/patients/{patient}/consent"),
            json!({"events": [{"channel": BAD_MARKERS[7], "purpose": "care_messages",
                "action": "grant", "method": "intake_form", "sms_risk_acknowledged": false}],
                "evidence": EVIDENCE})
            .to_string(),
        ),
        (
            format!("/api/v1/patients/{patient}/confidential-requests"),
            json!({"rule": "only_contact", "value": "Marisol 312-555-0177 Thistlewood",
                "method": "written_form", "evidence": CONFIDENTIAL_EVIDENCE})
            .to_string(),
        ),
        (
            format!("/api/v1/patients/{patient}/confidential-requests"),
            json!({"rule": "only_contact", "value": "+13125550177",
                "method": "written_form", "evidence": format!("{CONFIDENTIAL_EVIDENCE} ").repeat(100)})
            .to_string(),
        ),
        (
            format!("/api/v1/patients/{patient}/conversations"),
            json!({"topic": TOPIC, BAD_MARKERS[0]: 1}).to_string(),
        ),
    ];
    let mut errors = String::new();
    for (path, body) in bad {
        let resp = api
            .client
            .post(api.url(&path))
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        errors.push_str(&resp.text().await.unwrap());
        errors.push('\n');
    }
    errors
}
