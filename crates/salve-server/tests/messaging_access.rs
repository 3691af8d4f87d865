//! Who may reach messaging content, through the HTTP API: attachments refused or cleaned on
//! the way in and served sandboxed on the way out; the team × role × message-kind matrix;
//! another practice's conversations, messages and attachments (404); and the live-update
//! stream closing when its session or token ends or goes idle (controllable clock, bounded
//! waits, no sleeps). SQLite always; PostgreSQL too when `SALVE_TEST_POSTGRES_URL` is set.

mod common;

use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use base64::Engine;
use common::{App, Req, patient_body};
use futures_util::StreamExt;
use image::{DynamicImage, ImageFormat};
use salve_core::UserId;
use salve_core::permissions::Role;
use salve_store::SessionStage;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};
use time::Duration;

/// Planted in the GPS IFD of the uploaded photo; must not survive.
const GPS_MARKER: &[u8] = b"SALVE-GPS-MARKER-40.7128N-74.0060W";
/// How long any single wait on the stream may take.
const WAIT: StdDuration = StdDuration::from_secs(5);

async fn app(db: TestDatabase) -> App {
    App::with_config(db, |c| {
        c.stream_session_check = StdDuration::from_millis(50);
    })
    .await
}

// ---- files built by hand -------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn plain_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, ((x + y) * 8) as u8])
    });
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    DynamicImage::ImageRgb8(img)
        .write_with_encoder(encoder)
        .unwrap();
    out
}

/// A little-endian EXIF TIFF block: a GPS IFD with a latitude (40° 42' 46.32") and a
/// processing-method string carrying [`GPS_MARKER`].
fn exif_tiff() -> Vec<u8> {
    fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        t.extend(tag.to_le_bytes());
        t.extend(kind.to_le_bytes());
        t.extend(count.to_le_bytes());
        t.extend(value);
    }
    const IFD0: u32 = 8;
    const GPS_IFD: u32 = IFD0 + 2 + 12 + 4;
    const LATITUDE: u32 = GPS_IFD + 2 + 3 * 12 + 4;
    const MARKER: u32 = LATITUDE + 24;
    let mut t = b"II*\0".to_vec();
    t.extend(IFD0.to_le_bytes());
    t.extend(1u16.to_le_bytes());
    entry(&mut t, 0x8825, 4, 1, GPS_IFD.to_le_bytes()); // GPSInfo pointer
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len() as u32, GPS_IFD);
    t.extend(3u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0"); // GPSLatitudeRef
    entry(&mut t, 0x0002, 5, 3, LATITUDE.to_le_bytes()); // GPSLatitude
    entry(
        &mut t,
        0x001B,
        7,
        GPS_MARKER.len() as u32,
        MARKER.to_le_bytes(),
    ); // GPSProcessingMethod
    t.extend(0u32.to_le_bytes());
    assert_eq!(t.len() as u32, LATITUDE);
    for (num, den) in [(40u32, 1u32), (42, 1), (4632, 100)] {
        t.extend(num.to_le_bytes());
        t.extend(den.to_le_bytes());
    }
    t.extend(GPS_MARKER);
    t
}

