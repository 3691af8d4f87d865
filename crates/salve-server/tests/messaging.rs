//! The messaging API, end to end through the router and the outbox worker, on SQLite and
//! PostgreSQL: where a message goes (direct SMS, secure with a content-free notification, portal
//! only) and why; the legal basis recorded with each send; revocation stopping a queued send
//! (in the revoking transaction, and again when the worker claims the job); idempotent sends;
//! confidential-communication requests; templates and the catalog's SMS-safe flags; previews
//! that write nothing; internal notes; the patient's portal reply and unread counts; the checked
//! sender name.

use axum::http::StatusCode;
use salve_channels::Channel;
use salve_testkit::TestDatabase;
use serde_json::{Value, json};

mod common;
mod messaging_world;

use common::Req;
use messaging_world::{BASE, CLINICAL_TEXT, SAFE_TEXT, World, explanations};

fn notification_prefix(sender: &str) -> String {
    format!("New secure message from {sender}: {BASE}/p/")
}

#[tokio::test]
async fn a_secure_message_is_announced_without_content_and_opens_in_the_portal() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ana = w.patient("Ana", "0142").await;
        let basis = w.grant(&ana, "sms_notify", "care_messages").await;

        let sent = w.sent_message(&ana, json!({"text": CLINICAL_TEXT})).await;
        assert_eq!(sent["delivery"], "secure_with_notification", "{sent}");
        assert_eq!(sent["route"], "secure");
        assert_eq!(sent["status"], "queued");
        assert_eq!(sent["channel"], "portal");
        assert_eq!(sent["kind"], "clinical");
        assert_eq!(sent["legal_basis"], basis.as_str());
        assert_eq!(sent["text"], CLINICAL_TEXT);
        // The API answers after commit; sending is the worker's job.
        assert!(w.outbox().is_empty());

        assert_eq!(w.run_worker().await, 1);
        let out = w.outbox();
        assert_eq!(out.len(), 1, "one notification");
        let n = &out[0];
        assert!(matches!(n.channel, Channel::Sms));
        assert_eq!(n.to, "+13125550142");
        assert!(
            n.body.starts_with(&notification_prefix("Lakeside")),
            "{}",
            n.body
        );
        for word in ["A1C", "7.2", "metformin", "dose", "Ana"] {
            assert!(!n.body.contains(word), "{word} in {}", n.body);
        }
        let now = w.message(&sent).await;
        assert_eq!(now["status"], "sent");
        assert_eq!(
            now["legal_basis"],
            basis.as_str(),
            "the basis stays recorded"
        );

        // Nothing is sent twice.
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);

        // The link opens the portal, where the message is (without staff-facing details).
        let patient = w.portal_session_from_last_notification().await;
        let portal = w.portal_conversations(&patient).await;
        let messages = portal["conversations"][0]["messages"].as_array().unwrap();
        let shown = messages.iter().find(|m| m["id"] == sent["id"]).unwrap();
        assert_eq!(shown["text"], CLINICAL_TEXT);
        assert!(shown["legal_basis"].is_null());
        assert!(shown["reasons"].is_null());
        assert!(shown["author_id"].is_null());
        // Staff see that the patient read it.
        assert_eq!(w.message(&sent).await["status"], "read");
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_safe_text_with_plain_sms_consent_goes_direct_on_its_recorded_basis() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ben = w.patient("Ben", "0150").await;
        let basis = w.grant(&ben, "sms_plain", "care_messages").await;

        let sent = w.sent_message(&ben, json!({"text": SAFE_TEXT})).await;
        assert_eq!(sent["delivery"], "direct_sms", "{sent}");
        assert_eq!(sent["route"], "direct");
        assert_eq!(sent["channel"], "sms");
        assert_eq!(sent["kind"], "administrative");
        assert_eq!(sent["status"], "queued");
        assert_eq!(sent["legal_basis"], basis.as_str());

        assert_eq!(w.run_worker().await, 1);
        let out = w.outbox();
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].channel, Channel::Sms));
        assert_eq!(out[0].to, "+13125550150");
        assert_eq!(out[0].body, SAFE_TEXT);
        let now = w.message(&sent).await;
        assert_eq!(now["status"], "sent");
        assert_eq!(now["legal_basis"], basis.as_str());
        let job_basis: Option<String> =
            sqlx::query_scalar("SELECT legal_basis FROM outbox_jobs WHERE message_id = $1")
                .bind(sent["id"].as_str().unwrap())
                .fetch_one(w.app.store.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(job_basis.as_deref(), Some(basis.as_str()));

        // Staff can make it more secure, never less: marked secure, the same words stay in the
        // portal, and plain-SMS consent is not a consent to notifications.
        let forced = w
            .sent_message(&ben, json!({"text": SAFE_TEXT, "force_secure": true}))
            .await;
        assert_eq!(forced["route"], "secure");
        assert_eq!(forced["delivery"], "portal_only");
        assert!(
            forced["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["rule"] == "staff_choice"),
            "{forced}"
        );
        assert!(forced["legal_basis"].is_null());
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);

        // Plain-SMS consent for another purpose is not this purpose's.
        let other = w
            .sent_message(
                &ben,
                json!({"text": SAFE_TEXT, "purpose": "appointment_reminders"}),
            )
            .await;
        assert_eq!(other["route"], "direct");
        assert_eq!(other["delivery"], "portal_only");
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn without_consent_a_message_waits_in_the_portal_and_staff_are_told_why() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let cal = w.patient("Cal", "0160").await;
        for text in [SAFE_TEXT, CLINICAL_TEXT] {
            let sent = w.sent_message(&cal, json!({"text": text})).await;
            assert_eq!(sent["delivery"], "portal_only", "{sent}");
            assert_eq!(sent["channel"], "portal");
            assert!(sent["legal_basis"].is_null());
            let reason = sent["status_reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("not consented to SMS or email notifications"),
                "{reason}"
            );
        }
        assert_eq!(w.run_worker().await, 0);
        assert!(w.outbox().is_empty());
        assert_eq!(w.rows("outbox_jobs").await, 0);
    }
}

