//! What differs between the two backends. Everything else is shared SQL.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::{AnyPool, Transaction};

use crate::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect(Backend);

/// Tables, columns (normalized type, nullability), primary keys and indexes: enough to prove
/// the two backends' migrations describe the same schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaDescription {
    pub tables: BTreeMap<String, Vec<String>>,
    pub indexes: BTreeMap<String, String>,
}

impl Dialect {
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self(Backend::Sqlite))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self(Backend::Postgres))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        self.0
    }

    pub(crate) async fn connect(&self, url: &str, max: u32) -> Result<AnyPool> {
        sqlx::any::install_default_drivers();
        match self.0 {
            Backend::Sqlite => sqlite::connect(url, max).await,
            Backend::Postgres => postgres::connect(url, max).await,
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.0 {
            Backend::Sqlite => &sqlite::MIGRATOR,
            Backend::Postgres => &postgres::MIGRATOR,
        }
    }

    pub(crate) async fn migrate(&self, pool: &AnyPool) -> Result<()> {
        let binary = self.binary_version();
        let database = self.database_version(pool).await?;
        if database > binary {
            return Err(StoreError::SchemaTooNew { database, binary });
        }
        self.migrator().run(pool).await?;
        Ok(())
    }

    pub(crate) async fn check_migrated(&self, pool: &AnyPool) -> Result<()> {
        let binary = self.binary_version();
        let database = self.database_version(pool).await?;
        match database.cmp(&binary) {
            std::cmp::Ordering::Greater => Err(StoreError::SchemaTooNew { database, binary }),
            std::cmp::Ordering::Less => Err(StoreError::NotMigrated { database, binary }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn binary_version(&self) -> i64 {
        self.migrator().iter().map(|m| m.version).max().unwrap_or(0)
    }

    async fn database_version(&self, pool: &AnyPool) -> Result<i64> {
        let exists: i64 = sqlx::query_scalar(match self.0 {
            Backend::Sqlite => sqlite::MIGRATIONS_TABLE_EXISTS,
            Backend::Postgres => postgres::MIGRATIONS_TABLE_EXISTS,
        })
        .fetch_one(pool)
        .await?;
        if exists == 0 {
            return Ok(0);
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_one(pool)
                .await?;
        Ok(version.unwrap_or(0))
    }

    /// Starts a write transaction. SQLite takes the write lock up front (`BEGIN IMMEDIATE`),
    /// so a transaction never fails half-way on lock upgrade.
    pub(crate) async fn begin_write(
        &self,
        pool: &AnyPool,
    ) -> Result<Transaction<'static, sqlx::Any>> {
        Ok(match self.0 {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => pool.begin().await?,
        })
    }

    /// Reads and locks one chain head until commit.
    pub(crate) async fn lock_chain_head(
        &self,
        conn: &mut AnyConnection,
        scope: &str,
    ) -> Result<Option<(i64, Vec<u8>)>> {
        let sql = match self.0 {
            // The transaction already holds SQLite's single write lock.
            Backend::Sqlite => "SELECT seq, hash FROM audit_heads WHERE scope = $1",
            Backend::Postgres => "SELECT seq, hash FROM audit_heads WHERE scope = $1 FOR UPDATE",
        };
        Ok(sqlx::query_as(sql).bind(scope).fetch_optional(conn).await?)
    }

    pub(crate) async fn describe_schema(&self, pool: &AnyPool) -> Result<SchemaDescription> {
        match self.0 {
            Backend::Sqlite => sqlite::describe_schema(pool).await,
            Backend::Postgres => postgres::describe_schema(pool).await,
        }
    }
}

/// Maps each backend's column type names onto one vocabulary.
pub(crate) fn normalize_type(raw: &str) -> &'static str {
    match raw.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "int8" => "integer",
        "text" | "character varying" | "varchar" => "text",
        "blob" | "bytea" => "bytes",
        "boolean" | "bool" => "boolean",
        _ => "other",
    }
}

/// Groups `(index, table, column, unique)` rows, in column order, into `unique table(a, b)`.
pub(crate) fn collect_indexes(
    rows: Vec<(String, String, String, bool)>,
) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, (String, Vec<String>, bool)> = BTreeMap::new();
    for (name, table, col, unique) in rows {
        map.entry(name)
            .or_insert_with(|| (table, Vec::new(), unique))
            .1
            .push(col);
    }
    map.into_iter()
        .map(|(name, (table, cols, unique))| {
            let kind = if unique { "unique " } else { "" };
            (name, format!("{kind}{table}({})", cols.join(", ")))
        })
        .collect()
}
