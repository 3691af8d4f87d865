//! The "must show" browser tests: a real Chromium (Debian's `chromium`, driven by
//! `playwright-core` from tools/node_modules) walks the pages of a seeded practice served on a
//! real loopback port, checks every page with axe-core and screenshots it. The flows are in
//! tests/browser/flows.mjs; this file serves the app, seeds it and gives the Node side a small
//! control server (the manual clock, authenticator codes, the local outbox, CSP report count).
//!
//! Without Chromium or tools/node_modules the test is skipped, except in CI (`CI=true`), where
//! scripts/test installs both and a missing browser is a failure.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use common::{App, PASSWORD, Req, Staff};
use salve_channels::LocalOutbox;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::Role;
use salve_core::{ManualClock, Sensitive};
use salve_crypto::totp::{Digits, TotpAlgorithm, TotpSecret};
use salve_server::AppState;
use salve_testkit::TestDatabase;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The birth date every seeded patient has (what the patient types on the portal).
const BIRTH_DATE: &str = "1971-03-14";
/// The practice's first message to the English-speaking patient: clinical, so it goes secure.
const FIRST_MESSAGE: &str = "Your lab results are ready: your cholesterol is a little high. \
     Please reply with any questions.";

/// The practice's message to the Spanish-speaking patient (clinical: secure).
const SECOND_MESSAGE: &str = "Sus análisis están listos: el colesterol está un poco alto. \
     Le explicaremos el tratamiento en la próxima cita.";

/// The practice's messaging guidelines (one paragraph).
const GUIDELINES: &str = "Reply to patients within one business day. Never put lab values or \
     medication names in a plain text: the composer sends those by secure link.";

fn in_ci() -> bool {
    matches!(
        std::env::var("CI").as_deref(),
        Ok("true" | "TRUE" | "True" | "1" | "yes")
    )
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/salve-server is two levels down")
        .to_path_buf()
}

/// target/browser-screenshots, next to the test binary's target/debug.
fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SALVE_BROWSER_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/browser-…: three levels up is the target directory.
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("browser-screenshots")
}

/// What is missing to run the browser tests, if anything.
fn missing_prerequisite(root: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} not found (apt-get install chromium)"));
    }
    for package in ["playwright-core", "axe-core"] {
        if !root.join("tools/node_modules").join(package).is_dir() {
            return Some(format!(
                "tools/node_modules/{package} not found (cd tools && npm ci)"
            ));
        }
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node not found (apt-get install nodejs)".into());
    }
    None
}

// ---- the control server ---------------------------------------------------------------------

/// A seeded staff member the Node side signs in as.
struct Account {
    email: String,
    name: String,
    secret: TotpSecret,
    /// The last TOTP step used: the server refuses it (and earlier ones) a second time.
    last_step: Option<u64>,
}

struct Control {
    clock: Arc<ManualClock>,
    outbox: LocalOutbox,
    accounts: Mutex<HashMap<String, Account>>,
    /// The server's metrics, as Prometheus text.
    metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// What the Node side needs to know about the seeded practice.
    seed: Value,
}

impl Control {
    fn now_secs(&self) -> u64 {
        salve_core::Clock::now(self.clock.as_ref()).unix_timestamp() as u64
    }
}

#[derive(Deserialize)]
struct AdvanceQuery {
    seconds: i64,
}

#[derive(Deserialize)]
struct TotpQuery {
    user: String,
}

async fn advance(State(c): State<Arc<Control>>, Query(q): Query<AdvanceQuery>) -> Json<Value> {
    c.clock.advance(time::Duration::seconds(q.seconds));
    Json(json!({ "now": c.now_secs() }))
}

/// The current code of a seeded account. When the account already used the current 30-second
/// step, the server clock first moves to the next step (the server accepts each step once).
async fn totp(State(c): State<Arc<Control>>, Query(q): Query<TotpQuery>) -> impl IntoResponse {
    let mut accounts = c.accounts.lock().unwrap();
    let Some(account) = accounts.get_mut(&q.user) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such user"})),
        );
    };
    let mut now = c.now_secs();
    if account.last_step >= Some(now / 30) {
        let next = (now / 30 + 1) * 30;
        c.clock
            .advance(time::Duration::seconds((next - now) as i64));
        now = next;
    }
    account.last_step = Some(now / 30);
    let code = salve_crypto::totp::code_at(
        &account.secret,
        TotpAlgorithm::Sha1,
        Digits::Six,
        now,
        NonZeroU64::new(30).unwrap(),
    );
    (StatusCode::OK, Json(json!({ "code": code })))
}

