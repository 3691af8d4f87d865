//! Reading from the practice's EHR: the pull's settings, cursors, lease and run status, and the
//! links from the EHR's resources to the patients and appointments they were applied to. The
//! records themselves are written by the same operations as the API and the HL7 feed.

use salve_core::PracticeId;
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::{from_micros, to_micros};
use time::OffsetDateTime;

use crate::{Result, Store, StoreError};

/// The pull of one practice: settings, cursors and the last run, for staff and the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EhrPull {
    pub enabled: bool,
    pub interval_secs: i64,
    pub patient_cursor: Option<OffsetDateTime>,
    pub appointment_cursor: Option<OffsetDateTime>,
    pub next_run_at: OffsetDateTime,
    pub running: bool,
    pub last_run_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    pub last_error_kind: Option<String>,
    pub last_error: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    /// The last run's skip reasons (fixed texts) and how many resources each.
    pub skip_reasons: Vec<(i64, String)>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EhrPullRun {
    pub patient_cursor: Option<OffsetDateTime>,
    pub appointment_cursor: Option<OffsetDateTime>,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub skip_reasons: Vec<(i64, String)>,
    /// Why the run stopped early (a kind and a PHI-free reason); `None`: it succeeded.
    pub error: Option<(String, String)>,
}

const LINK_INDEX: &str = "ehr_pull_link";

type PullRow = (
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
);

fn parse_reasons(raw: Option<String>) -> Vec<(i64, String)> {
    raw.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, r) = l.split_once('\t')?;
            Some((n.parse().ok()?, r.to_owned()))
        })
        .collect()
}

