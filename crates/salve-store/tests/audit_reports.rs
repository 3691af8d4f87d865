//! The auditor's queries, on SQLite always and on PostgreSQL when `SALVE_TEST_POSTGRES_URL` is
//! set: a patient's access report (names joined at read time, the patient's own and unrelated
//! rows left out), the filtered search with paging, consent changes, and the export record.

use std::sync::Arc;

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::consent::{
    ConsentAction, ConsentChannel, ConsentEventInput, ConsentMethod, ConsentPurpose, ConsentTextRef,
};
use salve_core::patient::{PatientInput, PatientRecord};
use salve_core::permissions::{Principal, Role};
use salve_core::{Clock, ManualClock, PatientId, PracticeId, Sensitive, UserId};
use salve_crypto::MasterKey;
use salve_store::audit_reports::{AccessKind, AuditFilter};
use salve_store::{Recorder, Store, StoreOptions};
use salve_testkit::TestDatabase;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2027-03-01 09:00 UTC);

fn s(v: &str) -> Sensitive<String> {
    Sensitive::new(v.to_owned())
}

struct World {
    store: Store,
    clock: Arc<ManualClock>,
    practice: PracticeId,
    ana: PatientId,
    leo: PatientId,
    lee: UserId,
    kim: UserId,
}

impl World {
    fn staff(&self, user: UserId, role: Role) -> Principal {
        Principal::Staff {
            practice: self.practice,
            user,
            role,
        }
    }

    async fn event(&self, actor: Actor, action: Action, targets: Vec<String>) {
        self.store
            .record_audit(AuditEvent::in_practice(
                self.practice,
                actor,
                &RequestContext {
                    ip: Some("203.0.113.9".into()),
                    ..RequestContext::default()
                },
                action,
                targets,
                Outcome::Success,
            ))
            .await
            .unwrap();
    }
}

async fn world(db: &TestDatabase) -> World {
    let options = StoreOptions::new(db.url.clone());
    Store::migrate(&options).await.unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let store = Store::open(&options, MasterKey::generate(), clock.clone())
        .await
        .unwrap();
    let practice = store
        .create_practice(Actor::Cli, "Lakeside", "US", "America/Chicago")
        .await
        .unwrap()
        .id;
    let ctx = RequestContext::default();
    let ictx = store.input_context(practice).await.unwrap();
    let mut patients = Vec::new();
    for (given, mrn) in [("Ana", "MRN-1"), ("Leo", "MRN-2")] {
        let record = PatientRecord::from_input(
            &PatientInput {
                given_name: s(given),
                family_name: s("Ruiz"),
                birth_date: s("1984-07-02"),
                mrn: Some(s(mrn)),
                preferred_language: None,
                time_zone: None,
                contacts: vec![],
            },
            &ictx,
        )
        .unwrap();
        let (p, _) = store
            .create_patient(practice, &Principal::Operator, &ctx, &record, None)
            .await
            .unwrap();
        patients.push(p.id);
    }
    let mut users = Vec::new();
    for (email, name, role) in [
        ("lee@example.test", "Dr. Avery Lee", Role::Clinician),
        ("kim@example.test", "Kim Park", Role::Staff),
    ] {
        users.push(
            store
                .create_user(
                    &Actor::Cli,
                    &ctx,
                    practice,
                    &s(email),
                    &s(name),
                    None,
                    role,
                    false,
                )
                .await
                .unwrap(),
        );
    }
    World {
        store,
        clock,
        practice,
        ana: patients[0],
        leo: patients[1],
        lee: users[0],
        kim: users[1],
    }
}

