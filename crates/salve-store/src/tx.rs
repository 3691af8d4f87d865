//! Write transactions that carry their audit events: the events are hash-chained and inserted
//! as the last step before commit, so an action whose audit row cannot be written never happens.
//!
//! On SQLite this process's writers queue on one fair lock (SQLite allows one writer anyway),
//! and writes that opt in ([`Store::begin_grouped`], used by sends and the outbox worker)
//! share durable commits: each such write runs inside its own `SAVEPOINT` of one open
//! transaction, and the transaction is committed (one fsync) when no further grouped write is
//! waiting for the lock, when the batch is full, or when any other writer needs the lock. A
//! grouped write's [`WriteTx::commit`] returns only after the commit that holds it is durable,
//! and reports that commit's failure; a write that fails is rolled back to its savepoint and
//! leaves the others in the batch untouched. PostgreSQL already shares WAL flushes between concurrent commits, so
//! there a grouped write is an ordinary transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use salve_core::audit::{AuditEvent, ChainScope};
use salve_core::clock::to_micros;
use sqlx::{Any, AnyConnection, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::audit::{context_aad_row, hash_row, row_hash_fields};
use crate::batch::Batch;
use crate::{Result, Store, StoreError};

/// At most this many grouped writes share one commit (bounds the latency of the first one).
pub(crate) const MAX_GROUP: usize = 64;

/// What a batch's waiters learn: `None` until the batch is finished, then the commit's result
/// (the error's detail when it failed; nothing in it was written then).
type BatchOutcome = Option<std::result::Result<(), String>>;

/// The SQLite writer lock and the group-commit batch it may leave open between writes.
pub(crate) struct SqliteWriter {
    lock: Arc<Mutex<WriterState>>,
    /// Grouped writes queued for the lock: a finished write leaves the batch open for them.
    waiting: Arc<AtomicUsize>,
    next_batch: AtomicU64,
    /// Batches committed and the grouped writes they held (for tests and benchmarks).
    counts: Arc<(AtomicU64, AtomicU64)>,
}

impl Default for SqliteWriter {
    fn default() -> Self {
        let counts: Arc<(AtomicU64, AtomicU64)> = Arc::default();
        Self {
            lock: Arc::new(Mutex::new(WriterState {
                counts: counts.clone(),
                ..WriterState::default()
            })),
            waiting: Arc::new(AtomicUsize::new(0)),
            next_batch: AtomicU64::new(1),
            counts,
        }
    }
}

#[derive(Default)]
pub(crate) struct WriterState {
    open: Option<OpenBatch>,
    /// Shared with [`SqliteWriter::counts`].
    counts: Arc<(AtomicU64, AtomicU64)>,
    /// A grouped write was abandoned (its future dropped) inside its savepoint: the next holder
    /// of the lock rolls it back before anything else.
    abandoned: bool,
}

struct OpenBatch {
    id: u64,
    tx: Transaction<'static, Any>,
    /// Writes finished inside this batch (their savepoints released), waiting for its commit.
    items: usize,
    done: watch::Sender<BatchOutcome>,
    /// The audit chain heads as this batch's writes left them. The batch holds SQLite's write
    /// lock (`BEGIN IMMEDIATE`) from its start, so nothing else moves them until it ends;
    /// emptied whenever a write is rolled back to its savepoint.
    heads: HashMap<String, ChainHead>,
}

/// An audit chain's last sequence number and hash.
type ChainHead = (i64, [u8; 32]);

const SAVEPOINT: &str = "SAVEPOINT salve_item";
const RELEASE: &str = "RELEASE SAVEPOINT salve_item";
const ROLLBACK_ITEM: &str = "ROLLBACK TO SAVEPOINT salve_item; RELEASE SAVEPOINT salve_item";

impl WriterState {
    /// Rolls back a write abandoned inside its savepoint. If that fails, the whole batch is
    /// rolled back and its waiters told so.
    async fn clean_up(&mut self) {
        if !std::mem::take(&mut self.abandoned) {
            if self.open.as_ref().is_some_and(|batch| batch.items == 0) {
                // Left by a write that ended before its savepoint: nothing in it to keep.
                let _ = self.flush().await;
            }
            return;
        }
        if self.rollback_item().await && self.open.as_ref().is_some_and(|b| b.items == 0) {
            // Nothing else in it: end it rather than hold SQLite's write lock.
            let _ = self.flush().await;
        }
    }

    /// Rolls the open batch back to the current write's savepoint; if that fails, the whole
    /// batch is rolled back. Whether the batch is still open.
    async fn rollback_item(&mut self) -> bool {
        let Some(batch) = self.open.as_mut() else {
            return false;
        };
        // The write may have moved chain heads before it failed.
        batch.heads.clear();
        if let Err(e) = sqlx::raw_sql(ROLLBACK_ITEM).execute(&mut *batch.tx).await {
            let detail = StoreError::from(e).detail();
            self.abort(detail).await;
            return false;
        }
        true
    }

    /// Commits the open batch (if any) and tells its waiters how it went.
    async fn flush(&mut self) -> std::result::Result<(), String> {
        let Some(batch) = self.open.take() else {
            return Ok(());
        };
        let result = if batch.items == 0 {
            batch
                .tx
                .rollback()
                .await
                .map_err(|e| StoreError::from(e).detail())
        } else {
            batch
                .tx
                .commit()
                .await
                .map_err(|e| StoreError::from(e).detail())
        };
        match &result {
            Ok(()) if batch.items > 0 => {
                tracing::debug!(writes = batch.items, "group commit");
                self.counts.0.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .1
                    .fetch_add(batch.items as u64, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(detail) => {
                tracing::error!(error = %detail, writes = batch.items, "a group commit failed; none of its writes was acknowledged");
            }
        }
        batch.done.send_replace(Some(result.clone()));
        result
    }

    /// Rolls back the open batch: none of its writes happened.
    async fn abort(&mut self, detail: String) {
        if let Some(batch) = self.open.take() {
            let _ = batch.tx.rollback().await;
            tracing::error!(error = %detail, writes = batch.items, "a group-commit batch was rolled back");
            batch.done.send_replace(Some(Err(detail)));
        }
    }
}

/// The connection a write runs on: its own transaction, or its savepoint in a shared batch.
pub(crate) enum TxConn {
    Own(Transaction<'static, Any>),
    Grouped(OwnedMutexGuard<WriterState>),
    /// Committed or rolled back.
    Ended,
}

impl std::ops::Deref for TxConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            TxConn::Own(tx) => tx,
            TxConn::Ended => panic!("a write transaction used after it ended"),
            TxConn::Grouped(state) => {
                &state
                    .open
                    .as_ref()
                    .expect("a grouped write runs inside an open batch")
                    .tx
            }
        }
    }
}

impl std::ops::DerefMut for TxConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            TxConn::Own(tx) => tx,
            TxConn::Ended => panic!("a write transaction used after it ended"),
            TxConn::Grouped(state) => {
                &mut state
                    .open
                    .as_mut()
                    .expect("a grouped write runs inside an open batch")
                    .tx
            }
        }
    }
}

