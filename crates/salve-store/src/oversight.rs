//! Break-glass grants (time-limited access to restricted patients, with a sealed reason) and the
//! practice's versioned messaging guidelines with staff acknowledgments.

use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::to_micros;
use salve_core::permissions::{
    BreakGlassCategory, Decision, Operation, PatientGuard, Principal, authorize,
};
use salve_core::{PatientId, PracticeId, Sensitive, UserId};
use salve_crypto::FieldAad;

use crate::{Result, Store, StoreError};

/// id, user, patient, category, sealed reason, granted at, expires at; the review: reviewer,
/// sealed note, reviewed at
type GrantRow = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    i64,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
);

/// The privacy officer's review of one break-glass access.
#[derive(Debug, Clone)]
pub struct BreakGlassReview {
    pub reviewed_by: UserId,
    pub note: Sensitive<String>,
    pub reviewed_at: i64,
}

/// The longest review note, in characters.
pub const MAX_REVIEW_NOTE_CHARS: usize = 1000;

/// One break-glass grant as the auditor's report shows it.
#[derive(Debug, Clone)]
pub struct BreakGlassGrant {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub patient_id: PatientId,
    pub category: String,
    pub reason: Sensitive<String>,
    pub granted_at: i64,
    pub expires_at: i64,
    /// `None` until the privacy officer reviews it.
    pub review: Option<BreakGlassReview>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guidelines {
    pub version: i64,
    pub body: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgment {
    pub user_id: UserId,
    pub version: i64,
    pub acknowledged_at: i64,
}

impl Store {
    /// Opens a restricted patient for a clinician, for the practice's break-glass period.
    /// Returns the grant's expiry (microseconds).
    pub async fn break_glass(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        patient: PatientId,
        category: BreakGlassCategory,
        reason: &Sensitive<String>,
    ) -> Result<i64> {
        let Principal::Staff {
            user,
            practice: own,
            ..
        } = principal
        else {
            return Err(StoreError::Forbidden);
        };
        if *own != practice {
            return Err(StoreError::NotFound);
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let restricted: Option<i64> =
            sqlx::query_scalar("SELECT restricted FROM patients WHERE id = $1 AND practice_id = $2 AND shredded_at IS NULL")
                .bind(patient.to_string())
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        let restricted = restricted.ok_or(StoreError::NotFound)? != 0;
        let guard = PatientGuard {
            restricted,
            named: false,
            break_glass: false,
            ..PatientGuard::default()
        };
        if authorize(principal, Operation::BreakGlass, Some(&guard)) != Decision::Allow {
            return Err(StoreError::Forbidden);
        }
        // The glass opens a restricted patient, or the patient's threads assigned to a team
        // this clinician is not in (and not assigned to them personally).
        let outside_team: Option<String> = sqlx::query_scalar(
            "SELECT c.id FROM conversations c WHERE c.patient_id = $1 AND c.practice_id = $2 \
             AND c.assigned_team IS NOT NULL \
             AND (c.assigned_user IS NULL OR c.assigned_user <> $3) \
             AND NOT EXISTS (SELECT 1 FROM team_members m WHERE m.team_id = c.assigned_team AND m.user_id = $3) \
             LIMIT 1",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .bind(user.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        if !restricted && outside_team.is_none() {
            return Err(StoreError::Invalid(
                "this patient is not restricted and has no conversation outside your teams; no break-glass is needed".into(),
            ));
        }
        let minutes: i64 =
            sqlx::query_scalar("SELECT break_glass_minutes FROM practices WHERE id = $1")
                .bind(practice.to_string())
                .fetch_one(&mut *tx.tx)
                .await?;
        let expires_at = now + minutes * 60 * 1_000_000;
        let id = uuid::Uuid::now_v7();
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        sqlx::query(
            "INSERT INTO break_glass_grants (id, practice_id, user_id, patient_id, category, reason, granted_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(user.to_string())
        .bind(patient.to_string())
        .bind(category.as_str())
        .bind(keys.practice.seal_str(FieldAad::new("break_glass_grants", "reason", &id.to_string()), reason.expose()))
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::PatientBreakGlass,
            targets: vec![patient.to_string(), id.to_string()],
            outcome: Outcome::Success,
            context: RequestContext {
                reason: Some(format!("{}: {}", category.as_str(), reason.expose())),
                ..ctx.clone()
            },
        });
        tx.commit().await?;
        Ok(expires_at)
    }

    /// Every break-glass grant of a practice, newest first, reasons (and review notes) opened
    /// for the auditor.
    pub async fn break_glass_report(&self, practice: PracticeId) -> Result<Vec<BreakGlassGrant>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<GrantRow> = sqlx::query_as(
            "SELECT g.id, g.user_id, g.patient_id, g.category, g.reason, g.granted_at, g.expires_at, \
             r.reviewed_by, r.note, r.reviewed_at FROM break_glass_grants g \
             LEFT JOIN break_glass_reviews r ON r.grant_id = g.id \
             WHERE g.practice_id = $1 ORDER BY g.granted_at DESC",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        rows.into_iter()
            .map(
                |(id, user, patient, category, reason, granted_at, expires_at, by, note, at)| {
                    let bad = || StoreError::KeyRing("malformed break-glass row".into());
                    let review = match (by, note, at) {
                        (Some(by), Some(note), Some(at)) => Some(BreakGlassReview {
                            reviewed_by: by.parse().map_err(|_| bad())?,
                            note: Sensitive::new(keys.practice.open_string(
                                FieldAad::new("break_glass_reviews", "note", &id),
                                &note,
                            )?),
                            reviewed_at: at,
                        }),
                        _ => None,
                    };
                    Ok(BreakGlassGrant {
                        id: id.parse().map_err(|_| bad())?,
                        user_id: user.parse().map_err(|_| bad())?,
                        patient_id: patient.parse().map_err(|_| bad())?,
                        category,
                        reason: Sensitive::new(keys.practice.open_string(
                            FieldAad::new("break_glass_grants", "reason", &id),
                            &reason,
                        )?),
                        granted_at,
                        expires_at,
                        review,
                    })
                },
            )
            .collect()
    }

    /// The privacy officer marks a break-glass access reviewed, with a note (sealed: it may
    /// describe the patient). Once per access; audited in the same transaction.
    pub async fn review_break_glass(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        grant: uuid::Uuid,
        note: &Sensitive<String>,
    ) -> Result<()> {
        let Principal::Staff {
            user,
            practice: own,
            ..
        } = principal
        else {
            return Err(StoreError::Forbidden);
        };
        if *own != practice {
            return Err(StoreError::NotFound);
        }
        if authorize(principal, Operation::BreakGlassReview, None) != Decision::Allow {
            return Err(StoreError::Forbidden);
        }
        let text = note.expose().trim();
        if text.is_empty() || text.chars().count() > MAX_REVIEW_NOTE_CHARS {
            return Err(StoreError::Invalid(format!(
                "`note` must have 1 to {MAX_REVIEW_NOTE_CHARS} characters"
            )));
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let row = grant.to_string();
        let patient: Option<String> = sqlx::query_scalar(
            "SELECT patient_id FROM break_glass_grants WHERE id = $1 AND practice_id = $2",
        )
        .bind(&row)
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let patient = patient.ok_or(StoreError::NotFound)?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let inserted = sqlx::query(
            "INSERT INTO break_glass_reviews (grant_id, practice_id, reviewed_by, note, reviewed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (grant_id) DO NOTHING",
        )
        .bind(&row)
        .bind(practice.to_string())
        .bind(user.to_string())
        .bind(
            keys.practice
                .seal_str(FieldAad::new("break_glass_reviews", "note", &row), text),
        )
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "this break-glass access was already reviewed",
            ));
        }
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: principal.actor(),
            action: Action::BreakGlassReview,
            targets: vec![patient, row],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Publishes a new version of the practice's messaging guidelines.
    pub async fn publish_guidelines(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        body: &str,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM guidelines WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_one(&mut *tx.tx)
                .await?;
        let version = current.unwrap_or(0) + 1;
        let actor = principal.actor();
        sqlx::query("INSERT INTO guidelines (practice_id, version, body, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(practice.to_string())
            .bind(version)
            .bind(body)
            .bind(format!("{}:{}", actor.kind(), actor.id()))
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::GuidelinesPublish,
            targets: vec![format!("guidelines/{version}")],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        Ok(version)
    }

    pub async fn current_guidelines(&self, practice: PracticeId) -> Result<Option<Guidelines>> {
        let row: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT version, body, created_at FROM guidelines WHERE practice_id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(practice.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(version, body, created_at)| Guidelines {
            version,
            body,
            created_at,
        }))
    }

    /// Whether the user still has to acknowledge the current guidelines (false when none exist).
    pub async fn guidelines_pending(&self, practice: PracticeId, user: UserId) -> Result<bool> {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM guidelines g WHERE g.practice_id = $1 \
             AND g.version = (SELECT MAX(version) FROM guidelines WHERE practice_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM guideline_acknowledgments a WHERE a.practice_id = g.practice_id \
                 AND a.user_id = $2 AND a.version = g.version)",
        )
        .bind(practice.to_string())
        .bind(user.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(pending > 0)
    }

    /// Records that the user read `version` (which must be the current one).
    pub async fn acknowledge_guidelines(
        &self,
        practice: PracticeId,
        user: UserId,
        ctx: &RequestContext,
        version: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM guidelines WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_one(&mut *tx.tx)
                .await?;
        if current != Some(version) {
            return Err(StoreError::Invalid(
                "acknowledge the current version of the guidelines".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO guideline_acknowledgments (practice_id, user_id, version, acknowledged_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(practice.to_string())
        .bind(user.to_string())
        .bind(version)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor: salve_core::audit::Actor::User(user),
            action: Action::GuidelinesAcknowledge,
            targets: vec![format!("guidelines/{version}")],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Who acknowledged which version, for admins.
    pub async fn guideline_acknowledgments(
        &self,
        practice: PracticeId,
    ) -> Result<Vec<Acknowledgment>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT user_id, version, acknowledged_at FROM guideline_acknowledgments WHERE practice_id = $1 \
             ORDER BY version DESC, acknowledged_at",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(user, version, at)| {
                Ok(Acknowledgment {
                    user_id: user
                        .parse()
                        .map_err(|_| StoreError::KeyRing("malformed acknowledgment".into()))?,
                    version,
                    acknowledged_at: at,
                })
            })
            .collect()
    }

    /// Whether this user holds an unexpired break-glass grant for the patient.
    pub(crate) async fn has_break_glass(
        &self,
        conn: &mut sqlx::AnyConnection,
        patient: PatientId,
        user: UserId,
    ) -> Result<bool> {
        let now = to_micros(self.clock.now());
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM break_glass_grants WHERE patient_id = $1 AND user_id = $2 AND expires_at > $3",
        )
        .bind(patient.to_string())
        .bind(user.to_string())
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    }
}