#[tokio::test]
async fn revocation_while_a_send_is_queued_stops_it() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;

        // Revoked through the API: the queued direct SMS is stopped in the same transaction.
        let dee = w.patient("Dee", "0170").await;
        let basis = w.grant(&dee, "sms_plain", "care_messages").await;
        let sent = w.sent_message(&dee, json!({"text": SAFE_TEXT})).await;
        assert_eq!(sent["delivery"], "direct_sms");
        assert_eq!(sent["status"], "queued");
        w.revoke(&dee, "sms_plain", "care_messages").await;
        let now = w.message(&sent).await;
        assert_eq!(now["status"], "failed", "{now}");
        assert_eq!(now["status_reason"], "consent was revoked before sending");
        assert_eq!(now["legal_basis"], basis.as_str());
        assert_eq!(w.run_worker().await, 0);
        assert!(w.outbox().is_empty(), "nothing sent after the revocation");

        // Revoke-all stops a queued notification too.
        let eve = w.patient("Eve", "0171").await;
        w.grant(&eve, "sms_notify", "care_messages").await;
        let secure = w.sent_message(&eve, json!({"text": CLINICAL_TEXT})).await;
        assert_eq!(secure["delivery"], "secure_with_notification");
        w.tick();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{eve}/consent/revoke-all"))
                    .json(&json!({"method": "free_text_request"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // The content is in the portal already: only the announcement is withheld.
        let now = w.message(&secure).await;
        assert_eq!(now["status"], "sent");
        assert_eq!(
            now["status_reason"],
            "the notification was not sent (consent was revoked before sending); the message waits in the portal"
        );
        let r = w
            .clinician(Req::get(format!("/api/v1/patients/{eve}/consent")))
            .await;
        assert!(
            r.json()["effective"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["granted"] == false),
            "{}",
            r.text
        );
        assert_eq!(w.run_worker().await, 0);
        assert!(w.outbox().is_empty());

        // A revocation the revoking transaction could not see the job for (it committed while
        // the send's transaction was in flight, e.g. on another instance): the worker re-checks
        // consent when it claims the job. Simulated by writing the revocation row directly, so
        // that the API's own cancellation does not run.
        let fay = w.patient("Fay", "0172").await;
        w.grant(&fay, "sms_plain", "care_messages").await;
        let raced = w.sent_message(&fay, json!({"text": SAFE_TEXT})).await;
        assert_eq!(raced["status"], "queued");
        w.tick();
        sqlx::query(
            "INSERT INTO consent_events (id, practice_id, patient_id, channel, purpose, action, \
             method, consent_text_version, consent_text_sha256, sms_risk_acknowledged, \
             recorded_by_kind, recorded_by_id, evidence, source_message_id, recorded_at) \
             VALUES ($1, $2, $3, 'sms_plain', 'care_messages', 'revoke', 'verbal', NULL, NULL, 0, \
             'user', $4, NULL, NULL, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(w.app.practice.to_string())
        .bind(&fay)
        .bind(&w.clinician_id)
        .bind(salve_core::clock::to_micros(w.app.now()))
        .execute(w.app.store.pool_for_tests())
        .await
        .unwrap();
        assert_eq!(w.message(&raced).await["status"], "queued");
        assert_eq!(w.run_worker().await, 0, "cancelled at claim, not sent");
        assert!(w.outbox().is_empty());
        let now = w.message(&raced).await;
        assert_eq!(now["status"], "failed");
        assert_eq!(now["status_reason"], "consent was revoked before sending");

        // A revocation for another purpose stops nothing.
        let gus = w.patient("Gus", "0173").await;
        let care = w.grant(&gus, "sms_plain", "care_messages").await;
        w.grant(&gus, "sms_plain", "appointment_reminders").await;
        let kept = w.sent_message(&gus, json!({"text": SAFE_TEXT})).await;
        w.revoke(&gus, "sms_plain", "appointment_reminders").await;
        assert_eq!(w.message(&kept).await["status"], "queued");
        assert_eq!(w.run_worker().await, 1);
        let out = w.outbox();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, "+13125550173");
        let now = w.message(&kept).await;
        assert_eq!(now["status"], "sent");
        assert_eq!(now["legal_basis"], care.as_str());
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_harmless() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let hal = w.patient("Hal", "0180").await;
        let ida = w.patient("Ida", "0181").await;
        w.grant(&hal, "sms_plain", "care_messages").await;
        w.grant(&ida, "sms_plain", "care_messages").await;
        let path = format!("/api/v1/patients/{hal}/messages");
        let body = json!({"text": SAFE_TEXT});
        let send = |path: String, body: Value| {
            let w = &w;
            async move {
                w.clinician(
                    Req::post(path)
                        .header("idempotency-key", "send-7f3a")
                        .json(&body),
                )
                .await
            }
        };

        let first = send(path.clone(), body.clone()).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert!(first.headers.get("idempotent-replayed").is_none());
        let again = send(path.clone(), body.clone()).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.json()["id"], first.json()["id"]);

        let conversation = w
            .conversation(first.json()["conversation_id"].as_str().unwrap())
            .await;
        assert_eq!(conversation["messages"].as_array().unwrap().len(), 1);
        assert_eq!(w.rows("outbox_jobs").await, 1);
        assert_eq!(w.run_worker().await, 1);
        // A retry after the send still changes nothing and sends nothing.
        let late = send(path.clone(), body.clone()).await;
        assert_eq!(late.json()["id"], first.json()["id"]);
        assert_eq!(late.json()["status"], "sent");
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);

        // The same key with another body is refused, and writes nothing.
        let other = send(
            path.clone(),
            json!({"text": "We received your forms, thank you."}),
        )
        .await;
        assert_eq!(
            other.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            other.text
        );
        assert_eq!(
            other.problem_type(),
            "urn:salve:problem:idempotency-key-reused"
        );
        // ... and so is the same key and body for another patient: that is another request,
        // not a retry (it must not answer with Hal's message while Ida gets nothing).
        let elsewhere = send(format!("/api/v1/patients/{ida}/messages"), body.clone()).await;
        assert_eq!(
            elsewhere.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            elsewhere.text
        );
        assert_eq!(w.rows("messages").await, 1);
        assert_eq!(w.rows("outbox_jobs").await, 1);
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);
    }
}

