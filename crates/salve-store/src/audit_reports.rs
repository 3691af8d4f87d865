//! What the auditor reads out of the audit log: a patient's access history in plain language,
//! a filtered search of a practice's chain, the consent changes, and the names behind the ids.
//!
//! Audit rows hold ids only (never PHI); names are joined here at read time from the sealed
//! users table, so a report shows "Dr. Lee (clinician)" while the chain keeps a UUID.

use std::collections::{BTreeSet, HashMap};

use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::{Decision, Operation, Principal, authorize};
use salve_core::{PatientId, PracticeId, UserId};
use salve_crypto::FieldAad;
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use crate::audit::context_aad_row;
use crate::{Result, Store, StoreError};

/// The most rows one search or export returns.
pub const MAX_EXPORT_ROWS: usize = 50_000;

/// What an access was, in words a patient or a compliance officer understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    ViewedRecord,
    FoundInSearch,
    CreatedRecord,
    ChangedRecord,
    RestrictedRecord,
    ErasedRecord,
    BreakGlass,
    ViewedConversation,
    ChangedConversation,
    SentMessage,
    WroteNote,
    OpenedAttachment,
    ViewedConsent,
    RecordedConsent,
    SentSecureLink,
    ViewedAppointments,
    ChangedAppointments,
    FiledText,
    Exported,
    Other,
}

impl AccessKind {
    /// The kind of a stored action (`patient.read`, …).
    pub fn of(action: &str) -> AccessKind {
        match action {
            "patient.read" => Self::ViewedRecord,
            "patient.search" | "patient.lookup" | "patient.list" => Self::FoundInSearch,
            "patient.create" => Self::CreatedRecord,
            "patient.update" => Self::ChangedRecord,
            "patient.restrict" => Self::RestrictedRecord,
            "patient.shred" => Self::ErasedRecord,
            "patient.break_glass" => Self::BreakGlass,
            "conversation.read" => Self::ViewedConversation,
            "conversation.assign" | "conversation.state" => Self::ChangedConversation,
            "message.send"
            | "notification.sent"
            | "secure_message.reminder"
            | "announcement.recipient" => Self::SentMessage,
            "message.note" => Self::WroteNote,
            "attachment.read" => Self::OpenedAttachment,
            "consent.read" => Self::ViewedConsent,
            "consent.record" | "confidential.record" => Self::RecordedConsent,
            "link.create" | "link.revoke" => Self::SentSecureLink,
            "appointment.read" | "reminder.read" => Self::ViewedAppointments,
            "appointment.create" | "appointment.update" | "appointment.cancel"
            | "appointment.import" | "reminder.decide" | "reminder.withdraw"
            | "reminder.release" => Self::ChangedAppointments,
            "inbound.triage.attribute" => Self::FiledText,
            "audit.export" => Self::Exported,
            _ => Self::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ViewedRecord => "Viewed record",
            Self::FoundInSearch => "Found in a search",
            Self::CreatedRecord => "Created record",
            Self::ChangedRecord => "Changed record",
            Self::RestrictedRecord => "Changed who may see the record",
            Self::ErasedRecord => "Erased record",
            Self::BreakGlass => "Break-glass (emergency access)",
            Self::ViewedConversation => "Viewed conversation",
            Self::ChangedConversation => "Assigned or closed conversation",
            Self::SentMessage => "Sent message",
            Self::WroteNote => "Wrote internal note",
            Self::OpenedAttachment => "Opened attachment",
            Self::ViewedConsent => "Viewed consent",
            Self::RecordedConsent => "Recorded consent",
            Self::SentSecureLink => "Sent or revoked a secure link",
            Self::ViewedAppointments => "Viewed appointments",
            Self::ChangedAppointments => "Changed appointments",
            Self::FiledText => "Filed a text in the conversation",
            Self::Exported => "Exported",
            Self::Other => "Other",
        }
    }
}

