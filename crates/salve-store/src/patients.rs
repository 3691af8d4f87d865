//! Patients: every identifying field sealed under the patient's own data key, contact points
//! and MRN found through the practice's blind index, and one audit event per call.

use std::sync::Arc;

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::clock::from_micros;
use salve_core::patient::{
    Contact, ContactKind, ContactRole, InputContext, PatientPatchInput, PatientRecord,
};
use salve_core::permissions::{
    Decision, DenyReason, Operation, PatientGuard, Principal, RestrictedVisibility, TeamGate,
    authorize,
};
use salve_core::validation::{self, FieldError};
use salve_core::{PatientId, PracticeId, Sensitive, UserId};
use salve_crypto::{FieldAad, SymmetricKey};
use sqlx::AnyConnection;
use sqlx::Row;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::names::NameIndex;
use crate::tx::WriteTx;
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: PatientId,
    pub practice_id: PracticeId,
    pub record: PatientRecord,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One restricted patient: the record only when the caller may see it.
#[derive(Debug, Clone)]
pub struct RestrictedPatient {
    pub id: PatientId,
    pub patient: Option<Patient>,
    /// The staff named on it (who may see it).
    pub named: Vec<UserId>,
}

#[derive(Debug, Clone)]
pub struct PatientPage {
    pub patients: Vec<Patient>,
    /// Pass as `after` to get the next page.
    pub next_after: Option<PatientId>,
}

/// How a client finds a patient by an exact identifier.
#[derive(Debug, Clone)]
pub enum Lookup {
    Phone(Sensitive<String>),
    Email(Sensitive<String>),
    Mrn(Sensitive<String>),
}

/// A create request's idempotency: hashes of the client's key and of the request body.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency {
    pub key_hash: [u8; 32],
    pub request_hash: [u8; 32],
}

impl Idempotency {
    /// The resource this actor's key already created, if any; the same key with another body
    /// is [`StoreError::IdempotencyMismatch`].
    pub(crate) async fn prior(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        actor_key: &str,
    ) -> Result<Option<String>> {
        let prior: Option<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT request_hash, resource_id FROM idempotency_keys \
             WHERE practice_id = $1 AND actor = $2 AND key_hash = $3",
        )
        .bind(practice.to_string())
        .bind(actor_key)
        .bind(self.key_hash.to_vec())
        .fetch_optional(&mut *conn)
        .await?;
        match prior {
            Some((request_hash, resource)) => {
                if !salve_crypto::ct_eq(&request_hash, &self.request_hash) {
                    return Err(StoreError::IdempotencyMismatch);
                }
                Ok(Some(resource))
            }
            None => Ok(None),
        }
    }

    /// Records that this actor's key created `resource`, in the creating transaction (written
    /// at its commit).
    pub(crate) fn record(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        actor_key: &str,
        resource: &str,
    ) {
        let now = tx.now_micros();
        tx.defer(
            "INSERT INTO idempotency_keys (practice_id, actor, key_hash, request_hash, status, resource_id, created_at) \
             VALUES ($1, $2, $3, $4, 201, $5, $6)",
        )
        .bind(practice.to_string())
        .bind(actor_key.to_owned())
        .bind(self.key_hash.to_vec())
        .bind(self.request_hash.to_vec())
        .bind(resource.to_owned())
        .bind(now);
    }
}

pub const MAX_PAGE: usize = 200;

/// The answer to a change made against a version that is no longer current (HTTP 412).
pub const PATIENT_VERSION_CONFLICT: &str =
    "the patient changed since the version given; read it again";

fn blind_kind(kind: ContactKind) -> &'static str {
    kind.as_str()
}

/// Email look-ups ignore case entirely; stored values keep the local part as given.
fn email_lookup_form(value: &str) -> String {
    value.to_lowercase()
}

fn lookup_value(kind: ContactKind, value: &str) -> String {
    match kind {
        ContactKind::Phone => value.to_owned(),
        ContactKind::Email => email_lookup_form(value),
    }
}