pub(crate) struct WriteTx<'s> {
    pub store: &'s Store,
    pub tx: TxConn,
    pub now: OffsetDateTime,
    events: Vec<AuditEvent>,
    /// SQLite: this process's writers queue here instead of sleeping in SQLite's busy handler.
    /// Declared last so the transaction ends before the next writer starts.
    _writer: Option<OwnedMutexGuard<WriterState>>,
    /// Set while a grouped write holds the lock (cleared when it ends).
    grouped_open: bool,
    /// Whether a grouped write's savepoint may exist yet (see [`Store::begin_grouped_at_commit`]).
    savepoint_open: bool,
    /// Writes held back to run as one command with the audit rows at commit.
    pending: Batch,
}

/// Counts a grouped write as waiting for the lock until it gets it (or is dropped).
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Store {
    /// A write transaction of its own. On SQLite it first commits any open group-commit batch.
    pub(crate) async fn begin(&self) -> Result<WriteTx<'_>> {
        let writer = match self.backend() {
            crate::Backend::Sqlite => {
                let mut state = self.sqlite_writer.lock.clone().lock_owned().await;
                state.clean_up().await;
                // The batch's own waiters learn its result; this write starts afresh either way.
                let _ = state.flush().await;
                Some(state)
            }
            crate::Backend::Postgres => None,
        };
        let tx = self.dialect.begin_write(&self.pool).await?;
        Ok(WriteTx {
            store: self,
            tx: TxConn::Own(tx),
            now: self.clock.now(),
            events: Vec::new(),
            _writer: writer,
            grouped_open: false,
            savepoint_open: false,
            pending: Batch::new(self.backend()),
        })
    }

    /// A write that may share its durable commit with other grouped writes (SQLite; see the
    /// module documentation). End it with [`WriteTx::commit`] or [`WriteTx::rollback`].
    pub(crate) async fn begin_grouped(&self) -> Result<WriteTx<'_>> {
        self.grouped(false).await
    }

    /// [`Store::begin_grouped`] for a write whose every change is deferred
    /// ([`WriteTx::defer`]): its savepoint opens in the command that runs them at commit, one
    /// statement fewer under the lock. Before that it may only read.
    pub(crate) async fn begin_grouped_at_commit(&self) -> Result<WriteTx<'_>> {
        self.grouped(true).await
    }

    async fn grouped(&self, savepoint_at_commit: bool) -> Result<WriteTx<'_>> {
        if self.backend() != crate::Backend::Sqlite {
            return self.begin().await;
        }
        let mut state = {
            let _waiting = Waiting::new(&self.sqlite_writer.waiting);
            self.sqlite_writer.lock.clone().lock_owned().await
        };
        state.clean_up().await;
        if state.open.is_none() {
            let tx = self.dialect.begin_write(&self.pool).await?;
            let (done, _) = watch::channel(None);
            state.open = Some(OpenBatch {
                id: self
                    .sqlite_writer
                    .next_batch
                    .fetch_add(1, Ordering::Relaxed),
                tx,
                items: 0,
                done,
                heads: HashMap::new(),
            });
        }
        let mut pending = Batch::new(self.backend());
        if savepoint_at_commit {
            pending.push(SAVEPOINT);
        } else {
            let batch = state.open.as_mut().expect("opened above");
            if let Err(e) = sqlx::raw_sql(SAVEPOINT).execute(&mut *batch.tx).await {
                let detail = StoreError::from(e).detail();
                state.abort(detail).await;
                return Err(group_failed());
            }
        }
        Ok(WriteTx {
            store: self,
            tx: TxConn::Grouped(state),
            now: self.clock.now(),
            events: Vec::new(),
            _writer: None,
            grouped_open: true,
            savepoint_open: !savepoint_at_commit,
            pending,
        })
    }
}

