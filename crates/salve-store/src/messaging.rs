//! Conversations and messages: one main thread per patient per practice plus topic threads,
//! messages sealed with the patient's key, attachments, assignment, state and per-user reads.
//!
//! Outgoing messages are planned by the caller (the channel policy and consent rules live in
//! salve-core) from facts read inside the same transaction, so the message, its outbox job and
//! its audit row commit together or not at all.

use std::collections::HashMap;

use salve_core::audit::{Action, Actor, AuditEvent, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use salve_core::permissions::{ContentKind, Operation, Principal, Role, TeamGate, may_see_content};
use salve_core::policy::Route;
use salve_core::{
    AttachmentId, ConsentEventId, ConversationId, MessageId, OutboxJobId, PatientId, PracticeId,
    Sensitive, TeamId, UserId,
};
use salve_crypto::FieldAad;
use sqlx::AnyConnection;
use time::OffsetDateTime;

use crate::batch::Batch;
use crate::catalog::{CatalogItem, MessagingSettings};
use crate::error::IDEMPOTENCY_KEY_IN_PROGRESS;
use crate::patients::{Idempotency, Patient, check_practice};
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
    /// An internal note: never sent to the patient.
    Note,
    /// A fixed system message (opt-out confirmation, after-hours reply, …).
    System,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Note => "note",
            Self::System => "system",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Inbound, Self::Outbound, Self::Note, Self::System]
            .into_iter()
            .find(|d| d.as_str() == raw)
    }
}

/// Where a message's content lives or travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageChannel {
    Portal,
    Sms,
    Email,
}

impl MessageChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portal => "portal",
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Portal, Self::Sms, Self::Email]
            .into_iter()
            .find(|c| c.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    /// The provider could not tell whether the send happened; staff decide.
    Unknown,
    Received,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 8] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Unknown,
        Self::Received,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Received => "received",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationState {
    Open,
    Snoozed,
    Closed,
}

impl ConversationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Snoozed => "snoozed",
            Self::Closed => "closed",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Open, Self::Snoozed, Self::Closed]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub patient_id: PatientId,
    /// `None` when the patient's record was shredded.
    pub patient_name: Option<Sensitive<String>>,
    pub is_main: bool,
    pub topic: Option<Sensitive<String>>,
    pub state: ConversationState,
    pub snoozed_until: Option<OffsetDateTime>,
    pub assigned_user: Option<UserId>,
    pub assigned_team: Option<TeamId>,
    pub last_message_at: OffsetDateTime,
    /// Messages from others since this user last read the conversation.
    pub unread: i64,
    /// When the patient started waiting for a staff reply (`None`: nothing unanswered).
    pub waiting_since: Option<OffsetDateTime>,
    /// Waiting longer than the practice's response target, in business time.
    pub overdue: bool,
    /// The current wait was escalated to the practice's chosen people.
    pub escalated: bool,
    /// A patient's text here suggested an emergency and no staff member has replied since.
    pub urgent: bool,
    /// The channel of the newest message that went by one (`portal`, `sms`, `email`); notes
    /// and system lines have none.
    pub last_channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub id: AttachmentId,
    pub media_type: String,
    pub file_name: Sensitive<String>,
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    pub channel: Option<MessageChannel>,
    pub kind: ContentKind,
    pub author: Actor,
    /// `None`: clinical content this reader may not see.
    pub body: Option<Sensitive<String>>,
    pub route: Option<Route>,
    /// The channel policy's decision and reasons, as JSON (may quote the text).
    pub decision: Option<Sensitive<String>>,
    pub delivery: Option<String>,
    pub status: Option<MessageStatus>,
    pub status_reason: Option<Sensitive<String>>,
    pub legal_basis: Option<ConsentEventId>,
    pub created_at: OffsetDateTime,
    pub attachments: Vec<AttachmentMeta>,
}

#[derive(Debug, Clone)]
pub struct ConversationDetail {
    pub summary: ConversationSummary,
    pub messages: Vec<MessageView>,
}

/// Which conversations an inbox list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Assignment {
    #[default]
    Any,
    Mine,
    MyTeams,
    Unassigned,
}

#[derive(Debug, Clone, Default)]
pub struct InboxFilter {
    pub assignment: Assignment,
    pub unread_only: bool,
    /// Only conversations waiting longer than the practice's response target.
    pub overdue_only: bool,
    /// Only conversations flagged urgent.
    pub urgent_only: bool,
    pub state: Option<ConversationState>,
    pub patient: Option<PatientId>,
    /// Conversations whose last message is older than this (paging).
    pub before: Option<OffsetDateTime>,
    pub limit: usize,
}

/// Where a message goes: the patient's main thread, or a given conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationTarget {
    Main(PatientId),
    Existing(ConversationId),
    /// A given conversation that must belong to this patient (the one the request names).
    OfPatient(PatientId, ConversationId),
}

/// A file already checked and cleaned by the caller.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub media_type: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// Everything the caller needs to plan an outgoing message, read inside its transaction.
#[derive(Debug, Clone)]
pub struct SendFacts {
    pub conversation: ConversationId,
    pub patient: Patient,
    pub consent: Vec<salve_core::consent::ConsentEvent>,
    pub confidential: Vec<salve_core::confidential::ConfidentialRequest>,
    pub settings: MessagingSettings,
    pub catalog: Vec<CatalogItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Medium {
    Sms,
    Email,
}

impl Medium {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sms" => Some(Self::Sms),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// A send for the outbox worker.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub medium: Medium,
    pub recipient: Sensitive<String>,
    pub body: Sensitive<String>,
    /// The consent the send relies on, re-checked when the worker claims the job.
    pub purpose: Option<String>,
    pub consent_channel: Option<String>,
    pub legal_basis: Option<ConsentEventId>,
    /// A secure link to mint with the message (its token is already in `body`).
    pub secure_link: Option<(salve_core::patient::Contact, [u8; 32], i64)>,
    /// After this instant (micros) the send is no longer useful and is withdrawn unsent.
    pub expires_at: Option<i64>,
}

/// The caller's plan for one outgoing message.
#[derive(Debug, Clone)]
pub struct OutboundPlan {
    pub direction: Direction,
    /// The text as stored and shown (a template already rendered).
    pub body: Sensitive<String>,
    pub kind: ContentKind,
    pub channel: MessageChannel,
    pub route: Option<Route>,
    pub decision_json: Option<String>,
    pub delivery: String,
    pub status: MessageStatus,
    pub status_reason: Option<String>,
    pub legal_basis: Option<ConsentEventId>,
    pub job: Option<NewJob>,
}

/// A plan the caller refused to make (bad template, nothing to send): shown to the client.
#[derive(Debug, Clone)]
pub struct PlanRefused(pub String);

type ConversationRow = (
    String,
    String,
    i64,
    Option<Vec<u8>>,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
);

const CONVERSATION_COLUMNS: &str = "id, patient_id, is_main, topic, state, snoozed_until, \
    assigned_user, assigned_team, last_message_at";

fn malformed(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what} row"))
}