/// Everything the local outbox "sent", oldest first, with bodies.
async fn outbox(State(c): State<Arc<Control>>) -> impl IntoResponse {
    match c.outbox.list() {
        Ok(records) => (StatusCode::OK, Json(json!({ "messages": records }))),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// The number of Content-Security-Policy violation reports the server received.
async fn csp_reports(State(c): State<Arc<Control>>) -> Json<Value> {
    Json(json!({ "count": csp_report_count(&(c.metrics)()) }))
}

async fn seed(State(c): State<Arc<Control>>) -> Json<Value> {
    Json(c.seed.clone())
}

/// Sums `salve_csp_reports_total{directive=…}` in Prometheus text.
fn csp_report_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("salve_csp_reports_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn control_router(control: Arc<Control>) -> Router {
    Router::new()
        .route("/advance", post(advance))
        .route("/totp", get(totp))
        .route("/outbox", get(outbox))
        .route("/csp-reports", get(csp_reports))
        .route("/seed", get(seed))
        .with_state(control)
}

// ---- seeding --------------------------------------------------------------------------------

/// A staff member with a readable name, enrolled in TOTP through the real API.
async fn enrolled(app: &App, role: Role, email: &str, name: &str) -> (Staff, String) {
    let hash = salve_crypto::password::hash_password(
        salve_core::password_policy::normalize(PASSWORD).expose(),
    );
    let id = app
        .store
        .create_user(
            &Actor::Cli,
            &RequestContext::default(),
            app.practice,
            &Sensitive::new(email.to_owned()),
            &Sensitive::new(name.to_owned()),
            Some(hash),
            role,
            false,
        )
        .await
        .unwrap();
    let mut staff = Staff {
        id,
        practice: app.practice,
        role,
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
        totp: None,
        recovery_codes: Vec::new(),
        last_step: None,
    };
    let session = app.enroll(&mut staff).await;
    (staff, session)
}

async fn api(app: &App, session: &str, req: Req, expect: StatusCode) -> Value {
    let path = req.path.clone();
    let r = app.send(req.cookie(session).same_origin()).await;
    assert_eq!(r.status, expect, "{path}: {}", r.text);
    r.json()
}

// ---- the test -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_show_flows_in_a_real_browser() {
    let root = workspace_root();
    if let Some(missing) = missing_prerequisite(&root) {
        if in_ci() {
            panic!(
                "CI=true requires the browser tests: {missing}. scripts/test installs Debian's \
                 chromium and runs npm ci in tools/."
            );
        }
        println!("skipped: chromium not installed or tools/node_modules missing: {missing}");
        return;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // `localhost`, not the address: browsers refuse an IP address as a WebAuthn relying party,
    // and the passkey flow needs one.
    let base = format!("http://localhost:{}", addr.port());

    let mut captured: Option<AppState> = None;
    let public_url = base.clone();
    let app = App::with_state(
        TestDatabase::sqlite(),
        |c| {
            c.public_url = Some(public_url);
            // Texts go at once, whatever the hour (as in the demo).
            c.quiet_hours = None;
            c.outbox_poll = Duration::from_millis(200);
        },
        |state| {
            captured = Some(state.clone());
            state
        },
    )
    .await;
    let state = captured.expect("the harness hands over its state");

    // The practice sends through the local outbox (so admins can read it and reply as patients).
    app.store
        .add_provider(
            app.practice,
            Actor::Cli,
            &RequestContext::default(),
            &salve_store::NewProvider {
                kind: salve_core::vendors::ProviderKind::LocalOutbox,
                label: "Test outbox".into(),
                credentials: Sensitive::new("{}".into()),
                numbers: Vec::new(),
                agreement: None,
            },
        )
        .await
        .unwrap();

    // Staff: one of each role, enrolled in TOTP.
    let (admin, admin_session) = enrolled(
        &app,
        Role::Admin,
        "alex.admin@lakeside.example",
        "Alex Admin",
    )
    .await;
    let (clinician, clinician_session) = enrolled(
        &app,
        Role::Clinician,
        "casey.clinician@lakeside.example",
        "Casey Clinician",
    )
    .await;
    let (front_desk, _) = enrolled(
        &app,
        Role::Staff,
        "frankie.desk@lakeside.example",
        "Frankie Desk",
    )
    .await;
    let (auditor, _) = enrolled(
        &app,
        Role::Auditor,
        "avery.auditor@lakeside.example",
        "Avery Auditor",
    )
    .await;

    // The consent text patients agree to at intake.
    let consent_text = api(
        &app,
        &admin_session,
        Req::post("/api/v1/consent-texts").json(&json!({
            "version": "2026-01",
            "text": "I agree that Lakeside may text me. Plain texts are not encrypted; \
                     I can reply STOP at any time."
        })),
        StatusCode::CREATED,
    )
    .await;
    let consent_sha = consent_text["sha256"].as_str().unwrap().to_owned();

    // Patients: one English, one Spanish; a third without consent for the intake flow.
    let patient = |given: &str, family: &str, phone: &str, lang: &str| {
        json!({
            "given_name": given,
            "family_name": family,
            "birth_date": BIRTH_DATE,
            "preferred_language": lang,
            "contacts": [
                {"kind": "phone", "value": phone, "role": "self"},
                {"kind": "email", "value": format!("{}@example.org", given.to_lowercase()), "role": "self"}
            ]
        })
    };
    let ana = app
        .create_patient(
            &app.token,
            &patient("Ana", "Quintanilla", "+13125550142", "en"),
        )
        .await;
    let sofia = app
        .create_patient(&app.token, &patient("Sofia", "Reyes", "+13125550177", "es"))
        .await;
    let newcomer = app
        .create_patient(&app.token, &patient("Noor", "Haddad", "+13125550199", "en"))
        .await;
    for id in [&ana, &sofia] {
        let grant = |channel: &str, purpose: &str| {
            json!({
                "channel": channel,
                "purpose": purpose,
                "action": "grant",
                "method": "intake_form",
                "consent_text": {"version": "2026-01", "sha256_hex": consent_sha},
                "sms_risk_acknowledged": channel == "sms_plain",
            })
        };
        api(
            &app,
            &clinician_session,
            Req::post(format!("/api/v1/patients/{id}/consent")).json(&json!({
                "events": [
                    grant("sms_notify", "care_messages"),
                    grant("sms_plain", "care_messages"),
                    grant("sms_notify", "appointment_reminders"),
                    grant("sms_plain", "appointment_reminders"),
                ],
                "evidence": "signed intake form, scanned"
            })),
            StatusCode::CREATED,
        )
        .await;
    }

    // The practice's first message to Ana: clinical, so it waits in the portal and a
    // content-free notification with a secure link goes by text (sent by the worker).
    app.advance(time::Duration::seconds(1));
    let first = api(
        &app,
        &clinician_session,
        Req::post(format!("/api/v1/patients/{ana}/messages")).json(&json!({"text": FIRST_MESSAGE})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(first["route"], "secure", "{first}");
    app.advance(time::Duration::seconds(1));
    let second = api(
        &app,
        &clinician_session,
        Req::post(format!("/api/v1/patients/{sofia}/messages"))
            .json(&json!({"text": SECOND_MESSAGE})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(second["route"], "secure", "{second}");

    // Messaging guidelines staff accept at their next sign-in (published last: until a staff
    // member accepts them, the API refuses their other requests).
    api(
        &app,
        &admin_session,
        Req::put("/api/v1/guidelines").json(&json!({ "body": GUIDELINES })),
        StatusCode::OK,
    )
    .await;

    // Serve the app (with its outbox worker) on the real port, and the control server.
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(salve_server::worker::run(
        state.clone(),
        Duration::from_millis(200),
        stop_rx.clone(),
    ));
    let router = app.router.clone();
    let mut stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .unwrap();
    });

    let mut accounts = HashMap::new();
    for (key, staff, name) in [
        ("admin", &admin, "Alex Admin"),
        ("clinician", &clinician, "Casey Clinician"),
        ("front_desk", &front_desk, "Frankie Desk"),
        ("auditor", &auditor, "Avery Auditor"),
    ] {
        accounts.insert(
            key.to_owned(),
            Account {
                email: staff.email.clone(),
                name: name.to_owned(),
                secret: staff.totp.clone().expect("enrolled"),
                last_step: staff.last_step,
            },
        );
    }
    let seed = json!({
        "password": PASSWORD,
        "practice": {"id": app.practice.to_string(), "name": "Lakeside"},
        "staff": accounts
            .iter()
            .map(|(k, a)| (k.clone(), json!({"email": a.email, "name": a.name})))
            .collect::<serde_json::Map<String, Value>>(),
        "patients": {
            "ana": {"id": ana, "given": "Ana", "family": "Quintanilla", "birth_date": BIRTH_DATE,
                    "phone": "+13125550142", "lang": "en"},
            "sofia": {"id": sofia, "given": "Sofia", "family": "Reyes", "birth_date": BIRTH_DATE,
                      "phone": "+13125550177", "lang": "es"},
            "newcomer": {"id": newcomer, "given": "Noor", "family": "Haddad",
                         "birth_date": BIRTH_DATE, "phone": "+13125550199", "lang": "en"},
        },
        "guidelines": GUIDELINES,
        "consent_text": {"version": "2026-01", "sha256": consent_sha},
        "first_message": {"id": first["id"], "text": FIRST_MESSAGE},
        "second_message": {"id": second["id"], "text": SECOND_MESSAGE},
    });
    let metrics_state = state.clone();
    let control = Arc::new(Control {
        clock: app.clock.clone(),
        outbox: app.outbox().await,
        accounts: Mutex::new(accounts),
        metrics: Box::new(move || metrics_state.metrics.render()),
        seed,
    });
    let control_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_url = format!(
        "http://127.0.0.1:{}",
        control_listener.local_addr().unwrap().port()
    );
    let mut stop = stop_rx.clone();
    let control_task = tokio::spawn(async move {
        axum::serve(control_listener, control_router(control))
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });

    let out_dir = screenshot_dir();
    std::fs::create_dir_all(&out_dir).unwrap();
    println!("browser screenshots: {}", out_dir.display());

    // Node's output goes straight to this test's output (nextest shows it when the test
    // fails, even when it is killed for taking too long).
    let mut node = tokio::process::Command::new("node");
    node.arg("--test-reporter=spec")
        .arg(root.join("tests/browser/flows.mjs"))
        .current_dir(&root)
        .env("BASE_URL", &base)
        .env("CONTROL_URL", &control_url)
        .env("OUT_DIR", &out_dir)
        .env("CHROMIUM", CHROMIUM)
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(170), node.status()).await;

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), control_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;

    let status = run
        .unwrap_or_else(|_| {
            panic!(
                "the browser flows did not finish within 170 s; screenshots in {}",
                out_dir.display()
            )
        })
        .expect("node runs");
    assert!(
        status.success(),
        "the browser flows failed ({status}); screenshots in {}",
        out_dir.display()
    );
    app.assert_audit_verifies().await;
}

/// The CSP report count the browser test relies on does count: a report raises it.
#[tokio::test]
async fn a_csp_report_raises_the_count_the_browser_test_reads() {
    let mut captured: Option<AppState> = None;
    let app = App::with_state(
        TestDatabase::sqlite(),
        |_| {},
        |state| {
            captured = Some(state.clone());
            state
        },
    )
    .await;
    let state = captured.unwrap();
    assert_eq!(csp_report_count(&state.metrics.render()), 0);
    let r = app
        .send(Req::post("/csp-report").json(&json!({"csp-report": {
            "document-uri": "http://127.0.0.1/inbox",
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "blocked-uri": "inline"
        }})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(csp_report_count(&state.metrics.render()), 1);
    // An unknown directive still counts (as "other").
    let r = app
        .send(Req::post("/csp-report").json(&json!({"csp-report": {"violated-directive": "x"}})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(csp_report_count(&state.metrics.render()), 2);
}