/// The result of a batch once it is finished (`None` if its sender vanished unfinished).
async fn outcome_of(outcome: &mut watch::Receiver<BatchOutcome>) -> BatchOutcome {
    match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.clone(),
        Err(_) => None,
    }
}

impl Drop for WriteTx<'_> {
    /// A grouped write dropped inside its savepoint (an error returned with `?`, or its request
    /// abandoned): its changes are rolled back to the savepoint by the next holder of the lock,
    /// and a task is started to be that holder, so the batch never stays open unattended.
    fn drop(&mut self) {
        if !self.grouped_open {
            return;
        }
        // Without a savepoint nothing was written: the task only ends an empty batch.
        if self.savepoint_open
            && let TxConn::Grouped(state) = &mut self.tx
        {
            state.abandoned = true;
        }
        let lock = self.store.sqlite_writer.lock.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut state = lock.lock_owned().await;
                state.clean_up().await;
            });
        }
    }
}

impl Store {
    /// SQLite: group-commit batches committed so far and the grouped writes they held.
    #[doc(hidden)]
    pub fn group_commit_counts(&self) -> (u64, u64) {
        let counts = &self.sqlite_writer.counts;
        (
            counts.0.load(Ordering::Relaxed),
            counts.1.load(Ordering::Relaxed),
        )
    }
}

