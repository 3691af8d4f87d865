//! Write transactions that carry their audit events: the events are hash-chained and inserted
//! as the last step before commit, so an action whose audit row cannot be written never happens.

use std::collections::BTreeMap;

use salve_core::audit::{AuditEvent, ChainScope};
use salve_core::clock::to_micros;
use sqlx::{Any, Transaction};
use time::OffsetDateTime;

use crate::audit::{context_aad_row, hash_row, row_hash_fields};
use crate::{Result, Store, StoreError};

pub(crate) struct WriteTx<'s> {
    pub store: &'s Store,
    pub tx: Transaction<'static, Any>,
    pub now: OffsetDateTime,
    events: Vec<AuditEvent>,
    /// SQLite: this process's writers queue here instead of sleeping in SQLite's busy handler.
    /// Declared last so the transaction ends before the next writer starts.
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Store {
    pub(crate) async fn begin(&self) -> Result<WriteTx<'_>> {
        let writer = match self.backend() {
            crate::Backend::Sqlite => Some(self.sqlite_writer.clone().lock_owned().await),
            crate::Backend::Postgres => None,
        };
        let tx = self.dialect.begin_write(&self.pool).await?;
        Ok(WriteTx {
            store: self,
            tx,
            now: self.clock.now(),
            events: Vec::new(),
            _writer: writer,
        })
    }
}

impl WriteTx<'_> {
    pub fn now_micros(&self) -> i64 {
        to_micros(self.now)
    }

    pub fn audit(&mut self, event: AuditEvent) {
        self.events.push(event);
    }

    /// Appends the audit events to their chains, then commits everything at once.
    pub async fn commit(mut self) -> Result<()> {
        let events = std::mem::take(&mut self.events);
        let mut by_scope: BTreeMap<ChainScope, Vec<AuditEvent>> = BTreeMap::new();
        for event in events {
            by_scope.entry(event.scope).or_default().push(event);
        }
        let at = self.now_micros();
        // Heads are locked in a fixed order so two transactions never wait on each other.
        for (scope, events) in by_scope {
            let key = scope.key();
            let (mut seq, head) = self
                .store
                .dialect
                .lock_chain_head(&mut self.tx, &key)
                .await?
                .ok_or_else(|| StoreError::KeyRing(format!("no audit chain for {scope}")))?;
            let mut prev: [u8; 32] = head
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::KeyRing(format!("corrupt chain head for {scope}")))?;
            let chain_keys = self.store.ring.chain_keys(&mut self.tx, &scope).await?;
            for event in events {
                seq += 1;
                let targets = serde_json::to_string(&event.targets)
                    .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let context = crate::audit::seal_context(
                    &chain_keys.sealing,
                    &context_aad_row(&key, seq),
                    &event.context,
                );
                let context_key_id = context.as_ref().map(|_| chain_keys.sealing.id().to_owned());
                let actor_id = event.actor.id();
                let hash = hash_row(
                    &prev,
                    row_hash_fields(
                        &key,
                        seq,
                        at,
                        event.actor.kind(),
                        &actor_id,
                        event.action.as_str(),
                        &targets,
                        event.outcome.as_str(),
                        context.as_deref(),
                        context_key_id.as_deref(),
                    ),
                );
                sqlx::query(
                    "INSERT INTO audit_events (scope, seq, occurred_at, actor_kind, actor_id, action, \
                     targets, outcome, context, context_key_id, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&key)
                .bind(seq)
                .bind(at)
                .bind(event.actor.kind())
                .bind(&actor_id)
                .bind(event.action.as_str())
                .bind(&targets)
                .bind(event.outcome.as_str())
                .bind(context)
                .bind(context_key_id)
                .bind(prev.to_vec())
                .bind(hash.to_vec())
                .execute(&mut *self.tx)
                .await?;
                prev = hash;
            }
            sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE scope = $3")
                .bind(seq)
                .bind(prev.to_vec())
                .bind(&key)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}
