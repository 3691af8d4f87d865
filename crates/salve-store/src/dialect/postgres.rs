//! PostgreSQL: shared by any number of Salve instances; chain heads locked `FOR UPDATE`.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::{SchemaDescription, collect_indexes, normalize_type};
use crate::Result;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub(super) const MIGRATIONS_TABLE_EXISTS: &str = "SELECT COUNT(*) FROM information_schema.tables \
     WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'";

pub(super) async fn connect(url: &str, max: u32) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max.max(1))
        .connect(url)
        .await?)
}

pub(super) async fn describe_schema(pool: &AnyPool) -> Result<SchemaDescription> {
    let mut out = SchemaDescription::default();
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text, \
           CASE WHEN EXISTS (SELECT 1 FROM information_schema.table_constraints tc \
             JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name \
               AND k.table_schema = tc.table_schema \
             WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = c.table_schema \
               AND tc.table_name = c.table_name AND k.column_name = c.column_name) THEN 1 ELSE 0 END \
         FROM information_schema.columns c \
         WHERE c.table_schema = current_schema() AND c.table_name <> '_sqlx_migrations' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        let table: String = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let ty: String = row.try_get(2)?;
        let nullable: String = row.try_get(3)?;
        let pk: i32 = row.try_get(4)?;
        let nullable = if nullable == "YES" {
            "null"
        } else {
            "not null"
        };
        let pk = if pk > 0 { " pk" } else { "" };
        out.tables
            .entry(table)
            .or_default()
            .push(format!("{name} {} {nullable}{pk}", normalize_type(&ty)));
    }
    for cols in out.tables.values_mut() {
        cols.sort();
    }
    let indexes = sqlx::query(
        "SELECT i.relname::text, t.relname::text, a.attname::text, CASE WHEN ix.indisunique THEN 1 ELSE 0 END \
         FROM pg_index ix \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN LATERAL unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
         WHERE n.nspname = current_schema() AND NOT ix.indisprimary \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) \
           AND t.relname <> '_sqlx_migrations' \
         ORDER BY i.relname, k.ord",
    )
    .fetch_all(pool)
    .await?;
    let mut rows = Vec::with_capacity(indexes.len());
    for row in indexes {
        let unique: i32 = row.try_get(3)?;
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
