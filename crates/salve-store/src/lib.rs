//! Salve's storage: one `Store` over SQLite (the embedded default) and PostgreSQL.
//! This is the only crate that writes SQL. Every call that touches practice data takes the
//! practice id and filters by it inside the query.
//!
//! Queries are shared between the two backends where the dialects agree (positional `$n`
//! parameters work in both); what differs (connection set-up, transaction start, chain-head
//! locking, migrations, schema introspection, backup) lives in `dialect::sqlite` and
//! `dialect::postgres` behind the `Dialect` type.

mod announcements;
mod appointments;
mod audit;
pub mod audit_reports;
mod backup;
mod batch;
mod catalog;
mod channels;
mod consent;
mod dialect;
mod ehr;
mod ehr_pull;
mod error;
mod fhir;
mod fhir_write;
mod hl7;
mod hours;
mod identity;
mod inbound;
mod keyring;
mod links;
mod messaging;
mod names;
mod outbox;
mod oversight;
mod passkeys;
mod patient_accounts;
mod patients;
mod portal_pages;
mod practices;
mod reminders;
mod smart;
mod teams;
mod tx;
mod unread;

use std::path::PathBuf;
use std::sync::Arc;

use salve_core::Clock;
use salve_crypto::MasterKey;
use sqlx::AnyPool;

pub use announcements::{Announcement, Batch, NewAnnouncement, Progress};
pub use appointments::{
    APPOINTMENT_VERSION_CONFLICT, Appointment, AppointmentFilter, AppointmentPatch, ImportReport,
    MAX_APPOINTMENTS, NewAppointment, source_of,
};
pub use audit::{AuditRow, Checkpoint, VerifyProblem, VerifyReport, append_anchor, read_anchor};
pub use backup::{ShredEntry, read_shred_list};
pub use catalog::{CatalogItem, CatalogKind, MessagingSettings, ReplyTemplate};
pub use channels::{Agreement, NewProvider, ProviderRecord, ProviderSummary};
pub use consent::{ConsentText, Recorder};
pub use dialect::{Backend, SchemaDescription};
pub use ehr::{
    ClaimedEhrWrite, EhrAuth, EhrConnection, EhrConnectionInput, EhrCredentials, EhrOutcome,
    EhrWriteStatus, NewEhrKey,
};
pub use ehr_pull::{EhrPull, EhrPullRun};
pub use error::StoreError;
pub use fhir::{ConsentProvenance, FhirMessage, MessageWindow};
pub use fhir_write::{
    EntryFailure, FhirWrite, FhirWritten, MAX_TRANSACTION_ENTRIES, PatientRef, WriteFailure,
};
pub use hl7::{Hl7Record, MAX_CONTROL_ID_CHARS};
pub use hours::{OverdueConversation, ResponseReport, ResponseSettings, ResponseStatus};
pub use identity::{
    AccountToken, AccountTokenPurpose, Membership, Session, SessionEnd, SessionStage,
    SessionSummary, ThrottleState, UserAuth, UserProfile,
};
pub use inbound::{
    DeliveryReport, EMERGENCY_PURPOSE, InboundFacts, InboundOutcome, InboundReaction, InboundSms,
    KeywordReview, PracticeReply, ReminderAnswer, ReportOutcome, TriageItem, status_moves_forward,
};
pub use links::{LinkInfo, PatientSession};
pub use messaging::{
    Assignment, AttachmentMeta, AttachmentReader, ConversationDetail, ConversationState,
    ConversationSummary, ConversationTarget, Direction, InboxFilter, Medium, MessageChannel,
    MessageStatus, MessageView, NewAttachment, NewJob, OutboundPlan, PlanRefused, SendFacts,
};
pub use outbox::{ClaimedJob, JobOutcome};
pub use oversight::{
    Acknowledgment, BreakGlassGrant, BreakGlassReview, Guidelines, MAX_REVIEW_NOTE_CHARS,
};
pub use passkeys::{Ceremony, CeremonyPurpose, StoredPasskey};
pub use patient_accounts::PatientLogin;
pub use patients::{
    Idempotency, Lookup, MAX_PAGE, PATIENT_VERSION_CONFLICT, Patient, PatientPage,
    RestrictedPatient,
};
pub use practices::{Practice, TokenInfo, TokenPrincipal};
pub use reminders::{
    AwaitingReminder, NewReminder, Recorded, Reminder, ReminderSettings, ReminderState,
};
pub use smart::{SmartClient, SmartTokenGrant};
pub use teams::Team;
pub use unread::UnreadSecureMessage;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the store lives and how it is opened.
#[derive(Clone)]
pub struct StoreOptions {
    pub database_url: String,
    /// The shred list kept outside the database (in the data directory), re-applied by restore.
    pub shred_list: Option<PathBuf>,
    pub max_connections: u32,
}

impl StoreOptions {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            shred_list: None,
            max_connections: 8,
        }
    }
}