#[tokio::test]
async fn confidential_communication_requests_override_routing() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;

        // "Never text me": the notification goes by email instead.
        let jo = w.patient("Jo", "0190").await;
        w.grant(&jo, "sms_notify", "care_messages").await;
        let email_basis = w.grant(&jo, "email_notify", "care_messages").await;
        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{jo}/confidential-requests")).json(&json!({
                    "rule": "never_medium", "value": "sms", "method": "written_form"
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let sent = w.sent_message(&jo, json!({"text": CLINICAL_TEXT})).await;
        assert_eq!(sent["delivery"], "secure_with_notification", "{sent}");
        assert_eq!(sent["legal_basis"], email_basis.as_str());
        assert_eq!(w.run_worker().await, 1);
        let out = w.outbox();
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].channel, Channel::Email));
        assert_eq!(out[0].to, "jo@example.org");
        assert!(out[0].body.starts_with(&notification_prefix("Lakeside")));
        assert!(!out[0].body.contains("metformin"));
        assert!(
            !out[0]
                .subject
                .as_deref()
                .unwrap_or_default()
                .contains("metformin")
        );

        // "Not at this phone", and it is the only one: nothing is texted, not even a safe text
        // with plain-SMS consent; staff are told why.
        let kai = w.patient_with_phone_only("Kai", "+13125550191").await;
        w.grant(&kai, "sms_notify", "care_messages").await;
        w.grant(&kai, "sms_plain", "care_messages").await;
        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{kai}/confidential-requests")).json(&json!({
                    "rule": "never_contact", "value": "+1 (312) 555-0191", "method": "verbal"
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        for text in [CLINICAL_TEXT, SAFE_TEXT] {
            let sent = w.sent_message(&kai, json!({"text": text})).await;
            assert_eq!(sent["delivery"], "portal_only", "{sent}");
            assert!(sent["legal_basis"].is_null());
            let reason = sent["status_reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("excluded by the patient's confidential-communication requests"),
                "{reason}"
            );
        }
        assert_eq!(w.run_worker().await, 0);
        assert_eq!(w.outbox().len(), 1);
        let r = w
            .clinician(Req::get(format!("/api/v1/patients/{kai}/consent")))
            .await;
        let requests = r.json()["confidential_requests"].clone();
        assert_eq!(requests[0]["rule"], "never_contact");
        assert_eq!(requests[0]["value"], "+13125550191");
    }
}

