//! Staff accounts, memberships, MFA secrets, recovery codes, sessions and sign-in throttling.
//! Email addresses and names are sealed under the system key; the email is found by a keyed
//! hash. Session tokens and recovery codes are stored only as hashes.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::Role;
use salve_core::staff_access::{self, DisableRefusal};
use salve_core::{PracticeId, Sensitive, SessionId, UserId};
use salve_crypto::FieldAad;
use sqlx::AnyConnection;

use crate::{Result, Store, StoreError};

/// What sign-in needs to know about an account.
#[derive(Debug, Clone)]
pub struct UserAuth {
    pub id: UserId,
    pub password_hash: Option<String>,
    pub mfa_enrolled: bool,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub practice_id: PracticeId,
    pub role: Role,
    pub privacy_officer: bool,
}

#[derive(Debug, Clone)]
pub struct UserProfile {
    pub id: UserId,
    pub email: Sensitive<String>,
    pub display_name: Sensitive<String>,
    pub disabled: bool,
    pub mfa_enrolled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// Password accepted; waiting for the second factor.
    Mfa,
    /// Password accepted; the account has no second factor yet and must enrol one.
    Enroll,
    Active,
}

impl SessionStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mfa => "mfa",
            Self::Enroll => "enroll",
            Self::Active => "active",
        }
    }
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "mfa" => Some(Self::Mfa),
            "enroll" => Some(Self::Enroll),
            "active" => Some(Self::Active),
            _ => None,
        }
    }
}

/// A live session as found by its token.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub practice_id: PracticeId,
    pub stage: SessionStage,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_timeout_secs: i64,
    pub expires_at: i64,
}

impl Session {
    /// When the session ends unless the user does something (microseconds).
    pub fn idle_deadline(&self) -> i64 {
        (self.last_active_at + self.idle_timeout_secs * 1_000_000).min(self.expires_at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    SignOut,
    SignOutEverywhere,
    Idle,
    Absolute,
    PasswordChanged,
    MfaReset,
    RoleChanged,
    Disabled,
    /// An admin ended it from the sessions list.
    EndedByAdmin,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignOut => "sign_out",
            Self::SignOutEverywhere => "sign_out_everywhere",
            Self::Idle => "idle",
            Self::Absolute => "absolute",
            Self::PasswordChanged => "password_changed",
            Self::MfaReset => "mfa_reset",
            Self::RoleChanged => "role_changed",
            Self::Disabled => "disabled",
            Self::EndedByAdmin => "ended_by_admin",
        }
    }
}

/// A live session as an admin (or its owner) sees it: no token, no address.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: SessionId,
    pub stage: SessionStage,
    pub created_at: i64,
    pub last_active_at: i64,
    pub expires_at: i64,
    /// "Firefox on Linux"; `None` for sessions from before this was recorded.
    pub client: Option<String>,
}

/// The state of one throttle key after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i64,
    pub locked_until: i64,
}

/// id, password hash, TOTP secret, disabled at
type SignInRow = (String, Option<String>, Option<Vec<u8>>, Option<i64>);
/// email, display name, disabled at, TOTP secret
type ProfileRow = (Vec<u8>, Vec<u8>, Option<i64>, Option<Vec<u8>>);
/// id, stage, created, last active, idle secs, expires, client
type SummaryRow = (String, String, i64, i64, i64, i64, Option<String>);
/// id, token hash, user, practice, stage, created, last active, idle secs, expires
type SessionRow = (String, Vec<u8>, String, String, String, i64, i64, i64, i64);

fn email_lookup(email: &str) -> String {
    email.trim().to_lowercase()
}

fn parse_user(text: &str) -> Result<UserId> {
    text.parse()
        .map_err(|_| StoreError::KeyRing("malformed user id".into()))
}

fn event(
    scope: ChainScope,
    actor: Actor,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        scope,
        actor,
        action,
        targets,
        outcome,
        context: ctx.clone(),
    }
}

