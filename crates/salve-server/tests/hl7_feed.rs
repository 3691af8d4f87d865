//! The HL7 v2 appointment feed end to end, on SQLite and (with `SALVE_TEST_POSTGRES_URL`)
//! PostgreSQL: `salve_server::serve` with the listener configured; messages built with the PyPI
//! `hl7` package and sent over MLLP with its `MLLPClient`; the ACKs; what the JSON API then
//! shows; resends and malformed messages that change nothing; the audit trail; shutdown.

mod common;

use std::sync::{Arc, Mutex};

use common::{App, Req};
use salve_core::audit::RequestContext;
use salve_core::permissions::Principal;
use salve_server::{AppState, Hl7Config, Hl7Source};
use salve_store::CatalogKind;
use salve_testkit::TestDatabase;
use salve_testkit::peers::run_python;
use serde_json::{Value, json};

/// A field assignment for the Python builder: "F.R.C" and its value.
fn f(path: &str, value: &str) -> Value {
    json!([path, value])
}

fn msg(kind: &str, control_id: &str, segments: Value) -> Value {
    json!({
        "msh": {"facility": "LAKESIDE", "type": kind, "control_id": control_id},
        "segments": segments,
    })
}

fn pid_ana() -> Value {
    json!([
        "PID",
        [
            f("3.1.1", "12345"),
            f("3.1.4", "LAKESIDE"),
            f("3.1.5", "MR"),
            f("5.1.1", "Quintanilla"),
            f("5.1.2", "Ana"),
            f("7.1.1", "19710314"),
            f("13.1.2", "PRN"),
            f("13.1.3", "PH"),
            f("13.1.6", "312"),
            f("13.1.7", "5550142"),
        ]
    ])
}

fn sch(id: &str, start: &str, minutes: &str) -> Value {
    json!([
        "SCH",
        [
            f("2.1.1", id),
            f("9.1.1", minutes),
            f("10.1.1", "MIN"),
            f("11.1.4", start),
        ]
    ])
}

fn resources(location: &str) -> Vec<Value> {
    vec![
        json!([
            "AIS",
            [f("1", "1"), f("3.1.1", "CHK"), f("3.1.2", "Annual checkup")]
        ]),
        json!(["AIL", [f("1", "1"), f("3.1.1", location)]]),
        json!([
            "AIP",
            [
                f("1", "1"),
                f("3.1.1", "1234"),
                f("3.1.2", "Lee"),
                f("3.1.6", "Dr")
            ]
        ]),
    ]
}

fn with(mut segments: Vec<Value>, more: Vec<Value>) -> Value {
    segments.extend(more);
    Value::Array(segments)
}