fn group_failed() -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(
        "the shared commit of this write failed",
    )))
}

impl WriteTx<'_> {
    pub fn now_micros(&self) -> i64 {
        to_micros(self.now)
    }

    pub fn audit(&mut self, event: AuditEvent) {
        self.events.push(event);
    }

    /// Writes a statement at commit, in one command with the audit rows (see [`Batch`]). Only
    /// for writes no later statement of this transaction reads.
    pub(crate) fn defer(&mut self, sql: &'static str) -> &mut Batch {
        self.pending.push(sql)
    }

    /// Runs the deferred writes now, for a transaction about to read them back.
    pub(crate) async fn write_deferred(&mut self) -> Result<()> {
        let writes = std::mem::replace(&mut self.pending, Batch::new(self.store.backend()));
        if self.grouped_open {
            // The writes may begin with the savepoint (`begin_grouped_at_commit`).
            self.savepoint_open = true;
        }
        writes.execute(&mut self.tx).await
    }

    /// The writes held back for commit (see [`WriteTx::defer`]).
    pub(crate) fn deferred(&mut self) -> &mut Batch {
        &mut self.pending
    }

    /// Appends the audit events to their chains, then commits everything at once. A grouped
    /// write returns once the batch holding it is durably committed.
    pub async fn commit(mut self) -> Result<()> {
        let mut last = std::mem::replace(&mut self.pending, Batch::new(self.store.backend()));
        if self.store.backend() == crate::Backend::Postgres {
            // The chain head is locked until commit: take it after the other writes, not before.
            if let Err(e) = last.execute(&mut self.tx).await {
                self.rollback().await;
                return Err(e);
            }
            last = Batch::new(self.store.backend());
        }
        let heads = match self.append_audit(&mut last).await {
            Ok(heads) => heads,
            Err(e) => {
                self.rollback().await;
                return Err(e);
            }
        };
        if self.grouped_open {
            last.push(RELEASE);
            // From here the savepoint may exist, even if this call is abandoned mid-way.
            self.savepoint_open = true;
        }
        if let Err(e) = last.execute(&mut self.tx).await {
            // Nothing after the failing statement ran, the release included.
            self.rollback().await;
            return Err(e);
        }
        self.grouped_open = false;
        let mut state = match std::mem::replace(&mut self.tx, TxConn::Ended) {
            TxConn::Own(tx) => {
                tx.commit().await?;
                return Ok(());
            }
            TxConn::Grouped(state) => state,
            TxConn::Ended => return Err(group_failed()),
        };
        let batch = state
            .open
            .as_mut()
            .expect("a grouped write runs inside an open batch");
        batch.items += 1;
        batch.heads.extend(heads);
        let (id, mut outcome) = (batch.id, batch.done.subscribe());
        let writer = &self.store.sqlite_writer;
        if batch.items >= MAX_GROUP || writer.waiting.load(Ordering::SeqCst) == 0 {
            // Nobody queued behind this write: commit the batch now.
            return state.flush().await.map_err(|_| group_failed());
        }
        drop(state);
        // Another grouped write will continue the batch. Wait for the commit; if the lock comes
        // back first with this batch still open, commit it ourselves. Spawned, so the batch is
        // committed even if this request is abandoned meanwhile.
        let lock = writer.lock.clone();
        let waiter = tokio::spawn(async move {
            let first = tokio::select! {
                biased;
                done = outcome_of(&mut outcome) => Ok(done),
                state = lock.lock_owned() => Err(state),
            };
            match first {
                Ok(done) => done,
                Err(mut state) => {
                    state.clean_up().await;
                    if state.open.as_ref().is_some_and(|b| b.id == id) {
                        return Some(state.flush().await);
                    }
                    drop(state);
                    outcome_of(&mut outcome).await
                }
            }
        });
        match waiter.await {
            Ok(Some(Ok(()))) => Ok(()),
            _ => Err(group_failed()),
        }
    }

    /// Undoes this write. Other writes in a shared batch are untouched; if the undo itself
    /// fails, the whole batch is rolled back (nothing in it was acknowledged yet).
    pub async fn rollback(mut self) {
        if !self.grouped_open {
            return; // An own transaction rolls back when dropped.
        }
        self.grouped_open = false;
        let TxConn::Grouped(mut state) = std::mem::replace(&mut self.tx, TxConn::Ended) else {
            return;
        };
        // Without a savepoint nothing was written.
        if self.savepoint_open && !state.rollback_item().await {
            return;
        }
        let items = state.open.as_ref().map_or(0, |b| b.items);
        let waiting = self.store.sqlite_writer.waiting.load(Ordering::SeqCst);
        if items == 0 || waiting == 0 {
            let _ = state.flush().await;
        }
    }

    /// The head of a chain as an earlier write of this grouped write's batch left it.
    fn head_in_batch(&self, scope: &str) -> Option<ChainHead> {
        match &self.tx {
            TxConn::Grouped(state) => state.open.as_ref()?.heads.get(scope).copied(),
            _ => None,
        }
    }

    /// Appends the audit events to their chains (the last step before commit); the chain heads
    /// once `writes` have run.
    async fn append_audit(&mut self, writes: &mut Batch) -> Result<Vec<(String, ChainHead)>> {
        let events = std::mem::take(&mut self.events);
        let mut by_scope: BTreeMap<ChainScope, Vec<AuditEvent>> = BTreeMap::new();
        for event in events {
            by_scope.entry(event.scope).or_default().push(event);
        }
        let at = self.now_micros();
        let mut heads = Vec::with_capacity(by_scope.len());
        // Heads are locked in a fixed order so two transactions never wait on each other.
        for (scope, events) in by_scope {
            let key = scope.key();
            let (mut seq, mut prev) = match self.head_in_batch(&key) {
                Some(head) => head,
                None => {
                    let (seq, head) = self
                        .store
                        .dialect
                        .lock_chain_head(&mut self.tx, &key)
                        .await?
                        .ok_or_else(|| {
                            StoreError::KeyRing(format!("no audit chain for {scope}"))
                        })?;
                    let head: [u8; 32] = head.as_slice().try_into().map_err(|_| {
                        StoreError::KeyRing(format!("corrupt chain head for {scope}"))
                    })?;
                    (seq, head)
                }
            };
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
                writes
                    .push(
                        "INSERT INTO audit_events (scope, seq, occurred_at, actor_kind, actor_id, action, \
                         targets, outcome, context, context_key_id, prev_hash, hash) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(key.clone())
                .bind(seq)
                .bind(at)
                .bind(event.actor.kind())
                .bind(&actor_id)
                .bind(event.action.as_str())
                .bind(targets)
                .bind(event.outcome.as_str())
                .bind(context)
                .bind(context_key_id)
                .bind(prev.to_vec())
                .bind(hash.to_vec());
                prev = hash;
            }
            writes
                .push("UPDATE audit_heads SET seq = $1, hash = $2 WHERE scope = $3")
                .bind(seq)
                .bind(prev.to_vec())
                .bind(key.clone());
            heads.push((key, (seq, prev)));
        }
        Ok(heads)
    }
}
