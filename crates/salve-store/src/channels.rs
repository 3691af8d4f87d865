//! A practice's SMS and email providers and the agreements that let them carry patient data.
//! The rules (which kinds need a BAA, when one is in force) are `salve_core::vendors`; this
//! module stores, seals and audits. Credentials are sealed under the practice's
//! provider-credential key, bound to their row.

use jiff::civil::Date;
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::vendors::{
    self, AgreementBasis, AgreementTerms, Coverage, ProviderKind, ProviderMedium,
};
use salve_core::{AgreementId, FieldError, PracticeId, ProviderId, Sensitive};
use salve_crypto::FieldAad;

use crate::messaging::Medium;
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

/// A provider as the admin pages and the BAA report show it: never its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSummary {
    pub id: ProviderId,
    pub kind: ProviderKind,
    pub label: String,
    pub enabled: bool,
    pub numbers: Vec<String>,
    pub agreement: Option<Agreement>,
    /// Whether it may carry patient data on the practice's `today`.
    pub coverage: Coverage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub id: AgreementId,
    pub vendor: String,
    pub basis: AgreementBasis,
}

/// What the worker and the webhook handlers need to talk to a provider.
#[derive(Debug, Clone)]
pub struct ProviderRecord {
    pub id: ProviderId,
    pub practice: PracticeId,
    pub kind: ProviderKind,
    /// The kind-specific configuration with its secrets, as JSON.
    pub credentials: Sensitive<String>,
    pub numbers: Vec<String>,
    pub agreement: Option<Agreement>,
    pub expiry_alerted_on: Option<Date>,
}

impl ProviderRecord {
    pub fn coverage(&self, today: Date) -> Coverage {
        vendors::coverage(self.kind, self.agreement.as_ref().map(|a| &a.basis), today)
    }
}

/// A provider to add.
#[derive(Debug, Clone)]
pub struct NewProvider {
    pub kind: ProviderKind,
    pub label: String,
    pub credentials: Sensitive<String>,
    /// E.164 sender numbers (SMS providers); each belongs to one practice only.
    pub numbers: Vec<String>,
    pub agreement: Option<AgreementId>,
}

fn medium_str(m: ProviderMedium) -> &'static str {
    match m {
        ProviderMedium::Sms => "sms",
        ProviderMedium::Email => "email",
        ProviderMedium::Both => "both",
    }
}

fn basis_columns(basis: &AgreementBasis) -> (&'static str, Date, Option<Date>, Option<String>) {
    match basis {
        AgreementBasis::Baa {
            signed_on,
            expires_on,
            document_sha256,
        } => (
            "baa",
            *signed_on,
            *expires_on,
            Some(hex::encode(document_sha256)),
        ),
        AgreementBasis::SelfOperated { attested_on } => ("self_operated", *attested_on, None, None),
    }
}

fn malformed(what: &str) -> StoreError {
    StoreError::KeyRing(format!("malformed {what}"))
}

fn parse_date(raw: &str) -> Result<Date> {
    raw.parse().map_err(|_| malformed("agreement date"))
}

type AgreementRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn agreement_of(row: AgreementRow) -> Result<Agreement> {
    let (id, vendor, basis, effective_on, expires_on, sha) = row;
    let effective_on = parse_date(&effective_on)?;
    let basis = match basis.as_str() {
        "baa" => {
            let mut document_sha256 = [0u8; 32];
            hex::decode_to_slice(sha.unwrap_or_default(), &mut document_sha256)
                .map_err(|_| malformed("agreement hash"))?;
            AgreementBasis::Baa {
                signed_on: effective_on,
                expires_on: expires_on.as_deref().map(parse_date).transpose()?,
                document_sha256,
            }
        }
        "self_operated" => AgreementBasis::SelfOperated {
            attested_on: effective_on,
        },
        _ => return Err(malformed("agreement basis")),
    };
    Ok(Agreement {
        id: id.parse().map_err(|_| malformed("agreement id"))?,
        vendor,
        basis,
    })
}

fn fields_error(errors: Vec<FieldError>) -> StoreError {
    StoreError::Invalid(
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.expected))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn vendor_event(
    practice: PracticeId,
    actor: Actor,
    ctx: &RequestContext,
    action: Action,
    target: String,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor,
        action,
        targets: vec![target],
        outcome: Outcome::Success,
        context: ctx.clone(),
    }
}