/// A phone photo: SOI, an APP1 `Exif` segment with GPS, then the picture.
fn gps_jpeg() -> Vec<u8> {
    let plain = plain_jpeg(16, 8);
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(exif_tiff());
    let mut out = plain[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(u16::try_from(exif.len() + 2).unwrap().to_be_bytes());
    out.extend(&exif);
    out.extend(&plain[2..]);
    assert!(contains(&out, b"Exif\0\0") && contains(&out, GPS_MARKER));
    out
}

/// What must not come back out of a cleaned photo.
fn gps_needles() -> Vec<Vec<u8>> {
    vec![
        b"Exif\0\0".to_vec(),
        GPS_MARKER.to_vec(),
        4632u32.to_le_bytes().to_vec(),
        // The GPSInfo IFD entry as planted (tag, LONG, count 1).
        [0x25, 0x88, 4, 0, 1, 0, 0, 0].to_vec(),
    ]
}

const SVG: &str = r#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>fetch('/api/v1/conversations')</script></svg>"#;

/// A well-formed PDF whose page content is also a web page.
fn polyglot_pdf() -> Vec<u8> {
    let content = b"<html><body><script>fetch('/api/v1/conversations')</script></body></html>";
    let mut b = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    b.extend(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    b.extend(b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n");
    b.extend(
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>\nendobj\n",
    );
    b.extend(format!("4 0 obj\n<< /Length {} >>\nstream\n", content.len()).as_bytes());
    b.extend(content);
    b.extend(b"\nendstream\nendobj\n");
    b.extend(b"xref\n0 5\n0000000000 65535 f \ntrailer\n<< /Size 5 /Root 1 0 R >>\nstartxref\n0\n%%EOF\n");
    b
}

fn upload(name: &str, bytes: &[u8]) -> Value {
    json!({"file_name": name, "content_base64": b64(bytes)})
}

/// The markers of a JPEG up to its first scan.
fn jpeg_markers(b: &[u8]) -> Vec<u8> {
    let mut markers = Vec::new();
    let mut i = 2;
    while i + 4 <= b.len() && b[i] == 0xFF {
        let marker = b[i + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        i += 2 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
    }
    markers
}

// ---- people and requests -------------------------------------------------------------------

/// A signed-in staff member made directly in the store (no argon2 work): (id, session token).
async fn member(app: &App, practice: salve_core::PracticeId, role: Role) -> (UserId, String) {
    let user = app.passwordless_user(practice, role).await;
    let token = app.raw_session(user, practice, SessionStage::Active).await;
    (user, token)
}

/// A cookie request from Salve's own pages.
fn as_user(req: Req, cookie: &str) -> Req {
    req.cookie(cookie).same_origin()
}

struct Bytes {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Bytes {
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

async fn fetch(app: &App, req: Req) -> Bytes {
    let response = app.send_raw(req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Bytes {
        status,
        headers,
        body,
    }
}

/// Rows of messaging tables for a practice: what a refused or foreign request must not change.
async fn footprint(app: &App, practice: salve_core::PracticeId) -> Vec<i64> {
    let mut out = Vec::new();
    for table in [
        "conversations",
        "messages",
        "attachments",
        "inbox_changes",
        "outbox_jobs",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE practice_id = $1"
        )))
        .bind(practice.to_string())
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
        out.push(n);
    }
    let reads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversation_reads")
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap();
    out.push(reads);
    out
}

/// Verifies a patient through a secure link (date of birth, then the texted code) and returns
/// the portal cookie (`name=value`).
async fn portal_session(app: &App, token: &str, patient: &str) -> String {
    let outbox = app.outbox().await;
    // The one message the outbox gained while `step` ran.
    async fn new_text(
        outbox: &salve_channels::LocalOutbox,
        step: impl Future<Output = ()>,
    ) -> String {
        let before: Vec<uuid::Uuid> = outbox.list().unwrap().iter().map(|m| m.id).collect();
        step.await;
        let mut added: Vec<String> = outbox
            .list()
            .unwrap()
            .into_iter()
            .filter(|m| !before.contains(&m.id))
            .map(|m| m.body)
            .collect();
        assert_eq!(added.len(), 1, "{added:?}");
        added.pop().unwrap()
    }
    let text = new_text(&outbox, async {
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{patient}/secure-links"))
                    .bearer(token)
                    .json(&json!({"contact_index": 0})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    })
    .await;
    let link_token = text.rsplit("/p/").next().unwrap().trim().to_owned();
    let r = app.send(Req::get(format!("/p/{link_token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let link_cookie = r
        .set_cookie()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let text = new_text(&outbox, async {
        let r = app
            .send(
                Req::post("/api/v1/portal/birth-date")
                    .header("cookie", link_cookie.clone())
                    .same_origin()
                    .json(&json!({"birth_date": "1971-03-14"})),
            )
            .await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text);
    })
    .await;
    let code = text.split("code is ").nth(1).unwrap()[..6].to_owned();
    let r = app
        .send(
            Req::post("/api/v1/portal/code")
                .header("cookie", link_cookie)
                .same_origin()
                .json(&json!({"code": code})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.set_cookie()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Checks a served attachment: the exact type, the sandbox, nosniff, the disposition, and that
/// the bytes are a clean JPEG with none of the planted location data.
fn assert_clean_jpeg(reply: &Bytes, inline: bool, context: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{context}");
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        "image/jpeg",
        "{context}"
    );
    assert_eq!(
        reply.header(header::X_CONTENT_TYPE_OPTIONS),
        "nosniff",
        "{context}"
    );
    let csp = reply.header(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.split(';').any(|d| d.trim() == "sandbox"),
        "{context}: {csp}"
    );
    let disposition = reply.header(header::CONTENT_DISPOSITION);
    let expected = if inline { "inline;" } else { "attachment;" };
    assert!(
        disposition.starts_with(expected),
        "{context}: {disposition}"
    );
    let decoded = image::load_from_memory_with_format(&reply.body, ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("{context}: not a JPEG: {e}"));
    assert_eq!((decoded.width(), decoded.height()), (16, 8), "{context}");
    for needle in gps_needles() {
        assert!(
            !contains(&reply.body, &needle),
            "{context}: {:?} survived",
            String::from_utf8_lossy(&needle)
        );
    }
    let markers = jpeg_markers(&reply.body);
    assert!(
        markers.iter().all(|m| !(0xE1..=0xEF).contains(m)),
        "{context}: {markers:02X?}"
    );
}

// ---- 1. attachments ------------------------------------------------------------------------

#[tokio::test]
async fn attachments_svg_and_polyglots_are_refused_and_exif_is_gone() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let kind = app.kind;
        let (_, staff) = member(&app, app.practice, Role::Staff).await;
        let (_, admin) = member(&app, app.practice, Role::Admin).await;
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let send_path = format!("/api/v1/patients/{patient}/messages");
        let text = "Your appointment is confirmed for Tuesday at 3 pm.";

        // Staff side: refused by content, whatever the declared name; nothing stored, not even
        // the good file sent beside a bad one.
        let before = footprint(&app, app.practice).await;
        for (what, files) in [
            ("svg", vec![upload("photo.jpg", SVG.as_bytes())]),
            ("polyglot", vec![upload("results.pdf", &polyglot_pdf())]),
            (
                "jpeg beside svg",
                vec![
                    upload("IMG_0042.JPG", &gps_jpeg()),
                    upload("x.svg", SVG.as_bytes()),
                ],
            ),
        ] {
            let r = app
                .send(as_user(Req::post(&send_path), &staff).json(&json!({
                    "text": text, "kind": "administrative", "attachments": files
                })))
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind:?} {what}: {}",
                r.text
            );
            assert_eq!(
                r.problem_type(),
                "urn:salve:problem:attachment-refused",
                "{kind:?} {what}"
            );
            assert!(
                !r.text.contains("<script"),
                "{what}: the file is not quoted"
            );
            assert_eq!(
                footprint(&app, app.practice).await,
                before,
                "{kind:?} {what}"
            );
        }

        // The same text routes directly without an attachment and securely with one.
        let preview = |attachments: Value| {
            as_user(Req::post(format!("{send_path}/preview")), &staff)
                .json(&json!({"text": text, "attachments": attachments}))
        };
        let r = app.send(preview(json!([]))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["route"], "direct", "{}", r.text);
        let r = app
            .send(preview(json!([upload("IMG_0042.JPG", &gps_jpeg())])))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["route"], "secure", "{}", r.text);

        // A phone photo with GPS: accepted, cleaned, sent securely.
        let r = app
            .send(as_user(Req::post(&send_path), &staff).json(&json!({
                "text": text, "kind": "administrative",
                "attachments": [upload("IMG_0042.JPG", &gps_jpeg())]
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{kind:?}: {}", r.text);
        let sent = r.json();
        assert_eq!(sent["route"], "secure", "{}", r.text);
        assert_eq!(sent["channel"], "portal", "{}", r.text);
        assert_ne!(sent["delivery"], "direct_sms", "{}", r.text);
        let attachment = &sent["attachments"][0];
        assert_eq!(attachment["media_type"], "image/jpeg");
        assert_eq!(attachment["file_name"], "IMG_0042.jpg");
        let staff_attachment = attachment["id"].as_str().unwrap().to_owned();
        let conversation = sent["conversation_id"].as_str().unwrap().to_owned();

        let download = fetch(
            &app,
            as_user(
                Req::get(format!("/api/v1/attachments/{staff_attachment}")),
                &staff,
            ),
        )
        .await;
        assert_clean_jpeg(&download, false, "staff download");
        assert_eq!(
            download.body.len() as i64,
            attachment["size"].as_i64().unwrap()
        );
        let inline = fetch(
            &app,
            as_user(
                Req::get(format!(
                    "/api/v1/attachments/{staff_attachment}?inline=true"
                )),
                &staff,
            ),
        )
        .await;
        assert_clean_jpeg(&inline, true, "staff inline");

        // Patient side: the same refusals through the portal, and the same cleaning.
        let portal = portal_session(&app, &app.token, &patient).await;
        let reply = |files: Vec<Value>| {
            Req::post("/api/v1/portal/messages")
                .header("cookie", portal.clone())
                .same_origin()
                .json(&json!({"text": "Here is the photo you asked for", "attachments": files}))
        };
        let before = footprint(&app, app.practice).await;
        for (what, files) in [
            ("svg", vec![upload("rash.jpg", SVG.as_bytes())]),
            ("polyglot", vec![upload("letter.pdf", &polyglot_pdf())]),
        ] {
            let r = app.send(reply(files)).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{kind:?} portal {what}: {}",
                r.text
            );
            assert_eq!(
                r.problem_type(),
                "urn:salve:problem:attachment-refused",
                "portal {what}"
            );
            assert_eq!(
                footprint(&app, app.practice).await,
                before,
                "{kind:?} portal {what}"
            );
        }
        let r = app
            .send(reply(vec![upload("IMG_7781.jpeg", &gps_jpeg())]))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{kind:?}: {}", r.text);
        let inbound = r.json()["id"].as_str().unwrap().to_owned();
        let r = app
            .send(Req::get("/api/v1/portal/conversations").header("cookie", portal.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let messages = r.json()["conversations"][0]["messages"].clone();
        let find = |id: &str| -> String {
            messages
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == id)
                .unwrap_or_else(|| panic!("message {id} not in {messages}"))["attachments"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let patient_attachment = find(&inbound);
        assert_eq!(find(sent["id"].as_str().unwrap()), staff_attachment);
        for (id, inline) in [
            (&patient_attachment, false),
            (&patient_attachment, true),
            (&staff_attachment, false),
        ] {
            let q = if inline { "?inline=true" } else { "" };
            let got = fetch(
                &app,
                Req::get(format!("/api/v1/portal/attachments/{id}{q}"))
                    .header("cookie", portal.clone()),
            )
            .await;
            assert_clean_jpeg(&got, inline, &format!("portal {id} inline={inline}"));
        }
        // And what the patient sent, as staff who may see it read it.
        let got = fetch(
            &app,
            as_user(
                Req::get(format!("/api/v1/attachments/{patient_attachment}")),
                &admin,
            ),
        )
        .await;
        assert_clean_jpeg(&got, false, "admin reads the patient's photo");
        let r = app
            .send(as_user(
                Req::get(format!("/api/v1/conversations/{conversation}")),
                &admin,
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["messages"].as_array().unwrap().len(), 2);
    }
}

// ---- 2. team × role × kind -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Team {
    In,
    Out,
}

/// What a reader gets of one message in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sees {
    /// Text and attachments listed.
    Content,
    /// `hidden: true`, no text, no attachments listed.
    Hidden,
    /// The conversation itself is refused.
    Nothing,
}

struct Expect {
    role: Role,
    team: Team,
    front_desk_sees_clinical: bool,
    /// GET /api/v1/conversations/{id}
    read: u16,
    /// GET /api/v1/conversations lists it (`None`: the list is refused).
    listed: Option<bool>,
    clinical: Sees,
    administrative: Sees,
    clinical_attachment: u16,
    administrative_attachment: u16,
}

/// The rules, written out by hand: admins see everything; clinicians and front desk outside
/// the conversation's team are refused (403); auditors never read messages (their role); the
/// front desk sees clinical content only where the practice allows it.
#[rustfmt::skip]
fn expected() -> Vec<Expect> {
    use Role::*;
    use Sees::*;
    use Team::{In, Out};
    let row = |role, team, fd, read, listed, clinical, administrative, ca, aa| Expect {
        role, team, front_desk_sees_clinical: fd, read, listed, clinical, administrative,
        clinical_attachment: ca, administrative_attachment: aa,
    };
    vec![
        //  role       team fd     read listed       clinical administr. c.att a.att
        row(Admin,     In,  false, 200, Some(true),  Content, Content, 200, 200),
        row(Admin,     Out, false, 200, Some(true),  Content, Content, 200, 200),
        row(Clinician, In,  false, 200, Some(true),  Content, Content, 200, 200),
        row(Clinician, Out, false, 403, Some(false), Nothing, Nothing, 403, 403),
        row(Staff,     In,  false, 200, Some(true),  Hidden,  Content, 403, 200),
        row(Staff,     Out, false, 403, Some(false), Nothing, Nothing, 403, 403),
        row(Auditor,   In,  false, 403, None,        Nothing, Nothing, 403, 403),
        row(Auditor,   Out, false, 403, None,        Nothing, Nothing, 403, 403),
        row(Admin,     In,  true,  200, Some(true),  Content, Content, 200, 200),
        row(Admin,     Out, true,  200, Some(true),  Content, Content, 200, 200),
        row(Clinician, In,  true,  200, Some(true),  Content, Content, 200, 200),
        row(Clinician, Out, true,  403, Some(false), Nothing, Nothing, 403, 403),
        row(Staff,     In,  true,  200, Some(true),  Content, Content, 200, 200),
        row(Staff,     Out, true,  403, Some(false), Nothing, Nothing, 403, 403),
        row(Auditor,   In,  true,  403, None,        Nothing, Nothing, 403, 403),
        row(Auditor,   Out, true,  403, None,        Nothing, Nothing, 403, 403),
    ]
}

fn settings(front_desk_sees_clinical: bool) -> Value {
    json!({
        "sender_name": "Lakeside", "phone": "+13125550100",
        "hours_text": "Mon-Fri 8-5", "expected_reply_text": "within one business day",
        "on_call_number": "+13125550199",
        "front_desk_sees_clinical": front_desk_sees_clinical
    })
}

#[tokio::test]
async fn access_by_team_role_and_message_kind() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let kind = app.kind;
        let (_, admin) = member(&app, app.practice, Role::Admin).await;
        let r = app
            .send(as_user(Req::post("/api/v1/teams"), &admin).json(&json!({"name": "Nurses"})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let team = r.json()["id"].as_str().unwrap().to_owned();

        let mut readers = Vec::new();
        for role in Role::ALL {
            for side in [Team::In, Team::Out] {
                let (id, cookie) = member(&app, app.practice, role).await;
                readers.push((role, side, id, cookie));
            }
        }
        let members: Vec<String> = readers
            .iter()
            .filter(|r| r.1 == Team::In)
            .map(|r| r.2.to_string())
            .collect();
        let r = app
            .send(
                as_user(Req::put(format!("/api/v1/teams/{team}/members")), &admin)
                    .json(&json!({ "members": members })),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

        // One conversation, written by the EHR's token (nobody's own message): a clinical and
        // an administrative message, each with a photo; then handed to the team.
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let mut sent = Vec::new();
        for (kind_name, text) in [
            (
                "clinical",
                "Your biopsy result is back; the lesion is benign (clinical text)",
            ),
            (
                "administrative",
                "Please bring your insurance card next visit (administrative text)",
            ),
        ] {
            let r = app
                .send(
                    Req::post(format!("/api/v1/patients/{patient}/messages"))
                        .bearer(&app.token)
                        .json(&json!({
                            "text": text, "kind": kind_name,
                            "attachments": [upload("IMG_1.JPG", &gps_jpeg())]
                        })),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{kind:?}: {}", r.text);
            let m = r.json();
            assert_eq!(m["kind"], kind_name, "{}", r.text);
            sent.push((
                m["id"].as_str().unwrap().to_owned(),
                text,
                m["attachments"][0]["id"].as_str().unwrap().to_owned(),
            ));
        }
        let conversation = {
            let r = app
                .send(
                    Req::get(format!("/api/v1/conversations?patient={patient}")).bearer(&app.token),
                )
                .await;
            r.json()["conversations"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let r = app
            .send(
                as_user(
                    Req::put(format!("/api/v1/conversations/{conversation}/assignment")),
                    &admin,
                )
                .json(&json!({ "team_id": team })),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

        let table = expected();
        assert_eq!(table.len(), 16);
        for fd in [false, true] {
            let r = app
                .send(as_user(Req::put("/api/v1/practice/messaging"), &admin).json(&settings(fd)))
                .await;
            assert!(r.status.is_success(), "{} {}", r.status, r.text);
            for e in table.iter().filter(|e| e.front_desk_sees_clinical == fd) {
                let (_, _, _, cookie) = readers
                    .iter()
                    .find(|r| r.0 == e.role && r.1 == e.team)
                    .unwrap();
                let who = format!("{kind:?} {:?} {:?} fd={fd}", e.role, e.team);

                let r = app
                    .send(as_user(
                        Req::get(format!("/api/v1/conversations/{conversation}")),
                        cookie,
                    ))
                    .await;
                assert_eq!(r.status.as_u16(), e.read, "{who}: read {}", r.text);
                let body = r.json();
                for ((id, text, attachment), sees) in
                    sent.iter().zip([e.clinical, e.administrative])
                {
                    if sees == Sees::Nothing {
                        assert!(!r.text.contains(text), "{who}");
                        continue;
                    }
                    let m = body["messages"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|m| m["id"] == id.as_str())
                        .unwrap_or_else(|| panic!("{who}: {id} missing"));
                    match sees {
                        Sees::Content => {
                            assert_eq!(m["hidden"], false, "{who}: {m}");
                            assert_eq!(m["text"], *text, "{who}");
                            assert_eq!(m["attachments"][0]["id"], attachment.as_str(), "{who}");
                        }
                        Sees::Hidden => {
                            assert_eq!(m["hidden"], true, "{who}: {m}");
                            assert!(m["text"].is_null(), "{who}: {m}");
                            assert_eq!(m["attachments"], json!([]), "{who}: {m}");
                            assert!(m["reasons"].is_null(), "{who}: {m}");
                            assert!(!r.text.contains(text), "{who}");
                        }
                        Sees::Nothing => unreachable!(),
                    }
                }

                for ((_, _, attachment), want) in sent
                    .iter()
                    .zip([e.clinical_attachment, e.administrative_attachment])
                {
                    let got = fetch(
                        &app,
                        as_user(
                            Req::get(format!("/api/v1/attachments/{attachment}")),
                            cookie,
                        ),
                    )
                    .await;
                    assert_eq!(got.status.as_u16(), want, "{who}: attachment {attachment}");
                    if want == 200 {
                        assert_eq!(got.header(header::CONTENT_TYPE), "image/jpeg");
                    } else {
                        assert!(!contains(&got.body, &[0xFF, 0xD8, 0xFF]), "{who}");
                    }
                }

                let r = app
                    .send(as_user(Req::get("/api/v1/conversations"), cookie))
                    .await;
                match e.listed {
                    None => assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: list"),
                    Some(listed) => {
                        assert_eq!(r.status, StatusCode::OK, "{who}: list {}", r.text);
                        let ids: Vec<String> = r.json()["conversations"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["id"].as_str().unwrap().to_owned())
                            .collect();
                        assert_eq!(ids.contains(&conversation), listed, "{who}: list");
                        let r = app
                            .send(as_user(
                                Req::get("/api/v1/conversations?assignment=my_teams"),
                                cookie,
                            ))
                            .await;
                        let in_mine = r.text.contains(&conversation);
                        assert_eq!(in_mine, e.team == Team::In, "{who}: my_teams");
                    }
                }
            }
        }
    }
}

// ---- 3. another practice -------------------------------------------------------------------

/// What practice A looks like to its admin: the conversation and the table footprint.
async fn snapshot(app: &App, admin: &str, conversation: &str) -> (Value, Vec<i64>) {
    let r = app
        .send(as_user(
            Req::get(format!("/api/v1/conversations/{conversation}")),
            admin,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    (r.json(), footprint(app, app.practice).await)
}

#[tokio::test]
async fn another_practice_gets_404_for_conversations_messages_and_attachments() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let kind = app.kind;
        let (_, admin_a) = member(&app, app.practice, Role::Admin).await;
        let patient_a = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{patient_a}/messages"))
                    .bearer(&app.token)
                    .json(&json!({
                        "text": "Your lab results are ready", "kind": "clinical",
                        "attachments": [upload("IMG_1.JPG", &gps_jpeg())]
                    })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let message_a = r.json();
        let conv_a = message_a["conversation_id"].as_str().unwrap().to_owned();
        let attachment_a = message_a["attachments"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = app
            .send(
                Req::post(format!("/api/v1/conversations/{conv_a}/notes"))
                    .bearer(&app.token)
                    .json(&json!({"text": "called, left voicemail"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

        let before = snapshot(&app, &admin_a, &conv_a).await;

        // Practice B: its people, its token, its own patient and conversation.
        let (b_admin_id, b_admin) = member(&app, app.other, Role::Admin).await;
        let (b_staff_id, b_staff) = member(&app, app.other, Role::Staff).await;
        let patient_b = app
            .create_patient(
                &app.other_token,
                &patient_body("Tomasz", None, "+13125550177"),
            )
            .await;
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{patient_b}/messages"))
                    .bearer(&app.other_token)
                    .json(&json!({"text": "Welcome to Elsewhere"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

        let unknown = uuid::Uuid::now_v7().to_string();
        let asks = |conv: &str, attachment: &str, patient: &str, me: Option<UserId>| {
            vec![
                Req::get(format!("/api/v1/conversations/{conv}")),
                Req::get(format!("/api/v1/attachments/{attachment}")),
                Req::get(format!("/api/v1/attachments/{attachment}?inline=true")),
                Req::post(format!("/api/v1/conversations/{conv}/notes"))
                    .json(&json!({"text": "hello from elsewhere"})),
                Req::put(format!("/api/v1/conversations/{conv}/assignment"))
                    .json(&json!({"user_id": me.map(|u| u.to_string())})),
                Req::put(format!("/api/v1/conversations/{conv}/state"))
                    .json(&json!({"state": "closed"})),
                Req::post(format!("/api/v1/conversations/{conv}/read")),
                Req::post(format!("/api/v1/patients/{patient}/messages"))
                    .json(&json!({"text": "hello from elsewhere"})),
                Req::post(format!("/api/v1/patients/{patient}/messages/preview"))
                    .json(&json!({"text": "hello from elsewhere"})),
                Req::post(format!("/api/v1/patients/{patient}/conversations"))
                    .json(&json!({"topic": "billing"})),
                // B's own patient, A's conversation.
                Req::post(format!("/api/v1/patients/{patient_b}/messages"))
                    .json(&json!({"text": "hello from elsewhere", "conversation_id": conv})),
            ]
        };
        type Auth<'a> = (&'a str, Box<dyn Fn(Req) -> Req + 'a>, Option<UserId>);
        let callers: Vec<Auth<'_>> = vec![
            (
                "B admin",
                Box::new(|r: Req| as_user(r, &b_admin)),
                Some(b_admin_id),
            ),
            (
                "B staff",
                Box::new(|r: Req| as_user(r, &b_staff)),
                Some(b_staff_id),
            ),
            (
                "B token",
                Box::new(|r: Req| r.bearer(&app.other_token)),
                None,
            ),
        ];
        for (who, auth, me) in &callers {
            let real = asks(&conv_a, &attachment_a, &patient_a, *me);
            let made_up = asks(&unknown, &unknown, &unknown, *me);
            for (ask, control) in real.into_iter().zip(made_up) {
                let what = format!("{kind:?} {who}: {} {}", ask.method, ask.path);
                let r = app.send(auth(ask)).await;
                // Marking read is a staff member's own view state; a token is refused for any
                // id alike, which tells nothing about A.
                let token_read = *who == "B token" && r.status == StatusCode::UNPROCESSABLE_ENTITY;
                if !token_read {
                    assert_eq!(r.status, StatusCode::NOT_FOUND, "{what}: {}", r.text);
                    assert_eq!(r.problem_type(), "urn:salve:problem:not-found", "{what}");
                }
                let c = app.send(auth(control)).await;
                assert_eq!(
                    (r.status, r.problem_without_request_id()),
                    (c.status, c.problem_without_request_id()),
                    "{what}: A's id answers like an id that does not exist"
                );
            }
            // Lists never show A's conversation, even filtered by A's patient.
            for path in [
                "/api/v1/conversations".to_owned(),
                format!("/api/v1/conversations?patient={patient_a}"),
            ] {
                let r = app.send(auth(Req::get(&path))).await;
                assert_eq!(r.status, StatusCode::OK, "{who} {path}: {}", r.text);
                assert!(!r.text.contains(&conv_a), "{who} {path}");
                if path.contains("patient=") {
                    assert_eq!(r.json()["conversations"], json!([]), "{who} {path}");
                }
            }
        }

        // B's patient, verified in B's portal, asks for A's attachment and thread.
        let portal_b = portal_session(&app, &app.other_token, &patient_b).await;
        let r = app
            .send(
                Req::get(format!("/api/v1/portal/attachments/{attachment_a}"))
                    .header("cookie", portal_b.clone()),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{kind:?} portal: {}",
            r.text
        );
        assert_eq!(r.problem_type(), "urn:salve:problem:not-found");
        let r = app
            .send(
                Req::post("/api/v1/portal/messages")
                    .header("cookie", portal_b.clone())
                    .same_origin()
                    .json(&json!({"text": "hello", "conversation_id": conv_a})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{kind:?} portal: {}",
            r.text
        );
        assert_eq!(r.problem_type(), "urn:salve:problem:not-found");

        // Within A: a patient's path with another patient's conversation id sends nothing to
        // either of them (the path names who the message is for).
        let other_a = app
            .create_patient(&app.token, &patient_body("Ines", None, "+13125550124"))
            .await;
        for path in [
            format!("/api/v1/patients/{other_a}/messages"),
            format!("/api/v1/patients/{other_a}/messages/preview"),
        ] {
            let r = app
                .send(
                    as_user(Req::post(&path), &admin_a)
                        .json(&json!({"text": "Your results are in", "conversation_id": conv_a})),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{kind:?} {path}: {}",
                r.text
            );
        }

        // Another patient of A, verified in A's portal: not Marisol's photo, not her thread.
        let portal_ines = portal_session(&app, &app.token, &other_a).await;
        let r = app
            .send(
                Req::get(format!("/api/v1/portal/attachments/{attachment_a}"))
                    .header("cookie", portal_ines.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{kind:?}: {}", r.text);
        let r = app
            .send(
                Req::post("/api/v1/portal/messages")
                    .header("cookie", portal_ines)
                    .same_origin()
                    .json(&json!({"text": "hello", "conversation_id": conv_a})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{kind:?}: {}", r.text);

        // Nothing changed in A.
        let after = snapshot(&app, &admin_a, &conv_a).await;
        assert_eq!(before, after, "{kind:?}: practice A changed");
        let texts = after.0["messages"].to_string();
        assert!(!texts.contains("elsewhere"), "{kind:?}");
    }
}

// ---- 4. the live-update stream -------------------------------------------------------------

/// An open `GET /api/v1/inbox/events`, read frame by frame.
struct Events {
    body: axum::body::BodyDataStream,
    buf: String,
}

impl Events {
    async fn open(app: &App, req: Req) -> Self {
        let response = app.send_raw(req).await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: Body::into_data_stream(response.into_body()),
            buf: String::new(),
        }
    }

    /// The next `event: change` frame (keep-alive comments skipped), within [`WAIT`].
    async fn next_change(&mut self) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let frame: String = self.buf.drain(..end + 2).collect();
                    if frame.lines().any(|l| l == "event: change") {
                        return Some(frame);
                    }
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                    Some(Err(e)) => panic!("stream error: {e}"),
                    None => return None,
                }
            }
        })
        .await;
        match found {
            Ok(Some(frame)) => frame,
            Ok(None) => panic!("the stream ended instead of sending a change"),
            Err(_) => panic!("no change within {WAIT:?}"),
        }
    }

    /// Whether the stream ends within [`WAIT`] (anything still sent before is ignored).
    async fn ends(&mut self) -> bool {
        tokio::time::timeout(WAIT, async {
            while let Some(chunk) = self.body.next().await {
                if chunk.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }
}

/// The conversation id and the whole `data` of a change frame, checked to carry ids and a kind
/// only.
fn change_data(frame: &str) -> Value {
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data in {frame:?}"));
    let v: Value = serde_json::from_str(data).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["conversation_id", "kind", "seq"], "{frame}");
    v
}

async fn send_text(app: &App, token: &str, patient: &str, text: &str) -> String {
    let r = app
        .send(
            Req::post(format!("/api/v1/patients/{patient}/messages"))
                .bearer(token)
                .json(&json!({ "text": text })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["conversation_id"].as_str().unwrap().to_owned()
}

fn events(cookie: &str) -> Req {
    Req::get("/api/v1/inbox/events").cookie(cookie)
}

#[tokio::test]
async fn the_inbox_stream_closes_on_sign_out_revocation_and_idle_expiry() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let kind = app.kind;
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let patient_b = app
            .create_patient(
                &app.other_token,
                &patient_body("Tomasz", None, "+13125550177"),
            )
            .await;
        let (user, s1) = member(&app, app.practice, Role::Staff).await;
        let s2 = app
            .raw_session(user, app.practice, SessionStage::Active)
            .await;
        let s3 = app
            .raw_session(user, app.practice, SessionStage::Active)
            .await;
        let (_, bystander) = member(&app, app.practice, Role::Staff).await;

        // A change arrives with ids and a kind only; another practice's changes never do, nor
        // those of a restricted patient this user is not named on.
        let (_, admin) = member(&app, app.practice, Role::Admin).await;
        let hidden = app
            .create_patient(&app.token, &patient_body("Vera", None, "+13125550124"))
            .await;
        let r = app
            .send(
                as_user(
                    Req::put(format!("/api/v1/patients/{hidden}/restriction")),
                    &admin,
                )
                .json(&serde_json::json!({"restricted": true, "users": []})),
            )
            .await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text);
        let mut first = Events::open(&app, events(&s1)).await;
        send_text(&app, &app.other_token, &patient_b, "Elsewhere news").await;
        let hidden_conv = send_text(&app, &app.token, &hidden, "Please call the office").await;
        let secret = "Your thyroid panel came back normal";
        let conv = send_text(&app, &app.token, &patient, secret).await;
        let frame = first.next_change().await;
        let data = change_data(&frame);
        assert_eq!(data["conversation_id"], conv.as_str(), "{kind:?}: {frame}");
        assert!(
            !frame.contains(&hidden_conv),
            "{kind:?}: a restricted thread's id was streamed"
        );
        for leak in ["thyroid", "Marisol", "Quintanilla", &patient] {
            assert!(!frame.contains(leak), "{kind:?}: {leak} in {frame}");
        }

        // (a) Signing out ends that session's stream.
        let r = app.send(as_user(Req::delete("/api/v1/session"), &s1)).await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text);
        assert!(first.ends().await, "{kind:?}: stream outlived sign-out");

        // Signing out everywhere ends every stream of the user, and only theirs.
        let mut second = Events::open(&app, events(&s2)).await;
        let mut third = Events::open(&app, events(&s3)).await;
        let mut other = Events::open(&app, events(&bystander)).await;
        send_text(&app, &app.token, &patient, "Please call the office").await;
        for stream in [&mut second, &mut third, &mut other] {
            change_data(&stream.next_change().await);
        }
        let r = app
            .send(as_user(Req::post("/api/v1/session/end-all"), &s3))
            .await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text);
        assert!(second.ends().await, "{kind:?}: stream outlived end-all");
        assert!(third.ends().await, "{kind:?}: stream outlived end-all");
        send_text(&app, &app.token, &patient, "Please call the office again").await;
        change_data(&other.next_change().await);
        drop(other);

        // (b) The stream is not activity, and it ends when the session goes idle.
        let s4 = app
            .raw_session(user, app.practice, SessionStage::Active)
            .await;
        let status = |cookie: String| {
            let app = &app;
            async move {
                let r = app.send(Req::get("/api/v1/session").cookie(&cookie)).await;
                (r.status, r.json()["idle_expires_at"].clone())
            }
        };
        let (code, idle_before) = status(s4.clone()).await;
        assert_eq!(code, StatusCode::OK);
        let mut fourth = Events::open(&app, events(&s4)).await;
        app.advance(Duration::minutes(10));
        // The change proves the stream woke, checked its session and sent after the jump.
        send_text(&app, &app.token, &patient, "Your forms are ready").await;
        change_data(&fourth.next_change().await);
        let (code, idle_after) = status(s4.clone()).await;
        assert_eq!(code, StatusCode::OK, "{kind:?}");
        assert_eq!(
            idle_before, idle_after,
            "{kind:?}: the stream counted as activity"
        );
        app.advance(Duration::minutes(5) + Duration::seconds(1));
        assert!(fourth.ends().await, "{kind:?}: stream outlived idle expiry");
        let (code, _) = status(s4.clone()).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{kind:?}");
        // A new stream on the expired session is refused outright.
        let r = app.send(events(&s4)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{kind:?}");

        // A token's stream ends when the token is revoked.
        let (_, admin) = member(&app, app.practice, Role::Admin).await;
        let r = app
            .send(as_user(Req::post("/api/v1/tokens"), &admin).json(&json!({
                "label": "wallboard", "scopes": ["messages:read"]
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let token_id = r.json()["id"].as_str().unwrap().to_owned();
        let secret_token = r.json()["token"].as_str().unwrap().to_owned();
        let mut wallboard =
            Events::open(&app, Req::get("/api/v1/inbox/events").bearer(&secret_token)).await;
        send_text(&app, &app.token, &patient, "Reminder: bring your forms").await;
        change_data(&wallboard.next_change().await);
        let r = app
            .send(as_user(
                Req::delete(format!("/api/v1/tokens/{token_id}")),
                &admin,
            ))
            .await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text);
        assert!(
            wallboard.ends().await,
            "{kind:?}: stream outlived its token"
        );
    }
}

/// A clinician outside a conversation's team opens it only by breaking the glass (a category and
/// a written reason), for the practice's break-glass period; the front desk cannot.
#[tokio::test]
async fn a_clinician_breaks_the_glass_for_another_teams_conversation() {
    for db in TestDatabase::all().await {
        let app = app(db).await;
        let kind = app.kind;
        let (_, admin) = member(&app, app.practice, Role::Admin).await;
        let (_, clinician) = member(&app, app.practice, Role::Clinician).await;
        let (_, front_desk) = member(&app, app.practice, Role::Staff).await;
        let patient = app
            .create_patient(&app.token, &patient_body("Marisol", None, "+13125550123"))
            .await;
        let conversation = send_text(&app, &app.token, &patient, "Please call the office").await;
        let glass = format!("/api/v1/patients/{patient}/break-glass");
        let reason = json!({
            "category": "covering_for_colleague",
            "reason": "covering the nurses' pool while they are in a meeting"
        });
        // Nothing to break while the thread belongs to no team.
        let r = app
            .send(as_user(Req::post(&glass), &clinician).json(&reason))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{kind:?}: {}", r.text);

        let r = app
            .send(as_user(Req::post("/api/v1/teams"), &admin).json(&json!({"name": "Nurses"})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let team = r.json()["id"].as_str().unwrap().to_owned();
        let r = app
            .send(
                as_user(
                    Req::put(format!("/api/v1/conversations/{conversation}/assignment")),
                    &admin,
                )
                .json(&json!({ "team_id": team })),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

        let read = Req::get(format!("/api/v1/conversations/{conversation}"));
        let r = app.send(as_user(read.clone(), &clinician)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{kind:?}");
        assert_eq!(
            r.problem_type(),
            "urn:salve:problem:break-glass-required",
            "{}",
            r.text
        );
        let r = app.send(as_user(read.clone(), &front_desk)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{kind:?}");
        assert_eq!(r.problem_type(), "urn:salve:problem:forbidden");

        // The front desk may not break the glass; a clinician with a reason may.
        let r = app
            .send(as_user(Req::post(&glass), &front_desk).json(&reason))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{kind:?}: {}", r.text);
        let r = app
            .send(as_user(Req::post(&glass), &clinician).json(&reason))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{kind:?}: {}", r.text);
        let r = app.send(as_user(read.clone(), &clinician)).await;
        assert_eq!(r.status, StatusCode::OK, "{kind:?}: {}", r.text);
        let r = app
            .send(
                as_user(
                    Req::post(format!("/api/v1/conversations/{conversation}/notes")),
                    &clinician,
                )
                .json(&json!({"text": "Reviewed while covering."})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{kind:?}: {}", r.text);

        // The grant runs out with the practice's break-glass period (60 minutes by default).
        app.advance(Duration::minutes(61));
        let clinician = {
            // The session went idle meanwhile; a fresh one for the same person.
            let (_, fresh) = member(&app, app.practice, Role::Clinician).await;
            fresh
        };
        let r = app.send(as_user(read, &clinician)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{kind:?}");
        assert_eq!(r.problem_type(), "urn:salve:problem:break-glass-required");
    }
}
