//! The key ring: keys wrapped by the master key (per practice, and the system's own), and the
//! per-patient data keys wrapped by their practice key. Unwrapped keys are cached in memory.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use salve_core::{PatientId, PracticeId};
use salve_crypto::audit::AuditSigner;
use salve_crypto::{MasterKey, SymmetricKey};
use sqlx::AnyConnection;

use crate::{Result, StoreError};

pub(crate) const PURPOSE_PRACTICE: &str = "practice";
pub(crate) const PURPOSE_BLIND_INDEX: &str = "blind_index";
pub(crate) const PURPOSE_AUDIT_SIGNING: &str = "audit_signing";
pub(crate) const PURPOSE_PROVIDER_CREDENTIALS: &str = "provider_credentials";
pub(crate) const SYSTEM_SEALING_KEY_ID: &str = "system-sealing";
pub(crate) const SYSTEM_SIGNING_KEY_ID: &str = "system-audit-signing";
pub(crate) const SYSTEM_BLIND_INDEX_KEY_ID: &str = "system-blind-index";
const PURPOSE_SYSTEM: &str = "system";
const PURPOSE_SYSTEM_SIGNING: &str = "system_audit_signing";
const PURPOSE_SYSTEM_BLIND_INDEX: &str = "system_blind_index";

/// A practice's keys, unwrapped.
pub(crate) struct PracticeKeys {
    /// Wraps per-patient data keys; seals the practice's audit context.
    pub practice: SymmetricKey,
    pub blind_index: SymmetricKey,
    pub audit_signing: SymmetricKey,
    /// Seals SMS/email provider credentials (used by the channels work).
    #[allow(dead_code)]
    pub provider_credentials: SymmetricKey,
}

/// The keys of one audit chain: what seals its context and what signs its checkpoints.
pub(crate) struct ChainKeys {
    pub sealing: SymmetricKey,
    pub signing: SymmetricKey,
}

/// The system's keys for data that belongs to no single practice (staff accounts).
pub(crate) struct SystemKeys {
    pub sealing: SymmetricKey,
    pub blind_index: SymmetricKey,
}

impl ChainKeys {
    pub fn signer(&self) -> AuditSigner {
        AuditSigner::from_key(&self.signing)
    }
}

pub(crate) struct KeyRing {
    master: MasterKey,
    practices: RwLock<HashMap<PracticeId, Arc<PracticeKeys>>>,
    patients: RwLock<HashMap<PatientId, Arc<SymmetricKey>>>,
    system: RwLock<Option<Arc<ChainKeys>>>,
    system_data: RwLock<Option<Arc<SystemKeys>>>,
}

fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