/// A sender number as E.164: `+` and 8 to 15 digits.
fn valid_number(raw: &str) -> bool {
    let digits = raw.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

const AGREEMENT_COLUMNS: &str = "id, vendor, basis, effective_on, expires_on, document_sha256";

impl Store {
    /// The practice's date now, in its own time zone.
    pub async fn practice_today(&self, practice: PracticeId) -> Result<Date> {
        let p = self.practice(practice).await?;
        salve_core::clock::local_date(self.clock.now(), &p.time_zone)
            .ok_or_else(|| malformed("practice time zone"))
    }

    /// Records a Business Associate Agreement or a self-operation attestation.
    pub async fn record_agreement(
        &self,
        practice: PracticeId,
        actor: Actor,
        ctx: &RequestContext,
        terms: &AgreementTerms,
    ) -> Result<AgreementId> {
        let today = self.practice_today(practice).await?;
        terms.validate(today).map_err(fields_error)?;
        let mut tx = self.begin().await?;
        let id = insert_agreement(&mut tx, practice, &actor, terms).await?;
        tx.audit(vendor_event(
            practice,
            actor,
            ctx,
            Action::AgreementRecord,
            id.to_string(),
        ));
        tx.commit().await?;
        Ok(id)
    }

    /// Adds a provider, enabled. Refused without an agreement in force for a provider that would
    /// carry patient data, and for the local outbox beside a real provider.
    pub async fn add_provider(
        &self,
        practice: PracticeId,
        actor: Actor,
        ctx: &RequestContext,
        new: &NewProvider,
    ) -> Result<ProviderId> {
        let label = new.label.trim();
        if label.is_empty() || label.chars().count() > 100 {
            return Err(StoreError::Invalid("label: 1 to 100 characters".into()));
        }
        if let Some(bad) = new.numbers.iter().position(|n| !valid_number(n)) {
            return Err(StoreError::Invalid(format!(
                "numbers[{bad}]: a phone number in E.164 form, such as +13125550100"
            )));
        }
        let today = self.practice_today(practice).await?;
        let mut tx = self.begin().await?;
        let agreement = match new.agreement {
            Some(id) => Some(
                agreement_in(&mut tx, practice, id)
                    .await?
                    .ok_or(StoreError::NotFound)?,
            ),
            None => None,
        };
        let real: Option<String> = sqlx::query_scalar(
            "SELECT id FROM channel_providers WHERE practice_id = $1 AND enabled = 1 AND kind <> 'local_outbox' LIMIT 1",
        )
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        vendors::may_enable(
            new.kind,
            agreement.as_ref().map(|a| &a.basis),
            today,
            real.is_some(),
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let id = ProviderId::new();
        let id_text = id.to_string();
        let now = tx.now_micros();
        // A real provider replaces the demo outbox for the practice.
        if !new.kind.is_demo_only() {
            sqlx::query(
                "UPDATE channel_providers SET enabled = 0, updated_at = $1 WHERE practice_id = $2 AND kind = 'local_outbox'",
            )
            .bind(now)
            .bind(practice.to_string())
            .execute(&mut *tx.tx)
            .await?;
        }
        // The new provider replaces an enabled one of the same medium.
        sqlx::query(
            "UPDATE channel_providers SET enabled = 0, updated_at = $1 WHERE practice_id = $2 AND medium = $3 AND enabled = 1",
        )
        .bind(now)
        .bind(practice.to_string())
        .bind(medium_str(new.kind.medium()))
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "INSERT INTO channel_providers (id, practice_id, kind, medium, label, credentials, agreement_id, enabled, \
             expiry_alerted_on, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, NULL, $8, $8)",
        )
        .bind(&id_text)
        .bind(practice.to_string())
        .bind(new.kind.as_str())
        .bind(medium_str(new.kind.medium()))
        .bind(label)
        .bind(keys.provider_credentials.seal_str(
            FieldAad::new("channel_providers", "credentials", &id_text),
            new.credentials.expose(),
        ))
        .bind(agreement.as_ref().map(|a| a.id.to_string()))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        for number in &new.numbers {
            let taken: Option<String> =
                sqlx::query_scalar("SELECT practice_id FROM provider_numbers WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict(
                    "a sender number belongs to one practice and one provider; this one is already configured",
                ));
            }
            sqlx::query("INSERT INTO provider_numbers (number, provider_id, practice_id) VALUES ($1, $2, $3)")
                .bind(number)
                .bind(&id_text)
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.audit(vendor_event(
            practice,
            actor,
            ctx,
            Action::ProviderChange,
            id_text,
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(id)
    }

    /// Records a renewed agreement for a provider and releases what waited for it: the
    /// practice's queued jobs on the provider's medium become due now, each to be sent once.
    pub async fn renew_agreement(
        &self,
        practice: PracticeId,
        provider: ProviderId,
        actor: Actor,
        ctx: &RequestContext,
        terms: &AgreementTerms,
    ) -> Result<AgreementId> {
        let today = self.practice_today(practice).await?;
        terms.validate(today).map_err(fields_error)?;
        let mut tx = self.begin().await?;
        let medium: Option<String> = sqlx::query_scalar(
            "SELECT medium FROM channel_providers WHERE id = $1 AND practice_id = $2",
        )
        .bind(provider.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        let medium = medium.ok_or(StoreError::NotFound)?;
        let id = insert_agreement(&mut tx, practice, &actor, terms).await?;
        let now = tx.now_micros();
        sqlx::query(
            "UPDATE channel_providers SET agreement_id = $1, expiry_alerted_on = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(provider.to_string())
        .execute(&mut *tx.tx)
        .await?;
        let mediums: &[&str] = match medium.as_str() {
            "sms" => &["sms"],
            "email" => &["email"],
            _ => &["sms", "email"],
        };
        for m in mediums {
            sqlx::query(
                "UPDATE outbox_jobs SET next_attempt_at = $1, updated_at = $1 \
                 WHERE practice_id = $2 AND medium = $3 AND status = 'pending' AND next_attempt_at > $1",
            )
            .bind(now)
            .bind(practice.to_string())
            .bind(*m)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.audit(vendor_event(
            practice,
            actor,
            ctx,
            Action::AgreementRecord,
            id.to_string(),
        ));
        tx.commit().await?;
        self.inbox_changed();
        Ok(id)
    }

    /// The practice's providers with their agreements and coverage today: the BAA report.
    pub async fn list_providers(&self, practice: PracticeId) -> Result<Vec<ProviderSummary>> {
        let today = self.practice_today(practice).await?;
        let rows: Vec<(String, String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT id, kind, label, agreement_id, enabled FROM channel_providers WHERE practice_id = $1 ORDER BY created_at, id",
        )
        .bind(practice.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, kind, label, agreement_id, enabled) in rows {
            let kind = ProviderKind::parse(&kind).ok_or_else(|| malformed("provider kind"))?;
            let agreement = match agreement_id {
                Some(a) => agreement_in_conn(&mut conn, practice, &a).await?,
                None => None,
            };
            let numbers = numbers_of(&mut conn, &id).await?;
            out.push(ProviderSummary {
                id: id.parse().map_err(|_| malformed("provider id"))?,
                kind,
                label,
                enabled: enabled != 0,
                numbers,
                coverage: vendors::coverage(kind, agreement.as_ref().map(|a| &a.basis), today),
                agreement,
            });
        }
        Ok(out)
    }

    /// The enabled provider of a practice for a medium, with its credentials opened.
    pub async fn enabled_provider(
        &self,
        practice: PracticeId,
        medium: Medium,
    ) -> Result<Option<ProviderRecord>> {
        let medium = match medium {
            Medium::Sms => "sms",
            Medium::Email => "email",
        };
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM channel_providers WHERE practice_id = $1 AND enabled = 1 AND medium IN ($2, 'both') \
             ORDER BY medium = 'both', id LIMIT 1",
        )
        .bind(practice.to_string())
        .bind(medium)
        .fetch_optional(&self.pool)
        .await?;
        match id {
            Some(id) => {
                self.provider_record(id.parse().map_err(|_| malformed("provider id"))?)
                    .await
            }
            None => Ok(None),
        }
    }

    /// One provider by id, with its credentials opened (webhooks name their provider).
    pub async fn provider_record(&self, id: ProviderId) -> Result<Option<ProviderRecord>> {
        let mut conn = self.pool.acquire().await?;
        type Row = (String, String, Vec<u8>, Option<String>, Option<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT practice_id, kind, credentials, agreement_id, expiry_alerted_on FROM channel_providers WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((practice, kind, sealed, agreement_id, alerted)) = row else {
            return Ok(None);
        };
        let practice: PracticeId = practice
            .parse()
            .map_err(|_| malformed("provider practice"))?;
        let keys = self.ring.practice_keys(&mut conn, practice).await?;
        let id_text = id.to_string();
        let credentials = keys.provider_credentials.open_string(
            FieldAad::new("channel_providers", "credentials", &id_text),
            &sealed,
        )?;
        let agreement = match agreement_id {
            Some(a) => agreement_in_conn(&mut conn, practice, &a).await?,
            None => None,
        };
        Ok(Some(ProviderRecord {
            id,
            practice,
            kind: ProviderKind::parse(&kind).ok_or_else(|| malformed("provider kind"))?,
            credentials: Sensitive::new(credentials),
            numbers: numbers_of(&mut conn, &id_text).await?,
            agreement,
            expiry_alerted_on: alerted.as_deref().map(parse_date).transpose()?,
        }))
    }

    /// Records that the admins were alerted about an agreement's expiry; `false` when another
    /// worker already did (one alert per expiry). Audited in the same transaction.
    pub async fn mark_expiry_alerted(
        &self,
        provider: &ProviderRecord,
        expired_on: Date,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE channel_providers SET expiry_alerted_on = $1 WHERE id = $2 \
             AND (expiry_alerted_on IS NULL OR expiry_alerted_on <> $1)",
        )
        .bind(expired_on.to_string())
        .bind(provider.id.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        tx.audit(AuditEvent {
            scope: ChainScope::Practice(provider.practice),
            actor: Actor::System,
            action: Action::AgreementExpired,
            targets: vec![
                provider.id.to_string(),
                provider
                    .agreement
                    .as_ref()
                    .map(|a| a.id.to_string())
                    .unwrap_or_default(),
            ],
            outcome: Outcome::Success,
            context: RequestContext::default(),
        });
        tx.commit().await?;
        Ok(true)
    }
}

async fn insert_agreement(
    tx: &mut WriteTx<'_>,
    practice: PracticeId,
    actor: &Actor,
    terms: &AgreementTerms,
) -> Result<AgreementId> {
    let id = AgreementId::new();
    let (basis, effective_on, expires_on, sha) = basis_columns(&terms.basis);
    let recorded_by = match actor {
        Actor::User(u) => Some(u.to_string()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO vendor_agreements (id, practice_id, vendor, basis, effective_on, expires_on, document_sha256, \
         recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(practice.to_string())
    .bind(terms.vendor.trim())
    .bind(basis)
    .bind(effective_on.to_string())
    .bind(expires_on.map(|d| d.to_string()))
    .bind(sha)
    .bind(recorded_by)
    .bind(tx.now_micros())
    .execute(&mut *tx.tx)
    .await?;
    Ok(id)
}

async fn agreement_in(
    tx: &mut WriteTx<'_>,
    practice: PracticeId,
    id: AgreementId,
) -> Result<Option<Agreement>> {
    agreement_in_conn(&mut tx.tx, practice, &id.to_string()).await
}

async fn agreement_in_conn(
    conn: &mut sqlx::AnyConnection,
    practice: PracticeId,
    id: &str,
) -> Result<Option<Agreement>> {
    let row: Option<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGREEMENT_COLUMNS} FROM vendor_agreements WHERE id = $1 AND practice_id = $2"
    )))
    .bind(id)
    .bind(practice.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(agreement_of).transpose()
}

async fn numbers_of(conn: &mut sqlx::AnyConnection, provider: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT number FROM provider_numbers WHERE provider_id = $1 ORDER BY number",
    )
    .bind(provider)
    .fetch_all(&mut *conn)
    .await?)
}
