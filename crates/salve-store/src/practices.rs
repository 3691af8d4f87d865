//! Practices, API tokens, master-key registration and rotation.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::Scope;
use salve_core::{PracticeId, TokenId};
use salve_crypto::MasterKey;
use salve_crypto::audit::GENESIS;

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    pub id: PracticeId,
    pub name: String,
    /// Region for reading national phone numbers, e.g. `US`.
    pub phone_region: String,
    pub time_zone: String,
}

/// An API token as its practice's admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: TokenId,
    pub label: String,
    pub scopes: Vec<Scope>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Who an API token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub token_id: TokenId,
    pub practice_id: PracticeId,
    pub scopes: Vec<Scope>,
}

fn system_event(actor: Actor, action: Action, targets: Vec<String>) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::System,
        actor,
        action,
        targets,
        outcome: Outcome::Success,
        context: RequestContext::default(),
    }
}

impl Store {
    /// On open: an empty database adopts this master key; otherwise the key must be one the
    /// database accepts. Also makes sure the system chain and its keys exist.
    pub(crate) async fn register_master_key(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let keys: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM master_keys")
            .fetch_all(&mut *tx.tx)
            .await?;
        let mine = self.ring.master().id().to_owned();
        if keys.is_empty() {
            sqlx::query(
                "INSERT INTO master_keys (id, state, created_at) VALUES ($1, 'active', $2)",
            )
            .bind(&mine)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        } else if let Some((_, state)) = keys.iter().find(|(id, _)| *id == mine) {
            if state != "active" {
                return Err(StoreError::RetiredMasterKey(mine));
            }
        } else {
            let accepted = keys
                .iter()
                .filter(|(_, s)| s == "active")
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(StoreError::WrongMasterKey {
                supplied: mine,
                accepted,
            });
        }
        self.ring.ensure_system_keys(&mut tx.tx, now).await?;
        sqlx::query(
            "INSERT INTO audit_heads (scope, seq, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
        )
        .bind(ChainScope::SYSTEM_KEY)
        .bind(GENESIS.to_vec())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    pub async fn create_practice(
        &self,
        actor: Actor,
        name: &str,
        phone_region: &str,
        time_zone: &str,
    ) -> Result<Practice> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "practice name must be 1 to 200 characters".into(),
            ));
        }
        let region = salve_core::validation::phone_region("phone_region", phone_region)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let time_zone = salve_core::validation::time_zone("time_zone", time_zone)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let practice = Practice {
            id: PracticeId::new(),
            name: name.to_owned(),
            phone_region: region,
            time_zone,
        };
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query(
            "INSERT INTO practices (id, name, phone_region, time_zone, patients_generation, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(practice.id.to_string())
        .bind(&practice.name)
        .bind(&practice.phone_region)
        .bind(&practice.time_zone)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        self.ring
            .create_practice_keys(&mut tx.tx, practice.id, now)
            .await?;
        sqlx::query("INSERT INTO audit_heads (scope, seq, hash) VALUES ($1, 0, $2)")
            .bind(practice.id.to_string())
            .bind(GENESIS.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(system_event(
            actor.clone(),
            Action::PracticeCreate,
            vec![practice.id.to_string()],
        ));
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice.id),
            actor,
            action: Action::PracticeCreate,
            targets: vec![practice.id.to_string()],
            outcome: Outcome::Success,
            context: RequestContext::default(),
        });
        tx.commit().await?;
        Ok(practice)
    }

    pub async fn practice(&self, id: PracticeId) -> Result<Practice> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT name, phone_region, time_zone FROM practices WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let (name, phone_region, time_zone) = row.ok_or(StoreError::NotFound)?;
        Ok(Practice {
            id,
            name,
            phone_region,
            time_zone,
        })
    }

    /// The practice's session policy: idle and absolute timeouts in seconds.
    pub async fn session_policy(&self, id: PracticeId) -> Result<(i64, i64)> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT session_idle_secs, session_absolute_secs FROM practices WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::NotFound)
    }

    pub async fn list_practices(&self) -> Result<Vec<Practice>> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT id, name, phone_region, time_zone FROM practices ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, name, phone_region, time_zone)| {
                Ok(Practice {
                    id: id
                        .parse()
                        .map_err(|_| StoreError::KeyRing("malformed practice id".into()))?,
                    name,
                    phone_region,
                    time_zone,
                })
            })
            .collect()
    }

    /// The practice's API tokens (never their secrets).
    pub async fn list_tokens(&self, practice: PracticeId) -> Result<Vec<TokenInfo>> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, label, scopes, created_at, revoked_at FROM api_tokens \
             WHERE practice_id = $1 AND smart_client_id IS NULL ORDER BY created_at",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, label, scopes, created_at, revoked_at)| {
                Ok(TokenInfo {
                    id: id
                        .parse()
                        .map_err(|_| StoreError::KeyRing("malformed token row".into()))?,
                    label,
                    scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
                    created_at,
                    revoked_at,
                })
            })
            .collect()
    }

    /// Revokes one of the practice's tokens; another practice's token is not found.
    pub async fn revoke_token(
        &self,
        practice: PracticeId,
        actor: Actor,
        ctx: &RequestContext,
        token: TokenId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let changed = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND practice_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::TokenRevoke,
            targets: vec![token.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Stores a new token's hash. The caller shows the secret once and never again.
    pub async fn create_token(
        &self,
        actor: Actor,
        practice: PracticeId,
        scopes: &[Scope],
        label: &str,
        token_hash: &[u8; 32],
    ) -> Result<TokenId> {
        let id = TokenId::new();
        let scopes_text = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut tx = self.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM practices WHERE id = $1")
            .bind(practice.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, practice_id, token_hash, scopes, label, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(token_hash.to_vec())
        .bind(&scopes_text)
        .bind(label)
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::TokenCreate,
            targets: vec![id.to_string()],
            outcome: Outcome::Success,
            context: RequestContext::default(),
        });
        tx.commit().await?;
        Ok(id)
    }

    /// Finds the live token with this hash (not revoked; a SMART access token also not
    /// expired). Lookup is by hash (an index), then the hash is compared again in constant time.
    pub async fn authenticate_token(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<TokenPrincipal>> {
        let row: Option<(String, String, Vec<u8>, String)> = sqlx::query_as(
            "SELECT id, practice_id, token_hash, scopes FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(token_hash.to_vec())
        .bind(salve_core::clock::to_micros(self.clock.now()))
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, practice, stored, scopes)) = row else {
            return Ok(None);
        };
        if !salve_crypto::ct_eq(&stored, token_hash) {
            return Ok(None);
        }
        let malformed = || StoreError::KeyRing("malformed token row".into());
        Ok(Some(TokenPrincipal {
            token_id: id.parse().map_err(|_| malformed())?,
            practice_id: practice.parse().map_err(|_| malformed())?,
            scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        }))
    }

    /// Records an event that is not part of another write (e.g. a denied request).
    pub async fn record_audit(&self, event: AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.audit(event);
        tx.commit().await
    }

    /// Rotation phase one, run with the current master key: wrap every key under `next` too.
    /// Instances holding either key keep working.
    pub async fn begin_master_rotation(&self, next: &MasterKey) -> Result<u64> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let count = self.ring.add_master(&mut tx.tx, next, now).await?;
        tx.audit(system_event(
            Actor::Cli,
            Action::KeysRotateBegin,
            vec![next.id().to_owned()],
        ));
        tx.commit().await?;
        Ok(count)
    }

    /// Rotation phase two, run with the new master key once every instance uses it: wraps any
    /// key created meanwhile under the new key, then deletes the old wraps and retires the old key.
    pub async fn finish_master_rotation(&self, old: &MasterKey) -> Result<u64> {
        if old.id() == self.ring.master().id() {
            return Err(StoreError::Invalid(
                "the old and the new master key are the same".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM master_keys WHERE id = $1")
                .bind(old.id())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if state.as_deref() != Some("active") {
            return Err(StoreError::Invalid(
                "the old master key is not an active key of this database".into(),
            ));
        }
        let caught_up = self
            .ring
            .rewrap_missing(&mut tx.tx, old, self.ring.master())
            .await?;
        sqlx::query("DELETE FROM key_wraps WHERE master_key_id = $1")
            .bind(old.id())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("UPDATE master_keys SET state = 'retired', retired_at = $1 WHERE id = $2")
            .bind(now)
            .bind(old.id())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(system_event(
            Actor::Cli,
            Action::KeysRotateFinish,
            vec![old.id().to_owned(), self.ring.master().id().to_owned()],
        ));
        tx.commit().await?;
        Ok(caught_up)
    }
}
