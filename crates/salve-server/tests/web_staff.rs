//! The staff pages through the router, as a browser uses them: the CSRF cookie and field (or
//! the htmx header), the same-origin header, the session cookie each sign-in step swaps.
//! Sign-in with TOTP and first-time enrolment, throttling, CSRF refusal, the guidelines gate,
//! the inbox, a conversation (messages, notes, consent), the composer's route preview, one
//! message per form however often it is posted, role refusals, break-glass, idle sessions.

use std::collections::BTreeMap;

use axum::http::{StatusCode, header};
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use serde_json::json;

mod common;
mod messaging_world;

use common::{App, Reply, Req};
use messaging_world::{CLINICAL_TEXT, World};

/// An appointment-logistics text the policy lets go by plain SMS (salve-core's own example).
const APPOINTMENT_TEXT: &str = "Hi Maria, this is a reminder of your appointment with Dr. Okafor on Tuesday, March 4 at 10:30 AM at 1200 Oak Street, Suite 200. Reply C to confirm.";
const MEDICATION_TEXT: &str = "Your metformin refill was sent to the pharmacy.";

/// A browser: a cookie jar, and Salve's own pages as the origin of every request.
struct Browser<'a> {
    app: &'a App,
    jar: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a App) -> Self {
        Self {
            app,
            jar: BTreeMap::new(),
        }
    }

    /// Signed in already: the session cookie under its name.
    fn with_session(app: &'a App, name: &str, token: &str) -> Self {
        let mut b = Self::new(app);
        b.jar.insert(name.to_owned(), token.to_owned());
        b
    }

    fn csrf(&self) -> String {
        self.jar
            .iter()
            .find(|(k, _)| k.ends_with("salve_csrf"))
            .map(|(_, v)| v.clone())
            .expect("a CSRF cookie: load a page first")
    }

    fn session(&self) -> Option<String> {
        self.jar
            .iter()
            .find(|(k, _)| k.ends_with("salve_session"))
            .map(|(_, v)| v.clone())
    }

    async fn send(&mut self, req: Req) -> Reply {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookies.is_empty() {
            req
        } else {
            req.header("cookie", cookies)
        };
        let r = self.app.send(req.same_origin()).await;
        for v in r.headers.get_all(header::SET_COOKIE) {
            let raw = v.to_str().unwrap();
            let first = raw.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            if value.is_empty() || raw.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        r
    }

    /// An htmx multipart post (a form with files): bytes, the CSRF token as a header.
    async fn send_multipart(&mut self, path: &str, boundary: &str, body: Vec<u8>) -> Reply {
        use tower::ServiceExt;
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = axum::http::Request::builder()
            .method("POST")
            .uri(path)
            .header("cookie", cookies)
            .header("sec-fetch-site", "same-origin")
            .header("hx-request", "true")
            .header("x-csrf-token", self.csrf())
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(axum::body::Body::from(body))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                self.app.fresh_ip(),
                40000,
            )));
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.send(Req::get(path)).await
    }

    /// A form post with the CSRF field (as the page's form has it).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(&str, String)> = vec![("csrf", self.csrf())];
        all.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.send(Req::post(path).form(&encode(&all))).await
    }

    /// An htmx request: the CSRF token travels as a header.
    async fn htmx_post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let all: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let csrf = self.csrf();
        self.send(
            Req::post(path)
                .header("hx-request", "true")
                .header("x-csrf-token", csrf)
                .form(&encode(&all)),
        )
        .await
    }
}