pub(crate) fn conversation_event(
    practice: PracticeId,
    actor: Actor,
    ctx: &RequestContext,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent::in_practice(practice, actor, ctx, action, targets, outcome)
}

#[derive(Clone)]
pub(crate) struct LoadedConversation {
    pub(crate) id: ConversationId,
    pub(crate) patient: PatientId,
    is_main: bool,
    topic: Option<Vec<u8>>,
    state: ConversationState,
    snoozed_until: Option<i64>,
    assigned_user: Option<UserId>,
    assigned_team: Option<TeamId>,
    last_message_at: i64,
}

fn parse_conversation(row: ConversationRow) -> Result<LoadedConversation> {
    let (id, patient, is_main, topic, state, snoozed, user, team, last) = row;
    let bad = || malformed("conversation");
    Ok(LoadedConversation {
        id: id.parse().map_err(|_| bad())?,
        patient: patient.parse().map_err(|_| bad())?,
        is_main: is_main != 0,
        topic,
        state: ConversationState::parse(&state).ok_or_else(bad)?,
        snoozed_until: snoozed,
        assigned_user: user.map(|u| u.parse()).transpose().map_err(|_| bad())?,
        assigned_team: team.map(|t| t.parse()).transpose().map_err(|_| bad())?,
        last_message_at: last,
    })
}

fn parse_actor(kind: &str, id: &str) -> Actor {
    match kind {
        "user" => id.parse().map(Actor::User).unwrap_or(Actor::System),
        "token" => id.parse().map(Actor::ApiToken).unwrap_or(Actor::System),
        "patient" => id.parse().map(Actor::Patient).unwrap_or(Actor::System),
        "cli" => Actor::Cli,
        _ => Actor::System,
    }
}

