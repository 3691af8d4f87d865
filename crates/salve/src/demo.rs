//! `salve demo`: a realistic demo practice on a fresh data directory.
//!
//! Everything is made through the JSON API the product itself serves (driven in-process through
//! the router, as the API token, the demo admin, or the staff member who would do it), so the
//! demo data obeys the same rules, consent checks and audit as real use: nothing is inserted
//! beside the domain. Only the staff accounts themselves are created in the store, as the
//! `salve admin` commands do; each then signs in through the API and enrols an authenticator.
//!
//! This file depends on nothing else in the `salve` binary, so `tests/demo.rs` includes it and
//! calls [`seed`] against a temporary store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;

use anyhow::{Context, anyhow, bail};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use salve_core::Sensitive;
use salve_core::audit::{Actor, RequestContext};
use salve_core::permissions::{Role, Scope};
use salve_crypto::totp::{Digits, TotpAlgorithm, TotpSecret};
use salve_server::AppState;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PRACTICE_NAME: &str = "Salve Demo Family Practice";
const PRACTICE_PHONE: &str = "(312) 555-0100";

/// A demo staff account and everything a person needs to sign in as it.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub role: Role,
    /// What this role does, for the printed list.
    pub role_label: &'static str,
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub password: String,
    /// The authenticator secret, base32 (type it into an authenticator app).
    pub totp_secret: String,
    pub otpauth_uri: String,
    /// The session used while seeding (ended when seeding is done; never printed).
    pub session: String,
}

/// A patient of the demo practice.
#[derive(Debug, Clone)]
pub struct DemoPatient {
    pub id: String,
    pub name: String,
    pub birth_date: String,
    pub phone: String,
    pub email: String,
    /// How the demo recorded their consent (for the printed summary and tests).
    pub consent: ConsentProfile,
}

/// The consent situations the demo covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentProfile {
    /// Plain SMS, SMS and email notifications, portal, for every purpose (intake form).
    Everything,
    /// The secure portal only.
    PortalOnly,
    /// Email notifications and the portal.
    EmailOnly,
    /// Consented to texts at intake, then texted STOP.
    StoppedBySms,
    /// Consented to everything, and asked to be texted at one number only.
    Confidential,
    /// Restricted (staff member's relative): only the named clinician sees them.
    Restricted,
    /// Nothing recorded yet: record it at `/admin/patients/{id}/consent`.
    NotYetAsked,
}

impl ConsentProfile {
    /// Words for the printed list.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Everything => "texts, email and portal",
            Self::PortalOnly => "secure portal only",
            Self::EmailOnly => "email and portal, no texts",
            Self::StoppedBySms => "texted STOP (texting consent revoked)",
            Self::Confidential => "confidential-communication request: never by email",
            Self::Restricted => "restricted: only Dr. Priya Lee sees this patient",
            Self::NotYetAsked => "no consent yet: record it at /admin/patients",
        }
    }
}

/// A secure link to the portal, fresh for the printed output.
#[derive(Debug, Clone)]
pub struct PortalLink {
    pub url: String,
    pub patient: String,
    pub birth_date: String,
}

/// What [`seed`] made.
#[derive(Debug, Clone)]
pub struct Demo {
    pub practice_id: String,
    pub practice_name: String,
    /// An API token with every scope.
    pub api_token: String,
    pub users: Vec<DemoUser>,
    pub patients: Vec<DemoPatient>,
    /// Conversations with messages, by patient name.
    pub conversations: Vec<String>,
    pub portal: Option<PortalLink>,
}

/// The demo's staff: one per role.
const STAFF: [(Role, &str, &str, &str); 4] = [
    (
        Role::Admin,
        "practice admin: settings, staff, outbox",
        "Dana Whitfield",
        "dana.admin@demo.example.org",
    ),
    (
        Role::Clinician,
        "clinician: every conversation, clinical replies",
        "Dr. Priya Lee",
        "priya.lee@demo.example.org",
    ),
    (
        Role::Staff,
        "front desk: conversations, appointments",
        "Marcus Bell",
        "marcus.frontdesk@demo.example.org",
    ),
    (
        Role::Auditor,
        "auditor: audit log and reports, no message content",
        "Ruth Alvarez",
        "ruth.audit@demo.example.org",
    ),
];

