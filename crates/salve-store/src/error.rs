use salve_crypto::CryptoError;

/// Store errors. `Display` never contains personal data or SQL text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The record existed but its keys were destroyed.
    #[error("this record's content was destroyed at the end of its retention")]
    Shredded,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("this patient is restricted: opening the record needs a break-glass reason")]
    BreakGlassRequired,
    #[error("not allowed")]
    Forbidden,
    /// A restricted patient the caller may not know about: answered like "not found".
    #[error("not found")]
    Hidden,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyMismatch,
    #[error(
        "the master key {supplied} does not belong to this database (it accepts {accepted}); start Salve with the key this database was created with"
    )]
    WrongMasterKey { supplied: String, accepted: String },
    #[error("the master key {0} was retired by a key rotation; start Salve with the new key")]
    RetiredMasterKey(String),
    #[error(
        "the database schema is at version {database}, newer than this Salve binary knows ({binary}); upgrade Salve instead"
    )]
    SchemaTooNew { database: i64, binary: i64 },
    #[error("the database schema is at version {database}; run `salve migrate` (version {binary})")]
    NotMigrated { database: i64, binary: i64 },
    #[error("unsupported database URL: use sqlite://PATH or postgres://…")]
    UnsupportedUrl,
    #[error("key ring: {0}")]
    KeyRing(String),
    #[error("decryption failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration error")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(String),
}

/// Another request with the same `Idempotency-Key` holds it and has not finished.
pub const IDEMPOTENCY_KEY_IN_PROGRESS: &str = "a request with this Idempotency-Key is in progress";

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            let msg = db.message().to_ascii_lowercase();
            let constraint = db.constraint().unwrap_or_default().to_ascii_lowercase();
            if msg.contains("mrn") || constraint.contains("mrn") {
                return StoreError::Conflict("another patient of this practice has this MRN");
            }
            if msg.contains("idempotency") || constraint.contains("idempotency") {
                return StoreError::Conflict(IDEMPOTENCY_KEY_IN_PROGRESS);
            }
        }
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

impl StoreError {
    /// The full cause chain, for the one log line written by the server.
    pub fn detail(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }
}