#[tokio::test]
async fn access_report_names_who_touched_the_patient() {
    for db in TestDatabase::all().await {
        let w = world(&db).await;
        let ctx = RequestContext::default();
        w.store
            .read_patient(w.practice, &w.staff(w.lee, Role::Clinician), &ctx, w.ana)
            .await
            .unwrap();
        w.clock.advance(time::Duration::seconds(60));
        w.event(
            Actor::User(w.lee),
            Action::ConversationRead,
            vec![w.ana.to_string(), uuid::Uuid::now_v7().to_string()],
        )
        .await;
        w.event(
            Actor::User(w.kim),
            Action::MessageSend,
            vec![w.ana.to_string(), uuid::Uuid::now_v7().to_string()],
        )
        .await;
        // The patient's own actions, delivery receipts and other patients are not accesses.
        w.event(
            Actor::Patient(w.ana),
            Action::ConversationRead,
            vec![w.ana.to_string()],
        )
        .await;
        w.event(
            Actor::System,
            Action::MessageStatus,
            vec![w.ana.to_string()],
        )
        .await;
        w.event(
            Actor::User(w.kim),
            Action::PatientRead,
            vec![w.leo.to_string()],
        )
        .await;

        let report = w.store.access_report(w.practice, w.ana).await.unwrap();
        let seen: Vec<(&str, &str, AccessKind, &str)> = report
            .iter()
            .map(|e| {
                (
                    e.actor.name.as_str(),
                    e.actor.role.as_str(),
                    e.kind,
                    e.outcome.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("Kim Park", "staff", AccessKind::SentMessage, "success"),
                (
                    "Dr. Avery Lee",
                    "clinician",
                    AccessKind::ViewedConversation,
                    "success"
                ),
                (
                    "Dr. Avery Lee",
                    "clinician",
                    AccessKind::ViewedRecord,
                    "success"
                ),
                // The record's creation by the operator at the command line.
                (
                    "Server operator",
                    "server operator",
                    AccessKind::CreatedRecord,
                    "success"
                ),
            ],
            "{:?}",
            db.kind
        );
        assert_eq!(
            AccessKind::ViewedConversation.label(),
            "Viewed conversation"
        );
        assert!(report[0].at > report[2].at);
        let leo = w.store.access_report(w.practice, w.leo).await.unwrap();
        assert_eq!(leo.len(), 2, "{leo:?}");
    }
}

#[tokio::test]
async fn search_filters_by_patient_user_action_and_time_and_pages() {
    for db in TestDatabase::all().await {
        let w = world(&db).await;
        let start = salve_core::clock::to_micros(w.clock.now());
        for i in 0..5 {
            w.clock.advance(time::Duration::seconds(3600));
            w.event(
                Actor::User(w.lee),
                Action::ConversationRead,
                vec![w.ana.to_string(), format!("c{i}")],
            )
            .await;
            w.event(
                Actor::User(w.kim),
                Action::PatientRead,
                vec![w.leo.to_string()],
            )
            .await;
        }
        let q = |filter: AuditFilter| {
            let store = &w.store;
            let practice = w.practice;
            async move {
                store
                    .audit_search(practice, &filter, None, 100)
                    .await
                    .unwrap()
            }
        };
        let by_action = q(AuditFilter {
            action: Some("conversation.read".into()),
            ..AuditFilter::default()
        })
        .await;
        assert_eq!(by_action.entries.len(), 5);
        assert!(
            by_action
                .entries
                .iter()
                .all(|e| e.action == "conversation.read"
                    && e.actor.name == "Dr. Avery Lee"
                    && e.actor.role == "clinician"
                    && e.target_kind == "Conversation"
                    && e.patient == Some(w.ana)
                    && e.ip.as_deref() == Some("203.0.113.9"))
        );
        assert!(by_action.next_before.is_none());

        // Hours 2 and 3 after the start: two of each.
        let hour = 3_600_000_000;
        let window = q(AuditFilter {
            from: Some(start + 2 * hour),
            to: Some(start + 4 * hour),
            ..AuditFilter::default()
        })
        .await;
        assert_eq!(window.entries.len(), 4, "{:?}", db.kind);
        let both = q(AuditFilter {
            from: Some(start + 2 * hour),
            to: Some(start + 4 * hour),
            user: Some(w.kim),
            patient: Some(w.leo),
            action: Some("patient.read".into()),
        })
        .await;
        assert_eq!(both.entries.len(), 2);
        assert!(both.entries.iter().all(|e| e.actor.name == "Kim Park"));
        let none = q(AuditFilter {
            user: Some(w.kim),
            patient: Some(w.ana),
            ..AuditFilter::default()
        })
        .await;
        assert!(none.entries.is_empty());

        // Paging walks the whole result once, newest first.
        let filter = AuditFilter {
            patient: Some(w.ana),
            ..AuditFilter::default()
        };
        let mut seqs = Vec::new();
        let mut before = None;
        loop {
            let page = w
                .store
                .audit_search(w.practice, &filter, before, 2)
                .await
                .unwrap();
            seqs.extend(page.entries.iter().map(|e| e.seq));
            match page.next_before {
                Some(b) => before = Some(b),
                None => break,
            }
        }
        // Five reads plus the record's creation.
        assert_eq!(seqs.len(), 6);
        assert!(seqs.windows(2).all(|p| p[0] > p[1]));

        let actions = w.store.audit_actions(w.practice).await.unwrap();
        assert!(actions.contains(&"conversation.read".to_owned()));
        let members = w.store.staff_members(w.practice).await.unwrap();
        assert_eq!(
            members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            vec!["Dr. Avery Lee", "Kim Park"]
        );
    }
}

#[tokio::test]
async fn consent_changes_and_exports_are_reported() {
    for db in TestDatabase::all().await {
        let w = world(&db).await;
        let lee = w.staff(w.lee, Role::Clinician);
        let ctx = RequestContext::default();
        let text = w
            .store
            .publish_consent_text(
                w.practice,
                &Principal::Operator,
                &ctx,
                "v1",
                "We may email you.",
            )
            .await
            .unwrap();
        let input = |action| ConsentEventInput {
            channel: ConsentChannel::EmailNotify,
            purpose: ConsentPurpose::CareMessages,
            action,
            method: ConsentMethod::Verbal,
            consent_text: Some(ConsentTextRef {
                version: text.version.clone(),
                sha256_hex: text.sha256_hex.clone(),
            }),
            sms_risk_acknowledged: false,
        };
        w.store
            .record_consent(
                w.practice,
                Recorder::Principal(&lee),
                &ctx,
                w.ana,
                &[input(ConsentAction::Grant)],
                None,
            )
            .await
            .unwrap();
        w.clock.advance(time::Duration::seconds(60));
        w.store
            .record_consent(
                w.practice,
                Recorder::Patient(w.ana),
                &ctx,
                w.ana,
                &[ConsentEventInput {
                    method: ConsentMethod::PatientPortal,
                    ..input(ConsentAction::Revoke)
                }],
                None,
            )
            .await
            .unwrap();
        let changes = w
            .store
            .consent_changes(w.practice, None, None)
            .await
            .unwrap();
        let seen: Vec<(&str, &str, &str, &str)> = changes
            .iter()
            .map(|c| {
                (
                    c.recorded_by.name.as_str(),
                    c.action.as_str(),
                    c.method.as_str(),
                    c.channel.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("The patient", "revoke", "patient_portal", "email_notify"),
                ("Dr. Avery Lee", "grant", "verbal", "email_notify"),
            ]
        );
        assert!(changes.iter().all(|c| c.patient == w.ana));
        let later = salve_core::clock::to_micros(w.clock.now());
        assert_eq!(
            w.store
                .consent_changes(w.practice, Some(later), None)
                .await
                .unwrap()
                .len(),
            1
        );

        let auditor = w.staff(UserId::new(), Role::Auditor);
        w.store
            .record_audit_export(w.practice, &auditor, &ctx, Some(w.ana), 3)
            .await
            .unwrap();
        let report = w.store.access_report(w.practice, w.ana).await.unwrap();
        assert_eq!(report[0].kind, AccessKind::Exported);
        assert_eq!(report[0].action, "audit.export");
        assert!(w.store.verify_audit(None).await.unwrap().ok());
    }
}

#[tokio::test]
async fn only_auditors_find_patients_for_audit_and_it_is_audited() {
    for db in TestDatabase::all().await {
        let w = world(&db).await;
        let ctx = RequestContext::default();
        w.store
            .set_restriction(w.practice, &Principal::Operator, &ctx, w.leo, true, &[])
            .await
            .unwrap();
        let auditor_id = UserId::new();
        let auditor = w.staff(auditor_id, Role::Auditor);
        let found = w
            .store
            .find_patients_for_audit(w.practice, &auditor, &ctx, "ruiz", 10)
            .await
            .unwrap();
        let mut ids: Vec<PatientId> = found.iter().map(|p| p.id).collect();
        ids.sort();
        let mut want = vec![w.ana, w.leo];
        want.sort();
        assert_eq!(ids, want, "restricted patients are found too");
        assert!(matches!(
            w.store
                .find_patients_for_audit(w.practice, &auditor, &ctx, "r", 10)
                .await,
            Err(salve_store::StoreError::Invalid(_))
        ));
        for role in [Role::Clinician, Role::Admin, Role::Staff] {
            assert!(matches!(
                w.store
                    .find_patients_for_audit(w.practice, &w.staff(w.lee, role), &ctx, "ruiz", 10)
                    .await,
                Err(salve_store::StoreError::Forbidden)
            ));
        }
        // The search shows in both patients' access reports as the auditor's.
        let page = w
            .store
            .audit_search(
                w.practice,
                &AuditFilter {
                    action: Some("patient.search".into()),
                    patient: Some(w.leo),
                    ..AuditFilter::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1);
        assert!(
            w.store
                .access_report(w.practice, w.leo)
                .await
                .unwrap()
                .iter()
                .any(|e| e.kind == AccessKind::FoundInSearch)
        );
        assert!(
            w.store
                .patient_in_practice(w.practice, w.ana)
                .await
                .unwrap()
        );
        assert!(
            !w.store
                .patient_in_practice(w.practice, PatientId::new())
                .await
                .unwrap()
        );
        assert_eq!(w.store.last_checkpoint(w.practice).await.unwrap(), None);
        w.store.write_checkpoints(None).await.unwrap();
        assert!(w.store.last_checkpoint(w.practice).await.unwrap().is_some());
    }
}