impl Store {
    async fn email_index(&self, conn: &mut AnyConnection, email: &str) -> Result<Vec<u8>> {
        let keys = self.ring.system_data_keys(conn).await?;
        Ok(keys
            .blind_index
            .blind_index("staff-email", &email_lookup(email))
            .to_vec())
    }

    /// Creates a staff account with a membership in one practice.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_user(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        email: &Sensitive<String>,
        display_name: &Sensitive<String>,
        password_hash: Option<String>,
        role: Role,
        privacy_officer: bool,
    ) -> Result<UserId> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let id = UserId::new();
        let row = id.to_string();
        let keys = self.ring.system_data_keys(&mut tx.tx).await?;
        let index = self.email_index(&mut tx.tx, email.expose()).await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM practices WHERE id = $1")
            .bind(practice.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let inserted = sqlx::query(
            "INSERT INTO users (id, email_index, email, display_name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&row)
        .bind(index)
        .bind(keys.sealing.seal_str(FieldAad::new("users", "email", &row), email.expose()))
        .bind(keys.sealing.seal_str(FieldAad::new("users", "display_name", &row), display_name.expose()))
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "an account with this email already exists",
            ));
        }
        sqlx::query(
            "INSERT INTO memberships (user_id, practice_id, role, privacy_officer, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row)
        .bind(practice.to_string())
        .bind(role.as_str())
        .bind(i64::from(privacy_officer))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::UserCreate,
            vec![row.clone()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await?;
        Ok(id)
    }

    /// The account for an email address, if any.
    pub async fn user_for_sign_in(&self, email: &str) -> Result<Option<UserAuth>> {
        let mut conn = self.pool.acquire().await?;
        let index = self.email_index(&mut conn, email).await?;
        let row: Option<SignInRow> = sqlx::query_as(
            "SELECT id, password_hash, totp_secret, disabled_at FROM users WHERE email_index = $1",
        )
        .bind(index)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|(id, password_hash, totp, disabled)| {
            Ok(UserAuth {
                id: parse_user(&id)?,
                password_hash,
                mfa_enrolled: totp.is_some(),
                disabled: disabled.is_some(),
            })
        })
        .transpose()
    }

    /// A keyed hash of an email address for throttling, the same for known and unknown accounts.
    pub async fn sign_in_key(&self, email: &str) -> Result<Vec<u8>> {
        let mut conn = self.pool.acquire().await?;
        self.email_index(&mut conn, email).await
    }

    /// The practices the user may sign in to: memberships an admin has not disabled.
    pub async fn memberships(&self, user: UserId) -> Result<Vec<Membership>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT practice_id, role, privacy_officer FROM memberships \
             WHERE user_id = $1 AND disabled_at IS NULL ORDER BY practice_id",
        )
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(p, r, o)| {
                let bad = || StoreError::KeyRing("malformed membership".into());
                Ok(Membership {
                    practice_id: p.parse().map_err(|_| bad())?,
                    role: Role::parse(&r).ok_or_else(bad)?,
                    privacy_officer: o != 0,
                })
            })
            .collect()
    }

    /// The user's role in a practice, if they are an enabled member.
    pub async fn role_in(&self, user: UserId, practice: PracticeId) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.user_id = $1 AND m.practice_id = $2 AND u.disabled_at IS NULL AND m.disabled_at IS NULL",
        )
        .bind(user.to_string())
        .bind(practice.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(role.and_then(|r| Role::parse(&r)))
    }

    pub async fn user_profile(&self, user: UserId) -> Result<UserProfile> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<ProfileRow> = sqlx::query_as(
            "SELECT email, display_name, disabled_at, totp_secret FROM users WHERE id = $1",
        )
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (email, name, disabled, totp) = row.ok_or(StoreError::NotFound)?;
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let row = user.to_string();
        Ok(UserProfile {
            id: user,
            email: Sensitive::new(
                keys.sealing
                    .open_string(FieldAad::new("users", "email", &row), &email)?,
            ),
            display_name: Sensitive::new(
                keys.sealing
                    .open_string(FieldAad::new("users", "display_name", &row), &name)?,
            ),
            disabled: disabled.is_some(),
            mfa_enrolled: totp.is_some(),
        })
    }

    /// Changes a member's role and ends their sessions in that practice.
    pub async fn set_role(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
        role: Role,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let changed =
            sqlx::query("UPDATE memberships SET role = $1 WHERE user_id = $2 AND practice_id = $3")
                .bind(role.as_str())
                .bind(user.to_string())
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        end_sessions(
            &mut tx.tx,
            user,
            Some(practice),
            SessionEnd::RoleChanged,
            now,
        )
        .await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::MembershipChange,
            vec![user.to_string()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// Disables an account everywhere and ends all its sessions.
    pub async fn disable_user(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        user: UserId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let changed = sqlx::query("UPDATE users SET disabled_at = $1, updated_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        end_sessions(&mut tx.tx, user, None, SessionEnd::Disabled, now).await?;
        for scope in membership_scopes(&mut tx.tx, user).await? {
            tx.audit(event(
                scope,
                actor.clone(),
                Action::UserDisable,
                vec![user.to_string()],
                Outcome::Success,
                ctx,
            ));
        }
        tx.commit().await
    }

    /// Removes the second factor (lost phone): the next sign-in must enrol again.
    pub async fn reset_mfa(&self, actor: &Actor, ctx: &RequestContext, user: UserId) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let changed = sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        // Passkeys are second factors too: a reset removes them.
        sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?;
        end_sessions(&mut tx.tx, user, None, SessionEnd::MfaReset, now).await?;
        for scope in membership_scopes(&mut tx.tx, user).await? {
            tx.audit(event(
                scope,
                actor.clone(),
                Action::MfaReset,
                vec![user.to_string()],
                Outcome::Success,
                ctx,
            ));
        }
        tx.commit().await
    }

    /// Stores a TOTP secret awaiting confirmation by a first code.
    pub async fn set_pending_totp(&self, user: UserId, secret: &[u8]) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let row = user.to_string();
        sqlx::query("UPDATE users SET totp_pending = $1 WHERE id = $2")
            .bind(
                keys.sealing
                    .seal(FieldAad::new("users", "totp_pending", &row), secret),
            )
            .bind(&row)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The confirmed secret (`pending = false`) or the one awaiting confirmation, with the last
    /// accepted time step.
    pub async fn totp_secret(
        &self,
        user: UserId,
        pending: bool,
    ) -> Result<Option<(zeroize::Zeroizing<Vec<u8>>, Option<i64>)>> {
        let mut conn = self.pool.acquire().await?;
        let column = if pending {
            "totp_pending"
        } else {
            "totp_secret"
        };
        let row: Option<(Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {column}, totp_last_step FROM users WHERE id = $1"),
        ))
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((Some(sealed), last)) = row else {
            return Ok(None);
        };
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let secret = keys
            .sealing
            .open(FieldAad::new("users", column, &user.to_string()), &sealed)?;
        Ok(Some((secret, last)))
    }

    /// Records a TOTP time step as used. Fails (returns false) when this or a later step was
    /// already used, so a code is accepted once only, even by two instances at the same moment.
    pub async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Turns the pending secret into the account's second factor and replaces its recovery codes.
    pub async fn confirm_totp(
        &self,
        ctx: &RequestContext,
        user: UserId,
        practice: PracticeId,
        step: i64,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let keys = self.ring.system_data_keys(&mut tx.tx).await?;
        let row = user.to_string();
        let pending: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = $1")
                .bind(&row)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let pending = pending
            .flatten()
            .ok_or(StoreError::Invalid("no enrolment is in progress".into()))?;
        let secret = keys
            .sealing
            .open(FieldAad::new("users", "totp_pending", &row), &pending)?;
        sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_pending = NULL, totp_last_step = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(keys.sealing.seal(FieldAad::new("users", "totp_secret", &row), &secret))
        .bind(step)
        .bind(now)
        .bind(&row)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(&row)
            .execute(&mut *tx.tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(&row)
                .bind(hash.to_vec())
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.audit(event(
            ChainScope::Practice(practice),
            Actor::User(user),
            Action::MfaEnroll,
            vec![row.clone()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// Spends an unused recovery code; false when none of the stored hashes matches.
    pub async fn use_recovery_code(&self, user: UserId, hash: &[u8; 32]) -> Result<bool> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let changed = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user.to_string())
        .bind(hash.to_vec())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Starts a session at `stage`, lasting until `expires_at` (microseconds).
    pub async fn create_session(
        &self,
        user: UserId,
        practice: PracticeId,
        stage: SessionStage,
        token_hash: &[u8; 32],
        idle_secs: i64,
        expires_at: i64,
    ) -> Result<SessionId> {
        let id = SessionId::new();
        let now = salve_core::clock::to_micros(self.clock.now());
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, practice_id, stage, created_at, last_active_at, idle_timeout_secs, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(token_hash.to_vec())
        .bind(user.to_string())
        .bind(practice.to_string())
        .bind(stage.as_str())
        .bind(now)
        .bind(idle_secs)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The unended session with this token hash (expiry is the caller's rule to apply).
    pub async fn session_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT id, token_hash, user_id, practice_id, stage, created_at, last_active_at, idle_timeout_secs, expires_at \
             FROM sessions WHERE token_hash = $1 AND ended_at IS NULL",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some((
            id,
            stored,
            user,
            practice,
            stage,
            created_at,
            last_active_at,
            idle_timeout_secs,
            expires_at,
        )) = row
        else {
            return Ok(None);
        };
        if !salve_crypto::ct_eq(&stored, token_hash) {
            return Ok(None);
        }
        let bad = || StoreError::KeyRing("malformed session".into());
        Ok(Some(Session {
            id: id.parse().map_err(|_| bad())?,
            user_id: parse_user(&user)?,
            practice_id: practice.parse().map_err(|_| bad())?,
            stage: SessionStage::parse(&stage).ok_or_else(bad)?,
            created_at,
            last_active_at,
            idle_timeout_secs,
            expires_at,
        }))
    }

    /// Counts a user-initiated request as activity.
    pub async fn touch_session(&self, id: SessionId, at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_active_at = $1 WHERE id = $2 AND ended_at IS NULL AND last_active_at < $1")
            .bind(at)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a session to its next stage under a new token (no fixation across sign-in steps).
    pub async fn advance_session(
        &self,
        id: SessionId,
        stage: SessionStage,
        new_token_hash: &[u8; 32],
        expires_at: i64,
    ) -> Result<()> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let changed = sqlx::query(
            "UPDATE sessions SET stage = $1, token_hash = $2, expires_at = $3, last_active_at = $4 WHERE id = $5 AND ended_at IS NULL",
        )
        .bind(stage.as_str())
        .bind(new_token_hash.to_vec())
        .bind(expires_at)
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn set_session_idle(&self, id: SessionId, idle_secs: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET idle_timeout_secs = $1 WHERE id = $2")
            .bind(idle_secs)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The practice's members with their roles. A member disabled in this practice (or whose
    /// account is disabled everywhere) has `disabled` set on the profile.
    pub async fn list_members(
        &self,
        practice: PracticeId,
    ) -> Result<Vec<(UserProfile, Membership)>> {
        let rows: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, role, privacy_officer, disabled_at FROM memberships \
             WHERE practice_id = $1 ORDER BY user_id",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (user, role, officer, disabled_here) in rows {
            let user = parse_user(&user)?;
            let mut profile = self.user_profile(user).await?;
            profile.disabled |= disabled_here.is_some();
            let role = Role::parse(&role)
                .ok_or_else(|| StoreError::KeyRing("malformed membership".into()))?;
            out.push((
                profile,
                Membership {
                    practice_id: practice,
                    role,
                    privacy_officer: officer != 0,
                },
            ));
        }
        Ok(out)
    }

    /// Ends one session, audited on the practice's chain.
    pub async fn end_session(
        &self,
        session: &Session,
        reason: SessionEnd,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(session.id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            ChainScope::Practice(session.practice_id),
            Actor::User(session.user_id),
            Action::SessionEnd,
            vec![session.id.to_string()],
            Outcome::Success,
            &RequestContext {
                reason: Some(reason.as_str().to_owned()),
                ..ctx.clone()
            },
        ));
        tx.commit().await
    }

    /// Ends every session of a user ("sign out everywhere").
    pub async fn end_all_sessions(
        &self,
        user: UserId,
        practice: PracticeId,
        ctx: &RequestContext,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let n = end_sessions(&mut tx.tx, user, None, SessionEnd::SignOutEverywhere, now).await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            Actor::User(user),
            Action::SessionsRevoked,
            vec![user.to_string()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await?;
        Ok(n)
    }

    /// Disables a member in this practice only: their other practices are untouched. Their
    /// sessions in this practice end. Refused (and audited as denied) for the caller themselves
    /// and for the last enabled admin; the count is taken with the practice row locked, so two
    /// admins disabling each other at once cannot leave none.
    pub async fn disable_member(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
    ) -> Result<std::result::Result<(), DisableRefusal>> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query("UPDATE practices SET id = id WHERE id = $1")
            .bind(practice.to_string())
            .execute(&mut *tx.tx)
            .await?;
        let row: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT role, disabled_at FROM memberships WHERE user_id = $1 AND practice_id = $2",
        )
        .bind(user.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some((role, disabled_at)) = row else {
            return Err(StoreError::NotFound);
        };
        if disabled_at.is_some() {
            // Already disabled: nothing changes, nothing to record.
            return Ok(Ok(()));
        }
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.practice_id = $1 AND m.role = 'admin' AND m.disabled_at IS NULL AND u.disabled_at IS NULL",
        )
        .bind(practice.to_string())
        .fetch_one(&mut *tx.tx)
        .await?;
        let caller = match actor {
            Actor::User(u) => Some(*u),
            _ => None,
        };
        let verdict = staff_access::may_disable(
            caller,
            user,
            role == Role::Admin.as_str(),
            usize::try_from(admins).unwrap_or(0),
        );
        if let Err(refusal) = verdict {
            tx.audit(event(
                ChainScope::Practice(practice),
                actor.clone(),
                Action::UserDisable,
                vec![user.to_string()],
                Outcome::Denied,
                &RequestContext {
                    reason: Some(format!("{refusal:?}").to_lowercase()),
                    ..ctx.clone()
                },
            ));
            tx.commit().await?;
            return Ok(Err(refusal));
        }
        sqlx::query(
            "UPDATE memberships SET disabled_at = $1 WHERE user_id = $2 AND practice_id = $3",
        )
        .bind(now)
        .bind(user.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        end_sessions(&mut tx.tx, user, Some(practice), SessionEnd::Disabled, now).await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::UserDisable,
            vec![user.to_string()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Enables a member disabled in this practice (an account disabled everywhere stays so).
    pub async fn enable_member(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let exists: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT disabled_at FROM memberships WHERE user_id = $1 AND practice_id = $2",
        )
        .bind(user.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        match exists {
            None => return Err(StoreError::NotFound),
            Some(None) => return Ok(()),
            Some(Some(_)) => {}
        }
        sqlx::query(
            "UPDATE memberships SET disabled_at = NULL WHERE user_id = $1 AND practice_id = $2",
        )
        .bind(user.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::UserEnable,
            vec![user.to_string()],
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// Notes the coarse client description of a session (see `salve_core::client_family`).
    pub async fn set_session_client(&self, id: SessionId, client: &str) -> Result<()> {
        sqlx::query("UPDATE sessions SET client = $1 WHERE id = $2")
            .bind(client)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A member's live (unended, unexpired) sessions in this practice, newest first.
    pub async fn live_sessions(
        &self,
        practice: PracticeId,
        user: UserId,
    ) -> Result<Vec<SessionSummary>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT id, stage, created_at, last_active_at, idle_timeout_secs, expires_at, client FROM sessions \
             WHERE user_id = $1 AND practice_id = $2 AND ended_at IS NULL AND expires_at > $3 \
             ORDER BY created_at DESC, id",
        )
        .bind(user.to_string())
        .bind(practice.to_string())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let bad = || StoreError::KeyRing("malformed session".into());
        let mut out = Vec::new();
        for (id, stage, created_at, last_active_at, idle, expires_at, client) in rows {
            // Idle past its timeout: already over for the server, so not listed.
            if last_active_at + idle * 1_000_000 <= now {
                continue;
            }
            out.push(SessionSummary {
                id: id.parse().map_err(|_| bad())?,
                stage: SessionStage::parse(&stage).ok_or_else(bad)?,
                created_at,
                last_active_at,
                expires_at,
                client,
            });
        }
        Ok(out)
    }

    /// Ends one of a member's sessions in this practice (an admin's act, or the member's own).
    pub async fn end_member_session(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
        session: SessionId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let reason = if *actor == Actor::User(user) {
            SessionEnd::SignOut
        } else {
            SessionEnd::EndedByAdmin
        };
        let ended = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 \
             WHERE id = $3 AND user_id = $4 AND practice_id = $5 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(session.to_string())
        .bind(user.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if ended == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::SessionEnd,
            vec![session.to_string(), user.to_string()],
            Outcome::Success,
            &RequestContext {
                reason: Some(reason.as_str().to_owned()),
                ..ctx.clone()
            },
        ));
        tx.commit().await
    }

    /// An admin ends every session a member has in this practice.
    pub async fn end_member_sessions(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let n = end_sessions(
            &mut tx.tx,
            user,
            Some(practice),
            SessionEnd::EndedByAdmin,
            now,
        )
        .await?;
        tx.audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::SessionsRevoked,
            vec![user.to_string()],
            Outcome::Success,
            &RequestContext {
                reason: Some(SessionEnd::EndedByAdmin.as_str().to_owned()),
                ..ctx.clone()
            },
        ));
        tx.commit().await?;
        Ok(n)
    }

    /// Records that an admin looked at a member's sessions.
    pub async fn record_session_list(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        user: UserId,
    ) -> Result<()> {
        self.record_audit(event(
            ChainScope::Practice(practice),
            actor.clone(),
            Action::SessionList,
            vec![user.to_string()],
            Outcome::Success,
            ctx,
        ))
        .await
    }

    // ---- throttling ------------------------------------------------------------------------

    /// The latest lock among these keys (microseconds), 0 when none is locked.
    pub async fn throttle_locked_until(&self, keys: &[Vec<u8>]) -> Result<i64> {
        let mut latest = 0;
        for key in keys {
            let until: Option<i64> = sqlx::query_scalar(
                "SELECT locked_until FROM auth_throttle WHERE throttle_key = $1",
            )
            .bind(key.clone())
            .fetch_optional(&self.pool)
            .await?;
            latest = latest.max(until.unwrap_or(0));
        }
        Ok(latest)
    }

    /// Counts a failure against each key; `delay` maps the failure count to a lock length
    /// (microseconds). Returns each key's new state.
    pub async fn throttle_failure(
        &self,
        keys: &[Vec<u8>],
        at: i64,
        delay: impl Fn(i64) -> i64,
    ) -> Result<Vec<ThrottleState>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let previous: Option<(i64, i64)> = sqlx::query_as(
                "SELECT failures, last_failure_at FROM auth_throttle WHERE throttle_key = $1",
            )
            .bind(key.clone())
            .fetch_optional(&mut *tx.tx)
            .await?;
            let failures = previous.map_or(0, |(n, last)| {
                salve_core::throttle::carried_failures(n, last, at)
            }) + 1;
            let locked_until = at + delay(failures);
            sqlx::query(
                "INSERT INTO auth_throttle (throttle_key, failures, last_failure_at, locked_until) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (throttle_key) DO UPDATE SET failures = $2, last_failure_at = $3, locked_until = $4",
            )
            .bind(key.clone())
            .bind(failures)
            .bind(at)
            .bind(locked_until)
            .execute(&mut *tx.tx)
            .await?;
            out.push(ThrottleState {
                failures,
                locked_until,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn throttle_reset(&self, key: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM auth_throttle WHERE throttle_key = $1")
            .bind(key.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a sign-in outcome on the practice's chain (or the system's, for unknown accounts).
    pub async fn record_sign_in(
        &self,
        practice: Option<PracticeId>,
        user: Option<UserId>,
        action: Action,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> Result<()> {
        let scope = practice.map_or(ChainScope::System, ChainScope::Practice);
        let actor = user.map_or(Actor::Anonymous, Actor::User);
        let targets = user.map(|u| vec![u.to_string()]).unwrap_or_default();
        self.record_audit(event(scope, actor, action, targets, outcome, ctx))
            .await
    }

    /// The enabled admins of a practice.
    pub async fn practice_admins(&self, practice: PracticeId) -> Result<Vec<UserId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.practice_id = $1 AND m.role = 'admin' AND u.disabled_at IS NULL AND m.disabled_at IS NULL \
             ORDER BY m.user_id",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| parse_user(r)).collect()
    }

    /// The privacy officers of a practice (the admins when none is flagged).
    pub async fn privacy_officers(&self, practice: PracticeId) -> Result<Vec<UserId>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT m.user_id, m.role, m.privacy_officer FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.practice_id = $1 AND u.disabled_at IS NULL AND m.disabled_at IS NULL ORDER BY m.user_id",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        let officers: Vec<&(String, String, i64)> = rows.iter().filter(|r| r.2 != 0).collect();
        let chosen: Vec<&(String, String, i64)> = if officers.is_empty() {
            rows.iter().filter(|r| r.1 == "admin").collect()
        } else {
            officers
        };
        chosen.into_iter().map(|r| parse_user(&r.0)).collect()
    }
}

async fn end_sessions(
    conn: &mut AnyConnection,
    user: UserId,
    practice: Option<PracticeId>,
    reason: SessionEnd,
    now: i64,
) -> Result<u64> {
    let result = match practice {
        Some(p) => sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE user_id = $3 AND practice_id = $4 AND ended_at IS NULL")
            .bind(now)
            .bind(reason.as_str())
            .bind(user.to_string())
            .bind(p.to_string())
            .execute(&mut *conn)
            .await?,
        None => sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE user_id = $3 AND ended_at IS NULL")
            .bind(now)
            .bind(reason.as_str())
            .bind(user.to_string())
            .execute(&mut *conn)
            .await?,
    };
    Ok(result.rows_affected())
}

async fn membership_scopes(conn: &mut AnyConnection, user: UserId) -> Result<Vec<ChainScope>> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT practice_id FROM memberships WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_all(&mut *conn)
            .await?;
    let mut scopes: Vec<ChainScope> = rows
        .iter()
        .filter_map(|p| p.parse().ok().map(ChainScope::Practice))
        .collect();
    if scopes.is_empty() {
        scopes.push(ChainScope::System);
    }
    Ok(scopes)
}

/// id, user, practice, purpose, token hash
type AccountTokenRow = (String, String, Option<String>, String, Vec<u8>);

/// Why an account token exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTokenPurpose {
    Invite,
    Reset,
}

impl AccountTokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

/// A usable invitation or reset token.
#[derive(Debug, Clone)]
pub struct AccountToken {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub practice_id: Option<PracticeId>,
    pub purpose: AccountTokenPurpose,
}

impl Store {
    /// Invites a person to a practice. A new account gets no password and an invitation token
    /// (returns `true`); an existing account just gains the membership (returns `false`).
    #[allow(clippy::too_many_arguments)]
    pub async fn invite_user(
        &self,
        actor: &Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        email: &Sensitive<String>,
        display_name: &Sensitive<String>,
        role: Role,
        token_hash: &[u8; 32],
        ttl_secs: i64,
    ) -> Result<(UserId, bool)> {
        if let Some(existing) = self.user_for_sign_in(email.expose()).await? {
            let mut tx = self.begin().await?;
            let now = tx.now_micros();
            let added = sqlx::query(
                "INSERT INTO memberships (user_id, practice_id, role, privacy_officer, created_at) VALUES ($1, $2, $3, 0, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(existing.id.to_string())
            .bind(practice.to_string())
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
            if added == 0 {
                return Err(StoreError::Conflict(
                    "this person is already a member of the practice",
                ));
            }
            tx.audit(event(
                ChainScope::Practice(practice),
                actor.clone(),
                Action::MembershipChange,
                vec![existing.id.to_string()],
                Outcome::Success,
                ctx,
            ));
            tx.commit().await?;
            return Ok((existing.id, false));
        }
        let user = self
            .create_user(actor, ctx, practice, email, display_name, None, role, false)
            .await?;
        self.create_account_token(
            user,
            Some(practice),
            AccountTokenPurpose::Invite,
            token_hash,
            ttl_secs,
            actor,
            ctx,
        )
        .await?;
        Ok((user, true))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_account_token(
        &self,
        user: UserId,
        practice: Option<PracticeId>,
        purpose: AccountTokenPurpose,
        token_hash: &[u8; 32],
        ttl_secs: i64,
        actor: &Actor,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        // A new token replaces any unused one of the same purpose.
        sqlx::query("UPDATE account_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL")
            .bind(now)
            .bind(user.to_string())
            .bind(purpose.as_str())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO account_tokens (id, token_hash, user_id, practice_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(token_hash.to_vec())
        .bind(user.to_string())
        .bind(practice.map(|p| p.to_string()))
        .bind(purpose.as_str())
        .bind(now)
        .bind(now + ttl_secs * 1_000_000)
        .execute(&mut *tx.tx)
        .await?;
        let action = match purpose {
            AccountTokenPurpose::Invite => Action::UserInvite,
            AccountTokenPurpose::Reset => Action::PasswordResetRequest,
        };
        let scopes = match practice {
            Some(p) => vec![ChainScope::Practice(p)],
            None => membership_scopes(&mut tx.tx, user).await?,
        };
        for scope in scopes {
            tx.audit(event(
                scope,
                actor.clone(),
                action,
                vec![user.to_string()],
                Outcome::Success,
                ctx,
            ));
        }
        tx.commit().await
    }

    /// The unused, unexpired token with this hash.
    pub async fn account_token(&self, token_hash: &[u8; 32]) -> Result<Option<AccountToken>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let row: Option<AccountTokenRow> = sqlx::query_as(
            "SELECT id, user_id, practice_id, purpose, token_hash FROM account_tokens \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, user, practice, purpose, stored)) = row else {
            return Ok(None);
        };
        if !salve_crypto::ct_eq(&stored, token_hash) {
            return Ok(None);
        }
        let bad = || StoreError::KeyRing("malformed account token".into());
        Ok(Some(AccountToken {
            id: id.parse().map_err(|_| bad())?,
            user_id: parse_user(&user)?,
            practice_id: practice.map(|p| p.parse().map_err(|_| bad())).transpose()?,
            purpose: match purpose.as_str() {
                "invite" => AccountTokenPurpose::Invite,
                "reset" => AccountTokenPurpose::Reset,
                _ => return Err(bad()),
            },
        }))
    }

    /// Sets a new password with a token, spending the token and ending every session.
    pub async fn set_password_with_token(
        &self,
        token: &AccountToken,
        password_hash: String,
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let spent =
            sqlx::query("UPDATE account_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(now)
                .bind(token.id.to_string())
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
        if spent == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now)
            .bind(token.user_id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        end_sessions(
            &mut tx.tx,
            token.user_id,
            None,
            SessionEnd::PasswordChanged,
            now,
        )
        .await?;
        for scope in membership_scopes(&mut tx.tx, token.user_id).await? {
            tx.audit(event(
                scope,
                Actor::User(token.user_id),
                Action::PasswordSet,
                vec![token.user_id.to_string()],
                Outcome::Success,
                ctx,
            ));
        }
        tx.commit().await
    }
}