/// Stored actions that are machinery, not someone looking at a patient's data.
const NOT_ACCESSES: &[&str] = &[
    "message.status",
    "message.receive",
    "message.duplicate",
    "webhook.duplicate",
    "webhook.rejected",
    "media.delete",
    // Salve copying a record into the practice's own EHR (the system, not a person).
    "ehr.write",
];

/// A stored action in plain language (`conversation.read` → "Viewed conversation"); actions
/// with no plain wording keep their stored name.
pub fn describe_action(action: &str) -> String {
    let staff_side = match action {
        "auth.sign_in" => Some("Signed in"),
        "auth.locked" => Some("Sign-in locked"),
        "session.end" => Some("Session ended"),
        "session.revoke_all" => Some("Signed out everywhere"),
        "access.denied" => Some("Request refused"),
        "user.create" => Some("Created staff account"),
        "user.invite" => Some("Invited staff member"),
        "user.disable" => Some("Disabled staff account"),
        "user.membership" => Some("Changed staff role"),
        "token.create" => Some("Created API token"),
        "token.revoke" => Some("Revoked API token"),
        "smart.client_register" => Some("Registered a SMART client"),
        "smart.client_disable" => Some("Disabled a SMART client"),
        "smart.token_issue" => Some("Issued a SMART access token"),
        "smart.token_refuse" => Some("Refused a SMART token request"),
        "ehr.connection.change" => Some("Changed the EHR connection"),
        "ehr.write" => Some("Wrote to the EHR"),
        "practice.create" => Some("Created practice"),
        "conversation.list" => Some("Opened the inbox"),
        "break_glass.review" => Some("Reviewed a break-glass access"),
        _ => None,
    };
    if let Some(label) = staff_side {
        return label.to_owned();
    }
    match AccessKind::of(action) {
        AccessKind::Other => action.to_owned(),
        kind => match action {
            // Several stored actions share a kind; keep the search list unambiguous.
            "patient.search" => "Searched patients by name".into(),
            "patient.lookup" => "Looked up patients by phone, email or MRN".into(),
            "patient.list" => "Listed patients".into(),
            "notification.sent" => "Sent notification".into(),
            "secure_message.reminder" => "Sent secure-message reminder".into(),
            "announcement.recipient" => "Sent announcement".into(),
            "link.revoke" => "Revoked a secure link".into(),
            "link.create" => "Sent a secure link".into(),
            "confidential.record" => "Recorded confidential-communication request".into(),
            "reminder.read" => "Viewed reminders".into(),
            _ => kind.label().to_owned(),
        },
    }
}

/// The kind of record an action touches, from its stored name.
pub fn target_kind(action: &str) -> &'static str {
    match action.split('.').next().unwrap_or_default() {
        "patient" => "Patient",
        "conversation" | "message" | "attachment" | "notification" | "secure_message" => {
            "Conversation"
        }
        "consent" | "confidential" => "Consent",
        "link" => "Secure link",
        "appointment" | "reminder" => "Appointment",
        "announcement" => "Announcement",
        "user" | "auth" | "session" | "team" => "Staff account",
        "token" => "API token",
        "practice" | "catalog" | "template" | "guidelines" => "Practice settings",
        "vendor" | "webhook" | "media" | "outbox" => "Messaging provider",
        "inbound" => "Inbound text",
        "audit" => "Audit log",
        "keys" | "backup" => "Server",
        _ => "Other",
    }
}

/// A spreadsheet cell that would start a formula (`=`, `+`, `-`, `@`, tab, carriage return) gets
/// a leading `'`, so opening an exported CSV never runs what someone typed.
pub fn neutralize_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Who did something, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorName {
    /// A staff member's display name, an API token's label, "Salve (automatic)", …
    pub name: String,
    /// `clinician`, `staff`, …; "API token", "system", "server operator".
    pub role: String,
}