/// given, family, birth date, language, phone, email, consent
type PatientRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    ConsentProfile,
);

/// Fictional patients: 555-01xx numbers, example.org addresses.
const PATIENTS: [PatientRow; 22] = {
    use ConsentProfile::*;
    [
        (
            "Ana",
            "Ruiz",
            "1984-07-02",
            "es",
            "+13125550142",
            "ana.ruiz@example.org",
            Everything,
        ),
        // Leo's phone is his mother's: a text from it goes to triage (two patients share it).
        (
            "Leo",
            "Ruiz",
            "2015-03-11",
            "es",
            "+13125550142",
            "leo.family@example.org",
            Everything,
        ),
        (
            "Grace",
            "Okafor",
            "1958-11-23",
            "en",
            "+13125550177",
            "grace.okafor@example.org",
            Everything,
        ),
        (
            "Minh",
            "Tran",
            "1991-01-30",
            "vi",
            "+13125550190",
            "minh.tran@example.org",
            Everything,
        ),
        (
            "Lucía",
            "Hernández",
            "1976-05-19",
            "es",
            "+13125550111",
            "lucia.hernandez@example.org",
            Everything,
        ),
        (
            "Robert",
            "Chen",
            "1949-09-04",
            "en",
            "+13125550112",
            "robert.chen@example.org",
            Everything,
        ),
        (
            "David",
            "Kim",
            "1988-12-14",
            "en",
            "+13125550113",
            "david.kim@example.org",
            Everything,
        ),
        (
            "Samir",
            "Patel",
            "1995-02-27",
            "en",
            "+13125550114",
            "samir.patel@example.org",
            StoppedBySms,
        ),
        (
            "Eleanor",
            "Brooks",
            "1939-06-08",
            "en",
            "+13125550115",
            "eleanor.brooks@example.org",
            PortalOnly,
        ),
        (
            "Jamal",
            "Washington",
            "1982-10-21",
            "en",
            "+13125550116",
            "jamal.washington@example.org",
            EmailOnly,
        ),
        (
            "Hannah",
            "Schmidt",
            "1990-03-03",
            "en",
            "+13125550117",
            "hannah.schmidt@example.org",
            Confidential,
        ),
        (
            "Olivia",
            "Bennett",
            "1979-08-30",
            "en",
            "+13125550118",
            "olivia.bennett@example.org",
            Restricted,
        ),
        (
            "Tomás",
            "Ortega",
            "1967-04-12",
            "es",
            "+13125550119",
            "tomas.ortega@example.org",
            Everything,
        ),
        (
            "Fatima",
            "Haddad",
            "2001-07-25",
            "en",
            "+13125550120",
            "fatima.haddad@example.org",
            Everything,
        ),
        (
            "George",
            "Novak",
            "1953-01-17",
            "en",
            "+13125550121",
            "george.novak@example.org",
            EmailOnly,
        ),
        (
            "Aiko",
            "Tanaka",
            "1985-11-02",
            "en",
            "+13125550122",
            "aiko.tanaka@example.org",
            Everything,
        ),
        (
            "Marisol",
            "Vega",
            "1993-09-09",
            "es",
            "+13125550123",
            "marisol.vega@example.org",
            PortalOnly,
        ),
        (
            "Peter",
            "Lindqvist",
            "1971-12-29",
            "en",
            "+13125550124",
            "peter.lindqvist@example.org",
            Everything,
        ),
        (
            "Nia",
            "Adeyemi",
            "2008-05-05",
            "en",
            "+13125550125",
            "nia.family@example.org",
            Everything,
        ),
        (
            "Walter",
            "Greene",
            "1944-02-14",
            "en",
            "+13125550126",
            "walter.greene@example.org",
            NotYetAsked,
        ),
        (
            "Chloe",
            "Martin",
            "1999-06-21",
            "en",
            "+13125550127",
            "chloe.martin@example.org",
            NotYetAsked,
        ),
        (
            "Yusuf",
            "Demir",
            "1980-10-10",
            "en",
            "+13125550128",
            "yusuf.demir@example.org",
            Everything,
        ),
    ]
};