#[tokio::test]
async fn template_values_go_direct_only_when_the_practice_marked_them_sms_safe() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let lu = w.patient("Lu", "0200").await;
        let basis = w.grant(&lu, "sms_plain", "appointment_reminders").await;
        w.grant(&lu, "sms_notify", "appointment_reminders").await;

        // An unknown variable is refused at save, by name.
        let r = w
            .admin(Req::post("/api/v1/templates").json(&json!({
                "name": "Room", "body": "Hi {patient.first_name}, please go to {appointment.room}."
            })))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let expected = r.json()["errors"][0]["expected"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(expected.contains("{appointment.room}"), "{expected}");

        let r = w
            .admin(Req::post("/api/v1/templates").json(&json!({
                "name": "Reminder",
                "body": "Hi {patient.first_name}, this is a reminder of your appointment on \
                         {appointment.date} at {appointment.time} at {appointment.location}."
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let template = r.json()["id"].as_str().unwrap().to_owned();
        assert!(
            r.json()["variables"]
                .as_array()
                .unwrap()
                .contains(&json!("appointment.location"))
        );
        let catalog = async |safe: bool| {
            let r = w
                .admin(Req::put("/api/v1/catalog").json(&json!({
                    "kind": "location", "name": "Main Street office", "sms_safe": safe, "active": true
                })))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        };
        let reminder = json!({
            "template_id": template,
            "purpose": "appointment_reminders",
            "values": {
                "appointment.date": "December 3",
                "appointment.time": "9:30 AM",
                "appointment.location": "Main Street office"
            }
        });
        let rendered = "Hi Lu, this is a reminder of your appointment on December 3 at 9:30 AM \
                        at Main Street office.";

        // Not marked SMS-safe: secure, and the reason names the value.
        catalog(false).await;
        let secure = w.sent_message(&lu, reminder.clone()).await;
        assert_eq!(secure["route"], "secure", "{secure}");
        assert_eq!(secure["delivery"], "secure_with_notification");
        assert_eq!(secure["text"], rendered);
        assert!(
            explanations(&secure["reasons"]).contains("Main Street office")
                || secure["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["matched_text"] == "Main Street office"),
            "{}",
            secure["reasons"]
        );

        // Marked SMS-safe: the same reminder goes as a plain text.
        catalog(true).await;
        let direct = w.sent_message(&lu, reminder.clone()).await;
        assert_eq!(direct["route"], "direct", "{direct}");
        assert_eq!(direct["delivery"], "direct_sms");
        assert_eq!(direct["legal_basis"], basis.as_str());

        // A location the catalog does not know is not SMS-safe.
        let mut unknown = reminder.clone();
        unknown["values"]["appointment.location"] = json!("Cancer Center, 3rd floor");
        let unknown = w.sent_message(&lu, unknown).await;
        assert_eq!(unknown["route"], "secure", "{unknown}");

        assert_eq!(w.run_worker().await, 3);
        let out = w.outbox();
        assert_eq!(out.len(), 3);
        assert!(out.iter().any(|r| r.body == rendered), "the plain reminder");
        assert_eq!(
            out.iter()
                .filter(|r| r.body.starts_with(&notification_prefix("Lakeside")))
                .count(),
            2
        );
        assert!(!out.iter().any(|r| r.body.contains("Cancer")));

        // A value for a variable that does not exist is refused; nothing is written.
        let mut bad = reminder.clone();
        bad["values"]["appointment.room"] = json!("4");
        let before = w.rows("messages").await;
        let r = w.send(&lu, bad).await;
        assert!(r.status.is_client_error(), "{} {}", r.status, r.text);
        assert_eq!(w.rows("messages").await, before);
    }
}

#[tokio::test]
async fn a_preview_explains_the_decision_and_writes_nothing() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let mo = w.patient("Mo", "0210").await;
        w.grant(&mo, "sms_plain", "care_messages").await;
        let before = (
            w.rows("conversations").await,
            w.rows("messages").await,
            w.rows("outbox_jobs").await,
            w.rows("secure_links").await,
        );

        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{mo}/messages/preview"))
                    .json(&json!({"text": "Your metformin refill was sent to the pharmacy."})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let p = r.json();
        assert_eq!(p["route"], "secure");
        assert_eq!(p["kind"], "clinical");
        assert_eq!(p["delivery"], "portal_only");
        let why = explanations(&p["reasons"]);
        assert!(
            why.contains("medication") && why.contains("metformin"),
            "{why}"
        );
        assert!(!p["explanation"].as_array().unwrap().is_empty());

        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{mo}/messages/preview"))
                    .json(&json!({"text": SAFE_TEXT})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json()["route"], "direct");
        assert_eq!(r.json()["delivery"], "direct_sms");

        assert!(w.inbox("").await.is_empty(), "no thread left behind");
        let after = (
            w.rows("conversations").await,
            w.rows("messages").await,
            w.rows("outbox_jobs").await,
            w.rows("secure_links").await,
        );
        assert_eq!(after, before);
        assert_eq!(w.run_worker().await, 0);
        assert!(w.outbox().is_empty());
    }
}

#[tokio::test]
async fn notes_stay_with_staff_and_a_portal_reply_comes_back_unread() {
    const NOTE: &str = "Sounded anxious on the phone; call back after 3 pm.";
    const REPLY: &str = "Thanks, I will call tomorrow morning.";
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let ned = w.patient("Ned", "0220").await;
        w.grant(&ned, "sms_notify", "care_messages").await;
        let sent = w.sent_message(&ned, json!({"text": CLINICAL_TEXT})).await;
        let conv = sent["conversation_id"].as_str().unwrap().to_owned();

        w.tick();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/conversations/{conv}/notes"))
                    .json(&json!({"text": NOTE})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.json()["direction"], "note");
        let note_id = r.json()["id"].clone();
        // Another staff member sees it.
        let seen = w.conversation_as(&w.admin, &conv).await;
        assert!(
            seen["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == note_id && m["text"] == NOTE),
            "{seen}"
        );

        // Only the message's notification goes out, never the note.
        assert_eq!(w.run_worker().await, 1);
        assert_eq!(w.outbox().len(), 1);
        assert!(!w.outbox().iter().any(|r| r.body.contains("anxious")));

        // The patient's portal has the message, not the note.
        let patient = w.portal_session_from_last_notification().await;
        let portal = w.portal_conversations(&patient).await;
        let text = portal.to_string();
        assert!(text.contains("metformin"));
        assert!(!text.contains("anxious"), "{text}");
        assert!(!text.contains(note_id.as_str().unwrap()));

        // Staff close the thread; the patient's reply reopens it, unread for staff.
        w.tick();
        let r = w
            .clinician(
                Req::put(format!("/api/v1/conversations/{conv}/state"))
                    .json(&json!({"state": "closed"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = w
            .clinician(Req::post(format!("/api/v1/conversations/{conv}/read")))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(w.inbox("").await[0]["unread"], 0);

        w.tick();
        let r = w
            .app
            .send(
                Req::post("/api/v1/portal/messages")
                    .header("cookie", patient.clone())
                    .same_origin()
                    .json(&json!({"text": REPLY})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let reply_id = r.json()["id"].clone();

        let detail = w.conversation(&conv).await;
        let reply = detail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == reply_id)
            .cloned()
            .unwrap();
        assert_eq!(reply["direction"], "inbound");
        assert_eq!(reply["author_kind"], "patient");
        assert_eq!(reply["text"], REPLY);
        assert_eq!(reply["status"], "received");
        assert_eq!(detail["conversation"]["state"], "open", "a reply reopens");

        let inbox = w.inbox("?unread=true").await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0]["id"], conv.as_str());
        assert!(inbox[0]["unread"].as_i64().unwrap() > 0);
        w.tick();
        let r = w
            .clinician(Req::post(format!("/api/v1/conversations/{conv}/read")))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_eq!(w.inbox("").await[0]["unread"], 0);
        assert!(w.inbox("?unread=true").await.is_empty());
        // A reply is not sent anywhere.
        assert_eq!(w.run_worker().await, 0);
        assert!(!w.outbox().iter().any(|r| r.body.contains(REPLY)));
        w.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn a_sender_name_that_reveals_a_specialty_is_refused() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let settings = |name: &str| {
            json!({
                "sender_name": name,
                "phone": "+1 312 555 0100",
                "hours_text": "Monday to Friday, 8 am to 5 pm",
                "expected_reply_text": "within one business day",
                "on_call_number": null,
                "front_desk_sees_clinical": false
            })
        };
        for refused in ["Riverside Oncology", "Northside HIV Clinic"] {
            let r = w
                .admin(Req::put("/api/v1/practice/messaging").json(&settings(refused)))
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{refused}: {}",
                r.text
            );
            assert_eq!(r.json()["errors"][0]["field"], "sender_name", "{}", r.text);
        }
        let r = w
            .admin(Req::put("/api/v1/practice/messaging").json(&settings("Riverside Clinic")))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = w.clinician(Req::get("/api/v1/practice/messaging")).await;
        assert_eq!(r.json()["sender_name"], "Riverside Clinic");

        // Notifications go under the accepted name.
        let oz = w.patient("Oz", "0230").await;
        w.grant(&oz, "sms_notify", "care_messages").await;
        w.sent_message(&oz, json!({"text": CLINICAL_TEXT})).await;
        assert_eq!(w.run_worker().await, 1);
        assert!(
            w.outbox()[0]
                .body
                .starts_with(&notification_prefix("Riverside Clinic"))
        );
    }
}

/// A confidential-communication request recorded while a send is queued stops it at once.
#[tokio::test]
async fn a_confidential_request_recorded_while_a_send_is_queued_stops_it() {
    for db in TestDatabase::all().await {
        let w = World::new(db).await;
        let pat = w.patient_with_phone_only("Pat", "+13125550240").await;
        w.grant(&pat, "sms_plain", "care_messages").await;
        let sent = w.sent_message(&pat, json!({"text": SAFE_TEXT})).await;
        assert_eq!(sent["delivery"], "direct_sms");
        w.tick();
        let r = w
            .clinician(
                Req::post(format!("/api/v1/patients/{pat}/confidential-requests")).json(&json!({
                    "rule": "never_medium", "value": "sms", "method": "verbal"
                })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        w.run_worker().await;
        assert!(w.outbox().is_empty(), "texted after \"never text me\"");
        let now = w.message(&sent).await;
        assert_eq!(now["status"], "failed");
        assert_eq!(
            now["status_reason"],
            "a confidential-communication request now excludes this contact point"
        );
    }
}