impl KeyRing {
    pub fn new(master: MasterKey) -> Self {
        Self {
            master,
            practices: RwLock::default(),
            patients: RwLock::default(),
            system: RwLock::default(),
            system_data: RwLock::default(),
        }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Generates, wraps and stores a new practice's keys inside the caller's transaction.
    pub async fn create_practice_keys(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        now: i64,
    ) -> Result<Arc<PracticeKeys>> {
        let keys = PracticeKeys {
            practice: SymmetricKey::generate(format!("pk-{}", uuid::Uuid::new_v4())),
            blind_index: SymmetricKey::generate(format!("bi-{}", uuid::Uuid::new_v4())),
            audit_signing: SymmetricKey::generate(format!("as-{}", uuid::Uuid::new_v4())),
            provider_credentials: SymmetricKey::generate(format!("pc-{}", uuid::Uuid::new_v4())),
        };
        let practice_id = practice.to_string();
        for (key, purpose) in [
            (&keys.practice, PURPOSE_PRACTICE),
            (&keys.blind_index, PURPOSE_BLIND_INDEX),
            (&keys.audit_signing, PURPOSE_AUDIT_SIGNING),
            (&keys.provider_credentials, PURPOSE_PROVIDER_CREDENTIALS),
        ] {
            let public = (purpose == PURPOSE_AUDIT_SIGNING)
                .then(|| AuditSigner::from_key(key).public_key().to_vec());
            self.insert_key(conn, key, Some(&practice_id), purpose, public, now)
                .await?;
        }
        let keys = Arc::new(keys);
        self.practices
            .write()
            .unwrap_or_else(poisoned)
            .insert(practice, keys.clone());
        Ok(keys)
    }

    async fn insert_key(
        &self,
        conn: &mut AnyConnection,
        key: &SymmetricKey,
        practice_id: Option<&str>,
        purpose: &str,
        public_key: Option<Vec<u8>>,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO ring_keys (id, practice_id, purpose, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(key.id())
        .bind(practice_id)
        .bind(purpose)
        .bind(public_key)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            > 0;
        if inserted {
            sqlx::query(
                "INSERT INTO key_wraps (key_id, master_key_id, wrapped) VALUES ($1, $2, $3)",
            )
            .bind(key.id())
            .bind(self.master.id())
            .bind(self.master.wrap(key))
            .execute(&mut *conn)
            .await?;
        }
        Ok(inserted)
    }

    /// Creates the system chain's keys the first time a database is opened.
    pub async fn ensure_system_keys(&self, conn: &mut AnyConnection, now: i64) -> Result<()> {
        let sealing = SymmetricKey::generate(SYSTEM_SEALING_KEY_ID);
        let signing = SymmetricKey::generate(SYSTEM_SIGNING_KEY_ID);
        self.insert_key(conn, &sealing, None, PURPOSE_SYSTEM, None, now)
            .await?;
        let public = AuditSigner::from_key(&signing).public_key().to_vec();
        self.insert_key(
            conn,
            &signing,
            None,
            PURPOSE_SYSTEM_SIGNING,
            Some(public),
            now,
        )
        .await?;
        let blind = SymmetricKey::generate(SYSTEM_BLIND_INDEX_KEY_ID);
        self.insert_key(conn, &blind, None, PURPOSE_SYSTEM_BLIND_INDEX, None, now)
            .await?;
        Ok(())
    }

    async fn unwrap_stored(&self, conn: &mut AnyConnection, key_id: &str) -> Result<SymmetricKey> {
        let wrapped: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT wrapped FROM key_wraps WHERE key_id = $1 AND master_key_id = $2",
        )
        .bind(key_id)
        .bind(self.master.id())
        .fetch_optional(&mut *conn)
        .await?;
        let wrapped = wrapped.ok_or_else(|| {
            StoreError::KeyRing(format!(
                "key {key_id} is not wrapped under master key {}",
                self.master.id()
            ))
        })?;
        Ok(self.master.unwrap_key(key_id, &wrapped)?)
    }

    pub async fn system_keys(&self, conn: &mut AnyConnection) -> Result<Arc<ChainKeys>> {
        if let Some(keys) = self.system.read().unwrap_or_else(poisoned).clone() {
            return Ok(keys);
        }
        let keys = Arc::new(ChainKeys {
            sealing: self.unwrap_stored(conn, SYSTEM_SEALING_KEY_ID).await?,
            signing: self.unwrap_stored(conn, SYSTEM_SIGNING_KEY_ID).await?,
        });
        *self.system.write().unwrap_or_else(poisoned) = Some(keys.clone());
        Ok(keys)
    }

    pub async fn system_data_keys(&self, conn: &mut AnyConnection) -> Result<Arc<SystemKeys>> {
        if let Some(keys) = self.system_data.read().unwrap_or_else(poisoned).clone() {
            return Ok(keys);
        }
        let keys = Arc::new(SystemKeys {
            sealing: self.unwrap_stored(conn, SYSTEM_SEALING_KEY_ID).await?,
            blind_index: self.unwrap_stored(conn, SYSTEM_BLIND_INDEX_KEY_ID).await?,
        });
        *self.system_data.write().unwrap_or_else(poisoned) = Some(keys.clone());
        Ok(keys)
    }

    pub async fn practice_keys(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
    ) -> Result<Arc<PracticeKeys>> {
        if let Some(keys) = self
            .practices
            .read()
            .unwrap_or_else(poisoned)
            .get(&practice)
            .cloned()
        {
            return Ok(keys);
        }
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, purpose FROM ring_keys WHERE practice_id = $1")
                .bind(practice.to_string())
                .fetch_all(&mut *conn)
                .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut found: HashMap<String, SymmetricKey> = HashMap::new();
        for (id, purpose) in rows {
            let key = self.unwrap_stored(conn, &id).await?;
            found.insert(purpose, key);
        }
        let mut take = |purpose: &str| {
            found.remove(purpose).ok_or_else(|| {
                StoreError::KeyRing(format!("practice {practice} has no {purpose} key"))
            })
        };
        let keys = Arc::new(PracticeKeys {
            practice: take(PURPOSE_PRACTICE)?,
            blind_index: take(PURPOSE_BLIND_INDEX)?,
            audit_signing: take(PURPOSE_AUDIT_SIGNING)?,
            provider_credentials: take(PURPOSE_PROVIDER_CREDENTIALS)?,
        });
        self.practices
            .write()
            .unwrap_or_else(poisoned)
            .insert(practice, keys.clone());
        Ok(keys)
    }

    /// The sealing and signing keys of one audit chain.
    pub async fn chain_keys(
        &self,
        conn: &mut AnyConnection,
        scope: &salve_core::audit::ChainScope,
    ) -> Result<Arc<ChainKeys>> {
        match scope {
            salve_core::audit::ChainScope::System => self.system_keys(conn).await,
            salve_core::audit::ChainScope::Practice(p) => {
                let keys = self.practice_keys(conn, *p).await?;
                Ok(Arc::new(ChainKeys {
                    sealing: keys.practice.clone(),
                    signing: keys.audit_signing.clone(),
                }))
            }
        }
    }

    /// A fresh patient data key; stored by `attach_patient_key` once the patient row exists.
    pub fn new_patient_key(&self) -> Arc<SymmetricKey> {
        Arc::new(SymmetricKey::generate(format!(
            "dk-{}",
            uuid::Uuid::new_v4()
        )))
    }

    /// Stores a patient's data key, wrapped by the practice key, inside the caller's transaction.
    pub async fn attach_patient_key(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
        key: &Arc<SymmetricKey>,
        now: i64,
    ) -> Result<()> {
        let practice_keys = self.practice_keys(conn, practice).await?;
        sqlx::query(
            "INSERT INTO patient_keys (id, practice_id, patient_id, wrapping_key_id, wrapped, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id())
        .bind(practice.to_string())
        .bind(patient.to_string())
        .bind(practice_keys.practice.id())
        .bind(practice_keys.practice.wrap(key))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        self.patients
            .write()
            .unwrap_or_else(poisoned)
            .insert(patient, key.clone());
        Ok(())
    }

    /// A patient's data key, or `Shredded` when it was destroyed.
    pub async fn patient_key(
        &self,
        conn: &mut AnyConnection,
        practice: PracticeId,
        patient: PatientId,
    ) -> Result<Arc<SymmetricKey>> {
        if let Some(key) = self
            .patients
            .read()
            .unwrap_or_else(poisoned)
            .get(&patient)
            .cloned()
        {
            return Ok(key);
        }
        let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, wrapping_key_id, wrapped FROM patient_keys WHERE patient_id = $1 AND practice_id = $2",
        )
        .bind(patient.to_string())
        .bind(practice.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        let (id, wrapping_key_id, wrapped) = row.ok_or(StoreError::Shredded)?;
        let practice_keys = self.practice_keys(conn, practice).await?;
        if practice_keys.practice.id() != wrapping_key_id {
            return Err(StoreError::KeyRing(format!(
                "patient key {id} is wrapped by an unknown key"
            )));
        }
        let key = Arc::new(practice_keys.practice.unwrap_key(&id, &wrapped)?);
        self.patients
            .write()
            .unwrap_or_else(poisoned)
            .insert(patient, key.clone());
        Ok(key)
    }

    pub fn forget_patient(&self, patient: PatientId) {
        self.patients
            .write()
            .unwrap_or_else(poisoned)
            .remove(&patient);
    }

    /// Phase one of a master-key rotation: every key wrapped under this instance's master key
    /// is also wrapped under `next`, and `next` becomes an accepted master key.
    pub async fn add_master(
        &self,
        conn: &mut AnyConnection,
        next: &MasterKey,
        now: i64,
    ) -> Result<u64> {
        sqlx::query(
            "INSERT INTO master_keys (id, state, created_at) VALUES ($1, 'active', $2) ON CONFLICT DO NOTHING",
        )
        .bind(next.id())
        .bind(now)
        .execute(&mut *conn)
        .await?;
        self.rewrap_missing(conn, &self.master, next).await
    }

    /// Wraps under `to` every key that `from` can open and `to` does not yet wrap.
    pub async fn rewrap_missing(
        &self,
        conn: &mut AnyConnection,
        from: &MasterKey,
        to: &MasterKey,
    ) -> Result<u64> {
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT w.key_id, w.wrapped FROM key_wraps w WHERE w.master_key_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM key_wraps n WHERE n.key_id = w.key_id AND n.master_key_id = $2)",
        )
        .bind(from.id())
        .bind(to.id())
        .fetch_all(&mut *conn)
        .await?;
        let mut count = 0;
        for (key_id, wrapped) in rows {
            let key = from.unwrap_key(&key_id, &wrapped)?;
            sqlx::query(
                "INSERT INTO key_wraps (key_id, master_key_id, wrapped) VALUES ($1, $2, $3)",
            )
            .bind(&key_id)
            .bind(to.id())
            .bind(to.wrap(&key))
            .execute(&mut *conn)
            .await?;
            count += 1;
        }
        Ok(count)
    }
}
