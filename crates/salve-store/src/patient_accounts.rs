//! Patients' own portal logins: the login name is the patient's email (stored only as the
//! practice's blind index), an argon2id password hash, and a TOTP secret sealed under the
//! practice key. A successful sign-in starts an ordinary patient session without a link.

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::links;
use salve_core::patient::ContactKind;
use salve_core::{PatientId, PracticeId, Sensitive};
use salve_crypto::FieldAad;
use sqlx::AnyConnection;

use crate::{PatientSession, Result, Store, StoreError};

/// An activated patient login found by practice and email.
#[derive(Debug, Clone)]
pub struct PatientLogin {
    pub account_id: String,
    pub practice_id: PracticeId,
    pub patient_id: PatientId,
    pub password_hash: String,
}

fn login_lookup(email: &str) -> String {
    email.trim().to_lowercase()
}

fn patient_event(
    practice: PracticeId,
    patient: PatientId,
    action: Action,
    outcome: Outcome,
    ctx: &RequestContext,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: Actor::Patient(patient),
        action,
        targets: vec![patient.to_string()],
        outcome,
        context: ctx.clone(),
    }
}

fn bad() -> StoreError {
    StoreError::KeyRing("malformed patient account".into())
}

impl Store {
    async fn login_index(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        email: &str,
    ) -> Result<Vec<u8>> {
        let keys = self.ring.practice_keys(conn, practice).await?;
        Ok(keys
            .blind_index
            .blind_index("patient-login", &login_lookup(email))
            .to_vec())
    }

    /// A keyed hash of (practice, email) for throttling, the same for known and unknown logins
    /// (an unknown practice falls back to the system's blind index key).
    pub async fn patient_login_key(&self, practice: PracticeId, email: &str) -> Result<Vec<u8>> {
        let mut conn = self.pool.acquire().await?;
        match self.login_index(&mut conn, practice, email).await {
            Ok(index) => Ok(index),
            Err(StoreError::NotFound) => {
                let keys = self.ring.system_data_keys(&mut conn).await?;
                Ok(keys
                    .blind_index
                    .blind_index(
                        "patient-login-unknown-practice",
                        &format!("{practice}:{}", login_lookup(email)),
                    )
                    .to_vec())
            }
            Err(e) => Err(e),
        }
    }

    /// The patient's first email contact point, if any.
    pub async fn patient_email(
        &self,
        session: &PatientSession,
    ) -> Result<Option<Sensitive<String>>> {
        let mut conn = self.pool.acquire().await?;
        let patient = self
            .load_patient(&mut conn, session.practice_id, session.patient_id)
            .await?;
        Ok(patient
            .record
            .contacts
            .iter()
            .find(|c| c.kind == ContactKind::Email)
            .map(|c| c.value.clone()))
    }

