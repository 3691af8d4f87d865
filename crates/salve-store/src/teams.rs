//! Teams within a practice (front desk, nursing pool, …): conversations are assigned to a
//! person or a team.

use salve_core::audit::{Action, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::Principal;
use salve_core::{PracticeId, TeamId, UserId};

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub members: Vec<UserId>,
}

fn team_event(
    practice: PracticeId,
    principal: &Principal,
    ctx: &RequestContext,
    team: TeamId,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: principal.actor(),
        action: Action::TeamChange,
        targets: vec![team.to_string()],
        outcome: Outcome::Success,
        context: ctx.clone(),
    }
}

impl Store {
    pub async fn create_team(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<TeamId> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid(
                "a team name has 1 to 100 characters".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let id = TeamId::new();
        let inserted = sqlx::query(
            "INSERT INTO teams (id, practice_id, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .bind(name)
        .bind(tx.now_micros())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "the practice already has a team with this name",
            ));
        }
        tx.audit(team_event(practice, principal, ctx, id));
        tx.commit().await?;
        Ok(id)
    }

    /// Renames a team (1 to 100 characters, unique in the practice).
    pub async fn rename_team(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        team: TeamId,
        name: &str,
    ) -> Result<()> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid(
                "a team name has 1 to 100 characters".into(),
            ));
        }
        let mut tx = self.begin().await?;
        // Another practice's team is no team here, whatever its name.
        let ours: Option<String> =
            sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 AND practice_id = $2")
                .bind(team.to_string())
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if ours.is_none() {
            return Err(StoreError::NotFound);
        }
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT id FROM teams WHERE practice_id = $1 AND name = $2 AND id <> $3",
        )
        .bind(practice.to_string())
        .bind(name)
        .bind(team.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(
                "the practice already has a team with this name",
            ));
        }
        let changed = sqlx::query("UPDATE teams SET name = $1 WHERE id = $2 AND practice_id = $3")
            .bind(name)
            .bind(team.to_string())
            .bind(practice.to_string())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        tx.audit(team_event(practice, principal, ctx, team));
        tx.commit().await
    }

    pub async fn list_teams(&self, practice: PracticeId) -> Result<Vec<Team>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM teams WHERE practice_id = $1 ORDER BY name")
                .bind(practice.to_string())
                .fetch_all(&self.pool)
                .await?;
        let mut teams = Vec::with_capacity(rows.len());
        for (id, name) in rows {
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
            let bad = || StoreError::KeyRing("malformed team".into());
            teams.push(Team {
                id: id.parse().map_err(|_| bad())?,
                name,
                members: members
                    .iter()
                    .map(|m| m.parse().map_err(|_| bad()))
                    .collect::<Result<_>>()?,
            });
        }
        Ok(teams)
    }

    /// Replaces a team's members; each must be a member of the practice.
    pub async fn set_team_members(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        team: TeamId,
        members: &[UserId],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 AND practice_id = $2")
                .bind(team.to_string())
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        for user in members {
            let member: Option<String> = sqlx::query_scalar(
                "SELECT user_id FROM memberships WHERE user_id = $1 AND practice_id = $2",
            )
            .bind(user.to_string())
            .bind(practice.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
            if member.is_none() {
                return Err(StoreError::Invalid(
                    "every team member must be a member of this practice".into(),
                ));
            }
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(team.to_string())
            .execute(&mut *tx.tx)
            .await?;
        for user in members {
            sqlx::query("INSERT INTO team_members (team_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(team.to_string())
                .bind(user.to_string())
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.audit(team_event(practice, principal, ctx, team));
        tx.commit().await
    }

    pub async fn delete_team(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        team: TeamId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 AND practice_id = $2")
                .bind(team.to_string())
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = $1")
            .bind(team.to_string())
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.audit(team_event(practice, principal, ctx, team));
        tx.commit().await
    }
}