fn encode(fields: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

fn location(r: &Reply) -> String {
    r.headers
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location: {} {}", r.status, r.text))
        .to_str()
        .unwrap()
        .to_owned()
}

/// What every page must be: HTML under the strict CSP, nothing inline.
fn assert_page(r: &Reply) {
    let ct = r.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{ct}: {}", r.text);
    assert!(
        r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = &r.text;
    assert!(!html.contains("<script>"), "inline script");
    assert!(!html.contains("<style"), "inline style");
    assert!(!html.contains("style="), "style attribute");
    assert!(!html.contains(" hx-on"), "hx-on");
    assert!(!html.contains(" onclick") && !html.contains(" onchange"));
    assert!(!html.contains("javascript:"));
    assert!(html.len() < 100 * 1024, "page under 100 KB");
}

/// The value of `<input ... name="{name}" value="...">` in a page.
fn field_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Signs in through the pages with the password; returns the Location of the answer.
async fn password_step(b: &mut Browser<'_>, email: &str, next: &str) -> String {
    let r = b
        .get(&format!(
            "/sign-in?next={}",
            percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_page(&r);
    for words in [
        "<label for=\"email\">Email</label>",
        "<label for=\"password\">Password</label>",
        ">Sign in</button>",
    ] {
        assert!(r.text.contains(words), "{words}");
    }
    assert_eq!(field_value(&r.text, "next"), next.replace('&', "&amp;"));
    let r = b
        .post(
            "/sign-in",
            &[
                ("email", email),
                ("password", common::PASSWORD),
                ("next", next),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    location(&r)
}

#[tokio::test]
async fn sign_in_with_a_code_lands_on_next_and_a_wrong_code_is_refused_and_throttled() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let mut staff = app.staff(app.practice, Role::Staff).await;
        app.enroll(&mut staff).await;
        app.next_step();

        let mut b = Browser::new(&app);
        let to = password_step(&mut b, &staff.email, "/inbox?filter=mine").await;
        assert_eq!(to, "/sign-in/code?next=%2Finbox%3Ffilter%3Dmine");
        let pending = b.session().expect("a session at the second-factor stage");

        let r = b.get(&to).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_page(&r);
        assert!(r.text.contains("Authentication code") && r.text.contains(">Verify</button>"));

        // A wrong code: the page says so, the field is marked, nothing is signed in.
        let r = b
            .post(
                "/sign-in/code",
                &[("code", "000000"), ("next", "/inbox?filter=mine")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_page(&r);
        assert!(r.text.contains("The code is wrong"), "{}", r.text);
        assert!(r.text.contains("aria-invalid=\"true\""));
        assert_eq!(b.session().as_deref(), Some(pending.as_str()));

        // The right code signs in, swaps the session, and goes to `next`.
        let code = app.totp_code(&staff);
        let r = b
            .post(
                "/sign-in/code",
                &[("code", &code), ("next", "/inbox?filter=mine")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(location(&r), "/inbox?filter=mine");
        let active = b.session().unwrap();
        assert_ne!(active, pending, "the token is swapped");
        let r = b.get("/inbox?filter=mine").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_page(&r);
        assert!(r.text.contains("<h1>Inbox</h1>"));
        assert!(r.text.contains("data-idle-seconds=\""));

        // Another sign-in, and wrong codes until the throttle holds the account.
        app.next_step();
        let mut b = Browser::new(&app);
        password_step(&mut b, &staff.email, "/inbox").await;
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let r = b.post("/sign-in/code", &[("code", "000000")]).await;
            assert_page(&r);
            statuses.push(r.status);
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                assert!(r.text.contains("Too many sign-in attempts"), "{}", r.text);
                assert_eq!(r.headers[header::RETRY_AFTER], "1");
            }
        }
        assert_eq!(
            statuses,
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        // Even the right code waits out the delay, as through the API.
        let code = app.totp_code(&staff);
        let r = b.post("/sign-in/code", &[("code", &code)]).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        app.advance(time::Duration::seconds(1));
        let r = b.post("/sign-in/code", &[("code", &code)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        // Sent nowhere: the front door, which sends a clinician on to the inbox.
        assert_eq!(location(&r), "/");
        let r = b.get("/").await;
        assert_eq!(location(&r), "/inbox");
        app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn first_sign_in_enrols_an_authenticator_and_shows_the_recovery_codes_once() {
    let app = App::new(TestDatabase::sqlite()).await;
    let staff = app.staff(app.practice, Role::Clinician).await;
    let mut b = Browser::new(&app);
    let to = password_step(&mut b, &staff.email, "/inbox").await;
    assert_eq!(to, "/sign-in/enroll?next=%2Finbox");
    let r = b.get(&to).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_page(&r);
    assert!(r.text.contains("<svg"), "the QR code");
    assert!(r.text.contains("Authentication code") && r.text.contains(">Confirm</button>"));
    let marker = "<code class=\"secret\">";
    let secret_at = r.text.find(marker).unwrap() + marker.len();
    let secret: String = r.text[secret_at..]
        .split('<')
        .next()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let secret = common::secret_from_base32(&secret);

    // A wrong code keeps the same secret on the page.
    let r = b
        .post("/sign-in/enroll", &[("code", "000000"), ("next", "/inbox")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("does not match"), "{}", r.text);
    assert!(r.text.contains("aria-invalid=\"true\""));

    let code = app.code_for(&secret);
    let r = b
        .post("/sign-in/enroll", &[("code", &code), ("next", "/inbox")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_page(&r);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert!(r.text.contains(">Continue</button>"));
    assert_eq!(r.text.matches("<li><code>").count(), 10, "{}", r.text);
    let codes: Vec<String> = r
        .text
        .split("<li><code>")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    let r = b.post("/sign-in/continue", &[("next", "/inbox")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/inbox");
    assert_eq!(b.get("/inbox").await.status, StatusCode::OK);

    // Signing out ends the session and says so.
    let r = b.post("/sign-out", &[]).await;
    assert_eq!(location(&r), "/sign-in?signed_out=1");
    assert!(b.session().is_none());
    let r = b.get("/sign-in?signed_out=1").await;
    assert!(r.text.contains("You are signed out."));
    let r = b.get("/inbox").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/sign-in?next=%2Finbox");

    // A recovery code works in the code field, once.
    let to = password_step(&mut b, &staff.email, "/inbox").await;
    assert_eq!(to, "/sign-in/code?next=%2Finbox");
    let r = b
        .post("/sign-in/code", &[("code", &codes[0]), ("next", "/inbox")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/inbox");
    b.post("/sign-out", &[]).await;
    password_step(&mut b, &staff.email, "/inbox").await;
    let r = b
        .post("/sign-in/code", &[("code", &codes[0]), ("next", "/inbox")])
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );
}

#[tokio::test]
async fn a_form_without_its_csrf_field_is_refused_and_changes_nothing() {
    let app = App::new(TestDatabase::sqlite()).await;
    let mut staff = app.staff(app.practice, Role::Staff).await;
    app.enroll(&mut staff).await;
    let before = app.audit("system").await.len() + app.practice_audit().await.len();
    let mut b = Browser::new(&app);
    b.get("/sign-in").await;
    let body = encode(&[
        ("email", staff.email.clone()),
        ("password", common::PASSWORD.to_owned()),
    ]);
    let r = b.send(Req::post("/sign-in").form(&body)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("This form has expired"), "{}", r.text);
    assert!(b.session().is_none(), "no session");
    // A wrong token is no better than none.
    let body = format!("csrf={}&{body}", "x".repeat(43));
    let r = b.send(Req::post("/sign-in").form(&body)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(b.session().is_none());
    let after = app.audit("system").await.len() + app.practice_audit().await.len();
    assert_eq!(before, after, "no sign-in attempt was made");
}

#[tokio::test]
async fn the_guidelines_come_first_and_are_acknowledged_once() {
    let app = App::new(TestDatabase::sqlite()).await;
    let (_, admin) = app.signed_in_staff(Role::Admin).await;
    let r = app
        .send(
            Req::put("/api/v1/guidelines")
                .cookie(&admin)
                .same_origin()
                .json(&json!({"body": "Never text lab results.\n\nUse the secure portal for anything clinical."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let (_, token) = app.signed_in_staff(Role::Staff).await;
    let mut b = Browser::with_session(&app, salve_server::COOKIE, &token);
    let r = b.get("/inbox?filter=urgent").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/guidelines?next=%2Finbox%3Ffilter%3Durgent");
    let r = b.get(&location(&r)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_page(&r);
    assert!(r.text.contains("<p>Never text lab results.</p>"));
    assert!(r.text.contains("I have read and accept these guidelines"));
    let version = field_value(&r.text, "version");
    let r = b
        .post(
            "/guidelines",
            &[("version", &version), ("next", "/inbox?filter=urgent")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(location(&r), "/inbox?filter=urgent");
    assert_eq!(b.get("/inbox?filter=urgent").await.status, StatusCode::OK);
    let acks = app
        .practice_audit()
        .await
        .iter()
        .filter(|a| a.action.contains("guidelines") && a.action.contains("ack"))
        .count();
    assert_eq!(acks, 1);
}

/// A staff browser in the messaging world (an https public URL: `__Host-` cookies).
async fn staff_browser<'a>(w: &'a World, token: &str) -> Browser<'a> {
    let mut b = Browser::with_session(&w.app, salve_server::HOST_COOKIE, token);
    let r = b.get("/inbox").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    b
}

#[tokio::test]
async fn the_inbox_and_a_conversation_show_what_staff_need() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ana = w.patient("Ana", "0142").await;
        w.grant(&ana, "sms_notify", "care_messages").await;
        // The admin writes; for the clinician that is unread.
        w.tick();
        let r = w
            .admin(
                Req::post(format!("/api/v1/patients/{ana}/messages"))
                    .json(&json!({"text": CLINICAL_TEXT})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let conv = r.json()["conversation_id"].as_str().unwrap().to_owned();
        w.tick();
        let r = w
            .admin(
                Req::post(format!("/api/v1/conversations/{conv}/notes"))
                    .json(&json!({"text": "Called her too; left a voicemail."})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

        // Leo's appointment reminder goes by plain text message.
        let leo = w.patient("Leo", "0143").await;
        w.grant(&leo, "sms_plain", "care_messages").await;
        w.sent_message(&leo, json!({"text": APPOINTMENT_TEXT}))
            .await;

        let mut b = staff_browser(&w, &w.clinician).await;
        let r = b.get("/inbox").await;
        assert_page(&r);
        assert!(r.text.contains("<td>Text message</td>"), "{}", r.text);
        assert!(
            r.text
                .contains(&format!("href=\"/inbox/{conv}\">Ana Quintanilla</a>")),
            "{}",
            r.text
        );
        assert!(r.text.contains("2 unread"), "{}", r.text);
        // The channel of the last message that went by one (the note has none), in words.
        assert!(r.text.contains("<th scope=\"col\">Channel</th>"));
        assert!(r.text.contains("<td>Secure portal</td>"), "{}", r.text);
        assert!(
            r.text.contains("Nov 25, 09:0"),
            "the practice's local time: {}",
            r.text
        );
        assert!(r.text.contains("hx-get=\"/inbox/list?filter=open\""));
        assert!(r.text.contains("aria-live=\"polite\""));
        // The live refresh's fragment: the list alone, and it does not count as activity.
        let r = b
            .send(Req::get("/inbox/list?filter=open").header("hx-request", "true"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.text.contains("<html") && r.text.contains("2 unread"));
        let list = salve_server::route_specs()
            .into_iter()
            .find(|s| s.path == "/inbox/list")
            .unwrap();
        assert!(list.passive && list.page);

        let r = b.get(&format!("/inbox/{conv}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_page(&r);
        let page = &r.text;
        if let Ok(dir) = std::env::var("SALVE_DUMP_PAGES") {
            std::fs::write(format!("{dir}/conversation.html"), page).unwrap();
        }
        assert!(page.contains("metformin dose"), "the message");
        assert!(page.contains("To the patient"));
        assert!(page.contains("Internal note — not sent to the patient"));
        assert!(page.contains("Called her too; left a voicemail."));
        assert!(page.contains("Text notifications (no content)"), "consent");
        assert!(page.contains("<span class=\"badge ok\">Granted</span>"));
        assert!(page.contains("<label for=\"message-text\">Message</label>"));
        assert!(
            page.contains("id=\"route-decision\" class=\"route-decision\" aria-live=\"polite\"")
        );
        assert!(page.contains(">Add note</button>") && page.contains(">Assign</button>"));
        // Opening it read it.
        assert_eq!(w.inbox("").await[0]["unread"], 0);

        // A note through the page; a close; a reopen.
        let r = b
            .post(
                &format!("/inbox/{conv}/note"),
                &[("text", "Prefers mornings.")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(location(&r), format!("/inbox/{conv}?noted=1"));
        let r = b
            .post(&format!("/inbox/{conv}/note"), &[("text", "   ")])
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text.contains("id=\"note-error\""));
        let r = b
            .post(
                &format!("/inbox/{conv}/state"),
                &[("state", "snoozed"), ("snooze_hours", "4")],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(
            w.conversation(&conv).await["conversation"]["state"],
            "snoozed"
        );
        let r = b.get(&format!("/inbox/{conv}")).await;
        assert!(r.text.contains("Snoozed until Nov 25, 13:0"), "{}", r.text);
        assert!(r.text.contains(">Reopen</button>"));
        let r = b
            .post(&format!("/inbox/{conv}/state"), &[("state", "open")])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        let me = w.clinician_id.clone();
        let r = b
            .post(
                &format!("/inbox/{conv}/assign"),
                &[("assignee", &format!("user:{me}"))],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(
            w.conversation(&conv).await["conversation"]["assigned_user"],
            me.as_str()
        );
        let r = b.get("/inbox?filter=mine").await;
        assert!(r.text.contains(&format!("/inbox/{conv}")));
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn the_composer_explains_where_a_message_goes_and_sends_it_once() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let mo = w.patient("Mo", "0210").await;
        w.grant(&mo, "sms_plain", "care_messages").await;
        w.grant(&mo, "sms_notify", "care_messages").await;
        let first = w
            .sent_message(&mo, json!({"text": "Welcome to Lakeside messaging."}))
            .await;
        let conv = first["conversation_id"].as_str().unwrap().to_owned();
        let mut b = staff_browser(&w, &w.clinician).await;
        let page = b.get(&format!("/inbox/{conv}")).await;
        let patient = field_value(&page.text, "patient_id");
        assert_eq!(patient, mo);
        let key = field_value(&page.text, "idempotency_key");

        let preview = format!("/inbox/{conv}/preview");
        let r = b
            .htmx_post(
                &preview,
                &[("text", MEDICATION_TEXT), ("patient_id", &patient)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.text
                .contains("Will go by secure link: mentions a medication (metformin)"),
            "{}",
            r.text
        );
        let r = b
            .htmx_post(
                &preview,
                &[("text", APPOINTMENT_TEXT), ("patient_id", &patient)],
            )
            .await;
        assert!(r.text.contains("Will go by text message"), "{}", r.text);
        let r = b
            .htmx_post(&preview, &[("text", ""), ("patient_id", &patient)])
            .await;
        assert!(r.text.contains("Type a message"));
        let messages_before = w.rows("messages").await;
        assert_eq!(w.rows("outbox_jobs").await, 1, "previews write nothing");

        // The same form posted twice (a double click, a retry) sends one message.
        let send = format!("/inbox/{conv}/send");
        let fields = [
            ("text", MEDICATION_TEXT),
            ("patient_id", patient.as_str()),
            ("idempotency_key", key.as_str()),
        ];
        let r = b.post(&send, &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(location(&r), format!("/inbox/{conv}?sent=1"));
        let r = b.post(&send, &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(w.rows("messages").await, messages_before + 1);
        let r = b.get(&format!("/inbox/{conv}?sent=1")).await;
        assert!(r.text.contains("Message sent."));
        assert!(r.text.contains("Your metformin refill"));
        assert_ne!(
            field_value(&r.text, "idempotency_key"),
            key,
            "a new form, a new key"
        );

        // With htmx and a file: multipart, the CSRF token in the header; one more message.
        let png = {
            let mut bytes = std::io::Cursor::new(Vec::new());
            image::RgbImage::new(3, 2)
                .write_to(&mut bytes, image::ImageFormat::Png)
                .unwrap();
            bytes.into_inner()
        };
        let boundary = "salveboundary7";
        let mut body = Vec::new();
        for (name, value) in [
            ("text", "Here is the form to fill in."),
            ("patient_id", patient.as_str()),
            ("idempotency_key", "another-key"),
        ] {
            body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
        }
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attachments\"; filename=\"form.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        body.extend(&png);
        body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = b.send_multipart(&send, boundary, body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(
            r.headers["hx-redirect"],
            format!("/inbox/{conv}?sent=1").as_str()
        );
        assert_eq!(w.rows("messages").await, messages_before + 2);
        let r = b.get(&format!("/inbox/{conv}")).await;
        assert!(r.text.contains("download>form.png</a>"), "{}", r.text);

        // A saved reply: offered in the picker, previewed as the patient will read it, sent.
        let r = w
            .admin(Req::post("/api/v1/templates").json(&json!({
                "name": "Call us", "body": "Hi {patient.first_name}, please call the office when you can."
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let template = r.json()["id"].as_str().unwrap().to_owned();
        let r = b.get(&format!("/inbox/{conv}")).await;
        assert!(
            r.text.contains(&format!(
                "<option value=\"{template}\" data-body=\"Hi {{patient.first_name}}, please call the office when you can.\">Call us</option>"
            )),
            "{}",
            r.text
        );
        let r = b
            .htmx_post(
                &preview,
                &[
                    ("text", ""),
                    ("template_id", &template),
                    ("patient_id", &patient),
                ],
            )
            .await;
        assert!(
            r.text.contains("The patient will read: Hi Mo, please call"),
            "{}",
            r.text
        );
        let r = b
            .post(
                &send,
                &[
                    ("text", "Hi {patient.first_name}"),
                    ("template_id", &template),
                    ("patient_id", &patient),
                    ("idempotency_key", "k-template"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let r = b.get(&format!("/inbox/{conv}")).await;
        assert!(r.text.contains("Hi Mo, please call"), "{}", r.text);
        let messages_before = messages_before + 1;

        // An empty message is refused on the page, not sent.
        let r = b
            .post(
                &send,
                &[
                    ("text", "  "),
                    ("patient_id", &patient),
                    ("idempotency_key", "k3"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text.contains("id=\"composer-error\""));
        assert_eq!(w.rows("messages").await, messages_before + 2);

        // Without the CSRF token nothing is sent.
        let r = b
            .send(Req::post(&send).form(&encode(&[
                ("text", "x".into()),
                ("patient_id", patient.clone()),
            ])))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(w.rows("messages").await, messages_before + 2);
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_role_without_the_permission_gets_the_error_page_not_data() {
    let w = World::new(TestDatabase::sqlite()).await;
    let ana = w.patient("Ana", "0142").await;
    w.grant(&ana, "sms_notify", "care_messages").await;
    let sent = w.sent_message(&ana, json!({"text": CLINICAL_TEXT})).await;
    let conv = sent["conversation_id"].as_str().unwrap().to_owned();
    let (_, auditor) = messaging_world::session(&w.app, Role::Auditor).await;
    let mut b = Browser::with_session(&w.app, salve_server::HOST_COOKIE, &auditor);
    for path in ["/inbox".to_owned(), format!("/inbox/{conv}")] {
        let r = b.get(&path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_page(&r);
        assert!(
            r.text.contains("the auditor role cannot do this"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("Quintanilla") && !r.text.contains("metformin"));
    }
}

#[tokio::test]
async fn a_restricted_patient_opens_with_a_break_glass_reason() {
    let w = World::new(TestDatabase::sqlite()).await;
    let vera = w.patient("Vera", "0123").await;
    w.grant(&vera, "sms_notify", "care_messages").await;
    let sent = w.sent_message(&vera, json!({"text": CLINICAL_TEXT})).await;
    let conv = sent["conversation_id"].as_str().unwrap().to_owned();
    let r = w
        .admin(
            Req::put(format!("/api/v1/patients/{vera}/restriction"))
                .json(&json!({"restricted": true, "users": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let mut b = staff_browser(&w, &w.clinician).await;
    let r = b.get(&format!("/inbox/{conv}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_page(&r);
    assert!(r.text.contains("Reason for emergency access"));
    assert!(!r.text.contains("metformin") && !r.text.contains("Quintanilla"));
    let glass = format!("/inbox/{conv}/break-glass");
    let r = b
        .post(
            &glass,
            &[("category", "emergency_treatment"), ("reason", "short")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("10 to 1000 characters") && r.text.contains("aria-invalid=\"true\""));
    let r = b
        .post(
            &glass,
            &[
                ("category", "emergency_treatment"),
                ("reason", "Patient in the ER, needs her recent messages"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = b.get(&location(&r)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("metformin") && r.text.contains("Restricted patient"));

    // The front desk may not break the glass: no form, and the record stays unseen.
    let (_, desk) = messaging_world::session(&w.app, Role::Staff).await;
    let mut d = staff_browser(&w, &desk).await;
    let r = d.get(&format!("/inbox/{conv}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.text.contains("Reason for emergency access"));
}

#[tokio::test]
async fn an_idle_session_goes_back_to_sign_in_and_keepalive_counts_as_activity() {
    let w = World::new(TestDatabase::sqlite()).await;
    let mut b = staff_browser(&w, &w.clinician).await;
    // Sessions made by the harness end after 15 idle minutes.
    w.app.advance(time::Duration::minutes(10));
    let csrf = b.csrf();
    let r = b
        .send(
            Req::post("/session/keepalive")
                .header("hx-request", "true")
                .header("x-csrf-token", csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The live refresh does not keep it alive.
    w.app.advance(time::Duration::minutes(10));
    assert_eq!(b.get("/inbox/list").await.status, StatusCode::OK);
    w.app.advance(time::Duration::minutes(6));
    let r = b.get("/inbox?filter=mine").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/sign-in?next=%2Finbox%3Ffilter%3Dmine");
    let r = b.get("/sign-in?expired=1").await;
    assert!(
        r.text
            .contains("You were signed out after a period of inactivity.")
    );
    // htmx is sent to sign-in with a redirect header, not a page in a fragment.
    let r = b
        .send(Req::get("/inbox/list").header("hx-request", "true"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        r.headers["hx-redirect"]
            .to_str()
            .unwrap()
            .starts_with("/sign-in?next=")
    );
}

#[tokio::test]
async fn the_staff_assets_are_served() {
    let app = App::new(TestDatabase::sqlite()).await;
    for (path, ty) in [
        ("/static/staff.js", "text/javascript"),
        ("/static/staff.css", "text/css"),
    ] {
        let r = app.send(Req::get(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
    }
    let js = app.send(Req::get("/static/staff.js")).await.text;
    assert!(
        js.contains("EventSource")
            && js.contains("idle-warning")
            && js.contains("/sign-in?expired=1")
    );
    assert!(!js.contains("eval(") && !js.contains("innerHTML"));
}

#[tokio::test]
async fn an_account_in_two_practices_picks_one_after_the_password() {
    for db in TestDatabase::all().await {
        let app = App::new(db).await;
        let staff = app.staff(app.practice, Role::Staff).await;
        let t = salve_crypto::token::mint("salve_i");
        let (_, created) = app
            .store
            .invite_user(
                &salve_core::audit::Actor::Cli,
                &salve_core::audit::RequestContext::default(),
                app.other,
                &salve_core::Sensitive::new(staff.email.clone()),
                &salve_core::Sensitive::new("Staff member".into()),
                Role::Clinician,
                &t.hash,
                3600,
            )
            .await
            .unwrap();
        assert!(!created, "the same account, a second membership");

        // The API answers with the choice and starts no session.
        let r = app
            .send(Req::post("/api/v1/session").same_origin().json(&json!({
                "email": staff.email, "password": common::PASSWORD
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["stage"], "choose_practice");
        let mut names: Vec<String> = r.json()["practices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["Elsewhere", "Lakeside"]);
        assert!(!r.headers.contains_key(header::SET_COOKIE));
        // A wrong password never shows the practices.
        let r = app
            .send(Req::post("/api/v1/session").same_origin().json(&json!({
                "email": staff.email, "password": "not the password at all"
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(!r.text.contains("Elsewhere"));

        // The page: the picker, labelled, the email kept, the password asked for again.
        let mut b = Browser::new(&app);
        b.get("/sign-in").await;
        let r = b
            .post(
                "/sign-in",
                &[
                    ("email", staff.email.as_str()),
                    ("password", common::PASSWORD),
                    ("next", "/inbox"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_page(&r);
        assert!(r.text.contains("<legend>Practice</legend>"));
        let other = app.other.to_string();
        assert!(r.text.contains(&format!(
            "<label for=\"practice-{other}\">Elsewhere</label>"
        )));
        assert!(r.text.contains(">Lakeside</label>"));
        assert!(r.text.contains("enter your password again"));
        assert!(r.text.contains(&format!("value=\"{}\"", staff.email)));
        assert!(
            !r.text.contains(common::PASSWORD),
            "the password is not echoed"
        );
        assert!(b.session().is_none());

        // Choosing the second practice signs in there.
        let r = b
            .post(
                "/sign-in",
                &[
                    ("email", staff.email.as_str()),
                    ("password", common::PASSWORD),
                    ("practice_id", other.as_str()),
                    ("next", "/inbox"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(location(&r), "/sign-in/enroll?next=%2Finbox");
        let r = b.send(Req::get("/api/v1/session")).await;
        assert_eq!(r.json()["practice_id"], other, "{}", r.text);
    }
}

#[tokio::test]
async fn the_sign_in_pages_offer_a_passkey_through_a_served_script() {
    let app = App::new(TestDatabase::sqlite()).await;
    let mut staff = app.staff(app.practice, Role::Staff).await;
    app.enroll(&mut staff).await;
    let mut b = Browser::new(&app);
    let r = b.get("/sign-in").await;
    assert_page(&r);
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        r.text
            .contains("<script src=\"/static/passkey.js\" defer></script>")
    );
    assert!(r.text.contains(
        "<button type=\"button\" id=\"passkey-sign-in\" class=\"secondary\" hidden>Sign in with a passkey</button>"
    ));
    assert!(
        r.text
            .contains("<p id=\"passkey-status\" role=\"status\" hidden></p>")
    );
    // The second-factor page offers it too.
    let to = password_step(&mut b, &staff.email, "/inbox").await;
    let r = b.get(&to).await;
    assert_page(&r);
    assert!(r.text.contains("id=\"passkey-mfa\""));
    assert!(
        r.text
            .contains("<script src=\"/static/passkey.js\" defer></script>")
    );

    // The script: served as JavaScript, calls the WebAuthn API with the server's options and
    // posts to routes that exist; nothing evaluated, no HTML written.
    let r = app.send(Req::get("/static/passkey.js")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let js = r.text;
    assert!(js.contains("navigator.credentials.get(requestOptions(r.json.options))"));
    assert!(!js.contains("eval(") && !js.contains("innerHTML"));
    let routes = salve_server::route_specs();
    for path in [
        "/api/v1/session/passkey",
        "/api/v1/session/passkey/finish",
        "/api/v1/session/mfa/passkey",
        "/api/v1/session/mfa/passkey/finish",
    ] {
        assert!(js.contains(&format!("\"{path}\"")), "{path}");
        assert!(
            routes
                .iter()
                .any(|s| s.path == path && s.method == axum::http::Method::POST),
            "{path}"
        );
    }
}