pub const CONSENT_TEXT_VERSION: &str = "2026-intake-1";
pub const CONSENT_TEXT: &str = "Salve Demo Family Practice may contact me about appointment reminders, \
care messages and practice announcements by the channels I choose below. Texts and emails that \
announce a secure message contain no health information; I open the message in the secure portal \
after proving who I am. Plain text messages (SMS) are not encrypted: anyone who sees my phone, and \
my phone company, may read them. I may withdraw this consent at any time by replying STOP, by \
telling the practice, or in the portal. Message and data rates may apply.";

const GUIDELINES: &str = "Messaging guidelines (Salve Demo Family Practice)\n\n\
1. Keep clinical details (results, diagnoses, medications) in secure messages; Salve decides the channel and tells you why.\n\
2. Never text from a personal phone: every patient conversation goes through Salve.\n\
3. Reply within one business day; urgent-looking messages are flagged, call the patient.\n\
4. If a patient texts STOP, Salve stops texting them at once; do not work around it.\n\
5. Check consent and confidential-communication requests on the conversation before replying.";

/// Drives the API in-process, as a client would.
struct Api {
    router: axum::Router,
}

enum Auth<'a> {
    Token(&'a str),
    Session(&'a str),
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Api {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<Auth<'_>>,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        match auth {
            Some(Auth::Token(t)) => {
                builder = builder.header(header::AUTHORIZATION, format!("Bearer {t}"))
            }
            Some(Auth::Session(s)) => {
                builder = builder
                    .header(header::COOKIE, format!("{}={s}", salve_server::COOKIE))
                    .header("sec-fetch-site", "same-origin");
            }
            None => builder = builder.header("sec-fetch-site", "same-origin"),
        }
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut request = builder.body(body)?;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024).await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A call that must succeed; the error names the step (never any patient data: problem
    /// documents do not echo what was sent).
    async fn ok(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
        step: &str,
    ) -> anyhow::Result<Value> {
        let answer = self.send(method, path, Some(auth), body).await?;
        if !answer.status.is_success() {
            bail!(
                "demo setup failed at \"{step}\": {} {}",
                answer.status,
                answer.body
            );
        }
        Ok(answer.body)
    }
}

fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    let prefix = format!("{}=", salve_server::COOKIE);
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(';').next())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// RFC 4648 base32 (an authenticator secret), padding optional.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The current code of an authenticator secret (what the app would show).
pub fn totp_code(secret_base32: &str, unix_seconds: u64) -> anyhow::Result<String> {
    let bytes = base32_decode(secret_base32).context("the TOTP secret is not base32")?;
    let secret = TotpSecret::from_bytes(&bytes).map_err(|_| anyhow!("bad TOTP secret length"))?;
    Ok(salve_crypto::totp::code_at(
        &secret,
        TotpAlgorithm::Sha1,
        Digits::Six,
        unix_seconds,
        NonZeroU64::new(30).expect("30 is not zero"),
    ))
}

