//! The practice's messaging settings, its catalog of appointment types, locations and providers
//! (with their SMS-safe flags), and its saved replies. None of this is PHI.

use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::Principal;
use salve_core::{CatalogItemId, PracticeId, TemplateId};

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingSettings {
    /// The name texts are sent under; checked by the channel policy.
    pub sender_name: String,
    pub phone: String,
    pub hours_text: String,
    pub expected_reply_text: String,
    pub on_call_number: Option<String>,
    /// Whether the front desk may read clinical messages.
    pub front_desk_sees_clinical: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatalogKind {
    AppointmentType,
    Location,
    Provider,
}

impl CatalogKind {
    pub const ALL: [CatalogKind; 3] = [Self::AppointmentType, Self::Location, Self::Provider];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppointmentType => "appointment_type",
            Self::Location => "location",
            Self::Provider => "provider",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    pub id: CatalogItemId,
    pub kind: CatalogKind,
    pub name: String,
    pub sms_safe: bool,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTemplate {
    pub id: TemplateId,
    pub name: String,
    pub body: String,
    pub active: bool,
}

fn practice_event(
    practice: PracticeId,
    principal: &Principal,
    ctx: &RequestContext,
    action: Action,
    target: String,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: principal.actor(),
        action,
        targets: vec![target],
        outcome: Outcome::Success,
        context: ctx.clone(),
    }
}

fn bad(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what} row"))
}

impl MessagingSettings {
    /// The practice fields system messages are rendered with.
    pub fn practice_fields(&self) -> salve_core::system_messages::PracticeFields {
        salve_core::system_messages::PracticeFields {
            sender_name: self.sender_name.clone(),
            phone: self.phone.clone(),
            hours_text: self.hours_text.clone(),
            expected_reply_text: self.expected_reply_text.clone(),
            on_call_number: self.on_call_number.clone(),
        }
    }
}

impl Store {
    /// The practice's messaging settings; until an admin sets them, the practice's name and
    /// neutral wording.
    pub async fn messaging_settings(&self, practice: PracticeId) -> Result<MessagingSettings> {
        let mut conn = self.pool.acquire().await?;
        self.messaging_settings_in(&mut conn, practice).await
    }