impl Store {
    /// The practice's pull; `None` when it was never configured.
    pub async fn ehr_pull(&self, practice: PracticeId) -> Result<Option<EhrPull>> {
        let row: Option<PullRow> = sqlx::query_as(
            "SELECT enabled, interval_secs, patient_cursor, appointment_cursor, next_run_at, \
             lease_until, last_run_at, last_success_at, last_error_kind, last_error, created, \
             updated, unchanged, skipped, skip_reasons FROM ehr_pulls WHERE practice_id = $1",
        )
        .bind(practice.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let now = to_micros(self.clock.now());
        Ok(row.map(
            |(
                enabled,
                interval_secs,
                patient_cursor,
                appointment_cursor,
                next_run_at,
                lease_until,
                last_run_at,
                last_success_at,
                last_error_kind,
                last_error,
                created,
                updated,
                unchanged,
                skipped,
                reasons,
            )| EhrPull {
                enabled: enabled != 0,
                interval_secs,
                patient_cursor: patient_cursor.map(from_micros),
                appointment_cursor: appointment_cursor.map(from_micros),
                next_run_at: from_micros(next_run_at),
                running: lease_until.is_some_and(|l| l > now),
                last_run_at: last_run_at.map(from_micros),
                last_success_at: last_success_at.map(from_micros),
                last_error_kind,
                last_error,
                created,
                updated,
                unchanged,
                skipped,
                skip_reasons: parse_reasons(reasons),
            },
        ))
    }

    /// Turns the pull on or off and sets its interval (checked by the caller); audited as a
    /// change of the EHR connection. A pull turned on is due at once.
    pub async fn set_ehr_pull(
        &self,
        practice: PracticeId,
        actor: Actor,
        ctx: &RequestContext,
        enabled: bool,
        interval_secs: i64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM ehr_connections WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO ehr_pulls (practice_id, enabled, interval_secs, next_run_at, created, \
             updated, unchanged, skipped, updated_at) VALUES ($1, $2, $3, $4, 0, 0, 0, 0, $4) \
             ON CONFLICT (practice_id) DO UPDATE SET enabled = $2, interval_secs = $3, \
             next_run_at = CASE WHEN ehr_pulls.enabled = 0 AND $2 = 1 THEN $4 \
             ELSE ehr_pulls.next_run_at END, updated_at = $4",
        )
        .bind(practice.to_string())
        .bind(i64::from(enabled))
        .bind(interval_secs)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(practice),
            actor,
            action: Action::EhrConnectionChange,
            targets: vec![practice.to_string(), "pull".to_owned()],
            outcome: Outcome::Success,
            context: ctx.clone(),
        });
        tx.commit().await
    }

    /// Practices whose pull is on, whose connection is on, and whose next run is due.
    pub async fn due_ehr_pulls(&self) -> Result<Vec<PracticeId>> {
        let now = to_micros(self.clock.now());
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT p.practice_id FROM ehr_pulls p JOIN ehr_connections c \
             ON c.practice_id = p.practice_id WHERE p.enabled = 1 AND c.enabled = 1 \
             AND p.next_run_at <= $1 AND (p.lease_until IS NULL OR p.lease_until <= $1) \
             ORDER BY p.next_run_at",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| StoreError::KeyRing("malformed EHR pull".into()))
            })
            .collect()
    }

    /// Takes the practice's pull for `owner` for `lease_secs`: `false` when another instance
    /// holds it (or the pull is off or not configured). One conditional UPDATE, atomic on both
    /// backends.
    pub async fn take_ehr_pull_lease(
        &self,
        practice: PracticeId,
        owner: &str,
        lease_secs: i64,
    ) -> Result<bool> {
        let now = to_micros(self.clock.now());
        let done = sqlx::query(
            "UPDATE ehr_pulls SET lease_owner = $1, lease_until = $2 WHERE practice_id = $3 \
             AND enabled = 1 AND (lease_until IS NULL OR lease_until <= $4)",
        )
        .bind(owner)
        .bind(now + lease_secs * 1_000_000)
        .bind(practice.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a run `owner` made under its lease: the cursors (only ever forward), the counts
    /// and status, the next run; releases the lease.
    pub async fn finish_ehr_pull(
        &self,
        practice: PracticeId,
        owner: &str,
        run: &EhrPullRun,
    ) -> Result<()> {
        let now = to_micros(self.clock.now());
        let reasons: String = run
            .skip_reasons
            .iter()
            .map(|(n, r)| format!("{n}\t{r}\n"))
            .collect();
        let (kind, error) = match &run.error {
            Some((k, e)) => (Some(k.clone()), Some(e.clone())),
            None => (None, None),
        };
        sqlx::query(
            "UPDATE ehr_pulls SET \
             patient_cursor = CASE WHEN patient_cursor IS NULL OR patient_cursor < $1 THEN $1 ELSE patient_cursor END, \
             appointment_cursor = CASE WHEN appointment_cursor IS NULL OR appointment_cursor < $2 THEN $2 ELSE appointment_cursor END, \
             next_run_at = $3 + interval_secs * 1000000, last_run_at = $3, \
             last_success_at = CASE WHEN $4 = 1 THEN $3 ELSE last_success_at END, \
             last_error_kind = $5, last_error = $6, created = $7, updated = $8, unchanged = $9, \
             skipped = $10, skip_reasons = $11, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE practice_id = $12 AND lease_owner = $13",
        )
        .bind(run.patient_cursor.map(to_micros))
        .bind(run.appointment_cursor.map(to_micros))
        .bind(now)
        .bind(i64::from(run.error.is_none()))
        .bind(kind)
        .bind(error)
        .bind(run.created)
        .bind(run.updated)
        .bind(run.unchanged)
        .bind(run.skipped)
        .bind((!reasons.is_empty()).then_some(reasons))
        .bind(practice.to_string())
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The Salve record an EHR resource was applied to, and the version applied.
    pub async fn ehr_pull_link(
        &self,
        practice: PracticeId,
        resource_type: &str,
        remote_id: &str,
    ) -> Result<Option<(String, String)>> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        let index = keys.blind_index.blind_index(LINK_INDEX, remote_id).to_vec();
        Ok(sqlx::query_as(
            "SELECT local_id, remote_version FROM ehr_pull_links WHERE practice_id = $1 \
             AND resource_type = $2 AND remote_index = $3",
        )
        .bind(practice.to_string())
        .bind(resource_type)
        .bind(index)
        .fetch_optional(&mut *conn)
        .await?)
    }

    /// Records that an EHR resource's `version` was applied to `local_id`.
    pub async fn set_ehr_pull_link(
        &self,
        practice: PracticeId,
        resource_type: &str,
        remote_id: &str,
        local_id: &str,
        version: &str,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        let index = keys.blind_index.blind_index(LINK_INDEX, remote_id).to_vec();
        sqlx::query(
            "INSERT INTO ehr_pull_links (practice_id, resource_type, remote_index, local_id, \
             remote_version, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (practice_id, resource_type, remote_index) DO UPDATE SET \
             local_id = $4, remote_version = $5, updated_at = $6",
        )
        .bind(practice.to_string())
        .bind(resource_type)
        .bind(index)
        .bind(local_id)
        .bind(version)
        .bind(to_micros(self.clock.now()))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_reasons;

    #[test]
    fn reasons_round_trip_their_lines() {
        assert_eq!(
            parse_reasons(Some("2\ta reason\n1\tanother\nbroken\n".into())),
            vec![(2, "a reason".into()), (1, "another".into())]
        );
        assert!(parse_reasons(None).is_empty());
    }
}