/// One access to a patient's data, for the patient's access report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// When (microseconds since the epoch).
    pub at: i64,
    pub actor: ActorName,
    pub kind: AccessKind,
    /// The stored action, e.g. `conversation.read`.
    pub action: String,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
}

/// What to look for in a practice's audit chain. Times are microseconds; `to` is exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub patient: Option<PatientId>,
    pub user: Option<UserId>,
    pub action: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// One row of an audit search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor: ActorName,
    pub action: String,
    pub action_label: String,
    pub target_kind: &'static str,
    /// The patient the row is about, when its first target is one of this practice's patients.
    pub patient: Option<PatientId>,
    pub outcome: String,
    /// The request's IP address, opened from the sealed context.
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<i64>,
}

/// One consent event of the practice, for the consent report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub at: i64,
    pub patient: PatientId,
    /// Who recorded it; "The patient" when they did (portal, SMS keyword).
    pub recorded_by: ActorName,
    pub channel: String,
    pub purpose: String,
    /// `grant` or `revoke`.
    pub action: String,
    /// How it was given: `intake_form`, `verbal`, `patient_portal`, `sms_keyword`, …
    pub method: String,
    pub consent_text_version: Option<String>,
}

/// A member of the practice, for the auditor's user filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub id: UserId,
    pub name: String,
    pub role: String,
}

#[derive(Deserialize)]
struct ContextIp {
    ip: Option<String>,
}

type EventRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<Vec<u8>>,
);

fn malformed() -> StoreError {
    StoreError::KeyRing("malformed audit row".into())
}