/// Sends the messages over one MLLP connection with the `hl7` package; `None` when the peers
/// are not installed (outside CI).
async fn send(port: u16, messages: Vec<Value>) -> Option<Vec<Value>> {
    let job = json!({"host": "127.0.0.1", "port": port, "messages": messages});
    tokio::task::spawn_blocking(move || run_python("hl7_mllp.py", &job))
        .await
        .unwrap()
        .map(|v| v.as_array().unwrap().clone())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn appointments(app: &App, patient: &str) -> Vec<Value> {
    let r = app
        .send(Req::get(format!("/api/v1/appointments?patient_id={patient}")).bearer(&app.token))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["appointments"].as_array().unwrap().clone()
}

async fn patient_by_mrn(app: &App, mrn: &str) -> Option<Value> {
    let r = app
        .send(
            Req::post("/api/v1/patients/lookup")
                .bearer(&app.token)
                .json(&json!({ "mrn": mrn })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["patients"].as_array().unwrap().first().cloned()
}

async fn count(app: &App, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(app.store.pool_for_tests())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehr_feeds_patients_and_appointments_over_mllp() {
    for db in TestDatabase::all().await {
        story(db).await;
    }
}

/// The app, with `serve` running and the feed configured by `hl7` (given the practice and the
/// MLLP port); send `()` to stop it.
struct Running {
    app: App,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(
    db: TestDatabase,
    hl7: impl FnOnce(salve_core::PracticeId, u16) -> Hl7Config,
) -> Running {
    let captured: Arc<Mutex<Option<AppState>>> = Arc::default();
    let keep = captured.clone();
    let app = App::with_state(
        db,
        |_| {},
        move |s| {
            *keep.lock().unwrap() = Some(s.clone());
            s
        },
    )
    .await;
    for (kind, name) in [
        (CatalogKind::AppointmentType, "Annual checkup"),
        (CatalogKind::Location, "Main St"),
        (CatalogKind::Location, "Annex"),
        (CatalogKind::Provider, "Dr Lee"),
    ] {
        app.store
            .upsert_catalog_item(
                app.practice,
                &Principal::Operator,
                &RequestContext::default(),
                kind,
                name,
                true,
                true,
            )
            .await
            .unwrap();
    }

    // `serve` with the feed configured: the web listener and the MLLP listener together.
    let mut state = captured.lock().unwrap().take().unwrap();
    let port = free_port();
    let mut config = (*state.config).clone();
    config.hl7 = Some(hl7(app.practice, port));
    state.config = Arc::new(config);
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(salve_server::serve(
        state,
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    bound_rx.await.unwrap();
    Running {
        app,
        port,
        stop,
        server,
    }
}

fn lakeside(practice: salve_core::PracticeId, port: u16, addresses: &str) -> Hl7Config {
    Hl7Config::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        vec![Hl7Source {
            practice,
            sending_facility: "LAKESIDE".into(),
            addresses: vec![addresses.parse().unwrap()],
        }],
    )
}

async fn story(db: TestDatabase) {
    let Running {
        app,
        port,
        stop: stop_tx,
        server,
    } = start(db, |practice, port| lakeside(practice, port, "127.0.0.0/8")).await;

    // 1. ADT^A04 registers Ana; 2. SIU^S12 books her checkup; 3. the same message again.
    let book = msg(
        "SIU^S12",
        "MSG-1001",
        with(
            vec![pid_ana(), sch("EHR-991", "202612070930-0600", "30")],
            resources("Main St"),
        ),
    );
    let Some(acks) = send(
        port,
        vec![
            msg("ADT^A04", "MSG-1000", json!([pid_ana()])),
            book.clone(),
            json!({"again": 1}),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(acks[0]["code"], "AA", "{:?}", acks[0]);
    assert_eq!(acks[0]["control_id"], "MSG-1000");
    assert_eq!(acks[0]["text"], "patient registered");
    assert_eq!(acks[0]["ack_type"], "ACK^A04^ACK");
    assert_eq!(acks[1]["code"], "AA", "{:?}", acks[1]);
    assert_eq!(acks[1]["text"], "appointment booked");
    // The resend: the same answer, nothing new.
    assert_eq!(acks[2]["code"], "AA");
    assert_eq!(acks[2]["control_id"], "MSG-1001");
    assert_eq!(acks[2]["text"], acks[1]["text"]);

    let ana = patient_by_mrn(&app, "12345").await.expect("registered");
    assert_eq!(ana["given_name"], "Ana");
    assert_eq!(ana["birth_date"], "1971-03-14");
    assert_eq!(ana["contacts"][0]["value"], "+13125550142");
    let ana_id = ana["id"].as_str().unwrap().to_owned();
    let list = appointments(&app, &ana_id).await;
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!(a["starts_at"], "2026-12-07T09:30:00-06:00");
    assert_eq!(a["duration_minutes"], 30);
    assert_eq!(a["status"], "booked");
    assert_eq!(a["status_source"], "import");
    assert_eq!(a["external_id"], "EHR-991");
    assert_eq!(a["appointment_type"]["name"], "Annual checkup");
    assert_eq!(a["location"]["name"], "Main St");
    assert_eq!(a["provider"]["name"], "Dr Lee");
    assert_eq!(a["version"], 1, "the resend changed nothing");
    assert_eq!(a["time_zone"], "America/Chicago");

    // S13 moves it (a wall time in the practice's zone, an end instead of a duration); S14
    // moves it to the Annex.
    let reschedule = msg(
        "SIU^S13",
        "MSG-1002",
        json!([
            pid_ana(),
            [
                "SCH",
                [
                    f("2.1.1", "EHR-991"),
                    f("11.1.4", "202612081000"),
                    f("11.1.5", "202612081045")
                ]
            ],
        ]),
    );
    let modify = msg(
        "SIU^S14",
        "MSG-1003",
        json!([
            pid_ana(),
            ["SCH", [f("2.1.1", "EHR-991")]],
            ["AIL", [f("1", "1"), f("3.1.1", "annex")]]
        ]),
    );
    let acks = send(port, vec![reschedule, modify]).await.unwrap();
    assert_eq!(acks[0]["code"], "AA", "{:?}", acks[0]);
    assert_eq!(acks[0]["text"], "appointment rescheduled");
    assert_eq!(acks[1]["code"], "AA", "{:?}", acks[1]);
    let a = appointments(&app, &ana_id).await.remove(0);
    assert_eq!(a["starts_at"], "2026-12-08T10:00:00-06:00");
    assert_eq!(a["duration_minutes"], 45);
    assert_eq!(a["location"]["name"], "Annex");
    assert_eq!(a["provider"]["name"], "Dr Lee");
    let version = a["version"].clone();

    // Malformed or refused messages: AE/AR with a reason naming the field, and no change.
    let patients_before = count(&app, "patients").await;
    let appointments_before = count(&app, "appointments").await;
    let acks = send(
        port,
        vec![
            // A month 13.
            msg(
                "SIU^S14",
                "MSG-2001",
                json!([
                    pid_ana(),
                    [
                        "SCH",
                        [f("2.1.1", "EHR-991"), f("11.1.4", "202613081000-0600")]
                    ]
                ]),
            ),
            // An unknown patient who cannot be registered (no name, no birth date).
            msg(
                "SIU^S12",
                "MSG-2002",
                with(
                    vec![
                        json!(["PID", [f("3.1.1", "999"), f("3.1.5", "MR")]]),
                        sch("EHR-5", "202612090900-0600", "30"),
                    ],
                    resources("Main St"),
                ),
            ),
            // A location the practice does not have.
            msg(
                "SIU^S12",
                "MSG-2003",
                with(
                    vec![pid_ana(), sch("EHR-6", "202612090900-0600", "30")],
                    resources("Mars"),
                ),
            ),
            // No SCH at all.
            msg("SIU^S15", "MSG-2004", json!([pid_ana()])),
            // Cancelling an appointment the practice does not have.
            msg(
                "SIU^S15",
                "MSG-2005",
                json!([pid_ana(), ["SCH", [f("2.1.1", "EHR-404")]]]),
            ),
            // A message type the feed does not take.
            msg("ORU^R01", "MSG-2006", json!([pid_ana()])),
            // A control id already used, for another message.
            msg(
                "SIU^S15",
                "MSG-1001",
                json!([pid_ana(), ["SCH", [f("2.1.1", "EHR-991")]]]),
            ),
            // A sending facility this address may not send for.
            json!({
                "msh": {"facility": "ELSEWHERE", "type": "SIU^S15", "control_id": "MSG-2008"},
                "segments": [pid_ana(), ["SCH", [f("2.1.1", "EHR-991")]]],
            }),
            // Not HL7.
            json!({"raw": "hello, is this the EHR?"}),
        ],
    )
    .await
    .unwrap();
    let expected = [
        ("AE", "102", "SCH^1^11"),
        ("AE", "101", "PID^1^7"),
        ("AE", "103", "AIL^1^3"),
        ("AE", "100", "SCH^1"),
        ("AE", "204", "SCH^1^2"),
        ("AR", "200", "MSH^1^9"),
        ("AR", "205", "MSH^1^10"),
        ("AR", "204", "MSH^1^4"),
        ("AR", "100", "MSH^1"),
    ];
    for (ack, (code, error, location)) in acks.iter().zip(expected) {
        assert_eq!(ack["code"], code, "{ack:?}");
        assert_eq!(ack["error"], error, "{ack:?}");
        assert_eq!(ack["location"], location, "{ack:?}");
        // The reason never quotes the message.
        let text = ack["text"].as_str().unwrap();
        assert!(!text.is_empty());
        for phi in [
            "Quintanilla",
            "Ana",
            "12345",
            "999",
            "19710314",
            "Mars",
            "EHR-",
        ] {
            assert!(!text.contains(phi), "{text}");
        }
    }
    assert_eq!(acks[0]["control_id"], "MSG-2001");
    assert_eq!(count(&app, "patients").await, patients_before);
    assert_eq!(count(&app, "appointments").await, appointments_before);
    let a = appointments(&app, &ana_id).await.remove(0);
    assert_eq!(a["version"], version);
    assert_eq!(a["status"], "booked");

    // A new patient arrives with their first appointment; A08 updates Ana; S15 cancels.
    let acks = send(
        port,
        vec![
            msg(
                "SIU^S12",
                "MSG-3001",
                with(
                    vec![
                        json!([
                            "PID",
                            [
                                f("3.1.1", "777"),
                                f("3.1.5", "MR"),
                                f("5.1.1", "Okafor"),
                                f("5.1.2", "Ben"),
                                f("7.1.1", "19880502")
                            ]
                        ]),
                        sch("EHR-992", "202612091500-0600", "20"),
                    ],
                    resources("Main St"),
                ),
            ),
            msg(
                "ADT^A08",
                "MSG-3002",
                json!([[
                    "PID",
                    [
                        f("3.1.1", "12345"),
                        f("3.1.5", "MR"),
                        f("5.1.1", "Quintanilla"),
                        f("5.1.2", "Anita"),
                        f("7.1.1", "19710314")
                    ]
                ]]),
            ),
            msg(
                "SIU^S15",
                "MSG-3003",
                json!([pid_ana(), ["SCH", [f("2.1.1", "EHR-991")]]]),
            ),
        ],
    )
    .await
    .unwrap();
    for ack in &acks {
        assert_eq!(ack["code"], "AA", "{ack:?}");
    }
    assert_eq!(acks[1]["text"], "patient updated");
    assert_eq!(acks[2]["text"], "appointment cancelled");
    let ben = patient_by_mrn(&app, "777")
        .await
        .expect("registered from the SIU's PID");
    let bens = appointments(&app, ben["id"].as_str().unwrap()).await;
    assert_eq!(bens.len(), 1);
    assert_eq!(bens[0]["starts_at"], "2026-12-09T15:00:00-06:00");
    let ana = patient_by_mrn(&app, "12345").await.unwrap();
    assert_eq!(ana["given_name"], "Anita");
    // A08 named no phone: Ana keeps hers.
    assert_eq!(ana["contacts"][0]["value"], "+13125550142");
    let a = appointments(&app, &ana_id).await.remove(0);
    assert_eq!(a["status"], "cancelled");

    // Every change is on the practice's audit trail, by the system.
    let audit = app.practice_audit().await;
    let by_system: Vec<&str> = audit
        .iter()
        .filter(|r| r.actor_kind == "system")
        .map(|r| r.action.as_str())
        .collect();
    for action in [
        "patient.create",
        "patient.update",
        "appointment.create",
        "appointment.update",
        "appointment.cancel",
    ] {
        assert!(by_system.contains(&action), "{action} in {by_system:?}");
    }
    assert_eq!(
        by_system
            .iter()
            .filter(|a| **a == "appointment.create")
            .count(),
        2,
        "the resend booked nothing"
    );
    app.assert_audit_verifies().await;

    // Shutdown: `serve` returns, and the MLLP port is closed.
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_speaks_tls_and_refuses_addresses_no_source_names() {
    for db in TestDatabase::all().await {
        // TLS: the hl7 package's MLLPClient, its socket wrapped in TLS, verifying the server.
        let pki = salve_testkit::peers::smtp::pki("Lakeside interface CA");
        let run = start(db, |practice, port| {
            let mut c = lakeside(practice, port, "127.0.0.0/8");
            c.tls = Some(salve_server::TlsFiles {
                cert: pki.cert_path().to_owned(),
                key: pki.key_path().to_owned(),
            });
            c
        })
        .await;
        let job = json!({
            "host": "127.0.0.1", "port": run.port, "ca_pem": pki.ca_pem,
            "messages": [msg("ADT^A04", "TLS-1", json!([pid_ana()]))],
        });
        let Some(acks) = tokio::task::spawn_blocking(move || run_python("hl7_mllp.py", &job))
            .await
            .unwrap()
        else {
            return;
        };
        assert_eq!(acks[0]["code"], "AA", "{acks:?}");
        assert!(patient_by_mrn(&run.app, "12345").await.is_some());
        // A client speaking MLLP in clear to the TLS port gets no ACK.
        let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", run.port))
            .await
            .unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let frame =
            b"\x0bMSH|^~\\&|EPIC|LAKESIDE|||2026||ADT^A04|P-1|P|2.5\rPID|1||1^^^^MR\x1c\x0d";
        plain.write_all(frame).await.unwrap();
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        assert!(!buf.windows(3).any(|w| w == b"MSA"), "no ACK in clear");
        run.stop.send(()).unwrap();
        run.server.await.unwrap().unwrap();
    }
    for db in TestDatabase::all().await {
        // The only source connects from 10.0.0.0/8: a loopback client is closed unanswered,
        // and nothing is written.
        let run = start(db, |practice, port| lakeside(practice, port, "10.0.0.0/8")).await;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", run.port))
            .await
            .unwrap();
        let frame = b"\x0bMSH|^~\\&|EPIC|LAKESIDE|||2026||ADT^A04|P-1|P|2.5\rPID|1||1^^^^MR||Doe^Jo||19800101\x1c\x0d";
        let _ = stream.write_all(frame).await;
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        assert!(buf.is_empty(), "closed without an answer");
        assert_eq!(count(&run.app, "patients").await, 0);
        run.stop.send(()).unwrap();
        run.server.await.unwrap().unwrap();
    }
}
