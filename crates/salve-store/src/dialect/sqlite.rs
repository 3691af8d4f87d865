//! SQLite: WAL, `synchronous=FULL`, foreign keys on, a busy timeout, `BEGIN IMMEDIATE` writes.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

use super::{SchemaDescription, collect_indexes, normalize_type};
use crate::Result;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(super) const MIGRATIONS_TABLE_EXISTS: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

pub(super) async fn connect(url: &str, max: u32) -> Result<AnyPool> {
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(max.max(1))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // busy_timeout first: switching to WAL itself needs the lock.
                conn.execute("PRAGMA busy_timeout = 15000").await?;
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    Ok(pool)
}

pub(super) async fn describe_schema(pool: &AnyPool) -> Result<SchemaDescription> {
    let mut out = SchemaDescription::default();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}') ORDER BY cid"
        )))
        .fetch_all(pool)
        .await?;
        let mut cols = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let ty: String = row.try_get(1)?;
            let not_null: i64 = row.try_get(2)?;
            let pk: i64 = row.try_get(3)?;
            // SQLite reports NOT NULL only where declared; primary keys here always declare it.
            let nullable = if not_null == 0 && pk == 0 {
                "null"
            } else {
                "not null"
            };
            let pk = if pk > 0 { " pk" } else { "" };
            cols.push(format!("{name} {} {nullable}{pk}", normalize_type(&ty)));
        }
        cols.sort();
        out.tables.insert(table, cols);
    }
    let indexes = sqlx::query(
        "SELECT m.name, m.tbl_name, il.name AS col, i.\"unique\" FROM sqlite_master m \
         JOIN pragma_index_list(m.tbl_name) i ON i.name = m.name \
         JOIN pragma_index_info(m.name) il \
         WHERE m.type = 'index' AND m.sql IS NOT NULL ORDER BY m.name, il.seqno",
    )
    .fetch_all(pool)
    .await?;
    let mut rows = Vec::with_capacity(indexes.len());
    for row in indexes {
        let unique: i64 = row.try_get(3)?;
        rows.push((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            unique != 0,
        ));
    }
    out.indexes = collect_indexes(rows);
    Ok(out)
}