fn event(
    practice: PracticeId,
    actor: &Actor,
    ctx: &RequestContext,
    action: Action,
    targets: Vec<String>,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent {
        scope: ChainScope::Practice(practice),
        actor: actor.clone(),
        action,
        targets,
        outcome,
        context: ctx.clone(),
    }
}

impl Store {
    /// What input validation needs to know about a practice (region, today's date).
    pub async fn input_context(&self, practice: PracticeId) -> Result<InputContext> {
        let p = self.practice(practice).await?;
        Ok(InputContext {
            phone_region: p.phone_region,
            today: self.clock.now().date(),
        })
    }

    pub async fn create_patient(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        record: &PatientRecord,
        idempotency: Option<Idempotency>,
    ) -> Result<(Patient, bool)> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let actor_key = format!("{}:{}", actor.kind(), actor.id());
        if let Some(idem) = idempotency
            && let Some(resource) = idem.prior(&mut tx.tx, practice, &actor_key).await?
        {
            let id: PatientId = resource
                .parse()
                .map_err(|_| StoreError::KeyRing("malformed idempotency row".into()))?;
            let patient = self.load_patient(&mut tx.tx, practice, id).await?;
            tx.audit(event(
                practice,
                actor,
                ctx,
                Action::PatientRead,
                vec![id.to_string()],
                Outcome::Success,
            ));
            tx.commit().await?;
            return Ok((patient, true));
        }
        let patient = self
            .insert_patient_in(&mut tx, practice, actor, ctx, record)
            .await?;
        let row = patient.id.to_string();
        if let Some(idem) = idempotency {
            idem.record(&mut tx, practice, &actor_key, &row);
        }
        tx.commit().await?;
        Ok((patient, false))
    }

    /// Inserts a new patient (keys, contacts, blind indexes) with its `patient.create` audit
    /// event, inside the caller's transaction. Permission is the caller's to check.
    pub(crate) async fn insert_patient_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        actor: &Actor,
        ctx: &RequestContext,
        record: &PatientRecord,
    ) -> Result<Patient> {
        let id = PatientId::new();
        let now = tx.now_micros();
        let blind = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let key = self.ring.new_patient_key();
        let row = id.to_string();
        let sealed = SealedFields::new(&key, &blind.blind_index, &row, record);
        sqlx::query(
            "INSERT INTO patients (id, practice_id, given_name, family_name, birth_date, mrn, mrn_index, \
             preferred_language, time_zone, version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
        )
        .bind(&row)
        .bind(practice.to_string())
        .bind(sealed.given_name)
        .bind(sealed.family_name)
        .bind(sealed.birth_date)
        .bind(sealed.mrn)
        .bind(sealed.mrn_index)
        .bind(sealed.preferred_language)
        .bind(record.time_zone.clone())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        self.ring
            .attach_patient_key(&mut tx.tx, practice, id, &key, now)
            .await?;
        write_contacts(
            &mut tx.tx,
            practice,
            id,
            &key,
            &blind.blind_index,
            &record.contacts,
        )
        .await?;
        bump_generation(&mut tx.tx, practice).await?;
        tx.audit(event(
            practice,
            actor,
            ctx,
            Action::PatientCreate,
            vec![row.clone()],
            Outcome::Success,
        ));
        Ok(Patient {
            id,
            practice_id: practice,
            record: record.clone(),
            version: 1,
            created_at: from_micros(now),
            updated_at: from_micros(now),
        })
    }

    pub async fn read_patient(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: PatientId,
    ) -> Result<Patient> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let result = match self
            .guard_patient(&mut tx.tx, practice, principal, Operation::PatientRead, id)
            .await
        {
            Ok(()) => self.load_patient(&mut tx.tx, practice, id).await,
            Err(e) => Err(e),
        };
        self.finish_single(tx, practice, actor, ctx, Action::PatientRead, id, result)
            .await
    }

    /// Applies the gate to one patient: restricted patients need a name on them or the glass.
    async fn guard_patient(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        op: Operation,
        id: PatientId,
    ) -> Result<()> {
        self.guard_patient_in_team(conn, practice, principal, op, id, TeamGate::Open)
            .await
    }

    /// The gate, for an operation on a conversation whose team assignment is `team`.
    pub(crate) async fn guard_patient_in_team(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        op: Operation,
        id: PatientId,
        team: TeamGate,
    ) -> Result<()> {
        let restricted: Option<i64> = sqlx::query_scalar(
            "SELECT restricted FROM patients WHERE id = $1 AND practice_id = $2",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let restricted = restricted.ok_or(StoreError::NotFound)? != 0;
        let (named, break_glass) = match principal {
            Principal::Staff { user, .. } if restricted || team == TeamGate::Outsider => {
                let row: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM patient_access WHERE patient_id = $1 AND user_id = $2",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                (row.is_some(), self.has_break_glass(conn, id, *user).await?)
            }
            _ => (false, false),
        };
        let guard = PatientGuard {
            restricted,
            named,
            break_glass,
            team,
        };
        match authorize(principal, op, Some(&guard)) {
            Decision::Allow => Ok(()),
            Decision::BreakGlassRequired => Err(StoreError::BreakGlassRequired),
            // Not allowed to know it exists: the same answer as for no such patient.
            Decision::Deny(DenyReason::Restricted) => Err(StoreError::Hidden),
            Decision::Deny(_) => Err(StoreError::Forbidden),
        }
    }

    /// The gate for other modules' operations on one patient.
    pub(crate) async fn guard_patient_op(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        op: Operation,
        id: PatientId,
    ) -> Result<()> {
        check_practice(principal, practice)?;
        self.guard_patient(conn, practice, principal, op, id).await
    }

    /// Whether a patient may appear in this principal's lists, searches and look-ups.
    pub(crate) async fn visible(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        principal: &Principal,
        id: PatientId,
    ) -> Result<bool> {
        match principal.restricted_visibility() {
            RestrictedVisibility::All => Ok(true),
            RestrictedVisibility::NamedOrGranted(_) => {
                match self
                    .guard_patient(conn, practice, principal, Operation::PatientRead, id)
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(StoreError::Hidden | StoreError::BreakGlassRequired) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Commits the one audit event of a single-patient call, success or not; a call that fails
    /// for a reason other than "not found"/"shredded" is still recorded as a failure.
    #[allow(clippy::too_many_arguments)]
    async fn finish_single(
        &self,
        mut tx: WriteTx<'_>,
        practice: PracticeId,
        actor: &Actor,
        ctx: &RequestContext,
        action: Action,
        id: PatientId,
        result: Result<Patient>,
    ) -> Result<Patient> {
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(StoreError::Hidden | StoreError::BreakGlassRequired | StoreError::Forbidden) => {
                Outcome::Denied
            }
            Err(_) => Outcome::Failure,
        };
        match &result {
            Ok(_)
            | Err(
                StoreError::NotFound
                | StoreError::Shredded
                | StoreError::Hidden
                | StoreError::BreakGlassRequired
                | StoreError::Forbidden,
            ) => {
                tx.audit(event(
                    practice,
                    actor,
                    ctx,
                    action,
                    vec![id.to_string()],
                    outcome,
                ));
                tx.commit().await?;
            }
            Err(_) => {
                drop(tx);
                self.record_audit(event(
                    practice,
                    actor,
                    ctx,
                    action,
                    vec![id.to_string()],
                    outcome,
                ))
                .await?;
            }
        }
        result
    }

    pub async fn update_patient(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: PatientId,
        patch: &PatientPatchInput,
        input: &InputContext,
    ) -> Result<std::result::Result<Patient, Vec<FieldError>>> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let result = match self
            .update_patient_in(&mut tx, practice, principal, id, patch, input, None)
            .await
        {
            Ok(Err(errors)) => return Ok(Err(errors)),
            Ok(Ok(p)) => Ok(p),
            Err(e) => Err(e),
        };
        self.finish_single(tx, practice, actor, ctx, Action::PatientUpdate, id, result)
            .await
            .map(Ok)
    }

    /// Changes a patient inside the caller's transaction: the gate, the version the caller saw
    /// (`Conflict(PATIENT_VERSION_CONFLICT)` if it moved on), validation, the sealed write.
    /// Nothing is written before a refusal; the caller adds the audit event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_patient_in(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        principal: &Principal,
        id: PatientId,
        patch: &PatientPatchInput,
        input: &InputContext,
        expected_version: Option<i64>,
    ) -> Result<std::result::Result<Patient, Vec<FieldError>>> {
        self.guard_patient(
            &mut tx.tx,
            practice,
            principal,
            Operation::PatientUpdate,
            id,
        )
        .await?;
        let current = self.load_patient(&mut tx.tx, practice, id).await?;
        if expected_version.is_some_and(|v| v != current.version) {
            return Err(StoreError::Conflict(PATIENT_VERSION_CONFLICT));
        }
        let record = match current.record.patched(patch, input) {
            Ok(r) => r,
            Err(errors) => return Ok(Err(errors)),
        };
        self.write_update(tx, practice, &current, &record)
            .await
            .map(Ok)
    }

    async fn write_update(
        &self,
        tx: &mut WriteTx<'_>,
        practice: PracticeId,
        current: &Patient,
        record: &PatientRecord,
    ) -> Result<Patient> {
        let id = current.id;
        let now = tx.now_micros();
        let key = self.ring.patient_key(&mut tx.tx, practice, id).await?;
        let blind = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let row = id.to_string();
        let sealed = SealedFields::new(&key, &blind.blind_index, &row, record);
        let version = current.version + 1;
        let changed = sqlx::query(
            "UPDATE patients SET given_name = $1, family_name = $2, birth_date = $3, mrn = $4, \
             mrn_index = $5, preferred_language = $6, time_zone = $7, version = $8, updated_at = $9 \
             WHERE id = $10 AND practice_id = $11 AND version = $12",
        )
        .bind(sealed.given_name)
        .bind(sealed.family_name)
        .bind(sealed.birth_date)
        .bind(sealed.mrn)
        .bind(sealed.mrn_index)
        .bind(sealed.preferred_language)
        .bind(record.time_zone.clone())
        .bind(version)
        .bind(now)
        .bind(&row)
        .bind(practice.to_string())
        .bind(current.version)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        // Another writer got there first (read-committed PostgreSQL): the caller's view is stale.
        if changed != 1 {
            return Err(StoreError::Conflict(PATIENT_VERSION_CONFLICT));
        }
        if record.contacts != current.record.contacts {
            sqlx::query("DELETE FROM contacts WHERE patient_id = $1 AND practice_id = $2")
                .bind(&row)
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?;
            write_contacts(
                &mut tx.tx,
                practice,
                id,
                &key,
                &blind.blind_index,
                &record.contacts,
            )
            .await?;
        }
        bump_generation(&mut tx.tx, practice).await?;
        Ok(Patient {
            id,
            practice_id: practice,
            record: record.clone(),
            version,
            created_at: current.created_at,
            updated_at: from_micros(now),
        })
    }

    /// A page of the practice's patients in id (creation) order.
    pub async fn list_patients(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        after: Option<PatientId>,
        limit: usize,
    ) -> Result<PatientPage> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let mut tx = self.begin().await?;
        // Restricted patients appear only to those named on them: filtered in the query so
        // that pages keep their size.
        let named_user = match principal.restricted_visibility() {
            RestrictedVisibility::All => String::new(),
            RestrictedVisibility::NamedOrGranted(user) => user.to_string(),
        };
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE practice_id = $1 AND shredded_at IS NULL AND id > $2 \
             AND (restricted = 0 OR $4 = '' OR EXISTS (SELECT 1 FROM patient_access a \
                  WHERE a.patient_id = patients.id AND a.user_id = $4) \
                  OR EXISTS (SELECT 1 FROM break_glass_grants g \
                  WHERE g.patient_id = patients.id AND g.user_id = $4 AND g.expires_at > $5)) \
             ORDER BY id LIMIT $3",
        )
        .bind(practice.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit as i64 + 1)
        .bind(named_user)
        .bind(tx.now_micros())
        .fetch_all(&mut *tx.tx)
        .await?;
        let more = ids.len() > limit;
        let mut patients = Vec::with_capacity(limit);
        for id in ids.into_iter().take(limit) {
            let id = parse_id(&id)?;
            patients.push(self.load_patient(&mut tx.tx, practice, id).await?);
        }
        let next_after = if more {
            patients.last().map(|p| p.id)
        } else {
            None
        };
        self.finish_many(tx, practice, actor, ctx, Action::PatientList, &patients)
            .await?;
        Ok(PatientPage {
            patients,
            next_after,
        })
    }

    async fn finish_many(
        &self,
        mut tx: WriteTx<'_>,
        practice: PracticeId,
        actor: &Actor,
        ctx: &RequestContext,
        action: Action,
        patients: &[Patient],
    ) -> Result<()> {
        tx.audit(event(
            practice,
            actor,
            ctx,
            action,
            patients.iter().map(|p| p.id.to_string()).collect(),
            Outcome::Success,
        ));
        tx.commit().await
    }

    /// Patients whose name contains every word of `query`.
    pub async fn search_patients(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Patient>> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let mut tx = self.begin().await?;
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT patients_generation FROM practices WHERE id = $1")
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
        let generation = generation.ok_or(StoreError::NotFound)?;
        let index = match self.names.get(practice, generation) {
            Some(index) => index,
            None => {
                let index = Arc::new(
                    self.build_name_index(&mut tx.tx, practice, generation)
                        .await?,
                );
                self.names.put(practice, index.clone());
                index
            }
        };
        let mut patients = Vec::new();
        for id in index.search(query, usize::MAX) {
            if patients.len() == limit {
                break;
            }
            if self.visible(&mut tx.tx, practice, principal, id).await? {
                patients.push(self.load_patient(&mut tx.tx, practice, id).await?);
            }
        }
        self.finish_many(tx, practice, actor, ctx, Action::PatientSearch, &patients)
            .await?;
        Ok(patients)
    }

    pub(crate) async fn build_name_index(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        generation: i64,
    ) -> Result<NameIndex> {
        let rows = sqlx::query(
            "SELECT id, given_name, family_name FROM patients \
             WHERE practice_id = $1 AND shredded_at IS NULL ORDER BY id",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let id_text: String = row.try_get(0)?;
            let id = parse_id(&id_text)?;
            let key = self.ring.patient_key(conn, practice, id).await?;
            let given: Vec<u8> = row.try_get(1)?;
            let family: Vec<u8> = row.try_get(2)?;
            let given = Zeroizing::new(
                key.open_string(FieldAad::new("patients", "given_name", &id_text), &given)?,
            );
            let family = Zeroizing::new(
                key.open_string(FieldAad::new("patients", "family_name", &id_text), &family)?,
            );
            entries.push((
                id,
                Zeroizing::new(format!("{} {}", given.as_str(), family.as_str()).to_lowercase()),
            ));
        }
        Ok(NameIndex {
            generation,
            entries,
        })
    }

    /// Patients with exactly this phone, email or MRN (a family phone may match several).
    pub async fn lookup_patients(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        lookup: &Lookup,
    ) -> Result<Vec<Patient>> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let keys = self.ring.practice_keys(&mut tx.tx, practice).await?;
        let ids: Vec<String> = match lookup {
            Lookup::Mrn(mrn) => {
                sqlx::query_scalar(
                    "SELECT id FROM patients WHERE practice_id = $1 AND mrn_index = $2 AND shredded_at IS NULL",
                )
                .bind(practice.to_string())
                .bind(keys.blind_index.blind_index("mrn", mrn.expose()).to_vec())
                .fetch_all(&mut *tx.tx)
                .await?
            }
            Lookup::Phone(v) | Lookup::Email(v) => {
                let kind = if matches!(lookup, Lookup::Phone(_)) {
                    ContactKind::Phone
                } else {
                    ContactKind::Email
                };
                let index = keys
                    .blind_index
                    .blind_index(blind_kind(kind), &lookup_value(kind, v.expose()));
                sqlx::query_scalar(
                    "SELECT DISTINCT patient_id FROM contacts WHERE practice_id = $1 AND kind = $2 \
                     AND lookup = $3 ORDER BY patient_id",
                )
                .bind(practice.to_string())
                .bind(kind.as_str())
                .bind(index.to_vec())
                .fetch_all(&mut *tx.tx)
                .await?
            }
        };
        let mut patients = Vec::with_capacity(ids.len());
        for id in ids {
            let id = parse_id(&id)?;
            if !self.visible(&mut tx.tx, practice, principal, id).await? {
                continue;
            }
            match self.load_patient(&mut tx.tx, practice, id).await {
                Ok(p) => patients.push(p),
                Err(StoreError::Shredded) => {}
                Err(e) => return Err(e),
            }
        }
        self.finish_many(tx, practice, actor, ctx, Action::PatientLookup, &patients)
            .await?;
        Ok(patients)
    }

    /// Marks a patient restricted (or not) and names the staff who may see them. Every named
    /// user must be a member of the practice.
    pub async fn set_restriction(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: PatientId,
        restricted: bool,
        named: &[salve_core::UserId],
    ) -> Result<()> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let result = async {
            self.guard_patient(&mut tx.tx, practice, principal, Operation::PatientRestrict, id)
                .await?;
            for user in named {
                let member: Option<String> = sqlx::query_scalar(
                    "SELECT user_id FROM memberships WHERE user_id = $1 AND practice_id = $2",
                )
                .bind(user.to_string())
                .bind(practice.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?;
                if member.is_none() {
                    return Err(StoreError::Invalid(
                        "every named user must be a member of this practice".into(),
                    ));
                }
            }
            sqlx::query("UPDATE patients SET restricted = $1 WHERE id = $2 AND practice_id = $3")
                .bind(i64::from(restricted))
                .bind(id.to_string())
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?;
            sqlx::query("DELETE FROM patient_access WHERE patient_id = $1 AND practice_id = $2")
                .bind(id.to_string())
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?;
            for user in named {
                sqlx::query(
                    "INSERT INTO patient_access (patient_id, user_id, practice_id) VALUES ($1, $2, $3)",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .bind(practice.to_string())
                .execute(&mut *tx.tx)
                .await?;
            }
            Ok(())
        }
        .await;
        result?;
        tx.audit(event(
            practice,
            actor,
            ctx,
            Action::PatientRestrict,
            vec![id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await
    }

    /// The practice's restricted patients, each with the staff named on it. A patient the
    /// principal may not see (not named, no live break-glass) is listed without its record:
    /// that someone is restricted, and who may see them, is for the admins; who they are is
    /// not. Audited as a list of those patients.
    pub async fn restricted_patients(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
    ) -> Result<Vec<RestrictedPatient>> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE practice_id = $1 AND restricted = 1 AND shredded_at IS NULL ORDER BY id",
        )
        .bind(practice.to_string())
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let id = parse_id(&raw)?;
            let named: Vec<String> = sqlx::query_scalar(
                "SELECT user_id FROM patient_access WHERE patient_id = $1 AND practice_id = $2 ORDER BY user_id",
            )
            .bind(&raw)
            .bind(practice.to_string())
            .fetch_all(&mut *tx.tx)
            .await?;
            let named: Vec<UserId> = named
                .iter()
                .map(|u| {
                    u.parse()
                        .map_err(|_| StoreError::KeyRing("malformed user id".into()))
                })
                .collect::<Result<_>>()?;
            let visible = match principal.restricted_visibility() {
                RestrictedVisibility::All => true,
                RestrictedVisibility::NamedOrGranted(user) => {
                    named.contains(&user) || {
                        let granted: Option<i64> = sqlx::query_scalar(
                            "SELECT expires_at FROM break_glass_grants \
                             WHERE patient_id = $1 AND user_id = $2 AND expires_at > $3",
                        )
                        .bind(&raw)
                        .bind(user.to_string())
                        .bind(now)
                        .fetch_optional(&mut *tx.tx)
                        .await?;
                        granted.is_some()
                    }
                }
            };
            let patient = if visible {
                Some(self.load_patient(&mut tx.tx, practice, id).await?)
            } else {
                None
            };
            out.push(RestrictedPatient { id, patient, named });
        }
        tx.audit(event(
            practice,
            actor,
            &RequestContext {
                reason: Some("restricted".to_owned()),
                ..ctx.clone()
            },
            Action::PatientList,
            out.iter().map(|p| p.id.to_string()).collect(),
            Outcome::Success,
        ));
        tx.commit().await?;
        Ok(out)
    }

    /// Destroys a patient's data key at the end of retention. Content becomes unrecoverable;
    /// audit rows stay verifiable. The shred is also appended to the shred list file.
    pub async fn shred_patient(
        &self,
        practice: PracticeId,
        principal: &Principal,
        ctx: &RequestContext,
        id: PatientId,
    ) -> Result<()> {
        let actor = &principal.actor();
        check_practice(principal, practice)?;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        let exists: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT shredded_at FROM patients WHERE id = $1 AND practice_id = $2",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *tx.tx)
        .await?;
        match exists {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Err(StoreError::Shredded),
            Some(None) => {}
        }
        shred_rows(&mut tx.tx, practice, id, now).await?;
        tx.audit(event(
            practice,
            actor,
            ctx,
            Action::PatientShred,
            vec![id.to_string()],
            Outcome::Success,
        ));
        tx.commit().await?;
        self.ring.forget_patient(id);
        if let Some(path) = &self.shred_list {
            crate::backup::append_shred_list(path, practice, id, now)?;
        }
        Ok(())
    }

    pub(crate) async fn load_patient(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        id: PatientId,
    ) -> Result<Patient> {
        let row = sqlx::query(
            "SELECT given_name, family_name, birth_date, mrn, preferred_language, time_zone, version, \
             created_at, updated_at, shredded_at FROM patients WHERE id = $1 AND practice_id = $2",
        )
        .bind(id.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound)?;
        let shredded_at: Option<i64> = row.try_get(9)?;
        if shredded_at.is_some() {
            return Err(StoreError::Shredded);
        }
        let key = self.ring.patient_key(conn, practice, id).await?;
        let row_id = id.to_string();
        let open = |column: &str, bytes: &[u8]| {
            key.open_string(FieldAad::new("patients", column, &row_id), bytes)
                .map(Sensitive::new)
        };
        let given_name = open("given_name", &row.try_get::<Vec<u8>, _>(0)?)?;
        let family_name = open("family_name", &row.try_get::<Vec<u8>, _>(1)?)?;
        let birth_text = open("birth_date", &row.try_get::<Vec<u8>, _>(2)?)?;
        let birth_date = validation::birth_date("birth_date", birth_text.expose(), time::Date::MAX)
            .map_err(|_| StoreError::KeyRing("stored birth date is malformed".into()))?;
        let mrn_sealed: Option<Vec<u8>> = row.try_get(3)?;
        let mrn = match mrn_sealed {
            Some(sealed) => Some(open("mrn", sealed.as_slice())?),
            None => None,
        };
        let preferred_language = open("preferred_language", &row.try_get::<Vec<u8>, _>(4)?)?
            .expose()
            .clone();
        let contacts = load_contacts(conn, practice, id, &key).await?;
        Ok(Patient {
            id,
            practice_id: practice,
            record: PatientRecord {
                given_name,
                family_name,
                birth_date,
                mrn,
                preferred_language,
                time_zone: row.try_get(5)?,
                contacts,
            },
            version: row.try_get(6)?,
            created_at: from_micros(row.try_get(7)?),
            updated_at: from_micros(row.try_get(8)?),
        })
    }
}