pub struct Store {
    pool: AnyPool,
    dialect: dialect::Dialect,
    ring: keyring::KeyRing,
    clock: Arc<dyn Clock>,
    names: names::NameIndexCache,
    shred_list: Option<PathBuf>,
    /// Wakes this instance's live-update streams after a commit that changed an inbox.
    inbox_wake: Arc<tokio::sync::Notify>,
    /// For the PostgreSQL change listener's own connection (never logged: it may hold a password).
    database_url: String,
    /// One SQLite write transaction at a time in this process (SQLite allows one anyway); a
    /// fair queue instead of the busy handler's sleep-and-retry, and the group-commit batch of
    /// sends (see `tx`). Other processes (the CLI) still meet the busy timeout.
    sqlite_writer: tx::SqliteWriter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.dialect.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Applies pending migrations. Idempotent; refuses a database made by a newer Salve.
    pub async fn migrate(options: &StoreOptions) -> Result<()> {
        let dialect = dialect::Dialect::from_url(&options.database_url)?;
        let pool = dialect.connect(&options.database_url, 2).await?;
        let result = dialect.migrate(&pool).await;
        pool.close().await;
        result
    }

    /// Whether this database already belongs to a master key (so a missing key is an error,
    /// not a reason to create one).
    pub async fn is_initialized(options: &StoreOptions) -> Result<bool> {
        let dialect = dialect::Dialect::from_url(&options.database_url)?;
        let pool = dialect.connect(&options.database_url, 1).await?;
        let result = async {
            if dialect.check_migrated(&pool).await.is_err() {
                return Ok(false);
            }
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM master_keys")
                .fetch_one(&pool)
                .await?;
            Ok(n > 0)
        }
        .await;
        pool.close().await;
        result
    }

    /// Opens a migrated database with this instance's master key. Refuses a key that does not
    /// belong to the database, and a database whose schema differs from this binary's.
    pub async fn open(
        options: &StoreOptions,
        master: MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let dialect = dialect::Dialect::from_url(&options.database_url)?;
        let pool = dialect
            .connect(&options.database_url, options.max_connections)
            .await?;
        dialect.check_migrated(&pool).await?;
        let store = Self {
            pool,
            dialect,
            ring: keyring::KeyRing::new(master),
            clock,
            names: names::NameIndexCache::default(),
            shred_list: options.shred_list.clone(),
            inbox_wake: Arc::new(tokio::sync::Notify::new()),
            database_url: options.database_url.clone(),
            sqlite_writer: tx::SqliteWriter::default(),
        };
        store.register_master_key().await?;
        Ok(store)
    }

    /// Tells this instance's live-update streams to look for inbox changes.
    pub fn inbox_changed(&self) {
        self.inbox_wake.notify_waiters();
    }

    /// On PostgreSQL, wakes this instance's streams when any instance commits an inbox change
    /// (`LISTEN salve_inbox`; the notification carries nothing, streams read the ids), until
    /// `stop` turns true. Reconnects after a lost connection and wakes the streams then too,
    /// so nothing committed meanwhile is missed. Returns at once on SQLite (one process).
    pub async fn listen_for_inbox_changes(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.backend() != Backend::Postgres {
            return;
        }
        loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(&self.database_url).await?;
                listener.listen("salve_inbox").await?;
                self.inbox_changed();
                loop {
                    listener.recv().await?;
                    self.inbox_changed();
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                result = listening => {
                    if let Err(e) = result {
                        tracing::warn!(error = %StoreError::from(e).detail(), "inbox change listener lost its connection");
                    }
                }
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Resolves at the next local inbox change.
    pub fn inbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inbox_wake.clone()
    }

    pub fn backend(&self) -> Backend {
        self.dialect.backend()
    }

    /// Whether `select_one` (a `SELECT 1 … LIMIT 1` over times in microseconds, bound in order)
    /// finds a row. The workers ask this with a plain read before claiming: most passes find
    /// nothing due and then need not take the write lock.
    pub(crate) async fn any_due(&self, select_one: &'static str, times: &[i64]) -> Result<bool> {
        let mut query = sqlx::query_scalar::<_, i64>(select_one);
        for t in times {
            query = query.bind(*t);
        }
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    pub fn master_key_id(&self) -> &str {
        self.ring.master().id()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Ready means: the database answers and its schema is this binary's.
    pub async fn ready(&self) -> Result<()> {
        self.dialect.check_migrated(&self.pool).await
    }

    pub async fn describe_schema(&self) -> Result<SchemaDescription> {
        self.dialect.describe_schema(&self.pool).await
    }

    /// The key that seals the local outbox's files (the system sealing key).
    pub async fn outbox_key(&self) -> Result<salve_crypto::SymmetricKey> {
        let mut conn = self.pool.acquire().await?;
        Ok(self.ring.system_data_keys(&mut conn).await?.sealing.clone())
    }

    /// Direct access for tests that tamper with rows or inject faults.
    #[doc(hidden)]
    pub fn pool_for_tests(&self) -> &AnyPool {
        &self.pool
    }
}
