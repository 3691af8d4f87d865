//! Staff passkeys (WebAuthn credentials) and the state of WebAuthn ceremonies in progress.
//! Both are sealed under the system key. A ceremony is stored so that any instance behind a
//! load balancer can finish it; taking it deletes it (single use), and an expired one is
//! refused.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::{PracticeId, SessionId, UserId};
use salve_crypto::FieldAad;

use crate::{Result, Store, StoreError};

/// What a ceremony is for; a state started for one purpose cannot finish another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// Adding a passkey to a signed-in account.
    Register,
    /// A passkey as the second factor of a password sign-in.
    Mfa,
    /// A passkey instead of password and second factor.
    SignIn,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Mfa => "mfa",
            Self::SignIn => "sign_in",
        }
    }
}

/// Who started a ceremony, and its (opened) state.
#[derive(Debug)]
pub struct Ceremony {
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub practice_id: Option<PracticeId>,
    pub state: zeroize::Zeroizing<Vec<u8>>,
    /// Taken too late: refuse it (it is deleted all the same).
    pub expired: bool,
}

/// A stored passkey, with its (opened) credential.
#[derive(Debug)]
pub struct StoredPasskey {
    pub id: uuid::Uuid,
    pub credential: zeroize::Zeroizing<Vec<u8>>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// id, credential (sealed), created at, last used at
type PasskeyRow = (String, Vec<u8>, i64, Option<i64>);
/// user, session, practice, state (sealed), expires at
type CeremonyRow = (Option<String>, Option<String>, Option<String>, Vec<u8>, i64);

fn parse<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| StoreError::KeyRing("malformed passkey row".into()))
}

fn event(
    practice: PracticeId,
    user: UserId,
    action: Action,
    targets: Vec<String>,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: Actor::User(user),
        action,
        targets,
        outcome: Outcome::Success,
        context: ctx.clone(),
    }
}

impl Store {
    /// Stores a ceremony's state for `ttl_secs`; returns its id. Sweeps expired ones.
    pub async fn begin_ceremony(
        &self,
        purpose: CeremonyPurpose,
        user: Option<UserId>,
        session: Option<SessionId>,
        practice: Option<PracticeId>,
        state: &[u8],
        ttl_secs: i64,
    ) -> Result<uuid::Uuid> {
        let mut conn = self.pool.acquire().await?;
        let now = salve_core::clock::to_micros(self.clock.now());
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let id = uuid::Uuid::now_v7();
        let row = id.to_string();
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, purpose, user_id, session_id, practice_id, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row)
        .bind(purpose.as_str())
        .bind(user.map(|u| u.to_string()))
        .bind(session.map(|s| s.to_string()))
        .bind(practice.map(|p| p.to_string()))
        .bind(
            keys.sealing
                .seal(FieldAad::new("webauthn_ceremonies", "state", &row), state),
        )
        .bind(now)
        .bind(now + ttl_secs * 1_000_000)
        .execute(&mut *conn)
        .await?;
        Ok(id)
    }

    /// Takes (deletes) a ceremony started for `purpose` by `session` (or without a session).
    /// `None` when there is no such ceremony or it was already taken; an expired one is
    /// returned marked so (for the caller to refuse and count against the account).
    pub async fn take_ceremony(
        &self,
        id: uuid::Uuid,
        purpose: CeremonyPurpose,
        session: Option<SessionId>,
    ) -> Result<Option<Ceremony>> {
        let mut conn = self.pool.acquire().await?;
        let row_id = id.to_string();
        let row: Option<CeremonyRow> = sqlx::query_as(
            "SELECT user_id, session_id, practice_id, state, expires_at FROM webauthn_ceremonies \
             WHERE id = $1 AND purpose = $2 AND COALESCE(session_id, '') = $3",
        )
        .bind(&row_id)
        .bind(purpose.as_str())
        .bind(session.map(|s| s.to_string()).unwrap_or_default())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((user, session, practice, sealed, expires_at)) = row else {
            return Ok(None);
        };
        // Only the instance whose delete removed the row may use it.
        let taken = sqlx::query("DELETE FROM webauthn_ceremonies WHERE id = $1")
            .bind(&row_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        let now = salve_core::clock::to_micros(self.clock.now());
        if taken != 1 {
            return Ok(None);
        }
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let state = keys.sealing.open(
            FieldAad::new("webauthn_ceremonies", "state", &row_id),
            &sealed,
        )?;
        Ok(Some(Ceremony {
            user_id: user.as_deref().map(parse).transpose()?,
            session_id: session.as_deref().map(parse).transpose()?,
            practice_id: practice.as_deref().map(parse).transpose()?,
            state,
            expired: expires_at < now,
        }))
    }

    /// Stores a new passkey of `user` (its credential sealed) and audits it.
    pub async fn add_passkey(
        &self,
        ctx: &RequestContext,
        user: UserId,
        practice: PracticeId,
        credential_hash: &[u8],
        credential: &[u8],
    ) -> Result<uuid::Uuid> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let keys = self.ring.system_data_keys(&mut tx.tx).await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM passkeys WHERE credential_hash = $1")
                .bind(credential_hash.to_vec())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict("this passkey is already registered"));
        }
        let id = uuid::Uuid::now_v7();
        let row = id.to_string();
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_hash, credential, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row)
        .bind(user.to_string())
        .bind(credential_hash.to_vec())
        .bind(
            keys.sealing
                .seal(FieldAad::new("passkeys", "credential", &row), credential),
        )
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(event(
            practice,
            user,
            Action::PasskeyRegister,
            vec![user.to_string(), row],
            ctx,
        ));
        tx.commit().await?;
        Ok(id)
    }

    /// A user's passkeys, oldest first.
    pub async fn passkeys(&self, user: UserId) -> Result<Vec<StoredPasskey>> {
        let mut conn = self.pool.acquire().await?;
        let rows: Vec<PasskeyRow> = sqlx::query_as(
            "SELECT id, credential, created_at, last_used_at FROM passkeys WHERE user_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(user.to_string())
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.ring.system_data_keys(&mut conn).await?;
        rows.into_iter()
            .map(|(id, sealed, created_at, last_used_at)| {
                let credential = keys
                    .sealing
                    .open(FieldAad::new("passkeys", "credential", &id), &sealed)?;
                Ok(StoredPasskey {
                    id: parse(&id)?,
                    credential,
                    created_at,
                    last_used_at,
                })
            })
            .collect()
    }

    /// Replaces a passkey's credential after use (its signature counter and backup state)
    /// and records when it was used.
    pub async fn passkey_used(
        &self,
        user: UserId,
        id: uuid::Uuid,
        credential: &[u8],
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.ring.system_data_keys(&mut conn).await?;
        let now = salve_core::clock::to_micros(self.clock.now());
        let row = id.to_string();
        sqlx::query(
            "UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3 AND user_id = $4",
        )
        .bind(
            keys.sealing
                .seal(FieldAad::new("passkeys", "credential", &row), credential),
        )
        .bind(now)
        .bind(&row)
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Removes one of the user's own passkeys, audited. Another user's id is not found.
    pub async fn remove_passkey(
        &self,
        ctx: &RequestContext,
        user: UserId,
        practice: PracticeId,
        id: uuid::Uuid,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let row = id.to_string();
        let removed = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(&row)
            .bind(user.to_string())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        if removed != 1 {
            return Err(StoreError::NotFound);
        }
        tx.audit(event(
            practice,
            user,
            Action::PasskeyRemove,
            vec![user.to_string(), row],
            ctx,
        ));
        tx.commit().await
    }
}