/// A patient's columns as stored: each field sealed under the patient's key and bound to its
/// column and row; the MRN also as a blind index.
struct SealedFields {
    given_name: Vec<u8>,
    family_name: Vec<u8>,
    birth_date: Vec<u8>,
    mrn: Option<Vec<u8>>,
    mrn_index: Option<Vec<u8>>,
    preferred_language: Vec<u8>,
}

impl SealedFields {
    fn new(key: &SymmetricKey, blind: &SymmetricKey, row: &str, record: &PatientRecord) -> Self {
        let seal =
            |column: &str, value: &str| key.seal_str(FieldAad::new("patients", column, row), value);
        Self {
            given_name: seal("given_name", record.given_name.expose()),
            family_name: seal("family_name", record.family_name.expose()),
            birth_date: seal("birth_date", &validation::format_date(record.birth_date)),
            mrn: record.mrn.as_ref().map(|m| seal("mrn", m.expose())),
            mrn_index: record
                .mrn
                .as_ref()
                .map(|m| blind.blind_index("mrn", m.expose()).to_vec()),
            preferred_language: seal("preferred_language", &record.preferred_language),
        }
    }
}

pub(crate) async fn shred_rows(
    conn: &mut AnyConnection,
    practice: PracticeId,
    id: PatientId,
    now: i64,
) -> Result<()> {
    let (p, i) = (practice.to_string(), id.to_string());
    sqlx::query("DELETE FROM patient_keys WHERE patient_id = $1 AND practice_id = $2")
        .bind(&i)
        .bind(&p)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE patients SET shredded_at = $1, mrn_index = NULL WHERE id = $2 AND practice_id = $3",
    )
    .bind(now)
    .bind(&i)
    .bind(&p)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE contacts SET lookup = NULL WHERE patient_id = $1 AND practice_id = $2")
        .bind(&i)
        .bind(&p)
        .execute(&mut *conn)
        .await?;
    // The EHR's appointment ids stop pointing at the shredded record (a later import may reuse
    // them), and no reminder waits for its answer.
    sqlx::query(
        "UPDATE appointments SET external_id_index = NULL WHERE patient_id = $1 AND practice_id = $2",
    )
    .bind(&i)
    .bind(&p)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE appointment_reminders SET awaits_answer = 0 WHERE patient_id = $1 AND practice_id = $2",
    )
    .bind(&i)
    .bind(&p)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO shredded_patients (patient_id, practice_id, shredded_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&i)
    .bind(&p)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    bump_generation(conn, practice).await
}