    /// Creates (or, while not yet activated, replaces) the patient's login with a TOTP secret
    /// awaiting confirmation. An activated login is a conflict.
    pub async fn create_patient_account(
        &self,
        session: &PatientSession,
        ctx: &RequestContext,
        email: &str,
        password_hash: String,
        totp_secret: &[u8],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let index = self
            .login_index(&mut tx.tx, session.practice_id, email)
            .await?;
        let existing: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT id, activated_at FROM patient_accounts WHERE patient_id = $1")
                .bind(session.patient_id.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        let id = match existing {
            Some((_, Some(_))) => {
                return Err(StoreError::Conflict(
                    "this patient already has a portal login",
                ));
            }
            Some((id, None)) => {
                sqlx::query("DELETE FROM patient_sign_ins WHERE account_id = $1")
                    .bind(&id)
                    .execute(&mut *tx.tx)
                    .await?;
                sqlx::query("DELETE FROM patient_accounts WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx.tx)
                    .await?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        let keys = self
            .ring
            .practice_keys(&mut tx.tx, session.practice_id)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO patient_accounts (id, practice_id, patient_id, login_index, password_hash, totp_pending, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(session.practice_id.to_string())
        .bind(session.patient_id.to_string())
        .bind(index)
        .bind(password_hash)
        .bind(keys.practice.seal(FieldAad::new("patient_accounts", "totp_pending", &id), totp_secret))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "another patient of this practice already uses this email for a login",
            ));
        }
        tx.audit(patient_event(
            session.practice_id,
            session.patient_id,
            Action::PatientAccountCreate,
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// The pending TOTP secret of the session's patient's login, if enrolment is in progress.
    pub async fn patient_pending_totp(
        &self,
        session: &PatientSession,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        let mut conn = self.pool.acquire().await?;
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id, totp_pending FROM patient_accounts WHERE patient_id = $1 AND practice_id = $2 AND activated_at IS NULL",
        )
        .bind(session.patient_id.to_string())
        .bind(session.practice_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((id, Some(sealed))) = row else {
            return Ok(None);
        };
        let keys = self
            .ring
            .practice_keys(&mut conn, session.practice_id)
            .await?;
        Ok(Some(keys.practice.open(
            FieldAad::new("patient_accounts", "totp_pending", &id),
            &sealed,
        )?))
    }

    /// Activates the login: the pending secret becomes the second factor (with `step` used)
    /// and the recovery codes are stored as hashes.
    pub async fn activate_patient_account(
        &self,
        session: &PatientSession,
        ctx: &RequestContext,
        step: i64,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT id, totp_pending FROM patient_accounts WHERE patient_id = $1 AND practice_id = $2 AND activated_at IS NULL",
        )
        .bind(session.patient_id.to_string())
        .bind(session.practice_id.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some((id, Some(sealed))) = row else {
            return Err(StoreError::Invalid(
                "no login is waiting for confirmation".into(),
            ));
        };
        let keys = self
            .ring
            .practice_keys(&mut tx.tx, session.practice_id)
            .await?;
        let secret = keys.practice.open(
            FieldAad::new("patient_accounts", "totp_pending", &id),
            &sealed,
        )?;
        sqlx::query(
            "UPDATE patient_accounts SET totp_secret = $1, totp_pending = NULL, totp_last_step = $2, activated_at = $3 WHERE id = $4",
        )
        .bind(keys.practice.seal(FieldAad::new("patient_accounts", "totp_secret", &id), &secret))
        .bind(step)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query("DELETE FROM patient_recovery_codes WHERE account_id = $1")
            .bind(&id)
            .execute(&mut *tx.tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query(
                "INSERT INTO patient_recovery_codes (account_id, code_hash) VALUES ($1, $2)",
            )
            .bind(&id)
            .bind(hash.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.audit(patient_event(
            session.practice_id,
            session.patient_id,
            Action::PatientAccountActivate,
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// The activated login for this practice and email, if any (none once the patient's
    /// record was shredded).
    pub async fn patient_login(
        &self,
        practice: PracticeId,
        email: &str,
    ) -> Result<Option<PatientLogin>> {
        let mut conn = self.pool.acquire().await?;
        let index = match self.login_index(&mut conn, practice, email).await {
            Ok(index) => index,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT a.id, a.patient_id, a.password_hash FROM patient_accounts a \
             JOIN patients p ON p.id = a.patient_id \
             WHERE a.practice_id = $1 AND a.login_index = $2 AND a.activated_at IS NOT NULL \
             AND p.shredded_at IS NULL",
        )
        .bind(practice.to_string())
        .bind(index)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|(id, patient, password_hash)| {
            Ok(PatientLogin {
                account_id: id,
                practice_id: practice,
                patient_id: patient.parse().map_err(|_| bad())?,
                password_hash,
            })
        })
        .transpose()
    }

    /// Remembers that the login's password was accepted, until `expires_at`.
    pub async fn create_patient_sign_in(
        &self,
        login: &PatientLogin,
        token_hash: &[u8; 32],
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO patient_sign_ins (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash.to_vec())
        .bind(&login.account_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The login whose password was accepted under this pending token, if still fresh.
    pub async fn patient_sign_in(&self, token_hash: &[u8; 32]) -> Result<Option<PatientLogin>> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT a.id, a.practice_id, a.patient_id, a.password_hash FROM patient_sign_ins s \
             JOIN patient_accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND a.activated_at IS NOT NULL",
        )
        .bind(token_hash.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, practice, patient, password_hash)| {
            Ok(PatientLogin {
                account_id: id,
                practice_id: practice.parse().map_err(|_| bad())?,
                patient_id: patient.parse().map_err(|_| bad())?,
                password_hash,
            })
        })
        .transpose()
    }

    /// The login's TOTP secret.
    pub async fn patient_totp_secret(
        &self,
        login: &PatientLogin,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        let mut conn = self.pool.acquire().await?;
        let sealed: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT totp_secret FROM patient_accounts WHERE id = $1")
                .bind(&login.account_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(sealed) = sealed.flatten() else {
            return Ok(None);
        };
        let keys = self
            .ring
            .practice_keys(&mut conn, login.practice_id)
            .await?;
        Ok(Some(keys.practice.open(
            FieldAad::new("patient_accounts", "totp_secret", &login.account_id),
            &sealed,
        )?))
    }

    /// Records a TOTP step as used; false when this or a later step was already used.
    pub async fn use_patient_totp_step(&self, login: &PatientLogin, step: i64) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE patient_accounts SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(&login.account_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Spends an unused recovery code of the login.
    pub async fn use_patient_recovery_code(
        &self,
        login: &PatientLogin,
        hash: &[u8; 32],
    ) -> Result<bool> {
        let now = salve_core::clock::to_micros(self.clock.now());
        let changed = sqlx::query(
            "UPDATE patient_recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&login.account_id)
        .bind(hash.to_vec())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Finishes a login: spends the pending token and starts a patient session (no link).
    pub async fn create_login_session(
        &self,
        login: &PatientLogin,
        pending_hash: &[u8; 32],
        token_hash: &[u8; 32],
        ctx: &RequestContext,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let spent = sqlx::query("DELETE FROM patient_sign_ins WHERE token_hash = $1")
            .bind(pending_hash.to_vec())
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        if spent != 1 {
            return Err(StoreError::NotFound);
        }
        let expires = now + links::PATIENT_SESSION_MAX.whole_microseconds() as i64;
        sqlx::query(
            "INSERT INTO patient_sessions (id, token_hash, practice_id, patient_id, link_id, created_at, last_active_at, expires_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(token_hash.to_vec())
        .bind(login.practice_id.to_string())
        .bind(login.patient_id.to_string())
        .bind(now)
        .bind(expires)
        .execute(&mut *tx.tx)
        .await?;
        tx.audit(patient_event(
            login.practice_id,
            login.patient_id,
            Action::PatientSignIn,
            Outcome::Success,
            ctx,
        ));
        tx.commit().await
    }

    /// Audits a step of the verified patient's own login set-up (e.g. a refused first code).
    pub async fn record_patient_account_event(
        &self,
        session: &PatientSession,
        action: Action,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.record_audit(patient_event(
            session.practice_id,
            session.patient_id,
            action,
            outcome,
            ctx,
        ))
        .await
    }

    /// Audits a patient sign-in attempt: on the login's practice chain as the patient when
    /// known, else anonymously on the system chain.
    pub async fn record_patient_sign_in(
        &self,
        login: Option<&PatientLogin>,
        action: Action,
        outcome: Outcome,
        ctx: &RequestContext,
    ) -> Result<()> {
        let event = match login {
            Some(l) => patient_event(l.practice_id, l.patient_id, action, outcome, ctx),
            None => AuditEvent {
                scope: ChainScope::System,
                actor: Actor::Anonymous,
                action,
                targets: Vec::new(),
                outcome,
                context: ctx.clone(),
            },
        };
        self.record_audit(event).await
    }
}