/// Creates the demo practice and everything in it. `state` is the server's state (with the
/// local outbox); the demo's links point at `state.config.public_url`.
pub async fn seed(state: &AppState) -> anyhow::Result<Demo> {
    let store = state.store.clone();
    let api = Api {
        router: salve_server::build_router(state.clone()),
    };
    let cli = RequestContext::default();

    // The practice, its API token, and its channel: the local outbox, so an admin can see what
    // was "sent" and simulate patients' replies.
    let practice = store
        .create_practice(Actor::Cli, PRACTICE_NAME, "US", "America/Chicago")
        .await?;
    let token = salve_crypto::token::mint("salve");
    store
        .create_token(Actor::Cli, practice.id, &Scope::ALL, "demo", &token.hash)
        .await?;
    let api_token = token.secret.as_str().to_owned();
    let t = api_token.as_str();
    store
        .add_provider(
            practice.id,
            Actor::Cli,
            &cli,
            &salve_store::NewProvider {
                kind: salve_core::vendors::ProviderKind::LocalOutbox,
                label: "Demo outbox".into(),
                credentials: Sensitive::new("{}".into()),
                numbers: Vec::new(),
                agreement: None,
            },
        )
        .await?;

    // Staff: created as `salve admin add-user` does, then each signs in through the API and
    // enrols an authenticator (MFA stays required).
    let mut users = Vec::new();
    for (role, role_label, name, email) in STAFF {
        let password = salve_crypto::token::mint("demo").secret.as_str().to_owned();
        let normalized = salve_core::password_policy::normalize(&password);
        let hash = tokio::task::spawn_blocking(move || {
            salve_crypto::password::hash_password(normalized.expose())
        })
        .await?;
        let id = store
            .create_user(
                &Actor::Cli,
                &cli,
                practice.id,
                &Sensitive::new(email.to_owned()),
                &Sensitive::new(name.to_owned()),
                Some(hash),
                role,
                role == Role::Admin,
            )
            .await?;
        let answer = api
            .send(
                Method::POST,
                "/api/v1/session",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await?;
        if answer.status != StatusCode::OK {
            bail!("demo sign-in failed: {} {}", answer.status, answer.body);
        }
        let pending = session_cookie(&answer.headers).context("no session cookie at sign-in")?;
        let enrolment = api
            .ok(
                Method::POST,
                "/api/v1/session/mfa/enroll",
                Auth::Session(&pending),
                None,
                "authenticator enrolment",
            )
            .await?;
        let secret = enrolment["secret"]
            .as_str()
            .context("no secret in the enrolment")?
            .to_owned();
        let now = state.clock.now().unix_timestamp() as u64;
        let answer = api
            .send(
                Method::POST,
                "/api/v1/session/mfa/confirm",
                Some(Auth::Session(&pending)),
                Some(json!({"code": totp_code(&secret, now)?})),
            )
            .await?;
        if answer.status != StatusCode::OK {
            bail!("demo enrolment failed: {} {}", answer.status, answer.body);
        }
        let session = session_cookie(&answer.headers).unwrap_or(pending);
        users.push(DemoUser {
            role,
            role_label,
            user_id: id.to_string(),
            name: name.to_owned(),
            email: email.to_owned(),
            password,
            totp_secret: secret,
            otpauth_uri: enrolment["otpauth_uri"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            session,
        });
    }
    let by_role = |role: Role| {
        users
            .iter()
            .find(|u| u.role == role)
            .map(|u| u.session.clone())
            .expect("one user per role")
    };
    let admin = by_role(Role::Admin);
    let clinician = by_role(Role::Clinician);
    let front_desk = by_role(Role::Staff);
    let clinician_id = users
        .iter()
        .find(|u| u.role == Role::Clinician)
        .map(|u| u.user_id.clone())
        .unwrap_or_default();

    // Messaging guidelines, published by the admin and acknowledged by everyone, so each demo
    // user lands straight in the inbox.
    let guidelines = api
        .ok(
            Method::PUT,
            "/api/v1/guidelines",
            Auth::Session(&admin),
            Some(json!({"body": GUIDELINES})),
            "messaging guidelines",
        )
        .await?;
    let version = guidelines["version"].as_i64().unwrap_or(1);
    for user in &users {
        api.ok(
            Method::POST,
            "/api/v1/guidelines/acknowledge",
            Auth::Session(&user.session),
            Some(json!({"version": version})),
            "guidelines acknowledgment",
        )
        .await?;
    }

    // Practice settings: what texts are signed with, office hours, the response target.
    api.ok(
        Method::PUT,
        "/api/v1/practice/messaging",
        Auth::Session(&admin),
        Some(json!({
            "sender_name": "Demo Family Practice",
            "phone": PRACTICE_PHONE,
            "hours_text": "Mon-Fri 8am-6pm, Sat 9am-noon",
            "expected_reply_text": "within one business day",
            "on_call_number": "(312) 555-0199",
            "front_desk_sees_clinical": false,
        })),
        "messaging settings",
    )
    .await?;
    let day = json!([{"start": "08:00", "end": "18:00"}]);
    api.ok(
        Method::PUT,
        "/api/v1/practice/office-hours",
        Auth::Session(&admin),
        Some(json!({
            "weekly": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day,
                       "sat": [{"start": "09:00", "end": "12:00"}]},
            "holidays": [{"date": "2026-12-25", "name": "Christmas Day"},
                         {"date": "2027-01-01", "name": "New Year's Day"}],
        })),
        "office hours",
    )
    .await?;
    api.ok(
        Method::PUT,
        "/api/v1/practice/response-settings",
        Auth::Session(&admin),
        Some(json!({"target_minutes": 480})),
        "response target",
    )
    .await?;

    // The SMS-safe catalog: what may be named in a plain text. The cardiology clinic may not.
    let mut catalog = BTreeMap::new();
    for (kind, name, sms_safe) in [
        ("appointment_type", "Annual checkup", true),
        ("appointment_type", "Follow-up visit", true),
        ("appointment_type", "Flu shot", true),
        ("appointment_type", "Sick visit", true),
        ("location", "Main St office", true),
        ("location", "Lakeview office", true),
        ("location", "Heart & Vascular Clinic, 3rd floor", false),
        ("provider", "Dr. Priya Lee", true),
        ("provider", "Dr. Samuel Ortiz", true),
        ("provider", "Nurse Practitioner Jo Kim", true),
    ] {
        let item = api
            .ok(
                Method::PUT,
                "/api/v1/catalog",
                Auth::Session(&admin),
                Some(json!({"kind": kind, "name": name, "sms_safe": sms_safe, "active": true})),
                "catalog",
            )
            .await?;
        catalog.insert(name, item["id"].as_str().unwrap_or_default().to_owned());
    }

    // Saved replies.
    for (name, body) in [
        (
            "Please call the office",
            "Hi {patient.first_name}, this is {practice.sender_name}. Please call us at {practice.phone} when you have a moment.",
        ),
        (
            "Appointment reminder",
            "Hi {patient.first_name}, a reminder of your {appointment.type} on {appointment.date} at {appointment.time} at {appointment.location} with {appointment.provider}. Reply C to confirm.",
        ),
        (
            "Form received",
            "Hi {patient.first_name}, we received your form. Thank you! - {practice.sender_name}",
        ),
        (
            "Results in the portal",
            "Hi {patient.first_name}, {staff.first_name} sent you a secure message about your recent results. Please read it in the portal: {practice.portal_link}",
        ),
    ] {
        api.ok(
            Method::POST,
            "/api/v1/templates",
            Auth::Session(&admin),
            Some(json!({"name": name, "body": body})),
            "saved reply",
        )
        .await?;
    }

    // The consent text shown at intake.
    let text = api
        .ok(
            Method::POST,
            "/api/v1/consent-texts",
            Auth::Session(&admin),
            Some(json!({"version": CONSENT_TEXT_VERSION, "text": CONSENT_TEXT})),
            "consent text",
        )
        .await?;
    let consent_text = json!({
        "version": CONSENT_TEXT_VERSION,
        "sha256_hex": text["sha256"].as_str().unwrap_or_default(),
    });

    // Patients, as the EHR integration would create them (the API token), with their consent.
    let mut patients = Vec::new();
    for (i, (given, family, dob, lang, phone, email, profile)) in PATIENTS.into_iter().enumerate() {
        let guardian = matches!(given, "Leo" | "Nia");
        let created = api
            .ok(
                Method::POST,
                "/api/v1/patients",
                Auth::Token(t),
                Some(json!({
                    "given_name": given,
                    "family_name": family,
                    "birth_date": dob,
                    "mrn": format!("DEMO-{:04}", i + 1),
                    "preferred_language": lang,
                    "contacts": [
                        {"kind": "phone", "value": phone, "role": if guardian { "guardian" } else { "self" }},
                        {"kind": "email", "value": email, "role": if guardian { "guardian" } else { "self" }},
                    ],
                })),
                "patient",
            )
            .await?;
        let id = created["id"].as_str().context("no patient id")?.to_owned();
        let channels: &[&str] = match profile {
            ConsentProfile::Everything
            | ConsentProfile::StoppedBySms
            | ConsentProfile::Confidential
            | ConsentProfile::Restricted => &["sms_plain", "sms_notify", "email_notify", "portal"],
            ConsentProfile::PortalOnly => &["portal"],
            ConsentProfile::EmailOnly => &["email_notify", "portal"],
            ConsentProfile::NotYetAsked => &[],
        };
        let mut events = Vec::new();
        for channel in channels {
            for purpose in ["appointment_reminders", "care_messages", "announcements"] {
                events.push(json!({
                    "channel": channel,
                    "purpose": purpose,
                    "action": "grant",
                    "method": "intake_form",
                    "consent_text": consent_text,
                    "sms_risk_acknowledged": *channel == "sms_plain",
                }));
            }
        }
        if !events.is_empty() {
            api.ok(
                Method::POST,
                &format!("/api/v1/patients/{id}/consent"),
                Auth::Token(t),
                Some(json!({"events": events, "evidence": "Signed intake form, scanned to the chart"})),
                "consent",
            )
            .await?;
        }
        if profile == ConsentProfile::Confidential {
            api.ok(
                Method::POST,
                &format!("/api/v1/patients/{id}/confidential-requests"),
                Auth::Session(&front_desk),
                Some(
                    json!({"rule": "never_medium", "value": "email", "method": "written_form",
                            "evidence": "Confidential communications request form"}),
                ),
                "confidential-communication request",
            )
            .await?;
        }
        if profile == ConsentProfile::Restricted {
            api.ok(
                Method::PUT,
                &format!("/api/v1/patients/{id}/restriction"),
                Auth::Session(&admin),
                Some(json!({"restricted": true, "users": [clinician_id]})),
                "restricted patient",
            )
            .await?;
        }
        patients.push(DemoPatient {
            id,
            name: format!("{given} {family}"),
            birth_date: dob.to_owned(),
            phone: phone.to_owned(),
            email: email.to_owned(),
            consent: profile,
        });
    }
    let patient = |name: &str| -> anyhow::Result<DemoPatient> {
        patients
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .with_context(|| format!("demo patient {name} missing"))
    };

    // Conversations, in both directions.
    let mut conversations = Vec::new();
    let send = |who: &str, p: &DemoPatient, body: Value| {
        let path = format!("/api/v1/patients/{}/messages", p.id);
        let who = who.to_owned();
        let api = &api;
        async move {
            api.ok(
                Method::POST,
                &path,
                Auth::Session(&who),
                Some(body),
                "staff message",
            )
            .await
        }
    };
    let text_in = |from: &str, text: &str| {
        let body = json!({"from": from, "text": text});
        let api = &api;
        let admin = admin.clone();
        async move {
            api.ok(
                Method::POST,
                "/api/v1/admin/outbox/inbound",
                Auth::Session(&admin),
                Some(body),
                "patient's text",
            )
            .await
        }
    };

    // Grace: a plain, SMS-safe exchange, then closed.
    let grace = patient("Grace Okafor")?;
    let sent = send(
        &front_desk,
        &grace,
        json!({"text": format!("Hi Grace, this is Demo Family Practice. Please call us at {PRACTICE_PHONE} to schedule your annual checkup."),
               "kind": "administrative"}),
    )
    .await?;
    text_in(&grace.phone, "Thanks, I'll call tomorrow morning.").await?;
    send(
        &front_desk,
        &grace,
        json!({"text": "Great, talk to you then. Have a nice evening!", "kind": "administrative"}),
    )
    .await?;
    if let Some(conversation) = sent["conversation_id"].as_str() {
        api.ok(
            Method::PUT,
            &format!("/api/v1/conversations/{conversation}/state"),
            Auth::Session(&front_desk),
            Some(json!({"state": "closed"})),
            "closing a conversation",
        )
        .await?;
    }
    conversations.push(grace.name.clone());

    // Minh: results go secure (the text only says a secure message is waiting); his reply by
    // text is left unread.
    let minh = patient("Minh Tran")?;
    send(
        &clinician,
        &minh,
        json!({"text": "Hi Minh, your cholesterol results are back: your LDL is 162, a little high. Let's talk about diet and whether to start a statin at your follow-up visit."}),
    )
    .await?;
    text_in(
        &minh.phone,
        "Thank you doctor. Should I stop eating eggs until the visit?",
    )
    .await?;
    conversations.push(minh.name.clone());

    // Lucía: in Spanish, answered in Spanish.
    let lucia = patient("Lucía Hernández")?;
    text_in(
        &lucia.phone,
        "Hola, necesito cambiar mi cita del jueves. ¿Tienen algo el viernes por la mañana? Gracias.",
    )
    .await?;
    send(
        &front_desk,
        &lucia,
        json!({"text": format!("Hola Lucía, sí: tenemos el viernes a las 9:00 en Main St office. Llámenos al {PRACTICE_PHONE} para confirmar."),
               "kind": "administrative"}),
    )
    .await?;
    conversations.push(lucia.name.clone());

    // Robert: urgent (flagged; Salve answers with emergency guidance).
    let robert = patient("Robert Chen")?;
    text_in(
        &robert.phone,
        "I have crushing chest pain since this morning and my left arm feels numb. What should I do?",
    )
    .await?;
    conversations.push(robert.name.clone());

    // David: a plain question, unread.
    let david = patient("David Kim")?;
    text_in(
        &david.phone,
        "Hi, can I get a copy of my vaccination record for my new job?",
    )
    .await?;
    conversations.push(david.name.clone());

    // Samir: texted STOP (his texting consent is revoked at once, confirmed once).
    let samir = patient("Samir Patel")?;
    send(
        &front_desk,
        &samir,
        json!({"text": format!("Hi Samir, please call us at {PRACTICE_PHONE} to update your insurance details."), "kind": "administrative"}),
    )
    .await?;
    text_in(&samir.phone, "STOP").await?;
    conversations.push(samir.name.clone());

    // Eleanor: portal only: the message waits in the portal, nothing is texted or emailed.
    let eleanor = patient("Eleanor Brooks")?;
    send(
        &clinician,
        &eleanor,
        json!({"text": "Hello Eleanor, your bone density scan shows mild osteopenia. Please keep taking vitamin D and calcium; we will repeat the scan in two years."}),
    )
    .await?;
    conversations.push(eleanor.name.clone());

    // Jamal: email only: the notification goes by email.
    let jamal = patient("Jamal Washington")?;
    send(
        &clinician,
        &jamal,
        json!({"text": "Hi Jamal, your blood pressure log looks much better on the new dose of lisinopril. Keep going and send us another week of readings."}),
    )
    .await?;
    conversations.push(jamal.name.clone());

    // Ana, from the phone she shares with her son: it goes to triage.
    let ana = patient("Ana Ruiz")?;
    text_in(
        &ana.phone,
        "Hola, soy Ana. ¿Puedo traer a Leo a su chequeo el lunes?",
    )
    .await?;

    // Appointments with reminders (the reminders pass plans them).
    let now = state.clock.now();
    let at = |days: i64, hour_utc: u8| -> anyhow::Result<String> {
        let day = (now + time::Duration::days(days)).date();
        let t = day.with_hms(hour_utc, 0, 0)?.assume_utc();
        Ok(t.format(&time::format_description::well_known::Rfc3339)?)
    };
    for (p, days, hour, kind, place, provider) in [
        (
            &grace,
            2,
            16,
            "Annual checkup",
            "Main St office",
            "Dr. Priya Lee",
        ),
        (
            &lucia,
            1,
            15,
            "Follow-up visit",
            "Main St office",
            "Dr. Samuel Ortiz",
        ),
        (
            &minh,
            6,
            17,
            "Follow-up visit",
            "Lakeview office",
            "Dr. Priya Lee",
        ),
        (
            &david,
            3,
            20,
            "Flu shot",
            "Lakeview office",
            "Nurse Practitioner Jo Kim",
        ),
    ] {
        api.ok(
            Method::POST,
            "/api/v1/appointments",
            Auth::Token(t),
            Some(json!({
                "patient_id": p.id,
                "starts_at": at(days, hour)?,
                "time_zone": "America/Chicago",
                "duration_minutes": 30,
                "appointment_type_id": catalog[kind],
                "location_id": catalog[place],
                "provider_id": catalog[provider],
            })),
            "appointment",
        )
        .await?;
    }

    // Send what was queued, so the outbox shows it at once.
    for _ in 0..5 {
        if salve_server::worker::run_once(state, "demo-seed").await? == 0 {
            break;
        }
    }

    // A fresh secure link for one patient, to try the portal.
    let portal = portal_link(state, &api, &admin, &grace).await?;

    // The seeding sessions end here: a person signs in with the printed details.
    for user in &users {
        api.ok(
            Method::DELETE,
            "/api/v1/session",
            Auth::Session(&user.session),
            None,
            "signing out",
        )
        .await?;
    }

    Ok(Demo {
        practice_id: practice.id.to_string(),
        practice_name: practice.name,
        api_token,
        users,
        patients,
        conversations,
        portal,
    })
}

/// Sends `patient` a secure link by text and finds it in the local outbox.
async fn portal_link(
    state: &AppState,
    api: &Api,
    admin: &str,
    patient: &DemoPatient,
) -> anyhow::Result<Option<PortalLink>> {
    let sent = api
        .ok(
            Method::POST,
            &format!("/api/v1/patients/{}/secure-links", patient.id),
            Auth::Session(admin),
            Some(json!({"contact_index": 0})),
            "secure link",
        )
        .await?;
    let Some(outbox) = &state.local_outbox else {
        return Ok(None);
    };
    let id = sent["id"].as_str().unwrap_or_default();
    let url = outbox
        .list()?
        .into_iter()
        .find(|r| r.id.to_string() == id)
        .and_then(|r| {
            r.body
                .split_whitespace()
                .find(|w| w.contains("/p/"))
                .map(str::to_owned)
        });
    Ok(url.map(|url| PortalLink {
        url,
        patient: patient.name.clone(),
        birth_date: patient.birth_date.clone(),
    }))
}

/// What `salve demo` prints once it is listening at `url`.
pub fn describe(demo: &Demo, url: &str, data_dir: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Salve demo is running at {url}");
    let _ = writeln!(
        out,
        "  practice:  {} ({})",
        demo.practice_name, demo.practice_id
    );
    let _ = writeln!(out, "  sign in:   {url}/sign-in");
    let _ = writeln!(
        out,
        "  outbox:    {url}/admin/outbox (as the admin: every text and email the demo \"sent\"; reply as a patient there)"
    );
    if let Some(p) = &demo.portal {
        let _ = writeln!(
            out,
            "  portal:    {} (a secure link for {}; date of birth {}; the one-time code arrives in the outbox)",
            p.url, p.patient, p.birth_date
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Staff accounts (MFA is on: add each TOTP secret to an authenticator app, or open the otpauth URI):"
    );
    for u in &demo.users {
        let _ = writeln!(out, "  {} ({}), {}", u.name, u.role.as_str(), u.role_label);
        let _ = writeln!(out, "    email:       {}", u.email);
        let _ = writeln!(out, "    password:    {}", u.password);
        let _ = writeln!(out, "    TOTP secret: {}", u.totp_secret);
        let _ = writeln!(out, "    otpauth URI: {}", u.otpauth_uri);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} patients (fictional), {} conversations (urgent, unread, Spanish, closed, STOP). Worth a look:",
        demo.patients.len(),
        demo.conversations.len()
    );
    for p in demo
        .patients
        .iter()
        .filter(|p| p.consent != ConsentProfile::Everything || demo.conversations.contains(&p.name))
    {
        let _ = writeln!(
            out,
            "  {:<18} {}  {:<30} {}",
            p.name,
            p.phone,
            p.email,
            p.consent.describe()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "  API token: {}", demo.api_token);
    let _ = writeln!(
        out,
        "  try:       curl -H \"Authorization: Bearer {}\" {url}/api/v1/patients",
        demo.api_token
    );
    let _ = writeln!(out, "  OpenAPI:   {url}/api/v1/openapi.json");
    let _ = writeln!(
        out,
        "  outbox:    salve outbox list --data-dir {data_dir}/data (the same messages, as JSON lines)"
    );
    let _ = writeln!(out, "  data:      {data_dir} (deleted when the demo stops)");
    let _ = write!(out, "Press Ctrl-C to stop.");
    out
}