    /// The same, on the caller's connection (inside its transaction: a second pooled connection
    /// there could wait forever once every connection is held by a transaction).
    pub(crate) async fn messaging_settings_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        practice: PracticeId,
    ) -> Result<MessagingSettings> {
        // One statement whether or not the practice has saved settings (sends read these).
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT p.name, m.sender_name, m.phone, m.hours_text, m.expected_reply_text, \
             m.on_call_number, m.front_desk_sees_clinical \
             FROM practices p LEFT JOIN practice_messaging m ON m.practice_id = p.id \
             WHERE p.id = $1",
        )
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (name, sender_name, phone, hours_text, expected_reply_text, on_call_number, fd) =
            row.ok_or(StoreError::NotFound)?;
        Ok(match sender_name {
            Some(sender_name) => MessagingSettings {
                sender_name,
                phone: phone.unwrap_or_default(),
                hours_text: hours_text.unwrap_or_default(),
                expected_reply_text: expected_reply_text.unwrap_or_default(),
                on_call_number,
                front_desk_sees_clinical: fd.is_some_and(|fd| fd != 0),
            },
            None => MessagingSettings {
                sender_name: name,
                phone: String::new(),
                hours_text: String::new(),
                expected_reply_text: String::new(),
                on_call_number: None,
                front_desk_sees_clinical: false,
            },
        })
    }

    pub async fn set_messaging_settings(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        settings: &MessagingSettings,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "INSERT INTO practice_messaging (practice_id, sender_name, phone, hours_text, \
             expected_reply_text, on_call_number, front_desk_sees_clinical, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (practice_id) DO UPDATE SET sender_name = excluded.sender_name, \
             phone = excluded.phone, hours_text = excluded.hours_text, \
             expected_reply_text = excluded.expected_reply_text, \
             on_call_number = excluded.on_call_number, \
             front_desk_sees_clinical = excluded.front_desk_sees_clinical, \
             updated_at = excluded.updated_at",
        )
        .bind(practice.to_string())
        .bind(&settings.sender_name)
        .bind(&settings.phone)
        .bind(&settings.hours_text)
        .bind(&settings.expected_reply_text)
        .bind(settings.on_call_number.clone())
        .bind(i64::from(settings.front_desk_sees_clinical))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(practice_event(
            practice,
            principal,
            ctx,
            Action::MessagingSettingsChange,
            practice.to_string(),
        ));
        tx.commit().await
    }

    pub async fn catalog(&self, practice: PracticeId) -> Result<Vec<CatalogItem>> {
        let mut conn = self.pool.acquire().await?;
        self.catalog_in(&mut conn, practice).await
    }

    pub(crate) async fn catalog_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        practice: PracticeId,
    ) -> Result<Vec<CatalogItem>> {
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT id, kind, name, sms_safe, active FROM catalog_items WHERE practice_id = $1 \
             ORDER BY kind, name",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(id, kind, name, sms_safe, active)| {
                Ok(CatalogItem {
                    id: id.parse().map_err(|_| bad("catalog"))?,
                    kind: CatalogKind::parse(&kind).ok_or_else(|| bad("catalog"))?,
                    name,
                    sms_safe: sms_safe != 0,
                    active: active != 0,
                })
            })
            .collect()
    }

    /// Adds a catalog item, or updates the one with the same kind and name.
    #[allow(clippy::too_many_arguments)]
    pub async fn upsert_catalog_item(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        kind: CatalogKind,
        name: &str,
        sms_safe: bool,
        active: bool,
    ) -> Result<CatalogItemId> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "a catalog name has 1 to 200 characters".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM catalog_items WHERE practice_id = $1 AND kind = $2 AND name = $3",
        )
        .bind(practice.to_string())
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let id = match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE catalog_items SET sms_safe = $1, active = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(i64::from(sms_safe))
                .bind(i64::from(active))
                .bind(now)
                .bind(&id)
                .execute(&mut *tx.tx)
                .await?;
                id.parse().map_err(|_| bad("catalog"))?
            }
            None => {
                let id = CatalogItemId::new();
                sqlx::query(
                    "INSERT INTO catalog_items (id, practice_id, kind, name, sms_safe, active, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(id.to_string())
                .bind(practice.to_string())
                .bind(kind.as_str())
                .bind(name)
                .bind(i64::from(sms_safe))
                .bind(i64::from(active))
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
                id
            }
        };
        tx.audit(practice_event(
            practice,
            principal,
            ctx,
            Action::CatalogChange,
            id.to_string(),
        ));
        tx.commit().await?;
        Ok(id)
    }

    pub async fn reply_templates(&self, practice: PracticeId) -> Result<Vec<ReplyTemplate>> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, name, body, active FROM reply_templates WHERE practice_id = $1 ORDER BY name",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, body, active)| {
                Ok(ReplyTemplate {
                    id: id.parse().map_err(|_| bad("template"))?,
                    name,
                    body,
                    active: active != 0,
                })
            })
            .collect()
    }

    pub async fn reply_template(
        &self,
        practice: PracticeId,
        id: TemplateId,
    ) -> Result<ReplyTemplate> {
        self.reply_templates(practice)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or(StoreError::NotFound)
    }

    /// Saves a template (already parsed and checked by the caller); `id` updates an existing one.
    #[allow(clippy::too_many_arguments)]
    pub async fn save_reply_template(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: Option<TemplateId>,
        name: &str,
        body: &str,
        active: bool,
    ) -> Result<TemplateId> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "a template name has 1 to 100 characters".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let id = match id {
            Some(id) => {
                let changed = sqlx::query(
                    "UPDATE reply_templates SET name = $1, body = $2, active = $3, updated_at = $4 \
                     WHERE id = $5 AND practice_id = $6",
                )
                .bind(name)
                .bind(body)
                .bind(i64::from(active))
                .bind(now)
                .bind(id.to_string())
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await
                .map_err(|e| unique_name(e, "the practice already has a template with this name"))?
                .rows_affected();
                if changed == 0 {
                    return Err(StoreError::NotFound);
                }
                id
            }
            None => {
                let id = TemplateId::new();
                sqlx::query(
                    "INSERT INTO reply_templates (id, practice_id, name, body, active, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(id.to_string())
                .bind(practice.to_string())
                .bind(name)
                .bind(body)
                .bind(i64::from(active))
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(|e| unique_name(e, "the practice already has a template with this name"))?;
                id
            }
        };
        tx.audit(practice_event(
            practice,
            principal,
            ctx,
            Action::TemplateChange,
            id.to_string(),
        ));
        tx.commit().await?;
        Ok(id)
    }
}

fn unique_name(e: sqlx::Error, message: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message),
        _ => e.into(),
    }
}