/// A principal bound to one practice may act only in it.
pub(crate) fn check_practice(principal: &Principal, practice: PracticeId) -> Result<()> {
    match principal.practice() {
        Some(p) if p != practice => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

fn parse_id(text: &str) -> Result<PatientId> {
    text.parse()
        .map_err(|_| StoreError::KeyRing("malformed patient id".into()))
}

async fn bump_generation(conn: &mut AnyConnection, practice: PracticeId) -> Result<()> {
    sqlx::query("UPDATE practices SET patients_generation = patients_generation + 1 WHERE id = $1")
        .bind(practice.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn write_contacts(
    conn: &mut AnyConnection,
    practice: PracticeId,
    patient: PatientId,
    key: &SymmetricKey,
    blind: &SymmetricKey,
    contacts: &[Contact],
) -> Result<()> {
    for (position, c) in contacts.iter().enumerate() {
        let id = uuid::Uuid::now_v7().to_string();
        let value = key.seal_str(FieldAad::new("contacts", "value", &id), c.value.expose());
        let lookup = blind.blind_index(blind_kind(c.kind), &lookup_value(c.kind, c.value.expose()));
        sqlx::query(
            "INSERT INTO contacts (id, practice_id, patient_id, position, kind, role, value, lookup) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(position as i64)
        .bind(c.kind.as_str())
        .bind(c.role.as_str())
        .bind(value)
        .bind(lookup.to_vec())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(crate) async fn load_contacts(
    conn: &mut AnyConnection,
    practice: PracticeId,
    patient: PatientId,
    key: &SymmetricKey,
) -> Result<Vec<Contact>> {
    let rows: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, kind, role, value FROM contacts WHERE patient_id = $1 AND practice_id = $2 ORDER BY position",
    )
    .bind(patient.to_string())
    .bind(practice.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(id, kind, role, value)| {
            let malformed = || StoreError::KeyRing("malformed contact row".into());
            Ok(Contact {
                kind: ContactKind::parse(&kind).ok_or_else(malformed)?,
                role: ContactRole::parse(&role).ok_or_else(malformed)?,
                value: Sensitive::new(
                    key.open_string(FieldAad::new("contacts", "value", &id), &value)?,
                ),
            })
        })
        .collect()
}
