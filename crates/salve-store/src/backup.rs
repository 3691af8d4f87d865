//! Online backup (SQLite `VACUUM INTO`), restore, and the shred list that restore re-applies
//! so an older backup cannot bring a shredded patient back.

use std::io::Write;
use std::path::Path;

use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::{PatientId, PracticeId};
use serde::{Deserialize, Serialize};

use crate::dialect::Backend;
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredEntry {
    pub practice_id: PracticeId,
    pub patient_id: PatientId,
    pub shredded_at: i64,
}

pub(crate) fn append_shred_list(
    path: &Path,
    practice: PracticeId,
    patient: PatientId,
    at: i64,
) -> Result<()> {
    let io = |e: std::io::Error| StoreError::Io(format!("shred list {}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut line = serde_json::to_vec(&ShredEntry {
        practice_id: practice,
        patient_id: patient,
        shredded_at: at,
    })
    .map_err(|e| StoreError::Io(e.to_string()))?;
    line.push(b'\n');
    file.write_all(&line).map_err(io)?;
    file.sync_all().map_err(io)
}

pub fn read_shred_list(path: &Path) -> Result<Vec<ShredEntry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|_| {
                    StoreError::Io(format!(
                        "shred list {} has a malformed line",
                        path.display()
                    ))
                })
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::Io(format!(
            "shred list {}: {e}",
            path.display()
        ))),
    }
}

impl Store {
    /// A consistent copy of a live SQLite database, taken without stopping writers.
    pub async fn backup_to(&self, target: &Path) -> Result<()> {
        if self.backend() != Backend::Sqlite {
            return Err(StoreError::Invalid(
                "backups of PostgreSQL are taken with pg_dump (see the README)".into(),
            ));
        }
        if target.exists() {
            return Err(StoreError::Invalid(format!(
                "{} already exists; choose a new file",
                target.display()
            )));
        }
        let target = target
            .to_str()
            .ok_or_else(|| StoreError::Invalid("backup path must be valid UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Patients recorded as shredded in this database.
    pub async fn shredded_patients(&self) -> Result<Vec<ShredEntry>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT practice_id, patient_id, shredded_at FROM shredded_patients ORDER BY shredded_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(p, i, at)| {
                let bad = || StoreError::KeyRing("malformed shred row".into());
                Ok(ShredEntry {
                    practice_id: p.parse().map_err(|_| bad())?,
                    patient_id: i.parse().map_err(|_| bad())?,
                    shredded_at: at,
                })
            })
            .collect()
    }

    /// Shreds again every listed patient this database still holds keys for (after a restore).
    /// Returns how many were re-shredded.
    pub async fn reapply_shreds(&self, entries: &[ShredEntry]) -> Result<u64> {
        let mut count = 0;
        let mut tx = self.begin().await?;
        let now = tx.now_micros();
        for entry in entries {
            let state: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT shredded_at FROM patients WHERE id = $1 AND practice_id = $2",
            )
            .bind(entry.patient_id.to_string())
            .bind(entry.practice_id.to_string())
            .fetch_optional(&mut *tx.tx)
            .await?;
            let has_key: Option<String> =
                sqlx::query_scalar("SELECT id FROM patient_keys WHERE patient_id = $1")
                    .bind(entry.patient_id.to_string())
                    .fetch_optional(&mut *tx.tx)
                    .await?;
            if state.is_none() || (matches!(state, Some(Some(_))) && has_key.is_none()) {
                continue;
            }
            crate::patients::shred_rows(&mut tx.tx, entry.practice_id, entry.patient_id, now)
                .await?;
            self.ring.forget_patient(entry.patient_id);
            tx.audit(AuditEvent {
                scope: ChainScope::Practice(entry.practice_id),
                actor: Actor::Cli,
                action: Action::PatientShred,
                targets: vec![entry.patient_id.to_string()],
                outcome: Outcome::Success,
                context: RequestContext {
                    reason: Some("re-applied from the shred list after a restore".into()),
                    ..Default::default()
                },
            });
            count += 1;
        }
        tx.audit(AuditEvent {
            scope: ChainScope::System,
            actor: Actor::Cli,
            action: Action::BackupRestore,
            targets: Vec::new(),
            outcome: Outcome::Success,
            context: RequestContext::default(),
        });
        tx.commit().await?;
        Ok(count)
    }
}
