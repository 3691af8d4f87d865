//! The patient portal's pages: link → date of birth → code → conversation → reply with a photo;
//! a scanner's GET spends nothing; a wrong date of birth is explained and counted; Spanish
//! pages for a Spanish-speaking patient; the multipart reply refuses a missing CSRF token; who
//! accessed the record (names and roles, no ids); the PDF of the patient's own messages.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use common::{App, Req, patient_body};
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::json;
use tower::ServiceExt;

const BOUNDARY: &str = "----salve-portal-test-boundary";

/// A browser: keeps cookies, sends what a same-origin page would.
struct Browser<'a> {
    app: &'a App,
    cookies: BTreeMap<String, String>,
    accept_language: Option<&'static str>,
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Page {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The text with askama's escape of `'` undone, for reading sentences.
    fn plain(&self) -> String {
        self.text().replace("&#39;", "'")
    }
    fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a App) -> Self {
        Browser {
            app,
            cookies: BTreeMap::new(),
            accept_language: None,
        }
    }

    fn csrf(&self) -> String {
        self.cookies
            .get("salve_csrf")
            .cloned()
            .expect("a CSRF cookie")
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Page {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("sec-fetch-site", "same-origin");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            builder = builder.header(header::COOKIE, jar.join("; "));
        }
        if let Some(lang) = self.accept_language {
            builder = builder.header(header::ACCEPT_LANGUAGE, lang);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(self.app.fresh_ip(), 40000)));
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(header::SET_COOKIE) {
            let first = cookie.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.request(Method::GET, path, None).await
    }

    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.request(
            Method::POST,
            path,
            Some((
                "application/x-www-form-urlencoded".into(),
                body.into_bytes(),
            )),
        )
        .await
    }

    async fn post_multipart(&mut self, path: &str, body: Vec<u8>) -> Page {
        self.request(
            Method::POST,
            path,
            Some((format!("multipart/form-data; boundary={BOUNDARY}"), body)),
        )
        .await
    }
}

/// A multipart body: text fields, then an optional file.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, content_type, bytes)) = file {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(4, 3, image::Rgb([200, 30, 30]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// No inline script or style, nothing htmx would evaluate.
fn assert_clean_html(html: &str) {
    assert!(!html.contains("<script>"), "inline script");
    assert!(!html.contains("<style"), "inline style");
    assert!(!html.contains("style="), "style attribute");
    assert!(!html.contains("hx-on"), "hx-on");
    assert!(!html.contains("javascript:"), "javascript: URL");
    assert!(html.len() < 100 * 1024, "page under 100 KB");
}

/// Whether the text has anything shaped like a UUID.
fn has_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(35)).any(|i| {
        let s = &b[i..i + 36];
        s.iter().enumerate().all(|(j, c)| match j {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
    })
}

async fn new_patient(app: &App, given: &str, phone: &str, language: Option<&str>) -> String {
    let mut body = patient_body(given, None, phone);
    if let Some(l) = language {
        body["preferred_language"] = json!(l);
    }
    app.create_patient(&app.token, &body).await
}

/// Sends a secure link to the patient's phone; returns the link id and the token in the text.
async fn send_link(app: &App, patient: &str) -> (String, String) {
    let r = app
        .send(
            Req::post(format!("/api/v1/patients/{patient}/secure-links"))
                .bearer(&app.token)
                .json(&json!({"contact_index": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let sent = app.outbox().await.list().unwrap();
    let body = &sent.last().unwrap().body;
    let token = body.rsplit("/p/").next().unwrap().trim().to_owned();
    (r.json()["id"].as_str().unwrap().to_owned(), token)
}

async fn last_code(app: &App) -> String {
    let sent = app.outbox().await.list().unwrap();
    let body = &sent.last().unwrap().body;
    // The reviewed wording in the patient's language: English or Spanish.
    let after = body
        .split("code is ")
        .nth(1)
        .or_else(|| body.split("clave de acceso es ").nth(1))
        .unwrap();
    after[..6].to_owned()
}

async fn failures(app: &App, link: &str) -> i64 {
    sqlx::query_scalar("SELECT failures FROM secure_links WHERE id = $1")
        .bind(link)
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap()
}

async fn inbound_count(app: &App, patient: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE patient_id = $1 AND direction = 'inbound'",
    )
    .bind(patient)
    .fetch_one(app.store.pool_for_tests())
    .await
    .unwrap()
}

/// Link → date of birth → code: a verified browser on the conversation page.
async fn verify<'a>(app: &'a App, patient: &str, lang: Option<&'static str>) -> Browser<'a> {
    let (_, token) = send_link(app, patient).await;
    let mut b = Browser::new(app);
    b.accept_language = lang;
    let r = b.get(&format!("/p/{token}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/portal/verify");
    let r = b.get("/portal/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let csrf = b.csrf();
    let r = b
        .post_form(
            "/portal/verify",
            &[("csrf", &csrf), ("birth_date", "1971-03-14")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.location(), "/portal/code");
    let r = b.get("/portal/code").await;
    assert_eq!(r.status, StatusCode::OK);
    let code = last_code(app).await;
    let r = b
        .post_form("/portal/code", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.location(), "/portal");
    assert!(b.cookies.contains_key("salve_patient"));
    b
}

#[tokio::test]
async fn from_the_link_to_a_reply_with_a_photo() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let ana = new_patient(&app, "Ana", "+13125550142", None).await;
        let (link, token) = send_link(&app, &ana).await;
        let mut b = Browser::new(&app);

        // The link only moves the token into a cookie; the form asks for the date of birth.
        let r = b.get(&format!("/p/{token}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let r = b.get("/portal/verify").await;
        assert_eq!(r.status, StatusCode::OK);
        let html = r.text();
        assert_clean_html(&html);
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<label for=\"birth_date\">Date of birth</label>"));
        assert!(
            html.contains(
                "type=\"date\" id=\"birth_date\" name=\"birth_date\" autocomplete=\"bday\""
            )
        );
        assert!(html.contains(">Continue</button>"));
        assert!(html.contains("English</span> / <button type=\"submit\" name=\"to\" value=\"es\""));
        assert!(html.contains("call 911") && html.contains("988"));
        let csrf = b.csrf();

        // Right date of birth: a code goes to the phone; the page says where, partly hidden.
        let r = b
            .post_form(
                "/portal/verify",
                &[("csrf", &csrf), ("birth_date", "1971-03-14")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        let r = b.get("/portal/code").await;
        let html = r.text();
        assert!(html.contains("<label for=\"code\">Code</label>"));
        assert!(html.contains("inputmode=\"numeric\" autocomplete=\"one-time-code\""));
        assert!(html.contains("ending •••• 42"), "{html}");
        assert!(!html.contains("5550142"), "the full number is not shown");
        assert_clean_html(&html);

        // A wrong code is explained and counted; the right one opens the conversation.
        let code = last_code(&app).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let r = b
            .post_form("/portal/code", &[("csrf", &csrf), ("code", wrong)])
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.plain().contains("That code isn't right"));
        assert_eq!(failures(&app, &link).await, 1);
        let r = b
            .post_form("/portal/code", &[("csrf", &csrf), ("code", &code)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/portal");

        let r = b.get("/portal").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        let html = r.text();
        assert_clean_html(&html);
        assert!(html.contains("Hello, Ana."));
        assert!(html.contains("<label for=\"text\">Your message</label>"));
        assert!(html.contains("<label for=\"file\">Attach a photo or PDF</label>"));
        assert!(html.contains("accept=\"image/jpeg,image/png,application/pdf\""));
        assert!(html.contains("enctype=\"multipart/form-data\""));
        assert!(html.contains(">Send</button>"));
        assert!(html.contains("We usually reply"), "expected reply time");
        assert!(html.contains("call 911") && html.contains("988"));

        // The reply, with a photo: exactly one inbound message, with its attachment.
        assert_eq!(inbound_count(&app, &ana).await, 0);
        let body = multipart(
            &[("csrf", &csrf), ("text", "Here is the photo of the rash")],
            Some(("rash.png", "image/png", &png())),
        );
        let r = b.post_multipart("/portal/reply", body).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        assert!(r.location().starts_with("/portal?sent=1"));
        assert_eq!(inbound_count(&app, &ana).await, 1);
        let attachments: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attachments a JOIN messages m ON m.id = a.message_id \
             WHERE m.patient_id = $1",
        )
        .bind(&ana)
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(attachments, 1);

        // The conversation shows it, newest at the bottom, as sent, with the file's link.
        let r = b.get("/portal?sent=1").await;
        let html = r.text();
        assert!(html.contains("Message sent."));
        assert!(html.contains("Here is the photo of the rash"));
        assert!(html.contains("<p class=\"status\">Sent</p>"));
        let href = html
            .split("href=\"/portal/attachments/")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            href.ends_with("?inline=true"),
            "a photo opens in the browser"
        );
        let file = b.get(&format!("/portal/attachments/{href}")).await;
        assert_eq!(file.status, StatusCode::OK);
        assert_eq!(file.headers[header::CONTENT_TYPE], "image/png");
        assert!(file.body.starts_with(b"\x89PNG"));

        // Once someone at the practice reads the conversation, the patient sees it.
        let conversation = html
            .split("name=\"conversation_id\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let (_, clinician) = app.signed_in_staff(Role::Clinician).await;
        let r = app
            .send(
                Req::post(format!("/api/v1/conversations/{conversation}/read"))
                    .cookie(&clinician)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = b.get("/portal").await;
        assert!(
            r.text()
                .contains("<p class=\"status\">Read by the practice</p>")
        );

        // An empty message is explained on the page, and nothing is sent.
        let r = b
            .post_multipart(
                "/portal/reply",
                multipart(&[("csrf", &csrf), ("text", "  ")], None),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Write your message before sending."));
        assert!(
            r.text()
                .contains("aria-invalid=\"true\" aria-describedby=\"text-error\"")
        );
        assert_eq!(inbound_count(&app, &ana).await, 1);

        // Sign out: the session ends and the portal asks to verify again.
        let r = b.post_form("/portal/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.plain().contains("You're signed out"));
        assert!(!b.cookies.contains_key("salve_patient"));
        let r = b.get("/portal").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(r.location().starts_with("/portal/verify"));
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_scanner_spends_nothing_and_a_wrong_birth_date_is_explained_and_counted() {
    let app = App::new(TestDatabase::sqlite()).await;
    let leo = new_patient(&app, "Leo", "+13125550143", None).await;
    let (link, token) = send_link(&app, &leo).await;
    let sent_before = app.outbox().await.list().unwrap().len();

    // A link scanner fetches the link (and follows the redirect): nothing is spent or sent.
    let mut scanner = Browser::new(&app);
    let r = scanner.get(&format!("/p/{token}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = scanner.get("/portal/verify").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = scanner.get("/portal/code").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(failures(&app, &link).await, 0);
    assert_eq!(app.outbox().await.list().unwrap().len(), sent_before);
    let code_hash: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT code_hash FROM secure_links WHERE id = $1")
            .bind(&link)
            .fetch_one(app.store.pool_for_tests())
            .await
            .unwrap();
    assert!(code_hash.is_none());

    // No link at all: the page says what to do.
    let mut stranger = Browser::new(&app);
    let r = stranger.get("/portal/verify").await;
    assert!(
        r.text()
            .contains("Open the link in the text or email we sent you.")
    );
    assert!(!r.text().contains("name=\"birth_date\""));

    // The patient types the wrong date: explained, linked to the field, and counted.
    let mut b = Browser::new(&app);
    b.get(&format!("/p/{token}")).await;
    b.get("/portal/verify").await;
    let csrf = b.csrf();
    let r = b
        .post_form(
            "/portal/verify",
            &[("csrf", &csrf), ("birth_date", "1971-03-15")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text();
    assert!(
        r.plain()
            .contains("That date of birth doesn't match our records")
    );
    assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"birth-date-error"));
    assert!(
        html.contains("value=\"1971-03-15\""),
        "the date typed is kept"
    );
    assert_eq!(failures(&app, &link).await, 1);
    assert_eq!(app.outbox().await.list().unwrap().len(), sent_before);

    // Something that is not a date spends no attempt.
    let r = b
        .post_form(
            "/portal/verify",
            &[("csrf", &csrf), ("birth_date", "03/14/1971")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().contains("for example 1984-07-02"));
    assert_eq!(failures(&app, &link).await, 1);

    // Without the form's token, the post is refused and nothing is counted.
    let r = b
        .post_form("/portal/verify", &[("birth_date", "1971-03-15")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(failures(&app, &link).await, 1);

    // Locked after five failures: the page says to ask for a new link, and shows no form.
    for _ in 0..4 {
        b.post_form(
            "/portal/verify",
            &[("csrf", &csrf), ("birth_date", "1971-03-15")],
        )
        .await;
    }
    assert_eq!(failures(&app, &link).await, 5);
    let r = b.get("/portal/verify").await;
    let html = r.text();
    assert!(
        html.contains("ask the practice to send a new link")
            || html.contains("Ask the practice to send a new link")
    );
    assert!(!html.contains("name=\"birth_date\""));
}

#[tokio::test]
async fn a_spanish_speaking_patient_gets_spanish_pages() {
    let app = App::new(TestDatabase::sqlite()).await;
    let rosa = new_patient(&app, "Rosa", "+13125550144", Some("es-MX")).await;

    // Before verification the browser's language decides.
    let (_, token) = send_link(&app, &rosa).await;
    let mut b = Browser::new(&app);
    b.accept_language = Some("es-MX,es;q=0.9,en;q=0.5");
    b.get(&format!("/p/{token}")).await;
    let r = b.get("/portal/verify").await;
    let html = r.text();
    assert!(html.contains("<html lang=\"es\">"), "{html}");
    assert!(html.contains("Fecha de nacimiento"));
    assert!(html.contains(">Continuar</button>"));
    assert!(html.contains("llame al 911"));

    // Once verified, the patient's preferred language, whatever the browser says; the code
    // came in Spanish too.
    let mut b = verify(&app, &rosa, Some("en-US")).await;
    let sent = app.outbox().await.list().unwrap();
    let code_text = &sent.last().unwrap().body;
    assert!(code_text.contains("Su clave de acceso es "), "{code_text}");
    let r = b.get("/portal").await;
    let html = r.text();
    assert!(html.contains("<html lang=\"es\">"), "{html}");
    assert!(html.contains("<label for=\"text\">Su mensaje</label>"));
    assert!(html.contains(">Enviar</button>"));
    assert!(html.contains("Normalmente respondemos"));
    assert_clean_html(&html);

    // The switch: English on request, remembered.
    let csrf = b.csrf();
    let r = b
        .post_form(
            "/portal/language",
            &[("csrf", &csrf), ("to", "en"), ("next", "/portal")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/portal");
    let r = b.get("/portal").await;
    assert!(r.text().contains("<html lang=\"en\">"));
    assert!(r.text().contains("Your message"));
    // The switch never sends anyone off the portal.
    let r = b
        .post_form(
            "/portal/language",
            &[
                ("csrf", &csrf),
                ("to", "es"),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/portal");
}

#[tokio::test]
async fn a_multipart_reply_without_the_csrf_token_is_refused() {
    let app = App::new(TestDatabase::sqlite()).await;
    let ana = new_patient(&app, "Ana", "+13125550142", None).await;
    let mut b = verify(&app, &ana, None).await;

    let no_token = multipart(&[("text", "forged")], Some(("x.png", "image/png", &png())));
    let r = b.post_multipart("/portal/reply", no_token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let wrong = multipart(
        &[
            ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ("text", "forged"),
        ],
        None,
    );
    let r = b.post_multipart("/portal/reply", wrong).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // From another site (the browser says so): refused before the form is read.
    let csrf = b.csrf();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/portal/reply")
        .header("sec-fetch-site", "cross-site")
        .header(
            header::COOKIE,
            b.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(multipart(
            &[("csrf", &csrf), ("text", "forged")],
            None,
        )))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(app.fresh_ip(), 40000)));
    let r = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Multipart bodies pass the page layer on the reply route only.
    let r = b
        .post_multipart(
            "/portal/preferences",
            multipart(&[("csrf", &csrf), ("c", "portal.care_messages")], None),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(inbound_count(&app, &ana).await, 0);

    // With the token it goes through.
    let ok = multipart(&[("csrf", &csrf), ("text", "real")], None);
    let r = b.post_multipart("/portal/reply", ok).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(inbound_count(&app, &ana).await, 1);
}

#[tokio::test]
async fn the_access_page_names_staff_and_roles_without_ids() {
    let app = App::new(TestDatabase::sqlite()).await;
    let ana = new_patient(&app, "Ana", "+13125550142", None).await;
    let (staff, session) = app.signed_in_staff(Role::Clinician).await;
    let r = app
        .send(
            Req::get(format!("/api/v1/patients/{ana}"))
                .cookie(&session)
                .same_origin(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let name = app.store.user_profile(staff.id).await.unwrap().display_name;

    let mut b = verify(&app, &ana, None).await;
    let r = b.get("/portal/access").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let html = r.text();
    assert_clean_html(&html);
    assert!(html.contains(name.expose().as_str()), "{html}");
    assert!(html.contains("Clinician"));
    assert!(html.contains("Looked at your details"));
    assert!(!has_uuid(&html), "no internal ids: {html}");
    // The patient's own reads are not listed as staff access.
    assert_eq!(html.matches("<li>\n    <p><strong>").count(), 1, "{html}");
}

#[tokio::test]
async fn the_pdf_holds_only_this_patients_messages_and_spanish_letters_come_out_right() {
    let app = App::new(TestDatabase::sqlite()).await;
    let ana = new_patient(&app, "Ana", "+13125550142", None).await;
    let leo = new_patient(&app, "Leo", "+13125550143", None).await;

    let mut leo_browser = verify(&app, &leo, None).await;
    let csrf = leo_browser.csrf();
    let r = leo_browser
        .post_multipart(
            "/portal/reply",
            multipart(
                &[("csrf", &csrf), ("text", "Leo asks about his knee")],
                None,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let mut b = verify(&app, &ana, None).await;
    let csrf = b.csrf();
    let r = b
        .post_multipart(
            "/portal/reply",
            multipart(
                &[("csrf", &csrf), ("text", "Ana: ¿mañana a las diez?")],
                None,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let r = b.get("/portal/messages.pdf").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/pdf");
    assert!(
        r.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(r.body.starts_with(b"%PDF"));
    let has = |needle: &[u8]| r.body.windows(needle.len()).any(|w| w == needle);
    // WinAnsi: ¿ is 0xBF, ñ is 0xF1; text with such letters is written as a hex string.
    let lower = r.body.to_ascii_lowercase();
    let hex: String = b"Ana: \xbfma\xf1ana a las diez?"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        lower
            .windows(hex.len() + 1)
            .any(|w| w == format!("<{hex}").as_bytes()),
        "Ana's message, accents intact"
    );
    assert!(has(b"/WinAnsiEncoding"));
    assert!(!has(b"Leo asks"), "not another patient's message");
    assert!(!has(b"knee"));
}

/// The patient's consent record as the staff API shows it.
async fn consent_record(app: &App, patient: &str) -> serde_json::Value {
    app.send(Req::get(format!("/api/v1/patients/{patient}/consent")).bearer(&app.token))
        .await
        .json()
}

#[tokio::test]
async fn preferences_record_consent_and_confidential_requests_as_the_patient() {
    let app = App::new(TestDatabase::sqlite()).await;
    let ana = new_patient(&app, "Ana", "+13125550142", None).await;
    let (_, admin) = app.signed_in_staff(Role::Admin).await;
    let r = app
        .send(
            Req::post("/api/v1/consent-texts")
                .cookie(&admin)
                .same_origin()
                .json(&json!({"version": "2026-11", "text": "I agree to get messages from Lakeside."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let mut b = verify(&app, &ana, None).await;
    let csrf = b.csrf();
    let r = b.get("/portal/preferences").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let html = r.text();
    assert_clean_html(&html);
    assert!(html.contains("I agree to get messages from Lakeside."));
    assert!(html.contains("value=\"portal.care_messages\""));
    let sha = html
        .split("name=\"consent_sha256\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let granted = |record: &serde_json::Value, channel: &str, purpose: &str| {
        record["effective"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["channel"] == channel && e["purpose"] == purpose && e["granted"] == true)
    };

    // Plain texts need the risk acknowledged: explained, nothing recorded.
    let fields = [
        ("csrf", csrf.as_str()),
        ("c", "portal.care_messages"),
        ("c", "sms_plain.appointment_reminders"),
        ("consent_version", "2026-11"),
        ("consent_sha256", sha.as_str()),
    ];
    let r = b.post_form("/portal/preferences", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .contains("confirm that you understand they are not encrypted")
    );
    assert!(
        consent_record(&app, &ana).await["history"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let mut with_risk = fields.to_vec();
    with_risk.push(("sms_risk", "1"));
    let r = b.post_form("/portal/preferences", &with_risk).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("Your preferences were saved."));
    let record = consent_record(&app, &ana).await;
    assert!(granted(&record, "portal", "care_messages"));
    assert!(granted(&record, "sms_plain", "appointment_reminders"));
    for event in record["history"].as_array().unwrap() {
        // The same evidence as staff-recorded consent: the text shown, how, and who (the patient).
        assert_eq!(event["method"], "patient_portal");
        assert_eq!(event["consent_text"]["version"], "2026-11");
        assert_eq!(event["consent_text"]["sha256_hex"], sha.as_str());
        assert!(event["recorded_by"].is_null());
    }

    // Clearing a box revokes it.
    let r = b
        .post_form(
            "/portal/preferences",
            &[("csrf", &csrf), ("c", "portal.care_messages")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let record = consent_record(&app, &ana).await;
    assert!(granted(&record, "portal", "care_messages"));
    assert!(!granted(&record, "sms_plain", "appointment_reminders"));

    // "Only contact me by email".
    let r = b
        .post_form(
            "/portal/preferences/confidential",
            &[("csrf", &csrf), ("rule", "medium:sms")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.text()
            .contains(">Only contact me by email (no text messages)</span>")
    );
    let record = consent_record(&app, &ana).await;
    let requests = record["confidential_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["rule"], "never_medium");
    assert_eq!(requests[0]["value"], "sms");
    assert_eq!(requests[0]["method"], "patient_portal");
    let r = b
        .post_form(
            "/portal/preferences/confidential",
            &[("csrf", &csrf), ("rule", "only:99")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().contains("Choose one of the options."));

    // Audited as the patient.
    let audit = app.practice_audit().await;
    assert!(audit.iter().any(|row| row.action == "consent.record"
        && row.actor_kind == "patient"
        && row.actor_id == ana));
    assert!(
        audit
            .iter()
            .any(|row| row.action == "confidential.record" && row.actor_kind == "patient")
    );
    app.assert_audit_verifies().await;
}

#[tokio::test]
async fn the_practices_message_and_the_patients_reply_read_in_order() {
    let app = App::new(TestDatabase::sqlite()).await;
    let ana = new_patient(&app, "Ana", "+13125550142", None).await;
    let (_, admin) = app.signed_in_staff(Role::Admin).await;
    let r = app
        .send(
            Req::post("/api/v1/consent-texts")
                .cookie(&admin)
                .same_origin()
                .json(&json!({"version": "v1", "text": "I agree to get messages."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let sha = r.json()["sha256"].as_str().unwrap().to_owned();
    let grant = |channel: &str| {
        json!({"channel": channel, "purpose": "care_messages", "action": "grant",
               "method": "intake_form", "consent_text": {"version": "v1", "sha256_hex": sha}})
    };
    let r = app
        .send(
            Req::post(format!("/api/v1/patients/{ana}/consent"))
                .bearer(&app.token)
                .json(&json!({"events": [grant("portal"), grant("sms_notify")]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (_, clinician) = app.signed_in_staff(Role::Clinician).await;
    let r = app
        .send(
            Req::post(format!("/api/v1/patients/{ana}/messages"))
                .cookie(&clinician)
                .same_origin()
                .json(&json!({"text": "Your lab results are ready, call us to talk them over."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.advance(time::Duration::minutes(5));

    let mut b = verify(&app, &ana, None).await;
    let csrf = b.csrf();
    let r = b
        .post_multipart(
            "/portal/reply",
            multipart(
                &[("csrf", &csrf), ("text", "Thank you, I will call.")],
                None,
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let html = b.get("/portal").await.text();
    let theirs = html
        .find("Your lab results are ready")
        .expect("the practice's message");
    let mine = html.find("Thank you, I will call.").expect("the reply");
    assert!(theirs < mine, "newest at the bottom");
    assert!(html.contains("<strong>Lakeside</strong>"), "{html}");
    assert!(html.contains("<strong>You</strong>"));
    assert_eq!(
        html.matches("<p class=\"status\">").count(),
        1,
        "status on own messages only"
    );
}

#[tokio::test]
async fn the_patient_withdraws_their_own_confidential_request() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let ana = new_patient(&app, "Ana", "+13125550142", None).await;
        let leo = new_patient(&app, "Leo", "+13125550143", None).await;
        // Leo's request, recorded by staff: Ana can never withdraw it.
        let r = app
            .send(
                Req::post(format!("/api/v1/patients/{leo}/confidential-requests"))
                    .bearer(&app.token)
                    .json(&json!({"rule": "never_medium", "value": "sms", "method": "verbal"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let leos = r.json()["id"].as_str().unwrap().to_owned();

        let mut b = verify(&app, &ana, None).await;
        let csrf = b.csrf();
        let r = b
            .post_form(
                "/portal/preferences/confidential",
                &[("csrf", &csrf), ("rule", "medium:sms")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let record = consent_record(&app, &ana).await;
        let id = record["confidential_requests"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // One withdraw button per request in force, a form with its CSRF field.
        let html = r.text();
        let action = format!("action=\"/portal/preferences/confidential/{id}/withdraw\"");
        assert!(html.contains(&action), "{html}");
        assert!(html.contains(&format!("aria-describedby=\"req-{id}\">Withdraw</button>")));
        assert_clean_html(&html);

        // Without the form's token: refused, nothing changes.
        let path = format!("/portal/preferences/confidential/{id}/withdraw");
        let r = b.post_form(&path, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let record = consent_record(&app, &ana).await;
        assert!(record["confidential_requests"][0]["withdrawn_at"].is_null());

        // Another patient's request, or a made-up id: not found, and Leo's stays in force.
        let r = b
            .post_form(
                &format!("/portal/preferences/confidential/{leos}/withdraw"),
                &[("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.text().contains("That request is no longer in force."));
        let r = b
            .post_form(
                "/portal/preferences/confidential/not-an-id/withdraw",
                &[("csrf", &csrf)],
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let record = consent_record(&app, &leo).await;
        assert!(record["confidential_requests"][0]["withdrawn_at"].is_null());

        // Withdrawn: kept in the record, marked withdrawn, no longer listed with a button.
        let r = b.post_form(&path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.text().contains("Your request was withdrawn."));
        assert!(!r.text().contains(&action));
        assert!(r.text().contains("You have no requests."));
        let record = consent_record(&app, &ana).await;
        let requests = record["confidential_requests"].as_array().unwrap();
        assert_eq!(requests.len(), 1);
        assert!(requests[0]["withdrawn_at"].is_string(), "{record}");
        // Twice: nothing left to withdraw.
        let r = b.post_form(&path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // The JSON API for the patient session does the same; without a session it refuses.
        let r = app
            .send(Req::delete(format!("/api/v1/portal/confidential-requests/{id}")).same_origin())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // Audited as the patient, and the chain holds.
        let audit = app.practice_audit().await;
        let withdrawals = audit
            .iter()
            .filter(|row| {
                row.action == "confidential.record"
                    && row.actor_kind == "patient"
                    && row.actor_id == ana
            })
            .count();
        assert_eq!(withdrawals, 2, "the request and its withdrawal");
        app.assert_audit_verifies().await;
    }
}