impl Store {
    async fn load_conversation(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        id: ConversationId,
    ) -> Result<LoadedConversation> {
        // Only constant column lists are formatted in.
        let row: Option<ConversationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 AND practice_id = $2"
        )))
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        parse_conversation(row.ok_or(StoreError::NotFound)?)
    }

    async fn team_gate(
        &self,
        conn: &mut AnyConnection,
        principal: &Principal,
        conv: &LoadedConversation,
    ) -> Result<TeamGate> {
        let (Some(team), Principal::Staff { user, .. }) = (conv.assigned_team, principal) else {
            return Ok(TeamGate::Open);
        };
        if conv.assigned_user == Some(*user) {
            return Ok(TeamGate::Open);
        }
        let member: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM team_members WHERE team_id = $1 AND user_id = $2",
        )
        .bind(team.to_string())
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(if member.is_some() {
            TeamGate::Member
        } else {
            TeamGate::Outsider
        })
    }

    /// Loads a conversation and applies the gate (practice, restricted patient, team).
    pub(crate) async fn guarded_conversation(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        op: Operation,
        id: ConversationId,
    ) -> Result<LoadedConversation> {
        check_practice(principal, practice)?;
        let conv = self.load_conversation(conn, practice, id).await?;
        let gate = self.team_gate(conn, principal, &conv).await?;
        self.guard_patient_in_team(conn, practice, principal, op, conv.patient, gate)
            .await?;
        Ok(conv)
    }

    /// The patient's main thread, created on first use.
    pub(crate) async fn main_conversation(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
        now: i64,
    ) -> Result<LoadedConversation> {
        if let Some(conv) = self.find_main_conversation(conn, practice, patient).await? {
            return Ok(conv);
        }
        let id = ConversationId::new();
        sqlx::query(
            "INSERT INTO conversations (id, practice_id, patient_id, is_main, topic, state, \
             last_message_at, created_at, updated_at) VALUES ($1, $2, $3, 1, NULL, 'open', $4, $4, $4)",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        self.load_conversation(conn, practice, id).await
    }

    async fn find_main_conversation(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Option<LoadedConversation>> {
        // Only constant column lists are formatted in.
        let existing: Option<ConversationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations \
             WHERE patient_id = $1 AND practice_id = $2 AND is_main = 1"
        )))
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        existing.map(parse_conversation).transpose()
    }

    /// Resolves a target to a conversation the principal may use for `op`. A patient's missing
    /// main thread is created when `create_main_at` is given, else the answer is `None`.
    async fn target_conversation(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        op: Operation,
        target: ConversationTarget,
        create_main_at: Option<i64>,
    ) -> Result<Option<LoadedConversation>> {
        match target {
            ConversationTarget::Existing(id) => self
                .guarded_conversation(conn, practice, principal, op, id)
                .await
                .map(Some),
            ConversationTarget::OfPatient(patient, id) => {
                check_practice(principal, practice)?;
                let conv = self.load_conversation(conn, practice, id).await?;
                // Another patient's thread is no thread of this patient's.
                if conv.patient != patient {
                    return Err(StoreError::NotFound);
                }
                let gate = self.team_gate(conn, principal, &conv).await?;
                self.guard_patient_in_team(conn, practice, principal, op, patient, gate)
                    .await?;
                Ok(Some(conv))
            }
            ConversationTarget::Main(patient) => {
                check_practice(principal, practice)?;
                // The patient gate first, so a hidden patient gets no thread created.
                self.guard_patient_in_team(conn, practice, principal, op, patient, TeamGate::Open)
                    .await?;
                let found = match create_main_at {
                    Some(now) => Some(self.main_conversation(conn, practice, patient, now).await?),
                    None => self.find_main_conversation(conn, practice, patient).await?,
                };
                let Some(conv) = found else {
                    return Ok(None);
                };
                let gate = self.team_gate(conn, principal, &conv).await?;
                // With an open gate the check above already was this one.
                if gate != TeamGate::Open {
                    self.guard_patient_in_team(conn, practice, principal, op, patient, gate)
                        .await?;
                }
                Ok(Some(conv))
            }
        }
    }

    /// Records an inbox change and its audit row, commits, and wakes live-update streams.
    #[allow(clippy::too_many_arguments)]
    async fn commit_conversation_change(
        &self,
        mut tx: WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        (patient, id): (PatientId, ConversationId),
        kind: &str,
        action: Action,
    ) -> Result<()> {
        record_change(&mut tx, practice, id, kind).await?;
        tx.audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            action,
            vec![patient.to_string(), id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(())
    }

    /// Opens a topic thread beside the patient's main thread.
    pub async fn create_topic_conversation(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: PatientId,
        topic: &Sensitive<String>,
    ) -> Result<ConversationId> {
        let topic = topic.expose().trim();
        if topic.is_empty() || topic.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "a topic has 1 to 200 characters".into(),
            ));
        }
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        self.guard_patient_in_team(
            &mut tx.tx,
            practice,
            principal,
            Operation::MessageSend,
            patient,
            TeamGate::Open,
        )
        .await?;
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let id = ConversationId::new();
        sqlx::query(
            "INSERT INTO conversations (id, practice_id, patient_id, is_main, topic, state, \
             last_message_at, created_at, updated_at) VALUES ($1, $2, $3, 0, $4, 'open', $5, $5, $5)",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(key.seal_str(
            FieldAad::new("conversations", "topic", &id.to_string()),
            topic,
        ))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        self.commit_conversation_change(
            tx,
            practice,
            principal,
            ctx,
            (patient, id),
            "conversation",
            Action::ConversationState,
        )
        .await?;
        Ok(id)
    }

    /// `policy`: the practice's response-time policy, read once per list, not per row.
    async fn summary(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        conv: &LoadedConversation,
        policy: &crate::hours::ResponsePolicy,
    ) -> Result<ConversationSummary> {
        let (name, topic) = match self.ring.patient_key(conn, practice, conv.patient).await {
            Ok(key) => {
                let patient = self.load_patient(conn, practice, conv.patient).await?;
                let name = format!(
                    "{} {}",
                    patient.record.given_name.expose(),
                    patient.record.family_name.expose()
                );
                let topic = conv
                    .topic
                    .as_ref()
                    .map(|t| {
                        key.open_string(
                            FieldAad::new("conversations", "topic", &conv.id.to_string()),
                            t,
                        )
                    })
                    .transpose()?
                    .map(Sensitive::new);
                (Some(Sensitive::new(name)), topic)
            }
            Err(StoreError::Shredded) => (None, None),
            Err(e) => return Err(e),
        };
        let unread = match principal {
            Principal::Staff { user, .. } => {
                let read_at: Option<i64> = sqlx::query_scalar(
                    "SELECT read_at FROM conversation_reads WHERE conversation_id = $1 AND user_id = $2",
                )
                .bind(conv.id.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM messages WHERE conversation_id = $1 AND created_at > $2 \
                     AND NOT (author_kind = 'user' AND author_id = $3)",
                )
                .bind(conv.id.to_string())
                .bind(read_at.unwrap_or(i64::MIN))
                .bind(user.to_string())
                .fetch_one(&mut *conn)
                .await?
            }
            _ => 0,
        };
        let urgent_at: Option<i64> =
            sqlx::query_scalar("SELECT urgent_at FROM conversations WHERE id = $1")
                .bind(conv.id.to_string())
                .fetch_one(&mut *conn)
                .await?;
        let last_channel: Option<String> = sqlx::query_scalar(
            "SELECT channel FROM messages WHERE conversation_id = $1 AND channel IS NOT NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(conv.id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let response = crate::hours::response_status_in(
            conn,
            policy,
            conv.id,
            conv.state == ConversationState::Closed,
            self.clock.now(),
        )
        .await?;
        Ok(ConversationSummary {
            id: conv.id,
            patient_id: conv.patient,
            patient_name: name,
            is_main: conv.is_main,
            topic,
            state: conv.state,
            snoozed_until: conv.snoozed_until.map(from_micros),
            assigned_user: conv.assigned_user,
            assigned_team: conv.assigned_team,
            last_message_at: from_micros(conv.last_message_at),
            unread,
            waiting_since: response.waiting_since,
            overdue: response.overdue,
            escalated: response.escalated,
            urgent: urgent_at.is_some(),
            last_channel,
        })
    }

    /// The inbox: conversations this principal may see, newest activity first, no content.
    pub async fn list_conversations(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        filter: &InboxFilter,
    ) -> Result<Vec<ConversationSummary>> {
        check_practice(principal, practice)?;
        let limit = filter.limit.clamp(1, crate::MAX_PAGE);
        let mut conn = self.pool.acquire().await?;
        let now = to_micros(self.clock.now());
        let mut sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE practice_id = $1 AND last_message_at < $2"
        );
        if filter.state.is_some() {
            sql.push_str(" AND state = $3");
        } else {
            sql.push_str(" AND $3 = $3");
        }
        if filter.patient.is_some() {
            sql.push_str(" AND patient_id = $4");
        } else {
            sql.push_str(" AND $4 = $4");
        }
        sql.push_str(" ORDER BY last_message_at DESC, id DESC");
        let rows: Vec<ConversationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(practice.to_string())
            .bind(filter.before.map(to_micros).unwrap_or(i64::MAX))
            .bind(filter.state.map(|s| s.as_str()).unwrap_or(""))
            .bind(filter.patient.map(|p| p.to_string()).unwrap_or_default())
            .fetch_all(&mut *conn)
            .await?;
        let me = match principal {
            Principal::Staff { user, .. } => Some(*user),
            _ => None,
        };
        let my_teams: Vec<String> = match me {
            Some(user) => {
                sqlx::query_scalar("SELECT team_id FROM team_members WHERE user_id = $1")
                    .bind(user.to_string())
                    .fetch_all(&mut *conn)
                    .await?
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let policy = crate::hours::response_policy_in(&mut conn, practice).await?;
        for row in rows {
            if out.len() >= limit {
                break;
            }
            let mut conv = parse_conversation(row)?;
            // A snooze that ran out shows the conversation as open again.
            if conv.state == ConversationState::Snoozed
                && conv.snoozed_until.is_some_and(|t| t <= now)
            {
                conv.state = ConversationState::Open;
                if filter.state == Some(ConversationState::Snoozed) {
                    continue;
                }
            }
            let in_my_team = conv
                .assigned_team
                .is_some_and(|t| my_teams.contains(&t.to_string()));
            let keep = match filter.assignment {
                Assignment::Any => true,
                Assignment::Mine => me.is_some() && conv.assigned_user == me,
                Assignment::MyTeams => in_my_team,
                Assignment::Unassigned => {
                    conv.assigned_user.is_none() && conv.assigned_team.is_none()
                }
            };
            if !keep {
                continue;
            }
            let gate = self.team_gate(&mut conn, principal, &conv).await?;
            let allowed = self
                .guard_patient_in_team(
                    &mut conn,
                    practice,
                    principal,
                    Operation::ConversationRead,
                    conv.patient,
                    gate,
                )
                .await;
            match allowed {
                Ok(()) => {}
                Err(
                    StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden,
                ) => {
                    continue;
                }
                Err(e) => return Err(e),
            }
            let summary = self
                .summary(&mut conn, practice, principal, &conv, &policy)
                .await?;
            if filter.unread_only && summary.unread == 0 {
                continue;
            }
            if filter.overdue_only && !summary.overdue {
                continue;
            }
            if filter.urgent_only && !summary.urgent {
                continue;
            }
            out.push(summary);
        }
        drop(conn);
        let mut targets: Vec<String> = out.iter().map(|c| c.patient_id.to_string()).collect();
        targets.sort();
        targets.dedup();
        self.record_audit(conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConversationList,
            targets,
            Outcome::Success,
        ))
        .await?;
        Ok(out)
    }

    async fn load_messages(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        conv: &LoadedConversation,
        front_desk_sees_clinical: bool,
    ) -> Result<Vec<MessageView>> {
        self.load_messages_where(
            conn,
            practice,
            principal,
            conv,
            front_desk_sees_clinical,
            None,
        )
        .await
    }

    /// One message of a conversation, as `load_messages` shows it.
    async fn load_message(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        conv: &LoadedConversation,
        id: MessageId,
    ) -> Result<MessageView> {
        self.load_messages_where(conn, practice, principal, conv, true, Some(id))
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    pub(crate) async fn load_messages_where(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        conv: &LoadedConversation,
        front_desk_sees_clinical: bool,
        only: Option<MessageId>,
    ) -> Result<Vec<MessageView>> {
        type Row = (
            String,
            String,
            Option<String>,
            String,
            String,
            String,
            Vec<u8>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
            i64,
            i64,
        );
        const COLUMNS: &str = "SELECT id, direction, channel, kind, author_kind, author_id, body, \
             route, decision, delivery, status, status_reason, legal_basis, created_at, \
             (SELECT COUNT(*) FROM attachments a WHERE a.message_id = messages.id) FROM messages \
             WHERE conversation_id = $1 AND practice_id = $2";
        // One message by its key, not a scan of its conversation (sends read theirs back).
        let query = match only {
            Some(_) => format!("{COLUMNS} AND id = $3"),
            None => format!("{COLUMNS} ORDER BY created_at, id"),
        };
        // Only the constant texts above are formatted in.
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(query))
            .bind(conv.id.to_string())
            .bind(practice.to_string());
        if let Some(id) = only {
            query = query.bind(id.to_string());
        }
        let rows: Vec<Row> = query.fetch_all(&mut *conn).await?;
        let key = self.ring.patient_key(conn, practice, conv.patient).await?;
        // One query for every loaded message's attachments, not one per message, and none
        // when no message has any (a send reads its message back).
        let mut attachments = if rows.iter().all(|row| row.14 == 0) {
            HashMap::new()
        } else {
            self.attachment_metas(conn, &key, practice, conv.id, only)
                .await?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (
                id,
                direction,
                channel,
                kind,
                author_kind,
                author_id,
                body,
                route,
                decision,
                delivery,
                status,
                reason,
                basis,
                created,
                _attachment_count,
            ) = row;
            let bad = || malformed("message");
            let author = parse_actor(&author_kind, &author_id);
            let own = matches!((&author, principal), (Actor::User(a), Principal::Staff { user, .. }) if a == user);
            let kind = ContentKind::parse(&kind).ok_or_else(bad)?;
            let visible = may_see_content(principal, kind, front_desk_sees_clinical, own);
            let open = |column: &str, sealed: &[u8]| {
                key.open_string(FieldAad::new("messages", column, &id), sealed)
                    .map(Sensitive::new)
            };
            let attachments = match attachments.remove(&id) {
                Some(metas) if visible => metas,
                _ => Vec::new(),
            };
            out.push(MessageView {
                id: id.parse().map_err(|_| bad())?,
                conversation_id: conv.id,
                direction: Direction::parse(&direction).ok_or_else(bad)?,
                channel: channel.as_deref().and_then(MessageChannel::parse),
                kind,
                author,
                body: if visible {
                    Some(open("body", &body)?)
                } else {
                    None
                },
                route: route.as_deref().and_then(Route::parse),
                decision: match (&decision, visible) {
                    (Some(d), true) => Some(open("decision", d)?),
                    _ => None,
                },
                delivery,
                status: status.as_deref().and_then(MessageStatus::parse),
                status_reason: reason.map(|r| open("status_reason", &r)).transpose()?,
                legal_basis: basis.map(|b| b.parse()).transpose().map_err(|_| bad())?,
                created_at: from_micros(created),
                attachments,
            });
        }
        Ok(out)
    }

    /// The attachments of a conversation's messages (or of one message), by message id.
    async fn attachment_metas(
        &self,
        conn: &mut AnyConnection,
        key: &salve_crypto::SymmetricKey,
        practice: PracticeId,
        conversation: ConversationId,
        only: Option<MessageId>,
    ) -> Result<HashMap<String, Vec<AttachmentMeta>>> {
        type Row = (String, String, String, Vec<u8>, i64);
        let rows: Vec<Row> = match only {
            Some(message) => {
                sqlx::query_as(
                    "SELECT message_id, id, media_type, file_name, size FROM attachments \
                 WHERE message_id = $1 AND practice_id = $2 ORDER BY id",
                )
                .bind(message.to_string())
                .bind(practice.to_string())
                .fetch_all(&mut *conn)
                .await?
            }
            None => sqlx::query_as(
                "SELECT a.message_id, a.id, a.media_type, a.file_name, a.size FROM attachments a \
                 JOIN messages m ON m.id = a.message_id \
                 WHERE m.conversation_id = $1 AND m.practice_id = $2 ORDER BY a.message_id, a.id",
            )
            .bind(conversation.to_string())
            .bind(practice.to_string())
            .fetch_all(&mut *conn)
            .await?,
        };
        let mut by_message: HashMap<String, Vec<AttachmentMeta>> = HashMap::new();
        for (message, id, media_type, name, size) in rows {
            let meta = AttachmentMeta {
                file_name: Sensitive::new(
                    key.open_string(FieldAad::new("attachments", "file_name", &id), &name)?,
                ),
                id: id.parse().map_err(|_| malformed("attachment"))?,
                media_type,
                size,
            };
            by_message.entry(message).or_default().push(meta);
        }
        Ok(by_message)
    }

    /// Reads one conversation with its messages (audited, success or not).
    pub async fn read_conversation(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: ConversationId,
    ) -> Result<ConversationDetail> {
        let settings = self.messaging_settings(practice).await.ok();
        let front_desk = settings.is_some_and(|s| s.front_desk_sees_clinical);
        let mut tx = self.begin().await?;
        let result = async {
            let conv = self
                .guarded_conversation(
                    &mut tx.tx,
                    practice,
                    principal,
                    Operation::ConversationRead,
                    id,
                )
                .await?;
            let policy = crate::hours::response_policy_in(&mut tx.tx, practice).await?;
            let summary = self
                .summary(&mut tx.tx, practice, principal, &conv, &policy)
                .await?;
            let messages = self
                .load_messages(&mut tx.tx, practice, principal, &conv, front_desk)
                .await?;
            Ok::<_, StoreError>((conv.patient, ConversationDetail { summary, messages }))
        }
        .await;
        let (targets, outcome) = match &result {
            Ok((patient, _)) => (vec![patient.to_string(), id.to_string()], Outcome::Success),
            Err(StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden) => {
                (vec![id.to_string()], Outcome::Denied)
            }
            Err(_) => (vec![id.to_string()], Outcome::Failure),
        };
        let event = conversation_event(
            practice,
            principal.actor(),
            ctx,
            Action::ConversationRead,
            targets,
            outcome,
        );
        match result {
            Ok((_, detail)) => {
                tx.audit(event);
                tx.commit().await?;
                Ok(detail)
            }
            Err(e) => {
                drop(tx);
                if !matches!(e, StoreError::NotFound) {
                    self.record_audit(event).await?;
                }
                Err(e)
            }
        }
    }

    /// Reads the facts an outgoing message is planned from.
    pub(crate) async fn send_facts(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        conv: &LoadedConversation,
    ) -> Result<SendFacts> {
        let patient = self.load_patient(conn, practice, conv.patient).await?;
        let consent = self
            .consent_history_in(conn, practice, conv.patient)
            .await?;
        let confidential = self
            .confidential_requests_in(conn, practice, conv.patient)
            .await?;
        Ok(SendFacts {
            conversation: conv.id,
            patient,
            consent,
            confidential,
            settings: self.messaging_settings_in(conn, practice).await?,
            catalog: self.catalog_in(conn, practice).await?,
        })
    }

    /// The conversation a send goes to, checked for the principal, and the facts it is planned
    /// from; `None` when the patient has no main thread yet and `create_main_at` is not given.
    async fn send_target(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        target: ConversationTarget,
        create_main_at: Option<i64>,
    ) -> Result<Option<(LoadedConversation, SendFacts)>> {
        let Some(conv) = self
            .target_conversation(
                conn,
                practice,
                principal,
                Operation::MessageSend,
                target,
                create_main_at,
            )
            .await?
        else {
            return Ok(None);
        };
        let facts = self.send_facts(conn, practice, &conv).await?;
        Ok(Some((conv, facts)))
    }

    /// The facts a preview is planned from, with the same gate as a send; writes nothing.
    pub async fn send_facts_for(
        &self,
        practice: PracticeId,
        principal: &Principal,
        target: ConversationTarget,
    ) -> Result<SendFacts> {
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let found = self
            .send_target(&mut tx.tx, practice, principal, target, Some(now))
            .await;
        // Dropped, not committed: a preview leaves no thread behind.
        drop(tx);
        Ok(found?.ok_or(StoreError::NotFound)?.1)
    }

    /// Stores an outgoing message (or a note) with its attachments, outbox job and audit row,
    /// in one transaction. `plan` decides the route from facts read for this send.
    /// A repeated `Idempotency-Key` returns the first message and changes nothing.
    ///
    /// The facts are read and the plan made before the write lock is taken (SQLite has one
    /// writer, so everything done under the lock is done one send at a time): a send is decided
    /// on the state of one read snapshot, as if it had arrived then, and a consent revoked after
    /// that snapshot stops the queued send in the outbox worker. Only a first message to a
    /// patient without a main thread yet, and a retried key, are planned under the lock.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_message<F>(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        target: ConversationTarget,
        attachments: &[NewAttachment],
        idempotency: Option<Idempotency>,
        plan: F,
    ) -> Result<(MessageView, bool)>
    where
        F: FnOnce(&SendFacts) -> std::result::Result<OutboundPlan, PlanRefused>,
    {
        check_practice(principal, practice)?;
        let actor = principal.actor();
        let actor_key = format!("{}:{}", actor.kind(), actor.id());
        let mut plan = Some(plan);
        // SQLite only: PostgreSQL has no single writer to keep free, and there the read
        // transaction would only add round trips.
        let early = if self.backend() != crate::Backend::Sqlite {
            None
        } else {
            let mut read = self.pool.begin().await?;
            let retried = match idempotency {
                Some(idem) => idem.prior(&mut read, practice, &actor_key).await?.is_some(),
                None => false,
            };
            let found = if retried {
                None
            } else {
                self.send_target(&mut read, practice, principal, target, None)
                    .await?
            };
            match found {
                Some((conv, facts)) => Some((conv, planned(&mut plan, &facts)?)),
                None => None,
            }
        };
        // A send planned above checked its key in that snapshot: under the lock the key's
        // primary key catches a request that recorded it since, and the send is then tried
        // again with the key checked under the lock (replayed, or 409 while in progress).
        let mut key_checked_early = early.is_some();
        let request = SendRequest {
            practice,
            principal,
            ctx,
            target,
            attachments,
            idempotency,
            actor_key: &actor_key,
        };
        let (conv, message, replayed) = loop {
            match self
                .send_under_lock(&request, !key_checked_early, &mut plan, early.as_ref())
                .await
            {
                Err(StoreError::Conflict(IDEMPOTENCY_KEY_IN_PROGRESS)) if key_checked_early => {
                    key_checked_early = false;
                }
                sent => break sent?,
            }
        };
        if !replayed {
            self.inbox_changed();
        }
        // Read back once committed, outside the write lock.
        let mut conn = self.pool.acquire().await?;
        let view = self
            .load_message(&mut conn, practice, principal, &conv, message)
            .await?;
        Ok((view, replayed))
    }

    /// One attempt at a send's write: replays the key's first message if `check_key` and it has
    /// one, else stores the message planned early or plans it now. Returns once durably
    /// committed.
    async fn send_under_lock<F>(
        &self,
        request: &SendRequest<'_>,
        check_key: bool,
        plan: &mut Option<F>,
        early: Option<&(LoadedConversation, OutboundPlan)>,
    ) -> Result<(LoadedConversation, MessageId, bool)>
    where
        F: FnOnce(&SendFacts) -> std::result::Result<OutboundPlan, PlanRefused>,
    {
        let SendRequest {
            practice,
            principal,
            ctx,
            target,
            attachments,
            idempotency,
            actor_key,
        } = *request;
        let actor = principal.actor();
        // Sends share durable commits on SQLite (group commit); commit returns only after the
        // commit holding this message is durable. A send planned early only reads before then.
        let mut tx = match early {
            Some(_) => self.begin_grouped_at_commit().await?,
            None => self.begin_grouped().await?,
        };
        let sent = async {
            let now = tx.now_micros();
            if let Some(idem) = idempotency.filter(|_| check_key)
                && let Some(id) = idem.prior(&mut tx.tx, practice, actor_key).await?
            {
                let message_id: MessageId = id.parse().map_err(|_| malformed("idempotency"))?;
                let conv_id: String = sqlx::query_scalar(
                    "SELECT conversation_id FROM messages WHERE id = $1 AND practice_id = $2",
                )
                .bind(message_id.to_string())
                .bind(practice.to_string())
                .fetch_one(&mut *tx.tx)
                .await?;
                let conv = self
                    .load_conversation(
                        &mut tx.tx,
                        practice,
                        conv_id.parse().map_err(|_| malformed("message"))?,
                    )
                    .await?;
                tx.audit(conversation_event(
                    practice,
                    actor,
                    ctx,
                    Action::MessageDuplicate,
                    vec![conv.patient.to_string(), message_id.to_string()],
                    Outcome::Success,
                ));
                return Ok((conv, message_id, true));
            }
            let planned_now;
            let (conv, plan) = match early {
                Some((conv, plan)) => (conv, plan),
                None => {
                    let (conv, facts) = self
                        .send_target(&mut tx.tx, practice, principal, target, Some(now))
                        .await?
                        .ok_or(StoreError::NotFound)?;
                    let plan = planned(plan, &facts)?;
                    planned_now = (conv, plan);
                    (&planned_now.0, &planned_now.1)
                }
            };
            let message = self
                .insert_message_at_commit(&mut tx, practice, conv, &actor, attachments, plan)
                .await?;
            if let Some(idem) = idempotency {
                idem.record(&mut tx, practice, actor_key, &message.to_string());
            }
            let action = match plan.direction {
                Direction::Note => Action::MessageNote,
                _ => Action::MessageSend,
            };
            tx.audit(conversation_event(
                practice,
                actor,
                ctx,
                action,
                vec![conv.patient.to_string(), message.to_string()],
                Outcome::Success,
            ));
            Ok((conv.clone(), message, false))
        }
        .await;
        match sent {
            Ok(sent) => {
                tx.commit().await?;
                Ok(sent)
            }
            Err(e) => {
                tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Stores a message with its attachments, notification job and inbox change.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_message(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        conv: &LoadedConversation,
        author: &Actor,
        attachments: &[NewAttachment],
        plan: &OutboundPlan,
    ) -> Result<MessageId> {
        let id = self
            .insert_message_at_commit(tx, practice, conv, author, attachments, plan)
            .await?;
        // Callers may read the rows back before they commit: written now, as one command.
        tx.write_deferred().await?;
        Ok(id)
    }

    /// [`Store::insert_message`] with the rows written at commit, in one command with the
    /// audit rows; for a transaction that reads none of them back before it commits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_message_at_commit(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        conv: &LoadedConversation,
        author: &Actor,
        attachments: &[NewAttachment],
        plan: &OutboundPlan,
    ) -> Result<MessageId> {
        let key = self
            .ring
            .patient_key(&mut tx.tx, practice, conv.patient)
            .await?;
        let now = tx.now_micros();
        let id = message_writes(
            tx.deferred(),
            &key,
            self.backend(),
            now,
            practice,
            conv,
            author,
            attachments,
            plan,
        );
        self.queue_message_ehr_write(tx, practice, conv, plan, id);
        Ok(id)
    }

    fn queue_message_ehr_write(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        conv: &LoadedConversation,
        plan: &OutboundPlan,
        message: MessageId,
    ) {
        // Internal notes never go to the EHR.
        if plan.direction != Direction::Note {
            self.queue_ehr_write_in(
                tx,
                practice,
                conv.patient,
                salve_core::ehr::WriteKind::Communication,
                &message.to_string(),
                Some(conv.id),
            );
        }
    }

    /// A patient's own message from the portal, into their main thread or one of their threads.
    #[allow(clippy::too_many_arguments)]
    pub async fn receive_patient_message<F>(
        &self,
        practice: PracticeId,
        patient: PatientId,
        ctx: &RequestContext,
        conversation: Option<ConversationId>,
        body: &Sensitive<String>,
        attachments: &[NewAttachment],
        classify: F,
    ) -> Result<MessageId>
    where
        F: FnOnce(&str) -> ContentKind,
    {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let conv = match conversation {
            Some(id) => {
                let conv = self.load_conversation(&mut tx.tx, practice, id).await?;
                if conv.patient != patient {
                    return Err(StoreError::NotFound);
                }
                conv
            }
            None => {
                self.main_conversation(&mut tx.tx, practice, patient, now)
                    .await?
            }
        };
        let kind = if attachments.is_empty() {
            classify(body.expose())
        } else {
            ContentKind::Clinical
        };
        let plan = OutboundPlan {
            direction: Direction::Inbound,
            body: body.clone(),
            kind,
            channel: MessageChannel::Portal,
            route: None,
            decision_json: None,
            delivery: "portal".into(),
            status: MessageStatus::Received,
            status_reason: None,
            legal_basis: None,
            job: None,
        };
        let actor = Actor::Patient(patient);
        let id = self
            .insert_message(&mut tx, practice, &conv, &actor, attachments, &plan)
            .await?;
        tx.audit(conversation_event(
            practice,
            actor,
            ctx,
            Action::MessageReceive,
            vec![patient.to_string(), id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(id)
    }

    /// The patient's own view of their conversations: everything but internal notes.
    pub async fn patient_conversations(
        &self,
        practice: PracticeId,
        patient: PatientId,
        ctx: &RequestContext,
    ) -> Result<Vec<(ConversationId, Vec<MessageView>)>> {
        let mut tx = self.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE patient_id = $1 AND practice_id = $2 \
             ORDER BY is_main DESC, created_at",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::new();
        for id in ids {
            let id: ConversationId = id.parse().map_err(|_| malformed("conversation"))?;
            let conv = self.load_conversation(&mut tx.tx, practice, id).await?;
            let messages = self
                .load_messages(&mut tx.tx, practice, &Principal::Operator, &conv, true)
                .await?
                .into_iter()
                .filter(|m| m.direction != Direction::Note)
                .map(|mut m| {
                    // Staff-facing details stay with staff.
                    m.decision = None;
                    m.status_reason = None;
                    m.legal_basis = None;
                    m
                })
                .collect();
            out.push((id, messages));
        }
        // Outbound messages the patient now sees count as read.
        sqlx::query(
            "UPDATE messages SET status = 'read', updated_at = $1 WHERE patient_id = $2 AND practice_id = $3 \
             AND direction = 'outbound' AND channel = 'portal' AND status IN ('queued', 'sending', 'sent', 'delivered', 'unknown')",
        )
        .bind(tx.now_micros())
        .bind(patient.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        // The first time the patient saw each secure message (an unread one gets a reminder).
        sqlx::query(
            "UPDATE messages SET patient_read_at = $1 WHERE patient_id = $2 AND practice_id = $3 \
             AND direction = 'outbound' AND channel = 'portal' AND patient_read_at IS NULL",
        )
        .bind(tx.now_micros())
        .bind(patient.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(conversation_event(
            practice,
            Actor::Patient(patient),
            ctx,
            Action::ConversationRead,
            vec![patient.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(out)
    }

    /// One attachment's bytes, for staff (gated like its conversation) or for its own patient.
    pub async fn read_attachment(
        &self,
        practice: PracticeId,
        reader: AttachmentReader<'_>,
        ctx: &RequestContext,
        id: AttachmentId,
    ) -> Result<(AttachmentMeta, Vec<u8>)> {
        let settings = self.messaging_settings(practice).await?;
        let mut tx = self.begin().await?;
        type Row = (String, String, String, Vec<u8>, i64, Vec<u8>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT message_id, patient_id, media_type, file_name, size, content FROM attachments \
             WHERE id = $1 AND practice_id = $2",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let (message, patient, media_type, name, size, content) =
            row.ok_or(StoreError::NotFound)?;
        let patient: PatientId = patient.parse().map_err(|_| malformed("attachment"))?;
        let (conv_id, kind, direction, author_kind, author_id): (String, String, String, String, String) =
            sqlx::query_as(
                "SELECT conversation_id, kind, direction, author_kind, author_id FROM messages WHERE id = $1",
            )
            .bind(&message)
            .fetch_one(&mut *tx.tx)
            .await?;
        let actor = match reader {
            AttachmentReader::Staff(principal) => {
                let conv_id: ConversationId = conv_id.parse().map_err(|_| malformed("message"))?;
                self.guarded_conversation(
                    &mut tx.tx,
                    practice,
                    principal,
                    Operation::ConversationRead,
                    conv_id,
                )
                .await?;
                let own = matches!((parse_actor(&author_kind, &author_id), principal), (Actor::User(a), Principal::Staff { user, .. }) if a == *user);
                let kind = ContentKind::parse(&kind).ok_or_else(|| malformed("message"))?;
                if !may_see_content(principal, kind, settings.front_desk_sees_clinical, own) {
                    return Err(StoreError::Forbidden);
                }
                principal.actor()
            }
            AttachmentReader::Patient(own) => {
                if own != patient || direction == "note" {
                    return Err(StoreError::NotFound);
                }
                Actor::Patient(own)
            }
        };
        let key = self.ring.patient_key(&mut tx.tx, practice, patient).await?;
        let aid = id.to_string();
        let meta = AttachmentMeta {
            id,
            media_type,
            file_name: Sensitive::new(
                key.open_string(FieldAad::new("attachments", "file_name", &aid), &name)?,
            ),
            size,
        };
        let bytes = key.open(FieldAad::new("attachments", "content", &aid), &content)?;
        tx.audit(conversation_event(
            practice,
            actor,
            ctx,
            Action::AttachmentRead,
            vec![patient.to_string(), aid],
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok((meta, bytes.to_vec()))
    }

    /// Assigns a conversation to a person and/or a team of the practice (or clears it).
    pub async fn assign_conversation(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: ConversationId,
        user: Option<UserId>,
        team: Option<TeamId>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let conv = self
            .guarded_conversation(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConversationManage,
                id,
            )
            .await?;
        if let Some(user) = user {
            let role: Option<String> = sqlx::query_scalar(
                "SELECT role FROM memberships WHERE user_id = $1 AND practice_id = $2",
            )
            .bind(user.to_string())
            .bind(practice.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
            match role.as_deref().and_then(Role::parse) {
                Some(Role::Admin | Role::Clinician | Role::Staff) => {}
                _ => {
                    return Err(StoreError::Invalid(
                        "a conversation is assigned to a member of the practice who handles messages"
                            .into(),
                    ));
                }
            }
        }
        if let Some(team) = team {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 AND practice_id = $2")
                    .bind(team.to_string())
                    .bind(practice.to_string())
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::Invalid("no such team in this practice".into()));
            }
        }
        sqlx::query(
            "UPDATE conversations SET assigned_user = $1, assigned_team = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(user.map(|u| u.to_string()))
        .bind(team.map(|t| t.to_string()))
        .bind(tx.now_micros())
        .bind(id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        self.commit_conversation_change(
            tx,
            practice,
            principal,
            ctx,
            (conv.patient, id),
            "assignment",
            Action::ConversationAssign,
        )
        .await
    }

    /// Opens, closes or snoozes a conversation (a snooze needs a time in the future).
    pub async fn set_conversation_state(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: ConversationId,
        state: ConversationState,
        snoozed_until: Option<OffsetDateTime>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let until = match (state, snoozed_until) {
            (ConversationState::Snoozed, Some(t)) if t > tx.now => Some(to_micros(t)),
            (ConversationState::Snoozed, _) => {
                return Err(StoreError::Invalid(
                    "a snooze needs `snoozed_until` in the future".into(),
                ));
            }
            (_, None) => None,
            (_, Some(_)) => {
                return Err(StoreError::Invalid(
                    "`snoozed_until` goes only with the state `snoozed`".into(),
                ));
            }
        };
        let conv = self
            .guarded_conversation(
                &mut tx.tx,
                practice,
                principal,
                Operation::ConversationManage,
                id,
            )
            .await?;
        sqlx::query(
            "UPDATE conversations SET state = $1, snoozed_until = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(until)
        .bind(tx.now_micros())
        .bind(id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        // A conversation closed (not one closed again) goes to the EHR as a transcript.
        if state == ConversationState::Closed && conv.state != ConversationState::Closed {
            self.queue_ehr_write_in(
                &mut tx,
                practice,
                conv.patient,
                salve_core::ehr::WriteKind::Document,
                &id.to_string(),
                Some(id),
            );
        }
        self.commit_conversation_change(
            tx,
            practice,
            principal,
            ctx,
            (conv.patient, id),
            "state",
            Action::ConversationState,
        )
        .await
    }

    /// Whether this principal may read the conversation (restricted patient, team); no audit
    /// row: used to decide which live-update ids a stream may carry, not to read anything.
    pub async fn may_read_conversation(
        &self,
        practice: PracticeId,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        match self
            .guarded_conversation(
                &mut conn,
                practice,
                principal,
                Operation::ConversationRead,
                id,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                StoreError::NotFound
                | StoreError::Hidden
                | StoreError::Forbidden
                | StoreError::BreakGlassRequired,
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The patient of a conversation the principal was refused with `BreakGlassRequired`, so
    /// a page can offer the break-glass form for that patient. Only answers for that refusal
    /// (anyone else learns nothing new: `NotFound` as for no such conversation).
    pub async fn break_glass_patient(
        &self,
        practice: PracticeId,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<PatientId> {
        let mut conn = self.pool.acquire().await?;
        let conv = self.load_conversation(&mut conn, practice, id).await?;
        match self
            .guarded_conversation(
                &mut conn,
                practice,
                principal,
                Operation::ConversationRead,
                id,
            )
            .await
        {
            Err(StoreError::BreakGlassRequired) => Ok(conv.patient),
            Err(e @ StoreError::NotFound) => Err(e),
            _ => Err(StoreError::NotFound),
        }
    }

    /// Whether a patient is marked restricted (for the banner on a page the caller already
    /// opened through the patient gate).
    pub async fn patient_is_restricted(
        &self,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let restricted: Option<i64> = sqlx::query_scalar(
            "SELECT restricted FROM patients WHERE id = $1 AND practice_id = $2",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(restricted.ok_or(StoreError::NotFound)? != 0)
    }

    /// Applies the conversation gate for `ConversationManage` without changing anything.
    pub async fn check_conversation_access(
        &self,
        practice: PracticeId,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        self.guarded_conversation(
            &mut conn,
            practice,
            principal,
            Operation::ConversationManage,
            id,
        )
        .await
        .map(|_| ())
    }

    /// Marks a conversation read by this staff member, up to now.
    pub async fn mark_conversation_read(
        &self,
        practice: PracticeId,
        principal: &Principal,
        id: ConversationId,
    ) -> Result<()> {
        let Principal::Staff { user, .. } = principal else {
            return Err(StoreError::Invalid(
                "read marks belong to staff members".into(),
            ));
        };
        let mut tx = self.begin().await?;
        self.guarded_conversation(
            &mut tx.tx,
            practice,
            principal,
            Operation::ConversationManage,
            id,
        )
        .await?;
        sqlx::query(
            "INSERT INTO conversation_reads (conversation_id, user_id, read_at) VALUES ($1, $2, $3) \
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET read_at = excluded.read_at",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?;
        // Marking read is a personal view state, not an access: no audit row of its own.
        tx.commit().await
    }

    /// Changes recorded since `after` for one practice: (seq, conversation, kind).
    pub async fn inbox_changes_since(
        &self,
        practice: PracticeId,
        after: i64,
    ) -> Result<Vec<(i64, ConversationId, String)>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, conversation_id, kind FROM inbox_changes WHERE practice_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT 500",
        )
        .bind(practice.to_string())
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(seq, conv, kind)| {
                Ok((
                    seq,
                    conv.parse().map_err(|_| malformed("inbox change"))?,
                    kind,
                ))
            })
            .collect()
    }

    /// The newest change sequence number (where a new stream starts).
    pub async fn inbox_head(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM inbox_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }
}

/// Who reads an attachment.
#[derive(Debug, Clone, Copy)]
pub enum AttachmentReader<'a> {
    Staff(&'a Principal),
    Patient(PatientId),
}

/// What a send was asked to do, as `Store::send_message` received it.
#[derive(Clone, Copy)]
struct SendRequest<'a> {
    practice: PracticeId,
    principal: &'a Principal,
    ctx: &'a RequestContext,
    target: ConversationTarget,
    attachments: &'a [NewAttachment],
    idempotency: Option<Idempotency>,
    /// `kind:id` of the principal's actor, as idempotency keys are recorded under.
    actor_key: &'a str,
}

/// Runs a send's plan (once: it may mint a link token) on its facts.
fn planned<F>(plan: &mut Option<F>, facts: &SendFacts) -> Result<OutboundPlan>
where
    F: FnOnce(&SendFacts) -> std::result::Result<OutboundPlan, PlanRefused>,
{
    let plan = plan
        .take()
        .ok_or_else(|| StoreError::Invalid("a send is planned once".into()))?;
    plan(facts).map_err(|PlanRefused(why)| StoreError::Invalid(why))
}

/// Adds a new message's rows to `writes`: the message, its attachments (sealed with the
/// patient's key), its secure link and outbox job, the thread's new state and the inbox change.
#[allow(clippy::too_many_arguments)]
fn message_writes(
    writes: &mut Batch,
    key: &salve_crypto::SymmetricKey,
    backend: crate::Backend,
    now: i64,
    practice: PracticeId,
    conv: &LoadedConversation,
    author: &Actor,
    attachments: &[NewAttachment],
    plan: &OutboundPlan,
) -> MessageId {
    let body = &plan.body;
    let id = MessageId::new();
    let row = id.to_string();
    let seal =
        |column: &str, text: &str| key.seal_str(FieldAad::new("messages", column, &row), text);
    let status = match plan.direction {
        Direction::Note => None,
        _ => Some(plan.status.as_str()),
    };
    writes
            .push(
                "INSERT INTO messages (id, practice_id, conversation_id, patient_id, direction, channel, kind, \
                 author_kind, author_id, body, route, decision, delivery, status, status_reason, legal_basis, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)",
            )
            .bind(row.clone())
            .bind(practice.to_string())
            .bind(conv.id.to_string())
            .bind(conv.patient.to_string())
            .bind(plan.direction.as_str())
            .bind(match plan.direction {
                Direction::Note => None,
                _ => Some(plan.channel.as_str()),
            })
            .bind(plan.kind.as_str())
            .bind(author.kind())
            .bind(author.id())
            .bind(seal("body", body.expose()))
            .bind(plan.route.map(Route::as_str))
            .bind(plan.decision_json.as_deref().map(|d| seal("decision", d)))
            .bind(plan.delivery.clone())
            .bind(status)
            .bind(plan.status_reason.as_deref().map(|r| seal("status_reason", r)))
            .bind(plan.legal_basis.map(|b| b.to_string()))
            .bind(now);
    if let Some(job) = &plan.job {
        if let Some((contact, token_hash, ttl)) = &job.secure_link {
            crate::links::push_link(
                writes,
                key,
                practice,
                conv.patient,
                contact,
                token_hash,
                now,
                *ttl,
                Some(&row),
            );
        }
        let job_id = OutboxJobId::new().to_string();
        writes
                .push(
                    "INSERT INTO outbox_jobs (id, practice_id, patient_id, message_id, medium, purpose, \
                     consent_channel, legal_basis, recipient, body, status, attempts, next_attempt_at, \
                     created_at, updated_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11, $11, $12)",
                )
                .bind(job_id.clone())
                .bind(practice.to_string())
                .bind(conv.patient.to_string())
                .bind(row.clone())
                .bind(job.medium.as_str())
                .bind(job.purpose.clone())
                .bind(job.consent_channel.clone())
                .bind(job.legal_basis.map(|b| b.to_string()))
                .bind(key.seal_str(FieldAad::new("outbox_jobs", "recipient", &job_id), job.recipient.expose()))
                .bind(key.seal_str(FieldAad::new("outbox_jobs", "body", &job_id), job.body.expose()))
                .bind(now)
                .bind(job.expires_at);
    }
    // A patient's or staff member's new message reopens a closed or snoozed thread; a
    // staff reply answers an urgent flag.
    let staff_reply = plan.direction == Direction::Outbound
        && matches!(author, Actor::User(_) | Actor::ApiToken(_));
    writes
        .push(
            "UPDATE conversations SET last_message_at = $1, updated_at = $1, \
                 state = CASE WHEN $2 = 1 THEN 'open' ELSE state END, \
                 snoozed_until = CASE WHEN $2 = 1 THEN NULL ELSE snoozed_until END, \
                 urgent_at = CASE WHEN $4 = 1 THEN NULL ELSE urgent_at END WHERE id = $3",
        )
        .bind(now)
        .bind(i64::from(plan.direction == Direction::Inbound))
        .bind(conv.id.to_string())
        .bind(i64::from(staff_reply));
    for attachment in attachments {
        let aid = AttachmentId::new().to_string();
        writes
                .push(
                    "INSERT INTO attachments (id, practice_id, message_id, patient_id, media_type, file_name, size, content, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(aid.clone())
                .bind(practice.to_string())
                .bind(row.clone())
                .bind(conv.patient.to_string())
                .bind(attachment.media_type.clone())
                .bind(key.seal_str(FieldAad::new("attachments", "file_name", &aid), &attachment.file_name))
                .bind(attachment.bytes.len() as i64)
                .bind(key.seal(FieldAad::new("attachments", "content", &aid), &attachment.bytes))
                .bind(now);
    }
    push_change(writes, backend, now, practice, conv.id, "message");
    id
}

/// Records an inbox change (ids and a kind only) inside the transaction; on PostgreSQL it also
/// notifies other instances when the transaction commits.
pub(crate) async fn record_change(
    tx: &mut WriteTx<'_>,
    practice: PracticeId,
    conversation: ConversationId,
    kind: &str,
) -> Result<()> {
    let mut writes = Batch::new(tx.store.backend());
    push_change(
        &mut writes,
        tx.store.backend(),
        tx.now_micros(),
        practice,
        conversation,
        kind,
    );
    writes.execute(&mut tx.tx).await
}

/// Records an inbox change at the transaction's commit.
pub(crate) fn defer_change(
    tx: &mut WriteTx<'_>,
    practice: PracticeId,
    conversation: ConversationId,
    kind: &str,
) {
    let (backend, now) = (tx.store.backend(), tx.now_micros());
    push_change(tx.deferred(), backend, now, practice, conversation, kind);
}

/// Adds an inbox change (and, on PostgreSQL, the wake-up of other instances' streams).
fn push_change(
    writes: &mut Batch,
    backend: crate::Backend,
    now: i64,
    practice: PracticeId,
    conversation: ConversationId,
    kind: &str,
) {
    writes
        .push("INSERT INTO inbox_changes (practice_id, conversation_id, kind, at) VALUES ($1, $2, $3, $4)")
        .bind(practice.to_string())
        .bind(conversation.to_string())
        .bind(kind.to_owned())
        .bind(now);
    if backend == crate::Backend::Postgres {
        writes.push("SELECT pg_notify('salve_inbox', '')");
    }
}
