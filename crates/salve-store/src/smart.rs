//! SMART backend-services clients, the assertions they used, and the short-lived access tokens
//! issued to them (rows of `api_tokens`, so one authenticate path serves both kinds of token).

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::Scope;
use salve_core::{PracticeId, SmartClientId, TokenId};

use crate::{Result, Store, StoreError};

/// A registered client: its public keys (a JWKS, as registered) and the system scopes it may
/// ask for (space-separated SMART scopes).
#[derive(Debug, Clone)]
pub struct SmartClient {
    pub id: SmartClientId,
    pub practice_id: PracticeId,
    pub name: String,
    pub jwks: String,
    pub scopes: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A token to issue for an accepted assertion.
pub struct SmartTokenGrant<'a> {
    pub jti: &'a str,
    /// The assertion's `exp` (micros): its jti is remembered until then.
    pub jti_expires_at: i64,
    pub scopes: &'a [Scope],
    pub token_hash: &'a [u8; 32],
    pub expires_at: i64,
}

type ClientRow = (String, String, String, String, String, i64, Option<i64>);

fn client_from_row(row: ClientRow) -> Result<SmartClient> {
    let (id, practice, name, jwks, scopes, created_at, disabled_at) = row;
    let malformed = || StoreError::KeyRing("malformed SMART client row".into());
    Ok(SmartClient {
        id: id.parse().map_err(|_| malformed())?,
        practice_id: practice.parse().map_err(|_| malformed())?,
        name,
        jwks,
        scopes,
        created_at,
        disabled_at,
    })
}

impl Store {
    /// Registers a client; the caller has checked the keys and scopes.
    pub async fn register_smart_client(
        &self,
        actor: Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        name: &str,
        jwks: &str,
        scopes: &str,
    ) -> Result<SmartClientId> {
        let id = SmartClientId::new();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO smart_clients (id, practice_id, name, jwks, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(name)
        .bind(jwks)
        .bind(scopes)
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::SmartClientRegister,
            targets: vec![id.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        Ok(id)
    }

    pub async fn list_smart_clients(&self, practice: PracticeId) -> Result<Vec<SmartClient>> {
        let rows: Vec<ClientRow> = sqlx::query_as(
            "SELECT id, practice_id, name, jwks, scopes, created_at, disabled_at \
             FROM smart_clients WHERE practice_id = $1 ORDER BY created_at",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(client_from_row).collect()
    }

    /// The client a token request names, in whatever practice it belongs to.
    pub async fn smart_client(&self, id: SmartClientId) -> Result<Option<SmartClient>> {
        let row: Option<ClientRow> = sqlx::query_as(
            "SELECT id, practice_id, name, jwks, scopes, created_at, disabled_at \
             FROM smart_clients WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(client_from_row).transpose()
    }

    /// Disables a client of this practice and revokes the access tokens it holds.
    pub async fn disable_smart_client(
        &self,
        actor: Actor,
        ctx: &RequestContext,
        practice: PracticeId,
        id: SmartClientId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let changed = sqlx::query(
            "UPDATE smart_clients SET disabled_at = $1 \
             WHERE id = $2 AND practice_id = $3 AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(practice.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE smart_client_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::SmartClientDisable,
            targets: vec![id.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Remembers the assertion's jti and issues the token, in one transaction: a jti seen
    /// before (by this or another instance) is a replay and issues nothing.
    pub async fn issue_smart_token(
        &self,
        client: &SmartClient,
        ctx: &RequestContext,
        grant: SmartTokenGrant<'_>,
    ) -> Result<TokenId> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        sqlx::query("DELETE FROM smart_assertion_jtis WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        let fresh = sqlx::query(
            "INSERT INTO smart_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(client.id.to_string())
        .bind(grant.jti)
        .bind(grant.jti_expires_at)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            return Err(StoreError::Conflict(
                "this assertion's jti was already used",
            ));
        }
        // Expired access tokens of this client are of no use to anyone: drop them as we go.
        sqlx::query(
            "DELETE FROM api_tokens WHERE smart_client_id = $1 AND expires_at IS NOT NULL AND expires_at < $2",
        )
        .bind(client.id.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let token = TokenId::new();
        let scopes = grant
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        sqlx::query(
            "INSERT INTO api_tokens (id, practice_id, token_hash, scopes, label, created_at, expires_at, smart_client_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.to_string())
        .bind(client.practice_id.to_string())
        .bind(grant.token_hash.to_vec())
        .bind(&scopes)
        .bind(format!("SMART client {}", client.name))
        .bind(now)
        .bind(grant.expires_at)
        .bind(client.id.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(client.practice_id),
            actor: Actor::ApiToken(token),
            action: Action::SmartTokenIssue,
            targets: vec![client.id.to_string()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await?;
        Ok(token)
    }
}