impl Store {
    /// Every access by staff, API tokens, the system or the operator to one patient's data,
    /// newest first, with the actor's name and current role (joined at read time).
    pub async fn access_report(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Vec<AccessEntry>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT occurred_at, actor_kind, actor_id, action, outcome FROM audit_events \
             WHERE scope = $1 AND targets LIKE $2 AND actor_kind IN ('user', 'token', 'system', 'cli') \
             ORDER BY seq DESC",
        )
        .bind(ChainScope::Practice(practice).key())
        .bind(target_pattern(patient))
        .fetch_all(&mut *conn)
        .await?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(_, _, _, action, _)| !NOT_ACCESSES.contains(&action.as_str()))
            .collect();
        let names = self
            .actor_names(
                &mut conn,
                practice,
                rows.iter().map(|(_, k, i, _, _)| (k.as_str(), i.as_str())),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, id, action, outcome)| AccessEntry {
                at,
                actor: names
                    .get(&(kind.clone(), id.clone()))
                    .cloned()
                    .unwrap_or_else(|| fallback_name(&kind)),
                kind: AccessKind::of(&action),
                action,
                outcome,
            })
            .collect())
    }

    /// A page of the practice's audit chain matching `filter`, newest first. `before`: the
    /// `next_before` of the previous page.
    pub async fn audit_search(
        &self,
        practice: PracticeId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<AuditPage> {
        let limit = limit.clamp(1, MAX_EXPORT_ROWS);
        let scope = ChainScope::Practice(practice).key();
        let mut sql = String::from(
            "SELECT seq, occurred_at, actor_kind, actor_id, action, targets, outcome, context \
             FROM audit_events WHERE scope = $1",
        );
        let mut n = 1;
        let mut next = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if filter.patient.is_some() {
            next(&mut sql, " AND targets LIKE ?");
        }
        if filter.user.is_some() {
            next(&mut sql, " AND actor_kind = 'user' AND actor_id = ?");
        }
        if filter.action.is_some() {
            next(&mut sql, " AND action = ?");
        }
        if filter.from.is_some() {
            next(&mut sql, " AND occurred_at >= ?");
        }
        if filter.to.is_some() {
            next(&mut sql, " AND occurred_at < ?");
        }
        if before.is_some() {
            next(&mut sql, " AND seq < ?");
        }
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
        // Only fixed clauses and numbered placeholders were added: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&scope);
        if let Some(p) = filter.patient {
            query = query.bind(target_pattern(p));
        }
        if let Some(u) = filter.user {
            query = query.bind(u.to_string());
        }
        if let Some(a) = &filter.action {
            query = query.bind(a.clone());
        }
        if let Some(f) = filter.from {
            query = query.bind(f);
        }
        if let Some(t) = filter.to {
            query = query.bind(t);
        }
        if let Some(b) = before {
            query = query.bind(b);
        }
        let mut conn = self.pool.acquire().await?;
        let mut rows: Vec<EventRow> = query
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                    r.try_get(7)?,
                ))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let names = self
            .actor_names(
                &mut conn,
                practice,
                rows.iter().map(|r| (r.2.as_str(), r.3.as_str())),
            )
            .await?;
        let keys = self
            .ring
            .chain_keys(&mut conn, &ChainScope::Practice(practice))
            .await?;
        let patients = self.patients_among(&mut conn, practice, &rows).await?;
        let entries: Vec<AuditEntry> = rows
            .into_iter()
            .map(|(seq, at, kind, id, action, targets, outcome, context)| {
                let targets: Vec<String> =
                    serde_json::from_str(&targets).map_err(|_| malformed())?;
                let patient = targets
                    .first()
                    .filter(|t| patients.contains(t.as_str()))
                    .and_then(|t| t.parse().ok());
                let ip = context.and_then(|sealed| {
                    let opened = keys
                        .sealing
                        .open(
                            FieldAad::new("audit_events", "context", &context_aad_row(&scope, seq)),
                            &sealed,
                        )
                        .ok()?;
                    serde_json::from_slice::<ContextIp>(&opened).ok()?.ip
                });
                Ok(AuditEntry {
                    seq,
                    at,
                    actor: names
                        .get(&(kind.clone(), id))
                        .cloned()
                        .unwrap_or_else(|| fallback_name(&kind)),
                    actor_kind: kind,
                    action_label: describe_action(&action),
                    target_kind: target_kind(&action),
                    action,
                    patient,
                    outcome,
                    ip,
                })
            })
            .collect::<Result<_>>()?;
        let next_before = if more {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_before,
        })
    }

    /// The stored actions that occur in the practice's chain, for the search form.
    pub async fn audit_actions(&self, practice: PracticeId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT action FROM audit_events WHERE scope = $1 ORDER BY action",
        )
        .bind(ChainScope::Practice(practice).key())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The practice's members with their names and roles, by name.
    pub async fn staff_members(&self, practice: PracticeId) -> Result<Vec<StaffMember>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<(String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT u.id, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.practice_id = $1",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let mut members = rows
            .into_iter()
            .map(|(id, name, role)| {
                Ok(StaffMember {
                    name: keys
                        .sealing
                        .open_string(FieldAad::new("users", "display_name", &id), &name)?,
                    id: id.parse().map_err(|_| malformed())?,
                    role,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        members.sort_by_key(|m| m.name.to_lowercase());
        Ok(members)
    }

    /// Every consent grant and revocation of the practice, newest first, between `from` and
    /// `to` (microseconds, `to` exclusive).
    pub async fn consent_changes(
        &self,
        practice: PracticeId,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<ConsentChange>> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
        );
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT recorded_at, patient_id, channel, purpose, action, method, consent_text_version, \
             recorded_by_kind, recorded_by_id FROM consent_events \
             WHERE practice_id = $1 AND recorded_at >= $2 AND recorded_at < $3 \
             ORDER BY recorded_at DESC, id DESC LIMIT 5000",
        )
        .bind(practice.to_string())
        .bind(from.unwrap_or(i64::MIN))
        .bind(to.unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let names = self
            .actor_names(
                &mut conn,
                practice,
                rows.iter().map(|r| (r.7.as_str(), r.8.as_str())),
            )
            .await?;
        rows.into_iter()
            .map(
                |(at, patient, channel, purpose, action, method, version, kind, id)| {
                    Ok(ConsentChange {
                        at,
                        patient: patient.parse().map_err(|_| malformed())?,
                        recorded_by: names
                            .get(&(kind.clone(), id))
                            .cloned()
                            .unwrap_or_else(|| fallback_name(&kind)),
                        channel,
                        purpose,
                        action,
                        method,
                        consent_text_version: version,
                    })
                },
            )
            .collect()
    }

    /// Records that an auditor exported audit rows (`patient`: the export was about one).
    pub async fn record_audit_export(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: Option<PatientId>,
        rows: usize,
    ) -> Result<()> {
        let mut targets: Vec<String> = patient.iter().map(ToString::to_string).collect();
        targets.push(format!("rows:{rows}"));
        self.record_audit(AuditEvent::in_practice(
            practice,
            principal.actor(),
            ctx,
            Action::AuditExport,
            targets,
            Outcome::Success,
        ))
        .await
    }

    /// Patients whose name contains every word of `query`, for an auditor choosing whose access
    /// to review. Unlike the clinical search this includes restricted patients (they are the
    /// ones an auditor most needs to find) and requires `AuditRead`; it is audited the same way
    /// (`patient.search`, the found patients as targets).
    pub async fn find_patients_for_audit(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        query: &str,
        limit: usize,
    ) -> Result<Vec<crate::Patient>> {
        if principal.practice() != Some(practice)
            || authorize(principal, Operation::AuditRead, None) != Decision::Allow
        {
            return Err(StoreError::Forbidden);
        }
        let query = query.trim();
        if !(2..=200).contains(&query.chars().count()) {
            return Err(StoreError::Invalid(
                "query: 2 to 200 characters of a name".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT patients_generation FROM practices WHERE id = $1")
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        let generation = generation.ok_or(StoreError::NotFound)?;
        let index = match self.names.get(practice, generation) {
            Some(index) => index,
            None => {
                let index = std::sync::Arc::new(
                    self.build_name_index(&mut tx.tx, practice, generation)
                        .await?,
                );
                self.names.put(practice, index.clone());
                index
            }
        };
        let mut found = Vec::new();
        for id in index.search(query, limit.clamp(1, 50)) {
            found.push(self.load_patient(&mut tx.tx, practice, id).await?);
        }
        tx.audit(AuditEvent::in_practice(
            practice,
            principal.actor(),
            ctx,
            Action::PatientSearch,
            found.iter().map(|p| p.id.to_string()).collect(),
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(found)
    }

    /// Whether the patient is (or was: erased patients keep their row) one of the practice's.
    pub async fn patient_in_practice(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<bool> {
        let hit: Option<String> =
            sqlx::query_scalar("SELECT id FROM patients WHERE id = $1 AND practice_id = $2")
                .bind(patient.to_string())
                .bind(practice.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(hit.is_some())
    }

    /// The newest signed checkpoint of the practice's chain: (rows covered, signed at).
    pub async fn last_checkpoint(&self, practice: PracticeId) -> Result<Option<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT seq, signed_at FROM audit_checkpoints WHERE scope = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(ChainScope::Practice(practice).key())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Which of the rows' first targets are patients of this practice.
    async fn patients_among(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        rows: &[EventRow],
    ) -> Result<BTreeSet<String>> {
        let mut candidates = BTreeSet::new();
        for r in rows {
            if let Ok(targets) = serde_json::from_str::<Vec<String>>(&r.5)
                && let Some(first) = targets.into_iter().next()
                && first.parse::<PatientId>().is_ok()
            {
                candidates.insert(first);
            }
        }
        let mut found = BTreeSet::new();
        for id in candidates {
            let hit: Option<String> =
                sqlx::query_scalar("SELECT id FROM patients WHERE id = $1 AND practice_id = $2")
                    .bind(&id)
                    .bind(practice.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
            if hit.is_some() {
                found.insert(id);
            }
        }
        Ok(found)
    }

    /// Names and roles behind (actor kind, actor id) pairs: staff from the sealed users table
    /// with their role in this practice, API tokens by label.
    async fn actor_names<'a>(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        actors: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<HashMap<(String, String), ActorName>> {
        let wanted: BTreeSet<(String, String)> = actors
            .filter(|(kind, _)| matches!(*kind, "user" | "token"))
            .map(|(k, i)| (k.to_owned(), i.to_owned()))
            .collect();
        let mut out = HashMap::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        let keys = self.ring.system_data_keys(conn).await?;
        for (kind, id) in wanted {
            let name = if kind == "user" {
                let row: Option<(Vec<u8>, Option<String>)> = sqlx::query_as(
                    "SELECT u.display_name, m.role FROM users u LEFT JOIN memberships m \
                     ON m.user_id = u.id AND m.practice_id = $2 WHERE u.id = $1",
                )
                .bind(&id)
                .bind(practice.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                match row {
                    Some((sealed, role)) => ActorName {
                        name: keys
                            .sealing
                            .open_string(FieldAad::new("users", "display_name", &id), &sealed)?,
                        role: role.unwrap_or_else(|| "no longer a member".into()),
                    },
                    None => fallback_name(&kind),
                }
            } else {
                let label: Option<String> = sqlx::query_scalar(
                    "SELECT label FROM api_tokens WHERE id = $1 AND practice_id = $2",
                )
                .bind(&id)
                .bind(practice.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                ActorName {
                    name: label.map_or_else(|| "API token".into(), |l| format!("API token “{l}”")),
                    role: "API token".into(),
                }
            };
            out.insert((kind, id), name);
        }
        Ok(out)
    }
}

/// A `LIKE` pattern matching the JSON targets array that names this patient.
fn target_pattern(patient: PatientId) -> String {
    format!("%\"{patient}\"%")
}

fn fallback_name(kind: &str) -> ActorName {
    let (name, role) = match kind {
        "system" => ("Salve (automatic)", "system"),
        "cli" => ("Server operator", "server operator"),
        "patient" => ("The patient", "patient"),
        "anonymous" => ("Someone not signed in", "unknown"),
        "user" => ("Unknown staff member", "unknown"),
        _ => ("API token", "API token"),
    };
    ActorName {
        name: name.into(),
        role: role.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralized() {
        for (raw, want) in [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(1)", "'@SUM(1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
        ] {
            assert_eq!(neutralize_cell(raw), want, "{raw:?}");
        }
        for safe in ["", "Dr. Lee", "1+1", "a=b", " =x", "conversation.read"] {
            assert_eq!(neutralize_cell(safe), safe, "{safe:?}");
        }
    }

    #[test]
    fn actions_read_as_plain_language() {
        assert_eq!(
            AccessKind::of("conversation.read"),
            AccessKind::ViewedConversation
        );
        assert_eq!(describe_action("conversation.read"), "Viewed conversation");
        assert_eq!(
            describe_action("patient.break_glass"),
            AccessKind::BreakGlass.label()
        );
        assert_eq!(describe_action("audit.export"), "Exported");
        assert_eq!(describe_action("keys.rotate.begin"), "keys.rotate.begin");
        assert_eq!(describe_action("auth.sign_in"), "Signed in");
        assert_eq!(target_kind("message.send"), "Conversation");
        assert_eq!(target_kind("auth.sign_in"), "Staff account");
    }

    #[test]
    fn every_action_has_a_target_kind() {
        // The stored names of actions a practice chain holds map to a kind of record.
        for action in [
            Action::PatientRead,
            Action::ConversationRead,
            Action::ConsentRecord,
            Action::AuditExport,
            Action::AppointmentRead,
            Action::SignIn,
        ] {
            assert_ne!(target_kind(action.as_str()), "Other", "{action:?}");
        }
    }
}
